"""Importing Hugging Face config.json files (solver.hf) without transformers.

The inline configs are trimmed copies of the real hub files (same keys and values for the
fields that matter, plus a few irrelevant keys to show they are ignored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from solver import SpecError
from solver.hf import SUPPORTED_ARCHITECTURES, import_hf, model_to_yaml
from solver.io import load_model

# meta-llama/Meta-Llama-3-8B/config.json
LLAMA3_8B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}
# mistralai/Mixtral-8x7B-v0.1/config.json
MIXTRAL_8X7B: dict[str, Any] = {
    "architectures": ["MixtralForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "output_router_logits": False,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "router_aux_loss_coef": 0.02,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}
# Qwen/Qwen2-7B/config.json
QWEN2_7B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "vocab_size": 152064,
}
# openai-community/gpt2/config.json (no n_inner: GPT2Config defaults it to 4 x n_embd)
GPT2: dict[str, Any] = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}
# EleutherAI/pythia-1.4b/config.json
PYTHIA_1_4B: dict[str, Any] = {
    "architectures": ["GPTNeoXForCausalLM"],
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048,
    "model_type": "gpt_neox",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "use_cache": True,
    "use_parallel_residual": True,
    "vocab_size": 50304,
}
# mistralai/Mistral-Nemo-Base-2407/config.json: head_dim 128 != 5120 / 32
MISTRAL_NEMO: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"],
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "intermediate_size": 14336,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 40,
    "num_key_value_heads": 8,
    "vocab_size": 131072,
}


def test_llama3_8b_equals_shipped_yaml() -> None:
    """Meta-Llama-3-8B's config imports to exactly models/llama3-8b.yaml, field for field."""
    imported = import_hf(LLAMA3_8B, name="llama3-8b")
    shipped = load_model("llama3-8b")
    assert imported.model_dump() == shipped.model_dump()
    assert imported == shipped


def test_mixtral() -> None:
    """Mixtral: every MLP is 8 SwiGLU experts of 14336, top-2; GQA 8 KV heads; untied."""
    m = import_hf(MIXTRAL_8X7B, name="mixtral-8x7b")
    assert (m.num_experts, m.experts_per_token, m.moe_ffn_hidden_size) == (8, 2, 14336)
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads) == (
        32,
        4096,
        32,
        8,
    )
    assert (m.vocab_size, m.mlp, m.tied_embeddings) == (32000, "swiglu", False)
    assert m == load_model("mixtral-8x7b")


def test_qwen2() -> None:
    """Qwen2-7B: 28 layers of 3584, 28 query / 4 KV heads, ffn 18944, vocab 152064."""
    m = import_hf(QWEN2_7B)
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size) == (28, 3584, 18944)
    assert (m.num_attention_heads, m.num_kv_heads, m.kv_channels) == (28, 4, 128)
    assert (m.vocab_size, m.mlp, m.tied_embeddings, m.is_moe) == (152064, "swiglu", False, False)
    assert m.name == "qwen2"  # no _name_or_path and no file: the model_type


def test_gpt2() -> None:
    """GPT-2: n_* keys, ffn defaults to 4h, GeLU, tied, learned position embeddings."""
    m = import_hf(GPT2, name="gpt2")
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads) == (
        12,
        768,
        12,
        12,
    )
    assert (m.ffn_hidden_size, m.vocab_size) == (3072, 50257)
    assert m.mlp == "gelu" and m.tied_embeddings and m.learned_position_embeddings
    assert import_hf({**GPT2, "n_inner": 1000}).ffn_hidden_size == 1000


def test_gpt_neox_pythia() -> None:
    """Pythia-1.4B (GPT-NeoX): GeLU 4h MLP, MHA, untied, rotary (no position table)."""
    m = import_hf(PYTHIA_1_4B, name="pythia-1.4b")
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size) == (24, 2048, 8192)
    assert (m.num_attention_heads, m.num_kv_heads, m.vocab_size) == (16, 16, 50304)
    assert m.mlp == "gelu" and not m.tied_embeddings and not m.learned_position_embeddings


def test_explicit_head_dim_is_kept_only_when_it_differs() -> None:
    """Mistral-Nemo's head_dim 128 (not 5120/32) survives; a redundant head_dim is dropped."""
    assert import_hf(MISTRAL_NEMO).head_dim == 128
    assert import_hf({**LLAMA3_8B, "head_dim": 128}).head_dim is None


def test_defaults_follow_transformers() -> None:
    """Absent num_key_value_heads means MHA; absent tie_word_embeddings means untied (Llama)."""
    cfg = {
        k: v
        for k, v in LLAMA3_8B.items()
        if k not in ("num_key_value_heads", "tie_word_embeddings")
    }
    m = import_hf(cfg)
    assert m.num_kv_heads == 32 and m.tied_embeddings is False


def test_model_type_fallback() -> None:
    """Without 'architectures', model_type picks the importer."""
    cfg = {k: v for k, v in MIXTRAL_8X7B.items() if k != "architectures"}
    assert import_hf(cfg).num_experts == 8


@pytest.mark.parametrize(
    ("cfg", "name"),
    [(LLAMA3_8B, "llama"), (MIXTRAL_8X7B, "mixtral"), (QWEN2_7B, "qwen2"), (GPT2, "gpt2"),
     (PYTHIA_1_4B, "neox"), (MISTRAL_NEMO, "nemo")],
)  # fmt: skip
def test_yaml_round_trip(cfg: dict[str, Any], name: str, tmp_path: Path) -> None:
    """model_to_yaml writes a models/*.yaml that loads back to the same Model."""
    m = import_hf(cfg, name=name)
    text = model_to_yaml(m, comment="Imported from a test config\nsecond line")
    assert text.startswith("# Imported from a test config\n# second line\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert load_model(path) == m
    doc = yaml.safe_load(text)
    assert list(doc)[0] == "name" and None not in doc.values()


def test_llama3_8b_yaml_matches_shipped_fields() -> None:
    """The YAML written for Llama-3-8B has the shipped file's keys and values."""
    doc = yaml.safe_load(model_to_yaml(import_hf(LLAMA3_8B, name="llama3-8b")))
    shipped = yaml.safe_load(Path(__file__).resolve().parent.parent.joinpath(
        "models", "llama3-8b.yaml").read_text())  # fmt: skip
    assert doc == shipped


def test_import_from_path_names_the_model_from_the_config(tmp_path: Path) -> None:
    """A config.json path is read; the name comes from the config, never from its folder."""
    folder = tmp_path / "snapshots" / "0123abcd"  # a hub cache folder: a commit hash
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA3_8B))
    assert import_hf(folder / "config.json").name == "llama"  # no name key: the model_type
    assert import_hf(str(folder / "config.json"), name="x").name == "x"
    with_path = {**LLAMA3_8B, "_name_or_path": "meta-llama/Meta-Llama-3-8B"}
    (folder / "config.json").write_text(json.dumps(with_path))
    assert import_hf(folder / "config.json").name == "meta-llama-3-8b"
    assert import_hf({**LLAMA3_8B, "name_or_path": "org/My Model/"}).name == "my-model"
    assert import_hf(with_path, name="mine").name == "mine"


@pytest.mark.parametrize("model_type", ["mamba", "jamba", "falcon_mamba", "rwkv", "t5"])
def test_unsupported_model_type_is_refused_even_under_a_supported_class(model_type: str) -> None:
    """A model_type without an importer is refused, naming it, whatever 'architectures' says."""
    msg = _err({**LLAMA3_8B, "model_type": model_type})
    assert f"model_type: unsupported model type {model_type!r}" in msg
    assert "llama" in msg  # the supported ones are listed


def test_model_type_must_match_the_architecture() -> None:
    """A supported model_type that another importer reads (gpt2 under Llama) is refused."""
    msg = _err({**LLAMA3_8B, "model_type": "gpt2"})
    assert "model_type: 'gpt2' does not match architectures[0] 'LlamaForCausalLM'" in msg
    assert import_hf({**LLAMA3_8B, "model_type": "mistral"}).num_layers == 32  # same importer


def test_empty_name_is_refused() -> None:
    """An explicit empty name is a SpecError naming 'name', not an unnamed model."""
    with pytest.raises(SpecError, match="name: must be a non-empty string"):
        import_hf(LLAMA3_8B, name="  ")


# --------------------------------------------------------------------------------------------
# Errors: one line, naming the key
# --------------------------------------------------------------------------------------------
def _err(cfg: Any) -> str:
    with pytest.raises(SpecError) as info:
        import_hf(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_unsupported_architecture() -> None:
    """An architecture without an importer names it and lists the supported ones."""
    msg = _err({**LLAMA3_8B, "architectures": ["FalconForCausalLM"]})
    assert "architectures" in msg and "'FalconForCausalLM'" in msg
    for arch in SUPPORTED_ARCHITECTURES:
        assert arch in msg
    assert "'t5'" in _err({"model_type": "t5"})
    assert "architectures: required key is missing" in _err({"hidden_size": 4096})


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (LLAMA3_8B, "num_hidden_layers"),
        (LLAMA3_8B, "intermediate_size"),
        (LLAMA3_8B, "vocab_size"),
        (MIXTRAL_8X7B, "num_local_experts"),
        (MIXTRAL_8X7B, "num_experts_per_tok"),
        (GPT2, "n_embd"),
        (GPT2, "n_layer"),
        (PYTHIA_1_4B, "intermediate_size"),
    ],
)
def test_missing_key_is_named(cfg: dict[str, Any], key: str) -> None:
    """A missing required key is a SpecError naming the key and the architecture."""
    msg = _err({k: v for k, v in cfg.items() if k != key})
    assert f"{key}: required key is missing" in msg
    assert cfg["architectures"][0] in msg


def test_wrong_types_are_named() -> None:
    """A string or non-positive number where a count belongs names the key and the value."""
    assert "hidden_size: must be a positive integer, got '4096'" in _err(
        {**LLAMA3_8B, "hidden_size": "4096"}
    )
    assert "num_key_value_heads: must be a positive integer, got 0" in _err(
        {**LLAMA3_8B, "num_key_value_heads": 0}
    )
    assert "tie_word_embeddings: must be true or false, got 'no'" in _err(
        {**LLAMA3_8B, "tie_word_embeddings": "no"}
    )
    assert "architectures: must be a list" in _err({**LLAMA3_8B, "architectures": "Llama"})


def test_inconsistent_shapes_are_reported() -> None:
    """Shapes the Model rejects (heads not divisible by KV heads) come back as SpecError."""
    msg = _err({**LLAMA3_8B, "num_key_value_heads": 5})
    assert "num_attention_heads" in msg and "num_kv_heads=5" in msg


def test_file_errors(tmp_path: Path) -> None:
    """Missing, non-JSON and non-object config files are one-line SpecErrors naming the file."""
    missing = tmp_path / "config.json"
    assert f"{missing}: file not found" in _err(missing)
    missing.write_text("{not json")
    assert "JSON syntax error" in _err(missing)
    missing.write_text("[1, 2]")
    assert "expected a JSON object" in _err(missing)
