"""What :mod:`solver.profile.serving` measures: the layer shapes, the grids, the datasheet.

The Llama-3 layer shards of the GEMM sweep and of the step and prefill decoders, the token,
batch and context grids of every section, and the H100 datasheet figures that the
``*_vs_datasheet`` ratios divide by.  Imports only the standard library (the GPU machine has
only torch and numpy, and the CLI imports the serving profile without torch).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATTN_BATCH",
    "ATTN_CONTEXT",
    "ATTN_MAX_KV_BYTES",
    "DATASHEET",
    "GEMM_M",
    "LLAMA3_70B",
    "LLAMA3_8B",
    "PREFILL_TOKENS",
    "STEP_BATCH",
    "STEP_CONTEXT",
    "STEP_LAYERS",
    "TINY",
    "LayerShape",
    "gemm_shapes",
    "tp_shard",
]

#: H100 SXM5 80GB datasheet figures (NVIDIA H100 Tensor Core GPU datasheet, 2023: HBM3
#: 3.35 TB/s; dense BF16 989.4 and FP8 1978.9 TFLOP/s without sparsity).  Only for the
#: ``*_vs_datasheet`` ratios; the ``*_vs_measured`` ratios divide by ``ceilings``.
DATASHEET = {"hbm_Bps": 3.35e12, "bf16_flops": 989.4e12, "fp8_flops": 1978.9e12}

#: Token counts of the GEMM sweep (issue #16 item 1).
GEMM_M = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
#: Decode attention grid: batch x context (issue #16 item 1).
ATTN_BATCH = (1, 8, 32, 128)
ATTN_CONTEXT = (512, 2048, 8192, 32768)
#: Largest K + V cache one attention case may allocate (a whole H100 holds 80 GB).
ATTN_MAX_KV_BYTES = 20e9
#: Step-overhead grid: decoder layers x batch, static KV cache length.
STEP_LAYERS = (4, 8)
STEP_BATCH = (1, 8, 32, 64, 128)
STEP_CONTEXT = 1024
#: Prefill token counts (batch 1).
PREFILL_TOKENS = (128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class LayerShape:
    """One decoder layer's shard: Llama-3 shapes, heads and FFN divided by ``tp``.

    Sources: ``models/llama3-8b.yaml`` and ``models/llama3-70b.yaml`` (Llama 3 herd paper,
    arXiv:2407.21783, Table 3); ``tests/test_profile_serving.py`` checks they agree.
    """

    name: str
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    tp: int = 1

    @property
    def q_heads(self) -> int:
        return self.heads // self.tp

    @property
    def kv_local(self) -> int:
        return max(1, self.kv_heads // self.tp)

    @property
    def ffn_local(self) -> int:
        return self.ffn // self.tp

    def gemms(self) -> dict[str, tuple[int, int]]:
        """``name: (N, K)`` of ``x[M, K] @ W[N, K]^T``: QKV and gate_up split N (column
        parallel), O and down split K (row parallel), Megatron-style."""
        d = self.head_dim
        return {
            "qkv": ((self.q_heads + 2 * self.kv_local) * d, self.hidden),
            "o": (self.hidden, self.q_heads * d),
            "gate_up": (2 * self.ffn_local, self.hidden),
            "down": (self.hidden, self.ffn_local),
        }


LLAMA3_8B = LayerShape("llama3-8b", 4096, 14336, 32, 8, 128)
LLAMA3_70B = LayerShape("llama3-70b", 8192, 28672, 64, 8, 128)
#: A shape small enough for a CPU dry run (``quick``).
TINY = LayerShape("tiny", 256, 512, 8, 2, 32)


def gemm_shapes(quick: bool = False) -> list[tuple[LayerShape, str, int, int]]:
    """``(layer, gemm name, N, K)`` of the sweep: 8B at TP 1, 70B at TP 1/2/4/8."""
    layers = [TINY] if quick else [LLAMA3_8B] + [tp_shard(LLAMA3_70B, t) for t in (1, 2, 4, 8)]
    return [(ly, g, n, k) for ly in layers for g, (n, k) in ly.gemms().items()]


def tp_shard(shape: LayerShape, tp: int) -> LayerShape:
    """``shape`` split ``tp`` ways (heads and FFN divided by ``tp``)."""
    return LayerShape(
        shape.name, shape.hidden, shape.ffn, shape.heads, shape.kv_heads, shape.head_dim, tp
    )
