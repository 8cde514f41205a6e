"""A GPT decoder stack from plain torch ops, shardable for TP and PP (torch + stdlib).

The model the evaluator prices as a GPT ``Model`` spec (``mlp: gelu``, biases, LayerNorm,
learned position embeddings, untied LM head; ``solver/costmodel/params.py``): token and
position embeddings, ``layers`` pre-LN blocks (causal multi-head attention, 4h GeLU MLP),
final LayerNorm and LM head, trained on next-token cross entropy.

Tensor parallelism follows Megatron-LM (Shoeybi et al. 2019): QKV and fc1 column-parallel
(heads and MLP columns split), proj and fc2 row-parallel, vocab-parallel embedding and head
(:mod:`~solver.profile.tensor_parallel`).  Training attention is the
``softmax(QK^T / sqrt(d) + mask) V`` of Megatron-LM 2021 with the scores in HBM, the kernel
sequence the cost model prices for training (``flash_attention=False``); inference uses
``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel on GPU), as the cost model
assumes for prefill, with a KV cache.

``GPTConfig.fusion`` picks which of Megatron-LM's fusions the training step uses:

* ``"none"`` -- PyTorch eager, one kernel per operator (bias adds in the GEMM epilogue,
  separate mask / softmax / dropout kernels over the scores, dropout and residual add apart),
  and autograd's gradient accumulation (each micro-batch's weight gradient is a new tensor,
  added to ``.grad`` by a kernel of its own: 6 bytes per parameter per micro-batch);
* ``"compile"`` -- Megatron-LM's three elementwise fusions, each a ``torch.compile``'d
  function (what Megatron-Core's ``jit_fuser`` does on PyTorch >= 2.2): bias + GeLU
  (``fused_bias_gelu``), bias + dropout + residual add (``fused_bias_dropout``) and
  scale-mask-softmax (the attention dropout stays a kernel of its own, as in Megatron-LM);
* ``"megatron"`` -- ``"compile"`` plus Megatron's ``gradient_accumulation_fusion``: the
  weight-gradient GEMM of every linear layer accumulates into ``.grad`` itself (cuBLAS
  ``beta = 1``, :class:`_LinearGradAccumulation`), no separate add.

``"megatron"`` is the kernel sequence the catalog's elementwise byte counts price
(``solver/costmodel/constants.py``) and the one whose step has no gradient-accumulation term,
so the uncalibrated prediction is compared with the stack it models.  Inference (``eval``
mode: no dropout, no gradients) is the same in every mode.

All modes compute the same function (tests compare them with dropout off).

Parameters are named as in the full model (``blocks.3.fc1.w``); :func:`shard` and
:func:`unshard` map between a full tensor and its TP shards, so a parallel run can be compared
with a single-device run parameter by parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .raw import FUSIONS
from .tensor_parallel import TPComm, vocab_parallel_cross_entropy, vocab_parallel_embedding

__all__ = [
    "FUSIONS",
    "GPTConfig",
    "GPTStage",
    "KVCache",
    "StageLayout",
    "check_tp",
    "full_shape",
    "fused",
    "init_full",
    "init_local",
    "local_shape",
    "param_names",
    "parse_shape",
    "shard",
    "shard_kind",
    "unshard",
]

#: Initialisation scale of weights and biases (GPT-2 / Megatron-LM ``init_method_std``).
INIT_STD = 0.02
#: Head width used when a shape does not name its head count (GPT-3 and Llama use 128).
DEFAULT_HEAD_DIM = 128
#: Megatron-LM pads GPT-2's 50,257-token vocabulary to a multiple of 128 x TP: 50,304.
DEFAULT_VOCAB = 50304


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the validation model."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    seq_len: int
    dropout: float = 0.0
    #: Megatron-LM fusions of the training step: one of :data:`FUSIONS` (module docstring).
    fusion: str = "none"

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "ffn", "vocab_size", "seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"heads: must divide hidden={self.hidden}, got {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion: must be one of {list(FUSIONS)}, got {self.fusion!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def name(self) -> str:
        return f"h{self.hidden}-l{self.layers}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        return cls(**d)

    def with_seq_len(self, seq_len: int) -> GPTConfig:
        d = self.to_dict()
        d["seq_len"] = seq_len
        return GPTConfig(**d)


#: ``torch.compile`` backend of the fused functions: Inductor (Triton kernels) on GPUs; tests
#: on CPU set ``"aot_eager"`` (traces forward and backward, needs no C++ compiler).
COMPILE_BACKEND = "inductor"
#: Dynamo re-traces a function per new input shape (model shape x micro-batch x TP) and falls
#: back to eager after ``recompile_limit`` (8 by default) -- more than a validation run has.
RECOMPILE_LIMIT = 64


def _bias_gelu(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Megatron-LM ``bias_gelu``: GeLU (tanh form) of ``y + bias``."""
    return F.gelu(y + bias, approximate="tanh")


def _bias_dropout_add(
    y: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Megatron-LM ``bias_dropout_add``: ``residual + dropout(y + bias)``."""
    return residual + F.dropout(y + bias, p, training)


def _mask_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Megatron-LM ``FusedScaleMaskSoftmax`` (the scale is on Q); the attention dropout stays
    a kernel of its own, as in Megatron-LM (and the catalog's ``SOFTMAX_DROPOUT_BYTES``)."""
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)


class _LinearGradAccumulation(torch.autograd.Function):
    """``F.linear(x, w, b)`` whose backward adds the weight gradient into ``w.grad`` inside the
    GEMM (``addmm_``: cuBLAS with ``beta = 1``) -- Megatron-LM's
    ``gradient_accumulation_fusion`` (``LinearWithGradAccumulationAndAsyncCommunication``).
    The weight's autograd gradient is None: ``.grad`` is already up to date."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: nn.Parameter, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.param, ctx.has_bias = w, b is not None
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor | None]:
        x, w = ctx.saved_tensors
        dx = dy.matmul(w)
        dy2, x2 = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
        param: nn.Parameter = ctx.param
        if param.grad is None:
            param.grad = dy2.t().matmul(x2)
        else:
            param.grad.addmm_(dy2.t(), x2)
        return dx, None, (dy2.sum(0) if ctx.has_bias else None)


_COMPILED: dict[tuple[str, str], Callable[..., torch.Tensor]] = {}


def fused(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` compiled with :data:`COMPILE_BACKEND` (one compiled function per backend)."""
    key = (fn.__name__, COMPILE_BACKEND)
    if key not in _COMPILED:
        cfg = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):  # renamed in PyTorch 2.6
            if hasattr(cfg, name) and getattr(cfg, name) < RECOMPILE_LIMIT:
                setattr(cfg, name, RECOMPILE_LIMIT)
        _COMPILED[key] = torch.compile(fn, backend=COMPILE_BACKEND, fullgraph=True)
    return _COMPILED[key]


_SHAPE_RE = re.compile(r"^h(\d+)-l(\d+)((?:-[afv]\d+)*)$")

#: Named shapes: the two GPU validation shapes and the CPU test shape.
NAMED_SHAPES = {"tiny": "h64-l4-a4-v256"}


def parse_shape(
    text: str,
    *,
    seq_len: int,
    vocab_size: int = DEFAULT_VOCAB,
    dropout: float = 0.0,
    fusion: str = "none",
) -> GPTConfig:
    """``h4096-l8`` -> hidden 4096, 8 blocks, 32 heads of 128, ffn 4h; optional ``-a<heads>``,
    ``-f<ffn>``, ``-v<vocab>``; or a name of :data:`NAMED_SHAPES` (``tiny``)."""
    spec = NAMED_SHAPES.get(text, text)
    m = _SHAPE_RE.match(spec)
    if m is None:
        raise ValueError(
            f"shape: expected h<hidden>-l<layers>[-a<heads>][-f<ffn>][-v<vocab>] or one of "
            f"{sorted(NAMED_SHAPES)}, got {text!r}"
        )
    hidden, layers = int(m.group(1)), int(m.group(2))
    extra = {k: int(v) for k, v in re.findall(r"-([afv])(\d+)", m.group(3))}
    heads = extra.get("a", max(1, hidden // DEFAULT_HEAD_DIM))
    return GPTConfig(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=extra.get("f", 4 * hidden),
        vocab_size=extra.get("v", vocab_size),
        seq_len=seq_len,
        dropout=dropout,
        fusion=fusion,
    )


@dataclass(frozen=True)
class StageLayout:
    """What one rank holds: a block range, the embedding and/or head, and its TP slice."""

    first_layer: int
    last_layer: int
    embedding: bool
    head: bool
    tp: int = 1
    tp_rank: int = 0

    @property
    def layers(self) -> range:
        return range(self.first_layer, self.last_layer + 1)


_BLOCK_PARAMS = (
    "ln1.w",
    "ln1.b",
    "qkv.w",
    "qkv.b",
    "proj.w",
    "proj.b",
    "ln2.w",
    "ln2.b",
    "fc1.w",
    "fc1.b",
    "fc2.w",
    "fc2.b",
)

#: How each parameter is split across TP ranks: ``rep`` replicated, ``col`` rows (output
#: features), ``row`` columns (input features), ``qkv`` heads within each of Q, K, V,
#: ``vocab`` vocabulary rows.
_KIND = {
    "embed.word": "vocab",
    "embed.pos": "rep",
    "head.w": "vocab",
    "qkv.w": "qkv",
    "qkv.b": "qkv",
    "proj.w": "row",
    "fc1.w": "col",
    "fc1.b": "col",
    "fc2.w": "row",
}


def shard_kind(name: str) -> str:
    """``rep``, ``col``, ``row``, ``qkv`` or ``vocab`` for a parameter name."""
    if name in _KIND:
        return _KIND[name]
    tail = ".".join(name.split(".")[-2:])
    return _KIND.get(tail, "rep")


def param_names(cfg: GPTConfig, layout: StageLayout) -> list[str]:
    """Parameters of a stage, in a fixed order."""
    names: list[str] = []
    if layout.embedding:
        names += ["embed.word", "embed.pos"]
    for i in layout.layers:
        names += [f"blocks.{i}.{p}" for p in _BLOCK_PARAMS]
    if layout.head:
        names += ["head.ln.w", "head.ln.b", "head.w"]
    return names


def full_shape(cfg: GPTConfig, name: str) -> tuple[int, ...]:
    """Shape of a parameter in the unsharded model."""
    h, f, v = cfg.hidden, cfg.ffn, cfg.vocab_size
    if name in ("embed.word", "head.w"):
        return (v, h)
    if name == "embed.pos":
        return (cfg.seq_len, h)
    if name.startswith("head.ln"):
        return (h,)
    tail = ".".join(name.split(".")[-2:])
    shapes = {
        "ln1.w": (h,),
        "ln1.b": (h,),
        "ln2.w": (h,),
        "ln2.b": (h,),
        "qkv.w": (3 * h, h),
        "qkv.b": (3 * h,),
        "proj.w": (h, h),
        "proj.b": (h,),
        "fc1.w": (f, h),
        "fc1.b": (f,),
        "fc2.w": (h, f),
        "fc2.b": (h,),
    }
    return shapes[tail]


def check_tp(cfg: GPTConfig, tp: int) -> None:
    """ValueError unless ``tp`` divides the heads, the MLP width and the vocabulary."""
    for what, n in (("heads", cfg.heads), ("ffn", cfg.ffn), ("vocab_size", cfg.vocab_size)):
        if n % tp:
            raise ValueError(f"tp: must divide {what}={n}, got {tp}")


def local_shape(cfg: GPTConfig, name: str, tp: int) -> tuple[int, ...]:
    """Shape of one TP rank's shard."""
    shape = list(full_shape(cfg, name))
    kind = shard_kind(name)
    if kind in ("col", "qkv", "vocab"):
        shape[0] //= tp
    elif kind == "row":
        shape[1] //= tp
    return tuple(shape)


def shard(cfg: GPTConfig, name: str, full: torch.Tensor, tp: int, rank: int) -> torch.Tensor:
    """TP rank ``rank``'s slice of the full parameter ``full``."""
    check_tp(cfg, tp)
    kind = shard_kind(name)
    if kind == "rep" or tp == 1:
        return full.clone()
    if kind in ("col", "vocab"):
        return full.chunk(tp, dim=0)[rank].clone()
    if kind == "row":
        return full.chunk(tp, dim=1)[rank].clone()
    # qkv: rows are [Q heads; K heads; V heads], each head head_dim rows.
    rest = full.shape[1:]
    per = full.reshape(3, cfg.heads, cfg.head_dim, *rest)
    a = cfg.heads // tp
    return per[:, rank * a : (rank + 1) * a].reshape(3 * a * cfg.head_dim, *rest).clone()


def unshard(cfg: GPTConfig, name: str, shards: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`shard`: the full tensor from the shards of ranks 0..t-1."""
    kind = shard_kind(name)
    if kind == "rep" or len(shards) == 1:
        return shards[0]
    if kind in ("col", "vocab"):
        return torch.cat(shards, dim=0)
    if kind == "row":
        return torch.cat(shards, dim=1)
    rest = shards[0].shape[1:]
    parts = [s.reshape(3, -1, cfg.head_dim, *rest) for s in shards]
    return torch.cat(parts, dim=1).reshape(3 * cfg.hidden, *rest)


def _init_value(name: str, shape: tuple[int, ...], gen: torch.Generator, **kw: Any) -> torch.Tensor:
    x = torch.randn(shape, generator=gen, **kw) * INIT_STD
    if re.search(r"ln\d?\.w$", name):
        x = x + 1.0  # LayerNorm gains start near 1
    return x


def init_full(cfg: GPTConfig, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every parameter of the full model, on CPU, from ``seed`` (reference runs and checks)."""
    gen = torch.Generator().manual_seed(seed)
    everything = StageLayout(0, cfg.layers - 1, embedding=True, head=True)
    return {
        n: _init_value(n, full_shape(cfg, n), gen, dtype=torch.float64).to(dtype)
        for n in param_names(cfg, everything)
    }


def init_local(
    cfg: GPTConfig, layout: StageLayout, seed: int, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """This rank's shards drawn directly on ``device`` (timing runs: a 4-billion-parameter
    model is not materialised on the host).  Values differ from :func:`init_full`'s."""
    check_tp(cfg, layout.tp)
    gen = torch.Generator(device=device).manual_seed(seed + 1009 * layout.tp_rank)
    return {
        n: _init_value(n, local_shape(cfg, n, layout.tp), gen, device=device, dtype=dtype)
        for n in param_names(cfg, layout)
    }


def _key(name: str) -> str:
    return name.replace(".", "__")


KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class GPTStage(nn.Module):
    """The blocks (and embedding / head) one rank runs, with its TP shards."""

    def __init__(
        self,
        cfg: GPTConfig,
        layout: StageLayout,
        tensors: dict[str, torch.Tensor],
        comm: TPComm,
    ) -> None:
        super().__init__()
        check_tp(cfg, layout.tp)
        if comm.size != layout.tp:
            raise ValueError(f"tp: layout says {layout.tp}, the TP group has {comm.size} ranks")
        self.cfg, self.layout, self.comm = cfg, layout, comm
        self.names = param_names(cfg, layout)
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"tensors: missing parameters {missing[:3]}")
        for n in self.names:
            want = local_shape(cfg, n, layout.tp)
            if tuple(tensors[n].shape) != want:
                raise ValueError(f"{n}: expected shape {want}, got {tuple(tensors[n].shape)}")
            self.register_parameter(_key(n), nn.Parameter(tensors[n]))
        self.heads_local = cfg.heads // layout.tp
        self.vocab_start = layout.tp_rank * (cfg.vocab_size // layout.tp)
        self._mask: torch.Tensor | None = None

    def p(self, name: str) -> nn.Parameter:
        """The parameter with full-model name ``name``."""
        out: nn.Parameter = getattr(self, _key(name))
        return out

    def named_model_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(full-model name, local parameter) in a fixed order."""
        return [(n, self.p(n)) for n in self.names]

    # -- building blocks ---------------------------------------------------------------------
    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.cfg.dropout > 0:
            return F.dropout(x, self.cfg.dropout, training=True)
        return x

    def _embed(self, ids: torch.Tensor, pos: int) -> torch.Tensor:
        x = vocab_parallel_embedding(ids, self.p("embed.word"), self.vocab_start, self.comm)
        x = x + self.p("embed.pos")[pos : pos + ids.shape[1]]
        return self._dropout(x)

    def _causal_mask(self, s: int, device: torch.device) -> torch.Tensor:
        if self._mask is None or self._mask.shape[0] < s or self._mask.device != device:
            self._mask = torch.ones(s, s, dtype=torch.bool, device=device).triu(1)
        return self._mask[:s, :s]

    def _attention_eager(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(Q K^T / sqrt(d), causal) V, kernel by kernel (Megatron-LM 2021 without its
        fused scale-mask-softmax): the scale goes on Q (b s h elements, not b a s^2), the mask
        is applied in place on the fresh scores (matmul's backward does not need them)."""
        q = q * (1.0 / math.sqrt(self.cfg.head_dim))
        scores = torch.matmul(q, k.transpose(-2, -1))
        mask = self._causal_mask(q.shape[-2], q.device)
        if self._fusing:
            probs = self._dropout(fused(_mask_softmax)(scores, mask))
        else:
            scores.masked_fill_(mask, float("-inf"))
            probs = self._dropout(torch.softmax(scores, dim=-1))
        return torch.matmul(probs, v)

    @property
    def _fusing(self) -> bool:
        """Megatron's fused elementwise kernels: training with ``fusion`` compile/megatron."""
        return self.training and self.cfg.fusion != "none"

    def _linear(
        self, x: torch.Tensor, w: nn.Parameter, b: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``F.linear``, or with ``fusion="megatron"`` in training its gradient-accumulation
        fused form."""
        if self.training and self.cfg.fusion == "megatron" and torch.is_grad_enabled():
            out: torch.Tensor = _LinearGradAccumulation.apply(x, w, b)  # type: ignore[no-untyped-call]
            return out
        return F.linear(x, w, b)

    def _block(
        self,
        i: int,
        x: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        pos: int = 0,
    ) -> torch.Tensor:
        h_, a, d = self.cfg.hidden, self.heads_local, self.cfg.head_dim
        b, s, _ = x.shape

        def p(n: str) -> nn.Parameter:
            return self.p(f"blocks.{i}.{n}")

        y = F.layer_norm(x, (h_,), p("ln1.w"), p("ln1.b"))
        y = self._linear(self.comm.copy_to(y), p("qkv.w"), p("qkv.b"))
        q, k, v = y.view(b, s, 3, a, d).permute(2, 0, 3, 1, 4).unbind(0)  # (b, a, s, d) each
        if cache is None:
            o = self._attention_eager(q, k, v)
        else:
            kc, vc = cache
            kc[:, :, pos : pos + s] = k
            vc[:, :, pos : pos + s] = v
            if pos == 0:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            elif s == 1:
                o = F.scaled_dot_product_attention(q, kc[:, :, : pos + 1], vc[:, :, : pos + 1])
            else:
                raise ValueError("chunked prefill (pos > 0 and several tokens) is not supported")
        o = o.transpose(1, 2).reshape(b, s, a * d)
        if self._fusing:
            bda, drop = fused(_bias_dropout_add), self.cfg.dropout
            x = bda(
                self.comm.reduce_from(self._linear(o, p("proj.w"))), p("proj.b"), x, drop, drop > 0
            )
            y = F.layer_norm(x, (h_,), p("ln2.w"), p("ln2.b"))
            y = fused(_bias_gelu)(self._linear(self.comm.copy_to(y), p("fc1.w")), p("fc1.b"))
            return bda(
                self.comm.reduce_from(self._linear(y, p("fc2.w"))), p("fc2.b"), x, drop, drop > 0
            )
        x = x + self._dropout(self.comm.reduce_from(self._linear(o, p("proj.w"))) + p("proj.b"))
        y = F.layer_norm(x, (h_,), p("ln2.w"), p("ln2.b"))
        y = F.gelu(self._linear(self.comm.copy_to(y), p("fc1.w"), p("fc1.b")), approximate="tanh")
        return x + self._dropout(self.comm.reduce_from(self._linear(y, p("fc2.w"))) + p("fc2.b"))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's V/t logits of the hidden states ``x``."""
        h_ = self.cfg.hidden
        x = F.layer_norm(x, (h_,), self.p("head.ln.w"), self.p("head.ln.b"))
        return self._linear(self.comm.copy_to(x), self.p("head.w"))

    # -- training ----------------------------------------------------------------------------
    def forward(self, inp: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (first stage) or hidden states in; hidden states out, or on the last stage
        the mean next-token loss of ``targets``."""
        x = self._embed(inp, 0) if self.layout.embedding else inp
        for i in self.layout.layers:
            x = self._block(i, x)
        if not self.layout.head:
            return x
        if targets is None:
            raise ValueError("targets: the last stage needs them to compute the loss")
        logits = self._logits(x)
        if logits.element_size() < 4:
            logits = logits.float()  # the loss in fp32, as Megatron-LM's cross entropy
        loss = vocab_parallel_cross_entropy(
            logits.view(-1, logits.shape[-1]), targets.reshape(-1), self.vocab_start, self.comm
        )
        return loss.mean()

    # -- inference ---------------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """Empty K/V buffers for this stage's blocks: (batch, heads/t, max_len, head_dim)."""
        ref = next(iter(self.parameters()))
        shape = (batch, self.heads_local, max_len, self.cfg.head_dim)
        return [
            (
                torch.empty(shape, dtype=ref.dtype, device=ref.device),
                torch.empty(shape, dtype=ref.dtype, device=ref.device),
            )
            for _ in self.layout.layers
        ]

    @torch.no_grad()
    def infer(self, inp: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
        """Prefill (``pos == 0``, whole prompts) or one decode step (one token per sequence).

        Returns hidden states for the next stage, or on the last stage the full-vocabulary
        logits of the last position, (batch, vocab), gathered across TP ranks.
        """
        x = self._embed(inp, pos) if self.layout.embedding else inp
        for c, i in enumerate(self.layout.layers):
            x = self._block(i, x, cache[c], pos)
        if not self.layout.head:
            return x
        return self.comm.gather_last_dim(self._logits(x[:, -1:]).squeeze(1))
