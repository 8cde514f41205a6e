"""The seed's decision rubric as a baseline planner.

The rubric, in order (``../shared/seed-000_2ceb2aec863ebc4d.txt``, "How do you actually pick a
strategy?"):

1. The model fits on one GPU: pure data parallelism (TP = PP = 1) over every GPU.
2. It fits in one node: TP inside the node, the smallest TP degree that fits; DP across nodes.
3. It needs several nodes: TP = ``gpus_per_node`` inside each node, PP across nodes (the
   smallest PP that fits), DP for the GPUs left over.
4. Latency objectives (inference ``min_latency``): the largest TP inside the NVLink domain,
   then the smallest PP that fits.

"Fits" is judged by the evaluator: the candidate plan's peak memory per GPU is within the
GPU's capacity.  The rubric is homogeneous: it uses the cluster's only pool or, on a
heterogeneous cluster, the pool with the most GPUs (then the fastest GPU, then the first
listed).

The remaining knobs take the smallest memory-safe values the workload allows: the smallest
micro-batch size that divides the global batch; the least recomputation (none, selective,
full) and the lowest ZeRO stage with which the plan fits; sequence parallelism whenever
TP > 1 and the workload allows it (it only removes activation memory).  For inference the
rubric takes, among batch sizes whose plan fits, the largest one that meets every SLO for
throughput objectives and the smallest for ``min_latency`` (falling back to the smallest
batch that fits memory when none meets the SLOs; the evaluator then reports the violation).
With a ``target_throughput_tokens_per_s`` the rubric deploys just enough replicas to reach it;
otherwise every GPU of the pool runs a replica ("DP for the rest").

Time: :func:`rubric_plan_scored` takes a :class:`~solver.cpsat.deadline.Deadline`; the walk
stops before a candidate whose evaluation would end past the deadline's promised return time
and raises :class:`RubricCutShort` saying how far it got -- never a None that would read as
"no rubric candidate fits".
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from ..catalog import gpu_of
from ..construction import build_stages, check_stages, split_layers
from ..cpsat.deadline import Deadline
from ..cpsat.options import tp_options
from ..specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    Recompute,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)
from ._scoring import AnyWorkload, divisors_up_to, evaluate_plan, memory_ok

__all__ = ["RubricCutShort", "rubric_plan", "rubric_plan_scored", "rubric_pool", "rubric_shapes"]

#: Recomputation options from least to most memory saved (and most compute added).
RECOMPUTE_ORDER: tuple[Recompute, ...] = ("none", "selective", "full")

#: Seconds kept in hand after the next evaluation when a deadline is given.
DEADLINE_RESERVE_S = 0.05


class RubricCutShort(RuntimeError):
    """The deadline came before the rubric reached a verdict: ``shapes`` of its ``(tp, pp)``
    candidates were walked (``evaluations`` full evaluations) when it stopped."""

    def __init__(self, shapes: int, evaluations: int) -> None:
        super().__init__(
            f"the rubric baseline stopped at the time limit after {shapes} shape(s) and "
            f"{evaluations} evaluation(s), before any candidate fitted"
        )
        self.shapes = shapes
        self.evaluations = evaluations


class _Clock:
    """The deadline as the rubric reads it: room for one more evaluation (the slowest so
    far) before the promised return time, else :class:`RubricCutShort`."""

    def __init__(self, deadline: Deadline | None) -> None:
        self.deadline = deadline
        self.slowest = 0.0
        self.shapes = 0
        self.evaluations = 0

    def check(self) -> None:
        d = self.deadline
        if d is not None and d.bounded and not d.allows(self.slowest + DEADLINE_RESERVE_S):
            raise RubricCutShort(self.shapes, self.evaluations)

    def evaluate(
        self, model: Model, cluster: Cluster, workload: AnyWorkload, plan: Plan
    ) -> dict[str, Any]:
        self.check()
        t0 = time.perf_counter()
        report = evaluate_plan(model, cluster, workload, plan)
        self.slowest = max(self.slowest, time.perf_counter() - t0)
        self.evaluations += 1
        return report


def rubric_plan(model: Model, cluster: Cluster, workload: AnyWorkload) -> Plan | None:
    """The rubric's plan, or None if no rubric candidate fits memory.

    Parameters
    ----------
    model, cluster, workload
        Validated specs.

    Returns
    -------
    Plan or None
        The first candidate, in rubric order, whose evaluator report fits memory.  The plan is
        not guaranteed to be feasible in every other respect (an inference SLO may be missed);
        score it with :func:`solver.evaluate.evaluate`.
    """
    found = _rubric(model, cluster, workload)
    return None if found is None else found[0]


def rubric_plan_scored(
    model: Model, cluster: Cluster, workload: AnyWorkload, deadline: Deadline | None = None
) -> tuple[Plan, dict[str, Any] | None] | None:
    """:func:`rubric_plan` with the evaluator's report of that plan (``Report.to_dict()``)
    where the rubric computed it on the way (None where it did not), so that a caller who
    wants both need not evaluate the plan a second time.

    ``deadline`` (default None: no limit): before each candidate shape and each evaluation
    the walk checks that one more evaluation (the slowest so far) still ends before the
    deadline's promised return time (:meth:`Deadline.allows`); where it would not, it stops
    and raises :class:`RubricCutShort`.
    """
    return _rubric(model, cluster, workload, _Clock(deadline))


def _rubric(
    model: Model, cluster: Cluster, workload: AnyWorkload, clock: _Clock | None = None
) -> tuple[Plan, dict[str, Any] | None] | None:
    clock = clock or _Clock(None)
    pool = rubric_pool(cluster)
    if isinstance(workload, TrainingWorkload):
        return _training(model, cluster, workload, pool, clock)
    return _inference(model, cluster, workload, pool, clock)


def rubric_pool(cluster: Cluster) -> Pool:
    """The pool the rubric deploys on: most GPUs, then the fastest GPU, then the first listed."""
    best = cluster.pools[0]
    for pool in cluster.pools[1:]:
        if (pool.num_gpus, gpu_of(pool).bf16_tflops) > (best.num_gpus, gpu_of(best).bf16_tflops):
            best = pool
    return best


def rubric_shapes(model: Model, pool: Pool, *, latency: bool = False) -> Iterator[tuple[int, int]]:
    """Candidate ``(tp, pp)`` per replica, in the rubric's order of preference.

    Parameters
    ----------
    latency
        Latency objective: the largest TP in the NVLink domain, then PP = 1, 2, ...
    """
    options = tp_options(model, pool)
    gpn = pool.gpus_per_node

    def max_pp(tp: int) -> int:
        return min(model.num_layers, pool.num_gpus // tp)

    if latency:
        tp = max(options)
        for pp in range(1, max_pp(tp) + 1):
            yield tp, pp
        return
    # 1. One GPU: pure DP.
    yield 1, 1
    # 2. One node: the smallest TP inside the node.
    in_node = [t for t in options if t <= gpn]
    for tp in in_node:
        if tp > 1:
            yield tp, 1
    # 3. Several nodes: TP fills a node (the largest in-node TP the heads allow), PP across.
    tp = max(in_node)
    for pp in range(2, max_pp(tp) + 1):
        yield tp, pp


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _cannot_fit(model: Model, cluster: Cluster, workload: TrainingWorkload, plan: Plan) -> bool:
    """True when the evaluator's memory ledger of ``plan`` is sure to be over capacity.

    :func:`~solver.evaluate.ledger.training_memory_ledger` computes the very rows the evaluator
    reports, without pricing links or simulating the pipeline; a candidate it rejects would be
    rejected by :func:`memory_ok` on the full report too (same rows, or none if unpriceable).
    A candidate it accepts, or cannot read, is left to the full evaluation.
    """
    from ..evaluate.ledger import training_memory_ledger

    try:
        ledger = training_memory_ledger(model, cluster, workload, plan)
    except (ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError):
        return False
    return not memory_ok({"memory_ledger": ledger})


def _training(
    model: Model, cluster: Cluster, workload: TrainingWorkload, pool: Pool, clock: _Clock
) -> tuple[Plan, dict[str, Any] | None] | None:
    B = workload.global_batch_size
    micro = [mb for mb in sorted(workload.micro_batch_sizes) if B % mb == 0]
    if not micro:
        return None
    mb = micro[0]
    recomputes = [r for r in RECOMPUTE_ORDER if r in workload.recompute]
    zeros = sorted(workload.zero_stages)
    for tp, pp in rubric_shapes(model, pool):
        clock.check()
        clock.shapes += 1
        d = max(divisors_up_to(B // mb, pool.num_gpus // (tp * pp)))
        # Sequence parallelism only removes activation memory; without TP it is a no-op, so
        # tp = 1 takes whichever setting the workload allows (False if both).
        sp = (
            True in workload.sequence_parallel
            if tp > 1
            else False not in workload.sequence_parallel
        )
        shape = [(d, [(pool.name, tp, n) for n in split_layers(model.num_layers, pp)])]
        common: dict[str, Any] = dict(
            count=d,
            micro_batch_size=mb,
            num_micro_batches=B // (d * mb),
            schedule="1f1b",
            sequence_parallel=sp,
        )
        # Most knob settings of a large model do not fit: reject those on the memory ledger
        # alone (it does not depend on the devices, so stages without devices do); the full
        # evaluation (devices, links, simulation) decides the rest, in rubric order.
        bare = _bare_stages(shape[0][1])
        knobs = [
            (rc, z)
            for rc in recomputes
            for z in zeros
            if not _cannot_fit(
                model,
                cluster,
                workload,
                Plan(
                    kind="training",
                    replica_groups=[
                        ReplicaGroup(recompute=rc, zero_stage=z, stages=bare, **common)
                    ],
                ),
            )
        ]
        if not knobs:
            check_stages(cluster, shape)  # a shape that cannot be placed fails as before
            continue
        stages = build_stages(cluster, shape)[0]
        for rc, z in knobs:
            group = ReplicaGroup(recompute=rc, zero_stage=z, stages=stages, **common)
            plan = Plan(kind="training", replica_groups=[group])
            report = clock.evaluate(model, cluster, workload, plan)
            if memory_ok(report):
                return plan, report
    return None


def _bare_stages(stages: list[tuple[str, int, int]]) -> list[Stage]:
    """Stages of ``(pool, tp, layers)`` in order, without devices (for the memory ledger)."""
    out: list[Stage] = []
    first = 0
    for pool, tp, layers in stages:
        out.append(
            Stage(first_layer=first, last_layer=first + layers - 1, pool=pool, tp=tp, devices=[])
        )
        first += layers
    return out


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------
def _inference_plan(
    model: Model, cluster: Cluster, pool: Pool, tp: int, pp: int, batch: int, replicas: int
) -> Plan:
    layers = split_layers(model.num_layers, pp)
    stages = build_stages(cluster, [(replicas, [(pool.name, tp, n) for n in layers])])[0]
    group = ReplicaGroup(count=replicas, batch_size=batch, stages=stages)
    return Plan(kind="inference", replica_groups=[group])


def _inference(
    model: Model, cluster: Cluster, workload: InferenceWorkload, pool: Pool, clock: _Clock
) -> tuple[Plan, dict[str, Any] | None] | None:
    latency = workload.objective == "min_latency"
    batches = sorted(workload.batch_sizes, reverse=not latency)
    for tp, pp in rubric_shapes(model, pool, latency=latency):
        clock.shapes += 1
        replicas = pool.num_gpus // (tp * pp)
        # fitting: the smallest batch that fits memory (fallback); chosen: the first, in
        # preference order, that is feasible in every respect.
        fitting: tuple[int, Plan, dict[str, Any]] | None = None
        chosen: tuple[int, Plan, dict[str, Any]] | None = None
        for batch in batches:
            plan = _inference_plan(model, cluster, pool, tp, pp, batch, replicas)
            report = clock.evaluate(model, cluster, workload, plan)
            if not memory_ok(report):
                continue
            if fitting is None or batch < fitting[0]:
                fitting = (batch, plan, report)
            if report["feasible"]:
                chosen = (batch, plan, report)
                break
        if fitting is None:
            continue  # this shape does not fit: next step of the rubric
        batch, plan, report = chosen or fitting
        target = workload.target_throughput_tokens_per_s
        if target is not None and chosen is not None:
            # Replicas are independent, so throughput scales with their count.
            per_replica = float(report["tokens_per_s"]) / replicas
            need = math.ceil(target / per_replica * (1.0 - 1e-12)) if per_replica > 0 else replicas
            if need < replicas:
                plan = _inference_plan(model, cluster, pool, tp, pp, batch, max(1, need))
                return plan, None  # not scored yet
        return plan, report
    return None
