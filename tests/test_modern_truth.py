"""FP8 recipe terms of the modern training model: torchao's rowwise recipe (extra per-axis
casts, priced from one H100 measurement) and Transformer Engine's FP8-saved GEMM inputs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from builders import H100, cluster, gpt, gpu, llama3_8b, pool, train, training_plan
from ortools.sat.python import cp_model

from solver.catalog import resolve_gpu
from solver.costmodel import (
    activation_transient_bytes,
    block_activation_bytes,
    block_time,
    model_state_bytes,
    stage_params_per_gpu,
)
from solver.costmodel import constants as C
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import FP8_ROWWISE_EXTRA_CAST_BYTES
from solver.costmodel.memory import TE_FP8_SAVED_INPUT_BYTES, grads_phase_activation_bytes
from solver.costmodel.stack import Stack, stack_of
from solver.cpsat.subproblems import families
from solver.cpsat.tables.build import build_tables, for_dp
from solver.cpsat.training.data import KB, TrainTables
from solver.cpsat.training.model import TrainingModel
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.evaluate.ledger import training_memory_ledger
from solver.io import load_workload
from solver.planner import plan
from solver.result import Status
from solver.specs import Model

RAW = (
    Path(__file__).resolve().parent.parent
    / "benchmarks/validation/modern/raw-h100x1-float8-block-run1.json"
)
LINK = LinkTier(450.0, 1.0, "nvlink")


def llama8b() -> Model:
    return llama3_8b()


def _block_s(recipe: str, *, tp: int = 1, sp: bool = False) -> float:
    st = Stack(kernels="compiled_blocks", fp8_recipe=recipe)  # type: ignore[arg-type]
    t = block_time(
        llama8b(),
        resolve_gpu("H100-SXM5-80GB"),
        tp=tp,
        micro_batch=1,
        seq=8192,
        recompute="none",
        sequence_parallel=sp,
        precision="fp8",
        tp_link=LINK,
        stack=st,
    )
    return t.fwd_s + t.bwd_s


def test_rowwise_minus_tensorwise_matches_the_h100_measurement() -> None:
    """The one measurement the constant comes from: rowwise - tensorwise per block (4
    compiled Llama-3-8B blocks, seq 8192, one H100) within 5%."""
    rows = {r["recipe"]: r["step_s"] / r["layers"] for r in json.loads(RAW.read_text())["rows"]}
    measured = rows["rowwise"] - rows["tensorwise"]
    predicted = _block_s("rowwise") - _block_s("tensorwise")
    assert predicted == pytest.approx(measured, rel=0.05)


def test_rowwise_cost_is_the_extra_cast_traffic() -> None:
    """The rowwise surcharge is FP8_ROWWISE_EXTRA_CAST_BYTES per cast element, forward plus
    the backward's 2x, at the H100's HBM rate: under TP8 + SP the replicated input casts do
    not shrink while the GEMMs do, so the relative surcharge grows with TP."""
    gpu = resolve_gpu("H100-SXM5-80GB")
    h, f, tokens = 4096, 14336, 8192
    inputs = 2 * h + h + f  # QKV and MLP-up read h, out-proj its q shard (h), down f
    rate = gpu.memory_bandwidth_GBps * 1e9 * gpu.memory_efficiency
    want = FP8_ROWWISE_EXTRA_CAST_BYTES * tokens * inputs * (1 + C.BACKWARD_ELEMENTWISE_FACTOR)
    assert _block_s("rowwise") - _block_s("tensorwise") == pytest.approx(want / rate, rel=1e-9)
    rel1 = _block_s("rowwise") / _block_s("tensorwise")
    rel8 = _block_s("rowwise", tp=8, sp=True) / _block_s("tensorwise", tp=8, sp=True)
    assert rel8 > rel1 > 1.0


def test_te_fp8_saves_its_gemm_inputs_in_one_byte() -> None:
    """Transformer Engine (delayed scaling) saves the FP8 casts of the QKV, MLP-up and
    down-projection inputs instead of 16-bit ones, plus an FP8 copy of the attention output
    for the output projection; torchao's recipes save 16-bit inputs (no change)."""
    m = llama8b()
    t, s, b = 8, 4096, 1
    kw = dict(tp=t, micro_batch=b, seq=s, recompute="none", sequence_parallel=True)
    plain = block_activation_bytes(m, stack=Stack(), **kw)  # type: ignore[arg-type]
    tensorwise = block_activation_bytes(m, stack=Stack(fp8_recipe="tensorwise"), **kw)  # type: ignore[arg-type]
    te = block_activation_bytes(m, stack=Stack(fp8_recipe="delayed"), **kw)  # type: ignore[arg-type]
    saved = C.ACTIVATION_BYTES - TE_FP8_SAVED_INPUT_BYTES
    h, f, ad = m.hidden_size, m.ffn_hidden_size, m.num_attention_heads * m.kv_channels
    want = s * b * (saved * 2 * h / t + saved * f / t - TE_FP8_SAVED_INPUT_BYTES * ad / t)
    assert tensorwise == plain
    assert plain - te == pytest.approx(want, rel=1e-12)


def test_workload_fp8_recipe_reaches_the_stack_only_under_fp8() -> None:
    base = dict(kind="training", global_batch_size=8, sequence_length=2048)
    wl = load_workload({**base, "precision": "fp8", "fp8_recipe": "rowwise"})
    assert stack_of(wl).fp8_recipe == "rowwise"
    wl16 = load_workload({**base, "precision": "bf16", "fp8_recipe": "rowwise"})
    assert stack_of(wl16).fp8_recipe == "none"
    with pytest.raises(SpecError, match="fp8_recipe"):
        load_workload({**base, "precision": "fp8", "fp8_recipe": "blockwise"})


# --- the CP model's memory constraint takes the evaluator's simultaneous peak ---------------
def _on_demand_instance(memory_gb: float) -> tuple[Any, Any, Any]:
    """A 4-block GPT on 2 GPUs, DP 2 x 1 micro-batch (m = 1), PyTorch on-demand gradients."""
    m = gpt(4, hidden=1024, heads=8, vocab=32000)
    cl = cluster(pool("p", gpu(H100, memory_gb), gpn=2))
    wl = train(2, seq=4096, grad_buffers="on_demand", memory_policy="amp_fp16")
    return m, cl, wl


def _ledger_totals(m: Any, cl: Any, wl: Any) -> tuple[float, float]:
    """(sum of every term, the ledger's simultaneous peak) of the DP-2 plan, in GB."""
    stage = dict(first_layer=0, last_layer=3, pool="p", tp=1, devices=[[["p-0", 0]], [["p-0", 1]]])
    plan = training_plan([stage], count=2, m=1, zero_stage=1)
    row = training_memory_ledger(m, cl, wl, plan)[0]
    summed = sum(row[k] for k in ("weights_GB", "grads_GB", "optimizer_GB", "activations_GB"))
    return summed + row["overhead_GB"], row["total_GB"]


def _cp_tables(m: Any, cl: Any, wl: Any, *, with_grads: bool) -> TrainTables:
    """The CP tables of the instance for d = 2: as built (with on-demand gradients the tables
    fill the gradient part, checked here against ``model_state_bytes`` per part and the
    rebuilt block of ``activation_transient_bytes``), or with that part removed (the summing
    model of before) when not ``with_grads``."""
    fam = families(wl)[0]
    tab = build_tables(m, cl, wl, fam)
    assert tab is not None
    sub = dataclasses.replace(for_dp(tab, 2), zero_stage=fam.zero_stage)
    st = dict(memory_policy=wl.memory_policy, zero_stage=fam.zero_stage, dp=2)
    for opt in sub.options:
        kw = dict(sequence_length=4096, tp=opt.tp)
        parts = {
            "layer": stage_params_per_gpu(m, 1, first=False, last=False, **kw),  # type: ignore[arg-type]
            "embed": stage_params_per_gpu(m, 0, first=True, last=False, **kw),  # type: ignore[arg-type]
            "head": stage_params_per_gpu(m, 0, first=False, last=True, **kw),  # type: ignore[arg-type]
        }
        both = stage_params_per_gpu(m, 0, first=True, last=True, **kw)  # type: ignore[arg-type]
        parts["embed_last"] = both - parts["head"]
        want = {
            k: int(model_state_bytes(p, **st)[1] // KB)  # type: ignore[arg-type]
            for k, p in parts.items()
        }
        assert {k: v[2] for k, v in opt.grads.items()} == want
        # What the gradient side drops of ``transient``: the rebuilt block less what lives with
        # every gradient (the block's backward bound of every stage).
        akw = dict(tp=opt.tp, micro_batch=fam.micro_batch, seq=4096, sequence_parallel=False)
        rebuilt = activation_transient_bytes(m, recompute=fam.recompute, stack=stack_of(wl), **akw)  # type: ignore[arg-type]
        live = grads_phase_activation_bytes(
            m,
            late_grads=0.0,
            first=True,
            stack=stack_of(wl),
            **akw,  # type: ignore[arg-type]
        )
        assert opt.rebuilt[2] == int(rebuilt // KB) - math.ceil(live / KB - 1e-9)
    if with_grads:
        return sub
    opts = [dataclasses.replace(opt, grads={}, rebuilt={}) for opt in sub.options]
    return dataclasses.replace(sub, options=opts)


def _cp_feasible(t: TrainTables) -> bool:
    status, choice, _ = TrainingModel(t).solve(5.0, 1, 0, deterministic=True)
    return choice is not None and cp_model.CpSolverStatus(status).name in ("OPTIMAL", "FEASIBLE")


def test_cp_memory_matches_the_ledger_peak_with_on_demand_gradients() -> None:
    """Capacity between the ledger's simultaneous peak (max of gradients and activations) and
    the sum of all terms: the evaluator fits the plan; the CP model summing gradients and
    activations refused it; with the gradient part it takes the same peak and fits it.  Below
    the ledger's peak both refuse."""
    m, cl, wl = _on_demand_instance(80.0)
    summed, peak = _ledger_totals(m, cl, wl)
    assert summed - peak > 0.1  # the instance is one where the two differ
    mid = (summed + peak) / 2
    m, cl, wl = _on_demand_instance(mid)
    assert _ledger_totals(m, cl, wl)[1] <= mid  # the evaluator: fits
    assert not _cp_feasible(_cp_tables(m, cl, wl, with_grads=False))
    assert _cp_feasible(_cp_tables(m, cl, wl, with_grads=True))
    m, cl, wl = _on_demand_instance(peak - 0.01)
    assert not _cp_feasible(_cp_tables(m, cl, wl, with_grads=True))


def test_planner_fits_what_the_ledger_fits_with_on_demand_gradients() -> None:
    """End to end: at a capacity between the ledger's peak and the sum of its terms, the
    planner returns a plan (the tables fill the gradient part), and the evaluator fits it."""
    m, cl, wl = _on_demand_instance(80.0)
    summed, peak = _ledger_totals(m, cl, wl)
    m, cl, wl = _on_demand_instance((summed + peak) / 2)
    res = plan(m, cl, wl, time_limit_s=10, deterministic=True, compare_baseline=False)
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE), res.message
    assert res.plan is not None and evaluate(m, cl, wl, res.plan).feasible
    # DP 2 x TP 1 (1.16M tokens/s measured), the plan the summing model refused: it then fell
    # back to TP 2 (0.91M, what persistent gradient buffers still get).
    (g,) = res.plan.replica_groups
    assert g.count == 2 and [st.tp for st in g.stages] == [1]


def test_fused_rmsnorm_in_an_eager_block_saves_like_a_fused_norm() -> None:
    """torchtitan's fused_rmsnorm (Triton, saves x, weight, rstd) in an otherwise eager block
    stores what the fused stack stores for the norms: the eager RMSNorm's extra fp32 input
    (EAGER_NORM_SAVED_EXTRA_BYTES per element, two norms) goes; the eager SwiGLU stays."""
    m = llama8b()
    kw = dict(tp=1, micro_batch=1, seq=4096, recompute="none", sequence_parallel=False)
    eager = block_activation_bytes(m, stack=Stack(kernels="eager"), **kw)  # type: ignore[arg-type]
    fused_norm = block_activation_bytes(
        m,
        stack=Stack(kernels="eager", fused_norm=True),
        **kw,  # type: ignore[arg-type]
    )
    sbh = 4096 * m.hidden_size
    assert eager - fused_norm == pytest.approx(2 * C.EAGER_NORM_SAVED_EXTRA_BYTES * sbh)
    wl = load_workload(
        dict(kind="training", global_batch_size=8, sequence_length=2048, fused_norm=True)
    )
    assert stack_of(wl).fused_norm


def test_cp_tables_hold_the_fsdp2_root_group_as_the_ledger_does() -> None:
    """FSDP2 under ZeRO-3 keeps its root group (embedding, final norm, head) gathered in bf16:
    the CP tables charge the embedding and head parts 2 B per parameter on top of their
    shards, as the evaluator's ledger does, and the blocks nothing more."""
    from solver.costmodel.memory import fsdp2_root_unsharded_bytes

    m = llama8b()
    cl = cluster(pool("p", H100, gpn=2))
    wl = train(
        2,
        seq=2048,
        zero=3,
        memory_policy="fsdp2_mixed",
        grad_buffers="on_demand",
        elementwise_kernels="compiled_blocks",
    )
    fam = families(wl)[0]
    assert fam.zero_stage == 3
    tab = build_tables(m, cl, wl, fam)
    assert tab is not None
    st = dict(memory_policy="fsdp2_mixed", zero_stage=3, dp=2)
    for opt in for_dp(tab, 2).options:
        embed = stage_params_per_gpu(m, 0, first=True, last=False, sequence_length=2048, tp=opt.tp)
        layer = stage_params_per_gpu(m, 1, first=False, last=False, sequence_length=2048, tp=opt.tp)
        root = fsdp2_root_unsharded_bytes(embed, **st)  # type: ignore[arg-type]
        assert root == pytest.approx(2.0 * embed)
        state = sum(model_state_bytes(embed, **st))  # type: ignore[arg-type]
        assert opt.static["embed"][2] == pytest.approx((state + root) / KB, abs=1)
        layer_state = sum(model_state_bytes(layer, **st))  # type: ignore[arg-type]
        assert opt.static["layer"][2] == pytest.approx(layer_state / KB, abs=1)


def test_cp_tables_hold_the_larger_of_the_loss_and_a_rebuilt_block() -> None:
    """The CP's last stage charges transient (the rebuilt block, on every stage) + act_head:
    act_head is what the loss peak exceeds the rebuilt block by, so the sum is the ledger's
    max(head, rebuilt)."""
    from solver.costmodel import activation_transient_bytes, head_activation_bytes

    m = llama8b()
    cl = cluster(pool("p", H100, gpn=2))
    wl = train(2, seq=2048, recompute=("full",), elementwise_kernels="eager")
    fam = families(wl)[0]
    tab = build_tables(m, cl, wl, fam)
    assert tab is not None
    for opt in for_dp(tab, 1).options:
        kw = dict(
            tp=opt.tp,
            micro_batch=fam.micro_batch,
            seq=2048,
            sequence_parallel=fam.sequence_parallel and opt.tp > 1,
            stack=stack_of(wl),
        )
        head = head_activation_bytes(m, **kw)  # type: ignore[arg-type]
        rebuilt = activation_transient_bytes(m, recompute="full", **kw)  # type: ignore[arg-type]
        assert rebuilt > 0
        assert opt.act_head == pytest.approx(max(0.0, head - rebuilt) / KB, abs=1)
        charged = (opt.act_head + opt.transient[1]) * KB
        assert charged == pytest.approx(max(head, rebuilt), abs=2 * KB)


# --- the FSDP2 ledger against a torchtitan-shaped step measured on one H100 -------------------
@pytest.mark.parametrize("world", [8, 64])
def test_fsdp2_ledger_matches_the_measured_step(world: int) -> None:
    """8 Llama-3-8B blocks + the 128k root group, FSDP2 over ``world`` ranks of PyTorch's fake
    process group on one H100 (bf16 params / fp32 reduce, full checkpointing, micro-batch 2 x
    8192): the ledger's allocated peak within 2% of the measured one, its stream caches within
    15% of the non-default streams' reserved segments, and the reduce-scatter stream holding
    exactly the fp32 gradient shards."""
    raw = Path(__file__).resolve().parent.parent / (
        f"benchmarks/validation/modern/raw-h100x1-fsdp2-pools-fake{world}.json"
    )
    meas = json.loads(raw.read_text())["fsdp2"]
    m = llama3_8b(8, name="llama3-8b-l8")
    cl = cluster(pool("p", H100, nodes=world // 8, gpn=8))
    wl = train(
        2 * world,
        seq=8192,
        micro=(2,),
        recompute=("full",),
        zero=3,
        memory_policy="fsdp2_mixed",
        elementwise_kernels="eager",
        grad_buffers="on_demand",
    )
    devices = [[[f"p-{i // 8}", i % 8]] for i in range(world)]
    stage = dict(first_layer=0, last_layer=7, pool="p", tp=1, devices=devices)
    plan_ = training_plan([stage], count=world, mb=2, m=1, recompute="full", zero_stage=3)
    (row,) = training_memory_ledger(m, cl, wl, plan_)
    allocated = (row["total_GB"] - C.CUDA_CONTEXT_GB - C.NCCL_BUFFERS_GB) * C.GB
    assert allocated == pytest.approx(meas["peak_allocated_bytes"], rel=0.02)
    pools = {k: v["total_size"] for k, v in meas["reserved_by_stream"].items() if k != "default"}
    assert row["comm_stream_cache_GB"] * C.GB == pytest.approx(sum(pools.values()), rel=0.15)
    grads = 4.0 * meas["params"] / world
    assert min(pools.values()) == pytest.approx(grads, rel=0.06)


# --- the gradient-side peak of on-demand gradients (one micro-batch) --------------------------
MODERN_RAW = (
    Path(__file__).resolve().parent.parent
    / "benchmarks/validation/modern/raw-h100x1-modern-merged.json"
)


def _measured_vs_ledger() -> list[tuple[str, float, float]]:
    """(case, measured peak allocated, the ledger's allocated peak) of every training case of
    the single-H100 run (``solver/profile/modern.py``): the runner's workload (on-demand
    gradients, one micro-batch) on one GPU; the ledger's allocated part keeps the cuBLAS
    workspaces (allocated by PyTorch's caching allocator: 64 MiB between steps in every
    case) and leaves out the CUDA context and NCCL buffers, as ``_set_reserved`` does."""
    from solver.profile.calibrate_modern import model_of_record, training_workload_of

    cl = cluster(pool("p", H100, gpn=1))
    out = []
    for rec in json.loads(MODERN_RAW.read_text())["train"]:
        if rec.get("status") != "ok" or "peak_allocated_bytes" not in rec:
            continue
        m, wl = model_of_record(rec), training_workload_of(rec)
        rc = "full" if rec["recompute"] else "none"
        stage = dict(
            first_layer=0, last_layer=m.num_layers - 1, pool="p", tp=1, devices=[[["p-0", 0]]]
        )
        plan_ = training_plan([stage], mb=rec["micro_batch"], m=1, recompute=rc, zero_stage=0)
        (row,) = training_memory_ledger(m, cl, wl, plan_)
        allocated = (row["total_GB"] - C.CUDA_CONTEXT_GB - C.NCCL_BUFFERS_GB) * C.GB
        out.append((rec["name"], float(rec["peak_allocated_bytes"]), allocated))
    return out


def test_on_demand_gradient_side_matches_the_measured_steps() -> None:
    """Every one of the 36 single-H100 training steps within 5% of its measured allocated peak
    (issue 15's criterion); every Llama case within 0.1%; the bare GPT stacks with full
    recompute, whose peak is the gradient side (every gradient with the first block's
    rebuilt activations and incoming gradient, 34.04 s b h), within 1% -- 8.1% low at
    micro-batch 4 when the gradient side held the gradients alone."""
    rows = _measured_vs_ledger()
    assert len(rows) == 36
    err = {name: pred / meas - 1 for name, meas, pred in rows}
    assert max(abs(e) for e in err.values()) < 0.05
    assert max(abs(e) for n, e in err.items() if n.startswith("llama")) < 0.001
    bare_rc = [e for n, e in err.items() if n.startswith("gpt-bare") and n.endswith("/rc")]
    assert len(bare_rc) == 5
    assert max(abs(e) for e in bare_rc) < 0.01


def test_gradient_side_activations_of_a_gpt_block() -> None:
    """A GPT block (flash, no dropout) holds 32.04 s b h + its incoming gradient 2 in its
    backward, whatever the recompute policy; a later gradient (stage 0's embedding) larger
    than that leaves the end of the backward: the stage input's gradient, plus the embedding
    backward's fp32 partial sums above 3072 tokens."""
    from solver.costmodel.memory import backward_block_bytes

    m = gpt(4, hidden=4096, heads=32, vocab=51200)
    s, b, h = 2048, 2, 4096
    sbh = s * b * h
    kw = dict(tp=1, micro_batch=b, seq=s, sequence_parallel=False, stack=Stack())
    block = backward_block_bytes(m, **kw)  # type: ignore[arg-type]
    assert block / sbh == pytest.approx(34.0, abs=0.05)
    assert grads_phase_activation_bytes(m, late_grads=0.0, first=True, **kw) == block  # type: ignore[arg-type]
    late = 2.0 * 51200 * h  # a bf16 word-embedding gradient: 0.42 GB, below the block (0.57)
    end = grads_phase_activation_bytes(m, late_grads=10 * block, first=True, **kw)  # type: ignore[arg-type]
    partials = C.EMBEDDING_BWD_PARTIAL_BYTES * s * b * h  # 4096 tokens > 3072
    assert end == pytest.approx(C.ACTIVATION_BYTES * sbh + partials)
    mid = grads_phase_activation_bytes(m, late_grads=late, first=False, **kw)  # type: ignore[arg-type]
    assert mid == pytest.approx(max(block - late, C.ACTIVATION_BYTES * sbh))
    kw1 = {**kw, "micro_batch": 1}  # 2048 tokens: the direct kernel, no partial sums
    end1 = grads_phase_activation_bytes(m, late_grads=10 * block, first=True, **kw1)  # type: ignore[arg-type]
    assert end1 == pytest.approx(C.ACTIVATION_BYTES * s * h)


def _gradient_side_instance(memory_gb: float, *, tied: bool = True) -> tuple[Any, Any, Any]:
    """A 4-block GPT (h 2048, an 8000-token vocabulary) with full recompute on 2 GPUs: the
    gradients with the first block's backward exceed the stored activations and the loss
    (the gradient side is the peak)."""
    m = gpt(4, hidden=2048, heads=16, vocab=8000).model_copy(update={"tied_embeddings": tied})
    cl = cluster(pool("p", gpu(H100, memory_gb), gpn=2))
    wl = train(2, seq=4096, recompute=("full",), grad_buffers="on_demand", memory_policy="amp_fp16")
    return m, cl, wl


@pytest.mark.parametrize("tied", [True, False])
def test_cp_memory_holds_the_gradient_side_peak(tied: bool) -> None:
    """The CP's gradient-side constraint charges the gradients plus the block's backward bound
    of every stage (no later gradient subtracted).  One stage with a tied embedding: no
    gradient comes after the first block, the CP takes the ledger's peak exactly (refuses
    10 MB below it, fits 10 MB above).  Untied: the embedding's gradient comes after it, the
    ledger's peak is lower by it and the CP fits from the bound on."""
    stage = dict(first_layer=0, last_layer=3, pool="p", tp=1, devices=[[["p-0", 0]], [["p-0", 1]]])
    plan_ = training_plan([stage], count=2, m=1, zero_stage=1, recompute="full")
    m, cl, wl = _gradient_side_instance(80.0, tied=tied)
    (row,) = training_memory_ledger(m, cl, wl, plan_)
    g, a, live = row["grads_GB"], row["activations_GB"], row["grads_phase_activations_GB"]
    assert g + live > a  # the gradient side is the peak
    kw = dict(tp=1, micro_batch=1, seq=4096, sequence_parallel=False, stack=stack_of(wl))
    bound = grads_phase_activation_bytes(m, late_grads=0.0, first=True, **kw) / C.GB  # type: ignore[arg-type]
    late = 0.0 if tied else 2.0 * 8000 * 2048 / C.GB  # the word embedding's fp16 gradient
    assert bound - live == pytest.approx(late)
    peak = row["total_GB"]
    m, cl, wl = _gradient_side_instance(peak - 0.01, tied=tied)
    assert not _cp_feasible(_cp_tables(m, cl, wl, with_grads=True))
    m, cl, wl = _gradient_side_instance(peak + late + 0.01, tied=tied)
    assert _cp_feasible(_cp_tables(m, cl, wl, with_grads=True))
