"""``shardwise plan-serving``: the cheapest fleet for a request rate under p99 SLOs.

See :mod:`solver.cpsat.plan_serving` for the method (capacity per replica shape by
simulation, replica counts by CP-SAT, the fleet verified by the simulator).  Exit codes as
``shardwise plan``: 0 OPTIMAL / FEASIBLE (a verified plan), 2 bad input, 4 INFEASIBLE,
5 UNKNOWN (time limit, or no fleet verified).

``--plot`` draws p50/p99 TTFT and TPOT of the chosen plan against the request rate
(:func:`plot_latency_vs_load`), written through a temporary file renamed into place.

The traffic comes from the workload file when it describes one (``request_rate``,
``arrival: trace`` + ``trace``, ``prompt_tokens_distribution`` /
``output_tokens_distribution``, ``slo_percentile``; relative paths from the workload file's
folder, :func:`workload_dir`); ``--rate``, ``--trace``, ``--prompt-len``, ``--output-len``
and ``--slo-percentile`` override it; ``--num-scheduler-steps`` overrides the workload's
``num_scheduler_steps`` (vLLM multi-step scheduling in every simulation).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .common import (
    ClusterOpt,
    ForceOpt,
    JsonOpt,
    ModelOpt,
    WorkloadOpt,
    check_solve_cli,
    emit_json,
    exit_for_status,
    refuse_overwrite,
    stderr_console,
    stdout_console,
    user_errors,
    write_new_file,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..cpsat.serving_fleet import ServingPlanResult
    from ..serving import Lengths, Requests, SimulationResult
    from ..specs import Cluster, InferenceWorkload, Model

__all__ = [
    "LOAD_FRACTIONS",
    "load_sweep",
    "parse_int_list",
    "plot_latency_vs_load",
    "register",
    "workload_dir",
]

#: Rates of the latency-vs-load plot, as fractions of the plan's rate: from light load to
#: past the fleet's capacity, so the knee where p99 TTFT leaves the SLO is on the plot.
LOAD_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.2, 1.3, 1.45, 1.6)

_EPILOG = (
    "Examples:\n\n"
    "  shardwise plan-serving -m llama3-70b -c serving-h100-a100 -w infer-2k256-p99 "
    "--rate 20\n\n"
    "  shardwise plan-serving ... --rate 20 --out fleet.json --plot latency.png\n\n"
    "  shardwise plan-serving ... --objective max_goodput --json\n\n"
    "  shardwise plan-serving ... --trace requests.csv   (the trace's mean rate and lengths)\n\n"
    "  shardwise plan-serving -m llama3-70b -c serving-h100-a100 -w serve-sharegpt-20rps   "
    "(rate, lengths and SLOs from the workload file)\n\n"
    "For every replica shape (pool, TP, PP, max_num_seqs) the simulator finds the highest "
    "Poisson rate one replica sustains with p99 TTFT and p99 TPOT within the SLOs (bisection "
    "to --tolerance); CP-SAT picks replica counts at minimum $/h or GPUs (or maximum "
    "goodput) within the pools' GPU counts; the whole fleet is then simulated at the target "
    "rate (requests dispatched in proportion to capacity) and only a fleet that meets both "
    "p99 SLOs is reported.  SLOs default to the workload's ttft_ms / tpot_ms at its "
    "slo_percentile (99), the rate and lengths to its request_rate / trace and length "
    "distributions; options override them.  Exit codes: "
    "0 OPTIMAL / FEASIBLE, 2 bad input, 4 INFEASIBLE, 5 UNKNOWN."
)


def workload_dir(ref: str) -> Path | None:
    """The folder of the workload file ``ref`` names (a path, or a name under instances/):
    relative ``trace`` and length-file paths in it are relative to that folder."""
    from ..io import find_spec

    try:
        return find_spec(ref, "instances/").resolve().parent
    except Exception:  # noqa: BLE001 - the load that follows reports a missing file
        return None


def parse_int_list(text: str | None, option: str) -> list[int] | None:
    """``"4,8"`` -> [4, 8]; SpecError naming ``option`` for anything else."""
    from ..errors import SpecError

    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(int(part.strip()))
        except ValueError:
            raise SpecError(
                f"{option}: expected integers separated by commas, got {text!r}"
            ) from None
    return out


def load_sweep(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    result: ServingPlanResult,
    prompt: Lengths,
    output: Lengths,
    *,
    fractions: Sequence[float] = LOAD_FRACTIONS,
) -> list[tuple[float, SimulationResult]]:
    """``(rate, result)`` of the chosen plan simulated at ``fractions`` of its rate (same
    routing, seed and request count as its verification)."""
    from ..serving import generate_requests, simulate

    assert result.plan is not None and result.rate_rps is not None
    weights = [g.capacity_rps for g in result.fleet]
    n = result.verification.num_requests if result.verification else 2000
    seed = int(result.settings.get("verify_seed", 1))
    routing = str(result.settings.get("routing", "weighted_random"))
    pct = float(result.settings.get("slo_percentile", 99.0))
    out = []
    for f in fractions:
        r = result.rate_rps * f
        reqs = generate_requests(n, r, prompt, output, seed=seed)
        out.append(
            (
                r,
                simulate(
                    model,
                    cluster,
                    workload,
                    result.plan,
                    reqs,
                    ttft_slo_ms=result.ttft_slo_ms,
                    tpot_slo_ms=result.tpot_slo_ms,
                    replica_weights=weights,
                    routing=routing,
                    routing_seed=seed + 1,
                    slo_percentile=pct,
                ),
            )
        )
    return out


def plot_latency_vs_load(
    sweep: Sequence[tuple[float, SimulationResult]],
    path: str | Path,
    *,
    ttft_slo_ms: float | None,
    tpot_slo_ms: float | None,
    rate_rps: float | None = None,
    title: str = "",
) -> Figure:
    """p50/p99 TTFT (left) and TPOT (right) against the offered request rate (``sweep``:
    ``(rate, result)`` pairs, :func:`load_sweep`), SLOs dashed,
    the plan's rate dotted; written to ``path`` (PNG or SVG) through a temporary file in
    the same folder renamed into place (an interrupted write leaves no half file)."""
    from ..errors import SpecError
    from ..report.plots import PNG_DPI, check_plot_path

    p = check_plot_path(path)
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise SpecError("--plot: plots need matplotlib: pip install 'shardwise[plot]'") from None
    offered = [r for r, _ in sweep]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("TTFT", "ttft_ms", ttft_slo_ms), ("TPOT", "tpot_ms", tpot_slo_ms))
    for ax, (name, field, slo) in zip(axes, panels, strict=True):
        for q, style in (("p50", "o-"), ("p99", "s-")):
            ys = [getattr(getattr(res, field), q) for _, res in sweep]
            ax.plot(offered, ys, style, label=f"{q} {name}", gid=f"{field}-{q}")
        if slo is not None:
            ax.axhline(slo, color="tab:red", linestyle="--", label=f"SLO {slo:g} ms", gid="slo")
        if rate_rps is not None:
            ax.axvline(rate_rps, color="grey", linestyle=":", label=f"plan rate {rate_rps:g}/s")
        ax.set_xlabel("request rate (requests/s, Poisson)")
        ax.set_ylabel(f"{name} (ms)")
        if name == "TTFT":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=p.parent or ".")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=PNG_DPI, format=p.suffix.lower().lstrip("."), bbox_inches="tight")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return fig


def _render(res: ServingPlanResult, model: str, cluster: str) -> None:
    con = stdout_console()
    q = float(res.settings.get("slo_percentile", 99.0))
    slo = " and ".join(
        f"p{q:g} {n} <= {v:g} ms"
        for n, v in (("TTFT", res.ttft_slo_ms), ("TPOT", res.tpot_slo_ms))
        if v is not None
    )
    target = f"{res.rate_rps:g} req/s" if res.rate_rps is not None else "max goodput"
    con.print(f"[bold]{model}[/] on {cluster}: {target} under {slo}, objective {res.objective}")
    cand = Table(
        title=f"Replica shapes: requests/s one replica sustains under the p{q:g} SLOs (simulated)",
        title_justify="left",
    )
    for col in ("pool", "TP", "PP", "max_num_seqs", "GPUs", "KV tokens", "$/h", "req/s", "probes"):
        cand.add_column(col, justify="left" if col == "pool" else "right")
    for c in res.candidates:
        cand.add_row(
            c.pool,
            str(c.tp),
            str(c.pp),
            str(c.max_num_seqs),
            str(c.gpus),
            f"{c.kv_capacity_tokens:,}",
            "-" if c.cost_per_hour is None else f"{c.cost_per_hour:,.2f}",
            f"{c.capacity_rps:.3g}" if c.capacity_rps > 0 else "0 *",
            str(c.probes),
        )
    con.print(cand)
    seen: set[tuple[str, int, int]] = set()
    for c in res.candidates:
        if c.capacity_rps == 0 and (c.pool, c.tp, c.pp) not in seen:
            seen.add((c.pool, c.tp, c.pp))
            con.print(f"  * {c.pool} TP{c.tp} PP{c.pp} (max_num_seqs {c.max_num_seqs}): {c.reason}")
    if res.fleet:
        fl = Table(title="Chosen fleet", title_justify="left")
        for col in (
            "replicas",
            "pool",
            "GPU",
            "TP",
            "PP",
            "max_num_seqs",
            "GPUs",
            "req/s each",
            "$/h",
        ):
            fl.add_column(col, justify="left" if col in ("pool", "GPU") else "right")
        for g in res.fleet:
            fl.add_row(
                str(g.count),
                g.pool,
                g.gpu,
                str(g.tp),
                str(g.pp),
                str(g.max_num_seqs),
                str(g.gpus),
                f"{g.capacity_rps:.3g}",
                "-" if g.cost_per_hour is None else f"{g.cost_per_hour:,.2f}",
            )
        con.print(fl)
        cost = "" if res.cost_per_hour is None else f", ${res.cost_per_hour:,.2f}/h"
        con.print(f"fleet: {res.gpus} GPUs{cost}, summed capacity {res.capacity_rps:.3g} req/s")
    v = res.verification
    if v is not None:
        how = (
            "join-shortest-queue dispatch"
            if v.routing == "jsq"
            else f"{v.routing.replace('_', ' ')} dispatch by replica capacity"
        )
        con.print(
            f"Verified by simulation: {v.num_requests:,} requests at {res.rate_rps:g} "
            f"req/s, {how}, KV cache {v.kv_policy}"
        )
        lat = Table()
        cols = ["metric", "p50", "p90", "p99"] + ([] if q == 99.0 else [f"p{q:g}"]) + ["SLO"]
        for col in cols:
            lat.add_column(col, justify="left" if col == "metric" else "right")
        for name, p, at, s in (
            ("TTFT ms", v.ttft_ms, v.ttft_at_percentile_ms, res.ttft_slo_ms),
            ("TPOT ms", v.tpot_ms, v.tpot_at_percentile_ms, res.tpot_slo_ms),
        ):
            extra = [] if q == 99.0 else [f"{at:,.1f}"]
            lat.add_row(
                name,
                f"{p.p50:,.1f}",
                f"{p.p90:,.1f}",
                f"{p.p99:,.1f}",
                *extra,
                "-" if s is None else f"{s:g}",
            )
        con.print(lat)
        if v.num_preemptions:
            con.print(
                f"KV-cache preemptions: {v.num_preemptions:,} ({v.recomputed_tokens:,} tokens "
                "recomputed)"
            )
        con.print(
            f"goodput {v.goodput:.2f} req/s ({v.slo_attainment:.1%} of requests meet both SLOs)"
            f"; throughput {v.request_throughput:.2f} req/s"
        )
    val = "-" if res.objective_value is None else f"{res.objective_value:,.4g} {res.unit}"
    bound = "" if res.bound is None else f"  bound={res.bound:,.4g}"
    con.print(f"[bold]{res.status}[/]  {res.objective}={val}{bound}  time={res.time_s:.2f}s")
    if res.message:
        con.print(res.message)


def register(app: typer.Typer) -> None:
    """Add this module's command to ``app``."""

    @app.command("plan-serving", epilog=_EPILOG)
    def plan_serving_cmd(
        model: ModelOpt,
        cluster: ClusterOpt,
        workload: WorkloadOpt,
        rate: Annotated[
            float | None,
            typer.Option(
                "--rate",
                help="Target Poisson request rate, requests/s (default: the workload's "
                "request_rate, or its trace's mean rate).",
                show_default=False,
            ),
        ] = None,
        objective: Annotated[
            str | None,
            typer.Option(
                "--objective",
                help="min_cost (default when every pool has cost_per_gpu_hour), min_gpus, or "
                "max_goodput (no --rate: the most requests/s the cluster serves in SLO).",
                show_default=False,
            ),
        ] = None,
        ttft_ms: Annotated[
            float | None,
            typer.Option(
                "--ttft-ms",
                help="TTFT SLO at the SLO percentile (default: the workload's ttft_ms).",
                show_default=False,
            ),
        ] = None,
        tpot_ms: Annotated[
            float | None,
            typer.Option(
                "--tpot-ms",
                help="TPOT SLO at the SLO percentile (default: the workload's tpot_ms).",
                show_default=False,
            ),
        ] = None,
        trace: Annotated[
            Path | None,
            typer.Option(
                "--trace",
                metavar="FILE",
                show_default=False,
                help="Trace (CSV/JSONL: timestamp, prompt_tokens, output_tokens): its "
                "mean rate is the target, its lengths are resampled, and the fleet "
                "is verified on it (default: the workload's trace, with arrival: trace).",
            ),
        ] = None,
        slo_percentile: Annotated[
            float | None,
            typer.Option(
                "--slo-percentile",
                metavar="Q",
                show_default=False,
                help="Percentile (0, 100] the SLOs apply to (default: the workload's "
                "slo_percentile, 99).",
            ),
        ] = None,
        num_scheduler_steps: Annotated[
            int | None,
            typer.Option(
                "--num-scheduler-steps",
                metavar="K",
                show_default=False,
                help="Decode steps per schedule, 1..64 (vLLM multi-step scheduling, as for "
                "simulate; default the workload's num_scheduler_steps, 1).",
            ),
        ] = None,
        prompt_len: Annotated[
            str | None,
            typer.Option(
                "--prompt-len",
                metavar="DIST",
                help="Prompt lengths (as for simulate; default the workload's "
                "prompt_tokens_distribution, else prompt_tokens).",
            ),
        ] = None,
        output_len: Annotated[
            str | None,
            typer.Option(
                "--output-len",
                metavar="DIST",
                help="Output lengths (as for simulate; default the workload's "
                "output_tokens_distribution, else output_tokens).",
            ),
        ] = None,
        tp: Annotated[
            str | None,
            typer.Option(
                "--tp",
                metavar="LIST",
                show_default=False,
                help="TP degrees to consider, e.g. 4,8 (default: every valid one).",
            ),
        ] = None,
        pp: Annotated[
            str | None,
            typer.Option(
                "--pp",
                metavar="LIST",
                show_default=False,
                help="PP degrees (default auto: the shallowest whose KV cache holds "
                "the longest request).",
            ),
        ] = None,
        max_num_seqs: Annotated[
            str | None,
            typer.Option(
                "--max-num-seqs",
                metavar="LIST",
                show_default=False,
                help="max_num_seqs values (default: the workload's batch_size list "
                "when set, else 256).",
            ),
        ] = None,
        search_requests: Annotated[
            int, typer.Option("--search-requests", help="Requests per capacity probe.")
        ] = 1000,
        tolerance: Annotated[
            float, typer.Option("--tolerance", help="Relative width of the capacity bisection.")
        ] = 0.02,
        time_limit: Annotated[
            float,
            typer.Option(
                "--time-limit",
                "-t",
                metavar="SECONDS",
                help="Budget of the capacity searches and CP-SAT (verification runs after it).",
            ),
        ] = 30.0,
        seed: Annotated[int, typer.Option("--seed", help="Seed of requests and CP-SAT.")] = 0,
        workers: Annotated[
            int, typer.Option("--workers", metavar="N", help="CP-SAT search workers.")
        ] = 1,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                metavar="PLAN.json",
                show_default=False,
                help="Write the verified plan to this file.",
            ),
        ] = None,
        force: ForceOpt = False,
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                metavar="FILE.png",
                show_default=False,
                help="Latency-vs-load plot of the chosen plan (PNG or SVG).",
            ),
        ] = None,
        routing: Annotated[
            str,
            typer.Option(
                "--routing",
                help="Dispatch of the fleet verification: weighted_random (each replica sees "
                "a Poisson stream, as in its capacity search), weighted_round_robin, or jsq "
                "(join-shortest-queue: least outstanding requests).",
            ),
        ] = "weighted_random",
        no_trim: Annotated[
            bool,
            typer.Option(
                "--no-trim",
                help="Keep CP-SAT's fleet: do not try removing replicas "
                "that the fleet simulation shows are not needed.",
            ),
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Plan replicas x TP x PP per GPU type for a request rate under p99 TTFT/TPOT SLOs,
        verified by the continuous-batching simulator."""
        with user_errors():
            from ..cpsat.plan_serving import plan_serving
            from ..errors import SpecError
            from ..io import load_cluster, load_model, load_workload
            from ..report import dumps
            from ..report.plots import check_plot_path
            from ..serving import Lengths, load_trace, parse_lengths, workload_traffic
            from ..serving.api import check_percentile
            from ..serving.simulator import check_scheduler_steps
            from ..specs import InferenceWorkload

            check_solve_cli(time_limit, seed, workers)
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                raise SpecError(f"--rate: must be finite and > 0 requests/s, got {rate}")
            for name, v in (("--ttft-ms", ttft_ms), ("--tpot-ms", tpot_ms)):
                if v is not None and not (math.isfinite(v) and v > 0):
                    raise SpecError(f"{name}: must be finite and > 0 ms, got {v}")
            if slo_percentile is not None:
                check_percentile(slo_percentile, "--slo-percentile")
            if num_scheduler_steps is not None:
                check_scheduler_steps(num_scheduler_steps, "--num-scheduler-steps")
            if out is not None:
                refuse_overwrite(out, force)
            if plot is not None:
                check_plot_path(plot)
            m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
            if not isinstance(w, InferenceWorkload):
                raise SpecError(f"--workload: {workload} is a training workload; need inference")
            if num_scheduler_steps is not None:
                w = w.model_copy(update={"num_scheduler_steps": num_scheduler_steps})
            wdir = workload_dir(workload)
            traffic = workload_traffic(w, wdir)
            reqs: Requests | None
            if trace is not None:
                reqs = load_trace(trace)
            else:
                reqs = traffic.trace if rate is None else None
            prompt = parse_lengths(prompt_len, "--prompt-len") if prompt_len else None
            output = parse_lengths(output_len, "--output-len") if output_len else None
            if reqs is None:
                prompt = prompt or traffic.prompt
                output = output or traffic.output
            kwargs: dict[str, Any] = {
                "rate": rate,
                "objective": objective,
                "ttft_slo_ms": ttft_ms,
                "tpot_slo_ms": tpot_ms,
                "prompt": prompt,
                "output": output,
                "trace": reqs,
                "tp": parse_int_list(tp, "--tp"),
                "pp": parse_int_list(pp, "--pp"),
                "max_num_seqs": parse_int_list(max_num_seqs, "--max-num-seqs"),
                "search_requests": search_requests,
                "rel_tol": tolerance,
                "time_limit_s": time_limit,
                "seed": seed,
                "num_workers": workers,
                "trim": not no_trim,
                "routing": routing,
                "slo_percentile": slo_percentile,
                "workload_dir": wdir,
            }
            try:
                if as_json:
                    res = plan_serving(m, c, w, **kwargs)
                else:
                    with stderr_console().status(
                        f"Planning serving for {m.name} on {c.name}\u2026"
                    ):
                        res = plan_serving(m, c, w, **kwargs)
            except SpecError as e:
                msg = str(e)
                for key, opt in (
                    ("rate:", "--rate:"),
                    ("ttft_slo_ms:", "--ttft-ms:"),
                    ("tpot_slo_ms:", "--tpot-ms:"),
                    ("objective:", "--objective:"),
                    ("search_requests:", "--search-requests:"),
                    ("rel_tol:", "--tolerance:"),
                    ("trace:", "--trace:"),
                    ("routing:", "--routing:"),
                ):
                    if key == "trace:" and trace is None:
                        continue  # the workload's own trace: keep the field's name
                    if msg.startswith(key):
                        msg = opt + msg[len(key) :]
                raise SpecError(msg) from None
            if out is not None and res.plan is not None:
                write_new_file(out, dumps(res.plan.model_dump(mode="json")) + "\n", force=force)
            if plot is not None and res.plan is not None:
                pl = prompt or (
                    Lengths.fixed(w.prompt_tokens)
                    if reqs is None
                    else Lengths("file", values=tuple(int(x) for x in reqs.prompt_tokens))
                )
                ol = output or (
                    Lengths.fixed(w.output_tokens)
                    if reqs is None
                    else Lengths("file", values=tuple(int(x) for x in reqs.output_tokens))
                )
                sweep = load_sweep(m, c, w, res, pl, ol)
                assert res.rate_rps is not None
                plot_latency_vs_load(
                    sweep,
                    plot,
                    ttft_slo_ms=res.ttft_slo_ms,
                    tpot_slo_ms=res.tpot_slo_ms,
                    rate_rps=res.rate_rps,
                    title=f"{m.name} on {c.name}: "
                    + ", ".join(f"{g.count} x TP{g.tp} PP{g.pp} {g.gpu}" for g in res.fleet),
                )
        if as_json:
            emit_json(res.model_dump(mode="json"))
        else:
            _render(res, m.name, c.name)
            if out is not None and res.plan is not None:
                stdout_console().print(f"plan written to {out}")
            if plot is not None and res.plan is not None:
                stdout_console().print(f"latency-vs-load plot written to {plot}")
        exit_for_status(res.status)
