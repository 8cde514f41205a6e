"""Predicted vs published LLM serving measurements (published-inference.json).

Every case of ``shared/data/published-inference.json`` (TensorRT-LLM 0.9.0 on A100, FP16,
static batching: ``gptSessionBenchmark``; read its ``schema`` and ``sources``) is rebuilt
from its published configuration -- model, cluster, inference workload, plan (the published
TP / PP / batch) -- and scored by the evaluator (``solver.evaluate``).  Compared where the
source publishes them:

* throughput per GPU: ``output_len x batch / total latency / TP`` (the source's ``out_tps``)
  against the evaluator's ``tokens_per_s / (tp x pp)`` (its static-batching request latency
  TTFT + output x TPOT is the same "total latency");
* first-token latency (TTFT) at batch 1, output length 1, against the evaluator's ``ttft_ms``.

error = predicted / published - 1.  Every published configuration ran, so the evaluator must
report each one feasible; the summary counts those it reports infeasible (goal: 0) and lists
their violations.

Mapping rules -- ONE global rule for every unstated detail, never a per-row choice (the
table in benchmarks/README.md says the same):

Model
    ``model_shapes[case.model]`` as given (layers, widths, heads, KV heads, vocab, MLP, tied
    embeddings, MoE experts / top-k); rotary positions (no learned position table: Llama 2,
    Mixtral and Falcon all use RoPE).
GPU / cluster
    catalog ``A100-SXM4-80GB`` (the source names no variant; the data marks it assumed), one
    DGX A100 node (8 GPUs, NVSwitch 300 GB/s per direction, links copied from
    ``instances/selene-a100.yaml``); the replica takes TP x PP GPUs of it.
Workload
    ``prompt_tokens`` = input_len, ``output_tokens`` = output_len, ``batch_size`` = batch;
    ``precision`` = ``kv_cache_precision`` = fp16 (as stated); fused (flash) attention
    (TensorRT-LLM's context FMHA); no SLOs.  ``gpu_memory_utilization`` = 1.0
    (``TRTLLM_MEMORY_UTILIZATION``): gptSessionBenchmark's contiguous (non-paged) KV cache is
    allocated for exactly batch x (input + output) tokens, and TensorRT-LLM's memory fraction
    (``kv_cache_free_gpu_mem_fraction``, default 0.9) sizes only its paged KV cache; the
    summary also counts the cases infeasible under vLLM's default 0.9, as a sensitivity.
    ``max_num_batched_tokens`` unset: the whole batch's prompts in one forward (the context
    phase of a static batch; TensorRT-LLM's ``max_num_tokens`` = max batch x max input length
    for such an engine).
Plan
    one replica group of one replica, batch as published, one micro-batch, Megatron's even
    layer split over PP (PP = 1 in every case), devices from ``build_stages``.

Usage::

    python benchmarks/validate_inference.py               # table + results/validate_inference.json
    python benchmarks/validate_inference.py --out other.json

Always exits 0: it is a measuring instrument, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import published_runs as pr  # noqa: E402

import solver  # noqa: E402
from solver.construction import build_stages, split_layers  # noqa: E402
from solver.evaluate import evaluate  # noqa: E402
from solver.specs import (  # noqa: E402
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
)

DATA_FILE = "published-inference.json"
#: The cluster template the node's links are copied from (see the module docstring).
A100_TEMPLATE = "selene-a100"
GPU_NAME = "A100-SXM4-80GB"
GPUS_PER_NODE = 8
#: gpu_memory_utilization of every case (TensorRT-LLM static batching reserves no fraction:
#: see the module docstring), and the vLLM default the summary's sensitivity count uses.
TRTLLM_MEMORY_UTILIZATION = 1.0
VLLM_MEMORY_UTILIZATION = 0.9
#: Metrics compared: (published key, report key, label).
METRICS = (
    ("throughput_tok_s_per_gpu", "throughput_per_gpu", "tok/s/GPU"),
    ("ttft_ms", "ttft_ms", "TTFT ms"),
)


def shared_dir() -> Path:
    """shared/ holding ``data/DATA_FILE`` (:func:`published_runs.shared_dir`)."""
    return pr.shared_dir(DATA_FILE)


def build_model(name: str, shape: dict[str, Any]) -> Model:
    """``model_shapes[name]`` as a Model (RoPE: no learned position table)."""
    keys = (
        "num_layers",
        "hidden_size",
        "ffn_hidden_size",
        "num_attention_heads",
        "num_kv_heads",
        "vocab_size",
        "mlp",
        "tied_embeddings",
        "num_experts",
        "experts_per_token",
        "moe_ffn_hidden_size",
    )
    doc = {k: shape[k] for k in keys if k in shape}
    return Model(name=name, learned_position_embeddings=False, **doc)


def build_cluster() -> Cluster:
    """One DGX A100 node with the Selene template's links."""
    tpl = solver.load_cluster(A100_TEMPLATE).pools[0]
    return Cluster(
        name="dgx-a100-node",
        pools=[
            Pool(
                name="a100",
                gpu=GPU_NAME,
                nodes=1,
                gpus_per_node=GPUS_PER_NODE,
                intra_node=tpl.intra_node,
                nvlink_domain_nodes=1,
                nic=tpl.nic,
            )
        ],
    )


def build_workload(case: dict[str, Any], utilization: float) -> InferenceWorkload:
    return InferenceWorkload(
        kind="inference",
        prompt_tokens=case["input_len"],
        output_tokens=case["output_len"],
        batch_size=case["batch_size"],
        precision=case["precision"],
        kv_cache_precision=case["kv_precision"],
        attention="flash",
        gpu_memory_utilization=utilization,
    )


def build_plan(cluster: Cluster, model: Model, case: dict[str, Any]) -> Plan:
    tp, pp = int(case["tp"]), int(case["pp"])
    layers = split_layers(model.num_layers, pp)
    stages = build_stages(cluster, [(1, [("a100", tp, n) for n in layers])])[0]
    return Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=1, batch_size=case["batch_size"], num_micro_batches=1, stages=stages)
        ],
    )


def predict(
    case: dict[str, Any], shapes: dict[str, Any], cluster: Cluster, utilization: float
) -> dict[str, Any]:
    """One case rebuilt and scored: published, predicted, error per metric, feasibility."""
    model = build_model(case["model"], shapes[case["model"]])
    plan = build_plan(cluster, model, case)
    rep = evaluate(model, cluster, build_workload(case, utilization), plan).to_dict()
    at_vllm = evaluate(model, cluster, build_workload(case, VLLM_MEMORY_UTILIZATION), plan)
    gpus = int(case["tp"]) * int(case["pp"])
    predicted = {
        "throughput_per_gpu": (rep["tokens_per_s"] or 0.0) / gpus,
        "ttft_ms": rep["ttft_ms"],
        "tpot_ms": rep["tpot_ms"],
    }
    row: dict[str, Any] = {
        "id": case["id"],
        "model": case["model"],
        "tp": case["tp"],
        "pp": case["pp"],
        "batch": case["batch_size"],
        "input_len": case["input_len"],
        "output_len": case["output_len"],
        "feasible": bool(rep["feasible"]),
        "violations": rep["violations"],
        "feasible_at_vllm_default": bool(at_vllm.feasible),
        "predicted": predicted,
        "published": {},
        "error": {},
        "peak_memory_GB_per_gpu": rep["peak_memory_GB_per_gpu"],
    }
    ledger = rep["memory_ledger"]
    if ledger:
        first = ledger[0]
        for k in ("weights_GB", "activations_GB", "kv_cache_GB", "overhead_GB", "total_GB"):
            row[k] = first.get(k)
        for k in ("kv_pool_GB", "max_concurrent_sequences", "usable_GB"):
            if k in first:
                row[k] = first[k]
    for pub_key, pred_key, _ in METRICS:
        if pub_key in case["measured"]:
            pub = float(case["measured"][pub_key])
            row["published"][pred_key] = pub
            row["error"][pred_key] = predicted[pred_key] / pub - 1.0
    rep_v = (case.get("replicate") or {}).get("throughput_tok_s_per_gpu")
    if rep_v is not None and "throughput_tok_s_per_gpu" in case["measured"]:
        # Software-version spread: v0.8.0 vs v0.9.0 on the same configuration.
        row["replicate_spread"] = (
            float(rep_v) / float(case["measured"]["throughput_tok_s_per_gpu"]) - 1
        )
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"cases": len(rows)}
    for _, key, _ in METRICS:
        errs = [abs(r["error"][key]) for r in rows if key in r["error"]]
        if errs:
            out[f"{key}_n"] = len(errs)
            out[f"{key}_mean_abs_error"] = sum(errs) / len(errs)
            out[f"{key}_max_abs_error"] = max(errs)
    spread = [abs(r["replicate_spread"]) for r in rows if "replicate_spread" in r]
    if spread:
        out["replicate_spread_mean_abs"] = sum(spread) / len(spread)
    bad = [r["id"] for r in rows if not r["feasible"]]
    out["infeasible"] = len(bad)
    out["infeasible_ids"] = bad
    out["infeasible_at_vllm_default"] = sum(not r["feasible_at_vllm_default"] for r in rows)
    return out


def table(rows: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    head = (
        f"{'case':50s} {'B':>5s} {'in':>5s} {'out':>5s} {'metric':>9s} {'pub':>8s} "
        f"{'pred':>8s} {'err':>8s} {'TPOT':>7s} {'mem GB':>7s} {'maxseq':>7s} fits"
    )
    lines = [head]
    for r in rows:
        key = next(iter(r["published"]), None)
        label = {k: lbl for _, k, lbl in METRICS}.get(key or "", "-")
        pub = r["published"].get(key, float("nan")) if key else float("nan")
        pred = r["predicted"].get(key, float("nan")) if key else float("nan")
        err = r["error"].get(key) if key else None
        conc = r.get("max_concurrent_sequences")
        lines.append(
            f"{r['id'][6:56]:50s} {r['batch']:5d} {r['input_len']:5d} {r['output_len']:5d} "
            f"{label:>9s} {pub:8.1f} {pred:8.1f} "
            f"{(f'{100 * err:+7.1f}%' if err is not None else '-'):>8s} "
            f"{r['predicted']['tpot_ms']:7.2f} {r['peak_memory_GB_per_gpu'] or 0:7.1f} "
            f"{(f'{conc:7.1f}' if conc is not None else '      -')} "
            f"{'yes' if r['feasible'] else 'NO'}"
        )
    lines.append("")
    for _, key, label in METRICS:
        if f"{key}_n" in summ:
            lines.append(
                f"{label}: mean |error| {100 * summ[f'{key}_mean_abs_error']:.1f}%  "
                f"max {100 * summ[f'{key}_max_abs_error']:.1f}%  (n = {summ[f'{key}_n']})"
            )
    if "replicate_spread_mean_abs" in summ:
        lines.append(
            "software-version spread (v0.8.0 vs v0.9.0, same configuration): mean |diff| "
            f"{100 * summ['replicate_spread_mean_abs']:.1f}%"
        )
    lines.append(
        f"published configurations reported infeasible: {summ['infeasible']} of {len(rows)} "
        f"(gpu_memory_utilization {summ['gpu_memory_utilization']:g}); at vLLM's default "
        f"{VLLM_MEMORY_UTILIZATION:g}: {summ['infeasible_at_vllm_default']}"
    )
    for r in rows:
        if not r["feasible"]:
            lines.append(f"  {r['id']}: {'; '.join(r['violations'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "validate_inference.json")
    )
    ap.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=TRTLLM_MEMORY_UTILIZATION,
        help="the workload's gpu_memory_utilization for every case (default 1.0, see the rules)",
    )
    args = ap.parse_args(argv)
    data = json.loads((shared_dir() / "data" / DATA_FILE).read_text())
    cluster = build_cluster()
    util = args.gpu_memory_utilization
    rows = [predict(c, data["model_shapes"], cluster, util) for c in data["cases"]]
    summ = summary(rows)
    summ["gpu_memory_utilization"] = util
    print(table(rows, summ))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": data["title"], "summary": summ, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
