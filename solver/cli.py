"""The ``shardwise`` command line (typer + rich).

The CLI is thin: each command parses its options, calls one library function
(:func:`solver.planner.plan`, :func:`solver.evaluate.evaluate`, :func:`solver.hf.import_hf`)
and renders the result with :mod:`solver.report`.  Conventions every command follows:

* ``--model/--cluster/--workload`` take a name (resolved under ``models/`` and ``instances/``
  by :mod:`solver.io`) or a path; the shared option types below keep their help identical.
* ``--json`` prints exactly one strict-JSON document on stdout and nothing else (spinners and
  logs go to stderr and are off in JSON mode).
* Bad input -- a :class:`~solver.errors.SpecError`, a missing or unreadable file, a value out of
  range -- prints one line ``error: <message>`` on stderr and exits with code 2; never a
  traceback (``SHARDWISE_DEBUG=1`` re-raises, for debugging).
* ``plan`` exits with its status's code (:data:`solver.result.EXIT_CODES`): 0 OPTIMAL or
  FEASIBLE (a plan), 2 INVALID_INPUT (bad input), 4 INFEASIBLE (proven), 5 UNKNOWN (time
  limit before a plan or a proof), 6 MODEL_ERROR (a bug); its output, ``--json`` included, is
  printed first.  ``export`` uses 3 for "the engine cannot express the plan".
* Files the user owns are never overwritten without ``--force``.

New commands (explain, pareto, sweep, export) slot in as more ``@app.command`` functions
wrapped in :func:`user_errors`, reusing the option types and :func:`emit_json` of :mod:`solver.commands.common`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.rule import Rule

from . import __version__
from .commands import explain, export, plan_serving, profile, simulate, sweep
from .commands.common import (
    EXIT_BAD_INPUT,
    USER_ERRORS,
    ClusterOpt,
    ForceOpt,
    JsonOpt,
    ModelOpt,
    WorkloadOpt,
    check_solve_cli,
    emit_json,
    exit_for_status,
    fail,
    one_line,
    refuse_overwrite,
    report_dict,
    stderr_console,
    stdout_console,
    user_errors,
    write_new_file,
)
from .errors import SpecError
from .io import load_cluster, load_model, load_plan, load_workload
from .report import dumps, objective_unit, plan_document, render_evaluation, render_result
from .report.render import fmt_objective
from .result import Result, Status
from .specs import Model

__all__ = ["app", "main"]

_EPILOG = (
    "Examples:\n\n"
    "  shardwise plan --model llama3-70b --cluster seed-4x8-h100 --workload infer-chat-slo\n\n"
    "  shardwise evaluate -m gpt-39b -c selene-a100-64 -w train-gpt-s2048 --plan plan.json\n\n"
    "  shardwise import-hf config.json --name my-model --out models/my-model.yaml\n\n"
    "Names resolve to models/NAME.yaml and instances/NAME.yaml (also under $SHARDWISE_HOME); "
    "paths work too.  Exit codes: 0 ok (plan: OPTIMAL or FEASIBLE), 2 bad input (INVALID_INPUT), "
    "3 export: the engine cannot express the plan, 4 plan: INFEASIBLE (proven), 5 plan: UNKNOWN "
    "(time limit before a plan or a proof), 6 plan: MODEL_ERROR (a bug)."
)

app = typer.Typer(
    name="shardwise",
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"shardwise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Plan how a large model is split across GPUs (TP/PP/DP) with CP-SAT, verified by an
    independent numpy evaluator."""


# ------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------
@app.command(
    "evaluate",
    epilog="Example:\n\n"
    "  shardwise evaluate --model tiny-gpt --cluster h100x2-nvlink "
    "--workload train-gpt-s2048 --plan plan.json --json\n\n"
    "The plan's 'predicted' and 'solver' fields are ignored: everything is recomputed.  "
    "Exits 0 for an infeasible plan (the report says why), 2 for bad input.",
)
def evaluate_cmd(
    model: ModelOpt,
    cluster: ClusterOpt,
    workload: WorkloadOpt,
    plan: Annotated[
        Path,
        typer.Option(
            "--plan",
            "-p",
            metavar="PLAN",
            help="Plan file (JSON or YAML; the output of 'plan --out' or 'plan --json').",
            show_default=False,
        ),
    ],
    json_output: JsonOpt = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="One line: feasible or not, and the headline metrics."),
    ] = False,
) -> None:
    """Score a plan with the numpy evaluator: feasibility, memory per GPU, time, MFU."""
    with user_errors():
        m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
        p = load_plan(plan)
        from .evaluate import evaluate

        report = report_dict(evaluate(m, c, w, p))
        if json_output:
            emit_json(report)
            return
        if quiet:
            verdict = (
                "feasible"
                if report["feasible"]
                else "INFEASIBLE: " + "; ".join(report["violations"])
            )
            tps = report.get("tokens_per_s")
            peak = report.get("peak_memory_GB_per_gpu")
            typer.echo(
                f"{verdict}  tokens/s={tps if tps is None else f'{tps:,.0f}'}"
                f"  peak_memory_GB={peak if peak is None else f'{peak:.1f}'}"
            )
            return
        out = stdout_console()
        out.print(Rule(f"{m.name} on {c.name}: {w.kind} plan {plan}"))
        out.print(render_evaluation(report, p, c, w))


# ------------------------------------------------------------------------------------------
# plan
# ------------------------------------------------------------------------------------------
def _quiet_line(result: Result, objective: str, kind: str) -> str:
    """``OPTIMAL  max_throughput=9,239,269 tokens/s  gap=0%  time=0.05s`` (+ the message)."""
    parts = [result.status.value]
    if result.objective is not None:
        parts.append(
            f"{objective}={fmt_objective(result.objective, objective_unit(objective, kind))}"
        )
    if result.gap is not None:
        parts.append(f"gap={100 * result.gap:.3g}%")
    parts.append(f"time={result.time_s:.2f}s")
    line = "  ".join(parts)
    if result.message and not result.ok:
        line += ": " + " ".join(result.message.split())
    return line


@app.command(
    "plan",
    epilog="Examples:\n\n"
    "  shardwise plan -m llama3-70b -c seed-4x8-h100 -w infer-chat-slo\n\n"
    "  shardwise plan -m gpt-39b -c selene-a100-64 -w train-gpt-s2048 "
    "--time-limit 60 --out plan.json\n\n"
    "  shardwise plan -m tiny-gpt -c h100x2-nvlink -w train-tiny --deterministic --json\n\n"
    "  shardwise plan -m gpt-7.5b -c hetero-mix -w train-gpt-s2048 --engine megatron\n\n"
    "  shardwise plan -m gpt-39b -c selene-a100-64 -w train-gpt-s2048 --engine any-plan\n\n"
    "Statuses and exit codes: 0 OPTIMAL (proven optimal, gap 0); 0 FEASIBLE (a plan with its "
    "bound and gap); 2 INVALID_INPUT (bad input, one line naming the field); 4 INFEASIBLE "
    "(proven: no plan fits, the message says why); 5 UNKNOWN (the time limit came before any "
    "plan or proof: raise --time-limit); 6 MODEL_ERROR (the evaluator disagreed with the "
    "solver: a bug).  The output (--json too) is printed first; the status string is the "
    "same in the JSON and in Python (Result.status).  The whole run, model building and "
    "verification included, returns within 1.1 x --time-limit + 0.5 s.",
)
def plan_cmd(
    model: ModelOpt,
    cluster: ClusterOpt,
    workload: WorkloadOpt,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            "-t",
            metavar="SECONDS",
            help="Wall-time limit of the search; the run returns within 1.1 x it + 0.5 s.",
        ),
    ] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="CP-SAT random seed.")] = 0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            help="CP-SAT search workers \\[default: all cores, at most 8].",
            show_default=False,
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            help="Reproducible search (one CP-SAT worker, interleaved): the same inputs "
            "and seed give the same plan.",
        ),
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            "-e",
            metavar="ENGINE",
            help="What to plan for: 'launchable' (default: plans at least one engine of the "
            "workload's kind runs), one launcher (megatron, deepspeed, torchrun, vllm, sglang, "
            "trtllm: its TP, GPU-type, layer-split and ZeRO/recompute rules), or 'any-plan' "
            "(the unrestricted optimum, beyond any engine).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PLAN.json",
            help="Write the plan (with predicted metrics and solver facts) to this file.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only a one-line status summary; no spinner."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Log the planner's progress (CP-SAT log) to stderr."),
    ] = False,
) -> None:
    """Solve for the optimal plan with CP-SAT and show it, its metrics and the baseline."""
    with user_errors():
        check_solve_cli(time_limit, seed, workers)
        if out is not None:
            refuse_overwrite(out, force)  # before solving: don't waste a long solve
        if verbose:
            logging.basicConfig(
                level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s"
            )
        m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
        from .planner import plan as solve

        kwargs: dict[str, Any] = {
            "time_limit_s": time_limit,
            "seed": seed,
            "num_workers": workers,
            "deterministic": deterministic,
            "engine": engine,
        }
        if json_output or quiet or verbose:
            result: Result = solve(m, c, w, **kwargs)
        else:
            with stderr_console().status(
                f"Solving {m.name} on {c.name} with CP-SAT (limit {time_limit:g} s)\u2026"
            ):
                result = solve(m, c, w, **kwargs)

        if result.status == Status.INVALID_INPUT:  # bad input found while solving: exit 2
            if json_output:
                emit_json(result.to_dict())
            fail(result.message or "invalid input")

        wrote: str | None = None
        if out is not None:
            doc = plan_document(result)
            if doc is None:
                if not json_output:
                    stderr_console().print(
                        f"no plan to write to {out} (status {result.status.value})"
                    )
            else:
                write_new_file(out, dumps(doc) + "\n", force=force)
                wrote = str(out)

        if json_output:
            emit_json(result.to_dict())
        elif quiet:
            typer.echo(_quiet_line(result, w.objective, w.kind))
        else:
            console = stdout_console()
            console.print(Rule(f"{m.name} on {c.name}: {w.kind}, {w.objective}"))
            console.print(render_result(result, c, w))
            if wrote:
                console.print(f"plan written to {wrote}")
    exit_for_status(result.status)  # 0 for a plan; see the epilog for the others


# ------------------------------------------------------------------------------------------
# import-hf
# ------------------------------------------------------------------------------------------
@app.command(
    "import-hf",
    epilog="Examples:\n\n"
    "  shardwise import-hf ~/Llama-3-8B/config.json\n\n"
    "  shardwise import-hf config.json --name llama3-8b --out models/llama3-8b.yaml",
)
def import_hf_cmd(
    config: Annotated[
        Path,
        typer.Argument(
            metavar="CONFIG.json",
            help="A Hugging Face config.json (Llama, Mistral, Qwen2, Mixtral, GPT-2, GPT-NeoX).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="Model name \\[default: from the config].", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="MODEL.yaml",
            help="Write the YAML here (e.g. models/NAME.yaml) instead of printing it.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Convert a Hugging Face config.json into a shardwise model YAML."""
    with user_errors():
        if out is not None:
            refuse_overwrite(out, force)
        from .hf import import_hf, model_to_yaml

        if name is not None and not name.strip():
            raise SpecError("--name: must not be empty")
        model: Model = import_hf(config, name=name)
        text: str = model_to_yaml(model, comment=f"Imported by shardwise import-hf from {config}")
        if not text.endswith("\n"):
            text += "\n"
        if out is None:
            sys.stdout.write(text)
        else:
            write_new_file(out, text, force=force)
            typer.echo(f"wrote {out} (model {model.name})")


# ------------------------------------------------------------------------------------------
# command groups defined in solver/commands/ (explain/pareto, export, sweep, profile/validate)
# ------------------------------------------------------------------------------------------
def _register_command_groups() -> None:
    for module in (explain, export, sweep, profile, simulate, plan_serving):
        module.register(app)


_register_command_groups()


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI (the ``shardwise`` console script and ``python -m solver``)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="shardwise")
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away: nothing more to say
        sys.exit(1)
    except USER_ERRORS as err:  # anything that escaped a command's own handler
        if os.environ.get("SHARDWISE_DEBUG"):
            raise
        sys.stderr.write(f"error: {one_line(err)}\n")
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":  # pragma: no cover
    main()
