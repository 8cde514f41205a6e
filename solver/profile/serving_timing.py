"""The timing machinery of :mod:`solver.profile.serving`: the run's context, metadata, timers.

:class:`Ctx` (device, mode, repeats, budget); the run's metadata and ``nvidia-smi`` readings;
:func:`time_calls` (back-to-back calls captured in a CUDA graph, replayed between CUDA events);
one call timed eagerly and replayed from a graph (:func:`eager_time`, :func:`graph_time`) and
its kernel count (torch.profiler); the inputs' helpers (rotated copies, random tensors,
relative errors).  Imports only the standard library; torch is imported inside the functions.
"""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from solver.profile.serving_shapes import DATASHEET

if TYPE_CHECKING:
    import torch

__all__ = [
    "REPLAY_TARGET_S",
    "ROTATE_BYTES",
    "Ctx",
    "capture",
    "copies",
    "count_kernels",
    "eager_and_graph",
    "eager_time",
    "fmt",
    "graph_time",
    "nvsmi",
    "randn",
    "rel_err",
    "release",
    "run_meta",
    "time_calls",
    "timed",
    "wall",
]

#: One replay reads at least this many bytes of rotated inputs (4x the H100's 50 MB L2).
ROTATE_BYTES = 200e6
#: Aim of one timed replay (long enough that event resolution, ~0.5 us, does not matter).
REPLAY_TARGET_S = 2e-3


class Ctx:
    """Device, mode and the timing rules of one run."""

    def __init__(
        self, device: torch.device, quick: bool, log: Callable[[str], None] | None
    ) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.quick = quick
        self.repeats = 3 if quick else 7
        self.warmup = 1 if quick else 2
        self._log = log
        self._t0 = time.perf_counter()
        self.deadline: float | None = None

    def late(self) -> bool:
        """Past the run's budget (the GEMM sweep stops between shapes)."""
        return self.deadline is not None and time.perf_counter() > self.deadline

    def say(self, msg: str) -> None:
        if self._log is not None:
            self._log(f"[{time.perf_counter() - self._t0:7.1f}s] {msg}")


# ----------------------------------------------------------------------------- environment


def run_meta(ctx: Ctx) -> dict[str, Any]:
    import torch

    meta: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": getattr(torch.version, "cuda", None),
        "cudnn": torch.backends.cudnn.version() if ctx.cuda else None,  # type: ignore[no-untyped-call]
        "device": str(ctx.device),
        "quick": ctx.quick,
        "datasheet": DATASHEET,
        "timing": (
            "CUDA-graph replay of back-to-back calls between CUDA events, median of repeats / "
            "calls per replay; inputs rotated over > 4x L2"
        ),
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        meta.update(
            gpu=p.name,
            gpu_sm_count=p.multi_processor_count,
            gpu_total_memory_bytes=p.total_memory,
            gpu_l2_bytes=getattr(p, "L2_cache_size", None),
            gpu_capability=[p.major, p.minor],
        )
    meta["nvidia_smi"] = nvsmi(ctx)
    return meta


_SMI_FIELDS = (
    "name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit,"
    "temperature.gpu,clocks_event_reasons.active"
)


def nvsmi(ctx: Ctx) -> str | None:
    """One ``nvidia-smi`` reading (clocks, power, throttle reasons); None without a GPU."""
    if not ctx.cuda:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return (out.stdout.strip() or out.stderr.strip())[:400]
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e!r}"[:200]


def release(ctx: Ctx) -> None:
    import gc

    import torch

    gc.collect()
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- timing


def time_calls(ctx: Ctx, calls: Sequence[Callable[[], Any]], est_s: float) -> dict[str, Any]:
    """Seconds per call of ``calls`` (cycled), CUDA-graph replay if possible.

    ``est_s`` is a guess of one call's time, used only to size a replay to about
    :data:`REPLAY_TARGET_S`.  Returns ``s`` (median), ``spread`` ((max - min) / median over
    the repeats), ``inner`` (calls per replay) and ``how`` (``graph``, ``eager-loop`` or
    ``cpu``).
    """

    inner = max(len(calls), min(400, math.ceil(REPLAY_TARGET_S / max(est_s, 1e-7))))
    if ctx.quick:
        inner = len(calls)

    def loop() -> None:
        for i in range(inner):
            calls[i % len(calls)]()

    for c in calls:  # warm-up: handles, workspaces, autotuning outside the capture
        c()
    how = "cpu"
    run: Callable[[], None] = loop
    graph = None
    if ctx.cuda:
        how = "graph"
        try:
            graph, _ = capture(loop)
            run = graph.replay
        except Exception as e:  # noqa: BLE001 -- some kernels cannot be captured
            how = f"eager-loop (capture failed: {type(e).__name__})"
            run = loop
    for _ in range(ctx.warmup):
        run()
    times = [timed(ctx, run) / inner for _ in range(ctx.repeats)]
    del graph
    med = statistics.median(times)
    return {
        "s": med,
        "spread": (max(times) - min(times)) / med if med > 0 else None,
        "inner": inner,
        "how": how,
    }


def capture(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """A CUDA graph of one call of ``fn`` and the (static) output that call returned."""
    import torch

    torch.cuda.synchronize()
    s = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()  # warm-up on the side stream, as torch.cuda.graphs' docs require
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    torch.cuda.synchronize()
    return g, out


def timed(ctx: Ctx, fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``: CUDA events on a GPU, wall clock on a CPU."""
    import torch

    if not ctx.cuda:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    a = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    b = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    a.record()
    fn()
    b.record()
    b.synchronize()
    return float(a.elapsed_time(b)) / 1e3


def copies(one_bytes: float, quick: bool) -> int:
    """How many copies of an input rotate so that one pass reads :data:`ROTATE_BYTES`."""
    if quick:
        return 2
    return max(1, min(64, math.ceil(ROTATE_BYTES / max(one_bytes, 1.0))))


def randn(shape: Sequence[int], ctx: Ctx, dtype: Any, scale: float = 1.0) -> torch.Tensor:
    """Standard normal samples times ``scale``, of ``shape`` and ``dtype``, on the device."""
    import torch

    return (torch.randn(*shape, device=ctx.device, dtype=torch.float32) * scale).to(dtype)


def rel_err(out: Any, ref: Any) -> float:
    """``||out - ref|| / ||ref||`` in float64 (NaN if either has a NaN)."""
    o, r = out.double(), ref.double()
    return float((o - r).norm() / r.norm().clamp_min(1e-300))


# ----------------------------------------------------------------- eager and graphed calls


def count_kernels(ctx: Ctx, fn: Callable[[], Any]) -> int | None:
    """GPU kernels (and memcpy/memset) one call of ``fn`` launches (torch.profiler)."""
    if not ctx.cuda:
        return None
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA"))
    except Exception:  # noqa: BLE001 -- profiler unavailable: the count is optional
        return None


def eager_time(ctx: Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """One call of ``fn`` timed eagerly: a loop of ``n_steps`` back to back (``eager_s``)
    and the host's time to issue one call after a synchronise (``host_issue_s``)."""
    import torch

    for _ in range(ctx.warmup + 1):
        fn()

    def loop() -> None:
        for _ in range(n_steps):
            fn()

    eager = statistics.median(timed(ctx, loop) for _ in range(ctx.repeats)) / n_steps
    issue = []
    for _ in range(ctx.repeats * 3):
        if ctx.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        issue.append(time.perf_counter() - t)
    return {"eager_s": eager, "host_issue_s": statistics.median(issue)}


def graph_time(ctx: Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """One call of ``fn`` replayed from a CUDA graph (``graph_s``), and the replay's output
    against an eager call's (``graph_vs_eager_rel_err``, 0 when the kernels are the same)."""
    import torch

    if not ctx.cuda:
        return {"graph_s": None, "graph": "skipped: no CUDA"}
    ref = fn()
    g, static = capture(fn)
    for _ in range(ctx.warmup):
        g.replay()
    torch.cuda.synchronize()

    def replays() -> None:
        for _ in range(n_steps):
            g.replay()

    graph = statistics.median(timed(ctx, replays) for _ in range(ctx.repeats)) / n_steps
    return {"graph_s": graph, "graph_vs_eager_rel_err": rel_err(static, ref)}


def eager_and_graph(ctx: Ctx, fn: Callable[[], Any], n_steps: int) -> dict[str, Any]:
    """:func:`eager_time` then :func:`graph_time` of one call, and their difference."""
    out = eager_time(ctx, fn, n_steps) | graph_time(ctx, fn, n_steps)
    if out["graph_s"] is not None:
        out["eager_minus_graph_s"] = out["eager_s"] - out["graph_s"]
    return out


def wall(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    """Wall seconds of one call of ``fn``, between two calls of ``sync``."""
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def fmt(t: dict[str, Any]) -> str:
    """The ``*_s`` floats of ``t`` in microseconds (for the log)."""
    return " ".join(
        f"{k}={v * 1e6:.1f}us" for k, v in t.items() if isinstance(v, float) and k.endswith("_s")
    )
