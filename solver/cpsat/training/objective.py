"""The training model's objective: each slot's time with its hand-off (priced per option pair,
far unless on a near run), the DP traffic a stage cannot hide, the optimizer step, and the
closed-form step time (times the rate for ``min_cost``), with redundant work cuts -- or, with
``form = PATHS``, the evaluator's step time itself: its event simulation as inequalities
(exact where small enough) or paths through it (a lower bound), each stage's DP sync from its
own last backward, and the optimizer (issue 18, one objective)."""

from __future__ import annotations

import math
from typing import Any

from ...costmodel.pipeline import schedule_order
from .data import hop_runs
from .variables import Variables, _lsum, _wsum

__all__ = ["CLOSED", "PATHS", "Objective"]


def cycle_counts(j: int, m: int) -> tuple[int, int, int]:
    """(N, nf, nb) of :meth:`Objective._cycles`: a stage with ``w = min(j, m)`` warm-up
    forwards of Megatron-LM's 1F1B (:func:`~solver.costmodel.schedule_order`) runs, after the
    backward of micro-batch ``k`` (``k + w + 1 < m``), the forward of ``k + w + 1``; the round
    trips at ``k = 0, w + 1, 2 (w + 1), ...`` number ``N = (m - 1) // (w + 1) + 1``, and
    ``nf`` forwards and ``nb`` backwards of the stage's order follow the last one's backward."""
    w = min(j, m)
    n_cyc = (m - 1) // (w + 1) + 1
    last = (n_cyc - 1) * (w + 1)
    order = [(kind, mb) for kind, mb, _ in schedule_order(0, w + 1, m, "1f1b")]
    rest = order[order.index(("B", last)) + 1 :]
    nf = sum(1 for kind, _ in rest if kind == "F")
    return n_cyc, nf, len(rest) - nf


#: Largest pipeline (operations, 2 m J) whose event simulation the paths objective encodes
#: exactly (:meth:`Objective._events`); larger ones keep the path bounds alone.  A model of
#: 4,096 operations builds in ~0.2 s on this project's 2-core machine.
EVENT_MAX_OPS = 4096


#: :attr:`Objective.form`: the closed-form step time (the planner's search) ...
CLOSED = "closed"
#: ... or the evaluator's step time bounded from below by paths of its schedule
#: (:meth:`Objective._paths_objective`; the planner's bound on the evaluator's optimum).
PATHS = "paths"


class Objective(Variables):
    """The step time (or cost per step) the training model minimises, and its terms."""

    #: Which step time the model minimises: :data:`CLOSED` or :data:`PATHS`.
    form: str = CLOSED
    #: :data:`PATHS` only: encode the event simulation exactly (:meth:`_events`) where it is
    #: small enough; without it the path inequalities alone (weaker, much faster to solve).
    events: bool = True
    events_used: bool = False  # set by the paths objective: the encoding is exact

    def _objective(
        self, horizon: int, upper_bound_us: float | None, stage_ub: int | None = None
    ) -> None:
        """Minimise (m - 1) * T_max + sum T_j + DP_exposed + OPT_max for the chosen d.

        T_j: forward + backward of slot j's blocks (+ embedding / head) + 2 x p2p to the next
        stage.  DP_exposed >= dp_j - own_j - (the last backward op of each slot above j --
        one micro-batch's backward, under interleaving its chunk 0 -- and the one-way
        gradient hand-offs between them, ``H / 2`` each): a stage's last backward ends that
        much before the pipeline's end (stage s - 1's last backward starts once stage s's
        gradient has crossed their boundary), so its DP traffic hides behind it.  This is
        the evaluator's closed form (:func:`solver.evaluate.training._chain_dp_exposed`),
        and its simulated exposure whenever the cool-down is a chain (each earlier stage free
        when the gradient reaches it); never below the simulated one.

        Stage times (T, B, H, T_max) range over ``[0, stage_ub]`` (default ``horizon``; see
        :func:`~.model.stage_bound_of`), the step time over ``[0, v horizon]``: tight
        domains keep the step row's ``v m T_max`` far inside 64 bits.
        """
        t, m = self.t, self.m
        stage = horizon if stage_ub is None else min(stage_ub, horizon)
        pools = sorted(t.pool_gpus)
        self._near_runs()
        self.T = [m.new_int_var(0, stage, f"time[s{j}]") for j in range(self.J)]
        self.B = [m.new_int_var(0, stage, f"bwd[s{j}]") for j in range(self.J)]
        # H[j]: slot j's hand-off to slot j - 1 (2 x p2p, as T[j] charges it), j >= 1.
        self.H: list[Any] = [0] * self.J
        self.wrap: Any = 0  # interleaved: slot 0's hand-off to the first stage
        for j in range(self.J):
            tv: list[Any] = []
            tc: list[int] = []
            bv: list[Any] = []
            bc: list[int] = []
            hv: list[Any] = []
            hc: list[int] = []
            wv: list[Any] = []
            wc: list[int] = []
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
                        self._hand_off(j, o, self.J - 1, wv, wc)
                if j >= 1:
                    self._hand_off(j, o, j - 1, hv, hc)
                    self._far_unless_near(j, o, hv, hc)
            if wv:
                # The wrap hand-off (2 x p2p, last stage -> first), in T[0] as before.
                self.wrap = m.new_int_var(0, stage, "hop[wrap]")
                m.add(self.wrap == _wsum(wv, wc))
                tv.append(self.wrap)
                tc.append(1)
            if hv:
                self.H[j] = m.new_int_var(0, stage, f"hop[s{j}]")
                m.add(self.H[j] == _wsum(hv, hc))
                tv.append(self.H[j])
                tc.append(1)
            m.add(self.T[j] >= _wsum(tv, tc))
            m.add(self.B[j] == _wsum(bv, bc))
        self.Tmax = m.new_int_var(0, stage, "time_max")
        for j in range(self.J):
            m.add(self.Tmax >= self.T[j])
        if self.form == PATHS:
            # The simulated step can exceed the closed form (interleaved: up to ~20%); twice
            # the horizon keeps every plan's step inside the domain (an INFEASIBLE model must
            # mean "nothing beats the cut-off"), and the rows inside magnitude_of's 4 v H.
            self._paths_objective(2 * horizon, upper_bound_us, stage)
            return
        self._work_cuts(pools)
        self.DP = m.new_int_var(0, horizon, "dp_exposed")
        self.OPT = m.new_int_var(0, horizon, "optimizer_max")
        for d, sel in self.dsel.items():
            for j in range(self.J):
                dv, dc = self._part(j, "dp", d)
                dv += self.x[j]
                dc += [opt.dp["fixed"][d] for opt in t.options]
                # The stages before slot j's run their last backward op after it, each once
                # the gradient has crossed the hand-off to it (one-way p2p, H / 2): the
                # evaluator's closed-form cool-down chain (evaluate.training._chain_dp_exposed).
                v = t.virtual
                hops = [h for h in self.H[j + 1 :] if not isinstance(h, int)]
                if v == 1:
                    # Plain 1F1B: that op is the whole backward B, so
                    # 2 DP >= 2 dp - 2 own - sum_{i > j} (2 B_i + H_i).
                    hv, hc = self._own_hide(j, d)
                    later = self.B[j + 1 :]
                    hide = _wsum(
                        later + hops + hv, [2] * len(later) + [1] * len(hops) + [2 * c for c in hc]
                    )
                    m.add(2 * self.DP >= 2 * _wsum(dv, dc) - hide).only_enforce_if(sel)
                else:
                    # Interleaved: that op is chunk 0 of the last micro-batch (B / v, the
                    # embedding whole, no head), slot j's own too (_paths_hide), so
                    # 2 v DP >= 2 v dp - 2 v own - sum_{i > j} (2 v chunk_i + v H_i).
                    cv, cc = self._chunk0_terms(j + 1)
                    hv, hc = self._paths_hide(j, d)
                    hide = _wsum(
                        cv + hops + hv, [2 * c for c in cc] + [v] * len(hops) + [2 * c for c in hc]
                    )
                    m.add(2 * v * self.DP >= 2 * v * _wsum(dv, dc) - hide).only_enforce_if(sel)
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
            self._min_cost(upper_bound_us, horizon)
        else:
            if upper_bound_us is not None:  # strictly better than the incumbent
                m.add(self.step <= math.ceil(v * upper_bound_us) - 1)
            m.minimize(self.step)

    def _min_cost(self, upper_bound_us: float | None, horizon: int) -> None:
        """Minimise the cost per step, rate x ``self.step``."""
        t, m, v = self.t, self.m, self.t.virtual
        # The one product in the model, only for min_cost: $ per step = rate x step time.
        # d is fixed outside (one candidate per model), so the rate is linear in x.
        d = t.dp_degrees[0]
        rate_ub = d * sum(max(o.price for o in t.options) for _ in range(self.J))
        self.rate = m.new_int_var(0, rate_ub, "rate_mUSD_per_h")
        m.add(
            self.rate
            == d
            * _wsum(
                [self.x[j][o] for j in range(self.J) for o in range(len(t.options))],
                [opt.price for _ in range(self.J) for opt in t.options],
            )
        )
        self.cost = m.new_int_var(0, rate_ub * v * horizon, "cost_per_step")
        m.add_multiplication_equality(self.cost, [self.rate, self.step])
        if upper_bound_us is not None:  # strictly better than the incumbent
            m.add(self.cost <= math.ceil(v * upper_bound_us) - 1)
        m.minimize(self.cost)

    def _paths_objective(self, horizon: int, upper_bound_us: float | None, stage: int) -> None:
        """Minimise a lower bound on the evaluator's step time: paths through its schedule.

        The evaluator's pipeline (:func:`~solver.costmodel.simulate_pipeline`) starts every
        operation when its stage is free and its input has arrived, so its makespan is the
        longest path through the graph of operations (each stage's in its schedule order,
        plus the hand-offs between stages, one-way p2p ``H / 2`` each); the length of *any*
        path is a lower bound, and a linear one in the model's stage times.  With ``C``,
        ``F = C - B`` and ``B`` a stage's compute, forward and backward per micro-batch, slot
        ``j`` (``j`` warm-up forwards in 1F1B, Megatron-LM's ``p - s - 1``) and ``m``
        micro-batches:

        * fill, all of slot j, drain: ``sum_{i > j} (C_i + H_i) + m C_j`` (with interleaving
          the fill and drain pass one chunk, ``C_i / v``);
        * plain 1F1B, fill, slot j up to its last forward (``m F_j + (m - j - 1) B_j``), the
          last micro-batch's round trip through the later stages, its last backward, drain:
          ``m C_j - j B_j + sum_{i != j} C_i + sum_{i >= 1} H_i``.

        The paths that end at slot j's last backward (the same without the drain) bound when
        its gradients are complete; its DP traffic less what hides behind its own compute
        (:meth:`_own_hide`, as the evaluator's :func:`~solver.costmodel.dp_hideable_time`)
        starts there, and the step is the later of the pipeline's end and every stage's DP
        end, plus the slowest optimizer step -- the evaluator's step, term by term.  So the
        objective is <= the evaluator's step of every plan the model holds (hand-offs at
        their optimistic prices, coefficients rounded to the unit): its optimum is a lower
        bound on the evaluator's optimum.  Where the paths above are the critical ones
        (uniform or last-heavy pipelines, the bottleneck's warm-up covering the round trip)
        it *is* the evaluator's step.  The step row is scaled by ``2 v`` to stay integral
        (``H / 2``, ``C / v``); the model's objective is ``v`` x step time as in the closed form.
        """
        t, m = self.t, self.m
        v, J = t.virtual, self.J
        C: list[Any] = []
        for j in range(J):
            cv: list[Any] = []
            cc: list[int] = []
            for o, opt in enumerate(t.options):
                cv += (self.y[j][o], self.z[j][o])
                cc += (opt.t_layer, opt.t_embed)
                if j == 0:
                    cv.append(self.x[j][o])
                    cc.append(opt.t_head)
            c = m.new_int_var(0, stage, f"compute[s{j}]")
            m.add(c == _wsum(cv, cc))
            C.append(c)
        H = [h for h in self.H[1:] if not isinstance(h, int)]
        Hj = [(i, h) for i, h in enumerate(self.H) if not isinstance(h, int)]
        self.DP = m.new_int_var(0, 0, "dp_exposed")  # folded into the step rows below
        self.OPT = m.new_int_var(0, horizon, "optimizer_max")
        self.step = m.new_int_var(0, v * horizon, "step_time_x_v")
        two_v = 2 * v
        for d, sel in self.dsel.items():
            mm = t.m(d)
            for j in range(J):
                m.add(self.OPT >= _wsum(*self._part(j, "opt", d))).only_enforce_if(sel)
            # 2 v x (step - OPT) >= every path below.
            base = self.step * 2 - two_v * self.OPT
            dp_rows: list[Any] = []  # per slot: 2 v x (its DP traffic - what hides behind it)
            for j in range(J):
                above = C[j + 1 :]
                hops_above = [h for i, h in Hj if i > j]
                # fill + drain of one micro-batch (chunk) through the stages before slot j
                fill_drain = _wsum(above + hops_above, [2] * len(above) + [two_v] * len(hops_above))
                m.add(base >= two_v * mm * C[j] + fill_drain).only_enforce_if(sel)
                if v == 1 and j >= 1:
                    others = C[:j] + C[j + 1 :]
                    trip = _wsum(others + H, [2] * len(others) + [2] * len(H))
                    m.add(base >= 2 * mm * C[j] - 2 * j * self.B[j] + trip).only_enforce_if(sel)
                    cyc = self._cycles(j, mm, C, Hj)
                    m.add(base >= 2 * cyc + fill_drain).only_enforce_if(sel)
                # Slot j's gradients complete (fill in forwards only, one-way hops), then its
                # DP traffic less what hides behind its own compute.
                dv, dc = self._part(j, "dp", d)
                dv += self.x[j]
                dc += [opt.dp["fixed"][d] for opt in t.options]
                hv, hc = self._paths_hide(j, d)  # v x the hidden time
                fwd = [(C[i], self.B[i]) for i in range(j + 1, J)]
                fv = [c for c, _ in fwd] + [b for _, b in fwd] + hops_above
                fc = [2] * len(fwd) + [-2] * len(fwd) + [v] * len(hops_above)
                dp_net = _wsum(dv + hv, [two_v * c for c in dc] + [-2 * c for c in hc])
                tail = _wsum(fv, fc) + dp_net
                m.add(base >= two_v * mm * C[j] + tail).only_enforce_if(sel)
                dp_rows.append(dp_net)
                if v == 1 and j >= 1:
                    low = C[:j]
                    trip_h = [h for i, h in Hj if 1 <= i <= j]
                    extra = _wsum(low + trip_h, [2] * len(low) + [2] * len(trip_h))
                    m.add(base >= 2 * mm * C[j] - 2 * j * self.B[j] + extra + tail).only_enforce_if(
                        sel
                    )
                    m.add(base >= 2 * self._cycles(j, mm, C, Hj) + tail).only_enforce_if(sel)
            if self.events and len(self.dsel) == 1 and 2 * mm * v * J <= EVENT_MAX_OPS:
                self.events_used = True
                makespan, grads = self._events(mm, Hj, 2 * v * horizon)
                m.add(base >= makespan)
                for j in range(J):
                    m.add(base >= grads[j] + dp_rows[j])
            # Work cut: each GPU busy m C_j <= makespan, at most gpus // d per replica.
            for k in sorted(t.pool_gpus):
                idx = [o for o, opt in enumerate(t.options) if opt.pool == k]
                ys = [self.y[j][o] for j in range(J) for o in idx]
                work = [
                    v * mm * t.options[o].tp * t.options[o].t_layer for _ in range(J) for o in idx
                ]
                cut = _wsum([*ys, self.step], [*work, -(t.pool_gpus[k] // d)])
                m.add(cut <= 0).only_enforce_if(sel)
        if t.objective == "min_cost":
            self._min_cost(upper_bound_us, horizon)
        else:
            if upper_bound_us is not None:  # strictly better than the incumbent
                m.add(self.step <= math.ceil(v * upper_bound_us) - 1)
            m.minimize(self.step)

    def _events(self, mm: int, Hj: list[tuple[int, Any]], ub: int) -> tuple[Any, list[Any]]:
        """The evaluator's event simulation, exactly, as a system of inequalities.

        One variable per operation, its end time (x ``2 v``, so that one-way hand-offs
        ``H / 2`` and chunks ``1 / v`` stay integral), at least the end of the operation
        before it on its slot (Megatron-LM's order, :func:`~solver.costmodel.schedule_order`:
        slot ``j`` is stage ``p - 1 - j``) plus its duration, and at least the end of its input
        plus its duration: the forward of the stage before (under interleaving chunk ``c >
        0`` of the first stage: chunk ``c - 1`` of the last, over the wrap hand-off), the
        backward of the stage after (the last stage: chunk ``c + 1`` of the first, or its own
        forward), one-way hand-off added -- the simulation's ``start = max(stage free, input
        arrived)``.  A chunk is ``1 / v`` of the stage's blocks, the embedding on the first
        stage's chunk 0 and the head on the last stage's chunk ``v - 1``, as the evaluator
        splits them.  At the optimum every end is its least value, the simulation's.  In
        plain 1F1B, inactive slots above the first stage (zero durations and hand-offs) add
        nothing: each of their waits is one the first stage's own order already implies.
        Returns (2 v x makespan, 2 v x the end of every slot's last backward).  ``2 m v J``
        variables: used up to :data:`EVENT_MAX_OPS`.
        """
        m, J, v = self.m, self.J, self.t.virtual
        hop = dict(Hj)
        ends: dict[tuple[int, str, int, int], Any] = {}
        orders = []
        for j in range(J):
            if v == 1:
                order = schedule_order(0, min(j, mm) + 1, mm, "1f1b")
            else:
                order = schedule_order(J - 1 - j, J, mm, "interleaved", v)
            orders.append(order)
            for kind, k, c in order:
                ends[(j, kind, k, c)] = m.new_int_var(0, ub, f"end[s{j},{kind}{k}.{c}]")
        makespan = m.new_int_var(0, ub, "makespan_x2v")
        last = []
        for j, order in enumerate(orders):
            dur = self._chunk_durations(j)
            prev: Any = 0
            for kind, k, c in order:
                e = ends[(j, kind, k, c)]
                d = dur[(kind, c)]
                m.add(e >= prev + d)
                if kind == "F":
                    if j + 1 < J:
                        m.add(e >= ends[(j + 1, "F", k, c)] + v * hop.get(j + 1, 0) + d)
                    elif c > 0:
                        m.add(e >= ends[(0, "F", k, c - 1)] + v * self.wrap + d)
                elif j >= 1:
                    m.add(e >= ends[(j - 1, "B", k, c)] + v * hop.get(j, 0) + d)
                elif c < v - 1:
                    m.add(e >= ends[(J - 1, "B", k, c + 1)] + v * self.wrap + d)
                else:
                    m.add(e >= ends[(j, "F", k, c)] + d)
                prev = e
            m.add(makespan >= prev)
            last.append(prev)
        return makespan, last

    def _chunk_durations(self, j: int) -> dict[tuple[str, int], Any]:
        """2 v x the forward and backward of each chunk of slot j, by (kind, chunk)."""
        t, v = self.t, self.t.virtual
        parts: dict[str, tuple[list[Any], list[int]]] = {
            k: ([], []) for k in ("lf", "lb", "ef", "eb", "hf", "hb")
        }

        def put(key: str, var: Any, coef: int) -> None:
            parts[key][0].append(var)
            parts[key][1].append(coef)

        for o, opt in enumerate(t.options):
            put("lf", self.y[j][o], opt.t_layer - opt.b_layer)
            put("lb", self.y[j][o], opt.b_layer)
            put("ef", self.z[j][o], opt.t_embed - opt.b_embed)
            put("eb", self.z[j][o], opt.b_embed)
            if j == 0:
                put("hf", self.x[j][o], opt.t_head - opt.b_head)
                put("hb", self.x[j][o], opt.b_head)
        s = {k: _wsum(*vc) if vc[0] else 0 for k, vc in parts.items()}
        out: dict[tuple[str, int], Any] = {}
        for c in range(v):
            emb = 1 if c == 0 else 0
            head = 1 if c == v - 1 else 0
            for kind, lay, e, h in (("F", "lf", "ef", "hf"), ("B", "lb", "eb", "hb")):
                out[(kind, c)] = 2 * s[lay] + 2 * v * (emb * s[e] + head * s[h])
        return out

    def _cycles(self, j: int, mm: int, C: list[Any], Hj: list[tuple[int, Any]]) -> Any:
        """Plain 1F1B, slot ``j`` >= 1 (``j`` warm-up forwards): the path from its first
        forward to its last backward that sends micro-batch ``k`` on a round trip through the
        later stages (``R = sum_{i < j} C_i + sum_{1 <= i <= j} H_i``) and back to its
        backward, whose next operation is the forward of ``k + j + 1``, from ``k = 0`` on: ``N``
        cycles of ``C_j + R`` and the ``nf`` forwards and ``nb`` backwards left after the last
        one (:func:`cycle_counts`).  When the hand-offs are slow this is the critical path: the
        evaluator's simulation charges them in the steady state, not only in fill and drain."""
        n_cyc, nf, nb = cycle_counts(j, mm)
        low = C[:j]
        trip_h = [h for i, h in Hj if 1 <= i <= j]
        return _wsum(
            [C[j], self.B[j], *low, *trip_h],
            [n_cyc + nf, nb - nf] + [n_cyc] * (len(low) + len(trip_h)),
        )

    def _chunk0_terms(self, first: int) -> tuple[list[Any], list[int]]:
        """v x the last backward op (chunk 0: ``B / v``, the embedding whole, no head) of every
        slot from ``first`` up, as (variables, coefficients): the interleaved cool-down chain
        that hides a lower slot's DP traffic."""
        t, v = self.t, self.t.virtual
        vs: list[Any] = []
        cs: list[int] = []
        for i in range(first, self.J):
            for o, opt in enumerate(t.options):
                vs += (self.y[i][o], self.z[i][o])
                cs += (opt.b_layer, v * opt.b_embed)
        return vs, cs

    def _paths_hide(self, j: int, d: int) -> tuple[list[Any], list[int]]:
        """:meth:`_own_hide`, exactly as the evaluator hides under interleaving with ZeRO-0/1:
        behind the stage's last backward operation, chunk 0 of its last micro-batch (1/v of its
        blocks, and the embedding on the first stage; the head is on chunk v - 1)."""
        t = self.t
        if t.virtual == 1 or t.zero_stage >= 2 or not t.overlap:
            return self._own_hide(j, d)
        vs: list[Any] = []
        cs: list[int] = []
        for o, opt in enumerate(t.options):
            vs += (self.y[j][o], self.z[j][o])
            cs += (opt.b_layer, t.virtual * opt.b_embed)
        return vs, cs

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

    def _hand_off(self, j: int, o: int, k: int, vs: list[Any], cs: list[int]) -> None:
        """Append to (vs, cs) the terms of slot j's activation hand-off to slot k when j uses
        option o.

        The cheapest pair price is charged on ``x[j, o]``; each dearer receiver option o2 adds
        its excess through ``w >= x[j, o] + x[k, o2] - 1`` (minimisation keeps w at its lower
        bound under plain 1F1B; interleaved, where the DP rows hide more than a hand-off
        costs, ``w`` is also bounded above by both), so the price is exactly the evaluator's
        for the chosen pair.
        """
        m = self.m
        base, dearer = self._pair_prices(o)
        xo = self.x[j][o]
        vs.append(xo)
        cs.append(base)
        for o2, excess in dearer:
            w = m.new_bool_var(f"p2p[s{j}:{self._names[o]}->s{k}:{self._names[o2]}]")
            m.add(w >= xo + self.x[k][o2] - 1)
            if self.t.virtual > 1:
                # w == x[j, o] and x[k, o2]: the interleaved DP rows hide v H / 2 behind a
                # hand-off, more than the H it adds to the step, so w must not be free to rise.
                m.add(w <= xo)
                m.add(w <= self.x[k][o2])
            vs.append(w)
            cs.append(excess)

    def _near_runs(self) -> None:
        """Runs of near-priced hand-offs (:func:`hop_runs`): ``near[j]`` says the hop from slot
        ``j`` to slot ``j - 1`` is part of a run whose every hop stays inside one NVLink domain
        for every replica, and such a run's stages must satisfy
        :func:`~solver.cpsat.tables.hops.run_fits` (``d * sum(tp) <= D``, proven there).

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
        - 1 - near[j]`` (minimisation keeps u at its lower bound; interleaved, u is their
        conjunction, see :meth:`_hand_off`)."""
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
            if self.t.virtual > 1:  # u == x[j, o] and x[j-1, o2] and not near (see _hand_off)
                m.add(u <= xo)
                m.add(u <= self.x[j - 1][o2])
                m.add(u + near <= 1)
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
