"""Plan quality: the planner's plans against the baselines and against Megatron-LM 2021 Table 1.

Part A, heterogeneous clusters: for each (model, cluster, workload) the planner's plan, the
seed rubric's plan (:func:`solver.baselines.rubric_plan`) and the best Megatron-style uniform
plan (:func:`solver.baselines.uniform_best`: one pool, one TP, even layer split, every
(t, p, d, b, recompute, ...) point; above :data:`FULL_GRID_MAX_GPUS` GPUs the largest DP degree
and depths dividing the layer count) are all scored by the same evaluator.  The ratio column is
"how much better the planner is": planner / baseline for ``max_throughput`` (tokens/s), and
baseline / planner for ``min_cost`` / ``min_gpus`` / ``min_latency`` (lower is better there), so
a ratio above 1 always means the planner wins.

Part B, Megatron-LM 2021 Table 1 (Narayanan et al. SC'21, weak scaling, GPT 1.7B-1T on
32-3072 A100s): each row is rebuilt as ``benchmarks/published_runs.py`` rebuilds it (same model,
Selene cluster and numerics) and the planner is asked for its own plan under two knob sets
(:data:`KNOB_SETS`): ``paper`` -- the settings the paper ran (fp16 with 16 B/param, ZeRO-0,
full recompute, micro-batch 1, no sequence parallelism, gradient all-reduce after the
backward), only the schedule (1F1B or interleaved) left free; ``modern`` -- the same numerics
with today's Megatron-LM options also allowed (distributed optimizer, selective recompute,
micro-batch 1/2/4, sequence parallelism, overlapped gradient reduce).  The published
configuration is a valid plan under both and is re-scored under the same rules.  Reported:
the planner's predicted tokens/s over the published configuration's predicted tokens/s (same
evaluator: the value of the search alone), and over the published *measured* throughput
converted to tokens/s (TFLOP/s per GPU x GPUs / eq. 3 FLOPs per token).

Part A also solves every instance twice: the planner's default (the best plan at least one
engine launches: Megatron-LM/torchrun/DeepSpeed for training, vLLM/SGLang/TensorRT-LLM for
inference) and ``engine="any-plan"`` (the unrestricted optimum, beyond any engine), side by
side, with the engines that launch each plan; ``launch/free`` is the launchable objective's
advantage over the unrestricted one (<= 1: what launchability costs).

Usage::

    python benchmarks/plan_quality.py                 # everything, 10 s per planner call
    python benchmarks/plan_quality.py --only hetero --no-unrestricted   # launchable only
    python benchmarks/plan_quality.py --quick         # small instances, 3 s per call
    python benchmarks/plan_quality.py --only table1 --knobs paper --time-limit 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import published_runs as pr  # noqa: E402

from solver import load_cluster, load_model, load_workload  # noqa: E402
from solver.baselines import rubric_plan  # noqa: E402
from solver.baselines.uniform import uniform_grid  # noqa: E402
from solver.construction import objective_of  # noqa: E402
from solver.costmodel import narayanan_eq3_flops  # noqa: E402
from solver.evaluate import evaluate  # noqa: E402
from solver.planner import plan  # noqa: E402
from solver.specs import (  # noqa: E402
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    TrainingWorkload,
)

AnyWorkload = TrainingWorkload | InferenceWorkload

#: Clusters above this many GPUs get a reduced uniform grid: the largest DP degree of each point
#: and pipeline depths dividing the layer count (what Megatron-LM itself accepts without
#: uneven-split flags).  The full grid of every DP degree and depth takes tens of minutes there.
FULL_GRID_MAX_GPUS = 64


# --------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------
def composed(name: str, parts: list[tuple[str, str, int]]) -> Cluster:
    """A cluster made of pools of bundled clusters: ``(cluster, pool, nodes)`` each.

    Pools of different bundled clusters meet over the default fabric (the slower NIC of the
    two, DESIGN.md), so no link figure is invented here.
    """
    pools = []
    for cluster, pool, nodes in parts:
        p = load_cluster(cluster).pool(pool)
        pools.append(p.model_copy(update={"nodes": nodes}))
    return Cluster(name=name, pools=pools)


#: Inline clusters built from bundled pools (priced where the bundled pool is).
COMPOSED: dict[str, Callable[[], Cluster]] = {
    # 2 DGX H100 + 2 DGX A100: two NVSwitch generations, InfiniBand between them.
    "h100x16+a100x16": lambda: composed(
        "h100x16+a100x16", [("hetero-mix", "h100", 2), ("hetero-mix", "a100", 2)]
    ),
    # 1 DGX A100 + 2 PCIe L40S servers: NVSwitch next to PCIe, 100 GbE NICs on the L40S side.
    "a100x8+l40sx16": lambda: composed(
        "a100x8+l40sx16", [("hetero-mix", "a100", 1), ("hetero-mix", "l40s", 2)]
    ),
    # 1 DGX H100 + 1 H200 node: same NVLink generation, 80 GB next to 141 GB of HBM.
    "h100x8+h200x8": lambda: composed(
        "h100x8+h200x8", [("hetero-4096-4type", "h100", 1), ("hetero-4096-4type", "h200", 1)]
    ),
}


def cluster_by_name(name: str) -> Cluster:
    return COMPOSED[name]() if name in COMPOSED else load_cluster(name)


@dataclass(frozen=True)
class Case:
    model: str
    cluster: str
    workload: str
    quick: bool = False  # part of --quick


HETERO_CASES = [
    Case("tiny-gpt", "tiny-hetero", "train-tiny", quick=True),
    Case("gpt-1.7b", "tiny-hetero", "train-gpt-s2048", quick=True),
    Case("tiny-llama", "tiny-hetero", "infer-chat-slo", quick=True),
    Case("gpt-7.5b", "hetero-mix", "train-gpt-s2048", quick=True),
    Case("llama3-70b", "hetero-mix", "train-llama-s8192"),
    Case("llama3-70b", "hetero-mix", "infer-chat-slo", quick=True),
    Case("llama3-70b", "hetero-mix", "infer-min-cost"),
    Case("llama3-8b", "hetero-mix", "infer-min-gpus"),
    Case("gpt-18b", "h100x16+a100x16", "train-gpt-s2048", quick=True),
    Case("llama3-8b", "a100x8+l40sx16", "train-llama-s8192"),
    Case("llama3-70b", "h100x8+h200x8", "train-llama-s8192"),
    Case("llama3-70b", "h100x8+h200x8", "infer-chat-slo"),
    Case("gpt3-175b", "hetero-4096-4type", "train-gpt-s2048"),
]


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def maximises(workload: AnyWorkload) -> bool:
    return workload.objective == "max_throughput"


def scored(
    model: Model, cluster: Cluster, workload: AnyWorkload, p: Plan | None
) -> dict[str, Any] | None:
    """Objective and headline metrics of a plan the evaluator accepts (target included)."""
    if p is None:
        return None
    rep = evaluate(model, cluster, workload, p).to_dict()
    if not rep["feasible"]:
        return None
    target = getattr(workload, "target_throughput_tokens_per_s", None)
    if target is not None and rep["tokens_per_s"] < target * (1 - 1e-9):
        return None
    return {
        "objective": objective_of(rep, workload),
        "tokens_per_s": rep["tokens_per_s"],
        "num_gpus": rep["num_gpus"],
        "shape": shape(p),
    }


def shape(p: Plan) -> str:
    """``3x[h100:tp8 a100:tp4]`` per replica group: replicas, then pool and TP per stage."""
    parts = []
    for rg in p.replica_groups:
        stages = " ".join(f"{st.pool}:tp{st.tp}" for st in rg.stages)
        parts.append(f"{rg.count}x[{stages}]")
    return " + ".join(parts)


def better(a: float, b: float, workload: AnyWorkload) -> bool:
    """Objective ``a`` strictly better than ``b``."""
    return a > b if maximises(workload) else a < b


def advantage(planner: float | None, baseline: float | None, workload: AnyWorkload) -> float | None:
    """> 1 when the planner's objective is better than the baseline's."""
    if planner is None or baseline is None or planner == 0 or baseline == 0:
        return None
    return planner / baseline if maximises(workload) else baseline / planner


def best_uniform(
    model: Model, cluster: Cluster, workload: AnyWorkload, reduced: bool
) -> tuple[dict[str, Any] | None, int]:
    """The best uniform grid plan by the evaluator (and the number of points scored).

    Same grid and scoring as :func:`solver.baselines.uniform_best`; ``reduced`` keeps the
    largest DP degree and pipeline depths that divide the layer count.
    """
    best: dict[str, Any] | None = None
    points = 0
    for row, p in uniform_grid(model, cluster, workload, largest_dp_only=reduced):
        if reduced and model.num_layers % row["pp"]:
            continue
        points += 1
        s = scored(model, cluster, workload, p)
        if s is not None and (best is None or better(s["objective"], best["objective"], workload)):
            best = s
    return best, points


@dataclass
class HeteroRow:
    model: str
    cluster: str
    workload: str
    objective: str
    gpus: int
    status: str
    solve_s: float
    planner: dict[str, Any] | None
    rubric: dict[str, Any] | None
    uniform: dict[str, Any] | None
    uniform_grid: str
    uniform_points: int
    uniform_s: float
    vs_rubric: float | None = None
    vs_uniform: float | None = None
    message: str = ""
    launchable_by: list[str] = field(default_factory=list)
    unrestricted: dict[str, Any] | None = None
    unrestricted_status: str | None = None
    unrestricted_launchable_by: list[str] = field(default_factory=list)
    launch_vs_free: float | None = None


def run_hetero(case: Case, time_limit_s: float, unrestricted: bool = True) -> HeteroRow:
    model, cluster, workload = (
        load_model(case.model),
        cluster_by_name(case.cluster),
        load_workload(case.workload),
    )
    t0 = time.perf_counter()
    res = plan(model, cluster, workload, time_limit_s=time_limit_s, compare_baseline=False)
    solve_s = time.perf_counter() - t0
    mine = scored(model, cluster, workload, res.plan) if res.ok else None
    rub = scored(model, cluster, workload, rubric_plan(model, cluster, workload))
    reduced = cluster.num_gpus > FULL_GRID_MAX_GPUS
    t0 = time.perf_counter()
    uni, points = best_uniform(model, cluster, workload, reduced)
    uniform_s = time.perf_counter() - t0
    row = HeteroRow(
        model=case.model,
        cluster=case.cluster,
        workload=case.workload,
        objective=workload.objective,
        gpus=cluster.num_gpus,
        status=res.status.value,
        solve_s=solve_s,
        planner=mine,
        rubric=rub,
        uniform=uni,
        uniform_grid="largest DP, pp | layers" if reduced else "full",
        uniform_points=points,
        uniform_s=uniform_s,
        message=res.message,
    )
    obj = mine["objective"] if mine else None
    row.vs_rubric = advantage(obj, rub["objective"] if rub else None, workload)
    row.vs_uniform = advantage(obj, uni["objective"] if uni else None, workload)
    row.launchable_by = res.launchable_by
    if unrestricted:
        free = plan(
            model, cluster, workload, time_limit_s=time_limit_s, compare_baseline=False,
            engine="any-plan",
        )  # fmt: skip
        row.unrestricted = scored(model, cluster, workload, free.plan) if free.ok else None
        row.unrestricted_status = free.status.value
        row.unrestricted_launchable_by = free.launchable_by
        free_obj = row.unrestricted["objective"] if row.unrestricted else None
        row.launch_vs_free = advantage(obj, free_obj, workload)
    return row


# --------------------------------------------------------------------------------------------
# Megatron-LM 2021 Table 1
# --------------------------------------------------------------------------------------------
#: Knob sets for Part B.  "paper": what Megatron-LM 2021 ran (published_runs.build_plan), only
#: the schedule left free; "modern": what Megatron-LM offers today on the same numerics --
#: distributed optimizer, selective recompute, micro-batches 1/2/4, sequence parallelism and
#: gradient reduce overlapped with backward -- with the paper's settings still allowed, so the
#: published configuration is a valid plan under both and is re-scored under the same rules.
KNOB_SETS = ("paper", "modern")


def table1_workload(case: dict[str, Any], knobs: str) -> TrainingWorkload:
    """The workload of a Table 1 row under the ``knobs`` rules (see :data:`KNOB_SETS`)."""
    wl, _ = pr.build_plan(case)
    update: dict[str, Any] = {"schedules": ["1f1b", "interleaved"]}
    if knobs == "modern":
        update |= {
            "zero_stage": [0, 1],
            "recompute": ["none", "selective", "full"],
            "micro_batch_sizes": [1, 2, 4],
            "sequence_parallel": [True, False],
            "overlap_grad_reduce": True,
        }
    return wl.model_copy(update=update)


@dataclass
class Table1Row:
    id: str
    knobs: str
    gpus: int
    published: str
    status: str
    solve_s: float
    planner: str | None
    published_pred_tokens_per_s: float
    planner_tokens_per_s: float | None
    measured_tokens_per_s: float
    vs_published_pred: float | None
    vs_measured: float | None
    published_pred_vs_measured: float
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def measured_tokens_per_s(case: dict[str, Any]) -> float:
    """Published TFLOP/s per GPU -> tokens/s, in the paper's own eq. 3 FLOP convention."""
    mm = case["model"]
    B, s = case["global_batch"], mm["seq_len"]
    flops = narayanan_eq3_flops(B, s, mm["layers"], mm["hidden"], mm["vocab"])
    step_s = flops / (case["measured"]["tflops_per_gpu"] * 1e12 * case["cluster"]["num_gpus"])
    return B * s / step_s


def run_table1(case: dict[str, Any], knobs: str, time_limit_s: float) -> Table1Row:
    model = pr.build_model(case)
    cluster = pr.build_cluster(case)
    _, pub_plan = pr.build_plan(case)
    workload = table1_workload(case, knobs)
    pub = evaluate(model, cluster, workload, pub_plan).to_dict()
    assert pub["feasible"], (case["id"], pub["violations"])
    t0 = time.perf_counter()
    res = plan(model, cluster, workload, time_limit_s=time_limit_s, compare_baseline=False)
    solve_s = time.perf_counter() - t0
    mine = scored(model, cluster, workload, res.plan) if res.ok else None
    meas = measured_tokens_per_s(case)
    par = case["parallel"]
    pub_tps = float(pub["tokens_per_s"])
    return Table1Row(
        id=case["id"],
        knobs=knobs,
        gpus=case["cluster"]["num_gpus"],
        published=f"t{par['tp']} p{par['pp']} d{par['dp']}",
        status=res.status.value,
        solve_s=solve_s,
        planner=mine["shape"] if mine else None,
        published_pred_tokens_per_s=pub_tps,
        planner_tokens_per_s=mine["tokens_per_s"] if mine else None,
        measured_tokens_per_s=meas,
        vs_published_pred=mine["tokens_per_s"] / pub_tps if mine else None,
        vs_measured=mine["tokens_per_s"] / meas if mine else None,
        published_pred_vs_measured=pub_tps / meas,
        message=res.message,
        extra={"planner_gpus": mine["num_gpus"] if mine else None, "gap": res.gap},
    )


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _obj(d: dict[str, Any] | None) -> str:
    return "-" if d is None else f"{d['objective']:.4g}"


def print_tables(hetero: list[HeteroRow], t1: list[Table1Row]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=220)
    if hetero:
        t = Table(title="A. Heterogeneous clusters (ratio > 1: planner better)")
        for col in ("model", "cluster", "workload", "status", "s", "planner", "rubric", "uniform",
                    "vs rubric", "vs uniform", "planner plan"):  # fmt: skip
            t.add_column(col)
        for r in hetero:
            cells = [
                r.model, r.cluster, r.workload, r.status, f"{r.solve_s:.1f}",
                _obj(r.planner), _obj(r.rubric), _obj(r.uniform),
                _fmt(r.vs_rubric), _fmt(r.vs_uniform), r.planner["shape"] if r.planner else r.message[:60],
            ]  # fmt: skip
            t.add_row(*map(escape, cells))
        console.print(t)
        if any(r.unrestricted_status is not None for r in hetero):
            t = Table(title="A'. Launchable plan vs the unrestricted optimum (launch/free <= 1)")
            for col in ("model", "cluster", "workload", "launchable", "status", "engines",
                        "unrestricted", "status ", "engines ", "launch/free", "unrestricted plan"):  # fmt: skip
                t.add_column(col)
            for r in hetero:
                cells = [
                    r.model, r.cluster, r.workload, _obj(r.planner), r.status,
                    ",".join(r.launchable_by) or "-", _obj(r.unrestricted),
                    r.unrestricted_status or "-", ",".join(r.unrestricted_launchable_by) or "none",
                    _fmt(r.launch_vs_free), r.unrestricted["shape"] if r.unrestricted else "-",
                ]  # fmt: skip
                t.add_row(*map(escape, cells))
            console.print(t)
    for knobs in KNOB_SETS:
        rows = [r for r in t1 if r.knobs == knobs]
        if not rows:
            continue
        t = Table(title=f"B. Megatron-LM 2021 Table 1, {knobs} knobs (tokens/s)")
        for col in ("run", "GPUs", "published", "status", "s", "pred(pub)", "pred(planner)",
                    "measured", "planner/pub", "planner/meas", "pub/meas", "planner plan"):  # fmt: skip
            t.add_column(col)
        for r in rows:
            cells = [
                r.id.removeprefix("megatron21_t1_"), str(r.gpus), r.published, r.status,
                f"{r.solve_s:.1f}", f"{r.published_pred_tokens_per_s:,.0f}",
                _fmt(r.planner_tokens_per_s, ",.0f"), f"{r.measured_tokens_per_s:,.0f}",
                _fmt(r.vs_published_pred), _fmt(r.vs_measured), f"{r.published_pred_vs_measured:.3f}",
                (r.planner or r.message[:60])[:60],
            ]  # fmt: skip
            t.add_row(*map(escape, cells))
        console.print(t)


def geomean(xs: list[float]) -> float | None:
    import math

    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per planner call (10)")
    ap.add_argument(
        "--quick", action="store_true", help="small instances and Table 1 rows <= 512 GPUs"
    )
    ap.add_argument("--only", choices=["hetero", "table1"], help="run one part only")
    ap.add_argument(
        "--knobs", nargs="+", choices=KNOB_SETS, default=list(KNOB_SETS), help="Part B knob sets"
    )
    ap.add_argument(
        "--no-unrestricted",
        action="store_true",
        help="Part A: skip the unrestricted (any-plan) solve beside the launchable one",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "plan_quality.json"))
    args = ap.parse_args(argv)
    limit = min(args.time_limit, 3.0) if args.quick else args.time_limit

    hetero: list[HeteroRow] = []
    if args.only in (None, "hetero"):
        for case in HETERO_CASES:
            if args.quick and not case.quick:
                continue
            hetero.append(run_hetero(case, limit, unrestricted=not args.no_unrestricted))
            print(f"done {case}", file=sys.stderr, flush=True)
    t1: list[Table1Row] = []
    if args.only in (None, "table1"):
        data = json.loads((pr.shared_dir() / "data" / "published-runs.json").read_text())
        for c in data["training_cases"]:
            if c["group"] != pr.TABLE1 or (args.quick and c["cluster"]["num_gpus"] > 512):
                continue
            for knobs in args.knobs:
                t1.append(run_table1(c, knobs, limit))
                print(f"done {c['id']} ({knobs})", file=sys.stderr, flush=True)

    print_tables(hetero, t1)
    summary: dict[str, Any] = {
        "hetero_geomean_vs_rubric": geomean([r.vs_rubric for r in hetero if r.vs_rubric]),
        "hetero_geomean_vs_uniform": geomean([r.vs_uniform for r in hetero if r.vs_uniform]),
        "hetero_geomean_launch_vs_free": geomean(
            [r.launch_vs_free for r in hetero if r.launch_vs_free]
        ),
    }
    for knobs in KNOB_SETS:
        rows = [r for r in t1 if r.knobs == knobs]
        if not rows:
            continue
        summary[f"table1_{knobs}_solved"] = sum(r.vs_published_pred is not None for r in rows)
        summary[f"table1_{knobs}_rows"] = len(rows)
        summary[f"table1_{knobs}_geomean_vs_published_pred"] = geomean(
            [r.vs_published_pred for r in rows if r.vs_published_pred]
        )
        summary[f"table1_{knobs}_geomean_vs_measured"] = geomean(
            [r.vs_measured for r in rows if r.vs_measured]
        )
        summary[f"table1_{knobs}_geomean_published_pred_vs_measured"] = geomean(
            [r.published_pred_vs_measured for r in rows]
        )
    print(json.dumps(summary, indent=1))
    out = {
        "about": __doc__.splitlines()[0],
        "time_limit_s": limit,
        "quick": args.quick,
        "summary": summary,
        "hetero": [asdict(r) for r in hetero],
        "table1": [asdict(r) for r in t1],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
