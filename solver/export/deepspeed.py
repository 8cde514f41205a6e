"""A DeepSpeed config JSON for a training plan (``--to deepspeed``).

The config carries every setting the plan needs, checked against DeepSpeed 0.19.8
(``deepspeed/runtime/config.py``, PyPI sdist ``deepspeed-0.19.8.tar.gz``):

* batch arithmetic: ``train_batch_size`` = ``train_micro_batch_size_per_gpu`` x
  ``gradient_accumulation_steps`` x data-parallel size (``DeepSpeedConfig._batch_assertion``);
* ``zero_optimization.stage`` (and ``overlap_comm``: the plan's overlapped gradient reduction);
* ``bf16.enabled`` / ``fp16.enabled``;
* full recompute: DeepSpeed's ``activation_checkpointing`` section
  (``deepspeed/runtime/activation_checkpointing/config.py``: ``partition_activations``,
  ``number_checkpoints``, ...), read by ``deepspeed.checkpointing.configure``, and with pipeline
  parallelism ``pipeline.activation_checkpoint_interval`` = 1 (every block);
* pipeline stages: the ``pipeline`` section (``get_pipeline_config``: ``stages``,
  ``partition``, ``activation_checkpoint_interval``);
* tensor parallelism without a pipeline: AutoTP's ``tensor_parallel.autotp_size``
  (``deepspeed/runtime/tensor_parallel/config.py``; deepspeed.ai/tutorials/autotp-training).

DeepSpeed takes the data-parallel size from the *model-parallel unit*, not from the config
(``DeepSpeedConfig.__init__``: ``mpu.get_data_parallel_world_size()`` when an ``mpu`` is given,
else the whole world size).  So the config is right on the plan's world size only with the unit
:func:`model_parallel_unit` names: the ``PipelineModule`` topology with PP > 1 (``deepspeed.
initialize`` passes ``model.mpu()``), an ``mpu`` with AutoTP, none for pure data parallelism.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..specs import Model, Plan, ReplicaGroup, TrainingWorkload
from .result import ExportResult

__all__ = ["ModelParallelUnit", "deepspeed_config", "export_deepspeed", "model_parallel_unit"]


@dataclass(frozen=True)
class ModelParallelUnit:
    """What the training script must hand ``deepspeed.initialize`` so that DeepSpeed sees the
    plan's data-parallel size.

    Attributes
    ----------
    kind
        ``none`` (pure data parallelism: DeepSpeed's DP size is the world size),
        ``autotp`` (PP = 1, TP > 1: pass an ``mpu`` whose ``get_data_parallel_world_size()`` is
        DP) or ``pipeline`` (PP > 1: a ``PipelineModule`` whose topology has ``num_pp=PP,
        num_mp=TP, num_dp=DP``; ``deepspeed.initialize`` uses ``model.mpu()``).
    tp, pp, dp
        The plan's degrees; ``tp * pp * dp`` ranks.
    """

    kind: str
    tp: int
    pp: int
    dp: int

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    def statement(self, pipeline_kwargs: str = "", why: str = "") -> str:
        """One sentence for the notes; ``pipeline_kwargs`` adds PipelineModule arguments and
        ``why`` what they achieve."""
        if self.kind == "none":
            return (
                f"launch {self.world_size} ranks and pass no mpu: DeepSpeed's data-parallel "
                f"size is the world size, {self.dp}"
            )
        if self.kind == "autotp":
            return (
                f"launch {self.world_size} ranks; AutoTP (tensor_parallel.autotp_size={self.tp}) "
                "builds the TP groups, and deepspeed.initialize(..., mpu=mpu) needs a "
                f"model-parallel unit whose get_data_parallel_world_size() returns {self.dp} "
                f"(without one, DeepSpeedConfig counts all {self.world_size} ranks as data "
                "parallel and rejects train_batch_size)"
            )
        topology = (
            f"PipeModelDataParallelTopology(num_pp={self.pp}, num_mp={self.tp}, num_dp={self.dp})"
            if self.tp > 1
            else f"PipeDataParallelTopology(num_pp={self.pp}, num_dp={self.dp})"
        )
        return (
            f"launch {self.world_size} ranks; build the model as deepspeed.pipe.PipelineModule("
            f"num_stages={self.pp}, topology={topology}{pipeline_kwargs}){why}; "
            f"deepspeed.initialize takes the data-parallel size {self.dp} from its model.mpu()"
        )


def model_parallel_unit(group: ReplicaGroup) -> ModelParallelUnit:
    """The model-parallel unit a training script must provide for ``group`` (see the class)."""
    tp, pp, dp = group.stages[0].tp, group.pp, group.count
    kind = "pipeline" if pp > 1 else ("autotp" if tp > 1 else "none")
    return ModelParallelUnit(kind, tp, pp, dp)


def deepspeed_config(plan: Plan, workload: TrainingWorkload) -> dict[str, Any]:
    """The DeepSpeed config dict of a training plan."""
    group = plan.replica_groups[0]
    assert group.micro_batch_size is not None and group.num_micro_batches is not None
    tp, pp = group.stages[0].tp, group.pp
    cfg: dict[str, Any] = {
        "train_batch_size": group.count * group.micro_batch_size * group.num_micro_batches,
        "train_micro_batch_size_per_gpu": group.micro_batch_size,
        "gradient_accumulation_steps": group.num_micro_batches,
    }
    cfg["fp16" if workload.precision == "fp16" else "bf16"] = {"enabled": True}
    zero: dict[str, Any] = {"stage": group.zero_stage}
    if group.zero_stage > 0:
        # The planner priced gradient reduction overlapped (or not) with the backward pass.
        zero["overlap_comm"] = workload.overlap_grad_reduce
    cfg["zero_optimization"] = zero
    if group.recompute == "full":
        cfg["activation_checkpointing"] = {
            # The plan keeps each checkpointed block input whole on every TP rank (the cost
            # model prices no partitioning), in GPU memory, one checkpoint per block.
            "partition_activations": False,
            "cpu_checkpointing": False,
            "contiguous_memory_optimization": False,
            "number_checkpoints": group.stages[0].num_layers,
            "synchronize_checkpoint_boundary": False,
            "profile": False,
        }
    if pp > 1:
        cfg["pipeline"] = {
            "stages": pp,
            # Equal numbers of blocks per stage (engine rule: DeepSpeed splits evenly).
            "partition": "uniform",
            # 1 = checkpoint every block: full recomputation.
            "activation_checkpoint_interval": 1 if group.recompute == "full" else 0,
        }
    elif tp > 1:
        cfg["tensor_parallel"] = {"autotp_size": tp}
    return cfg


def export_deepspeed(plan: Plan, model: Model, workload: TrainingWorkload) -> ExportResult:
    """The ``--to deepspeed`` output: the config JSON; what it cannot say goes to the notes."""
    group = plan.replica_groups[0]
    tp, pp = group.stages[0].tp, group.pp
    per_stage = model.num_layers // pp
    unit = model_parallel_unit(group)
    interval = 1 if group.recompute == "full" else 0
    notes = [
        unit.statement(
            f", partition_method='uniform', activation_checkpoint_interval={interval}, ...",
            f" so that every stage holds {per_stage} of the {model.num_layers} blocks",
        )
    ]
    if pp > 1 and tp > 1:
        notes.append(
            f"TP={tp} comes from your training script's model-parallel unit (e.g. "
            f"Megatron-DeepSpeed --tensor-model-parallel-size {tp}); DeepSpeed's AutoTP "
            "(tensor_parallel.autotp_size) does not combine with PipelineModule, so the "
            "config has no TP setting"
        )
    if group.recompute == "full" and pp == 1:
        notes.append(
            "full recompute: wrap every transformer block in deepspeed.checkpointing.checkpoint "
            "after deepspeed.checkpointing.configure(mpu, deepspeed_config=...) reads the "
            "activation_checkpointing section (Hugging Face models: "
            "model.gradient_checkpointing_enable())"
        )
    pools = list(dict.fromkeys(s.pool for s in group.stages))
    if len(pools) > 1:
        notes.append(
            f"stages run on different pools ({', '.join(pools)}): list the hosts in the "
            "hostfile in stage order: DeepSpeed's pipeline topology numbers ranks stage by "
            "stage (axes pipe, data, model: TP rank fastest), so each stage's ranks land on "
            "its pool's nodes"
        )
    text = json.dumps(deepspeed_config(plan, workload), indent=2) + "\n"
    return ExportResult("deepspeed", "DeepSpeed", text, {}, tuple(notes))
