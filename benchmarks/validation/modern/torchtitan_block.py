"""torchtitan-style Llama blocks under its activation-checkpointing policies, and the GPU's
power/clock under a sustained GEMM (torch only; runs on one GPU).

    python benchmarks/validation/modern/torchtitan_block.py --out raw-torchtitan-block.json

Written for shardwise from torchtitan's documented behaviour (docs and
``torchtitan/parallelisms/parallelize_llama.py`` at 9dec370, Dec 2024), not copied from it:
a Llama block whose RMSNorm runs in fp32, rotary embeddings as complex multiplication in
fp32, grouped-query K/V repeated to all heads before ``scaled_dot_product_attention``
(``is_causal=True``) and a SwiGLU MLP (``w2(silu(w1 x) * w3 x)``).  Activation
checkpointing per block, non-reentrant ``torch.utils.checkpoint``:

* ``none``: no checkpointing;
* ``full``: the whole block recomputed;
* ``op``: torchtitan's per-op selective policy -- outputs of ``aten.mm``, the SDPA
  kernels and ``aten.max`` saved, except every second ``mm`` (a counter made afresh for each
  checkpointed call, as torchtitan's ``context_fn`` does), everything else recomputed;
* ``half``: full checkpointing of every second block (torchtitan ``selective_ac_option "2"``).

Each mode runs eager and with ``torch.compile`` per block (torchtitan's ``apply_compile``).
Recorded per case: median forward+backward time of the blocks (no optimizer, no embedding
or head), peak allocated bytes above the weights, for 2 and 4 layers (the difference is the
per-layer stored activation; what stays is the transient of one block's backward).

Power: ``nvidia-smi`` samples of power draw, SM clock and the enforced power limit while a
bf16 8192^3 GEMM runs back to back for ~15 s, and at idle, with the GEMM rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

#: Block shapes: (hidden, heads, kv heads, ffn).
SHAPES = {
    "llama3-8b": (4096, 32, 8, 14336),
    "llama2-13b": (5120, 40, 40, 13824),
}
DIM, HEADS, KV_HEADS, FFN = SHAPES["llama3-8b"]
HEAD_DIM = DIM // HEADS


def use_shape(name: str) -> None:
    """Switch the block shape the module builds (module-level constants, one shape a run)."""
    global DIM, HEADS, KV_HEADS, FFN, HEAD_DIM
    DIM, HEADS, KV_HEADS, FFN = SHAPES[name]
    HEAD_DIM = DIM // HEADS


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(3).type_as(x)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wq = nn.Linear(DIM, HEADS * HEAD_DIM, bias=False)
        self.wk = nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False)
        self.wv = nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=False)
        self.wo = nn.Linear(HEADS * HEAD_DIM, DIM, bias=False)
        self.w1 = nn.Linear(DIM, FFN, bias=False)
        self.w3 = nn.Linear(DIM, FFN, bias=False)
        self.w2 = nn.Linear(FFN, DIM, bias=False)
        self.attention_norm = RMSNorm(DIM)
        self.ffn_norm = RMSNorm(DIM)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        hn = self.attention_norm(x)
        q = self.wq(hn).view(b, s, HEADS, HEAD_DIM)
        k = self.wk(hn).view(b, s, KV_HEADS, HEAD_DIM)
        v = self.wv(hn).view(b, s, KV_HEADS, HEAD_DIM)
        q, k = rotary(q, freqs), rotary(k, freqs)
        rep = HEADS // KV_HEADS
        k = k[:, :, :, None, :].expand(b, s, KV_HEADS, rep, HEAD_DIM).reshape(b, s, HEADS, HEAD_DIM)
        v = v[:, :, :, None, :].expand(b, s, KV_HEADS, rep, HEAD_DIM).reshape(b, s, HEADS, HEAD_DIM)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        h = x + self.wo(o.transpose(1, 2).reshape(b, s, DIM))
        m = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(m)) * self.w3(m))


_SAVE = {
    torch.ops.aten.mm.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten.max.default,
}


def _op_context() -> Any:
    def context() -> Any:
        meta: dict[str, int] = defaultdict(int)

        def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
            key = "recompute_mm" if ctx.is_recompute else "forward_mm"
            if func == torch.ops.aten.mm.default:
                meta[key] += 1
            save = func in _SAVE and not (
                func == torch.ops.aten.mm.default and meta[key] % 2 == 0
            )
            return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE

        return create_selective_checkpoint_contexts(policy)

    return context


class Checkpointed(nn.Module):
    def __init__(self, inner: Block, mode: str) -> None:
        super().__init__()
        self.inner, self.mode = inner, mode
        self.ctx = _op_context() if mode == "op" else None

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        if self.ctx is not None:
            return checkpoint(self.inner, x, freqs, use_reentrant=False, context_fn=self.ctx)
        return checkpoint(self.inner, x, freqs, use_reentrant=False)


def build(layers: int, mode: str, compiled: bool) -> nn.ModuleList:
    blocks = []
    for i in range(layers):
        blk: nn.Module = Block()
        if mode in ("full", "op") or (mode == "half" and i % 2 == 1):
            blk = Checkpointed(blk, "op" if mode == "op" else "full")  # type: ignore[arg-type]
        if compiled:
            blk = torch.compile(blk, fullgraph=True)  # type: ignore[assignment]
        blocks.append(blk)
    return nn.ModuleList(blocks).to(device="cuda", dtype=torch.bfloat16)


def rope_freqs(seq: int) -> torch.Tensor:
    """Complex rotary factors (theta 500000, Llama 3) for ``seq`` positions, shaped to
    broadcast over (batch, seq, heads, head_dim / 2)."""
    pos = torch.arange(seq, device="cuda", dtype=torch.float32)
    inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device="cuda").float() / HEAD_DIM))
    freqs = torch.polar(torch.ones(seq, HEAD_DIM // 2, device="cuda"), torch.outer(pos, inv))
    return freqs.view(1, seq, 1, HEAD_DIM // 2)


def run_case(layers: int, mode: str, compiled: bool, batch: int, seq: int) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch._dynamo.reset()
    model = build(layers, mode, compiled)
    freqs = rope_freqs(seq)
    x0 = torch.randn(batch, seq, DIM, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    after_forward: list[int] = []

    def step() -> None:
        x = x0
        for blk in model:
            x = blk(x, freqs)
        torch.cuda.synchronize()
        after_forward.append(torch.cuda.memory_allocated())
        x.float().pow(2).mean().backward()

    for _ in range(3):
        step()
        model.zero_grad(set_to_none=True)
        x0.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    after_forward.clear()
    times = []
    for _ in range(6):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
        model.zero_grad(set_to_none=True)
        x0.grad = None
    peak = torch.cuda.max_memory_allocated()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    out = dict(
        layers=layers,
        mode=mode,
        compiled=compiled,
        batch=batch,
        seq=seq,
        step_s=statistics.median(times),
        times_s=times,
        base_allocated=base,
        peak_allocated=peak,
        peak_above_base=peak - base,
        stored_after_forward=max(after_forward) - base,
        weights_bytes=weights,
        peak_reserved=torch.cuda.max_memory_reserved(),
    )
    return out


def nvsmi() -> dict[str, str]:
    q = "power.draw,clocks.sm,clocks.max.sm,enforced.power.limit,power.default_limit,temperature.gpu,clocks.mem"
    r = subprocess.run(
        ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    )
    vals = [v.strip() for v in r.stdout.strip().split(",")]
    return dict(zip(q.split(","), vals, strict=False))


def power_probe(seconds: float = 15.0) -> dict[str, Any]:
    idle = [nvsmi() for _ in range(3)]
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    samples: list[dict[str, str]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append(nvsmi())
            time.sleep(0.5)

    th = threading.Thread(target=sampler)
    n = 0
    t0 = time.time()
    th.start()
    while time.time() - t0 < seconds:
        for _ in range(50):
            torch.mm(a, b)
        n += 50
        torch.cuda.synchronize()
    el = time.time() - t0
    stop.set()
    th.join()
    return dict(
        idle=idle,
        under_gemm=samples,
        gemm_tflops=2 * 8192**3 * n / el / 1e12,
        seconds=el,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--skip-power", action="store_true")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--modes", nargs="+", default=["none", "full", "op", "half"])
    ap.add_argument("--compiled", nargs="+", default=["eager", "compiled"])
    args = ap.parse_args()
    use_shape(args.shape)
    res: dict[str, Any] = dict(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        device=torch.cuda.get_device_name(),
        shape=dict(name=args.shape, dim=DIM, heads=HEADS, kv_heads=KV_HEADS, ffn=FFN),
        cases=[],
    )
    if not args.skip_power:
        res["power"] = power_probe()
        print("power", json.dumps(res["power"]["under_gemm"][-3:]), res["power"]["gemm_tflops"], flush=True)
    for compiled in [c == "compiled" for c in args.compiled]:
        for mode in args.modes:
            for layers in (2, 4):
                try:
                    c = run_case(layers, mode, compiled, args.batch, args.seq)
                except Exception as e:  # noqa: BLE001 -- record and go on
                    c = dict(layers=layers, mode=mode, compiled=compiled, error=repr(e)[:500])
                res["cases"].append(c)
                print(json.dumps({k: v for k, v in c.items() if k != "times_s"}), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
