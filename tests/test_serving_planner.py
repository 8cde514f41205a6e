"""The serving planner (solver/cpsat/plan_serving.py, solver/serving/capacity.py): capacity of
one replica by simulation, replica counts by CP-SAT, verification of the fleet, the CLI
``shardwise plan-serving`` and its bad input.  Hand-derived cases use ConstantStepCost; the
bundled Llama-3-70B example must solve within the issue's 10 s."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ortools.sat.python import cp_model
from typer.testing import CliRunner

from solver.cli import app
from solver.cpsat import plan_serving as ps
from solver.cpsat import serving_verify as sv
from solver.cpsat.plan_serving import plan_serving
from solver.cpsat.serving_fleet import Candidate, choose_replicas
from solver.errors import SpecError
from solver.io import load_cluster, load_model, load_workload
from solver.serving import (
    ConstantStepCost,
    Lengths,
    Replica,
    generate_requests,
    serve,
    weighted_assignment,
    weighted_random_assignment,
)
from solver.serving.capacity import CapacitySearch, search_capacity
from solver.serving.simulator import SloStop, simulate_replica
from solver.specs import InferenceWorkload

TINY = load_model("tiny-llama")
TINY_HETERO = load_cluster("tiny-hetero")  # h100 (2 GPUs, $3/GPU-h), l40s (2 GPUs, $0.9)
TINY_W = InferenceWorkload(
    kind="inference", prompt_tokens=512, output_tokens=64, ttft_ms=50, tpot_ms=5
)

# --- one replica with constant 10 ms steps ----------------------------------------------------
# s = 10 ms per step whatever it holds; max_num_seqs B = 4; prompts P = 100 (one prefill step,
# budget 1000); outputs O = 10.  A request holds a slot for exactly O steps (its prefill step
# samples token 1, then 9 decode steps), so no rate above mu = B / (O s) = 40 req/s is
# sustained, and with every request queued at t = 0 the engine serves batches of 4 in 10 steps:
# throughput exactly 40 req/s.  Every TPOT is exactly s = 10 ms ((O - 1) steps / (O - 1)); every
# TTFT is >= s (its own prefill step).
STEP = 0.01
CONST = Replica(ConstantStepCost(STEP), 4, 1000, 10**9)
P100, O10 = Lengths.fixed(100), Lengths.fixed(10)
MU = 4 / (10 * STEP)


def test_loose_slos_give_the_saturated_throughput() -> None:
    """With SLOs no load can break, the capacity is the hand-derived throughput, 40 req/s."""
    res = search_capacity(CONST, P100, O10, ttft_slo_ms=1e9, tpot_slo_ms=1e9)
    assert res.saturated and res.upper_rps is None
    assert res.capacity_rps == pytest.approx(MU, rel=1e-9)


@pytest.mark.parametrize(
    ("ttft", "tpot", "needle"),
    [(9.0, None, "p99 TTFT "), (None, 9.99, "p99 TPOT 10.0 ms")],
)
def test_slo_below_one_step_is_never_met(
    ttft: float | None, tpot: float | None, needle: str
) -> None:
    """TTFT >= one step and TPOT == one step at any load: an SLO below 10 ms gives capacity 0,
    the reason quoting the low-load p99s (TTFT >= 10 ms, TPOT exactly 10 ms)."""
    res = search_capacity(CONST, P100, O10, ttft_slo_ms=ttft, tpot_slo_ms=tpot)
    assert res.capacity_rps == 0.0 and res.reason is not None
    assert res.reason.startswith("SLO:") and needle in res.reason
    low = res.probes[-1]
    assert low.ttft_p99_ms >= 10.0 and low.tpot_p99_ms == pytest.approx(10.0, abs=1e-6)


def test_capacity_bracket_checked_through_the_public_metrics() -> None:
    """A binding TTFT SLO (3 steps): 0 < capacity < mu, the bracket is 2% wide, and the
    independent path (serve -> serving_metrics) agrees: p99 TTFT <= SLO at the capacity, > SLO
    at the upper end; TPOT is exactly one step."""
    res = search_capacity(CONST, P100, O10, ttft_slo_ms=30.0, tpot_slo_ms=50.0)
    assert res.complete and res.upper_rps is not None
    assert 0 < res.capacity_rps < res.upper_rps < MU
    assert res.upper_rps - res.capacity_rps <= 0.02 * res.upper_rps
    unit = generate_requests(1000, 1.0, P100, O10, seed=0)

    def p99(rate: float) -> tuple[float, float]:
        reqs = type(unit)(unit.arrival_s / rate, unit.prompt_tokens, unit.output_tokens)
        m, _, _ = serve(reqs, [CONST])
        return m.ttft_ms.p99, m.tpot_ms.p99

    ok_ttft, ok_tpot = p99(res.capacity_rps)
    bad_ttft, _ = p99(res.upper_rps)
    assert ok_ttft <= 30.0 < bad_ttft
    assert ok_tpot == pytest.approx(10.0, abs=1e-9)


def test_early_stop_only_stops_runs_that_miss() -> None:
    """SloStop ends a run only when the full run's p99 misses; a run it does not stop is the
    full run, step for step (both outcomes occur over these rates)."""
    unit = generate_requests(1000, 1.0, P100, O10, seed=3)
    seen: set[bool] = set()
    for rate in (5.0, 15.0, 25.0, 35.0, 60.0):
        reqs = type(unit)(unit.arrival_s / rate, unit.prompt_tokens, unit.output_tokens)
        stop = SloStop.for_p99(reqs, 0.03, 0.05)
        kw: dict[str, Any] = {
            "max_num_seqs": 4,
            "max_num_batched_tokens": 1000,
            "kv_capacity_tokens": 10**9,
        }
        full = simulate_replica(reqs, CONST.cost, **kw)
        early = simulate_replica(reqs, CONST.cost, stop=stop, **kw)
        full_ok = float(np.percentile(full.first_token_s - reqs.arrival_s, 99)) <= 0.03
        seen.add(early.stopped)
        if early.stopped:
            assert not full_ok, rate
        else:
            np.testing.assert_array_equal(early.first_token_s, full.first_token_s)
            np.testing.assert_array_equal(early.finish_s, full.finish_s)
    assert seen == {True, False}


def test_misses_for_p99_matches_numpy() -> None:
    """n - floor(0.99 (n - 1)) values above a limit force numpy's p99 above it; one fewer
    need not."""
    for n in (1, 7, 100, 101, 1000, 1234):
        k = SloStop.misses_for_p99(n)
        x = np.zeros(n)
        x[n - k :] = 2.0
        assert np.percentile(x, 99) > 1.0
        if k > 1:  # k - 1 values just above the limit need not lift the p99 above it
            x[:] = 0.0
            x[n - k + 1 :] = 1.0 + 1e-9
            assert np.percentile(x, 99) <= 1.0


# --- dispatch ---------------------------------------------------------------------------------
def test_weighted_dispatch_splits_in_proportion() -> None:
    """Stride scheduling: every prefix is split 3:1 to within one request; equal weights are
    round-robin; weighted random gives each replica about its share (seeded, reproducible)."""
    split = weighted_assignment(400, [3.0, 1.0])
    assert [len(x) for x in split] == [300, 100]
    owner = np.empty(400, dtype=int)
    for k, idx in enumerate(split):
        owner[idx] = k
    for m in range(1, 401):
        assert abs((owner[:m] == 0).sum() - 0.75 * m) <= 1.0
    rr = weighted_assignment(10, [1.0, 1.0])
    assert rr[0].tolist() == [0, 2, 4, 6, 8] and rr[1].tolist() == [1, 3, 5, 7, 9]
    rnd = weighted_random_assignment(20000, [3.0, 1.0], seed=5)
    assert abs(len(rnd[0]) / 20000 - 0.75) < 0.01
    assert all(
        np.array_equal(a, b)
        for a, b in zip(rnd, weighted_random_assignment(20000, [3.0, 1.0], seed=5), strict=True)
    )
    with pytest.raises(SpecError, match=r"weights\[1\]: must be finite and > 0"):
        weighted_assignment(10, [1.0, 0.0])


# --- replica counts (CP-SAT), hand-derived ----------------------------------------------------
def _cand(pool: str, gpus: int, cap: float, price_per_gpu: float) -> Candidate:
    return Candidate(
        pool=pool,
        gpu="X",
        tp=gpus,
        pp=1,
        gpus=gpus,
        max_num_seqs=64,
        max_num_batched_tokens=2048,
        kv_capacity_tokens=10**6,
        cost_per_hour=gpus * price_per_gpu,
        capacity_rps=cap,
        upper_rps=cap * 1.01,
        probes=5,
        complete=True,
    )


# Pool h: 8 GPUs at $3/GPU-h, a 4-GPU replica serves 3 req/s ($4 per req/s);
# pool a: 16 GPUs at $1.8/GPU-h, an 8-GPU replica serves 2 req/s ($7.2 per req/s).
CANDS = [_cand("h", 4, 3.0, 3.0), _cand("a", 8, 2.0, 1.8)]
POOLS = {"h": 8, "a": 16}


@pytest.mark.parametrize(
    ("objective", "target", "counts", "value"),
    [
        # 6 req/s: 2 x h = $24 (h + 2 a = $40.8; 3 a = 6 req/s would need 24 GPUs of a).
        ("min_cost", 6.0, {0: 2}, 24.0),
        # 7 req/s: h holds only 2 replicas (6 req/s): 2 h + 1 a = $38.4 < h + 2 a = $40.8.
        ("min_cost", 7.0, {0: 2, 1: 1}, 38.4),
        # fewest GPUs for 6 req/s: 2 x h = 8 GPUs (3 x a would be 24).
        ("min_gpus", 6.0, {0: 2}, 8.0),
        # most req/s on the cluster: 2 h + 2 a = 10 req/s.
        ("max_goodput", None, {0: 2, 1: 2}, 10.0),
    ],
)
def test_cp_picks_the_cheapest_mix(
    objective: str, target: float | None, counts: dict[int, int], value: float
) -> None:
    """Hand-derived optima; the cheaper pool per GPU (a) is not the cheaper per request."""
    code, got, obj, bound = choose_replicas(CANDS, POOLS, objective, target, 5.0, 1, 0)
    assert code == cp_model.OPTIMAL
    assert got == counts
    assert obj == pytest.approx(value) and bound == pytest.approx(value)


def test_cp_cheaper_pool_at_equal_capacity_and_infeasible_target() -> None:
    """Equal replicas, different prices: the cheaper pool; a target above the cluster's
    10 req/s: INFEASIBLE."""
    same = [_cand("h", 4, 2.0, 3.0), _cand("a", 4, 2.0, 1.8)]
    code, got, obj, _ = choose_replicas(same, {"h": 8, "a": 8}, "min_cost", 4.0, 5.0, 1, 0)
    assert code == cp_model.OPTIMAL and got == {1: 2} and obj == pytest.approx(14.4)
    code, got, _, _ = choose_replicas(CANDS, POOLS, "min_cost", 11.0, 5.0, 1, 0)
    assert code == cp_model.INFEASIBLE and got == {}


# --- the whole planner on a tiny model ---------------------------------------------------------
def test_plan_is_verified_and_consistent() -> None:
    """A min_cost plan on two pools: verified, p99s within the SLOs, fleet totals add up."""
    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=150.0, tp=[1])
    assert res.status in ("OPTIMAL", "FEASIBLE") and res.verified and res.plan is not None
    v = res.verification
    assert v is not None and v.ttft_ms.p99 <= 50 and v.tpot_ms.p99 <= 5
    assert v.num_requests >= sv.VERIFY_MIN_REQUESTS and v.routing == "weighted_random"
    assert res.gpus == sum(g.gpus for g in res.fleet)
    assert res.cost_per_hour == pytest.approx(sum(g.cost_per_hour or 0 for g in res.fleet))
    assert res.plan.solver is not None and res.plan.solver.status == res.status
    assert sum(g.count for g in res.plan.replica_groups) == sum(g.count for g in res.fleet)


def test_max_goodput_and_trace_plans_are_verified(tmp_path: Path) -> None:
    """max_goodput: CP-SAT fills the pools (every GPU used here), the fleet verified at the rate
    it reports, <= its summed capacity.  A trace: its mean rate is the target and the fleet is
    verified on the trace's own requests."""
    res = plan_serving(TINY, TINY_HETERO, TINY_W, objective="max_goodput", tp=[1])
    assert res.status in ("OPTIMAL", "FEASIBLE") and res.verified
    assert res.gpus == 4 and res.rate_rps is not None and res.capacity_rps is not None
    assert res.rate_rps <= res.capacity_rps + 1e-9
    v = res.verification
    assert v is not None and v.ttft_ms.p99 <= 50 and v.tpot_ms.p99 <= 5
    reqs = generate_requests(600, 120.0, Lengths.fixed(512), Lengths.uniform(32, 96), seed=7)
    path = tmp_path / "trace.csv"
    rows = zip(reqs.arrival_s, reqs.prompt_tokens, reqs.output_tokens, strict=True)
    path.write_text(
        "timestamp,prompt_tokens,output_tokens\n"
        + "".join(f"{float(t)!r},{a},{b}\n" for t, a, b in rows)
    )
    from solver.serving import load_trace

    res = plan_serving(TINY, TINY_HETERO, TINY_W, trace=load_trace(path), tp=[1])
    assert res.verified and res.verification is not None
    assert res.verification.num_requests == 600
    assert res.rate_rps == pytest.approx(599 / (reqs.arrival_s[-1] - reqs.arrival_s[0]))


def test_verification_catches_an_under_provisioned_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacities overstated 3x: CP-SAT's fleet misses the SLOs in simulation; verification
    adds replicas until it meets them (FEASIBLE, says so); with no room to add, UNKNOWN and
    no plan: an unverified fleet is never reported."""
    real = search_capacity
    # 1.6 x the best single replica's simulated capacity: two replicas are needed, while the
    # inflated capacities make CP-SAT believe one is enough.
    honest = plan_serving(TINY, TINY_HETERO, TINY_W, rate=1.0, tp=[1], trim=False)
    rate = 1.6 * max(c.capacity_rps for c in honest.candidates)

    def inflated(*args: Any, **kwargs: Any) -> CapacitySearch:
        r = real(*args, **kwargs)
        return r.model_copy(update={"capacity_rps": 3.0 * r.capacity_rps, "upper_rps": None})

    monkeypatch.setattr(ps, "search_capacity", inflated)
    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=rate, tp=[1], trim=False)
    assert res.status == "FEASIBLE" and res.verified and res.extra_replicas >= 1
    assert "verification added" in res.message
    assert res.verification is not None and res.verification.tpot_ms.p99 <= 5
    monkeypatch.setattr(sv, "MAX_EXTRA_REPLICAS", 0)
    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=rate, tp=[1], trim=False)
    assert res.status == "UNKNOWN" and res.plan is None and not res.verified
    assert res.message.startswith("verification: the fleet misses the SLOs")


def test_unreachable_slo_is_infeasible_with_numbers() -> None:
    """A 0.01 ms TTFT SLO: every shape misses it even alone; the reason quotes the p99s."""
    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=10.0, ttft_slo_ms=0.01)
    assert res.status == "INFEASIBLE" and res.plan is None
    assert res.message.startswith("SLO: none of the") and "p99 TTFT" in res.message
    assert all(c.capacity_rps == 0 for c in res.candidates)


def test_rate_beyond_the_cluster_is_infeasible_with_numbers() -> None:
    """1e6 req/s on 4 GPUs: INFEASIBLE, naming the most the pools sustain."""
    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=1e6, tp=[1])
    assert res.status == "INFEASIBLE"
    assert res.message.startswith("GPU count: at most") and "< target 1e+06" in res.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": -1.0}, "rate: must be finite and > 0"),
        ({"rate": 0.0}, "rate: must be finite and > 0"),
        ({"rate": math.nan}, "rate: must be finite and > 0"),
        ({"rate": 5.0, "ttft_slo_ms": 0.0}, "ttft_slo_ms: must be finite and > 0"),
        ({"rate": 5.0, "tpot_slo_ms": -2.0}, "tpot_slo_ms: must be finite and > 0"),
        ({"rate": None}, "rate: objective min_cost needs a request rate"),
        ({"rate": 5.0, "objective": "fastest"}, "objective: expected one of"),
        ({"rate": 5.0, "tp": [3, 0]}, "tp: every value must be an integer"),
        ({"rate": 5.0, "routing": "shortest"}, "routing: expected"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        plan_serving(TINY, TINY_HETERO, TINY_W, **kwargs)


# --- CLI ----------------------------------------------------------------------------------------
def _workload_file(tmp_path: Path) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(
        "kind: inference\nprompt_tokens: 512\noutput_tokens: 64\nttft_ms: 50\ntpot_ms: 5\n"
    )
    return path


def test_cli_json_plan_and_exit_codes(tmp_path: Path) -> None:
    """--json prints one document (exit 0 with a verified plan; --out writes it); an
    unreachable SLO exits 4 with the document still printed."""
    runner = CliRunner()
    base = [
        "plan-serving",
        "-m",
        "tiny-llama",
        "-c",
        "tiny-hetero",
        "-w",
        str(_workload_file(tmp_path)),
        "--tp",
        "1",
    ]
    out = tmp_path / "fleet.json"
    ok = runner.invoke(app, [*base, "--rate", "100", "--json", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["status"] in ("OPTIMAL", "FEASIBLE") and doc["verified"] is True
    assert json.loads(out.read_text())["kind"] == "inference"
    bad = runner.invoke(app, [*base, "--rate", "10", "--ttft-ms", "0.01", "--json"])
    assert bad.exit_code == 4
    assert json.loads(bad.stdout)["status"] == "INFEASIBLE"


@pytest.mark.parametrize(
    ("args", "trace", "message"),
    [
        (["--rate", "-3"], None, "error: --rate: must be finite and > 0 requests/s, got -3.0"),
        (["--rate", "0"], None, "error: --rate: must be finite and > 0 requests/s, got 0.0"),
        (["--rate", "nan"], None, "error: --rate: must be finite and > 0 requests/s, got nan"),
        (["--rate", "5", "--ttft-ms", "0"], None, "error: --ttft-ms: must be finite and > 0 ms"),
        (["--rate", "5", "--tpot-ms", "-1"], None, "error: --tpot-ms: must be finite and > 0 ms"),
        ([], None, "error: --rate: objective min_cost needs a request rate, got None"),
        (["--rate", "5", "--tp", "4,x"], None, "error: --tp: expected integers"),
        ([], "", "t.csv: no rows"),
        ([], "timestamp,prompt_tokens,output_tokens\n0.5,abc,10\n", "row 1: prompt_tokens"),
        ([], "timestamp,prompt_tokens,output_tokens\n0.5,100,10\n", "--trace: needs at least two"),
        (
            ["--rate", "5"],
            "timestamp,prompt_tokens,output_tokens\n0,10,10\n1,10,10\n",
            "--rate: give a rate or a trace",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], trace: str | None, message: str
) -> None:
    runner = CliRunner()
    extra = []
    if trace is not None:
        path = tmp_path / "t.csv"
        path.write_text(trace)
        extra = ["--trace", str(path)]
    res = runner.invoke(
        app,
        [
            "plan-serving",
            "-m",
            "tiny-llama",
            "-c",
            "tiny-hetero",
            "-w",
            str(_workload_file(tmp_path)),
            *args,
            *extra,
        ],
    )
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_cli_unpriced_pool_and_training_workload(tmp_path: Path) -> None:
    """min_cost on a cluster without prices names the field; a training workload is refused."""
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "plan-serving",
            "-m",
            "tiny-llama",
            "-c",
            "seed-4x8-h100",
            "-w",
            str(_workload_file(tmp_path)),
            "--rate",
            "5",
            "--objective",
            "min_cost",
        ],
    )
    assert res.exit_code == 2 and "pools[0].cost_per_gpu_hour" in res.stderr
    res = runner.invoke(
        app,
        [
            "plan-serving",
            "-m",
            "tiny-llama",
            "-c",
            "tiny-hetero",
            "-w",
            "train-tiny",
            "--rate",
            "5",
        ],
    )
    assert res.exit_code == 2 and "training workload" in res.stderr


# --- the example --------------------------------------------------------------------
def test_bundled_llama70b_example_within_ten_seconds() -> None:
    """Llama-3-70B, 20 req/s, ISL 2048 / OSL 256, p99 TTFT <= 1 s, TPOT <= 50 ms on the H100 +
    A100 pools: a verified plan in <= 10 s (issue 16's done-when; 2-core machine)."""
    model = load_model("llama3-70b")
    cluster = load_cluster("serving-h100-a100")
    workload = load_workload("infer-2k256-p99")
    assert isinstance(workload, InferenceWorkload)
    t0 = time.perf_counter()
    res = plan_serving(model, cluster, workload, rate=20.0)
    wall = time.perf_counter() - t0
    assert res.status in ("OPTIMAL", "FEASIBLE") and res.verified, res.message
    v = res.verification
    assert v is not None and v.ttft_ms.p99 <= 1000 and v.tpot_ms.p99 <= 50
    assert {g.pool for g in res.fleet} <= {"h100", "a100"} and res.cost_per_hour is not None
    assert wall <= 10.0, f"{wall:.1f} s"


def test_cli_plots_latency_vs_load(tmp_path: Path) -> None:
    """plan-serving --plot and simulate --plot write a PNG (and nothing else: the temporary
    file is renamed into place); the figure holds the p50/p99 curves and the SLO lines."""
    runner = CliRunner()
    w = str(_workload_file(tmp_path))
    plan, png = tmp_path / "fleet.json", tmp_path / "fleet.png"
    base = ["-m", "tiny-llama", "-c", "tiny-hetero", "-w", w]
    res = runner.invoke(
        app,
        [
            "plan-serving",
            *base,
            "--tp",
            "1",
            "--rate",
            "100",
            "--out",
            str(plan),
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sim = tmp_path / "sim.png"
    res = runner.invoke(
        app,
        [
            "simulate",
            *base,
            "--plan",
            str(plan),
            "--rate",
            "50",
            "--requests",
            "300",
            "--routing",
            "random",
            "--sweep-rate",
            "20,50,80",
            "--plot",
            str(sim),
        ],
    )
    assert res.exit_code == 0, res.output
    assert sim.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fleet.json",
        "fleet.png",
        "sim.png",
        "w.yaml",
    ]


def test_plot_function_draws_curves_and_slos(tmp_path: Path) -> None:
    """plot_latency_vs_load: p50 and p99 of TTFT and TPOT at each rate, both SLO lines."""
    from solver.commands.plan_serving import load_sweep, plot_latency_vs_load

    res = plan_serving(TINY, TINY_HETERO, TINY_W, rate=100.0, tp=[1])
    sweep = load_sweep(
        TINY,
        TINY_HETERO,
        TINY_W,
        res,
        Lengths.fixed(512),
        Lengths.fixed(64),
        fractions=(0.5, 1.0, 1.5),
    )
    fig = plot_latency_vs_load(
        sweep, tmp_path / "p.svg", ttft_slo_ms=50.0, tpot_slo_ms=5.0, rate_rps=100.0
    )
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    assert set(lines) >= {"ttft_ms-p50", "ttft_ms-p99", "tpot_ms-p50", "tpot_ms-p99", "slo"}
    x, y = lines["tpot_ms-p99"].get_data()
    assert list(x) == [50.0, 100.0, 150.0]
    assert list(y) == [r.tpot_ms.p99 for _, r in sweep]
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
