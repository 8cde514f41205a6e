"""Predicted vs measured: torchtitan-style Llama-3-8B blocks under its checkpointing policies.

    python benchmarks/validation/modern/torchtitan_compare.py [RAW.json]

Reads the raw JSON of ``torchtitan_block.py`` (default: the committed H100 run,
``raw-h100x1-torchtitan-block.json``) and prints, per kernel stack (eager, per-block
``torch.compile``) and recompute policy (none, full, torchtitan's per-op ``selective_op``,
``full_half``), the evaluator's forward+backward time per block and stored activation bytes
per block (in s*b*h units) against the measurement (4-layer runs, seq 8192, micro-batch 1,
bf16, catalog H100 uncalibrated).  Writes ``torchtitan_compare-<shape>.json`` beside the raw
file.  ``--shape llama2-13b`` runs of ``torchtitan_block.py`` (MHA, seq 4096, micro-batch 2)
compare the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from solver.catalog import resolve_gpu
from solver.costmodel import block_activation_bytes, block_time
from solver.costmodel.comm import LinkTier
from solver.costmodel.stack import Stack
from solver.specs import Model

HERE = Path(__file__).resolve().parent
KEY = {"none": "none", "full": "full", "selective_op": "op", "full_half": "half"}


def main(argv: list[str]) -> int:
    raw = Path(argv[0]) if argv else HERE / "raw-h100x1-torchtitan-block.json"
    d = json.loads(raw.read_text())
    sh = d["shape"]
    model = Model(
        name="llama3-8b-block",
        num_layers=4,
        hidden_size=sh["dim"],
        num_attention_heads=sh["heads"],
        num_kv_heads=sh["kv_heads"],
        ffn_hidden_size=sh["ffn"],
        vocab_size=128256,
        mlp="swiglu",
        tied_embeddings=False,
        learned_position_embeddings=False,
    )
    gpu = resolve_gpu("H100-SXM5-80GB")
    link = LinkTier(450.0, 1.0, "nvlink")  # unused at tp=1
    meas = {(c["mode"], c["compiled"]): c for c in d["cases"] if c.get("layers") == 4}
    rows = []
    for compiled in (False, True):
        stack = Stack(kernels="compiled_blocks" if compiled else "eager")
        base = meas[("none", compiled)]
        for rc, mode in KEY.items():
            c = meas[(mode, compiled)]
            sbh = c["batch"] * c["seq"] * sh["dim"]
            kw = dict(tp=1, micro_batch=c["batch"], seq=c["seq"], sequence_parallel=False)
            t = block_time(
                model, gpu, recompute=rc, precision="bf16", tp_link=link, stack=stack, **kw
            )  # type: ignore[arg-type]
            t_none = block_time(
                model, gpu, recompute="none", precision="bf16", tp_link=link, stack=stack, **kw
            )  # type: ignore[arg-type]
            a = block_activation_bytes(model, recompute=rc, stack=stack, **kw)  # type: ignore[arg-type]
            rows.append(
                dict(
                    kernels=stack.kernels,
                    recompute=rc,
                    pred_ms=(t.fwd_s + t.bwd_s) * 1e3,
                    meas_ms=c["step_s"] / 4 * 1e3,
                    pred_ratio=(t.fwd_s + t.bwd_s) / (t_none.fwd_s + t_none.bwd_s),
                    meas_ratio=c["step_s"] / base["step_s"],
                    pred_sbh=a / sbh,
                    meas_sbh=c["stored_after_forward"] / 4 / sbh,
                )
            )
    print(f"{d['device']}  torch {d['torch']}  CUDA {d['cuda']}")
    print(
        f"{'kernels':16s} {'recompute':13s} {'ms pred':>8s} {'meas':>7s} {'err':>7s} "
        f"{'x none pred':>11s} {'meas':>6s} {'sbh pred':>9s} {'meas':>6s} {'err':>7s}"
    )
    for r in rows:
        print(
            f"{r['kernels']:16s} {r['recompute']:13s} {r['pred_ms']:8.2f} {r['meas_ms']:7.2f} "
            f"{r['pred_ms'] / r['meas_ms'] - 1:+7.1%} {r['pred_ratio']:11.3f} {r['meas_ratio']:6.3f} "
            f"{r['pred_sbh']:9.2f} {r['meas_sbh']:6.2f} {r['pred_sbh'] / r['meas_sbh'] - 1:+7.1%}"
        )
    out = raw.with_name(f"torchtitan_compare-{sh.get('name', 'llama3-8b')}.json")
    out.write_text(json.dumps(dict(raw=raw.name, rows=rows), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
