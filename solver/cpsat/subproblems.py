"""The training search's sub-problems: what :func:`~.plan_training.solve_training` solves.

A *family* (:func:`families`) fixes the global knobs that one CP model cannot choose linearly:
micro-batch size, recompute, sequence parallelism, ZeRO stage and the schedule (plain 1F1B, or
interleaved 1F1B with v chunks per stage, :data:`VIRTUAL_STAGE_OPTIONS`).  A *sub-problem*
(:func:`subproblems`) is one family x one engine shape space (:func:`family_spaces`: the
non-dominated limits of the engines that launch the family; under uniform-TP engines one per
TP degree) x one DP degree ``d`` (so the micro-batch count is a constant of the model) x, when
interleaved, one pipeline depth (its in-flight activations depend on the depth; plain 1F1B lets
the model pick it).  Each comes with its cheap lower bound (:func:`~.bounds.lower_bound_us`);
those without any plan by that bound (inf) are left out.

The tables (:func:`~.tables.build.build_tables`: the stage, DP and hop coefficients) are the
costly part, and they read only the knobs of :func:`table_key`: every schedule of the same knobs
shares one table.  :class:`TableCache` keeps them (with the cheapest block and each family's
safe time unit) for one :func:`solver.planner.plan` call, so that its CP search, the
pessimistic-hop re-solve, the evaluator-bound pass and the advice's re-plans build each table
once.  Within one :func:`subproblems` call the engine cut (:func:`_limited`), the per-DP table
(:func:`~.tables.build.for_dp`) and the memory verdict are worked out once per table (and space,
and ``d``) and shared by every schedule and depth.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

from ..engines import EngineRules, ShapeLimits, family_limits, non_dominated
from ..errors import SpecError
from ..specs import Cluster, Model, TrainingWorkload
from .bounds import lower_bound_us
from .deadline import Deadline
from .tables.build import build_tables, for_dp, restrict_options, stages_limit
from .tables.family import MIN_BLOCK_UNITS, Family, choose_unit, coarser_unit, min_block_seconds
from .training.data import TrainTables
from .training.model import MAX_MAGNITUDE, magnitude_of
from .warmstart import memory_lower_bound_fails

__all__ = [
    "VIRTUAL_STAGE_OPTIONS",
    "Subproblem",
    "TableCache",
    "engine_families",
    "families",
    "family_spaces",
    "interleavable",
    "space_label",
    "subproblems",
    "table_key",
]

log = logging.getLogger(__name__)

#: One sub-problem of the search: its cheap lower bound (time units, inf: no plan), its family
#: and its tables (one DP degree, one shape space; interleaved: one depth).
Subproblem = tuple[float, Family, TrainTables]

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
) -> list[Subproblem]:
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
    out: list[Subproblem] = []
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
