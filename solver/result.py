"""The result of a solve: status, plan, evaluator report, bound and gap."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator

from .errors import InvalidInput, ModelError, format_validation_error
from .specs import Plan

__all__ = ["EXIT_CODES", "ReportModel", "Result", "Status"]


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


class ReportModel(BaseModel, Mapping[str, Any]):
    """The evaluator's report of a plan, typed: ``Result.report``.

    The same document as :meth:`solver.evaluate.Report.to_dict` (``shardwise evaluate
    --json``), read two ways: by attribute (``report.tokens_per_s``, typed) and by key
    (``report["tokens_per_s"]``, ``report.get(...)``, ``"ttft_ms" in report``, ``dict(report)``),
    so code written for the plain dict keeps working.  Keys are exactly those of the document it
    was made from, in its order (``ttft_ms`` is no key of a training report; its attribute is
    None); keys beyond the typed fields are kept (``extra="allow"``).  Frozen: a report is a
    record of one evaluation.  Equal to another report or mapping with the same items.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str | None = None  #: ``training`` or ``inference``
    feasible: bool | None = None  #: the plan fits memory and every rule of the evaluator
    violations: list[str] | None = None  #: why not, one line each
    num_gpus: int | None = None
    step_time_s: float | None = None  #: training step (or inference request batch), seconds
    tokens_per_s: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    bubble_fraction: float | None = None
    peak_memory_GB_per_gpu: float | None = None
    memory_ledger: list[dict[str, Any]] | None = None
    time_breakdown: list[dict[str, Any]] | None = None
    cost_per_hour: float | None = None  #: $ per hour of the plan's GPUs
    closed_form_step_time_s: float | None = None
    pipeline: dict[str, Any] | None = None
    ttft_ms: float | None = None  #: inference: time to first token
    tpot_ms: float | None = None  #: inference: time per output token
    groups: list[dict[str, Any]] | None = None
    details: dict[str, Any] | None = None

    _keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data: Any, handler: Any) -> Any:
        out = handler(data)
        if isinstance(out, ReportModel) and isinstance(data, Mapping):
            out._keys = tuple(str(k) for k in data)
        return out

    @classmethod
    def coerce(cls, report: ReportModel | Mapping[str, Any] | None) -> ReportModel | None:
        """``report`` as a :class:`ReportModel` (None stays None); a wrong-typed field of a
        mapping raises :class:`~solver.errors.InvalidInput` naming it."""
        if report is None or isinstance(report, ReportModel):
            return report
        try:
            return cls.model_validate(report)
        except ValidationError as e:
            raise InvalidInput(format_validation_error(e, "report")) from None

    def _order(self) -> tuple[str, ...]:
        if self._keys:
            return self._keys
        extra = tuple(self.model_extra or ())
        return tuple(k for k in type(self).model_fields if k in self.model_fields_set) + extra

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON-able dict (the keys and order it was made from)."""
        return {k: self[k] for k in self._order()}

    def __getitem__(self, key: str) -> Any:
        if key not in self._order():
            raise KeyError(key)
        if key in type(self).model_fields:
            return getattr(self, key)
        return (self.model_extra or {})[key]  # not getattr: an extra key may be "items"

    def __contains__(self, key: object) -> bool:
        return key in self._order()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        # A mapping's iteration (keys), not pydantic's (field, value) pairs: ``dict(report)``
        # and ``for key in report`` read as they did when the report was a dict.
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._order())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


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
        The evaluator's report of ``plan``: a :class:`ReportModel`, typed attributes
        (``result.report.tokens_per_s``) and the dict interface (``result.report["tokens_per_s"]``)
        of the ``shardwise evaluate --json`` document.  A plain mapping given here is converted.
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
    report: ReportModel | None = None
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

    def __post_init__(self) -> None:
        # Callers (and older code) may pass the evaluator's dict: keep ``report`` a ReportModel.
        if self.report is not None and not isinstance(self.report, ReportModel):
            object.__setattr__(self, "report", ReportModel.coerce(self.report))
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))

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

    def raise_for_status(self) -> Result:
        """Return ``self`` if it has a plan or a proven answer; raise for the two error statuses.

        Raises
        ------
        InvalidInput
            ``INVALID_INPUT`` (the message names the field).
        ModelError
            ``MODEL_ERROR`` (the evaluator disagreed with the solver).
        """
        if self.status == Status.INVALID_INPUT:
            raise InvalidInput(self.message or "invalid input")
        if self.status == Status.MODEL_ERROR:
            raise ModelError(self.message or "the evaluator disagreed with the solver")
        return self

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
            "report": self.report.to_dict() if self.report is not None else None,
            "solver": self.solver_info(),
            "baseline": self.baseline,
            "engines": {
                "scope": self.engine_scope,
                "launchable_by": self.launchable_by if self.launch is not None else None,
                "refused": {k: v for k, v in (self.launch or {}).items() if v},
            },
            "advice": self.advice,
        }
