"""Plain (rich-free) helpers that turn results into documents: JSON text, plan files, costs.

These are what the CLI writes with ``--json`` and ``--out``; they are one call away from
Python so that scripts, the sweep and the CLI produce identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from ..result import Result
from ..specs import Cluster, Plan, SolverInfo

__all__ = [
    "PREDICTED_KEYS",
    "dumps",
    "objective_unit",
    "plan_cost_per_hour",
    "plan_document",
    "plan_num_gpus",
    "predicted_metrics",
    "to_jsonable",
]

#: Scalar report keys copied into ``Plan.predicted`` when the planner left it empty.
PREDICTED_KEYS = (
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "hfu",
    "bubble_fraction",
    "peak_memory_GB_per_gpu",
    "num_gpus",
    "ttft_ms",
    "tpot_ms",
)

_OBJECTIVE_UNITS = {
    "max_throughput": "tokens/s",
    "min_cost": "$/Mtoken",
    "min_latency": "ms",
    "min_gpus": "GPUs",
}


def objective_unit(objective: str, kind: str | None = None) -> str:
    """The unit :func:`solver.planner.plan` reports ``objective`` in (e.g. ``'tokens/s'``).

    ``min_cost`` is dollars per million tokens for training but dollars per hour for inference,
    where the throughput is a fixed target and the hourly bill is what is minimised.
    """
    if objective == "min_cost" and kind == "inference":
        return "$/h"
    return _OBJECTIVE_UNITS.get(objective, "")


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types.

    numpy scalars and arrays become Python numbers and lists, pydantic models their
    ``model_dump(mode='json')``, enums their value, paths strings.  Non-finite floats
    (``inf``, ``nan``: e.g. the step time of a plan that cannot run) become ``None``, so the
    output is strict JSON that ``jq`` and JavaScript accept.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):  # before BaseModel: ``ReportModel`` is both, and keeps its keys
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="json", exclude_none=True))
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def dumps(doc: Any, *, indent: int | None = 2, width: int = 100) -> str:
    """One strict-JSON document (see :func:`to_jsonable`), without a trailing newline.

    With ``indent`` (default 2) objects put one key per line, and arrays that hold no objects
    stay on one line when they fit in ``width`` columns, so a stage's device list reads
    ``[["h100-0", 0], ["h100-0", 1]]`` instead of ten lines.  ``indent=None`` is compact.
    """
    data = to_jsonable(doc)
    if indent is None:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    return _pretty(data, indent, width, 0)


def _has_object(obj: Any) -> bool:
    if isinstance(obj, dict):
        return True
    return isinstance(obj, list) and any(_has_object(v) for v in obj)


def _pretty(obj: Any, indent: int, width: int, level: int) -> str:
    flat = json.dumps(obj, allow_nan=False)
    if not isinstance(obj, dict | list) or not obj:
        return flat
    pad = " " * (indent * (level + 1))
    if isinstance(obj, list) and len(pad) + len(flat) <= width and not _has_object(obj):
        return flat
    if isinstance(obj, list):
        close = "\n" + " " * (indent * level) + "]"
        flats = [json.dumps(v, allow_nan=False) for v in obj]
        if not _has_object(obj) and all(len(pad) + len(f) < width for f in flats):
            # Fill lines with as many items as fit (a long TP group of [node, gpu] pairs).
            lines: list[list[str]] = [[]]
            used = len(pad)
            for f in flats:
                if lines[-1] and used + len(f) + 2 > width:
                    lines.append([])
                    used = len(pad)
                lines[-1].append(f)
                used += len(f) + 2
            text = ",\n".join(pad + ", ".join(items) for items in lines)
            return "[\n" + text + close
        items = [pad + _pretty(v, indent, width, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + close
    items = [
        f"{pad}{json.dumps(k)}: {_pretty(v, indent, width, level + 1)}" for k, v in obj.items()
    ]
    return "{\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "}"


def predicted_metrics(report: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite scalar metrics of an evaluator report, for ``Plan.predicted``."""
    out: dict[str, float] = {}
    for key in PREDICTED_KEYS:
        value = (report or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                out[key] = float(value)
    return out


def plan_document(result: Result) -> dict[str, Any] | None:
    """The plan file that ``shardwise plan --out`` writes, or None when there is no plan.

    It is ``Plan.model_dump(mode='json', exclude_none=True)`` with ``solver`` set from the
    result (status, objective, bound, gap, time, versions, seed) and ``predicted`` from the
    evaluator's report when the planner did not fill it.  ``load_plan`` reads it back.
    """
    if result.plan is None:
        return None
    update: dict[str, Any] = {
        "solver": SolverInfo.model_validate(to_jsonable(result.solver_info()))
    }
    if not result.plan.predicted:
        update["predicted"] = predicted_metrics(result.report)
    plan = result.plan.model_copy(update=update)
    doc: dict[str, Any] = to_jsonable(plan.model_dump(mode="json", exclude_none=True))
    return doc


def plan_num_gpus(plan: Plan) -> int:
    """GPUs a plan occupies: replicas x sum of the stages' TP degrees, over all groups."""
    return sum(g.count * sum(s.tp for s in g.stages) for g in plan.replica_groups)


def plan_cost_per_hour(plan: Plan, cluster: Cluster) -> float | None:
    """Dollars per hour of the GPUs ``plan`` occupies, or None if a used pool has no price."""
    total = 0.0
    for group in plan.replica_groups:
        for stage in group.stages:
            try:
                price = cluster.pool(stage.pool).cost_per_gpu_hour
            except KeyError:
                return None
            if price is None:
                return None
            total += group.count * stage.tp * price
    return total
