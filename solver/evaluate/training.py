"""Training evaluation: per-stage forward/backward times, the pipeline simulation over the real
p2p links, DP communication and its overlap, the optimizer step, and the training report.

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
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..costmodel import (
    LinkTier,
    PassTime,
    block_time,
    dp_hideable_time,
    dp_step_time,
    embedding_time,
    head_time,
    model_flops_per_step,
    optimizer_step_time,
    peak_tflops,
    pipeline_time_closed_form,
    simulate_pipeline,
)
from ..costmodel import constants as C
from ..costmodel.compute import ZERO_PASS
from ..costmodel.stack import stack_of
from ..costmodel.tp_overlap import block_tp_overlap, overlapped_block
from ..specs import Cluster, GPUSpec, Model, Plan, ReplicaGroup, Stage, TrainingWorkload
from .boundary import _p2p
from .calibration import Cal, gpu_with_calibration
from .ledger import _stage_params, _training_ledger_row
from .links import dp_links, tp_link
from .report import Report

#: A device's node name (devices are ``(node, gpu)`` tuples, :data:`solver.specs.Device`).
_NODE = operator.itemgetter(0)


def _stage_passes(
    model: Model,
    gpu: GPUSpec,
    st: Stage,
    s: int,
    p: int,
    grp: ReplicaGroup,
    wl: TrainingWorkload,
    link: LinkTier,
) -> tuple[PassTime, PassTime, PassTime, float]:
    """One micro-batch's block (its TP communication overlapped as ``wl.tp_comm_overlap``
    says, :mod:`solver.costmodel.tp_overlap`), embedding and head passes of stage ``s``, and
    the TP seconds one block hides per micro-batch."""
    mb = grp.micro_batch_size or 1
    kw: dict[str, Any] = dict(
        tp=st.tp, micro_batch=mb, seq=wl.sequence_length, precision=wl.precision, tp_link=link
    )
    sp = grp.sequence_parallel and st.tp > 1
    blk = block_time(
        model, gpu, recompute=grp.recompute, sequence_parallel=sp, stack=stack_of(wl), **kw
    )
    terms = block_tp_overlap(
        model, gpu, sequence_parallel=sp, stack=stack_of(wl), mode=wl.tp_comm_overlap, **kw
    )
    blk, hidden = overlapped_block(blk, terms)
    emb = embedding_time(model, gpu, **kw) if s == 0 else ZERO_PASS
    head = head_time(model, gpu, stack=stack_of(wl), **kw) if s == p - 1 else ZERO_PASS
    return blk, emb, head, hidden


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


def _chain_dp_exposed(
    dp_t: list[float],
    fwd: np.ndarray[Any, np.dtype[np.float64]],
    bwd: np.ndarray[Any, np.dtype[np.float64]],
    p2p: np.ndarray[Any, np.dtype[np.float64]],
    zero_stage: int,
    overlap: bool,
    m: int,
) -> float:
    """The closed form's exposed DP time: every stage's cool-down a chain.

    Stage s's last backward (chunk 0 of the last micro-batch; the whole backward in plain
    1F1B) hands its gradient to stage s - 1 (one-way p2p), which then runs its own last
    backward, and so on down to stage 0, so the pipeline ends at least
    ``sum_{i < s} (bwd[i, 0] + p2p[i])`` after stage s's gradients are complete; its DP
    traffic less what hides behind its own compute (:func:`~solver.costmodel.dp_hideable_time`)
    is exposed past that.  The simulation's slack is never shorter (an earlier stage may still
    be busy when the gradient arrives, e.g. a slow stage before fast ones), so this is >= the
    simulated exposure; it is the term the CP model encodes
    (:meth:`solver.cpsat.training.objective.Objective._objective`), so the planner's check
    of the CP objective against this closed form isolates encoding errors.
    """
    worst = 0.0
    slack = 0.0
    for s, dp in enumerate(dp_t):
        hide = dp_hideable_time(
            zero_stage=zero_stage,
            overlap=overlap,
            last_backward_s=float(bwd[s, 0]),
            backward_s_per_micro_batch=float(bwd[s].sum()),
            forward_s_per_micro_batch=float(fwd[s].sum()),
            num_micro_batches=m,
        )
        worst = max(worst, max(0.0, dp - hide) - slack)
        slack += float(bwd[s, 0] + p2p[s])
    return worst


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
        blk, emb, head, hidden = _stage_passes(model, gpu, st, s, p, grp, wl, link)
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
        info.append(
            dict(
                stage=st,
                pool=pool,
                gpu=gpu,
                total=total,
                params=params_local,
                blk=blk,
                tp_hidden=hidden * st.num_layers,
            )
        )
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
    # Closed form the CP model uses: stage time = compute + TP comm + 2 x outgoing p2p, and
    # the DP traffic exposed past a chain cool-down (no event times of the simulation).
    stage_t = fwd.sum(axis=1) + bwd.sum(axis=1) + 2.0 * p2p
    closed_dp = _chain_dp_exposed(dp_t, fwd, bwd, p2p, grp.zero_stage, wl.overlap_grad_reduce, m)
    closed = pipeline_time_closed_form(stage_t, m, v) + closed_dp + opt
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
                "tp_comm_hidden_s": m * float(it["tp_hidden"]),
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
        "tp_comm_overlap": wl.tp_comm_overlap,
    }
