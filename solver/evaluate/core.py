"""Plan -> report: the executable specification of shardwise.

Reads only the plan (never the planner's ``predicted`` numbers), prices it with
:mod:`solver.costmodel` over the links its devices actually use, and checks every rule with
one ``check_*`` function (:mod:`solver.evaluate.checks`).  Imports no ortools.

Training step time
    simulated pipeline makespan (per-stage forward/backward per micro-batch, p2p over the
    real links) + exposed DP communication + the optimizer step.

DP overlap model (``overlap_grad_reduce``)
    Stage s's gradient traffic (ZeRO-aware volume, hierarchical over the nodes its DP group
    spans) can hide behind compute that runs while its gradients become ready: ZeRO-0/1
    (Megatron bucketed all-reduce / reduce-scatter) behind the backward of the stage's last
    micro-batch; ZeRO-2 (gradients reduced every micro-batch) behind all of the stage's
    backwards; ZeRO-3 (parameters prefetched, gradients reduced every micro-batch) behind all
    of its forwards and backwards.  Whatever does not hide starts when the stage's last
    backward ends; stages that finish early (s > 0 in 1F1B) use the pipeline's drain as slack
    for free.  Exposed DP time = max(0, max_s(last_backward_end_s + max(0, dp_s - hide_s))
    - makespan).  Without ``overlap_grad_reduce`` hide_s = 0.

Inference
    TTFT = prefill of the batch through all stages (+ p2p), TPOT = one decode step through
    all stages at context prompt + output/2 (the mean context over the generation; decode
    time is linear in context, so this gives the mean TPOT exactly), tokens/s per replica =
    batch x output / (TTFT + output x TPOT) (static batching), total = sum over replicas.
    With num_micro_batches m > 1 the batch is split into m micro-batches that overlap across
    stages: TTFT = sum_s t_s + (m-1) max_s t_s, TPOT = max(sum_s d_s, m max_s d_s).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..catalog import gpu_of
from ..costmodel import (
    BYTES_PER_PARAM,
    LinkTier,
    PassTime,
    activation_transient_bytes,
    allgather_time,
    block_activation_bytes,
    block_time,
    decode_block_time,
    dp_hideable_time,
    dp_step_time,
    embedding_activation_bytes,
    embedding_time,
    head_activation_bytes,
    head_time,
    in_flight_micro_batches,
    kv_cache_bytes_per_token,
    model_flops_per_step,
    model_state_bytes,
    optimizer_step_time,
    p2p_time,
    peak_tflops,
    pipeline_time_closed_form,
    prefill_block_time,
    simulate_pipeline,
    stage_params_per_gpu,
    zero3_gathered_weight_bytes,
)
from ..costmodel import constants as C
from ..costmodel.compute import ZERO_PASS
from ..specs import (
    Calibration,
    Cluster,
    GPUSpec,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)
from . import checks
from .links import (
    Device,
    dp_links,
    link_between,
    node_link,
    node_table,
    parse_node,
    slowest,
    tp_link,
)
from .report import Report

__all__ = [
    "calibrated_cluster",
    "evaluate",
    "gpu_with_calibration",
    "training_memory_ledger",
]

Cal = Calibration | Iterable[Calibration] | None

#: A device's node name (devices are ``(node, gpu)`` tuples, :data:`solver.specs.Device`).
_NODE = operator.itemgetter(0)


def _cals(calibration: Cal) -> list[Calibration]:
    if calibration is None:
        return []
    return [calibration] if isinstance(calibration, Calibration) else list(calibration)


#: Calibration fields that replace the GPU spec's field of the same name.
CALIBRATED_GPU_FIELDS = (
    "gemm_efficiency",
    "memory_efficiency",
    "gemm_realization",
    "elementwise_traffic_factor",
    "backward_elementwise_factor",
    "kernel_launch_us",
    "optimizer_efficiency",
    "grad_accumulation_bytes_per_param",
    "gemm_table",
)


def gpu_with_calibration(pool: Pool, calibration: Cal = None) -> GPUSpec:
    """The pool's GPU spec with a matching calibration's efficiency factors applied."""
    gpu = gpu_of(pool)
    for c in _cals(calibration):
        if c.gpu.lower() == gpu.name.lower() or c.gpu.lower() == pool.gpu_name.lower():
            upd = {k: getattr(c, k) for k in CALIBRATED_GPU_FIELDS if getattr(c, k) is not None}
            return gpu.model_copy(update=upd)
    return gpu


def calibrated_cluster(cluster: Cluster, calibration: Cal = None) -> Cluster:
    """``cluster`` with a calibration folded into its pools (GPU efficiencies, intra-node link).

    ``calibration`` defaults to the cluster's own ``calibration:`` reference (loaded by name
    under ``instances/calibration/`` or by path).  The result carries no calibration reference,
    so the planner's tables and the evaluator price the very same figures; a cluster without
    either comes back unchanged.
    """
    cals = _cals(calibration)
    if not cals and cluster.calibration is not None:
        from ..io import load_calibration

        cals = [load_calibration(cluster.calibration)]
    if not cals:
        return cluster
    pools = []
    for pool in cluster.pools:
        gpu = gpu_with_calibration(pool, cals)
        link = tp_link(pool, cals)
        # tp_link applies the bus efficiency to the spec's nominal figure but takes a fitted
        # bandwidth as measured: store the nominal equivalent so it prices the same.
        eff = C.PCIE_BUS_EFFICIENCY if pool.intra_node.kind == "pcie" else C.NVLINK_BUS_EFFICIENCY
        intra = pool.intra_node.model_copy(
            update={"bandwidth_GBps": link.bandwidth_GBps / eff, "latency_us": link.latency_us}
        )
        pools.append(pool.model_copy(update={"gpu": gpu, "intra_node": intra}))
    return cluster.model_copy(update={"pools": pools, "calibration": None})


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
    """One memory-ledger row (bytes in, GB out); total includes the framework overhead."""
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
    }
    row["total_GB"] = (
        _gb(weights + grads + optimizer + activations + kv_cache) + C.FRAMEWORK_OVERHEAD_GB
    )
    row["capacity_GB"] = gpu.memory_GB
    return row


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _boundary_link(cluster: Cluster, a: Stage, b: Stage, cal: Cal) -> LinkTier:
    """Slowest link between the TP groups of stages a and b over all replicas and ranks."""
    # The link depends only on the two nodes (or on the GPU being the same one): price each
    # distinct pair once -- a 16,384-GPU plan has ~16k rank pairs but ~2k node pairs.
    # Rank j of a replica sends to rank j of the next stage's replica (cyclically when the
    # TP degrees differ); line the pairs up in two flat lists, replica-major, rank-minor.
    fa: list[Device] = []
    fb: list[Device] = []
    for da, db in zip(a.devices, b.devices, strict=False):
        if not (da and db):
            continue
        la, lb = len(da), len(db)
        if la == lb:
            fa += da
            fb += db
        else:
            n = max(la, lb)
            fa += [da[j % la] for j in range(n)]
            fb += [db[j % lb] for j in range(n)]
    # Devices are (node, gpu) tuples (specs.Device).  No GPU in both stages (a valid plan):
    # the link depends on the two nodes only, so distinct node pairs suffice, in the order
    # they first occur; else go pair by pair, a shared GPU being the free "local" link.
    if any(map(operator.eq, fa, fb)):
        pairs: dict[tuple[str, str, bool], tuple[Device, Device]] = {}
        for ea, eb in zip(fa, fb, strict=True):
            pairs.setdefault((str(ea[0]), str(eb[0]), tuple(ea) == tuple(eb)), (ea, eb))
        return slowest(link_between(cluster, ea, eb, cal) for ea, eb in pairs.values())
    # Two different GPUs are joined by a link that depends only on their pools and on
    # whether their nodes share an NVLink domain (links.node_link): price each such class
    # once; the sequence of links, in node-pair order, is the same.
    table = node_table(cluster)
    by_class: dict[tuple[str, str, bool], LinkTier] = {}
    links: list[LinkTier] = []
    for na, nb in dict.fromkeys(zip(map(_NODE, fa), map(_NODE, fb), strict=True)):
        pa, ia = table.get(na) or parse_node(cluster, na)
        pb, ib = table.get(nb) or parse_node(cluster, nb)
        dom = pa.nvlink_domain_nodes
        cls = (pa.name, pb.name, pa.name == pb.name and ia // dom == ib // dom)
        link = by_class.get(cls)
        if link is None:
            link = by_class[cls] = node_link(cluster, na, nb, cal)
        links.append(link)
    return slowest(links)


def _p2p(cluster: Cluster, a: Stage, b: Stage, act_bytes: float, sp: bool, cal: Cal) -> float:
    """One micro-batch's activation across the boundary a -> b.

    Megatron-LM scatter/gather (Narayanan et al. 2021 Sec. 4.1): each of the min(t_a, t_b)
    rank pairs sends 1/t of the b*s*h tensor over its own link, then the receiver all-gathers
    it over its intra-node link (not needed with sequence parallelism: stage inputs are
    SP-sharded anyway).
    """
    link = _boundary_link(cluster, a, b, cal)
    if link.name == "local":
        return 0.0
    t = min(a.tp, b.tp)
    send = p2p_time(act_bytes / t, link)
    if t > 1 and not sp:
        send += allgather_time(act_bytes, b.tp, tp_link(cluster.pool(b.pool), cal))
    return send


def _cost_per_hour(cluster: Cluster, plan: Plan) -> float | None:
    total = 0.0
    for grp in plan.replica_groups:
        for st in grp.stages:
            pool = cluster.pool(st.pool)
            if pool.cost_per_gpu_hour is None:
                return None
            total += pool.cost_per_gpu_hour * st.tp * grp.count
    return total


def _devices_parse(cluster: Cluster, plan: Plan) -> bool:
    """Every device names an existing node (needed to price links)."""
    table = node_table(cluster)
    try:
        for grp in plan.replica_groups:
            for st in grp.stages:
                for devs in st.devices:
                    for node, _ in devs:
                        if node not in table:
                            parse_node(cluster, node)
    except ValueError:
        return False
    return True


def _num_gpus(plan: Plan) -> int:
    return sum(grp.count * sum(st.tp for st in grp.stages) for grp in plan.replica_groups)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _stage_passes(
    model: Model,
    gpu: GPUSpec,
    st: Stage,
    s: int,
    p: int,
    grp: ReplicaGroup,
    wl: TrainingWorkload,
    link: LinkTier,
) -> tuple[PassTime, PassTime, PassTime]:
    mb = grp.micro_batch_size or 1
    blk = block_time(
        model,
        gpu,
        tp=st.tp,
        micro_batch=mb,
        seq=wl.sequence_length,
        recompute=grp.recompute,
        sequence_parallel=grp.sequence_parallel and st.tp > 1,
        precision=wl.precision,
        tp_link=link,
    )
    kw: dict[str, Any] = dict(
        tp=st.tp, micro_batch=mb, seq=wl.sequence_length, precision=wl.precision, tp_link=link
    )
    emb = embedding_time(model, gpu, **kw) if s == 0 else ZERO_PASS
    head = head_time(model, gpu, **kw) if s == p - 1 else ZERO_PASS
    return blk, emb, head


def _dp_stage_time(
    cluster: Cluster,
    st: Stage,
    grp: ReplicaGroup,
    wl: TrainingWorkload,
    params_local: float,
    cal: Cal,
) -> float:
    """DP traffic of one stage per step: :func:`~solver.costmodel.dp_step_time` over the
    slowest of its TP ranks' DP groups (each priced by :func:`~solver.evaluate.dp_links`)."""
    if grp.count <= 1:
        return 0.0
    worst = 0.0
    seen: set[tuple[str, ...]] = set()
    # Rank r's DP group: the r-th device of every replica that has one.
    full = bool(st.devices) and set(map(len, st.devices)) == {st.tp}
    columns = list(zip(*st.devices, strict=True)) if full else []
    for r in range(st.tp):
        devs = columns[r] if full else [d[r] for d in st.devices if len(d) > r]
        nodes_key = tuple(map(_NODE, devs))  # the topology depends on nodes only
        if nodes_key in seen:
            continue
        seen.add(nodes_key)
        k, nodes, intra, inter = dp_links(cluster, devs, cal)
        t = dp_step_time(
            params_local,
            memory_policy=wl.memory_policy,
            zero_stage=grp.zero_stage,
            num_micro_batches=grp.num_micro_batches or 1,
            recompute=grp.recompute,
            gpus_per_node_in_group=k,
            nodes=nodes,
            intra=intra,
            inter=inter,
        )
        worst = max(worst, t)
    return worst


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
    inflight = in_flight_micro_batches(s, p, m, grp.schedule, v)
    a = (
        inflight
        * st.num_layers
        * block_activation_bytes(
            model,
            tp=st.tp,
            micro_batch=mb,
            seq=seq,
            recompute=grp.recompute,
            sequence_parallel=spt,
        )
    )
    if s == 0:
        a += inflight * embedding_activation_bytes(
            model, tp=st.tp, micro_batch=mb, seq=seq, sequence_parallel=spt
        )
    if s == p - 1:
        # The loss backward runs right after the last forward: one micro-batch of logits.
        a += head_activation_bytes(model, tp=st.tp, micro_batch=mb, seq=seq, sequence_parallel=spt)
    # Rebuilding one block for its backward (recompute), and ZeRO-3's gathered block.
    transient = activation_transient_bytes(
        model,
        tp=st.tp,
        micro_batch=mb,
        seq=seq,
        recompute=grp.recompute,
        sequence_parallel=spt,
    )
    a += transient
    if grp.zero_stage >= 3 and grp.count > 1:
        w += zero3_gathered_weight_bytes(
            model, tp=st.tp, weight_bytes=BYTES_PER_PARAM[wl.memory_policy][0]
        )
    row = _ledger_row(0, s, st, gpu, w, g, o, a, 0.0)
    row["in_flight_micro_batches"] = inflight
    row["transient_activations_GB"] = _gb(transient)
    return row


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


def _evaluate_training(
    model: Model, cluster: Cluster, wl: TrainingWorkload, plan: Plan, cal: Cal, rep: Report
) -> None:
    grp = plan.replica_groups[0]
    p, v = grp.pp, grp.virtual_stages if grp.schedule == "interleaved" else 1
    m = grp.num_micro_batches or 1
    mb = grp.micro_batch_size or 1
    seq, h = wl.sequence_length, model.hidden_size
    fwd = np.zeros((p, v))
    bwd = np.zeros((p, v))
    info: list[dict[str, Any]] = []
    for s, st in enumerate(grp.stages):
        pool = cluster.pool(st.pool)
        gpu = gpu_with_calibration(pool, cal)
        link = tp_link(pool, cal)
        blk, emb, head = _stage_passes(model, gpu, st, s, p, grp, wl, link)
        ranges = st.layer_ranges if v > 1 else [(st.layer_ranges[0][0], st.layer_ranges[-1][1])]
        for c, (a, b) in enumerate(ranges[:v]):
            n = b - a + 1
            fwd[s, c] = (
                n * blk.fwd_s + (emb.fwd_s if c == 0 else 0.0) + (head.fwd_s if c == v - 1 else 0.0)
            )
            bwd[s, c] = (
                n * blk.bwd_s + (emb.bwd_s if c == 0 else 0.0) + (head.bwd_s if c == v - 1 else 0.0)
            )
        total = blk.scaled(st.num_layers) + emb + head
        params_local = _stage_params(model, wl, st, s, p)
        info.append(dict(stage=st, pool=pool, gpu=gpu, total=total, params=params_local, blk=blk))
    act = mb * seq * h * C.ACTIVATION_BYTES
    p2p = np.zeros(p)
    for s in range(p - 1):
        p2p[s] = _p2p(cluster, grp.stages[s], grp.stages[s + 1], act, grp.sequence_parallel, cal)
    if v > 1:
        p2p[p - 1] = _p2p(cluster, grp.stages[-1], grp.stages[0], act, grp.sequence_parallel, cal)
    sim = simulate_pipeline(fwd, bwd, m, schedule=grp.schedule, virtual_stages=v, p2p_s=p2p)
    # DP and optimizer.
    finish = []
    dp_t, opt_t = [], []
    for s, it in enumerate(info):
        dp = _dp_stage_time(cluster, it["stage"], grp, wl, it["params"], cal)
        hide = dp_hideable_time(
            zero_stage=grp.zero_stage,
            overlap=wl.overlap_grad_reduce,
            last_backward_s=sim.last_backward_s[s],
            backward_s_per_micro_batch=float(bwd[s].sum()),
            forward_s_per_micro_batch=float(fwd[s].sum()),
            num_micro_batches=m,
        )
        finish.append(sim.last_backward_end_s[s] + max(0.0, dp - hide))
        dp_t.append(dp)
        opt_t.append(
            optimizer_step_time(
                it["params"],
                it["gpu"],
                memory_policy=wl.memory_policy,
                zero_stage=grp.zero_stage,
                dp=grp.count,
            )
        )
    dp_exposed = max(0.0, max(finish) - sim.makespan_s)
    opt = max(opt_t)
    step = sim.makespan_s + dp_exposed + opt
    # Closed form the CP model uses: stage time = compute + TP comm + 2 x outgoing p2p.
    stage_t = fwd.sum(axis=1) + bwd.sum(axis=1) + 2.0 * p2p
    closed = pipeline_time_closed_form(stage_t, m, v) + dp_exposed + opt
    # Throughput and utilisation.
    tokens = wl.global_batch_size * seq
    peak = sum(
        grp.count * it["stage"].tp * peak_tflops(it["gpu"], wl.precision) * 1e12 for it in info
    )
    mflops = model_flops_per_step(model, wl.global_batch_size, seq)
    hwflops = sum(grp.count * it["stage"].tp * m * it["total"].hw_flops for it in info)
    # Memory ledger and time breakdown.
    ledger: list[dict[str, Any]] = []
    breakdown: list[dict[str, Any]] = []
    for s, it in enumerate(info):
        st = it["stage"]
        ledger.append(_training_ledger_row(model, wl, grp, s, st, it["gpu"], it["params"]))
        tot: PassTime = it["total"]
        breakdown.append(
            {
                "group": 0,
                "stage": s,
                "pool": st.pool,
                "tp": st.tp,
                "layers": st.num_layers,
                "compute_s": m * (tot.fwd_s + tot.bwd_s - tot.tp_comm_fwd_s - tot.tp_comm_bwd_s),
                "tp_comm_s": m * (tot.tp_comm_fwd_s + tot.tp_comm_bwd_s),
                "pp_comm_s": m * 2.0 * float(p2p[s]),
                "dp_comm_s": dp_t[s],
                "dp_exposed_s": max(0.0, finish[s] - sim.makespan_s),
                "optimizer_s": opt_t[s],
                "busy_s": sim.busy_s[s],
                "stage_time_per_micro_batch_s": float(stage_t[s]),
            }
        )
    rep.step_time_s = step
    rep.tokens_per_s = tokens / step
    rep.mfu = mflops / (step * peak)
    rep.hfu = hwflops / (step * peak)
    rep.bubble_fraction = sim.bubble_fraction
    rep.pipeline = sim
    rep.closed_form_step_time_s = closed
    rep.memory_ledger = ledger
    rep.time_breakdown = breakdown
    rep.peak_memory_GB_per_gpu = max(r["total_GB"] for r in ledger)
    rep.details = {
        "makespan_s": sim.makespan_s,
        "dp_exposed_s": dp_exposed,
        "optimizer_s": opt,
        "model_flops_per_step": mflops,
        "hw_flops_per_step": hwflops,
        "num_micro_batches": m,
        "p2p_s": [float(x) for x in p2p],
    }


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
def _evaluate_inference(
    model: Model, cluster: Cluster, wl: InferenceWorkload, plan: Plan, cal: Cal, rep: Report
) -> None:
    kvp = wl.kv_cache_precision or wl.precision
    ctx = wl.prompt_tokens + wl.output_tokens // 2
    h = model.hidden_size
    ledger: list[dict[str, Any]] = []
    breakdown: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    total_tps = 0.0
    peak_all = 0.0
    for g, grp in enumerate(plan.replica_groups):
        B = grp.batch_size or 1
        m = grp.num_micro_batches or 1
        bm = max(1, B // m)
        p = grp.pp
        pre, dec, pre_p2p, dec_p2p = [], [], [], []
        for s, st in enumerate(grp.stages):
            pool = cluster.pool(st.pool)
            gpu = gpu_with_calibration(pool, cal)
            link = tp_link(pool, cal)
            n = st.num_layers
            pb = prefill_block_time(
                model,
                gpu,
                tp=st.tp,
                batch=bm,
                prompt=wl.prompt_tokens,
                precision=wl.precision,
                tp_link=link,
            )
            db = decode_block_time(
                model,
                gpu,
                tp=st.tp,
                batch=bm,
                context_len=ctx,
                precision=wl.precision,
                kv_precision=kvp,
                tp_link=link,
            )
            t_pre, t_dec = n * pb.fwd_s, n * db.fwd_s
            tp_pre, tp_dec = n * pb.tp_comm_fwd_s, n * db.tp_comm_fwd_s
            if s == 0:
                e1 = embedding_time(
                    model,
                    gpu,
                    tp=st.tp,
                    micro_batch=bm,
                    seq=wl.prompt_tokens,
                    precision=wl.precision,
                    tp_link=link,
                )
                e2 = embedding_time(
                    model,
                    gpu,
                    tp=st.tp,
                    micro_batch=bm,
                    seq=1,
                    precision=wl.precision,
                    tp_link=link,
                )
                t_pre, t_dec = t_pre + e1.fwd_s, t_dec + e2.fwd_s
                tp_pre, tp_dec = tp_pre + e1.tp_comm_fwd_s, tp_dec + e2.tp_comm_fwd_s
            if s == p - 1:
                hd = head_time(
                    model,
                    gpu,
                    tp=st.tp,
                    micro_batch=bm,
                    seq=1,
                    precision=wl.precision,
                    tp_link=link,
                )
                t_pre, t_dec = t_pre + hd.fwd_s, t_dec + hd.fwd_s
                tp_pre, tp_dec = tp_pre + hd.tp_comm_fwd_s, tp_dec + hd.tp_comm_fwd_s
            pre.append(t_pre)
            dec.append(t_dec)
            if s < p - 1:
                nxt = grp.stages[s + 1]
                pre_p2p.append(
                    _p2p(
                        cluster, st, nxt, bm * wl.prompt_tokens * h * C.ACTIVATION_BYTES, False, cal
                    )
                )
                dec_p2p.append(_p2p(cluster, st, nxt, bm * h * C.ACTIVATION_BYTES, False, cal))
            else:
                pre_p2p.append(0.0)
                dec_p2p.append(0.0)
            # memory
            params = stage_params_per_gpu(
                model,
                n,
                first=s == 0,
                last=s == p - 1,
                sequence_length=wl.prompt_tokens + wl.output_tokens,
                tp=st.tp,
            )
            w = params * C.BYTES_PER_ELEMENT[wl.precision]
            kv = (
                kv_cache_bytes_per_token(model, kvp, st.tp)
                * n
                / model.num_layers
                * B
                * (wl.prompt_tokens + wl.output_tokens)
            )
            # Transient prefill working set: one block's tensors for one micro-batch (flash
            # attention: no s^2 scores, i.e. Korthikanti's selective case), + last-token logits.
            a = block_activation_bytes(
                model,
                tp=st.tp,
                micro_batch=bm,
                seq=wl.prompt_tokens,
                recompute="selective",
                sequence_parallel=False,
            )
            if s == p - 1:
                a += C.LOGIT_BYTES * bm * model.vocab_size / st.tp
            ledger.append(_ledger_row(g, s, st, gpu, w, 0.0, 0.0, a, kv))
            breakdown.append(
                {
                    "group": g,
                    "stage": s,
                    "pool": st.pool,
                    "tp": st.tp,
                    "layers": n,
                    "compute_s": t_pre - tp_pre + wl.output_tokens * (t_dec - tp_dec),
                    "tp_comm_s": tp_pre + wl.output_tokens * tp_dec,
                    "pp_comm_s": pre_p2p[-1] + wl.output_tokens * dec_p2p[-1],
                    "dp_comm_s": 0.0,
                    "prefill_s": t_pre,
                    "decode_step_s": t_dec,
                }
            )
            peak_all += grp.count * st.tp * peak_tflops(gpu, wl.precision) * 1e12
        pre_a, dec_a = np.asarray(pre), np.asarray(dec)
        ttft = float(pre_a.sum() + sum(pre_p2p) + (m - 1) * pre_a.max())
        tpot = float(max(dec_a.sum() + sum(dec_p2p), m * dec_a.max()))
        latency = ttft + wl.output_tokens * tpot
        tps = B * wl.output_tokens / latency
        total_tps += grp.count * tps
        groups.append(
            {
                "group": g,
                "count": grp.count,
                "batch_size": B,
                "ttft_ms": ttft * 1e3,
                "tpot_ms": tpot * 1e3,
                "request_latency_s": latency,
                "tokens_per_s": tps,
                "tokens_per_s_total": grp.count * tps,
                "decode_idle_fraction": float(1.0 - dec_a.sum() / (p * tpot)) if tpot > 0 else 0.0,
            }
        )
    # MFU: 2 x active params (+ attention at the mean context) FLOPs per generated token.
    fwd_flops = model_flops_per_step(model, 1, 1) / 3.0
    attn = 4.0 * ctx * model.num_attention_heads * model.kv_channels * model.num_layers
    rep.tokens_per_s = total_tps
    rep.mfu = total_tps * (fwd_flops + attn) / peak_all if peak_all else None
    rep.hfu = rep.mfu
    rep.ttft_ms = max(x["ttft_ms"] for x in groups)
    rep.tpot_ms = max(x["tpot_ms"] for x in groups)
    rep.step_time_s = max(x["request_latency_s"] for x in groups)
    rep.bubble_fraction = max(x["decode_idle_fraction"] for x in groups)
    rep.groups = groups
    rep.memory_ledger = ledger
    rep.time_breakdown = breakdown
    rep.peak_memory_GB_per_gpu = max(r["total_GB"] for r in ledger)
    rep.details = {"decode_context_tokens": ctx}


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def evaluate(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    plan: Plan,
    calibration: Cal = None,
) -> Report:
    """Score ``plan`` and check every rule; never raises for a bad plan.

    Parameters
    ----------
    model, cluster, workload, plan
        Validated specs (see :mod:`solver.io` to load them).
    calibration
        Optional :class:`~solver.specs.Calibration` (or several, one per GPU type) overriding
        the matching GPU's efficiency factors and its pool's intra-node link alpha-beta.

    Returns
    -------
    Report
        ``feasible`` is True iff ``violations`` is empty.
    """
    if calibration is None and cluster.calibration is not None:
        cluster = calibrated_cluster(cluster)  # the cluster's own calibration reference
    violations: list[str] = []
    violations += checks.check_kind(plan, workload)
    violations += checks.check_layers(model, plan)
    device_violations = checks.check_devices(cluster, plan)
    violations += device_violations
    violations += checks.check_tp_domain(cluster, plan)
    violations += checks.check_divisibility(model, plan)
    violations += checks.check_batch(plan, workload)
    prec = checks.check_precision(cluster, plan, workload)
    violations += prec
    pool_names = {p.name for p in cluster.pools}
    rep = Report(
        kind=workload.kind, feasible=False, violations=violations, num_gpus=_num_gpus(plan)
    )
    priceable = (
        plan.kind == workload.kind
        and not prec
        and all(st.pool in pool_names for grp in plan.replica_groups for st in grp.stages)
        # check_devices parsed every device when it found nothing to report.
        and (not device_violations or _devices_parse(cluster, plan))
    )
    if priceable:
        try:
            if isinstance(workload, TrainingWorkload):
                _evaluate_training(model, cluster, workload, plan, calibration, rep)
            else:
                _evaluate_inference(model, cluster, workload, plan, calibration, rep)
        except (ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as e:
            violations.append(f"plan could not be priced: {e}")
        rep.cost_per_hour = _cost_per_hour(cluster, plan)
        violations += checks.check_memory(rep.memory_ledger)
        if isinstance(workload, InferenceWorkload):
            violations += checks.check_slo(rep.groups, workload)
    rep.violations = violations
    rep.feasible = not violations
    return rep
