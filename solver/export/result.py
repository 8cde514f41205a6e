"""What an export produces, shared by the dispatcher (:mod:`solver.export.core`) and every engine
module: the result record, the "engine cannot express this" error and the one-line plan summary
the file headers print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engines import ENGINES
from ..specs import Plan

__all__ = ["EngineCannotExpress", "ExportResult", "plan_summary"]


@dataclass(frozen=True)
class ExportResult:
    """What ``export_plan`` produced.

    Attributes
    ----------
    target
        The target name (``megatron``, ``vllm``, ...).
    engine
        The engine's human name.
    text
        The main output: a shell snippet or script, or a JSON document (DeepSpeed).
    files
        Further files by suggested name suffix (``hostfile``, ``rank_map.json``); the CLI writes
        them next to ``--out`` as ``<stem>.<name>``.
    notes
        Things the user must know or do that the text cannot say (shell targets repeat them as
        comments).
    """

    target: str
    engine: str
    text: str
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "engine": self.engine,
            "text": self.text,
            "files": dict(self.files),
            "notes": list(self.notes),
        }


class EngineCannotExpress(Exception):
    """The plan uses something the target engine cannot express (the CLI exits with code 3).

    Not a :class:`ValueError`: the input is valid, the engine is the limit.
    """

    def __init__(self, target: str, violations: list[str]) -> None:
        self.target = target
        self.violations = list(violations)
        title = ENGINES[target].title
        super().__init__(f"{title} cannot express this plan: " + "; ".join(self.violations))


def plan_summary(plan: Plan) -> str:
    """``TP=4 PP=2 DP=8 on 64 GPUs (dgx-a100)`` per group, joined with ``; ``."""
    parts: list[str] = []
    for group in plan.replica_groups:
        tps = [s.tp for s in group.stages]
        tp = str(tps[0]) if len(set(tps)) == 1 else "/".join(str(t) for t in tps)
        gpus = group.count * sum(tps)
        pools: list[str] = []
        for s in group.stages:
            if s.pool not in pools:
                pools.append(s.pool)
        parts.append(
            f"TP={tp} PP={group.pp} DP={group.count} on {gpus} GPU{'s' if gpus != 1 else ''} "
            f"({', '.join(pools)})"
        )
    return "; ".join(parts)
