"""Input and output schemas (pydantic v2, frozen, ``extra="forbid"``).

Field names carry their unit: ``_GB`` (10^9 bytes), ``_GBps`` (GB/s *per direction*),
``_us``, ``_ms``, ``_s``, ``_tflops``.  Vendor "bidirectional" link figures are halved in the
catalog.  Every cross-reference is validated here so that the cost model, the evaluator and the
CP-SAT back-end can trust their inputs.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import MAX_SEED, MAX_TIME_LIMIT_S, MAX_WORKERS, SpecError

__all__ = [
    "MAX_SEED",
    "MAX_TIME_LIMIT_S",
    "MAX_WORKERS",
    "RANGES",
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
    "check_spec_arguments",
]

# --------------------------------------------------------------------------------------------
# Input ranges and strict scalars
# --------------------------------------------------------------------------------------------
# Every count, size and rate of an input has a documented range (README "Input ranges"): wide
# enough for any machine or model built so far and a long way beyond, narrow enough that what
# the cost model derives from it stays a modest finite number, so the CP model's integer
# coefficients stay far inside int64.  A bandwidth of 1e-300 GB/s or a billion nodes is a typo
# to report (naming the field and the value), not an instance to build.
MAX_LAYERS = 1_024  #: transformer blocks (the deepest published LLMs have ~130)
MAX_WIDTH = 262_144  #: hidden_size and head_dim (2^18; GPT-1T has 25 600)
MAX_FFN = 1_048_576  #: ffn_hidden_size and moe_ffn_hidden_size (2^20)
MAX_HEADS = 16_384  #: query and key/value heads (GPT-1T has 160)
MAX_VOCAB = 4_194_304  #: vocab_size (2^22; today's largest vocabularies are ~256k)
MAX_EXPERTS = 4_096  #: MoE experts per layer
MAX_NODES = 1_048_576  #: nodes of one pool
MAX_GPUS_PER_NODE = 1_024
MAX_GPUS = 1_048_576  #: GPUs of a whole cluster (2^20; such a cluster plans in < 0.5 GiB)
MAX_POOLS = 64
MAX_NICS = 64  #: scale-out NICs per node
MAX_TOKENS = 16_777_216  #: sequence_length, prompt_tokens, output_tokens (2^24)
MAX_BATCH = 16_777_216  #: global batch, micro-batches, inference batch, replicas (2^24)
MAX_CHOICES = 64  #: entries of an option list (micro_batch_sizes, batch_size, ...)
MAX_TOKENS_PER_STEP = 1_073_741_824  #: global_batch_size x sequence_length (2^30; Llama 3: 2^24)
MIN_BANDWIDTH_GBPS = 0.1  #: links, NICs, fabric: 100 MB/s, below 1 Gb Ethernet (0.125 GB/s)
MIN_HBM_GBPS = 10.0  #: GPU memory bandwidth (the slowest GPUs in use have ~300 GB/s)
MAX_BANDWIDTH_GBPS = 100_000.0  #: 100 TB/s (HBM3e is 8 TB/s, NVLink 5 0.9 TB/s)
MAX_LATENCY_US = 100_000.0  #: 100 ms per message or kernel launch
MIN_MEMORY_GB = 0.1
MAX_MEMORY_GB = 100_000.0  #: 100 TB per GPU (B200: 192 GB)
MIN_TFLOPS = 1.0  #: a 2016 P100 has 21 TFLOP/s of FP16
MIN_GEMM_RATE_TFLOPS = 1e-4  #: one measured GEMM (small shapes, or a CPU test run, are slow)
MAX_TFLOPS = 100_000.0  #: 100 PFLOP/s per GPU (B200 dense FP8: 4.5 PFLOP/s)
MAX_FACTOR = 100.0  #: the dimensionless stack factors (elementwise traffic, ...)
MAX_BYTES_PER_PARAM = 64.0
MAX_COST_PER_GPU_HOUR = 10_000.0  #: dollars
MAX_SLO_MS = 10_000_000.0  #: TTFT / TPOT targets (about 2.8 hours)
MAX_TARGET_TOKENS_PER_S = 1e12


def _int_input(v: Any) -> Any:
    """Refuse a Boolean or a string where a count belongs (``num_layers: true`` is not 1)."""
    if isinstance(v, bool | str | bytes) or getattr(getattr(v, "dtype", None), "kind", "") == "b":
        raise PydanticCustomError("int_type", "must be an integer")
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) >= 2**63:
        # 1e308 is integral, but no count is that large (pydantic would say 'cannot parse')
        raise PydanticCustomError("int_type", "must be an integer below 2^63")
    return v


def _float_input(v: Any) -> Any:
    """Refuse a Boolean or a string where a number belongs (ints are fine: ``450`` GB/s)."""
    if isinstance(v, bool | str | bytes) or getattr(getattr(v, "dtype", None), "kind", "") == "b":
        raise PydanticCustomError("float_type", "must be a number")
    return v


def _bool_input(v: Any) -> Any:
    """Accept only true or false (a YAML/JSON Boolean, or numpy's), never 'yes', 1 or 'true'."""
    if isinstance(v, bool):
        return v
    if getattr(getattr(v, "dtype", None), "kind", "") == "b":
        return bool(v)
    raise PydanticCustomError("bool_type", "must be true or false")


_INT = BeforeValidator(_int_input)
_FLOAT = BeforeValidator(_float_input)
#: ``true`` or ``false`` only.
Flag = Annotated[bool, BeforeValidator(_bool_input)]
PositiveInt = Annotated[int, _INT, Field(gt=0, le=MAX_BATCH)]
Fraction = Annotated[float, _FLOAT, Field(gt=0, le=1)]
Layers = Annotated[int, _INT, Field(gt=0, le=MAX_LAYERS)]
LayerIndex = Annotated[int, _INT, Field(ge=0, lt=MAX_LAYERS)]
Width = Annotated[int, _INT, Field(gt=0, le=MAX_WIDTH)]
FfnWidth = Annotated[int, _INT, Field(gt=0, le=MAX_FFN)]
Heads = Annotated[int, _INT, Field(gt=0, le=MAX_HEADS)]
Experts = Annotated[int, _INT, Field(gt=0, le=MAX_EXPERTS)]
Tokens = Annotated[int, _INT, Field(gt=0, le=MAX_TOKENS)]
Batch = Annotated[int, _INT, Field(gt=0, le=MAX_BATCH)]
Bandwidth = Annotated[float, _FLOAT, Field(ge=MIN_BANDWIDTH_GBPS, le=MAX_BANDWIDTH_GBPS)]
Latency = Annotated[float, _FLOAT, Field(ge=0, le=MAX_LATENCY_US)]
Tflops = Annotated[float, _FLOAT, Field(ge=MIN_TFLOPS, le=MAX_TFLOPS)]
Factor = Annotated[float, _FLOAT, Field(gt=0, le=MAX_FACTOR)]
BytesPerParam = Annotated[float, _FLOAT, Field(ge=0, le=MAX_BYTES_PER_PARAM)]
SloMs = Annotated[float, _FLOAT, Field(gt=0, le=MAX_SLO_MS)]
ZeroStage = Annotated[int, _INT, Field(ge=0, le=3)]
Price = Annotated[float, _FLOAT, Field(ge=0, le=MAX_COST_PER_GPU_HOUR)]
TokenRate = Annotated[float, _FLOAT, Field(gt=0, le=MAX_TARGET_TOKENS_PER_S)]
Int = Annotated[int, _INT]

#: The documented ranges, field by field (README "Input ranges and safe files" lists the same
#: numbers; tests/test_hostile.py keeps the two in step).
RANGES: dict[str, tuple[float, float]] = {
    "num_layers": (1, MAX_LAYERS),
    "hidden_size, head_dim": (1, MAX_WIDTH),
    "ffn_hidden_size, moe_ffn_hidden_size": (1, MAX_FFN),
    "num_attention_heads, num_kv_heads": (1, MAX_HEADS),
    "vocab_size": (0, MAX_VOCAB),
    "num_experts, experts_per_token": (1, MAX_EXPERTS),
    "pools (entries)": (1, MAX_POOLS),
    "nodes, nvlink_domain_nodes": (1, MAX_NODES),
    "gpus_per_node": (1, MAX_GPUS_PER_NODE),
    "GPUs per cluster": (1, MAX_GPUS),
    "nic.count": (1, MAX_NICS),
    "bandwidth_GBps (links, NICs, fabric)": (MIN_BANDWIDTH_GBPS, MAX_BANDWIDTH_GBPS),
    "memory_bandwidth_GBps (HBM)": (MIN_HBM_GBPS, MAX_BANDWIDTH_GBPS),
    "latency_us, kernel_launch_us": (0, MAX_LATENCY_US),
    "memory_GB": (MIN_MEMORY_GB, MAX_MEMORY_GB),
    "bf16_tflops, fp16_tflops, fp8_tflops, int8_tops, fp4_tflops": (MIN_TFLOPS, MAX_TFLOPS),
    "gemm_table rates (TFLOP/s)": (MIN_GEMM_RATE_TFLOPS, MAX_TFLOPS),
    "efficiencies, gemm_realization": (0, 1),
    "elementwise / backward factors": (0, MAX_FACTOR),
    "grad_accumulation_bytes_per_param": (0, MAX_BYTES_PER_PARAM),
    "cost_per_gpu_hour": (0, MAX_COST_PER_GPU_HOUR),
    "sequence_length, prompt_tokens, output_tokens": (1, MAX_TOKENS),
    "global_batch_size, micro-batch and batch sizes": (1, MAX_BATCH),
    "global_batch_size x sequence_length": (1, MAX_TOKENS_PER_STEP),
    "option lists (micro_batch_sizes, ...)": (1, MAX_CHOICES),
    "dropout": (0, 1),
    "ttft_ms, tpot_ms": (0, MAX_SLO_MS),
    "target_throughput_tokens_per_s": (0, MAX_TARGET_TOKENS_PER_S),
    "plan tp, count": (1, MAX_GPUS),
    "seed": (0, MAX_SEED),
    "workers": (1, MAX_WORKERS),
    "time_limit_s": (0, MAX_TIME_LIMIT_S),
}


def check_spec_arguments(**specs: Any) -> None:
    """Raise :class:`SpecError` naming the first argument that is not a validated spec.

    ``check_spec_arguments(model=m, cluster=c, workload=w)``: each value must be an instance
    of the spec class its name says (``workload``: training or inference), so a library entry
    point given a dict or a path fails with one line instead of an AttributeError deep inside.
    """
    expected: dict[str, tuple[type[BaseModel], ...]] = {
        "model": (Model,),
        "cluster": (Cluster,),
        "workload": (TrainingWorkload, InferenceWorkload),
        "plan": (Plan,),
    }
    for name, value in specs.items():
        kinds = expected[name]
        if not isinstance(value, kinds):
            raise SpecError(
                f"{name}: expected a {' or '.join(k.__name__ for k in kinds)} (load one with "
                f"solver.load_{name}), got {type(value).__name__}"
            )


#: One measured GEMM of a calibration's rate table: ``(m, k, n, tflops)`` for the product
#: ``(m x k) @ (k x n)`` (row-major operands, ``torch.matmul``) timed at ``tflops`` TFLOP/s.
GemmRate = tuple[
    PositiveInt,
    PositiveInt,
    PositiveInt,
    Annotated[float, _FLOAT, Field(ge=MIN_GEMM_RATE_TFLOPS, le=MAX_TFLOPS)],
]


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
GemmTable = Annotated[
    tuple[GemmRate, ...],
    Field(min_length=1, max_length=1_000_000),
    AfterValidator(_check_gemm_table),
]


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
    num_layers: Layers = Field(description="Number of transformer blocks.")
    hidden_size: Width = Field(description="Model (residual stream) width h.")
    ffn_hidden_size: FfnWidth = Field(
        description="MLP inner width (4h for GPT GeLU; ~8h/3 rounded for SwiGLU)."
    )
    num_attention_heads: Heads = Field(description="Query heads a.")
    num_kv_heads: Heads = Field(description="Key/value heads (= a for MHA, < a for GQA).")
    vocab_size: Annotated[int, _INT, Field(ge=0, le=MAX_VOCAB)] = Field(
        description="Vocabulary size; 0 means a bare block stack with no embedding or head."
    )
    mlp: Literal["gelu", "swiglu"] = Field(
        description="MLP kind: 2-matrix GeLU or 3-matrix SwiGLU."
    )
    tied_embeddings: Flag = Field(
        default=False, description="Input embedding and LM head share one matrix."
    )
    head_dim: Width | None = Field(
        default=None, description="Per-head width; default hidden_size / num_attention_heads."
    )
    learned_position_embeddings: Flag = Field(
        default=False,
        description="GPT-style learned position embedding table (sequence_length x h) on stage 0.",
    )
    num_experts: Experts | None = Field(default=None, description="MoE: experts per layer.")
    experts_per_token: Experts | None = Field(default=None, description="MoE: top-k routing.")
    moe_ffn_hidden_size: FfnWidth | None = Field(
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
    memory_GB: Annotated[float, _FLOAT, Field(ge=MIN_MEMORY_GB, le=MAX_MEMORY_GB)] = Field(
        description="Usable HBM/GDDR capacity, 10^9 bytes."
    )
    bf16_tflops: Tflops = Field(description="Dense BF16/FP16 tensor-core peak, TFLOP/s.")
    fp16_tflops: Tflops | None = Field(
        default=None, description="Dense FP16 peak if it differs from BF16 (V100 has no BF16)."
    )
    fp8_tflops: Tflops | None = Field(
        default=None, description="Dense FP8 peak, TFLOP/s; None if the GPU has no FP8."
    )
    int8_tops: Tflops | None = Field(
        default=None,
        description="Dense INT8 tensor-core peak, TOP/s (W8A8 int8 GEMMs); None if the GPU has "
        "no INT8 tensor cores.",
    )
    fp4_tflops: Tflops | None = Field(
        default=None,
        description="Dense FP4 (E2M1, block-scaled: NVFP4 / MXFP4) tensor-core peak, TFLOP/s; "
        "None if the GPU has no FP4 tensor cores.",
    )
    compute_capability: Annotated[float, _FLOAT, Field(ge=1.0, le=100.0)] | None = Field(
        default=None,
        description="CUDA compute capability (major.minor, e.g. 9.0 for H100), which the "
        "engines' quantized kernels are gated on (solver/costmodel/quant.py); None for "
        "non-NVIDIA GPUs.",
    )
    memory_bandwidth_GBps: Annotated[
        float, _FLOAT, Field(ge=MIN_HBM_GBPS, le=MAX_BANDWIDTH_GBPS)
    ] = Field(description="HBM bandwidth, GB/s.")
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
    supports_bf16: Flag = Field(default=True, description="False for V100 (fp16 only).")
    tdp_W: Annotated[float, _FLOAT, Field(gt=0.0, le=5000.0)] | None = Field(
        default=None,
        description="Default board power limit, W, at which the efficiencies above were measured.",
    )
    idle_power_W: Annotated[float, _FLOAT, Field(ge=0.0, le=5000.0)] | None = Field(
        default=None, description="Board power at idle, W (static + memory at rest)."
    )
    power_limit_W: Annotated[float, _FLOAT, Field(gt=0.0, le=5000.0)] | None = Field(
        default=None,
        description="Operating power cap, W, when below tdp_W (nvidia-smi -pl; e.g. 500 W "
        "H100s): compute-bound kernels run at a lower clock (solver/costmodel/compute.py "
        "power_clock_fraction).  None: tdp_W.",
    )
    source: str = Field(default="", description="Where the figures come from.")
    # Software-stack factors: None = the cost model's defaults for Megatron-LM's fused kernels
    # (solver/costmodel/constants.py); a calibration measured on another stack (the eager
    # PyTorch runner of `shardwise validate`) sets them (solver/profile/calibrate.py).
    gemm_realization: Fraction | None = Field(
        default=None,
        description="Fraction of gemm_efficiency a real step realises; None: "
        "GEMM_REALIZATION_FRACTION.",
    )
    elementwise_traffic_factor: Factor | None = Field(
        default=None,
        description="HBM traffic of elementwise kernels relative to Megatron's fused ones; "
        "None: 1.",
    )
    backward_elementwise_factor: Factor | None = Field(
        default=None,
        description="Backward / forward elementwise traffic; None: BACKWARD_ELEMENTWISE_FACTOR.",
    )
    kernel_launch_us: Latency | None = Field(
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
    flash2_attention_efficiency: Fraction | None = Field(
        default=None,
        description="The same for the FlashAttention-2 kernel (workload attention_kernel: "
        "flash2), forward.  None: attention_efficiency.",
    )
    flash2_attention_backward_efficiency: Fraction | None = Field(
        default=None,
        description="FlashAttention-2 backward.  None: flash2_attention_efficiency.",
    )
    grad_accumulation_bytes_per_param: BytesPerParam | None = Field(
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
    bandwidth_GBps: Bandwidth = Field(description="Per-GPU bandwidth, GB/s per direction.")
    latency_us: Latency = Field(default=3.0, description="Per-message latency.")


class Nic(_Spec):
    """Scale-out network interfaces of one node."""

    count: Annotated[int, _INT, Field(gt=0, le=MAX_NICS)] = Field(
        description="Compute NICs per node."
    )
    bandwidth_GBps: Bandwidth = Field(description="Per-NIC bandwidth, GB/s per direction.")
    latency_us: Latency = Field(default=5.0, description="Per-message latency.")


class Pool(_Spec):
    """A homogeneous group of nodes."""

    name: str = Field(description="Pool name; nodes are named '<pool>-<index>'.")
    gpu: str | GPUSpec = Field(description="A catalog GPU name or an inline GPU spec.")
    nodes: Annotated[int, _INT, Field(gt=0, le=MAX_NODES)] = Field(description="Number of nodes.")
    gpus_per_node: Annotated[int, _INT, Field(gt=0, le=MAX_GPUS_PER_NODE)] = Field(
        description="GPUs per node."
    )
    intra_node: Link = Field(description="GPU-to-GPU link inside a node.")
    nvlink_domain_nodes: Annotated[int, _INT, Field(gt=0, le=MAX_NODES)] = Field(
        default=1,
        description="Nodes sharing one NVLink domain (1 for DGX; 18 for a GB200 NVL72 rack).",
    )
    nic: Nic = Field(description="Scale-out NICs per node.")
    cost_per_gpu_hour: Price | None = Field(
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
    bandwidth_GBps: Bandwidth = Field(description="Per-GPU bandwidth, GB/s per direction.")
    latency_us: Latency = Field(default=5.0, description="Latency.")


class Cluster(_Spec):
    """A cluster: pools of nodes plus optional inter-pool fabric entries."""

    name: str = Field(description="Cluster name.")
    pools: list[Pool] = Field(
        min_length=1, max_length=MAX_POOLS, description="Homogeneous node pools."
    )
    fabric: list[FabricLink] = Field(default_factory=list, description="Inter-pool links.")
    calibration: str | None = Field(
        default=None,
        description="Path (relative to the cluster file, or a name under instances/calibration/) "
        "of a calibration YAML overriding GPU efficiency factors and link alpha-beta.",
    )

    @model_validator(mode="after")
    def _check(self) -> Cluster:
        total = sum(p.num_gpus for p in self.pools)
        if total > MAX_GPUS:
            # Refused here, before anything builds per-node or per-GPU structures.
            raise ValueError(
                f"pools: a cluster has at most {MAX_GPUS:,} GPUs, got {total:,} "
                "(nodes x gpus_per_node over all pools)"
            )
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
#: Activation recomputation.  ``selective``: Megatron-LM's (the attention core; with flash
#: attention nothing is left to recompute).  ``full``: every block rebuilt from its input.
#: ``selective_op``: torchtitan's per-op policy (``_save_list``: the attention kernel's output
#: and every second matmul output saved, the rest recomputed).  ``full_half``: full recompute
#: of every second block (torchtitan ``selective_ac_option: "2"``; Megatron-LM
#: ``--recompute-method block --recompute-num-layers L/2`` stores the same).  The last two are
#: opt-in: the default knob list is none/selective/full.
Recompute = Literal["none", "selective", "full", "selective_op", "full_half"]
Schedule = Literal["1f1b", "interleaved"]
Precision = Literal["bf16", "fp16", "fp8"]
#: KV-cache element type: a compute precision, or one of the two FP8 encodings named apart
#: (``fp8`` means ``fp8_e4m3``, as it does in vLLM, SGLang and TensorRT-LLM; ``fp8_e5m2``
#: trades mantissa for range).  Every FP8 encoding is one byte per element.
KvCachePrecision = Literal["bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"]
#: Serving quantization of the weights (and, for W8A8 / W4A4 formats, of the GEMM inputs):
#: ``none``; ``fp8`` W8A8 FP8 E4M3; ``int8`` W8A8 INT8 (SmoothQuant); ``int8_weight_only``
#: W8A16; ``int4_awq`` / ``int4_gptq`` W4A16 (group 128); ``nvfp4`` (E2M1 + an FP8 scale per
#: 16); ``mxfp4`` (E2M1 + an E8M0 scale per 32).  Bytes, peaks, GPUs and engines per format:
#: :data:`solver.costmodel.quant.FORMATS`.
Quantization = Literal[
    "none", "fp8", "int8", "int8_weight_only", "int4_awq", "int4_gptq", "nvfp4", "mxfp4"
]
#: The attention kernel: ``flash`` (FlashAttention-2/3, cuDNN fused attention, PyTorch SDPA:
#: the s x s scores never reach HBM) or ``unfused`` (Megatron-LM 2021: scores, softmax and
#: dropout as separate kernels over an s x s tensor in HBM).
AttentionKernel = Literal["flash", "unfused"]
#: A dropout probability: 0 (no dropout, today's LLM pre-training) up to, not including, 1.
DropoutRate = Annotated[float, _FLOAT, Field(ge=0.0, lt=1.0)]


def _all_recompute() -> list[Recompute]:
    return ["none", "selective", "full"]


def _all_schedules() -> list[Schedule]:
    return ["1f1b", "interleaved"]


class TrainingWorkload(_Spec):
    """A training job: global batch, sequence length, numerics and allowed knobs."""

    kind: Literal["training"] = Field(description="Discriminator.")
    global_batch_size: Batch = Field(description="Sequences per optimizer step.")
    sequence_length: Tokens = Field(description="Tokens per sequence.")
    precision: Precision = Field(default="bf16", description="Compute precision of GEMMs.")
    optimizer: Literal["adam"] = Field(default="adam", description="Optimizer.")
    memory_policy: Literal["megatron_bf16", "amp_fp16", "pure_bf16", "fsdp2_mixed"] = Field(
        default="megatron_bf16",
        description="Bytes of model state per parameter: megatron_bf16 18, amp_fp16 16, "
        "pure_bf16 8, fsdp2_mixed 16 (PyTorch FSDP2 MixedPrecisionPolicy over fp32 params: "
        "bf16 all-gathers, fp32 gradient reduce-scatters; torchtitan's default).",
    )
    zero_stage: Int | list[Int] = Field(
        default=1,
        description="ZeRO stage 0..3 (1 = Megatron distributed optimizer), or a list to choose from.",
    )
    overlap_grad_reduce: Flag = Field(
        default=True, description="DP gradient reduction overlaps the backward pass."
    )
    fp8_recipe: Literal["tensorwise", "rowwise", "delayed"] = Field(
        default="tensorwise",
        description="FP8 scaling (precision: fp8): tensorwise (one dynamic scale per tensor: "
        "torchao's tensorwise recipe, Transformer Engine current scaling), rowwise (torchao's "
        "rowwise recipe: every GEMM operand scaled per row along each GEMM's reduction "
        "dimension, CUTLASS rowwise GEMMs) or delayed (Transformer Engine delayed scaling, "
        "NeMo / Megatron-Core: the linears save their FP8-cast inputs for the backward).",
    )
    attention: AttentionKernel = Field(
        default="flash",
        description="Attention kernel: flash (fused, no s x s tensor stored; today's default) "
        "or unfused (Megatron-LM 2021: scores, softmax and dropout in HBM).",
    )
    attention_kernel: Literal["cudnn", "flash2"] = Field(
        default="cudnn",
        description="Which fused attention kernel (attention: flash): cudnn (cuDNN fused "
        "attention: Transformer Engine / Megatron-Core / NeMo, PyTorch SDPA where it prefers "
        "cuDNN; the GPU's attention_efficiency) or flash2 (FlashAttention-2: PyTorch SDPA's "
        "FLASH backend, first in its priority order through 2025, torchtitan on H100/H200; the "
        "GPU's flash2_attention_efficiency).",
    )
    elementwise_kernels: Literal["fused", "eager", "compiled_blocks"] = Field(
        default="fused",
        description="Norms, RoPE, SwiGLU and the loss as fused kernels (Megatron-Core / "
        "Transformer Engine, torch.compile) or as PyTorch eager op sequences (Hugging Face "
        "transformers, torchtitan without compile): eager moves several times the bytes. "
        "compiled_blocks: each block compiled on its own, the final norm, LM head and loss "
        "eager (torchtitan with compile).",
    )
    compiled_loss: Flag = Field(
        default=False,
        description="The cross entropy runs under torch.compile: the fp32 upcast, log-softmax "
        "and loss fused into reductions (torchtitan's build_cross_entropy_loss with "
        "training.compile, since torchtitan bbb1b61, April 2025); false: eager unless "
        "elementwise_kernels is fused.",
    )
    fused_norm: Flag = Field(
        default=False,
        description="The RMSNorms run as one fused kernel that saves only its 16-bit input "
        "and the per-row rstd even where the rest of the block is eager (torchtitan's "
        "norm_type = fused_rmsnorm, a Triton kernel); false: elementwise_kernels decides.",
    )
    grad_buffers: Literal["persistent", "on_demand"] = Field(
        default="persistent",
        description="persistent: gradient buffers live through the whole step (Megatron's "
        "contiguous main-grad buffer, DeepSpeed), so they add to the activations; on_demand: "
        "gradients are allocated in the backward and freed by zero_grad(set_to_none=True) "
        "(PyTorch's default: torchtitan, Hugging Face), so with one micro-batch per step the "
        "peak is the larger of activations and gradients, not their sum.",
    )
    recompute_early_stop: Flag = Field(
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
    micro_batch_sizes: list[Batch] = Field(
        default_factory=lambda: [1, 2, 4],
        min_length=1,
        max_length=MAX_CHOICES,
        description="Allowed micro-batch sizes.",
    )
    schedules: list[Schedule] = Field(
        default_factory=_all_schedules, min_length=1, description="Allowed schedules."
    )
    sequence_parallel: list[Flag] = Field(
        default_factory=lambda: [True, False],
        min_length=1,
        max_length=MAX_CHOICES,
        description="Allowed Megatron sequence-parallel settings (only meaningful with TP > 1).",
    )
    objective: Literal["max_throughput", "min_cost"] = Field(
        default="max_throughput", description="What the planner optimises."
    )
    tp_comm_overlap: Literal["none", "megatron_userbuffers", "async_tp"] = Field(
        default="none",
        description="How the sequence-parallel TP all-gathers / reduce-scatters overlap the "
        "GEMMs (solver/costmodel/tp_overlap.py): none (both engines' default: Megatron-LM "
        "--tp-comm-overlap off, torchtitan enable_async_tensor_parallel off), "
        "megatron_userbuffers (Transformer Engine userbuffers, Megatron-LM --tp-comm-overlap, "
        "NeMo ub_tp_comm_overlap) or async_tp (torchtitan async TP: torch.compile "
        "micro-pipelining over SymmetricMemory; needs elementwise_kernels: compiled_blocks).  "
        "Applies where TP > 1 with sequence parallelism; elsewhere nothing overlaps.",
    )

    @model_validator(mode="after")
    def _async_tp_needs_compile(self) -> TrainingWorkload:
        if self.tp_comm_overlap == "async_tp" and self.elementwise_kernels != "compiled_blocks":
            raise ValueError(
                "tp_comm_overlap: async_tp needs torch.compile (elementwise_kernels: "
                f"compiled_blocks; torchtitan refuses it without --training.compile), got "
                f"elementwise_kernels {self.elementwise_kernels}"
            )
        return self

    @field_validator("zero_stage")
    @classmethod
    def _zero(cls, v: int | list[int]) -> int | list[int]:
        stages = v if isinstance(v, list) else [v]
        if not stages:
            raise ValueError("must list at least one ZeRO stage, got []")
        if len(stages) > MAX_CHOICES:
            raise ValueError(f"must list at most {MAX_CHOICES} ZeRO stages, got {len(stages)}")
        for s in stages:
            if s not in (0, 1, 2, 3):
                raise ValueError(f"must be 0, 1, 2 or 3, got {s}")
        return v

    @model_validator(mode="after")
    def _tokens_per_step(self) -> TrainingWorkload:
        tokens = self.global_batch_size * self.sequence_length
        if tokens > MAX_TOKENS_PER_STEP:
            raise ValueError(
                f"global_batch_size: global_batch_size x sequence_length must be <= "
                f"{MAX_TOKENS_PER_STEP:,} tokens per step, got {self.global_batch_size:,} x "
                f"{self.sequence_length:,} = {tokens:,}"
            )
        return self

    @property
    def zero_stages(self) -> list[int]:
        return self.zero_stage if isinstance(self.zero_stage, list) else [self.zero_stage]


#: Most requests/s a serving workload may name (``request_rate``): far above any fleet.
MAX_REQUEST_RATE = 1e9
#: Requests per second of a serving workload's arrival process (finite, > 0).
RequestRate = Annotated[float, _FLOAT, Field(gt=0, le=MAX_REQUEST_RATE)]
#: A latency percentile an SLO applies to, in (0, 100].
Percentile = Annotated[float, _FLOAT, Field(gt=0, le=100)]
#: Most decode steps per schedule (``num_scheduler_steps``, vLLM multi-step scheduling): an
#: input range, not an engine limit (vLLM has none; its multi-step benchmarks use 8-10, PR #7000).
MAX_SCHEDULER_STEPS = 64
SchedulerSteps = Annotated[int, _INT, Field(ge=1, le=MAX_SCHEDULER_STEPS)]


class LengthDistribution(_Spec):
    """Token lengths of a serving workload's requests (``solver.serving.Lengths``): ``fixed``
    (``value``), ``uniform`` (integers ``low``..``high``), ``lognormal`` (expectation
    ``mean``, log-space ``sigma``, clipped to ``max``) or ``file`` (a ``column`` of a CSV/JSONL
    file of token counts at ``path``, resampled; relative to the workload file's folder)."""

    kind: Literal["fixed", "uniform", "lognormal", "file"] = Field(description="Distribution.")
    value: Tokens | None = Field(default=None, description="fixed: the length.")
    low: Tokens | None = Field(default=None, description="uniform: smallest length.")
    high: Tokens | None = Field(default=None, description="uniform: largest length.")
    mean: Annotated[float, _FLOAT, Field(gt=0, le=MAX_TOKENS)] | None = Field(
        default=None, description="lognormal: expectation, tokens."
    )
    sigma: Annotated[float, _FLOAT, Field(ge=0, le=10)] | None = Field(
        default=None, description="lognormal: standard deviation of the log."
    )
    max: Tokens | None = Field(default=None, description="lognormal: clip samples to this.")
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="file: CSV (header row) or JSONL of token counts."
    )
    column: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="file: the column to resample."
    )

    @model_validator(mode="after")
    def _check(self) -> LengthDistribution:
        needs = {
            "fixed": ("value",),
            "uniform": ("low", "high"),
            "lognormal": ("mean", "sigma"),
            "file": ("path", "column"),
        }[self.kind]
        allowed = set(needs) | ({"max"} if self.kind == "lognormal" else set())
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for kind {self.kind}, got None")
        for name in ("value", "low", "high", "mean", "sigma", "max", "path", "column"):
            if name not in allowed and getattr(self, name) is not None:
                raise ValueError(f"{name}: not a parameter of kind {self.kind}")
        if self.kind == "uniform" and self.high is not None and self.low is not None:
            if self.high < self.low:
                raise ValueError(f"high: must be >= low ({self.low}), got {self.high}")
        return self


class InferenceWorkload(_Spec):
    """An inference deployment: prompt/output lengths, concurrency, SLOs."""

    kind: Literal["inference"] = Field(description="Discriminator.")
    prompt_tokens: Tokens = Field(description="Prompt (prefill) tokens per request.")
    output_tokens: Tokens = Field(description="Generated tokens per request.")
    batch_size: Batch | Annotated[list[Batch], Field(max_length=MAX_CHOICES)] = Field(
        default=1, description="Concurrent sequences per replica, or a list to choose from."
    )
    precision: Precision = Field(default="bf16", description="Weights/compute precision.")
    kv_cache_precision: KvCachePrecision | None = Field(
        default=None,
        description="KV-cache element type (default: same as precision); fp8 is fp8_e4m3.",
    )
    quantization: Quantization = Field(
        default="none",
        description="Serving quantization of the weights (see Quantization): none, fp8, int8, "
        "int8_weight_only, int4_awq, int4_gptq, nvfp4, mxfp4.  With a format, precision names "
        "the 16-bit type of activations and unquantized tensors (bf16 or fp16); precision: fp8 "
        "alone means quantization fp8.",
    )
    attention: AttentionKernel = Field(
        default="flash",
        description="Prefill attention kernel: flash (fused; every serving engine) or unfused.",
    )
    serving_engine: Literal[
        "auto", "vllm", "vllm-0.6", "sglang", "sglang-0.3", "trtllm", "trtllm-0.9", "roofline"
    ] = Field(
        default="auto",
        description=(
            "Which engine's step model prices the plan (solver/costmodel/serving_engine.py): "
            "vllm, sglang or trtllm (per-step overhead, CUDA graphs, paged decode attention, "
            "small-M GEMMs, custom all-reduce, sampling), or roofline (the pure roofline).  "
            "auto: vllm, the default inference engine.  Versioned profiles of older runtimes: "
            "vllm-0.6 (V0 engine, no prefill CUDA graphs), sglang-0.3 (no overlap scheduler: host "
            "time on every step), trtllm-0.9 (the session runtime)."
        ),
    )
    gpu_memory_utilization: Fraction = Field(
        default=0.9,
        description=(
            "Fraction (0, 1] of each GPU's memory the serving engine may use: weights, working "
            "set and engine overhead, the rest is its paged KV-cache pool.  Default vLLM's 0.9 "
            "(CacheConfig.gpu_memory_utilization, vllm/config/cache.py at commit c1d86421; "
            "later main, commit 002f10e0, has 0.92)."
        ),
    )
    max_num_batched_tokens: Tokens | None = Field(
        default=None,
        description=(
            "Tokens of the engine's largest forward (a chunked-prefill step), which sizes its "
            "activation working set; default: one micro-batch's prompts in one forward (static "
            "batching, as prefill is priced)."
        ),
    )
    ttft_ms: SloMs | None = Field(default=None, description="Time-to-first-token SLO.")
    tpot_ms: SloMs | None = Field(default=None, description="Time-per-output-token SLO.")
    # Serving traffic (``shardwise plan-serving`` / ``simulate``; their options override these).
    request_rate: RequestRate | None = Field(
        default=None, description="Mean arrival rate of requests, requests/s (arrival poisson)."
    )
    arrival: Literal["poisson", "trace"] = Field(
        default="poisson",
        description="Arrival process: poisson (at request_rate) or trace (the trace file's "
        "timestamps and lengths).",
    )
    trace: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="arrival trace: CSV (timestamp,prompt_tokens,output_tokens) or JSONL file; "
        "a relative path is relative to the workload file's folder.",
    )
    prompt_tokens_distribution: LengthDistribution | None = Field(
        default=None, description="Prompt lengths of the traffic (default: fixed prompt_tokens)."
    )
    output_tokens_distribution: LengthDistribution | None = Field(
        default=None, description="Output lengths of the traffic (default: fixed output_tokens)."
    )
    slo_percentile: Percentile = Field(
        default=99.0, description="Percentile (0, 100] that ttft_ms and tpot_ms apply to."
    )
    num_scheduler_steps: SchedulerSteps = Field(
        default=1,
        description="Decode steps per schedule (vLLM 0.5.5-0.7 --num-scheduler-steps, multi-step "
        "scheduling): a decode batch runs this many steps and streams them as one chunk; 1: "
        "every step is scheduled (solver/serving/simulator.py).",
    )
    objective: Literal["max_throughput", "min_latency", "min_gpus", "min_cost"] = Field(
        default="max_throughput", description="What the planner optimises."
    )
    target_throughput_tokens_per_s: TokenRate | None = Field(
        default=None, description="Required output tokens/s (for min_gpus / min_cost)."
    )

    @property
    def batch_sizes(self) -> list[int]:
        return self.batch_size if isinstance(self.batch_size, list) else [self.batch_size]

    @model_validator(mode="after")
    def _check_traffic(self) -> InferenceWorkload:
        if self.arrival == "trace" and self.trace is None:
            raise ValueError("trace: arrival trace needs a trace file, got None")
        if self.arrival == "poisson" and self.trace is not None:
            raise ValueError(f"arrival: a trace file is given ({self.trace}); set arrival: trace")
        if self.arrival == "trace" and self.request_rate is not None:
            raise ValueError(
                f"request_rate: the trace sets the arrivals (arrival: trace), got {self.request_rate}"
            )
        for name in ("prompt_tokens_distribution", "output_tokens_distribution"):
            if self.arrival == "trace" and getattr(self, name) is not None:
                raise ValueError(f"{name}: the trace gives the lengths (arrival: trace)")
        return self

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
        if self.precision == "fp8" and self.quantization not in ("none", "fp8"):
            raise ValueError(
                f"quantization: precision fp8 already means W8A8 FP8; give precision bf16 or fp16 "
                f"with quantization {self.quantization!r}, got precision fp8"
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
    intra_node_bandwidth_GBps: Bandwidth | None = Field(
        default=None, description="Fitted all-reduce bus bandwidth inside a node."
    )
    intra_node_latency_us: Latency | None = Field(
        default=None, description="Fitted per-collective latency inside a node."
    )
    gemm_realization: Fraction | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    elementwise_traffic_factor: Factor | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    backward_elementwise_factor: Factor | None = Field(
        default=None, description="Fitted from whole-block timings (see GPUSpec)."
    )
    kernel_launch_us: Latency | None = Field(
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
    grad_accumulation_bytes_per_param: BytesPerParam | None = Field(
        default=None,
        description="From the measured stack's gradient accumulation (see GPUSpec).",
    )
    gemm_table: GemmTable | None = Field(
        default=None,
        description="Measured per-shape GEMM rates [m, k, n, TFLOP/s] (see GPUSpec).",
    )
    measured: dict[str, Any] = Field(default_factory=dict, description="Raw measurements.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Date, driver, versions.")
    # Serving-engine terms (`shardwise profile --from-aiconfigurator`, solver/profile/
    # aiconfigurator.py): read from measured engine kernel tables, consumed by the serving
    # engine step model, not by the training cost model.
    decode_attention_efficiency: Fraction | None = Field(
        default=None,
        description="Decode (generation) attention over the KV cache: KV bytes read / time / "
        "HBM bandwidth, the asymptote of t = decode_attention_overhead_us + bytes / (eff x BW).",
    )
    decode_attention_overhead_us: Latency | None = Field(
        default=None,
        description="Fixed time of one decode attention kernel call (same fit), microseconds.",
    )
    allreduce_small_latency_us: Latency | None = Field(
        default=None,
        description="Engine custom (one-shot) all-reduce inside a node: fixed latency of one "
        "call in t = latency + (n-1) x S / B, for S <= allreduce_small_max_bytes.",
    )
    allreduce_small_bandwidth_GBps: Bandwidth | None = Field(
        default=None,
        description="Engine custom (one-shot) all-reduce: per-GPU read bandwidth B of the same fit.",
    )
    allreduce_small_max_bytes: Annotated[int, _INT, Field(gt=0, le=2**40)] | None = Field(
        default=None,
        description="Largest all-reduce (bytes) the engine's custom kernel beats NCCL at on "
        "every measured GPU count; above it, the ring alpha-beta (intra_node_*) applies.",
    )


# --------------------------------------------------------------------------------------------
# Plan (output)
# --------------------------------------------------------------------------------------------
Device = tuple[str, Annotated[int, _INT, Field(ge=0, lt=MAX_GPUS_PER_NODE)]]


class Stage(_Spec):
    """One pipeline stage: a contiguous range of blocks on one TP group per replica."""

    first_layer: LayerIndex | None = Field(default=None, description="First block (inclusive).")
    last_layer: LayerIndex | None = Field(default=None, description="Last block (inclusive).")
    chunks: list[tuple[LayerIndex, LayerIndex]] | None = Field(
        default=None, description="Interleaved schedule: one [first, last] range per virtual stage."
    )
    pool: str = Field(description="Pool whose GPUs run this stage.")
    tp: Annotated[int, _INT, Field(gt=0, le=MAX_GPUS)] = Field(
        description="Tensor-parallel degree."
    )
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

    count: Annotated[int, _INT, Field(gt=0, le=MAX_GPUS)] = Field(
        description="Number of identical replicas (DP degree of the group)."
    )
    micro_batch_size: PositiveInt | None = Field(default=None, description="Training micro-batch.")
    num_micro_batches: PositiveInt | None = Field(
        default=None, description="Micro-batches per step per replica (training), or per batch."
    )
    batch_size: PositiveInt | None = Field(
        default=None, description="Inference: concurrent sequences per replica."
    )
    schedule: Schedule = Field(default="1f1b", description="Pipeline schedule.")
    virtual_stages: Layers = Field(default=1, description="Interleaving chunks per stage.")
    recompute: Recompute = Field(default="none", description="Activation recomputation.")
    zero_stage: ZeroStage = Field(default=0, description="ZeRO stage.")
    sequence_parallel: Flag = Field(default=False, description="Megatron sequence parallelism.")
    stages: list[Stage] = Field(
        min_length=1, max_length=MAX_LAYERS, description="Pipeline stages in order."
    )

    @property
    def pp(self) -> int:
        return len(self.stages)


class SolverInfo(_Spec):
    """Facts about the solve that produced a plan."""

    model_config = ConfigDict(allow_inf_nan=True)

    status: str = Field(
        description="OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, INVALID_INPUT or MODEL_ERROR."
    )
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
