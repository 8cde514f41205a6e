"""Tests of ``solver/profile/serving.py`` (``shardwise profile --serving``) without a GPU.

The error paths (no CUDA, no torch, unknown section), the layer shapes against
``models/*.yaml``, the summary's fits on hand-made rows, and one ``quick`` run on the CPU
(through ``benchmarks/validation/serving/serving_micro.py``, with pydantic and the solver's
other dependencies blocked, as on the GPU machine) whose result schema and correctness checks
are asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from solver.errors import SpecError  # noqa: E402
from solver.io import load_model  # noqa: E402
from solver.profile import serving, serving_shapes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("pydantic", "yaml", "typer", "rich", "ortools", "scipy")
GEMM_KEYS = {"model", "tp", "gemm", "m", "n", "k", "dtype", "s", "flops", "weight_Bps", "how"}


def test_no_cuda_raises_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a CUDA GPU (and without allow_cpu) the profile refuses with a one-line error."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match=r"^profile --serving: needs a CUDA GPU") as e:
        serving.run_serving_profile()
    assert "\n" not in str(e.value)


def test_missing_torch_raises_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed ``import torch`` becomes a SpecError naming the extra to install."""
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SpecError, match=r"needs PyTorch.*shardwise\[profile\]"):
        serving.run_serving_profile(quick=True, allow_cpu=True)


def test_unknown_section_is_named() -> None:
    """A bad section name is reported with its value before anything is measured."""
    with pytest.raises(SpecError, match=r"sections: unknown 'kv_cache'"):
        serving.run_serving_profile(quick=True, allow_cpu=True, sections=["gemm", "kv_cache"])


@pytest.mark.parametrize("name, shape", [("llama3-8b", serving_shapes.LLAMA3_8B),
                                         ("llama3-70b", serving_shapes.LLAMA3_70B)])  # fmt: skip
def test_layer_shapes_match_the_model_yaml(name: str, shape: serving_shapes.LayerShape) -> None:
    """The hard-coded device-side shapes are the ones in models/*.yaml."""
    m = load_model(name)
    assert (shape.hidden, shape.ffn, shape.heads, shape.kv_heads) == (
        m.hidden_size,
        m.ffn_hidden_size,
        m.num_attention_heads,
        m.num_kv_heads,
    )
    assert shape.head_dim * shape.heads == m.hidden_size


def test_gemm_shapes_split_megatron_style() -> None:
    """QKV and gate_up split N, O and down split K; 70B at TP 8 keeps one KV head per GPU."""
    shapes = {(ly.name, ly.tp, g): (n, k) for ly, g, n, k in serving_shapes.gemm_shapes()}
    assert len(shapes) == 20  # 8B at TP 1 + 70B at TP 1, 2, 4, 8; four GEMMs each
    assert shapes[("llama3-8b", 1, "qkv")] == ((32 + 2 * 8) * 128, 4096)
    assert shapes[("llama3-8b", 1, "down")] == (4096, 14336)
    assert shapes[("llama3-70b", 1, "gate_up")] == (2 * 28672, 8192)
    assert shapes[("llama3-70b", 8, "qkv")] == ((8 + 2 * 1) * 128, 8192)
    assert shapes[("llama3-70b", 8, "o")] == (8192, 1024)
    assert shapes[("llama3-70b", 4, "down")] == (8192, 28672 // 4)


def test_summary_fits_hand_made_rows() -> None:
    """Per-layer graph saving is the two-point slope; efficiencies divide by the ceilings."""
    res: dict[str, Any] = {
        "ceilings": {"copy_read_plus_write_Bps": 3.0e12, "bf16_square_flops": 750e12},
        "gemm": [
            {"dtype": "bf16", "m": 1, "s": 1e-5, "weight_Bps": 2.4e12, "flops": 1e12},
            {"dtype": "bf16", "m": 1, "s": 1e-5, "weight_Bps": 2.7e12, "flops": 2e12},
            {"dtype": "bf16", "m": 1, "s": 1e-5, "weight_Bps": 3.0e12, "flops": 3e12},
            {"dtype": "bf16", "m": 2, "error": "no kernel"},
        ],
        "step_overhead": [
            # eager - graph: 100 us at 4 layers, 180 us at 8 -> 20 us a layer; 160 kernels
            {"layers": 4, "batch": 1, "graph_s": 1e-3, "eager_minus_graph_s": 100e-6},
            {
                "layers": 8,
                "batch": 1,
                "graph_s": 2e-3,
                "eager_minus_graph_s": 180e-6,
                "kernels_per_step": 160,
                "host_issue_s": 960e-6,
            },  # fmt: skip
        ],
    }
    s = serving.summarize(res)
    assert s["gemm_weight_stream_eff"]["bf16"] == {1: pytest.approx(0.9)}  # median 2.7 / 3.0
    assert s["gemm_flops_eff"]["bf16"][1] == pytest.approx(2 / 750)
    assert s["graph_saving_per_layer_s"][1] == pytest.approx(20e-6)
    assert s["graph_saving_per_kernel_s"][1] == pytest.approx(180e-6 / 160)
    assert s["eager_host_issue_per_kernel_s"][1] == pytest.approx(6e-6)


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``serving_micro.py --quick`` run on the CPU with the solver's deps blocked."""
    tmp = tmp_path_factory.mktemp("serving")
    blocked = tmp / "blocked"
    for mod in BLOCKED:
        (blocked / mod).mkdir(parents=True)
        (blocked / mod / "__init__.py").write_text(f"raise ImportError('{mod} is blocked')\n")
    out = tmp / "raw.json"
    env = {**os.environ, "PYTHONPATH": str(blocked), "OMP_NUM_THREADS": "1"}
    script = ROOT / "benchmarks/validation/serving/serving_micro.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gemm_weight_stream_eff bf16" in proc.stdout
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_quick_run_has_every_section(quick_result: dict[str, Any]) -> None:
    """Format tag, versions, one entry per section (none failed), and the summary."""
    r = quick_result
    assert r["format"] == serving.RESULT_FORMAT
    assert r["meta"]["torch"] == torch.__version__ and r["meta"]["quick"] is True
    for name in serving.SECTIONS:
        assert name in r, name
        assert not (isinstance(r[name], dict) and ("error" in r[name] or "skipped" in r[name]))
    assert set(r["summary"]) >= {"gemm_weight_stream_eff", "decode_attn_best"}
    assert r["ceilings"]["copy_read_plus_write_Bps"] > 0 and r["ceilings"]["read_Bps"] > 0
    assert r["summary"]["bandwidth_ceiling"] == "read_Bps"


def test_quick_gemm_rows_are_consistent(quick_result: dict[str, Any]) -> None:
    """Every timed GEMM row has its keys, a positive time, rates that match the time, and
    the bf16 product is within bf16 rounding of a float64 product."""
    rows = quick_result["gemm"]
    timed = [r for r in rows if r["dtype"] == "bf16"]
    assert len(timed) == 4 * 3  # tiny layer: 4 GEMMs x M in (1, 4, 16)
    for r in timed:
        assert GEMM_KEYS <= set(r), r
        assert r["s"] > 0
        assert r["flops"] == pytest.approx(2 * r["m"] * r["n"] * r["k"] / r["s"])
        assert r["weight_Bps"] == pytest.approx(2 * r["n"] * r["k"] / r["s"])
    checks = [r for r in rows if r["dtype"] == "check"]
    assert len(checks) == 4
    assert all(1e-5 < c["bf16_rel_err"] < 1e-2 for c in checks)


def test_quick_attention_matches_reference(quick_result: dict[str, Any]) -> None:
    """Both SDPA layouts (enable_gqa and grouped query heads) agree with float32 softmax."""
    att = quick_result["decode_attention"]
    assert (att["heads"], att["kv_heads"]) == (8, 2)
    timed = [r for r in att["rows"] if "s" in r]
    assert {r["kernel"] for r in timed} == {"sdpa_gqa", "sdpa_grouped"}
    assert all(r["rel_err"] < 1e-2 for r in timed)
    for r in timed:
        assert r["kv_Bps"] == pytest.approx(r["kv_bytes"] / r["s"])


def test_quick_step_rows_record_no_graph_on_cpu(quick_result: dict[str, Any]) -> None:
    """On the CPU the decode step is timed eagerly and the graph half says it was skipped."""
    rows = quick_result["step_overhead"]
    assert {(r["layers"], r["batch"]) for r in rows} == {(1, 1), (2, 1), (1, 2), (2, 2)}
    for r in rows:
        assert r["eager_s"] > 0 and r["host_issue_s"] > 0
        assert r["graph_s"] is None and r["graph"].startswith("skipped")
    assert rows[0]["eager_s_end"] > 0 and rows[0]["tiny_kernel_issue_s_end"] > 0
    assert quick_result["launch"]["eager_back_to_back_s"] > 0


def test_budget_skips_sections() -> None:
    """A spent budget records every section as skipped instead of measuring it."""
    r = serving.run_serving_profile(quick=True, allow_cpu=True, budget_s=-1.0)
    assert all("budget" in r[name]["skipped"] for name in serving.SECTIONS)


# --------------------------------------------------------------------------------------------
# profile --serving -> calibration (solver/profile/calibrate_serving.py)
# --------------------------------------------------------------------------------------------
_RAW_H100 = (
    Path(__file__).resolve().parents[1] / "benchmarks/validation/serving/raw-h100x1-serving.json"
)


def _doc_with_attention(fixed_s: float, bps: float) -> dict[str, Any]:
    """A result document whose decode-attention cases follow t = fixed + bytes / bps exactly."""
    best: dict[int, dict[int, dict[str, Any]]] = {}
    for b in (1, 8, 32):
        for ctx in (512, 8192):
            nbytes = b * ctx * 2 * 8 * 128 * 2.0  # K and V, 8 KV heads, dim 128, bf16
            t = fixed_s + nbytes / bps
            best.setdefault(b, {})[ctx] = {"s": t, "kv_Bps": nbytes / t}
    return {
        "format": serving.RESULT_FORMAT,
        "meta": {"gpu": "NVIDIA H100 80GB HBM3"},
        "summary": {"decode_attn_best": best},
    }


def test_serving_calibration_recovers_a_hand_made_fit() -> None:
    from solver.profile.calibrate_serving import calibration_from_serving

    cal = calibration_from_serving(_doc_with_attention(5e-6, 2.68e12))
    assert cal.gpu == "H100-SXM5-80GB"
    assert cal.decode_attention_efficiency == pytest.approx(2.68e12 / 3.35e12, abs=1e-4)
    assert cal.decode_attention_overhead_us == pytest.approx(5.0, abs=0.01)


def test_serving_calibration_of_the_recorded_h100_run() -> None:
    """The committed H100 run fits 6.8 us + bytes / 3.16 TB/s (its README's numbers)."""
    from solver.profile.calibrate_serving import calibration_from_serving

    cal = calibration_from_serving(json.loads(_RAW_H100.read_text()))
    assert cal.decode_attention_efficiency == pytest.approx(3.16e12 / 3.35e12, abs=0.01)
    assert cal.decode_attention_overhead_us == pytest.approx(6.8, abs=0.2)


def test_serving_calibration_refuses_a_bandwidth_beyond_the_datasheet() -> None:
    from solver.profile.calibrate_serving import calibration_from_serving

    with pytest.raises(SpecError, match="beyond A100-SXM4-80GB's datasheet"):
        calibration_from_serving(_doc_with_attention(5e-6, 2.68e12), gpu="A100-SXM4-80GB")


def test_profile_from_serving_json_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from solver.cli import app
    from solver.io import load_calibration

    out = tmp_path / "cal.yaml"
    res = CliRunner().invoke(app, ["profile", "--from-json", str(_RAW_H100), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "decode_attention_efficiency" in res.output
    cal = load_calibration(out)
    assert cal.decode_attention_overhead_us == pytest.approx(6.8, abs=0.2)
    bad = tmp_path / "bad.json"
    doc = {"format": serving.RESULT_FORMAT, "meta": {"gpu": "NVIDIA H100 80GB HBM3"}, "summary": {}}
    bad.write_text(json.dumps(doc))
    res = CliRunner().invoke(app, ["profile", "--from-json", str(bad), "-o", str(tmp_path / "b")])
    assert res.exit_code == 2 and "decode_attention" in res.output
