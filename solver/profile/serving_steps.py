"""The ``step_overhead``, ``launch`` and ``prefill`` sections of :mod:`solver.profile.serving`.

A plain-tensor Llama decoder (:class:`_Decoder`) for one decode step (eager against a CUDA
graph, per layer count and batch) and for a short prefill, and the launch cost of a
one-element kernel (eager, synchronised, inside a graph, a one-node graph).  Imports only the
standard library; torch is imported inside the functions.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from solver.profile.serving_shapes import (
    LLAMA3_8B,
    LLAMA3_70B,
    PREFILL_TOKENS,
    STEP_BATCH,
    STEP_CONTEXT,
    STEP_LAYERS,
    TINY,
    LayerShape,
    tp_shard,
)
from solver.profile.serving_timing import (
    Ctx,
    capture,
    count_kernels,
    eager_and_graph,
    eager_time,
    fmt,
    graph_time,
    randn,
    release,
    timed,
    wall,
)

if TYPE_CHECKING:
    import torch

__all__ = ["launch_section", "prefill_section", "step_section"]


# ----------------------------------------------------------------------------- decoder


class _Decoder:
    """Plain-tensor Llama decoder layers (RMSNorm, fused QKV, rotate-half RoPE, SDPA, SwiGLU).

    ``step`` runs one decode token per sequence at position ``pos`` (a device tensor, so a
    captured graph replays at any position) over a static K/V cache of ``ctx_len`` slots;
    ``prefill`` runs ``T`` tokens of one sequence with causal attention.  The decode step
    attends to all ``ctx_len`` slots: a fixed-cost stand-in for a cache filled to that length.
    """

    def __init__(self, ctx: Ctx, shape: LayerShape, layers: int, max_pos: int) -> None:
        import torch

        self.s, self.ctx = shape, ctx
        g = shape.gemms()
        bf = torch.bfloat16
        self.w = [
            {name: randn(nk, ctx, bf, 0.02) for name, nk in g.items()}
            | {"n1": torch.ones(shape.hidden, device=ctx.device, dtype=bf),
               "n2": torch.ones(shape.hidden, device=ctx.device, dtype=bf)}
            for _ in range(layers)
        ]  # fmt: skip
        d = shape.head_dim
        inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=ctx.device).float() / d))
        ang = torch.outer(torch.arange(max_pos, device=ctx.device).float(), inv)
        ang = torch.cat([ang, ang], -1)
        self.cos, self.sin = ang.cos().to(bf), ang.sin().to(bf)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        import torch

        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        import torch

        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

    def _mlp(self, h: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        gu = self._rms(h, w["n2"]) @ w["gate_up"].t()
        g, u = gu.chunk(2, -1)
        return h + (F.silu(g) * u) @ w["down"].t()

    def _qkv(
        self, x: torch.Tensor, w: dict[str, torch.Tensor], cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[b, s, hidden] -> q [b, H, s, d], k and v [b, KV, s, d], RoPE applied."""
        s, (b, t, _) = self.s, x.shape
        d, hq, hk = s.head_dim, s.q_heads, s.kv_local
        qkv = self._rms(x, w["n1"]) @ w["qkv"].t()
        q, k, v = qkv.split([hq * d, hk * d, hk * d], -1)  # type: ignore[no-untyped-call]
        q = self._rope(q.view(b, t, hq, d).transpose(1, 2), cos, sin)
        k = self._rope(k.view(b, t, hk, d).transpose(1, 2), cos, sin)
        return q, k, v.view(b, t, hk, d).transpose(1, 2)

    def step(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        layers: int,
    ) -> torch.Tensor:
        import torch.nn.functional as F

        s, b = self.s, x.shape[0]
        cos, sin = self.cos.index_select(0, pos), self.sin.index_select(0, pos)
        h = x
        for w, (kc, vc) in zip(self.w[:layers], cache, strict=False):
            q, k, v = self._qkv(h, w, cos, sin)
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            qg = q.reshape(b, s.kv_local, s.q_heads // s.kv_local, s.head_dim)
            o = F.scaled_dot_product_attention(qg, kc, vc)
            h = h + o.reshape(b, 1, s.q_heads * s.head_dim) @ w["o"].t()
            h = self._mlp(h, w)
        return h

    def prefill(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        s, (b, t, _) = self.s, x.shape
        cos, sin = self.cos[:t], self.sin[:t]
        h = x
        for w in self.w:
            q, k, v = self._qkv(h, w, cos, sin)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            h = h + o.transpose(1, 2).reshape(b, t, s.q_heads * s.head_dim) @ w["o"].t()
            h = self._mlp(h, w)
        return h


# ----------------------------------------------------------------------------- step overhead


def step_section(ctx: Ctx) -> list[dict[str, Any]]:
    """Decode step of 4 and 8 Llama-3-8B layers, eager vs CUDA graph, per batch.

    In phases, so that no graph capture or profiler session precedes an eager timing: every
    case eagerly, then every case graphed, then the kernel counts (torch.profiler), then the
    first case eagerly again and a one-element kernel's eager issue time (``*_end`` keys of
    the first row: the host's drift over the section).
    """
    import torch

    shape = TINY if ctx.quick else LLAMA3_8B
    layer_counts = (1, 2) if ctx.quick else STEP_LAYERS
    batches = (1, 2) if ctx.quick else STEP_BATCH
    c_len = 64 if ctx.quick else STEP_CONTEXT
    n_steps = 3 if ctx.quick else 30
    dec = _Decoder(ctx, shape, max(layer_counts), c_len)
    pos = torch.tensor([c_len // 2], device=ctx.device)
    cases: list[tuple[dict[str, Any], Callable[[], Any]]] = []
    for b in batches:
        cache = [
            (randn((b, shape.kv_local, c_len, shape.head_dim), ctx, torch.bfloat16),
             randn((b, shape.kv_local, c_len, shape.head_dim), ctx, torch.bfloat16))
            for _ in range(max(layer_counts))
        ]  # fmt: skip
        x = randn((b, 1, shape.hidden), ctx, torch.bfloat16)
        for n_layers in layer_counts:
            row: dict[str, Any] = {"model": shape.name, "layers": n_layers, "batch": b}
            row["context"] = c_len
            cases.append((row, functools.partial(dec.step, x, pos, cache, n_layers)))
    with torch.inference_mode():
        for row, fn in cases:
            row.update(eager_time(ctx, fn, n_steps))
        for row, fn in cases:
            row.update(graph_time(ctx, fn, n_steps))
            if row["graph_s"] is not None:
                row["eager_minus_graph_s"] = row["eager_s"] - row["graph_s"]
            row["kernels_per_step"] = count_kernels(ctx, fn)
            ctx.say(f"step L{row['layers']} b{row['batch']}: {fmt(row)}")
        first, fn0 = cases[0]
        end = eager_time(ctx, fn0, n_steps)
        first.update(eager_s_end=end["eager_s"], host_issue_s_end=end["host_issue_s"])
        first["tiny_kernel_issue_s_end"] = _tiny_issue(ctx)
    return [row for row, _ in cases]


def _tiny_issue(ctx: Ctx, n: int = 2000) -> float:
    """Host seconds to issue one one-element ``add_`` eagerly, back to back."""
    import torch

    t = torch.zeros(1, device=ctx.device)

    def many() -> None:
        for _ in range(n):
            t.add_(1.0)

    def sync() -> None:
        if ctx.cuda:
            torch.cuda.synchronize()

    many()
    return statistics.median(wall(many, sync) for _ in range(ctx.repeats)) / n


# ----------------------------------------------------------------------------- launch


def launch_section(ctx: Ctx) -> dict[str, Any]:
    """Launch cost of a one-element kernel: eager back-to-back (host issue rate), eager with a
    synchronise each (round trip), inside a 2000-node graph, and a one-node graph's launch."""
    import torch

    n = 50 if ctx.quick else 2000
    t = torch.zeros(1, device=ctx.device)

    def one() -> None:
        t.add_(1.0)

    def many() -> None:
        for _ in range(n):
            one()

    def sync() -> None:
        if ctx.cuda:
            torch.cuda.synchronize()

    many()
    sync()
    out: dict[str, Any] = {"kernels": n}
    out["eager_back_to_back_s"] = statistics.median(
        wall(many, sync) for _ in range(ctx.repeats)) / n  # fmt: skip

    def roundtrips() -> None:
        for _ in range(n // 10):
            one()
            sync()

    out["eager_roundtrip_s"] = statistics.median(
        wall(roundtrips, sync) for _ in range(ctx.repeats)) / (n // 10)  # fmt: skip
    if not ctx.cuda:
        return {**out, "graph": "skipped: no CUDA"}
    g, _ = capture(many)
    out["graph_per_kernel_s"] = statistics.median(
        timed(ctx, g.replay) for _ in range(ctx.repeats)) / n  # fmt: skip
    g1, _ = capture(one)

    def replays() -> None:
        for _ in range(n // 10):
            g1.replay()

    out["graph1_launch_back_to_back_s"] = statistics.median(
        wall(replays, sync) for _ in range(ctx.repeats)) / (n // 10)  # fmt: skip
    return out


# ----------------------------------------------------------------------------- prefill


def prefill_section(ctx: Ctx) -> list[dict[str, Any]]:
    """One layer forward (batch 1, causal) at small token counts, eager and graphed."""
    import torch

    shapes = [TINY] if ctx.quick else [LLAMA3_8B, tp_shard(LLAMA3_70B, 8)]
    tokens = (16, 32) if ctx.quick else PREFILL_TOKENS
    rows = []
    for shape in shapes:
        dec = _Decoder(ctx, shape, 1, max(tokens))
        for t in tokens:
            x = randn((1, t, shape.hidden), ctx, torch.bfloat16)
            with torch.inference_mode():
                r = eager_and_graph(ctx, functools.partial(dec.prefill, x), 3 if ctx.quick else 10)
            gemm_flops = 2.0 * t * sum(n * k for n, k in shape.gemms().values())
            attn_flops = 4.0 * t * t * shape.q_heads * shape.head_dim * (t + 1) / (2 * t)
            best = r["graph_s"] or r["eager_s"]
            rows.append({"model": shape.name, "tp": shape.tp, "tokens": t,
                         "gemm_flops": gemm_flops, "attn_flops_causal": attn_flops,
                         "flops_graph": (gemm_flops + attn_flops) / best, **r})  # fmt: skip
            ctx.say(f"prefill {shape.name}/tp{shape.tp} T{t}: {fmt(r)}")
        release(ctx)
    return rows
