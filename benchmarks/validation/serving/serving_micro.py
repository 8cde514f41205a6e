"""Serving micro-benchmarks on one GPU: small-M GEMMs, decode attention, eager vs CUDA-graph
step overhead, kernel launch latency, small-token prefill (issue #16 items 1 and 6).

    export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
    python3 benchmarks/validation/serving/serving_micro.py --out raw-h100x1-serving.json
    python benchmarks/validation/serving/serving_micro.py --quick --out /tmp/s.json  # CPU dry run

The measurements are :func:`solver.profile.serving.run_serving_profile` (what ``shardwise
profile --serving`` will call); this script loads that module without running
``solver/__init__.py`` (pydantic, yaml: absent on the GPU machine), writes the JSON after every
section and prints a short table of the quotable numbers last.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if "solver" not in sys.modules:  # a bare package: solver/__init__.py imports pydantic
    _pkg = types.ModuleType("solver")
    _pkg.__path__ = [str(ROOT / "solver")]
    sys.modules["solver"] = _pkg

from solver.profile import serving  # noqa: E402


def _table(res: dict[str, Any]) -> str:
    """The numbers the README quotes, as plain text lines."""
    s = res.get("summary", {})
    c = res.get("ceilings", {})
    lines = [
        f"gpu {res['meta'].get('gpu')} torch {res['meta']['torch']} "
        f"smi {res['meta'].get('nvidia_smi')}",
        f"copy {c.get('copy_read_plus_write_Bps', 0) / 1e12:.3f} TB/s  bf16 8192^3 "
        f"{c.get('bf16_square_flops', 0) / 1e12:.0f} TF/s  fp8 "
        f"{(c.get('fp8_square_flops') or 0) / 1e12:.0f} TF/s",
    ]
    for key in ("gemm_weight_stream_eff", "gemm_flops_eff"):
        for dt, by_m in s.get(key, {}).items():
            row = " ".join(f"{m}:{v:.2f}" for m, v in by_m.items())
            lines.append(f"{key} {dt}: {row}")
    for b, by_c in s.get("decode_attn_best", {}).items():
        row = " ".join(
            f"c{cx}:{v['kv_Bps'] / 1e12:.2f}TB/s({v['kernel']})" for cx, v in by_c.items()
        )
        lines.append(f"attn b{b}: {row}")
    for key in (
        "graph_saving_per_layer_s",
        "graph_saving_per_kernel_s",
        "eager_host_issue_per_kernel_s",
    ):
        row = " ".join(f"b{b}:{v * 1e6:.1f}us" for b, v in s.get(key, {}).items())
        lines.append(f"{key}: {row}")
    launch = res.get("launch", {})
    lines.append(
        "launch "
        + " ".join(
            f"{k}={v * 1e6:.2f}us"
            for k, v in launch.items()
            if k.endswith("_s") and isinstance(v, float)
        )  # fmt: skip
    )
    for r in res.get("prefill", []) if isinstance(res.get("prefill"), list) else []:
        lines.append(
            f"prefill {r['model']}/tp{r['tp']} T{r['tokens']}: eager {r['eager_s'] * 1e6:.0f}us "
            f"graph {(r['graph_s'] or 0) * 1e6:.0f}us {r['flops_graph'] / 1e12:.0f} TF/s"
        )
    for name in serving.SECTIONS:
        v = res.get(name)
        if isinstance(v, dict) and ("error" in v or "skipped" in v):
            lines.append(f"{name}: {v}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON written after every section")
    ap.add_argument("--quick", action="store_true", help="tiny shapes; runs on a CPU")
    ap.add_argument("--budget-s", type=float, default=None, help="skip sections after this")
    ap.add_argument("--sections", default=",".join(serving.SECTIONS))
    args = ap.parse_args()
    out = Path(args.out)

    def write(res: dict[str, Any]) -> None:
        out.write_text(serving.to_json(res))

    res = serving.run_serving_profile(
        quick=args.quick,
        allow_cpu=args.quick,
        sections=[s for s in args.sections.split(",") if s],
        budget_s=args.budget_s,
        on_section=write,
        log=lambda m: print(m, flush=True),
    )
    write(res)
    print(_table(json.loads(serving.to_json(res))))


if __name__ == "__main__":
    main()
