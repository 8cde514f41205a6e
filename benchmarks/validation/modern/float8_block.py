"""Float8 training recipes on torchtitan-style Llama blocks (torch + torchao; one GPU).

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .wheels/torchao-*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/validation/modern/float8_block.py --out raw.json

Times forward + backward of 4 Llama-3-8B blocks (seq 8192, micro-batch 1, per-block
``torch.compile``, no checkpointing; the blocks of ``torchtitan_block.py``) with their linears
in bf16 and converted by torchao's ``convert_to_float8_training`` with the ``tensorwise`` and
``rowwise`` recipes (``Float8LinearConfig.from_recipe_name``), to measure what each recipe
costs per block on one GPU (no tensor parallelism).  Every recipe starts from the same
weights (seed 0) and input, and its forward output is compared with bf16's
(``fwd_rel_err_vs_bf16``: fp8 should land at a few percent, NaN never).  Gradients are reset
after every step, as a training loop does.  Without CUDA or torchao it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from typing import Any

import torch
import torchtitan_block as tb


def _blocks(recipe: str, layers: int) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([tb.Block() for _ in range(layers)]).to("cuda", torch.bfloat16)
    if recipe != "bf16":
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        cfg = Float8LinearConfig.from_recipe_name(recipe)
        convert_to_float8_training(blocks, config=cfg)
    return torch.nn.ModuleList([torch.compile(b, fullgraph=True) for b in blocks])


def run(recipe: str, layers: int, seq: int, ref: torch.Tensor | None) -> dict[str, Any]:
    """Median forward + backward time of ``layers`` blocks under one recipe."""
    torch.cuda.empty_cache()
    torch._dynamo.reset()
    blocks = _blocks(recipe, layers)
    freqs = tb.rope_freqs(seq)
    gen = torch.Generator(device="cuda").manual_seed(1)
    x0 = torch.randn(1, seq, tb.DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    x0.requires_grad_(True)

    def forward() -> torch.Tensor:
        x = x0
        for b in blocks:
            x = b(x, freqs)
        return x

    def step() -> None:
        forward().float().pow(2).mean().backward()
        blocks.zero_grad(set_to_none=True)
        x0.grad = None

    for _ in range(4):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(12):
        a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        e.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(e) / 1e3)
    with torch.no_grad():
        y = forward().detach()
    med = statistics.median(times)
    # Model FLOPs of fwd + bwd: 3 x (2 tokens x matmul params + causal attention 2 s^2 H d).
    p_mm = 2 * tb.DIM * tb.DIM + 2 * tb.DIM * tb.KV_HEADS * tb.HEAD_DIM + 3 * tb.DIM * tb.FFN
    flops = 3 * layers * (2 * seq * p_mm + 2 * seq * seq * tb.DIM)
    row: dict[str, Any] = dict(
        recipe=recipe, layers=layers, seq=seq, step_s=med, times_s=times,
        spread=(max(times) - min(times)) / med, model_tflops_causal=flops / med / 1e12,
        peak_allocated=torch.cuda.max_memory_allocated(),
        fwd_rel_err_vs_bf16=(
            float((y.double() - ref.double()).norm() / ref.double().norm())
            if ref is not None else None
        ),
    )  # fmt: skip
    row["_out"] = y
    return row


def _meta() -> dict[str, Any]:
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,"
         "power.limit,temperature.gpu", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return dict(
        date_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        torch=torch.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(), device=torch.cuda.get_device_name(),
        nvidia_smi=smi, block=dict(dim=tb.DIM, heads=tb.HEADS, kv_heads=tb.KV_HEADS, ffn=tb.FFN),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--recipes", nargs="+", default=["bf16", "tensorwise", "rowwise"])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("float8_block: needs a CUDA GPU; nothing measured")
        return
    try:
        import torchao
    except ImportError:
        print("float8_block: torchao is not importable (carry .wheels/, see the docstring)")
        return
    res: dict[str, Any] = dict(meta=_meta(), torchao=torchao.__version__, rows=[])
    ref = None
    for recipe in args.recipes:
        try:
            r = run(recipe, args.layers, args.seq, ref)
            out = r.pop("_out")
            if recipe == "bf16":
                ref = out
        except Exception as e:  # noqa: BLE001 -- record and go on
            r = dict(recipe=recipe, error=repr(e)[:600])
        res["rows"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "times_s"}), flush=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    res["meta"]["nvidia_smi_after"] = _meta()["nvidia_smi"]
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
