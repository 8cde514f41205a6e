"""The calibration spec: :class:`Calibration`, measured overrides of catalog defaults
(produced by ``shardwise profile``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .base import _INT, Bandwidth, BytesPerParam, Factor, Fraction, GemmTable, Latency, _Spec


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
