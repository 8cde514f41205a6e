"""Small instance builders shared by the tests (not a test module).

Keyword arguments override the small defaults; the workload and plan builders also pass any
other field of their spec through by its own name (``**fields``, ``**group``), and every field
neither sets keeps the spec's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from solver.catalog import resolve_gpu
from solver.specs import (
    Cluster,
    GPUSpec,
    InferenceWorkload,
    Link,
    Model,
    Nic,
    Plan,
    Pool,
    Stage,
    TrainingWorkload,
)

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


def gpt(
    layers: int,
    hidden: int = 256,
    heads: int = 4,
    *,
    kv: int | None = None,
    mlp: str = "gelu",
    vocab: int = 1024,
    name: str = "gpt-{layers}x{hidden}",
) -> Model:
    """A small GPT-style model: ``layers`` blocks of width ``hidden``, FFN 4h with tied
    embeddings (gelu) or 3h untied (swiglu), ``kv`` KV heads (default: ``heads``).  ``name`` is
    formatted with ``layers``, ``hidden`` and ``mlp``."""
    ffn = 4 * hidden if mlp == "gelu" else 3 * hidden
    return Model.model_validate(
        dict(
            name=name.format(layers=layers, hidden=hidden, mlp=mlp),
            num_layers=layers,
            hidden_size=hidden,
            ffn_hidden_size=ffn,
            num_attention_heads=heads,
            num_kv_heads=kv or heads,
            vocab_size=vocab,
            mlp=mlp,
            tied_embeddings=mlp == "gelu",
        )
    )


def llama3_8b(layers: int = 4, name: str = "llama3-8b") -> Model:
    """``layers`` Llama-3-8B blocks with its head: h 4096, 32 heads (8 KV, head dim 128),
    SwiGLU f 14336, vocabulary 128256, untied, RoPE (the measured H100 runners' shape)."""
    return Model(
        name=name,
        num_layers=layers,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        ffn_hidden_size=14336,
        vocab_size=128256,
        mlp="swiglu",
        tied_embeddings=False,
        learned_position_embeddings=False,
    )


def train(
    batch: int = 8,
    *,
    seq: int = 256,
    micro: Sequence[int] = (1,),
    recompute: Sequence[str] = ("none",),
    sp: Sequence[bool] = (False,),
    zero: int | list[int] = 1,
    schedules: Sequence[str] = ("1f1b",),
    **fields: Any,
) -> TrainingWorkload:
    """A training workload of ``batch`` sequences of ``seq`` tokens with one choice per knob
    unless told (no recompute, micro-batch 1, no SP, ZeRO-1, 1F1B); ``fields`` sets any other
    field (precision, objective, overlap_grad_reduce, memory_policy, ...)."""
    return TrainingWorkload.model_validate(
        dict(
            kind="training",
            global_batch_size=batch,
            sequence_length=seq,
            micro_batch_sizes=list(micro),
            recompute=list(recompute),
            sequence_parallel=list(sp),
            zero_stage=zero,
            schedules=list(schedules),
            **fields,
        )
    )


def infer(
    batch: Sequence[int] = (1, 8),
    *,
    prompt: int = 256,
    output: int = 64,
    target: float | None = None,
    **fields: Any,
) -> InferenceWorkload:
    """An inference workload: ``prompt`` + ``output`` tokens a request, the batch sizes to
    choose from, ``target`` output tokens/s; ``fields`` sets any other field (objective,
    ttft_ms, tpot_ms, precision, ...)."""
    return InferenceWorkload.model_validate(
        dict(
            kind="inference",
            prompt_tokens=prompt,
            output_tokens=output,
            batch_size=list(batch),
            target_throughput_tokens_per_s=target,
            **fields,
        )
    )


def training_plan(
    stages: Sequence[Stage | dict[str, Any]],
    *,
    count: int = 1,
    mb: int = 1,
    m: int = 16,
    **group: Any,
) -> Plan:
    """A training plan of one replica group: ``count`` replicas of ``stages`` (Stage objects or
    their dicts), ``m`` micro-batches of ``mb`` sequences; ``group`` sets any other field of
    the group (schedule, recompute, zero_stage, ...; a field named here wins over ``mb``/``m``)."""
    grp = {"count": count, "micro_batch_size": mb, "num_micro_batches": m, **group}
    grp["stages"] = list(stages)
    return Plan.model_validate({"kind": "training", "replica_groups": [grp]})
