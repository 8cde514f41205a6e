"""Scoring shared by the baselines: one evaluator call per plan, one notion of "better".

The baselines never trust a cost formula of their own: every plan is scored by
:func:`solver.evaluate.evaluate` and read through :func:`solver.construction.objective_of`, the same
function the planner's verification uses, so "best" means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..construction import objective_of
from ..specs import Cluster, InferenceWorkload, Model, Plan, TrainingWorkload

__all__ = [
    "AnyWorkload",
    "divisors_up_to",
    "evaluate_plan",
    "is_better",
    "maximises",
    "memory_ok",
    "score",
]

AnyWorkload = TrainingWorkload | InferenceWorkload

#: Relative slack when comparing a plan's throughput with ``target_throughput_tokens_per_s``
#: (the planner scales tokens/s to integer milli-tokens, so exact equality is not meaningful).
TARGET_RTOL = 1e-9


def evaluate_plan(
    model: Model, cluster: Cluster, workload: AnyWorkload, plan: Plan
) -> dict[str, Any]:
    """The evaluator's report of ``plan`` as a dict (``Report.to_dict()``)."""
    # Imported here so that importing the baselines never pulls the evaluator in eagerly.
    from ..evaluate import evaluate

    report: dict[str, Any] = evaluate(model, cluster, workload, plan).to_dict()
    return report


def maximises(workload: AnyWorkload) -> bool:
    """True when larger objective values are better (``max_throughput``)."""
    return workload.objective == "max_throughput"


def score(report: dict[str, Any], workload: AnyWorkload) -> float | None:
    """The objective of a feasible plan, or None if the plan is infeasible.

    Feasible means the evaluator reports no violation and, for inference workloads with a
    ``target_throughput_tokens_per_s``, the plan serves at least that many tokens/s.
    """
    if not report.get("feasible", False):
        return None
    if isinstance(workload, InferenceWorkload):
        target = workload.target_throughput_tokens_per_s
        if target is not None and float(report["tokens_per_s"]) < target * (1.0 - TARGET_RTOL):
            return None
    return objective_of(report, workload)


def is_better(candidate: float, incumbent: float | None, workload: AnyWorkload) -> bool:
    """Strictly better objective (ties keep the incumbent, so enumeration order breaks them)."""
    if incumbent is None:
        return True
    return candidate > incumbent if maximises(workload) else candidate < incumbent


def memory_ok(report: dict[str, Any]) -> bool:
    """Whether every GPU of the plan holds its memory (the rubric's "fits").

    Read off the evaluator's memory ledger (one row per group per stage, with ``total_GB``
    and the GPU's ``capacity_GB``); a report without a ledger (a plan too malformed to price)
    does not fit.
    """
    ledger = report.get("memory_ledger") or []
    return bool(ledger) and all(
        float(e["total_GB"]) <= float(e["capacity_GB"]) + 1e-9 for e in ledger
    )


def divisors_up_to(n: int, limit: int) -> Iterator[int]:
    """Divisors of ``n`` that are <= ``limit``, ascending."""
    for d in range(1, min(n, limit) + 1):
        if n % d == 0:
            yield d
