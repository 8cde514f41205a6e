"""Parameter counts of a decoder-only transformer.

Conventions (documented here once, used everywhere):

* GPT-style models (``mlp == 'gelu'``) have biases on every linear layer and LayerNorm
  (weight + bias = 2h); Llama-style models (``mlp == 'swiglu'``) have no biases and RMSNorm
  (weight only = h).  With these, one GPT block has 12h^2 + 13h parameters, exactly the
  per-layer term of Narayanan et al. 2021 eq. 2: P = 12 l h^2 (1 + 13/(12h) + (V+s)/(12lh)).
* The LM head weight (V x h) is counted by :func:`head_params` always: when embeddings are tied
  but the head lives on a different pipeline stage than the embedding, Megatron-LM keeps a
  second copy there (and all-reduces the two gradients), so that stage really stores it.
  :func:`total_params` counts a tied matrix once (the eq. 2 convention); :func:`stage_params`
  counts it once when embedding and head share a stage.
* eq. 2 omits the final norm (2h); we include it in :func:`head_params`.  It changes the
  total by < 1e-7 relative.
"""

from __future__ import annotations

from ..specs import Model

__all__ = [
    "block_params",
    "block_params_per_gpu",
    "dense_block_params",
    "embedding_params",
    "has_bias",
    "head_params",
    "kv_heads_per_gpu",
    "norm_params",
    "stage_params",
    "stage_params_per_gpu",
    "total_params",
]


def has_bias(model: Model) -> bool:
    """GPT-style (GeLU) models carry biases and LayerNorm; Llama-style (SwiGLU) do not."""
    return model.mlp == "gelu"


def norm_params(model: Model) -> float:
    """One LayerNorm (weight + bias = 2h) or RMSNorm (weight = h)."""
    return 2.0 * model.hidden_size if has_bias(model) else float(model.hidden_size)


def _attention_params(model: Model) -> float:
    h = model.hidden_size
    q = model.num_attention_heads * model.kv_channels
    kv = model.num_kv_heads * model.kv_channels
    weights = h * q + 2 * h * kv + q * h  # Q, K, V projections and output projection
    bias = (q + 2 * kv + h) if has_bias(model) else 0
    return float(weights + bias)


def _mlp_matrices(model: Model) -> int:
    """GeLU MLP: up + down (2 matrices); SwiGLU: gate + up + down (3)."""
    return 2 if model.mlp == "gelu" else 3


def _expert_params(model: Model, ffn: int) -> float:
    h = model.hidden_size
    weights = _mlp_matrices(model) * h * ffn
    bias = ((_mlp_matrices(model) - 1) * ffn + h) if has_bias(model) else 0
    return float(weights + bias)


def block_params(model: Model) -> float:
    """Parameters of one transformer block (MoE: router and *all* experts; norms; biases).

    GPT (MHA, 4h GeLU, biases): 12h^2 + 13h (Narayanan et al. 2021, eq. 2 per-layer term).
    """
    attn = _attention_params(model)
    norms = 2.0 * norm_params(model)
    if model.num_experts is not None:
        ffn = model.moe_ffn_hidden_size or model.ffn_hidden_size
        router = float(model.hidden_size * model.num_experts)
        return attn + norms + router + model.num_experts * _expert_params(model, ffn)
    return attn + norms + _expert_params(model, model.ffn_hidden_size)


def dense_block_params(model: Model) -> float:
    """Parameters one token touches in a block (MoE: router + ``experts_per_token`` experts)."""
    if model.num_experts is None or model.experts_per_token is None:
        return block_params(model)
    ffn = model.moe_ffn_hidden_size or model.ffn_hidden_size
    return (
        _attention_params(model)
        + 2.0 * norm_params(model)
        + float(model.hidden_size * model.num_experts)
        + model.experts_per_token * _expert_params(model, ffn)
    )


def embedding_params(model: Model, sequence_length: int) -> float:
    """Token embedding V x h, plus the learned position table s x h if the model has one."""
    if model.vocab_size == 0:
        return 0.0
    pos = sequence_length * model.hidden_size if model.learned_position_embeddings else 0
    return float(model.vocab_size * model.hidden_size + pos)


def head_params(model: Model) -> float:
    """Final norm + LM head (V x h).  The head weight counts even when tied (see module doc)."""
    if model.vocab_size == 0:
        return 0.0
    return norm_params(model) + float(model.vocab_size * model.hidden_size)


def total_params(model: Model, sequence_length: int) -> float:
    """All parameters, a tied embedding counted once (Narayanan et al. 2021 eq. 2 convention)."""
    tied = model.vocab_size * model.hidden_size if model.tied_embeddings else 0
    return (
        model.num_layers * block_params(model)
        + embedding_params(model, sequence_length)
        + head_params(model)
        - tied
    )


def stage_params(
    model: Model, num_blocks: int, *, first: bool, last: bool, sequence_length: int
) -> float:
    """Parameters stored by one pipeline stage (not yet divided by TP).

    ``first`` adds the embedding, ``last`` the final norm and LM head; a tied embedding on a
    stage that is both first and last is stored once.
    """
    p = num_blocks * block_params(model)
    if first:
        p += embedding_params(model, sequence_length)
    if last:
        p += head_params(model)
    if first and last and model.tied_embeddings:
        p -= model.vocab_size * model.hidden_size
    return p


def kv_heads_per_gpu(model: Model, tp: int) -> float:
    """KV heads held by one GPU of a TP group.

    kv/tp when tp <= kv_heads (Megatron-LM shards K/V heads); one head (replicated tp/kv times)
    when tp > kv_heads, as Megatron-LM and vLLM do for GQA models (requires tp % kv == 0).
    """
    kv = model.num_kv_heads
    return kv / tp if tp <= kv else 1.0


def block_params_per_gpu(model: Model, tp: int) -> float:
    """Parameters of one block stored on one GPU of a TP group (Megatron-LM sharding).

    Column/row-parallel weights (Q, output projection, MLP / expert matrices) and their
    column-parallel biases divide by ``tp``; K/V projections divide by ``tp`` only down to one
    head per GPU (replicated when tp > kv_heads); norms, row-parallel biases and the MoE
    router are replicated on every TP rank.
    """
    h, d = model.hidden_size, model.kv_channels
    q = model.num_attention_heads * d
    kv_local = kv_heads_per_gpu(model, tp) * d
    bias = has_bias(model)
    attn = 2 * h * q / tp + 2 * h * kv_local
    if bias:
        attn += q / tp + 2 * kv_local + h
    n_mat = _mlp_matrices(model)

    def expert(ffn: int) -> float:
        e = n_mat * h * ffn / tp
        if bias:
            e += (n_mat - 1) * ffn / tp + h
        return e

    if model.num_experts is not None:
        ffn = model.moe_ffn_hidden_size or model.ffn_hidden_size
        mlp = model.num_experts * expert(ffn) + h * model.num_experts
    else:
        mlp = expert(model.ffn_hidden_size)
    return attn + mlp + 2.0 * norm_params(model)


def stage_params_per_gpu(
    model: Model, num_blocks: int, *, first: bool, last: bool, sequence_length: int, tp: int
) -> float:
    """Parameters stored on one GPU of a stage's TP group.

    Blocks per :func:`block_params_per_gpu`; the word embedding and LM head are vocab-parallel
    (/tp); the learned position table and the final norm are replicated.
    """
    p = num_blocks * block_params_per_gpu(model, tp)
    vh = float(model.vocab_size * model.hidden_size)
    if model.vocab_size == 0:
        return p
    if first:
        p += vh / tp + (embedding_params(model, sequence_length) - vh)
    if last:
        p += norm_params(model) + (0.0 if (first and model.tied_embeddings) else vh / tp)
    return p
