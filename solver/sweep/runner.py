""":func:`sweep`: solve many cases in parallel, durably, resumably."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, check_solve_options
from ..io import output_target, read_document
from .cases import Case, ResolvedCase, case_to_dict, check_unique, resolve_cases
from .executors import (
    FAILURE_STATUSES,
    Executor,
    SolveSettings,
    Task,
    failure_record,
    make_executor,
    solve_case,
)
from .store import (
    CASES_FILE,
    CSV_FILE,
    LOCK_FILE,
    RESULTS_FILE,
    SETTINGS_FILE,
    ResultWriter,
    read_results,
    write_csv,
    write_text_atomic,
)

__all__ = ["SweepProgress", "SweepSummary", "saved_settings", "settings_document", "sweep"]


@dataclass(frozen=True)
class SweepProgress:
    """Where a running sweep stands; passed to the ``progress`` callback after each case."""

    total: int  #: cases in the sweep
    done: int  #: cases with a record (including those found by resume)
    failed: int  #: records with a failure status (ERROR, TIMEOUT, MODEL_ERROR, INVALID_INPUT)
    resumed: int  #: records found in results.jsonl when the sweep started
    record: dict[str, Any] | None = None  #: the record just written (None for the first call)


@dataclass(frozen=True)
class SweepSummary:
    """What :func:`sweep` returns.

    Attributes
    ----------
    out
        The output directory (``results.jsonl``, ``results.csv``, ``cases.json``).
    total, resumed, solved
        Cases in the sweep, records already there when it started, records written now.
    statuses
        Record count per status over the sweep's cases.
    interrupted
        True when the sweep stopped early (Ctrl-C): the finished cases are kept; run again
        with ``resume=True`` to finish.
    wall_s
        Wall time of this run; ``cases_per_s`` is ``solved / wall_s``.
    torn_bytes
        Length of a torn last line (from a killed run) removed from results.jsonl on resume.
    """

    out: Path
    executor: str
    slots: int
    total: int
    resumed: int
    solved: int
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    wall_s: float = 0.0
    torn_bytes: int = 0

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in FAILURE_STATUSES)

    @property
    def remaining(self) -> int:
        return self.total - sum(self.statuses.values())

    @property
    def cases_per_s(self) -> float:
        return self.solved / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "executor": self.executor,
            "slots": self.slots,
            "total": self.total,
            "resumed": self.resumed,
            "solved": self.solved,
            "remaining": self.remaining,
            "failed": self.failed,
            "statuses": dict(sorted(self.statuses.items())),
            "interrupted": self.interrupted,
            "wall_s": self.wall_s,
            "cases_per_s": self.cases_per_s,
            "torn_bytes": self.torn_bytes,
        }


#: The sweep's knobs are named as the CLI spells them (the messages read the same either way).
_OPTION_NAMES = {"time_limit_s": "--time-limit", "seed": "--seed", "num_workers": "--workers"}


def _entries(data: Any) -> set[str]:
    """A case list as canonical JSON lines (equal sets: the same cases, in any order)."""
    items = data if isinstance(data, list) else []
    return {json.dumps(e, sort_keys=True, separators=(",", ":")) for e in items}


def _check_same_cases(out: Path, cases: list[Case]) -> None:
    """Refuse to resume ``out`` with other cases than the ones its ``cases.json`` records.

    Resuming with another case set would rewrite ``cases.json`` and mix results of two
    sweeps; the directory is left as it is.  A directory without ``cases.json`` (nothing
    started yet) may be resumed with any cases.
    """
    saved = out / CASES_FILE
    if not saved.is_file():
        return
    old = _entries(read_document(saved))
    new = _entries(json.loads(json.dumps([case_to_dict(c) for c in cases])))
    if old != new:
        raise SpecError(
            f"--resume: the cases differ from those of the sweep in {out} ({len(new - old)} "
            f"new, {len(old - new)} missing of the {len(old)} in {saved}); resume with the "
            f"same case options (or just --resume --out {out}), or choose another --out"
        )


#: How each stored solve option is named in a refusal (the CLI's spelling where it has one).
_SETTING_NAMES = {
    "time_limit_s": "--time-limit",
    "seed": "--seed",
    "deterministic": "--deterministic/--parallel-search",
    "num_workers": "--workers (CP-SAT workers per case: cores / --workers)",
    "hard_timeout_s": "hard_timeout_s",
    "compare_baseline": "compare_baseline",
}

#: The defaults of the options a sweep is solved with (``sweep(...)``'s None).
_DEFAULTS: dict[str, Any] = {"time_limit_s": 10.0, "seed": 0, "deterministic": True}


def settings_document(settings: SolveSettings) -> dict[str, Any]:
    """The solve options that change a case's result, as ``settings.json`` stores them.

    CP-SAT's worker count matters only without ``deterministic`` (one worker then); how many
    cases run at once (the sweep's own ``workers``) changes no result and is not stored.
    """
    return {
        "time_limit_s": settings.time_limit_s,
        "seed": settings.seed,
        "deterministic": settings.deterministic,
        "num_workers": None if settings.deterministic else settings.num_workers,
        "hard_timeout_s": settings.hard_timeout_s,
        "compare_baseline": settings.compare_baseline,
    }


def saved_settings(out: Path) -> dict[str, Any]:
    """The solve options of the sweep in ``out``: its ``settings.json``, or for a directory
    written before that file existed the time limit and seed its records carry; {} if none."""
    path = out / SETTINGS_FILE
    if path.is_file():
        data = read_document(path)
        if not isinstance(data, dict):
            raise SpecError(f"--resume: {path} is not a settings document")
        return {k: data[k] for k in _SETTING_NAMES if k in data}
    records = read_results(out / RESULTS_FILE).records if (out / RESULTS_FILE).is_file() else []
    if not records:
        return {}
    return {k: records[0][k] for k in ("time_limit_s", "seed") if k in records[0]}


def _check_same_settings(out: Path, wanted: dict[str, Any], saved: dict[str, Any]) -> None:
    """Refuse to resume ``out`` with other solve options than its cases were solved with:
    the results would mix two sweeps.  Nothing in ``out`` is touched."""
    changed = [
        f"{_SETTING_NAMES[k]} {_shown(saved[k])} -> {_shown(wanted[k])}"
        for k in _SETTING_NAMES
        if k in saved and k in wanted and saved[k] != wanted[k]
    ]
    if changed:
        raise SpecError(
            f"--resume: the solve options differ from those of the sweep in {out} "
            f"({'; '.join(changed)}); resume with the same options (or none: --resume --out "
            f"{out} reuses them), or choose another --out"
        )


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "default" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _resolved(name: str, given: Any, saved: dict[str, Any]) -> Any:
    """A solve option: as given, else the resumed sweep's, else the default."""
    if given is not None:
        return given
    return saved.get(name, _DEFAULTS[name])


def _as_case(item: Case | tuple[Any, Any, Any]) -> Case:
    if isinstance(item, Case):
        return item
    if isinstance(item, tuple) and len(item) == 3:
        return Case(*item)
    raise SpecError(f"cases: expected Case or (model, cluster, workload), got {item!r}")


def sweep(
    cases: Iterable[Case | tuple[Any, Any, Any]],
    *,
    out: str | Path,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    time_limit_s: float | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    hard_timeout_s: float | None = None,
    compare_baseline: bool = False,
    resume: bool = False,
    progress: Callable[[SweepProgress], None] | None = None,
    task: Task = solve_case,
) -> SweepSummary:
    """Solve every case and append one record per case to ``<out>/results.jsonl``.

    Parameters
    ----------
    cases
        :class:`~solver.sweep.Case` objects or ``(model, cluster, workload)`` tuples; each
        item a name, a path, an inline mapping or a spec object.  Keys must be unique.
    out
        Output directory (created if missing).  It receives ``results.jsonl`` (one record per
        case, appended and fsynced as each finishes), ``results.csv`` and ``cases.json``.
    executor
        ``'local'`` (default: a process pool), ``'ray'``, or an :class:`Executor`.
    workers
        Cases solved at once (default: the cores available; for Ray, its CPUs).
    address
        Ray cluster address (``'auto'``, ``'HOST:PORT'``); default starts a local Ray.
    time_limit_s, seed, deterministic, hard_timeout_s, compare_baseline
        How each case is solved (see :class:`~solver.sweep.executors.SolveSettings`); defaults
        10 s, 0, True (reproducible: one CP-SAT worker per case), 3 x limit + 30 s, False.
        With ``resume``, the time limit, seed and ``deterministic`` not given (None) are the
        resumed sweep's.
    resume
        Continue a sweep in ``out``: cases already in results.jsonl are skipped (default
        False; without it an ``out`` that already holds results is an error).  Another case
        set, or other solve options than those in ``out/settings.json`` (time limit, seed,
        deterministic, CP-SAT workers per case without it, hard timeout, baseline), is refused
        with :class:`SpecError` naming ``--resume``, and ``out`` is left untouched.
    progress
        Called with a :class:`SweepProgress` before the first case and after each record.
    task
        The function solving one case (default :func:`~solver.sweep.executors.solve_case`);
        it must be importable by the worker processes.

    Returns
    -------
    SweepSummary
        Counts per status, time, and whether the sweep was interrupted (Ctrl-C stops it
        cleanly: finished cases stay recorded and ``resume=True`` finishes the rest).
    """
    check_solve_options(
        time_limit_s=time_limit_s, seed=seed, num_workers=workers, names=_OPTION_NAMES
    )
    out = Path(out)
    saved = saved_settings(out) if resume and out.is_dir() else {}
    time_limit_s = float(_resolved("time_limit_s", time_limit_s, saved))
    seed = int(_resolved("seed", seed, saved))
    deterministic = bool(_resolved("deterministic", deterministic, saved))
    if hard_timeout_s is not None and not hard_timeout_s > 0:
        raise SpecError(f"hard_timeout_s: must be > 0 seconds, got {hard_timeout_s:g}")
    case_list = check_unique([_as_case(c) for c in cases])
    if not case_list:
        raise SpecError("cases: the sweep has no cases")
    ex = make_executor(executor, workers=workers, address=address)
    settings = ex.settings_for(
        SolveSettings(
            time_limit_s=time_limit_s,
            seed=seed,
            deterministic=deterministic,
            hard_timeout_s=hard_timeout_s,
            compare_baseline=compare_baseline,
        )
    )
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out: {out} is a file, expected a directory")
    if out.is_dir():
        for name in (RESULTS_FILE, CSV_FILE, CASES_FILE, SETTINGS_FILE, LOCK_FILE):
            output_target(out / name)  # no FIFO, device or directory where a file goes
    if not resume and read_results(out / RESULTS_FILE).records:
        raise SpecError(
            f"--out: {out / RESULTS_FILE} already holds results; pass --resume to continue "
            "that sweep, or choose another directory"
        )
    if resume:
        _check_same_cases(out, case_list)  # before anything in out is touched
        _check_same_settings(out, settings_document(settings), saved)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    with ResultWriter(out) as writer:
        stored = read_results(writer.path)
        keys = {c.key for c in case_list}
        statuses: Counter[str] = Counter(
            r.get("status") or "ERROR" for r in stored.records if r["key"] in keys
        )
        resumed = sum(statuses.values())
        write_text_atomic(
            out / CASES_FILE,
            json.dumps([case_to_dict(c) for c in case_list], indent=1) + "\n",
        )
        write_text_atomic(
            out / SETTINGS_FILE, json.dumps(settings_document(settings), indent=1) + "\n"
        )
        todo = [c for c in case_list if c.key not in stored.keys]
        solved = 0
        interrupted = False

        def record(rec: dict[str, Any]) -> None:
            nonlocal solved
            writer.append(rec)
            solved += 1
            statuses[rec["status"]] += 1
            if progress is not None:
                failed = sum(n for s, n in statuses.items() if s in FAILURE_STATUSES)
                progress(
                    SweepProgress(len(case_list), sum(statuses.values()), failed, resumed, rec)
                )

        if progress is not None:
            failed0 = sum(n for s, n in statuses.items() if s in FAILURE_STATUSES)
            progress(SweepProgress(len(case_list), resumed, failed0, resumed, None))
        try:
            runnable: list[ResolvedCase] = []
            for item in resolve_cases(todo):
                if isinstance(item, ResolvedCase):
                    runnable.append(item)
                else:
                    record(failure_record(item[0], "ERROR", item[1], settings))
            if runnable:
                with contextlib.closing(ex.run(runnable, settings, task)) as results:
                    for rec in results:
                        record(rec)
        except KeyboardInterrupt:
            interrupted = True
        wall = time.perf_counter() - start
        write_csv(out, read_results(writer.path).records)
    return SweepSummary(
        out=out,
        executor=ex.name,
        slots=ex.slots,
        total=len(case_list),
        resumed=resumed,
        solved=solved,
        statuses=dict(statuses),
        interrupted=interrupted,
        wall_s=wall,
        torn_bytes=writer.torn_bytes,
    )
