"""The measured per-shape GEMM rate table (``gemm_table``): lookup, pricing, calibration.

A calibration may carry the transformer GEMM rates the profile timed; the cost model then
prices each GEMM group at its own shape's rate (:func:`solver.costmodel.gemm_table.gemm_rate_tflops`)
and a backward GEMM as its dgrad + wgrad GEMMs.  Without the table, everything is priced
exactly as before (the catalog formula).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from solver.catalog import resolve_gpu
from solver.costmodel import block_time, decode_block_time, op_time, prefill_block_time
from solver.costmodel import constants as C
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import Op, block_forward_ops, head_time
from solver.costmodel.gemm_table import GEMM_TABLE_NEIGHBOURS, gemm_pass_shapes, gemm_rate_tflops
from solver.costmodel.stack import MEGATRON_2021
from solver.evaluate.calibration import CALIBRATED_GPU_FIELDS, gpu_with_calibration
from solver.io import load_calibration, load_cluster
from solver.profile.calibrate import calibration_from_raw, calibration_yaml, model_spec
from solver.profile.raw import RAW_FORMAT
from solver.specs import Calibration, GPUSpec

H100 = resolve_gpu("H100-SXM5-80GB")
LOCAL = LinkTier(1.0, 0.0, "local")

#: A small table: two shapes 4x apart along m, one apart along n.
TABLE: tuple[tuple[int, int, int, float], ...] = (
    (1024, 4096, 4096, 400.0),
    (4096, 4096, 4096, 700.0),
    (4096, 4096, 16384, 600.0),
)


def _gpu(table: Any = TABLE, **kw: Any) -> GPUSpec:
    """H100 with a table (validated, as a calibration YAML would be); realization 1 unless
    given."""
    return GPUSpec.model_validate(
        {**H100.model_dump(), "gemm_table": table, "gemm_realization": 1.0, **kw}
    )


# ----------------------------------------------------------------------------------------------
# the lookup
# ----------------------------------------------------------------------------------------------
def test_lookup_is_exact_at_measured_shapes() -> None:
    for m, k, n, r in TABLE:
        assert gemm_rate_tflops(TABLE, (m, k, n)) == r
        assert gemm_rate_tflops(TABLE, (float(m), float(k), float(n))) == r


def test_lookup_interpolates_between_measured_shapes() -> None:
    """Midway in log2 between (1024, 4096, 4096) and (4096, 4096, 4096): both at distance 1,
    the third at sqrt(1 + 4) = sqrt(5); weights 1/d^2 = 1, 1, 1/5."""
    got = gemm_rate_tflops(TABLE, (2048, 4096, 4096))
    assert got == pytest.approx((400 + 700 + 600 / 5) / (1 + 1 + 1 / 5), rel=1e-12)
    assert 400 < got < 700


def test_lookup_is_clamped_and_bounded_outside_the_table() -> None:
    """Beyond the measured box the query is clamped axis by axis: m = 64 reads as m = 1024
    (a measured shape), m = 10^6 as m = 4096; no rate leaves [min, max] of the table."""
    assert gemm_rate_tflops(TABLE, (64, 4096, 4096)) == 400.0
    assert gemm_rate_tflops(TABLE, (1, 4096, 4096)) == 400.0
    assert gemm_rate_tflops(TABLE, (1e6, 4096, 4096)) == 700.0
    assert gemm_rate_tflops(TABLE, (1e6, 4096, 1e7)) == 600.0
    for dims in [(3, 5, 7), (1e5, 1e5, 1e5), (2000, 100, 9000), (3000, 8000, 5000)]:
        assert 400.0 <= gemm_rate_tflops(TABLE, dims) <= 700.0


def test_lookup_uses_only_the_nearest_shapes() -> None:
    """Far-away shapes beyond the k nearest do not move the result."""
    near = [(1024 * 2**i, 4096, 4096, 500.0 + i) for i in range(GEMM_TABLE_NEIGHBOURS)]
    far = (2**30, 2**30, 2**30, 1.0)
    a = gemm_rate_tflops(tuple(near), (1500, 4096, 4096))
    b = gemm_rate_tflops((*near, far), (1500, 4096, 4096))
    assert a == b


def test_pass_shapes_follow_the_profiled_layout() -> None:
    """Y = X W^T (m x k)(k x n); dX = dY W (m x n)(n x k); dW = dY^T X (n x m)(m x k)."""
    assert gemm_pass_shapes((2048, 4096, 12288)) == (
        (2048, 4096, 12288),
        (2048, 12288, 4096),
        (12288, 2048, 4096),
    )


# ----------------------------------------------------------------------------------------------
# the spec field
# ----------------------------------------------------------------------------------------------
def test_table_field_is_validated_and_hashable() -> None:
    g = _gpu([[1024, 4096, 4096, 400], [4096, 4096, 4096, 700.5]])
    assert g.gemm_table == ((1024, 4096, 4096, 400.0), (4096, 4096, 4096, 700.5))
    hash(g)
    with pytest.raises(ValidationError, match="duplicate GEMM shape"):
        Calibration(gpu="H100-SXM5-80GB", gemm_table=[[1, 2, 3, 4.0], [1, 2, 3, 5.0]])
    with pytest.raises(ValidationError):
        Calibration(gpu="H100-SXM5-80GB", gemm_table=[[1, 2, 3, 0.0]])
    with pytest.raises(ValidationError):
        Calibration(gpu="H100-SXM5-80GB", gemm_table=[])
    assert "gemm_table" in CALIBRATED_GPU_FIELDS


# ----------------------------------------------------------------------------------------------
# pricing
# ----------------------------------------------------------------------------------------------
def test_op_time_with_table_is_flops_over_measured_rate() -> None:
    """A (4096 x 4096) @ (4096 x 4096) GEMM measured at 700 TFLOP/s, realization 0.9:
    2 x 4096^3 / (700e12 x 0.9); compute-bound."""
    g = _gpu(gemm_realization=0.9)
    flops = 2.0 * 4096**3
    op = Op("fc", flops, 1e3, "gemm", (4096, 4096, 4096))
    assert op_time(op, g, "bf16") == pytest.approx(flops / (700e12 * 0.9), rel=1e-12)
    # Without dims, or an elementwise group: the catalog formula / bytes only.
    bare = Op("fc", flops, 1e3, "gemm")
    expect = flops / (989e12 * H100.gemm_efficiency * 0.9)
    assert op_time(bare, g, "bf16") == pytest.approx(expect, rel=1e-12)
    mem = Op("norm", 0.0, 1e9, "mem", None)
    assert op_time(mem, g, "bf16") == op_time(mem, H100, "bf16")


def test_table_rate_is_capped_at_the_mamf_and_scaled_for_fp8() -> None:
    g = _gpu(((4096, 4096, 4096, 950.0),))  # above 989 x 0.8 = 791.2
    flops = 2.0 * 4096**3
    op = Op("fc", flops, 1.0, "gemm", (4096, 4096, 4096))
    mamf = 989e12 * H100.gemm_efficiency
    assert op_time(op, g, "bf16") == pytest.approx(flops / mamf, rel=1e-12)
    # fp8: the 16-bit rate scaled by the ratio of the FP8 and 16-bit MAMFs (catalog H100:
    # 1979 x 0.709 / (989 x 0.80)), so the capped rate becomes the FP8 MAMF itself.
    assert H100.fp8_tflops is not None and H100.fp8_gemm_efficiency is not None
    fp8_mamf = H100.fp8_tflops * 1e12 * H100.fp8_gemm_efficiency
    assert op_time(op, g, "fp8") == pytest.approx(flops / fp8_mamf, rel=1e-12)


def test_memory_roof_still_applies_with_a_table() -> None:
    g = _gpu()
    op = Op("skinny", 2.0 * 1 * 4096 * 4096, 4096 * 4096 * 2.0, "gemm", (1, 4096, 4096))
    mem = op.bytes / (3350e9 * H100.memory_efficiency)
    assert op_time(op, g, "bf16") == pytest.approx(mem, rel=1e-12)


def _hand_block(gpu: GPUSpec, model: Any, tokens: int) -> tuple[float, float]:
    """Forward / backward of one block (training, TP 1, no recompute) summed by hand."""
    ops = block_forward_ops(
        model,
        tp=1,
        micro_batch=1,
        seq=tokens,
        sequence_parallel=False,
        precision="bf16",
        stack=MEGATRON_2021,
    )
    real = gpu.gemm_realization
    assert real is not None and gpu.gemm_table is not None
    mamf = 989.0 * gpu.gemm_efficiency
    mem_bw = 3350e9 * gpu.memory_efficiency
    fwd = bwd = 0.0
    for o in ops:
        mem_s = o.bytes / mem_bw
        if o.kind == "mem":
            fwd += mem_s
            bwd += mem_s * C.BACKWARD_ELEMENTWISE_FACTOR
        elif o.kind == "attn":
            t = max(o.flops / (989e12 * gpu.gemm_efficiency * real), mem_s)
            fwd += t
            bwd += 2 * t
        else:
            assert o.dims is not None
            m, k, n = o.dims
            rate = {
                s: min(gemm_rate_tflops(gpu.gemm_table, s), mamf)
                for s in ((m, k, n), (m, n, k), (n, m, k))
            }
            fwd += max(o.flops / (rate[(m, k, n)] * 1e12 * real), mem_s)
            bwd += max(o.flops / (rate[(m, n, k)] * 1e12 * real), mem_s)
            bwd += max(o.flops / (rate[(n, m, k)] * 1e12 * real), mem_s)
    return fwd, bwd


def test_block_time_with_table_reproduces_a_hand_computation() -> None:
    model = model_spec(
        {"hidden": 4096, "layers": 2, "heads": 32, "ffn": 16384, "vocab_size": 50304}
    )
    table = tuple(
        (m, k, n, 500.0 + 10 * i)
        for i, (m, k, n) in enumerate(
            sorted(
                {
                    s
                    for dims in (
                        (2048, 4096, 12288),
                        (2048, 4096, 4096),
                        (2048, 4096, 16384),
                        (2048, 16384, 4096),
                    )
                    for s in gemm_pass_shapes(dims)
                }
            )
        )
    )
    g = _gpu(table, gemm_realization=0.95)
    pt = block_time(model, g, tp=1, micro_batch=1, seq=2048, recompute="none",
                    sequence_parallel=False, precision="bf16", tp_link=LOCAL, stack=MEGATRON_2021)  # fmt: skip
    fwd, bwd = _hand_block(g, model, 2048)
    assert pt.fwd_s == pytest.approx(fwd, rel=1e-12)
    assert pt.bwd_s == pytest.approx(bwd, rel=1e-12)
    # The FLOP ledgers do not depend on the table.
    base = block_time(model, H100, tp=1, micro_batch=1, seq=2048, recompute="none",
                      sequence_parallel=False, precision="bf16", tp_link=LOCAL, stack=MEGATRON_2021)  # fmt: skip
    assert (pt.flops_fwd, pt.hw_flops) == (base.flops_fwd, base.hw_flops)


def test_lm_head_gemm_uses_the_table_at_16_bit() -> None:
    """The LM head (kept 16-bit, kind 'attn') is priced from the table too: fp8 does not
    change it."""
    model = model_spec({"hidden": 4096, "layers": 2, "heads": 32, "ffn": 16384, "vocab_size": 4096})
    g = _gpu()
    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=4096, tp_link=LOCAL, stack=MEGATRON_2021)
    a = head_time(model, g, precision="bf16", **kw)
    b = head_time(model, g, precision="fp8", **kw)
    assert a == b
    gemm_s = 2.0 * 4096**3 / 700e12  # (4096 x 4096) @ (4096 x 4096), measured 700
    assert a.fwd_s > gemm_s


def test_calibration_without_table_prices_exactly_like_before() -> None:
    """No table: identical numbers to the catalog path with the same factors (bit for bit)."""
    cal = Calibration(gpu="H100-SXM5-80GB", gemm_efficiency=0.77, gemm_realization=0.9)
    pool = load_cluster("h100x2-nvlink").pools[0]
    g = gpu_with_calibration(pool, cal)
    assert g.gemm_table is None
    ref = H100.model_copy(update={"gemm_efficiency": 0.77, "gemm_realization": 0.9})
    model = model_spec({"hidden": 2048, "layers": 2, "heads": 16, "ffn": 8192, "vocab_size": 50304})
    for rc in ("none", "selective", "full"):
        kw: dict[str, Any] = dict(tp=2, micro_batch=2, seq=2048, recompute=rc,
                                  sequence_parallel=True, precision="bf16", tp_link=LOCAL, stack=MEGATRON_2021)  # fmt: skip
        assert block_time(model, g, **kw) == block_time(model, ref, **kw)
    assert prefill_block_time(
        model, g, tp=1, batch=4, prompt=512, precision="bf16", tp_link=LOCAL
    ) == prefill_block_time(model, ref, tp=1, batch=4, prompt=512, precision="bf16", tp_link=LOCAL)
    assert decode_block_time(
        model, g, tp=1, batch=4, context_len=512, precision="bf16", kv_precision="bf16",
        tp_link=LOCAL,
    ) == decode_block_time(
        model, ref, tp=1, batch=4, context_len=512, precision="bf16", kv_precision="bf16",
        tp_link=LOCAL,
    )  # fmt: skip
    # Catalog GEMM: FLOPs / (peak x efficiency x realization), unchanged.
    flops = 2.0 * 4096**3
    op = Op("fc", flops, 1.0, "gemm", (4096, 4096, 4096))
    assert op_time(op, H100, "bf16") == flops / (989.0 * 1e12 * H100.gemm_efficiency
                                                  * C.GEMM_REALIZATION_FRACTION)  # fmt: skip


def test_table_changes_block_time_and_calibration_applies_it() -> None:
    cal = Calibration(gpu="H100-SXM5-80GB", gemm_table=TABLE, gemm_realization=1.0)
    pool = load_cluster("h100x2-nvlink").pools[0]
    g = gpu_with_calibration(pool, cal)
    assert g.gemm_table == TABLE
    model = model_spec({"hidden": 4096, "layers": 2, "heads": 32, "ffn": 16384, "vocab_size": 0})
    kw: dict[str, Any] = dict(tp=1, micro_batch=1, seq=4096, recompute="none",
                              sequence_parallel=False, precision="bf16", tp_link=LOCAL, stack=MEGATRON_2021)  # fmt: skip
    assert block_time(model, g, **kw) != block_time(
        model, H100.model_copy(update={"gemm_realization": 1.0}), **kw
    )


# ----------------------------------------------------------------------------------------------
# calibration from raw measurements
# ----------------------------------------------------------------------------------------------
def _gemm_rec(gemm: str, pss: str, m: int, k: int, n: int, tflops: float) -> dict[str, Any]:
    flops = 2.0 * m * k * n
    return {"kind": "transformer", "gemm": gemm, "pass": pss, "hidden": 4096, "tokens": 2048,
            "tp": 1, "m": m, "k": k, "n": n, "flops": flops, "time_s": flops / (tflops * 1e12),
            "tflops": tflops}  # fmt: skip


def _raw() -> dict[str, Any]:
    """Transformer GEMM records in bench.py's layout; one shape measured twice (qkv's dgrad
    is (2048, 12288, 4096); a second record of it at another rate)."""
    gemm = [
        {"kind": "square", "m": 8192, "k": 8192, "n": 8192, "flops": 2 * 8192**3,
         "time_s": 2 * 8192**3 / 791.2e12, "tflops": 791.2},
        _gemm_rec("qkv", "forward", 2048, 4096, 12288, 700.0),
        _gemm_rec("qkv", "dgrad", 2048, 12288, 4096, 720.0),
        _gemm_rec("qkv", "wgrad", 12288, 2048, 4096, 650.0),
        _gemm_rec("other", "forward", 2048, 12288, 4096, 500.0),
        _gemm_rec("fc1", "forward", 8192, 4096, 16384, 600.0),
    ]  # fmt: skip
    return {
        "format": RAW_FORMAT,
        "meta": {"device": "NVIDIA H100 80GB HBM3", "world": 1},
        "profile": {"gemm": gemm},
        "train": [],
        "inference": [],
        "checks": [],
    }


def test_calibration_from_raw_fills_the_table() -> None:
    cal = calibration_from_raw(_raw())
    assert cal.gemm_table is not None
    rates = {(m, k, n): r for m, k, n, r in cal.gemm_table}
    assert rates == {
        (2048, 4096, 12288): 700.0,
        (2048, 12288, 4096): pytest.approx(math.sqrt(720.0 * 500.0), rel=1e-6),
        (12288, 2048, 4096): 650.0,
        (8192, 4096, 16384): 600.0,
    }
    assert [r[:3] for r in cal.gemm_table] == sorted(rates)  # sorted by shape
    # The square GEMM stays out of the table (it only sets the MAMF).
    assert (8192, 8192, 8192) not in rates
    assert cal.gemm_efficiency == pytest.approx(0.8, rel=1e-9)


def test_table_round_trips_through_yaml(tmp_path: Path) -> None:
    cal = calibration_from_raw(_raw())
    path = tmp_path / "cal.yaml"
    text = calibration_yaml(cal)
    assert "gemm_table:" in text
    path.write_text(text)
    back = load_calibration(path)
    assert back == cal
    assert back.gemm_table == cal.gemm_table


def test_existing_yaml_without_table_loads_unchanged() -> None:
    cal = load_calibration("h200-sxm-141gb")
    if cal.gemm_table is None:  # the committed file predates the table
        pool = load_cluster("h100x2-nvlink").pools[0]
        assert gpu_with_calibration(pool, cal).gemm_table is None
