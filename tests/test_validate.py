"""Tests of ``shardwise validate``: parallel runs equal one device, and the comparison table.

One CPU run (gloo, 2 processes, float64, a 4-block h=64 GPT) does everything at once: TP=2,
PP=2 and DP=2 training steps and TP=2, PP=2 inference, each set beside the same computation on
one device, then one timed step or request per preset.  Checked here, parameter by parameter:
the loss, every gradient (TP shards gathered), every parameter after one Adam step, and the
logits of the prefill and of every decode step.  float64 makes the tolerance tight: the runs
differ only in summation order (~1e-15 observed), while a missing all-reduce, a wrong shard or
a lost micro-batch changes gradients at the 1e-2 level (the largest gradient is ~0.2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from solver.cli import app
from solver.evaluate import evaluate
from solver.io import load_cluster, load_plan
from solver.profile import driver
from solver.profile.compare import (
    compare,
    inference_workload,
    model_spec,
    render_markdown,
    training_workload,
)
from solver.profile.env import COMM_ENV
from solver.profile.gpt import (
    GPTConfig,
    StageLayout,
    full_shape,
    param_names,
    parse_shape,
    shard,
    unshard,
)
from solver.profile.plans import layout_from_plan, preset_plan

runner = CliRunner()
TOL = 1e-10


def _restore_comm_env(mp: pytest.MonkeyPatch) -> None:
    """The driver sets NCCL variables in this process too; undo that after the test."""
    for key in COMM_ENV:
        mp.delenv(key, raising=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Checks and timed tiny cases in one 2-process gloo spawn; the raw JSON and tensors."""
    tmp = tmp_path_factory.mktemp("validate")
    argv = [
        "validate", "--cpu", "--out", str(tmp / "raw.json"), "--steps", "1", "--warmup", "1",
        "--reps", "1", "--infer-presets", "single,tp2,pp2", "--infer-batches", "2",
        "--seq", "16", "--prompt", "8", "--gen", "2", "--global-batch", "4",
    ]  # fmt: skip
    job = driver.build_job(driver.parser().parse_args(argv))
    job["checks"] = driver.check_cases(2, str(tmp))
    job["check_dir"] = str(tmp)
    with pytest.MonkeyPatch.context() as mp:
        _restore_comm_env(mp)
        driver.spawn_job(job)
    raw = json.loads((tmp / "raw.json").read_text())
    tensors = {c["name"]: torch.load(c["tensors"], weights_only=False) for c in raw["checks"]}
    return {"raw": raw, "tensors": tensors, "path": tmp / "raw.json"}


# ----------------------------------------------------------------------------------------------
# correctness: parallel == one device
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("plan", ["tp2", "pp2", "dp2"])
def test_training_step_equals_one_device(run: dict[str, Any], plan: str) -> None:
    """Loss, every gradient and every updated parameter match the single-device step."""
    t = run["tensors"][f"train/{plan}"]
    ref = t["reference"]
    cfg = parse_shape("tiny", seq_len=8)
    every = set(param_names(cfg, StageLayout(0, cfg.layers - 1, embedding=True, head=True)))
    assert set(ref["grads"]) == every
    assert t["loss"] == pytest.approx(ref["loss"], abs=TOL)
    assert len(t["grads"]) == (2 if plan == "dp2" else 1)  # one per DP replica
    for grads, params in zip(t["grads"], t["params"], strict=True):
        assert set(grads) == every and set(params) == every
        for name in sorted(every):
            assert grads[name].shape == full_shape(cfg, name)
            torch.testing.assert_close(grads[name], ref["grads"][name], rtol=0, atol=TOL)
            torch.testing.assert_close(params[name], ref["params"][name], rtol=0, atol=TOL)
    # Non-trivial: the step moved every parameter, and the gradients are not all tiny.
    init = {n: p for n, p in ref["params"].items()}
    assert max(float(g.abs().max()) for g in ref["grads"].values()) > 0.05
    assert all(bool((init[n] != 0).any()) for n in every)


@pytest.mark.parametrize("plan", ["tp2", "pp2"])
def test_inference_equals_one_device(run: dict[str, Any], plan: str) -> None:
    """Prefill and each decode step give the single-device logits (so the same tokens)."""
    t = run["tensors"][f"inference/{plan}"]
    ref = t["reference"]
    assert len(ref) == 1 + 3  # prefill + 3 decode steps
    for logits in t["logits"]:  # every last-stage rank (TP ranks hold the gathered logits)
        assert len(logits) == len(ref)
        for a, b in zip(logits, ref, strict=True):
            assert a.shape == (2, 256)
            torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_check_summaries_are_in_the_raw_json(run: dict[str, Any]) -> None:
    """The raw JSON's check section reports the same agreement (what `validate --check` prints)."""
    checks = {c["name"]: c for c in run["raw"]["checks"]}
    assert set(checks) == {"train/tp2", "train/pp2", "train/dp2", "inference/tp2", "inference/pp2"}
    for c in checks.values():
        errs = [v for k, v in c.items() if k.endswith("_err")]
        assert errs and max(errs) < TOL
        assert c.get("tokens_equal", True) is True


# ----------------------------------------------------------------------------------------------
# timed cases and the comparison
# ----------------------------------------------------------------------------------------------
def test_timed_cases_report_step_stage_and_latency(run: dict[str, Any]) -> None:
    """Every preset ran; PP reports two stages, DP an all-reduce, inference TTFT and TPOT."""
    train = {c["name"]: c for c in run["raw"]["train"]}
    assert set(train) == {f"h64-l4/{p}/mb1" for p in ("single", "dp2", "tp2", "pp2")}
    for c in train.values():
        s = c["summary"]
        assert s["step_s"] > 0 and s["loss"] > 0
        assert all(st["forward_s"] > 0 and st["backward_s"] > 0 for st in s["stages"])
    assert [st["stage"] for st in train["h64-l4/pp2/mb1"]["summary"]["stages"]] == [0, 1]
    assert train["h64-l4/dp2/mb1"]["summary"]["stages"][0]["dp_allreduce_s"] > 0
    assert train["h64-l4/single/mb1"]["summary"]["stages"][0]["dp_allreduce_s"] == 0
    infer = {c["name"]: c for c in run["raw"]["inference"]}
    assert set(infer) == {f"h64-l4/{p}/b2" for p in ("single", "tp2", "pp2")}
    for c in infer.values():
        assert c["summary"]["ttft_ms"] > 0 and c["summary"]["tpot_ms"] > 0


def test_compare_prices_each_case_with_the_evaluator(run: dict[str, Any]) -> None:
    """Predicted numbers are the evaluator's for the same model, workload and plan, and the
    error column is (predicted - measured) / measured."""
    result = compare(run["raw"])
    assert result["cluster"] == "h100x2-nvlink"
    assert any("CPU" in n for n in result["notes"])
    assert result["calibration"] is None  # the raw JSON has no profile section
    rows = {r["name"]: r for r in result["train"]}
    case = next(c for c in run["raw"]["train"] if c["name"] == "h64-l4/tp2/mb1")
    plan = load_plan(case["plan"])
    direct = evaluate(
        model_spec(case["shape"]),
        load_cluster("h100x2-nvlink"),
        training_workload(case, plan),
        plan,
    )
    row = rows["h64-l4/tp2/mb1"]
    assert row["catalog"]["feasible"], row["catalog"]["violations"]
    assert row["catalog"]["step_s"] == direct.step_time_s
    meas = case["summary"]["step_s"]
    assert row["catalog"]["step_err"] == pytest.approx((direct.step_time_s - meas) / meas)  # type: ignore[operator]
    irows = {r["name"]: r for r in result["inference"]}
    icase = next(c for c in run["raw"]["inference"] if c["name"] == "h64-l4/pp2/b2")
    iplan = load_plan(icase["plan"])
    idirect = evaluate(
        model_spec(icase["shape"]),
        load_cluster("h100x2-nvlink"),
        inference_workload(icase, iplan),
        iplan,
    )
    assert irows["h64-l4/pp2/b2"]["catalog"]["ttft_ms"] == idirect.ttft_ms
    assert irows["h64-l4/pp2/b2"]["catalog"]["tpot_ms"] == idirect.tpot_ms
    text = render_markdown(result)
    assert "h64-l4/pp2/mb1" in text and "### Inference" in text and "### Correctness" in text


def test_validate_cli_from_json(run: dict[str, Any], tmp_path: Path) -> None:
    """`validate --from-json` writes the Markdown table and prints one JSON document."""
    out = tmp_path / "table.md"
    res = runner.invoke(app, ["validate", "--from-json", str(run["path"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| h64-l4/dp2/mb1 |" in out.read_text()
    res = runner.invoke(app, ["validate", "--from-json", str(run["path"]), "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert {r["name"] for r in doc["train"]} >= {"h64-l4/single/mb1", "h64-l4/pp2/mb1"}


# ----------------------------------------------------------------------------------------------
# plans and sharding (no processes)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["single", "dp2", "tp2", "pp2"])
def test_presets_are_valid_feasible_plans(name: str) -> None:
    """Each preset is a Plan the evaluator prices without violations on h100x2-nvlink, and
    keeps the global batch (8 sequences) fixed."""
    shape = {"hidden": 4096, "layers": 8, "heads": 32, "ffn": 16384, "vocab_size": 50304,
             "seq_len": 2048}  # fmt: skip
    raw = preset_plan(name, kind="training", num_layers=8, micro_batch_size=2)
    plan = load_plan(raw)
    wl = training_workload({"shape": shape, "dtype": "bf16"}, plan)
    assert wl.global_batch_size == 8
    rep = evaluate(model_spec(shape), load_cluster("h100x2-nvlink"), wl, plan)
    assert rep.feasible, rep.violations
    lay = layout_from_plan(raw, 8)
    assert (lay.dp, lay.tp, lay.pp) == {
        "single": (1, 1, 1),
        "dp2": (2, 1, 1),
        "tp2": (1, 2, 1),
        "pp2": (1, 1, 2),
    }[name]


def test_pp_preset_splits_blocks_evenly() -> None:
    """pp3 of 8 blocks: 3, 3, 2 (the remainder goes to the first stages)."""
    lay = layout_from_plan(preset_plan("pp3", kind="training", num_layers=8), 8)
    assert lay.stage_layers == ((0, 2), (3, 5), (6, 7))
    assert lay.ranks == (((0,),), ((1,),), ((2,),))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recompute": "full"}, "replica_groups[0].recompute: validate supports only 'none'"),
        ({"zero_stage": 1}, "replica_groups[0].zero_stage: validate supports only 0"),
        ({"schedule": "interleaved"}, "replica_groups[0].schedule: validate supports only '1f1b'"),
        ({"sequence_parallel": True}, "replica_groups[0].sequence_parallel"),
    ],
)
def test_plans_the_runner_cannot_reproduce_are_refused(
    change: dict[str, Any], message: str
) -> None:
    """A plan feature plain PyTorch does not reproduce is refused by name, not mis-measured."""
    raw = preset_plan("tp2", kind="training", num_layers=4)
    raw["replica_groups"][0].update(change)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        layout_from_plan(raw, 4)


def test_multi_node_and_uneven_tp_plans_are_refused() -> None:
    """Devices on node 1, and stages of different TP, name the offending field."""
    raw = preset_plan("dp2", kind="training", num_layers=4)
    raw["replica_groups"][0]["stages"][0]["devices"][1] = [["h100-1", 0]]
    with pytest.raises(ValueError, match=r"stages\[0\]\.devices\[1\]: validate runs on one node"):
        layout_from_plan(raw, 4)
    raw = preset_plan("pp2", kind="training", num_layers=4)
    raw["replica_groups"][0]["stages"][1]["tp"] = 2
    with pytest.raises(ValueError, match="same tp on every stage"):
        layout_from_plan(raw, 4)
    with pytest.raises(ValueError, match="preset: must be single, dpN, tpN or ppN"):
        preset_plan("zero3", kind="training", num_layers=4)


@pytest.mark.parametrize("tp", [2, 4])
def test_shard_unshard_round_trip(tp: int) -> None:
    """Sharding every parameter and putting the shards back gives the full tensor."""
    cfg = GPTConfig(hidden=32, layers=1, heads=4, ffn=64, vocab_size=16, seq_len=4)
    gen = torch.Generator().manual_seed(0)
    for name in param_names(cfg, StageLayout(0, 0, embedding=True, head=True)):
        full = torch.randn(full_shape(cfg, name), generator=gen)
        parts = [shard(cfg, name, full, tp, r) for r in range(tp)]
        torch.testing.assert_close(unshard(cfg, name, parts), full, rtol=0, atol=0)


def test_qkv_shard_holds_whole_heads_of_q_k_and_v() -> None:
    """4 heads of width 2, TP=2: rank 1 holds heads 2-3 of Q (rows 4-7), of K (rows 12-15)
    and of V (rows 20-23) of the 24-row QKV weight."""
    cfg = GPTConfig(hidden=8, layers=1, heads=4, ffn=32, vocab_size=8, seq_len=4)
    full = torch.arange(24.0).unsqueeze(1).expand(24, 8)
    part = shard(cfg, "blocks.0.qkv.w", full, 2, 1)
    assert part[:, 0].tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]


def test_bad_shape_and_tp_are_errors() -> None:
    """A malformed shape string or a TP that does not divide the heads is a clear error."""
    with pytest.raises(ValueError, match="shape: expected h<hidden>-l<layers>"):
        parse_shape("big", seq_len=8)
    cfg = parse_shape("h96-l1-a3-v12", seq_len=4)
    with pytest.raises(ValueError, match="tp: must divide heads=3, got 2"):
        shard(cfg, "blocks.0.qkv.w", torch.zeros(full_shape(cfg, "blocks.0.qkv.w")), 2, 0)


def test_failed_check_detection() -> None:
    """The CLI's --check verdict: any error above tolerance, or different tokens, fails."""
    from solver.commands.profile import CHECK_TOLERANCE, check_line, failed_checks

    assert CHECK_TOLERANCE <= 1e-8
    ok = {"name": "a", "grad_max_abs_err": 1e-15, "tokens_equal": True}
    bad_grad = {"name": "b", "grad_max_abs_err": 1e-3, "loss_abs_err": 0.0}
    bad_tok = {"name": "c", "logits_max_abs_err": 0.0, "tokens_equal": False}
    assert failed_checks([ok, bad_grad, bad_tok]) == ["b", "c"]
    assert failed_checks([ok]) == []
    assert check_line(bad_grad) == "b: grad_max_abs_err 1.00e-03, loss_abs_err 0.00e+00"


# ----------------------------------------------------------------------------------------------
# the driver in this process (world 1, gloo): budget and out-of-memory handling
# ----------------------------------------------------------------------------------------------
def _one_process_job(tmp_path: Path, budget: float | None) -> dict[str, Any]:
    argv = ["validate", "--cpu", "--world", "1", "--out", str(tmp_path / "raw.json"),
            "--presets", "single", "--infer-presets", "none", "--steps", "1", "--warmup", "0",
            "--seq", "8"]  # fmt: skip
    job = driver.build_job(driver.parser().parse_args(argv))
    job["time_budget_s"] = budget
    return job


def test_time_budget_skips_the_remaining_cases(tmp_path: Path) -> None:
    """Once the budget is used up no case starts: each is recorded as skipped, and the raw
    JSON is still complete."""
    from solver.profile.env import free_port

    with pytest.MonkeyPatch.context() as mp:
        _restore_comm_env(mp)
        driver._worker(0, _one_process_job(tmp_path, budget=0.0), free_port())
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert raw["complete"] is True
    assert [c["skipped"] for c in raw["train"]] == ["time budget of 0 s used up"]


def test_single_gpu_out_of_memory_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-GPU case that runs out of memory becomes an error entry; the run goes on."""
    from solver.profile import cases
    from solver.profile.env import free_port

    def oom(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cases, "_train_rank", oom)
    _restore_comm_env(monkeypatch)
    driver._worker(0, _one_process_job(tmp_path, budget=None), free_port())
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert raw["complete"] is True
    assert (
        raw["train"][0]["error"] == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
