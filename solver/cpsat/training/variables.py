"""The training model's variables (made by ``TrainingModel._build``, declared here for the
rule classes) and the linear terms read off them: per-slot parts of a table, in-flight
micro-batches, the tight big-M of blocks per slot."""

from __future__ import annotations

from typing import Any

from ortools.sat.python import cp_model

from .data import TrainTables

__all__ = ["Variables"]

#: Linear expressions built in one call from (variables, coefficients) lists: the model's rows
#: have hundreds of terms (a 126-slot model has ~60k), and chaining ``+`` in Python would build
#: one intermediate expression per term.  The constraint a row becomes is the same either way
#: (CP-SAT stores it with merged terms in variable order).
_wsum = cp_model.LinearExpr.weighted_sum
_lsum = cp_model.LinearExpr.sum


class Variables:
    """The CP model, its tables and the decision variables every rule reads.

    Slot ``j`` counts from the end of the pipeline (slot 0 is the last stage).
    """

    t: TrainTables
    m: cp_model.CpModel
    J: int  # stage slots in the model
    dsel: dict[int, cp_model.IntVar]  # d -> DP degree d is chosen
    active: list[cp_model.IntVar]  # slot j holds a stage
    first: list[cp_model.IntVar]  # slot j is the first stage (the highest active slot)
    x: list[list[cp_model.IntVar]]  # x[j][o]: slot j runs option o
    n: list[cp_model.IntVar]  # blocks on slot j
    y: list[list[cp_model.IntVar]]  # y[j][o] = n[j] if x[j][o] else 0
    z: list[list[cp_model.IntVar]]  # z[j][o] = first[j] and x[j][o]
    _names: list[str]  # option labels, for variable names
    _pair_cache: dict[int, tuple[int, list[tuple[int, int]]]]  # see Objective._pair_prices

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
