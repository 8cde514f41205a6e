"""Process groups and communication settings for the measuring processes (torch + stdlib).

One process per GPU (``torch.multiprocessing.spawn``), rank ``r`` on ``cuda:r`` with NCCL, or
CPU processes with gloo (tests).  Two settings are forced in **every** process before
``init_process_group`` (:func:`apply_comm_env`):

* ``NCCL_NVLS_ENABLE=0`` -- no NVLink SHARP (multicast) algorithms: the machines we measure
  on do not allow NVLink multicast objects, and NCCL would otherwise try them on NVSwitch
  systems (NCCL environment-variable docs, ``NCCL_NVLS_ENABLE``).
* ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1`` -- the same for PyTorch's symmetric-memory
  allocator.

They describe the collectives we time, so the raw JSON records them (``meta.env``).
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = [
    "COMM_ENV",
    "DistContext",
    "apply_comm_env",
    "free_port",
    "init_distributed",
]

#: Environment every measuring process runs with (see the module docstring).
COMM_ENV: dict[str, str] = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
}

#: Collective timeout: rank 1 waits in a barrier while rank 0 runs the single-GPU cases
#: (minutes on a large model), far beyond NCCL's 10-minute default watchdog for a slow case.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=30)


def apply_comm_env() -> None:
    """Set :data:`COMM_ENV` in ``os.environ`` (call before ``init_process_group``)."""
    os.environ.update(COMM_ENV)


def free_port() -> int:
    """A TCP port on localhost that is free right now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class DistContext:
    """This process's place: rank, world size, backend, device and compute dtype."""

    rank: int
    world: int
    backend: str
    device: torch.device
    dtype: torch.dtype
    _groups: dict[tuple[int, ...], dist.ProcessGroup | None] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def group(self, ranks: tuple[int, ...]) -> dist.ProcessGroup | None:
        """The process group of ``ranks`` (sorted), created once.  Every rank of the world must
        call this with the same arguments in the same order (``new_group`` is collective)."""
        key = tuple(sorted(ranks))
        if len(key) < 2:
            raise ValueError(f"group: a process group needs 2 or more ranks, got {key}")
        if key not in self._groups:
            if len(key) == self.world:
                self._groups[key] = None  # the default (world) group
            else:
                self._groups[key] = dist.new_group(list(key))
        return self._groups[key]

    def sync(self) -> None:
        """Wait for this device's queued work."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def barrier(self) -> None:
        """Synchronise the device, then all ranks of the world."""
        self.sync()
        if self.world > 1:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()


def init_distributed(
    rank: int, world: int, *, backend: str, port: int, dtype: torch.dtype
) -> DistContext:
    """Join the process group (``MASTER_ADDR`` 127.0.0.1) and pin this rank's device."""
    apply_comm_env()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank=rank, world=world, backend=backend, device=device, dtype=dtype)
