"""Plan quality on the published 2024-2025 runs: the planner's own plan beside the published
layout, both scored by the same evaluator.

    python benchmarks/plan_quality_published.py [--rows REGEX] [--time-limit S] [--workers N]

For every row of ``shared/data/published-runs-modern.json`` that ``validate_modern.py``
evaluates (NeMo 24.05/24.07 on DGX-H100, torchtitan on H100/H200/A100), the row is rebuilt as
there (model, cluster, numerics, stack: one global rule per unstated detail) and the planner is
asked for its own plan of the same model on the same GPUs with the same global batch and
sequence length, the layout left free:

* NeMo rows: ``engine="megatron"`` (NeMo runs Megatron-Core), micro-batch 1/2/4 (and the
  published one), recompute none/selective/full, 1F1B or interleaved, sequence parallelism
  on/off, ZeRO-1 (the distributed optimizer);
* torchtitan rows: ``engine="any-plan"`` (no export target launches torchtitan yet), FSDP2
  (``fsdp2_mixed``, ZeRO-3, or ZeRO-1 = FSDP2 without resharding), recompute none / per-op
  selective / every-second-block / full, micro-batch 1/2/4 (and the published local batch).

Reported per row: the published layout's predicted tokens/s per GPU (the recompute setting as
``validate_modern.py`` resolves it), the planner's, their ratio (>= 1: the planner's plan is
predicted at least as fast), the measured tokens/s, and where the two layouts differ, which
knobs differ and the predicted components behind it (bubble, exposed communication,
recompute).  A ratio below 1 means the published layout lies outside the planner's search
space (a micro-batch or VP it does not enumerate, an engine rule) or the solve ran out of
time; the row says which.  Writes ``benchmarks/results/plan_quality_published.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate_modern as vm  # noqa: E402

import solver  # noqa: E402
from solver.cpsat.subproblems import VIRTUAL_STAGE_OPTIONS  # noqa: E402
from solver.specs import Plan, TrainingWorkload  # noqa: E402


def open_workload(lay: dict[str, Any], family: str) -> TrainingWorkload:
    """The row's workload with the layout knobs left to the planner."""
    micro = sorted({1, 2, 4, int(lay["mb"])})
    if family == "torchtitan":
        recompute = ["none", "selective_op", "full_half", "full"]
        zero: int | list[int] = [1, 3]
    else:
        recompute = ["none", "selective", "full"]
        zero = 1
    return TrainingWorkload(
        kind="training",
        global_batch_size=lay["gbs"],
        sequence_length=lay["seq"],
        precision=lay["precision"],
        memory_policy=lay["memory_policy"],
        zero_stage=zero,
        recompute=recompute,  # type: ignore[arg-type]
        micro_batch_sizes=micro,
        schedules=["1f1b", "interleaved"],
        sequence_parallel=[True, False],
        elementwise_kernels=lay["kernels"],
        recompute_early_stop=lay["early_stop"],
        grad_buffers=lay["grad_buffers"],
        attention_kernel=lay["attention_kernel"],
        # The row's stack, as validate_modern.build_plan prices the published layout: the
        # planner must plan the same numerics and overlap, or "same layout" scores differently.
        fp8_recipe=lay["fp8_recipe"],
        fused_norm=lay["fused_norm"],
        compiled_loss=lay["compiled_loss"],
        tp_comm_overlap=lay["tp_comm_overlap"],
    )


def describe(plan: Plan) -> dict[str, Any]:
    g = plan.replica_groups[0]
    return dict(
        tp=g.stages[0].tp,
        pp=g.pp,
        v=g.virtual_stages if g.schedule == "interleaved" else 1,
        dp=g.count,
        mb=g.micro_batch_size,
        m=g.num_micro_batches,
        recompute=g.recompute,
        sp=g.sequence_parallel and g.stages[0].tp > 1,
        zero=g.zero_stage,
        layers=[st.num_layers for st in g.stages],
    )


def components(rep: dict[str, Any]) -> dict[str, float]:
    """Predicted step components a reader can compare between two plans."""
    stages = rep["time_breakdown"]
    worst = max(stages, key=lambda s: s["busy_s"]) if stages else {}
    return dict(
        step_s=rep["step_time_s"],
        bubble=rep.get("bubble_fraction") or 0.0,
        tp_comm_s=worst.get("tp_comm_s", 0.0),
        dp_exposed_s=worst.get("dp_exposed_s", 0.0),
        peak_GB=rep.get("peak_memory_GB_per_gpu") or 0.0,
    )


def why(
    pub: dict[str, Any], own: dict[str, Any], cp: dict[str, float], co: dict[str, float]
) -> str:
    diffs = [
        f"{k} {pub[k]}->{own[k]}"
        for k in ("tp", "pp", "v", "dp", "mb", "recompute", "sp", "zero")
        if pub[k] != own[k]
    ]
    if not diffs:
        return "same layout"
    parts = [", ".join(diffs)]
    if abs(co["bubble"] - cp["bubble"]) > 0.005:
        parts.append(f"bubble {cp['bubble']:.1%}->{co['bubble']:.1%}")
    if abs(co["tp_comm_s"] - cp["tp_comm_s"]) > 0.01 * cp["step_s"]:
        parts.append(f"TP comm {cp['tp_comm_s']:.2f}->{co['tp_comm_s']:.2f} s")
    if abs(co["dp_exposed_s"] - cp["dp_exposed_s"]) > 0.01 * cp["step_s"]:
        parts.append(f"exposed DP {cp['dp_exposed_s']:.2f}->{co['dp_exposed_s']:.2f} s")
    parts.append(f"peak {cp['peak_GB']:.0f}->{co['peak_GB']:.0f} GB")
    return "; ".join(parts)


def slower_because(
    pub: dict[str, Any], wl: TrainingWorkload, res: Any, rep_own: dict[str, Any], rep_pub: Any
) -> str:
    """Why the planner's plan is predicted slower than the published layout: what of the
    published layout the planner does not search, a solve that stopped early, or -- the
    planner's plan winning on the closed form the CP model minimises -- the gap between that
    closed form and the evaluator's event simulation (re-scored only up to 64 GPUs)."""
    reasons = []
    if pub["mb"] not in wl.micro_batch_sizes:
        reasons.append(f"micro-batch {pub['mb']} not searched")
    if pub["v"] > 1 and pub["v"] not in VIRTUAL_STAGE_OPTIONS:
        reasons.append(f"VP {pub['v']} not among the searched {list(VIRTUAL_STAGE_OPTIONS)}")
    if res.status.name != "OPTIMAL":
        reasons.append(f"solve stopped {res.status.name}")
    own_cf, pub_cf = rep_own.get("closed_form_step_time_s"), rep_pub.closed_form_step_time_s
    if own_cf is not None and pub_cf is not None and own_cf <= pub_cf:
        reasons.append(
            f"the closed form the CP minimises prefers the planner's plan ({own_cf:.4g} vs "
            f"{pub_cf:.4g} s per step), the event simulation does not "
            f"({rep_own['step_time_s']:.4g} vs {rep_pub.step_time_s:.4g} s)"
            + (
                f", and the planner did not re-score with it ({res.stats['optimal_under']}"
                " optimum: its space is too large to count)"
                if res.stats.get("optimal_under") == "closed_form"
                else ""
            )
        )
    return "; ".join(reasons) or "published layout outside the searched space (split)"


def run_row(row: dict[str, Any], time_limit_s: float, workers: int) -> dict[str, Any] | None:
    rec = vm.evaluate_row(row)
    if rec.get("status") != "evaluated":
        return None
    model, _ = vm.build_model(row)
    cluster = vm.build_cluster(row)
    lay = vm.layout(row)
    fam = lay["family"]
    n = int(row["hardware"]["num_gpus"])
    _, plan_pub = vm.build_plan(lay, cluster, rec["recompute"])
    # validate_modern already scored the published layout: its record has what we compare.
    rep_pub = dict(
        step_time_s=rec["step_time_s"],
        bubble_fraction=rec["bubble_fraction"],
        time_breakdown=rec["time_breakdown"],
        peak_memory_GB_per_gpu=rec["predicted_peak_GB"],
    )
    wl = open_workload(lay, fam)
    engine = "any-plan" if fam == "torchtitan" else "megatron"
    t0 = time.perf_counter()
    res = solver.plan(
        model, cluster, wl, time_limit_s=time_limit_s, num_workers=workers, engine=engine
    )
    wall = time.perf_counter() - t0
    out: dict[str, Any] = dict(
        id=row["id"],
        group=row["group"],
        gpus=n,
        engine=engine,
        status=str(res.status),
        wall_s=wall,
        measured=rec["measured_tokens_per_s_per_gpu"],
        published=describe(plan_pub),
        published_pred=rec["predicted_tokens_per_s_per_gpu"],
        published_feasible=rec["feasible"],
    )
    if res.plan is None:
        out.update(planner=None, planner_pred=None, ratio=None, why=f"no plan: {res.message}")
        return out
    rep_own = solver.evaluate(model, cluster, wl, res.plan).to_dict()
    own = describe(res.plan)
    out.update(
        planner=own,
        planner_pred=rep_own["tokens_per_s"] / n if rep_own["tokens_per_s"] else None,
    )
    out["ratio"] = (
        out["planner_pred"] / out["published_pred"]
        if out["planner_pred"] and out["published_pred"]
        else None
    )
    reason = why(out["published"], own, components(rep_pub), components(rep_own))
    if out["ratio"] is not None and out["ratio"] < 0.999:
        reason += " | planner slower: " + slower_because(
            out["published"], wl, res, rep_own, solver.evaluate(model, cluster, wl, plan_pub)
        )
    out["why"] = reason
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=None, help="regex on row ids")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "plan_quality_published.json")
    )
    args = ap.parse_args(argv)
    rows = json.loads((vm.shared_dir() / "data" / "published-runs-modern.json").read_text())["runs"]
    if args.rows:
        rows = [r for r in rows if re.search(args.rows, r["id"])]
    recs = []
    hdr = f"{'row':56s} {'GPUs':>5s} {'published t/p/v/d mb rc':>26s} {'planner t/p/v/d mb rc':>26s} {'pub':>6s} {'plan':>6s} {'ratio':>6s} {'meas':>6s}"
    print(hdr)
    for row in rows:
        r = run_row(row, args.time_limit, args.workers)
        if r is None:
            continue
        recs.append(r)
        p, o = r["published"], r["planner"]

        def lay(d: dict[str, Any] | None) -> str:
            if d is None:
                return "-"
            return f"{d['tp']}/{d['pp']}/{d['v']}/{d['dp']} {d['mb']} {d['recompute']}"

        fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(
            f"{r['id']:56s} {r['gpus']:5d} {lay(p):>26s} {lay(o):>26s} {fmt(r['published_pred']):>6s} {fmt(r['planner_pred']):>6s} {ratio:>6s} {fmt(r['measured']):>6s}"
        )
        print(f"    {r['status']}, {r['wall_s']:.1f} s: {r['why']}")
    ratios = [r["ratio"] for r in recs if r["ratio"] is not None]
    at_least = sum(1 for x in ratios if x >= 0.999)
    print(
        f"\n{len(recs)} rows; planner predicted at least as fast as the published layout on {at_least} of {len(ratios)}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(rows=recs), indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
