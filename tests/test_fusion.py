"""The validation runner's Megatron-style fused block (``GPTConfig.fusion="compile"``).

On GPUs the three fused functions are compiled by Inductor into Triton kernels; here they are
traced by the same ``torch.compile`` (forward and backward graphs through AOTAutograd) with the
``aot_eager`` backend, which needs no C++ compiler.  With dropout off the fused block must be
the eager block to float64 rounding, loss and every gradient; with dropout on it must drop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from solver.profile import gpt
from solver.profile.driver import build_job, parser
from solver.profile.gpt import GPTStage, StageLayout, init_local, parse_shape
from solver.profile.tensor_parallel import TPComm


@pytest.fixture(autouse=True)
def _aot_eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(gpt, "COMPILE_BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


def _stage(fusion: str, dropout: float = 0.0, head: bool = True) -> GPTStage:
    cfg = parse_shape("h64-l2-a4-v128", seq_len=16, dropout=dropout, fusion=fusion)
    layout = StageLayout(0, cfg.layers - 1, embedding=True, head=head)
    tensors = init_local(cfg, layout, 3, torch.device("cpu"), torch.float64)
    return GPTStage(cfg, layout, tensors, TPComm(None, 1, 0))


def _loss_and_grads(model: GPTStage) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(0, 128, (2, 16), generator=gen)
    targets = torch.randint(0, 128, (2, 16), generator=gen)
    model.train()
    loss = model(ids, targets)
    loss.backward()
    grads = {}
    for n, p in model.named_model_parameters():
        assert p.grad is not None, n
        grads[n] = p.grad.clone()
    return loss.detach(), grads


@pytest.mark.parametrize("fusion", ["compile", "megatron"])
def test_fused_step_equals_eager_step_loss_and_gradients(fusion: str) -> None:
    loss_e, grads_e = _loss_and_grads(_stage("none"))
    loss_f, grads_f = _loss_and_grads(_stage(fusion))
    assert torch.allclose(loss_f, loss_e, rtol=0, atol=1e-12)
    assert grads_f.keys() == grads_e.keys()
    for n in grads_e:
        assert torch.allclose(grads_f[n], grads_e[n], rtol=1e-10, atol=1e-12), n


def test_gradient_accumulation_fusion_adds_into_existing_grad_views() -> None:
    """As the runner's DP path does: ``.grad`` are views of one flat buffer, several
    micro-batches accumulate into them (the fused path's ``addmm_``, not a new tensor)."""
    results = []
    for fusion in ("none", "megatron"):
        model = _stage(fusion)
        params = [p for _, p in model.named_model_parameters()]
        flat = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        for _ in range(2):
            _loss_and_grads(model)
        buf = flat.untyped_storage().data_ptr()
        assert all(
            p.grad is not None and p.grad.untyped_storage().data_ptr() == buf for p in params
        )
        results.append(flat.clone())
    eager, fused_ = results
    assert float(eager.abs().max()) > 0
    assert torch.allclose(fused_, eager, rtol=1e-10, atol=1e-12)


def test_fused_functions_are_what_the_block_calls() -> None:
    """The compiled path really runs: each fused function is compiled once it was called."""
    gpt._COMPILED.clear()
    _loss_and_grads(_stage("megatron"))
    names = {name for name, backend in gpt._COMPILED if backend == "aot_eager"}
    assert names == {"_bias_gelu", "_bias_dropout_add", "_mask_softmax"}


def test_fused_dropout_drops_and_eval_mode_is_deterministic() -> None:
    model = _stage("megatron", dropout=0.5, head=False)
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.train()
        a, b = model(ids), model(ids)
        model.eval()
        c, d = model(ids), model(ids)
    assert not torch.allclose(a, b)  # a fresh dropout mask per call
    assert torch.equal(c, d)


def test_fusion_is_validated_and_defaults_by_device() -> None:
    with pytest.raises(ValueError, match="fusion: must be one of"):
        parse_shape("h64-l2-a4", seq_len=8, fusion="triton")
    assert parse_shape("h64-l2-a4", seq_len=8, fusion="megatron").fusion == "megatron"
    job = build_job(parser().parse_args(["all", "--cpu", "--out", "x.json"]))
    assert {c["shape"]["fusion"] for c in job["train"]} == {"none"}
    assert job["profile"]["sizes"]["block_fusion"] == "none"
    job = build_job(parser().parse_args(["all", "--cpu", "--fusion", "compile", "--out", "x"]))
    assert {c["shape"]["fusion"] for c in job["train"]} == {"compile"}
    assert job["profile"]["sizes"]["block_fusion"] == "compile"


def test_validate_cli_refuses_an_unknown_fusion_mode() -> None:
    from typer.testing import CliRunner

    from solver.cli import app

    res = CliRunner().invoke(app, ["validate", "--cpu", "--fusion", "triton"])
    assert res.exit_code == 2
    assert "--fusion: must be one of none, compile, megatron, got 'triton'" in res.output
    assert "Traceback" not in res.output
