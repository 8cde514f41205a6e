"""Memory of one GPU of a serving engine: weights, engine overhead, one forward's working set,
and what is left of ``gpu_memory_utilization`` x capacity as a paged KV-cache pool.

How vLLM sizes it at start-up (``Worker.determine_available_memory``, vllm/v1/worker/
gpu_worker.py; its log: "the current vLLM instance can use total_gpu_memory x
gpu_memory_utilization = ...; model weights take ...; non_torch_memory takes ...; PyTorch
activation peak memory takes ...; the rest of the memory reserved for KV Cache is ..."):

    KV pool = utilization x capacity - weights - activation peak - non-torch memory
              (- CUDA graphs, profiled and charged inside the fraction since vLLM v0.21)
    blocks  = floor(KV pool / bytes of one block)           (a block: ``block_size`` tokens
                                                              of K and V of every local layer)
    maximum concurrency = blocks / ceil(max_model_len / block_size)

(``get_num_blocks`` and ``get_max_concurrency_for_kv_cache_config`` in
vllm/v1/core/kv_cache_utils.py; the engine prints "Maximum concurrency for N tokens per
request: X.XXx").  Nothing of training is in it: no gradients, no optimizer, no activations
stored for a backward -- one forward's transient tensors through one layer at a time.

The weights are the stage's parameters at the workload's serving format
(:func:`stage_weight_bytes`): 16-bit, or a quantization of :mod:`solver.costmodel.quant`
(the blocks at its bits per weight with scales, the embedding and LM head 16-bit), so a
4-bit model leaves about three quarters of the bf16 weights' memory to the KV pool.

The activation working set (the "activation peak" the profile run measures with a forward of
``max_num_batched_tokens`` tokens) is the widest point of one layer's forward for T tokens on
one GPU of a TP group (16-bit tensors, ``ACTIVATION_BYTES``), with the residual stream (h)
and the normalised layer input (h) alive throughout (vLLM's decoder layers pass
``(hidden_states, residual)``; the caller keeps the input referenced while the sub-layer runs):

=============  =============================================================================
attention      residual h + input h + QKV output (a + 2 kv) d / t + attention output a d / t
               + output projection h
dense MLP      residual h + input h + up-projection output c f / t + activation output f / t
               + down projection h, c = 2 for a gated (SwiGLU) MLP, 1 for GeLU
MoE MLP        residual h + input h + k (c f / t + f / t + h) + h: the fused-MoE kernel's
               three intermediate caches are per routed copy (k = experts per token; vLLM
               ``fused_experts``: ``intermediate_cache1/2/3``)
=============  =============================================================================

plus, on the last stage, fp32 logits (``LOGIT_BYTES``) of the last token of every sequence in
the forward (vocabulary-sharded over TP).  The largest of those, x T x 2 bytes, is the working
set: the engine's memory planner (PyTorch's caching allocator, TensorRT's activation
planner) reuses it from layer to layer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..specs import Model
from . import constants as C
from . import quant
from .memory import kv_cache_bytes_per_token
from .params import block_params_per_gpu, kv_heads_per_gpu, stage_params_per_gpu

__all__ = [
    "StagePool",
    "engine_overhead_GB",
    "kv_block_bytes",
    "kv_blocks_per_sequence",
    "kv_pool_blocks",
    "kv_pool_bytes",
    "max_concurrent_sequences",
    "serving_working_set_bytes",
    "stage_kv_pool",
    "stage_weight_bytes",
]


def serving_working_set_bytes(
    model: Model, *, tp: int, tokens: int, sequences: int, last: bool
) -> float:
    """Transient activation bytes of one forward of ``tokens`` tokens through one layer, on one
    GPU of a TP group of ``tp``; with ``last``, + the fp32 logits of ``sequences`` rows.

    See the module docstring for the derivation.  Eval mode: nothing is stored for a
    backward, there are no dropout masks.
    """
    h, t = float(model.hidden_size), float(tp)
    d, a = float(model.kv_channels), float(model.num_attention_heads)
    kv = kv_heads_per_gpu(model, tp)
    attention = 3 * h + (a / t + 2 * kv) * d + a * d / t
    up = 2.0 if model.mlp == "swiglu" else 1.0
    if model.num_experts is not None:
        k = float(model.experts_per_token or 1)
        f = float(model.moe_ffn_hidden_size or model.ffn_hidden_size)
        mlp = 3 * h + k * ((up + 1) * f / t + h)
    else:
        f = float(model.ffn_hidden_size)
        mlp = 3 * h + (up + 1) * f / t
    out = C.ACTIVATION_BYTES * float(tokens) * max(attention, mlp)
    if last:
        out += C.LOGIT_BYTES * float(sequences) * model.vocab_size / t
    return out


def engine_overhead_GB(*, communicators: int) -> float:
    """Per-GPU memory of the engine outside its tensors, GB: the CUDA context
    (``CUDA_CONTEXT_GB``), cuBLAS workspaces (``CUBLAS_WORKSPACE_GB``), the captured CUDA
    graphs (``CUDA_GRAPH_GB``) and the NCCL buffers of each communicator the GPU is in (a
    TP group, a pipeline; ``NCCL_BUFFERS_PER_COMMUNICATOR_GB``)."""
    return (
        C.CUDA_CONTEXT_GB
        + C.CUBLAS_WORKSPACE_GB
        + C.CUDA_GRAPH_GB
        + communicators * C.NCCL_BUFFERS_PER_COMMUNICATOR_GB
    )


def kv_block_bytes(
    model: Model,
    precision: str,
    *,
    tp: int,
    layers: int,
    block_size: int = C.KV_BLOCK_SIZE_TOKENS,
) -> float:
    """Bytes of one paged-KV block on one GPU: K and V of ``block_size`` tokens for each of the
    GPU's ``layers`` layers (:func:`~solver.costmodel.memory.kv_cache_bytes_per_token` per
    layer; vLLM's ``page_size_bytes`` x layers)."""
    return kv_cache_bytes_per_token(model, precision, tp) * layers / model.num_layers * block_size


def kv_blocks_per_sequence(tokens: int, block_size: int = C.KV_BLOCK_SIZE_TOKENS) -> int:
    """Blocks one sequence of ``tokens`` tokens holds: ceil(tokens / block_size) (vLLM
    ``cdiv(max_model_len, block_size)``)."""
    return -(-int(tokens) // int(block_size))


def kv_pool_bytes(
    *,
    capacity_GB: float,
    utilization: float,
    weights: float,
    working_set: float,
    overhead_GB: float,
) -> float:
    """What ``utilization`` x capacity leaves for the KV cache after the weights, the working
    set and the engine overhead (bytes; negative when those do not fit)."""
    return (utilization * capacity_GB - overhead_GB) * C.GB - weights - working_set


def kv_pool_blocks(pool_bytes: float, block_bytes: float) -> int:
    """Whole blocks in the pool: floor(pool / block bytes), 0 when the pool is empty (vLLM
    ``int(available_memory // page_size // num_layers)``)."""
    if pool_bytes <= 0 or block_bytes <= 0:
        return 0
    return int(math.floor(pool_bytes / block_bytes))


def max_concurrent_sequences(
    pool_blocks: int, tokens: int, block_size: int = C.KV_BLOCK_SIZE_TOKENS
) -> float:
    """Sequences of ``tokens`` tokens the pool holds at once: blocks / blocks per sequence,
    as vLLM prints "Maximum concurrency for N tokens per request: X.XXx"."""
    return pool_blocks / kv_blocks_per_sequence(tokens, block_size)


def stage_weight_bytes(
    model: Model,
    *,
    layers: int,
    first: bool,
    last: bool,
    tp: int,
    context_tokens: int,
    precision: str,
) -> float:
    """Weight bytes on one GPU of a serving stage: its parameters (embedding on the first,
    head on the last; learned positions up to ``context_tokens``) at ``precision``, a 16-bit
    type or a quantization format key (:func:`~solver.costmodel.quant.serving_precision`):
    quantized formats store the blocks at their bits per weight (scales included) and keep the
    embedding, LM head and final norm 16-bit (:func:`~solver.costmodel.quant.stage_weight_bytes`).
    """
    params = stage_params_per_gpu(
        model, layers, first=first, last=last, sequence_length=context_tokens, tp=tp
    )
    blocks = layers * block_params_per_gpu(model, tp)
    return quant.stage_weight_bytes(blocks, params - blocks, precision)


class StagePool(NamedTuple):
    """How one GPU of a serving stage splits its memory (bytes unless the name says GB)."""

    working_set: float
    overhead_GB: float
    block_bytes: float
    pool_bytes: float
    blocks: int


def stage_kv_pool(
    model: Model,
    *,
    capacity_GB: float,
    utilization: float,
    kv_precision: str,
    tp: int,
    layers: int,
    weights: float,
    forward_tokens: int,
    sequences: int,
    last: bool,
    communicators: int,
) -> StagePool:
    """The paged KV pool of one GPU of a serving stage, as the engine sizes it at start-up:
    ``utilization`` x capacity less the weights, the engine overhead and the working set of a
    ``forward_tokens`` forward (with the last stage's logits for ``sequences`` rows), in whole
    blocks.  The evaluator's serving ledger and the continuous-batching simulator both read
    it."""
    work = serving_working_set_bytes(
        model, tp=tp, tokens=forward_tokens, sequences=sequences, last=last
    )
    overhead = engine_overhead_GB(communicators=communicators)
    block = kv_block_bytes(model, kv_precision, tp=tp, layers=layers)
    pool = kv_pool_bytes(
        capacity_GB=capacity_GB,
        utilization=utilization,
        weights=weights,
        working_set=work,
        overhead_GB=overhead,
    )
    return StagePool(work, overhead, block, pool, kv_pool_blocks(pool, block))
