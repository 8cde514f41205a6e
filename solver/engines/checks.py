"""Why an engine cannot launch a plan, a replica group or a workload: the violation checks.

:func:`engine_violations` checks a whole plan against an engine's
:class:`~solver.engines.rules.EngineRules` (one human line per violation) and
:func:`engine_allows` checks one candidate replica-group shape, so a planner can keep only the
options an engine can launch.  Rules about *where* ranks land (node contiguity for torchrun,
SGLang multi-node and TRT-LLM MPI launches) need the plan's devices and live in
:mod:`solver.layout`; they are reported by :func:`engine_violations` (which sees the plan) but
not by :func:`engine_allows` (which sees only a shape).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..costmodel import quant
from ..layout import layout_violations
from ..specs import InferenceWorkload, Model, Plan, TrainingWorkload
from .rules import ENGINES, EngineRules, engines_for, zero_limit
from .shapes import GroupShape, group_shape

__all__ = [
    "engine_allows",
    "engine_supports",
    "engine_violations",
    "launch_check",
    "shape_violations",
    "training_numerics_violations",
    "workload_violations",
]


def _split_violation(rules: EngineRules, layers: Sequence[int]) -> str | None:
    """Why ``layers`` (per stage) cannot be expressed, or None."""
    pp = len(layers)
    shown = "/".join(str(n) for n in layers)
    if rules.layer_split == "even" and len(set(layers)) > 1:
        return f"layers per stage {shown} are uneven; {rules.title} splits layers evenly"
    if rules.layer_split == "even_except_ends" and pp > 2 and len(set(layers[1:-1])) > 1:
        return (
            f"layers per stage {shown}: the middle stages differ; {rules.title} lets only the "
            "first and last stage differ (--decoder-first/last-pipeline-num-layers)"
        )
    return None


def _chunk_order_violation(shape: GroupShape) -> str | None:
    """Why the group's chunks are not in Megatron's interleaved order, or None.

    Stage ``s`` chunk ``j`` must hold virtual stage ``j*pp + s``: walking chunk 0 of every
    stage, then chunk 1, ..., the layer ranges follow each other without gaps
    (``PipelineParallelLayerLayout.get_layer_offset``; the same order as the flags' offsets).
    """
    assert shape.chunks is not None
    pp, v = shape.pp, shape.virtual_stages
    if any(len(c) != v for c in shape.chunks):
        return f"interleaved schedule: every stage must hold virtual_stages={v} chunks"
    nxt = 0
    for j in range(v):
        for s in range(pp):
            first, last = shape.chunks[s][j]
            if first != nxt or last < first:
                return (
                    "interleaved schedule: the chunks differ from Megatron's order (stage s, "
                    f"chunk j holds virtual stage j*PP+s); stage {s} chunk {j} is "
                    f"[{first}, {last}], expected it to start at block {nxt}"
                )
            nxt = last + 1
    return None


def _interleave_violation(rules: EngineRules, shape: GroupShape) -> str | None:
    v, pp = shape.virtual_stages, shape.pp
    if v <= 1 and shape.schedule != "interleaved":
        return None
    if not rules.interleaved:
        return f"the interleaved schedule (virtual_stages={v}) has no {rules.title} equivalent"
    total = sum(shape.layers)
    if pp < 2:
        return f"the interleaved schedule needs pipeline parallelism, got PP={pp}"
    if shape.chunks is not None:
        order = _chunk_order_violation(shape)
        if order is not None:
            return order
    if rules.layer_split != "any":
        # Without a layout, every stage's chunks are equal (layers / v each).
        sizes = (
            [[b - a + 1 for a, b in c] for c in shape.chunks]
            if shape.chunks is not None
            else [[n // v] * v if n % v == 0 else [-1] for n in shape.layers]
        )
        if any(len(set(c)) != 1 or c[0] < 1 for c in sizes):
            return (
                "interleaved schedule: a stage's chunks differ in size; without a layout "
                f"{rules.title} gives each stage layers / virtual_stages per chunk"
            )
        if rules.layer_split == "even" and total % (pp * v):
            return (
                f"interleaved schedule: {total} layers do not split into {pp} x {v} equal "
                "chunks (--num-layers-per-virtual-pipeline-stage)"
            )
    if shape.num_micro_batches is not None and shape.num_micro_batches % pp:
        # schedules.forward_backward_pipelining_with_interleaving raises unless M is a
        # multiple of microbatch_group_size_per_vp_stage (default PP) or leaves >= PP over.
        return (
            f"interleaved schedule: num_micro_batches={shape.num_micro_batches} is not a "
            f"multiple of PP={pp}"
        )
    return None


def shape_violations(
    rules: EngineRules, shape: GroupShape, model: Model | None, where: str = ""
) -> list[str]:
    """Why ``rules`` cannot express a replica group of this shape (empty: it can).

    ``where`` prefixes each line (e.g. ``"group 1: "``).  Without a model, the head checks are
    skipped.
    """
    out: list[str] = []
    tps = sorted(set(shape.tp))
    if rules.uniform_tp and len(tps) > 1:
        per = "/".join(str(t) for t in shape.tp)
        out.append(f"TP differs between stages ({per}); {rules.title} uses one TP degree")
    if rules.single_pool and len(set(shape.pools)) > 1:
        out.append(
            f"stages run on different pools ({'/'.join(shape.pools)}); {rules.title} runs one "
            "GPU type per launch"
        )
    split = _split_violation(rules, shape.layers)
    if split is not None:
        out.append(split)
    inter = _interleave_violation(rules, shape)
    if inter is not None:
        out.append(inter)
    if rules.kind == "training":
        limit, why = zero_limit(rules, shape.pp, max(shape.tp))
        if shape.zero_stage > limit:
            out.append(
                f"zero_stage={shape.zero_stage}: {rules.title} supports ZeRO <= {limit}{why}"
            )
        if shape.recompute not in rules.recompute:
            out.append(f"recompute={shape.recompute!r} has no {rules.title} setting")
        if shape.sequence_parallel and max(shape.tp) > 1 and not rules.sequence_parallel:
            out.append(f"sequence_parallel=true has no {rules.title} setting")
    if model is not None:
        for tp in tps:
            if model.num_attention_heads % tp:
                out.append(
                    f"TP={tp} does not divide num_attention_heads={model.num_attention_heads}"
                )
            kv = model.num_kv_heads
            if rules.kv_heads == "divisible" and kv % tp:
                out.append(f"TP={tp} does not divide num_kv_heads={kv}")
            elif rules.kv_heads == "divisible_or_replicated" and kv % tp and tp % kv:
                out.append(f"TP={tp} neither divides nor is a multiple of num_kv_heads={kv}")
    return [where + line for line in out]


def engine_violations(
    plan: Plan,
    model: Model | None,
    engine: str,
    workload: TrainingWorkload | InferenceWorkload | None = None,
) -> list[str]:
    """Everything in ``plan`` that ``engine`` cannot express, one human line each.

    Parameters
    ----------
    plan
        A plan (as ``shardwise plan --out`` writes it).
    model
        The model the plan splits, for the head checks; None skips them.
    engine
        A target name from :data:`~solver.engines.rules.TARGETS`.
    workload
        Optional; adds the precision and memory-policy checks.

    Returns
    -------
    list of str
        Empty when the engine can launch the plan as planned.  Rank-placement rules (torchrun,
        SGLang and TRT-LLM multi-node launches) are checked once the shape rules pass.

    Raises
    ------
    KeyError
        If ``engine`` is not a target name.
    """
    rules = ENGINES[engine]
    if plan.kind != rules.kind:
        return [f"{rules.title} launches {rules.kind} plans; this plan is for {plan.kind}"]
    out: list[str] = []
    many = len(plan.replica_groups) > 1
    for g, group in enumerate(plan.replica_groups):
        out += shape_violations(rules, group_shape(group), model, f"group {g}: " if many else "")
    if workload is not None:
        out += workload_violations(rules, workload)
    if not out:  # the rank layout needs the devices; only for launchable shapes
        out += layout_violations(plan, engine)
    return out


def engine_allows(
    engine: str,
    *,
    tp_per_stage: Sequence[int],
    pools: Sequence[str],
    layers_per_stage: Sequence[int],
    model: Model | None,
    virtual_stages: int = 1,
    schedule: str = "1f1b",
    zero_stage: int = 0,
    recompute: str = "none",
    sequence_parallel: bool = False,
    num_micro_batches: int | None = None,
) -> bool:
    """Whether ``engine`` can launch one replica group of this shape.

    A pure function for planners: call it on a candidate (per-stage TP, pools and layer counts,
    plus the group's knobs) and drop the candidate when it returns False.  Interleaved
    candidates are assumed to use Megatron's chunk layout.  It checks the same rules as
    :func:`engine_violations` except rank placement, which needs concrete devices.
    """
    shape = GroupShape(
        tp=tuple(tp_per_stage),
        pools=tuple(pools),
        layers=tuple(layers_per_stage),
        virtual_stages=virtual_stages,
        schedule=schedule,
        zero_stage=zero_stage,
        recompute=recompute,
        sequence_parallel=sequence_parallel,
        num_micro_batches=num_micro_batches,
    )
    if not (len(shape.tp) == len(shape.pools) == len(shape.layers) >= 1):
        raise ValueError(
            "tp_per_stage, pools and layers_per_stage: must have one entry per stage, got "
            f"{len(shape.tp)}, {len(shape.pools)} and {len(shape.layers)}"
        )
    return not shape_violations(ENGINES[engine], shape, model)


def launch_check(
    plan: Plan,
    model: Model | None,
    workload: TrainingWorkload | InferenceWorkload | None = None,
) -> dict[str, list[str]]:
    """For every engine of the plan's kind, in ``--to`` order, why it cannot launch ``plan``
    (:func:`engine_violations`; an empty list: it can)."""
    return {
        r.name: engine_violations(plan, model, r.name, workload) for r in engines_for(plan.kind)
    }


def workload_violations(
    rules: EngineRules, workload: TrainingWorkload | InferenceWorkload
) -> list[str]:
    """Why ``rules``' engine has no setting for the workload itself, whatever the plan: its
    precision or quantization format, (training) its memory policy, FP8 recipe and TP overlap;
    empty: it has one for each."""
    out: list[str] = []
    if workload.precision not in rules.precisions:
        out.append(f"precision {workload.precision} has no {rules.title} setting")
    elif quant.quantization_of(workload) not in rules.quantizations:
        out.append(
            f"quantization {quant.quantization_of(workload)} has no {rules.title} setting "
            f"(it launches {', '.join(sorted(rules.quantizations - {'none'}))})"
        )
    if isinstance(workload, TrainingWorkload):
        if workload.memory_policy not in rules.memory_policies:
            out.append(
                f"memory_policy {workload.memory_policy} (no fp32 master weights) has no "
                f"{rules.title} setting"
            )
        out += training_numerics_violations(rules, workload)
    return out


def training_numerics_violations(rules: EngineRules, workload: TrainingWorkload) -> list[str]:
    """Why ``rules`` cannot run a training workload's FP8 recipe or TP overlap (empty: it can)."""
    out: list[str] = []
    if workload.precision == "fp8" and workload.precision in rules.precisions:
        if workload.fp8_recipe not in rules.fp8_recipes:
            out.append(
                f"fp8_recipe {workload.fp8_recipe} has no {rules.title} setting (it launches "
                f"{', '.join(sorted(rules.fp8_recipes)) or 'no FP8'})"
            )
    if workload.tp_comm_overlap not in rules.tp_comm_overlaps:
        out.append(
            f"tp_comm_overlap {workload.tp_comm_overlap} has no {rules.title} setting (it "
            f"launches {', '.join(sorted(rules.tp_comm_overlaps))})"
        )
    return out


def engine_supports(rules: EngineRules, workload: TrainingWorkload | InferenceWorkload) -> bool:
    """Whether ``rules``' engine has a setting for the workload's numerics: its precision,
    (serving) its quantization format and (training) its FP8 recipe and TP overlap, as
    :func:`engine_violations` checks them; a planner searches only the engines for which this
    holds."""
    if isinstance(workload, TrainingWorkload) and training_numerics_violations(rules, workload):
        return False
    return (
        workload.precision in rules.precisions
        and quant.quantization_of(workload) in rules.quantizations
    )
