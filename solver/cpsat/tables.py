"""Coefficient tables for the training CP model, computed with the cost model.

Every coefficient is one cost-model call (the same functions the evaluator uses), converted
to integers: times to microseconds (rounded to nearest), memory to kilobytes (rounded *up*,
so a plan the CP model accepts never exceeds a GPU's memory in the evaluator).

Also the lower bounds the planner prunes with, each valid for the CP model's own cost terms
(``tests/test_bounds.py`` checks them against CP-SAT's optima): :func:`lower_bound_us`
(closed form), :func:`pipeline_lp_bound` (an LP per value of T_max) and :func:`refine` (the
T_max slices and options where a better plan can still be).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .. import costmodel as cm
from ..catalog import gpu_of
from ..costmodel.constants import FRAMEWORK_OVERHEAD_GB
from ..specs import Cluster, Model, Pool, TrainingWorkload
from .options import MAX_PIPELINE_STAGES, tp_options
from .training import KB, US, HopPrices, TrainOption, TrainTables

__all__ = [
    "Family",
    "build_tables",
    "colocation_possible",
    "for_dp",
    "hop_prices",
    "lower_bound_us",
    "pipeline_lp_bound",
    "run_fits",
    "state_bytes_per_param",
]


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


def colocation_possible(pool: Pool, tp_a: int, tp_b: int, d: int) -> bool:
    """Whether placement *can* put every replica's hand-off between two consecutive stages of
    ``pool`` (TP ``tp_a`` and ``tp_b``, ``d`` replicas each) inside one NVLink domain: a
    necessary condition, ``d * (tp_a + tp_b) <= D`` with ``D`` the GPUs of one domain
    (``gpus_per_node * nvlink_domain_nodes``).  It is the two-stage case of
    :func:`run_fits`, whose docstring proves it for any run of consecutive stages.  Two stages
    in different pools, or in a pool that is one NVLink domain, need no condition: their link
    is fixed.
    """
    return run_fits(pool.gpus_per_node * pool.nvlink_domain_nodes, [tp_a, tp_b], d)


def run_fits(domain: int, tps: list[int], d: int) -> bool:
    """Whether a *run* of consecutive stages of one pool, TP degrees ``tps`` (two or more
    stages), ``d`` replicas each, can have every hand-off inside the run, of every replica,
    inside one NVLink domain of ``domain`` GPUs: a necessary condition,
    ``d * sum(tps) <= domain``.

    Why it is necessary (:mod:`solver.placement`, the evaluator's
    :func:`~solver.evaluate.core._boundary_link`).  In a pool every TP group is a block of GPU
    offsets (node-major, so offset ``k`` lies in domain ``k // D``) that never straddles a
    domain; requests are placed in one pass with a cursor that only moves forward, sorted by
    decreasing TP with a stable sort of the group-major, stage-major, replica-minor list.  So
    the ``d`` blocks of one stage (same TP, adjacent in the list) stay consecutive in the
    placement order, and the blocks of any two stages of the run are placed one stage's
    entirely before the other's.  Let F be the stage of the run placed first and L the one
    placed last (F != L: the run has two stages or more), ``F_r``/``L_r`` their replica-``r``
    blocks, ``A`` the offset of ``F_0`` and ``X = A - A mod D`` the start of its domain.

    * The evaluator pairs rank ``j`` of a replica's sender block with rank ``j mod t`` of the
      same replica's receiver block (and the other way round), touching every GPU of both
      blocks, and the hop is on NVLink only if every such pair of every replica shares a
      domain.  So for each replica ``r`` the run's blocks ``(s, r)`` all lie in one domain.
    * Replica 0: ``L_0`` is in ``F_0``'s domain, ``[X, X + D)``.  Every block placed between
      ``F_0`` and ``L_0`` lies between them (the cursor only moves forward), inside
      ``[A, X + D)``; ``F_{d-1}`` is one of them (F's blocks all come before L's).
    * Replica ``d - 1``: its blocks share ``F_{d-1}``'s domain, which is ``X``'s, so
      ``L_{d-1}`` -- the last block of the run in placement order -- ends by ``X + D``.
    * All ``d * len(tps)`` blocks of the run are placed from ``F_0`` to ``L_{d-1}``, disjoint,
      inside ``[A, X + D)`` with ``A >= X``: ``d * sum(tps) <= D``.

    Other stages' blocks (other pools' stages place elsewhere; this pool's only push the
    cursor further) and TP reordering (the argument never uses which stage is placed first)
    do not change it, so no placement the evaluator prices on NVLink throughout the run is
    cut off: a model that charges the NVLink price on a run only when this holds stays a
    valid lower bound.
    """
    return d * sum(tps) <= domain


def hop_prices(
    cluster: Cluster, fam: Family, options: list[TrainOption], tokens_x_hidden: int, unit_s: float
) -> HopPrices:
    """Every ordered pair of options' hand-off price (2 x one micro-batch's activation), as
    the evaluator prices it (:func:`solver.evaluate.core._p2p`): ``min(t_a, t_b)`` rank pairs
    each send ``1/t`` of the activation over the slowest link among them, then (without SP)
    the receiver all-gathers it over its TP link.

    The link is fixed for two pools (the fabric entry) and inside a pool that is one NVLink
    domain (NVLink).  Otherwise it is the pool's NVLink link when every rank pair of every
    replica stays inside one domain, the inter-node link (NIC share or fabric) when all cross,
    and the slower of the two when some do: which one depends on where placement puts the
    stages, which the CP model does not see.  So each such pair gets three prices:

    * ``near`` -- the cheapest of those (``min`` over NVLink and inter-node), charged for DP
      degrees ``d <= near_max_d`` where :func:`colocation_possible` holds (the CP model
      charges the difference to ``far`` back on every hop that is not part of a run of hops
      :func:`run_fits` admits: :class:`~.training.TrainingModel`'s ``near`` Booleans);
    * ``far`` -- the cheapest once co-location is impossible (replica 0 crosses: inter-node or
      the slower of the two), charged for larger ``d`` (and by :func:`build_tables`' own
      multi-``d`` table, which is what the planner charged before; NVLink faster than the NIC
      makes it exactly the inter-node price);
    * ``worst`` -- the dearest (``max`` over both).

    The optimistic price (near / far by ``d``) is <= the evaluator's price of the hop for
    every plan the model can produce, and ``worst`` >= it, so the model's objective with one
    or the other brackets the evaluator's closed form of the same stages (the step time is
    non-decreasing in every stage's time).
    """
    from ..evaluate.links import fabric_link, slowest, tp_link

    act = fam.micro_batch * tokens_x_hidden * 2.0
    far: dict[tuple[int, int], int] = {}
    near: dict[tuple[int, int], tuple[int, int]] = {}
    worst: dict[tuple[int, int], int] = {}
    domain: dict[str, int] = {}  # GPUs of one NVLink domain, per pool with near pairs
    for o, opt in enumerate(options):
        a = cluster.pool(opt.pool)
        for o2, opt2 in enumerate(options):
            b = cluster.pool(opt2.pool)
            t = min(opt.tp, opt2.tp)
            gather = 0.0
            if t > 1 and not fam.sequence_parallel:
                gather = cm.allgather_time(act, opt2.tp, tp_link(b))

            def price(link: cm.LinkTier, t: int = t, gather: float = gather) -> int:
                return _ticks(2 * (cm.p2p_time(act / t, link) + gather), unit_s)

            if b.name != a.name:
                far[(o, o2)] = worst[(o, o2)] = price(fabric_link(cluster, a.name, b.name))
                continue
            nvl = tp_link(a)
            if a.nodes <= a.nvlink_domain_nodes:  # the whole pool is one NVLink domain
                far[(o, o2)] = worst[(o, o2)] = price(nvl)
                continue
            inter = fabric_link(cluster, a.name, a.name)
            p_nvl, p_inter, p_mixed = price(nvl), price(inter), price(slowest([nvl, inter]))
            far[(o, o2)] = min(p_inter, p_mixed)
            worst[(o, o2)] = max(p_nvl, p_inter)
            size = a.gpus_per_node * a.nvlink_domain_nodes
            d_max = size // (opt.tp + opt2.tp)  # colocation_possible(a, ..., d) iff d <= d_max
            if d_max >= 1 and min(p_nvl, p_inter) < far[(o, o2)]:
                near[(o, o2)] = (min(p_nvl, p_inter), d_max)
                domain[a.name] = size
    return HopPrices(far=far, near=near, worst=worst, domain=domain)


def for_dp(t: TrainTables, d: int, pessimistic: bool = False) -> TrainTables:
    """The tables of the sub-problem with DP degree ``d``: pipeline hops priced optimistically
    for that ``d`` (the model's objective is then <= the evaluator's closed form of every plan
    it produces, so its optimum and every bound computed from these tables are valid lower
    bounds), or with ``pessimistic`` at their dearest (>= the evaluator's)."""
    sub = dataclasses.replace(t, dp_degrees=[d])
    if t.hops is None:
        return sub
    pairs = t.hops.pessimistic() if pessimistic else t.hops.optimistic(d)
    return dataclasses.replace(sub, p2p_pair=pairs)


def build_tables(
    model: Model, cluster: Cluster, workload: TrainingWorkload, fam: Family, unit_s: float = US
) -> TrainTables | None:
    """The CP model's coefficient tables for one family, or None if the family is empty.

    ``unit_s`` is the time resolution: the planner picks it so that the cheapest block costs
    >= 10^4 units (relative rounding error <= 5e-5 per coefficient), at most 1 microsecond.
    """
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
    hops = hop_prices(cluster, fam, options, model.hidden_size * workload.sequence_length, unit_s)
    return TrainTables(
        num_layers=model.num_layers,
        micro_batch=fam.micro_batch,
        global_batch=workload.global_batch_size,
        options=options,
        dp_degrees=dps,
        pool_gpus={p.name: p.num_gpus for p in cluster.pools},
        p2p_pair=dict(hops.far),
        max_stages=max_stages,
        hops=hops,
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
    """A valid lower bound on the step time of any plan of this family (and single d); cheap.

    Work bound: all ``global_batch / micro_batch`` micro-batches pass every block forward and
    backward; a block on option ``o`` costs ``t_layer * tp`` GPU-units, spread over at most all
    GPUs.  Pipeline bound: step >= (m - 1) T_max + sum T >= sum T (m - 1 + p) / p with
    sum T >= L min_o t_layer and p <= the stage limit.  Bubbles, embedding/head, p2p, DP and
    the optimizer only add to both.  Interleaving needs every stage to hold a multiple of v
    blocks, so ``L`` must be a multiple of ``v`` (else no plan: inf).  The LP bound over pools
    and T_max (:func:`pipeline_lp_bound`) is much tighter and costs milliseconds; the planner
    computes it only where this one does not already prune.
    """
    n_mb = t.global_batch // t.micro_batch
    work = n_mb * t.num_layers * min(o.t_layer * o.tp for o in t.options)
    lb = work / sum(t.pool_gpus.values())
    if len(t.dp_degrees) == 1:
        d = t.dp_degrees[0]
        p = stages_limit(t, d)
        v = t.virtual
        if v > 1 and t.num_layers % v:
            return math.inf  # sum of multiples of v cannot be L
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
        if t.objective == "min_cost":
            lb *= d * min(o.price for o in t.options)
    return lb


# ------------------------------------------------------------------------------------------
# The pipeline LP bound: the step time with T_max fixed to each value it can take
# ------------------------------------------------------------------------------------------


#: Pipelines up to this deep get one slot range per slot in the exact LP, so that each slot's
#: DP traffic can be weighed against the backward of the slots above it.
SINGLE_SLOT_DEPTH = 24


def slot_runs(
    t: TrainTables, idx: list[int], exact: bool = True
) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """Slots grouped into ranges ``[a, b)``, and per range and option in ``idx`` the most
    blocks one of its slots holds by memory (a multiple of v).

    In-flight micro-batches never decrease with the slot index (slot 0 is the pipeline's
    end), so the caps never increase: a range's first slot holds the most.  ``exact``: one
    range per slot up to :data:`SINGLE_SLOT_DEPTH` slots, else runs of slots with equal caps
    (nothing lost either way); else the ranges {0}, {1}, [2, 4), [4, 8), ... (fewer LP columns,
    caps of the first slot: a relaxation).
    """
    d = t.dp_degrees[0]
    m, v, depth, L = t.m(d), t.virtual, t.max_stages, t.num_layers
    runs: list[tuple[int, int]] = []
    caps: list[list[int]] = []
    seen: dict[float, list[int]] = {}

    def at(j: int) -> list[int]:
        k = slot_in_flight(t, j, depth, m)
        if k not in seen:
            seen[k] = [min(L, t.options[i].blocks_that_fit(d, k)) // v * v for i in idx]
        return seen[k]

    if not exact:
        a = 0
        while a < depth:
            b = min(depth, max(a + 1, 2 * a))
            runs.append((a, b))
            caps.append(at(a))
            a = b
        return runs, caps
    for j in range(depth):
        row = at(j)
        if caps and caps[-1] == row and depth > SINGLE_SLOT_DEPTH:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((j, j + 1))
            caps.append(row)
    return runs, caps


def slot_in_flight(t: TrainTables, j: int, depth: int, m: int) -> float:
    """Micro-batches of activations slot ``j`` holds (the CP model's ``TrainingModel.in_flight``
    with ``J = depth``): ``min(m, j + 1)`` for 1F1B, Megatron's interleaved warm-up otherwise."""
    v = t.virtual
    if v == 1:
        return float(min(m, j + 1))
    return min(m * v, 2 * j + (v - 1) * depth + 1) / v


@dataclass
class _StageLP:
    """LP(tau) of :func:`pipeline_lp_bound` for one sub-problem, built once, re-solved per tau.

    Variables, per usable option ``o`` and slot class ``c``: ``s[o, c]`` (stages) and
    ``Y[o, c]`` (their blocks).  Only the ``Y - cap(o, c, tau) s <= 0`` coefficients change
    with tau, so GLOP re-solves from its last basis.  ``force`` adds ``sum s[o, .] >= 1`` for
    one option (the bound of the solutions that use it).
    """

    solver: Any
    rows: list[Any]  # the Y - cap s <= 0 rows, aligned with keys
    svars: list[Any]
    keys: list[tuple[int, int]]  # (index into t.options, class)
    memcap: list[int]  # blocks by memory for each key (a multiple of v)
    t_layer: dict[int, int]  # by index into t.options
    extra: dict[int, int]  # by index into t.options: the least a stage adds to its blocks' time
    v: int
    force_row: Any
    points: list[float]  # sorted breakpoints of T_max
    const: float  # what sum T has beyond sum (t Y + extra s): the embedding (and the head)
    floor_sum: float  # a lower bound on sum T that holds whatever the LP says
    frows: list[Any]  # the first stage's Yf - capF f <= 0 rows
    fvars: list[Any]
    fkeys: list[int]  # their options
    fmem: list[int]  # their blocks by memory
    fextra: dict[int, int]  # the least the first stage adds to its blocks' time (+ embedding)
    lrows: list[tuple[Any, list[int]]]  # per first-stage option: the rest-of-blocks row, its keys
    last: tuple[list[int], list[int], list[int]] | None = None  # the caps of the last solve

    def _cap(self, tau: float, i: int, mem: int, extra: int) -> int:
        v = self.v
        by_time = int((tau - extra) // self.t_layer[i]) if tau >= extra else 0
        cap = min(mem, (by_time // v) * v)
        return cap if cap >= v else 0

    def caps(self, tau: float) -> list[int]:
        return [
            self._cap(tau, i, mem, self.extra[i]) for (i, _), mem in zip(self.keys, self.memcap, strict=True)
        ]

    def force(self, option: int | None) -> None:
        """Require at least one stage of ``option`` (None: no requirement)."""
        for (i, _), s in zip(self.keys, self.svars, strict=True):
            self.force_row.SetCoefficient(s, 1.0 if i == option else 0.0)
        self.force_row.SetLb(1.0 if option is not None else -self.solver.infinity())

    def solve(self, tau: float) -> float | None:
        """min sum (t Y + extra s) with every stage's time <= tau: inf if infeasible, None if
        GLOP gives no answer (numerical trouble)."""
        from ortools.linear_solver import pywraplp

        caps = self.caps(tau)
        fcaps = [self._cap(tau, i, mem, self.fextra[i]) for i, mem in zip(self.fkeys, self.fmem, strict=True)]
        lmins = [min((caps[k] for k in linked), default=0) for _, linked in self.lrows]
        # Only the coefficients that changed since the last solve (GLOP then re-solves warm).
        last, flast, llast = self.last or ([-1] * len(caps), [-1] * len(fcaps), [-1] * len(lmins))
        for k, cap in enumerate(caps):
            if cap != last[k]:
                self.rows[k].SetCoefficient(self.svars[k], -float(cap))
        for a, cap in enumerate(fcaps):
            if cap != flast[a]:
                self.frows[a].SetCoefficient(self.fvars[a], -float(cap))
        for a, (row, linked) in enumerate(self.lrows):
            for k in linked:
                if caps[k] != last[k]:
                    row.SetCoefficient(self.svars[k], -float(caps[k]))
            if lmins[a] != llast[a]:
                row.SetCoefficient(self.fvars[a], float(lmins[a]))
        self.last = (caps, fcaps, lmins)
        status = self.solver.Solve()
        if self.solver.IsMip():  # the proven (dual) bound, also when a node limit stopped it
            if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
                return float(self.solver.Objective().BestBound())
            return math.inf if status == pywraplp.Solver.INFEASIBLE else None
        if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.INFEASIBLE):
            # No answer (GLOP's presolve can end ABNORMAL on these): again from scratch, without.
            params = pywraplp.MPSolverParameters()
            params.SetIntegerParam(params.INCREMENTALITY, params.INCREMENTALITY_OFF)
            params.SetIntegerParam(params.PRESOLVE, params.PRESOLVE_OFF)
            status = self.solver.Solve(params)
        if status == pywraplp.Solver.OPTIMAL:
            return float(self.solver.Objective().Value())
        if status == pywraplp.Solver.INFEASIBLE:
            return math.inf
        return None


def usable_options(t: TrainTables) -> list[int]:
    """Indices of the options a stage of this sub-problem (single d) can use at all: the
    block places, the pool has ``tp`` GPUs per replica, and one slot holds ``v`` blocks."""
    d = t.dp_degrees[0]
    m, v, depth = t.m(d), t.virtual, t.max_stages
    out = []
    for i, o in enumerate(t.options):
        if not o.allowed.get(d, False) or (t.pool_gpus[o.pool] // d) // o.tp < 1:
            continue
        if o.blocks_that_fit(d, slot_in_flight(t, 0, depth, m)) >= v:
            out.append(i)
    return out


def _stage_lp(t: TrainTables, integer: bool = False, exact: bool = True) -> _StageLP | None:
    """The LP of :func:`pipeline_lp_bound`; None when no stage can hold a block.

    ``integer``: stage counts and the first stage's option integral (a small MILP for SCIP,
    whose proven dual bound is used), else GLOP on the LP relaxation.  ``exact``: one slot
    range per run of equal memory caps (:func:`slot_runs`), else a few doubling ranges.
    """
    from ortools.linear_solver import pywraplp

    d = t.dp_degrees[0]
    m, v, depth, L = t.m(d), t.virtual, t.max_stages, t.num_layers
    gk = {k: g // d for k, g in t.pool_gpus.items()}
    idx = usable_options(t)
    if not idx:
        return None
    opts = {i: t.options[i] for i in idx}
    # What a stage adds to t_layer x blocks: every slot but the last hands its activations on
    # (the last too under interleaving), the last slot adds the head; the first the embedding.
    extra: dict[int, int] = {}
    if depth == 1:
        extra = {i: 0 for i in idx}
        const = min(o.t_embed + o.t_head for o in opts.values())
    else:
        p2p = {i: min(t.p2p_pair[(i, i2)] for i2 in idx) for i in idx}
        if v == 1:
            extra = {i: min(p2p[i], opts[i].t_head) for i in idx}
            const = min(o.t_embed for o in opts.values())
        else:
            extra = p2p
            const = min(o.t_embed for o in opts.values()) + min(o.t_head for o in opts.values())
    classes, run_caps = slot_runs(t, idx, exact)
    keys: list[tuple[int, int]] = []
    memcap: list[int] = []
    for a, i in enumerate(idx):
        for c in range(len(classes)):
            if run_caps[c][a] >= v:
                keys.append((i, c))
                memcap.append(run_caps[c][a])
    lp = pywraplp.Solver.CreateSolver("SCIP" if integer else "GLOP")
    if lp is None:  # pragma: no cover - GLOP ships with every OR-Tools build
        return None
    inf = lp.infinity()
    svars = [(lp.IntVar if integer else lp.NumVar)(0.0, inf, f"s{k}") for k in range(len(keys))]
    yvars = [lp.NumVar(0.0, inf, f"y{k}") for k in range(len(keys))]
    rows = []
    for s, y in zip(svars, yvars, strict=True):
        row = lp.Constraint(-inf, 0.0)
        row.SetCoefficient(y, 1.0)
        row.SetCoefficient(s, 0.0)
        rows.append(row)
        if v > 1:  # every stage holds >= v blocks (one per chunk)
            low = lp.Constraint(-inf, 0.0)
            low.SetCoefficient(s, float(v))
            low.SetCoefficient(y, -1.0)
    for c, (lo, hi) in enumerate(classes):  # one stage per slot
        row = lp.Constraint(-inf, float(hi - lo))
        for k, (_, kc) in enumerate(keys):
            if kc == c:
                row.SetCoefficient(svars[k], 1.0)
    for pool, g in gk.items():  # d copies of the pool's TP groups
        row = lp.Constraint(-inf, float(g))
        for k, (i, _) in enumerate(keys):
            if opts[i].pool == pool:
                row.SetCoefficient(svars[k], float(opts[i].tp))
    blocks = lp.Constraint(float(L), float(L))
    for y in yvars:
        blocks.SetCoefficient(y, 1.0)
    if v > 1:  # interleaved: the depth is fixed, every slot is a stage
        count = lp.Constraint(float(depth), float(depth))
        for s in svars:
            count.SetCoefficient(s, 1.0)
    force_row = lp.Constraint(-inf, inf)
    objective = lp.Objective()
    for k, (i, _) in enumerate(keys):
        objective.SetCoefficient(yvars[k], float(opts[i].t_layer))
        objective.SetCoefficient(svars[k], float(extra[i]))
    # The first stage: its option (f), its blocks (Yf), the DP traffic it cannot hide and its
    # optimizer step, which the model adds to the step (DP_exposed, OPT_max).
    first = _first_stage_terms(t, idx)
    link_classes = [len(classes) - 1] if v > 1 else list(range(len(classes)))
    dp_var = lp.NumVar(0.0, inf, "dp")
    opt_var = lp.NumVar(0.0, inf, "opt")
    dp_row = lp.Constraint(-inf, 0.0)
    dp_row.SetCoefficient(dp_var, -1.0)
    opt_row = lp.Constraint(-inf, 0.0)
    opt_row.SetCoefficient(opt_var, -1.0)
    one_first = lp.Constraint(1.0, 1.0)
    frows: list[Any] = []
    lrows: list[tuple[Any, list[int]]] = []
    fvars: list[Any] = []
    fkeys: list[int] = []
    fmem: list[int] = []
    for i in idx:
        mem = (min(L, opts[i].blocks_that_fit(d, slot_in_flight(t, first.slot, depth, m))) // v) * v
        if mem < v:
            continue
        f = (lp.IntVar if integer else lp.NumVar)(0.0, 1.0, f"f{i}")
        yf = lp.NumVar(0.0, inf, f"yf{i}")
        row = lp.Constraint(-inf, 0.0)  # Yf - capF f <= 0, capF set per tau
        row.SetCoefficient(yf, 1.0)
        row.SetCoefficient(f, 0.0)
        low = lp.Constraint(-inf, 0.0)  # v f <= Yf
        low.SetCoefficient(f, float(v))
        low.SetCoefficient(yf, -1.0)
        stage = lp.Constraint(-inf, 0.0)  # the first stage is one of the stages counted in s
        stage.SetCoefficient(f, 1.0)
        # ... and the others hold the rest: sum Y - Yf <= sum cap s - capmin f, capmin the
        # least cap of a class the first stage may be in (set per tau).
        rest = lp.Constraint(-inf, 0.0)
        rest.SetCoefficient(yf, -1.0)
        among = lp.Constraint(-inf, 0.0)  # Yf <= sum Y
        among.SetCoefficient(yf, 1.0)
        linked = []
        for k, (ki, kc) in enumerate(keys):
            if ki == i and kc in link_classes:
                stage.SetCoefficient(svars[k], -1.0)
                rest.SetCoefficient(yvars[k], 1.0)
                among.SetCoefficient(yvars[k], -1.0)
                linked.append(k)
        lrows.append((rest, linked))
        alpha, beta, opt_l, opt_e = first.terms[i]
        dp_row.SetCoefficient(yf, alpha)
        dp_row.SetCoefficient(f, beta)
        opt_row.SetCoefficient(yf, opt_l)
        opt_row.SetCoefficient(f, opt_e)
        one_first.SetCoefficient(f, 1.0)
        frows.append(row)
        fvars.append(f)
        fkeys.append(i)
        fmem.append(mem)
    if not fkeys:
        return None
    if not integer:  # (SCIP: far slower with them, and the stage counts are what it adds)
        _slot_dp_rows(t, lp, keys, svars, yvars, classes, dp_var)
    objective.SetCoefficient(dp_var, float(v))
    objective.SetCoefficient(opt_var, float(v))
    objective.SetMinimization()
    most = {i: max((mc for (ki, _), mc in zip(keys, memcap, strict=True) if ki == i), default=0) for i in idx}
    points = {n * opts[i].t_layer + extra[i] for i in idx for n in range(v, most[i] + 1, v)}
    fextra = {i: opts[i].t_embed + extra[i] for i in fkeys}
    points |= {n * opts[i].t_layer + fextra[i] for i, mem in zip(fkeys, fmem, strict=True) for n in range(v, mem + 1, v)}
    return _StageLP(
        solver=lp, rows=rows, svars=svars, keys=keys, memcap=memcap,
        t_layer={i: o.t_layer for i, o in opts.items()}, extra=extra, v=v, force_row=force_row,
        points=[float(x) for x in sorted(points)], const=float(const),
        floor_sum=float(L * min(o.t_layer for o in opts.values()) + const),
        frows=frows, fvars=fvars, fkeys=fkeys, fmem=fmem, fextra=fextra, lrows=lrows,
    )


def _slot_dp_rows(
    t: TrainTables,
    lp: Any,
    keys: list[tuple[int, int]],
    svars: list[Any],
    yvars: list[Any],
    classes: list[tuple[int, int]],
    dp_var: Any,
) -> None:
    """``v DP >= v dp_j - own_j - (backward of the slots above j)`` for every slot range of one
    slot, as the model has it for every slot (``TrainingModel._objective``).

    With one slot in range ``c``, its stage's blocks are ``Y[o, c]`` exactly.  Its DP traffic
    and own hiding are linear in them (:func:`_own_terms`); its embedding (if it is the first
    stage) and head (slot 0) add ``v dp - own`` terms, taken as ``min(0, .)`` where the stage
    may or may not hold them.  The backward above it is at most ``sum (b Y + b_embed s)`` over
    the ranges above (only one stage holds the embedding, and slots above the first are
    empty); under plain 1F1B each of those stages also hides its gradient hand-off, at most
    half the dearest hop price of its option.  Each row is thus implied by the model's, for
    every solution.
    """
    d = t.dp_degrees[0]
    v = t.virtual
    by_class: dict[int, list[int]] = {}
    for k, (_, c) in enumerate(keys):
        by_class.setdefault(c, []).append(k)
    # Plain 1F1B: each stage above also hides the one-way gradient hand-off to the stage after
    # it, half its 2 x p2p price, at most half the dearest the model charges (p2p_pair, or the
    # far price of a hop off a near run).
    hop_hide: dict[int, float] = {}
    for i in {ki for ki, _ in keys}:
        most = 0
        if v == 1:
            for (a, _), price in t.p2p_pair.items():
                if a == i:
                    most = max(most, price)
            if t.hops is not None:
                for (a, _), price in t.hops.far.items():
                    if a == i:
                        most = max(most, price)
        hop_hide[i] = most / 2.0
    for c, (lo, hi) in enumerate(classes):
        if hi - lo != 1 or c not in by_class:
            continue
        row = lp.Constraint(-lp.infinity(), 0.0)
        row.SetCoefficient(dp_var, -float(v))
        for k in by_class[c]:
            o = t.options[keys[k][0]]
            own_l, own_e, own_h = _own_terms(t, o)
            embed = min(v * o.dp["embed"][d] - own_e, v * o.dp["embed_last"][d] - own_e, 0.0)
            fixed = v * o.dp["fixed"][d] + embed
            if lo == 0:
                fixed += v * o.dp["head"][d] - own_h
            row.SetCoefficient(yvars[k], float(v * o.dp["layer"][d] - own_l))
            row.SetCoefficient(svars[k], float(fixed))
        for c2 in range(c + 1, len(classes)):
            for k in by_class.get(c2, []):
                i = keys[k][0]
                o = t.options[i]
                row.SetCoefficient(yvars[k], -float(o.b_layer))
                row.SetCoefficient(svars[k], -float(o.b_embed) - hop_hide[i])


def _own_terms(t: TrainTables, o: TrainOption) -> tuple[float, float, float]:
    """v x what a stage's own compute hides of its DP traffic, per block, for the embedding
    and for the head (the model's ``_own_hide``): ``B`` for ZeRO-0/1 with overlap, ``v m B``
    for ZeRO-2, ``v m (F + B)`` for ZeRO-3, nothing without overlap."""
    d = t.dp_degrees[0]
    v, m = t.virtual, t.m(d)
    if not t.overlap:
        return 0.0, 0.0, 0.0
    if t.zero_stage <= 1:
        return float(o.b_layer), float(o.b_embed), float(o.b_head)
    if t.zero_stage == 2:
        return float(v * m * o.b_layer), float(v * m * o.b_embed), float(v * m * o.b_head)
    return float(v * m * o.t_layer), float(v * m * o.t_embed), float(v * m * o.t_head)


@dataclass
class _FirstStage:
    slot: int  # the slot whose memory caps the first stage (the loosest one it may be)
    terms: dict[int, tuple[float, float, float, float]]  # option -> alpha, beta, opt_l, opt_e


def _first_stage_terms(t: TrainTables, idx: list[int]) -> _FirstStage:
    """What the first stage adds to the model's ``DP_exposed`` and ``OPT_max``, per option.

    The first stage (highest active slot) hides its DP traffic behind nothing but its own
    compute (the model's ``v DP >= v dp_j - sum_{i > j} B_i - own_j`` with no active slot
    above it), so with ``n`` blocks ``DP >= alpha n + beta``: ``dp`` per block less what it
    hides per block (``B / v`` for ZeRO-0/1 with overlap, ``m B`` for ZeRO-2, ``m (F + B)``
    for ZeRO-3, nothing without overlap), and the embedding's (and the fixed) part likewise.
    ``OPT >= opt_l n + opt_e``.  Under plain 1F1B the first stage may also be the only one
    (then it holds the head): the smaller constant of the two cases is taken.  Its slot is
    ``depth - 1`` when interleaved (the depth is fixed), else 0 (the loosest).
    """
    d = t.dp_degrees[0]
    m, v = t.m(d), t.virtual

    def hidden(b: int, total: int) -> float:
        if not t.overlap:
            return 0.0
        if t.zero_stage <= 1:
            return b / v
        if t.zero_stage == 2:
            return float(m * b)
        return float(m * total)

    terms = {}
    for i in idx:
        o = t.options[i]
        alpha = o.dp["layer"][d] - hidden(o.b_layer, o.t_layer)
        beta = o.dp["embed"][d] + o.dp["fixed"][d] - hidden(o.b_embed, o.t_embed)
        opt_e = float(o.opt["embed"][d])
        if v == 1:  # a lone stage: embedding on the last slot, with the head
            alone = o.dp["head"][d] + o.dp["embed_last"][d] + o.dp["fixed"][d] - hidden(
                o.b_embed + o.b_head, o.t_embed + o.t_head
            )
            beta = min(beta, alone)
            opt_e = min(opt_e, float(o.opt["head"][d] + o.opt["embed_last"][d]))
        terms[i] = (float(alpha), float(beta), float(o.opt["layer"][d]), opt_e)
    return _FirstStage(slot=t.max_stages - 1 if v > 1 else 0, terms=terms)


#: Relative slack taken off every LP (and MILP dual) value, far above GLOP's and SCIP's
#: tolerances, so that a value a solver rounds up cannot lift a bound above the optimum.
LP_SAFETY = 1e-5


class _TauSearch:
    """``(m - 1/v) tau + S(tau) / v`` over the breakpoints of an LP (see
    :func:`pipeline_lp_bound`): S cached per breakpoint, intervals bounded from below."""

    def __init__(self, lp: _StageLP, m: int) -> None:
        self.lp = lp
        self.v = lp.v
        self.coef = m - 1.0 / lp.v
        self.points = lp.points
        self.cache: dict[int, float] = {}
        self.evals = 0

    def S(self, i: int) -> float:
        """sum T lower bound at breakpoint i (inf: infeasible); never above the true value."""
        if i not in self.cache:
            self.evals += 1
            lp = self.lp
            val = lp.solve(self.points[i])
            if val is None:
                self.cache[i] = lp.floor_sum  # no LP answer: the floor still holds
            elif math.isinf(val):
                self.cache[i] = math.inf
            else:
                self.cache[i] = max(lp.floor_sum, val * (1.0 - LP_SAFETY) - 1.0 + lp.const)
        return self.cache[i]

    def base(self, i: int) -> float:
        """A bound for every tau >= points[i], whatever S is there."""
        return self.coef * self.points[i] + self.lp.floor_sum / self.v

    def value(self, i: int, k: int) -> float:
        """A bound for every tau in [points[i], points[k + 1])."""
        return self.coef * self.points[i] + self.S(k) / self.v

    def span(self, target: float) -> tuple[int, int, float] | None:
        """(first feasible breakpoint, last one whose base is below target, the bound beyond
        it), or None when no tau admits all blocks (feasibility only grows with tau)."""
        n = len(self.points)
        if n == 0:
            return None
        # Fast path: the last breakpoint that can beat the target bounds S below over all of
        # them (S never increases), so one LP often settles it.
        last = 0
        while last + 1 < n and self.base(last + 1) < target:
            last += 1
        if self.value(0, last) >= target:  # then minimum() and below() stop at once
            return 0, last, self.base(last + 1) if last + 1 < n else math.inf
        if math.isinf(self.S(n - 1)):
            return None
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if math.isinf(self.S(mid)):
                lo = mid + 1
            else:
                hi = mid
        last = lo
        while last + 1 < n and self.base(last + 1) < target:
            last += 1
        beyond = self.base(last + 1) if last + 1 < n else math.inf
        return lo, last, beyond

    def minimum(self, target: float, rel_tol: float) -> float:
        """The minimum over tau within ``rel_tol`` (or a bound >= ``target``): the smallest
        interval bound of a best-first split of the breakpoints; inf if infeasible."""
        import heapq

        span = self.span(target)
        if span is None:
            return math.inf
        first, last, beyond = span
        best_exact = min(self.value(first, first), self.value(last, last))
        heap = [(self.value(first, last), first, last)]
        result = math.inf
        while heap:
            lb, i, k = heap[0]
            if lb >= min(target, beyond) or i == k or best_exact - lb <= rel_tol * lb:
                result = lb
                break
            heapq.heappop(heap)
            mid = (i + k) // 2
            best_exact = min(best_exact, self.value(mid, mid))
            for a, b in ((i, mid), (mid + 1, k)):
                heapq.heappush(heap, (self.value(a, b), a, b))
        return min(result, beyond)

    def below(self, target: float, max_evals: int) -> list[tuple[float, int, int]]:
        """Intervals ``(bound, i, k)`` of breakpoints covering every tau whose bound is below
        ``target``: split down to single breakpoints while ``max_evals`` LP solves last."""
        import heapq

        span = self.span(target)
        if span is None:
            return []
        first, last, beyond = span
        if beyond < target:  # pragma: no cover - `last` stops only where base >= target
            raise AssertionError("breakpoints beyond the span must be bounded")
        heap = [(self.value(first, last), first, last)]
        out: list[tuple[float, int, int]] = []
        while heap:
            lb, i, k = heapq.heappop(heap)
            if lb >= target:
                break
            if i == k or self.evals >= max_evals:
                out.append((lb, i, k))
                continue
            mid = (i + k) // 2
            for a, b in ((i, mid), (mid + 1, k)):
                heapq.heappush(heap, (self.value(a, b), a, b))
        return out


def _cost_factor(t: TrainTables) -> float:
    """min_cost: the objective is rate x step, rate = d x (sum of the stages' prices) >=
    d x (stages) x the cheapest usable price; 1 for max_throughput."""
    if t.objective != "min_cost":
        return 1.0
    d = t.dp_degrees[0]
    prices = [t.options[i].price for i in usable_options(t)] or [0]
    return float(d * min(prices) * (t.max_stages if t.virtual > 1 else 1))


def pipeline_lp_bound(
    t: TrainTables,
    target: float = math.inf,
    rel_tol: float = 1e-3,
    integer: bool = False,
    exact: bool = False,
) -> float:
    """A valid lower bound on the sub-problem's objective (single ``d``), from an LP per T_max.

    Why it is valid.  Take any solution of the CP model (:class:`~.training.TrainingModel`)
    for this ``d``: depth ``p`` (``p = max_stages`` when interleaved), slot ``j`` with option
    ``o_j`` and ``n_j`` blocks, and its ``T_max = tau``.  Then, term by term from the model:

    * ``T_j >= t_o n_j + e_o``, with ``e_o`` the least that slot can add: the cheapest
      activation hand-off out of ``o`` (every slot but the last under 1F1B, every slot under
      interleaving) or, on the last slot under 1F1B, the head; so ``n_j <= (tau - e_o) / t_o``.
    * Memory: ``n_j <= blocks_that_fit(d, in_flight(j))`` (embedding and head only lower it),
      and in-flight counts never decrease with ``j``, so a slot of class ``[a, b)`` holds at
      most what slot ``a`` holds.  Interleaving: ``n_j`` is a multiple of ``v``, at least ``v``.
    * Each slot holds one stage; a pool's stages use at most ``gpus // d`` GPUs per replica;
      the blocks sum to ``L``; interleaved, exactly ``p`` slots are stages.
    * ``sum_j T_j >= sum_j (t_o n_j + e_o) + (cheapest embedding) (+ cheapest head when
      interleaved, where e_o has no head)`` and ``DP, OPT >= 0``, so the model's objective
      ``(m - 1/v) T_max + sum T / v + DP + OPT >= (m - 1/v) tau + S(tau) / v``.

    ``S(tau)``, the LP over stage counts ``s[o, c]`` and blocks ``Y[o, c]`` per option and
    slot class with exactly those constraints, is <= the solution's ``sum T``: the solution's
    own counts are a feasible point.  S never increases with tau (caps only grow) and changes
    only where a cap does, at ``tau = n t_o + e_o``; so over ``[B_i, B_k]`` of the sorted
    breakpoints the objective is ``>= (m - 1/v) B_i + S(B_k) / v``, and below the first
    feasible breakpoint nothing fits.  A best-first split of breakpoint intervals on that
    bound gives the minimum over tau within ``rel_tol`` (the returned value is the smallest
    interval bound, never an estimate), or stops as soon as every interval is >= ``target``.
    For ``min_cost`` the step bound is multiplied by ``d x (stages) x`` the cheapest price
    (rate = ``d x sum of the stages' prices``).

    Returns ``inf`` when no solution exists (no tau admits all blocks, or interleaving
    with ``L`` not a multiple of ``v``).
    """
    d = t.dp_degrees[0]
    v = t.virtual
    if v > 1 and (t.num_layers % v or t.num_layers < v * t.max_stages):
        return math.inf
    factor = _cost_factor(t)
    if factor <= 0:
        return 0.0
    lp = _stage_lp(t, integer, exact)
    if lp is None:
        return math.inf
    return _TauSearch(lp, t.m(d)).minimum(target / factor, rel_tol) * factor


def restrict_options(t: TrainTables, keep: list[int]) -> TrainTables:
    """The tables with only the options ``keep`` (indices into ``t.options``), the pair
    prices re-indexed."""
    if keep == list(range(len(t.options))):
        return t
    pairs = {(a, b): t.p2p_pair[(i, j)] for a, i in enumerate(keep) for b, j in enumerate(keep)}
    hops = t.hops.restricted(keep) if t.hops is not None else None
    return dataclasses.replace(t, options=[t.options[i] for i in keep], p2p_pair=pairs, hops=hops)


#: LP solves one slicing may spend before it leaves the intervals it has not split.
SLICE_LP_EVALS = 48

#: SCIP on one slice's integer bound: a node limit, not a time limit, so deterministic runs stay
#: deterministic (SCIP's proven dual bound is valid wherever it stops).
SCIP_SETTINGS = "limits/nodes = 400"

#: Slices (lowest bound first) whose bound the integer version raises; the rest keep the LP's.
SLICE_MILP_CALLS = 12


@dataclass
class Refinement:
    """What can still beat a target in one sub-problem (see :func:`refine`)."""

    keep: list[int]  # options (indices into the sub-problem's) some better solution may use
    tables: TrainTables  # the sub-problem on those options only
    slices: list[tuple[float, int, int | None]]  # (bound, lo, hi): T_max ranges, best first


def refine(t: TrainTables, target: float) -> Refinement:
    """The options and the ranges of ``T_max`` where a solution better than ``target`` can be.

    Slices: every solution whose objective is below ``target`` has ``lo <= T_max <= hi``
    (``hi`` None: unbounded) for one returned range, and its objective is ``>= bound`` there.
    Valid by the argument of :func:`pipeline_lp_bound`: a range ``[B_i, B_{k+1})`` of
    breakpoints has the bound ``(m - 1/v) B_i + S(B_k) / v``; ranges whose bound reaches the
    target (T_max below the first feasible breakpoint, or past the last one that can beat the
    target) are left out.  Options: one is kept only if, with ``sum_c s[o, c] >= 1`` added to
    the LP (a relaxation of exactly the solutions that use ``o`` in some stage), some range's
    bound stays below the target; the others cannot appear in a better solution, so dropping
    them from the model loses none.  Each range's bound is then raised with the integer
    version of the LP on the options kept (stage counts and the first stage's option
    integral), whose proven dual bound (SCIP, node-limited) is as valid.

    CP-SAT solves a sub-problem with T_max pinned to one range far faster than the whole;
    the planner gives it the ranges one by one.  Empty slices: nothing beats the target.
    """
    d = t.dp_degrees[0]
    v = t.virtual
    none = Refinement([], t, [])
    if v > 1 and (t.num_layers % v or t.num_layers < v * t.max_stages):
        return none
    factor = _cost_factor(t)
    if factor <= 0:
        return Refinement(list(range(len(t.options))), t, [(0.0, 0, None)])
    lp = _stage_lp(t)
    if lp is None:
        return none
    search = _TauSearch(lp, t.m(d))
    goal = target / factor
    pieces = search.below(goal, SLICE_LP_EVALS)
    if not pieces:
        return none
    points, coef = search.points, search.coef
    keep = []
    for i in usable_options(t):
        lp.force(i)
        for _, a, k in pieces:
            val = lp.solve(points[k])
            s = lp.floor_sum if val is None else val * (1.0 - LP_SAFETY) - 1.0 + lp.const
            if coef * points[a] + max(s, lp.floor_sum) / v < goal:
                keep.append(i)
                break
    lp.force(None)
    if not keep:
        return none
    reduced = restrict_options(t, keep)
    milp = _stage_lp(reduced, integer=True)
    if milp is not None:
        milp.solver.SetSolverSpecificParametersAsString(SCIP_SETTINGS)
        raised = []
        for n, (lb, a, k) in enumerate(pieces):
            if n >= SLICE_MILP_CALLS:
                raised.append((lb, a, k))
                continue
            # The reduced problem has breakpoints of its own (its stages' least hand-off is
            # dearer with fewer partners), but its S never increases either: its value at the
            # range's last T_max bounds the whole range.
            right = points[k + 1] - 1 if k + 1 < len(points) else max(points[-1], *milp.points)
            val = milp.solve(right)
            if val is None:
                s = milp.floor_sum
            else:
                s = max(milp.floor_sum, val * (1.0 - LP_SAFETY) - 1.0 + milp.const)
            lb = max(lb, coef * points[a] + s / v)
            if lb < goal:
                raised.append((lb, a, k))
        pieces = raised
    slices: list[tuple[float, int, int | None]] = []
    for lb, a, k in sorted(pieces):
        hi = int(points[k + 1]) - 1 if k + 1 < len(points) else None
        slices.append((lb * factor, int(points[a]), hi))
    return Refinement(keep, reduced, slices)
