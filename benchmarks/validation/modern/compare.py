"""Measured (one GPU, today's stack) vs predicted: training step time, its phases, peak memory
and prefill.

    python benchmarks/validation/modern/compare.py benchmarks/validation/modern/raw-h100x1-modern-merged.json [--calibrate]

Reads the raw JSON of ``solver/profile/modern.py`` (hand-written Llama and GPT blocks and
Hugging Face ``LlamaForCausalLM`` with SDPA attention, no dropout, bf16 parameters, fused
AdamW, micro-batch 1-4, with and without full recompute) and predicts every training case
with the evaluator on one GPU of the measured kind, with the runner's workload
(``calibrate_modern.training_workload_of``: flash attention, no dropout, ``pure_bf16``, ZeRO 0,
one micro-batch per step, eager elementwise kernels as Hugging Face writes them).  Each row
also carries the error of the step's three phases (forward, backward, ``optimizer.step``),
which the runner times apart.  Prefill is priced as the runner runs it: a plain PyTorch
forward (eager kernels, no serving engine).  Prints tables and writes ``compare.json``
(``compare-calibrated.json`` with a calibration) beside the raw file.

``--calibrate`` prices with the per-term calibration this run measured
(``calibrate_modern.calibration_from_modern``: GEMM table, HBM rate, attention asymptotes, and
from the training steps the in-step GEMM realisation and the optimizer rate);
``--calibration FILE`` with a calibration file (per-term: only what it measured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

import solver  # noqa: E402
from solver.construction import build_stages  # noqa: E402
from solver.costmodel.comm import LOCAL  # noqa: E402
from solver.costmodel.compute import embedding_time  # noqa: E402
from solver.costmodel.serving_compute import prefill_block_time, serving_head_time  # noqa: E402
from solver.costmodel.stack import Stack  # noqa: E402
from solver.evaluate.calibration import calibrated_cluster, gpu_with_calibration  # noqa: E402
from solver.profile.calibrate_modern import (  # noqa: E402
    calibration_from_modern,
    forward_s,
    model_of_record,
    modern_gpu,
    training_workload_of,
)
from solver.specs import (  # noqa: E402
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    ReplicaGroup,
)


def gpu_name(raw: dict[str, Any]) -> str:
    return modern_gpu(raw).name


def model_of(rec: dict[str, Any]) -> Model:
    return model_of_record(rec)


def cluster_of(gpu: str, calibration: str | None) -> Cluster:
    doc: dict[str, Any] = {
        "name": "one-gpu",
        "pools": [
            {
                "name": "g",
                "gpu": gpu,
                "nodes": 1,
                "gpus_per_node": 1,
                "intra_node": {"kind": "nvswitch", "bandwidth_GBps": 450, "latency_us": 3},
                "nic": {"count": 1, "bandwidth_GBps": 50, "latency_us": 5},
            }
        ],
    }
    if calibration:
        doc["calibration"] = calibration
    return solver.load_cluster(doc)


def predict(rec: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    model = model_of(rec)
    mb = int(rec["micro_batch"])
    rc = "full" if rec["recompute"] else "none"
    # The runner's workload (calibrate_modern prices its step-level terms on the same one).
    wl = training_workload_of(rec)
    stages = build_stages(cluster, [(1, [("g", 1, model.num_layers)])])[0]
    plan = Plan(
        kind="training",
        replica_groups=[
            ReplicaGroup(
                count=1,
                micro_batch_size=mb,
                num_micro_batches=1,
                schedule="1f1b",
                recompute=rc,
                zero_stage=0,
                sequence_parallel=False,
                stages=stages,
            )
        ],
    )
    rep = solver.evaluate(model, cluster, wl, plan).to_dict()
    return {
        "step_s": rep["step_time_s"],
        "optimizer_s": rep["details"]["optimizer_s"],
        "fwd_s": forward_s(rec, gpu_with_calibration(cluster.pools[0])),
        "peak_GB": rep["peak_memory_GB_per_gpu"],
        "ledger": rep["memory_ledger"][0],
        "feasible": rep["feasible"],
    }


def phase_errors(rec: dict[str, Any], p: dict[str, Any]) -> dict[str, float]:
    """Predicted / measured - 1 of the step's three phases, which the runner times apart:
    forward (``forward_s``), backward with any recompute (the one micro-batch's compute minus
    its forward) and ``optimizer.step``.  Errors of opposite sign in different phases cancel
    in the step time; this is where they show."""
    meas_f, meas_fb = rec["fwd_ms_median"] / 1e3, rec["fwdbwd_ms_median"] / 1e3
    meas_o = rec["optimizer_ms_median"] / 1e3
    pred_b = p["step_s"] - p["optimizer_s"] - p["fwd_s"]
    return {
        "forward": p["fwd_s"] / meas_f - 1,
        "backward": pred_b / (meas_fb - meas_f) - 1,
        "optimizer": p["optimizer_s"] / meas_o - 1,
    }


def print_phase_summary(rows: list[dict[str, Any]]) -> None:
    """Mean signed and max |error| of each phase over the cases."""
    for phase in ("forward", "backward", "optimizer"):
        e = [r["phase_errors"][phase] for r in rows]
        print(
            f"  {phase:9} error: mean {statistics.mean(e):+6.1%}, "
            f"range {min(e):+6.1%} .. {max(e):+6.1%}"
        )


def eager_prefill_ms(model: Model, cluster: Cluster, seq: int, batch: int) -> float:
    """The evaluator's time to first token on one GPU (every block's prefill, the embedding,
    the head at one row per prompt; no serving engine), with the runner's eager elementwise
    kernels: ``serving_compute.prefill_block_time(kernels="eager")``.  The inference workload has no
    kernels switch (serving engines fuse them), so this sums the same terms
    ``solver.evaluate`` sums for a one-stage plan (``_evaluate_inference``)."""
    gpu = gpu_with_calibration(cluster.pools[0])  # the cluster's calibration is folded in
    kw: dict[str, Any] = dict(tp=1, precision="bf16", tp_link=LOCAL)
    block = prefill_block_time(model, gpu, batch=batch, prompt=seq, kernels="eager", **kw)
    emb = embedding_time(model, gpu, micro_batch=batch, seq=seq, **kw)
    head = serving_head_time(model, gpu, rows=batch, stack=Stack(), engine=None, **kw)
    return (model.num_layers * block.fwd_s + emb.fwd_s + head.fwd_s) * 1e3


def compare_prefill(raw: dict[str, Any], cluster: Cluster) -> list[dict[str, Any]]:
    """Prefill (time to first token, last-token logits) measured vs the evaluator's TTFT.

    The runner prefills with a plain PyTorch forward: eager elementwise kernels and no serving
    engine (no CUDA graphs, scheduler or sampling step).  ``predicted_ms`` prices exactly that
    (:func:`eager_prefill_ms`); ``evaluate_fused_ms`` is ``solver.evaluate``'s TTFT with the
    roofline engine and fused kernels, as a serving engine would run them (the default engine,
    vLLM, adds its per-step host time and fixed kernel latencies: +18.6% at 2048 tokens).
    """
    shapes = {r["model"]: r for r in raw.get("train", []) if r.get("shape")}
    rows = []
    for rec in raw.get("prefill", []):
        if (
            rec.get("status") != "ok"
            or not rec.get("last_logits_only")
            or rec["model"] not in shapes
        ):
            continue
        model = model_of(shapes[rec["model"]])
        seq, batch = int(rec["seq"]), int(rec["batch"])
        wl = InferenceWorkload(
            kind="inference", prompt_tokens=seq, output_tokens=1, batch_size=batch,
            precision="bf16", serving_engine="roofline",
        )  # fmt: skip
        stages = build_stages(cluster, [(1, [("g", 1, model.num_layers)])])[0]
        plan = Plan(
            kind="inference",
            replica_groups=[ReplicaGroup(count=1, batch_size=batch, stages=stages)],
        )
        fused = solver.evaluate(model, cluster, wl, plan).to_dict()["ttft_ms"]
        pred = eager_prefill_ms(model, cluster, seq, batch)
        meas = rec["ms_median"]
        row = {"case": rec["name"], "measured_ms": meas, "predicted_ms": pred,
               "error": pred / meas - 1, "evaluate_fused_ms": fused}  # fmt: skip
        rows.append(row)
        print(
            f"{rec['name']:44} {meas:8.2f} ms {pred:8.2f} ms {row['error']:+7.1%}"
            f"   (fused kernels {fused:6.2f} ms {fused / meas - 1:+6.1%})"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", type=Path)
    ap.add_argument("--calibration", default=None, help="a calibration file or name")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="price with the terms this run's micro-benchmarks measured (per-term calibration)",
    )
    args = ap.parse_args(argv)
    raw = json.loads(args.raw.read_text())
    cluster = cluster_of(gpu_name(raw), args.calibration)
    if args.calibrate:
        cluster = calibrated_cluster(cluster, calibration_from_modern(raw, source=args.raw.name))
    else:
        cluster = calibrated_cluster(cluster)  # fold a --calibration file (prefill prices with it)
    # A case whose memory a previous case leaked into (the 2026-12-07 run; fixed in the runner
    # since) allocates more between steps than its weights and AdamW states (bf16 parameters:
    # 2 + 2 + 2 bytes each, a fact of torch.optim.AdamW, not of the cost model): such cases
    # compare time only.
    rows = []
    print(
        f"{'case':44} {'meas s':>8} {'pred s':>8} {'err':>7} {'meas GB':>8} {'pred GB':>8} {'err':>7}"
    )
    for rec in raw.get("train", []):
        if rec.get("status") != "ok" or "peak_allocated_bytes" not in rec:
            continue
        p = predict(rec, cluster)
        meas_s = rec["step_ms_median"] / 1e3
        # The ledger counts what the caching allocator hands out plus named overheads outside
        # it; compare the allocator's peak with the ledger minus its overhead row.
        meas_gb = rec["peak_allocated_bytes"] / 1e9
        # The cuBLAS workspaces (2 x 32 MiB on Hopper) are allocated through PyTorch's caching
        # allocator, so they are inside torch.cuda.max_memory_allocated (measured: 64 MiB
        # allocated between steps in every case): only the CUDA context and the NCCL buffers
        # are outside it.
        outside = p["ledger"]["overhead_GB"] - p["ledger"].get("cublas_workspace_GB", 0.0)
        pred_gb = p["peak_GB"] - outside
        after = rec.get("after_init_allocated_bytes") or 0
        clean = after <= 6.0 * rec["params"] * 1.01 + 0.2e9
        row = {
            "case": rec["name"],
            "measured_step_s": meas_s,
            "predicted_step_s": p["step_s"],
            "step_error": p["step_s"] / meas_s - 1,
            "measured_peak_allocated_GB": meas_gb,
            "predicted_peak_GB_without_overhead": pred_gb,
            "memory_error": pred_gb / meas_gb - 1 if clean else None,
            "phase_errors": phase_errors(rec, p),
        }
        rows.append(row)
        print(
            f"{rec['name']:44} {meas_s:8.4f} {p['step_s']:8.4f} {row['step_error']:+7.1%} "
            + (
                f"{meas_gb:8.2f} {pred_gb:8.2f} {row['memory_error']:+7.1%}"
                if clean
                else f"{'(leak)':>8} {pred_gb:8.2f} {'-':>7}"
            )
        )
    if rows:
        se = [abs(r["step_error"]) for r in rows]
        me = [abs(r["memory_error"]) for r in rows if r["memory_error"] is not None] or [0.0]
        print(
            f"\n{len(rows)} cases: step |err| mean {statistics.mean(se):.1%} max {max(se):.1%}"
            f" ({sum(e <= 0.10 for e in se)} within 10%); memory |err| mean "
            f"{statistics.mean(me):.1%} max {max(me):.1%} ({sum(e <= 0.05 for e in me)} within 5%)"
        )
    if rows:
        print_phase_summary(rows)
    prefill = compare_prefill(raw, cluster)
    calibrated = args.calibration or args.calibrate
    out = args.raw.with_name("compare-calibrated.json" if calibrated else "compare.json")
    out.write_text(
        json.dumps({"raw": args.raw.name, "rows": rows, "prefill": prefill}, indent=1) + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
