"""Ground truth for a modern training stack on one GPU (torch + stdlib; transformers optional).

A standalone script -- it imports nothing from :mod:`solver` but its own ``modern_*`` modules
(run by path, it loads them without executing ``solver/__init__.py``), so it runs on a GPU
machine that has only PyTorch::

    python solver/profile/modern.py --out $OUT/raw-h100x1-modern.json
    python solver/profile/modern.py --cpu --tiny --out /tmp/modern.json   # CPU smoke run

It measures what a 2020s training stack does, as opposed to the 2021 Megatron-LM kernel
sequence of :mod:`solver.profile.gpt` (unfused attention with the scores in HBM, dropout):

* **A. training steps** of whole models in plain torch (:class:`DecoderLM`): bf16 parameters,
  ``torch.optim.AdamW(fused=True)`` (its ``exp_avg`` / ``exp_avg_sq`` follow the parameter
  dtype: 4 bytes per bf16 parameter), no dropout, causal
  ``F.scaled_dot_product_attention(is_causal=True)`` (flash attention on Hopper), each case
  without and with full activation recompute (``torch.utils.checkpoint`` per block,
  ``use_reentrant=False``).  Architectures: ``llama`` (RMSNorm, RoPE, GQA, SwiGLU, no biases,
  untied embedding / head, Hugging Face's loss: bf16 logits upcast with ``.float()`` then
  ``F.cross_entropy``) and ``gpt`` (LayerNorm, biases, learned positions, MHA, 4h GeLU), plus a
  *bare* GPT stack without embedding or head (input a random hidden state, loss the output
  mean) that isolates the per-layer activation memory.  Per case: step time (forward +
  backward + ``optimizer.step`` + ``zero_grad``), forward, forward + backward and optimizer
  times (CUDA events, every timed step kept), peak allocated / reserved memory, the memory
  allocated between steps once the Adam states exist, the bytes that the forward leaves alive
  and a ledger of the tensors autograd saved for backward (deduplicated by storage,
  parameters excluded, split by block).  The same step of ``transformers.LlamaForCausalLM``
  (``attn_implementation="sdpa"``) cross-checks the hand-written Llama.
* **B. prefill** (``torch.inference_mode``) of the Llama: time and peak memory, with the K/V
  of every layer kept as a cache would keep it, logits of the last token (what ``generate``
  computes) or of all tokens.
* **C. micro-benchmarks**: causal SDPA forward and forward + backward per backend (flash,
  cuDNN, PyTorch's default choice, whose kernels the profiler names); bf16 GEMMs of the
  Llama-3-8B / 70B block shapes (forward ``Y = X W^T``, data gradient ``dX = dY W``, weight
  gradient ``dW = dY^T X``); HBM copy bandwidth.

FLOP conventions (written into the JSON as well): a GEMM of ``m x k`` by ``k x n`` is
``2 m n k``.  Causal attention forward, "model" count (the full square, as MFU is usually
quoted): ``4 b s^2 H d`` (``QK^T`` and ``PV``); the causal kernel executes about half of it,
``4 b s^2 H d (s + 1) / (2 s)``.  Backward: 2x forward in the MFU convention, 2.5x in what a
flash kernel executes (it recomputes ``QK^T``).  A training step's model FLOPs are
``3 (2 T N_matmul + attention forward)`` with ``N_matmul`` the weights that enter a GEMM (the
LM head included, the embedding tables not).

Every case is guarded: an out-of-memory error or any other failure is recorded in the case and
the run goes on; the JSON is rewritten after every case, so a run cut short still leaves its
results.  ``--budget-s`` skips the cases that would start after that many seconds.

This module is the entry point (command line, environment record, the JSON's header, the
order of the sections, the summary table); the rest lives in
:mod:`~solver.profile.modern_models` (the hand-written models, FLOP counts, the Hugging
Face cross-check), :mod:`~solver.profile.modern_plan` (the plan and the guarded case
runner), :mod:`~solver.profile.modern_cases` (A and B), :mod:`~solver.profile.modern_micro`
(C) and :mod:`~solver.profile.modern_timing` (clocks and memory readings).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a file: register a bare `solver` package so `solver.profile.modern_*` imports
    # resolve without running solver/__init__.py (as solver/profile/run.py does).
    _here = Path(__file__).resolve().parent
    _root = _here.parent
    # This folder is sys.path[0]: drop it, so its modules are never importable as top-level
    # names (``import bench``) that could shadow other packages.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if "solver" not in sys.modules:
        _pkg = types.ModuleType("solver")
        _pkg.__path__ = [str(_root)]
        sys.modules["solver"] = _pkg

import torch  # noqa: E402

from solver.profile.modern_cases import (  # noqa: E402
    _prefill,
    _train_group,
    saved_tensor_ledger,
    time_prefill,
    time_training,
)
from solver.profile.modern_micro import (  # noqa: E402
    _micro,
    bench_copy,
    bench_gemms,
    bench_sdpa,
    choose_gqa_mode,
)
from solver.profile.modern_models import (  # noqa: E402
    FLOP_FORMULAS,
    DecoderLM,
    ModelShape,
    build_hf_llama,
    model_flops,
    transformers_version,
)
from solver.profile.modern_plan import Plan, _Run, gpu_plan, tiny_plan  # noqa: E402
from solver.profile.modern_timing import _cleanup, _gb  # noqa: E402

__all__ = [
    "FORMAT",
    "DecoderLM",
    "ModelShape",
    "Plan",
    "bench_copy",
    "bench_gemms",
    "bench_sdpa",
    "build_hf_llama",
    "gpu_plan",
    "main",
    "model_flops",
    "run",
    "saved_tensor_ledger",
    "summary",
    "time_prefill",
    "time_training",
    "tiny_plan",
]

#: Format tag of the JSON this script writes.
FORMAT = "shardwise-modern-profile/1"


# ----------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------
def _cudnn_version() -> int | None:
    try:
        v = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001
        return None
    return int(v) if v is not None else None


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "transformers": transformers_version(),
        "device": str(device),
        "env": {
            k: os.environ.get(k)
            for k in ("PYTORCH_CUDA_ALLOC_CONF", "NCCL_NVLS_ENABLE", "CUDA_VISIBLE_DEVICES")
        },
    }
    try:
        env["triton"] = importlib.import_module("triton").__version__
    except Exception:  # noqa: BLE001
        env["triton"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = torch.cuda.get_device_name(device)
        env["gpu_total_memory_bytes"] = int(props.total_memory)
        env["gpu_sm_count"] = int(props.multi_processor_count)
        env["gpu_capability"] = list(torch.cuda.get_device_capability(device))
        try:
            q = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit"
            res = subprocess.run(
                ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            env["nvidia_smi"] = res.stdout.strip()
            env["driver"] = res.stdout.split(",")[1].strip() if res.stdout else None
        except Exception as exc:  # noqa: BLE001
            env["nvidia_smi"] = f"failed: {exc}"
    return env


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def run(
    plan: Plan,
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    out_path: Path | None = None,
    budget_s: float = 1e9,
    only: tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Measure ``plan`` on ``device``; returns (and writes, if ``out_path``) the results.

    ``only``: sections to run, of ``micro``, ``train``, ``prefill``, ``hf`` (empty: all).
    """
    r = _Run(plan, device, dtype, out_path, budget_s, only)
    r.results.update(
        {
            "format": FORMAT,
            "command": " ".join(argv) if argv is not None else None,
            "env": environment(device),
            "settings": {
                "dtype": str(dtype).replace("torch.", ""),
                "warmup": plan.warmup,
                "steps": plan.steps,
                "micro_warmup": plan.micro_warmup,
                "micro_reps": plan.micro_reps,
                "budget_s": budget_s,
                "only": list(only),
                "optimizer": "torch.optim.AdamW(lr=1e-5, weight_decay=0.01, fused=True)",
                "zero_grad": "set_to_none=True",
                "dropout": 0.0,
                "attention": "F.scaled_dot_product_attention(is_causal=True)",
                "recompute": "torch.utils.checkpoint per block, use_reentrant=False",
                "loss": "logits (param dtype) .float() then F.cross_entropy, labels shifted",
            },
            "flop_formulas": FLOP_FORMULAS,
        }
    )
    r.log(f"env: {json.dumps(r.results['env'])}")
    r.gqa, why = choose_gqa_mode(device, dtype)
    r.results["settings"]["llama_gqa_mode"] = r.gqa
    r.results["settings"]["llama_gqa_mode_reason"] = why
    r.log(f"llama GQA mode: {r.gqa}{' (' + why + ')' if why else ''}")
    r.dump()
    if r.wants("micro"):
        _micro(r)
    for group in plan.train:
        if group.impl == "hf":
            if r.wants("hf"):
                _train_group(r, group)
        elif r.wants("train"):
            _train_group(r, group)
    if r.wants("prefill") and not r.prefill_done and plan.prefill_shape is not None:
        holder: dict[str, Any] = {}
        shape = plan.prefill_shape

        def build() -> None:
            holder["m"] = DecoderLM(shape, device, dtype, gqa=r.gqa)

        if r.case({}, "build for prefill", build):
            _prefill(r, holder.pop("m"))
        holder.clear()
        _cleanup(device)
    r.log("done")
    r.dump()
    print(summary(r.results), flush=True)
    return r.results


def summary(results: dict[str, Any]) -> str:
    """One line per training and prefill case (printed at the end of a run)."""
    lines = [
        "case | status | step ms | fwd+bwd ms | opt ms | peak alloc GB | peak reserved GB | "
        "after-init GB | params"
    ]
    for c in results.get("train", []):
        if c.get("status") != "ok":
            lines.append(
                f"{c.get('name', c.get('model'))} | {c.get('status')} | {c.get('error', '')[:80]}"
            )
            continue
        lines.append(
            f"{c['name']} | ok | {c['step_ms_median']:.2f} | {c['fwdbwd_ms_median']:.2f} | "
            f"{c['optimizer_ms_median']:.2f} | {_gb(c.get('peak_allocated_bytes'))} | "
            f"{_gb(c.get('peak_reserved_bytes'))} | {_gb(c.get('after_init_allocated_bytes'))} | "
            f"{c['params']}"
        )
    for p in results.get("prefill", []):
        if p.get("status") != "ok":
            lines.append(f"{p.get('name')} | {p.get('status')} | {p.get('error', '')[:80]}")
            continue
        lines.append(
            f"{p['name']} | ok | {p['ms_median']:.2f} | - | - | "
            f"{_gb(p.get('peak_allocated_bytes'))} | {_gb(p.get('peak_reserved_bytes'))} | "
            f"{_gb(p.get('base_allocated_bytes'))} | {p['params']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (tests)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (tests)")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"))
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip cases starting later")
    ap.add_argument(
        "--only", default="", help="comma-separated sections: micro, train, prefill, hf (all)"
    )
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: the plan's)")
    ap.add_argument("--warmup", type=int, default=0, help="warm-up steps (default: the plan's)")
    args = ap.parse_args(argv)
    if args.cpu:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            print("no CUDA device (use --cpu for a CPU run)", file=sys.stderr)
            return 2
        device = torch.device("cuda", torch.cuda.current_device())
    plan = tiny_plan() if args.tiny else gpu_plan()
    if args.steps:
        plan = replace(plan, steps=args.steps)
    if args.warmup:
        plan = replace(plan, warmup=args.warmup)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run(
        plan,
        device,
        getattr(torch, args.dtype),
        args.out,
        args.budget_s,
        only,
        argv=[sys.executable, *sys.argv] if argv is None else ["modern.py", *argv],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
