"""The training CP model: :class:`TrainingModel` makes the variables, adds the rules
(:mod:`.constraints`) and the objective (:mod:`.objective`), then hints, solves and reads
back a :class:`~.data.TrainingChoice`."""

from __future__ import annotations

import logging
import math
from typing import Any

from ortools.sat.python import cp_model

from .constraints import Constraints
from .data import TrainingChoice, TrainOption, TrainTables
from .objective import Objective

__all__ = ["MAX_MAGNITUDE", "TrainingModel", "horizon_of", "magnitude_of", "stage_bound_of"]

log = logging.getLogger(__name__)

#: Wall-clock safety cap (s) of one deterministic solve, far above any deterministic budget:
#: reaching it would break reproducibility, so it only guards against a runaway search.
DETERMINISTIC_WALL_CAP_S = 3600.0


#: Largest value any term of the model may reach (:func:`magnitude_of`).  CP-SAT keeps
#: integers within +-2^62 and refuses a linear constraint whose terms could overflow 64 bits;
#: 2^60 leaves room for the sums it forms in presolve.
MAX_MAGNITUDE = 2**60


def stage_bound_of(t: TrainTables) -> int:
    """An upper bound (time units) on one stage's time per micro-batch in the model built
    from ``t``: every block on its slowest option, the embedding and the head, and two
    hand-offs (its own, and under interleaving the last stage's hand-off to the first) at
    their dearest.  The domain of T_j, B_j, H_j and T_max: a stage time is the sum of its
    terms at the optimum (minimisation keeps it there), so the bound cuts no solution."""
    L = t.num_layers
    hop = max(t.p2p_pair.values(), default=0)
    if t.hops is not None:  # a hop off a near run costs its far price (_far_unless_near)
        hop = max(hop, max(t.hops.far.values(), default=0))
    return int(max(o.t_layer * L + o.t_embed + o.t_head for o in t.options) + 2 * hop + 1)


def horizon_of(t: TrainTables) -> int:
    """An upper bound (time units) on the step time of the model built from ``t`` (and its
    exposed DP and optimizer terms): the domain of those variables."""
    L = t.num_layers
    worst_stage = stage_bound_of(t)
    m_max = max(t.m(d) for d in t.dp_degrees)
    extra = max(
        sum(o.dp[k][d] * (L if k == "layer" else 1) for k in o.dp)
        + sum(o.opt[k][d] * (L if k == "layer" else 1) for k in o.opt)
        for o in t.options
        for d in t.dp_degrees
    )
    return int((m_max + t.max_stages) * worst_stage + extra + 1)


def magnitude_of(t: TrainTables) -> int:
    """An upper bound on the largest value any linear expression of the model built from
    ``t`` can take (sum of |coefficient| x largest |value| over its terms), to keep it inside
    :data:`MAX_MAGNITUDE`.

    The rows, with each stage time at most ``S`` (:func:`stage_bound_of`) and the step time,
    DP and optimizer terms at most the horizon ``H``: the step row ``(v m - 1) T_max + sum_j
    T_j + v (DP + OPT) <= step`` (``(v m + J) S + 3 v H``); the DP rows, whose hidden time
    counts ``v m`` backwards of every option's blocks (``2 v m n_opt S``) and the stages
    above (``2 J S``); the work cuts, ``sum tp t_layer y + (gpus // d) T_max`` (``(J n_opt
    tp_max + gpus) S``); for ``min_cost`` the cost per step, ``rate x v x H``.
    """
    horizon = horizon_of(t)
    stage = stage_bound_of(t)
    v = max(1, t.virtual)
    m_max = max(t.m(d) for d in t.dp_degrees)
    J = t.max_stages
    n_opt = len(t.options)
    tp_max = max(o.tp for o in t.options)
    gpus = max(t.pool_gpus.values(), default=1)
    per_stage = v * m_max * (1 + 2 * n_opt) + J * (2 + n_opt * tp_max) + gpus
    rows = 4 * v * horizon + stage * per_stage
    if t.objective == "min_cost":
        rate = max(t.dp_degrees) * J * max((o.price for o in t.options), default=0)
        rows = max(rows, max(1, rate) * v * horizon * 2)
    return rows


class TrainingModel(Constraints, Objective):
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
        self._objective(horizon, upper_bound_us, stage_bound_of(t))

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
        return horizon_of(self.t)

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
