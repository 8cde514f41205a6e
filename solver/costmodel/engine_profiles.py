"""The serving engines' step-model profiles, as data: one
:class:`~solver.costmodel.serving_engine.EngineProfile` per engine and version, every constant a
:class:`~solver.costmodel.serving_engine.Sourced` value with where it comes from (the engine's
source at a commit, NVIDIA's AIConfigurator tables, a named assumption).  What each term means
and how a step is priced from a profile: :mod:`solver.costmodel.serving_engine`.

Which engine prices a workload: ``InferenceWorkload.serving_engine`` (:func:`resolve`);
``"auto"`` is vLLM (the default inference engine, whose launchable plan space covers SGLang's
and TensorRT-LLM's: ``solver.engines.covering_engines``).  Versioned profiles for published
runs of older engines: ``trtllm`` is the C++ executor of 0.11 and later, ``trtllm-0.9`` the
0.9 session runtime NVIDIA's 0.9 tables ran (:data:`TRTLLM_SESSION_09`); ``vllm`` is the V1
engine, ``vllm-0.6`` the V0 engine of 0.6 (:data:`VLLM_V0_06`); ``sglang`` is SGLang with
its overlap scheduler (0.4 and later), ``sglang-0.3`` the synchronous scheduler loop before it
(:data:`SGLANG_V0_3`); the simulator's step cost takes any of them by name
(``roofline_step_cost(..., engine=)``).
"""

from __future__ import annotations

import math
from dataclasses import replace

from .serving_engine import AIC, CustomAllReduce, DecodeAttentionTerms, EngineProfile, Sourced

__all__ = [
    "AIC_HOPPER",
    "ENGINES",
    "ROOFLINE",
    "SGLANG",
    "SGLANG_HOPPER_DECODE",
    "SGLANG_V0_3",
    "TRTLLM",
    "TRTLLM_CUSTOM_ALLREDUCE",
    "TRTLLM_SESSION_09",
    "VLLM",
    "VLLM_CUSTOM_ALLREDUCE",
    "VLLM_HOPPER_DECODE",
    "VLLM_V0_06",
    "resolve",
]

_VLLM_CAR_SRC = (
    "vllm-project/vllm csrc/custom_all_reduce.cuh @ 036bb685 (CustomAllreduce::allreduce: "
    "world 2 -> 1-stage; full NVLink: world <= 4 and < 512 KiB or world <= 8 and < 256 KiB -> "
    "1-stage, else 2-stage); vllm/distributed/device_communicators/custom_all_reduce.py @ "
    "00d618aa (max_size 8192 * 1024, world sizes 2/4/6/8, one node, > 2 GPUs need NVLink)"
)


#: NVIDIA's AIConfigurator operator tables for the Hopper GPUs (same wheel as :data:`AIC`): the
#: engines people run today, ``systems/data/{h100_sxm,h200_sxm}/<op>/<backend>/<version>``.
AIC_HOPPER = "aiconfigurator-core 0.12.0 (PyPI), systems/data"
#: AIConfigurator's Hopper systems and the catalog GPU each one measured.
_AIC_HOPPER_GPUS = {"h100_sxm": "H100-SXM5-80GB", "h200_sxm": "H200-SXM-141GB"}


def _hopper_allreduce_latency(
    backend: str, version: str, medians: str, value: float
) -> tuple[tuple[str, Sourced], ...]:
    """``latency_us_on`` entries: the engine's custom all-reduce latency on H100 and H200 SXM,
    the median of the CUDA-graph rows of at most 8 KB per TP size, ``medians`` (TP 2 / 4 / 8,
    H100; H200 the same within 0.1-0.3 us), rounded to one value."""
    out = []
    for system, gpu in _AIC_HOPPER_GPUS.items():
        src = (
            f"{AIC_HOPPER}/{system}/comm/{backend}/{version}/custom_allreduce_perf.parquet: "
            f"CUDA-graph rows <= 8 KB, median per TP size {medians} (H100)"
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
    out = []
    for (system, kv), (fixed, per_item, eff, quality) in fits.items():
        src = (
            f"{AIC_HOPPER}/{system}/attention/{backend}/{version}/generation_attention_perf"
            f".parquet ({kernel}, {kv} KV): {_DECODE_FIT}; {quality}"
        )
        out.append(
            (
                _AIC_HOPPER_GPUS[system],
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
