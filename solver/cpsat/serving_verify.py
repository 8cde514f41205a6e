"""The serving fleet's verification (and trimming), steps 4 and 5 of
:mod:`solver.cpsat.plan_serving`.

:func:`verify_fleet` simulates the chosen fleet as a whole at the target rate
(:func:`solver.serving.simulate`, dispatched by the planner's ``routing`` in proportion to
each replica's capacity, a fresh request sample, seed + 1, at least
:data:`VERIFY_MIN_REQUESTS`); a fleet that misses its SLOs gets a replica more (the
candidate with the most capacity per $, per GPU for ``min_gpus``, that still fits), at most
:data:`MAX_EXTRA_REPLICAS` times, or, for ``max_goodput``, a lower offered rate
(:data:`GOODPUT_BISECTIONS` bisection steps).  :func:`trim_fleet` then removes replicas,
most expensive first, while the fleet still meets the SLOs on the same requests (at most
:data:`MAX_TRIM_TRIES` simulations).  Both return an :class:`Outcome`: the last fleet
simulated and whether it met the SLOs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..serving import Requests, SimulationResult, generate_requests, simulate
from ..serving.capacity import meets_slos
from ..specs import Cluster, InferenceWorkload, Model, Plan
from .serving_fleet import Candidate, FleetGroup, fleet_of, plan_of, replica_weight
from .serving_inputs import Inputs

__all__ = [
    "GOODPUT_BISECTIONS",
    "MAX_EXTRA_REPLICAS",
    "MAX_TRIM_TRIES",
    "VERIFY_MAX_REQUESTS",
    "VERIFY_MIN_REQUESTS",
    "Outcome",
    "trim_fleet",
    "verify_fleet",
]


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
class Outcome:
    """The fleet after verification (and trimming): the last one simulated."""

    fleet: list[FleetGroup]
    plan: Plan
    res: SimulationResult  # its last simulation
    ok: bool  # it met the SLOs
    extra: int  # replicas verification added
    offered: float  # the rate it was verified at
    missed: str | None  # the first fleet that missed the SLOs (None: the first one met them)
    removed: int = 0  # replicas trimming removed


def _slo_check(inp: Inputs) -> _Check:
    """What verification and trimming check: the SLOs, dispatched by ``routing`` with the
    dispatch seed ``seed + 2``."""
    return _Check(inp.slo[0], inp.slo[1], inp.routing, inp.seed + 2, inp.percentile)


def verify_fleet(
    model: Model,
    workload: InferenceWorkload,
    inp: Inputs,
    cands: list[Candidate],
    counts: dict[int, int],
    pool_gpus: dict[str, int],
) -> Outcome:
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
            return Outcome(fleet, plan, res, True, extra, offered, missed)
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
            return Outcome(fleet, plan, res, False, extra, offered, missed)
        extra += 1


def _goodput_down(
    model: Model,
    workload: InferenceWorkload,
    inp: Inputs,
    check: _Check,
    plan: Plan,
    fleet: list[FleetGroup],
    offered: float,
    failed: SimulationResult,
    missed: str,
) -> Outcome:
    """max_goodput: bisect the offered rate down from the fleet's summed capacity
    (``failed``: its simulation there), :data:`GOODPUT_BISECTIONS` steps from half of it."""
    n = _verify_requests(sum(g.count for g in fleet), inp.search_requests)

    def at(rate: float) -> tuple[SimulationResult, bool]:
        requests = generate_requests(n, rate, inp.prompt, inp.output, seed=inp.seed + 1)
        return _verify(model, inp.cluster, workload, plan, fleet, requests, check)

    lo, hi = 0.5 * offered, offered
    res, ok = at(lo)
    if not ok:
        return Outcome(fleet, plan, failed, False, 0, offered, missed)
    best = (res, lo)
    for _ in range(GOODPUT_BISECTIONS):
        mid = 0.5 * (lo + hi)
        res, ok = at(mid)
        if ok:
            lo, best = mid, (res, mid)
        else:
            hi = mid
    return Outcome(fleet, plan, best[0], True, 0, best[1], missed)


def trim_fleet(
    model: Model,
    workload: InferenceWorkload,
    inp: Inputs,
    cands: list[Candidate],
    counts: dict[int, int],
    verified: Outcome,
) -> Outcome:
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
