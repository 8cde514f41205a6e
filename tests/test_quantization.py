"""Serving quantization formats (solver/costmodel/quant.py): bytes per weight, the GEMM peak,
which GPUs and engines run each format, the refusals, and the exports' flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import A100, H100, cluster, infer, pool
from typer.testing import CliRunner

from solver import SpecError, load_workload
from solver.catalog import resolve_gpu
from solver.cli import app
from solver.costmodel import constants as C
from solver.costmodel import decode_block_time, prefill_block_time
from solver.costmodel.comm import LinkTier
from solver.costmodel.quant import (
    FORMATS,
    SERVING_ENGINES,
    gemm_peak_tflops,
    gpu_gap,
    input_cast_bytes,
    quantization_of,
    serving_precision,
    weight_bytes_per_element,
)
from solver.costmodel.serving_memory import kv_block_bytes, stage_kv_pool, stage_weight_bytes
from solver.engines import ENGINES, engine_violations
from solver.evaluate.checks import workload_precision_gap
from solver.export.precision import engine_precision, precision_spec
from solver.export.result import EngineCannotExpress
from solver.io import load_cluster, load_model
from solver.planner import plan
from solver.result import Status

ROOT = Path(__file__).resolve().parent.parent
LLAMA_70B = load_model(ROOT / "models" / "llama3-70b.yaml")
LLAMA_8B = load_model(ROOT / "models" / "llama3-8b.yaml")
H100X2 = ROOT / "instances" / "h100x2-nvlink.yaml"
#: A TP link that costs nothing: the tests below compare compute, not communication.
FREE = LinkTier(bandwidth_GBps=1e6, latency_us=0.0, name="local")


# --------------------------------------------------------------------------------------------
# Bytes per weight
# --------------------------------------------------------------------------------------------
#: Hand-derived bits per weight, scales included: FP8 / INT8 per-tensor or per-channel scales
#: are O(n) against O(k n) weights; GPTQ int8 / int4: one fp16 scale per group of 128
#: (8 + 16/128, 4 + 16/128); AWQ adds a 4-bit zero point per group (4 + 20/128); NVFP4 one E4M3
#: scale per 16 (4 + 8/16); MXFP4 one E8M0 scale per 32 (4 + 8/32).
BITS = {
    "none": 16.0,
    "fp8": 8.0,
    "int8": 8.0,
    "int8_weight_only": 8.125,
    "int4_awq": 4.15625,
    "int4_gptq": 4.125,
    "nvfp4": 4.5,
    "mxfp4": 4.25,
}


def test_every_format_has_hand_derived_bits() -> None:
    """The table lists exactly the workload's quantization values, each with its bits."""
    assert set(FORMATS) == set(BITS)
    for name, bits in BITS.items():
        assert FORMATS[name].weight_bits == pytest.approx(bits, rel=1e-12), name


@pytest.mark.parametrize("name", [n for n in BITS if n != "none"])
def test_weight_bytes_per_element(name: str) -> None:
    """A format's bytes per weight are its bits / 8 (int4 g128 = 4.125 bits = 0.515625 B)."""
    assert weight_bytes_per_element(name) == pytest.approx(BITS[name] / 8.0, rel=1e-12)


def test_input_casts_write_the_formats_element() -> None:
    """W8A8 / W4A4 input casts read 2 bytes and write the element with its scales: fp8 and
    int8 3 bytes (the training FP8_CAST_BYTES), nvfp4 2 + 4.5/8, mxfp4 2 + 4.25/8."""
    assert input_cast_bytes("fp8") == input_cast_bytes("int8") == C.FP8_CAST_BYTES == 3.0
    assert input_cast_bytes("nvfp4") == 2.5625 and input_cast_bytes("mxfp4") == 2.53125


def test_sixteen_bit_precisions_keep_their_element_size() -> None:
    """bf16 / fp16 stay 2 bytes, fp8 1 byte: the pre-quantization keys are unchanged."""
    assert weight_bytes_per_element("bf16") == weight_bytes_per_element("fp16") == 2.0
    assert weight_bytes_per_element("fp8") == 1.0


def test_llama70b_weight_memory_int4_awq_vs_bf16() -> None:
    """Llama-3-70B on one GPU: 141.1 GB in bf16, 39.8 GB with AWQ int4 blocks and a 16-bit
    embedding and LM head.

    Derivation: a block has 2 h q + 2 h kv = 2*8192*8192 + 2*8192*1024 = 150,994,944 attention
    weights, 3 h f = 3*8192*28672 = 704,643,072 MLP weights and 2 h = 16,384 norm weights:
    855,654,400; x 80 = 68,452,352,000.  Embedding V h = 128256*8192 = 1,050,673,152; head
    V h + final norm h = 1,050,681,344 (untied).  bf16: 70,553,706,496 x 2 = 141,107,412,992 B.
    AWQ: 68,452,352,000 x 4.15625/8 = 35,563,136,000 plus 2,101,354,496 x 2 = 4,202,708,992:
    39,765,844,992 B.
    """
    kw: dict[str, Any] = dict(layers=80, first=True, last=True, tp=1, context_tokens=2048)
    bf16 = stage_weight_bytes(LLAMA_70B, precision="bf16", **kw)
    awq = stage_weight_bytes(LLAMA_70B, precision="int4_awq", **kw)
    assert bf16 == pytest.approx(141_107_412_992, rel=1e-12)
    assert awq == pytest.approx(39_765_844_992, rel=1e-12)


def test_weight_memory_shards_over_tp_by_the_same_format() -> None:
    """TP 4 of the AWQ model holds a quarter of the blocks' quantized bytes and of the
    vocab-parallel embedding and head (Llama-3-70B: 8 KV heads, so K/V shard too)."""
    kw: dict[str, Any] = dict(layers=80, first=True, last=True, context_tokens=2048)
    one = stage_weight_bytes(LLAMA_70B, tp=1, precision="int4_awq", **kw)
    four = stage_weight_bytes(LLAMA_70B, tp=4, precision="int4_awq", **kw)
    # Only the norms are replicated: 2 h per block (priced with the blocks, at the format's
    # bytes) and the final h (16-bit): 80 * 16,384 * 4.15625/8 + 8192 * 2 bytes.
    replicated = 80 * 16_384 * BITS["int4_awq"] / 8 + 8192 * 2.0
    assert four == pytest.approx((one - replicated) / 4 + replicated, rel=1e-12)


# --------------------------------------------------------------------------------------------
# GEMM peak and decode / prefill time
# --------------------------------------------------------------------------------------------
def test_gemm_peak_follows_the_compute_type() -> None:
    """B200: nvfp4/mxfp4 at the FP4 peak (9000), int8 at INT8 (4500), fp8 at FP8 (4500),
    weight-only at the 16-bit peak (2250); H100 W8A8 int8 at 1979 TOP/s."""
    b200, h100 = resolve_gpu("B200"), resolve_gpu(H100)
    expected = {
        "nvfp4": 9000.0,
        "mxfp4": 9000.0,
        "int8": 4500.0,
        "fp8": 4500.0,
        "int4_awq": 2250.0,
        "int4_gptq": 2250.0,
        "int8_weight_only": 2250.0,
    }
    for name, peak in expected.items():
        assert gemm_peak_tflops(b200, name) == peak, name
    assert gemm_peak_tflops(h100, "int8") == 1979.0
    with pytest.raises(ValueError, match="no FP4 tensor cores"):
        gemm_peak_tflops(h100, "nvfp4")


def test_decode_is_faster_by_the_weight_byte_ratio_when_memory_bound() -> None:
    """Batch-1 decode of a Llama-3-70B block at no context reads its weights and little else:
    int4_awq is 16 / 4.15625 = 3.85x faster than bf16, int8 weight-only 16 / 8.125 = 1.97x."""
    h100 = resolve_gpu(H100)
    kw: dict[str, Any] = dict(tp=1, batch=1, context_len=0, kv_precision="bf16", tp_link=FREE)
    bf16 = decode_block_time(LLAMA_70B, h100, precision="bf16", **kw).fwd_s
    for name in ("int4_awq", "int8_weight_only", "nvfp4"):
        if gpu_gap(h100, name) is not None:
            continue  # nvfp4 has no H100 kernels (tested below)
        t = decode_block_time(LLAMA_70B, h100, precision=name, **kw).fwd_s
        # Activations (h-wide rows) and norms are < 0.1% of the weight bytes at batch 1.
        assert bf16 / t == pytest.approx(16.0 / BITS[name], rel=2e-3), name


def test_weight_only_prefill_runs_at_the_sixteen_bit_peak() -> None:
    """A compute-bound prefill (4 x 2048 tokens) takes as long with W4A16 as in bf16 (the
    GEMMs dequantize to 16 bit, WEIGHT_ONLY_DEQUANT_SLOWDOWN = 1), while W8A8 FP8 and INT8 run
    their GEMMs at twice the peak and are faster."""
    h100 = resolve_gpu(H100)
    kw: dict[str, Any] = dict(tp=1, batch=4, prompt=2048, tp_link=FREE)
    bf16 = prefill_block_time(LLAMA_70B, h100, precision="bf16", **kw).fwd_s
    awq = prefill_block_time(LLAMA_70B, h100, precision="int4_awq", **kw).fwd_s
    fp8 = prefill_block_time(LLAMA_70B, h100, precision="fp8", **kw).fwd_s
    int8 = prefill_block_time(LLAMA_70B, h100, precision="int8", **kw).fwd_s
    assert awq == pytest.approx(bf16, rel=1e-2)
    assert fp8 < 0.8 * bf16 and int8 < 0.8 * bf16


# --------------------------------------------------------------------------------------------
# KV cache
# --------------------------------------------------------------------------------------------
def test_fp8_kv_doubles_the_kv_capacity() -> None:
    """An fp8 KV block is half a bf16 one, so the same pool holds twice the blocks (the floor
    of the division can add one)."""
    bf16 = kv_block_bytes(LLAMA_70B, "bf16", tp=4, layers=80)
    fp8 = kv_block_bytes(LLAMA_70B, "fp8", tp=4, layers=80)
    assert fp8 * 2 == bf16
    kw: dict[str, Any] = dict(
        capacity_GB=80.0,
        utilization=0.9,
        tp=4,
        layers=80,
        weights=stage_weight_bytes(
            LLAMA_70B,
            layers=80,
            first=True,
            last=True,
            tp=4,
            context_tokens=4096,
            precision="int4_awq",
        ),
        forward_tokens=8192,
        sequences=64,
        last=True,
        communicators=1,
    )
    a = stage_kv_pool(LLAMA_70B, kv_precision="bf16", **kw).blocks
    b = stage_kv_pool(LLAMA_70B, kv_precision="fp8_e4m3", **kw).blocks
    assert a > 0 and b in (2 * a, 2 * a + 1)


def test_kv_default_is_the_sixteen_bit_type_beside_a_format() -> None:
    """quantization int4_awq keeps a bf16 KV cache unless told (the engines' kv dtype auto);
    precision fp8 keeps its fp8 KV default."""
    assert precision_spec(infer(quantization="int4_awq")).kv_cache == "bf16"
    assert precision_spec(infer(precision="fp8")).kv_cache == "fp8_e4m3"
    assert precision_spec(infer(quantization="nvfp4", kv_cache_precision="fp8")).kv_cache == (
        "fp8_e4m3"
    )


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quantization", "gpu", "cores"),
    [("nvfp4", H100, "FP4"), ("mxfp4", H100, "FP4"), ("fp8", A100, "FP8"), ("nvfp4", A100, "FP4")],
)
def test_a_format_the_gpu_lacks_is_invalid_input_naming_field_value_and_gpu(
    quantization: str, gpu: str, cores: str
) -> None:
    """nvfp4 on H100, fp8 on A100: INVALID_INPUT, one line naming quantization, the format and
    the GPU, before any search."""
    res = plan(
        LLAMA_8B, cluster(pool("p", gpu, gpn=2)), infer(quantization=quantization), time_limit_s=5
    )
    assert res.status == Status.INVALID_INPUT
    msg = res.message
    assert "\n" not in msg
    assert msg.startswith(f"quantization: no pool's GPU supports {quantization} (")
    assert resolve_gpu(gpu).name in msg and f"no {cores} tensor cores" in msg


def test_weight_only_below_the_kernels_compute_capability_is_refused() -> None:
    """V100 (sm70): AWQ needs sm75 (vLLM AutoAWQConfig), GPTQ runs from sm60."""
    v100 = resolve_gpu("v100")
    wl = infer(precision="fp16", quantization="int4_awq")
    gap = workload_precision_gap(v100, wl)
    assert gap is not None and "compute capability 7.0" in gap and "int4_awq" in gap
    assert workload_precision_gap(v100, infer(precision="fp16", quantization="int4_gptq")) is None


def test_heterogeneous_pools_plan_on_the_ones_that_support_the_format() -> None:
    """int8 W8A8 on an L40S + V100 cluster: the V100 (no INT8 tensor cores) is dropped, the plan
    runs on the L40S pool only."""
    res = plan(
        LLAMA_8B,
        cluster(pool("v100", "v100", gpn=2), pool("l40s", "L40S", gpn=2)),
        infer(precision="fp16", quantization="int8"),
        time_limit_s=20,
    )
    assert res.plan is not None, res.message
    assert {st.pool for g in res.plan.replica_groups for st in g.stages} == {"l40s"}


def test_cli_refusal_exits_2_with_one_line(tmp_path: Path) -> None:
    """`shardwise plan` with nvfp4 on H100s: exit 2, one `error:` line naming the field."""
    wl = tmp_path / "wl.yaml"
    wl.write_text("kind: inference\nprompt_tokens: 512\noutput_tokens: 64\nquantization: nvfp4\n")
    args = ["plan", "--model", str(ROOT / "models" / "llama3-8b.yaml"), "--cluster", str(H100X2)]
    res = CliRunner().invoke(app, [*args, "--workload", str(wl)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "quantization: no pool's GPU supports nvfp4" in res.output
    assert "H100-SXM5-80GB" in res.output


def test_bad_quantization_values_are_spec_errors() -> None:
    """An unknown format, or a format beside precision fp8, is a SpecError naming the field."""
    base = {"kind": "inference", "prompt_tokens": 16, "output_tokens": 16}
    with pytest.raises(SpecError, match="quantization"):
        load_workload({**base, "quantization": "int3"})
    with pytest.raises(SpecError, match="quantization: precision fp8 already means W8A8 FP8"):
        load_workload({**base, "precision": "fp8", "quantization": "int4_awq"})


# --------------------------------------------------------------------------------------------
# Engines and exports
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in FORMATS if n != "none"])
def test_engine_table_matches_rules_and_exports(name: str) -> None:
    """Every engine that lists a format launches it (rules) with the table's option value
    (exports); every other serving engine refuses it in one line, in both places."""
    wl = infer(quantization=name)
    spec = precision_spec(wl)
    for engine in SERVING_ENGINES:
        how = FORMATS[name].engines.get(engine)
        assert (name in ENGINES[engine].quantizations) == (how is not None)
        if how is None:
            with pytest.raises(EngineCannotExpress, match=f"quantization {name}"):
                engine_precision(engine, spec)
            continue
        out = engine_precision(engine, spec)
        if engine == "trtllm":
            assert out.config["quant_config"] == {"quant_algo": how.value}
        else:
            assert f"--quantization {how.value}" in out.flags
        assert bool(how.checkpoint) == any(how.checkpoint in n for n in out.notes)


def test_engine_values_are_the_engines_own_names() -> None:
    """The option values are those the engines accept (vLLM 0.34.0 QuantizationMethods,
    SGLang 0.5.23 QUANTIZATION_CHOICES, TensorRT-LLM QuantAlgo), quoted in the docstrings."""
    vllm = {"fp8", "compressed-tensors", "gptq_marlin", "awq_marlin", "modelopt_fp4"}
    sglang = {"fp8", "w8a8_int8", "gptq_marlin", "awq_marlin", "modelopt_fp4"}
    trtllm = {"FP8", "W8A16", "W4A16_AWQ", "NVFP4"}
    used = {
        e: {f.engines[e].value for f in FORMATS.values() if e in f.engines} for e in SERVING_ENGINES
    }
    assert used == {"vllm": vllm, "sglang": sglang, "trtllm": trtllm}


def test_engine_violations_name_the_missing_format() -> None:
    """TensorRT-LLM's PyTorch back-end has no W8A8 INT8 linear: one line saying so."""
    res = plan(LLAMA_8B, load_cluster(H100X2), infer(quantization="int8"), time_limit_s=20)
    assert res.plan is not None and res.launch is not None
    assert res.launch["vllm"] == [] and res.launch["sglang"] == []
    why = engine_violations(res.plan, LLAMA_8B, "trtllm", infer(quantization="int8"))
    assert why and why[0].startswith("quantization int8 has no TensorRT-LLM setting")


def test_planner_refuses_an_engine_without_the_format() -> None:
    """`--engine trtllm` with int4_gptq (no TensorRT-LLM linear method): INVALID_INPUT."""
    res = plan(
        LLAMA_8B,
        load_cluster(H100X2),
        infer(quantization="int4_gptq"),
        engine="trtllm",
        time_limit_s=5,
    )
    assert res.status == Status.INVALID_INPUT
    assert "engine: TensorRT-LLM has no quantization 'int4_gptq'" in res.message


# --------------------------------------------------------------------------------------------
# Workload YAML
# --------------------------------------------------------------------------------------------
def test_yaml_round_trip_and_old_inputs_unchanged(tmp_path: Path) -> None:
    """A workload with quantization survives YAML; an old file without it reads as before
    (precision fp8 is the fp8 format, bf16 is unquantized)."""
    wl = infer(quantization="int4_awq", kv_cache_precision="fp8")
    path = tmp_path / "wl.yaml"
    path.write_text(yaml.safe_dump(wl.model_dump(mode="json")))
    back = load_workload(path)
    assert back == wl and serving_precision(back) == "int4_awq"
    old = load_workload(
        {"kind": "inference", "prompt_tokens": 8, "output_tokens": 8, "precision": "fp8"}
    )
    assert old.quantization == "none"  # type: ignore[union-attr]
    assert quantization_of(old) == "fp8" and serving_precision(old) == "fp8"
    plain = load_workload({"kind": "inference", "prompt_tokens": 8, "output_tokens": 8})
    assert serving_precision(plain) == "bf16"


def test_evaluated_plan_reports_smaller_weights_and_faster_decode() -> None:
    """The evaluator prices the format: the same Llama-3-8B plan holds 16.06 GB of bf16 weights
    but 5.73 GB in int4_awq, and decodes faster.

    Derivation (one GPU holds the whole model): a block has 2*4096*4096 + 2*4096*1024 =
    41,943,040 attention, 3*4096*14336 = 176,160,768 MLP and 8,192 norm weights: 218,112,000;
    x 32 = 6,979,584,000.  Embedding 128256*4096 = 525,336,576, head + final norm 525,340,672.
    bf16: 8,030,261,248 x 2 B = 16.060522496 GB.  AWQ: 6,979,584,000 x 4.15625/8 =
    3,626,112,000 plus 1,050,677,248 x 2 = 2,101,354,496: 5.727466496 GB.
    """
    from solver.evaluate import evaluate

    c = load_cluster(H100X2)
    p = plan(LLAMA_8B, c, infer(batch=(1,)), time_limit_s=20).plan
    assert p is not None
    r16 = evaluate(LLAMA_8B, c, infer(batch=(1,)), p).to_dict()
    r4 = evaluate(LLAMA_8B, c, infer(batch=(1,), quantization="int4_awq"), p).to_dict()
    w16 = r16["memory_ledger"][0]["weights_GB"]
    w4 = r4["memory_ledger"][0]["weights_GB"]
    assert {g.stages[0].tp for g in p.replica_groups} == {1} and p.replica_groups[0].pp == 1
    assert w16 == pytest.approx(16.060522496, rel=1e-9)
    assert w4 == pytest.approx(5.727466496, rel=1e-9)
    assert r4["tokens_per_s"] > 1.5 * r16["tokens_per_s"]


def test_export_writes_the_format_flags_and_refuses_an_engine_without_it() -> None:
    """`export --to vllm` of an int4_awq plan passes `--quantization awq_marlin` and names the
    AWQ checkpoint; `--to trtllm` of an int8 (W8A8) plan is refused in one line."""
    from solver.export import export_plan

    c = load_cluster(H100X2)
    wl = infer(batch=(1,), quantization="int4_awq")
    p = plan(LLAMA_8B, c, wl, time_limit_s=20).plan
    assert p is not None
    text = export_plan(p, "vllm", LLAMA_8B, c, wl).text
    assert "--quantization awq_marlin" in text and "AWQ 4-bit" in text
    with pytest.raises(EngineCannotExpress, match="int8"):
        export_plan(p, "trtllm", LLAMA_8B, c, infer(batch=(1,), quantization="int8"))


def test_evaluator_flags_a_format_the_plans_gpu_lacks() -> None:
    """`evaluate` of an H100 plan with nvfp4: infeasible, one violation naming the pool, the
    GPU and the format (nothing is priced at a peak the GPU does not have)."""
    from solver.evaluate import evaluate

    c = load_cluster(H100X2)
    p = plan(LLAMA_8B, c, infer(batch=(1,)), time_limit_s=20).plan
    assert p is not None
    rep = evaluate(LLAMA_8B, c, infer(batch=(1,), quantization="nvfp4"), p).to_dict()
    assert rep["feasible"] is False
    assert rep["violations"] == [
        "pool h100: GPU H100-SXM5-80GB has no FP4 tensor cores (quantization nvfp4)"
    ]
