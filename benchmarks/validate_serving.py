"""Predicted vs published serving measurements (benchmarks/data/published-serving.json).

Two kinds of case (read the data file's ``schema`` and ``sources``):

* ``static_batch`` -- TensorRT-LLM 0.9.0 gptSessionBenchmark on H100 / H200 (FP8): one batch of
  identical requests, scored by the evaluator exactly as ``validate_inference.py`` scores the
  A100 cases of ``shared/data/published-inference.json`` (its workload builder and memory rule
  are imported, not copied): throughput per GPU and batch-1 first-token latency.
* ``request_rate`` -- a stream of requests served by continuous batching (TensorRT-LLM 0.17,
  0.21 and 1.0 trtllm-bench max throughput -- the last two on its PyTorch backend, priced by
  the ``trtllm`` profile --, TensorRT-LLM 0.14 Triton online serving, SGLang 0.3.0 and
  vLLM 0.6.0 ``bench_serving`` on ShareGPT), replayed by the serving simulator
  (:func:`solver.serving.simulate` on :func:`solver.serving.generate_requests`): throughput,
  TTFT, TPOT / ITL and end-to-end latency at the percentiles the source publishes.

error = predicted / published - 1, per metric; the summary gives mean and max |error| per
metric, per metric group (throughput, TTFT, TPOT/ITL, E2E) and per source, counts the
published configurations reported infeasible (goal 0), and for every TP sweep (same source,
model, GPU, precision, lengths and rate at several TP degrees) the fraction of TP pairs whose
per-GPU throughput is ordered as published, and whether the best TP is picked.

Mapping rules -- ONE global rule per unstated detail, never a per-row choice:

Cluster
    one 8-GPU node of the case's GPU with the links of ``instances/hetero-4096-4type.yaml``
    (NVLink 4 450 GB/s per direction on H100 / H200, NVLink 3 300 GB/s on A100); the replica
    takes TP x PP GPUs of it.
Model
    ``models/<case.model>.yaml`` (Llama 3.1 has Llama 3's shape).
Requests (request_rate)
    ``num_prompts`` requests, Poisson at ``request_rate`` (``inf``: all at t = 0), seed 0;
    lengths ``fixed`` as published, or for ``sharegpt`` log-normal with the recorded mean and
    sigma, clipped to the recorded maxima (ShareGPT's sampler drops prompts > 1024 tokens and
    prompt + output > 2048).  The workload's ``prompt_tokens`` / ``output_tokens`` are the
    rounded means (they size only the evaluator's static view; the simulator uses each
    request's own lengths).
Engine limits
    ``max_num_seqs`` and ``max_num_batched_tokens`` as recorded (the data marks assumed ones);
    memory: vLLM's ``gpu_memory_utilization`` and SGLang's ``mem_fraction_static`` are
    fractions of the whole GPU, as shardwise's is; TensorRT-LLM's
    ``kv_cache_free_gpu_mem_fraction`` f is a fraction of the memory *left after the weights*
    W, so it maps to ``(W + f (M - W)) / M`` of capacity M (:func:`trtllm_utilization`).
Engine step model
    the case's engine is passed to the workload's ``serving_engine`` (the engine-step model of
    ``solver/costmodel/serving_engine.py``), by name and version (TensorRT-LLM 0.9 ->
    ``trtllm-0.9``, vLLM 0.6 -> ``vllm-0.6``, SGLang 0.3 -> ``sglang-0.3``: ``engine_key``),
    and a case's ``num_scheduler_steps`` (vLLM multi-step) to the simulator.

Usage::

    python benchmarks/validate_serving.py                 # all cases, ~minutes on 2 cores
    python benchmarks/validate_serving.py --max-prompts 2000 --source sglang-v0.3.0-vs-vllm-v0.6.0

Always exits 0: it is a measuring instrument, not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate_inference as vi  # noqa: E402

import solver  # noqa: E402
from solver.catalog import gpu_of  # noqa: E402
from solver.construction import build_stages, split_layers  # noqa: E402
from solver.costmodel import constants as C  # noqa: E402
from solver.costmodel.serving_memory import stage_weight_bytes  # noqa: E402
from solver.errors import SpecError  # noqa: E402
from solver.evaluate import evaluate  # noqa: E402
from solver.serving import Lengths, generate_requests, simulate  # noqa: E402
from solver.specs import (  # noqa: E402
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
)

DATA_FILE = REPO / "benchmarks" / "data" / "published-serving.json"
#: Cluster template whose pools give each GPU's node links (see the module docstring).
LINK_TEMPLATE = "hetero-4096-4type"
GPUS_PER_NODE = 8
POOL = "gpus"
#: Requests are generated with this seed for every case (one global choice).
SEED = 0
#: Engine name prefix -> the ``serving_engine`` value of the engine-step model (older versions:
#: :data:`CURRENT_FROM`, :func:`engine_key`).
ENGINE_KEYS = (("TensorRT-LLM", "trtllm"), ("SGLang", "sglang"), ("vLLM", "vllm"))
#: First version of each engine priced by its current profile; older versions get the
#: versioned one (``serving_engine``): TensorRT-LLM before 0.11 (the XQA JIT path; GptSession
#: deprecated in 0.10, release notes) -> ``trtllm-0.9``; vLLM before 0.8 (V1 the default
#: engine from 0.8.0) -> ``vllm-0.6``; SGLang before 0.4 (the overlap scheduler the default
#: from 0.4, sgl-project/sglang PR #2067) -> ``sglang-0.3``.
CURRENT_FROM: dict[str, tuple[tuple[int, int], str]] = {
    "trtllm": ((0, 11), "trtllm-0.9"),
    "vllm": ((0, 8), "vllm-0.6"),
    "sglang": ((0, 4), "sglang-0.3"),
}
#: Published metric -> (group, label).  Groups are what the issue's done-when scores.
METRICS: dict[str, tuple[str, str]] = {
    "throughput_tok_s_per_gpu": ("throughput", "out tok/s/GPU"),
    "output_throughput_tok_s": ("throughput", "out tok/s"),
    "request_throughput_req_s": ("throughput", "req/s"),
    "total_token_throughput_tok_s": ("throughput", "tot tok/s"),
    "ttft_ms": ("ttft", "TTFT ms"),
    "ttft_ms_mean": ("ttft", "TTFT mean"),
    "ttft_ms_p50": ("ttft", "TTFT p50"),
    "ttft_ms_p99": ("ttft", "TTFT p99"),
    "tpot_ms_p50": ("tpot_itl", "TPOT p50"),
    "tpot_ms_p99": ("tpot_itl", "TPOT p99"),
    "itl_ms_mean": ("tpot_itl", "ITL mean"),
    "itl_ms_p50": ("tpot_itl", "ITL p50"),
    "itl_ms_p99": ("tpot_itl", "ITL p99"),
    "e2e_ms_p50": ("e2e", "E2E p50"),
}


# --- specs ------------------------------------------------------------------------------------
def build_cluster(gpu: str) -> Cluster:
    """One 8-GPU node of ``gpu`` with the template pool's links for that GPU."""
    pools = [p for p in solver.load_cluster(LINK_TEMPLATE).pools if p.gpu == gpu]
    if not pools:
        raise SpecError(f"gpu: no pool of {gpu!r} in instances/{LINK_TEMPLATE}.yaml")
    tpl = pools[0]
    return Cluster(
        name=f"node-{gpu}",
        pools=[
            Pool(
                name=POOL,
                gpu=gpu,
                nodes=1,
                gpus_per_node=GPUS_PER_NODE,
                intra_node=tpl.intra_node,
                nvlink_domain_nodes=1,
                nic=tpl.nic,
            )
        ],
    )


def build_plan(cluster: Cluster, model: Model, tp: int, pp: int, batch: int) -> Plan:
    """One replica of TP x PP with Megatron's even layer split, ``batch`` sequences."""
    layers = split_layers(model.num_layers, pp)
    stages = build_stages(cluster, [(1, [(POOL, tp, n) for n in layers])])[0]
    return Plan(
        kind="inference",
        replica_groups=[
            ReplicaGroup(count=1, batch_size=batch, num_micro_batches=1, stages=stages)
        ],
    )


def engine_key(engine: str) -> str:
    """The ``serving_engine`` profile of a case's engine string by name and version
    ('TensorRT-LLM 0.9.0' -> 'trtllm-0.9', 0.11 and later -> 'trtllm'; 'vLLM 0.6.0 ...' ->
    'vllm-0.6'; 'SGLang 0.3.0' -> 'sglang-0.3'; :data:`CURRENT_FROM`)."""
    for prefix, key in ENGINE_KEYS:
        if engine.startswith(prefix):
            words = engine[len(prefix) :].split()
            parts = words[0].split(".")[:2] if words else []
            if key in CURRENT_FROM and len(parts) == 2 and all(x.isdigit() for x in parts):
                first, older = CURRENT_FROM[key]
                if (int(parts[0]), int(parts[1])) < first:
                    return older
            return key
    raise SpecError(f"engine: unknown serving engine {engine!r}")


def scheduler_steps(case: dict[str, Any]) -> dict[str, int]:
    """Keyword arguments for :func:`solver.serving.simulate` that run the case's
    ``num_scheduler_steps`` (vLLM 0.5.5-0.7 multi-step scheduling, recorded in the data)."""
    k = int(case.get("num_scheduler_steps", 1))
    return {"num_scheduler_steps": k} if k != 1 else {}


def lengths(case: dict[str, Any]) -> tuple[Lengths, Lengths, float, float]:
    """Prompt and output length distributions of a request-rate case, and their means."""
    ds = case["dataset"]
    if ds["kind"] == "fixed":
        n_in, n_out = int(ds["input_len"]), int(ds["output_len"])
        fixed_in, fixed_out = Lengths.fixed(n_in, "input_len"), Lengths.fixed(n_out, "output_len")
        return fixed_in, fixed_out, float(n_in), float(n_out)
    if ds["kind"] == "sharegpt":
        sigma = float(ds["sigma"])
        log_in = Lengths.lognormal(ds["input_mean"], sigma, int(ds["input_max"]), "input")
        log_out = Lengths.lognormal(ds["output_mean"], sigma, int(ds["output_max"]), "output")
        return log_in, log_out, float(ds["input_mean"]), float(ds["output_mean"])
    raise SpecError(f"dataset.kind: must be fixed or sharegpt, got {ds['kind']!r}")


def trtllm_utilization(
    model: Model, cluster: Cluster, case: dict[str, Any], free_fraction: float, context: int
) -> float:
    """TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction`` f (of the memory left after the
    weights W) as a fraction of the whole GPU: ``(W + f (M - W)) / M``, W of the first stage
    (TensorRT-LLM ``KVCacheManager`` sizes its pool from the free memory after engine load)."""
    pp = int(case["pp"])
    weights = stage_weight_bytes(
        model,
        layers=split_layers(model.num_layers, pp)[0],
        first=True,
        last=pp == 1,
        tp=int(case["tp"]),
        context_tokens=context,
        precision=case["precision"],
    )
    cap = gpu_of(cluster.pools[0]).memory_GB * C.GB
    return min(1.0, (weights + free_fraction * (cap - weights)) / cap)


def serving_workload(
    case: dict[str, Any], model: Model, cluster: Cluster, mean_in: float, mean_out: float
) -> tuple[InferenceWorkload, str]:
    """The inference workload of a request-rate case, and the engine profile it names."""
    util = float(case["gpu_memory_utilization"])
    prompt, output = max(1, round(mean_in)), max(1, round(mean_out))
    if case["engine"].startswith("TensorRT-LLM"):
        util = trtllm_utilization(model, cluster, case, util, prompt + output)
    doc: dict[str, Any] = {
        "kind": "inference",
        "prompt_tokens": prompt,
        "output_tokens": output,
        "batch_size": int(case["max_num_seqs"]),
        "precision": case["precision"],
        "kv_cache_precision": case["kv_precision"],
        "attention": "flash",
        "gpu_memory_utilization": util,
        "max_num_batched_tokens": int(case["max_num_batched_tokens"]),
    }
    engine = engine_key(case["engine"])
    return vi.with_engine(InferenceWorkload(**doc), engine), engine


# --- prediction -------------------------------------------------------------------------------
def _row(case: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "source", "mode", "engine", "gpu", "model", "precision", "tp", "pp")
    return {k: case[k] for k in keys} | {"published": dict(case["measured"]), "error": {}}


def _score(row: dict[str, Any], predicted: dict[str, float]) -> dict[str, Any]:
    row["predicted"] = predicted
    for key, pub in row["published"].items():
        pred = predicted.get(key)
        if pred is not None and math.isfinite(pred) and pub > 0:
            row["error"][key] = pred / float(pub) - 1.0
    return row


def predict_static(case: dict[str, Any], model: Model, cluster: Cluster) -> dict[str, Any]:
    """A static-batch case scored by the evaluator (validate_inference's workload and rule)."""
    row = _row(case) | {
        "batch": case["batch_size"],
        "lengths": [case["input_len"], case["output_len"]],
    }
    plan = build_plan(cluster, model, int(case["tp"]), int(case["pp"]), int(case["batch_size"]))
    row["serving_engine"] = engine_key(case["engine"])
    work = vi.build_workload(case, vi.TRTLLM_MEMORY_UTILIZATION, row["serving_engine"])
    rep = evaluate(model, cluster, work, plan).to_dict()
    gpus = int(case["tp"]) * int(case["pp"])
    row["feasible"] = bool(rep["feasible"])
    row["violations"] = rep["violations"]
    pred = {
        "throughput_tok_s_per_gpu": (rep["tokens_per_s"] or 0.0) / gpus,
        "ttft_ms": rep["ttft_ms"],
        "tpot_ms": rep["tpot_ms"],
    }
    return _score(row, {k: float(v) for k, v in pred.items() if v is not None})


def predict_rate(
    case: dict[str, Any], model: Model, cluster: Cluster, max_prompts: int | None
) -> dict[str, Any]:
    """A request-rate case replayed by the serving simulator."""
    prompt, output, mean_in, mean_out = lengths(case)
    n = int(case["num_prompts"]) if max_prompts is None else min(max_prompts, case["num_prompts"])
    rate = math.inf if case["request_rate"] == "inf" else float(case["request_rate"])
    row = _row(case) | {"request_rate": case["request_rate"], "num_prompts": n}
    row["lengths"] = [
        case["dataset"].get("input_len", mean_in),
        case["dataset"].get("output_len", mean_out),
    ]
    work, engine = serving_workload(case, model, cluster, mean_in, mean_out)
    row["serving_engine"] = engine
    steps = scheduler_steps(case)
    row["num_scheduler_steps"] = int(case.get("num_scheduler_steps", 1))
    row["gpu_memory_utilization_used"] = work.gpu_memory_utilization
    seqs, budget = int(case["max_num_seqs"]), int(case["max_num_batched_tokens"])
    plan = build_plan(cluster, model, int(case["tp"]), int(case["pp"]), seqs)
    reqs = generate_requests(n, rate, prompt, output, seed=SEED)
    try:
        res = simulate(
            model,
            cluster,
            work,
            plan,
            reqs,
            max_num_seqs=seqs,
            max_num_batched_tokens=budget,
            **steps,  # type: ignore[arg-type]
        )
    except SpecError as exc:
        row["feasible"], row["violations"] = False, [str(exc)]
        return _score(row, {})
    row["feasible"], row["violations"] = True, []
    row["kv_capacity_tokens"] = res.groups[0].kv_capacity_tokens
    row["mean_decode_batch"] = res.mean_decode_batch
    pred = {
        "output_throughput_tok_s": res.output_throughput,
        "request_throughput_req_s": res.request_throughput,
        "total_token_throughput_tok_s": res.total_token_throughput,
        "ttft_ms_mean": res.ttft_ms.mean,
        "ttft_ms_p50": res.ttft_ms.p50,
        "ttft_ms_p99": res.ttft_ms.p99,
        "tpot_ms_p50": res.tpot_ms.p50,
        "tpot_ms_p99": res.tpot_ms.p99,
        "itl_ms_mean": res.itl_ms.mean,
        "itl_ms_p50": res.itl_ms.p50,
        "itl_ms_p99": res.itl_ms.p99,
        "e2e_ms_p50": res.e2e_latency_s.p50 * 1000.0,
    }
    return _score(row, pred)


# --- summary ----------------------------------------------------------------------------------
def _stats(errs: list[float]) -> dict[str, float]:
    a = [abs(e) for e in errs]
    return {"n": len(a), "mean_abs_error": sum(a) / len(a), "max_abs_error": max(a)}


def error_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / max |error| per metric, per metric group, and per source x group."""
    by: dict[str, dict[str, list[float]]] = {"metric": {}, "group": {}, "source": {}}
    for r in rows:
        for key, err in r["error"].items():
            group = METRICS[key][0]
            by["metric"].setdefault(key, []).append(err)
            by["group"].setdefault(group, []).append(err)
            by["source"].setdefault(f"{r['source']} / {group}", []).append(err)
    return {kind: {k: _stats(v) for k, v in sorted(d.items())} for kind, d in by.items()}


def _sweep_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["source"],
        r["engine"],
        r["model"],
        r["gpu"],
        r["precision"],
        tuple(r["lengths"]),
        r.get("request_rate"),
        r.get("batch"),
    )


def tp_sweeps(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Every group of cases that differ only in TP: pairwise order of per-GPU ``metric``
    (published vs predicted) and whether the best TP per GPU is picked."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if metric in r["published"] and metric in r.get("predicted", {}) and r["pp"] == 1:
            groups.setdefault(_sweep_key(r), []).append(r)
    out = []
    for key, members in groups.items():
        if len({m["tp"] for m in members}) < 2:
            continue
        pub = {m["tp"]: m["published"][metric] / m["tp"] for m in members}
        pred = {m["tp"]: m["predicted"][metric] / m["tp"] for m in members}
        pairs = list(itertools.combinations(sorted(pub), 2))
        agree = sum((pub[a] - pub[b]) * (pred[a] - pred[b]) > 0 for a, b in pairs)
        out.append(
            {
                "key": [str(k) for k in key],
                "tps": sorted(pub),
                "published_per_gpu": pub,
                "predicted_per_gpu": pred,
                "pairs": len(pairs),
                "pairs_agree": agree,
                "best_tp_published": max(pub, key=pub.__getitem__),
                "best_tp_predicted": max(pred, key=pred.__getitem__),
            }
        )
    return out


def sweep_summary(sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = sum(s["pairs"] for s in sweeps)
    agree = sum(s["pairs_agree"] for s in sweeps)
    best = sum(s["best_tp_published"] == s["best_tp_predicted"] for s in sweeps)
    return {
        "sweeps": len(sweeps),
        "pairs": pairs,
        "pair_order_agreement": agree / pairs if pairs else None,
        "best_tp_picked": best,
    }


# --- output -----------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> Iterable[str]:
    yield f"{'case':62s} {'metric':>13s} {'published':>10s} {'predicted':>10s} {'error':>8s}"
    for r in rows:
        if not r["feasible"]:
            yield f"{r['id'][:62]:62s} INFEASIBLE: {'; '.join(r['violations'])[:120]}"
            continue
        for key in r["published"]:
            err = r["error"].get(key)
            yield (
                f"{r['id'][:62]:62s} {METRICS[key][1]:>13s} {_fmt(r['published'][key]):>10s} "
                f"{_fmt(r['predicted'].get(key)):>10s} "
                f"{(f'{100 * err:+7.1f}%' if err is not None else '-'):>8s}"
            )


def summary_lines(summ: dict[str, Any]) -> Iterable[str]:
    for kind in ("group", "metric", "source"):
        yield f"\nmean / max |error| per {kind}:"
        for k, s in summ["errors"][kind].items():
            yield (
                f"  {k:58s} mean {100 * s['mean_abs_error']:6.1f}%  "
                f"max {100 * s['max_abs_error']:7.1f}%  (n = {s['n']})"
            )
    sw = summ["tp_sweeps"]
    if sw["pairs"]:
        yield (
            f"\nTP sweeps (per-GPU output throughput): {sw['sweeps']} sweeps, {sw['pairs']} pairs, "
            f"order agrees in {100 * sw['pair_order_agreement']:.0f}%; best TP picked in "
            f"{sw['best_tp_picked']} of {sw['sweeps']}"
        )
    yield (
        f"published configurations reported infeasible: {summ['infeasible']} of {summ['cases']}"
        + (
            f" ({', '.join(summ['infeasible_ids'][:8])}{' ...' if summ['infeasible'] > 8 else ''})"
            if summ["infeasible"]
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA_FILE))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "validate_serving.json"))
    ap.add_argument("--source", action="append", help="only cases of this source (repeatable)")
    ap.add_argument(
        "--max-prompts",
        type=int,
        default=None,
        help="cap each request-rate case's num_prompts (faster; changes tails and throughput)",
    )
    args = ap.parse_args(argv)
    data = json.loads(Path(args.data).read_text())
    cases = [c for c in data["cases"] if not args.source or c["source"] in args.source]
    clusters: dict[str, Cluster] = {}
    models: dict[str, Model] = {}
    rows = []
    started = time.perf_counter()
    for c in cases:
        cluster = clusters.setdefault(c["gpu"], build_cluster(c["gpu"]))
        model = models.setdefault(c["model"], solver.load_model(c["model"]))
        if c["mode"] == "static_batch":
            rows.append(predict_static(c, model, cluster))
        else:
            rows.append(predict_rate(c, model, cluster, args.max_prompts))
    sweeps = tp_sweeps(rows, "output_throughput_tok_s")
    bad = [r["id"] for r in rows if not r["feasible"]]
    summ = {
        "cases": len(rows),
        "errors": error_summary(rows),
        "tp_sweeps": sweep_summary(sweeps),
        "infeasible": len(bad),
        "infeasible_ids": bad,
        "max_prompts": args.max_prompts,
        "wall_s": time.perf_counter() - started,
    }
    for line in itertools.chain(table(rows), summary_lines(summ)):
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"source": data["title"], "summary": summ, "tp_sweeps": sweeps, "rows": rows}
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nwrote {out} ({summ['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
