"""Reports: rich renderables (:mod:`.render`) and plain documents (:mod:`.documents`).

``render`` builds tables from the evaluator's report dict, plans and solver results, and
prints nothing; ``documents`` turns results into JSON text and plan files without rich.
"""

from __future__ import annotations

from .documents import (
    dumps,
    objective_unit,
    plan_cost_per_hour,
    plan_document,
    plan_num_gpus,
    predicted_metrics,
    to_jsonable,
)
from .render import (
    baseline_table,
    memory_ledger_table,
    plan_table,
    render_evaluation,
    render_result,
    report_summary_table,
    solver_table,
    time_breakdown_table,
)

__all__ = [
    "baseline_table",
    "dumps",
    "memory_ledger_table",
    "objective_unit",
    "plan_cost_per_hour",
    "plan_document",
    "plan_num_gpus",
    "plan_table",
    "predicted_metrics",
    "render_evaluation",
    "render_result",
    "report_summary_table",
    "solver_table",
    "time_breakdown_table",
    "to_jsonable",
]
