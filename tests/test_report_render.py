"""Tests of solver.report: plain documents and rich renderables, from synthetic reports.

These do not need the evaluator: the report dict is written by hand with the documented keys
(``shardwise evaluate --json``), so rendering is checked on its own.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from rich.console import Console

from solver import load_cluster, load_plan
from solver.report import (
    dumps,
    plan_cost_per_hour,
    plan_document,
    plan_num_gpus,
    predicted_metrics,
    render_evaluation,
    render_result,
    to_jsonable,
)
from solver.report.render import devices_summary, fmt_time
from solver.result import Result, Status

CLUSTER = {
    "name": "c",
    "pools": [
        {
            "name": "h100",
            "gpu": "H100-SXM5-80GB",
            "nodes": 2,
            "gpus_per_node": 8,
            "intra_node": {"kind": "nvswitch", "bandwidth_GBps": 450},
            "nic": {"count": 8, "bandwidth_GBps": 50},
            "cost_per_gpu_hour": 3.0,
        }
    ],
}


def _devices(node: int, first: int, tp: int) -> list[list[Any]]:
    return [[f"h100-{node}", first + i] for i in range(tp)]


# 4 replicas x 2 stages x TP 2 = 16 GPUs: stage 0 on node 0, stage 1 on node 1.
PLAN = {
    "kind": "training",
    "replica_groups": [
        {
            "count": 4,
            "micro_batch_size": 2,
            "num_micro_batches": 8,
            "schedule": "1f1b",
            "recompute": "selective",
            "zero_stage": 1,
            "sequence_parallel": True,
            "stages": [
                {
                    "first_layer": 0,
                    "last_layer": 15,
                    "pool": "h100",
                    "tp": 2,
                    "devices": [_devices(0, 2 * r, 2) for r in range(4)],
                },
                {
                    "first_layer": 16,
                    "last_layer": 31,
                    "pool": "h100",
                    "tp": 2,
                    "devices": [_devices(1, 2 * r, 2) for r in range(4)],
                },
            ],
        }
    ],
}


def _report(feasible: bool = True) -> dict[str, Any]:
    return {
        "feasible": feasible,
        "violations": [] if feasible else ["stage 1: memory 91.5 GB > 80 GB"],
        "step_time_s": 2.0,
        "tokens_per_s": 65536.0,
        "mfu": 0.41,
        "hfu": 0.47,
        "bubble_fraction": 0.1,
        "peak_memory_GB_per_gpu": 91.5 if not feasible else 61.5,
        "num_gpus": 16,
        "memory_ledger": [
            {
                "group": 0,
                "stage": s,
                "pool": "h100",
                "tp": 2,
                "weights_GB": 8.0,
                "grads_GB": 16.0,
                "optimizer_GB": 6.0,
                "activations_GB": 25.0 + 30 * s * (not feasible),
                "kv_cache_GB": 0.0,
                "overhead_GB": 2.5,
                "total_GB": 61.5 + 30 * s * (not feasible),
                "capacity_GB": 80.0,
            }
            for s in range(2)
        ],
        "time_breakdown": [
            {
                "group": 0,
                "stage": s,
                "compute_s": 0.2 + 0.01 * s,
                "tp_comm_s": 0.02,
                "pp_comm_s": 1e-4,
                "dp_comm_s": 0.0,
            }
            for s in range(2)
        ],
    }


def _text(renderable: Any) -> str:
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_to_jsonable_is_strict_json() -> None:
    """numpy scalars and arrays become plain numbers; inf and nan become null."""
    doc = {"a": np.float64(1.5), "b": np.arange(3), "c": math.inf, "d": (np.int64(2), math.nan)}
    assert to_jsonable(doc) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [2, None]}
    assert json.loads(dumps(doc))["c"] is None


def test_plan_gpus_and_cost() -> None:
    """GPUs = replicas x sum of TP over stages; cost = GPUs x price per GPU-hour."""
    plan, cluster = load_plan(PLAN), load_cluster(CLUSTER)
    assert plan_num_gpus(plan) == 16
    assert plan_cost_per_hour(plan, cluster) == 48.0
    unpriced = load_cluster(
        {**CLUSTER, "pools": [{**CLUSTER["pools"][0], "cost_per_gpu_hour": None}]}
    )
    assert plan_cost_per_hour(plan, unpriced) is None


def test_plan_document_fills_solver_and_predicted() -> None:
    """The --out document carries the solver facts and the predicted metrics, and loads back."""
    result = Result(
        status=Status.OPTIMAL,
        plan=load_plan(PLAN),
        report=_report(),
        objective=65536.0,
        bound=65536.0,
        gap=0.0,
        seed=3,
    )
    doc = plan_document(result)
    assert doc is not None
    assert doc["solver"]["status"] == "OPTIMAL" and doc["solver"]["seed"] == 3
    assert doc["predicted"]["tokens_per_s"] == 65536.0
    assert load_plan(doc) == load_plan(json.loads(dumps(doc)))
    assert plan_document(Result(status=Status.INFEASIBLE, message="no")) is None
    assert predicted_metrics({"tokens_per_s": math.inf, "mfu": 0.5}) == {"mfu": 0.5}


def test_devices_summary_elides_many_replicas() -> None:
    """A stage's devices show as node:gpu ranges, elided past three replicas."""
    stage = load_plan(PLAN).replica_groups[0].stages[0]
    assert (
        devices_summary(stage)
        == "h100-0:0-1, h100-0:2-3, \u2026, h100-0:6-7  (4 replicas on 1 node)"
    )
    assert devices_summary(stage, max_shown=4).count("h100-0") == 4


def test_fmt_time_units() -> None:
    """Times pick a readable unit."""
    assert (fmt_time(4e-4), fmt_time(0.0123), fmt_time(1.5), fmt_time(None)) == (
        "400 \u00b5s",
        "12.3 ms",
        "1.500 s",
        "\u2014",
    )


def test_render_evaluation_sections() -> None:
    """An evaluation renders summary, ledger, time table, layout and cost; zero columns drop."""
    text = _text(render_evaluation(_report(), load_plan(PLAN), load_cluster(CLUSTER)))
    for part in (
        "Summary",
        "Memory per GPU",
        "Time per stage",
        "Plan",
        "65,536 tok/s",
        "41.0% / 47.0%",
        "$48.00/h",
        "16 of 16",
    ):
        assert part in text, part
    assert "KV cache" not in text  # all zero in training
    assert "micro-batch 2 \u00d7 8" in text and "ZeRO 1" in text and "SP on" in text


def test_render_infeasible_shows_violations() -> None:
    """An infeasible report says NO and lists each violation."""
    text = _text(render_evaluation(_report(feasible=False), load_plan(PLAN)))
    assert "NO" in text and "memory 91.5 GB > 80 GB" in text


def test_render_result_with_baseline_and_infeasible() -> None:
    """A solve renders status, bound, gap and the baseline ratio; INFEASIBLE shows its message."""
    result = Result(
        status=Status.FEASIBLE,
        plan=load_plan(PLAN),
        report=_report(),
        objective=65536.0,
        bound=70000.0,
        gap=0.068,
        baseline={"tokens_per_s": 32768.0},
    )
    text = _text(render_result(result, load_cluster(CLUSTER)))
    assert "FEASIBLE" in text and "70,000" in text and "6.8%" in text and "2.00\u00d7" in text
    why = _text(
        render_result(Result(status=Status.INFEASIBLE, message="stage memory: needs 141 GB"))
    )
    assert "INFEASIBLE" in why and "needs 141 GB" in why


def test_dumps_keeps_device_lists_compact() -> None:
    """Plan JSON puts a TP group's [node, gpu] pairs on shared lines, and round-trips exactly."""
    doc = {"devices": [[[f"h100-{r}", g] for g in range(8)] for r in range(4)], "x": [1.5, None]}
    text = dumps(doc)
    assert json.loads(text) == doc
    assert len(text.splitlines()) < 25  # one pair per line would take 45
    assert '["h100-0", 0], ["h100-0", 1]' in text
