"""The ground of every spec: input ranges, strict scalars and the frozen base class.

Every count, size and rate of an input has a documented range (the ``MAX_*`` / ``MIN_*``
constants, listed field by field in :data:`RANGES`); the annotated scalar types here
(``Layers``, ``Bandwidth``, ``Flag``, ...) carry those bounds and the coercion rules (no
Boolean or string where a number belongs) into every spec module.  :class:`_Spec` is the
frozen, ``extra="forbid"``, finite-only pydantic base of every spec.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ..errors import MAX_SEED, MAX_TIME_LIMIT_S, MAX_WORKERS

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
