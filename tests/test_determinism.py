"""``deterministic=True`` reproduces the plan even when the time limit cuts the search short.

The budgets then read CP-SAT's deterministic time (a work counter) instead of the wall clock,
so two runs stop at the same point; on a loaded machine the wall-clock budgets would not.
"""

from __future__ import annotations

from solver import load_cluster, load_model, load_workload
from solver.planner import plan
from solver.result import Status


def test_deterministic_mode_repeats_a_time_limited_search() -> None:
    m, c, w = load_model("gpt-1.7b"), load_cluster("hetero-mix"), load_workload("train-gpt-s2048")
    # any-plan: the unrestricted search is the one this limit cuts short (the launchable
    # default closes this instance within it).
    runs = [
        plan(m, c, w, time_limit_s=0.5, deterministic=True, compare_baseline=False, engine="any-plan")
        for _ in range(2)
    ]
    assert runs[0].status == Status.FEASIBLE  # the limit binds: the point of this test
    a, b = (r.plan.model_dump(exclude={"solver": {"time_s"}}) for r in runs if r.plan)
    assert a == b
    assert runs[0].objective == runs[1].objective and runs[0].bound == runs[1].bound
