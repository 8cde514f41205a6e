"""The engine-relevant shape of a replica group, and Megatron's interleaved layer layout.

:class:`GroupShape` is what the checks (:mod:`solver.engines.checks`) read of a plan's replica
group or of one candidate option; the Megatron helpers write and read the chunk order of the
interleaved schedule (``--pipeline-model-parallel-layout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..specs import ReplicaGroup

__all__ = ["GroupShape", "group_shape", "megatron_chunks", "megatron_layout_string"]


@dataclass(frozen=True)
class GroupShape:
    """The engine-relevant facts of one replica group (or of one candidate option)."""

    tp: tuple[int, ...]
    """TP degree per stage."""
    pools: tuple[str, ...]
    """Pool per stage."""
    layers: tuple[int, ...]
    """Transformer blocks per stage (all chunks together)."""
    chunks: tuple[tuple[tuple[int, int], ...], ...] | None = None
    """Per stage, its ``[first, last]`` chunks (interleaved), or None: Megatron's layout."""
    virtual_stages: int = 1
    schedule: str = "1f1b"
    zero_stage: int = 0
    recompute: str = "none"
    sequence_parallel: bool = False
    num_micro_batches: int | None = None

    @property
    def pp(self) -> int:
        return len(self.tp)


def group_shape(group: ReplicaGroup) -> GroupShape:
    """The :class:`GroupShape` of a plan's replica group."""
    chunks = None
    if group.virtual_stages > 1 or any(s.chunks is not None for s in group.stages):
        chunks = tuple(tuple(s.layer_ranges) for s in group.stages)
    return GroupShape(
        tp=tuple(s.tp for s in group.stages),
        pools=tuple(s.pool for s in group.stages),
        layers=tuple(s.num_layers for s in group.stages),
        chunks=chunks,
        virtual_stages=group.virtual_stages,
        schedule=group.schedule,
        zero_stage=group.zero_stage,
        recompute=group.recompute,
        sequence_parallel=group.sequence_parallel,
        num_micro_batches=group.num_micro_batches,
    )


def megatron_chunks(num_layers: int, pp: int, v: int) -> list[list[tuple[int, int]]]:
    """Megatron's interleaved layout: stage ``s`` chunk ``j`` holds virtual stage ``j*pp + s``.

    Each of the ``pp * v`` virtual stages holds ``num_layers / (pp * v)`` consecutive blocks
    (``get_transformer_layer_offset``: offset = vp_rank * L/v + pp_rank * L/(pp v)).
    """
    size = num_layers // (pp * v)
    return [
        [((j * pp + s) * size, (j * pp + s) * size + size - 1) for j in range(v)] for s in range(pp)
    ]


def megatron_layout_string(chunk_layers: Sequence[Sequence[int]]) -> str:
    """``--pipeline-model-parallel-layout`` for per-stage, per-chunk layer counts.

    ``chunk_layers[s][j]`` is the number of transformer layers of stage ``s``'s chunk ``j``.
    Megatron reads the ``|``-separated virtual stages in the order ``j * pp + s``
    (``PipelineParallelLayerLayout.__init__``: ``layout[vpp_rank * pp + pp_rank]``), wants the
    embedding ``E`` first and the loss ``L`` last (``validate_layer_layout``), and unrolls
    ``t*n`` (``parse_str_to_list``).  E.g. ``[[12], [24], [12]]`` -> ``Et*12|t*24|t*12L``.
    """
    pp = len(chunk_layers)
    v = len(chunk_layers[0])
    parts: list[str] = []
    for j in range(v):
        for s in range(pp):
            n = chunk_layers[s][j]
            parts.append("" if n == 0 else "t" if n == 1 else f"t*{n}")
    parts[0] = "E" + parts[0]
    parts[-1] = parts[-1] + "L"
    return "|".join(parts)
