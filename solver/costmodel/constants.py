"""Named physical constants of the cost model, each with its source.

Nothing here is fitted per case.  Per-GPU efficiency factors (achievable fraction of peak for
GEMMs and for HBM traffic) live in the GPU catalog (``solver/catalog/gpus.yaml``) so that a
calibration file can override them; the constants below are properties of the software stack
(Megatron-LM / PyTorch / NCCL) that hold across GPU types.
"""

from __future__ import annotations

# --- realised GEMM throughput --------------------------------------------------------------
#: Fraction of the catalog's achievable GEMM throughput (``gemm_efficiency``: the measured
#: maximum-achievable-matmul-FLOPS of a GPU on its best shapes, MAMF) that a transformer's
#: GEMMs realise inside a real training or inference step: operator shapes smaller than the
#: MAMF sweep's best, wave/tile quantisation, kernel-launch gaps and imperfect stream
#: overlap.  One global number for every GPU type, fitted once (with the A100's
#: memory_efficiency, the only other free parameter) to the ten rows of Narayanan et al. 2021
#: Table 1 by ``benchmarks/published_runs.py --fit``.
#: Fitted value 0.748 (mean |error| 2.3%, max 5.6% on Table 1; out of sample 2.0% / 4.0% on the
#: six PTD rows of Table 2).  Cross-check: A100 0.87 x 0.748 = 65% of peak on GEMMs, H100
#: 0.80 x 0.748 = 60%, consistent with the 38-43% BF16 MFU Llama 3 405B reports on H100
#: (Llama 3 paper, Table 4) once bubbles, communication and elementwise work are added.
GEMM_REALIZATION_FRACTION = 0.748

# --- numeric formats ------------------------------------------------------------------------
#: Bytes per element of each compute precision's tensors (weights, activations, KV cache).
#: fp8 GEMM inputs are 1 byte (Micikevicius et al. 2022, "FP8 Formats for Deep Learning").
#: ``fp8_e4m3`` and ``fp8_e5m2`` name the two FP8 encodings of a KV cache apart (``fp8`` is E4M3).
BYTES_PER_ELEMENT: dict[str, float] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "fp32": 4.0,
}

# --- serving quantization formats (solver/costmodel/quant.py FORMATS reads these) ---------
#: Bits of one 16-bit scale (fp16/bf16) and of one 8-bit scale (FP8 E4M3 or E8M0).
SCALE_BITS_16 = 16.0
SCALE_BITS_8 = 8.0
#: Group size of the 4-bit and 8-bit integer weight-only checkpoints the engines serve:
#: AutoAWQ ``q_group_size`` 128 and GPTQ ``group_size`` 128, one fp16 scale per group of 128
#: input channels (Lin et al. 2024, AWQ, Sec. 4; Frantar et al. 2023, GPTQ, Sec. 5; the Marlin
#: README counts "the 0.125 bits storage overhead of the group scales": 4 + 16/128).
INT_WEIGHT_GROUP = 128
#: AWQ is asymmetric: one 4-bit zero point per group as well (AutoAWQ ``zero_point: true``,
#: ``qzeros`` packed eight to an int32): + 4/128 bits per weight.  GPTQ as Marlin serves it is
#: symmetric (no zero points; vLLM ``gptq_marlin`` requires ``sym``).
AWQ_ZERO_POINT_BITS = 4.0
#: NVFP4: E2M1 values with one FP8 E4M3 scale per block of 16 (plus one fp32 scale per tensor,
#: negligible): 4 + 8/16 = 4.5 bits (NVIDIA, "Introducing NVFP4 for Efficient and Accurate
#: Low-Precision Inference", developer blog, June 2025; TensorRT-LLM ``QuantAlgo.NVFP4``).
NVFP4_BLOCK = 16
#: MXFP4 (OCP Microscaling Formats v1.0, Sec. 5.3, Table 1): E2M1 values with one E8M0 shared
#: scale per block of 32: 4 + 8/32 = 4.25 bits.
MXFP4_BLOCK = 32

#: Activations that are stored for backward and exchanged between GPUs stay 16-bit even in fp8
#: training (Transformer Engine keeps activations in bf16 and casts only GEMM inputs).
ACTIVATION_BYTES = 2.0

#: Dropout masks are stored as one byte per element (Korthikanti et al. 2022, Sec. 4.1).
DROPOUT_MASK_BYTES = 1.0

#: fp32 logits kept by Megatron's vocab-parallel cross entropy: 4 bytes per logit
#: (Korthikanti et al. 2022, Sec. 4.3: "4sbv/t").
LOGIT_BYTES = 4.0

# --- elementwise (non-GEMM) HBM traffic, bytes per element, forward ------------------------
#: LayerNorm / RMSNorm: read the input, write the output (16-bit): 2 + 2 bytes per element.
NORM_BYTES = 4.0
#: Megatron fused bias-dropout-add: read the branch output and the residual (2 + 2), write the
#: sum (2) and the dropout mask (1): 7 bytes per element (Megatron-LM fused_bias_dropout_add).
BIAS_DROPOUT_ADD_BYTES = 7.0
#: GeLU (fused bias-GeLU): read f-wide pre-activation, write f-wide output: 2 + 2 bytes/element.
GELU_BYTES = 4.0
#: SwiGLU: read the gate and up halves (2 + 2), write the product (2): 6 bytes per f-element.
SWIGLU_BYTES = 6.0
#: Attention core without flash attention (Megatron-LM 2021/2022, the published runs): fused
#: scale-mask-softmax reads and writes the a x s x s scores (2 + 2 bytes), attention dropout
#: reads, writes and stores a 1-byte mask (2 + 2 + 1): 9 bytes per score element.
SOFTMAX_DROPOUT_BYTES = 9.0
#: Softmax alone (inference, no dropout): read and write the scores, 2 + 2 bytes per element.
SOFTMAX_BYTES = 4.0
#: Embedding lookup + learned position add + embedding dropout: gather read/write (2 + 2),
#: position read + add write (2 + 2), dropout read/write/mask (2 + 2 + 1): 13 bytes/element.
EMBEDDING_BYTES = 13.0
#: Vocab-parallel cross entropy (Megatron-LM ``vocab_parallel_cross_entropy``): read 16-bit
#: logits (2), write/read fp32 logits (4 + 4), write/read exp (4 + 4): 18 bytes per logit.
CROSS_ENTROPY_BYTES = 18.0

#: Backward elementwise kernels read the saved input and the output gradient and write the
#: input gradient, i.e. about twice the forward traffic (same convention as Calculon,
#: calculon-ai/calculon ``layers.py``: backward memory = 2x forward for elementwise layers).
BACKWARD_ELEMENTWISE_FACTOR = 2.0

#: Rotary position embedding (RoPE, Su et al. 2021) of Q and K: a fused kernel reads and
#: writes every Q and K element once in 16 bit, 2 + 2 bytes (Transformer Engine
#: ``fused_rope``, Megatron-Core ``apply_rotary_pos_emb`` with rotary fusion); the cos/sin
#: tables are s x head_dim, negligible.  Models with learned positions have no RoPE.
ROPE_BYTES = 4.0

# --- eager PyTorch elementwise kernels (Stack.kernels == "eager") ----------------------------
# Forward HBM bytes per element of the op sequences in Hugging Face transformers 5.17 (the
# version measured on the H100, benchmarks/validation/modern/) -- torchtitan's eager modules
# are the same sequences -- counted kernel by kernel (reads + writes, 16-bit = 2, fp32 = 4).
#: LlamaRMSNorm: x.to(fp32) 2+4, pow(2) 4+4, mean 4, x * rsqrt 4+4, .to(bf16) 4+2, weight * x
#: 2+2 = 36 (a fused RMSNorm: 4).
EAGER_RMSNORM_BYTES = 36.0
#: apply_rotary_pos_emb per Q/K element: x * cos 2+2, rotate_half (neg of one half 1+1, cat
#: 2+2), * sin 2+2, add 4+2 = 20 (fused: ``ROPE_BYTES`` 4).
EAGER_ROPE_BYTES = 20.0
#: LlamaMLP act_fn(gate) * up per ffn element: silu 2+2, mul 4+2 = 10 (fused SwiGLU: 6).
EAGER_SWIGLU_BYTES = 10.0
#: logits.float() 2+4, log_softmax 4+4 plus its max and sum passes 4+4 = 22 per logit
#: (Megatron's fused vocab-parallel loss: ``CROSS_ENTROPY_BYTES`` 18); backward: nll_loss's
#: gradient zero-filled in fp32 before the target entries are scattered 4 (PyTorch
#: aten/src/ATen/native/cuda/Loss.cu ``nll_loss_backward_out_cuda``: ``grad_input.zero_()``),
#: log-softmax backward 4+4+4+4 (SoftMax.cu ``cunn_SoftMaxBackward``: a sum pass over the
#: output gradient, then output gradient and saved output read, input gradient written), cast
#: to 16 bit 4+2 = 26 (fused: ``CROSS_ENTROPY_BWD_BYTES`` 6).
EAGER_CROSS_ENTROPY_BYTES = 22.0
EAGER_CROSS_ENTROPY_BWD_BYTES = 26.0

# Stored for the backward by the eager op sequences, beyond the fused count (measured: an
# eager Llama block saves 49.0 bytes per s·b·h where the fused formula gives 34 --
# benchmarks/validation/modern/raw-h100x1-modern-train.json, saved_tensors.block0_tensors):
#: eager RMSNorm keeps its fp32 input (4) and the bf16 normalised input of the weight multiply
#: (2) where a fused norm keeps its 16-bit input (2): +4 bytes per element, per norm.
EAGER_NORM_SAVED_EXTRA_BYTES = 4.0
#: eager SwiGLU keeps gate, silu(gate), up and their product (4 x 2 bytes per ffn element)
#: where a fused one keeps gate and up and the down-projection input (3 x 2): +2.
EAGER_SWIGLU_SAVED_EXTRA_BYTES = 2.0
#: The loss of the eager path at its peak, per logit, with every other activation of the
#: micro-batch alive (``logits.float()`` then ``F.cross_entropy``: Hugging Face and
#: torchtitan): the backward of the cross entropy holds the fp32 log-softmax it saved (4), the
#: fp32 gradient nll_loss hands it (4) and the fp32 gradient it makes (4) = 12 (the forward
#: peaks at 10: bf16 logits, fp32 copy, log-softmax).  Measured 12.00 B with the bf16 logits
#: dropped before the backward as torchtitan's train step does (``del pred``), 14.0 with them
#: still referenced (raw-h100x1-loss-peak.json), on one H100 (PyTorch 2.11, Llama-3 head
#: 4096 x 128256, 8-16k tokens): benchmarks/validation/modern/raw-h100x1-fsdp2-pools.json
#: (``fsdp2_pools.py``, ``loss``).  Megatron's fused vocab-parallel loss works in place on one
#: fp32 copy (``LOGIT_BYTES`` 4).
EAGER_LOGIT_PEAK_BYTES = 12.0
#: What PyTorch's ``loss_parallel`` (DTensor cross entropy over vocabulary-sharded logits,
#: torchtitan's loss with TP) adds to that peak per logit: measured 16.0 B against 12.0 for
#: the plain loss with the logits dropped (raw-h100x1-fsdp2-pools.json), 18.0 against 14.0
#: with them referenced (raw-h100x1-loss-peak.json, ``loss_peak.py``), one H100.
LOSS_PARALLEL_EXTRA_LOGIT_BYTES = 4.0
#: The loss compiled (``torch.compile`` of ``F.cross_entropy(pred.float(), ...)``,
#: torchtitan's ``build_cross_entropy_loss`` under ``training.compile``): one fused kernel per
#: pass reads the bf16 logits (kept for the backward, 2 B) and writes the bf16 gradient (2 B);
#: no fp32 copy or log-softmax is materialised.  Measured 4.00 B per logit (logits dropped
#: before the backward), one H100: raw-h100x1-fsdp2-pools.json (``loss``, ``compiled``); 4.07
#: B per logit plus the head's 1.05 GB weight gradient with the logits still referenced
#: (5.06 / 4.56 B at 8192 / 16384 tokens): raw-h100x1-loss-peak-compiled.json.
COMPILED_LOGIT_PEAK_BYTES = 4.0
#: What the eager loss leaves *reserved* beyond its allocated peak, per logit: the bf16
#: logits dropped before the backward (torchtitan's ``del pred``) free a 2 B-per-logit block
#: that the backward's fp32 tensors (4 B per logit) do not fit in, so the caching allocator
#: maps a new segment for them and keeps the freed one cached (it serves an allocation only
#: from a free block at least as large: PyTorch ``c10/cuda/CUDACachingAllocator.cpp``,
#: ``get_free_block``).  Structural (no fit); on one H100 the default stream's pool of a
#: torchtitan-shaped FSDP2 step exceeds its allocated peak by 7.9 GB at 2.1G logits, of which
#: this term is 4.2 and the median 5.8% (``ALLOCATOR_RESERVE_FRACTION``) 1.9
#: (raw-h100x1-fsdp2-pools-fake8.json).
EAGER_LOSS_CACHED_LOGIT_BYTES = 2.0
#: PyTorch's dense embedding backward above ``EMBEDDING_BWD_DIRECT_MAX_TOKENS`` indices sorts
#: them and sums each run of equal indices into a partial-sum buffer of ``max_partial_segment``
#: rows x h in the op-math type (fp32 for bf16 gradients: 4 bytes) before scattering into the
#: weight gradient; at or below it one kernel adds straight into the zero-filled gradient.
#: PyTorch ``aten/src/ATen/native/cuda/Embedding.cu`` ``embedding_dense_backward_cuda``
#: (``num_indices <= 3072 && !scale_grad_by_freq``) and ``EmbeddingBackwardKernel.cu``
#: (``grad_weight_per_segment``, ``toOpMathType``), PyTorch 2.11.  A row per run of at most
#: ``NROWS_PER_THREAD`` equal indices: with distinct tokens, one per token, the bound taken
#: here (4 bytes per token per hidden element).  Measured on one H100 (PyTorch 2.11.0+cu130;
#: 2-block Llama-3-70B stack, random tokens, on-demand gradients): the step peaks 6.4 bytes
#: per s b h above the weights, gradients, Adam states and cuBLAS workspaces at 4096 tokens,
#: 2.0 at 2048 (the incoming gradient alone; raw-h100x1-modern-train.json).
EMBEDDING_BWD_PARTIAL_BYTES = 4.0
EMBEDDING_BWD_DIRECT_MAX_TOKENS = 3072

#: Residual add without dropout: read the branch output and the residual, write the sum,
#: 3 x 2 bytes per element (the no-dropout form of ``BIAS_DROPOUT_ADD_BYTES``).
RESIDUAL_ADD_BYTES = 6.0

# --- fused (flash) attention ------------------------------------------------------------------
#: Share of the s x s score blocks a causal fused-attention kernel computes: the blocks above
#: the diagonal are skipped (Dao 2023, "FlashAttention-2", Sec. 3.1.1: causal masking skips
#: about half the blocks, "1.7-1.8x speedup"; exactly (s + B) / 2s for tile size B << s).
#: Model FLOPs (MFU, as NeMo and Megatron-LM count them) keep the full square.
CAUSAL_EXECUTED_FRACTION = 0.5
#: FlashAttention backward FLOPs / forward FLOPs: 5 matmuls (recomputed QK^T, dV, dP, dQ, dK)
#: against the forward's 2 (Dao 2023, "FlashAttention-2", Sec. 4.1: "the backward pass
#: [requires] 2.5 times the FLOPs of the forward pass").
FLASH_BACKWARD_FLOP_FACTOR = 2.5
#: Sequence length at which a fused attention kernel reaches half its asymptotic rate
#: (``attention_efficiency x s / (s + this)``): short sequences fill fewer tiles per head and
#: pay the kernel's fixed costs.  Fitted jointly with the H100's forward and backward
#: asymptotes on causal SDPA (PyTorch 2.11.0+cu130, cuDNN 9.19 backend, head dim 128, 32/32,
#: 32/8 and 64/8 heads, seq 2048-16384; rms error 5%, max 12%), measured 2026-12-07:
#: benchmarks/validation/modern/raw-h100x1-modern.json, micro.sdpa.
ATTENTION_HALF_RATE_SEQ = 1477.0

#: Per-row softmax statistics a fused attention kernel stores for its backward: the fp32
#: log-sum-exp, 4 bytes per query row per head (FlashAttention-2 Alg. 1, output L).
SOFTMAX_STATS_BYTES = 4.0

# --- FP8 training (NVIDIA Transformer Engine / torchao Float8) ---------------------------------
#: Casting one 16-bit GEMM input to FP8 before the GEMM: read 2 bytes, write 1 (per-tensor
#: scaling; Transformer Engine "Using FP8 with Transformer Engine": every FP8 GEMM input is
#: cast, the amax reduction is folded into the cast kernel).  The backward casts the output
#: gradients and writes transposed FP8 copies for the weight gradient (Hopper FP8 GEMMs take
#: only the TN layout), priced by the backward elementwise factor.
FP8_CAST_BYTES = 3.0

#: Backward of a GEMM is two GEMMs of the forward's size (dgrad, wgrad): 2x FLOPs
#: (Narayanan et al. 2021, Sec. 5.1: "the backward pass requires double the number of FLOPs").
BACKWARD_GEMM_FACTOR = 2.0

# --- collectives ----------------------------------------------------------------------------
#: Achievable fraction of the per-direction NVLink/NVSwitch bandwidth for NCCL ring
#: collectives (bus bandwidth / link bandwidth): nccl-tests all-reduce busbw ~370 GB/s of
#: 450 GB/s on 8xH100 and 365.6 of 450 on 8xH200 (stas00/ml-engineering network/README.md,
#: published-runs.json hardware entries) = 0.81-0.82.
NVLINK_BUS_EFFICIENCY = 0.8
#: Achievable fraction of PCIe bandwidth: 55.4 of 63 GB/s measured H2D on Gen5 x16
#: (stas00/ml-engineering network/README.md) = 0.88.
PCIE_BUS_EFFICIENCY = 0.88
#: Achievable fraction of InfiniBand/RoCE line rate for NCCL inter-node collectives
#: (HDR/NDR: 64b/66b encoding plus protocol headers; nccl-tests multi-node busbw ~ 0.9 of the
#: NIC line rate, stas00/ml-engineering network/README.md "real network throughput").
NIC_BUS_EFFICIENCY = 0.9

# --- memory ---------------------------------------------------------------------------------
#: Memory the CUDA context holds outside PyTorch's caching allocator (driver, kernels, cuBLAS
#: and cuDNN handles): 0.718 GB measured on one H100 SXM5 80GB with PyTorch 2.11/CUDA 13
#: (``torch.cuda.mem_get_info`` used minus reserved after a first GEMM;
#: benchmarks/validation/modern/raw-h100x1-fp8-gemm.json, ``context``).
CUDA_CONTEXT_GB = 0.72
#: NCCL communicator buffers, an upper bound: NCCL_BUFFSIZE (4 MiB by default, NCCL user
#: guide "Environment variables") for each of the two ring peers on each of up to 32 channels
#: (NCCL's MAXCHANNELS) = 0.27 GB per communicator, for three communicators (TP, PP, DP).
NCCL_BUFFERS_GB = 3 * 2 * 32 * 4 * 2**20 / 1e9
#: cuBLAS workspaces PyTorch allocates inside its caching allocator: 32 MiB per handle on
#: Hopper (``CUBLAS_WORKSPACE_CONFIG`` default ``:4096:8``, PyTorch docs "CUDA semantics"), for
#: the compute and the communication stream.
CUBLAS_WORKSPACE_GB = 2 * 32 * 2**20 / 1e9
#: Per-GPU framework overhead outside the ledger's tensors: the three terms above (1.59 GB).
#: It replaces a flat 2 GB; the caching allocator's fragmentation is not in it (the allocator
#: releases cached blocks and retries before it fails an allocation, so a plan fits on its
#: allocated peak) but in the reserved estimate, ``ALLOCATOR_RESERVE_FRACTION``.
FRAMEWORK_OVERHEAD_GB = CUDA_CONTEXT_GB + NCCL_BUFFERS_GB + CUBLAS_WORKSPACE_GB
#: What PyTorch's caching allocator reserves beyond the allocated peak, as a fraction of it:
#: median 5.8% (0.1-25%) over 32 training cases measured on one H100 with PyTorch 2.11
#: (``max_memory_reserved / max_memory_allocated - 1``; raw-h100x1-modern.json ``train`` and
#: raw-h100x1-torchtitan-block.json).  Used for the *reserved* peak the ledger reports beside
#: the allocated one (what torchtitan and ``nvidia-smi`` show), not for feasibility.
ALLOCATOR_RESERVE_FRACTION = 0.058

#: Adam step HBM traffic per locally-owned parameter: read and write fp32 master, m and v
#: (2 x 12 B), read the fp32 gradient (4 B) and write the 16-bit weight (2 B) = 30 B
#: (Megatron-LM fused Adam / apex multi_tensor_adam: one pass over all states).
ADAM_BYTES_PER_PARAM = 30.0

GB = 1e9

#: Cross-entropy backward: read fp32 softmax (4), write the 16-bit logit gradient (2).
CROSS_ENTROPY_BWD_BYTES = 6.0

#: Exponent of the board power above idle in the compute clock under a power cap:
#: P - P_idle ~ f^3 (dynamic power alpha C V^2 f with V ~ f over the DVFS range; Weste &
#: Harris, CMOS VLSI Design, 4th ed., Sec. 5.1-5.2).  Used by
#: ``compute.power_clock_fraction``; the end points (70 W idle, 698 W at 1380 MHz under a
#: sustained bf16 GEMM at the 700 W default limit) were measured on one H100 SXM5.
POWER_CLOCK_EXPONENT = 3.0

# --- serving memory (inference engines) --------------------------------------------------------
#: Tokens per paged-KV-cache block: vLLM's ``CacheConfig.DEFAULT_BLOCK_SIZE = 16``
#: (vllm/config/cache.py at commit 002f10e0; earlier releases set the same 16 for CUDA in
#: ``Platform.check_and_update_config``).  A sequence holds whole blocks.
KV_BLOCK_SIZE_TOKENS = 16
#: Memory of the serving engine's captured CUDA graphs: vLLM 0.27.1 logs "Estimated CUDA graph
#: memory: 0.36 GiB total" per worker for a TP=2 model with 16 piecewise capture sizes
#: (gpustack/runner pull request #251); vLLM counts it inside ``gpu_memory_utilization``
#: (CUDA-graph memory profiling, "default since v0.21.0", same log).  0.36 GiB in GB.
CUDA_GRAPH_GB = 0.36 * 2**30 / 1e9
#: NCCL buffers of ONE communicator: ``NCCL_BUFFERS_GB`` counts three (TP, PP, DP) of
#: 2 ring peers x 32 channels x 4 MiB; a serving replica has a TP and/or a PP communicator.
NCCL_BUFFERS_PER_COMMUNICATOR_GB = NCCL_BUFFERS_GB / 3
