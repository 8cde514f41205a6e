"""Compare a parallel run with the same step on one device (torch; rank 0 of a check run).

The parallel ranks return their TP shards by full-model parameter name; here they are put
back together (:func:`~solver.profile.gpt.unshard`) per DP replica and set beside the
single-device reference, so a test can assert ``allclose`` for the loss, every parameter's
gradient and every updated parameter (training) or every step's logits (inference).
"""

from __future__ import annotations

from typing import Any

import torch

from .cases import reference_inference, reference_train
from .gpt import GPTConfig, unshard
from .plans import PlanLayout

__all__ = ["assemble", "compare_check"]


def assemble(
    cfg: GPTConfig, lay: PlanLayout, tensors: list[dict[str, Any] | None], key: str
) -> list[dict[str, torch.Tensor]]:
    """Per DP replica, the full tensors ``key`` ('grads' or 'params') from the ranks' shards."""
    out: list[dict[str, torch.Tensor]] = []
    for r in range(lay.dp):
        shards: dict[str, dict[int, torch.Tensor]] = {}
        for t in tensors:
            if t is None or t["pos"][1] != r:
                continue
            for name, x in t[key].items():
                shards.setdefault(name, {})[t["pos"][2]] = x
        full: dict[str, torch.Tensor] = {}
        for name, by_rank in shards.items():
            if sorted(by_rank) != list(range(lay.tp)):
                raise ValueError(
                    f"{name}: shards of TP ranks {sorted(by_rank)}, need 0..{lay.tp - 1}"
                )
            full[name] = unshard(cfg, name, [by_rank[j] for j in range(lay.tp)])
        out.append(full)
    return out


def _max_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))
        raise ValueError(f"parameters differ between the runs: {missing[:4]}")
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def compare_check(
    case: dict[str, Any],
    lay: PlanLayout,
    tensors: list[dict[str, Any] | None],
    dtype: torch.dtype,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON summary with the largest differences, the tensors of both runs)."""
    cfg = GPTConfig.from_dict(case["shape"])
    if case["kind"] == "training":
        ref = reference_train(
            cfg,
            global_batch=case["global_batch"],
            micro_batch=case["micro_batch"],
            seed=case["seed"],
            dtype=dtype,
        )
        grads = assemble(cfg, lay, tensors, "grads")
        params = assemble(cfg, lay, tensors, "params")
        losses = [
            t["loss"]
            for t in tensors
            if t is not None and t["loss"] is not None and t["pos"][2] == 0
        ]
        loss = sum(losses) / len(losses)
        summary = {
            "name": case["name"],
            "loss": loss,
            "reference_loss": ref["loss"],
            "loss_abs_err": abs(loss - ref["loss"]),
            "grad_max_abs_err": max(_max_err(g, ref["grads"]) for g in grads),
            "param_max_abs_err": max(_max_err(p, ref["params"]) for p in params),
            "max_abs_grad": max(float(g.abs().max()) for g in ref["grads"].values()),
            "parameters": len(ref["grads"]),
        }
        return summary, {"reference": ref, "loss": loss, "grads": grads, "params": params}
    ref_logits = reference_inference(
        cfg,
        batch=case["batch"],
        prompt=case["prompt"],
        gen=case["gen"],
        seed=case["seed"],
        dtype=dtype,
    )
    last = [t for t in tensors if t is not None and t["logits"] is not None]
    logits: list[torch.Tensor] = last[0]["logits"]
    if len(logits) != len(ref_logits):
        raise ValueError(f"logits: {len(logits)} steps, the reference has {len(ref_logits)}")
    pairs = list(zip(logits, ref_logits))  # noqa: B905 (lengths checked; Python 3.9 has no strict=)
    errs = [float((a - b).abs().max()) for a, b in pairs]
    summary = {
        "name": case["name"],
        "steps": len(logits),
        "logits_max_abs_err": max(errs),
        "tokens_equal": all(torch.equal(a.argmax(-1), b.argmax(-1)) for a, b in pairs),
    }
    return summary, {"reference": ref_logits, "logits": [t["logits"] for t in last]}
