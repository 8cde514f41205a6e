"""Training back-end: the best-first search over the sub-problems, with pruning.

The sub-problems (:mod:`.subproblems`: family x engine shape space x DP degree, x depth when
interleaved) are ordered by a cheap bound.  Pass 1 (no CP-SAT) prunes them by memory and by
the pipeline LP bound (:func:`~.bounds.pipeline_lp_bound`) against an incumbent from warm
starts (:func:`~.warmstart.warm_start`).  Pass 2 splits each sub-problem still open into the
T_max slices where a better plan can be, on the options such a plan can use
(:func:`~.bounds.refine`), and gives them to CP-SAT best-first with the incumbent as cut-off.
OPTIMAL only when every sub-problem and slice is closed: solved, infeasible under the cut-off,
or bounded at or above the incumbent by a valid bound.  The incumbent becomes a plan here too
(:func:`choice_to_plan`, :func:`best_stage_order`): the search's last step, under its deadline.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from ..construction import Solved, build_stages
from ..engines import EngineRules
from ..result import Status
from ..specs import Cluster, Model, Plan, ReplicaGroup, Stage, TrainingWorkload
from .advice import infeasibility_group, infeasibility_reasons
from .bounds import pipeline_lp_bound, refine
from .deadline import Deadline
from .subproblems import (
    Subproblem,
    TableCache,
    engine_families,
    families,
    space_label,
    subproblems,
)
from .tables.build import for_dp
from .tables.family import Family
from .training.data import TrainingChoice, TrainTables
from .training.model import TrainingModel
from .warmstart import memory_lower_bound_fails, stage_objective, warm_start

__all__ = ["choice_to_plan", "interleaved_stages", "solve_training"]

log = logging.getLogger(__name__)


#: Most of the wall-clock limit the pre-solve (LP bounds and warm starts, no CP-SAT) may use;
#: sub-problems it does not reach go to CP-SAT with their cheap bound.
PRESOLVE_SHARE = 0.6

#: A sub-problem whose slicing leaves more T_max slices than this goes to CP-SAT whole.
MAX_SLICES = 24

#: Sub-problems with at most this many (stage, option) cells go to CP-SAT whole, unrefined:
#: :func:`~.bounds.refine`'s LPs (a SCIP instance each) cost ~4 ms a sub-problem, CP-SAT
#: closes such a model under the cut-off in ~1 ms (gpt-1.7b on 2 H100s: 72 sub-problems of
#: 1-2 cells, 0.27 s of refining -> 0.05 s of CP-SAT; measured 2026-12-07, 2-core machine).
#: Either way the sub-problem is closed exactly (CP-SAT with the incumbent as cut-off); kept
#: at 2 because among plans of equal objective the whole model may return another than the
#: slices do (llama3-70b on seed-4x8-h100: another layer split of the same step time at 8).
REFINE_MIN_CELLS = 2

#: Attempts one job gets before it is left open (a guard: in deterministic mode the clock is
#: CP-SAT's work counter, which a run that stops at once would not advance).
MAX_TRIES = 24


def solve_training(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    time_limit_s: float,
    workers: int,
    seed: int,
    deterministic: bool = False,
    engine: EngineRules | Sequence[EngineRules] | None = None,
    pessimistic_hops: bool = False,
    deadline: Deadline | None = None,
    cache: TableCache | None = None,
    first_plan: bool = False,
) -> Solved:
    """Plan training.  Hand-offs inside a pool are priced optimistically (see
    :func:`~.subproblems.subproblems`), so OPTIMAL and the bound are valid for the evaluator's
    pricing; with ``pessimistic_hops`` at their dearest (the planner's fallback: the result's
    plan is then good, its bound is not a valid bound and its status means nothing beyond the
    plan).

    ``engine``: one launch target, or several whose spaces are searched together (the union:
    every sub-problem of every engine's space competes for one incumbent, so OPTIMAL means the
    best plan any of them launches); None searches every plan.

    ``deadline``: the whole plan() call's wall-clock budget (:class:`~.deadline.Deadline`):
    the search stops at ``time_limit_s`` or its limit, whichever is first, and the optional
    work after it (stage orders) fits its grace.

    Statuses: OPTIMAL only when every sub-problem is closed; INFEASIBLE only with a proof
    (every sub-problem closed without a plan: by memory, by an infinite bound, or by CP-SAT);
    UNKNOWN when the limit came before any plan or that proof; FEASIBLE a plan with open
    sub-problems (their least bound is the result's bound).

    ``cache``: tables built earlier in the same plan() call
    (:class:`~.subproblems.TableCache`).
    ``first_plan``: stop at the first plan found (a warm start, else CP-SAT's first
    solution), FEASIBLE, without the search for better plans and the stage orders;
    INFEASIBLE keeps its full proof.  The advice's re-plans use it: a relaxation
    needs one verified plan, not the best (:mod:`.advice`)."""
    t0 = time.perf_counter()
    if deadline is None:
        deadline = Deadline.unbounded() if deterministic else Deadline(time_limit_s, t0)
    if not deterministic:
        time_limit_s = max(0.0, min(time_limit_s, deadline.left()))
    engines: Sequence[EngineRules] | None = [engine] if isinstance(engine, EngineRules) else engine
    every = families(workload)
    if not every:  # no micro-batch divides the global batch: no plan whatever the engine
        return _infeasible(model, cluster, workload, first_plan, stats={})
    fams = engine_families(every, engines, workload)
    if not fams:
        return _no_engine_family(engines)
    unbuilt: list[Family] = []
    no_memory: list[tuple[Family, TrainTables, int]] = []
    tables = subproblems(
        model,
        cluster,
        workload,
        fams,
        engines,
        pessimistic_hops,
        deadline=None if deterministic else deadline,
        unbuilt=unbuilt,
        cache=cache,
        memory_pruned=no_memory,
    )
    _sort_best_first(tables, first_plan)
    stats, notes = _enumeration_facts(fams, tables, unbuilt, no_memory)
    if not tables:
        if unbuilt:
            return Solved(
                Status.UNKNOWN,
                None,
                None,
                None,
                message="; ".join(notes) + "; raise --time-limit",
                stats=stats,
            )
        return _infeasible(model, cluster, workload, first_plan, stats)
    # A first-plan search (the advice's re-plans: only their status, plan and message are
    # read) counts the memory-pruned pairs (stats["pruned_by_memory"]) without a row each.
    pruned_detail = [] if first_plan else _memory_pruned_detail(no_memory)
    search = _Search(
        model, cluster, workload, tables, time_limit_s, workers, seed, deterministic, deadline,
        t0, first_plan,
    )  # fmt: skip
    search.presolve()  # pass 1: bounds, memory and warm starts, no CP-SAT
    stats["presolve_s"] = round(time.perf_counter() - t0, 3)
    search.solve_open()  # pass 2: CP-SAT on what is open, in T_max slices
    open_bounds = search.leave_open()
    if search.invalid:
        notes.append(
            f"{len(search.invalid)} CP sub-problem(s) were refused by CP-SAT as invalid models "
            "(a bug, see the log); they are left open"
        )
    if unbuilt:
        # Families never built have no bound: nothing is proven about them.
        open_bounds.append(0.0)
    stats["families_detail"] = pruned_detail + search.detail()
    if search.best is None:
        return search.without_plan(open_bounds, bool(unbuilt), notes, stats)
    return search.with_plan(open_bounds, bool(unbuilt), pessimistic_hops, notes, stats)


def _infeasible(
    model: Model, cluster: Cluster, workload: TrainingWorkload, brief: bool, stats: dict[str, Any]
) -> Solved:
    """INFEASIBLE, with :func:`explain_training`'s account of the binding constraint."""
    return Solved(
        Status.INFEASIBLE,
        None,
        None,
        None,
        message=explain_training(model, cluster, workload, brief=brief),
        stats=stats,
    )


def _no_engine_family(engines: Sequence[EngineRules] | None) -> Solved:
    """INFEASIBLE: none of ``engines`` launches any family the workload allows."""
    names = ", ".join(r.title for r in engines or [])
    return Solved(
        Status.INFEASIBLE,
        None,
        None,
        None,
        message=f"engine: {names} cannot express any of the workload's recompute / "
        "sequence_parallel / zero_stages / schedules settings",
        stats={},
    )


def _sort_best_first(tables: list[Subproblem], first_plan: bool) -> None:
    """Order the sub-problems for the search, in place: by cheap bound, or for a first-plan
    search by the memory they have to spare."""
    # Best-first by the cheap bound: the most promising sub-problems give the incumbent early,
    # and everything after the first cheap bound above it is pruned without more work.
    tables.sort(key=lambda x: x[0])
    if first_plan:
        # One plan is asked for, not the fastest: the sub-problems with the most memory to
        # spare first (the fastest are often the ones memory refuses, each costing an LP),
        # plain 1F1B before interleaved (fewer activations in flight, and v times fewer
        # operations for the evaluator to simulate when it verifies the plan).
        tables.sort(key=lambda x: (-_memory_room(x[2]), x[2].virtual))


def _enumeration_facts(
    fams: list[Family],
    tables: list[Subproblem],
    unbuilt: list[Family],
    no_memory: list[tuple[Family, TrainTables, int]],
) -> tuple[dict[str, Any], list[str]]:
    """The result's first stats (families, sub-problems, memory-pruned pairs, time unit) and
    the notes on what the enumeration left out or coarsened."""
    stats: dict[str, Any] = {"families": len(fams), "families_buildable": len(tables)}
    if no_memory:
        stats["pruned_by_memory"] = len(no_memory)  # (family, space, d): no sub-problem built
    notes: list[str] = []
    if unbuilt:
        stats["families_unbuilt"] = len(unbuilt)
        notes.append(
            f"time limit: the tables of {len(unbuilt)} of {len(fams)} families were not built "
            "before the limit (their plans were not searched)"
        )
    if tables and tables[0][2].unit_s > 1e-6:
        stats["time_unit_s"] = tables[0][2].unit_s
        notes.append(
            f"time unit coarsened to {tables[0][2].unit_s:g} s so the CP model's values fit "
            "64-bit integers"
        )
    return stats, notes


@dataclass
class _Outcome:
    """What one sub-problem (or T_max slice) came to: a row of ``families_detail``."""

    fam: Family
    d: int
    status: str
    bound_us: float
    time_s: float
    depth: int = 0  # the sub-problem's stage limit (interleaved: its depth)
    tau: tuple[int, int | None] | None = None  # the T_max slice, if one
    space: str = ""  # the engines' shape space (space_label)


@dataclass
class _Job:
    """Open work: a sub-problem (index into the planner's table list), possibly restricted to
    the options that can still improve and to a T_max slice, with a valid lower bound."""

    lb: float
    i: int
    tab: TrainTables | None = None  # None: the whole sub-problem, not yet refined
    tau: tuple[int, int | None] | None = None  # T_max in [lo, hi] (hi None: unbounded)
    tries: int = 0


class _Search:
    """The best-first search over the sorted sub-problems (index ``i`` into ``tables``): the
    incumbent, the work still open, and what was proved about each sub-problem.

    Its clock (:meth:`elapsed`, which the budgets read) is wall time, or in deterministic mode
    the deterministic time CP-SAT has spent (a work counter), so that a search cut short by
    the limit stops at the same point every run and gives the same plan."""

    def __init__(
        self, model: Model, cluster: Cluster, workload: TrainingWorkload,
        tables: list[Subproblem], time_limit_s: float, workers: int, seed: int,
        deterministic: bool, deadline: Deadline, t0: float, first_plan: bool,
    ) -> None:  # fmt: skip
        self.model, self.cluster, self.workload = model, cluster, workload
        self.tables = tables
        self.time_limit_s, self.workers, self.seed = time_limit_s, workers, seed
        self.deterministic, self.deadline, self.t0 = deterministic, deadline, t0
        self.first_plan = first_plan
        self.work_done = 0.0  # CP-SAT's deterministic time so far
        self.outcomes: list[_Outcome] = []
        self.best: tuple[float, Family, TrainingChoice] | None = None
        self.best_i = -1  # the sub-problem (index into tables) the incumbent comes from
        # What is still open: whole sub-problems after pass 1, then their T_max slices.
        self.jobs: list[_Job] = []
        self.stalled: list[_Job] = []  # open, but out of attempts
        self.invalid: list[_Job] = []  # CP-SAT refused the model: a bug, open

    def elapsed(self) -> float:
        """The search's clock: deterministic work, or wall seconds since ``t0``."""
        return self.work_done if self.deterministic else time.perf_counter() - self.t0

    def _record(
        self,
        i: int,
        status: str,
        bound: float,
        dt: float,
        tau: tuple[int, int | None] | None = None,
    ) -> None:
        """One outcome of sub-problem ``i`` (or of its T_max slice ``tau``)."""
        _, fam, tab = self.tables[i]
        self.outcomes.append(
            _Outcome(
                fam, tab.dp_degrees[0], status, bound, dt, tab.max_stages, tau, space_label(tab)
            )
        )

    def _offer(self, i: int, fam: Family, choice: TrainingChoice) -> None:
        """Make ``choice``, a plan of sub-problem ``i``, the incumbent if it is better."""
        if self.best is None or choice.objective < self.best[0]:
            self.best = (choice.objective, fam, choice)
            self.best_i = i

    def presolve(self) -> None:
        """Pass 1, best-first by the cheap bound, no CP-SAT: prune by bound and memory, tighten
        the bound of what survives with the pipeline LP, and seed the incumbent with warm
        starts (even splits, pool-block local search) scored by the model's own terms, so
        CP-SAT only has to beat them and most sub-problems are pruned before any model is
        built.  What is left open becomes a job."""
        presolve_until = PRESOLVE_SHARE * self.time_limit_s
        for i in range(len(self.tables)):
            self._presolve_one(i, presolve_until)

    def _presolve_one(self, i: int, presolve_until: float) -> None:
        """Pass 1 on sub-problem ``i``: close it, or leave it open as a job with its bound."""
        lb, fam, tab = self.tables[i]
        d = tab.dp_degrees[0]
        if self.best is not None and lb >= self.best[0]:
            self._record(i, "PRUNED_BY_BOUND", lb, 0.0)
            return
        if memory_lower_bound_fails(tab, d):
            self._record(i, "PRUNED_BY_MEMORY", lb, 0.0)
            return
        if not self.deterministic and (
            time.perf_counter() - self.t0 > presolve_until or self.deadline.expired()
        ):
            # No time for the LP and the warm start: CP-SAT's turn.
            self.jobs.append(_Job(lb=lb, i=i))
            return
        if self.first_plan:
            if self.best is None and (first := warm_start(tab, d)) is not None:
                self._offer(i, fam, first)
            if self.best is not None:
                self.jobs.append(_Job(lb=lb, i=i))  # one plan is all that is asked: left open
                return
        t1 = time.perf_counter()
        # Also with first_plan: an infinite LP bound is the cheap proof that the sub-problem
        # holds no plan (the advice's "still infeasible" verdicts rest on it).
        lb = max(lb, pipeline_lp_bound(tab, target=self.best[0] if self.best else math.inf))
        closed = (
            "PRUNED_BY_BOUND"
            if self.best is not None and lb >= self.best[0]
            else "INFEASIBLE_BY_BOUND"
            if math.isinf(lb)
            else None
        )
        if closed is not None:
            self._record(i, closed, lb, time.perf_counter() - t1)
            return
        start = None if self.first_plan else warm_start(tab, d)  # first_plan: tried above
        if start is not None:
            self._offer(i, fam, start)
        if self.best is not None and lb >= self.best[0]:
            closed = "WARM_START_OPTIMAL" if self.best[2] is start else "PRUNED_BY_BOUND"
            self._record(i, closed, lb, time.perf_counter() - t1)
            return
        self.jobs.append(_Job(lb=lb, i=i))

    def solve_open(self) -> None:
        """Pass 2, best-first by bound (fewest attempts first, so that one hard job cannot
        starve the rest): a sub-problem still open is split into T_max slices on the options
        that can still improve; each slice goes to CP-SAT with the incumbent as its cut-off and
        a share of the time left (doubled on its first attempt)."""
        while self.jobs:
            if self.first_plan and self.best is not None:
                break  # the rest stays open: FEASIBLE with their least bound
            if self.best is not None:
                for job in [j for j in self.jobs if j.lb >= self.best[0]]:
                    if job.tries == 0:
                        self._record(job.i, "PRUNED_BY_BOUND", job.lb, 0.0, job.tau)
                self.jobs = [j for j in self.jobs if j.lb < self.best[0]]
            remaining = self.time_limit_s - self.elapsed()
            if not self.jobs or remaining <= 0.05:
                break
            self.jobs.sort(key=lambda j: (j.tries, j.lb))
            job = self.jobs.pop(0)
            if job.tab is None and self.best is not None and _worth_refining(self.tables[job.i][2]):
                self._split(job)
                continue
            share = remaining / (len(self.jobs) + 1)
            self._attempt(
                job, max(min(remaining, (2 if job.tries == 0 else 1) * share), min(remaining, 0.05))
            )

    def _attempt(self, job: _Job, budget: float) -> None:
        """CP-SAT on one job with a cut-off at the incumbent; record what it proved."""
        _, fam, full = self.tables[job.i]
        tab = job.tab or full
        t1 = time.perf_counter()
        cm = TrainingModel(tab, upper_bound_us=self.best[0] if self.best else None)
        _add_bound(cm, job.lb)
        if job.tau is not None:  # the slice: T_max in [lo, hi]
            lo, hi = job.tau
            cm.m.add(cm.Tmax >= lo)
            if hi is not None:
                cm.m.add(cm.Tmax <= hi)
        left = self.time_limit_s - self.elapsed()
        if self.deterministic:
            budget = max(0.01, min(budget, left))
        else:  # building a deep model takes a while in Python: it comes out of the budget
            budget = max(0.01, min(budget - (time.perf_counter() - t1), left))
        status, choice, bound = cm.solve(
            budget, self.workers, self.seed, deterministic=self.deterministic
        )
        self.work_done += cm.work
        if choice is not None and job.tau is not None:
            # A slice's T_max >= lo may sit above the plan's slowest stage: score the plan
            # itself (the model's objective with T_max = its slowest stage, never more).
            choice = _rescored(tab, choice)
        dt = time.perf_counter() - t1
        name = cp_model.CpSolverStatus(status).name
        self._record(job.i, name, bound, dt, job.tau)
        log.info("family %s d=%d slice %s: %s in %.2fs", fam, tab.dp_degrees[0], job.tau, name, dt)
        if choice is not None:
            self._offer(job.i, fam, choice)
        if status in (cp_model.FEASIBLE, cp_model.UNKNOWN):
            lb = max(bound, job.lb) if status == cp_model.FEASIBLE else job.lb
            again = dataclasses.replace(job, lb=lb, tries=job.tries + 1)
            (self.jobs if again.tries < MAX_TRIES else self.stalled).append(again)
        elif status == cp_model.MODEL_INVALID:
            # A bug of the model (e.g. an overflowing domain), never a proof: the job stays
            # open with its valid cheap bound, so the result can be neither OPTIMAL nor
            # INFEASIBLE.
            log.error(
                "family %s d=%d: CP-SAT says the model is invalid: %s",
                fam,
                tab.dp_degrees[0],
                cm.m.validate(),
            )
            self.invalid.append(job)

    def _split(self, job: _Job) -> None:
        """Split an open sub-problem into T_max slices worth solving, on the options that can
        still beat the incumbent (see :func:`~.bounds.refine`)."""
        assert self.best is not None
        t1 = time.perf_counter()
        ref = refine(self.tables[job.i][2], self.best[0])
        dt = time.perf_counter() - t1
        if not ref.slices:
            self._record(job.i, "PRUNED_BY_BOUND", self.best[0], dt, job.tau)
            return
        if len(ref.slices) > MAX_SLICES:
            self.jobs.append(
                _Job(lb=max(job.lb, ref.slices[0][0]), i=job.i, tab=ref.tables, tries=job.tries)
            )
            return
        for lb, lo, hi in ref.slices:
            self.jobs.append(
                _Job(lb=max(job.lb, lb), i=job.i, tab=ref.tables, tau=(lo, hi), tries=job.tries)
            )

    def leave_open(self) -> list[float]:
        """Record the jobs pass 2 never reached (NOT_SOLVED) and return the bounds of the work
        still open below the incumbent."""
        for job in self.jobs:
            if job.tries == 0 and (self.best is None or job.lb < self.best[0]):
                self._record(job.i, "NOT_SOLVED", job.lb, 0.0, job.tau)
        return [
            j.lb
            for j in self.jobs + self.stalled + self.invalid
            if self.best is None or j.lb < self.best[0]
        ]

    def detail(self) -> list[dict[str, Any]]:
        """The ``families_detail`` rows of the outcomes, in the order they happened."""
        return [
            {
                "family": o.fam.label,
                "d": o.d,
                "depth": o.depth,
                "status": o.status,
                "bound": round(o.bound_us, 1) if math.isfinite(o.bound_us) else None,
                "tmax_slice": list(o.tau) if o.tau is not None else None,
                "time_s": round(o.time_s, 3),
                "space": o.space or None,
            }
            for o in self.outcomes
        ]

    def without_plan(
        self, open_bounds: list[float], unbuilt: bool, notes: list[str], stats: dict[str, Any]
    ) -> Solved:
        """No incumbent: MODEL_ERROR when only invalid models are left, UNKNOWN while
        anything is open, else INFEASIBLE (every sub-problem closed without a plan: a proof by
        memory, an infinite bound or CP-SAT)."""
        if self.invalid and not self.jobs and not self.stalled and not unbuilt:
            return Solved(
                Status.MODEL_ERROR, None, None, None, message="; ".join(notes), stats=stats
            )
        if open_bounds:
            notes.insert(
                0,
                f"time limit: no plan found and no proof that none exists before the limit "
                f"({len(self.jobs) + len(self.stalled) + len(self.invalid)} sub-problems left "
                "open); raise --time-limit",
            )
            return Solved(Status.UNKNOWN, None, None, None, message="; ".join(notes), stats=stats)
        return _infeasible(self.model, self.cluster, self.workload, self.first_plan, stats)

    def with_plan(
        self, open_bounds: list[float], unbuilt: bool, pessimistic_hops: bool,
        notes: list[str], stats: dict[str, Any],
    ) -> Solved:  # fmt: skip
        """The incumbent as the result: its plan (in the evaluator's best stage order unless
        ``first_plan``), objective and bound in user units, OPTIMAL only when nothing is open,
        and the objective with every hand-off at its cheapest and at its dearest."""
        assert self.best is not None
        cluster, workload = self.cluster, self.workload
        step_us, fam, choice = self.best
        if self.first_plan:
            plan, reordered = choice_to_plan(cluster, workload, fam, choice), False
        else:
            plan, reordered = best_stage_order(
                self.model, cluster, workload, fam, choice,
                None if self.deterministic else self.deadline,
            )  # fmt: skip
        stats["stage_order_changed"] = reordered
        user = _user_units(workload, self.tables[0][2].unit_s)
        objective = user(step_us)
        if unbuilt:
            lb_us = 0.0  # unsearched families: no valid bound
            final = Status.FEASIBLE
        elif open_bounds:
            lb_us = max(1.0, min(min(open_bounds), step_us))
            final = Status.FEASIBLE
        else:
            lb_us = step_us
            final = Status.OPTIMAL
        bound = user(lb_us) if lb_us > 0 else None
        cp_plan = choice_to_plan(cluster, workload, fam, choice) if reordered else None
        # The same stages with every hand-off at its cheapest and at its dearest: the evaluator's
        # closed form of the plan lies between the two (plan_verify._verify reads them).
        sub = self.tables[self.best_i][2]
        span = tuple(
            user(v) if (v := _objective_with(sub, choice, k)) is not None else objective
            for k in (False, True)
        )
        stats["pipeline_hops"] = "pessimistic" if pessimistic_hops else "optimistic"
        return Solved(
            final,
            plan,
            objective,
            bound,
            message="; ".join(notes),
            stats=stats,
            cp_plan=cp_plan,
            objective_range=(span[0], span[1]),
        )


def _user_units(workload: TrainingWorkload, unit: float) -> Callable[[float], float]:
    """The conversion of a model objective (time units of ``unit`` s, or cost) to the user's."""
    tokens = workload.global_batch_size * workload.sequence_length
    if workload.objective == "min_cost":
        # objective units: milli-$ per hour x time units -> $ per million tokens.
        def user(v: float) -> float:
            return v / 1000.0 / 3600.0 * unit / tokens * 1e6
    else:

        def user(v: float) -> float:
            return tokens / (v * unit)

    return user


def _worth_refining(t: TrainTables) -> bool:
    """Whether :func:`~.bounds.refine` pays for itself on sub-problem ``t``."""
    return t.max_stages * len(t.options) > REFINE_MIN_CELLS


def _memory_room(t: TrainTables) -> float:
    """Blocks one replica's GPUs can hold by memory, over the layer count, with one
    micro-batch of activations in flight (:func:`~.warmstart.memory_lower_bound_fails`'s
    measure; below 1 nothing fits): an order for finding a first plan, never a proof."""
    d = t.dp_degrees[0]
    room = 0.0
    for pool, gpus in t.pool_gpus.items():
        opts = [o for o in t.options if o.pool == pool and o.allowed.get(d, False)]
        if opts:
            per_block = min(o.tp * (o.static["layer"][d] + o.act_layer) for o in opts)
            room += (gpus // d) * max(0, max(o.free_kb(d) for o in opts)) / max(per_block, 1)
    return room / max(1, t.num_layers)


def _rescored(t: TrainTables, choice: TrainingChoice) -> TrainingChoice:
    """``choice`` with the model's objective of its own stages (:func:`stage_objective`)."""
    step = stage_objective(t, choice.d, choice.stages)
    if step is None:  # pragma: no cover - a CP solution is always a plan of its model
        return choice
    objective = (
        step * choice.d * sum(o.price for o, _ in choice.stages)
        if t.objective == "min_cost"
        else step
    )
    if objective > choice.objective:  # pragma: no cover - T_max >= the slowest stage, always
        return choice
    return dataclasses.replace(choice, step_us=step, objective=objective)


def _add_bound(cm: TrainingModel, lb: float) -> None:
    """Give CP-SAT a valid lower bound on its objective (v x step, or cost) as a constraint.

    ``lb`` is valid for every solution of the model (see :func:`pipeline_lp_bound`; for a
    slice, every solution whose T_max lies in it: :func:`refine`), so the cut removes none; it
    hands CP-SAT's search the bound it would otherwise have to prove.
    """
    if not math.isfinite(lb) or lb <= 0:
        return
    v = cm.t.virtual
    target = cm.cost if cm.t.objective == "min_cost" else cm.step
    cm.m.add(target >= math.ceil(v * lb - 1e-6 * v * lb - 1))


def _memory_pruned_detail(
    pruned: list[tuple[Family, TrainTables, int]],
) -> list[dict[str, Any]]:
    """The ``families_detail`` rows of the (family, table, d) pairs
    :func:`~.subproblems.subproblems` set aside by memory (``PRUNED_BY_MEMORY``, no bound, no
    time): made directly, one label per family and table, as there are many of them (one per
    schedule, space and DP degree) and nothing else is done with them."""
    fam_labels: dict[Family, str] = {}
    spaces: dict[int, str | None] = {}
    rows = []
    for fam, tab, d in pruned:
        if fam not in fam_labels:
            fam_labels[fam] = fam.label
        if id(tab) not in spaces:
            spaces[id(tab)] = space_label(tab) or None
        rows.append(
            {
                "family": fam_labels[fam],
                "d": d,
                "depth": tab.max_stages,
                "status": "PRUNED_BY_MEMORY",
                "bound": None,
                "tmax_slice": None,
                "time_s": 0.0,
                "space": spaces[id(tab)],
            }
        )
    return rows


def _objective_with(t: TrainTables, choice: TrainingChoice, pessimistic: bool) -> float | None:
    """The model's objective of ``choice`` (time units) with its hand-offs priced
    optimistically or pessimistically (:func:`~.tables.build.for_dp`)."""
    tab = for_dp(t, choice.d, pessimistic)
    step = stage_objective(tab, choice.d, choice.stages)
    if step is None:  # pragma: no cover - the choice is a solution of this sub-problem
        return None
    if t.objective == "min_cost":
        return step * choice.d * sum(o.price for o, _ in choice.stages)
    return step


# ------------------------------------------------------------------------------------------
# From a CP choice to a launchable plan
# ------------------------------------------------------------------------------------------
def choice_to_plan(
    cluster: Cluster, workload: TrainingWorkload, fam: Family, choice: TrainingChoice
) -> Plan:
    """A launchable plan (devices placed) from a CP solution."""
    stages = build_stages(cluster, [(choice.d, [(o.pool, o.tp, n) for o, n in choice.stages])])[0]
    v = fam.virtual_stages
    if v > 1:
        stages = interleaved_stages(stages, [n for _, n in choice.stages], v)
    m = workload.global_batch_size // (choice.d * fam.micro_batch)
    group = ReplicaGroup(
        count=choice.d,
        micro_batch_size=fam.micro_batch,
        num_micro_batches=m,
        schedule=fam.schedule,  # type: ignore[arg-type,unused-ignore]
        virtual_stages=v,
        recompute=fam.recompute,  # type: ignore[arg-type,unused-ignore]
        zero_stage=fam.zero_stage,
        sequence_parallel=fam.sequence_parallel,  # a no-op on TP=1 stages
        stages=stages,
    )
    return Plan(kind="training", replica_groups=[group])


def interleaved_stages(stages: list[Stage], layers: list[int], v: int) -> list[Stage]:
    """Megatron's interleaved layout: model chunk ``c * p + s`` runs on stage ``s``.

    Stage s holds v chunks of ``layers[s] / v`` blocks each; walking the virtual stages in
    order (chunk 0 of every stage, then chunk 1, ...) assigns consecutive blocks.
    """
    p = len(stages)
    per = [n // v for n in layers]
    chunks: list[list[tuple[int, int]]] = [[] for _ in range(p)]
    first = 0
    for _c in range(v):
        for s in range(p):
            chunks[s].append((first, first + per[s] - 1))
            first += per[s]
    return [
        Stage(pool=st.pool, tp=st.tp, devices=st.devices, chunks=chunks[s])
        for s, st in enumerate(stages)
    ]


#: Pipelines up to this depth have every stage order tried; deeper ones a few candidates.
MAX_PERMUTED_STAGES = 6


def best_stage_order(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    fam: Family,
    choice: TrainingChoice,
    deadline: Deadline | None = None,
) -> tuple[Plan, bool]:
    """Re-order the chosen stages by the evaluator's event simulation.

    The CP model prices the pipeline with the closed form ``(m - 1) T_max + sum T``, which does
    not depend on the order of unequal stages; the event-level 1F1B simulation does (a slow
    stage early in the pipeline delays the warm-up differently from one at the end).  Among
    the orders of the same stages (all of them up to :data:`MAX_PERMUTED_STAGES` stages, else
    the CP order, its reverse and the two sorts by per-micro-batch time), keep the one the
    evaluator scores fastest; only memory-feasible orders count.

    ``deadline``: orders are tried only while it leaves room for one more evaluation (and a
    verification after them); the CP order always stands, so stopping early never loses a plan.
    """
    from ..evaluate import evaluate

    stages = choice.stages
    p = len(stages)
    if p == 1 or len({(o.pool, o.tp, n) for o, n in stages}) == 1 or fam.virtual_stages > 1:
        return choice_to_plan(cluster, workload, fam, choice), False
    if p <= MAX_PERMUTED_STAGES:
        orders = list(dict.fromkeys(itertools.permutations(range(p))))
    else:
        key = [o.t_layer * n for o, n in stages]
        orders = [
            tuple(range(p)),
            tuple(reversed(range(p))),
            tuple(sorted(range(p), key=lambda i: key[i])),
            tuple(sorted(range(p), key=lambda i: -key[i])),
        ]
    best_plan = choice_to_plan(cluster, workload, fam, choice)
    t1 = time.perf_counter()
    best_step = evaluate(model, cluster, workload, best_plan).to_dict()["step_time_s"]
    # One evaluation's cost; room for the planner's verification (two of them) after us.
    each = time.perf_counter() - t1
    changed = False
    seen = {tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in range(p))}
    for order in orders:
        sig = tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in order)
        if sig in seen:
            continue
        if deadline is not None and not deadline.allows(4 * each + 0.05):
            log.info("stage order: deadline near, %d orders left untried", len(orders))
            break
        seen.add(sig)
        cand = dataclasses.replace(choice, stages=[stages[i] for i in order])
        try:
            plan = choice_to_plan(cluster, workload, fam, cand)
        except Exception:  # noqa: BLE001 - an order that cannot be placed is simply skipped
            continue
        rep = evaluate(model, cluster, workload, plan).to_dict()
        if rep["feasible"] and rep["step_time_s"] < best_step * (1 - 1e-9):
            best_plan, best_step, changed = plan, rep["step_time_s"], True
    return best_plan, changed


def explain_training(
    model: Model, cluster: Cluster, workload: TrainingWorkload, brief: bool = False
) -> str:
    """Which constraint binds, with numbers (:func:`~.advice.infeasibility_reasons`: the batch
    no micro-batch divides, or memory: the model states against the cluster and the lightest
    plan's activations against the GB its stages have free).

    Relaxations are not suggested here: :func:`solver.planner.plan` re-plans them
    (:mod:`.advice`) and calls sufficient only those that plan.

    ``brief``: the constraint group only (:func:`~.advice.infeasibility_group`), for a
    relaxation's re-plan, whose verdict shows nothing more.
    """
    if brief:
        group = infeasibility_group(model, cluster, workload)
        if not group:
            return "no plan satisfies the rules (see the planner's log)"
        return f"{group}: no plan of this instance fits (plan it alone for the numbers)"
    return infeasibility_reasons(model, cluster, workload)
