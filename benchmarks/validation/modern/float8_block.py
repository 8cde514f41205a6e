"""Float8 training recipes on torchtitan-style Llama blocks (torch + torchao; one GPU).

    pip install --no-deps torchao-*.whl   # carried wheel
    python benchmarks/validation/modern/float8_block.py --out raw-float8-block.json

Times forward + backward of 4 Llama-3-8B blocks (seq 8192, micro-batch 1, per-block
``torch.compile``, no checkpointing) with their linears in bf16 and converted by torchao's
``convert_to_float8_training`` with the ``tensorwise`` and ``rowwise`` recipes
(``Float8LinearConfig.from_recipe_name``), to measure what each recipe costs per block on one
GPU (no tensor parallelism).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import torch
import torchtitan_block as tb


def run(recipe: str, layers: int = 4, seq: int = 8192) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch._dynamo.reset()
    blocks = torch.nn.ModuleList([tb.Block() for _ in range(layers)]).to("cuda", torch.bfloat16)
    if recipe != "bf16":
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        cfg = Float8LinearConfig.from_recipe_name(recipe)
        convert_to_float8_training(blocks, config=cfg)
    blocks = torch.nn.ModuleList([torch.compile(b, fullgraph=True) for b in blocks])
    freqs = tb.rope_freqs(seq)
    x0 = torch.randn(1, seq, tb.DIM, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    def step() -> None:
        x = x0
        for b in blocks:
            x = b(x, freqs)
        x.float().pow(2).mean().backward()

    for _ in range(4):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(8):
        a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        e.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(e) / 1e3)
    return dict(
        recipe=recipe, layers=layers, seq=seq, step_s=statistics.median(times), times_s=times
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torchao

    res: dict[str, Any] = dict(
        torch=torch.__version__,
        torchao=torchao.__version__,
        device=torch.cuda.get_device_name(),
        rows=[],
    )
    for recipe in ("bf16", "tensorwise", "rowwise"):
        try:
            r = run(recipe)
        except Exception as e:  # noqa: BLE001 -- record and go on
            r = dict(recipe=recipe, error=repr(e)[:600])
        res["rows"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "times_s"}), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
