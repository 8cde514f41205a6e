"""What each launch target can express, as data, and the checks that read it.

A shardwise plan can say things no launcher can: a different TP degree on every pipeline stage,
stages on different GPU types, any layer split, ZeRO-3 under a pipeline.  Each engine's limits
are one :class:`EngineRules` record in :data:`ENGINES`; :func:`engine_violations` checks a whole
plan against them (one human line per violation) and :func:`engine_allows` checks one candidate
replica-group shape, so a planner can keep only the options an engine can launch.

Every rule names its source: the argument check or code path in the engine that enforces it.
Rules about *where* ranks land (node contiguity for torchrun, SGLang multi-node and TRT-LLM MPI
launches) need the plan's devices and live in :mod:`solver.layout`; they are reported by
:func:`engine_violations` (which sees the plan) but not by :func:`engine_allows` (which sees only
a shape).

The rules are checked per combination, never collapsed into the strictest single number: ZeRO-3
under DeepSpeed is refused *with pipeline parallelism* and *with tensor parallelism*, not
everywhere.  A planner fixes the global knobs of a family (ZeRO stage, recompute, sequence
parallelism, virtual stages) and asks :func:`family_limits` what that engine then allows of the
group's shape (:class:`ShapeLimits`: one TP degree, one pool, which layer splits, at most one
stage, TP 1); the exporter asks :func:`engine_violations`; both read the same
:class:`EngineRules` fields through :func:`zero_limit` and the split and interleave checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .costmodel import quant
from .layout import layout_violations
from .specs import InferenceWorkload, Model, Plan, ReplicaGroup, TrainingWorkload

__all__ = [
    "ANY_PLAN",
    "ENGINES",
    "LAUNCHABLE",
    "MEGATRON_COMMIT",
    "MEGATRON_VERSION",
    "TARGETS",
    "EngineRules",
    "GroupShape",
    "ShapeLimits",
    "covering_engines",
    "engine_allows",
    "engine_supports",
    "engine_violations",
    "engines_for",
    "family_limits",
    "group_shape",
    "launch_check",
    "megatron_layout_string",
    "non_dominated",
    "shape_violations",
    "training_numerics_violations",
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


@dataclass(frozen=True)
class GroupShape:
    """The engine-relevant facts of one replica group (or of one candidate option)."""

    tp: tuple[int, ...]
    """TP degree per stage."""
    pools: tuple[str, ...]
    """Pool per stage."""
    layers: tuple[int, ...]
    """Transformer blocks per stage (all chunks together)."""
    chunks: tuple[tuple[tuple[int, int], ...], ...] | None = None
    """Per stage, its ``[first, last]`` chunks (interleaved), or None: Megatron's layout."""
    virtual_stages: int = 1
    schedule: str = "1f1b"
    zero_stage: int = 0
    recompute: str = "none"
    sequence_parallel: bool = False
    num_micro_batches: int | None = None

    @property
    def pp(self) -> int:
        return len(self.tp)


def group_shape(group: ReplicaGroup) -> GroupShape:
    """The :class:`GroupShape` of a plan's replica group."""
    chunks = None
    if group.virtual_stages > 1 or any(s.chunks is not None for s in group.stages):
        chunks = tuple(tuple(s.layer_ranges) for s in group.stages)
    return GroupShape(
        tp=tuple(s.tp for s in group.stages),
        pools=tuple(s.pool for s in group.stages),
        layers=tuple(s.num_layers for s in group.stages),
        chunks=chunks,
        virtual_stages=group.virtual_stages,
        schedule=group.schedule,
        zero_stage=group.zero_stage,
        recompute=group.recompute,
        sequence_parallel=group.sequence_parallel,
        num_micro_batches=group.num_micro_batches,
    )


def megatron_chunks(num_layers: int, pp: int, v: int) -> list[list[tuple[int, int]]]:
    """Megatron's interleaved layout: stage ``s`` chunk ``j`` holds virtual stage ``j*pp + s``.

    Each of the ``pp * v`` virtual stages holds ``num_layers / (pp * v)`` consecutive blocks
    (``get_transformer_layer_offset``: offset = vp_rank * L/v + pp_rank * L/(pp v)).
    """
    size = num_layers // (pp * v)
    return [
        [((j * pp + s) * size, (j * pp + s) * size + size - 1) for j in range(v)] for s in range(pp)
    ]


def megatron_layout_string(chunk_layers: Sequence[Sequence[int]]) -> str:
    """``--pipeline-model-parallel-layout`` for per-stage, per-chunk layer counts.

    ``chunk_layers[s][j]`` is the number of transformer layers of stage ``s``'s chunk ``j``.
    Megatron reads the ``|``-separated virtual stages in the order ``j * pp + s``
    (``PipelineParallelLayerLayout.__init__``: ``layout[vpp_rank * pp + pp_rank]``), wants the
    embedding ``E`` first and the loss ``L`` last (``validate_layer_layout``), and unrolls
    ``t*n`` (``parse_str_to_list``).  E.g. ``[[12], [24], [12]]`` -> ``Et*12|t*24|t*12L``.
    """
    pp = len(chunk_layers)
    v = len(chunk_layers[0])
    parts: list[str] = []
    for j in range(v):
        for s in range(pp):
            n = chunk_layers[s][j]
            parts.append("" if n == 0 else "t" if n == 1 else f"t*{n}")
    parts[0] = "E" + parts[0]
    parts[-1] = parts[-1] + "L"
    return "|".join(parts)


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


_SPLIT_RANK: dict[str, int] = {"even": 0, "even_except_ends": 1, "any": 2}
_KV_RANK: dict[str, int] = {"divisible": 0, "divisible_or_replicated": 1}


@dataclass(frozen=True)
class ShapeLimits:
    """What one or more engines allow of a replica group's shape once a family's global knobs
    (ZeRO stage, recompute, sequence parallelism, virtual stages, precision) are fixed.

    Built by :func:`family_limits`; a planner turns it into constraints (the CP model's
    ``_engine`` rule, option filters and depth limits).
    """

    uniform_tp: bool
    single_pool: bool
    layer_split: LayerSplit
    kv_heads: KvRule
    max_pp: int | None = None
    """1: no pipeline parallelism with these knobs (DeepSpeed ZeRO-2/3); None: no limit."""
    max_tp: int | None = None
    """1: no tensor parallelism with these knobs (DeepSpeed ZeRO-3, SP without an SP
    setting); None: no limit."""
    engines: tuple[str, ...] = ()
    """The engines these are the limits of."""

    def _key(self) -> tuple[object, ...]:
        return (
            self.uniform_tp, self.single_pool, self.layer_split, self.kv_heads, self.max_pp,
            self.max_tp,
        )  # fmt: skip

    def covers(self, other: ShapeLimits) -> bool:
        """Whether every shape ``other`` allows is allowed here too."""

        def at_least(a: int | None, b: int | None) -> bool:
            return a is None or (b is not None and a >= b)

        split_ok = (
            other.max_pp == 1 or _SPLIT_RANK[self.layer_split] >= _SPLIT_RANK[other.layer_split]
        )
        return (
            (other.uniform_tp or not self.uniform_tp)
            and (other.single_pool or not self.single_pool)
            and split_ok
            and _KV_RANK[self.kv_heads] >= _KV_RANK[other.kv_heads]
            and at_least(self.max_pp, other.max_pp)
            and at_least(self.max_tp, other.max_tp)
        )

    def allows_stages(self, tp: Sequence[int], pools: Sequence[str], layers: Sequence[int]) -> bool:
        """Whether a pipeline of these stages (TP, pool and layers each) is allowed; the head
        rules are :meth:`allows_tp`'s."""
        pp = len(tp)
        if self.max_pp is not None and pp > self.max_pp:
            return False
        if self.max_tp is not None and max(tp) > self.max_tp:
            return False
        if self.uniform_tp and len(set(tp)) > 1:
            return False
        if self.single_pool and len(set(pools)) > 1:
            return False
        if self.layer_split == "even":
            return len(set(layers)) <= 1
        if self.layer_split == "even_except_ends":
            return pp <= 2 or len(set(layers[1:-1])) <= 1
        return True

    def allows_tp(self, tp: int, heads: int, kv: int) -> bool:
        """Whether a stage of TP degree ``tp`` is allowed (head rules and :attr:`max_tp`)."""
        if self.max_tp is not None and tp > self.max_tp:
            return False
        if heads and heads % tp:
            return False
        if not kv or kv % tp == 0:
            return True
        return self.kv_heads == "divisible_or_replicated" and tp % kv == 0


def family_limits(
    rules: EngineRules,
    *,
    zero_stage: int = 0,
    recompute: str = "none",
    sequence_parallel: bool = False,
    virtual_stages: int = 1,
    precision: str | None = None,
    memory_policy: str | None = None,
) -> ShapeLimits | None:
    """What ``rules`` allows of the group's shape under these global knobs, or None when the
    knobs themselves have no setting in the engine.

    Reads the same fields as :func:`shape_violations`: a ZeRO stage above the limit with PP
    (:func:`zero_limit`) allows only one stage, above the limit with TP only TP 1; sequence
    parallelism without an engine setting only TP 1 (where it is a no-op).
    """
    if precision is not None and precision not in rules.precisions:
        return None
    if (
        memory_policy is not None
        and rules.kind == "training"
        and memory_policy not in rules.memory_policies
    ):
        return None
    if virtual_stages > 1 and not rules.interleaved:
        return None
    max_pp: int | None = None
    max_tp: int | None = None
    if rules.kind == "training":
        if recompute not in rules.recompute or zero_stage > rules.max_zero_stage:
            return None
        if zero_stage > zero_limit(rules, 2, 1)[0]:
            max_pp = 1
        if zero_stage > zero_limit(rules, 1, 2)[0]:
            max_tp = 1
        if sequence_parallel and not rules.sequence_parallel:
            max_tp = 1
    if virtual_stages > 1 and max_pp == 1:
        return None  # interleaving needs a pipeline
    return ShapeLimits(
        uniform_tp=rules.uniform_tp,
        single_pool=rules.single_pool,
        layer_split=rules.layer_split,
        kv_heads=rules.kv_heads,
        max_pp=max_pp,
        max_tp=max_tp,
        engines=(rules.name,),
    )


def non_dominated(limits: Sequence[ShapeLimits]) -> list[ShapeLimits]:
    """The limits no other one covers, equal ones merged (their engines joined), in order.

    Solving under each of these covers the union of the engines' spaces: a space another
    covers adds no plan.
    """
    merged: dict[tuple[object, ...], ShapeLimits] = {}
    for lim in limits:
        key = lim._key()
        if key in merged:
            old = merged[key]
            names = old.engines + tuple(e for e in lim.engines if e not in old.engines)
            merged[key] = ShapeLimits(**{**old.__dict__, "engines": names})
        else:
            merged[key] = lim
    kept = list(merged.values())
    out: list[ShapeLimits] = []
    for i, a in enumerate(kept):
        if any(j != i and b.covers(a) and (not a.covers(b) or j < i) for j, b in enumerate(kept)):
            continue
        out.append(a)
    return out


def engines_for(kind: str) -> list[EngineRules]:
    """The engines that launch ``kind`` (``training`` or ``inference``) plans, ``--to`` order."""
    return [r for r in ENGINES.values() if r.kind == kind]


def _rules_cover(a: EngineRules, b: EngineRules) -> bool:
    """Whether ``a`` launches every plan ``b`` launches (same kind; rank placement counted)."""
    if a.kind != b.kind or (a.places_ranks and a.name != b.name):
        return False
    la = family_limits(a)
    lb = family_limits(b)
    assert la is not None and lb is not None
    return (
        la.covers(lb)
        and (a.interleaved or not b.interleaved)
        and a.max_zero_stage >= b.max_zero_stage
        and a.max_zero_stage_with_pp >= b.max_zero_stage_with_pp
        and a.max_zero_stage_with_tp >= b.max_zero_stage_with_tp
        and a.recompute >= b.recompute
        and (a.sequence_parallel or not b.sequence_parallel)
        and a.memory_policies >= b.memory_policies
        and a.precisions >= b.precisions
        and a.tp_comm_overlaps >= b.tp_comm_overlaps
        and a.fp8_recipes >= b.fp8_recipes
    )


def covering_engines(engines: Sequence[EngineRules]) -> list[EngineRules]:
    """The engines of ``engines`` that no other one covers (:func:`_rules_cover`), in order:
    planning for each of them, and keeping the best, plans over the union of all of them."""
    out: list[EngineRules] = []
    for i, a in enumerate(engines):
        if any(
            j != i and _rules_cover(b, a) and (not _rules_cover(a, b) or j < i)
            for j, b in enumerate(engines)
        ):
            continue
        out.append(a)
    return out


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
        A target name from :data:`TARGETS`.
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
