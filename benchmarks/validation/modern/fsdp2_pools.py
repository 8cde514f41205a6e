"""Where an FSDP2 training step's reserved memory goes, and torchtitan's eager loss peak
(torch only; one GPU).

    python benchmarks/validation/modern/fsdp2_pools.py --out raw-h100x1-fsdp2-pools.json
    python benchmarks/validation/modern/fsdp2_pools.py --fake-world 8 --layers 8 --batch 2 \
        --seq 8192 --out raw-h100x1-fsdp2-pools-fake8.json

Two measurements behind terms of ``solver/costmodel/memory.py``:

* ``loss``: the allocated peak of the LM head + cross entropy per logit when the logits are
  dropped before the backward, as torchtitan's train step does (``pred = model(x); loss =
  loss_fn(pred, labels); del pred; loss.backward()``, torchtitan ``train.py`` at 9dec370),
  for ``plain`` (``F.cross_entropy(pred.flatten(0, 1).float(), ...)``), ``loss_parallel``
  (the same over a vocabulary-sharded DTensor on a one-rank mesh) and ``compiled``
  (``torch.compile`` of the plain loss);
* ``fsdp2``: a torchtitan-shaped step -- ``fully_shard`` on every block and then on the whole
  model, ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` over fp32 parameters,
  full activation checkpointing per block, foreach AdamW, ``zero_grad(set_to_none=True)`` --
  on a one-rank mesh: after three steps, the caching allocator's reserved segments summed per
  CUDA stream (``torch.cuda.memory._snapshot()``), the peak allocated and reserved of the
  third step, and the parameter counts of the root group (embedding, final norm, head) and of
  one block.  FSDP2 allocates its all-gather output on its copy-in stream and its
  reduce-scatter output (the sharded gradients) on its reduce-scatter stream; the allocator
  caches a block for its own stream only, so those pools stay reserved.  ``--fake-world N``
  runs the step alone over N ranks of PyTorch's fake process group on this one GPU (no-op
  collectives, every buffer sized as on a real rank).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

H, FFN, HEADS, KV, V = 4096, 14336, 32, 8, 128256


class Block(nn.Module):
    """A Llama-3-8B-shaped block (RMSNorm, GQA SDPA, SwiGLU), no RoPE (irrelevant here)."""

    def __init__(self) -> None:
        super().__init__()
        d = H // HEADS
        self.n1, self.n2 = nn.RMSNorm(H), nn.RMSNorm(H)
        self.wq = nn.Linear(H, HEADS * d, bias=False)
        self.wk = nn.Linear(H, KV * d, bias=False)
        self.wv = nn.Linear(H, KV * d, bias=False)
        self.wo = nn.Linear(HEADS * d, H, bias=False)
        self.w1 = nn.Linear(H, FFN, bias=False)
        self.w3 = nn.Linear(H, FFN, bias=False)
        self.w2 = nn.Linear(FFN, H, bias=False)

    def _fwd(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        d = H // HEADS
        y = self.n1(x)
        q = self.wq(y).view(b, s, HEADS, d).transpose(1, 2)
        k = self.wk(y).view(b, s, KV, d).transpose(1, 2)
        v = self.wv(y).view(b, s, KV, d).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.wo(o.transpose(1, 2).reshape(b, s, H))
        m = self.n2(x)
        return x + self.w2(F.silu(self.w1(m)) * self.w3(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self._fwd, x, use_reentrant=False)


class Model(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(V, H)
        self.layers = nn.ModuleList(Block() for _ in range(layers))
        self.norm = nn.RMSNorm(H)
        self.out = nn.Linear(H, V, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids)
        for blk in self.layers:
            x = blk(x)
        return self.out(self.norm(x))


def _ce(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))


def loss_peak(kind: str, b: int, s: int) -> dict[str, Any]:
    """Peak above the head's input and weight, per logit, logits dropped before backward."""
    fn = torch.compile(_ce) if kind == "compiled" else _ce
    if kind == "compiled":
        for _ in range(2):
            xw = torch.randn(b, s, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            ww = torch.randn(V, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            fn(xw @ ww.t(), torch.randint(0, V, (b, s), device="cuda")).backward()
            del xw, ww
    torch.cuda.empty_cache()
    x = torch.randn(b, s, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(V, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (b, s), device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    pred = x @ w.t()
    if kind == "loss_parallel":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard
        from torch.distributed.tensor.parallel import loss_parallel

        mesh = init_device_mesh("cuda", (1,))
        dt = DTensor.from_local(pred, mesh, [Shard(2)], run_check=False)
        del pred
        with loss_parallel():
            loss = _ce(dt, labels)
            del dt
            loss.backward()
    else:
        loss = fn(pred, labels)
        del pred
        loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return dict(kind=kind, b=b, s=s, peak_bytes=peak, per_logit=peak / (b * s * V))


def fsdp2_step(layers: int, b: int, s: int, world: int = 1) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    torch.cuda.empty_cache()
    mesh = init_device_mesh("cuda", (world,))
    model = Model(layers).cuda()
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for i, blk in enumerate(model.layers):
        fully_shard(blk, mesh=mesh, mp_policy=mp, reshard_after_forward=i < layers - 1)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    block_params = sum(p.numel() for p in model.layers[0].parameters())
    total = sum(p.numel() for p in model.parameters())
    root = total - layers * block_params
    ids = torch.randint(0, V, (b, s), device="cuda")
    out: dict[str, Any] = dict(
        layers=layers,
        b=b,
        s=s,
        world=world,
        block_params=block_params,
        root_params=root,
        params=total,
    )
    for step in range(3):
        if step == 2:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        opt.zero_grad(set_to_none=True)
        pred = model(ids)
        loss = _ce(pred, ids)
        del pred
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        torch.cuda.synchronize()
    out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    out["allocated_after_step_bytes"] = torch.cuda.memory_allocated()
    default = torch.cuda.current_stream().cuda_stream
    pools: dict[str, dict[str, int]] = {}
    for seg in torch.cuda.memory._snapshot()["segments"]:
        key = "default" if seg["stream"] == default else f"stream_{seg['stream']}"
        p = pools.setdefault(key, dict(total_size=0, allocated_size=0, segments=0))
        p["total_size"] += int(seg["total_size"])
        p["allocated_size"] += int(seg["allocated_size"])
        p["segments"] += 1
    out["reserved_by_stream"] = pools
    del model, opt
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument(
        "--fake-world",
        type=int,
        default=0,
        help="run only the FSDP2 step, sharded over this many ranks of PyTorch's fake process "
        "group on this one GPU (collectives are no-ops; every buffer is allocated as on a real "
        "rank), instead of the one-rank NCCL measurements",
    )
    args = ap.parse_args()
    if args.fake_world:
        from torch.testing._internal.distributed.fake_pg import FakeStore

        torch.cuda.set_device(0)
        torch.distributed.init_process_group(
            "fake", store=FakeStore(), rank=0, world_size=args.fake_world
        )
        res = dict(
            torch=torch.__version__,
            device=torch.cuda.get_device_name(),
            alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
            fsdp2=fsdp2_step(args.layers, args.batch, args.seq, args.fake_world),
        )
        print(json.dumps(res["fsdp2"]), flush=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        return
    for k, v in dict(
        MASTER_ADDR="127.0.0.1", MASTER_PORT="29513", RANK="0", WORLD_SIZE="1"
    ).items():
        os.environ.setdefault(k, v)
    torch.distributed.init_process_group("nccl")
    torch.cuda.set_device(0)
    res: dict[str, Any] = dict(
        torch=torch.__version__,
        device=torch.cuda.get_device_name(),
        alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        loss=[],
    )
    for kind in ("plain", "loss_parallel", "compiled"):
        for b in (1, 2):
            try:
                r = loss_peak(kind, b, 8192)
            except Exception as e:  # noqa: BLE001 -- record and go on
                r = dict(kind=kind, b=b, error=repr(e)[:400])
            res["loss"].append(r)
            print(json.dumps(r), flush=True)
    try:
        res["fsdp2"] = fsdp2_step(args.layers, args.batch, args.seq)
    except Exception as e:  # noqa: BLE001
        res["fsdp2"] = dict(error=repr(e)[:800])
    print(json.dumps(res["fsdp2"]), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
