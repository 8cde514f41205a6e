"""``shardwise profile --from-aiconfigurator``: NVIDIA AIConfigurator's measured kernel tables
read into a calibration (solver/profile/aiconfigurator.py).

The converter runs on a synthetic fixture laid out like the package's ``systems/`` folder
(``tests/aiconfigurator_fixture/systems``, the collector's comma-separated table format): its
rows were generated from the parameters below, so the fits must give them back.  Tests on the
real package skip when ``aiconfigurator_core`` is not importable.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from solver.cli import app
from solver.errors import SpecError
from solver.io import load_calibration
from solver.profile import aiconfigurator as aic
from solver.profile.calibrate import calibration_yaml
from solver.specs import Calibration

SYSTEMS = Path(__file__).parent / "aiconfigurator_fixture" / "systems"
runner = CliRunner()

# The parameters the fixture's rows were generated from (A100-SXM4-80GB: 312 TFLOP/s bf16,
# 2039 GB/s HBM, the catalog's figures).
GEMM_RATES = {
    (1, 4096, 4096): 0.5,
    (16, 8192, 8192): 6.0,
    (1024, 4096, 4096): 200.0,
    (4096, 8192, 8192): 280.0,
}  # (m, k, n) -> TFLOP/s
CONTEXT_EFFICIENCY = 0.6
DECODE_EFFICIENCY, DECODE_OVERHEAD_US = 0.8, 10.0
NCCL_LATENCY_US, NCCL_BUS_GBPS = 3.0, 200.0
CUSTOM_LATENCY_US, CUSTOM_GBPS = 4.0, 100.0
#: Largest fixture size (bytes) at which the one-shot kernel beats the ring on every GPU
#: count: 64 Ki elements x 2 B (the next size, 2 MiB, is faster on NCCL for n = 2, 4, 8).
CUSTOM_MAX_BYTES = 65536 * 2


def _cal() -> Calibration:
    return aic.calibration_from_aiconfigurator("tiny_sxm", "trtllm", "1.0.0", systems_dir=SYSTEMS)


def test_fixture_converts_to_the_generating_parameters() -> None:
    cal = _cal()
    assert cal.gpu == "A100-SXM4-80GB"  # from the rows' device column
    table = {(m, k, n): r for m, k, n, r in cal.gemm_table or ()}
    assert set(table) == set(GEMM_RATES)  # the int8 row is not a 16-bit GEMM
    for shape, rate in GEMM_RATES.items():
        # (1024, 4096, 4096) is timed twice: the faster kernel source's 200 TFLOP/s is kept
        assert table[shape] == pytest.approx(rate, rel=1e-9)
    assert cal.gemm_efficiency == pytest.approx(280.0 / 312.0, rel=1e-9)
    # the table is the engine's own per-shape time: no training realization factor on top
    assert cal.gemm_realization == aic.AIC_GEMM_REALIZATION == 1.0
    assert cal.attention_efficiency == pytest.approx(CONTEXT_EFFICIENCY, rel=1e-9)
    assert cal.decode_attention_efficiency == pytest.approx(DECODE_EFFICIENCY, rel=1e-6)
    assert cal.decode_attention_overhead_us == pytest.approx(DECODE_OVERHEAD_US, rel=1e-6)
    assert cal.measured["generation_attention"]["dropped_above_hbm_roof"] == 1
    assert cal.intra_node_latency_us == pytest.approx(NCCL_LATENCY_US, rel=1e-6)
    assert cal.intra_node_bandwidth_GBps == pytest.approx(NCCL_BUS_GBPS, rel=1e-6)
    assert cal.allreduce_small_latency_us == pytest.approx(CUSTOM_LATENCY_US, rel=1e-6)
    assert cal.allreduce_small_bandwidth_GBps == pytest.approx(CUSTOM_GBPS, rel=1e-6)
    assert cal.allreduce_small_max_bytes == CUSTOM_MAX_BYTES


def test_weight_streaming_memory_efficiency() -> None:
    """memory_efficiency: the one decode-sized GEMM with >= 64 MiB of weights (16 x 8192 x
    8192 at 6 TFLOP/s) streams its 128 MiB of bf16 weights at bytes / time of HBM."""
    cal = _cal()
    m, k, n = 16, 8192, 8192
    t = 2.0 * m * k * n / 6.0e12
    assert cal.memory_efficiency == pytest.approx(k * n * 2 / t / 2039e9, rel=1e-9)


def test_meta_names_system_backend_version() -> None:
    meta = _cal().meta["aiconfigurator"]
    assert (meta["system"], meta["backend"], meta["version"], meta["nccl_version"]) == (
        "tiny_sxm",
        "trtllm",
        "1.0.0",
        "2.27.3",
    )
    assert meta["tables"]["gemm"] == "data/tiny_sxm/gemm/trtllm/1.0.0/gemm_perf.txt"


def test_calibration_round_trip(tmp_path: Path) -> None:
    cal = _cal()
    path = tmp_path / "cal.yaml"
    path.write_text(calibration_yaml(cal))
    back = load_calibration(path)
    assert back == cal
    assert back.allreduce_small_max_bytes == CUSTOM_MAX_BYTES


def test_cli_writes_the_calibration(tmp_path: Path) -> None:
    out = tmp_path / "cal.yaml"
    res = runner.invoke(
        app,
        [
            "profile",
            "--from-aiconfigurator",
            "tiny_sxm",
            "trtllm",
            "1.0.0",
            "--aiconfigurator-systems",
            str(SYSTEMS),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "allreduce_small (custom)" in res.output
    doc = yaml.safe_load(out.read_text())
    assert math.isclose(doc["attention_efficiency"], CONTEXT_EFFICIENCY, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nope_sxm", "trtllm", "1.0.0"], "SYSTEM: unknown system 'nope_sxm'; known: tiny_sxm"),
        (["tiny_sxm", "vllm", "1.0.0"], "BACKEND: no 'vllm' tables"),
        (["tiny_sxm", "trtllm", "0.9.0"], "available: 1.0.0"),
    ],
)
def test_bad_coordinates_are_one_line_errors(args: list[str], needle: str) -> None:
    res = runner.invoke(
        app,
        [
            "profile",
            "--from-aiconfigurator",
            *args,
            "--aiconfigurator-systems",
            str(SYSTEMS),
            "--json",
        ],
    )
    assert res.exit_code == 2
    assert needle in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def no_aic(name: str, *a: object, **k: object) -> object:
        return None if name == aic.PACKAGE else real(name, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", no_aic)
    with pytest.raises(SpecError, match=r"shardwise\[aiconfigurator\]"):
        aic.package_systems_dir()
    res = runner.invoke(
        app, ["profile", "--from-aiconfigurator", "a100_sxm", "trtllm", "1.0.0", "--json"]
    )
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: --from-aiconfigurator: the aiconfigurator-core package is not installed: "
        "pip install 'shardwise[aiconfigurator]'"
    )


def test_systems_option_needs_the_source() -> None:
    res = runner.invoke(app, ["profile", "--aiconfigurator-systems", str(SYSTEMS), "--json"])
    assert res.exit_code == 2
    assert "--aiconfigurator-systems: only with --from-aiconfigurator" in res.output


def test_real_package_a100_trtllm() -> None:
    """The installed package's A100 / TensorRT-LLM 1.0.0 tables give a physical calibration."""
    pytest.importorskip(aic.PACKAGE)
    pytest.importorskip("pandas")
    cal = aic.calibration_from_aiconfigurator("a100_sxm", "trtllm", "1.0.0")
    assert cal.gpu == "A100-SXM4-80GB"
    assert cal.meta["aiconfigurator"]["package_version"] == aic.package_version()
    assert cal.gemm_table is not None and len(cal.gemm_table) > 1000
    for name in (
        "gemm_efficiency",
        "memory_efficiency",
        "attention_efficiency",
        "decode_attention_efficiency",
    ):
        assert 0.3 < getattr(cal, name) <= 1.0, name
    # NVLink 3 on A100: 300 GB/s per direction; NCCL's bus rate stays below it
    assert cal.intra_node_bandwidth_GBps is not None and cal.intra_node_bandwidth_GBps < 300
    # the custom kernel wins at small sizes: its fixed cost is below the ring's 2(n-1) alpha
    # at n = 8 and its crossover lies between 64 KiB and 64 MiB
    assert cal.allreduce_small_latency_us is not None and cal.intra_node_latency_us is not None
    assert cal.allreduce_small_latency_us < 14 * cal.intra_node_latency_us
    assert cal.allreduce_small_max_bytes is not None
    assert 2**16 <= cal.allreduce_small_max_bytes <= 2**26


def test_allreduce_rows_keep_graph_mode_and_the_faster_time() -> None:
    """vLLM's collector times its custom all-reduce eager and under a CUDA graph: the graph
    rows are the ones an engine's decode step replays; a size timed twice keeps its faster."""
    rows = [
        {
            "allreduce_dtype": "bfloat16",
            "kernel_source": src,
            "num_gpus": 2,
            "message_size": 1024,
            "latency": lat,
        }
        for src, lat in (
            ("vLLM_custom_graph", 0.005),
            ("vLLM_custom_eager", 0.044),
            ("vLLM_custom_graph", 0.004),
        )
    ]
    rows.append(
        {
            "allreduce_dtype": "bfloat16",
            "kernel_source": "x",
            "num_gpus": 16,
            "message_size": 1024,
            "latency": 0.001,
        }
    )  # beyond one node: not intra-node
    assert aic._allreduce_points(rows, "allreduce_dtype", 8) == [(2, 2048.0, 4e-6)]
