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
   request sample, seed + 1, at least
   :data:`~solver.cpsat.serving_verify.VERIFY_MIN_REQUESTS`).  If the fleet's p99 TTFT or
   TPOT misses its SLO, a replica of the candidate with the most capacity per $ (per GPU
   for ``min_gpus``) that still fits is added and the fleet re-verified, at most
   :data:`~solver.cpsat.serving_verify.MAX_EXTRA_REPLICAS` times; the status is then
   FEASIBLE (no longer the proven optimum).  A fleet that never verifies is reported UNKNOWN without a
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

:func:`plan_serving` runs these steps in order, one phase function each: the inputs
(:func:`.serving_inputs.checked_inputs`), the shapes' capacities (:func:`_score_shapes`),
why no fleet can be chosen (:func:`.serving_shortfall.shortfall`), the CP-SAT solve, the
verification and trimming (:func:`.serving_verify.verify_fleet`,
:func:`.serving_verify.trim_fleet`) and the result (:func:`_verified_result`); every early
return goes through :func:`_result`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import Any

from ortools.sat.python import cp_model

from ..catalog import gpu_of
from ..construction import build_stages, split_layers
from ..evaluate.calibration import gpu_with_calibration
from ..evaluate.checks import check_divisibility, check_precision
from ..result import Status
from ..serving import (
    Lengths,
    Replica,
    Requests,
    SimulationResult,
    default_max_num_batched_tokens,
    generate_requests,
    kv_capacity_tokens,
)
from ..serving.api import replica_for
from ..serving.capacity import REL_TOL, SEARCH_REQUESTS, CapacitySearch, search_capacity
from ..specs import Cluster, InferenceWorkload, Model, Plan, Pool, ReplicaGroup, SolverInfo
from .deadline import Deadline
from .options import pipeline_degrees, tp_options
from .serving_fleet import Candidate, FleetGroup, ServingPlanResult, choose_replicas
from .serving_inputs import Inputs, checked_inputs
from .serving_shortfall import no_fleet, shortfall
from .serving_verify import Outcome, trim_fleet, verify_fleet

__all__ = ["plan_serving"]


_ORTOOLS_VERSION = _pkg_version("ortools")
_UNITS = {"min_cost": "$/h", "min_gpus": "GPUs", "max_goodput": "requests/s"}


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
        :data:`~solver.cpsat.serving_verify.MAX_TRIM_TRIES` simulations, while the time
        limit lasts); a trimmed plan is FEASIBLE (verified, not proven minimal).
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
    inp = checked_inputs(
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
    short = shortfall(inp, shapes, cands, usable, scored_all, complete, pool_gpus)
    if short is not None:
        return _result(inp, cands, timings, *short)
    # 3. Replica counts (CP-SAT).
    with _timed(timings, "cp_sat"):
        cp_limit = max(inp.deadline.left(), 0.5)
        code, counts, value, bound = choose_replicas(
            usable, pool_gpus, inp.objective, inp.rate, cp_limit, inp.num_workers, inp.seed
        )
    if not counts:
        return _result(inp, cands, timings, *no_fleet(code, complete, inp.rate, usable, pool_gpus))
    # 4. Verification (adds replicas, or lowers max_goodput's rate, until the fleet verifies).
    with _timed(timings, "verification"):
        out = verify_fleet(model, workload, inp, usable, counts, pool_gpus)
    # 5. Trimming (a fleet the CP-SAT optimum verified as is).
    if out.ok and inp.trim and out.extra == 0 and inp.objective != "max_goodput":
        with _timed(timings, "trim"):
            out = trim_fleet(model, workload, inp, usable, counts, out)
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
    model: Model, workload: InferenceWorkload, inp: Inputs
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
# The result
# ------------------------------------------------------------------------------------------
def _result(
    inp: Inputs,
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
    inp: Inputs, out: Outcome, n_cands: int, n_shapes: int, scored_all: bool
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
    inp: Inputs,
    cands: list[Candidate],
    timings: dict[str, float],
    out: Outcome,
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
