"""Tests of :mod:`solver.sweep` and ``shardwise sweep``.

Most sweeps here run a *fake* task (a module-level function of this file, so the pool's worker
processes can import it) that returns a record at once: they test the machinery -- keys,
records, resume, failure handling -- without paying for CP-SAT.  Real solves run on the tiny
bundled instances (tiny-gpt, tiny-llama on h100x2-nvlink / tiny-2x4-a100 / seed-4x8-h100),
each well under a second.  The kill -9 and Ctrl-C tests run the real ``python -m solver sweep``
in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solver import load_model
from solver.cli import app
from solver.errors import SpecError
from solver.sweep import (
    MEGATRON_2021_TABLE1,
    Case,
    LocalExecutor,
    SolveSettings,
    best_rows,
    cartesian,
    cases_from_file,
    family_models,
    gpt_model,
    read_results,
    solve_case,
    sweep,
)
from solver.sweep.cases import ResolvedCase, resolve_cases
from solver.sweep.executors import MAX_ATTEMPTS, available_cores, blank_record
from solver.sweep.families import HEAD_DIM, HEADS_MULTIPLE, eq2_params, parse_size
from solver.sweep.store import RESULTS_FILE, ResultWriter

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT.parent / "shared" / "data" / "published-runs.json"
runner = CliRunner()


# --------------------------------------------------------------------------------------------
# Fake tasks (run in worker processes: must be importable module-level functions)
# --------------------------------------------------------------------------------------------
def fake_task(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """An instant 'solve': OPTIMAL with an objective derived from the key."""
    rec = blank_record(case, settings)
    rec.update(status="OPTIMAL", objective=float(len(case.key)), tokens_per_s=1000.0)
    return rec


def raising_task(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """Raises for the model named 'boom', like a planner bug would."""
    if case.model.name == "boom":
        raise RuntimeError("boom went the planner")
    return fake_task(case, settings)


def crashing_task(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """Kills its worker process for the model named 'crash', like a segfault or OOM kill."""
    if case.model.name == "crash":
        os._exit(3)
    time.sleep(0.05)  # keep a neighbour in flight when the crash happens
    return fake_task(case, settings)


def _renamed(name: str) -> Any:
    return load_model("tiny-gpt").model_copy(update={"name": name})


def _keys(out: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (out / RESULTS_FILE).read_text().splitlines()]


def _one_line_error(res: Any) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return str(lines[0])


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def test_cartesian_keys_and_order() -> None:
    """2 models x 2 clusters x 1 workload = 4 cases, models varying slowest, keys m|c|w."""
    cases = cartesian(["tiny-gpt", "tiny-llama"], ["a", "b"], ["train-tiny"])
    assert [c.key for c in cases] == [
        "tiny-gpt|a|train-tiny",
        "tiny-gpt|b|train-tiny",
        "tiny-llama|a|train-tiny",
        "tiny-llama|b|train-tiny",
    ]


def test_cartesian_rejects_repeats_and_empty_lists() -> None:
    """A name listed twice, or an empty list, is an error naming the option."""
    with pytest.raises(SpecError, match="--clusters: 'a' is listed twice"):
        cartesian(["m"], ["a", "a"], ["w"])
    with pytest.raises(SpecError, match="--workloads"):
        cartesian(["m"], ["a"], [])


def test_case_keys_for_inline_specs() -> None:
    """Spec objects are keyed by name; workloads (unnamed) by a content hash, equal for equal specs."""
    w = {"kind": "training", "global_batch_size": 8, "sequence_length": 128}
    a = Case(_renamed("my-model"), "tiny-2x4-a100", w)
    b = Case({"name": "my-model"}, "tiny-2x4-a100", dict(w))
    assert a.key.startswith("my-model|tiny-2x4-a100|workload-")
    assert a.key == b.key
    assert Case("m", "c", {**w, "global_batch_size": 16}).key != Case("m", "c", w).key


def test_case_file_names_paths_and_inline(tmp_path: Path) -> None:
    """A case file mixes names, paths relative to the file, and inline specs."""
    (tmp_path / "specs").mkdir()
    model = (ROOT / "models" / "tiny-llama.yaml").read_text()
    (tmp_path / "specs" / "m.yaml").write_text(model)
    f = tmp_path / "cases.yaml"
    f.write_text(
        "- {model: tiny-gpt, cluster: h100x2-nvlink, workload: train-tiny}\n"
        "- {model: specs/m.yaml, cluster: h100x2-nvlink, workload: train-tiny}\n"
        "- model: {name: inline, num_layers: 2, hidden_size: 64, ffn_hidden_size: 256,\n"
        "          num_attention_heads: 2, num_kv_heads: 2, vocab_size: 128, mlp: gelu}\n"
        "  cluster: h100x2-nvlink\n"
        "  workload: train-tiny\n"
    )
    cases = cases_from_file(f)
    assert [c.labels[0] for c in cases] == [
        "tiny-gpt",
        str(tmp_path / "specs" / "m.yaml"),
        "inline",
    ]
    resolved = resolve_cases(cases)
    assert all(isinstance(r, ResolvedCase) for r in resolved)
    assert [r.model.name for r in resolved if isinstance(r, ResolvedCase)][1] == "tiny-llama"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{}", "expected a non-empty list"),
        ("- {model: a, cluster: b}", r"\[0\]\.workload: required field is missing"),
        ("- {model: a, cluster: b, workload: c, seed: 1}", r"\[0\]\.seed: unknown field"),
        (
            "- {model: a, cluster: b, workload: c}\n- {model: a, cluster: b, workload: c}",
            r"\[1\]: duplicate of .*\[0\]",
        ),
        ("- {model: 3, cluster: b, workload: c}", r"\[0\]\.model: expected a name"),
    ],
)
def test_case_file_errors_name_the_entry(tmp_path: Path, text: str, match: str) -> None:
    """Malformed case files raise one SpecError naming the entry and field."""
    f = tmp_path / "cases.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=match):
        cases_from_file(f)


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------
# Bundled model file -> the size string that names its Table 1 row.
BUNDLED = {
    "gpt-1.7b": "1.7b",
    "gpt-3.6b": "3.6b",
    "gpt-7.5b": "7.5b",
    "gpt-18b": "18b",
    "gpt-39b": "39b",
    "gpt-76b": "76b",
    "gpt-145b": "145b",
    "gpt-310b": "310b",
    "gpt-530b": "530b",
    "gpt-1t": "1t",
}


def _shape(m: Any) -> tuple[int, int, int, int, int]:
    return (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.ffn_hidden_size)


@pytest.mark.parametrize("row", MEGATRON_2021_TABLE1, ids=lambda r: f"{r.params_b}B")
def test_gpt_family_reproduces_table1_rows(row: Any) -> None:
    """At each Table 1 size the gpt family gives exactly that row's layers, hidden size, heads."""
    m = gpt_model(f"{row.params_b}b")
    assert _shape(m) == (
        row.num_layers,
        row.hidden_size,
        row.num_attention_heads,
        row.num_attention_heads,
        4 * row.hidden_size,
    )
    # eq. 2 of the paper gives the published size to its rounding (0.1B): a sanity check that
    # the table was transcribed right.
    assert eq2_params(row.num_layers, row.hidden_size) / 1e9 == pytest.approx(
        row.params_b, rel=0.03
    )


@pytest.mark.parametrize(("name", "size"), sorted(BUNDLED.items()))
def test_gpt_family_matches_bundled_models(name: str, size: str) -> None:
    """The bundled models' names (gpt-39b, gpt-1t, ...) generate the bundled files' shapes."""
    bundled, generated = load_model(name), gpt_model(size)
    assert generated.name == name
    assert generated.model_dump(exclude={"name"}) == bundled.model_dump(exclude={"name"})


def test_table1_matches_published_runs() -> None:
    """MEGATRON_2021_TABLE1 equals the megatron21_t1_* rows of published-runs.json."""
    if not PUBLISHED.is_file():
        pytest.skip(f"{PUBLISHED} not present")
    data = json.loads(PUBLISHED.read_text())
    rows = [
        (c["model"]["params_b"], c["model"]["layers"], c["model"]["hidden"], c["model"]["heads"])
        for c in data["training_cases"]
        if c["id"].startswith("megatron21_t1_")
    ]
    table = [
        (r.params_b, r.num_layers, r.hidden_size, r.num_attention_heads)
        for r in MEGATRON_2021_TABLE1
    ]
    assert rows == table


@pytest.mark.parametrize(
    "size", ["350m", "1b", "3b", "7b", "13b", "30b", "70b", "175b", "405b", "2t"]
)
def test_gpt_family_interpolation_rule(size: str) -> None:
    """Off-table sizes: head dim 128, heads a multiple of 8, size within 5% of the request."""
    from solver.costmodel import total_params

    m = gpt_model(size)
    assert m.hidden_size == HEAD_DIM * m.num_attention_heads
    assert m.num_attention_heads % HEADS_MULTIPLE == 0
    assert m.hidden_size % 128 == 0
    # Rounding L to an integer moves the size by at most half a layer (12 h^2 / 2) of ~L layers.
    assert total_params(m, 2048) == pytest.approx(parse_size(size), rel=0.05)


def test_gpt_family_grows_with_size() -> None:
    """Hidden size and layers never shrink as the requested size grows (1b ... 1t)."""
    sizes = ["1b", "3b", "7b", "13b", "30b", "70b", "175b", "405b", "1t"]
    shapes = [(m.hidden_size, m.num_layers) for m in family_models("gpt", sizes)]
    assert all(a[0] <= b[0] for a, b in zip(shapes, shapes[1:], strict=False))
    assert all(a[1] <= b[1] for a, b in zip(shapes, shapes[1:], strict=False))


@pytest.mark.parametrize(
    ("family", "sizes", "match"),
    [
        ("gpt", ["7"], "must be a number with a unit"),
        ("gpt", ["1m"], "too small for the gpt family"),
        ("llama", ["7b"], "--family: unknown family 'llama'"),
        ("gpt", ["7b", "7B"], "repeats"),
        ("gpt", [], "at least one size"),
    ],
)
def test_family_errors(family: str, sizes: list[str], match: str) -> None:
    """Bad family names and sizes are one-line SpecErrors naming the option."""
    with pytest.raises(SpecError, match=match):
        family_models(family, sizes)


# --------------------------------------------------------------------------------------------
# results.jsonl: torn lines, duplicates, corruption
# --------------------------------------------------------------------------------------------
def test_torn_last_line_is_ignored_then_truncated(tmp_path: Path) -> None:
    """A killed writer's partial last line is ignored on read and cut before the next append."""
    path = tmp_path / RESULTS_FILE
    good = [json.dumps({"key": f"k{i}", "status": "OPTIMAL"}) for i in range(2)]
    torn = '{"key": "k2", "status": "OPT'
    path.write_text("\n".join(good) + "\n" + torn)
    stored = read_results(path)
    assert [r["key"] for r in stored.records] == ["k0", "k1"]
    assert stored.torn_bytes == len(torn)
    with ResultWriter(tmp_path) as w:
        assert w.torn_bytes == len(torn)
        w.append({"key": "k2", "status": "OPTIMAL"})
    assert _keys(tmp_path) == ["k0", "k1", "k2"]
    assert path.read_text().endswith("\n")


def test_duplicate_lines_count_once_and_corruption_is_an_error(tmp_path: Path) -> None:
    """A repeated key is counted once; a damaged line in the middle raises naming the line."""
    path = tmp_path / RESULTS_FILE
    path.write_text('{"key": "a"}\n{"key": "a"}\n{"key": "b"}\n')
    stored = read_results(path)
    assert [r["key"] for r in stored.records] == ["a", "b"] and stored.duplicates == 1
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(SpecError, match="line 2"):
        read_results(path)


def test_second_writer_on_same_directory_is_refused(tmp_path: Path) -> None:
    """Two sweeps appending to one directory would duplicate cases: the second is refused."""
    with ResultWriter(tmp_path), pytest.raises(SpecError, match="another sweep"):
        ResultWriter(tmp_path)


# --------------------------------------------------------------------------------------------
# sweep(): resume, failures, crashes (fake tasks)
# --------------------------------------------------------------------------------------------
def _fake_cases(n_models: int, extra: list[str] | None = None) -> list[Case]:
    models = [_renamed(f"m{i}") for i in range(n_models)] + [_renamed(x) for x in extra or []]
    return cartesian(models, ["tiny-2x4-a100"], ["train-tiny", "infer-chat-slo"])


def test_resume_skips_finished_and_never_duplicates(tmp_path: Path) -> None:
    """A resumed sweep runs only the unfinished cases; without resume a used directory is
    refused, and so is resuming with another case set (nothing in the directory changes)."""
    first = sweep(_fake_cases(3), out=tmp_path, workers=2, task=fake_task)
    assert (first.solved, first.resumed, first.statuses) == (6, 0, {"OPTIMAL": 6})
    results = tmp_path / RESULTS_FILE
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:4]))  # as if killed after four cases
    with pytest.raises(SpecError, match="--resume"):
        sweep(_fake_cases(3), out=tmp_path, task=fake_task)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for changed in (_fake_cases(2), _fake_cases(4)):
        with pytest.raises(SpecError, match="--resume: the cases differ"):
            sweep(changed, out=tmp_path, workers=2, resume=True, task=fake_task)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    second = sweep(_fake_cases(3), out=tmp_path, workers=2, resume=True, task=fake_task)
    assert (second.solved, second.resumed, second.total, second.remaining) == (2, 4, 6, 0)
    keys = _keys(tmp_path)
    assert len(keys) == len(set(keys)) == 6
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("key,model,cluster,workload")
    assert len(cases_from_file(tmp_path / "cases.json")) == 6


def test_failing_and_unloadable_cases_are_recorded(tmp_path: Path) -> None:
    """An exception in a case, or a spec that cannot load, is an ERROR record; the rest finish."""
    cases = _fake_cases(2, extra=["boom"]) + [
        Case("no-such-model-xyz", "tiny-2x4-a100", "train-tiny")
    ]
    summary = sweep(cases, out=tmp_path, workers=2, task=raising_task)
    records = {r["key"]: r for r in read_results(tmp_path / RESULTS_FILE).records}
    assert len(records) == 7 and summary.statuses == {"OPTIMAL": 4, "ERROR": 3}
    assert (
        records["boom|tiny-2x4-a100|train-tiny"]["message"] == "RuntimeError: boom went the planner"
    )
    missing = records["no-such-model-xyz|tiny-2x4-a100|train-tiny"]
    assert missing["status"] == "ERROR" and "no-such-model-xyz" in missing["message"]


def test_dead_worker_is_retried_alone_then_recorded(tmp_path: Path) -> None:
    """A case that kills its worker is tried MAX_ATTEMPTS times; neighbours still succeed."""
    cases = _fake_cases(3, extra=["crash"])
    summary = sweep(cases, out=tmp_path, workers=2, task=crashing_task)
    records = {r["key"]: r for r in read_results(tmp_path / RESULTS_FILE).records}
    assert summary.statuses == {"OPTIMAL": 6, "ERROR": 2}
    for key, rec in records.items():
        if key.startswith("crash|"):
            assert rec["status"] == "ERROR" and rec["attempts"] == MAX_ATTEMPTS
            assert "worker process died" in rec["message"]
        else:  # at most one retry: lost in flight beside the crash, then run alone
            assert rec["status"] == "OPTIMAL" and rec["attempts"] <= 2


def test_solve_case_records_exceptions_and_hard_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """solve_case turns a planner exception into ERROR and a case past its deadline into TIMEOUT."""
    import solver.planner

    (case,) = [r for r in resolve_cases(cartesian(["tiny-gpt"], ["h100x2-nvlink"], ["train-tiny"]))]
    assert isinstance(case, ResolvedCase)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(solver.planner, "plan", boom)
    rec = solve_case(case, SolveSettings(time_limit_s=1))
    assert (rec["status"], rec["message"]) == ("ERROR", "ZeroDivisionError: division by zero")

    def stuck(*args: Any, **kwargs: Any) -> Any:
        time.sleep(5)

    monkeypatch.setattr(solver.planner, "plan", stuck)
    t0 = time.perf_counter()
    rec = solve_case(case, SolveSettings(time_limit_s=1, hard_timeout_s=0.2))
    assert rec["status"] == "TIMEOUT" and "0.2 s" in rec["message"]
    assert time.perf_counter() - t0 < 2


def test_local_executor_divides_cores_among_processes() -> None:
    """CP-SAT gets cores // processes workers per case, at least 1, when not deterministic."""
    cores = available_cores()
    one = LocalExecutor(1).settings_for(SolveSettings(deterministic=False))
    many = LocalExecutor(cores * 2).settings_for(SolveSettings(deterministic=False))
    assert (one.num_workers, many.num_workers) == (cores, 1)


# --------------------------------------------------------------------------------------------
# Real solves: records, summary, CLI
# --------------------------------------------------------------------------------------------
TINY = ["-m", "tiny-gpt,tiny-llama", "-c", "h100x2-nvlink,tiny-2x4-a100", "-w", "train-tiny"]


def test_cli_sweep_json_summary_and_plot(tmp_path: Path) -> None:
    """`sweep --json` prints one document; records carry the plan; --summary re-reads it."""
    out = tmp_path / "out"
    res = runner.invoke(app, ["sweep", *TINY, "--out", str(out), "-t", "5", "-j", "2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["total"] == 4 and doc["remaining"] == 0 and doc["interrupted"] is False
    assert doc["statuses"] == {"OPTIMAL": 4}
    records = read_results(out / RESULTS_FILE).records
    for rec in records:
        assert rec["tokens_per_s"] > 0 and rec["num_gpus"] >= 1 and rec["gap"] == 0
        assert rec["plan"]["replica_groups"] and rec["objective"] == rec["tokens_per_s"]
    # Best per model x cluster: each pair has one case here, so the best is that case.
    assert len(doc["best"]) == 4
    assert {b["tokens_per_s"] for b in doc["best"]} == {r["tokens_per_s"] for r in records}

    plot = tmp_path / "heat.png"
    res = runner.invoke(app, ["sweep", "--summary", str(out), "--plot", str(plot), "--json"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["finished"] == again["total"] == 4 and plot.stat().st_size > 0
    res = runner.invoke(app, ["sweep", "--summary", str(out), "--plot", str(plot)])
    assert "already exists" in _one_line_error(res)


def test_best_rows_pick_most_tokens_per_kind() -> None:
    """Best = most tokens/s among planned cases of a (kind, model, cluster); none -> no plan."""
    base = {"model": "m", "cluster": "c", "kind": "training", "params_b": 1.0}
    recs = [
        {
            **base,
            "key": "1",
            "workload": "a",
            "status": "OPTIMAL",
            "tokens_per_s": 10.0,
            "num_gpus": 8,
        },
        {
            **base,
            "key": "2",
            "workload": "b",
            "status": "FEASIBLE",
            "tokens_per_s": 20.0,
            "num_gpus": 16,
        },
        {**base, "key": "3", "workload": "c", "status": "ERROR", "tokens_per_s": None},
        {**base, "key": "4", "kind": "inference", "workload": "d", "status": "INFEASIBLE"},
    ]
    rows = best_rows(recs)
    assert [(r.kind, r.planned, r.cases) for r in rows] == [("training", 2, 3), ("inference", 0, 1)]
    assert rows[0].best is not None and rows[0].best["workload"] == "b"
    assert rows[1].best is None


def _bad(*args: str) -> str:
    return _one_line_error(runner.invoke(app, ["sweep", *args]))


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    """Each kind of bad sweep input: exit 2, one 'error:' line naming the option or value."""
    out = str(tmp_path / "o")
    assert "no-such-model-xyz" in _bad(
        "-m", "no-such-model-xyz", "-c", "h100x2-nvlink", "-w", "train-tiny", "--out", out
    )
    assert "--executor" in _bad(*TINY, "--out", out, "--executor", "spark")
    assert "--time-limit" in _bad(*TINY, "--out", out, "-t", "0")
    assert "--workers" in _bad(*TINY, "--out", out, "-j", "0")
    assert "--address" in _bad(*TINY, "--out", out, "--address", "auto")
    assert "--out" in _bad(*TINY)
    assert "--sizes" in _bad(
        "--family", "gpt", "-c", "h100x2-nvlink", "-w", "train-tiny", "--out", out
    )
    assert "'7'" in _bad("--family", "gpt", "--sizes", "7", "-c", "a", "-w", "b", "--out", out)
    assert "no cases" in _bad("--out", out)
    assert "--summary" in _bad("--summary", str(tmp_path))
    assert "--plot-metric" in _bad(*TINY, "--out", out, "--plot-metric", "mfu")
    cases = tmp_path / "cases.yaml"
    cases.write_text("- {model: tiny-gpt, cluster: h100x2-nvlink}\n")
    assert "[0].workload" in _bad("--cases", str(cases), "--out", out)
    assert not (tmp_path / "o").exists()  # nothing was started
    used = tmp_path / "used"
    used.mkdir()
    (used / RESULTS_FILE).write_text('{"key": "x"}\n')
    assert "--resume" in _bad(*TINY, "--out", str(used))
    assert "cases.json not found" in _bad("--resume", "--out", str(tmp_path / "nowhere"))


def test_cli_dry_run_lists_generated_models() -> None:
    """--dry-run --json lists the cases, family models inline with their Table 1 shapes."""
    res = runner.invoke(
        app,
        [
            "sweep",
            "--family",
            "gpt",
            "--sizes",
            "1.7b,7b",
            "-c",
            "tiny-2x4-a100",
            "-w",
            "train-tiny",
            "--dry-run",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    cases = json.loads(res.stdout)["cases"]
    assert [c["key"] for c in cases] == [
        "gpt-1.7b|tiny-2x4-a100|train-tiny",
        "gpt-7b|tiny-2x4-a100|train-tiny",
    ]
    assert (cases[0]["model"]["num_layers"], cases[0]["model"]["hidden_size"]) == (24, 2304)


# --------------------------------------------------------------------------------------------
# kill -9 and Ctrl-C on a real `python -m solver sweep`
# --------------------------------------------------------------------------------------------
# 12 real cases of 0.05-0.5 s each (a third reach the 0.5 s time limit), about 3 s of CPU, so
# with 2 processes the sweep takes several seconds and can be stopped mid-way.
KILL_ARGS = [
    "-m", "tiny-gpt,tiny-llama,gpt-1.7b",
    "-c", "tiny-2x4-a100,h100x2-nvlink",
    "-w", "train-tiny,train-gpt-s2048",
    "-t", "0.5", "-j", "2",
]  # fmt: skip
KILL_TOTAL = 12


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "solver", "sweep", "--out", str(out), "--quiet", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches every worker
    )


def _lines(out: Path) -> int:
    try:
        return (out / RESULTS_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_for_lines(proc: subprocess.Popen[str], out: Path, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(out)
        if lines >= n:
            return lines
        if proc.poll() is not None:
            pytest.fail(
                f"sweep exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.02)
    pytest.fail("sweep wrote no results in time")


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL a sweep after >= 2 records (plus a torn line), resume: every case exactly once."""
    out = tmp_path / "out"
    proc = _start(out, *KILL_ARGS)
    at_kill = _wait_for_lines(proc, out, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_with = _lines(out)
    assert killed_with < KILL_TOTAL, "the sweep finished before the kill: nothing was tested"
    before = set(_keys(out))
    assert len(before) == killed_with >= at_kill
    with (out / RESULTS_FILE).open("a") as fh:  # a write cut short by the kill
        fh.write('{"key": "tiny-gpt|tiny-2x4-a100|train-tiny", "sta')

    resumed = _start(out, "--resume", "--json")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["resumed"] == killed_with and doc["solved"] == KILL_TOTAL - killed_with
    assert doc["torn_bytes"] > 0
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == KILL_TOTAL
    assert before <= set(keys)


def test_ctrl_c_stops_cleanly_keeping_finished_cases(tmp_path: Path) -> None:
    """SIGINT: exit 130, a one-line resume hint, finished records intact and parseable."""
    out = tmp_path / "out"
    proc = _start(out, *KILL_ARGS)
    _wait_for_lines(proc, out, 2)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    stored = read_results(out / RESULTS_FILE)
    assert stored.torn_bytes == 0 and 2 <= len(stored.records) < KILL_TOTAL
    assert stdout.startswith("interrupted: ")
