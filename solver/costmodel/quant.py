"""Serving quantization formats: bytes per weight, the tensor peak a GEMM runs at, the GPUs
that have the kernels and the engines that launch each one.

One table, :data:`FORMATS`, read by the cost model (weight bytes, GEMM peak), the evaluator's
precision check, the engine rules (:mod:`solver.engines`) and the exporters
(:mod:`solver.export.precision`), so that a format means the same everywhere.

====================  =========  ========  ======  ===================================  =========
quantization          bits per   GEMM      min sm  vLLM / SGLang ``--quantization``     TRT-LLM
                      weight     peak                                                   quant_algo
====================  =========  ========  ======  ===================================  =========
``none``              16         16-bit    --      --                                   --
``fp8``               8          FP8       8.9     fp8 / fp8                            FP8
``int8``              8          INT8      7.5     (1)                                  -- (2)
``int8_weight_only``  8.125      16-bit    6.0     gptq_marlin / gptq_marlin            W8A16
``int4_awq``          4.15625    16-bit    7.5     awq_marlin / awq_marlin              W4A16_AWQ
``int4_gptq``         4.125      16-bit    6.0     gptq_marlin / gptq_marlin            -- (2)
``nvfp4``             4.5        FP4       10.0    modelopt_fp4 / modelopt_fp4          NVFP4
``mxfp4``             4.25       FP4       10.0    (4)                                  -- (2)
====================  =========  ========  ======  ===================================  =========

Weight-only rows (W8A16, W4A16) run their GEMMs at the 16-bit peak (3).

(1) vLLM ``compressed-tensors`` (a W8A8 INT8 checkpoint), SGLang ``w8a8_int8``.
(2) TensorRT-LLM's PyTorch back-end has no linear method for it: ``get_quant_method`` in
    ``tensorrt_llm/_torch/modules/linear.py`` (NVIDIA/TensorRT-LLM commit 00bbf71e) returns FP8
    (QDQ / rowwise / block scales), NVFP4, W4A8 NVFP4/MXFP4-FP8, per-channel weight-only
    (W8A16 / W4A16), W4A16_AWQ, W4A8_AWQ and W4A8 MXFP4-MXFP8 kernels, and raises for the
    rest (SmoothQuant ``W8A8_SQ_*``, per-group ``W4A16_GPTQ``, W4A4 MXFP4).
(3) Weight-only: the weights are dequantised to 16 bit inside the GEMM kernel (Marlin on
    Ampere/Ada, Machete on Hopper) and multiplied at the 16-bit tensor peak; see
    :data:`WEIGHT_ONLY_DEQUANT_SLOWDOWN`.
(4) vLLM ``compressed-tensors`` (``CompressedTensorsW4A4Mxfp4``: W4A4 on SM100+); SGLang's
    ``mxfp4`` quantizes MoE experts only (``QUANTIZATION_CHOICES``: "MOE-only") and is not
    offered.

Bits per weight count the scales (``constants.py``): INT4 with one fp16 scale per 128 weights
is 4 + 16/128 = 4.125; AWQ adds a 4-bit zero point per group (4.15625); NVFP4 one FP8 scale per
16 (4.5); MXFP4 one E8M0 scale per 32 (4.25); per-tensor and per-channel scales (FP8, W8A8
INT8) are O(n) against the O(k n) weights and are not counted.

Which tensors: the engines quantize the linear layers of the blocks (and MoE experts); the
token embedding, the LM head and the norms stay 16-bit (vLLM ``Fp8Config.get_quant_method``
quantizes ``LinearBase`` and routed experts only; the other formats do the same), so
:func:`stage_weight_bytes` prices a stage's embedding and head at 2 bytes.

Format keys: the cost model's functions take one ``precision`` string; a serving workload passes
:func:`serving_precision` (its quantization when set, else its precision), so ``"int4_awq"``
reaches :func:`weight_bytes_per_element` and :func:`gemm_peak_tflops` where ``"bf16"`` did.
``precision: fp8`` is the ``fp8`` format, as before.  A GEMM's input activations are priced at
the weight bytes (``compute._gemm`` takes one byte width); for weight-only formats this
under-counts a 16-bit input that only matters when the GEMM is memory-bound with many rows,
where the weight read dominates anyway.

Engine versions: vLLM 0.34.0 and SGLang 0.5.23 (the PyPI wheels
``solver/export/precision.py`` cites): vLLM ``QuantizationMethods``
(``vllm/model_executor/layers/quantization/__init__.py``) and each config's
``get_min_capability`` (``fp8.py`` 75 with a Marlin weight-only fallback below 89, W8A8 FP8
``compressed_tensors_w8a8_fp8.py`` 89, ``compressed_tensors_w8a8_int8.py`` 75,
``auto_awq.py`` 75, ``auto_gptq.py`` 60, ``compressed_tensors_w4a4_mxfp4.py``: W4A4 on SM100+,
Marlin W4A16 below); SGLang ``QUANTIZATION_CHOICES`` (``sglang/srt/arg_groups/choices.py``),
``w8a8_int8.py`` 75, ``modelopt_quant.py`` ``ModelOptFp4Config`` 89.  The minimum compute
capability of each format is that of its tensor cores (FP8: Ada/Hopper 8.9, FP4: Blackwell
10.0) or, weight-only, the lowest of the engines' kernels; a GPU below it, or without the
format's peak in the catalog, is refused (:func:`gpu_gap`).  FP8 and NVFP4 weights run on
older GPUs through vLLM's Marlin weight-only fallbacks, but that is another format (16-bit
GEMMs) than the one named: ask for ``int8_weight_only`` / ``int4_*`` there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..specs import GPUSpec, InferenceWorkload, TrainingWorkload
from . import constants as C

__all__ = [
    "FORMATS",
    "SERVING_ENGINES",
    "WEIGHT_ONLY_DEQUANT_SLOWDOWN",
    "EngineQuant",
    "QuantFormat",
    "default_kv_bytes",
    "engine_quantization",
    "gemm_efficiency",
    "gemm_peak_tflops",
    "gpu_gap",
    "input_cast_bytes",
    "is_format",
    "quantization_of",
    "quantizes_activations",
    "serving_precision",
    "stage_weight_bytes",
    "weight_bytes_per_element",
]

#: Which tensor peak a format's GEMMs run at.
ComputeType = Literal["16bit", "fp8", "int8", "fp4"]

#: Compute-roof time of a weight-only (W8A16 / W4A16) GEMM over the 16-bit GEMM of the same
#: shape: the dequantisation cost once the GEMM is compute-bound.  The kernels the engines
#: launch convert the packed weights to 16 bit in registers, interleaved with the tensor-core
#: instructions so that the two pipelines overlap (Marlin README, IST-DASLab/marlin @ 2f6d7c1,
#: "Techniques": "we carefully order dequantization and tensor core instructions to ensure
#: that both GPU pipelines are well saturated"; Neural Magic's Machete announcement, Oct 2024:
#: on H100 it "matches FP16 compute-bound performance").  Their memory-bound cost is the scale
#: bytes, counted in the bits per weight.  1.0 until a measured mixed-input GEMM table says
#: otherwise; one global, physically named parameter, not fitted per case.
WEIGHT_ONLY_DEQUANT_SLOWDOWN = 1.0

#: The serving engines, in ``--to`` order.
SERVING_ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm")

_VLLM = "vLLM 0.34.0 vllm/model_executor/layers/quantization/__init__.py QuantizationMethods"
_SGL = "SGLang 0.5.23 sglang/srt/arg_groups/choices.py QUANTIZATION_CHOICES"
_TRT = (
    "TensorRT-LLM tensorrt_llm/quantization/mode.py QuantAlgo (v1.2); PyTorch back-end "
    "tensorrt_llm/_torch/modules/linear.py get_quant_method (commit 00bbf71e)"
)


@dataclass(frozen=True)
class EngineQuant:
    """How one engine launches a format.

    Attributes
    ----------
    value
        The option value: vLLM / SGLang ``--quantization``, TensorRT-LLM
        ``quant_config.quant_algo``.
    checkpoint
        What to serve: ``""`` when the engine quantizes a 16-bit checkpoint online.
    source
        Where the value comes from.
    """

    value: str
    checkpoint: str = ""
    source: str = ""


@dataclass(frozen=True)
class QuantFormat:
    """One serving quantization format (a row of the module table).

    Attributes
    ----------
    name
        The workload's ``quantization`` value.
    title
        Human name (weights / activations).
    weight_bits
        Bits per quantized weight, scales included.
    bits
        How ``weight_bits`` is derived.
    compute
        Which tensor peak the GEMM runs at (``16bit``: weight-only, dequantised in the kernel).
    min_compute_capability
        Lowest CUDA compute capability with kernels for it (NVIDIA GPUs); None: no limit.
    engines
        Per serving engine that launches it, its option value; an engine absent here cannot.
    spec_weights
        The weights name of :class:`solver.export.precision.PrecisionSpec`.
    """

    name: str
    title: str
    weight_bits: float
    bits: str
    compute: ComputeType
    min_compute_capability: float | None
    engines: Mapping[str, EngineQuant] = field(default_factory=dict)
    spec_weights: str = ""

    @property
    def weight_only(self) -> bool:
        """Weights quantized, GEMM inputs 16-bit (W8A16 / W4A16)."""
        return self.compute == "16bit" and self.name != "none"


def _int_group_bits(bits: float, zero_point: bool) -> float:
    zp = C.AWQ_ZERO_POINT_BITS if zero_point else 0.0
    return bits + (C.SCALE_BITS_16 + zp) / C.INT_WEIGHT_GROUP


_AWQ = "an AWQ 4-bit (W4A16, group 128) checkpoint"
_GPTQ4 = "a GPTQ 4-bit (W4A16, group 128, symmetric) checkpoint"
_GPTQ8 = "a GPTQ 8-bit (W8A16) checkpoint"
_NVFP4 = "an NVFP4 checkpoint from NVIDIA ModelOpt (Blackwell GPUs)"
_W8A8 = "a W8A8 INT8 (SmoothQuant) checkpoint, e.g. from llm-compressor"

#: Every format by its ``quantization`` name.
FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in (
        QuantFormat("none", "16-bit weights and activations", 16.0, "bf16/fp16", "16bit", None),
        QuantFormat(
            "fp8",
            "W8A8 FP8 (E4M3)",
            8.0,
            "8-bit E4M3, per-tensor scale",
            "fp8",
            8.9,
            {
                "vllm": EngineQuant("fp8", "", _VLLM),
                "sglang": EngineQuant("fp8", "", _SGL),
                "trtllm": EngineQuant("FP8", "an FP8 checkpoint from NVIDIA ModelOpt", _TRT),
            },
            "fp8",
        ),
        QuantFormat(
            "int8",
            "W8A8 INT8 (SmoothQuant)",
            8.0,
            "8-bit integer, per-channel scales",
            "int8",
            7.5,
            {
                "vllm": EngineQuant("compressed-tensors", _W8A8, _VLLM),
                "sglang": EngineQuant("w8a8_int8", _W8A8, _SGL),
            },
            "int8_w8a8",
        ),
        QuantFormat(
            "int8_weight_only",
            "W8A16 (int8 weight-only)",
            _int_group_bits(8.0, zero_point=False),
            "8 + 16/128 (fp16 scale per group of 128)",
            "16bit",
            6.0,
            {
                "vllm": EngineQuant("gptq_marlin", _GPTQ8, _VLLM),
                "sglang": EngineQuant("gptq_marlin", _GPTQ8, _SGL),
                "trtllm": EngineQuant(
                    "W8A16", "an int8 weight-only (W8A16) checkpoint from NVIDIA ModelOpt", _TRT
                ),
            },
            "int8",
        ),
        QuantFormat(
            "int4_awq",
            "W4A16 AWQ",
            _int_group_bits(4.0, zero_point=True),
            "4 + (16 + 4)/128 (fp16 scale and 4-bit zero point per group of 128)",
            "16bit",
            7.5,
            {
                "vllm": EngineQuant("awq_marlin", _AWQ, _VLLM),
                "sglang": EngineQuant("awq_marlin", _AWQ, _SGL),
                "trtllm": EngineQuant("W4A16_AWQ", _AWQ, _TRT),
            },
            "int4",
        ),
        QuantFormat(
            "int4_gptq",
            "W4A16 GPTQ",
            _int_group_bits(4.0, zero_point=False),
            "4 + 16/128 (fp16 scale per group of 128)",
            "16bit",
            6.0,
            {
                "vllm": EngineQuant("gptq_marlin", _GPTQ4, _VLLM),
                "sglang": EngineQuant("gptq_marlin", _GPTQ4, _SGL),
            },
            "int4_gptq",
        ),
        QuantFormat(
            "nvfp4",
            "NVFP4 (W4A4, E2M1 + FP8 scale per 16)",
            4.0 + C.SCALE_BITS_8 / C.NVFP4_BLOCK,
            "4 + 8/16 (E4M3 scale per block of 16)",
            "fp4",
            10.0,
            {
                "vllm": EngineQuant("modelopt_fp4", _NVFP4, _VLLM),
                "sglang": EngineQuant("modelopt_fp4", _NVFP4, _SGL),
                "trtllm": EngineQuant("NVFP4", _NVFP4, _TRT),
            },
            "fp4",
        ),
        QuantFormat(
            "mxfp4",
            "MXFP4 (W4A4, E2M1 + E8M0 scale per 32)",
            4.0 + C.SCALE_BITS_8 / C.MXFP4_BLOCK,
            "4 + 8/32 (E8M0 scale per block of 32)",
            "fp4",
            10.0,
            {
                "vllm": EngineQuant(
                    "compressed-tensors",
                    "an MXFP4 (mxfp4-pack-quantized) compressed-tensors checkpoint",
                    "vLLM 0.34.0 compressed_tensors/schemes/compressed_tensors_w4a4_mxfp4.py",
                ),
            },
            "mxfp4",
        ),
    )
}


def quantization_of(workload: TrainingWorkload | InferenceWorkload) -> str:
    """A serving workload's quantization format name: ``fp8`` for ``precision: fp8``, else its
    ``quantization``; ``none`` for training workloads (FP8 training is a precision)."""
    if not isinstance(workload, InferenceWorkload):
        return "none"
    return "fp8" if workload.precision == "fp8" else workload.quantization


def serving_precision(workload: TrainingWorkload | InferenceWorkload) -> str:
    """The format key the cost model takes as ``precision``: the quantization when one is set,
    else the workload precision (``bf16``, ``fp16`` or ``fp8``)."""
    q = quantization_of(workload)
    return workload.precision if q == "none" else q


def is_format(precision: str) -> bool:
    """Whether ``precision`` names a quantized format (``fp8`` included, ``none`` not)."""
    return precision in FORMATS and precision != "none"


def weight_bytes_per_element(precision: str) -> float:
    """Bytes of one (quantized) weight, scales included: a format's ``weight_bits / 8``, else
    the element size of the precision (``BYTES_PER_ELEMENT``).  KeyError if unknown."""
    if is_format(precision):
        return FORMATS[precision].weight_bits / 8.0
    return C.BYTES_PER_ELEMENT[precision]


def quantizes_activations(precision: str) -> bool:
    """Whether the format casts each GEMM input too (W8A8, W4A4): a cast kernel per input."""
    return is_format(precision) and FORMATS[precision].compute != "16bit"


def _sixteen_bit_peak(gpu: GPUSpec) -> float:
    return gpu.bf16_tflops if gpu.supports_bf16 else (gpu.fp16_tflops or gpu.bf16_tflops)


def gpu_gap(gpu: GPUSpec, quantization: str) -> str | None:
    """Why ``gpu`` cannot run ``quantization`` (None if it can): no tensor cores for its GEMM
    type (no peak in the catalog), or a compute capability below the format's kernels."""
    fmt = FORMATS[quantization]
    peak = {"fp8": gpu.fp8_tflops, "int8": gpu.int8_tops, "fp4": gpu.fp4_tflops}
    cores = {"fp8": "FP8", "int8": "INT8", "fp4": "FP4"}
    if fmt.compute in peak and peak[fmt.compute] is None:
        return f"GPU {gpu.name} has no {cores[fmt.compute]} tensor cores"
    need, have = fmt.min_compute_capability, gpu.compute_capability
    if need is not None and have is not None and have < need:
        return f"GPU {gpu.name} (compute capability {have:.1f}) is below the {need:.1f} its kernels need"
    return None


def gemm_peak_tflops(gpu: GPUSpec, precision: str) -> float:
    """Dense tensor peak a format's GEMMs run at: FP8, INT8 (TOP/s) or FP4 for W8A8 / W4A4,
    the 16-bit peak for weight-only formats.  ValueError if the GPU lacks the format."""
    fmt = FORMATS[precision]
    gap = gpu_gap(gpu, precision)
    if gap is not None:
        raise ValueError(f"{gap} (quantization {precision})")
    peak = {"fp8": gpu.fp8_tflops, "int8": gpu.int8_tops, "fp4": gpu.fp4_tflops}.get(fmt.compute)
    return _sixteen_bit_peak(gpu) if peak is None else peak


def gemm_efficiency(gpu: GPUSpec, precision: str) -> float:
    """Achievable fraction of :func:`gemm_peak_tflops` on large GEMMs.

    FP8: the GPU's measured FP8 MAMF ratio (``fp8_gemm_efficiency``, else ``gemm_efficiency``);
    INT8 and FP4: ``gemm_efficiency`` (no MAMF of those types is published for the catalog's
    GPUs: the 16-bit ratio is assumed); weight-only: ``gemm_efficiency`` /
    :data:`WEIGHT_ONLY_DEQUANT_SLOWDOWN`.
    """
    fmt = FORMATS[precision]
    if fmt.compute == "fp8" and gpu.fp8_gemm_efficiency is not None:
        return gpu.fp8_gemm_efficiency
    if fmt.weight_only:
        return gpu.gemm_efficiency / WEIGHT_ONLY_DEQUANT_SLOWDOWN
    return gpu.gemm_efficiency


def engine_quantization(engine: str, quantization: str) -> EngineQuant | None:
    """How ``engine`` launches ``quantization`` (None: it cannot; ``none`` needs no option)."""
    return FORMATS[quantization].engines.get(engine)


def stage_weight_bytes(
    block_params: float, other_params: float, precision: str, *, activation_bytes: float = 2.0
) -> float:
    """Weight bytes of ``block_params`` transformer-block parameters and ``other_params``
    embedding / head / final-norm parameters at ``precision``.

    A quantized format stores the blocks at :func:`weight_bytes_per_element` and the rest at
    ``activation_bytes`` (16-bit; see the module docstring); a 16-bit precision stores all at
    its element size.
    """
    if is_format(precision):
        return block_params * weight_bytes_per_element(precision) + other_params * activation_bytes
    return (block_params + other_params) * C.BYTES_PER_ELEMENT[precision]


def default_kv_bytes(precision: str) -> float:
    """KV-cache bytes per element when ``kv_cache_precision`` is unset: 1 for ``fp8`` (the
    legacy ``precision: fp8``), the 16-bit activation type's 2 for every other format (the
    engines' ``kv-cache-dtype auto`` is the model dtype), else the precision's element size."""
    if is_format(precision):
        return 1.0 if precision == "fp8" else C.ACTIVATION_BYTES
    return C.BYTES_PER_ELEMENT[precision]


def input_cast_bytes(precision: str) -> float:
    """HBM bytes per element of casting a 16-bit GEMM input to a W8A8 / W4A4 format's input
    type: read 2, write the quantized element and its share of the scales (the activations
    take the weights' element format: FP8 E4M3 and INT8 1 byte, ``FP8_CAST_BYTES`` = 3; NVFP4
    0.5625, MXFP4 0.53125)."""
    return C.ACTIVATION_BYTES + FORMATS[precision].weight_bits / 8.0
