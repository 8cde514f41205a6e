"""Elementwise fusions of the serving engines (solver/costmodel/serving_engine.py, "Elementwise
fusions"): which groups of ``block_forward_ops`` each engine's kernels fuse, applied to the
serving op lists only."""

from __future__ import annotations

import dataclasses

import pytest

from solver.catalog import gpu_of
from solver.costmodel import constants as C
from solver.costmodel import engine_profiles as EP
from solver.costmodel import serving_engine as SE
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import Op, block_forward_ops
from solver.costmodel.serving_compute import (
    _engine_elementwise,
    decode_block_time,
    prefill_block_time,
)
from solver.costmodel.stack import Stack
from solver.io import load_cluster, load_model

NVSWITCH = LinkTier(bandwidth_GBps=240.0, latency_us=3.0, name="nvswitch")
GPU = gpu_of(load_cluster("seed-4x8-h100").pools[0])
MODEL = load_model("llama3-8b")
H = MODEL.hidden_size
Q = MODEL.num_attention_heads * MODEL.kv_channels
F = MODEL.ffn_hidden_size
BW = GPU.memory_bandwidth_GBps * 1e9 * GPU.memory_efficiency
SERVING = Stack(attention="flash", dropout=0.0, kernels="fused")


def _block(precision: str, tokens: int) -> list[Op]:
    return block_forward_ops(
        MODEL,
        tp=1,
        micro_batch=1,
        seq=tokens,
        sequence_parallel=False,
        precision=precision,
        stack=SERVING,
    )


def _ops(precision: str, tokens: int = 1024) -> dict[str, float]:
    return {o.name: o.bytes for o in _block(precision, tokens)}


def _engine_ops(engine: SE.EngineProfile, precision: str, tokens: int = 1024) -> dict[str, float]:
    ops = _engine_elementwise(_block(precision, tokens), MODEL, 1, precision, engine)
    return {o.name: o.bytes for o in ops}


def _prefill(engine: SE.EngineProfile, precision: str, tokens: int = 1024, **kw: object) -> float:
    return prefill_block_time(
        MODEL,
        GPU,
        tp=1,
        batch=1,
        prompt=tokens,
        precision=precision,
        tp_link=NVSWITCH,
        engine=engine,
        **kw,  # type: ignore[arg-type]
    ).fwd_s


def _plain(engine: SE.EngineProfile) -> SE.EngineProfile:
    """``engine`` with none of the elementwise fusions."""
    return dataclasses.replace(
        engine, fused_add_norm=False, fused_activation_quant=False, fp8_context_fmha=False
    )


def test_fused_add_norm_moves_eight_bytes_per_hidden_element() -> None:
    """Residual add + RMSNorm in one kernel: the layer's two pairs move 2 x 8 B per hidden
    element instead of 2 x (6 + 4); the prefill is faster by exactly those bytes' HBM time."""
    tokens = 1024
    engine = dataclasses.replace(_plain(EP.SGLANG), fused_add_norm=True)
    plain, fused = _engine_ops(_plain(EP.SGLANG), "bf16"), _engine_ops(engine, "bf16")
    unfused_bytes = (2 * C.NORM_BYTES + 2 * C.RESIDUAL_ADD_BYTES) * tokens * H
    assert plain["norms_residuals"] == pytest.approx(unfused_bytes, rel=1e-12)
    assert fused["norms_residuals"] == pytest.approx(2 * 8.0 * tokens * H, rel=1e-12)
    assert {k: v for k, v in fused.items() if k != "norms_residuals"} == {
        k: v for k, v in plain.items() if k != "norms_residuals"
    }
    saved = _prefill(_plain(EP.SGLANG), "bf16") - _prefill(engine, "bf16")
    assert saved == pytest.approx((unfused_bytes - 2 * 8.0 * tokens * H) / BW, rel=1e-9)


def test_fused_activation_quant_removes_the_producer_fed_casts_only() -> None:
    """Under ``fused_activation_quant`` without an FP8 attention output (vLLM V1): the QKV,
    MLP-up and MLP-down casts vanish, the out-projection's stays, and the two norms and the
    SwiGLU write 1 byte per element less; RoPE and the KV-cache write are untouched."""
    tokens = 1024
    engine = dataclasses.replace(_plain(EP.VLLM), fused_activation_quant=True)
    plain, fused = _engine_ops(_plain(EP.VLLM), "fp8"), _engine_ops(engine, "fp8")
    cast = C.FP8_CAST_BYTES
    assert plain["fp8_casts"] == pytest.approx(cast * tokens * (2 * H + Q + F), rel=1e-12)
    assert fused["fp8_casts"] == pytest.approx(cast * tokens * Q, rel=1e-12)
    assert plain["norms_residuals"] - fused["norms_residuals"] == pytest.approx(2 * tokens * H)
    assert plain["activation"] - fused["activation"] == pytest.approx(1.0 * tokens * F)
    assert fused["rope"] == plain["rope"]
    with_fmha = dataclasses.replace(engine, fp8_context_fmha=True)
    assert _engine_ops(with_fmha, "fp8")["fp8_casts"] == 0.0
    # 16-bit: no casts, and no narrower producer outputs either.
    assert _engine_ops(engine, "bf16") == _engine_ops(_plain(EP.VLLM), "bf16")


def test_each_engines_fusions_and_their_sources() -> None:
    """The fusion flags of each profile, each with the source it is read from (a fusion
    claimed without a file of that engine fails)."""
    expected = {  # (fused_add_norm, fused_activation_quant, source file of the add + norm)
        "vllm": (True, True, "vllm/config.py"),
        "vllm-0.6": (True, False, "layernorm.py"),
        "sglang": (True, False, "sglang/srt/layers/layernorm.py"),
        "sglang-0.3": (True, False, "0.3.0 PyPI wheel"),
        "trtllm": (False, True, "bench/build/build.py"),
        "trtllm-0.9": (False, True, "bench/build/build.py"),
    }
    for name, (add_norm, act_quant, where) in expected.items():
        p = EP.ENGINES[name]
        assert (p.fused_add_norm, p.fused_activation_quant) == (add_norm, act_quant), name
        assert where in p.fused_add_norm_source, name
        assert p.fused_activation_quant_source, name
    assert "Inductor" in EP.VLLM.fused_activation_quant_source
    assert "csrc/layernorm_kernels.cu" in SE.FUSED_ADD_NORM_BYTES.source


def test_training_op_list_is_unchanged_by_the_serving_fusions() -> None:
    """``block_forward_ops`` keeps Megatron-LM's kernels for training, and pricing a serving
    prefill under a fusing engine does not alter the list it was built from."""
    before = _ops("fp8")
    for engine in EP.ENGINES.values():
        _prefill(engine, "fp8")
    after = _ops("fp8")
    assert after == before
    tokens = 1024
    unfused = (2 * C.NORM_BYTES + 2 * C.RESIDUAL_ADD_BYTES) * tokens * H
    assert after["norms_residuals"] == pytest.approx(unfused, rel=1e-12)
    assert after["fp8_casts"] == pytest.approx(C.FP8_CAST_BYTES * tokens * (2 * H + Q + F))
    assert after["activation"] == pytest.approx(C.SWIGLU_BYTES * tokens * F)


def test_eager_prefill_keeps_the_plain_pytorch_kernels() -> None:
    """``kernels="eager"`` (a plain PyTorch forward) is not priced with the engine's fusions."""
    for engine in (EP.VLLM, EP.SGLANG, EP.TRTLLM):
        assert _prefill(engine, "fp8", kernels="eager") == _prefill(
            _plain(engine), "fp8", kernels="eager"
        )
        assert _prefill(engine, "fp8") < _prefill(_plain(engine), "fp8")


def test_decode_takes_the_add_norm_fusion_only() -> None:
    """A decode step's elementwise lump (norms and residual adds of ``batch`` rows) shrinks by
    4 B per hidden element and row per pair under ``fused_add_norm``; the cast fusion, whose
    bytes a decode step does not price, changes nothing there."""
    batch = 64

    def decode(engine: SE.EngineProfile) -> float:
        return decode_block_time(
            MODEL,
            GPU,
            tp=1,
            batch=batch,
            context_len=1024,
            precision="fp8",
            kv_precision="fp8",
            tp_link=NVSWITCH,
            engine=engine,
            host_floor=False,
        ).fwd_s

    plain = _plain(EP.SGLANG)
    fused = dataclasses.replace(plain, fused_add_norm=True)
    saved = decode(plain) - decode(fused)
    expected = (2 * C.NORM_BYTES + 2 * C.RESIDUAL_ADD_BYTES - 2 * 8.0) * batch * H / BW
    assert saved == pytest.approx(expected, rel=1e-9)
    quant_only = dataclasses.replace(plain, fused_activation_quant=True)
    assert decode(quant_only) == decode(plain)
