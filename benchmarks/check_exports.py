"""Feed every golden export to the engine's own parser or validator; print a table.

    make check-exports                                  # pinned engines in .venv-exports
    .venv-exports/bin/python benchmarks/check_exports.py [--require deepspeed,sglang,torch,vllm,megatron]

Golden exports are the files under ``tests/golden/export/outputs/`` and
``tests/golden/export/configs/outputs/`` (``<plan>[@variant].<target>.<ext>``); the plan file
(``<plan>.json`` beside them) gives the world size.  Per target:

* ``deepspeed``: ``deepspeed.runtime.config.DeepSpeedConfig`` on the plan's world size
  (``deepspeed.comm`` answers ``get_world_size() = TP x PP x DP``), with the model-parallel
  unit the export's notes name: the ``PipelineModule`` topology built from DeepSpeed's own
  ``PipeModelDataParallelTopology`` (PP > 1), an ``mpu`` with DP (AutoTP), or none;
* ``torchrun``: every node line through ``torch.distributed.run.get_args_parser()``; the node
  lines must cover the plan's ranks, and ``CUDA_DEVICE_MAX_CONNECTIONS=1`` must be exported
  when TP > 1 (Megatron's ``validate_args`` requires it);
* ``megatron``: the ``MEGATRON_ARGS`` array must parse in bash and carry the same
  ``CUDA_DEVICE_MAX_CONNECTIONS=1`` line (Megatron-LM's argument parser lives in
  ``megatron/training/arguments.py``, which the ``megatron-core`` package does not ship);
* ``sglang``: every launch line through ``sglang.srt.server_args.prepare_server_args``;
* ``vllm``: vLLM's own parser when vLLM imports, else the flags and values against lists quoted
  from vLLM 0.34.0's source (:data:`VLLM`);
* ``trtllm``: the ``trtllm-serve`` flags and the LLM-API YAML against lists quoted from
  TensorRT-LLM's source (:data:`TRTLLM`; no wheel on PyPI).

Exit status 1 if any row fails (or a ``--require``-d engine is missing), else 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "export"
#: (outputs folder, plans folder)
SOURCES = ((GOLDEN / "outputs", GOLDEN), (GOLDEN / "configs" / "outputs", GOLDEN / "configs"))

#: vLLM 0.34.0 (PyPI wheel vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl): the serve flags
#: shardwise writes (vllm/engine/arg_utils.py EngineArgs fields as --kebab-case, and the
#: frontend's --host/--port/--headless), and the values of the three precision options:
#: vllm/config/cache.py CacheDType, vllm/model_executor/layers/quantization/__init__.py
#: QuantizationMethods (the part shardwise writes), vllm/config/model.py ModelDType.
VLLM: dict[str, tuple[str, ...]] = {
    "flags": (
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--max-num-seqs",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-batched-tokens",
        "--dtype",
        "--quantization",
        "--kv-cache-dtype",
        "--data-parallel-size",
        "--data-parallel-size-local",
        "--data-parallel-start-rank",
        "--data-parallel-address",
        "--data-parallel-rpc-port",
        "--distributed-executor-backend",
        "--headless",
        "--host",
        "--port",
    ),
    "--kv-cache-dtype": ("auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "nvfp4"),
    "--quantization": ("fp8", "gptq_marlin", "awq_marlin", "modelopt_fp4", "compressed-tensors"),
    "--dtype": ("auto", "half", "float16", "bfloat16", "float", "float32"),
    "--distributed-executor-backend": ("ray", "mp", "uni", "external_launcher"),
}

#: TensorRT-LLM: ``trtllm-serve serve`` click options (tensorrt_llm/commands/serve.py at commit
#: 00209af149e7774406881a37283dce303571eb11) and the LLM-API YAML keys shardwise writes with
#: their values: KvCacheConfig.dtype synced by TorchLlmArgs.sync_quant_config_with_kv_cache_
#: config_dtype (tensorrt_llm/llmapi/llm_args.py: "auto" or "fp8"), BaseLlmArgs.dtype, and
#: QuantConfig.quant_algo from tensorrt_llm/quantization/mode.py QuantAlgo (v1.2).
TRTLLM: dict[str, tuple[str, ...]] = {
    "flags": (
        "--backend",
        "--host",
        "--port",
        "--max_batch_size",
        "--max_seq_len",
        "--max_num_tokens",
        "--tp_size",
        "--tensor_parallel_size",
        "--pp_size",
        "--pipeline_parallel_size",
        "--config",
        "--extra_llm_api_options",
    ),
    "--backend": ("pytorch", "tensorrt", "trt", "_autodeploy"),
    "kv_cache_config.dtype": ("auto", "fp8"),
    "dtype": ("auto", "float16", "bfloat16", "float32"),
    "quant_config.quant_algo": (
        "W8A16",
        "W4A16",
        "W4A16_AWQ",
        "W4A8_AWQ",
        "W8A16_GPTQ",
        "W4A16_GPTQ",
        "FP8",
        "FP8_PER_CHANNEL_PER_TOKEN",
        "FP8_BLOCK_SCALES",
        "NVFP4",
        "W4A8_MXFP4_FP8",
        "W4A16_MXFP4",
        "NO_QUANT",
    ),
}


#: The targets with a check (see :data:`CHECKS`).
CHECKS_FOR = ("deepspeed", "torchrun", "megatron", "vllm", "sglang", "trtllm")


class Skip(Exception):
    """The engine is not installed here."""


@dataclass(frozen=True)
class Golden:
    path: Path
    plan: dict[str, Any]
    target: str

    @property
    def degrees(self) -> list[tuple[int, int, int]]:
        """(TP, PP, DP) per replica group."""
        return [
            (g["stages"][0]["tp"], len(g["stages"]), g["count"])
            for g in self.plan["replica_groups"]
        ]


def goldens() -> list[Golden]:
    out: list[Golden] = []
    for outputs, plans in SOURCES:
        for path in sorted(outputs.glob("*")):
            parts = path.name.split(".")
            if len(parts) != 3 or parts[2] not in ("sh", "json"):  # a hostfile, a rank map
                continue
            stem, target = parts[:2]
            # A config golden may export a bundled plan (<plan>@<variant>): look in both.
            name = f"{stem.split('@')[0]}.json"
            plan_path = plans / name if (plans / name).is_file() else GOLDEN / name
            plan = json.loads(plan_path.read_text(encoding="utf-8"))
            if target in CHECKS_FOR:
                out.append(Golden(path, plan, target))
    return out


# ------------------------------------------------------------------------------------------
# Reading the shell outputs
# ------------------------------------------------------------------------------------------
def logical_lines(text: str) -> list[str]:
    """Backslash-continued lines joined; comments and heredoc bodies dropped."""
    out: list[str] = []
    row = ""
    heredoc: str | None = None
    for line in text.splitlines():
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
            continue
        if not row and line.lstrip().startswith("#"):
            continue
        match = re.search(r"<<'(\w+)'", line)
        if match:
            heredoc = match.group(1)
        if line.endswith("\\"):
            row += line[:-1] + " "
            continue
        out.append(row + line)
        row = ""
    return out


def commands(text: str, program: tuple[str, ...]) -> list[tuple[dict[str, str], list[str]]]:
    """Every command line running ``program`` (a token sequence): (environment, arguments)."""
    found: list[tuple[dict[str, str], list[str]]] = []
    n = len(program)
    for line in logical_lines(text):
        words = shlex.split(line)
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) == program:
                env = dict(w.split("=", 1) for w in words[:i] if re.match(r"^[A-Z_]+=", w))
                found.append((env, words[i + n :]))
                break
    return found


def bash_array(text: str, name: str) -> list[str]:
    """The elements of ``NAME=( ... )`` as bash reads them (only the array literal runs)."""
    start = text.index(f"{name}=(")
    end = text.index("\n)", start) + 2
    script = text[start:end] + f'\nprintf "%s\\0" "${{{name}[@]}}"\n'
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return [w for w in proc.stdout.split("\0") if w]


def heredoc_yaml(text: str) -> dict[str, Any]:
    """The YAML written by the script's ``cat > FILE <<'EOF'`` block ({} if none), read as the
    two-level block mapping shardwise writes."""
    match = re.search(r"<<'EOF'\n(.*?)\nEOF\n", text, re.S)
    if match is None:
        return {}
    doc: dict[str, Any] = {}
    section: dict[str, Any] | None = None
    for line in match.group(1).splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if line.startswith("  "):
            assert section is not None, line
            section[key] = value
        elif value:
            doc[key], section = value, None
        else:
            section = doc.setdefault(key, {})
    return doc


def _split_flags(args: list[str]) -> list[tuple[str, str | None]]:
    """``--flag value`` pairs (value None for a bare flag)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        flag = args[i]
        if not flag.startswith("--"):
            raise ValueError(f"unexpected argument {flag!r}")
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.append((flag, args[i + 1]))
            i += 2
        else:
            out.append((flag, None))
            i += 1
    return out


# ------------------------------------------------------------------------------------------
# Checks: each returns a detail string or raises (AssertionError/Exception = FAIL, Skip = skip)
# ------------------------------------------------------------------------------------------
def check_deepspeed(g: Golden) -> str:
    try:
        from deepspeed.runtime import config as ds_config
        from deepspeed.runtime.pipe.topology import (
            PipeDataParallelTopology,
            PipeModelDataParallelTopology,
        )
    except ImportError as err:
        raise Skip("deepspeed not installed") from err
    import deepspeed

    cfg = json.loads(g.path.read_text(encoding="utf-8"))
    [(tp, pp, dp)] = g.degrees
    world = tp * pp * dp
    ds_config.dist.get_world_size = lambda group=None: world  # type: ignore[attr-defined]
    ds_config.dist.get_rank = lambda group=None: 0  # type: ignore[attr-defined]

    class Mpu:
        def __init__(self, data: int) -> None:
            self.data = data

        def get_data_parallel_world_size(self) -> int:
            return self.data

    mpu: Mpu | None = None
    unit = "no mpu"
    if "pipeline" in cfg:
        assert cfg["pipeline"]["stages"] == pp, cfg["pipeline"]
        topo = (
            PipeModelDataParallelTopology(num_pp=pp, num_mp=tp, num_dp=dp)
            if tp > 1
            else PipeDataParallelTopology(num_pp=pp, num_dp=dp)
        )
        assert topo.world_size() == world, (topo.world_size(), world)
        mpu, unit = Mpu(topo.get_dim("data")), f"PipelineModule topology pp={pp} mp={tp}"
    elif "tensor_parallel" in cfg:
        autotp = cfg["tensor_parallel"]["autotp_size"]
        assert autotp == tp, (autotp, tp)
        mpu, unit = Mpu(world // autotp), f"AutoTP {autotp} + mpu"
    else:
        assert tp == pp == 1, "TP or PP > 1 but the config says neither"
    parsed = ds_config.DeepSpeedConfig(cfg, mpu)
    zero = g.plan["replica_groups"][0]["zero_stage"]
    assert parsed.zero_optimization_stage == zero, (parsed.zero_optimization_stage, zero)
    recompute = g.plan["replica_groups"][0].get("recompute", "none")
    assert ("activation_checkpointing" in cfg) == (recompute == "full"), recompute
    return (
        f"DeepSpeedConfig {deepspeed.__version__}: world {world}, DP {parsed.world_size:g} "
        f"({unit}), train_batch {parsed.train_batch_size}, ZeRO-{zero}"
    )


def _needs_connections_line(g: Golden, text: str) -> str:
    tp = max(t for t, _, _ in g.degrees)
    if tp > 1:
        assert "export CUDA_DEVICE_MAX_CONNECTIONS=1" in text, "TP > 1 without the env line"
        return "CUDA_DEVICE_MAX_CONNECTIONS=1 exported"
    return "TP=1"


def check_torchrun(g: Golden) -> str:
    try:
        import torch
        from torch.distributed.run import get_args_parser
    except ImportError as err:
        raise Skip("torch not installed") from err
    text = g.path.read_text(encoding="utf-8")
    lines = commands(text, ("torchrun",))
    assert lines, "no torchrun line"
    ranks = 0
    for rank, (env, args) in enumerate(lines):
        ns = get_args_parser().parse_args(args)
        assert int(ns.node_rank) == rank and int(ns.nnodes) == len(lines), (ns.node_rank, rank)
        nproc = int(ns.nproc_per_node)
        visible = env.get("CUDA_VISIBLE_DEVICES", "").split(",")
        assert len(visible) == nproc, (visible, nproc)
        ranks += nproc
    world = sum(t * p * d for t, p, d in g.degrees)
    assert ranks == world, (ranks, world)
    bash_array(text, "MEGATRON_ARGS")
    env_note = _needs_connections_line(g, text)
    return f"torch {torch.__version__} get_args_parser: {len(lines)} node(s), {ranks} ranks; {env_note}"


def _plan_chunks(plan: dict[str, Any]) -> list[list[tuple[int, int]]]:
    """Per pipeline stage, its (first, last) layer ranges in chunk order, from the plan."""
    out = []
    for st in plan["replica_groups"][0]["stages"]:
        if st.get("chunks"):
            out.append([(int(a), int(b)) for a, b in st["chunks"]])
        else:
            out.append([(int(st["first_layer"]), int(st["last_layer"]))])
    return out


def megatron_layer_ranges(args: list[str]) -> list[list[tuple[int, int]]] | None:
    """The decoder layers each pipeline rank (and virtual stage) builds, computed by
    Megatron-Core's own ``get_transformer_layer_offset`` / ``get_num_layers_to_build`` from a
    ``TransformerConfig`` carrying the exported split flags; None without megatron-core.

    megatron-core 0.14.0 (PyPI, = Megatron-LM core_v0.14.0) ships those functions and
    ``PipelineParallelLayerLayout`` but not ``megatron/training/arguments.py``, so the CLI flags
    are mapped to the config fields here, one to one: --num-layers, --pipeline-model-parallel-
    size, --num-layers-per-virtual-pipeline-stage / --num-virtual-stages-per-pipeline-rank,
    --decoder-first/last-pipeline-num-layers, --pipeline-model-parallel-layout.  The pipeline
    rank is what ``parallel_state`` reports, so it is set per rank.
    """
    try:
        import torch
        from megatron.core import parallel_state  # type: ignore[import-not-found]
        from megatron.core.transformer.transformer_block import (  # type: ignore[import-not-found]
            get_num_layers_to_build,
        )
        from megatron.core.transformer.transformer_config import (  # type: ignore[import-not-found]
            TransformerConfig,
        )
        from megatron.core.transformer.transformer_layer import (  # type: ignore[import-not-found]
            get_transformer_layer_offset,
        )
    except ImportError:
        return None
    f = dict(_split_flags(args))
    layers = int(f["--num-layers"] or 0)
    pp = int(f.get("--pipeline-model-parallel-size") or 1)
    vp: int | None = None
    if f.get("--num-virtual-stages-per-pipeline-rank"):
        vp = int(f["--num-virtual-stages-per-pipeline-rank"] or 0)
    elif f.get("--num-layers-per-virtual-pipeline-stage"):
        vp = layers // pp // int(f["--num-layers-per-virtual-pipeline-stage"] or 1)
    first, last = (
        f.get("--decoder-first-pipeline-num-layers"),
        f.get("--decoder-last-pipeline-num-layers"),
    )
    kw: dict[str, Any] = dict(
        num_layers=layers,
        hidden_size=int(f["--hidden-size"] or 0),
        num_attention_heads=int(f["--num-attention-heads"] or 0),
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vp,
        num_layers_in_first_pipeline_stage=int(first) if first else None,
        num_layers_in_last_pipeline_stage=int(last) if last else None,
        pipeline_dtype=torch.bfloat16,
    )
    if f.get("--pipeline-model-parallel-layout"):
        kw["pipeline_model_parallel_layout"] = f["--pipeline-model-parallel-layout"]
    cfg = TransformerConfig(**kw)
    # What initialize_model_parallel would set from the same flags, rank by rank.
    names = (
        "get_pipeline_model_parallel_rank",
        "get_pipeline_model_parallel_world_size",
        "get_virtual_pipeline_model_parallel_world_size",
        "is_pipeline_first_stage",
        "is_pipeline_last_stage",
    )
    saved = {n: getattr(parallel_state, n) for n in names}
    out: list[list[tuple[int, int]]] = []
    try:
        parallel_state.get_pipeline_model_parallel_world_size = lambda *a, **k: pp
        parallel_state.get_virtual_pipeline_model_parallel_world_size = lambda *a, **k: vp
        for rank in range(pp):
            parallel_state.get_pipeline_model_parallel_rank = lambda *a, _r=rank, **k: _r
            parallel_state.is_pipeline_first_stage = lambda *a, _r=rank, **k: _r == 0
            parallel_state.is_pipeline_last_stage = lambda *a, _r=rank, **k: _r == pp - 1
            chunks = []
            for v in range(vp or 1):
                stage = v if vp else None
                off = get_transformer_layer_offset(cfg, vp_stage=stage)
                n = get_num_layers_to_build(cfg, vp_stage=stage)
                chunks.append((int(off), int(off) + int(n) - 1))
            out.append(chunks)
    finally:
        for n, fn in saved.items():
            setattr(parallel_state, n, fn)
    return out


#: Run in a fresh interpreter per export (Megatron's parse_args reads sys.argv and keeps
#: global state): Megatron-LM's own ``parse_args`` + ``validate_args`` on the exported array
#: with the plan's world size, a mock tokenizer/data (what the notes ask the user to add),
#: and the device architecture the CPU machine cannot query set to Hopper (9).
_MEGATRON_VALIDATE = r"""
import contextlib, io, json, os, sys
spec = json.load(sys.stdin)
os.environ.update(WORLD_SIZE=str(spec["world"]), RANK="0", LOCAL_RANK="0",
                  CUDA_DEVICE_MAX_CONNECTIONS="1")
import megatron.training.arguments as A
A.get_device_arch_version = lambda: 9
sys.argv = ["pretrain_gpt.py", *spec["args"], "--tokenizer-type", "NullTokenizer",
            "--vocab-size", "51200", "--mock-data"]
with contextlib.redirect_stdout(io.StringIO()):
    a = A.validate_args(A.parse_args(), {})
print(json.dumps([a.world_size, a.tensor_model_parallel_size, a.pipeline_model_parallel_size,
                  a.data_parallel_size]))
"""


def megatron_validate(args: list[str], world: int) -> list[int] | None:
    """(world, TP, PP, DP) as Megatron-LM's ``validate_args`` derives them, or None when no
    Megatron-LM checkout is on ``MEGATRON_LM`` (its training package is not on PyPI)."""
    root = os.environ.get("MEGATRON_LM")
    if not root:
        return None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", _MEGATRON_VALIDATE],
        input=json.dumps({"args": args, "world": world}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise AssertionError(
            f"Megatron-LM validate_args: {lines[-1] if lines else proc.returncode}"
        )
    out: list[int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def check_megatron(g: Golden) -> str:
    text = g.path.read_text(encoding="utf-8")
    args = bash_array(text, "MEGATRON_ARGS")
    detail = f"bash array of {len(args)} words; {_needs_connections_line(g, text)}"
    ((tp, pp, dp),) = g.degrees
    validated = megatron_validate(args, tp * pp * dp)
    if validated is not None:
        assert validated == [tp * pp * dp, tp, pp, dp], (
            f"validate_args derives world/TP/PP/DP {validated}, the plan {[tp * pp * dp, tp, pp, dp]}"
        )
        detail += f"; Megatron-LM parse_args + validate_args: world {validated[0]}, DP {dp}"
    built = megatron_layer_ranges(args)
    if built is None:
        return detail + "; megatron-core not installed: layer ranges not checked"
    want = _plan_chunks(g.plan)
    assert built == want, f"Megatron-Core builds {built}, the plan says {want}"
    return (
        detail + f"; megatron-core 0.14.0 builds the plan's layer ranges on all {len(want)} stages"
    )


_LAUNCH = {
    "vllm": ("vllm", "serve", "$MODEL"),
    "sglang": ("python", "-m", "sglang.launch_server", "--model-path", "$MODEL"),
    "trtllm": ("trtllm-serve", "$MODEL"),
}


def _launches(g: Golden) -> list[tuple[dict[str, str], list[str]]]:
    lines = commands(g.path.read_text(encoding="utf-8"), _LAUNCH[g.target])
    assert lines, f"no {' '.join(_LAUNCH[g.target])} line"
    tps = {t for t, _, _ in g.degrees}
    pps = {p for _, p, _ in g.degrees}
    for env, args in lines:
        flags = dict(_split_flags(args))
        tp = flags.get("--tensor-parallel-size") or flags.get("--tp-size") or flags["--tp_size"]
        pp = flags.get("--pipeline-parallel-size") or flags.get("--pp-size") or flags["--pp_size"]
        assert tp is not None and int(tp) in tps, (tp, tps)
        assert pp is not None and int(pp) in pps, (pp, pps)
        for key, value in env.items():
            if key.endswith("_PP_LAYER_PARTITION"):
                assert len(value.split(",")) == int(pp), (value, pp)
    return lines


def check_sglang(g: Golden) -> str:
    lines = _launches(g)
    try:
        import sglang
        from sglang.srt.server_args import prepare_server_args
    except ImportError as err:
        raise Skip("sglang not installed") from err
    for _, args in lines:
        parsed = prepare_server_args(["--model-path", "MODEL", *args])
        assert parsed.tp_size >= 1
    return f"sglang {sglang.__version__} prepare_server_args: {len(lines)} launch line(s)"


def _static(
    lines: list[tuple[dict[str, str], list[str]]], table: dict[str, tuple[str, ...]]
) -> int:
    n = 0
    for _, args in lines:
        for flag, value in _split_flags(args):
            assert flag in table["flags"], f"{flag}: not an option of the pinned source"
            if flag in table and value is not None:
                assert value in table[flag], f"{flag} {value}: not one of {table[flag]}"
            n += 1
    return n


#: Flags of ``vllm serve`` that belong to the API server (vllm/entrypoints/openai/cli_args.py
#: and the serve subcommand), not to EngineArgs: checked against the quoted lists only.
VLLM_SERVER_FLAGS = ("--port", "--host", "--headless")


def check_vllm(g: Golden) -> str:
    lines = _launches(g)
    n = _static(lines, VLLM)
    try:
        # The wheel is the CUDA build; building EngineArgs' defaults asks for the current
        # platform, so parse as vLLM's own CPU platform would (nothing is launched).
        import vllm.platforms as vllm_platforms  # type: ignore[import-not-found]
        from vllm.platforms.cpu import CpuPlatform  # type: ignore[import-not-found]

        vllm_platforms._current_platform = CpuPlatform()
        from vllm.engine.arg_utils import AsyncEngineArgs  # type: ignore[import-not-found]
        from vllm.utils.argparse_utils import (  # type: ignore[import-not-found]
            FlexibleArgumentParser,
        )
    except ImportError:
        return f"{n} flags against vLLM 0.34.0 source lists (vLLM not importable here)"
    parsed = 0
    for _, args in lines:
        engine_args: list[str] = []
        skip = False
        for i, a in enumerate(args):
            if skip:
                skip = False
                continue
            if a in VLLM_SERVER_FLAGS:
                # --headless takes no value; --port/--host take one.
                skip = a != "--headless" and i + 1 < len(args) and not args[i + 1].startswith("--")
                continue
            engine_args.append(a)
        parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
        ns = parser.parse_args(["--model", "placeholder/model", *engine_args])
        AsyncEngineArgs.from_cli_args(ns)
        parsed += 1
    return f"{parsed} launch line(s) through vLLM 0.34.0 AsyncEngineArgs; {n} flags against source lists"


def check_trtllm(g: Golden) -> str:
    text = g.path.read_text(encoding="utf-8")
    lines = _launches(g)
    n = _static(lines, TRTLLM)
    config = heredoc_yaml(text)
    for key, value in config.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                allowed = TRTLLM[f"{key}.{sub}"]
                assert v in allowed, f"{key}.{sub}: {v} not one of {allowed}"
        else:
            assert value in TRTLLM[key], f"{key}: {value} not one of {TRTLLM[key]}"
    if config:
        assert all("--config" in args for _, args in lines), "YAML written but not passed"
    yaml_note = f", YAML {sorted(config)}" if config else ""
    return f"{n} flags against TensorRT-LLM source lists{yaml_note}"


CHECKS: dict[str, Callable[[Golden], str]] = {
    "deepspeed": check_deepspeed,
    "torchrun": check_torchrun,
    "megatron": check_megatron,
    "sglang": check_sglang,
    "vllm": check_vllm,
    "trtllm": check_trtllm,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--require",
        default="",
        help="comma-separated engines whose absence is a failure (e.g. deepspeed,sglang,torch)",
    )
    args = parser.parse_args(argv)
    required = {r for r in args.require.split(",") if r}
    # Engines whose own parser replaces the source-list check when importable: a required
    # one that is missing fails its rows instead of passing on the lists alone.
    missing = {
        name
        for name, module in (("vllm", "vllm.engine.arg_utils"), ("megatron", "megatron.core"))
        if name in required and importlib.util.find_spec(module.split(".")[0]) is None
    }
    rows: list[tuple[str, str, str]] = []
    for g in goldens():
        if g.target in missing:
            rows.append((g.path.name, "FAIL", f"{g.target} required but not importable"))
            continue
        try:
            detail, status = CHECKS[g.target](g), "ok"
        except Skip as why:
            detail = str(why)
            status = "FAIL" if detail.split()[0] in required else "skip"
        except Exception as err:  # noqa: BLE001 - every failure becomes a row
            detail, status = f"{type(err).__name__}: {err}".splitlines()[0], "FAIL"
        rows.append((g.path.name, status, detail))
    width = max(len(r[0]) for r in rows)
    print(f"{'golden export':<{width}}  status  check")
    for name, status, detail in rows:
        print(f"{name:<{width}}  {status:<6}  {detail}")
    failed = sum(1 for r in rows if r[1] == "FAIL")
    ok = sum(1 for r in rows if r[1] == "ok")
    print(f"{ok} ok, {failed} failed, {len(rows) - ok - failed} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
