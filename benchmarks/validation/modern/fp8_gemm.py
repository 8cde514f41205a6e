"""FP8 vs BF16 GEMM rates and the CUDA context size on one GPU (torch only).

    python benchmarks/validation/modern/fp8_gemm.py --out raw-fp8.json

Times ``torch._scaled_mm`` (FP8 e4m3 x e4m3 -> bf16, tensorwise and rowwise scales: what
torchao/torchtitan Float8 and Transformer Engine call) against ``torch.mm`` in bf16 at the
GEMM shapes of Llama-3 8B/70B blocks (tokens 8192), plus the cast of a bf16 activation to FP8
(read 2 B, write 1 B per element).  Also records the memory the CUDA context holds outside
PyTorch's caching allocator (``torch.cuda.mem_get_info`` used minus reserved, after a first
GEMM has loaded cuBLAS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

SHAPES = {  # name: (m, k, n) of (m x k) @ (k x n)
    "8b_qkv": (8192, 4096, 6144),
    "8b_o": (8192, 4096, 4096),
    "8b_gate_up": (8192, 4096, 28672),
    "8b_down": (8192, 14336, 4096),
    "70b_qkv": (8192, 8192, 10240),
    "70b_gate_up": (8192, 8192, 57344),
    "70b_down": (8192, 28672, 8192),
    "square_8192": (8192, 8192, 8192),
}


def _time(fn: Any, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) / 1e3)
    return statistics.median(out)


def _bench_shape(name: str, m: int, k: int, n: int) -> dict[str, Any]:
    """bf16 vs FP8 (tensorwise, rowwise scales) GEMM of one shape, and the FP8 cast."""
    dev = torch.device("cuda")
    f8 = torch.float8_e4m3fn
    a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
    flops = 2.0 * m * k * n
    a8, w8 = a.to(f8), w.to(f8)
    one = torch.ones((), device=dev, dtype=torch.float32)
    sa = torch.ones(m, 1, device=dev, dtype=torch.float32)
    sb = torch.ones(1, n, device=dev, dtype=torch.float32)

    def bf16() -> Any:
        return torch.mm(a, w.t())

    def tensorwise() -> Any:
        return torch._scaled_mm(a8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    def rowwise() -> Any:
        return torch._scaled_mm(a8, w8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)

    def cast() -> Any:
        return a.to(f8)

    t_bf16, t_tw, t_cast = _time(bf16), _time(tensorwise), _time(cast)
    try:
        t_rw = _time(rowwise)
    except Exception as e:  # noqa: BLE001 - record why and go on
        t_rw = float("nan")
        print(name, "rowwise failed:", e)
    row = {
        "name": name, "m": m, "k": k, "n": n,
        "bf16_s": t_bf16, "fp8_tensorwise_s": t_tw, "fp8_rowwise_s": t_rw,
        "bf16_tflops": flops / t_bf16 / 1e12,
        "fp8_tensorwise_tflops": flops / t_tw / 1e12,
        "fp8_rowwise_tflops": flops / t_rw / 1e12,
        "cast_activation_s": t_cast,
        "cast_GBps": 3.0 * m * k / t_cast / 1e9,
    }  # fmt: skip
    print(json.dumps(row))
    torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda")
    free0, total = torch.cuda.mem_get_info()
    x = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    (x @ x).sum().item()
    free1, _ = torch.cuda.mem_get_info()
    context = {
        "total_GB": total / 1e9,
        "used_outside_allocator_GB": (total - free1 - torch.cuda.memory_reserved()) / 1e9,
        "used_before_first_gemm_GB": (total - free0) / 1e9,
    }
    del x
    rows = [_bench_shape(name, *shape) for name, shape in SHAPES.items()]
    doc = {
        "format": "shardwise-fp8-gemm/1",
        "meta": {
            "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d"),
        },
        "context": context,
        "gemms": rows,
    }
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(json.dumps(context))


if __name__ == "__main__":
    main()
