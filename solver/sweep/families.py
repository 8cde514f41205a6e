"""Model families generated from scaling rules (``shardwise sweep --family gpt --sizes 7b,13b``).

The ``gpt`` family follows the weak-scaling study of Narayanan et al., "Efficient Large-Scale
Language Model Training on GPU Clusters Using Megatron-LM", SC'21, arXiv:2104.04473, Table 1
(:data:`MEGATRON_2021_TABLE1`; the same rows are ``models/gpt-*.yaml`` and the
``megatron21_t1_*`` entries of ``shared/data/published-runs.json``).  The rule, for a requested
parameter count P:

1. **A Table 1 row.**  If P is within :data:`TABLE_SNAP_TOLERANCE` (3 %) of a row's published
   size, the model is that row exactly (layers, hidden size, heads): ``1.7b``, ``18b``,
   ``39b``, ``145b``, ``530b``, ``1t`` reproduce the paper's shapes.
2. **Hidden size.**  Otherwise the hidden size is interpolated between the two rows that
   bracket P, linearly in log(hidden) against log(P) (the table's aspect ratio h/L grows
   smoothly with size); outside the table's 1.7B-1T range the nearest segment is extended.
3. **Heads.**  Head dimension :data:`HEAD_DIM` = 128 (every row from 7.5B to 310B), and the
   head count is rounded to a multiple of :data:`HEADS_MULTIPLE` = 8, as in every Table 1 row,
   so that TP = 1, 2, 4, 8 all divide it.  Hence the hidden size is a multiple of 1,024 (so of
   128), and at least 1,024.
4. **Layers.**  The layer count L is the integer nearest to solving the paper's parameter
   count (eq. 2, the ``12 L h^2`` scaling) for P at that hidden size:
   ``P = 12 L h^2 (1 + 13 / (12 h) + (V + s) / (12 L h))`` with V = 51,200 and s = 2,048.

All other fields are the table's GPT architecture: GeLU MLP of 4h, tied embeddings, learned
position embeddings, vocabulary 51,200.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import SpecError
from ..specs import Model

__all__ = [
    "FAMILIES",
    "HEADS_MULTIPLE",
    "HEAD_DIM",
    "MEGATRON_2021_TABLE1",
    "TABLE_SNAP_TOLERANCE",
    "TableRow",
    "family_models",
    "gpt_model",
    "parse_size",
    "size_label",
]


@dataclass(frozen=True)
class TableRow:
    """One row of Narayanan et al. 2021, Table 1: a GPT model of the weak-scaling study."""

    params_b: float  #: published size, billions of parameters
    num_layers: int
    hidden_size: int
    num_attention_heads: int


#: Narayanan et al. 2021 (arXiv:2104.04473 v5), Sec. 5.1, Table 1: parameter count (billions),
#: layers, hidden size, attention heads.  Identical to models/gpt-*.yaml and published-runs.json.
MEGATRON_2021_TABLE1: tuple[TableRow, ...] = (
    TableRow(1.7, 24, 2304, 24),
    TableRow(3.6, 30, 3072, 32),
    TableRow(7.5, 36, 4096, 32),
    TableRow(18.4, 40, 6144, 48),
    TableRow(39.1, 48, 8192, 64),
    TableRow(76.1, 60, 10240, 80),
    TableRow(145.6, 80, 12288, 96),
    TableRow(310.1, 96, 16384, 128),
    TableRow(529.6, 105, 20480, 128),
    TableRow(1008.0, 128, 25600, 160),
)

#: Vocabulary of the table's models: GPT-2 BPE (50,257) padded to 51,200 (the paper's eq. 2).
GPT_VOCAB = 51200
#: Sequence length of the table's runs; the learned position table is s x h (eq. 2's ``s``).
GPT_SEQUENCE = 2048
#: Per-head width of interpolated models: 128, as in every Table 1 row from 7.5B to 310B.
HEAD_DIM = 128
#: Head counts are multiples of 8 (true of every Table 1 row), so TP in {1, 2, 4, 8} divides them.
HEADS_MULTIPLE = 8
#: A requested size within 3 % of a row's published size is that row.  The table rounds sizes to
#: 0.1B and the bundled names round further (gpt-39b is 39.1B, gpt-1t is 1008B, 0.8 % away); the
#: nearest pair of rows (1.7B, 3.6B) is 112 % apart, so no size can match two rows.
TABLE_SNAP_TOLERANCE = 0.03

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mMbBtT])\s*$")
_UNIT = {"m": 1e6, "b": 1e9, "t": 1e12}


def parse_size(text: str) -> float:
    """``'7b'`` -> 7e9 parameters; units m, b, t (case-insensitive)."""
    m = _SIZE.match(text)
    if m is None:
        raise SpecError(
            f"--sizes: {text.strip()!r} must be a number with a unit m, b or t (e.g. 350m, 7b, 1t)"
        )
    value = float(m.group(1)) * _UNIT[m.group(2).lower()]
    if value <= 0:
        raise SpecError(f"--sizes: {text.strip()!r} must be > 0")
    return value


def size_label(text: str) -> str:
    """The size as it appears in a model name: ``' 7B '`` -> ``'7b'``."""
    return text.strip().lower()


def eq2_params(num_layers: int, hidden: int) -> float:
    """Narayanan et al. 2021 eq. 2: parameters of a GPT with V = 51,200 and s = 2,048."""
    h, L = float(hidden), float(num_layers)
    return 12 * L * h * h * (1 + 13 / (12 * h) + (GPT_VOCAB + GPT_SEQUENCE) / (12 * L * h))


def _snap(params: float) -> TableRow | None:
    for row in MEGATRON_2021_TABLE1:
        if abs(params - row.params_b * 1e9) <= TABLE_SNAP_TOLERANCE * row.params_b * 1e9:
            return row
    return None


def _interpolated_hidden(params: float) -> float:
    rows = MEGATRON_2021_TABLE1
    i = 0
    while i < len(rows) - 2 and params > rows[i + 1].params_b * 1e9:
        i += 1
    lo, hi = rows[i], rows[i + 1]
    t = math.log(params / (lo.params_b * 1e9)) / math.log(hi.params_b / lo.params_b)
    return math.exp(
        math.log(lo.hidden_size) + t * (math.log(hi.hidden_size) - math.log(lo.hidden_size))
    )


def gpt_model(size: str) -> Model:
    """The ``gpt`` family's model of ``size`` (e.g. ``'7b'``); see the module docstring."""
    params = parse_size(size)
    name = f"gpt-{size_label(size)}"
    row = _snap(params)
    if row is not None:
        layers, hidden, heads = row.num_layers, row.hidden_size, row.num_attention_heads
    else:
        heads_raw = _interpolated_hidden(params) / HEAD_DIM
        heads = max(HEADS_MULTIPLE, HEADS_MULTIPLE * round(heads_raw / HEADS_MULTIPLE))
        hidden = heads * HEAD_DIM
        per_layer = 12.0 * hidden * hidden + 13.0 * hidden
        layers = round((params - (GPT_VOCAB + GPT_SEQUENCE) * hidden) / per_layer)
        if layers < 1:
            smallest = eq2_params(1, hidden)
            raise SpecError(
                f"--sizes: {size.strip()!r} is too small for the gpt family: one layer at "
                f"hidden size {hidden} with its embedding already has {smallest / 1e6:,.0f}M "
                "parameters"
            )
    return Model(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        ffn_hidden_size=4 * hidden,
        num_attention_heads=heads,
        num_kv_heads=heads,
        vocab_size=GPT_VOCAB,
        mlp="gelu",
        tied_embeddings=True,
        learned_position_embeddings=True,
    )


#: Family name -> generator of one model from a size string.
FAMILIES: dict[str, Callable[[str], Model]] = {"gpt": gpt_model}


def family_models(family: str, sizes: Sequence[str]) -> list[Model]:
    """The models of ``family`` at ``sizes`` (e.g. ``'gpt'``, ``['1b', '7b', '1t']``)."""
    make = FAMILIES.get(family.strip().lower())
    if make is None:
        raise SpecError(
            f"--family: unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    sizes = [s for s in sizes if s.strip()]
    if not sizes:
        raise SpecError("--sizes: give at least one size, e.g. --sizes 1b,7b,70b")
    models = [make(s) for s in sizes]
    seen: dict[str, str] = {}
    for s, m in zip(sizes, models, strict=True):
        if m.name in seen:
            raise SpecError(f"--sizes: {s.strip()!r} repeats {seen[m.name]!r}")
        seen[m.name] = s.strip()
    return models
