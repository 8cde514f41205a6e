"""Launch lines for inference plans: vLLM, SGLang and TensorRT-LLM (``--to vllm|sglang|trtllm``).

Per replica group (groups differ in GPU type, TP/PP or batch, so each is its own launch):

* replicas that each fit on one node: ``CUDA_VISIBLE_DEVICES`` lists the replica's GPUs in
  worker order (stage-major, TP rank minor: vLLM and TRT-LLM number workers
  ``pp_rank * tp + tp_rank``; SGLang puts ``gpu_id = base_gpu_id + pp_rank * tp + tp_rank``), and
  identical replicas become data parallelism where the engine has it: vLLM
  ``--data-parallel-size`` (one API endpoint over all nodes: ``--data-parallel-size-local``,
  ``--data-parallel-start-rank``, ``--headless``, per vLLM's "Data Parallel Deployment" docs),
  SGLang ``--dp-size`` per node; TRT-LLM runs one ``trtllm-serve`` per replica;
* replicas that span nodes: vLLM on a Ray cluster (``--distributed-executor-backend ray``),
  SGLang with ``--nnodes/--node-rank/--dist-init-addr``, TRT-LLM under
  ``mpirun -H host:slots trtllm-llmapi-launch``.

An uneven layer split goes in ``VLLM_PP_LAYER_PARTITION`` / ``SGLANG_PP_LAYER_PARTITION``
(comma-separated layers per stage; the engine checks that they sum to the model's layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..layout import Device, replica_devices, replica_nodes
from ..specs import Cluster, InferenceWorkload, Model, Plan, ReplicaGroup
from .precision import engine_precision, precision_spec
from .result import ExportResult
from .text import command_line, comment, header

__all__ = [
    "DP_RPC_PORT",
    "PORTS",
    "RAY_PORT",
    "SGLANG_DIST_PORT",
    "TRTLLM_CONFIG",
    "export_inference",
    "yaml_text",
]

#: First HTTP port per engine, each engine's own default (vllm serve --port 8000; SGLang
#: launch_server --port 30000; trtllm-serve --port 8000); later endpoints count up from it.
PORTS: dict[str, int] = {"vllm": 8000, "sglang": 30000, "trtllm": 8000}
#: vLLM data-parallel RPC port, as in vLLM's data-parallel deployment example.
DP_RPC_PORT = 13345
#: Ray's default GCS port (``ray start --head --port 6379``).
RAY_PORT = 6379
#: SGLang ``--dist-init-addr`` port for multi-node replicas (any free port works).
SGLANG_DIST_PORT = 50000
#: Default file name of the TensorRT-LLM LLM-API options the launch script writes
#: (``trtllm-serve --config``); ``TRTLLM_CONFIG`` in the environment overrides it.
TRTLLM_CONFIG = "trtllm-llm-api.yaml"

_PARTITION_ENV = {"vllm": "VLLM_PP_LAYER_PARTITION", "sglang": "SGLANG_PP_LAYER_PARTITION"}
_TITLE = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}


@dataclass
class _Ports:
    """Hands out ports per node, so that two endpoints on one node never collide while
    endpoints on different nodes all use the engine's default port."""

    base: int
    used: dict[tuple[str, str], int] = field(default_factory=dict)

    def _next(self, kind: str, node: str, base: int) -> int:
        n = self.used.get((kind, node), 0)
        self.used[(kind, node)] = n + 1
        return base + n

    def http(self, node: str) -> int:
        return self._next("http", node, self.base)

    def rpc(self, node: str) -> int:
        return self._next("rpc", node, DP_RPC_PORT)

    def ray(self, node: str) -> int:
        return self._next("ray", node, RAY_PORT)


def _c(text: str) -> str:
    """A wrapped comment block (see :func:`~solver.export.text.comment`)."""
    return "\n".join(comment(text)) + "\n"


def _gpus(devices: list[Device]) -> str:
    return ",".join(str(g) for _, g in devices)


def _engine_flags(
    engine: str, group: ReplicaGroup, workload: InferenceWorkload | None
) -> list[str]:
    """Parallelism, batch and context flags (precision flags come from :mod:`.precision`)."""
    tp, pp = group.stages[0].tp, group.pp
    batch = group.batch_size if group.batch_size is not None else 1
    context = None if workload is None else workload.prompt_tokens + workload.output_tokens
    # The serving ledger's memory budget and token budget (InferenceWorkload
    # gpu_memory_utilization / max_num_batched_tokens): vLLM's own names; SGLang's
    # mem_fraction_static (weights + KV pool, server_args.py) and chunked_prefill_size; for
    # TensorRT-LLM only the token budget (--max_num_tokens): its kv_cache_free_gpu_memory_fraction
    # is a share of the memory left after the weights, not of the GPU.
    util = None if workload is None else workload.gpu_memory_utilization
    budget = None if workload is None else workload.max_num_batched_tokens
    if engine == "vllm":
        flags = [f"--tensor-parallel-size {tp}", f"--pipeline-parallel-size {pp}"]
        flags.append(f"--max-num-seqs {batch}")
        if context is not None:
            flags.append(f"--max-model-len {context}")
        if util is not None:
            flags.append(f"--gpu-memory-utilization {util:g}")
        if budget is not None:
            flags.append(f"--max-num-batched-tokens {budget}")
        return flags
    if engine == "sglang":
        flags = [f"--tp-size {tp}", f"--pp-size {pp}", f"--max-running-requests {batch}"]
        if context is not None:
            flags.append(f"--context-length {context}")
        if util is not None:
            flags.append(f"--mem-fraction-static {util:g}")
        if budget is not None:
            flags.append(f"--chunked-prefill-size {budget}")
        return flags
    flags = ["--backend pytorch", f"--tp_size {tp}", f"--pp_size {pp}", f"--max_batch_size {batch}"]
    if context is not None:
        flags.append(f"--max_seq_len {context}")
    if budget is not None:
        flags.append(f"--max_num_tokens {budget}")
    return flags


def yaml_text(config: dict[str, Any], indent: str = "") -> str:
    """A nested dict of scalars as block YAML (keys in insertion order)."""
    out = ""
    for key, value in config.items():
        if isinstance(value, dict):
            out += f"{indent}{key}:\n" + yaml_text(value, indent + "  ")
        else:
            out += f"{indent}{key}: {value}\n"
    return out


def _env(engine: str, group: ReplicaGroup, devices: list[Device] | None) -> str:
    """``CUDA_VISIBLE_DEVICES=... VLLM_PP_LAYER_PARTITION=... `` (with a trailing space)."""
    parts: list[str] = []
    if devices is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={_gpus(devices)}")
    layers = [s.num_layers for s in group.stages]
    if engine in _PARTITION_ENV and len(set(layers)) > 1:
        parts.append(f"{_PARTITION_ENV[engine]}={','.join(str(n) for n in layers)}")
    return "".join(p + " " for p in parts)


def _command(engine: str) -> str:
    return {
        "vllm": 'vllm serve "$MODEL"',
        "sglang": 'python -m sglang.launch_server --model-path "$MODEL"',
        "trtllm": 'trtllm-serve "$MODEL"',
    }[engine]


def _replicas_by_node(group: ReplicaGroup) -> list[tuple[str, list[int]]]:
    """Single-node replicas grouped by node, nodes in order of first use."""
    order: list[tuple[str, list[int]]] = []
    for r in range(group.count):
        node = replica_nodes(group, r)[0]
        for name, reps in order:
            if name == node:
                reps.append(r)
                break
        else:
            order.append((node, [r]))
    return order


def _local_group(
    engine: str,
    group: ReplicaGroup,
    flags: list[str],
    ports: _Ports,
    notes: list[str],
) -> str:
    """Every replica fits on one node."""
    by_node = _replicas_by_node(group)
    cmd = _command(engine)
    text = ""
    if engine == "vllm":
        dp = group.count
        port = ports.http(by_node[0][0])
        if dp == 1 or len(by_node) == 1:
            node, reps = by_node[0]
            devices = [d for r in reps for d in replica_devices(group, r)]
            extra = [f"--data-parallel-size {dp}"] if dp > 1 else []
            text += f"# on {node}: endpoint {node}:{port}\n"
            text += command_line(
                _env(engine, group, devices), cmd, flags + extra + [f"--port {port}"]
            )
            return text
        head = by_node[0][0]
        rpc = ports.rpc(head)
        text += _c(
            f"vLLM data parallelism over {len(by_node)} nodes: one endpoint {head}:{port}; "
            "start every node's line"
        )
        start = 0
        for i, (node, reps) in enumerate(by_node):
            devices = [d for r in reps for d in replica_devices(group, r)]
            dp_flags = [
                f"--data-parallel-size {dp}",
                f"--data-parallel-size-local {len(reps)}",
            ]
            if i > 0:
                dp_flags = ["--headless", *dp_flags, f"--data-parallel-start-rank {start}"]
            dp_flags += [f"--data-parallel-address {head}", f"--data-parallel-rpc-port {rpc}"]
            if i == 0:
                dp_flags.append(f"--port {port}")
            ranks = f"{start}" if len(reps) == 1 else f"{start}-{start + len(reps) - 1}"
            text += f"# on {node}: DP rank{'s' if len(reps) > 1 else ''} {ranks}\n"
            text += command_line(_env(engine, group, devices), cmd, flags + dp_flags)
            start += len(reps)
        return text
    if engine == "sglang":
        if len(by_node) > 1:
            text += _c(
                f"{len(by_node)} endpoints, one per node: route requests across them "
                "(sglang_router or any HTTP load balancer)"
            )
        for node, reps in by_node:
            port = ports.http(node)
            devices = [d for r in reps for d in replica_devices(group, r)]
            extra = [f"--dp-size {len(reps)}"] if len(reps) > 1 else []
            text += f"# on {node}: endpoint {node}:{port}\n"
            text += command_line(
                _env(engine, group, devices),
                cmd,
                flags + extra + ["--host 0.0.0.0", f"--port {port}"],
            )
        return text
    # trtllm: one server per replica
    if group.count > 1:
        text += _c(
            f"trtllm-serve has no data parallelism for dense models: {group.count} endpoints, "
            "one per replica; route requests across them (any HTTP load balancer)"
        )
        notes.append(
            "TensorRT-LLM: every replica is its own trtllm-serve endpoint; put a load balancer "
            "in front of a group's endpoints"
        )
    for r in range(group.count):
        devices = replica_devices(group, r)
        node = devices[0][0]
        port = ports.http(node)
        text += f"# on {node}: replica {r}, endpoint {node}:{port}\n"
        text += command_line(
            _env(engine, group, devices), cmd, flags + ["--host 0.0.0.0", f"--port {port}"]
        )
    return text


def _multinode_group(
    engine: str,
    group: ReplicaGroup,
    flags: list[str],
    ports: _Ports,
    notes: list[str],
) -> str:
    """Some replica spans several nodes: one launch per replica."""
    cmd = _command(engine)
    text = ""
    if group.count > 1:
        text += _c(
            f"{group.count} replicas, each its own endpoint: route requests across them "
            "(any HTTP load balancer)"
        )
    for r in range(group.count):
        devices = replica_devices(group, r)
        nodes = replica_nodes(group, r)
        per_node = {n: [d for d in devices if d[0] == n] for n in nodes}
        head = nodes[0]
        port = ports.http(head)
        text += f"# replica {r} on {', '.join(nodes)}: endpoint {head}:{port}\n"
        if engine == "vllm":
            ray = ports.ray(head)
            text += _c(
                "vLLM runs a replica that spans nodes on a Ray cluster; Ray picks which of "
                "these nodes runs which stage"
            )
            for i, node in enumerate(nodes):
                gpus = f"CUDA_VISIBLE_DEVICES={_gpus(per_node[node])} "
                if i == 0:
                    text += f"# on {node}:\n{gpus}ray start --head --port {ray}\n"
                else:
                    text += f"# on {node}:\n{gpus}ray start --address {head}:{ray}\n"
            text += f"# then on {head}:\n"
            text += command_line(
                _env(engine, group, None),
                cmd,
                flags + ["--distributed-executor-backend ray", f"--port {port}"],
            )
        elif engine == "sglang":
            for i, node in enumerate(nodes):
                node_flags = [
                    f"--nnodes {len(nodes)}",
                    f"--node-rank {i}",
                    f"--dist-init-addr {head}:{SGLANG_DIST_PORT}",
                ]
                if i == 0:
                    node_flags += ["--host 0.0.0.0", f"--port {port}"]
                text += f"# on {node}:\n"
                text += command_line(_env(engine, group, per_node[node]), cmd, flags + node_flags)
        else:
            hosts = ",".join(f"{n}:{len(per_node[n])}" for n in nodes)
            visible = _gpus(per_node[head])
            text += f"# on {head} (mpirun starts the ranks on every host):\n"
            text += command_line(
                f"CUDA_VISIBLE_DEVICES={visible} ",
                f"mpirun -np {len(devices)} -H {hosts} -x CUDA_VISIBLE_DEVICES "
                f"trtllm-llmapi-launch {cmd}",
                flags + ["--host 0.0.0.0", f"--port {port}"],
            )
    if engine == "vllm":
        notes.append(
            "vLLM: replicas that span nodes run on Ray; Ray, not this file, decides which node "
            "runs which stage (TP groups stay inside a node)"
        )
    return text


def _group_title(group: ReplicaGroup, g: int, cluster: Cluster | None) -> str:
    pool = group.stages[0].pool
    gpu = ""
    if cluster is not None:
        spec = cluster.pool(pool).gpu
        gpu = f" ({spec if isinstance(spec, str) else spec.name})"
    tp, pp = group.stages[0].tp, group.pp
    replicas = f"{group.count} replica{'s' if group.count > 1 else ''}"
    batch = group.batch_size if group.batch_size is not None else 1
    split = "/".join(str(s.num_layers) for s in group.stages)
    layers = f", layers {split}" if pp > 1 else ""
    return _c(
        f"group {g}: {replicas} x TP={tp} PP={pp} on {pool}{gpu}{layers}, batch {batch} per replica"
    )


def export_inference(
    plan: Plan,
    engine: str,
    model: Model,
    cluster: Cluster | None,
    workload: InferenceWorkload | None,
) -> ExportResult:
    """The ``--to vllm|sglang|trtllm`` output: commented launch lines, one section per group."""
    title = _TITLE[engine]
    notes: list[str] = []
    sections: list[str] = []
    ports = _Ports(PORTS[engine])
    precision_flags: list[str] = []
    config: dict[str, Any] = {}
    if workload is not None:
        options = engine_precision(engine, precision_spec(workload))
        precision_flags, config = list(options.flags), options.config
        notes += options.notes
    if config:
        precision_flags.append('--config "$TRTLLM_CONFIG"')
    for g, group in enumerate(plan.replica_groups):
        flags = _engine_flags(engine, group, workload) + precision_flags
        single = all(len(replica_nodes(group, r)) == 1 for r in range(group.count))
        body = (_local_group if single else _multinode_group)(engine, group, flags, ports, notes)
        sections.append(_group_title(group, g, cluster) + body)
    if len(plan.replica_groups) > 1:
        notes.insert(
            0,
            f"{len(plan.replica_groups)} replica groups differ in GPU type, TP/PP or batch, so "
            f"each is its own {title} launch with its own endpoint(s); balance requests across "
            "all endpoints",
        )
    if workload is None:
        notes.append(
            "no --workload given: context length and dtype are left at the engine defaults"
        )
    lines = header(engine, plan, model)
    lines += comment("node names are the plan's (<pool>-<index>): replace them with your hostnames")
    for n in dict.fromkeys(notes):
        lines += comment(n)
    lines.append(
        f'MODEL="${{MODEL:?set MODEL to the Hugging Face id or local path of {model.name}}}"'
    )
    text = "\n".join(lines) + "\n"
    if config:
        text += _c(
            "precision: TensorRT-LLM's LLM-API options (trtllm-serve --config); the file must "
            "exist on the node that runs trtllm-serve"
        )
        text += f'TRTLLM_CONFIG="${{TRTLLM_CONFIG:-{TRTLLM_CONFIG}}}"\n'
        text += f"cat > \"$TRTLLM_CONFIG\" <<'EOF'\n{yaml_text(config)}EOF\n"
    text += "\n" + "\n".join(sections)
    return ExportResult(engine, title, text, {}, tuple(dict.fromkeys(notes)))
