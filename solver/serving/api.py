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
  serving planner measured its capacity on; the planner verifies with it by default;
* **join-shortest-queue** (``routing="jsq"``): each request, at its arrival, goes to the
  replica with the fewest *outstanding* requests (dispatched there and not finished), ties
  to the lowest replica index -- the "least outstanding requests" policy of common load
  balancers (AWS Application Load Balancer's ``least_outstanding_requests`` routing
  algorithm); SGLang's router (sgl-router, ``cache_aware`` policy) likewise sends a request
  without a strong prefix-cache match, and every request while the workers' loads are
  imbalanced, to the lowest-load worker (prefix caching is not modelled here, so that is the
  whole policy).  This couples the replicas: every replica's engine (:class:`~solver.serving.simulator.Engine`)
  is advanced to the arrival time before the request is placed, so the queues it compares
  are those the simulation has at that instant.  Weights are not used.

KV cache policy (``kv_policy``, :mod:`solver.serving.simulator`): ``preempt`` (vLLM and
SGLang: blocks allocated as sequences grow, the newest running request preempted and
recomputed when the pool is full) or ``reserve`` (TensorRT-LLM's default
``GUARANTEED_NO_EVICT``: prompt + output reserved at admission); default by the workload's
``serving_engine`` (:func:`kv_policy_for`).

Multi-step scheduling (``num_scheduler_steps`` k, default the workload's, 1): every replica's
engine runs its decode batches k steps per schedule and streams them as one chunk (vLLM
0.5.5-0.7 ``--num-scheduler-steps``; :mod:`solver.serving.simulator`).  Under JSQ a request
counts as outstanding until its last chunk is delivered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..costmodel.constants import KV_BLOCK_SIZE_TOKENS
from ..errors import SpecError
from ..evaluate.calibration import Cal, calibrated_cluster, gpu_with_calibration
from ..evaluate.checks import check_divisibility, check_kind, check_layers, check_precision
from ..specs import Cluster, InferenceWorkload, Model, Plan, ReplicaGroup, check_spec_arguments
from .metrics import ServingMetrics, serving_metrics
from .simulator import (
    KV_POLICIES,
    Engine,
    ReplicaTrace,
    SloStop,
    check_fit,
    check_scheduler_steps,
)
from .stepcost import (
    StepCost,
    default_max_num_batched_tokens,
    kv_capacity_tokens,
    roofline_step_cost,
)
from .workload import Requests

__all__ = [
    "DEFAULT_MAX_NUM_SEQS",
    "KV_POLICIES",
    "ROUTINGS",
    "Replica",
    "ReplicaSetup",
    "SimulationResult",
    "check_percentile",
    "jsq_assignment",
    "kv_policy_for",
    "replica_for",
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
    kv_policy: str = "preempt"
    block_size: int = KV_BLOCK_SIZE_TOKENS
    num_scheduler_steps: int = 1

    def engine(self, stop: SloStop | None = None) -> Engine:
        """A fresh engine of this replica (:class:`~solver.serving.simulator.Engine`)."""
        return Engine(
            self.cost,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            kv_capacity_tokens=self.kv_capacity_tokens,
            block_size=self.block_size,
            kv_policy=self.kv_policy,
            stop=stop,
            num_scheduler_steps=self.num_scheduler_steps,
        )

    def serve(self, requests: Requests, stop: SloStop | None = None) -> ReplicaTrace:
        """Serve ``requests`` (sorted by arrival) on a fresh engine of this replica."""
        eng = self.engine(stop)
        eng.add_all(requests)
        eng.run()
        return eng.trace()


def replica_for(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    group: ReplicaGroup,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int | None = None,
    kv_capacity: int | None = None,
    calibration: Cal = None,
    step_overhead_s: float = 0.0,
    kv_policy: str | None = None,
    num_scheduler_steps: int | None = None,
) -> Replica:
    """The engine of one replica of ``group``, as :func:`simulate` runs it and the serving
    planner's capacity search scores it: token budget ``max_num_batched_tokens`` (default
    vLLM's for the first stage's GPU, :func:`default_max_num_batched_tokens`) and at least
    ``max_num_seqs``; the roofline step cost; the serving ledger's KV capacity unless
    ``kv_capacity`` is given; the workload's KV policy and scheduler steps unless given."""
    gpu = gpu_with_calibration(cluster.pool(group.stages[0].pool), calibration)
    budget = max(max_num_batched_tokens or default_max_num_batched_tokens(gpu), max_num_seqs)
    cost = roofline_step_cost(
        model,
        cluster,
        workload,
        group,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget,
        calibration=calibration,
        step_overhead_s=step_overhead_s,
    )
    kv = kv_capacity or kv_capacity_tokens(
        model,
        cluster,
        workload,
        group,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget,
        calibration=calibration,
    )
    return Replica(
        cost,
        max_num_seqs,
        budget,
        kv,
        kv_policy_for(workload) if kv_policy is None else kv_policy,
        num_scheduler_steps=(
            workload.num_scheduler_steps if num_scheduler_steps is None else num_scheduler_steps
        ),
    )


def kv_policy_for(workload: InferenceWorkload) -> str:
    """The KV-cache policy of the workload's serving engine: ``reserve`` for TensorRT-LLM,
    both profiles (its default capacity scheduler, GUARANTEED_NO_EVICT; the 0.9-era
    gptManagerBenchmark defaults to ``guaranteed_no_evict`` too), ``preempt`` otherwise (vLLM, the
    ``auto`` engine; the pure roofline follows vLLM).  SGLang also frees and re-queues
    running requests for recomputation when decode memory runs out
    (``ScheduleBatch.retract_decode``, python/sglang/srt/managers/schedule_batch.py), but
    picks the request with the fewest output tokens (longest prompt on ties) rather than the
    newest: approximated here by vLLM's choice."""
    return "reserve" if workload.serving_engine.startswith("trtllm") else "preempt"


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
    kv_policy: str = Field(default="preempt", description="KV-cache policy: preempt or reserve.")
    num_scheduler_steps: int = Field(
        default=1, description="Decode steps per schedule (vLLM multi-step scheduling)."
    )
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
ROUTINGS = ("round_robin", "weighted_round_robin", "weighted_random", "jsq")


def jsq_assignment(
    requests: Requests, replicas: Sequence[Replica]
) -> tuple[list[ReplicaTrace], list[np.ndarray]]:
    """Join-shortest-queue dispatch (module docstring), simulated: each replica's trace and
    request indices.  Every request must fit every replica's KV cache (any may get it)."""
    for rep in replicas:
        check_fit(
            requests.prompt_tokens, requests.output_tokens, rep.kv_capacity_tokens, rep.block_size
        )
    engines = [rep.engine() for rep in replicas]
    arrival = requests.arrival_s.tolist()
    prompt = requests.prompt_tokens.tolist()
    output = requests.output_tokens.tolist()
    owner: list[list[int]] = [[] for _ in engines]
    for i, t in enumerate(arrival):
        best, fewest = 0, -1
        for k, eng in enumerate(engines):
            eng.run(t)
            q = eng.outstanding(t)
            if fewest < 0 or q < fewest:
                best, fewest = k, q
                if q == 0:
                    break  # an idle replica: no later one can beat it (ties: lowest index)
        engines[best].add(t, prompt[i], output[i])
        owner[best].append(i)
    for eng in engines:
        eng.run()
    return [e.trace() for e in engines], [np.asarray(o, dtype=np.int64) for o in owner]


def serve(
    requests: Requests,
    replicas: Sequence[Replica],
    *,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    weights: Sequence[float] | None = None,
    routing: str | None = None,
    routing_seed: int = 0,
    slo_percentile: float = 99.0,
) -> tuple[ServingMetrics, list[ReplicaTrace], list[np.ndarray]]:
    """Dispatch ``requests`` over ``replicas`` and simulate each.

    ``routing``: one of :data:`ROUTINGS`; default ``round_robin`` without ``weights`` and
    ``weighted_round_robin`` with them (:func:`weighted_assignment`);
    ``weighted_random`` (:func:`weighted_random_assignment`, seeded with ``routing_seed``);
    ``jsq`` (:func:`jsq_assignment`, weights unused).  ``slo_percentile`` (0, 100]: the
    percentile the metrics report TTFT and TPOT at besides p50/p90/p99.

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
    if routing not in ("round_robin", "jsq") and weights is None:
        raise SpecError(f"routing: {routing} needs weights (one per replica), got None")
    check_percentile(slo_percentile)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    traces: list[ReplicaTrace] = []
    shares: list[np.ndarray] = []
    if routing == "jsq":
        all_traces, shares = jsq_assignment(requests, replicas)
        for tr, idx in zip(all_traces, shares, strict=True):
            if idx.size:
                first[idx], finish[idx] = tr.first_token_s, tr.finish_s
                traces.append(tr)
    else:
        if routing == "round_robin":
            split = [np.arange(k, n, r) for k in range(r)]
        elif routing == "weighted_round_robin":
            assert weights is not None
            split = weighted_assignment(n, weights)
        else:
            assert weights is not None
            split = weighted_random_assignment(n, weights, routing_seed)
        for rep, idx in zip(replicas, split, strict=True):
            shares.append(idx)
            if idx.size == 0:
                continue
            tr = rep.serve(requests.subset(idx))
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
        slo_percentile=slo_percentile,
        num_preemptions=sum(t.num_preemptions for t in traces),
        recomputed_tokens=sum(t.recomputed_tokens for t in traces),
        **_itl_samples(traces),
    )
    return metrics, traces, shares


def _itl_samples(traces: Sequence[ReplicaTrace]) -> dict[str, np.ndarray]:
    """``itl_s`` / ``itl_weight`` for :func:`serving_metrics` when a trace has multi-step
    samples (the others' steps stand for theirs); none otherwise."""
    if all(t.itl_s is None for t in traces):
        return {}
    return {
        "itl_s": np.concatenate([t.step_s if t.itl_s is None else t.itl_s for t in traces]),
        "itl_weight": np.concatenate(
            [t.step_decode if t.itl_weight is None else t.itl_weight for t in traces]
        ),
    }


def check_percentile(value: object, name: str = "slo_percentile") -> float:
    """``value`` as a percentile in (0, 100], else SpecError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= 100
    ):
        raise SpecError(f"{name}: must be a percentile in (0, 100], got {value!r}")
    return float(value)


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
    kv_policy: str | None = None,
    slo_percentile: float | None = None,
    num_scheduler_steps: int | None = None,
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
        ``weighted_round_robin`` with ``replica_weights``; ``jsq``: join-shortest-queue)
        and the seed of ``weighted_random``.
    kv_policy
        ``preempt`` or ``reserve`` (:mod:`solver.serving.simulator`); default the workload's
        engine's (:func:`kv_policy_for`).
    slo_percentile
        Percentile the SLOs apply to (default the workload's ``slo_percentile``, 99).
    num_scheduler_steps
        Decode steps per schedule, 1..64 (vLLM multi-step scheduling,
        :mod:`solver.serving.simulator`); default the workload's ``num_scheduler_steps``, 1.

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
    policy = kv_policy_for(workload) if kv_policy is None else kv_policy
    if policy not in KV_POLICIES:
        raise SpecError(f"kv_policy: expected one of {', '.join(KV_POLICIES)}, got {policy!r}")
    pct = check_percentile(workload.slo_percentile if slo_percentile is None else slo_percentile)
    steps = check_scheduler_steps(
        workload.num_scheduler_steps if num_scheduler_steps is None else num_scheduler_steps
    )
    if calibration is None and cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)
    ttft_slo = workload.ttft_ms if ttft_slo_ms is None else ttft_slo_ms
    tpot_slo = workload.tpot_ms if tpot_slo_ms is None else tpot_slo_ms
    replicas: list[Replica] = []
    setups: list[dict[str, int | str]] = []
    for g, grp in enumerate(plan.replica_groups):
        seqs = max_num_seqs or grp.batch_size or DEFAULT_MAX_NUM_SEQS
        rep = replica_for(
            model,
            cluster,
            workload,
            grp,
            max_num_seqs=seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            kv_capacity=kv_capacity,
            calibration=calibration,
            step_overhead_s=step_overhead_s,
            kv_policy=policy,
            num_scheduler_steps=steps,
        )
        budget, kv = rep.max_num_batched_tokens, rep.kv_capacity_tokens
        if kv < 1:
            raise SpecError(f"plan.replica_groups[{g}]: the weights leave no memory for a KV cache")
        replicas += [rep] * grp.count
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
        slo_percentile=pct,
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
        kv_policy=policy,
        num_scheduler_steps=steps,
        replicas=len(replicas),
        groups=groups,
        step_overhead_s=step_overhead_s,
        wall_time_s=time.perf_counter() - started,
    )
