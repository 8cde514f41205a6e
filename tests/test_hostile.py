"""Hostile input (issue 18): the solver never lies and never crashes.

Each case feeds one hostile value -- a Boolean or a string where a number belongs, a number out
of its documented range (``solver.specs.RANGES``), NaN or infinity, a huge count, a bad seed,
worker count or time limit, an unsafe output file, a resumed sweep with other cases, a plan
for another cluster -- and expects bad input reported as bad input: :class:`solver.SpecError`
from the Python API, exit code 2 and one line ``error: ...`` from the CLI, naming the field (or
the option) and never a traceback.  Valid extremes at the ends of the ranges are accepted.

The documents start from ``tests/malformed_cases.VALID`` (shared with test_io_errors and
test_specs, which cover the structural malformations: missing fields, unknown keys, bad
YAML); nothing here solves a large instance, so the module runs in a few seconds.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malformed_cases import VALID
from typer.testing import CliRunner

import solver
from solver import SpecError
from solver.cli import app
from solver.commands.common import write_new_file
from solver.errors import MAX_SEED, MAX_WORKERS, check_solve_options
from solver.io import (
    check_plan_fits,
    load_cluster,
    load_model,
    load_plan,
    load_workload,
    output_target,
    write_text_atomic,
)
from solver.specs import MAX_GPUS, MAX_LAYERS, MIN_BANDWIDTH_GBPS, RANGES
from solver.sweep import Case, SolveSettings, sweep
from solver.sweep.cases import ResolvedCase
from solver.sweep.executors import blank_record
from solver.sweep.store import CASES_FILE, CSV_FILE, RESULTS_FILE

runner = CliRunner()
TINY = ["-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "train-tiny"]
LOADERS = {
    "model": load_model,
    "cluster": load_cluster,
    "training": load_workload,
    "inference": load_workload,
    "plan": load_plan,
}
#: A cluster whose first pool has an inline GPU with every optional numeric field set.
INLINE_GPU: dict[str, Any] = {
    "name": "my-gpu",
    "memory_GB": 80,
    "bf16_tflops": 900,
    "fp16_tflops": 900,
    "fp8_tflops": 1800,
    "memory_bandwidth_GBps": 3000,
    "gemm_efficiency": 0.8,
    "memory_efficiency": 0.8,
    "fp8_gemm_efficiency": 0.7,
    "gemm_realization": 0.9,
    "elementwise_traffic_factor": 2.0,
    "backward_elementwise_factor": 1.0,
    "kernel_launch_us": 40,
    "optimizer_efficiency": 0.5,
    "attention_efficiency": 0.7,
    "attention_backward_efficiency": 0.6,
    "grad_accumulation_bytes_per_param": 6,
    "gemm_table": [[1024, 1024, 1024, 500.0]],
}
DOCS: dict[str, dict[str, Any]] = {
    **VALID,
    "cluster-inline": {
        **VALID["cluster"],
        "pools": [{**VALID["cluster"]["pools"][0], "gpu": INLINE_GPU, "cost_per_gpu_hour": 2.5}],
        "fabric": [{"pools": ["a", "a"], "bandwidth_GBps": 25, "latency_us": 5}],
    },
}
LOADERS["cluster-inline"] = load_cluster


def _doc(kind: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``DOCS[kind]`` with the value at ``path`` replaced."""
    doc: dict[str, Any] = json.loads(json.dumps(DOCS[kind]))
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _where(path: tuple[Any, ...]) -> str:
    """``('pools', 0, 'nic', 'count')`` -> ``pools[0].nic.count`` (as SpecError names it)."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def _api_error(kind: str, path: tuple[Any, ...], value: Any) -> str:
    with pytest.raises(SpecError) as info:
        LOADERS[kind](_doc(kind, path, value))
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert _where(path) in msg, (path, msg)
    return msg


def _cli_error(args: list[str], *needles: str) -> str:
    """Run the CLI: exit 2, exactly one stderr line 'error: ...' containing every needle."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------------------------
# 1. Strict types: Booleans are not counts, strings are not numbers or Booleans
# --------------------------------------------------------------------------------------------
TYPE_CASES: list[tuple[str, tuple[Any, ...], Any, str]] = [
    # (document, path, hostile value, message part)
    ("model", ("num_layers",), True, "must be an integer, got true"),
    ("model", ("num_layers",), False, "must be an integer, got false"),
    ("model", ("hidden_size",), "4096", "must be an integer, got '4096'"),
    ("model", ("num_attention_heads",), True, "must be an integer, got true"),
    ("model", ("vocab_size",), "32k", "must be an integer"),
    ("model", ("tied_embeddings",), "yes", "must be true or false, got 'yes'"),
    ("model", ("tied_embeddings",), 1, "must be true or false, got 1"),
    ("model", ("tied_embeddings",), "true", "must be true or false, got 'true'"),
    ("cluster", ("pools", 0, "nodes"), True, "must be an integer, got true"),
    ("cluster", ("pools", 0, "gpus_per_node"), "8", "must be an integer, got '8'"),
    ("cluster", ("pools", 0, "nic", "count"), True, "must be an integer, got true"),
    ("cluster", ("pools", 0, "nvlink_domain_nodes"), True, "must be an integer"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), True, "must be a number, got true"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), "50", "must be a number, got '50'"),
    ("cluster", ("pools", 0, "intra_node", "latency_us"), False, "must be a number"),
    ("cluster-inline", ("pools", 0, "gpu", "memory_GB"), True, "must be a number, got true"),
    ("cluster-inline", ("pools", 0, "gpu", "supports_bf16"), "no", "must be true or false"),
    ("cluster-inline", ("pools", 0, "gpu", "gemm_table", 0, 0), True, "must be an integer"),
    ("training", ("global_batch_size",), True, "must be an integer, got true"),
    ("training", ("sequence_length",), "2048", "must be an integer, got '2048'"),
    ("training", ("zero_stage",), True, "must be an integer, got true"),
    ("training", ("micro_batch_sizes", 1), True, "must be an integer, got true"),
    ("training", ("overlap_grad_reduce",), "yes", "must be true or false, got 'yes'"),
    ("training", ("sequence_parallel",), ["yes"], "must be true or false, got 'yes'"),
    ("training", ("dropout",), True, "must be a number, got true"),
    ("inference", ("prompt_tokens",), True, "must be an integer, got true"),
    ("inference", ("batch_size", 0), True, "must be an integer, got true"),
    ("inference", ("ttft_ms",), "2s", "must be a number, got '2s'"),
    ("plan", ("replica_groups", 0, "stages", 0, "tp"), True, "must be an integer, got true"),
    ("plan", ("replica_groups", 0, "count"), True, "must be an integer, got true"),
    ("plan", ("replica_groups", 0, "sequence_parallel"), 1, "must be true or false, got 1"),
    ("plan", ("replica_groups", 0, "stages", 0, "devices", 0, 0, 1), True, "must be an integer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"), TYPE_CASES, ids=[f"{c[0]}-{_where(c[1])}-{c[2]!r}" for c in TYPE_CASES]
)  # fmt: skip
def test_wrong_type_is_refused_naming_the_field(
    kind: str, path: tuple[Any, ...], value: Any, expected: str
) -> None:
    """A Boolean or string in a number field (or a non-Boolean in a flag) is a one-line
    SpecError naming the field and the value as written; it is never coerced."""
    msg = _api_error(kind, path, value)
    assert expected in msg, msg
    if kind == "training" and path == ("sequence_parallel",):
        return
    assert f"{_where(path)}: {expected.split(',')[0]}" in msg, msg


def test_sequence_parallel_list_names_the_item() -> None:
    """A non-Boolean item of an option list is named by its index."""
    assert "sequence_parallel[0]: must be true or false" in _api_error(
        "training", ("sequence_parallel",), ["yes"]
    )


def test_floats_still_accept_integers_and_counts_integral_floats() -> None:
    """Natural YAML/JSON numbers still load: 450 for a bandwidth, 4.0 for a count."""
    c = load_cluster(_doc("cluster", ("pools", 0, "nic", "bandwidth_GBps"), 400))
    assert c.pools[0].nic.bandwidth_GBps == 400.0
    assert load_model(_doc("model", ("num_layers",), 4.0)).num_layers == 4
    assert load_model(_doc("model", ("tied_embeddings",), False)).tied_embeddings is False


# --------------------------------------------------------------------------------------------
# 2. Ranges: every number has one; NaN, infinity and huge values are refused
# --------------------------------------------------------------------------------------------
RANGE_CASES: list[tuple[str, tuple[Any, ...], Any, str]] = [
    ("model", ("num_layers",), MAX_LAYERS + 1, f"must be <= {MAX_LAYERS}"),
    ("model", ("num_layers",), 10**30, "must be <= 1024"),
    ("model", ("num_layers",), 1e308, "must be an integer"),
    ("model", ("hidden_size",), 2**21, "must be <= 262144"),
    ("model", ("ffn_hidden_size",), 2**23, "must be <= 1048576"),
    ("model", ("num_attention_heads",), 2**17, "must be <= 16384"),
    ("model", ("vocab_size",), 2**25, "must be <= 4194304"),
    ("model", ("vocab_size",), -1, "must be >= 0"),
    ("model", ("hidden_size",), float("nan"), "finite"),
    ("model", ("hidden_size",), float("inf"), "finite"),
    ("cluster", ("pools", 0, "nodes"), 10**9, "must be <= 1048576, got 1000000000"),
    ("cluster", ("pools", 0, "gpus_per_node"), 4096, "must be <= 1024"),
    ("cluster", ("pools", 0, "nic", "count"), 1000, "must be <= 64"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), 1e-300, "must be >= 0.1, got 1e-300"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), 1e-12, "must be >= 0.1, got 1e-12"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), 1e300, "must be <= 100000"),
    ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), float("nan"), "finite"),
    ("cluster", ("pools", 0, "intra_node", "bandwidth_GBps"), 0, "must be >= 0.1, got 0"),
    ("cluster", ("pools", 0, "intra_node", "bandwidth_GBps"), float("-inf"), "finite"),
    ("cluster", ("pools", 0, "intra_node", "latency_us"), -1, "must be >= 0"),
    ("cluster", ("pools", 0, "intra_node", "latency_us"), 1e9, "must be <= 100000"),
    ("cluster", ("pools", 0, "cost_per_gpu_hour"), 1e9, "must be <= 10000"),
    ("cluster-inline", ("pools", 0, "gpu", "memory_GB"), 1e-300, "must be >= 0.1"),
    ("cluster-inline", ("pools", 0, "gpu", "memory_GB"), 1e300, "must be <= 100000"),
    ("cluster-inline", ("pools", 0, "gpu", "bf16_tflops"), 1e-300, "must be >= 1"),
    ("cluster-inline", ("pools", 0, "gpu", "fp8_tflops"), float("inf"), "finite"),
    ("cluster-inline", ("pools", 0, "gpu", "memory_bandwidth_GBps"), 1e-9, "must be >= 10"),
    ("cluster-inline", ("pools", 0, "gpu", "gemm_efficiency"), 1.5, "must be <= 1"),
    ("cluster-inline", ("pools", 0, "gpu", "kernel_launch_us"), 1e12, "must be <= 100000"),
    ("cluster-inline", ("pools", 0, "gpu", "elementwise_traffic_factor"), 1e6, "must be <= 100"),
    ("cluster-inline", ("pools", 0, "gpu", "grad_accumulation_bytes_per_param"), 1e6, "<= 64"),
    ("cluster-inline", ("pools", 0, "gpu", "gemm_table", 0, 3), 1e-300, "must be >= 0.0001"),
    ("cluster-inline", ("fabric", 0, "bandwidth_GBps"), 1e-300, "must be >= 0.1"),
    ("training", ("global_batch_size",), 2**40, "must be <= 16777216"),
    ("training", ("sequence_length",), 2**40, "must be <= 16777216"),
    ("training", ("global_batch_size",), 2**20, "x sequence_length must be <= 1,073,741,824"),
    ("training", ("micro_batch_sizes", 0), 0, "must be > 0, got 0"),
    ("training", ("zero_stage",), 4, "must be 0, 1, 2 or 3, got 4"),
    ("training", ("dropout",), float("nan"), "finite"),
    ("inference", ("output_tokens",), 2**40, "must be <= 16777216"),
    ("inference", ("batch_size", 1), 2**40, "must be <= 16777216"),
    ("inference", ("tpot_ms",), 0, "must be > 0, got 0"),
    ("inference", ("ttft_ms",), 1e300, "must be <= 10000000"),
    ("plan", ("replica_groups", 0, "count"), 10**12, "must be <= 1048576"),
    ("plan", ("replica_groups", 0, "stages", 0, "tp"), 10**12, "must be <= 1048576"),
    ("plan", ("replica_groups", 0, "stages", 0, "last_layer"), 10**9, "must be < 1024"),
    ("plan", ("replica_groups", 0, "num_micro_batches"), 2**40, "must be <= 16777216"),
    ("plan", ("replica_groups", 0, "stages", 0, "devices", 0, 0, 1), 10**6, "must be < 1024"),
    ("plan", ("replica_groups", 0, "zero_stage"), 7, "must be <= 3"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"), RANGE_CASES, ids=[f"{c[0]}-{_where(c[1])}-{c[2]!r}" for c in RANGE_CASES]
)  # fmt: skip
def test_out_of_range_is_refused_naming_field_and_value(
    kind: str, path: tuple[Any, ...], value: Any, expected: str
) -> None:
    """A number outside its documented range (or NaN/inf) is a one-line SpecError naming the
    field and saying the bound."""
    msg = _api_error(kind, path, value)
    assert expected in msg, msg


def test_a_billion_node_cluster_is_refused_before_anything_is_built() -> None:
    """1e9 nodes (and a cluster over MAX_GPUS in total) stop at the schema, not in an OOM."""
    msg = _api_error("cluster", ("pools", 0, "nodes"), 10**9)
    assert "pools[0].nodes: must be <= 1048576" in msg
    doc = _doc("cluster", ("pools", 0, "nodes"), 2**17)
    doc["pools"][0]["gpus_per_node"] = 16  # each pool within its caps, the sum above
    with pytest.raises(SpecError, match=f"pools: a cluster has at most {MAX_GPUS:,} GPUs"):
        load_cluster(doc)


def test_cli_refuses_a_billion_nodes_and_a_vanishing_bandwidth(tmp_path: Path) -> None:
    """Through the CLI the same files exit 2 with one line naming the field and value."""
    for path, value, needle in (
        (("pools", 0, "nodes"), 10**9, "pools[0].nodes: must be <= 1048576, got 1000000000"),
        (("pools", 0, "nic", "bandwidth_GBps"), 1e-300, "nic.bandwidth_GBps: must be >= 0.1"),
    ):
        f = tmp_path / "c.yaml"
        f.write_text(yaml.safe_dump(_doc("cluster", path, value)))
        _cli_error(["plan", "-m", "tiny-gpt", "-c", str(f), "-w", "train-tiny"], needle)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("model", ("num_layers",), MAX_LAYERS),
        ("model", ("vocab_size",), 0),
        ("cluster", ("pools", 0, "nic", "bandwidth_GBps"), MIN_BANDWIDTH_GBPS),
        ("cluster", ("pools", 0, "intra_node", "latency_us"), 0),
        ("cluster-inline", ("pools", 0, "gpu", "memory_GB"), 100_000),
        ("training", ("global_batch_size",), 2**19),  # x 2048 = 2^30 tokens per step
        ("inference", ("ttft_ms",), 1e7),
    ],
)
def test_the_ends_of_each_range_are_valid(kind: str, path: tuple[Any, ...], value: Any) -> None:
    """The documented bounds themselves load (the ranges are inclusive where they say so)."""
    LOADERS[kind](_doc(kind, path, value))


def _num(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    return f"{int(x):,}" if x.is_integer() and abs(x) < 1e9 else f"{x:g}"


def test_ranges_are_documented_in_the_readme() -> None:
    """Every RANGES entry is a row of README's input-range table with the same bounds."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for field, (low, high) in RANGES.items():
        assert f"| {field} | {_num(low)} | {_num(high)} |" in readme, field


# --------------------------------------------------------------------------------------------
# 3. Property: any invalid scalar in any numeric field is a SpecError naming that field
# --------------------------------------------------------------------------------------------
def _numeric_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _numeric_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _numeric_paths(v, (*prefix, i))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        out.append(prefix)
    return out


NUMERIC = sorted(
    ((kind, path) for kind, doc in DOCS.items() for path in _numeric_paths(doc)),
    key=lambda kp: (kp[0], _where(kp[1])),
)
#: Invalid in every numeric field: each has a lower bound >= 0 and an upper bound <= 1e12.
INVALID_SCALARS = st.one_of(
    st.booleans(),
    st.sampled_from(["1", "0.5", "", "lots", "1e3", "true"]),
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1e300, 1e300, 10**40, -(10**40)]),
    st.floats(min_value=1e13, max_value=1e308),
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-1),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(NUMERIC), value=INVALID_SCALARS)
def test_any_invalid_scalar_in_any_numeric_field_names_that_field(
    field: tuple[str, tuple[Any, ...]], value: Any
) -> None:
    """Random invalid scalars into random numeric spec fields: always a one-line SpecError
    whose message names that very field, never another exception."""
    kind, path = field
    _api_error(kind, path, value)


def test_property_covers_every_kind_of_document() -> None:
    """The property draws from numeric fields of every document kind (50+ fields)."""
    assert {k for k, _ in NUMERIC} == set(DOCS) and len(NUMERIC) >= 50


# --------------------------------------------------------------------------------------------
# 4. Seeds, workers, time limits: Python API and CLI
# --------------------------------------------------------------------------------------------
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    ("time_limit_s", -1, "time_limit_s: must be a finite number of seconds"),
    ("time_limit_s", 0, "time_limit_s: must be a finite number"),
    ("time_limit_s", math.nan, "got nan"),
    ("time_limit_s", math.inf, "got inf"),
    ("time_limit_s", 1e300, "<= 1,000,000"),
    ("time_limit_s", "10", "time_limit_s: must be a number of seconds, got '10'"),
    ("time_limit_s", True, "time_limit_s: must be a number of seconds, got true"),
    ("seed", -1, "seed: must be an integer from 0 to 2,147,483,647, got -1"),
    ("seed", 2**31, "got 2147483648"),
    ("seed", 2**64, "seed: must be an integer from 0"),
    ("seed", 1.5, "seed: must be an integer, got 1.5"),
    ("seed", True, "seed: must be an integer, got true"),
    ("num_workers", 0, "num_workers: must be an integer from 1 to 1,024, got 0"),
    ("num_workers", 2**40, "got 1099511627776"),
    ("num_workers", MAX_WORKERS + 1, "num_workers: must be an integer from 1 to 1,024"),
    ("num_workers", 2.0, "num_workers: must be an integer, got 2.0"),
    ("num_workers", False, "num_workers: must be an integer, got false"),
]


@pytest.mark.parametrize(("arg", "value", "expected"), BAD_OPTIONS)
def test_plan_api_refuses_bad_solver_options(arg: str, value: Any, expected: str) -> None:
    """solver.plan(time_limit_s=/seed=/num_workers=) out of range: SpecError naming the
    argument, raised before anything is solved (no OR-Tools traceback, no silent OPTIMAL)."""
    with pytest.raises(SpecError) as info:
        solver.plan("tiny-gpt", "tiny-2x4-a100", "train-tiny", **{arg: value})
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_solver_options_at_their_limits_are_accepted() -> None:
    """The largest seed and worker count and a tiny positive time limit are fine."""
    check_solve_options(time_limit_s=1e-3, seed=MAX_SEED, num_workers=MAX_WORKERS)
    check_solve_options(time_limit_s=None, seed=None, num_workers=None)


@pytest.mark.parametrize(
    "api",
    [
        lambda: solver.sweep([("tiny-gpt", "tiny-2x4-a100", "train-tiny")], out="x", seed=2**31),
        lambda: solver.sweep([("tiny-gpt", "tiny-2x4-a100", "train-tiny")], out="x", workers=2**40),
        lambda: solver.sweep(
            [("tiny-gpt", "tiny-2x4-a100", "train-tiny")], out="x", time_limit_s=math.nan
        ),
    ],
    ids=["seed", "workers", "time-limit"],
)
def test_sweep_api_refuses_bad_solver_options(api: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """sweep() checks the same options up front: no case turns into an ERROR record."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="--(seed|workers|time-limit): must be"):
        api()
    assert not (tmp_path / "x").exists()


def test_evaluate_api_refuses_what_is_not_a_spec() -> None:
    """The evaluator's entry point names an argument that is not a loaded spec."""
    from solver.evaluate import evaluate

    m, c = load_model(VALID["model"]), load_cluster(VALID["cluster"])
    w, p = load_workload(VALID["training"]), load_plan(VALID["plan"])
    with pytest.raises(SpecError, match="plan: expected a Plan"):
        evaluate(m, c, w, VALID["plan"])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="workload: expected a TrainingWorkload or"):
        evaluate(m, c, "train-tiny", p)  # type: ignore[arg-type]


CLI_OPTIONS = [
    ("--seed", "2147483648", "--seed: must be an integer from 0 to 2,147,483,647"),
    ("--seed", "-1", "--seed: must be an integer from 0"),
    ("--workers", "1099511627776", "--workers: must be an integer from 1 to 1,024"),
    ("--workers", "0", "--workers: must be an integer from 1"),
    ("--time-limit", "nan", "--time-limit: must be a finite number of seconds"),
    ("--time-limit", "inf", "--time-limit: must be a finite"),
    ("--time-limit", "-1", "--time-limit: must be a finite"),
]


@pytest.mark.parametrize("command", ["plan", "explain", "sweep"])
@pytest.mark.parametrize(("option", "value", "expected"), CLI_OPTIONS)
def test_cli_refuses_bad_solver_options(
    command: str, option: str, value: str, expected: str, tmp_path: Path
) -> None:
    """plan/explain/sweep: an out-of-range --seed/--workers/--time-limit exits 2 with one line
    naming the option, before any solve (a sweep does not record every case as ERROR)."""
    extra = ["--out", str(tmp_path / "o")] if command == "sweep" else []
    _cli_error([command, *TINY, *extra, option, value], expected)
    assert not (tmp_path / "o").exists()


def test_cli_non_numeric_option_is_a_usage_error() -> None:
    """A --seed that is not a number at all is click's usage error: exit 2, no traceback."""
    res = runner.invoke(app, ["plan", *TINY, "--seed", "true"])
    assert res.exit_code == 2 and "--seed" in res.stderr and "Traceback" not in res.output


# --------------------------------------------------------------------------------------------
# 5. Files: temporary file + rename, links followed, special files refused, modes kept
# --------------------------------------------------------------------------------------------
@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _special(tmp_path: Path, what: str) -> Path:
    """A path that is not a regular file: a FIFO, a directory, a device, a link to a FIFO,
    a link loop, or a name in a folder that does not exist."""
    if what == "fifo":
        p = tmp_path / "pipe"
        os.mkfifo(p)
    elif what == "directory":
        p = tmp_path / "dir"
        p.mkdir()
    elif what == "device":
        p = Path("/dev/null")
    elif what == "link-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        p = tmp_path / "link"
        p.symlink_to(tmp_path / "pipe")
    elif what == "link-loop":
        p = tmp_path / "loop"
        p.symlink_to(tmp_path / "loop")
    else:
        p = tmp_path / "missing" / "x.json"
    return p


SPECIAL = {
    "fifo": "is a named pipe (FIFO)",
    "directory": "is a directory",
    "device": "is a character device",
    "link-to-fifo": "is a named pipe (FIFO) (through the link",
    "link-loop": "a loop",
    "missing-dir": "does not exist",
}


@pytest.mark.parametrize("what", list(SPECIAL))
@pytest.mark.parametrize("force", [False, True])
def test_unsafe_targets_are_refused_even_with_force(what: str, force: bool, tmp_path: Path) -> None:
    """write_new_file refuses FIFOs, devices, directories, link loops and missing folders
    (with or without --force), naming the path; nothing is replaced or blocked on."""
    p = _special(tmp_path, what)
    with pytest.raises(SpecError) as info:
        write_new_file(p, "x\n", force=force)
    assert str(info.value).startswith(f"{p}: ") and SPECIAL[what] in str(info.value)
    if what in ("fifo", "link-to-fifo"):
        assert stat.S_ISFIFO(os.stat(p).st_mode)  # still a FIFO, not replaced


@pytest.mark.parametrize("what", ["fifo", "directory", "device", "link-to-fifo", "link-loop"])
@pytest.mark.parametrize("command", ["plan", "import-hf"])
def test_cli_refuses_unsafe_out_targets(what: str, command: str, tmp_path: Path) -> None:
    """plan --out and import-hf --out to a special file: exit 2, one line, before any work."""
    p = _special(tmp_path, what)
    if command == "plan":
        args = ["plan", *TINY, "--out", str(p), "--force"]
    else:
        config = tmp_path / "config.json"
        config.write_text(json.dumps(_LLAMA))
        args = ["import-hf", str(config), "--out", str(p), "--force"]
    _cli_error(args, str(p), SPECIAL[what])


_LLAMA: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "_name_or_path": "meta-llama/Meta-Llama-3-8B",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_honour_the_umask(mask: int, tmp_path: Path, umask: Any) -> None:
    """A new file gets 0666 less the umask (as open() gives), never a fixed 0600."""
    umask(mask)
    p = tmp_path / "new.json"
    write_new_file(p, "{}\n")
    assert _mode(p) == 0o666 & ~mask
    write_text_atomic(tmp_path / "other.csv", "a\n", newline="")
    assert _mode(tmp_path / "other.csv") == 0o666 & ~mask
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # no temp left


def test_force_keeps_an_existing_files_mode(tmp_path: Path, umask: Any) -> None:
    """--force replaces a regular file's content atomically and keeps its permissions."""
    p = tmp_path / "plan.json"
    p.write_text("old")
    p.chmod(0o640)
    write_new_file(p, "new\n", force=True)
    assert p.read_text() == "new\n" and _mode(p) == 0o640


def test_force_writes_through_a_symlink(tmp_path: Path, umask: Any) -> None:
    """A symbolic link stays a link: the file it points to gets the content (and keeps its
    mode); without --force the link counts as an existing file."""
    real = tmp_path / "real.yaml"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    with pytest.raises(SpecError, match="already exists; pass --force"):
        write_new_file(link, "new\n")
    write_new_file(link, "new\n", force=True)
    assert link.is_symlink() and real.read_text() == "new\n" and _mode(real) == 0o600
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "target.yaml")
    write_new_file(dangling, "x\n", force=True)  # creates the file the link names
    assert dangling.is_symlink() and (tmp_path / "target.yaml").read_text() == "x\n"
    assert output_target(link) == real


def test_cli_import_hf_writes_through_a_link_and_names_the_model_from_the_config(
    tmp_path: Path, umask: Any
) -> None:
    """import-hf --force through a link: the link's file gets the YAML; the model is named
    from the config's _name_or_path, not from the folder (a hub snapshot hash)."""
    folder = tmp_path / "snapshots" / "5f0b02c75b57c5855da9ae460ce51323ea669d8a"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(_LLAMA))
    real = tmp_path / "model.yaml"
    real.write_text("")
    real.chmod(0o644)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    res = runner.invoke(app, ["import-hf", str(folder / "config.json"), "-o", str(link), "-f"])
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and load_model(real).name == "meta-llama-3-8b"
    assert _mode(real) == 0o644


def test_cli_import_hf_refuses_unsupported_model_types(tmp_path: Path) -> None:
    """A Mamba config (even one claiming a Llama class) exits 2 naming model_type."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**_LLAMA, "model_type": "mamba"}))
    _cli_error(["import-hf", str(config)], "model_type: unsupported model type 'mamba'")
    config.write_text(json.dumps({**_LLAMA, "architectures": ["MambaForCausalLM"]}))
    _cli_error(["import-hf", str(config)], "architectures: unsupported architecture")


# --------------------------------------------------------------------------------------------
# 6. Sweeps: special files in --out, and --resume with another case set
# --------------------------------------------------------------------------------------------
def instant_task(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """An instant 'solve' (module level, so the sweep's worker processes can import it)."""
    rec = blank_record(case, settings)
    rec.update(status="OPTIMAL", objective=1.0, tokens_per_s=1.0)
    return rec


def _cases(*names: str) -> list[Case]:
    return [Case({**VALID["model"], "name": n}, "tiny-2x4-a100", "train-tiny") for n in names]


@pytest.mark.parametrize("name", [RESULTS_FILE, CSV_FILE, CASES_FILE])
@pytest.mark.parametrize("what", ["fifo", "directory"])
def test_sweep_refuses_special_files_in_out(name: str, what: str, tmp_path: Path) -> None:
    """A FIFO or a folder where a sweep file goes is refused up front (nothing blocks)."""
    out = tmp_path / "out"
    out.mkdir()
    if what == "fifo":
        os.mkfifo(out / name)
    else:
        (out / name).mkdir()
    with pytest.raises(SpecError, match=f"{name}: is a"):
        sweep(_cases("a"), out=out, task=instant_task, workers=1)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-case sweep (instant tasks) written under umask 022."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    old = os.umask(0o022)
    try:
        sweep(_cases("a", "b"), out=out, task=instant_task, workers=1)
    finally:
        os.umask(old)
    return out


def test_sweep_files_honour_the_umask(finished_sweep: Path) -> None:
    """results.jsonl, results.csv and cases.json are 0644 under umask 022, not 0600."""
    for name in (RESULTS_FILE, CSV_FILE, CASES_FILE):
        assert _mode(finished_sweep / name) == 0o644, name


@pytest.mark.parametrize(
    "cases", [("a",), ("a", "b", "c"), ("a", "c")], ids=["fewer", "more", "other"]
)
def test_resume_with_another_case_set_is_refused_and_changes_nothing(
    cases: tuple[str, ...], finished_sweep: Path
) -> None:
    """--resume with a changed case set: SpecError naming --resume; every file untouched."""
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished_sweep.iterdir()}
    with pytest.raises(SpecError, match="--resume: the cases differ"):
        sweep(_cases(*cases), out=finished_sweep, resume=True, task=instant_task, workers=1)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished_sweep.iterdir()}
    assert after == before


def test_cli_resume_with_other_options_exits_2(finished_sweep: Path) -> None:
    """The CLI says the same: exit 2, one line naming --resume."""
    _cli_error(["sweep", *TINY, "--out", str(finished_sweep), "--resume"], "--resume")


def test_resume_with_the_same_cases_still_works(finished_sweep: Path) -> None:
    """The same case set (any order) resumes: nothing left to solve."""
    s = sweep(_cases("b", "a"), out=finished_sweep, resume=True, task=instant_task, workers=1)
    assert (s.resumed, s.solved, s.remaining) == (2, 0, 0)


# --------------------------------------------------------------------------------------------
# 7. explain --plan: a plan for another cluster or workload
# --------------------------------------------------------------------------------------------
_PLAN_EDITS: list[tuple[str, tuple[Any, ...], Any, str]] = [
    ("unknown-pool", ("replica_groups", 0, "stages", 0, "pool"), "zzz",
     "replica_groups[0].stages[0].pool: no pool 'zzz' in cluster c"),
    ("wrong-kind", ("kind",), "inference", "kind: the plan is for inference"),
    ("no-device-lists", ("replica_groups", 0, "stages", 0, "devices"), [],
     "replica_groups[0].stages[0].devices: one device list per replica (count=2), got 0"),
    ("empty-device-list", ("replica_groups", 0, "stages", 0, "devices"), [[], []],
     "replica_groups[0].stages[0].devices[0]: 1 devices (tp=1), got 0"),
    ("node-out-of-range", ("replica_groups", 0, "stages", 0, "devices", 0, 0, 0), "a-9",
     "replica_groups[0].stages[0].devices[0][0]: no such GPU in pool a"),
    ("node-of-another-pool", ("replica_groups", 0, "stages", 0, "devices", 0, 0, 0), "b-0",
     "got ['b-0', 0]"),
    ("node-without-index", ("replica_groups", 0, "stages", 0, "devices", 0, 0, 0), "a",
     "no such GPU in pool a"),
    ("gpu-out-of-range", ("replica_groups", 0, "stages", 0, "devices", 1, 0, 1), 7,
     "devices[1][0]: no such GPU in pool a (nodes a-0..a-1, GPUs 0..3), got ['a-0', 7]"),
]  # fmt: skip


@pytest.fixture(scope="module")
def spec_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """VALID's model, cluster and training workload as YAML files."""
    d = tmp_path_factory.mktemp("specs")
    out = {}
    for kind in ("model", "cluster", "training"):
        out[kind] = d / f"{kind}.yaml"
        out[kind].write_text(yaml.safe_dump(VALID[kind]))
    return out


@pytest.mark.parametrize(
    ("name", "path", "value", "expected"), _PLAN_EDITS, ids=[e[0] for e in _PLAN_EDITS]
)
def test_explain_plan_for_another_cluster_is_one_line_exit_2(
    name: str, path: tuple[Any, ...], value: Any, expected: str,
    spec_files: dict[str, Path], tmp_path: Path,
) -> None:  # fmt: skip
    """explain --plan with an unknown pool, missing/foreign devices or the wrong kind: exit 2
    and one line naming the field (was a KeyError or 'max() arg is an empty sequence')."""
    doc = json.loads(json.dumps(VALID["plan"]))
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    args = ["explain", "-m", str(spec_files["model"]), "-c", str(spec_files["cluster"]),
            "-w", str(spec_files["training"]), "--plan", str(plan), "--no-alternatives"]  # fmt: skip
    _cli_error(args, f"{plan}: ", expected)
    with pytest.raises(SpecError) as info:
        check_plan_fits(load_plan(doc), load_cluster(VALID["cluster"]), "training")
    assert str(info.value).startswith("plan: ") and expected in str(info.value)


def test_a_fitting_plan_passes_the_structural_check() -> None:
    """The valid plan fits the valid cluster (the check refuses only real mismatches)."""
    check_plan_fits(load_plan(VALID["plan"]), load_cluster(VALID["cluster"]), "training")
