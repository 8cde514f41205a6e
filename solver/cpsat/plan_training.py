"""Training back-end: families of global knobs, one CP-SAT model each, best-first with pruning.

Sub-problems (family x DP degree, x depth when interleaved) are ordered by a cheap bound.
Pass 1 (no CP-SAT) prunes them by memory and by the pipeline LP bound
(:func:`~.bounds.pipeline_lp_bound`) against an incumbent from warm starts
(:func:`~.warmstart.warm_start`).  Pass 2 splits each sub-problem still open into the T_max
slices where a better plan can be, on the options such a plan can use
(:func:`~.bounds.refine`), and gives them to CP-SAT best-first with the incumbent as cut-off.
OPTIMAL only when every sub-problem and slice is closed: solved, infeasible under the cut-off,
or bounded at or above the incumbent by a valid bound.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from ..construction import Solved, build_stages
from ..engines import EngineRules, ShapeLimits, family_limits, non_dominated
from ..errors import SpecError
from ..result import Status
from ..specs import Cluster, Model, Plan, ReplicaGroup, Stage, TrainingWorkload
from .advice import infeasibility_group, infeasibility_reasons
from .bounds import lower_bound_us, pipeline_lp_bound, refine
from .deadline import Deadline
from .tables.build import build_tables, for_dp, restrict_options, stages_limit
from .tables.family import MIN_BLOCK_UNITS, Family, choose_unit, coarser_unit, min_block_seconds
from .training.data import TrainingChoice, TrainTables
from .training.model import MAX_MAGNITUDE, TrainingModel, magnitude_of
from .warmstart import memory_lower_bound_fails, stage_objective, warm_start

__all__ = [
    "choice_to_plan",
    "engine_families",
    "families",
    "family_spaces",
    "interleavable",
    "interleaved_stages",
    "solve_training",
    "subproblems",
]

log = logging.getLogger(__name__)


def family_spaces(
    fam: Family,
    engines: Sequence[EngineRules] | None,
    workload: TrainingWorkload | None = None,
) -> list[ShapeLimits | None]:
    """The shape spaces a family is searched in: ``[None]`` (every plan) without engines,
    else the non-dominated :func:`~solver.engines.family_limits` of the engines that have the
    family's knobs (empty: none has them).

    Each combination is its own rule: DeepSpeed's ZeRO-3 family is searched without PP and TP,
    never dropped because ZeRO-3 cannot run under a pipeline.  A space another engine's covers
    adds no plan and is left out (DeepSpeed's ZeRO-1 space lies inside Megatron's).
    """
    if engines is None:
        return [None]
    limits = [
        lim
        for rules in engines
        if (
            lim := family_limits(
                rules,
                zero_stage=fam.zero_stage,
                recompute=fam.recompute,
                sequence_parallel=fam.sequence_parallel,
                virtual_stages=fam.virtual_stages,
                precision=workload.precision if workload is not None else None,
                memory_policy=workload.memory_policy if workload is not None else None,
            )
        )
        is not None
    ]
    return list(non_dominated(limits))


def _space_key(fam: Family) -> tuple[int, str, bool, bool]:
    """The fields of ``fam`` that :func:`family_spaces` reads (through
    :func:`~solver.engines.family_limits`: ZeRO stage, recompute, sequence parallelism and
    whether it interleaves, not how many chunks): families equal here share their spaces."""
    return (fam.zero_stage, fam.recompute, fam.sequence_parallel, fam.virtual_stages > 1)


def engine_families(
    fams: list[Family],
    engines: Sequence[EngineRules] | None,
    workload: TrainingWorkload | None = None,
) -> list[Family]:
    """The families at least one of ``engines`` can launch (all of them without engines)."""
    launchable: dict[tuple[int, str, bool, bool], bool] = {}
    for f in fams:
        if (k := _space_key(f)) not in launchable:
            launchable[k] = bool(family_spaces(f, engines, workload))
    return [f for f in fams if launchable[_space_key(f)]]


def interleavable(num_layers: int, v: int) -> bool:
    """Whether ``v`` chunks per stage can split ``num_layers`` blocks over a pipeline of at
    least 2 stages (always for plain 1F1B, ``v == 1``): every stage holds a multiple of ``v``
    blocks, so ``v`` must divide the layer count (:func:`~.bounds.lower_bound_us` gives such
    a sub-problem an infinite bound), and 2 stages need at least ``2 v`` blocks.  A family
    that fails it holds no plan: the planner builds nothing for it."""
    return v == 1 or (num_layers % v == 0 and num_layers >= 2 * v)


def space_label(tab: TrainTables) -> str:
    """``megatron+torchrun tp2`` for a sub-problem's engine space ("" without engines)."""
    lim = tab.engine
    if lim is None:
        return ""
    label = "+".join(lim.engines)
    tps = sorted({o.tp for o in tab.options})
    if len(tps) == 1:
        label += f" tp{tps[0]}"
    if lim.max_pp == 1:
        label += " pp1"
    return label


def _limited(tab: TrainTables, limits: ShapeLimits, heads: tuple[int, int]) -> list[TrainTables]:
    """``tab`` under ``limits``: options the head rules and ``max_tp`` refuse removed, the
    stage limit cut to ``max_pp``, and one table per TP degree (``uniform_tp``) and per pool
    (``single_pool``), so that each sub-problem's bounds and warm starts see only what the
    engines can launch.  Empty when no option is left."""
    keep = [i for i, o in enumerate(tab.options) if limits.allows_tp(o.tp, *heads)]
    groups: dict[tuple[int, str], list[int]] = {}
    for i in keep:
        o = tab.options[i]
        key = (o.tp if limits.uniform_tp else 0, o.pool if limits.single_pool else "")
        groups.setdefault(key, []).append(i)
    out = []
    for _, idx in sorted(groups.items()):
        sub = dataclasses.replace(restrict_options(tab, idx), engine=limits, heads=heads)
        if limits.max_pp is not None:
            sub = dataclasses.replace(sub, max_stages=min(sub.max_stages, limits.max_pp))
        out.append(sub)
    return out


#: Chunks per stage searched for interleaved 1F1B.  Megatron-LM's papers use 2-4 (Narayanan et
#: al. 2021 Fig. 12 sweeps 2-8 and shows diminishing returns past 4 as p2p traffic grows v-fold);
#: 3 is in because layer counts like 105 = 35 x 3 (GPT 529.6B, Table 1) only interleave with it;
#: 5, 6 and 8 because NeMo's published H100 layouts use them (GPT-3 175B at VP 6, Llama 3 70B at
#: VP 5; benchmarks/plan_quality_published.py), which on 2,048 H100s is worth +1% over v <= 4.
#: 10 and 12 because NeMo's performance summary (NVIDIA/NeMo@8e3d65d
#: docs/source/performance/performance_summary.md) runs Llama 2 13B and Nemotron 22B at VP 10 and
#: Nemotron-4 340B at VP 12: llama3-70b train-llama-s8192 on 128 H100s 133,734 -> 135,298
#: tokens/s, on 2,048 H100s 1,894,614 -> 1,928,042 (both OPTIMAL, solve_time.py --quick), and
#: the Nemotron-4 340B row of plan_quality_published.py -1.2% -> 0 (the two Llama 2 70B VP 20
#: rows go -0.02% -> -0.6%: PP 8 at v 10 wins by the closed form the CP minimises, the event
#: simulation charges it +1.6%; the rows: /work/shared/data/published-runs-modern.json).
#: Each v is one more family of sub-problems (16,384 GPUs 0.48 -> 0.69 s for 5-8); a v that
#: does not divide the layer count adds none (:func:`interleavable`), so with 10 and 12
#: llama3-70b on 8 H100s (INFEASIBLE, advice re-planned) takes 0.08 s (0.10 s before, v <= 8).
VIRTUAL_STAGE_OPTIONS = (2, 3, 4, 5, 6, 8, 10, 12)


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
        stages = interleaved_stages(stages, [n for _, n in choice.stages], v)
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


def interleaved_stages(stages: list[Stage], layers: list[int], v: int) -> list[Stage]:
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


#: Most of the wall-clock limit the pre-solve (LP bounds and warm starts, no CP-SAT) may use;
#: sub-problems it does not reach go to CP-SAT with their cheap bound.
PRESOLVE_SHARE = 0.6

#: Pipelines up to this depth have every stage order tried; deeper ones a few candidates.
MAX_PERMUTED_STAGES = 6


def best_stage_order(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    fam: Family,
    choice: TrainingChoice,
    deadline: Deadline | None = None,
) -> tuple[Plan, bool]:
    """Re-order the chosen stages by the evaluator's event simulation.

    The CP model prices the pipeline with the closed form ``(m - 1) T_max + sum T``, which does
    not depend on the order of unequal stages; the event-level 1F1B simulation does (a slow
    stage early in the pipeline delays the warm-up differently from one at the end).  Among
    the orders of the same stages (all of them up to :data:`MAX_PERMUTED_STAGES` stages, else
    the CP order, its reverse and the two sorts by per-micro-batch time), keep the one the
    evaluator scores fastest; only memory-feasible orders count.

    ``deadline``: orders are tried only while it leaves room for one more evaluation (and a
    verification after them); the CP order always stands, so stopping early never loses a plan.
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
    t1 = time.perf_counter()
    best_step = evaluate(model, cluster, workload, best_plan).to_dict()["step_time_s"]
    # One evaluation's cost; room for the planner's verification (two of them) after us.
    each = time.perf_counter() - t1
    changed = False
    seen = {tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in range(p))}
    for order in orders:
        sig = tuple((stages[i][0].pool, stages[i][0].tp, stages[i][1]) for i in order)
        if sig in seen:
            continue
        if deadline is not None and not deadline.allows(4 * each + 0.05):
            log.info("stage order: deadline near, %d orders left untried", len(orders))
            break
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
    depth: int = 0  # the sub-problem's stage limit (interleaved: its depth)
    tau: tuple[int, int | None] | None = None  # the T_max slice, if one
    space: str = ""  # the engines' shape space (space_label)


@dataclass
class _Job:
    """Open work: a sub-problem (index into the planner's table list), possibly restricted to
    the options that can still improve and to a T_max slice, with a valid lower bound."""

    lb: float
    i: int
    tab: TrainTables | None = None  # None: the whole sub-problem, not yet refined
    tau: tuple[int, int | None] | None = None  # T_max in [lo, hi] (hi None: unbounded)
    tries: int = 0


#: A sub-problem whose slicing leaves more T_max slices than this goes to CP-SAT whole.
MAX_SLICES = 24

#: Sub-problems with at most this many (stage, option) cells go to CP-SAT whole, unrefined:
#: :func:`~.bounds.refine`'s LPs (a SCIP instance each) cost ~4 ms a sub-problem, CP-SAT
#: closes such a model under the cut-off in ~1 ms (gpt-1.7b on 2 H100s: 72 sub-problems of
#: 1-2 cells, 0.27 s of refining -> 0.05 s of CP-SAT; measured 2026-12-07, 2-core machine).
#: Either way the sub-problem is closed exactly (CP-SAT with the incumbent as cut-off); kept
#: at 2 because among plans of equal objective the whole model may return another than the
#: slices do (llama3-70b on seed-4x8-h100: another layer split of the same step time at 8).
REFINE_MIN_CELLS = 2


def _worth_refining(t: TrainTables) -> bool:
    """Whether :func:`~.bounds.refine` pays for itself on sub-problem ``t``."""
    return t.max_stages * len(t.options) > REFINE_MIN_CELLS


#: Attempts one job gets before it is left open (a guard: in deterministic mode the clock is
#: CP-SAT's work counter, which a run that stops at once would not advance).
MAX_TRIES = 24


def table_key(fam: Family) -> tuple[int, str, bool, int]:
    """The fields of ``fam`` that :func:`~.tables.build.build_tables` reads (the stage, DP
    and hop tables: micro-batch, recompute, sequence parallelism, ZeRO stage).  The schedule
    and its chunks enter per sub-problem (``virtual``, the depth), so every schedule of the
    same knobs shares one table (tests/test_statuses.py checks they are equal)."""
    return (fam.micro_batch, fam.recompute, fam.sequence_parallel, fam.zero_stage)


#: Workload fields that only list the families searched (:func:`families`): the tables of one
#: family do not read them, so instances that differ only there share tables.
_FAMILY_LIST_FIELDS = frozenset(
    {"micro_batch_sizes", "recompute", "zero_stage", "sequence_parallel", "schedules"}
)


class TableCache:
    """Training tables built once per :func:`solver.planner.plan` call and reused by every
    solve of it: the CP search, the pessimistic-hop re-solve, the evaluator-bound pass and
    the advice's re-plans of relaxed instances (a relaxation that adds ZeRO-3 or changes the
    engine scope rebuilds nothing it had).  Keyed by the instance's content (model, cluster,
    workload less :data:`_FAMILY_LIST_FIELDS`), :func:`table_key` and the time unit.

    Scoped to one call on purpose: the tables are pure functions of the specs and of the cost
    model's code, which a process may change between calls (tests patch it)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Any, ...], TrainTables | None] = {}
        self._blocks: dict[tuple[Any, ...], float] = {}
        self._units: dict[tuple[Any, ...], float] = {}

    @staticmethod
    def instance(model: Model, cluster: Cluster, workload: TrainingWorkload) -> tuple[str, ...]:
        """The content key of an instance's tables."""
        return (
            model.model_dump_json(),
            cluster.model_dump_json(),
            workload.model_dump_json(exclude=set(_FAMILY_LIST_FIELDS)),
        )

    def min_block_s(
        self, key: tuple[str, ...], model: Model, cluster: Cluster, workload: TrainingWorkload,
        fams: list[Family],
    ) -> float:  # fmt: skip
        """:func:`~.tables.family.min_block_seconds` over ``fams``, one family per distinct
        (micro-batch, recompute, sequence parallelism): the only fields it reads."""
        best = math.inf
        for fam in {(f.micro_batch, f.recompute, f.sequence_parallel): f for f in fams}.values():
            k = (key, fam.micro_batch, fam.recompute, fam.sequence_parallel)
            if k not in self._blocks:
                self._blocks[k] = min_block_seconds(model, cluster, workload, [fam])
            best = min(best, self._blocks[k])
        return best

    def safe_unit(
        self, key: tuple[str, ...], full: TrainTables, fam: Family, unit_s: float,
        min_block_s: float,
    ) -> float:  # fmt: skip
        """:func:`_safe_unit` of ``fam``'s table, once per table and chunk count."""
        k = (key, table_key(fam), unit_s, fam.virtual_stages)
        if k not in self._units:
            self._units[k] = _safe_unit(full, fam, unit_s, min_block_s)
        return self._units[k]

    def tables(
        self, key: tuple[str, ...], model: Model, cluster: Cluster, workload: TrainingWorkload,
        fam: Family, unit_s: float,
    ) -> TrainTables | None:  # fmt: skip
        """:func:`~.tables.build.build_tables` of ``fam``, built once per :func:`table_key`."""
        k = (key, table_key(fam), unit_s)
        if k not in self._tables:
            self._tables[k] = build_tables(model, cluster, workload, fam, unit_s=unit_s)
        return self._tables[k]


def subproblems(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    fams: list[Family],
    engine: EngineRules | Sequence[EngineRules] | None = None,
    pessimistic: bool = False,
    deadline: Deadline | None = None,
    unbuilt: list[Family] | None = None,
    unit_s: float | None = None,
    cache: TableCache | None = None,
    memory_pruned: list[tuple[Family, TrainTables, int]] | None = None,
) -> list[tuple[float, Family, TrainTables]]:
    """Every sub-problem the planner solves, with its cheap lower bound: one per family, shape
    space (:func:`family_spaces`; under uniform-TP engines one per TP degree) and DP degree
    ``d`` (plain 1F1B: the model picks the depth), and for interleaved 1F1B one per depth too.
    Those without any plan by the cheap bound (inf) are left out.

    ``engine``: the launch targets whose spaces together are searched (None: every plan).

    Pipeline hand-offs inside a pool are priced for each ``d`` as :func:`~.tables.build.for_dp`
    says: optimistically (NVLink wherever placement *can* keep the hop inside one NVLink
    domain), so each sub-problem's optimum and bounds are valid lower bounds on the
    evaluator's closed form; with ``pessimistic`` at their dearest instead (an upper bound:
    the planner's fallback when placement puts an optimistically priced hop across nodes).

    The time unit is the finest :func:`~.tables.family.choose_unit` allows, coarsened where
    the model's largest values would not fit 64-bit integers (:func:`_safe_unit`; SpecError
    when no unit keeps the cheapest block :data:`~.tables.family.MIN_BLOCK_UNITS` wide).

    ``deadline``: families whose tables are not built when it expires are left out and
    appended to ``unbuilt`` (the caller must then not call its result a proof).

    ``cache``: tables already built by this plan() call (:class:`TableCache`; a fresh one by
    default).  ``memory_pruned``: when given, every (family, table, d) that fails
    :func:`~.warmstart.memory_lower_bound_fails` -- no split of any depth or schedule fits
    memory -- is appended there instead of being returned as sub-problems (they hold no plan,
    so a search may close them at once)."""
    engines: Sequence[EngineRules] | None = [engine] if isinstance(engine, EngineRules) else engine
    cache = cache if cache is not None else TableCache()
    key = cache.instance(model, cluster, workload)
    min_block = cache.min_block_s(key, model, cluster, workload, fams)
    unit = choose_unit(min_block) if unit_s is None else unit_s
    heads = (model.num_attention_heads, model.num_kv_heads)
    out: list[tuple[float, Family, TrainTables]] = []
    pruned_before = len(memory_pruned) if memory_pruned is not None else 0
    # One table, engine cut and memory verdict per distinct table_key (and space, and d).
    limited: dict[tuple[int, ShapeLimits | None], list[TrainTables]] = {}
    fails: dict[tuple[int, int], bool] = {}
    per_dp: dict[tuple[int, int], tuple[TrainTables, int]] = {}
    # The spaces depend on the knobs family_limits reads only (_space_key), and families
    # whose chunks cannot split the layers hold no plan: neither is worked out per family.
    spaces_of: dict[tuple[int, str, bool, bool], list[ShapeLimits | None]] = {}

    def spaces_for(fam: Family) -> list[ShapeLimits | None]:
        if not interleavable(model.num_layers, fam.virtual_stages):
            return []
        sk = _space_key(fam)
        if sk not in spaces_of:
            spaces_of[sk] = family_spaces(fam, engines, workload)
        return spaces_of[sk]

    for k, fam in enumerate(fams):
        spaces = spaces_for(fam)
        if not spaces:
            continue
        some = out or (memory_pruned is not None and len(memory_pruned) > pruned_before)
        if deadline is not None and some and deadline.expired():
            # Keep at least one family's sub-problems: a search needs something to work on.
            if unbuilt is not None:
                unbuilt.extend(f for f in fams[k:] if spaces_for(f))
            log.info("deadline: tables of %d families not built", len(fams) - k)
            break
        full = cache.tables(key, model, cluster, workload, fam, unit)
        if full is None:
            continue
        tabs: list[TrainTables] = []
        for lim in spaces:
            if (id(full), lim) not in limited:
                limited[(id(full), lim)] = [full] if lim is None else _limited(full, lim, heads)
            tabs += limited[(id(full), lim)]
        pairs = [(tab, d) for tab in tabs for d in tab.dp_degrees]
        if memory_pruned is not None:
            # The memory test reads the options, pools and layers only: one verdict for every
            # schedule and depth of (tab, d), and no sub-problem to build where it fails.
            for tab, d in pairs:
                if (id(tab), d) not in fails:
                    fails[(id(tab), d)] = memory_lower_bound_fails(tab, d)
            memory_pruned += [(fam, tab, d) for tab, d in pairs if fails[(id(tab), d)]]
            pairs = [(tab, d) for tab, d in pairs if not fails[(id(tab), d)]]
            if not pairs:
                continue  # no model is built for this family: its unit does not matter
        safe = cache.safe_unit(key, full, fam, unit, min_block)
        if safe != unit:
            log.warning(
                "time unit %.3g s -> %.3g s: at the finer unit the CP model's values would not "
                "fit 64-bit integers",
                unit,
                safe,
            )
            if unbuilt is not None:
                del unbuilt[:]
            if memory_pruned is not None:
                del memory_pruned[pruned_before:]
            # Every table in one unit: start over with the coarser one.
            return subproblems(
                model, cluster, workload, fams, engine, pessimistic, deadline, unbuilt,
                unit_s=safe, cache=cache, memory_pruned=memory_pruned,
            )  # fmt: skip
        # DP degree outside the model: m = B / (d mb) is then a constant of the model.
        v = fam.virtual_stages
        for tab, d in pairs:
            if (id(tab), d) not in per_dp:  # shared by every schedule of the table
                one_d = for_dp(tab, d, pessimistic)
                per_dp[(id(tab), d)] = (one_d, stages_limit(one_d, d))
            one_d, limit = per_dp[(id(tab), d)]
            sub = dataclasses.replace(
                one_d, virtual=v, zero_stage=fam.zero_stage, overlap=workload.overlap_grad_reduce
            )
            # 1F1B: one sub-problem, the model picks the depth.  Interleaved: one per depth
            # p >= 2 with at least one block per chunk.
            # Megatron's interleaved schedule also needs m divisible by p.
            depths = (
                [limit]
                if v == 1
                else [
                    p for p in range(2, min(limit, model.num_layers // v) + 1) if sub.m(d) % p == 0
                ]
            )
            for p in depths:
                one = dataclasses.replace(sub, max_stages=p)
                lb = lower_bound_us(one)
                if lb < math.inf:  # inf: no plan (no replica gets a GPU, or L % v != 0)
                    out.append((lb, fam, one))
    return out


def _safe_unit(full: TrainTables, fam: Family, unit: float, min_block_s: float) -> float:
    """``unit``, or the coarser one :func:`~.tables.family.coarser_unit` picks so that every
    sub-problem of ``full`` (its largest values: :func:`magnitude_of` with the family's chunks,
    an upper bound on each DP degree's and depth's) fits :data:`MAX_MAGNITUDE`.

    SpecError (INVALID_INPUT) when even the coarsest faithful unit does not fit.
    """
    mag = magnitude_of(dataclasses.replace(full, virtual=fam.virtual_stages))
    safe = coarser_unit(unit, mag, MAX_MAGNITUDE, min_block_s)
    if safe is None:
        raise SpecError(
            f"workload: the step time spans too many orders of magnitude for the integer CP "
            f"model (largest value {mag:.3g} units of {unit:g} s > {MAX_MAGNITUDE:.3g}, and a "
            f"unit coarse enough would leave the cheapest block ({min_block_s:.3g} s) fewer than "
            f"{MIN_BLOCK_UNITS} units); lower global_batch_size or the cluster size"
        )
    return safe


def _memory_room(t: TrainTables) -> float:
    """Blocks one replica's GPUs can hold by memory, over the layer count, with one
    micro-batch of activations in flight (:func:`~.warmstart.memory_lower_bound_fails`'s
    measure; below 1 nothing fits): an order for finding a first plan, never a proof."""
    d = t.dp_degrees[0]
    room = 0.0
    for pool, gpus in t.pool_gpus.items():
        opts = [o for o in t.options if o.pool == pool and o.allowed.get(d, False)]
        if opts:
            per_block = min(o.tp * (o.static["layer"][d] + o.act_layer) for o in opts)
            room += (gpus // d) * max(0, max(o.free_kb(d) for o in opts)) / max(per_block, 1)
    return room / max(1, t.num_layers)


def _rescored(t: TrainTables, choice: TrainingChoice) -> TrainingChoice:
    """``choice`` with the model's objective of its own stages (:func:`stage_objective`)."""
    step = stage_objective(t, choice.d, choice.stages)
    if step is None:  # pragma: no cover - a CP solution is always a plan of its model
        return choice
    objective = (
        step * choice.d * sum(o.price for o, _ in choice.stages)
        if t.objective == "min_cost"
        else step
    )
    if objective > choice.objective:  # pragma: no cover - T_max >= the slowest stage, always
        return choice
    return dataclasses.replace(choice, step_us=step, objective=objective)


def _add_bound(cm: TrainingModel, lb: float) -> None:
    """Give CP-SAT a valid lower bound on its objective (v x step, or cost) as a constraint.

    ``lb`` is valid for every solution of the model (see :func:`pipeline_lp_bound`; for a
    slice, every solution whose T_max lies in it: :func:`refine`), so the cut removes none; it
    hands CP-SAT's search the bound it would otherwise have to prove.
    """
    if not math.isfinite(lb) or lb <= 0:
        return
    v = cm.t.virtual
    target = cm.cost if cm.t.objective == "min_cost" else cm.step
    cm.m.add(target >= math.ceil(v * lb - 1e-6 * v * lb - 1))


def solve_training(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    time_limit_s: float,
    workers: int,
    seed: int,
    deterministic: bool = False,
    engine: EngineRules | Sequence[EngineRules] | None = None,
    pessimistic_hops: bool = False,
    deadline: Deadline | None = None,
    cache: TableCache | None = None,
    first_plan: bool = False,
) -> Solved:
    """Plan training.  Hand-offs inside a pool are priced optimistically (see
    :func:`subproblems`), so OPTIMAL and the bound are valid for the evaluator's pricing; with
    ``pessimistic_hops`` at their dearest (the planner's fallback: the result's plan is then
    good, its bound is not a valid bound and its status means nothing beyond the plan).

    ``engine``: one launch target, or several whose spaces are searched together (the union:
    every sub-problem of every engine's space competes for one incumbent, so OPTIMAL means the
    best plan any of them launches); None searches every plan.

    ``deadline``: the whole plan() call's wall-clock budget (:class:`~.deadline.Deadline`):
    the search stops at ``time_limit_s`` or its limit, whichever is first, and the optional
    work after it (stage orders) fits its grace.

    Statuses: OPTIMAL only when every sub-problem is closed; INFEASIBLE only with a proof
    (every sub-problem closed without a plan: by memory, by an infinite bound, or by CP-SAT);
    UNKNOWN when the limit came before any plan or that proof; FEASIBLE a plan with open
    sub-problems (their least bound is the result's bound).

    ``cache``: tables built earlier in the same plan() call (:class:`TableCache`).
    ``first_plan``: stop at the first plan found (a warm start, else CP-SAT's first
    solution), FEASIBLE, without the search for better plans and the stage orders;
    INFEASIBLE keeps its full proof.  The advice's re-plans use it: a relaxation
    needs one verified plan, not the best (:mod:`.advice`)."""
    t0 = time.perf_counter()
    if deadline is None:
        deadline = Deadline.unbounded() if deterministic else Deadline(time_limit_s, t0)
    if not deterministic:
        time_limit_s = max(0.0, min(time_limit_s, deadline.left()))
    # The clock the budgets read: wall time, or in deterministic mode the deterministic time
    # CP-SAT has spent (a work counter), so that a search cut short by the limit stops at the
    # same point every run and gives the same plan.
    work_done = [0.0]

    def elapsed() -> float:
        return work_done[0] if deterministic else time.perf_counter() - t0

    tokens = workload.global_batch_size * workload.sequence_length
    engines: Sequence[EngineRules] | None = [engine] if isinstance(engine, EngineRules) else engine
    every = families(workload)
    if not every:  # no micro-batch divides the global batch: no plan whatever the engine
        return Solved(
            Status.INFEASIBLE,
            None,
            None,
            None,
            message=explain_training(model, cluster, workload, brief=first_plan),
            stats={},
        )
    fams = engine_families(every, engines, workload)
    if not fams:
        names = ", ".join(r.title for r in engines or [])
        return Solved(
            Status.INFEASIBLE,
            None,
            None,
            None,
            message=f"engine: {names} cannot express any of the workload's recompute / "
            "sequence_parallel / zero_stages / schedules settings",
            stats={},
        )
    unbuilt: list[Family] = []
    no_memory: list[tuple[Family, TrainTables, int]] = []
    tables = subproblems(
        model,
        cluster,
        workload,
        fams,
        engines,
        pessimistic_hops,
        deadline=None if deterministic else deadline,
        unbuilt=unbuilt,
        cache=cache,
        memory_pruned=no_memory,
    )
    # Best-first by the cheap bound: the most promising sub-problems give the incumbent early,
    # and everything after the first cheap bound above it is pruned without more work.
    tables.sort(key=lambda x: x[0])
    if first_plan:
        # One plan is asked for, not the fastest: the sub-problems with the most memory to
        # spare first (the fastest are often the ones memory refuses, each costing an LP),
        # plain 1F1B before interleaved (fewer activations in flight, and v times fewer
        # operations for the evaluator to simulate when it verifies the plan).
        tables.sort(key=lambda x: (-_memory_room(x[2]), x[2].virtual))
    stats: dict[str, Any] = {"families": len(fams), "families_buildable": len(tables)}
    if no_memory:
        stats["pruned_by_memory"] = len(no_memory)  # (family, space, d): no sub-problem built
    notes: list[str] = []
    if unbuilt:
        stats["families_unbuilt"] = len(unbuilt)
        notes.append(
            f"time limit: the tables of {len(unbuilt)} of {len(fams)} families were not built "
            "before the limit (their plans were not searched)"
        )
    if tables and tables[0][2].unit_s > 1e-6:
        stats["time_unit_s"] = tables[0][2].unit_s
        notes.append(
            f"time unit coarsened to {tables[0][2].unit_s:g} s so the CP model's values fit "
            "64-bit integers"
        )
    if not tables:
        if unbuilt:
            return Solved(
                Status.UNKNOWN,
                None,
                None,
                None,
                message="; ".join(notes) + "; raise --time-limit",
                stats=stats,
            )
        return Solved(
            Status.INFEASIBLE,
            None,
            None,
            None,
            message=explain_training(model, cluster, workload, brief=first_plan),
            stats=stats,
        )
    # A first-plan search (the advice's re-plans: only their status, plan and message are
    # read) counts the memory-pruned pairs (stats["pruned_by_memory"]) without a row each.
    pruned_detail = [] if first_plan else _memory_pruned_detail(no_memory)
    outcomes: list[_Outcome] = []
    best: tuple[float, Family, TrainingChoice] | None = None
    best_i = -1  # the sub-problem (index into tables) the incumbent comes from
    # What is still open: whole sub-problems after pass 1, then their T_max slices.
    jobs: list[_Job] = []
    stalled: list[_Job] = []  # open, but out of attempts
    invalid: list[_Job] = []  # CP-SAT refused the model: a bug, open

    def record(job: _Job, status: str, bound: float, dt: float) -> None:
        _, fam, tab = tables[job.i]
        outcomes.append(
            _Outcome(
                fam, tab.dp_degrees[0], status, bound, dt, tab.max_stages, job.tau, space_label(tab)
            )
        )

    def attempt(job: _Job, budget: float) -> None:
        """CP-SAT on one job with a cut-off at the incumbent; record what it proved."""
        nonlocal best, best_i
        _, fam, full = tables[job.i]
        tab = job.tab or full
        t1 = time.perf_counter()
        cm = TrainingModel(tab, upper_bound_us=best[0] if best else None)
        _add_bound(cm, job.lb)
        if job.tau is not None:  # the slice: T_max in [lo, hi]
            lo, hi = job.tau
            cm.m.add(cm.Tmax >= lo)
            if hi is not None:
                cm.m.add(cm.Tmax <= hi)
        left = time_limit_s - elapsed()
        if deterministic:
            budget = max(0.01, min(budget, left))
        else:  # building a deep model takes a while in Python: it comes out of the budget
            budget = max(0.01, min(budget - (time.perf_counter() - t1), left))
        status, choice, bound = cm.solve(budget, workers, seed, deterministic=deterministic)
        work_done[0] += cm.work
        if choice is not None and job.tau is not None:
            # A slice's T_max >= lo may sit above the plan's slowest stage: score the plan
            # itself (the model's objective with T_max = its slowest stage, never more).
            choice = _rescored(tab, choice)
        dt = time.perf_counter() - t1
        name = cp_model.CpSolverStatus(status).name
        record(job, name, bound, dt)
        log.info("family %s d=%d slice %s: %s in %.2fs", fam, tab.dp_degrees[0], job.tau, name, dt)
        if choice is not None and (best is None or choice.objective < best[0]):
            best = (choice.objective, fam, choice)
            best_i = job.i
        if status in (cp_model.FEASIBLE, cp_model.UNKNOWN):
            lb = max(bound, job.lb) if status == cp_model.FEASIBLE else job.lb
            again = dataclasses.replace(job, lb=lb, tries=job.tries + 1)
            (jobs if again.tries < MAX_TRIES else stalled).append(again)
        elif status == cp_model.MODEL_INVALID:
            # A bug of the model (e.g. an overflowing domain), never a proof: the job stays
            # open with its valid cheap bound, so the result can be neither OPTIMAL nor
            # INFEASIBLE.
            log.error(
                "family %s d=%d: CP-SAT says the model is invalid: %s",
                fam,
                tab.dp_degrees[0],
                cm.m.validate(),
            )
            invalid.append(job)

    def split(job: _Job) -> None:
        """Split an open sub-problem into T_max slices worth solving, on the options that can
        still beat the incumbent (see :func:`~.bounds.refine`)."""
        assert best is not None
        t1 = time.perf_counter()
        ref = refine(tables[job.i][2], best[0])
        dt = time.perf_counter() - t1
        if not ref.slices:
            record(job, "PRUNED_BY_BOUND", best[0], dt)
            return
        if len(ref.slices) > MAX_SLICES:
            jobs.append(
                _Job(lb=max(job.lb, ref.slices[0][0]), i=job.i, tab=ref.tables, tries=job.tries)
            )
            return
        for lb, lo, hi in ref.slices:
            jobs.append(
                _Job(lb=max(job.lb, lb), i=job.i, tab=ref.tables, tau=(lo, hi), tries=job.tries)
            )

    # Pass 1, best-first by the cheap bound, no CP-SAT: prune by bound and memory, tighten
    # the bound of what survives with the pipeline LP, and seed the incumbent with warm
    # starts (even splits, pool-block local search) scored by the model's own terms, so
    # CP-SAT only has to beat them and most sub-problems are pruned before any model is built.
    presolve_until = PRESOLVE_SHARE * time_limit_s
    for i, (lb, fam, tab) in enumerate(tables):
        d = tab.dp_degrees[0]
        if best is not None and lb >= best[0]:
            outcomes.append(
                _Outcome(fam, d, "PRUNED_BY_BOUND", lb, 0.0, tab.max_stages, space=space_label(tab))
            )
            continue
        if memory_lower_bound_fails(tab, d):
            outcomes.append(
                _Outcome(
                    fam, d, "PRUNED_BY_MEMORY", lb, 0.0, tab.max_stages, space=space_label(tab)
                )
            )
            continue
        if not deterministic and (time.perf_counter() - t0 > presolve_until or deadline.expired()):
            jobs.append(_Job(lb=lb, i=i))  # no time for the LP and the warm start: CP-SAT's turn
            continue
        if first_plan:
            if best is None and (first := warm_start(tab, d)) is not None:
                best, best_i = (first.objective, fam, first), i
            if best is not None:
                jobs.append(_Job(lb=lb, i=i))  # one plan is all that is asked: left open
                continue
        t1 = time.perf_counter()
        # Also with first_plan: an infinite LP bound is the cheap proof that the sub-problem
        # holds no plan (the advice's "still infeasible" verdicts rest on it).
        lb = max(lb, pipeline_lp_bound(tab, target=best[0] if best else math.inf))
        closed = (
            "PRUNED_BY_BOUND"
            if best is not None and lb >= best[0]
            else "INFEASIBLE_BY_BOUND"
            if math.isinf(lb)
            else None
        )
        if closed is not None:
            outcomes.append(
                _Outcome(
                    fam,
                    d,
                    closed,
                    lb,
                    time.perf_counter() - t1,
                    tab.max_stages,
                    space=space_label(tab),
                )
            )
            continue
        start = None if first_plan else warm_start(tab, d)  # first_plan: tried above
        if start is not None and (best is None or start.objective < best[0]):
            best = (start.objective, fam, start)
            best_i = i
        if best is not None and lb >= best[0]:
            closed = "WARM_START_OPTIMAL" if best[2] is start else "PRUNED_BY_BOUND"
            outcomes.append(
                _Outcome(
                    fam,
                    d,
                    closed,
                    lb,
                    time.perf_counter() - t1,
                    tab.max_stages,
                    space=space_label(tab),
                )
            )
            continue
        jobs.append(_Job(lb=lb, i=i))
    stats["presolve_s"] = round(time.perf_counter() - t0, 3)
    # Pass 2, best-first by bound (fewest attempts first, so that one hard job cannot starve
    # the rest): a sub-problem still open is split into T_max slices on the options that can
    # still improve; each slice goes to CP-SAT with the incumbent as its cut-off and a share
    # of the time left (doubled on its first attempt).
    while jobs:
        if first_plan and best is not None:
            break  # the rest stays open: FEASIBLE with their least bound
        if best is not None:
            for job in [j for j in jobs if j.lb >= best[0]]:
                if job.tries == 0:
                    record(job, "PRUNED_BY_BOUND", job.lb, 0.0)
            jobs = [j for j in jobs if j.lb < best[0]]
        remaining = time_limit_s - elapsed()
        if not jobs or remaining <= 0.05:
            break
        jobs.sort(key=lambda j: (j.tries, j.lb))
        job = jobs.pop(0)
        if job.tab is None and best is not None and _worth_refining(tables[job.i][2]):
            split(job)
            continue
        share = remaining / (len(jobs) + 1)
        attempt(
            job, max(min(remaining, (2 if job.tries == 0 else 1) * share), min(remaining, 0.05))
        )
    for job in jobs:
        if job.tries == 0 and (best is None or job.lb < best[0]):
            record(job, "NOT_SOLVED", job.lb, 0.0)
    open_bounds = [j.lb for j in jobs + stalled + invalid if best is None or j.lb < best[0]]
    if invalid:
        notes.append(
            f"{len(invalid)} CP sub-problem(s) were refused by CP-SAT as invalid models (a bug, "
            "see the log); they are left open"
        )
    if unbuilt:
        # Families never built have no bound: nothing is proven about them.
        open_bounds.append(0.0)
    stats["families_detail"] = pruned_detail + [
        {
            "family": o.fam.label,
            "d": o.d,
            "depth": o.depth,
            "status": o.status,
            "bound": round(o.bound_us, 1) if math.isfinite(o.bound_us) else None,
            "tmax_slice": list(o.tau) if o.tau is not None else None,
            "time_s": round(o.time_s, 3),
            "space": o.space or None,
        }
        for o in outcomes
    ]
    if best is None:
        if invalid and not jobs and not stalled and not unbuilt:
            return Solved(
                Status.MODEL_ERROR, None, None, None, message="; ".join(notes), stats=stats
            )
        if open_bounds:
            notes.insert(
                0,
                f"time limit: no plan found and no proof that none exists before the limit "
                f"({len(jobs) + len(stalled) + len(invalid)} sub-problems left open); raise "
                "--time-limit",
            )
            return Solved(Status.UNKNOWN, None, None, None, message="; ".join(notes), stats=stats)
        # Every sub-problem closed without a plan: a proof (memory, infinite bound, CP-SAT).
        return Solved(
            Status.INFEASIBLE,
            None,
            None,
            None,
            message=explain_training(model, cluster, workload, brief=first_plan),
            stats=stats,
        )
    step_us, fam, choice = best
    if first_plan:
        plan, reordered = choice_to_plan(cluster, workload, fam, choice), False
    else:
        plan, reordered = best_stage_order(
            model, cluster, workload, fam, choice, None if deterministic else deadline
        )
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
    if unbuilt:
        lb_us = 0.0  # unsearched families: no valid bound
        final = Status.FEASIBLE
    elif open_bounds:
        lb_us = max(1.0, min(min(open_bounds), step_us))
        final = Status.FEASIBLE
    else:
        lb_us = step_us
        final = Status.OPTIMAL
    bound = user(lb_us) if lb_us > 0 else None
    cp_plan = choice_to_plan(cluster, workload, fam, choice) if reordered else None
    # The same stages with every hand-off at its cheapest and at its dearest: the evaluator's
    # closed form of the plan lies between the two (planner._verify reads them).
    sub = tables[best_i][2]
    span = tuple(
        user(v) if (v := _objective_with(sub, choice, k)) is not None else objective
        for k in (False, True)
    )
    stats["pipeline_hops"] = "pessimistic" if pessimistic_hops else "optimistic"
    return Solved(
        final,
        plan,
        objective,
        bound,
        message="; ".join(notes),
        stats=stats,
        cp_plan=cp_plan,
        objective_range=(span[0], span[1]),
    )


def _memory_pruned_detail(
    pruned: list[tuple[Family, TrainTables, int]],
) -> list[dict[str, Any]]:
    """The ``families_detail`` rows of the (family, table, d) pairs
    :func:`subproblems` set aside by memory (``PRUNED_BY_MEMORY``, no bound, no time): made
    directly, one label per family and table, as there are many of them (one per schedule,
    space and DP degree) and nothing else is done with them."""
    fam_labels: dict[Family, str] = {}
    spaces: dict[int, str | None] = {}
    rows = []
    for fam, tab, d in pruned:
        if fam not in fam_labels:
            fam_labels[fam] = fam.label
        if id(tab) not in spaces:
            spaces[id(tab)] = space_label(tab) or None
        rows.append(
            {
                "family": fam_labels[fam],
                "d": d,
                "depth": tab.max_stages,
                "status": "PRUNED_BY_MEMORY",
                "bound": None,
                "tmax_slice": None,
                "time_s": 0.0,
                "space": spaces[id(tab)],
            }
        )
    return rows


def _objective_with(t: TrainTables, choice: TrainingChoice, pessimistic: bool) -> float | None:
    """The model's objective of ``choice`` (time units) with its hand-offs priced
    optimistically or pessimistically (:func:`~.tables.build.for_dp`)."""
    tab = for_dp(t, choice.d, pessimistic)
    step = stage_objective(tab, choice.d, choice.stages)
    if step is None:  # pragma: no cover - the choice is a solution of this sub-problem
        return None
    if t.objective == "min_cost":
        return step * choice.d * sum(o.price for o, _ in choice.stages)
    return step


def explain_training(
    model: Model, cluster: Cluster, workload: TrainingWorkload, brief: bool = False
) -> str:
    """Which constraint binds, with numbers (:func:`~.advice.infeasibility_reasons`: the batch
    no micro-batch divides, or memory: the model states against the cluster and the lightest
    plan's activations against the GB its stages have free).

    Relaxations are not suggested here: :func:`solver.planner.plan` re-plans them
    (:mod:`.advice`) and calls sufficient only those that plan.

    ``brief``: the constraint group only (:func:`~.advice.infeasibility_group`), for a
    relaxation's re-plan, whose verdict shows nothing more.
    """
    if brief:
        group = infeasibility_group(model, cluster, workload)
        if not group:
            return "no plan satisfies the rules (see the planner's log)"
        return f"{group}: no plan of this instance fits (plan it alone for the numbers)"
    return infeasibility_reasons(model, cluster, workload)
