"""Compute time of the passes of one serving step on one GPU of its TP group: a prefill block,
a decode block, and the head that samples.

Built on the training forward's operator groups and their roofline (:mod:`.compute`:
:func:`~.compute.block_forward_ops`, :func:`~.compute.op_time`, :func:`~.compute.head_time`).
Each pass is priced one of two ways: without an engine (None, or the ``roofline`` profile) by
that roofline, as in training; under a serving engine's profile (the terms in
:mod:`.serving_engine`, the profiles in :mod:`.engine_profiles`) by the engine step model:
GEMMs by the smooth roofline with a fixed kernel time, the engine's decode and prefill
attention kernels, its custom all-reduce, its elementwise fusions, and the host's issue time
outside its CUDA graphs.
"""

from __future__ import annotations

from typing import Literal

from ..specs import AttentionKernel, GPUSpec, Model
from . import constants as C
from . import quant, serving_engine
from .comm import LinkTier, allgather_time
from .compute import (
    ZERO_PASS,
    Op,
    PassTime,
    # the underscored: package-internal helpers of the training passes, shared here
    _expert_gemm,
    _gemm,
    _host_bound,
    _ops_time,
    _sixteen_bit_peak,
    _tp_collectives,
    block_forward_ops,
    head_time,
    op_time,
    peak_tflops,
    power_clock_fraction,
)
from .params import kv_heads_per_gpu
from .serving_engine import EngineProfile
from .stack import Stack

__all__ = [
    "decode_block_time",
    "engine_head_time",
    "prefill_block_time",
    "serving_head_time",
]


def prefill_block_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    batch: int,
    prompt: int,
    precision: str,
    tp_link: LinkTier,
    attention: AttentionKernel = "flash",
    engine: EngineProfile | None = None,
    kernels: Literal["fused", "eager"] = "fused",
) -> PassTime:
    """Prefill of ``batch`` prompts of ``prompt`` tokens through one block (inference forward).

    Same operator groups as the training forward, without dropout and with the workload's
    attention kernel (flash by default: every serving engine fuses it), plus writing the new
    K/V into the cache; 2 TP all-reduces.  ``bwd_s`` is 0.  ``kernels``: the elementwise
    kernels, fused as every serving engine runs them, or ``"eager"`` for a plain PyTorch
    forward (Hugging Face's RMSNorm / RoPE / SwiGLU op sequences, the ``EAGER_*_BYTES`` of the
    training forward).

    ``engine`` (:mod:`.serving_engine`; None or ``roofline``: the roofline above): GEMMs by
    the engine step model's smooth roofline with a fixed kernel time, the attention op's fixed
    latency (``prefill_attention_fixed_us``, once per forward whatever the batch: one varlen
    call), the all-reduces by the engine's custom kernel where it applies, an eager pass at
    least its kernels' host issue time -- a piecewise-graphed one (vLLM V1 up to its largest
    captured size in tokens) that of its attention op and one graph replay; the elementwise
    groups as the engine's kernels move them (:func:`_engine_elementwise`: residual add + norm
    in one kernel, FP8 input casts fused into their producers); the fused attention op at the
    engine's measured efficiency on a GPU whose catalog entry has none
    (:func:`_prefill_attention_gpu`).
    """
    ops = block_forward_ops(
        model,
        tp=tp,
        micro_batch=batch,
        seq=prompt,
        sequence_parallel=False,
        precision=precision,
        stack=Stack(attention=attention, dropout=0.0, kernels=kernels),
    )
    kv_write = 2.0 * batch * prompt * kv_heads_per_gpu(model, tp) * model.kv_channels
    ops.append(Op("kv_write", 0.0, kv_write * quant.default_kv_bytes(precision), "mem"))
    act = batch * prompt * model.hidden_size * C.ACTIVATION_BYTES
    if engine is None or not engine.smooth_gemm:
        comp = _ops_time(ops, gpu, precision)
        comm = _tp_collectives(act, tp, tp_link, 2)
    else:
        if kernels == "fused":  # an eager forward is the plain PyTorch one, not the engine's
            ops = _engine_elementwise(ops, model, tp, precision, engine)
        comm = 2 * serving_engine.allreduce_time(engine, act, tp, tp_link, gpu.name)
        attn_gpu = _prefill_attention_gpu(gpu, engine)
        gpu_s = comm + sum(
            _engine_op_time(o, attn_gpu if o.kind == "flash" else gpu, precision) for o in ops
        )
        gpu_s += serving_engine.prefill_attention_fixed_s(engine)  # one attention op per forward
        launches: float = len(ops) + (2 if tp > 1 else 0)
        if serving_engine.prefill_piecewise(engine, batch * prompt, gpu.memory_GB, tp):
            launches = serving_engine.PIECEWISE_LAUNCHES_PER_LAYER
        comp = serving_engine.host_bound(engine, gpu_s, launches, is_graphed=False) - comm
    return PassTime(
        comp + comm,
        0.0,
        comm,
        0.0,
        sum(o.counted_flops for o in ops),
        sum(o.flops for o in ops),
    )


def _prefill_attention_gpu(gpu: GPUSpec, engine: EngineProfile) -> GPUSpec:
    """``gpu`` for the fused attention op of a prefill under ``engine``: with the engine's
    measured context-attention efficiency where the catalog entry has none
    (``EngineProfile.prefill_attention_efficiency_on``), else ``gpu`` itself."""
    eff = engine.prefill_attention_efficiency(gpu.name)
    if eff is None or gpu.attention_efficiency is not None:
        return gpu
    return gpu.model_copy(update={"attention_efficiency": eff.value})


#: HBM bytes per hidden element of one layer's two residual adds and two norms as
#: :func:`block_forward_ops` prices them for a serving forward (fused kernels, no dropout).
_ADD_NORM_BYTES = 2 * C.NORM_BYTES + 2 * C.RESIDUAL_ADD_BYTES


def _add_norm_bytes(engine: EngineProfile) -> float:
    """HBM bytes per hidden element of one layer's two residual adds and norms under
    ``engine``: two fused add + norm kernels (``fused_add_norm``) or the four kernels."""
    if engine.fused_add_norm:
        return 2 * serving_engine.FUSED_ADD_NORM_BYTES.value
    return _ADD_NORM_BYTES


def _engine_elementwise(
    ops: list[Op], model: Model, tp: int, precision: str, engine: EngineProfile
) -> list[Op]:
    """A serving forward's elementwise groups (:func:`block_forward_ops`, fused kernels) as
    ``engine`` runs them (:mod:`.serving_engine`, "Elementwise fusions"): the norms and
    residual adds at :func:`_add_norm_bytes`; under ``fused_activation_quant`` the casts
    that ride in their producers gone (:func:`_unfused_casts`) and the norm and activation
    kernels writing the quantized element (1 byte for FP8) instead of the 16-bit one.  Other
    groups (RoPE, the KV-cache write, the attention core) are unchanged."""
    fused_casts = engine.fused_activation_quant and quant.quantizes_activations(precision)
    narrowing = 0.0  # bytes per element a producer no longer writes
    if fused_casts:
        narrowing = 2 * C.ACTIVATION_BYTES - quant.input_cast_bytes(precision)
    act_bytes = C.GELU_BYTES if model.mlp == "gelu" else C.SWIGLU_BYTES
    out: list[Op] = []
    for o in ops:
        if o.name == "norms_residuals":
            # Each of the two norms writes the QKV / MLP-up input.
            kept = _add_norm_bytes(engine) - 2 * narrowing
            o = o._replace(bytes=o.bytes * kept / _ADD_NORM_BYTES)
        elif o.name == "activation" and fused_casts:
            o = o._replace(bytes=o.bytes * (act_bytes - narrowing) / act_bytes)
        elif o.name == "fp8_casts" and fused_casts:
            o = _unfused_casts(o, model, tp, engine)
        out.append(o)
    return out


def _unfused_casts(casts: Op, model: Model, tp: int, engine: EngineProfile) -> Op:
    """What is left of a prefill's ``fp8_casts`` group (:func:`block_forward_ops`: one cast
    per GEMM input, QKV and MLP-up ``h`` each, out-projection ``q_local``, MLP-down ``f / t``)
    under an engine that fuses the norm- and activation-fed casts into their producers: the
    out-projection's, unless its attention kernel writes FP8 (``fp8_context_fmha``)."""
    if engine.fp8_context_fmha:
        return casts._replace(bytes=0.0)
    h = model.hidden_size
    q_local = model.num_attention_heads * model.kv_channels / tp
    f_local = (model.moe_ffn_hidden_size or model.ffn_hidden_size) / tp
    return casts._replace(bytes=casts.bytes * q_local / (2 * h + q_local + f_local))


def decode_block_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    batch: int,
    context_len: int,
    precision: str,
    kv_precision: str,
    tp_link: LinkTier,
    engine: EngineProfile | None = None,
    host_floor: bool = True,
) -> PassTime:
    """One decode step (one new token per sequence) through one block.

    Roofline per operator group: GEMMs with ``batch`` rows read the whole weight shard
    (memory-bound at small batch); attention reads the K/V cache of ``context_len`` tokens per
    sequence (2 x kv_heads/t x head_dim x kv bytes per token) and does 4 x batch x ctx x
    heads/t x head_dim FLOPs (Pope et al. 2022, "Efficiently Scaling Transformer Inference",
    Sec. 2; NVIDIA "Mastering LLM Techniques: Inference Optimization").  TP: 2 all-reduces of
    batch x h 16-bit elements, latency-dominated.

    ``engine`` (:mod:`.serving_engine`; None or ``roofline``: the roofline above): GEMMs by
    the smooth roofline with a fixed kernel time; attention by the engine's paged decode
    kernel (its HBM efficiency and fixed latency, the KV read once per query head where the
    kernel is not group-aware, and its per-(sequence, KV head) cost where measured on the GPU);
    the all-reduces by the engine's custom kernel (its latency on the GPU where measured);
    the norms and residual adds in the engine's kernels (:func:`_add_norm_bytes`);
    outside the engine's CUDA-graph batch sizes the block takes at least its kernels' host
    issue time.  ``host_floor`` False: the GPU time alone, without that floor (what the
    marginal cost of one more KV token is read from: a launch-bound step's extra KV reads still
    take GPU time, hidden or not behind the host only as long as it stays the longer of the two).
    """
    b, h, t = float(batch), model.hidden_size, tp
    hd = model.kv_channels
    wb = quant.weight_bytes_per_element(precision)
    kvb = C.BYTES_PER_ELEMENT[kv_precision]
    q_local = model.num_attention_heads * hd / t
    kv_local = kv_heads_per_gpu(model, t) * hd
    ops: list[Op] = [_gemm("qkv", b, h, q_local + 2 * kv_local, wb)]
    ctx = float(context_len)
    attn_flops = 4.0 * b * ctx * (model.num_attention_heads / t) * hd
    attn_bytes = b * ctx * 2.0 * kv_local * kvb + b * kv_local * 2.0 * kvb
    ops.append(Op("attention_decode", attn_flops, attn_bytes, "attn"))
    ops.append(_gemm("out_proj", b, q_local, h, wb))
    n_up = 1 if model.mlp == "gelu" else 2
    if model.num_experts is not None and model.experts_per_token is not None:
        f = (model.moe_ffn_hidden_size or model.ffn_hidden_size) / t
        k, e = model.experts_per_token, model.num_experts
        touched = e * (1.0 - (1.0 - k / e) ** b)
        ops.append(_gemm("router", b, h, e, wb))
        up = _gemm("moe_up", b * k, h, n_up * f, wb)
        down = _gemm("moe_down", b * k, f, h, wb)
        ops.append(_expert_gemm(up, (touched - 1) * h * n_up * f * wb, touched))
        ops.append(_expert_gemm(down, (touched - 1) * f * h * wb, touched))
    else:
        f = model.ffn_hidden_size / t
        ops.append(_gemm("mlp_up", b, h, n_up * f, wb))
        ops.append(_gemm("mlp_down", b, f, h, wb))
    # Norms and residual adds only (the activation, RoPE and casts of b rows are not priced);
    # under an engine, as its kernels move them (the same kernels as its prefill's).
    add_norm = _ADD_NORM_BYTES if engine is None else _add_norm_bytes(engine)
    ops.append(Op("elementwise", 0.0, add_norm * b * h, "mem"))
    flops = sum(o.flops for o in ops)
    if engine is None or not engine.smooth_gemm:
        gpu_only = sum(op_time(o, gpu, precision) for o in ops)
        comp = _host_bound(gpu_only, len(ops), gpu) if host_floor else gpu_only
        comm = _tp_collectives(b * h * C.ACTIVATION_BYTES, tp, tp_link, 2)
        return PassTime(comp + comm, 0.0, comm, 0.0, flops, flops)
    act = b * h * C.ACTIVATION_BYTES
    comm = 2 * serving_engine.allreduce_time(engine, act, tp, tp_link, gpu.name)
    l2 = serving_engine.l2_to_hbm_ratio(gpu.name, gpu.memory_bandwidth_GBps)
    reads = serving_engine.kv_reads(engine, model.num_attention_heads / t, kv_local / hd, hd, l2)
    attn = serving_engine.decode_attention_time(
        engine,
        attn_bytes,
        reads,
        gpu.memory_bandwidth_GBps * 1e9,
        gpu=gpu.name,
        kv_precision=kv_precision,
        sequence_kv_heads=b * kv_local / hd,
    )
    gpu_s = attn + comm + sum(_engine_op_time(o, gpu, precision) for o in ops if o.kind != "attn")
    graphed = serving_engine.graphed(engine, batch, gpu.memory_GB, tp)
    kernels = len(ops) + (2 if tp > 1 else 0)
    total = serving_engine.host_bound(engine, gpu_s, kernels, graphed) if host_floor else gpu_s
    return PassTime(total, 0.0, comm, 0.0, flops, flops)


def _engine_op_time(op: Op, gpu: GPUSpec, precision: str) -> float:
    """One operator group under a serving-engine profile: a GEMM (or the 16-bit LM head) by
    :func:`.serving_engine.gemm_time` at the GPU's MAMF and HBM roofs -- by the measured
    ``gemm_table`` instead when the GPU carries one --, anything else by :func:`op_time`.  The
    compute roof is realised as in every step of this cost model (``GEMM_REALIZATION_FRACTION``
    of the MAMF, or the calibration's ``gemm_realization``): the isolated-kernel table the
    smooth form was fitted on reaches the MAMF, a whole step's back-to-back GEMMs do not."""
    gemm_like = op.kind == "gemm" or (op.kind == "attn" and op.dims is not None)
    if not gemm_like or gpu.gemm_table is not None:
        return op_time(op, gpu, precision)
    if op.kind == "gemm":
        peak, eff = peak_tflops(gpu, precision), gpu.gemm_efficiency
        if quant.is_format(precision):
            eff = quant.gemm_efficiency(gpu, precision)
    else:
        peak, eff = _sixteen_bit_peak(gpu), gpu.gemm_efficiency
    real = C.GEMM_REALIZATION_FRACTION if gpu.gemm_realization is None else gpu.gemm_realization
    rate = peak * 1e12 * eff * real * power_clock_fraction(gpu)
    bw = gpu.memory_bandwidth_GBps * 1e9 * gpu.memory_efficiency
    return serving_engine.gemm_time(op.flops, op.bytes, rate, bw)


def serving_head_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    rows: int,
    precision: str,
    tp_link: LinkTier,
    stack: Stack,
    engine: EngineProfile | None,
) -> PassTime:
    """The head of one serving step for ``rows`` sampled rows: :func:`engine_head_time` under a
    serving engine's profile, else (None or ``roofline``) the roofline :func:`head_time` at one
    token per row -- the same switch as :func:`prefill_block_time` / :func:`decode_block_time`."""
    if engine is not None and engine.smooth_gemm:
        return engine_head_time(model, gpu, tp=tp, rows=rows, tp_link=tp_link, engine=engine)
    return head_time(
        model,
        gpu,
        tp=tp,
        micro_batch=rows,
        seq=1,
        precision=precision,
        tp_link=tp_link,
        stack=stack,
    )


def engine_head_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    rows: int,
    tp_link: LinkTier,
    engine: EngineProfile,
) -> PassTime:
    """Final norm, LM head and sampling of ``rows`` sampled rows under a serving engine.

    The vocab-parallel LM head GEMM (16-bit, 2 rows h V / t FLOPs) priced as every engine
    GEMM; its 16-bit logit shards gathered to the sampler (``rows x V`` values, NCCL:
    vLLM ``tensor_model_parallel_gather``, TensorRT-LLM's gathered logits); the sampler's
    passes over the fp32 logits (:func:`.serving_engine.sampling_time`).  No cross entropy:
    serving computes none (:func:`head_time` is the training head).
    """
    if model.vocab_size == 0 or rows <= 0:
        return ZERO_PASS
    h, v = model.hidden_size, model.vocab_size
    norm = Op("final_norm", 0.0, C.NORM_BYTES * rows * h, "mem")
    gemm = _gemm("lm_head", float(rows), h, v / tp, C.BYTES_PER_ELEMENT["bf16"], kind="attn")
    gpu_s = _engine_op_time(norm, gpu, "bf16") + _engine_op_time(gemm, gpu, "bf16")
    gpu_s += serving_engine.sampling_time(engine, rows, v, gpu.memory_bandwidth_GBps * 1e9)
    comm = allgather_time(rows * v * C.ACTIVATION_BYTES, tp, tp_link)
    return PassTime(gpu_s + comm, 0.0, comm, 0.0, gemm.flops, gemm.flops)
