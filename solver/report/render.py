"""Rich renderables for reports, plans and solver results.

Every function here *builds* a rich renderable from plain data (the evaluator's report dict,
a :class:`~solver.specs.Plan`, a :class:`~solver.result.Result`) and prints nothing; the CLI
decides where it goes.  The report dict is the ``shardwise evaluate --json`` document, so the
same functions render a fresh evaluation, ``Result.report`` and a report read back from JSON.
Missing keys render as an em dash rather than failing, so older or partial reports still show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..result import Result, Status
from ..specs import Cluster, Plan, Stage
from .documents import objective_unit, plan_cost_per_hour

__all__ = [
    "baseline_table",
    "devices_summary",
    "fmt_bytes_GB",
    "fmt_count",
    "fmt_ms",
    "fmt_objective",
    "fmt_pct",
    "fmt_rate",
    "fmt_time",
    "layers_summary",
    "memory_ledger_table",
    "plan_table",
    "render_evaluation",
    "render_result",
    "report_summary_table",
    "solver_table",
    "status_text",
    "time_breakdown_table",
]

DASH = "\u2014"
_STATUS_STYLE = {
    Status.OPTIMAL: "bold green",
    Status.FEASIBLE: "bold yellow",
    Status.INFEASIBLE: "bold red",
    Status.UNKNOWN: "bold magenta",
    Status.INVALID_INPUT: "bold red",
    Status.MODEL_ERROR: "bold white on red",
}


# ------------------------------------------------------------------------------------------
# Number formatting (None and non-finite values render as a dash / infinity)
# ------------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _sig(v: float) -> str:
    """About three significant figures without exponent notation: 123, 12.3, 1.23."""
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}"


def fmt_time(seconds: Any) -> str:
    """Seconds with an auto unit: ``'850 \u00b5s'``, ``'12.3 ms'``, ``'1.234 s'``."""
    s = _num(seconds)
    if s is None:
        return DASH
    if not math.isfinite(s):
        return "\u221e"
    if s == 0:
        return "0"
    if abs(s) < 1e-3:
        return f"{_sig(s * 1e6)} \u00b5s"
    if abs(s) < 1:
        return f"{_sig(s * 1e3)} ms"
    return f"{s:,.3f} s"


def fmt_ms(ms: Any) -> str:
    """Milliseconds: ``'123 ms'``, ``'12.3 ms'``, ``'1.23 ms'``."""
    v = _num(ms)
    if v is None:
        return DASH
    if not math.isfinite(v):
        return "\u221e"
    return f"{_sig(v)} ms"


def fmt_rate(tokens_per_s: Any) -> str:
    """Tokens per second with thousands separators."""
    v = _num(tokens_per_s)
    if v is None:
        return DASH
    if not math.isfinite(v):
        return "\u221e"
    return f"{v:,.0f} tok/s" if v >= 100 else f"{v:.3g} tok/s"


def fmt_pct(fraction: Any) -> str:
    """A fraction as a percentage: ``0.452 -> '45.2%'``."""
    v = _num(fraction)
    if v is None or not math.isfinite(v):
        return DASH
    return f"{100 * v:.1f}%"


def fmt_bytes_GB(gb: Any) -> str:
    """Gigabytes (10^9 bytes) to two decimals."""
    v = _num(gb)
    if v is None:
        return DASH
    if not math.isfinite(v):
        return "\u221e"
    return f"{v:,.2f}"


def fmt_count(value: Any) -> str:
    """An integer count, or a dash."""
    v = _num(value)
    return DASH if v is None else f"{v:,.0f}"


def status_text(status: Status | str) -> Text:
    """A solver status, coloured (green OPTIMAL ... red INFEASIBLE)."""
    try:
        st = Status(status)
    except ValueError:
        return Text(str(status), style="bold")
    return Text(st.value, style=_STATUS_STYLE[st])


# ------------------------------------------------------------------------------------------
# Plan layout
# ------------------------------------------------------------------------------------------
def _ranges(ints: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2,5'``."""
    out: list[str] = []
    start = prev = None
    for i in ints:
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


def _tp_group(devices: Sequence[Sequence[Any]]) -> str:
    """One TP group's ``[[node, gpu], ...]`` as ``'h100-0:0-3'`` (``+`` joins nodes)."""
    by_node: dict[str, list[int]] = {}
    for node, gpu in devices:
        by_node.setdefault(str(node), []).append(int(gpu))
    return "+".join(f"{node}:{_ranges(sorted(gpus))}" for node, gpus in by_node.items())


def devices_summary(stage: Stage, max_shown: int = 3) -> str:
    """The devices of a stage, one TP group per replica, elided when there are many.

    ``'h100-0:0-1, h100-0:2-3'``; with more than ``max_shown`` replicas the first
    ``max_shown - 1``, an ellipsis and the last, then the replica and node counts.
    """
    groups = [_tp_group(rep) for rep in stage.devices]
    if not groups:
        return DASH
    nodes = {str(node) for rep in stage.devices for node, _ in rep}
    if len(groups) <= max_shown:
        return ", ".join(groups)
    shown = groups[: max(1, max_shown - 1)]
    return (
        f"{', '.join(shown)}, \u2026, {groups[-1]}  "
        f"({len(groups)} replicas on {len(nodes)} node{'s' if len(nodes) != 1 else ''})"
    )


def layers_summary(stage: Stage) -> str:
    """The blocks of a stage: ``'0-11'``, or its chunks ``'0-5 | 24-29'`` when interleaved."""
    return " | ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in stage.layer_ranges)


def _group_header(plan: Plan, index: int) -> str:
    g = plan.replica_groups[index]
    tps = sorted({s.tp for s in g.stages})
    tp = "/".join(str(t) for t in tps)
    parts = [
        f"{g.count} replica{'s' if g.count != 1 else ''}",
        f"DP={g.count}",
        f"PP={g.pp}",
        f"TP={tp}",
    ]
    if plan.kind == "training":
        if g.micro_batch_size is not None:
            nmb = f" \u00d7 {g.num_micro_batches} micro-batches" if g.num_micro_batches else ""
            parts.append(f"micro-batch {g.micro_batch_size}{nmb}")
    else:
        if g.batch_size is not None:
            parts.append(f"batch {g.batch_size}")
        if g.num_micro_batches:
            parts.append(f"{g.num_micro_batches} micro-batches")
    if g.pp > 1:  # a schedule only means something with a pipeline
        sched = g.schedule + (f" (v={g.virtual_stages})" if g.virtual_stages > 1 else "")
        parts.append(f"schedule {sched}")
    if plan.kind == "training":
        parts += [f"recompute {g.recompute}", f"ZeRO {g.zero_stage}"]
    parts.append(f"SP {'on' if g.sequence_parallel else 'off'}")
    prefix = f"group {index}: " if len(plan.replica_groups) > 1 else ""
    return prefix + " \u00b7 ".join(parts)


def plan_table(plan: Plan, cluster: Cluster | None = None) -> Table:
    """The plan's layout: one row per stage (layers, pool, GPU, TP, devices).

    The caption line of each replica group gives DP, PP, micro-batching, schedule, recompute,
    ZeRO and sequence parallelism.
    """
    multi = len(plan.replica_groups) > 1
    headers = "\n".join(_group_header(plan, i) for i in range(len(plan.replica_groups)))
    table = Table(title="Plan", caption=headers, caption_justify="left", box=box.SIMPLE_HEAVY)
    if multi:
        table.add_column("group", justify="right")
    table.add_column("stage", justify="right")
    table.add_column("layers")
    table.add_column("#", justify="right")
    table.add_column("pool")
    if cluster is not None:
        table.add_column("GPU")
    table.add_column("TP", justify="right")
    table.add_column("devices (one TP group per replica)", overflow="fold")
    for gi, group in enumerate(plan.replica_groups):
        for si, stage in enumerate(group.stages):
            row: list[str] = [str(gi)] if multi else []
            row += [str(si), layers_summary(stage), str(stage.num_layers), stage.pool]
            if cluster is not None:
                try:
                    row.append(cluster.pool(stage.pool).gpu_name)
                except KeyError:
                    row.append("unknown pool")
            row += [str(stage.tp), devices_summary(stage)]
            table.add_row(*row)
    return table


# ------------------------------------------------------------------------------------------
# Report (the evaluator's dict)
# ------------------------------------------------------------------------------------------
def _kv_table(title: str | None = None) -> Table:
    t = Table(title=title, show_header=False, box=box.SIMPLE, pad_edge=False)
    t.add_column("metric", style="bold")
    t.add_column("value")
    return t


def _slo(value: Any, slo: float | None) -> Text:
    """``'120 ms (SLO 200 ms)'``, red when the SLO is missed."""
    text = Text(fmt_ms(value))
    v = _num(value)
    if slo is not None:
        missed = v is None or not math.isfinite(v) or v > slo
        text.append(f"  (SLO {fmt_ms(slo)})", style="red" if missed else "green")
    return text


def report_summary_table(
    report: Mapping[str, Any],
    *,
    kind: str | None = None,
    cluster: Cluster | None = None,
    plan: Plan | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
) -> Table:
    """Headline metrics: feasibility, throughput, utilisation, memory, GPUs and cost.

    ``kind`` ('training' / 'inference') picks the metrics; by default it is guessed from the
    report (inference reports carry ``ttft_ms``).  With ``cluster`` and ``plan`` the table adds
    the cluster size and, when every used pool has a price, the cost per hour and per million
    tokens.
    """
    if kind is None:
        kind = "inference" if report.get("ttft_ms") is not None else "training"
    t = _kv_table("Summary")
    feasible = bool(report.get("feasible"))
    t.add_row(
        "feasible", Text("yes", style="bold green") if feasible else Text("NO", style="bold red")
    )
    violations = [str(v) for v in report.get("violations") or []]
    for i, v in enumerate(violations):
        t.add_row("violations" if i == 0 else "", Text(v, style="red"))
    if kind == "inference":
        t.add_row("TTFT", _slo(report.get("ttft_ms"), slo_ttft_ms))
        t.add_row("TPOT", _slo(report.get("tpot_ms"), slo_tpot_ms))
        t.add_row("throughput", fmt_rate(report.get("tokens_per_s")))
        if report.get("step_time_s") is not None:
            t.add_row("request time", fmt_time(report.get("step_time_s")))
    else:
        t.add_row("step time", fmt_time(report.get("step_time_s")))
        t.add_row("throughput", fmt_rate(report.get("tokens_per_s")))
    t.add_row("MFU / HFU", f"{fmt_pct(report.get('mfu'))} / {fmt_pct(report.get('hfu'))}")
    t.add_row("pipeline bubble", fmt_pct(report.get("bubble_fraction")))
    t.add_row("peak memory per GPU", f"{fmt_bytes_GB(report.get('peak_memory_GB_per_gpu'))} GB")
    gpus = fmt_count(report.get("num_gpus"))
    if cluster is not None:
        gpus += f" of {cluster.num_gpus}"
    t.add_row("GPUs used", gpus)
    cost = _num(report.get("cost_per_hour"))
    if cost is None and cluster is not None and plan is not None:
        cost = plan_cost_per_hour(plan, cluster)
    if cost is not None and math.isfinite(cost) and cost > 0:
        line = f"${cost:,.2f}/h"
        rate = _num(report.get("tokens_per_s"))
        if rate and math.isfinite(rate) and rate > 0:
            line += f"  (${cost / (rate * 3600) * 1e6:,.4g} per M tokens)"
        t.add_row("cost", line)
    return t


def _rows(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    rows = report.get(key) or []
    return [r for r in rows if isinstance(r, Mapping)]


def _stage_label(row: Mapping[str, Any], multi_group: bool) -> list[str]:
    stage = str(row.get("stage", DASH))
    return [str(row.get("group", DASH)), stage] if multi_group else [stage]


_LEDGER_PARTS = (
    ("weights_GB", "weights"),
    ("grads_GB", "grads"),
    ("optimizer_GB", "optimizer"),
    ("activations_GB", "activations"),
    ("kv_cache_GB", "KV cache"),
    ("overhead_GB", "overhead"),
)


def memory_ledger_table(report: Mapping[str, Any]) -> Table:
    """Memory per GPU of each stage, by component, against capacity (GB = 10^9 bytes).

    Components that are zero on every stage (KV cache in training, gradients in inference)
    are left out; a stage over capacity is shown in red.
    """
    rows = _rows(report, "memory_ledger")
    multi = len({r.get("group", 0) for r in rows}) > 1
    parts = [(k, name) for k, name in _LEDGER_PARTS if any(_num(r.get(k)) for r in rows)]
    t = Table(title="Memory per GPU (GB)", box=box.SIMPLE_HEAVY)
    if multi:
        t.add_column("group", justify="right")
    for col in ("stage", "pool", "TP"):
        t.add_column(col, justify="right" if col != "pool" else "left")
    for _, name in parts:
        t.add_column(name, justify="right")
    for col in ("total", "capacity", "use"):
        t.add_column(col, justify="right")
    for r in rows:
        total, cap = _num(r.get("total_GB")), _num(r.get("capacity_GB"))
        over = total is not None and cap is not None and total > cap
        use = fmt_pct(total / cap) if total is not None and cap else DASH
        cells = _stage_label(r, multi) + [str(r.get("pool", DASH)), str(r.get("tp", DASH))]
        cells += [fmt_bytes_GB(r.get(k)) for k, _ in parts]
        cells += [fmt_bytes_GB(total), fmt_bytes_GB(cap), use]
        t.add_row(*cells, style="red" if over else None)
    return t


_TIME_PARTS = (
    ("compute_s", "compute"),
    ("tp_comm_s", "TP comm"),
    ("pp_comm_s", "PP comm"),
    ("dp_comm_s", "DP comm"),
)


def time_breakdown_table(report: Mapping[str, Any]) -> Table:
    """Per-stage time by component; each pipeline's slowest stage (its bottleneck) is bold."""
    rows = _rows(report, "time_breakdown")
    multi = len({r.get("group", 0) for r in rows}) > 1
    totals = [sum(_num(r.get(k)) or 0.0 for k, _ in _TIME_PARTS) for r in rows]
    by_group: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        by_group.setdefault(r.get("group", 0), []).append(i)
    # The bottleneck of each pipeline (only meaningful with more than one stage).
    slowest = {max(idx, key=totals.__getitem__) for idx in by_group.values() if len(idx) > 1}
    t = Table(title="Time per stage", box=box.SIMPLE_HEAVY)
    if multi:
        t.add_column("group", justify="right")
    t.add_column("stage", justify="right")
    for _, name in _TIME_PARTS:
        t.add_column(name, justify="right")
    t.add_column("sum", justify="right")
    # TP communication hidden behind the GEMMs (workload tp_comm_overlap): shown beside the
    # exposed "TP comm", not part of the sum.
    hidden = any((_num(r.get("tp_comm_hidden_s")) or 0.0) > 0 for r in rows)
    if hidden:
        t.add_column("TP hidden (overlapped)", justify="right")
    for i, r in enumerate(rows):
        cells = _stage_label(r, multi) + [fmt_time(r.get(k)) for k, _ in _TIME_PARTS]
        cells.append(fmt_time(totals[i]))
        if hidden:
            cells.append(fmt_time(r.get("tp_comm_hidden_s")))
        t.add_row(*cells, style="bold" if i in slowest else None)
    return t


def render_evaluation(
    report: Mapping[str, Any],
    plan: Plan | None = None,
    cluster: Cluster | None = None,
    workload: Any = None,
    *,
    include_plan: bool = True,
) -> RenderableType:
    """The full evaluation: summary, memory ledger, time per stage and (if given) the plan.

    ``workload`` (optional) supplies the kind and the SLOs shown next to TTFT and TPOT.
    """
    kind = getattr(workload, "kind", None) or (plan.kind if plan is not None else None)
    parts: list[RenderableType] = [
        report_summary_table(
            report,
            kind=kind,
            cluster=cluster,
            plan=plan,
            slo_ttft_ms=getattr(workload, "ttft_ms", None),
            slo_tpot_ms=getattr(workload, "tpot_ms", None),
        ),
        memory_ledger_table(report),
        time_breakdown_table(report),
    ]
    if plan is not None and include_plan:
        parts.append(plan_table(plan, cluster))
    return Group(*parts)


# ------------------------------------------------------------------------------------------
# Solver result
# ------------------------------------------------------------------------------------------
def fmt_objective(value: Any, unit: str = "") -> str:
    """An objective in user units: ``'9,239,269 tokens/s'``, ``'0.0123 $/Mtoken'``."""
    v = _num(value)
    if v is None:
        return DASH
    if not math.isfinite(v):
        return "\u221e"
    num = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.6g}"
    return f"{num} {unit}".strip()


def solver_table(result: Result, objective: str | None = None, kind: str | None = None) -> Table:
    """Status, objective (in the units of ``objective`` for ``kind``), bound, gap, time, seed."""
    unit = objective_unit(objective, kind) if objective else ""
    t = _kv_table("Solver")
    t.add_row("status", status_text(result.status))
    if objective:
        t.add_row("objective", f"{objective}: {fmt_objective(result.objective, unit)}")
    else:
        t.add_row("objective", fmt_objective(result.objective, unit))
    t.add_row("bound", fmt_objective(result.bound, unit))
    gap = _num(result.gap)
    t.add_row("gap", DASH if gap is None else f"{100 * gap:.3g}%")
    under = result.stats.get("optimal_under") if result.stats else None
    if result.status == Status.OPTIMAL and under is not None:
        text = "the evaluator" if under == "evaluator" else "the CP model's closed-form step"
        t.add_row("optimal under", text)
    t.add_row("time", fmt_time(result.time_s))
    extras = [f"seed {result.seed}"] if result.seed is not None else []
    if result.ortools_version:
        extras.append(f"OR-Tools {result.ortools_version}")
    if extras:
        t.add_row("", ", ".join(extras))
    if result.engine_scope is not None:
        t.add_row("planned for", scope_text(result.engine_scope))
    if result.launch is not None:
        t.add_row("launchable by", launchable_text(result))
    return t


def scope_text(scope: str) -> str:
    """``launchable (any engine)``, ``megatron only`` or ``any plan (beyond any engine)``."""
    if scope == "launchable":
        return "launchable plans (any engine)"
    if scope == "any-plan":
        return "any plan (beyond any engine)"
    return f"{scope} only"


def launchable_text(result: Result) -> str:
    """The engines that launch the plan, or ``none: beyond any engine (megatron: ...)``."""
    ok = result.launchable_by
    if ok:
        return ", ".join(ok)
    first = next(iter((result.launch or {}).items()), None)
    why = f" ({first[0]}: {first[1][0]})" if first is not None and first[1] else ""
    return "none: beyond any engine" + why


def _baseline_metrics(baseline: Mapping[str, Any]) -> Mapping[str, Any]:
    """The baseline's metrics, whether given flat or under a ``report`` key."""
    inner = baseline.get("report")
    if isinstance(inner, Mapping) and "tokens_per_s" not in baseline:
        return inner
    return baseline


def baseline_table(report: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> Table:
    """The plan against the rubric baseline: tokens/s (with the ratio) and other shared metrics."""
    t = Table(title="Against the rubric baseline", box=box.SIMPLE_HEAVY)
    t.add_column("metric")
    t.add_column("this plan", justify="right")
    t.add_column("baseline", justify="right")
    t.add_column("ratio", justify="right")
    if baseline is None:
        t.add_row(
            "tokens/s", fmt_rate((report or {}).get("tokens_per_s")), "no feasible plan", DASH
        )
        return t
    base = _baseline_metrics(baseline)
    mine = report or {}
    rows: Iterable[tuple[str, str, Any]] = (
        ("tokens/s", "tokens_per_s", fmt_rate),
        ("step time", "step_time_s", fmt_time),
        ("TTFT", "ttft_ms", fmt_ms),
        ("TPOT", "tpot_ms", fmt_ms),
        ("GPUs", "num_gpus", fmt_count),
    )
    for label, key, fmt in rows:
        a, b = _num(mine.get(key)), _num(base.get(key))
        if key != "tokens_per_s" and (a is None or b is None):
            continue
        ratio = DASH
        if a is not None and b and math.isfinite(a) and math.isfinite(b):
            ratio = f"{a / b:.2f}\u00d7"
        t.add_row(
            label, fmt(a), fmt(b), Text(ratio, style="bold") if key == "tokens_per_s" else ratio
        )
    return t


def advice_table(advice: Sequence[Mapping[str, Any]]) -> Table:
    """The relaxations an INFEASIBLE result re-planned: change, verdict (green where the
    re-plan gave a verified plan), in the order tried."""
    t = Table(
        title="Relaxations, each re-planned",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption="sufficient = the relaxed instance planned and its plan passed the evaluator",
        caption_justify="left",
    )
    t.add_column("change")
    t.add_column("verdict")
    for a in advice:
        style = (
            "green"
            if a.get("sufficient")
            else ("red" if a.get("status") == "INFEASIBLE" else "yellow")
        )
        t.add_row(str(a.get("change", "")), Text(str(a.get("verdict", "")), style=style))
    return t


def split_advice(
    message: str, advice: Sequence[Mapping[str, Any]] | None
) -> tuple[str, Table | None]:
    """An INFEASIBLE message without its relaxation verdicts (the reason, then the
    conclusion on a line of its own), and the verdicts as :func:`advice_table` (the message
    itself keeps them all, for JSON and Python users)."""
    from ..cpsat.advice import ADVICE_HEAD

    at = message.find(ADVICE_HEAD)
    if not advice or at < 0:
        return message, None
    head = message[:at].rstrip(" .")
    tail = message[at:]
    conclusion = tail[tail.rfind(". ") + 2 :] if ". " in tail else ""
    return (head + (".\n" + conclusion if conclusion else "")), advice_table(advice)


def render_result(
    result: Result,
    cluster: Cluster | None = None,
    workload: Any = None,
) -> RenderableType:
    """A solve: the solver facts, the message, the plan, its predicted metrics, the baseline."""
    objective = getattr(workload, "objective", None)
    kind = getattr(workload, "kind", None)
    parts: list[RenderableType] = [solver_table(result, objective, kind)]
    if result.message:
        style = "red" if not result.ok else "yellow"
        title = {
            Status.INFEASIBLE: "Why no plan fits",
            Status.UNKNOWN: "No plan and no proof before the time limit",
            Status.MODEL_ERROR: "MODEL ERROR: solver and evaluator disagree (a bug, please report)",
            Status.INVALID_INPUT: "Invalid input",
        }.get(result.status, "Note")
        message, advice = split_advice(result.message, result.advice)
        parts.append(Panel(Text(message), title=title, border_style=style, expand=False))
        if advice is not None:
            parts.append(advice)
    if result.plan is not None:
        parts.append(plan_table(result.plan, cluster))
    if result.report is not None:
        parts.append(
            render_evaluation(result.report, result.plan, cluster, workload, include_plan=False)
        )
    if result.plan is not None:
        parts.append(baseline_table(result.report, result.baseline))
    return Group(*parts)
