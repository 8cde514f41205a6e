"""Per-step terms outside the pipeline: DP gradient/parameter traffic and the optimizer step."""

from __future__ import annotations

from ..specs import GPUSpec
from .comm import (
    LinkTier,
    hierarchical_allgather_time,
    hierarchical_allreduce_time,
    hierarchical_reduce_scatter_time,
)
from .memory import BYTES_PER_PARAM, COMM_BYTES_PER_PARAM

__all__ = ["dp_hideable_time", "dp_step_time", "optimizer_step_time"]


def dp_step_time(
    params_per_gpu: float,
    *,
    memory_policy: str,
    zero_stage: int,
    num_micro_batches: int,
    recompute: str,
    gpus_per_node_in_group: int,
    nodes: int,
    intra: LinkTier,
    inter: LinkTier,
) -> float:
    """DP traffic of one GPU per optimizer step, ZeRO-aware, hierarchical over its nodes.

    ZeRO-0: all-reduce of the gradients.  ZeRO-1 (Megatron distributed optimizer):
    reduce-scatter of gradients + all-gather of updated weights, the same 2*Psi ring volume.
    ZeRO-2: gradients reduce-scattered every micro-batch (no full-size accumulation buffer)
    + one weight all-gather.  ZeRO-3: every micro-batch all-gathers the weights for forward
    and backward (and again for a full-recompute forward) and reduce-scatters gradients:
    3*Psi per micro-batch (Rajbhandari et al. 2019, Sec. 7.2-7.3).  Gradient element size
    per ``memory_policy`` on the wire (``COMM_BYTES_PER_PARAM``: fp32 main grads for
    megatron_bf16, fp32 reduce-scatters for fsdp2_mixed: 4 B).  fsdp2_mixed below ZeRO-3 is
    FSDP2 without resharding (torchtitan under PP): one all-gather and one reduce-scatter per
    step, priced as ZeRO-1.
    """
    w_el, g_el = COMM_BYTES_PER_PARAM[memory_policy]
    gbytes, wbytes = params_per_gpu * g_el, params_per_gpu * w_el
    k, n = gpus_per_node_in_group, nodes
    if k * n <= 1:
        return 0.0
    if zero_stage == 0:
        return hierarchical_allreduce_time(gbytes, k, n, intra, inter)
    rs = hierarchical_reduce_scatter_time(gbytes, k, n, intra, inter)
    ag = hierarchical_allgather_time(wbytes, k, n, intra, inter)
    if zero_stage == 1:
        return rs + ag
    if zero_stage == 2:
        return num_micro_batches * rs + ag
    n_ag = 3 if recompute == "full" else 2
    return num_micro_batches * (rs + n_ag * ag)


def dp_hideable_time(
    *,
    zero_stage: int,
    overlap: bool,
    last_backward_s: float,
    backward_s_per_micro_batch: float,
    forward_s_per_micro_batch: float,
    num_micro_batches: int,
) -> float:
    """Compute time of one stage that its DP traffic can hide behind (the overlap model).

    ZeRO-0/1: Megatron-LM's bucketed gradient reduction (``overlap_grad_reduce``) starts as
    buckets fill during the backward of the last micro-batch, so it hides behind that
    backward.  ZeRO-2: gradients are reduced every micro-batch, behind every backward.
    ZeRO-3: parameters are prefetched and gradients reduced every micro-batch, behind every
    forward and backward.  Without overlap nothing hides.
    """
    if not overlap:
        return 0.0
    if zero_stage <= 1:
        return last_backward_s
    if zero_stage == 2:
        return num_micro_batches * backward_s_per_micro_batch
    return num_micro_batches * (forward_s_per_micro_batch + backward_s_per_micro_batch)


def optimizer_step_time(
    params_per_gpu: float, gpu: GPUSpec, *, memory_policy: str, zero_stage: int, dp: int
) -> float:
    """Adam step, HBM-bound: read + write the optimizer states (2 x o), read the gradient (g)
    and write the weight (w) of every parameter this GPU owns (its 1/dp shard with ZeRO >= 1).
    megatron_bf16: 2 x 12 + 4 + 2 = 30 B/param (apex/Megatron fused multi-tensor Adam: one
    pass over all states).  A calibration's ``optimizer_efficiency`` (measured optimizer rate /
    HBM streaming rate; 1 when unset) divides the rate."""
    w_el, g_el, o_el = BYTES_PER_PARAM[memory_policy]
    owned = params_per_gpu / (max(1, dp) if zero_stage >= 1 else 1)
    eff = gpu.memory_efficiency * (gpu.optimizer_efficiency or 1.0)
    return owned * (2.0 * o_el + g_el + w_el) / (gpu.memory_bandwidth_GBps * 1e9 * eff)
