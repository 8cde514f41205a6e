"""End-to-end tests of the ``shardwise`` command line.

Most cases run in-process through ``typer.testing.CliRunner`` (fast); a handful run the real
``python -m solver`` in a subprocess (about 1 s each) to check the entry point, exit codes and
that stdout/stderr carry exactly what they should: ``--help``, ``evaluate --json``, one
malformed input and ``plan --json``.

The instance is written inline into ``tmp_path`` so the tests do not move when the shipped
data changes.  Derivation of the valid plan: 2 GPUs, DP = 2, one stage (PP = TP = 1),
micro-batch 1, so 8 sequences per step = 2 replicas x 1 sequence x 4 micro-batches.  The tiny
model (4 blocks, h = 256) needs ~3.4 M params x 18 B = 0.06 GB of state: it fits an 80 GB GPU.
The "big" model (48 blocks, h = 8192, about 39 B params) needs ~700 GB of weights, gradients
and Adam states on one GPU: infeasible on 80 GB without model parallelism.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from solver import Model, load_plan
from solver.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

REPORT_KEYS = {
    "feasible",
    "violations",
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "hfu",
    "bubble_fraction",
    "peak_memory_GB_per_gpu",
    "memory_ledger",
    "time_breakdown",
    "num_gpus",
}
LEDGER_KEYS = {
    "weights_GB",
    "grads_GB",
    "optimizer_GB",
    "activations_GB",
    "kv_cache_GB",
    "overhead_GB",
}


def _has(module: str, attr: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


needs_evaluator = pytest.mark.skipif(
    not _has("solver.evaluate", "evaluate"), reason="solver.evaluate.evaluate not available yet"
)
needs_planner = pytest.mark.skipif(
    not (_has("solver.planner", "plan") and _has("solver.evaluate", "evaluate")),
    reason="solver.planner.plan / solver.evaluate.evaluate not available yet",
)
needs_hf = pytest.mark.skipif(
    not _has("solver.hf", "import_hf"), reason="solver.hf.import_hf not available yet"
)


def _load_malformed_cases() -> list[tuple[str, str, str, str, list[str]]]:
    path = ROOT / "tests" / "malformed_cases.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("_malformed_cases", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [(c[0], c[1], c[2], c[3], list(c[4])) for c in mod.CASES]


MALFORMED = _load_malformed_cases()

# --------------------------------------------------------------------------------------------
# Inline instance
# --------------------------------------------------------------------------------------------
TINY_MODEL = """\
name: cli-tiny
num_layers: 4
hidden_size: 256
ffn_hidden_size: 1024
num_attention_heads: 4
num_kv_heads: 4
vocab_size: 1024
mlp: gelu
tied_embeddings: true
"""
BIG_MODEL = """\
name: cli-big
num_layers: 48
hidden_size: 8192
ffn_hidden_size: 32768
num_attention_heads: 64
num_kv_heads: 64
vocab_size: 51200
mlp: gelu
tied_embeddings: true
"""
CLUSTER = """\
name: cli-h100x2
pools:
  - name: h100
    gpu: H100-SXM5-80GB
    nodes: 1
    gpus_per_node: 2
    intra_node: {kind: nvlink, bandwidth_GBps: 450, latency_us: 3}
    nvlink_domain_nodes: 1
    nic: {count: 1, bandwidth_GBps: 50, latency_us: 5}
    cost_per_gpu_hour: 2.5
"""
WORKLOAD = """\
kind: training
global_batch_size: 8
sequence_length: 256
precision: bf16
optimizer: adam
zero_stage: 1
recompute: [none]
micro_batch_sizes: [1]
schedules: [1f1b]
sequence_parallel: [false]
objective: max_throughput
"""


def _plan(num_layers: int) -> dict[str, Any]:
    """DP=2 replicas of one TP=1 stage holding every block (see the module docstring)."""
    return {
        "kind": "training",
        "replica_groups": [
            {
                "count": 2,
                "micro_batch_size": 1,
                "num_micro_batches": 4,
                "schedule": "1f1b",
                "virtual_stages": 1,
                "recompute": "none",
                "zero_stage": 1,
                "sequence_parallel": False,
                "stages": [
                    {
                        "first_layer": 0,
                        "last_layer": num_layers - 1,
                        "pool": "h100",
                        "tp": 1,
                        "devices": [[["h100-0", 0]], [["h100-0", 1]]],
                    }
                ],
            }
        ],
    }


@pytest.fixture
def inst(tmp_path: Path) -> dict[str, Path]:
    """Valid spec files (and a valid and an over-memory plan) in a temporary directory."""
    files = {
        "model": ("model.yaml", TINY_MODEL),
        "big": ("big.yaml", BIG_MODEL),
        "cluster": ("cluster.yaml", CLUSTER),
        "workload": ("workload.yaml", WORKLOAD),
        "plan": ("plan.json", json.dumps(_plan(4))),
        "big_plan": ("big_plan.json", json.dumps(_plan(48))),
    }
    out = {}
    for key, (name, text) in files.items():
        (tmp_path / name).write_text(text)
        out[key] = tmp_path / name
    return out


def _spec_args(inst: dict[str, Path], model: str = "model") -> list[str]:
    return [
        "--model",
        str(inst[model]),
        "--cluster",
        str(inst["cluster"]),
        "--workload",
        str(inst["workload"]),
    ]


def _subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solver", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_one_line_error(code: int, stderr: str) -> str:
    """Exit 2 and exactly one ``error: ...`` line on stderr, no traceback; returns the line."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# Help and version
# --------------------------------------------------------------------------------------------
def test_help_subprocess_lists_commands() -> None:
    """`python -m solver --help` exits 0 and lists every command with examples."""
    proc = _subprocess("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for word in ("plan", "evaluate", "import-hf", "Examples"):
        assert word in proc.stdout


@pytest.mark.parametrize("command", ["plan", "evaluate", "import-hf"])
def test_command_help_has_example(command: str) -> None:
    """Each command's --help exits 0 and shows an example invocation."""
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.stdout
    assert f"shardwise {command}" in res.stdout


def test_version() -> None:
    """--version prints the package version."""
    from solver import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"shardwise {__version__}"


def test_usage_errors_exit_2(inst: dict[str, Path]) -> None:
    """Unknown options and missing required options are usage errors: exit 2."""
    assert runner.invoke(app, ["evaluate", "--bogus"]).exit_code == 2
    assert runner.invoke(app, ["plan", "--model", str(inst["model"])]).exit_code == 2


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
@needs_evaluator
def test_evaluate_json_subprocess(inst: dict[str, Path]) -> None:
    """`evaluate --json` prints exactly one JSON report with the documented keys, nothing else."""
    proc = _subprocess("evaluate", *_spec_args(inst), "--plan", str(inst["plan"]), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert REPORT_KEYS <= set(report)
    assert report["feasible"] is True, report["violations"]
    assert report["num_gpus"] == 2
    assert report["tokens_per_s"] > 0
    assert len(report["memory_ledger"]) == 1 and LEDGER_KEYS <= set(report["memory_ledger"][0])
    assert len(report["time_breakdown"]) == 1


@needs_evaluator
def test_evaluate_rich_report(inst: dict[str, Path]) -> None:
    """The readable report shows the summary, memory ledger, time table, layout and cost."""
    res = runner.invoke(app, ["evaluate", *_spec_args(inst), "--plan", str(inst["plan"])])
    assert res.exit_code == 0, res.output
    for text in (
        "Summary",
        "feasible",
        "yes",
        "Memory per GPU",
        "Time per stage",
        "Plan",
        "h100-0:0",
    ):
        assert text in res.stdout, text
    assert "$5.00/h" in res.stdout  # 2 GPUs x $2.50


@needs_evaluator
def test_evaluate_infeasible_plan_exits_0(inst: dict[str, Path]) -> None:
    """A plan that does not fit memory is reported infeasible (with violations), exit 0."""
    args = ["evaluate", *_spec_args(inst, "big"), "--plan", str(inst["big_plan"])]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["feasible"] is False
    assert report["violations"]
    assert report["peak_memory_GB_per_gpu"] > 80
    rich_res = runner.invoke(app, args)
    assert rich_res.exit_code == 0
    assert "NO" in rich_res.stdout


def test_evaluate_missing_plan_file(inst: dict[str, Path], tmp_path: Path) -> None:
    """A plan path that does not exist is one error line, exit 2."""
    res = runner.invoke(app, ["evaluate", *_spec_args(inst), "--plan", str(tmp_path / "nope.json")])
    line = _assert_one_line_error(res.exit_code, res.stderr)
    assert "nope.json" in line


# --------------------------------------------------------------------------------------------
# Malformed input: every case of tests/malformed_cases.py through the CLI
# --------------------------------------------------------------------------------------------
def _malformed_args(
    inst: dict[str, Path], tmp_path: Path, case: tuple[str, str, str, str, list[str]]
) -> list[str]:
    _id, kind, filename, text, _expected = case
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir(exist_ok=True)
    bad = bad_dir / filename
    bad.write_text(text)
    files = {
        "model": inst["model"],
        "cluster": inst["cluster"],
        "workload": inst["workload"],
        "plan": inst["plan"],
    }
    files[kind] = bad
    return [
        "evaluate",
        "--model", str(files["model"]),
        "--cluster", str(files["cluster"]),
        "--workload", str(files["workload"]),
        "--plan", str(files["plan"]),
    ]  # fmt: skip


@pytest.mark.skipif(not MALFORMED, reason="tests/malformed_cases.py not available yet")
def test_malformed_input_subprocess(inst: dict[str, Path], tmp_path: Path) -> None:
    """The real entry point turns a malformed file into one 'error:' line and exit 2."""
    case = MALFORMED[0]
    proc = _subprocess(*_malformed_args(inst, tmp_path, case), "--json")
    line = _assert_one_line_error(proc.returncode, proc.stderr)
    assert proc.stdout == ""
    for sub in case[4]:
        assert sub in line


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input(
    inst: dict[str, Path], tmp_path: Path, case: tuple[str, str, str, str, list[str]]
) -> None:
    """Every malformed input file gives exit 2 and one 'error:' line naming the problem."""
    res = runner.invoke(app, _malformed_args(inst, tmp_path, case))
    line = _assert_one_line_error(res.exit_code, res.stderr)
    for sub in case[4]:
        assert sub in line, (sub, line)


def test_fp8_on_gpus_without_fp8_is_bad_input(inst: dict[str, Path], tmp_path: Path) -> None:
    """fp8 on a cluster whose GPUs have no FP8 tensor cores (A100): one line naming
    'precision', exit 2, before any search."""
    cluster = tmp_path / "a100.yaml"
    cluster.write_text(CLUSTER.replace("H100-SXM5-80GB", "A100-SXM4-80GB"))
    workload = tmp_path / "fp8.yaml"
    workload.write_text(WORKLOAD.replace("precision: bf16", "precision: fp8"))
    args = ["plan", "--model", str(inst["model"]), "--cluster", str(cluster),
            "--workload", str(workload)]  # fmt: skip
    res = runner.invoke(app, args)
    line = _assert_one_line_error(res.exit_code, res.stderr)
    assert line.startswith("error: precision:") and "fp8" in line


def test_bad_option_values_are_one_line_errors(inst: dict[str, Path]) -> None:
    """Out-of-range --time-limit / --workers are bad input: one line, exit 2, nothing solved."""
    for opt in (["--time-limit", "0"], ["--workers", "0"]):
        res = runner.invoke(app, ["plan", *_spec_args(inst), *opt])
        line = _assert_one_line_error(res.exit_code, res.stderr)
        assert opt[0] in line


def test_unknown_model_name(inst: dict[str, Path]) -> None:
    """A model name that resolves to nothing is one error line naming it, exit 2."""
    args = [
        "plan",
        "--model",
        "no-such-model-xyz",
        "--cluster",
        str(inst["cluster"]),
        "--workload",
        str(inst["workload"]),
    ]
    res = runner.invoke(app, args)
    line = _assert_one_line_error(res.exit_code, res.stderr)
    assert "no-such-model-xyz" in line


# --------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------
@needs_planner
def test_plan_json_subprocess(inst: dict[str, Path]) -> None:
    """`plan --json` on the tiny instance: one document, a proven or feasible plan, clean report."""
    proc = _subprocess("plan", *_spec_args(inst), "--json", "--time-limit", "20", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"status", "plan", "report", "solver"}
    assert doc["status"] in ("OPTIMAL", "FEASIBLE"), doc["solver"]
    assert doc["plan"]["replica_groups"]
    assert doc["report"]["feasible"] is True
    assert doc["solver"]["status"] == doc["status"]


@needs_planner
def test_plan_rich_and_out_roundtrip(inst: dict[str, Path], tmp_path: Path) -> None:
    """The readable plan output shows status, layout and baseline; --out writes a loadable plan."""
    out = tmp_path / "solved.json"
    res = runner.invoke(app, ["plan", *_spec_args(inst), "--workers", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for text in ("Solver", "status", "Plan", "Against the rubric baseline", "plan written to"):
        assert text in res.stdout, text
    plan = load_plan(out)
    assert plan.solver is not None and plan.solver.status in ("OPTIMAL", "FEASIBLE")
    assert plan.predicted.get("tokens_per_s", 0) > 0
    ev = runner.invoke(app, ["evaluate", *_spec_args(inst), "--plan", str(out), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["feasible"] is True


def test_plan_out_refuses_to_overwrite(inst: dict[str, Path], tmp_path: Path) -> None:
    """--out never overwrites an existing file without --force (checked before solving)."""
    out = tmp_path / "precious.json"
    out.write_text("mine")
    res = runner.invoke(app, ["plan", *_spec_args(inst), "--out", str(out)])
    line = _assert_one_line_error(res.exit_code, res.stderr)
    assert "--force" in line
    assert out.read_text() == "mine"


@needs_planner
def test_plan_out_force_overwrites(inst: dict[str, Path], tmp_path: Path) -> None:
    """With --force, --out replaces the file with the plan (quiet mode prints one line)."""
    out = tmp_path / "old.json"
    out.write_text("old")
    res = runner.invoke(
        app, ["plan", *_spec_args(inst), "--workers", "1", "--out", str(out), "--force", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert len(res.stdout.strip().splitlines()) == 1
    assert res.stdout.split()[0] in ("OPTIMAL", "FEASIBLE")
    assert load_plan(out).replica_groups


@needs_planner
def test_plan_infeasible_exits_4_and_explains(inst: dict[str, Path], tmp_path: Path) -> None:
    """A 39 B model on two 80 GB GPUs is INFEASIBLE with an explanation; exit 4 (README:
    "Statuses and exit codes"), no file, and the JSON still prints."""
    out = tmp_path / "none.json"
    args = ["plan", *_spec_args(inst, "big"), "--workers", "1"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 4, res.output
    assert "INFEASIBLE" in res.stdout and "Why no plan fits" in res.stdout
    assert not out.exists()
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 4
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "INFEASIBLE" and doc["plan"] is None and doc["solver"]["message"]


def test_plan_invalid_input_exits_2(inst: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """INVALID_INPUT from the planner is bad input: the JSON still prints, one error line, exit 2."""
    from solver.result import Result, Status

    def invalid(*_args: Any, **_kwargs: Any) -> Result:
        return Result(
            status=Status.INVALID_INPUT, message="pools[0].gpus_per_node: cannot place TP=8"
        )

    monkeypatch.setattr("solver.planner.plan", invalid)
    res = runner.invoke(app, ["plan", *_spec_args(inst), "--json"])
    line = _assert_one_line_error(res.exit_code, res.stderr)
    assert "cannot place TP=8" in line
    assert json.loads(res.stdout)["status"] == "INVALID_INPUT"


# --------------------------------------------------------------------------------------------
# import-hf
# --------------------------------------------------------------------------------------------
LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}


@needs_hf
def test_import_hf_llama(tmp_path: Path) -> None:
    """import-hf turns a Llama-3-8B config into a model YAML; --out refuses to overwrite."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(LLAMA3_8B_CONFIG))
    res = runner.invoke(app, ["import-hf", str(cfg), "--name", "llama3-8b-test"])
    assert res.exit_code == 0, res.output
    model = Model.model_validate(yaml.safe_load(res.stdout))
    assert model.name == "llama3-8b-test"
    assert (model.num_layers, model.hidden_size, model.ffn_hidden_size) == (32, 4096, 14336)
    assert (model.num_attention_heads, model.num_kv_heads, model.vocab_size) == (32, 8, 128256)
    assert model.mlp == "swiglu" and model.tied_embeddings is False

    out = tmp_path / "models" / "llama3-8b-test.yaml"
    out.parent.mkdir()
    res = runner.invoke(app, ["import-hf", str(cfg), "--name", "llama3-8b-test", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert Model.model_validate(yaml.safe_load(out.read_text())) == model
    again = runner.invoke(app, ["import-hf", str(cfg), "--out", str(out)])
    _assert_one_line_error(again.exit_code, again.stderr)
    forced = runner.invoke(
        app, ["import-hf", str(cfg), "--name", "x", "--out", str(out), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert yaml.safe_load(out.read_text())["name"] == "x"


def test_import_hf_missing_config(tmp_path: Path) -> None:
    """A config path that does not exist is one error line, exit 2."""
    res = runner.invoke(app, ["import-hf", str(tmp_path / "config.json")])
    _assert_one_line_error(res.exit_code, res.stderr)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({"OPTIMAL": 2, "INFEASIBLE": 1, "UNKNOWN": 1}, 0),
        ({"OPTIMAL": 3, "ERROR": 1}, 7),
        ({"FEASIBLE": 1, "TIMEOUT": 1}, 7),
        ({"MODEL_ERROR": 1}, 7),
    ],
)
def test_sweep_exits_7_only_when_a_case_failed(
    tmp_path: Path, statuses: dict[str, int], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished sweep exits 0 whatever the planner's verdicts (INFEASIBLE, UNKNOWN are
    results) and 7 when some case failed (ERROR, TIMEOUT, MODEL_ERROR: README "sweep")."""
    import typer

    from solver.commands.sweep import EXIT_CASES_FAILED, _finish
    from solver.sweep import SweepSummary
    from solver.sweep.store import RESULTS_FILE

    (tmp_path / RESULTS_FILE).write_text("")
    total = sum(statuses.values())
    summary = SweepSummary(
        out=tmp_path, executor="local", slots=1, total=total, resumed=0, solved=total,
        statuses=statuses,
    )
    if code == 0:
        _finish(summary, None, "tokens_per_s", json_output=True, quiet=False)
    else:
        with pytest.raises(typer.Exit) as err:
            _finish(summary, None, "tokens_per_s", json_output=True, quiet=False)
        assert err.value.exit_code == code == EXIT_CASES_FAILED
    assert json.loads(capsys.readouterr().out)["total"] == total
