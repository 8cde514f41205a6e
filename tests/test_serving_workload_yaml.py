"""Serving traffic in the workload YAML (request_rate, arrival, trace, length distributions,
slo_percentile): round trip, defaults the CLI and the planner take from it, options that
override it, the bundled example, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from solver.cli import app
from solver.cpsat.plan_serving import plan_serving
from solver.errors import SpecError
from solver.io import load_cluster, load_model, load_workload
from solver.serving import Lengths, serving_metrics, workload_traffic
from solver.specs import InferenceWorkload

TINY = load_model("tiny-llama")
TINY_HETERO = load_cluster("tiny-hetero")
BASE: dict[str, Any] = {
    "kind": "inference",
    "prompt_tokens": 512,
    "output_tokens": 64,
    "ttft_ms": 50,
    "tpot_ms": 5,
}


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "w.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_yaml_round_trip_and_traffic() -> None:
    """Every traffic field survives dump -> YAML -> load, and resolves to the Lengths and
    rate it names."""
    doc = {
        **BASE,
        "request_rate": 12.5,
        "arrival": "poisson",
        "prompt_tokens_distribution": {"kind": "lognormal", "mean": 700, "sigma": 0.9, "max": 4096},
        "output_tokens_distribution": {"kind": "uniform", "low": 16, "high": 128},
        "slo_percentile": 95,
    }
    w = load_workload(doc)
    assert isinstance(w, InferenceWorkload)
    again = load_workload(yaml.safe_load(yaml.safe_dump(w.model_dump(mode="json"))))
    assert again == w
    tr = workload_traffic(w)
    assert tr.rate == 12.5 and tr.trace is None and tr.slo_percentile == 95.0
    assert tr.prompt == Lengths.lognormal(700, 0.9, 4096, "prompt_tokens_distribution")
    assert tr.output == Lengths.uniform(16, 128, "output_tokens_distribution")
    # Without the fields: fixed lengths, no rate, p99.
    plain = workload_traffic(InferenceWorkload.model_validate(BASE))
    assert plain.rate is None and plain.slo_percentile == 99.0
    assert plain.prompt == Lengths.fixed(512) and plain.output == Lengths.fixed(64)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"request_rate": -2}, "request_rate: must be > 0, got -2"),
        ({"request_rate": float("nan")}, "request_rate: must be a finite number"),
        ({"request_rate": float("inf")}, "request_rate: must be a finite number"),
        ({"request_rate": 0}, "request_rate: must be > 0"),
        ({"ttft_ms": 0}, "ttft_ms: must be > 0"),
        ({"tpot_ms": -5}, "tpot_ms: must be > 0"),
        ({"slo_percentile": 0}, "slo_percentile: must be > 0"),
        ({"slo_percentile": 100.5}, "slo_percentile: must be <= 100"),
        ({"arrival": "trace"}, "trace: arrival trace needs a trace file"),
        ({"arrival": "gamma"}, "arrival:"),
        ({"trace": "t.csv"}, "arrival: a trace file is given"),
        ({"arrival": "trace", "trace": "t.csv", "request_rate": 3}, "request_rate: the trace"),
        (
            {"prompt_tokens_distribution": {"kind": "lognormal", "mean": 100}},
            "prompt_tokens_distribution.sigma: required for kind lognormal",
        ),
        (
            {"output_tokens_distribution": {"kind": "uniform", "low": 9, "high": 3}},
            "output_tokens_distribution.high: must be >= low",
        ),
        (
            {"output_tokens_distribution": {"kind": "fixed", "value": 9, "sigma": 1}},
            "output_tokens_distribution.sigma: not a parameter of kind fixed",
        ),
    ],
)
def test_bad_traffic_fields_are_one_line_naming_the_field(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    """In the library (SpecError) and through the CLI (exit 2, one line, no traceback)."""
    path = _write(tmp_path, {**BASE, **extra})
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as e:
        load_workload(path)
    assert "\n" not in str(e.value)
    res = CliRunner().invoke(
        app, ["plan-serving", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", str(path)]
    )
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.count("\n") == 0 and message.split(":")[0] in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "trace: .*no rows"),
        ("timestamp,prompt_tokens,output_tokens\n", "trace: .*no rows"),
        ("timestamp,prompt_tokens\n0,5\n", "trace: .*missing column 'output_tokens'"),
        ("timestamp,prompt_tokens,output_tokens\n0,abc,3\n", "trace: .*must be a number"),
        ("timestamp,prompt_tokens,output_tokens\n-1,4,3\n", "trace: .*must be >= 0"),
    ],
)
def test_empty_or_malformed_workload_trace_exits_2(
    tmp_path: Path, content: str, message: str
) -> None:
    """A workload's trace file that is empty or malformed: one line naming the trace field."""
    (tmp_path / "t.csv").write_text(content)
    path = _write(tmp_path, {**BASE, "arrival": "trace", "trace": "t.csv"})
    w = load_workload(path)
    assert isinstance(w, InferenceWorkload)
    with pytest.raises(SpecError, match=message):
        workload_traffic(w, tmp_path)
    res = CliRunner().invoke(
        app, ["plan-serving", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", str(path)]
    )
    assert res.exit_code == 2 and res.stderr.strip().count("\n") == 0, res.output
    assert res.stderr.startswith("error: trace:")


def test_missing_trace_file_names_the_field(tmp_path: Path) -> None:
    w = load_workload({**BASE, "arrival": "trace", "trace": "absent.csv"})
    assert isinstance(w, InferenceWorkload)
    with pytest.raises(SpecError, match="trace: file not found"):
        workload_traffic(w, tmp_path)


def test_cli_takes_the_rate_from_the_yaml_and_options_override_it(tmp_path: Path) -> None:
    """plan-serving with no --rate plans for the workload's request_rate; --rate overrides it;
    simulate defaults to the same rate and lengths."""
    path = _write(
        tmp_path,
        {
            **BASE,
            "request_rate": 40,
            "output_tokens_distribution": {"kind": "uniform", "low": 32, "high": 96},
        },
    )
    runner = CliRunner()
    base = ["plan-serving", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", str(path), "--tp", "1"]
    res = runner.invoke(app, [*base, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rate_rps"] == 40.0 and doc["verified"]
    over = runner.invoke(app, [*base, "--rate", "60", "--json"])
    assert over.exit_code == 0, over.output
    assert json.loads(over.stdout)["rate_rps"] == 60.0
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc["plan"]))
    sim = runner.invoke(
        app,
        ["simulate", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", str(path), "--plan", str(plan)]
        + ["--requests", "300", "--json"],
    )
    assert sim.exit_code == 0, sim.output
    s = json.loads(sim.stdout)
    # 300 Poisson requests at 40/s take about 7.5 s; the uniform outputs average 64 tokens.
    assert 5.0 < s["duration_s"] < 12.0
    assert 50 < s["output_throughput"] / s["request_throughput"] < 80


def test_workload_trace_relative_to_the_yaml_drives_the_plan(tmp_path: Path) -> None:
    """arrival: trace with a path relative to the workload file: the planner takes the
    trace's mean rate and verifies on the trace itself."""
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(1 / 30.0, size=400))
    rows = ["timestamp,prompt_tokens,output_tokens"] + [
        f"{x:.6f},{int(rng.integers(100, 600))},{int(rng.integers(8, 80))}" for x in t
    ]
    sub = tmp_path / "traffic"
    sub.mkdir()
    (sub / "trace.csv").write_text("\n".join(rows) + "\n")
    path = _write(tmp_path, {**BASE, "arrival": "trace", "trace": "traffic/trace.csv"})
    res = CliRunner().invoke(
        app,
        ["plan-serving", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", str(path), "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rate_rps"] == pytest.approx(399 / (t[-1] - t[0]))
    assert doc["verification"]["num_requests"] == 400


def test_slo_percentile_is_what_the_planner_holds_the_fleet_to() -> None:
    """slo_percentile 90: the verification checks the p90s, reported beside p50/p90/p99,
    and the capacity of every shape is at least its p99 capacity (a p90 never exceeds the
    p99 of the same requests)."""
    w99 = InferenceWorkload.model_validate({**BASE, "request_rate": 60})
    w90 = w99.model_copy(update={"slo_percentile": 90.0})
    r99 = plan_serving(TINY, TINY_HETERO, w99, tp=[1])
    r90 = plan_serving(TINY, TINY_HETERO, w90, tp=[1])
    assert r99.rate_rps == r90.rate_rps == 60.0
    v = r90.verification
    assert v is not None and v.slo_percentile == 90.0
    assert v.ttft_at_percentile_ms == pytest.approx(v.ttft_ms.p90)
    assert r90.settings["slo_percentile"] == 90.0
    for a, b in zip(r99.candidates, r90.candidates, strict=True):
        assert b.capacity_rps >= a.capacity_rps * (1 - 2 * 0.02)


def test_metrics_at_the_slo_percentile() -> None:
    """TTFT 1..10 ms over ten requests: the 80th percentile is numpy's 8.2 ms."""
    n = 10
    arrival = np.zeros(n)
    first = np.arange(1, n + 1) / 1e3
    m = serving_metrics(
        arrival,
        np.full(n, 4, dtype=np.int64),
        np.full(n, 1, dtype=np.int64),
        first,
        first,
        np.full(3, 0.001),
        np.zeros(3, dtype=np.int64),
        slo_percentile=80.0,
    )
    assert m.ttft_at_percentile_ms == pytest.approx(8.2)
    assert np.isnan(m.tpot_at_percentile_ms)


def test_bundled_example_describes_its_traffic() -> None:
    """instances/serve-chat-10rps.yaml: 10 req/s Poisson, log-normal lengths, p99 SLOs."""
    w = load_workload("serve-chat-10rps")
    assert isinstance(w, InferenceWorkload)
    tr = workload_traffic(w)
    assert tr.rate == 10.0 and tr.trace is None and tr.slo_percentile == 99.0
    assert tr.prompt == Lengths.lognormal(1024, 1.0, 8192, "prompt_tokens_distribution")
    assert tr.output == Lengths.lognormal(256, 0.8, 2048, "output_tokens_distribution")
    assert (w.ttft_ms, w.tpot_ms) == (1000.0, 50.0)
