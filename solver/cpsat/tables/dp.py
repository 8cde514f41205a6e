"""DP tables: the DP degrees a family allows, which stage blocks placement aligns exactly,
and one stage's DP traffic per step over its block's span."""

from __future__ import annotations

from ... import costmodel as cm
from ...specs import Cluster, Pool, TrainingWorkload
from .family import Family

__all__ = ["block_placeable", "dp_degrees", "dp_time", "dp_topology"]


def dp_degrees(workload: TrainingWorkload, micro_batch: int, max_gpus: int) -> list[int]:
    """DP degrees d with ``global_batch % (d * micro_batch) == 0`` and ``d <= max_gpus``."""
    n = workload.global_batch_size // micro_batch
    return [d for d in range(1, min(n, max_gpus) + 1) if n % d == 0]


def block_placeable(pool: Pool, tp: int, d: int) -> bool:
    """Whether ``d`` TP groups of size ``tp`` form a block that placement aligns exactly.

    A stage's ``d * tp`` GPUs are placed as one block (see :mod:`solver.placement`); blocks that
    are whole nodes, or powers of two dividing a node, are placed in decreasing size without
    gaps or straddling, so the DP group's span below is exact.
    """
    size, gpn = d * tp, pool.gpus_per_node
    return size % gpn == 0 or (gpn % size == 0 and size & (size - 1) == 0)


def dp_topology(
    cluster: Cluster, pool: Pool, tp: int, d: int
) -> tuple[int, int, cm.LinkTier, cm.LinkTier]:
    """(members per node k, nodes, intra link, inter link) of a stage's DP group.

    Matches :func:`solver.evaluate.links.dp_links` for the block placement above; across
    nodes the link is the pool's own inter-node link (NIC share or fabric), or the NVLink link
    when the whole pool is one NVLink domain.
    """
    from ...evaluate.links import fabric_link, tp_link

    gpn = pool.gpus_per_node
    intra = tp_link(pool)
    one_domain = pool.nodes <= pool.nvlink_domain_nodes
    inter = intra if one_domain else fabric_link(cluster, pool.name, pool.name)
    if tp >= gpn:
        return 1, d, intra, inter
    size = d * tp
    if size <= gpn:
        return d, 1, intra, intra
    return gpn // tp, size // gpn, intra, inter


def dp_time(
    cluster: Cluster,
    pool: Pool,
    tp: int,
    d: int,
    params: float,
    workload: TrainingWorkload,
    fam: Family,
    m: int,
) -> float:
    """DP traffic of one stage per step: the evaluator's formula on the block's DP span."""
    k, nodes, intra, inter = dp_topology(cluster, pool, tp, d)
    return cm.dp_step_time(
        params,
        memory_policy=workload.memory_policy,
        zero_stage=fam.zero_stage,
        num_micro_batches=m,
        recompute=fam.recompute,
        gpus_per_node_in_group=k,
        nodes=nodes,
        intra=intra,
        inter=inter,
    )
