"""One objective (issue 18, item 1): no plan of the search space beats an OPTIMAL plan on the
evaluator.

The CP model minimises the closed-form step time (Narayanan et al. 2021, Sec. 2.2); the
evaluator simulates the schedule event by event and overlaps DP gradient sync and pipeline
hand-offs that the closed form charges, so the two can rank plans differently.  The planner
closes the difference on spaces small enough to enumerate (:func:`solver.planner._one_objective`:
every plan re-scored by the evaluator, which is a proof) and labels every other OPTIMAL
training result as optimal under the closed form, with the plan's simulated-vs-closed-form
difference.  These tests hold both halves to an independent enumeration
(:func:`solver.baselines.exhaustive_best`) on small instances chosen for the terms where the
two objectives part: DP/PP gradient-sync overlap (on, off, ZeRO-2), recompute, micro-batch
counts and interleaving.
"""

from __future__ import annotations

import builders
import pytest
from builders import A100, H100, cluster, gpu, pool, train

import solver.planner as planner
from solver.baselines.exhaustive import exhaustive_best, training_plan_count
from solver.engines import engine_violations, engines_for
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.planner import plan
from solver.result import Status
from solver.specs import Cluster, Model, Plan, TrainingWorkload

#: How much better than the planner's OPTIMAL a plan of the space may score on the evaluator:
#: float noise of two evaluations of equal plans (both objectives are the evaluator's).
RTOL = 1e-6

gpt = builders.gpt

#: (id, model, cluster, workload): spaces small enough for the planner's proof (proof_fits).
CASES: list[tuple[str, Model, Cluster, TrainingWorkload]] = [
    # The example: the CP's closed-form optimum (DP4 x PP2, mb 1) is beaten by 9.2% on
    # the evaluator by DP4 x PP2 with micro-batch 2 (its gradient sync hides in simulation).
    ("bundled-tiny", load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny")),
    # DP across two nodes, gradient sync overlapped with the last backward (the default).
    ("dp-overlap", gpt(4), cluster(pool("h100", H100, nodes=2, gpn=2)), train(batch=8)),
    # The same with overlap off: every byte of the sync is exposed.
    (
        "dp-no-overlap",
        gpt(4),
        cluster(pool("h100", H100, nodes=2, gpn=2)),
        train(batch=8, overlap_grad_reduce=False),
    ),
    # ZeRO-2 reduce-scatters after every backward, hiding behind all of them.
    ("zero2-overlap", gpt(4), cluster(pool("a100", A100, gpn=4)), train(batch=8, zero=2)),
    # Recompute choices under memory pressure (6 GB GPUs, sequence 2048).
    (
        "recompute",
        gpt(4, 2048, 16),
        cluster(pool("h100", gpu(H100, 6.0))),
        train(micro=(1, 2), recompute=("none", "selective", "full"), seq=2048, zero=0),
    ),
    # Micro-batch counts: 16 sequences as 16 x 1 ... 2 x 8 per replica.
    ("micro-batches", gpt(4), cluster(pool("h100", H100, gpn=4)), train(batch=16, micro=(1, 2, 4, 8))),
    # Interleaved 1F1B (v = 2, 4 on 8 blocks) against plain 1F1B.
    (
        "interleaving",
        gpt(8),
        cluster(pool("h100", H100, gpn=4)),
        train(batch=8, schedules=("1f1b", "interleaved")),
    ),
]


def _launchable(model: Model, workload: TrainingWorkload):  # type: ignore[no-untyped-def]
    names = [e.name for e in engines_for("training")]
    return lambda p: any(not engine_violations(p, model, e, workload) for e in names)


def _beats(truth: float, got: float, workload: TrainingWorkload) -> bool:
    if workload.objective == "max_throughput":
        return truth > got * (1 + RTOL)
    return truth < got * (1 - RTOL)


@pytest.mark.parametrize("engine", ["any-plan", None])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_optimal_is_not_beaten_on_the_evaluator(
    case: tuple[str, Model, Cluster, TrainingWorkload], engine: str | None
) -> None:
    """OPTIMAL (optimal under the evaluator) and no plan of the space scores better."""
    _, model, clus, wl = case
    n = training_plan_count(model, clus, wl)
    assert planner.proof_fits(model, clus, wl), f"case too large for the planner's proof: {n}"
    res = plan(model, clus, wl, time_limit_s=10, num_workers=1, engine=engine, compare_baseline=False)
    assert res.status == Status.OPTIMAL, res.message
    assert res.stats["optimal_under"] == planner.UNDER_EVALUATOR
    assert res.plan is not None and res.objective is not None
    keep = None if engine == "any-plan" else _launchable(model, wl)
    best, truth, scored = exhaustive_best(model, clus, wl, keep=keep)
    assert scored == n and best is not None and truth is not None
    assert not _beats(truth, res.objective, wl), (
        f"planner {res.objective} beaten by {truth} ({truth / res.objective - 1:+.3%})"
    )
    # And the planner's plan is in the space it claims: launchable unless any-plan.
    if keep is not None:
        assert keep(res.plan)
    assert res.gap == 0.0 and res.bound == res.objective


def test_cp_alone_is_beaten_and_the_planner_closes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's example: without the re-scoring the CP's closed-form optimum loses 9% on the
    evaluator, and the result says it is optimal under the closed form only."""
    _, model, clus, wl = CASES[0]
    monkeypatch.setattr(planner, "PROOF_MAX_PLANS", 0)
    cp = plan(model, clus, wl, time_limit_s=10, num_workers=1, compare_baseline=False)
    assert cp.status == Status.OPTIMAL and cp.objective is not None
    assert cp.stats["optimal_under"] == planner.UNDER_CLOSED_FORM
    assert "optimal under the closed-form step time" in cp.message
    assert cp.report is not None
    sim, closed = cp.report["step_time_s"], cp.report["closed_form_step_time_s"]
    assert cp.stats["simulated_vs_closed_form"] == pytest.approx(sim / closed - 1)
    monkeypatch.undo()
    full = plan(model, clus, wl, time_limit_s=10, num_workers=1, compare_baseline=False)
    assert full.objective is not None and full.plan is not None
    assert full.objective > cp.objective * 1.05  # measured: 18.68M vs 17.11M tokens/s (+9.2%)
    assert "closed_form_optimum" in full.stats
    assert full.stats["closed_form_optimum"]["objective"] == cp.objective
    # The reported objective is the evaluator's for the returned plan.
    rep = evaluate(model, clus, wl, full.plan)
    assert rep.feasible and rep.tokens_per_s == pytest.approx(full.objective)


def test_interleaved_plans_are_enumerated() -> None:
    """Hand-derived: 4 blocks on 2 GPUs, batch 2.  Interleaving needs >= 2 stages holding
    multiples of v blocks: only d = 1, two TP-1 stages of 2 blocks, v = 2 (v = 4 needs 8
    blocks; 3, 5, 6, 8 do not divide 4) -- exactly one plan more than plain 1F1B."""
    model, clus = gpt(4), cluster(pool("h100", H100))
    plain = train(batch=2)
    both = train(batch=2, schedules=("1f1b", "interleaved"))
    assert training_plan_count(model, clus, both) == training_plan_count(model, clus, plain) + 1
    seen: list[Plan] = []

    def keep(p: Plan) -> bool:
        seen.append(p)
        return True

    _, _, n = exhaustive_best(model, clus, both, keep=keep)
    inter = [p for p in seen if p.replica_groups[0].schedule == "interleaved"]
    assert n == len(seen) == training_plan_count(model, clus, both)
    assert len(inter) == 1
    (g,) = inter[0].replica_groups
    assert g.virtual_stages == 2 and g.count == 1
    # Megatron's layout: chunk c * p + s on stage s (stage 0: blocks 0, 2; stage 1: 1, 3).
    assert [st.layer_ranges for st in g.stages] == [[(0, 0), (2, 2)], [(1, 1), (3, 3)]]


def test_too_large_a_space_is_labelled_closed_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the cap nothing is re-scored and an OPTIMAL result says what it is optimal under."""
    monkeypatch.setattr(planner, "PROOF_MAX_GPUS", 1)
    _, model, clus, wl = CASES[1]
    res = plan(model, clus, wl, time_limit_s=10, num_workers=1, compare_baseline=False)
    assert res.status == Status.OPTIMAL
    assert res.stats["optimal_under"] == planner.UNDER_CLOSED_FORM
    assert "not re-scored: instance too large to count" in res.message
    assert "evaluator_proof" not in res.stats
