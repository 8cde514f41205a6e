"""Input and output schemas (pydantic v2, frozen, ``extra="forbid"``).

Field names carry their unit: ``_GB`` (10^9 bytes), ``_GBps`` (GB/s *per direction*),
``_us``, ``_ms``, ``_s``, ``_tflops``.  Vendor "bidirectional" link figures are halved in the
catalog.  Every cross-reference is validated here so that the cost model, the evaluator and the
CP-SAT back-end can trust their inputs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Calibration",
    "Cluster",
    "FabricLink",
    "GPUSpec",
    "InferenceWorkload",
    "Link",
    "Model",
    "Nic",
    "Plan",
    "Pool",
    "ReplicaGroup",
    "SolverInfo",
    "Stage",
    "TrainingWorkload",
    "Workload",
]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

#: One measured GEMM of a calibration's rate table: ``(m, k, n, tflops)`` for the product
#: ``(m x k) @ (k x n)`` (row-major operands, ``torch.matmul``) timed at ``tflops`` TFLOP/s.
GemmRate = tuple[PositiveInt, PositiveInt, PositiveInt, PositiveFloat]


def _check_gemm_table(v: tuple[GemmRate, ...]) -> tuple[GemmRate, ...]:
    """Reject a table that names one (m, k, n) twice (the lookup would be ambiguous)."""
    seen: set[tuple[int, int, int]] = set()
    for i, (m, k, n, _) in enumerate(v):
        if (m, k, n) in seen:
            raise ValueError(f"[{i}]: duplicate GEMM shape, got (m, k, n) = ({m}, {k}, {n})")
        seen.add((m, k, n))
    return v


#: A measured per-shape GEMM rate table (see :func:`solver.costmodel.gemm_table.gemm_rate_tflops`):
#: a tuple, so that a GPU spec carrying one stays hashable; shapes are unique.
GemmTable = Annotated[tuple[GemmRate, ...], Field(min_length=1), AfterValidator(_check_gemm_table)]


class _Spec(BaseModel):
    # Inputs must be finite: an infinite bandwidth or a NaN efficiency would poison the cost
    # model and the CP-SAT integer scaling.  (Plan outputs opt back in, see SolverInfo/Plan.)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
class Model(_Spec):
    """A decoder-only transformer (GPT / Llama / Mixtral style)."""

    name: str = Field(description="Model name, e.g. 'llama3-70b'.")
    num_layers: PositiveInt = Field(description="Number of transformer blocks.")
    hidden_size: PositiveInt = Field(description="Model (residual stream) width h.")
    ffn_hidden_size: PositiveInt = Field(
        description="MLP inner width (4h for GPT GeLU; ~8h/3 rounded for SwiGLU)."
    )
    num_attention_heads: PositiveInt = Field(description="Query heads a.")
    num_kv_heads: PositiveInt = Field(description="Key/value heads (= a for MHA, < a for GQA).")
    vocab_size: NonNegInt = Field(
        description="Vocabulary size; 0 means a bare block stack with no embedding or head."
    )
    mlp: Literal["gelu", "swiglu"] = Field(
        description="MLP kind: 2-matrix GeLU or 3-matrix SwiGLU."
    )
    tied_embeddings: bool = Field(
        default=False, description="Input embedding and LM head share one matrix."
    )
    head_dim: PositiveInt | None = Field(
        default=None, description="Per-head width; default hidden_size / num_attention_heads."
    )
    learned_position_embeddings: bool = Field(
        default=False,
        description="GPT-style learned position embedding table (sequence_length x h) on stage 0.",
    )
    num_experts: PositiveInt | None = Field(default=None, description="MoE: experts per layer.")
    experts_per_token: PositiveInt | None = Field(default=None, description="MoE: top-k routing.")
    moe_ffn_hidden_size: PositiveInt | None = Field(
        default=None, description="MoE: inner width of one expert (default ffn_hidden_size)."
    )

    @model_validator(mode="after")
    def _check(self) -> Model:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads: must be divisible by num_kv_heads={self.num_kv_heads}, "
                f"got {self.num_attention_heads}"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size: must be divisible by num_attention_heads={self.num_attention_heads} "
                f"(or give head_dim), got {self.hidden_size}"
            )
        moe = (self.num_experts, self.experts_per_token)
        if (moe[0] is None) != (moe[1] is None):
            raise ValueError(
                "num_experts: num_experts and experts_per_token must be given together, "
                f"got num_experts={moe[0]}, experts_per_token={moe[1]}"
            )
        if self.moe_ffn_hidden_size is not None and self.num_experts is None:
            raise ValueError(
                "moe_ffn_hidden_size: only meaningful with num_experts and experts_per_token, "
                f"got moe_ffn_hidden_size={self.moe_ffn_hidden_size} without num_experts"
            )
        if self.num_experts is not None and self.experts_per_token is not None:
            if self.experts_per_token > self.num_experts:
                raise ValueError(
                    f"experts_per_token: must be <= num_experts={self.num_experts}, "
                    f"got {self.experts_per_token}"
                )
        return self

    @property
    def kv_channels(self) -> int:
        """Per-head width."""
        return (
            self.head_dim
            if self.head_dim is not None
            else self.hidden_size // self.num_attention_heads
        )

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None


# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------
class GPUSpec(_Spec):
    """One GPU type: peak figures from the datasheet plus achievable-fraction factors."""

    name: str = Field(description="Catalog name, e.g. 'H100-SXM5-80GB'.")
    memory_GB: PositiveFloat = Field(description="Usable HBM/GDDR capacity, 10^9 bytes.")
    bf16_tflops: PositiveFloat = Field(description="Dense BF16/FP16 tensor-core peak, TFLOP/s.")
    fp16_tflops: PositiveFloat | None = Field(
        default=None, description="Dense FP16 peak if it differs from BF16 (V100 has no BF16)."
    )
    fp8_tflops: PositiveFloat | None = Field(
        default=None, description="Dense FP8 peak, TFLOP/s; None if the GPU has no FP8."
    )
    memory_bandwidth_GBps: PositiveFloat = Field(description="HBM bandwidth, GB/s.")
    gemm_efficiency: Fraction = Field(
        default=0.8,
        description="Achievable fraction of tensor peak on large transformer GEMMs.",
    )
    memory_efficiency: Fraction = Field(
        default=0.8, description="Achievable fraction of HBM bandwidth for streaming kernels."
    )
    fp8_gemm_efficiency: Fraction | None = Field(
        default=None,
        description="Achievable fraction of the FP8 tensor peak on large GEMMs (the FP8 MAMF / "
        "fp8_tflops); None: gemm_efficiency.",
    )
    supports_bf16: bool = Field(default=True, description="False for V100 (fp16 only).")
    source: str = Field(default="", description="Where the figures come from.")
    # Software-stack factors: None = the cost model's defaults for Megatron-LM's fused kernels
    # (solver/costmodel/constants.py); a calibration measured on another stack (the eager
    # PyTorch runner of `shardwise validate`) sets them (solver/profile/calibrate.py).
    gemm_realization: Fraction | None = Field(
        default=None,
        description="Fraction of gemm_efficiency a real step realises; None: "
        "GEMM_REALIZATION_FRACTION.",
    )
    elementwise_traffic_factor: PositiveFloat | None = Field(
        default=None,
        description="HBM traffic of elementwise kernels relative to Megatron's fused ones; "
        "None: 1.",
    )
    backward_elementwise_factor: PositiveFloat | None = Field(
        default=None,
        description="Backward / forward elementwise traffic; None: BACKWARD_ELEMENTWISE_FACTOR.",
    )
    kernel_launch_us: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="Host time to issue one operator group; a pass takes at least its groups' "
        "issue time.  None: never host-bound.",
    )
    optimizer_efficiency: Fraction | None = Field(
        default=None,
        description="Optimizer step rate / the HBM streaming rate; None: 1 (one fused pass).",
    )
    attention_efficiency: Fraction | None = Field(
        default=None,
        description="Fused (flash) attention forward: achieved fraction of the 16-bit dense "
        "peak on the FLOPs the kernel executes (causal: half the s x s square).  None: priced "
        "like a GEMM (gemm_efficiency x realisation).",
    )
    attention_backward_efficiency: Fraction | None = Field(
        default=None,
        description="Fused (flash) attention backward, same convention (its executed FLOPs are "
        "2.5x the forward's: the scores are recomputed).  None: attention_efficiency.",
    )
    grad_accumulation_bytes_per_param: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="HBM bytes per parameter per micro-batch spent adding each micro-batch's "
        "weight gradient into the accumulated one (autograd with bf16 gradients: 6, read both "
        "and write); None: 0, the add is fused into the weight-gradient GEMM (Megatron-LM "
        "gradient_accumulation_fusion).",
    )
    gemm_table: GemmTable | None = Field(
        default=None,
        description="Measured per-shape GEMM rates, rows [m, k, n, TFLOP/s] of (m x k) @ (k x n) "
        "in the 16-bit profile dtype; when set, GEMM groups run at the table's rate for their "
        "shape instead of peak x gemm_efficiency (solver/costmodel/compute.py "
        "gemm_rate_tflops).  None: the catalog formula.",
    )


class Link(_Spec):
    """An intra-node interconnect (per GPU, per direction)."""

    kind: Literal["nvswitch", "nvlink", "pcie", "xgmi"] = Field(
        description="nvswitch: all-to-all; nvlink: point links/bridges; pcie: through the host."
    )
    bandwidth_GBps: PositiveFloat = Field(description="Per-GPU bandwidth, GB/s per direction.")
    latency_us: Annotated[float, Field(ge=0)] = Field(
        default=3.0, description="Per-message latency."
    )


class Nic(_Spec):
    """Scale-out network interfaces of one node."""

    count: PositiveInt = Field(description="Compute NICs per node.")
    bandwidth_GBps: PositiveFloat = Field(description="Per-NIC bandwidth, GB/s per direction.")
    latency_us: Annotated[float, Field(ge=0)] = Field(
        default=5.0, description="Per-message latency."
    )


class Pool(_Spec):
    """A homogeneous group of nodes."""

    name: str = Field(description="Pool name; nodes are named '<pool>-<index>'.")
    gpu: str | GPUSpec = Field(description="A catalog GPU name or an inline GPU spec.")
    nodes: PositiveInt = Field(description="Number of nodes.")
    gpus_per_node: PositiveInt = Field(description="GPUs per node.")
    intra_node: Link = Field(description="GPU-to-GPU link inside a node.")
    nvlink_domain_nodes: PositiveInt = Field(
        default=1,
        description="Nodes sharing one NVLink domain (1 for DGX; 18 for a GB200 NVL72 rack).",
    )
    nic: Nic = Field(description="Scale-out NICs per node.")
    cost_per_gpu_hour: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Price per GPU-hour, for min_cost objectives."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c in v for c in " /"):
            raise ValueError(f"must be a non-empty name without spaces or '/', got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self) -> Pool:
        # NVLink domains are whole groups of nodes: a TP group may span the nodes of one domain.
        if self.nodes % self.nvlink_domain_nodes:
            raise ValueError(
                f"nvlink_domain_nodes: must divide nodes={self.nodes}, got {self.nvlink_domain_nodes}"
            )
        return self

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def gpu_name(self) -> str:
        return self.gpu if isinstance(self.gpu, str) else self.gpu.name


class FabricLink(_Spec):
    """Bandwidth/latency between two pools (default: the slower NIC of the two)."""

    pools: tuple[str, str] = Field(description="The two pool names (may be equal).")
    bandwidth_GBps: PositiveFloat = Field(description="Per-GPU bandwidth, GB/s per direction.")
    latency_us: Annotated[float, Field(ge=0)] = Field(default=5.0, description="Latency.")


class Cluster(_Spec):
    """A cluster: pools of nodes plus optional inter-pool fabric entries."""

    name: str = Field(description="Cluster name.")
    pools: list[Pool] = Field(min_length=1, description="Homogeneous node pools.")
    fabric: list[FabricLink] = Field(default_factory=list, description="Inter-pool links.")
    calibration: str | None = Field(
        default=None,
        description="Path (relative to the cluster file, or a name under instances/calibration/) "
        "of a calibration YAML overriding GPU efficiency factors and link alpha-beta.",
    )

    @model_validator(mode="after")
    def _check(self) -> Cluster:
        names = [p.name for p in self.pools]
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise ValueError(f"pools[{i}].name: duplicate pool name, got {n!r}")
            seen.add(n)
        pairs: set[frozenset[str]] = set()
        for i, f in enumerate(self.fabric):
            for n in f.pools:
                if n not in seen:
                    raise ValueError(
                        f"fabric[{i}].pools: must name pools of this cluster {names}, got {n!r}"
                    )
            pair = frozenset(f.pools)
            if pair in pairs:
                raise ValueError(
                    f"fabric[{i}].pools: duplicate entry for this pair of pools, got {list(f.pools)}"
                )
            pairs.add(pair)
        return self

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def num_gpus(self) -> int:
        return sum(p.num_gpus for p in self.pools)


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------
Recompute = Literal["none", "selective", "full"]
Schedule = Literal["1f1b", "interleaved"]
Precision = Literal["bf16", "fp16", "fp8"]
#: The attention kernel: ``flash`` (FlashAttention-2/3, cuDNN fused attention, PyTorch SDPA:
#: the s x s scores never reach HBM) or ``unfused`` (Megatron-LM 2021: scores, softmax and
#: dropout as separate kernels over an s x s tensor in HBM).
AttentionKernel = Literal["flash", "unfused"]
#: A dropout probability: 0 (no dropout, today's LLM pre-training) up to, not including, 1.
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]


def _all_recompute() -> list[Recompute]:
    return ["none", "selective", "full"]


def _all_schedules() -> list[Schedule]:
    return ["1f1b", "interleaved"]


class TrainingWorkload(_Spec):
    """A training job: global batch, sequence length, numerics and allowed knobs."""

    kind: Literal["training"] = Field(description="Discriminator.")
    global_batch_size: PositiveInt = Field(description="Sequences per optimizer step.")
    sequence_length: PositiveInt = Field(description="Tokens per sequence.")
    precision: Precision = Field(default="bf16", description="Compute precision of GEMMs.")
    optimizer: Literal["adam"] = Field(default="adam", description="Optimizer.")
    memory_policy: Literal["megatron_bf16", "amp_fp16", "pure_bf16"] = Field(
        default="megatron_bf16",
        description="Bytes of model state per parameter: megatron_bf16 18, amp_fp16 16, pure_bf16 8.",
    )
    zero_stage: int | list[int] = Field(
        default=1,
        description="ZeRO stage 0..3 (1 = Megatron distributed optimizer), or a list to choose from.",
    )
    overlap_grad_reduce: bool = Field(
        default=True, description="DP gradient reduction overlaps the backward pass."
    )
    attention: AttentionKernel = Field(
        default="flash",
        description="Attention kernel: flash (fused, no s x s tensor stored; today's default) "
        "or unfused (Megatron-LM 2021: scores, softmax and dropout in HBM).",
    )
    elementwise_kernels: Literal["fused", "eager"] = Field(
        default="fused",
        description="Norms, RoPE, SwiGLU and the loss as fused kernels (Megatron-Core / "
        "Transformer Engine, torch.compile) or as PyTorch eager op sequences (Hugging Face "
        "transformers, torchtitan without compile): eager moves several times the bytes.",
    )
    grad_buffers: Literal["persistent", "on_demand"] = Field(
        default="persistent",
        description="persistent: gradient buffers live through the whole step (Megatron's "
        "contiguous main-grad buffer, DeepSpeed), so they add to the activations; on_demand: "
        "gradients are allocated in the backward and freed by zero_grad(set_to_none=True) "
        "(PyTorch's default: torchtitan, Hugging Face), so with one micro-batch per step the "
        "peak is the larger of activations and gradients, not their sum.",
    )
    recompute_early_stop: bool = Field(
        default=True,
        description="Full recompute stops once every tensor the backward needs is rebuilt, so "
        "a block's last GEMM (MLP down-projection) and its all-reduce are not recomputed: "
        "PyTorch's non-reentrant torch.utils.checkpoint (torchtitan, Hugging Face).  False: "
        "the whole forward is recomputed (Megatron-LM's reentrant checkpoint).",
    )
    dropout: DropoutRate = Field(
        default=0.0,
        description="Attention- and hidden-dropout probability (0 for today's LLM pre-training; "
        "0.1 in Megatron-LM 2021).  Above 0, dropout masks are stored and written.",
    )
    recompute: list[Recompute] = Field(
        default_factory=_all_recompute,
        min_length=1,
        description="Allowed activation recomputation options.",
    )
    micro_batch_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [1, 2, 4], min_length=1, description="Allowed micro-batch sizes."
    )
    schedules: list[Schedule] = Field(
        default_factory=_all_schedules, min_length=1, description="Allowed schedules."
    )
    sequence_parallel: list[bool] = Field(
        default_factory=lambda: [True, False],
        min_length=1,
        description="Allowed Megatron sequence-parallel settings (only meaningful with TP > 1).",
    )
    objective: Literal["max_throughput", "min_cost"] = Field(
        default="max_throughput", description="What the planner optimises."
    )

    @field_validator("zero_stage")
    @classmethod
    def _zero(cls, v: int | list[int]) -> int | list[int]:
        stages = v if isinstance(v, list) else [v]
        if not stages:
            raise ValueError("must list at least one ZeRO stage, got []")
        for s in stages:
            if s not in (0, 1, 2, 3):
                raise ValueError(f"must be 0, 1, 2 or 3, got {s}")
        return v

    @property
    def zero_stages(self) -> list[int]:
        return self.zero_stage if isinstance(self.zero_stage, list) else [self.zero_stage]


class InferenceWorkload(_Spec):
    """An inference deployment: prompt/output lengths, concurrency, SLOs."""

    kind: Literal["inference"] = Field(description="Discriminator.")
    prompt_tokens: PositiveInt = Field(description="Prompt (prefill) tokens per request.")
    output_tokens: PositiveInt = Field(description="Generated tokens per request.")
    batch_size: PositiveInt | list[PositiveInt] = Field(
        default=1, description="Concurrent sequences per replica, or a list to choose from."
    )
    precision: Precision = Field(default="bf16", description="Weights/compute precision.")
    kv_cache_precision: Precision | None = Field(
        default=None, description="KV-cache element type (default: same as precision)."
    )
    attention: AttentionKernel = Field(
        default="flash",
        description="Prefill attention kernel: flash (fused; every serving engine) or unfused.",
    )
    ttft_ms: PositiveFloat | None = Field(default=None, description="Time-to-first-token SLO.")
    tpot_ms: PositiveFloat | None = Field(default=None, description="Time-per-output-token SLO.")
    objective: Literal["max_throughput", "min_latency", "min_gpus", "min_cost"] = Field(
        default="max_throughput", description="What the planner optimises."
    )
    target_throughput_tokens_per_s: PositiveFloat | None = Field(
        default=None, description="Required output tokens/s (for min_gpus / min_cost)."
    )

    @property
    def batch_sizes(self) -> list[int]:
        return self.batch_size if isinstance(self.batch_size, list) else [self.batch_size]

    @model_validator(mode="after")
    def _check(self) -> InferenceWorkload:
        if isinstance(self.batch_size, list) and not self.batch_size:
            raise ValueError("batch_size: must list at least one batch size, got []")
        if (
            self.objective in ("min_gpus", "min_cost")
            and self.target_throughput_tokens_per_s is None
        ):
            raise ValueError(
                f"target_throughput_tokens_per_s: required when objective is {self.objective!r}, got None"
            )
        return self


Workload = Annotated[TrainingWorkload | InferenceWorkload, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------
# Calibration (optional overrides produced by `shardwise profile`)
# --------------------------------------------------------------------------------------------
class Calibration(_Spec):
    """Measured efficiency factors and link alpha-beta, overriding catalog defaults."""

    gpu: str = Field(description="GPU catalog name this calibration applies to.")
    gemm_efficiency: Fraction | None = Field(default=None, description="Measured GEMM efficiency.")
    memory_efficiency: Fraction | None = Field(default=None, description="Measured HBM efficiency.")
    intra_node_bandwidth_GBps: PositiveFloat | None = Field(
        default=None, description="Fitted all-reduce bus bandwidth inside a node."
    )
    intra_node_latency_us: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Fitted per-collective latency inside a node."
    )
    gemm_realization: Fraction | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    elementwise_traffic_factor: PositiveFloat | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    backward_elementwise_factor: PositiveFloat | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    kernel_launch_us: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    optimizer_efficiency: Fraction | None = Field(
        default=None, description="Measured optimizer step rate / HBM streaming rate."
    )
    attention_efficiency: Fraction | None = Field(
        default=None, description="Measured fused-attention forward efficiency (see GPUSpec)."
    )
    attention_backward_efficiency: Fraction | None = Field(
        default=None, description="Measured fused-attention backward efficiency (see GPUSpec)."
    )
    grad_accumulation_bytes_per_param: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="From the measured stack's gradient accumulation (see GPUSpec).",
    )
    gemm_table: GemmTable | None = Field(
        default=None,
        description="Measured per-shape GEMM rates [m, k, n, TFLOP/s] (see GPUSpec).",
    )
    measured: dict[str, Any] = Field(default_factory=dict, description="Raw measurements.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Date, driver, versions.")


# --------------------------------------------------------------------------------------------
# Plan (output)
# --------------------------------------------------------------------------------------------
Device = tuple[str, int]


class Stage(_Spec):
    """One pipeline stage: a contiguous range of blocks on one TP group per replica."""

    first_layer: NonNegInt | None = Field(default=None, description="First block (inclusive).")
    last_layer: NonNegInt | None = Field(default=None, description="Last block (inclusive).")
    chunks: list[tuple[NonNegInt, NonNegInt]] | None = Field(
        default=None, description="Interleaved schedule: one [first, last] range per virtual stage."
    )
    pool: str = Field(description="Pool whose GPUs run this stage.")
    tp: PositiveInt = Field(description="Tensor-parallel degree.")
    devices: list[list[Device]] = Field(
        description="Per replica, the TP group's [node, gpu] list (node = '<pool>-<index>')."
    )

    @model_validator(mode="after")
    def _check(self) -> Stage:
        if self.chunks is None and (self.first_layer is None or self.last_layer is None):
            raise ValueError(
                "first_layer: give first_layer and last_layer, or chunks, "
                f"got first_layer={self.first_layer}, last_layer={self.last_layer}"
            )
        if self.chunks is not None and (
            self.first_layer is not None or self.last_layer is not None
        ):
            raise ValueError(
                "chunks: give either chunks or first_layer/last_layer, not both, "
                f"got chunks={[list(c) for c in self.chunks]} and "
                f"first_layer={self.first_layer}, last_layer={self.last_layer}"
            )
        if self.chunks is not None and not self.chunks:
            raise ValueError("chunks: must list at least one [first, last] range, got []")
        for i, (f, last) in enumerate(self.layer_ranges):
            if last < f:
                field = "last_layer" if self.chunks is None else f"chunks[{i}]"
                raise ValueError(f"{field}: last layer must be >= first layer {f}, got {last}")
        return self

    @property
    def layer_ranges(self) -> list[tuple[int, int]]:
        if self.chunks is not None:
            return [(int(a), int(b)) for a, b in self.chunks]
        assert self.first_layer is not None and self.last_layer is not None
        return [(self.first_layer, self.last_layer)]

    @property
    def num_layers(self) -> int:
        return sum(b - a + 1 for a, b in self.layer_ranges)


class ReplicaGroup(_Spec):
    """``count`` identical pipeline replicas."""

    count: PositiveInt = Field(description="Number of identical replicas (DP degree of the group).")
    micro_batch_size: PositiveInt | None = Field(default=None, description="Training micro-batch.")
    num_micro_batches: PositiveInt | None = Field(
        default=None, description="Micro-batches per step per replica (training), or per batch."
    )
    batch_size: PositiveInt | None = Field(
        default=None, description="Inference: concurrent sequences per replica."
    )
    schedule: Schedule = Field(default="1f1b", description="Pipeline schedule.")
    virtual_stages: PositiveInt = Field(default=1, description="Interleaving chunks per stage.")
    recompute: Recompute = Field(default="none", description="Activation recomputation.")
    zero_stage: int = Field(default=0, ge=0, le=3, description="ZeRO stage.")
    sequence_parallel: bool = Field(default=False, description="Megatron sequence parallelism.")
    stages: list[Stage] = Field(min_length=1, description="Pipeline stages in order.")

    @property
    def pp(self) -> int:
        return len(self.stages)


class SolverInfo(_Spec):
    """Facts about the solve that produced a plan."""

    model_config = ConfigDict(allow_inf_nan=True)

    status: str = Field(description="OPTIMAL, FEASIBLE, INFEASIBLE, INVALID_INPUT, MODEL_ERROR.")
    objective: float | None = Field(default=None, description="Objective in user units.")
    bound: float | None = Field(default=None, description="Best proven bound, user units.")
    gap: float | None = Field(default=None, description="Relative gap |obj - bound| / |obj|.")
    time_s: float | None = Field(default=None, description="Wall time of the solve.")
    ortools_version: str | None = Field(default=None, description="OR-Tools version.")
    seed: int | None = Field(default=None, description="Random seed.")
    message: str | None = Field(default=None, description="Explanation (infeasibility etc.).")


class Plan(_Spec):
    """A concrete, launchable parallelisation plan."""

    model_config = ConfigDict(allow_inf_nan=True)

    kind: Literal["training", "inference"] = Field(description="Workload kind.")
    replica_groups: list[ReplicaGroup] = Field(min_length=1, description="Replica groups.")
    predicted: dict[str, float] = Field(default_factory=dict, description="Planner's prediction.")
    solver: SolverInfo | None = Field(default=None, description="Solver facts.")

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if self.kind == "training" and len(self.replica_groups) != 1:
            raise ValueError(
                f"replica_groups: a training plan has exactly one replica group, got {len(self.replica_groups)}"
            )
        return self
