"""Which link joins two GPUs, priced from the devices a plan actually uses.

Tiers (per GPU, per direction, effective = nominal x bus efficiency, ``costmodel.constants``):

* same GPU -> ``local`` (free);
* same node, or same pool and same NVLink domain (``nvlink_domain_nodes`` consecutive nodes,
  e.g. an NVL72 rack) -> the pool's ``intra_node`` link (:func:`tp_link`);
* same pool, different nodes -> the per-GPU share of the node's NICs,
  ``nic.count * nic.bandwidth_GBps / gpus_per_node`` (:func:`nic_link`): all GPUs of a node
  talk at once in TP-sharded p2p and in DP collectives (rail-optimised fabrics, one NIC per
  GPU on DGX A100/H100), so each gets its share; a ``fabric`` entry naming the pool twice
  caps it (oversubscription);
* different pools -> the cluster's ``fabric`` entry for the pair (capped by both NICs), else
  the slower NIC share of the two pools (DESIGN.md).

A :class:`~solver.specs.Calibration` for the pool's GPU replaces the intra-node effective
bandwidth and latency with the measured ones (they are already *bus* bandwidths).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ..costmodel import LOCAL, LinkTier
from ..costmodel import constants as C
from ..specs import Calibration, Cluster, Pool

__all__ = [
    "DPLinks",
    "dp_links",
    "fabric_link",
    "link_between",
    "nic_link",
    "node_link",
    "node_index",
    "node_table",
    "pool_devices",
    "parse_node",
    "slowest",
    "tp_link",
]

Device = tuple[str, int]


def _calibration_for(
    pool: Pool, calibration: Calibration | Iterable[Calibration] | None
) -> Calibration | None:
    if calibration is None:
        return None
    cals = [calibration] if isinstance(calibration, Calibration) else list(calibration)
    for c in cals:
        if c.gpu.lower() == pool.gpu_name.lower():
            return c
    return None


def tp_link(pool: Pool, calibration: Calibration | Iterable[Calibration] | None = None) -> LinkTier:
    """The pool's intra-node (or intra-NVLink-domain) link for TP collectives and p2p."""
    kind = pool.intra_node.kind
    eff = C.PCIE_BUS_EFFICIENCY if kind == "pcie" else C.NVLINK_BUS_EFFICIENCY
    bw = pool.intra_node.bandwidth_GBps * eff
    lat = pool.intra_node.latency_us
    cal = _calibration_for(pool, calibration)
    if cal is not None:
        if cal.intra_node_bandwidth_GBps is not None:
            bw = cal.intra_node_bandwidth_GBps
        if cal.intra_node_latency_us is not None:
            lat = cal.intra_node_latency_us
    return LinkTier(bandwidth_GBps=bw, latency_us=lat, name=kind)


def nic_link(pool: Pool) -> LinkTier:
    """Per-GPU share of the node's NICs: count x bandwidth / gpus_per_node x NIC efficiency."""
    share = pool.nic.count * pool.nic.bandwidth_GBps / pool.gpus_per_node
    return LinkTier(share * C.NIC_BUS_EFFICIENCY, pool.nic.latency_us, "nic")


def slowest(links: Iterable[LinkTier]) -> LinkTier:
    """The link with the lowest bandwidth (ties: highest latency); LOCAL if none."""
    out = LOCAL
    for lk in links:
        if out.name == "local" or (lk.bandwidth_GBps, -lk.latency_us) < (
            out.bandwidth_GBps,
            -out.latency_us,
        ):
            if lk.name != "local":
                out = lk
    return out


def fabric_link(cluster: Cluster, pool_a: str, pool_b: str) -> LinkTier:
    """Link between nodes of pools a and b (a may equal b): fabric entry capped by the NICs."""
    pa, pb = cluster.pool(pool_a), cluster.pool(pool_b)
    nic = slowest([nic_link(pa), nic_link(pb)])
    for f in cluster.fabric:
        if set(f.pools) == {pool_a, pool_b}:
            fab = LinkTier(f.bandwidth_GBps * C.NIC_BUS_EFFICIENCY, f.latency_us, "fabric")
            if fab.bandwidth_GBps < nic.bandwidth_GBps:
                return LinkTier(fab.bandwidth_GBps, max(fab.latency_us, nic.latency_us), "fabric")
            return LinkTier(nic.bandwidth_GBps, max(fab.latency_us, nic.latency_us), "fabric")
    return nic


#: Parsed node names (and each pool's set of devices, once asked for) per cluster object.
#: Keyed by ``id`` with a strong reference to the cluster kept beside the entry, so an id
#: cannot be reused while its entry lives; specs are frozen, so entries never go stale
#: (``model_copy`` makes a new object, hence a new entry).
_NODE_CACHES: dict[
    int, tuple[Cluster, dict[str, tuple[Pool, int]], dict[str, frozenset[Device]]]
] = {}
_NODE_CACHES_MAX = 8


def _cluster_cache(
    cluster: Cluster,
) -> tuple[Cluster, dict[str, tuple[Pool, int]], dict[str, frozenset[Device]]]:
    entry = _NODE_CACHES.get(id(cluster))
    if entry is not None and entry[0] is cluster:
        return entry
    if len(_NODE_CACHES) >= _NODE_CACHES_MAX:
        del _NODE_CACHES[next(iter(_NODE_CACHES))]  # the oldest
    entry = (cluster, {}, {})
    _NODE_CACHES[id(cluster)] = entry
    return entry


def _node_cache(cluster: Cluster) -> dict[str, tuple[Pool, int]]:
    return _cluster_cache(cluster)[1]


def node_table(cluster: Cluster) -> dict[str, tuple[Pool, int]]:
    """The nodes of ``cluster`` parsed so far, ``name -> (pool, index)`` (read-only for callers).

    Loops over thousands of devices look names up here directly (a dict lookup, no call) and
    fall back to :func:`parse_node` on a miss, which parses, validates and adds the name.
    """
    return _node_cache(cluster)


def pool_devices(cluster: Cluster, pool: Pool) -> frozenset[Device]:
    """Every ``(node, gpu)`` of ``pool`` with canonical node names (``'<pool>-<index>'``).

    A membership test against this set is a fast sufficient check that a device exists in
    the pool; a device outside it may still parse (say ``'<pool>-007'``): ask
    :func:`parse_node` before calling it wrong.
    """
    sets = _cluster_cache(cluster)[2]
    out = sets.get(pool.name)
    if out is None:
        gpn = pool.gpus_per_node
        out = frozenset((f"{pool.name}-{i}", g) for i in range(pool.nodes) for g in range(gpn))
        sets[pool.name] = out
    return out


def parse_node(cluster: Cluster, node: str) -> tuple[Pool, int]:
    """``'<pool>-<index>'`` -> (pool, index); ValueError if malformed or out of range."""
    cache = _node_cache(cluster)
    hit = cache.get(node)
    if hit is not None:
        return hit
    name, sep, idx = node.rpartition("-")
    if not sep or not idx.isdigit():
        raise ValueError(f"node {node!r}: expected '<pool>-<index>'")
    try:
        pool = cluster.pool(name)
    except KeyError:
        raise ValueError(f"node {node!r}: unknown pool {name!r}") from None
    i = int(idx)
    if i >= pool.nodes:
        raise ValueError(
            f"node {node!r}: pool {name!r} has {pool.nodes} nodes (0..{pool.nodes - 1})"
        )
    cache[node] = (pool, i)
    return pool, i


def node_index(node: str) -> int:
    return int(node.rpartition("-")[2])


def _same_domain(pool: Pool, i: int, j: int) -> bool:
    return i // pool.nvlink_domain_nodes == j // pool.nvlink_domain_nodes


def link_between(
    cluster: Cluster,
    dev_a: Device | Sequence[object],
    dev_b: Device | Sequence[object],
    calibration: Calibration | Iterable[Calibration] | None = None,
) -> LinkTier:
    """The effective link joining GPU ``dev_a`` and GPU ``dev_b`` (``(node, gpu)`` pairs)."""
    na, ga = str(dev_a[0]), int(dev_a[1])  # type: ignore[call-overload]
    nb, gb = str(dev_b[0]), int(dev_b[1])  # type: ignore[call-overload]
    if na == nb and ga == gb:
        return LOCAL
    return node_link(cluster, na, nb, calibration)


def node_link(
    cluster: Cluster,
    node_a: str,
    node_b: str,
    calibration: Calibration | Iterable[Calibration] | None = None,
) -> LinkTier:
    """The effective link joining two *different* GPUs on nodes ``node_a`` and ``node_b``."""
    na, nb = node_a, node_b
    pa, ia = parse_node(cluster, na)
    pb, ib = parse_node(cluster, nb)
    if pa.name == pb.name:
        if ia == ib or _same_domain(pa, ia, ib):
            return tp_link(pa, calibration)
        return fabric_link(cluster, pa.name, pa.name)
    return fabric_link(cluster, pa.name, pb.name)


class DPLinks(tuple[int, int, LinkTier, LinkTier]):
    """(gpus_per_node_in_group k, nodes, intra link, inter link) of one DP group."""

    __slots__ = ()

    @property
    def k(self) -> int:
        return self[0]

    @property
    def nodes(self) -> int:
        return self[1]

    @property
    def intra(self) -> LinkTier:
        return self[2]

    @property
    def inter(self) -> LinkTier:
        return self[3]


def dp_links(
    cluster: Cluster,
    devices: Sequence[Device],
    calibration: Calibration | Iterable[Calibration] | None = None,
) -> DPLinks:
    """Topology of one data-parallel group (one device per replica) for hierarchical collectives.

    k = the most group members on one node, nodes = distinct nodes; intra = the slowest
    intra-node link among them; inter = the slowest link between any two of the nodes
    (intra link when all nodes share one NVLink domain, else NIC share / fabric).
    """
    by_node = Counter(node for node, _ in devices)  # nodes in order of first use
    nodes = list(by_node)
    k = max(by_node.values()) if by_node else 1
    table = _node_cache(cluster)
    parsed = [table.get(n) or parse_node(cluster, n) for n in nodes]
    # The intra link depends on the pool only: one per pool, in order of first use (the
    # slowest of that sequence is the slowest of the per-node one).
    first: dict[str, Pool] = {}
    for p, _ in parsed:
        first.setdefault(p.name, p)
    intra = slowest(tp_link(p, calibration) for p in first.values())
    if len(nodes) <= 1:
        return DPLinks((k, 1, intra, intra))
    # Nodes are grouped by pool; pairs within a pool and across pools.
    pools: dict[str, list[int]] = {}
    for p, i in parsed:
        pools.setdefault(p.name, []).append(i)
    inter_links: list[LinkTier] = []
    names = list(pools)
    for a_i, a in enumerate(names):
        pool = cluster.pool(a)
        idx = pools[a]
        domains = {i // pool.nvlink_domain_nodes for i in idx}
        inter_links.append(
            tp_link(pool, calibration) if len(domains) == 1 else fabric_link(cluster, a, a)
        )
        for b in names[a_i + 1 :]:
            inter_links.append(fabric_link(cluster, a, b))
    return DPLinks((k, len(nodes), intra, slowest(inter_links)))
