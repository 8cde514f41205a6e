"""Cost-model physics: parameter counts, FLOPs, activations, model states, KV cache, comms."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from solver.catalog import resolve_gpu
from solver.costmodel import (
    LinkTier,
    activation_transient_bytes,
    allgather_time,
    allreduce_time,
    block_activation_bytes,
    block_params,
    block_params_per_gpu,
    block_time,
    decode_block_time,
    head_activation_bytes,
    head_time,
    hierarchical_allreduce_time,
    kv_cache_bytes_per_token,
    model_flops_per_step,
    model_state_bytes,
    narayanan_eq3_flops,
    norm_params,
    reduce_scatter_time,
    total_params,
)
from solver.costmodel.compute import block_forward_ops
from solver.costmodel.stack import MEGATRON_2021, MODERN, Stack
from solver.specs import GPUSpec, Model

REPO = Path(__file__).resolve().parent.parent


def _published() -> dict[str, Any]:
    env = os.environ.get("SHARDWISE_SHARED")
    for root in ([Path(env)] if env else []) + [REPO.parent / "shared", REPO / "shared"]:
        f = root / "data" / "published-runs.json"
        if f.is_file():
            return dict(json.loads(f.read_text()))
    pytest.skip("shared/data/published-runs.json not found (set SHARDWISE_SHARED)")


def _gpt(m: dict[str, Any]) -> Model:
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


def _table1() -> list[dict[str, Any]]:
    return [
        c
        for c in _published()["training_cases"]
        if c["group"] == "Narayanan2021_Table1_weak_scaling"
    ]


GPT_1_7B = Model(
    name="gpt-1.7b",
    num_layers=24,
    hidden_size=2304,
    ffn_hidden_size=9216,
    num_attention_heads=24,
    num_kv_heads=24,
    vocab_size=51200,
    mlp="gelu",
    tied_embeddings=True,
    learned_position_embeddings=True,
)
LLAMA_70B = Model(
    name="llama3-70b",
    num_layers=80,
    hidden_size=8192,
    ffn_hidden_size=28672,
    num_attention_heads=64,
    num_kv_heads=8,
    vocab_size=128256,
    mlp="swiglu",
)
A100 = resolve_gpu("A100-SXM4-80GB")
H100 = resolve_gpu("H100-SXM5-80GB")
NVS = LinkTier(240.0, 3.0, "nvswitch")


# --- parameters ----------------------------------------------------------------------------
def test_params_reproduce_every_table1_row() -> None:
    """total_params rounds to each Megatron 2021 Table 1 params_b (eq. 2, tied embeddings)."""
    rows = _table1()
    assert len(rows) == 10
    for c in rows:
        m = c["model"]
        assert round(total_params(_gpt(m), m["seq_len"]) / 1e9, 1) == m["params_b"], c["id"]


def test_params_equal_eq2_plus_final_norm() -> None:
    """Ours = Narayanan eq. 2  12lh^2(1 + 13/(12h) + (V+s)/(12lh)) + the final LayerNorm (2h)."""
    for c in _table1():
        m = c["model"]
        n, h, v, s = m["layers"], m["hidden"], m["vocab"], m["seq_len"]
        eq2 = 12 * n * h**2 * (1 + 13 / (12 * h) + (v + s) / (12 * n * h))
        assert total_params(_gpt(m), s) == pytest.approx(eq2 + 2 * h, rel=1e-12)


def test_gpt_block_params_12h2_13h() -> None:
    """A GPT block has 12h^2 + 13h parameters (4h^2 attention, 8h^2 MLP, 13h biases+norms)."""
    h = 2304
    assert block_params(GPT_1_7B) == 12 * h * h + 13 * h


def test_llama70b_params_and_tp_sharding() -> None:
    """Llama-3-70B (GQA 8 kv heads, SwiGLU, untied) has ~70.6B params; TP shards sum back
    (tp <= kv heads: nothing replicated but the norms)."""
    assert total_params(LLAMA_70B, 8192) / 1e9 == pytest.approx(70.55, abs=0.01)
    bp = block_params(LLAMA_70B)
    assert block_params_per_gpu(LLAMA_70B, 8) * 8 == pytest.approx(
        bp + 7 * 2 * norm_params(LLAMA_70B)
    )
    # tp=16 > 8 kv heads: K/V projections replicated twice
    kv = 2 * 8192 * 8 * 128
    assert block_params_per_gpu(LLAMA_70B, 16) * 16 == pytest.approx(
        bp + kv + 15 * 2 * norm_params(LLAMA_70B)
    )


# --- FLOPs ---------------------------------------------------------------------------------
def test_hw_flops_match_narayanan_eq3() -> None:
    """Blocks with full recompute + LM head fwd/bwd = eq. 3 96Bslh^2(1 + s/6h + V/16lh) per sequence."""
    m = GPT_1_7B
    s = 2048
    blk = block_time(
        m,
        A100,
        tp=1,
        micro_batch=1,
        seq=s,
        recompute="full",
        sequence_parallel=False,
        precision="fp16",
        tp_link=NVS,
        stack=MEGATRON_2021,
    )
    hd = head_time(
        m, A100, tp=1, micro_batch=1, seq=s, precision="fp16", tp_link=NVS, stack=MEGATRON_2021
    )
    ours = m.num_layers * blk.hw_flops + hd.hw_flops
    assert ours == pytest.approx(narayanan_eq3_flops(1, s, 24, 2304, 51200), rel=1e-12)


def test_model_flops_match_korthikanti_eq7() -> None:
    """Model FLOPs per step (no recompute) = 72BLsh^2(1 + s/6h + V/(12hL)) (Korthikanti eq. 7)."""
    B, L, s, h, V = 8, 24, 2048, 2304, 51200
    eq7 = 72 * B * L * s * h**2 * (1 + s / (6 * h) + V / (12 * h * L))
    assert model_flops_per_step(GPT_1_7B, B, s) == pytest.approx(eq7, rel=1e-12)


def test_backward_is_twice_forward_and_recompute_adds_a_forward() -> None:
    """bwd compute = 2 x fwd compute; full recompute adds exactly one forward (incl. its TP comm)
    (the 2021 stack: un-fused attention, whose backward is 2x like a GEMM's)."""
    kw: dict[str, Any] = dict(
        tp=4,
        micro_batch=1,
        seq=2048,
        sequence_parallel=False,
        precision="bf16",
        tp_link=NVS,
        stack=MEGATRON_2021,
    )
    none = block_time(GPT_1_7B, H100, recompute="none", **kw)
    full = block_time(GPT_1_7B, H100, recompute="full", **kw)
    sel = block_time(GPT_1_7B, H100, recompute="selective", **kw)
    fc = none.fwd_s - none.tp_comm_fwd_s
    assert none.bwd_s - none.tp_comm_bwd_s == pytest.approx(2 * fc)
    assert full.bwd_s - none.bwd_s == pytest.approx(none.fwd_s)
    assert 0 < sel.bwd_s - none.bwd_s < 0.5 * fc
    assert full.hw_flops == pytest.approx(4 * none.flops_fwd)


def test_tp_comm_two_allreduces_each_way() -> None:
    """TP: 2 all-reduces of b*s*h 16-bit values forward and 2 backward (Narayanan Sec. 3.2);
    sequence parallelism moves the same ring volume (AG + RS)."""
    b, s, h, t = 2, 2048, 2304, 4
    ar = allreduce_time(b * s * h * 2.0, t, NVS)
    for sp in (False, True):
        pt = block_time(
            GPT_1_7B,
            H100,
            tp=t,
            micro_batch=b,
            seq=s,
            recompute="none",
            sequence_parallel=sp,
            precision="bf16",
            tp_link=NVS,
            stack=MODERN,
        )
        assert pt.tp_comm_fwd_s == pytest.approx(2 * ar)
        assert pt.tp_comm_bwd_s == pytest.approx(2 * ar)
    assert 2 * allgather_time(1e9, t, NVS) + 0 == pytest.approx(
        allgather_time(1e9, t, NVS) + reduce_scatter_time(1e9, t, NVS)
    )


def test_small_hidden_sizes_are_less_efficient() -> None:
    """Achieved FLOP/s per block grows with h (elementwise traffic ~ bsh, GEMM FLOPs ~ bsh^2)."""
    rates = []
    for h in (1024, 2048, 4096, 8192):
        m = Model(
            name="g",
            num_layers=1,
            hidden_size=h,
            ffn_hidden_size=4 * h,
            num_attention_heads=h // 128,
            num_kv_heads=h // 128,
            vocab_size=0,
            mlp="gelu",
        )
        pt = block_time(
            m,
            A100,
            tp=1,
            micro_batch=1,
            seq=2048,
            recompute="none",
            sequence_parallel=False,
            precision="fp16",
            tp_link=NVS,
            stack=MODERN,
        )
        rates.append(pt.hw_flops / pt.total_s)
    assert rates == sorted(rates)
    assert rates[-1] < A100.bf16_tflops * 1e12 * A100.gemm_efficiency


def test_fp8_needs_fp8_tensor_cores() -> None:
    """fp8 raises ValueError on A100 (no fp8) and speeds up GEMMs on H100; no bf16 on V100."""
    kw: dict[str, Any] = dict(
        tp=1,
        micro_batch=1,
        seq=2048,
        recompute="none",
        sequence_parallel=False,
        tp_link=NVS,
        stack=MODERN,
    )
    with pytest.raises(ValueError, match="fp8"):
        block_time(GPT_1_7B, A100, precision="fp8", **kw)
    assert (
        block_time(GPT_1_7B, H100, precision="fp8", **kw).total_s
        < block_time(GPT_1_7B, H100, precision="bf16", **kw).total_s
    )
    v100 = GPUSpec(
        name="V100", memory_GB=32, bf16_tflops=125, memory_bandwidth_GBps=900, supports_bf16=False
    )
    with pytest.raises(ValueError, match="bf16"):
        block_time(GPT_1_7B, v100, precision="bf16", **kw)
    assert block_time(GPT_1_7B, v100, precision="fp16", **kw).total_s > 0


def test_decode_batch1_is_weight_bandwidth_bound() -> None:
    """Decode at batch 1: time ~ (weight bytes + KV bytes) / (HBM bw x eff); grows with context."""
    link = LinkTier(360.0, 3.0, "nvswitch")
    pt = decode_block_time(
        LLAMA_70B,
        H100,
        tp=1,
        batch=1,
        context_len=1,
        precision="bf16",
        kv_precision="bf16",
        tp_link=link,
    )
    weights = block_params(LLAMA_70B) * 2
    ideal = weights / (H100.memory_bandwidth_GBps * 1e9 * H100.memory_efficiency)
    assert pt.fwd_s == pytest.approx(ideal, rel=0.01)
    long = decode_block_time(
        LLAMA_70B,
        H100,
        tp=1,
        batch=1,
        context_len=100_000,
        precision="bf16",
        kv_precision="bf16",
        tp_link=link,
    )
    kv = 100_000 * kv_cache_bytes_per_token(LLAMA_70B, "bf16", 1) / 80
    assert long.fwd_s - pt.fwd_s == pytest.approx(
        kv / (H100.memory_bandwidth_GBps * 1e9 * H100.memory_efficiency), rel=0.01
    )


def test_decode_tp_comm_is_latency_dominated() -> None:
    """Decode TP all-reduces (2 per block, batch x h values) cost ~ 2 x 2(t-1) alpha."""
    link = LinkTier(360.0, 3.0, "nvswitch")
    pt = decode_block_time(
        LLAMA_70B,
        H100,
        tp=8,
        batch=1,
        context_len=1000,
        precision="bf16",
        kv_precision="bf16",
        tp_link=link,
    )
    assert pt.tp_comm_fwd_s == pytest.approx(2 * 2 * 7 * 3e-6, rel=0.01)


# --- memory --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,t,sp,recompute",
    [
        ("no_parallel", 1, False, "none"),
        ("tp", 8, False, "none"),
        ("tp_sp", 8, True, "none"),
        ("tp_selective", 8, False, "selective"),
        ("tp_sp_selective", 8, True, "selective"),
        ("full_recompute", 8, False, "full"),
        ("tp", 2, False, "none"),
        ("tp_sp", 4, True, "none"),
    ],
)
def test_activation_bytes_match_korthikanti_table2(
    case: str, t: int, sp: bool, recompute: str
) -> None:
    """Per-layer activation bytes equal Korthikanti 2022 Table 2 (formulas in published-runs.json)."""
    expr = _published()["formulas"]["act_mem_per_layer_bytes"][case]
    s, b, h, a = 2048, 2, 12288, 96  # GPT-3 175B shapes, micro-batch 2
    model = Model(
        name="gpt3",
        num_layers=96,
        hidden_size=h,
        ffn_hidden_size=4 * h,
        num_attention_heads=a,
        num_kv_heads=a,
        vocab_size=51200,
        mlp="gelu",
    )
    expected = eval(expr, {}, {"s": s, "b": b, "h": h, "a": a, "t": t})  # noqa: S307 - our data
    got = block_activation_bytes(
        model,
        tp=t,
        micro_batch=b,
        seq=s,
        recompute=recompute,
        sequence_parallel=sp,
        stack=MEGATRON_2021,
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_activation_gqa_swiglu_generalisation() -> None:
    """GQA shrinks K/V storage and SwiGLU stores 6sbf (vs GeLU's 4sbf): Llama-70B, tp=8, SP,
    selective: s b [ (10h)/8 + (2*2*64*128 + 2*2*2*1*128)/8... ] derived term by term."""
    s, b, h, f, t = 4096, 1, 8192, 28672, 8
    got = block_activation_bytes(
        LLAMA_70B,
        tp=t,
        micro_batch=b,
        seq=s,
        recompute="selective",
        sequence_parallel=True,
        stack=MEGATRON_2021,
    )
    # replicated (SP-sharded): 2+2 norms, 2 QKV input, 2 MLP input, 1+1 masks = 10 s b h / t
    # Q + out-proj input: 2 x 2 s b (64 x 128) / t; K + V: 2 x 2 s b (8/8 x 128); SwiGLU: 6 s b f / t
    expected = s * b * (10 * h / t + 4 * 64 * 128 / t + 4 * 1 * 128 + 6 * f / t)
    assert got == pytest.approx(expected)


def test_head_activations_korthikanti_sec43() -> None:
    """Last stage's extra with SP: 4 s b h / t (1 + V/h) (Korthikanti Sec. 4.3)."""
    s, b, h, t = 2048, 1, 12288, 8
    m = Model(
        name="gpt3",
        num_layers=96,
        hidden_size=h,
        ffn_hidden_size=4 * h,
        num_attention_heads=96,
        num_kv_heads=96,
        vocab_size=51200,
        mlp="gelu",
    )
    got = head_activation_bytes(m, tp=t, micro_batch=b, seq=s, sequence_parallel=True, stack=MODERN)
    assert got == pytest.approx(4 * s * b * h / t * (1 + 51200 / h))


def test_zero_model_states_7_5b_on_64_gpus() -> None:
    """ZeRO paper Fig. 1: 7.5B params, Nd=64, 16 B/param -> 120 / 31.4 / 16.6 / 1.9 GB."""
    got = [
        sum(model_state_bytes(7.5e9, memory_policy="amp_fp16", zero_stage=z, dp=64)) / 1e9
        for z in range(4)
    ]
    assert [round(x, 1) for x in got] == [120.0, 31.4, 16.6, 1.9]


def test_bytes_per_param_per_memory_policy() -> None:
    """megatron_bf16 = 2+4+12 = 18, amp_fp16 = 2+2+12 = 16, pure_bf16 = 2+2+4 = 8 B/param."""
    for pol, total in (("megatron_bf16", 18), ("amp_fp16", 16), ("pure_bf16", 8)):
        assert sum(model_state_bytes(1.0, memory_policy=pol, zero_stage=0, dp=8)) == total


def test_kv_cache_per_token() -> None:
    """KV cache 2 L kv d bytes: Llama-3.1-70B bf16 = 327680 B = 320 KiB/token; tp shards it,
    tp > kv heads replicates one head per GPU."""
    assert kv_cache_bytes_per_token(LLAMA_70B, "bf16", 1) == 327680 == 320 * 1024
    assert kv_cache_bytes_per_token(LLAMA_70B, "bf16", 8) == 327680 / 8
    assert kv_cache_bytes_per_token(LLAMA_70B, "bf16", 16) == 327680 / 8
    assert kv_cache_bytes_per_token(LLAMA_70B, "fp8", 1) == 327680 / 2


# --- communication -------------------------------------------------------------------------
def test_ring_allreduce_alpha_beta() -> None:
    """Ring all-reduce 2(n-1)/n S/B + 2(n-1) alpha (nccl-tests PERFORMANCE.md): 8 GPUs, 1 GB,
    100 GB/s, 5 us -> 1.75 x 10 ms + 70 us."""
    link = LinkTier(100.0, 5.0, "nic")
    assert allreduce_time(1e9, 8, link) == pytest.approx(0.0175 + 70e-6)
    assert reduce_scatter_time(1e9, 8, link) == pytest.approx(0.00875 + 35e-6)
    assert allreduce_time(1e9, 1, link) == 0.0


def test_hierarchical_allreduce() -> None:
    """RS intra + AR inter on S/k + AG intra; one node degenerates to the intra ring."""
    intra, inter = LinkTier(240.0, 3.0, "nvswitch"), LinkTier(22.5, 5.0, "nic")
    assert hierarchical_allreduce_time(1e9, 8, 1, intra, inter) == allreduce_time(1e9, 8, intra)
    got = hierarchical_allreduce_time(1e9, 8, 4, intra, inter)
    want = 2 * reduce_scatter_time(1e9, 8, intra) + allreduce_time(1e9 / 8, 4, inter)
    assert got == pytest.approx(want)
    # beats a flat ring over the per-GPU NIC share
    assert got < allreduce_time(1e9, 32, inter)


def test_recompute_transient_is_one_rebuilt_block() -> None:
    """Recompute peak adds one block's rebuilt activations: full -> the no-recompute size,
    selective -> the 5as^2b/t attention scores; none -> 0 (Chen et al. 2016)."""
    kw: dict[str, Any] = dict(
        tp=8, micro_batch=1, seq=2048, sequence_parallel=False, stack=MEGATRON_2021
    )
    m = Model(
        name="gpt3",
        num_layers=96,
        hidden_size=12288,
        ffn_hidden_size=4 * 12288,
        num_attention_heads=96,
        num_kv_heads=96,
        vocab_size=51200,
        mlp="gelu",
    )
    none = block_activation_bytes(m, recompute="none", **kw)
    assert activation_transient_bytes(m, recompute="none", **kw) == 0.0
    assert activation_transient_bytes(m, recompute="full", **kw) == none
    assert activation_transient_bytes(m, recompute="selective", **kw) == pytest.approx(
        5 * 96 * 2048 * 2048 * 1 / 8
    )


def test_prefill_uses_fused_attention() -> None:
    """Prefill prices flash attention (no s^2 HBM traffic): cheaper than the 2021 training
    forward's un-fused core at long prompts, same model FLOPs."""
    from solver.costmodel import prefill_block_time

    link = LinkTier(360.0, 3.0, "nvswitch")
    pre = prefill_block_time(
        LLAMA_70B, H100, tp=8, batch=1, prompt=16384, precision="bf16", tp_link=link
    )
    train = block_time(
        LLAMA_70B,
        H100,
        tp=8,
        micro_batch=1,
        seq=16384,
        recompute="none",
        sequence_parallel=False,
        precision="bf16",
        tp_link=link,
        stack=MEGATRON_2021,
    )
    assert pre.flops_fwd == pytest.approx(train.flops_fwd)
    assert pre.fwd_s < train.fwd_s


# --- today's stack: fused (flash) attention, no dropout --------------------------------------
def _gpt_block(h: int = 4096, a: int = 32) -> Model:
    return Model(
        name="gpt",
        num_layers=1,
        hidden_size=h,
        ffn_hidden_size=4 * h,
        num_attention_heads=a,
        num_kv_heads=a,
        vocab_size=0,
        mlp="gelu",
    )


def test_flash_counts_the_full_square_and_executes_the_causal_half() -> None:
    """Flash: model FLOPs keep 4bs^2h (NeMo/Megatron MFU convention), the kernel executes half
    of it (causal); the un-fused 2021 core executes the whole square."""
    m, s, b = _gpt_block(), 8192, 1
    kw: dict[str, Any] = dict(tp=1, micro_batch=b, seq=s, sequence_parallel=False, precision="bf16")
    flash = {o.name: o for o in block_forward_ops(m, stack=MODERN, **kw)}
    unfused = {o.name: o for o in block_forward_ops(m, stack=MEGATRON_2021, **kw)}
    square = 4.0 * b * s * s * m.hidden_size
    assert flash["attention_core"].counted_flops == pytest.approx(square)
    assert flash["attention_core"].flops == pytest.approx(0.5 * square)
    assert unfused["attention_core"].flops == unfused["attention_core"].counted_flops == square
    assert "softmax_dropout" not in flash
    # Model FLOPs of the whole block are the same on both stacks.
    assert sum(o.counted_flops for o in flash.values()) == pytest.approx(
        sum(o.counted_flops for o in unfused.values())
    )


def test_flash_kernel_priced_at_its_own_efficiency_backward_2_5x() -> None:
    """A 'flash' op runs at 16-bit peak x attention_efficiency; its backward executes 2.5x the
    FLOPs (recomputed scores) at attention_backward_efficiency (FlashAttention-2 Sec. 4.1)."""
    from solver.costmodel.compute import Op, _backward_op_time, op_time

    gpu = H100.model_copy(
        update={"attention_efficiency": 0.5, "attention_backward_efficiency": 0.4}
    )
    op = Op("attention_core", 1e12, 1.0, "flash", model_flops=2e12)
    assert op_time(op, gpu, "bf16") == pytest.approx(1e12 / (989e12 * 0.5))
    assert _backward_op_time(op, gpu, "bf16") == pytest.approx(2.5e12 / (989e12 * 0.4))
    # fp8 GEMMs do not speed up the 16-bit attention kernel.
    assert op_time(op, gpu, "fp8") == op_time(op, gpu, "bf16")


def test_flash_hw_flops_and_recompute() -> None:
    """hw_flops = executed forward + backward (GEMMs 2x, flash 2.5x) + the recomputed forward."""
    m = _gpt_block()
    kw: dict[str, Any] = dict(
        tp=1, micro_batch=1, seq=4096, sequence_parallel=False, precision="bf16", tp_link=NVS
    )
    ops = block_forward_ops(m, tp=1, micro_batch=1, seq=4096, sequence_parallel=False,
                            precision="bf16", stack=MODERN)  # fmt: skip
    fwd = sum(o.flops for o in ops)
    attn = next(o.flops for o in ops if o.kind == "flash")
    bwd = 2.0 * (fwd - attn) + 2.5 * attn
    down = next(o.flops for o in ops if o.name == "mlp_down")
    none = block_time(m, H100, recompute="none", stack=MODERN, **kw)
    full = block_time(m, H100, recompute="full", stack=MODERN, **kw)
    whole = block_time(m, H100, recompute="full", stack=Stack(recompute_early_stop=False), **kw)
    assert none.hw_flops == pytest.approx(fwd + bwd)
    assert whole.hw_flops == pytest.approx(2 * fwd + bwd)
    # PyTorch's checkpoint stops before the MLP down-projection (its output is never saved).
    assert full.hw_flops == pytest.approx(2 * fwd - down + bwd)
    assert none.flops_fwd == pytest.approx(sum(o.counted_flops for o in ops))
    # Full recompute adds at most one forward: < 1/3 of the step (the flash backward is > 2x);
    # early stop makes it cheaper still (1.18-1.21x measured on an H100 for GPT blocks).
    assert 1.0 < full.total_s / none.total_s < whole.total_s / none.total_s < 4.0 / 3.0


@pytest.mark.parametrize("t,sp", [(1, False), (4, False), (4, True)])
def test_gpt_block_flash_no_dropout_stores_32sbh(t: int, sp: bool) -> None:
    """GPT block, flash, no dropout: Korthikanti's 34 s b h minus the two 1-byte dropout masks
    = 32 s b h at TP 1 (the 10 -> 8 replicated part; the 24 part /t), plus the fp32
    log-sum-exp 4 a s b / t; no s^2 term at any sequence length."""
    s, b, h, a = 8192, 2, 4096, 32
    m = _gpt_block(h, a)
    got = block_activation_bytes(m, tp=t, micro_batch=b, seq=s, recompute="none",
                                 sequence_parallel=sp, stack=MODERN)  # fmt: skip
    replicated = 8 * s * b * h / (t if sp else 1)
    assert got == pytest.approx(replicated + 24 * s * b * h / t + 4 * a * s * b / t)


def test_dropout_masks_and_unfused_scores_follow_the_stack() -> None:
    """Dropout adds the two s b h masks (34 s b h); un-fused attention without dropout keeps
    only the softmax output 2 a s^2 b (with dropout: 5 a s^2 b)."""
    s, b, h, a = 2048, 1, 4096, 32
    m = _gpt_block(h, a)
    kw: dict[str, Any] = dict(tp=1, micro_batch=b, seq=s, recompute="none", sequence_parallel=False)
    lse = 4 * a * s * b
    assert block_activation_bytes(m, stack=Stack("flash", 0.1), **kw) == pytest.approx(
        34 * s * b * h + lse
    )
    assert block_activation_bytes(m, stack=Stack("unfused", 0.0), **kw) == pytest.approx(
        32 * s * b * h + 2 * a * s * s * b
    )
    assert block_activation_bytes(m, stack=MEGATRON_2021, **kw) == pytest.approx(
        34 * s * b * h + 5 * a * s * s * b
    )


def test_fp8_gemms_run_at_the_fp8_mamf_and_pay_their_casts() -> None:
    """fp8: a GEMM runs at the FP8 peak x fp8_gemm_efficiency (H100: MAMF 1402.6 of 1979), not
    at 2x the 16-bit rate, and the block pays FP8_CAST_BYTES per element of every GEMM input."""
    from solver.costmodel.compute import Op, op_time

    assert H100.fp8_gemm_efficiency == pytest.approx(1402.6 / 1979, abs=1e-3)
    op = Op("fc", 2.0 * 8192**3, 1.0, "gemm", (8192, 8192, 8192))
    from solver.costmodel.constants import GEMM_REALIZATION_FRACTION as REAL

    assert op_time(op, H100, "fp8") == pytest.approx(
        op.flops / (1979e12 * H100.fp8_gemm_efficiency * REAL), rel=1e-12
    )
    m, s = _gpt_block(), 2048
    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=s, sequence_parallel=False, stack=MODERN)
    casts = [o for o in block_forward_ops(m, precision="fp8", **kw) if o.name == "fp8_casts"]
    h, f = m.hidden_size, m.ffn_hidden_size
    assert len(casts) == 1 and casts[0].bytes == pytest.approx(3.0 * s * (3 * h + f))
    assert not [o for o in block_forward_ops(m, precision="bf16", **kw) if o.name == "fp8_casts"]


def test_fused_attention_rate_saturates_with_sequence_length() -> None:
    """A 'flash' op runs at attention_efficiency x s / (s + ATTENTION_HALF_RATE_SEQ): the
    H100's measured asymptotes (0.733 forward, 0.579 backward of the 16-bit peak, cuDNN SDPA)
    give 43% of the peak at 2048 tokens and 62% at 8192."""
    from solver.costmodel.compute import Op, _backward_op_time, op_time
    from solver.costmodel.constants import ATTENTION_HALF_RATE_SEQ as S_HALF

    assert (H100.attention_efficiency, H100.attention_backward_efficiency) == (0.733, 0.579)
    for s in (2048.0, 8192.0):
        op = Op("attention_core", 1e12, 1.0, "flash", seq=s)
        share = s / (s + S_HALF)
        assert op_time(op, H100, "bf16") == pytest.approx(1e12 / (989e12 * 0.733 * share))
        assert _backward_op_time(op, H100, "bf16") == pytest.approx(
            2.5e12 / (989e12 * 0.579 * share)
        )
    assert 0.42 < 0.733 * 2048 / (2048 + S_HALF) < 0.43


def test_rope_traffic_only_without_learned_positions() -> None:
    """RoPE models pay ROPE_BYTES per Q and K element (a fused rotary kernel); GPT-style models
    with a learned position table have no rotary op."""
    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=1024, sequence_parallel=False,
                              precision="bf16", stack=MODERN)  # fmt: skip
    names = [o.name for o in block_forward_ops(LLAMA_70B, **kw)]
    assert "rope" in names
    rope = next(o for o in block_forward_ops(LLAMA_70B, **kw) if o.name == "rope")
    assert rope.bytes == pytest.approx(4.0 * 1024 * (64 * 128 + 8 * 128))
    gpt = _gpt_block().model_copy(update={"learned_position_embeddings": True})
    assert "rope" not in [o.name for o in block_forward_ops(gpt, **kw)]


def test_eager_kernels_move_the_bytes_of_their_op_sequences() -> None:
    """Eager (Hugging Face / torchtitan without compile) RMSNorm, RoPE and SwiGLU move
    EAGER_*_BYTES per element instead of a fused kernel's; GPT's LayerNorm is one kernel either
    way, and fused is the default."""
    from solver.costmodel import constants as K

    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=1024, sequence_parallel=False,
                              precision="bf16")  # fmt: skip
    fused = {o.name: o.bytes for o in block_forward_ops(LLAMA_70B, stack=MODERN, **kw)}
    eager = {o.name: o.bytes for o in block_forward_ops(LLAMA_70B, stack=Stack(kernels="eager"),
                                                        **kw)}  # fmt: skip
    h, f, qk = 8192, 28672, 64 * 128 + 8 * 128
    t = 1024
    assert eager["rope"] - fused["rope"] == pytest.approx((K.EAGER_ROPE_BYTES - 4) * t * qk)
    assert eager["activation"] - fused["activation"] == pytest.approx(
        (K.EAGER_SWIGLU_BYTES - K.SWIGLU_BYTES) * t * f
    )
    assert eager["norms_residuals"] - fused["norms_residuals"] == pytest.approx(
        2 * (K.EAGER_RMSNORM_BYTES - K.NORM_BYTES) * t * h
    )
    gpt = _gpt_block().model_copy(update={"learned_position_embeddings": True})
    assert {o.name: o.bytes for o in block_forward_ops(gpt, stack=MODERN, **kw)} == {
        o.name: o.bytes for o in block_forward_ops(gpt, stack=Stack(kernels="eager"), **kw)
    }


def test_eager_llama_block_stores_49_sbh_as_measured() -> None:
    """An eager Llama-3-8B block (HF RMSNorm keeping fp32 copies, eager SwiGLU) stores
    8 + 2x4 (norms) + 4 (Q, O) + 1 (K, V) + 3x2x3.5 + 2x3.5 (SwiGLU) = 49 bytes per s b h plus
    the log-sum-exp: the H100 run's saved-tensor ledger measured 49.03."""
    m = Model(name="l8", num_layers=1, hidden_size=4096, ffn_hidden_size=14336,
              num_attention_heads=32, num_kv_heads=8, vocab_size=0, mlp="swiglu")  # fmt: skip
    s, b, h = 2048, 1, 4096
    kw: dict[str, Any] = dict(tp=1, micro_batch=b, seq=s, recompute="none", sequence_parallel=False)
    eager = block_activation_bytes(m, stack=Stack(kernels="eager"), **kw)
    fused = block_activation_bytes(m, stack=MODERN, **kw)
    lse = 4 * 32 * s * b
    assert (eager - lse) / (s * b * h) == pytest.approx(49.0)
    assert (fused - lse) / (s * b * h) == pytest.approx(34.0)


def test_on_demand_gradients_peak_is_the_larger_not_the_sum() -> None:
    """One micro-batch with gradients made in the backward (zero_grad(set_to_none=True)): the
    stage total holds the larger of the activations and the gradients with what the stage's
    first block's backward holds (``grads_phase_activations_GB``), not both; with persistent
    buffers, or with more than one micro-batch (accumulated gradients live through later
    forwards), both."""
    from builders import cluster, pool, train, training_plan

    from solver import evaluate
    from solver.construction import build_stages

    m = _gpt_block().model_copy(update={"num_layers": 4, "learned_position_embeddings": True})
    c = cluster(pool("h", H100, gpn=1))
    stages = build_stages(c, [(1, [("h", 1, 4)])])[0]

    def total(grad_buffers: str, micro: int) -> tuple[float, dict[str, Any]]:
        wl = train(micro, seq=2048, zero=0, grad_buffers=grad_buffers)
        plan = training_plan(stages, m=micro, zero_stage=0)
        row = evaluate(m, c, wl, plan).to_dict()["memory_ledger"][0]
        return float(row["total_GB"]), row

    persistent, row = total("persistent", 1)
    on_demand, od = total("on_demand", 1)
    g, a, live = row["grads_GB"], row["activations_GB"], od["grads_phase_activations_GB"]
    assert 0 < live < a  # one block's backward, of the four blocks' activations
    assert on_demand == pytest.approx(persistent - g - a + max(a, g + live))
    assert on_demand < persistent
    assert total("on_demand", 2)[0] == pytest.approx(total("persistent", 2)[0])


def test_eager_prefill_adds_exactly_the_eager_elementwise_traffic() -> None:
    """A plain PyTorch prefill (``kernels="eager"``) of a Llama block prices the Hugging Face
    RMSNorm / RoPE / SwiGLU op sequences: exactly the extra HBM bytes of the EAGER_* counts
    over the fused ones at the HBM rate, nothing else; a GPT block (LayerNorm with biases, GeLU,
    no RoPE) has no eager op sequences to add."""
    from solver.costmodel import constants as C
    from solver.costmodel import prefill_block_time

    link = LinkTier(360.0, 3.0, "nvswitch")
    m = Model(name="l8", num_layers=1, hidden_size=4096, ffn_hidden_size=14336,
              num_attention_heads=32, num_kv_heads=8, vocab_size=0, mlp="swiglu")  # fmt: skip
    s, h, f = 2048, 4096, 14336
    kw: dict[str, Any] = dict(tp=1, batch=1, prompt=s, precision="bf16", tp_link=link)
    fused = prefill_block_time(m, H100, **kw)
    eager = prefill_block_time(m, H100, kernels="eager", **kw)
    extra = (
        2 * (C.EAGER_RMSNORM_BYTES - C.NORM_BYTES) * s * h
        + (C.EAGER_ROPE_BYTES - C.ROPE_BYTES) * s * (h + 8 * 128)
        + (C.EAGER_SWIGLU_BYTES - C.SWIGLU_BYTES) * s * f
    )
    rate = H100.memory_bandwidth_GBps * 1e9 * H100.memory_efficiency
    assert eager.fwd_s - fused.fwd_s == pytest.approx(extra / rate, rel=1e-9)
    assert eager.flops_fwd == fused.flops_fwd
    gpt = _gpt_block().model_copy(update={"learned_position_embeddings": True})
    assert prefill_block_time(gpt, H100, kernels="eager", **kw).fwd_s == pytest.approx(
        prefill_block_time(gpt, H100, **kw).fwd_s, rel=1e-12
    )


def test_eager_loss_prices_the_pytorch_kernels_bytes() -> None:
    """The eager loss (``logits.float()`` + ``F.cross_entropy``) against the compiled one: the
    forward moves EAGER_CROSS_ENTROPY_BYTES - CROSS_ENTROPY_BYTES more per logit and the
    backward 26 - 6 (nll_loss's zero-filled fp32 gradient, the log-softmax backward's sum and
    elementwise passes, the cast back to 16 bit), at the HBM rate."""
    from solver.costmodel import constants as C

    m = Model(name="l8", num_layers=1, hidden_size=4096, ffn_hidden_size=14336,
              num_attention_heads=32, num_kv_heads=8, vocab_size=128256, mlp="swiglu")  # fmt: skip
    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=2048, precision="bf16", tp_link=NVS)
    eager = head_time(m, H100, stack=Stack(kernels="eager"), **kw)
    compiled = head_time(m, H100, stack=Stack(kernels="eager", compiled_loss=True), **kw)
    logits = 2048 * 128256
    rate = H100.memory_bandwidth_GBps * 1e9 * H100.memory_efficiency
    assert C.EAGER_CROSS_ENTROPY_BWD_BYTES == 26.0
    assert eager.fwd_s - compiled.fwd_s == pytest.approx(
        (C.EAGER_CROSS_ENTROPY_BYTES - C.CROSS_ENTROPY_BYTES) * logits / rate, rel=1e-9
    )
    assert eager.bwd_s - compiled.bwd_s == pytest.approx(
        (C.EAGER_CROSS_ENTROPY_BWD_BYTES - C.CROSS_ENTROPY_BWD_BYTES) * logits / rate, rel=1e-9
    )
