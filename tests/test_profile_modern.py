"""Tests of ``solver/profile/modern.py`` (the modern-stack ground-truth script) on CPU.

The hand-written models are checked against an independent reference (explicit K/V repeat,
softmax attention with an explicit causal mask, RoPE written per rotation pair), recompute
against no recompute (same loss, same gradients), the two GQA paths against each other, and,
where transformers is importable, against ``transformers.LlamaForCausalLM`` with the same
weights.  The whole script runs once end to end (``--cpu --tiny``) as a subprocess in which
pydantic, yaml, typer, rich, ortools and scipy cannot be imported, and its JSON is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from solver.profile import modern, modern_cases, modern_models, modern_plan  # noqa: E402
from solver.profile.modern_models import DecoderLM, ModelShape  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("pydantic", "yaml", "typer", "rich", "ortools", "scipy")
CPU = torch.device("cpu")

LLAMA = ModelShape("llama-t", "llama", 64, 2, 4, 96, 128, kv_heads=2, max_seq=32)
GPT = ModelShape("gpt-t", "gpt", 64, 2, 4, 256, 100, max_seq=32)
BARE = ModelShape("bare-t", "gpt", 64, 3, 4, 256, 0, max_seq=32)


def _reference_llama_logits(model: DecoderLM, ids: Any) -> Any:
    """Logits of ``model``'s weights computed without any of its code paths."""
    sh = model.shape
    assert model.embed is not None and model.head is not None and model.norm is not None
    b, s = ids.shape
    d, hq, hkv = sh.head_dim, sh.heads, sh.kv

    def rms(x: Any, w: Any) -> Any:
        return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + sh.norm_eps))

    def rope(x: Any) -> Any:  # x [b, heads, s, d]; pair (i, i + d/2) rotated by pos * f_i
        out = x.clone()
        for i in range(d // 2):
            f = sh.rope_theta ** (-2.0 * i / d)
            ang = torch.arange(s, dtype=torch.float64).to(x.dtype) * f
            c, sn = torch.cos(ang), torch.sin(ang)
            a, bb = x[..., i], x[..., i + d // 2]
            out[..., i] = a * c - bb * sn
            out[..., i + d // 2] = bb * c + a * sn
        return out

    x = model.embed.weight[ids]
    mask = torch.ones(s, s, dtype=torch.bool).tril()
    for blk in model.blocks:
        y = rms(x, blk.attn_norm.weight)
        q = (y @ blk.wq.weight.T).view(b, s, hq, d).transpose(1, 2)
        k = (y @ blk.wk.weight.T).view(b, s, hkv, d).transpose(1, 2)
        v = (y @ blk.wv.weight.T).view(b, s, hkv, d).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / d**0.5
        p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        o = (p @ v).transpose(1, 2).reshape(b, s, hq * d)
        x = x + o @ blk.wo.weight.T
        y = rms(x, blk.mlp_norm.weight)
        g, u = y @ blk.gate.weight.T, y @ blk.up.weight.T
        x = x + (g * torch.sigmoid(g) * u) @ blk.down.weight.T
    return rms(x, model.norm.weight) @ model.head.weight.T


def _grads(model: Any, inp: Any) -> tuple[float, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    loss = model(inp)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_llama_matches_an_independent_reference() -> None:
    """Logits in float64 to 1e-10; the loss (upcast with ``.float()`` as Hugging Face does,
    so computed in float32) to float32 precision."""
    torch.manual_seed(0)
    model = DecoderLM(LLAMA, CPU, torch.float64)
    ids = modern_models.make_inputs(LLAMA, 2, 24, CPU, torch.float64)
    with torch.no_grad():
        want = _reference_llama_logits(model, ids)
        logits, _ = model.prefill(ids, last_only=False)
        torch.testing.assert_close(logits, want, rtol=0, atol=1e-10)
        last, cache = model.prefill(ids, last_only=True)
        torch.testing.assert_close(last, want[:, -1:], rtol=0, atol=1e-10)
        assert [tuple(k.shape) for k, _ in cache] == [(2, LLAMA.kv, 24, LLAMA.head_dim)] * 2
        loss = model(ids)
    ref = F.cross_entropy(want[:, :-1].reshape(-1, LLAMA.vocab), ids[:, 1:].reshape(-1))
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(ref)) < 1e-6
    assert abs(float(loss) - torch.log(torch.tensor(float(LLAMA.vocab)))) < 0.1  # ~uniform


@pytest.mark.parametrize("shape", [LLAMA, GPT, BARE], ids=lambda s: s.name)
def test_recompute_gives_the_same_loss_and_gradients(shape: ModelShape) -> None:
    torch.manual_seed(1)
    model = DecoderLM(shape, CPU, torch.float32)
    inp = modern_models.make_inputs(shape, 2, 16, CPU, torch.float32)
    loss0, g0 = _grads(model, inp)
    model.recompute = True
    loss1, g1 = _grads(model, inp)
    assert loss0 == loss1
    assert g0.keys() == g1.keys() and len(g0) > 0
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], rtol=0, atol=0, msg=name)


def test_gqa_modes_agree() -> None:
    torch.manual_seed(2)
    q = torch.randn(2, 8, 16, 8, dtype=torch.float64)
    k = torch.randn(2, 2, 16, 8, dtype=torch.float64)
    v = torch.randn(2, 2, 16, 8, dtype=torch.float64)
    a = modern_models.causal_attention(q, k, v, "enable_gqa")
    b = modern_models.causal_attention(q, k, v, "repeat")
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="gqa"):
        modern_models.causal_attention(q, k, v, "nope")


def test_matches_transformers_llama_with_the_same_weights() -> None:
    if modern_models.transformers_version() is None:
        pytest.skip("transformers not importable")
    torch.manual_seed(3)
    ours = DecoderLM(LLAMA, CPU, torch.float32)
    hf = modern_models.build_hf_llama(LLAMA, CPU, torch.float32)
    modern_models.copy_weights_to_hf(ours, hf)
    assert modern_models.n_params(hf) == modern_models.n_params(ours)
    assert hf.config._attn_implementation == "sdpa"
    ids = modern_models.make_inputs(LLAMA, 2, 20, CPU, torch.float32)
    want = hf(input_ids=ids, labels=ids).loss
    got = ours(ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    logits, cache = ours.prefill(ids, last_only=False)
    torch.testing.assert_close(logits, hf(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
    assert len(cache) == LLAMA.layers


def test_parameter_and_flop_counts() -> None:
    model = DecoderLM(LLAMA, CPU, torch.float32)
    linear = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name != "head"
    )
    assert linear == LLAMA.layers * LLAMA.layer_matmul_params()
    assert LLAMA.matmul_params() == linear + LLAMA.hidden * LLAMA.vocab
    # Llama-3-8B block: q, o 4096^2 each; k, v 4096 x 1024 each; gate, up, down 4096 x 14336
    assert (
        modern_plan.LLAMA3_8B.layer_matmul_params()
        == 2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    )
    fl = modern_models.model_flops(modern_plan.LLAMA3_8B, 1, 2048)
    assert fl["attention_fwd_full"] == 4.0 * 2048**2 * 4096 * 4
    assert fl["attention_fwd_causal"] == pytest.approx(fl["attention_fwd_full"] * 2049 / 4096)
    assert fl["step_model_full_attention"] == 3 * (fl["matmul_fwd"] + fl["attention_fwd_full"])


def test_saved_tensor_ledger_charges_each_block_alike() -> None:
    torch.manual_seed(4)
    model = DecoderLM(BARE, CPU, torch.float32)
    inp = modern_models.make_inputs(BARE, 1, 16, CPU, torch.float32)
    led = modern_cases.saved_tensor_ledger(model, lambda: model(inp), list(model.blocks))
    per = led["by_region_bytes"]
    blocks = [per[f"block{i}"] for i in range(BARE.layers)]
    assert len(set(blocks[1:])) == 1 and blocks[0] >= blocks[1] > 0
    assert led["total_bytes"] == sum(per.values())
    assert led["block0_tensors"] and all(t["bytes"] > 0 for t in led["block0_tensors"])
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert sum(p.numel() * 4 for p in model.parameters()) > 0 and params


def test_cpu_tiny_run_end_to_end(tmp_path: Path) -> None:
    """``python solver/profile/modern.py --cpu --tiny`` without the solver's dependencies."""
    blocked = tmp_path / "blocked"
    for mod in BLOCKED:
        (blocked / mod).mkdir(parents=True)
        (blocked / mod / "__init__.py").write_text(f"raise ImportError('{mod} is blocked')\n")
    out = tmp_path / "raw.json"
    path = [str(blocked), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    # one thread: toy tensors on a loaded 2-core machine run 3x faster than with two
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "solver/profile/modern.py"),
            "--cpu",
            "--tiny",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done" in proc.stdout
    raw = json.loads(out.read_text())
    plan = modern_plan.tiny_plan()
    assert raw["format"] == modern.FORMAT
    assert raw["env"]["torch"] == torch.__version__ and raw["env"]["device"] == "cpu"
    assert raw["settings"]["llama_gqa_mode"] in ("enable_gqa", "repeat")
    assert set(raw["flop_formulas"]) >= {"gemm", "attention_fwd_full", "sdpa_fwdbwd_exec"}

    micro = raw["micro"]
    assert micro["copy"]["status"] == "ok" and micro["copy"]["gbps_read_plus_write_median"] > 0
    passes = {(g["model"], g["gemm"], g["pass"]) for g in micro["gemm"]}
    assert ("llama-tiny", "gate_up", "wgrad") in passes and len(passes) == 1 + 4 * 3
    assert all(g["tflops"] > 0 for g in micro["gemm"])
    default = [s for s in micro["sdpa"] if s["backend"] == "default"]
    assert default and all(s["status"] == "ok" and "dispatched" in s for s in default)
    assert all(s["fwdbwd_ms_median"] > 0 for s in default)
    assert all("fwd_error" in s for s in micro["sdpa"] if s["backend"] == "cudnn")  # no GPU

    train = raw["train"]
    hand = [c for c in train if c["impl"] == "hand"]
    want = sum(len(g.points) * len(g.recompute) for g in plan.train if g.impl == "hand")
    assert len(hand) == want
    for c in hand:
        assert c["status"] == "ok", c.get("error")
        assert len(c["step_ms"]) == plan.steps
        assert c["fwd_ms_median"] < c["fwdbwd_ms_median"] < c["step_ms_median"]
        assert c["optimizer_ms_median"] > 0 and c["params"] > 0
        assert c["adamw_fused"] is True
        assert ("saved_tensors" in c) == (not c["recompute"])
    assert {c["attention_backend"] for c in hand if "attention_backend" in c} == {"flash"}
    bare = [c for c in hand if c["model"] == "gpt-bare-tiny" and not c["recompute"]]
    assert all(c["saved_tensors"]["by_region_bytes"].get("block0") for c in bare)

    hf = [c for c in train if c["impl"] == "hf"]
    assert len(hf) == 1
    if raw["env"]["transformers"] is None:
        assert hf[0]["status"] == "error" and "transformers" in hf[0]["error"]
    else:
        assert hf[0]["status"] == "ok" and hf[0]["attn_implementation"] == "sdpa"

    prefill = raw["prefill"]
    assert len(prefill) == 2 * len(plan.prefill_seqs)
    assert all(p["status"] == "ok" and p["ms_median"] > 0 for p in prefill)
    assert all(p["kv_cache_bytes"] > 0 for p in prefill)


def test_a_failing_case_is_recorded_and_the_run_goes_on() -> None:
    r = modern_plan._Run(modern_plan.tiny_plan(), CPU, torch.float32, None, 1e9, ())

    def oom() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def bad() -> None:
        raise ValueError("boom")

    rec: dict[str, Any] = {}
    assert not r.case(rec, "oom", oom)
    assert rec["status"] == "oom" and "out of memory" in rec["error"]
    rec2: dict[str, Any] = {}
    assert not r.case(rec2, "bad", bad)
    assert rec2["status"] == "error" and "boom" in rec2["traceback"]
    rec3: dict[str, Any] = {}
    assert r.case(rec3, "ok", lambda: None) and rec3["status"] == "ok"
    late = modern_plan._Run(modern_plan.tiny_plan(), CPU, torch.float32, None, -1.0, ())
    rec4: dict[str, Any] = {}
    assert not late.case(rec4, "late", lambda: None) and rec4["status"] == "skipped"
