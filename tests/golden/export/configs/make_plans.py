"""Write the plan files the export-config golden tests read (run once; then frozen).

    .venv/bin/python tests/golden/export/configs/make_plans.py [--force]

Each plan is built from explicit (pool, TP, layers) stages with the planner's own placement
(:func:`solver.construction.build_stages`) and re-scored by the evaluator, which must find it
feasible: shapes the bundled examples do not produce (ZeRO-2/3 under DeepSpeed, AutoTP,
pipeline stages on two GPU types).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from solver.construction import build_stages
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.report import dumps, predicted_metrics
from solver.specs import Plan, ReplicaGroup

HERE = Path(__file__).resolve().parent


def _training(
    cluster: str, count: int, stages: list[tuple[str, int, int]], **knobs: Any
) -> dict[str, Any]:
    """A tiny-gpt training plan (train-tiny, any ZeRO stage) from explicit stages."""
    built = build_stages(load_cluster(cluster), [(count, stages)])[0]
    plan = Plan(kind="training", replica_groups=[ReplicaGroup(count=count, stages=built, **knobs)])
    workload = load_workload("train-tiny").model_copy(update={"zero_stage": [0, 1, 2, 3]})
    report = evaluate(load_model("tiny-gpt"), load_cluster(cluster), workload, plan)
    assert report.feasible, report.violations
    plan = plan.model_copy(update={"predicted": predicted_metrics(report.to_dict())})
    doc: dict[str, Any] = plan.model_dump(mode="json", exclude_none=True)
    return doc


_DP = {"recompute": "none", "sequence_parallel": False, "schedule": "1f1b"}

PLANS = {
    # ZeRO-3 over 8 data-parallel ranks: DeepSpeed's DP size is the world size.
    "train-tiny-zero3": lambda: _training(
        "tiny-2x4-a100",
        8,
        [("a100", 1, 4)],
        micro_batch_size=2,
        num_micro_batches=1,
        zero_stage=3,
        **_DP,
    ),
    # AutoTP: TP=2 x DP=4, ZeRO-2, full recompute.
    "train-tiny-autotp-zero2": lambda: _training(
        "tiny-2x4-a100",
        4,
        [("a100", 2, 4)],
        micro_batch_size=2,
        num_micro_batches=2,
        zero_stage=2,
        recompute="full",
        sequence_parallel=False,
        schedule="1f1b",
    ),
    # Two pipeline stages on two GPU types (H100 then L40S), 2 replicas.
    "train-tiny-hetero": lambda: _training(
        "tiny-hetero",
        2,
        [("h100", 1, 2), ("l40s", 1, 2)],
        micro_batch_size=2,
        num_micro_batches=4,
        zero_stage=1,
        **_DP,
    ),
}


def main(argv: list[str]) -> None:
    force = "--force" in argv
    for name, make in PLANS.items():
        path = HERE / f"{name}.json"
        if path.exists() and not force:
            print(f"{path.name}: exists, kept")
            continue
        path.write_text(dumps(make()) + "\n", encoding="utf-8")
        print(f"{path.name}: written")


if __name__ == "__main__":
    main(sys.argv[1:])
