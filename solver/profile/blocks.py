"""Whole-block micro-benchmarks on one GPU (torch + stdlib, runs on the device machine).

The GEMM and HBM micro-benchmarks of :mod:`~solver.profile.bench` calibrate the hardware; these
calibrate the *software stack* that runs the model: how much of the GEMM rate a real block
realises, how many bytes its elementwise kernels really move (``ProfileSizes.block_fusion``:
the eager block of :mod:`~solver.profile.gpt` or its Megatron-style fused one) and what one kernel
launch costs when the GPU waits for the host (small decode steps).  Each record is one block
stack of :class:`~solver.profile.gpt.GPTStage` (no embedding, no head) timed in the way the
validation runner uses it:

* ``train`` -- forward and backward of ``micro_batch x seq`` hidden states (dropout as in the
  validation suite), timed separately between CUDA events;
* ``prefill`` -- :meth:`GPTStage.infer` of ``batch x prompt`` tokens into an empty KV cache;
* ``decode`` -- one :meth:`GPTStage.infer` step of one token per sequence at ``context``;
* ``optimizer`` -- one step of the optimizer the runner uses (fused Adam on GPU) over the
  stack's parameters.

The host fits the cost model's software-stack factors to them (:mod:`~solver.profile.calibrate`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .bench import ProfileSizes
from .cases import adam_for
from .env import DistContext
from .gpt import GPTConfig, GPTStage, StageLayout, init_local, parse_shape
from .tensor_parallel import TPComm
from .timing import Stopwatch, median, time_calls

__all__ = ["bench_blocks"]


def _stage(cfg: GPTConfig, ctx: DistContext) -> GPTStage:
    layout = StageLayout(0, cfg.layers - 1, embedding=False, head=False)
    tensors = init_local(cfg, layout, 7, ctx.device, ctx.dtype)
    return GPTStage(cfg, layout, tensors, TPComm(None, 1, 0)).to(ctx.device)


def _train(
    model: GPTStage, cfg: GPTConfig, b: int, ctx: DistContext, sizes: ProfileSizes
) -> dict[str, float]:
    model.train()
    x = torch.randn(b, cfg.seq_len, cfg.hidden, device=ctx.device, dtype=ctx.dtype)
    x.requires_grad_(True)
    dy = torch.randn_like(x)
    watch = Stopwatch(ctx.device)
    fwd, bwd = [], []
    for k in range(sizes.warmup + sizes.reps):
        watch.start("f")
        y = model(x)
        watch.stop("f")
        watch.start("b")
        y.backward(dy)
        watch.stop("b")
        t = watch.totals()
        if k >= sizes.warmup:
            fwd.append(t["f"])
            bwd.append(t["b"])
        model.zero_grad(set_to_none=True)
        x.grad = None
    return {"forward_s": median(fwd), "backward_s": median(bwd)}


def _optimizer(model: GPTStage, ctx: DistContext, sizes: ProfileSizes) -> float:
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = adam_for(params, ctx.cuda)
    return median(time_calls(opt.step, ctx.device, warmup=sizes.warmup, reps=sizes.reps))


def bench_blocks(ctx: DistContext, sizes: ProfileSizes) -> list[dict[str, Any]]:
    """One record per (shape, case); run on one rank (the others wait at a barrier)."""
    out: list[dict[str, Any]] = []
    for text in sizes.block_shapes:
        cfg = parse_shape(
            text, seq_len=sizes.block_seq, dropout=sizes.block_dropout, fusion=sizes.block_fusion
        )
        model = _stage(cfg, ctx)
        base = {"shape": cfg.to_dict(), "blocks": cfg.layers}
        for b in sizes.block_micro_batches:
            t = _train(model, cfg, b, ctx, sizes)
            out.append({**base, "case": "train", "micro_batch": b, "seq": cfg.seq_len, **t})
        out.append(
            {
                **base,
                "case": "optimizer",
                "params": sum(p.numel() for p in model.parameters()),
                "time_s": _optimizer(model, ctx, sizes),
            }
        )
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            for b in sorted({1, *sizes.block_decode_batches}):
                n = sizes.block_prompt
                cache = model.new_cache(b, max(n, sizes.block_context) + 1)
                for kc, vc in cache:  # finite values everywhere the decode step reads
                    kc.zero_()
                    vc.zero_()
                x = torch.randn(b, n, cfg.hidden, device=ctx.device, dtype=ctx.dtype)
                if b == 1:  # prefill at batch 1 (the TTFT of one request)
                    prefill = functools.partial(model.infer, x, cache, 0)
                    ts = time_calls(prefill, ctx.device, warmup=sizes.warmup, reps=sizes.reps)
                    out.append(
                        {**base, "case": "prefill", "batch": 1, "prompt": n, "time_s": median(ts)}
                    )
                if b in sizes.block_decode_batches:
                    one = torch.randn(b, 1, cfg.hidden, device=ctx.device, dtype=ctx.dtype)
                    at = sizes.block_context
                    step = functools.partial(model.infer, one, cache, at)
                    ts = time_calls(step, ctx.device, warmup=sizes.warmup, reps=sizes.reps)
                    out.append(
                        {**base, "case": "decode", "batch": b, "context": at, "time_s": median(ts)}
                    )
                del cache
        del model
        if ctx.cuda:
            torch.cuda.empty_cache()
    return out
