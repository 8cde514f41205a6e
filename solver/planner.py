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

Every plan is re-scored from scratch by :func:`solver.evaluate.evaluate`
(:mod:`solver.plan_verify`); any violation, or an objective that differs from the CP model's by
more than :data:`~solver.plan_verify.OBJECTIVE_TOLERANCE`, makes the status ``MODEL_ERROR`` --
except a training difference that pipeline hand-offs explain: the CP model prices a hop inside
a pool on NVLink wherever placement *could* keep it inside one NVLink domain (a relaxation, so
its optimum and bound stay valid bounds), and when placement put such a hop across nodes the
evaluator's value lies between the CP objective of the same stages with hops at their cheapest
and at their dearest.  The plan is then valid and reported with the CP bound and an honest gap
(FEASIBLE), after a second solve with every hop at its dearest whose plan is kept if the
evaluator prefers it (OPTIMAL if it reaches the bound).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from .baselines.rubric import RubricCutShort, rubric_plan_scored, rubric_pool, rubric_shapes
from .catalog import gpu_of
from .construction import Solved, objective_of
from .cpsat.advice import (
    ENOUGH_SUFFICIENT,
    Relaxation,
    advice_text,
    inference_relaxation_axes,
    relaxation_axes,
    search_relaxations,
    untried_axes,
)
from .cpsat.deadline import Deadline
from .cpsat.plan_inference import solve_inference
from .cpsat.plan_training import solve_training
from .cpsat.subproblems import TableCache
from .engines import (
    ANY_PLAN,
    ENGINES,
    LAUNCHABLE,
    EngineRules,
    covering_engines,
    engine_supports,
    engines_for,
    launch_check,
    training_numerics_violations,
    workload_violations,
)
from .errors import SpecError, check_solve_options
from .evaluate import evaluate
from .evaluate.calibration import calibrated_cluster
from .evaluate.checks import numerics_field, workload_precision_gap
from .objective_proof import _one_objective, _stamped
from .plan_verify import _hop_fallback, _verify
from .result import Result, Status
from .specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Pool,
    TrainingWorkload,
)

__all__ = ["plan"]

log = logging.getLogger(__name__)


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
    advice: bool = True,
) -> Result:
    """Find the best plan for ``model`` on ``cluster`` under ``workload``.

    Parameters
    ----------
    model, cluster, workload
        Validated specs (see :mod:`solver.io` to load them by name).
    time_limit_s
        Wall-clock budget in seconds (default 10 s).  The search (tables, bounds, warm starts,
        CP-SAT) stops at it; the whole call, model building and the evaluator's verification
        included, returns within ``time_limit_s * 1.1 + 0.5`` s
        (:mod:`solver.cpsat.deadline`), skipping optional work that would not fit (the rubric
        baseline, the pessimistic-hop re-solve, trying more stage orders) and saying so in
        ``Result.message``.  When it runs out the best plan found is FEASIBLE with its bound and
        gap; without a plan the status is UNKNOWN (never INFEASIBLE, which needs a proof).
    seed
        CP-SAT random seed (default 0).
    num_workers
        CP-SAT search workers (default: the machine's cores, capped at 8).
    deterministic
        Run CP-SAT with one worker and count the time limit in CP-SAT's deterministic time (a
        work counter, roughly seconds of one core) instead of the wall clock, so that the same
        input and seed give the same plan and objective every time -- also when the limit cuts
        the search short.  The wall clock may then run past ``time_limit_s`` on a slow or
        loaded machine, and no optional work is skipped for time.
    compare_baseline
        Also score the seed rubric's plan (``Result.baseline``) for comparison (default True).
    engine
        What to optimise over (see :mod:`solver.engines`).  None or ``"launchable"`` (default):
        plans at least one engine of the workload's kind can launch (training: Megatron-LM,
        torchrun + Megatron-LM, DeepSpeed; inference: vLLM, SGLang, TensorRT-LLM); every
        engine's space is searched and the best plan kept, so OPTIMAL means no launchable plan
        is better.  A target name (``megatron``, ``deepspeed``, ``torchrun``, ``vllm``,
        ``sglang``, ``trtllm``): that engine's limits only.  ``"any-plan"``: every plan the cost
        model accepts, beyond any engine (different TP per stage, ...).
        ``Result.launch`` says which engines can launch the returned plan.
    advice
        For an INFEASIBLE instance, re-plan relaxations of it (training: recompute, ZeRO-3,
        micro-batch 1, a lighter memory policy, any-plan, the nearest dividing batch, more GPUs,
        a shorter sequence; inference: batch size 1, an fp8 KV cache, any-plan, looser SLOs or
        target, more GPUs, a shorter prompt: :mod:`solver.cpsat.advice`) in the time left of
        ``time_limit_s``
        (deterministic: re-plans of 0.5 s of deterministic time, ``time_limit_s`` of them in
        all), single changes first (training: the axes stop once two plan) and pairs when
        none works, and say which plan (``Result.advice``; default True).  Only a relaxation
        whose re-plan returned a plan the evaluator accepts is called sufficient (training
        re-plans stop at their first such plan: its tokens/s is not the relaxed optimum);
        "still infeasible" is the re-plan's proof.

    Returns
    -------
    Result
        Never raises for infeasibility or time-outs; bad input gives ``INVALID_INPUT``.
    """
    check_solve_options(time_limit_s=time_limit_s, seed=seed, num_workers=num_workers)
    start = time.perf_counter()
    cache = TableCache()  # tables shared by every solve of this call, re-plans included
    result = _plan(
        model,
        cluster,
        workload,
        time_limit_s,
        seed,
        num_workers,
        deterministic,
        compare_baseline,
        engine,
        start,
        cache=cache,
    )
    if advice and result.status == Status.INFEASIBLE:
        result = _with_advice(
            result,
            model,
            cluster,
            workload,
            engine,
            start,
            time_limit_s=time_limit_s,
            seed=seed,
            num_workers=num_workers,
            deterministic=deterministic,
            cache=cache,
        )
    return result


def _plan(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    time_limit_s: float,
    seed: int,
    num_workers: int | None,
    deterministic: bool,
    compare_baseline: bool,
    engine: str | None,
    start: float,
    prove: bool = True,
    cache: TableCache | None = None,
    first_plan: bool = False,
) -> Result:
    """:func:`plan` without the advice; ``start``: when the call began (perf_counter);
    ``prove``: re-score small training spaces with the evaluator (:func:`_one_objective`;
    the advice's re-plans need a verdict, not a proof of optimality, and skip it);
    ``cache``: the call's training tables (:class:`~.cpsat.subproblems.TableCache`);
    ``first_plan``: training stops at its first plan (FEASIBLE, verified by the evaluator like
    any plan; no hop re-solve), INFEASIBLE still needs its proof -- the advice's verdicts."""
    cache = cache if cache is not None else TableCache()
    deadline = Deadline.unbounded() if deterministic else Deadline(time_limit_s, start)
    workers = 1 if deterministic else (num_workers or default_workers())
    try:
        if cluster.calibration is not None:
            # Fold the measured figures into the pools once, so the CP tables and the
            # evaluator's verification price the same GPUs and links.
            cluster = calibrated_cluster(cluster)
        scope, engines = _engine_scope(engine, workload)
        _check_prices(cluster, workload)
        unsupported = _precision_gaps(cluster, workload)
        if len(unsupported) == len(cluster.pools):
            field, value = numerics_field(workload)  # precision, or quantization (nvfp4 ...)
            # Not a search outcome: the workload asks for numerics no GPU here has (e.g. fp8 on
            # A100s), so it is bad input, named by its field (CLI: one line, exit 2).
            return Result(
                status=Status.INVALID_INPUT,
                message=f"{field}: no pool's GPU supports {value} ("
                + "; ".join(unsupported)
                + f"); choose another {field} or add GPUs that support it",
                seed=seed,
                time_s=time.perf_counter() - start,
            )
        if unsupported:  # plan on the pools that can run it
            keep = [p for p in cluster.pools if not _precision_gaps_pool(p, workload)]
            names = {p.name for p in keep}
            fabric = [f for f in cluster.fabric if set(f.pools) <= names]
            cluster = cluster.model_copy(update={"pools": keep, "fabric": fabric})
        if engines == []:
            return Result(
                status=Status.INFEASIBLE,
                message=_no_engine_message(workload),
                seed=seed,
                time_s=time.perf_counter() - start,
                engine_scope=scope,
            )
        if isinstance(workload, TrainingWorkload):
            res = solve_training(
                model,
                cluster,
                workload,
                time_limit_s,
                workers,
                seed,
                deterministic,
                engine=engines,
                deadline=deadline,
                cache=cache,
                first_plan=first_plan,
            )
        else:
            res = _solve_inference_over(
                model, cluster, workload, time_limit_s, workers, seed, engines, deadline
            )
    except SpecError as e:
        return Result(
            status=Status.INVALID_INPUT,
            message=str(e),
            seed=seed,
            time_s=time.perf_counter() - start,
        )
    result, check = _verify(model, cluster, workload, res, start, seed)
    skipped: list[str] = []
    if check.hop_explained and isinstance(workload, TrainingWorkload) and not first_plan:
        training = workload
        # Deterministic runs must not read the wall clock: a fixed share of the limit.
        left = 0.5 * time_limit_s if deterministic else deadline.left()
        if deterministic or left >= HOP_RESOLVE_SHARE * time_limit_s:

            def again() -> Solved:
                return solve_training(
                    model,
                    cluster,
                    training,
                    left,
                    workers,
                    seed,
                    deterministic,
                    engine=engines,
                    pessimistic_hops=True,
                    deadline=deadline,
                    cache=cache,
                )

            result = _hop_fallback(model, cluster, workload, res, result, check, start, seed, again)
        else:
            skipped.append("the re-solve with every pipeline hand-off at its dearest")
    if prove and isinstance(workload, TrainingWorkload):
        result = _one_objective(
            model,
            cluster,
            workload,
            result,
            scope,
            deadline,
            check.eval_s,
            skipped,
            start,
            engines,
            (time_limit_s, workers, seed, deterministic),
            cache,
        )
    if compare_baseline:
        result = _with_baseline(result, model, cluster, workload, deadline, check.eval_s, skipped)
    if skipped:
        note = "time limit: skipped " + " and ".join(skipped)
        log.info(note)
        message = (result.message + "; " if result.message else "") + note
        result = dataclasses.replace(result, message=message, time_s=time.perf_counter() - start)
        result = _stamped(result)
    return _with_launch(result, model, workload, scope)


def _with_advice(
    result: Result,
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    engine: str | None,
    start: float,
    *,
    time_limit_s: float,
    seed: int,
    num_workers: int | None,
    deterministic: bool,
    cache: TableCache | None = None,
) -> Result:
    """``result`` (INFEASIBLE) with its relaxations re-planned, each a real :func:`plan` call
    (verified by the evaluator like any plan; training re-plans stop at their first plan and
    share the call's tables, ``cache``) within what is left of the call's deadline, and the
    verdicts in ``message`` and ``advice`` (:mod:`solver.cpsat.advice`)."""
    # The call's own deadline, from when it began.
    deadline = Deadline.unbounded() if deterministic else Deadline(time_limit_s, start)
    scope = result.engine_scope or engine

    def replan(r: Relaxation, limit: float) -> tuple[str, float | None, str]:
        try:
            c, w = r.apply(cluster, workload)
        except (SpecError, ValueError) as e:  # a change the specs refuse: not a plan
            log.info("relaxation %s: %s", r.change, e)
            return Status.INVALID_INPUT.value, None, str(e)
        # _plan: plan() without the advice and without the evaluator's re-scoring of the
        # space, stopping at its first plan -- a relaxation needs one plan the evaluator
        # accepts (its verdict), not the best one; "still infeasible" keeps its full proof.
        res = _plan(
            model,
            c,
            w,
            limit,
            seed,
            num_workers,
            deterministic,
            False,
            r.engine or engine,
            time.perf_counter(),
            prove=False,
            cache=cache,
            first_plan=True,
        )
        rate = res.report.get("tokens_per_s") if res.ok and res.report else None
        log.info("relaxation %s: %s", r.change, res.status.value)
        return res.status.value, float(rate) if isinstance(rate, int | float) else None, res.message

    training = isinstance(workload, TrainingWorkload)
    axes = (
        relaxation_axes(model, cluster, workload, scope)
        if isinstance(workload, TrainingWorkload)
        else inference_relaxation_axes(cluster, workload, scope, result.message)
    )
    tried = search_relaxations(
        axes,
        replan,
        deadline,
        deterministic,
        budget_s=time_limit_s,
        enough=ENOUGH_SUFFICIENT if training else None,
    )
    if not tried:
        return result
    text = advice_text(tried, untried_axes(axes, tried))
    message = (result.message.rstrip(". ") + ". " if result.message else "") + text
    return dataclasses.replace(
        result,
        message=message,
        advice=[t.to_dict() for t in tried],
        time_s=time.perf_counter() - start,
    )


#: The pessimistic-hop re-solve runs only with at least this share of the limit left.
HOP_RESOLVE_SHARE = 0.2


def _rubric_evaluations(
    model: Model, cluster: Cluster, workload: TrainingWorkload | InferenceWorkload
) -> float:
    """An upper estimate of how many full evaluations the rubric baseline runs.

    Training: its knob settings on the first shape that fits (the rest are rejected on the
    memory ledger alone, about a twentieth of an evaluation each); inference: every shape
    and batch size, the worst case (it stops at the first that fits).
    """
    pool = rubric_pool(cluster)
    if isinstance(workload, TrainingWorkload):
        shapes = sum(1 for _ in rubric_shapes(model, pool))
        knobs = len(workload.recompute) * len(workload.zero_stages)
        return knobs + 1 + 0.05 * shapes * knobs
    shapes = sum(1 for _ in rubric_shapes(model, pool, latency=workload.objective == "min_latency"))
    return float(shapes * len(workload.batch_sizes))


def _with_baseline(
    result: Result,
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    deadline: Deadline,
    eval_s: float,
    skipped: list[str],
) -> Result:
    """``result`` with the rubric baseline, when the deadline leaves room for it (else
    ``skipped`` says so); its time is in ``stats["baseline_s"]``."""
    if deadline.bounded:
        need = _rubric_evaluations(model, cluster, workload) * max(eval_s, 1e-3) + 0.05
        if not deadline.allows(need):
            skipped.append(f"the rubric baseline (about {need:.2g} s)")
            return result
    t0 = time.perf_counter()
    baseline = _rubric_baseline(model, cluster, workload, deadline, skipped)
    stats = dict(result.stats)
    stats["baseline_s"] = round(time.perf_counter() - t0, 3)
    return dataclasses.replace(result, baseline=baseline, stats=stats)


def _with_launch(
    result: Result, model: Model, workload: TrainingWorkload | InferenceWorkload, scope: str
) -> Result:
    """``result`` with its scope and, for its plan, which engines can launch it.

    A plan planned for an engine (or for any launchable one) that no such engine launches is
    a bug of the engine constraints, reported as MODEL_ERROR; an ``any-plan`` plan beyond
    every engine says so in its message (and so in the plan file).
    """
    result = dataclasses.replace(result, engine_scope=scope)
    if result.plan is None:
        return result
    launch = launch_check(result.plan, model, workload)
    result = dataclasses.replace(result, launch=launch)
    if result.status == Status.MODEL_ERROR:
        return result
    ok = result.launchable_by
    message = result.message
    if scope == ANY_PLAN:
        if not ok:
            why = "; ".join(f"{ENGINES[e].title}: {v[0]}" for e, v in launch.items())
            message = (message + "; " if message else "") + f"beyond any engine ({why})"
        return _stamped(dataclasses.replace(result, message=message))
    wanted = [e.name for e in engines_for(workload.kind)] if scope == LAUNCHABLE else [scope]
    if not any(e in ok for e in wanted):
        # The engine constraints are in the model: this is a bug, said loudly.
        broken = "; ".join(f"{ENGINES[e].title}: " + "; ".join(launch[e]) for e in wanted)
        message = f"plan breaks the engine rules: {broken}"
        log.error(message)
        return dataclasses.replace(result, status=Status.MODEL_ERROR, message=message)
    return result


def _no_engine_message(workload: TrainingWorkload | InferenceWorkload) -> str:
    """Why no engine of the workload's kind can run it, per engine: the field it lacks
    (precision / quantization, memory policy, FP8 recipe, TP overlap), in one line."""
    reasons = [
        f"{r.title}: " + "; ".join(workload_violations(r, workload))
        for r in engines_for(workload.kind)
    ]
    return (
        f"engine: no {workload.kind} engine runs this workload ({'; '.join(reasons)}); plan "
        f"with engine '{ANY_PLAN}' (CLI: --engine {ANY_PLAN}) for plans beyond any engine"
    )


def _engine_scope(
    engine: str | None, workload: TrainingWorkload | InferenceWorkload
) -> tuple[str, list[EngineRules] | None]:
    """(scope name, the engines whose spaces are searched; None: every plan)."""
    if engine is None or engine == LAUNCHABLE:
        engines = [r for r in engines_for(workload.kind) if not workload_violations(r, workload)]
        return LAUNCHABLE, engines
    if engine == ANY_PLAN:
        return ANY_PLAN, None
    rules = _engine_rules(engine, workload)
    assert rules is not None
    return rules.name, [rules]


def _solve_inference_over(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    time_limit_s: float,
    workers: int,
    seed: int,
    engines: list[EngineRules] | None,
    deadline: Deadline | None = None,
) -> Solved:
    """Inference over the union of ``engines``' spaces: one solve per engine no other covers
    (:func:`~solver.engines.covering_engines`; today vLLM covers SGLang and TensorRT-LLM, so one
    solve), the time limit split between them, the best plan kept.  OPTIMAL only when every
    solve is: the union's optimum is the best of the proven per-engine optima."""
    if engines is None:
        return solve_inference(
            model, cluster, workload, time_limit_s, workers, seed, engine=None, deadline=deadline
        )
    cover = covering_engines(engines)
    results = []
    for k, rules in enumerate(cover):
        # Each engine gets an equal share of what is left (a later one inherits unused time).
        share = time_limit_s / len(cover)
        if deadline is not None and deadline.bounded:
            share = max(0.0, deadline.left()) / (len(cover) - k)
        sub = deadline if len(cover) == 1 else None
        if sub is None and deadline is not None and deadline.bounded:
            sub = Deadline(share)
        results.append(
            solve_inference(
                model, cluster, workload, share, workers, seed, engine=rules, deadline=sub
            )
        )
    if len(results) == 1:
        return results[0]
    maximise = workload.objective == "max_throughput"
    found = [r for r in results if r.plan is not None and r.objective is not None]
    if not found:
        # INFEASIBLE only if every engine's space is proven empty; a bug outranks a time-out.
        for status in (Status.MODEL_ERROR, Status.UNKNOWN):
            for r in results:
                if r.status == status:
                    return r
        return results[0]
    best = (max if maximise else min)(found, key=lambda r: r.objective or 0.0)
    proven = all(r.status in (Status.OPTIMAL, Status.INFEASIBLE) for r in results)
    messages = [r.message for r in results if r.message]
    # Each engine's bound holds for its space; the union's is the most optimistic of them
    # (an engine proven infeasible adds nothing, one without a bound leaves it unknown).
    open_ = [r for r in results if r.status != Status.INFEASIBLE]
    bound: float | None = None
    if all(r.bound is not None for r in open_):
        bounds = [r.bound for r in open_ if r.bound is not None]
        bound = (max if maximise else min)(bounds)
    status = Status.OPTIMAL if proven and best.status == Status.OPTIMAL else Status.FEASIBLE
    return dataclasses.replace(best, status=status, bound=bound, message="; ".join(messages))


def _precision_gaps_pool(pool: Pool, workload: TrainingWorkload | InferenceWorkload) -> str | None:
    """Why ``pool``'s GPU cannot compute at the workload's precision (None if it can)."""
    gap = workload_precision_gap(gpu_of(pool), workload)
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
    rules = ENGINES.get(engine)
    if rules is None:
        choices = ", ".join([LAUNCHABLE, *ENGINES, ANY_PLAN])
        raise SpecError(f"engine: unknown engine {engine!r} (choose from {choices})")
    if rules.kind != workload.kind:
        raise SpecError(
            f"engine: {engine!r} launches {rules.kind}, but the workload is {workload.kind}"
        )
    if (
        isinstance(workload, TrainingWorkload)
        and workload.memory_policy not in rules.memory_policies
    ):
        raise SpecError(
            f"engine: {rules.title} has no memory_policy {workload.memory_policy!r} "
            f"(it has {', '.join(sorted(rules.memory_policies))})"
        )
    if not engine_supports(rules, workload):
        numerics = (
            training_numerics_violations(rules, workload)
            if isinstance(workload, TrainingWorkload)
            else []
        )
        if numerics:  # the FP8 recipe or TP overlap, not the precision, is what it lacks
            raise SpecError(f"engine: {numerics[0]}")
        field, value = numerics_field(workload)
        raise SpecError(f"engine: {rules.title} has no {field} {value!r}")
    return rules


def _rubric_baseline(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    deadline: Deadline | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Any] | None:
    """The seed rubric's plan and its evaluator metrics, for comparison (None if none fits,
    or if ``deadline`` stopped its walk: then ``skipped`` says so)."""
    try:
        found = rubric_plan_scored(
            model,
            cluster,
            workload,
            deadline if deadline is not None and deadline.bounded else None,
        )
    except RubricCutShort as e:
        log.info("%s", e)
        if skipped is not None:
            skipped.append(f"the rest of the rubric baseline ({e.shapes} shape(s) walked)")
        return None
    except (SpecError, ValueError) as e:  # the baseline is informative only
        log.info("rubric baseline failed: %s", e)
        return None
    if found is None:
        return None
    base, rep_or_none = found
    # The rubric evaluated its plan on the way (usually): the same report, computed once.
    rep = (
        rep_or_none
        if rep_or_none is not None
        else evaluate(model, cluster, workload, base).to_dict()
    )
    if not rep["feasible"]:
        return None
    keys = ("tokens_per_s", "step_time_s", "mfu", "ttft_ms", "tpot_ms", "num_gpus", "cost_per_hour")
    out: dict[str, Any] = {k: rep.get(k) for k in keys if rep.get(k) is not None}
    out["objective"] = objective_of(rep, workload)
    out["plan"] = base.model_dump(mode="json", exclude_none=True)
    return out
