"""The GPU catalog: datasheet figures as data (``gpus.yaml``), each with its source."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path

import yaml

from ..specs import GPUSpec, Pool

__all__ = ["catalog", "gpu_names", "gpu_of", "resolve_gpu"]

_CATALOG = Path(__file__).with_name("gpus.yaml")


@cache
def catalog() -> dict[str, GPUSpec]:
    """All catalog GPUs by name (aliases included)."""
    raw = yaml.safe_load(_CATALOG.read_text())
    out: dict[str, GPUSpec] = {}
    seen: dict[str, str] = {}  # lower-cased lookup name -> entry name, to catch clashes
    for entry in raw["gpus"]:
        entry = dict(entry)
        aliases: list[str] = list(entry.pop("aliases", None) or [])
        spec = GPUSpec.model_validate(entry)
        for key in [spec.name, *aliases]:
            if seen.get(key.lower(), spec.name) != spec.name:
                raise ValueError(
                    f"gpus.yaml: name or alias {key!r} of {spec.name} clashes with "
                    f"{seen[key.lower()]} (lookup is case-insensitive)"
                )
            seen[key.lower()] = spec.name
            out[key] = spec
    return out


def gpu_names() -> list[str]:
    """Catalog names (without aliases), in file order."""
    names: list[str] = []
    for spec in catalog().values():
        if spec.name not in names:
            names.append(spec.name)
    return names


def resolve_gpu(name: str) -> GPUSpec:
    """Look a GPU up by catalog name or alias (case-insensitive); KeyError names the choices."""
    cat = catalog()
    if name in cat:
        return cat[name]
    low = {k.lower(): v for k, v in cat.items()}
    if name.lower() in low:
        return low[name.lower()]
    names = gpu_names()
    close = difflib.get_close_matches(name.lower(), list(low), n=1, cutoff=0.6)
    hint = f" (did you mean {low[close[0]].name!r}?)" if close else ""
    raise KeyError(f"unknown GPU {name!r}{hint}; catalog has: {', '.join(names)}")


def gpu_of(pool: Pool) -> GPUSpec:
    """The GPU spec of a pool (catalog entry or inline spec)."""
    return pool.gpu if isinstance(pool.gpu, GPUSpec) else resolve_gpu(pool.gpu)
