"""The seed article's claims, checked on the bundled instances with the planner and the evaluator.

The seed (``../shared/seed-000_2ceb2aec863ebc4d.txt``) makes five structural claims:

(a) "A 32-GPU deployment across 4 nodes commonly runs TP=8 (within each 8-GPU node) and PP=4
    (across the 4 nodes)" for a model too large for one node;
(b) on PCIe "TP collapses into something that runs but no longer accelerates", so training on a
    PCIe-only box avoids TP;
(c) "Is latency the goal? Maximise TP degree within the bandwidth domain, minimise PP stages";
(d) "Does the model fit on one GPU? If yes, start with DP and stop";
(e) "TP within each node, PP across nodes" on multi-node deployments.

Each test states the claim, runs the planner (``deterministic=True``, a few seconds), re-scores
its plan with :func:`solver.evaluate.evaluate`, and compares it with the plan the claim
prescribes, built with the same placement convention as every baseline
(:func:`solver.baselines.uniform.uniform_grid`) and scored by the same evaluator.  Where the
evaluator prefers another plan the test asserts that, and the docstring says by how much and
why.  Numbers in docstrings were observed with the cost model of this commit (evaluator
tokens/s; they move when the cost model is recalibrated, the asserted inequalities should not).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

from solver import load_cluster, load_model, load_workload
from solver.baselines import rubric_plan
from solver.baselines.uniform import uniform_grid
from solver.catalog import gpu_of
from solver.construction import objective_of
from solver.costmodel import constants as C
from solver.costmodel import total_params
from solver.costmodel.memory import BYTES_PER_PARAM
from solver.evaluate import evaluate
from solver.planner import plan
from solver.result import Result, Status
from solver.specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Nic,
    Plan,
    TrainingWorkload,
)

AnyWorkload = TrainingWorkload | InferenceWorkload

#: Planner budget per solve (the CLI default is 10 s): the small solves finish well inside it,
#: the 32-64 GPU ones return FEASIBLE with a gap, which is what a user with a short budget gets.
TIME_LIMIT_S = 3.0

#: Ties between two plans the evaluator scores identically must not fail a ">=" (float noise).
TIE_RTOL = 1e-9

OK = (Status.OPTIMAL, Status.FEASIBLE)


# --------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------
def one_node_h100() -> Cluster:
    """One 8-GPU NVSwitch H100 node: ``seed-4x8-h100`` cut to a single node."""
    c = load_cluster("seed-4x8-h100")
    return c.model_copy(
        update={"name": "seed-1x8-h100", "pools": [c.pools[0].model_copy(update={"nodes": 1})]}
    )


_INLINE: dict[str, Callable[[], Cluster]] = {"seed-1x8-h100": one_node_h100}


@cache
def _cluster(name: str) -> Cluster:
    return _INLINE[name]() if name in _INLINE else load_cluster(name)


@cache
def solve(model: str, cluster: str, workload: str, time_limit_s: float = TIME_LIMIT_S) -> Result:
    """The planner's result (cached: several claims read the same solve)."""
    return plan(
        load_model(model),
        _cluster(cluster),
        load_workload(workload),
        time_limit_s=time_limit_s,
        deterministic=True,
        compare_baseline=False,
    )


def solved(model: str, cluster: str, workload: str) -> tuple[Plan, dict[str, Any]]:
    """The planner's plan and the evaluator's fresh report of it; both must be clean."""
    res = solve(model, cluster, workload)
    assert res.status in OK, f"{res.status}: {res.message}"
    assert res.plan is not None
    report = evaluate(
        load_model(model), _cluster(cluster), load_workload(workload), res.plan
    ).to_dict()
    assert report["feasible"], report["violations"]
    assert res.objective == pytest.approx(
        objective_of(report, load_workload(workload)), rel=TIE_RTOL
    )
    return res.plan, report


def best_uniform(
    model: Model, cluster: Cluster, workload: AnyWorkload, keep: Callable[[dict[str, Any]], bool]
) -> tuple[float, dict[str, Any], Plan]:
    """Best evaluator objective over the uniform grid points ``keep`` accepts (knobs free)."""
    sign = 1.0 if workload.objective == "max_throughput" else -1.0
    best: tuple[float, dict[str, Any], Plan] | None = None
    for row, p in uniform_grid(model, cluster, workload):
        if not keep(row):
            continue
        rep = evaluate(model, cluster, workload, p).to_dict()
        if not rep["feasible"]:
            continue
        obj = objective_of(rep, workload)
        if best is None or sign * obj > sign * best[0]:
            best = (obj, row, p)
    assert best is not None, "no feasible plan of that shape"
    return best


# --------------------------------------------------------------------------------------------
# Structure of a plan
# --------------------------------------------------------------------------------------------
def tp_groups_inside_one_node(p: Plan) -> bool:
    """Every TP group (each stage of each replica) sits on one node."""
    return all(
        len({node for node, _ in group}) == 1
        for rg in p.replica_groups
        for st in rg.stages
        for group in st.devices
    )


def pipelines_cross_nodes(p: Plan) -> bool:
    """Every replica's consecutive stages are joined by at least one inter-node hop."""
    for rg in p.replica_groups:
        for r in range(rg.count):
            nodes = [st.devices[r][0][0] for st in rg.stages]
            if len(set(nodes)) < 2:
                return False
    return True


def shape(p: Plan) -> list[tuple[int, list[int]]]:
    """``(replicas, [tp per stage])`` per replica group, for messages."""
    return [(rg.count, [st.tp for st in rg.stages]) for rg in p.replica_groups]


def model_state_GB(model: Model, workload: TrainingWorkload) -> float:
    """Weights + gradients + optimizer states of the whole model, unsharded (GB)."""
    per_param = sum(BYTES_PER_PARAM[workload.memory_policy])
    return total_params(model, workload.sequence_length) * per_param / 1e9


def node_memory_GB(cluster: Cluster) -> float:
    pool = cluster.pools[0]
    return pool.gpus_per_node * gpu_of(pool).memory_GB


# --------------------------------------------------------------------------------------------
# (a) TP=8 inside nodes, PP=4 across them, for a model too large for one node
# --------------------------------------------------------------------------------------------
def tp8_pp4(row: dict[str, Any]) -> bool:
    return row["tp"] == 8 and row["pp"] == 4


def test_gpt39b_too_large_for_one_node() -> None:
    """GPT-39B's training state (39.1B params x 18 B = 704 GB) exceeds one node of 8 H100s
    (8 x 85 GB usable = 680 GB)."""
    m, w = load_model("gpt-39b"), load_workload("train-gpt-s2048")
    assert isinstance(w, TrainingWorkload)
    assert model_state_GB(m, w) == pytest.approx(704, abs=1)
    assert model_state_GB(m, w) > node_memory_GB(_cluster("seed-4x8-h100")) == 680


def test_gpt39b_on_4x8_h100_beats_tp8_pp4_because_tp8_allreduce_costs_a_fifth() -> None:
    """GPT-39B on seed-4x8-h100: the planner's plan >= the best TP8xPP4 plan; another plan wins.

    Observed: best TP8 x PP4 x DP1 (mb 4, no recompute, SP) 47,581 tokens/s; the planner's plan
    (TP 2-4 per stage, PP 3-8, DP 2-4, depending on how far the time limit lets it search;
    TP2 x PP8 x DP2 in 3-5 s) 55,372-55,526 tokens/s, i.e. +16-17%.  Why: at TP=8 the
    per-layer all-reduces take 4.3 s of each stage's 21.0 s busy time per step (21%); at TP=2
    they take 0.6 s of 17.1 s (3.6%).  The deeper pipeline and larger DP degree that smaller TP
    groups allow cost less (bubble 4.6% -> 8.4%, DP all-reduce hidden behind backward) than the
    TP traffic saved.
    Structure: every TP group stays inside one node; each pipeline crosses nodes.
    """
    m, c, w = load_model("gpt-39b"), _cluster("seed-4x8-h100"), load_workload("train-gpt-s2048")
    p, rep = solved("gpt-39b", "seed-4x8-h100", "train-gpt-s2048")
    ref, row, ref_plan = best_uniform(m, c, w, tp8_pp4)
    ref_rep = evaluate(m, c, w, ref_plan).to_dict()
    assert rep["tokens_per_s"] >= ref * (1 - TIE_RTOL), (shape(p), rep["tokens_per_s"], ref, row)
    # The margin and its cause, as documented above.
    assert rep["tokens_per_s"] / ref > 1.10
    tp_share_ref = max(s["tp_comm_s"] / s["busy_s"] for s in ref_rep["time_breakdown"])
    tp_share_plan = max(s["tp_comm_s"] / s["busy_s"] for s in rep["time_breakdown"])
    assert tp_share_ref > 0.15 > tp_share_plan
    assert tp_groups_inside_one_node(p) and pipelines_cross_nodes(p), shape(p)


def test_llama70b_too_large_for_one_node() -> None:
    """Llama-3-70B's training state (70.6B params x 18 B = 1,270 GB) is 1.87x one node's 680 GB."""
    m, w = load_model("llama3-70b"), load_workload("train-llama-s8192")
    assert isinstance(w, TrainingWorkload)
    assert model_state_GB(m, w) == pytest.approx(1270, abs=1)
    assert model_state_GB(m, w) > 1.8 * node_memory_GB(_cluster("seed-4x8-h100"))


def test_llama70b_on_4x8_h100_at_least_tp8_pp4() -> None:
    """Llama-3-70B, 8K sequences, on seed-4x8-h100: the planner's plan >= the best TP8xPP4 plan.

    Observed on the 2021 stack (un-fused attention): best TP8 x PP4 x DP1 (selective recompute)
    17,606 tokens/s, the optimum TP 8,8,8,4,4 at 18,039 (+2.5%).  On today's stack (flash
    attention, no dropout; the workload's default) no s^2 activations are stored, so TP4 stages
    fit without recompute: best TP8 x PP4 (no recompute, SP) 30,211 tokens/s; the unrestricted
    optimum TP 8,4,4,4,4,4,4 (PP7, mixed TP: not launchable by Megatron) 32,960 (+9.1%); the
    planner's default, the best launchable plan, TP4 x PP8 with layers 7/10/10/11/11/11/11/9
    (Megatron's pipeline layout) 32,367 (+7.1%).  The seed's rule of thumb is within ~10% of
    the optimum here; TP stays inside a node, one TP degree for every stage.
    """
    m, c, w = (
        load_model("llama3-70b"),
        _cluster("seed-4x8-h100"),
        load_workload("train-llama-s8192"),
    )
    p, rep = solved("llama3-70b", "seed-4x8-h100", "train-llama-s8192")
    ref, row, _ = best_uniform(m, c, w, tp8_pp4)
    assert rep["tokens_per_s"] >= ref * (1 - TIE_RTOL), (shape(p), rep["tokens_per_s"], ref, row)
    assert rep["tokens_per_s"] <= ref * 1.12  # the rule of thumb is close here
    assert tp_groups_inside_one_node(p) and pipelines_cross_nodes(p), shape(p)
    assert len({tp for _, tps in shape(p) for tp in tps}) == 1  # launchable: one TP degree


# --------------------------------------------------------------------------------------------
# (b) PCIe-only boxes: training avoids TP unless the evaluator shows it wins
# --------------------------------------------------------------------------------------------
def tp_free_twin(cluster: Cluster) -> Cluster:
    """The same single-node box as 1-GPU nodes whose NIC prices exactly like the PCIe link.

    On the twin no TP group can form (``gpus_per_node = 1``), and every link a TP=1 plan uses
    is priced identically (effective bandwidth = PCIe x PCIE_BUS_EFFICIENCY re-expressed as a
    NIC share, same latency), so the planner's optimum on the twin is the best TP=1 plan of the
    original box.  ``test_pcie_training_avoids_tp`` checks that equivalence on that plan.
    """
    pools = []
    for pool in cluster.pools:
        assert pool.nodes == 1 and pool.intra_node.kind == "pcie"
        effective = pool.intra_node.bandwidth_GBps * C.PCIE_BUS_EFFICIENCY
        nic = Nic(
            count=1,
            bandwidth_GBps=effective / C.NIC_BUS_EFFICIENCY,
            latency_us=pool.intra_node.latency_us,
        )
        pools.append(
            pool.model_copy(update={"nodes": pool.gpus_per_node, "gpus_per_node": 1, "nic": nic})
        )
    return cluster.model_copy(update={"name": f"{cluster.name}-tp-free", "pools": pools})


def twin_plan_on_box(p: Plan, box: Cluster) -> Plan:
    """Map a twin plan's devices (node k, GPU 0) back to the box (node 0, GPU k)."""
    doc = p.model_dump(mode="json", exclude={"predicted", "solver"})
    for rg in doc["replica_groups"]:
        for st in rg["stages"]:
            pool = box.pool(st["pool"])
            st["devices"] = [
                [[f"{pool.name}-0", int(node.rpartition("-")[2])] for node, _ in group]
                for group in st["devices"]
            ]
    return Plan.model_validate(doc)


PCIE_CASES = [
    # (model, cluster, workload): models too large for one GPU's training state, so PP or
    # sharding is needed and TP is a real alternative.
    ("llama3-8b", "pcie-8x-l40s", "train-llama-s8192"),
    ("llama3-8b", "pcie-8x-a100", "train-llama-s8192"),
    ("gpt-3.6b", "pcie-8x-l40s", "train-gpt-s2048"),
    ("gpt-7.5b", "pcie-8x-a100", "train-gpt-s2048"),
]


@pytest.mark.parametrize(("model", "cluster", "workload"), PCIE_CASES)
def test_pcie_training_avoids_tp(model: str, cluster: str, workload: str) -> None:
    """On a PCIe-only box the planner trains with TP=1, or its TP plan beats the best TP=1 plan.

    The best TP=1 plan is the planner's proven optimum on :func:`tp_free_twin` (OPTIMAL),
    re-scored on the real box.  Observed (tokens/s): llama3-8b/l40s TP=1 PP4 DP2 7,781;
    gpt-3.6b/l40s TP=1 PP2 DP4 32,476; gpt-7.5b/a100 TP=1 PP2 DP4 24,651 (best uniform TP=2
    plans: 7,637, 26,188, 18,971).  llama3-8b/a100 is the one exception the evaluator
    justifies: TP=1 stages of 9 and 9 layers and a TP=2 last stage of 14 layers (DP2) with the
    128K-vocabulary head, 13,624 vs the best TP=1 plan (PP4 7/9/9/7, DP2) 13,612.5: +0.09%.
    """
    m, box, w = load_model(model), _cluster(cluster), load_workload(workload)
    assert isinstance(w, TrainingWorkload)
    assert model_state_GB(m, w) > gpu_of(box.pools[0]).memory_GB  # TP/PP/sharding needed
    p, rep = solved(model, cluster, workload)
    if all(st.tp == 1 for rg in p.replica_groups for st in rg.stages):
        return
    twin = tp_free_twin(box)
    best_tp1 = plan(
        m, twin, w, time_limit_s=TIME_LIMIT_S, deterministic=True, compare_baseline=False
    )
    assert best_tp1.status == Status.OPTIMAL and best_tp1.plan is not None, best_tp1.message
    on_box = evaluate(m, box, w, twin_plan_on_box(best_tp1.plan, box)).to_dict()
    assert on_box["feasible"], on_box["violations"]
    # The twin prices this TP=1 plan exactly as the box does.
    assert on_box["tokens_per_s"] == pytest.approx(best_tp1.objective, rel=TIE_RTOL)
    assert rep["tokens_per_s"] > on_box["tokens_per_s"], (shape(p), rep["tokens_per_s"])


# --------------------------------------------------------------------------------------------
# (c) Latency-bound inference maximises TP inside the NVLink domain
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cluster", ["seed-1x8-h100", "seed-4x8-h100"])
def test_latency_inference_llama70b_uses_tp8_pp1(cluster: str) -> None:
    """infer-latency (batch 1, min TPOT) for Llama-3-70B: every replica is TP=8, PP=1 in a node.

    Observed on one 8-GPU NVSwitch H100 node (evaluator TPOT, best PP for each TP): TP=8 PP=1
    13.41 ms; TP=4 15.97 ms; TP=2 27.01 ms; TP=1 needs PP>=2 (143.8 GB > 80 GB), 52.03 ms.
    PP only adds hops (TP=4 PP=2 15.99 ms).  The planner's TPOT equals the best TP=8 plan's.
    """
    m, c, w = load_model("llama3-70b"), _cluster(cluster), load_workload("infer-latency")
    p, rep = solved("llama3-70b", cluster, "infer-latency")
    for rg in p.replica_groups:
        assert [st.tp for st in rg.stages] == [8], shape(p)
    assert tp_groups_inside_one_node(p)
    tp8, _, _ = best_uniform(m, c, w, lambda r: r["tp"] == 8)
    tp4, _, _ = best_uniform(m, c, w, lambda r: r["tp"] == 4)
    assert rep["tpot_ms"] == pytest.approx(tp8, rel=TIE_RTOL)
    assert tp8 < tp4 * 0.9  # TP=8 is >10% faster per token than TP=4


def test_latency_inference_small_model_maximises_tp_with_custom_allreduce() -> None:
    """Llama-3-8B at batch 1: with the engines' custom all-reduce, TP=8 is the fastest and the
    planner picks it, as the rubric says ("Is latency the goal? Maximise TP degree within the
    bandwidth domain").

    Under the plain ``roofline`` engine (an NCCL ring all-reduce of 2(n-1) latency terms even for
    8B's 8 KB decode messages, which issue 16 calls wrong) TP=8 was slower than TP=4 (TPOT 3.57
    vs 2.64 ms).  vLLM's one-shot custom all-reduce (one NVLink latency for messages below
    256 KiB at TP=8, ``custom_all_reduce.cuh``; see ``solver.costmodel.serving_engine``) takes
    the all-reduce off the critical path, and TP=8 wins: observed TPOT vLLM TP=4 4.70 ms,
    TP=8 4.03 ms.  The planner's TPOT equals the evaluator's fastest TP.
    """
    m, c, w = load_model("llama3-8b"), _cluster("seed-1x8-h100"), load_workload("infer-latency")
    assert isinstance(w, InferenceWorkload)
    p, rep = solved("llama3-8b", "seed-1x8-h100", "infer-latency")
    tpots = {t: best_uniform(m, c, w, lambda r, t=t: r["tp"] == t)[0] for t in (1, 2, 4, 8)}
    fastest = min(tpots, key=lambda t: tpots[t])
    assert fastest == 8 and tpots[8] < tpots[4] < tpots[2] < tpots[1]
    assert rep["tpot_ms"] <= tpots[fastest] * (1 + TIE_RTOL)
    assert {st.tp for rg in p.replica_groups for st in rg.stages} == {fastest}
    ring = w.model_copy(update={"serving_engine": "roofline"})
    ring_tpots = {t: best_uniform(m, c, ring, lambda r, t=t: r["tp"] == t)[0] for t in (4, 8)}
    assert ring_tpots[8] > ring_tpots[4]  # the ring's latency terms made TP=8 lose


# --------------------------------------------------------------------------------------------
# (d) A model that fits one GPU trains with pure DP
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "cluster", "workload"),
    [
        ("gpt-1.7b", "seed-1x8-h100", "train-gpt-s2048"),
        ("tiny-gpt", "seed-1x8-h100", "train-tiny"),
        ("gpt-1.7b", "pcie-8x-a100", "train-gpt-s2048"),
    ],
)
def test_model_that_fits_one_gpu_gets_pure_dp(model: str, cluster: str, workload: str) -> None:
    """A model whose training state fits one GPU runs TP=1, PP=1, DP = all 8 GPUs.

    Observed: gpt-1.7b (1.7B x 18 B = 31 GB of state) on one H100 node: DP8 with micro-batch 1,
    214,884 tokens/s; tiny-gpt on the same node: DP8, 31.6M tokens/s; gpt-1.7b on the PCIe A100
    box: DP8, mb 4, 91,096 tokens/s.  The best non-DP plan is worse each time (checked below
    against the best uniform plan with TP or PP > 1).
    """
    m, c, w = load_model(model), _cluster(cluster), load_workload(workload)
    assert isinstance(w, TrainingWorkload)
    assert model_state_GB(m, w) < gpu_of(c.pools[0]).memory_GB
    p, rep = solved(model, cluster, workload)
    (rg,) = p.replica_groups
    assert [st.tp for st in rg.stages] == [1] and rg.count == c.num_gpus, shape(p)
    other, row, _ = best_uniform(m, c, w, lambda r: r["tp"] > 1 or r["pp"] > 1)
    assert rep["tokens_per_s"] > other, row


# --------------------------------------------------------------------------------------------
# (e) Hybrid: TP inside nodes, PP across nodes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "cluster", "workload"),
    [
        ("llama3-70b", "selene-a100-64", "train-llama-s8192"),
        ("gpt3-175b", "selene-a100-64", "train-gpt-s2048"),
    ],
)
def test_multi_node_training_is_hybrid(model: str, cluster: str, workload: str) -> None:
    """On 8 DGX A100 nodes a 70B and a 175B model get TP inside nodes and PP across nodes.

    Observed (3-10 s): llama3-70b/8K TP 8,8 or 8,4,4 (PP 2-3, DP4), 17,229-17,549 tokens/s;
    gpt3-175b TP4 x PP16 (DP1), 9,804 tokens/s vs the rubric's TP8 x PP4 x DP2 9,725.  Every
    TP group lies in one node and every pipeline crosses nodes; the planner's plan is at least
    the rubric's (TP8 in node, PP across nodes).  (Before the warm start, gpt3-175b here came
    back INFEASIBLE "time limit" at <= 10 s although the rubric's plan is feasible.)
    """
    m, c, w = load_model(model), _cluster(cluster), load_workload(workload)
    p, rep = solved(model, cluster, workload)
    assert tp_groups_inside_one_node(p), shape(p)
    assert pipelines_cross_nodes(p), shape(p)
    assert all(rg.pp > 1 for rg in p.replica_groups), shape(p)
    base = rubric_plan(m, c, w)
    assert base is not None
    base_rep = evaluate(m, c, w, base).to_dict()
    assert base_rep["feasible"]
    assert rep["tokens_per_s"] >= base_rep["tokens_per_s"] * (1 - TIE_RTOL)


def test_feasible_means_the_time_limit_was_used() -> None:
    """A FEASIBLE (not proven) result comes back only once the time limit is (nearly) spent.

    Found here: gpt-1.7b on one H100 node came back FEASIBLE after ~1.3 s of a 10 s limit (gap
    ~1%), a family that had used its share of the budget never being revisited; the planner now
    proves pure DP optimal.
    """
    limit = 5.0
    res = plan(
        load_model("gpt-1.7b"), _cluster("seed-1x8-h100"), load_workload("train-gpt-s2048"),
        time_limit_s=limit, deterministic=True, compare_baseline=False,
    )  # fmt: skip
    assert res.status in OK, res.message
    assert res.status == Status.OPTIMAL or res.time_s >= 0.9 * limit, (
        res.status,
        res.time_s,
        res.gap,
    )
