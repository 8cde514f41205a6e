"""Statuses (issue 18): what each one promises, in the Python API, the JSON and the CLI's exit
codes; time-outs are UNKNOWN (never INFEASIBLE); INFEASIBLE needs a proof; the deadline
covers the optional work; the CP model's integers never overflow."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from builders import H100, cluster, gpt, gpu, pool, train
from ortools.sat.python import cp_model
from typer.testing import CliRunner

from solver import load_cluster, load_model, load_workload
from solver.cli import app
from solver.construction import Solved
from solver.cpsat import plan_training
from solver.cpsat import subproblems as subproblems_module
from solver.cpsat.advice import Relaxation
from solver.cpsat.deadline import GRACE_S, GRACE_SHARE, Deadline
from solver.cpsat.plan_inference import solve_inference
from solver.cpsat.subproblems import families, subproblems
from solver.cpsat.tables.family import MIN_BLOCK_UNITS, coarser_unit
from solver.cpsat.training.model import MAX_MAGNITUDE, TrainingModel, magnitude_of
from solver.planner import plan
from solver.result import EXIT_CODES, Result, Status
from solver.specs import TrainingWorkload

runner = CliRunner()

TINY = ("tiny-gpt", "tiny-hetero", "train-tiny")
PLAN_ARGS = ["plan", "-m", "tiny-gpt", "-c", "tiny-hetero", "-w", "train-tiny", "--workers", "1"]


def _specs(names: tuple[str, str, str]) -> tuple[Any, Any, Any]:
    return load_model(names[0]), load_cluster(names[1]), load_workload(names[2])


@pytest.fixture
def cp_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic time-out: no warm start, and every CP-SAT solve stops with no plan and
    no proof (cp_model.UNKNOWN), as a solve cut short by the limit does."""
    monkeypatch.setattr(plan_training, "warm_start", lambda *_a, **_k: None)

    def unknown(self: TrainingModel, *_a: Any, **_k: Any) -> tuple[Any, None, float]:
        self.work = 0.0
        return cp_model.UNKNOWN, None, math.inf

    monkeypatch.setattr(TrainingModel, "solve", unknown)


# ------------------------------------------------------------------------------------------
# UNKNOWN: a time-out before any plan or proof
# ------------------------------------------------------------------------------------------
def test_timeout_without_plan_is_unknown_in_the_api(cp_times_out: None) -> None:
    """CP-SAT stopping with no plan and no proof gives UNKNOWN with a time-limit note, never
    INFEASIBLE (the sub-problems are open, not closed)."""
    res = plan(*_specs(TINY), time_limit_s=0.5, num_workers=1)
    assert res.status == Status.UNKNOWN
    assert res.plan is None and res.objective is None
    assert "time limit" in res.message and "raise --time-limit" in res.message
    assert res.exit_code == 5


def test_timeout_without_plan_is_unknown_in_json_and_exit_code(cp_times_out: None) -> None:
    """The CLI prints the same status in its JSON and exits 5 for UNKNOWN."""
    res = runner.invoke(app, [*PLAN_ARGS, "-t", "0.5", "--json"])
    assert res.exit_code == EXIT_CODES[Status.UNKNOWN] == 5, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == doc["solver"]["status"] == "UNKNOWN"
    assert doc["plan"] is None


def test_expired_deadline_gives_unknown_for_inference() -> None:
    """Inference whose deadline expired before any replica shape was scored is UNKNOWN (the
    unscored shapes might fit), not INFEASIBLE."""
    m, c, w = _specs(("tiny-llama", "tiny-hetero", "infer-chat-slo"))
    res = solve_inference(m, c, w, 1.0, 1, 0, deadline=Deadline(0.0))
    assert res.status == Status.UNKNOWN and res.plan is None
    assert "time limit" in res.message


def test_expired_deadline_gives_unknown_for_training() -> None:
    """Training whose deadline expired before CP-SAT ran leaves every sub-problem open: UNKNOWN."""
    res = plan_training.solve_training(*_specs(TINY), 1.0, 1, 0, deadline=Deadline(0.0))
    assert res.status == Status.UNKNOWN and res.plan is None


@pytest.mark.parametrize(
    "names",
    [
        TINY,
        ("tiny-llama", "tiny-hetero", "infer-chat-slo"),
        ("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"),
        ("gpt-39b", "hetero-mix", "train-gpt-s2048"),
    ],
)
def test_a_tiny_time_limit_never_claims_infeasible(names: tuple[str, str, str]) -> None:
    """Instances with plans, under a limit far too short to search: a verified plan or
    UNKNOWN, never INFEASIBLE, never MODEL_ERROR, never an exception."""
    res = plan(*_specs(names), time_limit_s=1e-3, num_workers=1)
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE, Status.UNKNOWN), res.message
    if res.plan is not None:
        assert res.report is not None and res.report["feasible"]


# ------------------------------------------------------------------------------------------
# INFEASIBLE only with a proof; MODEL_INVALID is never a proof
# ------------------------------------------------------------------------------------------
def test_proven_infeasible_gives_the_reason_with_numbers() -> None:
    """A 39B model on two 80 GB GPUs: INFEASIBLE, the message names memory with its GB."""
    res = plan(*_specs(("gpt-39b", "h100x2-nvlink", "train-gpt-s2048")), time_limit_s=10)
    assert res.status == Status.INFEASIBLE and res.plan is None
    assert re.search(r"memory: .*need [\d,]+ GB .* has [\d,]+ GB", res.message), res.message
    assert res.exit_code == 4


def test_cli_infeasible_exits_4_with_the_reason() -> None:
    """`shardwise plan` exits 4 for a proven INFEASIBLE, after printing why."""
    res = runner.invoke(
        app, ["plan", "-m", "gpt-39b", "-c", "h100x2-nvlink", "-w", "train-gpt-s2048", "-q"]
    )
    assert res.exit_code == 4, res.output
    assert res.stdout.startswith("INFEASIBLE") and "GB" in res.stdout


def test_an_invalid_cp_model_is_never_a_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CP-SAT MODEL_INVALID (a bug, e.g. an overflowing domain) leaves its sub-problem open:
    MODEL_ERROR without a plan, never INFEASIBLE or OPTIMAL."""
    monkeypatch.setattr(plan_training, "warm_start", lambda *_a, **_k: None)

    def invalid(self: TrainingModel, *_a: Any, **_k: Any) -> tuple[Any, None, float]:
        self.work = 0.0
        return cp_model.MODEL_INVALID, None, math.inf

    monkeypatch.setattr(TrainingModel, "solve", invalid)
    res = plan(*_specs(TINY), time_limit_s=2, num_workers=1)
    assert res.status == Status.MODEL_ERROR, res.message
    assert "invalid" in res.message
    assert res.exit_code == 6


# ------------------------------------------------------------------------------------------
# OPTIMAL and FEASIBLE: gap 0, or a gap
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "names",
    [
        TINY,
        ("tiny-llama", "tiny-hetero", "infer-chat-slo"),
        ("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"),
    ],
)
def test_optimal_has_gap_zero(names: tuple[str, str, str]) -> None:
    """OPTIMAL is reported with gap 0 (the bound equals the objective)."""
    res = plan(*_specs(names), time_limit_s=10, num_workers=1)
    assert res.status == Status.OPTIMAL
    assert res.gap == 0 and res.bound is not None and res.objective is not None
    assert res.exit_code == 0


def test_feasible_carries_its_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan whose sub-problems are not all closed is FEASIBLE with a valid bound on the
    right side of the objective and a positive gap (here: CP-SAT returns the warm start's
    plan as FEASIBLE and proves nothing more)."""
    real_solve = TrainingModel.solve

    def feasible_only(self: TrainingModel, time_limit_s: float, *a: Any, **k: Any) -> Any:
        status, choice, bound = real_solve(self, time_limit_s, *a, **k)
        if status == cp_model.OPTIMAL and choice is not None:
            # Report the plan, but no proof beyond the sub-problem's cheap bound.
            return cp_model.FEASIBLE, choice, 0.0
        if status == cp_model.INFEASIBLE:
            return cp_model.UNKNOWN, None, math.inf
        return status, choice, bound

    monkeypatch.setattr(TrainingModel, "solve", feasible_only)
    monkeypatch.setattr(plan_training, "warm_start", lambda *_a, **_k: None)
    monkeypatch.setattr(plan_training, "MAX_TRIES", 1)
    res = plan(
        *_specs(("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048")), time_limit_s=2, num_workers=1
    )
    assert res.status == Status.FEASIBLE, res.message
    assert res.objective is not None and res.bound is not None and res.gap is not None
    assert res.bound >= res.objective * (1 - 1e-9)  # max_throughput: the bound is above
    assert res.gap > 0
    assert res.exit_code == 0


# ------------------------------------------------------------------------------------------
# Exit codes, as documented
# ------------------------------------------------------------------------------------------
def test_exit_codes_are_distinct_per_outcome() -> None:
    """0 for a plan (OPTIMAL, FEASIBLE), 2 for bad input, and one code of its own for each
    other status, none of them export's 3."""
    assert EXIT_CODES[Status.OPTIMAL] == EXIT_CODES[Status.FEASIBLE] == 0
    assert EXIT_CODES[Status.INVALID_INPUT] == 2
    others = [EXIT_CODES[s] for s in (Status.INFEASIBLE, Status.UNKNOWN, Status.MODEL_ERROR)]
    assert others == [4, 5, 6]
    assert set(EXIT_CODES) == set(Status)


@pytest.mark.parametrize("status", list(Status))
def test_cli_exit_code_follows_the_status(status: Status, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever status the planner returns, `plan --json` prints it and exits with its code."""

    def fixed(*_a: Any, **_k: Any) -> Result:
        return Result(status=status, message=f"{status.value} for the test")

    monkeypatch.setattr("solver.planner.plan", fixed)
    res = runner.invoke(app, [*PLAN_ARGS, "--json"])
    assert res.exit_code == EXIT_CODES[status], res.output
    assert json.loads(res.stdout)["status"] == status.value


def test_exit_codes_are_documented_in_readme_and_help() -> None:
    """README's status table and `plan --help` give every status its exit code."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    help_text = " ".join(runner.invoke(app, ["plan", "--help"]).stdout.split())
    for status, code in EXIT_CODES.items():
        assert re.search(rf"\| `{status.value}` \| {code} \|", readme), status
        assert f"{code} {status.value}" in help_text, status


# ------------------------------------------------------------------------------------------
# The deadline
# ------------------------------------------------------------------------------------------
def test_deadline_arithmetic() -> None:
    """The promised return time is limit x 1.1 + 0.5 s; an unbounded deadline never expires."""
    d = Deadline(2.0, start=0.0)
    assert d.grace_left() - d.left() == pytest.approx(2.0 * GRACE_SHARE + GRACE_S, abs=1e-3)
    assert Deadline(0.0).expired() and not Deadline.unbounded().expired()
    assert Deadline.unbounded().allows(1e9)


def test_optional_work_is_skipped_and_said_when_time_is_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the verification leaves no room for the rubric baseline, it is skipped and the
    message says so; the plan is still verified."""
    monkeypatch.setattr(Deadline, "allows", lambda self, seconds: False)
    res = plan(*_specs(TINY), time_limit_s=5, num_workers=1)
    assert res.ok and res.report is not None and res.report["feasible"]
    assert res.baseline is None
    assert "skipped the rubric baseline" in res.message


def test_planner_passes_its_deadline_to_the_back_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """solve_training gets the call's deadline, started before it and bounded by the limit."""
    seen: dict[str, Any] = {}

    def spy(*a: Any, **k: Any) -> Solved:
        seen.update(k)
        return Solved(Status.UNKNOWN, None, None, None, message="time limit: spy")

    monkeypatch.setattr("solver.planner.solve_training", spy)
    res = plan(*_specs(TINY), time_limit_s=3)
    assert res.status == Status.UNKNOWN
    deadline = seen["deadline"]
    assert isinstance(deadline, Deadline) and deadline.limit_s == 3 and deadline.left() <= 3


# ------------------------------------------------------------------------------------------
# Integer scaling: the time unit follows the horizon
# ------------------------------------------------------------------------------------------
def _extreme(hidden: int) -> tuple[Any, Any, Any]:
    """An extreme but valid corner: 1,024 blocks on 1-TFLOP/s GPUs with 100 TB each, 2^19
    sequences of 2,048 tokens a step (2^30 tokens, the largest allowed), interleaving allowed.
    At 1 us a unit the step row ``v m T_max`` reaches ~10^18-10^24."""
    slow = gpu(H100, 100_000).model_copy(update={"bf16_tflops": 1.0, "memory_bandwidth_GBps": 10.0})
    m = gpt(1024, hidden=hidden, heads=64)
    c = cluster(pool("slow", slow, nodes=1, gpn=8))
    w = train(2**19, seq=2048, schedules=("1f1b", "interleaved"), zero=[0, 3], recompute=("full",))
    return m, c, w


def test_time_unit_coarsens_so_the_model_fits_64_bits() -> None:
    """At the corner the unit is coarsened past 1 us, every sub-problem's largest value fits
    MAX_MAGNITUDE (< 2^62), and the planner returns a verified plan saying so."""
    m, c, w = _extreme(16384)
    subs = subproblems(m, c, w, families(w))
    assert subs
    units = {t.unit_s for _, _, t in subs}
    assert len(units) == 1 and units.pop() > 1e-6
    assert all(magnitude_of(t) <= MAX_MAGNITUDE < 2**62 for _, _, t in subs)
    res = plan(m, c, w, time_limit_s=10, num_workers=1)
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE), res.message
    assert res.report is not None and res.report["feasible"]
    assert "time unit coarsened" in res.message


def test_coarser_unit_refuses_to_round_the_cheapest_block_away() -> None:
    """coarser_unit keeps a unit that fits, coarsens by the power of 10 needed, and gives up
    (None) where that unit leaves the cheapest block fewer than MIN_BLOCK_UNITS units."""
    assert coarser_unit(1e-6, 10**17, 2**60, 1e-3) == 1e-6
    assert coarser_unit(1e-6, 10**20, 2**60, 1.0) == 1e-4  # 10^20 / 100 < 2^60 ~ 1.15e18
    assert coarser_unit(1e-6, 10**30, 2**60, 1.0) is None  # 1 s would be < 100 units of 1e6 s
    assert MIN_BLOCK_UNITS == 100


def test_a_range_no_unit_can_price_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no unit both fits the integer limit and keeps the cheapest block 100 units wide
    (here: a limit made tiny), the planner refuses the input -- INVALID_INPUT naming the
    workload -- rather than build an overflowing model."""
    monkeypatch.setattr(subproblems_module, "MAX_MAGNITUDE", 10**6)
    res = plan(*_specs(TINY), time_limit_s=5, num_workers=1)
    assert res.status == Status.INVALID_INPUT
    assert res.message.startswith("workload:") and "orders of magnitude" in res.message


# ------------------------------------------------------------------------------------------
# Solve-time shortcuts (issue 15: solve_time.py within 1.5x): every proof stays a proof
# ------------------------------------------------------------------------------------------
def _homog8() -> tuple[Any, Any, Any]:
    """llama3-70b at seq 8192 on one node of 8 H100s: INFEASIBLE by memory (solve_time.py)."""
    base = load_cluster("homog-16384-h100")
    pool0 = base.pools[0].model_copy(update={"nodes": 1})
    c = base.model_copy(update={"name": "h100-8", "pools": [pool0]})
    return load_model("llama3-70b"), c, load_workload("train-llama-s8192")


def test_tables_are_the_same_for_every_schedule_of_a_family() -> None:
    """build_tables reads only the knobs of table_key: families that differ in the schedule
    alone (1F1B, interleaved v) get equal tables, which TableCache shares."""
    from solver.cpsat.subproblems import table_key
    from solver.cpsat.tables.build import build_tables

    m, c, w = _specs(("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"))
    fams = families(w)
    by_key: dict[Any, Any] = {}
    compared = 0
    for fam in fams:
        tab = build_tables(m, c, w, fam, unit_s=1e-6)
        if table_key(fam) in by_key:
            assert tab == by_key[table_key(fam)], fam
            compared += 1
        else:
            by_key[table_key(fam)] = tab
    assert compared >= len(fams) // 2  # every key has several schedules here


def test_memory_pruned_pairs_are_exactly_the_subproblems_memory_refuses() -> None:
    """subproblems(memory_pruned=...) leaves out the (family, d) pairs whose sub-problems all
    fail the memory test, and keeps every other sub-problem unchanged."""
    from solver.cpsat.warmstart import memory_lower_bound_fails

    m, c, w = _specs(("llama3-70b", "seed-4x8-h100", "train-llama-s8192"))
    fams = families(w)
    every = subproblems(m, c, w, fams)
    pruned: list[Any] = []
    kept = subproblems(m, c, w, fams, memory_pruned=pruned)
    assert pruned and kept
    refused = [(f, t) for _, f, t in every if memory_lower_bound_fails(t, t.dp_degrees[0])]
    assert refused
    gone = {(f, d) for f, _, d in pruned}
    assert all((f, t.dp_degrees[0]) in gone for f, t in refused)

    def sig(x: tuple[float, Any, Any]) -> tuple[Any, ...]:
        lb, f, t = x
        return (lb, f, t.dp_degrees[0], t.max_stages, tuple((o.pool, o.tp) for o in t.options))

    left = [x for x in every if not memory_lower_bound_fails(x[2], x[2].dp_degrees[0])]
    assert sorted(map(sig, kept), key=repr) == sorted(map(sig, left), key=repr)


def test_interleavable_needs_v_to_divide_the_layers_over_two_stages() -> None:
    """v chunks per stage split L blocks over p >= 2 stages only when v divides L and L >= 2v."""
    from solver.cpsat.subproblems import interleavable

    assert interleavable(80, 1) and interleavable(3, 1)
    assert interleavable(80, 10) and interleavable(80, 8) and interleavable(16, 8)
    assert not interleavable(80, 12) and not interleavable(80, 3)  # 80 % v != 0
    assert not interleavable(8, 8)  # one stage of 8 chunks is not a pipeline


def test_skipping_families_that_cannot_interleave_loses_no_subproblem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """subproblems() builds nothing for a v that does not divide the layers (80 layers: v 3, 6,
    12 of VIRTUAL_STAGE_OPTIONS) and shares the engine spaces by _space_key: the same
    sub-problems, memory-pruned pairs aside, as building every family with its own spaces."""
    from solver.cpsat.subproblems import VIRTUAL_STAGE_OPTIONS, interleavable
    from solver.engines import engines_for

    m, c, w = _specs(("llama3-70b", "seed-4x8-h100", "train-llama-s8192"))
    w = w.model_copy(update={"zero_stages": [1, 3]})
    assert any(not interleavable(m.num_layers, v) for v in VIRTUAL_STAGE_OPTIONS)
    fams = families(w)
    engines = engines_for("training")

    def sig(x: tuple[float, Any, Any]) -> tuple[Any, ...]:
        lb, f, t = x
        return (
            lb, f, t.dp_degrees[0], t.max_stages, t.engine,
            tuple((o.pool, o.tp) for o in t.options),
        )  # fmt: skip

    def run() -> tuple[list[Any], list[Any], list[Any]]:
        pruned: list[Any] = []
        subs = subproblems(m, c, w, fams, engines, memory_pruned=pruned)
        launch = subproblems_module.engine_families(fams, engines, w)
        return sorted(map(sig, subs), key=repr), launch, pruned

    fast, fast_launch, fast_pruned = run()
    assert fast and all(m.num_layers % f.virtual_stages == 0 for _, f, *_ in fast)
    assert all(interleavable(m.num_layers, f.virtual_stages) for f, _, _ in fast_pruned)
    monkeypatch.setattr(subproblems_module, "interleavable", lambda _n, _v: True)
    monkeypatch.setattr(subproblems_module, "_space_key", lambda f: f)
    every, every_launch, every_pruned = run()
    assert fast == every
    assert fast_launch == every_launch
    assert len(every_pruned) > len(fast_pruned)  # the skipped families were memory-pruned too
    assert {(f, d) for f, _, d in fast_pruned} == {
        (f, d) for f, _, d in every_pruned if interleavable(m.num_layers, f.virtual_stages)
    }


def test_memory_pruned_pairs_have_a_detail_row_unless_first_plan() -> None:
    """A full solve gives each memory-pruned (family, space, d) a PRUNED_BY_MEMORY row of
    families_detail; a first-plan solve (the advice's re-plans) only counts them."""
    from solver.cpsat.plan_training import solve_training

    specs = _specs(("llama3-70b", "seed-4x8-h100", "train-llama-s8192"))
    full = solve_training(*specs, 10.0, 1, 0)
    brief = solve_training(*specs, 10.0, 1, 0, first_plan=True)
    assert full.status == Status.OPTIMAL and brief.status == Status.FEASIBLE
    n = full.stats["pruned_by_memory"]
    assert n > 0 and brief.stats["pruned_by_memory"] == n
    rows = [r for r in full.stats["families_detail"] if r["status"] == "PRUNED_BY_MEMORY"]
    assert len(rows) == n
    labels = {f.label for f in families(specs[2])}
    for r in rows:
        assert r["family"] in labels and r["bound"] is None and r["tmax_slice"] is None
        assert isinstance(r["d"], int) and r["depth"] >= 1 and r["time_s"] == 0.0
    assert not [r for r in brief.stats["families_detail"] if r["status"] == "PRUNED_BY_MEMORY"]


def test_table_cache_builds_each_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second solve of the same instance with the same TableCache builds no table and gives
    the same plan; a relaxation that only allows ZeRO-3 builds only the new ZeRO-3 tables."""
    from solver.cpsat.plan_training import solve_training
    from solver.cpsat.subproblems import TableCache, table_key

    built: list[Any] = []
    real = subproblems_module.build_tables

    def counted(*a: Any, **k: Any) -> Any:
        built.append(table_key(a[3]))
        return real(*a, **k)

    monkeypatch.setattr(subproblems_module, "build_tables", counted)
    m, c, w = _specs(("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"))
    cache = TableCache()
    first = solve_training(m, c, w, 10.0, 1, 0, cache=cache)
    n = len(built)
    assert n == len({table_key(f) for f in families(w)})  # one table per key, not per family
    again = solve_training(m, c, w, 10.0, 1, 0, cache=cache)
    assert len(built) == n
    assert (again.status, again.objective) == (first.status, first.objective)
    assert again.plan == first.plan
    _, w3 = Relaxation("allow zero_stage 3", ("zero",), (("zero_stage", [1, 3]),)).apply(c, w)
    assert isinstance(w3, TrainingWorkload) and 3 in w3.zero_stages
    solve_training(m, c, w3, 10.0, 1, 0, cache=cache)
    assert built[n:] and all(k[3] == 3 for k in built[n:])


def test_first_plan_is_verified_and_infeasible_keeps_its_proof() -> None:
    """first_plan stops at a plan (FEASIBLE; the evaluator accepts it) on a feasible instance
    and still proves INFEASIBLE on an infeasible one, as the full search does."""
    from solver.cpsat.plan_training import solve_training
    from solver.evaluate import evaluate

    m, c, w = _specs(("llama3-70b", "seed-4x8-h100", "train-llama-s8192"))
    got = solve_training(m, c, w, 10.0, 1, 0, first_plan=True)
    assert got.status == Status.FEASIBLE and got.plan is not None
    assert evaluate(m, c, w, got.plan).to_dict()["feasible"]
    full = solve_training(m, c, w, 10.0, 1, 0)
    assert full.status == Status.OPTIMAL and full.objective is not None
    assert got.objective is not None and got.objective <= full.objective * (1 + 1e-9)
    for specs in (_homog8(), _specs(("gpt-39b", "h100x2-nvlink", "train-gpt-s2048"))):
        brief = solve_training(*specs, 10.0, 1, 0, first_plan=True)
        assert brief.status == Status.INFEASIBLE, brief.message
        assert solve_training(*specs, 10.0, 1, 0).status == Status.INFEASIBLE


def test_unrefined_tiny_subproblems_close_at_the_same_optimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sub-problems of at most REFINE_MIN_CELLS (stage, option) cells go to CP-SAT whole; the
    optimum is the one the sliced search (every sub-problem refined) proves."""
    from solver.cpsat.plan_training import solve_training

    m, c, w = _specs(("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"))
    whole = solve_training(m, c, w, 10.0, 1, 0)
    monkeypatch.setattr(plan_training, "REFINE_MIN_CELLS", 0)
    sliced = solve_training(m, c, w, 10.0, 1, 0)
    assert whole.status == sliced.status == Status.OPTIMAL
    assert whole.objective == pytest.approx(sliced.objective, rel=1e-12)
