"""Measure on this machine's GPUs (or CPU with gloo) and write raw JSON (torch + stdlib).

``python solver/profile/run.py {profile,validate,all,check} --out raw.json`` (see ``run.py``)
spawns one process per GPU (:func:`spawn_job`); rank 0 writes the raw JSON after every case,
so a run cut short still leaves everything measured so far.  The JSON is turned into a
calibration YAML and a measured-vs-predicted table on a machine with the full package:
``shardwise profile --from-json`` and ``shardwise validate --from-json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import spawn

from . import bench, blocks, cases
from .env import COMM_ENV, DistContext, apply_comm_env, free_port, init_distributed
from .gpt import FUSIONS, GPTConfig, check_tp, parse_shape
from .plans import PRESETS_HELP, layout_from_plan, preset_plan
from .raw import RAW_FORMAT

__all__ = ["RAW_FORMAT", "build_job", "main", "spawn_job"]


_DTYPES = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
    "fp64": torch.float64,
}

#: GPU defaults: the two model shapes of the validation suite, Megatron GPT hyper-parameters.
GPU_SHAPES = ("h4096-l8", "h8192-l4")
GPU_SEQ = 2048
#: Megatron-LM GPT default hidden and attention dropout.
GPU_DROPOUT = 0.1
#: Fusions of the GPU suite (``GPTConfig.fusion``): Megatron-LM's fused kernels and gradient
#: accumulation, which the catalog prices.  CPU runs stay eager (Inductor on CPU needs a C++
#: compiler).
GPU_FUSION = "megatron"
#: Micro-batch sizes of the GPU suite (global batch 8 sequences: 8, 4 and 2 micro-batches).
GPU_MICRO_BATCHES = "1,2,4"
#: Fractions of GPU memory :func:`cases.estimate_train_bytes` may reach before a case is
#: skipped rather than run (see ``_run_case``).
SINGLE_GPU_MEMORY_LIMIT = 0.92
MULTI_GPU_MEMORY_LIMIT = 0.80


# ----------------------------------------------------------------------------------------------
# the job: a JSON-able description of everything one spawn measures
# ----------------------------------------------------------------------------------------------
def build_job(args: argparse.Namespace) -> dict[str, Any]:
    """Turn the command line into a job dict (validated here, before any process starts)."""
    cpu = bool(args.cpu)
    world = args.world or (2 if cpu else torch.cuda.device_count())
    if world < 1:
        raise ValueError("--world: no CUDA device found; pass --cpu for a gloo run on CPU")
    if not cpu and world > torch.cuda.device_count():
        raise ValueError(f"--world: must be <= {torch.cuda.device_count()} GPUs, got {world}")
    what = args.command
    job: dict[str, Any] = {
        "backend": "gloo" if cpu else "nccl",
        "world": world,
        "out": str(args.out),
        "time_budget_s": args.time_budget_s,
        "profile": None,
        "train": [],
        "inference": [],
        "checks": [],
        "check_dir": None,
    }
    if what in ("profile", "all"):
        if cpu:
            sizes = bench.ProfileSizes.cpu()
        else:
            sizes = bench.ProfileSizes.gpu_quick() if args.quick else bench.ProfileSizes.gpu()
        if args.fusion is not None:
            sizes = dataclasses.replace(sizes, block_fusion=args.fusion)
        job["profile"] = {"sizes": sizes.to_dict(), "dtype": "fp32" if cpu else "bf16"}
    if what == "check":
        job["checks"] = check_cases(world, args.check_dir)
        job["check_dir"] = str(args.check_dir) if args.check_dir else None
        return job
    if what not in ("validate", "all"):
        return job
    shapes = _split(args.shapes) or (["tiny"] if cpu else list(GPU_SHAPES))
    seq = args.seq or (32 if cpu else GPU_SEQ)
    dropout = GPU_DROPOUT if args.dropout is None and not cpu else (args.dropout or 0.0)
    dtype = args.dtype or ("fp32" if cpu else "bf16")
    mbs = [int(x) for x in _split(args.micro_batches or ("1" if cpu else GPU_MICRO_BATCHES))]
    # With --plan files, presets run only if asked for; "none" asks for none.
    default_train = [] if args.plan else ["single", "dp2", "tp2", "pp2"]
    default_infer = [] if args.plan else ["single", "tp2", "pp2"]
    presets = _presets(args.presets, default_train)
    infer_presets = _presets(args.infer_presets, default_infer)
    infer_batches = [int(x) for x in _split(args.infer_batches)] or [1, 32]
    prompt = args.prompt or (16 if cpu else 1024)
    gen = args.gen or (4 if cpu else 64)
    plans: list[tuple[str, dict[str, Any]]] = []
    for path in args.plan or []:
        plans.append((Path(path).stem, json.loads(Path(path).read_text())))
    fusion = args.fusion or ("none" if cpu else GPU_FUSION)
    cfgs = [parse_shape(s, seq_len=seq, dropout=dropout, fusion=fusion) for s in shapes]
    # Order: the first micro-batch size of every preset and shape first, then inference, then
    # the other micro-batch sizes, so a time budget cuts the least important cases.
    rounds: list[list[dict[str, Any]]] = [[] for _ in mbs]
    for cfg in cfgs:
        for k, mb in enumerate(mbs):
            for name in presets:
                plan = preset_plan(
                    name,
                    kind="training",
                    num_layers=cfg.layers,
                    micro_batch_size=mb,
                    global_batch_size=args.global_batch,
                )
                rounds[k].append(_train_case(f"{cfg.name}/{name}/mb{mb}", cfg, plan, args, dtype))
        for label, plan in plans:
            kind = plan.get("plan", plan).get("kind")
            if kind == "training":
                rounds[0].append(_train_case(f"{cfg.name}/{label}", cfg, plan, args, dtype))
    job["train"] = rounds[0]
    for cfg in cfgs:
        for name in infer_presets:
            for b in infer_batches:
                plan = preset_plan(name, kind="inference", num_layers=cfg.layers, batch_size=b)
                job["inference"].append(
                    _infer_case(f"{cfg.name}/{name}/b{b}", cfg, plan, args, dtype, prompt, gen)
                )
        for label, plan in plans:
            if plan.get("plan", plan).get("kind") == "inference":
                job["inference"].append(
                    _infer_case(f"{cfg.name}/{label}", cfg, plan, args, dtype, prompt, gen)
                )
    job["train_late"] = [c for r in rounds[1:] for c in r]
    for c in job["train"] + job["train_late"] + job["inference"]:
        lay = layout_from_plan(c["plan"], c["shape"]["layers"])  # refuse bad plans up front
        if lay.world_needed > world:
            raise ValueError(f"{c['name']}: the plan needs {lay.world_needed} GPUs, have {world}")
        check_tp(GPTConfig.from_dict(c["shape"]), lay.tp)
    return job


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _presets(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return default
    names = _split(text)
    return [] if names == ["none"] else names


def _train_case(
    name: str, cfg: GPTConfig, plan: dict[str, Any], args: argparse.Namespace, dtype: str
) -> dict[str, Any]:
    return {
        "name": name,
        "shape": cfg.to_dict(),
        "plan": plan,
        "dtype": dtype,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
    }


def _infer_case(
    name: str,
    cfg: GPTConfig,
    plan: dict[str, Any],
    args: argparse.Namespace,
    dtype: str,
    prompt: int,
    gen: int,
) -> dict[str, Any]:
    return {
        "name": name,
        "shape": cfg.to_dict(),
        "plan": plan,
        "dtype": dtype,
        "prompt": prompt,
        "gen": gen,
        "reps": args.reps,
        "seed": args.seed,
    }


def check_cases(world: int, check_dir: str | None) -> list[dict[str, Any]]:
    """Correctness checks (float64, no dropout, tiny shape): TP, PP and DP training steps and
    TP and PP inference, each against the same step on one device."""
    cfg = parse_shape("tiny", seq_len=8)
    n = min(world, 2)
    out: list[dict[str, Any]] = []
    for name in (f"tp{n}", f"pp{n}", f"dp{n}"):
        plan = preset_plan(name, kind="training", num_layers=cfg.layers, global_batch_size=4)
        out.append(
            {
                "name": f"train/{name}",
                "kind": "training",
                "shape": cfg.to_dict(),
                "plan": plan,
                "seed": 5,
                "global_batch": 4,
                "micro_batch": 1,
            }
        )
    for name in (f"tp{n}", f"pp{n}"):
        plan = preset_plan(name, kind="inference", num_layers=cfg.layers, batch_size=2)
        out.append(
            {
                "name": f"inference/{name}",
                "kind": "inference",
                "shape": cfg.to_dict(),
                "plan": plan,
                "seed": 5,
                "prompt": 6,
                "gen": 3,
                "batch": 2,
            }
        )
    del check_dir
    return out


# ----------------------------------------------------------------------------------------------
# the worker (one per GPU)
# ----------------------------------------------------------------------------------------------
def _utc_now() -> str:
    # timezone.utc, not datetime.UTC: the GPU machine's Python may be older than 3.11.
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    return now.isoformat(timespec="seconds")


def _meta(ctx: DistContext) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "date_utc": _utc_now(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "backend": ctx.backend,
        "world": ctx.world,
        "env": {k: os.environ.get(k) for k in COMM_ENV},
    }
    if ctx.cuda:
        meta["cuda"] = torch.version.cuda
        try:
            v = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
            meta["nccl"] = ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
        except (AttributeError, RuntimeError):
            meta["nccl"] = None
        props = [torch.cuda.get_device_properties(i) for i in range(ctx.world)]
        meta["devices"] = [p.name for p in props]
        meta["device_memory_GB"] = [p.total_memory / 1e9 for p in props]
        meta["device"] = props[0].name
    else:
        meta["device"] = "cpu"
        meta["devices"] = ["cpu"] * ctx.world
        meta["cpu"] = platform.processor() or platform.machine()
        meta["torch_threads"] = torch.get_num_threads()
    return meta


class _Writer:
    """Rank 0's raw document, rewritten atomically after every case."""

    def __init__(self, path: str, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = {
            "format": RAW_FORMAT,
            "meta": meta,
            "profile": None,
            "train": [],
            "inference": [],
            "checks": [],
            "complete": False,
        }
        self.t0 = time.perf_counter()
        self.save()

    def save(self) -> None:
        self.doc["elapsed_s"] = time.perf_counter() - self.t0
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(_finite(self.doc), indent=1) + "\n")
        os.replace(tmp, self.path)


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _log(ctx: DistContext, msg: str) -> None:
    if ctx.rank == 0:
        sys.stderr.write(f"[shardwise-profile {time.strftime('%H:%M:%S')}] {msg}\n")
        sys.stderr.flush()


def _agree(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _summary_train(case: dict[str, Any], res: cases.CaseResult) -> dict[str, Any]:
    ranks = [r for r in res.ranks if r is not None]
    nsteps = len(ranks[0]["steps"])
    step = [max(r["steps"][k]["step_s"] for r in ranks) for k in range(nsteps)]
    out: dict[str, Any] = {"step_s": float(np.median(step)), "step_s_all": step}
    losses = [r["steps"][-1].get("loss") for r in ranks if r["steps"][-1].get("loss") is not None]
    if losses:
        out["loss"] = float(np.mean(losses))
    for key in ("peak_allocated_GB", "peak_reserved_GB", "persistent_GB"):
        vals = [r[key] for r in ranks if key in r]
        if vals:
            out[key] = max(vals)
    stages: dict[int, dict[str, float]] = {}
    for r in ranks:
        st = stages.setdefault(r["stage"], {})
        for tag in ("forward_s", "backward_s", "dp_allreduce_s", "optimizer_s"):
            vals = [x.get(tag, 0.0) for x in r["steps"]]
            st[tag] = max(st.get(tag, 0.0), float(np.median(vals)))
        if "peak_allocated_GB" in r:
            st["peak_allocated_GB"] = max(st.get("peak_allocated_GB", 0.0), r["peak_allocated_GB"])
            st["persistent_GB"] = max(st.get("persistent_GB", 0.0), r["persistent_GB"])
    out["stages"] = [dict(stage=s, **v) for s, v in sorted(stages.items())]
    return out


def _summary_infer(res: cases.CaseResult) -> dict[str, Any]:
    ranks = [r for r in res.ranks if r is not None]
    n = len(ranks[0]["requests"])
    pre = [max(r["requests"][k]["prefill_s"] for r in ranks) for k in range(n)]
    dec = [max(r["requests"][k]["decode_per_token_s"] for r in ranks) for k in range(n)]
    out: dict[str, Any] = {
        "ttft_ms": 1e3 * float(np.median(pre)),
        "tpot_ms": 1e3 * float(np.median(dec)),
        "ttft_ms_all": [1e3 * x for x in pre],
        "tpot_ms_all": [1e3 * x for x in dec],
    }
    vals = [r["peak_allocated_GB"] for r in ranks if "peak_allocated_GB" in r]
    if vals:
        out["peak_allocated_GB"] = max(vals)
    stages: dict[int, dict[str, float]] = {}
    for r in ranks:
        st = stages.setdefault(r["stage"], {})
        for key in ("prefill_compute_s_median", "decode_compute_per_token_s_median"):
            st[key] = max(st.get(key, 0.0), r[key])
    out["stages"] = [dict(stage=s, **v) for s, v in sorted(stages.items())]
    return out


def _run_check(ctx: DistContext, case: dict[str, Any], check_dir: str | None) -> dict[str, Any]:
    cfg = GPTConfig.from_dict(case["shape"])
    lay = layout_from_plan(case["plan"], cfg.layers)
    if case["kind"] == "training":
        res = cases.run_train(ctx, cfg, lay, steps=1, warmup=0, seed=case["seed"], check=True)
    else:
        res = cases.run_inference(
            ctx,
            cfg,
            lay,
            prompt=case["prompt"],
            gen=case["gen"],
            reps=1,
            seed=case["seed"],
            check=True,
        )
    if ctx.rank != 0:
        return {}
    from .checks import compare_check  # rank 0 only

    summary, tensors = compare_check(case, lay, res.tensors, ctx.dtype)
    if check_dir:
        path = Path(check_dir) / (case["name"].replace("/", "_") + ".pt")
        torch.save(tensors, path)
        summary["tensors"] = str(path)
    return summary


def _worker(rank: int, job: dict[str, Any], port: int) -> None:
    apply_comm_env()  # before init_process_group, in every process
    backend = job["backend"]
    prof_dtype = _DTYPES[
        (job["profile"] or {}).get("dtype", "fp32" if backend == "gloo" else "bf16")
    ]
    if backend == "gloo":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job["world"]))
    ctx = init_distributed(rank, job["world"], backend=backend, port=port, dtype=prof_dtype)
    writer = _Writer(job["out"], _meta(ctx)) if rank == 0 else None
    t_start = time.perf_counter()
    budget = job.get("time_budget_s")

    def over_budget() -> bool:
        late = budget is not None and time.perf_counter() - t_start > budget
        return bool(_agree(ctx, late))

    try:
        if job["profile"] is not None:
            sizes = bench.ProfileSizes.from_dict(job["profile"]["sizes"])
            prof: dict[str, Any] = {
                "sizes": job["profile"]["sizes"],
                "dtype": job["profile"]["dtype"],
            }
            if rank == 0:
                _log(ctx, "profile: GEMMs")
                prof["gemm"] = bench.bench_gemms(ctx, sizes)
                _log(ctx, "profile: memory")
                prof["memory"] = bench.bench_memory(ctx, sizes)
                if sizes.block_shapes:
                    _log(ctx, "profile: whole blocks")
                    prof["blocks"] = blocks.bench_blocks(ctx, sizes)
            ctx.barrier()
            _log(ctx, "profile: collectives")
            prof["collectives"] = bench.bench_collectives(ctx, sizes)
            if writer:
                writer.doc["profile"] = prof
                writer.save()
        ctx.dtype = torch.float64 if backend == "gloo" and job["checks"] else ctx.dtype
        for case in job["checks"]:
            _log(ctx, f"check {case['name']}")
            summary = _run_check(ctx, case, job.get("check_dir"))
            if writer:
                writer.doc["checks"].append(summary)
                writer.save()
        for section in ("train", "inference", "train_late"):
            for case in job.get(section, []):
                key = "train" if section == "train_late" else section
                entry: dict[str, Any] = {k: case[k] for k in case if k != "seed"}
                if over_budget():
                    entry["skipped"] = f"time budget of {budget:g} s used up"
                else:
                    _log(ctx, f"{key} {case['name']}")
                    entry.update(_run_case(ctx, key, case))
                ctx.barrier()
                if writer:
                    writer.doc[key].append(entry)
                    writer.save()
        if writer:
            writer.doc["complete"] = True
            writer.save()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run_case(ctx: DistContext, section: str, case: dict[str, Any]) -> dict[str, Any]:
    cfg = GPTConfig.from_dict(case["shape"])
    lay = layout_from_plan(case["plan"], cfg.layers)
    ctx.dtype = _DTYPES[case["dtype"]]
    if section == "train" and ctx.cuda:
        cap = torch.cuda.get_device_properties(ctx.device).total_memory
        need = max(cases.estimate_train_bytes(cfg, lay, s) for s in range(lay.pp))
        # A single-GPU case that runs out of memory is caught below; in a multi-GPU case the
        # other ranks would wait forever in their next collective, so those get more margin.
        limit = SINGLE_GPU_MEMORY_LIMIT if len(lay.all_ranks) == 1 else MULTI_GPU_MEMORY_LIMIT
        if need > limit * cap:
            return {
                "skipped": f"estimated {need / 1e9:.1f} GB > {100 * limit:.0f}% of "
                f"{cap / 1e9:.1f} GB"
            }
    if section == "train":
        res = cases.run_train(
            ctx, cfg, lay, steps=case["steps"], warmup=case["warmup"], seed=case["seed"]
        )
    else:
        res = cases.run_inference(
            ctx,
            cfg,
            lay,
            prompt=case["prompt"],
            gen=case["gen"],
            reps=case["reps"],
            seed=case["seed"],
        )
    if ctx.rank != 0:
        return {}
    errors = [r["error"] for r in res.ranks if r is not None and "error" in r]
    if errors:
        return {"error": errors[0]}
    summary = _summary_train(case, res) if section == "train" else _summary_infer(res)
    return {"ranks": [r for r in res.ranks if r is not None], "summary": summary}


def spawn_job(job: dict[str, Any]) -> None:
    """Run ``job`` in ``job['world']`` processes (one per GPU, or gloo on CPU) and wait."""
    apply_comm_env()  # inherited by the children too
    Path(job["out"]).parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    spawn(_worker, args=(job, port), nprocs=job["world"], join=True)  # type: ignore[no-untyped-call]


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python solver/profile/run.py",
        description="Measure GEMMs, HBM, collectives (profile) and real TP/PP/DP runs of a GPT "
        "stack (validate) on this machine; write raw JSON for `shardwise profile --from-json` "
        "and `shardwise validate --from-json`.",
    )
    p.add_argument("command", choices=["profile", "validate", "all", "check"])
    p.add_argument("--out", required=True, type=Path, help="raw JSON to write")
    p.add_argument("--cpu", action="store_true", help="CPU processes with gloo, tiny sizes")
    p.add_argument("--quick", action="store_true", help="(GPU) a few profile sizes: a smoke test")
    p.add_argument("--world", type=int, default=0, help="processes (default: all GPUs; 2 on CPU)")
    p.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="start no new case after this many seconds (cases are cut, not the run)",
    )
    p.add_argument("--shapes", help="model shapes, e.g. h4096-l8,h8192-l4 (CPU: tiny)")
    p.add_argument("--seq", type=int, default=0, help="training sequence length (GPU 2048)")
    p.add_argument("--dropout", type=float, default=None, help="dropout (GPU default 0.1)")
    p.add_argument(
        "--fusion",
        choices=list(FUSIONS),
        help="Megatron-LM fusions of the training step: megatron (fused elementwise kernels "
        "and gradient accumulation, GPU default), compile (the elementwise ones only) or none "
        "(eager, CPU default)",
    )
    p.add_argument("--dtype", choices=sorted(_DTYPES), help="compute dtype (GPU bf16, CPU fp32)")
    p.add_argument(
        "--presets",
        help=f"training plans: {PRESETS_HELP}, or none; default single,dp2,tp2,pp2 "
        "(none when --plan is given)",
    )
    p.add_argument("--plan", action="append", help="a plan JSON to run as well (repeatable)")
    p.add_argument("--micro-batches", help="micro-batch sizes (GPU default 1,2,4; CPU 1)")
    p.add_argument("--global-batch", type=int, default=8, help="sequences per training step")
    p.add_argument("--steps", type=int, default=6, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--infer-presets", help="inference plans, or none (default single,tp2,pp2)")
    p.add_argument("--infer-batches", help="inference batch sizes (default 1,32)")
    p.add_argument("--prompt", type=int, default=0, help="prompt tokens (GPU 1024)")
    p.add_argument("--gen", type=int, default=0, help="generated tokens (GPU 64)")
    p.add_argument("--reps", type=int, default=3, help="timed inference requests")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    p.add_argument("--check-dir", help="(check) also save the compared tensors here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``run.py``; returns the exit code (2 for bad arguments)."""
    args = parser().parse_args(argv)
    try:
        job = build_job(args)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        return 2
    t0 = time.perf_counter()
    try:
        spawn_job(job)
    except Exception:  # a worker failed: its traceback is the useful part
        traceback.print_exc()
        sys.stderr.write(f"error: the run failed; partial results are in {job['out']}\n")
        return 1
    sys.stderr.write(f"wrote {job['out']} in {time.perf_counter() - t0:.0f} s\n")
    return 0
