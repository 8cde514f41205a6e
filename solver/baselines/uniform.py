"""Megatron-style uniform grid search: every (t, p, d, b, ...) on one pool, even layer splits.

This is what a practitioner does with Megatron-LM's launch flags: pick one GPU type, a tensor
degree ``t``, a pipeline degree ``p`` (layers split as evenly as :func:`split_layers` does, the
remainder on the earliest stages), a data-parallel degree ``d`` and the micro-batch / batch
knobs, run each point, keep the fastest.  Here "run" is the evaluator.  Every stage uses the
same pool and TP, so the grid cannot express the planner's uneven splits, mixed TP or
heterogeneous pipelines; the difference between the two is the value the CP model adds.

Training grid: pool x t (:func:`tp_options`) x p (1..min(L, G/t)) x d (divisors of
``global_batch / b`` with ``t * p * d <= G``) x micro-batch b x recompute x sequence
parallelism (only with t > 1) x ZeRO stage; schedule 1F1B.
Inference grid: pool x t x p x batch size x replicas d (1..G/(t p)).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ..construction import build_stages, split_layers
from ..cpsat.options import tp_options
from ..specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
    TrainingWorkload,
)
from ._scoring import AnyWorkload, divisors_up_to, evaluate_plan, is_better, score

__all__ = ["uniform_best", "uniform_grid"]

#: Report keys copied into each table row (when the evaluator provides them).
_REPORT_KEYS = (
    "step_time_s",
    "tokens_per_s",
    "peak_memory_GB_per_gpu",
    "num_gpus",
    "cost_per_hour",
    "ttft_ms",
    "tpot_ms",
)


def uniform_grid(
    model: Model, cluster: Cluster, workload: AnyWorkload, *, largest_dp_only: bool = False
) -> Iterator[tuple[dict[str, Any], Plan]]:
    """Every grid point as ``(row, plan)``; ``row`` names the point's knobs.

    With ``largest_dp_only`` each (pool, t, p, knobs) gets only its largest DP degree, the
    usual Megatron sweep that fills the machine (``t * p * d = G`` where divisibility allows).
    """
    for pool in cluster.pools:
        if isinstance(workload, TrainingWorkload):
            yield from _training_points(model, cluster, workload, pool, largest_dp_only)
        else:
            yield from _inference_points(model, cluster, workload, pool, largest_dp_only)


def uniform_best(
    model: Model, cluster: Cluster, workload: AnyWorkload, *, largest_dp_only: bool = False
) -> tuple[Plan | None, list[dict[str, Any]]]:
    """The best feasible uniform plan and the table of every evaluated grid point.

    Parameters
    ----------
    model, cluster, workload
        Validated specs.
    largest_dp_only
        Evaluate only the largest DP degree (replica count) of each (pool, t, p, knobs) point
        (default False: every d).  Small DP degrees mean many micro-batches per replica, the
        slowest plans to simulate on large models and rarely the best for throughput.

    Returns
    -------
    (Plan or None, list of dict)
        The best feasible plan by the workload objective (:func:`solver.construction.objective_of`;
        ties keep the first point in grid order), or None when no point is feasible; and one row
        per point with its knobs, ``feasible``, ``objective`` (None if infeasible),
        ``violations`` and the evaluator's headline metrics.
    """
    best: Plan | None = None
    best_obj: float | None = None
    table: list[dict[str, Any]] = []
    for row, plan in uniform_grid(model, cluster, workload, largest_dp_only=largest_dp_only):
        report = evaluate_plan(model, cluster, workload, plan)
        obj = score(report, workload)
        row = dict(row)
        row["feasible"] = obj is not None
        row["objective"] = obj
        row["violations"] = list(report.get("violations", []))
        for key in _REPORT_KEYS:
            if key in report:
                row[key] = report[key]
        table.append(row)
        if obj is not None and is_better(obj, best_obj, workload):
            best, best_obj = plan, obj
    return best, table


def _training_points(
    model: Model, cluster: Cluster, workload: TrainingWorkload, pool: Pool, largest_dp: bool
) -> Iterator[tuple[dict[str, Any], Plan]]:
    B = workload.global_batch_size
    G = pool.num_gpus
    micro = [mb for mb in sorted(workload.micro_batch_sizes) if B % mb == 0]
    allowed_sp = sorted(set(workload.sequence_parallel), reverse=True)
    for t in tp_options(model, pool):
        # Sequence parallelism only means something with TP > 1: at tp = 1 one setting is
        # enough (False when the workload allows both).
        sps = allowed_sp if t > 1 else allowed_sp[-1:]
        for p, mb in itertools.product(range(1, min(model.num_layers, G // t) + 1), micro):
            layers = split_layers(model.num_layers, p)
            dps = list(divisors_up_to(B // mb, G // (t * p)))
            for d in dps[-1:] if largest_dp else dps:
                stages = build_stages(cluster, [(d, [(pool.name, t, n) for n in layers])])[0]
                for rc, sp, z in itertools.product(workload.recompute, sps, workload.zero_stages):
                    row: dict[str, Any] = dict(
                        pool=pool.name, tp=t, pp=p, dp=d, micro_batch=mb,
                        recompute=rc, sequence_parallel=sp, zero_stage=z,
                    )  # fmt: skip
                    group = ReplicaGroup(
                        count=d,
                        micro_batch_size=mb,
                        num_micro_batches=B // (d * mb),
                        schedule="1f1b",
                        recompute=rc,
                        zero_stage=z,
                        sequence_parallel=sp,
                        stages=stages,
                    )
                    yield row, Plan(kind="training", replica_groups=[group])


def _inference_points(
    model: Model, cluster: Cluster, workload: InferenceWorkload, pool: Pool, largest_dp: bool
) -> Iterator[tuple[dict[str, Any], Plan]]:
    G = pool.num_gpus
    for t in tp_options(model, pool):
        for p in range(1, min(model.num_layers, G // t) + 1):
            layers = split_layers(model.num_layers, p)
            top = G // (t * p)
            for d in range(top if largest_dp else 1, top + 1):
                stages = build_stages(cluster, [(d, [(pool.name, t, n) for n in layers])])[0]
                for b in sorted(workload.batch_sizes):
                    row: dict[str, Any] = dict(pool=pool.name, tp=t, pp=p, dp=d, batch_size=b)
                    group = ReplicaGroup(count=d, batch_size=b, stages=stages)
                    yield row, Plan(kind="inference", replica_groups=[group])
