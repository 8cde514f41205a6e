"""Peak memory per logit of torchtitan's cross entropy under ``torch.compile`` (one GPU).

    python benchmarks/validation/modern/loss_peak_compiled.py --out raw-loss-peak-compiled.json

The same measurement as ``loss_peak.py`` (allocated peak of forward + backward above what
exists before the bf16 LM head, over b*s*V) for ``F.cross_entropy(logits.flatten(0, 1)
.float(), labels)`` compiled with ``torch.compile`` -- torchtitan's ``build_cross_entropy_loss``
when ``training.compile`` is on (2025 torchtitan; the Dec 2024 runs left the loss eager) --
and, in the same process, the eager ``plain`` case for reference.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn.functional as F


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1))


def measure(kind: str, b: int, s: int, h: int, v: int) -> dict[str, Any]:
    """Peak bytes per logit of head + loss forward/backward for ``kind`` (plain / compiled)."""
    loss_fn = torch.compile(_ce) if kind == "compiled" else _ce
    # Warm-up (compilation) on the same shapes, outside the measured region.
    for _ in range(2 if kind == "compiled" else 0):
        xw = torch.randn(b, s, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        ww = torch.randn(v, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        loss_fn(xw @ ww.t(), torch.randint(0, v, (b, s), device="cuda")).backward()
        del xw, ww
    torch.cuda.empty_cache()
    x = torch.randn(b, s, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(v, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, v, (b, s), device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    logits = x @ w.t()
    loss = loss_fn(logits, labels)
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return dict(kind=kind, b=b, s=s, h=h, v=v, peak_bytes=peak, per_logit=peak / (b * s * v))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.cuda.set_device(0)
    res: dict[str, Any] = dict(
        torch=torch.__version__, device=torch.cuda.get_device_name(), rows=[]
    )
    for kind in ("plain", "compiled"):
        for b, s in ((1, 8192), (2, 8192)):
            try:
                r = measure(kind, b, s, 4096, 128256)
            except Exception as e:  # noqa: BLE001 -- record and go on
                r = dict(kind=kind, b=b, s=s, error=repr(e)[:400])
            res["rows"].append(r)
            print(json.dumps(r), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
