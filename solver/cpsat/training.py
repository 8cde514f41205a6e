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
from dataclasses import dataclass

from ortools.sat.python import cp_model

__all__ = ["TrainOption", "TrainTables", "TrainingChoice", "TrainingModel"]

log = logging.getLogger(__name__)

US = 1e-6  # seconds per time unit
KB = 1e3  # bytes per memory unit


@dataclass(frozen=True)
class TrainOption:
    """Coefficients of one per-stage option ``(pool, tp)`` for a fixed global family.

    Times are per micro-batch (forward + backward), in microseconds; memory per GPU in KB.
    Entries indexed by ``d`` depend on the DP degree (ZeRO sharding, DP group span).
    """

    pool: str
    tp: int
    t_layer: int
    t_embed: int
    t_head: int
    act_layer: int  # stored activations per layer per in-flight micro-batch
    act_embed: int  # extra activations on the first stage per in-flight micro-batch
    act_head: int  # extra activations on the last stage (logits etc.), once
    overhead: int  # framework overhead per GPU
    capacity: int  # GPU memory
    static_layer: dict[int, int]  # weights + grads + optimizer per layer, by d
    static_embed: dict[int, int]
    static_head: dict[int, int]
    dp_layer: dict[int, int]  # exposed DP time per layer, by d
    dp_embed: dict[int, int]
    dp_head: dict[int, int]
    dp_fixed: dict[int, int]  # latency part of the DP collective, by d


@dataclass(frozen=True)
class TrainTables:
    """Everything the model needs for one family; built by :mod:`solver.cpsat.tables`."""

    num_layers: int
    micro_batch: int
    global_batch: int
    options: list[TrainOption]
    dp_degrees: list[int]  # candidate d (each divides global_batch / micro_batch)
    pool_gpus: dict[str, int]
    p2p: dict[tuple[str, str], int]  # boundary time per micro-batch (fwd + bwd), pool pair
    max_stages: int

    def m(self, d: int) -> int:
        return self.global_batch // (d * self.micro_batch)


@dataclass(frozen=True)
class TrainingChoice:
    """The solution of one family: stage options (in pipeline order), layers, DP degree."""

    d: int
    stages: list[tuple[TrainOption, int]]  # (option, layers), stage 0 first
    step_us: int


class TrainingModel:
    """Builds and solves the CP-SAT model for one :class:`TrainTables`."""

    def __init__(self, tables: TrainTables, upper_bound_us: int | None = None) -> None:
        self.t = tables
        self.m = cp_model.CpModel()
        self._build(upper_bound_us)

    # -- construction ---------------------------------------------------------------------
    def _build(self, upper_bound_us: int | None) -> None:
        t, m = self.t, self.m
        L = t.num_layers
        J = t.max_stages
        O = range(len(t.options))
        self.J = J
        horizon = self._horizon()
        self.dsel = {d: m.new_bool_var(f"dp[{d}]") for d in t.dp_degrees}
        m.add_exactly_one(self.dsel.values())
        self.active = [m.new_bool_var(f"active[s{j}]") for j in range(J)]
        m.add(self.active[0] == 1)
        for j in range(J - 1):
            m.add_implication(self.active[j + 1], self.active[j])
        self.first = [m.new_bool_var(f"first[s{j}]") for j in range(J)]
        for j in range(J):
            nxt = self.active[j + 1] if j + 1 < J else 0
            m.add(self.first[j] == self.active[j] - nxt)
        self.x = [[m.new_bool_var(f"opt[s{j}]={self._oname(o)}") for o in O] for j in range(J)]
        self.n = [m.new_int_var(0, L, f"layers[s{j}]") for j in range(J)]
        self.y = [[m.new_int_var(0, L, f"layers[s{j},{self._oname(o)}]") for o in O] for j in range(J)]
        # z[j,o] = first[j] and x[j,o]: the embedding's cost on the option that holds it.
        self.z = [[m.new_bool_var(f"embed[s{j},{self._oname(o)}]") for o in O] for j in range(J)]
        self._constraints()
        self._objective(horizon, upper_bound_us)

    def _oname(self, o: int) -> str:
        opt = self.t.options[o]
        return f"{opt.pool}/tp{opt.tp}"

    def _horizon(self) -> int:
        t = self.t
        worst_stage = max(
            o.t_layer * t.num_layers + o.t_embed + o.t_head
            + max((v for v in t.p2p.values()), default=0)
            for o in t.options
        )
        m_max = max(t.m(d) for d in t.dp_degrees)
        dp_max = max(
            max(o.dp_layer[d] * t.num_layers + o.dp_embed[d] + o.dp_head[d] + o.dp_fixed[d] for d in t.dp_degrees)
            for o in t.options
        )
        return int((m_max + t.max_stages) * worst_stage + dp_max + 1)

    def _constraints(self) -> None:
        """Table of contents: one method per rule."""
        self._one_option_per_active_stage()
        self._layers()
        self._embedding_indicator()
        self._gpu_counts()
        self._memory()
        self._symmetry()

    def _one_option_per_active_stage(self) -> None:
        """An active stage picks exactly one (pool, tp) option; an inactive one none."""
        for j in range(self.J):
            self.m.add(sum(self.x[j]) == self.active[j])

    def _layers(self) -> None:
        """Every block is placed once; active stages hold >= 1 block; y linearises n x option."""
        t, m = self.t, self.m
        L = t.num_layers
        m.add(sum(self.n) == L)
        for j in range(self.J):
            m.add(self.n[j] >= self.active[j])
            m.add(sum(self.y[j]) == self.n[j])
            for o in range(len(t.options)):
                m.add(self.y[j][o] <= L * self.x[j][o])
                m.add(self.y[j][o] >= self.x[j][o])

    def _embedding_indicator(self) -> None:
        """z[j,o] is exactly first[j] AND x[j,o] (first stage holds the embedding)."""
        m = self.m
        for j in range(self.J):
            for o in range(len(self.t.options)):
                m.add_implication(self.z[j][o], self.first[j])
                m.add_implication(self.z[j][o], self.x[j][o])
                m.add_bool_or([self.z[j][o], self.first[j].Not(), self.x[j][o].Not()])

    def _gpu_counts(self) -> None:
        """For the chosen d, each pool's GPUs cover d copies of its stages' TP groups."""
        t, m = self.t, self.m
        for pool, gpus in t.pool_gpus.items():
            idx = [o for o, opt in enumerate(t.options) if opt.pool == pool]
            if not idx:
                continue
            used = sum(t.options[o].tp * self.x[j][o] for j in range(self.J) for o in idx)
            for d, sel in self.dsel.items():
                m.add(used <= gpus // d).only_enforce_if(sel)

    def _memory(self) -> None:
        """Per stage, weights + grads + optimizer + in-flight activations + overhead <= capacity.

        In-flight micro-batches of stage slot j under 1F1B are min(m, j + 1) (slot 0 = last).
        """
        t, m = self.t, self.m
        for d, sel in self.dsel.items():
            mm = t.m(d)
            for j in range(self.J):
                k = min(mm, j + 1)
                terms = []
                for o, opt in enumerate(t.options):
                    terms.append((opt.static_layer[d] + opt.act_layer * k) * self.y[j][o])
                    fixed = opt.overhead - opt.capacity
                    if j == 0:
                        fixed += opt.static_head[d] + opt.act_head
                    terms.append(fixed * self.x[j][o])
                    terms.append((opt.static_embed[d] + opt.act_embed * k) * self.z[j][o])
                m.add(sum(terms) <= 0).only_enforce_if(sel)

    def _symmetry(self) -> None:
        """No symmetry between slots (each has its own in-flight count); nothing to break.

        Identical nodes are interchangeable, which the model never distinguishes: placement is
        done after solving, so node symmetry never enters the search.
        """

    def _objective(self, horizon: int, upper_bound_us: int | None) -> None:
        """Minimise step time (m - 1) * T_max + sum T_j + DP_max for the chosen d."""
        t, m = self.t, self.m
        pools = sorted(t.pool_gpus)
        self.T = [m.new_int_var(0, horizon, f"time[s{j}]") for j in range(self.J)]
        # Pool of each slot, for pricing the boundary to the next stage (slot j - 1).
        xp = [
            {
                k: sum(self.x[j][o] for o, opt in enumerate(t.options) if opt.pool == k)
                for k in pools
            }
            for j in range(self.J)
        ]
        for j in range(self.J):
            expr = []
            for o, opt in enumerate(t.options):
                expr.append(opt.t_layer * self.y[j][o])
                expr.append(opt.t_embed * self.z[j][o])
                if j == 0:
                    expr.append(opt.t_head * self.x[j][o])
            if j >= 1:
                # Boundary j -> j-1 is priced on the pair of pools; w >= a + b - 1.
                for ka in pools:
                    for kb in pools:
                        cost = t.p2p[(ka, kb)]
                        if cost == 0:
                            continue
                        w = m.new_bool_var(f"p2p[s{j}:{ka}->{kb}]")
                        m.add(w >= xp[j][ka] + xp[j - 1][kb] - 1)
                        expr.append(cost * w)
            m.add(self.T[j] >= sum(expr))
        self.Tmax = m.new_int_var(0, horizon, "time_max")
        for j in range(self.J):
            m.add(self.Tmax >= self.T[j])
        self.DP = m.new_int_var(0, horizon, "dp_max")
        for d, sel in self.dsel.items():
            for j in range(self.J):
                expr = []
                for o, opt in enumerate(t.options):
                    expr.append(opt.dp_layer[d] * self.y[j][o])
                    expr.append(opt.dp_embed[d] * self.z[j][o])
                    if j == 0:
                        expr.append((opt.dp_head[d] + opt.dp_fixed[d]) * self.x[j][o])
                    else:
                        expr.append(opt.dp_fixed[d] * self.x[j][o])
                m.add(self.DP >= sum(expr)).only_enforce_if(sel)
        self.step = m.new_int_var(0, horizon, "step_time")
        Tsum = sum(self.T)
        for d, sel in self.dsel.items():
            m.add(self.step >= (t.m(d) - 1) * self.Tmax + Tsum + self.DP).only_enforce_if(sel)
        if upper_bound_us is not None:
            m.add(self.step <= upper_bound_us)
        m.minimize(self.step)

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
        self, time_limit_s: float, num_workers: int, seed: int, log_search: bool = False
    ) -> tuple[int, TrainingChoice | None, float]:
        """Solve; returns (cp status, choice or None, best bound in microseconds)."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, time_limit_s)
        solver.parameters.num_workers = num_workers
        solver.parameters.random_seed = seed
        solver.parameters.log_search_progress = log_search
        if log_search:
            solver.log_callback = log.debug
        status = solver.solve(self.m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return status, None, math.inf
        return status, self._extract(solver), solver.best_objective_bound

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
        return TrainingChoice(d=d, stages=slots, step_us=int(solver.objective_value))
