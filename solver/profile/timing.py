"""Timing on GPU (CUDA events) or CPU (``perf_counter``) with one interface (torch + stdlib)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Stopwatch", "median", "time_calls"]


def _event() -> Any:
    """A CUDA event that records time (torch leaves its constructor untyped)."""
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


def median(xs: list[float]) -> float:
    """The median of a non-empty list."""
    if not xs:
        raise ValueError("median: empty list")
    return float(statistics.median(xs))


@dataclass
class Stopwatch:
    """Accumulates named intervals of device work without synchronising in between.

    On CUDA each interval is a pair of events on the current stream, so it measures when the
    stream *executed* the work (waits on other streams' collectives included, host gaps
    excluded); :meth:`totals` synchronises once and sums them.  On CPU it is wall time.
    """

    device: torch.device
    _open: dict[str, object] = field(default_factory=dict)
    _pairs: list[tuple[str, object, object]] = field(default_factory=list)

    def start(self, tag: str) -> None:
        if self.device.type == "cuda":
            ev = _event()
            ev.record()
            self._open[tag] = ev
        else:
            self._open[tag] = time.perf_counter()

    def stop(self, tag: str) -> None:
        begin = self._open.pop(tag)
        if self.device.type == "cuda":
            ev = _event()
            ev.record()
            self._pairs.append((tag, begin, ev))
        else:
            self._pairs.append((tag, begin, time.perf_counter()))

    def totals(self) -> dict[str, float]:
        """Seconds per tag, summed over its intervals; clears the stopwatch."""
        out: dict[str, float] = {}
        if self.device.type == "cuda" and self._pairs:
            torch.cuda.synchronize(self.device)
        for tag, a, b in self._pairs:
            if isinstance(a, torch.cuda.Event) and isinstance(b, torch.cuda.Event):
                dt = a.elapsed_time(b) / 1e3
            else:
                assert isinstance(a, float) and isinstance(b, float)
                dt = b - a
            out[tag] = out.get(tag, 0.0) + dt
        self._pairs.clear()
        return out


def time_calls(
    fn: Callable[[], object], device: torch.device, *, warmup: int, reps: int
) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` (after ``warmup`` untimed calls).

    Each call is bracketed by its own events, so one slow call (a clock ramp, an allocator
    growth) shows up as an outlier that the caller's median ignores.
    """
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        evs = [(_event(), _event()) for _ in range(reps)]
        for a, b in evs:
            a.record()
            fn()
            b.record()
        torch.cuda.synchronize(device)
        return [a.elapsed_time(b) / 1e3 for a, b in evs]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out
