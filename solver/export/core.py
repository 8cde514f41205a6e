"""``export_plan``: check a plan against its inputs and an engine, then write the launch files."""

from __future__ import annotations

import os
from typing import Any

from ..engines import ENGINES, TARGETS, engine_violations
from ..errors import SpecError
from ..io import load_cluster, load_model, load_plan, load_workload
from ..specs import (
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    ReplicaGroup,
    TrainingWorkload,
)
from .deepspeed import export_deepspeed
from .inference import export_inference
from .megatron import export_megatron
from .result import EngineCannotExpress, ExportResult
from .torchrun import export_torchrun

__all__ = ["REQUIRED_INPUTS", "check_plan", "export_plan"]

AnyWorkload = TrainingWorkload | InferenceWorkload

#: Inputs each target needs besides the plan (the plan records neither the model's shape nor
#: the sequence length or precision).  Megatron and DeepSpeed need the model for its
#: dimensions and the workload for the sequence length and precision; the inference engines
#: need the model for the head checks and take the workload if given (context length, dtype).
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "megatron": ("model", "workload"),
    "deepspeed": ("model", "workload"),
    "torchrun": ("model", "workload"),
    "vllm": ("model",),
    "sglang": ("model",),
    "trtllm": ("model",),
}


def _layers_of(group: ReplicaGroup, where: str) -> int:
    """Check that the group's stages place every block once, in order; return the count."""
    if group.virtual_stages > 1:
        ranges = sorted(r for s in group.stages for r in s.layer_ranges)
        for i, s in enumerate(group.stages):
            if len(s.layer_ranges) != group.virtual_stages:
                raise SpecError(
                    f"{where}.stages[{i}].chunks: must list virtual_stages={group.virtual_stages} "
                    f"ranges, got {len(s.layer_ranges)}"
                )
    else:
        ranges = []
        for i, s in enumerate(group.stages):
            if s.chunks is not None and len(s.chunks) != 1:
                raise SpecError(
                    f"{where}.stages[{i}].chunks: a stage without virtual stages has one layer "
                    f"range, got {len(s.chunks)}"
                )
            ranges.extend(s.layer_ranges)
    expect = 0
    for first, last in ranges:
        if first != expect:
            raise SpecError(
                f"{where}.stages: layer ranges must cover blocks 0.. in order without gaps or "
                f"overlaps; expected a range starting at block {expect}, got [{first}, {last}]"
            )
        expect = last + 1
    return expect


def check_plan(
    plan: Plan,
    model: Model | None = None,
    cluster: Cluster | None = None,
    workload: AnyWorkload | None = None,
) -> int:
    """Check that ``plan`` is complete and agrees with the inputs given; return its layer count.

    Raises
    ------
    SpecError
        Naming the field and value that disagree.
    """
    layers: int | None = None
    used: dict[tuple[str, int], str] = {}
    for g, group in enumerate(plan.replica_groups):
        where = f"replica_groups[{g}]"
        n = _layers_of(group, where)
        if layers is not None and n != layers:
            raise SpecError(
                f"{where}.stages: places {n} blocks but replica_groups[0] places {layers}"
            )
        layers = n
        if plan.kind == "training":
            for name in ("micro_batch_size", "num_micro_batches"):
                if getattr(group, name) is None:
                    raise SpecError(f"{where}.{name}: required for a training plan, got None")
        for s, stage in enumerate(group.stages):
            at = f"{where}.stages[{s}].devices"
            if len(stage.devices) != group.count:
                raise SpecError(
                    f"{at}: must list one TP group per replica (count={group.count}), "
                    f"got {len(stage.devices)}"
                )
            for r, tp_group in enumerate(stage.devices):
                if len(tp_group) != stage.tp:
                    raise SpecError(
                        f"{at}[{r}]: must list tp={stage.tp} devices, got {len(tp_group)}"
                    )
                for node, gpu in tp_group:
                    key = (str(node), int(gpu))
                    if key in used:
                        raise SpecError(
                            f"{at}[{r}]: device [{node!r}, {gpu}] is also used by {used[key]}"
                        )
                    used[key] = f"{at}[{r}]"
                    if cluster is not None:
                        _check_device(cluster, stage.pool, key, f"{at}[{r}]")
    assert layers is not None
    if model is not None and layers != model.num_layers:
        raise SpecError(
            f"model.num_layers: the plan places {layers} blocks, model {model.name} has "
            f"{model.num_layers}; is this plan for another model?"
        )
    if workload is not None:
        if workload.kind != plan.kind:
            raise SpecError(
                f"workload.kind: the plan is a {plan.kind} plan, the workload is {workload.kind}"
            )
        if isinstance(workload, TrainingWorkload):
            group = plan.replica_groups[0]
            assert group.micro_batch_size is not None and group.num_micro_batches is not None
            gbs = group.count * group.micro_batch_size * group.num_micro_batches
            if gbs != workload.global_batch_size:
                raise SpecError(
                    f"workload.global_batch_size: the plan runs count x micro_batch_size x "
                    f"num_micro_batches = {group.count} x {group.micro_batch_size} x "
                    f"{group.num_micro_batches} = {gbs} sequences per step, got "
                    f"{workload.global_batch_size}"
                )
    return layers


def _check_device(cluster: Cluster, pool_name: str, device: tuple[str, int], at: str) -> None:
    try:
        pool = cluster.pool(pool_name)
    except KeyError:
        names = [p.name for p in cluster.pools]
        raise SpecError(
            f"{at}: pool {pool_name!r} is not in cluster {cluster.name} {names}"
        ) from None
    node, gpu = device
    prefix = f"{pool.name}-"
    index = node[len(prefix) :] if node.startswith(prefix) else ""
    if not index.isdigit() or int(index) >= pool.nodes:
        raise SpecError(
            f"{at}: node {node!r} is not a node of pool {pool.name} "
            f"({prefix}0 .. {prefix}{pool.nodes - 1})"
        )
    if not 0 <= gpu < pool.gpus_per_node:
        raise SpecError(
            f"{at}: GPU {gpu} of node {node!r} does not exist (gpus_per_node={pool.gpus_per_node})"
        )


def export_plan(
    plan: Plan | str | os.PathLike[str] | dict[str, Any],
    to: str,
    model: Model | str | os.PathLike[str] | None = None,
    cluster: Cluster | str | os.PathLike[str] | None = None,
    workload: AnyWorkload | str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Write what a user pastes into ``to``'s launcher to run ``plan`` as planned.

    Parameters
    ----------
    plan
        A :class:`~solver.specs.Plan`, a dict, or a plan file (``shardwise plan --out``).
    to
        One of :data:`~solver.engines.TARGETS`: ``megatron``, ``deepspeed``, ``vllm``,
        ``sglang``, ``trtllm``, ``torchrun``.
    model, cluster, workload
        Specs or names/paths (default None).  :data:`REQUIRED_INPUTS` says which each target
        needs; the cluster, when given, is checked against the plan's devices.

    Returns
    -------
    ExportResult

    Raises
    ------
    SpecError
        Bad input: an unknown target, a missing required input, or a plan that disagrees with
        the inputs.
    EngineCannotExpress
        The engine cannot launch the plan as planned (every violation listed).
    """
    if to not in ENGINES:
        raise SpecError(f"to: must be one of {', '.join(TARGETS)}, got {to!r}")
    p = load_plan(plan)
    m = load_model(model) if model is not None else None
    c = load_cluster(cluster) if cluster is not None else None
    w = load_workload(workload) if workload is not None else None
    given = {"model": m, "workload": w}
    for name in REQUIRED_INPUTS[to]:
        if given[name] is None:
            why = {
                "model": "the plan does not record the model's shape",
                "workload": "the plan does not record the sequence length or precision",
            }[name]
            raise SpecError(f"--{name}: required for --to {to} ({why})")
    check_plan(p, m, c, w)
    violations = engine_violations(p, m, to, w)
    if violations:
        raise EngineCannotExpress(to, violations)
    assert m is not None
    if to in ("megatron", "deepspeed", "torchrun"):
        assert isinstance(w, TrainingWorkload)
        if to == "megatron":
            return export_megatron(p, m, w)
        if to == "deepspeed":
            return export_deepspeed(p, m, w)
        return export_torchrun(p, m, w)
    assert w is None or isinstance(w, InferenceWorkload)
    return export_inference(p, to, m, c, w)
