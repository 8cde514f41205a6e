"""Summaries of a sweep directory: the best plan per model x cluster, and a heat map.

"Best" is per workload kind (training tokens/s and inference output tokens/s are not
comparable): among the cases of a (kind, model, cluster) that have a plan (OPTIMAL or
FEASIBLE), the one with the most tokens/s, ties broken by fewer GPUs, then lower cost.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .executors import FAILURE_STATUSES
from .store import CASES_FILE, RESULTS_FILE, read_results

__all__ = [
    "PLOT_METRICS",
    "BestRow",
    "SweepDirectory",
    "best_rows",
    "cell_note",
    "heatmap_figure",
    "load_directory",
    "plot_heatmap",
]

_PLANNED = ("OPTIMAL", "FEASIBLE")
#: Heat-map colour metrics: record field -> (label, higher is better).
PLOT_METRICS: dict[str, tuple[str, bool]] = {
    "tokens_per_s": ("tokens/s (best plan)", True),
    "cost_per_mtoken": ("$ per million tokens (best plan)", False),
}


@dataclass(frozen=True)
class BestRow:
    """The best plan of one (kind, model, cluster), or none."""

    kind: str
    model: str
    cluster: str
    params_b: float | None
    cases: int  #: cases of this model x cluster (and kind)
    planned: int  #: of which have a plan
    best: dict[str, Any] | None  #: the best case's record (None: no case has a plan)

    def to_dict(self) -> dict[str, Any]:
        b = self.best or {}
        return {
            "kind": self.kind,
            "model": self.model,
            "cluster": self.cluster,
            "params_b": self.params_b,
            "cases": self.cases,
            "planned": self.planned,
            "workload": b.get("workload"),
            "status": b.get("status"),
            "tokens_per_s": b.get("tokens_per_s"),
            "num_gpus": b.get("num_gpus"),
            "cost_per_hour": b.get("cost_per_hour"),
            "cost_per_mtoken": b.get("cost_per_mtoken"),
            "mfu": b.get("mfu"),
        }


def _rank(rec: dict[str, Any]) -> tuple[float, float, float]:
    tokens = rec.get("tokens_per_s") or 0.0
    gpus = rec.get("num_gpus") or math.inf
    cost = rec.get("cost_per_hour")
    return (-float(tokens), float(gpus), float(cost) if cost is not None else math.inf)


def best_rows(records: Iterable[dict[str, Any]]) -> list[BestRow]:
    """One :class:`BestRow` per (kind, model, cluster), models by size, then first seen."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        kind = rec.get("kind") or "unknown"
        groups.setdefault((kind, rec["model"], rec["cluster"]), []).append(rec)
    cluster_order = {k[2]: i for i, k in reversed(list(enumerate(groups)))}
    rows: list[BestRow] = []
    for (kind, model, cluster), recs in groups.items():
        planned = [r for r in recs if r.get("status") in _PLANNED and r.get("tokens_per_s")]
        params = next((r["params_b"] for r in recs if r.get("params_b") is not None), None)
        rows.append(
            BestRow(
                kind=kind,
                model=model,
                cluster=cluster,
                params_b=params,
                cases=len(recs),
                planned=len(planned),
                best=min(planned, key=_rank) if planned else None,
            )
        )
    rows.sort(
        key=lambda r: (
            r.kind != "training",
            r.kind,
            r.params_b if r.params_b is not None else math.inf,
            r.model,
            cluster_order[r.cluster],
        )
    )
    return rows


@dataclass(frozen=True)
class SweepDirectory:
    """A sweep's output directory as read back: records, the case list, status counts."""

    out: Path
    records: list[dict[str, Any]]
    total: int | None  #: cases in cases.json (None if absent)
    torn_bytes: int

    @property
    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(r.get("status") or "ERROR" for r in self.records).items()))

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in FAILURE_STATUSES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "total": self.total,
            "finished": len(self.records),
            "failed": self.failed,
            "statuses": self.statuses,
            "solve_time_s": sum(float(r.get("solve_time_s") or 0.0) for r in self.records),
            "best": [row.to_dict() for row in best_rows(self.records)],
        }


def load_directory(out: Path) -> SweepDirectory:
    """Read a sweep directory (finished or not) for :func:`best_rows` and the summary."""
    if not out.is_dir():
        raise SpecError(f"--summary: {out} is not a directory")
    path = out / RESULTS_FILE
    if not path.is_file():
        raise SpecError(f"--summary: {out} has no {RESULTS_FILE} (not a sweep directory?)")
    stored = read_results(path)
    total: int | None = None
    cases = out / CASES_FILE
    if cases.is_file():
        try:
            data = json.loads(cases.read_text(encoding="utf-8"))
            total = len(data) if isinstance(data, list) else None
        except (OSError, ValueError):
            total = None
    return SweepDirectory(out, stored.records, total, stored.torn_bytes)


def _short(value: float) -> str:
    """Three significant digits with an SI suffix, the same for every cell:
    ``15470627 -> '15.5M'``, ``94621 -> '94.6k'``, ``0.0479 -> '0.0479'``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def cell_note(records: Sequence[dict[str, Any]]) -> str:
    """What a heat-map cell without a value says: ``no case`` (the sweep has no case for it),
    ``infeasible`` (every case proven INFEASIBLE), ``n/a`` (a plan, but not this metric, e.g.
    no price for $ per token), else its cases' statuses (``unknown``, ``error/timeout``)."""
    if not records:
        return "no case"
    statuses = Counter(r.get("status") or "ERROR" for r in records)
    if any(st in _PLANNED for st in statuses):
        return "n/a"
    if set(statuses) == {"INFEASIBLE"}:
        return "infeasible"
    return "/".join(sorted(st.lower() for st in statuses))


#: Heat-map cells hold their value as text up to this many cells per panel (beyond it the
#: text would be too small to read; the colour bar still gives the value).
MAX_TEXT_CELLS = 400


def heatmap_figure(records: Sequence[dict[str, Any]], *, metric: str = "tokens_per_s") -> Any:
    """The heat map of :func:`plot_heatmap` as a :class:`matplotlib.figure.Figure` (no pyplot).

    One panel per workload kind: rows are models (by size), columns clusters; a cell's colour
    and text are the best plan's ``metric`` (three significant digits, log colour scale).  A
    cell without a value is grey, hatched (``gid='no-plan'``) and says why (:func:`cell_note`:
    ``infeasible``, ``unknown``, ``no case``, ...).  Value texts have ``gid='cell-value'``,
    notes ``gid='cell-note'``.
    """
    if metric not in PLOT_METRICS:
        raise SpecError(f"--plot-metric: must be one of {', '.join(PLOT_METRICS)}, got {metric!r}")
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    label, higher_better = PLOT_METRICS[metric]
    rows = best_rows(records)
    kinds = list(dict.fromkeys(r.kind for r in rows))
    if not kinds:
        raise SpecError("--plot: the sweep has no records to plot")
    by_cell: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        by_cell.setdefault((rec.get("kind") or "unknown", rec["model"], rec["cluster"]), []).append(
            rec
        )
    panels = []
    for kind in kinds:
        sub = [r for r in rows if r.kind == kind]
        models = list(dict.fromkeys(r.model for r in sub))
        clusters = list(dict.fromkeys(r.cluster for r in sub))
        grid = np.full((len(models), len(clusters)), np.nan)
        for r in sub:
            value = (r.best or {}).get(metric)
            if value is not None and value > 0:
                grid[models.index(r.model), clusters.index(r.cluster)] = float(value)
        panels.append((kind, models, clusters, grid))

    width = max(6.0, max(0.8 * len(p[2]) for p in panels) + 3.0)
    heights = [max(2.5, 0.4 * len(p[1]) + 1.8) for p in panels]
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    cmap = colormaps["viridis" if higher_better else "viridis_r"].with_extremes(bad="#d0d0d0")
    for ax, (kind, models, clusters, grid) in zip(axes[:, 0], panels, strict=True):
        finite = grid[np.isfinite(grid)]
        norm = None
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            if lo == hi:  # one value (or all equal): a decade around it, not a degenerate norm
                lo, hi = lo / 10**0.5, hi * 10**0.5
            norm = LogNorm(vmin=lo, vmax=hi)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(clusters)), clusters, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models, fontsize=8)
        ax.set_title(f"{kind}: {label}; hatched = no plan", fontsize=10)
        if finite.size:
            fig.colorbar(image, ax=ax, label=label)
        text = grid.size <= MAX_TEXT_CELLS
        for (i, j), v in np.ndenumerate(grid):
            if not np.isfinite(v):
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                              edgecolor="#888888", linewidth=0, gid="no-plan")
                )  # fmt: skip
                if text:
                    note = cell_note(by_cell.get((kind, models[i], clusters[j]), []))
                    ax.text(j, i, note, ha="center", va="center", fontsize=7, color="black",
                            bbox={"facecolor": "#d0d0d0", "linewidth": 0, "pad": 1},
                            gid="cell-note")  # fmt: skip
                continue
            if text:
                bright = norm is not None and float(norm(v)) > 0.6
                ax.text(j, i, _short(v), ha="center", va="center", fontsize=7,
                        color="black" if bright == higher_better else "white",
                        gid="cell-value")  # fmt: skip
    return fig


def plot_heatmap(
    records: Sequence[dict[str, Any]], path: Path, *, metric: str = "tokens_per_s"
) -> Path:
    """Save the heat map of the best plan per model (rows, by size) x cluster (columns)
    (:func:`heatmap_figure`), written atomically like every output file
    (:func:`solver.report.plots.save_figure`: a temporary file in the same folder renamed into
    place; links written through, FIFOs and devices refused, the umask or old mode kept)."""
    from ..report.plots import save_figure

    fig = heatmap_figure(records, metric=metric)
    save_figure(fig, path, dpi=HEATMAP_DPI)
    return path


#: The heat map's raster resolution (it holds text only at cell size: 120 dpi is enough).
HEATMAP_DPI = 120
