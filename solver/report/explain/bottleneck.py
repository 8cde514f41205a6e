"""What limits the step: the step (request-batch) time split into additive terms, the largest
of them named the bottleneck, and the constraints that bind (memory near capacity, an SLO
nearly met, every GPU in use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...costmodel import simulate_pipeline
from ...specs import Cluster, InferenceWorkload, Plan
from ..render import fmt_pct, fmt_time
from .document import Bottleneck, TimeTerm
from .evaluation import AnyWorkload

#: A stage whose peak memory is at least this fraction of its GPU's capacity is reported as
#: memory-bound.  Chosen, not measured: within 5% of capacity the caching allocator's
#: fragmentation slack (PyTorch CUDA caching allocator, typically a few %) is used up, so any
#: knob that adds memory (less recompute, a larger micro-batch) no longer fits.
MEMORY_TIGHT_FRACTION = 0.95

#: A latency at least this fraction of its SLO is reported as binding.  Chosen: 10% headroom is
#: the margin below which a larger batch (more throughput) would break the SLO on the next step
#: of the batch grid.
SLO_TIGHT_FRACTION = 0.9

#: Human names of the step-time terms (see :func:`step_terms`).
TERM_LABELS: dict[str, str] = {
    "compute": "compute",
    "tp_comm": "TP all-reduce",
    "pp_bubble": "PP bubble",
    "p2p": "PP p2p (exposed)",
    "dp_sync": "DP gradient sync (exposed)",
    "optimizer": "optimizer step",
    "overlap": "micro-batch overlap",
}


def step_terms(report: Any, plan: Plan) -> dict[str, float]:
    """The step (training) or slowest request batch (inference) time as additive terms.

    Training, on the busiest stage ``s*`` (largest busy time in the event simulation):
    ``compute`` and ``tp_comm`` are its compute and TP all-reduce time per step (their sum is
    its busy time); the rest of the pipeline makespan is idle time, split into ``p2p`` (how much
    the makespan shrinks when the simulation is re-run with free stage-to-stage transfers) and
    ``pp_bubble`` (the remainder: warm-up, cool-down and waiting on slower stages); then the
    exposed DP gradient sync ``dp_sync`` and the ``optimizer`` step.  The terms sum to
    ``step_time_s``.

    Inference, on the replica group with the longest request: the sums over its stages of
    compute, TP all-reduce and p2p for the prefill plus every decode step; with several
    micro-batches an ``overlap`` term (negative) makes them sum to the request time.

    Parameters
    ----------
    report
        The evaluator's :class:`~solver.evaluate.Report` object (not its dict: the pipeline
        events are needed to re-run the simulation).
    plan
        The plan the report scores.
    """
    rows = list(report.time_breakdown)
    if not rows or report.step_time_s is None:
        return {}
    if report.kind == "inference":
        groups = report.groups or [{"group": 0, "request_latency_s": report.step_time_s}]
        worst = max(groups, key=lambda g: float(g["request_latency_s"]))
        mine = [r for r in rows if r.get("group", 0) == worst["group"]]
        out = {
            "compute": sum(float(r["compute_s"]) for r in mine),
            "tp_comm": sum(float(r["tp_comm_s"]) for r in mine),
            "p2p": sum(float(r["pp_comm_s"]) for r in mine),
        }
        rest = float(worst["request_latency_s"]) - sum(out.values())
        if abs(rest) > 1e-9 * max(1.0, float(worst["request_latency_s"])):
            out["overlap"] = rest
        return out
    sim = report.pipeline
    busy = list(sim.busy_s)
    s = max(range(len(busy)), key=busy.__getitem__)
    compute = float(rows[s]["compute_s"])
    tp = float(rows[s]["tp_comm_s"])
    idle = max(0.0, sim.makespan_s - busy[s])
    p2p = 0.0
    if any(float(x) > 0 for x in report.details.get("p2p_s", [])) and idle > 0:
        p2p = min(idle, max(0.0, sim.makespan_s - _makespan_without_p2p(sim, plan)))
    return {
        "compute": compute,
        "tp_comm": tp,
        "pp_bubble": idle - p2p,
        "p2p": p2p,
        "dp_sync": float(report.details.get("dp_exposed_s", 0.0)),
        "optimizer": float(report.details.get("optimizer_s", 0.0)),
    }


def _makespan_without_p2p(sim: Any, plan: Plan) -> float:
    """Re-run the evaluator's pipeline simulation with the same per-stage times and free p2p."""

    grp = plan.replica_groups[0]
    p = grp.pp
    v = grp.virtual_stages if grp.schedule == "interleaved" else 1
    fwd = np.zeros((p, v))
    bwd = np.zeros((p, v))
    for e in sim.events:  # every micro-batch of a (stage, chunk) takes the same time
        (fwd if e.kind == "F" else bwd)[e.stage, e.chunk] = e.end - e.start
    m = grp.num_micro_batches or 1
    return float(
        simulate_pipeline(
            fwd, bwd, m, schedule=grp.schedule, virtual_stages=v, p2p_s=0.0
        ).makespan_s
    )


def _terms_list(terms: Mapping[str, float], total: float) -> list[TimeTerm]:
    return [
        TimeTerm(k, TERM_LABELS[k], v, v / total if total > 0 else 0.0) for k, v in terms.items()
    ]


def _bottleneck(terms: list[TimeTerm], report: Any, kind: str) -> Bottleneck | None:
    positive = [t for t in terms if t.seconds > 0]
    if not positive:
        return None
    top = max(positive, key=lambda t: t.seconds)
    overheads = [t for t in positive if t.key != "compute"]
    over = max(overheads, key=lambda t: t.seconds) if overheads else None
    stage: int | None = None
    if kind == "training" and report.pipeline is not None:
        busy = list(report.pipeline.busy_s)
        stage = max(range(len(busy)), key=busy.__getitem__)
    unit = "step" if kind == "training" else "request batch"
    total = float(report.step_time_s)
    where = f"stage {stage}'s " if stage is not None and top.key in ("compute", "tp_comm") else ""
    text = (
        f"{top.label}-bound: {where}{top.label} takes {fmt_time(top.seconds)} of the "
        f"{fmt_time(total)} {unit} ({fmt_pct(top.fraction)})"
    )
    if over is not None and over is not top:
        text += f"; the largest overhead is the {over.label}, {fmt_time(over.seconds)} ({fmt_pct(over.fraction)})"
    return Bottleneck(top.key, top.label, top.seconds, top.fraction, stage, over, text)


def _limits(
    report: Mapping[str, Any], plan: Plan, cluster: Cluster, workload: AnyWorkload
) -> list[str]:
    out: list[str] = []
    for r in report.get("memory_ledger") or []:
        use = float(r["total_GB"]) / float(r["capacity_GB"])
        if use >= MEMORY_TIGHT_FRACTION:
            grp = f"group {r['group']} " if len(plan.replica_groups) > 1 else ""
            out.append(
                f"memory: {grp}stage {r['stage']} uses {float(r['total_GB']):.1f} of "
                f"{float(r['capacity_GB']):.0f} GB per GPU ({use:.1%})"
            )
    if isinstance(workload, InferenceWorkload):
        for key, slo, name in (
            ("ttft_ms", workload.ttft_ms, "TTFT"),
            ("tpot_ms", workload.tpot_ms, "TPOT"),
        ):
            value = report.get(key)
            if (
                slo is not None
                and isinstance(value, int | float)
                and value >= SLO_TIGHT_FRACTION * slo
            ):
                out.append(
                    f"SLO: {name} {value:.1f} ms of the {slo:g} ms allowed ({value / slo:.0%})"
                )
    used = report.get("num_gpus")
    if isinstance(used, int) and used >= cluster.num_gpus:
        out.append(f"GPUs: all {cluster.num_gpus} GPUs of the cluster are in use")
    return out
