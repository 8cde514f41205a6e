"""The training model's constraints, one method per rule (``_constraints`` is the table of
contents): one option per active stage, blocks, the embedding, exact placement, GPU counts,
memory and a target engine's limits."""

from __future__ import annotations

import math
from typing import Any

from .variables import Variables, _lsum, _wsum

__all__ = ["Constraints"]


class Constraints(Variables):
    """The rules every solution of the training model satisfies."""

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

    def _memory(self) -> None:
        """Per stage, the simultaneous peak <= capacity, as the evaluator's ledger takes it.

        Weights + grads + optimizer + in-flight activations + overhead; in-flight micro-batches
        of stage slot j under 1F1B are min(m, j + 1) (slot 0 = last).  Gradients allocated on
        demand (options with a ``grads`` table) with one micro-batch per step are made in the
        backward as the activations are freed, so the peak holds the larger of the two, not
        their sum (:func:`solver.evaluate.ledger._training_ledger_row`): two constraints, one
        without the gradients and one without the activations.
        """
        t, m = self.t, self.m
        for d, sel in self.dsel.items():
            mm = t.m(d)
            for j in range(self.J):
                k = self.in_flight(j, mm)
                on_demand = mm == 1 and bool(t.options) and all(opt.grads for opt in t.options)
                m.add(self._peak(j, d, k, grads=not on_demand) <= 0).only_enforce_if(sel)
                if on_demand:
                    m.add(self._peak(j, d, k, activations=False) <= 0).only_enforce_if(sel)

    def _peak(
        self, j: int, d: int, k: float, *, grads: bool = True, activations: bool = True
    ) -> Any:
        """Slot ``j``'s memory less its capacity (KB) with ``k`` in-flight micro-batches: model
        state (without on-demand gradients unless ``grads``), overhead, and the activations,
        the head's and the rebuilt block unless not ``activations``."""
        t = self.t
        vs, cs = self._part(j, "static", d)
        if not grads:
            _, gs = self._part(j, "grads", d)
            cs = [c - g for c, g in zip(cs, gs, strict=True)]
        y, x, z = self.y[j], self.x[j], self.z[j]
        for o, opt in enumerate(t.options):
            fixed = opt.overhead + opt.transient[d] - opt.capacity
            if activations:
                fixed += opt.act_head if j == 0 else 0
                acts = (math.ceil(opt.act_layer * k), math.ceil(opt.act_embed * k))
            else:
                fixed -= opt.rebuilt.get(d, 0)
                acts = (0, 0)
            vs += (y[o], x[o], z[o])
            cs += (acts[0], fixed, acts[1])
        return _wsum(vs, cs)

    def _engine(self) -> None:
        """The target engines' limits (:class:`solver.engines.ShapeLimits`): one TP degree, one
        pool, the layer splits they express.

        ``uniform_tp``/``single_pool``: one-hot over TP degrees / pools that every active stage's
        option must match (the planner usually splits sub-problems by TP degree already, so the
        one-hot is then fixed).  ``layer_split``: ``even`` -- every active stage holds the same
        block count; ``even_except_ends`` -- every middle stage does (Megatron-Core's first/last
        stage flags); ``any`` -- nothing to add (Megatron-Core's pipeline layout, vLLM's
        partition).  TP degrees the head rules or ``max_tp`` refuse are forbidden outright;
        ``max_pp`` is the sub-problem's stage limit (``TrainTables.max_stages``).
        """
        rules, t, m = self.t.engine, self.t, self.m
        if rules is None:
            return
        heads, kv = t.heads
        for o, opt in enumerate(t.options):
            if not rules.allows_tp(opt.tp, heads, kv):
                for j in range(self.J):
                    m.add(self.x[j][o] == 0)
        if rules.max_pp is not None and rules.max_pp < self.J:
            m.add(_lsum(self.active) <= rules.max_pp)
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
