"""The training model's objective: each slot's time with its hand-off (priced per option pair,
far unless on a near run), the DP traffic a stage cannot hide, the optimizer step, and the
closed-form step time (times the rate for ``min_cost``), with redundant work cuts."""

from __future__ import annotations

import math
from typing import Any

from .data import hop_runs
from .variables import Variables, _lsum, _wsum

__all__ = ["Objective"]


class Objective(Variables):
    """The step time (or cost per step) the training model minimises, and its terms."""

    def _objective(
        self, horizon: int, upper_bound_us: float | None, stage_ub: int | None = None
    ) -> None:
        """Minimise (m - 1) * T_max + sum T_j + DP_exposed + OPT_max for the chosen d.

        T_j: forward + backward of slot j's blocks (+ embedding / head) + 2 x p2p to the next
        stage.  DP_exposed >= dp_j - own_j - (backward of the slots above j for one
        micro-batch, and under plain 1F1B the one-way gradient hand-offs between them,
        ``H / 2`` each): in 1F1B a stage's last backward ends that much before the pipeline's
        end (the evaluator's simulation: stage s - 1's last backward starts once stage s's
        gradient has crossed their boundary), so its DP traffic hides behind it.  This is
        the evaluator's exposure whenever the cool-down is a chain (each earlier stage free
        when the gradient reaches it, as on the closed form's stages).

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
                self.H[j] = m.new_int_var(0, stage, f"hop[s{j}]")
                m.add(self.H[j] == _wsum(hv, hc))
                tv.append(self.H[j])
                tc.append(1)
            m.add(self.T[j] >= _wsum(tv, tc))
            m.add(self.B[j] == _wsum(bv, bc))
        self.Tmax = m.new_int_var(0, stage, "time_max")
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
        else:
            if upper_bound_us is not None:  # strictly better than the incumbent
                m.add(self.step <= math.ceil(v * upper_bound_us) - 1)
            m.minimize(self.step)

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
