"""Least-squares fits of measured times (numpy only; used on the device and on the host).

Every fit is linear in its coefficients, ``t = X @ beta`` with ``beta >= 0``, and minimises the
*relative* residuals ``sum(((X beta - t) / t)^2)``: message sizes and GEMM sizes span several
decades, and an unweighted fit would let the largest points decide everything (the small,
latency-bound points would be fitted with errors of 100% or more).

Collective models are the cost model's own (``solver/costmodel/comm.py``; nccl-tests
``doc/PERFORMANCE.md``; Thakur, Rabenseifner & Gropp 2005), so a fitted bandwidth and latency
can be used by the evaluator as they are:

* all-reduce on n GPUs: ``t = 2(n-1) alpha + 2(n-1)/n * S / B``
* all-gather / reduce-scatter (S = the full buffer): ``t = (n-1) alpha + (n-1)/n * S / B``
* send/recv: ``t = alpha + S / B``

``B`` is the *bus* bandwidth per GPU per direction and ``alpha`` the per-step latency.
Throughput fits (GEMM FLOPs, memory bytes) use ``t = t0 + W / R``: ``R`` is the asymptotic rate
and ``t0`` the fixed cost (kernel launch, tail effects).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "COLLECTIVES",
    "AlphaBeta",
    "LinearFit",
    "Throughput",
    "collective_coefficients",
    "fit_collective",
    "fit_nonneg_relative",
    "fit_throughput",
]

FloatArray = npt.NDArray[np.float64]

#: Collectives whose alpha-beta model :func:`collective_coefficients` knows.
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "send_recv")


@dataclass(frozen=True)
class LinearFit:
    """Coefficients of ``t = X @ beta`` and the relative residuals of the fit."""

    beta: tuple[float, ...]
    max_rel_err: float
    rms_rel_err: float
    points: int


def fit_nonneg_relative(x: npt.ArrayLike, t: npt.ArrayLike) -> LinearFit:
    """Minimise ``sum(((X beta - t) / t)^2)`` over ``beta >= 0``.

    With at most a handful of coefficients the non-negative optimum is found exactly by
    solving the unconstrained problem on every subset of free coefficients and keeping the
    best feasible one (the optimum of a convex problem over the orthant has some subset of
    coefficients at zero and the rest at their unconstrained optimum on that face).
    """
    X = np.asarray(x, dtype=np.float64)
    y = np.asarray(t, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"fit: X must be (n, k) and t (n,), got {X.shape} and {y.shape}")
    n, k = X.shape
    if n < k:
        raise ValueError(f"fit: need at least {k} points, got {n}")
    if k > 4:
        raise ValueError(f"fit: at most 4 coefficients, got {k}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("fit: times must be finite and > 0")
    A = X / y[:, None]
    ones = np.ones(n)
    best: tuple[float, FloatArray] | None = None
    for r in range(1, k + 1):
        for free in itertools.combinations(range(k), r):
            cols = list(free)
            sol, *_ = np.linalg.lstsq(A[:, cols], ones, rcond=None)
            if np.any(sol < 0):
                continue
            beta = np.zeros(k)
            beta[cols] = sol
            res = float(np.sum((A @ beta - ones) ** 2))
            if best is None or res < best[0]:
                best = (res, beta)
    if best is None:  # every column has a negative optimum alone: the data has no trend
        raise ValueError("fit: no non-negative fit exists (times do not grow with the work)")
    beta = best[1]
    rel = A @ beta - ones
    return LinearFit(
        beta=tuple(float(b) for b in beta),
        max_rel_err=float(np.max(np.abs(rel))),
        rms_rel_err=float(np.sqrt(np.mean(rel**2))),
        points=n,
    )


@dataclass(frozen=True)
class AlphaBeta:
    """A fitted collective: per-step latency and bus bandwidth (cost-model parameterisation)."""

    op: str
    latency_s: float
    bandwidth_Bps: float
    max_rel_err: float
    rms_rel_err: float
    points: int

    @property
    def latency_us(self) -> float:
        return self.latency_s * 1e6

    @property
    def bandwidth_GBps(self) -> float:
        return self.bandwidth_Bps / 1e9

    def predict(self, nbytes: float, n: int) -> float:
        """Time of one ``op`` of ``nbytes`` on ``n`` GPUs under the fitted model."""
        lat, bw = collective_coefficients(self.op, n, nbytes)
        return lat * self.latency_s + bw / self.bandwidth_Bps

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "op": self.op,
            "latency_us": self.latency_us,
            "bandwidth_GBps": self.bandwidth_GBps,
            "max_rel_err": self.max_rel_err,
            "rms_rel_err": self.rms_rel_err,
            "points": self.points,
        }


def collective_coefficients(op: str, n: int, nbytes: float) -> tuple[float, float]:
    """(latency steps, bytes over the bus) of one collective: ``t = c0 alpha + c1 / B``."""
    if op == "all_reduce":
        return 2.0 * (n - 1), 2.0 * (n - 1) / n * nbytes
    if op in ("all_gather", "reduce_scatter"):
        return float(n - 1), (n - 1) / n * nbytes
    if op == "send_recv":
        return 1.0, float(nbytes)
    raise ValueError(f"op: must be one of {', '.join(COLLECTIVES)}, got {op!r}")


def fit_collective(
    op: str, group_sizes: Sequence[int], nbytes: Sequence[float], times_s: Sequence[float]
) -> AlphaBeta:
    """Fit one collective's latency and bus bandwidth jointly over all group sizes and sizes."""
    if not (len(group_sizes) == len(nbytes) == len(times_s)):
        raise ValueError("fit_collective: group_sizes, nbytes and times_s differ in length")
    rows = [collective_coefficients(op, group_sizes[i], nbytes[i]) for i in range(len(nbytes))]
    lf = fit_nonneg_relative(np.array(rows), np.array(times_s, dtype=np.float64))
    lat, inv_bw = lf.beta
    if inv_bw <= 0:
        raise ValueError(f"fit_collective({op}): times do not grow with the message size")
    return AlphaBeta(op, lat, 1.0 / inv_bw, lf.max_rel_err, lf.rms_rel_err, lf.points)


@dataclass(frozen=True)
class Throughput:
    """``t = overhead_s + work / rate``: an asymptotic rate and a fixed cost per call."""

    rate: float
    overhead_s: float
    max_rel_err: float
    rms_rel_err: float
    points: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "rate": self.rate,
            "overhead_us": self.overhead_s * 1e6,
            "max_rel_err": self.max_rel_err,
            "rms_rel_err": self.rms_rel_err,
            "points": self.points,
        }


def fit_throughput(work: Sequence[float], times_s: Sequence[float]) -> Throughput:
    """Fit ``t = t0 + work / R`` (work in FLOPs or bytes) with ``t0, 1/R >= 0``."""
    w = np.asarray(work, dtype=np.float64)
    lf = fit_nonneg_relative(np.column_stack([np.ones_like(w), w]), np.asarray(times_s))
    t0, inv_rate = lf.beta
    if inv_rate <= 0:
        raise ValueError("fit_throughput: times do not grow with the work")
    return Throughput(1.0 / inv_rate, t0, lf.max_rel_err, lf.rms_rel_err, lf.points)
