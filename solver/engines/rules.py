"""The launch targets' rules as data: one :class:`EngineRules` record per engine, each with its
source.

Every rule names its source: the argument check or code path in the engine that enforces it.
:data:`ENGINES` holds the records in ``--to`` order; :func:`zero_limit` reads the three ZeRO
fields as one rule per combination (DeepSpeed refuses ZeRO-3 *with pipeline parallelism* and
*with tensor parallelism*, not everywhere), for both the planner's limits
(:mod:`solver.engines.limits`) and the checks (:mod:`solver.engines.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..costmodel import quant

__all__ = [
    "ANY_PLAN",
    "ENGINES",
    "LAUNCHABLE",
    "MEGATRON_COMMIT",
    "MEGATRON_VERSION",
    "TARGETS",
    "EngineRules",
    "KvRule",
    "LayerSplit",
    "engines_for",
    "zero_limit",
]

#: The Megatron-LM release whose flags the Megatron and torchrun exporters write, and whose
#: sources the rules below cite (NVIDIA/Megatron-LM tag ``core_v0.14.0``).
MEGATRON_VERSION = "core_v0.14.0"
#: The commit of :data:`MEGATRON_VERSION`.
MEGATRON_COMMIT = "23e00ed0963c35382dfe8a5a94fb3cda4d21e133"

#: ``plan(engine=...)``: plans at least one engine of the workload's kind can launch (default).
LAUNCHABLE = "launchable"
#: ``plan(engine=...)``: every plan the cost model accepts, beyond what any engine launches.
ANY_PLAN = "any-plan"

#: How the layers may be split over pipeline stages.
#: ``any``: every stage its own count (vLLM ``VLLM_PP_LAYER_PARTITION``, SGLang
#: ``SGLANG_PP_LAYER_PARTITION``); ``even_except_ends``: the first and last stage may differ from
#: the (equal) middle stages (Megatron-Core ``--decoder-first/last-pipeline-num-layers``);
#: ``even``: every stage the same count.  Interleaved (virtual) stages: under ``any`` each
#: chunk its own count (Megatron-Core ``--pipeline-model-parallel-layout``), otherwise every
#: stage's chunks are equal (``--num-virtual-stages-per-pipeline-rank``).
LayerSplit = Literal["any", "even_except_ends", "even"]

#: How TP must relate to the model's key/value heads.
#: ``divisible``: kv_heads % tp == 0 (Megatron-Core TransformerConfig: num_query_groups must be
#: a multiple of tensor_model_parallel_size); ``divisible_or_replicated``: kv_heads % tp == 0 or
#: tp % kv_heads == 0, KV heads replicated when TP exceeds them (vLLM QKVParallelLinear,
#: SGLang and TRT-LLM do the same).
KvRule = Literal["divisible", "divisible_or_replicated"]


@dataclass(frozen=True)
class EngineRules:
    """What one launch target can express.  Plain data: read it, don't subclass it."""

    name: str
    """Target name as given to ``--to``."""
    title: str
    """Human name of the engine."""
    kind: Literal["training", "inference"]
    """The workload kind the target launches."""
    uniform_tp: bool
    """Every pipeline stage of a replica group uses the same TP degree."""
    single_pool: bool
    """Every stage of a replica group runs on one pool (one GPU type)."""
    layer_split: LayerSplit
    """Which layer splits over the stages can be expressed."""
    interleaved: bool
    """The interleaved 1F1B schedule (virtual stages) can be expressed."""
    max_zero_stage: int
    """Highest ZeRO stage (training) without pipeline parallelism."""
    max_zero_stage_with_pp: int
    """Highest ZeRO stage (training) with pipeline parallelism (PP > 1)."""
    max_zero_stage_with_tp: int
    """Highest ZeRO stage (training) with tensor parallelism (TP > 1)."""
    recompute: frozenset[str]
    """Recompute settings that can be expressed."""
    sequence_parallel: bool
    """Megatron-style sequence parallelism (with TP > 1) can be expressed."""
    kv_heads: KvRule
    """How TP must relate to the number of key/value heads."""
    memory_policies: frozenset[str]
    """Training memory policies (bytes of model state per parameter) that can be expressed."""
    precisions: frozenset[str]
    """Workload precisions that can be expressed."""
    source: str
    """Where these limits come from."""
    places_ranks: bool = False
    """The launcher also constrains where ranks land (checked on the plan's devices by
    :func:`solver.layout.layout_violations`: torchrun node blocks, SGLang and TRT-LLM
    multi-node launches)."""
    version: str = ""
    """The engine release the exporter writes flags for (empty: version-independent flags)."""
    quantizations: frozenset[str] = frozenset({"none"})
    """Serving quantization formats it launches (:data:`solver.costmodel.quant.FORMATS`, whose
    ``engines`` column it is read from; ``none``: unquantized)."""
    tp_comm_overlaps: frozenset[str] = frozenset({"none"})
    """Training TP communication overlaps it launches (``TrainingWorkload.tp_comm_overlap``,
    :mod:`solver.costmodel.tp_overlap`)."""
    fp8_recipes: frozenset[str] = frozenset()
    """FP8 scaling recipes (``TrainingWorkload.fp8_recipe``) it launches with precision fp8."""


_ALL_RECOMPUTE = frozenset({"none", "selective", "full"})
_ALL_PRECISIONS = frozenset({"bf16", "fp16", "fp8"})
_INFERENCE_SOURCE = (
    "attention heads must divide by TP and KV heads are replicated when TP exceeds them "
    "(ModelConfig.verify_with_parallel_config / QKVParallelLinear); one TP degree per launch"
)

_MEGATRON = EngineRules(
    name="megatron",
    title="Megatron-LM",
    kind="training",
    # One --tensor-model-parallel-size for every rank (parallel_state.initialize_model_parallel).
    uniform_tp=True,
    # Megatron does not care which GPU type runs a stage; the plan's split accounts for it.
    single_pool=False,
    # --pipeline-model-parallel-layout (core_v0.13.0 on; core_v0.14.0
    # megatron/core/transformer/pipeline_parallel_layer_layout.py PipelineParallelLayerLayout):
    # every (virtual) stage its own layer count; get_transformer_layer_offset and
    # get_num_layers_to_build read it.  Even-except-ends splits keep the older
    # --decoder-first/last-pipeline-num-layers flags.
    layer_split="any",
    # --num-layers-per-virtual-pipeline-stage (equal chunks), --num-virtual-stages-per-pipeline-
    # rank (uneven first/last stage) or the layout (any chunks): arguments.validate_args.
    interleaved=True,
    # --use-distributed-optimizer shards optimizer state and fp32 master weights (ZeRO-1);
    # ZeRO-2/3 need Megatron-FSDP, which this exporter does not emit.
    max_zero_stage=1,
    max_zero_stage_with_pp=1,
    max_zero_stage_with_tp=1,
    recompute=_ALL_RECOMPUTE,
    sequence_parallel=True,
    kv_heads="divisible",
    # Megatron keeps fp32 master weights and fp32 Adam moments (--main-params-dtype fp32|fp16):
    # pure_bf16 (8 B/param, no fp32 copy) has no equivalent.
    memory_policies=frozenset({"megatron_bf16", "amp_fp16"}),
    precisions=_ALL_PRECISIONS,
    source=f"Megatron-LM {MEGATRON_VERSION} ({MEGATRON_COMMIT[:12]}): "
    "megatron/training/arguments.py validate_args; megatron/core/parallel_state.py; "
    "megatron/core/transformer/pipeline_parallel_layer_layout.py",
    version=MEGATRON_VERSION,
    # --tp-comm-overlap: Transformer Engine userbuffers (validate_args: only with
    # --sequence-parallel, which the exporter therefore requires before writing it).
    # torchtitan's async TP (torch.compile micro-pipelining) has no Megatron setting.
    tp_comm_overlaps=frozenset({"none", "megatron_userbuffers"}),
    # --fp8-recipe choices tensorwise | delayed | mxfp8 | blockwise (arguments.py): TE's
    # current (tensorwise) and delayed scaling; torchao's rowwise recipe is not among them.
    fp8_recipes=frozenset({"tensorwise", "delayed"}),
)

_TORCHRUN = EngineRules(
    **{
        **_MEGATRON.__dict__,
        "name": "torchrun",
        "title": "torchrun + Megatron-LM",
        "source": _MEGATRON.source + "; torch.distributed.run assigns each node a contiguous "
        "block of global ranks (elastic agent _assign_worker_ranks)",
        "places_ranks": True,
    }
)

_DEEPSPEED = EngineRules(
    name="deepspeed",
    title="DeepSpeed",
    kind="training",
    uniform_tp=True,
    single_pool=False,
    # PipelineModule partition_method splits layers by count or parameters; the remainder's
    # placement differs between versions, so only an even split is reproducible.
    layer_split="even",
    # The DeepSpeed pipeline engine runs one schedule (TrainSchedule), no virtual stages.
    interleaved=False,
    max_zero_stage=3,
    # PipelineEngine asserts zero_optimization_stage() < 2 ("ZeRO-2 and ZeRO-3 are
    # incompatible with pipeline parallelism").
    max_zero_stage_with_pp=1,
    # AutoTP training ("tensor_parallel": {"autotp_size": N}) combines with ZeRO 0, 1 or 2
    # (deepspeed.ai/tutorials/autotp-training).
    max_zero_stage_with_tp=2,
    # pipeline.activation_checkpoint_interval / activation checkpointing recompute whole layers;
    # there is no attention-only (selective) setting.
    recompute=frozenset({"none", "full"}),
    sequence_parallel=False,
    kv_heads="divisible",
    # DeepSpeed's bf16/fp16 optimizers keep fp32 master weights.
    memory_policies=frozenset({"megatron_bf16", "amp_fp16"}),
    # FP8 training lives in the model code (Transformer Engine), not in the DeepSpeed config.
    precisions=frozenset({"bf16", "fp16"}),
    source="deepspeed/runtime/pipe/engine.py PipelineEngine; deepspeed/runtime/config.py",
)


def _inference(
    name: str, title: str, layer_split: LayerSplit, source: str, places_ranks: bool = False
) -> EngineRules:
    return EngineRules(
        name=name,
        title=title,
        kind="inference",
        uniform_tp=True,
        # One launch uses one GPU type; mixed-GPU pipelines are not supported.
        single_pool=True,
        layer_split=layer_split,
        interleaved=False,
        max_zero_stage=3,
        max_zero_stage_with_pp=3,
        max_zero_stage_with_tp=3,
        recompute=_ALL_RECOMPUTE,
        sequence_parallel=True,
        kv_heads="divisible_or_replicated",
        memory_policies=frozenset({"megatron_bf16", "amp_fp16", "pure_bf16"}),
        precisions=_ALL_PRECISIONS,
        source=source,
        places_ranks=places_ranks,
        quantizations=frozenset(
            q for q, fmt in quant.FORMATS.items() if q == "none" or name in fmt.engines
        ),
    )


_VLLM = _inference(
    "vllm",
    "vLLM",
    "any",
    "vLLM: " + _INFERENCE_SOURCE + "; VLLM_PP_LAYER_PARTITION (distributed/utils.get_pp_indices)",
)
_SGLANG = _inference(
    "sglang",
    "SGLang",
    "any",
    "SGLang: " + _INFERENCE_SOURCE + "; SGLANG_PP_LAYER_PARTITION",
    places_ranks=True,
)
_TRTLLM = _inference(
    "trtllm",
    "TensorRT-LLM",
    # Mapping.pp_layers: older releases floor num_layers / pp, newer give the remainder to the
    # first ranks; only an even split means the same on every release.
    "even",
    "TensorRT-LLM: " + _INFERENCE_SOURCE + "; tensorrt_llm/mapping.py Mapping.pp_layers",
    places_ranks=True,
)

#: Every launch target by name, in ``--to`` order.
ENGINES: dict[str, EngineRules] = {
    r.name: r for r in (_MEGATRON, _DEEPSPEED, _VLLM, _SGLANG, _TRTLLM, _TORCHRUN)
}
#: The target names, as ``--to`` accepts them.
TARGETS: tuple[str, ...] = tuple(ENGINES)


def engines_for(kind: str) -> list[EngineRules]:
    """The engines that launch ``kind`` (``training`` or ``inference``) plans, ``--to`` order."""
    return [r for r in ENGINES.values() if r.kind == kind]


def zero_limit(rules: EngineRules, pp: int, tp: int) -> tuple[int, str]:
    """The highest ZeRO stage ``rules`` runs with pipeline depth ``pp`` and largest TP ``tp``,
    and why (``""``, ``" with pipeline parallelism"`` or ``" with tensor parallelism"``).

    Each combination is its own rule (DeepSpeed: ZeRO-3 alone, ZeRO-1 under a pipeline, ZeRO-2
    with AutoTP), so a plan without PP or TP is never held to the PP or TP limit.
    """
    limit, why = rules.max_zero_stage, ""
    if pp > 1 and rules.max_zero_stage_with_pp < limit:
        limit, why = rules.max_zero_stage_with_pp, " with pipeline parallelism"
    if tp > 1 and rules.max_zero_stage_with_tp < limit:
        limit, why = rules.max_zero_stage_with_tp, " with tensor parallelism"
    return limit, why
