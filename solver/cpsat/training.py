"""CP-SAT model of one training configuration family.

The outer loop (:mod:`solver.planner`) fixes the *global* knobs that multiply every stage's cost
non-linearly: micro-batch size, recompute, sequence parallelism, ZeRO stage and schedule.  For
one such family this model chooses, as one-hot Booleans over precomputed options:

* the DP degree ``d`` (one-hot over the divisors of ``global_batch / micro_batch``),
* the number of pipeline stages (``active`` slots),
* each stage's option ``o = (pool, tp)`` and its number of layers (an integer, with the product
  ``layers x option`` linearised as ``y[j, o]``).

Stage slots are indexed **from the end of the pipeline**: slot ``j = 0`` is the last stage (LM
head), slot ``j`` is stage ``p - 1 - j``.  With this indexing the 1F1B in-flight micro-batch
count ``min(m, p - s) = min(m, j + 1)`` is a constant of the slot, so activation memory stays
linear; the first stage (embedding) is the highest active slot, ``first[j] = active[j] -
active[j + 1]``.

Step time is the closed form the evaluator's simulation agrees with on uniform stages:
``(m - 1) * T_max + sum_j T_j + DP_max``, enforced for the selected ``d`` only (``m`` depends on
``d``), with ``T_max >= T_j`` and ``DP_max >= DP_j`` as bounding inequalities.  All times are
integers in microseconds and all memory in kilobytes, rounded *up* so a plan the model accepts
is never over capacity in the evaluator.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from ..engines import EngineRules

__all__ = ["HopPrices", "HopRuns", "TrainOption", "TrainTables", "TrainingChoice", "TrainingModel", "hop_runs"]

log = logging.getLogger(__name__)

#: Wall-clock safety cap (s) of one deterministic solve, far above any deterministic budget:
#: reaching it would break reproducibility, so it only guards against a runaway search.
DETERMINISTIC_WALL_CAP_S = 3600.0

#: Linear expressions built in one call from (variables, coefficients) lists: the model's rows
#: have hundreds of terms (a 126-slot model has ~60k), and chaining ``+`` in Python would build
#: one intermediate expression per term.  The constraint a row becomes is the same either way
#: (CP-SAT stores it with merged terms in variable order).
_wsum = cp_model.LinearExpr.weighted_sum
_lsum = cp_model.LinearExpr.sum

US = 1e-6  # default seconds per time unit (tables may choose a finer unit: TrainTables.unit_s)
KB = 1e3  # bytes per memory unit


@dataclass(frozen=True)
class TrainOption:
    """Coefficients of one per-stage option ``(pool, tp)`` for a fixed global family.

    Times are per micro-batch, in microseconds; memory per GPU in KB.  Dicts keyed by a part
    (``layer`` per block, ``embed``, ``head``, ``embed_last`` = the embedding on a stage that is
    also the last, ``fixed``) then by the DP degree ``d`` (ZeRO sharding and DP span depend on it).
    """

    pool: str
    tp: int
    t_layer: int  # forward + backward per block
    t_embed: int
    t_head: int
    b_layer: int  # backward only (what DP traffic can hide behind)
    b_embed: int
    b_head: int
    act_layer: int  # stored activations per block per in-flight micro-batch
    act_embed: int  # extra activations on the first stage per in-flight micro-batch
    act_head: int  # extra activations on the last stage (logits etc.), once
    overhead: int  # framework overhead per GPU
    capacity: int  # GPU memory
    transient: dict[int, int]  # by d: one block rebuilt for backward + ZeRO-3's gathered block
    static: dict[str, dict[int, int]]  # weights + grads + optimizer
    dp: dict[str, dict[int, int]]  # DP gradient/weight traffic per step
    opt: dict[str, dict[int, int]]  # optimizer step
    allowed: dict[int, bool]  # d -> the stage block places exactly
    price: int = 0  # tp x cost_per_gpu_hour in milli-dollars per hour (min_cost)

    def free_kb(self, d: int) -> int:
        """Memory a GPU has for blocks after the framework overhead and the stage's transient."""
        return self.capacity - self.overhead - self.transient[d]

    def blocks_that_fit(self, d: int, in_flight: float) -> int:
        """Most blocks one stage of this option holds by memory alone, with ``in_flight``
        micro-batches of activations (embedding and head only lower it further)."""
        per_block = self.static["layer"][d] + math.ceil(self.act_layer * in_flight)
        return max(0, self.free_kb(d) // max(1, per_block))


@dataclass(frozen=True)
class HopPrices:
    """The range of each pipeline hand-off's price, per ordered pair of options (sender,
    receiver), built by :func:`~solver.cpsat.tables.hop_prices` (which says why each holds).

    ``far``: the least price when the two stages cannot share an NVLink domain; ``near``:
    pairs whose price may be lower, ``(price, largest DP degree for which placement can put
    every replica's hop inside one domain)``; ``worst``: the dearest price placement can give.
    """

    far: dict[tuple[int, int], int]
    near: dict[tuple[int, int], tuple[int, int]]
    worst: dict[tuple[int, int], int]
    domain: dict[str, int] = field(default_factory=dict)  # pool -> GPUs of one NVLink domain

    def optimistic(self, d: int) -> dict[tuple[int, int], int]:
        """Prices <= the evaluator's for every plan with DP degree ``d``."""
        out = dict(self.far)
        for pair, (price, d_max) in self.near.items():
            if d <= d_max:
                out[pair] = min(out[pair], price)
        return out

    def pessimistic(self) -> dict[tuple[int, int], int]:
        """Prices >= the evaluator's for every plan."""
        return dict(self.worst)

    def restricted(self, keep: list[int]) -> HopPrices:
        """The prices of the options ``keep`` only, re-indexed (see ``restrict_options``)."""
        new = {i: a for a, i in enumerate(keep)}

        def sub(table: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
            return {(new[i], new[j]): v for (i, j), v in table.items() if i in new and j in new}

        return HopPrices(
            far=sub(self.far), near=sub(self.near), worst=sub(self.worst), domain=dict(self.domain)
        )


@dataclass(frozen=True)
class HopRuns:
    """The run condition on near-priced hand-offs of a single-``d`` table (:func:`hop_runs`).

    ``excess[(o, o2)] > 0``: what the hop from option ``o`` to ``o2`` costs on top of its
    ``p2p_pair`` (near) price unless it is part of a run of consecutive hops, all near, whose
    stages satisfy :func:`~solver.cpsat.tables.run_fits`: ``d * sum(tp) <= domain[pool]``.
    """

    d: int
    excess: dict[tuple[int, int], int]
    domain: dict[str, int]


def hop_runs(t: TrainTables) -> HopRuns | None:
    """The run condition of ``t``'s hand-offs, or None when it has none to add.

    A pair whose ``p2p_pair`` price is below ``hops.far`` is priced near (optimistically, by
    :func:`~solver.cpsat.tables.for_dp` for the table's one ``d``): placement gives it that
    price only if every replica's hop stays inside one NVLink domain, and a run of such hops
    needs :func:`~solver.cpsat.tables.run_fits`.  Tables with several ``d``, without hop
    ranges, or priced far or pessimistically everywhere have nothing to add (every pair at
    ``far`` or above).
    """
    if t.hops is None or len(t.dp_degrees) != 1 or not t.hops.domain:
        return None
    excess = {
        pair: far - t.p2p_pair[pair]
        for pair, far in t.hops.far.items()
        if pair in t.p2p_pair and far > t.p2p_pair[pair]
    }
    # A near pair in a pool of unknown domain size (not built by hop_prices): leave the
    # condition out (weaker, still valid) rather than guess it.
    if not excess or any(t.options[o].pool not in t.hops.domain for o, _ in excess):
        return None
    return HopRuns(d=t.dp_degrees[0], excess=excess, domain=dict(t.hops.domain))


@dataclass(frozen=True)
class TrainTables:
    """Everything the model needs for one family; built by :mod:`solver.cpsat.tables`."""

    num_layers: int
    micro_batch: int
    global_batch: int
    options: list[TrainOption]
    dp_degrees: list[int]  # candidate d (each divides global_batch / micro_batch)
    pool_gpus: dict[str, int]
    p2p_pair: dict[tuple[int, int], int]  # (sender, receiver option) -> 2 x p2p per micro-batch
    max_stages: int
    unit_s: float = US  # seconds per integer time unit
    objective: str = "max_throughput"  # or "min_cost": minimise (d x price) x step time
    virtual: int = 1  # interleaved 1F1B with this many chunks per stage (then max_stages is p)
    zero_stage: int = 1  # what a stage's DP traffic hides behind (see TrainingModel._objective)
    overlap: bool = True  # workload.overlap_grad_reduce
    engine: EngineRules | None = None  # a target engine's limits become constraints
    heads: tuple[int, int] = (0, 0)  # (attention heads, kv heads), for the engine's TP rules
    hops: HopPrices | None = None  # the range of every hand-off's price (p2p_pair lies in it)

    def m(self, d: int) -> int:
        return self.global_batch // (d * self.micro_batch)


@dataclass(frozen=True)
class TrainingChoice:
    """The solution of one family: stage options (in pipeline order), layers, DP degree."""

    d: int
    stages: list[tuple[TrainOption, int]]  # (option, layers), stage 0 first
    step_us: float  # step time in time units
    objective: float  # the model's objective (step time, or rate x step time), in time units
    virtual: int = 1  # chunks per stage (interleaved 1F1B)


class TrainingModel:
    """Builds and solves the CP-SAT model for one :class:`TrainTables`."""

    def __init__(self, tables: TrainTables, upper_bound_us: float | None = None) -> None:
        self.t = tables
        self.m = cp_model.CpModel()
        self._build(upper_bound_us)

    # -- construction ---------------------------------------------------------------------
    def _build(self, upper_bound_us: float | None) -> None:
        t, m = self.t, self.m
        L = t.num_layers
        self.J = t.max_stages  # what in_flight() reads while the useful slots are counted
        self.J = J = self._useful_slots()
        opts = range(len(t.options))
        self._names = [f"{opt.pool}/tp{opt.tp}" for opt in t.options]
        self._pair_cache: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        names = self._names
        horizon = self._horizon()
        self.dsel = {d: m.new_bool_var(f"dp[{d}]") for d in t.dp_degrees}
        m.add_exactly_one(self.dsel.values())
        self.active = [m.new_bool_var(f"active[s{j}]") for j in range(J)]
        m.add(self.active[0] == 1)
        if t.virtual > 1:  # interleaved: the depth p = J is fixed outside (memory depends on it)
            for a in self.active:
                m.add(a == 1)
        for j in range(J - 1):
            m.add_implication(self.active[j + 1], self.active[j])
        self.first = [m.new_bool_var(f"first[s{j}]") for j in range(J)]
        for j in range(J):
            nxt = self.active[j + 1] if j + 1 < J else 0
            m.add(self.first[j] == self.active[j] - nxt)
        self.x = [[m.new_bool_var(f"opt[s{j}]={names[o]}") for o in opts] for j in range(J)]
        self.n = [m.new_int_var(0, L, f"layers[s{j}]") for j in range(J)]
        self.y = [[m.new_int_var(0, L, f"layers[s{j},{names[o]}]") for o in opts] for j in range(J)]
        # z[j,o] = first[j] and x[j,o]: the embedding's cost on the option that holds it.
        self.z = [[m.new_bool_var(f"embed[s{j},{names[o]}]") for o in opts] for j in range(J)]
        self._constraints()
        self._objective(horizon, upper_bound_us)

    def _useful_slots(self) -> int:
        """Stage slots that can be active, at most ``max_stages`` (plain 1F1B; interleaved
        pipelines have their depth fixed outside).

        Active slots are a prefix ``0..p-1``; an active slot j runs an option o that is allowed
        for the chosen d and holds at least one block there (``y >= x`` and ``y <= M_jo x``
        need ``M_jo >= 1``, :meth:`_most_blocks`), so it takes at least the smallest TP degree
        among those, and all of them together at most the GPUs of one replica, ``sum_k
        gpus_k // d`` (each pool's ``_gpu_counts`` row, summed).  Slots past the deepest such
        prefix are inactive in every solution: leaving them out changes no solution, only the
        model's size (a 405B model on 16,384 GPUs: 19 slots instead of 126).
        """
        t = self.t
        J = t.max_stages
        if t.virtual > 1:
            return J
        cheapest: list[dict[int, int]] = []  # per slot: d -> fewest GPUs an active slot takes
        for j in range(J):
            holds = [o for o in range(len(t.options)) if self._most_blocks(j, o) >= 1]
            row: dict[int, int] = {}
            for d in t.dp_degrees:
                tps = [t.options[o].tp for o in holds if t.options[o].allowed[d]]
                if tps:
                    row[d] = min(tps)
            if not row:
                break
            cheapest.append(row)
        deepest = 0
        for d in t.dp_degrees:
            budget = sum(g // d for g in t.pool_gpus.values())
            p = used = 0
            for row in cheapest:
                if d not in row or used + row[d] > budget:
                    break
                used += row[d]
                p += 1
            deepest = max(deepest, p)
        return max(1, min(J, deepest))

    def _horizon(self) -> int:
        t = self.t
        L = t.num_layers
        hop = max(t.p2p_pair.values(), default=0)
        if t.hops is not None:  # a hop off a near run costs its far price (_far_unless_near)
            hop = max(hop, max(t.hops.far.values(), default=0))
        worst_stage = max(o.t_layer * L + o.t_embed + o.t_head + hop for o in t.options)
        m_max = max(t.m(d) for d in t.dp_degrees)
        extra = max(
            sum(o.dp[k][d] * (L if k == "layer" else 1) for k in o.dp)
            + sum(o.opt[k][d] * (L if k == "layer" else 1) for k in o.opt)
            for o in t.options
            for d in t.dp_degrees
        )
        return int((m_max + t.max_stages) * worst_stage + extra + 1)

    def _constraints(self) -> None:
        """Table of contents: one method per rule."""
        self._one_option_per_active_stage()
        self._layers()
        self._embedding_indicator()
        self._placeable_blocks()
        self._gpu_counts()
        self._memory()
        self._engine()
        self._symmetry()

    def _one_option_per_active_stage(self) -> None:
        """An active stage picks exactly one (pool, tp) option; an inactive one none."""
        for j in range(self.J):
            self.m.add(_lsum(self.x[j]) == self.active[j])

    def _layers(self) -> None:
        """Every block is placed once; active stages hold >= 1 block; y linearises n x option."""
        t, m = self.t, self.m
        L = t.num_layers
        m.add(_lsum(self.n) == L)
        for j in range(self.J):
            m.add(self.n[j] >= self.active[j])
            if t.virtual > 1:  # v equal chunks per stage (Megatron's interleaved layout)
                chunk = m.new_int_var(1, L // t.virtual, f"chunk_layers[s{j}]")
                m.add(self.n[j] == t.virtual * chunk)
            y, x = self.y[j], self.x[j]
            m.add(_lsum(y) == self.n[j])
            for o in range(len(t.options)):
                m.add(y[o] <= self._most_blocks(j, o) * x[o])
                m.add(y[o] >= x[o])

    def _most_blocks(self, j: int, o: int) -> int:
        """Most blocks option ``o`` can hold in slot ``j`` by memory alone (any candidate d).

        A tight big-M for ``y <= M x``: static state plus ``min(m, j + 1)`` in-flight micro-batches
        of activations per block, against capacity less overhead and the transient (embedding
        and head only lower it further).  This is what lets the LP relaxation see that a TP=1
        stage of a 405B model holds two blocks, not all of them.
        """
        t = self.t
        opt = t.options[o]
        most = 0
        for d in t.dp_degrees:
            most = max(most, opt.blocks_that_fit(d, self.in_flight(j, t.m(d))))
        return int(min(t.num_layers, most))

    def _embedding_indicator(self) -> None:
        """z[j,o] is exactly first[j] AND x[j,o] (the first stage holds the embedding)."""
        m = self.m
        for j in range(self.J):
            first, not_first = self.first[j], self.first[j].Not()
            for z, x in zip(self.z[j], self.x[j], strict=True):
                m.add_implication(z, first)
                m.add_implication(z, x)
                m.add_bool_or([z, not_first, x.Not()])

    def _placeable_blocks(self) -> None:
        """An option whose d-replica block would straddle nodes is unavailable for that d."""
        t, m = self.t, self.m
        for d, sel in self.dsel.items():
            for o, opt in enumerate(t.options):
                if not opt.allowed[d]:
                    for j in range(self.J):
                        m.add(self.x[j][o] == 0).only_enforce_if(sel)

    def _gpu_counts(self) -> None:
        """For the chosen d, each pool's GPUs cover d copies of its stages' TP groups."""
        t, m = self.t, self.m
        for pool, gpus in t.pool_gpus.items():
            idx = [o for o, opt in enumerate(t.options) if opt.pool == pool]
            if not idx:
                continue
            used = _wsum(
                [self.x[j][o] for j in range(self.J) for o in idx],
                [t.options[o].tp for _ in range(self.J) for o in idx],
            )
            for d, sel in self.dsel.items():
                m.add(used <= gpus // d).only_enforce_if(sel)

    def _part(self, j: int, table: str, d: int) -> tuple[list[Any], list[int]]:
        """Linear terms (variables, coefficients) of a per-stage quantity: per block x y,
        embedding x z, head on slot 0."""
        vs: list[Any] = []
        cs: list[int] = []
        y, x, z = self.y[j], self.x[j], self.z[j]
        for o, opt in enumerate(self.t.options):
            tab: dict[str, dict[int, int]] = getattr(opt, table)
            vs.append(y[o])
            cs.append(tab["layer"][d])
            if j == 0:
                vs += (x[o], z[o])
                cs += (tab["head"][d], tab["embed_last"][d])
            else:
                vs.append(z[o])
                cs.append(tab["embed"][d])
        return vs, cs

    def _memory(self) -> None:
        """Per stage, weights + grads + optimizer + in-flight activations + overhead <= capacity.

        In-flight micro-batches of stage slot j under 1F1B are min(m, j + 1) (slot 0 = last).
        """
        t, m = self.t, self.m
        for d, sel in self.dsel.items():
            mm = t.m(d)
            for j in range(self.J):
                k = self.in_flight(j, mm)
                vs, cs = self._part(j, "static", d)
                y, x, z = self.y[j], self.x[j], self.z[j]
                for o, opt in enumerate(t.options):
                    fixed = opt.overhead + opt.transient[d] - opt.capacity
                    fixed += opt.act_head if j == 0 else 0
                    vs += (y[o], x[o], z[o])
                    cs += (math.ceil(opt.act_layer * k), fixed, math.ceil(opt.act_embed * k))
                m.add(_wsum(vs, cs) <= 0).only_enforce_if(sel)

    def _own_hide(self, j: int, d: int) -> tuple[list[Any], list[int]]:
        """v x the compute slot j's own DP traffic hides behind (the evaluator's
        :func:`~solver.costmodel.dp_hideable_time`), as (variables, coefficients): nothing
        without overlap; ZeRO-0/1 its last backward op (one chunk, B / v); ZeRO-2 every
        backward (m B); ZeRO-3 every forward and backward (m (F + B))."""
        t = self.t
        v, mm = t.virtual, t.m(d)
        if not t.overlap:
            return [], []
        if t.zero_stage <= 1:
            return [self.B[j]], [1]
        if t.zero_stage == 2:
            return [self.B[j]], [v * mm]
        vs: list[Any] = [self.B[j]]
        cs: list[int] = [1]
        for o, opt in enumerate(t.options):
            vs += (self.y[j][o], self.z[j][o])
            cs += (opt.t_layer - opt.b_layer, opt.t_embed - opt.b_embed)
            if j == 0:
                vs.append(self.x[j][o])
                cs.append(opt.t_head - opt.b_head)
        return vs, [v * mm * c for c in cs]

    def in_flight(self, j: int, m: int) -> float:
        """Micro-batches of activations slot ``j`` holds at its peak, in whole-stage units.

        1F1B: ``min(m, j + 1)``.  Interleaved with v chunks and p = J stages: Megatron warms up
        ``2 j + (v - 1) p`` chunk-micro-batches, + 1 in steady state, capped at ``m v``; each
        chunk is 1/v of the stage (the evaluator's :func:`~solver.costmodel.in_flight_micro_batches`).
        """
        v = self.t.virtual
        if v == 1:
            return float(min(m, j + 1))
        return min(m * v, 2 * j + (v - 1) * self.J + 1) / v

    def _engine(self) -> None:
        """A named target engine's limits (solver.engines): one TP degree, one pool, even splits.

        ``uniform_tp``/``single_pool``: one-hot over TP degrees / pools that every active stage's
        option must match.  ``layer_split``: ``even`` -- every active stage holds the same block
        count; ``even_except_ends`` -- every middle stage does (Megatron-Core's first/last stage
        flags).  TP degrees the engine's head rules refuse are forbidden outright.
        """
        rules, t, m = self.t.engine, self.t, self.m
        if rules is None:
            return
        heads, kv = t.heads
        for o, opt in enumerate(t.options):
            bad = bool(heads) and heads % opt.tp != 0
            if rules.kv_heads == "divisible":
                bad = bad or (bool(kv) and kv % opt.tp != 0)
            elif bool(kv) and kv % opt.tp and opt.tp % kv:
                bad = True
            if bad:
                for j in range(self.J):
                    m.add(self.x[j][o] == 0)
        for attr, flag in (("tp", rules.uniform_tp), ("pool", rules.single_pool)):
            if not flag:
                continue
            values = sorted({getattr(opt, attr) for opt in t.options})
            pick = {v: m.new_bool_var(f"engine_{attr}[{v}]") for v in values}
            m.add_exactly_one(pick.values())
            for j in range(self.J):
                for o, opt in enumerate(t.options):
                    m.add_implication(self.x[j][o], pick[getattr(opt, attr)])
        if rules.layer_split == "any":
            return
        mid = m.new_int_var(1, t.num_layers, "engine_layers_per_stage")
        for j in range(self.J):
            if rules.layer_split == "even":
                m.add(self.n[j] == mid).only_enforce_if(self.active[j])
            elif j >= 1:  # not the last stage, and not the first (highest active slot)
                m.add(self.n[j] == mid).only_enforce_if([self.active[j], self.first[j].Not()])

    def _symmetry(self) -> None:
        """Nothing to break: slots differ (in-flight counts), nodes never enter the model.

        Identical nodes are interchangeable and placement happens after solving, so node
        symmetry never enters the search.
        """

    def _objective(self, horizon: int, upper_bound_us: float | None) -> None:
        """Minimise (m - 1) * T_max + sum T_j + DP_exposed + OPT_max for the chosen d.

        T_j: forward + backward of slot j's blocks (+ embedding / head) + 2 x p2p to the next
        stage.  DP_exposed >= dp_j - own_j - (backward of the slots above j for one
        micro-batch, and under plain 1F1B the one-way gradient hand-offs between them,
        ``H / 2`` each): in 1F1B a stage's last backward ends that much before the pipeline's
        end (the evaluator's simulation: stage s - 1's last backward starts once stage s's
        gradient has crossed their boundary), so its DP traffic hides behind it.  This is
        the evaluator's exposure whenever the cool-down is a chain (each earlier stage free
        when the gradient reaches it, as on the closed form's stages).
        """
        t, m = self.t, self.m
        pools = sorted(t.pool_gpus)
        self._near_runs()
        self.T = [m.new_int_var(0, horizon, f"time[s{j}]") for j in range(self.J)]
        self.B = [m.new_int_var(0, horizon, f"bwd[s{j}]") for j in range(self.J)]
        # H[j]: slot j's hand-off to slot j - 1 (2 x p2p, as T[j] charges it), j >= 1.
        self.H: list[Any] = [0] * self.J
        for j in range(self.J):
            tv: list[Any] = []
            tc: list[int] = []
            bv: list[Any] = []
            bc: list[int] = []
            hv: list[Any] = []
            hc: list[int] = []
            y, x, z = self.y[j], self.x[j], self.z[j]
            for o, opt in enumerate(t.options):
                tv += (y[o], z[o])
                tc += (opt.t_layer, opt.t_embed)
                bv += (y[o], z[o])
                bc += (opt.b_layer, opt.b_embed)
                if j == 0:
                    tv.append(x[o])
                    tc.append(opt.t_head)
                    bv.append(x[o])
                    bc.append(opt.b_head)
                    if t.virtual > 1 and self.J > 1:
                        # Interleaved: the last stage passes each chunk on to the first.
                        self._hand_off(j, o, self.J - 1, tv, tc)
                if j >= 1:
                    self._hand_off(j, o, j - 1, hv, hc)
                    self._far_unless_near(j, o, hv, hc)
            if hv:
                self.H[j] = m.new_int_var(0, horizon, f"hop[s{j}]")
                m.add(self.H[j] == _wsum(hv, hc))
                tv.append(self.H[j])
                tc.append(1)
            m.add(self.T[j] >= _wsum(tv, tc))
            m.add(self.B[j] == _wsum(bv, bc))
        self.Tmax = m.new_int_var(0, horizon, "time_max")
        for j in range(self.J):
            m.add(self.Tmax >= self.T[j])
        self._work_cuts(pools)
        self.DP = m.new_int_var(0, horizon, "dp_exposed")
        self.OPT = m.new_int_var(0, horizon, "optimizer_max")
        for d, sel in self.dsel.items():
            for j in range(self.J):
                dv, dc = self._part(j, "dp", d)
                dv += self.x[j]
                dc += [opt.dp["fixed"][d] for opt in t.options]
                # Interleaved: each stage's last backward op is one chunk (1/v of B), and the
                # stages before it then run one chunk each: the hideable time is sum B / v.
                v = t.virtual
                hv, hc = self._own_hide(j, d)
                later = self.B[j + 1 :]
                if v == 1:
                    # Plain 1F1B: the stages before slot j's run their last backwards after
                    # it, each once the gradient has crossed the hand-off to it (one-way p2p,
                    # H / 2), so 2 DP >= 2 dp - 2 own - sum_{i > j} (2 B_i + H_i).
                    hops = [h for h in self.H[j + 1 :] if not isinstance(h, int)]
                    hide = _wsum(
                        later + hops + hv, [2] * len(later) + [1] * len(hops) + [2 * c for c in hc]
                    )
                    m.add(2 * self.DP >= 2 * _wsum(dv, dc) - hide).only_enforce_if(sel)
                else:
                    hide = _wsum(later + hv, [1] * len(later) + hc)
                    m.add(v * self.DP >= v * _wsum(dv, dc) - hide).only_enforce_if(sel)
                m.add(self.OPT >= _wsum(*self._part(j, "opt", d))).only_enforce_if(sel)
        # Closed form m T_max + (sum T - T_max) / v, times v to stay integral: v is 1 for
        # plain 1F1B; the model's objective is then v x step time (divided out on extraction).
        v = t.virtual
        self.step = m.new_int_var(0, v * horizon, "step_time_x_v")
        Tsum = _lsum(self.T)
        for d, sel in self.dsel.items():
            m.add(
                self.step >= (v * t.m(d) - 1) * self.Tmax + Tsum + v * (self.DP + self.OPT)
            ).only_enforce_if(sel)
        if t.objective == "min_cost":
            # The one product in the model, only for min_cost: $ per step = rate x step time.
            # d is fixed outside (one candidate per model), so the rate is linear in x.
            d = t.dp_degrees[0]
            rate_ub = d * sum(max(o.price for o in t.options) for _ in range(self.J))
            self.rate = m.new_int_var(0, rate_ub, "rate_mUSD_per_h")
            m.add(self.rate == d * _wsum(
                [self.x[j][o] for j in range(self.J) for o in range(len(t.options))],
                [opt.price for _ in range(self.J) for opt in t.options],
            ))
            self.cost = m.new_int_var(0, rate_ub * v * horizon, "cost_per_step")
            m.add_multiplication_equality(self.cost, [self.rate, self.step])
            if upper_bound_us is not None:  # strictly better than the incumbent
                m.add(self.cost <= math.ceil(v * upper_bound_us) - 1)
            m.minimize(self.cost)
        else:
            if upper_bound_us is not None:  # strictly better than the incumbent
                m.add(self.step <= math.ceil(v * upper_bound_us) - 1)
            m.minimize(self.step)

    def _hand_off(self, j: int, o: int, k: int, vs: list[Any], cs: list[int]) -> None:
        """Append to (vs, cs) the terms of slot j's activation hand-off to slot k when j uses
        option o.

        The cheapest pair price is charged on ``x[j, o]``; each dearer receiver option o2 adds
        its excess through ``w >= x[j, o] + x[k, o2] - 1`` (minimisation keeps w at its lower
        bound), so the price is exactly the evaluator's for the chosen pair.
        """
        m = self.m
        base, dearer = self._pair_prices(o)
        xo = self.x[j][o]
        vs.append(xo)
        cs.append(base)
        for o2, excess in dearer:
            w = m.new_bool_var(f"p2p[s{j}:{self._names[o]}->s{k}:{self._names[o2]}]")
            m.add(w >= xo + self.x[k][o2] - 1)
            vs.append(w)
            cs.append(excess)

    def _near_runs(self) -> None:
        """Runs of near-priced hand-offs (:func:`hop_runs`): ``near[j]`` says the hop from slot
        ``j`` to slot ``j - 1`` is part of a run whose every hop stays inside one NVLink domain
        for every replica, and such a run's stages must satisfy
        :func:`~solver.cpsat.tables.run_fits` (``d * sum(tp) <= D``, proven there).

        ``G[j]`` is at least ``d x`` the TP of the run's stages from its first stage down to
        slot ``j``: ``G[j] >= d tp_j`` always, ``G[j-1] >= d tp_{j-1} + G[j]`` and
        ``G[j-1] <= D`` when ``near[j]`` (big-M ``D`` on both, vacuous otherwise since ``G <=
        D``).  Only options that appear in a near-priced pair count towards ``tp`` and ``D``
        (each has ``d tp < D``); a near run over any other option buys nothing (its pairs cost
        ``far`` anyway, :meth:`_far_unless_near`), so leaving it out only relaxes the rule.
        The hop a placement actually keeps inside a domain is a run the rule admits, so the
        model with ``near`` set from that placement is a solution priced <= the evaluator's
        closed form: the optimum stays a valid bound.
        """
        self.runs = runs = hop_runs(self.t)
        self.near: dict[int, Any] = {}
        if runs is None or self.J < 2:
            self.runs = None
            return
        t, m = self.t, self.m
        d = runs.d
        elig = sorted({o for pair in runs.excess for o in pair})
        top = max(runs.domain.values())
        self.near = {j: m.new_bool_var(f"near[s{j}->s{j - 1}]") for j in range(1, self.J)}
        G = [m.new_int_var(0, top, f"run_gpus[s{j}]") for j in range(self.J)]
        for j in range(self.J):
            xs = [self.x[j][o] for o in elig]
            m.add(G[j] >= _wsum(xs, [d * t.options[o].tp for o in elig]))
        for j, near in self.near.items():
            xs = [self.x[j - 1][o] for o in elig]
            tpd = _wsum(xs, [d * t.options[o].tp for o in elig])
            cap = _wsum(xs, [runs.domain[t.options[o].pool] for o in elig])
            m.add(G[j - 1] >= tpd + G[j] - top + top * near)
            m.add(G[j - 1] <= cap + top - top * near)

    def _far_unless_near(self, j: int, o: int, vs: list[Any], cs: list[int]) -> None:
        """Append to (vs, cs) what slot j's hand-off to slot j - 1 costs above its near price
        when it is not part of a near run: ``excess[(o, o2)]`` on ``u >= x[j, o] + x[j-1, o2]
        - 1 - near[j]`` (minimisation keeps u at its lower bound)."""
        runs = self.runs
        if runs is None:
            return
        m, near = self.m, self.near[j]
        xo = self.x[j][o]
        for o2 in range(len(self.t.options)):
            e = runs.excess.get((o, o2), 0)
            if e <= 0:
                continue
            u = m.new_bool_var(f"far[s{j}:{self._names[o]}->s{j - 1}:{self._names[o2]}]")
            m.add(u >= xo + self.x[j - 1][o2] - 1 - near)
            vs.append(u)
            cs.append(e)

    def _pair_prices(self, o: int) -> tuple[int, list[tuple[int, int]]]:
        """Sender option o's cheapest hand-off price and the (receiver, excess) of dearer ones."""
        hit = self._pair_cache.get(o)
        if hit is None:
            prices = [self.t.p2p_pair[(o, o2)] for o2 in range(len(self.t.options))]
            base = min(prices)
            hit = (base, [(o2, p - base) for o2, p in enumerate(prices) if p > base])
            self._pair_cache[o] = hit
        return hit

    def _work_cuts(self, pools: list[str]) -> None:
        """Redundant cuts: each pool's GPUs per replica, busy for at most T_max each.

        Every stage ``j`` on pool ``k`` has ``T_j <= T_max`` and the stages on ``k`` use at most
        ``gpus_k // d`` GPUs per replica, so ``sum_j tp_j T_j <= (gpus_k // d) T_max``; with
        ``T_j >= t_layer n_j`` this gives a linear cut the LP relaxation lacks (it otherwise
        spreads blocks over fractional stages and sees no trade-off between TP and depth).
        """
        t, m = self.t, self.m
        for k in pools:
            idx = [o for o, opt in enumerate(t.options) if opt.pool == k]
            ys = [self.y[j][o] for j in range(self.J) for o in idx]
            work = [t.options[o].tp * t.options[o].t_layer for _ in range(self.J) for o in idx]
            for d, sel in self.dsel.items():
                # work - (gpus // d) T_max <= 0
                cut = _wsum([*ys, self.Tmax], [*work, -(t.pool_gpus[k] // d)])
                m.add(cut <= 0).only_enforce_if(sel)

    # -- solving ------------------------------------------------------------------------------
    def hint(self, choice: TrainingChoice) -> None:
        """Warm-start from a known feasible choice (e.g. the rubric baseline)."""
        t, m = self.t, self.m
        for d, sel in self.dsel.items():
            m.add_hint(sel, d == choice.d)
        p = len(choice.stages)
        for j in range(self.J):
            s = p - 1 - j
            m.add_hint(self.active[j], s >= 0)
            for o, opt in enumerate(t.options):
                use = s >= 0 and choice.stages[s][0] is opt
                m.add_hint(self.x[j][o], use)
                m.add_hint(self.y[j][o], choice.stages[s][1] if use else 0)

    def solve(
        self,
        time_limit_s: float,
        num_workers: int,
        seed: int,
        log_search: bool = False,
        deterministic: bool = False,
    ) -> tuple[Any, TrainingChoice | None, float]:
        """Solve; returns (cp status, choice or None, best bound in microseconds).

        ``deterministic``: the budget is CP-SAT's *deterministic* time (its work counter,
        roughly seconds on one core) instead of the wall clock, so a search cut short stops at
        the same point every run; ``self.work`` then holds the deterministic time spent.
        """
        solver = cp_model.CpSolver()
        if deterministic:
            solver.parameters.max_deterministic_time = max(0.01, time_limit_s)
            solver.parameters.max_time_in_seconds = DETERMINISTIC_WALL_CAP_S
        else:
            solver.parameters.max_time_in_seconds = max(0.01, time_limit_s)
        solver.parameters.num_workers = num_workers
        solver.parameters.random_seed = seed
        solver.parameters.log_search_progress = log_search
        if log_search:
            solver.log_callback = log.debug
        status = solver.solve(self.m)
        self.work = float(solver.deterministic_time)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return status, None, math.inf
        return status, self._extract(solver), solver.best_objective_bound / self.t.virtual

    def _extract(self, solver: cp_model.CpSolver) -> TrainingChoice:
        t = self.t
        d = next(d for d, sel in self.dsel.items() if solver.boolean_value(sel))
        slots: list[tuple[TrainOption, int]] = []
        for j in range(self.J):
            if not solver.boolean_value(self.active[j]):
                break
            o = next(o for o in range(len(t.options)) if solver.boolean_value(self.x[j][o]))
            slots.append((t.options[o], int(solver.value(self.n[j]))))
        slots.reverse()  # slot 0 is the last stage
        return TrainingChoice(
            d=d,
            stages=slots,
            step_us=solver.value(self.step) / t.virtual,
            objective=solver.objective_value / t.virtual,
            virtual=t.virtual,
        )
