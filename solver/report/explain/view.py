"""The rich view of an explanation (nothing is printed): the header, the plan, the memory
ledger, where the time goes, the bottleneck and binding constraints, and the alternatives."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ...specs import Cluster
from ..render import (
    DASH,
    fmt_bytes_GB,
    fmt_objective,
    fmt_pct,
    fmt_time,
    plan_table,
    split_advice,
    status_text,
)
from .bottleneck import MEMORY_TIGHT_FRACTION
from .document import Explanation
from .verdicts import TIE_RTOL

_LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("weights_GB", "weights"),
    ("grads_GB", "grads"),
    ("optimizer_GB", "optimizer"),
    ("activations_GB", "activations"),
    ("transient_activations_GB", "of which transient"),
    ("kv_cache_GB", "KV cache"),
    ("overhead_GB", "overhead"),
)

#: The overhead's named parts, shown under the ledger (one line, not three more columns).
_OVERHEAD_PARTS: tuple[tuple[str, str], ...] = (
    ("cuda_context_GB", "CUDA context"),
    ("nccl_buffers_GB", "NCCL buffers"),
    ("cublas_workspace_GB", "cuBLAS workspaces"),
)


def _ledger_table(expl: Explanation) -> Table:
    rows = expl.memory_ledger
    title = "Memory per GPU (GB)"
    if expl.memory_source == "closest":
        title += " of the closest plan"
    multi = len({r.get("group", 0) for r in rows}) > 1
    cols = [(k, n) for k, n in _LEDGER_COLUMNS if any(float(r.get(k) or 0.0) for r in rows)]
    t = Table(title=title, box=box.SIMPLE_HEAVY)
    if multi:
        t.add_column("group", justify="right")
    for name in ("stage", "pool", "TP"):
        t.add_column(name, justify="left" if name == "pool" else "right")
    for _, name in cols:
        t.add_column(name, justify="right")
    for name in ("total", "capacity", "use"):
        t.add_column(name, justify="right")
    for r in rows:
        cells = [str(r.get("group", 0))] if multi else []
        cells += [str(r.get("stage")), str(r.get("pool")), str(r.get("tp"))]
        cells += [fmt_bytes_GB(r.get(k)) for k, _ in cols]
        cells += [fmt_bytes_GB(r.get("total_GB")), fmt_bytes_GB(r.get("capacity_GB"))]
        cells.append(fmt_pct(r.get("use")))
        style = (
            "red"
            if float(r["use"]) > 1
            else "yellow"
            if float(r["use"]) >= MEMORY_TIGHT_FRACTION
            else None
        )
        t.add_row(*cells, style=style)
    first = rows[0] if rows else {}
    parts = [f"{name} {fmt_bytes_GB(first.get(k))}" for k, name in _OVERHEAD_PARTS if k in first]
    notes = []
    if parts:
        notes.append("overhead = " + " + ".join(parts) + " GB")
    phase = [r for r in rows if r.get("grads_phase_activations_GB") is not None]
    if phase:
        # On-demand gradients: the peak is the larger of the activation side and the gradient
        # side (all gradients + what one block's backward holds), not their sum.
        notes.append(
            "gradients made on demand: peak = max(activations, grads + one block's backward "
            f"{fmt_bytes_GB(max(float(r['grads_phase_activations_GB']) for r in phase))} GB)"
        )
    cached = [float(r.get("comm_stream_cache_GB") or 0.0) for r in rows]
    if any(cached):
        notes.append(
            f"FSDP2 communication-stream caches (reserved, not allocated): "
            f"{fmt_bytes_GB(max(cached))} GB at most"
        )
    reserved = [r["reserved_GB"] for r in rows if r.get("reserved_GB") is not None]
    if reserved:
        notes.append(
            f"the caching allocator's reserved peak (what nvidia-smi shows): "
            f"{fmt_bytes_GB(max(reserved))} GB at most; fitting is judged on the total"
        )
    if notes:
        t.caption = "; ".join(notes)
    return t


def _terms_table(expl: Explanation) -> Table:
    unit = "step" if expl.kind == "training" else "request batch"
    t = Table(title=f"Where the time goes (one {unit})", box=box.SIMPLE_HEAVY)
    t.add_column("term")
    t.add_column("time", justify="right")
    t.add_column("share", justify="right")
    top = expl.bottleneck.kind if expl.bottleneck else None
    for term in expl.terms:
        t.add_row(
            term.label,
            fmt_time(term.seconds),
            fmt_pct(term.fraction),
            style="bold" if term.key == top else None,
        )
    return t


def _alternatives_table(expl: Explanation) -> Table:
    t = Table(title="Why not the alternatives", box=box.SIMPLE_HEAVY, show_lines=True)
    t.add_column("alternative (plan)", ratio=2, overflow="fold")
    t.add_column(f"{expl.objective_name}\n({expl.objective_unit})", justify="right")
    t.add_column("vs chosen", justify="right")
    t.add_column("why it loses", ratio=3, overflow="fold")
    for a in expl.alternatives:
        ratio = DASH if a.ratio is None else f"{a.ratio:.2f}x"
        why = Text(a.verdict)
        if a.note:
            why.append(f"\n{a.note}", style="dim")
        label = Text(a.label, style="bold")
        if a.shape != DASH:
            label.append(f"\n{a.shape}", style="dim")
        style = None
        if a.ratio is not None and a.ratio < 1 - TIE_RTOL and a.feasible:
            style = "yellow"
        t.add_row(
            label,
            fmt_objective(a.objective) if a.ratio is not None else DASH,
            ratio,
            why,
            style=style,
        )
    return t


def render_explanation(expl: Explanation, cluster: Cluster | None = None) -> RenderableType:
    """The explanation as rich renderables (nothing is printed)."""
    parts: list[RenderableType] = []
    head = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    head.add_column("k", style="bold")
    head.add_column("v")
    head.add_row("status", status_text(expl.status) if expl.status else Text(DASH))
    head.add_row(
        "feasible",
        Text("yes", style="bold green") if expl.feasible else Text("NO", style="bold red"),
    )
    head.add_row("plan from", expl.source)
    head.add_row(
        "objective",
        f"{expl.objective_name}: {fmt_objective(expl.objective, expl.objective_unit)}",
    )
    parts.append(head)
    if expl.message:
        title = "Why no plan fits" if expl.status == "INFEASIBLE" else "Note"
        style = "red" if expl.status == "INFEASIBLE" else "yellow"
        message, advice = split_advice(expl.message, expl.stats.get("advice"))
        parts.append(Panel(Text(message), title=title, border_style=style, expand=False))
        if advice is not None:
            parts.append(advice)
    if expl.plan is not None:
        t = plan_table(expl.plan, cluster)
        if expl.memory_source == "closest":
            t.title = "Closest plan (smallest overshoot)"
        parts.append(t)
    if expl.memory_ledger:
        parts.append(_ledger_table(expl))
    if expl.terms:
        parts.append(_terms_table(expl))
    if expl.bottleneck is not None:
        parts.append(Text("Bottleneck: ", style="bold") + Text(expl.bottleneck.text))
    for line in expl.limits:
        parts.append(Text("Binding: ", style="bold") + Text(line))
    parts += engine_lines(expl)
    if expl.alternatives:
        parts.append(Text(""))
        parts.append(_alternatives_table(expl))
    return Group(*parts)


def alternative_lines(expl: Explanation) -> list[str]:
    """One plain line per alternative (``label: verdict``), for logs and tests."""
    return [f"{a.label}: {a.verdict}" for a in expl.alternatives]


def engine_lines(expl: Explanation) -> list[Text]:
    """Which engines launch the plan, what the others cannot express, and (when asked) the
    gap between the unrestricted optimum and the best launchable plan."""
    eng = expl.engines or {}
    out: list[Text] = []
    if "launchable_by" in eng:
        ok = eng["launchable_by"]
        out.append(
            Text("Launchable by: ", style="bold")
            + Text(", ".join(ok) if ok else "none: beyond any engine", style="" if ok else "yellow")
        )
        if not ok:
            for name, why in eng.get("refused", {}).items():
                out.append(Text(f"  {name}: ", style="bold") + Text("; ".join(why)))
    gap = eng.get("gap")
    if gap:
        unit = expl.objective_unit
        ratio = gap.get("ratio")
        line = (
            f"unrestricted optimum {fmt_objective(gap.get('unrestricted'), unit)} "
            f"({gap.get('unrestricted_status')}) vs best launchable "
            f"{fmt_objective(gap.get('launchable'), unit)} ({gap.get('launchable_status')})"
        )
        if ratio is not None:
            line += f": launchability costs {ratio:.3f}x" if ratio > 1 + TIE_RTOL else ": no gap"
        out.append(Text("Engine gap: ", style="bold") + Text(line))
        if gap.get("unrestricted_plan"):
            out.append(Text("  unrestricted plan: ") + Text(gap["unrestricted_plan"], style="dim"))
        for name, why in (gap.get("beyond") or {}).items():
            out.append(Text(f"  {name} cannot: ", style="bold") + Text("; ".join(why[:2])))
    return out
