"""The serving memory ledger (costmodel/serving_memory.py, evaluate/ledger.serving_ledger_row):
weights + engine overhead + one forward's working set under gpu_memory_utilization x capacity,
the rest a paged KV pool; the maximum concurrent sequences it holds; no training terms."""

from __future__ import annotations

import math
from typing import Any

import pytest
from builders import A100, cluster, gpt, gpu, infer, pool

from solver import SpecError, load_workload
from solver.construction import build_stages, split_layers
from solver.costmodel import block_activation_bytes
from solver.costmodel import constants as C
from solver.costmodel.serving_memory import (
    engine_overhead_GB,
    kv_block_bytes,
    kv_blocks_per_sequence,
    kv_pool_blocks,
    kv_pool_bytes,
    max_concurrent_sequences,
    serving_working_set_bytes,
)
from solver.costmodel.stack import stack_of
from solver.cpsat.plan_inference import solve_inference
from solver.evaluate import evaluate
from solver.result import Status
from solver.specs import Cluster, InferenceWorkload, Model, Plan, ReplicaGroup

#: One block of width 64, 4 heads of 16 (MHA), GeLU FFN 256, no vocabulary.
TINY = gpt(1, hidden=64, heads=4, vocab=0)


def _plan(c: Cluster, model: Model, tp: int, batch: int, pp: int = 1) -> Plan:
    layers = split_layers(model.num_layers, pp)
    stages = build_stages(c, [(1, [(c.pools[0].name, tp, n) for n in layers])])[0]
    return Plan(
        kind="inference",
        replica_groups=[ReplicaGroup(count=1, batch_size=batch, stages=stages)],
    )


def _row(model: Model, c: Cluster, wl: InferenceWorkload, batch: int, tp: int = 1) -> Any:
    rep = evaluate(model, c, wl, _plan(c, model, tp, batch))
    return rep, rep.memory_ledger[0]


# --- pure functions, hand-derived ------------------------------------------------------------
def test_kv_block_of_one_layer() -> None:
    """1 layer, 4 KV heads of 16, 16-bit: 2 x 4 x 16 x 2 = 256 B a token, 16 x 256 = 4096 B a block."""
    assert kv_block_bytes(TINY, "bf16", tp=1, layers=1) == 4096.0
    # fp8 halves it; TP=2 holds 2 of the 4 heads.
    assert kv_block_bytes(TINY, "fp8", tp=1, layers=1) == 2048.0
    assert kv_block_bytes(TINY, "bf16", tp=2, layers=1) == 2048.0


def test_block_rounding() -> None:
    """A sequence holds whole 16-token blocks: 32 tokens -> 2, 33 -> 3, 1 -> 1."""
    assert C.KV_BLOCK_SIZE_TOKENS == 16
    assert kv_blocks_per_sequence(32) == 2
    assert kv_blocks_per_sequence(33) == 3
    assert kv_blocks_per_sequence(1) == 1


def test_kv_pool_and_max_concurrency_by_hand() -> None:
    """0.5 x 1 GB - 0.25 GB overhead - 100 MB weights - 50 MB working set = 100 MB pool =
    floor(1e8 / 4096) = 24414 blocks = 12207 sequences of 32 tokens, 8138 of 33 tokens."""
    pool_b = kv_pool_bytes(
        capacity_GB=1.0, utilization=0.5, weights=1e8, working_set=5e7, overhead_GB=0.25
    )
    assert pool_b == pytest.approx(1e8)
    blocks = kv_pool_blocks(pool_b, 4096.0)
    assert blocks == 24414
    assert max_concurrent_sequences(blocks, 32) == 12207.0
    assert max_concurrent_sequences(blocks, 33) == 8138.0
    # Nothing left: no blocks, no concurrency.
    assert kv_pool_blocks(-1.0, 4096.0) == 0


def test_working_set_of_one_layer_by_hand() -> None:
    """TINY at T tokens, tp 1: attention 3h + (a + 2kv) d + a d = 192 + 192 + 64 = 448, GeLU MLP
    3h + 2f = 192 + 512 = 704 per token; the larger, x 2 bytes: 1408 T."""
    assert serving_working_set_bytes(TINY, tp=1, tokens=20, sequences=1, last=True) == 1408 * 20
    # A vocabulary adds the last stage's fp32 logits of each sequence's last token.
    m = gpt(1, hidden=64, heads=4, vocab=1000)
    last = serving_working_set_bytes(m, tp=1, tokens=20, sequences=3, last=True)
    assert last == 1408 * 20 + 4 * 3 * 1000
    assert serving_working_set_bytes(m, tp=1, tokens=20, sequences=3, last=False) == 1408 * 20


def test_engine_overhead_parts() -> None:
    """Context + cuBLAS + CUDA graphs, + 0.27 GB of NCCL buffers per communicator."""
    base = C.CUDA_CONTEXT_GB + C.CUBLAS_WORKSPACE_GB + C.CUDA_GRAPH_GB
    assert engine_overhead_GB(communicators=0) == pytest.approx(base)
    assert engine_overhead_GB(communicators=2) == pytest.approx(base + 2 * C.NCCL_BUFFERS_GB / 3)


# --- the evaluator's ledger -------------------------------------------------------------------
def _tiny_cluster(memory_GB: float) -> Cluster:
    return cluster(pool("g", gpu(A100, memory_GB), gpn=2))


def test_ledger_row_of_a_tiny_gpu_by_hand() -> None:
    """1-layer model on a 1.3 GB GPU, utilization 1: pool = 1.3 GB - overhead - weights - working
    set (20-token prompt: 1408 x 20 B); 32-token sequences take 2 blocks of 4096 B; the row's
    numbers are those, and max concurrency = floor(pool / 4096) / 2."""
    c = _tiny_cluster(1.3)
    wl = infer([4], prompt=20, output=12, gpu_memory_utilization=1.0)
    rep, row = _row(TINY, c, wl, batch=4)
    overhead = C.CUDA_CONTEXT_GB + C.CUBLAS_WORKSPACE_GB + C.CUDA_GRAPH_GB  # tp 1, pp 1
    work = 1408 * 4 * 20  # the whole micro-batch's prompts in one forward
    pool_b = 1.3e9 - overhead * 1e9 - row["weights_GB"] * 1e9 - work
    assert row["overhead_GB"] == pytest.approx(overhead)
    assert row["activations_GB"] * 1e9 == pytest.approx(work)
    assert row["kv_pool_GB"] * 1e9 == pytest.approx(pool_b)
    assert row["kv_blocks"] == math.floor(pool_b / 4096)
    assert row["kv_blocks_per_sequence"] == 2
    assert row["kv_cache_GB"] * 1e9 == pytest.approx(4 * 2 * 4096)
    assert row["max_concurrent_sequences"] == row["kv_blocks"] / 2
    assert row["max_model_len"] == 32
    assert rep.groups[0]["max_concurrent_sequences"] == row["max_concurrent_sequences"]
    assert rep.details["max_concurrent_sequences"] == row["max_concurrent_sequences"]
    assert rep.feasible, rep.violations


def test_batch_fits_iff_the_pool_holds_it() -> None:
    """Feasible at batch = floor(max concurrency), a one-line KV-pool violation one above (a
    fixed 4000-token prefill chunk keeps the working set the same for every batch)."""
    c = _tiny_cluster(1.2)

    def wl(b: int) -> InferenceWorkload:
        return infer(
            [b], prompt=4000, output=96, gpu_memory_utilization=1.0, max_num_batched_tokens=4000
        )

    # 4096-token sequences: 256 blocks = 1 MiB each, so the ~10 MB pool holds a handful.
    _, row = _row(TINY, c, wl(1), batch=1)
    n = math.floor(row["max_concurrent_sequences"])
    assert n >= 2
    fits, _ = _row(TINY, c, wl(n), batch=n)
    over, _ = _row(TINY, c, wl(n + 1), batch=n + 1)
    assert fits.feasible, fits.violations
    assert not over.feasible
    assert any("KV pool" in v and f"< batch {n + 1}" in v for v in over.violations)


def test_utilization_reserve_is_charged() -> None:
    """The same plan fits at utilization 1 and not at a fraction that leaves no KV pool."""
    c = _tiny_cluster(1.3)
    ok, row = _row(TINY, c, infer([1], prompt=20, output=12, gpu_memory_utilization=1.0), 1)
    assert ok.feasible
    low = (row["overhead_GB"] + row["weights_GB"]) / 1.3 * 0.99  # below the fixed part
    bad, _ = _row(TINY, c, infer([1], prompt=20, output=12, gpu_memory_utilization=low), 1)
    assert not bad.feasible
    assert any("no room for a KV cache" in v for v in bad.violations)


def test_no_training_activation_term() -> None:
    """Inference charges one layer's transient working set, whatever the depth: a 1-layer and an
    8-layer model of the same width report the same activations_GB (training stores every
    layer's), below one block's stored training activations x 8; no gradients or optimizer."""
    c = _tiny_cluster(80.0)
    wl = infer([8], prompt=512, output=64)
    rows = [_row(gpt(n, hidden=64, heads=4, vocab=0), c, wl, batch=8)[1] for n in (1, 8)]
    assert rows[0]["activations_GB"] == pytest.approx(rows[1]["activations_GB"])
    stored = 8 * block_activation_bytes(
        gpt(8, hidden=64, heads=4, vocab=0),
        tp=1,
        micro_batch=8,
        seq=512,
        recompute="none",
        sequence_parallel=False,
        stack=stack_of(wl),
    )
    assert rows[1]["activations_GB"] * 1e9 < stored
    assert all(r["grads_GB"] == 0.0 and r["optimizer_GB"] == 0.0 for r in rows)


def test_max_num_batched_tokens_caps_the_working_set() -> None:
    """A 256-token prefill chunk sizes the working set at 256 tokens, not 8 x 512."""
    c = _tiny_cluster(80.0)
    _, whole = _row(TINY, c, infer([8], prompt=512, output=64), batch=8)
    _, chunk = _row(TINY, c, infer([8], prompt=512, output=64, max_num_batched_tokens=256), 8)
    assert whole["forward_tokens"] == 8 * 512 and chunk["forward_tokens"] == 256
    assert chunk["activations_GB"] * 1e9 == pytest.approx(1408 * 256)


# --- the spec field ---------------------------------------------------------------------------
_DOC: dict[str, Any] = {"kind": "inference", "prompt_tokens": 128, "output_tokens": 16}


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, "0.9", True])
def test_gpu_memory_utilization_is_validated(bad: Any) -> None:
    """gpu_memory_utilization outside (0, 1] (or not a number) is a one-line SpecError naming it."""
    with pytest.raises(SpecError) as info:
        load_workload({**_DOC, "gpu_memory_utilization": bad})
    msg = str(info.value)
    assert "gpu_memory_utilization" in msg and "\n" not in msg


def test_gpu_memory_utilization_default_and_bounds() -> None:
    """Default 0.9 (vLLM's); 1 is allowed."""
    wl = load_workload(_DOC)
    assert isinstance(wl, InferenceWorkload)
    assert wl.gpu_memory_utilization == 0.9
    one = load_workload({**_DOC, "gpu_memory_utilization": 1})
    assert isinstance(one, InferenceWorkload) and one.gpu_memory_utilization == 1.0


# --- published-style configurations --------------------------------------------------------------
LLAMA2_70B = Model(
    name="llama2-70b",
    num_layers=80,
    hidden_size=8192,
    ffn_hidden_size=28672,
    num_attention_heads=64,
    num_kv_heads=8,
    vocab_size=32000,
    mlp="swiglu",
    tied_embeddings=False,
)


def test_published_style_config_fits() -> None:
    """TensorRT-LLM's Llama-2-70B TP4 batch 1024 (128 in, 128 out) on A100-80GB fits under vLLM's
    0.9 reserve: ~34.5 GB weights, ~21.5 GB KV, a 131k-token working set of ~10 GB."""
    c = cluster(pool("a100", A100, gpn=8))
    wl = infer([1024], prompt=128, output=128, precision="fp16")
    rep, row = _row(LLAMA2_70B, c, wl, batch=1024, tp=4)
    assert rep.feasible, rep.violations
    assert row["max_concurrent_sequences"] >= 1024
    assert row["total_GB"] <= 0.9 * 80
    assert 30 < row["weights_GB"] < 36 and 20 < row["kv_cache_GB"] < 23


def test_planner_memory_check_reads_the_ledger() -> None:
    """The inference planner rejects shapes as the evaluator does: with too small a utilization
    nothing fits, INFEASIBLE with a memory message naming gpu_memory_utilization."""
    c = cluster(pool("a100", A100, gpn=8))
    wl = infer([1], prompt=128, output=16, precision="fp16", gpu_memory_utilization=0.05)
    res = solve_inference(LLAMA2_70B, c, wl, time_limit_s=5, workers=1, seed=0)
    assert res.status == Status.INFEASIBLE
    assert "memory:" in res.message and "gpu_memory_utilization 0.05" in res.message
