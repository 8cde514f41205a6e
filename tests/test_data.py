"""The shipped data: models/*.yaml and instances/*.yaml load, are named after their files, and
their shapes match the published sources (parameter counts, Megatron-LM Table 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from solver.catalog import gpu_of
from solver.io import load_cluster, load_model, load_workload
from solver.specs import Cluster, InferenceWorkload, Model, TrainingWorkload

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.yaml"))
INSTANCES = sorted((ROOT / "instances").glob("*.yaml"))
PUBLISHED = ROOT.parent / "shared" / "data" / "published-runs.json"

TABLE1 = {  # file -> Narayanan et al. SC'21 Table 1 label (published-runs.json model.name)
    "gpt-1.7b": "GPT-1.7B",
    "gpt-3.6b": "GPT-3.6B",
    "gpt-7.5b": "GPT-7.5B",
    "gpt-18b": "GPT-18.4B",
    "gpt-39b": "GPT-39.1B",
    "gpt-76b": "GPT-76.1B",
    "gpt-145b": "GPT-145.6B",
    "gpt-310b": "GPT-310.1B",
    "gpt-530b": "GPT-529.6B",
    "gpt-1t": "GPT-1008.0B",
}


def params(m: Model, seq_len: int = 0) -> tuple[float, float]:
    """Total and per-token-active parameters of a decoder-only transformer, straight from shapes.

    Per block: attention Q and O (h x a*d each) + K and V (h x kv*d each); MLP 2 (GeLU) or 3
    (SwiGLU) matrices of h x ffn per expert, plus the router (h x E); two norms of 2h (GPT
    LayerNorm weight+bias; RMSNorm would be h -- the difference is < 1e-5 of the total).
    Embedding V x h, once more for an untied head; learned positions seq_len x h.  Biases of
    GPT linears (~10h per block) are left out: < 0.1% for h >= 2304.
    """
    h, d = m.hidden_size, m.kv_channels
    attn = 2 * h * m.num_attention_heads * d + 2 * h * m.num_kv_heads * d
    n_mat = 3 if m.mlp == "swiglu" else 2
    experts, active = (m.num_experts or 1), (m.experts_per_token or 1)
    ffn = m.moe_ffn_hidden_size or m.ffn_hidden_size
    router = h * m.num_experts if m.num_experts else 0
    norms = 4 * h
    embed = m.vocab_size * h * (1 if m.tied_embeddings else 2)
    pos = seq_len * h if m.learned_position_embeddings else 0
    total = m.num_layers * (attn + n_mat * h * ffn * experts + router + norms) + embed + pos
    act = m.num_layers * (attn + n_mat * h * ffn * active + router + norms) + embed + pos
    return float(total), float(act)


# --------------------------------------------------------------------------------------------
# models/
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_file_loads_and_is_named_after_its_file(path: Path) -> None:
    """Each models/*.yaml is a valid Model whose name is the file name, loadable by name."""
    m = load_model(path)
    assert m.name == path.stem
    assert load_model(path.stem) == m
    assert path.read_text().lstrip().startswith("#"), "every model file states its source"


def test_required_models_exist() -> None:
    """The models the project promises are all shipped."""
    names = {p.stem for p in MODELS}
    required = {
        *TABLE1,
        "gpt3-175b",
        "llama3-8b",
        "llama3-70b",
        "llama3.1-405b",
        "mixtral-8x7b",
        "tiny-gpt",
    }
    assert required <= names, required - names


@pytest.mark.parametrize(
    ("name", "billions"),
    [("llama3-8b", 8.03), ("llama3-70b", 70.6), ("llama3.1-405b", 405.9)],
)
def test_llama_parameter_counts(name: str, billions: float) -> None:
    """Llama 3 totals computed from the YAML shapes are within 1% of Meta's 8.03B/70.6B/405.9B."""
    total, _ = params(load_model(name))
    assert total / 1e9 == pytest.approx(billions, rel=0.01)


def test_llama_shapes_pinned() -> None:
    """Llama 3 shapes: GQA with 8 KV heads, head_dim 128, SwiGLU, untied, vocab 128256."""
    for name in ("llama3-8b", "llama3-70b", "llama3.1-405b"):
        m = load_model(name)
        assert (m.num_kv_heads, m.kv_channels, m.mlp, m.tied_embeddings, m.vocab_size) == (
            8,
            128,
            "swiglu",
            False,
            128256,
        )


def test_mixtral_total_and_active_parameters() -> None:
    """Mixtral 8x7B: 46.7B total, 12.9B active per token (Jiang et al. 2024, Sec. 2)."""
    m = load_model("mixtral-8x7b")
    total, active = params(m)
    assert m.is_moe and m.experts_per_token == 2 and m.num_experts == 8
    assert total / 1e9 == pytest.approx(46.7, rel=0.01)
    assert active / 1e9 == pytest.approx(12.9, rel=0.01)


def test_gpt3_175b() -> None:
    """GPT-3 175B: 96 x 12288 with 96 heads, about 175B parameters with a 2048 position table."""
    m = load_model("gpt3-175b")
    assert (m.num_layers, m.hidden_size, m.num_attention_heads) == (96, 12288, 96)
    assert params(m, seq_len=2048)[0] / 1e9 == pytest.approx(174.6, rel=0.01)


def _published_cases() -> list[dict[str, Any]]:
    if not PUBLISHED.is_file():
        pytest.skip(f"{PUBLISHED} not available")
    cases: list[dict[str, Any]] = json.loads(PUBLISHED.read_text())["training_cases"]
    return cases


@pytest.mark.parametrize("name", list(TABLE1))
def test_table1_shapes_match_published_runs(name: str) -> None:
    """The GPT Table 1 models equal the published shapes and their rounded parameter counts."""
    row = next(c for c in _published_cases() if c["model"]["name"] == TABLE1[name])["model"]
    m = load_model(name)
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads) == (
        row["layers"],
        row["hidden"],
        row["heads"],
        row["kv_heads"],
    )
    assert (m.ffn_hidden_size, m.vocab_size) == (row["ffn_hidden"], row["vocab"])
    assert m.mlp == "gelu" and m.tied_embeddings and m.learned_position_embeddings
    # The paper's labels are rounded (1.7B is 1.65B by its own eq.2): 1% or 0.05B.
    total = params(m, seq_len=row["seq_len"])[0] / 1e9
    assert abs(total - row["params_b"]) <= max(0.01 * row["params_b"], 0.05)


def test_tiny_gpt_hand_count() -> None:
    """tiny-gpt's parameter count matches the derivation in its file's comment."""
    total, _ = params(load_model("tiny-gpt"))
    # 4 blocks x (12 h^2 = 786,432 + norms 4h = 1,024) + tied embedding 262,144 (biases left out)
    assert total == 4 * (786_432 + 1_024) + 262_144


# --------------------------------------------------------------------------------------------
# instances/
# --------------------------------------------------------------------------------------------
def _load_instance(path: Path) -> Cluster | TrainingWorkload | InferenceWorkload:
    doc = yaml.safe_load(path.read_text())
    return load_workload(path) if "kind" in doc else load_cluster(path)


@pytest.mark.parametrize("path", INSTANCES, ids=[p.stem for p in INSTANCES])
def test_instance_file_loads(path: Path) -> None:
    """Each instances/*.yaml is a valid cluster (named after its file) or workload."""
    spec = _load_instance(path)
    if isinstance(spec, Cluster):
        assert spec.name == path.stem
        for pool in spec.pools:
            gpu_of(pool)  # catalog name resolves
        assert "#" in path.read_text(), "cluster figures need source comments"


def test_required_instances_exist() -> None:
    """The clusters and workloads the project promises (and `make demo` uses) are shipped."""
    names = {p.stem for p in INSTANCES}
    required = {
        "seed-4x8-h100",
        "pcie-8x-l40s",
        "pcie-8x-a100",
        "selene-a100",
        "selene-a100-64",
        "hetero-mix",
        "nvl72",
        "h100x2-nvlink",
        "tiny-2x4-a100",
        "train-gpt-s2048",
        "train-llama-s8192",
        "infer-chat-slo",
        "infer-latency",
        "infer-min-gpus",
    }
    assert required <= names, required - names


def test_selene_fits_every_table1_run() -> None:
    """selene-a100 has as many GPUs as the largest Table 1 run; the 64-GPU slice is 8 nodes."""
    biggest = max(c["cluster"]["num_gpus"] for c in _published_cases())
    assert load_cluster("selene-a100").num_gpus >= biggest == 3072
    s64 = load_cluster("selene-a100-64")
    assert s64.num_gpus == 64 and s64.pools[0].intra_node.bandwidth_GBps == 300


def test_seed_cluster_matches_design() -> None:
    """seed-4x8-h100: 4 x 8 H100 SXM, NVSwitch 450 GB/s, 8 NICs of 50 GB/s per direction."""
    pool = load_cluster("seed-4x8-h100").pools[0]
    assert (pool.nodes, pool.gpus_per_node, pool.gpu_name) == (4, 8, "H100-SXM5-80GB")
    assert (pool.intra_node.kind, pool.intra_node.bandwidth_GBps) == ("nvswitch", 450)
    assert (pool.nic.count, pool.nic.bandwidth_GBps) == (8, 50)


def test_pcie_clusters_have_no_nvlink() -> None:
    """The PCIe boxes use kind pcie at about 25 GB/s per direction."""
    for name in ("pcie-8x-l40s", "pcie-8x-a100"):
        link = load_cluster(name).pools[0].intra_node
        assert link.kind == "pcie" and link.bandwidth_GBps == 25


def test_hetero_mix_is_heterogeneous_and_priced() -> None:
    """hetero-mix: >= 3 pools with different GPUs and NICs, every pool priced."""
    c = load_cluster("hetero-mix")
    assert len(c.pools) >= 3
    assert len({p.gpu_name for p in c.pools}) == len(c.pools)
    assert len({p.nic.bandwidth_GBps for p in c.pools}) >= 2
    assert all(p.cost_per_gpu_hour for p in c.pools)


def test_nvl72_racks() -> None:
    """nvl72: trays of 4 GB200 in 18-tray NVLink domains at 900 GB/s per direction."""
    pool = load_cluster("nvl72").pools[0]
    assert (pool.gpus_per_node, pool.nvlink_domain_nodes) == (4, 18)
    assert pool.nodes % pool.nvlink_domain_nodes == 0
    assert pool.intra_node.bandwidth_GBps == 900 and pool.gpu_name == "GB200"


def test_workloads_as_specified() -> None:
    """The shipped workloads carry the numbers the brief and DESIGN.md give."""
    chat = load_workload("infer-chat-slo")
    assert isinstance(chat, InferenceWorkload)
    assert (chat.prompt_tokens, chat.output_tokens, chat.batch_sizes) == (1024, 256, [1, 8, 32, 64])
    assert (chat.ttft_ms, chat.tpot_ms, chat.objective) == (2000, 50, "max_throughput")
    lat = load_workload("infer-latency")
    assert isinstance(lat, InferenceWorkload)
    assert lat.batch_sizes == [1] and lat.objective == "min_latency"
    cap = load_workload("infer-min-gpus")
    assert isinstance(cap, InferenceWorkload)
    assert cap.objective == "min_gpus" and cap.target_throughput_tokens_per_s
    train = load_workload("train-gpt-s2048")
    assert isinstance(train, TrainingWorkload)
    assert (train.global_batch_size, train.sequence_length, train.zero_stages) == (512, 2048, [1])
    llama = load_workload("train-llama-s8192")
    assert isinstance(llama, TrainingWorkload) and llama.sequence_length == 8192
