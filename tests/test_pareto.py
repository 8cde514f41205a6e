"""Pareto fronts (:mod:`solver.pareto`) and ``shardwise pareto``.

The dominance filter is checked on hand-made points; the sweeps on small bundled instances:
training tiny-gpt on tiny-2x4-a100 (2 nodes: the sweep solves on 1 and 2 nodes) and inference
llama3-70b on seed-4x8-h100 under infer-chat-slo (TPOT from the min-latency plan up to the
unconstrained throughput plan, about 1 s per solve).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solver.cli import app
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.pareto import ParetoFront, ParetoPoint, non_dominated, pareto_front
from solver.specs import Plan, ReplicaGroup, Stage

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

_PLAN = Plan(
    kind="inference",
    replica_groups=[
        ReplicaGroup(
            count=1,
            batch_size=1,
            stages=[
                Stage(first_layer=0, last_layer=3, pool="a100", tp=1, devices=[[("a100-0", 0)]])
            ],
        )
    ],
)


def _pt(x: float, y: float) -> ParetoPoint:
    return ParetoPoint(x, y, None, "OPTIMAL", 1, None, None, None, None, f"{x},{y}", _PLAN)


def _assert_front(front: ParetoFront) -> None:
    xs = [p.x for p in front.points]
    ys = [p.tokens_per_s for p in front.points]
    assert xs == sorted(xs)
    assert all(a < b for a, b in zip(ys, ys[1:], strict=False)), "throughput must rise along x"
    for p in front.points:  # no solved point dominates a front point
        for q in front.solved:
            assert not (
                q.x <= p.x and q.tokens_per_s >= p.tokens_per_s
                and (q.x < p.x or q.tokens_per_s > p.tokens_per_s)
            )  # fmt: skip
    for q in front.solved:  # every solved point is matched or beaten by a front point
        assert any(p.x <= q.x and p.tokens_per_s >= q.tokens_per_s for p in front.points)


def test_non_dominated_by_hand() -> None:
    """(x, y) points, smaller x and larger y better: (1,10) (2,30) (4,40) survive; (3,20) is
    beaten by (2,30), (5,40) by (4,40), (2,25) by (2,30); output sorted by x."""
    pts = [_pt(3, 20), _pt(1, 10), _pt(5, 40), _pt(2, 30), _pt(4, 40), _pt(2, 25)]
    front = non_dominated(pts)
    assert [(p.x, p.tokens_per_s) for p in front] == [(1, 10), (2, 30), (4, 40)]


def test_non_dominated_keeps_one_of_duplicates() -> None:
    """Two identical points give one front point."""
    assert len(non_dominated([_pt(1, 1), _pt(1, 1)])) == 1


def test_training_front_over_node_counts() -> None:
    """tiny-gpt on 1 then 2 nodes: both points are real, evaluator-feasible plans; the front is
    sorted and non-dominated, and x is the GPUs each plan uses."""
    m, c, w = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny")
    front = pareto_front(m, c, w, points=2, time_limit_s=2, deterministic=True)
    assert front.kind == "training" and front.x_key == "num_gpus"
    assert [p.target for p in front.solved] == [1.0, 2.0]
    assert front.points
    _assert_front(front)
    for p in front.solved:
        report = evaluate(m, c, w, p.plan)
        assert report.feasible
        assert p.x == report.num_gpus == p.num_gpus
        assert p.tokens_per_s == pytest.approx(report.tokens_per_s)
    doc = front.to_dict()
    json.dumps(doc, allow_nan=False)
    assert len(doc["points"]) + len(doc["dominated"]) == len(front.solved)


def test_inference_front_spans_fastest_to_widest() -> None:
    """The front starts at the min-latency plan's TPOT and ends at the unconstrained max
    throughput plan; interior points meet their TPOT targets and the TTFT SLO."""
    m, c, w = (
        load_model("llama3-70b"),
        load_cluster("seed-4x8-h100"),
        load_workload("infer-chat-slo"),
    )
    front = pareto_front(m, c, w, points=4, time_limit_s=3, deterministic=True)
    assert front.x_key == "tpot_ms" and front.x_limit == w.tpot_ms
    _assert_front(front)
    assert len(front.points) >= 2
    fastest, widest = front.solved[0], front.solved[1]
    assert front.points[0].x == pytest.approx(fastest.x)
    assert front.points[-1].tokens_per_s == pytest.approx(widest.tokens_per_s)
    for p in front.solved[2:]:
        assert p.target is not None and p.x <= p.target * (1 + 1e-9)
    for p in front.solved:
        assert p.ttft_ms is not None and p.ttft_ms <= 2000


def test_bad_arguments_raise_spec_errors() -> None:
    """points < 2, a zero time limit and --by cost without prices are bad input."""
    m, c, w = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny")
    with pytest.raises(SpecError, match="points"):
        pareto_front(m, c, w, points=1)
    with pytest.raises(SpecError, match="time_limit_s"):
        pareto_front(m, c, w, time_limit_s=0)
    with pytest.raises(SpecError, match="cost_per_gpu_hour"):
        pareto_front(m, c, w, points=2, time_limit_s=1, by="cost")


# ------------------------------------------------------------------------------------------
# CLI (subprocess: the real entry point, stdout/stderr separation, exit codes)
# ------------------------------------------------------------------------------------------
def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solver", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "COLUMNS": "250"},  # wide tables: phrases stay on one line
        timeout=120,
    )


TINY = ("-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "train-tiny", "-t", "2", "-n", "2")


def test_cli_pareto_json_is_one_document(tmp_path: Path) -> None:
    """--json prints exactly one JSON document on stdout; --plot writes the PNG."""
    out = tmp_path / "front.png"
    r = _run("pareto", *TINY, "--deterministic", "--json", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "training" and doc["x"]["key"] == "num_gpus"
    assert doc["points"] and doc["plot"] == str(out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_pareto_bad_input_subprocess() -> None:
    """An unknown model through the real entry point: exit 2, one line, no traceback."""
    r = _run("pareto", "-m", "no-such-model", "-c", "tiny-2x4-a100", "-w", "train-tiny")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-model" in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_cli_pareto_table() -> None:
    """The human view is a table of the front's points (in-process)."""
    r = runner.invoke(app, ["pareto", *TINY])
    assert r.exit_code == 0, r.output
    assert "Pareto front" in r.stdout and "tok/s" in r.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("-n", "1"), "--points"),
        (("--by", "dollars"), "--by"),
        (("--by", "cost"), "cost_per_gpu_hour"),
        (("--plot", "front.gif"), "--plot"),
        (("-t", "-1"), "--time-limit"),
    ],
)
def test_cli_pareto_bad_input(extra: tuple[str, ...], needle: str) -> None:
    """Bad input (in-process): exit 2, one line 'error: ...' naming the option."""
    r = runner.invoke(app, ["pareto", *TINY, *extra])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert r.stdout == ""


def test_cli_pareto_refuses_to_overwrite_plot(tmp_path: Path) -> None:
    """An existing --plot file is left alone without --force (checked before solving)."""
    out = tmp_path / "front.svg"
    out.write_text("mine")
    r = runner.invoke(app, ["pareto", *TINY, "--plot", str(out)])
    assert r.exit_code == 2 and "--force" in r.stderr
    assert out.read_text() == "mine"
