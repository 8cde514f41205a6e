"""The result types of :func:`~solver.report.explain.explain` and their JSON document.

:class:`Explanation` and its parts (:class:`TimeTerm`, :class:`Bottleneck`,
:class:`Alternative`) are plain frozen dataclasses; each ``to_dict`` builds its part of the
``shardwise explain --json`` document.  Nothing here evaluates or renders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...specs import Plan
from ..documents import to_jsonable


@dataclass(frozen=True)
class TimeTerm:
    """One additive term of the step (training) or request-batch (inference) time."""

    key: str  #: ``compute``, ``tp_comm``, ``pp_bubble``, ``p2p``, ``dp_sync``, ``optimizer``
    label: str  #: human name, e.g. ``'TP all-reduce'``
    seconds: float
    fraction: float  #: of the step (request) time

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Bottleneck:
    """The largest term of the step time, and the largest overhead (the largest non-compute
    term: what would pay most to remove)."""

    kind: str  #: a :data:`TERM_LABELS` key
    label: str
    seconds: float
    fraction: float
    stage: int | None  #: the busiest stage (training) or None
    overhead: TimeTerm | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overhead"] = self.overhead.to_dict() if self.overhead else None
        return d


@dataclass(frozen=True)
class Alternative:
    """A concrete alternative plan, scored by the evaluator, and why it loses.

    ``ratio`` is how many times worse its objective is than the chosen plan's (> 1: worse;
    tokens/s chosen / alternative for throughput, alternative / chosen for costs, GPUs and
    latency), None when either has no objective.  ``feasible`` is the evaluator's verdict on
    the real cluster; ``priced_on`` names a what-if cluster when the plan had to be priced on
    one (TP beyond the NVLink domain).
    """

    key: str
    label: str
    shape: str
    feasible: bool
    violations: list[str]
    objective: float | None
    ratio: float | None
    verdict: str
    metrics: dict[str, Any]
    terms: dict[str, float]
    note: str = ""
    priced_on: str | None = None
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "plan"}
        d["plan"] = self.plan.model_dump(mode="json", exclude_none=True) if self.plan else None
        return d


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` returns; ``to_dict()`` is the ``shardwise explain --json`` document.

    Attributes
    ----------
    source
        ``'planner'`` (the plan came from :func:`solver.planner.plan`) or ``'given'``.
    status
        The solver status (``OPTIMAL``, ``FEASIBLE``, ``INFEASIBLE``, ...), or ``GIVEN`` for a
        plan passed in (``feasible`` then says whether the evaluator accepts it).
    feasible
        Whether the evaluator accepts ``plan`` (False for the closest plan of an infeasible
        instance).
    message
        The planner's message: for INFEASIBLE, which constraint group binds and the smallest
        relaxation found.
    plan, report
        The explained plan and its evaluator report (``evaluate --json`` keys); for an
        infeasible instance, the closest plan and its report (``memory_source == 'closest'``).
    memory_ledger
        The report's ledger rows, each with ``use`` = total / capacity.
    terms, bottleneck
        The step (request) time split into additive terms; the largest one.
    limits
        Binding constraints in words (memory near capacity, SLOs nearly met, all GPUs used).
    alternatives
        Alternative plans, scored, with verdicts.
    engines
        Which engines launch the plan (``launchable_by``) and why the others cannot
        (``refused``), what the planner optimised over (``scope``), and with ``engine_gap``
        the unrestricted optimum beside the best launchable plan (``gap``: both objectives,
        their ratio, and what each engine cannot express of the unrestricted plan).
    """

    model: str
    cluster: str
    kind: str
    objective_name: str
    objective_unit: str
    source: str
    status: str
    message: str
    objective: float | None
    plan: Plan | None
    report: dict[str, Any] | None
    memory_source: str
    feasible: bool
    memory_ledger: list[dict[str, Any]]
    terms: list[TimeTerm]
    bottleneck: Bottleneck | None
    limits: list[str]
    alternatives: list[Alternative]
    solve_time_s: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One JSON-able document (strict JSON after :func:`solver.report.to_jsonable`)."""
        doc: dict[str, Any] = {
            "model": self.model,
            "cluster": self.cluster,
            "kind": self.kind,
            "objective": {
                "name": self.objective_name,
                "unit": self.objective_unit,
                "value": self.objective,
            },
            "source": self.source,
            "status": self.status,
            "feasible": self.feasible,
            "message": self.message or None,
            "plan": self.plan.model_dump(mode="json", exclude_none=True) if self.plan else None,
            "memory_source": self.memory_source,
            "memory_ledger": self.memory_ledger,
            "terms": [t.to_dict() for t in self.terms],
            "bottleneck": self.bottleneck.to_dict() if self.bottleneck else None,
            "limits": list(self.limits),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "report": self.report,
            "solve_time_s": self.solve_time_s,
            "engines": self.engines or None,
        }
        out: dict[str, Any] = to_jsonable(doc)
        return out
