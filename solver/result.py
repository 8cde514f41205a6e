"""The result of a solve: status, plan, evaluator report, bound and gap."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .specs import Plan

__all__ = ["EXIT_CODES", "Result", "Status"]


class Status(StrEnum):
    """Outcome of :func:`solver.plan`.  ``solve()`` never raises for these.

    The same string is ``Result.status``, the ``status`` of ``shardwise plan --json`` and the
    plan file's ``solver.status``; the CLI exits with :data:`EXIT_CODES` of it.
    """

    OPTIMAL = "OPTIMAL"  #: a plan, proven optimal within the model (gap 0)
    FEASIBLE = "FEASIBLE"  #: a plan, not proven optimal: its bound and gap say how far it may be
    INFEASIBLE = (
        "INFEASIBLE"  #: proven: no plan fits; ``message`` says why and which relaxations plan
    )
    UNKNOWN = "UNKNOWN"  #: time (or resource) limit before any plan or proof: raise the limit
    INVALID_INPUT = "INVALID_INPUT"  #: bad input; ``message`` names the field
    MODEL_ERROR = "MODEL_ERROR"  #: the evaluator disagreed with the solver: a bug


#: ``shardwise plan``'s exit code for each status (README "Statuses and exit codes").  0 means
#: a plan; 2 is every command's bad-input code; 3 is ``export``'s "the engine cannot express
#: the plan", so the solver's other outcomes start at 4.
EXIT_CODES: dict[Status, int] = {
    Status.OPTIMAL: 0,
    Status.FEASIBLE: 0,
    Status.INVALID_INPUT: 2,
    Status.INFEASIBLE: 4,
    Status.UNKNOWN: 5,
    Status.MODEL_ERROR: 6,
}


@dataclass(frozen=True)
class Result:
    """What :func:`solver.plan` returns.

    Attributes
    ----------
    status
        See :class:`Status`.
    plan
        The plan (None when INFEASIBLE / UNKNOWN / INVALID_INPUT).
    report
        The evaluator's report of ``plan`` as a dict (same keys as ``shardwise evaluate --json``).
    objective, bound, gap
        In user units (tokens/s for max_throughput, $/Mtoken for min_cost, ms for min_latency,
        GPUs for min_gpus).  ``gap`` is ``|objective - bound| / max(|objective|, 1e-12)``:
        0 when OPTIMAL, None when no valid bound is known.
    time_s
        Wall time of the whole solve (precompute, CP-SAT, verification).
    message
        Human explanation: infeasibility reason and the relaxations re-planned, what a time-out left
        open, the MODEL_ERROR diff, and any optional step skipped to keep the time limit.
    baseline
        The rubric baseline's plan metrics, for comparison (None if it has no feasible plan).
    engine_scope
        What the plan was optimised over: ``launchable`` (plans at least one engine of the
        workload's kind launches; the default), one engine's name, or ``any-plan`` (every
        plan, beyond any engine).  None when no solve ran.
    launch
        For every engine of the plan's kind, why it cannot launch ``plan`` as planned (an empty
        list: it can); None without a plan.
    advice
        INFEASIBLE training results: every relaxation re-planned (``change``, ``axes``, the
        re-plan's ``status``, ``verdict``, ``sufficient``: whether it planned, ``tokens_per_s``
        of that verified plan, ``time_s``), in the order tried; None when none was.
    """

    status: Status
    plan: Plan | None = None
    report: dict[str, Any] | None = None
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    time_s: float = 0.0
    message: str = ""
    seed: int | None = None
    ortools_version: str | None = None
    baseline: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    engine_scope: str | None = None
    launch: dict[str, list[str]] | None = None
    advice: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.status in (Status.OPTIMAL, Status.FEASIBLE)

    @property
    def exit_code(self) -> int:
        """``shardwise plan``'s exit code for this result (:data:`EXIT_CODES`)."""
        return EXIT_CODES[self.status]

    @property
    def launchable_by(self) -> list[str]:
        """The engines that can launch ``plan`` as planned (``--to`` order)."""
        return [name for name, why in (self.launch or {}).items() if not why]

    def solver_info(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "time_s": self.time_s,
            "ortools_version": self.ortools_version,
            "seed": self.seed,
            "message": self.message or None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``shardwise plan --json`` document."""
        return {
            "status": self.status.value,
            "plan": self.plan.model_dump(mode="json", exclude_none=True) if self.plan else None,
            "report": self.report,
            "solver": self.solver_info(),
            "baseline": self.baseline,
            "engines": {
                "scope": self.engine_scope,
                "launchable_by": self.launchable_by if self.launch is not None else None,
                "refused": {k: v for k, v in (self.launch or {}).items() if v},
            },
            "advice": self.advice,
        }
