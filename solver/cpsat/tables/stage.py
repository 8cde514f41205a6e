"""Training stage tables: the coefficients of one per-stage option ``(pool, tp)`` of a family
(times, backward times, activation and state memory, DP traffic and optimizer step per DP
degree, price), and the state bytes per parameter."""

from __future__ import annotations

from ... import costmodel as cm
from ...catalog import gpu_of
from ...costmodel.constants import FRAMEWORK_OVERHEAD_GB
from ...costmodel.memory import fsdp2_root_unsharded_bytes, grads_phase_activation_bytes
from ...costmodel.stack import stack_of
from ...costmodel.tp_overlap import block_tp_overlap, overlapped_block
from ...specs import Cluster, Model, Pool, TrainingWorkload
from ..training.data import KB, TrainOption
from .dp import block_placeable, dp_time
from .family import Family, _kb_up, _ticks

__all__ = ["state_bytes_per_param"]


def state_bytes_per_param(memory_policy: str) -> float:
    """Unsharded bytes of weights + grads + optimizer per parameter."""
    return sum(cm.model_state_bytes(1.0, memory_policy=memory_policy, zero_stage=0, dp=1))


def _option(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload,
    fam: Family,
    pool: Pool,
    tp: int,
    dps: list[int],
    unit_s: float,
) -> TrainOption | None:
    from ...evaluate.links import tp_link

    def _us(seconds: float) -> int:
        return _ticks(seconds, unit_s)

    gpu = gpu_of(pool)
    seq = workload.sequence_length
    link = tp_link(pool)
    sp = fam.sequence_parallel and tp > 1
    stack = stack_of(workload)
    kw = dict(
        tp=tp, micro_batch=fam.micro_batch, seq=seq, precision=workload.precision, tp_link=link
    )
    try:
        blk = cm.block_time(
            model,
            gpu,
            recompute=fam.recompute,
            sequence_parallel=sp,
            stack=stack,
            **kw,  # type: ignore[arg-type]
        )
        # The TP overlap the evaluator charges (solver.evaluate.training._stage_passes).
        terms = block_tp_overlap(
            model,
            gpu,
            sequence_parallel=sp,
            stack=stack,
            mode=workload.tp_comm_overlap,
            **kw,  # type: ignore[arg-type]
        )
        blk = overlapped_block(blk, terms)[0]
        emb = cm.embedding_time(model, gpu, **kw)  # type: ignore[arg-type]
        head = cm.head_time(model, gpu, stack=stack, **kw)  # type: ignore[arg-type]
    except ValueError:
        return None  # e.g. fp8 on a GPU without fp8
    akw = dict(tp=tp, micro_batch=fam.micro_batch, seq=seq, sequence_parallel=sp)
    act_layer = cm.block_activation_bytes(
        model,
        recompute=fam.recompute,
        stack=stack,
        **akw,  # type: ignore[arg-type]
    )
    act_embed = cm.embedding_activation_bytes(model, stack=stack, **akw)  # type: ignore[arg-type]
    head_peak = cm.head_activation_bytes(model, stack=stack, **akw)  # type: ignore[arg-type]
    # Fixed per stage, as in the evaluator's ledger: recomputing one block for its backward,
    # and (ZeRO-3 with d > 1) one block's gathered weights.
    rebuilt = cm.activation_transient_bytes(
        model,
        recompute=fam.recompute,
        stack=stack,
        **akw,  # type: ignore[arg-type]
    )
    # The loss peaks before any block is rebuilt: the last stage holds max(head, rebuilt), as
    # the ledger does; ``transient`` carries the rebuilt block on every stage, so the head
    # adds only what exceeds it.  (With ZeRO-3 the ledger's loss phase also holds less of the
    # gathered set, ``ZERO3_LOSS_PHASE_BYTES_PER_PARAM``; ``transient`` keeps all of it for
    # every d: the CP's peak is an upper bound of the ledger's by at most that difference.)
    act_head = max(0.0, head_peak - rebuilt)
    gathered = cm.zero3_gathered_weight_bytes(
        model, tp=tp, weight_bytes=cm.ZERO3_LIVE_BYTES_PER_PARAM[workload.memory_policy]
    )

    def sp_(n: int, first: bool, last: bool) -> float:
        return cm.stage_params_per_gpu(model, n, first=first, last=last, sequence_length=seq, tp=tp)

    p_layer = sp_(1, False, False)
    p_embed = sp_(0, True, False)
    p_head = sp_(0, False, True)
    p_embed_last = sp_(0, True, True) - p_head  # tied embedding stored once on a lone stage
    static: dict[str, dict[int, int]] = {k: {} for k in ("layer", "embed", "head", "embed_last")}
    dpt: dict[str, dict[int, int]] = {
        k: {} for k in ("layer", "embed", "head", "embed_last", "fixed")
    }
    opt: dict[str, dict[int, int]] = {k: {} for k in ("layer", "embed", "head", "embed_last")}
    # Gradients allocated on demand (made in the backward as activations are freed): the CP's
    # memory constraint then takes max(activation side, gradient side) as the evaluator's
    # ledger does (TrainOption.grads / rebuilt).  Rounded down: subtracting them keeps the
    # peak an upper bound of the ledger's.
    on_demand = workload.grad_buffers == "on_demand"
    # The gradient side holds, besides every gradient, what the stage's first block's
    # backward holds (its whole activation set and the incoming gradient) or at the end the
    # stage input's gradient and stage 0's embedding-backward partial sums
    # (``grads_phase_activation_bytes``).  The ledger lets stage 0's embedding gradient, made
    # last, offset the block; the option does not know its stage, so it takes the bound of
    # every stage (``late_grads`` 0, ``first``): conservative on stage 0 by at most that
    # gradient, elsewhere exact unless the embedding's partial sums outweigh the block.
    # ``rebuilt`` is what the gradient side drops of ``transient``: the rebuilt block less
    # these bytes (negative: they exceed it).
    live_with_grads = grads_phase_activation_bytes(
        model,
        late_grads=0.0,
        first=True,
        stack=stack,
        **akw,  # type: ignore[arg-type]
    )
    grads: dict[str, dict[int, int]] = (
        {k: {} for k in ("layer", "embed", "head", "embed_last")} if on_demand else {}
    )
    allowed: dict[int, bool] = {}
    params = {"layer": p_layer, "embed": p_embed, "head": p_head, "embed_last": p_embed_last}
    for d in dps:
        allowed[d] = block_placeable(pool, tp, d)
        m = workload.global_batch_size // (d * fam.micro_batch)
        st = dict(memory_policy=workload.memory_policy, zero_stage=fam.zero_stage, dp=d)
        # Affine in the parameter count (alpha-beta): the latency part from two evaluations
        # (the collectives return 0 for an empty buffer, so 0 params cannot be the anchor).
        t1 = dp_time(cluster, pool, tp, d, 1e9, workload, fam, m)
        t2 = dp_time(cluster, pool, tp, d, 2e9, workload, fam, m)
        per_param = (t2 - t1) / 1e9
        dpt["fixed"][d] = _us(max(0.0, t1 - per_param * 1e9))
        for key, prm in params.items():
            state = cm.model_state_bytes(prm, **st)  # type: ignore[arg-type]
            # FSDP2's root group (embedding / norm / head) stays gathered, as in the ledger.
            root = 0.0 if key == "layer" else fsdp2_root_unsharded_bytes(prm, **st)  # type: ignore[arg-type]
            static[key][d] = _kb_up(sum(state) + root)
            if on_demand:
                grads[key][d] = int(state[1] // KB)
            dpt[key][d] = _us(per_param * prm)
            opt[key][d] = _us(
                cm.optimizer_step_time(
                    prm, gpu, memory_policy=workload.memory_policy, zero_stage=fam.zero_stage, dp=d
                )
            )
    return TrainOption(
        pool=pool.name,
        tp=tp,
        t_layer=_us(blk.fwd_s + blk.bwd_s),
        t_embed=_us(emb.fwd_s + emb.bwd_s),
        t_head=_us(head.fwd_s + head.bwd_s),
        b_layer=_us(blk.bwd_s),
        b_embed=_us(emb.bwd_s),
        b_head=_us(head.bwd_s),
        act_layer=_kb_up(act_layer),
        act_embed=_kb_up(act_embed),
        act_head=_kb_up(act_head),
        overhead=_kb_up(FRAMEWORK_OVERHEAD_GB * 1e9),
        capacity=int(gpu.memory_GB * 1e9 / KB),
        transient={
            d: _kb_up(rebuilt + (gathered if fam.zero_stage >= 3 and d > 1 else 0.0)) for d in dps
        },
        static=static,
        grads=grads,
        rebuilt={d: int(rebuilt // KB) - _kb_up(live_with_grads) for d in dps} if on_demand else {},
        dp=dpt,
        opt=opt,
        allowed=allowed,
        price=int(round(tp * (pool.cost_per_gpu_hour or 0.0) * 1000)),
    )
