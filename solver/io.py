"""Loading specs from YAML/JSON by path or by name.

A name such as ``llama3-70b`` resolves to ``models/llama3-70b.yaml``; cluster and workload
names resolve to ``instances/<name>.yaml``.  The search path is, in order: the path as given,
``$SHARDWISE_HOME``, the current directory, and the directory holding this repository's
``models/`` and ``instances/`` (the parent of the installed ``solver`` package in a checkout).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import SpecError, format_validation_error
from .specs import (
    Calibration,
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    TrainingWorkload,
    Workload,
)

__all__ = [
    "check_plan_fits",
    "output_target",
    "write_bytes_atomic",
    "write_text_atomic",
    "find_spec",
    "load_calibration",
    "load_cluster",
    "load_model",
    "load_plan",
    "load_workload",
    "read_document",
    "search_roots",
]

T = TypeVar("T", bound=BaseModel)
_SUFFIXES = (".yaml", ".yml", ".json")


def search_roots() -> list[Path]:
    """Directories searched for ``models/`` and ``instances/``."""
    roots: list[Path] = []
    home = os.environ.get("SHARDWISE_HOME")
    if home:
        roots.append(Path(home))
    roots.append(Path.cwd())
    roots.append(Path(__file__).resolve().parent.parent)
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def find_spec(ref: str | os.PathLike[str], folder: str) -> Path:
    """Resolve a path or a bare name to a file, or raise :class:`SpecError`."""
    p = Path(ref)
    if p.is_file():
        return p
    if p.suffix in _SUFFIXES or os.sep in str(ref):
        raise SpecError(f"{ref}: file not found")
    tried: list[str] = []
    for root in search_roots():
        for suf in _SUFFIXES:
            cand = root / folder / f"{ref}{suf}"
            if cand.is_file():
                return cand
        tried.append(str(root / folder))
    raise SpecError(
        f"{ref}: no such file, and no {folder}{ref}.yaml (looked in {', '.join(tried)})"
    )


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file into Python objects; syntax errors become :class:`SpecError`.

    Duplicate keys are errors in both formats (a silently ignored duplicate is a classic way to
    run the wrong experiment).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    try:
        if path.suffix == ".json":
            return json.loads(text, object_pairs_hook=_json_object)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except json.JSONDecodeError as e:
        raise SpecError(
            f"{path}: JSON syntax error at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except ValueError as e:  # a duplicate JSON key, or a YAML value such as a bad date
        fmt = "JSON" if path.suffix == ".json" else "YAML"
        raise SpecError(f"{path}: {fmt} error: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: YAML syntax error{where}: {problem}") from None


def _validate(cls: Any, data: Any, source: str) -> Any:
    if data is None:
        raise SpecError(f"{source}: the document is empty, expected a mapping of fields")
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        if isinstance(cls, TypeAdapter):
            return cls.validate_python(data)
        return cls.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source)) from None


def _load(ref: str | os.PathLike[str] | Any, folder: str, cls: Any, label: str) -> Any:
    """``ref`` may be a spec object (passed through), a dict (source shown as ``<label>``),
    a path, or a name resolved under ``folder``."""
    if isinstance(ref, BaseModel):
        return ref
    if isinstance(ref, dict):
        return _validate(cls, ref, f"<{label}>")
    path = find_spec(ref, folder)
    return _validate(cls, read_document(path), str(path))


def load_model(ref: str | os.PathLike[str] | dict[str, Any] | Model) -> Model:
    """Load a :class:`Model` from a path, a name under ``models/``, a dict, or pass one through."""
    m: Model = _load(ref, "models/", Model, "model")
    return m


def load_cluster(ref: str | os.PathLike[str] | dict[str, Any] | Cluster) -> Cluster:
    """Load a :class:`Cluster`; its GPU names are checked against the catalog."""
    from .catalog import resolve_gpu

    if isinstance(ref, Cluster):
        return ref
    if isinstance(ref, dict):
        data: Any = ref
        source = "<cluster>"
    else:
        path = find_spec(ref, "instances/")
        data, source = read_document(path), str(path)
    c: Cluster = _validate(Cluster, data, source)
    for i, pool in enumerate(c.pools):
        if isinstance(pool.gpu, str):
            try:
                resolve_gpu(pool.gpu)
            except KeyError as e:
                raise SpecError(f"{source}: pools[{i}].gpu: {e.args[0]}") from None
    return c


_WORKLOAD = TypeAdapter(Workload)


def load_workload(ref: Any) -> TrainingWorkload | InferenceWorkload:
    """Load a :class:`TrainingWorkload` or :class:`InferenceWorkload` (by its ``kind``)."""
    if isinstance(ref, TrainingWorkload | InferenceWorkload):
        return ref
    if isinstance(ref, dict):
        data: Any = ref
        source = "<workload>"
    else:
        path = find_spec(ref, "instances/")
        data, source = read_document(path), str(path)
    if isinstance(data, dict) and data.get("kind") not in ("training", "inference"):
        if "kind" not in data:
            raise SpecError(f"{source}: kind: required field is missing (training or inference)")
        raise SpecError(
            f"{source}: kind: must be 'training' or 'inference', got {data.get('kind')!r}"
        )
    w: TrainingWorkload | InferenceWorkload = _validate(_WORKLOAD, data, source)
    return w


def load_plan(ref: str | os.PathLike[str] | dict[str, Any] | Plan) -> Plan:
    """Load a :class:`Plan` (JSON or YAML).  ``plan --json`` output (with a 'plan' key) works too."""
    if isinstance(ref, Plan):
        return ref
    if isinstance(ref, dict):
        data = ref.get("plan", ref) if "replica_groups" not in ref else ref
        p: Plan = _validate(Plan, data, "<plan>")
        return p
    path = Path(ref)
    if not path.is_file():
        raise SpecError(f"{ref}: file not found")
    data = read_document(path)
    if (
        isinstance(data, dict)
        and "replica_groups" not in data
        and isinstance(data.get("plan"), dict)
    ):
        data = data["plan"]
    p = _validate(Plan, data, str(path))
    return p


def load_calibration(ref: str | os.PathLike[str], relative_to: Path | None = None) -> Calibration:
    """Load a calibration YAML (see ``shardwise profile``)."""
    p = Path(ref)
    if not p.is_file() and relative_to is not None and (relative_to / p).is_file():
        p = relative_to / p
    if not p.is_file():
        p = find_spec(str(ref), "instances/calibration/".rstrip("/") + "/")
    c: Calibration = _validate(Calibration, read_document(p), str(p))
    return c


# --------------------------------------------------------------------------------------------
# Writing files safely
# --------------------------------------------------------------------------------------------
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file that writing ``path`` replaces, or :class:`SpecError` if it may not be written.

    * absent, or a regular file: ``path`` itself;
    * a symbolic link: the file it points to (followed to the end), under the same rules --
      a write goes *through* the link, which stays a link;
    * a directory, a FIFO, a device, a socket, or a link loop: refused, naming ``path``;
    * in a directory that does not exist: refused.
    """
    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise SpecError(f"{p}: directory {parent} does not exist") from None
        return target
    except OSError as e:
        raise SpecError(f"{p}: cannot write ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise SpecError(f"{p}: a symbolic link that never reaches a file (a loop)")
    for test, what in _NOT_REGULAR:
        if test(st.st_mode):
            via = f" (through the link to {target})" if target != p else ""
            raise SpecError(f"{p}: is {what}{via}, not a regular file; refusing to write to it")
    return target


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, write: Callable[[int], None], overwrite: bool) -> None:
    """Write through a temporary file beside the target, then rename it into place.

    The temporary file is created like ``open(path, "w")`` creates a file (mode 0666 less the
    umask), then given the mode of the file it replaces, so a new file honours the umask and
    an existing one keeps its permissions.  ``overwrite=False`` never replaces a file, not even
    one that appeared since the caller checked (the rename is a hard link, which refuses).
    """
    target = output_target(path)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    if mode is not None and not overwrite:
        raise FileExistsError(17, "File exists", str(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise SpecError(f"{path}: cannot write ({e.strerror})") from None
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            write(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the target appeared meanwhile
            except FileExistsError:
                raise FileExistsError(17, "File exists", str(path)) from None
            except OSError:  # a file system without hard links: a plain rename
                if os.path.lexists(target):
                    raise FileExistsError(17, "File exists", str(path)) from None
                os.replace(tmp, target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_bytes_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_text_atomic`)."""
    _write_atomic(Path(path), lambda fd: _write_all(fd, data), overwrite)


def write_text_atomic(
    path: Path, text: str, *, newline: str | None = None, overwrite: bool = True
) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same directory, so an
    interrupted write never leaves half a file.

    Only a regular file (or nothing) is replaced; a symbolic link is written through to the
    file it points to; a directory, FIFO, device or socket is refused with :class:`SpecError`
    (see :func:`output_target`).  An existing file keeps its mode; a new one gets 0666 less
    the umask, as :func:`open` would give it.  ``newline`` as for :func:`open` (the sweep's CSV
    passes ``""``); ``overwrite=False`` raises :class:`FileExistsError` rather than replace a
    file (default True).
    """
    if newline is None and os.linesep != "\n":  # pragma: no cover - not POSIX
        text = text.replace("\n", os.linesep)
    elif newline not in (None, ""):
        text = text.replace("\n", newline)
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


# --------------------------------------------------------------------------------------------
# A plan against the cluster and workload it is meant for
# --------------------------------------------------------------------------------------------
def check_plan_fits(plan: Plan, cluster: Cluster, kind: str, source: str = "plan") -> None:
    """Raise :class:`SpecError` if ``plan`` cannot even be laid on ``cluster``.

    Checks the workload ``kind``, that every stage's pool exists, that each stage has one
    device list per replica and ``tp`` devices in each, and that every device is a
    ``(<pool>-<index>, gpu)`` of that pool.  These are *structural* mismatches (a plan for
    another cluster or workload), named by their field; commands that explain or draw a plan
    need them ruled out, while :func:`solver.evaluate.evaluate` reports them as violations.
    """
    if plan.kind != kind:
        raise SpecError(f"{source}: kind: the plan is for {plan.kind}, the workload is {kind}")
    pools = {p.name: p for p in cluster.pools}
    for g, group in enumerate(plan.replica_groups):
        for s, stage in enumerate(group.stages):
            where = f"{source}: replica_groups[{g}].stages[{s}]"
            pool = pools.get(stage.pool)
            if pool is None:
                raise SpecError(
                    f"{where}.pool: no pool {stage.pool!r} in cluster {cluster.name} "
                    f"(pools: {', '.join(pools)})"
                )
            if len(stage.devices) != group.count:
                raise SpecError(
                    f"{where}.devices: one device list per replica (count={group.count}), "
                    f"got {len(stage.devices)}"
                )
            for r, devices in enumerate(stage.devices):
                if len(devices) != stage.tp:
                    raise SpecError(
                        f"{where}.devices[{r}]: {stage.tp} devices (tp={stage.tp}), "
                        f"got {len(devices)}"
                    )
                for d, (node, gpu) in enumerate(devices):
                    prefix, _, index = node.rpartition("-")
                    ok = (
                        prefix == pool.name
                        and index.isdigit()
                        and int(index) < pool.nodes
                        and gpu < pool.gpus_per_node
                    )
                    if not ok:
                        raise SpecError(
                            f"{where}.devices[{r}][{d}]: no such GPU in pool {pool.name} "
                            f"(nodes {pool.name}-0..{pool.name}-{pool.nodes - 1}, GPUs "
                            f"0..{pool.gpus_per_node - 1}), got [{node!r}, {gpu}]"
                        )
