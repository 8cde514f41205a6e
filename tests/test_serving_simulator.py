"""The continuous-batching serving simulator (solver/serving/): hand-derived schedules,
queueing sanity, SLO goodput, trace parsing and bad input, the static-batch special case
against the evaluator, determinism and speed."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solver.cli import app
from solver.costmodel import engine_profiles as EP
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.serving import (
    ConstantStepCost,
    FunctionStepCost,
    Lengths,
    Replica,
    Requests,
    generate_requests,
    load_trace,
    parse_lengths,
    roofline_step_cost,
    serve,
    serving_metrics,
    simulate,
    simulate_replica,
)
from solver.serving.simulator import Engine
from solver.specs import InferenceWorkload, Plan

MODEL70 = load_model("llama3-70b")
MODEL8 = load_model("llama3-8b")
CLUSTER = load_cluster("seed-4x8-h100")
CHAT = load_workload("infer-chat-slo")
assert isinstance(CHAT, InferenceWorkload)


def _plan(layers: int, tp: int, count: int, batch: int, stages: int = 1) -> Plan:
    """``count`` replicas of ``stages`` x TP=tp, one replica per node."""
    per = layers // stages
    st = [
        {
            "first_layer": s * per,
            "last_layer": s * per + per - 1,
            "pool": "h100",
            "tp": tp,
            "devices": [[[f"h100-{r}", s * tp + j] for j in range(tp)] for r in range(count)],
        }
        for s in range(stages)
    ]
    return Plan.model_validate(
        {
            "kind": "inference",
            "replica_groups": [{"count": count, "batch_size": batch, "stages": st}],
        }
    )


def _reqs(arrival: list[float], prompt: list[int], output: list[int]) -> Requests:
    return Requests(
        np.asarray(arrival, dtype=np.float64),
        np.asarray(prompt, dtype=np.int64),
        np.asarray(output, dtype=np.int64),
    )


# --- hand-derived schedules -------------------------------------------------------------------
def test_one_request_constant_steps() -> None:
    """One request, 5 ms steps: TTFT = one prefill step, each later token one step, E2E = O steps."""
    r = _reqs([1.0], [100], [10])
    tr = simulate_replica(
        r,
        ConstantStepCost(0.005),
        max_num_seqs=4,
        max_num_batched_tokens=512,
        kv_capacity_tokens=10**6,
    )
    # Prefill in one step (100 <= 512 tokens): first token at 1.005; 9 decode steps after it.
    assert tr.first_token_s[0] == pytest.approx(1.005)
    assert tr.finish_s[0] == pytest.approx(1.005 + 9 * 0.005)
    m = serving_metrics(
        r.arrival_s,
        r.prompt_tokens,
        r.output_tokens,
        tr.first_token_s,
        tr.finish_s,
        tr.step_s,
        tr.step_decode,
    )
    assert m.ttft_ms.p50 == pytest.approx(5.0)
    assert m.tpot_ms.p50 == pytest.approx(5.0)
    assert m.itl_ms.p99 == pytest.approx(5.0)
    assert m.num_steps == 10


def test_two_requests_chunked_prefill_exact_times() -> None:
    """Chunked prefill, a decode stretch cut by an arrival, a mixed-free queue: exact TTFT/TPOT.

    Step cost 1 ms per prefill token + 2 ms per decode sequence + 10 us per context token;
    budget 8 tokens.  A (t=0, prompt 12, output 3), B (t=0.015, prompt 4, output 2):
    step 1: A chunk 8 -> 8 ms (t=0.008); step 2: A chunk 4 (B not yet there) -> t=0.012, A's
    first token.  Steps 3, 4: A decodes at context 13, 14: 2.13 ms, 2.14 ms -> t=0.01413
    (< 0.015), t=0.01627: A done, and B (arrived during step 4) is admitted next.  Step 5: B
    prefill 4 -> t=0.02027 (TTFT 5.27 ms); step 6: B decodes at context 5: 2.05 ms -> 0.02232.
    """

    def f(d: int, ctx: float, p: int, pctx: float) -> float:
        return 1e-3 * p + 2e-3 * d + 1e-5 * ctx

    r = _reqs([0.0, 0.015], [12, 4], [3, 2])
    tr = simulate_replica(
        r, FunctionStepCost(f), max_num_seqs=2, max_num_batched_tokens=8, kv_capacity_tokens=100
    )
    assert tr.first_token_s.tolist() == pytest.approx([0.012, 0.02027])
    assert tr.finish_s.tolist() == pytest.approx([0.01627, 0.02232])
    m = serving_metrics(
        r.arrival_s,
        r.prompt_tokens,
        r.output_tokens,
        tr.first_token_s,
        tr.finish_s,
        tr.step_s,
        tr.step_decode,
    )
    assert m.ttft_ms.p50 == pytest.approx((12.0 + 5.27) / 2)
    # TPOT: A (16.27 - 12) / 2 = 2.135 ms, B 2.05 ms.
    assert m.tpot_ms.mean == pytest.approx((2.135 + 2.05) / 2)
    assert tr.step_decode.tolist() == [0, 0, 1, 1, 0, 1]
    assert tr.step_prefill_tokens.tolist() == [8, 4, 0, 0, 4, 0]


def test_decode_first_mixed_step_and_kv_wait() -> None:
    """Reserve policy (TensorRT-LLM GUARANTEED_NO_EVICT): a full KV pool makes the next
    request wait for a completion (no preemption); with room, all prompts prefill in one step
    and the decodes run side by side."""
    r = _reqs([0.0, 0.0, 0.0], [4, 4, 4], [3, 1, 2])
    # KV of 8 tokens: A (4+3=7) runs alone; B (5) waits until A finishes, then C after B.
    tr = simulate_replica(
        r,
        ConstantStepCost(0.01),
        max_num_seqs=4,
        max_num_batched_tokens=64,
        kv_capacity_tokens=8,
        block_size=1,
        kv_policy="reserve",
    )
    assert tr.num_preemptions == 0
    # A: prefill step 1 (t=.01), decodes steps 2, 3 (t=.03 done).  B: prefill step 4 (t=.04,
    # output 1: done).  C: prefill step 5 (t=.05), decode step 6 (t=.06).
    assert tr.first_token_s.tolist() == pytest.approx([0.01, 0.04, 0.05])
    assert tr.finish_s.tolist() == pytest.approx([0.03, 0.04, 0.06])
    # With room for all, B and C join A's first step and everyone is done by step 3.
    tr2 = simulate_replica(
        r, ConstantStepCost(0.01), max_num_seqs=4, max_num_batched_tokens=64, kv_capacity_tokens=100
    )
    assert tr2.finish_s.tolist() == pytest.approx([0.03, 0.01, 0.02])


# --- queueing sanity --------------------------------------------------------------------------
def test_throughput_equals_arrival_rate_below_saturation() -> None:
    """Below saturation every request is served: request throughput ~ the offered rate."""
    plan = _plan(MODEL70.num_layers, 8, 1, 32)
    for rate in (0.5, 1.5):
        reqs = generate_requests(1500, rate, Lengths.fixed(1024), Lengths.fixed(256), seed=1)
        res = simulate(MODEL70, CLUSTER, CHAT, plan, reqs)
        offered = len(reqs) / float(reqs.arrival_s[-1])
        assert res.request_throughput == pytest.approx(offered, rel=0.02)
        assert res.slo_attainment == 1.0


def test_higher_rate_raises_p99_ttft() -> None:
    """p99 TTFT grows with the arrival rate, steeply past saturation (~5 req/s here)."""
    plan = _plan(MODEL70.num_layers, 8, 1, 32)
    p99 = []
    for rate in (0.5, 2.0, 4.0, 6.0):
        reqs = generate_requests(1500, rate, Lengths.fixed(1024), Lengths.fixed(256), seed=2)
        p99.append(simulate(MODEL70, CLUSTER, CHAT, plan, reqs).ttft_ms.p99)
    assert p99 == sorted(p99)
    assert p99[-1] > 10 * p99[0]


def test_goodput_counts_requests_meeting_both_slos() -> None:
    """goodput = requests meeting TTFT and TPOT SLOs / duration, from per-request times."""
    arrival = np.array([0.0, 0.0, 1.0, 1.0])
    first = np.array([0.1, 0.5, 1.1, 1.2])  # TTFT 100, 500, 100, 200 ms
    finish = np.array([1.1, 1.5, 2.1, 3.2])  # TPOT over 10 tokens: 111, 111, 111, 222 ms
    out = np.full(4, 10, dtype=np.int64)
    m = serving_metrics(
        arrival,
        np.full(4, 5, dtype=np.int64),
        out,
        first,
        finish,
        np.zeros(0),
        np.zeros(0, dtype=np.int64),
        ttft_slo_ms=300.0,
        tpot_slo_ms=150.0,
    )
    # Requests 0 and 2 meet both; duration 3.2 s.
    assert m.slo_attainment == 0.5
    assert m.goodput == pytest.approx(2 / 3.2)
    assert m.request_throughput == pytest.approx(4 / 3.2)
    no_slo = serving_metrics(
        arrival,
        np.full(4, 5, dtype=np.int64),
        out,
        first,
        finish,
        np.zeros(0),
        np.zeros(0, dtype=np.int64),
    )
    assert no_slo.goodput == no_slo.request_throughput


# --- requests: generation, traces, bad input --------------------------------------------------
def test_generation_is_deterministic_and_lognormal_mean_holds() -> None:
    """Same seed, same requests; another seed differs; lognormal samples keep the given mean."""
    a = generate_requests(20000, 3.0, Lengths.lognormal(1000, 0.5), Lengths.uniform(10, 20), seed=7)
    b = generate_requests(20000, 3.0, Lengths.lognormal(1000, 0.5), Lengths.uniform(10, 20), seed=7)
    c = generate_requests(20000, 3.0, Lengths.lognormal(1000, 0.5), Lengths.uniform(10, 20), seed=8)
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(
        a.prompt_tokens, b.prompt_tokens
    )
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert a.prompt_tokens.mean() == pytest.approx(1000, rel=0.02)
    assert a.output_tokens.min() >= 10 and a.output_tokens.max() <= 20
    assert len(a) / a.arrival_s[-1] == pytest.approx(3.0, rel=0.03)


def test_simulation_is_deterministic() -> None:
    """Two simulations of the same seeded stream agree to the last bit."""
    plan = _plan(MODEL70.num_layers, 8, 2, 32)
    reqs = generate_requests(
        500, 4.0, Lengths.lognormal(1024, 1.0, 8192), Lengths.fixed(64), seed=3
    )
    one = simulate(MODEL70, CLUSTER, CHAT, plan, reqs).model_dump(exclude={"wall_time_s"})
    two = simulate(MODEL70, CLUSTER, CHAT, plan, reqs).model_dump(exclude={"wall_time_s"})
    assert one == two


def test_trace_files_csv_and_jsonl(tmp_path: Path) -> None:
    """A CSV and a JSONL trace give the same requests, sorted by timestamp."""
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,prompt_tokens,output_tokens\n0.5,10,3\n0.1,20,4\n")
    jl = tmp_path / "t.jsonl"
    jl.write_text(
        '{"timestamp": 0.5, "prompt_tokens": 10, "output_tokens": 3}\n'
        '{"timestamp": 0.1, "prompt_tokens": 20, "output_tokens": 4}\n'
    )
    for path in (csv, jl):
        r = load_trace(path)
        assert r.arrival_s.tolist() == [0.1, 0.5]
        assert r.prompt_tokens.tolist() == [20, 10] and r.output_tokens.tolist() == [4, 3]
    lengths = Lengths.from_file(jl, "prompt_tokens").sample(100, np.random.default_rng(0))
    assert set(lengths.tolist()) <= {10, 20}


@pytest.mark.parametrize(
    ("text", "rows", "message"),
    [
        ("timestamp,prompt_tokens\n0,5\n", None, "row 1: missing column 'output_tokens'"),
        (
            "timestamp,prompt_tokens,output_tokens\n0,x,5\n",
            None,
            "row 1: prompt_tokens: must be a number",
        ),
        (
            "timestamp,prompt_tokens,output_tokens\n0,0,5\n",
            None,
            "prompt_tokens: must be a whole number >= 1",
        ),
        ("timestamp,prompt_tokens,output_tokens\n-1,4,5\n", None, "timestamp: must be >= 0"),
        ("timestamp,prompt_tokens,output_tokens\n", None, "no rows"),
        (None, ["[1, 2]"], "line 1: expected an object"),
        (None, ["{bad"], "line 1: not JSON"),
    ],
)
def test_bad_trace_is_one_line_naming_the_field(
    tmp_path: Path, text: str | None, rows: list[str] | None, message: str
) -> None:
    """Malformed traces raise SpecError naming the row and column."""
    if text is not None:
        path = tmp_path / "t.csv"
        path.write_text(text)
    else:
        path = tmp_path / "t.jsonl"
        path.write_text("\n".join(rows or []) + "\n")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_trace(path)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: generate_requests(0, 1.0, Lengths.fixed(1), Lengths.fixed(1)), "num_requests"),
        (
            lambda: generate_requests(10, -1.0, Lengths.fixed(1), Lengths.fixed(1)),
            "rate: must be > 0",
        ),
        (lambda: generate_requests(10, math.nan, Lengths.fixed(1), Lengths.fixed(1)), "rate"),
        (lambda: generate_requests(10, 1.0, Lengths.fixed(1), Lengths.fixed(1), seed=-1), "seed"),
        (lambda: Lengths.fixed(0), "length: must be in 1"),
        (lambda: Lengths.uniform(10, 5, "prompt"), "prompt.high: must be >= low"),
        (lambda: Lengths.lognormal(-5, 1.0, field="output"), "output.mean"),
        (lambda: Lengths.lognormal(100, 11.0, field="output"), "output.sigma"),
        (lambda: parse_lengths("gamma:1:2", "--prompt-len"), "--prompt-len: expected"),
        (lambda: parse_lengths("uniform:a:2", "--prompt-len"), "--prompt-len: not a number"),
        (lambda: _reqs([1.0, 0.5], [1, 1], [1, 1]), "timestamps must be sorted"),
    ],
)
def test_bad_parameters_raise_spec_error(call: Any, message: str) -> None:
    """Every bad generation parameter is a SpecError naming the field."""
    with pytest.raises(SpecError, match=message):
        call()


def test_request_longer_than_kv_cache_is_refused() -> None:
    """A request whose prompt + output exceed the replica's KV cache can never run: SpecError."""
    with pytest.raises(SpecError, match=r"requests\[1\]: prompt \+ output = 150"):
        simulate_replica(
            _reqs([0, 0], [10, 100], [5, 50]),
            ConstantStepCost(0.01),
            max_num_seqs=2,
            max_num_batched_tokens=16,
            kv_capacity_tokens=100,
        )


# --- static batch: the special case of the evaluator ------------------------------------------
@pytest.mark.parametrize(
    ("model", "tp", "stages", "batch"), [(MODEL70, 8, 1, 16), (MODEL8, 1, 2, 8)]
)
def test_static_batch_matches_the_evaluator(model: Any, tp: int, stages: int, batch: int) -> None:
    """All requests at t=0, max_num_seqs = batch, no chunking: TTFT = the evaluator's TTFT and
    the mean TPOT = its TPOT (decode is linear in context, so steps at contexts P+1..P+O-1
    average the evaluator's P + O/2).  The evaluator's latency TTFT + O x TPOT counts one decode
    step more than the O - 1 that follow the prefill's token: E2E = TTFT + (O - 1) x TPOT."""
    prompt, out = 1024, 256
    wl = InferenceWorkload(
        kind="inference", prompt_tokens=prompt, output_tokens=out, batch_size=batch
    )
    plan = _plan(model.num_layers, tp, 1, batch, stages=stages)
    rep = evaluate(model, CLUSTER, wl, plan)
    assert rep.feasible, rep.violations
    g = rep.groups[0]
    reqs = generate_requests(batch, math.inf, Lengths.fixed(prompt), Lengths.fixed(out))
    res = simulate(model, CLUSTER, wl, plan, reqs, max_num_batched_tokens=batch * prompt)
    assert res.ttft_ms.p99 == pytest.approx(g["ttft_ms"], rel=1e-9)
    assert res.tpot_ms.mean == pytest.approx(g["tpot_ms"], rel=1e-9)
    e2e = g["ttft_ms"] / 1e3 + (out - 1) * g["tpot_ms"] / 1e3
    assert res.e2e_latency_s.p50 == pytest.approx(e2e, rel=1e-9)
    assert res.num_steps == out  # one prefill step + O - 1 decode steps
    assert res.mean_decode_batch == batch


def test_mixed_step_reads_the_weights_once() -> None:
    """A decode row riding in a prefill step costs less than a decode step of its own, and the
    mixed step costs at least its prefill part; chunks with cached context cost more."""
    grp = _plan(MODEL70.num_layers, 8, 1, 32).replica_groups[0]
    cost = roofline_step_cost(
        MODEL70, CLUSTER, CHAT, grp, max_num_seqs=32, max_num_batched_tokens=8192
    )
    tok, ctx0 = np.array([512]), np.array([0])
    pre = cost.step(0, 0.0, tok, ctx0, 1)
    dec = float(cost.decode_steps(16, np.array([16 * 1000.0]))[0])
    mixed = cost.step(16, 16 * 1000.0, tok, ctx0, 1)
    assert max(pre, dec) <= mixed < pre + dec
    assert cost.step(0, 0.0, tok, np.array([4096]), 1) > pre


def test_round_robin_spreads_requests_evenly() -> None:
    """Four replicas each get every fourth request."""
    reqs = generate_requests(103, 50.0, Lengths.fixed(8), Lengths.fixed(4))
    reps = [Replica(ConstantStepCost(0.001), 4, 64, 1000)] * 4
    _, _, shares = serve(reqs, reps)
    assert [len(s) for s in shares] == [26, 26, 26, 25]
    assert shares[1].tolist()[:3] == [1, 5, 9]


# --- speed and the CLI ------------------------------------------------------------------------
def test_ten_thousand_requests_simulate_fast() -> None:
    """10,000 ShareGPT-like requests on a 4-replica TP8 plan simulate in well under 2 s
    (the target is 1 s; CI machines are shared, so the test allows 2x)."""
    plan = _plan(MODEL70.num_layers, 8, 4, 32)
    reqs = generate_requests(
        10_000, 8.0, Lengths.lognormal(1024, 1.0, 8192), Lengths.lognormal(256, 0.8, 2048), seed=0
    )
    t = time.perf_counter()
    res = simulate(MODEL70, CLUSTER, CHAT, plan, reqs)
    assert time.perf_counter() - t < 2.0
    assert res.num_requests == 10_000 and not math.isnan(res.ttft_ms.p99)


def test_cli_simulate_json_and_bad_input(tmp_path: Path) -> None:
    """`shardwise simulate --json` prints one document; a bad --rate is one line, exit 2."""
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(_plan(MODEL70.num_layers, 8, 2, 32).model_dump_json())
    runner = CliRunner()
    base = [
        "simulate",
        "-m",
        "llama3-70b",
        "-c",
        "seed-4x8-h100",
        "-w",
        "infer-chat-slo",
        "--plan",
        str(plan_path),
    ]
    ok = runner.invoke(app, [*base, "--rate", "2", "--requests", "100", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["num_requests"] == 100 and doc["replicas"] == 2 and doc["routing"] == "round_robin"
    bad = runner.invoke(app, [*base, "--rate", "0"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: --rate: must be > 0 requests/s, got 0.0"
    train = runner.invoke(app, [*base[:6], "train-gpt-s2048", *base[7:]])
    assert train.exit_code == 2 and "training workload" in train.stderr


# --- prefill-only steps (vLLM 0.6 V0 without chunked prefill, SGLang: mixed_batches False) ----
@dataclass(frozen=True)
class _PrefillFirstCost:
    """A step cost that depends on everything a step holds, marked as an engine that runs no
    decode in a step that prefills (the attribute the engine reads off its step cost)."""

    mixed_batches: bool = False

    @staticmethod
    def _f(d: int, ctx: float, p: int, pctx: float) -> float:
        return 1e-3 + 2e-5 * p + 1e-4 * d + 1e-8 * ctx + 1e-9 * pctx

    def decode_steps(self, num_decode: int, context_sums: Any) -> Any:
        return np.array([self._f(num_decode, float(c), 0, 0.0) for c in context_sums])

    def step(self, num_decode: int, context_sum: float, chunk_tokens: Any, *rest: Any) -> float:
        return self._f(num_decode, context_sum, int(chunk_tokens.sum()), 0.0)


def _prefill_first_random(seed: int, n: int = 600) -> Requests:
    return generate_requests(
        n, 40.0, Lengths.lognormal(300, 1.0, 2000), Lengths.lognormal(150, 0.8, 1000), seed=seed
    )


def test_prefill_only_step_pauses_the_running_decodes() -> None:
    """A (t=0, prompt 100, output 10), B (t=0.007, prompt 10, output 3), 5 ms steps.

    Prefill-only: step 1 prefills A (first token 0.005), step 2 decodes A (B arrives in it),
    step 3 prefills B alone (first token 0.015; A waits), steps 4-5 decode both (B done 0.025),
    A decodes on alone to its 10th token at step 11: 0.055.  Mixed (vLLM V1's rule) runs A's
    decode in B's prefill step: A done at 0.050, B the same.  ITL samples: A's token after the
    pause spans it (10 ms), B's first decode counts from its first token (5 ms); they telescope
    to finish - first per request."""
    r = _reqs([0.0, 0.007], [100, 10], [10, 3])
    kw: dict[str, Any] = {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 512,
        "kv_capacity_tokens": 10**6,
    }
    tr = simulate_replica(r, ConstantStepCost(0.005), mixed_batches=False, **kw)
    assert tr.first_token_s.tolist() == pytest.approx([0.005, 0.015])
    assert tr.finish_s.tolist() == pytest.approx([0.055, 0.025])
    assert tr.step_decode.tolist() == [0, 1, 0, 2, 2, 1, 1, 1, 1, 1, 1]
    assert tr.step_prefill_tokens.tolist()[:3] == [100, 0, 10]
    assert tr.itl_s is not None and tr.itl_weight is not None
    samples = sorted(zip(np.round(tr.itl_s * 1e3, 9).tolist(), tr.itl_weight.tolist(), strict=True))
    assert samples == [(5.0, 1)] * 8 + [(5.0, 2), (10.0, 1)]
    mixed = simulate_replica(r, ConstantStepCost(0.005), **kw)
    assert mixed.finish_s.tolist() == pytest.approx([0.050, 0.025])
    assert mixed.step_decode.tolist()[2] == 1 and mixed.itl_s is None


def test_prefill_only_step_gives_the_prompt_the_whole_token_budget() -> None:
    """Budget 64: with A decoding, B's 64-token prompt is one prefill-only step (mixed: 63
    tokens beside A's decode, then the last one with the next decode)."""
    r = _reqs([0.0, 0.003], [8, 64], [6, 2])
    kw: dict[str, Any] = {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 64,
        "kv_capacity_tokens": 10**6,
    }
    only = simulate_replica(r, ConstantStepCost(0.005), mixed_batches=False, **kw)
    mixed = simulate_replica(r, ConstantStepCost(0.005), mixed_batches=True, **kw)
    assert [p for p in only.step_prefill_tokens.tolist() if p] == [8, 64]
    assert [p for p in mixed.step_prefill_tokens.tolist() if p] == [8, 63, 1]


@pytest.mark.parametrize("k", [1, 4])
def test_prefill_only_itl_telescopes_and_the_engine_reads_the_cost(k: int) -> None:
    """On a random workload with KV pressure, prefill-only steps (read off the cost's
    ``mixed_batches``) never hold a decode; without preemption the ITL samples add up to each
    request's finish - first token (as with mixed steps); the resumable engine advanced to
    every arrival gives the trace of one run (to rounding: a decode stretch cut at an arrival
    sums its step times in two parts; the same ITL samples, kept in another order);
    prefill-only finishes the same work later."""
    r = _prefill_first_random(3)
    kw: dict[str, Any] = {
        "max_num_seqs": 64,
        "max_num_batched_tokens": 512,
        "kv_capacity_tokens": 10**7,
        "num_scheduler_steps": k,
    }
    cost = _PrefillFirstCost()
    assert not Engine(cost, **kw).mixed and Engine(ConstantStepCost(1.0), **kw).mixed
    tr = simulate_replica(r, cost, **kw)
    pre = tr.step_prefill_tokens > 0
    assert pre.any() and np.all(tr.step_decode[pre] == 0)
    assert tr.itl_s is not None and tr.itl_weight is not None
    multi = r.output_tokens > 1
    assert float((tr.itl_s * tr.itl_weight).sum()) == pytest.approx(
        float((tr.finish_s - tr.first_token_s)[multi].sum()), rel=1e-9
    )
    mixed = simulate_replica(r, _PrefillFirstCost(mixed_batches=True), **kw)
    assert tr.finish_s.max() > mixed.finish_s.max()
    tight = {**kw, "kv_capacity_tokens": 6000}
    whole = simulate_replica(r, cost, **tight)
    eng = Engine(cost, **tight)
    for t, p, o in zip(
        r.arrival_s.tolist(), r.prompt_tokens.tolist(), r.output_tokens.tolist(), strict=True
    ):
        eng.run(t)
        eng.add(t, p, o)
    eng.run()
    step = eng.trace()
    assert whole.num_preemptions > 0
    for name in ("first_token_s", "finish_s", "step_s"):
        a, b = getattr(whole, name), getattr(step, name)
        assert a.shape == b.shape and np.allclose(a, b, rtol=0.0, atol=1e-9), name
    pairs = []
    for t_ in (whole, step):
        x, w = t_.itl_s, t_.itl_weight
        assert x is not None and w is not None
        order = np.lexsort((w, np.round(x, 9)))
        pairs.append((x[order], w[order]))
    assert np.allclose(pairs[0][0], pairs[1][0], rtol=0.0, atol=1e-9)
    assert np.array_equal(pairs[0][1], pairs[1][1])


def test_engine_profiles_name_their_prefill_scheduling() -> None:
    """vLLM 0.6 (V0, no chunked prefill) and SGLang (enable_mixed_chunk off) run prefill-only
    steps; vLLM V1 and TensorRT-LLM mix; the roofline step cost carries the profile's rule."""
    assert not EP.VLLM_V0_06.mixed_batches and not EP.SGLANG.mixed_batches
    assert not EP.SGLANG_V0_3.mixed_batches
    assert EP.VLLM.mixed_batches and EP.TRTLLM.mixed_batches and EP.ROOFLINE.mixed_batches
    assert "_schedule_default" in EP.VLLM_V0_06.mixed_batches_source
    assert "enable_mixed_chunk" in EP.SGLANG.mixed_batches_source
    grp = _plan(MODEL8.num_layers, 1, 1, 8).replica_groups[0]
    wl = InferenceWorkload(kind="inference", prompt_tokens=64, output_tokens=8, batch_size=8)
    kw: dict[str, Any] = {"max_num_seqs": 8, "max_num_batched_tokens": 256}
    for name, mixed in (("vllm", True), ("vllm-0.6", False), ("sglang-0.3", False)):
        cost = roofline_step_cost(MODEL8, CLUSTER, wl, grp, engine=name, **kw)
        assert cost.mixed_batches is mixed, name
