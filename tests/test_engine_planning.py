"""``plan(..., engine=...)``: a launcher's limits become planner constraints.

Without an engine the training optimum may mix TP degrees per stage (no launcher can run that);
with one, every plan the planner returns is one :func:`solver.engines.engine_violations`
accepts, and it is never better than the unconstrained optimum (a restriction of the space).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from solver import load_cluster, load_model, load_workload
from solver.engines import engine_violations
from solver.planner import plan
from solver.result import Status

CASES = [
    ("tiny-gpt", "tiny-hetero", "train-tiny", "megatron"),
    ("tiny-gpt", "tiny-2x4-a100", "train-tiny", "deepspeed"),
    ("tiny-llama", "tiny-2x4-a100", "train-tiny", "torchrun"),
    ("tiny-llama", "tiny-2x4-a100", "infer-chat-slo", "vllm"),
    ("tiny-gpt", "tiny-hetero", "infer-latency", "sglang"),
]


@pytest.mark.parametrize(("model", "cluster", "workload", "engine"), CASES)
def test_engine_plans_are_launchable(model: str, cluster: str, workload: str, engine: str) -> None:
    m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
    free = plan(m, c, w, time_limit_s=5, deterministic=True, compare_baseline=False)
    bound = plan(m, c, w, time_limit_s=5, deterministic=True, compare_baseline=False, engine=engine)
    assert bound.status in (Status.OPTIMAL, Status.FEASIBLE, Status.INFEASIBLE), bound.message
    if bound.plan is None:
        return
    assert engine_violations(bound.plan, m, engine, w) == []
    if free.status == Status.OPTIMAL and bound.status == Status.OPTIMAL:
        assert free.objective is not None and bound.objective is not None
        better = max if w.objective == "max_throughput" else min
        assert better(free.objective, bound.objective) == pytest.approx(free.objective, rel=0.02)


def test_megatron_plan_has_one_tp_degree_on_a_mixed_tp_instance() -> None:
    """gpt-39b on selene-a100-64: the free optimum is known to mix TP across stages; the
    Megatron plan uses one TP degree and even middle stages."""
    m, c, w = load_model("gpt-39b"), load_cluster("selene-a100-64"), load_workload("train-gpt-s2048")
    res = plan(m, c, w, time_limit_s=10, compare_baseline=False, engine="megatron")
    assert res.plan is not None, res.message
    (group,) = res.plan.replica_groups
    assert len({st.tp for st in group.stages}) == 1
    layers = [st.num_layers for st in group.stages]
    assert len(set(layers[1:-1])) <= 1
    assert engine_violations(res.plan, m, "megatron", w) == []


@pytest.mark.parametrize(
    ("engine", "workload", "needle"),
    [("nonsense", "train-tiny", "unknown engine"), ("vllm", "train-tiny", "launches inference")],
)
def test_bad_engine_is_invalid_input(engine: str, workload: str, needle: str) -> None:
    res = plan(load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload(workload), engine=engine)
    assert res.status == Status.INVALID_INPUT
    assert res.message is not None and needle in res.message and "engine" in res.message


def test_cli_bad_engine_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "solver", "plan", "-m", "tiny-gpt", "-c", "tiny-2x4-a100",
         "-w", "train-tiny", "--engine", "vllm", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: engine:")
    assert "Traceback" not in proc.stderr
