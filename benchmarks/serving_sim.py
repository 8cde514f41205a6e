"""Serving simulator: its own speed, and latency / goodput versus request rate.

Plans llama3-70b on seed-4x8-h100 for infer-chat-slo (``shardwise plan``: 4 x TP8 today), then

* times :func:`solver.serving.simulate` on 1k, 10k and 100k ShareGPT-like requests
  (Poisson arrivals, lognormal prompt mean 1024 / sigma 1.0 clipped at 8192, output mean 256 /
  sigma 0.8 clipped at 2048; best of 3 runs for 1k and 10k, one for 100k);
* times 10k requests with join-shortest-queue dispatch (``routing="jsq"``: the replicas'
  engines advance together), and with SGLang's step model (``serving_engine: sglang``: prefill
  steps hold no decode, ``EngineProfile.mixed_batches``; ITL kept as explicit samples), and
  compares round-robin, random and JSQ dispatch at 20 req/s;
* sweeps the request rate and reports p50/p99 TTFT, p50/p99 TPOT, p99 ITL, throughput,
  goodput under the workload's SLOs (TTFT <= 2 s, TPOT <= 50 ms) and KV-cache preemptions;
* KV pressure: the same plan with its KV cache cut to 20k and 30k tokens per replica at
  12 req/s, vLLM's preemption (``kv_policy="preempt"``, the default) against TensorRT-LLM's
  no-evict reservation (``reserve``).

Prints a table and writes benchmarks/results/serving_sim.json.

    python benchmarks/serving_sim.py            # ~40 s on a 2-core machine
    python benchmarks/serving_sim.py --quick    # smaller sweep, no 100k run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from solver import load_cluster, load_model, load_workload  # noqa: E402
from solver.planner import plan  # noqa: E402
from solver.serving import Lengths, generate_requests, simulate  # noqa: E402
from solver.specs import InferenceWorkload  # noqa: E402

PROMPT = Lengths.lognormal(1024, 1.0, 8192)
OUTPUT = Lengths.lognormal(256, 0.8, 2048)
RATES = (2.0, 4.0, 8.0, 12.0, 16.0, 18.0, 20.0, 22.0, 24.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sweep, skip 100k requests")
    ap.add_argument("--sweep-requests", type=int, default=5000, help="requests per sweep rate")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serving_sim.json")
    args = ap.parse_args()
    model = load_model("llama3-70b")
    cluster = load_cluster("seed-4x8-h100")
    workload = load_workload("infer-chat-slo")
    assert isinstance(workload, InferenceWorkload)
    res = plan(model, cluster, workload, time_limit_s=30, seed=0)
    assert res.plan is not None, res.status
    p = res.plan
    shape = ", ".join(
        f"{g.count} x TP{g.stages[0].tp} PP{g.pp} batch {g.batch_size}" for g in p.replica_groups
    )
    print(f"plan: {shape} ({res.status}, static prediction {res.objective:,.0f} tokens/s)")

    speed: list[dict[str, Any]] = []
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    print(f"\n{'requests':>9} {'rate':>6} {'wall s':>8} {'steps':>10} {'req/s':>8}")
    for n in sizes:
        reqs = generate_requests(n, 16.0, PROMPT, OUTPUT, seed=0)
        walls = []
        for _ in range(1 if n >= 100_000 else 3):
            t = time.perf_counter()
            r = simulate(model, cluster, workload, p, reqs)
            walls.append(time.perf_counter() - t)
        speed.append({"requests": n, "rate": 16.0, "wall_s": min(walls), "num_steps": r.num_steps})
        print(
            f"{n:>9,} {16.0:>6g} {min(walls):>8.3f} {r.num_steps:>10,} {r.request_throughput:>8.2f}"
        )
    reqs = generate_requests(10_000, 16.0, PROMPT, OUTPUT, seed=0)
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        r = simulate(model, cluster, workload, p, reqs, routing="jsq")
        walls.append(time.perf_counter() - t)
    speed.append(
        {
            "requests": 10_000,
            "rate": 16.0,
            "routing": "jsq",
            "wall_s": min(walls),
            "num_steps": r.num_steps,
        }
    )
    print(
        f"{10_000:>9,} {16.0:>6g} {min(walls):>8.3f} {r.num_steps:>10,} {r.request_throughput:>8.2f}  (jsq)"
    )
    sglang = InferenceWorkload.model_validate({**workload.model_dump(), "serving_engine": "sglang"})
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        r = simulate(model, cluster, sglang, p, reqs)
        walls.append(time.perf_counter() - t)
    speed.append(
        {
            "requests": 10_000,
            "rate": 16.0,
            "serving_engine": "sglang (prefill-only steps)",
            "wall_s": min(walls),
            "num_steps": r.num_steps,
        }
    )
    print(
        f"{10_000:>9,} {16.0:>6g} {min(walls):>8.3f} {r.num_steps:>10,} {r.request_throughput:>8.2f}"
        "  (sglang: prefill-only steps)"
    )

    routing_rows: list[dict[str, Any]] = []
    print(
        f"\n{'dispatch at 20 req/s':<22} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p99':>9} {'goodput':>8}"
    )
    reqs = generate_requests(args.sweep_requests, 20.0, PROMPT, OUTPUT, seed=0)
    n_groups = len(p.replica_groups)
    for name, kw in (
        ("round_robin", {}),
        ("random", {"routing": "weighted_random", "replica_weights": [1.0] * n_groups}),
        ("jsq", {"routing": "jsq"}),
    ):
        r = simulate(model, cluster, workload, p, reqs, **kw)
        routing_rows.append(
            {
                "routing": name,
                "ttft_ms_p50": r.ttft_ms.p50,
                "ttft_ms_p99": r.ttft_ms.p99,
                "tpot_ms_p99": r.tpot_ms.p99,
                "goodput": r.goodput,
            }
        )
        print(
            f"{name:<22} {r.ttft_ms.p50:>9,.0f} {r.ttft_ms.p99:>9,.0f} {r.tpot_ms.p99:>9.1f} "
            f"{r.goodput:>8.2f}"
        )

    sweep: list[dict[str, Any]] = []
    rates = RATES[::2] if args.quick else RATES
    print(
        f"\n{'rate':>5} {'req/s':>7} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} "
        f"{'TPOT p50':>9} {'TPOT p99':>9} {'ITL p99':>8} {'goodput':>8} {'SLO met':>8}"
    )
    for rate in rates:
        reqs = generate_requests(args.sweep_requests, rate, PROMPT, OUTPUT, seed=0)
        r = simulate(model, cluster, workload, p, reqs)
        row = {
            "rate": rate,
            "request_throughput": r.request_throughput,
            "output_throughput": r.output_throughput,
            "ttft_ms_p50": r.ttft_ms.p50,
            "ttft_ms_p99": r.ttft_ms.p99,
            "tpot_ms_p50": r.tpot_ms.p50,
            "tpot_ms_p99": r.tpot_ms.p99,
            "itl_ms_p99": r.itl_ms.p99,
            "goodput": r.goodput,
            "slo_attainment": r.slo_attainment,
            "mean_decode_batch": r.mean_decode_batch,
            "num_preemptions": r.num_preemptions,
        }
        sweep.append(row)
        print(
            f"{rate:>5g} {r.request_throughput:>7.2f} {r.output_throughput:>10,.0f} "
            f"{r.ttft_ms.p50:>9,.0f} {r.ttft_ms.p99:>9,.0f} {r.tpot_ms.p50:>9.1f} "
            f"{r.tpot_ms.p99:>9.1f} {r.itl_ms.p99:>8.1f} {r.goodput:>8.2f} "
            f"{r.slo_attainment:>8.1%}"
        )

    pressure: list[dict[str, Any]] = []
    print(
        f"\n{'KV tokens':>9} {'policy':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p99':>9} "
        f"{'goodput':>8} {'preempted':>10} {'recomputed':>11}"
    )
    reqs = generate_requests(args.sweep_requests, 12.0, PROMPT, OUTPUT, seed=0)
    for kv in (20_000, 30_000):
        for policy in ("preempt", "reserve"):
            r = simulate(model, cluster, workload, p, reqs, kv_capacity=kv, kv_policy=policy)
            pressure.append(
                {
                    "kv_capacity_tokens": kv,
                    "kv_policy": policy,
                    "rate": 12.0,
                    "ttft_ms_p50": r.ttft_ms.p50,
                    "ttft_ms_p99": r.ttft_ms.p99,
                    "tpot_ms_p99": r.tpot_ms.p99,
                    "goodput": r.goodput,
                    "num_preemptions": r.num_preemptions,
                    "recomputed_tokens": r.recomputed_tokens,
                }
            )
            print(
                f"{kv:>9,} {policy:>8} {r.ttft_ms.p50:>9,.0f} {r.ttft_ms.p99:>9,.0f} "
                f"{r.tpot_ms.p99:>9.1f} {r.goodput:>8.2f} {r.num_preemptions:>10,} "
                f"{r.recomputed_tokens:>11,}"
            )
    doc = {
        "model": "llama3-70b",
        "cluster": "seed-4x8-h100",
        "workload": "infer-chat-slo",
        "plan": shape,
        "prompt": "lognormal mean 1024 sigma 1.0 max 8192",
        "output": "lognormal mean 256 sigma 0.8 max 2048",
        "slo": {"ttft_ms": workload.ttft_ms, "tpot_ms": workload.tpot_ms},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "speed": speed,
        "routing_at_20rps": routing_rows,
        "sweep": sweep,
        "kv_pressure": pressure,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
