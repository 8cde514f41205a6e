"""The model spec: :class:`Model`, a decoder-only transformer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import _INT, MAX_VOCAB, Experts, FfnWidth, Flag, Heads, Layers, Width, _Spec


class Model(_Spec):
    """A decoder-only transformer (GPT / Llama / Mixtral style)."""

    name: str = Field(description="Model name, e.g. 'llama3-70b'.")
    num_layers: Layers = Field(description="Number of transformer blocks.")
    hidden_size: Width = Field(description="Model (residual stream) width h.")
    ffn_hidden_size: FfnWidth = Field(
        description="MLP inner width (4h for GPT GeLU; ~8h/3 rounded for SwiGLU)."
    )
    num_attention_heads: Heads = Field(description="Query heads a.")
    num_kv_heads: Heads = Field(description="Key/value heads (= a for MHA, < a for GQA).")
    vocab_size: Annotated[int, _INT, Field(ge=0, le=MAX_VOCAB)] = Field(
        description="Vocabulary size; 0 means a bare block stack with no embedding or head."
    )
    mlp: Literal["gelu", "swiglu"] = Field(
        description="MLP kind: 2-matrix GeLU or 3-matrix SwiGLU."
    )
    tied_embeddings: Flag = Field(
        default=False, description="Input embedding and LM head share one matrix."
    )
    head_dim: Width | None = Field(
        default=None, description="Per-head width; default hidden_size / num_attention_heads."
    )
    learned_position_embeddings: Flag = Field(
        default=False,
        description="GPT-style learned position embedding table (sequence_length x h) on stage 0.",
    )
    num_experts: Experts | None = Field(default=None, description="MoE: experts per layer.")
    experts_per_token: Experts | None = Field(default=None, description="MoE: top-k routing.")
    moe_ffn_hidden_size: FfnWidth | None = Field(
        default=None, description="MoE: inner width of one expert (default ffn_hidden_size)."
    )

    @model_validator(mode="after")
    def _check(self) -> Model:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads: must be divisible by num_kv_heads={self.num_kv_heads}, "
                f"got {self.num_attention_heads}"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size: must be divisible by num_attention_heads={self.num_attention_heads} "
                f"(or give head_dim), got {self.hidden_size}"
            )
        moe = (self.num_experts, self.experts_per_token)
        if (moe[0] is None) != (moe[1] is None):
            raise ValueError(
                "num_experts: num_experts and experts_per_token must be given together, "
                f"got num_experts={moe[0]}, experts_per_token={moe[1]}"
            )
        if self.moe_ffn_hidden_size is not None and self.num_experts is None:
            raise ValueError(
                "moe_ffn_hidden_size: only meaningful with num_experts and experts_per_token, "
                f"got moe_ffn_hidden_size={self.moe_ffn_hidden_size} without num_experts"
            )
        if self.num_experts is not None and self.experts_per_token is not None:
            if self.experts_per_token > self.num_experts:
                raise ValueError(
                    f"experts_per_token: must be <= num_experts={self.num_experts}, "
                    f"got {self.experts_per_token}"
                )
        return self

    @property
    def kv_channels(self) -> int:
        """Per-head width."""
        return (
            self.head_dim
            if self.head_dim is not None
            else self.hidden_size // self.num_attention_heads
        )

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None
