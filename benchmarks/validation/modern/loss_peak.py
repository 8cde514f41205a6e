"""Peak memory of the LM head + cross entropy per logit, as torchtitan computes its loss
(torch only; one GPU).

    python benchmarks/validation/modern/loss_peak.py --out raw-loss-peak.json
    python benchmarks/validation/modern/loss_peak.py --kinds plain,compiled --out raw-loss-peak-compiled.json

For logits of shape (b, s, V) produced by a bf16 linear head, measures the allocated peak of
forward + backward above what exists before the head (the hidden states, the head weight),
divided by b*s*V, for:

* ``plain``: ``F.cross_entropy(logits.flatten(0, 1).float(), labels)`` -- torchtitan's
  ``cross_entropy_loss`` without tensor parallelism;
* ``loss_parallel``: the same under ``torch.distributed.tensor.parallel.loss_parallel()`` with
  the logits a DTensor sharded on the vocabulary (a one-rank mesh) -- torchtitan with TP;
* ``hf``: logits upcast to fp32 first, then ``F.cross_entropy`` (Hugging Face's
  ``ForCausalLMLoss``), for reference;
* ``compiled``: ``plain`` under ``torch.compile`` -- torchtitan's ``build_cross_entropy_loss``
  when ``training.compile`` is on (2025 torchtitan; the Dec 2024 runs left the loss eager),
  compiled on the same shapes before the measured region.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch
import torch.nn.functional as F


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1))


def measure(kind: str, b: int, s: int, h: int, v: int) -> dict[str, Any]:
    compiled = torch.compile(_ce) if kind == "compiled" else None
    for _ in range(2 if compiled is not None else 0):  # compile outside the measured region
        xw = torch.randn(b, s, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        ww = torch.randn(v, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        compiled(xw @ ww.t(), torch.randint(0, v, (b, s), device="cuda")).backward()  # type: ignore[misc]
        del xw, ww
    torch.cuda.empty_cache()
    x = torch.randn(b, s, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(v, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, v, (b, s), device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    logits = x @ w.t()
    if kind == "plain":
        loss = _ce(logits, labels)
    elif compiled is not None:
        loss = compiled(logits, labels)
    elif kind == "hf":
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(0, 1))
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard
        from torch.distributed.tensor.parallel import loss_parallel

        mesh = init_device_mesh("cuda", (1,))
        dt = DTensor.from_local(logits, mesh, [Shard(2)], run_check=False)
        with loss_parallel():
            loss = F.cross_entropy(dt.flatten(0, 1).float(), labels.flatten(0, 1))
            loss.backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        return dict(kind=kind, b=b, s=s, h=h, v=v, peak_bytes=peak, per_logit=peak / (b * s * v))
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return dict(kind=kind, b=b, s=s, h=h, v=v, peak_bytes=peak, per_logit=peak / (b * s * v))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", default="plain,hf,loss_parallel", help="comma-separated kinds")
    args = ap.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    torch.distributed.init_process_group("nccl")
    torch.cuda.set_device(0)
    res: dict[str, Any] = dict(torch=torch.__version__, device=torch.cuda.get_device_name(), rows=[])
    for kind in args.kinds.split(","):
        for b, s in ((1, 8192), (2, 8192)):
            try:
                r = measure(kind, b, s, 4096, 128256)
            except Exception as e:  # noqa: BLE001 -- record and go on
                r = dict(kind=kind, b=b, s=s, error=repr(e)[:400])
            res["rows"].append(r)
            print(json.dumps(r), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
