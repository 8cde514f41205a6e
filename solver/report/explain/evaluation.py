"""Calling the evaluator and reading its report: the workload's objective, memory use and
ledger rows, the worst overshoot of a limit (memory, TTFT/TPOT SLOs) and the throughput
target."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...construction import objective_of
from ...evaluate import evaluate
from ...specs import Cluster, InferenceWorkload, Model, Plan, TrainingWorkload

AnyWorkload = TrainingWorkload | InferenceWorkload


def _evaluate(model: Model, cluster: Cluster, workload: AnyWorkload, plan: Plan) -> Any:

    return evaluate(model, cluster, workload, plan)


def _objective(report: Mapping[str, Any], workload: AnyWorkload) -> float | None:
    """The workload's objective read off a report (None when the report cannot give it)."""

    try:
        value = objective_of(dict(report), workload)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def _maximise(workload: AnyWorkload) -> bool:
    return workload.objective == "max_throughput"


def _worse_ratio(chosen: float | None, alt: float | None, workload: AnyWorkload) -> float | None:
    """How many times worse ``alt`` is than ``chosen`` (> 1 worse, < 1 better)."""
    if chosen is None or alt is None or chosen <= 0 or alt <= 0:
        return None
    return chosen / alt if _maximise(workload) else alt / chosen


def _memory_use(report: Mapping[str, Any]) -> float:
    """Worst stage's total / capacity (inf when the report has no ledger)."""
    rows = report.get("memory_ledger") or []
    if not rows:
        return math.inf
    return max(float(r["total_GB"]) / float(r["capacity_GB"]) for r in rows)


def _overshoot(report: Mapping[str, Any], workload: AnyWorkload) -> float:
    """Worst ratio of a limit's use to the limit: memory, and TTFT/TPOT against their SLOs."""
    worst = _memory_use(report)
    if isinstance(workload, InferenceWorkload):
        for key, slo in (("ttft_ms", workload.ttft_ms), ("tpot_ms", workload.tpot_ms)):
            value = report.get(key)
            if slo is not None and isinstance(value, int | float):
                worst = max(worst, float(value) / slo)
    return worst


def _meets_target(report: Mapping[str, Any], workload: AnyWorkload) -> bool:
    if isinstance(workload, InferenceWorkload) and workload.target_throughput_tokens_per_s:
        tps = report.get("tokens_per_s")
        return isinstance(tps, int | float) and tps >= workload.target_throughput_tokens_per_s * (
            1 - 1e-9
        )
    return True


def _ledger(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in report.get("memory_ledger") or []:
        row = dict(r)
        row["use"] = float(r["total_GB"]) / float(r["capacity_GB"])
        rows.append(row)
    return rows
