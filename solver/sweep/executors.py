"""Executors: solve sweep cases in parallel, yielding one record per case as it finishes.

``local``
    A :class:`concurrent.futures.ProcessPoolExecutor` (``forkserver`` start method where the
    platform has it, else ``spawn``) of N processes, N = the cores available by default.  Each
    case's CP-SAT gets ``max(1, cores // N)`` search workers so the machine is not
    oversubscribed (one worker per case in deterministic mode, the sweep's default).
``ray``
    Ray tasks (``pip install 'shardwise[ray]'``): ``ray.init(address=...)`` joins a running
    cluster (``auto`` or ``HOST:PORT``) or starts a local one; each case is a task of one CPU
    with ``max_retries`` so a case whose worker dies is retried elsewhere.  CP-SAT runs one
    search worker per task.

Both run the same worker function (:func:`solve_case`) on the same specs, so with
``deterministic=True`` they give the same objectives wherever CP-SAT finishes its search
within the time limit (see the README: a search cut short by a wall-clock limit can stop at a
different incumbent on a busier machine).

A case never stops the sweep: an exception becomes an ``ERROR`` record with the message, a
case still running at its hard deadline (:data:`TIMEOUT_FACTOR` x time limit +
:data:`TIMEOUT_GRACE_S`) a ``TIMEOUT`` record, and a case whose worker process dies is run
again, alone, up to :data:`MAX_ATTEMPTS` times in all, then recorded as ``ERROR``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from ..errors import SpecError
from .cases import Case, ResolvedCase

__all__ = [
    "FAILURE_STATUSES",
    "MAX_ATTEMPTS",
    "TIMEOUT_FACTOR",
    "TIMEOUT_GRACE_S",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "SolveSettings",
    "Task",
    "available_cores",
    "blank_record",
    "failure_record",
    "make_executor",
    "solve_case",
]

log = logging.getLogger(__name__)

#: A case whose worker process dies (out of memory, a crash in native code) is run at most this
#: many times in all, the retries alone so that a neighbour's crash is not blamed on it.
MAX_ATTEMPTS = 3
#: Hard per-case deadline = TIMEOUT_FACTOR x time limit + TIMEOUT_GRACE_S.  The planner's time
#: limit bounds CP-SAT only; the factor and the grace leave room for building the coefficient
#: tables and verifying the plan (well under a second on the bundled instances, several seconds
#: on 10^4-GPU clusters) before a case is declared stuck.
TIMEOUT_FACTOR = 3.0
TIMEOUT_GRACE_S = 30.0
#: Statuses that count as failures in the progress bar and the summary (INFEASIBLE does not:
#: it is an answer).
FAILURE_STATUSES = frozenset({"ERROR", "TIMEOUT", "MODEL_ERROR", "INVALID_INPUT"})
#: How often a local worker checks that the sweep's driver is still alive (seconds); a worker
#: whose driver was killed exits instead of finishing its case for nobody.
PARENT_POLL_S = 1.0
#: Cases queued per process, so a new case is ready when one finishes without queueing the
#: whole sweep (an interrupted sweep then has little to cancel).
QUEUE_PER_PROCESS = 2


@dataclass(frozen=True)
class SolveSettings:
    """How each case is solved (the same for every case of a sweep).

    Parameters
    ----------
    time_limit_s
        The planner's CP-SAT time limit per case (default 10 s).
    seed
        CP-SAT random seed (default 0).
    deterministic
        One CP-SAT worker per case, so that the same case gives the same plan on any executor
        (default True).
    num_workers
        CP-SAT search workers per case when not deterministic (default 1); executors set it.
    hard_timeout_s
        Stop a case still running after this long and record it as TIMEOUT (default
        ``TIMEOUT_FACTOR * time_limit_s + TIMEOUT_GRACE_S``).
    compare_baseline
        Also score the rubric baseline's plan for each case (default False).
    """

    time_limit_s: float = 10.0
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 1
    hard_timeout_s: float | None = None
    compare_baseline: bool = False

    @property
    def deadline_s(self) -> float:
        if self.hard_timeout_s is not None:
            return self.hard_timeout_s
        return TIMEOUT_FACTOR * self.time_limit_s + TIMEOUT_GRACE_S


#: The function a worker runs for one case; it must be importable (picklable by reference).
Task = Callable[[ResolvedCase, SolveSettings], dict[str, Any]]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


#: Sequence length at which a record's ``params_b`` counts a learned position table (GPT models):
#: 2,048, as in Narayanan et al. 2021 Table 1, so a model has one size whatever the workload.
PARAMS_SEQUENCE = 2048


def _params_b(case: ResolvedCase) -> float | None:
    from ..costmodel import total_params

    try:
        return float(total_params(case.model, PARAMS_SEQUENCE)) / 1e9
    except (ValueError, ArithmeticError):
        return None


def _base(key: str, labels: tuple[str, str, str], settings: SolveSettings) -> dict[str, Any]:
    return {
        "key": key,
        "model": labels[0],
        "cluster": labels[1],
        "workload": labels[2],
        "kind": None,
        "objective_name": None,
        "params_b": None,
        "status": None,
        "objective": None,
        "bound": None,
        "gap": None,
        "solve_time_s": None,
        "wall_s": None,
        "tokens_per_s": None,
        "num_gpus": None,
        "cost_per_hour": None,
        "cost_per_mtoken": None,
        "mfu": None,
        "step_time_s": None,
        "ttft_ms": None,
        "tpot_ms": None,
        "time_limit_s": settings.time_limit_s,
        "seed": settings.seed,
        "attempts": 1,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": None,
        "message": "",
        "plan": None,
    }


def blank_record(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """A record for ``case`` with its labels, kind and size filled in and no outcome yet."""
    rec = _base(case.key, (case.model.name, case.cluster.name, case.workload_label), settings)
    rec["kind"] = case.workload.kind
    rec["objective_name"] = case.workload.objective
    rec["params_b"] = _params_b(case)
    return rec


def failure_record(
    case: ResolvedCase | Case,
    status: str,
    message: str,
    settings: SolveSettings,
    *,
    wall_s: float | None = None,
    attempts: int | None = 1,
) -> dict[str, Any]:
    """A record for a case that produced no solver result (ERROR or TIMEOUT)."""
    if isinstance(case, ResolvedCase):
        rec = blank_record(case, settings)
    else:
        rec = _base(case.key, case.labels, settings)
    rec.update(
        status=status,
        message=_one_line(message),
        wall_s=wall_s,
        attempts=attempts,
        finished_at=_now(),
    )
    return rec


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class CaseTimeout(BaseException):
    """Raised inside a worker when a case passes its hard deadline.

    A BaseException, so that no ``except Exception`` inside the planner swallows it.
    """


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in this thread after ``seconds`` (SIGALRM; main thread only).

    Elsewhere (a non-Unix platform, a worker that runs tasks off the main thread) there is no
    hard deadline, only the planner's own time limit.  Modules must be imported before it is
    armed: an exception raised inside a C extension's initialisation becomes an ImportError.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _alarm(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def solve_case(case: ResolvedCase, settings: SolveSettings) -> dict[str, Any]:
    """Solve one case with :func:`solver.planner.plan`; never raises for a failing case.

    Returns the case's record: its labels, the solver status, objective, bound, gap, solve
    time, the plan's tokens/s, GPUs and cost, and the plan itself.
    """
    import importlib

    from ..planner import plan

    for module in _PRELOAD:  # import before the deadline is armed (see _deadline)
        importlib.import_module(module)
    start = time.perf_counter()
    try:
        with _deadline(settings.deadline_s):
            result = plan(
                case.model,
                case.cluster,
                case.workload,
                time_limit_s=settings.time_limit_s,
                seed=settings.seed,
                num_workers=settings.num_workers,
                deterministic=settings.deterministic,
                compare_baseline=settings.compare_baseline,
            )
    except CaseTimeout:
        return failure_record(
            case,
            "TIMEOUT",
            f"stopped at the hard deadline of {settings.deadline_s:g} s "
            f"(time limit {settings.time_limit_s:g} s)",
            settings,
            wall_s=time.perf_counter() - start,
        )
    except Exception as e:  # a failing case is recorded, the sweep goes on
        log.debug("case %s failed", case.key, exc_info=True)
        return failure_record(
            case, "ERROR", f"{type(e).__name__}: {e}", settings, wall_s=time.perf_counter() - start
        )
    rec = blank_record(case, settings)
    report = dict(result.report or {})
    tokens = _number(report.get("tokens_per_s")) if result.plan is not None else None
    cost = _number(report.get("cost_per_hour")) if result.plan is not None else None
    rec.update(
        status=result.status.value,
        objective=result.objective,
        bound=result.bound,
        gap=result.gap,
        solve_time_s=result.time_s,
        wall_s=time.perf_counter() - start,
        tokens_per_s=tokens,
        num_gpus=_number(report.get("num_gpus")) if result.plan is not None else None,
        cost_per_hour=cost,
        # $ per million tokens (training tokens, or generated tokens for inference).
        cost_per_mtoken=cost / 3600.0 / tokens * 1e6 if cost is not None and tokens else None,
        mfu=_number(report.get("mfu")),
        step_time_s=_number(report.get("step_time_s")),
        ttft_ms=_number(report.get("ttft_ms")),
        tpot_ms=_number(report.get("tpot_ms")),
        message=_one_line(result.message),
        finished_at=_now(),
        plan=result.plan.model_dump(mode="json", exclude_none=True) if result.plan else None,
    )
    if result.baseline is not None:
        rec["baseline_tokens_per_s"] = _number(result.baseline.get("tokens_per_s"))
    return rec


class Executor(Protocol):
    """Runs cases and yields their records as they finish (in any order)."""

    name: str

    @property
    def slots(self) -> int:
        """Cases solved at the same time."""
        ...

    def settings_for(self, settings: SolveSettings) -> SolveSettings:
        """``settings`` with the CP-SAT worker count this executor gives each case."""
        ...

    def run(
        self, cases: Sequence[ResolvedCase], settings: SolveSettings, task: Task
    ) -> Generator[dict[str, Any], None, None]:
        """Yield one record per case; stop and clean up (kill workers) when closed early."""
        ...


# ------------------------------------------------------------------------------------------
# local: a process pool
# ------------------------------------------------------------------------------------------
def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid was reused by someone else's process
            os._exit(1)


def _worker_init(parent_pid: int) -> None:
    """Set up a local worker process: Ctrl-C is the driver's to handle, logs are recorded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The planner's warnings (e.g. a MODEL_ERROR diff) are in each record's message; without a
    # handler Python would also print them on the terminal under the progress bar.
    logging.getLogger("solver").addHandler(logging.NullHandler())
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


#: Imported once by the fork server, so each worker starts with them loaded (about 2 s of
#: imports, mostly OR-Tools and the CP-SAT back-ends, that every worker would otherwise repeat).
_PRELOAD = [
    "solver.sweep.executors",
    "solver.planner",
    "solver.cpsat.plan_training",
    "solver.cpsat.plan_inference",
    "solver.evaluate",
    "solver.baselines",
]


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has already imported the planner (and OR-Tools).
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


class LocalExecutor:
    """A local process pool (see the module docstring).

    Parameters
    ----------
    processes
        Cases solved at once (default: the cores available).
    """

    name = "local"

    def __init__(self, processes: int | None = None) -> None:
        if processes is not None and processes < 1:
            raise SpecError(f"--workers: must be >= 1, got {processes}")
        self.cores = available_cores()
        self.processes = processes or self.cores

    @property
    def slots(self) -> int:
        return self.processes

    def settings_for(self, settings: SolveSettings) -> SolveSettings:
        from dataclasses import replace

        return replace(settings, num_workers=max(1, self.cores // self.processes))

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=_context(),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )

    def run(
        self, cases: Sequence[ResolvedCase], settings: SolveSettings, task: Task
    ) -> Generator[dict[str, Any], None, None]:
        pending: deque[ResolvedCase] = deque(cases)
        suspects: deque[ResolvedCase] = deque()  # in flight when a worker died: rerun alone
        died: dict[str, int] = {}
        inflight: dict[Future[dict[str, Any]], ResolvedCase] = {}
        pool = self._pool()
        finished = False
        try:
            while pending or suspects or inflight:
                if suspects:
                    if not inflight:
                        case = suspects.popleft()
                        inflight[pool.submit(task, case, settings)] = case
                else:
                    while pending and len(inflight) < QUEUE_PER_PROCESS * self.processes:
                        case = pending.popleft()
                        inflight[pool.submit(task, case, settings)] = case
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                lost: list[ResolvedCase] = []
                for fut in done:
                    case = inflight.pop(fut)
                    try:
                        rec = fut.result()
                    except BrokenProcessPool:
                        lost.append(case)
                        continue
                    except Exception as e:  # the task itself raised: record it
                        rec = failure_record(case, "ERROR", f"{type(e).__name__}: {e}", settings)
                    rec["attempts"] = died.get(case.key, 0) + 1
                    yield rec
                if not lost:
                    continue
                # A dead worker breaks the whole pool: every case in flight is lost with it.
                lost.extend(inflight.values())
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                for case in lost:
                    died[case.key] = died.get(case.key, 0) + 1
                    if died[case.key] >= MAX_ATTEMPTS:
                        yield failure_record(
                            case,
                            "ERROR",
                            f"the worker process died while solving this case, {died[case.key]} "
                            "times (out of memory, or a crash in native code)",
                            settings,
                            attempts=died[case.key],
                        )
                    else:
                        suspects.append(case)
                pool = self._pool()
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:  # interrupted (Ctrl-C, or the consumer stopped): kill, don't wait
                _kill_pool(pool)


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the workers, then wait (bounded) for the pool's manager thread to finish.

    Without the last join, the interpreter's exit hook (``concurrent.futures.process.
    _python_exit``) can wake the manager thread while it is closing its wake-up pipe and print
    ``OSError: Bad file descriptor`` with a traceback after a Ctrl-C (seen once in CI-like runs
    of ``tests/test_sweep.py::test_ctrl_c_stops_cleanly_keeping_finished_cases``).
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    for proc in procs:
        with contextlib.suppress(OSError, ValueError):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(timeout=5)
    if manager is not None:
        manager.join(timeout=5)


# ------------------------------------------------------------------------------------------
# ray: tasks on a Ray cluster
# ------------------------------------------------------------------------------------------
class RayExecutor:
    """Ray tasks (see the module docstring).

    Parameters
    ----------
    address
        ``None`` starts a local Ray instance; ``'auto'`` or ``'HOST:PORT'`` joins a cluster.
    num_cpus
        CPUs of a local instance, and the most cases in flight on a joined cluster (default:
        the cores available locally, or the cluster's CPUs).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if num_cpus is not None and num_cpus < 1:
            raise SpecError(f"--workers: must be >= 1, got {num_cpus}")
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SpecError(
                "--executor ray: Ray is not installed (pip install 'shardwise[ray]')"
            ) from None
        self.address = address
        self.num_cpus = num_cpus
        self._slots = num_cpus or available_cores()

    @property
    def slots(self) -> int:
        return self._slots

    def settings_for(self, settings: SolveSettings) -> SolveSettings:
        from dataclasses import replace

        return replace(settings, num_workers=1)  # each task holds one CPU

    def _connect(self) -> bool:
        """``ray.init`` unless already connected; True if this call started the connection."""
        import ray

        if ray.is_initialized():
            return False
        common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address is None:
                ray.init(num_cpus=self._slots, include_dashboard=False, **common)
            else:
                ray.init(address=self.address, **common)
        except ConnectionError as e:
            raise SpecError(
                f"--address: cannot reach a Ray cluster at {self.address} ({e})"
            ) from None
        if self.address is not None and self.num_cpus is None:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            self._slots = max(1, int(resources.get("CPU", 1)))
        return True

    def run(
        self, cases: Sequence[ResolvedCase], settings: SolveSettings, task: Task
    ) -> Generator[dict[str, Any], None, None]:
        import ray
        from ray.exceptions import RayError

        started = self._connect()
        remote = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)(task)
        settings_ref = ray.put(settings)
        pending: deque[ResolvedCase] = deque(cases)
        inflight: dict[Any, ResolvedCase] = {}
        finished = False
        try:
            while pending or inflight:
                while pending and len(inflight) < QUEUE_PER_PROCESS * self._slots:
                    case = pending.popleft()
                    inflight[remote.remote(case, settings_ref)] = case
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    case = inflight.pop(ref)
                    try:
                        rec: dict[str, Any] = ray.get(ref)
                    except RayError as e:  # retries exhausted, or the task itself raised
                        rec = failure_record(
                            case,
                            "ERROR",
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                            settings,
                            attempts=None,
                        )
                    else:
                        rec["attempts"] = None  # Ray retries a dead worker's task by itself
                    yield rec
            finished = True
        finally:
            if not finished:
                for ref in inflight:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_executor(
    executor: str | Executor, *, workers: int | None = None, address: str | None = None
) -> Executor:
    """An executor by name (``'local'`` or ``'ray'``), or ``executor`` itself."""
    if not isinstance(executor, str):
        return executor
    if executor == "local":
        if address is not None:
            raise SpecError("--address: only meaningful with --executor ray")
        return LocalExecutor(workers)
    if executor == "ray":
        return RayExecutor(address, workers)
    raise SpecError(f"--executor: must be 'local' or 'ray', got {executor!r}")
