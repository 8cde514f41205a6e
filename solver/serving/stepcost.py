"""What one engine step of a continuous-batching server costs (seconds).

An engine step is one forward over a mixed batch: every running decode sequence contributes
one token (attending over its whole context), and prefill *chunks* of admitted requests
contribute ``c`` new tokens each on top of ``p`` tokens already in their KV cache.  The
simulator asks a :class:`StepCost` for the time of such a step; three are provided:

* :class:`RooflineStepCost` (the default, :func:`roofline_step_cost`): built from the
  evaluator's own cost-model functions for one replica of an inference plan (see below);
* :class:`ConstantStepCost`: every step takes the same time (hand-derived tests);
* :class:`FunctionStepCost`: any ``f(num_decode_seqs, decode_context_tokens_sum,
  num_prefill_tokens, prefill_context_tokens_sum) -> seconds``.

The roofline step (``step-time model``, named so issue 16 item 1 can refine it)::

    t_dec  = decode(D) + kv_per_token * sum(decode contexts)      (0 without decode seqs)
    t_pre  = prefill_linear(P) + sum_chunks attention(c, p) + head(chunks that finish)
    t_step = max(t_dec + t_pre - t_weights, t_dec, t_pre) + step_overhead_s

* ``decode(D)``: :func:`~solver.costmodel.decode_block_time` of ``D`` sequences at context 0
  times the stage's layers, plus the embedding and LM head of ``D`` rows and the stage
  boundaries' p2p, summed over stages (stages run one after the other within a step: no
  pipelining of consecutive steps).  ``kv_per_token``: the marginal decode time of one more
  context token (the K/V read of :func:`decode_block_time`, memory-bound: its arithmetic
  intensity is <= 2 heads/kv_heads FLOP/byte, far below any GPU's ridge point), so the
  decode part is exactly :func:`decode_block_time` at the mean context for equal contexts.
* ``prefill_linear(P)``: :func:`~solver.costmodel.prefill_block_time` of ``P`` tokens minus
  its attention core (GEMMs, norms, RoPE, K/V writes and TP all-reduces grow with the token
  count, not with how the tokens split into sequences), plus embedding and p2p; tabulated
  at every token count up to 64 and on a geometric grid above (linear interpolation, exact
  at the grid points, which include the token budget).
* ``attention(c, p)``: the fused causal kernel of :func:`~solver.costmodel.block_forward_ops`
  for ``c`` queries over ``p + c`` keys: ``4 heads d (c p + CAUSAL_EXECUTED_FRACTION c^2)``
  executed FLOPs at the kernel's rate at ``p + c`` keys (``attention_saturation``) against
  reading Q, K, V, O and the ``p`` cached K/V; for ``p = 0`` exactly the prefill's own term.
* ``t_weights``: one read of every stage's weights.  A mixed step streams the weights once
  (the decode rows ride in the prefill's GEMMs), so a step with both kinds of work saves one
  weight read, but never costs less than either part alone.
* ``step_overhead_s``: a fixed per-step cost: the serving engine's exposed host time per step
  (``step_host_us`` of its profile) plus any extra ``step_overhead_s`` the caller adds.

Serving engine (``engine`` argument, default the workload's ``serving_engine``; ``auto`` =
vLLM): every table is built from the evaluator's functions with the engine's profile
(:mod:`solver.costmodel.serving_engine`): GEMMs at small M, the paged decode attention
kernel, the custom all-reduce, CUDA graphs within the captured batch sizes (eager launches
outside them), and an LM head with the sampler instead of the training head; ``roofline``
gives the tables of the pure roofline.  A static batch therefore costs what
:func:`solver.evaluate.evaluate` charges for it, step by step.

Approximations: the ``max`` of a kernel-launch-bound pass (``kernel_launch_us`` of a
calibration) is applied per table entry, not to the whole mixed step; MoE weight reads in
``t_weights`` count every expert; prefill attention must be fused (``attention: flash``,
what every serving engine runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..costmodel import (
    Op,
    block_forward_ops,
    decode_block_time,
    embedding_time,
    kv_cache_bytes_per_token,
    op_time,
    prefill_block_time,
)
from ..costmodel import constants as C
from ..costmodel import engine_profiles as EP
from ..costmodel import serving_engine as SE
from ..costmodel.compute import attention_saturation
from ..costmodel.quant import serving_precision
from ..costmodel.serving_compute import serving_head_time
from ..costmodel.serving_memory import stage_kv_pool, stage_weight_bytes
from ..costmodel.stack import stack_of
from ..errors import SpecError
from ..evaluate.boundary import _p2p
from ..evaluate.calibration import Cal, gpu_with_calibration
from ..evaluate.inference import engine_for_gpu
from ..evaluate.links import tp_link
from ..specs import Cluster, GPUSpec, InferenceWorkload, Model, ReplicaGroup

__all__ = [
    "ConstantStepCost",
    "FunctionStepCost",
    "RooflineStepCost",
    "StepCost",
    "default_max_num_batched_tokens",
    "kv_capacity_tokens",
    "roofline_step_cost",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Token counts tabulated exactly below the geometric grid of ``prefill_linear``.
_EXACT_TOKENS = 64
#: Ratio between neighbouring points of the geometric grid (interpolation error well under
#: 1% of a step: the roofline is piecewise linear in the token count).
_GRID_RATIO = 1.05
#: Context length whose decode time, minus that at 0, gives the per-token K/V read time.
_KV_PROBE_TOKENS = 4096


class StepCost(Protocol):
    """Prices engine steps for the simulator."""

    def decode_steps(self, num_decode: int, context_sums: FloatArray) -> FloatArray:
        """Times of consecutive decode-only steps of ``num_decode`` sequences whose contexts
        sum to ``context_sums[j]`` in step j."""
        ...

    def step(
        self,
        num_decode: int,
        context_sum: float,
        chunk_tokens: IntArray,
        chunk_context: IntArray,
        num_finished_prefills: int,
    ) -> float:
        """Time of one step with prefill chunks (``chunk_tokens[i]`` new tokens on top of
        ``chunk_context[i]`` cached ones; ``num_finished_prefills`` of them end their
        prompt and sample a first token)."""
        ...


@dataclass(frozen=True)
class ConstantStepCost:
    """Every step takes ``seconds``, whatever it holds."""

    seconds: float

    def decode_steps(self, num_decode: int, context_sums: FloatArray) -> FloatArray:
        return np.full(len(context_sums), self.seconds)

    def step(
        self,
        num_decode: int,
        context_sum: float,
        chunk_tokens: IntArray,
        chunk_context: IntArray,
        num_finished_prefills: int,
    ) -> float:
        return self.seconds


class _StepFn(Protocol):
    def __call__(
        self,
        num_decode_seqs: int,
        decode_context_tokens_sum: float,
        num_prefill_tokens: int,
        prefill_context_tokens_sum: float,
    ) -> float: ...


@dataclass(frozen=True)
class FunctionStepCost:
    """A plain function ``f(num_decode_seqs, decode_context_tokens_sum, num_prefill_tokens,
    prefill_context_tokens_sum) -> seconds`` (called once per step: slower than the
    vectorised costs, fine for tests and small runs)."""

    fn: _StepFn

    def decode_steps(self, num_decode: int, context_sums: FloatArray) -> FloatArray:
        return np.array([self.fn(num_decode, float(c), 0, 0.0) for c in context_sums])

    def step(
        self,
        num_decode: int,
        context_sum: float,
        chunk_tokens: IntArray,
        chunk_context: IntArray,
        num_finished_prefills: int,
    ) -> float:
        return float(
            self.fn(num_decode, context_sum, int(chunk_tokens.sum()), float(chunk_context.sum()))
        )


@dataclass(frozen=True)
class RooflineStepCost:
    """The roofline step-time model of this module's docstring, as tables for one replica.

    Attributes
    ----------
    decode_s
        ``decode(D)`` for D = 0..len - 1 (seconds; index 0 is 0).
    kv_per_token_s
        Decode time per context token (all stages).
    prefill_tokens, prefill_s
        Grid of token counts and ``prefill_linear`` at them (seconds).
    head_s
        LM head (+ its TP collectives) for F = 0..len - 1 sampled rows of a prefill step.
    attn_layers, attn_flops, attn_io, attn_kv, attn_s_per_flop, attn_s_per_byte, attn_saturates
        Per stage: layers; FLOPs per (query x key) pair and per query^2 (x causal fraction
        folded in separately); bytes per new token; bytes per cached token; seconds per
        FLOP at the kernel's asymptotic rate; seconds per HBM byte; whether the kernel's
        rate depends on the sequence length.
    weights_s
        One read of all stages' weights (seconds).
    step_overhead_s
        Fixed cost added to every step.
    mixed_batches
        Whether the engine runs decodes in its prefill steps (the profile's
        ``mixed_batches``); False: the simulator's steps with prefill chunks hold no decode
        (:class:`~solver.serving.simulator.Engine`).
    """

    decode_s: FloatArray
    kv_per_token_s: float
    prefill_tokens: FloatArray
    prefill_s: FloatArray
    head_s: FloatArray
    attn_layers: FloatArray
    attn_flops: FloatArray
    attn_io: FloatArray
    attn_kv: FloatArray
    attn_s_per_flop: FloatArray
    attn_s_per_byte: FloatArray
    attn_saturates: bool
    weights_s: float
    step_overhead_s: float = 0.0
    mixed_batches: bool = True

    @property
    def max_num_seqs(self) -> int:
        """The largest decode batch tabulated."""
        return len(self.decode_s) - 1

    def _decode(self, num_decode: int) -> float:
        if num_decode >= len(self.decode_s):
            raise SpecError(
                f"max_num_seqs: the step cost is tabulated up to {self.max_num_seqs} "
                f"sequences, got {num_decode}"
            )
        return float(self.decode_s[num_decode])

    def decode_steps(self, num_decode: int, context_sums: FloatArray) -> FloatArray:
        base = self._decode(num_decode) + self.step_overhead_s
        return base + self.kv_per_token_s * context_sums

    def attention(self, chunk_tokens: IntArray, chunk_context: IntArray) -> float:
        """Prefill attention of the chunks, all layers of all stages (seconds)."""
        c = chunk_tokens.astype(np.float64)[None, :]
        p = chunk_context.astype(np.float64)[None, :]
        flops = self.attn_flops[:, None] * (c * p + C.CAUSAL_EXECUTED_FRACTION * c * c)
        t_flops = flops * self.attn_s_per_flop[:, None]
        if self.attn_saturates:
            t_flops = t_flops / attention_saturation(p + c)  # type: ignore[arg-type]
        nbytes = self.attn_io[:, None] * c + self.attn_kv[:, None] * p
        t = np.maximum(t_flops, nbytes * self.attn_s_per_byte[:, None])
        return float((self.attn_layers[:, None] * t).sum())

    def prefill_linear(self, num_tokens: float) -> float:
        """``prefill_linear(P)`` (interpolated between grid points)."""
        if num_tokens > self.prefill_tokens[-1]:
            raise SpecError(
                f"max_num_batched_tokens: the step cost is tabulated up to "
                f"{int(self.prefill_tokens[-1])} tokens, got {num_tokens:g}"
            )
        grid = self.prefill_tokens
        i = int(np.searchsorted(grid, num_tokens, side="left"))
        if grid[i] == num_tokens:
            return float(self.prefill_s[i])
        x0, x1 = float(grid[i - 1]), float(grid[i])
        y0, y1 = float(self.prefill_s[i - 1]), float(self.prefill_s[i])
        return y0 + (y1 - y0) * (num_tokens - x0) / (x1 - x0)

    def step(
        self,
        num_decode: int,
        context_sum: float,
        chunk_tokens: IntArray,
        chunk_context: IntArray,
        num_finished_prefills: int,
    ) -> float:
        t_dec = self._decode(num_decode) + self.kv_per_token_s * context_sum if num_decode else 0.0
        if len(chunk_tokens) == 0:
            return t_dec + self.step_overhead_s
        t_pre = (
            self.prefill_linear(float(chunk_tokens.sum()))
            + self.attention(chunk_tokens, chunk_context)
            + float(self.head_s[num_finished_prefills])
        )
        if t_dec == 0.0:
            return t_pre + self.step_overhead_s
        return max(t_dec + t_pre - self.weights_s, t_dec, t_pre) + self.step_overhead_s


def default_max_num_batched_tokens(gpu: GPUSpec) -> int:
    """vLLM's default token budget per step for its OpenAI server: 8192 on GPUs with >= 70 GiB
    that are not A100s, else 2048 (vLLM ``EngineArgs.get_batch_defaults``,
    vllm/engine/arg_utils.py, v0.10-v0.11)."""
    gib70 = 70 * 2**30
    if gpu.memory_GB * C.GB >= gib70 and "a100" not in gpu.name.lower():
        return 8192
    return 2048


def _boundary_time(
    cluster: Cluster, group: ReplicaGroup, s: int, elements: float, calibration: Cal
) -> float:
    """p2p of ``elements`` activations from stage ``s`` to the next (0 after the last)."""
    if s >= group.pp - 1 or elements == 0:
        return 0.0
    a, b = group.stages[s], group.stages[s + 1]
    return _p2p(cluster, a, b, elements * C.ACTIVATION_BYTES, False, calibration)


def _grid(max_tokens: int, extra: tuple[int, ...]) -> FloatArray:
    exact = np.arange(0, min(_EXACT_TOKENS, max_tokens) + 1, dtype=np.float64)
    geo: FloatArray = np.array([], dtype=np.float64)
    if max_tokens > _EXACT_TOKENS:
        n = math.ceil(math.log(max_tokens / _EXACT_TOKENS) / math.log(_GRID_RATIO)) + 1
        geo = np.rint(np.geomspace(_EXACT_TOKENS, max_tokens, n))
    pts = np.concatenate([exact, geo, np.asarray(extra, dtype=np.float64), [max_tokens]])
    return np.unique(pts[pts <= max_tokens])


@dataclass
class _Tables:
    """The step-cost tables being summed over a replica's stages."""

    decode: FloatArray
    prefill: FloatArray
    head: FloatArray
    kv_per_token: float = 0.0
    weights_s: float = 0.0
    saturates: bool = False
    host_s: float = 0.0


def _add_stage(
    tables: _Tables,
    attn: list[list[float]],
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    group: ReplicaGroup,
    s: int,
    grid: FloatArray,
    calibration: Cal,
    engine_name: str,
) -> None:
    """Add stage ``s``'s terms to ``tables`` and its attention coefficients to ``attn``."""
    prec = serving_precision(workload)  # the quantization format when set (costmodel.quant)
    kvp = workload.kv_cache_precision or workload.precision
    stack = stack_of(workload)
    h = model.hidden_size
    st = group.stages[s]
    pool = cluster.pool(st.pool)
    gpu = gpu_with_calibration(pool, calibration)
    link = tp_link(pool, calibration)
    engine = engine_for_gpu(engine_name, gpu, calibration, link)
    n = st.num_layers
    first, last = s == 0, s == group.pp - 1
    if last:
        tables.host_s = SE.step_overhead_s(engine)

    def dec_block(b: int, ctx: int, host_floor: bool = True) -> float:
        return decode_block_time(
            model,
            gpu,
            tp=st.tp,
            batch=b,
            context_len=ctx,
            precision=prec,
            kv_precision=kvp,
            tp_link=link,
            engine=engine,
            host_floor=host_floor,
        ).fwd_s

    def head(rows: int) -> float:
        return serving_head_time(
            model,
            gpu,
            tp=st.tp,
            rows=rows,
            precision=prec,
            tp_link=link,
            stack=stack,
            engine=engine,
        ).fwd_s

    def embed(rows: int, seq: int) -> float:
        return embedding_time(
            model, gpu, tp=st.tp, micro_batch=rows, seq=seq, precision=prec, tp_link=link
        ).fwd_s

    # The marginal GPU time of one more cached token, read without the host's launch floor: a
    # launch-bound batch-1 step costs the same with or without the probe's KV reads, which
    # would price every KV read at zero.
    kv_probe = dec_block(1, _KV_PROBE_TOKENS, False) - dec_block(1, 0, False)
    tables.kv_per_token += n * kv_probe / _KV_PROBE_TOKENS
    for b in range(1, len(tables.decode)):
        t = n * dec_block(b, 0) + _boundary_time(cluster, group, s, b * h, calibration)
        t += embed(b, 1) if first else 0.0
        if last:
            hb = head(b)
            t += hb
            tables.head[b] += hb
        tables.decode[b] += t
    for i, tok in enumerate(grid):
        if tok == 0:
            continue
        P = int(tok)
        block = prefill_block_time(
            model,
            gpu,
            tp=st.tp,
            batch=1,
            prompt=P,
            precision=prec,
            tp_link=link,
            attention=workload.attention,
            engine=engine,
        ).fwd_s
        ops = block_forward_ops(
            model,
            tp=st.tp,
            micro_batch=1,
            seq=P,
            sequence_parallel=False,
            precision=prec,
            stack=stack,
        )
        core = sum(op_time(o, gpu, prec) for o in ops if o.name == "attention_core")
        t = n * (block - core) + _boundary_time(cluster, group, s, P * h, calibration)
        tables.prefill[i] += t + (embed(1, P) if first else 0.0)
    # The fused attention kernel's coefficients, read off the cost model's own operator.
    probe = next(
        o
        for o in block_forward_ops(
            model,
            tp=st.tp,
            micro_batch=1,
            seq=2,
            sequence_parallel=False,
            precision=prec,
            stack=stack,
        )
        if o.name == "attention_core"
    )
    heads_hd = (probe.model_flops or probe.flops) / 16.0  # 4 b heads s^2 d at b=1, s=2
    kv_local = kv_cache_bytes_per_token(model, kvp, st.tp) / (2.0 * model.num_layers)  # bytes
    unit = Op("attention_core", 1e12, 0.0, "flash", seq=None, kernel=stack.attention_kernel)
    half = unit._replace(seq=float(C.ATTENTION_HALF_RATE_SEQ))
    tables.saturates = tables.saturates or op_time(half, gpu, prec) > 1.5 * op_time(unit, gpu, prec)
    s_per_byte = op_time(Op("attention_core", 0.0, 1e9, "flash"), gpu, prec) / 1e9
    attn.append(
        [
            float(n),
            4.0 * heads_hd,
            probe.bytes / 2.0,  # Q, K, V in and O out, per new token
            2.0 * kv_local,  # the cached K and V of one earlier token
            op_time(unit, gpu, prec) / 1e12,
            s_per_byte,
        ]
    )
    weights = stage_weight_bytes(  # bytes: quantized blocks, 16-bit embedding/head
        model, layers=n, first=first, last=last, tp=st.tp, context_tokens=1, precision=prec
    )
    tables.weights_s += weights * s_per_byte


def roofline_step_cost(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    group: ReplicaGroup,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    calibration: Cal = None,
    step_overhead_s: float = 0.0,
    exact_tokens: tuple[int, ...] = (),
    engine: str | None = None,
) -> RooflineStepCost:
    """Tabulate :class:`RooflineStepCost` for one replica of ``group``.

    Parameters
    ----------
    model, cluster, workload, group
        The specs; ``workload`` gives precision, KV precision and the attention kernel.
    max_num_seqs, max_num_batched_tokens
        Largest decode batch and largest tokens per step to tabulate.
    calibration
        As for :func:`solver.evaluate.evaluate`.
    step_overhead_s
        Extra fixed seconds per step (default 0), on top of the engine's host time per step.
    exact_tokens
        Token counts to put on the prefill grid exactly (besides 0..64 and the budget).
    engine
        Serving-engine profile (``auto``, ``vllm``, ``sglang``, ``trtllm``, ``roofline``, or a
        versioned one of ``engine_profiles.ENGINES``: ``vllm-0.6``, ``trtllm-0.9``); default
        None: the workload's ``serving_engine``.
    """
    if workload.attention != "flash":
        raise SpecError(
            "attention: the serving simulator prices fused (flash) prefill attention, as "
            f"serving engines run it, got {workload.attention!r}"
        )
    if not math.isfinite(step_overhead_s) or step_overhead_s < 0:
        raise SpecError(f"step_overhead_s: must be finite and >= 0, got {step_overhead_s!r}")
    engine_name = workload.serving_engine if engine is None else engine
    if engine_name not in ("auto", *EP.ENGINES):
        raise SpecError(f"engine: one of auto, {', '.join(EP.ENGINES)}, got {engine_name!r}")
    grid = _grid(max_num_batched_tokens, exact_tokens)
    tables = _Tables(
        decode=np.zeros(max_num_seqs + 1),
        prefill=np.zeros(len(grid)),
        head=np.zeros(max_num_seqs + 1),
    )
    attn: list[list[float]] = []
    for s in range(group.pp):
        _add_stage(tables, attn, model, cluster, workload, group, s, grid, calibration, engine_name)
    a = np.asarray(attn)
    return RooflineStepCost(
        decode_s=tables.decode,
        kv_per_token_s=tables.kv_per_token,
        prefill_tokens=grid,
        prefill_s=tables.prefill,
        head_s=tables.head,
        attn_layers=a[:, 0],
        attn_flops=a[:, 1],
        attn_io=a[:, 2],
        attn_kv=a[:, 3],
        attn_s_per_flop=a[:, 4],
        attn_s_per_byte=a[:, 5],
        attn_saturates=tables.saturates,
        weights_s=tables.weights_s,
        step_overhead_s=step_overhead_s + tables.host_s,
        mixed_batches=EP.resolve(engine_name).mixed_batches,
    )


def kv_capacity_tokens(
    model: Model,
    cluster: Cluster,
    workload: InferenceWorkload,
    group: ReplicaGroup,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    calibration: Cal = None,
) -> int:
    """KV-cache tokens one replica of ``group`` holds: the serving ledger's paged pool
    (:mod:`solver.costmodel.serving_memory`, as :func:`solver.evaluate.ledger.serving_ledger_row`
    builds it) -- ``gpu_memory_utilization`` x capacity less the weights, the engine overhead
    (CUDA context, cuBLAS, CUDA graphs, NCCL per communicator) and one forward's working set
    at the token budget (with the last stage's logits for ``max_num_seqs`` rows) -- in whole
    blocks of ``KV_BLOCK_SIZE_TOKENS``; the smallest stage bounds the replica."""
    kvp = workload.kv_cache_precision or workload.precision
    p = group.pp
    cap = math.inf
    for s, st in enumerate(group.stages):
        gpu = gpu_with_calibration(cluster.pool(st.pool), calibration)
        weights = stage_weight_bytes(
            model,
            layers=st.num_layers,
            first=s == 0,
            last=s == p - 1,
            tp=st.tp,
            context_tokens=workload.prompt_tokens + workload.output_tokens,
            precision=serving_precision(workload),
        )
        pool = stage_kv_pool(
            model,
            capacity_GB=gpu.memory_GB,
            utilization=workload.gpu_memory_utilization,
            kv_precision=kvp,
            tp=st.tp,
            layers=st.num_layers,
            weights=weights,
            forward_tokens=max_num_batched_tokens,
            sequences=max_num_seqs,
            last=s == p - 1,
            communicators=int(st.tp > 1) + int(p > 1),
        )
        cap = min(cap, float(pool.blocks * C.KV_BLOCK_SIZE_TOKENS))
    return max(0, int(cap)) if math.isfinite(cap) else 2**62
