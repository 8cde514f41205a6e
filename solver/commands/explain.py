"""`shardwise explain` and `shardwise pareto` (see :mod:`solver.commands`).

``explain`` renders :func:`solver.report.explain.explain`: the memory ledger, the bottleneck
and why the alternatives lose; ``pareto`` renders :func:`solver.pareto.pareto_front`.  Both
take ``--plot FILE`` (``.png`` or ``.svg``), drawn by :mod:`solver.report.plots`.
"""

# No ``from __future__ import annotations`` here: typer reads the command signatures at run
# time, and the option types (ModelOpt, ...) are imported from solver.cli inside register()
# (importing it at the top would be circular), so the annotations must be evaluated where the
# commands are defined.
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

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
    stdout_console,
    user_errors,
)

if TYPE_CHECKING:
    from rich.table import Table

    from ..pareto import ParetoFront

PlotKind = Literal["timeline", "placement"]


def _check_plot_target(plot: Path, force: bool) -> Path:
    """The plot path, refused before any work if its type is unsupported or it exists."""
    from ..report.plots import check_plot_path

    path = check_plot_path(plot)
    refuse_overwrite(path, force)
    return path


def _console() -> Any:
    """Rich console on stdout, as ``plan`` uses (:func:`solver.commands.common.stdout_console`)."""
    return stdout_console()


def _check_common(time_limit: float, seed: int, workers: int | None) -> None:
    check_solve_cli(time_limit, seed, workers)


def pareto_table(front: "ParetoFront") -> "Table":
    """The front as a rich table, one row per non-dominated point (x ascending)."""
    from rich import box
    from rich.table import Table

    from ..report.render import DASH, fmt_ms, fmt_rate, fmt_time

    t = Table(
        title=f"Pareto front: {front.x_label} vs {front.y_label}",
        box=box.SIMPLE_HEAVY,
        caption=f"{len(front.points)} non-dominated of {len(front.solved)} solved points, "
        f"{len(front.skipped)} without a plan; {front.time_s:.1f} s",
        caption_justify="left",
    )
    inference = front.kind == "inference"
    cols = ["TPOT", "TTFT"] if inference else ["GPUs", "step time"]
    for name in (
        *cols,
        "tokens/s",
        "GPUs" if inference else "nodes given",
        "$/h",
        "plan",
        "status",
    ):
        t.add_column(name, justify="left" if name in ("plan", "status") else "right")
    for pt in front.points:
        cost = DASH if pt.cost_per_hour is None else f"${pt.cost_per_hour:,.2f}"
        if inference:
            first = [fmt_ms(pt.tpot_ms), fmt_ms(pt.ttft_ms)]
            size = str(pt.num_gpus)
        else:
            first = [str(pt.num_gpus), fmt_time(pt.step_time_s)]
            size = DASH if pt.target is None else f"{pt.target:.0f}"
        t.add_row(*first, fmt_rate(pt.tokens_per_s), size, cost, pt.shape, pt.status)
    return t


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``pareto`` to ``app``."""
    time_limit_opt = typer.Option(
        "--time-limit", "-t", metavar="SECONDS", help="CP-SAT wall-time limit per solve."
    )
    seed_opt = typer.Option("--seed", help="CP-SAT random seed.")
    workers_opt = typer.Option(
        "--workers",
        metavar="N",
        help="CP-SAT search workers \\[default: all cores, at most 8].",
        show_default=False,
    )
    plot_opt = typer.Option(
        "--plot",
        metavar="FILE",
        help="Also draw a figure to FILE (.png or .svg; refuses to overwrite without --force).",
        show_default=False,
    )

    @app.command(
        "explain",
        epilog="Examples:\n\n"
        "  shardwise explain -m llama3-70b -c seed-4x8-h100 -w train-llama-s8192 -t 5\n\n"
        "  shardwise explain -m gpt-39b -c seed-4x8-h100 -w train-gpt-s2048 --plan plan.json "
        "--plot timeline.png\n\n"
        "  shardwise explain -m llama3-70b -c seed-4x8-h100 -w infer-chat-slo --json\n\n"
        "  shardwise explain -m gpt-7.5b -c hetero-mix -w train-gpt-s2048 --engine-gap\n\n"
        "Without --plan the planner solves first (--time-limit) and explain exits as plan "
        "does: 0 OPTIMAL/FEASIBLE, 2 bad input, 4 INFEASIBLE, 5 UNKNOWN, 6 MODEL_ERROR.  With "
        "--plan: 0 (the given plan's violations are in the output), 2 for bad input.",
    )
    def explain_cmd(
        model: ModelOpt,
        cluster: ClusterOpt,
        workload: WorkloadOpt,
        plan: Annotated[
            Path | None,
            typer.Option(
                "--plan",
                "-p",
                metavar="PLAN",
                help="Explain this plan (JSON/YAML) instead of planning one.",
                show_default=False,
            ),
        ] = None,
        json_output: JsonOpt = False,
        quiet: Annotated[
            bool,
            typer.Option(
                "--quiet", "-q", help="One line: status, objective and bottleneck; no spinner."
            ),
        ] = False,
        time_limit: Annotated[float, time_limit_opt] = 10.0,
        seed: Annotated[int, seed_opt] = 0,
        workers: Annotated[int | None, workers_opt] = None,
        no_alternatives: Annotated[
            bool,
            typer.Option(
                "--no-alternatives", help="Skip building and scoring the alternative plans."
            ),
        ] = False,
        engine: Annotated[
            str | None,
            typer.Option(
                "--engine",
                "-e",
                metavar="ENGINE",
                help="What the planner plans for without --plan: 'launchable' (default), one "
                "launcher (megatron, deepspeed, torchrun, vllm, sglang, trtllm) or 'any-plan'.",
                show_default=False,
            ),
        ] = None,
        engine_gap: Annotated[
            bool,
            typer.Option(
                "--engine-gap",
                help="Also solve without engine limits (any-plan) and show the gap between the "
                "unrestricted optimum and the best launchable plan (one or two more solves).",
            ),
        ] = False,
        plot: Annotated[Path | None, plot_opt] = None,
        plot_kind: Annotated[
            str | None,
            typer.Option(
                "--plot-kind",
                metavar="KIND",
                help="timeline (training pipeline schedule) or placement (GPU map) "
                "\\[default: timeline for training, placement for inference].",
                show_default=False,
            ),
        ] = None,
        force: ForceOpt = False,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="Log the planner's progress to stderr.")
        ] = False,
    ) -> None:
        """Explain a plan: memory ledger per stage, the bottleneck, and why the main
        alternatives (TP/PP x2 and /2, pure DP, recompute, rubric, best uniform) lose."""
        with user_errors():
            from ..errors import SpecError
            from ..io import check_plan_fits, load_cluster, load_model, load_plan, load_workload

            _check_common(time_limit, seed, workers)
            if plot_kind is not None and plot_kind not in ("timeline", "placement"):
                raise SpecError(f"--plot-kind: must be timeline or placement, got {plot_kind!r}")
            if plot_kind is not None and plot is None:
                raise SpecError("--plot-kind: needs --plot FILE")
            plot_path = _check_plot_target(plot, force) if plot is not None else None
            if verbose:
                logging.basicConfig(
                    level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s"
                )
            m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
            given = load_plan(plan) if plan is not None else None
            if given is not None:  # a plan for another cluster or workload: bad input, exit 2
                check_plan_fits(given, c, w.kind, source=str(plan))
            kind: PlotKind = "timeline" if w.kind == "training" else "placement"
            if plot_kind is not None:
                kind = "timeline" if plot_kind == "timeline" else "placement"
            if plot_path is not None and kind == "timeline" and w.kind != "training":
                raise SpecError(
                    "--plot-kind timeline: needs a training workload (inference is not "
                    "simulated as a pipeline schedule); use --plot-kind placement"
                )
            from ..report.explain import explain, render_explanation

            kwargs: dict[str, Any] = dict(
                time_limit_s=time_limit,
                seed=seed,
                num_workers=workers,
                alternatives=not no_alternatives,
                engine=engine,
                engine_gap=engine_gap,
            )
            if json_output or verbose or quiet:
                expl = explain(m, c, w, given, **kwargs)
            else:
                from rich.console import Console

                what = "Explaining" if given is not None else "Solving and explaining"
                with Console(stderr=True).status(f"{what} {m.name} on {c.name}\u2026"):
                    expl = explain(m, c, w, given, **kwargs)
            wrote: str | None = None
            if plot_path is not None and expl.plan is not None:
                from ..report import plots

                if kind == "timeline":
                    plots.plot_pipeline_timeline(m, c, w, expl.plan, plot_path)
                else:
                    plots.plot_placement_map(c, expl.plan, plot_path)
                wrote = str(plot_path)
            if json_output:
                doc = expl.to_dict()
                doc["plot"] = wrote
                emit_json(doc)
            elif quiet:
                value = "-" if expl.objective is None else f"{expl.objective:,.6g}"
                neck = expl.bottleneck.text if expl.bottleneck is not None else expl.message
                typer.echo(f"{expl.status}  {w.objective}={value} {expl.objective_unit}  {neck}")
            else:
                from rich.rule import Rule

                out = _console()
                out.print(Rule(f"{m.name} on {c.name}: {w.kind}, {w.objective}"))
                out.print(render_explanation(expl, c))
                if wrote:
                    out.print(f"{kind} written to {wrote}")
                elif plot_path is not None:
                    out.print(f"no plan to draw to {plot_path} (status {expl.status})")
        if given is None:  # planned here: the planner's status decides, as for `plan`
            exit_for_status(expl.status)

    @app.command(
        "pareto",
        epilog="Examples:\n\n"
        "  shardwise pareto -m llama3-70b -c seed-4x8-h100 -w infer-chat-slo --plot pareto.png\n\n"
        "  shardwise pareto -m llama3-70b -c seed-4x8-h100 -w train-llama-s8192 --points 4 "
        "--json\n\n"
        "Inference: output tokens/s vs TPOT, re-solving under TPOT targets from the fastest "
        "reachable upward.  Training: tokens/s vs GPUs used (or $/h with --by cost), "
        "re-solving on the cluster cut to fewer nodes.  Exits 0, or 2 for bad input.",
    )
    def pareto_cmd(
        model: ModelOpt,
        cluster: ClusterOpt,
        workload: WorkloadOpt,
        json_output: JsonOpt = False,
        quiet: Annotated[
            bool,
            typer.Option("--quiet", "-q", help="Only the front, one point per line; no spinner."),
        ] = False,
        plot: Annotated[Path | None, plot_opt] = None,
        points: Annotated[
            int,
            typer.Option(
                "--points", "-n", metavar="N", help="Solves along the sweep (at least 2)."
            ),
        ] = 6,
        time_limit: Annotated[float, time_limit_opt] = 5.0,
        seed: Annotated[int, seed_opt] = 0,
        workers: Annotated[int | None, workers_opt] = None,
        by: Annotated[
            str,
            typer.Option("--by", metavar="AXIS", help="Training x axis: gpus or cost ($/h)."),
        ] = "gpus",
        deterministic: Annotated[
            bool,
            typer.Option("--deterministic", help="Reproducible solves (one CP-SAT worker)."),
        ] = False,
        force: ForceOpt = False,
    ) -> None:
        """Map a trade-off by re-solving: latency vs throughput (inference), throughput vs
        GPUs or cost (training); keep the non-dominated points."""
        with user_errors():
            from ..errors import SpecError
            from ..io import load_cluster, load_model, load_workload
            from ..pareto import MIN_POINTS, pareto_front

            _check_common(time_limit, seed, workers)
            if points < MIN_POINTS:
                raise SpecError(f"--points: must be >= {MIN_POINTS}, got {points}")
            if by not in ("gpus", "cost"):
                raise SpecError(f"--by: must be gpus or cost, got {by!r}")
            plot_path = _check_plot_target(plot, force) if plot is not None else None
            m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
            if by == "cost" and w.kind != "training":
                raise SpecError("--by cost: only for training workloads (inference plots TPOT)")
            kwargs: dict[str, Any] = dict(
                points=points,
                time_limit_s=time_limit,
                seed=seed,
                num_workers=workers,
                deterministic=deterministic,
                by="cost" if by == "cost" else "gpus",
            )
            if json_output or quiet:
                front = pareto_front(m, c, w, **kwargs)
            else:
                from rich.console import Console

                with Console(stderr=True).status(
                    f"Sweeping {m.name} on {c.name}: up to {points} solves of "
                    f"{time_limit:g} s\u2026"
                ):
                    front = pareto_front(m, c, w, **kwargs)
            wrote: str | None = None
            if plot_path is not None:
                from ..report.plots import plot_pareto

                plot_pareto(front, plot_path)
                wrote = str(plot_path)
            if json_output:
                doc = front.to_dict()
                doc["plot"] = wrote
                emit_json(doc)
                return
            if quiet:
                for pt in front.points:
                    typer.echo(f"{front.x_key}={pt.x:.6g}  tokens_per_s={pt.tokens_per_s:.6g}")
                return
            from rich.rule import Rule

            out = _console()
            out.print(Rule(f"{m.name} on {c.name}: {w.kind} Pareto front"))
            out.print(pareto_table(front))
            for s in front.skipped:
                if s["target"] is None:
                    target = ""
                elif w.kind == "training":
                    target = f" ({s['target']:.0f} nodes)"
                else:
                    target = f" (TPOT target {s['target']:.4g} ms)"
                out.print(f"no plan{target}: {s['status']}: {s['message']}")
            if wrote:
                out.print(f"plot written to {wrote}")
