"""Run one plan of the validation model: a training step or an inference request (torch).

Every rank of the world calls :func:`run_train` / :func:`run_inference` with the same
arguments (process groups are created collectively); ranks the plan does not use idle until
the per-rank results are gathered on rank 0.

Training step (what the evaluator prices with ``memory_policy: pure_bf16``, ``zero_stage: 0``,
``overlap_grad_reduce: false``): 1F1B over the plan's micro-batches (:mod:`.schedule`;
with one stage simply forward and backward of each micro-batch), then the DP all-reduce of one
flat gradient buffer (Megatron-LM's contiguous grad buffer, one collective), then Adam
(``torch.optim.Adam``, fused on GPU).  Parameters, gradients and Adam states are all in the
compute dtype (bf16 on GPU): 2 + 2 + 4 bytes per parameter.

Inference request: prefill of ``batch`` prompts, then ``gen`` greedy decode steps with a KV
cache; with PP the hidden states go stage to stage and the new token returns to stage 0.

``check=True`` (CPU, float64) builds every rank's shards from one full model and returns the
gradients, updated parameters and logits, which :func:`reference_train` /
:func:`reference_inference` compute on one device for comparison.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .env import DistContext
from .gpt import GPTConfig, GPTStage, StageLayout, init_full, init_local, param_names, shard
from .plans import PlanLayout
from .schedule import PipelinePeers, run_1f1b
from .tensor_parallel import TPComm
from .timing import Stopwatch, median

__all__ = [
    "ADAM_LR",
    "CaseResult",
    "estimate_train_bytes",
    "reference_inference",
    "reference_train",
    "run_inference",
    "run_train",
]

#: Adam learning rate of the validation step (its value does not change the timing).
ADAM_LR = 1e-4
GB = 1e9


@dataclass
class CaseResult:
    """What rank 0 gets back: one dict per rank (None for idle ranks), plus check tensors."""

    ranks: list[dict[str, Any] | None]
    tensors: list[dict[str, Any] | None]


# ----------------------------------------------------------------------------------------------
# groups, model, data
# ----------------------------------------------------------------------------------------------
def _make_groups(ctx: DistContext, lay: PlanLayout) -> dict[str, Any]:
    """Create every process group of the plan (collectively, same order on every rank) and
    return this rank's."""
    mine: dict[str, Any] = {"tp": None, "dp": None, "plan": None}
    plan_ranks = lay.all_ranks
    if len(plan_ranks) > 1:
        mine["plan"] = ctx.group(plan_ranks)
    for grp in lay.tp_groups():
        if len(grp) > 1:
            g = ctx.group(grp)
            if ctx.rank in grp:
                mine["tp"] = g
    for grp in lay.dp_groups():
        if len(grp) > 1:
            g = ctx.group(grp)
            if ctx.rank in grp:
                mine["dp"] = g
    return mine


def _plan_barrier(ctx: DistContext, lay: PlanLayout, group: Any) -> None:
    ctx.sync()
    if len(lay.all_ranks) > 1:
        if ctx.backend == "nccl":
            dist.barrier(group=group, device_ids=[ctx.device.index or 0])
        else:
            dist.barrier(group=group)


def _build_stage(
    ctx: DistContext,
    cfg: GPTConfig,
    lay: PlanLayout,
    pos: tuple[int, int, int],
    tp_group: Any,
    seed: int,
    check: bool,
) -> GPTStage:
    s, _, j = pos
    first, last = lay.stage_layers[s]
    layout = StageLayout(first, last, embedding=s == 0, head=s == lay.pp - 1, tp=lay.tp, tp_rank=j)
    if check:
        full = init_full(cfg, seed, ctx.dtype)
        tensors = {n: shard(cfg, n, full[n], lay.tp, j) for n in param_names(cfg, layout)}
    else:
        tensors = init_local(cfg, layout, seed, ctx.device, ctx.dtype)
    model = GPTStage(cfg, layout, tensors, TPComm(tp_group, lay.tp, j))
    return model.to(ctx.device)


def _tokens(cfg: GPTConfig, rows: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (rows, length), generator=gen)


def _peers(lay: PlanLayout, pos: tuple[int, int, int]) -> PipelinePeers:
    s, r, j = pos
    prev = lay.ranks[s - 1][r][j] if s > 0 else None
    nxt = lay.ranks[s + 1][r][j] if s < lay.pp - 1 else None
    return PipelinePeers(prev, nxt)


class _PlainAdam:
    """Adam (Kingma & Ba 2015, Algorithm 1; torch.optim.Adam's defaults) for the CPU checks.

    Constructing ``torch.optim.Adam`` imports ``torch._dynamo`` (2-4 s in every process), which
    would dominate a test that runs a 4-block model for one step.
    """

    def __init__(self, params: list[torch.nn.Parameter], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.b1, self.b2, self.eps = 0.9, 0.999, 1e-8
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for i, p in enumerate(self.params):  # (no zip(strict=): Python 3.9 on the GPU machine)
            m, v = self.m[i], self.v[i]
            assert p.grad is not None
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def adam_for(params: list[torch.nn.Parameter], cuda: bool) -> Any:
    """Fused ``torch.optim.Adam`` on GPU (one pass over the states, what the evaluator prices);
    :class:`_PlainAdam` on CPU."""
    if not cuda:
        return _PlainAdam(params, ADAM_LR)
    try:
        return torch.optim.Adam(params, lr=ADAM_LR, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch: no fused bf16 Adam
        return torch.optim.Adam(params, lr=ADAM_LR, foreach=True)


def _flat_grads(model: GPTStage) -> torch.Tensor:
    """One contiguous gradient buffer; every ``.grad`` is a view into it, so backward
    accumulates in place and DP reduces it with one collective."""
    params = [p for _, p in model.named_model_parameters()]
    total = sum(p.numel() for p in params)
    ref = params[0]
    flat = torch.zeros(total, dtype=ref.dtype, device=ref.device)
    off = 0
    for p in params:
        p.grad = flat[off : off + p.numel()].view_as(p)
        off += p.numel()
    return flat


def _memory(ctx: DistContext) -> dict[str, float]:
    if not ctx.cuda:
        return {}
    return {
        "peak_allocated_GB": torch.cuda.max_memory_allocated(ctx.device) / GB,
        "peak_reserved_GB": torch.cuda.max_memory_reserved(ctx.device) / GB,
        "allocated_GB": torch.cuda.memory_allocated(ctx.device) / GB,
    }


def _fresh_memory(ctx: DistContext) -> float:
    """Free what earlier cases left, reset the peak counter; returns the baseline (GB).

    GPU only: a full ``gc.collect`` takes ~0.4 s once torch is imported, and on CPU nothing
    is measured that it would change."""
    if not ctx.cuda:
        return 0.0
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(ctx.device)
    return torch.cuda.memory_allocated(ctx.device) / GB


def estimate_train_bytes(cfg: GPTConfig, lay: PlanLayout, stage: int) -> float:
    """A generous upper estimate of one stage's GPU memory, to skip cases that cannot fit.

    States: 8 B/param (bf16 weights, grads, two Adam moments).  Activations per block and
    micro-batch: Korthikanti et al. 2022 eq. 2 with TP, ``s b h (10 + 24/t + 5 a s / (h t))``
    bytes, for the ``p - stage`` micro-batches 1F1B keeps in flight; logits: fp32 logits and
    softmax plus their 16-bit copy, ``10 s b V / t``.
    """
    first, last = lay.stage_layers[stage]
    n_blocks = last - first + 1
    h, s, b, t = cfg.hidden, cfg.seq_len, lay.micro_batch_size, lay.tp
    block_params = 12 * h * h + 13 * h
    params = n_blocks * block_params / t
    if stage == 0:
        params += (cfg.vocab_size / t + s) * h
    if stage == lay.pp - 1:
        params += cfg.vocab_size * h / t
    act = s * b * h * (10 + 24 / t + 5 * cfg.heads * s / (h * t))
    in_flight = min(lay.num_micro_batches, lay.pp - stage)
    logits = 10.0 * s * b * cfg.vocab_size / t if stage == lay.pp - 1 else 0.0
    return 8.0 * params + in_flight * n_blocks * act + logits


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _single_gpu_oom(ctx: DistContext, lay: PlanLayout) -> Iterator[list[str]]:
    """Turn a CUDA out-of-memory error of a one-GPU case into a message (the idle ranks are
    waiting in the result gather, which still happens).  In a multi-GPU case the peers are
    inside collectives the failed rank will never join: the error propagates and the run
    stops (the raw JSON keeps every earlier case)."""
    caught: list[str] = []
    try:
        yield caught
    except torch.cuda.OutOfMemoryError as e:
        if len(lay.all_ranks) > 1:
            raise
        caught.append("out of memory: " + str(e).splitlines()[0])


def _gather(ctx: DistContext, obj: Any) -> list[Any]:
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def run_train(
    ctx: DistContext,
    cfg: GPTConfig,
    lay: PlanLayout,
    *,
    steps: int,
    warmup: int,
    seed: int,
    check: bool = False,
) -> CaseResult:
    """Time ``steps`` training steps (after ``warmup``) of plan ``lay``; every rank calls this.

    With ``check`` one step is run and each rank returns its gradients (after the DP
    reduction) and its parameters after the Adam step, by full-model name.
    """
    if lay.kind != "training":
        raise ValueError(f"kind: run_train needs a training plan, got {lay.kind!r}")
    if lay.world_needed > ctx.world:
        raise ValueError(f"plan needs {lay.world_needed} GPUs, the run has {ctx.world}")
    return _on_every_rank(
        ctx,
        lay,
        check,
        lambda pos, groups: _train_rank(ctx, cfg, lay, pos, groups, steps, warmup, seed, check),
    )


def _on_every_rank(
    ctx: DistContext,
    lay: PlanLayout,
    check: bool,
    run: Callable[
        [tuple[int, int, int], dict[str, Any]], tuple[dict[str, Any], dict[str, Any] | None]
    ],
) -> CaseResult:
    """Run ``run(position, groups)`` on every rank the plan uses (a single-GPU OOM becomes the
    rank's error) and gather the ranks' results (and, for a check, their tensors) on all ranks."""
    groups = _make_groups(ctx, lay)
    pos = lay.position(ctx.rank)
    info: dict[str, Any] | None = None
    tensors: dict[str, Any] | None = None
    if pos is not None:
        with _single_gpu_oom(ctx, lay) as caught:
            info, tensors = run(pos, groups)
        if caught:
            info = {"rank": ctx.rank, "error": caught[0]}
    ranks = _gather(ctx, info)
    tens = _gather(ctx, tensors) if check else [None] * ctx.world
    return CaseResult(ranks=ranks, tensors=tens)


def _train_rank(
    ctx: DistContext,
    cfg: GPTConfig,
    lay: PlanLayout,
    pos: tuple[int, int, int],
    groups: dict[str, Any],
    steps: int,
    warmup: int,
    seed: int,
    check: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    s, r, j = pos
    base_GB = _fresh_memory(ctx)
    model = _build_stage(ctx, cfg, lay, pos, groups["tp"], seed, check)
    model.train()
    flat = _flat_grads(model)
    opt = adam_for([p for _, p in model.named_model_parameters()], ctx.cuda)
    m, mb = lay.num_micro_batches, lay.micro_batch_size
    rows = _tokens(cfg, lay.global_batch_size, cfg.seq_len + 1, seed + 7)
    mine = rows[r * m * mb : (r + 1) * m * mb].to(ctx.device)
    ids = [mine[i * mb : (i + 1) * mb, :-1] for i in range(m)]
    targets = [mine[i * mb : (i + 1) * mb, 1:] for i in range(m)]
    last = s == lay.pp - 1
    # Dropout: the same stream on every TP rank of a stage (replicated activations stay equal).
    torch.manual_seed(seed * 1000 + 17 * s + 101 * r)

    def forward(i: int, x: torch.Tensor | None) -> torch.Tensor:
        inp = ids[i] if s == 0 else x
        assert inp is not None
        if last:
            out: torch.Tensor = model(inp, targets[i]) / m
            return out
        y: torch.Tensor = model(inp)
        return y

    act_shape = (mb, cfg.seq_len, cfg.hidden)
    peers = _peers(lay, pos)

    def step(watch: Stopwatch | None) -> float:
        flat.zero_()
        loss = run_1f1b(
            forward,
            num_micro_batches=m,
            stage=s,
            stages=lay.pp,
            peers=peers,
            act_shape=act_shape,
            dtype=ctx.dtype,
            device=ctx.device,
            watch=watch,
        )
        if lay.dp > 1:
            if watch:
                watch.start("dp_allreduce")
            dist.all_reduce(flat, group=groups["dp"])
            flat.div_(lay.dp)
            if watch:
                watch.stop("dp_allreduce")
        if check:
            return loss
        if watch:
            watch.start("optimizer")
        opt.step()
        if watch:
            watch.stop("optimizer")
        return loss

    info: dict[str, Any] = {
        "rank": ctx.rank,
        "stage": s,
        "replica": r,
        "tp_rank": j,
        "params": sum(p.numel() for _, p in model.named_model_parameters()),
        "baseline_GB": base_GB,
    }
    if check:
        loss = step(None)
        grads = {
            n: p.grad.detach().cpu().clone()
            for n, p in model.named_model_parameters()
            if p.grad is not None
        }
        opt.step()
        params = {n: p.detach().cpu().clone() for n, p in model.named_model_parameters()}
        info["loss"] = loss if last else None
        out = {"pos": pos, "loss": info["loss"], "grads": grads, "params": params}
        return info, out
    per_step: list[dict[str, float]] = []
    persistent = 0.0
    for k in range(warmup + steps):
        _plan_barrier(ctx, lay, groups["plan"])
        watch = Stopwatch(ctx.device)
        t0 = time.perf_counter()
        loss = step(watch)
        ctx.sync()
        wall = time.perf_counter() - t0
        if k == 0 and ctx.cuda:
            persistent = torch.cuda.memory_allocated(ctx.device) / GB - base_GB
        if k >= warmup:
            rec = {"step_s": wall, **{f"{t}_s": v for t, v in watch.totals().items()}}
            if last:
                rec["loss"] = loss
            per_step.append(rec)
        else:
            watch.totals()
    info["steps"] = per_step
    info["step_s_median"] = median([x["step_s"] for x in per_step])
    info["persistent_GB"] = persistent
    info.update(_memory(ctx))
    return info, None


def reference_train(
    cfg: GPTConfig, *, global_batch: int, micro_batch: int, seed: int, dtype: torch.dtype
) -> dict[str, Any]:
    """The single-device step every parallel check is compared with (CPU): full model, the
    global batch as ``global_batch / micro_batch`` micro-batches, loss mean over all of them."""
    layout = StageLayout(0, cfg.layers - 1, embedding=True, head=True)
    full = init_full(cfg, seed, dtype)
    model = GPTStage(cfg, layout, full, TPComm(None, 1, 0))
    model.train()
    flat = _flat_grads(model)
    opt = adam_for([p for _, p in model.named_model_parameters()], cuda=False)
    rows = _tokens(cfg, global_batch, cfg.seq_len + 1, seed + 7)
    m = global_batch // micro_batch
    total = 0.0
    flat.zero_()
    for i in range(m):
        chunk = rows[i * micro_batch : (i + 1) * micro_batch]
        loss = model(chunk[:, :-1], chunk[:, 1:]) / m
        loss.backward()
        total += float(loss.detach())
    grads = {
        n: p.grad.detach().clone() for n, p in model.named_model_parameters() if p.grad is not None
    }
    opt.step()
    params = {n: p.detach().clone() for n, p in model.named_model_parameters()}
    return {"loss": total, "grads": grads, "params": params}


# ----------------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------------
def run_inference(
    ctx: DistContext,
    cfg: GPTConfig,
    lay: PlanLayout,
    *,
    prompt: int,
    gen: int,
    reps: int,
    seed: int,
    check: bool = False,
) -> CaseResult:
    """Time prefill (TTFT) and greedy decode (per-token latency) of plan ``lay``.

    One untimed request first (warm-up), then ``reps`` timed requests: each a barrier, the
    prefill of ``batch`` prompts of ``prompt`` tokens up to the first new token, then ``gen``
    decode steps.  Decode contexts run from ``prompt`` to ``prompt + gen``, so the mean
    per-token time is the one at context ``prompt + gen/2`` that the evaluator prices.
    """
    if lay.kind != "inference":
        raise ValueError(f"kind: run_inference needs an inference plan, got {lay.kind!r}")
    if lay.world_needed > ctx.world:
        raise ValueError(f"plan needs {lay.world_needed} GPUs, the run has {ctx.world}")
    cfg = cfg.with_seq_len(prompt + gen)
    return _on_every_rank(
        ctx,
        lay,
        check,
        lambda pos, groups: _infer_rank(ctx, cfg, lay, pos, groups, prompt, gen, reps, seed, check),
    )


def _infer_rank(
    ctx: DistContext,
    cfg: GPTConfig,
    lay: PlanLayout,
    pos: tuple[int, int, int],
    groups: dict[str, Any],
    prompt: int,
    gen: int,
    reps: int,
    seed: int,
    check: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    s, r, j = pos
    base_GB = _fresh_memory(ctx)
    model = _build_stage(ctx, cfg, lay, pos, groups["tp"], seed, check)
    model.eval()
    B = lay.batch_size
    first, last = s == 0, s == lay.pp - 1
    cache = model.new_cache(B, prompt + gen)
    ids = _tokens(cfg, B, prompt, seed + 11).to(ctx.device)
    peers = _peers(lay, pos)
    stage0 = lay.ranks[0][r][j]
    logits_seen: list[torch.Tensor] = []

    def run(inp: torch.Tensor, at: int, n: int, watch: Stopwatch) -> torch.Tensor:
        """One pipeline pass of ``n`` tokens per sequence at position ``at``; the new tokens."""
        if first:
            x = inp
        else:
            assert peers.prev is not None
            x = torch.empty(B, n, cfg.hidden, dtype=ctx.dtype, device=ctx.device)
            dist.recv(x, peers.prev)
        watch.start("compute")
        y = model.infer(x, cache, at)
        watch.stop("compute")
        tok = torch.empty(B, 1, dtype=torch.long, device=ctx.device)
        if not last:
            assert peers.next is not None
            dist.send(y.contiguous(), peers.next)
        else:
            if check:
                logits_seen.append(y.detach().cpu().clone())
            tok = y.argmax(dim=-1, keepdim=True)
        if lay.pp > 1:
            if last:
                dist.send(tok, stage0)
            elif first:
                dist.recv(tok, lay.ranks[-1][r][j])
        return tok

    def request(record: bool) -> dict[str, float]:
        watch = Stopwatch(ctx.device)
        _plan_barrier(ctx, lay, groups["plan"])
        t0 = time.perf_counter()
        tok = run(ids, 0, prompt, watch)
        ctx.sync()
        t1 = time.perf_counter()
        prefill_compute = watch.totals().get("compute", 0.0)
        _plan_barrier(ctx, lay, groups["plan"])
        t2 = time.perf_counter()
        for k in range(gen):
            tok = run(tok, prompt + k, 1, watch)
        ctx.sync()
        t3 = time.perf_counter()
        decode_compute = watch.totals().get("compute", 0.0)
        return {
            "prefill_s": t1 - t0,
            "decode_per_token_s": (t3 - t2) / gen,
            "prefill_compute_s": prefill_compute,
            "decode_compute_per_token_s": decode_compute / gen,
        }

    info: dict[str, Any] = {
        "rank": ctx.rank,
        "stage": s,
        "tp_rank": j,
        "params": sum(p.numel() for p in model.parameters()),
        "baseline_GB": base_GB,
    }
    if check:
        request(record=False)
        out = {"pos": pos, "logits": logits_seen if last else None}
        return info, out
    request(record=False)
    recs = [request(record=True) for _ in range(reps)]
    info["requests"] = recs
    for key in recs[0]:
        info[f"{key}_median"] = median([x[key] for x in recs])
    info.update(_memory(ctx))
    return info, None


def reference_inference(
    cfg: GPTConfig, *, batch: int, prompt: int, gen: int, seed: int, dtype: torch.dtype
) -> list[torch.Tensor]:
    """Single-device logits of the prefill's last position and of each decode step (CPU)."""
    cfg = cfg.with_seq_len(prompt + gen)
    layout = StageLayout(0, cfg.layers - 1, embedding=True, head=True)
    model = GPTStage(cfg, layout, init_full(cfg, seed, dtype), TPComm(None, 1, 0))
    model.eval()
    cache = model.new_cache(batch, prompt + gen)
    ids = _tokens(cfg, batch, prompt, seed + 11)
    out: list[torch.Tensor] = []
    logits = model.infer(ids, cache, 0)
    out.append(logits)
    for k in range(gen):
        tok = logits.argmax(dim=-1, keepdim=True)
        logits = model.infer(tok, cache, prompt + k)
        out.append(logits)
    return out
