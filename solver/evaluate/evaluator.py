"""Plan -> report: the executable specification of shardwise, and its entry point :func:`evaluate`.

Reads only the plan (never the planner's ``predicted`` numbers), prices it with
:mod:`solver.costmodel` over the links its devices actually use
(:mod:`~solver.evaluate.training`, :mod:`~solver.evaluate.inference`), and checks every rule
with one ``check_*`` function (:mod:`solver.evaluate.checks`).  Imports no ortools.
"""

from __future__ import annotations

from ..specs import Cluster, InferenceWorkload, Model, Plan, TrainingWorkload, check_spec_arguments
from .calibration import Cal, calibrated_cluster
from .checks import (
    check_batch,
    check_devices,
    check_divisibility,
    check_kind,
    check_layers,
    check_memory,
    check_precision,
    check_serving_memory,
    check_slo,
    check_tp_domain,
)
from .inference import _evaluate_inference
from .links import node_table, parse_node
from .report import Report
from .training import _evaluate_training

__all__ = ["evaluate"]


def _cost_per_hour(cluster: Cluster, plan: Plan) -> float | None:
    total = 0.0
    for grp in plan.replica_groups:
        for st in grp.stages:
            pool = cluster.pool(st.pool)
            if pool.cost_per_gpu_hour is None:
                return None
            total += pool.cost_per_gpu_hour * st.tp * grp.count
    return total


def _devices_parse(cluster: Cluster, plan: Plan) -> bool:
    """Every device names an existing node (needed to price links)."""
    table = node_table(cluster)
    try:
        for grp in plan.replica_groups:
            for st in grp.stages:
                for devs in st.devices:
                    for node, _ in devs:
                        if node not in table:
                            parse_node(cluster, node)
    except ValueError:
        return False
    return True


def _num_gpus(plan: Plan) -> int:
    return sum(grp.count * sum(st.tp for st in grp.stages) for grp in plan.replica_groups)


def evaluate(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    plan: Plan,
    calibration: Cal = None,
) -> Report:
    """Score ``plan`` and check every rule; never raises for a bad plan.

    Parameters
    ----------
    model, cluster, workload, plan
        Validated specs (see :mod:`solver.io` to load them).
    calibration
        Optional :class:`~solver.specs.Calibration` (or several, one per GPU type) overriding
        the matching GPU's efficiency factors and its pool's intra-node link alpha-beta.

    Returns
    -------
    Report
        ``feasible`` is True iff ``violations`` is empty.
    """
    check_spec_arguments(model=model, cluster=cluster, workload=workload, plan=plan)
    if calibration is None and cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)  # the cluster's own calibration reference
    violations: list[str] = []
    violations += check_kind(plan, workload)
    violations += check_layers(model, plan)
    device_violations = check_devices(cluster, plan)
    violations += device_violations
    violations += check_tp_domain(cluster, plan)
    violations += check_divisibility(model, plan)
    violations += check_batch(plan, workload)
    prec = check_precision(cluster, plan, workload)
    violations += prec
    pool_names = {p.name for p in cluster.pools}
    rep = Report(
        kind=workload.kind, feasible=False, violations=violations, num_gpus=_num_gpus(plan)
    )
    priceable = (
        plan.kind == workload.kind
        and not prec
        and all(st.pool in pool_names for grp in plan.replica_groups for st in grp.stages)
        # check_devices parsed every device when it found nothing to report.
        and (not device_violations or _devices_parse(cluster, plan))
    )
    if priceable:
        try:
            if isinstance(workload, TrainingWorkload):
                _evaluate_training(model, cluster, workload, plan, calibration, rep)
            else:
                _evaluate_inference(model, cluster, workload, plan, calibration, rep)
        except (ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as e:
            violations.append(f"plan could not be priced: {e}")
        rep.cost_per_hour = _cost_per_hour(cluster, plan)
        if isinstance(workload, InferenceWorkload):
            violations += check_serving_memory(rep.memory_ledger)
            violations += check_slo(rep.groups, workload)
        else:
            violations += check_memory(rep.memory_ledger)
    rep.violations = violations
    rep.feasible = not violations
    return rep
