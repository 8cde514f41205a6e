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
from solver.cpsat.bounds import lower_bound_us
from solver.cpsat.subproblems import families
from solver.cpsat.tables.build import build_tables, stages_limit
from solver.cpsat.tables.family import choose_unit, min_block_seconds
from solver.cpsat.training.data import TrainTables
from solver.cpsat.training.model import TrainingModel
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


def test_run_condition_admits_every_placement() -> None:
    """run_fits is necessary: whenever placement keeps every replica's hand-off of a run of
    consecutive same-pool stages inside one NVLink domain, d x sum(tp) <= domain GPUs.
    Brute force over TP sequences and DP degrees on pools of 2-4 nodes (one- and two-node
    domains)."""
    import itertools

    from solver.cpsat.tables.hops import colocation_possible, run_fits
    from solver.placement import PlacementError, StageSlot, place

    base = load_cluster("tiny-2x4-a100")
    checked = 0
    for nodes, gpn, dom in ((2, 4, 1), (4, 4, 1), (4, 2, 2), (2, 8, 1)):
        pool0 = base.pools[0]
        pool = pool0.model_copy(
            update={"nodes": nodes, "gpus_per_node": gpn, "nvlink_domain_nodes": dom}
        )
        cl = base.model_copy(update={"pools": [pool]})
        size = gpn * dom
        tps = [t for t in (1, 2, 4, 8) if t <= size]
        for p in range(2, 6):
            for seq in itertools.product(tps, repeat=p):
                for d in (1, 2, 3, 4):
                    try:
                        devs = place(cl, [(d, [StageSlot(pool.name, t) for t in seq])])[0]
                    except PlacementError:
                        continue
                    dmn = [
                        [{int(n.rsplit("-", 1)[1]) // dom for n, _ in devs[s][r]} for r in range(d)]
                        for s in range(p)
                    ]
                    near = [
                        all(len(dmn[s][r] | dmn[s + 1][r]) == 1 for r in range(d))
                        for s in range(p - 1)
                    ]
                    for a in range(p - 1):
                        for b in range(a + 1, p):
                            if all(near[a:b]):
                                checked += 1
                                assert run_fits(size, list(seq[a : b + 1]), d), (
                                    nodes,
                                    gpn,
                                    dom,
                                    seq,
                                    d,
                                    a,
                                    b,
                                )
                                if b == a + 1:
                                    assert colocation_possible(pool, seq[a], seq[b], d)
    assert checked > 100


@pytest.mark.parametrize(
    ("model", "cluster", "workload"),
    [("tiny-gpt", "tiny-2x4-a100", "train-tiny"), ("tiny-llama", "tiny-2x4-a100", "train-tiny")],
)
def test_mirror_matches_cp_with_near_runs(model: str, cluster: str, workload: str) -> None:
    """With hops priced optimistically (for_dp) the model adds the run condition on near
    hops (hop_runs); the mirror still scores CP-SAT's optimum exactly, and every warm start
    is a plan of the model."""
    from solver.cpsat.tables.build import for_dp
    from solver.cpsat.training.data import hop_runs

    m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
    fams = families(w)
    unit = choose_unit(min_block_seconds(m, c, w, fams))
    with_runs = 0
    for fam in fams[:3]:
        tab = build_tables(m, c, w, fam, unit_s=unit)
        if tab is None:
            continue
        for d in tab.dp_degrees[:3]:
            sub = for_dp(tab, d)
            sub = dataclasses.replace(sub, max_stages=min(stages_limit(sub, d), 8))
            if hop_runs(sub) is None:
                continue
            with_runs += 1
            status, choice, _ = TrainingModel(sub).solve(5.0, 2, 0)
            if status != cp_model.OPTIMAL:
                continue
            assert choice is not None
            assert stage_objective(sub, d, choice.stages) == choice.objective
            start = warm_start(sub, d)
            if start is not None:
                assert start.objective >= choice.objective
                # The warm start's score is the model's: pinned to its stages, CP-SAT agrees.
                cm = TrainingModel(sub)
                p = len(start.stages)
                for j in range(cm.J):
                    s = p - 1 - j
                    for o, opt in enumerate(sub.options):
                        use = s >= 0 and start.stages[s][0] is opt
                        cm.m.add(cm.x[j][o] == int(use))
                        cm.m.add(cm.y[j][o] == (start.stages[s][1] if use else 0))
                st2, ch2, _ = cm.solve(5.0, 2, 0)
                assert st2 == cp_model.OPTIMAL and ch2 is not None
                assert ch2.objective == start.objective
    assert with_runs >= 1


def test_mirror_matches_cp_when_dp_traffic_binds() -> None:
    """Plain 1F1B hides a stage's DP traffic behind the earlier stages' backward *and* the
    gradient hand-offs between them (the evaluator's simulation), and a hop off a near run
    hides its far excess too: with DP traffic scaled up so that the exposure binds, the
    mirror (its near/far search included) still scores every pinned pipeline exactly as
    CP-SAT does."""
    import random

    from solver.cpsat.tables.build import for_dp
    from solver.cpsat.training.data import hop_runs

    m, c, w = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny")
    fams = families(w)
    unit = choose_unit(min_block_seconds(m, c, w, fams))
    rng = random.Random(1)
    checked = binding = 0

    def scaled(t: TrainTables, k: int) -> TrainTables:
        opts = [
            dataclasses.replace(
                o, dp={n: {e: k * x for e, x in v.items()} for n, v in o.dp.items()}
            )
            for o in t.options
        ]
        return dataclasses.replace(t, options=opts)

    for fam in fams[:3]:
        tab = build_tables(m, c, w, fam, unit_s=unit)
        if tab is None:
            continue
        for d in [e for e in tab.dp_degrees if e >= 2][:2]:  # d = 1 has no DP traffic
            sub = for_dp(tab, d)
            if hop_runs(sub) is None:
                continue
            sub = dataclasses.replace(sub, max_stages=min(stages_limit(sub, d), 8))
            loud, quiet = scaled(sub, 20), scaled(sub, 0)
            for _ in range(60):
                p = rng.randint(2, min(8, sub.num_layers, sub.max_stages))
                cuts = sorted(rng.sample(range(1, sub.num_layers), p - 1))
                sizes = [b - a for a, b in zip([0, *cuts], [*cuts, sub.num_layers], strict=True)]
                picks = [rng.randrange(len(sub.options)) for _ in sizes]
                stages = [(loud.options[i], k) for i, k in zip(picks, sizes, strict=True)]
                want = stage_objective(loud, d, stages)
                if want is None:
                    continue
                silent = stage_objective(
                    quiet, d, [(quiet.options[i], k) for i, k in zip(picks, sizes, strict=True)]
                )
                cm = TrainingModel(loud)
                if cm.J < p:
                    continue
                for j in range(cm.J):
                    s = p - 1 - j
                    for o, opt in enumerate(loud.options):
                        use = s >= 0 and stages[s][0] is opt
                        cm.m.add(cm.x[j][o] == int(use))
                        cm.m.add(cm.y[j][o] == (stages[s][1] if use else 0))
                status, choice, _ = cm.solve(10.0, 1, 0)
                assert status == cp_model.OPTIMAL and choice is not None
                assert choice.objective == want
                checked += 1
                binding += silent is not None and want > silent
    assert checked >= 6 and binding >= 3, (checked, binding)
