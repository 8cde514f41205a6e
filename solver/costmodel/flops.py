"""Whole-step FLOP counts in the published conventions (for MFU/HFU and benchmarks)."""

from __future__ import annotations

from ..specs import Model

__all__ = ["model_flops_per_step", "narayanan_eq3_flops"]


def narayanan_eq3_flops(global_batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """96 B s l h^2 (1 + s / (6h) + V / (16 l h)): FLOPs per iteration *including* the
    full-recompute forward (Narayanan et al. 2021, Sec. 5.1 eq. 3)."""
    b, s, n, h, v = float(global_batch), float(seq), float(layers), float(hidden), float(vocab)
    return 96.0 * b * s * n * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * n * h))


def model_flops_per_step(model: Model, global_batch: int, seq: int) -> float:
    """Model FLOPs per step (no recompute), 3 x forward: Korthikanti et al. 2022 eq. 7
    72 B L s h^2 (1 + s/(6h) + V/(12 h L)) for GPT, generalised via the block's forward
    operator FLOPs (GQA, SwiGLU, MoE active experts)."""
    from .compute import block_forward_ops
    from .stack import MODERN

    # Model FLOPs do not depend on the kernels (the full score square either way).
    ops = block_forward_ops(
        model, tp=1, micro_batch=1, seq=seq, sequence_parallel=False, precision="bf16", stack=MODERN
    )
    per_seq_block = sum(o.counted_flops for o in ops)
    head = 2.0 * seq * model.hidden_size * model.vocab_size
    return 3.0 * global_batch * (model.num_layers * per_seq_block + head)
