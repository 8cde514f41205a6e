"""A per-term calibration from the modern runner's micro-benchmarks replaces only what was
measured (solver/profile/calibrate_modern.py)."""

from __future__ import annotations

from typing import Any

import pytest

from solver.costmodel.constants import ATTENTION_HALF_RATE_SEQ as S_HALF
from solver.errors import SpecError
from solver.profile.calibrate_modern import calibration_from_modern


def _raw(fwd_eff: float = 0.7, bwd_eff: float = 0.5) -> dict[str, Any]:
    """Synthetic timings that follow eff x s / (s + S_HALF) exactly on a 989 TFLOP/s GPU."""
    sdpa = []
    for s in (2048, 8192):
        share = s / (s + S_HALF)
        flops = 2.0 * 32 * 128 * s * s  # causal forward
        sdpa.append({
            "status": "ok", "backend": "default", "gqa": "mha", "seq": s,
            "flops_fwd_causal": flops,
            "fwd_ms_median": flops / (989e12 * fwd_eff * share) * 1e3,
            "bwd_ms_median": 2.5 * flops / (989e12 * bwd_eff * share) * 1e3,
        })  # fmt: skip
    gemm = [
        {"m": 8192, "k": 4096, "n": 4096, "tflops": 700.0},
        {"m": 2048, "k": 4096, "n": 4096, "tflops": 600.0},
    ]
    return {
        "env": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "x"},
        "micro": {"sdpa": sdpa, "gemm": gemm, "copy": {"gbps_read_plus_write_median": 3015.0}},
    }


def test_recovers_the_attention_asymptotes_and_measured_terms() -> None:
    """Exact synthetic timings give back the asymptotes; GEMM table, MAMF and HBM efficiency are
    the measured ones; what no micro-benchmark measures stays unset (catalog)."""
    cal = calibration_from_modern(_raw(0.7, 0.5))
    assert cal.gpu == "H100-SXM5-80GB"
    assert cal.attention_efficiency == pytest.approx(0.7, rel=1e-9)
    assert cal.attention_backward_efficiency == pytest.approx(0.5, rel=1e-9)
    assert cal.gemm_table is not None and len(cal.gemm_table) == 2
    assert cal.gemm_efficiency == pytest.approx(700.0 / 989.0)
    assert cal.memory_efficiency == pytest.approx(3015.0 / 3350.0)
    for unmeasured in ("gemm_realization", "elementwise_traffic_factor", "kernel_launch_us",
                       "optimizer_efficiency", "intra_node_bandwidth_GBps"):  # fmt: skip
        assert getattr(cal, unmeasured) is None


def test_unknown_gpu_and_missing_section_are_one_line_errors() -> None:
    """A device the catalog cannot name, or a raw without micro-benchmarks, is a SpecError."""
    raw = _raw()
    raw["env"]["gpu"] = "Some Accelerator"
    with pytest.raises(SpecError, match="env.gpu"):
        calibration_from_modern(raw)
    with pytest.raises(SpecError, match="micro"):
        calibration_from_modern({"env": {"gpu": "NVIDIA H100"}})


def test_profile_from_json_writes_a_per_term_calibration(tmp_path: Any) -> None:
    """`shardwise profile --from-json` on a modern raw writes a calibration that loads and
    prices only the measured terms."""
    import json

    from typer.testing import CliRunner

    from solver.cli import app
    from solver.io import load_calibration
    from solver.profile.calibrate_modern import MODERN_FORMAT

    raw = {"format": MODERN_FORMAT, **_raw(0.7, 0.5)}
    src, out = tmp_path / "raw.json", tmp_path / "cal.yaml"
    src.write_text(json.dumps(raw))
    res = CliRunner().invoke(app, ["profile", "--from-json", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "every other term keeps the catalog's value" in res.output
    cal = load_calibration(str(out))
    assert cal.attention_efficiency == pytest.approx(0.7, rel=1e-9)
    assert cal.gemm_realization is None and cal.kernel_launch_us is None


def test_modern_format_matches_the_runner() -> None:
    """The format string the calibration recognises is the one the runner writes."""
    pytest.importorskip("torch")
    from solver.profile import modern
    from solver.profile.calibrate_modern import MODERN_FORMAT

    assert modern.FORMAT == MODERN_FORMAT


def test_term_errors_measure_each_term_and_calibration_closes_its_own() -> None:
    """Per-term error: attention timings made at efficiency 0.7/0.5 against the catalog's
    0.733/0.579 give 0.733/0.7 - 1 and 0.579/0.5 - 1 on every row; the HBM copy 2680/3015 - 1;
    a calibration from the same run brings GEMM and HBM to 0 and the attention fit to 0."""
    from solver.catalog import resolve_gpu
    from solver.profile.calibrate_modern import term_errors

    raw = _raw(0.7, 0.5)
    h100 = resolve_gpu("H100-SXM5-80GB")
    doc = term_errors(raw)
    rows = {(r["term"], r["case"]): r for r in doc["rows"]}
    fwd = [r for (t, _), r in rows.items() if t == "attention_fwd"]
    bwd = [r for (t, _), r in rows.items() if t == "attention_bwd"]
    assert len(fwd) == len(bwd) == 2
    assert all(r["error"] == pytest.approx(h100.attention_efficiency / 0.7 - 1) for r in fwd)
    assert all(
        r["error"] == pytest.approx(h100.attention_backward_efficiency / 0.5 - 1) for r in bwd
    )
    (hbm,) = [r for (t, _), r in rows.items() if t == "hbm"]
    assert hbm["error"] == pytest.approx(3350 * h100.memory_efficiency / 3015 - 1)
    assert doc["summary"]["gemm"]["n"] == 2
    calibrated = term_errors(raw, calibration_from_modern(raw))["summary"]
    for term in ("gemm", "hbm", "attention_fwd", "attention_bwd"):
        assert calibrated[term]["max_abs_error"] == pytest.approx(0.0, abs=1e-6), term


def test_validate_prints_the_per_term_table_for_a_modern_raw(tmp_path: Any) -> None:
    """`shardwise validate --from-json` on a modern raw JSON prints one row per term."""
    import json

    from typer.testing import CliRunner

    from solver.cli import app
    from solver.profile.calibrate_modern import MODERN_FORMAT

    path = tmp_path / "raw.json"
    path.write_text(json.dumps({"format": MODERN_FORMAT, **_raw(0.7, 0.5)}))
    res = CliRunner().invoke(app, ["validate", "--from-json", str(path)])
    assert res.exit_code == 0, res.output
    for term in ("| gemm |", "| hbm |", "| attention_fwd |", "| attention_bwd |"):
        assert term in res.output


def _train_case(arch: str, seq: int, mb: int, *, rc: bool = False) -> dict[str, Any]:
    """One training case of the runner's raw JSON (small shapes: the fit, not the sizes)."""
    llama = arch == "llama"
    shape = {
        "name": arch, "arch": arch, "layers": 2, "hidden": 1024,
        "ffn": 3584 if llama else 4096, "heads": 8, "kv_heads": 2 if llama else 8,
        "vocab": 32000 if llama else 0,
    }  # fmt: skip
    return {"name": f"{arch}/s{seq}/b{mb}", "model": arch, "shape": shape, "seq": seq,
            "micro_batch": mb, "recompute": rc, "status": "ok"}  # fmt: skip


def test_step_terms_are_measured_from_the_training_steps_as_the_evaluator_prices_them() -> None:
    """Forwards made by the evaluator's own pricing at an in-step GEMM realisation of 0.85 and
    optimizer steps made at optimizer efficiency 0.6 (on the GPU the micro-benchmarks
    calibrate) give both back; the micro-benchmarked terms are those of the run without
    training steps.  Cases whose forward was not timed do not enter the realisation fit."""
    from solver.catalog import resolve_gpu
    from solver.costmodel.params import stage_params_per_gpu
    from solver.costmodel.step import optimizer_step_time
    from solver.evaluate.calibration import apply_calibration
    from solver.profile.calibrate_modern import forward_s, model_of_record

    raw = _raw(0.7, 0.5)
    micro_only = calibration_from_modern(raw)
    priced = apply_calibration(resolve_gpu("H100-SXM5-80GB"), micro_only)
    truth = priced.model_copy(update={"gemm_realization": 0.85, "optimizer_efficiency": 0.6})
    cases = [_train_case(a, s, b, rc=rc) for a in ("gpt", "llama") for s, b in
             ((1024, 1), (2048, 2)) for rc in (False, True)]  # fmt: skip
    for c in cases:
        m = model_of_record(c)
        params = stage_params_per_gpu(m, 2, first=True, last=True, sequence_length=c["seq"], tp=1)
        c["fwd_ms_median"] = forward_s(c, truth) * 1e3
        c["optimizer_ms_median"] = 1e3 * optimizer_step_time(
            params, truth, memory_policy="pure_bf16", zero_stage=0, dp=1
        )
    cases.append({**_train_case("gpt", 4096, 1), "optimizer_ms_median": None})  # not timed
    cal = calibration_from_modern({**raw, "train": cases})
    assert cal.gemm_realization == pytest.approx(0.85, abs=2e-4)
    assert cal.optimizer_efficiency == pytest.approx(0.6, rel=1e-9)
    assert cal.measured["training_forwards"] == 8 and cal.measured["optimizer_steps"] == 8
    for field in ("gemm_efficiency", "memory_efficiency", "attention_efficiency", "gemm_table"):
        assert getattr(cal, field) == getattr(micro_only, field), field
    # A slower measured forward is a lower realisation.
    for c in cases[:-1]:
        c["fwd_ms_median"] *= 1.1
    assert calibration_from_modern({**raw, "train": cases}).gemm_realization < 0.85


def test_profile_summary_lists_the_in_step_terms_it_measured(tmp_path: Any) -> None:
    """On the recorded H100 run (training steps included) the summary names the two in-step
    terms the calibration measured, not only the micro-benchmark ones."""
    from pathlib import Path

    from typer.testing import CliRunner

    from solver.cli import app

    raw = Path(__file__).resolve().parents[1] / (
        "benchmarks/validation/modern/raw-h100x1-modern-merged.json"
    )
    out = tmp_path / "cal.yaml"
    res = CliRunner().invoke(app, ["profile", "--from-json", str(raw), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "gemm_realization            0.892" in res.output
    assert "optimizer_efficiency        0.562" in res.output
