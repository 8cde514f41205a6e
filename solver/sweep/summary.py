"""Summaries of a sweep directory: the best plan per model x cluster, and a heat map.

"Best" is per workload kind (training tokens/s and inference output tokens/s are not
comparable): among the cases of a (kind, model, cluster) that have a plan (OPTIMAL or
FEASIBLE), the one with the most tokens/s, ties broken by fewer GPUs, then lower cost.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..io import write_bytes_atomic
from .executors import FAILURE_STATUSES
from .store import CASES_FILE, RESULTS_FILE, read_results

__all__ = [
    "PLOT_METRICS",
    "BestRow",
    "SweepDirectory",
    "best_rows",
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
    """``15470627 -> '15.5M'``, ``0.0479 -> '0.048'``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.2g}"


def plot_heatmap(
    records: Sequence[dict[str, Any]], path: Path, *, metric: str = "tokens_per_s"
) -> Path:
    """Save a heat map of the best plan per model (rows, by size) x cluster (columns).

    One panel per workload kind; colour is ``metric`` (``tokens_per_s`` or
    ``cost_per_mtoken``) on a log scale; a cell without a plan is grey.
    """
    if metric not in PLOT_METRICS:
        raise SpecError(f"--plot-metric: must be one of {', '.join(PLOT_METRICS)}, got {metric!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    label, higher_better = PLOT_METRICS[metric]
    rows = best_rows(records)
    kinds = list(dict.fromkeys(r.kind for r in rows))
    if not kinds:
        raise SpecError("--plot: the sweep has no records to plot")
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

    width = max(6.0, max(0.7 * len(p[2]) for p in panels) + 3.0)
    heights = [max(2.5, 0.35 * len(p[1]) + 1.8) for p in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(width, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    cmap = plt.get_cmap("viridis" if higher_better else "viridis_r").with_extremes(bad="#d0d0d0")
    for ax, (kind, models, clusters, grid) in zip(axes[:, 0], panels, strict=True):
        finite = grid[np.isfinite(grid)]
        norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(clusters)), clusters, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models, fontsize=8)
        ax.set_title(f"{kind}: {label}; grey = no plan", fontsize=10)
        if finite.size:
            fig.colorbar(image, ax=ax, label=label)
        if grid.size <= 400:
            for (i, j), v in np.ndenumerate(grid):
                if not np.isfinite(v):
                    ax.text(j, i, "no plan", ha="center", va="center", fontsize=6, color="#555555")
                    continue
                bright = norm is not None and float(norm(v)) > 0.6
                ax.text(
                    j,
                    i,
                    _short(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright == higher_better else "white",
                )
    fig.tight_layout()
    # Rendered in memory, then written like every other output file (temporary file renamed
    # into place; links followed, FIFOs and devices refused; the umask or old mode kept).
    buf = io.BytesIO()
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    fig.savefig(buf, dpi=120, format=suffix)
    plt.close(fig)
    write_bytes_atomic(Path(path), buf.getvalue())
    return path
