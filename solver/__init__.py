"""shardwise: optimal TP/PP/DP plans for large models on GPU clusters (CP-SAT + numpy evaluator).

Public API
----------
``load_model``, ``load_cluster``, ``load_workload``, ``load_plan``
    Read specs by path or by name (``llama3-70b`` -> ``models/llama3-70b.yaml``).
``evaluate(model, cluster, workload, plan) -> Report``
    Score a plan with the independent numpy evaluator.
``plan(model, cluster, workload, time_limit_s=..., seed=...) -> Result``
    Solve for the optimal plan with CP-SAT; every plan is re-checked by the evaluator.
"""

from __future__ import annotations

from typing import Any

from .errors import SpecError
from .io import load_cluster, load_model, load_plan, load_workload
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

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "GPUSpec",
    "InferenceWorkload",
    "Model",
    "Plan",
    "Pool",
    "ReplicaGroup",
    "SpecError",
    "Stage",
    "TrainingWorkload",
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


def evaluate(model: Any, cluster: Any, workload: Any, plan: Any) -> Any:
    """Score ``plan`` with the numpy evaluator; see :func:`solver.evaluate.evaluate`."""
    from .evaluate import evaluate as _evaluate

    return _evaluate(
        load_model(model), load_cluster(cluster), load_workload(workload), load_plan(plan)
    )


def plan(model: Any, cluster: Any, workload: Any, **kwargs: Any) -> Any:
    """Solve for an optimal plan; see :func:`solver.planner.plan`."""
    from .planner import plan as _plan

    return _plan(load_model(model), load_cluster(cluster), load_workload(workload), **kwargs)


def sweep(cases: Any, **kwargs: Any) -> Any:
    """Solve many cases (local processes or Ray), resumably; see :func:`solver.sweep.sweep`."""
    return _sweep_pkg.sweep(cases, **kwargs)
