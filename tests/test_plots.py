"""Figures of :mod:`solver.report.plots`: files are written and the artists say what they should.

Plans are built by hand on the tiny bundled instances so the expected counts are derivable:
tiny-gpt has 4 blocks; on tiny-2x4-a100 (2 nodes x 4 A100) a PP=2, TP=1, DP=2 plan with
micro-batch 1 and global batch 16 runs m = 16 / (2 x 1) = 8 micro-batches, so each stage row
of the timeline has 8 forward and 8 backward blocks, and the placement map has 2 x 2 x 1 = 4
GPU patches and 8 - 4 = 4 idle ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from builders import training_plan

from solver.construction import build_stages
from solver.errors import SpecError
from solver.io import load_cluster, load_model, load_workload
from solver.pareto import ParetoFront, ParetoPoint
from solver.report.plots import (
    MAX_MAP_NODES,
    plot_pareto,
    plot_pipeline_timeline,
    plot_placement_map,
)
from solver.specs import Plan, ReplicaGroup, Stage, TrainingWorkload

pytest.importorskip("matplotlib")

MODEL = load_model("tiny-gpt")
CLUSTER = load_cluster("tiny-2x4-a100")
WORKLOAD = load_workload("train-tiny")
assert isinstance(WORKLOAD, TrainingWorkload)


def _plan(
    *, pp: int, tp: int, dp: int, micro_batch: int = 1, workload: TrainingWorkload = WORKLOAD
) -> Plan:
    layers = [MODEL.num_layers // pp] * pp
    stages = build_stages(CLUSTER, [(dp, [("a100", tp, n) for n in layers])])[0]
    m = workload.global_batch_size // (dp * micro_batch)
    return training_plan(stages, count=dp, mb=micro_batch, m=m)


def _collections(fig: Any, axis: int = 0) -> dict[str, Any]:
    return {c.get_gid(): c for c in fig.axes[axis].collections if c.get_gid()}


def _check_file(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    if path.suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert b"<svg" in data[:2000]


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_timeline_has_one_row_per_stage_with_every_micro_batch(tmp_path: Path, suffix: str) -> None:
    """PP=2, m=8: rows for stages 0 and 1, each with 8 forward and 8 backward blocks."""
    plan = _plan(pp=2, tp=1, dp=2)
    path = tmp_path / f"timeline{suffix}"
    fig = plot_pipeline_timeline(MODEL, CLUSTER, WORKLOAD, plan, path)
    _check_file(path)
    colls = _collections(fig)
    stage_gids = {g for g in colls if g.startswith("stage")}
    assert stage_gids == {"stage0-F", "stage0-B", "stage1-F", "stage1-B"}
    for gid in stage_gids:
        assert len(colls[gid].get_paths()) == 8
        # Each row sits at its own y: stage s is centred on y = s.
        ys = {
            round(float(p.vertices[:, 1].min() + p.vertices[:, 1].max()) / 2, 6)
            for p in colls[gid].get_paths()
        }
        assert ys == {float(gid[5])}
    assert len(fig.axes) == 1  # m = 8 <= 16: no zoom panels
    if suffix == ".svg":
        text = path.read_text()
        assert set(re.findall(r'id="(stage\d-[FB])"', text)) == stage_gids


def test_timeline_blocks_follow_the_simulation() -> None:
    """Block extents are the evaluator's events: the first forward starts at 0 on stage 0 and
    the last backward of stage 0 ends at the pipeline makespan (no later block)."""
    from solver.evaluate import evaluate

    plan = _plan(pp=2, tp=1, dp=2)
    sim = evaluate(MODEL, CLUSTER, WORKLOAD, plan).pipeline
    assert sim is not None
    fig = plot_pipeline_timeline(MODEL, CLUSTER, WORKLOAD, plan)
    colls = _collections(fig)
    scale = 1e6 if sim.makespan_s < 1e-3 else 1e3 if sim.makespan_s < 1 else 1.0
    starts = [float(p.vertices[:, 0].min()) for p in colls["stage0-F"].get_paths()]
    ends = [float(p.vertices[:, 0].max()) for p in colls["stage0-B"].get_paths()]
    assert min(starts) == pytest.approx(0.0, abs=1e-12)
    assert max(ends) == pytest.approx(sim.makespan_s * scale, rel=1e-9)


def test_timeline_zooms_on_long_schedules() -> None:
    """With 64 micro-batches the figure adds warm-up and cool-down panels with the same rows."""
    wl = WORKLOAD.model_copy(update={"global_batch_size": 128})
    plan = _plan(pp=2, tp=1, dp=2, workload=wl)
    fig = plot_pipeline_timeline(MODEL, CLUSTER, wl, plan)
    assert len(fig.axes) == 3
    assert {g for g in _collections(fig, 1) if g.startswith("stage")} == {
        "stage0-F-warm-up", "stage0-B-warm-up", "stage1-F-warm-up", "stage1-B-warm-up",
    }  # fmt: skip
    assert len(_collections(fig)["stage1-F"].get_paths()) == 64


def test_timeline_interleaved_draws_each_chunk() -> None:
    """Interleaved, v=2: stage s holds chunks [s] and [s+2]; each chunk row has m blocks."""
    base = _plan(pp=2, tp=1, dp=2)
    grp = base.replica_groups[0]
    stages = [
        Stage(chunks=[(s, s), (s + 2, s + 2)], pool="a100", tp=1, devices=st.devices)
        for s, st in enumerate(grp.stages)
    ]
    group = grp.model_copy(
        update={"schedule": "interleaved", "virtual_stages": 2, "stages": stages}
    )
    wl = WORKLOAD.model_copy(update={"schedules": ["1f1b", "interleaved"]})
    plan = Plan(kind="training", replica_groups=[group])
    fig = plot_pipeline_timeline(MODEL, CLUSTER, wl, plan)
    colls = _collections(fig)
    for s in (0, 1):
        for kind in "FB":
            for c in (0, 1):
                assert len(colls[f"stage{s}-{kind}-c{c}"].get_paths()) == 8


def test_timeline_refuses_inference() -> None:
    """Inference has no simulated schedule: a one-line SpecError pointing at the placement map."""
    wl = load_workload("infer-chat-slo")
    stages = build_stages(CLUSTER, [(1, [("a100", 1, 4)])])[0]
    plan = Plan(
        kind="inference", replica_groups=[ReplicaGroup(count=1, batch_size=1, stages=stages)]
    )
    with pytest.raises(SpecError, match="placement"):
        plot_pipeline_timeline(MODEL, CLUSTER, wl, plan)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_placement_map_draws_every_gpu(tmp_path: Path, suffix: str) -> None:
    """4 used GPU patches (PP2 x DP2 x TP1), 4 idle, 2 NVLink-domain outlines (one per
    node), and one colour per stage."""
    plan = _plan(pp=2, tp=1, dp=2)
    path = tmp_path / f"placement{suffix}"
    fig = plot_placement_map(CLUSTER, plan, path)
    _check_file(path)
    patches = fig.axes[0].patches
    gpus = [p for p in patches if p.get_gid() == "gpu"]
    assert len(gpus) == 4
    assert len([p for p in patches if p.get_gid() == "idle"]) == 4
    assert len([p for p in patches if p.get_gid() == "nvlink-domain"]) == 2
    assert len({tuple(p.get_facecolor()) for p in gpus}) == 2
    assert len({p.get_hatch() for p in gpus}) == 2  # two replicas, two hatches
    if suffix == ".svg":
        assert path.read_text().count('id="gpu') == 4


def test_placement_map_full_node_tp_and_domains() -> None:
    """TP=4 x PP=2 x DP=1 fills 8 GPUs: no idle patch; on nvl72 (36 trays, domains of 18) a
    TP=8 group spans two trays of one domain and the map outlines 2 domains."""
    plan = _plan(pp=2, tp=4, dp=1)
    fig = plot_placement_map(CLUSTER, plan)
    gids = [p.get_gid() for p in fig.axes[0].patches]
    assert gids.count("gpu") == 8 and gids.count("idle") == 0

    nvl = load_cluster("nvl72")
    stages = build_stages(nvl, [(1, [("gb200", 8, 2)] * 2)])[0]
    group = ReplicaGroup(count=1, micro_batch_size=1, num_micro_batches=16, stages=stages)
    fig = plot_placement_map(nvl, Plan(kind="training", replica_groups=[group]))
    gids = [p.get_gid() for p in fig.axes[0].patches]
    assert gids.count("gpu") == 16
    assert gids.count("idle") == nvl.num_gpus - 16
    assert gids.count("nvlink-domain") == 2


def test_placement_map_refuses_huge_clusters() -> None:
    """More than MAX_MAP_NODES nodes is refused with a one-line error, not drawn illegibly."""
    big = CLUSTER.model_copy(
        update={"pools": [CLUSTER.pools[0].model_copy(update={"nodes": MAX_MAP_NODES + 2})]}
    )
    with pytest.raises(SpecError, match="at most"):
        plot_placement_map(big, _plan(pp=2, tp=1, dp=2))


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    """Only .png and .svg are written; anything else is a SpecError naming --plot."""
    with pytest.raises(SpecError, match="--plot"):
        plot_placement_map(CLUSTER, _plan(pp=2, tp=1, dp=2), tmp_path / "map.jpg")
    assert not (tmp_path / "map.jpg").exists()


def _point(x: float, tps: float, plan: Plan) -> ParetoPoint:
    return ParetoPoint(x, tps, None, "OPTIMAL", 8, None, None, x, None, f"shape {x:g}", plan)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_pareto_plot_draws_front_and_dominated(tmp_path: Path, suffix: str) -> None:
    """The front line passes through the front's points in x order; dominated points are
    drawn separately, and the workload's SLO as a vertical line."""
    plan = _plan(pp=2, tp=1, dp=2)
    front_pts = [_point(10.0, 100.0, plan), _point(20.0, 300.0, plan)]
    dominated = _point(25.0, 200.0, plan)
    front = ParetoFront(
        model="m", cluster="c", kind="inference", x_key="tpot_ms", x_label="TPOT (ms)",
        y_key="tokens_per_s", y_label="tokens/s", points=front_pts,
        solved=[*front_pts, dominated], x_limit=22.0,
    )  # fmt: skip
    path = tmp_path / f"pareto{suffix}"
    fig = plot_pareto(front, path)
    _check_file(path)
    lines = {ln.get_gid(): ln for ln in fig.axes[0].lines if ln.get_gid()}
    assert list(lines["front"].get_xdata()) == [10.0, 20.0]
    assert list(lines["front"].get_ydata()) == [100.0, 300.0]
    assert list(lines["dominated"].get_xdata()) == [25.0]
    assert any(list(ln.get_xdata()) == [22.0, 22.0] for ln in fig.axes[0].lines)
