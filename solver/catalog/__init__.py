"""The GPU catalog: datasheet figures as data (``gpus.yaml``), each with its source."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from ..specs import GPUSpec, Pool

__all__ = ["catalog", "gpu_of", "resolve_gpu"]

_CATALOG = Path(__file__).with_name("gpus.yaml")


@cache
def catalog() -> dict[str, GPUSpec]:
    """All catalog GPUs by name (aliases included)."""
    raw = yaml.safe_load(_CATALOG.read_text())
    out: dict[str, GPUSpec] = {}
    for entry in raw["gpus"]:
        aliases = entry.pop("aliases", [])
        spec = GPUSpec.model_validate(entry)
        out[spec.name] = spec
        for a in aliases:
            out[a] = spec
    return out


def resolve_gpu(name: str) -> GPUSpec:
    """Look a GPU up by catalog name or alias (case-insensitive); KeyError names the choices."""
    cat = catalog()
    if name in cat:
        return cat[name]
    low = {k.lower(): v for k, v in cat.items()}
    if name.lower() in low:
        return low[name.lower()]
    names = sorted({g.name for g in cat.values()})
    raise KeyError(f"unknown GPU {name!r}; catalog has: {', '.join(names)}")


def gpu_of(pool: Pool) -> GPUSpec:
    """The GPU spec of a pool (catalog entry or inline spec)."""
    return pool.gpu if isinstance(pool.gpu, GPUSpec) else resolve_gpu(pool.gpu)
