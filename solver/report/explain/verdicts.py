"""Why an alternative loses: its verdict against the chosen plan (the objective ratio, the
step-time term that grew the most, a larger pipeline bubble, or what keeps it from fitting)
and the metrics reported beside it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...specs import InferenceWorkload
from ..documents import objective_unit
from ..render import fmt_objective, fmt_time
from .bottleneck import TERM_LABELS
from .candidates import _Scored
from .evaluation import AnyWorkload, _meets_target, _memory_use, _worse_ratio

#: A verdict mentions the pipeline bubble when it is this much (absolute) above the chosen
#: plan's: smaller differences are not what makes the alternative lose.
BUBBLE_NOTE_MARGIN = 0.05

#: Relative difference below which an alternative counts as a tie with the chosen plan.
TIE_RTOL = 1e-3


def _metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "tokens_per_s",
        "step_time_s",
        "ttft_ms",
        "tpot_ms",
        "num_gpus",
        "cost_per_hour",
        "bubble_fraction",
        "peak_memory_GB_per_gpu",
        "mfu",
    )
    out = {k: report.get(k) for k in keys if report.get(k) is not None}
    rows = report.get("memory_ledger") or []
    if rows:
        worst = max(rows, key=lambda r: float(r["total_GB"]) / float(r["capacity_GB"]))
        out["capacity_GB"] = worst["capacity_GB"]
        out["worst_memory_stage"] = worst["stage"]
    return out


def _fmt_obj(value: float | None, workload: AnyWorkload) -> str:
    return fmt_objective(value, objective_unit(workload.objective, workload.kind))


def _memory_verdict(report: Mapping[str, Any]) -> str:
    rows = report.get("memory_ledger") or []
    worst = max(rows, key=lambda r: float(r["total_GB"]) / float(r["capacity_GB"]))
    return (
        f"does not fit: stage {worst['stage']} needs {float(worst['total_GB']):.0f} GB per GPU, "
        f"has {float(worst['capacity_GB']):.0f} GB"
    )


def _term_change(
    chosen: Mapping[str, float], alt: Mapping[str, float], kind: str
) -> tuple[str, str]:
    """The term that grew the most, ``('TP all-reduce 41.2 s vs 6.10 s per step', 'tp_comm')``
    (empty strings when none grew)."""
    keys = [k for k in alt if k != "overlap"]
    if not keys or not chosen:
        return "", ""
    k = max(keys, key=lambda key: alt.get(key, 0.0) - chosen.get(key, 0.0))
    if alt.get(k, 0.0) - chosen.get(k, 0.0) <= 0:
        return "", ""
    unit = "step" if kind == "training" else "request batch"
    return f"{TERM_LABELS[k]} {fmt_time(alt[k])} vs {fmt_time(chosen.get(k, 0.0))} per {unit}", k


def _verdict(
    s: _Scored,
    alt_terms: Mapping[str, float],
    chosen_terms: Mapping[str, float],
    chosen_obj: float | None,
    chosen_report: Mapping[str, Any] | None,
    workload: AnyWorkload,
    better_note: str,
    cluster_name: str,
) -> tuple[str, float | None]:
    rd = s.report.to_dict()
    priced_ok = s.ok
    ratio = _worse_ratio(chosen_obj, s.objective, workload) if priced_ok else None
    parts: list[str] = []
    if not priced_ok:
        if _memory_use(rd) > 1.0 + 1e-9:
            return _memory_verdict(rd), ratio
        if isinstance(workload, InferenceWorkload) and rd.get("violations"):
            return "; ".join(rd["violations"][:2]), ratio
        if not _meets_target(rd, workload):
            return (
                f"serves {rd.get('tokens_per_s', 0.0):,.0f} tokens/s on {rd.get('num_gpus')} "
                "GPUs < target "
                f"{workload.target_throughput_tokens_per_s:,.0f}",  # type: ignore[union-attr]
                ratio,
            )
        return "; ".join(rd.get("violations") or ["infeasible"]), ratio
    if s.real_violations and s.pricing.name != cluster_name:
        parts.append("not allowed (a TP group would cross nodes outside an NVLink domain)")
    elif s.real_violations:
        parts.append(f"not allowed ({s.real_violations[0]})")
    if ratio is None and chosen_obj is None:
        parts.append(f"fits, where the explained plan does not: {_fmt_obj(s.objective, workload)}")
        return "; ".join(parts), ratio
    if ratio is None:
        parts.append(f"{_fmt_obj(s.objective, workload)}")
    elif abs(ratio - 1.0) <= TIE_RTOL:
        parts.append(f"ties: {_fmt_obj(s.objective, workload)}")
    else:
        if workload.objective == "max_throughput":
            word = "slower" if ratio > 1 else "FASTER"
        elif workload.objective == "min_latency":
            word = "slower per token" if ratio > 1 else "FASTER per token"
        elif workload.objective == "min_gpus":
            word = "more GPUs" if ratio > 1 else "FEWER GPUs"
        else:
            word = "costlier" if ratio > 1 else "CHEAPER"
        factor = ratio if ratio > 1 else 1.0 / ratio
        parts.append(
            f"{_fmt_obj(s.objective, workload)} vs {_fmt_obj(chosen_obj, workload)}: "
            f"{factor:.2f}x {word}"
        )
        if ratio < 1 and better_note:
            parts.append(better_note)
    used, chosen_used = rd.get("num_gpus"), (chosen_report or {}).get("num_gpus")
    if isinstance(used, int) and isinstance(chosen_used, int) and used < chosen_used:
        why = " (DP must divide the global batch)" if s.report.kind == "training" else ""
        parts.append(f"uses {used} of the chosen plan's {chosen_used} GPUs{why}")
    change, term = _term_change(chosen_terms, alt_terms, s.report.kind)
    if change and (ratio is None or ratio > 1 + TIE_RTOL):
        parts.append(change)
    bubble = rd.get("bubble_fraction")
    chosen_bubble = (chosen_report or {}).get("bubble_fraction")
    if (
        isinstance(bubble, float)
        and isinstance(chosen_bubble, float)
        and bubble > chosen_bubble + BUBBLE_NOTE_MARGIN
        and (ratio is None or ratio > 1 + TIE_RTOL)  # a reason to lose, not a footnote
    ):
        grp = s.plan.replica_groups[0]
        m = grp.num_micro_batches or 1
        mbs = f"{m} micro-batch{'es' if m > 1 else ''}"
        if s.report.kind == "training":
            note = f"PP={grp.pp} with {mbs}: bubble {bubble:.0%} (vs {chosen_bubble:.0%})"
        else:
            note = (
                f"PP={grp.pp} with {mbs}: each stage idles {bubble:.0%} of a decode step "
                f"(vs {chosen_bubble:.0%})"
            )
        if term == "pp_bubble" and parts and parts[-1] == change:
            parts[-1] = f"{change} ({note})"
        else:
            parts.append(note)
    return "; ".join(parts), ratio
