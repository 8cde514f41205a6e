"""The sweep's output directory: ``results.jsonl`` (durable, append-only), ``results.csv``,
``cases.json`` and ``settings.json`` (the solve options every case was solved with, which
``--resume`` must match).

``results.jsonl`` holds one JSON object per finished case, in the order cases finished.  Only
the sweep's driver process writes it: each record is one ``os.write`` of the whole line
(newline last) on a file opened with ``O_APPEND``, followed by ``os.fsync``, so after a
``kill -9`` or a crash the file is every finished case, plus at most one *torn* last line (a
prefix of a record, without its newline).  :func:`read_results` ignores a torn last line and
:class:`ResultWriter` truncates it before appending, so a resumed sweep neither loses a
finished case nor records one twice.  A second sweep writing the same directory at the same
time is refused (an advisory ``flock`` on ``.sweep.lock``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..io import write_text_atomic as _write_atomic

__all__ = [
    "CASES_FILE",
    "CSV_COLUMNS",
    "CSV_FILE",
    "RESULTS_FILE",
    "SETTINGS_FILE",
    "ResultWriter",
    "StoredResults",
    "read_results",
    "write_csv",
    "jsonable",
    "write_text_atomic",
]

RESULTS_FILE = "results.jsonl"
CSV_FILE = "results.csv"
CASES_FILE = "cases.json"
SETTINGS_FILE = "settings.json"
LOCK_FILE = ".sweep.lock"

#: Columns of ``results.csv``: every scalar field of a record (the plan stays in the JSONL).
CSV_COLUMNS = (
    "key",
    "model",
    "cluster",
    "workload",
    "kind",
    "objective_name",
    "params_b",
    "status",
    "objective",
    "bound",
    "gap",
    "solve_time_s",
    "wall_s",
    "tokens_per_s",
    "num_gpus",
    "cost_per_hour",
    "cost_per_mtoken",
    "mfu",
    "step_time_s",
    "ttft_ms",
    "tpot_ms",
    "time_limit_s",
    "seed",
    "attempts",
    "worker",
    "finished_at",
    "message",
)


@dataclass(frozen=True)
class StoredResults:
    """What :func:`read_results` found."""

    records: list[dict[str, Any]]  #: one per key, first occurrence, in file order
    torn_bytes: int  #: length of a torn last line (0 if the file ends with a newline)
    duplicates: int  #: later lines repeating a key already seen (ignored)
    good_length: int  #: bytes up to and including the last complete line

    @property
    def keys(self) -> set[str]:
        return {r["key"] for r in self.records}


def jsonable(value: Any) -> Any:
    """``value`` as strict-JSON types: non-finite floats become None, numpy scalars numbers."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return jsonable(item())
    raise TypeError(f"cannot store {type(value).__name__} in a sweep record")


def read_results(path: Path) -> StoredResults:
    """Read ``results.jsonl``, tolerating a torn last line; a missing file is empty.

    A complete line that is not a JSON object with a ``key`` means the file was edited or
    damaged: that raises :class:`SpecError` naming the line, rather than silently dropping it.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            raise SpecError(f"{path}: not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        return StoredResults([], 0, 0, 0)
    good = data.rfind(b"\n") + 1  # a record's newline is written last: after it, a torn line
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for n, line in enumerate(data[:good].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"{path}: line {n} is not a JSON record ({e})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
            raise SpecError(f"{path}: line {n} is not a sweep record (no 'key')")
        if rec["key"] in seen:
            duplicates += 1
            continue
        seen.add(rec["key"])
        records.append(rec)
    return StoredResults(records, len(data) - good, duplicates, good)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ResultWriter:
    """Appends records to ``<out>/results.jsonl`` durably; the only writer of that file.

    Opening it takes an exclusive lock on the directory (a second sweep on the same directory
    raises :class:`SpecError`) and truncates a torn last line left by a killed run.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / RESULTS_FILE
        self._lock_fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - no flock on this platform: no guard
            pass
        except OSError:
            os.close(self._lock_fd)
            raise SpecError(f"{out}: another sweep is writing to this directory") from None
        try:
            stored = read_results(self.path)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.torn_bytes = stored.torn_bytes
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if stored.torn_bytes:
            os.truncate(self.path, stored.good_length)
            os.fsync(self._fd)
        if created:
            _fsync_dir(out)

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and fsync it before returning."""
        line = json.dumps(jsonable(record), allow_nan=False, separators=(",", ":"))
        data = (line + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` (a file the sweep owns) with ``text``, never leaving half a file; a new
    file honours the umask, an existing one keeps its mode (:func:`solver.io.write_text_atomic`)."""
    _write_atomic(path, text, newline="")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def csv_text(records: Iterable[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> str:
    """The records as CSV text (one row each, ``columns`` in order, the plan left out)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for rec in records:
        writer.writerow([_cell(rec.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(out: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``<out>/results.csv`` from ``records``; returns its path."""
    path = out / CSV_FILE
    write_text_atomic(path, csv_text(records))
    return path
