"""Memory per GPU: model states, activations, KV cache, in-flight micro-batches.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv:2205.05198), Sec. 4-5 and Table 2, per block per micro-batch:

=====================  ==========================================
no parallelism         s b h (34 + 5 a s / h)
TP                     s b h (10 + 24/t + 5 a s / (h t))
TP + SP                s b h / t (34 + 5 a s / h)
TP + selective         s b h (10 + 24/t)
TP + SP + selective    s b h 34 / t
full recompute         2 s b h        (2 s b h / t with SP: the stored input is SP-sharded)
=====================  ==========================================

Generalisation (reduces exactly to the table for GPT: MHA, head_dim = h/a, f = 4h, GeLU):
the "10" (not TP-sharded) part is the two norm inputs (2+2), the QKV input (2), the MLP
input (2) and the two 1-byte dropout masks (1+1), all x s b h; the "24" (TP-sharded) part is
Q (2 s b a d), K and V (2 s b kv d each, replicated when tp > kv_heads), the output-projection
input (2 s b a d) and the MLP's stored tensors: GeLU 2 s b f (GeLU input) + 2 s b f (down-proj
input) = 16 s b h at f = 4h; SwiGLU 4 s b f (gate/up output) + 2 s b f (down-proj input).
MoE: the MLP terms and the MLP input are multiplied by ``experts_per_token`` (each token is
processed, and stored, by k experts).  The 5 a s^2 b term is the softmax output (2), dropout
mask (1) and dropout output (2) of the un-fused attention core used by Megatron-LM.

The stack (:class:`~solver.costmodel.stack.Stack`) removes terms, as a real step does:
without dropout the two 1-byte masks go (34 -> 32 s b h for GPT, what a real H100 measures
for a block with flash attention and no dropout), and the un-fused core keeps only its
softmax output (2 a s^2 b); a fused (flash) attention kernel stores no s x s tensor at all,
only the fp32 log-sum-exp per query row (``SOFTMAX_STATS_BYTES`` x a s b).
"""

from __future__ import annotations

from ..specs import Model
from . import constants as C
from .params import kv_heads_per_gpu
from .stack import Stack

__all__ = [
    "BYTES_PER_PARAM",
    "COMM_BYTES_PER_PARAM",
    "FSDP2_ROOT_UNSHARDED_BYTES",
    "ZERO3_LIVE_BYTES_PER_PARAM",
    "ZERO3_LOSS_PHASE_BYTES_PER_PARAM",
    "activation_transient_bytes",
    "backward_block_bytes",
    "block_activation_bytes",
    "eager_loss_cached_bytes",
    "embedding_activation_bytes",
    "embedding_backward_bytes",
    "fsdp2_root_unsharded_bytes",
    "fsdp2_stream_cache_bytes",
    "grads_phase_activation_bytes",
    "head_activation_bytes",
    "in_flight_micro_batches",
    "kv_cache_bytes_per_token",
    "model_state_bytes",
    "output_grad_bytes",
    "zero3_gathered_weight_bytes",
]

#: (weights, gradients, optimizer) bytes per parameter for Adam.
#: megatron_bf16: bf16 weights, fp32 main grads, fp32 master + m + v = 2 + 4 + 12 = 18
#: (NVIDIA/Megatron-LM docs/user-guide/features/dist_optimizer.md, "bf16 params, fp32 main
#: grads: 18"); amp_fp16: fp16 weights and grads, fp32 master + m + v = 2 + 2 + 12 = 16
#: (ZeRO, Rajbhandari et al. 2019, Sec. 3.1, K = 12); pure_bf16: bf16 weights, grads, m, v
#: = 2 + 2 + 4 = 8.
#: fsdp2_mixed: PyTorch FSDP2 with ``MixedPrecisionPolicy(param_dtype=bf16,
#: reduce_dtype=fp32)`` over fp32 parameters (torchtitan's default, ``training.mixed_precision_
#: param``/``_reduce``): fp32 sharded params (the master copy), fp32 sharded gradients, fp32
#: Adam m + v = 4 + 4 + 8 = 16; the bf16 unsharded copies are transient (see
#: :func:`model_state_bytes` for ZeRO-1, FSDP2 without resharding).
BYTES_PER_PARAM: dict[str, tuple[float, float, float]] = {
    "megatron_bf16": (2.0, 4.0, 12.0),
    "amp_fp16": (2.0, 2.0, 12.0),
    "pure_bf16": (2.0, 2.0, 4.0),
    "fsdp2_mixed": (4.0, 4.0, 8.0),
}

#: (weight all-gather, gradient reduction) bytes per parameter on the wire.  Megatron-LM's
#: distributed optimizer reduce-scatters its fp32 main grads and all-gathers bf16 params;
#: amp_fp16 / pure_bf16 move 16-bit both ways; FSDP2 mixed precision all-gathers in
#: ``param_dtype`` (bf16) and reduce-scatters in ``reduce_dtype`` (fp32: torchtitan's default,
#: ``mixed_precision_reduce = "float32"``).
COMM_BYTES_PER_PARAM: dict[str, tuple[float, float]] = {
    "megatron_bf16": (2.0, 4.0),
    "amp_fp16": (2.0, 2.0),
    "pure_bf16": (2.0, 2.0),
    "fsdp2_mixed": (2.0, 4.0),
}

#: Bytes per parameter of the 16-bit working copy FSDP2 all-gathers (``param_dtype``).
FSDP2_UNSHARDED_BYTES = 2.0
#: Bytes per parameter of the unsharded gradient FSDP2 accumulates when it does not reduce
#: every micro-batch: it is kept in ``reduce_dtype`` (fp32 in torchtitan), PyTorch
#: ``torch/distributed/fsdp/_fully_shard/_fsdp_param.py``
#: ``FSDPParam.to_accumulated_grad_if_needed`` (``unsharded_grad.to(self.reduce_dtype)``).
FSDP2_ACCUMULATED_GRAD_BYTES = 4.0

#: ZeRO-3 / FSDP bytes live per parameter of ONE block on top of the shards, by policy (see
#: :func:`zero3_gathered_weight_bytes`).  FSDP2 (``fsdp2_mixed``): in the backward the block
#: being computed and the next one, prefetched (FSDP2's implicit prefetch of the next
#: all-gather, PyTorch ``fully_shard`` docs), both gathered in bf16 (2 + 2), plus the current
#: block's unsharded bf16 gradient (2) and its fp32 copy for the fp32 reduce-scatter (4) = 10.
#: Others: the one gathered 16-bit block (DeepSpeed bounds it by
#: ``stage3_max_live_parameters``).
ZERO3_LIVE_BYTES_PER_PARAM: dict[str, float] = {
    "megatron_bf16": 2.0,
    "amp_fp16": 2.0,
    "pure_bf16": 2.0,
    "fsdp2_mixed": 10.0,
}

#: ZeRO-3 bytes live per parameter of one block at the *loss* peak, by policy: FSDP2 under
#: torchtitan keeps only the last block gathered then (``reshard_after_forward`` is False for
#: the last block alone, ``apply_fsdp`` at 9dec370: "FSDP would prefetch it immediately"), in
#: bf16 (2 B); the backward's prefetch, gradients and reduce-scatter copy
#: (``ZERO3_LIVE_BYTES_PER_PARAM``) start with the first block's backward, after the loss.
#: Measured: the ledger's allocated peak without this phase split exceeds a torchtitan-shaped
#: FSDP2 step's by 2.0 GB at 8 and 64 ranks, (10 - 2) B x 218M = 1.74 of it
#: (raw-h100x1-fsdp2-pools-fake{8,64}.json).  Other policies: no phase split (the full live
#: set).
ZERO3_LOSS_PHASE_BYTES_PER_PARAM: dict[str, float] = {
    **ZERO3_LIVE_BYTES_PER_PARAM,
    "fsdp2_mixed": FSDP2_UNSHARDED_BYTES,
}

#: Bytes per parameter of the FSDP2 *root* group -- the parameters outside the transformer
#: blocks on the GPU: word embedding, final norm, LM head -- live unsharded from the forward to
#: the end of the backward under ZeRO-3, by policy.  PyTorch FSDP2 never reshards the root
#: after forward (``FSDPState._lazy_init``: "For the root, do not reshard after forward since
#: for training, the parameters would be freed and all-gathered immediately",
#: ``torch/distributed/_composable/fsdp/_fsdp_state.py``, 2024), and torchtitan wraps every
#: block and then the whole model (``fully_shard(model, ...)``, ``apply_fsdp`` in
#: ``parallelize_llama.py`` at 9dec370 and e7c0cae), so embedding + norm + head are one group
#: gathered in ``param_dtype`` (bf16, 2 B).  Other policies have no such root group (0).
FSDP2_ROOT_UNSHARDED_BYTES: dict[str, float] = {"fsdp2_mixed": FSDP2_UNSHARDED_BYTES}


#: Bytes per element of a GEMM input that Transformer Engine's FP8 linears save for the
#: weight-gradient GEMM: the FP8 cast (1 byte), not the 16-bit input.  NVIDIA/
#: TransformerEngine ``transformer_engine/pytorch/module/linear.py`` (1.x, the NeMo 24.05 /
#: 24.07 containers), ``_Linear.forward``: ``if fp8 and not fp8_meta["recipe"].
#: override_linear_precision.wgrad: saved_inputmat = inputmat`` (the FP8 tensor), likewise
#: ``LayerNormLinear`` for its norm output; torchao's Float8 linears save the 16-bit input.
TE_FP8_SAVED_INPUT_BYTES = 1.0


def block_activation_bytes(
    model: Model,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    recompute: str,
    sequence_parallel: bool,
    stack: Stack,
) -> float:
    """Activation bytes stored per block per in-flight micro-batch on one GPU.

    Korthikanti et al. 2022 Table 2, generalised, with the terms ``stack`` removes (see the
    module docstring).
    """
    s, b, h, t = float(seq), float(micro_batch), float(model.hidden_size), tp
    sp_div = float(t) if sequence_parallel else 1.0
    if recompute == "full":
        return C.ACTIVATION_BYTES * s * b * h / sp_div
    if recompute == "full_half":
        # Every second block fully recomputed (stores its input), the others store everything.
        kw = dict(
            tp=tp,
            micro_batch=micro_batch,
            seq=seq,
            sequence_parallel=sequence_parallel,
            stack=stack,
        )
        none = block_activation_bytes(model, recompute="none", **kw)  # type: ignore[arg-type]
        return 0.5 * (none + C.ACTIVATION_BYTES * s * b * h / sp_div)
    if recompute == "selective_op":
        return _selective_op_bytes(
            model, tp=tp, s=s, b=b, sp_div=sp_div, saves_unused=stack.kernels == "eager"
        )
    if recompute not in ("none", "selective"):
        raise ValueError(f"unknown recompute {recompute!r}")
    d = float(model.kv_channels)
    a = float(model.num_attention_heads)
    k = float(model.experts_per_token or 1)
    f = float(
        (model.moe_ffn_hidden_size or model.ffn_hidden_size)
        if model.num_experts is not None
        else model.ffn_hidden_size
    )
    ab = C.ACTIVATION_BYTES
    masks = 2 * C.DROPOUT_MASK_BYTES if stack.has_dropout else 0.0
    eager = stack.eager
    norm_extra = 2 * C.EAGER_NORM_SAVED_EXTRA_BYTES if stack.eager_rmsnorm(model) else 0.0
    # GEMM inputs saved for the weight gradient: 16-bit, or FP8 under Transformer Engine.
    gin = TE_FP8_SAVED_INPUT_BYTES if stack.te_fp8 else ab
    # Not TP-sharded (sharded by SP): norm inputs, dropout masks, and the QKV and MLP inputs --
    # which Megatron's SP linears save as the shard (all-gathered again in the backward) but
    # PyTorch's TP saves whole: its ``PrepareModuleInput`` all-gathers before the linears,
    # which save what they read (``Stack.pytorch_tp``).
    replicated = s * b * h * (2 * ab + masks + norm_extra)
    gathered_div = 1.0 if stack.pytorch_tp and t > 1 else sp_div
    gemm_in = s * b * h * (gin + k * gin) / gathered_div
    # TP-sharded: Q, out-proj input, MLP internals; K, V by kv heads per GPU.  Under TE FP8
    # the attention output stays saved in 16 bit by the fused attention kernel and the
    # output projection saves its own FP8 copy of it.
    q_out = (2 * ab + (gin if stack.te_fp8 else 0.0)) * s * b * a * d / t
    kv = 2 * ab * s * b * kv_heads_per_gpu(model, t) * d
    # GeLU-type: activation input (16 bit) + down-projection input; SwiGLU: gate/up output
    # (2 x 16 bit) + down-projection input.
    mlp_mult = 1.0 if model.mlp == "gelu" else 2.0
    mlp = k * (mlp_mult * ab + gin) * s * b * f / t
    if eager and model.mlp == "swiglu":
        mlp += k * C.EAGER_SWIGLU_SAVED_EXTRA_BYTES * s * b * f / t
    scores = 0.0
    if stack.flash:
        scores = C.SOFTMAX_STATS_BYTES * a * s * b / t  # the fp32 log-sum-exp per row
    elif recompute == "none":
        # softmax output (2), + dropout mask (1) and dropout output (2): 5 a s^2 b / t
        per_score = ab + (C.DROPOUT_MASK_BYTES + ab if stack.has_dropout else 0.0)
        scores = per_score * a * s * s * b / t
    return replicated / sp_div + gemm_in + q_out + kv + mlp + scores


def _selective_op_bytes(
    model: Model, *, tp: int, s: float, b: float, sp_div: float, saves_unused: bool = True
) -> float:
    """Stored bytes of one block under torchtitan's per-op selective checkpointing.

    torchtitan ``parallelize_llama.py`` (``_save_list`` / ``_apply_ac_to_transformer_block``
    at 9dec370, Dec 2024): inside the checkpointed block the outputs of ``aten.mm``, the SDPA
    flash/efficient kernels and ``aten.max`` are saved, "except every second mm" (counted
    afresh in each call); everything else is recomputed.  Of the seven matmuls of a Llama
    block (wq, wk, wv, wo, w1, w3, w2) wq, wv, w1 and w2 are saved: the block input, wq (q
    heads), wv (kv heads), the attention output and its fp32 log-sum-exp, w1 (f / t) and w2
    (its row-parallel output is whole, s b h, before the reduce-scatter).  For a Llama-3-8B
    block that is 15.53 s b h, what one H100 measures for a torchtitan-style eager block.
    Compiled (``saves_unused`` False: per-block ``torch.compile``, whose partitioner saves only
    what the backward graph reads) the w2 output goes: only the residual add consumes it and
    an add's backward reads nothing, so 13.53 s b h -- measured 13.53 (Llama-3-8B block, seq
    8192) and 13.43 against 15.43 eager (Llama-2-13B, seq 4096) on one H100,
    benchmarks/validation/modern/raw-h100x1-torchtitan-block{,-13b}.json
    (``torchtitan_compare.py``).
    FP8 changes nothing here: torchao's Float8 linears reach the policy as ``aten.mm`` on
    their float8 tensor subclass (the subclass turns it into ``_scaled_mm`` below the
    policy's dispatch mode), and torchtitan publishes the same peak for its bf16 and Float8
    rows (77.0 / 76.8 GiB, Llama 3.1 8B with compile on 8 H100s).
    """
    ab = C.ACTIVATION_BYTES
    h, a, d = float(model.hidden_size), float(model.num_attention_heads), float(model.kv_channels)
    k = float(model.experts_per_token or 1)
    f = float(
        (model.moe_ffn_hidden_size or model.ffn_hidden_size)
        if model.num_experts is not None
        else model.ffn_hidden_size
    )
    stored = ab * s * b * h / sp_div  # the checkpoint's input
    stored += ab * s * b * a * d / tp + C.SOFTMAX_STATS_BYTES * a * s * b / tp  # attention out
    stored += ab * s * b * a * d / tp  # wq
    stored += ab * s * b * kv_heads_per_gpu(model, tp) * d  # wv
    stored += k * ab * s * b * f / tp  # w1 (gate)
    if saves_unused:
        stored += ab * s * b * h  # w2, before its reduce-scatter
    return stored


def activation_transient_bytes(
    model: Model,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    recompute: str,
    sequence_parallel: bool,
    stack: Stack,
) -> float:
    """Peak *extra* activation bytes while one block is recomputed for its backward.

    With recomputation, the backward of a block first rebuilds what was not stored, for one
    block and one micro-batch at a time: full recompute rebuilds all of it (the no-recompute
    size, on top of the stored 2sbh input), as does ``full_half`` for its recomputed blocks;
    selective rebuilds the attention core's 5as^2b/t, ``selective_op`` what it did not save.
    Without recomputation nothing is rebuilt (0).  Counted once per stage (Korthikanti et al.
    2022 Sec. 5 / Chen et al. 2016 "Training Deep Nets with Sublinear Memory Cost": peak = stored
    checkpoints + one segment's activations).
    """
    if recompute == "none":
        return 0.0
    kw = dict(
        tp=tp, micro_batch=micro_batch, seq=seq, sequence_parallel=sequence_parallel, stack=stack
    )
    full = block_activation_bytes(model, recompute="none", **kw)  # type: ignore[arg-type]
    if recompute in ("full", "full_half"):
        return full
    stored = block_activation_bytes(model, recompute=recompute, **kw)  # type: ignore[arg-type]
    return max(0.0, full - stored)


def output_grad_bytes(
    model: Model, *, tp: int, micro_batch: int, seq: int, sequence_parallel: bool
) -> float:
    """The gradient of a block's output (equally, of a stage's input) for one micro-batch on
    one GPU: one 16-bit s x b x h tensor, SP-sharded with sequence parallelism."""
    div = float(tp) if sequence_parallel else 1.0
    return C.ACTIVATION_BYTES * seq * micro_batch * model.hidden_size / div


def backward_block_bytes(
    model: Model,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    sequence_parallel: bool,
    stack: Stack,
) -> float:
    """Activation bytes live while one block runs its backward, for one micro-batch: the
    block's whole no-recompute set -- stored, or rebuilt first under any recompute policy
    (:func:`activation_transient_bytes`), the checkpointed input among it -- plus the gradient
    arriving at its output (:func:`output_grad_bytes`).  For a GPT block with flash attention
    and no dropout 32.04 + 2 = 34.04 bytes per s b h, whatever the recompute policy.
    """
    shape = dict(tp=tp, micro_batch=micro_batch, seq=seq, sequence_parallel=sequence_parallel)
    full = block_activation_bytes(model, recompute="none", stack=stack, **shape)  # type: ignore[arg-type]
    return full + output_grad_bytes(model, **shape)  # type: ignore[arg-type]


def embedding_backward_bytes(model: Model, *, micro_batch: int, seq: int) -> float:
    """The dense embedding backward's fp32 partial sums on stage 0 (``EMBEDDING_BWD_PARTIAL_BYTES``
    per token per hidden element above ``EMBEDDING_BWD_DIRECT_MAX_TOKENS`` tokens, else 0;
    0 without an embedding), live with every gradient at the end of the backward."""
    tokens = seq * micro_batch
    if model.vocab_size == 0 or tokens <= C.EMBEDDING_BWD_DIRECT_MAX_TOKENS:
        return 0.0
    return C.EMBEDDING_BWD_PARTIAL_BYTES * tokens * model.hidden_size


def grads_phase_activation_bytes(
    model: Model,
    *,
    late_grads: float,
    first: bool,
    tp: int,
    micro_batch: int,
    seq: int,
    sequence_parallel: bool,
    stack: Stack,
) -> float:
    """Activation bytes live *with the gradients* at a stage's gradient-side peak when
    gradients are made on demand (``grad_buffers: on_demand``, one micro-batch per step).

    PyTorch creates a parameter's ``.grad`` during the backward, when its gradient is first
    computed: ``AccumulateGrad`` runs as soon as its input is ready (``sequence_nr`` =
    UINT64_MAX, "always called ASAP during backwards") and a parameter without a ``.grad`` takes
    the incoming tensor without a copy ("we can steal new_grad without a deep copy"),
    ``torch/csrc/autograd/functions/accumulate_grad.{cpp,h}`` (PyTorch 2.11); they were freed
    by ``zero_grad(set_to_none=True)``.  The backward runs the stage's blocks last to first,
    so the gradient-side peak is in the stage's first block's backward: every gradient except
    those made after it -- ``late_grads``, stage 0's embedding (word, unless tied to a head on
    the same stage whose backward ran first, and learned positions) -- with that block's
    :func:`backward_block_bytes` (under ``torch.utils.checkpoint``, non-reentrant, the whole
    block is rebuilt at the first unpack of one of its saved tensors,
    ``torch/utils/checkpoint.py`` ``_checkpoint_hook.unpack_hook``); then at the stage's end
    every gradient with the stage input's gradient (:func:`output_grad_bytes`) and, on the
    ``first`` stage, the embedding backward's partial sums (:func:`embedding_backward_bytes`):
    the larger.

    Measured on one H100 (PyTorch 2.11.0+cu130, CUDA 13.0, ``solver/profile/modern.py``,
    benchmarks/validation/modern/raw-h100x1-modern-train.json), peak allocated less what is
    allocated between steps (weights, Adam states, cuBLAS workspaces, input) less the
    gradients, per s b h: 8 bare GPT blocks (h 4096, no embedding or head), full recompute,
    s 2048: 32.0 / 24.5 / 25.0 at micro-batch 4 / 2 / 1 against this term's 34.04 less the
    input's 2 (counted between steps there) = 32.04 -- the upper bound, reached where the
    block's own gradients (12 h^2 x 2 B: 12 / 24 / 48 per s b h) are a small part; the
    Llama-3-8B (4 blocks) and 70B (2 blocks) stacks, whose 128k-entry embedding gradient
    (1.05 / 2.1 GB) comes last, 2.0 at 2048 tokens (the end of the backward) and 6.4 at 4096
    (70B; with the embedding backward's partial sums, 4.0).
    """
    shape = dict(tp=tp, micro_batch=micro_batch, seq=seq, sequence_parallel=sequence_parallel)
    block = backward_block_bytes(model, stack=stack, **shape)  # type: ignore[arg-type]
    end = output_grad_bytes(model, **shape)  # type: ignore[arg-type]
    if first:
        end += embedding_backward_bytes(model, micro_batch=micro_batch, seq=seq)
    return max(block - late_grads, end)


def zero3_gathered_weight_bytes(model: Model, *, tp: int, weight_bytes: float = 2.0) -> float:
    """ZeRO-3: the unsharded weights of the block being computed (one block, 16-bit).

    Parameters are all-gathered per block just before use and freed after it (Rajbhandari
    et al. 2019 Sec. 5.3), so one block's full weights are live on top of the 1/dp shards.
    Prefetching the next block can double this; DeepSpeed bounds it by
    ``stage3_max_live_parameters``.  We count one block, the minimum.
    """
    from .params import block_params_per_gpu

    return block_params_per_gpu(model, tp) * weight_bytes


def fsdp2_root_unsharded_bytes(
    root_params: float, *, memory_policy: str, zero_stage: int, dp: int
) -> float:
    """FSDP2's root group (embedding, final norm, head of the stage) held unsharded through
    the forward and backward under ZeRO-3 (``FSDP2_ROOT_UNSHARDED_BYTES``); 0 for other
    policies, below ZeRO-3 (everything is unsharded already) or without data parallelism."""
    if zero_stage < 3 or dp <= 1:
        return 0.0
    return root_params * FSDP2_ROOT_UNSHARDED_BYTES.get(memory_policy, 0.0)


def fsdp2_stream_cache_bytes(
    largest_group_params: float,
    block_params: float,
    *,
    memory_policy: str,
    dp: int,
    sharded_grads: float = 0.0,
) -> float:
    """What PyTorch's caching allocator holds for FSDP2's communication streams beyond the
    tensors' peak: reserved, never counted as allocated at the peak (feasibility ignores it).

    The caching allocator keeps a free block for the stream it was allocated on and hands it
    to no other stream (``CUDACachingAllocator.cpp``: a cached block is found only for the
    allocating stream), and FSDP2 allocates on its own streams without ``record_stream``
    (``_fsdp_collectives.py``): the reduce-scatter output, which *becomes the sharded
    gradients* ("The RS output is allocated in the RS stream and used in the default stream
    (for optimizer)", ``foreach_reduce``), and the all-gather output (``foreach_all_gather``,
    on the all-gather copy-in stream).  So the step's activations cannot reuse:

    * the reduce-scatter stream's pool: every sharded gradient (``sharded_grads``: freed by
      ``zero_grad(set_to_none=True)`` before the forward, still cached there; pass 0 where the
      ledger already counts them live with the activations);
    * the all-gather copy-in stream's pool: ``param_dtype`` bytes
      (``COMM_BYTES_PER_PARAM[policy][0]``) x (the largest group + one block): the forward
      keeps an all-gather result until the next all-gather is issued ("Defer free to allow
      for overlap of this copy-out with next all-gather collective",
      ``FSDPParamGroup.wait_for_unshard``), so the root group's output and the first block's
      are held together.

    Measured on one H100 (PyTorch 2.11, a torchtitan-shaped FSDP2 step over 8 and 64 ranks of
    the fake process group, 8 Llama-3-8B blocks + the 128k root group;
    ``benchmarks/validation/modern/fsdp2_pools.py``, ``raw-h100x1-fsdp2-pools-fake{8,64}.json``):
    the reduce-scatter stream holds 1.416 / 0.185 GB (the fp32 shards: 1.398 / 0.175), the
    copy-in stream 2.81 / 2.58 GB (this term: 2.54), and the reduce-scatter *input* is not on
    either (it is allocated on the default stream at the end of the backward, when the
    activations' memory is free).  0 for policies other than ``fsdp2_mixed`` and without data
    parallelism.
    """
    if memory_policy != "fsdp2_mixed" or dp <= 1:
        return 0.0
    gather = COMM_BYTES_PER_PARAM[memory_policy][0]
    return gather * (largest_group_params + block_params) + sharded_grads


def embedding_activation_bytes(
    model: Model, *, tp: int, micro_batch: int, seq: int, sequence_parallel: bool, stack: Stack
) -> float:
    """Stage 0's extra: the embedding-dropout mask, s b h bytes (/t with SP); 0 without dropout.

    Korthikanti et al. 2022 Sec. 4.3 (the "p/L" term: s b h p / t over p in-flight
    micro-batches).
    """
    if model.vocab_size == 0 or not stack.has_dropout:
        return 0.0
    div = float(tp) if sequence_parallel else 1.0
    return C.DROPOUT_MASK_BYTES * seq * micro_batch * model.hidden_size / div


def head_activation_bytes(
    model: Model,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    sequence_parallel: bool,
    stack: Stack,
) -> float:
    """Last stage's extra: final-norm input (2sbh), LM-head input (2sbh), fp32 logits 4sbV/t.

    Korthikanti et al. 2022 Sec. 4.3: 4 s b h / t (1 + V / h) with SP; without SP the two
    s b h tensors are not sharded; under PyTorch's TP (``stack.pytorch_tp``) the LM-head input
    is saved whole (all-gathered).  Eager kernels (``stack.kernels``): the loss peaks at
    ``EAGER_LOGIT_PEAK_BYTES`` per logit in its backward (the fp32 log-softmax and two fp32
    gradients; with TP, PyTorch's ``loss_parallel`` adds ``LOSS_PARALLEL_EXTRA_LOGIT_BYTES``),
    a compiled loss (``stack.compiled_loss``, without TP) at ``COMPILED_LOGIT_PEAK_BYTES``,
    and the final RMSNorm keeps its fp32 input too.
    """
    if model.vocab_size == 0:
        return 0.0
    s, b, h = float(seq), float(micro_batch), float(model.hidden_size)
    div = float(tp) if sequence_parallel else 1.0
    logits = C.EAGER_LOGIT_PEAK_BYTES if stack.eager_head else C.LOGIT_BYTES
    # The LM-head input: SP-sharded, except under PyTorch's TP, whose head saves the
    # all-gathered input (``Stack.pytorch_tp``).
    head_div = 1.0 if stack.pytorch_tp and tp > 1 else div
    if stack.eager_head and tp > 1:
        # PyTorch's loss_parallel over vocabulary-sharded logits (torchtitan with TP); a
        # compiled loss under it is unmeasured and keeps this eager peak (an upper bound).
        logits += C.LOSS_PARALLEL_EXTRA_LOGIT_BYTES
    elif stack.eager_head and stack.compiled_loss:
        logits = C.COMPILED_LOGIT_PEAK_BYTES
    norm_extra = C.EAGER_NORM_SAVED_EXTRA_BYTES if stack.eager_head_rmsnorm(model) else 0.0
    ab = C.ACTIVATION_BYTES
    return (
        (ab + norm_extra) * s * b * h / div
        + ab * s * b * h / head_div
        + logits * s * b * (model.vocab_size / tp)
    )


def eager_loss_cached_bytes(
    model: Model, *, tp: int, micro_batch: int, seq: int, stack: Stack
) -> float:
    """Reserved (not allocated) at the eager loss's peak: the dropped bf16 logits' cached
    block (``EAGER_LOSS_CACHED_LOGIT_BYTES`` per logit on this GPU); 0 for a fused or compiled
    loss, which keeps no such block."""
    if model.vocab_size == 0 or not stack.eager_head or stack.compiled_loss:
        return 0.0
    return C.EAGER_LOSS_CACHED_LOGIT_BYTES * seq * micro_batch * model.vocab_size / tp


def model_state_bytes(
    params_per_gpu: float, *, memory_policy: str, zero_stage: int, dp: int
) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per GPU with ZeRO sharding over ``dp``.

    ZeRO-1 shards optimizer states, ZeRO-2 also gradients, ZeRO-3 also weights (Rajbhandari
    et al. 2019, Fig. 1: 7.5B params, Nd = 64, K = 12 -> 120 / 31.4 / 16.6 / 1.9 GB).
    Megatron's distributed optimizer is ZeRO-1.
    """
    try:
        w, g, o = BYTES_PER_PARAM[memory_policy]
    except KeyError:
        raise ValueError(f"unknown memory_policy {memory_policy!r}") from None
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0..3, got {zero_stage}")
    d = float(max(1, dp))
    p = params_per_gpu
    if memory_policy == "fsdp2_mixed" and zero_stage < 3:
        # FSDP2 that keeps the gathered bf16 params from forward to backward
        # (``reshard_after_forward=False``) and accumulates unsharded bf16 gradients over the
        # micro-batches before one reduce-scatter: what torchtitan does under pipeline
        # parallelism (parallelize_llama.py: "For PP, do not reshard after forward to avoid
        # per-microbatch all-gathers"; torch.distributed.pipelining defers the gradient sync
        # to the last micro-batch).  Params (bf16) and the accumulated gradient (fp32, its
        # reduce dtype) are then held whole, the fp32 master, fp32 grad shard and Adam states
        # stay sharded.
        u, ga = FSDP2_UNSHARDED_BYTES, FSDP2_ACCUMULATED_GRAD_BYTES
        return (p * (u + w / d), p * (ga + g / d), p * o / d)
    return (
        p * w / (d if zero_stage >= 3 else 1.0),
        p * g / (d if zero_stage >= 2 else 1.0),
        p * o / (d if zero_stage >= 1 else 1.0),
    )


def in_flight_micro_batches(
    stage_index: int, pp: int, m: int, schedule: str, virtual_stages: int = 1
) -> float:
    """Micro-batches whose activations a stage holds at its peak, in whole-stage units.

    1F1B (PipeDream-flush, Megatron-LM): min(m, p - stage) (warm-up p - stage - 1 forwards
    + 1 in steady state; Narayanan et al. 2021 Sec. 2.2.1; Korthikanti et al. 2022 App. C).
    Interleaved with v chunks: Megatron-LM ``schedules.py`` warms up
    2 (p - stage - 1) + (v - 1) p chunk-micro-batches; + 1 in steady state; each chunk holds
    1/v of the stage's layers, so the count in whole-stage units is that over v.  For stage 0
    this is p (1 + (p - 1) / (p v)), Korthikanti et al. 2022 eq. 6.  Capped at m (all
    micro-batches).
    """
    if schedule == "1f1b" or virtual_stages <= 1:
        return float(min(m, pp - stage_index))
    if schedule != "interleaved":
        raise ValueError(f"unknown schedule {schedule!r}")
    v = virtual_stages
    units = min(m * v, 2 * (pp - stage_index - 1) + (v - 1) * pp + 1)
    return units / v


def kv_cache_bytes_per_token(model: Model, precision: str, tp: int) -> float:
    """KV-cache bytes per token per GPU over all layers: 2 L kv_heads/t d bytes.

    K/V heads are sharded over TP, and replicated (one head per GPU) when tp > kv_heads
    (NVIDIA "Mastering LLM Techniques: Inference Optimization").  Llama-3.1-70B bf16 tp=1:
    2 x 80 x 8 x 128 x 2 = 327680 B = 320 KiB.
    """
    return (
        2.0
        * model.num_layers
        * kv_heads_per_gpu(model, tp)
        * model.kv_channels
        * C.BYTES_PER_ELEMENT[precision]
    )
