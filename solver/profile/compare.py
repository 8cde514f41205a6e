"""Measured vs predicted: the validation runs set beside the evaluator (host side).

Each measured case of a raw JSON is mapped to the solver's specs -- the validation model to a
GPT :class:`~solver.specs.Model`, its run to a workload, its plan to a
:class:`~solver.specs.Plan` on the validation cluster -- and priced by
:func:`solver.evaluate.evaluate` twice: with the catalog's GPU figures and with a calibration
(the raw JSON's own profile, or a given calibration file).

The workload states what the runner does, so that a difference is a cost-model error and not
a different experiment: bf16 compute, parameters, gradients and Adam states all bf16
(``memory_policy: pure_bf16``), no ZeRO, the DP all-reduce after the backward
(``overlap_grad_reduce: false``), no recomputation, no sequence parallelism, non-interleaved
1F1B.  Known differences that remain: the runner's un-fused attention and PyTorch's default
kernels (no Megatron fused bias-GeLU / bias-dropout-add), eager decode (one kernel launch per
operator, no CUDA graphs), and PP with TP > 1 sending the full activation instead of
Megatron's scatter/gather.  Measured memory is ``torch.cuda.max_memory_allocated``: tensors
only, so it is compared with the ledger's tensors (total minus the fixed framework overhead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ..costmodel import constants as C
from ..errors import SpecError
from ..evaluate import evaluate
from ..io import find_spec, load_calibration, load_cluster, load_plan
from ..specs import Calibration, Cluster, InferenceWorkload, Model, Plan, TrainingWorkload
from .calibrate import calibration_from_raw, gpu_for_device, model_spec

__all__ = [
    "VALIDATION_CLUSTER",
    "compare",
    "inference_workload",
    "model_spec",
    "render_markdown",
    "summarize",
    "training_workload",
]

#: The cluster the GPU runs are predicted on: one node, 2 H100 SXM joined by NVLink.
VALIDATION_CLUSTER = "h100x2-nvlink"


def _precision(case: dict[str, Any]) -> Literal["bf16", "fp16"]:
    return "fp16" if case.get("dtype") == "fp16" else "bf16"


def training_workload(case: dict[str, Any], plan: Plan) -> TrainingWorkload:
    """What the runner's training step does, as a workload."""
    g = plan.replica_groups[0]
    mb = g.micro_batch_size or 1
    return TrainingWorkload(
        kind="training",
        global_batch_size=g.count * mb * (g.num_micro_batches or 1),
        sequence_length=case["shape"]["seq_len"],
        precision=_precision(case),
        # The runner trains with Megatron-LM 2021's un-fused attention core (solver/profile/gpt.py).
        attention="unfused",
        dropout=float(case["shape"].get("dropout", 0.0)),
        memory_policy="pure_bf16",
        zero_stage=0,
        overlap_grad_reduce=False,
        recompute=["none"],
        micro_batch_sizes=[mb],
        schedules=["1f1b"],
        sequence_parallel=[False],
    )


def inference_workload(case: dict[str, Any], plan: Plan) -> InferenceWorkload:
    """What the runner's inference request does, as a workload."""
    return InferenceWorkload(
        kind="inference",
        prompt_tokens=case["prompt"],
        output_tokens=case["gen"],
        batch_size=plan.replica_groups[0].batch_size or 1,
        precision=_precision(case),
    )


def _retarget(plan: dict[str, Any], pool: str) -> dict[str, Any]:
    """The plan with its stages on ``pool`` (the runner only reads GPU indices)."""
    plan = plan.get("plan", plan) if "replica_groups" not in plan else plan
    groups = []
    for g in plan["replica_groups"]:
        stages = []
        for st in g["stages"]:
            devs = [[[f"{pool}-0", int(gpu)] for _, gpu in rep] for rep in st["devices"]]
            stages.append({**st, "pool": pool, "devices": devs})
        groups.append({**g, "stages": stages})
    return {"kind": plan["kind"], "replica_groups": groups}


def _cluster_for(cluster: Cluster, device: str) -> tuple[Cluster, str | None]:
    """Put the measured GPU type into the cluster if it differs (an H200 run predicted as an
    H200); returns the note saying so."""
    name = gpu_for_device(device)
    if name is None:
        return cluster, None
    pools = []
    note = None
    for p in cluster.pools:
        if p.gpu_name.lower() != name.lower():
            note = f"cluster GPU {p.gpu_name} replaced by the measured {name}"
            p = p.model_copy(update={"gpu": name})
        pools.append(p)
    return cluster.model_copy(update={"pools": pools}), note


def _err(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or meas == 0:
        return None
    return (pred - meas) / meas


def _ledger_tensors_GB(report: dict[str, Any]) -> float | None:
    rows = report.get("memory_ledger") or []
    if not rows:
        return None
    return float(max(r["total_GB"] - r["overhead_GB"] for r in rows))


def _state_GB(report: dict[str, Any]) -> float | None:
    rows = report.get("memory_ledger") or []
    if not rows:
        return None
    return float(max(r["weights_GB"] + r["grads_GB"] + r["optimizer_GB"] for r in rows))


def _predict(
    model: Model,
    cluster: Cluster,
    workload: TrainingWorkload | InferenceWorkload,
    plan: Plan,
    cal: Calibration | None,
) -> dict[str, Any]:
    rep: dict[str, Any] = evaluate(model, cluster, workload, plan, cal).to_dict()
    return rep


def _predictions(
    case: dict[str, Any],
    cluster: Cluster,
    cal: Calibration | None,
    workload: Callable[[dict[str, Any], Plan], TrainingWorkload | InferenceWorkload],
) -> dict[str, dict[str, Any]]:
    """The evaluator's report of a measured case's plan: with catalog figures, and calibrated."""
    plan = load_plan(_retarget(case["plan"], cluster.pools[0].name))
    model, wl = model_spec(case["shape"]), workload(case, plan)
    preds = {"catalog": _predict(model, cluster, wl, plan, None)}
    if cal is not None:
        preds["calibrated"] = _predict(model, cluster, wl, plan, cal)
    return preds


def _unmeasured(case: dict[str, Any]) -> dict[str, Any] | None:
    """The row of a case that has no measurement (skipped or failed), else None."""
    if "summary" in case:
        return None
    return {
        "name": case["name"],
        "status": case.get("skipped") or case.get("error") or "not measured",
    }


def _train_row(case: dict[str, Any], cluster: Cluster, cal: Calibration | None) -> dict[str, Any]:
    skipped = _unmeasured(case)
    if skipped is not None:
        return skipped
    row: dict[str, Any] = {"name": case["name"]}
    meas = case["summary"]
    preds = _predictions(case, cluster, cal, training_workload)
    row["measured"] = {
        "step_s": meas["step_s"],
        "peak_GB": meas.get("peak_allocated_GB"),
        "state_GB": meas.get("persistent_GB"),
        "loss": meas.get("loss"),
        "stages": meas["stages"],
    }
    for label, rep in preds.items():
        stages = [
            {
                "stage": b["stage"],
                "busy_s": b["compute_s"] + b["tp_comm_s"],
                "dp_comm_s": b["dp_comm_s"],
                "optimizer_s": b["optimizer_s"],
            }
            for b in rep.get("time_breakdown") or []
        ]
        row[label] = {
            "feasible": rep["feasible"],
            "violations": rep["violations"],
            "step_s": rep["step_time_s"],
            "peak_GB": _ledger_tensors_GB(rep),
            "state_GB": _state_GB(rep),
            "mfu": rep["mfu"],
            "bubble_fraction": rep["bubble_fraction"],
            "stages": stages,
            "step_err": _err(rep["step_time_s"], meas["step_s"]),
            "peak_err": _err(_ledger_tensors_GB(rep), meas.get("peak_allocated_GB")),
        }
    return row


def _infer_row(case: dict[str, Any], cluster: Cluster, cal: Calibration | None) -> dict[str, Any]:
    skipped = _unmeasured(case)
    if skipped is not None:
        return skipped
    row: dict[str, Any] = {"name": case["name"]}
    meas = case["summary"]
    preds = _predictions(case, cluster, cal, inference_workload)
    row["measured"] = {
        "ttft_ms": meas["ttft_ms"],
        "tpot_ms": meas["tpot_ms"],
        "peak_GB": meas.get("peak_allocated_GB"),
    }
    for label, rep in preds.items():
        row[label] = {
            "feasible": rep["feasible"],
            "violations": rep["violations"],
            "ttft_ms": rep.get("ttft_ms"),
            "tpot_ms": rep.get("tpot_ms"),
            "peak_GB": _ledger_tensors_GB(rep),
            "ttft_err": _err(rep.get("ttft_ms"), meas["ttft_ms"]),
            "tpot_err": _err(rep.get("tpot_ms"), meas["tpot_ms"]),
            "peak_err": _err(_ledger_tensors_GB(rep), meas.get("peak_allocated_GB")),
        }
    return row


def compare(
    raw: dict[str, Any],
    *,
    cluster: str | Cluster = VALIDATION_CLUSTER,
    calibration: Calibration | None = None,
    use_raw_profile: bool = True,
) -> dict[str, Any]:
    """Measured vs predicted for every case of ``raw``.

    Parameters
    ----------
    raw
        A raw JSON document (``solver/profile/run.py validate|all``).
    cluster
        Cluster the plans are priced on (default :data:`VALIDATION_CLUSTER`); its GPU type is
        replaced by the measured one when they differ (noted in ``notes``).
    calibration
        Calibration for the "calibrated" predictions; default: the cluster's ``calibration``
        reference, else (``use_raw_profile``) one fitted from the raw JSON's own profile
        section, if it has one.
    """
    c = load_cluster(cluster)
    meta = raw.get("meta", {})
    device = str(meta.get("device", ""))
    notes: list[str] = []
    cal, source = calibration, "given"
    if cal is None and c.calibration is not None:
        # The cluster's own reference, resolved as solver.io does (relative to its file).
        where = find_spec(cluster, "instances/").parent if isinstance(cluster, str) else None
        cal, source = load_calibration(c.calibration, relative_to=where), f"cluster {c.name}"
    c, note = _cluster_for(c, device)
    if note:
        notes.append(note)
    if device == "cpu":
        notes.append("measured on CPU (gloo, tiny sizes): predictions are for the cluster's GPUs")
    if cal is None and use_raw_profile and isinstance(raw.get("profile"), dict):
        try:
            cal, source = calibration_from_raw(raw, gpu=c.pools[0].gpu_name), "this run's profile"
        except (SpecError, ValueError) as e:
            notes.append(f"no calibrated column: {e}")
    if cal is not None:
        notes.append(f"calibrated column: calibration from {source}")
    if cal is not None and all(cal.gpu.lower() != p.gpu_name.lower() for p in c.pools):
        notes.append(
            f"calibration is for {cal.gpu}, not a GPU of cluster {c.name}: it changes nothing"
        )
    train = [_train_row(x, c, cal) for x in raw.get("train", [])]
    infer = [_infer_row(x, c, cal) for x in raw.get("inference", [])]
    return {
        "summary": summarize(train, infer),
        "cluster": c.name,
        "gpu": c.pools[0].gpu_name,
        "device": device,
        "meta": meta,
        "calibration": None
        if cal is None
        else cal.model_dump(mode="json", exclude={"measured"}, exclude_none=True),
        "notes": notes,
        # Runs before the fusion modes existed were eager ("none").
        "fusion": sorted({x.get("shape", {}).get("fusion", "none") for x in raw.get("train", [])}),
        "framework_overhead_GB": C.FRAMEWORK_OVERHEAD_GB,
        "train": train,
        "inference": infer,
        "checks": raw.get("checks", []),
    }


def _errors(rows: list[dict[str, Any]], col: str, key: str) -> dict[str, Any] | None:
    errs = [r[col][key] for r in rows if "measured" in r and r[col][key] is not None]
    if not errs:
        return None
    a = [abs(e) for e in errs]
    return {
        "cases": len(errs),
        "mean_abs": sum(a) / len(a),
        "min": min(errs),
        "max": max(errs),
        "within_5pct": sum(x <= 0.05 for x in a),
        "within_10pct": sum(x <= 0.10 for x in a),
    }


def _workload(name: str) -> tuple[str, str]:
    """``h4096-l8/tp2/mb1`` -> (``h4096-l8/mb1``, ``tp2``): the workload and the plan."""
    parts = name.split("/")
    if len(parts) != 3:
        return name, ""
    return f"{parts[0]}/{parts[2]}", parts[1]


def _ranking(rows: list[dict[str, Any]], cols: list[str], key: str) -> list[dict[str, Any]]:
    """Per workload with several plans: the measured fastest plan and each column's pick."""
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if "measured" not in r:
            continue
        w, plan = _workload(r["name"])
        if plan:
            by.setdefault(w, {})[plan] = r
    out = []
    for w, plans in by.items():
        if len(plans) < 2:
            continue
        meas = {p: r["measured"][key] for p, r in plans.items()}
        best = min(meas, key=lambda p: meas[p])
        row: dict[str, Any] = {"workload": w, "measured_fastest": best}
        for col in cols:
            pred = {p: r[col][key] for p, r in plans.items() if r.get(col, {}).get(key)}
            if len(pred) == len(plans):
                pick = min(pred, key=lambda p: pred[p])
                row[col] = pick
                # How much slower the pick measured than the fastest (0 when it is the fastest).
                row[f"{col}_loss"] = meas[pick] / meas[best] - 1.0
        out.append(row)
    return out


def summarize(train: list[dict[str, Any]], infer: list[dict[str, Any]]) -> dict[str, Any]:
    """Error statistics per column and the planner's ranking of the plans per workload."""
    cols = [c for c in ("catalog", "calibrated") if any(c in r for r in train + infer)]
    out: dict[str, Any] = {"train": {}, "inference": {}}
    for col in cols:
        out["train"][col] = {
            "step": _errors(train, col, "step_err"),
            "peak_memory": _errors(train, col, "peak_err"),
        }
        out["inference"][col] = {
            "ttft": _errors(infer, col, "ttft_err"),
            "tpot": _errors(infer, col, "tpot_err"),
        }
    out["train"]["ranking"] = _ranking(train, cols, "step_s")
    out["inference"]["ranking_ttft"] = _ranking(infer, cols, "ttft_ms")
    out["inference"]["ranking_tpot"] = _ranking(infer, cols, "tpot_ms")
    return out


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["### Summary", ""]
    for sec, keys in (("train", ("step", "peak_memory")), ("inference", ("ttft", "tpot"))):
        for col, stats in summary.get(sec, {}).items():
            if col.startswith("ranking"):
                continue
            for k in keys:
                e = stats.get(k)
                if e:
                    lines.append(
                        f"- {sec} {k}, {col}: {e['cases']} cases, error {100 * e['min']:+.0f}% "
                        f"to {100 * e['max']:+.0f}%, mean |err| {100 * e['mean_abs']:.1f}%, "
                        f"{e['within_5pct']} within 5%, {e['within_10pct']} within 10%"
                    )
    for sec, key in (
        ("train", "ranking"),
        ("inference", "ranking_ttft"),
        ("inference", "ranking_tpot"),
    ):
        for r in summary.get(sec, {}).get(key, []):
            picks = ", ".join(
                f"{c} picks {r[c]}"
                + (
                    ""
                    if r[c] == r["measured_fastest"]
                    else f" ({100 * r[c + '_loss']:+.1f}% slower)"
                )
                for c in ("catalog", "calibrated")
                if c in r
            )
            what = "step" if sec == "train" else key.split("_")[1].upper()
            lines.append(
                f"- {r['workload']} {what}: measured fastest {r['measured_fastest']}; {picks}"
            )
    return lines + [""]


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------
def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.0f}%"


def render_markdown(result: dict[str, Any]) -> str:
    """Markdown tables: training steps, per-stage times, inference latencies, checks."""
    cal = "calibrated" if result.get("calibration") else None
    lines = [
        f"Measured on **{result['device'] or 'unknown device'}** "
        f"({result['meta'].get('world', '?')} processes, torch {result['meta'].get('torch', '?')}"
        f", NCCL {result['meta'].get('nccl', '—')}); predicted by the evaluator on cluster "
        f"`{result['cluster']}` ({result['gpu']}).  Errors are (predicted - measured) / measured.",
        "",
    ]
    if result.get("fusion"):
        lines += [
            f"Training runner fusion (`GPTConfig.fusion`): {', '.join(result['fusion'])}.",
            "",
        ]
    for n in result["notes"]:
        lines.append(f"- note: {n}")
    if result["notes"]:
        lines.append("")
    if result.get("summary"):
        lines += _summary_lines(result["summary"])
    if result["train"]:
        lines += ["### Training step", ""]
        head = "| case | measured s | catalog s | err |"
        sep = "|---|---:|---:|---:|"
        if cal:
            head += " calibrated s | err |"
            sep += "---:|---:|"
        head += " measured GB | predicted GB | err | loss |"
        sep += "---:|---:|---:|---:|"
        lines += [head, sep]
        for r in result["train"]:
            if "measured" not in r:
                lines.append(f"| {r['name']} | {r['status']} |" + " |" * (8 if cal else 6))
                continue
            m, p = r["measured"], r["catalog"]
            cells = [r["name"], _f(m["step_s"], ".3f"), _f(p["step_s"], ".3f"), _pct(p["step_err"])]
            if cal:
                q = r["calibrated"]
                cells += [_f(q["step_s"], ".3f"), _pct(q["step_err"])]
            cells += [
                _f(m["peak_GB"], ".1f"),
                _f(p["peak_GB"], ".1f"),
                _pct(p["peak_err"]),
                _f(m["loss"], ".3f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "### Per stage (seconds per step: forward + backward busy time incl. TP "
            "communication, DP all-reduce, Adam)",
            "",
        ]
        lines += [
            "| case | stage | busy meas. | busy pred. | DP meas. | DP pred. | Adam meas. | Adam pred. |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["train"]:
            if "measured" not in r:
                continue
            pred = {s["stage"]: s for s in r[cal or "catalog"]["stages"]}
            for s in r["measured"]["stages"]:
                q = pred.get(s["stage"], {})
                busy = s["forward_s"] + s["backward_s"]
                lines.append(
                    f"| {r['name']} | {s['stage']} | {busy:.3f} | {_f(q.get('busy_s'), '.3f')} | "
                    f"{s['dp_allreduce_s']:.4f} | {_f(q.get('dp_comm_s'), '.4f')} | "
                    f"{s['optimizer_s']:.4f} | {_f(q.get('optimizer_s'), '.4f')} |"
                )
        lines.append("")
    if result["inference"]:
        lines += ["### Inference (TTFT = prefill to the first token; TPOT = per decode step)", ""]
        head = "| case | TTFT ms | catalog | err |"
        sep = "|---|---:|---:|---:|"
        if cal:
            head += " calibrated | err |"
            sep += "---:|---:|"
        head += " TPOT ms | catalog | err |"
        sep += "---:|---:|---:|"
        if cal:
            head += " calibrated | err |"
            sep += "---:|---:|"
        head += " measured GB | predicted GB |"
        sep += "---:|---:|"
        lines += [head, sep]
        for r in result["inference"]:
            if "measured" not in r:
                lines.append(f"| {r['name']} | {r['status']} |")
                continue
            m, p = r["measured"], r["catalog"]
            cells = [
                r["name"],
                _f(m["ttft_ms"], ".2f"),
                _f(p["ttft_ms"], ".2f"),
                _pct(p["ttft_err"]),
            ]
            if cal:
                q = r["calibrated"]
                cells += [_f(q["ttft_ms"], ".2f"), _pct(q["ttft_err"])]
            cells += [_f(m["tpot_ms"], ".3f"), _f(p["tpot_ms"], ".3f"), _pct(p["tpot_err"])]
            if cal:
                q = r["calibrated"]
                cells += [_f(q["tpot_ms"], ".3f"), _pct(q["tpot_err"])]
            cells += [_f(m["peak_GB"], ".1f"), _f(p["peak_GB"], ".1f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if result["checks"]:
        lines += ["### Correctness (parallel vs one device)", ""]
        for c in result["checks"]:
            lines.append(
                f"- {c['name']}: "
                + ", ".join(
                    f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in c.items()
                    if k not in ("name", "tensors")
                )
            )
        lines.append("")
    if cal and result.get("calibration"):
        c = result["calibration"]
        lines += [
            "Calibration used: "
            + ", ".join(
                f"{k} {v:.4g}"
                if isinstance(v, float)
                else f"{k} {len(v)} measured shapes"
                if k == "gemm_table"
                else f"{k} {v}"
                for k, v in c.items()
                if k not in ("meta",)
            ),
            "",
        ]
    return "\n".join(lines)
