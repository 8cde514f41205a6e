"""Training back-end: families of global knobs, one CP-SAT model each, best-first with pruning."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from ..engines import EngineRules
from ..planner import Solved, build_stages
from ..result import Status
from ..specs import Cluster, Model, Plan, Pool, ReplicaGroup, Stage, TrainingWorkload
from .tables import (
    Family,
    build_tables,
    choose_unit,
    lower_bound_us,
    min_block_seconds,
    stages_limit,
)
from .training import TrainingChoice, TrainingModel, TrainTables
from .warmstart import memory_lower_bound_fails, warm_start

__all__ = ["families", "solve_training", "choice_to_plan"]

log = logging.getLogger(__name__)


def engine_families(fams: list[Family], rules: EngineRules | None) -> list[Family]:
    """The families a target engine can launch (recompute, SP and ZeRO settings it has).

    ZeRO limits that depend on the plan's shape (DeepSpeed: ZeRO-2/3 only without PP or TP) are
    applied conservatively: the tightest limit that any pipelined or TP plan would face.
    """
    if rules is None:
        return fams
    zero_max = min(rules.max_zero_stage, rules.max_zero_stage_with_pp, rules.max_zero_stage_with_tp)
    return [
        f
        for f in fams
        if f.recompute in rules.recompute
        and (rules.sequence_parallel or not f.sequence_parallel)
        and f.zero_stage <= zero_max
    ]


#: Chunks per stage searched for interleaved 1F1B.  Megatron-LM's papers use 2-4 (Narayanan et
#: al. 2021 Fig. 12 sweeps 2-8 and shows diminishing returns past 4 as p2p traffic grows v-fold).
VIRTUAL_STAGE_OPTIONS = (2, 4)


def families(workload: TrainingWorkload) -> list[Family]:
    """Every combination of the global knobs the workload allows.

    Interleaved 1F1B (v chunks per stage) is searched with the pipeline depth fixed outside
    the model (one sub-problem per depth): its in-flight activation count depends on the depth,
    which would make memory non-linear otherwise.
    """
    sps = sorted(set(workload.sequence_parallel), reverse=True)
    schedules = [("1f1b", 1)] if "1f1b" in workload.schedules else []
    if "interleaved" in workload.schedules:
        schedules += [("interleaved", v) for v in VIRTUAL_STAGE_OPTIONS]
    out = [
        Family(
            micro_batch=mb,
            recompute=rc,
            sequence_parallel=sp,
            zero_stage=z,
            schedule=sched,
            virtual_stages=v,
        )
        for (sched, v), mb, rc, sp, z in itertools.product(
            schedules,
            sorted(workload.micro_batch_sizes),
            workload.recompute,
            sps,
            workload.zero_stages,
        )
        if workload.global_batch_size % mb == 0
    ]
    return out


def choice_to_plan(
    cluster: Cluster, workload: TrainingWorkload, fam: Family, choice: TrainingChoice
) -> Plan:
    """A launchable plan (devices placed) from a CP solution."""
    stages = build_stages(cluster, [(choice.d, [(o.pool, o.tp, n) for o, n in choice.stages])])[0]
    v = fam.virtual_stages
    if v > 1:
        stages = _interleave(stages, [n for _, n in choice.stages], v)
    m = workload.global_batch_size // (choice.d * fam.micro_batch)
    group = ReplicaGroup(
        count=choice.d,
        micro_batch_size=fam.micro_batch,
        num_micro_batches=m,
        schedule=fam.schedule,  # type: ignore[arg-type,unused-ignore]
        virtual_stages=v,
        recompute=fam.recompute,  # type: ignore[arg-type,unused-ignore]
        zero_stage=fam.zero_stage,
        sequence_parallel=fam.sequence_parallel,  # a no-op on TP=1 stages
        stages=stages,
    )
    return Plan(kind="training", replica_groups=[group])


def _interleave(stages: list[Stage], layers: list[int], v: int) -> list[Stage]:
    """Megatron's interleaved layout: model chunk ``c * p + s`` runs on stage ``s``.

    Stage s holds v chunks of ``layers[s] / v`` blocks each; walking the virtual stages in
    order (chunk 0 of every stage, then chunk 1, ...) assigns consecutive blocks.
    """
    p = len(stages)
    per = [n // v for n in layers]
    chunks: list[list[tuple[int, int]]] = [[] for _ in range(p)]
    first = 0
    for _c in range(v):
        for s in range(p):
            chunks[s].append((first, first + per[s] - 1))
            first += per[s]
    return [
        Stage(pool=st.pool, tp=st.tp, devices=st.devices, chunks=chunks[s])
        for s, st in enumerate(stages)
    ]


#: Fraction of the time limit the plain 1F1B sub-problems may use before interleaved ones start.
PLAIN_SHARE = 0.7

#: Pipelines up to this depth have every stage order tried; deeper ones a few candidates.
MAX_PERMUTED_STAGES = 6


def best_stage_order(
    model: Model, cluster: Cluster, workload: TrainingWorkload, fam: Family, choice: TrainingChoice
) -> tuple[Plan, bool]:
    """Re-order the chosen stages by the evaluator's event simulation.

    The CP model prices the pipeline with the closed form ``(m - 1) T_max + sum T``, which does
    not depend on the order of unequal stages; the event-level 1F1B simulation does (a slow
    stage early in the pipeline delays the warm-up differently from one at the end).  Among
    the orders of the same stages (all of them up to :data:`MAX_PERMUTED_STAGES` stages, else
    the CP order, its reverse and the two sorts by per-micro-batch time), keep the one the
    evaluator scores fastest; only memory-feasible orders count.
    """
    from ..evaluate import evaluate

    stages = choice.stages
    p = len(stages)
    if p == 1 or len({(o.pool, o.tp, n) for o, n in stages}) == 1 or fam.virtual_stages > 1:
        return choice_to_plan(cluster, workload, fam, choice), False
    if p <= MAX_PERMUTED_STAGES:
        orders = list(dict.fromkeys(itertools.permutations(range(p))))
    else:
        key = [o.t_layer * n for o, n in stages]
        orders = [
            tuple(range(p)),
            tuple(reversed(range(p))),
            tuple(sorted(range(p), key=lambda i: key[i])),
            tuple(sorted(range(p), key=lambda i: -key[i])),
        ]
    best_plan = choice_to_plan(cluster, workload, fam, choice)
    best_step = evaluate(model, cluster, workload, best_plan).to_dict()["step_time_s"]
    changed = False
    seen = {tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in range(p))}
    for order in orders:
        sig = tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in order)
        if sig in seen:
            continue
        seen.add(sig)
        cand = dataclasses.replace(choice, stages=[stages[i] for i in order])
        try:
            plan = choice_to_plan(cluster, workload, fam, cand)
        except Exception:  # noqa: BLE001 - an order that cannot be placed is simply skipped
            continue
        rep = evaluate(model, cluster, workload, plan).to_dict()
        if rep["feasible"] and rep["step_time_s"] < best_step * (1 - 1e-9):
            best_plan, best_step, changed = plan, rep["step_time_s"], True
    return best_plan, changed


@dataclass
class _Outcome:
    fam: Family
    d: int
    status: str
    bound_us: float
    time_s: float


def solve_training(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    time_limit_s: float,
    workers: int,
    seed: int,
    deterministic: bool = False,
    engine: EngineRules | None = None,
) -> Solved:
    t0 = time.perf_counter()
    # The clock the budgets read: wall time, or in deterministic mode the deterministic time
    # CP-SAT has spent (a work counter), so that a search cut short by the limit stops at the
    # same point every run and gives the same plan.
    work_done = [0.0]

    def elapsed() -> float:
        return work_done[0] if deterministic else time.perf_counter() - t0

    tokens = workload.global_batch_size * workload.sequence_length
    fams = engine_families(families(workload), engine)
    if not fams:
        return Solved(
            Status.INFEASIBLE,
            None,
            None,
            None,
            message=f"engine: {engine.title if engine else ''} cannot express any of the "
            "workload's recompute / sequence_parallel / zero_stages settings",
            stats={},
        )
    unit = choose_unit(min_block_seconds(model, cluster, workload, fams))
    tables: list[tuple[float, Family, TrainTables]] = []
    for fam in fams:
        tab = build_tables(model, cluster, workload, fam, unit_s=unit)
        if tab is None:
            continue
        if engine is not None:
            heads = (model.num_attention_heads, model.num_kv_heads)
            tab = dataclasses.replace(tab, engine=engine, heads=heads)
        # DP degree outside the model: m = B / (d mb) is then a constant of the model.
        v = fam.virtual_stages
        for d in tab.dp_degrees:
            sub = dataclasses.replace(
                tab,
                dp_degrees=[d],
                virtual=v,
                zero_stage=fam.zero_stage,
                overlap=workload.overlap_grad_reduce,
            )
            limit = stages_limit(sub, d)
            # 1F1B: one sub-problem, the model picks the depth.  Interleaved: one per depth
            # p >= 2 with at least one block per chunk.
            # Megatron's interleaved schedule also needs m divisible by p.
            depths = (
                [limit]
                if v == 1
                else [
                    p
                    for p in range(2, min(limit, model.num_layers // v) + 1)
                    if sub.m(d) % p == 0
                ]
            )
            for p in depths:
                one = dataclasses.replace(sub, max_stages=p)
                lb = lower_bound_us(one)
                if lb < math.inf:  # inf: no replica can get a GPU at this d
                    tables.append((lb, fam, one))
    # Plain 1F1B first (one sub-problem per family and d, and usually the strongest incumbent),
    # then the interleaved depths, each group best-first by lower bound.
    tables.sort(key=lambda x: (x[2].virtual > 1, x[0]))
    stats: dict[str, Any] = {"families": len(fams), "families_buildable": len(tables)}
    if not tables:
        return Solved(
            Status.INFEASIBLE, None, None, None, message=explain_training(model, cluster, workload), stats=stats
        )
    best: tuple[float, Family, TrainingChoice] | None = None
    n_plain = sum(1 for _, _, tab in tables if tab.virtual == 1)
    outcomes: list[_Outcome] = []
    # Sub-problems CP-SAT left open (time ran out): (bound, index into tables).
    pending: list[tuple[float, int]] = []

    def attempt(i: int, budget: float) -> None:
        """Solve sub-problem i with a cut-off at the incumbent; record what it proved."""
        nonlocal best
        lb, fam, tab = tables[i]
        t1 = time.perf_counter()
        cm = TrainingModel(tab, upper_bound_us=best[0] if best else None)
        left = time_limit_s - elapsed()
        if deterministic:
            budget = max(0.01, min(budget, left))
        else:  # building a deep model takes a while in Python: it comes out of the budget
            budget = max(0.01, min(budget - (time.perf_counter() - t1), left))
        status, choice, bound = cm.solve(budget, workers, seed, deterministic=deterministic)
        work_done[0] += cm.work
        dt = time.perf_counter() - t1
        name = cp_model.CpSolverStatus(status).name
        outcomes.append(_Outcome(fam, tab.dp_degrees[0], name, bound, dt))
        log.info("family %s d=%d: %s in %.2fs", fam, tab.dp_degrees[0], name, dt)
        if choice is not None and (best is None or choice.objective < best[0]):
            best = (choice.objective, fam, choice)
        if status == cp_model.FEASIBLE:
            pending.append((max(bound, lb), i))
        elif status == cp_model.UNKNOWN:
            pending.append((lb, i))

    # Pass 1, best-first by lower bound: prune by bound and memory, seed the incumbent with
    # warm starts, give each surviving sub-problem a share of the time.
    for i, (lb, fam, tab) in enumerate(tables):
        remaining = time_limit_s - elapsed()
        d = tab.dp_degrees[0]
        if best is not None and lb >= best[0]:
            outcomes.append(_Outcome(fam, d, "PRUNED_BY_BOUND", lb, 0.0))
            continue
        if memory_lower_bound_fails(tab, d):
            outcomes.append(_Outcome(fam, d, "PRUNED_BY_MEMORY", lb, 0.0))
            continue
        # An even single-option split, scored with the model's own terms, is a plan of this
        # family: it becomes the incumbent if better, so CP-SAT only has to beat it (and other
        # families are pruned against it before they are built).
        start = warm_start(tab, d) if tab.virtual == 1 else None
        if start is not None and (best is None or start.objective < best[0]):
            best = (start.objective, fam, start)
            if lb >= best[0]:
                outcomes.append(_Outcome(fam, d, "WARM_START_OPTIMAL", lb, 0.0))
                continue
        if remaining <= 0:
            pending.append((lb, i))
            outcomes.append(_Outcome(fam, d, "NOT_SOLVED", lb, 0.0))
            continue
        # The plain 1F1B group gets up to PLAIN_SHARE of the time when interleaved sub-problems
        # follow; each sub-problem a share of its group's time left, doubled for the early
        # (more promising) ones -- later ones are often pruned.
        if tab.virtual == 1 and n_plain < len(tables):
            group_left = PLAIN_SHARE * time_limit_s - elapsed()
            left_in_group = n_plain - i
        else:
            group_left, left_in_group = remaining, len(tables) - i
        share = max(0.0, group_left) / max(1, left_in_group)
        attempt(i, max(min(remaining, 2 * share), min(remaining, 0.05)))
    # Pass 2: the time left goes to the sub-problems still open, most promising first, each
    # re-solved with the (now better) incumbent as its cut-off.
    while pending and best is not None:
        remaining = time_limit_s - elapsed()
        pending.sort()
        pending = [(b, i) for b, i in pending if b < best[0]]
        if remaining <= 0.05 or not pending:
            break
        _, i = pending.pop(0)
        attempt(i, max(0.05, remaining / (len(pending) + 1)))
    open_bounds = [b for b, _ in pending if best is None or b < best[0]]
    stats["families_detail"] = [
        {"family": o.fam.label, "d": o.d, "status": o.status, "time_s": round(o.time_s, 3)} for o in outcomes
    ]
    if best is None:
        if open_bounds:
            return Solved(
                Status.INFEASIBLE,
                None,
                None,
                None,
                message="time limit: no feasible plan found before the time limit (not proven "
                "infeasible); raise --time-limit",
                stats=stats,
            )
        return Solved(
            Status.INFEASIBLE, None, None, None, message=explain_training(model, cluster, workload), stats=stats
        )
    step_us, fam, choice = best
    plan, reordered = best_stage_order(model, cluster, workload, fam, choice)
    stats["stage_order_changed"] = reordered
    unit = tables[0][2].unit_s
    if workload.objective == "min_cost":
        # objective units: milli-$ per hour x time units -> $ per million tokens.
        def user(v: float) -> float:
            return v / 1000.0 / 3600.0 * unit / tokens * 1e6
    else:
        def user(v: float) -> float:
            return tokens / (v * unit)
    objective = user(step_us)
    if open_bounds:
        lb_us = max(1.0, min(min(open_bounds), step_us))
        final = Status.FEASIBLE
    else:
        lb_us = step_us
        final = Status.OPTIMAL
    bound = user(lb_us)
    cp_plan = choice_to_plan(cluster, workload, fam, choice) if reordered else None
    return Solved(final, plan, objective, bound, stats=stats, cp_plan=cp_plan)


def _scaled(cluster: Cluster, factor: int) -> Cluster:
    pools = [p.model_copy(update={"nodes": p.nodes * factor}) for p in cluster.pools]
    return cluster.model_copy(update={"pools": pools})


def explain_training(model: Model, cluster: Cluster, workload: TrainingWorkload) -> str:
    """Which constraint group binds, with numbers, and the smallest relaxation found."""
    from ..costmodel import total_params
    from .tables import state_bytes_per_param

    params = total_params(model, workload.sequence_length)
    per_param = state_bytes_per_param(workload.memory_policy)
    need = params * per_param / 1e9
    have = sum(p.num_gpus * _capacity(p) for p in cluster.pools)
    parts = [
        f"memory: the model's weights, gradients and optimizer states need {need:,.0f} GB "
        f"({params / 1e9:.1f}B params x {per_param:g} B) before activations; the cluster has "
        f"{have:,.0f} GB in all"
    ]
    if any(workload.global_batch_size % mb for mb in workload.micro_batch_sizes):
        parts.append("batch: some micro_batch_sizes do not divide global_batch_size")
    relax: list[str] = []
    for factor in (2, 4, 8, 16):
        bigger = _scaled(cluster, factor)
        if any(
            build_tables(model, bigger, workload, fam) is not None
            for fam in families(workload)
        ):
            relax.append(f"about {factor}x the GPUs ({cluster.num_gpus * factor} in all)")
            break
    if "full" not in workload.recompute:
        relax.append("allow recompute: full")
    if 3 not in workload.zero_stages:
        relax.append("allow zero_stage 3")
    if min(workload.micro_batch_sizes) > 1:
        relax.append("allow micro_batch_sizes [1]")
    msg = "; ".join(parts)
    if relax:
        msg += ". Smallest relaxations to try: " + ", or ".join(relax)
    return msg


def _capacity(pool: Pool) -> float:
    from ..catalog import gpu_of

    return gpu_of(pool).memory_GB

