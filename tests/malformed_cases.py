"""Malformed input files, shared by the loader tests and the CLI tests.

``CASES`` is a list of ``(id, kind, filename, text, expected_substrings)``: write ``text`` to
``filename`` in a temporary folder and load it as ``kind`` (model, cluster, workload or plan);
loading must raise :class:`solver.SpecError` whose message is one line containing every one of
``expected_substrings`` -- the field (with its path) and the offending value.  Through the CLI
the same files must exit with status 2.

Each case is a valid document with one thing broken, so the error can only come from that.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

__all__ = ["CASES", "VALID", "Case"]

Case = tuple[str, str, str, str, list[str]]

_MODEL: dict[str, Any] = {
    "name": "t",
    "num_layers": 4,
    "hidden_size": 256,
    "ffn_hidden_size": 1024,
    "num_attention_heads": 4,
    "num_kv_heads": 4,
    "vocab_size": 1024,
    "mlp": "gelu",
    "tied_embeddings": True,
}
_POOL: dict[str, Any] = {
    "name": "a",
    "gpu": "H100-SXM5-80GB",
    "nodes": 2,
    "gpus_per_node": 4,
    "intra_node": {"kind": "nvswitch", "bandwidth_GBps": 450, "latency_us": 3},
    "nvlink_domain_nodes": 1,
    "nic": {"count": 4, "bandwidth_GBps": 50, "latency_us": 5},
}
_INLINE_GPU: dict[str, Any] = {
    "name": "my-gpu",
    "memory_GB": 80,
    "bf16_tflops": 300,
    "memory_bandwidth_GBps": 2000,
}
_CLUSTER: dict[str, Any] = {
    "name": "c",
    "pools": [_POOL, {**_POOL, "name": "b", "gpu": "A100-SXM4-80GB"}],
}
_TRAINING: dict[str, Any] = {
    "kind": "training",
    "global_batch_size": 512,
    "sequence_length": 2048,
    "precision": "bf16",
    "optimizer": "adam",
    "zero_stage": 1,
    "recompute": ["none", "selective", "full"],
    "micro_batch_sizes": [1, 2, 4],
    "schedules": ["1f1b", "interleaved"],
    "objective": "max_throughput",
}
_INFERENCE: dict[str, Any] = {
    "kind": "inference",
    "prompt_tokens": 1024,
    "output_tokens": 256,
    "batch_size": [1, 8, 32, 64],
    "precision": "bf16",
    "ttft_ms": 2000,
    "tpot_ms": 50,
    "objective": "max_throughput",
}
_STAGE: dict[str, Any] = {
    "first_layer": 0,
    "last_layer": 3,
    "pool": "a",
    "tp": 1,
    "devices": [[["a-0", 0]], [["a-0", 1]]],
}
_PLAN: dict[str, Any] = {
    "kind": "training",
    "replica_groups": [
        {
            "count": 2,
            "micro_batch_size": 1,
            "num_micro_batches": 4,
            "schedule": "1f1b",
            "virtual_stages": 1,
            "recompute": "none",
            "zero_stage": 1,
            "sequence_parallel": False,
            "stages": [_STAGE],
        }
    ],
}

#: The valid documents every case starts from (also useful to check that they do load).
VALID: dict[str, dict[str, Any]] = {
    "model": _MODEL,
    "cluster": _CLUSTER,
    "training": _TRAINING,
    "inference": _INFERENCE,
    "plan": _PLAN,
}

_DELETE = object()


def _edit(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths (``pools__0__nic__count``) set or deleted."""
    out = json.loads(json.dumps(base))  # a deep copy that shares no sub-objects
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = out
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        key: Any = int(last) if isinstance(node, list) else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    return out


def _y(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _j(doc: Any) -> str:
    return json.dumps(doc, indent=1)


_D = _DELETE
_GPU_POOL = {**_POOL, "gpu": _INLINE_GPU}

CASES: list[Case] = [
    # ---- model -------------------------------------------------------------------------
    ("model-missing-field", "model", "m.yaml", _y(_edit(_MODEL, hidden_size=_D)),
     ["hidden_size", "missing"]),
    ("model-unknown-key", "model", "m.yaml", _y({**_MODEL, "num_heads": 32}),
     ["num_heads", "unknown field", "32"]),
    ("model-string-for-number", "model", "m.yaml", _y(_edit(_MODEL, hidden_size="big")),
     ["hidden_size", "'big'"]),
    ("model-mapping-for-number", "model", "m.yaml", _y(_edit(_MODEL, num_layers={"a": 1})),
     ["num_layers", "{'a': 1}"]),
    ("model-negative-layers", "model", "m.yaml", _y(_edit(_MODEL, num_layers=-4)),
     ["num_layers", "-4"]),
    ("model-fractional-layers", "model", "m.yaml", _y(_edit(_MODEL, num_layers=4.5)),
     ["num_layers", "4.5"]),
    ("model-heads-not-divisible-by-kv", "model", "m.yaml", _y(_edit(_MODEL, num_kv_heads=3)),
     ["num_attention_heads", "num_kv_heads=3", "got 4"]),
    ("model-hidden-not-divisible-by-heads", "model", "m.yaml",
     _y(_edit(_MODEL, hidden_size=250)), ["hidden_size", "num_attention_heads=4", "250"]),
    ("model-bad-mlp", "model", "m.yaml", _y(_edit(_MODEL, mlp="relu")), ["mlp", "'relu'"]),
    ("model-experts-per-token-gt-experts", "model", "m.yaml",
     _y({**_MODEL, "num_experts": 4, "experts_per_token": 8}),
     ["experts_per_token", "num_experts=4", "got 8"]),
    ("model-experts-without-top-k", "model", "m.yaml", _y({**_MODEL, "num_experts": 8}),
     ["num_experts", "experts_per_token=None"]),
    ("model-moe-ffn-without-experts", "model", "m.yaml",
     _y({**_MODEL, "moe_ffn_hidden_size": 2048}), ["moe_ffn_hidden_size", "2048"]),
    ("model-yaml-syntax-error", "model", "m.yaml", "name: t\nnum_layers: [4\nhidden_size: 256\n",
     ["YAML syntax error", "line 3"]),
    ("model-yaml-bad-indent", "model", "m.yaml", "name: t\n  num_layers: 4\n",
     ["YAML syntax error", "line 2"]),
    ("model-json-syntax-error", "model", "m.json", '{"name": "t", "num_layers": 4,,}',
     ["JSON syntax error", "line 1 column 31"]),
    ("model-top-level-list", "model", "m.yaml", _y([_MODEL]),
     ["expected a mapping at the top level", "got list"]),
    ("model-top-level-scalar", "model", "m.json", '"llama3-8b"',
     ["expected a mapping at the top level", "got str"]),
    ("model-empty-file", "model", "m.yaml", "", ["document is empty"]),
    ("model-duplicate-key-yaml", "model", "m.yaml", _y(_MODEL) + "hidden_size: 512\n",
     ["duplicate key", "'hidden_size'"]),
    ("model-duplicate-key-json", "model", "m.json", _j(_MODEL)[:-1] + ', "hidden_size": 512}',
     ["duplicate key", "'hidden_size'"]),
    ("model-json-negative-vocab", "model", "m.json", _j(_edit(_MODEL, vocab_size=-1)),
     ["vocab_size", "-1"]),
    # ---- cluster -----------------------------------------------------------------------
    ("cluster-gpu-memory_gb-unit", "cluster", "c.yaml",
     _y({"name": "c", "pools": [_edit(_GPU_POOL, gpu__memory_gb=80, gpu__memory_GB=_D)]}),
     ["pools[0].gpu.memory_gb", "did you mean 'memory_GB'", "80"]),
    ("cluster-nic-bandwidth_Gbps-unit", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__nic__bandwidth_Gbps=400, pools__0__nic__bandwidth_GBps=_D)),
     ["pools[0].nic.bandwidth_Gbps", "did you mean 'bandwidth_GBps'", "400"]),
    ("cluster-negative-nic-count", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__nic__count=-1)), ["pools[0].nic.count", "got -1"]),
    ("cluster-zero-gpus-per-node", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__1__gpus_per_node=0)), ["pools[1].gpus_per_node", "got 0"]),
    ("cluster-fractional-gpus-per-node", "cluster", "c.json",
     _j(_edit(_CLUSTER, pools__0__gpus_per_node=8.5)), ["pools[0].gpus_per_node", "8.5"]),
    ("cluster-unknown-gpu", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__gpu="H100-SXM-80GB")), ["pools[0].gpu", "'H100-SXM-80GB'"]),
    ("cluster-empty-pools", "cluster", "c.yaml", _y({"name": "c", "pools": []}),
     ["pools", "[]"]),
    ("cluster-duplicate-pool-names", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__1__name="a")), ["pools[1].name", "duplicate", "'a'"]),
    ("cluster-fabric-unknown-pool", "cluster", "c.yaml",
     _y({**_CLUSTER, "fabric": [{"pools": ["a", "z"], "bandwidth_GBps": 10}]}),
     ["fabric[0].pools", "got 'z'"]),
    ("cluster-fabric-three-pools", "cluster", "c.yaml",
     _y({**_CLUSTER, "fabric": [{"pools": ["a", "b", "a"], "bandwidth_GBps": 10}]}),
     ["fabric[0].pools", "['a', 'b', 'a']"]),
    ("cluster-fabric-duplicate-pair", "cluster", "c.yaml",
     _y({**_CLUSTER, "fabric": [{"pools": ["a", "b"], "bandwidth_GBps": 10},
                                {"pools": ["b", "a"], "bandwidth_GBps": 20}]}),
     ["fabric[1].pools", "duplicate", "['b', 'a']"]),
    ("cluster-bad-link-kind", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__intra_node__kind="infiniband")),
     ["pools[0].intra_node.kind", "'infiniband'"]),
    ("cluster-bandwidth-with-unit-string", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__intra_node__bandwidth_GBps="450 GB/s")),
     ["pools[0].intra_node.bandwidth_GBps", "'450 GB/s'"]),
    ("cluster-infinite-bandwidth", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__nic__bandwidth_GBps=float("inf"))),
     ["pools[0].nic.bandwidth_GBps", "finite", "inf"]),
    ("cluster-gemm-efficiency-above-one", "cluster", "c.yaml",
     _y({"name": "c", "pools": [_edit(_GPU_POOL, gpu__gemm_efficiency=1.5)]}),
     ["pools[0].gpu.gemm_efficiency", "1.5"]),
    ("cluster-domain-does-not-divide-nodes", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__nvlink_domain_nodes=3)),
     ["pools[0].nvlink_domain_nodes", "nodes=2", "got 3"]),
    ("cluster-missing-nic", "cluster", "c.json", _j(_edit(_CLUSTER, pools__1__nic=_D)),
     ["pools[1].nic", "missing"]),
    ("cluster-negative-cost", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__cost_per_gpu_hour=-2.5)),
     ["pools[0].cost_per_gpu_hour", "-2.5"]),
    ("cluster-pool-name-with-space", "cluster", "c.yaml",
     _y(_edit(_CLUSTER, pools__0__name="my pool")), ["pools[0].name", "'my pool'"]),
    # ---- workload ----------------------------------------------------------------------
    ("workload-wrong-kind", "workload", "w.yaml", _y(_edit(_TRAINING, kind="trainig")),
     ["kind", "'trainig'"]),
    ("workload-missing-kind", "workload", "w.yaml", _y(_edit(_TRAINING, kind=_D)),
     ["kind", "missing"]),
    ("workload-zero-stage-5", "workload", "w.yaml", _y(_edit(_TRAINING, zero_stage=5)),
     ["zero_stage", "got 5"]),
    ("workload-empty-micro-batch-sizes", "workload", "w.yaml",
     _y(_edit(_TRAINING, micro_batch_sizes=[])), ["micro_batch_sizes", "[]"]),
    ("workload-bad-recompute", "workload", "w.yaml",
     _y(_edit(_TRAINING, recompute=["none", "partial"])), ["recompute[1]", "'partial'"]),
    ("workload-bad-schedule", "workload", "w.yaml", _y(_edit(_TRAINING, schedules=["gpipe"])),
     ["schedules[0]", "'gpipe'"]),
    ("workload-unknown-attention", "workload", "w.yaml",
     _y(_edit(_TRAINING, attention="sparse")), ["attention", "'sparse'"]),
    ("workload-dropout-one", "workload", "w.yaml", _y(_edit(_TRAINING, dropout=1.0)),
     ["dropout", "1.0"]),
    ("workload-dropout-negative", "workload", "w.yaml", _y(_edit(_TRAINING, dropout=-0.1)),
     ["dropout", "-0.1"]),
    ("workload-inference-unknown-attention", "workload", "w.yaml",
     _y(_edit(_INFERENCE, attention="paged")), ["attention", "'paged'"]),
    ("workload-unknown-key", "workload", "w.yaml", _y({**_TRAINING, "seq_len": 4096}),
     ["seq_len", "unknown field", "4096"]),
    ("workload-bad-precision", "workload", "w.yaml", _y(_edit(_TRAINING, precision="fp32")),
     ["precision", "'fp32'"]),
    ("workload-training-min-latency", "workload", "w.yaml",
     _y(_edit(_TRAINING, objective="min_latency")), ["objective", "'min_latency'"]),
    ("workload-string-batch-json", "workload", "w.json",
     _j(_edit(_TRAINING, global_batch_size="lots")), ["global_batch_size", "'lots'"]),
    ("workload-min-gpus-without-target", "workload", "w.yaml",
     _y(_edit(_INFERENCE, objective="min_gpus")),
     ["target_throughput_tokens_per_s", "'min_gpus'", "got None"]),
    ("workload-inference-zero-batch", "workload", "w.yaml",
     _y(_edit(_INFERENCE, batch_size=[1, 0])), ["batch_size[1]", "got 0"]),
    ("workload-inference-empty-batch", "workload", "w.yaml", _y(_edit(_INFERENCE, batch_size=[])),
     ["batch_size", "[]"]),
    ("workload-negative-ttft", "workload", "w.yaml", _y(_edit(_INFERENCE, ttft_ms=-5)),
     ["ttft_ms", "-5"]),
    ("workload-training-key-in-inference", "workload", "w.yaml",
     _y({**_INFERENCE, "global_batch_size": 8}), ["global_batch_size", "unknown field", "8"]),
    # ---- plan --------------------------------------------------------------------------
    ("plan-last-layer-before-first", "plan", "p.json",
     _j(_edit(_PLAN, replica_groups__0__stages__0__first_layer=5)),
     ["replica_groups[0].stages[0].last_layer", "first layer 5", "got 3"]),
    ("plan-chunks-and-first-layer", "plan", "p.json",
     _j(_edit(_PLAN, replica_groups__0__stages__0__chunks=[[0, 1], [2, 3]])),
     ["replica_groups[0].stages[0].chunks", "[[0, 1], [2, 3]]", "first_layer=0"]),
    ("plan-no-layers", "plan", "p.json",
     _j(_edit(_PLAN, replica_groups__0__stages__0__first_layer=_D,
              replica_groups__0__stages__0__last_layer=_D)),
     ["replica_groups[0].stages[0].first_layer", "first_layer=None"]),
    ("plan-zero-tp", "plan", "p.json", _j(_edit(_PLAN, replica_groups__0__stages__0__tp=0)),
     ["replica_groups[0].stages[0].tp", "got 0"]),
    ("plan-negative-layer", "plan", "p.yaml",
     _y(_edit(_PLAN, replica_groups__0__stages__0__first_layer=-1)),
     ["replica_groups[0].stages[0].first_layer", "-1"]),
    ("plan-training-two-groups", "plan", "p.json",
     _j({**_PLAN, "replica_groups": _PLAN["replica_groups"] * 2}),
     ["replica_groups", "exactly one", "got 2"]),
    ("plan-empty-stages", "plan", "p.json", _j(_edit(_PLAN, replica_groups__0__stages=[])),
     ["replica_groups[0].stages", "[]"]),
    ("plan-bad-schedule", "plan", "p.json",
     _j(_edit(_PLAN, replica_groups__0__schedule="gpipe")),
     ["replica_groups[0].schedule", "'gpipe'"]),
    ("plan-json-syntax-error", "plan", "p.json", _j(_PLAN)[:-2],
     ["JSON syntax error", "line"]),
]  # fmt: skip
