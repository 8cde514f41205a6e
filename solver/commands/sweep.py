"""`shardwise sweep`: solve many cases in parallel (see :mod:`solver.sweep`)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    JsonOpt,
    check_solve_cli,
    emit_json,
    refuse_overwrite,
    stderr_console,
    stdout_console,
    user_errors,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from solver.sweep import Case, SweepSummary
    from solver.sweep.summary import BestRow

#: Exit code of a sweep stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell convention).
EXIT_INTERRUPTED = 130

#: Exit code of a finished sweep in which some case failed: a record with a failure status
#: (``ERROR``, ``TIMEOUT``, ``MODEL_ERROR``, ``INVALID_INPUT``: the case itself broke, or the
#: planner reported a bug), counted over every case of the directory, resumed ones included.
#: The planner's verdicts on an instance (OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN) are results,
#: not failures: a sweep is expected to contain cases that do not fit.  Distinct from plan's
#: 2-6 (a sweep has no single status) and from 1 (an uncaught crash of the command itself).
EXIT_CASES_FAILED = 7

_EPILOG = (
    "Examples:\n\n"
    "  shardwise sweep -m llama3-8b,llama3-70b -c seed-4x8-h100,hetero-mix "
    "-w train-llama-s8192,infer-chat-slo --out results/\n\n"
    "  shardwise sweep --family gpt --sizes 1b,7b,70b,1t -c selene-a100 -w train-gpt-s2048 "
    "--out results/ --executor ray --address auto\n\n"
    "  shardwise sweep --cases instances/sweeps/example.yaml --out results/ --time-limit 5\n\n"
    "  shardwise sweep --resume --out results/        (finish a killed or interrupted sweep)\n\n"
    "  shardwise sweep --summary results/ --plot heatmap.png\n\n"
    "Writes DIR/results.jsonl (one JSON record per case, appended and fsynced as each "
    "finishes), DIR/results.csv and DIR/cases.json.  Exit codes: 0 done, every case with a "
    "planner verdict (OPTIMAL, FEASIBLE, INFEASIBLE or UNKNOWN); 7 done, but some case "
    "failed (ERROR, TIMEOUT, MODEL_ERROR or INVALID_INPUT: see the summary); 2 bad input; "
    "130 interrupted (resume with --resume).  --summary exits 0 (or 2)."
)


def _fmt_money(value: Any) -> str:
    from solver.report.render import DASH

    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def _fmt_params(params_b: Any) -> str:
    from solver.report.render import DASH

    if not isinstance(params_b, int | float):
        return DASH
    return f"{params_b:,.0f}B" if params_b >= 10 else f"{params_b:.2g}B"


def _best_table(kind: str, rows: Sequence[BestRow]) -> RenderableType:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from solver.report.render import fmt_count, fmt_pct, fmt_rate, status_text

    training = kind == "training"
    # (header, right-aligned, number: never shortened; names shrink first on a narrow terminal)
    columns = [
        ("model", False, False),
        ("params", True, True),
        ("cluster", False, False),
        ("workload", False, False),
        ("status", False, True),
        ("tokens/s", True, True),
        ("GPUs", True, True),
        ("$/h", True, True),
        ("$/Mtok", True, True),
        *([("MFU", True, True)] if training else []),
        ("plans", True, True),
    ]
    cells: list[list[str | Text]] = []
    for row in rows:
        b = row.best or {}
        cells.append(
            [
                row.model,
                _fmt_params(row.params_b),
                row.cluster,
                b.get("workload") or "",
                status_text(b["status"]) if b else Text("no plan", style="red"),
                fmt_rate(b.get("tokens_per_s")).replace(" tok/s", ""),
                fmt_count(b.get("num_gpus")),
                _fmt_money(b.get("cost_per_hour")),
                _fmt_money(b.get("cost_per_mtoken")),
                *([fmt_pct(b.get("mfu"))] if training else []),
                f"{row.planned}/{row.cases}",
            ]
        )
    table = Table(
        title=f"Best plan per model x cluster ({kind}; plans = cases with a plan / cases)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for i, (name, right, number) in enumerate(columns):
        width = max([len(str(c[i])) for c in cells] + [len(name) if number else 0])
        table.add_column(
            name,
            justify="right" if right else "left",
            no_wrap=True,
            min_width=width if number else None,
        )
    for row_cells in cells:
        table.add_row(*row_cells)
    return table


def _statuses_line(statuses: dict[str, int]) -> str:
    return ", ".join(f"{s} {n}" for s, n in sorted(statuses.items(), key=lambda x: -x[1]))


def _print_summary(
    console: Console,
    records: list[dict[str, Any]],
    header: str,
    statuses: dict[str, int],
) -> None:
    from rich.rule import Rule

    from solver.sweep import best_rows

    console.print(Rule(header))
    console.print(f"statuses: {_statuses_line(statuses) or 'none yet'}")
    rows = best_rows(records)
    for kind in dict.fromkeys(r.kind for r in rows):
        console.print(_best_table(kind, [r for r in rows if r.kind == kind]))


def _failures(console: Console, records: list[dict[str, Any]], limit: int = 5) -> None:
    from solver.sweep.executors import FAILURE_STATUSES

    bad = [r for r in records if r.get("status") in FAILURE_STATUSES]
    for rec in bad[:limit]:
        console.print(f"[red]{rec['status']}[/red] {rec['key']}: {rec.get('message') or ''}")
    if len(bad) > limit:
        console.print(f"... and {len(bad) - limit} more (see results.csv)")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the sweep as cleanly as Ctrl-C (finished cases kept)."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build_cases(
    models: str | None,
    clusters: str | None,
    workloads: str | None,
    family: str | None,
    sizes: str | None,
    cases_file: Path | None,
    out: Path | None,
    resume: bool,
) -> list[Case]:
    from solver.errors import SpecError
    from solver.sweep import cartesian, cases_from_file, family_models, split_list
    from solver.sweep.store import CASES_FILE

    listed = any(v for v in (models, clusters, workloads, family, sizes))
    if cases_file is not None:
        if listed:
            raise SpecError("--cases: give either a case file or --models/--clusters/--workloads")
        return cases_from_file(cases_file)
    if not listed:
        if resume and out is not None:
            saved = out / CASES_FILE
            if not saved.is_file():
                raise SpecError(f"--resume: {saved} not found (not a sweep directory?)")
            return cases_from_file(saved, relative_to_file=False)
        raise SpecError(
            "no cases: give --models, --clusters and --workloads (or --family/--sizes, or "
            "--cases FILE)"
        )
    if (family is None) != (sizes is None):
        raise SpecError("--family and --sizes go together (e.g. --family gpt --sizes 1b,7b)")
    model_refs: list[Any] = list(split_list(models))
    if family is not None and sizes is not None:
        model_refs += family_models(family, split_list(sizes))
    return cartesian(model_refs, split_list(clusters), split_list(workloads))


def _validate(cases: Sequence[Case]) -> None:
    """Load every distinct spec now: bad input stops the sweep before it starts."""
    from solver.errors import SpecError
    from solver.sweep.cases import resolve_cases

    for item in resolve_cases(cases):
        if isinstance(item, tuple):
            raise SpecError(item[1])


def _dry_run(cases: Sequence[Case], json_output: bool) -> None:
    from solver.specs import Model
    from solver.sweep.cases import case_to_dict

    if json_output:
        emit_json({"cases": [{"key": c.key, **case_to_dict(c)} for c in cases]})
        return
    console = stdout_console()
    shown: set[str] = set()
    for c in cases:
        if isinstance(c.model, Model) and c.model.name not in shown:
            shown.add(c.model.name)
            m = c.model
            console.print(
                f"{m.name}: layers {m.num_layers}, hidden {m.hidden_size}, "
                f"heads {m.num_attention_heads}"
            )
    for c in cases:
        console.print(c.key)
    console.print(f"{len(cases)} cases")


def _summary_only(
    directory: Path, json_output: bool, quiet: bool, plot: Path | None, metric: str, force: bool
) -> None:
    from solver.sweep import load_directory, plot_heatmap
    from solver.sweep.store import write_csv

    if plot is not None:
        from solver.report.plots import check_plot_path

        check_plot_path(plot)  # .png or .svg, before anything is read
        refuse_overwrite(plot, force)
    data = load_directory(directory)
    write_csv(directory, data.records)
    if plot is not None:
        plot_heatmap(data.records, plot, metric=metric)
    if json_output:
        emit_json(data.to_dict())
        return
    total = (
        f"{len(data.records)}/{data.total}" if data.total is not None else str(len(data.records))
    )
    if quiet:
        typer.echo(f"{total} cases in {directory}: {_statuses_line(data.statuses)}")
        return
    console = stdout_console()
    _print_summary(console, data.records, f"sweep {directory}: {total} cases", data.statuses)
    _failures(console, data.records)
    if plot is not None:
        console.print(f"heat map written to {plot}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("sweep", epilog=_EPILOG)
    def sweep_cmd(
        models: Annotated[
            str | None,
            typer.Option(
                "--models",
                "-m",
                metavar="M1,M2",
                help="Models: comma-separated names under models/ or paths.",
                show_default=False,
            ),
        ] = None,
        clusters: Annotated[
            str | None,
            typer.Option(
                "--clusters",
                "-c",
                metavar="C1,C2",
                help="Clusters: comma-separated names under instances/ or paths.",
                show_default=False,
            ),
        ] = None,
        workloads: Annotated[
            str | None,
            typer.Option(
                "--workloads",
                "-w",
                metavar="W1,W2",
                help="Workloads: comma-separated names under instances/ or paths.",
                show_default=False,
            ),
        ] = None,
        family: Annotated[
            str | None,
            typer.Option(
                "--family",
                metavar="NAME",
                help="Add models generated by a scaling rule: 'gpt' (Megatron 2021 Table 1 shapes).",
                show_default=False,
            ),
        ] = None,
        sizes: Annotated[
            str | None,
            typer.Option(
                "--sizes",
                metavar="S1,S2",
                help="Family sizes, e.g. 350m,1b,7b,70b,1t.",
                show_default=False,
            ),
        ] = None,
        cases_file: Annotated[
            Path | None,
            typer.Option(
                "--cases",
                metavar="FILE",
                help="A YAML/JSON list of {model, cluster, workload} instead of the lists.",
                show_default=False,
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                metavar="DIR",
                help="Output directory (results.jsonl, results.csv, cases.json).",
                show_default=False,
            ),
        ] = None,
        executor: Annotated[
            str, typer.Option("--executor", "-e", metavar="local|ray", help="Where cases run.")
        ] = "local",
        address: Annotated[
            str | None,
            typer.Option(
                "--address",
                metavar="auto|HOST:PORT",
                help="Ray cluster to join \\[default: start a local Ray].",
                show_default=False,
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option(
                "--workers",
                "-j",
                metavar="N",
                help="Cases solved at once \\[default: all cores].",
                show_default=False,
            ),
        ] = None,
        time_limit: Annotated[
            float | None,
            typer.Option(
                "--time-limit",
                "-t",
                metavar="SECONDS",
                help="CP-SAT time limit per case \\[default: 10, or the resumed sweep's].",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[
            int | None,
            typer.Option(
                "--seed",
                help="CP-SAT random seed \\[default: 0, or the resumed sweep's].",
                show_default=False,
            ),
        ] = None,
        deterministic: Annotated[
            bool | None,
            typer.Option(
                "--deterministic/--parallel-search",
                help="One CP-SAT worker per case (reproducible on any executor), or "
                "cores/processes workers per case \\[default: deterministic, or the resumed "
                "sweep's].",
                show_default=False,
            ),
        ] = None,
        resume: Annotated[
            bool,
            typer.Option("--resume", help="Continue the sweep in --out, skipping finished cases."),
        ] = False,
        summary: Annotated[
            Path | None,
            typer.Option(
                "--summary",
                metavar="DIR",
                help="Print the summary of a (finished or partial) sweep directory and exit.",
                show_default=False,
            ),
        ] = None,
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                metavar="FILE.png",
                help="Save a heat map (model x cluster) of the best plans.",
                show_default=False,
            ),
        ] = None,
        plot_metric: Annotated[
            str,
            typer.Option(
                "--plot-metric",
                metavar="tokens_per_s|cost_per_mtoken",
                help="Heat-map colour.",
            ),
        ] = "tokens_per_s",
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Overwrite the --plot file if it exists.")
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="List the cases (and generated models) and exit.")
        ] = False,
        json_output: JsonOpt = False,
        quiet: Annotated[
            bool,
            typer.Option("--quiet", "-q", help="No progress bar; print one summary line."),
        ] = False,
    ) -> None:
        """Solve every (model, cluster, workload) case in parallel; resumable, with a summary."""
        with user_errors():
            from solver.errors import SpecError
            from solver.sweep.summary import PLOT_METRICS

            if plot_metric not in PLOT_METRICS:
                raise SpecError(
                    f"--plot-metric: must be one of {', '.join(PLOT_METRICS)}, got {plot_metric!r}"
                )
            if summary is not None:
                if any(
                    v is not None
                    for v in (models, clusters, workloads, family, sizes, cases_file, out)
                ):
                    raise SpecError("--summary: reads a finished directory; give no cases or --out")
                _summary_only(summary, json_output, quiet, plot, plot_metric, force)
                return
            if executor not in ("local", "ray"):
                raise SpecError(f"--executor: must be 'local' or 'ray', got {executor!r}")
            # Not given: the resumed sweep's value, else the default (solver.sweep.sweep).
            check_solve_cli(
                10.0 if time_limit is None else time_limit, 0 if seed is None else seed, workers
            )
            if address is not None and executor != "ray":
                raise SpecError("--address: only meaningful with --executor ray")
            cases = _build_cases(
                models, clusters, workloads, family, sizes, cases_file, out, resume
            )
            if dry_run:
                _validate(cases)
                _dry_run(cases, json_output)
                return
            if out is None:
                raise SpecError("--out: required (the directory that receives results.jsonl)")
            if out.exists() and not out.is_dir():
                raise SpecError(f"--out: {out} is a file, expected a directory")
            if plot is not None:
                from solver.report.plots import check_plot_path

                check_plot_path(plot)  # .png or .svg, refused before the sweep runs
                refuse_overwrite(plot, force)
            _validate(cases)
            result = _run(
                cases,
                out,
                executor,
                address,
                workers,
                time_limit,
                seed,
                deterministic,
                resume,
                json_output or quiet,
            )
            _finish(result, plot, plot_metric, json_output, quiet)


def _run(
    cases: Sequence[Case],
    out: Path,
    executor: str,
    address: str | None,
    workers: int | None,
    time_limit: float | None,
    seed: int | None,
    deterministic: bool | None,
    resume: bool,
    silent: bool,
) -> SweepSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from solver.sweep import SweepProgress, sweep

    kwargs: dict[str, Any] = {
        "out": out,
        "executor": executor,
        "workers": workers,
        "address": address,
        "time_limit_s": time_limit,
        "seed": seed,
        "deterministic": deterministic,
        "resume": resume,
    }
    with _sigterm_as_interrupt():
        if silent:
            return sweep(cases, **kwargs)
        bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=False,
        )
        task_id = bar.add_task("sweep", total=len(cases), failed=0)

        def update(p: SweepProgress) -> None:
            if p.record is None:  # the sweep has started: show the bar from now on
                bar.start()
                label = f"sweep (resumed {p.resumed})" if p.resumed else "sweep"
                # Resumed cases are not counted towards the ETA.
                bar.reset(task_id, total=p.total - p.done, completed=0, failed=p.failed)
                bar.update(task_id, description=label)
            else:
                bar.update(task_id, advance=1, failed=p.failed)

        try:  # bad input found by sweep() before its first callback shows no bar
            return sweep(cases, progress=update, **kwargs)
        finally:
            bar.stop()


def _finish(
    result: SweepSummary, plot: Path | None, metric: str, json_output: bool, quiet: bool
) -> None:
    from solver.sweep import best_rows, plot_heatmap, read_results
    from solver.sweep.store import CSV_FILE, RESULTS_FILE

    records = read_results(result.out / RESULTS_FILE).records
    if plot is not None and records:
        plot_heatmap(records, plot, metric=metric)
    resume_hint = f"shardwise sweep --resume --out {result.out}"
    if json_output:
        doc = result.to_dict()
        doc["best"] = [row.to_dict() for row in best_rows(records)]
        emit_json(doc)
    elif quiet:
        state = "interrupted" if result.interrupted else "done"
        typer.echo(
            f"{state}: {result.total - result.remaining}/{result.total} cases "
            f"({_statuses_line(result.statuses)}) in {result.wall_s:.1f} s -> {result.out}"
        )
    else:
        console = stdout_console()
        header = (
            f"sweep: {result.total - result.remaining}/{result.total} cases, {result.solved} "
            f"solved now in {result.wall_s:.1f} s ({result.cases_per_s:.2f} cases/s, "
            f"{result.executor} x {result.slots})"
        )
        _print_summary(console, records, header, result.statuses)
        _failures(console, records)
        console.print(f"results: {result.out / RESULTS_FILE}, {result.out / CSV_FILE}")
        if result.torn_bytes:
            console.print(
                f"note: dropped a torn last line ({result.torn_bytes} bytes) left by a killed run"
            )
        if plot is not None and records:
            console.print(f"heat map written to {plot}")
    if result.interrupted:
        sys.stderr.write(
            f"interrupted: {result.total - result.remaining} of {result.total} cases are "
            f"recorded; finish with: {resume_hint}\n"
        )
        sys.stderr.flush()
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.failed:
        raise typer.Exit(EXIT_CASES_FAILED)
