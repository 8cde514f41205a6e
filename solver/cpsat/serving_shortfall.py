"""Capacity shortfalls: why the serving planner can choose no fleet.

Before the CP-SAT fleet solve, :func:`shortfall` says INFEASIBLE or UNKNOWN, with the
numbers, when no scored replica shape sustains load under the SLOs or the pools' best
capacity per GPU falls short of the target rate (UNKNOWN when the capacity searches were cut
short by the time limit or their tolerance leaves room); after it, :func:`no_fleet` says why
CP-SAT returned no replica mix.
"""

from __future__ import annotations

import math
from typing import Any

from ortools.sat.python import cp_model

from ..result import Status
from ..specs import Pool
from .serving_fleet import Candidate
from .serving_inputs import Inputs

__all__ = ["no_fleet", "shortfall"]


def shortfall(
    inp: Inputs,
    shapes: list[tuple[Pool, int, int, int]],
    cands: list[Candidate],
    usable: list[Candidate],
    scored_all: bool,
    complete: bool,
    pool_gpus: dict[str, int],
) -> tuple[Status, str] | None:
    """INFEASIBLE or UNKNOWN, and why, when no shape sustains load or the pools' best
    capacity per GPU falls short of the target; None when the fleet solve may go ahead."""
    rate = inp.rate
    if not usable:
        if not scored_all:
            return (
                Status.UNKNOWN,
                f"time limit: {len(cands)} of {len(shapes)} replica "
                "shapes scored and none sustains any load under the SLOs; raise the limit",
            )
        return Status.INFEASIBLE, _why_none(cands, shapes, inp.slo, inp.percentile)
    if inp.objective != "max_goodput":
        assert rate is not None
        by_pool = _pool_capacity(usable, pool_gpus)
        if by_pool < rate:
            return _short_of_rate(rate, by_pool, cands, usable, len(shapes), complete, pool_gpus)
    return None


def _short_of_rate(
    rate: float,
    by_pool: float,
    cands: list[Candidate],
    usable: list[Candidate],
    n_shapes: int,
    complete: bool,
    pool_gpus: dict[str, int],
) -> tuple[Status, str]:
    """The pools' best capacity per GPU (``by_pool``) misses the target: UNKNOWN when the
    searches were cut short or their tolerance leaves room, else INFEASIBLE."""
    upper = _pool_capacity(
        [c.model_copy(update={"capacity_rps": _upper(c)}) for c in usable], pool_gpus
    )
    if not complete:
        return (
            Status.UNKNOWN,
            f"time limit: {len(cands)} of {n_shapes} replica shapes scored (or "
            f"searches cut short); those sustain {by_pool:,.2f} req/s under the SLOs "
            f"< target {rate:g}; raise the time limit",
        )
    if upper >= rate:
        return (
            Status.UNKNOWN,
            f"capacity: the pools sustain {by_pool:,.2f} req/s under the SLOs by the "
            f"rates simulated, < target {rate:g}, but up to {upper:,.2f} req/s within "
            "the search tolerance; lower the tolerance",
        )
    best = max(usable, key=lambda c: c.capacity_rps / c.gpus)
    need = math.ceil(rate / best.capacity_rps) * best.gpus
    return (
        Status.INFEASIBLE,
        (
            f"GPU count: at most {by_pool:,.2f} req/s fit this cluster under the SLOs "
            f"(best per GPU: {best.key} at {best.capacity_rps:.3g} req/s per replica) < "
            f"target {rate:g} req/s; about {need} GPUs of pool {best.pool} would be needed"
            f" (each pool's best: {_pool_summary(usable, pool_gpus)})"
        ),
    )


def no_fleet(
    code: int,
    complete: bool,
    rate: float | None,
    usable: list[Candidate],
    pool_gpus: dict[str, int],
) -> tuple[Status, str]:
    """Why CP-SAT returned no replica mix: proven none (INFEASIBLE), else the time limit."""
    if code == cp_model.INFEASIBLE and complete:
        return (
            Status.INFEASIBLE,
            f"GPU count: no whole number of replicas reaches {rate:g} req/s within the "
            f"pools' GPUs (the pools' best capacity per GPU would give "
            f"{_pool_capacity(usable, pool_gpus):,.2f} req/s with no GPU left idle)",
        )
    return Status.UNKNOWN, "time limit: CP-SAT found no replica mix; raise the limit"


def _upper(c: Candidate) -> float:
    """An upper bound of a shape's capacity: the lowest rate that missed the SLOs, or the
    saturated throughput; unbounded when the search stopped short of both."""
    if c.upper_rps is not None:
        return c.upper_rps
    return c.capacity_rps if c.saturated else math.inf


def _pool_capacity(cands: list[Candidate], pool_gpus: dict[str, int]) -> float:
    """Most requests/s the pools hold with each pool's best capacity per GPU (an upper bound
    on any mix: per pool, the capacity is at most G x the best capacity per GPU)."""
    total = 0.0
    for pool, g in pool_gpus.items():
        per = [c.capacity_rps / c.gpus for c in cands if c.pool == pool]
        total += g * max(per, default=0.0)
    return total


def _pool_summary(cands: list[Candidate], pool_gpus: dict[str, int]) -> str:
    parts = []
    for pool in pool_gpus:
        mine = [c for c in cands if c.pool == pool]
        if mine:
            b = max(mine, key=lambda c: c.capacity_rps / c.gpus)
            parts.append(f"{pool} {b.key} {b.capacity_rps:.3g} req/s on {b.gpus} GPUs")
    return "; ".join(parts)


def _why_none(
    cands: list[Candidate],
    shapes: list[Any],
    slo: tuple[float | None, float | None],
    q: float = 99.0,
) -> str:
    """INFEASIBLE's message: no shape, or every shape's reason with its numbers."""
    if not shapes:
        return (
            "no replica shape: no pool has a TP/PP that divides the model, runs its precision "
            "and holds the longest request in its KV cache"
        )
    need = " and ".join(
        f"p{q:g} {name} <= {v:g} ms" for name, v in zip(("TTFT", "TPOT"), slo, strict=True) if v
    )
    reasons = "; ".join(f"{c.key}: {c.reason}" for c in cands[:3])
    more = f"; and {len(cands) - 3} more" if len(cands) > 3 else ""
    return (
        f"SLO: none of the {len(cands)} replica shapes meets {need} at any load ({reasons}{more})"
    )
