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

* :mod:`.data` -- the tables the model is built from, and the choice it returns;
* :mod:`.variables` -- its variables and the linear terms read off them;
* :mod:`.constraints` -- the rules, one method each;
* :mod:`.objective` -- stage times, hand-off prices, DP exposure and the step time (or cost);
* :mod:`.model` -- :class:`~.model.TrainingModel`: builds, hints, solves and reads back.
"""
