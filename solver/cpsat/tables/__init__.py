"""Coefficient tables for the training CP model, computed with the cost model.

Every coefficient is one cost-model call (the same functions the evaluator uses), converted
to integers: times to microseconds (rounded to nearest), memory to kilobytes (rounded *up*,
so a plan the CP model accepts never exceeds a GPU's memory in the evaluator).

* :mod:`.family` -- the global knobs of a plan and the integer units (shared helpers);
* :mod:`.dp` -- DP degrees, exact block placement and a stage's DP traffic;
* :mod:`.stage` -- one per-stage option's coefficients;
* :mod:`.hops` -- pipeline hand-off prices and the NVLink run condition (``run_fits``);
* :mod:`.build` -- one family's tables, assembled, and cut to sub-problems.

The lower bounds the planner prunes with are computed from them in
:mod:`solver.cpsat.bounds` (its LP in :mod:`solver.cpsat.stage_lp`).
"""
