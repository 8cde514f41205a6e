"""Exhaustive enumeration of the planner's search space, scored by the evaluator.

This is the ground truth the tests hold the CP-SAT planner to: on a small instance it scores
*every* plan the CP model could return and keeps the best by the evaluator's objective.  It
shares no cost formula with the CP model -- only the evaluator, the placement convention
(:func:`solver.construction.build_stages`) and the TP options (:func:`tp_options`), which define the
search space.

Training space (one replica group, as in :mod:`solver.cpsat.training`):

* every family: micro-batch ``b`` (dividing the global batch), recompute, sequence parallelism,
  ZeRO stage and schedule, each as the workload allows: 1F1B, and interleaved 1F1B with ``v``
  chunks per stage for every ``v`` of
  :data:`~solver.cpsat.subproblems.VIRTUAL_STAGE_OPTIONS` (``p >= 2`` stages, each holding a
  multiple of ``v`` blocks, laid out as Megatron-LM does: model chunk ``c p + s`` on stage
  ``s``);
* every DP degree ``d`` dividing ``global_batch / b``;
* every pipeline depth ``p`` and every composition of the ``L`` blocks into ``p`` non-empty
  stages (uneven splits included: ``C(L-1, p-1)`` of them);
* every per-stage ``(pool, tp)`` with ``tp`` from :func:`tp_options`, such that each pool holds
  ``d`` copies of its stages' TP groups: ``d * sum(tp of the pool's stages) <= pool GPUs``.

Sequence parallelism is a no-op without TP, so when the workload allows both settings a plan
whose stages all have ``tp = 1`` is enumerated once, with ``sequence_parallel = False``; when it
allows only one, that one (the evaluator checks the flag against the workload's list).

``keep`` restricts the space to the plans a predicate accepts (the planner passes its engine
scope: the launchable plans, or one engine's); plans it refuses are counted as scored but
never become the best.

Inference space: every multiset of replica shapes ``(pool, tp, pp, batch)`` -- ``pp`` blocks
split by :func:`split_layers` -- whose GPUs fit every pool, at least one replica.  Each shape is
first scored alone; a shape the evaluator rejects alone (memory or an SLO, which are properties
of one replica) cannot appear in a feasible deployment, so multisets are built from the
feasible shapes only.  A ``target_throughput_tokens_per_s`` is checked on the whole plan.

Pruning happens only where it cannot lose a feasible plan: GPU counts are checked (and counted,
by dynamic programming) before anything is built, so the size of the space is known -- and
refused with a :class:`ValueError` above ``max_plans`` -- before the first evaluation.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..construction import build_stages, split_layers
from ..cpsat.options import tp_options
from ..cpsat.plan_training import interleaved_stages
from ..cpsat.subproblems import VIRTUAL_STAGE_OPTIONS
from ..specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Recompute,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)
from ._scoring import AnyWorkload, divisors_up_to, evaluate_plan, is_better, score

__all__ = ["exhaustive_best", "training_plan_count", "training_space_work"]

#: Default refusal threshold: the evaluator scores a small plan in ~1-2 ms on one core, so the
#: largest space accepted by default takes a few minutes.
DEFAULT_MAX_PLANS = 200_000


def exhaustive_best(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    max_plans: int = DEFAULT_MAX_PLANS,
    keep: Callable[[Plan], bool] | None = None,
) -> tuple[Plan | None, float | None, int]:
    """The best plan of the whole search space by the evaluator's objective.

    Parameters
    ----------
    model, cluster, workload
        Validated specs; meant for small instances (a few layers, a few GPUs).
    max_plans
        Refuse (``ValueError``) when the space holds more plans than this (default 200,000).
    keep
        Only plans this accepts can be the best (default: every plan); training only.

    Returns
    -------
    (Plan or None, float or None, int)
        The best feasible plan (ties keep the first in enumeration order) and its objective in
        user units (:func:`solver.construction.objective_of`), or ``(None, None, n)`` when no plan is
        feasible; ``n`` is the number of plans the evaluator scored.

    Raises
    ------
    ValueError
        If the space is larger than ``max_plans``.
    """
    if isinstance(workload, TrainingWorkload):
        return _training(model, cluster, workload, max_plans, keep)
    return _inference(model, cluster, workload, max_plans)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    micro_batch: int
    recompute: Recompute
    sequence_parallel: bool
    zero_stage: int
    virtual_stages: int = 1  # 1: plain 1F1B; v > 1: interleaved 1F1B with v chunks per stage


Option = tuple[int, int]  # (pool index, tp)


def _families(workload: TrainingWorkload) -> list[_Family]:
    sps = sorted(set(workload.sequence_parallel), reverse=True)
    vs = [1] if "1f1b" in workload.schedules else []
    if "interleaved" in workload.schedules:
        vs += list(VIRTUAL_STAGE_OPTIONS)
    return [
        _Family(mb, rc, sp, z, v)
        for v, mb, rc, sp, z in itertools.product(
            vs,
            sorted(set(workload.micro_batch_sizes)),
            list(dict.fromkeys(workload.recompute)),
            sps,
            sorted(set(workload.zero_stages)),
        )
        if workload.global_batch_size % mb == 0
    ]


def _options(model: Model, cluster: Cluster) -> list[Option]:
    return [(k, t) for k, pool in enumerate(cluster.pools) for t in tp_options(model, pool)]


def _count_sequences(options: Sequence[Option], budget: Sequence[int], p: int) -> int:
    """Number of length-``p`` option sequences whose TP sum per pool stays within ``budget``."""
    states: Counter[tuple[int, ...]] = Counter({tuple(0 for _ in budget): 1})
    for _ in range(p):
        nxt: Counter[tuple[int, ...]] = Counter()
        for used, ways in states.items():
            for k, t in options:
                if used[k] + t <= budget[k]:
                    nxt[used[:k] + (used[k] + t,) + used[k + 1 :]] += ways
        states = nxt
    return sum(states.values())


def _sequences(
    options: Sequence[Option], budget: list[int], p: int
) -> Iterator[tuple[Option, ...]]:
    """Length-``p`` option sequences within ``budget`` (GPUs per pool per replica)."""
    if p == 0:
        yield ()
        return
    for k, t in options:
        if t <= budget[k]:
            budget[k] -= t
            for rest in _sequences(options, budget, p - 1):
                yield ((k, t), *rest)
            budget[k] += t


def _compositions(total: int, parts: int, v: int = 1) -> Iterator[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` positive multiples of ``v``."""
    if total % v:
        return
    for cuts in itertools.combinations(range(1, total // v), parts - 1):
        bounds = (0, *cuts, total // v)
        yield tuple(v * (bounds[i + 1] - bounds[i]) for i in range(parts))


def _n_compositions(total: int, parts: int, v: int) -> int:
    """``len(list(_compositions(total, parts, v)))``, without enumerating."""
    return 0 if total % v else math.comb(total // v - 1, parts - 1)


def _training_blocks(
    model: Model, cluster: Cluster, workload: TrainingWorkload
) -> Iterator[tuple[_Family, int, int, int]]:
    """``(family, d, p, count)`` for every block of the space, ``count`` plans each."""
    L = model.num_layers
    options = _options(model, cluster)
    tp1 = [o for o in options if o[1] == 1]
    gpus = [pool.num_gpus for pool in cluster.pools]
    sp_both = len(set(workload.sequence_parallel)) == 2
    for fam in _families(workload):
        for d in divisors_up_to(workload.global_batch_size // fam.micro_batch, sum(gpus)):
            budget = [g // d for g in gpus]
            # Interleaving needs at least 2 stages (the evaluator refuses it on one).
            for p in range(2 if fam.virtual_stages > 1 else 1, min(L, sum(budget)) + 1):
                splits = _n_compositions(L, p, fam.virtual_stages)
                if not splits:
                    continue
                seqs = _count_sequences(options, budget, p)
                if fam.sequence_parallel and sp_both:
                    seqs -= _count_sequences(tp1, budget, p)  # enumerated by the sp=False family
                if seqs:
                    yield fam, d, p, seqs * splits


def training_plan_count(model: Model, cluster: Cluster, workload: TrainingWorkload) -> int:
    """Number of distinct plans in the training search space (computed without enumerating)."""
    return sum(n for *_, n in _training_blocks(model, cluster, workload))


def training_space_work(
    model: Model, cluster: Cluster, workload: TrainingWorkload, stop_above: int | None = None
) -> tuple[int, int]:
    """(plans, pipeline operations) of the training space, without enumerating: the
    evaluator's event simulation plays ``2 m p v`` operations per plan (a forward and a
    backward per micro-batch, stage and chunk), which with a per-plan constant predicts the
    cost of scoring the whole space (:func:`solver.objective_proof.proof_estimate_s`).

    ``stop_above``: return as soon as the count passes it (the counts so far), since counting a
    large space (48 blocks on 64 GPUs) itself takes seconds."""
    plans = ops = 0
    for fam, d, p, n in _training_blocks(model, cluster, workload):
        m = workload.global_batch_size // (d * fam.micro_batch)
        plans += n
        ops += n * 2 * m * p * fam.virtual_stages
        if stop_above is not None and plans > stop_above:
            break
    return plans, ops


def _training(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    max_plans: int,
    keep: Callable[[Plan], bool] | None = None,
) -> tuple[Plan | None, float | None, int]:
    blocks = list(_training_blocks(model, cluster, workload))
    total = sum(n for *_, n in blocks)
    if total > max_plans:
        raise ValueError(
            f"exhaustive: the training space of {model.name} on {cluster.name} holds {total:,} "
            f"plans > max_plans={max_plans:,}; use a smaller instance or raise max_plans"
        )
    L = model.num_layers
    B = workload.global_batch_size
    options = _options(model, cluster)
    names = [pool.name for pool in cluster.pools]
    gpus = [pool.num_gpus for pool in cluster.pools]
    sp_both = len(set(workload.sequence_parallel)) == 2
    # Only the depths the space uses: all of 1..L would list C(L-1, p-1) splits for depths no
    # GPU budget reaches (millions for L = 24 on 2 GPUs).
    compositions = {
        (p, f.virtual_stages): list(_compositions(L, p, f.virtual_stages)) for f, _, p, _ in blocks
    }
    best: Plan | None = None
    best_obj: float | None = None
    evaluated = 0
    for fam, d, p, _ in blocks:
        for seq in _sequences(options, [g // d for g in gpus], p):
            has_tp = any(t > 1 for _, t in seq)
            if fam.sequence_parallel and not has_tp and sp_both:
                continue
            # Placement depends on (d, pools, TPs) only; the layer ranges are filled in below.
            placed = build_stages(cluster, [(d, [(names[k], t, 1) for k, t in seq])])[0]
            v = fam.virtual_stages
            for comp in compositions[(p, v)]:
                stages = (
                    interleaved_stages(placed, list(comp), v)
                    if v > 1
                    else _with_layers(placed, comp)
                )
                plan = Plan(
                    kind="training",
                    replica_groups=[
                        ReplicaGroup(
                            count=d,
                            micro_batch_size=fam.micro_batch,
                            num_micro_batches=B // (d * fam.micro_batch),
                            schedule="interleaved" if v > 1 else "1f1b",
                            virtual_stages=v,
                            recompute=fam.recompute,
                            zero_stage=fam.zero_stage,
                            sequence_parallel=fam.sequence_parallel,
                            stages=stages,
                        )
                    ],
                )
                evaluated += 1
                if keep is not None and not keep(plan):
                    continue
                obj = score(evaluate_plan(model, cluster, workload, plan), workload)
                if obj is not None and is_better(obj, best_obj, workload):
                    best, best_obj = plan, obj
    return best, best_obj, evaluated


def _with_layers(stages: list[Stage], layers: Sequence[int]) -> list[Stage]:
    out = []
    first = 0
    for st, n in zip(stages, layers, strict=True):
        out.append(st.model_copy(update={"first_layer": first, "last_layer": first + n - 1}))
        first += n
    return out


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    pool: str
    tp: int
    pp: int
    batch: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


def _shapes(model: Model, cluster: Cluster, workload: InferenceWorkload) -> list[_Shape]:
    return [
        _Shape(pool.name, tp, pp, batch)
        for pool in cluster.pools
        for tp in tp_options(model, pool)
        for pp in range(1, min(model.num_layers, pool.num_gpus // tp) + 1)
        for batch in sorted(set(workload.batch_sizes))
    ]


def _inference_plan(model: Model, cluster: Cluster, groups: list[tuple[_Shape, int]]) -> Plan:
    # The planner's group order: by pool, larger TP first (placement is buddy order anyway).
    groups = sorted(groups, key=lambda g: (g[0].pool, -g[0].tp, g[0].pp, g[0].batch))
    stages = build_stages(
        cluster,
        [(n, [(s.pool, s.tp, k) for k in split_layers(model.num_layers, s.pp)]) for s, n in groups],
    )
    return Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=n, batch_size=s.batch, stages=st)
            for (s, n), st in zip(groups, stages, strict=True)
        ],
    )


def _count_multisets(sizes: Sequence[int], capacity: int) -> int:
    """Multisets of items (with these GPU sizes) using at most ``capacity`` GPUs, empty included."""
    ways = [1] + [0] * capacity  # ways[g]: multisets using exactly g GPUs
    for s in sizes:
        for g in range(s, capacity + 1):
            ways[g] += ways[g - s]
    return sum(ways)


def _multisets(shapes: Sequence[_Shape], capacity: int) -> Iterator[list[tuple[_Shape, int]]]:
    """Every multiset of ``shapes`` within ``capacity`` GPUs, as ``(shape, count)`` lists."""
    if not shapes:
        yield []
        return
    head, rest = shapes[0], shapes[1:]
    for n in range(capacity // head.gpus + 1):
        for tail in _multisets(rest, capacity - n * head.gpus):
            yield ([(head, n)] if n else []) + tail


def _inference(
    model: Model, cluster: Cluster, workload: InferenceWorkload, max_plans: int
) -> tuple[Plan | None, float | None, int]:
    shapes = _shapes(model, cluster, workload)
    if len(shapes) > max_plans:
        raise ValueError(f"exhaustive: {len(shapes):,} replica shapes > max_plans={max_plans:,}")
    # 1. Every shape alone.  Memory and SLOs are per replica: a shape infeasible alone is
    #    infeasible in any deployment.  The throughput target is checked on whole plans only.
    single: dict[_Shape, dict[str, Any]] = {}
    for s in shapes:
        single[s] = evaluate_plan(
            model, cluster, workload, _inference_plan(model, cluster, [(s, 1)])
        )
    feasible = [s for s in shapes if single[s].get("feasible", False)]
    evaluated = len(shapes)
    by_pool = {pool.name: [s for s in feasible if s.pool == pool.name] for pool in cluster.pools}
    total = (
        math.prod(
            _count_multisets([s.gpus for s in by_pool[pool.name]], pool.num_gpus)
            for pool in cluster.pools
        )
        - 1
    )
    if evaluated + total - len(feasible) > max_plans:
        raise ValueError(
            f"exhaustive: the inference space of {model.name} on {cluster.name} holds "
            f"{evaluated + total - len(feasible):,} plans > max_plans={max_plans:,}; use a "
            "smaller instance or raise max_plans"
        )
    best: Plan | None = None
    best_obj: float | None = None
    per_pool = [list(_multisets(by_pool[pool.name], pool.num_gpus)) for pool in cluster.pools]
    for combo in itertools.product(*per_pool):
        groups = [g for part in combo for g in part]
        if not groups:
            continue
        plan = _inference_plan(model, cluster, groups)
        if len(groups) == 1 and groups[0][1] == 1:
            report = single[groups[0][0]]  # scored above
        else:
            report = evaluate_plan(model, cluster, workload, plan)
            evaluated += 1
        obj = score(report, workload)
        if obj is not None and is_better(obj, best_obj, workload):
            best, best_obj = plan, obj
    return best, best_obj, evaluated
