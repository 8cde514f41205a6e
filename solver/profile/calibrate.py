"""Raw profile measurements -> a :class:`~solver.specs.Calibration` (host side).

What each calibration field is, so that the evaluator can use it unchanged:

``gemm_efficiency``
    Best measured GEMM rate / the GPU's dense 16-bit peak: the maximum achievable matmul
    FLOPS (MAMF, stas00/ml-engineering ``mamf-finder.py``), which is how the catalog defines
    the field (``solver/catalog/gpus.yaml``).  Without a GEMM table the cost model multiplies
    it by the global ``GEMM_REALIZATION_FRACTION`` (shape, launch and overlap losses inside a
    real step).  The transformer-shape rates are also kept in ``measured.gemm`` with their
    ratio to the MAMF (``realization_*``) to compare with that constant.
``gemm_table``
    Every transformer GEMM the profile timed (qkv / proj / fc1 / fc2, forward, dgrad and
    wgrad, each hidden size, token count and TP degree) as one row ``[m, k, n, TFLOP/s]`` of
    the product ``(m x k) @ (k x n)`` actually timed (:func:`solver.profile.bench.bench_gemms`;
    a shape timed more than once gets the geometric mean of its rates).  With it the cost
    model prices each GEMM at its own shape's measured rate
    (:func:`solver.costmodel.gemm_table.gemm_rate_tflops`), and ``gemm_realization`` (fitted
    below) becomes the fraction of the micro-benchmark rate a whole block realises (~1).
``memory_efficiency``
    Asymptotic ``copy_`` bandwidth (read + write, fitted ``t = t0 + bytes / R`` over all
    buffer sizes) / the catalog's HBM bandwidth.
``intra_node_bandwidth_GBps``, ``intra_node_latency_us``
    The all-reduce fitted jointly over every group size in the cost model's own form,
    ``t = 2(n-1) alpha + 2(n-1)/n S / B`` (:mod:`~solver.profile.fit`): a bus bandwidth and a
    per-step latency, which :func:`solver.evaluate.links.tp_link` uses as they are.

Everything else (per-shape GEMM rates, the add kernel, all-gather, reduce-scatter and
send/recv fits, per-group-size fits, fit residuals) goes to ``measured``; versions and the
device name to ``meta``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from scipy.optimize import least_squares

from ..catalog import resolve_gpu
from ..costmodel import block_time, decode_block_time, optimizer_step_time, prefill_block_time
from ..costmodel import constants as C
from ..costmodel.comm import LinkTier
from ..costmodel.stack import MEGATRON_2021
from ..errors import SpecError
from ..specs import Calibration, GPUSpec, Model
from .fit import COLLECTIVES, fit_collective, fit_throughput
from .raw import RAW_FORMAT

__all__ = [
    "RAW_FORMAT",
    "calibration_from_raw",
    "calibration_yaml",
    "gpu_for_device",
    "model_spec",
    "read_raw",
]

#: ``torch.cuda.get_device_name()`` substrings -> catalog names, first match wins.
_DEVICE_NAMES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h100", "pcie"), "H100-PCIe-80GB"),
    (("h100",), "H100-SXM5-80GB"),  # "NVIDIA H100 80GB HBM3" is the SXM5 part
    (("h200",), "H200-SXM-141GB"),
    (("gb200",), "GB200"),
    (("b200",), "B200-SXM-180GB"),
    (("a100", "pcie"), "A100-PCIe-80GB"),
    (("a100", "80gb"), "A100-SXM4-80GB"),
    (("a100",), "A100-SXM4-40GB"),
    (("v100",), "V100-SXM2-32GB"),
    (("l40s",), "L40S"),
    (("l4",), "L4"),
    (("mi300x",), "MI300X"),
    (("mi250x",), "MI250X"),
)


def gpu_for_device(device_name: str) -> str | None:
    """The catalog name of a CUDA device name (``NVIDIA H100 80GB HBM3``), or None."""
    low = device_name.lower()
    for keys, name in _DEVICE_NAMES:
        if all(k in low for k in keys):
            return name
    return None


def read_raw(path: Path) -> dict[str, Any]:
    """Load a raw JSON written by ``solver/profile/run.py``; SpecError if it is not one."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: JSON syntax error at line {e.lineno}: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != RAW_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SpecError(f"{path}: format: expected {RAW_FORMAT!r}, got {got!r}")
    return doc


def _resolve(gpu: str | None, raw: dict[str, Any]) -> GPUSpec:
    device = str(raw.get("meta", {}).get("device", ""))
    name = gpu or gpu_for_device(device)
    if name is None:
        raise SpecError(
            f"--gpu: the measured device {device!r} is not in the catalog; name the catalog GPU "
            "the efficiencies are relative to"
        )
    try:
        return resolve_gpu(name)
    except KeyError as e:
        raise SpecError(f"--gpu: {e.args[0]}") from None


def _gemm_summary(records: list[dict[str, Any]], peak_tflops: float) -> dict[str, Any]:
    best = max(records, key=lambda r: r["tflops"])
    mamf = float(best["tflops"])
    rows: dict[tuple[str, int, int, int], dict[str, float]] = defaultdict(dict)
    for r in records:
        if r["kind"] == "transformer":
            rows[(r["gemm"], r["hidden"], r["tokens"], r["tp"])][r["pass"]] = float(r["tflops"])
    table = [
        [g, h, t, tp, d.get("forward"), d.get("dgrad"), d.get("wgrad")]
        for (g, h, t, tp), d in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3]))
    ]
    tr = [r for r in records if r["kind"] == "transformer"]
    out: dict[str, Any] = {
        "peak_tflops": peak_tflops,
        "mamf_tflops": mamf,
        "mamf_shape": [best["m"], best["k"], best["n"]],
        "columns": [
            "gemm",
            "hidden",
            "tokens",
            "tp",
            "forward_tflops",
            "dgrad_tflops",
            "wgrad_tflops",
        ],
        "transformer_tflops": table,
    }
    if tr:
        ratio = np.array([r["tflops"] for r in tr]) / mamf
        weights = np.array([r["flops"] for r in tr])
        out["realization_mean"] = float(ratio.mean())
        # FLOP-weighted: what a step made of these GEMMs realises overall.
        out["realization_flop_weighted"] = float(
            weights.sum() / sum(r["time_s"] for r in tr) / 1e12 / mamf
        )
        fit = fit_throughput([r["flops"] for r in tr], [r["time_s"] for r in tr])
        out["fit"] = {
            "tflops": fit.rate / 1e12,
            "overhead_us": fit.overhead_s * 1e6,
            "max_rel_err": fit.max_rel_err,
            "rms_rel_err": fit.rms_rel_err,
        }
    return out


def _gemm_table(records: list[dict[str, Any]]) -> tuple[tuple[int, int, int, float], ...]:
    """The transformer GEMM records as unique ``(m, k, n, TFLOP/s)`` rows, sorted by shape;
    repeated shapes (one GEMM's dgrad can be another's forward) get the geometric mean.
    Rates are kept to 6 significant digits (a short, exact YAML round trip)."""
    by_shape: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for r in records:
        if r["kind"] == "transformer" and float(r["tflops"]) > 0:
            by_shape[(int(r["m"]), int(r["k"]), int(r["n"]))].append(float(r["tflops"]))
    return tuple(
        (m, k, n, float(f"{float(np.exp(np.mean(np.log(v)))):.6g}"))
        for (m, k, n), v in sorted(by_shape.items())
    )


#: Runner fusion modes whose gradient accumulation is autograd's separate add
#: (:mod:`solver.profile.gpt`); ``megatron`` fuses it into the weight-gradient GEMM.
UNFUSED_ACCUMULATION = ("none", "compile")


def _grad_accumulation_bytes(blocks: list[dict[str, Any]], dtype: str) -> float:
    """HBM bytes per parameter per micro-batch of the measured stack's gradient accumulation:
    autograd's in-place add reads the accumulated and the new gradient and writes the sum
    (3 x the gradient dtype's bytes), unless the runner fuses it (``fusion="megatron"``).
    Known from the runner's code, not fitted: the block benchmark runs one micro-batch per
    backward and never accumulates."""
    modes = {b.get("shape", {}).get("fusion", "none") for b in blocks}
    if not modes or not modes <= set(UNFUSED_ACCUMULATION):
        return 0.0
    return 3.0 * C.BYTES_PER_ELEMENT[dtype]


def _memory_summary(records: list[dict[str, Any]], hbm_GBps: float) -> dict[str, Any]:
    out: dict[str, Any] = {"catalog_GBps": hbm_GBps}
    for kernel in sorted({r["kernel"] for r in records}):
        rs = [r for r in records if r["kernel"] == kernel]
        fit = fit_throughput([r["bytes_moved"] for r in rs], [r["time_s"] for r in rs])
        out[kernel] = {
            "GBps": fit.rate / 1e9,
            "best_GBps": max(float(r["GBps"]) for r in rs),
            "overhead_us": fit.overhead_s * 1e6,
            "max_rel_err": fit.max_rel_err,
            "points": [[int(r["buffer_bytes"]), float(r["time_s"]) * 1e6] for r in rs],
        }
    return out


def _fit_or_error(op: str, rs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fit's dict, or ``{"error": ...}`` when the times show no trend (noisy CPU runs)."""
    try:
        fit = fit_collective(
            op, [r["group_size"] for r in rs], [r["bytes"] for r in rs], [r["time_s"] for r in rs]
        )
    except ValueError as e:
        return {"error": str(e)}
    return fit.to_dict()


def _collective_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in COLLECTIVES:
        rs = [r for r in records if r["op"] == op]
        if not rs:
            continue
        sizes = sorted({r["group_size"] for r in rs})
        out[op] = {
            "fit": _fit_or_error(op, rs),
            "by_group_size": {
                str(n): _fit_or_error(op, [r for r in rs if r["group_size"] == n]) for n in sizes
            },
            "points": [[r["group_size"], int(r["bytes"]), float(r["time_s"]) * 1e6] for r in rs],
        }
    return out


def _fraction(x: float) -> float:
    """Clip a measured fraction into the spec's (0, 1]."""
    return float(min(1.0, max(x, 1e-9)))


def model_spec(shape: dict[str, Any]) -> Model:
    """The validation model as a solver Model: GPT with biases, LayerNorm, GeLU MLP, learned
    positions and an untied LM head (:mod:`solver.profile.gpt`)."""
    return Model(
        name=f"validate-h{shape['hidden']}-l{shape['layers']}",
        num_layers=shape["layers"],
        hidden_size=shape["hidden"],
        ffn_hidden_size=shape["ffn"],
        num_attention_heads=shape["heads"],
        num_kv_heads=shape["heads"],
        vocab_size=shape["vocab_size"],
        mlp="gelu",
        tied_embeddings=False,
        learned_position_embeddings=True,
    )


#: The software-stack factors fitted to the whole-block timings, their start values (the
#: cost model's defaults: Megatron-LM fused kernels) and bounds.  The bounds only keep the
#: fit physical (a realisation above 1, fewer bytes than zero, a negative launch cost); a
#: value that ends on a bound is reported in ``measured.blocks.at_bound``.
BLOCK_FACTORS: dict[str, tuple[float, float, float]] = {
    "gemm_realization": (C.GEMM_REALIZATION_FRACTION, 0.05, 1.0),
    "elementwise_traffic_factor": (1.0, 0.2, 20.0),
    "backward_elementwise_factor": (C.BACKWARD_ELEMENTWISE_FACTOR, 0.2, 20.0),
    "kernel_launch_us": (1.0, 0.0, 500.0),
}

#: Start values of ``kernel_launch_us`` for the fit (microseconds).
LAUNCH_STARTS_US = (1.0, 5.0, 10.0, 20.0, 40.0, 80.0)

#: The stack the profile's training blocks run (solver/profile/blocks.py: the validation
#: runner's block, Megatron-LM 2021's un-fused attention core with dropout 0.1).
PROFILE_TRAINING_STACK = MEGATRON_2021

#: Link used to price the single-GPU blocks (TP = 1: no collective is priced).
_LOCAL = LinkTier(1.0, 0.0, "local")


def _precision(dtype: str) -> str:
    return "fp16" if dtype == "fp16" else "bf16"


def _block_predictions(rec: dict[str, Any], gpu: GPUSpec, precision: str) -> list[float]:
    """Per-block seconds the cost model predicts for a block record, in the order of
    :func:`_block_measured`."""
    model = model_spec(rec["shape"])
    case = rec["case"]
    if case == "train":
        pt = block_time(
            model,
            gpu,
            tp=1,
            micro_batch=rec["micro_batch"],
            seq=rec["seq"],
            recompute="none",
            sequence_parallel=False,
            precision=precision,
            tp_link=_LOCAL,
            stack=PROFILE_TRAINING_STACK,
        )
        return [pt.fwd_s, pt.bwd_s]
    if case == "prefill":
        pt = prefill_block_time(
            model,
            gpu,
            tp=1,
            batch=rec["batch"],
            prompt=rec["prompt"],
            precision=precision,
            tp_link=_LOCAL,
        )
        return [pt.fwd_s]
    if case == "decode":
        pt = decode_block_time(
            model,
            gpu,
            tp=1,
            batch=rec["batch"],
            context_len=rec["context"],
            precision=precision,
            kv_precision=precision,
            tp_link=_LOCAL,
        )
        return [pt.fwd_s]
    raise ValueError(f"unknown block case {case!r}")


def _block_measured(rec: dict[str, Any]) -> list[float]:
    n = rec["blocks"]
    if rec["case"] == "train":
        return [rec["forward_s"] / n, rec["backward_s"] / n]
    return [rec["time_s"] / n]


def _labels(rec: dict[str, Any]) -> list[str]:
    sh = f"h{rec['shape']['hidden']}"
    if rec["case"] == "train":
        return [f"{sh}/train/mb{rec['micro_batch']}/{p}" for p in ("forward", "backward")]
    if rec["case"] == "prefill":
        return [f"{sh}/prefill/b{rec['batch']}"]
    return [f"{sh}/decode/b{rec['batch']}"]


def _block_summary(
    records: list[dict[str, Any]], gpu: GPUSpec, dtype: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit the software-stack factors to the whole-block timings.

    ``gpu`` carries the hardware calibration (measured GEMM and HBM efficiencies); the three
    :data:`BLOCK_FACTORS` are then chosen to minimise the squared log-ratio of predicted to
    measured per-block time over every forward, backward, prefill and decode record
    (``scipy.optimize.least_squares``), each priced by the cost model's own functions
    (:func:`~solver.costmodel.block_time`, ``prefill_block_time``, ``decode_block_time``).
    The optimizer records give ``optimizer_efficiency`` directly: the cost model's Adam time at
    the HBM rate over the measured time.  Returns (fields, measured-summary).
    """
    precision = _precision(dtype)
    timed = [r for r in records if r["case"] in ("train", "prefill", "decode")]
    fields: dict[str, float] = {}
    out: dict[str, Any] = {}
    if timed:
        names = list(BLOCK_FACTORS)
        x0 = np.array([BLOCK_FACTORS[n][0] for n in names])
        lo = np.array([BLOCK_FACTORS[n][1] for n in names])
        hi = np.array([BLOCK_FACTORS[n][2] for n in names])
        meas = np.array([m for r in timed for m in _block_measured(r)])
        labels = [lab for r in timed for lab in _labels(r)]

        def predict(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            g = gpu.model_copy(update=dict(zip(names, (float(v) for v in x), strict=True)))
            return np.array([p for r in timed for p in _block_predictions(r, g, precision)])

        def residual(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            r: npt.NDArray[np.float64] = np.log(predict(x) / meas)
            return r

        before = predict(x0)
        # The launch floor enters through max(GPU time, host time): zero gradient while no
        # pass is host-bound, so start it at several values and keep the best fit.
        k = names.index("kernel_launch_us")
        sol = None
        for launch in LAUNCH_STARTS_US:
            start = x0.copy()
            start[k] = launch
            s = least_squares(residual, start, bounds=(lo, hi), x_scale=np.maximum(start, 1.0))
            if sol is None or s.cost < sol.cost:
                sol = s
        assert sol is not None
        after = predict(sol.x)
        fields = {n: float(v) for n, v in zip(names, sol.x, strict=True)}
        err_b, err_a = before / meas - 1.0, after / meas - 1.0
        out = {
            "fit": {
                **fields,
                "max_rel_err": float(np.max(np.abs(err_a))),
                "rms_rel_err": float(np.sqrt(np.mean(err_a**2))),
                "before_max_rel_err": float(np.max(np.abs(err_b))),
            },
            "at_bound": [
                n
                for n, v, a, b in zip(names, sol.x, lo, hi, strict=True)
                if np.isclose(v, a) or np.isclose(v, b)
            ],
            "columns": ["record", "measured_us", "default_us", "fitted_us"],
            "per_block": [
                [lab, float(m) * 1e6, float(b) * 1e6, float(a) * 1e6]
                for lab, m, b, a in zip(labels, meas, before, after, strict=True)
            ],
        }
    opt = [r for r in records if r["case"] == "optimizer"]
    if opt:
        ideal = gpu.model_copy(update={"optimizer_efficiency": None})
        ratios = [
            optimizer_step_time(r["params"], ideal, memory_policy="pure_bf16", zero_stage=0, dp=1)
            / r["time_s"]
            for r in opt
        ]
        fields["optimizer_efficiency"] = _fraction(float(np.median(ratios)))
        out["optimizer"] = [
            [int(r["params"]), float(r["time_s"]) * 1e6, float(q)]
            for r, q in zip(opt, ratios, strict=True)
        ]
    return fields, out


def calibration_from_raw(
    raw: dict[str, Any], *, gpu: str | None = None, source: str = ""
) -> Calibration:
    """Fit a :class:`Calibration` from a raw JSON's ``profile`` section.

    Parameters
    ----------
    raw
        The document ``solver/profile/run.py profile|all`` writes.
    gpu
        Catalog GPU the efficiencies are fractions of; default: the measured device's catalog
        entry (:func:`gpu_for_device`).  A CPU run (tests) must name one.
    source
        Where the raw JSON came from (recorded in ``meta``).
    """
    prof = raw.get("profile")
    if not isinstance(prof, dict):
        raise SpecError("raw JSON: profile: no measurements (run `run.py profile` or `run.py all`)")
    spec = _resolve(gpu, raw)
    measured: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if prof.get("gemm"):
        g = _gemm_summary(prof["gemm"], spec.bf16_tflops)
        measured["gemm"] = g
        fields["gemm_efficiency"] = _fraction(g["mamf_tflops"] / spec.bf16_tflops)
        table = _gemm_table(prof["gemm"])
        if table:
            fields["gemm_table"] = table
    if prof.get("memory"):
        mem = _memory_summary(prof["memory"], spec.memory_bandwidth_GBps)
        measured["memory"] = mem
        fields["memory_efficiency"] = _fraction(mem["copy"]["GBps"] / spec.memory_bandwidth_GBps)
    if prof.get("blocks"):
        hw = spec.model_copy(
            update={
                k: fields[k]
                for k in ("gemm_efficiency", "memory_efficiency", "gemm_table")
                if k in fields
            }
        )
        blk_fields, measured["blocks"] = _block_summary(
            prof["blocks"], hw, str(prof.get("dtype", "bf16"))
        )
        fields.update(blk_fields)
        acc = _grad_accumulation_bytes(prof["blocks"], str(prof.get("dtype", "bf16")))
        if acc:
            fields["grad_accumulation_bytes_per_param"] = acc
    if prof.get("collectives"):
        col = _collective_summary(prof["collectives"])
        measured["collectives"] = col
        ar = col.get("all_reduce", {}).get("fit", {})
        if "bandwidth_GBps" in ar:
            fields["intra_node_bandwidth_GBps"] = ar["bandwidth_GBps"]
            fields["intra_node_latency_us"] = ar["latency_us"]
    meta_in = raw.get("meta", {})
    meta = {
        k: meta_in[k]
        for k in (
            "date_utc",
            "device",
            "devices",
            "torch",
            "cuda",
            "nccl",
            "backend",
            "world",
            "env",
        )
        if k in meta_in
    }
    meta["tool"] = "shardwise profile"
    if source:
        meta["source"] = source
    if meta_in.get("device") == "cpu":
        meta["note"] = (
            f"measured on CPU (gloo): a test of the pipeline, not a calibration of {spec.name}"
        )
    return Calibration(gpu=spec.name, measured=measured, meta=meta, **fields)


def calibration_yaml(cal: Calibration) -> str:
    """The calibration as YAML: the fitted fields first, then ``measured`` and ``meta``."""
    doc = cal.model_dump(mode="json", exclude_none=True)
    head = "# Written by `shardwise profile`; fields: see solver/profile/calibrate.py.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
