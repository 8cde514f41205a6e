"""Inference evaluation: prefill and decode times per stage, TTFT / TPOT / tokens per second per
replica group, the serving memory ledger (weights, engine overhead, one forward's working set,
the paged KV pool and the maximum concurrent sequences it holds: ``evaluate.ledger.
serving_ledger_row``) and MFU.

Inference
    TTFT = prefill of the batch through all stages (+ p2p), TPOT = one decode step through
    all stages at context prompt + output/2 (the mean context over the generation; decode
    time is linear in context, so this gives the mean TPOT exactly), tokens/s per replica =
    batch x output / (TTFT + output x TPOT) (static batching), total = sum over replicas.
    With num_micro_batches m > 1 the batch is split into m micro-batches that overlap across
    stages: TTFT = sum_s t_s + (m-1) max_s t_s, TPOT = max(sum_s d_s, m max_s d_s).

Serving engine
    ``InferenceWorkload.serving_engine`` picks the step model (:mod:`solver.costmodel.
    serving_engine`; ``auto`` = vLLM): prefill and decode blocks with the engine's GEMM,
    decode-attention, all-reduce and launch terms; the last stage's LM head without cross
    entropy plus the sampler (:func:`~solver.costmodel.serving_compute.engine_head_time`); and the
    engine's host time once per step (prefill and every decode step) on the last stage.
    ``roofline`` is the pure roofline (training head, no step overhead).  A calibration's
    serving terms (``decode_attention_efficiency``, ``decode_attention_overhead_us``,
    ``allreduce_small_latency_us`` / ``_bandwidth_GBps`` / ``_max_bytes``) replace the
    profile's (:func:`engine_for_gpu`).  The
    simulator's step cost (:mod:`solver.serving.stepcost`) and the CP inference tables (which
    score every replica shape with this evaluator) price the same terms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..costmodel import constants as C
from ..costmodel import (
    decode_block_time,
    embedding_time,
    model_flops_per_step,
    peak_tflops,
    prefill_block_time,
)
from ..costmodel import engine_profiles as EP
from ..costmodel import serving_engine as SE
from ..costmodel.comm import LinkTier
from ..costmodel.quant import serving_precision
from ..costmodel.serving_compute import serving_head_time
from ..costmodel.serving_memory import stage_weight_bytes
from ..costmodel.stack import stack_of
from ..specs import Calibration, Cluster, GPUSpec, InferenceWorkload, Model, Plan
from .boundary import _p2p
from .calibration import Cal, gpu_with_calibration
from .ledger import serving_ledger_row
from .links import tp_link
from .report import Report


def engine_for_gpu(
    name: str, gpu: GPUSpec, cal: Cal = None, link: LinkTier | None = None
) -> SE.EngineProfile:
    """The serving-engine profile ``name`` (``auto`` = vLLM) with the serving terms of a
    calibration for ``gpu`` (matched by GPU name, as :func:`gpu_with_calibration` does):
    ``decode_attention_efficiency``, ``decode_attention_overhead_us``,
    ``allreduce_small_latency_us``, with the TP ``link`` ``allreduce_small_bandwidth_GBps`` as
    the one-shot kernel's share of the link, and ``allreduce_small_max_bytes`` as the largest
    message that measured line prices (NCCL above it: :func:`SE.with_calibration`)."""
    profile = EP.resolve(name)
    cals = [] if cal is None else [cal] if isinstance(cal, Calibration) else list(cal)
    for c in cals:
        if c.gpu.lower() == gpu.name.lower():
            bw = getattr(c, "allreduce_small_bandwidth_GBps", None)
            share = None
            if bw is not None and link is not None and math.isfinite(link.bandwidth_GBps):
                share = bw / link.bandwidth_GBps
            return SE.with_calibration(
                profile,
                decode_attention_efficiency=getattr(c, "decode_attention_efficiency", None),
                decode_attention_fixed_us=getattr(c, "decode_attention_overhead_us", None),
                allreduce_latency_us=getattr(c, "allreduce_small_latency_us", None),
                oneshot_link_fraction=share,
                allreduce_max_bytes=getattr(c, "allreduce_small_max_bytes", None),
                source=f"calibration for {c.gpu}",
            )
    return profile


def _evaluate_inference(
    model: Model, cluster: Cluster, wl: InferenceWorkload, plan: Plan, cal: Cal, rep: Report
) -> None:
    kvp = wl.kv_cache_precision or wl.precision
    prec = serving_precision(wl)  # the quantization format when one is set (costmodel.quant)
    ctx = wl.prompt_tokens + wl.output_tokens // 2
    h = model.hidden_size
    ledger: list[dict[str, Any]] = []
    breakdown: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    total_tps = 0.0
    peak_all = 0.0
    for g, grp in enumerate(plan.replica_groups):
        B = grp.batch_size or 1
        m = grp.num_micro_batches or 1
        bm = max(1, B // m)
        p = grp.pp
        pre, dec, pre_p2p, dec_p2p = [], [], [], []
        for s, st in enumerate(grp.stages):
            pool = cluster.pool(st.pool)
            gpu = gpu_with_calibration(pool, cal)
            link = tp_link(pool, cal)
            engine = engine_for_gpu(wl.serving_engine, gpu, cal, link)
            n = st.num_layers
            pb = prefill_block_time(
                model,
                gpu,
                tp=st.tp,
                batch=bm,
                prompt=wl.prompt_tokens,
                precision=prec,
                tp_link=link,
                attention=wl.attention,
                engine=engine,
            )
            db = decode_block_time(
                model,
                gpu,
                tp=st.tp,
                batch=bm,
                context_len=ctx,
                precision=prec,
                kv_precision=kvp,
                tp_link=link,
                engine=engine,
            )
            t_pre, t_dec = n * pb.fwd_s, n * db.fwd_s
            tp_pre, tp_dec = n * pb.tp_comm_fwd_s, n * db.tp_comm_fwd_s
            if s == 0:
                e1 = embedding_time(
                    model,
                    gpu,
                    tp=st.tp,
                    micro_batch=bm,
                    seq=wl.prompt_tokens,
                    precision=prec,
                    tp_link=link,
                )
                e2 = embedding_time(
                    model,
                    gpu,
                    tp=st.tp,
                    micro_batch=bm,
                    seq=1,
                    precision=prec,
                    tp_link=link,
                )
                t_pre, t_dec = t_pre + e1.fwd_s, t_dec + e2.fwd_s
                tp_pre, tp_dec = tp_pre + e1.tp_comm_fwd_s, tp_dec + e2.tp_comm_fwd_s
            if s == p - 1:
                hd = serving_head_time(
                    model,
                    gpu,
                    tp=st.tp,
                    rows=bm,
                    precision=prec,
                    tp_link=link,
                    stack=stack_of(wl),
                    engine=engine,
                )
                host = SE.step_overhead_s(engine)  # once per step, prefill or decode
                t_pre, t_dec = t_pre + hd.fwd_s + host, t_dec + hd.fwd_s + host
                tp_pre, tp_dec = tp_pre + hd.tp_comm_fwd_s, tp_dec + hd.tp_comm_fwd_s
            pre.append(t_pre)
            dec.append(t_dec)
            if s < p - 1:
                nxt = grp.stages[s + 1]
                pre_p2p.append(
                    _p2p(
                        cluster, st, nxt, bm * wl.prompt_tokens * h * C.ACTIVATION_BYTES, False, cal
                    )
                )
                dec_p2p.append(_p2p(cluster, st, nxt, bm * h * C.ACTIVATION_BYTES, False, cal))
            else:
                pre_p2p.append(0.0)
                dec_p2p.append(0.0)
            # memory: weights + engine overhead + one forward's working set under
            # gpu_memory_utilization x capacity, the rest a paged KV pool (no training terms)
            w = stage_weight_bytes(
                model,
                layers=n,
                first=s == 0,
                last=s == p - 1,
                tp=st.tp,
                context_tokens=wl.prompt_tokens + wl.output_tokens,
                precision=prec,
            )
            communicators = int(st.tp > 1) + int(p > 1)
            ledger.append(
                serving_ledger_row(
                    model,
                    wl,
                    g,
                    s,
                    st,
                    gpu,
                    weights=w,
                    batch=B,
                    micro_batch=bm,
                    last=s == p - 1,
                    communicators=communicators,
                )
            )
            breakdown.append(
                {
                    "group": g,
                    "stage": s,
                    "pool": st.pool,
                    "tp": st.tp,
                    "layers": n,
                    "compute_s": t_pre - tp_pre + wl.output_tokens * (t_dec - tp_dec),
                    "tp_comm_s": tp_pre + wl.output_tokens * tp_dec,
                    "pp_comm_s": pre_p2p[-1] + wl.output_tokens * dec_p2p[-1],
                    "dp_comm_s": 0.0,
                    "prefill_s": t_pre,
                    "decode_step_s": t_dec,
                }
            )
            peak_all += grp.count * st.tp * peak_tflops(gpu, prec) * 1e12
        pre_a, dec_a = np.asarray(pre), np.asarray(dec)
        ttft = float(pre_a.sum() + sum(pre_p2p) + (m - 1) * pre_a.max())
        tpot = float(max(dec_a.sum() + sum(dec_p2p), m * dec_a.max()))
        latency = ttft + wl.output_tokens * tpot
        tps = B * wl.output_tokens / latency
        total_tps += grp.count * tps
        groups.append(
            {
                "group": g,
                "count": grp.count,
                "batch_size": B,
                "ttft_ms": ttft * 1e3,
                "tpot_ms": tpot * 1e3,
                "request_latency_s": latency,
                "tokens_per_s": tps,
                "tokens_per_s_total": grp.count * tps,
                "decode_idle_fraction": float(1.0 - dec_a.sum() / (p * tpot)) if tpot > 0 else 0.0,
                # The replica's KV pool is bounded by its fullest stage.
                "max_concurrent_sequences": min(
                    r["max_concurrent_sequences"] for r in ledger if r["group"] == g
                ),
            }
        )
    # MFU: 2 x active params (+ attention at the mean context) FLOPs per generated token.
    fwd_flops = model_flops_per_step(model, 1, 1) / 3.0
    attn = 4.0 * ctx * model.num_attention_heads * model.kv_channels * model.num_layers
    rep.tokens_per_s = total_tps
    rep.mfu = total_tps * (fwd_flops + attn) / peak_all if peak_all else None
    rep.hfu = rep.mfu
    rep.ttft_ms = max(x["ttft_ms"] for x in groups)
    rep.tpot_ms = max(x["tpot_ms"] for x in groups)
    rep.step_time_s = max(x["request_latency_s"] for x in groups)
    rep.bubble_fraction = max(x["decode_idle_fraction"] for x in groups)
    rep.groups = groups
    rep.memory_ledger = ledger
    rep.time_breakdown = breakdown
    rep.peak_memory_GB_per_gpu = max(r["total_GB"] for r in ledger)
    rep.details = {
        "decode_context_tokens": ctx,
        "max_model_len": wl.prompt_tokens + wl.output_tokens,
        "max_concurrent_sequences": min(x["max_concurrent_sequences"] for x in groups),
        "gpu_memory_utilization": wl.gpu_memory_utilization,
        "serving_engine": EP.resolve(wl.serving_engine).name,
    }
