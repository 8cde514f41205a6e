"""The ``ceilings`` and ``gemm`` sections of :mod:`solver.profile.serving`.

``ceilings``: a device-to-device copy, read-only reductions of the same bytes, and a square
bf16 and fp8 matrix product -- the rates the other sections are divided by.  ``gemm``:
``x @ W^T`` at small and moderate token counts on the Llama-3 weight shapes
(:func:`~solver.profile.serving_shapes.gemm_shapes`), bf16 ``torch.mm`` and fp8 e4m3
``torch._scaled_mm`` with per-tensor and per-row scales.  Imports only the standard library;
torch is imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from solver.profile.serving_shapes import DATASHEET, GEMM_M, LayerShape, gemm_shapes
from solver.profile.serving_timing import Ctx, copies, randn, rel_err, release, time_calls

if TYPE_CHECKING:
    import torch

__all__ = ["ceilings_section", "gemm_section"]


# ----------------------------------------------------------------------------- ceilings


def ceilings_section(ctx: Ctx) -> dict[str, Any]:
    """HBM copy bandwidth (read + write) and the large-GEMM rates in bf16 and fp8."""
    import torch

    n = (1 << 20) if ctx.quick else (1 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=ctx.device).random_(0, 255)
    dst = torch.empty_like(src)
    cp = time_calls(ctx, [lambda: dst.copy_(src)], 2 * n / DATASHEET["hbm_Bps"])
    out: dict[str, Any] = {
        "copy_bytes": n,
        "copy_s": cp["s"],
        "copy_read_plus_write_Bps": 2 * n / cp["s"],
        "copy_how": cp["how"],
    }
    # Read-only streams (what a decode GEMM or attention kernel does): reductions of the
    # same bytes viewed as bf16; the faster is the measured read ceiling.
    xb = src.view(torch.bfloat16)
    for name, op in (("sum", lambda: xb.sum(dtype=torch.float32)), ("amax", xb.amax)):
        r = time_calls(ctx, [op], n / DATASHEET["hbm_Bps"])
        out[f"read_{name}_Bps"] = n / r["s"]
    out["read_Bps"] = max(out["read_sum_Bps"], out["read_amax_Bps"])
    m = 256 if ctx.quick else 8192
    a = randn((m, m), ctx, torch.bfloat16)
    w = randn((m, m), ctx, torch.bfloat16)
    flops = 2.0 * m**3
    mm = time_calls(ctx, [lambda: torch.mm(a, w.t())], flops / DATASHEET["bf16_flops"])
    out.update(square_m=m, bf16_square_s=mm["s"], bf16_square_flops=flops / mm["s"])
    try:
        f8 = _fp8_operands(a, w)
        t8 = time_calls(ctx, [lambda: _scaled_mm(f8, "tensorwise")], flops / 1.5e15)
        out.update(fp8_square_s=t8["s"], fp8_square_flops=flops / t8["s"])
    except Exception as e:  # noqa: BLE001 -- no fp8 GEMM on this device
        out["fp8_square_error"] = repr(e)[:300]
    return out


# ----------------------------------------------------------------------------- GEMM sweep


def _mm_t(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.mm(x, w.t())


def _fp8_operands(x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """e4m3 operands and unit scales for ``torch._scaled_mm`` (W column-major via ``.t()``)."""
    import torch

    f8 = torch.float8_e4m3fn
    m, n = x.shape[0], w.shape[0]
    one = torch.ones((), device=x.device, dtype=torch.float32)
    return {
        "x": x.to(f8),
        "w": w if w.dtype == f8 else w.to(f8),
        "one": one,
        "sa": torch.ones(m, 1, device=x.device, dtype=torch.float32),
        "sb": torch.ones(1, n, device=x.device, dtype=torch.float32),
    }


def _scaled_mm(f: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
    import torch

    sa, sb = (f["one"], f["one"]) if mode == "tensorwise" else (f["sa"], f["sb"])
    out: torch.Tensor = torch._scaled_mm(
        f["x"], f["w"].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16
    )
    return out


def gemm_section(ctx: Ctx) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ms = (1, 4, 16) if ctx.quick else GEMM_M
    for layer, name, n, k in gemm_shapes(ctx.quick):
        if ctx.late():
            rows.append({"model": layer.name, "tp": layer.tp, "gemm": name, "n": n, "k": k,
                         "skipped": "budget"})  # fmt: skip
            continue
        rows += _gemm_shape(ctx, layer, name, n, k, ms)
        release(ctx)
        ctx.say(f"gemm {layer.name}/tp{layer.tp}/{name}: {_gemm_brief(rows[-3 * len(ms) :])}")
    ctx.say(f"gemm: {len(rows)} rows")
    return rows


def _gemm_brief(rows: list[dict[str, Any]]) -> str:
    """Weight-stream TB/s of the bf16 rows at a few M (for the log)."""
    return " ".join(
        f"M{r['m']}:{r['weight_Bps'] / 1e12:.2f}TB/s"
        for r in rows
        if r.get("dtype") == "bf16" and "s" in r and r["m"] in (1, 16, 128, 1024)
    )


def _gemm_shape(
    ctx: Ctx, layer: LayerShape, name: str, n: int, k: int, ms: Sequence[int]
) -> list[dict[str, Any]]:
    """All M and dtypes of one weight shape (the weights rotate over copies beyond L2)."""
    import torch

    w_bf16 = [randn((n, k), ctx, torch.bfloat16, 0.02) for _ in range(copies(2 * n * k, ctx.quick))]
    try:
        w_fp8: list[torch.Tensor] | None = [
            randn((n, k), ctx, torch.bfloat16, 0.02).to(torch.float8_e4m3fn)
            for _ in range(copies(n * k, ctx.quick))
        ]
    except Exception:  # noqa: BLE001 -- no fp8 dtype here: the fp8 rows say so
        w_fp8 = None
    rows = [_gemm_check(ctx, layer, name, n, k, w_bf16[0])]
    for m in ms:
        x = randn((m, k), ctx, torch.bfloat16)
        base = {"model": layer.name, "tp": layer.tp, "gemm": name, "m": m, "n": n, "k": k}
        flops = 2.0 * m * n * k
        calls = [functools.partial(_mm_t, x, w) for w in w_bf16]
        rows.append(_gemm_row(ctx, base, "bf16", calls, flops, 2, m, n, k))
        for mode in ("tensorwise", "rowwise"):
            rows.append(_fp8_row(ctx, base, mode, x, w_fp8, flops, m, n, k))
    return rows


def _gemm_check(
    ctx: Ctx, layer: LayerShape, name: str, n: int, k: int, w: torch.Tensor
) -> dict[str, Any]:
    """Relative error of bf16 and fp8 (both scale modes) against a float64 product, M = 16."""
    import torch

    x = randn((16, k), ctx, torch.bfloat16)
    ref = x.double() @ w.double().t()
    row: dict[str, Any] = {"model": layer.name, "tp": layer.tp, "gemm": name, "m": 16,
                           "n": n, "k": k, "dtype": "check",
                           "bf16_rel_err": rel_err(torch.mm(x, w.t()), ref)}  # fmt: skip
    for mode in ("tensorwise", "rowwise"):
        try:
            row[f"fp8_{mode}_rel_err"] = rel_err(_scaled_mm(_fp8_operands(x, w), mode), ref)
        except Exception as e:  # noqa: BLE001
            row[f"fp8_{mode}_rel_err"] = repr(e)[:200]
    return row


def _fp8_row(
    ctx: Ctx,
    base: dict[str, Any],
    mode: str,
    x: torch.Tensor,
    w_fp8: list[torch.Tensor] | None,
    flops: float,
    m: int,
    n: int,
    k: int,
) -> dict[str, Any]:
    """One fp8 row: e4m3 activation and weights, unit scales per tensor or per row."""
    try:
        if w_fp8 is None:
            raise RuntimeError("torch.float8_e4m3fn tensors cannot be made here")
        ops = [_fp8_operands(x, w) for w in w_fp8]
        calls = [lambda f=f: _scaled_mm(f, mode) for f in ops]
        return _gemm_row(ctx, base, f"fp8_{mode}", calls, flops, 1, m, n, k)
    except Exception as e:  # noqa: BLE001 -- e.g. no fp8 kernel for this shape or device
        return {**base, "dtype": f"fp8_{mode}", "error": repr(e)[:300]}


def _gemm_row(
    ctx: Ctx,
    base: dict[str, Any],
    dtype: str,
    calls: Sequence[Callable[[], Any]],
    flops: float,
    wbytes_per: int,
    m: int,
    n: int,
    k: int,
) -> dict[str, Any]:
    wbytes = float(wbytes_per * n * k)
    peak = DATASHEET["fp8_flops" if wbytes_per == 1 else "bf16_flops"]
    est = max(wbytes / DATASHEET["hbm_Bps"], flops / (0.8 * peak)) + 3e-6
    try:
        t = time_calls(ctx, calls, est)
    except Exception as e:  # noqa: BLE001
        return {**base, "dtype": dtype, "error": repr(e)[:300]}
    s = t["s"]
    io_bytes = wbytes + wbytes_per * m * k + 2.0 * m * n
    return {
        **base,
        "dtype": dtype,
        "s": s,
        "spread": t["spread"],
        "how": t["how"],
        "flops": flops / s,
        "weight_bytes": wbytes,
        "weight_Bps": wbytes / s,
        "io_Bps": io_bytes / s,
        "weight_Bps_vs_datasheet": wbytes / s / DATASHEET["hbm_Bps"],
        "flops_vs_datasheet": flops / s / peak,
    }
