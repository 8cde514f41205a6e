"""Tensor-parallel communication overlap: what the engines hide of a block's TP collectives.

With sequence parallelism a transformer block's forward runs four TP collectives of the full
activation buffer ``B = b s h`` 16-bit elements, each paired with the GEMM it feeds or
follows (Korthikanti et al. 2022, Sec. 4.2.2): all-gather -> QKV, output projection ->
reduce-scatter, all-gather -> MLP up-projection, MLP down-projection -> reduce-scatter.  The
backward runs the mirror pairs (the reduce-scatter of the QKV / up-projection input gradient
beside their dgrad and wgrad GEMMs, the all-gather of the output gradient before the output
projection / down-projection dgrad).  :func:`~solver.costmodel.compute.block_time` charges
every collective in full (Megatron-LM's and torchtitan's default); this module says how much
of that each overlap mechanism hides (``TrainingWorkload.tp_comm_overlap``) and what vanilla
PyTorch-native TP adds.

Decomposition (Wang et al. 2023, "Overlap Communication with Dependent Computation via
Decomposition in Large Deep Learning Models", ASPLOS '23, Sec. 3): a collective of time T
paired with a GEMM of time G, both split into k chunks, runs as a pipeline in which chunk i of
the GEMM overlaps chunk i +- 1 of the transfer.  For an all-gather whose local shard is
computed first (k = TP shards, the transfer of k - 1 remote shards behind k - 1 GEMM
chunks) the pair takes ``g + (k-1) max(g, t)`` with ``g = G/k``, ``t = T/(k-1)``: exposed
``max(0, T - G (k-1)/k)`` -- one chunk of GEMM can never hide anything.  A pipelined
reduce-scatter of k chunks (each chunk's transfer after its GEMM chunk) takes
``g + (k-1) max(g, t) + t`` with ``t = T/k``: the last chunk's transfer is always exposed.

Mechanisms
    ``megatron_userbuffers`` -- Transformer Engine userbuffers (Megatron-LM ``--tp-comm-
    overlap``, NeMo ``ub_tp_comm_overlap``), TE's default per-GEMM methods
    (``transformer_engine/pytorch/module/base.py`` ``initialize_ub``: ``ring_exchange`` for
    qkv_fprop, fc1_fprop, proj_dgrad, fc2_dgrad -- copy-engine p2p over TP shards, 1 SM;
    ``pipeline`` for proj_fprop, fc2_fprop -- 4 splits, 16 SMs of communication kernels and an
    SM margin the GEMM gives up; ``bulk`` for qkv_dgrad / fc1_dgrad -- the whole
    reduce-scatter beside the independent wgrad GEMM on 16 SMs).  Nothing fitted: the SM share
    is TE's 16 SMs of the H100's 132.
    ``async_tp`` -- torchtitan async TP (``parallelism.enable_async_tensor_parallel``,
    torch.compile's ``micro_pipeline_tp`` pass -> ``fused_all_gather_matmul`` /
    ``fused_matmul_reduce_scatter`` in ``torch/distributed/_symmetric_memory``): both
    patterns decomposed over the TP shards, transfers by the copy engines (no SM contention),
    forward and backward graphs alike.  What the ideal pipeline misses -- the decomposed GEMMs'
    wave quantization, the partial-overlap of the reduction and the copy engines' HBM traffic
    (PyTorch async-TP post, Wang et al. 2024, "Challenges") -- is one fitted global fraction,
    :data:`ASYNC_TP_OVERLAP_EFFICIENCY`.
    ``none`` with a PyTorch-native stack (``elementwise_kernels`` eager / compiled_blocks:
    torchtitan's DTensor TP over ``[b, s, h]`` activations sharded on the sequence, dim 1):
    PyTorch's functional all-gather gathers on dim 0 and then copies the chunks into place
    (``torch.cat(torch.chunk(res, group_size, dim=0), dim=gather_dim)``), and the
    reduce-scatter copies its input the other way first (``reduce_scatter_tensor``:
    ``torch.cat(torch.chunk(self, group_size, dim=scatter_dim))``), pytorch/pytorch
    ``torch/distributed/_functional_collectives.py`` @ fff02e67db38: one read and one write
    of the full buffer per collective, :data:`SEQUENCE_GATHER_COPY_BYTES`.  With b = 1 the
    gathered chunks are a view (``_maybe_view_chunk_cat``; the reduce-scatter's ``torch.cat``
    still copies), and async TP's fused ops move the gather
    dimension to the front without a copy (``_fused_all_gather_matmul_impl``).  Megatron-LM
    keeps ``[s, b, h]`` and gathers on dim 0: no copy.
FP8 on the wire
    torchtitan's float8 tensorwise TP gathers the FP8-cast input in the forward, Transformer
    Engine userbuffers gather FP8 in both passes with an FP8 recipe: those all-gathers move
    half the bytes (:func:`all_gather_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..specs import GPUSpec, Model
from . import constants as C
from .comm import LinkTier, allgather_time
from .compute import Op, PassTime, block_forward_ops, op_time
from .stack import Stack

__all__ = [
    "ASYNC_TP_OVERLAP_EFFICIENCY",
    "SEQUENCE_GATHER_COPY_BYTES",
    "TP_OVERLAPS",
    "UB_PIPELINE_SPLITS",
    "UB_SM_SHARE",
    "TpOverlap",
    "TpOverlapTerms",
    "all_gather_bytes",
    "allgather_pipeline_exposed",
    "block_tp_overlap",
    "bulk_exposed",
    "overlapped_block",
    "reduce_scatter_pipeline_exposed",
]

TpOverlap = Literal["none", "megatron_userbuffers", "async_tp"]
#: The mechanisms, as ``TrainingWorkload.tp_comm_overlap`` names them.
TP_OVERLAPS: tuple[str, ...] = ("none", "megatron_userbuffers", "async_tp")

#: Fraction of the ideal decomposed overlap torchtitan's async TP realises beyond removing the
#: layout copies of vanilla TP.  FITTED, one global value: least squares of log(async /
#: vanilla throughput) over the six pairs of torchtitan
#: ``benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md`` @ 2887250bbd91 (Llama 3.1 8B / 70B,
#: bf16, float8 tensorwise and rowwise; TP 8 on H100 NVSwitch, FSDP 8 / 32), grid 0..1 step
#: 0.05, ``benchmarks/fit_async_tp.py``: 0.00 (sum of squared log errors 0.0089; 0.05: 0.0096,
#: 0.35: 0.030).  The measured speedups (1.04-1.16) are what removing the copies predicts
#: (1.07-1.12): on Grand Teton H100s at 500 W the decomposed GEMMs lose about what the overlap
#: wins -- the PyTorch async-TP post (Wang et al., Aug 2024, discuss.pytorch.org/t/209487)
#: reports forward speedups up to 20-29% but ~8% end to end, and names wave quantization of
#: the decomposed GEMMs and the copy engines' HBM traffic as the costs.  Without the copy term
#: the fit is 0.55 (0.0064), but the vanilla rows then stay 11-14% fast.
ASYNC_TP_OVERLAP_EFFICIENCY = 0.0
#: Transformer Engine's default splits of a ``pipeline`` overlap (``initialize_ub``
#: ``get_default_config``: ``num_splits`` 4 for methods other than ``ring_exchange``; TE
#: ``transformer_engine/pytorch/module/base.py``, v1.x-2.x).
UB_PIPELINE_SPLITS = 4
#: SMs TE's ``pipeline`` / ``bulk`` overlaps give the communication kernels (``num_sm`` 16,
#: ``set_sm_margin``: the GEMM runs on the others) over the H100 SXM's 132 SMs (NVIDIA H100
#: Tensor Core GPU Architecture whitepaper, Table 3).  The GEMM beside them runs this much
#: slower for as long as they overlap.
UB_SM_SHARE = 16.0 / 132.0
#: HBM bytes per byte of the full activation buffer that vanilla PyTorch TP moves to put a
#: sequence-dim (dim 1) gather / scatter in place: one read and one write (module docstring).
SEQUENCE_GATHER_COPY_BYTES = 2.0

_UP = ("mlp_up", "moe_up")
_DOWN = ("mlp_down", "moe_down")


def allgather_pipeline_exposed(comm_s: float, gemm_s: float, shards: int) -> float:
    """Exposed time of an all-gather decomposed over ``shards`` and pipelined with the GEMM
    it feeds, the local shard's GEMM chunk first: ``max(0, T - G (k-1)/k)`` (module doc)."""
    if shards <= 1 or comm_s <= 0.0:
        return max(0.0, comm_s)
    return max(0.0, comm_s - gemm_s * (shards - 1) / shards)


def reduce_scatter_pipeline_exposed(
    comm_s: float, gemm_s: float, splits: int, gemm_slowdown: float = 1.0
) -> float:
    """Exposed time (transfer plus the GEMM's slowdown) of a GEMM -> reduce-scatter pipeline
    of ``splits`` chunks: ``g + (k-1) max(g, t) + t - G`` with ``g = G'/k``, ``t = T/k`` and
    ``G' = G x gemm_slowdown`` (the GEMM on the SMs the communication leaves it)."""
    if comm_s <= 0.0:
        return 0.0
    k = max(1, splits)
    g, t = gemm_s * gemm_slowdown / k, comm_s / k
    return max(0.0, g + (k - 1) * max(g, t) + t - gemm_s)


def bulk_exposed(comm_s: float, gemm_s: float, gemm_slowdown: float) -> float:
    """Exposed time of a whole collective running beside an independent GEMM (TE ``bulk``):
    ``max(T, G') - G``."""
    return max(0.0, max(comm_s, gemm_s * gemm_slowdown) - gemm_s)


@dataclass(frozen=True)
class TpOverlapTerms:
    """What the TP implementation does to one block's collectives, per second of the 16-bit,
    fully exposed collectives :func:`~solver.costmodel.compute.block_time` charges.

    Attributes
    ----------
    exposed_fwd
        Seconds exposed per charged second of a forward-pattern collective (the forward and a
        recomputed forward): transfers of the bytes actually sent, plus layout copies, less
        what hides behind the GEMMs, plus the GEMMs' slowdown where communication takes SMs.
    exposed_bwd
        The same for the backward's own collectives.
    hidden_fwd, hidden_bwd
        Seconds hidden behind GEMMs per charged second (what ``explain`` reports as hidden).
    """

    exposed_fwd: float = 1.0
    exposed_bwd: float = 1.0
    hidden_fwd: float = 0.0
    hidden_bwd: float = 0.0


NO_OVERLAP = TpOverlapTerms()

#: One FP8 element per 16-bit activation element on the wire.
_FP8_WIRE = C.BYTES_PER_ELEMENT["fp8"] / C.ACTIVATION_BYTES


def all_gather_bytes(nbytes: float, precision: str, stack: Stack, mode: str) -> tuple[float, float]:
    """Bytes of the forward-pattern and backward-pattern all-gathers of a ``nbytes`` (16-bit)
    activation buffer.

    FP8 on the wire where the engine casts before gathering: torchtitan's float8 *tensorwise*
    TP (``enable_float8_tensorwise_tp``: torchao's ``Float8ColwiseParallel`` /
    ``PrepareFloat8ModuleInput`` gather the FP8-cast input; "float8 all-gather with TP is only
    supported for tensorwise float8 scaling recipes.  For rowwise recipes ... all-gather
    happens in high precision", torchtitan ``parallelize_llama``) in the forward; Transformer
    Engine userbuffers with an FP8 recipe in both passes ("AllGather buffers use fp8 when
    using fp8 recipe", TE ``initialize_ub``).  Elsewhere 16-bit.
    """
    if precision != "fp8":
        return nbytes, nbytes
    if mode == "megatron_userbuffers":
        return nbytes * _FP8_WIRE, nbytes * _FP8_WIRE
    if stack.kernels != "fused" and stack.fp8_recipe == "tensorwise":
        return nbytes * _FP8_WIRE, nbytes
    return nbytes, nbytes


def _pair_gemms(ops: list[Op], gpu: GPUSpec, precision: str) -> list[float]:
    """GEMM seconds of the four forward pairs, in block order (QKV, output projection, MLP
    up-projection, down-projection)."""
    by = {o.name: o for o in ops}
    out: list[float] = []
    for keys in (("qkv",), ("out_proj",), _UP, _DOWN):
        op = next((by[k] for k in keys if k in by), None)
        out.append(op_time(op, gpu, precision) if op is not None else 0.0)
    return out


def _exposed(method: str, comm_s: float, gemm_s: float, tp: int) -> float:
    """Exposed seconds of one collective paired with one GEMM under ``method``."""
    slow = 1.0 / (1.0 - UB_SM_SHARE)
    if method == "async":
        ideal_hidden = comm_s - allgather_pipeline_exposed(comm_s, gemm_s, tp)
        return comm_s - ASYNC_TP_OVERLAP_EFFICIENCY * ideal_hidden
    if method == "ring":
        return allgather_pipeline_exposed(comm_s, gemm_s, tp)
    if method == "pipeline":
        return reduce_scatter_pipeline_exposed(comm_s, gemm_s, UB_PIPELINE_SPLITS, slow)
    return bulk_exposed(comm_s, gemm_s, slow)


def _overlapped(
    mode: str, gemms: list[float], ag_f: float, ag_b: float, rs: float, tp: int
) -> TpOverlapTerms:
    """Exposed and hidden seconds of a block's collectives under ``mode`` (module docstring):
    forward all-gather -> QKV / up-projection (ring exchange), output / down-projection ->
    reduce-scatter (pipeline); backward reduce-scatter of the QKV / up-projection input
    gradient beside the wgrad GEMM (bulk), all-gather of the output gradient before the output
    / down-projection dgrad (ring exchange).  Async TP decomposes every pair alike."""
    g_qkv, g_out, g_up, g_down = gemms
    fwd = [("ring", ag_f, g_qkv), ("pipeline", rs, g_out), ("ring", ag_f, g_up)]
    fwd.append(("pipeline", rs, g_down))
    bwd = [("bulk", rs, g_qkv), ("ring", ag_b, g_out), ("bulk", rs, g_up), ("ring", ag_b, g_down)]
    charged = 4.0 * rs  # block_time's four 16-bit half-collectives per pass

    def one(pairs: list[tuple[str, float, float]]) -> tuple[float, float]:
        exposed = sum(_exposed("async" if mode == "async_tp" else m, t, g, tp) for m, t, g in pairs)
        sent = sum(t for _, t, _ in pairs)
        return exposed / charged, max(0.0, sent - exposed) / charged

    ef, hf = one(fwd)
    eb, hb = one(bwd)
    return TpOverlapTerms(exposed_fwd=ef, exposed_bwd=eb, hidden_fwd=hf, hidden_bwd=hb)


def block_tp_overlap(
    model: Model,
    gpu: GPUSpec,
    *,
    tp: int,
    micro_batch: int,
    seq: int,
    sequence_parallel: bool,
    precision: str,
    tp_link: LinkTier,
    stack: Stack,
    mode: str,
) -> TpOverlapTerms:
    """The TP terms of one block (module docstring), :data:`NO_OVERLAP` where nothing changes:
    TP 1, no sequence parallelism (both mechanisms need it; without it the all-reduces stay
    exposed), or ``none`` on a fused (Megatron-Core) stack.  ``none`` on a PyTorch-native stack
    pays the layout copies (the all-gather's with micro-batch > 1 only) and sends FP8 where
    :func:`all_gather_bytes` says so."""
    if mode not in TP_OVERLAPS:
        raise ValueError(f"tp_comm_overlap: must be one of {', '.join(TP_OVERLAPS)}, got {mode!r}")
    if tp <= 1 or not sequence_parallel or (mode == "none" and stack.kernels == "fused"):
        return NO_OVERLAP
    nbytes = micro_batch * seq * model.hidden_size * C.ACTIVATION_BYTES
    rs = allgather_time(nbytes, tp, tp_link)  # = reduce-scatter time = half an all-reduce
    if rs <= 0.0:
        return NO_OVERLAP
    ag_bytes = all_gather_bytes(nbytes, precision, stack, mode)
    ag_f, ag_b = (allgather_time(b, tp, tp_link) for b in ag_bytes)
    if mode == "none":
        per_byte = SEQUENCE_GATHER_COPY_BYTES / (
            gpu.memory_bandwidth_GBps * 1e9 * gpu.memory_efficiency
        )
        gather = per_byte if micro_batch > 1 else 0.0  # b = 1: the gathered chunks are a view
        copy_rs = per_byte * nbytes  # torch.cat of the chunks: always a new tensor
        ef = 2.0 * (ag_f + gather * ag_bytes[0] + rs + copy_rs) / (4.0 * rs)
        eb = 2.0 * (ag_b + gather * ag_bytes[1] + rs + copy_rs) / (4.0 * rs)
        terms = TpOverlapTerms(exposed_fwd=ef, exposed_bwd=eb)
        return NO_OVERLAP if terms == NO_OVERLAP else terms
    ops = block_forward_ops(
        model,
        tp=tp,
        micro_batch=micro_batch,
        seq=seq,
        sequence_parallel=sequence_parallel,
        precision=precision,
        stack=stack,
    )
    return _overlapped(mode, _pair_gemms(ops, gpu, precision), ag_f, ag_b, rs, tp)


def overlapped_block(blk: PassTime, terms: TpOverlapTerms) -> tuple[PassTime, float]:
    """``blk`` with its TP communication replaced by the exposed part, and the seconds hidden
    per pass.

    The forward's collectives take the forward-pattern factors; the backward's own
    collectives (as many as the forward's) the backward-pattern ones, and the rest of the
    backward's (a recomputed forward) the forward-pattern ones.
    """
    if terms == NO_OVERLAP:
        return blk, 0.0
    tf, tb = blk.tp_comm_fwd_s, blk.tp_comm_bwd_s
    own_b = min(tb, tf)
    rec = tb - own_b
    new_f = terms.exposed_fwd * tf
    new_b = terms.exposed_bwd * own_b + terms.exposed_fwd * rec
    hidden = terms.hidden_fwd * (tf + rec) + terms.hidden_bwd * own_b
    out = PassTime(
        fwd_s=blk.fwd_s - tf + new_f,
        bwd_s=blk.bwd_s - tb + new_b,
        tp_comm_fwd_s=new_f,
        tp_comm_bwd_s=new_b,
        flops_fwd=blk.flops_fwd,
        hw_flops=blk.hw_flops,
    )
    return out, hidden
