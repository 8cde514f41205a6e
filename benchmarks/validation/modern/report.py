"""Markdown tables of a ``solver/profile/modern.py`` run (stdlib only).

    python benchmarks/validation/modern/report.py benchmarks/validation/modern/raw-h100x1-modern.json

Prints the training, prefill and micro-benchmark tables and the derived memory / recompute /
attention numbers that ``README.md`` beside this file quotes.  Memory figures are decimal GB
(1e9 bytes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GB = 1e9


def _gb(x: float | None) -> str:
    return "-" if x is None else f"{x / GB:.2f}"


def _f(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def train_table(raw: dict[str, Any]) -> list[str]:
    out = [
        "| case | step ms | fwd ms | fwd+bwd ms | optimizer ms | peak alloc GB | peak reserved GB "
        "| after-init GB | params | peak - 8 B/param GB | saved-for-bwd GB | model TFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in raw.get("train", []):
        name = c.get("name") or f"{c.get('model')}/{c.get('impl')}/s{c.get('seq')}"
        if c.get("status") != "ok":
            err = (c.get("error") or "")[:90].replace("|", "/")
            out.append(f"| {name} | **{c.get('status')}**: {err} |" + " |" * 10)
            continue
        saved = (c.get("saved_tensors") or {}).get("total_bytes")
        out.append(
            f"| {name} | {_f(c['step_ms_median'])} | {_f(c['fwd_ms_median'])} | "
            f"{_f(c['fwdbwd_ms_median'])} | {_f(c['optimizer_ms_median'], 2)} | "
            f"{_gb(c.get('peak_allocated_bytes'))} | {_gb(c.get('peak_reserved_bytes'))} | "
            f"{_gb(c.get('after_init_allocated_bytes'))} | {c['params'] / 1e9:.3f} B | "
            f"{_gb(c.get('peak_minus_8B_per_param_bytes'))} | {_gb(saved)} | "
            f"{_f(c.get('tflops_model_full_attention'), 0)} |"
        )
    return out


def prefill_table(raw: dict[str, Any]) -> list[str]:
    out = [
        "| case | ms | peak alloc GB | peak above weights GB | KV cache GB | TFLOP/s (full attn) |",
        "|---|---|---|---|---|---|",
    ]
    for p in raw.get("prefill", []):
        if p.get("status") != "ok":
            out.append(f"| {p.get('name')} | **{p.get('status')}** | | | | |")
            continue
        out.append(
            f"| {p['name']} | {_f(p['ms_median'], 2)} | {_gb(p.get('peak_allocated_bytes'))} | "
            f"{_gb(p.get('peak_above_base_bytes'))} | {_gb(p.get('kv_cache_bytes'))} | "
            f"{_f(p.get('tflops_full_attention'), 0)} |"
        )
    return out


def recompute_table(raw: dict[str, Any]) -> list[str]:
    by: dict[tuple[str, str, int, int], dict[bool, dict[str, Any]]] = {}
    for c in raw.get("train", []):
        if c.get("status") == "ok":
            key = (c["model"], c["impl"], c["seq"], c["micro_batch"])
            by.setdefault(key, {})[c["recompute"]] = c
    out = [
        "| model | seq x mb | step ratio (rc / no rc) | fwd+bwd ratio | peak alloc no rc -> rc GB |",
        "|---|---|---|---|---|",
    ]
    for (model, _impl, seq, mb), pair in by.items():
        if True in pair and False in pair:
            a, b = pair[False], pair[True]
            out.append(
                f"| {model} | {seq} x {mb} | {b['step_ms_median'] / a['step_ms_median']:.3f} | "
                f"{b['fwdbwd_ms_median'] / a['fwdbwd_ms_median']:.3f} | "
                f"{_gb(a.get('peak_allocated_bytes'))} -> {_gb(b.get('peak_allocated_bytes'))} |"
            )
    return out


def activation_table(raw: dict[str, Any]) -> list[str]:
    """Per layer, per token, per hidden unit: bytes of (peak - 8 B/param), of what the forward
    leaves alive, and of the tensors saved for backward (one block's, from the ledger)."""
    out = [
        "| case | (peak - 8P) / (s b h L) | fwd-live / (s b h L) | saved block1 / (s b h) "
        "| saved blocks / (s b h L) |",
        "|---|---|---|---|---|",
    ]
    for c in raw.get("train", []):
        if c.get("status") != "ok" or c.get("recompute"):
            continue
        sh = c["shape"]
        denom = c["tokens"] * sh["hidden"] * sh["layers"]
        led = (c.get("saved_tensors") or {}).get("by_region_bytes") or {}
        blocks = [v for k, v in led.items() if k.startswith("block")]
        one = led.get("block1", led.get("block0"))
        pk = c.get("peak_minus_8B_per_param_bytes")
        live = c.get("fwd_live_bytes")
        out.append(
            f"| {c['name']} | {_f(None if pk is None else pk / denom, 2)} | "
            f"{_f(None if live is None else live / denom, 2)} | "
            f"{_f(None if one is None else one / (c['tokens'] * sh['hidden']), 2)} | "
            f"{_f(sum(blocks) / denom if blocks else None, 2)} |"
        )
    return out


def sdpa_table(raw: dict[str, Any]) -> list[str]:
    out = [
        "| heads/kv | seq | backend | gqa | fwd ms | fwd TFLOP/s (causal exec) | fwd TFLOP/s "
        "(full model) | fwd+bwd ms | f+b TFLOP/s (causal, 3x) | f+b TFLOP/s (causal exec, 3.5x) "
        "| f+b TFLOP/s (full model, 3x) | dispatched |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (raw.get("micro") or {}).get("sdpa", []):
        err = r.get("fwd_error") or r.get("fwdbwd_error") or r.get("error")
        if "fwd_ms_median" not in r and "fwdbwd_ms_median" not in r:
            out.append(
                f"| {r['heads']}/{r['kv_heads']} | {r['seq']} | {r['backend']} | "
                f"{r.get('gqa', '-')} | error: {(err or '')[:70].replace('|', '/')} |" + " |" * 7
            )
            continue
        out.append(
            f"| {r['heads']}/{r['kv_heads']} | {r['seq']} | {r['backend']} | {r.get('gqa', '-')} | "
            f"{_f(r.get('fwd_ms_median'), 3)} | {_f(r.get('tflops_fwd_causal'), 0)} | "
            f"{_f(r.get('tflops_fwd_full'), 0)} | {_f(r.get('fwdbwd_ms_median'), 3)} | "
            f"{_f(r.get('tflops_fwdbwd_model_causal'), 0)} | "
            f"{_f(r.get('tflops_fwdbwd_exec_causal'), 0)} | "
            f"{_f(r.get('tflops_fwdbwd_model_full'), 0)} | {r.get('dispatched', '-')} |"
        )
    return out


def gemm_table(raw: dict[str, Any]) -> list[str]:
    out = [
        "| model | gemm | tokens | pass | m x n x k | ms | TFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in (raw.get("micro") or {}).get("gemm", []):
        if "tflops" not in g:
            out.append(f"| {g.get('model')} | {g.get('gemm')} | {g.get('tokens')} | error | | | |")
            continue
        out.append(
            f"| {g['model']} | {g['gemm']} | {g.get('tokens', '-')} | {g['pass']} | "
            f"{g['m']} x {g['n']} x {g['k']} | {g['ms_median']:.3f} | {g['tflops']:.0f} |"
        )
    return out


def main(argv: list[str]) -> int:
    raw = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    env = raw.get("env", {})
    print("## Environment\n")
    for k in ("gpu", "driver", "torch", "cuda", "cudnn", "triton", "transformers", "date_utc"):
        print(f"- {k}: {env.get(k)}")
    print(f"- command: `{raw.get('command')}`")
    print(f"- llama GQA mode: {raw.get('settings', {}).get('llama_gqa_mode')}\n")
    for title, rows in (
        ("Training steps", train_table(raw)),
        ("Full recompute", recompute_table(raw)),
        ("Activation bytes per layer per token per hidden unit", activation_table(raw)),
        ("Prefill", prefill_table(raw)),
        ("SDPA", sdpa_table(raw)),
        ("GEMMs", gemm_table(raw)),
    ):
        print(f"## {title}\n")
        print("\n".join(rows) + "\n")
    cp = (raw.get("micro") or {}).get("copy") or {}
    if cp.get("status") == "ok":
        print(
            f"## HBM copy\n\n{cp['bytes'] / 2**30:.3f} GiB `copy_`: "
            f"{cp['gbps_read_plus_write_median']:.0f} GB/s read+write (median), "
            f"{cp['gbps_read_plus_write_best']:.0f} GB/s best\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
