"""What a :mod:`solver.profile.modern` run measures, and the guarded runner that measures it.

:class:`Plan` (training groups, prefill, micro-benchmark sizes, step counts), the reference
shapes, :func:`gpu_plan` (the H100 run) and :func:`tiny_plan` (the same cases at toy sizes),
and :class:`_Run`: the state of one run, which guards every case (an out-of-memory error or
any other failure is recorded in the case and the run goes on; cases that would start after
the time budget are skipped) and rewrites the JSON after each.  Imports only the standard
library and torch.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from solver.profile.modern_models import ModelShape
from solver.profile.modern_timing import _cleanup, _is_oom

__all__ = [
    "GPT_BARE",
    "GPT_H4096",
    "LLAMA3_8B",
    "LLAMA3_70B",
    "GiB",
    "Plan",
    "TrainGroup",
    "gpu_plan",
    "tiny_plan",
]

GiB = 1024**3


# ----------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainGroup:
    """One model built once, trained at several (seq, micro-batch) points."""

    shape: ModelShape
    points: tuple[tuple[int, int], ...]  # (seq, micro_batch)
    recompute: tuple[bool, ...] = (False, True)
    impl: str = "hand"  # "hand" | "hf"


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    train: tuple[TrainGroup, ...]
    prefill_shape: ModelShape | None
    prefill_seqs: tuple[int, ...]
    sdpa_heads: tuple[tuple[int, int], ...]  # (heads, kv_heads)
    sdpa_seqs: tuple[int, ...]
    sdpa_head_dim: int
    sdpa_backends: tuple[str, ...]
    gemm_shapes: tuple[ModelShape, ...]
    gemm_tokens: tuple[int, ...]
    gemm_square: int
    copy_bytes: int
    warmup: int = 3
    steps: int = 10
    micro_warmup: int = 3
    micro_reps: int = 10
    ledger: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


LLAMA3_8B = ModelShape("llama3-8b-l4", "llama", 4096, 4, 32, 14336, 128256, kv_heads=8)
LLAMA3_70B = ModelShape("llama3-70b-l2", "llama", 8192, 2, 64, 28672, 128256, kv_heads=8)
GPT_H4096 = ModelShape("gpt-h4096-l4", "gpt", 4096, 4, 32, 16384, 51200)
GPT_BARE = ModelShape("gpt-bare-h4096-l8", "gpt", 4096, 8, 32, 16384, 0)


def gpu_plan() -> Plan:
    """The H100 run (module docstring)."""
    return Plan(
        train=(
            # longest last in each group: an OOM there costs nothing that follows
            TrainGroup(LLAMA3_8B, ((2048, 1), (2048, 2), (4096, 1), (8192, 1), (16384, 1))),
            TrainGroup(LLAMA3_70B, ((2048, 1), (2048, 2), (4096, 1))),
            TrainGroup(GPT_BARE, ((2048, 1), (2048, 2), (2048, 4), (4096, 1), (8192, 1))),
            TrainGroup(GPT_H4096, ((2048, 1), (2048, 2), (4096, 1), (8192, 1))),
            TrainGroup(LLAMA3_8B, ((2048, 1), (8192, 1)), recompute=(False,), impl="hf"),
        ),
        prefill_shape=LLAMA3_8B,
        prefill_seqs=(2048, 8192),
        sdpa_heads=((32, 32), (32, 8), (64, 8)),
        sdpa_seqs=(2048, 4096, 8192, 16384),
        sdpa_head_dim=128,
        sdpa_backends=("default", "flash", "cudnn"),
        gemm_shapes=(replace(LLAMA3_8B, name="llama3-8b"), replace(LLAMA3_70B, name="llama3-70b")),
        gemm_tokens=(2048, 8192),
        gemm_square=8192,
        copy_bytes=GiB,
    )


def tiny_plan() -> Plan:
    """The same cases at toy sizes (CPU tests)."""
    llama = ModelShape("llama-tiny", "llama", 64, 2, 4, 160, 256, kv_heads=2, max_seq=64)
    llama_big = ModelShape("llama-tiny-big", "llama", 128, 2, 8, 256, 256, kv_heads=2, max_seq=64)
    gpt = ModelShape("gpt-tiny", "gpt", 64, 2, 4, 256, 200, max_seq=64)
    bare = ModelShape("gpt-bare-tiny", "gpt", 64, 3, 4, 256, 0, max_seq=64)
    return Plan(
        train=(
            TrainGroup(llama, ((16, 1), (16, 2), (32, 1))),
            TrainGroup(llama_big, ((16, 1),)),
            TrainGroup(bare, ((16, 1), (32, 1))),
            TrainGroup(gpt, ((16, 1),)),
            TrainGroup(llama, ((16, 1),), recompute=(False,), impl="hf"),
        ),
        prefill_shape=llama,
        prefill_seqs=(16, 32),
        sdpa_heads=((4, 4), (4, 2)),
        sdpa_seqs=(32, 64),
        sdpa_head_dim=16,
        sdpa_backends=("default", "flash", "cudnn"),
        gemm_shapes=(llama,),
        gemm_tokens=(32,),
        gemm_square=64,
        copy_bytes=1 << 20,
        warmup=1,
        steps=2,
        micro_warmup=1,
        micro_reps=2,
    )


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
@dataclass
class _Run:
    plan: Plan
    device: torch.device
    dtype: torch.dtype
    out_path: Path | None
    budget_s: float
    only: tuple[str, ...]
    t0: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)
    prefill_done: bool = False
    gqa: str = "enable_gqa"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def wants(self, section: str) -> bool:
        return not self.only or section in self.only

    def dump(self) -> None:
        self.results["wall_s"] = round(self.elapsed(), 1)
        if self.out_path is None:
            return
        tmp = self.out_path.with_suffix(self.out_path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.out_path)

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", flush=True)

    def case(self, rec: dict[str, Any], what: str, body: Callable[[], None]) -> bool:
        """Run ``body``; record an OOM or error in ``rec`` (``status``) and go on.

        Skipped (``status: skipped``) once the time budget is spent.  Returns whether it ran
        to the end.
        """
        if self.elapsed() > self.budget_s:
            rec["status"] = "skipped"
            rec["error"] = f"time budget {self.budget_s:.0f} s spent"
            self.log(f"SKIP {what}: budget")
            return False
        failed: str | None = None
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - every case is guarded
            failed = "oom" if _is_oom(exc) else "error"
            rec["status"] = failed
            rec["error"] = f"{type(exc).__name__}: {str(exc)[:600]}"
            if failed == "error":
                rec["traceback"] = traceback.format_exc()[-2000:]
        if failed:
            self.log(f"{failed.upper()} {what}: {rec['error'][:300]}")
        else:
            rec.setdefault("status", "ok")
        _cleanup(self.device)
        return failed is None
