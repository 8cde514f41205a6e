"""The evaluator's report: one JSON-able document per plan."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..costmodel import PipelineSim

__all__ = ["Report"]


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


@dataclass
class Report:
    """What :func:`solver.evaluate.evaluate` returns.

    Metrics are None when the plan is too malformed to price (see ``violations``).
    ``memory_ledger`` has one row per replica group per stage, ``time_breakdown`` one row per
    group per stage (seconds per step for training, per request batch for inference).
    """

    kind: str
    feasible: bool
    violations: list[str]
    num_gpus: int
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    bubble_fraction: float | None = None
    peak_memory_GB_per_gpu: float | None = None
    memory_ledger: list[dict[str, Any]] = field(default_factory=list)
    time_breakdown: list[dict[str, Any]] = field(default_factory=list)
    cost_per_hour: float | None = None
    closed_form_step_time_s: float | None = None
    pipeline: PipelineSim | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, events: bool = False) -> dict[str, Any]:
        """One JSON-able dict (pipeline events only if ``events``)."""
        d: dict[str, Any] = {
            "kind": self.kind,
            "feasible": self.feasible,
            "violations": list(self.violations),
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "bubble_fraction": self.bubble_fraction,
            "peak_memory_GB_per_gpu": self.peak_memory_GB_per_gpu,
            "memory_ledger": self.memory_ledger,
            "time_breakdown": self.time_breakdown,
            "num_gpus": self.num_gpus,
            "cost_per_hour": self.cost_per_hour,
            "closed_form_step_time_s": self.closed_form_step_time_s,
            "pipeline": self.pipeline.to_dict(events=events) if self.pipeline else None,
            "details": self.details,
        }
        if self.kind == "inference":
            d["ttft_ms"] = self.ttft_ms
            d["tpot_ms"] = self.tpot_ms
            d["groups"] = self.groups
        return _clean(d)  # type: ignore[no-any-return]
