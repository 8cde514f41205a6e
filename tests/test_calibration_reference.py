"""A cluster's ``calibration:`` reference reaches the evaluator and the planner.

The committed H200 calibration (measured with ``shardwise profile`` on the lent 2 x H200
machine) must change predictions exactly as passing it explicitly does, and the planner must
stay consistent with the evaluator on the calibrated cluster (no MODEL_ERROR).
"""

from __future__ import annotations

import pytest

from solver import load_cluster, load_model, load_workload
from solver.evaluate import evaluate
from solver.io import load_calibration
from solver.planner import plan
from solver.result import Status


def _h200_pair() -> tuple:
    base = load_cluster("h100x2-nvlink")
    pool = base.pools[0].model_copy(update={"gpu": "H200-SXM-141GB"})
    plain = base.model_copy(update={"pools": [pool]})
    return plain, plain.model_copy(update={"calibration": "h200-sxm-141gb"})


def test_reference_equals_explicit_calibration() -> None:
    plain, referenced = _h200_pair()
    m, w = load_model("gpt-1.7b"), load_workload("train-gpt-s2048")
    res = plan(m, plain, w, time_limit_s=5, compare_baseline=False)
    assert res.plan is not None
    cal = load_calibration("h200-sxm-141gb")
    uncal = evaluate(m, plain, w, res.plan).to_dict()["step_time_s"]
    explicit = evaluate(m, plain, w, res.plan, calibration=cal).to_dict()["step_time_s"]
    by_ref = evaluate(m, referenced, w, res.plan).to_dict()["step_time_s"]
    assert by_ref == pytest.approx(explicit, rel=1e-12)
    assert abs(by_ref - uncal) / uncal > 0.05  # the measured GEMM efficiency differs


def test_planner_on_a_calibrated_cluster_is_verified() -> None:
    _, referenced = _h200_pair()
    m, w = load_model("gpt-1.7b"), load_workload("train-gpt-s2048")
    res = plan(m, referenced, w, time_limit_s=5, compare_baseline=False)
    assert res.status == Status.OPTIMAL, res.message
