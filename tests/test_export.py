"""Tests for :mod:`solver.export` and ``shardwise export``.

Golden tests: the plans under ``tests/golden/export/*.json`` are frozen inputs (written once by
``tests/golden/export/make_plans.py`` from the planner, the uniform baseline or explicit
stages); ``tests/golden/export/outputs/`` holds the exact text each target produces for them.
After an intended change to the output, regenerate the outputs and review the diff::

    SHARDWISE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_export.py -k golden

CLI tests run ``.venv/bin/shardwise`` in a subprocess (about 1 s each).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from builders import training_plan

from solver.engines import shape_violations
from solver.errors import SpecError
from solver.export import (
    ENGINES,
    TARGETS,
    EngineCannotExpress,
    engine_allows,
    engine_violations,
    export_plan,
    group_shape,
    megatron_layout,
)
from solver.export.megatron import uneven_flags
from solver.io import load_model, load_plan
from solver.specs import Plan, Stage

GOLDEN = Path(__file__).parent / "golden" / "export"
OUTPUTS = GOLDEN / "outputs"
UPDATE = os.environ.get("SHARDWISE_UPDATE_GOLDEN") == "1"

#: plan file stem -> (model, cluster, workload)
INPUTS: dict[str, tuple[str, str, str]] = {
    "train-tiny-gpt": ("tiny-gpt", "tiny-2x4-a100", "train-tiny"),
    "train-gpt39-uniform": ("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    "train-gpt39-deepspeed": ("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    "train-gpt39-mixed-tp": ("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    "train-gpt39-interleaved": ("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    "train-llama70-uneven": ("llama3-70b", "seed-4x8-h100", "train-llama-s8192"),
    "infer-llama70-chat": ("llama3-70b", "seed-4x8-h100", "infer-chat-slo"),
    "infer-llama70-hetero": ("llama3-70b", "hetero-mix", "infer-chat-slo"),
    "infer-llama405-pp2": ("llama3.1-405b", "seed-4x8-h100", "infer-chat-slo"),
    "infer-llama70-uneven-pp": ("llama3-70b", "seed-4x8-h100", "infer-chat-slo"),
    "infer-llama70-mixed-tp": ("llama3-70b", "hetero-mix", "infer-chat-slo"),
}

#: (plan, target) pairs with golden outputs: every target on bundled plans.
GOLDEN_CASES: list[tuple[str, str]] = [
    ("train-tiny-gpt", "megatron"),
    ("train-tiny-gpt", "deepspeed"),
    ("train-tiny-gpt", "torchrun"),
    ("train-gpt39-uniform", "megatron"),
    ("train-gpt39-uniform", "torchrun"),
    ("train-gpt39-deepspeed", "deepspeed"),
    ("train-gpt39-interleaved", "megatron"),
    ("train-llama70-uneven", "megatron"),
    ("train-llama70-uneven", "torchrun"),
    ("infer-llama70-chat", "vllm"),
    ("infer-llama70-chat", "sglang"),
    ("infer-llama70-chat", "trtllm"),
    ("infer-llama70-hetero", "vllm"),
    ("infer-llama70-hetero", "sglang"),
    ("infer-llama70-hetero", "trtllm"),
    ("infer-llama405-pp2", "vllm"),
    ("infer-llama405-pp2", "sglang"),
    ("infer-llama405-pp2", "trtllm"),
    ("infer-llama70-uneven-pp", "vllm"),
    ("infer-llama70-uneven-pp", "sglang"),
]


def _export(name: str, target: str, **override: Any) -> Any:
    model, cluster, workload = INPUTS[name]
    kwargs: dict[str, Any] = {"model": model, "cluster": cluster, "workload": workload}
    kwargs.update(override)
    return export_plan(GOLDEN / f"{name}.json", target, **kwargs)


def _golden_path(name: str, target: str, part: str) -> Path:
    ext = "json" if target == "deepspeed" else "sh"
    return OUTPUTS / (f"{name}.{target}.{ext}" if part == "text" else f"{name}.{target}.{part}")


def _compare(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"{path} missing: run with SHARDWISE_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), str(path), "actual", n=2
            )
        )
        pytest.fail(f"{path.name} differs from the golden output:\n{diff[:4000]}")


# ------------------------------------------------------------------------------------------
# Golden outputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "target"), GOLDEN_CASES, ids=[f"{n}-{t}" for n, t in GOLDEN_CASES]
)
def test_golden_output(name: str, target: str) -> None:
    """Each target's text (and extra files) for a bundled plan equals the golden file exactly."""
    result = _export(name, target)
    _compare(_golden_path(name, target, "text"), result.text)
    for part, text in result.files.items():
        _compare(_golden_path(name, target, part), text)


def test_golden_outputs_have_no_strays() -> None:
    """Every file under outputs/ belongs to a golden case (none left over from old cases)."""
    expected = {_golden_path(n, t, "text").name for n, t in GOLDEN_CASES}
    expected |= {
        _golden_path(n, t, part).name
        for n, t in GOLDEN_CASES
        if t == "torchrun"
        for part in ("hostfile", "rank_map.json")
    }
    assert {p.name for p in OUTPUTS.iterdir()} == expected


def test_every_target_has_a_golden_case() -> None:
    """Every --to target is covered by at least one golden output."""
    assert {t for _, t in GOLDEN_CASES} == set(TARGETS)


def test_golden_shell_outputs_are_valid_bash() -> None:
    """Every shell golden parses as bash (``bash -n``: syntax only, nothing runs)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    scripts = sorted(OUTPUTS.glob("*.sh"))
    assert scripts
    for script in scripts:
        proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"


def test_deepspeed_notes_say_what_the_config_cannot() -> None:
    """A TP=4 PP=2 plan: the notes give PipelineModule's arguments and where TP comes from."""
    notes = _export("train-gpt39-deepspeed", "deepspeed").notes
    assert any("PipelineModule(num_stages=2" in n and "24 of the 48 blocks" in n for n in notes)
    assert any(n.startswith("TP=4 comes from your training script") for n in notes)


def test_golden_deepspeed_config_is_consistent() -> None:
    """The DeepSpeed config's batch identity holds: train = micro x accumulation x DP."""
    for name in ("train-tiny-gpt", "train-gpt39-deepspeed"):
        cfg = json.loads(_export(name, "deepspeed").text)
        group = load_plan(GOLDEN / f"{name}.json").replica_groups[0]
        assert cfg["train_batch_size"] == (
            cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * group.count
        )
        assert cfg["zero_optimization"]["stage"] == group.zero_stage
        assert ("pipeline" in cfg) == (group.pp > 1)


# ------------------------------------------------------------------------------------------
# torchrun rank layout
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["train-gpt39-uniform", "train-llama70-uneven", "train-gpt39-interleaved"]
)
def test_torchrun_rank_map_puts_tp_groups_on_plan_devices(name: str) -> None:
    """Multi-node plans: each TP group's ranks run on one node, on exactly the plan's devices,
    with Megatron's coordinates (tp fastest, then dp, then pp) and contiguous node blocks."""
    plan = load_plan(GOLDEN / f"{name}.json")
    group = plan.replica_groups[0]
    result = _export(name, "torchrun")
    doc = json.loads(result.files["rank_map.json"])
    t, p, d = group.stages[0].tp, group.pp, group.count
    assert doc["world_size"] == t * p * d and len(doc["nodes"]) > 1
    assert doc["rank_order"] == "tp-dp-pp"
    by_coord: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in doc["ranks"]:
        assert r["rank"] == r["tp"] + t * (r["dp"] + d * r["pp"])
        by_coord.setdefault((r["pp"], r["dp"]), []).append(r)
    for (pp, dp), ranks in by_coord.items():
        assert len({r["node"] for r in ranks}) == 1, f"TP group (pp={pp}, dp={dp}) spans nodes"
        planned = [tuple(x) for x in group.stages[pp].devices[dp]]
        assert [(r["node"], r["gpu"]) for r in sorted(ranks, key=lambda r: r["tp"])] == planned
    for block in doc["nodes"]:
        first, last = block["ranks"]
        ranks = doc["ranks"][first : last + 1]
        assert {r["node"] for r in ranks} == {block["node"]}
        visible = [int(g) for g in block["cuda_visible_devices"].split(",")]
        assert [visible[r["local_rank"]] for r in ranks] == [r["gpu"] for r in ranks]
    # The node lines in the script (continuations joined) match the rank map.
    script = result.text.replace(" \\\n    ", " ")
    for block in doc["nodes"]:
        line = (
            f"CUDA_VISIBLE_DEVICES={block['cuda_visible_devices']} torchrun --nnodes "
            f"{len(doc['nodes'])} --node-rank {block['node_rank']} "
            f"--nproc-per-node {block['nproc_per_node']}"
        )
        assert line in script


def _tiny_plan(stage_devices: list[list[tuple[str, int]]]) -> Plan:
    """tiny-gpt (4 blocks) on tiny-2x4-a100: TP=1, PP=2 (2+2 blocks), one replica per device
    list entry; ``stage_devices[s][r]`` is stage s of replica r."""
    stages = [
        Stage(
            first_layer=2 * s, last_layer=2 * s + 1, pool="a100", tp=1, devices=[[d] for d in devs]
        )
        for s, devs in enumerate(stage_devices)
    ]
    count = len(stage_devices[0])
    return training_plan(stages, count=count, m=16 // count, zero_stage=1)


def test_torchrun_switches_to_tp_pp_dp_order_and_reorders_gpus() -> None:
    """When each replica's stages share a node, only Megatron's tp-pp-dp order gives nodes
    contiguous rank blocks: the export uses it (--use-tp-pp-dp-mapping) and orders
    CUDA_VISIBLE_DEVICES so that each local rank gets the planned GPU."""
    # Replica r: stage 0 on GPU 2k+1, stage 1 on GPU 2k of its node (deliberately swapped).
    s0 = [("a100-0", 1), ("a100-0", 3), ("a100-1", 1), ("a100-1", 3)]
    s1 = [("a100-0", 0), ("a100-0", 2), ("a100-1", 0), ("a100-1", 2)]
    plan = _tiny_plan([s0, s1])
    layout = megatron_layout(plan.replica_groups[0])
    assert not isinstance(layout, str)
    assert layout.order == "tp-pp-dp" and layout.megatron_flag == "--use-tp-pp-dp-mapping"
    assert [b.cuda_visible_devices for b in layout.nodes] == ["1,0,3,2", "1,0,3,2"]
    kw = {"model": "tiny-gpt", "cluster": "tiny-2x4-a100", "workload": "train-tiny"}
    torchrun = export_plan(plan, "torchrun", **kw)
    assert "--use-tp-pp-dp-mapping" in torchrun.text
    doc = json.loads(torchrun.files["rank_map.json"])
    for r in doc["ranks"]:
        assert (r["node"], r["gpu"]) == tuple(
            plan.replica_groups[0].stages[r["pp"]].devices[r["dp"]][0]
        )
    assert "--use-tp-pp-dp-mapping" in export_plan(plan, "megatron", **kw).text


def test_torchrun_refuses_a_layout_no_rank_order_can_place() -> None:
    """Stages crossed over two nodes (replica 0: node 0 -> node 1, replica 1: node 1 -> node 0)
    fit neither Megatron order: torchrun cannot express it; the Megatron args still export."""
    plan = _tiny_plan([[("a100-0", 0), ("a100-1", 0)], [("a100-1", 1), ("a100-0", 1)]])
    kw = {"model": "tiny-gpt", "cluster": "tiny-2x4-a100", "workload": "train-tiny"}
    with pytest.raises(EngineCannotExpress) as err:
        export_plan(plan, "torchrun", **kw)
    assert "contiguous block" in str(err.value)
    assert "no torchrun node layout" in export_plan(plan, "megatron", **kw).text


# ------------------------------------------------------------------------------------------
# Uneven layer splits
# ------------------------------------------------------------------------------------------
def test_uneven_plan_to_megatron_uses_first_stage_flag() -> None:
    """llama3-70b 39/41 over PP=2: Megatron gets --decoder-first-pipeline-num-layers 39 only
    (the last stage takes the remaining 41; flagging both would leave no stage to divide by)."""
    text = _export("train-llama70-uneven", "megatron").text
    assert "--decoder-first-pipeline-num-layers 39" in text
    assert "--decoder-last-pipeline-num-layers" not in text
    assert "--num-layers 80" in text


def test_uneven_flags_cover_first_and_last_stage() -> None:
    """The flag rule: none for even splits, first only at PP=2, first/last where they differ."""
    assert uneven_flags([20, 20, 20, 20]) == []
    assert uneven_flags([39, 41]) == ["--decoder-first-pipeline-num-layers 39"]
    assert uneven_flags([18, 21, 21, 20]) == [
        "--decoder-first-pipeline-num-layers 18",
        "--decoder-last-pipeline-num-layers 20",
    ]
    assert uneven_flags([18, 21, 21, 21]) == ["--decoder-first-pipeline-num-layers 18"]


@pytest.mark.parametrize(("target", "env"), [("vllm", "VLLM"), ("sglang", "SGLANG")])
def test_uneven_plan_to_inference_sets_layer_partition(target: str, env: str) -> None:
    """The uneven inference plan exports a layer partition that matches its stages and sums to
    the model's layers."""
    text = _export("infer-llama70-uneven-pp", target).text
    values = re.findall(rf"{env}_PP_LAYER_PARTITION=([0-9,]+)", text)
    assert values, text
    plan = load_plan(GOLDEN / "infer-llama70-uneven-pp.json")
    for value in values:
        parts = [int(x) for x in value.split(",")]
        assert parts == [s.num_layers for s in plan.replica_groups[0].stages] == [39, 41]
        assert sum(parts) == load_model("llama3-70b").num_layers


def test_even_inference_split_sets_no_partition() -> None:
    """An even split (63/63) leaves the engine's own partition alone."""
    assert "PP_LAYER_PARTITION" not in _export("infer-llama405-pp2", "vllm").text


# ------------------------------------------------------------------------------------------
# Engine rules
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["megatron", "deepspeed", "torchrun"])
def test_mixed_tp_training_plan_is_rejected(target: str) -> None:
    """The planner's mixed-TP gpt-39b plan (2/4/2) cannot be launched by any training engine."""
    with pytest.raises(EngineCannotExpress) as err:
        _export("train-gpt39-mixed-tp", target)
    assert "TP differs between stages (2/4/2)" in str(err.value)


def test_mixed_tp_inference_plan_is_rejected_by_every_inference_engine() -> None:
    """H100 TP=8 -> A100 TP=4 in one pipeline: two violations per inference engine."""
    for target in ("vllm", "sglang", "trtllm"):
        with pytest.raises(EngineCannotExpress) as err:
            _export("infer-llama70-mixed-tp", target)
        assert err.value.violations == [
            f"TP differs between stages (8/4); {ENGINES[target].title} uses one TP degree",
            f"stages run on different pools (h100/a100); {ENGINES[target].title} runs one GPU "
            "type per launch",
        ]


def test_trtllm_rejects_uneven_split_and_kinds_must_match() -> None:
    """TRT-LLM splits layers evenly; training engines reject inference plans and vice versa."""
    with pytest.raises(EngineCannotExpress, match="39/41 are uneven"):
        _export("infer-llama70-uneven-pp", "trtllm")
    plan = load_plan(GOLDEN / "infer-llama70-chat.json")
    assert engine_violations(plan, None, "megatron") == [
        "Megatron-LM launches training plans; this plan is for inference"
    ]


def test_deepspeed_rejects_what_it_has_no_setting_for() -> None:
    """The uniform gpt-39b plan uses sequence parallelism, which DeepSpeed cannot express."""
    with pytest.raises(EngineCannotExpress) as err:
        _export("train-gpt39-uniform", "deepspeed")
    assert err.value.violations == ["sequence_parallel=true has no DeepSpeed setting"]


def test_engine_allows_reads_the_rules() -> None:
    """engine_allows on candidate shapes: one check per rule in the engine table."""
    llama = load_model("llama3-70b")
    one = {"pools": ["h100"], "layers_per_stage": [80], "model": llama}
    four = {"pools": ["h100"] * 4, "model": llama}
    # KV heads (8): Megatron needs kv_heads % tp == 0; vLLM replicates KV heads.
    assert not engine_allows("megatron", tp_per_stage=[16], **one)
    assert engine_allows("vllm", tp_per_stage=[16], **one)
    assert not engine_allows("vllm", tp_per_stage=[3], **one)  # 64 heads % 3
    # Layer splits: Megatron (--pipeline-model-parallel-layout) and vLLM anything; DeepSpeed
    # and TRT-LLM even only.
    assert engine_allows(
        "megatron", tp_per_stage=[8] * 4, layers_per_stage=[19, 21, 21, 19], **four
    )
    assert engine_allows(
        "megatron", tp_per_stage=[8] * 4, layers_per_stage=[20, 19, 21, 20], **four
    )
    assert not engine_allows(
        "deepspeed", tp_per_stage=[8] * 4, layers_per_stage=[20, 19, 21, 20], **four
    )
    assert engine_allows("vllm", tp_per_stage=[8] * 4, layers_per_stage=[20, 19, 21, 20], **four)
    assert not engine_allows(
        "trtllm", tp_per_stage=[8] * 4, layers_per_stage=[19, 21, 21, 19], **four
    )
    # ZeRO: DeepSpeed's pipeline engine stops at ZeRO-1, AutoTP at ZeRO-2; Megatron at ZeRO-1.
    even = {"tp_per_stage": [8] * 4, "layers_per_stage": [20] * 4, **four}
    assert engine_allows("deepspeed", zero_stage=1, **even)
    assert not engine_allows("deepspeed", zero_stage=2, **even)
    assert engine_allows("deepspeed", tp_per_stage=[1], zero_stage=3, **one)
    assert not engine_allows("deepspeed", tp_per_stage=[8], zero_stage=3, **one)
    assert engine_allows("deepspeed", tp_per_stage=[8], zero_stage=2, **one)
    assert not engine_allows("megatron", zero_stage=2, **even)
    # Interleaving: Megatron needs equal chunks and micro-batches divisible by PP.
    inter = {"schedule": "interleaved", "virtual_stages": 2, **even}
    assert engine_allows("megatron", num_micro_batches=64, **inter)
    assert not engine_allows("megatron", num_micro_batches=66, **inter)
    assert not engine_allows("deepspeed", num_micro_batches=64, **inter)
    # Recompute and sequence parallelism.
    assert not engine_allows("deepspeed", recompute="selective", **even)
    assert not engine_allows("deepspeed", sequence_parallel=True, **even)
    assert engine_allows("megatron", recompute="selective", sequence_parallel=True, **even)


def test_engine_allows_agrees_with_engine_violations_on_golden_plans() -> None:
    """engine_allows (shape only) accepts a group exactly when the plan-level check finds no
    shape violation in it, for every bundled plan and every engine of its kind."""
    for name, (model_name, _, _) in INPUTS.items():
        plan = load_plan(GOLDEN / f"{name}.json")
        model = load_model(model_name)
        for target, rules in ENGINES.items():
            if rules.kind != plan.kind:
                continue
            for group in plan.replica_groups:
                shape = group_shape(group)
                allowed = engine_allows(
                    target,
                    tp_per_stage=shape.tp,
                    pools=shape.pools,
                    layers_per_stage=shape.layers,
                    model=model,
                    virtual_stages=shape.virtual_stages,
                    schedule=shape.schedule,
                    zero_stage=shape.zero_stage,
                    recompute=shape.recompute,
                    sequence_parallel=shape.sequence_parallel,
                    num_micro_batches=shape.num_micro_batches,
                )
                assert allowed == (not shape_violations(rules, shape, model)), (name, target)


def test_golden_cases_have_no_violations() -> None:
    """Every golden (plan, target) pair is one the engine can express."""
    for name, target in GOLDEN_CASES:
        model, _, _ = INPUTS[name]
        plan = load_plan(GOLDEN / f"{name}.json")
        assert engine_violations(plan, load_model(model), target) == [], (name, target)


# ------------------------------------------------------------------------------------------
# Bad input (SpecError -> exit 2)
# ------------------------------------------------------------------------------------------
def test_plan_that_disagrees_with_its_inputs_is_bad_input() -> None:
    """A plan for another model, batch or cluster is a SpecError naming the field."""
    with pytest.raises(SpecError, match=r"model.num_layers: the plan places 48 blocks"):
        _export("train-gpt39-uniform", "megatron", model="llama3-70b")
    with pytest.raises(SpecError, match=r"workload.global_batch_size: .* = 512 sequences"):
        _export("train-gpt39-uniform", "megatron", workload="train-llama-s8192")
    with pytest.raises(SpecError, match=r"devices\[0\]: pool 'dgx-a100' is not in cluster"):
        _export("train-gpt39-uniform", "megatron", cluster="seed-4x8-h100")
    with pytest.raises(SpecError, match=r"--workload: required for --to torchrun"):
        _export("train-gpt39-uniform", "torchrun", workload=None)
    with pytest.raises(SpecError, match=r"to: must be one of"):
        _export("train-gpt39-uniform", "slurm")


def test_plan_with_duplicate_device_is_bad_input() -> None:
    """Two ranks on one GPU is caught before any export."""
    plan = _tiny_plan([[("a100-0", 0), ("a100-0", 1)], [("a100-0", 1), ("a100-0", 2)]])
    with pytest.raises(SpecError, match=r"device \['a100-0', 1\] is also used by"):
        export_plan(plan, "megatron", model="tiny-gpt", workload="train-tiny")


# ------------------------------------------------------------------------------------------
# CLI (subprocess)
# ------------------------------------------------------------------------------------------
def _shardwise() -> list[str]:
    exe = Path(sys.executable).parent / "shardwise"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "solver"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_shardwise(), "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "SHARDWISE_DEBUG"},
    )


def _spec_args(name: str) -> list[str]:
    model, cluster, workload = INPUTS[name]
    return ["--model", model, "--cluster", cluster, "--workload", workload]


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_cli_megatron_prints_the_golden_text() -> None:
    """``shardwise export --to megatron`` exits 0 and prints exactly the golden text."""
    name = "train-gpt39-uniform"
    proc = _run(str(GOLDEN / f"{name}.json"), "--to", "megatron", *_spec_args(name))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _golden_path(name, "megatron", "text").read_text(encoding="utf-8")


def test_cli_json_prints_one_document() -> None:
    """``--json`` prints one JSON document holding the text and the extra files."""
    name = "train-llama70-uneven"
    proc = _run(str(GOLDEN / f"{name}.json"), "--to", "torchrun", *_spec_args(name), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["target"] == "torchrun" and doc["written"] == []
    assert doc["text"] == _golden_path(name, "torchrun", "text").read_text(encoding="utf-8")
    assert set(doc["files"]) == {"hostfile", "rank_map.json"}


def test_cli_out_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """--out writes the script plus hostfile and rank map; a second run needs --force."""
    name = "train-gpt39-uniform"
    plan = str(GOLDEN / f"{name}.json")
    args = [plan, "--to", "torchrun", *_spec_args(name), "--out", "launch.sh"]
    first = _run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["launch.hostfile", "launch.rank_map.json", "launch.sh"]
    (tmp_path / "launch.hostfile").write_text("mine\n")
    again = _run(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists; pass --force" in _one_error_line(again)
    assert (tmp_path / "launch.hostfile").read_text() == "mine\n"
    forced = _run(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    golden = _golden_path(name, "torchrun", "hostfile").read_text(encoding="utf-8")
    assert (tmp_path / "launch.hostfile").read_text() == golden


def test_cli_bad_target_is_one_line_exit_2() -> None:
    """An unknown --to value: exit 2, one line naming the value, no traceback."""
    proc = _run(str(GOLDEN / "train-tiny-gpt.json"), "--to", "slurm")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "--to: must be one of megatron, deepspeed, vllm, sglang, trtllm, torchrun" in line
    assert "'slurm'" in line and proc.stdout == ""


def test_cli_missing_plan_file_is_one_line_exit_2(tmp_path: Path) -> None:
    """A plan path that does not exist: exit 2, one line naming the file."""
    missing = tmp_path / "nope.json"
    proc = _run(str(missing), "--to", "vllm", "--model", "llama3-70b")
    assert proc.returncode == 2
    assert str(missing) in _one_error_line(proc)


def test_cli_engine_cannot_express_is_one_line_exit_3() -> None:
    """A mixed-TP inference plan to vLLM: exit 3, one error line naming both problems; with
    --json the violations also come as one JSON document on stdout."""
    name = "infer-llama70-mixed-tp"
    args = [str(GOLDEN / f"{name}.json"), "--to", "vllm", *_spec_args(name)]
    proc = _run(*args)
    assert proc.returncode == 3 and proc.stdout == ""
    line = _one_error_line(proc)
    assert line.startswith("error: vLLM cannot express this plan: TP differs between stages (8/4)")
    assert "different pools (h100/a100)" in line
    as_json = _run(*args, "--json")
    assert as_json.returncode == 3
    assert len(json.loads(as_json.stdout)["violations"]) == 2


def test_make_plans_script_is_importable() -> None:
    """The plan generator imports cleanly and names every plan the tests use."""
    sys.path.insert(0, str(GOLDEN))
    try:
        import make_plans  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(GOLDEN))
    assert set(make_plans.PLANS) == set(INPUTS)
