"""The entry point :func:`explain`: plan (or take) a plan and assemble its explanation -- memory
ledger, step-time terms, bottleneck, binding constraints, alternatives -- or, for an
infeasible instance, the memory ledger of the closest plan."""

from __future__ import annotations

import math
from typing import Any

from ...cpsat.options import pipeline_degrees, tp_options
from ...engines import ANY_PLAN, LAUNCHABLE, launch_check
from ...errors import SpecError
from ...planner import plan as solve
from ...result import Status
from ...specs import Cluster, Model, Plan, TrainingWorkload
from ..documents import objective_unit
from .alternatives import _alternatives
from .bottleneck import _bottleneck, _limits, _terms_list, step_terms
from .candidates import _RECOMPUTE_ORDER, _from_plan, _largest_dp, _score, _Scored, _Shape
from .document import Explanation
from .evaluation import AnyWorkload, _ledger, _overshoot


# ------------------------------------------------------------------------------------------
# The closest plan of an infeasible instance
# ------------------------------------------------------------------------------------------
def _closest(model: Model, cluster: Cluster, workload: AnyWorkload) -> _Scored | None:
    """The homogeneous plan with the smallest worst overshoot (memory / capacity, latency /
    SLO), over every pool, TP option and pipeline depth, with the most memory-saving knobs
    the workload allows (strongest recomputation, highest ZeRO stage, smallest micro-batch or
    batch size)."""

    best: _Scored | None = None
    best_key = math.inf
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            for pp in pipeline_degrees(model.num_layers, pool.num_gpus // tp):
                if isinstance(workload, TrainingWorkload):
                    mb = min(
                        (
                            b
                            for b in workload.micro_batch_sizes
                            if workload.global_batch_size % b == 0
                        ),
                        default=min(workload.micro_batch_sizes),
                    )
                    rc = next(r for r in reversed(_RECOMPUTE_ORDER) if r in workload.recompute)
                    d = _largest_dp(workload, mb, pool.num_gpus // (tp * pp))
                    if d < 1:
                        continue
                    shape = _Shape(
                        pool.name, tp, pp, d, mb, rc, max(workload.zero_stages),
                        True in workload.sequence_parallel,
                    )  # fmt: skip
                else:
                    shape = _Shape(pool.name, tp, pp, 1, batch_size=min(workload.batch_sizes))
                s = _score(model, cluster, workload, shape)
                if isinstance(s, str):
                    continue
                key = _overshoot(s.report.to_dict(), workload)
                if key < best_key:
                    best, best_key = s, key
    return best


# ------------------------------------------------------------------------------------------
# The price of launchability
# ------------------------------------------------------------------------------------------
def _engine_gap(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    stats: dict[str, Any],
    solve_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The unrestricted optimum (``any-plan``) beside the best launchable plan.

    ``ratio`` is how many times better the unrestricted plan is (> 1: launchability costs
    that much; tokens/s unrestricted / launchable, costs and latencies the other way round);
    ``beyond`` lists, per engine, what it cannot express of the unrestricted plan.  Each side
    states its solver status: a ratio between two FEASIBLE solves is not a proven gap.
    """
    if "launchable_optimum" in stats:
        launch_obj, launch_status = stats["launchable_optimum"]
    else:
        res = solve(
            model, cluster, workload, compare_baseline=False, engine=LAUNCHABLE, **solve_kwargs
        )
        launch_obj, launch_status = res.objective, res.status.value
    free = solve(model, cluster, workload, compare_baseline=False, engine=ANY_PLAN, **solve_kwargs)
    ratio = None
    if free.objective and launch_obj:
        maximise = workload.objective == "max_throughput"
        ratio = free.objective / launch_obj if maximise else launch_obj / free.objective
    beyond = {}
    if free.plan is not None:
        beyond = {e: why for e, why in launch_check(free.plan, model, workload).items() if why}
    shape = None
    if free.plan is not None:
        shape = " + ".join(
            f"{g.count}x[" + " ".join(f"{s.pool}:tp{s.tp}:{s.num_layers}L" for s in g.stages) + "]"
            for g in free.plan.replica_groups
        )
    return {
        "launchable": launch_obj,
        "launchable_status": launch_status,
        "unrestricted": free.objective,
        "unrestricted_status": free.status.value,
        "unrestricted_plan": shape,
        "ratio": ratio,
        "beyond": beyond,
    }


# ------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------
def explain(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    plan: Plan | None = None,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int | None = None,
    alternatives: bool = True,
    engine: str | None = None,
    engine_gap: bool = False,
) -> Explanation:
    """Explain ``plan`` (or the planner's plan): memory ledger, bottleneck, alternatives.

    Parameters
    ----------
    model, cluster, workload
        Validated specs.
    plan
        The plan to explain; None (default) plans one with :func:`solver.planner.plan`.
    time_limit_s, seed, num_workers
        Passed to the planner when ``plan`` is None (defaults 10 s, 0, all cores up to 8).
    alternatives
        Build and score the alternative plans (default True; a few hundred evaluator calls,
        typically 1-5 s on large models).
    engine
        What the planner optimises over when ``plan`` is None (default None: launchable plans;
        see :func:`solver.planner.plan`).
    engine_gap
        Also solve without engine limits (``any-plan``) and, for a given plan, for the best
        launchable plan, and report the gap between the unrestricted optimum and the best
        launchable plan (default False: one more solve of ``time_limit_s`` or two).

    Returns
    -------
    Explanation
        Never raises for an infeasible instance or plan; bad input raises
        :class:`~solver.errors.SpecError` (an INVALID_INPUT solve included).
    """

    source = "given" if plan is not None else "planner"
    message = ""
    solve_time: float | None = None
    stats: dict[str, Any] = {}
    if plan is None:
        result = solve(
            model,
            cluster,
            workload,
            time_limit_s=time_limit_s,
            seed=seed,
            num_workers=num_workers,
            compare_baseline=False,
            engine=engine,
        )
        if result.status == Status.INVALID_INPUT:
            raise SpecError(result.message or "invalid input")
        stats["engine_scope"] = result.engine_scope
        if result.ok and engine in (None, LAUNCHABLE):
            stats["launchable_optimum"] = (result.objective, result.status.value)
        status = result.status.value
        message = result.message
        if result.advice:
            stats["advice"] = result.advice
        solve_time = result.time_s
        plan = result.plan
    else:
        status = ""
    common: dict[str, Any] = dict(
        model=model.name,
        cluster=cluster.name,
        kind=workload.kind,
        objective_name=workload.objective,
        objective_unit=objective_unit(workload.objective, workload.kind),
        source=source,
        message=message,
        solve_time_s=solve_time,
        stats=stats,
    )
    if engine_gap:
        solve_kwargs: dict[str, Any] = dict(
            time_limit_s=time_limit_s, seed=seed, num_workers=num_workers
        )
        common["engines"] = {"gap": _engine_gap(model, cluster, workload, stats, solve_kwargs)}
    if plan is None:  # INFEASIBLE (or a time-out without a plan): the closest plan's ledger
        closest = _closest(model, cluster, workload)
        if closest is None:
            return Explanation(
                status=status, objective=None, plan=None, report=None, memory_source="none",
                feasible=False, memory_ledger=[], terms=[], bottleneck=None, limits=[], alternatives=[], **common,
            )  # fmt: skip
        rd = closest.report.to_dict()
        # The closest plan cannot run, so its time terms would explain nothing: only what
        # keeps it from fitting is reported.
        over = _overshoot(rd, workload)
        limits = [
            f"closest plan ({closest.shape.describe(workload.kind)}) overshoots by "
            f"{over:.2f}x: " + "; ".join(rd["violations"][:3])
        ]
        return Explanation(
            status=status,
            objective=None,
            plan=closest.plan,
            report=rd,
            memory_source="closest",
            feasible=False,
            memory_ledger=_ledger(rd),
            terms=[],
            bottleneck=None,
            limits=limits,
            alternatives=[],
            **common,
        )
    chosen = _from_plan(model, cluster, workload, plan)
    rd = chosen.report.to_dict()
    if source == "given":
        status = "GIVEN"
        if not rd["feasible"]:
            common["message"] = "the given plan violates: " + "; ".join(rd["violations"])
    # A plan that cannot run has no step to explain: only its violations are reported.
    runs = bool(rd["feasible"]) and rd.get("step_time_s") is not None
    terms = step_terms(chosen.report, plan) if runs else {}
    tl = _terms_list(terms, float(rd.get("step_time_s") or 0.0))
    limits = _limits(rd, plan, cluster, workload) if runs else list(rd["violations"])
    if source == "given":
        better_note = "better than the given plan"
    elif status == "FEASIBLE":
        better_note = "the solve stopped at its time limit before finding it: raise --time-limit"
    else:
        better_note = (
            "the planner optimises the closed-form pipeline time; the evaluator's event "
            "simulation ranks these two differently"
        )
    alts = (
        _alternatives(model, cluster, workload, chosen, terms, better_note) if alternatives else []
    )
    launch = launch_check(plan, model, workload)
    common["engines"] = {
        "scope": stats.get("engine_scope"),
        "launchable_by": [e for e, why in launch.items() if not why],
        "refused": {e: why for e, why in launch.items() if why},
        **common.get("engines", {}),
    }
    return Explanation(
        status=status,
        objective=chosen.objective if chosen.ok else None,
        plan=plan,
        report=rd,
        memory_source="chosen",
        feasible=bool(rd["feasible"]),
        memory_ledger=_ledger(rd),
        terms=tl,
        bottleneck=_bottleneck(tl, chosen.report, workload.kind) if tl else None,
        limits=limits,
        alternatives=alts,
        **common,
    )
