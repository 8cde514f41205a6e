"""Import a Hugging Face ``config.json`` as a :class:`~solver.specs.Model` (no ``transformers``).

Supported architectures (the ``architectures`` entry, or ``model_type`` when that is absent):

=====================  ==========================================================================
LlamaForCausalLM       ``num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
MistralForCausalLM     num_key_value_heads`` (default: MHA), ``vocab_size``,
Qwen2ForCausalLM       ``tie_word_embeddings`` (default false), optional ``head_dim``; gated MLP
                       (SwiGLU), rotary positions.
MixtralForCausalLM     as Mistral, plus ``num_local_experts`` and ``num_experts_per_tok``; every
                       MLP is a mixture of experts of inner width ``intermediate_size``.
GPT2LMHeadModel        ``n_layer, n_embd, n_head, n_inner`` (default 4 x n_embd), ``vocab_size``;
                       GeLU MLP, learned position embeddings, tied embeddings (default true).
GPTNeoXForCausalLM     ``num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
                       vocab_size, tie_word_embeddings`` (default false); GeLU MLP, rotary.
=====================  ==========================================================================

Defaults for absent optional keys are those of the corresponding ``transformers`` config class.
A missing required key, a wrong type, an unsupported architecture, or a ``model_type`` without
an importer (``mamba``, ``jamba``, ``t5``, ... even under a supported ``architectures`` entry)
raises :class:`~solver.errors.SpecError` naming the key.  The model is named from the config
(``_name_or_path``'s last part, else the ``model_type``), never from the folder it sits in.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError, format_validation_error
from .specs import Model

__all__ = ["SUPPORTED_ARCHITECTURES", "import_hf", "model_to_yaml"]

_Config = dict[str, Any]


class _Reader:
    """Typed access to config keys; errors name the key, the architecture and the source."""

    def __init__(self, cfg: _Config, arch: str, source: str) -> None:
        self.cfg, self.arch, self.source = cfg, arch, source

    def _fail(self, key: str, what: str) -> SpecError:
        return SpecError(f"{self.source}: {key}: {what} ({self.arch})")

    def pos_int(self, key: str, default: int | None = None) -> int:
        if key not in self.cfg or self.cfg[key] is None:
            if default is None:
                raise self._fail(key, "required key is missing")
            return default
        v = self.cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise self._fail(key, f"must be a positive integer, got {v!r}")
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self.cfg.get(key, default)
        if not isinstance(v, bool):
            raise self._fail(key, f"must be true or false, got {v!r}")
        return v


def _head_dim(r: _Reader, hidden: int, heads: int) -> int | None:
    """``head_dim`` only where it differs from hidden / heads (e.g. Mistral-Nemo: 128 vs 160)."""
    if r.cfg.get("head_dim") is None:
        return None
    hd = r.pos_int("head_dim")
    return None if hd * heads == hidden else hd


def _llama_like(r: _Reader, name: str) -> dict[str, Any]:
    hidden, heads = r.pos_int("hidden_size"), r.pos_int("num_attention_heads")
    return {
        "name": name,
        "num_layers": r.pos_int("num_hidden_layers"),
        "hidden_size": hidden,
        "ffn_hidden_size": r.pos_int("intermediate_size"),
        "num_attention_heads": heads,
        "num_kv_heads": r.pos_int("num_key_value_heads", heads),
        "vocab_size": r.pos_int("vocab_size"),
        # Llama-family MLPs are gated (gate, up, down: 3 matrices). 'silu' is SwiGLU; a gated
        # GeLU has the same shapes and FLOPs, which is all the cost model needs.
        "mlp": "swiglu",
        "tied_embeddings": r.flag("tie_word_embeddings", False),
        "head_dim": _head_dim(r, hidden, heads),
    }


def _mixtral(r: _Reader, name: str) -> dict[str, Any]:
    d = _llama_like(r, name)
    d["num_experts"] = r.pos_int("num_local_experts")
    d["experts_per_token"] = r.pos_int("num_experts_per_tok")
    d["moe_ffn_hidden_size"] = d["ffn_hidden_size"]
    return d


def _gpt2(r: _Reader, name: str) -> dict[str, Any]:
    hidden = r.pos_int("n_embd")
    # n_positions (the learned position table's rows) has no Model field: the evaluator sizes
    # the table by the workload's sequence length.
    return {
        "name": name,
        "num_layers": r.pos_int("n_layer"),
        "hidden_size": hidden,
        "ffn_hidden_size": r.pos_int("n_inner", 4 * hidden),  # GPT2Config: n_inner None -> 4 h
        "num_attention_heads": r.pos_int("n_head"),
        "num_kv_heads": r.pos_int("n_head"),
        "vocab_size": r.pos_int("vocab_size"),
        "mlp": "gelu",
        "tied_embeddings": r.flag("tie_word_embeddings", True),
        "learned_position_embeddings": True,
    }


def _neox(r: _Reader, name: str) -> dict[str, Any]:
    heads = r.pos_int("num_attention_heads")
    return {
        "name": name,
        "num_layers": r.pos_int("num_hidden_layers"),
        "hidden_size": r.pos_int("hidden_size"),
        "ffn_hidden_size": r.pos_int("intermediate_size"),
        "num_attention_heads": heads,
        "num_kv_heads": heads,
        "vocab_size": r.pos_int("vocab_size"),
        "mlp": "gelu",
        "tied_embeddings": r.flag("tie_word_embeddings", False),
    }


_Builder = Callable[[_Reader, str], dict[str, Any]]

SUPPORTED_ARCHITECTURES: dict[str, _Builder] = {
    "LlamaForCausalLM": _llama_like,
    "MistralForCausalLM": _llama_like,
    "Qwen2ForCausalLM": _llama_like,
    "MixtralForCausalLM": _mixtral,
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _neox,
}
_BY_MODEL_TYPE = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
}
_MODEL_TYPE_OF = {arch: mt for mt, arch in _BY_MODEL_TYPE.items()}


def _architecture(cfg: _Config, source: str) -> str:
    """The importer to use; a ``model_type`` that no importer reads is refused even when the
    ``architectures`` entry names a supported class (a Mamba or Jamba config relabelled as
    Llama would otherwise be priced as a transformer it is not)."""
    mt = cfg.get("model_type")
    if mt is not None and (not isinstance(mt, str) or mt not in _BY_MODEL_TYPE):
        raise SpecError(
            f"{source}: model_type: unsupported model type {mt!r} "
            f"(supported: {', '.join(_BY_MODEL_TYPE)})"
        )
    archs = cfg.get("architectures")
    if archs is not None:
        if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
            raise SpecError(
                f"{source}: architectures: must be a list of class names, got {archs!r}"
            )
        arch = archs[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise SpecError(
                f"{source}: architectures: unsupported architecture {arch!r} "
                f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
        builder = SUPPORTED_ARCHITECTURES[arch]
        if mt is not None and SUPPORTED_ARCHITECTURES[_BY_MODEL_TYPE[mt]] is not builder:
            raise SpecError(
                f"{source}: model_type: {mt!r} does not match architectures[0] {arch!r} "
                f"(expected {_MODEL_TYPE_OF[arch]!r})"
            )
        return arch
    if mt is None:
        raise SpecError(
            f"{source}: architectures: required key is missing (and no model_type to fall back on)"
        )
    if mt not in _BY_MODEL_TYPE:
        raise SpecError(
            f"{source}: model_type: unsupported model type {mt!r} "
            f"(supported: {', '.join(_BY_MODEL_TYPE)})"
        )
    return _BY_MODEL_TYPE[mt]


#: Config keys that name the model, in order of preference (``_name_or_path`` is what
#: ``save_pretrained`` writes; ``name_or_path`` and ``model_name`` appear in older exports).
_NAME_KEYS = ("_name_or_path", "name_or_path", "model_name")


def _default_name(cfg: _Config, arch: str) -> str:
    """A model name from the config itself: the last part of its hub id (``_name_or_path``
    and kin), else its ``model_type``; never the folder the file happens to sit in (a hub
    snapshot folder is a commit hash)."""
    base = ""
    for key in _NAME_KEYS:
        raw = cfg.get(key)
        if isinstance(raw, str) and raw.strip("/ "):
            base = raw.strip().rstrip("/").split("/")[-1]
            break
    if not base:
        base = str(cfg.get("model_type") or arch)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower() or "imported"


def import_hf(config: _Config | str | os.PathLike[str], name: str | None = None) -> Model:
    """Turn a Hugging Face ``config.json`` (a dict or a path) into a :class:`Model`.

    Parameters
    ----------
    config
        The parsed config, or the path of a ``config.json``.
    name
        Model name; default: from the config -- the last part of ``_name_or_path`` (or
        ``name_or_path``, ``model_name``), else its ``model_type`` -- lower-cased.  The folder
        holding the file is never used (``--name`` overrides).

    Returns
    -------
    Model
        The validated model spec.

    Raises
    ------
    SpecError
        For an unreadable file, an unsupported architecture, or a missing or mistyped key
        (the message names the key).
    """
    path: Path | None = None
    if isinstance(config, dict):
        cfg: Any = config
        source = "<hf-config>"
    else:
        path = Path(config)
        source = str(path)
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpecError(f"{source}: file not found") from None
        except OSError as e:
            raise SpecError(f"{source}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise SpecError(f"{source}: not a UTF-8 text file") from None
        except json.JSONDecodeError as e:
            raise SpecError(
                f"{source}: JSON syntax error at line {e.lineno} column {e.colno}: {e.msg}"
            ) from None
    if not isinstance(cfg, dict):
        raise SpecError(
            f"{source}: expected a JSON object at the top level, got {type(cfg).__name__}"
        )
    arch = _architecture(cfg, source)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise SpecError(f"name: must be a non-empty string, got {name!r}")
    fields = SUPPORTED_ARCHITECTURES[arch](
        _Reader(cfg, arch, source), name or _default_name(cfg, arch)
    )
    try:
        return Model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        raise SpecError(format_validation_error(e, f"{source} ({arch})")) from None


def model_to_yaml(model: Model, comment: str | None = None) -> str:
    """Render ``model`` as a ``models/*.yaml`` document (fields in schema order).

    Optional fields are written only when set (``learned_position_embeddings`` only when true),
    so the output reads like the hand-written files; ``load_model`` of it gives back ``model``.
    ``comment`` (e.g. the source of the numbers) is written as leading ``#`` lines.
    """
    data = model.model_dump(exclude_none=True)
    if not data.get("learned_position_embeddings"):
        data.pop("learned_position_embeddings", None)
    head = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    body: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return head + body
