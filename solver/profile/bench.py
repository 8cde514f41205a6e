"""Micro-benchmarks: transformer GEMMs, HBM streaming and collectives (torch + stdlib).

* **GEMMs** -- the four GEMMs of a GPT block on one TP rank (Megatron-LM shapes: QKV
  ``tokens x h -> 3h/t``, proj ``tokens x h/t -> h``, fc1 ``tokens x h -> 4h/t``, fc2
  ``tokens x 4h/t -> h``), each in its three passes (forward ``Y = X W^T``, data gradient
  ``dX = dY W``, weight gradient ``dW = dY^T X``), for several hidden sizes, token counts and
  TP degrees; plus square GEMMs, whose best rate is the "maximum achievable matmul FLOPS"
  (MAMF, as in stas00/ml-engineering ``mamf-finder.py``), the quantity the catalog's
  ``gemm_efficiency`` is defined by.
* **Memory** -- ``copy_`` (read + write) and ``add`` (2 reads + 1 write) of large buffers:
  achievable HBM bandwidth, which the catalog's ``memory_efficiency`` is a fraction of.
* **Collectives** -- NCCL (or gloo) all-reduce, all-gather, reduce-scatter and send/recv versus
  message size, for each group size ``2, 4, 8, ...`` up to the world (ranks ``0..n-1``).
  Sizes follow nccl-tests: the full buffer (all-gather output, reduce-scatter input).  Each
  point is timed as ``reps`` back-to-back calls between two events, on every rank, and the
  slowest rank's mean is kept (nccl-tests' convention).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .env import DistContext
from .timing import median, time_calls

__all__ = [
    "ProfileSizes",
    "bench_collectives",
    "bench_gemms",
    "bench_memory",
    "gemm_shapes",
]


@dataclass(frozen=True)
class ProfileSizes:
    """What to measure.  :meth:`gpu` is the H100 suite, :meth:`cpu` the test-sized one."""

    hiddens: tuple[int, ...]
    tokens: tuple[int, ...]
    tps: tuple[int, ...]
    squares: tuple[int, ...]
    memory_bytes: tuple[int, ...]
    message_bytes: tuple[int, ...]
    warmup: int
    reps: int
    #: Whole-block benchmarks (:mod:`~solver.profile.blocks`): shapes (``h<hidden>-l<blocks>``,
    #: deliberately not the validation shapes h4096/h8192, so that validation is out of
    #: sample), training micro-batches at ``block_seq``, prefill at ``block_prompt``, decode
    #: batches at ``block_context``.  Empty ``block_shapes``: no block benchmark.
    block_shapes: tuple[str, ...] = ()
    block_seq: int = 2048
    block_micro_batches: tuple[int, ...] = (1,)
    block_prompt: int = 1024
    block_decode_batches: tuple[int, ...] = (1, 32)
    block_context: int = 1024
    block_dropout: float = 0.1
    #: Elementwise fusion of the benchmarked blocks (``GPTConfig.fusion``): the validation
    #: runner's, so that the fitted software-stack factors are those of the stack validated.
    block_fusion: str = "none"

    @classmethod
    def gpu(cls) -> ProfileSizes:
        return cls(
            hiddens=(2048, 4096, 8192, 12288),
            tokens=(2048, 8192),
            tps=(1, 2, 4, 8),
            squares=(1024, 2048, 4096, 6144, 8192, 12288, 16384),
            memory_bytes=tuple(2**k for k in range(20, 32, 1)),  # 1 MiB .. 2 GiB
            message_bytes=tuple(4**k for k in range(6, 16)),  # 4 KiB .. 1 GiB
            warmup=3,
            reps=10,
            block_shapes=("h2048-l4", "h3072-l4", "h6144-l2", "h12288-l1"),
            block_micro_batches=(1, 2),
            block_fusion="megatron",
        )

    @classmethod
    def gpu_quick(cls) -> ProfileSizes:
        """A smoke test of the GPU path (seconds): a few sizes of everything."""
        return cls(
            hiddens=(1024,),
            tokens=(1024,),
            tps=(1, 2),
            squares=(1024, 4096),
            memory_bytes=tuple(2**k for k in range(20, 27, 2)),  # 1 .. 64 MiB
            message_bytes=tuple(4**k for k in range(6, 13, 2)),  # 4 KiB .. 16 MiB
            warmup=1,
            reps=3,
            block_shapes=("h1024-l2",),
            block_seq=1024,
            block_prompt=512,
            block_context=512,
            block_fusion="megatron",
        )

    @classmethod
    def cpu(cls) -> ProfileSizes:
        return cls(
            hiddens=(32, 64),
            tokens=(16, 64),
            tps=(1, 2),
            squares=(32, 64, 128),
            memory_bytes=tuple(2**k for k in range(12, 21, 2)),  # 4 KiB .. 1 MiB
            # Up to 16 MiB: on a busy CPU the bandwidth term must stand out of the noise.
            message_bytes=tuple(4**k for k in range(6, 13)),  # 4 KiB .. 16 MiB
            warmup=1,
            reps=3,
            block_shapes=("h64-l2-a4", "h128-l2-a4"),
            block_seq=32,
            block_prompt=16,
            block_decode_batches=(1, 4),
            block_context=16,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileSizes:
        """Inverse of :meth:`to_dict`; raw files written before the block benchmark existed
        (no ``block_*`` keys) read as "no block benchmark"."""
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            kw[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)


def gemm_shapes(hidden: int, tokens: int, tp: int) -> list[tuple[str, int, int, int]]:
    """(name, tokens, in_features, out_features) of a GPT block's GEMMs on one TP rank."""
    h, f = hidden, 4 * hidden
    return [
        ("qkv", tokens, h, 3 * h // tp),
        ("proj", tokens, h // tp, h),
        ("fc1", tokens, h, f // tp),
        ("fc2", tokens, f // tp, h),
    ]


def _operand(shape: tuple[int, int], transposed: bool, ctx: DistContext) -> torch.Tensor:
    """A ``shape`` operand; ``transposed``: the transpose view of a contiguous tensor, as the
    model's ``W^T`` in ``X W^T`` and ``dY^T`` in ``dY^T X`` are (cuBLAS then runs the same
    "TN"/"NT" kernels the training step does)."""
    if transposed:
        return torch.randn(shape[::-1], device=ctx.device, dtype=ctx.dtype).t()
    return torch.randn(shape, device=ctx.device, dtype=ctx.dtype)


def _time_gemm(
    a_shape: tuple[int, int],
    b_shape: tuple[int, int],
    ctx: DistContext,
    sizes: ProfileSizes,
    layout: tuple[bool, bool] = (False, False),
) -> float:
    a = _operand(a_shape, layout[0], ctx)
    b = _operand(b_shape, layout[1], ctx)
    out = torch.empty(a_shape[0], b_shape[1], device=ctx.device, dtype=ctx.dtype)
    ts = time_calls(
        lambda: torch.matmul(a, b, out=out), ctx.device, warmup=sizes.warmup, reps=sizes.reps
    )
    return median(ts)


def bench_gemms(ctx: DistContext, sizes: ProfileSizes) -> list[dict[str, Any]]:
    """One record per (GEMM, pass): shape, seconds, TFLOP/s."""
    out: list[dict[str, Any]] = []
    for h in sizes.hiddens:
        for tokens in sizes.tokens:
            for tp in sizes.tps:
                if h % tp:
                    continue
                for name, m, k, n in gemm_shapes(h, tokens, tp):
                    # (A, B, which is a transposed view) of A @ B for each pass, in the
                    # model's layouts (F.linear and its autograd): Y = X W^T with W (n, k),
                    # dX = dY W, dW = dY^T X with dY (m, n).
                    passes = {
                        "forward": ((m, k), (k, n), (False, True)),
                        "dgrad": ((m, n), (n, k), (False, False)),
                        "wgrad": ((n, m), (m, k), (True, False)),
                    }
                    for pss, (sa, sb, layout) in passes.items():
                        t = _time_gemm(sa, sb, ctx, sizes, layout)
                        flops = 2.0 * m * n * k
                        out.append(
                            {
                                "kind": "transformer",
                                "gemm": name,
                                "pass": pss,
                                "hidden": h,
                                "tokens": tokens,
                                "tp": tp,
                                "m": sa[0],
                                "k": sa[1],
                                "n": sb[1],
                                "layout": ["NT"[x] for x in layout],
                                "flops": flops,
                                "time_s": t,
                                "tflops": flops / t / 1e12,
                            }
                        )
    for sq in sizes.squares:
        t = _time_gemm((sq, sq), (sq, sq), ctx, sizes)
        flops = 2.0 * sq**3
        out.append(
            {
                "kind": "square",
                "m": sq,
                "k": sq,
                "n": sq,
                "flops": flops,
                "time_s": t,
                "tflops": flops / t / 1e12,
            }
        )
    return out


def bench_memory(ctx: DistContext, sizes: ProfileSizes) -> list[dict[str, Any]]:
    """One record per (kernel, buffer size): bytes moved, seconds, GB/s."""
    out: list[dict[str, Any]] = []
    for nbytes in sizes.memory_bytes:
        dt = torch.bfloat16 if ctx.cuda else torch.float32
        n = nbytes // torch.empty((), dtype=dt).element_size()
        src = torch.randn(n, device=ctx.device, dtype=dt)
        dst = torch.empty_like(src)
        other = torch.randn(n, device=ctx.device, dtype=dt)
        kernels = {
            "copy": (functools.partial(dst.copy_, src), 2 * nbytes),
            "add": (functools.partial(torch.add, src, other, out=dst), 3 * nbytes),
        }
        for name, (fn, moved) in kernels.items():
            t = median(time_calls(fn, ctx.device, warmup=sizes.warmup, reps=sizes.reps))
            out.append(
                {
                    "kernel": name,
                    "buffer_bytes": nbytes,
                    "bytes_moved": moved,
                    "time_s": t,
                    "GBps": moved / t / 1e9,
                }
            )
        del src, dst, other
    return out


def _group_sizes(world: int) -> list[int]:
    sizes = [2**k for k in range(1, int(math.log2(world)) + 1)]
    if world > 1 and world not in sizes:
        sizes.append(world)
    return sizes


def _all_gather(out: torch.Tensor, inp: torch.Tensor, group: Any) -> None:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, inp, group=group)


def _reduce_scatter(out: torch.Tensor, inp: torch.Tensor, group: Any) -> None:
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(out, inp, group=group)


def _loop_time(fn: Any, ctx: DistContext, warmup: int, reps: int) -> float:
    """Mean seconds per call over ``reps`` back-to-back calls (after ``warmup``)."""
    for _ in range(warmup):
        fn()
    ctx.sync()
    ts = time_calls(lambda: [fn() for _ in range(reps)], ctx.device, warmup=0, reps=1)
    return ts[0] / reps


def bench_collectives(ctx: DistContext, sizes: ProfileSizes) -> list[dict[str, Any]]:
    """Collectives on groups of ranks 0..n-1 for each group size; every rank must call this.

    Returns the records on rank 0 (the slowest rank's time per point), [] elsewhere.
    """
    out: list[dict[str, Any]] = []
    if ctx.world < 2:
        return out
    dt = torch.bfloat16 if ctx.cuda else torch.float32
    esize = torch.empty((), dtype=dt).element_size()
    for n in _group_sizes(ctx.world):
        ranks = tuple(range(n))
        group = ctx.group(ranks)
        member = ctx.rank in ranks
        for op in ("all_reduce", "all_gather", "reduce_scatter", "send_recv"):
            if op == "send_recv" and n != 2:
                continue  # point-to-point: one pair (ranks 0 -> 1)
            for nbytes in sizes.message_bytes:
                elems = max(n, nbytes // esize) // n * n
                t = float("nan")
                if member:
                    full = torch.ones(elems, device=ctx.device, dtype=dt)
                    part = torch.empty(elems // n, device=ctx.device, dtype=dt)
                    fns: dict[str, Callable[[], object]] = {
                        "all_reduce": functools.partial(dist.all_reduce, full, group=group),
                        "all_gather": functools.partial(_all_gather, full, part, group),
                        "reduce_scatter": functools.partial(_reduce_scatter, part, full, group),
                        "send_recv": (
                            functools.partial(dist.send, full, 1)
                            if ctx.rank == 0
                            else functools.partial(dist.recv, full, 0)
                        ),
                    }
                    if op == "all_reduce":
                        full.fill_(1.0 / n)  # keep repeated sums finite
                    reps = sizes.reps if nbytes < 2**26 else max(3, sizes.reps // 2)
                    t = _loop_time(fns[op], ctx, sizes.warmup, reps)
                    del full, part
                times: list[float | None] = [None] * ctx.world
                dist.all_gather_object(times, t if member else None)
                if ctx.rank == 0:
                    slowest = max(x for x in times if x is not None and not math.isnan(x))
                    out.append(
                        {
                            "op": op,
                            "group_size": n,
                            "bytes": elems * esize,
                            "time_s": slowest,
                            "algbw_GBps": elems * esize / slowest / 1e9,
                        }
                    )
    return out
