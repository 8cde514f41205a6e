"""Baselines: the rubric follows the seed's rubric, uniform keeps its best point, exhaustive counts."""

from __future__ import annotations

import pytest
from builders import H100, gpt, gpu, pool, train

from solver.baselines import exhaustive_best, rubric_plan, rubric_pool, uniform_best
from solver.baselines.exhaustive import training_plan_count
from solver.construction import objective_of
from solver.evaluate import evaluate
from solver.specs import Cluster, InferenceWorkload, Plan, Pool


def _cluster(*pools: Pool) -> Cluster:
    return Cluster(name="test", pools=list(pools))


def _shape(plan: Plan) -> tuple[int, list[tuple[str, int, int]]]:
    """(replicas, [(pool, tp, layers) per stage]) of a one-group plan."""
    (g,) = plan.replica_groups
    return g.count, [(s.pool, s.tp, s.num_layers) for s in g.stages]


# A 8-layer, h=2048 GPT: 8 x (12 h^2 + 13 h) + V h = 404.9M parameters, 7.29 GB of model state
# at 18 B/param (ZeRO-0) before activations, plus the 1.59 GB framework overhead
# (FRAMEWORK_OVERHEAD_GB: CUDA context + NCCL buffers + cuBLAS workspaces).
BIG = gpt(8, hidden=2048, heads=16)


# --------------------------------------------------------------------------------------------
# rubric
# --------------------------------------------------------------------------------------------
def test_rubric_fits_one_gpu_gives_pure_dp() -> None:
    """A model that fits one GPU gets TP = PP = 1 and DP over all 8 GPUs of the pool."""
    cluster = _cluster(pool("a100", "A100-SXM4-80GB", nodes=2, gpn=4))
    plan = rubric_plan(gpt(4), cluster, train(16))
    assert plan is not None
    assert _shape(plan) == (8, [("a100", 1, 4)])


def test_rubric_too_big_for_one_gpu_gets_tp_in_node() -> None:
    """7.3 GB of state + 1.59 GB overhead > 8 GB: the smallest in-node TP that fits is 2, DP 4."""
    cluster = _cluster(pool("p", gpu(H100, 8.0), nodes=2, gpn=4))
    plan = rubric_plan(BIG, cluster, train(16, zero=0))
    assert plan is not None
    assert _shape(plan) == (4, [("p", 2, 8)])
    assert evaluate(BIG, cluster, train(16, zero=0), plan).feasible


def test_rubric_too_big_for_one_node_gets_tp_node_pp_across() -> None:
    """On 3.3 GB GPUs TP=4 alone needs 7.3/4 + 1.59 > 3.3 GB: TP = gpus_per_node, PP = 2."""
    cluster = _cluster(pool("p", gpu(H100, 3.3), nodes=2, gpn=4))
    plan = rubric_plan(BIG, cluster, train(16, zero=0))
    assert plan is not None
    assert _shape(plan) == (1, [("p", 4, 4), ("p", 4, 4)])


def test_rubric_returns_none_when_nothing_fits() -> None:
    """7.3 GB of state over 2 GPUs of 3 GB each (1.59 GB overhead) fits no rubric shape."""
    cluster = _cluster(pool("p", gpu(H100, 3.0), nodes=1, gpn=2))
    assert rubric_plan(BIG, cluster, train(16, zero=0)) is None


def test_rubric_latency_maximises_tp() -> None:
    """min_latency: the largest TP of the NVLink domain (4), PP = 1, replicas for the rest."""
    cluster = _cluster(pool("h100", "H100-SXM5-80GB", nodes=2, gpn=4))
    wl = InferenceWorkload(
        kind="inference",
        prompt_tokens=128,
        output_tokens=32,
        batch_size=[1, 4],
        objective="min_latency",
    )
    plan = rubric_plan(gpt(4), cluster, wl)
    assert plan is not None
    (g,) = plan.replica_groups
    assert (g.count, g.batch_size, [s.tp for s in g.stages]) == (2, 1, [4])


def test_rubric_throughput_takes_largest_batch_meeting_slos() -> None:
    """Throughput: DP of one-GPU replicas at the largest batch whose TPOT meets the SLO."""
    cluster = _cluster(pool("a100", "A100-SXM4-80GB", gpn=4))
    loose = InferenceWorkload(
        kind="inference", prompt_tokens=256, output_tokens=64, batch_size=[1, 8, 64]
    )
    plan = rubric_plan(gpt(4), cluster, loose)
    assert plan is not None
    (g,) = plan.replica_groups
    assert (g.count, g.batch_size, [s.tp for s in g.stages]) == (4, 64, [1])
    # A TPOT SLO between batch 8's and batch 64's decode step leaves batch 8.
    tpot64 = evaluate(gpt(4), cluster, loose, plan).to_dict()["tpot_ms"]
    tight = loose.model_copy(update={"tpot_ms": tpot64 * 0.99})
    plan = rubric_plan(gpt(4), cluster, tight)
    assert plan is not None
    assert plan.replica_groups[0].batch_size == 8
    assert evaluate(gpt(4), cluster, tight, plan).feasible


def test_rubric_target_deploys_just_enough_replicas() -> None:
    """min_gpus: the fewest one-GPU replicas whose summed throughput reaches the target."""
    model = gpt(4)
    cluster = _cluster(pool("a100", "A100-SXM4-80GB", nodes=2, gpn=2))
    one = InferenceWorkload(kind="inference", prompt_tokens=256, output_tokens=64, batch_size=64)
    per_replica = rubric_plan(model, cluster, one)
    assert per_replica is not None
    tput = evaluate(model, cluster, one, per_replica).to_dict()["tokens_per_s"] / 4
    wl = one.model_copy(
        update={"objective": "min_gpus", "target_throughput_tokens_per_s": 2.5 * tput}
    )
    plan = rubric_plan(model, cluster, wl)
    assert plan is not None
    assert plan.replica_groups[0].count == 3  # ceil(2.5)
    assert evaluate(model, cluster, wl, plan).to_dict()["tokens_per_s"] >= 2.5 * tput


def test_rubric_pool_most_gpus_then_fastest() -> None:
    """Heterogeneous: the pool with the most GPUs wins; on a tie, the faster GPU."""
    l40s = pool("l40s", "L40S", gpn=4)
    h100 = pool("h100", "H100-SXM5-80GB", gpn=4)
    a100 = pool("a100", "A100-SXM4-80GB", gpn=2)
    assert rubric_pool(_cluster(a100, l40s)).name == "l40s"
    assert rubric_pool(_cluster(l40s, h100)).name == "h100"


# --------------------------------------------------------------------------------------------
# uniform
# --------------------------------------------------------------------------------------------
def test_uniform_returns_best_of_its_table() -> None:
    """The returned plan's objective is the best feasible objective in the table."""
    model = gpt(4)
    cluster = _cluster(pool("h100", "H100-SXM5-80GB", gpn=4))
    wl = train(batch=8, micro=(1, 2))
    best, table = uniform_best(model, cluster, wl)
    assert best is not None
    feasible = [r["objective"] for r in table if r["feasible"]]
    got = objective_of(evaluate(model, cluster, wl, best).to_dict(), wl)
    assert got == pytest.approx(max(feasible), rel=1e-12)
    # Grid size by hand: tp 1 (p 1..4), 2 (p 1..2), 4 (p 1); d | 8/b with t p d <= 4;
    # b = 1: d in {1,2,4} -> (tp1: p1 3, p2 2, p3 1, p4 1) + (tp2: p1 2, p2 1) + (tp4: 1) = 11;
    # b = 2: d in {1,2,4} as well -> 11.
    assert len(table) == 22


def test_uniform_inference_min_gpus_is_one_replica() -> None:
    """A tiny model with a small target: the fewest GPUs is a single one-GPU replica."""
    model = gpt(2)
    cluster = _cluster(pool("h100", "H100-SXM5-80GB", gpn=4))
    wl = InferenceWorkload(
        kind="inference",
        prompt_tokens=128,
        output_tokens=32,
        batch_size=[1, 8],
        objective="min_gpus",
        target_throughput_tokens_per_s=10.0,
    )
    best, table = uniform_best(model, cluster, wl)
    assert best is not None
    assert min(r["objective"] for r in table if r["feasible"]) == 1.0
    assert sum(g.count * sum(s.tp for s in g.stages) for g in best.replica_groups) == 1


# --------------------------------------------------------------------------------------------
# exhaustive
# --------------------------------------------------------------------------------------------
TWO_GPUS = _cluster(pool("h100", "H100-SXM5-80GB", gpn=2))


def test_exhaustive_training_count_on_two_gpus() -> None:
    """2 layers, 2 GPUs, micro-batch 1 or 2, global batch 4: 8 plans, counted by hand."""
    # Per micro-batch b (B/b = 4 or 2, so d in {1, 2} either way):
    #   d = 1: p = 1 with tp 1 or 2 (2 plans); p = 2 with tp (1, 1) and split 1+1 (1 plan);
    #   d = 2: p = 1 with tp 1 (1 plan); p = 2 would need 4 GPUs.
    # 4 plans per micro-batch x 2 micro-batches = 8.
    model, wl = gpt(2), train(batch=4, micro=(1, 2))
    assert training_plan_count(model, TWO_GPUS, wl) == 8
    best, obj, n = exhaustive_best(model, TWO_GPUS, wl)
    assert n == 8
    assert best is not None and obj is not None


def test_exhaustive_sequence_parallel_only_with_tp() -> None:
    """Allowing SP adds only the plans with TP > 1: one per micro-batch, 8 + 2 = 10."""
    model, wl = gpt(2), train(batch=4, micro=(1, 2), sp=(True, False))
    assert training_plan_count(model, TWO_GPUS, wl) == 10
    assert exhaustive_best(model, TWO_GPUS, wl)[2] == 10


def test_exhaustive_inference_count_on_two_gpus() -> None:
    """2 layers, 2 GPUs, batch 1 or 2: 6 shapes + 3 two-replica deployments = 9 plans."""
    # Shapes (tp, pp) in {(1,1), (1,2), (2,1)} x batch {1, 2} = 6, each scored alone.
    # Deployments of >= 2 replicas within 2 GPUs: two one-GPU replicas, batches {1,1}, {1,2},
    # {2,2} = 3.  One-replica deployments reuse the shapes' scores.
    wl = InferenceWorkload(kind="inference", prompt_tokens=64, output_tokens=16, batch_size=[1, 2])
    best, obj, n = exhaustive_best(gpt(2), TWO_GPUS, wl)
    assert n == 9
    assert best is not None and obj is not None


def test_exhaustive_refuses_large_spaces() -> None:
    """More plans than max_plans is a ValueError before any evaluation."""
    with pytest.raises(ValueError, match="max_plans"):
        exhaustive_best(gpt(2), TWO_GPUS, train(batch=4, micro=(1, 2)), max_plans=7)


def test_exhaustive_dominates_uniform_and_rubric() -> None:
    """Exhaustive's space contains the uniform grid and the rubric plan: it is never worse."""
    model = gpt(4)
    cluster = _cluster(pool("h100", "H100-SXM5-80GB", gpn=4))
    wl = train(batch=8, micro=(1, 2))
    _, ex, _ = exhaustive_best(model, cluster, wl)
    uni, _ = uniform_best(model, cluster, wl)
    rub = rubric_plan(model, cluster, wl)
    assert ex is not None and uni is not None and rub is not None
    for plan in (uni, rub):
        assert objective_of(evaluate(model, cluster, wl, plan).to_dict(), wl) <= ex * (1 + 1e-12)


def test_exhaustive_infeasible_returns_none() -> None:
    """No plan fits (7.3 GB of state on 2 x 3 GB GPUs): (None, None, every plan scored)."""
    cluster = _cluster(pool("p", gpu(H100, 3.0), gpn=2))
    wl = train(16, zero=0)
    best, obj, n = exhaustive_best(BIG, cluster, wl)
    assert (best, obj) == (None, None)
    assert n == training_plan_count(BIG, cluster, wl) > 0
