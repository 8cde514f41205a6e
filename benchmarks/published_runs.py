"""Predicted vs published throughput of the Megatron-LM runs in published-runs.json.

Every run is rebuilt from its published configuration (model, Selene cluster, workload, plan)
and scored by the evaluator (``solver.evaluate``).  Predicted TFLOP/s per GPU are computed in
the source's own FLOP convention: Narayanan et al. 2021 eq. 3 (includes the recompute forward)
divided by the predicted step time and the GPU count.

Unstated details follow ONE global rule, never per row:

* micro-batch size 1 (Table 2 states mb = 1 for every PTD row; Table 1 does not say);
* interleaving: pipelined rows (p > 1) use the interleaved schedule with
  ``VIRTUAL_STAGES_RULE`` (see :func:`virtual_stages`); p = 1 rows run without a pipeline;
* full activation recomputation, fp16 mixed precision (amp_fp16: 16 B/param), ZeRO-0 for
  PTD rows (Megatron-LM 2021 had no distributed optimizer), gradient all-reduce not
  overlapped with backward (Megatron-LM 2021 ran it after the backward pass);
* Megatron rank order (TP fastest, then DP, then PP): TP groups fill a node, DP replicas of
  one stage sit on consecutive GPUs / nodes, stages on consecutive node blocks.

Usage::

    python benchmarks/published_runs.py            # table + benchmarks/results/published_runs.json
    python benchmarks/published_runs.py --fit      # fit the A100 efficiency factors on Table 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from solver.catalog import resolve_gpu  # noqa: E402
from solver.costmodel import constants as C  # noqa: E402
from solver.costmodel import narayanan_eq3_flops  # noqa: E402
from solver.evaluate import evaluate  # noqa: E402
from solver.specs import (  # noqa: E402
    Cluster,
    GPUSpec,
    Link,
    Model,
    Nic,
    Plan,
    Pool,
    TrainingWorkload,
)

TABLE1 = "Narayanan2021_Table1_weak_scaling"
TABLE2 = "Narayanan2021_Table2_PTD_vs_ZeRO3"

#: Selene / DGX A100 (Narayanan et al. 2021 Sec. 5; published-runs.json network.DGX_A100_scaleout):
#: NVLink3 + NVSwitch, 600 GB/s bidirectional = 300 GB/s per direction per GPU;
#: 8 x 200 Gb/s HDR InfiniBand compute NICs per node = 25 GB/s each per direction.
SELENE_NVSWITCH_GBPS = 300.0
SELENE_NVSWITCH_LATENCY_US = 3.0
SELENE_NICS = 8
SELENE_NIC_GBPS = 25.0
SELENE_NIC_LATENCY_US = 5.0
GPUS_PER_NODE = 8

#: Global micro-batch rule (see module docstring).
MICRO_BATCH = 1
#: Global interleaving rule: "two_chunks" = v = 2 whenever the layers per stage are even,
#: else 1 layer per virtual stage (v = layers per stage).
VIRTUAL_STAGES_RULE = "two_chunks"


def shared_dir(data_file: str = "published-runs.json") -> Path:
    """Locate shared/ (the one holding ``data/<data_file>``): $SHARDWISE_SHARED, else
    ../shared next to the repository.  The other benchmarks that read shared/data call this."""
    env = os.environ.get("SHARDWISE_SHARED")
    cands = [Path(env)] if env else []
    cands += [REPO.parent / "shared", REPO / "shared", REPO.parent.parent / "shared"]
    for c in cands:
        if (c / "data" / data_file).is_file():
            return c
    raise SystemExit(f"cannot find shared/data/{data_file} (set SHARDWISE_SHARED)")


def virtual_stages(layers: int, pp: int, rule: str = VIRTUAL_STAGES_RULE) -> int:
    """The one global interleaving rule for rows whose v is not published."""
    if pp <= 1:
        return 1
    per = layers // pp
    if rule == "two_chunks":
        return 2 if per % 2 == 0 else per
    if rule == "one_layer":
        return per
    if rule == "none":
        return 1
    raise ValueError(rule)


def build_model(case: dict[str, Any]) -> Model:
    m = case["model"]
    return Model(
        name=m["name"],
        num_layers=m["layers"],
        hidden_size=m["hidden"],
        ffn_hidden_size=m["ffn_hidden"],
        num_attention_heads=m["heads"],
        num_kv_heads=m["kv_heads"],
        vocab_size=m["vocab"],
        mlp="gelu",
        tied_embeddings=True,
        learned_position_embeddings=True,
    )


def build_cluster(case: dict[str, Any], gpu: GPUSpec | None = None) -> Cluster:
    n = case["cluster"]["num_gpus"]
    nodes = math.ceil(n / GPUS_PER_NODE)
    return Cluster(
        name="selene",
        pools=[
            Pool(
                name="selene",
                gpu=gpu if gpu is not None else case["cluster"]["gpu"],
                nodes=nodes,
                gpus_per_node=GPUS_PER_NODE,
                intra_node=Link(
                    kind="nvswitch",
                    bandwidth_GBps=SELENE_NVSWITCH_GBPS,
                    latency_us=SELENE_NVSWITCH_LATENCY_US,
                ),
                nvlink_domain_nodes=1,
                nic=Nic(
                    count=SELENE_NICS,
                    bandwidth_GBps=SELENE_NIC_GBPS,
                    latency_us=SELENE_NIC_LATENCY_US,
                ),
            )
        ],
    )


def build_plan(
    case: dict[str, Any], rule: str = VIRTUAL_STAGES_RULE
) -> tuple[TrainingWorkload, Plan]:
    par = case["parallel"]
    tp, pp, dp = par["tp"], par["pp"], par["dp"]
    zero = int(par.get("zero_stage", 0))
    L = case["model"]["layers"]
    mb = case["micro_batch"] or MICRO_BATCH
    gbs = case["global_batch"]
    m = gbs // (dp * mb)
    v = virtual_stages(L, pp, rule) if zero == 0 else 1
    schedule = "interleaved" if v > 1 else "1f1b"
    wl = TrainingWorkload(
        kind="training",
        global_batch_size=gbs,
        sequence_length=case["model"]["seq_len"],
        precision="fp16",
        # The 2021 stack: Megatron-LM's un-fused attention core, dropout 0.1.
        attention="unfused",
        dropout=0.1,
        recompute_early_stop=False,  # Megatron-LM's reentrant checkpoint re-runs the whole forward
        memory_policy="amp_fp16",
        zero_stage=zero,
        overlap_grad_reduce=zero == 3,  # DeepSpeed ZeRO-3 overlaps; Megatron 2021 did not
        recompute=["full"],
        micro_batch_sizes=[mb],
        schedules=[schedule],
        sequence_parallel=[False],
    )
    per_stage = L // pp
    chunk = per_stage // v
    stages = []
    for s in range(pp):
        devices = []
        for d in range(dp):
            first = (s * dp + d) * tp  # Megatron order: TP fastest, then DP, then PP
            devices.append(
                [
                    [f"selene-{(first + j) // GPUS_PER_NODE}", (first + j) % GPUS_PER_NODE]
                    for j in range(tp)
                ]
            )
        st: dict[str, Any] = {"pool": "selene", "tp": tp, "devices": devices}
        if v > 1:
            st["chunks"] = [
                [(c * pp + s) * chunk, (c * pp + s) * chunk + chunk - 1] for c in range(v)
            ]
        else:
            st["first_layer"], st["last_layer"] = s * per_stage, s * per_stage + per_stage - 1
        stages.append(st)
    plan = Plan.model_validate(
        {
            "kind": "training",
            "replica_groups": [
                {
                    "count": dp,
                    "micro_batch_size": mb,
                    "num_micro_batches": m,
                    "schedule": schedule,
                    "virtual_stages": v,
                    "recompute": "full",
                    "zero_stage": zero,
                    "sequence_parallel": False,
                    "stages": stages,
                }
            ],
        }
    )
    return wl, plan


def predict(
    case: dict[str, Any], gpu: GPUSpec | None = None, rule: str = VIRTUAL_STAGES_RULE
) -> dict[str, Any]:
    model = build_model(case)
    cluster = build_cluster(case, gpu)
    wl, plan = build_plan(case, rule)
    rep = evaluate(model, cluster, wl, plan)
    mm = case["model"]
    flops = narayanan_eq3_flops(
        case["global_batch"], mm["seq_len"], mm["layers"], mm["hidden"], mm["vocab"]
    )
    n = case["cluster"]["num_gpus"]
    assert rep.step_time_s is not None
    tflops = flops / rep.step_time_s / n / 1e12
    pub = case["measured"]["tflops_per_gpu"]
    grp = plan.replica_groups[0]
    return {
        "id": case["id"],
        "group": case["group"],
        "params_b": mm["params_b"],
        "num_gpus": n,
        "tp": grp.stages[0].tp,
        "pp": grp.pp,
        "dp": grp.count,
        "zero_stage": grp.zero_stage,
        "micro_batch": grp.micro_batch_size,
        "num_micro_batches": grp.num_micro_batches,
        "virtual_stages": grp.virtual_stages,
        "published_tflops": pub,
        "predicted_tflops": tflops,
        "error": tflops / pub - 1.0,
        "step_time_s": rep.step_time_s,
        "bubble_fraction": rep.bubble_fraction,
        "mfu": rep.mfu,
        "hfu": rep.hfu,
        "feasible": rep.feasible,
        "violations": rep.violations,
        "peak_memory_GB_per_gpu": rep.peak_memory_GB_per_gpu,
        "details": rep.details,
    }


def run(
    cases: list[dict[str, Any]], gpu: GPUSpec | None = None, rule: str = VIRTUAL_STAGES_RULE
) -> list[dict[str, Any]]:
    return [predict(c, gpu, rule) for c in cases]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    errs = [abs(r["error"]) for r in rows]
    return {"mean_abs_error": sum(errs) / len(errs), "max_abs_error": max(errs), "n": len(errs)}


def fit(cases: list[dict[str, Any]]) -> tuple[float, float]:
    """Fit the two free parameters on Table 1 (least squares on relative error):
    ``GEMM_REALIZATION_FRACTION`` (global, every GPU type) and the A100's memory_efficiency."""
    from scipy.optimize import minimize

    base = resolve_gpu(cases[0]["cluster"]["gpu"])
    t1 = [c for c in cases if c["group"] == TABLE1]

    def loss(x: Any) -> float:
        frac, me = float(x[0]), float(x[1])
        if not (0.05 < frac <= 1.0 and 0.05 < me <= 1.0):
            return 1e9
        C.GEMM_REALIZATION_FRACTION = frac
        g = base.model_copy(update={"memory_efficiency": me})
        return sum(r["error"] ** 2 for r in run(t1, g))

    saved = C.GEMM_REALIZATION_FRACTION
    try:
        res = minimize(
            loss,
            x0=[C.GEMM_REALIZATION_FRACTION, base.memory_efficiency],
            method="Nelder-Mead",
            options={"xatol": 1e-3, "fatol": 1e-7, "maxiter": 200},
        )
    finally:
        C.GEMM_REALIZATION_FRACTION = saved
    return float(res.x[0]), float(res.x[1])


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'run':38s} {'GPUs':>5s} {'t':>2s} {'p':>3s} {'d':>5s} {'v':>2s} {'m':>4s} {'pub':>6s} {'pred':>6s} {'err':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['id']:38s} {r['num_gpus']:5d} {r['tp']:2d} {r['pp']:3d} {r['dp']:5d} {r['virtual_stages']:2d} "
            f"{r['num_micro_batches']:4d} {r['published_tflops']:6.1f} {r['predicted_tflops']:6.1f} {100 * r['error']:+6.1f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="fit A100 gemm/memory efficiency on Table 1")
    ap.add_argument(
        "--rule", default=VIRTUAL_STAGES_RULE, choices=["two_chunks", "one_layer", "none"]
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "published_runs.json"))
    args = ap.parse_args(argv)
    data = json.loads((shared_dir() / "data" / "published-runs.json").read_text())
    cases = [c for c in data["training_cases"] if c["group"] in (TABLE1, TABLE2)]
    gpu = None
    if args.fit:
        frac, me = fit(cases)
        print(
            f"fitted GEMM_REALIZATION_FRACTION={frac:.4f}, A100 memory_efficiency={me:.4f} "
            "(write them to solver/costmodel/constants.py and solver/catalog/gpus.yaml)"
        )
        C.GEMM_REALIZATION_FRACTION = round(frac, 3)
        gpu = resolve_gpu(cases[0]["cluster"]["gpu"]).model_copy(
            update={"memory_efficiency": round(me, 3)}
        )
    rows = run(cases, gpu, args.rule)
    t1 = [r for r in rows if r["group"] == TABLE1]
    t2 = [r for r in rows if r["group"] == TABLE2]
    print("Table 1 (in sample)")
    print(table(t1))
    s1 = summary(t1)
    print(
        f"mean |error| {100 * s1['mean_abs_error']:.1f}%   max |error| {100 * s1['max_abs_error']:.1f}%\n"
    )
    print("Table 2 (out of sample)")
    print(table(t2))
    for label, sub in (
        ("ZeRO-3", [r for r in t2 if r["zero_stage"] == 3]),
        ("PTD", [r for r in t2 if r["zero_stage"] == 0]),
    ):
        s = summary(sub)
        print(
            f"{label}: mean |error| {100 * s['mean_abs_error']:.1f}%   max |error| {100 * s['max_abs_error']:.1f}%"
        )
    g = gpu or resolve_gpu(cases[0]["cluster"]["gpu"])
    out = {
        "about": "Predicted vs published TFLOP/s per GPU (Narayanan 2021 eq. 3 convention).",
        "rules": {"micro_batch": MICRO_BATCH, "virtual_stages_rule": args.rule},
        "gpu": g.model_dump(),
        "table1": {"rows": t1, **s1},
        "table2": {"rows": t2, **summary(t2)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
