"""Why not something else: the concrete alternative plans (TP and PP doubled and halved, pure
DP, no and full recomputation, the seed rubric's plan, the best uniform plan), each built,
scored by the evaluator and given a verdict."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from ...baselines import rubric_plan
from ...baselines.uniform import uniform_grid
from ...errors import SpecError
from ...specs import Cluster, Model, Plan, TrainingWorkload
from ..render import DASH
from .bottleneck import step_terms
from .candidates import (
    _base_shape,
    _best_variant,
    _from_plan,
    _scale_replicas,
    _Scored,
    _Shape,
    _tp_domain,
    _variants,
)
from .document import Alternative
from .evaluation import AnyWorkload, _evaluate, _maximise, _meets_target, _memory_use, _objective
from .verdicts import _metrics, _verdict

log = logging.getLogger(__name__)


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
