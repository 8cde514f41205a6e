"""Inference back-end: enumerate replica shapes, score each with the evaluator, pick counts.

The evaluator prices each shape with the workload's serving-engine profile
(``InferenceWorkload.serving_engine``; ``auto`` = vLLM, also when ``plan(engine=...)`` names
SGLang or TensorRT-LLM: the verification re-evaluates the same workload, so planner and
evaluator agree by construction; set ``serving_engine`` to price for another engine)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from ortools.sat.python import cp_model

from ..catalog import gpu_of
from ..construction import Solved, build_stages, split_layers
from ..engines import EngineRules, GroupShape, shape_violations
from ..result import Status
from ..specs import Cluster, InferenceWorkload, Model, Plan, Pool, ReplicaGroup
from .deadline import Deadline
from .inference import InferenceConfig, InferenceModel
from .options import pipeline_degrees, tp_options

__all__ = ["enumerate_configs", "solve_inference"]

#: Least time given to the replica-count knapsack (seconds).
MIN_KNAPSACK_S = 0.5

log = logging.getLogger(__name__)


def _single_replica_plan(
    cluster: Cluster, model: Model, pool: str, tp: int, pp: int, batch: int
) -> Plan:
    layers = split_layers(model.num_layers, pp)
    stages = build_stages(cluster, [(1, [(pool, tp, n) for n in layers])])[0]
    return Plan(
        kind="inference",
        replica_groups=[ReplicaGroup(count=1, batch_size=batch, stages=stages)],
    )


def enumerate_configs(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    engine: EngineRules | None = None,
    deadline: Deadline | None = None,
) -> tuple[list[InferenceConfig], dict[str, Any]]:
    """All replica shapes that fit memory and meet the SLOs, scored by the evaluator.

    Also returns diagnostics for the infeasibility explanation: the best TTFT/TPOT seen among
    memory-feasible shapes and the smallest peak memory per GPU seen.  With a ``deadline``
    the scoring stops when it expires; ``diag["complete"]`` then is False (the shapes are a
    subset, so nothing built on them is a proof).
    """
    from ..evaluate import evaluate
    from ..evaluate.checks import check_serving_memory

    configs: list[InferenceConfig] = []
    diag: dict[str, Any] = {
        "evaluated": 0,
        "min_memory": None,
        "best_ttft_ms": None,
        "best_tpot_ms": None,
        "memory_fit": 0,
        "complete": True,
    }
    for pool, tp, pp, batch in _shapes(model, cluster, workload, engine):
        if deadline is not None and deadline.expired():
            diag["complete"] = False
            break
        gpu = gpu_of(pool)
        plan = _single_replica_plan(cluster, model, pool.name, tp, pp, batch)
        rep = evaluate(model, cluster, workload, plan).to_dict()
        diag["evaluated"] += 1
        mem = float(rep["peak_memory_GB_per_gpu"])
        # The serving engine may use gpu_memory_utilization x capacity (the evaluator's rule).
        cap = workload.gpu_memory_utilization * gpu.memory_GB
        if diag["min_memory"] is None or mem / cap < diag["min_memory"][0] / diag["min_memory"][1]:
            diag["min_memory"] = (mem, cap, pool.name, tp, pp, batch)
        mem_ok = bool(rep["memory_ledger"]) and not check_serving_memory(rep["memory_ledger"])
        if mem_ok:
            diag["memory_fit"] += 1
            for key in ("ttft_ms", "tpot_ms"):
                best = diag[f"best_{key}"]
                if best is None or rep[key] < best[0]:
                    diag[f"best_{key}"] = (float(rep[key]), pool.name, tp, pp, batch)
        if not rep["feasible"]:
            continue
        configs.append(
            InferenceConfig(
                pool=pool.name,
                tp=tp,
                pp=pp,
                batch=batch,
                gpus=tp * pp,
                tokens_per_s=float(rep["tokens_per_s"]),
                ttft_ms=float(rep["ttft_ms"]),
                tpot_ms=float(rep["tpot_ms"]),
                cost_per_hour=tp * pp * (pool.cost_per_gpu_hour or 0.0),
                peak_memory_GB=mem,
            )
        )
    return configs, diag


def _shapes(
    model: Model, cluster: Cluster, workload: InferenceWorkload, engine: EngineRules | None
) -> Iterator[tuple[Pool, int, int, int]]:
    """Every (pool, tp, pp, batch) replica shape the engine allows, in scoring order."""
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            for pp in pipeline_degrees(model.num_layers, pool.num_gpus // tp):
                if engine is not None:
                    shape = GroupShape(
                        tp=(tp,) * pp,
                        pools=(pool.name,) * pp,
                        layers=tuple(split_layers(model.num_layers, pp)),
                    )
                    if shape_violations(engine, shape, model):
                        continue
                for batch in workload.batch_sizes:
                    yield pool, tp, pp, batch


def _explain(workload: InferenceWorkload, diag: dict[str, Any]) -> str:
    if diag["evaluated"] == 0:
        return "no replica shape exists: no pool has a TP degree that divides the attention heads"
    if diag["memory_fit"] == 0:
        mem, cap, pool, tp, pp, batch = diag["min_memory"]
        return (
            f"memory: the smallest footprint found needs {mem:.1f} GB per GPU "
            f"(pool {pool}, TP={tp}, PP={pp}, batch {batch}); each GPU lets the engine use "
            f"{cap:.1f} GB (gpu_memory_utilization {workload.gpu_memory_utilization:g}). "
            "Relax: more GPUs per replica, a smaller batch, or fp8 weights/KV cache"
        )
    parts = []
    if (
        workload.ttft_ms is not None
        and diag["best_ttft_ms"]
        and diag["best_ttft_ms"][0] > workload.ttft_ms
    ):
        v, pool, tp, pp, b = diag["best_ttft_ms"]
        parts.append(
            f"SLO: best TTFT is {v:.1f} ms (pool {pool}, TP={tp}, PP={pp}, batch {b}) > "
            f"ttft_ms {workload.ttft_ms:g}; loosen ttft_ms to {v * 1.01:.1f}"
        )
    if (
        workload.tpot_ms is not None
        and diag["best_tpot_ms"]
        and diag["best_tpot_ms"][0] > workload.tpot_ms
    ):
        v, pool, tp, pp, b = diag["best_tpot_ms"]
        parts.append(
            f"SLO: best TPOT is {v:.2f} ms (pool {pool}, TP={tp}, PP={pp}, batch {b}) > "
            f"tpot_ms {workload.tpot_ms:g}; loosen tpot_ms to {v * 1.01:.2f}"
        )
    if not parts:
        parts.append(
            "SLO: no single replica shape meets both ttft_ms and tpot_ms at once; "
            "loosen one of them or allow smaller batch sizes"
        )
    return "; ".join(parts)


def solve_inference(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    time_limit_s: float,
    workers: int,
    seed: int,
    engine: EngineRules | None = None,
    deadline: Deadline | None = None,
) -> Solved:
    """Plan inference: score every replica shape, then pick replica counts (knapsack).

    ``deadline``: the whole plan() call's budget (default: ``time_limit_s`` from now).  When
    it expires before every shape is scored, the knapsack runs over the shapes scored so far:
    a plan is then FEASIBLE without a bound, no plan is UNKNOWN (never INFEASIBLE: the
    shapes not scored might fit).  INFEASIBLE only when every shape was scored and none fits
    (or the knapsack proves no mix of them does).
    """
    t0 = time.perf_counter()
    if deadline is None:
        deadline = Deadline(time_limit_s, t0)
    configs, diag = enumerate_configs(model, cluster, workload, engine, deadline)
    complete = bool(diag["complete"])
    stats: dict[str, Any] = {
        "configs_evaluated": diag["evaluated"],
        "configs_feasible": len(configs),
    }
    partial = (
        f"time limit: {diag['evaluated']} replica shapes scored before the limit, not all of them"
    )
    if not complete:
        stats["configs_complete"] = False
    if not configs:
        if not complete:
            return Solved(
                Status.UNKNOWN,
                None,
                None,
                None,
                message=partial + ", and none of those fits; raise --time-limit",
                stats=stats,
            )
        return Solved(
            Status.INFEASIBLE, None, None, None, message=_explain(workload, diag), stats=stats
        )
    pool_gpus = {p.name: p.num_gpus for p in cluster.pools}
    # The knapsack is small: it gets up to half a second of the grace, even when scoring the
    # shapes used up the limit, rather than give up on a problem it solves in milliseconds.
    left = min(time_limit_s - (time.perf_counter() - t0), deadline.left())
    budget = max(left, min(MIN_KNAPSACK_S, deadline.grace_left() - 0.3), 0.05)
    target = workload.target_throughput_tokens_per_s
    if workload.objective in ("min_gpus", "min_cost") or target is not None:
        total = sum((pool_gpus[c.pool] // c.gpus) * c.tokens_per_s for c in configs)
        if target is not None and total < target and not complete:
            return Solved(
                Status.UNKNOWN,
                None,
                None,
                None,
                message=partial + f", and those reach at most {total:,.0f} tokens/s < target "
                f"{target:,.0f}; raise --time-limit",
                stats=stats,
            )
        if target is not None and total < target:
            best = max(configs, key=lambda c: c.tokens_per_s / c.gpus)
            need = target / (best.tokens_per_s / best.gpus)
            return Solved(
                Status.INFEASIBLE,
                None,
                None,
                None,
                message=(
                    f"GPU count: at most {total:,.0f} tokens/s fit this cluster under the SLOs < "
                    f"target {target:,.0f}; about {need:,.0f} GPUs of pool {best.pool} "
                    f"(TP={best.tp}, PP={best.pp}, batch {best.batch}) would be needed"
                ),
                stats=stats,
            )
    objective = workload.objective
    cm = InferenceModel(configs, pool_gpus, objective, target)
    status, counts, obj, bound = cm.solve(budget, workers, seed)
    if objective == "min_latency" and counts:
        # Second, lexicographic step: the most throughput at that TPOT.
        cap = int(round(obj * cm.tpot_scale))
        cm2 = InferenceModel(configs, pool_gpus, objective, target, tpot_cap=cap)
        st2, counts2, _, _ = cm2.solve(
            max(0.05, min(time_limit_s - (time.perf_counter() - t0), deadline.grace_left() - 0.3)),
            workers,
            seed,
        )
        if counts2:
            counts = counts2
            if st2 != cp_model.OPTIMAL:
                status = cp_model.FEASIBLE  # type: ignore[assignment,unused-ignore]
    stats["cp_status"] = cp_model.CpSolverStatus(status).name
    if not counts:
        if status == cp_model.INFEASIBLE and complete:
            message = "GPU count: no mix of the feasible replica shapes fits the pools"
            return Solved(Status.INFEASIBLE, None, None, None, message=message, stats=stats)
        if status == cp_model.MODEL_INVALID:
            return Solved(
                Status.MODEL_ERROR,
                None,
                None,
                None,
                message="the replica-count model is invalid (a bug): " + cm.m.validate(),
                stats=stats,
            )
        message = (
            "time limit: no replica mix found and no proof that none exists before the limit; "
            "raise --time-limit"
        )
        if not complete:
            message = partial + "; " + message
        return Solved(Status.UNKNOWN, None, None, None, message=message, stats=stats)
    chosen = sorted(counts.items(), key=lambda kv: (configs[kv[0]].pool, -configs[kv[0]].tp))
    groups = [
        (
            n,
            [
                (configs[i].pool, configs[i].tp, k)
                for k in split_layers(model.num_layers, configs[i].pp)
            ],
        )
        for i, n in chosen
    ]
    stages = build_stages(cluster, groups)
    plan = Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=n, batch_size=configs[i].batch, stages=st)
            for (i, n), st in zip(chosen, stages, strict=True)
        ],
    )
    if not complete:
        # The optimum over a subset of the shapes: a plan, but no bound on the others.
        return Solved(
            Status.FEASIBLE,
            plan,
            obj,
            None,
            message=partial + ": the plan is the best over those, with no bound on the rest",
            stats=stats,
        )
    st = Status.OPTIMAL if status == cp_model.OPTIMAL else Status.FEASIBLE
    return Solved(st, plan, obj, bound, stats=stats)
