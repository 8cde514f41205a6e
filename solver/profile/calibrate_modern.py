"""A per-term calibration from the modern runner's micro-benchmarks (``solver/profile/modern.py``).

Only what the run measured is replaced; every other field stays ``None``, so the catalog's
value (or another calibration's) keeps pricing it:

* ``gemm_table`` -- every bf16 GEMM the run timed (the Llama/GPT block shapes in their
  forward, data-gradient and weight-gradient passes, plus an 8192^3 square), as
  ``[m, k, n, TFLOP/s]`` of ``(m x k) @ (k x n)``; ``gemm_efficiency`` is the best of them over
  the 16-bit peak (the run's MAMF).  ``gemm_realization`` -- how much of the isolated rate a
  whole step realises -- is not measured by a micro-benchmark and stays the catalog's;
* ``memory_efficiency`` -- ``copy_`` of 1 GiB, read + write bytes over the time, over the
  catalog bandwidth;
* ``attention_efficiency`` / ``attention_backward_efficiency`` -- the asymptotes that fit the
  causal SDPA timings (default backend, MHA and GQA, every sequence length) with the global
  ``ATTENTION_HALF_RATE_SEQ``, by relative least squares.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import resolve_gpu
from ..costmodel import constants as C
from ..costmodel.compute import attention_saturation
from ..errors import SpecError
from ..specs import Calibration, GPUSpec

__all__ = ["MODERN_FORMAT", "calibration_from_modern", "is_modern_raw", "modern_gpu", "term_errors"]

#: The ``format`` of the raw JSON ``solver/profile/modern.py`` writes (its ``FORMAT``; a test
#: keeps the two equal -- that module imports torch, this one must not).
MODERN_FORMAT = "shardwise-modern-profile/1"


def is_modern_raw(doc: Any) -> bool:
    """Whether ``doc`` is a raw JSON of the modern runner."""
    return isinstance(doc, dict) and doc.get("format") == MODERN_FORMAT


def modern_gpu(raw: dict[str, Any]) -> GPUSpec:
    """The catalog GPU a modern raw JSON was measured on (H100 or H200 by device name)."""
    dev = str(raw.get("env", {}).get("gpu", ""))
    for name in ("H200", "H100"):
        if name in dev:
            return resolve_gpu("H200-SXM-141GB" if name == "H200" else "H100-SXM5-80GB")
    raise SpecError(f"raw JSON: env.gpu: no catalog GPU for {dev!r} (measured on H100/H200)")


def _fraction(x: float) -> float:
    return float(min(1.0, max(1e-6, x)))


def _attention_asymptotes(
    sdpa: list[dict[str, Any]], peak: float, backend: str = "default"
) -> tuple[float, float] | None:
    """Least-squares (relative) asymptotes of forward and backward attention efficiency of
    one SDPA backend (``default``: what PyTorch dispatches to; ``flash``: FlashAttention-2)."""
    pts = [
        r
        for r in sdpa
        if r.get("status") == "ok" and r.get("backend") == backend
        and r.get("gqa") in ("mha", "enable_gqa") and r.get("bwd_ms_median")
    ]  # fmt: skip
    if not pts:
        return None
    s = np.array([float(r["seq"]) for r in pts])
    share = np.array([attention_saturation(x) for x in s])
    fwd = np.array([r["flops_fwd_causal"] / (r["fwd_ms_median"] * 1e-3) for r in pts]) / 1e12
    bwd = (
        np.array(
            [C.FLASH_BACKWARD_FLOP_FACTOR * r["flops_fwd_causal"] / (r["bwd_ms_median"] * 1e-3)
             for r in pts]
        )
        / 1e12
    )  # fmt: skip
    # y = a * share  ->  minimise sum((a share / y - 1)^2):  a = sum(share/y) / sum((share/y)^2)
    out = []
    for y in (fwd / peak, bwd / peak):
        r = share / y
        out.append(_fraction(float(r.sum() / (r * r).sum())))
    return out[0], out[1]


def calibration_from_modern(raw: dict[str, Any], *, source: str = "") -> Calibration:
    """The terms a modern raw JSON measured, as a :class:`~solver.specs.Calibration`."""
    micro = raw.get("micro")
    if not isinstance(micro, dict):
        raise SpecError("raw JSON: micro: no micro-benchmarks (run modern.py with section micro)")
    gpu = modern_gpu(raw)
    peak = gpu.bf16_tflops
    fields: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    gemms = [g for g in micro.get("gemm", []) if g.get("tflops")]
    if gemms:
        table = sorted({(int(g["m"]), int(g["k"]), int(g["n"])): round(float(g["tflops"]), 3)
                        for g in gemms}.items())  # fmt: skip
        fields["gemm_table"] = [[m, k, n, t] for (m, k, n), t in table]
        best = max(float(g["tflops"]) for g in gemms)
        fields["gemm_efficiency"] = _fraction(best / peak)
        measured["gemm_best_tflops"] = best
    copy = micro.get("copy")
    if isinstance(copy, dict) and copy.get("gbps_read_plus_write_median"):
        bw = float(copy["gbps_read_plus_write_median"])
        fields["memory_efficiency"] = _fraction(bw / gpu.memory_bandwidth_GBps)
        measured["copy_GBps"] = bw
    att = _attention_asymptotes(micro.get("sdpa", []), peak)
    if att is not None:
        fields["attention_efficiency"], fields["attention_backward_efficiency"] = att
    env = raw.get("env", {})
    meta = {k: env.get(k) for k in ("date_utc", "torch", "cuda", "cudnn", "gpu", "driver")}
    meta["source"] = source
    return Calibration(gpu=gpu.name, measured=measured, meta=meta, **fields)


def _err(pred: float, meas: float) -> float:
    return pred / meas - 1.0


def term_errors(raw: dict[str, Any], calibration: Calibration | None = None) -> dict[str, Any]:
    """Per-term error of the cost model's figures against a modern raw JSON's
    micro-benchmarks: each term priced as the cost model prices it in isolation, on the catalog
    GPU the run was measured on, with ``calibration``'s fields folded in when given (what a
    calibration leaves: its own terms reproduce their measurements, the rest keep the
    catalog's error).

    * ``gemm``: a bf16 GEMM's rate, peak x ``gemm_efficiency`` (the MAMF; a measured
      ``gemm_table`` rate where the GPU has one), capped by the HBM roof, against each timed
      shape (forward, data- and weight-gradient passes).  The step-level
      ``GEMM_REALIZATION_FRACTION`` is not a micro-benchmark term and is left out.
    * ``attention_fwd`` / ``attention_bwd``: the fused kernel's rate on executed (causal) FLOPs,
      16-bit peak x efficiency x ``s / (s + ATTENTION_HALF_RATE_SEQ)`` -- the cuDNN figures
      for the default and ``cudnn`` backends, the FlashAttention-2 ones for ``flash``.
    * ``hbm``: a 1 GiB ``copy_``, read + write bytes at bandwidth x ``memory_efficiency``.

    Returns ``{"rows": [{term, case, predicted, measured, unit, error}], "summary": {term:
    {n, mean_abs_error, max_abs_error}}}``.
    """
    from ..costmodel.gemm_table import gemm_rate_tflops
    from ..evaluate.calibration import apply_calibration

    micro = raw.get("micro")
    if not isinstance(micro, dict):
        raise SpecError("raw JSON: micro: no micro-benchmarks (run modern.py with section micro)")
    g = modern_gpu(raw)
    if calibration is not None:
        g = apply_calibration(g, calibration)
    peak = g.bf16_tflops
    hbm = g.memory_bandwidth_GBps * 1e9 * g.memory_efficiency
    rows: list[dict[str, Any]] = []
    for r in micro.get("gemm", []):
        if not r.get("tflops"):
            continue
        m, k, n = float(r["m"]), float(r["k"]), float(r["n"])
        rate = peak * g.gemm_efficiency
        if g.gemm_table is not None:
            rate = min(gemm_rate_tflops(g.gemm_table, (m, k, n)), rate)
        flops = 2.0 * m * k * n
        t = max(flops / (rate * 1e12), (m * k + k * n + m * n) * 2.0 / hbm)
        pred = flops / t / 1e12
        case = f"{r.get('model')} {r.get('gemm')} {r.get('pass')} {int(m)}x{int(k)}x{int(n)}"
        rows.append(dict(term="gemm", case=case, predicted=pred, measured=float(r["tflops"]),
                         unit="TFLOP/s", error=_err(pred, float(r["tflops"]))))  # fmt: skip
    for r in micro.get("sdpa", []):
        if r.get("status") != "ok" or not r.get("bwd_ms_median"):
            continue
        if r.get("gqa") not in ("mha", "enable_gqa"):
            continue  # "repeat" times the K/V copy too, not the kernel alone
        backend = str(r.get("backend"))
        if backend == "flash" and g.flash2_attention_efficiency is not None:
            fwd_e = g.flash2_attention_efficiency
            bwd_e = g.flash2_attention_backward_efficiency or fwd_e
        elif g.attention_efficiency is not None:
            fwd_e = g.attention_efficiency
            bwd_e = g.attention_backward_efficiency or fwd_e
        else:
            continue
        s = float(r["seq"])
        share = attention_saturation(s)
        case = f"H{r.get('heads')}/kv{r.get('kv_heads')} s{int(s)} {backend} {r.get('gqa')}"
        meas_f = float(r["flops_fwd_causal"]) / (float(r["fwd_ms_median"]) * 1e-3) / 1e12
        bwd_flops = C.FLASH_BACKWARD_FLOP_FACTOR * float(r["flops_fwd_causal"])
        meas_b = bwd_flops / (float(r["bwd_ms_median"]) * 1e-3) / 1e12
        for term, eff, meas in (("attention_fwd", fwd_e, meas_f), ("attention_bwd", bwd_e, meas_b)):
            pred = peak * eff * share
            rows.append(dict(term=term, case=case, predicted=pred, measured=meas,
                             unit="TFLOP/s", error=_err(pred, meas)))  # fmt: skip
    copy = micro.get("copy")
    if isinstance(copy, dict) and copy.get("gbps_read_plus_write_median"):
        meas = float(copy["gbps_read_plus_write_median"])
        pred = hbm / 1e9
        rows.append(dict(term="hbm", case=f"copy_ {int(copy.get('bytes', 0))} B", predicted=pred,
                         measured=meas, unit="GB/s", error=_err(pred, meas)))  # fmt: skip
    summary: dict[str, Any] = {}
    for term in sorted({r["term"] for r in rows}):
        errs = [abs(r["error"]) for r in rows if r["term"] == term]
        summary[term] = dict(n=len(errs), mean_abs_error=float(np.mean(errs)),
                             max_abs_error=float(np.max(errs)))  # fmt: skip
    return {"gpu": g.name, "rows": rows, "summary": summary}
