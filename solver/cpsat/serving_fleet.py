"""Fleet selection for the serving planner: how many replicas of which scored shape.

:func:`~solver.cpsat.plan_serving.plan_serving` scores replica shapes (a pool, TP, PP and
``max_num_seqs``: a :class:`Candidate`) by simulation; this module picks a fleet of them
with CP-SAT and holds the planner's result types (:class:`FleetGroup`,
:class:`ServingPlanResult`).

**What the model decides.**  Integers ``n_c >= 0`` (replicas of candidate ``c``) with
``sum_c n_c gpus_c <= G_pool`` per pool and

* ``min_cost`` / ``min_gpus``: ``sum_c n_c cap_c >= rate``, minimise $/h (pools'
  ``cost_per_gpu_hour``) or GPUs; then, at that optimum, maximise the capacity (headroom);
* ``max_goodput``: maximise ``sum_c n_c cap_c``; then, at that capacity, minimise cost.

Capacities in integer milli-requests/s (rounded down; the target rounded up), cost in
1e-4 $/h.  OPTIMAL means proven optimal **over these candidates and their simulated
capacities, within the pools' GPU counts**.

**What it does not decide.**  It says nothing about shapes not enumerated, and it takes each
``cap_c`` (one replica alone under a Poisson stream) as additive: how replicas behave behind
a dispatcher is not modelled here.  The simulator's verification of the chosen fleet, adding
replicas when it misses the SLOs and trimming them when it has room, is
:mod:`solver.cpsat.plan_serving`'s.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ortools.sat.python import cp_model
from pydantic import BaseModel, ConfigDict, Field

from ..construction import build_stages, split_layers
from ..serving import SimulationResult
from ..specs import Cluster, Model, Plan, ReplicaGroup

__all__ = [
    "Candidate",
    "FleetGroup",
    "ServingPlanResult",
    "choose_replicas",
    "fleet_of",
    "plan_of",
    "replica_weight",
]

#: Integer units of the CP model.
_MILLI = 1000.0  # capacity: milli-requests/s
_COST_UNIT = 1e4  # cost: 1e-4 $/h


class Candidate(BaseModel):
    """One replica shape and its simulated capacity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    pool: str = Field(description="Pool of every stage.")
    gpu: str = Field(description="GPU of the pool.")
    tp: int = Field(description="TP degree of every stage.")
    pp: int = Field(description="Pipeline stages.")
    gpus: int = Field(description="GPUs per replica (tp x pp).")
    max_num_seqs: int = Field(description="Most running requests per replica.")
    max_num_batched_tokens: int = Field(description="Token budget per engine step.")
    kv_capacity_tokens: int = Field(description="KV-cache tokens per replica.")
    cost_per_hour: float | None = Field(description="$/h of one replica (None: unpriced).")
    capacity_rps: float = Field(description="Requests/s one replica sustains under the SLOs.")
    upper_rps: float | None = Field(description="Lowest simulated rate that missed the SLOs.")
    probes: int = Field(description="Simulations the capacity search ran.")
    complete: bool = Field(description="False: the search was cut short by the time limit.")
    saturated: bool = Field(
        default=False, description="The SLOs held up to the saturated throughput (the capacity)."
    )
    reason: str | None = Field(default=None, description="Why the capacity is 0.")

    @property
    def key(self) -> str:
        return f"{self.pool}/tp{self.tp}/pp{self.pp}/seqs{self.max_num_seqs}"


class FleetGroup(BaseModel):
    """Replicas of one candidate in the chosen fleet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str = Field(description="Pool.")
    gpu: str = Field(description="GPU.")
    tp: int = Field(description="TP degree.")
    pp: int = Field(description="Pipeline stages.")
    max_num_seqs: int = Field(description="Most running requests per replica.")
    count: int = Field(description="Replicas.")
    gpus: int = Field(description="GPUs of the group.")
    capacity_rps: float = Field(description="Simulated capacity of one replica, requests/s.")
    cost_per_hour: float | None = Field(description="$/h of the group (None: unpriced).")


class ServingPlanResult(BaseModel):
    """What :func:`~solver.cpsat.plan_serving.plan_serving` returns (never raises for INFEASIBLE / UNKNOWN)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    status: str = Field(description="OPTIMAL, FEASIBLE, INFEASIBLE or UNKNOWN.")
    objective: str = Field(description="min_cost, min_gpus or max_goodput.")
    objective_value: float | None = Field(
        default=None, description="$/h, GPUs, or the fleet's capacity in requests/s."
    )
    bound: float | None = Field(default=None, description="CP-SAT's proven bound, same unit.")
    unit: str = Field(description="Unit of objective_value.")
    rate_rps: float | None = Field(description="Target (or verified, max_goodput) rate.")
    ttft_slo_ms: float | None = Field(description="p99 TTFT SLO.")
    tpot_slo_ms: float | None = Field(description="p99 TPOT SLO.")
    gpus: int | None = Field(default=None, description="GPUs of the fleet.")
    cost_per_hour: float | None = Field(default=None, description="$/h of the fleet.")
    capacity_rps: float | None = Field(default=None, description="Summed replica capacity.")
    fleet: list[FleetGroup] = Field(default_factory=list, description="The chosen replicas.")
    plan: Plan | None = Field(default=None, description="Launchable plan (verified).")
    verified: bool = Field(default=False, description="The fleet met both p99 SLOs.")
    verification: SimulationResult | None = Field(
        default=None, description="The last fleet simulation."
    )
    extra_replicas: int = Field(default=0, description="Replicas verification added.")
    removed_replicas: int = Field(
        default=0, description="Replicas trimming removed (the fleet still verified)."
    )
    model_optimum: float | None = Field(
        default=None, description="CP-SAT's optimum over the single-replica capacities."
    )
    candidates: list[Candidate] = Field(default_factory=list, description="Every shape.")
    message: str = Field(default="", description="What the status rests on.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Search settings.")
    timings_s: dict[str, float] = Field(default_factory=dict, description="Wall time by phase.")
    time_s: float = Field(description="Wall time of the whole call.")


# ------------------------------------------------------------------------------------------
# Replica counts (CP-SAT)
# ------------------------------------------------------------------------------------------
def replica_weight(c: Candidate, objective: str) -> int:
    """A replica's weight in the CP objective: its GPUs (``min_gpus``), else its $/h in
    1e-4 $/h (0 when unpriced)."""
    if objective == "min_gpus":
        return c.gpus
    return round((c.cost_per_hour or 0.0) * _COST_UNIT)


def choose_replicas(
    cands: list[Candidate],
    pool_gpus: dict[str, int],
    objective: str,
    target: float | None,
    time_limit_s: float,
    workers: int,
    seed: int,
) -> tuple[int, dict[int, int], float | None, float | None]:
    """Lexicographic: the objective, then (at its optimum) headroom or cost.  Returns the
    CP status of the first solve, counts, objective and bound in user units."""
    cap = [math.floor(c.capacity_rps * _MILLI) for c in cands]

    def build(fix: int | None) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        m = cp_model.CpModel()
        n = [m.new_int_var(0, pool_gpus[c.pool] // c.gpus, f"n{i}") for i, c in enumerate(cands)]
        for pool, g in pool_gpus.items():
            terms = [n[i] * c.gpus for i, c in enumerate(cands) if c.pool == pool]
            if terms:
                m.add(sum(terms) <= g)
        total_cap = sum(n[i] * cap[i] for i in range(len(cands)))
        weight = sum(
            n[i] * replica_weight(c, objective if objective != "max_goodput" else "min_cost")
            for i, c in enumerate(cands)
        )
        if objective == "max_goodput":
            if fix is None:
                m.maximize(total_cap)
            else:
                m.add(total_cap >= fix)
                m.minimize(weight)
        else:
            assert target is not None
            m.add(total_cap >= math.ceil(target * _MILLI - 1e-9))
            if fix is None:
                m.minimize(weight)
            else:
                m.add(weight <= fix)
                m.maximize(total_cap)
        return m, n

    def solve(m: cp_model.CpModel, limit: float) -> tuple[cp_model.CpSolver, Any]:
        s = cp_model.CpSolver()
        s.parameters.max_time_in_seconds = max(limit, 0.05)
        s.parameters.num_workers = workers
        s.parameters.random_seed = seed
        return s, s.solve(m)

    t0 = time.perf_counter()
    m, n = build(None)
    s, code = solve(m, time_limit_s - (time.perf_counter() - t0))
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return code, {}, None, None
    counts = {i: int(s.value(v)) for i, v in enumerate(n) if s.value(v) > 0}
    obj, bound = s.objective_value, s.best_objective_bound
    if code == cp_model.OPTIMAL:
        m2, n2 = build(round(obj))
        s2, code2 = solve(m2, time_limit_s - (time.perf_counter() - t0))
        if code2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            counts = {i: int(s2.value(v)) for i, v in enumerate(n2) if s2.value(v) > 0}
    scale = (
        _MILLI if objective == "max_goodput" else (1.0 if objective == "min_gpus" else _COST_UNIT)
    )
    return code, counts, obj / scale, bound / scale


# ------------------------------------------------------------------------------------------
# The chosen fleet as groups and as a plan
# ------------------------------------------------------------------------------------------
def fleet_of(cands: list[Candidate], counts: dict[int, int]) -> list[FleetGroup]:
    """The fleet of ``counts`` (candidate index -> replicas), by pool, TP descending, PP."""
    out = []
    for i in sorted(counts, key=lambda k: (cands[k].pool, -cands[k].tp, cands[k].pp)):
        c, k = cands[i], counts[i]
        out.append(
            FleetGroup(
                pool=c.pool,
                gpu=c.gpu,
                tp=c.tp,
                pp=c.pp,
                max_num_seqs=c.max_num_seqs,
                count=k,
                gpus=k * c.gpus,
                capacity_rps=c.capacity_rps,
                cost_per_hour=None if c.cost_per_hour is None else k * c.cost_per_hour,
            )
        )
    return out


def plan_of(model: Model, cluster: Cluster, fleet: list[FleetGroup]) -> Plan:
    """The launchable inference plan of ``fleet`` (layers split evenly over each PP)."""
    groups = [
        (g.count, [(g.pool, g.tp, n) for n in split_layers(model.num_layers, g.pp)]) for g in fleet
    ]
    stages = build_stages(cluster, groups)
    return Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=g.count, batch_size=g.max_num_seqs, stages=st)
            for g, st in zip(fleet, stages, strict=True)
        ],
    )
