"""Multi-step scheduling in the serving simulator (``num_scheduler_steps`` k, vLLM 0.5.5-0.7
``--num-scheduler-steps``): hand-derived bursts and waits, the ITL accounting against the
per-request times, KV preemption ending a run, resumable / JSQ runs, k = 1 as before, bad
values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solver.cli import app
from solver.errors import SpecError
from solver.io import load_cluster, load_model, load_workload
from solver.serving import (
    ConstantStepCost,
    FunctionStepCost,
    Lengths,
    Replica,
    Requests,
    generate_requests,
    serve,
    serving_metrics,
    simulate,
    simulate_replica,
)
from solver.serving.simulator import Engine, ReplicaTrace
from solver.specs import InferenceWorkload, Plan

MODEL70 = load_model("llama3-70b")
CLUSTER = load_cluster("seed-4x8-h100")
CHAT = load_workload("infer-chat-slo")
assert isinstance(CHAT, InferenceWorkload)
STEP = 0.005  # constant step cost of the hand-derived cases, seconds


def _reqs(arrival: list[float], prompt: list[int], output: list[int]) -> Requests:
    return Requests(
        np.asarray(arrival, dtype=np.float64),
        np.asarray(prompt, dtype=np.int64),
        np.asarray(output, dtype=np.int64),
    )


def _cost() -> FunctionStepCost:
    """A step cost that depends on everything a step holds (so schedules differ visibly)."""

    def f(d: int, ctx: float, p: int, pctx: float) -> float:
        return 1e-3 + 2e-5 * p + 1e-4 * d + 1e-8 * ctx + 1e-9 * pctx

    return FunctionStepCost(f)


def _random(seed: int, n: int = 800) -> Requests:
    return generate_requests(
        n, 40.0, Lengths.lognormal(300, 1.0, 2000), Lengths.lognormal(150, 0.8, 1000), seed=seed
    )


def _metrics(r: Requests, tr: ReplicaTrace) -> Any:
    return serving_metrics(
        r.arrival_s,
        r.prompt_tokens,
        r.output_tokens,
        tr.first_token_s,
        tr.finish_s,
        tr.step_s,
        tr.step_decode,
        itl_s=tr.itl_s,
        itl_weight=tr.itl_weight,
    )


def _plan(count: int) -> Plan:
    """``count`` replicas of llama3-70b on one TP8 node each."""
    st = {
        "first_layer": 0,
        "last_layer": MODEL70.num_layers - 1,
        "pool": "h100",
        "tp": 8,
        "devices": [[[f"h100-{r}", j] for j in range(8)] for r in range(count)],
    }
    return Plan.model_validate(
        {
            "kind": "inference",
            "replica_groups": [{"count": count, "batch_size": 32, "stages": [st]}],
        }
    )


# --- hand-derived ----------------------------------------------------------------------------
def test_lone_decode_request_streams_bursts_of_k() -> None:
    """Prompt 100, 10 output tokens, 5 ms steps, k = 4: the prefill step returns the first token
    at 1.005 at once; the 9 decode tokens come as runs of 4, 4 and 1 steps (the last run ends
    with the request), delivered at 1.025, 1.045, 1.050: ITL samples 20, 20, 5 ms, one chunk
    each.  TPOT and E2E are those of k = 1 (the last run ends at the last token); ITL p50 is
    4 steps instead of 1."""
    r = _reqs([1.0], [100], [10])
    kw: dict[str, Any] = {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 512,
        "kv_capacity_tokens": 10**6,
    }
    tr = simulate_replica(r, ConstantStepCost(STEP), num_scheduler_steps=4, **kw)
    assert tr.first_token_s.tolist() == pytest.approx([1.005])
    assert tr.finish_s.tolist() == pytest.approx([1.050])
    assert tr.itl_s is not None and tr.itl_weight is not None
    assert tr.itl_s.tolist() == pytest.approx([4 * STEP, 4 * STEP, STEP])
    assert tr.itl_weight.tolist() == [1, 1, 1]
    m = _metrics(r, tr)
    assert m.itl_ms.p50 == pytest.approx(20.0) and m.tpot_ms.p50 == pytest.approx(5.0)
    assert m.num_steps == 10
    one = simulate_replica(r, ConstantStepCost(STEP), **kw)
    assert one.itl_s is None and _metrics(r, one).itl_ms.p50 == pytest.approx(5.0)


def test_request_arriving_mid_run_waits_for_the_run_end() -> None:
    """A (t=0, prompt 100, output 10), B (t=0.007, prompt 10, output 3), 5 ms steps, k = 4.

    Step 1 prefills A (first token 0.005); steps 2-5 are a run: B arrives in step 2 but is
    admitted only at the run's end, 0.025; step 6 prefills B with A's decode (B's first token
    at 0.030, TTFT 23 ms; k = 1 admits B after step 2: TTFT 8 ms).  Steps 7-10 are a run: B's
    2 decodes end in step 8 (0.040) but reach the client with the run's end, 0.050, as does
    A's last token.  ITL: A 20 ms (steps 2-5), A 25 ms (steps 6-10: the prefill step and the
    run), B 20 ms (steps 7-10)."""
    r = _reqs([0.0, 0.007], [100, 10], [10, 3])
    kw: dict[str, Any] = {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 512,
        "kv_capacity_tokens": 10**6,
    }
    tr = simulate_replica(r, ConstantStepCost(STEP), num_scheduler_steps=4, **kw)
    assert tr.first_token_s.tolist() == pytest.approx([0.005, 0.030])
    assert tr.finish_s.tolist() == pytest.approx([0.050, 0.050])
    assert tr.itl_s is not None and tr.itl_weight is not None
    assert tr.itl_s.tolist() == pytest.approx([0.020, 0.025, 0.020])
    assert tr.itl_weight.tolist() == [1, 1, 1]
    one = simulate_replica(r, ConstantStepCost(STEP), **kw)
    assert one.first_token_s.tolist() == pytest.approx([0.005, 0.015])
    assert one.finish_s.tolist() == pytest.approx([0.050, 0.025])


def test_kv_preemption_ends_the_run() -> None:
    """Block size 1, a 20-token pool; A and B (t=0, prompt 8, output 8), 5 ms steps, k = 4.

    Step 1 prefills both (16 tokens); the run from step 2 holds 18, then 20 tokens; step 4
    would need 22, so the run ends after step 3 (0.015: both get a 2-token chunk, ITL 10 ms
    twice) and the scheduler preempts B (the newest).  A runs steps 4-7 (chunk at 0.035) and
    its last decode step 8 (0.040, the run ends with it).  B then re-prefills its prompt and 3
    tokens (step 9, 0.045: its 4th token) and decodes 4 tokens in steps 10-13: done 0.065."""
    r = _reqs([0.0, 0.0], [8, 8], [8, 8])
    tr = simulate_replica(
        r,
        ConstantStepCost(STEP),
        max_num_seqs=4,
        max_num_batched_tokens=512,
        kv_capacity_tokens=20,
        block_size=1,
        num_scheduler_steps=4,
    )
    assert tr.num_preemptions == 1 and tr.recomputed_tokens == 10
    assert tr.first_token_s.tolist() == pytest.approx([0.005, 0.005])
    assert tr.finish_s.tolist() == pytest.approx([0.040, 0.065])
    assert tr.itl_s is not None and tr.itl_weight is not None
    assert tr.itl_s[0] == pytest.approx(0.010) and tr.itl_weight[0] == 2
    assert tr.step_prefill_tokens.tolist()[8] == 11


# --- properties on random workloads ----------------------------------------------------------
@pytest.mark.parametrize("k", [1, 4, 10])
def test_itl_samples_add_up_to_each_request_s_decode_time(k: int) -> None:
    """Without preemption, a request's chunk gaps telescope to finish - first token, so the
    weighted sum of the ITL samples is the sum of (finish - first) over requests with >= 2
    tokens -- a check of the run and chunk accounting independent of how it is kept."""
    r = _random(1)
    tr = simulate_replica(
        r,
        _cost(),
        max_num_seqs=64,
        max_num_batched_tokens=512,
        kv_capacity_tokens=10**7,
        num_scheduler_steps=k,
    )
    x = tr.step_s if tr.itl_s is None else tr.itl_s
    w = tr.step_decode if tr.itl_weight is None else tr.itl_weight
    multi = r.output_tokens > 1
    assert float((x * w).sum()) == pytest.approx(
        float((tr.finish_s - tr.first_token_s)[multi].sum()), rel=1e-9
    )
    assert np.all(tr.first_token_s >= r.arrival_s) and np.all(tr.finish_s >= tr.first_token_s)


@pytest.mark.parametrize("policy", ["preempt", "reserve"])
def test_resumable_engine_and_jsq_match_one_run(policy: str) -> None:
    """Advancing the engine to every arrival before adding it (as join-shortest-queue dispatch
    does) gives exactly the trace of one run over all requests, with KV pressure (preemptions
    under ``preempt``); and JSQ over two k = 4 replicas gives each the trace a plain run of its
    share gives."""
    r = _random(2, 600)
    kw: dict[str, Any] = {
        "max_num_seqs": 64,
        "max_num_batched_tokens": 512,
        "kv_capacity_tokens": 6000,
        "kv_policy": policy,
        "num_scheduler_steps": 4,
    }
    whole = simulate_replica(r, _cost(), **kw)
    eng = Engine(_cost(), **kw)
    for t, p, o in zip(
        r.arrival_s.tolist(), r.prompt_tokens.tolist(), r.output_tokens.tolist(), strict=True
    ):
        eng.run(t)
        eng.add(t, p, o)
    eng.run()
    step = eng.trace()
    assert (whole.num_preemptions > 0) == (policy == "preempt")
    for name in ("first_token_s", "finish_s", "step_s", "itl_s", "itl_weight"):
        assert np.array_equal(getattr(whole, name), getattr(step, name)), name
    rep = Replica(_cost(), 64, 512, 6000, policy, num_scheduler_steps=4)
    _, traces, shares = serve(r, [rep, rep], routing="jsq")
    assert all(len(s) > 0 for s in shares)
    for tr, idx in zip(traces, shares, strict=True):
        alone = simulate_replica(r.subset(idx), _cost(), **kw)
        assert np.array_equal(tr.finish_s, alone.finish_s)
        assert np.array_equal(tr.first_token_s, alone.first_token_s)


def test_k1_is_the_default_and_the_workload_field_is_used() -> None:
    """api.simulate: num_scheduler_steps=1 is the default (same result, JSQ and preemption
    included); the workload's num_scheduler_steps is used, and the argument overrides it; k = 4
    raises ITL p50 about 4x at light load while TPOT stays within a few percent."""
    plan = _plan(2)
    reqs = generate_requests(
        300, 2.0, Lengths.lognormal(1024, 1.0, 8192), Lengths.lognormal(256, 0.8, 2048), seed=3
    )
    kw: dict[str, Any] = {"routing": "jsq", "kv_capacity": 20_000}

    def dump(res: Any) -> dict[str, Any]:
        d = dict(res.model_dump(mode="json"))
        d.pop("wall_time_s")
        return d

    default = simulate(MODEL70, CLUSTER, CHAT, plan, reqs, **kw)
    one = simulate(MODEL70, CLUSTER, CHAT, plan, reqs, num_scheduler_steps=1, **kw)
    assert dump(default) == dump(one) and default.num_scheduler_steps == 1
    four_w = CHAT.model_copy(update={"num_scheduler_steps": 4})
    four = simulate(MODEL70, CLUSTER, four_w, plan, reqs, **kw)
    assert four.num_scheduler_steps == 4
    assert dump(four) == dump(
        simulate(MODEL70, CLUSTER, CHAT, plan, reqs, num_scheduler_steps=4, **kw)
    )
    assert dump(one) == dump(
        simulate(MODEL70, CLUSTER, four_w, plan, reqs, num_scheduler_steps=1, **kw)
    )
    assert 3.0 < four.itl_ms.p50 / one.itl_ms.p50 < 4.5
    assert four.tpot_ms.p50 == pytest.approx(one.tpot_ms.p50, rel=0.05)


# --- bad values ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 65, 2.5, True, "4", -1])
def test_bad_scheduler_steps_are_one_line_naming_the_field(bad: Any) -> None:
    with pytest.raises(SpecError, match=r"^num_scheduler_steps: must be an integer in 1\.\.64"):
        simulate_replica(
            _reqs([0.0], [10], [2]),
            ConstantStepCost(STEP),
            max_num_seqs=4,
            max_num_batched_tokens=64,
            kv_capacity_tokens=1000,
            num_scheduler_steps=bad,
        )


@pytest.mark.parametrize("bad", [0, 65, 2.5, "ten", True])
def test_bad_workload_field_and_cli_option_exit_2(tmp_path: Path, bad: Any) -> None:
    """The YAML field: SpecError naming it; the options: exit 2, one line, no traceback."""
    doc = {
        "kind": "inference",
        "prompt_tokens": 512,
        "output_tokens": 64,
        "num_scheduler_steps": bad,
    }
    with pytest.raises(SpecError, match="num_scheduler_steps") as e:
        load_workload(doc)
    assert "\n" not in str(e.value)
    if isinstance(bad, int) and not isinstance(bad, bool):
        plan_path = tmp_path / "plan.json"
        plan_path.write_text(_plan(1).model_dump_json())
        runner = CliRunner()
        for cmd in (
            ["simulate", "-m", "llama3-70b", "-c", "seed-4x8-h100", "-w", "infer-chat-slo"]
            + ["--plan", str(plan_path)],
            ["plan-serving", "-m", "tiny-llama", "-c", "tiny-hetero", "-w", "infer-chat-slo"],
        ):
            res = runner.invoke(app, [*cmd, "--num-scheduler-steps", str(bad)])
            assert res.exit_code == 2, res.output
            err = res.stderr.strip()
            assert err == f"error: --num-scheduler-steps: must be an integer in 1..64, got {bad}"


def test_cli_simulate_multistep_json(tmp_path: Path) -> None:
    """`shardwise simulate --num-scheduler-steps 8 --json` reports k and chunked ITL."""
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(_plan(1).model_dump_json())
    base = ["simulate", "-m", "llama3-70b", "-c", "seed-4x8-h100", "-w", "infer-chat-slo"]
    base += ["--plan", str(plan_path), "--rate", "1", "--requests", "60", "--json"]
    runner = CliRunner()
    ms = runner.invoke(app, [*base, "--num-scheduler-steps", "8"])
    one = runner.invoke(app, base)
    assert ms.exit_code == 0 and one.exit_code == 0, ms.output + one.output
    a, b = json.loads(ms.stdout), json.loads(one.stdout)
    assert a["num_scheduler_steps"] == 8 and b["num_scheduler_steps"] == 1
    assert a["itl_ms"]["p50"] > 5 * b["itl_ms"]["p50"]
