"""Sweep throughput: cases per second for the local pool (1 and 2 processes) and Ray.

Prints a table and writes ``benchmarks/results/sweep.json``.  Run::

    .venv/bin/python benchmarks/sweep.py                      # 1,000 cases x 3 executors
    .venv/bin/python benchmarks/sweep.py --cases 200          # a seeded random subset
    .venv/bin/python benchmarks/sweep.py --executors local2,ray --time-limit 1

The 1,000 cases are 20 models x 10 clusters x 5 workloads: 12 GPT models from the ``gpt``
family generator (350M to 175B; Megatron 2021 Table 1 scaling) and 8 bundled models (tiny
test models, Llama 3 8B/70B/405B, Mixtral 8x7B, GPT-3 175B), on the bundled clusters from one
H100 to 144 GB200s, under two training and three inference workloads.  Each case is solved
with the same per-case time limit and ``deterministic=True``; every executor solves the same
cases, and the objectives are compared case by case.

Ray's start-up (``ray.init`` of a local instance) is timed separately and reported beside the
sweep's own wall time: the overhead figure compares the sweep alone with the local pool at the
same process count, and the start-up is a fixed cost paid once per sweep.

On a shared machine the cases' own durations move with the load, so cases/s of two runs made
minutes apart are not comparable to a few percent.  ``busy`` (the sum of the cases' wall times
over processes x sweep wall time) is the fraction of the workers' time spent inside cases;
``1 - busy`` is the executor's own overhead, and it is what ``ray_overhead_vs_local2_busy``
compares.  ``--repeat N`` alternates the executors N times for a direct wall-clock comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from solver.sweep import Case, cartesian, family_models, read_results, sweep  # noqa: E402
from solver.sweep.store import RESULTS_FILE  # noqa: E402

FAMILY_SIZES = ["350m", "1b", "1.7b", "3b", "7b", "13b", "18b", "30b", "39b", "70b", "145b", "175b"]
BUNDLED_MODELS = [
    "tiny-gpt",
    "tiny-llama",
    "tiny-moe",
    "llama3-8b",
    "mixtral-8x7b",
    "llama3-70b",
    "gpt3-175b",
    "llama3.1-405b",
]
CLUSTERS = [
    "tiny-1x1-h100",
    "h100x2-nvlink",
    "tiny-hetero",
    "tiny-2x4-a100",
    "pcie-8x-l40s",
    "pcie-8x-a100",
    "seed-4x8-h100",
    "selene-a100-64",
    "hetero-mix",
    "nvl72",
]
WORKLOADS = [
    "train-gpt-s2048",
    "train-llama-s8192",
    "infer-chat-slo",
    "infer-min-gpus",
    "infer-latency",
]
EXECUTORS = {"local1": ("local", 1), "local2": ("local", 2), "ray": ("ray", 2)}


def all_cases() -> list[Case]:
    """The 1,000 cases, models varying slowest."""
    models: list[Any] = [*family_models("gpt", FAMILY_SIZES), *BUNDLED_MODELS]
    return cartesian(models, CLUSTERS, WORKLOADS)


def subset(cases: list[Case], n: int) -> list[Case]:
    """``n`` cases drawn at random (seed 0) and kept in sweep order: a representative sample."""
    if n >= len(cases):
        return cases
    keep = set(random.Random(0).sample(range(len(cases)), n))
    return [c for i, c in enumerate(cases) if i in keep]


def _descendants_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of ``root``'s descendant processes, by kind (Linux /proc).

    Ray's task workers show as ``ray::...`` in their command line; anything else started by
    ``ray.init`` (raylet, gcs_server, the log monitor, agents) is a daemon.  Empty where there
    is no /proc.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    kind: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        first = cmd[0].decode(errors="replace") if cmd else ""
        kind[pid] = "ray workers" if first.startswith("ray::") else "ray daemons"
    out: dict[str, float] = {}
    for pid in cpu:
        p = parent.get(pid)
        while p is not None and p not in (root, 0, 1):
            p = parent.get(p)
        if p == root:
            out[kind[pid]] = out.get(kind[pid], 0.0) + cpu[pid]
    return out


def run_one(name: str, cases: list[Case], out: Path, time_limit: float) -> dict[str, Any]:
    executor, processes = EXECUTORS[name]
    load_before = os.getloadavg()[0]
    startup_s = 0.0
    if executor == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=processes, include_dashboard=False, log_to_driver=False)
        startup_s = time.perf_counter() - t0
    cpu_before = _descendants_cpu(os.getpid()) if executor == "ray" else {}
    try:
        summary = sweep(
            cases,
            out=out,
            executor=executor,
            workers=processes,
            time_limit_s=time_limit,
            deterministic=True,
        )
        cpu_after = _descendants_cpu(os.getpid()) if executor == "ray" else {}
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    daemon_cpu = cpu_after.get("ray daemons", 0.0) - cpu_before.get("ray daemons", 0.0)
    records = read_results(out / RESULTS_FILE).records
    case_wall = sum(float(r.get("wall_s") or 0.0) for r in records)
    return {
        "executor": executor,
        "processes": processes,
        "cases": summary.solved,
        "wall_s": summary.wall_s,
        "startup_s": startup_s,
        "cases_per_s": summary.solved / summary.wall_s,
        "cases_per_s_with_startup": summary.solved / (summary.wall_s + startup_s),
        "statuses": summary.statuses,
        "solve_time_s_sum": sum(float(r.get("solve_time_s") or 0.0) for r in records),
        "case_wall_s_sum": case_wall,
        # Fraction of the processes' time spent inside cases: 1 - the executor's own overhead
        # (dispatch, pickling, writing results).  Unlike cases/s it does not move with how
        # busy the machine is, which changes the cases' own durations.
        "busy_fraction": case_wall / (processes * summary.wall_s),
        # CPU that Ray's own daemons used during the sweep, as a share of the cores it had.
        "ray_daemon_cpu_s": daemon_cpu,
        "ray_daemon_cpu_share": daemon_cpu / (processes * summary.wall_s),
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
        "objectives": {r["key"]: (r["status"], r["objective"]) for r in records},
    }


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """Cases with the same status and objective in two runs, and the ways they differ."""
    same = status_diff = obj_diff_optimal = obj_diff_feasible = 0
    for key, (status, obj) in a["objectives"].items():
        other = b["objectives"].get(key)
        if other is None:
            continue
        if other[0] != status:
            status_diff += 1
        elif other[1] == obj:
            same += 1
        elif status == "OPTIMAL":
            obj_diff_optimal += 1
        else:
            obj_diff_feasible += 1
    return {
        "identical": same,
        "status_differs": status_diff,
        "objective_differs_optimal": obj_diff_optimal,
        "objective_differs_time_limited": obj_diff_feasible,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases to run (a seeded random subset)")
    ap.add_argument("--time-limit", type=float, default=1.0, help="per-case CP-SAT limit (s)")
    ap.add_argument(
        "--executors", default="local1,local2,ray", help="comma-separated: local1,local2,ray"
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="run the executors in turn this many times"
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep the sweep directories here")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep.json")
    args = ap.parse_args()
    names = [n.strip() for n in args.executors.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXECUTORS]
    if unknown:
        ap.error(f"--executors: unknown {unknown}; choose from {', '.join(EXECUTORS)}")
    if args.repeat < 1:
        ap.error("--repeat: must be >= 1")

    cases = subset(all_cases(), args.cases)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for rnd in range(args.repeat):
            for name in names:
                print(f"{name} #{rnd + 1}: {len(cases)} cases ...", file=sys.stderr, flush=True)
                r = run_one(name, cases, base / f"{name}-{rnd + 1}", args.time_limit)
                runs[name].append(r)
                print(
                    f"{name} #{rnd + 1}: {r['wall_s']:.1f} s, {r['cases_per_s']:.2f} cases/s",
                    file=sys.stderr,
                    flush=True,
                )

    print(
        f"\n{len(cases)} cases, time limit {args.time_limit:g} s per case, "
        f"{os.cpu_count()} cores, deterministic solves\n"
    )
    header = (
        f"{'executor':10s} {'run':>3s} {'procs':>5s} {'wall s':>8s} {'start s':>8s} "
        f"{'cases/s':>8s} {'busy':>6s}  statuses"
    )
    print(header)
    print("-" * len(header))
    for name, rs in runs.items():
        for i, r in enumerate(rs, start=1):
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
            print(
                f"{name:10s} {i:3d} {r['processes']:5d} {r['wall_s']:8.1f} {r['startup_s']:8.1f} "
                f"{r['cases_per_s']:8.2f} {r['busy_fraction']:6.1%}  {statuses}"
            )

    def med(name: str, key: str) -> float:
        return _median([float(r[key]) for r in runs[name]])

    compare: dict[str, Any] = {}
    if "local1" in runs and "local2" in runs:
        compare["speedup_local2_vs_local1"] = med("local1", "wall_s") / med("local2", "wall_s")
        compare["agreement_local1_vs_local2"] = agreement(runs["local1"][0], runs["local2"][0])
    if "ray" in runs and "local2" in runs:
        compare["ray_overhead_vs_local2"] = med("ray", "wall_s") / med("local2", "wall_s") - 1
        compare["ray_overhead_vs_local2_with_startup"] = (
            med("ray", "wall_s") + med("ray", "startup_s")
        ) / med("local2", "wall_s") - 1
        compare["ray_overhead_vs_local2_busy"] = (
            med("local2", "busy_fraction") / med("ray", "busy_fraction") - 1
        )
        compare["ray_daemon_cpu_share"] = med("ray", "ray_daemon_cpu_share")
        # Dispatch overhead (busy gap) plus the CPU Ray's daemons take from the cases.
        compare["ray_overhead_vs_local2_cpu"] = (
            med("local2", "busy_fraction")
            / (med("ray", "busy_fraction") - med("ray", "ray_daemon_cpu_share"))
            - 1
        )
        compare["agreement_ray_vs_local2"] = agreement(runs["local2"][0], runs["ray"][0])
    print()
    for k, v in compare.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")

    doc = {
        "benchmark": "sweep",
        "cases": len(cases),
        "time_limit_s": args.time_limit,
        "cores": os.cpu_count(),
        "repeat": args.repeat,
        "models": len(FAMILY_SIZES) + len(BUNDLED_MODELS),
        "clusters": CLUSTERS,
        "workloads": WORKLOADS,
        "runs": {
            name: [{k: v for k, v in r.items() if k != "objectives"} for r in rs]
            for name, rs in runs.items()
        },
        "compare": compare,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
