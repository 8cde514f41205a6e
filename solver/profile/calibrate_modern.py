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

Where the raw also holds training steps (its ``train`` section), two step-level terms are
measured from them, each the way the evaluator prices it and from one phase of the step only
(so the other phases and the whole step stay out of sample):

* ``gemm_realization`` -- the share of the micro-benchmarked GEMM rates (the table above) the
  GEMMs realise inside a step, fitted (one global value per run) as the one value that makes
  the evaluator's forward pass (``compute.block_time`` / ``embedding_time`` / ``head_time`` on
  the runner's stack, priced with the terms above) match the measured forwards best, by
  relative least squares.  On one H100 (PyTorch 2.11, 36 forwards) it is 0.89: isolated GEMMs of a few milliseconds run at the boost clock,
  a step's back-to-back GEMMs at the 700 W power limit (a sustained 8192^3 GEMM holds 1380 MHz
  and 690 TFLOP/s against 789 in the micro-benchmark, raw-h100x1-torchtitan-block-power.json).
* ``optimizer_efficiency`` -- the measured ``optimizer.step`` time against
  ``step.optimizer_step_time`` at efficiency 1 (its bytes per parameter at the calibrated HBM
  rate), the same relative least squares over every case.  PyTorch's fused AdamW on bf16
  parameters streams 14 B per parameter (reads weight, gradient, ``exp_avg``, ``exp_avg_sq``;
  writes weight and both states) at about 2.0 TB/s, two thirds of the ``copy_`` rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import resolve_gpu
from ..costmodel import constants as C
from ..costmodel.comm import LOCAL
from ..costmodel.compute import attention_saturation, block_time, embedding_time, head_time
from ..costmodel.params import stage_params_per_gpu
from ..costmodel.stack import stack_of
from ..costmodel.step import optimizer_step_time
from ..errors import SpecError
from ..specs import Calibration, GPUSpec, Model, TrainingWorkload

__all__ = [
    "MODERN_FORMAT",
    "calibration_from_modern",
    "forward_s",
    "is_modern_raw",
    "model_of_record",
    "modern_gpu",
    "term_errors",
    "training_workload_of",
]

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


def model_of_record(rec: dict[str, Any]) -> Model:
    """The :class:`~solver.specs.Model` of one training case of the runner (its ``shape``):
    Llama (RMSNorm, SwiGLU, RoPE, GQA) or GPT (LayerNorm, 4h GeLU, learned positions); untied
    embeddings; ``vocab 0`` for the bare GPT blocks (no embedding or head)."""
    sh = rec["shape"]
    llama = sh.get("arch") == "llama"
    return Model(
        name=sh["name"],
        num_layers=sh["layers"],
        hidden_size=sh["hidden"],
        ffn_hidden_size=sh["ffn"],
        num_attention_heads=sh["heads"],
        num_kv_heads=sh.get("kv_heads") or sh["heads"],
        vocab_size=sh.get("vocab", 0),
        mlp="swiglu" if llama else "gelu",
        tied_embeddings=False,
        learned_position_embeddings=not llama,  # the runner's GPT: learned positions, no RoPE
    )


def training_workload_of(rec: dict[str, Any]) -> TrainingWorkload:
    """What the runner runs for one training case, as a workload: one micro-batch per step,
    flash attention, no dropout, bf16 weights and AdamW states (``pure_bf16``), no ZeRO, eager
    elementwise kernels as Hugging Face writes them (RMSNorm / RoPE / SwiGLU and the loss as
    ``logits.float()`` + ``F.cross_entropy``), PyTorch's checkpoint for full recompute and
    gradients made on demand (``zero_grad(set_to_none=True)``)."""
    mb = int(rec["micro_batch"])
    return TrainingWorkload(
        kind="training",
        global_batch_size=mb,
        sequence_length=int(rec["seq"]),
        precision="bf16",
        memory_policy="pure_bf16",
        zero_stage=0,
        overlap_grad_reduce=False,
        recompute=["full" if rec["recompute"] else "none"],
        micro_batch_sizes=[mb],
        schedules=["1f1b"],
        sequence_parallel=[False],
        attention="flash",
        dropout=0.0,
        elementwise_kernels="eager",
        grad_buffers="on_demand",
    )


def forward_s(rec: dict[str, Any], gpu: GPUSpec) -> float:
    """The evaluator's forward pass of one training case on one GPU ``gpu``: every block, the
    embedding and the LM head with the loss, as :mod:`solver.evaluate.training` sums them."""
    model, wl = model_of_record(rec), training_workload_of(rec)
    stack = stack_of(wl)
    kw: dict[str, Any] = dict(
        tp=1, micro_batch=int(rec["micro_batch"]), seq=wl.sequence_length, precision="bf16",
        tp_link=LOCAL,
    )  # fmt: skip
    blk = block_time(model, gpu, recompute="none", sequence_parallel=False, stack=stack, **kw)
    emb = embedding_time(model, gpu, **kw)
    head = head_time(model, gpu, stack=stack, **kw)
    return model.num_layers * blk.fwd_s + emb.fwd_s + head.fwd_s


def _train_ok(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The training cases of ``raw`` that ran and timed ``key``."""
    return [
        r for r in raw.get("train", [])
        if isinstance(r, dict) and r.get("status") == "ok" and r.get(key) and r.get("shape")
    ]  # fmt: skip


def _scale_lsq(predicted: np.ndarray, measured: np.ndarray) -> float:
    """``y`` minimising ``sum((y predicted / measured - 1)^2)`` (relative least squares)."""
    q = predicted / measured
    return float(q.sum() / (q * q).sum())


def _in_step_gemm_realization(raw: dict[str, Any], gpu: GPUSpec) -> float | None:
    """The ``gemm_realization`` whose forward passes (:func:`forward_s` on ``gpu``, which
    carries every other calibrated term) best match the measured ones, relative least squares
    (golden-section search over (0, 1]: the forward falls monotonically with the realisation).
    None without timed training forwards."""
    cases = _train_ok(raw, "fwd_ms_median")
    if not cases:
        return None
    measured = np.array([float(r["fwd_ms_median"]) * 1e-3 for r in cases])

    def loss(real: float) -> float:
        g = gpu.model_copy(update={"gemm_realization": real})
        pred = np.array([forward_s(r, g) for r in cases])
        return float(((pred / measured - 1.0) ** 2).sum())

    lo, hi = 0.05, 1.0
    ratio = (5**0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-4:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return _fraction((lo + hi) / 2)


def _optimizer_efficiency(raw: dict[str, Any], gpu: GPUSpec) -> float | None:
    """``optimizer_efficiency``: :func:`~solver.costmodel.step.optimizer_step_time` at
    efficiency 1 on ``gpu`` over the measured ``optimizer.step`` times, relative least squares
    over every case (the parameters counted as the evaluator counts them).  None without
    timed optimizer steps."""
    cases = _train_ok(raw, "optimizer_ms_median")
    if not cases:
        return None
    g = gpu.model_copy(update={"optimizer_efficiency": 1.0})
    ideal = []
    for r in cases:
        model = model_of_record(r)
        params = stage_params_per_gpu(
            model, model.num_layers, first=True, last=True, sequence_length=int(r["seq"]), tp=1
        )
        ideal.append(optimizer_step_time(params, g, memory_policy="pure_bf16", zero_stage=0, dp=1))
    measured = np.array([float(r["optimizer_ms_median"]) * 1e-3 for r in cases])
    # t = ideal / eff: the scale y = 1 / eff.
    return _fraction(1.0 / _scale_lsq(np.array(ideal), measured))


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
    # Step-level terms from the training steps, priced with the micro-benchmarked terms above.
    priced = gpu.model_copy(update=fields)
    real = _in_step_gemm_realization(raw, priced)
    if real is not None:
        fields["gemm_realization"] = real
        measured["training_forwards"] = len(_train_ok(raw, "fwd_ms_median"))
    opt = _optimizer_efficiency(raw, priced)
    if opt is not None:
        fields["optimizer_efficiency"] = opt
        measured["optimizer_steps"] = len(_train_ok(raw, "optimizer_ms_median"))
    env = raw.get("env", {})
    meta = {k: env.get(k) for k in ("date_utc", "torch", "cuda", "cudnn", "gpu", "driver")}
    meta["source"] = source
    if "gemm_realization" in fields or "optimizer_efficiency" in fields:
        meta["step_terms"] = (
            "gemm_realization / optimizer_efficiency measured from single-GPU training steps "
            "(no concurrent communication)"
        )
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
