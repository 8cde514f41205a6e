"""Megatron-LM tensor parallelism from plain torch ops (torch + stdlib).

Shoeybi et al. 2019, "Megatron-LM", Sec. 3 and Fig. 3: a column-parallel GEMM is preceded by
``f`` (identity forward, all-reduce of the input gradient backward) and a row-parallel GEMM is
followed by ``g`` (all-reduce forward, identity backward); so an attention or MLP block costs
one all-reduce forward and one backward.  The vocabulary is split across the TP ranks for the
embedding (partial lookups all-reduced) and the LM head (each rank holds V/t logits; the cross
entropy reduces max, sum of exponentials and the target logit across ranks instead of
gathering the logits: Megatron-LM ``vocab_parallel_cross_entropy``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["TPComm", "vocab_parallel_cross_entropy", "vocab_parallel_embedding"]


class _CopyToTP(torch.autograd.Function):
    """``f``: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromTP(torch.autograd.Function):
    """``g``: all-reduce forward (in place on the GEMM output), identity backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        if x.is_contiguous():
            ctx.mark_dirty(x)  # reduced in place: the GEMM output is not saved by anyone
        else:
            x = x.contiguous()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class TPComm:
    """The tensor-parallel group of one rank (size 1: every method is the identity)."""

    def __init__(self, group: Any, size: int, rank: int) -> None:
        self.group = group
        self.size = size
        self.rank = rank

    def copy_to(self, x: torch.Tensor) -> torch.Tensor:
        """Megatron's ``f`` (before a column-parallel GEMM)."""
        if self.size == 1:
            return x
        out: torch.Tensor = _CopyToTP.apply(x, self.group)  # type: ignore[no-untyped-call]
        return out

    def reduce_from(self, x: torch.Tensor) -> torch.Tensor:
        """Megatron's ``g`` (after a row-parallel GEMM)."""
        if self.size == 1:
            return x
        out: torch.Tensor = _ReduceFromTP.apply(x, self.group)  # type: ignore[no-untyped-call]
        return out

    def all_reduce_(self, t: torch.Tensor, op: Any = dist.ReduceOp.SUM) -> None:
        """In-place all-reduce outside autograd."""
        if self.size > 1:
            dist.all_reduce(t, op=op, group=self.group)

    def gather_last_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the ranks' shards along the last dimension (no autograd)."""
        if self.size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)


def vocab_parallel_embedding(
    ids: torch.Tensor, weight: torch.Tensor, vocab_start: int, comm: TPComm
) -> torch.Tensor:
    """Look ``ids`` up in this rank's rows ``[vocab_start, vocab_start + V/t)``; rows owned by
    other ranks give zeros, and ``g`` sums the partial lookups."""
    if comm.size == 1:
        return F.embedding(ids, weight)
    outside = (ids < vocab_start) | (ids >= vocab_start + weight.shape[0])
    local = (ids - vocab_start).masked_fill(outside, 0)
    out = F.embedding(local, weight).masked_fill(outside.unsqueeze(-1), 0.0)
    return comm.reduce_from(out)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Per-token cross entropy of vocab-sharded logits (N x V/t), without gathering them."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, target: torch.Tensor, vocab_start: int, comm: TPComm
    ) -> torch.Tensor:
        vl = logits.shape[-1]
        m = logits.max(dim=-1).values
        comm.all_reduce_(m, dist.ReduceOp.MAX)
        z = logits - m.unsqueeze(-1)
        outside = (target < vocab_start) | (target >= vocab_start + vl)
        local = (target - vocab_start).masked_fill(outside, 0)
        picked = z.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        comm.all_reduce_(picked)
        e = z.exp_()
        sum_exp = e.sum(dim=-1)
        comm.all_reduce_(sum_exp)
        loss = torch.log(sum_exp) - picked
        e.div_(sum_exp.unsqueeze(-1))  # softmax, kept for the backward
        ctx.save_for_backward(e, local, outside)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        softmax, local, outside = ctx.saved_tensors
        g = softmax  # used once: reuse the buffer
        rows = torch.arange(g.shape[0], device=g.device)
        g[rows, local] -= (~outside).to(g.dtype)
        g.mul_(grad.unsqueeze(-1))
        return g, None, None, None


def vocab_parallel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, vocab_start: int, comm: TPComm
) -> torch.Tensor:
    """Per-token loss ``log sum exp(logits) - logits[target]`` of (N x V/t) logits."""
    out: torch.Tensor = _VocabParallelCrossEntropy.apply(  # type: ignore[no-untyped-call]
        logits, target, vocab_start, comm
    )
    return out
