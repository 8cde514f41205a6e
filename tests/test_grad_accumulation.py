"""Un-fused gradient accumulation (``grad_accumulation_bytes_per_param``).

Megatron-LM adds each micro-batch's weight gradient into the accumulated one inside the
weight-gradient GEMM (``gradient_accumulation_fusion``), the cost model's default: no term.  A
stack without it (autograd: ``.grad += new``) streams 3 x 2 bytes per parameter per
micro-batch in bf16.  Checked here: the term is exactly params x bytes / HBM rate on the
parameters each GPU holds (TP shards, replicated norms and positions), it is zero by default,
calibrations set it from the runner's fusion mode, and the planner stays consistent with the
evaluator when a cluster's calibration carries it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from solver import load_cluster, load_model, load_workload
from solver.catalog import resolve_gpu
from solver.costmodel import block_time
from solver.costmodel.comm import LinkTier
from solver.costmodel.compute import embedding_time, grad_accumulation_time, head_time
from solver.costmodel.params import block_params_per_gpu
from solver.costmodel.stack import MODERN
from solver.evaluate.calibration import gpu_with_calibration
from solver.planner import plan
from solver.profile.calibrate import _grad_accumulation_bytes, calibration_yaml, model_spec
from solver.result import Status
from solver.specs import Calibration

H100 = resolve_gpu("H100-SXM5-80GB")
EAGER = H100.model_copy(update={"grad_accumulation_bytes_per_param": 6.0})
LOCAL = LinkTier(1.0, 0.0, "local")
MODEL = model_spec(
    {"hidden": 4096, "layers": 8, "heads": 32, "ffn": 16384, "vocab_size": 50304, "seq_len": 2048}
)


def _rate() -> float:
    return H100.memory_bandwidth_GBps * 1e9 * H100.memory_efficiency


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_block_backward_pays_six_bytes_per_local_parameter(tp: int) -> None:
    kw: dict[str, Any] = dict(
        tp=tp,
        micro_batch=1,
        seq=2048,
        recompute="none",
        sequence_parallel=False,
        precision="bf16",
        tp_link=LOCAL,
        stack=MODERN,
    )
    fused, eager = block_time(MODEL, H100, **kw), block_time(MODEL, EAGER, **kw)
    assert eager.fwd_s == fused.fwd_s
    extra = eager.bwd_s - fused.bwd_s
    assert extra == pytest.approx(block_params_per_gpu(MODEL, tp) * 6.0 / _rate(), rel=1e-12)
    # h4096: 12 h^2 + 13 h parameters per block: 1.2 GB, ~0.4 ms of HBM traffic on one H100.
    assert 3e-4 < extra * tp < 5e-4


def test_embedding_and_head_shard_the_vocabulary_only() -> None:
    h, v, s = 4096, 50304, 2048
    kw: dict[str, Any] = dict(micro_batch=1, seq=s, precision="bf16", tp_link=LOCAL)
    for tp in (1, 2):
        emb = embedding_time(MODEL, EAGER, tp=tp, **kw).bwd_s
        emb -= embedding_time(MODEL, H100, tp=tp, **kw).bwd_s
        assert emb == pytest.approx((v * h / tp + s * h) * 6.0 / _rate(), rel=1e-12)
        hkw = dict(kw, stack=MODERN)
        head = (
            head_time(MODEL, EAGER, tp=tp, **hkw).bwd_s
            - head_time(MODEL, H100, tp=tp, **hkw).bwd_s
        )
        assert head == pytest.approx((v * h / tp + 2 * h) * 6.0 / _rate(), rel=1e-12)


def test_default_is_fused_and_costs_nothing() -> None:
    assert H100.grad_accumulation_bytes_per_param is None
    assert grad_accumulation_time(1e9, H100) == 0.0


@pytest.mark.parametrize(
    ("modes", "dtype", "want"),
    [
        ({"none"}, "bf16", 6.0),
        ({"compile"}, "bf16", 6.0),
        ({None}, "bf16", 6.0),  # raws before the fusion modes: eager
        ({"none"}, "fp32", 12.0),
        ({"megatron"}, "bf16", 0.0),
        ({"none", "megatron"}, "bf16", 0.0),
    ],
)
def test_calibration_takes_the_runner_mode(modes: set[str | None], dtype: str, want: float) -> None:
    blocks = [
        {"shape": {"hidden": 64} | ({} if m is None else {"fusion": m}), "case": "train"}
        for m in modes
    ]
    assert _grad_accumulation_bytes(blocks, dtype) == want


def test_planner_is_verified_on_a_cluster_whose_calibration_accumulates_unfused(
    tmp_path: Path,
) -> None:
    cal = Calibration(gpu="H100-SXM5-80GB", grad_accumulation_bytes_per_param=6.0)
    path = tmp_path / "eager.yaml"
    path.write_text(calibration_yaml(cal))
    base = load_cluster("h100x2-nvlink")
    assert gpu_with_calibration(base.pools[0], cal).grad_accumulation_bytes_per_param == 6.0
    m, w = load_model("gpt-1.7b"), load_workload("train-gpt-s2048")
    res = plan(m, base.model_copy(update={"calibration": str(path)}), w, time_limit_s=5,
               compare_baseline=False)  # fmt: skip
    assert res.status == Status.OPTIMAL, res.message  # the evaluator agrees with the CP
    ref = plan(m, base, w, time_limit_s=5, compare_baseline=False)
    assert res.objective is not None and ref.objective is not None
    assert res.objective < ref.objective  # tokens/s: the adds cost time
