"""Tables and global fits from a ``serving_micro.py`` JSON (numpy only; runs anywhere).

    python benchmarks/validation/serving/report.py raw-h100x1-serving.json [--json fits.json]

Prints markdown: the ceilings; the GEMM weight-stream and FLOP efficiency by M (median, min
and max over the 20 weight shapes); a fit of the smooth-roofline GEMM form of
``solver/costmodel/serving_engine.py`` (``t = fixed + (t_c^p + t_m^p)^(1/p)``, with
``t_c`` = FLOPs / measured 8192^3 rate and ``t_m`` = bytes moved / (3.35 TB/s x a memory
efficiency): three global parameters per dtype, least squares in log time over every timed
row) next to the error of the A100-fitted constants (p 1.5, 8 us) with the same roofs; decode attention (fastest kernel per batch/context and
a fit ``t = fixed + KV bytes / B_eff`` over those rows); the eager vs CUDA-graph decode step;
launch latency; small-token prefill.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from solver.profile.calibrate_serving import fit_fixed_plus_bytes

#: What ``solver/costmodel/serving_engine.py`` uses (fitted on an A100 table), for comparison.
A100_FIT = {"p": 1.5, "fixed_us": 8.0}
#: H100 SXM5 HBM3 bandwidth, NVIDIA H100 datasheet (2023): the memory roof's reference.
HBM_DATASHEET = 3.35e12


def gemm_fit(rows: list[dict[str, Any]], flops_roof: float, hbm_peak: float) -> dict[str, Any]:
    """Grid search of (p, fixed, memory efficiency) minimising mean squared log error.

    ``t = fixed + (t_c^p + t_m^p)^(1/p)``, ``t_c`` = FLOPs / ``flops_roof`` (the measured
    8192^3 rate), ``t_m`` = bytes moved (weights + activation in + out) / (``hbm_peak`` x
    memory efficiency): three global parameters per dtype, over every timed row.
    """
    t = np.array([r["s"] for r in rows])
    tc = np.array([r["flops"] * r["s"] for r in rows]) / flops_roof
    nbytes = np.array([r["io_Bps"] * r["s"] for r in rows])
    fixed_grid = np.arange(0.0, 12.01, 0.1)

    def err(p: float, fixed: np.ndarray, eff: float) -> np.ndarray:
        tm = nbytes / (hbm_peak * eff)
        base = np.maximum(tc, tm) if math.isinf(p) else (tc**p + tm**p) ** (1.0 / p)
        return np.log((fixed[:, None] * 1e-6 + base[None, :]) / t[None, :])

    best = (math.inf, 0.0, 0.0, 0.0)
    for eff in np.arange(0.70, 1.001, 0.01):
        for p in np.arange(1.0, 8.01, 0.05):
            mse = np.mean(err(p, fixed_grid, eff) ** 2, axis=1)
            i = int(np.argmin(mse))
            if mse[i] < best[0]:
                best = (float(mse[i]), float(p), float(fixed_grid[i]), float(eff))
    _, p, fixed, eff = best
    one = np.array
    e_fit = err(p, one([fixed]), eff)[0]
    e_a100 = err(A100_FIT["p"], one([A100_FIT["fixed_us"]]), eff)[0]
    e_roof = err(math.inf, one([0.0]), eff)[0]
    return {
        "p": round(p, 2),
        "fixed_us": round(fixed, 1),
        "memory_efficiency_vs_datasheet": round(eff, 2),
        "rows": len(rows),
        "mean_abs_log_err": float(np.mean(np.abs(e_fit))),
        "a100_constants_mean_abs_log_err": float(np.mean(np.abs(e_a100))),
        "a100_constants_median_log_err": float(np.median(e_a100)),
        "roofline_mean_abs_log_err": float(np.mean(np.abs(e_roof))),
    }


def attention_fit(best: list[dict[str, Any]]) -> dict[str, Any]:
    """Least squares ``t = fixed + bytes / B`` over the fastest kernel of each case."""
    fixed, inv_b = fit_fixed_plus_bytes([r["s"] for r in best], [r["kv_bytes"] for r in best])
    return {"fixed_us": float(fixed * 1e6), "B_eff_Bps": float(1.0 / inv_b), "cases": len(best)}


def _bw(c: dict[str, Any]) -> float:
    """The bandwidth ceiling: the measured read stream, else the copy (read + write)."""
    return float(c.get("read_Bps") or c["copy_read_plus_write_Bps"])


def _gemm_tables(res: dict[str, Any], fits: dict[str, Any]) -> list[str]:
    c = res["ceilings"]
    rows = [r for r in res["gemm"] if "s" in r]
    out = ["| dtype | M | weight-stream / read BW (median, min-max) | TFLOP/s / square rate "
           "(median) | TB/s weights (median) |", "|---|---|---|---|---|"]  # fmt: skip
    for dt in ("bf16", "fp8_tensorwise", "fp8_rowwise"):
        peak = c["bf16_square_flops"] if dt == "bf16" else c.get("fp8_square_flops")
        for m in sorted({r["m"] for r in rows}):
            rs = [r for r in rows if r["dtype"] == dt and r["m"] == m]
            if not rs:
                continue
            e = [r["weight_Bps"] / _bw(c) for r in rs]
            f = statistics.median(r["flops"] for r in rs) / peak if peak else math.nan
            w = statistics.median(r["weight_Bps"] for r in rs) / 1e12
            out.append(f"| {dt} | {m} | {statistics.median(e):.2f} ({min(e):.2f}-{max(e):.2f}) "
                       f"| {f:.3f} | {w:.2f} |")  # fmt: skip
        roof = peak or math.nan
        fit = gemm_fit([r for r in rows if r["dtype"] == dt], roof, HBM_DATASHEET)
        fits[f"gemm_{dt}"] = fit
    return out


def _attention_tables(res: dict[str, Any], fits: dict[str, Any]) -> list[str]:
    rows = [r for r in res["decode_attention"]["rows"] if "s" in r and r["kv_dtype"] == "bf16"]
    copy = _bw(res["ceilings"])
    out = ["| batch | context | KV MB | best kernel | us | TB/s | / read BW | gqa/default us |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    best = []
    for b, cx in sorted({(r["batch"], r["context"]) for r in rows}):
        rs = [r for r in rows if (r["batch"], r["context"]) == (b, cx)]
        top = min(rs, key=lambda r: r["s"])
        best.append(top)
        dflt = [r["s"] for r in rs if (r["kernel"], r["backend"]) == ("sdpa_gqa", "default")]
        out.append(f"| {b} | {cx} | {top['kv_bytes'] / 1e6:.0f} | {top['kernel']}/"
                   f"{top['backend']} | {top['s'] * 1e6:.1f} | {top['kv_Bps'] / 1e12:.2f} | "
                   f"{top['kv_Bps'] / copy:.2f} | "
                   f"{dflt[0] * 1e6 if dflt else math.nan:.1f} |")  # fmt: skip
    fits["decode_attention"] = attention_fit(best)
    fits["decode_attention"]["B_eff_vs_ceiling"] = fits["decode_attention"]["B_eff_Bps"] / copy
    return out


def _step_tables(res: dict[str, Any]) -> list[str]:
    out = ["| layers | batch | kernels | eager us | graph us | eager-graph us | host issue us |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["step_overhead"]:
        if r.get("graph_s") is None:
            continue
        out.append(f"| {r['layers']} | {r['batch']} | {r['kernels_per_step']} | "
                   f"{r['eager_s'] * 1e6:.0f} | {r['graph_s'] * 1e6:.0f} | "
                   f"{r['eager_minus_graph_s'] * 1e6:.0f} | {r['host_issue_s'] * 1e6:.0f} |")  # fmt: skip
    return out


def _prefill_tables(res: dict[str, Any]) -> list[str]:
    out = ["| layer | tokens | eager us | graph us | TFLOP/s (graph) |", "|---|---|---|---|---|"]
    for r in res["prefill"]:
        out.append(f"| {r['model']}/tp{r['tp']} | {r['tokens']} | {r['eager_s'] * 1e6:.0f} | "
                   f"{(r['graph_s'] or math.nan) * 1e6:.0f} | {r['flops_graph'] / 1e12:.0f} |")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--json", help="write the fits here")
    args = ap.parse_args()
    res = json.loads(Path(args.raw).read_text())
    fits: dict[str, Any] = {}
    c = res["ceilings"]
    lines = [f"GPU {res['meta'].get('gpu')}, torch {res['meta']['torch']}, "
             f"{res['meta']['date_utc']}",
             f"copy {c['copy_read_plus_write_Bps'] / 1e12:.3f} TB/s (read+write), read "
             f"{(c.get('read_Bps') or math.nan) / 1e12:.3f} TB/s, "
             f"bf16 8192^3 {c['bf16_square_flops'] / 1e12:.0f} TFLOP/s, "
             f"fp8 {(c.get('fp8_square_flops') or math.nan) / 1e12:.0f} TFLOP/s", ""]  # fmt: skip
    for name, fn in (("gemm", _gemm_tables), ("decode_attention", _attention_tables)):
        if isinstance(res.get(name), (list, dict)) and "error" not in res[name]:
            lines += fn(res, fits) + [""]
    if isinstance(res.get("step_overhead"), list):
        lines += _step_tables(res) + [""]
    if isinstance(res.get("prefill"), list):
        lines += _prefill_tables(res) + [""]
    lines.append("launch: " + json.dumps(res.get("launch")))
    lines.append("summary: " + json.dumps({k: v for k, v in res.get("summary", {}).items()
                                           if k.startswith(("graph", "eager"))}))  # fmt: skip
    lines.append("fits: " + json.dumps(fits, indent=1))
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(fits, indent=1))


if __name__ == "__main__":
    main()
