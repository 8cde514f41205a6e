"""Megatron-LM arguments for a training plan (``--to megatron``).

Flag names follow ``megatron/training/arguments.py`` of Megatron-LM
:data:`~solver.engines.MEGATRON_VERSION` (NVIDIA/Megatron-LM tag ``core_v0.14.0``, commit
``23e00ed0963c``): ``--tensor-model-parallel-size``, ``--pipeline-model-parallel-size``,
``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers`` (uneven first
and last stage; the middle stages split the rest evenly), ``--num-layers-per-virtual-pipeline-
stage`` (interleaved 1F1B, equal chunks), ``--num-virtual-stages-per-pipeline-rank``
(interleaved with an uneven first/last stage), ``--pipeline-model-parallel-layout`` (any layer
count per stage and chunk: heterogeneous pipelines whose stages run on different GPU types),
``--sequence-parallel``, ``--tp-comm-overlap`` (Transformer Engine userbuffers; with sequence
parallelism only), ``--fp8-recipe``, ``--recompute-granularity``, ``--use-distributed-optimizer`` (ZeRO-1:
optimizer state and fp32 master weights sharded over DP), ``--use-tp-pp-dp-mapping`` (rank
order ``tp-pp-dp``).

Which split flags a plan gets (the first that expresses it exactly):

* every stage and chunk equal: none, or ``--num-layers-per-virtual-pipeline-stage``;
* only the first and last stage differ, each stage's chunks equal: the first/last flags
  (``get_num_layers_to_build`` / ``get_transformer_layer_offset``), plus
  ``--num-virtual-stages-per-pipeline-rank`` when interleaved (``validate_args`` refuses the
  first/last flags with ``--num-layers-per-virtual-pipeline-stage``);
* anything else: ``--pipeline-model-parallel-layout`` (``PipelineParallelLayerLayout``), which
  excludes the other three (``validate_args`` asserts at most one of them, and
  ``TransformerConfig.__post_init__`` refuses the first/last flags beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import MEGATRON_COMMIT, MEGATRON_VERSION, megatron_layout_string
from ..layout import megatron_layout
from ..specs import Model, Plan, ReplicaGroup, TrainingWorkload
from .result import ExportResult
from .text import comment, header

__all__ = ["ArgBlock", "export_megatron", "megatron_arguments", "render_bash_array"]


@dataclass(frozen=True)
class ArgBlock:
    """A commented block of arguments (one flag, with its value, per entry)."""

    comment: str
    args: tuple[str, ...]


def uneven_flags(layers: list[int]) -> list[str]:
    """``--decoder-first/last-pipeline-num-layers`` for a per-stage layer split, or [].

    Megatron gives the layers left after the flagged first/last stage evenly to the remaining
    stages (``get_num_layers_to_build``: ``layers_to_distribute % pipeline_stages_left``), so
    at least one stage must stay unflagged: with PP=2 only the first stage is flagged.
    """
    pp = len(layers)
    if pp < 2 or len(set(layers)) == 1:
        return []
    if pp == 2:
        return [f"--decoder-first-pipeline-num-layers {layers[0]}"]
    middle = layers[1]
    out: list[str] = []
    if layers[0] != middle:
        out.append(f"--decoder-first-pipeline-num-layers {layers[0]}")
    if layers[-1] != middle:
        out.append(f"--decoder-last-pipeline-num-layers {layers[-1]}")
    return out


def chunk_layers(group: ReplicaGroup) -> list[list[int]]:
    """Layers of each stage's chunks (one chunk per stage without interleaving)."""
    return [[last - first + 1 for first, last in s.layer_ranges] for s in group.stages]


def split_flags(group: ReplicaGroup) -> list[str]:
    """The flags that give Megatron exactly the group's layer split (see the module doc)."""
    pp, v = group.pp, group.virtual_stages
    chunks = chunk_layers(group)
    layers = [sum(c) for c in chunks]
    per_stage_equal = all(len(set(c)) == 1 for c in chunks)
    first_last = uneven_flags(layers)
    middle_even = pp <= 2 or len(set(layers[1:-1])) == 1
    if v == 1:
        if middle_even:
            return first_last
    elif per_stage_equal and len(set(layers)) == 1:
        return [f"--num-layers-per-virtual-pipeline-stage {layers[0] // v}"]
    elif per_stage_equal and middle_even:
        return [f"--num-virtual-stages-per-pipeline-rank {v}", *first_last]
    return [f'--pipeline-model-parallel-layout "{megatron_layout_string(chunks)}"']


def tp_overlap_flags(group: ReplicaGroup, workload: TrainingWorkload) -> list[str]:
    """``--tp-comm-overlap`` where the workload overlaps TP communication with Transformer
    Engine userbuffers and the plan has TP > 1 with sequence parallelism (``validate_args``
    asserts sequence parallelism with it; without, the cost model overlaps nothing either,
    :func:`solver.costmodel.tp_overlap.block_tp_overlap`)."""
    tp = group.stages[0].tp
    on = workload.tp_comm_overlap == "megatron_userbuffers"
    return ["--tp-comm-overlap"] if on and group.sequence_parallel and tp > 1 else []


def _parallel_block(
    group: ReplicaGroup, order_flag: str | None, workload: TrainingWorkload
) -> ArgBlock:
    tp, pp, dp = group.stages[0].tp, group.pp, group.count
    layers = [s.num_layers for s in group.stages]
    args = [f"--tensor-model-parallel-size {tp}", f"--pipeline-model-parallel-size {pp}"]
    args += split_flags(group)
    if group.sequence_parallel and tp > 1:
        args.append("--sequence-parallel")
    args += tp_overlap_flags(group, workload)
    if order_flag is not None:
        args.append(order_flag)
    split = "/".join(str(n) for n in layers)
    comment = f"parallelism: TP={tp} PP={pp} DP={dp} = {tp * pp * dp} ranks; layers {split}"
    if group.virtual_stages > 1:
        sizes = sorted({n for c in chunk_layers(group) for n in c})
        shown = "/".join(str(n) for n in sizes)
        comment += f" in interleaved chunks of {shown}"
    pools = list(dict.fromkeys(s.pool for s in group.stages))
    if len(pools) > 1:
        comment += "; stages on " + "/".join(s.pool for s in group.stages)
    return ArgBlock(comment, tuple(args))


def _batch_block(group: ReplicaGroup) -> ArgBlock:
    assert group.micro_batch_size is not None and group.num_micro_batches is not None
    gbs = group.count * group.micro_batch_size * group.num_micro_batches
    return ArgBlock(
        f"batch: {gbs} sequences = {group.count} replicas x micro-batch "
        f"{group.micro_batch_size} x {group.num_micro_batches} micro-batches",
        (f"--micro-batch-size {group.micro_batch_size}", f"--global-batch-size {gbs}"),
    )


def _memory_block(group: ReplicaGroup, workload: TrainingWorkload) -> ArgBlock:
    args: list[str] = []
    if group.zero_stage >= 1:
        args.append("--use-distributed-optimizer")
    if workload.overlap_grad_reduce and group.count > 1:
        args.append("--overlap-grad-reduce")
    if group.recompute == "full":
        args += [
            "--recompute-granularity full",
            "--recompute-method uniform",
            "--recompute-num-layers 1",
        ]
    elif group.recompute == "selective":
        args.append("--recompute-granularity selective")
    return ArgBlock(f"memory: ZeRO-{group.zero_stage}, recompute {group.recompute}", tuple(args))


def _model_block(model: Model, workload: TrainingWorkload) -> ArgBlock:
    seq = workload.sequence_length
    args = [
        f"--num-layers {model.num_layers}",
        f"--hidden-size {model.hidden_size}",
        f"--ffn-hidden-size {model.ffn_hidden_size}",
        f"--num-attention-heads {model.num_attention_heads}",
    ]
    if model.num_kv_heads != model.num_attention_heads:
        args += ["--group-query-attention", f"--num-query-groups {model.num_kv_heads}"]
    if (
        model.head_dim is not None
        and model.head_dim * model.num_attention_heads != model.hidden_size
    ):
        args.append(f"--kv-channels {model.head_dim}")
    if model.mlp == "swiglu":
        args.append("--swiglu")
    args.append(
        "--position-embedding-type "
        + ("learned_absolute" if model.learned_position_embeddings else "rope")
    )
    if not model.tied_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if model.num_experts is not None and model.experts_per_token is not None:
        args += [
            f"--num-experts {model.num_experts}",
            f"--moe-router-topk {model.experts_per_token}",
        ]
        if model.moe_ffn_hidden_size is not None:
            args.append(f"--moe-ffn-hidden-size {model.moe_ffn_hidden_size}")
    args += [f"--seq-length {seq}", f"--max-position-embeddings {seq}"]
    return ArgBlock(f"model: {model.name}", tuple(args))


def _precision_block(workload: TrainingWorkload) -> ArgBlock:
    if workload.precision == "fp16":
        args: tuple[str, ...] = ("--fp16",)
    elif workload.precision == "fp8":
        # FP8 GEMMs through Transformer Engine, bf16 elsewhere; the scaling recipe as planned
        # (--fp8-recipe tensorwise | delayed; solver.engines refuses the others).
        args = ("--bf16", "--fp8-format hybrid", f"--fp8-recipe {workload.fp8_recipe}")
    else:
        args = ("--bf16",)
    return ArgBlock(f"precision: {workload.precision}", args)


def megatron_arguments(
    plan: Plan, model: Model, workload: TrainingWorkload
) -> tuple[list[ArgBlock], str | None]:
    """The Megatron-LM argument blocks for a training plan, and a note when torchrun's node
    blocks cannot place the ranks as planned (None when they can)."""
    group = plan.replica_groups[0]
    layout = megatron_layout(group)
    order_flag = None if isinstance(layout, str) else layout.megatron_flag
    blocks = [
        _parallel_block(group, order_flag, workload),
        _batch_block(group),
        _memory_block(group, workload),
        _model_block(model, workload),
        _precision_block(workload),
    ]
    note = None
    if isinstance(layout, str):
        note = f"no torchrun node layout places the ranks as planned ({layout})"
    return blocks, note


def render_bash_array(name: str, blocks: list[ArgBlock], indent: str = "    ") -> str:
    """``NAME=( ... )`` with a comment line before each block."""
    lines = [f"{name}=("]
    for block in blocks:
        if not block.args:
            continue
        lines += comment(block.comment, indent=indent)
        lines += [f"{indent}{arg}" for arg in block.args]
    lines.append(")")
    return "\n".join(lines) + "\n"


def export_megatron(plan: Plan, model: Model, workload: TrainingWorkload) -> ExportResult:
    """The ``--to megatron`` output: a bash array of Megatron-LM arguments."""
    group = plan.replica_groups[0]
    blocks, layout_note = megatron_arguments(plan, model, workload)
    world = group.count * group.pp * group.stages[0].tp
    notes = [
        f"flags of Megatron-LM {MEGATRON_VERSION} (NVIDIA/Megatron-LM commit "
        f"{MEGATRON_COMMIT[:12]})"
        + (
            "; --pipeline-model-parallel-layout needs core_v0.13.0 or later"
            if any(a.startswith("--pipeline-model-parallel-layout") for a in blocks[0].args)
            else ""
        ),
        f"Megatron derives DP from the world size: launch exactly {world} ranks; "
        "'shardwise export --to torchrun' writes per-node torchrun lines that put every rank "
        "on the device the plan names",
        "add your data, tokenizer, optimizer and checkpoint arguments, and the architecture "
        "details the shardwise model spec does not record (normalization, biases, RoPE base)",
    ]
    if layout_note is not None:
        notes.append(layout_note)
    lines = header("megatron", plan, model)
    for n in notes:
        lines += comment(n)
    if group.stages[0].tp > 1:
        # validate_args asserts this with tensor (or context) parallelism.
        lines += comment(
            "MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: "
            "Megatron's validate_args asserts it with tensor parallelism"
        )
        lines.append("export CUDA_DEVICE_MAX_CONNECTIONS=1")
    text = "\n".join(lines) + "\n" + render_bash_array("MEGATRON_ARGS", blocks)
    text += '# usage: torchrun ... pretrain_gpt.py "${MEGATRON_ARGS[@]}" --data-path ...\n'
    return ExportResult("megatron", "Megatron-LM", text, {}, tuple(notes))
