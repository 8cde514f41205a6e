"""``--quiet`` on the commands that solve or score: one line on stdout, no spinner on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["-m", "tiny-gpt", "-c", "tiny-2x4-a100"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solver", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["explain", *TINY, "-w", "train-tiny", "-q", "--time-limit", "2"], "bottleneck"),
        (["pareto", *TINY, "-w", "infer-chat-slo", "-q", "-n", "2", "--time-limit", "2"], "tpot_ms="),
    ],
)
def test_quiet_prints_only_short_lines(args: list[str], needle: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no spinner
    lines = proc.stdout.strip().splitlines()
    assert 1 <= len(lines) <= 6
    assert needle in proc.stdout or "compute-bound" in proc.stdout


def test_evaluate_quiet_one_line(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    solved = _run("plan", *TINY, "-w", "train-tiny", "--json", "--time-limit", "2")
    assert solved.returncode == 0, solved.stderr
    plan_file.write_text(json.dumps(json.loads(solved.stdout)["plan"]))
    proc = _run("evaluate", *TINY, "-w", "train-tiny", "--plan", str(plan_file), "-q")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    assert line.startswith("feasible") and "tokens/s=" in line
