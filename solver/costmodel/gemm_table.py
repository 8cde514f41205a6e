"""Measured GEMM tables.  A calibration may carry ``gemm_table`` (rows ``[m, k, n, TFLOP/s]``
timed by ``solver/profile/bench.py``): the cost model then prices each GEMM group at the rate
measured for its own shape (:func:`gemm_rate_tflops`) instead of the single
``peak x gemm_efficiency``, and a backward GEMM as its data-gradient and weight-gradient GEMMs
at their own shapes' rates instead of 2x the forward time.  Per-shape kernel tables are how
Vidur (Agrawal et al. 2024, "Vidur: A Large-Scale Simulation Framework for LLM Inference",
profiled operator tables + interpolation) and NVIDIA AIConfigurator (per-GPU, per-framework
GEMM/attention/communication databases) price kernels; real GEMM rates are not monotonic in
shape (tile and wave quantisation), which no smooth curve through a few points follows.
"""

from __future__ import annotations

import math

__all__ = [
    "GEMM_TABLE_NEIGHBOURS",
    "GEMM_TABLE_POWER",
    "GemmDims",
    "gemm_pass_shapes",
    "gemm_rate_tflops",
]

#: ``(m, k, n)`` of a GEMM ``(m x k) @ (k x n)``.
GemmDims = tuple[float, float, float]

#: Neighbours and power of the inverse-distance weighting in :func:`gemm_rate_tflops`.
GEMM_TABLE_NEIGHBOURS = 8
GEMM_TABLE_POWER = 2.0


class _RateTable:
    """A ``gemm_table`` prepared for lookups: unique shapes in log2 space, per-axis bounds,
    and a memo of the rates already asked for (the planner prices the same shapes often)."""

    __slots__ = ("hi", "lo", "memo", "pts", "rates", "table")

    def __init__(self, table: tuple[tuple[int, int, int, float], ...]) -> None:
        self.table = table  # keeps the tuple alive, so its id() is not reused while cached
        self.pts = [(math.log2(m), math.log2(k), math.log2(n)) for m, k, n, _ in table]
        self.rates = [float(r[3]) for r in table]
        self.lo = tuple(min(p[i] for p in self.pts) for i in range(3))
        self.hi = tuple(max(p[i] for p in self.pts) for i in range(3))
        self.memo: dict[GemmDims, float] = {}

    def rate(self, dims: GemmDims) -> float:
        hit = self.memo.get(dims)
        if hit is not None:
            return hit
        q = [
            min(max(math.log2(max(d, 1.0)), lo), hi)
            for d, lo, hi in zip(dims, self.lo, self.hi, strict=True)
        ]
        d2 = sorted(
            ((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2, r)
            for p, r in zip(self.pts, self.rates, strict=True)
        )[:GEMM_TABLE_NEIGHBOURS]
        if d2[0][0] < 1e-18:
            out = d2[0][1]
        else:
            w = [dd ** (-GEMM_TABLE_POWER / 2.0) for dd, _ in d2]
            out = sum(wi * r for wi, (_, r) in zip(w, d2, strict=True)) / sum(w)
        self.memo[dims] = out
        return out


_RATE_TABLES: dict[int, _RateTable] = {}


def gemm_rate_tflops(table: tuple[tuple[int, int, int, float], ...], dims: GemmDims) -> float:
    """Measured TFLOP/s of the GEMM ``(m x k) @ (k x n)``, ``dims = (m, k, n)``, from a
    calibration's ``gemm_table`` (rows ``[m, k, n, TFLOP/s]``).

    Scheme: shapes live in log2 space (GEMM efficiency depends on ratios of sizes, and the
    profile sweeps them in powers of two).  The query is first clamped, axis by axis, into
    the table's bounding box (no extrapolation: a shape smaller or larger than any measured
    one gets the rate of the nearest measured edge; for tiny decode GEMMs the memory roof
    decides anyway).  A shape that was measured returns its measured rate exactly; otherwise
    the result is the inverse-distance-weighted mean (Shepard's method, weights ``1/d^2``) of
    the :data:`GEMM_TABLE_NEIGHBOURS` nearest measured shapes.  The result is a convex
    combination of measured rates, so it never leaves [min, max] of the table; callers also
    cap it at the GPU's MAMF.  Nearest-neighbour rather than a fitted curve, because measured
    rates are not monotonic in shape (tile / wave quantisation).  Lookups are memoised per
    table.
    """
    rt = _RATE_TABLES.get(id(table))
    if rt is None or rt.table is not table:
        if len(_RATE_TABLES) >= 64:
            _RATE_TABLES.clear()
        rt = _RATE_TABLES[id(table)] = _RateTable(table)
    return rt.rate(dims)


def gemm_pass_shapes(dims: GemmDims) -> tuple[GemmDims, GemmDims, GemmDims]:
    """(forward, dgrad, wgrad) ``(m, k, n)`` of a linear layer whose forward is
    ``(m x k) @ (k x n)``, in the layout ``solver/profile/bench.py`` times them (PyTorch
    ``nn.Linear``, weight stored ``n x k``): forward ``Y = X W^T``; data gradient
    ``dX = dY W``: ``(m x n) @ (n x k)``; weight gradient ``dW = dY^T X``: ``(n x m) @ (m x k)``.
    All three have ``2 m k n`` FLOPs."""
    m, k, n = dims
    return (m, k, n), (m, n, k), (n, m, k)
