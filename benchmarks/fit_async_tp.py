"""Fit of ``ASYNC_TP_OVERLAP_EFFICIENCY``, the one global parameter of torchtitan's async TP.

The June 2025 torchtitan benchmark (``benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md``
@ 2887250bbd91, rows ``tt2506_*`` of published-runs-modern.json) publishes six pairs of runs
that differ only in ``--parallelism.enable_async_tensor_parallel``.  The ratio async / vanilla
of their throughputs cancels everything the two runs share (GPU clocks under the 500 W cap,
attention, FSDP), so the fit compares predicted and measured ratios only: for each efficiency
on a grid, the sum over the pairs of (log predicted ratio - log measured ratio)^2; the
minimiser is printed.  Each row is mapped exactly as ``validate_modern.py`` maps it.

Usage::

    python benchmarks/fit_async_tp.py          # table per efficiency + the least-squares value

Always exits 0: a measuring instrument, not a test.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import validate_modern as vm  # noqa: E402

from solver.costmodel import tp_overlap  # noqa: E402

GRID = [round(0.05 * i, 2) for i in range(21)]


def pairs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(vanilla, async) row pairs of the June 2025 async-TP table."""
    by = {r["id"]: r for r in rows}
    out = []
    for rid, row in by.items():
        if rid.startswith("tt2506_") and rid.endswith("_vanilla_tp"):
            twin = by.get(rid[: -len("_vanilla_tp")] + "_async_tp")
            if twin is not None:
                out.append((row, twin))
    return out


def predicted_ratio(vanilla: dict[str, Any], asynctp: dict[str, Any]) -> float:
    a, b = vm.evaluate_row(vanilla), vm.evaluate_row(asynctp)
    return float(b["predicted_tokens_per_s_per_gpu"]) / float(a["predicted_tokens_per_s_per_gpu"])


def main() -> int:
    data = json.loads((vm.shared_dir() / "data" / vm.DATA_FILE).read_text())
    ps = pairs(data["runs"])
    measured = [
        b["measured"]["tokens_per_s_per_gpu"] / a["measured"]["tokens_per_s_per_gpu"] for a, b in ps
    ]
    saved = tp_overlap.ASYNC_TP_OVERLAP_EFFICIENCY
    best: tuple[float, float] | None = None
    print("efficiency  " + "  ".join(a["id"][17:40] for a, _ in ps) + "  sum sq log err")
    print("measured    " + "  ".join(f"{m:23.3f}" for m in measured))
    try:
        for eta in GRID:
            tp_overlap.ASYNC_TP_OVERLAP_EFFICIENCY = eta
            pred = [predicted_ratio(a, b) for a, b in ps]
            sse = sum((math.log(p) - math.log(m)) ** 2 for p, m in zip(pred, measured, strict=True))
            print(f"{eta:10.2f}  " + "  ".join(f"{p:23.3f}" for p in pred) + f"  {sse:.5f}")
            if best is None or sse < best[1]:
                best = (eta, sse)
    finally:
        tp_overlap.ASYNC_TP_OVERLAP_EFFICIENCY = saved
    assert best is not None
    print(
        f"least squares: ASYNC_TP_OVERLAP_EFFICIENCY = {best[0]:.2f} (sum sq log err {best[1]:.5f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
