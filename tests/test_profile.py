"""Tests of ``shardwise profile``: the fits, the calibration it writes, and the CPU run.

The fits are checked on synthetic times generated from known parameters (derivations in the
docstrings); the measuring side runs once on CPU with gloo and 2 processes, as a subprocess in
which pydantic, yaml, typer, rich, ortools and scipy cannot be imported -- what a GPU machine
with only torch and numpy looks like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solver.cli import app
from solver.evaluate import evaluate
from solver.io import load_calibration, load_cluster, load_plan, load_workload
from solver.profile.calibrate import calibration_from_raw, calibration_yaml, gpu_for_device
from solver.profile.compare import compare, model_spec
from solver.profile.fit import (
    collective_coefficients,
    fit_collective,
    fit_nonneg_relative,
    fit_throughput,
)
from solver.profile.raw import RAW_FORMAT
from solver.specs import Calibration

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

#: Packages the device side must not need (the GPU machine may lack them).
BLOCKED = ("pydantic", "yaml", "typer", "rich", "ortools", "scipy")


# ----------------------------------------------------------------------------------------------
# fits
# ----------------------------------------------------------------------------------------------
def test_fit_collective_recovers_alpha_beta_over_group_sizes() -> None:
    """Noise-free all-reduce times t = 2(n-1) a + 2(n-1)/n S/B give back a = 4 us, B = 360 GB/s."""
    alpha, bw = 4e-6, 360e9
    ns, sizes, times = [], [], []
    for n in (2, 4, 8):
        for s in (4**k for k in range(6, 16)):
            lat, vol = collective_coefficients("all_reduce", n, s)
            ns.append(n)
            sizes.append(s)
            times.append(lat * alpha + vol / bw)
    fit = fit_collective("all_reduce", ns, sizes, times)
    assert fit.latency_us == pytest.approx(4.0, rel=1e-9)
    assert fit.bandwidth_GBps == pytest.approx(360.0, rel=1e-9)
    assert fit.max_rel_err < 1e-9
    # The fitted model predicts a point it was not given: 8 GPUs, 3 MB.
    assert fit.predict(3e6, 8) == pytest.approx(14 * alpha + 1.75 * 3e6 / bw, rel=1e-9)


def test_fit_is_relative_so_small_messages_count() -> None:
    """With 5% multiplicative noise the latency (set by KB messages) is still within 10%.

    An unweighted fit would be decided by the 1 GB points (times 10^5 larger) and could return
    any latency; the relative fit weighs every decade alike.
    """
    rng = np.random.default_rng(0)
    sizes = [4**k for k in range(5, 16)]
    true = [2e-6 + s / 50e9 for s in sizes]
    noisy = [t * (1 + 0.05 * rng.standard_normal()) for t in true]
    fit = fit_collective("send_recv", [2] * len(sizes), sizes, noisy)
    assert fit.latency_us == pytest.approx(2.0, rel=0.1)
    assert fit.bandwidth_GBps == pytest.approx(50.0, rel=0.1)


def test_fit_keeps_coefficients_non_negative() -> None:
    """Times that shrink with size would need a negative bandwidth term: clamped or refused."""
    # t = 10 - 1e-9 S has no non-negative slope: the best fit is a constant, refused as a
    # collective (a bandwidth cannot be infinite).
    sizes = [1e6, 2e6, 4e6]
    with pytest.raises(ValueError, match="do not grow"):
        fit_collective("all_reduce", [2, 2, 2], sizes, [10 - 1e-9 * s for s in sizes])
    # t = -1 + 2x has a negative intercept unconstrained; the constrained fit is t = c x.
    lf = fit_nonneg_relative([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]], [1.0, 3.0, 5.0])
    assert lf.beta[0] == 0.0 and lf.beta[1] > 0


def test_fit_rejects_bad_input() -> None:
    """Non-positive times and too few points are errors, not fits."""
    with pytest.raises(ValueError, match="> 0"):
        fit_nonneg_relative([[1.0, 1.0], [1.0, 2.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_nonneg_relative([[1.0, 1.0]], [1.0])
    with pytest.raises(ValueError, match="op: must be one of"):
        collective_coefficients("broadcast", 2, 1.0)


def test_fit_throughput_recovers_rate_and_overhead() -> None:
    """t = 8 us + F / 600 TFLOP/s gives back both numbers."""
    flops = [2.0 * n**3 for n in (256, 1024, 4096, 8192)]
    fit = fit_throughput(flops, [8e-6 + f / 600e12 for f in flops])
    assert fit.rate == pytest.approx(600e12, rel=1e-9)
    assert fit.overhead_s == pytest.approx(8e-6, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# calibration from raw measurements
# ----------------------------------------------------------------------------------------------
def _synthetic_raw() -> dict[str, Any]:
    """A raw document whose answers are known: H100 (989 TFLOP/s, 3350 GB/s in the catalog).

    Best GEMM 791.2 TFLOP/s -> gemm_efficiency 791.2 / 989 = 0.8.  Copy t = 3 us + bytes /
    2680 GB/s -> memory_efficiency 2680 / 3350 = 0.8.  All-reduce on 2 GPUs with a 6 us
    per-step latency and 370 GB/s bus bandwidth -> intra_node 370 GB/s, 6 us.
    """
    gemm = [
        {"kind": "square", "m": 8192, "k": 8192, "n": 8192, "flops": 2 * 8192**3,
         "time_s": 2 * 8192**3 / 791.2e12, "tflops": 791.2},
        {"kind": "transformer", "gemm": "fc1", "pass": "forward", "hidden": 4096,
         "tokens": 2048, "tp": 1, "m": 2048, "k": 4096, "n": 16384,
         "flops": 2 * 2048 * 4096 * 16384, "time_s": 2 * 2048 * 4096 * 16384 / 600e12,
         "tflops": 600.0},
        {"kind": "transformer", "gemm": "qkv", "pass": "forward", "hidden": 4096,
         "tokens": 2048, "tp": 1, "m": 2048, "k": 4096, "n": 12288,
         "flops": 2 * 2048 * 4096 * 12288, "time_s": 2 * 2048 * 4096 * 12288 / 500e12,
         "tflops": 500.0},
    ]  # fmt: skip
    memory = []
    for b in (2**20, 2**24, 2**28, 2**31):
        t = 3e-6 + 2 * b / 2680e9
        memory.append({"kernel": "copy", "buffer_bytes": b, "bytes_moved": 2 * b,
                       "time_s": t, "GBps": 2 * b / t / 1e9})  # fmt: skip
    coll = []
    for op in ("all_reduce", "send_recv"):
        for s in (4**k for k in range(6, 16)):
            lat, vol = collective_coefficients(op, 2, s)
            t = lat * 6e-6 + vol / 370e9
            coll.append({"op": op, "group_size": 2, "bytes": s, "time_s": t,
                         "algbw_GBps": s / t / 1e9})  # fmt: skip
    return {
        "format": RAW_FORMAT,
        "meta": {"device": "NVIDIA H100 80GB HBM3", "world": 2, "torch": "x", "nccl": "2.21.5"},
        "profile": {"gemm": gemm, "memory": memory, "collectives": coll},
        "train": [],
        "inference": [],
        "checks": [],
    }


def test_calibration_fields_from_known_measurements() -> None:
    """The fitted fields equal the parameters the synthetic measurements were made from."""
    cal = calibration_from_raw(_synthetic_raw())
    assert cal.gpu == "H100-SXM5-80GB"  # from the device name
    assert cal.gemm_efficiency == pytest.approx(0.8, rel=1e-9)
    assert cal.memory_efficiency == pytest.approx(0.8, rel=1e-9)
    assert cal.intra_node_bandwidth_GBps == pytest.approx(370.0, rel=1e-9)
    assert cal.intra_node_latency_us == pytest.approx(6.0, rel=1e-9)
    g = cal.measured["gemm"]
    # Transformer GEMMs: 600 and 500 TFLOP/s of a 791.2 MAMF.
    assert g["realization_mean"] == pytest.approx((600 + 500) / 2 / 791.2, rel=1e-9)
    p2p = cal.measured["collectives"]["send_recv"]["fit"]
    assert p2p["bandwidth_GBps"] == pytest.approx(370.0) and p2p["latency_us"] == pytest.approx(6.0)


def test_calibration_yaml_round_trips_and_the_evaluator_uses_it(tmp_path: Path) -> None:
    """The YAML loads as a Calibration, and a slower link or GEMM makes a TP plan slower."""
    cal = calibration_from_raw(_synthetic_raw())
    path = tmp_path / "cal.yaml"
    path.write_text(calibration_yaml(cal))
    assert load_calibration(path) == cal
    shape = {"hidden": 1024, "layers": 4, "heads": 8, "ffn": 4096, "vocab_size": 32000,
             "seq_len": 2048}  # fmt: skip
    model = model_spec(shape)
    cluster = load_cluster("h100x2-nvlink")
    wl = load_workload({"kind": "training", "global_batch_size": 8, "sequence_length": 2048,
                        "micro_batch_sizes": [1], "memory_policy": "pure_bf16",
                        "zero_stage": 0})  # fmt: skip
    plan = load_plan({"kind": "training", "replica_groups": [{
        "count": 1, "micro_batch_size": 1, "num_micro_batches": 8, "stages": [
            {"first_layer": 0, "last_layer": 3, "pool": "h100", "tp": 2,
             "devices": [[["h100-0", 0], ["h100-0", 1]]]}]}]})  # fmt: skip
    base = evaluate(model, cluster, wl, plan)
    slow_link = Calibration(gpu="H100-SXM5-80GB", intra_node_bandwidth_GBps=50.0)
    slow_gemm = Calibration(gpu="H100-SXM5-80GB", gemm_efficiency=0.4)
    other_gpu = Calibration(gpu="A100-SXM4-80GB", gemm_efficiency=0.4)
    assert base.step_time_s is not None
    assert evaluate(model, cluster, wl, plan, slow_link).step_time_s > base.step_time_s  # type: ignore[operator]
    assert evaluate(model, cluster, wl, plan, slow_gemm).step_time_s > base.step_time_s  # type: ignore[operator]
    assert evaluate(model, cluster, wl, plan, other_gpu).step_time_s == base.step_time_s


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIe-80GB"),
        ("NVIDIA H200", "H200-SXM-141GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA L40S", "L40S"),
        ("cpu", None),
    ],
)
def test_gpu_for_device(name: str, expected: str | None) -> None:
    """CUDA device names map to catalog entries; unknown devices to None."""
    assert gpu_for_device(name) == expected


# ----------------------------------------------------------------------------------------------
# the CPU run (gloo, 2 processes) without the solver's dependencies
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``run.py profile --cpu`` in a subprocess where the solver's dependencies are blocked."""
    tmp = tmp_path_factory.mktemp("profile")
    blocked = tmp / "blocked"
    for mod in BLOCKED:
        (blocked / mod).mkdir(parents=True)
        (blocked / mod / "__init__.py").write_text(f"raise ImportError('{mod} is blocked')\n")
    out = tmp / "raw.json"
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "solver/profile/run.py"),
            "profile",
            "--cpu",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_cpu_profile_measures_everything(cpu_raw: Path) -> None:
    """GEMMs, memory kernels and the four collectives on 2 gloo ranks, all with times > 0,
    and the NCCL settings recorded."""
    raw = json.loads(cpu_raw.read_text())
    assert raw["format"] == RAW_FORMAT and raw["complete"] is True
    assert raw["meta"]["env"] == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    prof = raw["profile"]
    assert {(r["gemm"], r["pass"]) for r in prof["gemm"] if r["kind"] == "transformer"} == {
        (g, p) for g in ("qkv", "proj", "fc1", "fc2") for p in ("forward", "dgrad", "wgrad")
    }
    assert {r["kernel"] for r in prof["memory"]} == {"copy", "add"}
    ops = {(r["op"], r["group_size"]) for r in prof["collectives"]}
    assert ops == {(op, 2) for op in ("all_reduce", "all_gather", "reduce_scatter", "send_recv")}
    for section in ("gemm", "memory", "collectives"):
        assert all(r["time_s"] > 0 for r in prof[section])
    # Whole blocks: per shape, training forward + backward, optimizer, prefill, decode b1/b4.
    cases = sorted((r["shape"]["hidden"], r["case"], r.get("batch", 0)) for r in prof["blocks"])
    assert cases == sorted(
        (h, c, b)
        for h in (64, 128)
        for c, b in (("train", 0), ("optimizer", 0), ("prefill", 1), ("decode", 1), ("decode", 4))
    )
    assert all(
        r["forward_s"] > 0 and r["backward_s"] > 0 for r in prof["blocks"] if r["case"] == "train"
    )


def test_cpu_profile_fits_a_calibration(cpu_raw: Path) -> None:
    """The CPU measurements fit (efficiencies in (0, 1], positive link figures) and say they
    are a pipeline test, not a calibration."""
    raw = json.loads(cpu_raw.read_text())
    cal = calibration_from_raw(raw, gpu="h100")
    assert cal.gpu == "H100-SXM5-80GB"
    assert cal.gemm_efficiency is not None and 0 < cal.gemm_efficiency <= 1
    assert cal.memory_efficiency is not None and 0 < cal.memory_efficiency <= 1
    assert cal.intra_node_bandwidth_GBps is not None and cal.intra_node_bandwidth_GBps > 0
    assert cal.kernel_launch_us is not None and cal.kernel_launch_us >= 0
    assert cal.optimizer_efficiency is not None and 0 < cal.optimizer_efficiency <= 1
    assert "CPU" in cal.meta["note"]


def test_profile_cli_from_json(cpu_raw: Path, tmp_path: Path) -> None:
    """`profile --from-json` writes a loadable YAML, refuses to overwrite it, and asks for
    --gpu when the device is not in the catalog."""
    out = tmp_path / "cal.yaml"
    args = ["profile", "--from-json", str(cpu_raw), "--gpu", "h100", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert load_calibration(out).gpu == "H100-SXM5-80GB"
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
    no_gpu = runner.invoke(app, ["profile", "--from-json", str(cpu_raw), "--json"])
    assert no_gpu.exit_code == 2
    assert "--gpu: the measured device 'cpu' is not in the catalog" in no_gpu.output


def test_profile_cli_rejects_a_file_that_is_not_raw_json(tmp_path: Path) -> None:
    """A YAML or foreign JSON is bad input: one line, exit 2."""
    bad = tmp_path / "x.json"
    bad.write_text('{"format": "something-else"}')
    res = runner.invoke(app, ["profile", "--from-json", str(bad), "--json"])
    assert res.exit_code == 2
    assert "format: expected 'shardwise-profile-raw/1', got 'something-else'" in res.output


def test_compare_uses_the_clusters_calibration_reference(tmp_path: Path) -> None:
    """A cluster file with `calibration: cal.yaml` (relative to it) calibrates the comparison."""
    cal = Calibration(gpu="H100-SXM5-80GB", gemm_efficiency=0.5)
    (tmp_path / "cal.yaml").write_text(calibration_yaml(cal))
    cluster = (ROOT / "instances/h100x2-nvlink.yaml").read_text() + "calibration: cal.yaml\n"
    (tmp_path / "c.yaml").write_text(cluster)
    raw = _synthetic_raw()
    result = compare(raw, cluster=str(tmp_path / "c.yaml"))
    assert result["calibration"]["gemm_efficiency"] == 0.5
    assert "calibrated column: calibration from cluster h100x2-nvlink" in result["notes"]
    # Without the reference, the raw JSON's own profile calibrates (gemm 0.8 from 791.2 TF/s).
    own = compare(raw)
    assert own["calibration"]["gemm_efficiency"] == pytest.approx(0.8)
