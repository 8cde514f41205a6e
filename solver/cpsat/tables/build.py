"""One family's training tables, assembled from the stage, DP and hop tables
(:func:`build_tables`), and cut to sub-problems: one DP degree (:func:`for_dp`), some options
(:func:`restrict_options`), and the depth a DP degree allows (:func:`stages_limit`)."""

from __future__ import annotations

import dataclasses

from ...specs import Cluster, Model, TrainingWorkload
from ..options import MAX_PIPELINE_STAGES, tp_options
from ..training.data import US, TrainOption, TrainTables
from .dp import dp_degrees
from .family import Family
from .hops import hop_prices
from .stage import _option

__all__ = ["build_tables", "for_dp", "restrict_options", "stages_limit"]


def build_tables(
    model: Model, cluster: Cluster, workload: TrainingWorkload, fam: Family, unit_s: float = US
) -> TrainTables | None:
    """The CP model's coefficient tables for one family, or None if the family is empty.

    ``unit_s`` is the time resolution: the planner picks it so that the cheapest block costs
    >= 10^4 units (relative rounding error <= 5e-5 per coefficient), at most 1 microsecond.
    """
    total = cluster.num_gpus
    dps = dp_degrees(workload, fam.micro_batch, total)
    if not dps:
        return None
    options: list[TrainOption] = []
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            opt = _option(model, cluster, workload, fam, pool, tp, dps, unit_s)
            if opt is not None:
                options.append(opt)
    if not options:
        return None
    min_tp = min(o.tp for o in options)
    max_stages = min(model.num_layers, total // min_tp, MAX_PIPELINE_STAGES)
    hops = hop_prices(cluster, fam, options, model.hidden_size * workload.sequence_length, unit_s)
    return TrainTables(
        num_layers=model.num_layers,
        micro_batch=fam.micro_batch,
        global_batch=workload.global_batch_size,
        options=options,
        dp_degrees=dps,
        pool_gpus={p.name: p.num_gpus for p in cluster.pools},
        p2p_pair=dict(hops.far),
        max_stages=max_stages,
        hops=hops,
        unit_s=unit_s,
        objective=workload.objective,
    )


def for_dp(t: TrainTables, d: int, pessimistic: bool = False) -> TrainTables:
    """The tables of the sub-problem with DP degree ``d``: pipeline hops priced optimistically
    for that ``d`` (the model's objective is then <= the evaluator's closed form of every plan
    it produces, so its optimum and every bound computed from these tables are valid lower
    bounds), or with ``pessimistic`` at their dearest (>= the evaluator's)."""
    sub = dataclasses.replace(t, dp_degrees=[d])
    if t.hops is None:
        return sub
    pairs = t.hops.pessimistic() if pessimistic else t.hops.optimistic(d)
    return dataclasses.replace(sub, p2p_pair=pairs)


def restrict_options(t: TrainTables, keep: list[int]) -> TrainTables:
    """The tables with only the options ``keep`` (indices into ``t.options``), the pair
    prices re-indexed."""
    if keep == list(range(len(t.options))):
        return t
    pairs = {(a, b): t.p2p_pair[(i, j)] for a, i in enumerate(keep) for b, j in enumerate(keep)}
    hops = t.hops.restricted(keep) if t.hops is not None else None
    return dataclasses.replace(t, options=[t.options[i] for i in keep], p2p_pair=pairs, hops=hops)


def stages_limit(t: TrainTables, d: int) -> int:
    """Most pipeline stages possible with DP degree d: every stage needs d x tp GPUs."""
    min_tp = min(o.tp for o in t.options)
    gpus = sum(g // d for g in t.pool_gpus.values())
    return max(1, min(t.max_stages, gpus // min_tp))
