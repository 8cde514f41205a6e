"""The GPU catalog (solver/catalog/gpus.yaml): every entry loads, is sourced and matches the
published figures in ../shared/data/published-runs.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from solver.catalog import catalog, gpu_names, resolve_gpu

CATALOG_YAML = Path(__file__).resolve().parent.parent / "solver" / "catalog" / "gpus.yaml"
PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "data" / "published-runs.json"

EXPECTED = [
    "V100-SXM2-32GB",
    "A100-SXM4-40GB",
    "A100-SXM4-80GB",
    "A100-PCIe-80GB",
    "H100-SXM5-80GB",
    "H100-PCIe-80GB",
    "H200-SXM-141GB",
    "B200-SXM-180GB",
    "GB200",
    "L40S",
    "L4",
    "MI250X",
    "MI300X",
]

# catalog name -> (published-runs.json hardware key, scale). MI250X is catalogued per GCD
# (one PyTorch device), i.e. half an MI250X package.
PUBLISHED_KEY: dict[str, tuple[str, float]] = {
    **{n: (n, 1.0) for n in EXPECTED},
    "B200-SXM-180GB": ("B200-HGX-DGX", 1.0),
    "GB200": ("GB200-NVL72 (per GPU)", 1.0),
    "MI250X": ("MI250X", 0.5),
}


def test_every_entry_loads_and_has_a_source() -> None:
    """Every gpus.yaml entry validates as a GPUSpec and cites published-runs.json."""
    raw = yaml.safe_load(CATALOG_YAML.read_text())["gpus"]
    assert [e["name"] for e in raw] == gpu_names()
    for name in gpu_names():
        g = resolve_gpu(name)
        assert g.source.strip(), name
        assert "published-runs.json" in g.source, name
        assert 0 < g.gemm_efficiency <= 1 and 0 < g.memory_efficiency <= 1
        assert g.memory_GB > 0 and g.bf16_tflops > 0 and g.memory_bandwidth_GBps > 0
        if g.fp8_tflops is not None:
            assert g.fp8_tflops > g.bf16_tflops, name


def test_catalog_has_the_required_gpus() -> None:
    """The catalog holds exactly the GPUs the project promises, in a stable order."""
    assert gpu_names() == EXPECTED


def test_aliases_and_case_insensitive_lookup() -> None:
    """Aliases and any letter case resolve to the same entry."""
    assert resolve_gpu("B200").name == "B200-SXM-180GB"
    assert resolve_gpu("GB200-NVL72").name == "GB200"
    assert resolve_gpu("h100").name == "H100-SXM5-80GB"
    assert resolve_gpu("a100").name == "A100-SXM4-80GB"
    assert resolve_gpu("l40s").name == "L40S"
    assert resolve_gpu("mi300x").name == "MI300X"
    names = {g.name for g in catalog().values()}
    assert names == set(EXPECTED)


def test_unknown_gpu_suggests_a_close_name() -> None:
    """An unknown name raises KeyError listing the catalog and the nearest name."""
    with pytest.raises(KeyError) as info:
        resolve_gpu("H100-SXM-80GB")
    msg = info.value.args[0]
    assert "did you mean 'H100-SXM5-80GB'" in msg and "MI300X" in msg


def test_v100_has_no_bf16() -> None:
    """V100 is fp16-only: supports_bf16 false, bf16_tflops carries the fp16 figure."""
    v = resolve_gpu("V100-SXM2-32GB")
    assert v.supports_bf16 is False
    assert v.fp16_tflops == v.bf16_tflops == 125
    assert all(resolve_gpu(n).supports_bf16 for n in EXPECTED if n != "V100-SXM2-32GB")


def _published() -> dict[str, Any]:
    if not PUBLISHED.is_file():
        pytest.skip(f"{PUBLISHED} not available")
    hw: dict[str, Any] = json.loads(PUBLISHED.read_text())["hardware"]
    return hw


#: Capacities the catalog takes from a measurement instead of the datasheet figure: the
#: H100 SXM5 "80GB" is 80 GiB, of which the driver exposes 85.02e9 bytes (measured; see the
#: catalog comment); the H200's "141GB" shows as 143,771 MiB in nvidia-smi (device library
#: KINDS.md), less the driver's reserve as on the H100: 150.2e9 bytes.
MEASURED_MEMORY_GB = {"H100-SXM5-80GB": 85.0, "H200-SXM-141GB": 150.2}


@pytest.mark.parametrize("name", EXPECTED)
def test_figures_match_published_runs(name: str) -> None:
    """Memory, dense peaks and HBM bandwidth equal published-runs.json (x scale); memory
    is the measured usable capacity where MEASURED_MEMORY_GB names one (>= the datasheet's)."""
    key, scale = PUBLISHED_KEY[name]
    pub = _published()[key]
    g = resolve_gpu(name)
    if name in MEASURED_MEMORY_GB:
        assert g.memory_GB == MEASURED_MEMORY_GB[name] >= pub["memory_gb"] * scale
    else:
        assert g.memory_GB == pytest.approx(pub["memory_gb"] * scale)
    peak = pub.get("dense_bf16_tflops") or pub["dense_fp16_tensor_tflops"]
    assert g.bf16_tflops == pytest.approx(peak * scale)
    assert g.memory_bandwidth_GBps == pytest.approx(pub["mem_bw_tbps"] * 1000 * scale)
    assert g.fp8_tflops == (
        pytest.approx(pub["dense_fp8_tflops"] * scale) if "dense_fp8_tflops" in pub else None
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_gemm_efficiency_rule(name: str) -> None:
    """gemm_efficiency = measured BF16 MAMF / peak (to 0.01) where published, else 0.75."""
    key, scale = PUBLISHED_KEY[name]
    pub = _published()[key]
    g = resolve_gpu(name)
    mamf = pub.get("measured_mamf_bf16_tflops")
    if mamf is None:
        assert g.gemm_efficiency == 0.75
    else:
        assert g.gemm_efficiency == pytest.approx(mamf * scale / g.bf16_tflops, abs=0.005)
    if "fitted" in g.source.lower() and "memory_efficiency" in g.source:
        # A global per-GPU fit (benchmarks/published_runs.py --fit), recorded in the source.
        assert 0.5 <= g.memory_efficiency <= 1.0
    else:
        assert g.memory_efficiency == 0.8
