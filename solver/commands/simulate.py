"""``shardwise simulate``: serve a request stream on an inference plan (see :mod:`solver.serving`).

Exit codes: 0 simulated; 2 bad input (a missing or malformed file, a training plan, a bad
``--rate``/``--requests``/length spec, a request longer than a replica's KV cache).
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
    "Every replica of the plan runs vLLM-style continuous batching with chunked prefill; "
    "requests are dispatched round-robin over the replicas (--routing random: uniformly at "
    "random).  --plot FILE.png sweeps the rate (--sweep-rate) and plots p50/p99 TTFT and TPOT.  Lengths: N, fixed:N, "
    "uniform:LOW:HIGH, lognormal:MEAN:SIGMA[:MAX], file:PATH:COLUMN (default: the workload's "
    "prompt_tokens / output_tokens).  Exit codes: 0 ok, 2 bad input."
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
            float,
            typer.Option("--rate", help="Poisson arrival rate, requests/s (inf: all at t=0)."),
        ] = 5.0,
        requests: Annotated[
            int, typer.Option("--requests", "-n", help="Requests to generate.")
        ] = 2000,
        trace: Annotated[
            Path | None,
            typer.Option(
                "--trace",
                metavar="FILE",
                help="Trace file (CSV/JSONL: timestamp, prompt_tokens, output_tokens); "
                "replaces --rate, --requests and the length options.",
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
                help="Dispatch: round_robin (request i to replica i mod R) or random (each "
                "request to a replica drawn uniformly: every replica sees a Poisson stream).",
            ),
        ] = "round_robin",
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
                Lengths,
                generate_requests,
                load_trace,
                parse_lengths,
                simulate,
            )
            from ..specs import InferenceWorkload

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
            if routing not in ("round_robin", "random"):
                raise SpecError(f"--routing: expected round_robin or random, got {routing!r}")
            route: dict[str, Any] = {}
            if routing == "random":  # uniform: equal weights
                route = {
                    "routing": "weighted_random",
                    "routing_seed": seed + 1,
                    "replica_weights": [1.0] * len(p.replica_groups),
                }
            pl = ol = None
            if trace is not None:
                reqs = load_trace(trace)
            else:
                pl = (
                    parse_lengths(prompt_len, "--prompt-len")
                    if prompt_len
                    else Lengths.fixed(w.prompt_tokens)
                )
                ol = (
                    parse_lengths(output_len, "--output-len")
                    if output_len
                    else Lengths.fixed(w.output_tokens)
                )
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
            )
            if plot is not None:
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
                )
        if as_json:
            emit_json(res.model_dump(mode="json"))
            return
        con = stdout_console()
        src = f"trace {trace}" if trace is not None else f"Poisson {rate:g} req/s, seed {seed}"
        con.print(
            f"[bold]{m.name}[/] on {c.name}: {res.num_requests:,} requests ({src}), "
            f"{res.replicas} replicas, {res.routing.replace('_', '-')} dispatch"
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
        thr.add_row("simulation wall time", f"{res.wall_time_s:.2f} s")
        con.print(thr)
        con.print(
            "Not modelled: preemption (KV reserved for prompt + output at admission), prefix "
            "caching, engine step overheads (--step-overhead-ms)."
        )
