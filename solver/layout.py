"""Where each rank runs: Megatron's rank order, node blocks, CUDA_VISIBLE_DEVICES, hostfiles.

A launcher numbers processes; the plan names devices.  ``torchrun`` (and ``mpirun -H``) give
every node one contiguous block of global ranks in node order, and each process uses the GPU at
its local rank in ``CUDA_VISIBLE_DEVICES``.  Megatron then reads a rank as coordinates:
``tp`` fastest, then ``dp``, then ``pp`` (``RankGenerator`` order ``"tp-cp-ep-dp-pp"``, with
CP = EP = 1), or ``tp-pp-dp`` with ``--use-tp-pp-dp-mapping``
(``megatron/training/initialize.py``: ``order='tp-cp-ep-dp-pp' if not
args.use_tp_pp_dp_mapping else 'tp-cp-ep-pp-dp'``).

So a plan is launchable exactly as planned when, walking the ranks in Megatron's order and
looking up each rank's device in the plan, every node's devices form one contiguous run.  The
node order then gives ``--node-rank`` and the run gives that node's ``CUDA_VISIBLE_DEVICES``.
Inference engines number the workers of one replica stage-major, TP-minor (vLLM and TRT-LLM:
``rank = pp_rank * tp + tp_rank``; SGLang: ``gpu_id = base_gpu_id + pp_rank_in_node * tp +
tp_rank``), which is the same walk restricted to one replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .specs import Plan, ReplicaGroup

__all__ = [
    "MEGATRON_ORDERS",
    "NodeBlock",
    "RankLayout",
    "RankSlot",
    "layout_violations",
    "megatron_layout",
    "node_blocks",
    "replica_devices",
]

Device = tuple[str, int]

#: Megatron rank orders this exporter can use, with the flag that selects each (None: default).
MEGATRON_ORDERS: dict[str, str | None] = {
    "tp-dp-pp": None,
    "tp-pp-dp": "--use-tp-pp-dp-mapping",
}


@dataclass(frozen=True)
class RankSlot:
    """One global rank: where it runs and what it is."""

    rank: int
    node: str
    gpu: int
    node_rank: int
    local_rank: int
    pp: int
    dp: int
    tp: int


@dataclass(frozen=True)
class NodeBlock:
    """One node's contiguous block of ranks."""

    node: str
    node_rank: int
    first_rank: int
    gpus: tuple[int, ...]
    """Physical GPU of each local rank, i.e. the node's ``CUDA_VISIBLE_DEVICES``."""

    @property
    def last_rank(self) -> int:
        return self.first_rank + len(self.gpus) - 1

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)


@dataclass(frozen=True)
class RankLayout:
    """A training group's ranks in Megatron order, split into node blocks."""

    order: str
    tp: int
    pp: int
    dp: int
    ranks: tuple[RankSlot, ...]
    nodes: tuple[NodeBlock, ...]

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def megatron_flag(self) -> str | None:
        """The Megatron flag that selects :attr:`order` (None for the default)."""
        return MEGATRON_ORDERS[self.order]

    def rank_map(self) -> dict[str, Any]:
        """The rank map document: global rank -> node, GPU and (pp, dp, tp) coordinates."""
        return {
            "world_size": self.world_size,
            "rank_order": self.order,
            "megatron_flag": self.megatron_flag,
            "tp": self.tp,
            "pp": self.pp,
            "dp": self.dp,
            "nodes": [
                {
                    "node_rank": b.node_rank,
                    "node": b.node,
                    "nproc_per_node": len(b.gpus),
                    "ranks": [b.first_rank, b.last_rank],
                    "cuda_visible_devices": b.cuda_visible_devices,
                }
                for b in self.nodes
            ],
            "ranks": [
                {
                    "rank": r.rank,
                    "node": r.node,
                    "gpu": r.gpu,
                    "node_rank": r.node_rank,
                    "local_rank": r.local_rank,
                    "pp": r.pp,
                    "dp": r.dp,
                    "tp": r.tp,
                }
                for r in self.ranks
            ],
        }

    def hostfile(self) -> str:
        """One ``host slots=N`` line per node, in node-rank order (DeepSpeed/MPI format)."""
        return "".join(f"{b.node} slots={len(b.gpus)}\n" for b in self.nodes)


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def node_blocks(devices: Sequence[Device]) -> list[tuple[str, list[int]]] | str:
    """Split devices listed in rank order into per-node runs.

    Returns the ``(node, [gpu, ...])`` runs in order, or a one-line reason when a node's
    devices are not one contiguous run of ranks (a launcher cannot give it two blocks).
    """
    runs: list[tuple[str, list[int], int]] = []  # node, gpus, first rank
    for rank, (node, gpu) in enumerate(devices):
        if runs and runs[-1][0] == node:
            runs[-1][1].append(gpu)
        else:
            runs.append((node, [gpu], rank))
    seen: dict[str, tuple[int, int]] = {}
    for node, gpus, first in runs:
        if node in seen:
            a, b = seen[node]
            return (
                f"node {node} would host ranks {_span(a, b)} and {_span(first, first + len(gpus) - 1)}, "
                "not one contiguous block"
            )
        seen[node] = (first, first + len(gpus) - 1)
    return [(node, gpus) for node, gpus, _ in runs]


def _megatron_coords(group: ReplicaGroup, order: str) -> list[tuple[int, int, int]]:
    """(pp, dp, tp) of each global rank in ``order`` (uniform TP assumed)."""
    t, p, d = group.stages[0].tp, group.pp, group.count
    out: list[tuple[int, int, int]] = []
    for r in range(t * p * d):
        tp = r % t
        if order == "tp-dp-pp":
            dp, pp = (r // t) % d, r // (t * d)
        else:  # tp-pp-dp
            pp, dp = (r // t) % p, r // (t * p)
        out.append((pp, dp, tp))
    return out


def megatron_layout(group: ReplicaGroup) -> RankLayout | str:
    """The rank layout of a training group under the first Megatron order that fits.

    Returns a :class:`RankLayout`, or a one-line reason why no supported order gives every node
    one contiguous block of ranks.  The group must use one TP degree on every stage.
    """
    reasons: list[str] = []
    for order in MEGATRON_ORDERS:
        coords = _megatron_coords(group, order)
        devices = [
            (str(n), int(g)) for n, g in (group.stages[pp].devices[dp][tp] for pp, dp, tp in coords)
        ]
        blocks = node_blocks(devices)
        if isinstance(blocks, str):
            reasons.append(f"{order}: {blocks}")
            continue
        slots: list[RankSlot] = []
        nodes: list[NodeBlock] = []
        rank = 0
        for node_rank, (node, gpus) in enumerate(blocks):
            nodes.append(NodeBlock(node, node_rank, rank, tuple(gpus)))
            for local, gpu in enumerate(gpus):
                pp, dp, tp = coords[rank]
                slots.append(RankSlot(rank, node, gpu, node_rank, local, pp, dp, tp))
                rank += 1
        return RankLayout(
            order=order,
            tp=group.stages[0].tp,
            pp=group.pp,
            dp=group.count,
            ranks=tuple(slots),
            nodes=tuple(nodes),
        )
    return "; ".join(reasons)


def replica_devices(group: ReplicaGroup, replica: int) -> list[Device]:
    """One replica's devices in worker order: stage-major, TP rank minor."""
    return [(str(n), int(g)) for stage in group.stages for n, g in stage.devices[replica]]


def replica_nodes(group: ReplicaGroup, replica: int) -> list[str]:
    """The distinct nodes of one replica, in worker order."""
    out: list[str] = []
    for node, _ in replica_devices(group, replica):
        if node not in out:
            out.append(node)
    return out


def layout_violations(plan: Plan, engine: str) -> list[str]:
    """Rank-placement rules that need the plan's devices (see the module docstring)."""
    out: list[str] = []
    many = len(plan.replica_groups) > 1
    for g, group in enumerate(plan.replica_groups):
        where = f"group {g}: " if many else ""
        if engine == "torchrun":
            layout = megatron_layout(group)
            if isinstance(layout, str):
                out.append(
                    f"{where}torchrun gives each node one contiguous block of ranks, and no "
                    f"Megatron rank order puts the plan's devices that way ({layout})"
                )
        elif engine in ("sglang", "trtllm"):
            for r in range(group.count):
                devices = replica_devices(group, r)
                if len({n for n, _ in devices}) == 1:
                    continue
                blocks = node_blocks(devices)
                if isinstance(blocks, str):
                    out.append(f"{where}replica {r}: {blocks}")
                elif engine == "sglang" and len({len(b) for _, b in blocks}) > 1:
                    out.append(
                        f"{where}replica {r}: SGLang --nnodes gives every node the same number "
                        f"of ranks, got {'/'.join(str(len(b)) for _, b in blocks)}"
                    )
                elif engine == "trtllm" and len({tuple(b) for _, b in blocks}) > 1:
                    out.append(
                        f"{where}replica {r}: mpirun passes one CUDA_VISIBLE_DEVICES to every "
                        "host, but the replica's hosts use different GPU orders"
                    )
    return out
