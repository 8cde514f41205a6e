"""Serving planner: replicas x TP x PP per GPU type for a request rate under p99 SLOs.

``plan_serving`` answers "how many GPUs, which TP, for this traffic at a p99 TTFT of X":

1. **Candidates.**  Every replica shape ``(pool, TP, PP, max_num_seqs)``: TP from
   :func:`~solver.cpsat.options.tp_options` (powers of two that divide the heads and fit a
   node or NVLink domain), PP ``auto`` (the smallest depth whose KV cache holds the longest
   request, see :func:`_auto_pp`) or a given list, ``max_num_seqs`` from the workload's
   ``batch_size`` list when it sets one, else vLLM's default 256.  A replica's stages all
   sit in one pool (no cross-pool pipelines).
2. **Capacity.**  For each candidate, :func:`solver.serving.capacity.search_capacity`: the
   highest Poisson rate one replica sustains with p99 TTFT and p99 TPOT within the SLOs
   (bisection on the simulated rate, :data:`~solver.serving.capacity.REL_TOL` = 2%).
3. **Replica counts (CP-SAT).**  :func:`solver.cpsat.serving_fleet.choose_replicas`: integer
   replica counts per candidate within the pools' GPU counts, minimising $/h or GPUs for the
   target rate (``min_cost`` / ``min_gpus``) or maximising the summed capacity
   (``max_goodput``).  OPTIMAL means proven optimal **over these candidates and their
   simulated capacities, within the pools' GPU counts** (that module's docstring says what
   the model decides and what it does not).
4. **Verification.**  The chosen fleet is simulated as a whole at the target rate
   (:func:`solver.serving.simulate`, requests dispatched in proportion to each replica's
   capacity, at random by default -- random thinning of a Poisson stream leaves each replica
   the Poisson stream its capacity was measured on -- or weighted round-robin; a fresh
   request sample, seed + 1, at least :data:`VERIFY_MIN_REQUESTS`).  If the
   fleet's p99 TTFT or TPOT misses its SLO, a replica of the candidate with the most
   capacity per $ (per GPU for ``min_gpus``) that still fits is added and the fleet
   re-verified, at most :data:`MAX_EXTRA_REPLICAS` times; the status is then FEASIBLE (no
   longer the proven optimum).  A fleet that never verifies is reported UNKNOWN without a
   plan: an unverified plan is never reported as meeting the SLOs.  ``max_goodput`` verifies
   at the summed capacity and, if that fails, bisects the offered rate down to one the fleet
   meets (FEASIBLE).
Traffic and SLOs default to the workload's own fields (``request_rate``, ``arrival: trace``
with ``trace``, ``prompt_tokens_distribution`` / ``output_tokens_distribution``,
``slo_percentile``); arguments override them.  The SLOs apply at ``slo_percentile`` (99:
p99).  Replicas run the KV-cache policy of the workload's engine
(:func:`solver.serving.kv_policy_for`: vLLM's preemption unless TensorRT-LLM).

Routing of the verification: ``weighted_random`` (default: each replica sees the Poisson
stream its capacity was measured on), ``weighted_round_robin`` or ``jsq``
(join-shortest-queue, which couples the replicas; usually kinder to the p99 than random
dispatch, so a fleet sized for random dispatch is conservative under it).

5. **Trimming** (``trim``, default on).  Once a fleet verifies, replicas are removed, most
   expensive first, while the fleet still meets the SLOs on the same requests; a trimmed
   fleet is FEASIBLE (verified, not proven minimal), the CP-SAT optimum kept as
   ``model_optimum``.

:func:`plan_serving` runs these steps in order, one phase function each
(:func:`_checked_inputs`, :func:`_score_shapes`, :func:`_shortfall`, the CP-SAT solve,
:func:`_verify_fleet`, :func:`_trim_fleet`, :func:`_verified_result`); every early return
goes through :func:`_result`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import Any

from ortools.sat.python import cp_model

from ..catalog import gpu_of
from ..construction import build_stages, split_layers
from ..errors import SpecError, check_solve_options
from ..evaluate.calibration import calibrated_cluster, gpu_with_calibration
from ..evaluate.checks import check_divisibility, check_precision
from ..result import Status
from ..serving import (
    DEFAULT_MAX_NUM_SEQS,
    Lengths,
    Replica,
    Requests,
    SimulationResult,
    default_max_num_batched_tokens,
    generate_requests,
    kv_capacity_tokens,
    lengths_from_spec,
    simulate,
)
from ..serving.api import check_percentile, replica_for
from ..serving.capacity import (
    REL_TOL,
    SEARCH_REQUESTS,
    CapacitySearch,
    meets_slos,
    search_capacity,
)
from ..serving.workload import load_workload_trace
from ..specs import Cluster, InferenceWorkload, Model, Plan, Pool, ReplicaGroup, SolverInfo
from .deadline import Deadline
from .options import pipeline_degrees, tp_options
from .serving_fleet import (
    Candidate,
    FleetGroup,
    ServingPlanResult,
    choose_replicas,
    fleet_of,
    plan_of,
    replica_weight,
)

__all__ = [
    "MAX_EXTRA_REPLICAS",
    "OBJECTIVES",
    "VERIFY_MIN_REQUESTS",
    "plan_serving",
]


OBJECTIVES: tuple[str, ...] = ("min_cost", "min_gpus", "max_goodput")
#: Fewest requests the fleet verification simulates (and at least SEARCH_REQUESTS per
#: replica, so every replica sees as many requests as its capacity search did).
VERIFY_MIN_REQUESTS = 2000
#: Most requests one verification simulates (about 1 s of simulation on 2 cores).
VERIFY_MAX_REQUESTS = 50_000
#: Replicas verification may add before giving up (UNKNOWN, no plan).
MAX_EXTRA_REPLICAS = 8
#: Most fleet simulations trimming may run.
MAX_TRIM_TRIES = 6
#: max_goodput: bisection steps on the offered rate when the fleet misses at its capacity.
GOODPUT_BISECTIONS = 6
_ORTOOLS_VERSION = _pkg_version("ortools")
_UNITS = {"min_cost": "$/h", "min_gpus": "GPUs", "max_goodput": "requests/s"}
#: Dispatch of the fleet verification (module docstring).
ROUTINGS: tuple[str, ...] = ("weighted_random", "weighted_round_robin", "jsq")


# ------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------
def plan_serving(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    *,
    rate: float | None = None,
    objective: str | None = None,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    prompt: Lengths | None = None,
    output: Lengths | None = None,
    trace: Requests | None = None,
    tp: Sequence[int] | None = None,
    pp: Sequence[int] | None = None,
    max_num_seqs: Sequence[int] | None = None,
    search_requests: int = SEARCH_REQUESTS,
    rel_tol: float = REL_TOL,
    time_limit_s: float = 30.0,
    seed: int = 0,
    num_workers: int = 1,
    trim: bool = True,
    routing: str = "weighted_random",
    slo_percentile: float | None = None,
    workload_dir: Path | None = None,
) -> ServingPlanResult:
    """Plan a serving fleet for ``rate`` requests/s under p99 SLOs (module docstring).

    Parameters
    ----------
    model, cluster, workload
        Specs; ``workload`` gives precision, KV precision, the memory reserve, the default
        lengths (``prompt_tokens``/``output_tokens``), SLOs (``ttft_ms``/``tpot_ms``) and
        ``max_num_seqs`` candidates (its ``batch_size`` list, when set).
    rate
        Target requests/s (min_cost / min_gpus); with ``trace`` default the trace's mean rate;
        default the workload's ``request_rate`` (or its trace, ``arrival: trace``).
    objective
        ``min_cost`` (default when every pool has ``cost_per_gpu_hour``), ``min_gpus``
        (default otherwise) or ``max_goodput``.
    ttft_slo_ms, tpot_slo_ms
        p99 SLOs; default the workload's.  At least one.
    prompt, output
        Length distributions; default fixed at the workload's (or, with ``trace``, the
        trace's lengths resampled).
    trace
        Requests to verify on (and whose lengths the capacity search resamples).
    tp, pp, max_num_seqs
        Candidate lists (default: every valid TP, PP auto, the workload's batch sizes).
    search_requests, rel_tol
        Requests per capacity probe and the bisection's relative tolerance.
    time_limit_s, seed, num_workers
        The budget of the capacity searches and CP-SAT, counted from the call's start (the
        verification, never skipped, runs after it; trimming only while it lasts); the seed
        of the search's requests (verification: seed + 1, its dispatch seed + 2) and of
        CP-SAT; CP-SAT's workers.
    trim
        After the fleet verifies, try removing replicas (most expensive first) while the
        fleet, simulated on the same requests, still meets the SLOs (at most
        :data:`MAX_TRIM_TRIES` simulations, while the time limit lasts); a trimmed plan is
        FEASIBLE (verified, not proven minimal).
    routing
        How the verification dispatches requests (``weighted_random``, the default: each
        replica then sees a Poisson stream, as in its capacity search;
        ``weighted_round_robin``: smoother per-replica streams, which favour TTFT and can
        hurt TPOT, since prefills then arrive one by one instead of batched; or ``jsq``:
        join-shortest-queue, the least-outstanding-requests balancer).
    slo_percentile
        Percentile (0, 100] the SLOs apply to; default the workload's (99).
    workload_dir
        Folder that the workload's relative ``trace`` / length-file paths are relative to
        (the workload file's; default the working directory).

    Raises
    ------
    SpecError
        Bad input, one line naming the field.
    """
    t0 = time.perf_counter()
    inp = _checked_inputs(
        model,
        cluster,
        workload,
        t0,
        rate=rate,
        objective=objective,
        ttft_slo_ms=ttft_slo_ms,
        tpot_slo_ms=tpot_slo_ms,
        prompt=prompt,
        output=output,
        trace=trace,
        tp=tp,
        pp=pp,
        max_num_seqs=max_num_seqs,
        search_requests=search_requests,
        rel_tol=rel_tol,
        time_limit_s=time_limit_s,
        seed=seed,
        num_workers=num_workers,
        trim=trim,
        routing=routing,
        slo_percentile=slo_percentile,
        workload_dir=workload_dir,
    )
    timings: dict[str, float] = {}
    # 1-2. Candidates and their capacities.
    shapes, cands, scored_all = _score_shapes(model, workload, inp)
    timings["capacity_search"] = time.perf_counter() - t0
    complete = scored_all and all(c.complete for c in cands)
    usable = [c for c in cands if c.capacity_rps > 0]
    pool_gpus = {p.name: p.num_gpus for p in inp.cluster.pools}
    short = _shortfall(inp, shapes, cands, usable, scored_all, complete, pool_gpus)
    if short is not None:
        return _result(inp, cands, timings, *short)
    # 3. Replica counts (CP-SAT).
    with _timed(timings, "cp_sat"):
        cp_limit = max(inp.deadline.left(), 0.5)
        code, counts, value, bound = choose_replicas(
            usable, pool_gpus, inp.objective, inp.rate, cp_limit, inp.num_workers, inp.seed
        )
    if not counts:
        return _result(inp, cands, timings, *_no_fleet(code, complete, inp.rate, usable, pool_gpus))
    # 4. Verification (adds replicas, or lowers max_goodput's rate, until the fleet verifies).
    with _timed(timings, "verification"):
        out = _verify_fleet(model, workload, inp, usable, counts, pool_gpus)
    # 5. Trimming (a fleet the CP-SAT optimum verified as is).
    if out.ok and inp.trim and out.extra == 0 and inp.objective != "max_goodput":
        with _timed(timings, "trim"):
            out = _trim_fleet(model, workload, inp, usable, counts, out)
    if not out.ok:
        return _result(
            inp,
            cands,
            timings,
            Status.UNKNOWN,
            _unverified_message(inp, out, len(cands), len(shapes), scored_all),
            verification=out.res,
            fleet=out.fleet,
            extra_replicas=out.extra,
            **_totals(out.fleet),
        )
    proven = code == cp_model.OPTIMAL and complete and out.extra == 0
    return _verified_result(inp, cands, timings, out, proven, complete, value, bound)


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block as ``timings[phase]``."""
    start = time.perf_counter()
    yield
    timings[phase] = time.perf_counter() - start


# ------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Inputs:
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


def _checked_inputs(
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
) -> _Inputs:
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
    return _Inputs(
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


# ------------------------------------------------------------------------------------------
# Candidates and their capacities
# ------------------------------------------------------------------------------------------
def _group(cluster: Cluster, model: Model, pool: str, tp: int, pp: int, seqs: int) -> ReplicaGroup:
    stages = build_stages(
        cluster, [(1, [(pool, tp, n) for n in split_layers(model.num_layers, pp)])]
    )
    return ReplicaGroup(count=1, batch_size=seqs, stages=stages[0])


def _replica(
    model: Model, cluster: Cluster, workload: InferenceWorkload, grp: ReplicaGroup, seqs: int
) -> Replica:
    """The engine :func:`solver.serving.simulate` builds for one replica of ``grp``
    (:func:`~solver.serving.api.replica_for`, so the search and the verification agree)."""
    return replica_for(model, cluster, workload, grp, max_num_seqs=seqs)


def _auto_pp(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    pool: Pool,
    tp: int,
    seqs: int,
    longest: int,
) -> int | None:
    """The smallest PP whose replica's KV cache holds the longest request (None: none does).

    Deeper pipelines at the same TP add GPUs and KV memory but no speed in the simulator's
    step model (a step's stages run one after another), so the shallowest depth that fits
    is the one worth scoring; pass ``pp`` explicitly to score others."""
    for pp in pipeline_degrees(model.num_layers, pool.num_gpus // tp):
        grp = _group(cluster, model, pool.name, tp, pp, seqs)
        gpu = gpu_with_calibration(pool, None)
        budget = max(default_max_num_batched_tokens(gpu), seqs)
        kv = kv_capacity_tokens(
            model, cluster, workload, grp, max_num_seqs=seqs, max_num_batched_tokens=budget
        )
        if kv >= longest:
            return pp
    return None


def _shapes(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    tps: list[int] | None,
    pps: list[int] | None,
    seqs_list: list[int],
    longest: int,
) -> list[tuple[Pool, int, int, int]]:
    """Every (pool, tp, pp, max_num_seqs) to score, in pool order then TP descending."""
    out = []
    for pool in cluster.pools:
        for tp in sorted(tp_options(model, pool), reverse=True):
            if tps is not None and tp not in tps:
                continue
            if pps is None:
                depth = _auto_pp(model, cluster, workload, pool, tp, max(seqs_list), longest)
                depths = [] if depth is None else [depth]
            else:
                depths = [p for p in pps if p * tp <= pool.num_gpus and p <= model.num_layers]
            for pp in depths:
                probe = Plan(
                    kind="inference",
                    replica_groups=[_group(cluster, model, pool.name, tp, pp, seqs_list[0])],
                )
                if check_divisibility(model, probe) or check_precision(cluster, probe, workload):
                    continue
                out += [(pool, tp, pp, s) for s in seqs_list]
    return out


def _score(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    shape: tuple[Pool, int, int, int],
    prompt: Lengths,
    output: Lengths,
    slo: tuple[float | None, float | None],
    *,
    requests: int,
    seed: int,
    rel_tol: float,
    deadline: Deadline,
    hint: tuple[float, float | None] | None = None,
    percentile: float = 99.0,
) -> Candidate:
    pool, tp, pp, seqs = shape
    grp = _group(cluster, model, pool.name, tp, pp, seqs)
    rep = _replica(model, cluster, workload, grp, seqs)
    if rep.kv_capacity_tokens < 1:
        res = CapacitySearch(
            capacity_rps=0.0, guess_rps=0.0, reason="memory: the weights leave no KV cache"
        )
    else:
        res = search_capacity(
            rep,
            prompt,
            output,
            ttft_slo_ms=slo[0],
            tpot_slo_ms=slo[1],
            requests=requests,
            seed=seed,
            rel_tol=rel_tol,
            expired=deadline.expired,
            hint=hint,
            slo_percentile=percentile,
        )
    price = pool.cost_per_gpu_hour
    return Candidate(
        pool=pool.name,
        gpu=gpu_of(pool).name,
        tp=tp,
        pp=pp,
        gpus=tp * pp,
        max_num_seqs=seqs,
        max_num_batched_tokens=rep.max_num_batched_tokens,
        kv_capacity_tokens=rep.kv_capacity_tokens,
        cost_per_hour=None if price is None else price * tp * pp,
        capacity_rps=res.capacity_rps,
        upper_rps=res.upper_rps,
        probes=len(res.probes),
        complete=res.complete,
        saturated=res.saturated,
        reason=res.reason,
    )


def _score_shapes(
    model: Model, workload: InferenceWorkload, inp: _Inputs
) -> tuple[list[tuple[Pool, int, int, int]], list[Candidate], bool]:
    """Every replica shape and, in order until the time limit, its capacity.  Returns the
    shapes, the scored candidates and whether every shape was scored."""
    sample = generate_requests(inp.search_requests, 1.0, inp.prompt, inp.output, seed=inp.seed)
    longest = int((sample.prompt_tokens + sample.output_tokens).max())
    if inp.trace is not None:
        longest = max(longest, int((inp.trace.prompt_tokens + inp.trace.output_tokens).max()))
    shapes = _shapes(model, inp.cluster, workload, inp.tps, inp.pps, inp.seqs, longest)
    cands: list[Candidate] = []
    scored_all = True
    for shape in shapes:
        if inp.deadline.expired():
            scored_all = False
            break
        # The same pool/TP/PP with the previous max_num_seqs: its capacity is a close guess.
        prev = cands[-1] if cands else None
        same = prev is not None and (prev.pool, prev.tp, prev.pp) == (
            shape[0].name,
            shape[1],
            shape[2],
        )
        hint = (prev.capacity_rps, prev.upper_rps) if same and prev is not None else None
        cands.append(
            _score(
                model,
                inp.cluster,
                workload,
                shape,
                inp.prompt,
                inp.output,
                inp.slo,
                requests=inp.search_requests,
                seed=inp.seed,
                rel_tol=inp.rel_tol,
                deadline=inp.deadline,
                hint=hint,
                percentile=inp.percentile,
            )
        )
    return shapes, cands, scored_all


# ------------------------------------------------------------------------------------------
# Capacity shortfalls: why no fleet can be chosen
# ------------------------------------------------------------------------------------------
def _shortfall(
    inp: _Inputs,
    shapes: list[tuple[Pool, int, int, int]],
    cands: list[Candidate],
    usable: list[Candidate],
    scored_all: bool,
    complete: bool,
    pool_gpus: dict[str, int],
) -> tuple[Status, str] | None:
    """INFEASIBLE or UNKNOWN, and why, when no shape sustains load or the pools' best
    capacity per GPU falls short of the target; None when the fleet solve may go ahead."""
    rate = inp.rate
    if not usable:
        if not scored_all:
            return (
                Status.UNKNOWN,
                f"time limit: {len(cands)} of {len(shapes)} replica "
                "shapes scored and none sustains any load under the SLOs; raise the limit",
            )
        return Status.INFEASIBLE, _why_none(cands, shapes, inp.slo, inp.percentile)
    if inp.objective != "max_goodput":
        assert rate is not None
        by_pool = _pool_capacity(usable, pool_gpus)
        if by_pool < rate:
            return _short_of_rate(rate, by_pool, cands, usable, len(shapes), complete, pool_gpus)
    return None


def _short_of_rate(
    rate: float,
    by_pool: float,
    cands: list[Candidate],
    usable: list[Candidate],
    n_shapes: int,
    complete: bool,
    pool_gpus: dict[str, int],
) -> tuple[Status, str]:
    """The pools' best capacity per GPU (``by_pool``) misses the target: UNKNOWN when the
    searches were cut short or their tolerance leaves room, else INFEASIBLE."""
    upper = _pool_capacity(
        [c.model_copy(update={"capacity_rps": _upper(c)}) for c in usable], pool_gpus
    )
    if not complete:
        return (
            Status.UNKNOWN,
            f"time limit: {len(cands)} of {n_shapes} replica shapes scored (or "
            f"searches cut short); those sustain {by_pool:,.2f} req/s under the SLOs "
            f"< target {rate:g}; raise the time limit",
        )
    if upper >= rate:
        return (
            Status.UNKNOWN,
            f"capacity: the pools sustain {by_pool:,.2f} req/s under the SLOs by the "
            f"rates simulated, < target {rate:g}, but up to {upper:,.2f} req/s within "
            "the search tolerance; lower the tolerance",
        )
    best = max(usable, key=lambda c: c.capacity_rps / c.gpus)
    need = math.ceil(rate / best.capacity_rps) * best.gpus
    return (
        Status.INFEASIBLE,
        (
            f"GPU count: at most {by_pool:,.2f} req/s fit this cluster under the SLOs "
            f"(best per GPU: {best.key} at {best.capacity_rps:.3g} req/s per replica) < "
            f"target {rate:g} req/s; about {need} GPUs of pool {best.pool} would be needed"
            f" (each pool's best: {_pool_summary(usable, pool_gpus)})"
        ),
    )


def _no_fleet(
    code: int,
    complete: bool,
    rate: float | None,
    usable: list[Candidate],
    pool_gpus: dict[str, int],
) -> tuple[Status, str]:
    """Why CP-SAT returned no replica mix: proven none (INFEASIBLE), else the time limit."""
    if code == cp_model.INFEASIBLE and complete:
        return (
            Status.INFEASIBLE,
            f"GPU count: no whole number of replicas reaches {rate:g} req/s within the "
            f"pools' GPUs (the pools' best capacity per GPU would give "
            f"{_pool_capacity(usable, pool_gpus):,.2f} req/s with no GPU left idle)",
        )
    return Status.UNKNOWN, "time limit: CP-SAT found no replica mix; raise the limit"


def _upper(c: Candidate) -> float:
    """An upper bound of a shape's capacity: the lowest rate that missed the SLOs, or the
    saturated throughput; unbounded when the search stopped short of both."""
    if c.upper_rps is not None:
        return c.upper_rps
    return c.capacity_rps if c.saturated else math.inf


def _pool_capacity(cands: list[Candidate], pool_gpus: dict[str, int]) -> float:
    """Most requests/s the pools hold with each pool's best capacity per GPU (an upper bound
    on any mix: per pool, the capacity is at most G x the best capacity per GPU)."""
    total = 0.0
    for pool, g in pool_gpus.items():
        per = [c.capacity_rps / c.gpus for c in cands if c.pool == pool]
        total += g * max(per, default=0.0)
    return total


def _pool_summary(cands: list[Candidate], pool_gpus: dict[str, int]) -> str:
    parts = []
    for pool in pool_gpus:
        mine = [c for c in cands if c.pool == pool]
        if mine:
            b = max(mine, key=lambda c: c.capacity_rps / c.gpus)
            parts.append(f"{pool} {b.key} {b.capacity_rps:.3g} req/s on {b.gpus} GPUs")
    return "; ".join(parts)


def _why_none(
    cands: list[Candidate],
    shapes: list[Any],
    slo: tuple[float | None, float | None],
    q: float = 99.0,
) -> str:
    """INFEASIBLE's message: no shape, or every shape's reason with its numbers."""
    if not shapes:
        return (
            "no replica shape: no pool has a TP/PP that divides the model, runs its precision "
            "and holds the longest request in its KV cache"
        )
    need = " and ".join(
        f"p{q:g} {name} <= {v:g} ms" for name, v in zip(("TTFT", "TPOT"), slo, strict=True) if v
    )
    reasons = "; ".join(f"{c.key}: {c.reason}" for c in cands[:3])
    more = f"; and {len(cands) - 3} more" if len(cands) > 3 else ""
    return (
        f"SLO: none of the {len(cands)} replica shapes meets {need} at any load ({reasons}{more})"
    )


# ------------------------------------------------------------------------------------------
# The fleet's verification (and trimming)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Check:
    """What a fleet verification checks and how it dispatches."""

    ttft_ms: float | None
    tpot_ms: float | None
    routing: str
    routing_seed: int
    percentile: float = 99.0


def _verify(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    plan: Plan,
    fleet: list[FleetGroup],
    reqs: Requests,
    check: _Check,
) -> tuple[SimulationResult, bool]:
    res = simulate(
        model,
        cluster,
        workload,
        plan,
        reqs,
        ttft_slo_ms=check.ttft_ms,
        tpot_slo_ms=check.tpot_ms,
        replica_weights=[g.capacity_rps for g in fleet],
        routing=check.routing,
        routing_seed=check.routing_seed,
        slo_percentile=check.percentile,
    )
    ok = meets_slos(
        res.ttft_at_percentile_ms, res.tpot_at_percentile_ms, check.ttft_ms, check.tpot_ms
    )
    return res, ok


def _verify_requests(n_replicas: int, search_requests: int) -> int:
    return min(VERIFY_MAX_REQUESTS, max(VERIFY_MIN_REQUESTS, search_requests * n_replicas))


def _add_one(
    cands: list[Candidate], counts: dict[int, int], pool_gpus: dict[str, int], objective: str
) -> bool:
    """Add the replica with the most capacity per $ (per GPU) that still fits; False if none."""
    used: dict[str, int] = {}
    for i, k in counts.items():
        used[cands[i].pool] = used.get(cands[i].pool, 0) + k * cands[i].gpus
    best, score = None, -1.0
    for i, c in enumerate(cands):
        if c.capacity_rps <= 0 or used.get(c.pool, 0) + c.gpus > pool_gpus[c.pool]:
            continue
        w = c.gpus if objective == "min_gpus" else (c.cost_per_hour or c.gpus)
        if c.capacity_rps / w > score:
            best, score = i, c.capacity_rps / w
    if best is None:
        return False
    counts[best] = counts.get(best, 0) + 1
    return True


@dataclass(frozen=True)
class _Outcome:
    """The fleet after verification (and trimming): the last one simulated."""

    fleet: list[FleetGroup]
    plan: Plan
    res: SimulationResult  # its last simulation
    ok: bool  # it met the SLOs
    extra: int  # replicas verification added
    offered: float  # the rate it was verified at
    missed: str | None  # the first fleet that missed the SLOs (None: the first one met them)
    removed: int = 0  # replicas trimming removed


def _slo_check(inp: _Inputs) -> _Check:
    """What verification and trimming check: the SLOs, dispatched by ``routing`` with the
    dispatch seed ``seed + 2``."""
    return _Check(inp.slo[0], inp.slo[1], inp.routing, inp.seed + 2, inp.percentile)


def _verify_fleet(
    model: Model,
    workload: InferenceWorkload,
    inp: _Inputs,
    cands: list[Candidate],
    counts: dict[int, int],
    pool_gpus: dict[str, int],
) -> _Outcome:
    """Simulate the fleet of ``counts``; add replicas to ``counts`` (min objectives) or lower
    the rate (max_goodput) until it meets the SLOs, at most :data:`MAX_EXTRA_REPLICAS`."""
    check = _slo_check(inp)
    extra = 0
    missed: str | None = None
    while True:
        fleet = fleet_of(cands, counts)
        plan = plan_of(model, inp.cluster, fleet)
        offered = (
            inp.rate
            if inp.objective != "max_goodput" or inp.rate is not None
            else sum(g.count * g.capacity_rps for g in fleet)
        )
        assert offered is not None
        n_rep = sum(g.count for g in fleet)
        reqs = (
            inp.trace
            if inp.trace is not None
            else generate_requests(
                _verify_requests(n_rep, inp.search_requests),
                offered,
                inp.prompt,
                inp.output,
                seed=inp.seed + 1,
            )
        )
        res, ok = _verify(model, inp.cluster, workload, plan, fleet, reqs, check)
        if ok:
            return _Outcome(fleet, plan, res, True, extra, offered, missed)
        if missed is None:
            missed = (
                " + ".join(f"{g.count} x TP{g.tp} PP{g.pp} {g.pool}" for g in fleet)
                + f" at {offered:g} req/s: p{check.percentile:g} TTFT "
                f"{res.ttft_at_percentile_ms:,.0f} ms, p{check.percentile:g} TPOT "
                f"{res.tpot_at_percentile_ms:,.1f} ms"
            )
        if inp.objective == "max_goodput" and inp.trace is None:
            return _goodput_down(model, workload, inp, check, plan, fleet, offered, res, missed)
        if extra >= MAX_EXTRA_REPLICAS or not _add_one(cands, counts, pool_gpus, inp.objective):
            return _Outcome(fleet, plan, res, False, extra, offered, missed)
        extra += 1


def _goodput_down(
    model: Model,
    workload: InferenceWorkload,
    inp: _Inputs,
    check: _Check,
    plan: Plan,
    fleet: list[FleetGroup],
    offered: float,
    failed: SimulationResult,
    missed: str,
) -> _Outcome:
    """max_goodput: bisect the offered rate down from the fleet's summed capacity
    (``failed``: its simulation there), :data:`GOODPUT_BISECTIONS` steps from half of it."""
    n = _verify_requests(sum(g.count for g in fleet), inp.search_requests)
    lo, hi = 0.5 * offered, offered
    best: tuple[SimulationResult, float] | None = None
    res, ok = _verify(
        model,
        inp.cluster,
        workload,
        plan,
        fleet,
        generate_requests(n, lo, inp.prompt, inp.output, seed=inp.seed + 1),
        check,
    )
    if not ok:
        return _Outcome(fleet, plan, failed, False, 0, offered, missed)
    best = (res, lo)
    for _ in range(GOODPUT_BISECTIONS):
        mid = 0.5 * (lo + hi)
        res, ok = _verify(
            model,
            inp.cluster,
            workload,
            plan,
            fleet,
            generate_requests(n, mid, inp.prompt, inp.output, seed=inp.seed + 1),
            check,
        )
        if ok:
            lo, best = mid, (res, mid)
        else:
            hi = mid
    return _Outcome(fleet, plan, best[0], True, 0, best[1], missed)


def _trim_fleet(
    model: Model,
    workload: InferenceWorkload,
    inp: _Inputs,
    cands: list[Candidate],
    counts: dict[int, int],
    verified: _Outcome,
) -> _Outcome:
    """Remove replicas from ``counts``, most expensive first, while the fleet still verifies
    on the same requests (at most :data:`MAX_TRIM_TRIES` simulations, while the time limit
    lasts).  Returns the smallest verified fleet, its plan and result, replicas removed."""
    check = _slo_check(inp)
    reqs = (
        inp.trace
        if inp.trace is not None
        else generate_requests(
            verified.res.num_requests,
            verified.offered,
            inp.prompt,
            inp.output,
            seed=inp.seed + 1,
        )
    )
    best = (verified.fleet, verified.plan, verified.res)
    removed = tries = 0
    while tries < MAX_TRIM_TRIES and inp.deadline.left() > 0:
        progress = False
        for i in sorted(counts, key=lambda k: (-replica_weight(cands[k], inp.objective), k)):
            if tries >= MAX_TRIM_TRIES or inp.deadline.left() <= 0:
                break
            trial = {k: v - (k == i) for k, v in counts.items() if v - (k == i) > 0}
            if not trial:
                continue
            tries += 1
            fleet = fleet_of(cands, trial)
            plan = plan_of(model, inp.cluster, fleet)
            res, ok = _verify(model, inp.cluster, workload, plan, fleet, reqs, check)
            if ok:
                counts.clear()
                counts.update(trial)
                best, removed, progress = (fleet, plan, res), removed + 1, True
                break
        if not progress:
            break
    return replace(verified, fleet=best[0], plan=best[1], res=best[2], removed=removed)


# ------------------------------------------------------------------------------------------
# The result
# ------------------------------------------------------------------------------------------
def _result(
    inp: _Inputs,
    cands: list[Candidate],
    timings: dict[str, float],
    status: Status,
    message: str,
    **fields: Any,
) -> ServingPlanResult:
    """The result every return of :func:`plan_serving` goes through (``fields``: the
    fleet's, the plan's; ``rate_rps`` defaults to the target); stamps the total time."""
    timings["total"] = time.perf_counter() - inp.t0
    unit = _UNITS[inp.objective]
    return ServingPlanResult(
        status=status.value,
        objective=inp.objective,
        unit=unit,
        rate_rps=fields.pop("rate_rps", inp.rate),
        ttft_slo_ms=inp.slo[0],
        tpot_slo_ms=inp.slo[1],
        candidates=cands,
        message=message,
        settings=inp.settings,
        timings_s=timings,
        time_s=timings["total"],
        **fields,
    )


def _unverified_message(
    inp: _Inputs, out: _Outcome, n_cands: int, n_shapes: int, scored_all: bool
) -> str:
    """UNKNOWN's message: the fleet never met the SLOs (no plan is reported)."""
    q, res, extra = inp.percentile, out.res, out.extra
    return (
        f"verification: the fleet misses the SLOs at {out.offered:g} req/s "
        + (
            f"even after adding {extra} replica(s)"
            if extra
            else "and no scored shape fits the GPUs left"
        )
        + f": p{q:g} TTFT {res.ttft_at_percentile_ms:,.0f} ms, p{q:g} TPOT "
        f"{res.tpot_at_percentile_ms:,.1f} ms; no "
        "verified plan"
        + (
            ""
            if scored_all
            else f" ({n_cands} of {n_shapes} replica shapes scored before the time limit: raise it)"
        )
    )


def _verified_result(
    inp: _Inputs,
    cands: list[Candidate],
    timings: dict[str, float],
    out: _Outcome,
    proven: bool,
    complete: bool,
    value: float | None,
    bound: float | None,
) -> ServingPlanResult:
    """A verified fleet's result: OPTIMAL when CP-SAT's proven optimum verified as is
    (``proven``), else FEASIBLE with the notes saying why; the plan carries the
    verification's numbers and the solver's record.  ``value``/``bound``: CP-SAT's."""
    obj, extra, removed, offered = inp.objective, out.extra, out.removed, out.offered
    usable = [c for c in cands if c.capacity_rps > 0]
    what = (
        f"over {len(cands)} replica shapes ({len(usable)} sustain load) and their simulated "
        f"capacities (bisection to {inp.rel_tol:.0%}), within the pools' GPU counts"
    )
    kw = _totals(out.fleet)
    cp_value = value
    notes = []
    if extra:
        notes.append(
            f"verification added {extra} replica(s) to the CP-SAT optimum over single-replica "
            f"capacities ({cp_value:,.4g} {_UNITS[obj]}), which missed the SLOs when simulated "
            f"as a fleet ({out.missed})"
        )
        bound = None
    if not complete:
        notes.append(
            "time limit: some capacity searches were cut short (capacities are "
            "rates that met the SLOs, not the boundary)"
        )
    if obj == "max_goodput" and offered < (kw["capacity_rps"] or 0) - 1e-9:
        notes.append(
            f"the fleet met the SLOs at {offered:.3g} req/s, not at its summed capacity "
            f"{kw['capacity_rps']:.3g} ({out.missed})"
        )
        proven = False
    if removed:
        notes.append(
            f"the CP-SAT optimum over single-replica capacities is {cp_value:,.4g} "
            f"{_UNITS[obj]} (proven {what}); simulated as a fleet, "
            f"{removed} replica(s) fewer still meet the SLOs: verified, not proven minimal "
            "(a replica behind capacity-weighted dispatch sees smoother arrivals than the "
            "Poisson stream its capacity was measured on)"
        )
        proven = False
        bound = None
    status = Status.OPTIMAL if proven else Status.FEASIBLE
    if obj != "max_goodput" and (extra or removed):
        value = kw["cost_per_hour"] if obj == "min_cost" else kw["gpus"]
    message = ("proven optimal " + what) if proven else "; ".join(notes) or "not proven optimal"
    gap = None if value in (None, 0) or bound is None else abs(value - bound) / abs(value)
    plan = out.plan.model_copy(
        update={
            "predicted": _predicted(out.res, offered, kw["capacity_rps"], inp.percentile),
            "solver": SolverInfo(
                status=status.value,
                objective=value,
                bound=bound,
                gap=gap,
                time_s=time.perf_counter() - inp.t0,
                ortools_version=_ORTOOLS_VERSION,
                seed=inp.seed,
                message=message,
            ),
        }
    )
    return _result(
        inp,
        cands,
        timings,
        status,
        message,
        objective_value=value,
        bound=bound,
        plan=plan,
        verified=True,
        verification=out.res,
        fleet=out.fleet,
        extra_replicas=extra,
        removed_replicas=removed,
        model_optimum=cp_value,
        rate_rps=offered,
        **kw,
    )


def _predicted(
    res: SimulationResult, offered: float, capacity_rps: float | None, q: float
) -> dict[str, float]:
    """The plan's ``predicted`` record: the verification's rate, latencies and goodput."""
    return {
        "rate_rps": float(offered),
        "capacity_rps": float(capacity_rps or 0.0),
        "ttft_p99_ms": res.ttft_ms.p99,
        "tpot_p99_ms": res.tpot_ms.p99,
        "slo_percentile": q,
        "ttft_at_slo_percentile_ms": res.ttft_at_percentile_ms,
        "tpot_at_slo_percentile_ms": res.tpot_at_percentile_ms,
        "goodput_rps": res.goodput,
        "slo_attainment": res.slo_attainment,
    }


def _totals(fleet: list[FleetGroup]) -> dict[str, Any]:
    costs = [g.cost_per_hour for g in fleet]
    return {
        "gpus": sum(g.gpus for g in fleet),
        "cost_per_hour": None if any(c is None for c in costs) else float(sum(costs)),  # type: ignore[arg-type]
        "capacity_rps": float(sum(g.count * g.capacity_rps for g in fleet)),
    }
