"""Baseline planners, scored by the evaluator: the rubric, a uniform grid and exhaustive search.

* :func:`rubric_plan` -- the seed's decision rubric (DP if it fits one GPU, TP in a node, PP
  across nodes), the plan a practitioner writes down first;
* :func:`uniform_best` -- a Megatron-style grid over (t, p, d, b, ...) with even layer splits
  on one pool, what a practitioner finds by sweeping launch flags;
* :func:`exhaustive_best` -- every plan of the CP model's search space, for small instances:
  the ground truth the planner is tested against.
"""

from __future__ import annotations

from .exhaustive import exhaustive_best, training_plan_count
from .rubric import rubric_plan, rubric_pool
from .uniform import uniform_best

__all__ = ["exhaustive_best", "rubric_plan", "rubric_pool", "training_plan_count", "uniform_best"]
