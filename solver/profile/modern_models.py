"""The hand-written models of :mod:`solver.profile.modern` and their configuration.

:class:`ModelShape` (the shape of a decoder-only model), the plain-torch Llama and GPT blocks
and :class:`DecoderLM` (a Llama, a GPT or a bare stack of blocks), random inputs, the FLOPs of
a training step (:func:`model_flops`, :data:`FLOP_FORMULAS`), and the Hugging Face
cross-check: ``transformers.LlamaForCausalLM`` of the same shape, loaded with the same weights.
Imports only the standard library and torch (transformers lazily, where it is installed).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "FLOP_FORMULAS",
    "IGNORE_INDEX",
    "INIT_STD",
    "DecoderLM",
    "GPTBlock",
    "KVList",
    "LlamaBlock",
    "ModelShape",
    "RMSNorm",
    "apply_rope",
    "build_hf_llama",
    "causal_attention",
    "copy_weights_to_hf",
    "make_inputs",
    "model_flops",
    "n_params",
    "rope_cos_sin",
    "transformers_version",
]

#: Weight initialisation scale (GPT-2 / Llama ``initializer_range``).
INIT_STD = 0.02
#: Label value the loss ignores (Hugging Face's and PyTorch's default).
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelShape:
    """Shape of a decoder-only model.  ``vocab == 0``: a bare stack of blocks (no embedding,
    no head; input a hidden state, loss the mean of the output)."""

    name: str
    arch: str  # "llama" | "gpt"
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    kv_heads: int = 0  # 0: as many as ``heads`` (MHA)
    max_seq: int = 8192
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.arch not in ("llama", "gpt"):
            raise ValueError(f"arch: must be 'llama' or 'gpt', got {self.arch!r}")
        if self.hidden % self.heads:
            raise ValueError(f"heads: must divide hidden={self.hidden}, got {self.heads}")
        if self.heads % self.kv:
            raise ValueError(f"kv_heads: must divide heads={self.heads}, got {self.kv}")
        if self.arch == "gpt" and self.kv != self.heads:
            raise ValueError("gpt: multi-head attention only (kv_heads must equal heads)")

    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def bare(self) -> bool:
        return self.vocab == 0

    def layer_matmul_params(self) -> int:
        """Weights of one block that enter a GEMM (biases and norms excluded)."""
        h, d = self.hidden, self.head_dim
        attn = h * self.heads * d + 2 * h * self.kv * d + self.heads * d * h
        mlp = (3 if self.arch == "llama" else 2) * h * self.ffn
        return attn + mlp

    def matmul_params(self) -> int:
        """Weights that enter a GEMM: the blocks' and the LM head's."""
        return self.layers * self.layer_matmul_params() + self.hidden * self.vocab


class RMSNorm(nn.Module):
    """Llama's RMSNorm, written as Hugging Face's ``LlamaRMSNorm`` (fp32 statistics)."""

    def __init__(self, dim: int, eps: float, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # float32 statistics (float64 stays float64, so tests can compare exactly)
        y = x.to(torch.promote_types(dtype, torch.float32))
        var = y.pow(2).mean(-1, keepdim=True)
        y = y * torch.rsqrt(var + self.eps)
        return self.weight * y.to(dtype)


def rope_cos_sin(
    head_dim: int, seq: int, theta: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables ``[seq, head_dim]`` as Hugging Face computes them (fp32, then cast;
    float64 for a float64 model)."""
    acc = torch.promote_types(dtype, torch.float32)
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).to(acc) / head_dim
    inv_freq = 1.0 / (theta**exponent)
    pos = torch.arange(seq, device=device, dtype=acc)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [b, heads, s, d]`` rotated by position (``cos``, ``sin``: ``[s, d]``)."""
    return x * cos + _rotate_half(x) * sin


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gqa: str = "enable_gqa"
) -> torch.Tensor:
    """Causal SDPA of ``q [b, H, s, d]`` over ``k, v [b, Hkv, s, d]``.

    ``gqa``: ``"enable_gqa"`` passes the grouped K/V to SDPA (what Hugging Face does without a
    mask), ``"repeat"`` repeats each K/V head ``H / Hkv`` times first.
    """
    rep = q.shape[1] // k.shape[1]
    if rep == 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if gqa == "enable_gqa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if gqa != "repeat":
        raise ValueError(f"gqa: must be 'enable_gqa' or 'repeat', got {gqa!r}")
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


KVList = list[tuple[torch.Tensor, torch.Tensor]]


class LlamaBlock(nn.Module):
    """Pre-norm Llama block: RMSNorm, RoPE, GQA attention, SwiGLU MLP, no biases."""

    def __init__(
        self, shape: ModelShape, device: torch.device, dtype: torch.dtype, gqa: str
    ) -> None:
        super().__init__()
        h, d = shape.hidden, shape.head_dim
        self.heads, self.kv, self.head_dim, self.gqa = shape.heads, shape.kv, d, gqa
        kw: dict[str, Any] = {"bias": False, "device": device, "dtype": dtype}
        self.attn_norm = RMSNorm(h, shape.norm_eps, device, dtype)
        self.wq = nn.Linear(h, shape.heads * d, **kw)
        self.wk = nn.Linear(h, shape.kv * d, **kw)
        self.wv = nn.Linear(h, shape.kv * d, **kw)
        self.wo = nn.Linear(shape.heads * d, h, **kw)
        self.mlp_norm = RMSNorm(h, shape.norm_eps, device, dtype)
        self.gate = nn.Linear(h, shape.ffn, **kw)
        self.up = nn.Linear(h, shape.ffn, **kw)
        self.down = nn.Linear(shape.ffn, h, **kw)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVList | None = None
    ) -> torch.Tensor:
        b, s, _ = x.shape
        d = self.head_dim
        y = self.attn_norm(x)
        q = self.wq(y).view(b, s, self.heads, d).transpose(1, 2)
        k = self.wk(y).view(b, s, self.kv, d).transpose(1, 2)
        v = self.wv(y).view(b, s, self.kv, d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            cache.append((k, v))
        o = causal_attention(q, k, v, self.gqa).transpose(1, 2).reshape(b, s, self.heads * d)
        x = x + self.wo(o)
        y = self.mlp_norm(x)
        out: torch.Tensor = x + self.down(F.silu(self.gate(y)) * self.up(y))
        return out


class GPTBlock(nn.Module):
    """Pre-LN GPT block: LayerNorm, biases, fused QKV, MHA, 4h GeLU (tanh) MLP, no dropout."""

    def __init__(self, shape: ModelShape, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        h = shape.hidden
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.heads, self.head_dim = shape.heads, shape.head_dim
        self.ln1 = nn.LayerNorm(h, eps=shape.norm_eps, **kw)
        self.qkv = nn.Linear(h, 3 * h, **kw)
        self.proj = nn.Linear(h, h, **kw)
        self.ln2 = nn.LayerNorm(h, eps=shape.norm_eps, **kw)
        self.fc1 = nn.Linear(h, shape.ffn, **kw)
        self.fc2 = nn.Linear(shape.ffn, h, **kw)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVList | None = None
    ) -> torch.Tensor:
        del cos, sin  # learned positions: no RoPE
        b, s, h = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        if cache is not None:
            cache.append((k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(o.transpose(1, 2).reshape(b, s, h))
        out: torch.Tensor = x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))
        return out


class DecoderLM(nn.Module):
    """A decoder-only LM (or a bare stack of blocks when ``shape.vocab == 0``).

    ``forward(inp)`` is the training loss: ``inp`` is token ids ``[b, s]`` (labels are the ids
    shifted left, as Hugging Face's ``ForCausalLMLoss``), or for a bare stack a hidden state
    ``[b, s, h]`` (loss: the mean of the output).  ``recompute`` checkpoints every block.
    """

    def __init__(
        self,
        shape: ModelShape,
        device: torch.device,
        dtype: torch.dtype = torch.bfloat16,
        gqa: str = "enable_gqa",
    ) -> None:
        super().__init__()
        self.shape = shape
        self.recompute = False
        h = shape.hidden
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed: nn.Embedding | None = None
        self.pos: nn.Embedding | None = None
        self.norm: nn.Module | None = None
        self.head: nn.Linear | None = None
        if not shape.bare:
            self.embed = nn.Embedding(shape.vocab, h, **kw)
            if shape.arch == "gpt":
                self.pos = nn.Embedding(shape.max_seq, h, **kw)
        blocks: list[nn.Module] = []
        for _ in range(shape.layers):
            if shape.arch == "llama":
                blocks.append(LlamaBlock(shape, device, dtype, gqa))
            else:
                blocks.append(GPTBlock(shape, device, dtype))
        self.blocks = nn.ModuleList(blocks)
        if not shape.bare:
            if shape.arch == "llama":
                self.norm = RMSNorm(h, shape.norm_eps, device, dtype)
            else:
                self.norm = nn.LayerNorm(h, eps=shape.norm_eps, **kw)
            self.head = nn.Linear(h, shape.vocab, bias=False, **kw)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Weights ``N(0, 0.02)``, biases 0, norm scales 1 (GPT-2 / Llama initialisation)."""
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                mod.weight.normal_(0.0, INIT_STD)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.Embedding):
                mod.weight.normal_(0.0, INIT_STD)

    def _rope(self, s: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sh = self.shape
        if sh.arch != "llama":
            empty = ref.new_empty(0)
            return empty, empty
        return rope_cos_sin(sh.head_dim, s, sh.rope_theta, ref.device, ref.dtype)

    def hidden_states(self, inp: torch.Tensor, cache: KVList | None = None) -> torch.Tensor:
        """The last block's output (before the final norm)."""
        if self.embed is None:
            x = inp
        else:
            x = self.embed(inp)
            if self.pos is not None:
                x = x + self.pos.weight[: inp.shape[1]]
        cos, sin = self._rope(x.shape[1], x)
        for block in self.blocks:
            if self.recompute and torch.is_grad_enabled() and cache is None:
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache)
        return x

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.hidden_states(inp)
        if self.head is None or self.norm is None:
            return x.mean()
        logits = self.head(self.norm(x))
        # Hugging Face's ForCausalLMLoss: upcast, labels shifted by padding, no logits slice.
        labels = F.pad(inp, (0, 1), value=IGNORE_INDEX)[:, 1:]
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    def prefill(self, ids: torch.Tensor, last_only: bool = True) -> tuple[torch.Tensor, KVList]:
        """Logits (of the last token, or of all) and the per-layer K/V cache."""
        if self.head is None or self.norm is None:
            raise ValueError("prefill: needs a model with embedding and head")
        cache: KVList = []
        x = self.hidden_states(ids, cache)
        if last_only:
            x = x[:, -1:]
        return self.head(self.norm(x)), cache


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_inputs(
    shape: ModelShape, batch: int, seq: int, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> torch.Tensor:
    """Random token ids ``[b, s]``, or a random hidden state ``[b, s, h]`` for a bare stack."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if shape.bare:
        return torch.randn(batch, seq, shape.hidden, generator=gen).to(device=device, dtype=dtype)
    return torch.randint(0, shape.vocab, (batch, seq), generator=gen).to(device)


def model_flops(shape: ModelShape, batch: int, seq: int) -> dict[str, float]:
    """FLOPs of one training step (and its forward), written out (module docstring)."""
    tokens = batch * seq
    matmul_fwd = 2.0 * tokens * shape.matmul_params()
    attn_fwd_full = 4.0 * batch * seq * seq * shape.heads * shape.head_dim * shape.layers
    attn_fwd_causal = attn_fwd_full * (seq + 1) / (2 * seq)
    return {
        "matmul_fwd": matmul_fwd,
        "attention_fwd_full": attn_fwd_full,
        "attention_fwd_causal": attn_fwd_causal,
        "step_model_full_attention": 3.0 * (matmul_fwd + attn_fwd_full),
        "step_model_causal_attention": 3.0 * (matmul_fwd + attn_fwd_causal),
    }


FLOP_FORMULAS = {
    "gemm": "2*m*n*k",
    "matmul_fwd": "2 * tokens * N_matmul (blocks' GEMM weights + LM head; embeddings excluded)",
    "attention_fwd_full": "4 * b * s^2 * heads * head_dim * layers (QK^T and PV, full square)",
    "attention_fwd_causal": "attention_fwd_full * (s+1)/(2s) (what a causal kernel executes)",
    "step_model_full_attention": "3 * (matmul_fwd + attention_fwd_full) (MFU convention)",
    "step_model_causal_attention": "3 * (matmul_fwd + attention_fwd_causal)",
    "sdpa_fwdbwd_model": "3 * fwd (backward = 2x forward, MFU convention)",
    "sdpa_fwdbwd_exec": "3.5 * fwd (flash backward recomputes QK^T: 5 GEMMs vs 2)",
}


# ----------------------------------------------------------------------------------------------
# Hugging Face cross-check
# ----------------------------------------------------------------------------------------------
def transformers_version() -> str | None:
    try:
        mod = importlib.import_module("transformers")
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return str(getattr(mod, "__version__", "?"))


def build_hf_llama(shape: ModelShape, device: torch.device, dtype: torch.dtype) -> Any:
    """``transformers.LlamaForCausalLM`` of ``shape`` (SDPA attention), made on ``device``
    in ``dtype`` the way ``from_pretrained(dtype=...)`` makes it (default dtype switched, so
    the RoPE ``inv_freq`` buffer stays fp32)."""
    tf = importlib.import_module("transformers")
    config = tf.LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv,
        max_position_embeddings=shape.max_seq,
        rope_theta=shape.rope_theta,
        rms_norm_eps=shape.norm_eps,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=INIT_STD,
        use_cache=False,
        attn_implementation="sdpa",
    )
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = tf.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    for p in model.parameters():
        if p.dtype != dtype:
            p.data = p.data.to(dtype)
    model.train()
    return model


def copy_weights_to_hf(ours: DecoderLM, hf: Any) -> None:
    """Load the hand-written Llama's weights into a Hugging Face ``LlamaForCausalLM``."""
    if ours.embed is None or ours.head is None or not isinstance(ours.norm, RMSNorm):
        raise ValueError("copy_weights_to_hf: needs a llama with embedding and head")
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(ours.embed.weight)
        hf.model.norm.weight.copy_(ours.norm.weight)
        hf.lm_head.weight.copy_(ours.head.weight)
        for blk, layer in zip(ours.blocks, hf.model.layers, strict=True):
            assert isinstance(blk, LlamaBlock)
            layer.input_layernorm.weight.copy_(blk.attn_norm.weight)
            layer.post_attention_layernorm.weight.copy_(blk.mlp_norm.weight)
            layer.self_attn.q_proj.weight.copy_(blk.wq.weight)
            layer.self_attn.k_proj.weight.copy_(blk.wk.weight)
            layer.self_attn.v_proj.weight.copy_(blk.wv.weight)
            layer.self_attn.o_proj.weight.copy_(blk.wo.weight)
            layer.mlp.gate_proj.weight.copy_(blk.gate.weight)
            layer.mlp.up_proj.weight.copy_(blk.up.weight)
            layer.mlp.down_proj.weight.copy_(blk.down.weight)
