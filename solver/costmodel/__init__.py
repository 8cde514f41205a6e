"""The cost model: pure numpy physics, one small function per term, each citing its source.

Used by the evaluator (``solver.evaluate``) and by the CP-SAT planner to precompute its
coefficient tables.  Imports nothing from ortools.
"""

from __future__ import annotations

from . import constants
from .comm import (
    LOCAL,
    LinkTier,
    allgather_time,
    allreduce_time,
    hierarchical_allgather_time,
    hierarchical_allreduce_time,
    hierarchical_reduce_scatter_time,
    p2p_time,
    reduce_scatter_time,
)
from .compute import (
    Op,
    PassTime,
    block_forward_ops,
    block_time,
    embedding_time,
    head_time,
    op_time,
    peak_tflops,
)
from .flops import model_flops_per_step, narayanan_eq3_flops
from .memory import (
    BYTES_PER_PARAM,
    COMM_BYTES_PER_PARAM,
    ZERO3_LIVE_BYTES_PER_PARAM,
    activation_transient_bytes,
    block_activation_bytes,
    embedding_activation_bytes,
    head_activation_bytes,
    in_flight_micro_batches,
    kv_cache_bytes_per_token,
    model_state_bytes,
    zero3_gathered_weight_bytes,
)
from .params import (
    block_params,
    block_params_per_gpu,
    dense_block_params,
    embedding_params,
    has_bias,
    head_params,
    kv_heads_per_gpu,
    norm_params,
    stage_params,
    stage_params_per_gpu,
    total_params,
)
from .pipeline import (
    PipelineEvent,
    PipelineSim,
    pipeline_time_closed_form,
    schedule_order,
    simulate_pipeline,
)
from .serving_compute import decode_block_time, prefill_block_time
from .step import dp_hideable_time, dp_step_time, optimizer_step_time

__all__ = [
    "BYTES_PER_PARAM",
    "COMM_BYTES_PER_PARAM",
    "ZERO3_LIVE_BYTES_PER_PARAM",
    "LOCAL",
    "LinkTier",
    "Op",
    "PassTime",
    "PipelineEvent",
    "PipelineSim",
    "activation_transient_bytes",
    "allgather_time",
    "allreduce_time",
    "block_activation_bytes",
    "block_forward_ops",
    "block_params",
    "block_params_per_gpu",
    "block_time",
    "constants",
    "decode_block_time",
    "dp_hideable_time",
    "dp_step_time",
    "dense_block_params",
    "embedding_activation_bytes",
    "embedding_params",
    "embedding_time",
    "has_bias",
    "head_activation_bytes",
    "head_params",
    "head_time",
    "hierarchical_allgather_time",
    "hierarchical_allreduce_time",
    "hierarchical_reduce_scatter_time",
    "in_flight_micro_batches",
    "kv_cache_bytes_per_token",
    "kv_heads_per_gpu",
    "model_flops_per_step",
    "model_state_bytes",
    "narayanan_eq3_flops",
    "norm_params",
    "op_time",
    "optimizer_step_time",
    "p2p_time",
    "peak_tflops",
    "pipeline_time_closed_form",
    "prefill_block_time",
    "reduce_scatter_time",
    "schedule_order",
    "simulate_pipeline",
    "stage_params",
    "stage_params_per_gpu",
    "total_params",
    "zero3_gathered_weight_bytes",
]
