"""Pipeline-stage boundaries: the slowest link between two stages' TP groups, priced from the
devices the plan actually uses, and one micro-batch's activation transfer (p2p) across it."""

from __future__ import annotations

import operator

from ..costmodel import LinkTier, allgather_time, p2p_time
from ..specs import Cluster, Stage
from .calibration import Cal
from .links import Device, link_between, node_link, node_table, parse_node, slowest, tp_link

#: A device's node name (devices are ``(node, gpu)`` tuples, :data:`solver.specs.Device`).
_NODE = operator.itemgetter(0)


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
