"""The wall-clock budget of one :func:`solver.plan` call, shared by every step of it.

``plan(..., time_limit_s=T)`` promises to return within ``T + GRACE_SHARE * T +
GRACE_S`` seconds of wall time, model building, verification and reporting included.  The
search (bounds, warm starts, CP-SAT) works to the limit ``T`` itself (:meth:`Deadline.left`);
what must still run after it -- the evaluator's verification of the plan, which is never
skipped -- uses the grace (:meth:`Deadline.grace_left`), and optional work (the rubric
baseline, re-ordering stages, the infeasibility explanation's relaxations, the pessimistic
re-solve) runs only where the deadline leaves room for it, the result's message saying what
was skipped.

Deterministic runs count the search in CP-SAT's deterministic time instead of the wall clock
(so that the same input gives the same plan); their deadline never expires
(:meth:`Deadline.unbounded`), since skipping work on the wall clock would break that promise.
"""

from __future__ import annotations

import math
import time

__all__ = ["GRACE_S", "GRACE_SHARE", "Deadline"]

#: The promised wall time is ``time_limit_s * (1 + GRACE_SHARE) + GRACE_S``: room for model
#: building, verification and reporting after a search that used the whole limit.
GRACE_SHARE = 0.10
GRACE_S = 0.5


class Deadline:
    """A wall-clock budget: ``limit_s`` seconds for the search from ``start``, plus the grace.

    Parameters
    ----------
    limit_s
        The search budget in seconds (``time_limit_s``); ``math.inf`` never expires.
    start
        ``time.perf_counter()`` when the budget began (default: now).
    """

    def __init__(self, limit_s: float, start: float | None = None) -> None:
        self.limit_s = float(limit_s)
        self.start = time.perf_counter() if start is None else start

    @classmethod
    def unbounded(cls) -> Deadline:
        """A deadline that never expires (deterministic runs)."""
        return cls(math.inf)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.limit_s)

    def elapsed(self) -> float:
        """Wall seconds since the start."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Search seconds left before the limit (negative once past it; inf if unbounded)."""
        return self.limit_s - self.elapsed()

    def grace_left(self) -> float:
        """Seconds left before the promised return time ``limit (1 + GRACE_SHARE) + GRACE_S``."""
        return self.limit_s * (1 + GRACE_SHARE) + GRACE_S - self.elapsed()

    def expired(self) -> bool:
        """True once the search limit has passed."""
        return self.left() <= 0

    def allows(self, seconds: float) -> bool:
        """Whether ``seconds`` more work still ends before the promised return time."""
        return self.grace_left() > seconds

    def sub(self, limit_s: float) -> Deadline:
        """A deadline ``limit_s`` seconds from now, never later than this one's limit."""
        return Deadline(max(0.0, min(limit_s, self.left())))
