"""The long Hypothesis profile: the property and fuzz tests with many fresh random examples.

``make test`` runs the Hypothesis tests under the fast, derandomized ``ci`` profile
(``tests/conftest.py``: the same examples every run, so CI cannot fail by luck; the planner
property draws 40 instances).  This script runs the same tests under the ``long`` profile
registered here -- fresh random examples every run (``derandomize=False``), ``--examples`` of
them per test (default 500), no per-example deadline -- to hunt for what the fast profile
cannot see:

* ``tests/test_property.py``: random clusters, models and workloads through ``solver.plan``;
  every outcome a verified plan (OPTIMAL re-scored by the evaluator), a confirmed INFEASIBLE or
  a named INVALID_INPUT, never a traceback (example count via ``SHARDWISE_PROPERTY_EXAMPLES``,
  which its own profile reads);
* ``tests/test_specs.py``, ``tests/test_pipeline.py``: spec round trips and the pipeline
  simulation against its closed form;
* ``tests/test_hostile.py``: invalid scalars in every numeric field (this one pins its own
  example count, 60, and runs with fresh random values).

A failure prints Hypothesis's reproduction blob (``print_blob``); the summary goes to
``benchmarks/results/property_long.json`` with the Hypothesis seed, so a run can be repeated.

    python benchmarks/property_long.py                  # ~500 examples per test (tens of minutes)
    python benchmarks/property_long.py --examples 50    # a shorter hunt
    python benchmarks/property_long.py --seed 1234 -k pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "property_long.json"

#: The Hypothesis-bearing test files the long profile runs.
FILES = (
    "tests/test_property.py",
    "tests/test_specs.py",
    "tests/test_pipeline.py",
    "tests/test_hostile.py",
)

#: Default examples per test: 12x the planner property's CI count, 5x Hypothesis's default.
DEFAULT_EXAMPLES = 500


def register_long_profile(examples: int) -> None:
    """Register the ``long`` profile: fresh random examples, ``examples`` per test."""
    from hypothesis import HealthCheck, settings  # after pytest.main: its plugin rewrites it

    settings.register_profile(
        "long",
        max_examples=examples,
        derandomize=False,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class LongProfile:
    """A pytest plugin loading the ``long`` profile once the conftest has loaded ``ci``."""

    def __init__(self, examples: int) -> None:
        self.examples = examples
        self.outcomes: dict[str, int] = {}

    def pytest_configure(self, config: pytest.Config) -> None:
        from hypothesis import settings

        register_long_profile(self.examples)
        settings.load_profile("long")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from hypothesis import settings

        # The conftest loads "ci" when it is imported; make sure "long" won.
        active = settings.default
        assert active.max_examples == self.examples and not active.derandomize, active

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="examples per test")
    ap.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random)")
    ap.add_argument("-k", default=None, help="pytest -k expression to select tests")
    args = ap.parse_args()
    if args.examples < 1:
        ap.error(f"--examples: must be >= 1, got {args.examples}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    os.environ["SHARDWISE_PROPERTY_EXAMPLES"] = str(args.examples)
    plugin = LongProfile(args.examples)
    argv = [*FILES, "-q", "-p", "no:cacheprovider", f"--hypothesis-seed={seed}"]
    if args.k:
        argv += ["-k", args.k]
    os.chdir(ROOT)
    start = time.perf_counter()
    code = int(pytest.main(argv, plugins=[plugin]))
    record: dict[str, Any] = {
        "profile": "long",
        "examples_per_test": args.examples,
        "hypothesis_seed": seed,
        "files": list(FILES),
        "select": args.k,
        "exit_code": code,
        "outcomes": plugin.outcomes,
        "wall_s": round(time.perf_counter() - start, 1),
        "versions": {
            "python": platform.python_version(),
            "hypothesis": version("hypothesis"),
            "ortools": version("ortools"),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(main())
