"""Predicted vs published LLM serving measurements (published-inference.json).

Every case of ``shared/data/published-inference.json`` (TensorRT-LLM 0.9.0 on A100, FP16,
static batching: ``gptSessionBenchmark``; read its ``schema`` and ``sources``) is rebuilt
from its published configuration -- model, cluster, inference workload, plan (the published
TP / PP / batch) -- and scored by the evaluator (``solver.evaluate``).  Compared where the
source publishes them:

* throughput per GPU: ``output_len x batch / total latency / TP`` (the source's ``out_tps``)
  against the evaluator's ``tokens_per_s / (tp x pp)`` (its static-batching request latency
  TTFT + output x TPOT is the same "total latency");
* first-token latency (TTFT) at batch 1, output length 1, against the evaluator's ``ttft_ms``;
* TPOT where the set lets it be derived: the four decode-dominated rows (128-token prompts,
  2,048 output tokens), whose total latency / output length is the mean time per output
  token plus a prefill share under 3% (a 128-token prompt's prefill against 2,048 decode
  steps), against the evaluator's ``tpot_ms``.  The source publishes no TPOT as such.

Each case is predicted twice: with the ``trtllm-0.9`` serving-engine profile (TensorRT-LLM 0.9
as gptSessionBenchmark ran it: static batching, no CUDA graphs, custom all-reduce, masked-MHA /
precompiled-XQA decode attention; :data:`solver.costmodel.engine_profiles.TRTLLM_SESSION_09`)
and with the ``roofline``
profile (the cost model before issue 16 item 1), printed side by side per metric.

Physical bound: a decode step reads every weight it uses at least once from HBM, so a static
batch of B sequences generates at most ``B / (weight bytes per GPU / peak HBM bandwidth)``
tokens/s per replica (MoE: the experts a batch of B top-k tokens touches, all of them once
B k >> experts).  A published throughput above that bound (``bound_tok_s_per_gpu``) is
flagged ``above physical bound``: no cost model can match it honestly.

Physical floor of a first-token latency: a batch-1 prefill reads every weight it uses once
(at peak HBM bandwidth) and executes its forward FLOPs (at the dense tensor peak), so it takes
at least ``max(weight bytes / peak bandwidth, FLOPs / peak)`` (``ttft_floor_ms``; MoE: the
experts its tokens touch).  A published TTFT below it is flagged ``below physical floor``; the
ratio shows how close to the hardware a row ran (A100 Mixtral at 128 tokens: 0.96 of it).

Where the time goes (``time_split``, printed for the ``trtllm-0.9`` profile): the request's
prefill, its decode steps (output x step), the TP all-reduces inside both, and the engine's
host time per step (``step_host_us`` x (1 + output)), in ms -- to tell which term a row's
error lives in.

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
from solver.catalog import gpu_of  # noqa: E402
from solver.construction import build_stages, split_layers  # noqa: E402
from solver.costmodel.compute import peak_tflops  # noqa: E402
from solver.costmodel.engine_profiles import ENGINES, resolve  # noqa: E402
from solver.costmodel.quant import weight_bytes_per_element  # noqa: E402
from solver.costmodel.serving_compute import prefill_block_time  # noqa: E402
from solver.costmodel.serving_engine import step_overhead_s  # noqa: E402
from solver.costmodel.serving_memory import stage_weight_bytes  # noqa: E402
from solver.errors import SpecError  # noqa: E402
from solver.evaluate import evaluate, tp_link  # noqa: E402
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
#: The serving-engine profile the published set ran on (TensorRT-LLM 0.9 gptSessionBenchmark:
#: the 0.9 session runtime, ``engine_profiles.TRTLLM_SESSION_09``) and the pure roofline it is
#: compared with.
ENGINE = "trtllm-0.9"
BASELINE = "roofline"
PROFILES = (BASELINE, ENGINE)
#: Rows whose total latency / output length approximates TPOT: 128-token prompts, 2,048
#: output tokens (see the module docstring).
TPOT_INPUT_LEN, TPOT_OUTPUT_LEN = 128, 2048
#: Where the derived TPOT is stored among the published metrics.
TPOT_KEY = "tpot_ms"


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


def with_engine(work: InferenceWorkload, engine: str) -> InferenceWorkload:
    """``work`` priced by the serving-engine profile ``engine`` (a name of
    ``engine_profiles.ENGINES``, versioned ones such as ``trtllm-0.9`` included)."""
    if engine not in ("auto", *ENGINES):
        raise SpecError(f"engine: one of auto, {', '.join(ENGINES)}, got {engine!r}")
    return InferenceWorkload.model_validate({**work.model_dump(), "serving_engine": engine})


def build_workload(
    case: dict[str, Any], utilization: float, engine: str = ENGINE
) -> InferenceWorkload:
    work = InferenceWorkload(
        kind="inference",
        prompt_tokens=case["input_len"],
        output_tokens=case["output_len"],
        batch_size=case["batch_size"],
        precision=case["precision"],
        kv_cache_precision=case["kv_precision"],
        attention="flash",
        gpu_memory_utilization=utilization,
    )
    return with_engine(work, engine)


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


def throughput_bound(case: dict[str, Any], model: Model, cluster: Cluster) -> float:
    """Upper bound on tokens/s per GPU of a static batch: one read of the weights a decode
    step uses per step at peak HBM bandwidth, nothing else (module docstring)."""
    tp, batch = int(case["tp"]), int(case["batch_size"])
    w = _touched_weight_bytes(case, model, batch)  # a decode step: one token per sequence
    bw = gpu_of(cluster.pools[0]).memory_bandwidth_GBps * 1e9
    return batch / (w / bw) / (tp * int(case["pp"]))


def _touched_weight_bytes(case: dict[str, Any], model: Model, tokens: int) -> float:
    """Weight bytes on one GPU a forward of ``tokens`` tokens reads at the case's precision:
    all of them for a dense model, the experts its tokens touch for an MoE."""
    tp = int(case["tp"])
    w = stage_weight_bytes(
        model,
        layers=model.num_layers,
        first=True,
        last=True,
        tp=tp,
        context_tokens=case["input_len"] + case["output_len"],
        precision=case["precision"],
    )
    if model.num_experts and model.experts_per_token:
        e, k = model.num_experts, model.experts_per_token
        touched = e * (1.0 - (1.0 - k / e) ** tokens)  # experts the tokens touch (uniform routing)
        f = (model.moe_ffn_hidden_size or model.ffn_hidden_size) / tp
        n_mat = 3 if model.mlp == "swiglu" else 2
        width = weight_bytes_per_element(case["precision"])
        w -= (e - touched) * n_mat * model.hidden_size * f * width * model.num_layers
    return w


def ttft_floor_ms(case: dict[str, Any], model: Model, cluster: Cluster) -> float:
    """Lower bound on a batch-1 first-token latency: ``max(weights read / peak HBM bandwidth,
    forward FLOPs / dense tensor peak)`` on one GPU of the TP group (module docstring)."""
    pool = cluster.pools[0]
    gpu = gpu_of(pool)
    tokens = int(case["batch_size"]) * int(case["input_len"])
    block = prefill_block_time(
        model,
        gpu,
        tp=int(case["tp"]),
        batch=int(case["batch_size"]),
        prompt=int(case["input_len"]),
        precision=case["precision"],
        tp_link=tp_link(pool),
    )
    flops = block.flops_fwd * model.num_layers
    mem_s = _touched_weight_bytes(case, model, tokens) / (gpu.memory_bandwidth_GBps * 1e9)
    compute_s = flops / (peak_tflops(gpu, case["precision"]) * 1e12)
    return 1e3 * max(mem_s, compute_s)


def time_split(rep: dict[str, Any], case: dict[str, Any], engine: str) -> dict[str, float]:
    """Where a request's latency goes, ms (module docstring): prefill, decode (output x step),
    the TP all-reduces inside both, and the engine's host time per step."""
    stage = rep["time_breakdown"][0]  # every case is one stage (PP = 1)
    out = int(case["output_len"])
    return {
        "prefill_ms": 1e3 * stage["prefill_s"],
        "decode_ms": 1e3 * out * stage["decode_step_s"],
        "tp_comm_ms": 1e3 * stage["tp_comm_s"],
        "host_ms": 1e3 * (1 + out) * step_overhead_s(resolve(engine)),
    }


def predict(
    case: dict[str, Any],
    shapes: dict[str, Any],
    cluster: Cluster,
    utilization: float,
    engine: str = ENGINE,
) -> dict[str, Any]:
    """One case rebuilt and scored with serving-engine profile ``engine``: published,
    predicted, error per metric, feasibility."""
    model = build_model(case["model"], shapes[case["model"]])
    plan = build_plan(cluster, model, case)
    rep = evaluate(model, cluster, build_workload(case, utilization, engine), plan).to_dict()
    at_vllm = evaluate(model, cluster, build_workload(case, VLLM_MEMORY_UTILIZATION, engine), plan)
    gpus = int(case["tp"]) * int(case["pp"])
    predicted = {
        "throughput_per_gpu": (rep["tokens_per_s"] or 0.0) / gpus,
        "ttft_ms": rep["ttft_ms"],
        "tpot_ms": rep["tpot_ms"],
    }
    row: dict[str, Any] = {
        "id": case["id"],
        "engine": engine,
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
    row["time_split"] = time_split(rep, case, engine)
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
    if "ttft_ms" in case["measured"]:
        floor = ttft_floor_ms(case, model, cluster)
        row["ttft_floor_ms"] = floor
        row["below_physical_floor"] = float(case["measured"]["ttft_ms"]) < floor
    if "throughput_tok_s_per_gpu" in case["measured"]:
        bound = throughput_bound(case, model, cluster)
        row["bound_tok_s_per_gpu"] = bound
        row["above_physical_bound"] = float(case["measured"]["throughput_tok_s_per_gpu"]) > bound
        if case["input_len"] == TPOT_INPUT_LEN and case["output_len"] == TPOT_OUTPUT_LEN:
            # total latency / output tokens (module docstring): batch / (tok/s/GPU x GPUs)
            pub_tps = float(case["measured"]["throughput_tok_s_per_gpu"])
            gpus_ = int(case["tp"]) * int(case["pp"])
            row["published"][TPOT_KEY] = 1e3 * case["batch_size"] / (pub_tps * gpus_)
            row["error"][TPOT_KEY] = predicted["tpot_ms"] / row["published"][TPOT_KEY] - 1.0
    rep_v = (case.get("replicate") or {}).get("throughput_tok_s_per_gpu")
    if rep_v is not None and "throughput_tok_s_per_gpu" in case["measured"]:
        # Software-version spread: v0.8.0 vs v0.9.0 on the same configuration.
        row["replicate_spread"] = (
            float(rep_v) / float(case["measured"]["throughput_tok_s_per_gpu"]) - 1
        )
    return row


#: Every compared metric: (report key, label); TPOT only on the decode-dominated rows.
ALL_METRICS = (*((k, lbl) for _, k, lbl in METRICS), (TPOT_KEY, "TPOT ms"))


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / max |error| per metric, the same without the rows above the physical bound,
    and the feasibility counts."""
    out: dict[str, Any] = {"cases": len(rows)}
    for key, _ in ALL_METRICS:
        for suffix, keep in (
            ("", rows),
            ("_within_bound", [r for r in rows if not r.get("above_physical_bound")]),
        ):
            errs = [abs(r["error"][key]) for r in keep if key in r["error"]]
            if errs:
                out[f"{key}{suffix}_n"] = len(errs)
                out[f"{key}{suffix}_mean_abs_error"] = sum(errs) / len(errs)
                out[f"{key}{suffix}_max_abs_error"] = max(errs)
    spread = [abs(r["replicate_spread"]) for r in rows if "replicate_spread" in r]
    if spread:
        out["replicate_spread_mean_abs"] = sum(spread) / len(spread)
    bad = [r["id"] for r in rows if not r["feasible"]]
    out["infeasible"] = len(bad)
    out["infeasible_ids"] = bad
    out["infeasible_at_vllm_default"] = sum(not r["feasible_at_vllm_default"] for r in rows)
    out["above_physical_bound"] = [r["id"] for r in rows if r.get("above_physical_bound")]
    out["below_physical_floor"] = [r["id"] for r in rows if r.get("below_physical_floor")]
    return out


def _pct(err: float | None) -> str:
    return f"{100 * err:+7.1f}%" if err is not None else "       -"


def metric_table(by_engine: dict[str, list[dict[str, Any]]], key: str, label: str) -> str:
    """One metric, every case that publishes it: published, then per profile predicted and
    error."""
    names = list(by_engine)
    head = f"{label + ': case':52s} {'B':>5s} {'in':>5s} {'out':>5s} {'pub':>9s}"
    head += "".join(f" {n + ' pred':>14s} {'err':>8s}" for n in names)
    lines = [head]
    for i, r0 in enumerate(by_engine[names[0]]):
        if key not in r0["published"]:
            continue
        line = (
            f"{r0['id'][6:58]:52s} {r0['batch']:5d} {r0['input_len']:5d} {r0['output_len']:5d} "
            f"{r0['published'][key]:9.2f}"
        )
        for n in names:
            r = by_engine[n][i]
            line += f" {r['predicted'][key]:14.2f} {_pct(r['error'].get(key))}"
        if r0.get("above_physical_bound") and key != "ttft_ms":
            line += f"  above physical bound ({r0['bound_tok_s_per_gpu']:.0f} tok/s/GPU)"
        if key == "ttft_ms" and "ttft_floor_ms" in r0:
            ratio = r0["ttft_floor_ms"] / r0["published"][key]
            flag = "below physical floor" if r0["below_physical_floor"] else "floor"
            line += f"  {flag} {r0['ttft_floor_ms']:.1f} ms ({ratio:.2f} of published)"
        lines.append(line)
    return "\n".join(lines)


def summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Mean / max |error| per metric per profile (all rows, and rows within the bound)."""
    lines = [f"{'metric':34s}" + "".join(f" {n:>22s}" for n in summaries)]
    for key, label in ALL_METRICS:
        for suffix, what in (("", "all rows"), ("_within_bound", "within physical bound")):
            cells = []
            for summ in summaries.values():
                if f"{key}{suffix}_n" not in summ:
                    cells.append(f" {'-':>22s}")
                    continue
                cells.append(
                    f" {100 * summ[f'{key}{suffix}_mean_abs_error']:8.1f}% / "
                    f"{100 * summ[f'{key}{suffix}_max_abs_error']:5.1f}% n{summ[f'{key}{suffix}_n']:<2d}"
                )
            lines.append(f"{label + ' (' + what + ')':34s}" + "".join(cells))
    return "mean / max |error|\n" + "\n".join(lines)


def table(rows: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    """The per-case table of one profile (memory ledger columns included)."""
    head = (
        f"{'case':50s} {'B':>5s} {'in':>5s} {'out':>5s} {'metric':>9s} {'pub':>8s} "
        f"{'pred':>8s} {'err':>8s} {'TPOT':>7s} {'mem GB':>7s} {'maxseq':>7s} fits"
    )
    lines = [head]
    for r in rows:
        key = next(iter(r["published"]), None)
        label = {k: lbl for k, lbl in ALL_METRICS}.get(key or "", "-")
        pub = r["published"].get(key, float("nan")) if key else float("nan")
        pred = r["predicted"].get(key, float("nan")) if key else float("nan")
        err = r["error"].get(key) if key else None
        conc = r.get("max_concurrent_sequences")
        lines.append(
            f"{r['id'][6:56]:50s} {r['batch']:5d} {r['input_len']:5d} {r['output_len']:5d} "
            f"{label:>9s} {pub:8.1f} {pred:8.1f} {_pct(err):>8s} "
            f"{r['predicted']['tpot_ms']:7.2f} {r['peak_memory_GB_per_gpu'] or 0:7.1f} "
            f"{(f'{conc:7.1f}' if conc is not None else '      -')} "
            f"{'yes' if r['feasible'] else 'NO'}"
        )
    lines.append("")
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


def split_table(rows: list[dict[str, Any]]) -> str:
    """Where each case's predicted request latency goes (``time_split``), with its errors."""
    head = (
        f"{'where the time goes: case':52s} {'prefill':>9s} {'decode':>9s} {'TP comm':>8s} "
        f"{'host':>7s}  errors"
    )
    lines = [head]
    for r in rows:
        t = r["time_split"]
        total = t["prefill_ms"] + t["decode_ms"]
        errs = " ".join(f"{k} {_pct(e).strip()}" for k, e in r["error"].items())
        lines.append(
            f"{r['id'][6:58]:52s} {t['prefill_ms']:9.1f} {t['decode_ms']:9.1f} "
            f"{100 * t['tp_comm_ms'] / total:7.1f}% {100 * t['host_ms'] / total:6.1f}%  {errs}"
        )
    return "\n".join(lines) + "\n(ms of one request; TP comm and host as shares of it)"


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
    by_engine = {
        e: [predict(c, data["model_shapes"], cluster, util, e) for c in data["cases"]]
        for e in PROFILES
    }
    summaries = {
        e: summary(rows) | {"gpu_memory_utilization": util} for e, rows in by_engine.items()
    }
    print(f"serving-engine profile {ENGINE!r} (per case, memory ledger):")
    print(table(by_engine[ENGINE], summaries[ENGINE]))
    for key, label in ALL_METRICS:
        print()
        print(metric_table(by_engine, key, label))
    print()
    print(split_table(by_engine[ENGINE]))
    print()
    print(summary_table(summaries))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "source": data["title"],
        "engine": ENGINE,
        "summary": summaries[ENGINE],
        "summary_by_engine": summaries,
        "rows": by_engine[ENGINE],
        "rows_by_engine": by_engine,
    }
    out.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
