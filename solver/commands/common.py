"""What every ``shardwise`` command shares: option types, error mapping, JSON output, safe writes.

:mod:`solver.cli` (the ``app`` and the core commands) and every module in
:mod:`solver.commands` import from here, so no command module imports the CLI that registers
it.  Conventions:

* the option types keep ``--model/--cluster/--workload/--json/--force`` identical everywhere;
* :func:`user_errors` turns bad input (:data:`USER_ERRORS`) into one line ``error: ...`` on
  stderr and exit code 2, never a traceback (``SHARDWISE_DEBUG=1`` re-raises);
* :func:`emit_json` prints exactly one strict-JSON document on stdout;
* :func:`write_new_file` never overwrites a user's file without ``--force``, writes through a
  temporary file renamed into place, follows a symbolic link to the file it points to, and
  refuses directories, FIFOs and devices (:func:`solver.io.output_target`);
* :func:`check_solve_cli` checks ``--time-limit/--seed/--workers`` by the library's rules;
* :func:`exit_for_status` ends a solving command with its status's exit code
  (:data:`solver.result.EXIT_CODES`: 0 OPTIMAL/FEASIBLE, 2 INVALID_INPUT, 4 INFEASIBLE,
  5 UNKNOWN, 6 MODEL_ERROR; 3 is ``export``'s "the engine cannot express the plan").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from ..errors import SpecError, check_solve_options, format_validation_error
from ..io import output_target, write_text_atomic
from ..report import dumps
from ..result import EXIT_CODES, Status

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INFEASIBLE",
    "EXIT_MODEL_ERROR",
    "EXIT_UNKNOWN",
    "USER_ERRORS",
    "ClusterOpt",
    "ForceOpt",
    "JsonOpt",
    "ModelOpt",
    "WorkloadOpt",
    "check_solve_cli",
    "emit_json",
    "exit_for_status",
    "fail",
    "one_line",
    "refuse_overwrite",
    "report_dict",
    "stderr_console",
    "stdout_console",
    "user_errors",
    "write_new_file",
]

#: Exceptions that mean "bad input": one line on stderr, exit code 2.  SpecError is a
#: ValueError; OSError covers missing, unreadable and unwritable files.
USER_ERRORS: tuple[type[BaseException], ...] = (
    SpecError,
    ValueError,
    ValidationError,
    yaml.YAMLError,
    OSError,
)
EXIT_BAD_INPUT = 2
#: ``shardwise plan``: proven that no plan fits (the message says why and what to relax).
EXIT_INFEASIBLE = EXIT_CODES[Status.INFEASIBLE]
#: ``shardwise plan``: the time limit came before any plan or proof (raise --time-limit).
EXIT_UNKNOWN = EXIT_CODES[Status.UNKNOWN]
#: ``shardwise plan``: the evaluator rejected the solver's plan (a bug, please report).
EXIT_MODEL_ERROR = EXIT_CODES[Status.MODEL_ERROR]


# ------------------------------------------------------------------------------------------
# Shared option types (one definition, identical help in every command)
# ------------------------------------------------------------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help="Model spec: a name under models/ (llama3-70b) or a YAML/JSON path.",
        show_default=False,
    ),
]
ClusterOpt = Annotated[
    str,
    typer.Option(
        "--cluster",
        "-c",
        metavar="CLUSTER",
        help="Cluster spec: a name under instances/ (seed-4x8-h100) or a YAML/JSON path.",
        show_default=False,
    ),
]
WorkloadOpt = Annotated[
    str,
    typer.Option(
        "--workload",
        "-w",
        metavar="WORKLOAD",
        help="Workload spec (training or inference): a name under instances/ or a path.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout and nothing else."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", "-f", help="Overwrite the --out file if it exists."),
]


# ------------------------------------------------------------------------------------------
# Plumbing shared by the commands
# ------------------------------------------------------------------------------------------
def one_line(err: BaseException) -> str:
    """A user-facing one-line message for an exception in :data:`USER_ERRORS`."""
    if isinstance(err, ValidationError):
        msg = format_validation_error(err)
    elif isinstance(err, OSError) and err.strerror:
        target = err.filename if err.filename is not None else ""
        msg = f"{target}: {err.strerror}" if target else err.strerror
        if isinstance(err, FileExistsError):
            msg += " (pass --force to overwrite)"
    else:
        msg = str(err)
    msg = " ".join(msg.split())
    return msg or type(err).__name__


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with code 2."""
    # Plain write, not rich: rich would wrap a long message over several lines.
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise typer.Exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad-input exceptions raised inside the block into ``error: ...`` and exit 2."""
    try:
        yield
    except BrokenPipeError:
        raise  # `shardwise ... | head`: not bad input; typer exits quietly
    except USER_ERRORS as err:
        if os.environ.get("SHARDWISE_DEBUG"):
            raise
        fail(one_line(err))


def emit_json(doc: Any) -> None:
    """Write ``doc`` as one strict-JSON document (plus a newline) on stdout."""
    sys.stdout.write(dumps(doc) + "\n")
    sys.stdout.flush()


def stdout_console() -> Console:
    """Rich console on stdout for human-readable output."""
    # Piped output gets a readable fixed width instead of rich's 80-column fallback.
    wide = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(highlight=False, width=None if wide else 120)


def stderr_console() -> Console:
    """Rich console on stderr (spinners, progress, notes that must not pollute --json)."""
    return Console(stderr=True, highlight=False)


#: How the CLI spells the planner's knobs in error messages.
SOLVE_OPTION_NAMES = {"time_limit_s": "--time-limit", "seed": "--seed", "num_workers": "--workers"}


def check_solve_cli(time_limit: float, seed: int, workers: int | None) -> None:
    """``--time-limit`` finite and > 0, ``--seed`` 0..2^31-1, ``--workers`` 1..1024, else
    SpecError naming the option (before anything is loaded or solved)."""
    check_solve_options(
        time_limit_s=time_limit, seed=seed, num_workers=workers, names=SOLVE_OPTION_NAMES
    )


def exit_for_status(status: Status | str) -> None:
    """End the command with ``status``'s exit code (:data:`solver.result.EXIT_CODES`); return
    normally for OPTIMAL and FEASIBLE (exit 0)."""
    code = EXIT_CODES[Status(status)]
    if code:
        raise typer.Exit(code)


def refuse_overwrite(path: Path, force: bool) -> None:
    """Raise SpecError unless ``path`` may be written: absent, or an existing regular file
    (or a symbolic link to one) with ``force``, in an existing folder.  Directories, FIFOs,
    devices and sockets are refused even with ``force``."""
    output_target(path)
    if os.path.lexists(path) and not force:
        raise SpecError(f"{path}: already exists; pass --force to overwrite")


def write_new_file(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` to ``path``; never touch an existing file unless ``force``.

    The text goes to a temporary file in the same folder that is then renamed into place, so
    an interrupted write never leaves half a file behind.  Without ``force`` a file that
    appeared since the check is not clobbered either; with it a regular file is replaced
    (keeping its mode) and a symbolic link is written through to the file it points to.  A
    new file honours the umask.
    """
    refuse_overwrite(path, force)
    try:
        write_text_atomic(path, text, overwrite=force)
    except FileExistsError:
        raise SpecError(f"{path}: already exists; pass --force to overwrite") from None


def report_dict(report: Any) -> dict[str, Any]:
    """The evaluator's Report as its dict (tolerates a dict already)."""
    if isinstance(report, dict):
        return report
    doc: dict[str, Any] = report.to_dict()
    return doc
