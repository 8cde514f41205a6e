"""The plan spec (output): :class:`Plan` of :class:`ReplicaGroup` s of pipeline
:class:`Stage` s on :data:`Device` s, with the :class:`SolverInfo` of the solve."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import (
    _INT,
    MAX_GPUS,
    MAX_GPUS_PER_NODE,
    MAX_LAYERS,
    Flag,
    LayerIndex,
    Layers,
    PositiveInt,
    ZeroStage,
    _Spec,
)
from .workload import Recompute, Schedule

Device = tuple[str, Annotated[int, _INT, Field(ge=0, lt=MAX_GPUS_PER_NODE)]]


class Stage(_Spec):
    """One pipeline stage: a contiguous range of blocks on one TP group per replica."""

    first_layer: LayerIndex | None = Field(default=None, description="First block (inclusive).")
    last_layer: LayerIndex | None = Field(default=None, description="Last block (inclusive).")
    chunks: list[tuple[LayerIndex, LayerIndex]] | None = Field(
        default=None, description="Interleaved schedule: one [first, last] range per virtual stage."
    )
    pool: str = Field(description="Pool whose GPUs run this stage.")
    tp: Annotated[int, _INT, Field(gt=0, le=MAX_GPUS)] = Field(
        description="Tensor-parallel degree."
    )
    devices: list[list[Device]] = Field(
        description="Per replica, the TP group's [node, gpu] list (node = '<pool>-<index>')."
    )

    @model_validator(mode="after")
    def _check(self) -> Stage:
        if self.chunks is None and (self.first_layer is None or self.last_layer is None):
            raise ValueError(
                "first_layer: give first_layer and last_layer, or chunks, "
                f"got first_layer={self.first_layer}, last_layer={self.last_layer}"
            )
        if self.chunks is not None and (
            self.first_layer is not None or self.last_layer is not None
        ):
            raise ValueError(
                "chunks: give either chunks or first_layer/last_layer, not both, "
                f"got chunks={[list(c) for c in self.chunks]} and "
                f"first_layer={self.first_layer}, last_layer={self.last_layer}"
            )
        if self.chunks is not None and not self.chunks:
            raise ValueError("chunks: must list at least one [first, last] range, got []")
        for i, (f, last) in enumerate(self.layer_ranges):
            if last < f:
                field = "last_layer" if self.chunks is None else f"chunks[{i}]"
                raise ValueError(f"{field}: last layer must be >= first layer {f}, got {last}")
        return self

    @property
    def layer_ranges(self) -> list[tuple[int, int]]:
        if self.chunks is not None:
            return [(int(a), int(b)) for a, b in self.chunks]
        assert self.first_layer is not None and self.last_layer is not None
        return [(self.first_layer, self.last_layer)]

    @property
    def num_layers(self) -> int:
        return sum(b - a + 1 for a, b in self.layer_ranges)


class ReplicaGroup(_Spec):
    """``count`` identical pipeline replicas."""

    count: Annotated[int, _INT, Field(gt=0, le=MAX_GPUS)] = Field(
        description="Number of identical replicas (DP degree of the group)."
    )
    micro_batch_size: PositiveInt | None = Field(default=None, description="Training micro-batch.")
    num_micro_batches: PositiveInt | None = Field(
        default=None, description="Micro-batches per step per replica (training), or per batch."
    )
    batch_size: PositiveInt | None = Field(
        default=None, description="Inference: concurrent sequences per replica."
    )
    schedule: Schedule = Field(default="1f1b", description="Pipeline schedule.")
    virtual_stages: Layers = Field(default=1, description="Interleaving chunks per stage.")
    recompute: Recompute = Field(default="none", description="Activation recomputation.")
    zero_stage: ZeroStage = Field(default=0, description="ZeRO stage.")
    sequence_parallel: Flag = Field(default=False, description="Megatron sequence parallelism.")
    stages: list[Stage] = Field(
        min_length=1, max_length=MAX_LAYERS, description="Pipeline stages in order."
    )

    @property
    def pp(self) -> int:
        return len(self.stages)


class SolverInfo(_Spec):
    """Facts about the solve that produced a plan."""

    model_config = ConfigDict(allow_inf_nan=True)

    status: str = Field(
        description="OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, INVALID_INPUT or MODEL_ERROR."
    )
    objective: float | None = Field(default=None, description="Objective in user units.")
    bound: float | None = Field(default=None, description="Best proven bound, user units.")
    gap: float | None = Field(default=None, description="Relative gap |obj - bound| / |obj|.")
    time_s: float | None = Field(default=None, description="Wall time of the solve.")
    ortools_version: str | None = Field(default=None, description="OR-Tools version.")
    seed: int | None = Field(default=None, description="Random seed.")
    message: str | None = Field(default=None, description="Explanation (infeasibility etc.).")


class Plan(_Spec):
    """A concrete, launchable parallelisation plan."""

    model_config = ConfigDict(allow_inf_nan=True)

    kind: Literal["training", "inference"] = Field(description="Workload kind.")
    replica_groups: list[ReplicaGroup] = Field(min_length=1, description="Replica groups.")
    predicted: dict[str, float] = Field(default_factory=dict, description="Planner's prediction.")
    solver: SolverInfo | None = Field(default=None, description="Solver facts.")

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if self.kind == "training" and len(self.replica_groups) != 1:
            raise ValueError(
                f"replica_groups: a training plan has exactly one replica group, got {len(self.replica_groups)}"
            )
        return self
