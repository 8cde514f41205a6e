"""Serving-engine step model: what vLLM, SGLang and TensorRT-LLM add to the roofline of a step.

A serving step (one prefill or one decode forward) costs more than the roofline of its
operators: kernels do not reach both their compute and memory roofs near the ridge point,
every kernel has a fixed fill/drain latency, the decode attention kernel reads the paged KV
cache at its own HBM efficiency, the tensor-parallel all-reduces of a decode step are a few
kilobytes and latency-bound (the engines run their own one-shot / two-shot kernels for
them), the host schedules, launches (or replays a CUDA graph) and samples every step.  One
:class:`EngineProfile` per engine names each of these terms with its source; ``roofline`` is
the pure roofline (the cost model before issue 16 item 1), kept for comparison.

Terms (used by :func:`solver.costmodel.compute.decode_block_time`,
:func:`~solver.costmodel.compute.prefill_block_time`,
:func:`~solver.costmodel.compute.engine_head_time` and the step overhead below):

GEMM at small M (:func:`gemm_time`)
    ``t = GEMM_KERNEL_FIXED_US + (t_c^p + t_m^p)^(1/p)``, ``t_c`` = FLOPs at the GPU's
    MAMF (peak x ``gemm_efficiency``) x ``GEMM_REALIZATION_FRACTION`` (what a whole step's
    back-to-back GEMMs realise of it, as everywhere in this cost model), ``t_m`` = bytes at
    HBM bandwidth x ``memory_efficiency``.  Physically: a GEMM streams its weight tiles while its tensor cores
    work on earlier ones; far from the ridge point (M << or >> peak/bandwidth FLOP/byte) one
    roof hides the other and the form is the roofline, near it neither pipeline is full and
    the two times partly add (``p`` = 1 would be no overlap at all, p -> infinity the
    roofline); the fixed term is the kernel's pipeline fill and drain and its last partial
    wave.  ``p`` and the fixed term are two global constants fitted once on NVIDIA's
    measured A100 GEMM table (see their definitions).
Decode attention (:func:`decode_attention_time`)
    ``t = fixed + KV bytes x re-reads / (HBM bandwidth x decode_attention_efficiency)``:
    the paged-KV decode kernel's own efficiency, measured per engine, linear in the context.
    ``re-reads``: a kernel that is not group-aware (TensorRT-LLM's masked MHA, one CTA per
    query head) reads each KV head once per query head of its group, the first from HBM and
    the rest from L2 (:func:`kv_reads`), at the GPU's own L2 / HBM read ratio where its L2
    rate is sourced (:data:`L2_READ_GBPS`), else the A100's.  Where the engine's kernel is
    measured on the GPU (``EngineProfile.decode_attention_on``: vLLM and SGLang on H100 / H200,
    fitted on NVIDIA's Hopper tables of today's versions), its own fixed time and efficiency
    per KV cache dtype, plus a cost per (sequence, KV head) work item -- the tables grow
    linearly in the batch even at a tiny KV cache, which bytes alone do not.
Tensor-parallel all-reduce (:func:`allreduce_time`)
    the engine's custom kernel below its size threshold -- one-shot ``alpha + (n-1) S / B``
    (every rank reads all peers' buffers) or two-shot ``2 alpha + 2 (n-1)/n S / B``
    (reduce-scatter then all-gather) at the engine's switch-over size, ``B`` the share of the
    link these kernels reach (measured; ``alpha`` per GPU where the engine's Hopper table
    gives it, ``CustomAllReduce.latency_us_on``) -- and NCCL's ring
    (:func:`solver.costmodel.comm.allreduce_time`) above it or where the kernel cannot run
    (no NVLink between more than two GPUs, unsupported world size).
Launch and step overhead (:func:`host_bound`, :func:`step_overhead_s`)
    a CUDA-graphed decode (batch within the engine's captured sizes) pays no per-kernel host
    issue; an eager pass takes at least ``kernels x launch_us``; a prefill the engine runs
    under piecewise graphs (vLLM V1, tokens within the captured sizes:
    :func:`prefill_piecewise`) issues only its attention op and one graph replay per layer;
    every step adds the engine's exposed host time (scheduler, input preparation, output
    processing).
Sampling and logits (:func:`sampling_time`)
    the LM head is a GEMM (priced as above, no cross entropy), followed by the sampler's passes
    over the fp32 logits of every sampled row.
Prefill attention
    the fused (flash) kernel of :func:`~solver.costmodel.compute.block_forward_ops`, plus the
    attention op's fixed latency per layer and forward (``prefill_attention_fixed_us``: its
    launch, its helper kernels -- RoPE, K/V cache write, sequence offsets -- and its first
    tile; what the engine's measured context-attention op takes on a one-token prompt).  On a
    GPU whose catalog entry has no fused-attention efficiency (the A100), the kernel runs at
    the engine's own, fitted on its A100 table (``EngineProfile.prefill_attention_efficiency_on``;
    prefill steps only: training keeps the catalog's pricing).
Elementwise fusions of a step (``fused_add_norm``, ``fused_activation_quant``, ``fp8_context_fmha``)
    which of the elementwise groups of
    :func:`~solver.costmodel.compute.block_forward_ops` (priced for training as Megatron-LM's
    fused kernels) the engine runs as their own HBM pass and which ride in a neighbouring
    kernel, applied to the serving op lists only (training keeps its own).  Residual add +
    RMSNorm in one kernel (``fused_add_norm``: vLLM, SGLang) moves
    :data:`FUSED_ADD_NORM_BYTES` per hidden element instead of the add's and the norm's 6 + 4.
    An FP8 GEMM input quantized in the kernel that produces it (``fused_activation_quant``:
    TensorRT-LLM's TensorRT Q/DQ fusion; vLLM V1's Inductor-compiled norm and SiLU-and-mul)
    leaves no cast pass, and its producer writes the 1-byte element instead of the 2-byte one;
    the out-projection's input is the attention kernel's output, fused only where that kernel
    writes FP8 (``fp8_context_fmha``, TensorRT-LLM 0.11+).  Not fused by any profile, from the
    same sources: RoPE (TensorRT-LLM applies it in the attention op's QKV preprocessing kernel,
    which also writes the KV cache and reads V besides Q and K: no fewer bytes than the two
    passes priced; vLLM V1's compiled rotary op and SGLang's rotary kernel are passes of their
    own before the attention op) and the KV-cache write.  A decode step's elementwise lump
    (norms and residual adds only: it prices no activation, RoPE or cast bytes) takes the
    add + norm fusion alone.
Prefill scheduling (``mixed_batches``, with its source)
    whether the decodes ride in the steps that prefill (vLLM V1, TensorRT-LLM in-flight
    batching) or wait while a prefill step runs alone (vLLM 0.6 without chunked prefill,
    SGLang with ``enable_mixed_chunk`` off, its default): read by the simulator's scheduler
    (:class:`solver.serving.simulator.Engine`), not a term of a step's cost.

Which engine prices a workload: ``InferenceWorkload.serving_engine`` (:func:`resolve`);
``"auto"`` is vLLM (the default inference engine, whose launchable plan space covers SGLang's
and TensorRT-LLM's: ``solver.engines.covering_engines``).  Versioned profiles for published
runs of older engines: ``trtllm`` is the C++ executor of 0.11 and later, ``trtllm-0.9`` the
0.9 session runtime NVIDIA's 0.9 tables ran (:data:`TRTLLM_SESSION_09`); ``vllm`` is the V1
engine, ``vllm-0.6`` the V0 engine of 0.6 (:data:`VLLM_V0_06`); ``sglang`` is SGLang with
its overlap scheduler (0.4 and later), ``sglang-0.3`` the synchronous scheduler loop before it
(:data:`SGLANG_V0_3`); the simulator's step cost takes any of them by name
(``roofline_step_cost(..., engine=)``).

Not modelled here: vLLM's multi-step scheduling (``--num-scheduler-steps k``, vLLM 0.5.5-0.7
``SchedulerConfig.num_scheduler_steps``, removed with the V0 engine).  In vLLM 0.6.0 a batch
with prefills runs a single step (``Scheduler._get_num_lookahead_slots``: 0 for prefills,
and ``LLMEngine.step`` caches the schedule for further steps only when
``num_lookahead_slots > 0``) and its first tokens are returned at once; a decode batch runs k
steps with the scheduler idle in between, and its outputs are processed after the last of
them.  So a client sees decode tokens in bursts of k (the ITL it measures is k steps) and a
new request waits for the running k-step group (about k/2 steps more TTFT).  The streaming
and admission belong to the simulator's scheduler (:mod:`solver.serving.simulator`), not to
a step's cost: the step cost here is the same per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from .comm import LinkTier
from .comm import allreduce_time as ring_allreduce_time

__all__ = [
    "ENGINES",
    "FUSED_ADD_NORM_BYTES",
    "GEMM_KERNEL_FIXED_US",
    "GEMM_OVERLAP_EXPONENT",
    "L2_TO_HBM_BANDWIDTH",
    "ROOFLINE",
    "SGLANG",
    "SGLANG_V0_3",
    "TRTLLM",
    "TRTLLM_SESSION_09",
    "VLLM",
    "VLLM_V0_06",
    "CustomAllReduce",
    "EngineName",
    "EngineProfile",
    "Sourced",
    "allreduce_time",
    "custom_allreduce_algorithm",
    "decode_attention_time",
    "gemm_time",
    "graphed",
    "host_bound",
    "kv_reads",
    "L2_READ_GBPS",
    "l2_to_hbm_ratio",
    "PIECEWISE_LAUNCHES_PER_LAYER",
    "prefill_attention_fixed_s",
    "prefill_piecewise",
    "resolve",
    "sampling_time",
    "step_overhead_s",
    "with_calibration",
]

EngineName = Literal[
    "auto", "vllm", "vllm-0.6", "sglang", "sglang-0.3", "trtllm", "trtllm-0.9", "roofline"
]

#: The measured table the GEMM and decode-attention constants below are read from or fitted to:
#: NVIDIA's AIConfigurator operator tables for A100-SXM4-80GB, shipped in the
#: ``aiconfigurator-core`` 0.12.0 wheel (PyPI, Apache-2.0), ``aiconfigurator_core/systems/data/
#: a100_sxm/...``.
AIC = "aiconfigurator-core 0.12.0 (PyPI), systems/data/a100_sxm"


@dataclass(frozen=True)
class Sourced:
    """A named constant and where it comes from (engine source at a commit, a paper, a
    datasheet or a measurement)."""

    value: float
    source: str


#: Exponent of the smooth roofline ``(t_c^p + t_m^p)^(1/p)`` of a GEMM.  Fitted once (with
#: ``GEMM_KERNEL_FIXED_US``) on the 3,738 bf16 shapes with N x K >= 8M of AIConfigurator's
#: measured A100 GEMM table (``a100_sxm/gemm/trtllm/1.0.0/gemm_perf.parquet``, torch flow), the
#: roofs being the catalog's A100 MAMF (0.87 x 312 TFLOPS) and HBM (0.902 x 2,039 GB/s): mean
#: |log error| 8.2% (median -6% at M <= 16, 0% at M 64-256, -2% at M >= 1024), against 32%
#: for the roofline (-49% at M 64-256).  Out of sample, vLLM 0.14's table on the same GPU
#: (``a100_sxm/gemm/vllm/0.14.0``): 9.6% (roofline 34%).
GEMM_OVERLAP_EXPONENT = Sourced(1.5, f"fit to {AIC}/gemm/trtllm/1.0.0/gemm_perf.parquet")
#: Fixed time of one GEMM kernel (pipeline fill and drain, last partial wave), microseconds;
#: fitted with ``GEMM_OVERLAP_EXPONENT`` (same table).
GEMM_KERNEL_FIXED_US = Sourced(8.0, f"fit to {AIC}/gemm/trtllm/1.0.0/gemm_perf.parquet")

#: HBM bytes per hidden element of one fused residual-add + RMSNorm kernel (16-bit): it reads the
#: branch output and the residual and writes the new residual and the normed output, 4 x 2 B;
#: the two kernels priced for training move 6 (``RESIDUAL_ADD_BYTES``) + 4 (``NORM_BYTES``).
FUSED_ADD_NORM_BYTES = Sourced(
    8.0,
    "vllm-project/vllm csrc/layernorm_kernels.cu fused_add_rms_norm (in place: residual <- "
    "input + residual, input <- RMSNorm(residual)); flashinfer.norm.fused_add_rmsnorm the same "
    "(SGLang 0.3.0 PyPI wheel, sglang/srt/layers/layernorm.py RMSNorm.forward_cuda: "
    "'fused_add_rmsnorm(x, residual, self.weight.data, self.variance_epsilon)')",
)


@dataclass(frozen=True)
class CustomAllReduce:
    """An engine's custom (IPC, NVLink) all-reduce kernel and when it is used.

    Attributes
    ----------
    world_sizes
        TP degrees the kernel supports.
    max_bytes
        ``(largest world size, largest message in bytes)`` rules, first match wins; larger
        messages go to NCCL.
    oneshot_below
        ``(largest world size, bytes)`` rules: messages under the bytes run one-shot, others
        two-shot.
    latency_us
        Launch + cross-GPU barrier latency of one kernel (alpha).
    oneshot_link_fraction, twoshot_link_fraction
        Share of the TP link's bandwidth the one-shot / two-shot kernel reaches (these
        latency-optimised kernels move data with plain loads and stores, not NCCL's pipelined
        copies): fitted as ``B`` of ``t = alpha + (n-1) S / B`` (one-shot) and ``t = 2 alpha +
        2 (n-1)/n S / B`` (two-shot) to the engine's measured A100 table, divided by the
        NVSwitch link's 240 GB/s of ``instances/selene-a100.yaml``.
    source
        Where the thresholds are read.
    latency_us_on
        ``(GPU catalog name, latency)`` pairs: alpha measured on that GPU, in place of
        ``latency_us`` (fitted on A100) -- :meth:`latency`.
    calibrated_max_bytes
        Set by a calibration (``allreduce_small_max_bytes``, :func:`with_calibration`): the
        largest message the measured kernel beat NCCL at.  The calibration fits one line
        ``alpha + (n-1) S / B`` to every measured size up to it, so that line (the one-shot
        form, with the calibrated ``latency_us`` and ``oneshot_link_fraction``) prices every
        message up to it and NCCL's ring every larger one, in place of the engine's source
        thresholds.  None: the thresholds above.
    """

    world_sizes: tuple[int, ...]
    max_bytes: tuple[tuple[int, float], ...]
    oneshot_below: tuple[tuple[int, float], ...]
    latency_us: Sourced
    oneshot_link_fraction: Sourced
    twoshot_link_fraction: Sourced
    source: str
    calibrated_max_bytes: float | None = None
    latency_us_on: tuple[tuple[str, Sourced], ...] = ()

    def latency(self, gpu: str | None) -> Sourced:
        """The kernel's latency (alpha) on ``gpu`` (catalog name): its measured
        ``latency_us_on`` entry, else ``latency_us``."""
        return dict(self.latency_us_on).get(gpu or "", self.latency_us)


@dataclass(frozen=True)
class DecodeAttentionTerms:
    """An engine's paged decode-attention kernel on one GPU (:func:`decode_attention_time`).

    Attributes
    ----------
    fixed_us
        Latency on a tiny KV cache and batch (launch, one tile), microseconds per layer.
    efficiency
        Share of the GPU's peak HBM bandwidth the kernel reads the KV cache at.
    per_sequence_kv_head_ns
        Time per (sequence, KV head) work item, nanoseconds: what the kernel spends on each
        beyond its bytes (page-table walk, split-KV softmax reduction, output write); 0 where
        not measured.
    """

    fixed_us: Sourced
    efficiency: Sourced
    per_sequence_kv_head_ns: Sourced


#: The per-(sequence, KV head) decode-attention term of a profile without a measured one.
_NO_PER_SEQUENCE = Sourced(0.0, "not measured for this engine version and GPU (byte model)")


_VLLM_CAR_SRC = (
    "vllm-project/vllm csrc/custom_all_reduce.cuh @ 036bb685 (CustomAllreduce::allreduce: "
    "world 2 -> 1-stage; full NVLink: world <= 4 and < 512 KiB or world <= 8 and < 256 KiB -> "
    "1-stage, else 2-stage); vllm/distributed/device_communicators/custom_all_reduce.py @ "
    "00d618aa (max_size 8192 * 1024, world sizes 2/4/6/8, one node, > 2 GPUs need NVLink)"
)


def _hopper_allreduce_latency(
    backend: str, version: str, medians: str, value: float
) -> tuple[tuple[str, Sourced], ...]:
    """``latency_us_on`` entries: the engine's custom all-reduce latency on H100 and H200 SXM,
    the median of the CUDA-graph rows of at most 8 KB per TP size, ``medians`` (TP 2 / 4 / 8,
    H100; H200 the same within 0.1-0.3 us), rounded to one value."""
    out = []
    for system, gpu in (("h100_sxm", "H100-SXM5-80GB"), ("h200_sxm", "H200-SXM-141GB")):
        src = (
            "aiconfigurator-core 0.12.0 (PyPI), systems/data/"
            f"{system}/comm/{backend}/{version}/custom_allreduce_perf.parquet: CUDA-graph rows "
            f"<= 8 KB, median per TP size {medians} (H100)"
        )
        out.append((gpu, Sourced(value, src)))
    return tuple(out)


#: vLLM's custom all-reduce (SGLang's sgl-kernel carries the same kernels,
#: ``sglang::cross_device_reduce_1stage/2stage``, with the same dispatch).
VLLM_CUSTOM_ALLREDUCE = CustomAllReduce(
    world_sizes=(2, 4, 6, 8),
    max_bytes=((8, 8192.0 * 1024),),
    oneshot_below=((2, math.inf), (4, 512.0 * 1024), (8, 256.0 * 1024)),
    latency_us=Sourced(
        4.9,
        f"{AIC}/comm/vllm/0.14.0/custom_allreduce_perf.parquet: 4.87 / 5.15 us at 256 B, "
        "TP 2 / 4, CUDA-graph replay",
    ),
    oneshot_link_fraction=Sourced(
        0.65,
        f"{AIC}/comm/vllm/0.14.0/custom_allreduce_perf.parquet (graph): TP 8 at 256 KiB "
        "11.4 us, TP 4 at 512 KiB 14.5 us -> ~155 GB/s of 240",
    ),
    twoshot_link_fraction=Sourced(
        0.90,
        f"{AIC}/comm/vllm/0.14.0/custom_allreduce_perf.parquet (graph): TP 8 at 2 / 4 MiB "
        "27.9 / 45.4 us -> ~216 GB/s of 240",
    ),
    source=_VLLM_CAR_SRC,
    latency_us_on=_hopper_allreduce_latency("vllm", "0.24.0", "4.3 / 4.6 / 4.7 us", 4.5),
)
#: TensorRT-LLM's AllReduce plugin in AUTO strategy.
TRTLLM_CUSTOM_ALLREDUCE = CustomAllReduce(
    world_sizes=(2, 4, 6, 8),
    max_bytes=((2, 16e6), (8, 8e6)),
    oneshot_below=((2, math.inf), (4, 1e6), (8, 500e3)),
    latency_us=Sourced(
        4.1,
        f"{AIC}/comm/trtllm/1.0.0/custom_allreduce_perf.parquet: 3.8 / 4.0 / 4.4 us at 128 "
        "elements, TP 2 / 4 / 8",
    ),
    oneshot_link_fraction=Sourced(
        0.60,
        f"{AIC}/comm/trtllm/1.0.0/custom_allreduce_perf.parquet: TP 8 at 512 KiB 16.3 us, TP 4 "
        "at 1 MiB 13.9 us, TP 2 at 2 MiB 11.6 us -> 134-159 GB/s of 240",
    ),
    twoshot_link_fraction=Sourced(
        0.40,
        f"{AIC}/comm/trtllm/1.0.0/custom_allreduce_perf.parquet: TP 8 at 4 / 8 MB 53.6 / 75.9 "
        "us, TP 4 at 4 MB 48.3 us -> 79-109 GB/s of 240",
    ),
    source=(
        "NVIDIA/TensorRT-LLM cpp/tensorrt_llm/plugins/ncclPlugin/allreducePlugin.cpp @ "
        "b57221b7 (AllreducePlugin::selectImplementation: world <= 2 ONESHOT, <= 4 ONESHOT "
        "under 1,000,000 B, else ONESHOT under 500,000 B, TWOSHOT above, NCCL past the "
        "workspace); cpp/tensorrt_llm/common/customAllReduceUtils.h "
        "(getMaxRequiredWorkspaceSize: 16,000,000 B at world <= 2, else 8,000,000 B); even "
        "world sizes up to 8 (isCustomAllReduceSupported); use_custom_all_reduce = True in "
        "tensorrt_llm/plugin/plugin.py PluginConfig (0.9)"
    ),
)


@dataclass(frozen=True)
class EngineProfile:
    """One serving engine's step-model constants (see the module docstring).

    Attributes
    ----------
    name
        ``vllm`` (V1), ``vllm-0.6`` (V0), ``sglang`` (overlap scheduler), ``sglang-0.3``
        (synchronous scheduler), ``trtllm`` (the executor, 0.11 and later), ``trtllm-0.9``
        (the 0.9 session runtime) or ``roofline``.
    version
        The engine version (and run mode) the constants describe.
    smooth_gemm
        GEMMs priced by :func:`gemm_time` (False: the roofline ``max``).
    cuda_graphs
        1 if decode steps replay CUDA graphs (within ``graph_max_batch``), else 0.
    graph_max_batch
        Largest captured decode batch (0: none); SGLang's depends on the GPU
        (:func:`graphed`).
    prefill_piecewise_graphs
        1 if prefill and mixed batches of at most ``graph_max_batch`` tokens replay piecewise
        CUDA graphs (the attention op launched eagerly between the pieces), else 0.
    launch_us
        Host issue time per kernel of an eager pass (microseconds).
    step_host_us
        Host time per step the GPU waits for (scheduler, input preparation, output
        processing, synchronisation), microseconds.
    decode_attention_kernel
        Name of the paged-KV decode attention kernel.
    decode_attention_efficiency
        Its achieved fraction of HBM bandwidth on a large KV cache.
    decode_attention_fixed_us
        Its latency on a tiny KV cache (launch, one tile), microseconds per layer.
    prefill_attention_fixed_us
        The context (prefill) attention op's latency on a one-token prompt, microseconds per
        layer and forward (module docstring); added to the fused kernel's FLOP / byte time.
    group_aware_sizes
        Query-heads-per-KV-head groups for which the kernel reads a KV head once (empty
        value ``()`` with ``group_aware_all``: every group).
    group_aware_all
        Whether every group size is read once (FlashInfer / FlashAttention decode).
    sampling_bytes_per_logit
        HBM bytes the sampler moves per logit of a sampled row.
    custom_allreduce
        The engine's custom all-reduce, None: NCCL only.
    mixed_batches
        Whether decodes ride in the steps that prefill (one forward over both, the
        simulator's mixed step); False: a step that prefills runs no decode, the running
        decodes wait for it (prefill-first scheduling; :class:`solver.serving.simulator.Engine`).
    mixed_batches_source
        Where that scheduling rule is read.
    fused_activation_quant
        Whether the FP8 (or INT8 / FP4 W-A) input cast of each GEMM is fused into the kernel
        that produces that input (norm, gated activation; the attention output only with
        ``fp8_context_fmha``), so a prefill pays no separate cast pass for it (the
        ``fp8_casts`` group of :func:`~solver.costmodel.compute.block_forward_ops`) and the
        producer writes the quantized element in place of the 16-bit one; False: a cast kernel
        per GEMM input, as priced for training.
    fused_activation_quant_source
        Where that fusion is read.
    fused_add_norm
        Whether each residual add and the RMSNorm after it run as one kernel
        (:data:`FUSED_ADD_NORM_BYTES` per hidden element instead of ``RESIDUAL_ADD_BYTES`` +
        ``NORM_BYTES``), in prefill and decode steps alike; False: the two kernels, as priced
        for training.
    fused_add_norm_source
        Where that fusion is read.
    decode_attention_on
        ``(GPU catalog name, KV cache dtype, terms)``: the engine's decode-attention kernel
        measured on that GPU with a ``"16-bit"`` or ``"fp8"`` cache
        (:class:`DecodeAttentionTerms`, :meth:`decode_attention`), in place of
        ``decode_attention_efficiency`` / ``decode_attention_fixed_us`` (fitted on A100).
    prefill_attention_efficiency_on
        ``(GPU catalog name, efficiency)``: the engine's context-attention kernel measured on
        a GPU whose catalog entry has no ``attention_efficiency`` (the A100): its forward
        share of the 16-bit peak, with the catalog's short-sequence saturation
        (``ATTENTION_HALF_RATE_SEQ``), for prefill steps only -- the training cost model keeps
        the catalog's pricing.
    fp8_context_fmha
        Whether the context attention kernel writes its output in FP8 for the out-projection
        (TensorRT-LLM ``use_fp8_context_fmha``), so that input's cast is fused too; without it
        the out-projection input keeps its cast kernel even under ``fused_activation_quant``
        (an attention plugin's output is not fused with a following quantize layer).
    """

    name: str
    version: str
    smooth_gemm: bool
    cuda_graphs: Sourced
    graph_max_batch: Sourced
    prefill_piecewise_graphs: Sourced
    launch_us: Sourced
    step_host_us: Sourced
    decode_attention_kernel: str
    decode_attention_efficiency: Sourced
    decode_attention_fixed_us: Sourced
    prefill_attention_fixed_us: Sourced
    group_aware_sizes: tuple[int, ...]
    group_aware_all: bool
    group_aware_source: str
    sampling_bytes_per_logit: Sourced
    custom_allreduce: CustomAllReduce | None
    mixed_batches: bool = True
    mixed_batches_source: str = (
        "vLLM V1 vllm/v1/core/sched/scheduler.py (one token budget for the running decodes and "
        "the prefill chunks of a step); TensorRT-LLM in-flight batching (context and generation "
        "requests in one forward)"
    )
    fused_activation_quant: bool = False
    fused_activation_quant_source: str = (
        "a quantize kernel per FP8 GEMM input (vLLM Fp8LinearMethod.apply: ops.scaled_fp8_quant "
        "before the scaled GEMM; SGLang's FP8 linear likewise), priced as in training"
    )
    fp8_context_fmha: bool = False
    fused_add_norm: bool = False
    fused_add_norm_source: str = (
        "a residual-add kernel and an RMSNorm kernel, as priced for training (no source that "
        "this engine fuses them)"
    )
    decode_attention_on: tuple[tuple[str, str, DecodeAttentionTerms], ...] = ()
    prefill_attention_efficiency_on: tuple[tuple[str, Sourced], ...] = ()

    def prefill_attention_efficiency(self, gpu: str) -> Sourced | None:
        """The context-attention kernel's measured forward efficiency on ``gpu`` (catalog
        name), None where not measured."""
        return dict(self.prefill_attention_efficiency_on).get(gpu)

    def decode_attention(self, gpu: str | None, kv_precision: str = "bf16") -> DecodeAttentionTerms:
        """The decode-attention terms on ``gpu`` (catalog name) with a ``kv_precision`` cache:
        its ``decode_attention_on`` entry (16-bit caches share one, and every 1-byte FP8
        encoding -- ``fp8``, ``fp8_e4m3``, ``fp8_e5m2`` -- the ``fp8`` one), else the profile's
        own efficiency and fixed time with no per-sequence term."""
        kv = kv_precision
        if kv in ("bf16", "fp16"):
            kv = "16-bit"
        elif kv.startswith("fp8"):
            kv = "fp8"
        for name, dtype, terms in self.decode_attention_on:
            if name == gpu and dtype == kv:
                return terms
        return DecodeAttentionTerms(
            self.decode_attention_fixed_us, self.decode_attention_efficiency, _NO_PER_SEQUENCE
        )

    def constants(self) -> dict[str, Sourced]:
        """Every sourced constant of the profile by field name."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if isinstance(v, Sourced)}


_NONE = "not modelled by the roofline profile"

#: Today's pure roofline (before issue 16 item 1), for comparison.
ROOFLINE = EngineProfile(
    name="roofline",
    version="-",
    smooth_gemm=False,
    cuda_graphs=Sourced(0.0, _NONE),
    graph_max_batch=Sourced(0.0, _NONE),
    prefill_piecewise_graphs=Sourced(0.0, _NONE),
    launch_us=Sourced(0.0, _NONE),
    step_host_us=Sourced(0.0, _NONE),
    decode_attention_kernel="roofline",
    decode_attention_efficiency=Sourced(math.nan, "the GPU's memory_efficiency (roofline)"),
    decode_attention_fixed_us=Sourced(0.0, _NONE),
    prefill_attention_fixed_us=Sourced(0.0, _NONE),
    group_aware_sizes=(),
    group_aware_all=True,
    group_aware_source=_NONE,
    sampling_bytes_per_logit=Sourced(0.0, _NONE),
    custom_allreduce=None,
)

#: Host issue time of one kernel launched from PyTorch eager code (vLLM / SGLang outside their
#: captured batch sizes): the whole-block fit of this repository's H100 calibration,
#: ``kernel_launch_us`` 56 us per operator group (instances/calibration/h100-sxm5-80gb.yaml,
#: PyTorch eager Llama blocks; H200: 44 us).
_TORCH_EAGER_LAUNCH = Sourced(
    56.0,
    "instances/calibration/h100-sxm5-80gb.yaml kernel_launch_us (PyTorch eager, per op group); "
    "checked on one H100 (benchmarks/validation/serving/raw-h100x1-serving-run1.json, torch "
    "2.11, CUDA 13.0): an eager Llama-3-8B layer prefill of 128 tokens issues for 583 us "
    "(65 us per op group of this cost model), 293 us graph-replayed",
)

#: NVIDIA's AIConfigurator operator tables for the Hopper GPUs (same wheel as :data:`AIC`): the
#: engines people run today, ``systems/data/{h100_sxm,h200_sxm}/<op>/<backend>/<version>``.
AIC_HOPPER = "aiconfigurator-core 0.12.0 (PyPI), systems/data"
#: How the Hopper decode-attention terms below are fitted: per KV cache dtype (16-bit, fp8),
#: the table's rows of its majority kernel, full attention (window 0), head_dim 128, query
#: heads a multiple of the KV heads (batch 1-2048, cached tokens 1-131071), one weighted
#: least-squares fit of ``t = fixed + sequences x KV heads x c + KV bytes / (eff x HBM peak)``
#: on relative error.
_DECODE_FIT = (
    "majority kernel, window 0, head_dim 128; weighted least squares (relative error) of "
    "t = fixed + batch x kv_heads x c + KV bytes / (eff x catalog HBM peak)"
)


def _hopper_decode(
    backend: str,
    version: str,
    kernel: str,
    fits: dict[tuple[str, str], tuple[float, float, float, str]],
) -> tuple[tuple[str, str, DecodeAttentionTerms], ...]:
    """``decode_attention_on`` entries from fits ``{(system, KV dtype): (fixed_us, per
    (sequence, KV head) ns, efficiency, what the fit left)}`` of the engine's Hopper table."""
    gpus = {"h100_sxm": "H100-SXM5-80GB", "h200_sxm": "H200-SXM-141GB"}
    out = []
    for (system, kv), (fixed, per_item, eff, quality) in fits.items():
        src = (
            f"{AIC_HOPPER}/{system}/attention/{backend}/{version}/generation_attention_perf"
            f".parquet ({kernel}, {kv} KV): {_DECODE_FIT}; {quality}"
        )
        out.append(
            (
                gpus[system],
                kv,
                DecodeAttentionTerms(
                    fixed_us=Sourced(fixed, src),
                    efficiency=Sourced(eff, src),
                    per_sequence_kv_head_ns=Sourced(per_item, src),
                ),
            )
        )
    return tuple(out)


#: vLLM 0.24 (FlashAttention-3 paged decode) on Hopper.
VLLM_HOPPER_DECODE = _hopper_decode(
    "vllm",
    "0.24.0",
    "vllm_flash_attn_fa3",
    {
        ("h100_sxm", "16-bit"): (
            11.5,
            23.8,
            0.96,
            "6,770 rows, mean |ln err| 0.085 (A100 terms 0.303)",
        ),
        ("h200_sxm", "16-bit"): (
            11.6,
            24.4,
            0.90,
            "6,770 rows, mean |ln err| 0.082 (A100 terms 0.312)",
        ),
        ("h100_sxm", "fp8"): (
            13.6,
            26.3,
            0.80,
            "6,770 rows, mean |ln err| 0.080 (A100 terms 0.372)",
        ),
        ("h200_sxm", "fp8"): (
            13.4,
            26.6,
            0.61,
            "6,770 rows, mean |ln err| 0.083 (A100 terms 0.421)",
        ),
    },
)
#: SGLang 0.5.14 (FlashAttention-3 backend) on Hopper.
SGLANG_HOPPER_DECODE = _hopper_decode(
    "sglang",
    "0.5.14",
    "fa3",
    {
        ("h100_sxm", "16-bit"): (
            9.0,
            18.6,
            0.97,
            "7,466 rows, mean |ln err| 0.111 (A100 terms 0.532)",
        ),
        ("h200_sxm", "16-bit"): (
            9.2,
            19.2,
            0.92,
            "7,466 rows, mean |ln err| 0.103 (A100 terms 0.518)",
        ),
        ("h100_sxm", "fp8"): (
            12.7,
            20.1,
            0.66,
            "7,466 rows, mean |ln err| 0.094 (A100 terms 0.343)",
        ),
        ("h200_sxm", "fp8"): (
            12.7,
            20.5,
            0.52,
            "7,466 rows, mean |ln err| 0.092 (A100 terms 0.339)",
        ),
    },
)


def _a100_prefill_attention(
    backend: str, version: str, kernel: str, value: float, quality: str
) -> tuple[tuple[str, Sourced], ...]:
    """``prefill_attention_efficiency_on`` for the A100 SXM4 (80 GB and 40 GB: one die and
    clock): ``value`` fitted on the engine's A100 context-attention table."""
    src = (
        f"{AIC}/attention/{backend}/{version}/context_attention_perf.parquet ({kernel}): 16-bit, "
        "window 0, head_dim 128, GQA rows; the one efficiency e minimising mean |ln(predicted / "
        "measured)| of the prefill attention op (FLOPs at 312 TFLOPS x e x s / (s + "
        f"ATTENTION_HALF_RATE_SEQ) + prefill_attention_fixed_us); {quality}"
    )
    return tuple((gpu, Sourced(value, src)) for gpu in ("A100-SXM4-80GB", "A100-SXM4-40GB"))


#: vLLM V1's default compilation: every custom op in its native PyTorch form, compiled by
#: Inductor between the attention ops (the source of its elementwise fusions).
_VLLM_V1_INDUCTOR = (
    "vLLM V1 default compilation, custom ops off under Inductor: vllm/config.py "
    "VllmConfig.__post_init__ (V1 releases before vllm/config/ became a package; V1, not "
    "enforce_eager): 'self.compilation_config.custom_ops = "
    '["none"]\', use_inductor = True, pass_config.enable_fusion = False, level PIECEWISE; '
    'vllm-project/vllm vllm/config/vllm.py @ 000fc94b: custom_ops.append("none") when '
    "backend == 'inductor' and mode != NONE (CustomOp.forward_native everywhere)"
)

VLLM = EngineProfile(
    name="vllm",
    version="v0.11-0.14 (V1 engine, FULL_AND_PIECEWISE CUDA graphs)",
    smooth_gemm=True,
    cuda_graphs=Sourced(
        1.0, "vllm/config/compilation.py: cudagraph_mode default FULL_AND_PIECEWISE"
    ),
    graph_max_batch=Sourced(
        512.0,
        "vllm/config/vllm.py _set_cudagraph_sizes: max_cudagraph_capture_size = "
        "min(max_num_seqs * 2, 512) (max_num_seqs default 256 or more); sizes [1, 2, 4] + "
        "range(8, 256, 8) + range(256, max + 1, 16), a batch pads up to the next one",
    ),
    prefill_piecewise_graphs=Sourced(
        1.0,
        "vllm/config/compilation.py CUDAGraphMode: 'FULL_AND_PIECEWISE mode: Capture full "
        "cudagraph for decode batches and piecewise cudagraph for prefill and mixed "
        "prefill-decode batches ... the default'; PIECEWISE keeps 'some attention ops' outside "
        "the graph; vllm/v1/cudagraph_dispatcher.py dispatch: num_tokens > max capture size -> "
        "no graph",
    ),
    launch_us=_TORCH_EAGER_LAUNCH,
    step_host_us=Sourced(
        1500.0,
        "vllm-project/vllm PR #17866 (May 2025, V1): Llama-3.2-1B TPOT 2.73 ms with "
        "~10% saved by the fast decode-prepare path; its 2.5 GB of weights at H100 "
        "3.35 TB/s x 0.8 take 0.93 ms: (2.73 x 0.9 - 0.93) ms ~ 1.5 ms of host time per step",
    ),
    decode_attention_kernel="FlashAttention-2 paged decode (vllm_flash_attn)",
    decode_attention_efficiency=Sourced(
        0.70,
        f"{AIC}/attention/vllm/0.14.0/generation_attention_perf.parquet: median achieved "
        "HBM fraction 0.68-0.72 over batches 2-2048 at >= 256 MB of KV",
    ),
    decode_attention_fixed_us=Sourced(
        12.6,
        f"{AIC}/attention/vllm/0.14.0/generation_attention_perf.parquet: batch 1, < 2 MB of KV",
    ),
    prefill_attention_fixed_us=Sourced(
        11.2,
        f"{AIC}/attention/vllm/0.14.0/context_attention_perf.parquet: batch 1, 1-token prompt, "
        "32 heads x 128 (11.2 us; 12.9 us at 128 tokens; H100 vLLM 0.24 table: 11.6 us)",
    ),
    group_aware_sizes=(),
    group_aware_all=True,
    group_aware_source="FlashAttention decode packs a KV head's query heads into one tile (GQA-aware)",
    sampling_bytes_per_logit=Sourced(
        36.0,
        "vllm/v1/sample/sampler.py: logits to fp32 (2+4 B), temperature (4+4), softmax (4+4), "
        "exponential-race divide (4+4+4) and argmax (4) per logit",
    ),
    custom_allreduce=VLLM_CUSTOM_ALLREDUCE,
    fused_add_norm=True,
    fused_add_norm_source=_VLLM_V1_INDUCTOR
    + ": the decoder layer's RMSNorm(x, residual) (forward_native: x + residual, then the "
    "norm) compiles into one Inductor kernel",
    fused_activation_quant=True,
    fused_activation_quant_source=_VLLM_V1_INDUCTOR
    + "; the FP8 input cast is the QuantFP8 custom op (vllm/model_executor/layers/"
    "quantization/utils/w8a8_utils.py Fp8LinearOp: 'self.quant_fp8 = QuantFP8(...)', apply: "
    "'qinput, x_scale = self.quant_fp8(input_2d, ...)'), also native, so Inductor emits it in "
    "the norm's and the SiLU-and-mul's kernels: vllm/config/vllm.py @ 000fc94b "
    "enable_norm_fusion / enable_act_fusion, the pattern passes only 'if either RMS norm or "
    "quant FP8 custom op is active; otherwise Inductor handles fusion'; the attention output's "
    "cast stays a kernel of its own (the attention op splits the graph; docs.vllm.ai "
    "design/fusions, v0.18.2: 'Attention + Quant | fuse_attn_quant | Off by default')",
    decode_attention_on=VLLM_HOPPER_DECODE,
    prefill_attention_efficiency_on=_a100_prefill_attention(
        "vllm", "0.14.0", "vllm_flash_attn", 0.73, "5,457 rows, 0.263 (no efficiency: 0.500)"
    ),
)

#: vLLM's V0 engine (0.6.x; V1 became the default in 0.8): what differs from :data:`VLLM` is
#: the CUDA-graph coverage -- decode batches only, up to 256 sequences; prefill and mixed
#: batches eager.  Named apart because published vLLM 0.6 runs are in the validation set.
VLLM_V0_06 = replace(
    VLLM,
    name="vllm-0.6",
    version="v0.6 (V0 engine: decode-only CUDA graphs)",
    graph_max_batch=Sourced(
        256.0,
        "vllm-project/vllm vllm/worker/model_runner.py (v0.6.0): _BATCH_SIZES_TO_CAPTURE = "
        "[1, 2, 4] + [8 * i for i in range(1, 1025)], captured up to "
        "_get_max_graph_batch_size(max_num_seqs): 256 at the default max_num_seqs 256 "
        "(_use_captured_graph: decode-only batches of at most that many)",
    ),
    prefill_piecewise_graphs=Sourced(
        0.0,
        "vllm/worker/model_runner.py (v0.6.0): CUDA graphs only for decode batches "
        "(use_cuda_graph requires a decode-only batch); prefill runs eager",
    ),
    decode_attention_on=(),  # 0.6's kernel: the A100 terms, not today's Hopper tables
    prefill_attention_efficiency_on=(),  # and the catalog's prefill attention
    custom_allreduce=replace(VLLM_CUSTOM_ALLREDUCE, latency_us_on=()),
    fused_add_norm_source=(
        "vLLM V0 runs eager with its CUDA custom ops: vllm/model_executor/layers/layernorm.py "
        "RMSNorm.forward_cuda 'ops.fused_add_rms_norm(x, residual, self.weight.data, "
        "self.variance_epsilon)' (csrc/layernorm_kernels.cu, one kernel)"
    ),
    fused_activation_quant=False,
    fused_activation_quant_source=EngineProfile.fused_activation_quant_source,
    mixed_batches=False,
    mixed_batches_source=(
        "vllm-project/vllm vllm/core/scheduler.py (v0.6.0) Scheduler._schedule_default, the "
        "schedule without chunked prefill (vllm/engine/arg_utils.py v0.6.0: off by default up "
        "to 32k context, and 'Chunked prefill is not supported with multi-step'): 'Don't "
        "schedule decodes if prefills are scheduled' -- waiting prompts first, whole, and the "
        "running decodes only in a step with no prefill"
    ),
)

SGLANG = EngineProfile(
    name="sglang",
    version="v0.5.x (overlap scheduler, CUDA graphs)",
    smooth_gemm=True,
    cuda_graphs=Sourced(1.0, "sglang python/sglang/srt/server_args.py: disable_cuda_graph = False"),
    graph_max_batch=Sourced(
        256.0,
        "sglang server_args.py _handle_gpu_memory_settings: cuda_graph_max_bs 256 (TP < 4) or "
        "512 (TP >= 4) at 60-160 GiB, 32 / 160 at 35-60 GiB, 24 / 80 below (graphed())",
    ),
    prefill_piecewise_graphs=Sourced(
        0.0,
        "sglang server_args.py: CUDA graphs capture decode batches (cuda_graph_max_bs); "
        "extend (prefill) batches run eager unless --enable-piecewise-cuda-graph (off by default)",
    ),
    launch_us=_TORCH_EAGER_LAUNCH,
    step_host_us=Sourced(
        0.0,
        "SGLang v0.4 blog (Dec 2024), 'zero-overhead batch scheduler': the next batch is "
        "scheduled while the GPU runs the current one (overlap schedule, default on)",
    ),
    decode_attention_kernel="FlashAttention / FlashInfer paged decode",
    decode_attention_efficiency=Sourced(
        0.48,
        f"{AIC}/attention/sglang/0.5.10/generation_attention_perf.parquet: median achieved "
        "HBM fraction 0.44-0.52 at >= 4 MB of KV",
    ),
    decode_attention_fixed_us=Sourced(
        14.4, f"{AIC}/attention/sglang/0.5.10/generation_attention_perf.parquet: batch 1, < 2 MB"
    ),
    prefill_attention_fixed_us=Sourced(
        14.3,
        f"{AIC}/attention/sglang/0.5.10/context_attention_perf.parquet: batch 1, 1-token prompt, "
        "32 heads x 128 (14.3 us; H100 SGLang 0.5.14 table: 10.0 us)",
    ),
    group_aware_sizes=(),
    group_aware_all=True,
    group_aware_source="FlashInfer / FlashAttention decode are GQA-aware (one KV read per group)",
    mixed_batches=False,
    mixed_batches_source=(
        "sglang python/sglang/srt/server_args.py enable_mixed_chunk = False (the default, 0.3 "
        "to 0.5): the scheduler runs a new prefill (extend) batch alone when one can be formed "
        "and decodes the running batch only otherwise (0.3.0 PyPI wheel: "
        "ModelTpServer.forward_step, srt/managers/tp_worker.py, get_new_prefill_batch then "
        "forward_prefill_batch or the decode loop; is_mixed_chunk needs enable_mixed_chunk)"
    ),
    sampling_bytes_per_logit=Sourced(
        24.0,
        "sglang srt/layers/sampler.py with FlashInfer sampling: logits to fp32 (2+4 B), "
        "temperature (4+4), fused softmax + top-k/top-p sampling (4+4+2)",
    ),
    custom_allreduce=CustomAllReduce(
        world_sizes=VLLM_CUSTOM_ALLREDUCE.world_sizes,
        max_bytes=VLLM_CUSTOM_ALLREDUCE.max_bytes,
        oneshot_below=VLLM_CUSTOM_ALLREDUCE.oneshot_below,
        latency_us=Sourced(
            4.9, f"{AIC}/comm/sglang/0.5.10/custom_allreduce_perf.parquet (as vLLM's kernel)"
        ),
        oneshot_link_fraction=VLLM_CUSTOM_ALLREDUCE.oneshot_link_fraction,
        twoshot_link_fraction=VLLM_CUSTOM_ALLREDUCE.twoshot_link_fraction,
        source="sgl-kernel custom_all_reduce (vLLM's kernel and dispatch): " + _VLLM_CAR_SRC,
        latency_us_on=_hopper_allreduce_latency("sglang", "0.5.14", "2.5 / 2.7 / 3.5 us", 2.7),
    ),
    decode_attention_on=SGLANG_HOPPER_DECODE,
    fused_add_norm=True,
    fused_add_norm_source=(
        "sgl-project/sglang python/sglang/srt/layers/layernorm.py @ f439f6df RMSNorm."
        "forward_cuda: 'fused_add_rmsnorm(x, residual, self.weight.data, "
        "self.variance_epsilon)' (flashinfer.norm; the 0.3.0 PyPI wheel the same, called by "
        "LlamaDecoderLayer.forward through post_attention_layernorm(hidden_states, residual); "
        "0.5.x the same call into sgl_kernel).  The FP8 input casts stay kernels of their own: "
        "no torch.compile by default (server_args.py enable_torch_compile = False, 0.3.0 "
        "wheel)"
    ),
)

#: SGLang before its overlap scheduler (0.3.x; ``--enable-overlap-schedule`` appeared in
#: October 2024 and became the default in 0.4, sgl-project/sglang PR #2067, 2024-11-18): the
#: scheduler loop (``ModelTpServer.forward_step`` in ``srt/managers/tp_worker.py``) receives
#: requests, builds the batch, launches the forward, waits for the sampled ids and streams
#: them before it builds the next batch, so its host time adds to every step.  With streaming
#: requests the loop returns to the scheduler after every decode step (``forward_step``: the
#: ``num_continue_decode_steps`` (10) loop breaks ``if self.out_pyobjs and
#: self.running_batch.has_stream()``).  Named apart because the published SGLang 0.3.0 runs
#: (``sglang-v0.3.0-vs-vllm-v0.6.0``) are in the validation set.
SGLANG_V0_3 = replace(
    SGLANG,
    name="sglang-0.3",
    version="v0.3.x (synchronous scheduler: no overlap of CPU scheduling with the GPU)",
    decode_attention_on=(),  # 0.3's FlashInfer kernel: the A100 terms, not today's tables
    custom_allreduce=(
        None
        if SGLANG.custom_allreduce is None
        else replace(SGLANG.custom_allreduce, latency_us_on=())
    ),
    graph_max_batch=Sourced(
        160.0,
        "sglang 0.3.0 PyPI wheel, srt/model_executor/model_runner.py ModelRunner."
        "init_cuda_graphs: batch_size_list = [1, 2, 4] + [i * 8 for i in range(1, 21)] "
        "(largest 160, whatever the GPU memory or TP), CudaGraphRunner.can_run: batches "
        "above it run eager",
    ),
    step_host_us=Sourced(
        1500.0,
        "sgl-project/sglang PR #1738 (2024-10-21, 'Faster overlap mode scheduler'): hiding "
        "the scheduler's host time behind the GPU 'can bring 10% throughput improvement even "
        "when radix cache is turned off' (Llama-3.1-8B, ShareGPT), i.e. the synchronous loop "
        "exposes ~10% of a step: 1.1-2.3 ms on the 11-23 ms decode steps of the published "
        "SGLang 0.3.0 runs (8B on A100, 70B TP4 on H100); 1.5 ms, the same scale as vLLM's "
        "host time per step (VLLM.step_host_us), one global value for every GPU and model",
    ),
)

#: TensorRT-LLM's residual add + RMSNorm in a TensorRT engine: not fused by any source read.
_TRT_ADD_NORM = (
    "TensorRT engines: the residual add and RMSNorm are layers of the TensorRT graph; whether "
    "the builder fuses them is not read from a source, and the plugin that does "
    "(reduce_fusion: all-reduce + residual + RMSNorm, TP > 1 only) is off in trtllm-bench "
    "(NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/build.py @ 000a01de: '# "
    "build_config.plugin_config._reduce_fusion = True', commented out), so the two kernels "
    "are priced.  The PyTorch backend (0.21 / 1.0) does fuse them "
    "(tensorrt_llm/_torch/models/modeling_llama.py, 1.x, commit not pinned, "
    "LlamaDecoderLayer.forward: "
    "'self.post_attention_layernorm(hidden_states, residual)', or with TP and hidden_size > "
    "4096 AllReduceFusionOp.RESIDUAL_RMS_NORM_QUANT_FP8; tensorrt_llm/_torch/modules/"
    "rms_norm.py: 'flashinfer_fused_add_rmsnorm(hidden_states, residual, ...)'): not the "
    "engine this profile "
    "describes, though its published 0.21 / 1.0 runs are priced with it"
)

#: TensorRT-LLM 0.9's C++ session runtime (``GptSession``) as ``gptSessionBenchmark`` runs it:
#: one static batch, non-paged KV cache, no CUDA graphs, precompiled XQA cubins only.  Named
#: apart from :data:`TRTLLM` (the executor of 0.11 and later) because the published 0.9 tables
#: (``shared/data/published-inference.json``, the ``trtllm-v0.9.0-perf`` cases) ran it.
TRTLLM_SESSION_09 = EngineProfile(
    name="trtllm-0.9",
    version="0.9 C++ session runtime as gptSessionBenchmark runs it (no CUDA graphs)",
    smooth_gemm=True,
    cuda_graphs=Sourced(
        0.0,
        "NVIDIA/TensorRT-LLM benchmarks/cpp/gptSessionBenchmark.cpp @ 3c44cb97: "
        "sessionConfig.cudaGraphMode only with --enable_cuda_graph (absent from the "
        "performance.md commands)",
    ),
    graph_max_batch=Sourced(0.0, "no CUDA graphs (see cuda_graphs)"),
    prefill_piecewise_graphs=Sourced(0.0, "no CUDA graphs (see cuda_graphs)"),
    launch_us=Sourced(
        3.8,
        "NVIDIA Technical Blog 'Getting Started with CUDA Graphs' (A. Gray, 2019): 3.8 us per "
        "kernel issued back to back from C++ (TensorRT enqueues its kernels from C++)",
    ),
    step_host_us=Sourced(
        300.0,
        "cpp/tensorrt_llm/runtime/gptSession.cpp @ 027cd518 generateSingleBatch: every step "
        "ends in shouldStopSync (cudaEventSynchronize), then the host prepares the next step "
        "(prepareNextStep, setInputTensors) before enqueueing it: an idle GPU gap per step; "
        "0.3 ms is an assumption (no published measurement), the scale of a Python-free "
        "host round trip with a handful of small H2D copies",
    ),
    decode_attention_kernel="masked MHA (decoderMaskedMultiheadAttention) / XQA",
    decode_attention_efficiency=Sourced(
        0.84,
        f"{AIC}/attention/trtllm/1.0.0/generation_attention_perf.parquet: MHA rows "
        "(one KV head per query head) at >= 4 MB of KV, fit t = fixed + bytes / (eff x BW)",
    ),
    decode_attention_fixed_us=Sourced(
        14.2, f"{AIC}/attention/trtllm/1.0.0/generation_attention_perf.parquet: batch 1, < 2 MB"
    ),
    prefill_attention_fixed_us=Sourced(
        13.7,
        f"{AIC}/attention/trtllm/1.0.0/context_attention_perf.parquet: batch 1, 16-token prompt "
        "(its shortest), 32 heads x 128 (13.7 us; H100 / H200 TensorRT-LLM 1.3 tables: 13.4 us)",
    ),
    group_aware_sizes=(8,),
    group_aware_all=False,
    group_aware_source=(
        "TensorRT-LLM 0.7-0.9 precompiled XQA cubins xqa_kernel_dt_fp16_d_128_beam_1_kvt_*_"
        "nqpkv_8_* (head_dim 128, 8 query heads per KV head; decoderXQAImplPrecompiled "
        "supportConfig looks the group up); other groups run the masked MHA kernel, one CTA "
        "per (query head, sequence), reading its KV head once per query head"
    ),
    sampling_bytes_per_logit=Sourced(
        8.0,
        "gptSessionBenchmark: greedy (topK 1): the decoder's top-k kernel reads the fp32 "
        "logits once and writes one token per row (4 + 4 B)",
    ),
    custom_allreduce=TRTLLM_CUSTOM_ALLREDUCE,
    fused_add_norm_source=_TRT_ADD_NORM,
    fused_activation_quant=True,
    fused_activation_quant_source=(
        "NVIDIA/TensorRT-LLM tensorrt_llm/quantization/layers.py FP8Linear / FP8RowLinear: the "
        "input cast is a TensorRT quantize layer (functional.quantize -> IQuantizeLayer) in the "
        "engine graph; TensorRT Developer Guide, 'Explicit Quantization', Q/DQ layer fusion: an "
        "output Q is fused into the preceding operator (norm, gated activation) and the FP8 "
        "GEMM reads its 1-byte output (the norm-fed QKV / MLP-up and the activation-fed "
        "MLP-down inputs)"
    ),
)

_XQA_JIT = (
    "NVIDIA/TensorRT-LLM docs/source/release-notes.md @ 001eaece: 0.11.0 'Added Hopper qgmma "
    "kernel to XQA JIT codepath' (the XQA kernel compiled for the model's own head / group "
    "configuration: decoderXQAImplJIT, supportConfigHMMA / supportConfigQGMMA), 0.16.0 "
    "'Removed enable_xqa argument' (XQA always on) and 'Added head size 64 support for the XQA "
    "kernel': every GQA group at head_dim 64 / 128 reads a KV head once"
)

#: TensorRT-LLM's C++ executor (0.11 to 0.17, TensorRT engines: ``trtllm-bench``, the Triton
#: ``tensorrtllm_backend``, ``trtllm-serve``) -- what differs from :data:`TRTLLM_SESSION_09`:
#: in-flight batching over a paged KV cache (the simulator's scheduler, not a step-cost term);
#: the XQA decode kernel JIT-compiled for every GQA group (``_XQA_JIT``); CUDA graphs still off
#: by default.  Host time per step: the executor's scheduling and decoder setup, no published
#: measurement either (same assumption).
TRTLLM = replace(
    TRTLLM_SESSION_09,
    name="trtllm",
    version="0.11-0.17 C++ executor, TensorRT engines (in-flight batching, paged KV cache)",
    cuda_graphs=Sourced(
        0.0,
        "cpp/include/tensorrt_llm/executor/executor.h ExtendedRuntimePerfKnobConfig("
        "multiBlockMode = true, enableContextFMHAFP32Acc = false, cudaGraphMode = false); "
        "triton tensorrtllm_backend model_instance_state.cc: cuda_graph_mode false unless set",
    ),
    step_host_us=Sourced(
        300.0,
        "executor loop (batch manager forwardAsync: schedule, prepare the paged-KV inputs, "
        "enqueue, decoder setup) runs between steps without an overlap scheduler in the "
        "TensorRT-engine path; 0.3 ms is the session runtime's assumption, kept (no published "
        "measurement)",
    ),
    decode_attention_kernel="XQA (JIT, every GQA group) / masked MHA for MHA models",
    # No Hopper decode-attention terms: fitted the same way on the TensorRT-LLM 1.3.0rc20
    # tables (PyTorch flow) they leave a wide spread (mean |ln error| 0.38-0.42) and make the
    # published TensorRT-LLM cases worse end to end (benchmarks/validate_serving.py: TPOT /
    # ITL 10.3% -> 10.7% with the 16-bit-KV terms, FP8 max-throughput 0.21 / 1.0 rows 1-7
    # points slower with the FP8-KV ones), so this profile keeps the A100 terms above.
    prefill_attention_efficiency_on=_a100_prefill_attention(
        "trtllm", "1.0.0", "torch_flow", 0.67, "4,864 rows, 0.204 (no efficiency: 0.636)"
    ),
    custom_allreduce=replace(
        TRTLLM_CUSTOM_ALLREDUCE,
        latency_us_on=_hopper_allreduce_latency("trtllm", "1.3.0rc20", "2.7 / 3.0 / 3.3 us", 3.0),
    ),
    group_aware_sizes=(),
    group_aware_all=True,
    group_aware_source=_XQA_JIT,
    fp8_context_fmha=True,
    fused_activation_quant_source=(
        TRTLLM_SESSION_09.fused_activation_quant_source
        + "; the out-projection input too: trtllm-bench (tensorrt_llm/bench/build/build.py, "
        "0.1x: 'use_fp8_context_fmha = True if quant_algo == QuantAlgo.FP8') builds FP8 "
        "engines with FP8 context FMHA, whose kernel writes the FP8 output "
        "(attention_output_orig_quant_scale in tensorrt_llm/layers/attention.py)"
    ),
)

#: Profiles by name (``auto`` is resolved by :func:`resolve`).
ENGINES: dict[str, EngineProfile] = {
    p.name: p for p in (VLLM, VLLM_V0_06, SGLANG, SGLANG_V0_3, TRTLLM, TRTLLM_SESSION_09, ROOFLINE)
}


def resolve(name: str) -> EngineProfile:
    """The profile for ``InferenceWorkload.serving_engine``: ``auto`` is vLLM (module docstring)."""
    return ENGINES["vllm" if name == "auto" else name]


def gemm_time(flops: float, nbytes: float, flops_per_s: float, bytes_per_s: float) -> float:
    """One GEMM kernel: ``GEMM_KERNEL_FIXED_US + (t_c^p + t_m^p)^(1/p)`` (module docstring).

    ``flops_per_s``: the compute roof (peak x ``gemm_efficiency`` x clock); ``bytes_per_s``:
    the memory roof (HBM bandwidth x ``memory_efficiency``).
    """
    if flops <= 0 and nbytes <= 0:
        return 0.0
    p = GEMM_OVERLAP_EXPONENT.value
    tc = flops / flops_per_s
    tm = nbytes / bytes_per_s
    return GEMM_KERNEL_FIXED_US.value * 1e-6 + float((tc**p + tm**p) ** (1.0 / p))


#: L2 / HBM bandwidth ratio the re-reads of a group-unaware decode kernel run at: A100 L2 reads
#: 5,120 B/clk (NVIDIA A100 Tensor Core GPU Architecture whitepaper, 2020, "L2 cache") x 1.41 GHz
#: = 7.2 TB/s against 2.04 TB/s of HBM2e: 3.5x.  Applied to every GPU without a sourced L2
#: read rate in :data:`L2_READ_GBPS` (H100 / H200: none yet -- the H100 whitepaper gives no L2
#: bandwidth and no measurement of it is recorded here).
L2_TO_HBM_BANDWIDTH = Sourced(
    3.5, "NVIDIA A100 whitepaper (2020): 5,120 B/clk L2 x 1.41 GHz / 2,039 GB/s"
)


#: L2 read bandwidth per GPU (GB/s), where a source gives it; the others take the A100's L2 /
#: HBM ratio (:data:`L2_TO_HBM_BANDWIDTH`, :func:`l2_to_hbm_ratio`).
L2_READ_GBPS: dict[str, Sourced] = {
    "A100-SXM4-80GB": Sourced(
        7219.0, "NVIDIA A100 whitepaper (2020), 'L2 cache': 5,120 B/clk x 1.41 GHz boost"
    ),
    "A100-SXM4-40GB": Sourced(
        7219.0, "NVIDIA A100 whitepaper (2020), 'L2 cache': 5,120 B/clk x 1.41 GHz boost"
    ),
}


def l2_to_hbm_ratio(gpu_name: str, hbm_GBps: float) -> float:
    """L2 over HBM read bandwidth of ``gpu_name``: its :data:`L2_READ_GBPS` entry over
    ``hbm_GBps``, else the A100's ratio (:data:`L2_TO_HBM_BANDWIDTH`)."""
    l2 = L2_READ_GBPS.get(gpu_name)
    if l2 is None or hbm_GBps <= 0:
        return L2_TO_HBM_BANDWIDTH.value
    return max(1.0, l2.value / hbm_GBps)


def kv_reads(
    profile: EngineProfile,
    q_heads: float,
    kv_heads: float,
    head_dim: int,
    l2_ratio: float | None = None,
) -> float:
    """HBM-equivalent reads of each cached K/V element by the decode kernel: 1 for a
    group-aware kernel; for one that is not (a CTA per query head), the group's CTAs of one
    sequence run side by side, so the first reads the KV head from HBM and the others hit L2:
    ``max(1, group / l2_ratio)`` (whichever of HBM and L2 traffic takes longer); ``l2_ratio``
    the GPU's L2 / HBM read bandwidth (:func:`l2_to_hbm_ratio`; None: the A100's)."""
    group = max(1.0, q_heads / max(kv_heads, 1.0))
    if profile.group_aware_all:
        return 1.0
    if head_dim == 128 and round(group) in profile.group_aware_sizes:
        return 1.0
    ratio = L2_TO_HBM_BANDWIDTH.value if l2_ratio is None else l2_ratio
    return max(1.0, group / ratio)


def decode_attention_time(
    profile: EngineProfile,
    kv_bytes: float,
    reads: float,
    bytes_per_s: float,
    *,
    gpu: str | None = None,
    kv_precision: str = "bf16",
    sequence_kv_heads: float = 0.0,
) -> float:
    """Paged-KV decode attention of one layer:
    ``fixed + sequence_kv_heads x per_sequence_kv_head + kv_bytes x reads / (BW x eff)``.

    ``kv_bytes``: the K and V of every context token of every sequence on this GPU;
    ``bytes_per_s``: the GPU's HBM bandwidth (peak); ``gpu`` and ``kv_precision``: the GPU's
    catalog name and the cache's dtype, which pick the engine's measured terms
    (:meth:`EngineProfile.decode_attention`; None: the profile's default terms);
    ``sequence_kv_heads``: sequences x KV heads on this GPU (the
    kernel's work items, each with its own page-table walk, softmax reduction and output
    write: the per-sequence cost the tables show at short KV).
    """
    terms = profile.decode_attention(gpu, kv_precision)
    eff = terms.efficiency.value
    fixed = terms.fixed_us.value * 1e-6
    per_item = terms.per_sequence_kv_head_ns.value * 1e-9 * sequence_kv_heads
    return fixed + per_item + kv_bytes * reads / (bytes_per_s * eff)


def _first(rules: tuple[tuple[int, float], ...], n: int) -> float | None:
    for max_n, value in rules:
        if n <= max_n:
            return value
    return None


def custom_allreduce_algorithm(
    profile: EngineProfile, nbytes: float, n: int, link: LinkTier
) -> Literal["oneshot", "twoshot", "nccl"]:
    """Which all-reduce the engine runs for ``nbytes`` over ``n`` GPUs on ``link``."""
    car = profile.custom_allreduce
    if car is None or n not in car.world_sizes:
        return "nccl"
    if n > 2 and link.name not in ("nvlink", "nvswitch"):
        return "nccl"  # more than two GPUs need a full NVLink mesh
    if car.calibrated_max_bytes is not None:  # a calibration's measured crossover to NCCL
        return "oneshot" if nbytes <= car.calibrated_max_bytes else "nccl"
    limit = _first(car.max_bytes, n)
    trt = profile.name.startswith("trtllm")
    if limit is None or nbytes > limit or (not trt and nbytes >= limit):
        return "nccl"  # vLLM: inp_size < max_size; TensorRT-LLM: <= workspace
    below = _first(car.oneshot_below, n)
    return "oneshot" if below is not None and nbytes < below else "twoshot"


def allreduce_time(
    profile: EngineProfile, nbytes: float, n: int, link: LinkTier, gpu: str | None = None
) -> float:
    """The engine's all-reduce of ``nbytes`` over ``n`` GPUs (module docstring); ``gpu``: the
    GPU's catalog name, which picks the kernel's measured latency on it
    (:meth:`CustomAllReduce.latency`; None: ``latency_us``)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    algo = custom_allreduce_algorithm(profile, nbytes, n, link)
    if algo == "nccl" or profile.custom_allreduce is None:
        return ring_allreduce_time(nbytes, n, link)
    car = profile.custom_allreduce
    alpha = car.latency(gpu).value * 1e-6
    if algo == "oneshot":
        return alpha + (n - 1) * nbytes / (link.bytes_per_s * car.oneshot_link_fraction.value)
    bw = link.bytes_per_s * car.twoshot_link_fraction.value
    return 2.0 * alpha + 2.0 * (n - 1) / n * nbytes / bw


def graphed(profile: EngineProfile, batch: int, memory_GB: float, tp: int) -> bool:
    """Whether a decode step of ``batch`` sequences replays a captured CUDA graph."""
    if not profile.cuda_graphs.value:
        return False
    limit = profile.graph_max_batch.value
    if profile.name == "sglang":  # 0.4+: by GPU memory and TP; 0.3: a fixed list
        gib = memory_GB * 1e9 / 2**30
        if gib < 35:
            limit = 24 if tp < 4 else 80
        elif gib < 60:
            limit = 32 if tp < 4 else 160
        else:
            limit = 256 if tp < 4 else 512
    return batch <= limit


#: Host launches per layer of a piecewise-graphed prefill: the eager attention op and the replay
#: of the graph piece that follows it (vllm/compilation: the model is split at each attention
#: op, ``splitting_ops``, one piece per layer).
PIECEWISE_LAUNCHES_PER_LAYER = 2


def prefill_piecewise(profile: EngineProfile, tokens: int, memory_GB: float, tp: int) -> bool:
    """Whether a prefill (or mixed) forward of ``tokens`` tokens replays piecewise graphs."""
    return bool(profile.prefill_piecewise_graphs.value) and graphed(profile, tokens, memory_GB, tp)


def host_bound(profile: EngineProfile, gpu_s: float, kernels: float, is_graphed: bool) -> float:
    """A pass of ``kernels`` kernels: its GPU time, or the host's issue time when longer
    (eager passes only; a graph replay is one launch)."""
    if is_graphed or profile.launch_us.value <= 0:
        return gpu_s
    return max(gpu_s, kernels * profile.launch_us.value * 1e-6)


def sampling_time(profile: EngineProfile, rows: float, vocab: float, bytes_per_s: float) -> float:
    """The sampler's passes over ``rows`` x ``vocab`` fp32 logits (HBM-bound)."""
    return rows * vocab * profile.sampling_bytes_per_logit.value / bytes_per_s


def prefill_attention_fixed_s(profile: EngineProfile) -> float:
    """The context-attention op's fixed latency of one layer's prefill forward, seconds."""
    return profile.prefill_attention_fixed_us.value * 1e-6


def step_overhead_s(profile: EngineProfile) -> float:
    """Host time per step the GPU waits for (``step_host_us``), seconds."""
    return profile.step_host_us.value * 1e-6


def with_calibration(
    profile: EngineProfile,
    *,
    decode_attention_efficiency: float | None = None,
    decode_attention_fixed_us: float | None = None,
    allreduce_latency_us: float | None = None,
    oneshot_link_fraction: float | None = None,
    allreduce_max_bytes: float | None = None,
    source: str = "calibration",
) -> EngineProfile:
    """``profile`` with measured serving terms (a calibration's, e.g. read from AIConfigurator's
    tables by ``shardwise profile --from-aiconfigurator``) in place of its defaults; the
    roofline profile is returned unchanged.

    ``allreduce_latency_us``, ``oneshot_link_fraction`` (the calibration's
    ``allreduce_small_bandwidth_GBps`` over the TP link's) and ``allreduce_max_bytes``
    (``allreduce_small_max_bytes``) are one measured fit ``alpha + (n-1) S / B`` valid up to
    the crossover with NCCL: with ``allreduce_max_bytes`` every message up to it is priced by
    that line and every larger one by NCCL (:attr:`CustomAllReduce.calibrated_max_bytes`)."""
    if not profile.smooth_gemm:
        return profile
    out = profile
    if decode_attention_efficiency is not None or decode_attention_fixed_us is not None:
        out = replace(out, decode_attention_on=())  # the calibration's fit is the GPU's own
    if decode_attention_efficiency is not None:
        out = replace(out, decode_attention_efficiency=Sourced(decode_attention_efficiency, source))
    if decode_attention_fixed_us is not None:
        out = replace(out, decode_attention_fixed_us=Sourced(decode_attention_fixed_us, source))
    car = out.custom_allreduce
    if car is not None and allreduce_latency_us is not None:
        car = replace(car, latency_us=Sourced(allreduce_latency_us, source), latency_us_on=())
    if car is not None and oneshot_link_fraction is not None:
        car = replace(car, oneshot_link_fraction=Sourced(oneshot_link_fraction, source))
    if car is not None and allreduce_max_bytes is not None:
        car = replace(car, calibrated_max_bytes=float(allreduce_max_bytes))
    return replace(out, custom_allreduce=car)
