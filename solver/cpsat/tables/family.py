"""The global knobs shared by every stage of a training plan (:class:`Family`), and the
integer units of its tables: the time unit the planner picks (:func:`choose_unit`), seconds
and bytes rounded into units."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ... import costmodel as cm
from ...catalog import gpu_of
from ...costmodel.stack import stack_of
from ...costmodel.tp_overlap import block_tp_overlap, overlapped_block
from ...specs import Cluster, Model, TrainingWorkload
from ..options import tp_options
from ..training.data import KB

__all__ = ["MIN_BLOCK_UNITS", "Family", "choose_unit", "coarser_unit", "min_block_seconds"]


@dataclass(frozen=True)
class Family:
    """The global knobs shared by every stage of a training plan."""

    micro_batch: int
    recompute: str
    sequence_parallel: bool
    zero_stage: int
    schedule: str = "1f1b"
    virtual_stages: int = 1  # v model chunks per stage (interleaved 1F1B), 1 for plain 1F1B

    @property
    def label(self) -> str:
        sp = "+sp" if self.sequence_parallel else ""
        sched = (
            self.schedule if self.virtual_stages == 1 else f"{self.schedule}{self.virtual_stages}"
        )
        return f"mb{self.micro_batch}/{self.recompute}{sp}/zero{self.zero_stage}/{sched}"


def _ticks(seconds: float, unit_s: float) -> int:
    """Seconds -> integer time units (rounded to nearest)."""
    return int(round(seconds / unit_s))


def _kb_up(nbytes: float) -> int:
    return int(math.ceil(nbytes / KB - 1e-9))


def min_block_seconds(
    model: Model, cluster: Cluster, workload: TrainingWorkload, fams: list[Family]
) -> float:
    """The cheapest forward + backward of one block over every family, pool and TP option."""
    from ...evaluate.links import tp_link

    best = float("inf")
    for fam in fams:
        for pool in cluster.pools:
            gpu = gpu_of(pool)
            for tp in tp_options(model, pool):
                kw = dict(
                    tp=tp,
                    micro_batch=fam.micro_batch,
                    seq=workload.sequence_length,
                    sequence_parallel=fam.sequence_parallel and tp > 1,
                    precision=workload.precision,
                    tp_link=tp_link(pool),
                    stack=stack_of(workload),
                )
                try:
                    blk = cm.block_time(model, gpu, recompute=fam.recompute, **kw)  # type: ignore[arg-type]
                    terms = block_tp_overlap(model, gpu, mode=workload.tp_comm_overlap, **kw)  # type: ignore[arg-type]
                except ValueError:
                    continue  # as in _option: e.g. fp8 on a GPU without fp8
                blk = overlapped_block(blk, terms)[0]
                best = min(best, blk.fwd_s + blk.bwd_s)
    return best if best < float("inf") else 1e-3


def choose_unit(min_block_s: float) -> float:
    """Time unit: 1e-4 of the cheapest block time, in [1 ns, 1 us], rounded to a power of 10.

    This is the finest unit worth having; :func:`coarser_unit` coarsens it when the model's
    largest values (its horizon times the micro-batch count) would not fit 64-bit integers.
    """
    import math as _m

    raw = max(1e-9, min(1e-6, min_block_s * 1e-4))
    return float(10 ** _m.floor(_m.log10(raw)))


#: The cheapest block must still span this many time units after :func:`coarser_unit`: each
#: coefficient then rounds by at most 0.5%, well inside plan_verify.OBJECTIVE_TOLERANCE.
MIN_BLOCK_UNITS = 100


def coarser_unit(unit_s: float, magnitude: int, limit: int, min_block_s: float) -> float | None:
    """``unit_s``, or the finest coarser power-of-10 unit that brings ``magnitude`` (the
    model's largest value in units of ``unit_s``, see
    :func:`~solver.cpsat.training.model.magnitude_of`) under ``limit``.

    None when that unit would leave the cheapest block (``min_block_s`` seconds) fewer than
    :data:`MIN_BLOCK_UNITS` units: the instance's times then span too many orders of
    magnitude for the integer model to price them faithfully.
    """
    if magnitude <= limit:
        return unit_s
    factor = 10 ** math.ceil(math.log10(magnitude / limit))
    unit = float(10.0 ** round(math.log10(unit_s * factor)))  # a power of 10, exactly
    if min_block_s / unit < MIN_BLOCK_UNITS:
        return None
    return unit
