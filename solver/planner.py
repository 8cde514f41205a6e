"""``plan()``: the CP-SAT planner, verified by the evaluator.

Training
    The global knobs that scale every stage's cost (micro-batch size, recompute, sequence
    parallelism, ZeRO stage) are enumerated as *families*; each family is one CP-SAT model
    (:mod:`solver.cpsat.training`) choosing DP degree, pipeline depth, per-stage pool/TP and the
    (possibly uneven) layer split.  Families are solved best-first with the incumbent as an upper
    bound, so a family that cannot beat it is closed by CP-SAT as infeasible; the result is
    OPTIMAL only when every family was closed (OPTIMAL or INFEASIBLE under the bound).
    Dominated knobs are pruned before solving, each with the reason in the code.

Inference
    Replica configurations are scored by the evaluator and a knapsack model
    (:mod:`solver.cpsat.inference`) picks how many of each to deploy.

Every plan is re-scored from scratch by :func:`solver.evaluate.evaluate`; any violation, or an
objective that differs from the CP model's by more than :data:`OBJECTIVE_TOLERANCE`, makes the
status ``MODEL_ERROR``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from importlib.metadata import version as _pkg_version
from typing import Any

from .engines import EngineRules
from .errors import SpecError
from .placement import PlacementError, StageSlot, check_placement, place
from .result import Result, Status
from .specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    SolverInfo,
    Stage,
    TrainingWorkload,
)

__all__ = ["OBJECTIVE_TOLERANCE", "plan"]

ORTOOLS_VERSION = _pkg_version("ortools")

log = logging.getLogger(__name__)

#: Largest relative difference allowed between the CP model's objective and the evaluator's
#: closed-form objective of the same plan.  What remains is integer rounding of coefficients
#: (time unit <= 1e-4 of the cheapest block) and PP links the CP model prices conservatively
#: (two small stage blocks that placement happens to put on one node).
OBJECTIVE_TOLERANCE = 0.02


def default_workers() -> int:
    """CP-SAT workers: all cores of this machine (at least 1), unless told otherwise."""
    return max(1, min(8, os.cpu_count() or 1))


def plan(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int | None = None,
    deterministic: bool = False,
    compare_baseline: bool = True,
    engine: str | None = None,
) -> Result:
    """Find the best plan for ``model`` on ``cluster`` under ``workload``.

    Parameters
    ----------
    model, cluster, workload
        Validated specs (see :mod:`solver.io` to load them by name).
    time_limit_s
        Wall-clock budget for all CP-SAT solves (default 10 s).  When it runs out the best plan
        found is returned as FEASIBLE with its bound and gap.
    seed
        CP-SAT random seed (default 0).
    num_workers
        CP-SAT search workers (default: the machine's cores, capped at 8).
    deterministic
        Run CP-SAT with one worker and count the time limit in CP-SAT's deterministic time (a
        work counter, roughly seconds of one core) instead of the wall clock, so that the same
        input and seed give the same plan and objective every time -- also when the limit cuts
        the search short.  The wall clock may then run past ``time_limit_s`` on a slow or
        loaded machine.
    compare_baseline
        Also score the seed rubric's plan (``Result.baseline``) for comparison (default True).
    engine
        A launch target (``megatron``, ``deepspeed``, ``torchrun``, ``vllm``, ``sglang``,
        ``trtllm``; see :mod:`solver.engines`): its limits become constraints (one TP degree,
        one GPU type, even layer splits, the recompute/ZeRO settings it has), so the plan can
        be exported to it.  Optimality is then within what the engine can express.

    Returns
    -------
    Result
        Never raises for infeasibility or time-outs; bad input gives ``INVALID_INPUT``.
    """
    start = time.perf_counter()
    workers = 1 if deterministic else (num_workers or default_workers())
    try:
        if cluster.calibration is not None:
            # Fold the measured figures into the pools once, so the CP tables and the
            # evaluator's verification price the same GPUs and links.
            from .evaluate.core import calibrated_cluster

            cluster = calibrated_cluster(cluster)
        rules = _engine_rules(engine, workload)
        _check_prices(cluster, workload)
        unsupported = _precision_gaps(cluster, workload)
        if len(unsupported) == len(cluster.pools):
            return Result(
                status=Status.INFEASIBLE,
                message=f"precision: no pool's GPU supports {workload.precision} ("
                + "; ".join(unsupported)
                + "); choose another precision or add GPUs that support it",
                seed=seed,
                time_s=time.perf_counter() - start,
            )
        if unsupported:  # plan on the pools that can run it
            keep = [p for p in cluster.pools if not _precision_gaps_pool(p, workload)]
            names = {p.name for p in keep}
            fabric = [f for f in cluster.fabric if set(f.pools) <= names]
            cluster = cluster.model_copy(update={"pools": keep, "fabric": fabric})
        if isinstance(workload, TrainingWorkload):
            from .cpsat.plan_training import solve_training

            res = solve_training(
                model, cluster, workload, time_limit_s, workers, seed, deterministic, engine=rules
            )
        else:
            from .cpsat.plan_inference import solve_inference

            res = solve_inference(model, cluster, workload, time_limit_s, workers, seed, engine=rules)
    except SpecError as e:
        return Result(status=Status.INVALID_INPUT, message=str(e), seed=seed, time_s=time.perf_counter() - start)
    if compare_baseline:
        res.baseline = _rubric_baseline(model, cluster, workload)
    result = _verify(model, cluster, workload, res, start, seed)
    if rules is not None and result.plan is not None and result.status != Status.MODEL_ERROR:
        from .engines import engine_violations

        broken = engine_violations(result.plan, model, rules.name, workload)
        if broken:  # the engine constraints are in the model: this is a bug, said loudly
            message = f"plan breaks {rules.title}'s rules: " + "; ".join(broken)
            log.error(message)
            result = dataclasses.replace(result, status=Status.MODEL_ERROR, message=message)
    return result


def _precision_gaps_pool(pool: Pool, workload: TrainingWorkload | InferenceWorkload) -> str | None:
    """Why ``pool``'s GPU cannot compute at the workload's precision (None if it can)."""
    from .catalog import gpu_of
    from .evaluate.checks import precision_gap

    gap = precision_gap(gpu_of(pool), workload.precision)
    return None if gap is None else f"pool {pool.name}: {gap}"


def _precision_gaps(cluster: Cluster, workload: TrainingWorkload | InferenceWorkload) -> list[str]:
    return [r for p in cluster.pools if (r := _precision_gaps_pool(p, workload)) is not None]


def _check_prices(cluster: Cluster, workload: TrainingWorkload | InferenceWorkload) -> None:
    """min_cost needs every pool priced: SpecError (INVALID_INPUT) naming the first gap."""
    if workload.objective != "min_cost":
        return
    for i, pool in enumerate(cluster.pools):
        if pool.cost_per_gpu_hour is None:
            raise SpecError(
                f"pools[{i}].cost_per_gpu_hour: required for objective min_cost, got None "
                f"(pool {pool.name!r})"
            )


def _engine_rules(
    engine: str | None, workload: TrainingWorkload | InferenceWorkload
) -> EngineRules | None:
    """The named engine's rules; SpecError (INVALID_INPUT) for an unknown or mismatched one."""
    if engine is None:
        return None
    from .engines import ENGINES

    rules = ENGINES.get(engine)
    if rules is None:
        raise SpecError(f"engine: unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if rules.kind != workload.kind:
        raise SpecError(
            f"engine: {engine!r} launches {rules.kind}, but the workload is {workload.kind}"
        )
    if isinstance(workload, TrainingWorkload) and workload.memory_policy not in rules.memory_policies:
        raise SpecError(
            f"engine: {rules.title} has no memory_policy {workload.memory_policy!r} "
            f"(it has {', '.join(sorted(rules.memory_policies))})"
        )
    if workload.precision not in rules.precisions:
        raise SpecError(f"engine: {rules.title} has no precision {workload.precision!r}")
    return rules


def _rubric_baseline(
    model: Model, cluster: Cluster, workload: TrainingWorkload | InferenceWorkload
) -> dict[str, Any] | None:
    """The seed rubric's plan and its evaluator metrics, for comparison (None if none fits)."""
    from .baselines.rubric import rubric_plan_scored
    from .evaluate import evaluate

    try:
        found = rubric_plan_scored(model, cluster, workload)
    except (SpecError, ValueError) as e:  # the baseline is informative only
        log.info("rubric baseline failed: %s", e)
        return None
    if found is None:
        return None
    base, rep_or_none = found
    # The rubric evaluated its plan on the way (usually): the same report, computed once.
    rep = rep_or_none if rep_or_none is not None else evaluate(model, cluster, workload, base).to_dict()
    if not rep["feasible"]:
        return None
    keys = ("tokens_per_s", "step_time_s", "mfu", "ttft_ms", "tpot_ms", "num_gpus", "cost_per_hour")
    out: dict[str, Any] = {k: rep.get(k) for k in keys if rep.get(k) is not None}
    out["objective"] = objective_of(rep, workload)
    out["plan"] = base.model_dump(mode="json", exclude_none=True)
    return out


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


def _verify(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    res: Solved,
    start: float,
    seed: int,
) -> Result:
    from .evaluate import evaluate

    common: dict[str, Any] = dict(
        seed=seed, ortools_version=ORTOOLS_VERSION, stats=res.stats or {}, baseline=res.baseline
    )
    if res.plan is None:
        return Result(
            status=res.status,
            message=res.message,
            bound=res.bound,
            time_s=time.perf_counter() - start,
            **common,
        )
    report = evaluate(model, cluster, workload, res.plan).to_dict()
    status = res.status
    message = res.message
    objective = res.objective
    if not report["feasible"]:
        status = Status.MODEL_ERROR
        message = "evaluator rejected the solver's plan: " + "; ".join(report["violations"])
        log.error(message)
    else:
        evaluated = objective_of(report, workload)
        # The CP model encodes the cost model's closed-form pipeline time; compare it with the
        # evaluator's closed form of the same plan, so the check isolates encoding and scaling
        # errors.  The event simulation's difference from the closed form (uneven stages, p2p
        # overlap) is reported, not hidden: report["closed_form_step_time_s"] vs "step_time_s".
        reference = evaluated
        ref_report = report
        if res.cp_plan is not None:
            ref_report = evaluate(model, cluster, workload, res.cp_plan).to_dict()
            reference = objective_of(ref_report, workload)
        closed = ref_report.get("closed_form_step_time_s")
        if isinstance(workload, TrainingWorkload) and closed:
            ratio = float(ref_report["step_time_s"]) / float(closed)
            # tokens/s scales with 1/step time, $ per token with step time.
            reference = reference * ratio if workload.objective == "max_throughput" else reference / ratio
        if objective is not None and objective > 0:
            rel = abs(reference - objective) / abs(objective)
            if rel > OBJECTIVE_TOLERANCE:
                status = Status.MODEL_ERROR
                message = (
                    f"objective mismatch: CP model {objective:.6g}, evaluator {reference:.6g} "
                    f"({rel:.2%} > {OBJECTIVE_TOLERANCE:.0%})"
                )
                log.error(message)
        objective = evaluated
    bound = res.bound
    gap = None
    if res.objective is not None and bound is not None and math.isfinite(bound):
        # The gap is the CP model's own (objective vs proven bound, same units and scaling).
        gap = abs(res.objective - bound) / max(abs(res.objective), 1e-12)
        if objective is not None and res.objective:
            # Report the bound on the evaluator's scale (the CP model's integer-rounded costs
            # differ from the evaluator's by at most OBJECTIVE_TOLERANCE, checked above).
            bound = bound * objective / res.objective
    elapsed = time.perf_counter() - start
    predicted = {
        k: float(report[k])
        for k in ("step_time_s", "tokens_per_s", "mfu", "ttft_ms", "tpot_ms", "peak_memory_GB_per_gpu")
        if isinstance(report.get(k), int | float)
    }
    result = Result(
        status=status,
        plan=res.plan,
        report=report,
        objective=objective,
        bound=bound,
        gap=gap,
        time_s=elapsed,
        message=message,
        **common,
    )
    info = SolverInfo(**result.solver_info())
    final_plan = res.plan.model_copy(update={"predicted": predicted, "solver": info})
    return dataclasses.replace(result, plan=final_plan)


# ---------------------------------------------------------------------------------------------
# Shared helpers for the back-ends
# ---------------------------------------------------------------------------------------------
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
