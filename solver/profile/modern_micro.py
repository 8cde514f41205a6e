"""The micro-benchmarks of :mod:`solver.profile.modern` (its section C).

Causal SDPA forward and forward + backward per backend (with the kernels PyTorch's default
choice dispatches to), the choice of the Llama's GQA mode, bf16 GEMMs of a Llama block's
shapes (forward, data gradient, weight gradient), HBM copy bandwidth, and the loop that runs
them as guarded cases of a run.  Imports only the standard library and torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from solver.profile.modern_models import ModelShape, causal_attention
from solver.profile.modern_plan import GiB, _Run
from solver.profile.modern_timing import (
    _backend_of,
    _cleanup,
    _dispatch_ops,
    _med,
    _nan,
    _time_calls,
)

__all__ = ["bench_copy", "bench_gemms", "bench_sdpa", "block_gemms", "choose_gqa_mode"]


def _sdpa_ctx(backend: str) -> contextlib.AbstractContextManager[Any]:
    if backend == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pick = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[backend]
    return sdpa_kernel([pick])


def bench_sdpa(
    batch: int,
    heads: int,
    kv_heads: int,
    seq: int,
    head_dim: int,
    backend: str,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    gqa: str = "enable_gqa",
    profile_ops: bool = False,
) -> dict[str, Any]:
    """Causal SDPA forward and forward + backward (``autograd.grad``) of one configuration."""
    gen = torch.Generator(device="cpu").manual_seed(1)

    def rnd(h: int) -> torch.Tensor:
        t = torch.randn(batch, h, seq, head_dim, generator=gen).to(device=device, dtype=dtype)
        return t.requires_grad_(True)

    q, k, v = rnd(heads), rnd(kv_heads), rnd(kv_heads)
    dout = torch.randn(batch, heads, seq, head_dim, generator=gen).to(device=device, dtype=dtype)
    fwd_full = 4.0 * batch * seq * seq * heads * head_dim
    fwd_causal = fwd_full * (seq + 1) / (2 * seq)
    rec: dict[str, Any] = {
        "batch": batch,
        "heads": heads,
        "kv_heads": kv_heads,
        "seq": seq,
        "head_dim": head_dim,
        "backend": backend,
        "gqa": gqa if kv_heads != heads else "mha",
        "flops_fwd_full": fwd_full,
        "flops_fwd_causal": fwd_causal,
        "flops_fwdbwd_model_full": 3.0 * fwd_full,
        "flops_fwdbwd_model_causal": 3.0 * fwd_causal,
        "flops_fwdbwd_exec_causal": 3.5 * fwd_causal,
    }

    def fwd() -> None:
        with torch.no_grad():
            causal_attention(q, k, v, gqa)

    def fwdbwd() -> None:
        out = causal_attention(q, k, v, gqa)
        torch.autograd.grad(out, (q, k, v), dout)

    with _sdpa_ctx(backend):
        for name, fn in (("fwd", fwd), ("fwdbwd", fwdbwd)):
            try:
                ms = _time_calls(fn, device, warmup, reps)
            except Exception as exc:  # noqa: BLE001 - a backend may refuse the case
                rec[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            rec[f"{name}_ms_median"] = _med(ms)
            rec[f"{name}_ms_min"] = min(ms)
        if profile_ops and "fwdbwd_ms_median" in rec:
            ops = _dispatch_ops(fwdbwd, device)
            rec["ops"] = ops
            rec["dispatched"] = _backend_of(ops)
    f_ms, fb_ms = rec.get("fwd_ms_median"), rec.get("fwdbwd_ms_median")
    if f_ms:
        rec["tflops_fwd_full"] = fwd_full / f_ms / 1e9
        rec["tflops_fwd_causal"] = fwd_causal / f_ms / 1e9
    if fb_ms:
        rec["tflops_fwdbwd_model_full"] = 3.0 * fwd_full / fb_ms / 1e9
        rec["tflops_fwdbwd_model_causal"] = 3.0 * fwd_causal / fb_ms / 1e9
        rec["tflops_fwdbwd_exec_causal"] = 3.5 * fwd_causal / fb_ms / 1e9
    if f_ms and fb_ms:
        rec["bwd_ms_median"] = fb_ms - f_ms
    return rec


def choose_gqa_mode(device: torch.device, dtype: torch.dtype) -> tuple[str, str | None]:
    """``"enable_gqa"`` if the flash backend takes grouped K/V on this build, else ``"repeat"``
    (with the reason), so that the Llama never falls back to the unfused math kernel."""
    q = torch.randn(1, 4, 256, 64, device=device, dtype=dtype)
    kv = torch.randn(1, 2, 256, 64, device=device, dtype=dtype)
    try:
        with _sdpa_ctx("flash"):
            F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    except Exception as exc:  # noqa: BLE001
        return "repeat", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "enable_gqa", None


def block_gemms(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """The (N, K) of a Llama block's GEMMs: ``Y [T, N] = X [T, K] W^T``."""
    h, d = shape.hidden, shape.head_dim
    return {
        "qkv": ((shape.heads + 2 * shape.kv) * d, h),
        "o": (h, shape.heads * d),
        "gate_up": (2 * shape.ffn, h),
        "down": (h, shape.ffn),
    }


def _gemm_passes(
    rec: dict[str, Any],
    x: torch.Tensor,
    w: torch.Tensor,
    dy: torch.Tensor,
    device: torch.device,
    warmup: int,
    reps: int,
    only_fwd: bool = False,
) -> list[dict[str, Any]]:
    """Forward ``F.linear(x, w)``, data gradient ``dy @ w``, weight gradient ``dy^T @ x``."""
    t, k = x.shape
    n = w.shape[0]
    passes: dict[str, tuple[Callable[[], Any], tuple[int, int, int]]] = {
        "fwd": (lambda: F.linear(x, w), (t, n, k)),
        "dgrad": (lambda: dy @ w, (t, k, n)),
        "wgrad": (lambda: dy.t() @ x, (n, k, t)),
    }
    out: list[dict[str, Any]] = []
    for pname, (fn, (m, nn_, kk)) in passes.items():
        if only_fwd and pname != "fwd":
            continue
        ms = _time_calls(fn, device, warmup, reps)
        flops = 2.0 * m * nn_ * kk
        med = _med(ms) or 1.0
        out.append(
            {
                **rec,
                "pass": pname,
                "m": m,
                "n": nn_,
                "k": kk,
                "flops": flops,
                "ms_median": med,
                "tflops": flops / med / 1e9,
                "tflops_best": flops / min(ms) / 1e9,
            }
        )
    return out


def bench_gemms(
    shapes: list[ModelShape],
    tokens: list[int],
    square: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
) -> list[dict[str, Any]]:
    """bf16 GEMMs of each shape's block: forward, data gradient and weight gradient."""
    out: list[dict[str, Any]] = []
    gen = torch.Generator(device="cpu").manual_seed(2)

    def rnd(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen).to(device=device, dtype=dtype)

    sq = _gemm_passes(
        {"model": "square", "gemm": f"{square}^3", "tokens": square},
        rnd(square, square),
        rnd(square, square),
        rnd(square, square),
        device,
        warmup,
        reps,
        only_fwd=True,
    )
    out.extend(sq)
    for shape in shapes:
        for t in tokens:
            for name, (n, k) in block_gemms(shape).items():
                rec: dict[str, Any] = {"model": shape.name, "gemm": name, "tokens": t}
                try:
                    out.extend(
                        _gemm_passes(rec, rnd(t, k), rnd(n, k), rnd(t, n), device, warmup, reps)
                    )
                except Exception as exc:  # noqa: BLE001
                    out.append({**rec, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                    _cleanup(device)
    return out


def bench_copy(nbytes: int, device: torch.device, warmup: int, reps: int) -> dict[str, Any]:
    """``dst.copy_(src)`` of an ``nbytes`` buffer: bandwidth counting read + write."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    ms = _time_calls(lambda: dst.copy_(src), device, warmup, reps)
    best, med = min(ms), _med(ms) or 1.0
    return {
        "bytes": nbytes,
        "ms_median": med,
        "ms_min": best,
        "gbps_read_plus_write_median": 2.0 * nbytes / med / 1e6,
        "gbps_read_plus_write_best": 2.0 * nbytes / best / 1e6,
        "gbps_one_way_median": nbytes / med / 1e6,
    }


def _micro(run: _Run) -> None:
    plan, dev, dtype = run.plan, run.device, run.dtype
    micro: dict[str, Any] = run.results.setdefault("micro", {})
    rec: dict[str, Any] = {}

    def copy() -> None:
        rec.update(bench_copy(plan.copy_bytes, dev, plan.micro_warmup, max(plan.micro_reps, 2)))
        run.log(
            f"copy {plan.copy_bytes / GiB:.3f} GiB: "
            f"{rec['gbps_read_plus_write_median']:.0f} GB/s read+write (median)"
        )

    run.case(rec, "copy", copy)
    micro["copy"] = rec
    run.dump()
    grec: dict[str, Any] = {}

    def gemms() -> None:
        res = bench_gemms(
            list(plan.gemm_shapes),
            list(plan.gemm_tokens),
            plan.gemm_square,
            dev,
            dtype,
            plan.micro_warmup,
            plan.micro_reps,
        )
        micro["gemm"] = res
        for g in res:
            if "tflops" in g:
                run.log(
                    f"gemm {g['model']} {g['gemm']} T={g.get('tokens', '-')} {g['pass']}: "
                    f"{g['ms_median']:.3f} ms {g['tflops']:.0f} TFLOP/s"
                )
            else:
                run.log(f"gemm {g['model']} {g['gemm']} T={g.get('tokens')}: {g.get('error')}")

    if not run.case(grec, "gemms", gemms):
        micro["gemm_error"] = grec
    run.dump()
    sd: list[dict[str, Any]] = micro.setdefault("sdpa", [])
    for heads, kv in plan.sdpa_heads:
        for seq in plan.sdpa_seqs:
            variants = [(b, "enable_gqa") for b in plan.sdpa_backends]
            if kv != heads:
                variants.append(("default", "repeat"))
            for backend, gqa in variants:
                what = f"sdpa H{heads}/kv{kv} s{seq} {backend} {gqa if kv != heads else 'mha'}"
                r: dict[str, Any] = {"heads": heads, "kv_heads": kv, "seq": seq, "backend": backend}

                def body(
                    r: dict[str, Any] = r,
                    what: str = what,
                    heads: int = heads,
                    kv: int = kv,
                    seq: int = seq,
                    backend: str = backend,
                    gqa: str = gqa,
                ) -> None:
                    r.update(
                        bench_sdpa(
                            1,
                            heads,
                            kv,
                            seq,
                            plan.sdpa_head_dim,
                            backend,
                            dev,
                            dtype,
                            plan.micro_warmup,
                            plan.micro_reps,
                            gqa=gqa,
                            profile_ops=backend == "default",
                        )
                    )
                    msg = (
                        f"{what}: fwd {_nan(r.get('fwd_ms_median')):.3f} ms "
                        f"({_nan(r.get('tflops_fwd_causal')):.0f} causal TFLOP/s), fwd+bwd "
                        f"{_nan(r.get('fwdbwd_ms_median')):.3f} ms "
                        f"({_nan(r.get('tflops_fwdbwd_model_causal')):.0f} model-causal, "
                        f"{_nan(r.get('tflops_fwdbwd_exec_causal')):.0f} exec TFLOP/s)"
                    )
                    if "dispatched" in r:
                        msg += f" -> {r['dispatched']}"
                    for key in ("fwd_error", "fwdbwd_error"):
                        if key in r:
                            msg += f" {key}: {r[key][:150]}"
                    run.log(msg)

                run.case(r, what, body)
                sd.append(r)
        run.dump()
