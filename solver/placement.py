"""Concrete device placement: turn per-stage (pool, TP) choices into ``[node, gpu]`` lists.

Convention (Megatron-LM's default rank order ``tp-dp-pp``): inside a pool, TP groups are
contiguous GPUs of one node (so the TP all-reduce runs on NVLink/NVSwitch), the ``d`` replicas of
one stage are laid next to each other (so a stage's DP group packs into as few nodes as
possible and the DP all-reduce is hierarchical), and consecutive stages follow each other
(so PP crosses node boundaries once the stage blocks fill nodes).

TP degrees are powers of two that divide ``gpus_per_node`` (or multiples of it inside one
NVLink domain).  Groups are allocated in decreasing TP size, which is the buddy-allocation
order: aligned power-of-two blocks then never straddle a node boundary and pack perfectly, so
any choice whose GPU count fits the pool also places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .specs import Cluster, Pool

__all__ = ["PlacementError", "StageSlot", "check_placement", "place"]


class PlacementError(ValueError):
    """The requested TP groups do not fit the pool's nodes."""


@dataclass(frozen=True)
class StageSlot:
    """What placement needs to know about one stage of a replica group."""

    pool: str
    tp: int


def _node_name(pool: Pool, index: int) -> str:
    return f"{pool.name}-{index}"


def check_placement(
    cluster: Cluster,
    groups: Sequence[tuple[int, Sequence[StageSlot]]],
) -> None:
    """Raise the :class:`PlacementError` :func:`place` would raise, without building devices."""
    _layout(cluster, groups)


def _layout(
    cluster: Cluster,
    groups: Sequence[tuple[int, Sequence[StageSlot]]],
) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """Per pool, ``(offset, tp, group, stage, replica)`` of every TP group (see :func:`place`)."""
    # Requests per pool: (tp, group index, stage index, replica index); stable sort by -tp keeps
    # stage-major / replica-minor order among equal TP sizes.
    requests: dict[str, list[tuple[int, int, int, int]]] = {}
    for g, (count, stages) in enumerate(groups):
        for s, st in enumerate(stages):
            for r in range(count):
                requests.setdefault(st.pool, []).append((st.tp, g, s, r))
    layout: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for pool_name, reqs in requests.items():
        pool = cluster.pool(pool_name)
        gpn = pool.gpus_per_node
        domain = gpn * pool.nvlink_domain_nodes
        reqs.sort(key=lambda q: -q[0])
        cursor = 0  # global GPU offset in the pool, node-major
        total = pool.num_gpus
        blocks = layout[pool_name] = []
        for tp, g, s, r in reqs:
            if tp > domain:
                raise PlacementError(
                    f"stage {s} on pool {pool_name}: tp={tp} exceeds the NVLink domain of {domain} GPUs"
                )
            # Align to the TP block (buddy order guarantees no gap for powers of two).
            align = tp if tp <= gpn else gpn
            if cursor % align:
                cursor += align - cursor % align
            if (
                tp > gpn
                and (cursor // gpn) // pool.nvlink_domain_nodes
                != ((cursor + tp - 1) // gpn) // pool.nvlink_domain_nodes
            ):
                # Skip to the next domain boundary.
                cursor = ((cursor // domain) + 1) * domain
            if cursor + tp > total:
                raise PlacementError(
                    f"pool {pool_name}: needs more than its {total} GPUs "
                    f"(stage {s}, replica {r}, tp={tp})"
                )
            blocks.append((cursor, tp, g, s, r))
            cursor += tp
    return layout


def place(
    cluster: Cluster,
    groups: Sequence[tuple[int, Sequence[StageSlot]]],
) -> list[list[list[list[tuple[str, int]]]]]:
    """Assign devices to every stage of every replica of every group.

    Parameters
    ----------
    cluster
        The cluster.
    groups
        ``(count, stages)`` per replica group, in plan order.

    Returns
    -------
    list
        ``devices[group][stage][replica]`` = the TP group's list of ``(node, gpu)``.

    Raises
    ------
    PlacementError
        If a pool runs out of GPUs or a TP group cannot sit inside one NVLink domain.
    """
    out: list[list[list[list[tuple[str, int]]]]] = [
        [[[] for _ in range(count)] for _ in stages] for count, stages in groups
    ]
    for pool_name, blocks in _layout(cluster, groups).items():
        pool = cluster.pool(pool_name)
        gpn = pool.gpus_per_node
        # Every device of the pool by global offset, node-major; a TP group is a slice.
        names = [_node_name(pool, i) for i in range(pool.nodes)]
        gpus = [(names[k // gpn], k % gpn) for k in range(pool.num_gpus)]
        for cursor, tp, g, s, r in blocks:
            out[g][s][r] = gpus[cursor : cursor + tp]
    return out
