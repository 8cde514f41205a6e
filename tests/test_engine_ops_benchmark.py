"""benchmarks/engine_ops.py: its pure comparison functions on tiny in-memory tables.

No ``aiconfigurator-core`` needed: the rows are hand-made dicts with the tables' columns.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import engine_ops as eo  # noqa: E402

from solver.catalog import resolve_gpu  # noqa: E402
from solver.costmodel import LinkTier, engine_profiles, quant, serving_engine  # noqa: E402
from solver.costmodel.compute import Op, _gemm, block_forward_ops  # noqa: E402
from solver.costmodel.params import kv_heads_per_gpu  # noqa: E402
from solver.costmodel.serving_compute import (  # noqa: E402
    _engine_elementwise,
    _engine_op_time,
    decode_block_time,
    prefill_block_time,
)
from solver.costmodel.stack import Stack  # noqa: E402
from solver.errors import SpecError  # noqa: E402
from solver.specs import Model  # noqa: E402

H100 = resolve_gpu("H100-SXM5-80GB")
A100 = resolve_gpu("A100-SXM4-80GB")
LINK = LinkTier(bandwidth_GBps=360.0, latency_us=3.0, name="nvswitch")
TARGET = eo.Target(H100, engine_profiles.VLLM, LINK)
GQA = Model(
    name="gqa",
    num_layers=1,
    hidden_size=4096,
    ffn_hidden_size=14336,
    num_attention_heads=32,
    num_kv_heads=8,
    vocab_size=0,
    mlp="swiglu",
)


def test_gemm_row_measured_at_twice_the_price_has_ratio_one_half() -> None:
    """A GEMM row whose latency is 2x shardwise's own ``_engine_op_time`` price -> 0.5."""
    for prec, wb in (("bf16", 2.0), ("fp8", 1.0)):
        price = _engine_op_time(_gemm("x", 8, 4096, 14336, wb), H100, prec)
        row = {"m": 8, "k": 4096, "n": 14336, "latency": 2.0 * price * 1e3}  # ms
        (p,) = eo.compare("gemm", [row], TARGET, prec)
        assert p.ratio == pytest.approx(0.5, rel=1e-12)
        assert p.regime == "M<=64"
    big = {"m": 4096, "k": 4096, "n": 4096, "latency": 1.0}
    assert eo.compare("gemm", [big], TARGET, "bf16")[0].regime == "M>=1024"


def test_fp8_gemm_is_priced_cheaper_than_16_bit_on_h100() -> None:
    """The fp8 price halves the weight bytes and doubles the peak: below the 16-bit one."""
    for m in (1, 64, 4096):
        assert eo.gemm_price(m, 8192, 8192, H100, "fp8") < eo.gemm_price(
            m, 8192, 8192, H100, "bf16"
        )


def test_summarize_median_percentiles_and_mean_abs_log() -> None:
    """Ratios 0.5, 1, 2, 4: median 1.5, numpy's linear 10th percentile 0.5 + 0.3 x 0.5 =
    0.65, 90th 2 + 0.7 x 2 = 3.4, mean |ln| (ln 2 + 0 + ln 2 + ln 4) / 4 = ln 2."""
    pts = [eo.Point("r", r, 1.0) for r in (0.5, 1.0, 2.0, 4.0)]
    s = eo.summarize(pts)
    assert s["n"] == 4
    assert s["median_ratio"] == pytest.approx(1.5)
    assert s["p10_ratio"] == pytest.approx(0.65)
    assert s["p90_ratio"] == pytest.approx(3.4)
    assert s["mean_abs_log_ratio"] == pytest.approx(math.log(2.0))
    regs = eo.by_regime(pts[:1] + [eo.Point("q", 3.0, 1.0)])
    assert set(regs) == {"all", "r", "q"} and regs["all"]["n"] == 2
    assert eo.summarize([]) == {"n": 0}


def test_context_attention_price_is_the_attention_part_of_prefill_block_time() -> None:
    """prefill_block_time (TP 1, TensorRT-LLM profile, bf16) = every other group's
    ``_engine_op_time`` + the benchmark's context-attention price (flash op + fixed)."""
    b, s = 2, 2048
    for engine in (engine_profiles.TRTLLM, engine_profiles.SGLANG):
        block = prefill_block_time(
            GQA, H100, tp=1, batch=b, prompt=s, precision="bf16", tp_link=LINK, engine=engine
        ).fwd_s
        ops = block_forward_ops(
            GQA,
            tp=1,
            micro_batch=b,
            seq=s,
            sequence_parallel=False,
            precision="bf16",
            stack=Stack(attention="flash", dropout=0.0),
        )
        ops = _engine_elementwise(ops, GQA, 1, "bf16", engine)  # the engine's fusions
        kv = 2.0 * b * s * kv_heads_per_gpu(GQA, 1) * GQA.kv_channels
        ops.append(Op("kv_write", 0.0, kv * quant.default_kv_bytes("bf16"), "mem"))
        rest = sum(_engine_op_time(o, H100, "bf16") for o in ops if o.name != "attention_core")
        attn = eo.context_attention_price(b, s, 32, 8, 128, H100, engine)
        assert rest + attn == pytest.approx(block, rel=1e-9)


def test_context_attention_point_uses_its_row_and_regime() -> None:
    """A context row measured at exactly its price has ratio 1; isl 8192 is 'long'."""
    price = eo.context_attention_price(4, 8192, 16, 2, 128, A100, engine_profiles.VLLM)
    row: dict[str, Any] = {"batch_size": 4, "isl": 8192, "num_heads": 16}
    row |= {"num_key_value_heads": 2}
    row |= {"head_dim": 128, "latency": price * 1e3}
    (p,) = eo.compare(
        "context_attention", [row], eo.Target(A100, engine_profiles.VLLM, LINK), "bf16"
    )
    assert p.ratio == pytest.approx(1.0) and p.regime.startswith("long")


@pytest.mark.parametrize("engine", [engine_profiles.VLLM, engine_profiles.TRTLLM_SESSION_09])
def test_generation_price_has_decode_block_time_context_slope(
    engine: serving_engine.EngineProfile,
) -> None:
    """Only decode attention depends on the KV length in decode_block_time, so its change
    from 1k to 9k tokens equals the change of the benchmark's decode-attention price
    (group of 4: TensorRT-LLM 0.9 re-reads the KV head, vLLM does not)."""

    def block(ctx: int) -> float:
        return decode_block_time(
            GQA,
            A100,
            tp=1,
            batch=8,
            context_len=ctx,
            precision="bf16",
            kv_precision="bf16",
            tp_link=LINK,
            engine=engine,
        ).fwd_s

    def attn(ctx: int) -> float:
        return eo.generation_attention_price(8, ctx, 32, 8, 128, "bf16", A100, engine)

    assert block(9216) - block(1024) == pytest.approx(attn(9216) - attn(1024), rel=1e-9)
    assert attn(1) > engine.decode_attention_fixed_us.value * 1e-6


def test_fp8_kv_reads_half_the_bytes() -> None:
    """fp8 KV: half the bytes of bf16 KV above the fixed latency, on a GPU whose engine terms
    are the same for both KV dtypes (the A100; H100 / H200 carry measured per-dtype terms)."""
    a100 = resolve_gpu("A100-SXM4-80GB")
    assert all(g != a100.name for g, _, _ in engine_profiles.VLLM.decode_attention_on)
    fixed = engine_profiles.VLLM.decode_attention_fixed_us.value * 1e-6
    t16 = eo.generation_attention_price(64, 8191, 32, 8, 128, "bf16", a100, engine_profiles.VLLM)
    t8 = eo.generation_attention_price(64, 8191, 32, 8, 128, "fp8", a100, engine_profiles.VLLM)
    assert t8 - fixed == pytest.approx((t16 - fixed) / 2.0)


def test_allreduce_row_is_priced_by_the_engine_allreduce() -> None:
    """message_size counts 16-bit elements: 1024 elements = 2 KiB through allreduce_time, at
    the latency measured on the row's GPU."""
    price = serving_engine.allreduce_time(engine_profiles.VLLM, 2048.0, 8, LINK, H100.name)
    row = {"num_gpus": 8, "message_size": 1024, "latency": 4.0 * price * 1e3}
    (p,) = eo.compare("custom_allreduce", [row], TARGET, "bf16")
    assert p.ratio == pytest.approx(0.25) and p.regime == "small <=64KiB"
    huge = {"num_gpus": 8, "message_size": 2**23, "latency": 1.0}  # 16 MiB: NCCL in the model
    assert eo.compare("custom_allreduce", [huge], TARGET, "bf16")[0].regime == "large >8MiB"


def test_moe_row_gated_unless_nongated_and_tp_splits_the_expert() -> None:
    """A nongated kernel is priced with one up matrix (cheaper than gated); moe_tp 2 halves
    f (cheaper than TP 1); a row measured at 2x its price has ratio 0.5."""
    row: dict[str, Any] = {"num_tokens": 256, "hidden_size": 4096, "inter_size": 2048, "topk": 8}
    row |= {"num_experts": 128, "moe_tp_size": 1, "kernel_source": "moe_torch_flow_cutlass"}
    gated = eo.moe_price(256, 4096, 2048, 8, 128, 1, True, H100, "bf16")
    row["latency"] = 2.0 * gated * 1e3
    (p,) = eo.compare("moe", [row], TARGET, "bf16")
    assert p.ratio == pytest.approx(0.5) and p.regime == "64<tokens<1024"
    nongated = dict(row, kernel_source="moe_torch_flow_nongated")
    assert eo.compare("moe", [nongated], TARGET, "bf16")[0].predicted_s < gated
    assert eo.moe_price(256, 4096, 2048, 8, 128, 2, True, H100, "bf16") < gated


def test_selection_rules() -> None:
    """16-bit + majority kernel for GEMM, graph rows for all-reduce, window 0 and 16-bit KV
    for context attention, balanced else the lowest power-law alpha for MoE."""
    gemm = [
        {"gemm_dtype": "bfloat16", "kernel_source": "a", "latency": 1.0},
        {"gemm_dtype": "bfloat16", "kernel_source": "a", "latency": 1.0},
        {"gemm_dtype": "bfloat16", "kernel_source": "b", "latency": 1.0},
        {"gemm_dtype": "fp8", "kernel_source": "c", "latency": 1.0},
        {"gemm_dtype": "int8_wo", "kernel_source": "d", "latency": 1.0},
        {"gemm_dtype": "bfloat16", "kernel_source": "a", "latency": 0.0},
    ]
    sel = eo.select_gemm(gemm, fp8=True)
    assert [(s.dtype, s.precision, len(s.rows)) for s in sel] == [
        ("bfloat16", "bf16", 2),
        ("fp8", "fp8", 1),
    ]
    assert sel[0].rule["kernel_source"] == "a"
    assert [s.dtype for s in eo.select_gemm(gemm, fp8=False)] == ["bfloat16"]

    ar = [
        {"allreduce_dtype": "bfloat16", "num_gpus": n, "kernel_source": k, "latency": 1.0}
        for n in (2, 8, 16)
        for k in ("vLLM_custom_graph", "vLLM_custom_eager")
    ]
    (sel_ar,) = eo.select_allreduce(ar, gpus_per_node=8)
    assert {r["kernel_source"] for r in sel_ar.rows} == {"vLLM_custom_graph"}
    assert {r["num_gpus"] for r in sel_ar.rows} == {2, 8}

    ctx = [
        {"attn_dtype": "bfloat16", "kv_cache_dtype": kv, "window_size": w, "latency": 1.0}
        for kv in ("bfloat16", "fp8")
        for w in (0, 128)
    ]
    (sel_ctx,) = eo.select_context_attention(ctx)
    assert [(r["kv_cache_dtype"], r["window_size"]) for r in sel_ctx.rows] == [("bfloat16", 0)]

    assert eo.mildest_distribution(["power_law_1.2", "balanced"]) == "balanced"
    assert eo.mildest_distribution(["power_law_1.2", "power_law_1.01"]) == "power_law_1.01"
    assert eo.mildest_distribution(["uniform"]) is None


def test_subsample_is_a_deterministic_stride_over_sorted_shapes() -> None:
    """10 GEMM rows, cap 4: stride ceil(10 / 4) = 3 over rows sorted by (m, n, k) -> m 0, 3,
    6, 9; under the cap every row is kept."""
    rows = [{"m": m, "n": 1, "k": 1} for m in reversed(range(10))]
    kept, stride = eo.subsample("gemm", rows, 4)
    assert stride == 3 and [r["m"] for r in kept] == [0, 3, 6, 9]
    assert eo.subsample("gemm", rows, 10) == (rows, 1)


def test_newest_version_in_pep440_order(tmp_path: Path) -> None:
    """rc20 beats rc5 and rc10 (string order would not); --version picks its own."""
    for v in ("1.3.0rc5", "1.3.0rc20", "1.3.0rc10", "1.2.0"):
        d = tmp_path / "gemm" / "trtllm" / v
        d.mkdir(parents=True)
        (d / "gemm_perf.txt").write_text("m,n,k,latency\n", encoding="utf-8")
    (tmp_path / "gemm" / "trtllm" / "9.9.9").mkdir()  # no table in it
    newest = eo.table_file(tmp_path, "gemm", "trtllm", None)
    pinned = eo.table_file(tmp_path, "gemm", "trtllm", "1.2.0")
    assert newest is not None and newest[0] == "1.3.0rc20"
    assert pinned is not None and pinned[0] == "1.2.0"
    assert eo.table_file(tmp_path, "gemm", "trtllm", "2.0") is None
    assert eo.table_file(tmp_path, "moe", "trtllm", None) is None


def test_missing_package_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without aiconfigurator-core the script says so in one line and exits 1."""
    import solver.profile.aiconfigurator as aic

    def missing() -> Path:
        raise SpecError("not installed")

    monkeypatch.setattr(aic, "package_systems_dir", missing)
    assert eo.main(["--out", str(tmp_path / "x.json")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "aiconfigurator-core" in out[0]
    assert not (tmp_path / "x.json").exists()
