"""Sweep cases: one (model, cluster, workload) each, from lists (cartesian) or a case file.

A case names its three inputs by reference -- a name (``llama3-70b``), a path, or an inline spec
(a mapping, or a spec object such as a generated family model) -- and has a stable *key*
``model|cluster|workload`` that identifies it in ``results.jsonl`` (resume skips the keys found
there).  The key uses the reference as written (a name or a path) or, for an inline spec, its
``name`` (models, clusters) or a short content hash (workloads, which have no name).

A case file is a YAML or JSON list of ``{model, cluster, workload}`` mappings; each value is a
name, a path (relative paths are read relative to the case file) or an inline spec.
``cases.json``, which :func:`solver.sweep.sweep` writes into its output directory, is such a
file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..io import load_cluster, load_model, load_workload, read_document
from ..specs import Cluster, InferenceWorkload, Model, TrainingWorkload

__all__ = [
    "Case",
    "ResolvedCase",
    "cartesian",
    "case_to_dict",
    "cases_from_file",
    "check_unique",
    "resolve_cases",
    "split_list",
]

Workload = TrainingWorkload | InferenceWorkload
#: A reference to a spec: a name, a path, an inline mapping, or the spec object itself.
ModelRef = str | dict[str, Any] | Model
ClusterRef = str | dict[str, Any] | Cluster
WorkloadRef = str | dict[str, Any] | Workload

_FIELDS = ("model", "cluster", "workload")


def _workload_hash(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "workload-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _ref_label(ref: Any, field: str) -> str:
    """The part of a case key that names one input."""
    if isinstance(ref, str | os.PathLike):
        return os.fspath(ref)
    if isinstance(ref, Model | Cluster):
        return ref.name
    if isinstance(ref, TrainingWorkload | InferenceWorkload):
        return _workload_hash(ref.model_dump(mode="json"))
    if isinstance(ref, dict):
        if field == "workload":
            return _workload_hash(ref)
        name = ref.get("name")
        if isinstance(name, str) and name:
            return name
        raise SpecError(f"{field}: an inline {field} spec needs a 'name'")
    raise SpecError(f"{field}: expected a name, a path or a spec, got {type(ref).__name__}")


@dataclass(frozen=True)
class Case:
    """One sweep case: references to a model, a cluster and a workload.

    Parameters
    ----------
    model, cluster, workload
        Each a name (resolved under ``models/`` or ``instances/``), a path, an inline mapping or
        a spec object.
    """

    model: ModelRef
    cluster: ClusterRef
    workload: WorkloadRef

    @property
    def labels(self) -> tuple[str, str, str]:
        """How the key names the model, the cluster and the workload."""
        m, c, w = (_ref_label(getattr(self, f), f) for f in _FIELDS)
        return m, c, w

    @property
    def key(self) -> str:
        """``model|cluster|workload``: the case's identity in ``results.jsonl``."""
        return "|".join(self.labels)


@dataclass(frozen=True)
class ResolvedCase:
    """A case with its specs loaded and validated: what an executor ships to a worker."""

    key: str
    model: Model
    cluster: Cluster
    workload: Workload
    workload_label: str


def case_to_dict(case: Case) -> dict[str, Any]:
    """The case as a case-file entry (spec objects become inline mappings)."""
    out: dict[str, Any] = {}
    for f in _FIELDS:
        ref = getattr(case, f)
        if isinstance(ref, Model | Cluster | TrainingWorkload | InferenceWorkload):
            out[f] = ref.model_dump(mode="json", exclude_none=True)
        elif isinstance(ref, os.PathLike):
            out[f] = os.fspath(ref)
        else:
            out[f] = ref
    return out


def split_list(text: str | None) -> list[str]:
    """``'a, b,c'`` -> ``['a', 'b', 'c']`` (empty items dropped)."""
    if not text:
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def cartesian(
    models: Sequence[ModelRef], clusters: Sequence[ClusterRef], workloads: Sequence[WorkloadRef]
) -> list[Case]:
    """Every (model, cluster, workload) combination, models varying slowest."""
    for label, items in (
        ("--models", models),
        ("--clusters", clusters),
        ("--workloads", workloads),
    ):
        if not items:
            raise SpecError(f"{label}: give at least one (comma-separated names or paths)")
        seen: set[str] = set()
        for ref in items:
            name = _ref_label(ref, label[2:-1])
            if name in seen:
                raise SpecError(f"{label}: {name!r} is listed twice")
            seen.add(name)
    return [Case(m, c, w) for m, c, w in itertools.product(models, clusters, workloads)]


def check_unique(cases: Iterable[Case], source: str = "cases") -> list[Case]:
    """The cases as a list; two cases with one key are an error naming both."""
    out: list[Case] = []
    first: dict[str, int] = {}
    for i, case in enumerate(cases):
        key = case.key
        if key in first:
            raise SpecError(f"{source}[{i}]: duplicate of {source}[{first[key]}] (case {key})")
        first[key] = i
        out.append(case)
    return out


def _file_ref(value: Any, base: Path | None, where: str) -> Any:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a name, a path or an inline spec, got {value!r}")
    path = Path(value)
    if base is not None and not path.is_absolute() and (base / path).is_file():
        return str(base / path)
    return value


def cases_from_file(path: Path, *, relative_to_file: bool = True) -> list[Case]:
    """Read a case file: a YAML/JSON list of ``{model, cluster, workload}`` mappings.

    Relative paths in it are read relative to the file (default); ``relative_to_file=False``
    keeps them as written, as for a sweep's own ``cases.json``, which records the references
    as they were given (so that resuming reproduces the same case keys).
    """
    data = read_document(path)
    if not isinstance(data, list) or not data:
        raise SpecError(f"{path}: expected a non-empty list of {{model, cluster, workload}}")
    cases: list[Case] = []
    for i, entry in enumerate(data):
        where = f"{path}: [{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a mapping with model, cluster, workload")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise SpecError(
                f"{where}.{unknown[0]}: unknown field (expected model, cluster, workload)"
            )
        for f in _FIELDS:
            if f not in entry:
                raise SpecError(f"{where}.{f}: required field is missing")
        base = path.parent if relative_to_file else None
        refs = [_file_ref(entry[f], base, f"{where}.{f}") for f in _FIELDS]
        cases.append(Case(refs[0], refs[1], refs[2]))
    return check_unique(cases, source=str(path))


def resolve_cases(cases: Sequence[Case]) -> list[ResolvedCase | tuple[Case, str]]:
    """Load every case's specs, each distinct reference once.

    Returns, per case, a :class:`ResolvedCase`, or ``(case, message)`` when a spec cannot be
    loaded (the sweep records such a case as ``ERROR`` and goes on).
    """
    cache: dict[tuple[str, str], Any] = {}
    loaders = {"model": load_model, "cluster": load_cluster, "workload": load_workload}

    def load(field: str, ref: Any) -> Any:
        if not isinstance(ref, str | os.PathLike):
            return loaders[field](ref)
        k = (field, os.fspath(ref))
        if k not in cache:
            try:
                cache[k] = loaders[field](ref)
            except (SpecError, OSError) as e:
                cache[k] = SpecError(f"{field}: {e}")
        value = cache[k]
        if isinstance(value, Exception):
            raise value
        return value

    out: list[ResolvedCase | tuple[Case, str]] = []
    for case in cases:
        try:
            m, c, w = (load(f, getattr(case, f)) for f in _FIELDS)
        except (SpecError, OSError) as e:
            out.append((case, str(e)))
            continue
        out.append(ResolvedCase(case.key, m, c, w, _ref_label(case.workload, "workload")))
    return out
