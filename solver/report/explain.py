"""Why a plan is what it is: its memory ledger, its bottleneck, and why the alternatives lose.

:func:`explain` takes a plan (or plans one with :func:`solver.planner.plan`) and answers three
questions with numbers the evaluator computes, never with rules of thumb:

* **Where does the memory go?**  The evaluator's memory ledger per stage (weights, gradients,
  optimizer states, activations of which transient, KV cache, framework overhead) against the
  GPU's capacity.
* **What limits the step?**  The step time split into additive terms -- compute and TP
  all-reduce of the busiest stage, the pipeline bubble, exposed p2p waits, exposed DP
  gradient sync and the optimizer step for training; compute, TP all-reduce and p2p of one
  request batch for inference -- and the largest one named the bottleneck.  Constraints that
  bind (memory near capacity, an SLO nearly met, every GPU in use) are listed beside it.
* **Why not something else?**  Concrete alternative plans, each built and scored by the
  evaluator: TP doubled and halved, PP doubled and halved (layers re-split evenly), pure DP,
  no and full recomputation, the seed rubric's plan and the best uniform (Megatron-style) plan.
  Each gets the ratio of its objective to the chosen plan's and a verdict naming the term that
  got worse, e.g. ``TP all-reduce 41.2 s vs 6.1 s per step``.

For an INFEASIBLE instance the planner's explanation (which constraint group binds, the smallest
relaxation) is reported with the memory ledger of the *closest* plan: the candidate whose worst
overshoot (peak memory / capacity, TTFT / SLO, TPOT / SLO) is smallest.

Alternatives keep the chosen plan's knobs (micro-batch, recompute, ZeRO, sequence parallelism,
batch size) where they still fit; a structural alternative that does not fit memory with them
is retried with the stronger recomputation and higher ZeRO stages the workload allows, so that
"pure DP does not fit" means it does not fit with any allowed setting.  A TP degree larger than
the NVLink domain is not a legal plan (the evaluator's ``check_tp_domain`` forbids it); it is
still priced, on a what-if copy of the cluster whose NVLink domain spans the TP group's nodes
at the bandwidth of the nodes' NICs, so the verdict can say how much the all-reduce would cost.

Nothing here prints; :func:`render_explanation` builds the rich view, ``to_dict`` the JSON.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..errors import SpecError
from ..specs import (
    Cluster,
    InferenceWorkload,
    Link,
    Model,
    Plan,
    Pool,
    Recompute,
    ReplicaGroup,
    TrainingWorkload,
)
from .documents import objective_unit, to_jsonable
from .render import DASH, fmt_bytes_GB, fmt_objective, fmt_pct, fmt_time, plan_table, status_text

__all__ = [
    "MEMORY_TIGHT_FRACTION",
    "SLO_TIGHT_FRACTION",
    "Alternative",
    "Bottleneck",
    "Explanation",
    "TimeTerm",
    "alternative_lines",
    "explain",
    "render_explanation",
    "step_terms",
]

log = logging.getLogger(__name__)

AnyWorkload = TrainingWorkload | InferenceWorkload

#: A stage whose peak memory is at least this fraction of its GPU's capacity is reported as
#: memory-bound.  Chosen, not measured: within 5% of capacity the caching allocator's
#: fragmentation slack (PyTorch CUDA caching allocator, typically a few %) is used up, so any
#: knob that adds memory (less recompute, a larger micro-batch) no longer fits.
MEMORY_TIGHT_FRACTION = 0.95

#: A latency at least this fraction of its SLO is reported as binding.  Chosen: 10% headroom is
#: the margin below which a larger batch (more throughput) would break the SLO on the next step
#: of the batch grid.
SLO_TIGHT_FRACTION = 0.9

#: A verdict mentions the pipeline bubble when it is this much (absolute) above the chosen
#: plan's: smaller differences are not what makes the alternative lose.
BUBBLE_NOTE_MARGIN = 0.05

#: Relative difference below which an alternative counts as a tie with the chosen plan.
TIE_RTOL = 1e-3

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

_RECOMPUTE_ORDER: tuple[Recompute, ...] = ("none", "selective", "full")


# ------------------------------------------------------------------------------------------
# Result types
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeTerm:
    """One additive term of the step (training) or request-batch (inference) time."""

    key: str  #: ``compute``, ``tp_comm``, ``pp_bubble``, ``p2p``, ``dp_sync``, ``optimizer``
    label: str  #: human name, e.g. ``'TP all-reduce'``
    seconds: float
    fraction: float  #: of the step (request) time

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Bottleneck:
    """The largest term of the step time, and the largest overhead (the largest non-compute
    term: what would pay most to remove)."""

    kind: str  #: a :data:`TERM_LABELS` key
    label: str
    seconds: float
    fraction: float
    stage: int | None  #: the busiest stage (training) or None
    overhead: TimeTerm | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overhead"] = self.overhead.to_dict() if self.overhead else None
        return d


@dataclass(frozen=True)
class Alternative:
    """A concrete alternative plan, scored by the evaluator, and why it loses.

    ``ratio`` is how many times worse its objective is than the chosen plan's (> 1: worse;
    tokens/s chosen / alternative for throughput, alternative / chosen for costs, GPUs and
    latency), None when either has no objective.  ``feasible`` is the evaluator's verdict on
    the real cluster; ``priced_on`` names a what-if cluster when the plan had to be priced on
    one (TP beyond the NVLink domain).
    """

    key: str
    label: str
    shape: str
    feasible: bool
    violations: list[str]
    objective: float | None
    ratio: float | None
    verdict: str
    metrics: dict[str, Any]
    terms: dict[str, float]
    note: str = ""
    priced_on: str | None = None
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "plan"}
        d["plan"] = self.plan.model_dump(mode="json", exclude_none=True) if self.plan else None
        return d


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` returns; ``to_dict()`` is the ``shardwise explain --json`` document.

    Attributes
    ----------
    source
        ``'planner'`` (the plan came from :func:`solver.planner.plan`) or ``'given'``.
    status
        The solver status (``OPTIMAL``, ``FEASIBLE``, ``INFEASIBLE``, ...), or ``GIVEN`` for a
        plan passed in (``feasible`` then says whether the evaluator accepts it).
    feasible
        Whether the evaluator accepts ``plan`` (False for the closest plan of an infeasible
        instance).
    message
        The planner's message: for INFEASIBLE, which constraint group binds and the smallest
        relaxation found.
    plan, report
        The explained plan and its evaluator report (``evaluate --json`` keys); for an
        infeasible instance, the closest plan and its report (``memory_source == 'closest'``).
    memory_ledger
        The report's ledger rows, each with ``use`` = total / capacity.
    terms, bottleneck
        The step (request) time split into additive terms; the largest one.
    limits
        Binding constraints in words (memory near capacity, SLOs nearly met, all GPUs used).
    alternatives
        Alternative plans, scored, with verdicts.
    """

    model: str
    cluster: str
    kind: str
    objective_name: str
    objective_unit: str
    source: str
    status: str
    message: str
    objective: float | None
    plan: Plan | None
    report: dict[str, Any] | None
    memory_source: str
    feasible: bool
    memory_ledger: list[dict[str, Any]]
    terms: list[TimeTerm]
    bottleneck: Bottleneck | None
    limits: list[str]
    alternatives: list[Alternative]
    solve_time_s: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One JSON-able document (strict JSON after :func:`solver.report.to_jsonable`)."""
        doc: dict[str, Any] = {
            "model": self.model,
            "cluster": self.cluster,
            "kind": self.kind,
            "objective": {
                "name": self.objective_name,
                "unit": self.objective_unit,
                "value": self.objective,
            },
            "source": self.source,
            "status": self.status,
            "feasible": self.feasible,
            "message": self.message or None,
            "plan": self.plan.model_dump(mode="json", exclude_none=True) if self.plan else None,
            "memory_source": self.memory_source,
            "memory_ledger": self.memory_ledger,
            "terms": [t.to_dict() for t in self.terms],
            "bottleneck": self.bottleneck.to_dict() if self.bottleneck else None,
            "limits": list(self.limits),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "report": self.report,
            "solve_time_s": self.solve_time_s,
        }
        out: dict[str, Any] = to_jsonable(doc)
        return out


# ------------------------------------------------------------------------------------------
# Evaluation helpers
# ------------------------------------------------------------------------------------------
def _evaluate(model: Model, cluster: Cluster, workload: AnyWorkload, plan: Plan) -> Any:
    from ..evaluate import evaluate

    return evaluate(model, cluster, workload, plan)


def _objective(report: Mapping[str, Any], workload: AnyWorkload) -> float | None:
    """The workload's objective read off a report (None when the report cannot give it)."""
    from ..planner import objective_of

    try:
        value = objective_of(dict(report), workload)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def _maximise(workload: AnyWorkload) -> bool:
    return workload.objective == "max_throughput"


def _worse_ratio(chosen: float | None, alt: float | None, workload: AnyWorkload) -> float | None:
    """How many times worse ``alt`` is than ``chosen`` (> 1 worse, < 1 better)."""
    if chosen is None or alt is None or chosen <= 0 or alt <= 0:
        return None
    return chosen / alt if _maximise(workload) else alt / chosen


def _memory_use(report: Mapping[str, Any]) -> float:
    """Worst stage's total / capacity (inf when the report has no ledger)."""
    rows = report.get("memory_ledger") or []
    if not rows:
        return math.inf
    return max(float(r["total_GB"]) / float(r["capacity_GB"]) for r in rows)


def _overshoot(report: Mapping[str, Any], workload: AnyWorkload) -> float:
    """Worst ratio of a limit's use to the limit: memory, and TTFT/TPOT against their SLOs."""
    worst = _memory_use(report)
    if isinstance(workload, InferenceWorkload):
        for key, slo in (("ttft_ms", workload.ttft_ms), ("tpot_ms", workload.tpot_ms)):
            value = report.get(key)
            if slo is not None and isinstance(value, int | float):
                worst = max(worst, float(value) / slo)
    return worst


def _meets_target(report: Mapping[str, Any], workload: AnyWorkload) -> bool:
    if isinstance(workload, InferenceWorkload) and workload.target_throughput_tokens_per_s:
        tps = report.get("tokens_per_s")
        return isinstance(tps, int | float) and tps >= workload.target_throughput_tokens_per_s * (
            1 - 1e-9
        )
    return True


# ------------------------------------------------------------------------------------------
# Step-time terms and bottleneck
# ------------------------------------------------------------------------------------------
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
    import numpy as np

    from ..costmodel import simulate_pipeline

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


def _ledger(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in report.get("memory_ledger") or []:
        row = dict(r)
        row["use"] = float(r["total_GB"]) / float(r["capacity_GB"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------
# Building alternative plans
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """A homogeneous plan: one pool, one TP, even layer split."""

    pool: str
    tp: int
    pp: int
    dp: int
    micro_batch: int = 1
    recompute: Recompute = "none"
    zero_stage: int = 0
    sequence_parallel: bool = False
    batch_size: int | None = None

    def describe(self, kind: str) -> str:
        core = f"TP={self.tp} PP={self.pp} DP={self.dp}"
        if kind == "training":
            return (
                f"{core}, micro-batch {self.micro_batch}, recompute {self.recompute}, "
                f"ZeRO {self.zero_stage}"
            )
        return f"{core}, batch {self.batch_size}"


def _base_shape(plan: Plan) -> _Shape:
    """The chosen plan's first group as a homogeneous shape (its most common pool and TP)."""
    grp = plan.replica_groups[0]
    pools = [s.pool for s in grp.stages]
    tps = [s.tp for s in grp.stages]
    return _Shape(
        pool=max(set(pools), key=pools.count),
        tp=max(set(tps), key=tps.count),
        pp=grp.pp,
        dp=grp.count,
        micro_batch=grp.micro_batch_size or 1,
        recompute=grp.recompute,
        zero_stage=grp.zero_stage,
        sequence_parallel=grp.sequence_parallel,
        batch_size=grp.batch_size,
    )


def _tp_domain(pool: Pool) -> int:
    return pool.gpus_per_node * pool.nvlink_domain_nodes


def _what_if_cluster(cluster: Cluster, pool: Pool, tp: int) -> Cluster | None:
    """A copy of ``cluster`` where ``pool``'s NVLink domain spans the nodes of a ``tp`` group
    at the per-GPU bandwidth and latency of the nodes' NICs (None if no whole number of nodes
    holds the group)."""
    from ..costmodel import constants as C
    from ..evaluate import nic_link

    if tp % pool.gpus_per_node:
        return None
    nodes = tp // pool.gpus_per_node
    if nodes > pool.nodes or pool.nodes % nodes:
        return None
    nic = nic_link(pool)  # effective bandwidth (NIC bus efficiency applied)
    eff = C.PCIE_BUS_EFFICIENCY if pool.intra_node.kind == "pcie" else C.NVLINK_BUS_EFFICIENCY
    link = Link(
        kind=pool.intra_node.kind,
        bandwidth_GBps=nic.bandwidth_GBps / eff,  # tp_link() multiplies eff back in
        latency_us=nic.latency_us,
    )
    fake = pool.model_copy(update={"nvlink_domain_nodes": nodes, "intra_node": link})
    pools = [fake if p.name == pool.name else p for p in cluster.pools]
    return cluster.model_copy(update={"pools": pools, "name": f"{cluster.name} (what-if)"})


def _build(model: Model, cluster: Cluster, workload: AnyWorkload, shape: _Shape) -> Plan:
    """The plan of ``shape`` with devices placed on ``cluster`` (SpecError if it cannot be)."""
    from ..planner import build_stages, split_layers

    layers = split_layers(model.num_layers, shape.pp)
    stages = build_stages(cluster, [(shape.dp, [(shape.pool, shape.tp, n) for n in layers])])[0]
    if isinstance(workload, TrainingWorkload):
        group = ReplicaGroup(
            count=shape.dp,
            micro_batch_size=shape.micro_batch,
            num_micro_batches=workload.global_batch_size // (shape.dp * shape.micro_batch),
            schedule="1f1b",
            recompute=shape.recompute,
            zero_stage=shape.zero_stage,
            sequence_parallel=shape.sequence_parallel and shape.tp > 1,
            stages=stages,
        )
        return Plan(kind="training", replica_groups=[group])
    group = ReplicaGroup(count=shape.dp, batch_size=shape.batch_size, stages=stages)
    return Plan(kind="inference", replica_groups=[group])


@dataclass
class _Scored:
    shape: _Shape
    plan: Plan
    report: Any  # evaluator Report on the pricing cluster
    real_violations: list[str]
    objective: float | None
    ok: bool  # fits and meets every rule, on the pricing cluster
    pricing: Cluster


def _score(model: Model, cluster: Cluster, workload: AnyWorkload, shape: _Shape) -> _Scored | str:
    """Build, place and evaluate ``shape``; a string says why it could not be built."""
    try:
        pool = cluster.pool(shape.pool)
    except KeyError:
        return f"pool {shape.pool!r} does not exist"
    if model.num_attention_heads % shape.tp:
        return f"TP={shape.tp} does not divide the {model.num_attention_heads} attention heads"
    if shape.pp > model.num_layers:
        return f"PP={shape.pp} exceeds the {model.num_layers} layers"
    pricing = cluster
    if shape.tp > _tp_domain(pool):
        what_if = _what_if_cluster(cluster, pool, shape.tp)
        if what_if is None:
            return f"TP={shape.tp} does not fill whole nodes of pool {pool.name}"
        pricing = what_if
    if shape.tp * shape.pp * shape.dp > pool.num_gpus:
        return f"needs {shape.tp * shape.pp * shape.dp} GPUs, pool {pool.name} has {pool.num_gpus}"
    try:
        plan = _build(model, pricing, workload, shape)
    except (SpecError, ValueError) as e:
        return str(e)
    report = _evaluate(model, pricing, workload, plan)
    real = (
        report.violations
        if pricing is cluster
        else _evaluate(model, cluster, workload, plan).violations
    )
    rd = report.to_dict()
    ok = bool(rd["feasible"]) and _meets_target(rd, workload)
    return _Scored(shape, plan, report, list(real), _objective(rd, workload), ok, pricing)


def _better(a: _Scored, b: _Scored | None, workload: AnyWorkload) -> bool:
    """``a`` preferred to ``b``: feasible beats infeasible; then the objective.  Among
    infeasible ones, plans the evaluator accepts (only a throughput target is missed) beat
    those it rejects, and serve more tokens/s; rejected ones rank by the smaller overshoot
    (closest to fitting)."""
    if b is None:
        return True
    if a.ok != b.ok:
        return a.ok
    if a.ok and a.objective is not None and b.objective is not None:
        return a.objective > b.objective if _maximise(workload) else a.objective < b.objective
    fa, fb = bool(a.report.feasible), bool(b.report.feasible)
    if fa != fb:
        return fa
    if fa:
        return float(a.report.tokens_per_s or 0.0) > float(b.report.tokens_per_s or 0.0)
    return _overshoot(a.report.to_dict(), workload) < _overshoot(b.report.to_dict(), workload)


def _best_variant(
    model: Model, cluster: Cluster, workload: AnyWorkload, shapes: Iterable[_Shape]
) -> _Scored | str:
    """The best-scoring of ``shapes`` (see :func:`_better`); the first error if none builds."""
    best: _Scored | None = None
    first_error = ""
    for shape in shapes:
        s = _score(model, cluster, workload, shape)
        if isinstance(s, str):
            first_error = first_error or s
            continue
        if _better(s, best, workload):
            best = s
    return best if best is not None else first_error or "no variant could be built"


def _largest_dp(workload: AnyWorkload, micro_batch: int, limit: int) -> int:
    """The largest DP degree <= limit that divides the batch into whole micro-batches."""
    if isinstance(workload, InferenceWorkload):
        return max(0, limit)
    n = workload.global_batch_size // micro_batch
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 0


def _variants(
    workload: AnyWorkload, cluster: Cluster, base: _Shape, tp: int, pp: int
) -> list[_Shape]:
    """``(tp, pp)`` on the base's pool with DP filling it; knobs: the base's first, then the
    stronger recomputation and higher ZeRO stages (training) or other batch sizes (inference)
    the workload allows."""
    pool = cluster.pool(base.pool)
    if isinstance(workload, TrainingWorkload):
        d = _largest_dp(workload, base.micro_batch, pool.num_gpus // (tp * pp))
        if d < 1:
            return []
        start = _RECOMPUTE_ORDER.index(base.recompute)
        recomputes = [r for r in _RECOMPUTE_ORDER[start:] if r in workload.recompute]
        recomputes = recomputes or [base.recompute]
        zeros = [z for z in sorted(workload.zero_stages) if z >= base.zero_stage] or [
            base.zero_stage
        ]
        return [
            dataclasses.replace(base, tp=tp, pp=pp, dp=d, recompute=r, zero_stage=z)
            for r in recomputes
            for z in zeros
        ]
    d = pool.num_gpus // (tp * pp)
    if d < 1:
        return []
    batches = [base.batch_size] if base.batch_size in workload.batch_sizes else []
    batches += [b for b in sorted(workload.batch_sizes) if b != base.batch_size]
    out: list[_Shape] = []
    for b in batches:
        shape = dataclasses.replace(base, tp=tp, pp=pp, dp=d, batch_size=b)
        out.append(shape)
    return out


def _scale_replicas(model: Model, cluster: Cluster, workload: AnyWorkload, s: _Scored) -> _Scored:
    """Inference with a throughput target: deploy just enough replicas to meet it."""
    target = getattr(workload, "target_throughput_tokens_per_s", None)
    if not isinstance(workload, InferenceWorkload) or not target or not s.ok:
        return s
    per = float(s.report.tokens_per_s or 0.0) / s.shape.dp
    if per <= 0:
        return s
    need = max(1, math.ceil(target / per * (1 - 1e-12)))
    if need >= s.shape.dp:
        return s
    scaled = _score(model, cluster, workload, dataclasses.replace(s.shape, dp=need))
    return scaled if isinstance(scaled, _Scored) else s


# ------------------------------------------------------------------------------------------
# Verdicts
# ------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------
# The alternatives
# ------------------------------------------------------------------------------------------
def _structural(
    model: Model, cluster: Cluster, workload: AnyWorkload, base: _Shape
) -> list[tuple[str, str, str, list[_Shape]]]:
    """``(key, label, note, shapes)`` of the TP/PP/DP alternatives of ``base``."""
    pool = cluster.pool(base.pool)
    out: list[tuple[str, str, str, list[_Shape]]] = []

    def add(key: str, label: str, tp: int, pp: int, note: str = "") -> None:
        if tp < 1 or pp < 1 or (tp, pp) == (base.tp, base.pp):
            return
        # No shapes (the pool cannot hold one replica) is reported, not dropped.
        out.append((key, label, note, _variants(workload, cluster, base, tp, pp)))

    gpus = pool.num_gpus
    tp2, pp_for_tp2 = base.tp * 2, base.pp
    if tp2 * base.pp > gpus and base.pp > 1:
        pp_for_tp2 = base.pp // 2  # same GPUs per replica: the pool has no room for more
    note = ""
    if tp2 > _tp_domain(pool):
        nodes = max(1, tp2 // pool.gpus_per_node)
        note = (
            f"TP={tp2} spans {nodes} nodes: priced as if its all-reduce ran over the "
            f"nodes' NICs ({pool.nic.count} x {pool.nic.bandwidth_GBps:g} GB/s per node)"
        )
    suffix = f", PP={pp_for_tp2}" if pp_for_tp2 != base.pp else ""
    add("tp_x2", f"TP x2 (TP={tp2}{suffix})", tp2, pp_for_tp2, note)
    if base.tp > 1:
        add("tp_half", f"TP /2 (TP={base.tp // 2})", base.tp // 2, base.pp)
    pp2, tp_for_pp2 = base.pp * 2, base.tp
    if base.tp * pp2 > gpus and base.tp > 1:
        tp_for_pp2 = base.tp // 2
    suffix = f", TP={tp_for_pp2}" if tp_for_pp2 != base.tp else ""
    add("pp_x2", f"PP x2 (PP={pp2}{suffix})", tp_for_pp2, pp2)
    if base.pp > 1:
        add("pp_half", f"PP /2 (PP={base.pp // 2})", base.tp, base.pp // 2)
    add("pure_dp", "pure DP (TP=1, PP=1)", 1, 1)
    return out


def _knob_alternatives(workload: AnyWorkload, plan: Plan) -> list[tuple[str, str, Plan]]:
    """The chosen plan itself with no / full recomputation (training, where allowed)."""
    if not isinstance(workload, TrainingWorkload):
        return []
    grp = plan.replica_groups[0]
    out: list[tuple[str, str, Plan]] = []
    for rc, key in (("none", "recompute_none"), ("full", "recompute_full")):
        if rc != grp.recompute and rc in workload.recompute:
            groups = [g.model_copy(update={"recompute": rc}) for g in plan.replica_groups]
            edited = plan.model_copy(
                update={"replica_groups": groups, "predicted": {}, "solver": None}
            )
            out.append((key, f"recompute {rc} (same layout)", edited))
    return out


def _uniform_best(model: Model, cluster: Cluster, workload: AnyWorkload) -> tuple[Plan | None, int]:
    """The best uniform plan: :func:`solver.baselines.uniform.uniform_grid` at the largest DP
    degree of each point (one pool, one TP, even layer split), scored by the evaluator.

    Returns the plan (None if no point is feasible) and the number of grid points.  Training
    points are screened before the full simulation, which costs O(m p) and dominates: each is
    first evaluated with ``min(m, p)`` micro-batches, which gives its exact memory ledger
    (in-flight activations are ``min(m, p - s)``) and its busy time per micro-batch, hence a
    valid bound on its step time (a stage busy ``m b`` seconds cannot finish sooner).  Points
    that do not fit are dropped; the rest are simulated best bound first until the bound
    cannot beat the best plan found.  Same answer as simulating every point, ~20x faster.
    """
    from ..baselines.uniform import uniform_grid

    points = list(uniform_grid(model, cluster, workload, largest_dp_only=True))
    best: tuple[float, Plan] | None = None
    maximise = _maximise(workload)

    def better(a: float, b: float) -> bool:
        return a > b if maximise else a < b

    if isinstance(workload, TrainingWorkload):
        screened: list[tuple[float, Plan]] = []
        tokens = workload.global_batch_size * workload.sequence_length
        for _, plan in points:
            grp = plan.replica_groups[0]
            m = grp.num_micro_batches or 1
            short = min(m, grp.pp)
            proxy = plan.model_copy(
                update={"replica_groups": [grp.model_copy(update={"num_micro_batches": short})]}
            )
            rep = _evaluate(model, cluster, workload, proxy)
            if rep.pipeline is None or _memory_use(rep.to_dict()) > 1.0 + 1e-9:
                continue
            step_lb = m * max(rep.pipeline.busy_s) / short
            if workload.objective == "max_throughput":
                bound = tokens / step_lb
            else:  # min_cost: $ per million tokens
                if rep.cost_per_hour is None:
                    continue
                bound = rep.cost_per_hour / 3600.0 * step_lb / tokens * 1e6
            screened.append((bound, plan))
        screened.sort(key=lambda x: -x[0] if maximise else x[0])
        candidates = screened
    else:
        candidates = [(math.nan, plan) for _, plan in points]
    for bound, plan in candidates:
        if best is not None and not math.isnan(bound) and not better(bound, best[0]):
            break  # sorted by bound: no later point can beat the incumbent
        rd = _evaluate(model, cluster, workload, plan).to_dict()
        if not rd["feasible"] or not _meets_target(rd, workload):
            continue
        obj = _objective(rd, workload)
        if obj is not None and (best is None or better(obj, best[0])):
            best = (obj, plan)
    return (best[1] if best else None), len(points)


def _from_plan(model: Model, cluster: Cluster, workload: AnyWorkload, plan: Plan) -> _Scored:
    report = _evaluate(model, cluster, workload, plan)
    rd = report.to_dict()
    return _Scored(
        _base_shape(plan),
        plan,
        report,
        list(report.violations),
        _objective(rd, workload),
        bool(rd["feasible"]) and _meets_target(rd, workload),
        cluster,
    )


def _shape_of(plan: Plan, kind: str) -> str:
    parts = []
    for grp in plan.replica_groups:
        tps = "/".join(str(t) for t in sorted({s.tp for s in grp.stages}))
        pools = "/".join(sorted({s.pool for s in grp.stages}))
        core = f"TP={tps} PP={grp.pp} DP={grp.count} on {pools}"
        if kind == "training":
            core += (
                f", micro-batch {grp.micro_batch_size}, recompute {grp.recompute}, "
                f"ZeRO {grp.zero_stage}"
            )
        else:
            core += f", batch {grp.batch_size}"
        parts.append(core)
    return " + ".join(parts)


def _alternative(
    key: str,
    label: str,
    note: str,
    scored: _Scored | str,
    chosen: _Scored | None,
    chosen_terms: Mapping[str, float],
    workload: AnyWorkload,
    cluster: Cluster,
    better_note: str = "",
) -> Alternative:
    if isinstance(scored, str):
        return Alternative(
            key,
            label,
            DASH,
            False,
            [scored],
            None,
            None,
            f"cannot be built: {scored}",
            {},
            {},
            note,
        )
    rd = scored.report.to_dict()
    terms = step_terms(scored.report, scored.plan) if rd.get("step_time_s") is not None else {}
    verdict, ratio = _verdict(
        scored,
        terms,
        chosen_terms,
        chosen.objective if chosen and chosen.ok else None,
        chosen.report.to_dict() if chosen else None,
        workload,
        better_note,
        cluster.name,
    )
    return Alternative(
        key=key,
        label=label,
        shape=_shape_of(scored.plan, workload.kind),
        feasible=not scored.real_violations,
        violations=list(scored.real_violations),
        objective=scored.objective,
        ratio=ratio,
        verdict=verdict,
        metrics=_metrics(rd),
        terms=dict(terms),
        note=note,
        priced_on=scored.pricing.name if scored.pricing is not cluster else None,
        plan=scored.plan,
    )


def _alternatives(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    chosen: _Scored,
    chosen_terms: Mapping[str, float],
    better_note: str = "",
) -> list[Alternative]:
    from ..baselines import rubric_plan

    base = _base_shape(chosen.plan)
    out: list[Alternative] = []
    for key, label, note, shapes in _structural(model, cluster, workload, base):
        if not shapes:
            pool = cluster.pool(base.pool)
            out.append(
                _alternative(
                    key,
                    label,
                    note,
                    f"one replica needs more than the {pool.num_gpus} GPUs of pool {pool.name}",
                    chosen,
                    chosen_terms,
                    workload,
                    cluster,
                    better_note,
                )  # fmt: skip
            )
            continue
        best = _best_variant(model, cluster, workload, shapes)
        if isinstance(best, _Scored):
            best = _scale_replicas(model, cluster, workload, best)
            if not best.ok and len(shapes) > 1:
                note = (
                    note + "; " if note else ""
                ) + "no allowed recompute/ZeRO/batch setting fits"
        out.append(
            _alternative(
                key, label, note, best, chosen, chosen_terms, workload, cluster, better_note
            )
        )
    for key, label, edited in _knob_alternatives(workload, chosen.plan):
        s = _from_plan(model, cluster, workload, edited)
        out.append(
            _alternative(key, label, "", s, chosen, chosen_terms, workload, cluster, better_note)
        )
    try:
        rubric = rubric_plan(model, cluster, workload)
    except (SpecError, ValueError) as e:
        rubric = None
        log.info("rubric plan failed: %s", e)
    if rubric is not None:
        s = _from_plan(model, cluster, workload, rubric)
        out.append(
            _alternative(
                "rubric", "seed rubric", "", s, chosen, chosen_terms, workload, cluster, better_note
            )
        )
    else:
        out.append(
            _alternative(
                "rubric", "seed rubric", "", "no rubric candidate fits memory", chosen,
                chosen_terms, workload, cluster,
            )
        )  # fmt: skip
    uniform, n = _uniform_best(model, cluster, workload)
    label = f"best uniform ({n} grid points)"
    if uniform is not None:
        s = _from_plan(model, cluster, workload, uniform)
        out.append(
            _alternative(
                "uniform", label, "", s, chosen, chosen_terms, workload, cluster, better_note
            )
        )
    else:
        out.append(
            _alternative(
                "uniform", label, "", "no uniform grid point is feasible", chosen,
                chosen_terms, workload, cluster,
            )
        )  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------
# The closest plan of an infeasible instance
# ------------------------------------------------------------------------------------------
def _closest(model: Model, cluster: Cluster, workload: AnyWorkload) -> _Scored | None:
    """The homogeneous plan with the smallest worst overshoot (memory / capacity, latency /
    SLO), over every pool, TP option and pipeline depth, with the most memory-saving knobs
    the workload allows (strongest recomputation, highest ZeRO stage, smallest micro-batch or
    batch size)."""
    from ..cpsat.options import pipeline_degrees, tp_options

    best: _Scored | None = None
    best_key = math.inf
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            for pp in pipeline_degrees(model.num_layers, pool.num_gpus // tp):
                if isinstance(workload, TrainingWorkload):
                    mb = min(
                        (
                            b
                            for b in workload.micro_batch_sizes
                            if workload.global_batch_size % b == 0
                        ),
                        default=min(workload.micro_batch_sizes),
                    )
                    rc = next(r for r in reversed(_RECOMPUTE_ORDER) if r in workload.recompute)
                    d = _largest_dp(workload, mb, pool.num_gpus // (tp * pp))
                    if d < 1:
                        continue
                    shape = _Shape(
                        pool.name, tp, pp, d, mb, rc, max(workload.zero_stages),
                        True in workload.sequence_parallel,
                    )  # fmt: skip
                else:
                    shape = _Shape(pool.name, tp, pp, 1, batch_size=min(workload.batch_sizes))
                s = _score(model, cluster, workload, shape)
                if isinstance(s, str):
                    continue
                key = _overshoot(s.report.to_dict(), workload)
                if key < best_key:
                    best, best_key = s, key
    return best


# ------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------
def explain(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    plan: Plan | None = None,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int | None = None,
    alternatives: bool = True,
) -> Explanation:
    """Explain ``plan`` (or the planner's plan): memory ledger, bottleneck, alternatives.

    Parameters
    ----------
    model, cluster, workload
        Validated specs.
    plan
        The plan to explain; None (default) plans one with :func:`solver.planner.plan`.
    time_limit_s, seed, num_workers
        Passed to the planner when ``plan`` is None (defaults 10 s, 0, all cores up to 8).
    alternatives
        Build and score the alternative plans (default True; a few hundred evaluator calls,
        typically 1-5 s on large models).

    Returns
    -------
    Explanation
        Never raises for an infeasible instance or plan; bad input raises
        :class:`~solver.errors.SpecError` (an INVALID_INPUT solve included).
    """
    from ..planner import plan as solve
    from ..result import Status

    source = "given" if plan is not None else "planner"
    message = ""
    solve_time: float | None = None
    stats: dict[str, Any] = {}
    if plan is None:
        result = solve(
            model,
            cluster,
            workload,
            time_limit_s=time_limit_s,
            seed=seed,
            num_workers=num_workers,
            compare_baseline=False,
        )
        if result.status == Status.INVALID_INPUT:
            raise SpecError(result.message or "invalid input")
        status = result.status.value
        message = result.message
        solve_time = result.time_s
        plan = result.plan
    else:
        status = ""
    common: dict[str, Any] = dict(
        model=model.name,
        cluster=cluster.name,
        kind=workload.kind,
        objective_name=workload.objective,
        objective_unit=objective_unit(workload.objective, workload.kind),
        source=source,
        message=message,
        solve_time_s=solve_time,
        stats=stats,
    )
    if plan is None:  # INFEASIBLE (or a time-out without a plan): the closest plan's ledger
        closest = _closest(model, cluster, workload)
        if closest is None:
            return Explanation(
                status=status, objective=None, plan=None, report=None, memory_source="none",
                feasible=False, memory_ledger=[], terms=[], bottleneck=None, limits=[], alternatives=[], **common,
            )  # fmt: skip
        rd = closest.report.to_dict()
        # The closest plan cannot run, so its time terms would explain nothing: only what
        # keeps it from fitting is reported.
        over = _overshoot(rd, workload)
        limits = [
            f"closest plan ({closest.shape.describe(workload.kind)}) overshoots by "
            f"{over:.2f}x: " + "; ".join(rd["violations"][:3])
        ]
        return Explanation(
            status=status,
            objective=None,
            plan=closest.plan,
            report=rd,
            memory_source="closest",
            feasible=False,
            memory_ledger=_ledger(rd),
            terms=[],
            bottleneck=None,
            limits=limits,
            alternatives=[],
            **common,
        )
    chosen = _from_plan(model, cluster, workload, plan)
    rd = chosen.report.to_dict()
    if source == "given":
        status = "GIVEN"
        if not rd["feasible"]:
            common["message"] = "the given plan violates: " + "; ".join(rd["violations"])
    # A plan that cannot run has no step to explain: only its violations are reported.
    runs = bool(rd["feasible"]) and rd.get("step_time_s") is not None
    terms = step_terms(chosen.report, plan) if runs else {}
    tl = _terms_list(terms, float(rd.get("step_time_s") or 0.0))
    limits = _limits(rd, plan, cluster, workload) if runs else list(rd["violations"])
    if source == "given":
        better_note = "better than the given plan"
    elif status == "FEASIBLE":
        better_note = "the solve stopped at its time limit before finding it: raise --time-limit"
    else:
        better_note = (
            "the planner optimises the closed-form pipeline time; the evaluator's event "
            "simulation ranks these two differently"
        )
    alts = (
        _alternatives(model, cluster, workload, chosen, terms, better_note) if alternatives else []
    )
    return Explanation(
        status=status,
        objective=chosen.objective if chosen.ok else None,
        plan=plan,
        report=rd,
        memory_source="chosen",
        feasible=bool(rd["feasible"]),
        memory_ledger=_ledger(rd),
        terms=tl,
        bottleneck=_bottleneck(tl, chosen.report, workload.kind) if tl else None,
        limits=limits,
        alternatives=alts,
        **common,
    )


# ------------------------------------------------------------------------------------------
# Rich rendering
# ------------------------------------------------------------------------------------------
_LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("weights_GB", "weights"),
    ("grads_GB", "grads"),
    ("optimizer_GB", "optimizer"),
    ("activations_GB", "activations"),
    ("transient_activations_GB", "of which transient"),
    ("kv_cache_GB", "KV cache"),
    ("overhead_GB", "overhead"),
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
        parts.append(Panel(Text(expl.message), title=title, border_style=style, expand=False))
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
    if expl.alternatives:
        parts.append(Text(""))
        parts.append(_alternatives_table(expl))
    return Group(*parts)


def alternative_lines(expl: Explanation) -> list[str]:
    """One plain line per alternative (``label: verdict``), for logs and tests."""
    return [f"{a.label}: {a.verdict}" for a in expl.alternatives]
