"""The input schemas (solver.specs) and their error messages (solver.errors).

Checked here on in-memory documents: defaults, cross-field validators, frozen/extra="forbid",
the derived properties other layers use, and -- by a Hypothesis property -- that any mutation
of a valid document either loads or raises a one-line SpecError, never anything else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malformed_cases import CASES, VALID
from pydantic import ValidationError

from solver import SpecError
from solver.errors import format_validation_error
from solver.io import load_cluster, load_model, load_plan, load_workload
from solver.specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Stage,
    TrainingWorkload,
)

LOADERS = {
    "model": load_model,
    "cluster": load_cluster,
    "training": load_workload,
    "inference": load_workload,
    "plan": load_plan,
}


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(doc))
    return out


def _err(kind: str, doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        LOADERS[kind](doc)
    return str(info.value)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
def test_model_defaults_and_properties() -> None:
    """Optional Model fields default to dense, untied, no position table; kv_channels = h / a."""
    m = load_model({k: v for k, v in VALID["model"].items() if k != "tied_embeddings"})
    assert m.tied_embeddings is False and m.learned_position_embeddings is False
    assert m.num_experts is None and not m.is_moe
    assert m.kv_channels == 256 // 4


def test_model_explicit_head_dim_allows_indivisible_hidden() -> None:
    """With head_dim given (Mistral-Nemo style), hidden need not be a multiple of the heads."""
    m = load_model({**VALID["model"], "hidden_size": 250, "head_dim": 64})
    assert m.kv_channels == 64


def test_model_gqa_and_moe_accepted() -> None:
    """GQA (a % kv == 0) and MoE (top-k <= experts) are valid."""
    m = load_model({**VALID["model"], "num_kv_heads": 2, "num_experts": 8, "experts_per_token": 8})
    assert m.is_moe and m.num_kv_heads == 2


def test_specs_are_frozen() -> None:
    """Loaded specs are immutable, so layers can share them safely."""
    m = load_model(VALID["model"])
    with pytest.raises(ValidationError):
        m.num_layers = 8  # type: ignore[misc]


def test_vocab_zero_is_a_bare_block_stack() -> None:
    """vocab_size 0 (calibration runs: no embedding, no head) is valid."""
    assert load_model({**VALID["model"], "vocab_size": 0}).vocab_size == 0


# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------
def test_cluster_defaults_and_counts() -> None:
    """A cluster counts its GPUs; pools default to one-node NVLink domains and no price."""
    c = load_cluster(VALID["cluster"])
    assert isinstance(c, Cluster)
    assert c.num_gpus == 16 and c.pool("b").gpu_name == "A100-SXM4-80GB"
    assert c.pools[0].cost_per_gpu_hour is None and c.fabric == []


def test_cluster_inline_gpu_spec() -> None:
    """A pool may carry an inline GPU spec instead of a catalog name; defaults apply."""
    doc = _copy(VALID["cluster"])
    doc["pools"][0]["gpu"] = {
        "name": "my-gpu",
        "memory_GB": 24,
        "bf16_tflops": 100,
        "memory_bandwidth_GBps": 900,
    }
    c = load_cluster(doc)
    gpu = c.pools[0].gpu
    assert not isinstance(gpu, str)
    assert gpu.gemm_efficiency == 0.8 and gpu.supports_bf16 and gpu.fp8_tflops is None
    assert c.pools[0].gpu_name == "my-gpu"


def test_nvlink_domain_spanning_pool_nodes() -> None:
    """nvlink_domain_nodes must divide the node count (whole NVL72 racks: 36 trays / 18)."""
    doc = _copy(VALID["cluster"])
    doc["pools"][0].update(nodes=36, nvlink_domain_nodes=18)
    assert load_cluster(doc).pools[0].nvlink_domain_nodes == 18
    doc["pools"][0].update(nodes=20)
    assert "nvlink_domain_nodes: must divide nodes=20, got 18" in _err("cluster", doc)


def test_fabric_accepts_self_pair_and_known_pools() -> None:
    """Fabric entries may name one pool twice (an oversubscribed pod) or two known pools."""
    doc = _copy(VALID["cluster"])
    doc["fabric"] = [
        {"pools": ["a", "a"], "bandwidth_GBps": 20},
        {"pools": ["a", "b"], "bandwidth_GBps": 10, "latency_us": 8},
    ]
    assert len(load_cluster(doc).fabric) == 2


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------
def test_training_defaults() -> None:
    """A minimal training workload gets DESIGN.md's defaults."""
    w = load_workload({"kind": "training", "global_batch_size": 8, "sequence_length": 128})
    assert isinstance(w, TrainingWorkload)
    assert w.precision == "bf16" and w.memory_policy == "megatron_bf16"
    assert w.zero_stages == [1] and w.overlap_grad_reduce is True
    assert w.recompute == ["none", "selective", "full"]
    assert w.schedules == ["1f1b", "interleaved"]
    assert w.micro_batch_sizes == [1, 2, 4]
    # Today's stack: fused attention, no dropout, PyTorch checkpoint's early stop.
    assert (w.attention, w.dropout, w.recompute_early_stop) == ("flash", 0.0, True)


def test_training_zero_stage_list() -> None:
    """zero_stage may be a list of stages to choose from; each must be 0..3."""
    w = load_workload({**VALID["training"], "zero_stage": [0, 1, 3]})
    assert isinstance(w, TrainingWorkload) and w.zero_stages == [0, 1, 3]
    assert "zero_stage: must be 0, 1, 2 or 3, got 4" in _err(
        "training", {**VALID["training"], "zero_stage": [1, 4]}
    )
    assert "zero_stage" in _err("training", {**VALID["training"], "zero_stage": []})


def test_inference_batch_scalar_or_list() -> None:
    """batch_size may be one number or a list; batch_sizes always gives a list."""
    w = load_workload({**VALID["inference"], "batch_size": 4})
    assert isinstance(w, InferenceWorkload) and w.batch_sizes == [4]
    w = load_workload(VALID["inference"])
    assert isinstance(w, InferenceWorkload) and w.batch_sizes == [1, 8, 32, 64]


@pytest.mark.parametrize("objective", ["min_gpus", "min_cost"])
def test_inference_capacity_objectives_need_a_target(objective: str) -> None:
    """min_gpus / min_cost need target_throughput_tokens_per_s, and accept it."""
    doc = {**VALID["inference"], "objective": objective}
    assert "target_throughput_tokens_per_s" in _err("inference", doc)
    w = load_workload({**doc, "target_throughput_tokens_per_s": 1000})
    assert isinstance(w, InferenceWorkload) and w.target_throughput_tokens_per_s == 1000


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
def test_stage_layer_ranges() -> None:
    """A stage is one [first, last] range or interleaved chunks; num_layers counts them."""
    s = Stage(first_layer=2, last_layer=5, pool="a", tp=1, devices=[])
    assert s.layer_ranges == [(2, 5)] and s.num_layers == 4
    s = Stage(chunks=[(0, 1), (4, 5)], pool="a", tp=1, devices=[])
    assert s.layer_ranges == [(0, 1), (4, 5)] and s.num_layers == 4


def test_stage_rejects_empty_chunks_and_reversed_chunk() -> None:
    """chunks: [] and a chunk with last < first are rejected, naming the chunk."""
    doc = _copy(VALID["plan"])
    stage = doc["replica_groups"][0]["stages"][0]
    del stage["first_layer"], stage["last_layer"]
    stage["chunks"] = []
    assert "stages[0].chunks: must list at least one" in _err("plan", doc)
    stage["chunks"] = [[0, 1], [3, 2]]
    msg = _err("plan", doc)
    assert "stages[0].chunks[1]: last layer must be >= first layer 3, got 2" in msg


def test_inference_plan_may_mix_groups() -> None:
    """An inference plan may hold several replica groups (a training plan exactly one)."""
    doc = _copy(VALID["plan"])
    doc["kind"] = "inference"
    group = doc["replica_groups"][0]
    doc["replica_groups"] = [group, {**group, "count": 1}]
    p = load_plan(doc)
    assert isinstance(p, Plan) and len(p.replica_groups) == 2
    assert p.replica_groups[0].pp == 1


# --------------------------------------------------------------------------------------------
# Error formatting
# --------------------------------------------------------------------------------------------
def test_misspelled_unit_suggests_the_field() -> None:
    """An unknown key differing from a missing field only in case/unit letters is pointed out."""
    doc = {k: v for k, v in VALID["model"].items() if k != "num_kv_heads"}
    doc["Num_KV_Heads"] = 4
    msg = _err("model", doc)
    assert "Num_KV_Heads: unknown field" in msg and "did you mean 'num_kv_heads'" in msg


def test_error_count_hint() -> None:
    """When several fields are wrong, the first is explained and the rest counted."""
    doc = {**VALID["model"], "num_layers": 0, "hidden_size": 0}
    msg = _err("model", doc)
    assert msg.startswith("<model>: num_layers: must be > 0, got 0") and msg.endswith("(+1 more)")


def test_format_validation_error_without_source() -> None:
    """format_validation_error works without a source prefix."""
    with pytest.raises(ValidationError) as info:
        Model.model_validate({**VALID["model"], "mlp": "relu"})
    assert format_validation_error(info.value) == "mlp: must be 'gelu' or 'swiglu', got 'relu'"


# --------------------------------------------------------------------------------------------
# Property: any mutation loads or fails cleanly
# --------------------------------------------------------------------------------------------
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-1, 2), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(VALID)),
    data=st.data(),
)
def test_any_mutation_loads_or_raises_one_line_spec_error(kind: str, data: st.DataObject) -> None:
    """Replacing or deleting one value anywhere never raises anything but a one-line SpecError."""
    doc = _copy(VALID[kind])
    path = data.draw(st.sampled_from(_paths(doc)))
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(_VALUES)
    try:
        LOADERS[kind](doc)
    except SpecError as e:
        assert "\n" not in str(e) and str(e).startswith("<")


def test_cases_module_is_importable_by_path() -> None:
    """malformed_cases exposes CASES as (id, kind, filename, text, [substrings]) tuples."""
    for case in CASES:
        assert len(case) == 5 and isinstance(case[3], str) and case[4]
