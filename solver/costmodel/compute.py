"""Compute time of one micro-batch through one block / the embedding / the LM head.

Every pass is a list of operator groups; each group is timed by a roofline,
``max(FLOPs / (peak x gemm_efficiency), bytes / (HBM bandwidth x memory_efficiency))``
(Williams, Waterman & Patterson 2009, "Roofline"), and the groups are summed (kernels of one
micro-batch run back to back on one stream).  Elementwise kernels (norms, dropout, residual
adds, GeLU/SwiGLU, softmax) have no FLOPs that matter and are priced by their HBM traffic:
this is the physics that makes small hidden sizes less efficient than large ones (their
elementwise bytes grow like s*b*h while GEMM FLOPs grow like s*b*h^2).

FLOP counts (forward, one block, GPT MHA + 4h GeLU MLP): 24 b s h^2 + 4 b s^2 h
(Narayanan et al. 2021, Sec. 5.1 / eq. 3 without the recompute and LM-head terms;
Korthikanti et al. 2022 App. A).  Generalised below to GQA (K/V projections
2 b s h kv_heads head_dim each), SwiGLU (3 matrices of ffn_hidden), ffn != 4h and MoE
(``experts_per_token`` active experts + router).  Backward = 2x forward GEMMs.

Measured GEMM tables (a calibration's ``gemm_table``) are looked up in :mod:`.gemm_table`.
The passes of a serving step (prefill, decode, the sampling head), priced on these groups
and, under a serving engine, by its step model: :mod:`.serving_compute`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..specs import GPUSpec, Model
from . import constants as C
from . import quant
from .comm import LinkTier, allreduce_time
from .gemm_table import GemmDims, gemm_pass_shapes, gemm_rate_tflops
from .params import block_params_per_gpu, kv_heads_per_gpu, stage_params_per_gpu
from .stack import Stack

__all__ = [
    "Op",
    "PassTime",
    "block_forward_ops",
    "block_time",
    "embedding_time",
    "head_time",
    "op_time",
    "peak_tflops",
]

OpKind = Literal["gemm", "attn", "flash", "mem"]


@dataclass(frozen=True)
class PassTime:
    """One micro-batch through one block (or embedding, or head) on ONE GPU of its TP group.

    Attributes
    ----------
    fwd_s
        Forward compute (roofline) + exposed TP communication.
    bwd_s
        Backward compute (2x forward GEMM FLOPs) + recomputed forward if any + exposed TP comm.
    tp_comm_fwd_s, tp_comm_bwd_s
        The TP communication parts of ``fwd_s`` and ``bwd_s``.
    flops_fwd
        Model FLOPs of the forward on this GPU (MFU convention: no recompute).
    hw_flops
        Hardware FLOPs forward + backward + recompute on this GPU (HFU convention).
    """

    fwd_s: float
    bwd_s: float
    tp_comm_fwd_s: float
    tp_comm_bwd_s: float
    flops_fwd: float
    hw_flops: float

    @property
    def total_s(self) -> float:
        return self.fwd_s + self.bwd_s

    def scaled(self, k: float) -> PassTime:
        """``k`` identical passes back to back (e.g. k blocks of one stage)."""
        return PassTime(
            self.fwd_s * k,
            self.bwd_s * k,
            self.tp_comm_fwd_s * k,
            self.tp_comm_bwd_s * k,
            self.flops_fwd * k,
            self.hw_flops * k,
        )

    def __add__(self, o: PassTime) -> PassTime:
        return PassTime(
            self.fwd_s + o.fwd_s,
            self.bwd_s + o.bwd_s,
            self.tp_comm_fwd_s + o.tp_comm_fwd_s,
            self.tp_comm_bwd_s + o.tp_comm_bwd_s,
            self.flops_fwd + o.flops_fwd,
            self.hw_flops + o.hw_flops,
        )


ZERO_PASS = PassTime(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class Op(NamedTuple):
    """One operator group: FLOPs, HBM bytes and which peak it runs at.

    ``kind``: ``'gemm'`` runs at the workload precision's tensor peak (fp8 if asked);
    ``'attn'`` at the 16-bit tensor peak (attention core and LM head stay 16-bit in fp8
    recipes, NVIDIA Transformer Engine docs); ``'flash'`` is a fused attention kernel at the
    16-bit peak x the GPU's ``attention_efficiency`` (its backward: ``FLASH_BACKWARD_FLOP_FACTOR``
    x the FLOPs at ``attention_backward_efficiency``); ``'mem'`` is elementwise, priced by
    bytes only.

    ``seq``: the sequence length of a ``'flash'`` op (short sequences run below the kernel's
    asymptotic rate, ``ATTENTION_HALF_RATE_SEQ``).

    ``flops`` are the FLOPs the kernels execute; ``model_flops`` the FLOPs the MFU convention
    counts when they differ (a causal fused kernel executes half the score square the model
    count includes), None when they are the same.

    ``dims``: ``(m, k, n)`` of a GEMM group's forward product ``(m x k) @ (k x n)`` (for a
    grouped MoE GEMM, ``m`` is the rows per expert), which a calibration's measured
    ``gemm_table`` is looked up by; None for attention cores and elementwise groups.

    A named tuple (immutable, and cheap to build: the planner builds these for every
    candidate block).
    """

    name: str
    flops: float
    bytes: float
    kind: OpKind
    dims: tuple[float, float, float] | None = None
    model_flops: float | None = None
    seq: float | None = None  # a fused attention kernel's sequence length (its rate depends on it)
    kernel: str = "cudnn"  # which fused attention kernel a 'flash' op is (Stack.attention_kernel)

    @property
    def counted_flops(self) -> float:
        """FLOPs in the MFU convention (model FLOPs)."""
        return self.flops if self.model_flops is None else self.model_flops


def peak_tflops(gpu: GPUSpec, precision: str) -> float:
    """Dense tensor-core peak for ``precision``; ValueError if the GPU lacks the format."""
    if precision == "fp8":
        if gpu.fp8_tflops is None:
            raise ValueError(f"GPU {gpu.name} has no fp8 tensor cores (fp8_tflops is not set)")
        return gpu.fp8_tflops
    if precision == "bf16":
        if not gpu.supports_bf16:
            raise ValueError(f"GPU {gpu.name} does not support bf16 (use fp16)")
        return gpu.bf16_tflops
    if precision == "fp16":
        return gpu.fp16_tflops if gpu.fp16_tflops is not None else gpu.bf16_tflops
    if quant.is_format(precision):  # int8, weight-only, fp4 serving formats
        return quant.gemm_peak_tflops(gpu, precision)
    raise ValueError(f"unknown precision {precision!r}")


def fp8_gemm_efficiency(gpu: GPUSpec) -> float:
    """Achievable fraction of the FP8 peak on large GEMMs: the GPU's measured FP8 MAMF ratio
    (``fp8_gemm_efficiency``), else its 16-bit ``gemm_efficiency``."""
    return gpu.gemm_efficiency if gpu.fp8_gemm_efficiency is None else gpu.fp8_gemm_efficiency


def _sixteen_bit_peak(gpu: GPUSpec) -> float:
    return gpu.bf16_tflops if gpu.supports_bf16 else (gpu.fp16_tflops or gpu.bf16_tflops)


def op_time(
    op: Op,
    gpu: GPUSpec,
    precision: str,
    *,
    gemm_efficiency: float | None = None,
    memory_efficiency: float | None = None,
    dims: GemmDims | None = None,
) -> float:
    """Roofline time of one operator group (Williams et al. 2009).

    Compute roof: peak x ``gemm_efficiency`` (the GPU's achievable matmul fraction, from the
    catalog or a calibration) x ``GEMM_REALIZATION_FRACTION`` (how much of it a training /
    inference step realises); memory roof: HBM bandwidth x ``memory_efficiency``.

    Three software-stack factors of the GPU spec, unset (Megatron-LM's fused kernels) unless a
    calibration measured them on another stack (:mod:`solver.profile.calibrate`):
    ``gemm_realization`` replaces ``GEMM_REALIZATION_FRACTION``; ``elementwise_traffic_factor``
    multiplies the bytes of elementwise (``'mem'``) groups (un-fused kernels re-read and
    re-write their operands).  Two more act on whole passes: ``backward_elementwise_factor``
    (:func:`backward_elementwise_factor`) and ``kernel_launch_us`` (:func:`_host_bound`: a pass
    takes at least its groups' issue time on the host, what makes eager decode launch-bound).

    Measured GEMM table: when ``gpu.gemm_table`` is set, a ``'gemm'`` group with ``dims``
    (``dims`` argument, else ``op.dims``: the backward passes its dgrad / wgrad shapes) runs
    at ``min(gemm_rate_tflops(dims), MAMF) x realization`` with the MAMF =
    16-bit peak x ``gemm_efficiency``.  The table is measured in the 16-bit profile dtype;
    other precisions (fp8) scale it by their peak / the 16-bit peak (the same ratio the
    catalog formula implies); the LM head (an ``'attn'`` group with dims, kept 16-bit) is
    looked up unscaled.  The attention core (no dims: batched per-head products the profile
    does not time), groups without dims and calls that pass ``gemm_efficiency`` explicitly use
    the formula above; the memory roof is the same either way.
    """
    if gpu.gemm_table is not None and gemm_efficiency is None and op.kind != "mem":
        shape = op.dims if dims is None else dims
        if shape is not None and op.flops > 0:
            return _table_op_time(op, gpu, precision, shape, memory_efficiency)
    ge = gpu.gemm_efficiency if gemm_efficiency is None else gemm_efficiency
    if quant.is_format(precision) and op.kind == "gemm" and gemm_efficiency is None:
        ge = quant.gemm_efficiency(gpu, precision)  # fp8: fp8_gemm_efficiency
    me = gpu.memory_efficiency if memory_efficiency is None else memory_efficiency
    nbytes = op.bytes
    if op.kind == "mem" and gpu.elementwise_traffic_factor is not None:
        nbytes *= gpu.elementwise_traffic_factor
    mem_s = nbytes / (gpu.memory_bandwidth_GBps * 1e9 * me)
    if op.kind == "mem" or op.flops <= 0:
        return mem_s
    peak = peak_tflops(gpu, precision) if op.kind == "gemm" else _sixteen_bit_peak(gpu)
    peak *= power_clock_fraction(gpu)
    real = C.GEMM_REALIZATION_FRACTION if gpu.gemm_realization is None else gpu.gemm_realization
    fwd_eff = _attention_efficiencies(op, gpu)[0] if op.kind == "flash" else None
    if fwd_eff is not None:
        eff = fwd_eff * attention_saturation(op.seq)
        return max(op.flops / (peak * 1e12 * eff), mem_s)
    return max(op.flops / (peak * 1e12 * ge * real), mem_s)


def power_clock_fraction(gpu: GPUSpec) -> float:
    """Compute-clock ratio of a GPU run under a power cap below its default limit.

    A tensor-core-bound kernel runs at the board power limit: measured on one H100 SXM5 80GB
    (700 W default limit), a sustained bf16 8192^3 GEMM draws 698 W at a 1380 MHz SM clock
    (1980 MHz maximum), 70 W at idle (benchmarks/validation/modern/raw-h100x1-torchtitan-block
    .json, ``power``).  Dynamic power is alpha C V^2 f and, in the DVFS range, the voltage
    scales with the clock, so P - P_idle ~ f^3 (``POWER_CLOCK_EXPONENT``; Weste & Harris,
    CMOS VLSI Design, 4th ed., Sec. 5.1-5.2): under a cap the clock is
    ((cap - idle) / (tdp - idle))^(1/3) of the default-limit clock, and compute-bound
    kernels slow by that ratio.  The HBM clock does not change (2619 MHz at idle and under
    load), so memory-bound kernels keep their rate.  1 unless ``power_limit_W`` is below
    ``tdp_W`` and ``idle_power_W`` is known.
    """
    cap, tdp, idle = gpu.power_limit_W, gpu.tdp_W, gpu.idle_power_W
    if cap is None or tdp is None or idle is None or cap >= tdp or tdp <= idle:
        return 1.0
    ratio = float(max(cap - idle, 0.0) / (tdp - idle))
    return float(ratio ** (1.0 / C.POWER_CLOCK_EXPONENT))


def _attention_efficiencies(op: Op, gpu: GPUSpec) -> tuple[float | None, float | None]:
    """(forward, backward) asymptotic efficiency of a fused attention op's kernel on ``gpu``:
    the FlashAttention-2 figures for ``kernel == "flash2"`` where the GPU has them, else the
    GPU's ``attention_efficiency`` pair (each backward falls back to its forward)."""
    if op.kernel == "flash2" and gpu.flash2_attention_efficiency is not None:
        fwd = gpu.flash2_attention_efficiency
        return fwd, gpu.flash2_attention_backward_efficiency or fwd
    fwd2 = gpu.attention_efficiency
    return fwd2, gpu.attention_backward_efficiency or fwd2


def attention_saturation(seq: float | None) -> float:
    """Share of its asymptotic rate a fused attention kernel reaches at ``seq`` tokens:
    ``s / (s + ATTENTION_HALF_RATE_SEQ)`` (1 when no sequence length is known)."""
    if seq is None:
        return 1.0
    return seq / (seq + C.ATTENTION_HALF_RATE_SEQ)


def _flash_backward_time(op: Op, gpu: GPUSpec, precision: str) -> float:
    """Backward of a fused attention kernel: ``FLASH_BACKWARD_FLOP_FACTOR`` x the forward's
    executed FLOPs (the scores are recomputed) at ``attention_backward_efficiency``; it reads
    Q, K, V, O, dO and the softmax statistics and writes dQ, dK, dV: twice the forward's
    bytes for the memory roof.  Without a measured efficiency: priced like the forward."""
    flops = op.flops * C.FLASH_BACKWARD_FLOP_FACTOR
    top = _attention_efficiencies(op, gpu)[1]
    if top is None:
        return op_time(op, gpu, precision) * C.FLASH_BACKWARD_FLOP_FACTOR
    eff = top * attention_saturation(op.seq)
    me = gpu.memory_efficiency
    mem_s = 2.0 * op.bytes / (gpu.memory_bandwidth_GBps * 1e9 * me)
    clock = power_clock_fraction(gpu)
    return max(flops / (_sixteen_bit_peak(gpu) * clock * 1e12 * eff), mem_s)


def _table_op_time(
    op: Op, gpu: GPUSpec, precision: str, dims: GemmDims, memory_efficiency: float | None
) -> float:
    """:func:`op_time` of a GEMM group priced by the GPU's measured ``gemm_table``."""
    assert gpu.gemm_table is not None
    me = gpu.memory_efficiency if memory_efficiency is None else memory_efficiency
    mem_s = op.bytes / (gpu.memory_bandwidth_GBps * 1e9 * me)
    sixteen = _sixteen_bit_peak(gpu)
    rate = min(gemm_rate_tflops(gpu.gemm_table, dims), sixteen * gpu.gemm_efficiency)
    if op.kind == "gemm" and quant.is_format(precision):
        # The table is measured in 16 bit: scale by the ratio of the format's and 16-bit MAMFs.
        rate *= (peak_tflops(gpu, precision) * quant.gemm_efficiency(gpu, precision)) / (
            sixteen * gpu.gemm_efficiency
        )
    elif op.kind == "gemm":
        rate *= peak_tflops(gpu, precision) / sixteen
    real = C.GEMM_REALIZATION_FRACTION if gpu.gemm_realization is None else gpu.gemm_realization
    rate *= power_clock_fraction(gpu)
    return max(op.flops / (rate * 1e12 * real), mem_s)


def _host_bound(gpu_s: float, groups: float, gpu: GPUSpec) -> float:
    """A pass of ``groups`` operator groups: the GPU time, or the host's time to issue them
    (``kernel_launch_us`` each) when that is longer -- the GPU then waits for the host."""
    if gpu.kernel_launch_us is None:
        return gpu_s
    return max(gpu_s, groups * gpu.kernel_launch_us * 1e-6)


def _ops_time(ops: list[Op], gpu: GPUSpec, precision: str) -> float:
    return _host_bound(sum(op_time(o, gpu, precision) for o in ops), len(ops), gpu)


def backward_elementwise_factor(gpu: GPUSpec) -> float:
    """Backward elementwise traffic / forward: ``BACKWARD_ELEMENTWISE_FACTOR`` unless a
    calibration measured the stack's own."""
    f = gpu.backward_elementwise_factor
    return C.BACKWARD_ELEMENTWISE_FACTOR if f is None else f


def _backward_op_time(op: Op, gpu: GPUSpec, precision: str) -> float:
    """Backward of one non-elementwise group: with a measured ``gemm_table``, a GEMM group's
    data-gradient plus weight-gradient GEMMs at their own shapes' rates
    (:func:`gemm_pass_shapes`; each with the forward's bytes for its memory roof); otherwise
    ``BACKWARD_GEMM_FACTOR`` x the forward."""
    if op.kind == "flash":
        return _flash_backward_time(op, gpu, precision)
    if gpu.gemm_table is not None and op.kind != "mem" and op.dims is not None:
        _, dgrad, wgrad = gemm_pass_shapes(op.dims)
        return op_time(op, gpu, precision, dims=dgrad) + op_time(op, gpu, precision, dims=wgrad)
    return op_time(op, gpu, precision) * C.BACKWARD_GEMM_FACTOR


def _backward_time(ops: list[Op], gpu: GPUSpec, precision: str) -> float:
    """Backward of forward groups ``ops``: 2x GEMM FLOPs (dgrad + wgrad, each at its measured
    rate when the GPU carries a ``gemm_table``), ``backward_elementwise_factor`` x elementwise
    traffic; twice as many groups to issue (dgrad and wgrad per GEMM)."""
    bwd_e = backward_elementwise_factor(gpu)
    gpu_s = sum(
        op_time(o, gpu, precision) * bwd_e
        if o.kind == "mem"
        else _backward_op_time(o, gpu, precision)
        for o in ops
    )
    return _host_bound(gpu_s, C.BACKWARD_GEMM_FACTOR * len(ops), gpu)


def grad_accumulation_time(params: float, gpu: GPUSpec) -> float:
    """Adding one micro-batch's weight gradients of ``params`` parameters into the accumulated
    ones when the stack does not fuse it into the weight-gradient GEMM
    (``gpu.grad_accumulation_bytes_per_param`` bytes each at the HBM rate); 0 for Megatron-LM's
    ``gradient_accumulation_fusion``, the default."""
    nbytes = gpu.grad_accumulation_bytes_per_param
    if not nbytes:
        return 0.0
    return params * nbytes / (gpu.memory_bandwidth_GBps * 1e9 * gpu.memory_efficiency)


def _gemm(name: str, tokens: float, k: float, n: float, wbytes: float, kind: OpKind = "gemm") -> Op:
    """(tokens x k) @ (k x n): 2*tokens*k*n FLOPs; read input and weight, write 16-bit output."""
    flops = 2.0 * tokens * k * n
    nbytes = tokens * k * wbytes + k * n * wbytes + tokens * n * C.ACTIVATION_BYTES
    return Op(name, flops, nbytes, kind, (tokens, k, n))


def _expert_gemm(op: Op, extra_bytes: float, touched: float) -> Op:
    """A grouped MoE GEMM: ``op`` over all routed rows plus the weights of the other
    ``touched - 1`` experts read; its table shape has the rows of ONE expert."""
    assert op.dims is not None
    m, k, n = op.dims
    return Op(op.name, op.flops, op.bytes + extra_bytes, "gemm", (m / max(touched, 1.0), k, n))


#: torchao's rowwise Float8 recipe over its tensorwise one, per element of a GEMM input cast
#: (forward; the backward's casts follow at ``backward_elementwise_factor`` x, as for every
#: cast), in HBM-byte equivalents.  Mechanism (torchao ``Float8LinearConfig.from_recipe_name
#: ("rowwise")``: input, weight and grad-output all ``ScalingGranularity.AXISWISE``, power-of-2
#: scales): each operand is scaled along the reduction dimension of each GEMM it feeds, so
#: input, weight and output gradient are each reduced (amax) and cast twice, once per axis,
#: where tensorwise casts once and transposes; the rowwise GEMM is PyTorch's CUTLASS kernel,
#: 3-8% slower than cuBLAS tensorwise on the 8B forward shapes and up to 31% on the 70B
#: ones (``raw-h100x1-fp8-gemm.json``; pytorch/pytorch#147971).  The per-cast cost does not
#: shrink with TP while the GEMMs do, which is why rowwise lost to bf16 under TP8 until
#: torchao's ``_auto_filter_for_recipe`` (pytorch/ao#2410, June 2025, after the torchtitan
#: 820504e runs) left the small wk/wv linears in bf16 (pytorch/torchtitan#1207).
#: Fitted -- one global value -- to one measurement: 4 torchtitan-style Llama-3-8B blocks,
#: seq 8192, per-block torch.compile, one H100, torchao 0.18 / torch 2.11: rowwise 20.85 ms
#: vs tensorwise 18.09 ms per block (``benchmarks/validation/modern/raw-h100x1-float8-block
#: -run1.json``), the difference priced at the catalog H100's HBM rate.
FP8_ROWWISE_EXTRA_CAST_BYTES = 11.3


def block_forward_ops(
    model: Model,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    sequence_parallel: bool,
    precision: str,
    stack: Stack,
) -> list[Op]:
    """Operator groups of one block's forward on one GPU of a TP group.

    Megatron-LM tensor parallelism (Shoeybi et al. 2019): Q/K/V and MLP-up are column-parallel,
    output projection and MLP-down row-parallel, so their FLOPs divide by ``tp``; norms,
    dropout and residual adds are replicated on every TP rank unless sequence parallelism
    shards them (Korthikanti et al. 2022 Sec. 4.2.2).

    The attention core follows ``stack.attention``.  ``"flash"`` (today's default, and every
    serving engine's prefill): one fused kernel (``'flash'`` op) that moves only Q, K, V and O
    through HBM and, under the causal mask, executes ``CAUSAL_EXECUTED_FRACTION`` of the
    4 b s^2 h model FLOPs.  ``"unfused"`` (Megatron-LM 2021/22, the published 2021 runs):
    scores written to HBM and softmax (+ dropout when ``stack.dropout > 0``) kernels over
    them, the full square computed, consistent with Korthikanti's activation formulas (their
    5as^2b term).  Without dropout the residual adds move ``RESIDUAL_ADD_BYTES``.
    """
    b, s, h, t = micro_batch, seq, model.hidden_size, tp
    hd = model.kv_channels
    tokens = float(b * s)
    wb = quant.weight_bytes_per_element(precision)
    q_local = model.num_attention_heads * hd / t
    kv_local = kv_heads_per_gpu(model, t) * hd
    heads_local = model.num_attention_heads / t
    rep = float(t) if sequence_parallel else 1.0
    ops: list[Op] = []
    # Attention (Narayanan eq. 3: QKV 6bsh^2, scores+AV 4bs^2h, out-proj 2bsh^2 for MHA).
    ops.append(_gemm("qkv", tokens, h, q_local + 2 * kv_local, wb))
    eager = stack.eager
    if not model.learned_position_embeddings:
        rope_bytes = C.EAGER_ROPE_BYTES if eager else C.ROPE_BYTES
        ops.append(Op("rope", 0.0, rope_bytes * tokens * (q_local + kv_local), "mem"))
    core_flops = 2.0 * 2.0 * b * heads_local * s * s * hd  # QK^T and softmax@V
    score_elems = b * heads_local * s * s
    io_bytes = C.ACTIVATION_BYTES * tokens * (2 * q_local + 2 * kv_local)  # Q, K, V in; O out
    if stack.flash:
        # Fused kernel (Dao et al. 2022): the s x s scores never leave SRAM.
        executed = C.CAUSAL_EXECUTED_FRACTION * core_flops
        ops.append(
            Op(
                "attention_core",
                executed,
                io_bytes,
                "flash",
                model_flops=core_flops,
                seq=s,
                kernel=stack.attention_kernel,
            )
        )
    else:
        core_bytes = io_bytes + C.ACTIVATION_BYTES * 2 * score_elems
        ops.append(Op("attention_core", core_flops, core_bytes, "attn"))
        softmax_bytes = C.SOFTMAX_DROPOUT_BYTES if stack.has_dropout else C.SOFTMAX_BYTES
        ops.append(Op("softmax_dropout", 0.0, softmax_bytes * score_elems, "mem"))
    ops.append(_gemm("out_proj", tokens, q_local, h, wb))
    # MLP (GeLU: 2 matrices, 16bsh^2 at f=4h; SwiGLU: 3 matrices).
    n_up = 1 if model.mlp == "gelu" else 2
    act_bytes = C.GELU_BYTES if model.mlp == "gelu" else C.SWIGLU_BYTES
    if eager and model.mlp == "swiglu":
        act_bytes = C.EAGER_SWIGLU_BYTES
    if model.num_experts is not None and model.experts_per_token is not None:
        f = (model.moe_ffn_hidden_size or model.ffn_hidden_size) / t
        k, e = model.experts_per_token, model.num_experts
        ops.append(_gemm("router", tokens, h, e, wb))
        routed = tokens * k
        # Distinct experts touched by `tokens` tokens, each picking k of e uniformly.
        touched = e * (1.0 - (1.0 - k / e) ** tokens)
        up = _gemm("moe_up", routed, h, n_up * f, wb)
        down = _gemm("moe_down", routed, f, h, wb)
        # Weight bytes: each touched expert's matrices are read once.
        up = _expert_gemm(up, (touched - 1) * h * n_up * f * wb, touched)
        down = _expert_gemm(down, (touched - 1) * f * h * wb, touched)
        ops += [up, Op("activation", 0.0, act_bytes * routed * f, "mem"), down]
        ops.append(Op("dispatch_combine", 0.0, 4.0 * C.ACTIVATION_BYTES * routed * h / rep, "mem"))
    else:
        f = model.ffn_hidden_size / t
        ops.append(_gemm("mlp_up", tokens, h, n_up * f, wb))
        ops.append(Op("activation", 0.0, act_bytes * tokens * f, "mem"))
        ops.append(_gemm("mlp_down", tokens, f, h, wb))
    if quant.quantizes_activations(precision):
        # Each GEMM's input is cast to FP8 (INT8 / FP4 in W8A8 / W4A4 serving formats, priced
        # alike) on every TP rank: QKV and MLP-up read the full hidden state, out-proj and
        # MLP-down their local shard.
        inputs = 2 * h + q_local + (model.moe_ffn_hidden_size or model.ffn_hidden_size) / t
        cast = quant.input_cast_bytes(precision)  # fp8: FP8_CAST_BYTES
        if stack.fp8_recipe == "rowwise":
            cast += FP8_ROWWISE_EXTRA_CAST_BYTES
        ops.append(Op("fp8_casts", 0.0, cast * tokens * inputs, "mem"))
    # Replicated elementwise: 2 norms + 2 bias-dropout-adds (Megatron fused kernels).
    bda = C.BIAS_DROPOUT_ADD_BYTES if stack.has_dropout else C.RESIDUAL_ADD_BYTES
    norm = _norm_bytes(model, stack)
    ops.append(Op("norms_residuals", 0.0, (2 * norm + 2 * bda) * tokens * h / rep, "mem"))
    return ops


def _norm_bytes(model: Model, stack: Stack) -> float:
    """HBM bytes per element of one norm: a fused kernel's ``NORM_BYTES``; eager RMSNorm's op
    sequence (``EAGER_RMSNORM_BYTES``; eager LayerNorm is one kernel, ``F.layer_norm``)."""
    if stack.eager_rmsnorm(model):
        return C.EAGER_RMSNORM_BYTES
    return C.NORM_BYTES


def _tp_collectives(nbytes: float, tp: int, link: LinkTier, count: int) -> float:
    """``count`` all-reduces of ``nbytes`` (or, with sequence parallelism, the equivalent
    all-gather + reduce-scatter pairs: same ring volume, Korthikanti et al. 2022 Sec. 4.2.2)."""
    return count * allreduce_time(nbytes, tp, link)


#: The operator groups a block's forward ends with whose outputs no backward saves: the MLP
#: down-projection (dense or MoE), and the residual traffic after it, which
#: ``Stack.recompute_early_stop`` does not recompute.  (The residual add shares the
#: norms/residuals group; it is a few percent of a block and stays counted.)
LAST_GEMMS = frozenset({"mlp_down", "moe_down"})


#: GEMM groups of which torchtitan's per-op policy recomputes half the FLOPs (see
#: :func:`_selective_op_recompute`).
_HALF_RECOMPUTED_GEMMS = frozenset({"qkv", "out_proj", "mlp_up", "moe_up"})

#: Fraction of a block's forward TP traffic that torchtitan's per-op policy re-runs.  With
#: sequence parallelism (torchtitan's TP always shards the norms) the two all-gathers feeding
#: Q/K/V and the MLP (their outputs are not in ``_save_list``) and the reduce-scatter after
#: the recomputed output projection: 3 of the 4 half-collectives of the block's forward;
#: without SP the all-reduce after the output projection, 1 of 2.
SELECTIVE_OP_TP_RECOMPUTE_FRACTION = {True: 0.75, False: 0.5}


def _selective_op_recompute(
    ops: list[Op], gpu: GPUSpec, precision: str, sequence_parallel: bool
) -> tuple[float, float, float]:
    """(seconds, FLOPs, TP-traffic fraction) torchtitan's per-op selective checkpointing
    recomputes for one block's backward.

    torchtitan ``parallelize_llama.py`` @ 9dec370: every op outside ``_save_list`` is
    recomputed -- all elementwise groups (norms, RoPE, SwiGLU, residuals, FP8 casts) -- and
    of the matmuls every second one, counted afresh in each checkpointed call: of the seven
    matmuls of a Llama block (wq, wk, wv, wo, w1, w3, w2) wk, wo and w3 are recomputed.
    Their FLOPs, 2 h (kv + h + f) per token, are half of those of QKV, the output projection
    and the MLP up-projection together, which is how they are priced (half of each group);
    none of the down-projection.  The attention kernel's output is saved, so the core is
    not recomputed.  FP8 is the same (torchao's Float8 linears reach the policy as
    ``aten.mm`` on a tensor subclass).  Measured on one H100 (torchtitan-style Llama-3-8B
    block, seq 8192): x1.149 of no recompute eager, x1.137 compiled, against x1.147 / x1.118 predicted
    (benchmarks/validation/modern/torchtitan_compare.py).
    """
    t = 0.0
    flops = 0.0
    n = 0
    for o in ops:
        if o.kind == "mem":
            frac = 1.0
        elif o.name in LAST_GEMMS or o.kind == "flash" or o.name == "attention_core":
            frac = 0.0
        elif o.name in _HALF_RECOMPUTED_GEMMS:
            frac = 0.5
        else:
            frac = 1.0
        if frac:
            t += frac * op_time(o, gpu, precision)
            flops += frac * o.flops
            n += 1
    tp_frac = SELECTIVE_OP_TP_RECOMPUTE_FRACTION[bool(sequence_parallel)]
    return _host_bound(t, n, gpu), flops, tp_frac


def block_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    recompute: str,
    sequence_parallel: bool,
    precision: str,
    tp_link: LinkTier,
    stack: Stack,
) -> PassTime:
    """One micro-batch through one transformer block on one GPU of its TP group (training).

    Backward = 2x forward GEMM/attention FLOPs and 2x elementwise traffic
    (``BACKWARD_GEMM_FACTOR``, ``BACKWARD_ELEMENTWISE_FACTOR``); a fused attention kernel's
    backward executes ``FLASH_BACKWARD_FLOP_FACTOR`` x its forward (it recomputes the scores).
    Recompute ``full`` adds one forward (and its 2 TP all-reduces); ``selective`` adds the
    attention core (and softmax/dropout when un-fused; Korthikanti et al. 2022 Sec. 5).
    ``flops_fwd`` counts model FLOPs (the full score square, the MFU convention of NeMo and
    Megatron-LM); ``hw_flops`` the FLOPs executed (causal half, the flash backward, recompute).  TP: 2 all-reduces of b*s*h 16-bit
    elements in forward and 2 in backward (Narayanan et al. 2021 Sec. 3.2), not overlapped
    (Megatron-LM default).
    """
    ops = block_forward_ops(
        model,
        tp=tp,
        micro_batch=micro_batch,
        seq=seq,
        sequence_parallel=sequence_parallel,
        precision=precision,
        stack=stack,
    )
    fwd_compute = _ops_time(ops, gpu, precision)
    bwd_compute = _backward_time(ops, gpu, precision)
    flops_fwd = sum(o.counted_flops for o in ops)
    executed_fwd = sum(o.flops for o in ops)
    executed_bwd = sum(
        o.flops * (C.FLASH_BACKWARD_FLOP_FACTOR if o.kind == "flash" else C.BACKWARD_GEMM_FACTOR)
        for o in ops
    )
    act = micro_batch * seq * model.hidden_size * C.ACTIVATION_BYTES
    tp_fwd = _tp_collectives(act, tp, tp_link, 2)
    tp_bwd = _tp_collectives(act, tp, tp_link, 2)
    if recompute == "full" and stack.recompute_early_stop:
        # The block's last GEMM (row-parallel MLP down-projection) and the all-reduce after it
        # produce nothing the backward needs: PyTorch's checkpoint stops before them.
        rec = [o for o in ops if o.name not in LAST_GEMMS]
        re_s, re_flops = _ops_time(rec, gpu, precision), sum(o.flops for o in rec)
        tp_bwd += tp_fwd / 2
    elif recompute == "full":
        re_s, re_flops = fwd_compute, executed_fwd
        tp_bwd += tp_fwd
    elif recompute == "selective":
        sel = [o for o in ops if o.name in ("attention_core", "softmax_dropout")]
        re_s, re_flops = _ops_time(sel, gpu, precision), sum(o.flops for o in sel)
    elif recompute == "selective_op":
        re_s, re_flops, tp_frac = _selective_op_recompute(
            ops, gpu, precision, sequence_parallel and tp > 1
        )
        tp_bwd += tp_frac * tp_fwd
    elif recompute == "full_half":
        # Every second block recomputed in full (early stop as the stack does it).
        rec = [o for o in ops if not (stack.recompute_early_stop and o.name in LAST_GEMMS)]
        re_s = 0.5 * _ops_time(rec, gpu, precision)
        re_flops = 0.5 * sum(o.flops for o in rec)
        tp_bwd += 0.5 * (tp_fwd / 2 if stack.recompute_early_stop else tp_fwd)
    elif recompute == "none":
        re_s, re_flops = 0.0, 0.0
    else:
        raise ValueError(f"unknown recompute {recompute!r}")
    return PassTime(
        fwd_s=fwd_compute + tp_fwd,
        bwd_s=bwd_compute
        + re_s
        + tp_bwd
        + grad_accumulation_time(block_params_per_gpu(model, tp), gpu),
        tp_comm_fwd_s=tp_fwd,
        tp_comm_bwd_s=tp_bwd,
        flops_fwd=flops_fwd,
        hw_flops=executed_fwd + executed_bwd + re_flops,
    )


def embedding_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    precision: str,
    tp_link: LinkTier,
) -> PassTime:
    """Vocab-parallel embedding lookup (+ learned positions, dropout) for one micro-batch.

    Memory-bound (``EMBEDDING_BYTES`` per output element); with TP the partial lookups are
    all-reduced once in forward (Megatron-LM ``VocabParallelEmbedding``); backward is a
    scatter-add of the same traffic with no collective.
    """
    if model.vocab_size == 0:
        return ZERO_PASS
    tokens = float(micro_batch * seq)
    op = Op("embedding", 0.0, C.EMBEDDING_BYTES * tokens * model.hidden_size, "mem")
    fwd = _ops_time([op], gpu, precision)
    comm = allreduce_time(tokens * model.hidden_size * C.ACTIVATION_BYTES, tp, tp_link)
    bwd = op_time(op, gpu, precision) * backward_elementwise_factor(gpu)
    emb_params = stage_params_per_gpu(model, 0, first=True, last=False, sequence_length=seq, tp=tp)
    bwd += grad_accumulation_time(emb_params, gpu)
    return PassTime(fwd + comm, bwd, comm, 0.0, 0.0, 0.0)


def head_time(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    precision: str,
    tp_link: LinkTier,
    stack: Stack,
) -> PassTime:
    """Final norm + vocab-parallel LM head GEMM (2 b s h V / t FLOPs, kept 16-bit) + cross
    entropy on fp32 logits (``CROSS_ENTROPY_BYTES`` per logit forward, ``CROSS_ENTROPY_BWD_BYTES``
    backward; the ``EAGER_*`` counts where the head runs eager and the loss is not compiled).  TP: three b*s fp32 all-reduces in the loss (max, sum-exp, target logit) forward
    and one b*s*h all-reduce of the input gradient backward (Megatron-LM
    ``vocab_parallel_cross_entropy``; Narayanan eq. 3 term 6 B s h V for fwd+bwd).
    """
    if model.vocab_size == 0:
        return ZERO_PASS
    tokens = float(micro_batch * seq)
    h, v = model.hidden_size, model.vocab_size / tp
    wb = C.BYTES_PER_ELEMENT["bf16"]
    eager = stack.eager_head and not stack.compiled_loss
    ce_f = C.EAGER_CROSS_ENTROPY_BYTES if eager else C.CROSS_ENTROPY_BYTES
    ce_b = C.EAGER_CROSS_ENTROPY_BWD_BYTES if eager else C.CROSS_ENTROPY_BWD_BYTES
    norm_b = C.EAGER_RMSNORM_BYTES if stack.eager_head_rmsnorm(model) else C.NORM_BYTES
    norm = Op("final_norm", 0.0, norm_b * tokens * h, "mem")
    gemm = _gemm("lm_head", tokens, h, v, wb, kind="attn")
    ce = Op("cross_entropy", 0.0, ce_f * tokens * v, "mem")
    ce_bwd = Op("cross_entropy_bwd", 0.0, ce_b * tokens * v, "mem")
    fwd = _ops_time([norm, gemm, ce], gpu, precision)
    bwd = _host_bound(
        op_time(norm, gpu, precision) * backward_elementwise_factor(gpu)
        + _backward_op_time(gemm, gpu, precision)
        + op_time(ce_bwd, gpu, precision),
        4,
        gpu,
    ) + grad_accumulation_time(
        stage_params_per_gpu(model, 0, first=False, last=True, sequence_length=seq, tp=tp), gpu
    )
    comm_f = 3 * allreduce_time(tokens * 4.0, tp, tp_link)
    comm_b = allreduce_time(tokens * h * C.ACTIVATION_BYTES, tp, tp_link)
    return PassTime(
        fwd + comm_f,
        bwd + comm_b,
        comm_f,
        comm_b,
        gemm.flops,
        gemm.flops * (1.0 + C.BACKWARD_GEMM_FACTOR),
    )
