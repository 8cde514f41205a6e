"""The training and prefill cases of :mod:`solver.profile.modern` (its sections A and B).

Timing of whole training steps (forward, backward, ``optimizer.step``, ``zero_grad``) and
their memory, the ledger of the tensors autograd saves for backward, prefill under
``torch.inference_mode``, and the loops that build each training group's model (hand-written
or Hugging Face), run its points without and with recompute as guarded cases, then the
prefill cases.  Imports only the standard library and torch (transformers through
:mod:`~solver.profile.modern_models`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from solver.profile.modern_models import (
    DecoderLM,
    ModelShape,
    build_hf_llama,
    make_inputs,
    model_flops,
    n_params,
    transformers_version,
)
from solver.profile.modern_plan import TrainGroup, _Run
from solver.profile.modern_timing import (
    Clock,
    _alloc,
    _backend_of,
    _cleanup,
    _dispatch_ops,
    _gb,
    _med,
)

__all__ = ["saved_tensor_ledger", "time_prefill", "time_training"]


# ----------------------------------------------------------------------------------------------
# A. training steps
# ----------------------------------------------------------------------------------------------
def time_training(
    loss_fn: Callable[[], torch.Tensor],
    opt: torch.optim.Optimizer,
    device: torch.device,
    warmup: int,
    steps: int,
) -> dict[str, Any]:
    """Time ``warmup + steps`` training steps; memory over the timed steps.

    A step is ``loss_fn()`` (forward), ``backward``, ``opt.step()``, ``opt.zero_grad()``
    (gradients set to ``None``).  ``after_init_allocated_bytes``: allocated between steps after
    the warm-up (weights + optimizer states, no gradients); ``peak_*``: over the timed steps;
    ``peak_allocated_incl_warmup_bytes``: over all steps, the first (which creates the Adam
    states) included.  ``fwd_live_bytes``: allocated after the forward minus before it.
    """
    if warmup < 1:
        raise ValueError("warmup: at least 1 step (the Adam states are made in the first)")
    clock = Clock(device)
    cuda = device.type == "cuda"
    _cleanup(device)
    out: dict[str, Any] = {"allocated_before_first_step_bytes": _alloc(device)}
    marks: list[tuple[Any, ...]] = []
    live: list[int] = []
    losses: list[torch.Tensor] = []
    for i in range(warmup + steps):
        a0 = _alloc(device)
        m0 = clock.mark()
        loss = loss_fn()
        m1 = clock.mark()
        a1 = _alloc(device)
        loss.backward()  # type: ignore[no-untyped-call]
        m2 = clock.mark()
        opt.step()
        m3 = clock.mark()
        opt.zero_grad(set_to_none=True)
        m4 = clock.mark()
        losses.append(loss.detach())
        del loss
        if i >= warmup:
            marks.append((m0, m1, m2, m3, m4))
            if a0 is not None and a1 is not None:
                live.append(a1 - a0)
        if i == warmup - 1:
            clock.sync()
            out["after_init_allocated_bytes"] = _alloc(device)
            if cuda:
                out["peak_allocated_incl_warmup_bytes"] = int(torch.cuda.max_memory_allocated())
                out["peak_reserved_incl_warmup_bytes"] = int(torch.cuda.max_memory_reserved())
                torch.cuda.reset_peak_memory_stats(device)
    clock.sync()
    step = [clock.ms(m[0], m[4]) for m in marks]
    fwd = [clock.ms(m[0], m[1]) for m in marks]
    fwdbwd = [clock.ms(m[0], m[2]) for m in marks]
    optim = [clock.ms(m[2], m[3]) for m in marks]
    zero = [clock.ms(m[3], m[4]) for m in marks]
    out.update(
        {
            "step_ms_median": _med(step),
            "fwdbwd_ms_median": _med(fwdbwd),
            "fwd_ms_median": _med(fwd),
            "optimizer_ms_median": _med(optim),
            "zero_grad_ms_median": _med(zero),
            "step_ms": step,
            "fwdbwd_ms": fwdbwd,
            "fwd_ms": fwd,
            "optimizer_ms": optim,
            "fwd_live_bytes": max(live) if live else None,
            "loss_first": float(losses[0]),
            "loss_last": float(losses[-1]),
        }
    )
    if cuda:
        stats = torch.cuda.memory_stats(device)
        out["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        out["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        out["num_alloc_retries"] = int(stats.get("num_alloc_retries", 0))
        out["num_ooms"] = int(stats.get("num_ooms", 0))
    return out


def saved_tensor_ledger(
    model: nn.Module, loss_fn: Callable[[], torch.Tensor], blocks: list[nn.Module]
) -> dict[str, Any]:
    """Bytes of the tensors autograd saves in one forward, parameters excluded.

    Deduplicated by storage (views of one buffer count once); each is charged to the region
    where it was first saved: ``pre`` (embeddings), ``block<i>`` or ``post`` (final norm, head,
    loss).  ``block0_tensors`` lists block 0's saved tensors (shape, dtype, bytes).
    """
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    region = ["pre"]
    seen: dict[int, tuple[str, int]] = {}
    block0: list[dict[str, Any]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            ptr, nbytes = st.data_ptr(), st.nbytes()
        except Exception:  # noqa: BLE001 - tensor subclasses without storage
            return t
        if nbytes == 0 or ptr in param_ptrs or ptr in seen:
            return t
        seen[ptr] = (region[0], nbytes)
        if region[0] == "block0":
            block0.append({"shape": list(t.shape), "dtype": str(t.dtype), "bytes": nbytes})
        return t

    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    handles = []
    for i, blk in enumerate(blocks):

        def pre(_m: nn.Module, _a: Any, name: str = f"block{i}") -> None:
            region[0] = name

        def post(_m: nn.Module, _a: Any, _o: Any) -> None:
            region[0] = "post"

        handles.append(blk.register_forward_pre_hook(pre))
        handles.append(blk.register_forward_hook(post))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            loss = loss_fn()
        # Run the backward so autograd frees every saved tensor: a bare ``del loss`` left one
        # forward's activations alive on the H100 run of 2026-12-07 (each later case's
        # after-init memory grew by exactly that much).
        loss.backward()  # type: ignore[no-untyped-call]
        model.zero_grad(set_to_none=True)
        del loss
    finally:
        for hd in handles:
            hd.remove()
    by_region: dict[str, int] = {}
    for name, nbytes in seen.values():
        by_region[name] = by_region.get(name, 0) + nbytes
    return {
        "total_bytes": sum(by_region.values()),
        "by_region_bytes": by_region,
        "block0_tensors": block0,
    }


def _make_optimizer(params: list[nn.Parameter]) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW, fused where this build supports it (returns whether it is fused)."""
    try:
        return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, fused=True), True
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01), False


# ----------------------------------------------------------------------------------------------
# B. prefill
# ----------------------------------------------------------------------------------------------
def time_prefill(
    model: DecoderLM,
    ids: torch.Tensor,
    device: torch.device,
    warmup: int,
    steps: int,
    last_only: bool,
) -> dict[str, Any]:
    """Forward-only prefill under ``torch.inference_mode``: time and memory above the weights."""
    clock = Clock(device)
    _cleanup(device)
    base = _alloc(device)
    marks: list[tuple[Any, Any]] = []
    cache_bytes = 0
    with torch.inference_mode():
        for i in range(warmup + steps):
            m0 = clock.mark()
            logits, cache = model.prefill(ids, last_only)
            m1 = clock.mark()
            cache_bytes = sum(k.numel() * k.element_size() * 2 for k, _ in cache)
            del logits, cache
            if i >= warmup:
                marks.append((m0, m1))
    clock.sync()
    ms = [clock.ms(a, b) for a, b in marks]
    out: dict[str, Any] = {
        "ms_median": _med(ms),
        "ms": ms,
        "kv_cache_bytes": cache_bytes,
        "base_allocated_bytes": base,
    }
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated())
        out["peak_allocated_bytes"] = peak
        out["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        out["peak_above_base_bytes"] = peak - (base or 0)
    return out


# ----------------------------------------------------------------------------------------------
# the training and prefill cases of a run
# ----------------------------------------------------------------------------------------------
def _train_case(
    run: _Run,
    rec: dict[str, Any],
    model: Any,
    opt: torch.optim.Optimizer,
    blocks: list[nn.Module],
    profile_dispatch: bool,
) -> None:
    """Body of one training case (fills ``rec``)."""
    dev, plan = run.device, run.plan
    shape = ModelShape(**rec["shape"])
    seq, mb, rc = rec["seq"], rec["micro_batch"], rec["recompute"]
    inp = make_inputs(shape, mb, seq, dev, run.dtype)
    if rec["impl"] == "hf":
        model.config.use_cache = False

        def loss_fn() -> torch.Tensor:
            out: torch.Tensor = model(input_ids=inp, labels=inp).loss
            return out

        rec["attn_implementation"] = str(getattr(model.config, "_attn_implementation", None))
    else:
        model.recompute = rc

        def loss_fn() -> torch.Tensor:
            out: torch.Tensor = model(inp)
            return out

    if profile_dispatch:
        # one profiled step: which attention kernels the model dispatches to

        def one_step() -> None:
            loss_fn().backward()  # type: ignore[no-untyped-call]
            opt.zero_grad(set_to_none=True)

        rec["attention_ops"] = _dispatch_ops(one_step, dev)
        rec["attention_backend"] = _backend_of(rec["attention_ops"])
        _cleanup(dev)
    rec.update(time_training(loss_fn, opt, dev, plan.warmup, plan.steps))
    if plan.ledger and not rc:
        _cleanup(dev)
        rec["saved_tensors"] = saved_tensor_ledger(model, loss_fn, blocks)
    peak = rec.get("peak_allocated_bytes")
    params = rec["params"]
    if peak is not None:
        rec["peak_minus_8B_per_param_bytes"] = peak - 8 * params
        after = rec.get("after_init_allocated_bytes")
        if after is not None:
            rec["peak_minus_after_init_bytes"] = peak - after
    step_ms = rec["step_ms_median"]
    for key in ("full", "causal"):
        rec[f"tflops_model_{key}_attention"] = rec["flops"][f"step_model_{key}_attention"] / (
            step_ms * 1e9
        )
    run.log(
        f"{rec['name']}: step {step_ms:.1f} ms (fwd {rec['fwd_ms_median']:.1f}, fwd+bwd "
        f"{rec['fwdbwd_ms_median']:.1f}, opt {rec['optimizer_ms_median']:.1f}), peak alloc "
        f"{_gb(rec.get('peak_allocated_bytes'))} GB, reserved "
        f"{_gb(rec.get('peak_reserved_bytes'))} GB, after-init "
        f"{_gb(rec.get('after_init_allocated_bytes'))} GB, fwd-live {_gb(rec.get('fwd_live_bytes'))}"
        f" GB, saved {_gb(rec.get('saved_tensors', {}).get('total_bytes'))} GB, "
        f"loss {rec['loss_last']:.3f}, {rec['tflops_model_full_attention']:.0f} TFLOP/s"
        f"{' attn=' + rec['attention_backend'] if 'attention_backend' in rec else ''}"
    )


def _build(run: _Run, shape: ModelShape, impl: str) -> Any:
    if impl == "hf":
        if transformers_version() is None:
            raise RuntimeError("transformers is not importable")
        return build_hf_llama(shape, run.device, run.dtype)
    return DecoderLM(shape, run.device, run.dtype, gqa=run.gqa)


def _train_group(run: _Run, group: TrainGroup) -> None:
    dev, dtype = run.device, run.dtype
    shape = group.shape
    out: list[dict[str, Any]] = run.results.setdefault("train", [])
    built: dict[str, Any] = {}
    head: dict[str, Any] = {"model": shape.name, "impl": group.impl}

    def build() -> None:
        _cleanup(dev)
        a0 = _alloc(dev)
        torch.manual_seed(0)
        model = _build(run, shape, group.impl)
        built["model"] = model
        a1 = _alloc(dev)
        built["weights"] = None if a0 is None or a1 is None else a1 - a0
        built["opt"], built["fused"] = _make_optimizer(list(model.parameters()))
        run.log(
            f"built {shape.name} ({group.impl}): {n_params(model) / 1e9:.3f} B params, "
            f"weights {_gb(built['weights'])} GB, fused AdamW {built['fused']}"
        )

    if not run.case(head, f"build {shape.name} ({group.impl})", build):
        for seq, mb in group.points:
            for rc in group.recompute:
                out.append({**head, "seq": seq, "micro_batch": mb, "recompute": rc})
        built.clear()
        _cleanup(dev)
        run.dump()
        return
    model, opt = built["model"], built["opt"]
    params = n_params(model)
    blocks = list(model.blocks) if group.impl == "hand" else list(model.model.layers)
    first = True
    for seq, mb in group.points:
        for rc in group.recompute:
            name = f"{shape.name}/{group.impl}/s{seq}/b{mb}/{'rc' if rc else 'norc'}"
            rec: dict[str, Any] = {
                "name": name,
                "model": shape.name,
                "impl": group.impl,
                "shape": asdict(shape),
                "params": params,
                "weights_bytes": built["weights"],
                "seq": seq,
                "micro_batch": mb,
                "tokens": seq * mb,
                "recompute": rc,
                "dtype": str(dtype).replace("torch.", ""),
                "adamw_fused": built["fused"],
                "flops": model_flops(shape, mb, seq),
            }
            run.case(rec, name, functools.partial(_train_case, run, rec, model, opt, blocks, first))
            first = False
            opt.zero_grad(set_to_none=True)
            out.append(rec)
            run.dump()
    built.clear()
    opt = None
    if isinstance(model, DecoderLM) and shape == run.plan.prefill_shape and run.wants("prefill"):
        _cleanup(dev)
        _prefill(run, model)
    model = None
    _cleanup(dev)


def _prefill(run: _Run, model: DecoderLM) -> None:
    plan, dev = run.plan, run.device
    run.prefill_done = True
    out: list[dict[str, Any]] = run.results.setdefault("prefill", [])
    model.eval()
    sh = model.shape
    for seq in plan.prefill_seqs:
        for last_only in (True, False):
            name = f"{sh.name}/prefill/s{seq}/b1/{'last' if last_only else 'all'}-logits"
            rec: dict[str, Any] = {
                "name": name,
                "model": sh.name,
                "seq": seq,
                "batch": 1,
                "last_logits_only": last_only,
                "params": n_params(model),
            }

            def body(
                rec: dict[str, Any] = rec,
                seq: int = seq,
                last_only: bool = last_only,
                name: str = name,
            ) -> None:
                ids = make_inputs(sh, 1, seq, dev, run.dtype)
                rec.update(time_prefill(model, ids, dev, plan.warmup, plan.steps, last_only))
                fl = model_flops(sh, 1, seq)
                head_all = 2.0 * seq * sh.hidden * sh.vocab
                head_fwd = 2.0 * (1 if last_only else seq) * sh.hidden * sh.vocab
                flops = fl["matmul_fwd"] - head_all + head_fwd
                rec["flops_full_attention"] = flops + fl["attention_fwd_full"]
                rec["flops_causal_attention"] = flops + fl["attention_fwd_causal"]
                rec["tflops_full_attention"] = rec["flops_full_attention"] / (
                    rec["ms_median"] * 1e9
                )
                run.log(
                    f"{name}: {rec['ms_median']:.1f} ms, peak above weights "
                    f"{_gb(rec.get('peak_above_base_bytes'))} GB, "
                    f"{rec['tflops_full_attention']:.0f} TFLOP/s"
                )

            run.case(rec, name, body)
            out.append(rec)
            run.dump()
    model.train()
