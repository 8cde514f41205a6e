"""``shardwise export``: a plan as launch configs (see :mod:`solver.export`).

Exit codes: 0 written; 2 bad input (unknown ``--to``, missing or malformed file, a plan that
disagrees with ``--model``/``--workload``/``--cluster``, an existing ``--out`` without
``--force``); 3 the engine cannot express the plan (the one-line error names every reason).
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import ForceOpt, JsonOpt, emit_json, user_errors, write_new_file

#: Exit status when the target engine cannot express the plan (the input itself is valid).
EXIT_ENGINE_CANNOT_EXPRESS = 3

_EPILOG = (
    "Examples:\n\n"
    "  shardwise plan -m gpt-39b -c selene-a100-64 -w train-gpt-s2048 --out plan.json\n\n"
    "  shardwise export plan.json --to megatron -m gpt-39b -w train-gpt-s2048\n\n"
    "  shardwise export plan.json --to torchrun -m gpt-39b -w train-gpt-s2048 --out launch.sh\n\n"
    "  shardwise export chat.json --to vllm -m llama3-70b -w infer-chat-slo -c seed-4x8-h100\n\n"
    "Targets: megatron, deepspeed, torchrun (training; need --model and --workload); vllm, "
    "sglang, trtllm (inference; need --model).  --out FILE writes the main output to FILE and "
    "any further files beside it as FILE-stem.NAME (torchrun: .hostfile, .rank_map.json).  "
    "Exit codes: 0 ok, 2 bad input, 3 the engine cannot express the plan."
)


def _beside(out: Path, name: str) -> Path:
    """``launch.sh`` + ``hostfile`` -> ``launch.hostfile``."""
    return out.with_name(f"{out.stem}.{name}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("export", epilog=_EPILOG)
    def export_cmd(
        plan: Annotated[
            Path,
            typer.Argument(
                metavar="PLAN.json",
                help="Plan file (the output of 'shardwise plan --out', JSON or YAML).",
                show_default=False,
            ),
        ],
        to: Annotated[
            str | None,
            typer.Option(
                "--to",
                metavar="TARGET",
                help="megatron, deepspeed, torchrun, vllm, sglang or trtllm.",
                show_default=False,
            ),
        ] = None,
        model: Annotated[
            str | None,
            typer.Option(
                "--model",
                "-m",
                metavar="MODEL",
                help="Model spec (name under models/ or a path); required by every target.",
                show_default=False,
            ),
        ] = None,
        cluster: Annotated[
            str | None,
            typer.Option(
                "--cluster",
                "-c",
                metavar="CLUSTER",
                help="Cluster spec; optional: checks the plan's devices and names GPU types.",
                show_default=False,
            ),
        ] = None,
        workload: Annotated[
            str | None,
            typer.Option(
                "--workload",
                "-w",
                metavar="WORKLOAD",
                help="Workload spec; required for training targets (sequence length, "
                "precision), optional for inference (context length, dtype).",
                show_default=False,
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                metavar="FILE",
                help="Write the output to FILE (further files beside it) instead of stdout.",
                show_default=False,
            ),
        ] = None,
        force: ForceOpt = False,
        json_output: JsonOpt = False,
    ) -> None:
        """Turn a plan into launch configs: Megatron-LM args, a DeepSpeed config, vLLM / SGLang /
        TensorRT-LLM launch lines, or per-node torchrun lines with a hostfile and rank map."""
        from ..errors import SpecError
        from ..export import TARGETS, EngineCannotExpress, export_plan

        with user_errors():
            if to is None:
                raise SpecError(f"--to: required, one of {', '.join(TARGETS)}")
            if to not in TARGETS:
                raise SpecError(f"--to: must be one of {', '.join(TARGETS)}, got {to!r}")
            try:
                result = export_plan(plan, to, model=model, cluster=cluster, workload=workload)
            except EngineCannotExpress as err:
                if json_output:
                    emit_json({"target": to, "error": str(err), "violations": err.violations})
                sys.stderr.write(f"error: {' '.join(str(err).split())}\n")
                raise typer.Exit(EXIT_ENGINE_CANNOT_EXPRESS) from None

            written: list[str] = []
            if out is not None:
                targets = [(out, result.text)] + [
                    (_beside(out, name), text) for name, text in result.files.items()
                ]
                for path, _ in targets:  # refuse before writing anything
                    if path.exists() and not force:
                        raise SpecError(f"{path}: already exists; pass --force to overwrite")
                for path, text in targets:
                    write_new_file(path, text, force=force)
                    written.append(str(path))

            if json_output:
                doc = result.to_dict()
                doc["written"] = written
                emit_json(doc)
                return
            if out is not None:
                typer.echo(f"wrote {', '.join(written)}")
            else:
                sys.stdout.write(result.text)
                if result.files:
                    names = ", ".join(f"FILE-stem.{n}" for n in result.files)
                    sys.stderr.write(f"note: pass --out FILE to also write {names}\n")
            if to == "deepspeed":
                # Shell outputs carry their notes as comments; a JSON config cannot.
                for note in result.notes:
                    sys.stderr.write(f"note: {note}\n")
