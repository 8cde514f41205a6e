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
