"""Per-node ``torchrun`` lines, a hostfile and a rank map for a training plan (``--to torchrun``).

torch.distributed.run gives node ``i`` (``--node-rank i``) the global ranks that follow those of
nodes ``0..i-1`` (the elastic agent's ``_assign_worker_ranks``: offset = sum of the local world
sizes of the agents with a lower group rank), and local rank ``j`` uses the ``j``-th GPU of
``CUDA_VISIBLE_DEVICES`` (Megatron calls ``torch.cuda.set_device(local_rank)``).  The layout in
:mod:`solver.layout` picks the node order and each node's GPU order so that Megatron's
rank coordinates land on exactly the devices the plan names.
"""

from __future__ import annotations

import json

from ..layout import RankLayout, megatron_layout
from ..specs import Model, Plan, TrainingWorkload
from .megatron import megatron_arguments, render_bash_array
from .result import ExportResult
from .text import command_line, comment, header

__all__ = ["MASTER_PORT", "export_torchrun", "node_roles", "rank_map_json"]

#: torchrun's default rendezvous port (torch.distributed.run --master-port default).
MASTER_PORT = 29500


def _span(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


#: Megatron's own name of each rank order (``RankGenerator`` order strings; CP = EP = 1 here).
MEGATRON_ORDER_NAMES = {"tp-dp-pp": "tp-cp-ep-dp-pp", "tp-pp-dp": "tp-cp-ep-pp-dp"}


def node_roles(layout: RankLayout, node_rank: int, pools: list[str] | None = None) -> str:
    """``stage 0, replicas 0-1`` for the ranks of one node (``, pool h100`` with ``pools``, the
    pool of each stage, when the stages run on several pools)."""
    slots = [r for r in layout.ranks if r.node_rank == node_rank]
    stages = sorted({r.pp for r in slots})
    replicas = sorted({r.dp for r in slots})
    text = (
        f"stage{'s' if len(stages) > 1 else ''} {_span(stages)}, "
        f"replica{'s' if len(replicas) > 1 else ''} {_span(replicas)}"
    )
    if pools is not None and len(set(pools)) > 1:
        text += ", pool " + "/".join(dict.fromkeys(pools[s] for s in stages))
    return text


def rank_map_json(layout: RankLayout) -> str:
    """The rank map as JSON text: one line per node and per rank, so it diffs and greps well."""
    doc = layout.rank_map()
    head = {k: v for k, v in doc.items() if k not in ("nodes", "ranks")}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    for key in ("nodes", "ranks"):
        rows = [f"    {json.dumps(row)}" for row in doc[key]]
        closing = "]," if key == "nodes" else "]"
        lines.append(f"  {json.dumps(key)}: [")
        lines.append(",\n".join(rows))
        lines.append(f"  {closing}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def export_torchrun(plan: Plan, model: Model, workload: TrainingWorkload) -> ExportResult:
    """The ``--to torchrun`` output: one torchrun line per node, plus hostfile and rank map."""
    group = plan.replica_groups[0]
    layout = megatron_layout(group)
    assert not isinstance(layout, str), layout  # engine_violations rejected it otherwise
    blocks, _ = megatron_arguments(plan, model, workload)
    nnodes = len(layout.nodes)
    master = layout.nodes[0].node
    order = MEGATRON_ORDER_NAMES[layout.order] + (
        f" ({layout.megatron_flag})" if layout.megatron_flag else " (Megatron's default)"
    )
    pools = [st.pool for st in group.stages]
    lines = header("torchrun", plan, model)
    lines += comment(
        f"{layout.world_size} ranks on {nnodes} node{'s' if nnodes > 1 else ''}; rank order "
        f"{order}: TP rank fastest"
    )
    lines += comment(
        "Run each node's line on that node (node names are the plan's: replace them with your "
        "hostnames, here and in the hostfile).  Every rank lands on the GPU the plan names."
    )
    lines += comment(
        "Add your data, tokenizer, optimizer and checkpoint arguments to MEGATRON_ARGS."
    )
    if group.stages[0].tp > 1:
        lines += comment(
            "MEGATRON_ARGS below is valid only with CUDA_DEVICE_MAX_CONNECTIONS=1 exported: "
            "Megatron's validate_args asserts it with tensor parallelism"
        )
        lines.append("export CUDA_DEVICE_MAX_CONNECTIONS=1")
    text = "\n".join(lines) + "\n" + render_bash_array("MEGATRON_ARGS", blocks)
    for block in layout.nodes:
        text += (
            f"\n# node {block.node_rank}: {block.node}, ranks "
            f"{_span([block.first_rank, block.last_rank])} ({node_roles(layout, block.node_rank, pools)})\n"
        )
        text += command_line(
            f"CUDA_VISIBLE_DEVICES={block.cuda_visible_devices} ",
            "torchrun",
            [
                f"--nnodes {nnodes}",
                f"--node-rank {block.node_rank}",
                f"--nproc-per-node {len(block.gpus)}",
                f"--master-addr {master}",
                f"--master-port {MASTER_PORT}",
                'pretrain_gpt.py "${MEGATRON_ARGS[@]}"',
            ],
        )
    nprocs = {len(b.gpus) for b in layout.nodes}
    notes = [
        f"launch the {nnodes} node line{'s' if nnodes > 1 else ''}, one per node; the rank map "
        "lists every global rank's node, GPU and (pp, dp, tp) coordinates",
    ]
    if len(nprocs) > 1:
        notes.append(
            "nodes run different numbers of ranks (--nproc-per-node differs); torch.distributed.run "
            "numbers them in node-rank order"
        )
    files = {
        "hostfile": layout.hostfile(),
        "rank_map.json": rank_map_json(layout),
    }
    return ExportResult("torchrun", "torchrun + Megatron-LM", text, files, tuple(notes))
