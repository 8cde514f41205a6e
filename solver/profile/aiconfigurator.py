"""Calibration from NVIDIA AIConfigurator's measured kernel tables (``shardwise profile
--from-aiconfigurator SYSTEM BACKEND VERSION``).

The ``aiconfigurator-core`` package (Apache-2.0; the ``shardwise[aiconfigurator]`` extra)
ships per GPU system x engine x engine version tables of kernels timed on real GPUs by its
collector (``ai-dynamo/aiconfigurator``, ``collector/``).  Layout of the installed package
(read at 0.12.0)::

    aiconfigurator_core/systems/<system>.yaml            data_dir, node size, misc.nccl_version
    aiconfigurator_core/systems/data/<system>/
        gemm/<backend>/<version>/gemm_perf.parquet                   m, n, k, gemm_dtype, latency
        attention/<backend>/<version>/context_attention_perf.parquet  batch_size, isl, num_heads,
                                      num_key_value_heads, head_dim, window_size, attn_dtype, latency
        attention/<backend>/<version>/generation_attention_perf.parquet   ... step (= KV length)
        comm/<backend>/<version>/custom_allreduce_perf.parquet    num_gpus, message_size, latency
        comm/nccl/<nccl_version>/nccl_perf.parquet   op_name, nccl_dtype, num_gpus, message_size

``latency`` is milliseconds per call; ``num_heads`` are the heads on one GPU; ``message_size``
counts elements (2 bytes each for the 16-bit dtypes), all as the collector writes them
(``collector/trtllm/collect_attn.py``, ``collector/collect_all_reduce.py`` at commits
d2237d72 and 6afd47fb).  Older releases shipped the same columns as comma-separated
``*_perf.txt`` files (the collector's ``log_perf`` output); both are read (``.txt`` needs no
pandas, which is how the tests' fixture works without the package).

What becomes which calibration field -- each one a global, physically named parameter fitted
over the whole table, never per case:

``gemm_table`` / ``gemm_efficiency``
    every 16-bit GEMM as ``[m, k, n, TFLOP/s]`` (TFLOP/s = 2mnk / latency); the efficiency is
    the fastest one over the catalog's 16-bit peak (the MAMF the table lookup is capped at).
``gemm_realization``
    ``AIC_GEMM_REALIZATION`` = 1: the table is each shape's own time inside the engine (its
    kernels, timed under CUDA graphs), so tile/wave quantisation and launch gaps -- what the
    training-fitted ``GEMM_REALIZATION_FRACTION`` stands for -- are in it already, and
    AIConfigurator composes a step from these per-op times with no further factor
    (``aiconfigurator_core.sdk`` sums the op latencies).  Serving use: a training step's
    overlap losses are not in the table.
``memory_efficiency``
    the HBM streaming rate of weight-bound GEMMs: median of ``k n x 2 B / latency`` over the
    rows with ``m <= WEIGHT_STREAM_MAX_M`` and at least ``WEIGHT_STREAM_MIN_BYTES`` of weights,
    over the catalog HBM bandwidth.
``attention_efficiency`` (prefill, flash)
    the asymptote ``E`` of the cost model's own fused-attention rate
    ``peak x E x s / (s + ATTENTION_HALF_RATE_SEQ)`` on the causal kernel's executed FLOPs
    ``2 b s^2 n d``, least squares on relative residuals over every context row.
``decode_attention_efficiency`` / ``decode_attention_overhead_us``
    ``t = t0 + bytes / (E x HBM)`` with ``bytes = b (step + 1) 2 n_kv d x 2 B`` (the K and V
    read once), fitted over the generation rows; rows faster than the HBM roof (implied
    ``E > 1``; the engine clamps them at its speed-of-light itself) are dropped and counted.
``intra_node_bandwidth_GBps`` / ``intra_node_latency_us``
    NCCL ring all-reduce, the cost model's ``2(n-1) alpha + 2(n-1)/n S / B``
    (:func:`solver.profile.fit.fit_collective`) over every intra-node GPU count and size.
``allreduce_small_*``
    the engine's custom all-reduce (TensorRT-LLM / vLLM / SGLang one-shot kernel): per GPU
    count, the sizes at which it beats NCCL's measured time; there ``t = alpha + (n-1) S / B``
    (each GPU reads the n-1 peers' buffers); ``allreduce_small_max_bytes`` is the smallest of
    the per-count crossover sizes.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..catalog import resolve_gpu
from ..costmodel import constants as C
from ..errors import SpecError
from ..specs import MAX_TFLOPS, MIN_GEMM_RATE_TFLOPS, Calibration, GPUSpec
from .calibrate import gpu_for_device
from .fit import fit_collective, fit_nonneg_relative, fit_throughput

__all__ = [
    "AIC_GEMM_REALIZATION",
    "DIST",
    "EXTRA",
    "PACKAGE",
    "AicTables",
    "calibration_from_aiconfigurator",
    "calibration_from_tables",
    "load_tables",
    "package_systems_dir",
    "package_version",
]

#: Import name, distribution name and shardwise extra of AIConfigurator's core package.
PACKAGE = "aiconfigurator_core"
DIST = "aiconfigurator-core"
EXTRA = "aiconfigurator"

#: 16-bit dtypes as the tables name them (bf16 first: the collector's default).
SIXTEEN_BIT = ("bfloat16", "float16", "half", "fp16", "bf16")
BYTES_16 = 2.0

#: ``gemm_realization`` of a calibration whose ``gemm_table`` comes from the engine's own
#: per-shape kernel times (module docstring).
AIC_GEMM_REALIZATION = 1.0

#: Weight-streaming rows for ``memory_efficiency``: GEMMs with few rows (decode-like) and at
#: least 64 MiB of weights, so that the weight read, not the launch, sets the time.
WEIGHT_STREAM_MAX_M = 16
WEIGHT_STREAM_MIN_BYTES = 64 * 2**20

#: Table families and file stems, as the package lays them out.
_TABLES = {
    "gemm": ("gemm", "gemm_perf"),
    "context_attention": ("attention", "context_attention_perf"),
    "generation_attention": ("attention", "generation_attention_perf"),
    "custom_allreduce": ("comm", "custom_allreduce_perf"),
}
_SUFFIXES = (".parquet", ".txt", ".csv")

Row = dict[str, Any]


@dataclass(frozen=True)
class AicTables:
    """The measured tables of one system x backend x version (rows as dicts)."""

    system: str
    backend: str
    version: str
    gpus_per_node: int
    nccl_version: str | None = None
    tables: dict[str, list[Row]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def device(self) -> str:
        """The CUDA device name the rows were measured on (their ``device`` column)."""
        for rows in self.tables.values():
            for r in rows:
                if r.get("device"):
                    return str(r["device"])
        return ""


# --------------------------------------------------------------------------------------------
# The package and its files
# --------------------------------------------------------------------------------------------
def _missing() -> SpecError:
    return SpecError(
        f"--from-aiconfigurator: the {DIST} package is not installed: "
        f"pip install 'shardwise[{EXTRA}]'"
    )


def package_systems_dir() -> Path:
    """``systems/`` of the installed package (found without importing its native module)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise _missing()
    return Path(locations[0]) / "systems"


def package_version() -> str | None:
    """The installed ``aiconfigurator-core`` version, or None."""
    try:
        return importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_text_table(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [
            {k.strip(): _number(v) for k, v in r.items() if k is not None}
            for r in csv.DictReader(f)
        ]
    return rows


def _number(v: Any) -> Any:
    s = str(v).strip() if v is not None else ""
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return s


def read_table(path: Path) -> list[Row]:
    """Rows of one table file: ``.parquet`` (needs pandas + pyarrow, the package's own
    dependencies) or the collector's comma-separated ``.txt`` / ``.csv``."""
    if path.suffix != ".parquet":
        return _read_text_table(path)
    try:
        import pandas as pd
    except ImportError:
        raise SpecError(
            f"{path}: reading parquet needs pandas and pyarrow: pip install 'shardwise[{EXTRA}]'"
        ) from None
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for an unreadable file
        raise SpecError(f"{path}: cannot read the parquet table ({type(e).__name__})") from None
    return [{str(k): _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers (the rows end up in YAML)."""
    return v.item() if hasattr(v, "item") else v


def find_table(base: Path, stem: str) -> Path | None:
    """The table ``stem`` in folder ``base`` in the first format found (parquet, the older
    ``.txt`` collector output, csv), None when absent."""
    for suffix in _SUFFIXES:
        p = base / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _versions(data_dir: Path, backend: str) -> list[str]:
    """Versions of ``backend`` with at least one table under ``data_dir``."""
    out: set[str] = set()
    for family in {f for f, _ in _TABLES.values()}:
        d = data_dir / family / backend
        if d.is_dir():
            out.update(p.name for p in d.iterdir() if p.is_dir())
    return sorted(out)


def _system_doc(systems: Path, system: str) -> dict[str, Any]:
    path = systems / f"{system}.yaml"
    if not path.is_file():
        names = sorted(
            p.stem for p in systems.glob("*.yaml") if (systems / "data" / p.stem).is_dir()
        )
        raise SpecError(f"SYSTEM: unknown system {system!r}; known: {', '.join(names)}")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: not a system description")
    return doc


def system_layout(systems: Path, system: str) -> tuple[dict[str, Any], Path, int]:
    """``(description, data folder, GPUs per node)`` of an AIConfigurator ``system`` under a
    ``systems/`` folder (SpecError naming the known systems when it is not there)."""
    doc = _system_doc(systems, system)
    data_dir = systems / str(doc.get("data_dir", f"data/{system}"))
    node = doc.get("node") if isinstance(doc.get("node"), dict) else {}
    per_node = int(node.get("num_gpus_per_node", 8)) if node else 8
    return doc, data_dir, per_node


def load_tables(systems: Path, system: str, backend: str, version: str) -> AicTables:
    """Read the tables of ``system`` x ``backend`` x ``version`` under a ``systems/`` folder
    (the package's, or one laid out like it).  SpecError naming what is missing."""
    doc, data_dir, per_node = system_layout(systems, system)
    versions = _versions(data_dir, backend)
    if not versions:
        raise SpecError(f"BACKEND: no {backend!r} tables for {system}")
    if version not in versions:
        raise SpecError(
            f"VERSION: no {backend} {version!r} tables for {system}; available: "
            f"{', '.join(versions)}"
        )
    tables: dict[str, list[Row]] = {}
    files: dict[str, str] = {}
    for key, (family, stem) in _TABLES.items():
        p = find_table(data_dir / family / backend / version, stem)
        if p is not None:
            tables[key] = read_table(p)
            files[key] = str(p.relative_to(systems))
    misc = doc.get("misc") if isinstance(doc.get("misc"), dict) else {}
    nccl_version = str(misc["nccl_version"]) if misc and "nccl_version" in misc else None
    if nccl_version is not None:
        p = find_table(data_dir / "comm" / "nccl" / nccl_version, "nccl_perf")
        if p is not None:
            tables["nccl"] = read_table(p)
            files["nccl"] = str(p.relative_to(systems))
    if not tables:
        raise SpecError(f"VERSION: {system}/{backend}/{version} has no table shardwise reads")
    return AicTables(system, backend, version, per_node, nccl_version, tables, files)


# --------------------------------------------------------------------------------------------
# Conversions (each returns calibration fields and what it measured)
# --------------------------------------------------------------------------------------------
def _sixteen_bit(rows: Iterable[Row], column: str) -> list[Row]:
    """Rows in the first 16-bit dtype present (tables mix int8/fp8/... with bf16)."""
    rows = list(rows)
    for dt in SIXTEEN_BIT:
        sel = [r for r in rows if str(r.get(column, "")).lower() == dt]
        if sel:
            return sel
    return []


def _latency_s(r: Row) -> float:
    return float(r["latency"]) * 1e-3


def gemm_fields(rows: list[Row], gpu: GPUSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """``gemm_table``, ``gemm_efficiency`` and ``memory_efficiency`` from the GEMM rows."""
    sel = [r for r in _sixteen_bit(rows, "gemm_dtype") if float(r["latency"]) > 0]
    if not sel:
        return {}, {"error": "no 16-bit GEMM rows"}
    best: dict[tuple[int, int, int], float] = {}
    for r in sel:  # a shape timed twice (two kernel sources): its faster time
        key = (int(r["m"]), int(r["k"]), int(r["n"]))
        t = _latency_s(r)
        best[key] = min(t, best.get(key, t))
    table = []
    for (m, k, n), t in sorted(best.items()):
        rate = 2.0 * m * k * n / t / 1e12
        table.append((m, k, n, float(min(max(rate, MIN_GEMM_RATE_TFLOPS), MAX_TFLOPS))))
    rates = [row[3] for row in table]
    fields: dict[str, Any] = {
        "gemm_table": tuple(table),
        "gemm_efficiency": min(1.0, max(rates) / gpu.bf16_tflops),
        "gemm_realization": AIC_GEMM_REALIZATION,
    }
    hbm = gpu.memory_bandwidth_GBps * 1e9
    stream = [
        k * n * BYTES_16 / t / hbm
        for (m, k, n), t in best.items()
        if m <= WEIGHT_STREAM_MAX_M and k * n * BYTES_16 >= WEIGHT_STREAM_MIN_BYTES
    ]
    measured: dict[str, Any] = {
        "dtype": str(sel[0]["gemm_dtype"]),
        "shapes": len(table),
        "max_tflops": max(rates),
        "peak_tflops": gpu.bf16_tflops,
    }
    if stream:
        fields["memory_efficiency"] = float(min(1.0, np.median(stream)))
        measured["weight_stream"] = {
            "rows": len(stream),
            "median_hbm_fraction": float(np.median(stream)),
            "min": float(min(stream)),
            "max": float(max(stream)),
        }
    return fields, measured


def context_attention_fields(
    rows: list[Row], gpu: GPUSpec
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``attention_efficiency`` (prefill flash attention) from the context rows."""
    sel = [
        r
        for r in _sixteen_bit(rows, "attn_dtype")
        if int(r.get("window_size", 0) or 0) == 0 and float(r["latency"]) > 0
    ]
    if not sel:
        return {}, {"error": "no 16-bit full-attention context rows"}
    peak = gpu.bf16_tflops * 1e12
    s = np.array([float(r["isl"]) for r in sel])
    flops = np.array(
        [2.0 * r["batch_size"] * float(r["isl"]) ** 2 * r["num_heads"] * r["head_dim"] for r in sel]
    )
    sat = s / (s + C.ATTENTION_HALF_RATE_SEQ)
    t = np.array([_latency_s(r) for r in sel])
    fit = fit_nonneg_relative((flops / (peak * sat))[:, None], t)
    eff = 1.0 / fit.beta[0]
    implied = flops / t / peak / sat
    by_isl = {str(int(v)): float(np.median(implied[s == v])) for v in sorted(set(s.tolist()))}
    measured = {
        "rows": len(sel),
        "efficiency": eff,
        "rms_rel_err": fit.rms_rel_err,
        "max_rel_err": fit.max_rel_err,
        "median_implied_efficiency_by_isl": by_isl,
        "model": "t = 2 b s^2 n d / (peak x E x s / (s + ATTENTION_HALF_RATE_SEQ))",
    }
    return {"attention_efficiency": float(min(1.0, eff))}, measured


def generation_attention_fields(
    rows: list[Row], gpu: GPUSpec
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``decode_attention_efficiency`` / ``_overhead_us`` from the generation rows."""
    sel = [
        r
        for r in _sixteen_bit(rows, "kv_cache_dtype")
        if int(r.get("window_size", 0) or 0) == 0 and float(r["latency"]) > 0
    ]
    if not sel:
        return {}, {"error": "no 16-bit full-attention generation rows"}
    hbm = gpu.memory_bandwidth_GBps * 1e9
    nbytes = np.array(
        [
            r["batch_size"]
            * (float(r["step"]) + 1.0)
            * 2.0
            * r["num_key_value_heads"]
            * r["head_dim"]
            * BYTES_16
            for r in sel
        ]
    )
    t = np.array([_latency_s(r) for r in sel])
    ok = nbytes / t <= hbm
    if ok.sum() < 2:
        return {}, {"error": "fewer than 2 generation rows below the HBM roof"}
    fit = fit_throughput(nbytes[ok].tolist(), t[ok].tolist())
    eff = fit.rate / hbm
    measured = {
        "rows": int(ok.sum()),
        "dropped_above_hbm_roof": int((~ok).sum()),
        "efficiency": eff,
        "overhead_us": fit.overhead_s * 1e6,
        "rms_rel_err": fit.rms_rel_err,
        "max_rel_err": fit.max_rel_err,
        "model": "t = t0 + b (step + 1) 2 n_kv d x 2 B / (E x HBM bandwidth)",
    }
    fields = {
        "decode_attention_efficiency": float(min(1.0, eff)),
        "decode_attention_overhead_us": fit.overhead_s * 1e6,
    }
    return fields, measured


def _graph_rows(rows: list[Row]) -> list[Row]:
    """The CUDA-graph rows where a table times both modes (vLLM's collector logs
    ``vLLM_custom_graph`` and ``vLLM_custom_eager``): engines replay decode steps as graphs."""
    eager = [r for r in rows if "eager" in str(r.get("kernel_source", "")).lower()]
    return [r for r in rows if r not in eager] if len(eager) < len(rows) else rows


def _allreduce_points(
    rows: list[Row], dtype_col: str, max_gpus: int
) -> list[tuple[int, float, float]]:
    """(GPUs, bytes, seconds) of the 16-bit all-reduce rows inside one node; a size timed
    twice keeps its faster time."""
    sel = [
        r
        for r in _graph_rows(_sixteen_bit(rows, dtype_col))
        if r.get("op_name", "all_reduce") == "all_reduce"
        and 1 < int(r["num_gpus"]) <= max_gpus
        and float(r["latency"]) > 0
    ]
    best: dict[tuple[int, float], float] = {}
    for r in sel:
        key = (int(r["num_gpus"]), float(r["message_size"]) * BYTES_16)
        best[key] = min(_latency_s(r), best.get(key, float("inf")))
    return sorted((n, b, t) for (n, b), t in best.items())


def nccl_fields(rows: list[Row], gpus_per_node: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``intra_node_bandwidth_GBps`` / ``intra_node_latency_us``: NCCL ring all-reduce."""
    pts = _allreduce_points(rows, "nccl_dtype", gpus_per_node)
    if len(pts) < 2:
        return {}, {"error": "fewer than 2 intra-node 16-bit NCCL all-reduce rows"}
    try:
        fit = fit_collective(
            "all_reduce", [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        )
    except ValueError as e:
        return {}, {"error": str(e)}
    measured = {**fit.to_dict(), "gpu_counts": sorted({p[0] for p in pts})}
    return {
        "intra_node_bandwidth_GBps": fit.bandwidth_GBps,
        "intra_node_latency_us": fit.latency_us,
    }, measured


def _crossover_bytes(custom: list[tuple[float, float]], nccl: dict[float, float]) -> float | None:
    """Largest size up to which the custom kernel is faster than NCCL at every measured size
    (compared where both tables have the size); None if it never is."""
    last = None
    for nbytes, t in custom:
        ref = nccl.get(nbytes)
        if ref is None:
            continue
        if t >= ref:
            break
        last = nbytes
    return last


def custom_allreduce_fields(
    rows: list[Row], nccl_rows: list[Row], gpus_per_node: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``allreduce_small_*``: the engine's one-shot all-reduce below its NCCL crossover."""
    pts = _allreduce_points(rows, "allreduce_dtype", gpus_per_node)
    ref = _allreduce_points(nccl_rows, "nccl_dtype", gpus_per_node)
    if not pts or not ref:
        return {}, {"error": "custom all-reduce or NCCL rows missing"}
    used: list[tuple[int, float, float]] = []
    cross: dict[str, float] = {}
    for n in sorted({p[0] for p in pts}):
        mine = [(b, t) for g, b, t in pts if g == n]
        theirs = {b: t for g, b, t in ref if g == n}
        top = _crossover_bytes(mine, theirs)
        if top is None:
            continue
        cross[str(n)] = top
        used += [(n, b, t) for b, t in mine if b <= top]
    if len(used) < 2:
        return {}, {"error": "the custom all-reduce never beats NCCL in the tables"}
    x = np.array([[1.0, (n - 1) * b] for n, b, _ in used])
    fit = fit_nonneg_relative(x, np.array([t for *_, t in used]))
    lat_s, inv_bw = fit.beta
    if inv_bw <= 0:
        return {}, {"error": "custom all-reduce times do not grow with the message size"}
    fields = {
        "allreduce_small_latency_us": lat_s * 1e6,
        "allreduce_small_bandwidth_GBps": 1.0 / inv_bw / 1e9,
        "allreduce_small_max_bytes": int(min(cross.values())),
    }
    measured = {
        "crossover_bytes_by_gpus": cross,
        "points": len(used),
        "rms_rel_err": fit.rms_rel_err,
        "max_rel_err": fit.max_rel_err,
        "model": "t = alpha + (n - 1) S / B (one-shot: each GPU reads its n-1 peers' buffers)",
    }
    return fields, measured


# --------------------------------------------------------------------------------------------
# The calibration
# --------------------------------------------------------------------------------------------
def _gpu_spec(tables: AicTables, gpu: str | None) -> GPUSpec:
    name = gpu or gpu_for_device(tables.device)
    if name is None:
        raise SpecError(
            f"--gpu: the tables' device {tables.device!r} is not in the catalog; name the "
            "catalog GPU with --gpu"
        )
    return resolve_gpu(name)


def calibration_from_tables(
    tables: AicTables, *, gpu: str | None = None, source: str = ""
) -> Calibration:
    """A :class:`~solver.specs.Calibration` from AIConfigurator tables (module docstring)."""
    spec = _gpu_spec(tables, gpu)
    fields: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    t = tables.tables
    steps: tuple[tuple[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]], ...] = (
        ("gemm", lambda: gemm_fields(t["gemm"], spec)),
        ("context_attention", lambda: context_attention_fields(t["context_attention"], spec)),
        (
            "generation_attention",
            lambda: generation_attention_fields(t["generation_attention"], spec),
        ),
        ("nccl", lambda: nccl_fields(t["nccl"], tables.gpus_per_node)),
        (
            "custom_allreduce",
            lambda: custom_allreduce_fields(
                t["custom_allreduce"], t.get("nccl", []), tables.gpus_per_node
            ),
        ),
    )
    for key, step in steps:
        if key not in t:
            measured[key] = {"error": "table not shipped for this system/backend/version"}
            continue
        f, m = step()
        fields.update(f)
        measured[key] = m
    if not fields:
        raise SpecError(
            f"{tables.system}/{tables.backend}/{tables.version}: no table gave a calibration "
            "field (see the tables' dtypes)"
        )
    meta: dict[str, Any] = {
        "tool": "shardwise profile --from-aiconfigurator",
        "aiconfigurator": {
            "package": DIST,
            "package_version": package_version(),
            "system": tables.system,
            "backend": tables.backend,
            "version": tables.version,
            "nccl_version": tables.nccl_version,
            "tables": dict(tables.files),
        },
        "device": tables.device,
        "note": "engine kernel tables measured by NVIDIA's collector (CUDA graphs); the "
        "attention efficiency is the prefill (forward) kernel's, serving only",
    }
    if source:
        meta["source"] = source
    return Calibration(gpu=spec.name, measured=measured, meta=meta, **fields)


def calibration_from_aiconfigurator(
    system: str,
    backend: str,
    version: str,
    *,
    gpu: str | None = None,
    systems_dir: Path | None = None,
) -> Calibration:
    """Read the installed package's tables (or ``systems_dir``'s) into a calibration."""
    systems = systems_dir if systems_dir is not None else package_systems_dir()
    if not systems.is_dir():
        raise SpecError(f"--aiconfigurator-systems: {systems} is not a folder")
    tables = load_tables(systems, system, backend, version)
    return calibration_from_tables(tables, gpu=gpu, source=str(systems))
