"""The ``decode_attention`` section of :mod:`solver.profile.serving`.

One query token per sequence over a bf16 KV cache (GQA): ``scaled_dot_product_attention``
with ``enable_gqa`` and with each KV head's query heads folded into the query length, per
SDPA backend, ``flash_attn_with_kvcache`` where ``flash_attn`` imports, and an e4m3 cache.
Each row's achieved bandwidth is K and V bytes / time.  Imports only the standard library;
torch is imported inside the functions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from solver.profile.serving_shapes import (
    ATTN_BATCH,
    ATTN_CONTEXT,
    ATTN_MAX_KV_BYTES,
    DATASHEET,
)
from solver.profile.serving_timing import Ctx, copies, randn, rel_err, release, time_calls

if TYPE_CHECKING:
    import torch

__all__ = ["attention_section"]


# ----------------------------------------------------------------------------- attention


def attention_section(ctx: Ctx) -> dict[str, Any]:

    heads, kv, d = (8, 2, 32) if ctx.quick else (64, 8, 128)
    grid = [(b, c) for b in ((1, 2) if ctx.quick else ATTN_BATCH)
            for c in ((64, 256) if ctx.quick else ATTN_CONTEXT)]  # fmt: skip
    libs = _optional_libs()
    rows: list[dict[str, Any]] = []
    for b, c in grid:
        kv_bytes = 2.0 * b * c * kv * d * 2
        if kv_bytes > ATTN_MAX_KV_BYTES:
            rows.append({"batch": b, "context": c, "skipped": f"KV {kv_bytes / 1e9:.1f} GB"})
            continue
        rows += _attention_case(ctx, b, c, heads, kv, d, libs)
        release(ctx)
    ctx.say(f"decode attention: {len(rows)} rows")
    return {"heads": heads, "kv_heads": kv, "head_dim": d, "libraries": libs, "rows": rows}


def _optional_libs() -> dict[str, str | None]:
    """Versions of the paged/decode attention packages that import here (None if absent)."""
    out: dict[str, str | None] = {}
    for mod in ("flash_attn", "flashinfer"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001 -- absent or broken: either way not used
            out[mod] = None
    return out


def _attention_case(
    ctx: Ctx, b: int, c: int, heads: int, kv: int, d: int, libs: dict[str, str | None]
) -> list[dict[str, Any]]:
    """Every kernel variant on one (batch, context); K/V rotated over copies beyond L2."""
    import torch

    kv_bytes = 2.0 * b * c * kv * d * 2
    n_copies = copies(kv_bytes, ctx.quick)
    caches = [
        (randn((b, kv, c, d), ctx, torch.bfloat16), randn((b, kv, c, d), ctx, torch.bfloat16))
        for _ in range(n_copies)
    ]
    q = randn((b, heads, 1, d), ctx, torch.bfloat16)
    base = {"batch": b, "context": c, "kv_bytes": kv_bytes, "kv_dtype": "bf16"}
    ref = _attention_ref(q, *caches[0]) if kv_bytes <= 1e9 else None
    rows = []
    for variant, backend in _attention_variants(ctx):
        fn = _attention_fn(variant, backend, q, heads, kv)
        calls = [functools.partial(fn, kk, vv) for kk, vv in caches]
        row = _attention_row(ctx, base, variant, backend, calls)
        if ref is not None and "s" in row:
            row["rel_err"] = rel_err(fn(*caches[0]).reshape(ref.shape), ref)
        rows.append(row)
    if libs.get("flash_attn") and ctx.cuda:
        rows.append(_flash_attn_row(ctx, base, q, caches))
    rows.append(_fp8_kv_row(ctx, base, q, caches[0]))
    return rows


def _attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of one query token in float32, query heads grouped per KV head."""
    b, heads, _, d = q.shape
    kv = k.shape[1]
    qg = q.float().reshape(b, kv, heads // kv, d)
    p = (qg @ k.float().transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    return (p @ v.float()).reshape(b, heads, 1, d)


def _attention_variants(ctx: Ctx) -> list[tuple[str, str]]:
    backends = ("default", "flash", "efficient", "cudnn") if ctx.cuda else ("default",)
    return [(v, bk) for v in ("sdpa_gqa", "sdpa_grouped") for bk in backends]


def _attention_fn(
    variant: str, backend: str, q: torch.Tensor, heads: int, kv: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(K, V) -> out`` for one variant: ``enable_gqa`` over [b, H, 1, d], or the H / KV
    query heads of each KV head folded into the query length ([b, KV, H / KV, d], no mask:
    one decode token attends to the whole cache), the layout decode kernels use."""
    import torch.nn.functional as F

    b, _, _, d = q.shape
    qg = q.reshape(b, kv, heads // kv, d)

    def run(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with _sdpa_backend(backend):
            if variant == "sdpa_gqa":
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return F.scaled_dot_product_attention(qg, k, v)

    return run


def _sdpa_backend(backend: str) -> Any:
    import contextlib

    if backend == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pick = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[backend]
    return sdpa_kernel([pick])


def _attention_row(
    ctx: Ctx,
    base: dict[str, Any],
    variant: str,
    backend: str,
    calls: Sequence[Callable[[], Any]],
) -> dict[str, Any]:
    row = {**base, "kernel": variant, "backend": backend}
    try:
        t = time_calls(ctx, calls, base["kv_bytes"] / DATASHEET["hbm_Bps"] + 5e-6)
    except Exception as e:  # noqa: BLE001 -- backend refuses this layout
        return {**row, "error": repr(e)[:300]}
    return {
        **row,
        "s": t["s"],
        "spread": t["spread"],
        "how": t["how"],
        "kv_Bps": base["kv_bytes"] / t["s"],
        "kv_Bps_vs_datasheet": base["kv_bytes"] / t["s"] / DATASHEET["hbm_Bps"],
    }


def _flash_attn_row(
    ctx: Ctx,
    base: dict[str, Any],
    q: torch.Tensor,
    caches: list[tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, Any]:
    """``flash_attn_with_kvcache`` (layout [b, s, heads, d]) where the package imports."""
    try:
        from flash_attn import flash_attn_with_kvcache

        qs = q.transpose(1, 2).contiguous()
        kvs = [(k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()) for k, v in caches]
        calls = [lambda k=k, v=v: flash_attn_with_kvcache(qs, k, v) for k, v in kvs]
        return _attention_row(ctx, base, calls=calls, variant="flash_attn_kvcache",
                              backend="flash_attn")  # fmt: skip
    except Exception as e:  # noqa: BLE001
        return {**base, "kernel": "flash_attn_kvcache", "error": repr(e)[:300]}


def _fp8_kv_row(
    ctx: Ctx, base: dict[str, Any], q: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    """SDPA over an e4m3 K/V cache: recorded, also when torch has no kernel for it."""
    import torch
    import torch.nn.functional as F

    row = {**base, "kv_dtype": "fp8_e4m3", "kv_bytes": base["kv_bytes"] / 2,
           "kernel": "sdpa_gqa", "backend": "default"}  # fmt: skip
    try:
        k8, v8 = (t.to(torch.float8_e4m3fn) for t in cache)
        q8 = q.to(torch.float8_e4m3fn)
        F.scaled_dot_product_attention(q8, k8, v8, enable_gqa=True)
    except Exception as e:  # noqa: BLE001 -- the expected outcome in torch <= 2.11
        return {**row, "error": repr(e)[:300]}
    return _attention_row(ctx, row, "sdpa_gqa", "default", [
        lambda: F.scaled_dot_product_attention(q8, k8, v8, enable_gqa=True)])  # fmt: skip
