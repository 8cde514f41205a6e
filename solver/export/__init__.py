"""Launch configs from plans: Megatron-LM, DeepSpeed, vLLM, SGLang, TensorRT-LLM, torchrun.

:func:`export_plan` turns a plan into what a user pastes into a launcher, after checking that
the plan agrees with its inputs (:class:`~solver.errors.SpecError` otherwise) and that the
engine can express it (:class:`EngineCannotExpress` otherwise, listing every violation).
:data:`ENGINES` holds each engine's limits as data; :func:`engine_violations` checks a plan
against them and :func:`engine_allows` checks one candidate replica-group shape, for planners.
:func:`engine_precision` maps one :class:`PrecisionSpec` to each serving engine's options.
"""

from __future__ import annotations

from ..engines import (
    ENGINES,
    TARGETS,
    EngineRules,
    GroupShape,
    engine_allows,
    engine_violations,
    group_shape,
)
from ..layout import RankLayout, megatron_layout
from .core import REQUIRED_INPUTS, check_plan, export_plan
from .precision import EnginePrecision, PrecisionSpec, engine_precision, precision_spec
from .result import EngineCannotExpress, ExportResult

__all__ = [
    "ENGINES",
    "REQUIRED_INPUTS",
    "TARGETS",
    "EngineCannotExpress",
    "EnginePrecision",
    "EngineRules",
    "ExportResult",
    "GroupShape",
    "PrecisionSpec",
    "RankLayout",
    "check_plan",
    "engine_allows",
    "engine_precision",
    "engine_violations",
    "export_plan",
    "group_shape",
    "megatron_layout",
    "precision_spec",
]
