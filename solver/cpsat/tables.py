"""Coefficient tables for the training CP model, computed with the cost model.

Every coefficient is one cost-model call (the same functions the evaluator uses), converted
to integers: times to microseconds (rounded to nearest), memory to kilobytes (rounded *up*,
so a plan the CP model accepts never exceeds a GPU's memory in the evaluator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import costmodel as cm
from ..catalog import gpu_of
from ..costmodel.constants import FRAMEWORK_OVERHEAD_GB
from ..specs import Cluster, Model, Pool, TrainingWorkload
from .options import MAX_PIPELINE_STAGES, tp_options
from .training import KB, US, TrainOption, TrainTables

__all__ = ["Family", "build_tables", "lower_bound_us", "state_bytes_per_param"]


@dataclass(frozen=True)
class Family:
    """The global knobs shared by every stage of a training plan."""

    micro_batch: int
    recompute: str
    sequence_parallel: bool
    zero_stage: int
    schedule: str = "1f1b"
    virtual_stages: int = 1  # v model chunks per stage (interleaved 1F1B), 1 for plain 1F1B

    @property
    def label(self) -> str:
        sp = "+sp" if self.sequence_parallel else ""
        sched = self.schedule if self.virtual_stages == 1 else f"{self.schedule}{self.virtual_stages}"
        return f"mb{self.micro_batch}/{self.recompute}{sp}/zero{self.zero_stage}/{sched}"


def state_bytes_per_param(memory_policy: str) -> float:
    """Unsharded bytes of weights + grads + optimizer per parameter."""
    return sum(cm.model_state_bytes(1.0, memory_policy=memory_policy, zero_stage=0, dp=1))


def _ticks(seconds: float, unit_s: float) -> int:
    """Seconds -> integer time units (rounded to nearest)."""
    return int(round(seconds / unit_s))


def _kb_up(nbytes: float) -> int:
    return int(math.ceil(nbytes / KB - 1e-9))


def dp_degrees(workload: TrainingWorkload, micro_batch: int, max_gpus: int) -> list[int]:
    """DP degrees d with ``global_batch % (d * micro_batch) == 0`` and ``d <= max_gpus``."""
    n = workload.global_batch_size // micro_batch
    return [d for d in range(1, min(n, max_gpus) + 1) if n % d == 0]


def block_placeable(pool: Pool, tp: int, d: int) -> bool:
    """Whether ``d`` TP groups of size ``tp`` form a block that placement aligns exactly.

    A stage's ``d * tp`` GPUs are placed as one block (see :mod:`solver.placement`); blocks that
    are whole nodes, or powers of two dividing a node, are placed in decreasing size without
    gaps or straddling, so the DP group's span below is exact.
    """
    size, gpn = d * tp, pool.gpus_per_node
    return size % gpn == 0 or (gpn % size == 0 and size & (size - 1) == 0)


def dp_topology(cluster: Cluster, pool: Pool, tp: int, d: int) -> tuple[int, int, cm.LinkTier, cm.LinkTier]:
    """(members per node k, nodes, intra link, inter link) of a stage's DP group.

    Matches :func:`solver.evaluate.links.dp_links` for the block placement above; across
    nodes the link is the pool's own inter-node link (NIC share or fabric), or the NVLink link
    when the whole pool is one NVLink domain.
    """
    from ..evaluate.links import fabric_link, tp_link

    gpn = pool.gpus_per_node
    intra = tp_link(pool)
    one_domain = pool.nodes <= pool.nvlink_domain_nodes
    inter = intra if one_domain else fabric_link(cluster, pool.name, pool.name)
    if tp >= gpn:
        return 1, d, intra, inter
    size = d * tp
    if size <= gpn:
        return d, 1, intra, intra
    return gpn // tp, size // gpn, intra, inter


def dp_time(
    cluster: Cluster, pool: Pool, tp: int, d: int, params: float, workload: TrainingWorkload,
    fam: Family, m: int,
) -> float:
    """DP traffic of one stage per step: the evaluator's formula on the block's DP span."""
    k, nodes, intra, inter = dp_topology(cluster, pool, tp, d)
    return cm.dp_step_time(
        params,
        memory_policy=workload.memory_policy,
        zero_stage=fam.zero_stage,
        num_micro_batches=m,
        recompute=fam.recompute,
        gpus_per_node_in_group=k,
        nodes=nodes,
        intra=intra,
        inter=inter,
    )


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
    from ..evaluate.links import tp_link

    def _us(seconds: float) -> int:
        return _ticks(seconds, unit_s)

    gpu = gpu_of(pool)
    seq = workload.sequence_length
    link = tp_link(pool)
    sp = fam.sequence_parallel and tp > 1
    kw = dict(tp=tp, micro_batch=fam.micro_batch, seq=seq, precision=workload.precision, tp_link=link)
    try:
        blk = cm.block_time(model, gpu, recompute=fam.recompute, sequence_parallel=sp, **kw)  # type: ignore[arg-type]
        emb = cm.embedding_time(model, gpu, **kw)  # type: ignore[arg-type]
        head = cm.head_time(model, gpu, **kw)  # type: ignore[arg-type]
    except ValueError:
        return None  # e.g. fp8 on a GPU without fp8
    akw = dict(tp=tp, micro_batch=fam.micro_batch, seq=seq, sequence_parallel=sp)
    act_layer = cm.block_activation_bytes(model, recompute=fam.recompute, **akw)  # type: ignore[arg-type]
    act_embed = cm.embedding_activation_bytes(model, **akw)  # type: ignore[arg-type]
    act_head = cm.head_activation_bytes(model, **akw)  # type: ignore[arg-type]
    # Fixed per stage, as in the evaluator's ledger: recomputing one block for its backward,
    # and (ZeRO-3 with d > 1) one block's gathered weights.
    rebuilt = cm.activation_transient_bytes(model, recompute=fam.recompute, **akw)  # type: ignore[arg-type]
    gathered = cm.zero3_gathered_weight_bytes(
        model, tp=tp, weight_bytes=cm.BYTES_PER_PARAM[workload.memory_policy][0]
    )

    def sp_(n: int, first: bool, last: bool) -> float:
        return cm.stage_params_per_gpu(model, n, first=first, last=last, sequence_length=seq, tp=tp)

    p_layer = sp_(1, False, False)
    p_embed = sp_(0, True, False)
    p_head = sp_(0, False, True)
    p_embed_last = sp_(0, True, True) - p_head  # tied embedding stored once on a lone stage
    static: dict[str, dict[int, int]] = {k: {} for k in ("layer", "embed", "head", "embed_last")}
    dpt: dict[str, dict[int, int]] = {k: {} for k in ("layer", "embed", "head", "embed_last", "fixed")}
    opt: dict[str, dict[int, int]] = {k: {} for k in ("layer", "embed", "head", "embed_last")}
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
            static[key][d] = _kb_up(sum(cm.model_state_bytes(prm, **st)))  # type: ignore[arg-type]
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
        dp=dpt,
        opt=opt,
        allowed=allowed,
        price=int(round(tp * (pool.cost_per_gpu_hour or 0.0) * 1000)),
    )


def build_tables(
    model: Model, cluster: Cluster, workload: TrainingWorkload, fam: Family, unit_s: float = US
) -> TrainTables | None:
    """The CP model's coefficient tables for one family, or None if the family is empty.

    ``unit_s`` is the time resolution: the planner picks it so that the cheapest block costs
    >= 10^4 units (relative rounding error <= 5e-5 per coefficient), at most 1 microsecond.
    """
    from ..evaluate.links import fabric_link, tp_link

    total = cluster.num_gpus
    dps = dp_degrees(workload, fam.micro_batch, total)
    if not dps:
        return None
    options: list[TrainOption] = []
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            opt = _option(model, cluster, workload, fam, pool, tp, dps, unit_s)
            if opt is not None:
                options.append(opt)
    if not options:
        return None
    min_tp = min(o.tp for o in options)
    max_stages = min(model.num_layers, total // min_tp, MAX_PIPELINE_STAGES)
    act = fam.micro_batch * workload.sequence_length * model.hidden_size * 2.0
    # Exact per pair of options, as the evaluator prices a hand-off: min(t_a, t_b) rank pairs
    # each send 1/t of the activation, then the receiver all-gathers it over its TP group.
    p2p_pair: dict[tuple[int, int], int] = {}
    for o, opt in enumerate(options):
        a = cluster.pool(opt.pool)
        for o2, opt2 in enumerate(options):
            b = cluster.pool(opt2.pool)
            # Same pool: NVLink if the whole pool is one NVLink domain, else the inter-node
            # link (conservative when two small stage blocks share a node).  Other pool: fabric.
            if b.name == a.name and a.nodes <= a.nvlink_domain_nodes:
                link = tp_link(a)
            else:
                link = fabric_link(cluster, a.name, b.name)
            t = min(opt.tp, opt2.tp)
            sec = cm.p2p_time(act / t, link)
            if t > 1 and not fam.sequence_parallel:
                sec += cm.allgather_time(act, opt2.tp, tp_link(b))
            p2p_pair[(o, o2)] = _ticks(2 * sec, unit_s)
    return TrainTables(
        num_layers=model.num_layers,
        micro_batch=fam.micro_batch,
        global_batch=workload.global_batch_size,
        options=options,
        dp_degrees=dps,
        pool_gpus={p.name: p.num_gpus for p in cluster.pools},
        p2p_pair=p2p_pair,
        max_stages=max_stages,
        unit_s=unit_s,
        objective=workload.objective,
    )


def min_block_seconds(model: Model, cluster: Cluster, workload: TrainingWorkload, fams: list[Family]) -> float:
    """The cheapest forward + backward of one block over every family, pool and TP option."""
    from ..evaluate.links import tp_link

    best = float("inf")
    for fam in fams:
        for pool in cluster.pools:
            gpu = gpu_of(pool)
            for tp in tp_options(model, pool):
                try:
                    blk = cm.block_time(
                        model, gpu, tp=tp, micro_batch=fam.micro_batch, seq=workload.sequence_length,
                        recompute=fam.recompute, sequence_parallel=fam.sequence_parallel and tp > 1,
                        precision=workload.precision, tp_link=tp_link(pool),
                    )
                except ValueError:
                    continue  # as in _option: e.g. fp8 on a GPU without fp8
                best = min(best, blk.fwd_s + blk.bwd_s)
    return best if best < float("inf") else 1e-3


def choose_unit(min_block_s: float) -> float:
    """Time unit: 1e-4 of the cheapest block time, in [1 ns, 1 us], rounded to a power of 10."""
    import math as _m

    raw = max(1e-9, min(1e-6, min_block_s * 1e-4))
    return float(10 ** _m.floor(_m.log10(raw)))


def stages_limit(t: TrainTables, d: int) -> int:
    """Most pipeline stages possible with DP degree d: every stage needs d x tp GPUs."""
    min_tp = min(o.tp for o in t.options)
    gpus = sum(g // d for g in t.pool_gpus.values())
    return max(1, min(t.max_stages, gpus // min_tp))


def lower_bound_us(t: TrainTables) -> float:
    """A valid lower bound on the step time of any plan of this family (and single d).

    Work bound: all ``global_batch / micro_batch`` micro-batches pass every block forward and
    backward; a block on option ``o`` costs ``t_layer * tp`` GPU-units, spread over at most all
    GPUs.  Pipeline bound: step >= (m - 1) T_max + sum T >= sum T (m - 1 + p) / p with
    sum T >= L min_o t_layer and p <= the stage limit.  Bubbles, embedding/head, p2p, DP and
    the optimizer only add to both.
    """
    n_mb = t.global_batch // t.micro_batch
    work = n_mb * t.num_layers * min(o.t_layer * o.tp for o in t.options)
    lb = work / sum(t.pool_gpus.values())
    if len(t.dp_degrees) == 1:
        d = t.dp_degrees[0]
        p = stages_limit(t, d)
        v = t.virtual
        # Closed form m T_max + (sum T - T_max) / v = (m - 1/v) T_max + sum T / v.
        mv = t.m(d) - 1.0 / v
        tsum = t.num_layers * min(o.t_layer for o in t.options)
        lb = max(lb, tsum * (mv / p + 1.0 / v))
        # Coupled bound: with Y_o blocks on option o, sum T >= sum_o t_o Y_o, and the stages'
        # GPUs (at most G per replica) are each busy <= T_max per micro-batch, so
        # T_max >= sum_o tp_o t_o Y_o / G.  Hence step >= sum_o Y_o t_o (1 + (m - 1) tp_o / G)
        # >= L min_o t_o (1 + (m - 1) tp_o / G): a fast option pays in GPUs, a frugal one in
        # the micro-batch's latency through the pipeline.  Much tighter than the two halves
        # taken from different options.
        G = sum(g // d for g in t.pool_gpus.values())
        if G == 0:
            return math.inf  # no pool can give every replica a GPU
        usable = [o for o in t.options if o.allowed.get(d, False)] or t.options
        coupled = t.num_layers * min(o.t_layer * (1.0 / v + mv * o.tp / G) for o in usable)
        coupled += (min(o.t_embed for o in usable) + min(o.t_head for o in usable)) / v
        lb = max(lb, coupled)
        if len(t.pool_gpus) > 1:
            lb = max(lb, _pool_lp_bound(t, d, G))
        if t.objective == "min_cost":
            lb *= d * min(o.price for o in t.options)
    return lb


def _pool_lp_bound(t: TrainTables, d: int, G: int) -> float:
    """LP bound for heterogeneous pools: blocks split over options, GPUs and memory per pool.

    Variables ``Y_o`` (blocks on option o), ``S_o`` (its stages, fractional) and ``W`` (a lower
    bound on ``T_max``).  Minimise ``(m - 1) W + sum_o t_o Y_o`` subject to: every block
    placed; pool k's GPUs busy at most ``W`` each (``sum_{o in k} tp_o t_o Y_o <= G_k W``);
    pool k's GPUs per replica (``sum_{o in k} tp_o S_o <= G_k``); memory (``Y_o <= n_o S_o +
    e_o``, with ``n_o`` the blocks one stage holds at ``m`` in-flight micro-batches and ``e_o``
    the extra that the ``m - 1`` last slots, with fewer in flight, can hold).  Every integer plan
    is feasible for it, so its optimum is a valid bound; HiGHS solves it in milliseconds.
    """
    import numpy as np
    from scipy.optimize import linprog

    m = t.m(d)
    v = t.virtual
    opts = [o for o in t.options if o.allowed.get(d, False) and t.pool_gpus[o.pool] // d > 0]
    if not opts:
        return math.inf
    n = len(opts)
    # x = [Y_0..Y_{n-1}, S_0..S_{n-1}, W]; objective (m - 1/v) W + sum t Y / v
    c = np.array([o.t_layer / v for o in opts] + [0.0] * n + [m - 1.0 / v])
    a_ub: list[list[float]] = []
    b_ub: list[float] = []
    for k, gpus in t.pool_gpus.items():
        gk = gpus // d
        idx = [i for i, o in enumerate(opts) if o.pool == k]
        if not idx:
            continue
        work = [0.0] * (2 * n + 1)
        count = [0.0] * (2 * n + 1)
        for i in idx:
            work[i] = float(opts[i].tp * opts[i].t_layer)
            count[n + i] = float(opts[i].tp)
        work[2 * n] = -float(gk)
        a_ub += [work, count]
        b_ub += [0.0, float(gk)]
    for i, o in enumerate(opts):
        if v == 1:
            per_stage = o.blocks_that_fit(d, m)
            extra = sum(
                o.blocks_that_fit(d, j + 1) - per_stage for j in range(min(m - 1, t.max_stages))
            )
        else:  # interleaved: every slot holds >= the last slot's in-flight count (units / v)
            per_stage = o.blocks_that_fit(d, min(m * v, (v - 1) * t.max_stages + 1) / v)
            extra = 0
        row = [0.0] * (2 * n + 1)
        row[i] = 1.0
        row[n + i] = -float(per_stage)
        a_ub.append(row)
        b_ub.append(float(extra))
    a_eq = [[1.0] * n + [0.0] * (n + 1)]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[float(t.num_layers)], method="highs")
    if res.status == 2:  # infeasible: no fractional split fits either
        return math.inf
    if res.status != 0:
        return 0.0  # no bound from the LP (numerical trouble): the others still hold
    head = (min(o.t_embed for o in opts) + min(o.t_head for o in opts)) / v
    return float(res.fun) + head
