"""Serving predictions side by side: shardwise, shardwise calibrated from NVIDIA AIConfigurator's
measured tables, and AIConfigurator's own estimate, against published measurements.

Cases: ``shared/data/published-inference.json`` (TensorRT-LLM 0.9.0, A100, FP16, static
batching; ``benchmarks/validate_inference.py`` rebuilds each case -- model, one DGX A100 node,
workload, plan -- and this script reuses its functions).  Metrics, error = predicted /
published - 1:

* throughput per GPU (``output_len x batch / total latency / TP``, the source's out_tps);
* TTFT at batch 1 (the source's first-token latency);
* TPOT: the set publishes none, so it is printed per predictor side by side (no error).

Predictors:

``shardwise``
    the evaluator with the catalog's figures (``validate_inference.predict``).
``shardwise+aic``
    the same, with the calibration ``shardwise profile --from-aiconfigurator SYSTEM BACKEND
    VERSION`` writes (GEMM table, attention and HBM efficiencies, all-reduce fit).
``aiconfigurator``
    AIConfigurator's own static-batching estimate of the same configuration:
    ``aiconfigurator_core.sdk.engine.EngineHandle.compile(config_dir, SYSTEM, BACKEND,
    backend_version=VERSION, tp_size=TP, pp_size=PP, moe_tp_size=TP).run_static(batch_size,
    isl, osl)`` -> (context ms, generation ms, total ms) (aiconfigurator-core 0.12.0's compiled
    engine; ``cli_estimate`` of the full ``aiconfigurator`` distribution wraps the same engine).
    TTFT = context ms; TPOT = generation ms / (osl - 1); throughput = batch x osl / total / GPUs.
    The model goes in as a Hugging Face ``config.json`` written from the set's
    ``model_shapes`` (fp16).  A case it cannot estimate (an architecture it lacks, a table it
    has not) is reported with its reason, never dropped.

The closest AIConfigurator data to TensorRT-LLM 0.9 / A100 / FP16 is ``a100_sxm trtllm 1.0.0``
(its only TensorRT-LLM version on A100; bf16 kernels, the same speed as fp16 on A100's tensor
cores) -- the default below.  Both AIConfigurator predictors need the ``aiconfigurator`` extra,
which lives in its own virtual environment (``.venv-aic``, see README); this script runs there
through ``--aic-python`` as a worker and skips both columns, saying so, when it is absent.

Usage::

    python benchmarks/serving.py                      # table + benchmarks/results/serving.json
    python benchmarks/serving.py --aic a100_sxm vllm 0.14.0

Always exits 0: it is a measuring instrument, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate_inference as vi  # noqa: E402

#: AIConfigurator coordinates closest to the published set (see the module docstring).
DEFAULT_AIC = ("a100_sxm", "trtllm", "1.0.0")
DEFAULT_AIC_PYTHON = REPO / ".venv-aic" / "bin" / "python"
PREDICTORS = ("shardwise", "shardwise+aic", "aiconfigurator")
#: (report key, label); the published keys come from ``validate_inference.METRICS``.
METRICS = (
    ("throughput_per_gpu", "tok/s/GPU"),
    ("ttft_ms", "TTFT ms"),
    ("tpot_ms", "TPOT ms"),
)
_PUBLISHED = {key: pub for pub, key, _ in vi.METRICS}

#: Hugging Face architecture per ``mlp`` / MoE of a model shape (what AIConfigurator parses).
_LLAMA = "LlamaForCausalLM"
_MIXTRAL = "MixtralForCausalLM"
_FALCON = "FalconForCausalLM"


# --------------------------------------------------------------------------------------------
# The AIConfigurator worker (runs under the aiconfigurator extra's interpreter)
# --------------------------------------------------------------------------------------------
def hf_config(shape: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face ``config.json`` for a ``model_shapes`` entry (fp16 weights)."""
    heads = int(shape["num_attention_heads"])
    doc: dict[str, Any] = {
        "num_hidden_layers": shape["num_layers"],
        "hidden_size": shape["hidden_size"],
        "intermediate_size": shape["ffn_hidden_size"],
        "num_attention_heads": heads,
        "num_key_value_heads": shape.get("num_kv_heads", heads),
        "head_dim": shape["hidden_size"] // heads,
        "vocab_size": shape["vocab_size"],
        "max_position_embeddings": 4096,
        "tie_word_embeddings": bool(shape.get("tied_embeddings", False)),
        "torch_dtype": "float16",
        "rms_norm_eps": 1e-5,
    }
    if shape.get("num_experts"):
        doc.update(
            architectures=[_MIXTRAL],
            model_type="mixtral",
            num_local_experts=shape["num_experts"],
            num_experts_per_tok=shape["experts_per_token"],
            intermediate_size=shape.get("moe_ffn_hidden_size", shape["ffn_hidden_size"]),
        )
    elif shape.get("mlp") == "swiglu":
        doc.update(architectures=[_LLAMA], model_type="llama")
    else:  # Falcon: GeLU MLP, parallel attention (new_decoder_architecture)
        doc.update(
            architectures=[_FALCON],
            model_type="falcon",
            num_kv_heads=doc["num_key_value_heads"],
            new_decoder_architecture=True,
        )
    return doc


def _aic_case(case: dict[str, Any], cfg_dir: Path, coords: tuple[str, str, str]) -> dict[str, Any]:
    from aiconfigurator_core.sdk.engine import EngineHandle

    system, backend, version = coords
    tp, pp = int(case["tp"]), int(case["pp"])
    try:
        handle = EngineHandle.compile(
            str(cfg_dir),
            system,
            backend,
            backend_version=version,
            tp_size=tp,
            pp_size=pp,
            moe_tp_size=tp,
            moe_ep_size=1,
        )
        ctx_ms, gen_ms, total_ms = handle.run_static(
            batch_size=int(case["batch_size"]),
            isl=int(case["input_len"]),
            osl=int(case["output_len"]),
        )
    except Exception as e:  # report the engine's own reason for this case
        first = str(e).splitlines()[0].split(". Supported")[0]  # drop the long list
        return {"error": f"{type(e).__name__}: {first[:200]}"}
    b, osl = int(case["batch_size"]), int(case["output_len"])
    return {
        "throughput_per_gpu": b * osl / (total_ms / 1e3) / (tp * pp),
        "ttft_ms": ctx_ms,
        "tpot_ms": gen_ms / (osl - 1) if osl > 1 else None,
        "context_ms": ctx_ms,
        "generation_ms": gen_ms,
        "total_ms": total_ms,
    }


def aic_worker(data_file: Path, coords: tuple[str, str, str]) -> dict[str, Any]:
    """AIConfigurator's estimates of every case and the calibration from its tables."""
    import importlib.metadata

    from solver.errors import SpecError
    from solver.profile.aiconfigurator import calibration_from_aiconfigurator

    data = json.loads(data_file.read_text())
    out: dict[str, Any] = {
        "package_version": importlib.metadata.version("aiconfigurator-core"),
        "coordinates": list(coords),
        "estimates": {},
    }
    try:
        cal = calibration_from_aiconfigurator(*coords)
        out["calibration"] = cal.model_dump(mode="json", exclude_none=True)
    except SpecError as e:
        out["calibration_error"] = str(e)
    with tempfile.TemporaryDirectory(prefix="shardwise-aic-") as tmp:
        for name, shape in data["model_shapes"].items():
            d = Path(tmp) / name
            d.mkdir()
            (d / "config.json").write_text(json.dumps(hf_config(shape)))
        for case in data["cases"]:
            out["estimates"][case["id"]] = _aic_case(case, Path(tmp) / case["model"], coords)
    return out


def run_aic(python: Path, data_file: Path, coords: tuple[str, str, str]) -> dict[str, Any]:
    """Run :func:`aic_worker` under the extra's interpreter; ``{"error": ...}`` if unavailable."""
    if not python.is_file():
        return {"error": f"{python} not found: the aiconfigurator extra is not installed"}
    cmd = [str(python), __file__, "--aic-worker", str(data_file), "--aic", *coords]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"worker exit {res.returncode}: {tail[0]}"}
    doc: dict[str, Any] = json.loads(res.stdout)
    warnings = sorted({ln.strip() for ln in res.stderr.splitlines() if ln.strip()})
    if warnings:
        doc["stderr"] = warnings[:20]
    return doc


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------
def _shardwise_rows(
    cases: list[dict[str, Any]], shapes: dict[str, Any], cluster: Any
) -> dict[str, dict[str, Any]]:
    util = vi.TRTLLM_MEMORY_UTILIZATION
    return {c["id"]: vi.predict(c, shapes, cluster, util) for c in cases}


def compare(data: dict[str, Any], aic: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per case: published, and per predictor the predicted metrics and errors."""
    from solver.evaluate.calibration import calibrated_cluster
    from solver.specs import Calibration

    cases, shapes = data["cases"], data["model_shapes"]
    base = vi.build_cluster()
    plain = _shardwise_rows(cases, shapes, base)
    calibrated: dict[str, dict[str, Any]] = {}
    if "calibration" in aic:
        cal = Calibration.model_validate(aic["calibration"])
        calibrated = _shardwise_rows(cases, shapes, calibrated_cluster(base, cal))
    rows = []
    for c in cases:
        published = {
            key: float(c["measured"][pub])
            for key, pub in _PUBLISHED.items()
            if pub in c["measured"]
        }
        row: dict[str, Any] = {
            "id": c["id"],
            "model": c["model"],
            "tp": c["tp"],
            "batch": c["batch_size"],
            "input_len": c["input_len"],
            "output_len": c["output_len"],
            "published": published,
            "predictors": {},
        }
        preds: dict[str, dict[str, Any]] = {"shardwise": _from_shardwise(plain[c["id"]])}
        if calibrated:
            preds["shardwise+aic"] = _from_shardwise(calibrated[c["id"]])
        else:
            preds["shardwise+aic"] = {
                "error": aic.get("calibration_error") or aic.get("error", "no calibration")
            }
        preds["aiconfigurator"] = aic.get("estimates", {}).get(
            c["id"], {"error": aic.get("error", "not estimated")}
        )
        for name, p in preds.items():
            if "error" not in p:
                p["error_vs_published"] = {
                    k: p[k] / v - 1.0 for k, v in published.items() if p.get(k) is not None
                }
            row["predictors"][name] = p
        rows.append(row)
    return rows


def _from_shardwise(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r["predicted"])
    out["feasible"] = r["feasible"]
    if not r["feasible"]:
        out["violations"] = r["violations"]
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / max |error| per metric per predictor, and the cases each could not predict."""
    out: dict[str, Any] = {}
    for name in PREDICTORS:
        s: dict[str, Any] = {}
        for key, _ in METRICS:
            errs = [
                abs(r["predictors"][name]["error_vs_published"][key])
                for r in rows
                if key in r["predictors"][name].get("error_vs_published", {})
            ]
            if errs:
                s[key] = {
                    "n": len(errs),
                    "mean_abs_error": sum(errs) / len(errs),
                    "max_abs_error": max(errs),
                }
            elif key == "tpot_ms":
                s[key] = {"n": 0, "note": "the published set has no TPOT"}
        s["not_predicted"] = {
            r["id"]: r["predictors"][name]["error"]
            for r in rows
            if "error" in r["predictors"][name]
        }
        s["infeasible"] = [r["id"] for r in rows if r["predictors"][name].get("feasible") is False]
        out[name] = s
    out["common_cases"] = _common(rows)
    out["tpot_vs_aiconfigurator"] = _tpot_agreement(rows)
    return out


def _tpot_agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """No TPOT is published: mean / max |shardwise / AIConfigurator - 1| of TPOT instead, on
    the cases with more than one output token that both predicted."""
    out: dict[str, Any] = {}
    for n in ("shardwise", "shardwise+aic"):
        diffs = [
            abs(r["predictors"][n]["tpot_ms"] / r["predictors"]["aiconfigurator"]["tpot_ms"] - 1)
            for r in rows
            if r["predictors"][n].get("tpot_ms")
            and r["predictors"]["aiconfigurator"].get("tpot_ms")
        ]
        if diffs:
            out[n] = {"n": len(diffs), "mean_abs": sum(diffs) / len(diffs), "max_abs": max(diffs)}
    return out


def _common(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, mean / max |error| of every predictor on the cases all of them predicted
    (the like-for-like comparison: AIConfigurator estimates fewer cases)."""
    out: dict[str, Any] = {}
    for key, _ in METRICS:
        ids = [
            r["id"]
            for r in rows
            if all(key in r["predictors"][n].get("error_vs_published", {}) for n in PREDICTORS)
        ]
        if not ids:
            continue
        per: dict[str, Any] = {"n": len(ids)}
        for n in PREDICTORS:
            errs = [
                abs(r["predictors"][n]["error_vs_published"][key]) for r in rows if r["id"] in ids
            ]
            per[n] = {"mean_abs_error": sum(errs) / len(errs), "max_abs_error": max(errs)}
        out[key] = per
    return out


def _cell(p: dict[str, Any], key: str, pub: float | None) -> str:
    if "error" in p:
        return f"{'n/a':>16s}"
    v = p.get(key)
    if v is None:
        return f"{'-':>16s}"
    err = f"{100 * (v / pub - 1):+6.1f}%" if pub else ""
    return f"{v:8.1f} {err:>7s}"


def table(rows: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    head = f"{'case':44s} {'metric':>9s} {'published':>9s} " + " ".join(
        f"{n:>16s}" for n in PREDICTORS
    )
    lines = [head]
    for r in rows:
        for key, label in METRICS:
            pub = r["published"].get(key)
            if pub is None and key != "tpot_ms":
                continue
            cells = " ".join(_cell(r["predictors"][n], key, pub) for n in PREDICTORS)
            pub_s = f"{pub:9.1f}" if pub is not None else f"{'-':>9s}"
            lines.append(f"{r['id'][6:50]:44s} {label:>9s} {pub_s} {cells}")
    lines.append("")
    lines.append(f"{'mean / max |error|':44s} " + " ".join(f"{n:>18s}" for n in PREDICTORS))
    for key, label in METRICS:
        cells = []
        for n in PREDICTORS:
            s = summ[n].get(key, {})
            if s.get("n"):
                m = f"{100 * s['mean_abs_error']:.1f}% / {100 * s['max_abs_error']:.1f}% ({s['n']})"
            else:
                m = "-"
            cells.append(f"{m:>18s}")
        lines.append(f"{label:44s} " + " ".join(cells))
    for key, label in METRICS:
        com = summ["common_cases"].get(key)
        if com:
            cells = [
                f"{100 * com[n]['mean_abs_error']:.1f}% / {100 * com[n]['max_abs_error']:.1f}%"
                for n in PREDICTORS
            ]
            lines.append(
                f"{label + ', cases all predict (' + str(com['n']) + ')':44s} "
                + " ".join(f"{c:>18s}" for c in cells)
            )
    for n, a in summ["tpot_vs_aiconfigurator"].items():
        lines.append(
            f"TPOT {n} vs aiconfigurator (no published TPOT): mean |diff| "
            f"{100 * a['mean_abs']:.1f}%, max {100 * a['max_abs']:.1f}% (n = {a['n']})"
        )
    for n in PREDICTORS:
        for cid, why in summ[n]["not_predicted"].items():
            lines.append(f"  {n} could not predict {cid}: {why}")
        for cid in summ[n]["infeasible"]:
            lines.append(f"  {n} reports published configuration {cid} infeasible")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving.json"))
    ap.add_argument(
        "--aic",
        nargs=3,
        metavar=("SYSTEM", "BACKEND", "VERSION"),
        default=list(DEFAULT_AIC),
        help="AIConfigurator data to compare with (default: %(default)s)",
    )
    ap.add_argument("--aic-python", default=str(DEFAULT_AIC_PYTHON))
    ap.add_argument("--aic-worker", metavar="DATA.json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    coords = (args.aic[0], args.aic[1], args.aic[2])
    if args.aic_worker:
        json.dump(aic_worker(Path(args.aic_worker), coords), sys.stdout)
        return 0
    data_file = vi.shared_dir() / "data" / vi.DATA_FILE
    data = json.loads(data_file.read_text())
    aic = run_aic(Path(args.aic_python), data_file, coords)
    rows = compare(data, aic)
    summ = summary(rows)
    print(table(rows, summ))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    aic_meta = {k: v for k, v in aic.items() if k not in ("estimates", "calibration")}
    if "calibration" in aic:
        cal = dict(aic["calibration"])
        cal.pop("gemm_table", None)  # 9k rows; `shardwise profile --from-aiconfigurator` has it
        aic_meta["calibration"] = cal
    doc = {
        "source": data["title"],
        "aiconfigurator": aic_meta,
        "summary": summ,
        "rows": rows,
    }
    out.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
