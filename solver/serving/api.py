"""``simulate``: serve a stream of requests on an inference plan's replicas.

Every replica of every replica group of the plan runs the continuous-batching engine of
:mod:`solver.serving.simulator`, priced by the roofline step cost of
:mod:`solver.serving.stepcost` for its group.  Requests are dispatched in arrival order,
before they are served, so replicas never wait for each other and simulate independently:

* **round-robin** (the default): request i to replica i mod R, groups in plan order; a faster
  group gets the same share of requests as a slower one;
* **weighted round-robin** (``routing="weighted_round_robin"`` with weights): deterministic
  stride scheduling (:func:`weighted_assignment`): replica k gets requests at the "virtual
  times" ``(j + 1/2) / w_k``, merged in order, so every prefix of the stream is split in
  proportion to the weights to within one request per replica, and one replica's requests
  are evenly spaced in the stream (smoother than the stream itself);
* **weighted random** (``routing="weighted_random"`` with weights): each request goes to
  replica k with probability ``w_k / sum(w)``, independently (seeded).  Random thinning of a
  Poisson process is a Poisson process (e.g. Kingman, *Poisson Processes*, 1993, sec. 5.1),
  so each replica then sees exactly the Poisson stream, at ``rate w_k / sum(w)``, that the
  serving planner measured its capacity on; the planner verifies with it by default.

Not modelled: join-shortest-queue or least-load routing, which would couple the replicas'
simulations (a request's replica would depend on the others' queues at its arrival).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import SpecError
from ..evaluate.calibration import Cal, calibrated_cluster, gpu_with_calibration
from ..evaluate.checks import check_divisibility, check_kind, check_layers, check_precision
from ..specs import Cluster, InferenceWorkload, Model, Plan, check_spec_arguments
from .metrics import ServingMetrics, serving_metrics
from .simulator import ReplicaTrace, simulate_replica
from .stepcost import (
    StepCost,
    default_max_num_batched_tokens,
    kv_capacity_tokens,
    roofline_step_cost,
)
from .workload import Requests

__all__ = [
    "DEFAULT_MAX_NUM_SEQS",
    "ROUTINGS",
    "Replica",
    "ReplicaSetup",
    "SimulationResult",
    "serve",
    "simulate",
    "weighted_assignment",
    "weighted_random_assignment",
]

#: Sequences per replica when the plan's group gives no batch size (vLLM's default
#: ``max_num_seqs`` for GPUs under 70 GiB, ``EngineArgs.get_batch_defaults``).
DEFAULT_MAX_NUM_SEQS = 256


@dataclass(frozen=True)
class Replica:
    """One engine: how its steps cost and its scheduler limits."""

    cost: StepCost
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_capacity_tokens: int


class ReplicaSetup(BaseModel):
    """How the replicas of one replica group were simulated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: int = Field(description="Replica group index in the plan.")
    count: int = Field(description="Replicas of the group.")
    pool: str = Field(description="Pool of the first stage.")
    tp: int = Field(description="TP degree of the first stage.")
    pp: int = Field(description="Pipeline stages.")
    max_num_seqs: int = Field(description="Most running requests per replica.")
    max_num_batched_tokens: int = Field(description="Token budget per engine step.")
    kv_capacity_tokens: int = Field(description="KV-cache tokens per replica.")
    requests: int = Field(description="Requests dispatched to the group.")


class SimulationResult(ServingMetrics):
    """:class:`~solver.serving.metrics.ServingMetrics` of the run plus how it was set up."""

    routing: str = Field(default="round_robin", description="How requests reach replicas.")
    replicas: int = Field(description="Replicas over all groups.")
    groups: list[ReplicaSetup] = Field(default_factory=list, description="Per replica group.")
    step_overhead_s: float = Field(default=0.0, description="Fixed time added to every step.")
    wall_time_s: float = Field(description="Wall time of the simulation itself, seconds.")


def weighted_assignment(num_requests: int, weights: Sequence[float]) -> list[np.ndarray]:
    """Split requests ``0..num_requests-1`` (in arrival order) over replicas in proportion to
    ``weights``, deterministically (stride scheduling, see the module docstring).

    Returns each replica's request indices, sorted.  Equal weights give round-robin.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise SpecError("weights: need one weight per replica")
    bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
    if bad.size:
        i = int(bad[0])
        raise SpecError(f"weights[{i}]: must be finite and > 0, got {w[i]!r}")
    n = int(num_requests)
    share = w / w.sum()
    # Enough virtual slots per replica that the first n merged slots never run one out.
    slots = np.ceil(share * n).astype(np.int64) + 1
    owner = np.repeat(np.arange(w.size), slots)
    j = np.concatenate([np.arange(k, dtype=np.float64) for k in slots])
    vtime = (j + 0.5) / share[owner]
    order = np.lexsort((owner, vtime))[:n]  # ties: lower replica index first
    target = owner[order]
    return [np.flatnonzero(target == k) for k in range(w.size)]


def weighted_random_assignment(
    num_requests: int, weights: Sequence[float], seed: int = 0
) -> list[np.ndarray]:
    """Send each request to replica k with probability ``w_k / sum(w)``, independently
    (numpy ``Generator.choice`` seeded with ``seed``).  Returns each replica's indices."""
    w = np.asarray(weights, dtype=np.float64)
    weighted_assignment(1, weights)  # the same checks
    rng = np.random.default_rng(seed)
    target = rng.choice(w.size, size=int(num_requests), p=w / w.sum())
    return [np.flatnonzero(target == k) for k in range(w.size)]


#: Dispatch policies of :func:`serve` / :func:`simulate` (the module docstring).
ROUTINGS = ("round_robin", "weighted_round_robin", "weighted_random")


def serve(
    requests: Requests,
    replicas: Sequence[Replica],
    *,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    weights: Sequence[float] | None = None,
    routing: str | None = None,
    routing_seed: int = 0,
) -> tuple[ServingMetrics, list[ReplicaTrace], list[np.ndarray]]:
    """Dispatch ``requests`` over ``replicas`` and simulate each.

    ``routing``: one of :data:`ROUTINGS`; default ``round_robin`` without ``weights`` and
    ``weighted_round_robin`` with them (:func:`weighted_assignment`);
    ``weighted_random`` (:func:`weighted_random_assignment`, seeded with ``routing_seed``).

    Returns the metrics, each replica's trace and each replica's request indices (into
    ``requests``).
    """
    if not replicas:
        raise SpecError("replicas: need at least one replica")
    for name, v in (("ttft_slo_ms", ttft_slo_ms), ("tpot_slo_ms", tpot_slo_ms)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise SpecError(f"{name}: must be finite and > 0, got {v!r}")
    n, r = len(requests), len(replicas)
    if weights is not None and len(weights) != r:
        raise SpecError(f"weights: need one weight per replica ({r}), got {len(weights)}")
    routing = routing or ("round_robin" if weights is None else "weighted_round_robin")
    if routing not in ROUTINGS:
        raise SpecError(f"routing: expected one of {', '.join(ROUTINGS)}, got {routing!r}")
    if routing != "round_robin" and weights is None:
        raise SpecError(f"routing: {routing} needs weights (one per replica), got None")
    if routing == "round_robin":
        split = [np.arange(k, n, r) for k in range(r)]
    elif routing == "weighted_round_robin":
        assert weights is not None
        split = weighted_assignment(n, weights)
    else:
        assert weights is not None
        split = weighted_random_assignment(n, weights, routing_seed)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    traces: list[ReplicaTrace] = []
    shares: list[np.ndarray] = []
    for rep, idx in zip(replicas, split, strict=True):
        shares.append(idx)
        if idx.size == 0:
            continue
        tr = simulate_replica(
            requests.subset(idx),
            rep.cost,
            max_num_seqs=rep.max_num_seqs,
            max_num_batched_tokens=rep.max_num_batched_tokens,
            kv_capacity_tokens=rep.kv_capacity_tokens,
        )
        first[idx], finish[idx] = tr.first_token_s, tr.finish_s
        traces.append(tr)
    metrics = serving_metrics(
        requests.arrival_s,
        requests.prompt_tokens,
        requests.output_tokens,
        first,
        finish,
        np.concatenate([t.step_s for t in traces]),
        np.concatenate([t.step_decode for t in traces]),
        ttft_slo_ms=ttft_slo_ms,
        tpot_slo_ms=tpot_slo_ms,
    )
    return metrics, traces, shares


def _positive_int(v: int | None, name: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v > 10_000_000:
        raise SpecError(f"{name}: must be an integer in 1..10,000,000, got {v!r}")
    return v


def simulate(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    plan: Plan,
    requests: Requests,
    *,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    kv_capacity: int | None = None,
    step_overhead_s: float = 0.0,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    calibration: Cal = None,
    replica_weights: Sequence[float] | None = None,
    routing: str | None = None,
    routing_seed: int = 0,
) -> SimulationResult:
    """Simulate continuous-batching serving of ``requests`` on ``plan``.

    Parameters
    ----------
    model, cluster, workload, plan
        Validated specs; ``plan`` an inference plan (``shardwise plan --out``).
    requests
        From :func:`~solver.serving.generate_requests` or :func:`~solver.serving.load_trace`.
    max_num_seqs
        Running requests per replica; default each group's ``batch_size`` (what
        ``shardwise export`` passes to vLLM as ``--max-num-seqs``), else 256.
    max_num_batched_tokens
        Token budget per step; default vLLM's (:func:`default_max_num_batched_tokens`),
        raised to ``max_num_seqs`` if smaller.
    kv_capacity
        KV-cache tokens per replica; default what the GPUs' memory leaves
        (:func:`~solver.serving.stepcost.kv_capacity_tokens`).
    step_overhead_s
        Fixed seconds added to every engine step (default 0: not modelled yet).
    ttft_slo_ms, tpot_slo_ms
        SLOs for goodput; default the workload's ``ttft_ms`` / ``tpot_ms`` (None: no limit).
    calibration
        As for :func:`solver.evaluate.evaluate`; default the cluster's own reference.
    replica_weights
        One weight per replica group (each replica of group g gets weight
        ``replica_weights[g]``): dispatch in proportion to them
        (:func:`weighted_assignment`), e.g. each replica's capacity in requests/s; default
        round-robin.
    routing, routing_seed
        Dispatch policy (:data:`ROUTINGS`; default ``round_robin``, or
        ``weighted_round_robin`` with ``replica_weights``) and the seed of
        ``weighted_random``.

    Returns
    -------
    SimulationResult
        Raises :class:`~solver.errors.SpecError` (one line naming the field) for bad input.
    """
    started = time.perf_counter()
    check_spec_arguments(model=model, cluster=cluster, workload=workload, plan=plan)
    if not isinstance(workload, InferenceWorkload):
        raise SpecError("workload: the serving simulator needs an inference workload")
    if not isinstance(requests, Requests):
        raise SpecError(f"requests: expected Requests, got {type(requests).__name__}")
    problems = check_kind(plan, workload) + check_layers(model, plan)
    if not problems:
        problems = check_divisibility(model, plan) + check_precision(cluster, plan, workload)
    if problems:
        raise SpecError(f"plan: {problems[0]}")
    pool_names = {p.name for p in cluster.pools}
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            if st.pool not in pool_names:
                raise SpecError(
                    f"plan.replica_groups[{g}].stages[{s}].pool: no pool {st.pool!r} in the cluster"
                )
    _positive_int(max_num_seqs, "max_num_seqs")
    _positive_int(max_num_batched_tokens, "max_num_batched_tokens")
    _positive_int(kv_capacity, "kv_capacity")
    if replica_weights is not None and len(replica_weights) != len(plan.replica_groups):
        raise SpecError(
            f"replica_weights: need one per replica group ({len(plan.replica_groups)}), "
            f"got {len(replica_weights)}"
        )
    for g, wt in enumerate(replica_weights or ()):
        if (
            isinstance(wt, bool)
            or not isinstance(wt, (int, float))
            or not math.isfinite(wt)
            or wt <= 0
        ):
            raise SpecError(f"replica_weights[{g}]: must be finite and > 0, got {wt!r}")
    if calibration is None and cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)
    ttft_slo = workload.ttft_ms if ttft_slo_ms is None else ttft_slo_ms
    tpot_slo = workload.tpot_ms if tpot_slo_ms is None else tpot_slo_ms
    replicas: list[Replica] = []
    setups: list[dict[str, int | str]] = []
    for g, grp in enumerate(plan.replica_groups):
        seqs = max_num_seqs or grp.batch_size or DEFAULT_MAX_NUM_SEQS
        gpu = gpu_with_calibration(cluster.pool(grp.stages[0].pool), calibration)
        budget = max(max_num_batched_tokens or default_max_num_batched_tokens(gpu), seqs)
        cost = roofline_step_cost(
            model,
            cluster,
            workload,
            grp,
            max_num_seqs=seqs,
            max_num_batched_tokens=budget,
            calibration=calibration,
            step_overhead_s=step_overhead_s,
        )
        kv = kv_capacity or kv_capacity_tokens(
            model,
            cluster,
            workload,
            grp,
            max_num_seqs=seqs,
            max_num_batched_tokens=budget,
            calibration=calibration,
        )
        if kv < 1:
            raise SpecError(f"plan.replica_groups[{g}]: the weights leave no memory for a KV cache")
        replicas += [Replica(cost, seqs, budget, kv)] * grp.count
        setups.append(
            {
                "group": g,
                "count": grp.count,
                "pool": grp.stages[0].pool,
                "tp": grp.stages[0].tp,
                "pp": grp.pp,
                "max_num_seqs": seqs,
                "max_num_batched_tokens": budget,
                "kv_capacity_tokens": kv,
            }
        )
    weights = (
        None
        if replica_weights is None
        else [
            float(wt)
            for wt, grp in zip(replica_weights, plan.replica_groups, strict=True)
            for _ in range(grp.count)
        ]
    )
    metrics, _, shares = serve(
        requests,
        replicas,
        ttft_slo_ms=ttft_slo,
        tpot_slo_ms=tpot_slo,
        weights=weights,
        routing=routing,
        routing_seed=routing_seed,
    )
    start = 0
    groups = []
    for setup, grp in zip(setups, plan.replica_groups, strict=True):
        got = sum(len(shares[start + i]) for i in range(grp.count))
        start += grp.count
        groups.append(ReplicaSetup.model_validate({**setup, "requests": got}))
    return SimulationResult(
        **metrics.model_dump(),
        routing=routing or ("round_robin" if weights is None else "weighted_round_robin"),
        replicas=len(replicas),
        groups=groups,
        step_overhead_s=step_overhead_s,
        wall_time_s=time.perf_counter() - started,
    )
