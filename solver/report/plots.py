"""Figures: the pipeline timeline, the placement map and the Pareto front (matplotlib).

Each ``plot_*`` function builds a :class:`matplotlib.figure.Figure` without pyplot (no global
figure registry, no GUI backend: the file is rendered by Agg for PNG and by the SVG backend
for SVG, chosen by ``path``'s suffix), writes it to ``path`` when given, and returns it so that
callers and tests can inspect its artists.  Artists that carry meaning have a ``gid``
(``stage0-F``, ``gpu``, ``idle``, ``nvlink-domain``, ``pcie-node``, ``front``), which the SVG
keeps as the element ``id``.  Files are written like every other output of the tool
(:func:`solver.io.write_bytes_atomic`: rendered in memory, then a temporary file in the same
folder renamed into place; links written through, FIFOs and devices refused, an existing
file's mode kept and a new one's from the umask).

matplotlib is an optional dependency (``pip install 'shardwise[plot]'``); without it the
functions raise :class:`~solver.errors.SpecError` with that hint.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import SpecError
from ..io import write_bytes_atomic
from ..specs import Cluster, InferenceWorkload, Model, Plan, Pool, TrainingWorkload

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..pareto import ParetoFront

__all__ = [
    "MAX_MAP_NODES",
    "PLOT_SUFFIXES",
    "check_plot_path",
    "plot_pareto",
    "plot_pipeline_timeline",
    "plot_placement_map",
    "save_figure",
]

#: File types the plots are written as, by suffix (Agg renders PNG, the SVG backend SVG).
PLOT_SUFFIXES = (".png", ".svg")

#: Raster resolution of PNG files: 150 dpi reads well on a laptop screen and in a README.
PNG_DPI = 150

#: The placement map draws one row per node; beyond this many rows the boxes are too small to
#: read at any figure size, so larger clusters are refused rather than drawn illegibly.
MAX_MAP_NODES = 128

#: Micro-batch numbers are written inside the timeline's blocks when a stage has at most this
#: many operations (beyond it the labels overlap).
MAX_LABELLED_OPS = 48

#: ... and only in blocks at least this share of the axis wide: a label of up to three digits at
#: 6 pt is ~0.15 in, and the full-width axis is ~9.5 in (zoom panels half of it), so a narrower
#: block would let its label run into the next one's (the zoomed panels showed a smear of digits).
LABEL_MIN_SHARE = 1 / 48
ZOOM_LABEL_MIN_SHARE = 1 / 24

#: Blocks get white edges (so consecutive micro-batches stay apart) up to this many operations
#: per stage; denser rows would be all edge.
MAX_EDGED_OPS = 200

#: Above this many micro-batches the timeline adds two zoomed panels, on the warm-up and the
#: cool-down, where the bubble is (at full scale it is a sliver).
ZOOM_ABOVE_MICRO_BATCHES = 16

# Colours: matplotlib's tab10 ("Tableau 10"), qualitative and colour-blind friendly.
_FORWARD = "tab:blue"
_BACKWARD = "tab:orange"
_DP_SYNC = "tab:red"
_OPTIMIZER = "tab:green"
_IDLE_FACE = "#eeeeee"
_HATCHES = ("", "//", "\\\\", "xx", "..", "oo", "++", "--", "||", "**")


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a Path if its suffix is a supported plot format, else SpecError."""
    p = Path(path)
    if p.suffix.lower() not in PLOT_SUFFIXES:
        raise SpecError(
            f"--plot: unsupported file type {p.suffix or '(none)'!r} of {str(p)!r}; "
            f"use one of {', '.join(PLOT_SUFFIXES)}"
        )
    return p


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise SpecError(
            "plots need matplotlib: pip install 'shardwise[plot]' (or matplotlib>=3.8)"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path, dpi: int = PNG_DPI) -> Path:
    """Render ``fig`` in memory (format from the suffix) and write it atomically, as every
    output file is written (:func:`solver.io.write_bytes_atomic`)."""
    p = check_plot_path(path)
    buf = io.BytesIO()
    # bbox "tight": long tick labels and outside legends stay inside the file.
    fig.savefig(buf, dpi=dpi, format=p.suffix.lower().lstrip("."), bbox_inches="tight")
    write_bytes_atomic(p, buf.getvalue())
    return p


def _save(fig: Figure, path: str | Path | None) -> None:
    if path is not None:
        save_figure(fig, path)


def layers_text(ranges: Sequence[tuple[int, int]]) -> str:
    """``[(0, 2), (8, 8)] -> '0-2,8'``: a one-block range is written as its block."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


#: How each intra-node link kind's outline is drawn on the placement map: (gid, legend label,
#: colour, line style).  Only NVLink/NVSwitch nodes form an NVLink domain; a PCIe node's GPUs
#: talk through the host, an AMD node's over xGMI (Infinity Fabric).
LineStyle = Literal["-", "--"]
_DOMAIN_STYLES: dict[str, tuple[str, str, str, LineStyle]] = {
    "nvswitch": ("nvlink-domain", "NVLink domain", "tab:purple", "-"),
    "nvlink": ("nvlink-domain", "NVLink domain", "tab:purple", "-"),
    "pcie": ("pcie-node", "PCIe node (no NVLink)", "tab:brown", "--"),
    "xgmi": ("xgmi-node", "xGMI node", "tab:olive", "-"),
}


def domain_style(pool: Pool) -> tuple[str, str, str, LineStyle]:
    """(gid, label, colour, line style) of ``pool``'s outline on the placement map."""
    return _DOMAIN_STYLES[pool.intra_node.kind]


def _time_unit(seconds: float) -> tuple[float, str]:
    """Scale and unit for an axis whose largest value is ``seconds``."""
    if seconds < 1e-3:
        return 1e6, "\u00b5s"
    if seconds < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


def _stage_colors(n: int) -> list[Any]:
    """n distinct qualitative colours: tab10 up to 10, tab20 up to 20, then tab20 cycled."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    size = 10 if n <= 10 else 20
    return [cmap(i % size) for i in range(n)]


# ------------------------------------------------------------------------------------------
# Pipeline timeline
# ------------------------------------------------------------------------------------------
def plot_pipeline_timeline(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    plan: Plan,
    path: str | Path | None = None,
) -> Figure:
    """One training step as the evaluator simulates it: one row per pipeline stage.

    Forward (blue) and backward (orange) blocks come from the evaluator's event simulation
    (:attr:`solver.evaluate.Report.pipeline`, :func:`solver.costmodel.simulate_pipeline`),
    which plays Megatron-LM's 1F1B / interleaved order over the plan's real per-stage times and
    p2p links; white gaps are the bubble.  After the last backward come the exposed DP gradient
    sync (red) and the optimizer step (green), so the x axis ends at the step time.  With the
    interleaved schedule later chunks are drawn lighter.

    Parameters
    ----------
    model, cluster, workload, plan
        A training instance and plan (the first replica group is drawn; all replicas of a
        group run the same schedule).
    path
        Write the figure here (``.png`` or ``.svg``); None writes nothing.

    Raises
    ------
    SpecError
        An inference workload (there is no pipeline schedule to simulate: use the placement
        map), or a plan the evaluator cannot price.
    """
    if not isinstance(workload, TrainingWorkload) or plan.kind != "training":
        raise SpecError(
            "timeline: needs a training workload and plan (inference is not simulated as a "
            "pipeline schedule); use the placement map (--plot-kind placement)"
        )
    if path is not None:
        check_plot_path(path)
    from ..evaluate import evaluate
    from .render import fmt_pct, fmt_time

    report = evaluate(model, cluster, workload, plan)
    sim = report.pipeline
    if sim is None or report.step_time_s is None:
        raise SpecError(
            "timeline: the plan could not be priced: " + "; ".join(report.violations[:3])
        )
    grp = plan.replica_groups[0]
    p = grp.pp
    v = grp.virtual_stages if grp.schedule == "interleaved" else 1
    m = grp.num_micro_batches or 1
    step = float(report.step_time_s)
    makespan = float(sim.makespan_s)
    dp_exposed = float(report.details.get("dp_exposed_s", 0.0))
    scale, unit = _time_unit(step)

    # (stage, kind, chunk) -> [(start, width)]
    blocks: dict[tuple[int, str, int], list[tuple[float, float]]] = {}
    labels: list[tuple[float, float, int, int]] = []  # (x centre, width, stage, micro-batch)
    for e in sim.events:
        blocks.setdefault((e.stage, e.kind, e.chunk), []).append(
            (e.start * scale, (e.end - e.start) * scale)
        )
        labels.append(((e.start + e.end) / 2 * scale, (e.end - e.start) * scale, e.stage,
                       e.micro_batch))  # fmt: skip
    tail = [
        ("DP sync (exposed)", makespan, dp_exposed, _DP_SYNC, "dp-sync"),
        ("optimizer step", makespan + dp_exposed, step - makespan - dp_exposed, _OPTIMIZER,
         "optimizer"),
    ]  # fmt: skip
    ops_per_stage = len(sim.events) / p
    zoom = m > ZOOM_ABOVE_MICRO_BATCHES

    def draw(ax: Any, suffix: str, label_ops: bool, min_share: float = LABEL_MIN_SHARE) -> int:
        """Draw the blocks on ``ax``; returns how many micro-batch numbers were written."""
        written = 0
        for (s, kind, chunk), xr in sorted(blocks.items()):
            color = _FORWARD if kind == "F" else _BACKWARD
            alpha = 1.0 - 0.45 * chunk / max(1, v - 1) if v > 1 else 1.0
            dense = ops_per_stage > MAX_EDGED_OPS and not suffix
            coll = ax.broken_barh(
                xr, (s - 0.4, 0.8), facecolors=color, edgecolors="white",
                linewidth=0.0 if dense else 0.4, alpha=alpha,
            )  # fmt: skip
            coll.set_gid(f"stage{s}-{kind}" + (f"-c{chunk}" if v > 1 else "") + suffix)
        if label_ops:
            lo, hi = ax.get_xlim()
            for x, w, s, mb in labels:
                if lo <= x <= hi and w >= min_share * (hi - lo):
                    ax.text(x, s, str(mb), ha="center", va="center", fontsize=6, color="white",
                            clip_on=True, gid="micro-batch")  # fmt: skip
                    written += 1
        for _, start, width, color, gid in tail:
            if width > 0:
                coll = ax.broken_barh(
                    [(start * scale, width * scale)], (-0.45, p - 0.1), facecolors=color,
                    alpha=0.8,
                )  # fmt: skip
                coll.set_gid(gid + suffix)
        ax.set_ylim(p - 0.5, -0.5)  # stage 0 on top
        ax.grid(axis="x", alpha=0.3)
        return written

    ticks = []
    for s, st in enumerate(grp.stages):
        ticks.append(f"stage {s}\nTP{st.tp} {st.pool}\nlayers {layers_text(st.layer_ranges)}")
    row_h = 0.55 * p
    fig = _new_figure(11.0, 1.4 + row_h + (1.0 + row_h if zoom else 0.0))
    if zoom:
        grid = fig.add_gridspec(2, 2)
        ax = fig.add_subplot(grid[0, :])
        zooms = [fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    else:
        ax = fig.add_subplot()
        zooms = []
    ax.set_xlim(0, step * scale * 1.01)
    draw(ax, "", ops_per_stage <= MAX_LABELLED_OPS)
    ax.set_yticks(range(p), ticks, fontsize=7)
    ax.set_xlabel(f"time within one training step ({unit})")
    if zooms:
        # Warm-up and cool-down, where the bubble is: about 2p + 2 micro-batches of the
        # busiest stage on each side.
        per_mb = max(sim.busy_s) / m * scale
        width = min(step * scale / 2, (2 * p + 2) * per_mb)
        windows = [(0.0, width), (makespan * scale - width, step * scale)]
        for zax, (lo, hi), name in zip(zooms, windows, ("warm-up", "cool-down"), strict=True):
            zax.set_xlim(lo, hi)
            numbered = draw(zax, f"-{name}", True, ZOOM_LABEL_MIN_SHARE)
            zax.set_yticks(range(p), [f"stage {s}" for s in range(p)], fontsize=7)
            zax.set_xlabel(f"{name} ({unit})" + ("; numbers = micro-batch" if numbered else ""))
            zax.set_title(f"zoom: {name}", fontsize=8)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=_FORWARD, label="forward"),
        Patch(facecolor=_BACKWARD, label="backward"),
        Patch(facecolor="white", edgecolor="#999999", label="idle (bubble)"),
    ]
    handles += [Patch(facecolor=c, label=lab) for lab, _, w, c, _ in tail if w > 0]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False,
               fontsize=8)  # fmt: skip
    sched = grp.schedule + (f", v={v}" if v > 1 else "")
    # The same figures, formatted by the same functions, as the report's summary
    # (solver.report.render): step time, pipeline bubble, tokens/s.
    ax.set_title(
        f"{model.name} on {cluster.name}: {sched}, PP={p}, DP={grp.count}, {m} micro-batches "
        f"of {grp.micro_batch_size}\nstep {fmt_time(step)}, bubble "
        f"{fmt_pct(report.bubble_fraction)}, {report.tokens_per_s:,.0f} tokens/s",
        fontsize=10,
    )
    _save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------
# Placement map
# ------------------------------------------------------------------------------------------
def plot_placement_map(cluster: Cluster, plan: Plan, path: str | Path | None = None) -> Figure:
    """Every GPU of the cluster, one row per node: coloured by pipeline stage, hatched and
    labelled by replica; idle GPUs grey; each NVLink domain outlined.

    Stages of all replica groups are numbered together (group 0's stages first), each with
    its own colour (tab10, or tab20 beyond ten stages).  Labels read ``s<stage> r<replica>``
    (``g<group>`` first when the plan has several groups).  GPU patches have ``gid='gpu'``,
    idle ones ``'idle'``, the domain outlines ``'nvlink-domain'``.

    Raises
    ------
    SpecError
        More than :data:`MAX_MAP_NODES` nodes, or a device naming a node or GPU that the
        cluster does not have.
    """
    if path is not None:
        check_plot_path(path)
    from matplotlib.patches import Patch, Rectangle

    nodes: list[tuple[str, int, str]] = []  # (node name, gpus, pool)
    for pool in cluster.pools:
        for i in range(pool.nodes):
            nodes.append((f"{pool.name}-{i}", pool.gpus_per_node, pool.name))
    if len(nodes) > MAX_MAP_NODES:
        raise SpecError(
            f"placement map: cluster {cluster.name} has {len(nodes)} nodes; the map draws one "
            f"row per node, at most {MAX_MAP_NODES}"
        )
    row_of = {name: r for r, (name, _, _) in enumerate(nodes)}
    width = max(g for _, g, _ in nodes)
    multi = len(plan.replica_groups) > 1
    # device -> (colour index, replica, label)
    owners: dict[tuple[str, int], tuple[int, int, str]] = {}
    legend: list[tuple[int, str]] = []
    index = 0
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            layers = layers_text(st.layer_ranges)
            prefix = f"g{g} " if multi else ""
            legend.append((index, f"{prefix}stage {s}: {st.pool} TP{st.tp}, layers {layers}"))
            for r, devs in enumerate(st.devices):
                for node, gpu in devs:
                    if node not in row_of or not 0 <= int(gpu) < nodes[row_of[node]][1]:
                        raise SpecError(
                            f"placement map: device [{node!r}, {gpu}] is not a GPU of cluster "
                            f"{cluster.name}"
                        )
                    owners[(node, int(gpu))] = (index, r, f"{prefix}s{s}\nr{r}")
            index += 1
    colors = _stage_colors(max(1, index))

    fig = _new_figure(2.2 + 0.75 * width, 1.6 + 0.5 * len(nodes))
    ax = fig.add_subplot()
    for name, gpus, _ in nodes:
        y = row_of[name]
        for gpu in range(gpus):
            owner = owners.get((name, gpu))
            if owner is None:
                ax.add_patch(
                    Rectangle((gpu + 0.05, y + 0.05), 0.9, 0.9, facecolor=_IDLE_FACE,
                              edgecolor="#bbbbbb", linewidth=0.6, gid="idle")
                )  # fmt: skip
                continue
            color_i, replica, label = owner
            ax.add_patch(
                Rectangle((gpu + 0.05, y + 0.05), 0.9, 0.9, facecolor=colors[color_i],
                          edgecolor="black", linewidth=0.6, hatch=_HATCHES[replica % len(_HATCHES)],
                          gid="gpu")
            )  # fmt: skip
            ax.text(gpu + 0.5, y + 0.5, label, ha="center", va="center", fontsize=6,
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0})  # fmt: skip
    # NVLink domains: nvlink_domain_nodes consecutive nodes of a pool share one NVLink fabric;
    # a PCIe (or xGMI) pool has no NVLink: each node is outlined as what it is.
    outlines: dict[str, tuple[str, str, LineStyle]] = {}  # gid -> (label, colour, style)
    for pool in cluster.pools:
        gid, label, color, style = domain_style(pool)
        outlines[gid] = (label, color, style)
        dom = pool.nvlink_domain_nodes if gid == "nvlink-domain" else 1
        for first in range(0, pool.nodes, dom):
            y0 = row_of[f"{pool.name}-{first}"]
            ax.add_patch(
                Rectangle((-0.02, y0 - 0.02), pool.gpus_per_node + 0.04, dom + 0.04, fill=False,
                          edgecolor=color, linestyle=style, linewidth=1.8, gid=gid)
            )  # fmt: skip
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(len(nodes) + 0.1, -0.1)
    ax.set_xticks([i + 0.5 for i in range(width)], [str(i) for i in range(width)], fontsize=7)
    ax.set_yticks(
        [r + 0.5 for r in range(len(nodes))],
        [name for name, _, _ in nodes],
        fontsize=7,
    )
    ax.set_xlabel("GPU index within the node")
    ax.set_aspect("equal")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    used = sum(grp.count * sum(st.tp for st in grp.stages) for grp in plan.replica_groups)
    shape = " + ".join(
        f"{grp.count}x(PP{grp.pp}, TP{'/'.join(str(t) for t in sorted({st.tp for st in grp.stages}))})"
        for grp in plan.replica_groups
    )
    gpu_types = ", ".join(f"{p.name} = {p.gpu_name}" for p in cluster.pools)
    kinds = ", ".join(
        f"{c[4:] if c.startswith('tab:') else c} = {lab}" for lab, c, _ in outlines.values()
    )
    ax.set_title(
        f"Placement on {cluster.name} ({gpu_types}): {shape}\n{used} of {cluster.num_gpus} GPUs "
        f"used (colour = stage, hatch/label = replica, {kinds})",
        fontsize=9,
    )
    handles: list[Any] = [
        Patch(facecolor=colors[i], edgecolor="black", label=t) for i, t in legend[:20]
    ]
    handles.append(Patch(facecolor=_IDLE_FACE, edgecolor="#bbbbbb", label="idle"))
    for lab, color, style in outlines.values():
        handles.append(
            Patch(fill=False, edgecolor=color, linestyle=style, linewidth=1.8, label=lab)
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              frameon=False)  # fmt: skip
    _save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------
# Pareto front
# ------------------------------------------------------------------------------------------
def plot_pareto(front: ParetoFront, path: str | Path | None = None) -> Figure:
    """The Pareto front (blue line, labelled with each point's plan shape) and the dominated
    points the sweep also found (grey crosses).  The front's line has ``gid='front'``."""
    if path is not None:
        check_plot_path(path)
    fig = _new_figure(11.0, 5.0)
    grid = fig.add_gridspec(1, 2, width_ratios=(3, 2))
    ax = fig.add_subplot(grid[0, 0])
    key = fig.add_subplot(grid[0, 1])
    key.set_axis_off()
    xs = [pt.x for pt in front.points]
    ys = [pt.tokens_per_s for pt in front.points]
    (line,) = ax.plot(xs, ys, "-o", color="tab:blue", label="Pareto front", zorder=3)
    line.set_gid("front")
    dominated = front.dominated
    if dominated:
        (dots,) = ax.plot(
            [pt.x for pt in dominated], [pt.tokens_per_s for pt in dominated], "x",
            color="tab:gray", label="dominated", zorder=2,
        )  # fmt: skip
        dots.set_gid("dominated")
    if front.x_limit is not None:
        ax.axvline(front.x_limit, color="tab:red", linestyle="--", linewidth=1,
                   label=f"workload TPOT SLO ({front.x_limit:g} ms)")  # fmt: skip
    # Points are numbered on the plot and their plans listed beside it: plan shapes are too
    # long to sit next to the points without overlapping.
    lines = []
    for i, pt in enumerate(front.points, start=1):
        ax.annotate(str(i), (pt.x, pt.tokens_per_s), textcoords="offset points",
                    xytext=(4, -11), fontsize=8, color="tab:blue")  # fmt: skip
        lines.append(f"{i}. {pt.shape}")
    key.text(0.0, 1.0, "\n".join(lines) or "no feasible point", va="top", ha="left",
             fontsize=7, family="monospace", wrap=True, transform=key.transAxes)  # fmt: skip
    key.set_title("plans on the front", fontsize=9, loc="left")
    ax.set_xlabel(front.x_label)
    ax.set_ylabel(front.y_label)
    trade = "latency vs throughput" if front.kind == "inference" else "throughput vs resources"
    ax.set_title(
        f"{front.model} on {front.cluster}: {trade}\n{len(front.points)} non-dominated of "
        f"{len(front.solved)} solved points",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if not xs:
        ax.text(0.5, 0.5, "no feasible point", transform=ax.transAxes, ha="center")
    _save(fig, path)
    return fig


def figure_artist_gids(fig: Figure) -> Sequence[str]:
    """Every ``gid`` set on an artist of ``fig`` (patches, collections, lines), for tests."""
    out: list[str] = []
    for ax in fig.axes:
        for artist in list(ax.patches) + list(ax.collections) + list(ax.lines):
            gid = artist.get_gid()
            if gid:
                out.append(str(gid))
    return out
