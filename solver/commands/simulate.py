"""``shardwise simulate``: serve a request stream on an inference plan (see :mod:`solver.serving`).

Exit codes: 0 simulated; 2 bad input (a missing or malformed file, a training plan, a bad
``--rate``/``--requests``/length spec, a request longer than a replica's KV cache).

The traffic defaults to the workload file's (``request_rate``, ``arrival: trace`` with
``trace``, the length distributions, ``slo_percentile``, ``num_scheduler_steps``); options
override it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import (
    ClusterOpt,
    JsonOpt,
    ModelOpt,
    WorkloadOpt,
    emit_json,
    stdout_console,
    user_errors,
)

_EPILOG = (
    "Examples:\n\n"
    "  shardwise plan -m llama3-70b -c seed-4x8-h100 -w infer-chat-slo --out chat.json\n\n"
    "  shardwise simulate -m llama3-70b -c seed-4x8-h100 -w infer-chat-slo --plan chat.json "
    "--rate 5 --requests 2000\n\n"
    "  shardwise simulate ... --plan chat.json --rate 8 --prompt-len lognormal:1024:1.0:8192 "
    "--output-len lognormal:256:0.8:2048 --json\n\n"
    "  shardwise simulate ... --plan chat.json --trace requests.csv   "
    "(columns timestamp,prompt_tokens,output_tokens; or JSONL)\n\n"
    "Every replica of the plan runs vLLM-style continuous batching with chunked prefill and "
    "KV-cache preemption (--kv-policy reserve: TensorRT-LLM's no-evict admission); "
    "requests are dispatched round-robin over the replicas (--routing random: uniformly at "
    "random; --routing jsq: join-shortest-queue); --num-scheduler-steps K: vLLM multi-step scheduling (decode batches run K steps per schedule and stream K tokens at once).  --plot FILE.png sweeps the rate "
    "(--sweep-rate) and plots p50/p99 TTFT and TPOT.  Lengths: N, fixed:N, "
    "uniform:LOW:HIGH, lognormal:MEAN:SIGMA[:MAX], file:PATH:COLUMN (default: the workload's "
    "length distributions, else prompt_tokens / output_tokens).  Rate, trace and SLO "
    "percentile default to the workload's request_rate, trace and slo_percentile.  "
    "Exit codes: 0 ok, 2 bad input."
)


def _row(table: Table, name: str, unit: str, p: Any) -> None:
    table.add_row(name, unit, f"{p.mean:,.1f}", f"{p.p50:,.1f}", f"{p.p90:,.1f}", f"{p.p99:,.1f}")


def _plot_sweep(
    m: Any,
    c: Any,
    w: Any,
    p: Any,
    plot: Path,
    sweep_rate: str | None,
    rate: float,
    reqs: Any,
    pl: Any,
    ol: Any,
    seed: int,
    route: dict[str, Any],
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    step_overhead_s: float,
    sim_kw: dict[str, Any],
) -> None:
    """Simulate the plan at each rate of the sweep (same requests count, lengths, seed and
    dispatch) and write the latency-vs-load plot."""
    from ..errors import SpecError
    from ..serving import generate_requests, simulate
    from .plan_serving import LOAD_FRACTIONS, plot_latency_vs_load

    if sweep_rate is not None:
        try:
            rates = [float(x) for x in sweep_rate.split(",")]
        except ValueError:
            raise SpecError(
                f"--sweep-rate: expected numbers separated by commas, got {sweep_rate!r}"
            ) from None
    else:
        if not math.isfinite(rate):
            raise SpecError("--sweep-rate: give the rates to sweep when --rate is inf")
        rates = [rate * f for f in LOAD_FRACTIONS]
    for r in rates:
        if not (math.isfinite(r) and r > 0):
            raise SpecError(f"--sweep-rate: every rate must be finite and > 0, got {r}")
    sweep = []
    for r in rates:
        run = generate_requests(len(reqs), r, pl, ol, seed=seed)
        sweep.append(
            (
                r,
                simulate(
                    m,
                    c,
                    w,
                    p,
                    run,
                    max_num_seqs=max_num_seqs,
                    max_num_batched_tokens=max_num_batched_tokens,
                    step_overhead_s=step_overhead_s,
                    **route,
                    **sim_kw,
                ),
            )
        )
    shape = ", ".join(
        f"{g.count} x TP{g.stages[0].tp} PP{g.pp} {g.stages[0].pool}" for g in p.replica_groups
    )
    plot_latency_vs_load(
        sweep,
        plot,
        ttft_slo_ms=w.ttft_ms,
        tpot_slo_ms=w.tpot_ms,
        rate_rps=rate if math.isfinite(rate) else None,
        title=f"{m.name} on {c.name}: {shape}",
    )


def register(app: typer.Typer) -> None:
    """Add this module's command to ``app``."""

    @app.command("simulate", epilog=_EPILOG)
    def simulate_cmd(
        model: ModelOpt,
        cluster: ClusterOpt,
        workload: WorkloadOpt,
        plan: Annotated[
            Path,
            typer.Option(
                "--plan",
                metavar="PLAN.json",
                help="Inference plan (the output of 'shardwise plan --out').",
                show_default=False,
            ),
        ],
        rate: Annotated[
            float | None,
            typer.Option(
                "--rate",
                help="Poisson arrival rate, requests/s (inf: all at t=0); default the "
                "workload's request_rate, else 5.",
                show_default=False,
            ),
        ] = None,
        requests: Annotated[
            int, typer.Option("--requests", "-n", help="Requests to generate.")
        ] = 2000,
        trace: Annotated[
            Path | None,
            typer.Option(
                "--trace",
                metavar="FILE",
                help="Trace file (CSV/JSONL: timestamp, prompt_tokens, output_tokens); "
                "replaces --rate, --requests and the length options (default: the "
                "workload's trace, with arrival: trace, unless --rate is given).",
                show_default=False,
            ),
        ] = None,
        prompt_len: Annotated[
            str | None,
            typer.Option("--prompt-len", metavar="DIST", help="Prompt length distribution."),
        ] = None,
        output_len: Annotated[
            str | None,
            typer.Option("--output-len", metavar="DIST", help="Output length distribution."),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed of the requests.")] = 0,
        max_num_seqs: Annotated[
            int | None,
            typer.Option(
                "--max-num-seqs",
                help="Running requests per replica (default: the plan's batch size).",
                show_default=False,
            ),
        ] = None,
        max_num_batched_tokens: Annotated[
            int | None,
            typer.Option(
                "--max-num-batched-tokens",
                help="Token budget per step (default: vLLM's, 8192 on H100-class GPUs).",
                show_default=False,
            ),
        ] = None,
        step_overhead_ms: Annotated[
            float, typer.Option("--step-overhead-ms", help="Fixed time added to every step.")
        ] = 0.0,
        routing: Annotated[
            str,
            typer.Option(
                "--routing",
                help="Dispatch: round_robin (request i to replica i mod R), random (each "
                "request to a replica drawn uniformly: every replica sees a Poisson stream) "
                "or jsq (join-shortest-queue: the replica with the fewest outstanding "
                "requests at the arrival, ties to the lowest index).",
            ),
        ] = "round_robin",
        kv_policy: Annotated[
            str | None,
            typer.Option(
                "--kv-policy",
                help="KV cache: preempt (vLLM: grow, preempt the newest request when full) or "
                "reserve (TensorRT-LLM GUARANTEED_NO_EVICT: prompt + output reserved at "
                "admission); default the workload's serving_engine's.",
                show_default=False,
            ),
        ] = None,
        slo_percentile: Annotated[
            float | None,
            typer.Option(
                "--slo-percentile",
                metavar="Q",
                help="Percentile (0, 100] the SLOs apply to (default: the workload's, 99).",
                show_default=False,
            ),
        ] = None,
        num_scheduler_steps: Annotated[
            int | None,
            typer.Option(
                "--num-scheduler-steps",
                metavar="K",
                help="Decode steps per schedule, 1..64 (vLLM --num-scheduler-steps, multi-step "
                "scheduling: a decode batch runs K steps and streams them as one chunk; a "
                "batch with prefills runs one step); default the workload's, 1.",
                show_default=False,
            ),
        ] = None,
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                metavar="FILE.png",
                show_default=False,
                help="Also simulate the plan over a range of rates (--sweep-rate) and plot "
                "p50/p99 TTFT and TPOT against the rate, SLOs drawn (PNG or SVG).",
            ),
        ] = None,
        sweep_rate: Annotated[
            str | None,
            typer.Option(
                "--sweep-rate",
                metavar="LIST",
                show_default=False,
                help="Rates of the --plot sweep, e.g. 5,10,15,20 (default: 0.1x to 1.6x --rate).",
            ),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Simulate serving a request stream on an inference plan: TTFT, TPOT, ITL and
        end-to-end latency percentiles, throughput and goodput under the workload's SLOs."""
        with user_errors():
            from ..errors import SpecError
            from ..io import load_cluster, load_model, load_plan, load_workload
            from ..serving import (
                KV_POLICIES,
                generate_requests,
                load_trace,
                parse_lengths,
                simulate,
                workload_traffic,
            )
            from ..serving.api import check_percentile
            from ..serving.simulator import check_scheduler_steps
            from ..specs import InferenceWorkload
            from .plan_serving import workload_dir

            if not math.isfinite(step_overhead_ms) or step_overhead_ms < 0:
                raise SpecError(
                    f"--step-overhead-ms: must be finite and >= 0, got {step_overhead_ms}"
                )
            m = load_model(model)
            c = load_cluster(cluster)
            w = load_workload(workload)
            if not isinstance(w, InferenceWorkload):
                raise SpecError(f"--workload: {workload} is a training workload; need inference")
            p = load_plan(plan)
            if plot is not None:
                from ..report.plots import check_plot_path

                check_plot_path(plot)
                if trace is not None:
                    raise SpecError("--plot: sweeps Poisson rates; not with --trace")
            if routing not in ("round_robin", "random", "jsq"):
                raise SpecError(f"--routing: expected round_robin, random or jsq, got {routing!r}")
            if kv_policy is not None and kv_policy not in KV_POLICIES:
                raise SpecError(
                    f"--kv-policy: expected one of {', '.join(KV_POLICIES)}, got {kv_policy!r}"
                )
            if slo_percentile is not None:
                check_percentile(slo_percentile, "--slo-percentile")
            if num_scheduler_steps is not None:
                check_scheduler_steps(num_scheduler_steps, "--num-scheduler-steps")
            sim_kw: dict[str, Any] = {
                "kv_policy": kv_policy,
                "slo_percentile": slo_percentile,
                "num_scheduler_steps": num_scheduler_steps,
            }
            traffic = workload_traffic(w, workload_dir(workload))
            if trace is None and rate is None and traffic.trace is not None:
                if plot is not None:
                    raise SpecError("--plot: sweeps Poisson rates; give --rate (workload trace)")
            route: dict[str, Any] = {}
            if routing == "jsq":
                route = {"routing": "jsq"}
            elif routing == "random":  # uniform: equal weights
                route = {
                    "routing": "weighted_random",
                    "routing_seed": seed + 1,
                    "replica_weights": [1.0] * len(p.replica_groups),
                }
            pl = ol = None
            src = ""
            if trace is not None:
                reqs = load_trace(trace)
                src = f"trace {trace}"
            elif rate is None and traffic.trace is not None:
                reqs = traffic.trace
                src = f"workload trace {w.trace}"
            else:
                if rate is None:
                    rate = traffic.rate if traffic.rate is not None else 5.0
                pl = parse_lengths(prompt_len, "--prompt-len") if prompt_len else traffic.prompt
                ol = parse_lengths(output_len, "--output-len") if output_len else traffic.output
                src = f"Poisson {rate:g} req/s, seed {seed}"
                names = {"rate": "--rate", "num_requests": "--requests", "seed": "--seed"}
                try:
                    reqs = generate_requests(requests, rate, pl, ol, seed=seed)
                except SpecError as e:
                    msg = str(e)
                    for k, v in names.items():
                        if msg.startswith(k + ":"):
                            msg = v + msg[len(k) :]
                    raise SpecError(msg) from None
            res = simulate(
                m,
                c,
                w,
                p,
                reqs,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_batched_tokens,
                step_overhead_s=step_overhead_ms / 1e3,
                **route,
                **sim_kw,
            )
            if plot is not None:
                assert rate is not None
                _plot_sweep(
                    m,
                    c,
                    w,
                    p,
                    plot,
                    sweep_rate,
                    rate,
                    reqs,
                    pl,
                    ol,
                    seed,
                    route,
                    max_num_seqs,
                    max_num_batched_tokens,
                    step_overhead_ms / 1e3,
                    sim_kw,
                )
        if as_json:
            emit_json(res.model_dump(mode="json"))
            return
        con = stdout_console()
        con.print(
            f"[bold]{m.name}[/] on {c.name}: {res.num_requests:,} requests ({src}), "
            f"{res.replicas} replicas, {res.routing.replace('_', '-')} dispatch, "
            f"KV cache {res.kv_policy}"
            + (
                f", {res.num_scheduler_steps} scheduler steps (multi-step)"
                if res.num_scheduler_steps > 1
                else ""
            )
        )
        for g in res.groups:
            con.print(
                f"  group {g.group}: {g.count} x TP={g.tp} PP={g.pp} on {g.pool}, "
                f"max_num_seqs {g.max_num_seqs}, max_num_batched_tokens {g.max_num_batched_tokens:,},"
                f" KV cache {g.kv_capacity_tokens:,} tokens/replica"
            )
        lat = Table(title="Latency", title_justify="left")
        for col in ("metric", "unit", "mean", "p50", "p90", "p99"):
            lat.add_column(col, justify="left" if col in ("metric", "unit") else "right")
        q = res.slo_percentile
        _row(lat, "TTFT", "ms", res.ttft_ms)
        _row(lat, "TPOT", "ms", res.tpot_ms)
        _row(lat, "ITL", "ms", res.itl_ms)
        _row(lat, "E2E latency", "s", res.e2e_latency_s)
        con.print(lat)
        thr = Table(title="Throughput", title_justify="left")
        thr.add_column("metric")
        thr.add_column("value", justify="right")
        slo = []
        if res.ttft_slo_ms is not None:
            slo.append(f"TTFT <= {res.ttft_slo_ms:g} ms")
        if res.tpot_slo_ms is not None:
            slo.append(f"TPOT <= {res.tpot_slo_ms:g} ms")
        if q != 99.0:
            thr.add_row(
                f"TTFT / TPOT at p{q:g}",
                f"{res.ttft_at_percentile_ms:,.1f} / {res.tpot_at_percentile_ms:,.1f} ms",
            )
        thr.add_row("requests/s", f"{res.request_throughput:,.2f}")
        thr.add_row("output tokens/s", f"{res.output_throughput:,.0f}")
        thr.add_row("total tokens/s", f"{res.total_token_throughput:,.0f}")
        thr.add_row(
            f"goodput req/s ({' and '.join(slo) or 'no SLO'})",
            f"{res.goodput:,.2f} ({res.slo_attainment:.1%} of requests)",
        )
        thr.add_row("duration", f"{res.duration_s:,.1f} s")
        thr.add_row(
            "engine steps", f"{res.num_steps:,} (mean decode batch {res.mean_decode_batch:.1f})"
        )
        thr.add_row(
            "KV-cache preemptions",
            f"{res.num_preemptions:,} ({res.recomputed_tokens:,} tokens recomputed)",
        )
        thr.add_row("simulation wall time", f"{res.wall_time_s:.2f} s")
        con.print(thr)
        con.print(
            "Not modelled: prefix caching, swapping preempted requests to CPU, speculative "
            "decoding, engine step overheads beyond the profile (--step-overhead-ms)."
        )
