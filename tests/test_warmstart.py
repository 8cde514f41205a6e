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


def test_balanced_split_covers_every_block_once() -> None:
    from solver.cpsat.warmstart import _balanced

    for times in ([100, 100, 300], [1, 5], [7, 7, 7, 7]):
        for L in (len(times), 11, 48):
            counts = _balanced(L, times)
            assert counts is not None and sum(counts) == L and min(counts) >= 1
    assert _balanced(2, [1, 1, 1]) is None  # more stages than blocks
    # Faster stages get more blocks.
    fast, slow = _balanced(40, [100, 300])  # type: ignore[misc]
    assert fast > slow


def test_mixed_warm_start_uses_several_pools_on_a_heterogeneous_cluster() -> None:
    from solver.cpsat.warmstart import _mixed_candidates

    subs = _subproblems("tiny-gpt", "tiny-hetero", "train-tiny")
    pools_seen = set()
    for d, sub in subs:
        for stages in _mixed_candidates(sub, d):
            assert sum(n for _, n in stages) == sub.num_layers
            pools_seen.add(frozenset(o.pool for o, _ in stages))
            per_pool: dict[str, int] = {}
            for o, _ in stages:
                per_pool[o.pool] = per_pool.get(o.pool, 0) + o.tp
            assert all(used <= sub.pool_gpus[k] // d for k, used in per_pool.items())
    assert any(len(p) >= 2 for p in pools_seen)
