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

Imports only the standard library; torch is imported inside the functions, so that the CLI can
import this module on a machine without torch.  ``quick=True`` shrinks every shape so the
whole thing runs in seconds on a CPU (``allow_cpu=True``; what needs CUDA is recorded as
skipped) -- the schema test and the dry run use it.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "DATASHEET",
    "RESULT_FORMAT",
    "SECTIONS",
    "LayerShape",
    "gemm_shapes",
    "run_serving_profile",
    "summarize",
]

#: Format tag of the result dictionary (and of ``raw-*-serving.json``).
RESULT_FORMAT = "shardwise-serving-micro/1"
#: The measurement sections, in the order they run.
SECTIONS = ("ceilings", "launch", "step_overhead", "decode_attention", "prefill", "gemm")

#: H100 SXM5 80GB datasheet figures (NVIDIA H100 Tensor Core GPU datasheet, 2023: HBM3
#: 3.35 TB/s; dense BF16 989.4 and FP8 1978.9 TFLOP/s without sparsity).  Only for the
#: ``*_vs_datasheet`` ratios; the ``*_vs_measured`` ratios divide by ``ceilings``.
DATASHEET = {"hbm_Bps": 3.35e12, "bf16_flops": 989.4e12, "fp8_flops": 1978.9e12}

#: Token counts of the GEMM sweep (issue #16 item 1).
GEMM_M = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
#: Decode attention grid: batch x context (issue #16 item 1).
ATTN_BATCH = (1, 8, 32, 128)
ATTN_CONTEXT = (512, 2048, 8192, 32768)
#: Largest K + V cache one attention case may allocate (a whole H100 holds 80 GB).
ATTN_MAX_KV_BYTES = 20e9
#: Step-overhead grid: decoder layers x batch, static KV cache length.
STEP_LAYERS = (4, 8)
STEP_BATCH = (1, 8, 32, 64, 128)
STEP_CONTEXT = 1024
#: Prefill token counts (batch 1).
PREFILL_TOKENS = (128, 256, 512, 1024, 2048)
#: One replay reads at least this many bytes of rotated inputs (4x the H100's 50 MB L2).
ROTATE_BYTES = 200e6
#: Aim of one timed replay (long enough that event resolution, ~0.5 us, does not matter).
REPLAY_TARGET_S = 2e-3


@dataclass(frozen=True)
class LayerShape:
    """One decoder layer's shard: Llama-3 shapes, heads and FFN divided by ``tp``.

    Sources: ``models/llama3-8b.yaml`` and ``models/llama3-70b.yaml`` (Llama 3 herd paper,
    arXiv:2407.21783, Table 3); ``tests/test_profile_serving.py`` checks they agree.
    """

    name: str
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    tp: int = 1

    @property
    def q_heads(self) -> int:
        return self.heads // self.tp

    @property
    def kv_local(self) -> int:
        return max(1, self.kv_heads // self.tp)

    @property
    def ffn_local(self) -> int:
        return self.ffn // self.tp

    def gemms(self) -> dict[str, tuple[int, int]]:
        """``name: (N, K)`` of ``x[M, K] @ W[N, K]^T``: QKV and gate_up split N (column
        parallel), O and down split K (row parallel), Megatron-style."""
        d = self.head_dim
        return {
            "qkv": ((self.q_heads + 2 * self.kv_local) * d, self.hidden),
            "o": (self.hidden, self.q_heads * d),
            "gate_up": (2 * self.ffn_local, self.hidden),
            "down": (self.hidden, self.ffn_local),
        }


LLAMA3_8B = LayerShape("llama3-8b", 4096, 14336, 32, 8, 128)
LLAMA3_70B = LayerShape("llama3-70b", 8192, 28672, 64, 8, 128)
#: A shape small enough for a CPU dry run (``quick``).
TINY = LayerShape("tiny", 256, 512, 8, 2, 32)


def gemm_shapes(quick: bool = False) -> list[tuple[LayerShape, str, int, int]]:
    """``(layer, gemm name, N, K)`` of the sweep: 8B at TP 1, 70B at TP 1/2/4/8."""
    layers = [TINY] if quick else [LLAMA3_8B] + [_tp(LLAMA3_70B, t) for t in (1, 2, 4, 8)]
    return [(ly, g, n, k) for ly in layers for g, (n, k) in ly.gemms().items()]


def _tp(shape: LayerShape, tp: int) -> LayerShape:
    return LayerShape(
        shape.name, shape.hidden, shape.ffn, shape.heads, shape.kv_heads, shape.head_dim, tp
    )


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
    ctx = _Ctx(torch.device("cuda" if torch.cuda.is_available() else "cpu"), quick, log)
    res: dict[str, Any] = {"format": RESULT_FORMAT, "meta": _meta(ctx)}
    runners: dict[str, Callable[[_Ctx, dict[str, Any]], Any]] = {
        "ceilings": lambda c, r: _ceilings(c),
        "gemm": lambda c, r: _gemm_section(c),
        "decode_attention": lambda c, r: _attention_section(c),
        "step_overhead": lambda c, r: _step_section(c),
        "launch": lambda c, r: _launch_section(c),
        "prefill": lambda c, r: _prefill_section(c),
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
        _release(ctx)
        res.setdefault("section_wall_s", {})[name] = round(time.perf_counter() - ts, 2)
        res.setdefault("gpu_state", {})[f"after_{name}"] = _nvsmi(ctx)
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


class _Ctx:
    """Device, mode and the timing rules of one run."""

    def __init__(
        self, device: torch.device, quick: bool, log: Callable[[str], None] | None
    ) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.quick = quick
        self.repeats = 3 if quick else 7
        self.warmup = 1 if quick else 2
        self._log = log
        self._t0 = time.perf_counter()
        self.deadline: float | None = None

    def late(self) -> bool:
        """Past the run's budget (the GEMM sweep stops between shapes)."""
        return self.deadline is not None and time.perf_counter() > self.deadline

    def say(self, msg: str) -> None:
        if self._log is not None:
            self._log(f"[{time.perf_counter() - self._t0:7.1f}s] {msg}")


# ----------------------------------------------------------------------------- environment


def _meta(ctx: _Ctx) -> dict[str, Any]:
    import torch

    meta: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": getattr(torch.version, "cuda", None),
        "cudnn": torch.backends.cudnn.version() if ctx.cuda else None,  # type: ignore[no-untyped-call]
        "device": str(ctx.device),
        "quick": ctx.quick,
        "datasheet": DATASHEET,
        "timing": (
            "CUDA-graph replay of back-to-back calls between CUDA events, median of repeats / "
            "calls per replay; inputs rotated over > 4x L2"
        ),
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        meta.update(
            gpu=p.name,
            gpu_sm_count=p.multi_processor_count,
            gpu_total_memory_bytes=p.total_memory,
            gpu_l2_bytes=getattr(p, "L2_cache_size", None),
            gpu_capability=[p.major, p.minor],
        )
    meta["nvidia_smi"] = _nvsmi(ctx)
    return meta


_SMI_FIELDS = (
    "name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit,"
    "temperature.gpu,clocks_event_reasons.active"
)


def _nvsmi(ctx: _Ctx) -> str | None:
    """One ``nvidia-smi`` reading (clocks, power, throttle reasons); None without a GPU."""
    if not ctx.cuda:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return (out.stdout.strip() or out.stderr.strip())[:400]
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e!r}"[:200]


def _release(ctx: _Ctx) -> None:
    import gc

    import torch

    gc.collect()
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- timing


def _time_calls(ctx: _Ctx, calls: Sequence[Callable[[], Any]], est_s: float) -> dict[str, Any]:
    """Seconds per call of ``calls`` (cycled), CUDA-graph replay if possible.

    ``est_s`` is a guess of one call's time, used only to size a replay to about
    :data:`REPLAY_TARGET_S`.  Returns ``s`` (median), ``spread`` ((max - min) / median over
    the repeats), ``inner`` (calls per replay) and ``how`` (``graph``, ``eager-loop`` or
    ``cpu``).
    """

    inner = max(len(calls), min(400, math.ceil(REPLAY_TARGET_S / max(est_s, 1e-7))))
    if ctx.quick:
        inner = len(calls)

    def loop() -> None:
        for i in range(inner):
            calls[i % len(calls)]()

    for c in calls:  # warm-up: handles, workspaces, autotuning outside the capture
        c()
    how = "cpu"
    run: Callable[[], None] = loop
    graph = None
    if ctx.cuda:
        how = "graph"
        try:
            graph, _ = _capture(loop)
            run = graph.replay
        except Exception as e:  # noqa: BLE001 -- some kernels cannot be captured
            how = f"eager-loop (capture failed: {type(e).__name__})"
            run = loop
    for _ in range(ctx.warmup):
        run()
    times = [_timed(ctx, run) / inner for _ in range(ctx.repeats)]
    del graph
    med = statistics.median(times)
    return {
        "s": med,
        "spread": (max(times) - min(times)) / med if med > 0 else None,
        "inner": inner,
        "how": how,
    }


def _capture(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """A CUDA graph of one call of ``fn`` and the (static) output that call returned."""
    import torch

    torch.cuda.synchronize()
    s = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()  # warm-up on the side stream, as torch.cuda.graphs' docs require
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    torch.cuda.synchronize()
    return g, out


def _timed(ctx: _Ctx, fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``: CUDA events on a GPU, wall clock on a CPU."""
    import torch

    if not ctx.cuda:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    a = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    b = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    a.record()
    fn()
    b.record()
    b.synchronize()
    return float(a.elapsed_time(b)) / 1e3


def _copies(one_bytes: float, quick: bool) -> int:
    """How many copies of an input rotate so that one pass reads :data:`ROTATE_BYTES`."""
    if quick:
        return 2
    return max(1, min(64, math.ceil(ROTATE_BYTES / max(one_bytes, 1.0))))


def _randn(shape: Sequence[int], ctx: _Ctx, dtype: Any, scale: float = 1.0) -> torch.Tensor:
    import torch

    return (torch.randn(*shape, device=ctx.device, dtype=torch.float32) * scale).to(dtype)


def _rel_err(out: Any, ref: Any) -> float:
    """``||out - ref|| / ||ref||`` in float64 (NaN if either has a NaN)."""
    o, r = out.double(), ref.double()
    return float((o - r).norm() / r.norm().clamp_min(1e-300))


# ----------------------------------------------------------------------------- ceilings


def _ceilings(ctx: _Ctx) -> dict[str, Any]:
    """HBM copy bandwidth (read + write) and the large-GEMM rates in bf16 and fp8."""
    import torch

    n = (1 << 20) if ctx.quick else (1 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=ctx.device).random_(0, 255)
    dst = torch.empty_like(src)
    cp = _time_calls(ctx, [lambda: dst.copy_(src)], 2 * n / DATASHEET["hbm_Bps"])
    out: dict[str, Any] = {
        "copy_bytes": n,
        "copy_s": cp["s"],
        "copy_read_plus_write_Bps": 2 * n / cp["s"],
        "copy_how": cp["how"],
    }
    # Read-only streams (what a decode GEMM or attention kernel does): reductions of the
    # same bytes viewed as bf16; the faster is the measured read ceiling.
    xb = src.view(torch.bfloat16)
    for name, op in (("sum", lambda: xb.sum(dtype=torch.float32)), ("amax", xb.amax)):
        r = _time_calls(ctx, [op], n / DATASHEET["hbm_Bps"])
        out[f"read_{name}_Bps"] = n / r["s"]
    out["read_Bps"] = max(out["read_sum_Bps"], out["read_amax_Bps"])
    m = 256 if ctx.quick else 8192
    a = _randn((m, m), ctx, torch.bfloat16)
    w = _randn((m, m), ctx, torch.bfloat16)
    flops = 2.0 * m**3
    mm = _time_calls(ctx, [lambda: torch.mm(a, w.t())], flops / DATASHEET["bf16_flops"])
    out.update(square_m=m, bf16_square_s=mm["s"], bf16_square_flops=flops / mm["s"])
    try:
        f8 = _fp8_operands(a, w)
        t8 = _time_calls(ctx, [lambda: _scaled_mm(f8, "tensorwise")], flops / 1.5e15)
        out.update(fp8_square_s=t8["s"], fp8_square_flops=flops / t8["s"])
    except Exception as e:  # noqa: BLE001 -- no fp8 GEMM on this device
        out["fp8_square_error"] = repr(e)[:300]
    return out


# ----------------------------------------------------------------------------- GEMM sweep


def _mm_t(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.mm(x, w.t())


def _fp8_operands(x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """e4m3 operands and unit scales for ``torch._scaled_mm`` (W column-major via ``.t()``)."""
    import torch

    f8 = torch.float8_e4m3fn
    m, n = x.shape[0], w.shape[0]
    one = torch.ones((), device=x.device, dtype=torch.float32)
    return {
        "x": x.to(f8),
        "w": w if w.dtype == f8 else w.to(f8),
        "one": one,
        "sa": torch.ones(m, 1, device=x.device, dtype=torch.float32),
        "sb": torch.ones(1, n, device=x.device, dtype=torch.float32),
    }


def _scaled_mm(f: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
    import torch

    sa, sb = (f["one"], f["one"]) if mode == "tensorwise" else (f["sa"], f["sb"])
    out: torch.Tensor = torch._scaled_mm(
        f["x"], f["w"].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16
    )
    return out


def _gemm_section(ctx: _Ctx) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ms = (1, 4, 16) if ctx.quick else GEMM_M
    for layer, name, n, k in gemm_shapes(ctx.quick):
        if ctx.late():
            rows.append({"model": layer.name, "tp": layer.tp, "gemm": name, "n": n, "k": k,
                         "skipped": "budget"})  # fmt: skip
            continue
        rows += _gemm_shape(ctx, layer, name, n, k, ms)
        _release(ctx)
        ctx.say(f"gemm {layer.name}/tp{layer.tp}/{name}: {_gemm_brief(rows[-3 * len(ms) :])}")
    ctx.say(f"gemm: {len(rows)} rows")
    return rows


def _gemm_brief(rows: list[dict[str, Any]]) -> str:
    """Weight-stream TB/s of the bf16 rows at a few M (for the log)."""
    return " ".join(
        f"M{r['m']}:{r['weight_Bps'] / 1e12:.2f}TB/s"
        for r in rows
        if r.get("dtype") == "bf16" and "s" in r and r["m"] in (1, 16, 128, 1024)
    )


def _gemm_shape(
    ctx: _Ctx, layer: LayerShape, name: str, n: int, k: int, ms: Sequence[int]
) -> list[dict[str, Any]]:
    """All M and dtypes of one weight shape (the weights rotate over copies beyond L2)."""
    import torch

    w_bf16 = [
        _randn((n, k), ctx, torch.bfloat16, 0.02) for _ in range(_copies(2 * n * k, ctx.quick))
    ]
    try:
        w_fp8: list[torch.Tensor] | None = [
            _randn((n, k), ctx, torch.bfloat16, 0.02).to(torch.float8_e4m3fn)
            for _ in range(_copies(n * k, ctx.quick))
        ]
    except Exception:  # noqa: BLE001 -- no fp8 dtype here: the fp8 rows say so
        w_fp8 = None
    rows = [_gemm_check(ctx, layer, name, n, k, w_bf16[0])]
    for m in ms:
        x = _randn((m, k), ctx, torch.bfloat16)
        base = {"model": layer.name, "tp": layer.tp, "gemm": name, "m": m, "n": n, "k": k}
        flops = 2.0 * m * n * k
        calls = [functools.partial(_mm_t, x, w) for w in w_bf16]
        rows.append(_gemm_row(ctx, base, "bf16", calls, flops, 2, m, n, k))
        for mode in ("tensorwise", "rowwise"):
            rows.append(_fp8_row(ctx, base, mode, x, w_fp8, flops, m, n, k))
    return rows


def _gemm_check(
    ctx: _Ctx, layer: LayerShape, name: str, n: int, k: int, w: torch.Tensor
) -> dict[str, Any]:
    """Relative error of bf16 and fp8 (both scale modes) against a float64 product, M = 16."""
    import torch

    x = _randn((16, k), ctx, torch.bfloat16)
    ref = x.double() @ w.double().t()
    row: dict[str, Any] = {"model": layer.name, "tp": layer.tp, "gemm": name, "m": 16,
                           "n": n, "k": k, "dtype": "check",
                           "bf16_rel_err": _rel_err(torch.mm(x, w.t()), ref)}  # fmt: skip
    for mode in ("tensorwise", "rowwise"):
        try:
            row[f"fp8_{mode}_rel_err"] = _rel_err(_scaled_mm(_fp8_operands(x, w), mode), ref)
        except Exception as e:  # noqa: BLE001
            row[f"fp8_{mode}_rel_err"] = repr(e)[:200]
    return row


def _fp8_row(
    ctx: _Ctx,
    base: dict[str, Any],
    mode: str,
    x: torch.Tensor,
    w_fp8: list[torch.Tensor] | None,
    flops: float,
    m: int,
    n: int,
    k: int,
) -> dict[str, Any]:
    """One fp8 row: e4m3 activation and weights, unit scales per tensor or per row."""
    try:
        if w_fp8 is None:
            raise RuntimeError("torch.float8_e4m3fn tensors cannot be made here")
        ops = [_fp8_operands(x, w) for w in w_fp8]
        calls = [lambda f=f: _scaled_mm(f, mode) for f in ops]
        return _gemm_row(ctx, base, f"fp8_{mode}", calls, flops, 1, m, n, k)
    except Exception as e:  # noqa: BLE001 -- e.g. no fp8 kernel for this shape or device
        return {**base, "dtype": f"fp8_{mode}", "error": repr(e)[:300]}


def _gemm_row(
    ctx: _Ctx,
    base: dict[str, Any],
    dtype: str,
    calls: Sequence[Callable[[], Any]],
    flops: float,
    wbytes_per: int,
    m: int,
    n: int,
    k: int,
) -> dict[str, Any]:
    wbytes = float(wbytes_per * n * k)
    peak = DATASHEET["fp8_flops" if wbytes_per == 1 else "bf16_flops"]
    est = max(wbytes / DATASHEET["hbm_Bps"], flops / (0.8 * peak)) + 3e-6
    try:
        t = _time_calls(ctx, calls, est)
    except Exception as e:  # noqa: BLE001
        return {**base, "dtype": dtype, "error": repr(e)[:300]}
    s = t["s"]
    io_bytes = wbytes + wbytes_per * m * k + 2.0 * m * n
    return {
        **base,
        "dtype": dtype,
        "s": s,
        "spread": t["spread"],
        "how": t["how"],
        "flops": flops / s,
        "weight_bytes": wbytes,
        "weight_Bps": wbytes / s,
        "io_Bps": io_bytes / s,
        "weight_Bps_vs_datasheet": wbytes / s / DATASHEET["hbm_Bps"],
        "flops_vs_datasheet": flops / s / peak,
    }


# ----------------------------------------------------------------------------- attention


def _attention_section(ctx: _Ctx) -> dict[str, Any]:

    heads, kv, d = (8, 2, 32) if ctx.quick else (64, 8, 128)
    grid = [(b, c) for b in ((1, 2) if ctx.quick else ATTN_BATCH)
            for c in ((64, 256) if ctx.quick else ATTN_CONTEXT)]  # fmt: skip
    libs = _optional_libs()
    rows: list[dict[str, Any]] = []
    for b, c in grid:
        kv_bytes = 2.0 * b * c * kv * d * 2
        if kv_bytes > ATTN_MAX_KV_BYTES:
            rows.append({"batch": b, "context": c, "skipped": f"KV {kv_bytes / 1e9:.1f} GB"})
            continue
        rows += _attention_case(ctx, b, c, heads, kv, d, libs)
        _release(ctx)
    ctx.say(f"decode attention: {len(rows)} rows")
    return {"heads": heads, "kv_heads": kv, "head_dim": d, "libraries": libs, "rows": rows}


def _optional_libs() -> dict[str, str | None]:
    """Versions of the paged/decode attention packages that import here (None if absent)."""
    out: dict[str, str | None] = {}
    for mod in ("flash_attn", "flashinfer"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001 -- absent or broken: either way not used
            out[mod] = None
    return out


def _attention_case(
    ctx: _Ctx, b: int, c: int, heads: int, kv: int, d: int, libs: dict[str, str | None]
) -> list[dict[str, Any]]:
    """Every kernel variant on one (batch, context); K/V rotated over copies beyond L2."""
    import torch

    kv_bytes = 2.0 * b * c * kv * d * 2
    n_copies = _copies(kv_bytes, ctx.quick)
    caches = [
        (_randn((b, kv, c, d), ctx, torch.bfloat16), _randn((b, kv, c, d), ctx, torch.bfloat16))
        for _ in range(n_copies)
    ]
    q = _randn((b, heads, 1, d), ctx, torch.bfloat16)
    base = {"batch": b, "context": c, "kv_bytes": kv_bytes, "kv_dtype": "bf16"}
    ref = _attention_ref(q, *caches[0]) if kv_bytes <= 1e9 else None
    rows = []
    for variant, backend in _attention_variants(ctx):
        fn = _attention_fn(variant, backend, q, heads, kv)
        calls = [functools.partial(fn, kk, vv) for kk, vv in caches]
        row = _attention_row(ctx, base, variant, backend, calls)
        if ref is not None and "s" in row:
            row["rel_err"] = _rel_err(fn(*caches[0]).reshape(ref.shape), ref)
        rows.append(row)
    if libs.get("flash_attn") and ctx.cuda:
        rows.append(_flash_attn_row(ctx, base, q, caches))
    rows.append(_fp8_kv_row(ctx, base, q, caches[0]))
    return rows


def _attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of one query token in float32, query heads grouped per KV head."""
    b, heads, _, d = q.shape
    kv = k.shape[1]
    qg = q.float().reshape(b, kv, heads // kv, d)
    p = (qg @ k.float().transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    return (p @ v.float()).reshape(b, heads, 1, d)


def _attention_variants(ctx: _Ctx) -> list[tuple[str, str]]:
    backends = ("default", "flash", "efficient", "cudnn") if ctx.cuda else ("default",)
    return [(v, bk) for v in ("sdpa_gqa", "sdpa_grouped") for bk in backends]


def _attention_fn(
    variant: str, backend: str, q: torch.Tensor, heads: int, kv: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(K, V) -> out`` for one variant: ``enable_gqa`` over [b, H, 1, d], or the H / KV
    query heads of each KV head folded into the query length ([b, KV, H / KV, d], no mask:
    one decode token attends to the whole cache), the layout decode kernels use."""
    import torch.nn.functional as F

    b, _, _, d = q.shape
    qg = q.reshape(b, kv, heads // kv, d)

    def run(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with _sdpa_backend(backend):
            if variant == "sdpa_gqa":
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return F.scaled_dot_product_attention(qg, k, v)

    return run


def _sdpa_backend(backend: str) -> Any:
    import contextlib

    if backend == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pick = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[backend]
    return sdpa_kernel([pick])


def _attention_row(
    ctx: _Ctx,
    base: dict[str, Any],
    variant: str,
    backend: str,
    calls: Sequence[Callable[[], Any]],
) -> dict[str, Any]:
    row = {**base, "kernel": variant, "backend": backend}
    try:
        t = _time_calls(ctx, calls, base["kv_bytes"] / DATASHEET["hbm_Bps"] + 5e-6)
    except Exception as e:  # noqa: BLE001 -- backend refuses this layout
        return {**row, "error": repr(e)[:300]}
    return {
        **row,
        "s": t["s"],
        "spread": t["spread"],
        "how": t["how"],
        "kv_Bps": base["kv_bytes"] / t["s"],
        "kv_Bps_vs_datasheet": base["kv_bytes"] / t["s"] / DATASHEET["hbm_Bps"],
    }


def _flash_attn_row(
    ctx: _Ctx,
    base: dict[str, Any],
    q: torch.Tensor,
    caches: list[tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, Any]:
    """``flash_attn_with_kvcache`` (layout [b, s, heads, d]) where the package imports."""
    try:
        from flash_attn import flash_attn_with_kvcache

        qs = q.transpose(1, 2).contiguous()
        kvs = [(k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()) for k, v in caches]
        calls = [lambda k=k, v=v: flash_attn_with_kvcache(qs, k, v) for k, v in kvs]
        return _attention_row(ctx, base, calls=calls, variant="flash_attn_kvcache",
                              backend="flash_attn")  # fmt: skip
    except Exception as e:  # noqa: BLE001
        return {**base, "kernel": "flash_attn_kvcache", "error": repr(e)[:300]}


def _fp8_kv_row(
    ctx: _Ctx, base: dict[str, Any], q: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    """SDPA over an e4m3 K/V cache: recorded, also when torch has no kernel for it."""
    import torch
    import torch.nn.functional as F

    row = {**base, "kv_dtype": "fp8_e4m3", "kv_bytes": base["kv_bytes"] / 2,
           "kernel": "sdpa_gqa", "backend": "default"}  # fmt: skip
    try:
        k8, v8 = (t.to(torch.float8_e4m3fn) for t in cache)
        q8 = q.to(torch.float8_e4m3fn)
        F.scaled_dot_product_attention(q8, k8, v8, enable_gqa=True)
    except Exception as e:  # noqa: BLE001 -- the expected outcome in torch <= 2.11
        return {**row, "error": repr(e)[:300]}
    return _attention_row(ctx, row, "sdpa_gqa", "default", [
        lambda: F.scaled_dot_product_attention(q8, k8, v8, enable_gqa=True)])  # fmt: skip


# ----------------------------------------------------------------------------- decoder


class _Decoder:
    """Plain-tensor Llama decoder layers (RMSNorm, fused QKV, rotate-half RoPE, SDPA, SwiGLU).

    ``step`` runs one decode token per sequence at position ``pos`` (a device tensor, so a
    captured graph replays at any position) over a static K/V cache of ``ctx_len`` slots;
    ``prefill`` runs ``T`` tokens of one sequence with causal attention.  The decode step
    attends to all ``ctx_len`` slots: a fixed-cost stand-in for a cache filled to that length.
    """

    def __init__(self, ctx: _Ctx, shape: LayerShape, layers: int, max_pos: int) -> None:
        import torch

        self.s, self.ctx = shape, ctx
        g = shape.gemms()
        bf = torch.bfloat16
        self.w = [
            {name: _randn(nk, ctx, bf, 0.02) for name, nk in g.items()}
            | {"n1": torch.ones(shape.hidden, device=ctx.device, dtype=bf),
               "n2": torch.ones(shape.hidden, device=ctx.device, dtype=bf)}
            for _ in range(layers)
        ]  # fmt: skip
        d = shape.head_dim
        inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=ctx.device).float() / d))
        ang = torch.outer(torch.arange(max_pos, device=ctx.device).float(), inv)
        ang = torch.cat([ang, ang], -1)
        self.cos, self.sin = ang.cos().to(bf), ang.sin().to(bf)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        import torch

        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        import torch

        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

    def _mlp(self, h: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        gu = self._rms(h, w["n2"]) @ w["gate_up"].t()
        g, u = gu.chunk(2, -1)
        return h + (F.silu(g) * u) @ w["down"].t()

    def _qkv(
        self, x: torch.Tensor, w: dict[str, torch.Tensor], cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[b, s, hidden] -> q [b, H, s, d], k and v [b, KV, s, d], RoPE applied."""
        s, (b, t, _) = self.s, x.shape
        d, hq, hk = s.head_dim, s.q_heads, s.kv_local
        qkv = self._rms(x, w["n1"]) @ w["qkv"].t()
        q, k, v = qkv.split([hq * d, hk * d, hk * d], -1)  # type: ignore[no-untyped-call]
        q = self._rope(q.view(b, t, hq, d).transpose(1, 2), cos, sin)
        k = self._rope(k.view(b, t, hk, d).transpose(1, 2), cos, sin)
        return q, k, v.view(b, t, hk, d).transpose(1, 2)

    def step(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        layers: int,
    ) -> torch.Tensor:
        import torch.nn.functional as F

        s, b = self.s, x.shape[0]
        cos, sin = self.cos.index_select(0, pos), self.sin.index_select(0, pos)
        h = x
        for w, (kc, vc) in zip(self.w[:layers], cache, strict=False):
            q, k, v = self._qkv(h, w, cos, sin)
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            qg = q.reshape(b, s.kv_local, s.q_heads // s.kv_local, s.head_dim)
            o = F.scaled_dot_product_attention(qg, kc, vc)
            h = h + o.reshape(b, 1, s.q_heads * s.head_dim) @ w["o"].t()
            h = self._mlp(h, w)
        return h

    def prefill(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        s, (b, t, _) = self.s, x.shape
        cos, sin = self.cos[:t], self.sin[:t]
        h = x
        for w in self.w:
            q, k, v = self._qkv(h, w, cos, sin)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            h = h + o.transpose(1, 2).reshape(b, t, s.q_heads * s.head_dim) @ w["o"].t()
            h = self._mlp(h, w)
        return h


def _count_kernels(ctx: _Ctx, fn: Callable[[], Any]) -> int | None:
    """GPU kernels (and memcpy/memset) one call of ``fn`` launches (torch.profiler)."""
    if not ctx.cuda:
        return None
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA"))
    except Exception:  # noqa: BLE001 -- profiler unavailable: the count is optional
        return None


def _eager_time(ctx: _Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """One call of ``fn`` timed eagerly: a loop of ``n_steps`` back to back (``eager_s``)
    and the host's time to issue one call after a synchronise (``host_issue_s``)."""
    import torch

    for _ in range(ctx.warmup + 1):
        fn()

    def loop() -> None:
        for _ in range(n_steps):
            fn()

    eager = statistics.median(_timed(ctx, loop) for _ in range(ctx.repeats)) / n_steps
    issue = []
    for _ in range(ctx.repeats * 3):
        if ctx.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        issue.append(time.perf_counter() - t)
    return {"eager_s": eager, "host_issue_s": statistics.median(issue)}


def _graph_time(ctx: _Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """One call of ``fn`` replayed from a CUDA graph (``graph_s``), and the replay's output
    against an eager call's (``graph_vs_eager_rel_err``, 0 when the kernels are the same)."""
    import torch

    if not ctx.cuda:
        return {"graph_s": None, "graph": "skipped: no CUDA"}
    ref = fn()
    g, static = _capture(fn)
    for _ in range(ctx.warmup):
        g.replay()
    torch.cuda.synchronize()

    def replays() -> None:
        for _ in range(n_steps):
            g.replay()

    graph = statistics.median(_timed(ctx, replays) for _ in range(ctx.repeats)) / n_steps
    return {"graph_s": graph, "graph_vs_eager_rel_err": _rel_err(static, ref)}


def _eager_and_graph(ctx: _Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """:func:`_eager_time` then :func:`_graph_time` of one call, and their difference."""
    out = _eager_time(ctx, fn, n_steps) | _graph_time(ctx, fn, n_steps)
    if out["graph_s"] is not None:
        out["eager_minus_graph_s"] = out["eager_s"] - out["graph_s"]
    return out


def _step_section(ctx: _Ctx) -> list[dict[str, Any]]:
    """Decode step of 4 and 8 Llama-3-8B layers, eager vs CUDA graph, per batch.

    In phases, so that no graph capture or profiler session precedes an eager timing: every
    case eagerly, then every case graphed, then the kernel counts (torch.profiler), then the
    first case eagerly again and a one-element kernel's eager issue time (``*_end`` keys of
    the first row: the host's drift over the section).
    """
    import torch

    shape = TINY if ctx.quick else LLAMA3_8B
    layer_counts = (1, 2) if ctx.quick else STEP_LAYERS
    batches = (1, 2) if ctx.quick else STEP_BATCH
    c_len = 64 if ctx.quick else STEP_CONTEXT
    n_steps = 3 if ctx.quick else 30
    dec = _Decoder(ctx, shape, max(layer_counts), c_len)
    pos = torch.tensor([c_len // 2], device=ctx.device)
    cases: list[tuple[dict[str, Any], Callable[[], Any]]] = []
    for b in batches:
        cache = [
            (_randn((b, shape.kv_local, c_len, shape.head_dim), ctx, torch.bfloat16),
             _randn((b, shape.kv_local, c_len, shape.head_dim), ctx, torch.bfloat16))
            for _ in range(max(layer_counts))
        ]  # fmt: skip
        x = _randn((b, 1, shape.hidden), ctx, torch.bfloat16)
        for n_layers in layer_counts:
            row: dict[str, Any] = {"model": shape.name, "layers": n_layers, "batch": b}
            row["context"] = c_len
            cases.append((row, functools.partial(dec.step, x, pos, cache, n_layers)))
    with torch.inference_mode():
        for row, fn in cases:
            row.update(_eager_time(ctx, fn, n_steps))
        for row, fn in cases:
            row.update(_graph_time(ctx, fn, n_steps))
            if row["graph_s"] is not None:
                row["eager_minus_graph_s"] = row["eager_s"] - row["graph_s"]
            row["kernels_per_step"] = _count_kernels(ctx, fn)
            ctx.say(f"step L{row['layers']} b{row['batch']}: {_fmt(row)}")
        first, fn0 = cases[0]
        end = _eager_time(ctx, fn0, n_steps)
        first.update(eager_s_end=end["eager_s"], host_issue_s_end=end["host_issue_s"])
        first["tiny_kernel_issue_s_end"] = _tiny_issue(ctx)
    return [row for row, _ in cases]


def _tiny_issue(ctx: _Ctx, n: int = 2000) -> float:
    """Host seconds to issue one one-element ``add_`` eagerly, back to back."""
    import torch

    t = torch.zeros(1, device=ctx.device)

    def many() -> None:
        for _ in range(n):
            t.add_(1.0)

    def sync() -> None:
        if ctx.cuda:
            torch.cuda.synchronize()

    many()
    return statistics.median(_wall(many, sync) for _ in range(ctx.repeats)) / n


def _fmt(t: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v * 1e6:.1f}us" for k, v in t.items() if isinstance(v, float) and k.endswith("_s")
    )


# ----------------------------------------------------------------------------- launch


def _launch_section(ctx: _Ctx) -> dict[str, Any]:
    """Launch cost of a one-element kernel: eager back-to-back (host issue rate), eager with a
    synchronise each (round trip), inside a 2000-node graph, and a one-node graph's launch."""
    import torch

    n = 50 if ctx.quick else 2000
    t = torch.zeros(1, device=ctx.device)

    def one() -> None:
        t.add_(1.0)

    def many() -> None:
        for _ in range(n):
            one()

    def sync() -> None:
        if ctx.cuda:
            torch.cuda.synchronize()

    many()
    sync()
    out: dict[str, Any] = {"kernels": n}
    out["eager_back_to_back_s"] = statistics.median(
        _wall(many, sync) for _ in range(ctx.repeats)) / n  # fmt: skip

    def roundtrips() -> None:
        for _ in range(n // 10):
            one()
            sync()

    out["eager_roundtrip_s"] = statistics.median(
        _wall(roundtrips, sync) for _ in range(ctx.repeats)) / (n // 10)  # fmt: skip
    if not ctx.cuda:
        return {**out, "graph": "skipped: no CUDA"}
    g, _ = _capture(many)
    out["graph_per_kernel_s"] = statistics.median(
        _timed(ctx, g.replay) for _ in range(ctx.repeats)) / n  # fmt: skip
    g1, _ = _capture(one)

    def replays() -> None:
        for _ in range(n // 10):
            g1.replay()

    out["graph1_launch_back_to_back_s"] = statistics.median(
        _wall(replays, sync) for _ in range(ctx.repeats)) / (n // 10)  # fmt: skip
    return out


def _wall(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- prefill


def _prefill_section(ctx: _Ctx) -> list[dict[str, Any]]:
    """One layer forward (batch 1, causal) at small token counts, eager and graphed."""
    import torch

    shapes = [TINY] if ctx.quick else [LLAMA3_8B, _tp(LLAMA3_70B, 8)]
    tokens = (16, 32) if ctx.quick else PREFILL_TOKENS
    rows = []
    for shape in shapes:
        dec = _Decoder(ctx, shape, 1, max(tokens))
        for t in tokens:
            x = _randn((1, t, shape.hidden), ctx, torch.bfloat16)
            with torch.inference_mode():
                r = _eager_and_graph(ctx, functools.partial(dec.prefill, x), 3 if ctx.quick else 10)
            gemm_flops = 2.0 * t * sum(n * k for n, k in shape.gemms().values())
            attn_flops = 4.0 * t * t * shape.q_heads * shape.head_dim * (t + 1) / (2 * t)
            best = r["graph_s"] or r["eager_s"]
            rows.append({"model": shape.name, "tp": shape.tp, "tokens": t,
                         "gemm_flops": gemm_flops, "attn_flops_causal": attn_flops,
                         "flops_graph": (gemm_flops + attn_flops) / best, **r})  # fmt: skip
            ctx.say(f"prefill {shape.name}/tp{shape.tp} T{t}: {_fmt(r)}")
        _release(ctx)
    return rows


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
