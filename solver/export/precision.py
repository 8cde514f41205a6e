"""One precision spec, each serving engine's own options (``--to vllm|sglang|trtllm``).

A :class:`PrecisionSpec` names three formats: the weights' (``bf16``, ``fp16``, ``fp8`` = FP8
E4M3 weights and GEMM inputs, ``int8_w8a8`` = W8A8 INT8 (SmoothQuant), ``int8`` / ``int4`` /
``int4_gptq`` weight-only (W8A16, W4A16 AWQ, W4A16 GPTQ), ``fp4`` = NVFP4, ``mxfp4``), the 16-bit
type of the activations and of everything left unquantized (``bf16`` or ``fp16``), and the KV
cache's (``bf16``, ``fp16``, ``fp8_e4m3``, ``fp8_e5m2``).  :func:`engine_precision` maps it to
one engine's flags (vLLM, SGLang) or LLM-API YAML entries (TensorRT-LLM, which has no flag for
them) and raises :class:`~solver.export.result.EngineCannotExpress` with one line where the
engine lacks a format: one plan, one meaning, on every engine.  The quantization method per
engine (and the checkpoint it needs) is the ``engines`` column of
:data:`solver.costmodel.quant.FORMATS`, which the cost model and the engine rules read too; a
workload's ``quantization`` maps to the weights name its ``spec_weights`` gives.

Option names and values, each from the engine's source at a pinned version:

* vLLM 0.34.0 (PyPI wheel ``vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl``):
  ``--kv-cache-dtype`` takes ``CacheDType`` (``vllm/config/cache.py``: ``auto``, ``bfloat16``,
  ``float16``, ``fp8`` (= ``fp8_e4m3``), ``fp8_e4m3``, ``fp8_e5m2``, ...); ``--quantization``
  takes ``QuantizationMethods`` (``vllm/model_executor/layers/quantization/__init__.py``:
  ``fp8`` (online, dynamic per-tensor E4M3), ``gptq_marlin``, ``awq_marlin``,
  ``modelopt_fp4``, ...).  Its online ``int8_per_channel_weight_only`` quantizes MoE experts
  only (``vllm/config/quantization.py`` ``_ONLINE_SHORTHANDS``), so dense int8 weight-only
  comes from a GPTQ 8-bit checkpoint.
* SGLang 0.5.23 (PyPI wheel ``sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl``):
  ``--kv-cache-dtype`` choices in ``sglang/srt/arg_groups/fields/model.py`` (``auto``,
  ``fp8_e5m2``, ``fp8_e4m3``, ``bf16``, ``bfloat16``, ``nvfp4``, ...: no ``float16``);
  ``--quantization`` choices in ``sglang/srt/arg_groups/choices.py`` ``QUANTIZATION_CHOICES``
  (``fp8``, ``gptq_marlin``, ``awq_marlin``, ``modelopt_fp4``, ...).
* TensorRT-LLM (PyTorch back-end): ``trtllm-serve --config FILE`` (alias
  ``--extra_llm_api_options``) reads a YAML of LLM-API arguments
  (``tensorrt_llm/commands/serve.py`` at commit 00209af149e7774406881a37283dce303571eb11);
  ``kv_cache_config.dtype`` takes ``auto`` or ``fp8`` (``tensorrt_llm/llmapi/llm_args.py``
  ``TorchLlmArgs.sync_quant_config_with_kv_cache_config_dtype`` sets
  ``quant_config.kv_cache_quant_algo = FP8``, E4M3, for ``fp8`` and warns on anything else),
  ``dtype`` is the model dtype, ``quant_config.quant_algo`` a ``QuantAlgo`` name
  (``tensorrt_llm/quantization/mode.py``, v1.2: ``FP8``, ``W8A16``, ``W4A16_AWQ``, ``NVFP4``,
  ...); ``benchmarks/check_exports.py`` checks the names written against a list quoted from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..costmodel import quant
from ..specs import InferenceWorkload
from .result import EngineCannotExpress

__all__ = [
    "KV_FORMATS",
    "WEIGHT_FORMATS",
    "EnginePrecision",
    "PrecisionSpec",
    "engine_precision",
    "precision_spec",
]

WeightFormat = Literal[
    "bf16", "fp16", "fp8", "int8_w8a8", "int8", "int4", "int4_gptq", "fp4", "mxfp4"
]
ActivationFormat = Literal["bf16", "fp16"]
KvFormat = Literal["bf16", "fp16", "fp8_e4m3", "fp8_e5m2"]

#: Weight formats: 16-bit, FP8 E4M3 (W8A8), INT8 W8A8, int8 / int4 weight-only (W8A16, W4A16
#: AWQ and GPTQ), NVFP4, MXFP4.
WEIGHT_FORMATS: tuple[str, ...] = (
    "bf16",
    "fp16",
    "fp8",
    "int8_w8a8",
    "int8",
    "int4",
    "int4_gptq",
    "fp4",
    "mxfp4",
)
#: KV-cache formats (``fp8`` in a workload means ``fp8_e4m3``).
KV_FORMATS: tuple[str, ...] = ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2")


@dataclass(frozen=True)
class PrecisionSpec:
    """The numeric formats of one deployment.

    Attributes
    ----------
    weights
        One of :data:`WEIGHT_FORMATS`.
    activations
        ``bf16`` or ``fp16``: activations and every unquantized tensor (the engine's dtype).
    kv_cache
        One of :data:`KV_FORMATS`.
    """

    weights: str = "bf16"
    activations: str = "bf16"
    kv_cache: str = "bf16"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("weights", self.weights, WEIGHT_FORMATS),
            ("activations", self.activations, ("bf16", "fp16")),
            ("kv_cache", self.kv_cache, KV_FORMATS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")


def precision_spec(workload: InferenceWorkload) -> PrecisionSpec:
    """The :class:`PrecisionSpec` of an inference workload.

    ``precision`` names the weights (``fp8``: FP8 E4M3 weights and GEMM inputs, bf16 elsewhere);
    ``kv_cache_precision`` the KV cache (default: the 16-bit activation type; ``fp8`` is E4M3).
    """
    activations = "fp16" if workload.precision == "fp16" else "bf16"
    kv = workload.kv_cache_precision or (
        workload.precision if workload.precision != "fp8" else "fp8_e4m3"
    )
    if kv == "fp8":
        kv = "fp8_e4m3"
    q = quant.quantization_of(workload)
    weights = workload.precision if q == "none" else quant.FORMATS[q].spec_weights
    return PrecisionSpec(weights=weights, activations=activations, kv_cache=kv)


@dataclass(frozen=True)
class EnginePrecision:
    """One engine's options for a :class:`PrecisionSpec`.

    Attributes
    ----------
    flags
        Command-line flags (vLLM, SGLang).
    config
        LLM-API YAML entries (TensorRT-LLM), nested as the YAML nests them.
    notes
        What the user must provide (a pre-quantized checkpoint).
    """

    flags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_TITLE = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}
_TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}

#: The quantization format of each quantized weights name (``quant.FORMATS`` ``spec_weights``).
_FORMAT_OF: dict[str, quant.QuantFormat] = {
    f.spec_weights: f for f in quant.FORMATS.values() if f.spec_weights
}


def _refuse(engine: str, what: str) -> EngineCannotExpress:
    return EngineCannotExpress(engine, [what])


def _kv_value(engine: str, spec: PrecisionSpec) -> str | None:
    """The engine's KV-cache dtype value, or None for its default (the activation type)."""
    kv = spec.kv_cache
    if kv in ("bf16", "fp16"):
        if kv == spec.activations:
            return None
        if engine == "vllm":
            return _TORCH_DTYPE[kv]
        if engine == "sglang" and kv == "bf16":
            return "bf16"
        raise _refuse(
            engine,
            f"kv_cache_precision {kv} with {spec.activations} activations: {_TITLE[engine]} "
            "stores the KV cache in the model dtype or a quantized format",
        )
    if engine in ("vllm", "sglang"):
        return kv  # fp8_e4m3 / fp8_e5m2, the same names in both
    if kv == "fp8_e4m3":
        return "fp8"
    raise _refuse(
        engine,
        f"kv_cache_precision {kv}: TensorRT-LLM's FP8 KV cache is E4M3 only "
        "(kv_cache_config.dtype takes auto or fp8)",
    )


def engine_precision(engine: str, spec: PrecisionSpec) -> EnginePrecision:
    """``engine``'s options for ``spec`` (``vllm``, ``sglang`` or ``trtllm``).

    Raises
    ------
    EngineCannotExpress
        One line naming the format the engine lacks.
    KeyError
        If ``engine`` is not a serving engine.
    """
    title = _TITLE[engine]
    kv = _kv_value(engine, spec)
    notes: list[str] = []
    method: str | None = None
    fmt = _FORMAT_OF.get(spec.weights)
    if fmt is not None:
        how = fmt.engines.get(engine)
        if how is None:
            launched = ", ".join(q for q, f in quant.FORMATS.items() if engine in f.engines)
            raise _refuse(
                engine,
                f"quantization {fmt.name} ({fmt.title}): {title} has no setting for it "
                f"(it launches {launched})",
            )
        method = how.value  # vLLM / SGLang fp8: online dynamic E4M3 from a 16-bit checkpoint
        if how.checkpoint:
            notes.append(
                f"weights {spec.weights}: serve {how.checkpoint}; {title} reads its scales "
                "from the checkpoint"
            )
    elif spec.weights != spec.activations:
        raise _refuse(
            engine, f"weights {spec.weights} with {spec.activations} activations: no {title} dtype"
        )
    if engine == "trtllm":
        config: dict[str, Any] = {}
        if spec.activations != "bf16":
            config["dtype"] = _TORCH_DTYPE[spec.activations]
        if method is not None:
            config["quant_config"] = {"quant_algo": method}
        if kv is not None:
            config["kv_cache_config"] = {"dtype": kv}
        return EnginePrecision((), config, tuple(notes))
    flags = [f"--dtype {_TORCH_DTYPE[spec.activations]}"]
    if method is not None:
        flags.append(f"--quantization {method}")
    if kv is not None:
        flags.append(f"--kv-cache-dtype {kv}")
    return EnginePrecision(tuple(flags), {}, tuple(notes))
