"""benchmarks/data/published-serving.json: every case is sourced, well-formed and buildable.

Checks the data file's invariants (unique ids, a known source with a version, a quote, a model
file, positive numbers, assumed values marked) and that ``benchmarks/validate_serving.py``
builds the model, cluster, workload, plan and requests of every case -- without simulating
the big ones (one small request-rate case is simulated end to end)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from solver.io import load_model
from solver.specs import InferenceWorkload

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import validate_serving as vs  # noqa: E402

DATA = json.loads(vs.DATA_FILE.read_text())
CASES: list[dict[str, Any]] = DATA["cases"]
IDS = [c["id"] for c in CASES]
COMMON = ("id", "source", "mode", "table", "engine", "gpu", "model", "precision", "tp", "pp")
STATIC = ("batch_size", "input_len", "output_len")
RATE = ("request_rate", "num_prompts", "dataset", "max_num_seqs", "max_num_batched_tokens")


def test_ids_unique_and_many_sources() -> None:
    assert len(IDS) == len(set(IDS))
    assert len({c["source"] for c in CASES}) >= 4
    assert {c["mode"] for c in CASES} == {"static_batch", "request_rate"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_is_sourced_and_well_formed(case: dict[str, Any]) -> None:
    for key in COMMON + (STATIC if case["mode"] == "static_batch" else RATE):
        assert key in case, key
    src = DATA["sources"][case["source"]]
    assert src.get("version") and (src.get("commit") or src.get("url"))
    assert case["quote"].strip()
    # The quote carries the row's numbers as printed (thousands separators dropped).
    quote = case["quote"].replace(",", "")
    for value in case["measured"].values():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0
        assert re.search(rf"(?<![\d.]){value:g}(?![\d])", quote) or (f"{value:.2f}" in quote), (
            value,
            case["quote"],
        )
    assert (ROOT / "models" / f"{case['model']}.yaml").is_file()
    assert case["tp"] >= 1 and case["pp"] >= 1
    for key in ("batch_size", "input_len", "output_len", "num_prompts", "max_num_seqs"):
        if key in case:
            assert isinstance(case[key], int) and case[key] >= 1, key
    if case["mode"] == "request_rate":
        rate = case["request_rate"]
        assert rate == "inf" or (isinstance(rate, float) and rate > 0)
        assert 0 < case["gpu_memory_utilization"] <= 1
    for field, why in case.get("assumed", {}).items():
        assert "?" in why, (field, why)  # every assumed value is marked, as the schema says


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loader_builds_every_case(case: dict[str, Any]) -> None:
    model = load_model(case["model"])
    cluster = vs.build_cluster(case["gpu"])
    batch = case.get("batch_size") or case["max_num_seqs"]
    plan = vs.build_plan(cluster, model, case["tp"], case["pp"], batch)
    assert plan.replica_groups[0].stages[0].tp == case["tp"]
    if case["mode"] == "request_rate":
        prompt, output, mean_in, mean_out = vs.lengths(case)
        work, _ = vs.serving_workload(case, model, cluster, mean_in, mean_out)
        assert isinstance(work, InferenceWorkload)
        assert 0 < work.gpu_memory_utilization <= 1
        if case["engine"].startswith("TensorRT-LLM"):
            # free-memory fraction -> whole-GPU fraction is never below the published one
            assert work.gpu_memory_utilization >= case["gpu_memory_utilization"]


def test_tp_sweeps_exist_in_the_data() -> None:
    """The data holds TP sweeps: same source, model, GPU and lengths at >= 3 TP degrees."""
    seen: dict[tuple[str, ...], set[int]] = {}
    for c in CASES:
        if c["mode"] == "request_rate" and c["dataset"]["kind"] == "fixed":
            key = (c["source"], c["model"], c["gpu"], str(c["dataset"]), str(c["request_rate"]))
            seen.setdefault(key, set()).add(c["tp"])
    assert sum(len(tps) >= 3 for tps in seen.values()) >= 20


def test_tp_order_agreement_counts_pairs() -> None:
    """tp_sweeps orders per-GPU throughput pairwise: hand-built rows, one pair inverted."""
    rows = [
        {
            "source": "s", "engine": "e", "model": "m", "gpu": "g", "precision": "fp8",
            "lengths": [128, 128], "request_rate": "inf", "pp": 1, "tp": tp,
            "published": {"output_throughput_tok_s": pub}, "predicted": {"output_throughput_tok_s": pred},
        }
        for tp, pub, pred in ((1, 100.0, 100.0), (2, 180.0, 220.0), (4, 300.0, 360.0))
    ]  # fmt: skip
    (sweep,) = vs.tp_sweeps(rows, "output_throughput_tok_s")
    # per GPU: published 100, 90, 75 (TP1 best); predicted 100, 110, 90 (TP2 best)
    assert sweep["pairs"] == 3 and sweep["pairs_agree"] == 2
    assert (sweep["best_tp_published"], sweep["best_tp_predicted"]) == (1, 2)


def test_small_request_rate_case_simulates() -> None:
    """One SGLang ShareGPT case end to end on 200 requests: every published metric predicted."""
    case = next(
        c for c in CASES if c["id"] == "sgl030-sglang-a100-bf16-llama3-8b-tp1-sharegpt-rps4"
    )
    row = vs.predict_rate(case, load_model(case["model"]), vs.build_cluster(case["gpu"]), 200)
    assert row["feasible"] and row["num_prompts"] == 200
    assert set(row["error"]) == set(case["measured"])
    assert all(math.isfinite(e) for e in row["error"].values())


# --- TensorRT-LLM 0.17: trtllm-bench's engine-build heuristic --------------------------------
#: NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py (calc_engine_setting, finetune_setting;
#: the revision without the Mamba / optimistic-tuning options): the KV memory fraction it sizes
#: for, and the caps on batch size and tokens per step.
_BENCH_KV_FRACTION, _BENCH_MAX_BS, _BENCH_MAX_TOKENS = 0.95, 4096, 32768


def _round_up(x: float, step: int) -> int:
    return step * math.ceil(x / step)


def trtllm_bench_setting(case: dict[str, Any]) -> tuple[int, int]:
    """``(max_batch_size, max_num_tokens)`` that ``trtllm-bench build --dataset`` picks for a
    case: the requests whose KV cache (at ISL + OSL) fits 0.95 of the memory left after the
    weights (parameters x 1 B in FP8, 2 B otherwise; GPU memory in GiB, parameters in GB, as
    the source mixes them), rounded up as ``finetune_setting`` does."""
    from solver.catalog import resolve_gpu
    from solver.costmodel.params import total_params

    model = load_model(case["model"])
    tp, pp = case["tp"], case["pp"]
    isl, osl = case["dataset"]["input_len"], case["dataset"]["output_len"]
    width = 1 if case["precision"] == "fp8" else 2
    kv_heads = max(tp, model.num_kv_heads or model.num_attention_heads)
    gib_per_token = 2 * model.num_layers * kv_heads * model.kv_channels * width / 2**30
    memory_gib = resolve_gpu(case["gpu"]).memory_GB * 1e9 / 2**30
    free = memory_gib * tp * pp - total_params(model, 0) / 1e9 * width
    requests = free * _BENCH_KV_FRACTION / gib_per_token / (isl + osl)
    raw_bs = min(requests, _BENCH_MAX_BS) / pp
    raw_tokens = min(raw_bs * (1 + isl / osl), _BENCH_MAX_TOKENS)
    if raw_bs < 256:
        bs = max(64, _round_up(raw_bs, 32))
    else:
        bs = _round_up(raw_bs, 128 if raw_bs < 1024 else 256)
    if raw_tokens < 4096:
        tokens = max(2048, _round_up(raw_tokens, 256))
    else:
        tokens = _round_up(raw_tokens, 512 if raw_tokens < 8192 else 1024)
    return bs, tokens


def test_trtllm_bench_setting_by_hand() -> None:
    """Llama 3.1 70B FP8, TP 1, H100, 128 / 2048: 85.0 GB = 79.2 GiB - 70.55 GB of weights
    = 8.6, x 0.95 / (2 x 80 x 8 x 128 B = 1.53e-4 GiB per token) / 2,176 tokens = 24.6
    requests -> the 64 / 2,048 floors; Llama 3.1 8B FP8 on H200 at 128 / 128: > 4,096
    requests -> the 4,096 cap and 4,096 x 2 = 8,192 tokens."""
    by_id = {c["id"]: c for c in CASES}
    assert trtllm_bench_setting(by_id["trt017-h100-fp8-llama3-70b-tp1-128x2048"]) == (64, 2048)
    assert trtllm_bench_setting(by_id["trt017-h200-fp8-llama3-8b-tp1-128x128"]) == (4096, 8192)


TRT017 = [c for c in CASES if c["source"] == "trtllm-v0.17-perf-overview"]


@pytest.mark.parametrize("case", TRT017, ids=[c["id"] for c in TRT017])
def test_trtllm_017_limits_are_the_build_heuristic(case: dict[str, Any]) -> None:
    """Every 0.17 case runs the engine limits trtllm-bench's build heuristic gives its
    dataset, and says so in its settings (not an assumed value)."""
    assert (case["max_num_seqs"], case["max_num_batched_tokens"]) == trtllm_bench_setting(case)
    assert "tuning.py" in case["settings"]["max_num_seqs"]
    assert "max_num_seqs" not in case.get("assumed", {})
