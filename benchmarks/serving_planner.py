"""Serving planner: the cheapest verified fleet for a request rate under p99 SLOs, and its time.

Issue 16's planner case: Llama-3-70B, 20 req/s, ISL 2048 / OSL 256, p99 TTFT <= 1 s and
p99 TPOT <= 50 ms, on an H100 pool and an A100 pool (``instances/serving-h100-a100.yaml``,
``instances/infer-2k256-p99.yaml``; prices are the instance file's illustrative figures).
Runs :func:`solver.cpsat.plan_serving.plan_serving` for

* ``min_cost`` at 20 req/s (the done-when case; target <= 10 s on a 2-core machine), also
  timed end to end through the CLI (``shardwise plan-serving ... --json``, process start and
  imports included);
* ``min_gpus`` at 20 req/s;
* ``min_cost`` at 20 req/s verified with weighted round-robin dispatch instead of weighted
  random (smoother per-replica arrivals);
* ``max_goodput`` on the whole cluster;

and prints, per case: status, the fleet, $/h, GPUs, the summed single-replica capacity, the
verified p50/p99 TTFT and TPOT, goodput, and the wall time by phase.  Writes
benchmarks/results/serving_planner.json.

    python benchmarks/serving_planner.py           # ~30-60 s on a 2-core machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from solver import load_cluster, load_model, load_workload  # noqa: E402
from solver.cpsat.plan_serving import plan_serving  # noqa: E402
from solver.cpsat.serving_fleet import ServingPlanResult  # noqa: E402
from solver.specs import InferenceWorkload  # noqa: E402

MODEL, CLUSTER, WORKLOAD, RATE = "llama3-70b", "serving-h100-a100", "infer-2k256-p99", 20.0
CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("min_cost 20 req/s", {"rate": RATE, "objective": "min_cost"}),
    ("min_gpus 20 req/s", {"rate": RATE, "objective": "min_gpus"}),
    (
        "min_cost 20 req/s, round-robin",
        {"rate": RATE, "objective": "min_cost", "routing": "weighted_round_robin"},
    ),
    ("max_goodput", {"objective": "max_goodput"}),
)
#: The issue's time target for the min_cost case (seconds, 2-core machine).
TARGET_S = 10.0


def _row(name: str, res: ServingPlanResult, wall: float) -> dict[str, Any]:
    v = res.verification
    return {
        "case": name,
        "status": res.status,
        "objective": res.objective,
        "objective_value": res.objective_value,
        "model_optimum": res.model_optimum,
        "fleet": [
            {
                "count": g.count,
                "pool": g.pool,
                "gpu": g.gpu,
                "tp": g.tp,
                "pp": g.pp,
                "max_num_seqs": g.max_num_seqs,
                "capacity_rps": g.capacity_rps,
            }
            for g in res.fleet
        ],
        "gpus": res.gpus,
        "cost_per_hour": res.cost_per_hour,
        "capacity_rps": res.capacity_rps,
        "rate_rps": res.rate_rps,
        "verified": res.verified,
        "extra_replicas": res.extra_replicas,
        "removed_replicas": res.removed_replicas,
        "verification": None
        if v is None
        else {
            "num_requests": v.num_requests,
            "routing": v.routing,
            "ttft_ms": v.ttft_ms.model_dump(),
            "tpot_ms": v.tpot_ms.model_dump(),
            "goodput_rps": v.goodput,
            "slo_attainment": v.slo_attainment,
        },
        "candidates": [
            {
                "key": c.key,
                "gpus": c.gpus,
                "capacity_rps": c.capacity_rps,
                "upper_rps": c.upper_rps,
                "probes": c.probes,
                "reason": c.reason,
            }
            for c in res.candidates
        ],
        "message": res.message,
        "timings_s": res.timings_s,
        "wall_s": wall,
    }


def _cli_wall() -> tuple[float, int, str]:
    """Wall time of ``shardwise plan-serving ... --json`` in a fresh process."""
    cmd = [
        sys.executable,
        "-m",
        "solver",
        "plan-serving",
        "-m",
        MODEL,
        "-c",
        CLUSTER,
        "-w",
        WORKLOAD,
        "--rate",
        str(RATE),
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    status = json.loads(proc.stdout)["status"] if proc.stdout.strip() else "?"
    return wall, proc.returncode, status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serving_planner.json")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timing")
    args = ap.parse_args()
    model, cluster = load_model(MODEL), load_cluster(CLUSTER)
    workload = load_workload(WORKLOAD)
    assert isinstance(workload, InferenceWorkload)
    rows = []
    print(
        f"{MODEL} on {CLUSTER} ({WORKLOAD}: ISL {workload.prompt_tokens}, OSL "
        f"{workload.output_tokens}, p99 TTFT <= {workload.ttft_ms} ms, p99 TPOT <= "
        f"{workload.tpot_ms} ms)\n"
    )
    head = (
        f"{'case':<32} {'status':<9} {'fleet':<34} {'$/h':>7} {'GPUs':>4} {'cap r/s':>7} "
        f"{'TTFT p50/p99 ms':>16} {'TPOT p50/p99':>13} {'goodput':>7} {'wall s':>6}"
    )
    print(head)
    print("-" * len(head))
    for name, kwargs in CASES:
        t0 = time.perf_counter()
        res = plan_serving(model, cluster, workload, **kwargs)
        wall = time.perf_counter() - t0
        row = _row(name, res, wall)
        rows.append(row)
        fleet = " + ".join(f"{g.count}x TP{g.tp} PP{g.pp} {g.pool}" for g in res.fleet) or "-"
        v = res.verification
        lat = "-" if v is None else f"{v.ttft_ms.p50:,.0f}/{v.ttft_ms.p99:,.0f}"
        tpot = "-" if v is None else f"{v.tpot_ms.p50:.1f}/{v.tpot_ms.p99:.1f}"
        good = "-" if v is None else f"{v.goodput:.2f}"
        cost = "-" if res.cost_per_hour is None else f"{res.cost_per_hour:,.1f}"
        print(
            f"{name:<32} {res.status:<9} {fleet:<34} {cost:>7} {res.gpus or 0:>4} "
            f"{res.capacity_rps or 0:>7.2f} {lat:>16} {tpot:>13} {good:>7} {wall:>6.2f}"
        )
    first = rows[0]
    print(
        f"\nmin_cost 20 req/s: {first['wall_s']:.2f} s in-process (target <= {TARGET_S:g} s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in first["timings_s"].items())
    )
    cli: dict[str, Any] | None = None
    if not args.no_cli:
        wall, rc, status = _cli_wall()
        cli = {"wall_s": wall, "exit_code": rc, "status": status}
        print(f"CLI end to end (process start, imports, --json): {wall:.2f} s, exit {rc}, {status}")
    doc = {
        "benchmark": "serving_planner",
        "model": MODEL,
        "cluster": CLUSTER,
        "workload": WORKLOAD,
        "target_s": TARGET_S,
        "cases": rows,
        "cli": cli,
        "machine": {
            "python": platform.python_version(),
            "numpy": version("numpy"),
            "ortools": version("ortools"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared 2-core machine; other work ran at the same time",
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    tmp.replace(args.out)
    out = args.out.resolve()
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
