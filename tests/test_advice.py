"""Verified advice for INFEASIBLE training instances (:mod:`solver.cpsat.advice`, issue 18).

Every relaxation the planner prints under an INFEASIBLE result was re-planned; only those
whose re-plan gave a verified plan are called sufficient, and each such claim is re-planned
again here.  Reasons name the binding constraint with numbers: the batch no micro-batch
divides, and the lightest plan's activations against the GB its stage has free.  Also the
rubric baseline's deadline and the exit codes of ``explain``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from builders import H100, cluster, gpt, pool, train
from click.testing import Result as CliResult
from typer.testing import CliRunner

from solver.baselines.rubric import RubricCutShort, rubric_plan_scored
from solver.cli import app
from solver.cpsat.advice import (
    ENOUGH_SUFFICIENT,
    Relaxation,
    Tried,
    advice_text,
    constraint_group,
    infeasibility_group,
    infeasibility_reasons,
    relaxation_axes,
    search_relaxations,
    untried_axes,
)
from solver.cpsat.deadline import Deadline
from solver.io import load_cluster, load_model, load_workload
from solver.planner import plan
from solver.result import Result, Status
from solver.specs import Cluster, Model, TrainingWorkload

runner = CliRunner()

#: A 4-block GPT (h = 256) on one node of two H100s: fits easily at ordinary sizes.
TINY = gpt(4)
TWO_H100 = cluster(pool("h100", H100, nodes=1, gpn=2))


def _relaxations(
    model: Model, c: Cluster, w: TrainingWorkload, scope: str | None
) -> dict[str, Relaxation]:
    """Every single relaxation the planner may try, and every pair of them, by name."""
    singles = [r for axis in relaxation_axes(model, c, w, scope) for r in axis]
    out = {r.change: r for r in singles}
    for a in singles:
        for b in singles:
            if (both := a + b) is not None:
                out[both.change] = both
    return out


def _check_sufficient_ones_plan(
    res: Result, model: Model, c: Cluster, w: TrainingWorkload
) -> list[str]:
    """Re-plan every relaxation the result calls sufficient: each must give a plan the
    evaluator accepts; returns their names.  Nothing else may be called sufficient."""
    assert res.advice is not None
    by_name = _relaxations(model, c, w, res.engine_scope)
    good = [a["change"] for a in res.advice if a["sufficient"]]
    for a in res.advice:
        assert a["sufficient"] == a["verdict"].startswith("verified: plans"), a
    for name in good:
        r = by_name[name]
        rc, rw = r.apply(c, w)
        again = plan(
            model, rc, rw, time_limit_s=10, engine=r.engine, compare_baseline=False, advice=False
        )
        assert again.ok, (name, again.status, again.message)
        assert again.report is not None and again.report["feasible"], name
    if good:
        said = res.message.split("Sufficient (verified by re-planning): ", 1)[1]
        assert re.sub(r" \((some were|axes not tried) .*", "", said).split(", or ") == good
    else:
        assert "Sufficient" not in res.message
    return good


def test_gpt_1t_on_two_h100_advises_only_what_plans() -> None:
    """gpt-1t on 2 H100s: the old unverified advice (2x the GPUs, ZeRO-3) is labelled still
    infeasible, and each relaxation called sufficient really plans when re-planned."""
    m, c, w = load_model("gpt-1t"), load_cluster("h100x2-nvlink"), load_workload("train-gpt-s2048")
    res = plan(m, c, w, time_limit_s=10, num_workers=1)
    assert res.status == Status.INFEASIBLE and res.plan is None
    verdicts = {a["change"]: a["verdict"] for a in res.advice or []}
    assert verdicts["allow zero_stage 3"].startswith("still infeasible")
    two_x = next(k for k in verdicts if k.startswith("2x the GPUs"))
    assert verdicts[two_x].startswith("still infeasible")
    assert "Smallest relaxations to try" not in res.message
    # 18 TB of model states need about 230 H100s: 256x the cluster (512 GPUs) is the first
    # power of two that plans, and the search must have verified it within the limit.
    good = _check_sufficient_ones_plan(res, m, c, w)
    assert any(g.startswith("256x the GPUs") for g in good), res.message
    assert re.search(r"need 18,1\d\d GB", res.message), res.message


def test_batch_no_micro_batch_divides_names_the_batch() -> None:
    """Global batch 7 with micro-batches [2, 4]: the reason is the batch (not the engine),
    and the advice is micro-batch 1 or the nearest dividing batch, each re-planned."""
    w = train(7, micro=(2, 4))
    res = plan(TINY, TWO_H100, w, time_limit_s=10, num_workers=1)
    assert res.status == Status.INFEASIBLE
    assert res.message.startswith(
        "batch: global batch 7 is not divisible by any micro-batch x DP: micro-batches [2, 4]"
    ), res.message
    assert "engine:" not in res.message
    good = _check_sufficient_ones_plan(res, TINY, TWO_H100, w)
    assert good == ["allow micro_batch_sizes 1", "global_batch_size 8"]


def test_huge_sequence_gives_a_memory_reason_with_nonzero_gb() -> None:
    """16M tokens a sequence on a tiny model: the states are a few MB, so the reason is the
    activations against the GB left free, both nonzero -- never "need 0 GB"."""
    w = train(8, seq=1 << 24)
    res = plan(TINY, TWO_H100, w, time_limit_s=10, num_workers=1)
    assert res.status == Status.INFEASIBLE
    assert "need 0 GB" not in res.message and " 0 GB" not in res.message
    found = re.search(r"activations ([\d,.]+) GB vs ([\d,.]+) GB free", res.message)
    assert found is not None, res.message
    acts, free = (float(x.replace(",", "")) for x in found.groups())
    assert acts > free > 0
    good = _check_sufficient_ones_plan(res, TINY, TWO_H100, w)
    assert good and all(g.startswith("sequence_length") for g in good)


def test_pairs_are_tried_only_when_no_single_change_plans() -> None:
    """With a stand-in planner in which only recompute and ZeRO together plan, every single
    change is re-planned first, then pairs up to the first that plans; none is called
    sufficient that did not plan."""
    w = train(8, micro=(2,))
    axes = relaxation_axes(TINY, TWO_H100, w, "launchable")
    calls: list[str] = []

    def replan(r: Relaxation, limit: float) -> tuple[str, float | None, str]:
        calls.append(r.change)
        if {"recompute", "zero"} <= set(r.axes):
            return "FEASIBLE", 1000.0, ""
        return "INFEASIBLE", None, "memory: too big"

    tried = search_relaxations(axes, replan, Deadline(60.0))
    singles = [t for t in tried if len(t.relaxation.axes) == 1]
    assert len(singles) == sum(len(a) for a in axes)  # every step of every axis
    assert tried[-1].plans and set(tried[-1].relaxation.axes) == {"recompute", "zero"}
    assert [t for t in tried if t.plans] == [tried[-1]]
    text = advice_text(tried)
    assert text.endswith(
        "Sufficient (verified by re-planning): allow recompute full and allow zero_stage 3"
    )
    assert "still infeasible (memory)" in text


def test_axes_stop_once_enough_changes_plan() -> None:
    """With a stand-in planner in which every change plans, the single changes stop after
    ENOUGH_SUFFICIENT axes (each at its first step), no pair is tried, and the text names the
    axes left untried before the sufficient ones; without ``enough`` every axis is tried."""
    w = train(8, micro=(2,))
    axes = relaxation_axes(TINY, TWO_H100, w, "launchable")
    assert len(axes) > ENOUGH_SUFFICIENT

    def replan(r: Relaxation, limit: float) -> tuple[str, float | None, str]:
        return "FEASIBLE", 1000.0, ""

    tried = search_relaxations(axes, replan, Deadline(60.0), enough=ENOUGH_SUFFICIENT)
    assert [t.relaxation for t in tried] == [a[0] for a in axes[:ENOUGH_SUFFICIENT]]
    untried = untried_axes(axes, tried)
    assert untried == [a[0].axes[0] for a in axes[ENOUGH_SUFFICIENT:]]
    text = advice_text(tried, untried)
    tail = f" (axes not tried once {ENOUGH_SUFFICIENT} changes planned: " + ", ".join(untried) + ")"
    assert text.endswith(tail)
    said = text.split("Sufficient (verified by re-planning): ", 1)[1]
    assert re.sub(r" \((some were|axes not tried) .*", "", said).split(", or ") == [
        t.relaxation.change for t in tried
    ]
    every = search_relaxations(axes, replan, Deadline(60.0))
    assert len(every) == len(axes) and not untried_axes(axes, every)


def _homog8() -> tuple[Model, Cluster, TrainingWorkload]:
    """llama3-70b at seq 8192 on one node of 8 H100s: INFEASIBLE by memory (solve_time.py)."""
    base = load_cluster("homog-16384-h100")
    c = base.model_copy(update={"pools": [base.pools[0].model_copy(update={"nodes": 1})]})
    w = load_workload("train-llama-s8192")
    assert isinstance(w, TrainingWorkload)
    return load_model("llama3-70b"), c, w


def test_still_infeasible_verdicts_are_proofs() -> None:
    """llama3-70b on 8 H100s: each relaxation labelled still infeasible is INFEASIBLE when
    re-planned in full (its re-plan stops at a first plan, never at a missing one), and
    2x the GPUs is verified sufficient."""
    m, c, w = _homog8()
    res = plan(m, c, w, time_limit_s=10, num_workers=1, compare_baseline=False)
    assert res.status == Status.INFEASIBLE and res.advice
    good = _check_sufficient_ones_plan(res, m, c, w)
    assert any(g.startswith("2x the GPUs") for g in good), res.message
    by_name = _relaxations(m, c, w, res.engine_scope)
    still = [a["change"] for a in res.advice if a["verdict"].startswith("still infeasible")]
    assert still
    for name in still:
        r = by_name[name]
        rc, rw = r.apply(c, w)
        again = plan(
            m, rc, rw, time_limit_s=10, engine=r.engine, compare_baseline=False, advice=False
        )
        assert again.status == Status.INFEASIBLE, (name, again.status)


@pytest.mark.parametrize(
    "case",
    ["homog8", "gpt-1t", "batch", "sequence"],
)
def test_infeasibility_group_is_the_reasons_first_group(case: str) -> None:
    """The group a relaxation's re-plan reports (infeasibility_group, no lightest-plan
    search) is the one the full reasons name first."""
    specs: dict[str, tuple[Model, Cluster, TrainingWorkload]] = {
        "homog8": _homog8(),
        "gpt-1t": (load_model("gpt-1t"), load_cluster("h100x2-nvlink"), train(8, seq=2048)),
        "batch": (TINY, TWO_H100, train(7, micro=(2, 4))),
        "sequence": (TINY, TWO_H100, train(8, seq=1 << 24)),
    }
    m, c, w = specs[case]
    assert infeasibility_group(m, c, w) == constraint_group(infeasibility_reasons(m, c, w))
    assert infeasibility_group(m, c, w) in ("memory", "batch")


def test_no_time_left_means_not_verified() -> None:
    """A deadline already spent runs no re-plan: every relaxation is "not verified (time)",
    none is sufficient, and the text says to raise the limit."""
    axes = relaxation_axes(TINY, TWO_H100, train(8), "launchable")

    def replan(r: Relaxation, limit: float) -> tuple[str, float | None, str]:
        raise AssertionError("no re-plan fits a spent deadline")

    tried = search_relaxations(axes, replan, Deadline(-10.0))
    assert tried and all(t.verdict == "not verified (time)" and not t.plans for t in tried)
    text = advice_text(tried)
    assert "Sufficient" not in text and "raise --time-limit" in text


def test_advice_keeps_the_time_limit() -> None:
    """A short limit: the advice stops in time (the call keeps its promise, limit x 1.1 +
    0.5 s, with a margin for a loaded machine) and what it did not run is not verified."""
    m, c, w = load_model("gpt-1t"), load_cluster("h100x2-nvlink"), load_workload("train-gpt-s2048")
    t0 = time.perf_counter()
    res = plan(m, c, w, time_limit_s=0.3, num_workers=1)
    assert time.perf_counter() - t0 <= 0.3 * 1.1 + 0.5 + 0.5
    assert res.status == Status.INFEASIBLE
    for a in res.advice or []:
        if a["status"] in ("NOT_RUN", "UNKNOWN"):
            assert a["verdict"] == "not verified (time)" and not a["sufficient"]


def test_rubric_stops_at_its_deadline() -> None:
    """rubric_plan_scored with a spent deadline stops and says so (RubricCutShort), never a
    None that would read as "nothing fits"; without one it finds its plan."""
    w = train(8)
    assert rubric_plan_scored(TINY, TWO_H100, w) is not None
    with pytest.raises(RubricCutShort, match="stopped at the time limit"):
        rubric_plan_scored(TINY, TWO_H100, w, deadline=Deadline(-10.0))


def test_rubric_infeasible_walk_stops_at_deadline() -> None:
    """A model no rubric shape fits walks many shapes; a spent deadline stops it at once."""
    m, c, w = load_model("gpt-1t"), load_cluster("h100x2-nvlink"), load_workload("train-gpt-s2048")
    assert rubric_plan_scored(m, c, w) is None  # the full walk: nothing fits
    with pytest.raises(RubricCutShort) as err:
        rubric_plan_scored(m, c, w, deadline=Deadline(-10.0))
    assert err.value.shapes == 0


def test_tried_labels() -> None:
    """The three labels: verified with tokens/s, still infeasible, not verified (time)."""
    r = Relaxation("x", ("gpus",), factor=2)
    assert Tried(r, "OPTIMAL", 1234.5).verdict == "verified: plans (tokens/s 1,234)"
    assert Tried(r, "FEASIBLE", 1234.5).verdict == (
        "verified: plans (a first plan at tokens/s 1,234, not optimised)"
    )
    assert Tried(r, "INFEASIBLE", why="memory").verdict == "still infeasible (memory)"
    assert Tried(r, "UNKNOWN").verdict == "not verified (time)"
    assert Tried(r, "MODEL_ERROR").verdict == "not verified (MODEL_ERROR)"


# ------------------------------------------------------------------------------------------
# explain's exit codes: the planner's when it plans
# ------------------------------------------------------------------------------------------
def _explain(*args: str) -> CliResult:
    return runner.invoke(app, ["explain", "--no-alternatives", "--workers", "1", "-q", *args])


def test_explain_exits_4_when_it_plans_an_infeasible_instance() -> None:
    """explain of a planned INFEASIBLE result exits 4, as plan does, after printing."""
    res = _explain("-m", "gpt-39b", "-c", "h100x2-nvlink", "-w", "train-gpt-s2048", "-t", "5")
    assert res.exit_code == 4, res.output
    assert res.stdout.startswith("INFEASIBLE")


def test_explain_exits_0_for_a_plan_and_5_for_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPTIMAL exits 0; a planner UNKNOWN (stand-in) exits 5 and MODEL_ERROR 6."""
    args = ("-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "train-tiny", "-t", "5")
    ok = _explain(*args)
    assert ok.exit_code == 0, ok.output
    import solver.report.explain.explainer as explainer

    for status, code in ((Status.UNKNOWN, 5), (Status.MODEL_ERROR, 6)):
        monkeypatch.setattr(
            explainer, "solve", lambda *a, s=status, **k: Result(status=s, message="stand-in")
        )
        res = _explain(*args)
        assert res.exit_code == code, (status, res.output)


def test_explain_of_a_given_plan_exits_0(tmp_path: Path) -> None:
    """explain --plan explains what it is given: exit 0 whatever the plan (no solve)."""
    res = plan(
        load_model("tiny-gpt"),
        load_cluster("tiny-2x4-a100"),
        load_workload("train-tiny"),
        time_limit_s=5,
    )
    assert res.plan is not None
    path = tmp_path / "plan.json"
    path.write_text(res.plan.model_dump_json())
    out = _explain("-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "train-tiny", "--plan", str(path))
    assert out.exit_code == 0, out.output


def test_deterministic_advice_is_the_same_every_run() -> None:
    """Deterministic runs re-plan the same relaxations to the same verdicts and first plans
    (the first-plan order and the table cache read no clock)."""
    m, c, w = _homog8()

    def verdicts() -> list[tuple[str, str, float | None]]:
        res = plan(m, c, w, time_limit_s=5, deterministic=True, compare_baseline=False)
        assert res.status == Status.INFEASIBLE
        return [(a["change"], a["verdict"], a["tokens_per_s"]) for a in res.advice or []]

    first = verdicts()
    assert first and first == verdicts()


def test_no_engine_advice_offers_only_what_can_change_engine_support() -> None:
    """When no engine runs the workload's numerics, GPUs, knobs and sequence lengths cannot
    help: only the memory policy and plans beyond the engines are re-planned."""
    from solver.io import load_cluster, load_model, load_workload
    from solver.planner import plan as plan_

    wl = load_workload("train-tiny").model_copy(
        update={"tp_comm_overlap": "async_tp", "elementwise_kernels": "compiled_blocks"}
    )
    r = plan_(load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), wl, time_limit_s=5)
    assert r.status.name == "INFEASIBLE"
    assert "sequence_length" not in r.message and "the GPUs" not in r.message
    assert "plans beyond the engines (engine any-plan): verified" in r.message
