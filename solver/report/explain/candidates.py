"""Homogeneous candidate plans (one pool, one TP, even layer split): building and placing
them, pricing a TP group wider than the NVLink domain on a what-if cluster, scoring them with
the evaluator, and picking the best of a shape's knob variants."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...construction import build_stages, split_layers
from ...costmodel import constants as C
from ...errors import SpecError
from ...evaluate import nic_link
from ...specs import (
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
from .evaluation import AnyWorkload, _evaluate, _maximise, _meets_target, _objective, _overshoot

_RECOMPUTE_ORDER: tuple[Recompute, ...] = ("none", "selective", "full")


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
