"""The entry point :func:`explain`: plan (or take) a plan and assemble its explanation -- memory
ledger, step-time terms, bottleneck, binding constraints, alternatives -- or, for an
infeasible instance, the memory ledger of the closest plan."""

from __future__ import annotations

import math
from typing import Any

from ...cpsat.options import pipeline_degrees, tp_options
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
        )
        if result.status == Status.INVALID_INPUT:
            raise SpecError(result.message or "invalid input")
        status = result.status.value
        message = result.message
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
