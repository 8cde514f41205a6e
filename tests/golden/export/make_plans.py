"""Write the plan files the export golden tests read (run once; the plans are then frozen).

    .venv/bin/python tests/golden/export/make_plans.py [--force]

Planner plans come from :func:`solver.planner.plan` on bundled examples (a time limit, so
FEASIBLE plans may differ from run to run: that is why they are frozen as files);
``uniform`` plans from the Megatron-style grid baseline; ``built`` plans are written here from
explicit (pool, TP, layers) stages with the planner's own placement (:func:`build_stages`):
shapes the planner found in time-limited runs that it does not find every time (mixed TP on
gpt-39b, the 39/41 split on llama3-70b), and shapes the bundled examples do not produce
(interleaving, an uneven single-node pipeline, a mixed-TP inference pipeline).  Every plan is
re-scored by the evaluator and must be feasible.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from solver.baselines import uniform_best
from solver.construction import build_stages
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.planner import plan
from solver.report import dumps, plan_document, predicted_metrics
from solver.specs import Plan, ReplicaGroup

HERE = Path(__file__).resolve().parent


def _planner(model: str, cluster: str, workload: str, limit: float) -> dict[str, Any]:
    result = plan(
        load_model(model), load_cluster(cluster), load_workload(workload), time_limit_s=limit
    )
    doc = plan_document(result)
    assert doc is not None, (model, cluster, workload, result.status)
    return doc


def _scored(model: str, cluster: str, workload: str, p: Plan) -> dict[str, Any]:
    report = evaluate(load_model(model), load_cluster(cluster), load_workload(workload), p)
    assert report.feasible, report.violations
    p = p.model_copy(update={"predicted": predicted_metrics(report.to_dict())})
    doc: dict[str, Any] = p.model_dump(mode="json", exclude_none=True)
    return doc


def _uniform(model: str, cluster: str, workload: str) -> dict[str, Any]:
    m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
    best, _ = uniform_best(m, c, w, largest_dp_only=True)
    assert best is not None
    return _scored(model, cluster, workload, best)


def _interleaved() -> dict[str, Any]:
    """gpt-39b on 64 A100: TP=4, PP=4, 2 virtual stages of 6 blocks, 4 replicas."""
    cluster = load_cluster("selene-a100-64")
    pp, v, size = 4, 2, 6
    stages = build_stages(cluster, [(4, [("dgx-a100", 4, v * size)] * pp)])[0]
    chunked = [
        s.model_copy(
            update={
                "first_layer": None,
                "last_layer": None,
                "chunks": [((j * pp + i) * size, (j * pp + i) * size + size - 1) for j in range(v)],
            }
        )
        for i, s in enumerate(stages)
    ]
    group = ReplicaGroup(
        count=4,
        micro_batch_size=1,
        num_micro_batches=128,
        schedule="interleaved",
        virtual_stages=v,
        recompute="selective",
        zero_stage=1,
        sequence_parallel=True,
        stages=chunked,
    )
    return _scored(
        "gpt-39b",
        "selene-a100-64",
        "train-gpt-s2048",
        Plan(kind="training", replica_groups=[group]),
    )


def _training(
    model: str,
    cluster: str,
    workload: str,
    count: int,
    stages: list[tuple[str, int, int]],
    **knobs: Any,
) -> dict[str, Any]:
    """A training plan from explicit (pool, tp, layers) stages and the group's knobs."""
    built = build_stages(load_cluster(cluster), [(count, stages)])[0]
    group = ReplicaGroup(count=count, stages=built, **knobs)
    return _scored(model, cluster, workload, Plan(kind="training", replica_groups=[group]))


def _inference(
    cluster: str, groups: list[tuple[int, int, list[tuple[str, int, int]]]]
) -> dict[str, Any]:
    """A llama3-70b inference plan from (count, batch, [(pool, tp, layers), ...]) groups."""
    stages = build_stages(load_cluster(cluster), [(n, s) for n, _, s in groups])
    p = Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=n, batch_size=b, stages=st)
            for (n, b, _), st in zip(groups, stages, strict=True)
        ],
    )
    return _scored("llama3-70b", cluster, "infer-chat-slo", p)


PLANS = {
    "train-tiny-gpt": lambda: _planner("tiny-gpt", "tiny-2x4-a100", "train-tiny", 5),
    "train-gpt39-uniform": lambda: _uniform("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    # The planner's 5 s answer in one run (FEASIBLE, 43,179 tokens/s predicted by the solver).
    "train-gpt39-mixed-tp": lambda: _training(
        "gpt-39b",
        "selene-a100-64",
        "train-gpt-s2048",
        8,
        [("dgx-a100", 2, 12), ("dgx-a100", 4, 24), ("dgx-a100", 2, 12)],
        micro_batch_size=1,
        num_micro_batches=64,
        recompute="none",
        zero_stage=1,
        sequence_parallel=False,
    ),
    # What DeepSpeed can launch: TP=4 PP=2, full recompute, no sequence parallelism.
    "train-gpt39-deepspeed": lambda: _training(
        "gpt-39b",
        "selene-a100-64",
        "train-gpt-s2048",
        8,
        [("dgx-a100", 4, 24), ("dgx-a100", 4, 24)],
        micro_batch_size=1,
        num_micro_batches=64,
        recompute="full",
        zero_stage=1,
        sequence_parallel=False,
    ),
    "train-gpt39-interleaved": _interleaved,
    # The planner's 8 s answer in one run (FEASIBLE): TP=8 PP=2 with 39/41 layers.
    "train-llama70-uneven": lambda: _training(
        "llama3-70b",
        "seed-4x8-h100",
        "train-llama-s8192",
        2,
        [("h100", 8, 39), ("h100", 8, 41)],
        micro_batch_size=1,
        num_micro_batches=512,
        recompute="selective",
        zero_stage=1,
        sequence_parallel=True,
    ),
    "infer-llama70-chat": lambda: _planner("llama3-70b", "seed-4x8-h100", "infer-chat-slo", 5),
    "infer-llama70-hetero": lambda: _planner("llama3-70b", "hetero-mix", "infer-chat-slo", 5),
    "infer-llama405-pp2": lambda: _planner("llama3.1-405b", "seed-4x8-h100", "infer-chat-slo", 8),
    "infer-llama70-uneven-pp": lambda: _inference(
        "seed-4x8-h100", [(1, 8, [("h100", 4, 39), ("h100", 4, 41)])]
    ),
    "infer-llama70-mixed-tp": lambda: _inference(
        "hetero-mix", [(1, 8, [("h100", 8, 40), ("a100", 4, 40)])]
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
