"""A calibration from ``shardwise profile --serving``'s measurements (issue #16 item 6).

:func:`solver.profile.serving.run_serving_profile` measures the serving engine's terms on
one GPU; this module turns its result document into the calibration fields the serving
engine step model (:mod:`solver.costmodel.serving_engine`) reads:

* ``decode_attention_efficiency`` and ``decode_attention_overhead_us`` -- a least-squares
  fit ``t = fixed + KV bytes / B`` over the fastest decode-attention kernel of every
  (batch, context) case (``summary.decode_attn_best``); the efficiency is ``B`` over the
  catalog GPU's datasheet HBM bandwidth, the overhead ``fixed``.  The same fit as
  ``benchmarks/validation/serving/report.py`` (one H100 SXM5: 6.8 us + bytes / 3.16 TB/s).

Everything else the run measured (small-M GEMM weight-stream efficiency by M, eager vs
CUDA-graph step overhead, launch latency, small-token prefill) is kept verbatim under
``measured.serving`` for the record; the catalog and the engine profiles keep their values
for those terms (calibration replaces only the terms it fitted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..catalog import resolve_gpu
from ..errors import SpecError
from ..specs import Calibration
from .calibrate import gpu_for_device

__all__ = [
    "calibration_from_serving",
    "decode_attention_fit",
    "fit_fixed_plus_bytes",
    "is_serving_raw",
]

#: ``format`` of :func:`solver.profile.serving.run_serving_profile`'s result.
_FORMAT_PREFIX = "shardwise-serving-micro/"


def is_serving_raw(doc: Any) -> bool:
    """Whether ``doc`` is a ``profile --serving`` result document."""
    return isinstance(doc, dict) and str(doc.get("format", "")).startswith(_FORMAT_PREFIX)


def fit_fixed_plus_bytes(seconds: Sequence[float], nbytes: Sequence[float]) -> tuple[float, float]:
    """Least squares ``t = fixed + bytes x inv_B``: ``(fixed_s, inv_B)`` (unclamped)."""
    t = np.asarray(seconds, dtype=np.float64)
    x = np.asarray(nbytes, dtype=np.float64)
    (fixed, inv_b), *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), t, rcond=None)
    return float(fixed), float(inv_b)


def decode_attention_fit(best: dict[Any, dict[Any, dict[str, Any]]]) -> tuple[float, float, int]:
    """``(fixed_s, bytes_per_s, cases)`` of ``t = fixed + bytes / B`` over the fastest kernel
    of each (batch, context) case (``summary.decode_attn_best``)."""
    rows = [
        (float(c["s"]), float(c["kv_Bps"]) * float(c["s"]))
        for by_ctx in best.values()
        for c in by_ctx.values()
        if c.get("s") and c.get("kv_Bps")
    ]
    if len(rows) < 2:
        raise SpecError(
            f"profile --serving: decode_attention: need >= 2 measured cases to fit, got {len(rows)}"
        )
    fixed, inv_b = fit_fixed_plus_bytes([r[0] for r in rows], [r[1] for r in rows])
    if not inv_b > 0:
        raise SpecError("profile --serving: decode_attention: the fit has no positive bandwidth")
    return max(0.0, float(fixed)), 1.0 / float(inv_b), len(rows)


def calibration_from_serving(
    raw: dict[str, Any], *, gpu: str | None = None, source: str = ""
) -> Calibration:
    """The calibration of a ``profile --serving`` result document.

    Parameters
    ----------
    raw
        :func:`~solver.profile.serving.run_serving_profile`'s result (or its JSON, read back).
    gpu
        Catalog GPU the efficiency is a fraction of; default the measured device's entry.
    source
        Where the measurements came from (recorded in ``meta``).
    """
    if not is_serving_raw(raw):
        raise SpecError(
            f"--from-json: not a profile --serving result (format {raw.get('format')!r})"
        )
    meta = raw.get("meta") or {}
    name = gpu or gpu_for_device(str(meta.get("gpu", "")))
    if name is None:
        raise SpecError(
            f"--gpu: the measured device {meta.get('gpu')!r} has no catalog entry; name one"
        )
    spec = resolve_gpu(name)
    best = (raw.get("summary") or {}).get("decode_attn_best") or {}
    fixed_s, bps, cases = decode_attention_fit(best)
    eff = bps / (spec.memory_bandwidth_GBps * 1e9)
    if not 0 < eff <= 1.0:
        raise SpecError(
            f"profile --serving: decode attention streams {bps / 1e12:.2f} TB/s, beyond "
            f"{spec.name}'s datasheet {spec.memory_bandwidth_GBps / 1e3:.2f} TB/s: wrong --gpu?"
        )
    return Calibration(
        gpu=spec.name,
        decode_attention_efficiency=round(eff, 4),
        decode_attention_overhead_us=round(fixed_s * 1e6, 2),
        measured={
            "serving": {
                "decode_attention_fit": {"fixed_s": fixed_s, "B_Bps": bps, "cases": cases},
                "summary": raw.get("summary"),
            }
        },
        meta={
            "source": source or "measured by shardwise profile --serving",
            **{k: meta.get(k) for k in ("date_utc", "gpu", "torch", "cuda", "cudnn", "triton")},
        },
    )
