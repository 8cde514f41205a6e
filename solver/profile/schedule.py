"""Non-interleaved 1F1B pipeline schedule over point-to-point send/recv (torch + stdlib).

Narayanan et al. 2021, Sec. 2.2.1 (PipeDream-Flush): stage s of p runs min(p - s - 1, m)
warm-up forwards, then alternates one forward and one backward, then drains the remaining
backwards; at most p - s micro-batches are in flight on stage s.  Transfers follow Megatron-LM's
``forward_backward_pipelining_without_interleaving``: sends and receives that happen at the same
point are batched (``batch_isend_irecv``) so neighbouring stages never wait on each other in
the wrong order.  With TP > 1 each TP rank exchanges its full activation copy with the same TP
rank of the neighbouring stage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .timing import Stopwatch

__all__ = ["PipelinePeers", "run_1f1b"]


@dataclass(frozen=True)
class PipelinePeers:
    """Global ranks of the previous and next stage (None at the ends)."""

    prev: int | None
    next: int | None


def _exchange(send: list[tuple[torch.Tensor, int]], recv: list[tuple[torch.Tensor, int]]) -> None:
    ops = [dist.P2POp(dist.isend, t, peer) for t, peer in send]
    ops += [dist.P2POp(dist.irecv, t, peer) for t, peer in recv]
    if ops:
        for work in dist.batch_isend_irecv(ops):
            work.wait()


def run_1f1b(
    forward: Callable[[int, torch.Tensor | None], torch.Tensor],
    *,
    num_micro_batches: int,
    stage: int,
    stages: int,
    peers: PipelinePeers,
    act_shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    watch: Stopwatch | None = None,
) -> float:
    """Run forward and backward of ``num_micro_batches`` micro-batches on this stage.

    ``forward(i, x)`` runs micro-batch ``i`` on this stage (``x`` is None on the first stage,
    which reads its own tokens) and returns the activation to send, or on the last stage the
    loss already divided by the number of micro-batches.  Gradients accumulate in the
    parameters' ``.grad``.  Returns the sum of the micro-batch losses on the last stage
    (the step's mean loss), 0.0 elsewhere.
    """
    m, s, p = num_micro_batches, stage, stages
    first, last = s == 0, s == p - 1

    def new_act() -> torch.Tensor:
        return torch.empty(act_shape, dtype=dtype, device=device)

    def recv_forward() -> torch.Tensor | None:
        if first:
            return None
        assert peers.prev is not None
        x = new_act()
        _exchange([], [(x, peers.prev)])
        return x.requires_grad_()

    def send_forward(y: torch.Tensor) -> None:
        if not last:
            assert peers.next is not None
            _exchange([(y.detach(), peers.next)], [])

    def send_forward_recv_backward(y: torch.Tensor) -> torch.Tensor | None:
        if last:
            return None
        assert peers.next is not None
        g = new_act()
        _exchange([(y.detach(), peers.next)], [(g, peers.next)])
        return g

    def recv_backward() -> torch.Tensor | None:
        if last:
            return None
        assert peers.next is not None
        g = new_act()
        _exchange([], [(g, peers.next)])
        return g

    def send_backward(gx: torch.Tensor | None) -> None:
        if not first:
            assert peers.prev is not None and gx is not None
            _exchange([(gx, peers.prev)], [])

    def send_backward_recv_forward(gx: torch.Tensor | None) -> torch.Tensor | None:
        if first:
            return None
        assert peers.prev is not None and gx is not None
        x = new_act()
        _exchange([(gx, peers.prev)], [(x, peers.prev)])
        return x.requires_grad_()

    loss_sum = 0.0
    losses: list[torch.Tensor] = []
    fwd_count = 0

    def run_forward(x: torch.Tensor | None) -> torch.Tensor:
        nonlocal fwd_count
        if watch:
            watch.start("forward")
        y = forward(fwd_count, x)
        if watch:
            watch.stop("forward")
        fwd_count += 1
        if last:
            losses.append(y.detach())
        return y

    def run_backward(
        x: torch.Tensor | None, y: torch.Tensor, gy: torch.Tensor | None
    ) -> torch.Tensor | None:
        if watch:
            watch.start("backward")
        if last:
            torch.autograd.backward(y)
        else:
            torch.autograd.backward(y, grad_tensors=gy)
        if watch:
            watch.stop("backward")
        return None if x is None else x.grad

    warmup = min(p - s - 1, m)
    remaining = m - warmup
    in_flight: deque[tuple[torch.Tensor | None, torch.Tensor]] = deque()

    for _ in range(warmup):
        x = recv_forward()
        y = run_forward(x)
        send_forward(y)
        in_flight.append((x, y))

    x = recv_forward() if remaining > 0 else None
    for i in range(remaining):
        y = run_forward(x)
        gy = send_forward_recv_backward(y)
        in_flight.append((x, y))
        xb, yb = in_flight.popleft()
        gx = run_backward(xb, yb, gy)
        if i == remaining - 1:
            send_backward(gx)
        else:
            x = send_backward_recv_forward(gx)

    for _ in range(warmup):
        xb, yb = in_flight.popleft()
        gy = recv_backward()
        gx = run_backward(xb, yb, gy)
        send_backward(gx)

    if losses:
        loss_sum = float(torch.stack(losses).sum())
    return loss_sum
