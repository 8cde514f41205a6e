"""Loading specs from YAML/JSON by path or by name.

A name such as ``llama3-70b`` resolves to ``models/llama3-70b.yaml``; cluster and workload
names resolve to ``instances/<name>.yaml``.  The search path is, in order: the path as given,
``$SHARDWISE_HOME``, the current directory, and the directory holding this repository's
``models/`` and ``instances/`` (the parent of the installed ``solver`` package in a checkout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import SpecError, format_validation_error
from .specs import Calibration, Cluster, Model, Plan, Workload

__all__ = [
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
    raise SpecError(f"{ref}: no such file, and no {folder}{ref}.yaml (looked in {', '.join(tried)})")


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file into Python objects; syntax errors become :class:`SpecError`."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: JSON syntax error at line {e.lineno} column {e.colno}: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: YAML syntax error{where}: {problem}") from None


def _validate(cls: Any, data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        if isinstance(cls, TypeAdapter):
            return cls.validate_python(data)
        return cls.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source)) from None


def _load(ref: str | os.PathLike[str] | Any, folder: str, cls: Any) -> Any:
    if isinstance(ref, BaseModel):
        return ref
    if isinstance(ref, dict):
        return _validate(cls, ref, f"<{folder[:-1]}>")
    path = find_spec(ref, folder)
    return _validate(cls, read_document(path), str(path))


def load_model(ref: str | os.PathLike[str] | dict[str, Any] | Model) -> Model:
    """Load a :class:`Model` from a path, a name under ``models/``, a dict, or pass one through."""
    m: Model = _load(ref, "models/", Model)
    return m


def load_cluster(ref: str | os.PathLike[str] | dict[str, Any] | Cluster) -> Cluster:
    """Load a :class:`Cluster`; its GPU names are checked against the catalog."""
    from .catalog import resolve_gpu

    c: Cluster = _load(ref, "instances/", Cluster)
    for i, pool in enumerate(c.pools):
        if isinstance(pool.gpu, str):
            try:
                resolve_gpu(pool.gpu)
            except KeyError as e:
                raise SpecError(f"pools[{i}].gpu: {e.args[0]}") from None
    return c


_WORKLOAD = TypeAdapter(Workload)


def load_workload(ref: Any) -> Any:
    """Load a :class:`TrainingWorkload` or :class:`InferenceWorkload` (by its ``kind``)."""
    if isinstance(ref, BaseModel):
        return ref
    if isinstance(ref, dict):
        return _validate(_WORKLOAD, ref, "<workload>")
    path = find_spec(ref, "instances/")
    data = read_document(path)
    if isinstance(data, dict) and data.get("kind") not in ("training", "inference"):
        raise SpecError(f"{path}: kind: must be 'training' or 'inference', got {data.get('kind')!r}")
    return _validate(_WORKLOAD, data, str(path))


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
    if isinstance(data, dict) and "replica_groups" not in data and isinstance(data.get("plan"), dict):
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
