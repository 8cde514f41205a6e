"""Continuous-batching serving simulator (verify layer: numpy only, no ortools).

:func:`simulate` serves a stream of requests (:func:`generate_requests`: Poisson arrivals
and length distributions; :func:`load_trace`: a trace file) on an inference plan's replicas,
each running vLLM-style continuous batching with chunked prefill and KV-cache preemption
(:mod:`~solver.serving.simulator`) whose steps are priced by the evaluator's cost model
(:mod:`~solver.serving.stepcost`), and reports TTFT, TPOT, ITL and end-to-end latency
percentiles, throughput and goodput (:mod:`~solver.serving.metrics`).
"""

from __future__ import annotations

from .api import (
    DEFAULT_MAX_NUM_SEQS,
    KV_POLICIES,
    Replica,
    ReplicaSetup,
    SimulationResult,
    jsq_assignment,
    kv_policy_for,
    serve,
    simulate,
    weighted_assignment,
    weighted_random_assignment,
)
from .metrics import Percentiles, ServingMetrics, serving_metrics
from .simulator import Engine, ReplicaTrace, simulate_replica
from .stepcost import (
    ConstantStepCost,
    FunctionStepCost,
    RooflineStepCost,
    StepCost,
    default_max_num_batched_tokens,
    kv_capacity_tokens,
    roofline_step_cost,
)
from .workload import (
    Lengths,
    Requests,
    Traffic,
    generate_requests,
    lengths_from_spec,
    load_trace,
    parse_lengths,
    workload_traffic,
)

__all__ = [
    "DEFAULT_MAX_NUM_SEQS",
    "KV_POLICIES",
    "ConstantStepCost",
    "Engine",
    "FunctionStepCost",
    "Lengths",
    "Percentiles",
    "Replica",
    "ReplicaSetup",
    "ReplicaTrace",
    "Requests",
    "RooflineStepCost",
    "ServingMetrics",
    "SimulationResult",
    "StepCost",
    "Traffic",
    "default_max_num_batched_tokens",
    "generate_requests",
    "jsq_assignment",
    "kv_capacity_tokens",
    "kv_policy_for",
    "lengths_from_spec",
    "load_trace",
    "parse_lengths",
    "roofline_step_cost",
    "serve",
    "serving_metrics",
    "simulate",
    "simulate_replica",
    "weighted_assignment",
    "weighted_random_assignment",
    "workload_traffic",
]
