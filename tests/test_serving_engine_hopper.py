"""The per-GPU serving terms of solver/costmodel/serving_engine.py: today's vLLM and SGLang
decode-attention kernels measured on H100 / H200 (fixed time, HBM efficiency per KV cache dtype,
a cost per (sequence, KV head)), the custom all-reduce latency on H100 / H200, the A100
context-attention efficiency of TensorRT-LLM and vLLM, each with the NVIDIA table it was fitted
on; the step model uses them on those GPUs only, the older engine profiles and the other GPUs
keep their terms, and a calibration replaces them."""

from __future__ import annotations

import dataclasses

import pytest

from solver.catalog import resolve_gpu
from solver.costmodel import engine_profiles as EP
from solver.costmodel import serving_engine as SE
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import block_forward_ops, op_time
from solver.costmodel.serving_compute import decode_block_time, prefill_block_time
from solver.costmodel.stack import Stack
from solver.io import load_model

H100 = resolve_gpu("H100-SXM5-80GB")
H200 = resolve_gpu("H200-SXM-141GB")
A100 = resolve_gpu("A100-SXM4-80GB")
NVSWITCH = LinkTier(bandwidth_GBps=450.0, latency_us=3.0, name="nvswitch")
MODEL8 = load_model("llama3-8b")  # 8 KV heads x 128 at TP 1
TODAY = (EP.VLLM, EP.SGLANG)
OLD = (EP.VLLM_V0_06, EP.SGLANG_V0_3, EP.TRTLLM_SESSION_09)


def _decode(engine: SE.EngineProfile, batch: int, ctx: int, kv: str, gpu=H100, tp: int = 1):
    return decode_block_time(
        MODEL8,
        gpu,
        tp=tp,
        batch=batch,
        context_len=ctx,
        precision="bf16",
        kv_precision=kv,
        tp_link=NVSWITCH,
        engine=engine,
    )


def _without_hopper(engine: SE.EngineProfile) -> SE.EngineProfile:
    car = engine.custom_allreduce
    assert car is not None
    return dataclasses.replace(
        engine,
        decode_attention_on=(),
        custom_allreduce=dataclasses.replace(car, latency_us_on=()),
    )


@pytest.mark.parametrize("engine", TODAY)
@pytest.mark.parametrize(("gpu", "kv"), [(H100, "bf16"), (H100, "fp8"), (H200, "bf16")])
def test_decode_block_uses_the_engines_hopper_attention_terms(
    engine: SE.EngineProfile, gpu, kv: str
) -> None:
    """Llama-3-8B at TP 1, batch 64 and 256, 512 cached tokens: the decode block under the
    profile minus the same block under its A100 terms is exactly the attention difference
    (fixed time, 64 / 256 sequences x 8 KV heads x the per-item cost, KV bytes at the two
    efficiencies): decode_block_time passes the GPU, the KV dtype and the sequence count."""
    here = engine.decode_attention(gpu.name, kv)
    base = engine.decode_attention("no-such-gpu", kv)
    assert here != base and here.per_sequence_kv_head_ns.value > 0
    bw = gpu.memory_bandwidth_GBps * 1e9
    kvb = 1.0 if kv == "fp8" else 2.0
    for batch in (64, 256):
        ctx = 512
        kv_bytes = batch * ctx * 2 * 8 * 128 * kvb + batch * 8 * 128 * 2 * kvb
        want = (here.fixed_us.value - base.fixed_us.value) * 1e-6
        want += batch * 8 * here.per_sequence_kv_head_ns.value * 1e-9
        want += kv_bytes / bw * (1 / here.efficiency.value - 1 / base.efficiency.value)
        got = (
            _decode(engine, batch, ctx, kv, gpu).fwd_s
            - _decode(_without_hopper(engine), batch, ctx, kv, gpu).fwd_s
        )
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("engine", TODAY)
def test_the_per_sequence_cost_is_linear_in_sequences_times_kv_heads(
    engine: SE.EngineProfile,
) -> None:
    """At zero KV bytes the decode kernel on H100 costs its fixed time plus the per-item cost
    for every (sequence, KV head): 2,048 items cost twice the per-item part of 1,024."""
    terms = engine.decode_attention(H100.name)
    bw = H100.memory_bandwidth_GBps * 1e9
    t1 = SE.decode_attention_time(engine, 0.0, 1.0, bw, gpu=H100.name, sequence_kv_heads=1024)
    t2 = SE.decode_attention_time(engine, 0.0, 1.0, bw, gpu=H100.name, sequence_kv_heads=2048)
    fixed = terms.fixed_us.value * 1e-6
    assert t2 - fixed == pytest.approx(2 * (t1 - fixed), rel=1e-12)
    assert t1 - fixed == pytest.approx(1024 * terms.per_sequence_kv_head_ns.value * 1e-9)


def test_hopper_terms_apply_on_hopper_only() -> None:
    """On the A100 (no Hopper terms) today's profiles price decode attention exactly as before:
    their own A100-fitted efficiency and fixed time, no per-sequence cost."""
    for engine in TODAY:
        on_a100 = engine.decode_attention(A100.name, "fp8")
        assert on_a100.efficiency == engine.decode_attention_efficiency
        assert on_a100.fixed_us == engine.decode_attention_fixed_us
        assert on_a100.per_sequence_kv_head_ns.value == 0.0
        a = _decode(engine, 32, 1024, "bf16", A100).fwd_s
        b = _decode(_without_hopper(engine), 32, 1024, "bf16", A100).fwd_s
        assert a == b


@pytest.mark.parametrize("engine", (*TODAY, EP.TRTLLM))
def test_small_allreduce_latency_is_the_hopper_tables(engine: SE.EngineProfile) -> None:
    """A 4 KB one-shot all-reduce over 2 GPUs on H100 costs the measured H100 alpha, on an
    A100 the A100 one: the difference is exactly the two latencies (same link, same bytes);
    the decode block's TP comm part carries it (2 all-reduces per block)."""
    car = engine.custom_allreduce
    assert car is not None
    h100, a100 = car.latency(H100.name).value, car.latency(A100.name).value
    assert a100 == car.latency_us.value and h100 != a100
    t_h = SE.allreduce_time(engine, 4096.0, 2, NVSWITCH, H100.name)
    t_a = SE.allreduce_time(engine, 4096.0, 2, NVSWITCH, A100.name)
    assert t_h - t_a == pytest.approx((h100 - a100) * 1e-6, rel=1e-9)
    d = _decode(engine, 1, 128, "bf16", H100, tp=2)
    d0 = _decode(_without_hopper(engine), 1, 128, "bf16", H100, tp=2)
    assert d.tp_comm_fwd_s - d0.tp_comm_fwd_s == pytest.approx(2 * (h100 - a100) * 1e-6)
    p = prefill_block_time(
        MODEL8, H100, tp=2, batch=1, prompt=1, precision="bf16", tp_link=NVSWITCH, engine=engine
    )
    p0 = prefill_block_time(
        MODEL8,
        H100,
        tp=2,
        batch=1,
        prompt=1,
        precision="bf16",
        tp_link=NVSWITCH,
        engine=_without_hopper(engine),
    )
    assert p.tp_comm_fwd_s - p0.tp_comm_fwd_s == pytest.approx(2 * (h100 - a100) * 1e-6)


@pytest.mark.parametrize("engine", OLD)
def test_older_profiles_keep_their_a100_terms_on_hopper(engine: SE.EngineProfile) -> None:
    """vLLM 0.6, SGLang 0.3 and TensorRT-LLM 0.9 price the published runs of those versions:
    on H100 their decode attention and all-reduce latency are their own, not today's tables."""
    assert engine.decode_attention_on == ()
    assert engine.decode_attention(H100.name) == engine.decode_attention(A100.name)
    car = engine.custom_allreduce
    assert car is not None and car.latency(H100.name) == car.latency_us


def test_trtllm_keeps_its_decode_attention_terms() -> None:
    """The executor profile has no Hopper decode-attention terms (they made the published
    TensorRT-LLM cases worse end to end: serving_engine.py, TRTLLM)."""
    assert EP.TRTLLM.decode_attention_on == ()


def test_every_hopper_term_names_its_table() -> None:
    """Each Hopper term is positive and cites the aiconfigurator-core 0.12.0 table it was fitted
    on: system, operator, backend and version."""
    for engine in EP.ENGINES.values():
        for gpu, kv, terms in engine.decode_attention_on:
            system = {"H100-SXM5-80GB": "h100_sxm", "H200-SXM-141GB": "h200_sxm"}[gpu]
            assert kv in ("16-bit", "fp8")
            for c in (terms.fixed_us, terms.efficiency, terms.per_sequence_kv_head_ns):
                assert c.value > 0
                assert "aiconfigurator-core 0.12.0" in c.source
                assert f"{system}/attention/{engine.name}/" in c.source
                assert "generation_attention_perf" in c.source and f"{kv} KV" in c.source
            assert terms.efficiency.value <= 1.0
        car = engine.custom_allreduce
        if car is None:
            continue
        for gpu, alpha in car.latency_us_on:
            system = {"H100-SXM5-80GB": "h100_sxm", "H200-SXM-141GB": "h200_sxm"}[gpu]
            assert 0 < alpha.value < car.latency_us.value
            assert f"{system}/comm/" in alpha.source and "custom_allreduce_perf" in alpha.source


def test_a_calibration_replaces_the_hopper_terms() -> None:
    """A calibration measured on the user's GPU wins: its decode efficiency and fixed time
    replace the Hopper terms (no per-sequence cost: its fit has none) and its all-reduce
    latency replaces the Hopper alpha."""
    cal = SE.with_calibration(
        EP.VLLM, decode_attention_efficiency=0.5, allreduce_latency_us=7.0, source="cal"
    )
    terms = cal.decode_attention(H100.name)
    assert terms.efficiency.value == 0.5 and terms.per_sequence_kv_head_ns.value == 0.0
    assert cal.custom_allreduce is not None
    assert cal.custom_allreduce.latency(H100.name).value == 7.0


@pytest.mark.parametrize("engine", (EP.TRTLLM, EP.VLLM))
def test_a100_prefill_attention_runs_at_the_engines_measured_efficiency(
    engine: SE.EngineProfile,
) -> None:
    """The A100 catalog entry has no attention efficiency (the fused attention op is priced
    like a GEMM); under an engine with a measured A100 context-attention efficiency a
    4,096-token prefill's block changes by exactly the attention op's re-pricing at it; on the
    H100 (catalog efficiency measured) nothing changes."""
    eff = engine.prefill_attention_efficiency(A100.name)
    assert eff is not None and A100.attention_efficiency is None
    assert "context_attention_perf" in eff.source and "a100_sxm" in eff.source
    kw = dict(tp=1, batch=1, prompt=4096, precision="bf16", tp_link=NVSWITCH)
    core = next(
        o
        for o in block_forward_ops(
            MODEL8,
            tp=1,
            micro_batch=1,
            seq=4096,
            sequence_parallel=False,
            precision="bf16",
            stack=Stack(attention="flash", dropout=0.0, kernels="fused"),
        )
        if o.kind == "flash"
    )
    measured = A100.model_copy(update={"attention_efficiency": eff.value})
    want = op_time(core, measured, "bf16") - op_time(core, A100, "bf16")
    assert want != 0.0
    plain = dataclasses.replace(engine, prefill_attention_efficiency_on=())
    got = (
        prefill_block_time(MODEL8, A100, engine=engine, **kw).fwd_s  # type: ignore[arg-type]
        - prefill_block_time(MODEL8, A100, engine=plain, **kw).fwd_s  # type: ignore[arg-type]
    )
    assert got == pytest.approx(want, rel=1e-9)
    h = prefill_block_time(MODEL8, H100, engine=engine, **kw).fwd_s  # type: ignore[arg-type]
    h0 = prefill_block_time(MODEL8, H100, engine=plain, **kw).fwd_s  # type: ignore[arg-type]
    assert h == h0


def test_older_profiles_keep_the_catalog_prefill_attention() -> None:
    """vLLM 0.6, SGLang 0.3 and TensorRT-LLM 0.9 price prefill attention on the A100 as before."""
    for engine in OLD:
        assert engine.prefill_attention_efficiency(A100.name) is None


@pytest.mark.parametrize("engine", TODAY)
def test_every_fp8_kv_encoding_takes_the_fp8_terms(engine: SE.EngineProfile) -> None:
    """fp8, fp8_e4m3 and fp8_e5m2 caches are 1 byte each and priced by the same measured fp8
    terms on H100 (the table's fp8 KV rows), not by the profile's A100 fallback."""
    fp8 = engine.decode_attention(H100.name, "fp8")
    assert fp8 != engine.decode_attention(H100.name, "bf16")
    for kv in ("fp8_e4m3", "fp8_e5m2"):
        assert engine.decode_attention(H100.name, kv) == fp8
        assert _decode(engine, 64, 1024, kv).fwd_s == _decode(engine, 64, 1024, "fp8").fwd_s
