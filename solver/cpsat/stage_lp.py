"""The pipeline LP behind :func:`~.bounds.pipeline_lp_bound` and :func:`~.bounds.refine`:
stage counts and blocks per option and slot class, every stage's time within T_max, and the
first stage's DP and optimizer terms; built once per sub-problem (:func:`_stage_lp`) and
re-solved per value of T_max (GLOP, or SCIP on its integer version)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .training.data import TrainOption, TrainTables

__all__ = ["SINGLE_SLOT_DEPTH", "slot_in_flight", "slot_runs", "usable_options"]


#: Pipelines up to this deep get one slot range per slot in the exact LP, so that each slot's
#: DP traffic can be weighed against the backward of the slots above it.
SINGLE_SLOT_DEPTH = 24


def slot_runs(
    t: TrainTables, idx: list[int], exact: bool = True
) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """Slots grouped into ranges ``[a, b)``, and per range and option in ``idx`` the most
    blocks one of its slots holds by memory (a multiple of v).

    In-flight micro-batches never decrease with the slot index (slot 0 is the pipeline's
    end), so the caps never increase: a range's first slot holds the most.  ``exact``: one
    range per slot up to :data:`SINGLE_SLOT_DEPTH` slots, else runs of slots with equal caps
    (nothing lost either way); else the ranges {0}, {1}, [2, 4), [4, 8), ... (fewer LP columns,
    caps of the first slot: a relaxation).
    """
    d = t.dp_degrees[0]
    m, v, depth, L = t.m(d), t.virtual, t.max_stages, t.num_layers
    runs: list[tuple[int, int]] = []
    caps: list[list[int]] = []
    seen: dict[float, list[int]] = {}

    def at(j: int) -> list[int]:
        k = slot_in_flight(t, j, depth, m)
        if k not in seen:
            seen[k] = [min(L, t.options[i].blocks_that_fit(d, k)) // v * v for i in idx]
        return seen[k]

    if not exact:
        a = 0
        while a < depth:
            b = min(depth, max(a + 1, 2 * a))
            runs.append((a, b))
            caps.append(at(a))
            a = b
        return runs, caps
    for j in range(depth):
        row = at(j)
        if caps and caps[-1] == row and depth > SINGLE_SLOT_DEPTH:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((j, j + 1))
            caps.append(row)
    return runs, caps


def slot_in_flight(t: TrainTables, j: int, depth: int, m: int) -> float:
    """Micro-batches of activations slot ``j`` holds (the CP model's ``TrainingModel.in_flight``
    with ``J = depth``): ``min(m, j + 1)`` for 1F1B, Megatron's interleaved warm-up otherwise."""
    v = t.virtual
    if v == 1:
        return float(min(m, j + 1))
    return min(m * v, 2 * j + (v - 1) * depth + 1) / v


@dataclass
class _StageLP:
    """LP(tau) of :func:`~.bounds.pipeline_lp_bound` for one sub-problem, built once,
    re-solved per tau.

    Variables, per usable option ``o`` and slot class ``c``: ``s[o, c]`` (stages) and
    ``Y[o, c]`` (their blocks).  Only the ``Y - cap(o, c, tau) s <= 0`` coefficients change
    with tau, so GLOP re-solves from its last basis.  ``force`` adds ``sum s[o, .] >= 1`` for
    one option (the bound of the solutions that use it).
    """

    solver: Any
    rows: list[Any]  # the Y - cap s <= 0 rows, aligned with keys
    svars: list[Any]
    keys: list[tuple[int, int]]  # (index into t.options, class)
    memcap: list[int]  # blocks by memory for each key (a multiple of v)
    t_layer: dict[int, int]  # by index into t.options
    extra: dict[int, int]  # by index into t.options: the least a stage adds to its blocks' time
    v: int
    force_row: Any
    points: list[float]  # sorted breakpoints of T_max
    const: float  # what sum T has beyond sum (t Y + extra s): the embedding (and the head)
    floor_sum: float  # a lower bound on sum T that holds whatever the LP says
    frows: list[Any]  # the first stage's Yf - capF f <= 0 rows
    fvars: list[Any]
    fkeys: list[int]  # their options
    fmem: list[int]  # their blocks by memory
    fextra: dict[int, int]  # the least the first stage adds to its blocks' time (+ embedding)
    lrows: list[tuple[Any, list[int]]]  # per first-stage option: the rest-of-blocks row, its keys
    last: tuple[list[int], list[int], list[int]] | None = None  # the caps of the last solve

    def _cap(self, tau: float, i: int, mem: int, extra: int) -> int:
        v = self.v
        by_time = int((tau - extra) // self.t_layer[i]) if tau >= extra else 0
        cap = min(mem, (by_time // v) * v)
        return cap if cap >= v else 0

    def caps(self, tau: float) -> list[int]:
        return [
            self._cap(tau, i, mem, self.extra[i])
            for (i, _), mem in zip(self.keys, self.memcap, strict=True)
        ]

    def force(self, option: int | None) -> None:
        """Require at least one stage of ``option`` (None: no requirement)."""
        for (i, _), s in zip(self.keys, self.svars, strict=True):
            self.force_row.SetCoefficient(s, 1.0 if i == option else 0.0)
        self.force_row.SetLb(1.0 if option is not None else -self.solver.infinity())

    def solve(self, tau: float) -> float | None:
        """min sum (t Y + extra s) with every stage's time <= tau: inf if infeasible, None if
        GLOP gives no answer (numerical trouble)."""
        from ortools.linear_solver import pywraplp

        caps = self.caps(tau)
        fcaps = [
            self._cap(tau, i, mem, self.fextra[i])
            for i, mem in zip(self.fkeys, self.fmem, strict=True)
        ]
        lmins = [min((caps[k] for k in linked), default=0) for _, linked in self.lrows]
        # Only the coefficients that changed since the last solve (GLOP then re-solves warm).
        last, flast, llast = self.last or ([-1] * len(caps), [-1] * len(fcaps), [-1] * len(lmins))
        for k, cap in enumerate(caps):
            if cap != last[k]:
                self.rows[k].SetCoefficient(self.svars[k], -float(cap))
        for a, cap in enumerate(fcaps):
            if cap != flast[a]:
                self.frows[a].SetCoefficient(self.fvars[a], -float(cap))
        for a, (row, linked) in enumerate(self.lrows):
            for k in linked:
                if caps[k] != last[k]:
                    row.SetCoefficient(self.svars[k], -float(caps[k]))
            if lmins[a] != llast[a]:
                row.SetCoefficient(self.fvars[a], float(lmins[a]))
        self.last = (caps, fcaps, lmins)
        status = self.solver.Solve()
        if self.solver.IsMip():  # the proven (dual) bound, also when a node limit stopped it
            if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
                return float(self.solver.Objective().BestBound())
            return math.inf if status == pywraplp.Solver.INFEASIBLE else None
        if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.INFEASIBLE):
            # No answer (GLOP's presolve can end ABNORMAL on these): again from scratch, without.
            params = pywraplp.MPSolverParameters()
            params.SetIntegerParam(params.INCREMENTALITY, params.INCREMENTALITY_OFF)
            params.SetIntegerParam(params.PRESOLVE, params.PRESOLVE_OFF)
            status = self.solver.Solve(params)
        if status == pywraplp.Solver.OPTIMAL:
            return float(self.solver.Objective().Value())
        if status == pywraplp.Solver.INFEASIBLE:
            return math.inf
        return None


def usable_options(t: TrainTables) -> list[int]:
    """Indices of the options a stage of this sub-problem (single d) can use at all: the
    block places, the pool has ``tp`` GPUs per replica, and one slot holds ``v`` blocks."""
    d = t.dp_degrees[0]
    m, v, depth = t.m(d), t.virtual, t.max_stages
    out = []
    for i, o in enumerate(t.options):
        if not o.allowed.get(d, False) or (t.pool_gpus[o.pool] // d) // o.tp < 1:
            continue
        if o.blocks_that_fit(d, slot_in_flight(t, 0, depth, m)) >= v:
            out.append(i)
    return out


def _stage_lp(t: TrainTables, integer: bool = False, exact: bool = True) -> _StageLP | None:
    """The LP of :func:`~.bounds.pipeline_lp_bound`; None when no stage can hold a block.

    ``integer``: stage counts and the first stage's option integral (a small MILP for SCIP,
    whose proven dual bound is used), else GLOP on the LP relaxation.  ``exact``: one slot
    range per run of equal memory caps (:func:`slot_runs`), else a few doubling ranges.
    """
    from ortools.linear_solver import pywraplp

    d = t.dp_degrees[0]
    m, v, depth, L = t.m(d), t.virtual, t.max_stages, t.num_layers
    gk = {k: g // d for k, g in t.pool_gpus.items()}
    idx = usable_options(t)
    if not idx:
        return None
    opts = {i: t.options[i] for i in idx}
    # What a stage adds to t_layer x blocks: every slot but the last hands its activations on
    # (the last too under interleaving), the last slot adds the head; the first the embedding.
    extra: dict[int, int] = {}
    if depth == 1:
        extra = {i: 0 for i in idx}
        const = min(o.t_embed + o.t_head for o in opts.values())
    else:
        p2p = {i: min(t.p2p_pair[(i, i2)] for i2 in idx) for i in idx}
        if v == 1:
            extra = {i: min(p2p[i], opts[i].t_head) for i in idx}
            const = min(o.t_embed for o in opts.values())
        else:
            extra = p2p
            const = min(o.t_embed for o in opts.values()) + min(o.t_head for o in opts.values())
    classes, run_caps = slot_runs(t, idx, exact)
    keys: list[tuple[int, int]] = []
    memcap: list[int] = []
    for a, i in enumerate(idx):
        for c in range(len(classes)):
            if run_caps[c][a] >= v:
                keys.append((i, c))
                memcap.append(run_caps[c][a])
    lp = pywraplp.Solver.CreateSolver("SCIP" if integer else "GLOP")
    if lp is None:  # pragma: no cover - GLOP ships with every OR-Tools build
        return None
    inf = lp.infinity()
    svars = [(lp.IntVar if integer else lp.NumVar)(0.0, inf, f"s{k}") for k in range(len(keys))]
    yvars = [lp.NumVar(0.0, inf, f"y{k}") for k in range(len(keys))]
    rows = []
    for s, y in zip(svars, yvars, strict=True):
        row = lp.Constraint(-inf, 0.0)
        row.SetCoefficient(y, 1.0)
        row.SetCoefficient(s, 0.0)
        rows.append(row)
        if v > 1:  # every stage holds >= v blocks (one per chunk)
            low = lp.Constraint(-inf, 0.0)
            low.SetCoefficient(s, float(v))
            low.SetCoefficient(y, -1.0)
    for c, (lo, hi) in enumerate(classes):  # one stage per slot
        row = lp.Constraint(-inf, float(hi - lo))
        for k, (_, kc) in enumerate(keys):
            if kc == c:
                row.SetCoefficient(svars[k], 1.0)
    for pool, g in gk.items():  # d copies of the pool's TP groups
        row = lp.Constraint(-inf, float(g))
        for k, (i, _) in enumerate(keys):
            if opts[i].pool == pool:
                row.SetCoefficient(svars[k], float(opts[i].tp))
    blocks = lp.Constraint(float(L), float(L))
    for y in yvars:
        blocks.SetCoefficient(y, 1.0)
    if v > 1:  # interleaved: the depth is fixed, every slot is a stage
        count = lp.Constraint(float(depth), float(depth))
        for s in svars:
            count.SetCoefficient(s, 1.0)
    force_row = lp.Constraint(-inf, inf)
    objective = lp.Objective()
    for k, (i, _) in enumerate(keys):
        objective.SetCoefficient(yvars[k], float(opts[i].t_layer))
        objective.SetCoefficient(svars[k], float(extra[i]))
    # The first stage: its option (f), its blocks (Yf), the DP traffic it cannot hide and its
    # optimizer step, which the model adds to the step (DP_exposed, OPT_max).
    first = _first_stage_terms(t, idx)
    link_classes = [len(classes) - 1] if v > 1 else list(range(len(classes)))
    dp_var = lp.NumVar(0.0, inf, "dp")
    opt_var = lp.NumVar(0.0, inf, "opt")
    dp_row = lp.Constraint(-inf, 0.0)
    dp_row.SetCoefficient(dp_var, -1.0)
    opt_row = lp.Constraint(-inf, 0.0)
    opt_row.SetCoefficient(opt_var, -1.0)
    one_first = lp.Constraint(1.0, 1.0)
    frows: list[Any] = []
    lrows: list[tuple[Any, list[int]]] = []
    fvars: list[Any] = []
    fkeys: list[int] = []
    fmem: list[int] = []
    for i in idx:
        mem = (min(L, opts[i].blocks_that_fit(d, slot_in_flight(t, first.slot, depth, m))) // v) * v
        if mem < v:
            continue
        f = (lp.IntVar if integer else lp.NumVar)(0.0, 1.0, f"f{i}")
        yf = lp.NumVar(0.0, inf, f"yf{i}")
        row = lp.Constraint(-inf, 0.0)  # Yf - capF f <= 0, capF set per tau
        row.SetCoefficient(yf, 1.0)
        row.SetCoefficient(f, 0.0)
        low = lp.Constraint(-inf, 0.0)  # v f <= Yf
        low.SetCoefficient(f, float(v))
        low.SetCoefficient(yf, -1.0)
        stage = lp.Constraint(-inf, 0.0)  # the first stage is one of the stages counted in s
        stage.SetCoefficient(f, 1.0)
        # ... and the others hold the rest: sum Y - Yf <= sum cap s - capmin f, capmin the
        # least cap of a class the first stage may be in (set per tau).
        rest = lp.Constraint(-inf, 0.0)
        rest.SetCoefficient(yf, -1.0)
        among = lp.Constraint(-inf, 0.0)  # Yf <= sum Y
        among.SetCoefficient(yf, 1.0)
        linked = []
        for k, (ki, kc) in enumerate(keys):
            if ki == i and kc in link_classes:
                stage.SetCoefficient(svars[k], -1.0)
                rest.SetCoefficient(yvars[k], 1.0)
                among.SetCoefficient(yvars[k], -1.0)
                linked.append(k)
        lrows.append((rest, linked))
        alpha, beta, opt_l, opt_e = first.terms[i]
        dp_row.SetCoefficient(yf, alpha)
        dp_row.SetCoefficient(f, beta)
        opt_row.SetCoefficient(yf, opt_l)
        opt_row.SetCoefficient(f, opt_e)
        one_first.SetCoefficient(f, 1.0)
        frows.append(row)
        fvars.append(f)
        fkeys.append(i)
        fmem.append(mem)
    if not fkeys:
        return None
    if not integer:  # (SCIP: far slower with them, and the stage counts are what it adds)
        _slot_dp_rows(t, lp, keys, svars, yvars, classes, dp_var)
    objective.SetCoefficient(dp_var, float(v))
    objective.SetCoefficient(opt_var, float(v))
    objective.SetMinimization()
    most = {
        i: max((mc for (ki, _), mc in zip(keys, memcap, strict=True) if ki == i), default=0)
        for i in idx
    }
    points = {n * opts[i].t_layer + extra[i] for i in idx for n in range(v, most[i] + 1, v)}
    fextra = {i: opts[i].t_embed + extra[i] for i in fkeys}
    points |= {
        n * opts[i].t_layer + fextra[i]
        for i, mem in zip(fkeys, fmem, strict=True)
        for n in range(v, mem + 1, v)
    }
    return _StageLP(
        solver=lp,
        rows=rows,
        svars=svars,
        keys=keys,
        memcap=memcap,
        t_layer={i: o.t_layer for i, o in opts.items()},
        extra=extra,
        v=v,
        force_row=force_row,
        points=[float(x) for x in sorted(points)],
        const=float(const),
        floor_sum=float(L * min(o.t_layer for o in opts.values()) + const),
        frows=frows,
        fvars=fvars,
        fkeys=fkeys,
        fmem=fmem,
        fextra=fextra,
        lrows=lrows,
    )


def _slot_dp_rows(
    t: TrainTables,
    lp: Any,
    keys: list[tuple[int, int]],
    svars: list[Any],
    yvars: list[Any],
    classes: list[tuple[int, int]],
    dp_var: Any,
) -> None:
    """``v DP >= v dp_j - own_j - (backward of the slots above j)`` for every slot range of one
    slot, as the model has it for every slot (``TrainingModel._objective``).

    With one slot in range ``c``, its stage's blocks are ``Y[o, c]`` exactly.  Its DP traffic
    and own hiding are linear in them (:func:`_own_terms`); its embedding (if it is the first
    stage) and head (slot 0) add ``v dp - own`` terms, taken as ``min(0, .)`` where the stage
    may or may not hold them.  The backward above it is at most ``sum (b Y + b_embed s)`` over
    the ranges above (only one stage holds the embedding, and slots above the first are
    empty; under interleaving a stage's last backward op, chunk 0, is ``b Y / v`` and the
    embedding whole); each of those stages also hides its gradient hand-off, at most half the
    dearest hop price of its option.  Each row is thus implied by the model's, for every
    solution.
    """
    d = t.dp_degrees[0]
    v = t.virtual
    by_class: dict[int, list[int]] = {}
    for k, (_, c) in enumerate(keys):
        by_class.setdefault(c, []).append(k)
    # Each stage above also hides the one-way gradient hand-off to the stage after it, half
    # its 2 x p2p price, at most half the dearest the model charges (p2p_pair, or the far
    # price of a hop off a near run); v x that in the row.
    hop_hide: dict[int, float] = {}
    for i in {ki for ki, _ in keys}:
        most = 0
        for (a, _), price in t.p2p_pair.items():
            if a == i:
                most = max(most, price)
        if t.hops is not None:
            for (a, _), price in t.hops.far.items():
                if a == i:
                    most = max(most, price)
        hop_hide[i] = v * most / 2.0
    for c, (lo, hi) in enumerate(classes):
        if hi - lo != 1 or c not in by_class:
            continue
        row = lp.Constraint(-lp.infinity(), 0.0)
        row.SetCoefficient(dp_var, -float(v))
        for k in by_class[c]:
            o = t.options[keys[k][0]]
            own_l, own_e, own_h = _own_terms(t, o)
            embed = min(v * o.dp["embed"][d] - own_e, v * o.dp["embed_last"][d] - own_e, 0.0)
            fixed = v * o.dp["fixed"][d] + embed
            if lo == 0:
                fixed += v * o.dp["head"][d] - own_h
            row.SetCoefficient(yvars[k], float(v * o.dp["layer"][d] - own_l))
            row.SetCoefficient(svars[k], float(fixed))
        for c2 in range(c + 1, len(classes)):
            for k in by_class.get(c2, []):
                i = keys[k][0]
                o = t.options[i]
                row.SetCoefficient(yvars[k], -float(o.b_layer))
                row.SetCoefficient(svars[k], -float(v * o.b_embed) - hop_hide[i])


def _own_terms(t: TrainTables, o: TrainOption) -> tuple[float, float, float]:
    """v x what a stage's own compute hides of its DP traffic, per block, for the embedding
    and for the head (the model's ``_own_hide``): ``B`` for ZeRO-0/1 with overlap (under
    interleaving its last backward op, chunk 0: ``B / v`` per block, the embedding whole, no
    head; ``_paths_hide``), ``v m B`` for ZeRO-2, ``v m (F + B)`` for ZeRO-3, nothing without
    overlap."""
    d = t.dp_degrees[0]
    v, m = t.virtual, t.m(d)
    if not t.overlap:
        return 0.0, 0.0, 0.0
    if t.zero_stage <= 1:
        return float(o.b_layer), float(v * o.b_embed), float(o.b_head if v == 1 else 0)
    if t.zero_stage == 2:
        return float(v * m * o.b_layer), float(v * m * o.b_embed), float(v * m * o.b_head)
    return float(v * m * o.t_layer), float(v * m * o.t_embed), float(v * m * o.t_head)


@dataclass
class _FirstStage:
    slot: int  # the slot whose memory caps the first stage (the loosest one it may be)
    terms: dict[int, tuple[float, float, float, float]]  # option -> alpha, beta, opt_l, opt_e


def _first_stage_terms(t: TrainTables, idx: list[int]) -> _FirstStage:
    """What the first stage adds to the model's ``DP_exposed`` and ``OPT_max``, per option.

    The first stage (highest active slot) hides its DP traffic behind nothing but its own
    compute (the model's DP row with no active slot above it), so with ``n`` blocks
    ``DP >= alpha n + beta``: ``dp`` per block less what it hides per block (``B / v`` for
    ZeRO-0/1 with overlap, ``m B`` for ZeRO-2, ``m (F + B)`` for ZeRO-3, nothing without
    overlap), and the embedding's (and the fixed) part likewise (ZeRO-0/1: the embedding's
    backward whole, it is on chunk 0, the last backward op).
    ``OPT >= opt_l n + opt_e``.  Under plain 1F1B the first stage may also be the only one
    (then it holds the head): the smaller constant of the two cases is taken.  Its slot is
    ``depth - 1`` when interleaved (the depth is fixed), else 0 (the loosest).
    """
    d = t.dp_degrees[0]
    m, v = t.m(d), t.virtual

    def hidden(b: int, total: int, chunks: int = v) -> float:
        if not t.overlap:
            return 0.0
        if t.zero_stage <= 1:
            return b / chunks
        if t.zero_stage == 2:
            return float(m * b)
        return float(m * total)

    terms = {}
    for i in idx:
        o = t.options[i]
        alpha = o.dp["layer"][d] - hidden(o.b_layer, o.t_layer)
        beta = o.dp["embed"][d] + o.dp["fixed"][d] - hidden(o.b_embed, o.t_embed, 1)
        opt_e = float(o.opt["embed"][d])
        if v == 1:  # a lone stage: embedding on the last slot, with the head
            alone = (
                o.dp["head"][d]
                + o.dp["embed_last"][d]
                + o.dp["fixed"][d]
                - hidden(o.b_embed + o.b_head, o.t_embed + o.t_head)
            )
            beta = min(beta, alone)
            opt_e = min(opt_e, float(o.opt["head"][d] + o.opt["embed_last"][d]))
        terms[i] = (float(alpha), float(beta), float(o.opt["layer"][d]), opt_e)
    return _FirstStage(slot=t.max_stages - 1 if v > 1 else 0, terms=terms)
