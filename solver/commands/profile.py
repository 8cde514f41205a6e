"""`shardwise profile` and `shardwise validate` (see :mod:`solver.commands`).

Both measure with :mod:`solver.profile` (PyTorch, the ``shardwise[profile]`` extra) or read
a raw JSON measured elsewhere (``--from-json``; the GPU machine may have only torch and numpy:
``python solver/profile/run.py all --out raw.json`` there, then these commands here).
"""

# No ``from __future__ import annotations`` here: typer reads the command signatures at run
# time, and the option types (some imported from solver.cli inside register()) must be live
# objects, not strings to resolve in this module's globals.

import importlib.util
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import ForceOpt, JsonOpt, emit_json, refuse_overwrite, user_errors, write_new_file

#: Largest differences a float64 CPU check may show (summation order only: ~1e-15 observed).
CHECK_TOLERANCE = 1e-8


def _require_torch() -> None:
    from ..errors import SpecError

    if importlib.util.find_spec("torch") is None:
        raise SpecError(
            "torch is not installed: pip install 'shardwise[profile]', or measure elsewhere "
            "and pass --from-json"
        )


def _measure(argv: list[str], raw_out: Path | None, force: bool) -> dict[str, Any]:
    """Run ``solver/profile/run.py <argv>`` in this process (spawning workers); the raw doc."""
    _require_torch()
    from ..profile import driver
    from ..profile.calibrate import read_raw

    with tempfile.TemporaryDirectory(prefix="shardwise-profile-") as tmp:
        path = raw_out if raw_out is not None else Path(tmp) / "raw.json"
        if raw_out is not None:
            refuse_overwrite(raw_out, force)
        args = driver.parser().parse_args([*argv, "--out", str(path)])
        job = driver.build_job(args)
        driver.spawn_job(job)
        return read_raw(path)


def _common_argv(cpu: bool, world: int | None) -> list[str]:
    argv = ["--cpu"] if cpu else []
    if world:
        argv += ["--world", str(world)]
    return argv


def check_line(c: dict[str, Any]) -> str:
    """One line per correctness check: its name and differences."""
    parts = [
        f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
        for k, v in c.items()
        if k not in ("name", "tensors")
    ]
    return f"{c['name']}: " + ", ".join(parts)


def failed_checks(checks: list[dict[str, Any]]) -> list[str]:
    """Names of the checks with a difference above :data:`CHECK_TOLERANCE` or other tokens."""
    bad = []
    for c in checks:
        errs = [v for k, v in c.items() if k.endswith("_err") and isinstance(v, float)]
        if any(e > CHECK_TOLERANCE for e in errs) or c.get("tokens_equal") is False:
            bad.append(c["name"])
    return bad


def _modern_raw(path: Path) -> dict[str, Any] | None:
    """The document at ``path`` if it is the modern runner's raw JSON (else None: the caller
    reads it as the profile runner's, with that reader's errors)."""
    import json

    from ..profile.calibrate_modern import is_modern_raw

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if is_modern_raw(doc) else None


def _term_error_doc(raw: dict[str, Any], cal: Any) -> dict[str, Any]:
    """Per-term errors of a modern raw JSON: with the catalog's figures, and with a
    calibration (the given one, else the raw JSON's own per-term calibration)."""
    from ..profile.calibrate_modern import calibration_from_modern, term_errors

    own = cal if cal is not None else calibration_from_modern(raw)
    return {"catalog": term_errors(raw), "calibrated": term_errors(raw, own)}


def _term_error_text(raw: dict[str, Any], cal: Any) -> str:
    """The per-term error table ``validate`` prints for a modern raw JSON."""
    doc = _term_error_doc(raw, cal)
    lines = [
        f"per-term error of the cost model on {doc['catalog']['gpu']} "
        "(predicted / measured - 1; micro-benchmarks of the modern runner)",
        "",
        "| term | cases | catalog mean abs | catalog max abs | calibrated mean abs | "
        "calibrated max abs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for term, s in doc["catalog"]["summary"].items():
        c = doc["calibrated"]["summary"].get(term, {})
        lines.append(
            f"| {term} | {s['n']} | {s['mean_abs_error']:.1%} | {s['max_abs_error']:.1%} | "
            f"{c.get('mean_abs_error', float('nan')):.1%} | "
            f"{c.get('max_abs_error', float('nan')):.1%} |"
        )
    lines.append("")
    lines.append(
        "gemm: peak x gemm_efficiency (MAMF) or the measured gemm_table; attention: peak x "
        "efficiency x s/(s+1477) on causal FLOPs (FlashAttention-2 figures for the flash "
        "backend); hbm: bandwidth x memory_efficiency.  Terms a calibration did not measure "
        "keep the catalog's error."
    )
    return "\n".join(lines)


def _modern_summary(cal: Any, out: Path | None) -> str:
    """What a per-term calibration from the modern runner replaced, one line per term."""
    lines = [f"per-term calibration for {cal.gpu} (modern runner micro-benchmarks):"]
    if cal.gemm_table:
        rates = [row[3] for row in cal.gemm_table]
        lines.append(
            f"  gemm_table                  {len(rates)} shapes, {min(rates):.0f}-{max(rates):.0f}"
            f" TFLOP/s; gemm_efficiency {cal.gemm_efficiency:.3g}"
        )
    if cal.memory_efficiency is not None:
        lines.append(f"  memory_efficiency           {cal.memory_efficiency:.3g}")
    if cal.attention_efficiency is not None:
        lines.append(
            f"  attention_efficiency        {cal.attention_efficiency:.3g} forward, "
            f"{cal.attention_backward_efficiency:.3g} backward (asymptotes)"
        )
    real = getattr(cal, "gemm_realization", None)
    if real is not None:
        lines.append(f"  gemm_realization            {real:.3g} (in-step share, from the forwards)")
    opt = getattr(cal, "optimizer_efficiency", None)
    if opt is not None:
        lines.append(f"  optimizer_efficiency        {opt:.3g} (from the optimizer steps)")
    lines.append("  every other term keeps the catalog's value")
    if out is not None:
        lines.append(f"written to {out}")
    return "\n".join(lines)


def _aic_summary(cal: Any, out: Path | None) -> str:
    """What a calibration read from AIConfigurator's tables holds, one line per term."""
    aic = cal.meta.get("aiconfigurator", {})
    m = cal.measured
    lines = [
        f"calibration for {cal.gpu} from AIConfigurator {aic.get('system')}/"
        f"{aic.get('backend')}/{aic.get('version')} (aiconfigurator-core "
        f"{aic.get('package_version')}; NCCL {aic.get('nccl_version')}):"
    ]
    if cal.gemm_table:
        rates = [row[3] for row in cal.gemm_table]
        lines.append(
            f"  gemm_table                   {len(rates)} shapes, {min(rates):.3g}-"
            f"{max(rates):.0f} TFLOP/s; gemm_efficiency {cal.gemm_efficiency:.3g}, "
            f"gemm_realization {cal.gemm_realization:g}"
        )
    if cal.memory_efficiency is not None:
        lines.append(
            f"  memory_efficiency            {cal.memory_efficiency:.3g}  (weight streaming of "
            "decode-sized GEMMs)"
        )
    if cal.attention_efficiency is not None:
        a = m["context_attention"]
        lines.append(
            f"  attention_efficiency         {cal.attention_efficiency:.3g}  (prefill flash, "
            f"{a['rows']} rows, rms error {a['rms_rel_err']:.0%})"
        )
    if cal.decode_attention_efficiency is not None:
        g = m["generation_attention"]
        lines.append(
            f"  decode_attention_efficiency  {cal.decode_attention_efficiency:.3g}, overhead "
            f"{cal.decode_attention_overhead_us:.3g} us  ({g['rows']} rows, rms error "
            f"{g['rms_rel_err']:.0%})"
        )
    if cal.intra_node_bandwidth_GBps is not None:
        lines.append(
            f"  intra_node (NCCL ring)       {cal.intra_node_bandwidth_GBps:.1f} GB/s bus, "
            f"{cal.intra_node_latency_us:.2f} us/step  (rms error "
            f"{m['nccl']['rms_rel_err']:.0%})"
        )
    if cal.allreduce_small_latency_us is not None:
        lines.append(
            f"  allreduce_small (custom)     {cal.allreduce_small_latency_us:.2f} us + (n-1) S / "
            f"{cal.allreduce_small_bandwidth_GBps:.0f} GB/s up to "
            f"{cal.allreduce_small_max_bytes} B"
        )
    for key, v in m.items():
        if isinstance(v, dict) and "error" in v:
            lines.append(f"  {key}: not read: {v['error']}")
    if out is not None:
        lines.append(f"written to {out}")
    return "\n".join(lines)


def _serving_raw(path: Path) -> dict[str, Any] | None:
    """The document at ``path`` if it is a ``profile --serving`` result, else None."""
    import json

    from ..profile.calibrate_serving import is_serving_raw

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # the other readers report what is wrong with the file
    return doc if is_serving_raw(doc) else None


def _profile_serving(
    from_json: Path | None,
    raw_out: Path | None,
    out: Path | None,
    gpu: str | None,
    force: bool,
    json_output: bool,
) -> None:
    """``profile --serving``: measure here (or read ``--from-json``), fit, write, summarise."""
    from ..errors import SpecError
    from ..profile.calibrate import calibration_yaml
    from ..profile.calibrate_serving import calibration_from_serving

    if from_json is not None:
        raw = _serving_raw(from_json)
        if raw is None:
            raise SpecError(f"--from-json: {from_json} is not a profile --serving result")
        source = str(from_json)
    else:
        _require_torch()
        from ..profile.serving import run_serving_profile, to_json

        if raw_out is not None:
            refuse_overwrite(raw_out, force)
        raw = run_serving_profile(log=lambda m: typer.echo(m, err=True))
        if raw_out is not None:
            write_new_file(raw_out, to_json(raw), force=force)
        source = str(raw_out) if raw_out else "measured by shardwise profile --serving"
    cal = calibration_from_serving(raw, gpu=gpu, source=source)
    if out is not None:
        write_new_file(out, calibration_yaml(cal), force=force)
    if json_output:
        emit_json(cal.model_dump(mode="json"))
        return
    fit = cal.measured["serving"]["decode_attention_fit"]
    typer.echo(
        f"calibration for {cal.gpu} (serving, measured on {cal.meta.get('gpu', '?')}):\n"
        f"  decode_attention_efficiency   {cal.decode_attention_efficiency:.3g}  "
        f"({fit['B_Bps'] / 1e12:.2f} TB/s over {fit['cases']} batch x context cases)\n"
        f"  decode_attention_overhead_us  {cal.decode_attention_overhead_us:.3g}"
        + (f"\nwritten to {out}" if out is not None else "")
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    from ..errors import SpecError

    FromJsonOpt = Annotated[
        Path | None,
        typer.Option(
            "--from-json",
            metavar="RAW.json",
            help="Use measurements from a raw JSON (written by solver/profile/run.py) instead "
            "of measuring here.",
            show_default=False,
        ),
    ]
    RawOutOpt = Annotated[
        Path | None,
        typer.Option(
            "--raw-out",
            metavar="RAW.json",
            help="Also keep the raw measurements in this file.",
            show_default=False,
        ),
    ]
    CpuOpt = Annotated[
        bool,
        typer.Option("--cpu", help="Measure on CPU with gloo and tiny sizes (tests; no GPU)."),
    ]
    WorldOpt = Annotated[
        int | None,
        typer.Option(
            "--world",
            metavar="N",
            help="Processes, one per GPU \\[default: all GPUs; 2 with --cpu].",
            show_default=False,
        ),
    ]
    GpuOpt = Annotated[
        str | None,
        typer.Option(
            "--gpu",
            metavar="NAME",
            help="Catalog GPU the efficiencies are fractions of \\[default: the measured "
            "device's catalog entry].",
            show_default=False,
        ),
    ]

    @app.command(
        "profile",
        epilog="Examples:\n\n"
        "  shardwise profile --out instances/calibration/h100-sxm5-80gb.yaml\n\n"
        "  python solver/profile/run.py profile --out raw.json   (on a GPU machine with only "
        "torch)\n\n"
        "  shardwise profile --from-json raw.json --out cal.yaml\n\n"
        "  shardwise profile --from-aiconfigurator a100_sxm trtllm 1.0.0 -o cal.yaml   (NVIDIA "
        "AIConfigurator's measured tables; pip install 'shardwise[aiconfigurator]')\n\n"
        "  shardwise profile --serving --raw-out serving.json -o cal.yaml   (serving terms on "
        "this GPU: decode attention, small-M GEMM, CUDA-graph step overhead)\n\n"
        "A cluster uses the calibration with `calibration: <file>` (a path relative to the "
        "cluster file, or a name under instances/calibration/).",
    )
    def profile_cmd(
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                metavar="CAL.yaml",
                help="Calibration YAML to write.",
                show_default=False,
            ),
        ] = None,
        from_json: FromJsonOpt = None,
        raw_out: RawOutOpt = None,
        gpu: GpuOpt = None,
        cpu: CpuOpt = False,
        world: WorldOpt = None,
        force: ForceOpt = False,
        json_output: JsonOpt = False,
        from_aiconfigurator: Annotated[
            tuple[str, str, str] | None,
            typer.Option(
                "--from-aiconfigurator",
                metavar="SYSTEM BACKEND VERSION",
                help="Read NVIDIA AIConfigurator's measured kernel tables (e.g. a100_sxm "
                "trtllm 1.0.0; needs the shardwise[aiconfigurator] extra) instead of measuring.",
                show_default=False,
            ),
        ] = None,
        serving: Annotated[
            bool,
            typer.Option(
                "--serving",
                help="Measure the serving engine's terms on this GPU (decode attention over a "
                "KV cache, small-M GEMMs, eager vs CUDA-graph decode steps, small-token "
                "prefill; minutes) and fit the decode-attention calibration from them.",
            ),
        ] = False,
        aic_systems: Annotated[
            Path | None,
            typer.Option(
                "--aiconfigurator-systems",
                metavar="DIR",
                help="With --from-aiconfigurator: a systems/ folder laid out like the "
                "package's \\[default: the installed aiconfigurator-core's].",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Measure GEMM efficiency, HBM bandwidth and NCCL collectives on this machine's GPUs
        and fit a calibration (efficiency factors, link alpha-beta) for the evaluator."""
        with user_errors():
            from ..profile.calibrate import calibration_from_raw, calibration_yaml, read_raw
            from ..profile.calibrate_modern import calibration_from_modern

            if out is None and not json_output:
                raise SpecError("--out: give the calibration YAML to write (or pass --json)")
            if out is not None:
                refuse_overwrite(out, force)  # before measuring
            if from_aiconfigurator is not None:
                # Measured elsewhere: NVIDIA's engine kernel tables (solver/profile/
                # aiconfigurator.py).  (A `--serving` measurement mode would branch here too.)
                if from_json is not None:
                    raise SpecError("--from-aiconfigurator: give it or --from-json, not both")
                from ..profile.aiconfigurator import calibration_from_aiconfigurator

                system, backend, version = from_aiconfigurator
                cal = calibration_from_aiconfigurator(
                    system, backend, version, gpu=gpu, systems_dir=aic_systems
                )
                if out is not None:
                    write_new_file(out, calibration_yaml(cal), force=force)
                if json_output:
                    emit_json(cal.model_dump(mode="json"))
                    return
                typer.echo(_aic_summary(cal, out))
                return
            if aic_systems is not None:
                raise SpecError("--aiconfigurator-systems: only with --from-aiconfigurator")
            if serving or (from_json is not None and _serving_raw(from_json) is not None):
                _profile_serving(from_json, raw_out, out, gpu, force, json_output)
                return
            if from_json is not None and (modern := _modern_raw(from_json)) is not None:
                # The modern runner's micro-benchmarks: a per-term calibration.
                cal = calibration_from_modern(modern, source=str(from_json))
                if out is not None:
                    write_new_file(out, calibration_yaml(cal), force=force)
                if json_output:
                    emit_json(cal.model_dump(mode="json"))
                    return
                typer.echo(_modern_summary(cal, out))
                return
            if from_json is not None:
                raw = read_raw(from_json)
                source = str(from_json)
            else:
                raw = _measure(["profile", *_common_argv(cpu, world)], raw_out, force)
                source = str(raw_out) if raw_out else "measured by shardwise profile"
            cal = calibration_from_raw(raw, gpu=gpu, source=source)
            if out is not None:
                write_new_file(out, calibration_yaml(cal), force=force)
            if json_output:
                emit_json(cal.model_dump(mode="json"))
                return
            m = cal.measured
            lines = [f"calibration for {cal.gpu} (measured on {cal.meta.get('device', '?')}):"]
            if cal.gemm_efficiency is not None:
                g = m["gemm"]
                lines.append(
                    f"  gemm_efficiency    {cal.gemm_efficiency:.3g}  (best GEMM "
                    f"{g['mamf_tflops']:.1f} TFLOP/s of {g['peak_tflops']:g} peak; transformer "
                    f"shapes realise {100 * g.get('realization_flop_weighted', 0):.0f}% of it)"
                )
            if cal.gemm_table:
                rates = [row[3] for row in cal.gemm_table]
                lines.append(
                    f"  gemm_table         {len(rates)} transformer GEMM shapes, "
                    f"{min(rates):.0f}-{max(rates):.0f} TFLOP/s (each GEMM priced at its shape's)"
                )
            if cal.memory_efficiency is not None:
                lines.append(
                    f"  memory_efficiency  {cal.memory_efficiency:.3g}  (copy "
                    f"{m['memory']['copy']['GBps']:.0f} GB/s of {m['memory']['catalog_GBps']:g})"
                )
            ar_fit = m.get("collectives", {}).get("all_reduce", {}).get("fit", {})
            if "error" in ar_fit:
                lines.append(f"  intra_node         not fitted: {ar_fit['error']}")
            if cal.intra_node_bandwidth_GBps is not None:
                fit = m["collectives"]["all_reduce"]["fit"]
                lines.append(
                    f"  intra_node         {cal.intra_node_bandwidth_GBps:.1f} GB/s bus, "
                    f"{cal.intra_node_latency_us:.1f} us/step  (all-reduce fit, max error "
                    f"{100 * fit['max_rel_err']:.0f}%)"
                )
            blk = m.get("blocks", {}).get("fit")
            if blk:
                lines.append(
                    f"  software stack     gemm_realization {cal.gemm_realization:.3g}, "
                    f"elementwise x{cal.elementwise_traffic_factor:.3g} forward / "
                    f"x{cal.backward_elementwise_factor:.3g} backward, kernel launch "
                    f"{cal.kernel_launch_us:.3g} us  (whole-block fit: rms error "
                    f"{100 * blk['rms_rel_err']:.0f}%, max {100 * blk['max_rel_err']:.0f}%; "
                    f"max {100 * blk['before_max_rel_err']:.0f}% with the defaults)"
                )
            if cal.optimizer_efficiency is not None:
                lines.append(
                    f"  optimizer          {cal.optimizer_efficiency:.3g} of the HBM rate "
                    "(fused Adam step)"
                )
            if "note" in cal.meta:
                lines.append(f"  note: {cal.meta['note']}")
            if out is not None:
                lines.append(f"written to {out}")
            typer.echo("\n".join(lines))

    @app.command(
        "validate",
        epilog="Examples:\n\n"
        "  shardwise validate --check            (CPU: TP/PP/DP equal one device)\n\n"
        "  shardwise validate --preset tp2 --shape h4096-l8 --out table.md\n\n"
        "  python solver/profile/run.py all --out raw.json   (GPU machine)\n\n"
        "  shardwise validate --from-json raw.json --out table.md\n\n"
        "Exit codes: 0 ok, 1 a --check found a difference, 2 bad input.",
    )
    def validate_cmd(
        from_json: FromJsonOpt = None,
        preset: Annotated[
            str | None,
            typer.Option(
                "--preset",
                metavar="LIST",
                help="Training plans to run: single, dpN, tpN, ppN (comma-separated) "
                "\\[default: single,dp2,tp2,pp2].",
                show_default=False,
            ),
        ] = None,
        plan: Annotated[
            list[Path] | None,
            typer.Option(
                "--plan",
                "-p",
                metavar="PLAN.json",
                help="Also run this plan (training or inference; repeatable).",
                show_default=False,
            ),
        ] = None,
        shape: Annotated[
            str | None,
            typer.Option(
                "--shape",
                metavar="LIST",
                help="Model shapes h<hidden>-l<layers> \\[default: h4096-l8,h8192-l4; "
                "tiny with --cpu].",
                show_default=False,
            ),
        ] = None,
        micro_batches: Annotated[
            str | None,
            typer.Option("--micro-batches", metavar="LIST", help="Micro-batch sizes [1]."),
        ] = None,
        no_inference: Annotated[
            bool, typer.Option("--no-inference", help="Skip the inference cases.")
        ] = False,
        fusion: Annotated[
            str | None,
            typer.Option(
                "--fusion",
                metavar="MODE",
                help="Megatron-LM fusions of the training step: megatron (fused elementwise "
                "kernels and gradient accumulation), compile (the elementwise ones) or none "
                "(eager) \\[default: megatron on GPUs, none with --cpu].",
                show_default=False,
            ),
        ] = None,
        cluster: Annotated[
            str,
            typer.Option(
                "--cluster", "-c", metavar="CLUSTER", help="Cluster the predictions price."
            ),
        ] = "h100x2-nvlink",
        calibration: Annotated[
            Path | None,
            typer.Option(
                "--calibration",
                metavar="CAL.yaml",
                help="Calibration for the calibrated column \\[default: fitted from the raw "
                "JSON's profile section, if any].",
                show_default=False,
            ),
        ] = None,
        check: Annotated[
            bool,
            typer.Option(
                "--check",
                help="Correctness only (CPU, gloo, float64): TP, PP and DP training steps and "
                "TP, PP inference against one device.",
            ),
        ] = False,
        cpu: CpuOpt = False,
        world: WorldOpt = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                metavar="TABLE.md",
                help="Write the comparison (Markdown) here.",
                show_default=False,
            ),
        ] = None,
        raw_out: RawOutOpt = None,
        force: ForceOpt = False,
        json_output: JsonOpt = False,
    ) -> None:
        """Run a GPT stack under single-GPU, DP, TP and PP plans and compare measured step
        time, memory and inference latency with the evaluator's predictions."""
        exit_code = 0
        with user_errors():
            from ..profile.raw import FUSIONS

            if fusion is not None and fusion not in FUSIONS:
                raise SpecError(f"--fusion: must be one of {', '.join(FUSIONS)}, got {fusion!r}")
            if out is not None:
                refuse_overwrite(out, force)
            if check:
                raw = _measure(["check", *_common_argv(True, world)], raw_out, force)
                bad = failed_checks(raw.get("checks", []))
                if json_output:
                    emit_json({"checks": raw.get("checks", []), "ok": not bad})
                else:
                    for c in raw.get("checks", []):
                        typer.echo(check_line(c))
                    typer.echo("all checks passed" if not bad else f"FAILED: {', '.join(bad)}")
                exit_code = 1 if bad else 0
            else:
                from ..io import load_calibration
                from ..profile.calibrate import read_raw
                from ..profile.compare import compare, render_markdown

                cal = load_calibration(calibration) if calibration is not None else None
                modern = _modern_raw(from_json) if from_json is not None else None
                if modern is not None:
                    # The modern runner's raw JSON: per-term error of the cost model's figures
                    # against its micro-benchmarks, catalog and calibrated.
                    text = _term_error_text(modern, cal)
                    if out is not None:
                        write_new_file(out, text + "\n", force=force)
                    if json_output:
                        emit_json(_term_error_doc(modern, cal))
                    else:
                        typer.echo(text)
                    return
                if from_json is not None:
                    raw = read_raw(from_json)
                else:
                    argv = ["validate", *_common_argv(cpu, world)]
                    if preset is not None:
                        argv += ["--presets", preset]
                    for p in plan or []:
                        argv += ["--plan", str(p)]
                    if shape:
                        argv += ["--shapes", shape]
                    if micro_batches:
                        argv += ["--micro-batches", micro_batches]
                    if no_inference:
                        argv += ["--infer-presets", "none"]
                    if fusion is not None:
                        argv += ["--fusion", fusion]
                    raw = _measure(argv, raw_out, force)
                result = compare(raw, cluster=cluster, calibration=cal)
                text = render_markdown(result)
                if out is not None:
                    write_new_file(out, text + "\n", force=force)
                if json_output:
                    emit_json(result)
                else:
                    typer.echo(text)
        if exit_code:
            raise typer.Exit(exit_code)
