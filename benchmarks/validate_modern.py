"""Predicted vs published throughput of 2024-2025 training runs (published-runs-modern.json).

Every row of ``shared/data/published-runs-modern.json`` (NeMo 24.05 / 24.07 on DGX-H100,
torchtitan on Grand Teton H100, H200 and A100; read ``published-runs-modern.md`` beside it) is
rebuilt from its published configuration -- model, cluster, workload, plan -- and scored by the
evaluator (``solver.evaluate``).  The figure compared is tokens/s per GPU (what every source
publishes); error = predicted / measured - 1.  Where a per-GPU memory is published (torchtitan),
the predicted peak (GB = 1e9 B) is converted to GiB and compared too: the ledger's
``allocator_reserved_GB``, the caching allocator's reserved peak that torchtitan logs
(``reserved_bytes.all.peak``; the CUDA context and NCCL buffers lie outside it).

Rows that are not evaluated, each with its reason: context parallelism (cp > 1: not modelled),
MoE / expert parallelism (the Mixtral row), rows without a published tokens/s (the NeMo
long-sequence table publishes TFLOP/s only, no batch sizes), and the published OOM row, which is
reported on its own: the evaluator must predict that it does NOT fit.

Mapping rules -- ONE global rule for every unstated detail, never a per-row choice:

Model
    Llama 2/3 rows: SwiGLU, untied embeddings, RoPE (no learned positions).  Nemotron rows:
    squared-ReLU, non-gated, i.e. a 2-matrix MLP, mapped to ``mlp="gelu"`` (same GEMMs; the
    activation function's elementwise cost differs), untied, RoPE.  GPT-3 (NeMo) rows: GeLU,
    learned absolute positions, tied embeddings (NeMo ``megatron_gpt_config`` defaults; the
    launcher configs do not override them); vocab as in the row (50257, NeMo pads it to 50304).
Cluster
    8 GPUs per node, nodes = GPUs / 8.  Intra-node NVSwitch and 8 NICs per node copied from
    ``instances/seed-4x8-h100.yaml`` (450 GB/s per direction, 8 x 400 Gb/s = 8 x 50 GB/s) for
    every H100/H200 row (the torchtitan rows state 400 Gb/s per GPU; NeMo DGX-H100 rows state
    nothing, a DGX H100 has the same); A100 rows (interconnect not stated) copy
    ``instances/selene-a100.yaml`` (DGX A100: 300 GB/s, 8 x 200 Gb/s).
    GPU: DGX-H100 rows -> catalog ``H100-SXM5-80GB``; H200 rows -> ``H200-SXM-141GB``; A100 rows
    -> ``A100-SXM4-80GB``; torchtitan Grand Teton H100 (HBM2e, 500 W) -> an inline GPUSpec copied
    from the catalog H100 with the stated memory (96 GB; 94 GB for the Aug 2024 405B rows) and
    2,400 GB/s HBM, same tensor peaks.  The 500 W power cap is NOT modelled: those rows are
    expected to be predicted too fast.
Workload
    sequence_length = the row's seq_len; precision ``fp8`` for FP8 / Float8 rows else ``bf16``.
    NeMo rows: ``megatron_bf16`` (18 B/param) with ``zero_stage`` 1 (NeMo's default
    ``distributed_fused_adam`` = Megatron distributed optimizer), gradient reduction overlapped.
    torchtitan rows: FSDP2 keeps fp32 sharded parameters, fp32 gradients and fp32 Adam moments,
    16 B/param, all sharded over the FSDP degree: ``amp_fp16`` (2 + 2 + 12 = 16 B) with
    ``zero_stage`` 3 and DP = fsdp x hsdp_replicate.  ``attention`` / ``dropout`` are left at
    the workload defaults (today's stack).
    FP8 recipe (``fp8_recipe``): NeMo rows Transformer Engine ``delayed`` scaling (TE 1.x has
    no other); torchtitan rows torchao ``rowwise`` where the row states it, else its default
    ``tensorwise``.  torchtitan's norm kernel and loss as its config ran them at the commit of
    the numbers: ``fused_norm`` for the (group, model) pairs of ``TORCHTITAN_FUSED_RMSNORM``,
    ``compiled_loss`` for the compiled rows of the groups in ``TORCHTITAN_COMPILED_LOSS``.
TP overlap
    ``tp_comm_overlap``: torchtitan rows whose ``overlap.async_tp`` is true -> ``async_tp``
    (torchtitan refuses async TP without ``--training.compile``, so such a row runs compiled
    even where ``compile`` is unstated); NeMo rows with TP > 1 and sequence parallelism ->
    ``megatron_userbuffers`` (``ub_tp_comm_overlap: True`` in the NeMo-Framework-Launcher
    FP8 performance configs, ``conf/training/gpt3/{20b,175b}_fp8_performance.yaml`` @
    1e46ac6c); every other row ``none``.
Recompute
    torchtitan: as stated ("no" -> none, "selective op" / "selective layer" -> selective,
    "full" -> full).  NeMo rows ("?"): each of none, selective, full is evaluated and the
    fastest one that fits memory is kept (what a tuned published configuration does); the
    table reports which.  If none fits, the smallest-memory one is kept and the row is
    reported infeasible.
Plan
    One replica group of ``dp`` replicas, Megatron rank order (TP fastest, then DP, then PP)
    from ``solver.construction.build_stages``.  NeMo: micro-batch and layout as published,
    ``num_micro_batches`` = GBS / (mb * dp), sequence parallelism on when tp > 1 (NeMo default;
    "?" in every row), interleaved 1F1B with ``virtual_stages`` = VP when VP > 1 else 1F1B; a
    24.05 row with PP > 1 and VP "?" takes the VP of the NeMo-Framework-Launcher default config
    for that model at the table's commit (``VP_LAUNCHER_DEFAULT``), which is also the VP the
    24.07 table publishes for the same layout.  Megatron's even layer split.
    torchtitan without PP: the whole local batch in one pass (mb = local batch,
    num_micro_batches = 1).  torchtitan with PP: ``pipeline_parallel_microbatches`` unstated
    -> the default at torchtitan 9dec370, the PP degree (``pipeline_llama.py``:
    ``pipeline_parallel_microbatches or parallel_dims.pp``); mb = local batch / that; VP
    unstated for the interleaved schedule -> 2 stages per rank (``generate_split_points``
    default for multi-stage schedules); layers split as ``generate_split_points`` does it at
    that commit (first and last stage ``L // n``, the remainder one each to the middle stages).

Usage::

    python benchmarks/validate_modern.py                 # table + results/validate_modern.json
    python benchmarks/validate_modern.py --rows nemo2407  # only ids matching the regex

Always exits 0: it is a measuring instrument, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import published_runs as pr  # noqa: E402

import solver  # noqa: E402
from solver.catalog import resolve_gpu  # noqa: E402
from solver.construction import build_stages  # noqa: E402
from solver.specs import (  # noqa: E402
    Cluster,
    GPUSpec,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)

DATA_FILE = "published-runs-modern.json"
GPUS_PER_NODE = 8
GIB = 2.0**30
GB = 1e9

#: Cluster templates the links are copied from (see module docstring).
H100_TEMPLATE = "seed-4x8-h100"
A100_TEMPLATE = "selene-a100"

#: Grand Teton H100 (torchtitan rows): HBM2e at 2.4 TB/s, 500 W (stated); memory as stated.
GRAND_TETON_BW_GBPS = 2400.0
#: Its power limit where a row states none ("lower TDP"): the 500 W the Dec 2024 rows state.
GRAND_TETON_POWER_W = 500.0

#: NeMo-Framework-Launcher default VP at the 24.05 README's commit 5dcb6bb8
#: (launcher_scripts/conf/training/<family>/<model>.yaml, virtual_pipeline_model_parallel_size),
#: for 24.05 rows with PP > 1 and an unpublished VP.  Equal to the VP the 24.07 table
#: publishes for the identical layout.
VP_LAUNCHER_DEFAULT: dict[str, int] = {
    "Llama 2 13B": 10,  # llama/llama2_13b.yaml
    "Llama 2 70B": 20,  # llama/llama2_70b.yaml
    "Nemotron-3 22B": 10,  # nemotron/nemotron_22b.yaml
}

#: torchtitan rows whose model's train config ran the Triton fused RMSNorm (``norm_type =
#: "fused_rmsnorm"``) when the numbers were measured, (group, model) -> where it says so.
#: Every other torchtitan row's config says ``rmsnorm`` (eager) or compiles the blocks.
TORCHTITAN_FUSED_RMSNORM: dict[tuple[str, str], str] = {
    # The 13B A100 numbers entered docs/performance.md at 395a526 (2024-04-18), whose
    # train_configs/llama_13b.toml (the 64-A100 preset: batch_size 2, seq_len 4096) sets
    # norm_type = "fused_rmsnorm", compile = false; llama_70b.toml sets "rmsnorm".
    ("torchtitan_2024_a100_fsdp", "Llama 2 13B"): "torchtitan 395a526 train_configs/llama_13b.toml",
}

#: torchtitan row groups run at a commit that compiles the loss with ``training.compile``
#: (``build_cross_entropy_loss``: ``if job_config.training.compile: loss_fn =
#: torch.compile(loss_fn)``, torchtitan bbb1b61, 2025-04-02; off from e8977b0, 2024-12-18,
#: so the Dec 2024 rows at 9dec370 run it eager).  Applies to the group's compiled rows.
TORCHTITAN_COMPILED_LOSS: dict[str, str] = {
    "torchtitan_2025-06_async_tp_h100": "torchtitan 820504e torchtitan/components/loss.py",
    "torchtitan_2025-06_h200_trainy": "torchtitan e7c0cae torchtitan/components/loss.py",
}

RECOMPUTE_CHOICES = ("none", "selective", "full")


class Skip(Exception):
    """The row cannot be evaluated; the message says why."""


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def shared_dir() -> Path:
    """shared/ holding ``data/DATA_FILE`` (:func:`published_runs.shared_dir`)."""
    return pr.shared_dir(DATA_FILE)


def known(x: Any) -> bool:
    """A stated value (not '?', 'n/a' or missing)."""
    return x is not None and x not in ("?", "n/a")


def as_int(x: Any, default: int) -> int:
    return int(x) if known(x) else default


def family(row: dict[str, Any]) -> str:
    sid = row["source_id"]
    if sid.startswith("nemo"):
        return "nemo"
    if sid.startswith("torchtitan"):
        return "torchtitan"
    return "megatron"


def is_oom(row: dict[str, Any]) -> bool:
    return str(row["measured"].get("outcome", "")).upper() == "OOM"


def skip_reasons(row: dict[str, Any]) -> list[str]:
    """Why a row is not evaluated for throughput (empty: evaluate it)."""
    par, m, meas = row["parallel"], row["model"], row["measured"]
    out = []
    cp = par.get("cp")
    if known(cp) and int(cp) > 1:
        out.append(f"context parallelism cp={cp} (not modelled)")
    moe = m.get("moe") or {}
    ep = par.get("ep")
    if known(moe.get("num_experts")) or (known(ep) and int(ep) > 1):
        out.append(f"MoE / expert parallelism (experts={moe.get('num_experts')}, ep={ep})")
    if is_oom(row):
        out.append("published OOM outcome (reported separately as a feasibility check)")
    tps = meas.get("tokens_per_s_per_gpu")
    if not isinstance(tps, (int, float)):
        what = "no published tokens/s"
        if not known(row["batch"].get("global_batch_seqs")):
            what += " (TFLOP/s only; GBS and MBS not published)"
        out.append(what)
    return out


# --------------------------------------------------------------------------------------------
# Model, GPU, cluster
# --------------------------------------------------------------------------------------------
def build_model(row: dict[str, Any]) -> tuple[Model, str]:
    """The row's architecture as a Model, and a note on the MLP / embedding mapping."""
    m = row["model"]
    name = m["name"]
    arch = (m.get("arch") or "").lower()
    low = name.lower()
    if "gpt3" in low.replace("-", "") or "gpt-3" in arch:
        mlp, tied, learned, note = "gelu", True, True, "GeLU, tied emb, learned pos"
    elif "nemotron" in low:
        mlp, tied, learned = "gelu", False, False
        note = "squared-ReLU non-gated MLP as 2-matrix 'gelu', untied"
    elif "llama" in low or "mixtral" in low:
        mlp, tied, learned, note = "swiglu", False, False, "SwiGLU, untied"
    else:
        raise Skip(f"unknown model family {name!r}")
    model = Model(
        name=name,
        num_layers=m["layers"],
        hidden_size=m["hidden"],
        ffn_hidden_size=m["ffn_hidden"],
        num_attention_heads=m["heads"],
        num_kv_heads=m["kv_heads"],
        vocab_size=m["vocab"],
        mlp=mlp,
        tied_embeddings=tied,
        learned_position_embeddings=learned,
    )
    return model, note


def gpu_for(row: dict[str, Any]) -> tuple[str | GPUSpec, str]:
    """Catalog name or inline spec for the row's GPU, and the cluster template to copy links from."""
    g = row["hardware"]["gpu"]
    low = g.lower()
    if "a100" in low:
        return "A100-SXM4-80GB", A100_TEMPLATE
    if "h200" in low:
        return "H200-SXM-141GB", H100_TEMPLATE
    if "h100" in low and "hbm2e" in low:
        # Grand Teton / lower-TDP HBM2e H100: stated memory, 2.4 TB/s, catalog tensor peaks.
        mem = re.search(r"(\d+)\s*GB", g)
        mem_gb = float(mem.group(1)) if mem else 96.0
        # The Dec 2024 / June 2025 rows state "the default 500W power limit"; the Aug 2024
        # rows say "lower TDP" of the same Grand Teton part: 500 W for both.
        watts = re.search(r"(\d+)\s*W\b", g)
        cap = float(watts.group(1)) if watts else GRAND_TETON_POWER_W
        base = resolve_gpu("H100-SXM5-80GB")
        spec = base.model_copy(
            update={
                "name": f"H100-SXM-{int(mem_gb)}GB-HBM2e",
                "memory_GB": mem_gb,
                "memory_bandwidth_GBps": GRAND_TETON_BW_GBPS,
                "power_limit_W": cap,
                "source": (
                    "validate_modern.py: catalog H100-SXM5-80GB with the row's stated memory "
                    f"({mem_gb:g} GB), 2.4 TB/s HBM2e and a {cap:g} W power limit"
                ),
            }
        )
        return GPUSpec.model_validate(spec.model_dump()), H100_TEMPLATE
    if "h100" in low:
        return "H100-SXM5-80GB", H100_TEMPLATE
    raise Skip(f"unknown GPU {g!r}")


_TEMPLATES: dict[str, Cluster] = {}


def build_cluster(row: dict[str, Any]) -> Cluster:
    gpu, template = gpu_for(row)
    if template not in _TEMPLATES:
        _TEMPLATES[template] = solver.load_cluster(template)
    tpl = _TEMPLATES[template].pools[0]
    n = int(row["hardware"]["num_gpus"])
    gpn = int(row["hardware"].get("gpus_per_node") or GPUS_PER_NODE)
    return Cluster(
        name=f"{template}-like-{n}",
        pools=[
            Pool(
                name="p",
                gpu=gpu,
                nodes=math.ceil(n / gpn),
                gpus_per_node=gpn,
                intra_node=tpl.intra_node,
                nvlink_domain_nodes=1,
                nic=tpl.nic,
            )
        ],
    )


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def map_recompute(text: str, family: str = "nemo") -> str:
    """The evaluator's recompute setting for a row's stated one.  torchtitan's "selective" is
    its own per-op policy (``selective_op``) unless the row says "layer" (full AC of every
    second block, ``full_half``); NeMo/Megatron's is Megatron's."""
    t = text.strip().lower()
    if t.startswith("full"):
        return "full"
    if t.startswith("selective") and family == "torchtitan":
        if re.search(r"selective\W*layer", t):
            return "full_half"
        return "selective_op"
    if t.startswith("selective"):
        return "selective"
    if t.startswith("no"):  # "none", "none (stated 'no')"
        return "none"
    raise Skip(f"unmapped recompute setting {text!r}")


def torchtitan_split(num_layers: int, stages: int) -> list[int]:
    """Layers per (virtual) stage as torchtitan 9dec370 ``generate_split_points`` makes them."""
    if stages > num_layers:
        raise Skip(f"{stages} pipeline stages > {num_layers} layers")
    base, extra = divmod(num_layers, stages)
    cuts, cur = [], 0
    for i in range(stages - 1):
        if i == 0:
            cur += base
        elif extra > 0:
            cur += base + 1
            extra -= 1
        else:
            cur += base
        cuts.append(cur)
    bounds = [0, *cuts, num_layers]
    return [bounds[i + 1] - bounds[i] for i in range(stages)]


def even_split(num_layers: int, stages: int) -> list[int]:
    """Megatron's even split; a remainder goes to the earliest chunks (noted by the caller)."""
    base, rem = divmod(num_layers, stages)
    return [base + (1 if k < rem else 0) for k in range(stages)]


def layout(row: dict[str, Any]) -> dict[str, Any]:
    """Parallel layout, batch split, memory policy and recompute candidates of a row."""
    par, b = row["parallel"], row["batch"]
    fam = family(row)
    n = int(row["hardware"]["num_gpus"])
    tp, pp = as_int(par.get("tp"), 1), as_int(par.get("pp"), 1)
    gbs = int(b["global_batch_seqs"])
    L = int(row["model"]["layers"])
    notes: list[str] = []
    if fam == "torchtitan":
        fsdp = as_int(par.get("fsdp"), 0)
        rep = as_int(par.get("hsdp_replicate"), 1)
        dp = fsdp * rep if fsdp else as_int(par.get("dp"), n // (tp * pp))
        if rep > 1:
            notes.append("HSDP: the evaluator shards ZeRO-3 over all dp, not the fsdp degree")
        local = int(b["local_batch_per_dp_rank"])
        # FSDP2 mixed precision over fp32 params; under PP torchtitan neither reshards after
        # forward nor reduces gradients before the last micro-batch (model_state_bytes'
        # fsdp2_mixed below ZeRO-3).
        zero, policy = (3 if pp == 1 else 1), "fsdp2_mixed"
        if pp > 1:
            sched = str(par.get("pp_schedule", "")).lower()
            interleaved = "interleaved" in sched or "looped" in sched
            v = as_int(par.get("vp"), 2 if interleaved else 1)
            m = as_int(par.get("pp_microbatches"), pp)
            if not known(par.get("pp_microbatches")):
                notes.append(f"PP micro-batches unstated -> torchtitan default pp={pp}")
            if not known(par.get("vp")) and interleaved:
                notes.append("VP unstated -> torchtitan default 2 stages per rank")
            if local % m:
                raise Skip(f"local batch {local} not divisible by {m} PP micro-batches")
            mb = local // m
            chunks = torchtitan_split(L, pp * v)
        else:
            v, m, mb = 1, 1, local
            chunks = [L]
        sp = tp > 1
        rc_text = str(row.get("recompute", "?"))
        if rc_text.strip() == "?":
            raise Skip("torchtitan row without a stated recompute setting")
        candidates = [map_recompute(rc_text, "torchtitan")]
    else:
        dp = as_int(par.get("dp"), n // (tp * pp))
        mb = int(b["micro_batch"])
        m = as_int(par.get("grad_accum_microbatches"), gbs // (mb * dp))
        vp = par.get("vp")
        if pp <= 1:
            v = 1
        elif known(vp):
            v = int(vp)
        else:
            key = row["model"]["name"].split(" (")[0]
            if key not in VP_LAUNCHER_DEFAULT:
                raise Skip(f"pp={pp} with unpublished VP and no launcher default for {key!r}")
            v = VP_LAUNCHER_DEFAULT[key]
            notes.append(f"VP unpublished -> launcher default {v}")
        # NeMo FP8 performance configs: Apex distributed_fused_adam with a contiguous bf16
        # gradient buffer (grad_sync_dtype: bf16), fp32 master + Adam sharded: 2 + 2 + 12/dp
        # (NeMo-Framework-Launcher conf/training/gpt3/20b_fp8_performance.yaml @ 1e46ac6c).
        zero, policy = 1, "amp_fp16"
        sp_text = str(par.get("sequence_parallel", "?")).lower()
        sp = tp > 1 and (sp_text == "?" or sp_text.startswith(("yes", "true")))
        rc_text = str(row.get("recompute", "?"))
        candidates = list(RECOMPUTE_CHOICES) if rc_text.strip() == "?" else [map_recompute(rc_text)]
        if L % (pp * v):
            notes.append(f"{L} layers not divisible by pp*v={pp * v}: uneven split")
        chunks = even_split(L, pp * v)
    if tp * pp * dp != n:
        raise Skip(f"tp*pp*dp = {tp}*{pp}*{dp} = {tp * pp * dp} != {n} GPUs")
    # TP communication overlap (module docstring, "TP overlap").
    async_tp = fam == "torchtitan" and row.get("overlap", {}).get("async_tp") is True
    if async_tp:
        tp_overlap = "async_tp"
    elif fam == "nemo" and tp > 1 and sp:
        tp_overlap = "megatron_userbuffers"
    else:
        tp_overlap = "none"
    if mb * m * dp != gbs:
        raise Skip(f"mb*m*dp = {mb}*{m}*{dp} != GBS {gbs}")
    return dict(
        family=fam,
        tp=tp,
        pp=pp,
        v=v,
        dp=dp,
        mb=mb,
        m=m,
        gbs=gbs,
        seq=int(row["model"]["seq_len"]),
        zero=zero,
        memory_policy=policy,
        sp=sp,
        chunks=chunks,
        schedule="interleaved" if v > 1 else "1f1b",
        candidates=candidates,
        precision=precision_of(row),
        fp8_recipe=fp8_recipe_of(row),
        fused_norm=(row["group"], row["model"]["name"]) in TORCHTITAN_FUSED_RMSNORM,
        compiled_loss=row.get("compile") is True and row["group"] in TORCHTITAN_COMPILED_LOSS,
        # torchtitan: PyTorch eager modules unless the row says torch.compile, and
        # torch.utils.checkpoint (early stop); NeMo: Megatron-Core/Transformer Engine fused
        # kernels and Megatron's reentrant full recompute.
        kernels=("compiled_blocks" if row.get("compile") is True or async_tp else "eager")
        if fam == "torchtitan"
        else "fused",
        tp_comm_overlap=tp_overlap,
        early_stop=fam == "torchtitan",
        # torchtitan: PyTorch gradients, freed by zero_grad(set_to_none=True); NeMo: Megatron's
        # persistent contiguous gradient buffers.
        grad_buffers="on_demand" if fam == "torchtitan" else "persistent",
        # torchtitan: PyTorch SDPA, whose priority order puts FlashAttention-2 first
        # (sdp_utils.cpp default_order; torchtitan chose cuDNN only on B200, PR #1196, May
        # 2025); NeMo: Transformer Engine's cuDNN fused attention.
        attention_kernel="flash2" if fam == "torchtitan" else "cudnn",
        notes=notes,
    )


def fp8_recipe_of(row: dict[str, Any]) -> str:
    """The FP8 scaling recipe: NeMo / Megatron rows run Transformer Engine's delayed scaling
    (the only FP8 recipe of TE 1.x, NeMo 24.05 / 24.07: ``fp8_hybrid``, ``fp8_amax_history_len``
    in the launcher configs); torchtitan rows torchao's ``rowwise`` where stated, else its
    default ``tensorwise``."""
    if family(row) != "torchtitan":
        return "delayed"
    stated = str(row["precision"].get("fp8_recipe", "")).lower()
    return "rowwise" if "rowwise" in stated else "tensorwise"


def precision_of(row: dict[str, Any]) -> str:
    c = str(row["precision"]["compute"]).lower()
    return "fp8" if c.startswith(("fp8", "float8")) else "bf16"


# --------------------------------------------------------------------------------------------
# Workload, plan, evaluation
# --------------------------------------------------------------------------------------------
def build_plan(
    lay: dict[str, Any], cluster: Cluster, recompute: str
) -> tuple[TrainingWorkload, Plan]:
    wl = TrainingWorkload(
        kind="training",
        global_batch_size=lay["gbs"],
        sequence_length=lay["seq"],
        precision=lay["precision"],
        memory_policy=lay["memory_policy"],
        zero_stage=lay["zero"],
        recompute=[recompute],
        micro_batch_sizes=[lay["mb"]],
        schedules=[lay["schedule"]],
        sequence_parallel=[lay["sp"]],
        elementwise_kernels=lay["kernels"],
        recompute_early_stop=lay["early_stop"],
        grad_buffers=lay["grad_buffers"],
        attention_kernel=lay["attention_kernel"],
        fp8_recipe=lay["fp8_recipe"],
        fused_norm=lay["fused_norm"],
        compiled_loss=lay["compiled_loss"],
        tp_comm_overlap=lay["tp_comm_overlap"],
    )
    p, v, chunks = lay["pp"], lay["v"], lay["chunks"]
    pool = cluster.pools[0].name
    # Model chunk k = c*p + s sits on stage s (Megatron / torchtitan "loop" layout).
    starts = [sum(chunks[:k]) for k in range(p * v)]
    per_stage = [sum(chunks[c * p + s] for c in range(v)) for s in range(p)]
    try:
        stages = build_stages(cluster, [(lay["dp"], [(pool, lay["tp"], n) for n in per_stage])])[0]
    except ValueError as e:
        raise Skip(f"plan could not be built: {e}") from None
    if v > 1:
        stages = [
            Stage(
                chunks=[
                    (starts[c * p + s], starts[c * p + s] + chunks[c * p + s] - 1) for c in range(v)
                ],
                pool=st.pool,
                tp=st.tp,
                devices=st.devices,
            )
            for s, st in enumerate(stages)
        ]
    grp = ReplicaGroup(
        count=lay["dp"],
        micro_batch_size=lay["mb"],
        num_micro_batches=lay["m"],
        schedule=lay["schedule"],
        virtual_stages=v,
        recompute=recompute,
        zero_stage=lay["zero"],
        sequence_parallel=lay["sp"],
        stages=stages,
    )
    return wl, Plan(kind="training", replica_groups=[grp])


def score(model: Model, cluster: Cluster, lay: dict[str, Any], recompute: str) -> dict[str, Any]:
    wl, plan = build_plan(lay, cluster, recompute)
    rep = solver.evaluate(model, cluster, wl, plan).to_dict()
    cap = max(r["capacity_GB"] for r in rep["memory_ledger"]) if rep["memory_ledger"] else None
    return {
        "recompute": recompute,
        "feasible": rep["feasible"],
        "violations": rep["violations"],
        "step_time_s": rep["step_time_s"],
        "tokens_per_s": rep["tokens_per_s"],
        "peak_memory_GB_per_gpu": rep["peak_memory_GB_per_gpu"],
        # What torchtitan logs: the caching allocator's reserved peak (``reserved_bytes.all.
        # peak``, torchtitan metrics.py at 9dec370), without the CUDA context and NCCL buffers
        # that live outside the allocator.
        "peak_reserved_GB_per_gpu": (
            max(r["allocator_reserved_GB"] for r in rep["memory_ledger"])
            if rep["memory_ledger"]
            else None
        ),
        "capacity_GB": cap,
        "mfu": rep["mfu"],
        "bubble_fraction": rep["bubble_fraction"],
        "details": rep["details"],
        "memory_ledger": rep["memory_ledger"],
        "time_breakdown": rep["time_breakdown"],
    }


def pick(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Fastest that fits; if none fits, the one closest to fitting (least peak memory)."""
    ok = [r for r in results if r["feasible"] and r["tokens_per_s"]]
    if ok:
        return max(ok, key=lambda r: r["tokens_per_s"])
    priced = [r for r in results if r["peak_memory_GB_per_gpu"] is not None]
    if priced:
        return min(priced, key=lambda r: r["peak_memory_GB_per_gpu"])
    return results[0]


def gib(gb: float | None) -> float | None:
    return None if gb is None else gb * GB / GIB


def base_record(row: dict[str, Any]) -> dict[str, Any]:
    meas = row["measured"]
    tps = meas.get("tokens_per_s_per_gpu")
    mem = meas.get("peak_mem_gib")
    return {
        "id": row["id"],
        "group": row["group"],
        "gpu": row["hardware"]["gpu"],
        "num_gpus": row["hardware"]["num_gpus"],
        "model": row["model"]["name"],
        "precision": precision_of(row),
        "measured_tokens_per_s_per_gpu": tps if isinstance(tps, (int, float)) else None,
        "measured_peak_mem_gib": mem if isinstance(mem, (int, float)) else None,
    }


def evaluate_row(row: dict[str, Any]) -> dict[str, Any]:
    """One evaluated record (``status`` evaluated / skipped / oom_check / error)."""
    rec = base_record(row)
    reasons = skip_reasons(row)
    oom = is_oom(row)
    # An OOM row has no throughput by nature; it is still evaluated, for its memory.
    blocking = [
        r for r in reasons if not (oom and r.startswith(("published OOM", "no published tokens")))
    ]
    if blocking:
        rec.update(status="skipped", skip_reasons=blocking)
        return rec
    try:
        model, arch_note = build_model(row)
        cluster = build_cluster(row)
        lay = layout(row)
        results = [score(model, cluster, lay, rc) for rc in lay["candidates"]]
    except Skip as e:
        rec.update(status="skipped", skip_reasons=[str(e)])
        return rec
    except Exception as e:  # noqa: BLE001 -- a benchmark reports, never crashes
        rec.update(
            status="error",
            skip_reasons=[f"{type(e).__name__}: {e}"],
            traceback=traceback.format_exc(),
        )
        return rec
    # OOM row: its stated setting (one candidate) is what must not fit.
    best = results[0] if oom else pick(results)
    n = int(row["hardware"]["num_gpus"])
    gpu = cluster.pools[0].gpu
    rec.update(
        status="oom_check" if oom else "evaluated",
        gpu_spec=gpu if isinstance(gpu, str) else gpu.model_dump(),
        arch_mapping=arch_note,
        tp=lay["tp"],
        pp=lay["pp"],
        virtual_stages=lay["v"],
        dp=lay["dp"],
        micro_batch=lay["mb"],
        num_micro_batches=lay["m"],
        schedule=lay["schedule"],
        sequence_parallel=lay["sp"],
        zero_stage=lay["zero"],
        memory_policy=lay["memory_policy"],
        layers_per_chunk=lay["chunks"],
        recompute_candidates=lay["candidates"],
        recompute=best["recompute"],
        notes=lay["notes"],
        feasible=best["feasible"],
        violations=best["violations"],
        step_time_s=best["step_time_s"],
        predicted_tokens_per_s_per_gpu=(
            best["tokens_per_s"] / n if best["tokens_per_s"] is not None else None
        ),
        predicted_peak_GB=best["peak_memory_GB_per_gpu"],
        # torchtitan logs the caching allocator's peak *reserved* memory: compare like with like.
        predicted_peak_gib=gib(best["peak_reserved_GB_per_gpu"]),
        predicted_peak_allocated_gib=gib(best["peak_memory_GB_per_gpu"]),
        capacity_GB=best["capacity_GB"],
        mfu=best["mfu"],
        bubble_fraction=best["bubble_fraction"],
        details=best["details"],
        memory_ledger=best["memory_ledger"],
        time_breakdown=best["time_breakdown"],
        candidates=[
            {
                k: r[k]
                for k in (
                    "recompute",
                    "feasible",
                    "tokens_per_s",
                    "peak_memory_GB_per_gpu",
                    "violations",
                )
            }
            for r in results
        ],
    )
    meas, pred = rec["measured_tokens_per_s_per_gpu"], rec["predicted_tokens_per_s_per_gpu"]
    rec["error"] = pred / meas - 1.0 if meas and pred else None
    mm, pm = rec["measured_peak_mem_gib"], rec["predicted_peak_gib"]
    rec["memory_error"] = pm / mm - 1.0 if mm and pm else None
    if oom:
        # The published result is an OOM: the model must say it does not fit.
        rec["predicted_fits"] = bool(
            best["peak_memory_GB_per_gpu"] is not None
            and best["capacity_GB"] is not None
            and best["peak_memory_GB_per_gpu"] <= best["capacity_GB"]
        )
        rec["oom_reproduced"] = not rec["predicted_fits"]
    return rec


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "-" if x is None else format(x, fmt)


def short_gpu(rec: dict[str, Any]) -> str:
    g = rec.get("gpu_spec")
    if isinstance(g, dict):
        return f"H100-{int(g['memory_GB'])}e"
    return {"H100-SXM5-80GB": "H100", "H200-SXM-141GB": "H200", "A100-SXM4-80GB": "A100"}.get(
        str(g), str(g)
    )


def table(recs: list[dict[str, Any]]) -> str:
    head = (
        f"{'id':56s} {'gpu':9s} {'n':>4s} {'t/p/v/dp':>11s} {'mb x m':>7s} {'prec':4s} "
        f"{'rc':4s} {'meas':>6s} {'pred':>7s} {'err':>7s} {'memM':>5s} {'memP':>6s} "
        f"{'memErr':>7s}  status"
    )
    lines = [head, "-" * len(head)]
    for r in recs:
        lay = f"{r['tp']}/{r['pp']}/{r['virtual_stages']}/{r['dp']}"
        status = "ok" if r["feasible"] else "INFEASIBLE: " + (r["violations"] or ["?"])[0]
        rc = {
            "none": "none",
            "selective": "sel",
            "full": "full",
            "selective_op": "op",
            "full_half": "half",
        }[r["recompute"]]
        if len(r["recompute_candidates"]) > 1:
            rc += "*"
        lines.append(
            f"{r['id']:56s} {short_gpu(r):9s} {r['num_gpus']:4d} {lay:>11s} "
            f"{r['micro_batch']:>3d}x{r['num_micro_batches']:<3d} {r['precision']:4s} {rc:4s} "
            f"{_num(r['measured_tokens_per_s_per_gpu']):>6s} "
            f"{_num(r['predicted_tokens_per_s_per_gpu']):>7s} {_pct(r['error']):>7s} "
            f"{_num(r['measured_peak_mem_gib'], '.1f'):>5s} {_num(r['predicted_peak_gib'], '.1f'):>6s} "
            f"{_pct(r['memory_error']):>7s}  {status}"
        )
    return "\n".join(lines)


def stats(recs: list[dict[str, Any]]) -> dict[str, Any]:
    errs = [abs(r["error"]) for r in recs if r.get("error") is not None]
    merrs = [abs(r["memory_error"]) for r in recs if r.get("memory_error") is not None]
    signed = [r["error"] for r in recs if r.get("error") is not None]
    return {
        "rows": len(recs),
        "with_error": len(errs),
        "mean_abs_error": sum(errs) / len(errs) if errs else None,
        "max_abs_error": max(errs) if errs else None,
        "mean_signed_error": sum(signed) / len(signed) if signed else None,
        "within_8pct": sum(e <= 0.08 for e in errs),
        "within_20pct": sum(e <= 0.20 for e in errs),
        "memory_rows": len(merrs),
        "memory_mean_abs_error": sum(merrs) / len(merrs) if merrs else None,
        "memory_max_abs_error": max(merrs) if merrs else None,
        "infeasible": sum(not r["feasible"] for r in recs),
    }


def fmt_stats(label: str, s: dict[str, Any]) -> str:
    if not s["with_error"]:
        return f"{label:40s} rows {s['rows']:3d}  (no throughput error)"
    mem = (
        f"  mem |err| {100 * s['memory_mean_abs_error']:.1f}% (n={s['memory_rows']})"
        if s["memory_rows"]
        else ""
    )
    return (
        f"{label:40s} rows {s['rows']:3d}  mean |err| {100 * s['mean_abs_error']:5.1f}%  "
        f"max {100 * s['max_abs_error']:5.1f}%  mean {100 * s['mean_signed_error']:+6.1f}%  "
        f"<=8% {s['within_8pct']:2d}  <=20% {s['within_20pct']:2d}  "
        f"infeasible {s['infeasible']:2d}{mem}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=None, help="regex: only row ids matching it")
    ap.add_argument(
        "--out",
        default=None,
        help="JSON output (default results/validate_modern.json; with --rows "
        "results/validate_modern_subset.json, so a filtered run keeps the full file)",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        name = "validate_modern_subset.json" if args.rows else "validate_modern.json"
        args.out = str(REPO / "benchmarks" / "results" / name)
    data = json.loads((shared_dir() / "data" / DATA_FILE).read_text())
    rows = data["runs"]
    if args.rows:
        pat = re.compile(args.rows)
        rows = [r for r in rows if pat.search(r["id"])]
    recs = [evaluate_row(r) for r in rows]
    ev = [r for r in recs if r["status"] == "evaluated"]
    oom = [r for r in recs if r["status"] == "oom_check"]
    skipped = [r for r in recs if r["status"] in ("skipped", "error")]

    print(
        f"published-runs-modern.json: {len(rows)} rows, {len(ev)} evaluated, "
        f"{len(skipped)} skipped, {len(oom)} OOM check"
    )
    print("rc: recompute used (* = chosen by the fastest-that-fits rule among none/sel/full)")
    print("meas/pred: tokens/s/GPU; memM/memP: peak per GPU in GiB (measured / predicted)\n")
    if ev:
        print(table(ev))
    if oom:
        print("\nPublished OOM (the model must predict it does NOT fit):")
        for r in oom:
            verdict = (
                "reproduced (predicted not to fit)"
                if r["oom_reproduced"]
                else "MISSED (predicted to fit)"
            )
            print(
                f"  {r['id']}: predicted peak {_num(r['predicted_peak_GB'], '.1f')} GB "
                f"({_num(r['predicted_peak_gib'], '.1f')} GiB) vs capacity "
                f"{_num(r['capacity_GB'], '.1f')} GB, recompute {r['recompute']}: {verdict}"
            )
    if skipped:
        print("\nSkipped:")
        for r in skipped:
            print(f"  {r['id']:56s} {'; '.join(r['skip_reasons'])}")

    summary = stats(ev) if ev else None
    groups: dict[str, Any] = {}
    for r in ev:
        groups.setdefault(r["group"], []).append(r)
    by_group = {g: stats(rs) for g, rs in groups.items()}
    if summary:
        print("\nSummary (throughput error = predicted / measured - 1, tokens/s/GPU)")
        print(fmt_stats("all evaluated rows", summary))
        for g, s in by_group.items():
            print(fmt_stats("  " + g, s))
        if summary["infeasible"]:
            print(
                f"\n!!! {summary['infeasible']} published (i.e. runnable) configuration(s) "
                "reported INFEASIBLE by the evaluator:"
            )
            for r in ev:
                if not r["feasible"]:
                    print(f"!!!   {r['id']}: {'; '.join(r['violations'])}")
        chosen = [r for r in ev if len(r["recompute_candidates"]) > 1]
        if chosen:
            counts: dict[str, int] = {}
            for r in chosen:
                counts[r["recompute"]] = counts.get(r["recompute"], 0) + 1
            print(f"\nrecompute chosen for the {len(chosen)} NeMo rows: {counts}")

    out = {
        "about": (
            "Predicted vs published tokens/s per GPU for published-runs-modern.json; "
            "see benchmarks/validate_modern.py for the mapping rules."
        ),
        "source_file": str(shared_dir() / "data" / DATA_FILE),
        "rules": {
            "vp_launcher_default": VP_LAUNCHER_DEFAULT,
            "recompute_unknown": "fastest of none/selective/full that fits memory",
            "nemo": "megatron_bf16, zero_stage 1, SP when tp > 1",
            "torchtitan": "amp_fp16 (16 B/param), zero_stage 3 over fsdp x replicate",
            "grand_teton_h100": "catalog H100 with stated memory and 2400 GB/s; 500 W cap not modelled",
        },
        "summary": summary,
        "by_group": by_group,
        "oom_checks": oom,
        "skipped": skipped,
        "rows": ev,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    # A benchmark, not a test: always exit 0 (rows that fail are reported, not raised).
    try:
        main()
    except SystemExit as e:  # argparse --help / missing data: keep its message
        if e.code not in (0, None):
            print(e.code if isinstance(e.code, str) else f"exit {e.code}", file=sys.stderr)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    raise SystemExit(0)
