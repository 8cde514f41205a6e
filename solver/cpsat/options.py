"""Which discrete options the planner considers, and why others are left out."""

from __future__ import annotations

from ..specs import Model, Pool

__all__ = ["MAX_PIPELINE_STAGES", "pipeline_degrees", "tp_options"]

#: Deepest pipeline considered.  Megatron 2021 ran the 1T model at PP=64 (Narayanan et al.
#: 2021, Table 1); deeper pipelines only add bubble and p2p hops.
MAX_PIPELINE_STAGES = 128


def tp_options(model: Model, pool: Pool) -> list[int]:
    """TP degrees for a pool: powers of two that divide the attention heads and fit the domain.

    Inside a node a TP group must divide ``gpus_per_node`` (so groups never straddle a node);
    across nodes only inside one NVLink domain (``nvlink_domain_nodes`` > 1), as whole nodes.
    Powers of two keep buddy-order placement gap-free (see :mod:`solver.placement`).
    """
    gpn = pool.gpus_per_node
    domain = gpn * pool.nvlink_domain_nodes
    out = []
    t = 1
    while t <= domain:
        fits = (t <= gpn and gpn % t == 0) or (t > gpn and t % gpn == 0 and domain % t == 0)
        # KV heads split over TP, or are replicated when TP exceeds them (the evaluator's
        # divisibility rule: kv % t == 0 or t % kv == 0).
        kv = model.num_kv_heads
        kv_ok = kv % t == 0 or t % kv == 0
        if fits and model.num_attention_heads % t == 0 and kv_ok:
            out.append(t)
        t *= 2
    return out


def pipeline_degrees(num_layers: int, max_stages: int) -> list[int]:
    """Pipeline depths for inference replicas: 1..8, then powers of two up to the limits."""
    limit = min(num_layers, max_stages, MAX_PIPELINE_STAGES)
    out = [p for p in range(1, min(8, limit) + 1)]
    p = 16
    while p <= limit:
        out.append(p)
        p *= 2
    return out
