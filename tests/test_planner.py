"""Planner API: statuses, determinism, infeasibility explanations, verification."""

from __future__ import annotations

import functools

from builders import train

from solver import load_cluster, load_model, load_workload
from solver.planner import plan
from solver.result import Status

#: Both schedules (the spec's default) allowed.
_train = functools.partial(train, schedules=("1f1b", "interleaved"))


def test_deterministic_mode_repeats_plan_and_objective() -> None:
    """Deterministic mode gives the same plan and objective run after run."""
    m, c = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100")
    w = load_workload("train-tiny")
    a = plan(m, c, w, time_limit_s=10, deterministic=True)
    b = plan(m, c, w, time_limit_s=10, deterministic=True)
    assert a.status == b.status == Status.OPTIMAL
    assert a.objective == b.objective
    assert a.plan is not None and b.plan is not None
    assert a.plan.replica_groups == b.plan.replica_groups


def test_every_plan_is_evaluator_clean() -> None:
    """An OPTIMAL plan carries the evaluator's report: feasible, no violations, objective = tokens/s."""
    res = plan(load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny"), time_limit_s=10)
    assert res.status == Status.OPTIMAL
    assert res.report is not None and res.report["feasible"] and not res.report["violations"]
    assert res.objective == res.report["tokens_per_s"]
    assert res.plan is not None and res.plan.solver is not None and res.plan.solver.status == "OPTIMAL"


def test_model_too_big_is_infeasible_with_memory_reason() -> None:
    """Llama 3.1 405B cannot train on one 80 GB GPU: INFEASIBLE, naming memory and a relaxation."""
    res = plan(load_model("llama3.1-405b"), load_cluster("tiny-1x1-h100"), _train(), time_limit_s=10)
    assert res.status == Status.INFEASIBLE
    assert res.plan is None
    assert "memory" in res.message and "GB" in res.message
    assert "GPUs" in res.message or "recompute" in res.message


def test_min_cost_without_prices_is_invalid_input() -> None:
    """min_cost on a cluster without cost_per_gpu_hour is INVALID_INPUT naming the field."""
    c = load_cluster("tiny-2x4-a100")
    c = c.model_copy(update={"pools": [p.model_copy(update={"cost_per_gpu_hour": None}) for p in c.pools]})
    res = plan(load_model("tiny-gpt"), c, _train(objective="min_cost"), time_limit_s=5)
    assert res.status == Status.INVALID_INPUT
    assert "cost_per_gpu_hour" in res.message


def test_inference_plan_meets_slo() -> None:
    """An inference plan's replicas all meet the TPOT SLO and use no more GPUs than exist."""
    res = plan(load_model("llama3-70b"), load_cluster("seed-4x8-h100"), load_workload("infer-chat-slo"), time_limit_s=10)
    assert res.status == Status.OPTIMAL
    assert res.report is not None and res.report["feasible"]
    assert res.report["tpot_ms"] <= 50.0
    assert res.report["num_gpus"] <= 32
