"""KV-cache preemption (vLLM V1) and join-shortest-queue dispatch in the serving simulator:
hand-derived schedules, the event loop against a one-step-at-a-time reference scheduler, and
JSQ sending requests to the idle replica."""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from solver.cli import app
from solver.errors import SpecError
from solver.serving import (
    ConstantStepCost,
    Engine,
    Lengths,
    Replica,
    Requests,
    generate_requests,
    serve,
    simulate_replica,
)
from solver.serving.simulator import SloStop


def _reqs(arrival: list[float], prompt: list[int], output: list[int]) -> Requests:
    return Requests(
        np.asarray(arrival, dtype=np.float64),
        np.asarray(prompt, dtype=np.int64),
        np.asarray(output, dtype=np.int64),
    )


# --- hand-derived preemption ------------------------------------------------------------------
def test_pool_of_exactly_two_sequences_preempts_the_third_when_they_grow() -> None:
    """Three requests (prompt 4, output 6) on a pool of 6 blocks of 4 tokens, steps of 1 s.

    Step 1 prefills all three (1 block each) and samples their first tokens (t = 1).  A
    sequence decoding its k-th token holds 4 + k tokens: 2 blocks each for k = 1..4 (6 blocks,
    the pool exactly), 3 blocks at k = 5 (step 6): 9 > 6, so the newest, C, is preempted
    (it had 5 tokens: 8 tokens of KV discarded) and A, B finish at t = 6 (no admission in a
    step that preempted).  Step 7 re-admits C: it prefills 4 + 5 = 9 tokens (3 blocks) and
    samples its 6th and last token: done at t = 7."""
    r = _reqs([0.0, 0.0, 0.0], [4, 4, 4], [6, 6, 6])
    tr = simulate_replica(
        r,
        ConstantStepCost(1.0),
        max_num_seqs=4,
        max_num_batched_tokens=64,
        kv_capacity_tokens=24,
        block_size=4,
    )
    assert tr.first_token_s.tolist() == [1.0, 1.0, 1.0]
    assert tr.finish_s.tolist() == [6.0, 6.0, 7.0]
    assert tr.num_preemptions == 1
    assert tr.recomputed_tokens == 8
    assert tr.step_decode.tolist() == [0, 3, 3, 3, 3, 2, 0]
    assert tr.step_prefill_tokens.tolist() == [12, 0, 0, 0, 0, 0, 9]
    # TensorRT-LLM's reserve policy admits only two (3 blocks reserved each); C runs after.
    res = simulate_replica(
        r,
        ConstantStepCost(1.0),
        max_num_seqs=4,
        max_num_batched_tokens=64,
        kv_capacity_tokens=24,
        block_size=4,
        kv_policy="reserve",
    )
    assert res.num_preemptions == 0
    assert res.finish_s.tolist() == [6.0, 6.0, 12.0]
    # A pool of 9 blocks holds all three at full length: nothing is preempted.
    big = simulate_replica(
        r,
        ConstantStepCost(1.0),
        max_num_seqs=4,
        max_num_batched_tokens=64,
        kv_capacity_tokens=36,
        block_size=4,
    )
    assert big.num_preemptions == 0 and big.finish_s.tolist() == [6.0, 6.0, 6.0]


def test_preempted_prefill_restarts_and_keeps_fcfs_order() -> None:
    """A request preempted while decoding goes to the *front* of the waiting queue: it is
    re-admitted before a later arrival (vLLM's ``waiting.prepend_request``)."""
    # Pool of 4 blocks of 2 tokens.  A, B (prompt 2, output 4) prefill in step 1 (1 block
    # each).  Decode k holds 2 + k tokens: 2 blocks each for k = 1, 2 (steps 2, 3), 3 blocks
    # at k = 3 (step 4): 6 > 4, B preempted after 3 tokens (4 tokens of KV discarded).
    # D arrives at t = 0.5 with prompt 2, output 1: in step 2 it would need 1 more block
    # (2 + 2 + 1 = 5 > 4): it waits.  Step 4: A alone (3 blocks), finishes (t = 4).
    # Step 5: B first (2 + 3 = 5 tokens: 3 blocks), then D (1 block): 4 blocks.  B samples
    # its 4th token, D its only one: both done at t = 5.
    r = _reqs([0.0, 0.0, 0.5], [2, 2, 2], [4, 4, 1])
    tr = simulate_replica(
        r,
        ConstantStepCost(1.0),
        max_num_seqs=4,
        max_num_batched_tokens=64,
        kv_capacity_tokens=8,
        block_size=2,
    )
    assert tr.num_preemptions == 1 and tr.recomputed_tokens == 4
    assert tr.finish_s.tolist() == [4.0, 5.0, 5.0]
    assert tr.first_token_s.tolist() == [1.0, 1.0, 5.0]
    assert tr.step_prefill_tokens.tolist() == [4, 0, 0, 0, 7]


def test_request_too_long_for_the_pool_is_refused_in_whole_blocks() -> None:
    """prompt + output must fit the pool in whole blocks (30 tokens; 2 blocks of 16 = 32
    fit, a 33-token request does not)."""
    cost = ConstantStepCost(0.01)
    ok = simulate_replica(
        _reqs([0.0], [20], [12]),
        cost,
        max_num_seqs=2,
        max_num_batched_tokens=64,
        kv_capacity_tokens=40,
    )
    assert ok.finish_s[0] > 0
    with pytest.raises(SpecError, match=r"requests\[0\]: prompt \+ output = 33 tokens exceed"):
        simulate_replica(
            _reqs([0.0], [21], [12]),
            cost,
            max_num_seqs=2,
            max_num_batched_tokens=64,
            kv_capacity_tokens=40,
        )
    with pytest.raises(SpecError, match="kv_policy: expected one of preempt, reserve"):
        simulate_replica(
            _reqs([0.0], [2], [2]),
            cost,
            max_num_seqs=2,
            max_num_batched_tokens=64,
            kv_capacity_tokens=40,
            kv_policy="swap",
        )


# --- the event loop against a one-step-at-a-time reference ------------------------------------
def _reference(
    r: Requests, dt: float, max_seqs: int, budget_tokens: int, cap_blocks: int, bs: int
) -> tuple[list[float], list[float], int]:
    """The documented scheduler, one Python iteration per engine step of ``dt`` seconds:
    decodes first (1 token each), then prefill chunks in admission order within the budget;
    while the step's blocks exceed the pool, preempt the newest running request (to the
    front of the waiting queue, its KV discarded); admit waiting requests FCFS only in a step
    without preemption, while the first chunk's blocks fit."""
    n = len(r)
    arr = r.arrival_s.tolist()
    p = r.prompt_tokens.tolist()
    o = r.output_tokens.tolist()
    first = [math.nan] * n
    finish = [math.nan] * n
    computed = [0] * n  # KV tokens
    gen = [0] * n  # tokens sampled
    adm = [0] * n
    running: list[int] = []
    waiting: deque[int] = deque()
    nxt, t, seq, preemptions = 0, 0.0, 0, 0

    def blocks(x: int) -> int:
        return -(-x // bs)

    def decoding(i: int) -> bool:
        return gen[i] >= 1 and computed[i] == p[i] + gen[i] - 1

    def plan() -> tuple[dict[int, int], int, int]:
        left = budget_tokens - sum(1 for i in running if decoding(i))
        sched: dict[int, int] = {}
        for i in sorted(running, key=lambda k: adm[k]):
            if decoding(i):
                sched[i] = 1
        for i in sorted(running, key=lambda k: adm[k]):
            if not decoding(i) and left > 0:
                sched[i] = min(p[i] + gen[i] - computed[i], left)
                left -= sched[i]
        need = sum(blocks(computed[i] + sched.get(i, 0)) for i in running)
        return sched, left, need

    while any(math.isnan(f) for f in finish):
        while nxt < n and arr[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if not running and not waiting:
            t = arr[nxt]
            continue
        sched, left, need = plan()
        preempted = False
        while need > cap_blocks:
            victim = max(running, key=lambda k: adm[k])
            running.remove(victim)
            computed[victim] = 0
            waiting.appendleft(victim)
            preemptions += 1
            preempted = True
            sched, left, need = plan()
        while not preempted and waiting and left > 0 and len(running) < max_seqs:
            i = waiting[0]
            c = min(p[i] + gen[i], left)
            if need + blocks(c) > cap_blocks:
                break
            waiting.popleft()
            running.append(i)
            adm[i] = seq
            seq += 1
            sched[i] = c
            left -= c
            need += blocks(c)
        t += dt
        for i, c in sched.items():
            computed[i] += c
            if computed[i] == p[i] + gen[i]:
                gen[i] += 1
                if gen[i] == 1:
                    first[i] = t
                if gen[i] == o[i]:
                    finish[i] = t
                    running.remove(i)
    return first, finish, preemptions


@pytest.mark.parametrize("seed", range(12))
def test_event_loop_matches_the_step_by_step_reference(seed: int) -> None:
    """Random small pools (preemption in most cases), arrivals spread over the run: the
    event loop (decode stretches, block counts from a histogram) gives the reference's
    times and preemption count exactly."""
    rng = np.random.default_rng(seed)
    bs = int(rng.choice([1, 2, 4, 16]))
    r = generate_requests(
        60, float(rng.uniform(0.5, 6.0)), Lengths.uniform(1, 40), Lengths.uniform(1, 40), seed=seed
    )
    longest = int((r.prompt_tokens + r.output_tokens).max())
    cap_blocks = -(-longest // bs) + int(rng.integers(0, 12))
    max_seqs = int(rng.integers(2, 9))
    budget = max_seqs + int(rng.integers(0, 40))
    tr = simulate_replica(
        r,
        ConstantStepCost(0.1),
        max_num_seqs=max_seqs,
        max_num_batched_tokens=budget,
        kv_capacity_tokens=cap_blocks * bs,
        block_size=bs,
    )
    first, finish, pre = _reference(r, 0.1, max_seqs, budget, cap_blocks, bs)
    assert tr.first_token_s.tolist() == pytest.approx(first, rel=1e-9)
    assert tr.finish_s.tolist() == pytest.approx(finish, rel=1e-9)
    assert tr.num_preemptions == pre


def test_reference_cases_do_preempt() -> None:
    """The random cases above exercise preemption (not only the no-pressure path)."""
    total = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        bs = int(rng.choice([1, 2, 4, 16]))
        r = generate_requests(
            60,
            float(rng.uniform(0.5, 6.0)),
            Lengths.uniform(1, 40),
            Lengths.uniform(1, 40),
            seed=seed,
        )
        total += _reference(
            r, 0.1, 8, 48, -(-int((r.prompt_tokens + r.output_tokens).max()) // bs) + 2, bs
        )[2]
    assert total > 0


def test_slo_stop_at_a_percentile() -> None:
    """n - floor(q/100 (n - 1)) misses force numpy's q-th percentile over the limit."""
    for n, q in ((1000, 99.0), (1000, 90.0), (7, 50.0), (10, 100.0)):
        k = SloStop.misses_for(n, q)
        x = np.zeros(n)
        x[n - k :] = 1.0
        assert np.percentile(x, q) > 0.5
        x[n - k] = 0.0
        assert np.percentile(x, q) <= 0.5 or k == 1


# --- join-shortest-queue ----------------------------------------------------------------------
def test_jsq_sends_to_the_idle_replica() -> None:
    """A long request keeps replica 0 busy; the next two arrive when replica 1 is idle (the
    second after the first has finished): JSQ sends both to replica 1, round-robin would
    send the third back to the busy replica 0."""
    r = _reqs([0.0, 0.1, 1.0], [4, 4, 4], [100, 2, 2])
    reps = [Replica(ConstantStepCost(0.1), 4, 64, 1024)] * 2
    m, traces, shares = serve(r, reps, routing="jsq")
    assert [s.tolist() for s in shares] == [[0], [1, 2]]
    _, _, rr = serve(r, reps)
    assert [s.tolist() for s in rr] == [[0, 2], [1]]
    # Replica 1: request 1 prefills in the step starting at 0.1 (first token 0.2), decodes
    # (done 0.3); request 2 arrives at 1.0 on an idle engine: first 1.1, done 1.2.
    assert traces[1].first_token_s.tolist() == pytest.approx([0.2, 1.1])
    assert traces[1].finish_s.tolist() == pytest.approx([0.3, 1.2])
    assert m.num_requests == 3


def test_jsq_ties_go_to_the_lowest_index_and_balance_a_burst() -> None:
    """Six requests at once on three idle replicas: 0, 1, 2, 0, 1, 2 (fewest outstanding,
    ties to the lowest index)."""
    r = _reqs([0.0] * 6, [4] * 6, [3] * 6)
    reps = [Replica(ConstantStepCost(0.1), 4, 64, 1024)] * 3
    _, _, shares = serve(r, reps, routing="jsq")
    assert [s.tolist() for s in shares] == [[0, 3], [1, 4], [2, 5]]


def test_jsq_beats_round_robin_on_unequal_replicas() -> None:
    """One replica twice as slow: round-robin gives it half the requests and its queue
    grows; JSQ sends it fewer and keeps the p99 TTFT lower."""
    r = generate_requests(600, 30.0, Lengths.fixed(64), Lengths.fixed(16), seed=3)
    reps = [
        Replica(ConstantStepCost(0.01), 8, 256, 4096),
        Replica(ConstantStepCost(0.02), 8, 256, 4096),
    ]
    rr, _, rr_shares = serve(r, reps)
    jsq, _, jsq_shares = serve(r, reps, routing="jsq")
    assert len(jsq_shares[1]) < len(rr_shares[1])
    assert jsq.ttft_ms.p99 < rr.ttft_ms.p99


def test_engine_resumes_to_the_same_result() -> None:
    """Advancing an engine to a horizon before every arrival (as JSQ does) gives the same
    trace as one uninterrupted run."""
    r = generate_requests(200, 8.0, Lengths.uniform(5, 60), Lengths.uniform(2, 60), seed=5)
    whole = simulate_replica(
        r, ConstantStepCost(0.05), max_num_seqs=6, max_num_batched_tokens=32, kv_capacity_tokens=160
    )
    eng = Engine(
        ConstantStepCost(0.05), max_num_seqs=6, max_num_batched_tokens=32, kv_capacity_tokens=160
    )
    for a, p, o in zip(r.arrival_s, r.prompt_tokens, r.output_tokens, strict=True):
        eng.run(float(a))
        eng.add(float(a), int(p), int(o))
    eng.run()
    part = eng.trace()
    assert whole.num_preemptions > 0
    assert part.finish_s.tolist() == pytest.approx(whole.finish_s.tolist(), rel=1e-12)
    assert part.num_preemptions == whole.num_preemptions


# --- the CLI ----------------------------------------------------------------------------------
def test_cli_simulate_jsq_kv_policy_and_bad_options(tmp_path: Path) -> None:
    """`simulate --routing jsq --kv-policy reserve --slo-percentile 90 --json` reports what it
    ran; a bad --kv-policy or --slo-percentile is one line, exit 2."""
    from solver.specs import Plan

    plan = Plan.model_validate(
        {
            "kind": "inference",
            "replica_groups": [
                {
                    "count": 2,
                    "batch_size": 16,
                    "stages": [
                        {
                            "first_layer": 0,
                            "last_layer": 79,
                            "pool": "h100",
                            "tp": 8,
                            "devices": [
                                [["h100-0", j] for j in range(8)],
                                [["h100-1", j] for j in range(8)],
                            ],
                        }
                    ],
                }
            ],
        }
    )
    path = tmp_path / "plan.json"
    path.write_text(plan.model_dump_json())
    base = ["simulate", "-m", "llama3-70b", "-c", "seed-4x8-h100", "-w", "infer-chat-slo"]
    base += ["--plan", str(path), "--rate", "4", "--requests", "200"]
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [*base, "--routing", "jsq", "--kv-policy", "reserve", "--slo-percentile", "90", "--json"],
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["routing"] == "jsq" and doc["kv_policy"] == "reserve"
    assert doc["slo_percentile"] == 90.0 and doc["num_preemptions"] == 0
    assert doc["ttft_at_percentile_ms"] == pytest.approx(doc["ttft_ms"]["p90"])
    assert sum(g["requests"] for g in doc["groups"]) == 200
    for extra, message in (
        (["--kv-policy", "swap"], "error: --kv-policy: expected one of preempt, reserve"),
        (["--slo-percentile", "0"], "error: --slo-percentile: must be a percentile in (0, 100]"),
        (["--routing", "least"], "error: --routing: expected round_robin, random or jsq"),
    ):
        bad = runner.invoke(app, [*base, *extra])
        assert bad.exit_code == 2, bad.output
        assert bad.stderr.strip().startswith(message) and bad.stderr.strip().count("\n") == 0
