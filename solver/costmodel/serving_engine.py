"""Serving-engine step model: what vLLM, SGLang and TensorRT-LLM add to the roofline of a step.

A serving step (one prefill or one decode forward) costs more than the roofline of its
operators: kernels do not reach both their compute and memory roofs near the ridge point,
every kernel has a fixed fill/drain latency, the decode attention kernel reads the paged KV
cache at its own HBM efficiency, the tensor-parallel all-reduces of a decode step are a few
kilobytes and latency-bound (the engines run their own one-shot / two-shot kernels for
them), the host schedules, launches (or replays a CUDA graph) and samples every step.  One
:class:`EngineProfile` per engine names each of these terms with its source.  This module holds
the types, the global constants and the functions that price each term from a profile; the
profiles themselves (vLLM, SGLang, TensorRT-LLM, their versions run by published benchmarks,
and ``roofline``, the pure roofline of the cost model before issue 16 item 1, kept for
comparison) are data in :mod:`solver.costmodel.engine_profiles`, with which one prices a
workload (:func:`~solver.costmodel.engine_profiles.resolve`).

Terms (used by :func:`solver.costmodel.serving_compute.decode_block_time`,
:func:`~solver.costmodel.serving_compute.prefill_block_time`,
:func:`~solver.costmodel.serving_compute.engine_head_time` and the step overhead below):

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

from dataclasses import dataclass, fields, replace
from typing import Literal

from .comm import LinkTier
from .comm import allreduce_time as ring_allreduce_time

__all__ = [
    "FUSED_ADD_NORM_BYTES",
    "GEMM_KERNEL_FIXED_US",
    "GEMM_OVERLAP_EXPONENT",
    "L2_TO_HBM_BANDWIDTH",
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
    "sampling_time",
    "step_overhead_s",
    "with_calibration",
]

EngineName = Literal[
    "auto", "vllm", "vllm-0.6", "sglang", "sglang-0.3", "trtllm", "trtllm-0.9", "roofline"
]

#: The measured table the GEMM constants below and the A100 constants of the engine profiles
#: (:mod:`.engine_profiles`) are read from or fitted to:
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
