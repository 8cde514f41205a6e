"""Calibrations folded into a cluster: the GPU efficiency factors and intra-node link a
:class:`~solver.specs.Calibration` replaces, applied per pool for the evaluator and the planner
alike."""

from __future__ import annotations

from collections.abc import Iterable

from ..catalog import gpu_of
from ..costmodel import constants as C
from ..io import load_calibration
from ..specs import Calibration, Cluster, GPUSpec, Pool
from .links import tp_link

__all__ = [
    "CALIBRATED_GPU_FIELDS",
    "Cal",
    "apply_calibration",
    "calibrated_cluster",
    "gpu_with_calibration",
]

Cal = Calibration | Iterable[Calibration] | None


def _cals(calibration: Cal) -> list[Calibration]:
    if calibration is None:
        return []
    return [calibration] if isinstance(calibration, Calibration) else list(calibration)


#: Calibration fields that replace the GPU spec's field of the same name.
CALIBRATED_GPU_FIELDS = (
    "gemm_efficiency",
    "memory_efficiency",
    "gemm_realization",
    "elementwise_traffic_factor",
    "backward_elementwise_factor",
    "kernel_launch_us",
    "optimizer_efficiency",
    "attention_efficiency",
    "attention_backward_efficiency",
    "grad_accumulation_bytes_per_param",
    "gemm_table",
)


def apply_calibration(gpu: GPUSpec, calibration: Calibration) -> GPUSpec:
    """``gpu`` with the calibration's measured fields (``CALIBRATED_GPU_FIELDS`` it sets)."""
    fields = {k: getattr(calibration, k) for k in CALIBRATED_GPU_FIELDS}
    return gpu.model_copy(update={k: v for k, v in fields.items() if v is not None})


def gpu_with_calibration(pool: Pool, calibration: Cal = None) -> GPUSpec:
    """The pool's GPU spec with a matching calibration's efficiency factors applied."""
    gpu = gpu_of(pool)
    for c in _cals(calibration):
        if c.gpu.lower() == gpu.name.lower() or c.gpu.lower() == pool.gpu_name.lower():
            return apply_calibration(gpu, c)
    return gpu


def calibrated_cluster(cluster: Cluster, calibration: Cal = None) -> Cluster:
    """``cluster`` with a calibration folded into its pools (GPU efficiencies, intra-node link).

    ``calibration`` defaults to the cluster's own ``calibration:`` reference (loaded by name
    under ``instances/calibration/`` or by path).  The result carries no calibration reference,
    so the planner's tables and the evaluator price the very same figures; a cluster without
    either comes back unchanged.
    """
    cals = _cals(calibration)
    if not cals and cluster.calibration is not None:
        cals = [load_calibration(cluster.calibration)]
    if not cals:
        return cluster
    pools = []
    for pool in cluster.pools:
        gpu = gpu_with_calibration(pool, cals)
        link = tp_link(pool, cals)
        # tp_link applies the bus efficiency to the spec's nominal figure but takes a fitted
        # bandwidth as measured: store the nominal equivalent so it prices the same.
        eff = C.PCIE_BUS_EFFICIENCY if pool.intra_node.kind == "pcie" else C.NVLINK_BUS_EFFICIENCY
        intra = pool.intra_node.model_copy(
            update={"bandwidth_GBps": link.bandwidth_GBps / eff, "latency_us": link.latency_us}
        )
        pools.append(pool.model_copy(update={"gpu": gpu, "intra_node": intra}))
    return cluster.model_copy(update={"pools": pools, "calibration": None})
