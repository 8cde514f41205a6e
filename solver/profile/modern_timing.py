"""Timing and memory helpers of :mod:`solver.profile.modern`.

Marks on the device's stream (CUDA events, wall time on the CPU), allocator readings and the
cleanup between cases, medians, out-of-memory detection, timing of repeated calls, which
attention ops and kernels a call dispatched to (torch.profiler), and number formatting for the
log.  Imports only the standard library and torch.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Clock"]


class Clock:
    """Marks on the device's stream (CUDA events) or wall time (CPU); read after :meth:`sync`."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            ev.record()
            return ev
        return time.perf_counter()

    def ms(self, a: Any, b: Any) -> float:
        if self.cuda:
            return float(a.elapsed_time(b))
        return (float(b) - float(a)) * 1e3

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def _alloc(device: torch.device) -> int | None:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def _cleanup(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _med(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> list[float]:
    """Milliseconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    clock = Clock(device)
    for _ in range(warmup):
        fn()
    marks = [clock.mark()]
    for _ in range(reps):
        fn()
        marks.append(clock.mark())
    clock.sync()
    return [clock.ms(a, b) for a, b in zip(marks[:-1], marks[1:], strict=True)]


def _dispatch_ops(fn: Callable[[], Any], device: torch.device) -> list[str]:
    """Names of the attention ops and kernels that one call of ``fn`` ran (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    keys = ("attention", "flash", "fmha", "cudnn", "sdpa", "efficient", "mha")
    names = sorted({e.key for e in prof.key_averages() if any(k in e.key.lower() for k in keys)})
    return [n[:160] for n in names]


def _backend_of(ops: list[str]) -> str:
    """Which SDPA backend the aten op names show."""
    joined = " ".join(ops)
    for tag, name in (
        ("_scaled_dot_product_flash_attention", "flash"),
        ("_scaled_dot_product_cudnn_attention", "cudnn"),
        ("_scaled_dot_product_efficient_attention", "efficient"),
        ("_scaled_dot_product_attention_math", "math"),
        ("_scaled_dot_product_fused_attention_overrideable", "overrideable"),
    ):
        if tag in joined:
            return name
    return "unknown"


def _gb(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e9:.2f}"


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x
