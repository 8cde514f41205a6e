"""Building plans, shared by every back-end: layer splits, stages with devices, the solved-plan
record and the objective read off an evaluator report.

The CP-SAT back-ends (:mod:`solver.cpsat`), the baselines (:mod:`solver.baselines`) and the
reports build plans with these helpers; :func:`solver.planner.plan` only calls the back-ends.
Keeping them here, below all of those, is what keeps the planner out of an import circle with
the solvers it drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .placement import PlacementError, StageSlot, check_placement, place
from .result import Status
from .specs import Cluster, InferenceWorkload, Plan, Stage, TrainingWorkload

__all__ = ["Solved", "build_stages", "check_stages", "objective_of", "split_layers"]


@dataclass
class Solved:
    """What a back-end returns before verification."""

    status: Status
    plan: Plan | None
    objective: float | None  # user units, as the CP model computed it
    bound: float | None
    message: str = ""
    stats: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    cp_plan: Plan | None = None  # the CP model's own solution, if ``plan`` was post-processed
    #: Training: the CP objective of the same solution with every pipeline hand-off priced at
    #: its cheapest and at its dearest (user units): the evaluator's closed form lies between.
    objective_range: tuple[float, float] | None = None


def objective_of(report: dict[str, Any], workload: TrainingWorkload | InferenceWorkload) -> float:
    """The objective in user units, read off an evaluator report."""
    obj = workload.objective
    if obj == "max_throughput":
        return float(report["tokens_per_s"])
    if obj == "min_cost":
        if isinstance(workload, TrainingWorkload):
            # $ per million tokens.
            return float(report["cost_per_hour"]) / 3600.0 / float(report["tokens_per_s"]) * 1e6
        return float(report["cost_per_hour"])
    if obj == "min_gpus":
        return float(report["num_gpus"])
    if obj == "min_latency":
        return float(report["tpot_ms"])
    raise ValueError(obj)


def split_layers(num_layers: int, pp: int) -> list[int]:
    """Even split; the remainder goes to the earliest stages (the last holds the LM head)."""
    base, rem = divmod(num_layers, pp)
    return [base + (1 if s < rem else 0) for s in range(pp)]


def check_stages(
    cluster: Cluster,
    groups: list[tuple[int, list[tuple[str, int, int]]]],
) -> None:
    """Raise the SpecError :func:`build_stages` would raise for ``groups``, building nothing."""
    slots = [(count, [StageSlot(pool, tp) for pool, tp, _ in stages]) for count, stages in groups]
    try:
        check_placement(cluster, slots)
    except PlacementError as e:
        raise SpecError(str(e)) from None


def build_stages(
    cluster: Cluster,
    groups: list[tuple[int, list[tuple[str, int, int]]]],
) -> list[list[Stage]]:
    """Stages with devices for ``(count, [(pool, tp, layers), ...])`` groups."""
    slots = [(count, [StageSlot(pool, tp) for pool, tp, _ in stages]) for count, stages in groups]
    try:
        devices = place(cluster, slots)
    except PlacementError as e:
        raise SpecError(str(e)) from None
    out: list[list[Stage]] = []
    for g, (_count, stages) in enumerate(groups):
        first = 0
        row: list[Stage] = []
        for s, (pool, tp, layers) in enumerate(stages):
            row.append(
                Stage(
                    first_layer=first,
                    last_layer=first + layers - 1,
                    pool=pool,
                    tp=tp,
                    devices=devices[g][s],  # validated (copied) by the Stage model
                )
            )
            first += layers
        out.append(row)
    return out
