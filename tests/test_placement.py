"""Device placement: TP groups inside nodes, every device used once, pools respected."""

from __future__ import annotations

import pytest

from solver.placement import PlacementError, StageSlot, place
from solver.specs import Cluster


def _cluster(nodes: int = 2, gpn: int = 8, domain: int = 1) -> Cluster:
    return Cluster.model_validate(
        {
            "name": "c",
            "pools": [
                {
                    "name": "h",
                    "gpu": "H100-SXM5-80GB",
                    "nodes": nodes,
                    "gpus_per_node": gpn,
                    "intra_node": {"kind": "nvswitch", "bandwidth_GBps": 450},
                    "nvlink_domain_nodes": domain,
                    "nic": {"count": 8, "bandwidth_GBps": 50},
                }
            ],
        }
    )


def test_tp_groups_stay_inside_nodes_with_mixed_tp() -> None:
    """Mixed TP sizes (8, 2, 4, 2) pack 16 GPUs with no group straddling a node."""
    c = _cluster()
    devs = place(c, [(1, [StageSlot("h", 2), StageSlot("h", 8), StageSlot("h", 4), StageSlot("h", 2)])])
    used = [d for stage in devs[0] for rep in stage for d in rep]
    assert len(used) == len(set(used)) == 16
    for stage in devs[0]:
        for rep in stage:
            assert len({node for node, _ in rep}) == 1


def test_stage_major_replica_minor_order() -> None:
    """Replicas of one stage are adjacent (Megatron tp-dp-pp order): stage 0 fills node 0."""
    c = _cluster()
    devs = place(c, [(4, [StageSlot("h", 2), StageSlot("h", 2)])])
    assert {n for rep in devs[0][0] for n, _ in rep} == {"h-0"}
    assert {n for rep in devs[0][1] for n, _ in rep} == {"h-1"}


def test_overfull_pool_raises() -> None:
    """Asking for more GPUs than the pool has is a PlacementError, not a silent overlap."""
    with pytest.raises(PlacementError):
        place(_cluster(nodes=1), [(3, [StageSlot("h", 4)])])


def test_tp_across_nodes_only_inside_nvlink_domain() -> None:
    """TP=8 on 4-GPU nodes fits inside a 2-node NVLink domain and never crosses domains."""
    c = _cluster(nodes=4, gpn=4, domain=2)
    devs = place(c, [(2, [StageSlot("h", 8)])])
    for rep in devs[0][0]:
        nodes = sorted({int(n.split("-")[1]) for n, _ in rep})
        assert nodes in ([0, 1], [2, 3])
    with pytest.raises(PlacementError):
        place(_cluster(nodes=4, gpn=4, domain=1), [(1, [StageSlot("h", 8)])])
