"""Pre-solve reasoning of the training planner (solver.cpsat.warmstart, lower bounds).

Each shortcut the planner takes before CP-SAT must be *valid*, or it would prune the optimum:

* the warm start's score is the CP model's own objective for the same stages (so using it
  as the incumbent is exact), checked against CP-SAT's optimum on the same sub-problem;
* the memory test never rejects a sub-problem CP-SAT finds feasible;
* the lower bound never exceeds CP-SAT's proven optimum.
"""

from __future__ import annotations

import dataclasses

import pytest
from ortools.sat.python import cp_model

from solver import load_cluster, load_model, load_workload
from solver.cpsat.plan_training import families
from solver.cpsat.tables import (
    build_tables,
    choose_unit,
    lower_bound_us,
    min_block_seconds,
    stages_limit,
)
from solver.cpsat.training import TrainingModel, TrainTables
from solver.cpsat.warmstart import memory_lower_bound_fails, stage_objective, warm_start

CASES = [
    ("tiny-gpt", "tiny-hetero", "train-tiny"),
    ("tiny-gpt", "tiny-2x4-a100", "train-tiny"),
    ("tiny-llama", "tiny-hetero", "train-tiny"),
    ("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"),
]


def _subproblems(model: str, cluster: str, workload: str) -> list[tuple[int, TrainTables]]:
    m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
    fams = families(w)
    unit = choose_unit(min_block_seconds(m, c, w, fams))
    out = []
    for fam in fams[:3]:
        tab = build_tables(m, c, w, fam, unit_s=unit)
        if tab is None:
            continue
        for d in tab.dp_degrees[:4]:
            sub = dataclasses.replace(tab, dp_degrees=[d])
            out.append((d, dataclasses.replace(sub, max_stages=min(stages_limit(sub, d), 8))))
    return out


@pytest.mark.parametrize(("model", "cluster", "workload"), CASES)
def test_shortcuts_are_valid_against_cp_sat(model: str, cluster: str, workload: str) -> None:
    checked = 0
    for d, sub in _subproblems(model, cluster, workload):
        status, choice, _ = TrainingModel(sub).solve(2.0, 2, 0)
        if status == cp_model.OPTIMAL:
            assert choice is not None
            checked += 1
            # The mirror scores CP-SAT's optimal stages exactly as the model does.
            assert stage_objective(sub, d, choice.stages) == choice.objective
            # The bound is a bound.
            assert lower_bound_us(sub) <= choice.objective
            # Memory pruning never removes a feasible sub-problem.
            assert not memory_lower_bound_fails(sub, d)
            # The warm start is a plan of the model: never better than its optimum.
            start = warm_start(sub, d)
            if start is not None:
                assert start.objective >= choice.objective
        elif status == cp_model.INFEASIBLE:
            assert warm_start(sub, d) is None  # a hint would be a feasible plan
    assert checked >= 1
