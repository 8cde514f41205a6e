"""shardwise: optimal TP/PP/DP plans for large models on GPU clusters (CP-SAT + numpy evaluator).

Public API
----------
``load_model``, ``load_cluster``, ``load_workload``, ``load_plan``
    Read specs by path or by name (``llama3-70b`` -> ``models/llama3-70b.yaml``).
``evaluate(model, cluster, workload, plan) -> Report``
    Score a plan with the independent numpy evaluator.
``plan(model, cluster, workload, *, time_limit_s=..., seed=..., ...) -> Result``
    Solve for the optimal plan with CP-SAT; every plan is re-checked by the evaluator.
    ``Result.status`` is a :class:`Status`; ``Result.report`` a :class:`ReportModel`.
``ShardwiseError`` > ``InvalidInput`` (= ``SpecError``, also a ValueError), ``ModelError``
    The one exception hierarchy (:mod:`solver.errors`): bad input raises :class:`InvalidInput`
    naming the field, never a raw pydantic, YAML, numpy or OR-Tools error.
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput, ModelError, ShardwiseError, SpecError, format_validation_error
from .evaluate.report import Report
from .io import load_cluster, load_model, load_plan, load_workload
from .result import ReportModel, Result, Status
from .specs import (
    Cluster,
    GPUSpec,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)

#: What the facade accepts for each spec: the validated object, a bundled name
#: (``"llama3-70b"``), a path to a YAML/JSON file, or the mapping of its fields.
ModelRef: TypeAlias = Model | str | os.PathLike[str] | dict[str, Any]
ClusterRef: TypeAlias = Cluster | str | os.PathLike[str] | dict[str, Any]
WorkloadRef: TypeAlias = (
    TrainingWorkload | InferenceWorkload | str | os.PathLike[str] | dict[str, Any]
)
PlanRef: TypeAlias = Plan | str | os.PathLike[str] | dict[str, Any]

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "ClusterRef",
    "GPUSpec",
    "InferenceWorkload",
    "InvalidInput",
    "Model",
    "ModelError",
    "ModelRef",
    "Plan",
    "PlanRef",
    "Pool",
    "ReplicaGroup",
    "Report",
    "ReportModel",
    "Result",
    "ShardwiseError",
    "SpecError",
    "Stage",
    "Status",
    "TrainingWorkload",
    "WorkloadRef",
    "evaluate",
    "load_cluster",
    "load_model",
    "load_plan",
    "load_workload",
    "plan",
    "sweep",
]


# The facade functions below share their names with the subpackages ``solver.evaluate`` and
# ``solver.sweep``.  Importing a subpackage for the first time sets the package attribute to the
# module, so both are imported here first and the functions defined after them: later
# ``import solver.evaluate`` statements find the module in sys.modules and leave the function.
from . import evaluate as _evaluate_pkg  # noqa: E402,F401
from . import sweep as _sweep_pkg  # noqa: E402,F401


def _spec(ref: Any, field: str, kinds: tuple[type[BaseModel], ...], load: Any) -> Any:
    """Load one spec argument of the facade, or raise :class:`InvalidInput` naming ``field``.

    A spec object is re-validated (a copy made with ``model_copy(update=...)`` or changed by
    assignment skips pydantic's checks) and passed through; a name, path or mapping goes to
    the loader of :mod:`solver.io`.  Anything else is refused here, not deep in the solver.
    """
    what = " or ".join(k.__name__ for k in kinds)
    if isinstance(ref, BaseModel):
        if not isinstance(ref, kinds):
            raise InvalidInput(
                f"{field}: must be a {what}, a name, a path or a mapping, got a {type(ref).__name__}"
            )
        try:
            type(ref).model_validate(ref.model_dump(warnings=False))
        except ValidationError as e:
            raise InvalidInput(format_validation_error(e, f"<{field}>")) from None
        return ref
    if isinstance(ref, bool) or not isinstance(ref, str | os.PathLike | dict):
        raise InvalidInput(
            f"{field}: must be a {what}, a name, a path or a mapping, got {type(ref).__name__}"
            f" {ref!r:.60}"
        )
    return load(ref)


def _check_flags(**flags: Any) -> None:
    """Refuse a non-bool flag (``deterministic="yes"`` is not True): :class:`InvalidInput`."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidInput(f"{name}: must be true or false, got {value!r}")


def evaluate(model: ModelRef, cluster: ClusterRef, workload: WorkloadRef, plan: PlanRef) -> Report:
    """Score ``plan`` with the numpy evaluator; see :func:`solver.evaluate.evaluate`.

    Parameters
    ----------
    model, cluster, workload, plan
        Specs, or names / paths / mappings of them (:mod:`solver.io` loads them).

    Returns
    -------
    Report
        The evaluator's report (``report.to_dict()`` is ``shardwise evaluate --json``'s).

    Raises
    ------
    InvalidInput
        A spec that does not load or validate; the message names the field and the value.
    """
    from .evaluate import evaluate as _evaluate

    try:
        return _evaluate(
            _spec(model, "model", (Model,), load_model),
            _spec(cluster, "cluster", (Cluster,), load_cluster),
            _spec(workload, "workload", (TrainingWorkload, InferenceWorkload), load_workload),
            _spec(plan, "plan", (Plan,), load_plan),
        )
    except ValidationError as e:  # a spec built by the caller and changed unvalidated
        raise InvalidInput(format_validation_error(e)) from None


def plan(
    model: ModelRef,
    cluster: ClusterRef,
    workload: WorkloadRef,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int | None = None,
    deterministic: bool = False,
    compare_baseline: bool = True,
    engine: str | None = None,
    advice: bool = True,
) -> Result:
    """Solve for an optimal plan; see :func:`solver.planner.plan` for the keywords.

    Parameters
    ----------
    model, cluster, workload
        Specs, or names / paths / mappings of them (:mod:`solver.io` loads them).
    time_limit_s, seed, num_workers, deterministic, compare_baseline, engine, advice
        As :func:`solver.planner.plan` (same names, defaults and ranges:
        :func:`solver.errors.check_solve_options`).

    Returns
    -------
    Result
        ``status`` (:class:`Status`), ``plan``, ``report`` (:class:`ReportModel`), bound, gap...
        Infeasibility and time-outs are statuses, not exceptions; so is bad input found while
        solving (``INVALID_INPUT``; :meth:`Result.raise_for_status` turns it into
        :class:`InvalidInput`).

    Raises
    ------
    InvalidInput
        A spec that does not load or validate, or a bad keyword (time limit, seed, workers,
        a non-bool flag, a non-string engine); the message names the field and the value.
    """
    from .planner import plan as _plan

    _check_flags(deterministic=deterministic, compare_baseline=compare_baseline, advice=advice)
    if engine is not None and not isinstance(engine, str):
        raise InvalidInput(f"engine: must be an engine name or None, got {engine!r}")
    try:
        return _plan(
            _spec(model, "model", (Model,), load_model),
            _spec(cluster, "cluster", (Cluster,), load_cluster),
            _spec(workload, "workload", (TrainingWorkload, InferenceWorkload), load_workload),
            time_limit_s=time_limit_s,
            seed=seed,
            num_workers=num_workers,
            deterministic=deterministic,
            compare_baseline=compare_baseline,
            engine=engine,
            advice=advice,
        )
    except ValidationError as e:  # a spec built by the caller and changed unvalidated
        raise InvalidInput(format_validation_error(e)) from None


def sweep(cases: Any, **kwargs: Any) -> Any:
    """Solve many cases (local processes or Ray), resumably; see :func:`solver.sweep.sweep`."""
    return _sweep_pkg.sweep(cases, **kwargs)
