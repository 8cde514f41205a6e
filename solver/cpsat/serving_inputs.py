"""The serving planner's inputs: :func:`~solver.cpsat.plan_serving.plan_serving`'s arguments
checked and resolved against the workload's defaults.

:func:`checked_inputs` checks the arguments in turn (the first bad one raises a
:class:`~solver.errors.SpecError` naming it) and fills in, from the workload, the traffic
(``request_rate``, ``arrival: trace`` with ``trace``, the length distributions), the SLOs and
their percentile and the ``max_num_seqs`` candidates; the result is one frozen
:class:`Inputs` that every later phase of the planner reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError, check_solve_options
from ..evaluate.calibration import calibrated_cluster
from ..serving import DEFAULT_MAX_NUM_SEQS, Lengths, Requests, lengths_from_spec
from ..serving.api import check_percentile
from ..serving.workload import load_workload_trace
from ..specs import Cluster, InferenceWorkload, Model
from .deadline import Deadline

__all__ = ["OBJECTIVES", "ROUTINGS", "Inputs", "checked_inputs"]


#: What the serving planner optimises (:mod:`solver.cpsat.plan_serving`'s docstring).
OBJECTIVES: tuple[str, ...] = ("min_cost", "min_gpus", "max_goodput")
#: Dispatch of the fleet verification (:mod:`solver.cpsat.plan_serving`'s docstring).
ROUTINGS: tuple[str, ...] = ("weighted_random", "weighted_round_robin", "jsq")


@dataclass(frozen=True)
class Inputs:
    """The call's arguments, checked, with the workload's defaults filled in."""

    cluster: Cluster  # calibrated when it names a calibration
    objective: str
    rate: float | None  # None: max_goodput without a target
    prompt: Lengths
    output: Lengths
    trace: Requests | None
    slo: tuple[float | None, float | None]  # TTFT, TPOT (ms)
    percentile: float
    tps: list[int] | None
    pps: list[int] | None
    seqs: list[int]
    routing: str
    search_requests: int
    rel_tol: float
    seed: int
    num_workers: int
    trim: bool
    settings: dict[str, Any]  # reported as the result's settings
    t0: float  # time.perf_counter() at the call's start
    deadline: Deadline


def checked_inputs(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    t0: float,
    *,
    rate: float | None,
    objective: str | None,
    ttft_slo_ms: float | None,
    tpot_slo_ms: float | None,
    prompt: Lengths | None,
    output: Lengths | None,
    trace: Requests | None,
    tp: Sequence[int] | None,
    pp: Sequence[int] | None,
    max_num_seqs: Sequence[int] | None,
    search_requests: int,
    rel_tol: float,
    time_limit_s: float,
    seed: int,
    num_workers: int,
    trim: bool,
    routing: str,
    slo_percentile: float | None,
    workload_dir: Path | None,
) -> Inputs:
    """:func:`plan_serving`'s arguments checked in turn (the first bad one raises a
    :class:`SpecError` naming it) and resolved against the workload's defaults."""
    check_solve_options(time_limit_s=time_limit_s, seed=seed, num_workers=num_workers)
    if not isinstance(workload, InferenceWorkload):
        raise SpecError("workload: the serving planner needs an inference workload")
    if workload.attention != "flash":
        raise SpecError(
            f"attention: serving is priced with flash attention, got {workload.attention!r}"
        )
    obj = _objective(objective, cluster)
    if routing not in ROUTINGS:
        raise SpecError(f"routing: expected one of {', '.join(ROUTINGS)}, got {routing!r}")
    q = check_percentile(workload.slo_percentile if slo_percentile is None else slo_percentile)
    slo = (
        _check_slo(workload.ttft_ms if ttft_slo_ms is None else ttft_slo_ms, "ttft_slo_ms"),
        _check_slo(workload.tpot_ms if tpot_slo_ms is None else tpot_slo_ms, "tpot_slo_ms"),
    )
    if slo == (None, None):
        raise SpecError("ttft_slo_ms: give a TTFT or TPOT SLO (or both), got neither")
    if (
        isinstance(search_requests, bool)
        or not isinstance(search_requests, int)
        or not (100 <= search_requests <= 100_000)
    ):
        raise SpecError(
            f"search_requests: must be an integer in 100..100,000, got {search_requests!r}"
        )
    if not (isinstance(rel_tol, (int, float)) and 0.001 <= rel_tol <= 0.5):
        raise SpecError(f"rel_tol: must be in 0.001..0.5, got {rel_tol!r}")
    target, prompt_lengths, output_lengths, requests = _rate_and_lengths(
        rate, trace, prompt, output, obj, workload, workload_dir
    )
    tps = _check_choices(tp, "tp", 1 << 20)
    pps = _check_choices(pp, "pp", model.num_layers)
    seqs_list = _seqs_choices(max_num_seqs, workload)
    if cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)
    settings = {
        "search_requests": search_requests,
        "rel_tol": rel_tol,
        "seed": seed,
        "verify_seed": seed + 1,
        "routing_seed": seed + 2,
        "num_workers": num_workers,
        "time_limit_s": time_limit_s,
        "max_num_seqs": seqs_list,
        "tp": tps or "all",
        "pp": pps or "auto",
        "routing": routing,
        "slo_percentile": q,
    }
    return Inputs(
        cluster=cluster,
        objective=obj,
        rate=target,
        prompt=prompt_lengths,
        output=output_lengths,
        trace=requests,
        slo=slo,
        percentile=q,
        tps=tps,
        pps=pps,
        seqs=seqs_list,
        routing=routing,
        search_requests=search_requests,
        rel_tol=rel_tol,
        seed=seed,
        num_workers=num_workers,
        trim=trim,
        settings=settings,
        t0=t0,
        deadline=Deadline(time_limit_s, t0),
    )


def _check_slo(v: Any, name: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise SpecError(f"{name}: must be finite and > 0 ms, got {v!r}")
    return float(v)


def _check_rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise SpecError(f"rate: must be a number of requests/s, got {rate!r}")
    if not math.isfinite(rate) or rate <= 0:
        raise SpecError(f"rate: must be finite and > 0 requests/s, got {rate!r}")
    return float(rate)


def _check_choices(values: Sequence[int] | None, name: str, high: int) -> list[int] | None:
    if values is None:
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high:
            raise SpecError(f"{name}: every value must be an integer in 1..{high:,}, got {v!r}")
        out.append(v)
    if not out:
        raise SpecError(f"{name}: must list at least one value, got []")
    return sorted(set(out))


def _objective(objective: str | None, cluster: Cluster) -> str:
    if objective is None:
        priced = all(p.cost_per_gpu_hour is not None for p in cluster.pools)
        return "min_cost" if priced else "min_gpus"
    if objective not in OBJECTIVES:
        raise SpecError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective == "min_cost":
        for i, p in enumerate(cluster.pools):
            if p.cost_per_gpu_hour is None:
                raise SpecError(
                    f"pools[{i}].cost_per_gpu_hour: objective min_cost needs a price for pool "
                    f"{p.name!r}, got None"
                )
    return objective


def _rate_and_lengths(
    rate: Any,
    trace: Requests | None,
    prompt: Lengths | None,
    output: Lengths | None,
    objective: str,
    workload: InferenceWorkload,
    workload_dir: Path | None = None,
) -> tuple[float | None, Lengths, Lengths, Requests | None]:
    """The target rate, the length distributions and the trace: from the arguments, else
    the workload's traffic fields (its ``trace`` file when ``arrival: trace`` and neither a
    rate nor a trace is given; its ``request_rate``; its length distributions), else the
    workload's fixed lengths.  A trace gives its mean rate and its lengths (resampled)."""
    if trace is None and rate is None and workload.arrival == "trace":
        assert workload.trace is not None
        trace = load_workload_trace(workload.trace, workload_dir)
    if trace is None and rate is None:
        rate = workload.request_rate
    if trace is None:
        if prompt is None and workload.prompt_tokens_distribution is not None:
            prompt = lengths_from_spec(
                workload.prompt_tokens_distribution, "prompt_tokens_distribution", workload_dir
            )
        if output is None and workload.output_tokens_distribution is not None:
            output = lengths_from_spec(
                workload.output_tokens_distribution, "output_tokens_distribution", workload_dir
            )
    if trace is not None:
        if not isinstance(trace, Requests):
            raise SpecError(f"trace: expected Requests, got {type(trace).__name__}")
        span = float(trace.arrival_s[-1] - trace.arrival_s[0])
        if len(trace) < 2 or span <= 0:
            raise SpecError("trace: needs at least two requests with different timestamps")
        if rate is not None:
            raise SpecError("rate: give a rate or a trace, not both (the trace sets the rate)")
        rate = (len(trace) - 1) / span
        prompt = prompt or Lengths("file", values=tuple(int(v) for v in trace.prompt_tokens))
        output = output or Lengths("file", values=tuple(int(v) for v in trace.output_tokens))
    if rate is None and objective != "max_goodput":
        raise SpecError(f"rate: objective {objective} needs a request rate, got None")
    return (
        None if rate is None else _check_rate(rate),
        prompt or Lengths.fixed(workload.prompt_tokens),
        output or Lengths.fixed(workload.output_tokens),
        trace,
    )


def _seqs_choices(max_num_seqs: Sequence[int] | None, workload: InferenceWorkload) -> list[int]:
    """max_num_seqs values to score: given, else the workload's batch_size list when it sets
    one, else vLLM's default."""
    if max_num_seqs is not None:
        return _check_choices(max_num_seqs, "max_num_seqs", 1_000_000) or []
    if "batch_size" in workload.model_fields_set:
        return sorted(set(workload.batch_sizes))
    return [DEFAULT_MAX_NUM_SEQS]
