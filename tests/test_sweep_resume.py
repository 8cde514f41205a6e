"""``sweep --resume`` refuses other solve options than the sweep's (issue 18, item 6).

Resuming with another time limit, seed, search mode, CP-SAT worker count, hard timeout or
baseline setting would mix two sweeps' results in one directory.  The sweep records its solve
options in ``settings.json``; a resume that changes one is refused with one line naming
``--resume`` and the option (old -> new), and leaves every file of the directory as it was.  A
resume that gives no option reuses the recorded ones.  Fake tasks (``tests/test_sweep.py``)
keep this fast: no CP-SAT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_sweep import _fake_cases, _one_line_error, fake_task
from typer.testing import CliRunner

from solver.cli import app
from solver.errors import SpecError
from solver.sweep import sweep
from solver.sweep.runner import saved_settings
from solver.sweep.store import RESULTS_FILE, SETTINGS_FILE

runner = CliRunner()


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".sweep.lock"}


def _half_done(out: Path, **options: Any) -> None:
    """A sweep of 6 fake cases with ``options``, cut to its first 3 records (as if killed)."""
    sweep(_fake_cases(3), out=out, workers=2, task=fake_task, **options)
    results = out / RESULTS_FILE
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:3]))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"time_limit_s": 5.0}, "--time-limit 2 -> 5"),
        ({"seed": 7}, "--seed 1 -> 7"),
        ({"deterministic": False}, "--deterministic/--parallel-search true -> false"),
        ({"hard_timeout_s": 60.0}, "hard_timeout_s default -> 60"),
        ({"compare_baseline": True}, "compare_baseline false -> true"),
    ],
)
def test_changed_solve_option_is_refused_and_nothing_changes(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    _half_done(tmp_path, time_limit_s=2.0, seed=1)
    before = _snapshot(tmp_path)
    options: dict[str, Any] = {"time_limit_s": 2.0, "seed": 1, **change}
    with pytest.raises(SpecError) as err:
        sweep(_fake_cases(3), out=tmp_path, workers=2, resume=True, task=fake_task, **options)
    message = str(err.value)
    assert message.startswith("--resume: the solve options differ") and named in message
    assert "\n" not in message
    assert _snapshot(tmp_path) == before


def test_parallel_search_worker_count_is_a_solve_option(tmp_path: Path) -> None:
    """Without --deterministic CP-SAT's workers per case (cores / processes) change results:
    a resume with another count is refused; with it they do not, and any count resumes."""
    _half_done(tmp_path, deterministic=False)
    saved = saved_settings(tmp_path)
    assert saved["deterministic"] is False and isinstance(saved["num_workers"], int)
    before = _snapshot(tmp_path)
    with pytest.raises(SpecError, match=r"--workers \(CP-SAT workers per case"):
        sweep(_fake_cases(3), out=tmp_path, workers=1, resume=True, task=fake_task,
              deterministic=False)  # fmt: skip
    assert _snapshot(tmp_path) == before


def test_same_or_no_options_resume(tmp_path: Path) -> None:
    """The same options, or none at all, finish the sweep with the recorded options."""
    _half_done(tmp_path, time_limit_s=2.0, seed=1)
    done = sweep(_fake_cases(3), out=tmp_path, workers=1, resume=True, task=fake_task)
    assert (done.resumed, done.solved, done.remaining) == (3, 3, 0)
    records = [json.loads(x) for x in (tmp_path / RESULTS_FILE).read_text().splitlines()]
    assert {(r["time_limit_s"], r["seed"]) for r in records} == {(2.0, 1)}
    settings = json.loads((tmp_path / SETTINGS_FILE).read_text())
    assert (settings["time_limit_s"], settings["seed"], settings["deterministic"]) == (2.0, 1, True)


def test_directory_without_settings_file_is_checked_against_its_records(tmp_path: Path) -> None:
    """A sweep directory written before settings.json: its records' time limit and seed."""
    _half_done(tmp_path, time_limit_s=3.0, seed=4)
    (tmp_path / SETTINGS_FILE).unlink()
    assert saved_settings(tmp_path) == {"time_limit_s": 3.0, "seed": 4}
    before = _snapshot(tmp_path)
    with pytest.raises(SpecError, match="--seed 4 -> 0"):
        sweep(_fake_cases(3), out=tmp_path, resume=True, task=fake_task, time_limit_s=3.0, seed=0)
    assert _snapshot(tmp_path) == before


def test_cli_resume_with_changed_option_is_one_line_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "o"
    _half_done(out, time_limit_s=2.0)
    before = _snapshot(out)
    res = runner.invoke(app, ["sweep", "--resume", "--out", str(out), "-t", "4"])
    line = _one_line_error(res)
    assert "--resume" in line and "--time-limit 2 -> 4" in line
    res = runner.invoke(app, ["sweep", "--resume", "--out", str(out), "--parallel-search"])
    assert "--deterministic/--parallel-search true -> false" in _one_line_error(res)
    assert _snapshot(out) == before
