"""The memory ledger: one row per replica group per stage (weights, gradients, optimizer state,
activations, KV cache, framework overhead against the GPU's capacity), for training stages and
for the inference evaluation alike, and :func:`training_memory_ledger` on its own."""

from __future__ import annotations

from typing import Any

from ..costmodel import (
    ZERO3_LIVE_BYTES_PER_PARAM,
    activation_transient_bytes,
    block_activation_bytes,
    block_params_per_gpu,
    embedding_activation_bytes,
    head_activation_bytes,
    in_flight_micro_batches,
    model_state_bytes,
    stage_params_per_gpu,
    zero3_gathered_weight_bytes,
)
from ..costmodel import constants as C
from ..costmodel.memory import (
    ZERO3_LOSS_PHASE_BYTES_PER_PARAM,
    eager_loss_cached_bytes,
    fsdp2_root_unsharded_bytes,
    fsdp2_stream_cache_bytes,
    grads_phase_activation_bytes,
)
from ..costmodel.serving_memory import (
    kv_blocks_per_sequence,
    max_concurrent_sequences,
    stage_kv_pool,
)
from ..costmodel.stack import stack_of
from ..specs import (
    Cluster,
    GPUSpec,
    InferenceWorkload,
    Model,
    Plan,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)
from .calibration import Cal, calibrated_cluster, gpu_with_calibration

__all__ = ["serving_ledger_row", "serving_memory_violations", "training_memory_ledger"]


def _gb(x: float) -> float:
    return x / C.GB


def _ledger_row(
    group: int,
    stage: int,
    st: Stage,
    gpu: GPUSpec,
    weights: float,
    grads: float,
    optimizer: float,
    activations: float,
    kv_cache: float,
) -> dict[str, Any]:
    """One memory-ledger row (bytes in, GB out); total includes the framework overhead (CUDA
    context, NCCL buffers, cuBLAS workspaces: ``overhead_GB``, its parts beside it)."""
    row: dict[str, Any] = {
        "group": group,
        "stage": stage,
        "pool": st.pool,
        "tp": st.tp,
        "weights_GB": _gb(weights),
        "grads_GB": _gb(grads),
        "optimizer_GB": _gb(optimizer),
        "activations_GB": _gb(activations),
        "kv_cache_GB": _gb(kv_cache),
        "overhead_GB": C.FRAMEWORK_OVERHEAD_GB,
        "cuda_context_GB": C.CUDA_CONTEXT_GB,
        "nccl_buffers_GB": C.NCCL_BUFFERS_GB,
        "cublas_workspace_GB": C.CUBLAS_WORKSPACE_GB,
    }
    row["total_GB"] = (
        _gb(weights + grads + optimizer + activations + kv_cache) + C.FRAMEWORK_OVERHEAD_GB
    )
    row["capacity_GB"] = gpu.memory_GB
    _set_reserved(row)
    return row


def _set_reserved(row: dict[str, Any]) -> None:
    """The caching allocator's reserved peak beside the allocated one (``total_GB``):
    ``allocator_reserved_GB`` = the tensors' peak x (1 + ``ALLOCATOR_RESERVE_FRACTION``) + the
    communication streams' caches (``comm_stream_cache_GB``, FSDP2) + the eager loss's cached
    logits block (``loss_cached_logits_GB``), what
    ``torch.cuda.max_memory_reserved`` and torchtitan's log (``reserved_bytes.all.peak``)
    report; ``reserved_GB`` adds the overhead outside the allocator (CUDA context, NCCL
    buffers), what ``nvidia-smi`` shows.  Feasibility uses ``total_GB``."""
    outside = C.CUDA_CONTEXT_GB + C.NCCL_BUFFERS_GB
    tensors = row["total_GB"] - outside
    cached = row.get("comm_stream_cache_GB", 0.0) + row.get("loss_cached_logits_GB", 0.0)
    row["allocator_reserved_GB"] = tensors * (1.0 + C.ALLOCATOR_RESERVE_FRACTION) + cached
    row["reserved_GB"] = row["allocator_reserved_GB"] + outside


def serving_ledger_row(
    model: Model,
    wl: InferenceWorkload,
    group: int,
    s: int,
    st: Stage,
    gpu: GPUSpec,
    *,
    weights: float,
    batch: int,
    micro_batch: int,
    last: bool,
    communicators: int,
) -> dict[str, Any]:
    """Memory-ledger row of one GPU of inference stage ``s`` (``weights`` in bytes).

    The serving engine's ledger (:mod:`solver.costmodel.serving_memory`): weights, engine
    overhead (CUDA context, cuBLAS, CUDA graphs, NCCL per communicator) and the working set
    of its largest forward (``max_num_batched_tokens``, default one micro-batch's prompts)
    fit under ``gpu_memory_utilization`` x capacity (``usable_GB``); what is left is the
    paged KV pool (``kv_pool_GB``, ``kv_blocks`` blocks of ``kv_block_size_tokens``).
    ``kv_cache_GB`` is what the batch's ``batch`` full-length sequences (prompt + output)
    occupy, in whole blocks; ``max_concurrent_sequences`` how many such sequences the pool
    holds (vLLM's "Maximum concurrency").  The plan fits iff ``total_GB <= usable_GB``, i.e.
    the pool holds the batch.  No training term (gradients, optimizer, stored activations).
    """
    kvp = wl.kv_cache_precision or wl.precision
    seq_tokens = wl.prompt_tokens + wl.output_tokens
    forward_tokens = micro_batch * wl.prompt_tokens
    if wl.max_num_batched_tokens is not None:
        forward_tokens = min(forward_tokens, wl.max_num_batched_tokens)
    work, overhead, block, pool, blocks = stage_kv_pool(
        model,
        capacity_GB=gpu.memory_GB,
        utilization=wl.gpu_memory_utilization,
        kv_precision=kvp,
        tp=st.tp,
        layers=st.num_layers,
        weights=weights,
        forward_tokens=forward_tokens,
        sequences=micro_batch,
        last=last,
        communicators=communicators,
    )
    per_seq = kv_blocks_per_sequence(seq_tokens)
    kv = batch * per_seq * block
    row = _ledger_row(group, s, st, gpu, weights, 0.0, 0.0, work, kv)
    row["overhead_GB"] = overhead
    row["nccl_buffers_GB"] = communicators * C.NCCL_BUFFERS_PER_COMMUNICATOR_GB
    row["cuda_graphs_GB"] = C.CUDA_GRAPH_GB
    row["total_GB"] = _gb(weights + work + kv) + overhead
    row["gpu_memory_utilization"] = wl.gpu_memory_utilization
    row["usable_GB"] = wl.gpu_memory_utilization * gpu.memory_GB
    row["kv_pool_GB"] = _gb(max(pool, 0.0))
    row["kv_block_size_tokens"] = C.KV_BLOCK_SIZE_TOKENS
    row["kv_blocks"] = blocks
    row["kv_blocks_per_sequence"] = per_seq
    row["max_model_len"] = seq_tokens
    row["max_concurrent_sequences"] = max_concurrent_sequences(blocks, seq_tokens)
    row["batch_size"] = batch
    row["forward_tokens"] = forward_tokens
    # The engine allocates its whole pool at start-up: it holds the usable fraction.
    row["reserved_GB"] = max(row["total_GB"], row["usable_GB"])
    row.pop("allocator_reserved_GB", None)  # the training allocator's estimate: not this
    return row


def serving_memory_violations(row: dict[str, Any]) -> list[str]:
    """Why one serving ledger row does not fit (empty: it fits).  Read by the evaluator's
    :func:`~solver.evaluate.checks.check_serving_memory` and the inference planner alike."""
    where = f"group {row['group']} stage {row['stage']} on pool {row['pool']}"
    fixed = row["weights_GB"] + row["activations_GB"] + row["overhead_GB"]
    if fixed > row["usable_GB"] + 1e-9:
        return [
            f"{where}: weights {row['weights_GB']:.1f} + working set {row['activations_GB']:.1f} "
            f"+ engine overhead {row['overhead_GB']:.1f} GB > gpu_memory_utilization "
            f"{row['gpu_memory_utilization']:g} x {row['capacity_GB']:.1f} GB = "
            f"{row['usable_GB']:.1f} GB: no room for a KV cache"
        ]
    if row["max_concurrent_sequences"] < row["batch_size"]:
        return [
            f"{where}: KV pool {row['kv_pool_GB']:.1f} GB holds "
            f"{row['max_concurrent_sequences']:.2f} sequences of {row['max_model_len']} tokens "
            f"< batch {row['batch_size']} (needs {row['kv_cache_GB']:.1f} GB; total "
            f"{row['total_GB']:.1f} GB > usable {row['usable_GB']:.1f} GB)"
        ]
    return []


def _training_ledger_row(
    model: Model,
    wl: TrainingWorkload,
    grp: ReplicaGroup,
    s: int,
    st: Stage,
    gpu: GPUSpec,
    params_local: float,
) -> dict[str, Any]:
    """Memory-ledger row of training stage ``s`` (``params_local``: its parameters per GPU)."""
    p, v = grp.pp, grp.virtual_stages if grp.schedule == "interleaved" else 1
    m = grp.num_micro_batches or 1
    mb = grp.micro_batch_size or 1
    seq = wl.sequence_length
    w, g, o = model_state_bytes(
        params_local, memory_policy=wl.memory_policy, zero_stage=grp.zero_stage, dp=grp.count
    )
    spt = grp.sequence_parallel and st.tp > 1
    # The micro-batch's shape and the stack, as every activation term takes them.
    shape: dict[str, Any] = dict(
        tp=st.tp, micro_batch=mb, seq=seq, sequence_parallel=spt, stack=stack_of(wl)
    )
    inflight = in_flight_micro_batches(s, p, m, grp.schedule, v)
    a = inflight * st.num_layers * block_activation_bytes(model, recompute=grp.recompute, **shape)
    if s == 0:
        a += inflight * embedding_activation_bytes(model, **shape)
    # Rebuilding one block for its backward (recompute).
    transient = activation_transient_bytes(model, recompute=grp.recompute, **shape)
    # ZeRO-3's gathered block(s) during a block's backward (in the weights), and the part of
    # them not yet live at the loss peak (FSDP2: only the last block is gathered then).
    unlive = 0.0
    if grp.zero_stage >= 3 and grp.count > 1:
        pol = wl.memory_policy
        w += zero3_gathered_weight_bytes(
            model, tp=st.tp, weight_bytes=ZERO3_LIVE_BYTES_PER_PARAM[pol]
        )
        unlive = zero3_gathered_weight_bytes(
            model,
            tp=st.tp,
            weight_bytes=ZERO3_LIVE_BYTES_PER_PARAM[pol] - ZERO3_LOSS_PHASE_BYTES_PER_PARAM[pol],
        )
    loss_cached = 0.0
    if s == p - 1:
        # The loss backward runs right after the last forward: one micro-batch of logits,
        # freed before any block's backward rebuilds that block: the two peaks are not
        # simultaneous, the stage holds the larger (the CP tables' ``act_head`` likewise,
        # without the loss phase's smaller ZeRO-3 live set: an upper bound of this).
        loss_phase = head_activation_bytes(model, **shape) - unlive
        a += max(loss_phase, transient)
        if loss_phase >= transient:  # at the loss peak the dropped logits' block stays reserved
            kw = dict(tp=st.tp, micro_batch=mb, seq=seq, stack=shape["stack"])
            loss_cached = eager_loss_cached_bytes(model, **kw)
    else:
        a += transient
    # FSDP2: the root group (embedding / final norm / head of this stage) stays gathered.
    block = block_params_per_gpu(model, st.tp)
    root = max(0.0, params_local - st.num_layers * block)
    sharding = dict(memory_policy=wl.memory_policy, dp=grp.count)
    w += fsdp2_root_unsharded_bytes(root, zero_stage=grp.zero_stage, **sharding)  # type: ignore[arg-type]
    row = _ledger_row(0, s, st, gpu, w, g, o, a, 0.0)
    freed_grads = 0.0
    if wl.grad_buffers == "on_demand" and m == 1:
        # One micro-batch, gradients made in the backward as the activations are freed: the
        # two are never all live together.  The simultaneous peak is the larger of the
        # activation side (``a``, at the loss / the start of the backward) and the gradient
        # side: the gradients with what the stage's first block's backward holds (its whole
        # activation set and the incoming gradient; stage 0's embedding gradient comes later),
        # or at the end with the stage input's gradient (``grads_phase_activation_bytes``).
        late = _late_grad_bytes(model, wl, grp, st, s, p)
        live = grads_phase_activation_bytes(model, late_grads=late, first=s == 0, **shape)
        row["total_GB"] += _gb(max(a, g + live) - g - a)
        # What the peak leaves out of g + a: the gradients' memory cached apart (FSDP2).
        freed_grads = max(0.0, min(g, a - live))
        row["grads_live_with_activations"] = False
        row["grads_phase_activations_GB"] = _gb(live)
    row["comm_stream_cache_GB"] = _gb(
        fsdp2_stream_cache_bytes(max(root, block), block, sharded_grads=freed_grads, **sharding)  # type: ignore[arg-type]
    )
    row["loss_cached_logits_GB"] = _gb(loss_cached)
    _set_reserved(row)
    row["in_flight_micro_batches"] = inflight
    row["transient_activations_GB"] = _gb(transient)
    return row


def _late_grad_bytes(
    model: Model, wl: TrainingWorkload, grp: ReplicaGroup, st: Stage, s: int, p: int
) -> float:
    """Gradient bytes per GPU that stage ``s`` makes after its first block's backward: stage
    0's embedding (word and learned positions; a word embedding tied to a head on the same
    stage has its gradient from the head's backward, which runs first), else 0.  The CP
    tables' ``embed`` / ``embed_last`` parts."""
    if s != 0 or model.vocab_size == 0:
        return 0.0
    kw = dict(sequence_length=wl.sequence_length, tp=st.tp)
    last = s == p - 1
    params = stage_params_per_gpu(model, 0, first=True, last=last, **kw)
    if last:
        params -= stage_params_per_gpu(model, 0, first=False, last=True, **kw)
    sharding = dict(memory_policy=wl.memory_policy, zero_stage=grp.zero_stage, dp=grp.count)
    return model_state_bytes(params, **sharding)[1]  # type: ignore[arg-type]


def _stage_params(model: Model, wl: TrainingWorkload, st: Stage, s: int, p: int) -> float:
    """Parameters per GPU of training stage ``s`` of ``p``."""
    return stage_params_per_gpu(
        model,
        st.num_layers,
        first=s == 0,
        last=s == p - 1,
        sequence_length=wl.sequence_length,
        tp=st.tp,
    )


def training_memory_ledger(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    plan: Plan,
    calibration: Cal = None,
) -> list[dict[str, Any]]:
    """The memory ledger :func:`evaluate` reports for a training plan, and nothing else.

    The same rows, computed by the same code from the same inputs, without the device checks,
    link pricing and pipeline simulation, so a caller that only asks "does it fit?" (the
    rubric baseline tries a dozen knob settings on 16,384 GPUs) need not pay for them.  Where
    :func:`evaluate` could not price the plan at all its ledger is empty, which this function
    does not detect: use it to *reject* plans that do not fit, then evaluate the survivors.
    Raises (KeyError, ValueError, ...) on plans too malformed to read.
    """
    if calibration is None and cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)
    grp = plan.replica_groups[0]
    p = grp.pp
    rows = []
    for s, st in enumerate(grp.stages):
        gpu = gpu_with_calibration(cluster.pool(st.pool), calibration)
        params = _stage_params(model, workload, st, s, p)
        rows.append(_training_ledger_row(model, workload, grp, s, st, gpu, params))
    return rows
