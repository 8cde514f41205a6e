"""Pipeline-hop tables: the range of every stage-to-stage hand-off's price (:func:`hop_prices`)
and the conditions under which placement can keep hand-offs inside one NVLink domain
(:func:`colocation_possible`, :func:`run_fits`)."""

from __future__ import annotations

from ... import costmodel as cm
from ...specs import Cluster, Pool
from ..training.data import HopPrices, TrainOption
from .family import Family, _ticks

__all__ = ["colocation_possible", "hop_prices", "run_fits"]


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
    :func:`~solver.evaluate.boundary._boundary_link`).  In a pool every TP group is a block of GPU
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
    the evaluator prices it (:func:`solver.evaluate.boundary._p2p`): ``min(t_a, t_b)`` rank pairs
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
      :func:`run_fits` admits: :class:`~solver.cpsat.training.model.TrainingModel`'s
      ``near`` Booleans);
    * ``far`` -- the cheapest once co-location is impossible (replica 0 crosses: inter-node or
      the slower of the two), charged for larger ``d`` (and by :func:`~.build.build_tables`' own
      multi-``d`` table, which is what the planner charged before; NVLink faster than the NIC
      makes it exactly the inter-node price);
    * ``worst`` -- the dearest (``max`` over both).

    The optimistic price (near / far by ``d``) is <= the evaluator's price of the hop for
    every plan the model can produce, and ``worst`` >= it, so the model's objective with one
    or the other brackets the evaluator's closed form of the same stages (the step time is
    non-decreasing in every stage's time).
    """
    from ...evaluate.links import fabric_link, slowest, tp_link

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
