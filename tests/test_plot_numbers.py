"""The numbers a figure draws are the report's (issue 18, item 10), and figures are written like
every other output file.

Each test reads the artists of the matplotlib figure -- texts, bars, patches -- and compares
them with the evaluator's report or the sweep's records: the timeline's title (step time,
bubble, tokens/s, formatted by the report's own functions), the bubble as *drawn* (idle area
of the bars over the pipeline's span), the heat map's cell texts (one number format) and its
no-plan cells (hatched and saying why), and the placement map's outlines (a PCIe node is not an
NVLink domain).  The bundled instances are used: tiny-gpt (4 blocks) on tiny-2x4-a100 and on
pcie-8x-l40s.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from builders import training_plan

from solver.construction import build_stages
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model, load_workload
from solver.report.plots import (
    layers_text,
    plot_pipeline_timeline,
    plot_placement_map,
    save_figure,
)
from solver.report.render import fmt_pct, fmt_time
from solver.specs import Plan, TrainingWorkload
from solver.sweep.summary import cell_note, heatmap_figure, plot_heatmap

pytest.importorskip("matplotlib")

MODEL = load_model("tiny-gpt")
A100 = load_cluster("tiny-2x4-a100")
L40S = load_cluster("pcie-8x-l40s")
WORKLOAD = load_workload("train-tiny")
assert isinstance(WORKLOAD, TrainingWorkload)


def _plan(cluster: Any, pool: str, *, pp: int, dp: int, sizes: list[int] | None = None) -> Plan:
    sizes = sizes or [MODEL.num_layers // pp] * pp
    stages = build_stages(cluster, [(dp, [(pool, 1, n) for n in sizes])])[0]
    return training_plan(stages, count=dp, mb=1, m=WORKLOAD.global_batch_size // dp)


def _texts(fig: Any, gid: str | None = None) -> list[Any]:
    return [t for ax in fig.axes for t in ax.texts if gid is None or t.get_gid() == gid]


# ------------------------------------------------------------------------------------------
# Pipeline timeline
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[2, 2], [3, 1], [1, 3]])
def test_timeline_title_and_drawn_bubble_match_the_report(sizes: list[int]) -> None:
    """Title numbers are the report's; the idle share of the drawn bars is its bubble."""
    plan = _plan(A100, "a100", pp=2, dp=2, sizes=sizes)
    rep = evaluate(MODEL, A100, WORKLOAD, plan)
    fig = plot_pipeline_timeline(MODEL, A100, WORKLOAD, plan)
    title = fig.axes[0].get_title()
    assert rep.step_time_s is not None and rep.tokens_per_s is not None
    assert rep.bubble_fraction is not None
    assert f"step {fmt_time(rep.step_time_s)}" in title
    assert f"bubble {fmt_pct(rep.bubble_fraction)}" in title
    assert f"{rep.tokens_per_s:,.0f} tokens/s" in title
    # The bubble as drawn: 1 - (bar area) / (stages x the pipeline's span), read off the bars.
    bars = [c for c in fig.axes[0].collections if re.fullmatch(r"stage\d+-[FB]", str(c.get_gid()))]
    busy = sum(w for c in bars for _, w in _spans(c))
    ends = [x + w for c in bars for x, w in _spans(c)]
    starts = [x for c in bars for x, _ in _spans(c)]
    span = max(ends) - min(0.0, min(starts))
    drawn = 1 - busy / (len(plan.replica_groups[0].stages) * span)
    assert drawn == pytest.approx(rep.bubble_fraction, abs=1e-9)


def _spans(coll: Any) -> list[tuple[float, float]]:
    """(x, width) of every bar of a broken_barh collection."""
    out = []
    for path in coll.get_paths():
        xs = path.vertices[:, 0]
        out.append((float(xs.min()), float(xs.max() - xs.min())))
    return out


def test_timeline_stage_labels_write_single_blocks_once() -> None:
    """``layers 3`` for a one-block stage, ``layers 0-2`` for a range (not ``3-3``)."""
    plan = _plan(A100, "a100", pp=2, dp=2, sizes=[3, 1])
    fig = plot_pipeline_timeline(MODEL, A100, WORKLOAD, plan)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[0].endswith("layers 0-2") and ticks[1].endswith("layers 3")
    assert layers_text([(0, 0), (8, 8), (16, 19)]) == "0,8,16-19"


def test_timeline_micro_batch_numbers_never_overlap() -> None:
    """Every number written sits in a block at least LABEL_MIN_SHARE of its axis wide, and no
    two numbers of one row are closer than that (the zoomed panels once smeared digits)."""
    plan = _plan(A100, "a100", pp=2, dp=1)  # 16 micro-batches: 64 ops, no zoom
    wl = WORKLOAD.model_copy(update={"global_batch_size": 64})
    plan64 = _plan(A100, "a100", pp=2, dp=1)
    plan64 = plan64.model_copy(
        update={
            "replica_groups": [
                plan64.replica_groups[0].model_copy(update={"num_micro_batches": 64})
            ]
        }
    )
    for p, w in ((plan, WORKLOAD), (plan64, wl)):
        fig = plot_pipeline_timeline(MODEL, A100, w, p)
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            rows: dict[float, list[float]] = {}
            for t in ax.texts:
                if t.get_gid() == "micro-batch":
                    x, y = t.get_position()
                    rows.setdefault(y, []).append(x)
            for xs in rows.values():
                xs.sort()
                gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
                assert all(g >= (hi - lo) / 48 - 1e-12 for g in gaps)


# ------------------------------------------------------------------------------------------
# Placement map
# ------------------------------------------------------------------------------------------
def test_pcie_node_is_not_labelled_nvlink() -> None:
    """pcie-8x-l40s (one node of 8 L40S on PCIe): outlined and labelled as a PCIe node."""
    plan = _plan(L40S, "l40s", pp=1, dp=8)
    fig = plot_placement_map(L40S, plan)
    ax = fig.axes[0]
    gids = [p.get_gid() for p in ax.patches]
    assert gids.count("pcie-node") == 1 and "nvlink-domain" not in gids
    words = ax.get_title() + " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "NVLink domain" not in words and "PCIe node" in words


def test_nvlink_nodes_keep_their_domains() -> None:
    plan = _plan(A100, "a100", pp=2, dp=2)
    fig = plot_placement_map(A100, plan)
    gids = [p.get_gid() for p in fig.axes[0].patches]
    assert gids.count("nvlink-domain") == 2 and "pcie-node" not in gids  # 2 nodes, 1 each


# ------------------------------------------------------------------------------------------
# Sweep heat map
# ------------------------------------------------------------------------------------------
def _rec(model: str, cluster: str, status: str, tokens: float | None, **kw: Any) -> dict[str, Any]:
    return {
        "key": f"{model}|{cluster}|w", "kind": "training", "model": model, "cluster": cluster,
        "status": status, "tokens_per_s": tokens, "params_b": kw.pop("params_b", 1.0),
        "num_gpus": 8, "cost_per_hour": None, "cost_per_mtoken": kw.pop("cost", None), **kw,
    }  # fmt: skip


RECORDS = [
    _rec("small", "a", "OPTIMAL", 15_470_627.0, params_b=0.1),
    _rec("small", "b", "FEASIBLE", 94_621.2, params_b=0.1),
    _rec("small", "c", "INFEASIBLE", None, params_b=0.1),
    _rec("big", "a", "UNKNOWN", None, params_b=9.0),
    _rec("big", "b", "OPTIMAL", 52.3691, params_b=9.0),
]


def test_heatmap_cells_are_the_records_in_one_format() -> None:
    fig = heatmap_figure(RECORDS)
    values = sorted(t.get_text() for t in _texts(fig, "cell-value"))
    assert values == sorted(["15.5M", "94.6k", "52.4"])  # three significant digits, each
    notes = sorted(t.get_text() for t in _texts(fig, "cell-note"))
    # (small, c): proven infeasible; (big, a): unknown; (big, c): the sweep has no such case.
    assert notes == ["infeasible", "no case", "unknown"]
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "no-plan"]
    assert len(hatched) == 3 and all(p.get_hatch() for p in hatched)
    # Each note sits on a hatched cell: same centre.
    centres = {(p.get_x() + 0.5, p.get_y() + 0.5) for p in hatched}
    assert {tuple(t.get_position()) for t in _texts(fig, "cell-note")} == centres


def test_heatmap_single_value_is_coloured_not_grey() -> None:
    """One finite value: the colour norm spans a decade around it (not vmin == vmax)."""
    fig = heatmap_figure([_rec("m", "a", "OPTIMAL", 1000.0)])
    image = fig.axes[0].images[0]
    lo, hi = image.norm.vmin, image.norm.vmax
    assert lo < 1000.0 < hi
    rgba = image.to_rgba(image.get_array())[0, 0]
    grey = (0xD0 / 255,) * 3
    assert tuple(round(float(c), 3) for c in rgba[:3]) != tuple(round(c, 3) for c in grey)


def test_cell_note_names_the_statuses() -> None:
    assert cell_note([]) == "no case"
    assert cell_note([_rec("m", "a", "INFEASIBLE", None)]) == "infeasible"
    assert cell_note([_rec("m", "a", "INFEASIBLE", None), _rec("m", "a", "TIMEOUT", None)]) == (
        "infeasible/timeout"
    )
    assert cell_note([_rec("m", "a", "OPTIMAL", 5.0)]) == "n/a"  # planned, metric missing


# ------------------------------------------------------------------------------------------
# Files: written atomically, mode kept or from the umask, links through, FIFOs refused
# ------------------------------------------------------------------------------------------
def _figure() -> Any:
    return plot_placement_map(A100, _plan(A100, "a100", pp=2, dp=2))


def test_new_plot_file_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        save_figure(_figure(), tmp_path / "map.png")
        plot_heatmap(RECORDS, tmp_path / "heat.svg")
    finally:
        os.umask(old)
    for name in ("map.png", "heat.svg"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_existing_plot_keeps_its_mode_and_a_link_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    target.chmod(0o604)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    save_figure(_figure(), link)
    assert link.is_symlink() and target.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(target.stat().st_mode) == 0o604


def test_plot_onto_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="pipe.png"):
        save_figure(_figure(), fifo)
    with pytest.raises(SpecError, match="pipe.png"):
        plot_heatmap(RECORDS, fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
