"""Evaluator: one feasible/infeasible pair per check, link pricing, metrics consistency."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from builders import training_plan

from solver.costmodel import (
    LinkTier,
    allreduce_time,
    kv_cache_bytes_per_token,
    model_state_bytes,
    stage_params_per_gpu,
)
from solver.costmodel import constants as C
from solver.evaluate import dp_links, evaluate, link_between, nic_link, tp_link
from solver.specs import (
    Calibration,
    Cluster,
    FabricLink,
    InferenceWorkload,
    Link,
    Model,
    Nic,
    Plan,
    Pool,
    TrainingWorkload,
)

TINY = Model(
    name="tiny",
    num_layers=4,
    hidden_size=1024,
    ffn_hidden_size=4096,
    num_attention_heads=16,
    num_kv_heads=16,
    vocab_size=32000,
    mlp="gelu",
    tied_embeddings=True,
)
LLAMA8B = Model(
    name="llama3-8b",
    num_layers=32,
    hidden_size=4096,
    ffn_hidden_size=14336,
    num_attention_heads=32,
    num_kv_heads=8,
    vocab_size=128256,
    mlp="swiglu",
)


def _pool(name: str, gpu: str, nodes: int = 2, gpn: int = 8, domain: int = 1, **kw: Any) -> Pool:
    return Pool(
        name=name,
        gpu=gpu,
        nodes=nodes,
        gpus_per_node=gpn,
        intra_node=Link(
            kind="nvswitch", bandwidth_GBps=450 if "H100" in gpu else 300, latency_us=3
        ),
        nvlink_domain_nodes=domain,
        nic=Nic(count=8, bandwidth_GBps=50, latency_us=5),
        **kw,
    )


A100_POOL = Pool(
    name="a100",
    gpu="A100-SXM4-80GB",
    nodes=2,
    gpus_per_node=8,
    intra_node=Link(kind="nvswitch", bandwidth_GBps=300, latency_us=3),
    nic=Nic(count=4, bandwidth_GBps=25, latency_us=5),
)
#: 2 DGX-H100-like nodes (8 x 50 GB/s NICs, $2/GPU-h) + 2 A100 nodes with 4 x 25 GB/s NICs.
CLUSTER = Cluster(
    name="tiny", pools=[_pool("h100", "H100-SXM5-80GB", cost_per_gpu_hour=2.0), A100_POOL]
)
TRAIN = TrainingWorkload(
    kind="training",
    global_batch_size=16,
    sequence_length=1024,
    zero_stage=[0, 1, 2, 3],
    micro_batch_sizes=[1, 2],
)


def _stage(
    first: int, last: int, pool: str, tp: int, devices: list[list[tuple[str, int]]]
) -> dict[str, Any]:
    return {
        "first_layer": first,
        "last_layer": last,
        "pool": pool,
        "tp": tp,
        "devices": [[list(d) for d in r] for r in devices],
    }


#: One-group training plans at ZeRO-1 (the other knobs at the spec's defaults).
_train_plan = functools.partial(training_plan, zero_stage=1)


def _pp2() -> Plan:
    """TP2 x PP2 on one H100 node: layers 0-1 on GPUs 0,1; 2-3 on GPUs 2,3."""
    return _train_plan(
        [
            _stage(0, 1, "h100", 2, [[("h100-0", 0), ("h100-0", 1)]]),
            _stage(2, 3, "h100", 2, [[("h100-0", 2), ("h100-0", 3)]]),
        ]
    )


def test_feasible_plan_reports_every_key() -> None:
    """A valid TP2 x PP2 plan is feasible and its report has the contract's keys, JSON-able."""
    rep = evaluate(TINY, CLUSTER, TRAIN, _pp2())
    assert rep.feasible, rep.violations
    d = rep.to_dict()
    json.dumps(d)
    for k in (
        "feasible",
        "violations",
        "step_time_s",
        "tokens_per_s",
        "mfu",
        "hfu",
        "bubble_fraction",
        "peak_memory_GB_per_gpu",
        "memory_ledger",
        "time_breakdown",
        "num_gpus",
        "cost_per_hour",
        "pipeline",
        "closed_form_step_time_s",
    ):
        assert k in d
    for row in d["memory_ledger"]:
        for k in (
            "group",
            "stage",
            "pool",
            "tp",
            "weights_GB",
            "grads_GB",
            "optimizer_GB",
            "activations_GB",
            "kv_cache_GB",
            "overhead_GB",
            "total_GB",
            "capacity_GB",
        ):
            assert k in row
    for row in d["time_breakdown"]:
        for k in ("group", "stage", "compute_s", "tp_comm_s", "pp_comm_s", "dp_comm_s"):
            assert k in row
    assert d["num_gpus"] == 4 and d["cost_per_hour"] == pytest.approx(8.0)
    assert d["tokens_per_s"] == pytest.approx(16 * 1024 / d["step_time_s"])
    # Flash attention executes half the causal score square that model FLOPs count, so HFU
    # (executed FLOPs) may sit below MFU; both are fractions of the peak.
    assert 0 < d["mfu"] < 1 and 0 < d["hfu"] < 1
    assert "events" not in d["pipeline"] and "events" in rep.to_dict(events=True)["pipeline"]


def test_ledger_model_states_match_formulas() -> None:
    """Ledger weights/grads/optimizer = model_state_bytes(stage params per GPU); overhead named."""
    rep = evaluate(TINY, CLUSTER, TRAIN, _pp2())
    p0 = stage_params_per_gpu(TINY, 2, first=True, last=False, sequence_length=1024, tp=2)
    w, g, o = model_state_bytes(p0, memory_policy="megatron_bf16", zero_stage=1, dp=1)
    row = rep.memory_ledger[0]
    assert row["weights_GB"] == pytest.approx(w / 1e9)
    assert row["grads_GB"] == pytest.approx(g / 1e9)
    assert row["optimizer_GB"] == pytest.approx(o / 1e9)
    assert row["overhead_GB"] == C.FRAMEWORK_OVERHEAD_GB
    assert (
        row["in_flight_micro_batches"] == 2 and rep.memory_ledger[1]["in_flight_micro_batches"] == 1
    )


def test_closed_form_agrees_with_simulation_on_even_split() -> None:
    """Even split: the CP model's closed form is within 2% of the simulated step time."""
    rep = evaluate(TINY, CLUSTER, TRAIN, _pp2())
    assert rep.closed_form_step_time_s == pytest.approx(rep.step_time_s, rel=0.02)


# --- check_layers ----------------------------------------------------------------------------
def test_layers_gap_and_overlap_are_violations() -> None:
    """Every block exactly once, in order: a gap or an overlap names the stage."""
    gap = _train_plan(
        [
            _stage(0, 1, "h100", 2, [[("h100-0", 0), ("h100-0", 1)]]),
            _stage(3, 3, "h100", 2, [[("h100-0", 2), ("h100-0", 3)]]),
        ]
    )
    rep = evaluate(TINY, CLUSTER, TRAIN, gap)
    assert not rep.feasible and any(
        "stage 1" in v and "start at layer 2" in v for v in rep.violations
    )
    short = _train_plan([_stage(0, 2, "h100", 2, [[("h100-0", 0), ("h100-0", 1)]])])
    assert any("model has 4 layers" in v for v in evaluate(TINY, CLUSTER, TRAIN, short).violations)


def _interleaved(chunks0: list[list[int]], chunks1: list[list[int]]) -> Plan:
    st0 = {"chunks": chunks0, "pool": "h100", "tp": 1, "devices": [[["h100-0", 0]]]}
    st1 = {"chunks": chunks1, "pool": "h100", "tp": 1, "devices": [[["h100-0", 1]]]}
    return _train_plan([st0, st1], schedule="interleaved", virtual_stages=2)


def test_interleaved_chunk_order() -> None:
    """Interleaved: chunk c of stage s holds model chunk c*p+s (stage 0: 0,2; stage 1: 1,3)."""
    wl = TRAIN.model_copy(update={"zero_stage": 1})
    good = evaluate(TINY, CLUSTER, wl, _interleaved([[0, 0], [2, 2]], [[1, 1], [3, 3]]))
    assert good.feasible, good.violations
    bad = evaluate(TINY, CLUSTER, wl, _interleaved([[0, 0], [1, 1]], [[2, 2], [3, 3]]))
    assert not bad.feasible and any("chunk" in v for v in bad.violations)


# --- check_devices / check_tp_domain ------------------------------------------------------------
@pytest.mark.parametrize(
    "devices,count,needle",
    [
        ([[("h100-9", 0)]], 1, "has 2 nodes"),
        ([[("h100-0", 8)]], 1, "out of range"),
        ([[("a100-0", 0)]], 1, "is in pool 'a100'"),
        ([[("h100-0", 0)], [("h100-0", 0)]], 2, "already used"),
        ([[("h100-0", 0)]], 2, "device lists for 2 replicas"),
        ([[("h100-0", 0), ("h100-0", 1)]], 1, "2 devices for tp=1"),
        ([[("node-0", 0)]], 1, "unknown pool"),
    ],
)
def test_device_violations(devices: list[list[tuple[str, int]]], count: int, needle: str) -> None:
    """Devices exist in the pool, are used once, one list per replica, tp entries each."""
    wl = TRAIN.model_copy(update={"global_batch_size": 16 * count})
    plan = _train_plan([_stage(0, 3, "h100", 1, devices)], count=count)
    rep = evaluate(TINY, CLUSTER, wl, plan)
    assert not rep.feasible
    assert any(needle in v for v in rep.violations), rep.violations


def test_tp_group_must_stay_in_one_nvlink_domain() -> None:
    """TP across two DGX nodes is a violation; across two nodes of one NVLink domain it is fine."""
    devs = [[("h100-0", 0), ("h100-1", 0)]]
    plan = _train_plan([_stage(0, 3, "h100", 2, devs)])
    rep = evaluate(TINY, CLUSTER, TRAIN, plan)
    assert any("outside one NVLink domain" in v for v in rep.violations)
    nvl = Cluster(name="nvl", pools=[_pool("h100", "H100-SXM5-80GB", nodes=2, gpn=4, domain=2)])
    assert evaluate(TINY, nvl, TRAIN, plan).feasible


# --- check_divisibility / check_batch / check_precision -----------------------------------------
def test_heads_must_divide_by_tp() -> None:
    """num_attention_heads % tp == 0: 12 heads on tp=8 is a violation, on tp=4 fine."""
    m12 = TINY.model_copy(
        update={
            "num_attention_heads": 12,
            "num_kv_heads": 12,
            "hidden_size": 768,
            "ffn_hidden_size": 3072,
        }
    )
    devs8 = [[("h100-0", i) for i in range(8)]]
    rep = evaluate(m12, CLUSTER, TRAIN, _train_plan([_stage(0, 3, "h100", 8, devs8)]))
    assert any("num_attention_heads=12 not divisible by tp=8" in v for v in rep.violations)
    devs4 = [[("h100-0", i) for i in range(4)]]
    assert evaluate(m12, CLUSTER, TRAIN, _train_plan([_stage(0, 3, "h100", 4, devs4)])).feasible


def test_gqa_tp_above_kv_heads_replicates() -> None:
    """8 kv heads on tp=16 (NVLink domain of 2 x 8) is allowed: one replicated head per GPU."""
    big = Cluster(name="nvl", pools=[_pool("h100", "H100-SXM5-80GB", nodes=2, gpn=8, domain=2)])
    m = LLAMA8B.model_copy(update={"num_layers": 2})
    devs = [[(f"h100-{i // 8}", i % 8) for i in range(16)]]
    rep = evaluate(m, big, TRAIN, _train_plan([_stage(0, 1, "h100", 16, devs)]))
    assert not any("kv" in v for v in rep.violations), rep.violations


def test_batch_product_and_allowed_values() -> None:
    """count x micro_batch x num_micro_batches == global batch; micro-batch must be allowed."""
    plan = _train_plan([_stage(0, 3, "h100", 1, [[("h100-0", 0)]])], m=8)
    assert any(
        "!= global_batch_size 16" in v for v in evaluate(TINY, CLUSTER, TRAIN, plan).violations
    )
    plan4 = _train_plan([_stage(0, 3, "h100", 1, [[("h100-0", 0)]])], mb=4, m=4)
    assert any(
        "micro_batch_size 4 not in allowed" in v
        for v in evaluate(TINY, CLUSTER, TRAIN, plan4).violations
    )


def test_fp8_needs_fp8_gpu() -> None:
    """fp8 on an A100 stage is a violation; on H100 it is fine."""
    wl = TRAIN.model_copy(update={"precision": "fp8"})
    a = evaluate(TINY, CLUSTER, wl, _train_plan([_stage(0, 3, "a100", 1, [[("a100-0", 0)]])]))
    assert any("no fp8" in v for v in a.violations) and a.step_time_s is None
    assert evaluate(
        TINY, CLUSTER, wl, _train_plan([_stage(0, 3, "h100", 1, [[("h100-0", 0)]])])
    ).feasible


# --- check_memory ----------------------------------------------------------------------------
def test_memory_overflow_names_stage_and_numbers() -> None:
    """Llama-8B with Adam (18 B/param ~ 145 GB) on one H100 (85 GB usable): 'stage 0 on pool
    h100: X GB > 85.0 GB'."""
    wl = TRAIN.model_copy(update={"global_batch_size": 1, "micro_batch_sizes": [1]})
    plan = _train_plan([_stage(0, 31, "h100", 1, [[("h100-0", 0)]])], m=1)
    rep = evaluate(LLAMA8B, CLUSTER, wl, plan)
    msg = [v for v in rep.violations if "GB >" in v]
    assert (
        msg and msg[0].startswith("group 0 stage 0 on pool h100:") and msg[0].endswith("> 85.0 GB")
    )
    # ZeRO-3 over 8 GPUs with full recompute fits
    devs = [[("h100-0", i)] for i in range(8)]
    plan8 = _train_plan(
        [_stage(0, 31, "h100", 1, devs)], count=8, m=1, zero_stage=3, recompute="full"
    )
    wl8 = wl.model_copy(update={"global_batch_size": 8})
    assert evaluate(LLAMA8B, CLUSTER, wl8, plan8).feasible


# --- links -----------------------------------------------------------------------------------
def test_link_pricing_tiers() -> None:
    """Same node -> intra link x bus efficiency; other node -> NIC share; other pool -> slower NIC."""
    h, a = CLUSTER.pool("h100"), CLUSTER.pool("a100")
    assert link_between(CLUSTER, ("h100-0", 0), ("h100-0", 5)).bandwidth_GBps == pytest.approx(
        450 * C.NVLINK_BUS_EFFICIENCY
    )
    assert link_between(CLUSTER, ("h100-0", 0), ("h100-1", 0)) == nic_link(h)
    assert nic_link(h).bandwidth_GBps == pytest.approx(8 * 50 / 8 * C.NIC_BUS_EFFICIENCY)
    cross = link_between(CLUSTER, ("h100-0", 0), ("a100-0", 0))
    assert cross.bandwidth_GBps == pytest.approx(4 * 25 / 8 * C.NIC_BUS_EFFICIENCY)
    assert link_between(CLUSTER, ("h100-0", 0), ("h100-0", 0)).name == "local"
    assert tp_link(a).name == "nvswitch"


def test_fabric_entry_caps_cross_pool_link() -> None:
    """A fabric entry between pools replaces the NIC default (capped by the NICs)."""
    c = Cluster(
        name="f",
        pools=CLUSTER.pools,
        fabric=[FabricLink(pools=("h100", "a100"), bandwidth_GBps=5.0, latency_us=20)],
    )
    lk = link_between(c, ("h100-0", 0), ("a100-0", 0))
    assert lk.name == "fabric" and lk.bandwidth_GBps == pytest.approx(5.0 * C.NIC_BUS_EFFICIENCY)


def test_dp_links_hierarchy() -> None:
    """A DP group of 16 GPUs on 2 nodes: k = 8 per node, 2 nodes, NIC between them."""
    devs = [(f"h100-{i // 8}", i % 8) for i in range(16)]
    k, nodes, intra, inter = dp_links(CLUSTER, devs)
    assert (k, nodes, intra.name, inter.name) == (8, 2, "nvswitch", "nic")


def test_calibration_overrides_efficiency_and_links() -> None:
    """A calibration raising gemm efficiency speeds up the step; its link replaces the intra link."""
    base = evaluate(TINY, CLUSTER, TRAIN, _pp2())
    cal = Calibration(
        gpu="H100-SXM5-80GB",
        gemm_efficiency=0.95,
        memory_efficiency=0.95,
        intra_node_bandwidth_GBps=100.0,
        intra_node_latency_us=10.0,
    )
    fast = evaluate(TINY, CLUSTER, TRAIN, _pp2(), calibration=cal)
    assert tp_link(CLUSTER.pool("h100"), cal) == LinkTier(100.0, 10.0, "nvswitch")
    assert fast.time_breakdown[0]["compute_s"] < base.time_breakdown[0]["compute_s"]
    assert fast.time_breakdown[0]["tp_comm_s"] > base.time_breakdown[0]["tp_comm_s"]


def test_dp_overlap_hides_gradient_traffic() -> None:
    """overlap_grad_reduce never slows a step; with DP across nodes it hides some traffic."""
    devs = [[("h100-0", 0)], [("h100-1", 0)]]
    plan = _train_plan([_stage(0, 3, "h100", 1, devs)], count=2, m=8, zero_stage=0)
    wl = TRAIN.model_copy(update={"overlap_grad_reduce": False})
    off = evaluate(TINY, CLUSTER, wl, plan)
    on = evaluate(TINY, CLUSTER, TRAIN, plan)
    assert on.step_time_s is not None and off.step_time_s is not None
    assert on.step_time_s < off.step_time_s
    grads = stage_params_per_gpu(TINY, 4, first=True, last=True, sequence_length=1024, tp=1) * 4
    assert off.time_breakdown[0]["dp_comm_s"] == pytest.approx(
        allreduce_time(grads, 2, nic_link(CLUSTER.pool("h100")))
    )


# --- inference -------------------------------------------------------------------------------
INFER = InferenceWorkload(
    kind="inference", prompt_tokens=512, output_tokens=128, batch_size=[8, 16]
)


def _infer_plan(groups: list[dict[str, Any]]) -> Plan:
    return Plan.model_validate({"kind": "inference", "replica_groups": groups})


def _grp(
    pool: str, tp: int, count: int, nodes: list[int], batch: int = 8, stages: int = 1
) -> dict[str, Any]:
    L = LLAMA8B.num_layers
    per = L // stages
    st = []
    for s in range(stages):
        devs = [[[f"{pool}-{nodes[r]}", s * tp + j] for j in range(tp)] for r in range(count)]
        st.append(
            {
                "first_layer": s * per,
                "last_layer": s * per + per - 1,
                "pool": pool,
                "tp": tp,
                "devices": devs,
            }
        )
    return {"count": count, "batch_size": batch, "stages": st}


def test_inference_metrics_and_kv_ledger() -> None:
    """tokens/s = batch x out / (TTFT + out x TPOT) per replica; KV ledger = 2 L kv d B (P+O)."""
    plan = _infer_plan([_grp("h100", 2, 1, [0])])
    rep = evaluate(LLAMA8B, CLUSTER, INFER, plan)
    assert rep.feasible, rep.violations
    g = rep.groups[0]
    assert rep.tokens_per_s == pytest.approx(
        8 * 128 / (g["ttft_ms"] / 1e3 + 128 * g["tpot_ms"] / 1e3)
    )
    kv = kv_cache_bytes_per_token(LLAMA8B, "bf16", 2) * 8 * (512 + 128) / 1e9
    assert rep.memory_ledger[0]["kv_cache_GB"] == pytest.approx(kv)
    d = rep.to_dict()
    assert {"ttft_ms", "tpot_ms", "tokens_per_s", "groups"} <= set(d)
    json.dumps(d)


def test_mixed_inference_groups_sum_throughput() -> None:
    """3 x TP2 on H100 + 1 x TP8 on A100: total tokens/s is the sum over replicas of each group."""
    plan = _infer_plan(
        [
            _grp("h100", 2, 3, [0, 0, 1])
            | {
                "stages": [
                    {
                        "first_layer": 0,
                        "last_layer": 31,
                        "pool": "h100",
                        "tp": 2,
                        "devices": [
                            [["h100-0", 0], ["h100-0", 1]],
                            [["h100-0", 2], ["h100-0", 3]],
                            [["h100-1", 0], ["h100-1", 1]],
                        ],
                    }
                ]
            },
            _grp("a100", 8, 1, [0], batch=16),
        ]
    )
    rep = evaluate(LLAMA8B, CLUSTER, INFER, plan)
    assert rep.feasible, rep.violations
    assert rep.tokens_per_s == pytest.approx(sum(g["tokens_per_s_total"] for g in rep.groups))
    assert rep.num_gpus == 3 * 2 + 8


def test_inference_slo_violation() -> None:
    """A TPOT SLO below the decode step time is a violation naming the group; a loose one is met."""
    plan = _infer_plan([_grp("h100", 1, 1, [0])])
    tight = INFER.model_copy(update={"tpot_ms": 0.5})
    rep = evaluate(LLAMA8B, CLUSTER, tight, plan)
    assert any(v.startswith("group 0: TPOT") for v in rep.violations)
    loose = INFER.model_copy(update={"tpot_ms": 1000.0, "ttft_ms": 10000.0})
    assert evaluate(LLAMA8B, CLUSTER, loose, plan).feasible


def test_pipeline_inference_adds_stage_latency() -> None:
    """PP2 decode goes through both stages one after the other: TPOT(PP2, tp1) > TPOT(tp2)."""
    pp = evaluate(LLAMA8B, CLUSTER, INFER, _infer_plan([_grp("h100", 1, 1, [0], stages=2)]))
    tp = evaluate(LLAMA8B, CLUSTER, INFER, _infer_plan([_grp("h100", 2, 1, [0])]))
    assert pp.feasible and tp.feasible
    assert pp.tpot_ms is not None and tp.tpot_ms is not None and pp.tpot_ms > tp.tpot_ms


def test_kind_mismatch_is_reported() -> None:
    """An inference plan scored against a training workload is a violation, not a crash."""
    rep = evaluate(LLAMA8B, CLUSTER, TRAIN, _infer_plan([_grp("h100", 1, 1, [0])]))
    assert not rep.feasible and any("kind" in v for v in rep.violations)
