"""Lower bounds the training planner prunes with, each valid for the CP model's own cost terms
(``tests/test_bounds.py`` checks them against CP-SAT's optima): :func:`lower_bound_us`
(closed form), :func:`pipeline_lp_bound` (an LP per value of T_max, :mod:`.stage_lp`) and
:func:`refine` (the T_max slices and options where a better plan can still be)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stage_lp import _stage_lp, _StageLP, usable_options
from .tables.build import restrict_options, stages_limit
from .training.data import TrainTables

__all__ = ["Refinement", "lower_bound_us", "pipeline_lp_bound", "refine"]


def lower_bound_us(t: TrainTables) -> float:
    """A valid lower bound on the step time of any plan of this family (and single d); cheap.

    Work bound: all ``global_batch / micro_batch`` micro-batches pass every block forward and
    backward; a block on option ``o`` costs ``t_layer * tp`` GPU-units, spread over at most all
    GPUs.  Pipeline bound: step >= (m - 1) T_max + sum T >= sum T (m - 1 + p) / p with
    sum T >= L min_o t_layer and p <= the stage limit.  Bubbles, embedding/head, p2p, DP and
    the optimizer only add to both.  Interleaving needs every stage to hold a multiple of v
    blocks, so ``L`` must be a multiple of ``v`` (else no plan: inf).  The LP bound over pools
    and T_max (:func:`pipeline_lp_bound`) is much tighter and costs milliseconds; the planner
    computes it only where this one does not already prune.
    """
    n_mb = t.global_batch // t.micro_batch
    work = n_mb * t.num_layers * min(o.t_layer * o.tp for o in t.options)
    lb = work / sum(t.pool_gpus.values())
    if len(t.dp_degrees) == 1:
        d = t.dp_degrees[0]
        p = stages_limit(t, d)
        v = t.virtual
        if v > 1 and t.num_layers % v:
            return math.inf  # sum of multiples of v cannot be L
        # Closed form m T_max + (sum T - T_max) / v = (m - 1/v) T_max + sum T / v.
        mv = t.m(d) - 1.0 / v
        tsum = t.num_layers * min(o.t_layer for o in t.options)
        lb = max(lb, tsum * (mv / p + 1.0 / v))
        # Coupled bound: with Y_o blocks on option o, sum T >= sum_o t_o Y_o, and the stages'
        # GPUs (at most G per replica) are each busy <= T_max per micro-batch, so
        # T_max >= sum_o tp_o t_o Y_o / G.  Hence step >= sum_o Y_o t_o (1 + (m - 1) tp_o / G)
        # >= L min_o t_o (1 + (m - 1) tp_o / G): a fast option pays in GPUs, a frugal one in
        # the micro-batch's latency through the pipeline.  Much tighter than the two halves
        # taken from different options.
        G = sum(g // d for g in t.pool_gpus.values())
        if G == 0:
            return math.inf  # no pool can give every replica a GPU
        usable = [o for o in t.options if o.allowed.get(d, False)] or t.options
        coupled = t.num_layers * min(o.t_layer * (1.0 / v + mv * o.tp / G) for o in usable)
        coupled += (min(o.t_embed for o in usable) + min(o.t_head for o in usable)) / v
        lb = max(lb, coupled)
        if t.objective == "min_cost":
            lb *= d * min(o.price for o in t.options)
    return lb


#: Relative slack taken off every LP (and MILP dual) value, far above GLOP's and SCIP's
#: tolerances, so that a value a solver rounds up cannot lift a bound above the optimum.
LP_SAFETY = 1e-5


class _TauSearch:
    """``(m - 1/v) tau + S(tau) / v`` over the breakpoints of an LP (see
    :func:`pipeline_lp_bound`): S cached per breakpoint, intervals bounded from below."""

    def __init__(self, lp: _StageLP, m: int) -> None:
        self.lp = lp
        self.v = lp.v
        self.coef = m - 1.0 / lp.v
        self.points = lp.points
        self.cache: dict[int, float] = {}
        self.evals = 0

    def S(self, i: int) -> float:
        """sum T lower bound at breakpoint i (inf: infeasible); never above the true value."""
        if i not in self.cache:
            self.evals += 1
            lp = self.lp
            val = lp.solve(self.points[i])
            if val is None:
                self.cache[i] = lp.floor_sum  # no LP answer: the floor still holds
            elif math.isinf(val):
                self.cache[i] = math.inf
            else:
                self.cache[i] = max(lp.floor_sum, val * (1.0 - LP_SAFETY) - 1.0 + lp.const)
        return self.cache[i]

    def base(self, i: int) -> float:
        """A bound for every tau >= points[i], whatever S is there."""
        return self.coef * self.points[i] + self.lp.floor_sum / self.v

    def value(self, i: int, k: int) -> float:
        """A bound for every tau in [points[i], points[k + 1])."""
        return self.coef * self.points[i] + self.S(k) / self.v

    def span(self, target: float) -> tuple[int, int, float] | None:
        """(first feasible breakpoint, last one whose base is below target, the bound beyond
        it), or None when no tau admits all blocks (feasibility only grows with tau)."""
        n = len(self.points)
        if n == 0:
            return None
        # Fast path: the last breakpoint that can beat the target bounds S below over all of
        # them (S never increases), so one LP often settles it.
        last = 0
        while last + 1 < n and self.base(last + 1) < target:
            last += 1
        if self.value(0, last) >= target:  # then minimum() and below() stop at once
            return 0, last, self.base(last + 1) if last + 1 < n else math.inf
        if math.isinf(self.S(n - 1)):
            return None
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if math.isinf(self.S(mid)):
                lo = mid + 1
            else:
                hi = mid
        last = lo
        while last + 1 < n and self.base(last + 1) < target:
            last += 1
        beyond = self.base(last + 1) if last + 1 < n else math.inf
        return lo, last, beyond

    def minimum(self, target: float, rel_tol: float) -> float:
        """The minimum over tau within ``rel_tol`` (or a bound >= ``target``): the smallest
        interval bound of a best-first split of the breakpoints; inf if infeasible."""
        import heapq

        span = self.span(target)
        if span is None:
            return math.inf
        first, last, beyond = span
        best_exact = min(self.value(first, first), self.value(last, last))
        heap = [(self.value(first, last), first, last)]
        result = math.inf
        while heap:
            lb, i, k = heap[0]
            if lb >= min(target, beyond) or i == k or best_exact - lb <= rel_tol * lb:
                result = lb
                break
            heapq.heappop(heap)
            mid = (i + k) // 2
            best_exact = min(best_exact, self.value(mid, mid))
            for a, b in ((i, mid), (mid + 1, k)):
                heapq.heappush(heap, (self.value(a, b), a, b))
        return min(result, beyond)

    def below(self, target: float, max_evals: int) -> list[tuple[float, int, int]]:
        """Intervals ``(bound, i, k)`` of breakpoints covering every tau whose bound is below
        ``target``: split down to single breakpoints while ``max_evals`` LP solves last."""
        import heapq

        span = self.span(target)
        if span is None:
            return []
        first, last, beyond = span
        if beyond < target:  # pragma: no cover - `last` stops only where base >= target
            raise AssertionError("breakpoints beyond the span must be bounded")
        heap = [(self.value(first, last), first, last)]
        out: list[tuple[float, int, int]] = []
        while heap:
            lb, i, k = heapq.heappop(heap)
            if lb >= target:
                break
            if i == k or self.evals >= max_evals:
                out.append((lb, i, k))
                continue
            mid = (i + k) // 2
            for a, b in ((i, mid), (mid + 1, k)):
                heapq.heappush(heap, (self.value(a, b), a, b))
        return out


def _cost_factor(t: TrainTables) -> float:
    """min_cost: the objective is rate x step, rate = d x (sum of the stages' prices) >=
    d x (stages) x the cheapest usable price; 1 for max_throughput."""
    if t.objective != "min_cost":
        return 1.0
    d = t.dp_degrees[0]
    prices = [t.options[i].price for i in usable_options(t)] or [0]
    return float(d * min(prices) * (t.max_stages if t.virtual > 1 else 1))


def pipeline_lp_bound(
    t: TrainTables,
    target: float = math.inf,
    rel_tol: float = 1e-3,
    integer: bool = False,
    exact: bool = False,
) -> float:
    """A valid lower bound on the sub-problem's objective (single ``d``), from an LP per T_max.

    Why it is valid.  Take any solution of the CP model (:class:`~.training.model.TrainingModel`)
    for this ``d``: depth ``p`` (``p = max_stages`` when interleaved), slot ``j`` with option
    ``o_j`` and ``n_j`` blocks, and its ``T_max = tau``.  Then, term by term from the model:

    * ``T_j >= t_o n_j + e_o``, with ``e_o`` the least that slot can add: the cheapest
      activation hand-off out of ``o`` (every slot but the last under 1F1B, every slot under
      interleaving) or, on the last slot under 1F1B, the head; so ``n_j <= (tau - e_o) / t_o``.
    * Memory: ``n_j <= blocks_that_fit(d, in_flight(j))`` (embedding and head only lower it),
      and in-flight counts never decrease with ``j``, so a slot of class ``[a, b)`` holds at
      most what slot ``a`` holds.  Interleaving: ``n_j`` is a multiple of ``v``, at least ``v``.
    * Each slot holds one stage; a pool's stages use at most ``gpus // d`` GPUs per replica;
      the blocks sum to ``L``; interleaved, exactly ``p`` slots are stages.
    * ``sum_j T_j >= sum_j (t_o n_j + e_o) + (cheapest embedding) (+ cheapest head when
      interleaved, where e_o has no head)`` and ``DP, OPT >= 0``, so the model's objective
      ``(m - 1/v) T_max + sum T / v + DP + OPT >= (m - 1/v) tau + S(tau) / v``.

    ``S(tau)``, the LP over stage counts ``s[o, c]`` and blocks ``Y[o, c]`` per option and
    slot class with exactly those constraints, is <= the solution's ``sum T``: the solution's
    own counts are a feasible point.  S never increases with tau (caps only grow) and changes
    only where a cap does, at ``tau = n t_o + e_o``; so over ``[B_i, B_k]`` of the sorted
    breakpoints the objective is ``>= (m - 1/v) B_i + S(B_k) / v``, and below the first
    feasible breakpoint nothing fits.  A best-first split of breakpoint intervals on that
    bound gives the minimum over tau within ``rel_tol`` (the returned value is the smallest
    interval bound, never an estimate), or stops as soon as every interval is >= ``target``.
    For ``min_cost`` the step bound is multiplied by ``d x (stages) x`` the cheapest price
    (rate = ``d x sum of the stages' prices``).

    Returns ``inf`` when no solution exists (no tau admits all blocks, or interleaving
    with ``L`` not a multiple of ``v``).
    """
    d = t.dp_degrees[0]
    v = t.virtual
    if v > 1 and (t.num_layers % v or t.num_layers < v * t.max_stages):
        return math.inf
    factor = _cost_factor(t)
    if factor <= 0:
        return 0.0
    lp = _stage_lp(t, integer, exact)
    if lp is None:
        return math.inf
    return _TauSearch(lp, t.m(d)).minimum(target / factor, rel_tol) * factor


#: LP solves one slicing may spend before it leaves the intervals it has not split.
SLICE_LP_EVALS = 48

#: SCIP on one slice's integer bound: a node limit, not a time limit, so deterministic runs stay
#: deterministic (SCIP's proven dual bound is valid wherever it stops).  ``misc/catchctrlc``
#: off: SCIP would otherwise install its own SIGINT handler while it solves and print "pressed
#: CTRL-C 1 times ..." on stdout, ahead of the sweep's "interrupted:" line and of --json output
#: (seen in a fresh-clone test run, tests/test_sweep.py's Ctrl-C test).
SCIP_SETTINGS = "limits/nodes = 400\nmisc/catchctrlc = FALSE"

#: Slices (lowest bound first) whose bound the integer version raises; the rest keep the LP's.
SLICE_MILP_CALLS = 12


@dataclass
class Refinement:
    """What can still beat a target in one sub-problem (see :func:`refine`)."""

    keep: list[int]  # options (indices into the sub-problem's) some better solution may use
    tables: TrainTables  # the sub-problem on those options only
    slices: list[tuple[float, int, int | None]]  # (bound, lo, hi): T_max ranges, best first


def refine(t: TrainTables, target: float) -> Refinement:
    """The options and the ranges of ``T_max`` where a solution better than ``target`` can be.

    Slices: every solution whose objective is below ``target`` has ``lo <= T_max <= hi``
    (``hi`` None: unbounded) for one returned range, and its objective is ``>= bound`` there.
    Valid by the argument of :func:`pipeline_lp_bound`: a range ``[B_i, B_{k+1})`` of
    breakpoints has the bound ``(m - 1/v) B_i + S(B_k) / v``; ranges whose bound reaches the
    target (T_max below the first feasible breakpoint, or past the last one that can beat the
    target) are left out.  Options: one is kept only if, with ``sum_c s[o, c] >= 1`` added to
    the LP (a relaxation of exactly the solutions that use ``o`` in some stage), some range's
    bound stays below the target; the others cannot appear in a better solution, so dropping
    them from the model loses none.  Each range's bound is then raised with the integer
    version of the LP on the options kept (stage counts and the first stage's option
    integral), whose proven dual bound (SCIP, node-limited) is as valid.

    CP-SAT solves a sub-problem with T_max pinned to one range far faster than the whole;
    the planner gives it the ranges one by one.  Empty slices: nothing beats the target.
    """
    d = t.dp_degrees[0]
    v = t.virtual
    none = Refinement([], t, [])
    if v > 1 and (t.num_layers % v or t.num_layers < v * t.max_stages):
        return none
    factor = _cost_factor(t)
    if factor <= 0:
        return Refinement(list(range(len(t.options))), t, [(0.0, 0, None)])
    lp = _stage_lp(t)
    if lp is None:
        return none
    search = _TauSearch(lp, t.m(d))
    goal = target / factor
    pieces = search.below(goal, SLICE_LP_EVALS)
    if not pieces:
        return none
    points, coef = search.points, search.coef
    keep = []
    for i in usable_options(t):
        lp.force(i)
        for _, a, k in pieces:
            val = lp.solve(points[k])
            s = lp.floor_sum if val is None else val * (1.0 - LP_SAFETY) - 1.0 + lp.const
            if coef * points[a] + max(s, lp.floor_sum) / v < goal:
                keep.append(i)
                break
    lp.force(None)
    if not keep:
        return none
    reduced = restrict_options(t, keep)
    milp = _stage_lp(reduced, integer=True)
    if milp is not None:
        milp.solver.SetSolverSpecificParametersAsString(SCIP_SETTINGS)
        raised = []
        for n, (lb, a, k) in enumerate(pieces):
            if n >= SLICE_MILP_CALLS:
                raised.append((lb, a, k))
                continue
            # The reduced problem has breakpoints of its own (its stages' least hand-off is
            # dearer with fewer partners), but its S never increases either: its value at the
            # range's last T_max bounds the whole range.
            right = points[k + 1] - 1 if k + 1 < len(points) else max(points[-1], *milp.points)
            val = milp.solve(right)
            if val is None:
                s = milp.floor_sum
            else:
                s = max(milp.floor_sum, val * (1.0 - LP_SAFETY) - 1.0 + milp.const)
            lb = max(lb, coef * points[a] + s / v)
            if lb < goal:
                raised.append((lb, a, k))
        pieces = raised
    slices: list[tuple[float, int, int | None]] = []
    for lb, a, k in sorted(pieces):
        hi = int(points[k + 1]) - 1 if k + 1 < len(points) else None
        slices.append((lb * factor, int(points[a]), hi))
    return Refinement(keep, reduced, slices)
