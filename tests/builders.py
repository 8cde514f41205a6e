"""Small instance builders shared by the planner tests (not a test module)."""

from __future__ import annotations

from solver.catalog import resolve_gpu
from solver.specs import Cluster, GPUSpec, Link, Nic, Pool

H100, A100, L40S = "H100-SXM5-80GB", "A100-SXM4-80GB", "L40S"


def gpu(base: str, memory_GB: float) -> GPUSpec:
    """A catalog GPU with less memory, so that tiny models meet the memory limit."""
    spec = resolve_gpu(base)
    return spec.model_copy(update={"name": f"{spec.name}-{memory_GB:g}GB", "memory_GB": memory_GB})


def pool(
    name: str,
    gpu: str | GPUSpec,
    *,
    nodes: int = 1,
    gpn: int = 2,
    pcie: bool = False,
    cost: float | None = None,
) -> Pool:
    """A pool of ``nodes`` x ``gpn`` GPUs on NVSwitch (or PCIe) with one 25 GB/s NIC a node."""
    link = (
        Link(kind="pcie", bandwidth_GBps=25, latency_us=5)
        if pcie
        else Link(kind="nvswitch", bandwidth_GBps=300, latency_us=3)
    )
    return Pool(
        name=name,
        gpu=gpu,
        nodes=nodes,
        gpus_per_node=gpn,
        intra_node=link,
        nic=Nic(count=1, bandwidth_GBps=25, latency_us=5),
        cost_per_gpu_hour=cost,
    )


def cluster(*pools: Pool) -> Cluster:
    return Cluster(name="+".join(p.name for p in pools), pools=list(pools))
