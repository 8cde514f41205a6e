"""The serving-engine step model (solver/costmodel/serving_engine.py): all-reduce algorithm
switches at each engine's thresholds, CUDA graphs against eager launches, decode attention
linear in the context at the named efficiency, the smooth GEMM roofline, the profiles'
sources, and the evaluator and the simulator agreeing on a static batch under every profile."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import numpy as np
import pytest

from solver.catalog import gpu_of
from solver.costmodel import engine_profiles as EP
from solver.costmodel import serving_engine as SE
from solver.costmodel.comm import LinkTier
from solver.costmodel.comm import allreduce_time as ring_allreduce_time
from solver.costmodel.serving_compute import decode_block_time, prefill_block_time
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.io import load_cluster, load_model
from solver.serving import Lengths, generate_requests, roofline_step_cost, simulate
from solver.specs import InferenceWorkload, Model, Plan

NVSWITCH = LinkTier(bandwidth_GBps=240.0, latency_us=3.0, name="nvswitch")
PCIE = LinkTier(bandwidth_GBps=24.0, latency_us=5.0, name="pcie")
CLUSTER = load_cluster("seed-4x8-h100")
GPU = gpu_of(CLUSTER.pools[0])
MODEL8 = load_model("llama3-8b")
KIB = 1024.0


# --- all-reduce ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("engine", "n", "below", "at"),
    [
        (EP.VLLM, 8, 256 * KIB - 16, 256 * KIB),  # custom_all_reduce.cuh: world <= 8, < 256 KiB
        (EP.VLLM, 4, 512 * KIB - 16, 512 * KIB),  # world <= 4, < 512 KiB
        (EP.SGLANG, 8, 256 * KIB - 16, 256 * KIB),  # sgl-kernel carries vLLM's dispatch
        (EP.TRTLLM, 8, 500e3 - 16, 500e3),  # allreducePlugin: world > 4, < 500,000 B
        (EP.TRTLLM, 4, 1e6 - 16, 1e6),  # world <= 4, < 1,000,000 B
    ],
)
def test_allreduce_switches_to_two_shot_at_the_threshold(
    engine: SE.EngineProfile, n: int, below: float, at: float
) -> None:
    """One-shot strictly below the engine's size threshold, two-shot at it, each timed by its
    formula: alpha + (n-1) S / B1 and 2 alpha + 2 (n-1)/n S / B2."""
    car = engine.custom_allreduce
    assert car is not None
    assert SE.custom_allreduce_algorithm(engine, below, n, NVSWITCH) == "oneshot"
    assert SE.custom_allreduce_algorithm(engine, at, n, NVSWITCH) == "twoshot"
    a = car.latency_us.value * 1e-6
    b1 = 240e9 * car.oneshot_link_fraction.value
    b2 = 240e9 * car.twoshot_link_fraction.value
    assert SE.allreduce_time(engine, below, n, NVSWITCH) == pytest.approx(
        a + (n - 1) * below / b1, rel=1e-12
    )
    assert SE.allreduce_time(engine, at, n, NVSWITCH) == pytest.approx(
        2 * a + 2 * (n - 1) / n * at / b2, rel=1e-12
    )


@pytest.mark.parametrize(
    ("engine", "n", "fits", "too_big"),
    [
        (EP.VLLM, 8, 8 * 1024 * KIB - 16, 8 * 1024 * KIB),  # inp_size < max_size (8 MiB)
        (EP.VLLM, 2, 8 * 1024 * KIB - 16, 8 * 1024 * KIB),
        (EP.TRTLLM, 8, 8e6, 8e6 + 16),  # messageSizeBytes <= 8,000,000 workspace
        (EP.TRTLLM, 2, 16e6, 16e6 + 16),  # 16,000,000 at world <= 2
    ],
)
def test_allreduce_falls_back_to_nccl_past_the_workspace(
    engine: SE.EngineProfile, n: int, fits: float, too_big: float
) -> None:
    """Past the custom kernel's buffer the engine calls NCCL: the ring alpha-beta time."""
    assert SE.custom_allreduce_algorithm(engine, fits, n, NVSWITCH) != "nccl"
    assert SE.custom_allreduce_algorithm(engine, too_big, n, NVSWITCH) == "nccl"
    assert SE.allreduce_time(engine, too_big, n, NVSWITCH) == ring_allreduce_time(
        too_big, n, NVSWITCH
    )


def test_allreduce_needs_nvlink_beyond_two_gpus_and_a_supported_world_size() -> None:
    """vLLM: two PCIe GPUs still run the custom kernel, four do not; TP 3 is unsupported; the
    roofline profile is always the ring."""
    assert SE.custom_allreduce_algorithm(EP.VLLM, 4096, 2, PCIE) == "oneshot"
    assert SE.custom_allreduce_algorithm(EP.VLLM, 4096, 4, PCIE) == "nccl"
    assert SE.custom_allreduce_algorithm(EP.VLLM, 4096, 3, NVSWITCH) == "nccl"
    assert SE.allreduce_time(EP.ROOFLINE, 4096, 8, NVSWITCH) == ring_allreduce_time(
        4096, 8, NVSWITCH
    )
    # A decode-sized message: one-shot is latency-bound, far under the ring's 2 (n-1) alpha.
    assert SE.allreduce_time(EP.VLLM, 16 * KIB, 8, NVSWITCH) < 0.25 * ring_allreduce_time(
        16 * KIB, 8, NVSWITCH
    )


# --- CUDA graphs and launches -------------------------------------------------------------
TINY = Model(
    name="tiny",
    num_layers=2,
    hidden_size=64,
    ffn_hidden_size=256,
    num_attention_heads=4,
    num_kv_heads=4,
    vocab_size=256,
    mlp="swiglu",
)


def _decode(engine: SE.EngineProfile, batch: int, ctx: int, model: Model = TINY, tp: int = 1):
    return decode_block_time(
        model,
        GPU,
        tp=tp,
        batch=batch,
        context_len=ctx,
        precision="bf16",
        kv_precision="bf16",
        tp_link=NVSWITCH,
        engine=engine,
    )


def test_graphed_step_is_cheaper_than_eager_by_the_launch_overhead() -> None:
    """A tiny model is launch-bound: eager, one block takes kernels x launch_us (6 kernels at
    TP 1: qkv, decode attention, out-proj, MLP up, MLP down, elementwise); graphed (same batch,
    same profile otherwise) it takes only its GPU time, less than that."""
    eager = dataclasses.replace(EP.VLLM, cuda_graphs=SE.Sourced(0.0, "test: graphs off"))
    t_graph = _decode(EP.VLLM, 4, 64).fwd_s
    t_eager = _decode(eager, 4, 64).fwd_s
    kernels = 6  # qkv, attention_decode, out_proj, mlp_up, mlp_down, elementwise
    assert t_eager == pytest.approx(kernels * EP.VLLM.launch_us.value * 1e-6, rel=1e-12)
    assert t_graph < t_eager
    assert SE.graphed(EP.VLLM, 512, 80, 1) and not SE.graphed(EP.VLLM, 513, 80, 1)


def test_sglang_graph_batch_depends_on_memory_and_tp() -> None:
    """server_args.py: 256 (TP < 4) / 512 (TP >= 4) at 60-160 GiB, 32 / 160 at 35-60 GiB."""
    assert SE.graphed(EP.SGLANG, 256, 80.0, 2) and not SE.graphed(EP.SGLANG, 257, 80.0, 2)
    assert SE.graphed(EP.SGLANG, 512, 80.0, 4) and not SE.graphed(EP.SGLANG, 513, 80.0, 4)
    assert not SE.graphed(EP.SGLANG, 33, 40.0, 1) and SE.graphed(EP.SGLANG, 160, 40.0, 8)
    assert not SE.graphed(EP.TRTLLM_SESSION_09, 1, 80.0, 1)  # gptSessionBenchmark: no graphs
    assert not SE.graphed(EP.TRTLLM, 1, 80.0, 1)  # executor: cudaGraphMode = false by default


# --- decode attention -----------------------------------------------------------------------
@pytest.mark.parametrize("engine", [EP.VLLM, EP.SGLANG, EP.TRTLLM, EP.TRTLLM_SESSION_09])
def test_decode_attention_is_linear_in_context_at_the_named_efficiency(
    engine: SE.EngineProfile,
) -> None:
    """Llama-3-8B at TP 1 (8 KV heads x 128, 4 query heads each; batch 8): one more context
    token per sequence costs 2 x 8 x 128 x 2 B of K and V per sequence, times the kernel's
    re-reads (1 when group-aware; TensorRT-LLM 0.9's masked MHA at a group of 4: 4 / 3.5 L2
    ratio), at HBM bandwidth x the profile's decode efficiency on this GPU (H100: its
    measured Hopper terms where it has them)."""
    b, lo, hi = 8, 1024, 3072
    per_token = b * 2 * 8 * 128 * 2.0
    l2 = SE.l2_to_hbm_ratio(GPU.name, GPU.memory_bandwidth_GBps)
    reads = 1.0 if engine is not EP.TRTLLM_SESSION_09 else max(1.0, 4 / l2)
    eff = engine.decode_attention(GPU.name).efficiency.value
    want = (hi - lo) * per_token * reads / (GPU.memory_bandwidth_GBps * 1e9 * eff)
    d = _decode(engine, b, hi, MODEL8).fwd_s - _decode(engine, b, lo, MODEL8).fwd_s
    assert d == pytest.approx(want, rel=1e-9)
    d2 = _decode(engine, b, 2 * hi - lo, MODEL8).fwd_s - _decode(engine, b, hi, MODEL8).fwd_s
    assert d2 == pytest.approx(d, rel=1e-9)  # linear


def test_group_aware_decode_kernels_read_the_cache_once() -> None:
    """FlashAttention / FlashInfer: 1 read; TensorRT-LLM 0.9's precompiled XQA covers head_dim
    128 at 8 query heads per KV head, its masked MHA at a group of 29 (Falcon-180B at TP 8)
    re-reads through L2; the executor's JIT XQA (0.11+) reads every group once."""
    old = EP.TRTLLM_SESSION_09
    assert SE.kv_reads(EP.VLLM, 29, 1, 64) == 1.0
    assert SE.kv_reads(old, 64, 8, 128) == 1.0
    assert SE.kv_reads(old, 29, 1, 64) == pytest.approx(29 / 3.5)
    assert SE.kv_reads(old, 32, 8, 128) == pytest.approx(4 / 3.5)  # Llama-3-8B's group of 4
    assert SE.kv_reads(old, 32, 32, 128) == 1.0  # MHA: one query head per KV head
    assert SE.kv_reads(EP.TRTLLM, 29, 1, 64) == 1.0
    assert SE.kv_reads(EP.TRTLLM, 32, 8, 128) == 1.0


def test_l2_reread_ratio_is_per_gpu() -> None:
    """The masked-MHA re-reads run at the GPU's own L2 / HBM ratio where a source gives its L2
    rate (A100: the whitepaper's 5,120 B/clk x 1.41 GHz), the A100's 3.5 elsewhere; a larger
    ratio means fewer HBM-equivalent reads, never below one."""
    a100 = SE.l2_to_hbm_ratio("A100-SXM4-80GB", 2039.0)
    assert a100 == pytest.approx(5120 * 1.41 / 2039.0, rel=1e-3)
    assert SE.l2_to_hbm_ratio("no-such-gpu", 1000.0) == SE.L2_TO_HBM_BANDWIDTH.value
    old = EP.TRTLLM_SESSION_09
    assert SE.kv_reads(old, 29, 1, 64, a100) == pytest.approx(29 / a100)
    assert SE.kv_reads(old, 29, 1, 64, 1.5) == pytest.approx(29 / 1.5)
    assert SE.kv_reads(old, 2, 1, 64, 3.0) == 1.0
    for name, l2 in SE.L2_READ_GBPS.items():
        assert l2.source and l2.value > 0, name


def _fp8_prefill(engine: SE.EngineProfile, prompt: int = 1024) -> float:
    return prefill_block_time(
        MODEL8,
        GPU,
        tp=1,
        batch=1,
        prompt=prompt,
        precision="fp8",
        tp_link=NVSWITCH,
        engine=engine,
    ).fwd_s


def test_tensorrt_engines_fuse_the_fp8_input_casts_into_their_producers() -> None:
    """A TensorRT-LLM FP8 prefill pays no cast pass for the norm- and activation-fed GEMM
    inputs (TensorRT's Q/DQ fusion); the 0.11+ executor's FP8 context FMHA writes the
    out-projection's input in FP8 too, the 0.9 session keeps that one cast.  The difference
    to the same profile without the fusion is exactly the fused casts' HBM time plus the byte
    per element the two norms and the activation no longer write (FP8 out, not 16-bit)."""
    h = MODEL8.hidden_size
    q = MODEL8.num_attention_heads * MODEL8.kv_channels
    f = MODEL8.ffn_hidden_size
    tokens = 1024.0
    cast_bytes = 3.0 * tokens * (2 * h + q + f)  # FP8_CAST_BYTES per cast element
    narrowed_bytes = (2.0 - 1.0) * tokens * (2 * h + f)  # 2 norms (h) + SwiGLU (f) write 1 B
    bw = GPU.memory_bandwidth_GBps * 1e9 * GPU.memory_efficiency
    for engine, kept in ((EP.TRTLLM, 0.0), (EP.TRTLLM_SESSION_09, q / (2 * h + q + f))):
        assert engine.fused_activation_quant and "Q/DQ" in engine.fused_activation_quant_source
        unfused = dataclasses.replace(engine, fused_activation_quant=False)
        saved = _fp8_prefill(unfused) - _fp8_prefill(engine)
        assert saved == pytest.approx((cast_bytes * (1.0 - kept) + narrowed_bytes) / bw, rel=1e-9)
    assert not EP.VLLM_V0_06.fused_activation_quant and not EP.SGLANG.fused_activation_quant
    assert EP.TRTLLM.fp8_context_fmha and not EP.TRTLLM_SESSION_09.fp8_context_fmha
    # 16-bit prefills have no casts: the fusion changes nothing.
    bf16 = dict(tp=1, batch=1, prompt=512, precision="bf16", tp_link=NVSWITCH)
    unfused = dataclasses.replace(EP.TRTLLM, fused_activation_quant=False)
    assert prefill_block_time(MODEL8, GPU, engine=EP.TRTLLM, **bf16).fwd_s == (  # type: ignore[arg-type]
        prefill_block_time(MODEL8, GPU, engine=unfused, **bf16).fwd_s  # type: ignore[arg-type]
    )


# --- GEMM ----------------------------------------------------------------------------------
def test_smooth_gemm_adds_at_the_ridge_and_is_the_roofline_far_from_it() -> None:
    """At t_c = t_m the GEMM takes fixed + 2^(1/p) t_c; with t_m = 1000 t_c, within 0.1% of
    fixed + t_m; never below the roofline max."""
    p = SE.GEMM_OVERLAP_EXPONENT.value
    fixed = SE.GEMM_KERNEL_FIXED_US.value * 1e-6
    t = SE.gemm_time(1e12, 1e9, 1e15, 1e12)  # 1 ms each
    assert t == pytest.approx(fixed + 2 ** (1 / p) * 1e-3, rel=1e-12)
    far = SE.gemm_time(1e9, 1e9, 1e15, 1e12)  # 1 us compute, 1 ms memory
    assert far == pytest.approx(fixed + 1e-3, rel=1e-3)
    assert far >= fixed + 1e-3


def test_roofline_profile_is_todays_cost_model() -> None:
    """engine=ROOFLINE prices decode and prefill exactly as no engine at all."""
    kw = dict(tp=2, batch=16, precision="bf16", tp_link=NVSWITCH)
    a = prefill_block_time(MODEL8, GPU, prompt=512, **kw)  # type: ignore[arg-type]
    b = prefill_block_time(MODEL8, GPU, prompt=512, engine=EP.ROOFLINE, **kw)  # type: ignore[arg-type]
    assert a == b
    assert _decode(EP.ROOFLINE, 16, 900, MODEL8, tp=2) == decode_block_time(
        MODEL8,
        GPU,
        tp=2,
        batch=16,
        context_len=900,
        precision="bf16",
        kv_precision="bf16",
        tp_link=NVSWITCH,
    )


# --- sources -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "engine", [EP.VLLM, EP.VLLM_V0_06, EP.SGLANG, EP.SGLANG_V0_3, EP.TRTLLM, EP.TRTLLM_SESSION_09]
)
def test_every_profile_constant_names_its_source(engine: SE.EngineProfile) -> None:
    """Every Sourced field of a profile (and of its custom all-reduce) has a value and a
    source string; the group-aware rule and the all-reduce thresholds cite theirs."""
    consts = engine.constants()
    # graphs, graph batch, prefill piecewise graphs, launch, host, decode attention eff +
    # fixed, prefill attention fixed, sampling
    assert len(consts) == 9
    car = engine.custom_allreduce
    assert car is not None
    consts |= {
        "latency_us": car.latency_us,
        "oneshot": car.oneshot_link_fraction,
        "twoshot": car.twoshot_link_fraction,
    }
    for name, c in consts.items():
        assert isinstance(c.source, str) and len(c.source) > 20, name
        assert math.isfinite(c.value), name
    assert len(car.source) > 40 and len(engine.group_aware_source) > 20
    for g in (SE.GEMM_OVERLAP_EXPONENT, SE.GEMM_KERNEL_FIXED_US, SE.L2_TO_HBM_BANDWIDTH):
        assert len(g.source) > 20


def test_auto_is_vllm_and_bad_names_are_refused() -> None:
    """auto resolves to vLLM; the workload field and the step cost refuse unknown engines."""
    assert EP.resolve("auto") is EP.VLLM
    with pytest.raises(ValueError, match="serving_engine"):
        InferenceWorkload(kind="inference", prompt_tokens=8, output_tokens=8, serving_engine="tgi")
    wl = InferenceWorkload(kind="inference", prompt_tokens=64, output_tokens=8, batch_size=2)
    plan = _plan(MODEL8.num_layers, 1, 2)
    with pytest.raises(SpecError, match="engine"):
        roofline_step_cost(
            MODEL8,
            CLUSTER,
            wl,
            plan.replica_groups[0],
            max_num_seqs=2,
            max_num_batched_tokens=128,
            engine="tgi",
        )


# --- evaluator and simulator ---------------------------------------------------------------
def _plan(layers: int, tp: int, batch: int) -> Plan:
    return Plan.model_validate(
        {
            "kind": "inference",
            "replica_groups": [
                {
                    "count": 1,
                    "batch_size": batch,
                    "stages": [
                        {
                            "first_layer": 0,
                            "last_layer": layers - 1,
                            "pool": "h100",
                            "tp": tp,
                            "devices": [[["h100-0", j] for j in range(tp)]],
                        }
                    ],
                }
            ],
        }
    )


@pytest.mark.parametrize("engine", ["roofline", "vllm", "sglang", "trtllm"])
def test_evaluator_and_simulator_agree_on_a_static_batch(engine: str) -> None:
    """All requests at t=0, no chunking: the simulator's TTFT and mean TPOT are the
    evaluator's under every profile (same step model, same step overhead)."""
    prompt, out, batch, tp = 512, 64, 8, 2
    wl = InferenceWorkload(
        kind="inference",
        prompt_tokens=prompt,
        output_tokens=out,
        batch_size=batch,
        serving_engine=engine,  # type: ignore[arg-type]
    )
    plan = _plan(MODEL8.num_layers, tp, batch)
    rep = evaluate(MODEL8, CLUSTER, wl, plan)
    assert rep.feasible, rep.violations
    g = rep.groups[0]
    reqs = generate_requests(batch, math.inf, Lengths.fixed(prompt), Lengths.fixed(out))
    res = simulate(MODEL8, CLUSTER, wl, plan, reqs, max_num_batched_tokens=batch * prompt)
    assert res.ttft_ms.p99 == pytest.approx(g["ttft_ms"], rel=1e-9)
    assert res.tpot_ms.mean == pytest.approx(g["tpot_ms"], rel=1e-9)


def test_engine_step_is_slower_than_the_roofline_and_counts_the_host_time() -> None:
    """Each engine's decode step costs more than the roofline's (fixed kernel times, decode
    efficiency below 1, host time); vLLM's differs from SGLang's by at least its extra host
    time per step minus what SGLang's slower decode kernel adds at this small context."""
    wl0 = InferenceWorkload(kind="inference", prompt_tokens=128, output_tokens=32, batch_size=4)
    plan = _plan(MODEL8.num_layers, 1, 4)
    tpot = {
        e: evaluate(MODEL8, CLUSTER, wl0.model_copy(update={"serving_engine": e}), plan).tpot_ms
        for e in ("roofline", "vllm", "sglang", "trtllm")
    }
    assert all(tpot[e] is not None for e in tpot)
    assert min(tpot["vllm"], tpot["sglang"], tpot["trtllm"]) > tpot["roofline"]  # type: ignore[operator]
    host = (EP.VLLM.step_host_us.value - EP.SGLANG.step_host_us.value) * 1e-3
    assert tpot["vllm"] - tpot["sglang"] > 0.5 * host  # type: ignore[operator]


def test_simulator_tables_take_the_engine_argument() -> None:
    """roofline_step_cost(engine=...) overrides the workload's engine: the step overhead is the
    profile's host time, and the roofline tables have none."""
    wl = InferenceWorkload(kind="inference", prompt_tokens=64, output_tokens=8, batch_size=2)
    group = _plan(MODEL8.num_layers, 1, 2).replica_groups[0]
    kw = dict(max_num_seqs=2, max_num_batched_tokens=128)
    roof = roofline_step_cost(MODEL8, CLUSTER, wl, group, engine="roofline", **kw)  # type: ignore[arg-type]
    vllm = roofline_step_cost(MODEL8, CLUSTER, wl, group, **kw)  # type: ignore[arg-type]
    assert roof.step_overhead_s == 0.0
    assert vllm.step_overhead_s == pytest.approx(EP.VLLM.step_host_us.value * 1e-6)
    assert np.all(vllm.decode_s[1:] > roof.decode_s[1:])


def test_a_calibration_replaces_the_decode_attention_efficiency() -> None:
    """A calibration measuring half vLLM's decode-attention efficiency on the GPU (its H100
    terms) doubles the per-context-token decode cost the evaluator charges (TPOT difference
    between two output lengths: the mean context moves by half the output difference)."""
    from solver.specs import Calibration

    eff = EP.VLLM.decode_attention(GPU.name).efficiency.value
    cal = Calibration(gpu=GPU.name, decode_attention_efficiency=eff / 2)
    plan = _plan(MODEL8.num_layers, 1, 8)

    def slope(c: Calibration | None) -> float:
        t = []
        for out in (256, 2304):  # mean context 128 + 128 and 128 + 1152
            wl = InferenceWorkload(
                kind="inference", prompt_tokens=128, output_tokens=out, batch_size=8
            )
            tpot = evaluate(MODEL8, CLUSTER, wl, plan, calibration=c).tpot_ms
            assert tpot is not None
            t.append(tpot)
        return t[1] - t[0]

    assert slope(cal) == pytest.approx(2.0 * slope(None), rel=1e-9)


def test_a_calibration_prices_small_allreduces_by_its_measured_line_up_to_its_crossover() -> None:
    """``allreduce_small_latency_us`` / ``_bandwidth_GBps`` / ``_max_bytes`` (written by
    ``profile --from-aiconfigurator``) replace vLLM's source thresholds: every message up to
    the measured crossover costs ``alpha + (n-1) S / B`` -- also past vLLM's 256 KiB one-shot
    threshold at TP 8, where the uncalibrated profile runs two-shot --, and a larger one NCCL's
    ring, although vLLM's 8 MiB workspace would still take it."""
    from solver.evaluate.inference import engine_for_gpu
    from solver.specs import Calibration

    cal = Calibration(
        gpu=GPU.name,
        allreduce_small_latency_us=7.0,
        allreduce_small_bandwidth_GBps=120.0,
        allreduce_small_max_bytes=1024 * 1024,
    )
    eng = engine_for_gpu("vllm", GPU, cal, NVSWITCH)
    assert SE.custom_allreduce_algorithm(EP.VLLM, 512 * KIB, 8, NVSWITCH) == "twoshot"
    assert SE.custom_allreduce_algorithm(eng, 512 * KIB, 8, NVSWITCH) == "oneshot"
    assert SE.allreduce_time(eng, 512 * KIB, 8, NVSWITCH) == pytest.approx(
        7e-6 + 7 * 512 * KIB / 120e9, rel=1e-12
    )
    assert SE.allreduce_time(eng, 1024 * KIB, 8, NVSWITCH) == pytest.approx(
        7e-6 + 7 * 1024 * KIB / 120e9, rel=1e-12
    )
    big = 1024 * KIB + 16
    assert SE.custom_allreduce_algorithm(EP.VLLM, big, 8, NVSWITCH) == "twoshot"
    assert SE.custom_allreduce_algorithm(eng, big, 8, NVSWITCH) == "nccl"
    assert SE.allreduce_time(eng, big, 8, NVSWITCH) == ring_allreduce_time(big, 8, NVSWITCH)
    # No NVLink mesh beyond two GPUs: NCCL whatever the calibration says.
    assert SE.custom_allreduce_algorithm(eng, 512 * KIB, 4, PCIE) == "nccl"
    # A calibration for another GPU leaves the profile alone.
    other = Calibration(gpu="A100-SXM4-80GB", allreduce_small_max_bytes=16)
    assert engine_for_gpu("vllm", GPU, other, NVSWITCH) == EP.VLLM


def test_prefill_attention_fixed_latency_is_paid_once_per_forward() -> None:
    """The context-attention op's fixed latency (AIConfigurator: about 11-14 us per layer on a
    one-token prompt) is added once per block forward -- one varlen call, whatever the batch
    and prompt -- on top of the fused kernel's FLOP time; the roofline profile has none."""
    kw = dict(tp=1, precision="bf16", tp_link=NVSWITCH)
    none = dataclasses.replace(EP.VLLM, prefill_attention_fixed_us=SE.Sourced(0.0, "test: off"))
    for batch, prompt in ((1, 4096), (8, 2048)):  # GPU-bound: the eager launch floor is below
        with_fixed = prefill_block_time(
            MODEL8, GPU, batch=batch, prompt=prompt, engine=EP.VLLM, **kw
        )  # type: ignore[arg-type]
        without = prefill_block_time(MODEL8, GPU, batch=batch, prompt=prompt, engine=none, **kw)  # type: ignore[arg-type]
        assert with_fixed.fwd_s - without.fwd_s == pytest.approx(11.2e-6, rel=1e-9)
    assert SE.prefill_attention_fixed_s(EP.ROOFLINE) == 0.0
    for e in (EP.VLLM, EP.SGLANG, EP.TRTLLM, EP.TRTLLM_SESSION_09):
        assert 5.0 < e.prefill_attention_fixed_us.value < 20.0


def test_trtllm_has_an_executor_and_a_0_9_session_profile() -> None:
    """``trtllm`` is the executor (0.11+), ``trtllm-0.9`` the session runtime of the published
    0.9 tables; they share the all-reduce (workspace rule: <= 8,000,000 B custom; the
    executor's alpha on H100 / H200 is measured), launch and sampling terms and differ in the
    decode kernel's group coverage; the benchmarks map an
    engine string to one by version; the simulator's step cost takes either by name."""
    assert EP.resolve("trtllm") is EP.TRTLLM and EP.resolve("trtllm-0.9") is EP.TRTLLM_SESSION_09
    for e in (EP.TRTLLM, EP.TRTLLM_SESSION_09):
        assert SE.custom_allreduce_algorithm(e, 8e6, 8, NVSWITCH) == "twoshot"  # <= workspace
        assert SE.custom_allreduce_algorithm(e, 8e6 + 16, 8, NVSWITCH) == "nccl"
    car = EP.TRTLLM.custom_allreduce
    assert car is not None and car.latency_us_on
    assert dataclasses.replace(car, latency_us_on=()) == EP.TRTLLM_SESSION_09.custom_allreduce
    assert EP.TRTLLM.group_aware_all and not EP.TRTLLM_SESSION_09.group_aware_all
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import validate_serving as vs

    assert vs.engine_key("TensorRT-LLM 0.9.0") == "trtllm-0.9"
    assert vs.engine_key("TensorRT-LLM 0.14.0 (Triton tensorrtllm_backend)") == "trtllm"
    assert vs.engine_key("TensorRT-LLM 0.17") == "trtllm"
    assert vs.engine_key("vLLM 0.6.0 (--num-scheduler-steps 10)") == "vllm-0.6"
    assert vs.engine_key("vLLM 0.11.0") == "vllm"
    assert vs.engine_key("SGLang 0.3.0") == "sglang-0.3"
    assert vs.engine_key("SGLang 0.4.0") == "sglang"
    plan = _plan(MODEL8.num_layers, 1, 8)
    wl = InferenceWorkload(kind="inference", prompt_tokens=128, output_tokens=64, batch_size=8)
    grp = plan.replica_groups[0]
    kw = dict(max_num_seqs=8, max_num_batched_tokens=1024)
    new = roofline_step_cost(MODEL8, CLUSTER, wl, grp, engine="trtllm", **kw)  # type: ignore[arg-type]
    old = roofline_step_cost(MODEL8, CLUSTER, wl, grp, engine="trtllm-0.9", **kw)  # type: ignore[arg-type]
    assert new.kv_per_token_s < old.kv_per_token_s  # group of 4: read once vs 4 / 3.5 times


def test_vllm_v1_prefill_runs_piecewise_graphs_and_v0_runs_it_eager() -> None:
    """vLLM V1 (FULL_AND_PIECEWISE) replays piecewise graphs for a prefill of at most its
    largest capture size in tokens: the host issues 2 launches per layer (attention op + graph
    piece), so a short launch-bound prefill costs its GPU time; V0 (0.6) and a longer prefill
    run eager, at least kernels x launch_us (H100 measurement: one Llama-3-8B layer at 128
    tokens, 293 us graphed vs 586 us eager, benchmarks/validation/serving/raw-h100x1-serving-
    run1.json)."""
    kw = dict(tp=1, batch=1, precision="bf16", tp_link=NVSWITCH)
    v1 = prefill_block_time(MODEL8, GPU, prompt=128, engine=EP.VLLM, **kw)  # type: ignore[arg-type]
    v0 = prefill_block_time(MODEL8, GPU, prompt=128, engine=EP.VLLM_V0_06, **kw)  # type: ignore[arg-type]
    kernels = 9  # the block's operator groups at TP 1 (eager launch floor)
    assert v0.fwd_s == pytest.approx(kernels * EP.VLLM.launch_us.value * 1e-6, rel=1e-12)
    assert v1.fwd_s < v0.fwd_s
    assert v1.fwd_s >= SE.PIECEWISE_LAUNCHES_PER_LAYER * EP.VLLM.launch_us.value * 1e-6
    assert SE.prefill_piecewise(EP.VLLM, 512, 80.0, 1)
    assert not SE.prefill_piecewise(EP.VLLM, 513, 80.0, 1)
    assert not SE.prefill_piecewise(EP.VLLM_V0_06, 16, 80.0, 1)
    assert not SE.prefill_piecewise(EP.SGLANG, 16, 80.0, 1)
    assert SE.graphed(EP.VLLM_V0_06, 256, 80.0, 1) and not SE.graphed(EP.VLLM_V0_06, 257, 80.0, 1)


def test_sglang_0_3_is_sglang_with_its_synchronous_scheduler_host_time() -> None:
    """``sglang-0.3`` (no overlap scheduler) differs from ``sglang`` only by the host time every
    step adds and by its fixed list of captured decode batches (up to 160, model_runner.py of
    the 0.3.0 wheel, whatever the GPU memory: 0.4's memory-dependent limit does not apply), and
    by keeping the A100 decode-attention and all-reduce terms where today's SGLang has measured
    Hopper ones; its step overhead is larger by exactly the host time."""
    old, new = EP.resolve("sglang-0.3"), EP.SGLANG
    assert old is EP.SGLANG_V0_3
    differ = {
        f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)
    }
    hopper = {"custom_allreduce", "decode_attention_on"}
    assert differ == {"name", "version", "step_host_us", "graph_max_batch"} | hopper
    assert old.decode_attention_on == () and new.decode_attention_on
    assert old.decode_attention(GPU.name) == new.decode_attention("A100-SXM4-80GB")
    assert old.custom_allreduce is not None and new.custom_allreduce is not None
    assert old.custom_allreduce == dataclasses.replace(new.custom_allreduce, latency_us_on=())
    assert new.step_host_us.value == 0.0 < old.step_host_us.value
    assert "1738" in old.step_host_us.source  # the PR that measured what the overlap hides
    assert SE.graphed(old, 160, 40.0, 1) and not SE.graphed(old, 161, 80.0, 4)
    assert SE.graphed(new, 256, 80.0, 1) and not SE.graphed(new, 33, 40.0, 1)
    wl = InferenceWorkload(kind="inference", prompt_tokens=64, output_tokens=8, batch_size=2)
    group = _plan(MODEL8.num_layers, 1, 2).replica_groups[0]
    kw = dict(max_num_seqs=2, max_num_batched_tokens=128)
    t_old = roofline_step_cost(MODEL8, CLUSTER, wl, group, engine="sglang-0.3", **kw)  # type: ignore[arg-type]
    t_new = roofline_step_cost(MODEL8, CLUSTER, wl, group, engine="sglang", **kw)  # type: ignore[arg-type]
    assert np.all(t_old.decode_s[1:] > t_new.decode_s[1:])  # A100 terms: 0.48 of HBM, 14.4 us
    assert t_old.step_overhead_s - t_new.step_overhead_s == pytest.approx(
        old.step_host_us.value * 1e-6, rel=1e-12
    )


def test_validation_prices_every_published_engine_by_its_own_profile() -> None:
    """benchmarks/validate_serving.py maps each case's engine and version to a profile
    (``engine_key``): every profile it names is one the workload schema accepts, so no case is
    priced by a fallback, and a case's ``num_scheduler_steps`` reaches the simulator."""
    import json
    import sys
    import typing
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    import validate_serving as vs

    accepted = typing.get_args(InferenceWorkload.model_fields["serving_engine"].annotation)
    cases = json.loads((bench / "data" / "published-serving.json").read_text())["cases"]
    keys = {vs.engine_key(c["engine"]) for c in cases}
    assert {"trtllm-0.9", "vllm-0.6", "sglang-0.3"} <= keys
    assert keys <= set(accepted)
    assert vs.scheduler_steps({}) == {}
    assert vs.scheduler_steps({"num_scheduler_steps": 10}) == {"num_scheduler_steps": 10}
    assert "num_scheduler_steps" in inspect.signature(simulate).parameters


# --- physical floor of the published TensorRT-LLM first-token latencies ------------------------
def _ttft_cases() -> list[tuple[str, dict[str, object]]]:
    """Every batch-1 TTFT case of TensorRT-LLM 0.9's tables: the A100 set
    (shared/data/published-inference.json) and the H100 / H200 FP8 set
    (benchmarks/data/published-serving.json)."""
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    import validate_inference as vi

    out: list[tuple[str, dict[str, object]]] = []
    try:
        shared_root = vi.shared_dir()
    except SystemExit:  # a clone without ../shared: the A100 set is not there to check
        pytest.skip(f"shared/data/{vi.DATA_FILE} not found (set SHARDWISE_SHARED)")
    shared = json.loads((shared_root / "data" / vi.DATA_FILE).read_text())
    out += [("a100", c) for c in shared["cases"] if "ttft_ms" in c["measured"]]
    served = json.loads((bench / "data" / "published-serving.json").read_text())
    out += [
        ("serving", c)
        for c in served["cases"]
        if c["source"] == "trtllm-v0.9.0-perf" and "ttft_ms" in c["measured"]
    ]
    return out


def test_trtllm_ttft_never_below_the_physical_floor() -> None:
    """The trtllm-0.9 profile never predicts a first token faster than the hardware allows --
    every weight read once at peak HBM bandwidth, the forward's FLOPs at the dense peak
    (validate_inference.ttft_floor_ms) -- and no published row is below that floor either
    (the A100 Mixtral 128-token row runs at 0.96 of it: 23.8 ms against 22.9)."""
    cases = _ttft_cases()  # puts benchmarks/ on the path
    assert len(cases) == 8 + 16
    import validate_inference as vi
    import validate_serving as vs

    shapes = json.loads((vi.shared_dir() / "data" / vi.DATA_FILE).read_text())["model_shapes"]
    for kind, case in cases:
        if kind == "a100":
            model, cluster = (
                vi.build_model(case["model"], shapes[case["model"]]),
                vi.build_cluster(),
            )
            plan = vi.build_plan(cluster, model, case)
        else:
            model, cluster = load_model(case["model"]), vs.build_cluster(case["gpu"])
            plan = vs.build_plan(cluster, model, case["tp"], case["pp"], 1)
        floor = vi.ttft_floor_ms(case, model, cluster)
        work = vi.build_workload(case, 1.0, "trtllm-0.9")
        predicted = evaluate(model, cluster, work, plan).ttft_ms
        assert predicted is not None and predicted >= floor, case["id"]
        assert case["measured"]["ttft_ms"] >= floor, case["id"]
        if case["id"] == "trt09-a100-fp16-mixtral-8x7b-tp2-ttft-128":
            assert floor / case["measured"]["ttft_ms"] == pytest.approx(0.96, abs=0.005)


@pytest.mark.parametrize(
    ("engine", "policy"),
    [
        ("trtllm", "reserve"),
        ("trtllm-0.9", "reserve"),
        ("vllm", "preempt"),
        ("vllm-0.6", "preempt"),
        ("sglang", "preempt"),
        ("auto", "preempt"),
    ],
)
def test_kv_policy_follows_the_engine_family(engine: str, policy: str) -> None:
    """Both TensorRT-LLM profiles reserve KV (GUARANTEED_NO_EVICT), the others preempt."""
    from solver.serving.api import kv_policy_for

    wl = InferenceWorkload(
        kind="inference", prompt_tokens=64, output_tokens=8, serving_engine=engine
    )
    assert kv_policy_for(wl) == policy


def test_kv_token_cost_is_read_without_the_launch_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The marginal cost of one more cached token is the decode step's GPU time per token even
    where a batch-1 step is launch-bound (eager, long host issue): there both probes of the
    step cost (context 0 and 4,096 tokens) would take the same host-bound time, and every KV
    read would be priced at zero."""
    plan = _plan(MODEL8.num_layers, 1, 8)
    wl = InferenceWorkload(kind="inference", prompt_tokens=128, output_tokens=64, batch_size=8)
    grp = plan.replica_groups[0]
    kw = dict(max_num_seqs=8, max_num_batched_tokens=1024)
    base = roofline_step_cost(MODEL8, CLUSTER, wl, grp, engine="trtllm", **kw)  # type: ignore[arg-type]
    slow = dataclasses.replace(
        EP.TRTLLM,
        cuda_graphs=SE.Sourced(0.0, "test: eager"),
        launch_us=SE.Sourced(1e4, "test: a host that issues one kernel per 10 ms"),
    )
    monkeypatch.setitem(EP.ENGINES, "trtllm", slow)
    bound = roofline_step_cost(MODEL8, CLUSTER, wl, grp, engine="trtllm", **kw)  # type: ignore[arg-type]
    assert bound.decode_s[1] > 10 * base.decode_s[1]  # the batch-1 step is launch-bound
    assert base.kv_per_token_s > 0
    assert bound.kv_per_token_s == pytest.approx(base.kv_per_token_s)
