"""shardwise's uncalibrated per-operator serving prices vs NVIDIA's measured engine tables.

NVIDIA's ``aiconfigurator-core`` 0.12.0 package ships, per GPU system x serving engine x
engine version, tables of the serving operators timed on real GPUs by its collector
(``latency`` in milliseconds per call; layout and column meanings:
:mod:`solver.profile.aiconfigurator`).  This benchmark prices every selected row with the
catalog cost model -- NO calibration: the catalog GPU (:func:`solver.catalog.resolve_gpu`) and
the engine's :class:`~solver.costmodel.serving_engine.EngineProfile` as shipped -- and reports
predicted / measured per system, backend, version, operator class and regime.

Operators and how each row is priced (exactly the terms the serving step model composes):

GEMM (``gemm/<backend>/<v>/gemm_perf``)
    ``_engine_op_time(_gemm("x", m, k, n, bytes), gpu, precision)`` -- the smooth roofline
    with the kernel's fixed time at the catalog MAMF x ``GEMM_REALIZATION_FRACTION`` and HBM x
    ``memory_efficiency``; 16-bit rows, and per-tensor ``fp8`` rows where the catalog GPU has
    FP8 tensor cores (H100, H200).
context attention (``attention/.../context_attention_perf``)
    the ``'flash'`` op of :func:`~solver.costmodel.compute.block_forward_ops` for that batch,
    prompt length, heads on one GPU, KV heads and head_dim (TP 1: the table's heads are one
    GPU's), priced by ``_engine_op_time``, plus the engine's
    :func:`~solver.costmodel.serving_engine.prefill_attention_fixed_s` -- the two attention
    terms of :func:`~solver.costmodel.serving_compute.prefill_block_time` (its ``kv_write`` group,
    GEMMs, norms and all-reduces are other rows' business).
generation attention (``attention/.../generation_attention_perf``)
    :func:`~solver.costmodel.serving_engine.decode_attention_time` of the KV bytes
    :func:`~solver.costmodel.serving_compute.decode_block_time` reads for ``batch`` sequences of
    ``step`` cached tokens (``b step 2 n_kv d x kv bytes`` + the new token's K/V), with
    :func:`~solver.costmodel.serving_engine.kv_reads` at the GPU's L2 / HBM ratio.
custom all-reduce (``comm/<backend>/<v>/custom_allreduce_perf``)
    :func:`solver.costmodel.serving_engine.allreduce_time` of ``message_size x 2`` bytes over
    ``num_gpus`` on the node's intra-node link as the catalog clusters define it: the pool of
    the GPU in ``instances/hetero-4096-4type.yaml`` (what ``benchmarks/validate_serving.py``
    ``build_cluster`` builds its nodes from) through :func:`solver.evaluate.links.tp_link`.
    CUDA-graph rows where a table times eager and graph modes (the engines replay decode steps
    as graphs; the same rule as the calibration's ``_graph_rows``).
MoE (``moe/<backend>/<v>/moe_perf``)
    the expert part of the block as ``block_forward_ops`` prices it for a prefill of
    ``num_tokens`` tokens: router GEMM + grouped ``_expert_gemm`` up + activation + down +
    dispatch/combine, with ``f = inter_size / moe_tp_size`` (the block's TP degree is
    ``moe_tp_size``), gated SwiGLU unless the ``kernel_source`` says ``nongated`` (then the
    2-matrix form).  Rows with ``moe_ep_size == 1``; distribution ``balanced`` where the table
    has it, else the mildest power law (lowest alpha: aiconfigurator's own SDK uses alpha 0.6
    for EPLB-balanced context load and 1.01 otherwise, ``sdk/models/helpers.py``), recorded.

Row selection (one global rule per table, recorded in the JSON): 16-bit rows (the first of
the calibration's ``SIXTEEN_BIT`` dtypes present; plus the fp8 groups named above), full
attention (``window_size`` 0), positive latency.  GEMM and attention: where one dtype was
timed with several kernels, the table's majority ``kernel_source`` for that dtype (the
engine's default path; the others are counted as dropped).  MoE: one group per
``kernel_source`` (the tables time different models' shapes with different kernels).
Attention rows whose heads are not a multiple of their KV heads cannot be a GQA block and
are counted as skipped.  Each backend at the newest version (PEP 440 order) that ships the
table, or ``--version``.

Subsample: none unless a selection exceeds ``--max-rows`` (default :data:`MAX_ROWS`); then
the rows, sorted by the table's shape columns, are kept at a fixed stride ``ceil(n / cap)``
(deterministic; recorded per group).

Statistics per (system, backend, version, operator, regime): rows, median of predicted /
measured, its 10th-90th percentile range and the mean |ln(predicted / measured)|.  A ratio
above 1 means shardwise predicts the operator slower than the engine runs it.

Usage::

    .venv-aic/bin/python benchmarks/engine_ops.py                  # all (~30 s on 2 cores)
    .venv-aic/bin/python benchmarks/engine_ops.py --systems h100_sxm --backends vllm --ops gemm
    .venv-aic/bin/python benchmarks/engine_ops.py --backends vllm --version 0.14.0

Writes ``benchmarks/results/engine_ops.json`` (``--out``).  Always exits 0 when the tables
are there: it is a measuring instrument, not a test; without ``aiconfigurator-core`` it says
so in one line and exits 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from solver.catalog import resolve_gpu  # noqa: E402
from solver.costmodel import LinkTier, engine_profiles, quant, serving_engine  # noqa: E402
from solver.costmodel import constants as C  # noqa: E402
from solver.costmodel.compute import _gemm, block_forward_ops  # noqa: E402
from solver.costmodel.engine_profiles import ENGINES  # noqa: E402
from solver.costmodel.serving_compute import (  # noqa: E402
    _engine_op_time,
    _prefill_attention_gpu,
)
from solver.costmodel.serving_engine import EngineProfile  # noqa: E402
from solver.costmodel.stack import Stack  # noqa: E402
from solver.errors import SpecError  # noqa: E402
from solver.profile.aiconfigurator import (  # noqa: E402
    BYTES_16,
    SIXTEEN_BIT,
    find_table,
    system_layout,
)
from solver.specs import GPUSpec, Model  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "engine_ops.json"

#: AIConfigurator system -> catalog GPU.
SYSTEMS = {
    "h100_sxm": "H100-SXM5-80GB",
    "h200_sxm": "H200-SXM-141GB",
    "a100_sxm": "A100-SXM4-80GB",
}
#: AIConfigurator backend -> shardwise engine profile (``engine_profiles.ENGINES``).
BACKENDS = {"trtllm": "trtllm", "vllm": "vllm", "sglang": "sglang"}
#: Operator class -> (table family folder, file stem).
TABLES = {
    "gemm": ("gemm", "gemm_perf"),
    "context_attention": ("attention", "context_attention_perf"),
    "generation_attention": ("attention", "generation_attention_perf"),
    "custom_allreduce": ("comm", "custom_allreduce_perf"),
    "moe": ("moe", "moe_perf"),
}

#: Bytes per element of a 16-bit all-reduce message (``message_size`` counts elements, as
#: :mod:`solver.profile.aiconfigurator` reads it).
ALLREDUCE_ELEMENT_BYTES = BYTES_16
#: Cluster template whose pool for each GPU gives the node's intra-node link
#: (``benchmarks/validate_serving.py`` ``LINK_TEMPLATE``).
LINK_TEMPLATE = "hetero-4096-4type"
#: Default cap on the rows priced per (table, dtype) selection (module docstring: subsample).
MAX_ROWS = 40_000

# Regime edges: reporting bins fixed before looking at the results (not model constants).
#: GEMM / MoE rows: decode-like ``M <= 64`` vs prefill-like ``M >= 1024`` (the brief's split).
SMALL_M = 64
LARGE_M = 1024
#: Attention: short prompts / KV <= 1024 tokens, long >= 4096 (context ``isl``, decode KV
#: length ``step + 1``; the tables step in powers of two).
SHORT_CONTEXT = 1024
LONG_CONTEXT = 4096
#: All-reduce: small messages <= 64 KiB (a decode step's activations); above the engines'
#: custom-kernel ceiling (vLLM ``max_size`` 8 MiB, ``engine_profiles.VLLM_CUSTOM_ALLREDUCE``)
#: the model prices NCCL's ring.
SMALL_MESSAGE = 64 * 1024
CUSTOM_KERNEL_MAX = engine_profiles.VLLM_CUSTOM_ALLREDUCE.max_bytes[-1][1]

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Prices (pure: no aiconfigurator import)
# --------------------------------------------------------------------------------------------
def precision_of(dtype: str) -> str:
    """The cost model's precision for a table dtype (16-bit -> ``bf16``, ``fp8`` -> ``fp8``)."""
    d = dtype.lower()
    if d in SIXTEEN_BIT:
        return "bf16"
    if d == "fp8":
        return "fp8"
    raise ValueError(f"dtype {dtype!r} is not priced by this benchmark")


def gemm_price(m: float, k: float, n: float, gpu: GPUSpec, precision: str) -> float:
    """Seconds of one ``(m x k) @ (k x n)`` GEMM under a serving engine (``_engine_op_time``)."""
    wb = quant.weight_bytes_per_element(precision)
    return _engine_op_time(_gemm("x", m, k, n, wb), gpu, precision)


@functools.cache
def _attention_model(heads: int, kv_heads: int, head_dim: int) -> Model:
    """A one-block model with ``heads`` query and ``kv_heads`` KV heads of ``head_dim``."""
    return Model(
        name=f"attn-{heads}q-{kv_heads}kv-{head_dim}d",
        num_layers=1,
        hidden_size=heads * head_dim,
        ffn_hidden_size=heads * head_dim,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        vocab_size=0,
        mlp="swiglu",
        head_dim=head_dim,
    )


def context_attention_price(
    batch: int,
    isl: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    gpu: GPUSpec,
    engine: EngineProfile,
) -> float:
    """Seconds of one layer's context attention as :func:`prefill_block_time` prices it: the
    fused attention op of ``block_forward_ops`` (TP 1) plus ``prefill_attention_fixed_s``."""
    ops = block_forward_ops(
        _attention_model(heads, kv_heads, head_dim),
        tp=1,
        micro_batch=batch,
        seq=isl,
        sequence_parallel=False,
        precision="bf16",
        stack=Stack(attention="flash", dropout=0.0, kernels="fused"),  # prefill_block_time's
    )
    core = next(o for o in ops if o.name == "attention_core")
    attn_gpu = _prefill_attention_gpu(gpu, engine)  # prefill_block_time's attention GPU
    return _engine_op_time(core, attn_gpu, "bf16") + serving_engine.prefill_attention_fixed_s(
        engine
    )


def decode_kv_bytes(
    batch: float, step: float, kv_heads: float, head_dim: float, kv_bytes: float
) -> float:
    """KV bytes one decode layer reads, as :func:`decode_block_time` counts them: the cache of
    ``step`` tokens per sequence and the new token's K and V."""
    kv_local = kv_heads * head_dim
    return batch * step * 2.0 * kv_local * kv_bytes + batch * kv_local * 2.0 * kv_bytes


def generation_attention_price(
    batch: int,
    step: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    kv_precision: str,
    gpu: GPUSpec,
    engine: EngineProfile,
) -> float:
    """Seconds of one layer's paged decode attention (:func:`decode_attention_time`)."""
    nbytes = decode_kv_bytes(batch, step, kv_heads, head_dim, C.BYTES_PER_ELEMENT[kv_precision])
    hbm = gpu.memory_bandwidth_GBps
    l2 = serving_engine.l2_to_hbm_ratio(gpu.name, hbm)
    reads = serving_engine.kv_reads(engine, float(heads), float(kv_heads), head_dim, l2)
    return serving_engine.decode_attention_time(
        engine,
        nbytes,
        reads,
        hbm * 1e9,
        gpu=gpu.name,
        kv_precision=kv_precision,
        sequence_kv_heads=float(batch * kv_heads),
    )


def allreduce_price(
    message_size: float, n: int, engine: EngineProfile, link: LinkTier, gpu: str | None = None
) -> float:
    """Seconds of the engine's all-reduce of ``message_size`` 16-bit elements over ``n`` GPUs
    (``gpu``: the catalog name, for the kernel's latency measured on it)."""
    return serving_engine.allreduce_time(
        engine, message_size * ALLREDUCE_ELEMENT_BYTES, n, link, gpu
    )


#: The expert part of a MoE block's forward groups (``block_forward_ops``).
MOE_OPS = frozenset({"router", "moe_up", "activation", "moe_down", "dispatch_combine"})


@functools.cache
def _moe_model(hidden: int, inter: int, topk: int, experts: int, gated: bool) -> Model:
    """A one-block MoE model (its attention shape is irrelevant: only expert groups are
    priced)."""
    return Model(
        name=f"moe-{hidden}h-{inter}f-{topk}of{experts}",
        num_layers=1,
        hidden_size=hidden,
        ffn_hidden_size=inter,
        num_attention_heads=1,
        num_kv_heads=1,
        head_dim=128,
        vocab_size=0,
        mlp="swiglu" if gated else "gelu",
        num_experts=experts,
        experts_per_token=topk,
        moe_ffn_hidden_size=inter,
    )


def moe_price(
    tokens: int,
    hidden: int,
    inter: int,
    topk: int,
    experts: int,
    moe_tp: int,
    gated: bool,
    gpu: GPUSpec,
    precision: str,
) -> float:
    """Seconds of the expert part of one MoE layer's prefill of ``tokens`` tokens: router,
    grouped up / down GEMMs, activation and dispatch/combine, as ``block_forward_ops`` builds
    them at TP ``moe_tp`` (``f = inter / moe_tp``), each by ``_engine_op_time``."""
    ops = block_forward_ops(
        _moe_model(hidden, inter, topk, experts, gated),
        tp=moe_tp,
        micro_batch=1,
        seq=tokens,
        sequence_parallel=False,
        precision=precision,
        stack=Stack(attention="flash", dropout=0.0, kernels="fused"),
    )
    return sum(_engine_op_time(o, gpu, precision) for o in ops if o.name in MOE_OPS)


# --------------------------------------------------------------------------------------------
# Rows -> points
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What one table is priced on: the catalog GPU, the engine profile and the TP link."""

    gpu: GPUSpec
    engine: EngineProfile
    link: LinkTier


@dataclass(frozen=True)
class Point:
    """One row: its regime, shardwise's price and the measured time (seconds)."""

    regime: str
    predicted_s: float
    measured_s: float

    @property
    def ratio(self) -> float:
        return self.predicted_s / self.measured_s


def _m_regime(m: float, label: str) -> str:
    if m <= SMALL_M:
        return f"{label}<={SMALL_M}"
    if m >= LARGE_M:
        return f"{label}>={LARGE_M}"
    return f"{SMALL_M}<{label}<{LARGE_M}"


def _context_regime(tokens: float) -> str:
    if tokens <= SHORT_CONTEXT:
        return f"short <={SHORT_CONTEXT}"
    if tokens >= LONG_CONTEXT:
        return f"long >={LONG_CONTEXT}"
    return f"mid {SHORT_CONTEXT}-{LONG_CONTEXT}"


def _message_regime(nbytes: float) -> str:
    if nbytes <= SMALL_MESSAGE:
        return "small <=64KiB"
    if nbytes <= CUSTOM_KERNEL_MAX:
        return "large 64KiB-8MiB"
    return "large >8MiB"


def _gated(row: Row) -> bool:
    """Gated (SwiGLU) unless the row's kernel says ``nongated``."""
    return "nongated" not in str(row.get("kernel_source", "")).lower()


def gemm_point(row: Row, target: Target, precision: str) -> Point:
    m, k, n = float(row["m"]), float(row["k"]), float(row["n"])
    pred = gemm_price(m, k, n, target.gpu, precision)
    return Point(_m_regime(m, "M"), pred, float(row["latency"]) * 1e-3)


def context_attention_point(row: Row, target: Target, precision: str) -> Point:
    isl = int(row["isl"])
    pred = context_attention_price(
        int(row["batch_size"]),
        isl,
        int(row["num_heads"]),
        int(row["num_key_value_heads"]),
        int(row["head_dim"]),
        target.gpu,
        target.engine,
    )
    return Point(_context_regime(isl), pred, float(row["latency"]) * 1e-3)


def generation_attention_point(row: Row, target: Target, precision: str) -> Point:
    step = int(row["step"])
    pred = generation_attention_price(
        int(row["batch_size"]),
        step,
        int(row["num_heads"]),
        int(row["num_key_value_heads"]),
        int(row["head_dim"]),
        precision,
        target.gpu,
        target.engine,
    )
    return Point(_context_regime(step + 1), pred, float(row["latency"]) * 1e-3)


def allreduce_point(row: Row, target: Target, precision: str) -> Point:
    size = float(row["message_size"])
    pred = allreduce_price(size, int(row["num_gpus"]), target.engine, target.link, target.gpu.name)
    return Point(
        _message_regime(size * ALLREDUCE_ELEMENT_BYTES), pred, float(row["latency"]) * 1e-3
    )


def moe_point(row: Row, target: Target, precision: str) -> Point:
    tokens = int(row["num_tokens"])
    pred = moe_price(
        tokens,
        int(row["hidden_size"]),
        int(row["inter_size"]),
        int(row["topk"]),
        int(row["num_experts"]),
        int(row["moe_tp_size"]),
        _gated(row),
        target.gpu,
        precision,
    )
    return Point(_m_regime(tokens, "tokens"), pred, float(row["latency"]) * 1e-3)


POINTS: dict[str, Callable[[Row, Target, str], Point]] = {
    "gemm": gemm_point,
    "context_attention": context_attention_point,
    "generation_attention": generation_attention_point,
    "custom_allreduce": allreduce_point,
    "moe": moe_point,
}


def compare(op: str, rows: Iterable[Row], target: Target, precision: str) -> list[Point]:
    """Price every row of operator class ``op`` (a key of :data:`POINTS`) on ``target``."""
    price = POINTS[op]
    return [price(r, target, precision) for r in rows]


def summarize(points: Sequence[Point]) -> dict[str, float | int]:
    """Rows, median predicted / measured, its 10th and 90th percentiles, mean |ln ratio|."""
    if not points:
        return {"n": 0}
    r = np.array([p.ratio for p in points], dtype=float)
    lr = np.log(r)
    return {
        "n": len(points),
        "median_ratio": float(np.median(r)),
        "p10_ratio": float(np.percentile(r, 10)),
        "p90_ratio": float(np.percentile(r, 90)),
        "mean_abs_log_ratio": float(np.mean(np.abs(lr))),
    }


def by_regime(points: Sequence[Point]) -> dict[str, dict[str, float | int]]:
    """:func:`summarize` over all points (``"all"``) and per regime (sorted by name)."""
    out = {"all": summarize(points)}
    for reg in sorted({p.regime for p in points}):
        out[reg] = summarize([p for p in points if p.regime == reg])
    return out


# --------------------------------------------------------------------------------------------
# Row selection (module docstring: one global rule per table)
# --------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """The rows of one (table, dtype) group and how they were chosen."""

    dtype: str
    precision: str
    rows: list[Row]
    rule: dict[str, Any] = field(default_factory=dict)


def _first_sixteen_bit(rows: list[Row], column: str) -> str | None:
    present = {str(r.get(column, "")).lower() for r in rows}
    return next((d for d in SIXTEEN_BIT if d in present), None)


def _majority_kernel(rows: list[Row]) -> tuple[list[Row], dict[str, Any]]:
    counts = Counter(str(r.get("kernel_source", "")) for r in rows)
    if len(counts) <= 1:
        return rows, {"kernel_source": next(iter(counts), "")}
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return [r for r in rows if str(r.get("kernel_source", "")) == top], {
        "kernel_source": top,
        "other_kernels_dropped": {k: v for k, v in counts.items() if k != top},
    }


def _full_attention(r: Row) -> bool:
    return int(r.get("window_size", 0) or 0) == 0


def _positive(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if float(r["latency"]) > 0]


def _dtype_rows(rows: list[Row], column: str, dtype: str) -> list[Row]:
    return [r for r in rows if str(r.get(column, "")).lower() == dtype]


def _dtypes(rows: list[Row], column: str, fp8: bool) -> list[str]:
    """The table's first 16-bit dtype, then ``fp8`` where the GPU has FP8 tensor cores."""
    first = _first_sixteen_bit(rows, column)
    return ([first] if first else []) + (["fp8"] if fp8 else [])


def select_gemm(rows: list[Row], fp8: bool) -> list[Selection]:
    """16-bit rows (and per-tensor fp8 rows if the GPU has FP8), majority kernel each."""
    out = []
    for dt in _dtypes(rows, "gemm_dtype", fp8):
        sel = _positive(_dtype_rows(rows, "gemm_dtype", dt))
        if sel:
            sel, rule = _majority_kernel(sel)
            out.append(Selection(dt, precision_of(dt), sel, {"gemm_dtype": dt, **rule}))
    return out


def select_context_attention(rows: list[Row]) -> list[Selection]:
    """16-bit attention and KV cache, full attention, majority kernel."""
    dt = _first_sixteen_bit(rows, "attn_dtype")
    if dt is None:
        return []
    sel = [
        r
        for r in _dtype_rows(rows, "attn_dtype", dt)
        if str(r.get("kv_cache_dtype", dt)).lower() in SIXTEEN_BIT and _full_attention(r)
    ]
    sel = _positive(sel)
    if not sel:
        return []
    sel, rule = _majority_kernel(sel)
    return [Selection(dt, "bf16", sel, {"attn_dtype": dt, "kv_cache_dtype": dt, **rule})]


def select_generation_attention(rows: list[Row], fp8: bool) -> list[Selection]:
    """16-bit attention; a 16-bit-KV group and, if the GPU has FP8, an fp8-KV group."""
    dt = _first_sixteen_bit(rows, "attn_dtype")
    if dt is None:
        return []
    base = [r for r in _dtype_rows(rows, "attn_dtype", dt) if _full_attention(r)]
    if not base:
        return []
    out = []
    kv16 = _first_sixteen_bit(base, "kv_cache_dtype") if "kv_cache_dtype" in base[0] else dt
    for kv, prec in [(kv16, "bf16")] + ([("fp8", "fp8")] if fp8 else []):
        if kv is None:
            continue
        sel = _positive(r for r in base if str(r.get("kv_cache_dtype", dt)).lower() == kv)
        if sel:
            sel, rule = _majority_kernel(sel)
            out.append(
                Selection(f"{kv} KV", prec, sel, {"attn_dtype": dt, "kv_cache_dtype": kv, **rule})
            )
    return out


def select_allreduce(rows: list[Row], gpus_per_node: int) -> list[Selection]:
    """16-bit rows inside one node; the CUDA-graph rows where eager ones are timed too."""
    dt = _first_sixteen_bit(rows, "allreduce_dtype")
    if dt is None:
        return []
    sel = [
        r
        for r in _dtype_rows(rows, "allreduce_dtype", dt)
        if 1 < int(r["num_gpus"]) <= gpus_per_node
        and str(r.get("op_name", "all_reduce")) == "all_reduce"
    ]
    eager = [r for r in sel if "eager" in str(r.get("kernel_source", "")).lower()]
    rule: dict[str, Any] = {"allreduce_dtype": dt}
    if eager and len(eager) < len(sel):
        sel = [r for r in sel if "eager" not in str(r.get("kernel_source", "")).lower()]
        rule["mode"] = "CUDA graph rows (eager rows dropped)"
    sel = _positive(sel)
    rule["kernel_sources"] = dict(Counter(str(r.get("kernel_source", "")) for r in sel))
    return [Selection(dt, "bf16", sel, rule)] if sel else []


def _alpha(distribution: str) -> float:
    try:
        return float(distribution.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return math.inf


def mildest_distribution(distributions: Iterable[str]) -> str | None:
    """``balanced`` if present, else the power law with the lowest alpha."""
    names = sorted(set(distributions))
    if "balanced" in names:
        return "balanced"
    laws = [d for d in names if d.startswith("power_law_") and math.isfinite(_alpha(d))]
    return min(laws, key=_alpha) if laws else None


def select_moe(rows: list[Row], fp8: bool) -> list[Selection]:
    """EP 1, the mildest distribution; 16-bit (and per-tensor fp8 if the GPU has FP8); one
    group per ``kernel_source`` (the tables time different models' shapes with different
    kernels, so no kernel is dropped)."""
    ep1 = [r for r in rows if int(r.get("moe_ep_size", 1)) == 1]
    dist = mildest_distribution(str(r.get("distribution", "")) for r in ep1)
    if dist is None:
        return []
    ep1 = [r for r in ep1 if str(r.get("distribution", "")) == dist]
    out = []
    for dt in _dtypes(ep1, "moe_dtype", fp8):
        sel = _positive(_dtype_rows(ep1, "moe_dtype", dt))
        for kernel in sorted({str(r.get("kernel_source", "")) for r in sel}):
            mine = [r for r in sel if str(r.get("kernel_source", "")) == kernel]
            rule = {
                "moe_dtype": dt,
                "moe_ep_size": 1,
                "distribution": dist,
                "kernel_source": kernel,
                "mlp": "swiglu (gated)" if _gated(mine[0]) else "gelu form (nongated)",
            }
            out.append(Selection(dt, precision_of(dt), mine, rule))
    return out


#: Shape columns each table's subsample is sorted by.
SORT_KEYS = {
    "gemm": ("m", "n", "k"),
    "context_attention": ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"),
    "generation_attention": ("batch_size", "step", "num_heads", "num_key_value_heads", "head_dim"),
    "custom_allreduce": ("num_gpus", "message_size"),
    "moe": ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size"),
}


def subsample(op: str, rows: list[Row], cap: int) -> tuple[list[Row], int]:
    """Every ``stride``-th row by the table's shape columns, ``stride = ceil(n / cap)``
    (1: all rows)."""
    if len(rows) <= cap:
        return rows, 1
    stride = math.ceil(len(rows) / cap)
    keys = SORT_KEYS[op]
    ordered = sorted(rows, key=lambda r: tuple(float(r[k]) for k in keys))
    return ordered[::stride], stride


# --------------------------------------------------------------------------------------------
# The package's tables
# --------------------------------------------------------------------------------------------
def version_key(v: str) -> tuple[int, Any]:
    """PEP 440 order (unparsable versions first)."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def table_file(
    data_dir: Path, op: str, backend: str, version: str | None
) -> tuple[str, Path] | None:
    """``(version, path)`` of ``op``'s table for ``backend``: ``version`` or the newest."""
    family, stem = TABLES[op]
    base = data_dir / family / backend
    if not base.is_dir():
        return None
    found = []
    for d in base.iterdir():
        if not d.is_dir() or (version is not None and d.name != version):
            continue
        p = find_table(d, stem)
        if p is not None:
            found.append((d.name, p))
    if not found:
        return None
    return max(found, key=lambda vp: version_key(vp[0]))


def node_link(gpu: str) -> LinkTier:
    """The intra-node link of ``gpu``'s pool in :data:`LINK_TEMPLATE` (uncalibrated)."""
    import solver
    from solver.evaluate.links import tp_link

    pools = [p for p in solver.load_cluster(LINK_TEMPLATE).pools if p.gpu == gpu]
    if not pools:
        raise SpecError(f"gpu: no pool of {gpu!r} in instances/{LINK_TEMPLATE}.yaml")
    return tp_link(pools[0])


def _selections(op: str, rows: list[Row], gpu: GPUSpec, per_node: int) -> list[Selection]:
    fp8 = gpu.fp8_tflops is not None
    if op == "gemm":
        return select_gemm(rows, fp8)
    if op == "context_attention":
        return select_context_attention(rows)
    if op == "generation_attention":
        return select_generation_attention(rows, fp8)
    if op == "custom_allreduce":
        return select_allreduce(rows, per_node)
    return select_moe(rows, fp8)


def _valid_gqa(op: str, r: Row) -> bool:
    if op not in ("context_attention", "generation_attention"):
        return True
    q, kv = int(r["num_heads"]), int(r["num_key_value_heads"])
    return kv > 0 and q % kv == 0


def run(
    systems_dir: Path,
    systems: Sequence[str],
    backends: Sequence[str],
    ops: Sequence[str],
    version: str | None,
    cap: int,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every (system, backend, op) group: its selection, rule and per-regime statistics."""
    from solver.profile.aiconfigurator import read_table

    groups: list[dict[str, Any]] = []
    missing: list[dict[str, str]] = []
    for system in systems:
        _, data_dir, per_node = system_layout(systems_dir, system)
        gpu = resolve_gpu(SYSTEMS[system])
        link = node_link(gpu.name)
        for backend in backends:
            engine = ENGINES[BACKENDS[backend]]
            target = Target(gpu, engine, link)
            for op in ops:
                found = table_file(data_dir, op, backend, version)
                if found is None:
                    missing.append({"system": system, "backend": backend, "op": op})
                    continue
                ver, path = found
                rows = read_table(path)
                for sel in _selections(op, rows, gpu, per_node):
                    valid = [r for r in sel.rows if _valid_gqa(op, r)]
                    kept, stride = subsample(op, valid, cap)
                    points = compare(op, kept, target, sel.precision)
                    groups.append(
                        {
                            "system": system,
                            "gpu": gpu.name,
                            "backend": backend,
                            "engine_profile": engine.name,
                            "version": ver,
                            "op": op,
                            "dtype": sel.dtype,
                            "kernel": kernel_label(sel.rule),
                            "table": str(path.relative_to(systems_dir)),
                            "rows_in_table": len(rows),
                            "rows_selected": len(sel.rows),
                            "rows_skipped_not_gqa": len(sel.rows) - len(valid),
                            "subsample_stride": stride,
                            "rows_compared": len(points),
                            "selection": sel.rule,
                            "regimes": by_regime(points),
                        }
                    )
    return groups, missing


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def kernel_label(rule: dict[str, Any]) -> str:
    """The kernel a group was timed with: its one ``kernel_source``, or the sources joined."""
    if "kernel_source" in rule:
        return str(rule["kernel_source"])
    return "+".join(sorted(rule.get("kernel_sources", {})))


#: Printed width of the kernel column (the JSON keeps the full name).
KERNEL_WIDTH = 26


def render(groups: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: one line per (system, backend, version, op, dtype, kernel, regime)."""
    head = (
        f"{'system':8} {'backend':7} {'version':10} {'op':20} {'dtype':12} "
        f"{'kernel':{KERNEL_WIDTH}} {'regime':18} {'rows':>6} {'median':>6} {'p10':>6} "
        f"{'p90':>6} {'|ln|':>5}"
    )
    lines = [head, "-" * len(head)]
    for g in groups:
        kernel = g["kernel"][:KERNEL_WIDTH]
        for reg, s in g["regimes"].items():
            if not s["n"]:
                continue
            lines.append(
                f"{g['system']:8} {g['backend']:7} {g['version']:10} {g['op']:20} "
                f"{g['dtype']:12} {kernel:{KERNEL_WIDTH}} {reg:18} {s['n']:>6} "
                f"{s['median_ratio']:>6.2f} {s['p10_ratio']:>6.2f} {s['p90_ratio']:>6.2f} "
                f"{s['mean_abs_log_ratio']:>5.2f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    ap.add_argument("--ops", nargs="+", default=list(TABLES), choices=list(TABLES))
    ap.add_argument("--version", default=None, help="engine version (default: newest per table)")
    ap.add_argument("--max-rows", type=int, default=MAX_ROWS, help="subsample cap per group")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from solver.profile.aiconfigurator import DIST, package_systems_dir, package_version

    try:
        systems_dir = package_systems_dir()
    except SpecError:
        print(
            f"engine_ops: {DIST} is not installed; run with .venv-aic/bin/python (pip install "
            "'shardwise[aiconfigurator]')"
        )
        return 1
    t0 = time.perf_counter()
    try:
        groups, missing = run(
            systems_dir, args.systems, args.backends, args.ops, args.version, args.max_rows
        )
    except SpecError as e:
        print(f"engine_ops: {e}")
        return 1
    runtime = time.perf_counter() - t0
    print(render(groups))
    print(
        f"\nratio = predicted / measured (> 1: shardwise slower than the engine); "
        f"{sum(g['rows_compared'] for g in groups)} rows in {runtime:.1f} s"
    )
    for m in missing:
        print(f"no table: {m['system']} {m['backend']} {m['op']}")
    doc = {
        "benchmark": "engine_ops",
        "description": "uncalibrated shardwise per-operator serving prices vs NVIDIA "
        "AIConfigurator measured engine tables (ratio = predicted / measured)",
        "package": DIST,
        "package_version": package_version(),
        "command": " ".join(
            [
                ".venv-aic/bin/python benchmarks/engine_ops.py",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "calibration": "none (catalog GPUs, engine profiles as shipped)",
        "rules": {
            "version": args.version or "newest version (PEP 440) shipping each table",
            "selection": "16-bit rows (+ per-tensor fp8 GEMM / MoE and fp8-KV decode rows on "
            "GPUs with FP8), full attention (window 0), majority kernel_source per dtype for "
            "GEMM and attention, CUDA-graph all-reduce rows, MoE moe_ep_size 1 with 'balanced' "
            "else the lowest power-law alpha, one MoE group per kernel_source; attention rows "
            "with heads not a multiple of KV heads skipped",
            "subsample": f"none below {args.max_rows} rows per group; above, every "
            "ceil(n / cap)-th row sorted by the table's shape columns",
            "link": f"tp_link of the GPU's pool in instances/{LINK_TEMPLATE}.yaml",
            "regimes": {
                "gemm/moe": f"M (tokens) <= {SMALL_M}, between, >= {LARGE_M}",
                "attention": f"context isl / decode KV length (step + 1): <= {SHORT_CONTEXT} "
                f"short, >= {LONG_CONTEXT} long, mid between",
                "custom_allreduce": f"<= {SMALL_MESSAGE} B small; large up to "
                f"{int(CUSTOM_KERNEL_MAX)} B (custom-kernel range) and above",
            },
        },
        "runtime_s": round(runtime, 1),
        "groups": list(groups),
        "missing_tables": missing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
