"""The cluster spec: :class:`Cluster` of :class:`Pool` s of nodes, each with a
:class:`GPUSpec`, an intra-node :class:`Link` and scale-out :class:`Nic` s, plus optional
inter-pool :class:`FabricLink` entries."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import (
    _FLOAT,
    _INT,
    MAX_BANDWIDTH_GBPS,
    MAX_GPUS,
    MAX_GPUS_PER_NODE,
    MAX_MEMORY_GB,
    MAX_NICS,
    MAX_NODES,
    MAX_POOLS,
    MIN_HBM_GBPS,
    MIN_MEMORY_GB,
    Bandwidth,
    BytesPerParam,
    Factor,
    Flag,
    Fraction,
    GemmTable,
    Latency,
    Price,
    Tflops,
    _Spec,
)


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
