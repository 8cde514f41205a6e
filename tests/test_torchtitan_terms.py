"""The cost-model terms of today's PyTorch-native stack (torchtitan): per-op selective and
every-second-block checkpointing, FSDP2 mixed-precision state and traffic, per-block
torch.compile, and GPUs run under a power cap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders import H100, cluster, llama3_8b, pool, train, training_plan

import solver
from solver.catalog import resolve_gpu
from solver.costmodel import (
    activation_transient_bytes,
    block_activation_bytes,
    block_time,
    head_activation_bytes,
    model_state_bytes,
)
from solver.costmodel import constants as C
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import Op, op_time, power_clock_fraction
from solver.costmodel.stack import Stack
from solver.costmodel.step import dp_step_time
from solver.errors import SpecError
from solver.specs import Model, TrainingWorkload

SEQ, B = 8192, 1
LINK = LinkTier(450.0, 1.0, "nvlink")


def llama8b_block() -> Model:
    """One Llama-3-8B block: h 4096, 32 heads (8 KV, head dim 128), SwiGLU f 14336."""
    return llama3_8b()


def stored_sbh(recompute: str, *, kernels: str = "eager") -> float:
    m = llama8b_block()
    a = block_activation_bytes(
        m,
        tp=1,
        micro_batch=B,
        seq=SEQ,
        recompute=recompute,
        sequence_parallel=False,
        stack=Stack(kernels=kernels),  # type: ignore[arg-type]
    )
    return a / (SEQ * B * m.hidden_size)


def test_selective_op_stores_the_saved_matmul_outputs() -> None:
    """torchtitan per-op SAC keeps input, wq, wv, attention out (+fp32 LSE), w1, w2:
    2 + 2 + 2*1024/4096 + 2 + 2*14336/4096 + 2 + 4*32/4096 = 15.53 s b h (measured 15.53)."""
    expected = 2 + 2 + 0.5 + 2 + 7 + 2 + 4 * 32 / 4096
    assert stored_sbh("selective_op") == pytest.approx(expected, rel=1e-9)


def test_full_half_stores_the_mean_of_none_and_full() -> None:
    """Full checkpointing of every second block stores (none + full) / 2 per block."""
    assert stored_sbh("full_half") == pytest.approx((stored_sbh("none") + 2.0) / 2)


def test_selective_op_transient_rebuilds_what_it_did_not_save() -> None:
    """The backward of one block rebuilds everything selective_op did not store."""
    m = llama8b_block()
    kw = dict(tp=1, micro_batch=B, seq=SEQ, sequence_parallel=False, stack=Stack(kernels="eager"))
    none = block_activation_bytes(m, recompute="none", **kw)  # type: ignore[arg-type]
    op = block_activation_bytes(m, recompute="selective_op", **kw)  # type: ignore[arg-type]
    rebuilt = activation_transient_bytes(m, recompute="selective_op", **kw)  # type: ignore[arg-type]
    assert rebuilt == pytest.approx(none - op)
    assert activation_transient_bytes(m, recompute="full_half", **kw) == pytest.approx(none)  # type: ignore[arg-type]


def _time(recompute: str, precision: str = "bf16"):  # type: ignore[no-untyped-def]
    return block_time(
        llama8b_block(),
        resolve_gpu(H100),
        tp=1,
        micro_batch=B,
        seq=SEQ,
        recompute=recompute,
        sequence_parallel=False,
        precision=precision,
        tp_link=LINK,
        stack=Stack(kernels="eager"),
    )


def test_selective_op_recomputes_wk_wo_w3() -> None:
    """Recomputed GEMM FLOPs are those of wk, wo and w3: 2 tokens h (kv + h + f), the
    attention core none (its output is saved)."""
    h, kv, f, tokens = 4096, 1024, 14336, SEQ * B
    extra = _time("selective_op").hw_flops - _time("none").hw_flops
    assert extra == pytest.approx(2.0 * tokens * h * (kv + h + f), rel=1e-9)


def test_recompute_costs_order_as_measured() -> None:
    """Slower than none, faster than full; full_half half of full's extra time."""
    none, op, half, full = (_time(rc) for rc in ("none", "selective_op", "full_half", "full"))
    t = {k: v.fwd_s + v.bwd_s for k, v in dict(none=none, op=op, half=half, full=full).items()}
    assert t["none"] < t["op"] < t["full"]
    assert t["half"] - t["none"] == pytest.approx((t["full"] - t["none"]) / 2, rel=1e-9)


def test_selective_op_is_the_same_under_fp8() -> None:
    """torchao's Float8 linears reach the policy as aten.mm: FP8 recomputes the same GEMM
    FLOPs as bf16."""
    extra8 = _time("selective_op", "fp8").hw_flops - _time("none", "fp8").hw_flops
    extra16 = _time("selective_op").hw_flops - _time("none").hw_flops
    assert extra8 == pytest.approx(extra16, rel=1e-9)


def test_power_cap_slows_compute_not_memory() -> None:
    """A 500 W cap on a 700 W / 70 W-idle H100: clock x ((500-70)/(700-70))^(1/3) = 0.8805
    for compute-bound ops; an HBM-bound op keeps its time; no cap: 1."""
    base = resolve_gpu(H100)
    capped = base.model_copy(update={"power_limit_W": 500.0})
    assert power_clock_fraction(base) == 1.0
    frac = power_clock_fraction(capped)
    assert frac == pytest.approx((430 / 630) ** (1 / 3))
    gemm = Op("g", 2 * 8192.0**3, 3 * 8192.0**2 * 2, "gemm", (8192, 8192, 8192))
    mem = Op("m", 0.0, 1e9, "mem")
    assert op_time(gemm, capped, "bf16") == pytest.approx(op_time(gemm, base, "bf16") / frac)
    assert op_time(mem, capped, "bf16") == op_time(mem, base, "bf16")
    above = base.model_copy(update={"power_limit_W": 900.0})
    assert power_clock_fraction(above) == 1.0


def test_fsdp2_mixed_state_and_traffic() -> None:
    """FSDP2 mixed precision: 4 + 4 + 8 B/param sharded (ZeRO-3); without resharding
    (torchtitan under PP) bf16 params and fp32 accumulated grads whole plus the fp32 shards; its gradient
    reduce-scatter moves fp32, twice amp_fp16's bytes."""
    p, d = 1e9, 8
    assert model_state_bytes(p, memory_policy="fsdp2_mixed", zero_stage=3, dp=d) == pytest.approx(
        (4 * p / d, 4 * p / d, 8 * p / d)
    )
    assert model_state_bytes(p, memory_policy="fsdp2_mixed", zero_stage=1, dp=d) == pytest.approx(
        (p * (2 + 4 / d), p * (4 + 4 / d), 8 * p / d)
    )
    kw = dict(
        zero_stage=2,
        num_micro_batches=1,
        recompute="none",
        gpus_per_node_in_group=8,
        nodes=1,
        intra=LinkTier(450.0, 0.0, "nvlink"),
        inter=LinkTier(50.0, 0.0, "ib"),
    )
    fsdp = dp_step_time(p, memory_policy="fsdp2_mixed", **kw)  # type: ignore[arg-type]
    amp = dp_step_time(p, memory_policy="amp_fp16", **kw)  # type: ignore[arg-type]
    # ZeRO-2: one gradient reduce-scatter (4 B vs 2 B) + one bf16 weight all-gather (same).
    assert fsdp == pytest.approx(amp * 1.5, rel=1e-6)


def test_compiled_blocks_keep_an_eager_loss() -> None:
    """torch.compile per block: blocks store what fused kernels store, the loss peaks at the
    eager EAGER_LOGIT_PEAK_BYTES per logit."""
    m = llama8b_block()
    assert stored_sbh("none", kernels="compiled_blocks") == stored_sbh("none", kernels="fused")
    kw = dict(tp=1, micro_batch=B, seq=SEQ, sequence_parallel=False)
    fused = head_activation_bytes(m, stack=Stack(kernels="fused"), **kw)  # type: ignore[arg-type]
    comp = head_activation_bytes(m, stack=Stack(kernels="compiled_blocks"), **kw)  # type: ignore[arg-type]
    logits = SEQ * B * m.vocab_size
    assert comp - fused == pytest.approx(
        (C.EAGER_LOGIT_PEAK_BYTES - C.LOGIT_BYTES) * logits
        + C.EAGER_NORM_SAVED_EXTRA_BYTES * SEQ * B * m.hidden_size
    )


def test_workload_accepts_the_new_knobs_and_refuses_unknown_ones() -> None:
    """The spec takes selective_op / full_half, fsdp2_mixed and compiled_blocks, and names
    the field for an unknown value."""
    wl = train(
        8,
        recompute=("selective_op", "full_half"),
        memory_policy="fsdp2_mixed",
        elementwise_kernels="compiled_blocks",
    )
    assert isinstance(wl, TrainingWorkload)
    with pytest.raises((SpecError, ValueError), match="recompute"):
        train(8, recompute=("per_op",))


def test_evaluator_prices_a_torchtitan_style_plan() -> None:
    """A 2-GPU FSDP2 plan with per-op SAC is feasible and slower than the same plan without
    recompute, and stores less."""
    m = llama8b_block()
    cl = cluster(pool("p", H100, gpn=2))
    reports = {}
    for rc in ("none", "selective_op"):
        wl = train(
            4,
            seq=4096,
            micro=(2,),
            recompute=(rc,),
            zero=3,
            memory_policy="fsdp2_mixed",
            elementwise_kernels="compiled_blocks",
            grad_buffers="on_demand",
        )
        plan = training_plan(
            [
                dict(
                    first_layer=0,
                    last_layer=3,
                    pool="p",
                    tp=1,
                    devices=[[["p-0", 0]], [["p-0", 1]]],
                )
            ],
            count=2,
            mb=2,
            m=1,
            recompute=rc,
            zero_stage=3,
        )
        rep = solver.evaluate(m, cl, wl, plan).to_dict()
        assert rep["feasible"], rep["violations"]
        reports[rc] = rep
    assert reports["selective_op"]["step_time_s"] > reports["none"]["step_time_s"]
    assert (
        reports["selective_op"]["peak_memory_GB_per_gpu"]
        < reports["none"]["peak_memory_GB_per_gpu"]
    )


def test_flash2_kernel_runs_at_its_own_measured_rate() -> None:
    """attention_kernel flash2 prices the fused attention at the GPU's FlashAttention-2
    efficiencies (H100: 0.385 / 0.332 of peak against cuDNN's 0.733 / 0.579), slower; a GPU
    without FA2 figures falls back to attention_efficiency."""
    gpu = resolve_gpu(H100)
    m = llama8b_block()

    def block_s(kernel: str, g=gpu) -> float:  # type: ignore[no-untyped-def]
        t = block_time(
            m,
            g,
            tp=1,
            micro_batch=B,
            seq=SEQ,
            recompute="none",
            sequence_parallel=False,
            precision="bf16",
            tp_link=LINK,
            stack=Stack(attention_kernel=kernel),  # type: ignore[arg-type]
        )
        return t.fwd_s + t.bwd_s

    assert block_s("flash2") > block_s("cudnn")
    bare = gpu.model_copy(
        update={"flash2_attention_efficiency": None, "flash2_attention_backward_efficiency": None}
    )
    assert block_s("flash2", bare) == pytest.approx(block_s("cudnn", bare))
    # The forward attention op alone: executed FLOPs / (peak x 0.385 x s / (s + 1477)).
    core = Op("attention_core", 1e12, 1.0, "flash", seq=8192.0, kernel="flash2")
    expected = 1e12 / (gpu.bf16_tflops * 1e12 * 0.385 * 8192 / (8192 + C.ATTENTION_HALF_RATE_SEQ))
    assert op_time(core, gpu, "bf16") == pytest.approx(expected)


def test_ledger_names_the_overhead_and_the_reserved_peak() -> None:
    """Every ledger row splits the overhead into CUDA context + NCCL buffers + cuBLAS
    workspaces, and reports the allocator's reserved peak: the allocated tensors x (1 +
    ALLOCATOR_RESERVE_FRACTION) + what lives outside the allocator, never below the total."""
    m = llama8b_block()
    cl = cluster(pool("p", H100, gpn=2))
    wl = train(4, seq=2048, micro=(2,))
    plan = training_plan(
        [dict(first_layer=0, last_layer=3, pool="p", tp=1, devices=[[["p-0", 0]], [["p-0", 1]]])],
        count=2,
        mb=2,
        m=1,
    )
    rows = solver.evaluate(m, cl, wl, plan).to_dict()["memory_ledger"]
    assert rows
    for r in rows:
        parts = r["cuda_context_GB"] + r["nccl_buffers_GB"] + r["cublas_workspace_GB"]
        assert parts == pytest.approx(r["overhead_GB"]) == pytest.approx(C.FRAMEWORK_OVERHEAD_GB)
        outside = r["cuda_context_GB"] + r["nccl_buffers_GB"]
        expected = (r["total_GB"] - outside) * (1 + C.ALLOCATOR_RESERVE_FRACTION) + outside
        assert r["reserved_GB"] == pytest.approx(expected)
        assert r["reserved_GB"] > r["total_GB"]


# --- what FSDP2 holds at scale: the root group, its streams' caches --------------------------
def _fsdp2_rows(memory_policy: str = "fsdp2_mixed", dp: int = 2) -> list[dict[str, Any]]:
    """The ledger of a torchtitan-style FSDP2 plan (ZeRO-3, one micro-batch) on ``dp`` GPUs."""
    m = llama8b_block()
    cl = cluster(pool("p", H100, gpn=dp))
    wl = train(
        4,
        seq=2048,
        micro=(2,),
        recompute=("selective_op",),
        zero=3,
        memory_policy=memory_policy,
        elementwise_kernels="compiled_blocks",
        grad_buffers="on_demand",
    )
    devices = [[["p-0", i]] for i in range(dp)]
    plan = training_plan(
        [dict(first_layer=0, last_layer=3, pool="p", tp=1, devices=devices)],
        count=dp,
        mb=2,
        m=1,
        recompute="selective_op",
        zero_stage=3,
    )
    rows: list[dict[str, Any]] = solver.evaluate(m, cl, wl, plan).to_dict()["memory_ledger"]
    return rows


def _root_and_block() -> tuple[float, float]:
    from solver.costmodel import block_params_per_gpu, stage_params_per_gpu

    m = llama8b_block()
    block = block_params_per_gpu(m, 1)
    whole = stage_params_per_gpu(m, 4, first=True, last=True, sequence_length=2048, tp=1)
    return whole - 4 * block, block


def test_fsdp2_root_group_stays_gathered_in_bf16() -> None:
    """Under FSDP2 the root group (embedding, final norm, head: 1.05B params for a Llama-3
    vocabulary) is never resharded after forward: 2 B per root parameter on top of the
    shards; a policy without a root group (amp_fp16) has none."""
    from solver.costmodel.memory import fsdp2_root_unsharded_bytes

    root, block = _root_and_block()
    assert root == pytest.approx(2 * 128256 * 4096 + 4096)
    kw = dict(memory_policy="fsdp2_mixed", zero_stage=3)
    assert fsdp2_root_unsharded_bytes(root, dp=8, **kw) == pytest.approx(2.0 * root)  # type: ignore[arg-type]
    assert fsdp2_root_unsharded_bytes(root, dp=1, **kw) == 0.0  # type: ignore[arg-type]
    assert fsdp2_root_unsharded_bytes(root, dp=8, memory_policy="fsdp2_mixed", zero_stage=1) == 0.0
    assert fsdp2_root_unsharded_bytes(root, dp=8, memory_policy="amp_fp16", zero_stage=3) == 0.0
    (row,) = _fsdp2_rows()
    w, _, _ = model_state_bytes(root + 4 * block, memory_policy="fsdp2_mixed", zero_stage=3, dp=2)
    gathered = 10.0 * block  # ZERO3_LIVE_BYTES_PER_PARAM["fsdp2_mixed"]: one block live
    assert row["weights_GB"] * C.GB == pytest.approx(w + gathered + 2.0 * root)


def test_fsdp2_stream_caches_are_reserved_not_allocated() -> None:
    """The reduce-scatter stream keeps the freed fp32 gradient shards, the all-gather copy-in
    stream the root's bf16 all-gather output and one block's: reserved (what torchtitan
    logs), never in the allocated peak that decides feasibility; the eager loss adds its
    dropped bf16 logits' cached block (2 B per logit) at the loss peak."""
    root, block = _root_and_block()
    (row,) = _fsdp2_rows()
    assert row["grads_live_with_activations"] is False
    freed = row["grads_GB"]  # the shards, subtracted from the simultaneous peak
    expected = 2.0 * (max(root, block) + block) / C.GB + freed
    assert row["comm_stream_cache_GB"] == pytest.approx(expected)
    logits = 2 * 2048 * 128256  # micro-batch 2, seq 2048, full vocabulary (tp 1)
    cached = C.EAGER_LOSS_CACHED_LOGIT_BYTES * logits / C.GB
    assert row["loss_cached_logits_GB"] == pytest.approx(cached)
    outside = C.CUDA_CONTEXT_GB + C.NCCL_BUFFERS_GB
    tensors = row["total_GB"] - outside
    assert row["allocator_reserved_GB"] == pytest.approx(
        tensors * (1 + C.ALLOCATOR_RESERVE_FRACTION) + expected + cached
    )
    assert row["reserved_GB"] == pytest.approx(row["allocator_reserved_GB"] + outside)
    (other,) = _fsdp2_rows("amp_fp16")
    assert other["comm_stream_cache_GB"] == 0.0


def test_compiled_selective_op_drops_the_unused_w2_output() -> None:
    """A compiled block saves only what its backward reads: the w2 output (read by nothing
    but the residual add) goes, 15.53 -> 13.53 s b h, as one H100 measures (13.53)."""
    assert stored_sbh("selective_op", kernels="compiled_blocks") == pytest.approx(
        stored_sbh("selective_op") - 2.0, rel=1e-9
    )
    raw = Path(__file__).resolve().parent.parent / (
        "benchmarks/validation/modern/torchtitan_compare-llama3-8b.json"
    )
    meas = {
        (r["kernels"], r["recompute"]): r["meas_sbh"] for r in json.loads(raw.read_text())["rows"]
    }
    for kernels in ("eager", "compiled_blocks"):
        assert stored_sbh("selective_op", kernels=kernels) == pytest.approx(
            meas[(kernels, "selective_op")], rel=1e-4
        )


def test_pytorch_tp_head_saves_its_gathered_input() -> None:
    """torchtitan's LM head all-gathers its sequence-sharded input and saves it whole (2 s b h,
    not 2 s b h / t); Megatron's SP head saves the shard."""
    m = llama8b_block()
    kw = dict(tp=8, micro_batch=1, seq=8192, sequence_parallel=True)
    tt = head_activation_bytes(m, stack=Stack(kernels="compiled_blocks"), **kw)  # type: ignore[arg-type]
    sbh = 8192 * 4096
    logits = (C.EAGER_LOGIT_PEAK_BYTES + C.LOSS_PARALLEL_EXTRA_LOGIT_BYTES) * 8192 * 128256 / 8
    norm = (2 + C.EAGER_NORM_SAVED_EXTRA_BYTES) * sbh / 8
    assert tt == pytest.approx(norm + 2 * sbh + logits)
    meg = head_activation_bytes(m, stack=Stack(kernels="fused"), **kw)  # type: ignore[arg-type]
    assert meg == pytest.approx(4 * sbh / 8 + C.LOGIT_BYTES * 8192 * 128256 / 8)


RAW_POOLS = Path(__file__).resolve().parent.parent / (
    "benchmarks/validation/modern/raw-h100x1-fsdp2-pools.json"
)


def test_loss_peaks_are_the_h100_measurements() -> None:
    """Per logit, logits dropped before the backward as torchtitan does: eager 12, under
    loss_parallel 16, compiled 4 (one H100, 8k and 16k tokens)."""
    raw = json.loads(RAW_POOLS.read_text())
    want = {
        "plain": C.EAGER_LOGIT_PEAK_BYTES,
        "loss_parallel": C.EAGER_LOGIT_PEAK_BYTES + C.LOSS_PARALLEL_EXTRA_LOGIT_BYTES,
        "compiled": C.COMPILED_LOGIT_PEAK_BYTES,
    }
    rows = [r for r in raw["loss"] if "per_logit" in r]
    assert {r["kind"] for r in rows} == set(want)
    for r in rows:
        assert r["per_logit"] == pytest.approx(want[r["kind"]], rel=0.01)
    m = llama8b_block()
    kw = dict(tp=1, micro_batch=2, seq=8192, sequence_parallel=False)
    eager = head_activation_bytes(m, stack=Stack(kernels="compiled_blocks"), **kw)  # type: ignore[arg-type]
    comp = head_activation_bytes(
        m,
        stack=Stack(kernels="compiled_blocks", compiled_loss=True),
        **kw,  # type: ignore[arg-type]
    )
    logits = 2 * 8192 * 128256
    assert eager - comp == pytest.approx(
        (C.EAGER_LOGIT_PEAK_BYTES - C.COMPILED_LOGIT_PEAK_BYTES) * logits
    )


def test_fsdp2_gradients_stay_reserved_on_the_reduce_scatter_stream() -> None:
    """The measured FSDP2 step: one non-default stream holds exactly the fp32 gradients
    (4 B per parameter, allocated there by the reduce-scatter), and the reserved peak is the
    default stream's pool plus that one -- the gradients' memory, freed by zero_grad, is not
    reused by the activations."""
    f = json.loads(RAW_POOLS.read_text())["fsdp2"]
    pools = f["reserved_by_stream"]
    others = [v for k, v in pools.items() if k != "default"]
    assert len(others) == 1
    assert others[0]["total_size"] == pytest.approx(4.0 * f["params"], rel=0.01)
    total = sum(v["total_size"] for v in pools.values())
    assert f["peak_reserved_bytes"] == pytest.approx(total, rel=1e-6)
    assert f["peak_reserved_bytes"] - f["peak_allocated_bytes"] > 4.0 * f["params"]
    assert f["root_params"] == pytest.approx(2 * 128256 * 4096 + 4096)


def test_last_stage_holds_the_larger_of_the_loss_and_a_rebuilt_block() -> None:
    """The loss peaks before any block is rebuilt for its backward: the last stage's
    activations are the stored ones plus max(head, rebuilt block), not their sum."""
    m = llama8b_block()
    cl = cluster(pool("p", H100, gpn=1))
    for rc, seq in (("full", 2048), ("selective_op", 2048), ("none", 2048)):
        wl = train(1, seq=seq, recompute=(rc,), elementwise_kernels="eager")
        plan = training_plan(
            [dict(first_layer=0, last_layer=3, pool="p", tp=1, devices=[[["p-0", 0]]])],
            m=1,
            recompute=rc,
        )
        (row,) = solver.evaluate(m, cl, wl, plan).to_dict()["memory_ledger"]
        kw = dict(
            tp=1, micro_batch=1, seq=seq, sequence_parallel=False, stack=Stack(kernels="eager")
        )
        stored = 4 * block_activation_bytes(m, recompute=rc, **kw)  # type: ignore[arg-type]
        head = head_activation_bytes(m, **kw)  # type: ignore[arg-type]
        rebuilt = activation_transient_bytes(m, recompute=rc, **kw)  # type: ignore[arg-type]
        assert row["activations_GB"] * C.GB == pytest.approx(stored + max(head, rebuilt))


def test_pytorch_tp_blocks_save_their_gathered_gemm_inputs() -> None:
    """Under torchtitan's TP the QKV and MLP inputs are saved all-gathered (2 + 2 s b h), under
    Megatron's sequence parallelism as the shard (/ t); nothing else differs between a
    compiled-blocks and a fused stack, and without TP the two agree."""
    m = llama8b_block()
    sbh = 8192 * 4096

    def stored(kernels: str, tp: int) -> float:
        return block_activation_bytes(
            m,
            tp=tp,
            micro_batch=1,
            seq=8192,
            recompute="none",
            sequence_parallel=tp > 1,
            stack=Stack(kernels=kernels),  # type: ignore[arg-type]
        )

    assert stored("compiled_blocks", 8) - stored("fused", 8) == pytest.approx(4 * sbh * (1 - 1 / 8))
    assert stored("compiled_blocks", 1) == pytest.approx(stored("fused", 1))
