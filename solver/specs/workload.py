"""The workload specs: :class:`TrainingWorkload`, :class:`InferenceWorkload` (with its
traffic's :class:`LengthDistribution`) and the discriminated union :data:`Workload`, plus the
knob vocabularies (``Recompute``, ``Schedule``, ``Precision``, ``Quantization``, ...)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import (
    _FLOAT,
    _INT,
    MAX_CHOICES,
    MAX_TOKENS,
    MAX_TOKENS_PER_STEP,
    Batch,
    Flag,
    Fraction,
    Int,
    SloMs,
    TokenRate,
    Tokens,
    _Spec,
)

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
