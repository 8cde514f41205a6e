"""Complete launch configs (issue 17): DeepSpeed JSON, one precision spec for every serving
engine, and the export checker's readers.

Golden tests: plans under ``tests/golden/export/configs/*.json`` (written once by
``tests/golden/export/configs/make_plans.py``) and bundled golden plans with workload variants;
outputs under ``tests/golden/export/configs/outputs/``.  Regenerate after an intended change::

    SHARDWISE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_export_configs.py -k golden

``make check-exports`` feeds the same files to the engines' own parsers.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.export import EngineCannotExpress, export_plan
from solver.export.deepspeed import model_parallel_unit
from solver.export.precision import PrecisionSpec, engine_precision, precision_spec
from solver.io import load_cluster, load_model, load_plan, load_workload
from solver.specs import InferenceWorkload, TrainingWorkload

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "tests" / "golden" / "export"
CONFIGS = EXPORT / "configs"
OUTPUTS = CONFIGS / "outputs"
UPDATE = os.environ.get("SHARDWISE_UPDATE_GOLDEN") == "1"


def _infer(**update: Any) -> InferenceWorkload:
    w = load_workload("infer-chat-slo")
    assert isinstance(w, InferenceWorkload)
    return w.model_copy(update=update)


def _train(name: str, **update: Any) -> TrainingWorkload:
    w = load_workload(name)
    assert isinstance(w, TrainingWorkload)
    return w.model_copy(update=update)


#: case name -> (plan file, model, cluster, workload)
CASES: dict[str, tuple[Path, str, str, Any]] = {
    "train-tiny-zero3": (
        CONFIGS / "train-tiny-zero3.json",
        "tiny-gpt",
        "tiny-2x4-a100",
        _train("train-tiny"),
    ),
    "train-tiny-autotp-zero2": (
        CONFIGS / "train-tiny-autotp-zero2.json",
        "tiny-gpt",
        "tiny-2x4-a100",
        _train("train-tiny"),
    ),
    "train-tiny-hetero": (
        CONFIGS / "train-tiny-hetero.json",
        "tiny-gpt",
        "tiny-hetero",
        _train("train-tiny"),
    ),
    # The planner's own plan (shardwise plan -m gpt-7.5b -c hetero-mix -w train-gpt-s2048
    # --engine megatron): stages on H100, A100 and L40S with 16/6/5/5/4 layers, one TP
    # degree -- Megatron's --pipeline-model-parallel-layout.
    "train-hetero-mix-layout": (
        CONFIGS / "train-hetero-mix-layout.json",
        "gpt-7.5b",
        "hetero-mix",
        "train-gpt-s2048",
    ),
    "train-gpt39-interleaved": (
        EXPORT / "train-gpt39-interleaved.json",
        "gpt-39b",
        "selene-a100-64",
        "train-gpt-s2048",
    ),
    "train-llama70-uneven@fp8": (
        EXPORT / "train-llama70-uneven.json",
        "llama3-70b",
        "seed-4x8-h100",
        _train("train-llama-s8192", precision="fp8"),
    ),
    # FP8 with Transformer Engine delayed scaling and TP communication overlapped with
    # userbuffers (NeMo's FP8 performance configs): --fp8-recipe delayed, --tp-comm-overlap.
    "train-llama70-uneven@fp8-delayed-ub": (
        EXPORT / "train-llama70-uneven.json",
        "llama3-70b",
        "seed-4x8-h100",
        _train(
            "train-llama-s8192",
            precision="fp8",
            fp8_recipe="delayed",
            tp_comm_overlap="megatron_userbuffers",
        ),
    ),
    "infer-llama70-chat@kv-fp8": (
        EXPORT / "infer-llama70-chat.json",
        "llama3-70b",
        "seed-4x8-h100",
        _infer(kv_cache_precision="fp8"),
    ),
    "infer-llama70-chat@kv-e5m2": (
        EXPORT / "infer-llama70-chat.json",
        "llama3-70b",
        "seed-4x8-h100",
        _infer(kv_cache_precision="fp8_e5m2"),
    ),
    "infer-llama405-pp2@fp8": (
        EXPORT / "infer-llama405-pp2.json",
        "llama3.1-405b",
        "seed-4x8-h100",
        _infer(precision="fp8"),
    ),
    # W4A16 AWQ weights (quantization: int4_awq): vLLM/SGLang --quantization awq_marlin,
    # TensorRT-LLM quant_algo W4A16_AWQ; the engines' parsers check the flag (check-exports).
    "infer-llama70-chat@int4-awq": (
        EXPORT / "infer-llama70-chat.json",
        "llama3-70b",
        "seed-4x8-h100",
        _infer(quantization="int4_awq"),
    ),
}

#: (case, target) pairs with golden outputs.
GOLDEN_CASES: list[tuple[str, str]] = [
    ("train-tiny-zero3", "deepspeed"),
    ("train-tiny-autotp-zero2", "deepspeed"),
    ("train-tiny-hetero", "deepspeed"),
    ("train-tiny-hetero", "megatron"),
    ("train-tiny-hetero", "torchrun"),
    ("train-hetero-mix-layout", "megatron"),
    ("train-hetero-mix-layout", "torchrun"),
    ("train-gpt39-interleaved", "torchrun"),
    ("train-llama70-uneven@fp8", "megatron"),
    ("train-llama70-uneven@fp8-delayed-ub", "megatron"),
    ("infer-llama70-chat@kv-fp8", "vllm"),
    ("infer-llama70-chat@kv-fp8", "sglang"),
    ("infer-llama70-chat@kv-fp8", "trtllm"),
    ("infer-llama70-chat@kv-e5m2", "vllm"),
    ("infer-llama70-chat@kv-e5m2", "sglang"),
    ("infer-llama405-pp2@fp8", "vllm"),
    ("infer-llama405-pp2@fp8", "sglang"),
    ("infer-llama405-pp2@fp8", "trtllm"),
    ("infer-llama70-chat@int4-awq", "vllm"),
    ("infer-llama70-chat@int4-awq", "sglang"),
    ("infer-llama70-chat@int4-awq", "trtllm"),
]


def _export(case: str, target: str) -> Any:
    plan, model, cluster, workload = CASES[case]
    return export_plan(plan, target, model=model, cluster=cluster, workload=workload)


def _path(case: str, target: str, part: str = "text") -> Path:
    ext = "json" if target == "deepspeed" else "sh"
    return OUTPUTS / (f"{case}.{target}.{ext}" if part == "text" else f"{case}.{target}.{part}")


def _compare(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"{path} missing: run with SHARDWISE_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), n=2)
        )
        pytest.fail(f"{path.name} differs from the golden output:\n{diff[:4000]}")


def _checker() -> Any:
    spec = importlib.util.spec_from_file_location(
        "check_exports", ROOT / "benchmarks" / "check_exports.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_exports"] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------
# Golden outputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "target"), GOLDEN_CASES, ids=[f"{c}-{t}" for c, t in GOLDEN_CASES]
)
def test_golden_output(case: str, target: str) -> None:
    """Each (plan, workload, target) exports exactly its golden text and extra files."""
    result = _export(case, target)
    _compare(_path(case, target), result.text)
    for part, text in result.files.items():
        _compare(_path(case, target, part), text)


def test_golden_outputs_have_no_strays() -> None:
    """Every file under configs/outputs/ belongs to a golden case."""
    expected = {_path(c, t).name for c, t in GOLDEN_CASES}
    expected |= {
        _path(c, t, part).name
        for c, t in GOLDEN_CASES
        if t == "torchrun"
        for part in ("hostfile", "rank_map.json")
    }
    assert {p.name for p in OUTPUTS.iterdir()} == expected


def test_config_plans_are_feasible() -> None:
    """The frozen plans of this module still pass the evaluator (ZeRO stage free)."""
    for case in ("train-tiny-zero3", "train-tiny-autotp-zero2", "train-tiny-hetero"):
        plan, model, cluster, workload = CASES[case]
        w = workload.model_copy(update={"zero_stage": [0, 1, 2, 3]})
        report = evaluate(load_model(model), load_cluster(cluster), w, load_plan(plan))
        assert report.feasible, (case, report.violations)


# ------------------------------------------------------------------------------------------
# DeepSpeed
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("train-tiny-zero3", "none"),
        ("train-tiny-autotp-zero2", "autotp"),
        ("train-tiny-hetero", "pipeline"),
    ],
)
def test_deepspeed_config_carries_every_setting(case: str, kind: str) -> None:
    """Batch = micro x accumulation x DP, ZeRO stage, TP or pipeline, checkpointing iff full."""
    group = load_plan(CASES[case][0]).replica_groups[0]
    result = _export(case, "deepspeed")
    cfg = json.loads(result.text)
    assert group.micro_batch_size is not None and group.num_micro_batches is not None
    assert cfg["train_batch_size"] == group.count * group.micro_batch_size * group.num_micro_batches
    assert cfg["zero_optimization"]["stage"] == group.zero_stage
    assert ("activation_checkpointing" in cfg) == (group.recompute == "full")
    assert ("pipeline" in cfg) == (kind == "pipeline")
    assert ("tensor_parallel" in cfg) == (kind == "autotp")
    unit = model_parallel_unit(group)
    assert unit.kind == kind and unit.world_size == group.count * group.pp * group.stages[0].tp
    assert result.notes[0] == unit.statement() or result.notes[0].startswith(
        f"launch {unit.world_size} ranks"
    )


def test_deepspeed_tp2_pp2_names_the_topology_and_checkpoints_every_block() -> None:
    """The issue's TP+PP case: the notes name the PipelineModule topology with DP, and full
    recompute is in the config (activation_checkpointing + pipeline interval 1)."""
    result = export_plan(
        EXPORT / "train-gpt39-deepspeed.json",
        "deepspeed",
        model="gpt-39b",
        workload="train-gpt-s2048",
    )
    cfg = json.loads(result.text)
    assert cfg["pipeline"]["activation_checkpoint_interval"] == 1
    assert cfg["activation_checkpointing"]["number_checkpoints"] == 24
    assert "PipeModelDataParallelTopology(num_pp=2, num_mp=4, num_dp=8)" in result.notes[0]


def test_checker_accepts_golden_deepspeed_configs_when_deepspeed_installed() -> None:
    """Where DeepSpeed imports, DeepSpeedConfig accepts every golden config on its world size."""
    pytest.importorskip("deepspeed")
    checker = _checker()
    rows = [g for g in checker.goldens() if g.target == "deepspeed"]
    assert rows
    for g in rows:
        assert "DeepSpeedConfig" in checker.check_deepspeed(g)


# ------------------------------------------------------------------------------------------
# One precision spec -> each engine's options
# ------------------------------------------------------------------------------------------
def test_one_fp8_kv_plan_means_e4m3_on_every_engine() -> None:
    """The issue's bug: the same FP8-KV plan gets E4M3 on vLLM, SGLang and TensorRT-LLM."""
    texts = {t: _export("infer-llama70-chat@kv-fp8", t).text for t in ("vllm", "sglang", "trtllm")}
    assert "--kv-cache-dtype fp8_e4m3" in texts["vllm"]
    assert "--kv-cache-dtype fp8_e4m3" in texts["sglang"]
    assert "kv_cache_config:\n  dtype: fp8\n" in texts["trtllm"]
    assert '--config "$TRTLLM_CONFIG"' in texts["trtllm"]
    assert all("e5m2" not in text for text in texts.values())


def test_e5m2_kv_is_refused_by_trtllm_in_one_line() -> None:
    """TensorRT-LLM has only E4M3 FP8 KV: one line naming the format, not a silent default."""
    with pytest.raises(EngineCannotExpress) as err:
        _export("infer-llama70-chat@kv-e5m2", "trtllm")
    message = str(err.value)
    assert "\n" not in message and "kv_cache_precision fp8_e5m2" in message


# spec -> expected (vLLM flags, SGLang flags, TensorRT-LLM YAML) per format.
_TABLE: list[tuple[PrecisionSpec, tuple[str, ...], tuple[str, ...], dict[str, Any]]] = [
    (PrecisionSpec(), ("--dtype bfloat16",), ("--dtype bfloat16",), {}),
    (
        PrecisionSpec(weights="fp8", kv_cache="fp8_e4m3"),
        ("--dtype bfloat16", "--quantization fp8", "--kv-cache-dtype fp8_e4m3"),
        ("--dtype bfloat16", "--quantization fp8", "--kv-cache-dtype fp8_e4m3"),
        {"quant_config": {"quant_algo": "FP8"}, "kv_cache_config": {"dtype": "fp8"}},
    ),
    (
        PrecisionSpec(weights="int4"),
        ("--dtype bfloat16", "--quantization awq_marlin"),
        ("--dtype bfloat16", "--quantization awq_marlin"),
        {"quant_config": {"quant_algo": "W4A16_AWQ"}},
    ),
    (
        PrecisionSpec(weights="int8", activations="fp16", kv_cache="fp16"),
        ("--dtype float16", "--quantization gptq_marlin"),
        ("--dtype float16", "--quantization gptq_marlin"),
        {"dtype": "float16", "quant_config": {"quant_algo": "W8A16"}},
    ),
    (
        PrecisionSpec(weights="fp4", kv_cache="fp8_e4m3"),
        ("--dtype bfloat16", "--quantization modelopt_fp4", "--kv-cache-dtype fp8_e4m3"),
        ("--dtype bfloat16", "--quantization modelopt_fp4", "--kv-cache-dtype fp8_e4m3"),
        {"quant_config": {"quant_algo": "NVFP4"}, "kv_cache_config": {"dtype": "fp8"}},
    ),
]


@pytest.mark.parametrize(("spec", "vllm", "sglang", "trtllm"), _TABLE)
def test_precision_table(
    spec: PrecisionSpec, vllm: tuple[str, ...], sglang: tuple[str, ...], trtllm: dict[str, Any]
) -> None:
    """Each format maps to the engines' own option names and values."""
    assert engine_precision("vllm", spec).flags == vllm
    assert engine_precision("sglang", spec).flags == sglang
    assert engine_precision("trtllm", spec).config == trtllm


def test_quantized_checkpoints_are_named_in_notes() -> None:
    """Formats read from a pre-quantized checkpoint say which checkpoint to serve."""
    notes = engine_precision("vllm", PrecisionSpec(weights="int4")).notes
    assert any("AWQ 4-bit" in n for n in notes)


def test_sglang_has_no_fp16_kv_under_bf16() -> None:
    """SGLang's --kv-cache-dtype has no float16 choice: refused, one line."""
    with pytest.raises(EngineCannotExpress, match="kv_cache_precision fp16"):
        engine_precision("sglang", PrecisionSpec(kv_cache="fp16"))


def test_precision_spec_rejects_unknown_format_naming_the_field() -> None:
    """A bad format is a ValueError naming the field and value."""
    with pytest.raises(ValueError, match="weights: must be one of .*got 'int2'"):
        PrecisionSpec(weights="int2")


def test_workload_precision_spec_reads_fp8_as_e4m3() -> None:
    """``fp8`` weights default to an E4M3 KV cache, as the cost model prices it (1 byte)."""
    assert precision_spec(_infer(precision="fp8")) == PrecisionSpec("fp8", "bf16", "fp8_e4m3")
    assert precision_spec(_infer(kv_cache_precision="fp8")).kv_cache == "fp8_e4m3"
    assert precision_spec(_infer()).kv_cache == "bf16"


def test_workload_rejects_unknown_kv_format_naming_the_field() -> None:
    """kv_cache_precision outside the literal is bad input naming the field."""
    with pytest.raises(ValueError, match="kv_cache_precision"):
        _infer().model_validate({**_infer().model_dump(), "kv_cache_precision": "int4"})


def test_e5m2_and_e4m3_kv_cost_the_same_bytes() -> None:
    """Both FP8 encodings are 1 byte: the evaluator prices fp8, fp8_e4m3 and fp8_e5m2 alike."""
    plan = load_plan(EXPORT / "infer-llama70-chat.json")
    model, cluster = load_model("llama3-70b"), load_cluster("seed-4x8-h100")
    times = {}
    for kv in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        report = evaluate(model, cluster, _infer(kv_cache_precision=kv), plan).to_dict()
        times[kv] = (report["tokens_per_s"], report["peak_memory_GB_per_gpu"], report["tpot_ms"])
    assert len(set(times.values())) == 1, times


def test_cli_refuses_e5m2_for_trtllm_with_exit_3(tmp_path: Path) -> None:
    """``shardwise export --to trtllm`` with an E5M2 KV workload: one line, exit 3."""
    workload = tmp_path / "w.json"
    workload.write_text(_infer(kv_cache_precision="fp8_e5m2").model_dump_json(), encoding="utf-8")
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "shardwise"),
            "export",
            str(EXPORT / "infer-llama70-chat.json"),
            "--to",
            "trtllm",
            "-m",
            "llama3-70b",
            "-w",
            str(workload),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "fp8_e5m2" in proc.stderr


def test_bad_workload_is_spec_error() -> None:
    """A training workload for an inference plan stays bad input (SpecError)."""
    with pytest.raises(SpecError):
        export_plan(
            EXPORT / "infer-llama70-chat.json", "vllm", model="llama3-70b", workload="train-tiny"
        )


# ------------------------------------------------------------------------------------------
# The export checker (benchmarks/check_exports.py): its readers, on every golden file
# ------------------------------------------------------------------------------------------
def test_checker_static_checks_pass_on_every_golden() -> None:
    """Without any engine installed, the readers and source-list checks pass on every golden
    vLLM, TensorRT-LLM, Megatron and torchrun file."""
    checker = _checker()
    rows = [g for g in checker.goldens() if g.target in ("vllm", "trtllm", "megatron", "torchrun")]
    assert {g.target for g in rows} == {"vllm", "trtllm", "megatron", "torchrun"}
    for g in rows:
        assert checker.CHECKS[g.target](g), g.path.name


def test_checker_rejects_an_unknown_flag(tmp_path: Path) -> None:
    """A flag outside the quoted source list fails the check."""
    checker = _checker()
    golden = next(g for g in checker.goldens() if g.target == "trtllm")
    bad = tmp_path / golden.path.name
    bad.write_text(golden.path.read_text().replace("--max_batch_size", "--max-batch-size"))
    with pytest.raises(AssertionError, match="--max-batch-size"):
        checker.check_trtllm(checker.Golden(bad, golden.plan, "trtllm"))


def test_checker_reads_heredoc_yaml() -> None:
    """The TensorRT-LLM YAML the script writes reads back as written."""
    checker = _checker()
    text = _export("infer-llama405-pp2@fp8", "trtllm").text
    assert checker.heredoc_yaml(text) == {
        "quant_config": {"quant_algo": "FP8"},
        "kv_cache_config": {"dtype": "fp8"},
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("vllm", ["--gpu-memory-utilization 0.85", "--max-num-batched-tokens 4096"]),
        ("sglang", ["--mem-fraction-static 0.85", "--chunked-prefill-size 4096"]),
        ("trtllm", ["--max_num_tokens 4096"]),
    ],
)
def test_serving_exports_carry_the_memory_and_token_budgets(
    target: str, expected: list[str]
) -> None:
    """The serving ledger's gpu_memory_utilization and max_num_batched_tokens reach each
    engine under its own name (TensorRT-LLM: the token budget only; its free-memory fraction
    means something else)."""
    plan, model, cluster, _ = CASES["infer-llama70-chat@kv-fp8"]
    wl = _infer(gpu_memory_utilization=0.85, max_num_batched_tokens=4096)
    text = export_plan(plan, target, model=model, cluster=cluster, workload=wl).text
    flat = " ".join(text.replace("\\\n", " ").split())
    for flag in expected:
        assert flag in flat, (target, flag)
    if target == "trtllm":
        assert "0.85" not in flat
