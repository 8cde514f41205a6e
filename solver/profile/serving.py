"""Serving micro-benchmarks on one GPU (``shardwise profile --serving``; issue #16 items 1 and 6).

What an inference engine's step is made of, measured on the local GPU:

* ``ceilings`` -- a 1 GiB device-to-device copy (bytes read + written over time), the same
  bytes read by ``sum`` and ``amax`` (the read-stream ceiling) and a 8192^3 bf16 / fp8 matrix
  product: the ceilings the other sections are divided by.
* ``gemm`` -- ``x @ W^T`` at small and moderate token counts ``M`` (decode and short prefill)
  on the weight shapes of Llama-3-8B (TP 1) and Llama-3-70B (TP 1/2/4/8): bf16 ``torch.mm``
  and fp8 e4m3 ``torch._scaled_mm`` with per-tensor and per-row scales.  Each row gives the
  achieved TFLOP/s and the weight-stream bandwidth (weight bytes / time), the efficiency curve
  between the memory-bound and the compute-bound regime.
* ``decode_attention`` -- one query token per sequence over a KV cache (GQA 64 query heads /
  8 KV heads, head dim 128): ``scaled_dot_product_attention`` with ``enable_gqa`` and with the
  query heads of one KV head folded into the query length ("grouped"), per SDPA backend, and
  ``flash_attn_with_kvcache`` where the ``flash_attn`` package is importable.  Achieved
  bandwidth = K and V bytes / time.
* ``step_overhead`` -- a Llama-3-8B-shaped decoder (4 and 8 layers, static KV cache) for one
  decode step, eager and replayed from a CUDA graph (``torch.cuda.CUDAGraph``): the per-step,
  per-layer and per-kernel launch overhead that graphs remove, and the host's drift over the
  section (the first case re-timed at its end).
* ``launch`` -- a one-element ``add_`` issued 2000 times eagerly, with a synchronise after
  each, and replayed from a graph of 2000 nodes; a one-node graph's launch.
* ``prefill`` -- one Llama-3-8B layer (and one Llama-3-70B TP 8 shard) forward at 128 to 2048
  tokens with causal SDPA, eager and graphed.

Every timing: warm-up, then a loop of back-to-back calls captured in a CUDA graph and replayed
(so kernel launch gaps of the eager Python loop do not enter kernel times; an eager loop where
capture fails, said in the row), each replay between two CUDA events, the median of the
repeats divided by the calls per replay.  Inputs rotate over enough copies of the weights
(or KV cache) that one replay reads more than 4x the L2 cache, so the numbers are HBM numbers.

The sections live in sibling modules: :mod:`~solver.profile.serving_gemm` (``ceilings``,
``gemm``), :mod:`~solver.profile.serving_attention` (``decode_attention``) and
:mod:`~solver.profile.serving_steps` (``step_overhead``, ``launch``, ``prefill``); the timing
rules above, the run's context and metadata are :mod:`~solver.profile.serving_timing`, the
layer shapes, grids and datasheet figures :mod:`~solver.profile.serving_shapes`.  This module
runs the sections in order and summarises the result.

All of them import only the standard library; torch is imported inside the functions, so that
the CLI can import this module on a machine without torch.  ``quick=True`` shrinks every shape
so the whole thing runs in seconds on a CPU (``allow_cpu=True``; what needs CUDA is recorded
as skipped) -- the schema test and the dry run use it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from solver.profile.serving_attention import attention_section
from solver.profile.serving_gemm import ceilings_section, gemm_section
from solver.profile.serving_steps import launch_section, prefill_section, step_section
from solver.profile.serving_timing import Ctx, nvsmi, release, run_meta

__all__ = [
    "RESULT_FORMAT",
    "SECTIONS",
    "run_serving_profile",
    "summarize",
]

#: Format tag of the result dictionary (and of ``raw-*-serving.json``).
RESULT_FORMAT = "shardwise-serving-micro/1"
#: The measurement sections, in the order they run.
SECTIONS = ("ceilings", "launch", "step_overhead", "decode_attention", "prefill", "gemm")


# ----------------------------------------------------------------------------- entry point


def run_serving_profile(
    *,
    quick: bool = False,
    allow_cpu: bool = False,
    sections: Sequence[str] = SECTIONS,
    budget_s: float | None = None,
    on_section: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the serving engine terms on the local GPU; the result dictionary.

    Parameters
    ----------
    quick
        Tiny shapes and few repeats (seconds; for dry runs and tests).  Default False.
    allow_cpu
        Run on the CPU when there is no CUDA GPU (only sensible with ``quick``; CUDA graphs
        and fp8 are then recorded as skipped).  Default False: no GPU raises ``SpecError``.
    sections
        Which of :data:`SECTIONS` to run.  Default all.
    budget_s
        Wall-clock budget in seconds; a section that would start after it is recorded as
        ``{"skipped": "budget"}``.  Default None (no limit).
    on_section
        Called with the partial result after each section (e.g. to write the JSON).
    log
        One-line progress messages.  Default: none.

    Returns
    -------
    dict
        ``format``, ``meta`` (versions, GPU, clocks), one key per section (rows), and
        ``summary`` (:func:`summarize`).

    Raises
    ------
    SpecError
        No CUDA GPU (and not ``allow_cpu``), torch missing, or an unknown section name.
    """
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        _spec_error(f"profile --serving: sections: unknown {bad[0]!r}; known: {list(SECTIONS)}")
    torch = _import_torch()
    if not torch.cuda.is_available() and not allow_cpu:
        _spec_error(
            "profile --serving: needs a CUDA GPU (torch.cuda.is_available() is False); "
            "run it on the GPU machine"
        )
    ctx = Ctx(torch.device("cuda" if torch.cuda.is_available() else "cpu"), quick, log)
    res: dict[str, Any] = {"format": RESULT_FORMAT, "meta": run_meta(ctx)}
    runners: dict[str, Callable[[Ctx, dict[str, Any]], Any]] = {
        "ceilings": lambda c, r: ceilings_section(c),
        "gemm": lambda c, r: gemm_section(c),
        "decode_attention": lambda c, r: attention_section(c),
        "step_overhead": lambda c, r: step_section(c),
        "launch": lambda c, r: launch_section(c),
        "prefill": lambda c, r: prefill_section(c),
    }
    t0 = time.perf_counter()
    ctx.deadline = None if budget_s is None else t0 + budget_s
    for name in SECTIONS:
        if name not in sections:
            continue
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            res[name] = {"skipped": f"budget {budget_s:g} s spent"}
            continue
        ctx.say(f"section {name} ...")
        ts = time.perf_counter()
        try:
            res[name] = runners[name](ctx, res)
        except Exception as e:  # noqa: BLE001 -- one section failing must not lose the rest
            res[name] = {"error": repr(e)[:800]}
        release(ctx)
        res.setdefault("section_wall_s", {})[name] = round(time.perf_counter() - ts, 2)
        res.setdefault("gpu_state", {})[f"after_{name}"] = nvsmi(ctx)
        res["summary"] = summarize(res)
        if on_section is not None:
            on_section(res)
    res["summary"] = summarize(res)
    return res


def _spec_error(msg: str) -> None:
    from solver.errors import SpecError  # pydantic lives there: import only on this path

    raise SpecError(msg)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        _spec_error(
            "profile --serving: needs PyTorch with CUDA (import torch failed): "
            "pip install 'shardwise[profile]'"
        )
    return torch


# ----------------------------------------------------------------------------- summary


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """The quotable numbers of a result: medians over shapes, best kernels, fitted slopes.

    * ``gemm_weight_stream_eff[dtype][M]``: median over the 20 weight shapes of weight bytes /
      time / the measured read bandwidth (``ceilings.read_Bps``; the copy's read + write
      bandwidth where that is absent; ``bandwidth_ceiling`` says which), and
      ``gemm_flops_eff[dtype][M]``:
      median achieved / the measured square-GEMM rate.
    * ``decode_attn_best[batch][context]``: fastest kernel's K/V bytes / time, and its ratio
      to the same bandwidth ceiling (``eff_vs_ceiling``).
    * ``graph_saving_per_layer_s[batch]``: ``(eager - graph)`` at 8 layers minus at 4, / 4
      (a two-point slope: the per-layer launch overhead that a CUDA graph removes), and
      ``graph_saving_per_kernel_s[batch]``: ``(eager - graph) / kernels`` at the most layers;
      ``eager_host_issue_per_kernel_s[batch]``: the host's time to issue one eager step /
      its kernels (the CPU cost a graph replaces by one launch).
    """
    out: dict[str, Any] = {}
    ceil = res.get("ceilings") or {}
    copy_bps = ceil.get("read_Bps") or ceil.get("copy_read_plus_write_Bps")
    out["bandwidth_ceiling"] = "read_Bps" if ceil.get("read_Bps") else "copy_read_plus_write_Bps"
    peaks = {"bf16": ceil.get("bf16_square_flops"), "fp8": ceil.get("fp8_square_flops")}
    if isinstance(res.get("gemm"), list):
        out.update(_summarize_gemm(res["gemm"], copy_bps, peaks))
    att = res.get("decode_attention")
    if isinstance(att, dict) and "rows" in att:
        out["decode_attn_best"] = _summarize_attention(att["rows"], copy_bps)
    if isinstance(res.get("step_overhead"), list):
        out.update(_summarize_steps(res["step_overhead"]))
    return out


def _summarize_gemm(
    rows: list[dict[str, Any]], copy_bps: float | None, peaks: dict[str, float | None]
) -> dict[str, Any]:
    eff: dict[str, dict[int, float]] = {}
    fl: dict[str, dict[int, float]] = {}
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if "s" in r:
            by.setdefault((r["dtype"], r["m"]), []).append(r)
    for (dt, m), rs in sorted(by.items()):
        if copy_bps:
            eff.setdefault(dt, {})[m] = statistics.median(r["weight_Bps"] / copy_bps for r in rs)
        peak = peaks["fp8" if dt.startswith("fp8") else "bf16"]
        if peak:
            fl.setdefault(dt, {})[m] = statistics.median(r["flops"] / peak for r in rs)
    return {"gemm_weight_stream_eff": eff, "gemm_flops_eff": fl}


def _summarize_attention(
    rows: list[dict[str, Any]], copy_bps: float | None
) -> dict[int, dict[int, dict[str, Any]]]:
    best: dict[int, dict[int, dict[str, Any]]] = {}
    for r in rows:
        if "s" not in r or r.get("kv_dtype") != "bf16":
            continue
        cur = best.setdefault(r["batch"], {}).get(r["context"])
        if cur is None or r["s"] < cur["s"]:
            best[r["batch"]][r["context"]] = {
                "s": r["s"],
                "kernel": f"{r['kernel']}/{r['backend']}",
                "kv_Bps": r["kv_Bps"],
                "eff_vs_ceiling": r["kv_Bps"] / copy_bps if copy_bps else None,
            }
    return best


def _summarize_steps(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_layer: dict[int, float] = {}
    per_kernel: dict[int, float] = {}
    issue: dict[int, float] = {}
    by_b: dict[int, dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r.get("graph_s") is not None:
            by_b.setdefault(r["batch"], {})[r["layers"]] = r
    for b, by_l in by_b.items():
        ls = sorted(by_l)
        if len(ls) >= 2:
            lo, hi = by_l[ls[0]], by_l[ls[-1]]
            per_layer[b] = (hi["eager_minus_graph_s"] - lo["eager_minus_graph_s"]) / (
                ls[-1] - ls[0]
            )
        top = by_l[ls[-1]]
        if top.get("kernels_per_step"):
            per_kernel[b] = top["eager_minus_graph_s"] / top["kernels_per_step"]
            issue[b] = top["host_issue_s"] / top["kernels_per_step"]
    return {
        "graph_saving_per_layer_s": per_layer,
        "graph_saving_per_kernel_s": per_kernel,
        "eager_host_issue_per_kernel_s": issue,
    }


def to_json(res: dict[str, Any]) -> str:
    """The result as JSON text (dictionary keys that are ints become strings)."""
    return json.dumps(res, indent=1, default=_jsonable)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)
