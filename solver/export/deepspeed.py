"""A DeepSpeed config JSON for a training plan (``--to deepspeed``).

Keys follow the DeepSpeed config reference (deepspeed.ai/docs/config-json) and
``deepspeed/runtime/config.py``: ``train_batch_size`` = ``train_micro_batch_size_per_gpu`` x
``gradient_accumulation_steps`` x data-parallel size (DeepSpeed checks this product),
``zero_optimization.stage``, ``bf16.enabled`` / ``fp16.enabled``, the ``pipeline`` section
(``get_pipeline_config``: ``stages``, ``activation_checkpoint_interval``, ...) and AutoTP's
``tensor_parallel.autotp_size`` (deepspeed.ai/tutorials/autotp-training).
"""

from __future__ import annotations

import json
from typing import Any

from ..specs import Model, Plan, TrainingWorkload
from .result import ExportResult

__all__ = ["deepspeed_config", "export_deepspeed"]


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
    cfg["zero_optimization"] = {"stage": group.zero_stage}
    if pp > 1:
        cfg["pipeline"] = {
            "stages": pp,
            # Checkpoint every layer: full recomputation.
            "activation_checkpoint_interval": 1 if group.recompute == "full" else 0,
        }
    if tp > 1 and pp == 1:
        cfg["tensor_parallel"] = {"autotp_size": tp}
    return cfg


def export_deepspeed(plan: Plan, model: Model, workload: TrainingWorkload) -> ExportResult:
    """The ``--to deepspeed`` output: the config JSON; what it cannot say goes to the notes."""
    group = plan.replica_groups[0]
    tp, pp, dp = group.stages[0].tp, group.pp, group.count
    per_stage = model.num_layers // pp
    notes = [
        f"launch {tp * pp * dp} ranks: DeepSpeed derives the data-parallel size {dp} from the "
        f"world size and the model-parallel sizes (TP={tp}, PP={pp})",
    ]
    if pp > 1:
        notes.append(
            f"build the model as deepspeed.pipe.PipelineModule(num_stages={pp}, "
            "partition_method='type:<your transformer block class>', "
            f"activation_checkpoint_interval={1 if group.recompute == 'full' else 0}) so that "
            f"every stage holds {per_stage} of the {model.num_layers} blocks"
        )
        if tp > 1:
            notes.append(
                f"TP={tp} comes from your training script's model-parallel unit (e.g. "
                f"Megatron-DeepSpeed --tensor-model-parallel-size {tp}); DeepSpeed's config has "
                "no TP setting for pipeline models"
            )
    elif group.recompute == "full":
        notes.append(
            "full recompute: checkpoint every transformer block in your model (e.g. "
            "model.gradient_checkpointing_enable())"
        )
    text = json.dumps(deepspeed_config(plan, workload), indent=2) + "\n"
    return ExportResult("deepspeed", "DeepSpeed", text, {}, tuple(notes))
