"""Alpha-beta models of NCCL collectives and point-to-point transfers.

Bandwidths are *bus* bandwidths per GPU per direction (GB/s); ``LinkTier`` carries the
effective (achievable) value, so the formulas below use it as is.  Source for every formula:
NVIDIA/nccl-tests ``doc/PERFORMANCE.md`` (algbw vs busbw: all-reduce moves 2(n-1)/n of the
buffer per GPU, reduce-scatter and all-gather (n-1)/n) and Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH" (ring: 2(n-1) latency steps for
all-reduce, n-1 for reduce-scatter / all-gather).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LinkTier",
    "allgather_time",
    "allreduce_time",
    "hierarchical_allreduce_time",
    "hierarchical_allgather_time",
    "hierarchical_reduce_scatter_time",
    "p2p_time",
    "reduce_scatter_time",
]


@dataclass(frozen=True)
class LinkTier:
    """An effective per-GPU link for a collective or a point-to-point transfer.

    Attributes
    ----------
    bandwidth_GBps
        Achievable bandwidth per GPU per direction, GB/s (10^9 B/s).
    latency_us
        Per-message (per ring step) latency, microseconds.
    name
        ``'nvswitch' | 'nvlink' | 'pcie' | 'xgmi' | 'nic' | 'fabric' | 'local'``.
    """

    bandwidth_GBps: float
    latency_us: float
    name: str

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_GBps * 1e9

    @property
    def latency_s(self) -> float:
        return self.latency_us * 1e-6


#: A GPU talking to itself: no transfer at all.
LOCAL = LinkTier(bandwidth_GBps=float("inf"), latency_us=0.0, name="local")


def allreduce_time(nbytes: float, n: int, link: LinkTier) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` GPUs: 2(n-1)/n * S/B + 2(n-1) * alpha.

    Source: nccl-tests PERFORMANCE.md (busbw = algbw * 2(n-1)/n); Thakur et al. 2005.
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / link.bytes_per_s + 2.0 * (n - 1) * link.latency_s


def reduce_scatter_time(nbytes: float, n: int, link: LinkTier) -> float:
    """Ring reduce-scatter of a ``nbytes`` buffer over ``n`` GPUs: (n-1)/n * S/B + (n-1)*alpha.

    Source: nccl-tests PERFORMANCE.md (busbw = algbw * (n-1)/n).
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    return (n - 1) / n * nbytes / link.bytes_per_s + (n - 1) * link.latency_s


def allgather_time(nbytes: float, n: int, link: LinkTier) -> float:
    """Ring all-gather producing a ``nbytes`` buffer on each of ``n`` GPUs.

    (n-1)/n * S/B + (n-1)*alpha; source: nccl-tests PERFORMANCE.md.
    """
    return reduce_scatter_time(nbytes, n, link)


def p2p_time(nbytes: float, link: LinkTier) -> float:
    """Point-to-point send of ``nbytes``: alpha + S/B (one message)."""
    if nbytes <= 0 or link.name == "local":
        return 0.0
    return link.latency_s + nbytes / link.bytes_per_s


def hierarchical_allreduce_time(
    nbytes: float, gpus_per_node_in_group: int, nodes: int, intra: LinkTier, inter: LinkTier
) -> float:
    """All-reduce over ``gpus_per_node_in_group`` GPUs on each of ``nodes`` nodes.

    Reduce-scatter inside each node, all-reduce of the S/k shards across nodes (each of the k
    GPUs drives its own NIC share ``inter``), all-gather inside the node.  This is the
    bandwidth NCCL's multi-ring algorithm reaches on rail-optimised clusters (one ring per NIC;
    nccl-tests PERFORMANCE.md; Jia et al. 2018, "Highly Scalable Deep Learning Training System
    with Mixed-Precision", hierarchical all-reduce).  ``inter`` is the per-GPU share of the
    node's NICs.
    """
    k = max(1, gpus_per_node_in_group)
    if nodes <= 1:
        return allreduce_time(nbytes, k, intra)
    return (
        reduce_scatter_time(nbytes, k, intra)
        + allreduce_time(nbytes / k, nodes, inter)
        + allgather_time(nbytes, k, intra)
    )


def hierarchical_reduce_scatter_time(
    nbytes: float, gpus_per_node_in_group: int, nodes: int, intra: LinkTier, inter: LinkTier
) -> float:
    """Reduce-scatter over k GPUs/node x ``nodes``: RS intra on S, then RS inter on S/k."""
    k = max(1, gpus_per_node_in_group)
    if nodes <= 1:
        return reduce_scatter_time(nbytes, k, intra)
    return reduce_scatter_time(nbytes, k, intra) + reduce_scatter_time(nbytes / k, nodes, inter)


def hierarchical_allgather_time(
    nbytes: float, gpus_per_node_in_group: int, nodes: int, intra: LinkTier, inter: LinkTier
) -> float:
    """All-gather over k GPUs/node x ``nodes``: AG inter on S/k, then AG intra on S."""
    k = max(1, gpus_per_node_in_group)
    if nodes <= 1:
        return allgather_time(nbytes, k, intra)
    return allgather_time(nbytes / k, nodes, inter) + allgather_time(nbytes, k, intra)
