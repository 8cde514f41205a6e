"""``explain`` (:mod:`solver.report.explain`) and ``shardwise explain``.

The main instance is llama3-70b on seed-4x8-h100 under train-llama-s8192: 70.6 B params x 18 B
of weights, gradients and Adam states is 1,270 GB, twice a node's 8 x 80 GB, so the model
needs model parallelism across nodes.  Its rubric plan (TP=8 in each node, PP=2, DP=2) is the
explained plan in most tests: fixed and quick to score, where the planner's plan would depend
on the time limit.  From it:

* TP x2 = 16 is wider than a node (NVLink domain of 1 node), so it is illegal and priced on a
  what-if cluster at the NIC bandwidth (8 x 50 GB/s per node = 50 GB/s per GPU, vs 450 GB/s
  NVSwitch): its TP all-reduce must take longer than the chosen plan's;
* pure DP (TP = PP = 1) holds a whole replica of the 1,270 GB of states (ZeRO-1 shards only
  the 12 B/param of optimizer states over DP=32, leaving 6 B x 70.6 B = 424 GB): it cannot
  fit 80 GB, whatever the recomputation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solver.baselines import rubric_plan
from solver.cli import app
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.report import dumps
from solver.report.explain import TERM_LABELS, Explanation, explain, render_explanation, step_terms
from solver.specs import Plan

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
M70 = load_model("llama3-70b")
SEED = load_cluster("seed-4x8-h100")
TRAIN = load_workload("train-llama-s8192")


@pytest.fixture(scope="module")
def rubric70() -> Plan:
    plan = rubric_plan(M70, SEED, TRAIN)
    assert plan is not None
    return plan


@pytest.fixture(scope="module")
def expl70(rubric70: Plan) -> Explanation:
    return explain(M70, SEED, TRAIN, rubric70)


def _alt(expl: Explanation, key: str) -> Any:
    matches = [a for a in expl.alternatives if a.key == key]
    assert matches, f"no alternative {key}: {[a.key for a in expl.alternatives]}"
    return matches[0]


def test_terms_add_up_to_the_step(expl70: Explanation) -> None:
    """The step-time terms are additive: they sum to the evaluator's step time."""
    assert expl70.report is not None
    total = sum(t.seconds for t in expl70.terms)
    assert total == pytest.approx(expl70.report["step_time_s"], rel=1e-9)
    assert {t.key for t in expl70.terms} == {
        "compute", "tp_comm", "pp_bubble", "p2p", "dp_sync", "optimizer",
    }  # fmt: skip
    assert all(t.seconds >= 0 for t in expl70.terms)


def test_bottleneck_is_the_largest_term(expl70: Explanation) -> None:
    """The bottleneck names the largest term and the largest overhead, with numbers."""
    b = expl70.bottleneck
    assert b is not None
    assert b.seconds == max(t.seconds for t in expl70.terms)
    assert b.kind in TERM_LABELS and b.label in b.text
    assert b.overhead is not None and b.overhead.key != "compute"
    assert any(ch.isdigit() for ch in b.text) and "%" in b.text


def test_memory_ledger_is_the_evaluators(expl70: Explanation, rubric70: Plan) -> None:
    """One ledger row per stage, equal to the evaluator's, with use = total / capacity."""
    report = evaluate(M70, SEED, TRAIN, rubric70).to_dict()
    assert len(expl70.memory_ledger) == rubric70.replica_groups[0].pp
    for row, ref in zip(expl70.memory_ledger, report["memory_ledger"], strict=True):
        for key in ("weights_GB", "grads_GB", "optimizer_GB", "activations_GB", "total_GB"):
            assert row[key] == pytest.approx(ref[key])
        assert row["use"] == pytest.approx(ref["total_GB"] / ref["capacity_GB"])


def test_tp_across_nodes_is_priced_over_the_nics(expl70: Explanation) -> None:
    """TP=16 spans two nodes: illegal (NVLink domain), priced at NIC bandwidth, and its TP
    all-reduce per step is longer than the chosen TP=8's inside NVSwitch."""
    a = _alt(expl70, "tp_x2")
    assert not a.feasible and a.priced_on is not None
    assert any("NVLink domain" in v for v in a.violations)
    chosen_tp = next(t.seconds for t in expl70.terms if t.key == "tp_comm")
    assert a.terms["tp_comm"] > chosen_tp
    assert a.ratio is not None and a.ratio > 1
    assert "TP all-reduce" in a.verdict and "slower" in a.verdict


def test_pure_dp_does_not_fit(expl70: Explanation) -> None:
    """Pure DP needs hundreds of GB per GPU on an H100 (85 GB usable): the verdict says how much."""
    a = _alt(expl70, "pure_dp")
    assert not a.feasible and a.ratio is None
    assert a.verdict.startswith("does not fit") and "has 85 GB" in a.verdict
    assert a.metrics["peak_memory_GB_per_gpu"] > 400


def test_alternatives_are_rescored_plans(expl70: Explanation, rubric70: Plan) -> None:
    """Every alternative with a plan is reproducible: re-evaluating it on the real cluster
    gives its feasibility; feasible ones have ratio = chosen tokens/s / alternative tokens/s."""
    expected = {"tp_x2", "tp_half", "pp_x2", "pure_dp", "rubric", "uniform"}
    if rubric70.replica_groups[0].pp > 1:
        expected.add("pp_half")  # halving the pipeline is an alternative only with PP > 1
    assert expected <= {a.key for a in expl70.alternatives}
    chosen = evaluate(M70, SEED, TRAIN, rubric70).tokens_per_s
    assert chosen is not None
    for a in expl70.alternatives:
        if a.plan is None:
            continue
        report = evaluate(M70, SEED, TRAIN, a.plan)
        assert report.feasible == a.feasible, a.key
        if a.feasible and a.ratio is not None:
            assert report.tokens_per_s is not None
            assert a.ratio == pytest.approx(chosen / report.tokens_per_s, rel=1e-9)
    rubric = _alt(expl70, "rubric")
    assert rubric.ratio == pytest.approx(1.0)  # the explained plan is the rubric's


def test_to_dict_is_strict_json(expl70: Explanation) -> None:
    """The --json document is strict JSON with the promised sections."""
    doc = json.loads(dumps(expl70.to_dict()))
    for key in ("status", "memory_ledger", "terms", "bottleneck", "alternatives", "plan", "report"):
        assert key in doc
    assert doc["source"] == "given" and doc["status"] == "GIVEN" and doc["feasible"] is True


def test_render_names_bottleneck_and_alternatives(expl70: Explanation) -> None:
    """The rich view has the ledger, the terms, the bottleneck and the alternatives."""
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_explanation(expl70, SEED))
    text = console.export_text()
    for needle in ("Memory per GPU", "Where the time goes", "Bottleneck:", "Why not"):
        assert needle in text


def test_infeasible_instance_reports_the_closest_plan() -> None:
    """llama3.1-405b training needs ~7,300 GB of states; the cluster has 2,560 GB: the
    planner's INFEASIBLE message is kept and the closest plan's ledger shows the overshoot."""
    m = load_model("llama3.1-405b")
    expl = explain(m, SEED, TRAIN, time_limit_s=3)
    assert expl.status == "INFEASIBLE"
    assert "memory" in expl.message
    assert expl.memory_source == "closest" and expl.memory_ledger
    assert max(r["use"] for r in expl.memory_ledger) > 1.0
    assert expl.alternatives == [] and expl.bottleneck is None
    assert expl.limits and "overshoots" in expl.limits[0]


def test_inference_explanation() -> None:
    """Inference: the terms sum to the longest request-batch time; pure DP of a 70B model
    in bf16 (141 GB of weights) cannot fit an 80 GB GPU."""
    w = load_workload("infer-chat-slo")
    expl = explain(M70, SEED, w, time_limit_s=3)
    assert expl.status == "OPTIMAL" and expl.report is not None
    assert sum(t.seconds for t in expl.terms) == pytest.approx(expl.report["step_time_s"])
    assert expl.bottleneck is not None
    assert _alt(expl, "pure_dp").verdict.startswith("does not fit")
    assert all(a.key not in ("recompute_none", "recompute_full") for a in expl.alternatives)


def test_step_terms_split_idle_time_into_bubble_and_p2p() -> None:
    """On a PP=2 plan the idle time of the busiest stage is bubble + exposed p2p, and the p2p
    part is what free transfers would save (0 <= p2p <= idle)."""
    m, c, w = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), load_workload("train-tiny")
    from solver.construction import build_stages
    from solver.specs import ReplicaGroup

    stages = build_stages(c, [(1, [("a100", 4, 2), ("a100", 4, 2)])])[0]
    group = ReplicaGroup(count=1, micro_batch_size=1, num_micro_batches=16, stages=stages)
    plan = Plan(kind="training", replica_groups=[group])
    report = evaluate(m, c, w, plan)
    terms = step_terms(report, plan)
    assert report.pipeline is not None and report.step_time_s is not None
    idle = report.pipeline.makespan_s - max(report.pipeline.busy_s)
    assert terms["pp_bubble"] + terms["p2p"] == pytest.approx(idle)
    assert terms["p2p"] > 0  # the two stages sit on different nodes: p2p over the NIC
    assert sum(terms.values()) == pytest.approx(report.step_time_s)


# ------------------------------------------------------------------------------------------
# CLI (subprocess: the real entry point, stdout/stderr separation, exit codes)
# ------------------------------------------------------------------------------------------
def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solver", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "COLUMNS": "250"},  # wide tables: phrases stay on one line
        timeout=180,
    )


TINY = ("-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "train-tiny", "-t", "2")


def test_cli_explain_large_model_names_bottleneck_and_alternatives() -> None:
    """End to end with the planner: the output names the bottleneck and alternatives with
    numbers (pure DP's memory shortfall in GB, and at least one ratio)."""
    r = _run("explain", "-m", "llama3-70b", "-c", "seed-4x8-h100", "-w", "train-llama-s8192",
             "-t", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Bottleneck:" in out and "-bound:" in out
    assert "pure DP" in out and "does not fit" in out and "has 85 GB" in out
    assert "x slower" in out or "x FASTER" in out


def test_cli_explain_json_is_one_document(tmp_path: Path) -> None:
    """--json prints one JSON document; --plot writes the timeline (training default)."""
    out = tmp_path / "timeline.svg"
    r = _run("explain", *TINY, "--json", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] in ("OPTIMAL", "FEASIBLE") and doc["bottleneck"]["kind"]
    assert doc["alternatives"] and doc["plot"] == str(out)
    assert 'id="stage0-F"' in out.read_text()


def test_cli_explain_given_plan_and_placement_plot(tmp_path: Path) -> None:
    """--plan explains that plan (no solve); --plot-kind placement draws the GPU map; an
    existing plot file is not overwritten without --force (in-process, for speed)."""
    plan_file = tmp_path / "plan.json"
    r = runner.invoke(app, ["plan", *TINY, "--out", str(plan_file), "-q"])
    assert r.exit_code == 0, r.output
    png = tmp_path / "map.png"
    args = ["explain", *TINY, "--plan", str(plan_file), "--plot", str(png)]
    r = runner.invoke(app, [*args, "--plot-kind", "placement"])
    assert r.exit_code == 0, r.output
    assert "given" in r.stdout and "placement written to" in r.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
    before = png.read_bytes()
    r = runner.invoke(app, [*args, "--plot-kind", "placement"])
    assert r.exit_code == 2 and "--force" in r.stderr
    assert png.read_bytes() == before


def test_cli_explain_bad_input_subprocess(tmp_path: Path) -> None:
    """Bad input through the real entry point: exit 2, one line 'error: ...', no traceback."""
    r = _run("explain", *TINY, "--plan", "no-such-plan.json", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-plan.json" in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--time-limit", "0"), "--time-limit"),
        (("--plot", "x.jpg"), "--plot"),
        (("--plot-kind", "gantt", "--plot", "x.png"), "--plot-kind"),
        (("--plot-kind", "placement"), "--plot-kind"),
        (("-m", "no-such-model"), "no-such-model"),
    ],
)
def test_cli_explain_bad_input(extra: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    """Bad input (in-process): exit 2 and one line 'error: ...' naming the culprit."""
    r = runner.invoke(app, ["explain", *TINY, *extra])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert r.stdout == ""


def test_cli_explain_timeline_for_inference_is_refused(tmp_path: Path) -> None:
    """Inference has no simulated schedule: --plot-kind timeline is bad input, checked before
    solving."""
    args = ["explain", "-m", "tiny-gpt", "-c", "tiny-2x4-a100", "-w", "infer-chat-slo"]
    r = runner.invoke(app, [*args, "--plot", str(tmp_path / "t.png"), "--plot-kind", "timeline"])
    assert r.exit_code == 2 and "placement" in r.stderr
    assert r.stderr.count("\n") == 1


def test_ledger_caption_names_the_gradient_side_and_fsdp2_caches(expl70: Explanation) -> None:
    """With on-demand gradients the caption says the peak is a max of the two sides, and
    FSDP2's stream caches are named as reserved memory."""
    import dataclasses

    from rich.console import Console

    from solver.report.explain.view import _ledger_table

    rows = [
        {**r, "grads_phase_activations_GB": 1.25, "comm_stream_cache_GB": 0.5}
        for r in expl70.memory_ledger
    ]
    con = Console(width=400, record=True)
    con.print(_ledger_table(dataclasses.replace(expl70, memory_ledger=rows)))
    text = " ".join(con.export_text().split())  # the caption wraps at the table's width
    assert "peak = max(activations, grads + one block's backward 1.25 GB)" in text
    assert "FSDP2 communication-stream caches (reserved, not allocated): 0.50 GB" in text
    con = Console(width=400, record=True)
    con.print(_ledger_table(expl70))
    assert "on demand" not in con.export_text()
