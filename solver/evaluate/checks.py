"""One ``check_*`` function per feasibility rule.  Each returns a list of violation strings
(empty when the rule holds), written to be read by a person: they name the group, the stage
and the numbers.  The evaluator runs all of them; none raises on a bad plan.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

from ..catalog import gpu_of
from ..costmodel import quant
from ..specs import Cluster, GPUSpec, InferenceWorkload, Model, Plan, TrainingWorkload
from .ledger import serving_memory_violations
from .links import node_table, parse_node, pool_devices

__all__ = [
    "check_batch",
    "check_devices",
    "check_divisibility",
    "check_kind",
    "check_layers",
    "check_memory",
    "check_precision",
    "check_serving_memory",
    "check_slo",
    "check_tp_domain",
    "numerics_field",
    "precision_gap",
    "workload_precision_gap",
]

#: A device's node name (devices are ``(node, gpu)`` tuples, :data:`solver.specs.Device`).
_NODE = operator.itemgetter(0)


def check_kind(plan: Plan, workload: TrainingWorkload | InferenceWorkload) -> list[str]:
    """The plan is of the workload's kind (training / inference)."""
    if plan.kind != workload.kind:
        return [f"plan kind {plan.kind!r} does not match workload kind {workload.kind!r}"]
    return []


def check_layers(model: Model, plan: Plan) -> list[str]:
    """Every block is placed exactly once and in order.

    1F1B: stage s holds one contiguous range and the ranges tile 0..L-1 in stage order.
    Interleaved with v chunks: every stage lists exactly v chunks and chunk c of stage s is
    model chunk c*p + s; the model chunks tile 0..L-1 in that order (Megatron-LM virtual
    pipeline layout).
    """
    out: list[str] = []
    L = model.num_layers
    for g, grp in enumerate(plan.replica_groups):
        p, v = grp.pp, grp.virtual_stages
        if grp.schedule == "1f1b" and v != 1:
            out.append(f"group {g}: schedule '1f1b' needs virtual_stages = 1, got {v}")
            continue
        if grp.schedule == "interleaved" and v > 1 and p < 2:
            out.append(f"group {g}: interleaved schedule needs at least 2 stages, got {p}")
        ranges: list[tuple[int, int] | None] = [None] * (p * v)
        bad = False
        for s, st in enumerate(grp.stages):
            rs = st.layer_ranges
            if len(rs) != v:
                out.append(
                    f"group {g} stage {s}: expected {v} layer chunk(s) (virtual_stages), got {len(rs)}"
                )
                bad = True
                continue
            for c, r in enumerate(rs):
                ranges[c * p + s] = r
        if bad:
            continue
        expect = 0
        for k, rng in enumerate(ranges):
            assert rng is not None
            lo, hi = rng
            s, c = k % p, k // p
            where = f"group {g} stage {s}" + (f" chunk {c}" if v > 1 else "")
            if lo != expect:
                out.append(
                    f"{where}: layers {lo}..{hi} should start at layer {expect} "
                    "(blocks placed once, in order)"
                )
                bad = True
                break
            expect = hi + 1
        if not bad and expect != L:
            out.append(
                f"group {g}: stages cover layers 0..{expect - 1}, model has {L} layers (0..{L - 1})"
            )
    return out


def check_devices(cluster: Cluster, plan: Plan) -> list[str]:
    """Devices exist in the stage's pool (``<pool>-<index>`` nodes, gpu < gpus_per_node), each
    GPU is used at most once across the whole plan, one device list per replica, ``tp`` each."""
    return [] if _devices_clean(cluster, plan) else _device_problems(cluster, plan)


def _device_problems(cluster: Cluster, plan: Plan) -> list[str]:
    """:func:`check_devices`' full walk: every problem, named, in plan order."""
    out: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    names = [p.name for p in cluster.pools]
    table = node_table(cluster)
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            where = f"group {g} stage {s}"
            if st.pool not in names:
                out.append(f"{where}: unknown pool {st.pool!r} (pools: {names})")
                continue
            pool = cluster.pool(st.pool)
            if len(st.devices) != grp.count:
                out.append(
                    f"{where}: {len(st.devices)} device lists for {grp.count} replicas (count)"
                )
            for r, devs in enumerate(st.devices):
                if len(devs) != st.tp:
                    out.append(f"{where} replica {r}: {len(devs)} devices for tp={st.tp}")
                for node, gpu in devs:
                    hit = table.get(node)
                    if hit is None:
                        try:
                            hit = parse_node(cluster, node)
                        except ValueError as e:
                            out.append(f"{where} replica {r}: {e}")
                            continue
                    dpool = hit[0]
                    if dpool.name != pool.name:
                        out.append(
                            f"{where} replica {r}: device ({node}, {gpu}) is in pool {dpool.name!r}, stage runs on pool {pool.name!r}"
                        )
                    if not 0 <= gpu < dpool.gpus_per_node:
                        out.append(
                            f"{where} replica {r}: GPU index {gpu} on {node} out of range 0..{dpool.gpus_per_node - 1}"
                        )
                    key = (node, gpu)
                    here = f"{where} replica {r}"
                    if key in seen:
                        out.append(f"{here}: device ({node}, {gpu}) already used by {seen[key]}")
                    else:
                        seen[key] = here
    return out


def _devices_clean(cluster: Cluster, plan: Plan) -> bool:
    """Whether :func:`check_devices` has nothing to report, decided in a few set operations.

    A plan of 16,384 GPUs has as many devices: each stage's devices are tested against the
    set of its pool's devices (:func:`~solver.evaluate.links.pool_devices`) and collected in
    one set (a GPU used twice makes it smaller than the device count).  Any doubt sends
    :func:`check_devices` down its full walk, which words every problem.
    """
    names = {p.name for p in cluster.pools}
    seen: set[tuple[str, int]] = set()
    total = 0
    for grp in plan.replica_groups:
        for st in grp.stages:
            if st.pool not in names or len(st.devices) != grp.count:
                return False
            if st.devices and set(map(len, st.devices)) != {st.tp}:
                return False
            devices = list(itertools.chain.from_iterable(st.devices))
            # Devices are (node, gpu) tuples (specs.Device), hashable like the set's.
            if not pool_devices(cluster, cluster.pool(st.pool)).issuperset(devices):
                return False
            seen.update(devices)
            total += len(devices)
    return len(seen) == total


def check_tp_domain(cluster: Cluster, plan: Plan) -> list[str]:
    """Each TP group lies inside one node, or inside one NVLink domain of
    ``nvlink_domain_nodes`` consecutive nodes of one pool."""
    out: list[str] = []
    table = node_table(cluster)
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            for r, devs in enumerate(st.devices):
                if not devs:
                    continue
                if len(set(map(_NODE, devs))) == 1:
                    continue  # one node: one pool, one domain (or unparsable: check_devices)
                try:
                    parsed = [table.get(n) or parse_node(cluster, n) for n, _ in devs]
                except ValueError:
                    continue  # reported by check_devices
                pools = {p.name for p, _ in parsed}
                nodes = sorted({i for _, i in parsed})
                if len(pools) > 1:
                    out.append(
                        f"group {g} stage {s} replica {r}: TP group spans pools {sorted(pools)}"
                    )
                    continue
                pool = parsed[0][0]
                dom = {i // pool.nvlink_domain_nodes for i in nodes}
                if len(nodes) > 1 and len(dom) > 1:
                    out.append(
                        f"group {g} stage {s} replica {r}: TP group spans nodes {nodes} of pool "
                        f"{pool.name!r}, outside one NVLink domain of {pool.nvlink_domain_nodes} node(s)"
                    )
    return out


def check_divisibility(model: Model, plan: Plan) -> list[str]:
    """num_attention_heads % tp == 0 and ffn % tp == 0 (Megatron-LM shards heads and the MLP);
    kv heads: kv % tp == 0, or tp % kv == 0 when tp > kv (each GPU then holds one replicated
    K/V head, as Megatron-LM and vLLM do)."""
    out: list[str] = []
    a, kv = model.num_attention_heads, model.num_kv_heads
    ffn = model.moe_ffn_hidden_size or model.ffn_hidden_size
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            t = st.tp
            where = f"group {g} stage {s}"
            if a % t:
                out.append(f"{where}: num_attention_heads={a} not divisible by tp={t}")
            if (t <= kv and kv % t) or (t > kv and t % kv):
                out.append(
                    f"{where}: num_kv_heads={kv} and tp={t}: need kv % tp == 0 or tp % kv == 0"
                )
            if ffn % t:
                out.append(f"{where}: ffn hidden size {ffn} not divisible by tp={t}")
    return out


def check_batch(plan: Plan, workload: TrainingWorkload | InferenceWorkload) -> list[str]:
    """Training: count * micro_batch_size * num_micro_batches == global_batch_size, and every
    knob (micro-batch, schedule, recompute, ZeRO stage, SP) is one the workload allows;
    interleaved needs num_micro_batches % pp == 0 (Megatron-LM asserts it).  Inference:
    batch_size allowed, divisible by num_micro_batches."""
    out: list[str] = []
    for g, grp in enumerate(plan.replica_groups):
        where = f"group {g}"
        if isinstance(workload, TrainingWorkload):
            mb, m = grp.micro_batch_size, grp.num_micro_batches
            if mb is None or m is None:
                out.append(f"{where}: training needs micro_batch_size and num_micro_batches")
                continue
            total = grp.count * mb * m
            if total != workload.global_batch_size:
                out.append(
                    f"{where}: count x micro_batch_size x num_micro_batches = {grp.count} x {mb} x {m} "
                    f"= {total} != global_batch_size {workload.global_batch_size}"
                )
            if mb not in workload.micro_batch_sizes:
                out.append(
                    f"{where}: micro_batch_size {mb} not in allowed {workload.micro_batch_sizes}"
                )
            if grp.schedule not in workload.schedules:
                out.append(
                    f"{where}: schedule {grp.schedule!r} not in allowed {workload.schedules}"
                )
            if grp.recompute not in workload.recompute:
                out.append(
                    f"{where}: recompute {grp.recompute!r} not in allowed {workload.recompute}"
                )
            if grp.zero_stage not in workload.zero_stages:
                out.append(
                    f"{where}: zero_stage {grp.zero_stage} not in allowed {workload.zero_stages}"
                )
            if grp.sequence_parallel not in workload.sequence_parallel:
                out.append(
                    f"{where}: sequence_parallel={grp.sequence_parallel} not in allowed {workload.sequence_parallel}"
                )
            if grp.schedule == "interleaved" and grp.virtual_stages > 1 and m % grp.pp:
                out.append(
                    f"{where}: interleaved schedule needs num_micro_batches ({m}) divisible by pp ({grp.pp})"
                )
        else:
            b = grp.batch_size
            if b is None:
                out.append(f"{where}: inference needs batch_size")
                continue
            if b not in workload.batch_sizes:
                out.append(f"{where}: batch_size {b} not in allowed {workload.batch_sizes}")
            m = grp.num_micro_batches or 1
            if b % m:
                out.append(f"{where}: batch_size {b} not divisible by num_micro_batches {m}")
    return out


def check_precision(
    cluster: Cluster, plan: Plan, workload: TrainingWorkload | InferenceWorkload
) -> list[str]:
    """Every GPU a stage runs on supports the workload precision (fp8 needs fp8 tensor cores;
    V100 has no bf16) and its serving quantization (:func:`workload_precision_gap`)."""
    out: list[str] = []
    # Only the compute formats need tensor-core support: an fp8 KV cache is storage, which
    # any GPU can hold (vLLM converts it to the compute type before attention).
    pools = {st.pool for grp in plan.replica_groups for st in grp.stages}
    for name in sorted(pools):
        try:
            gpu = gpu_of(cluster.pool(name))
        except KeyError:
            continue
        gap = workload_precision_gap(gpu, workload)
        if gap is not None:
            out.append(f"pool {name}: {gap}")
    return out


def precision_gap(gpu: GPUSpec, precision: str) -> str | None:
    """Why ``gpu`` cannot compute at ``precision`` (None if it can): a workload precision, or
    a serving quantization format (:data:`solver.costmodel.quant.FORMATS`)."""
    if precision == "fp8" and gpu.fp8_tflops is None:
        return f"GPU {gpu.name} has no fp8 tensor cores (precision fp8)"
    if precision == "bf16" and not gpu.supports_bf16:
        return f"GPU {gpu.name} does not support bf16"
    if quant.is_format(precision) and precision != "fp8":
        gap = quant.gpu_gap(gpu, precision)
        return None if gap is None else f"{gap} (quantization {precision})"
    return None


def numerics_field(workload: TrainingWorkload | InferenceWorkload) -> tuple[str, str]:
    """The input field that names the workload's numerics and its value: ``("quantization",
    "nvfp4")`` when a serving quantization is set beside a 16-bit precision, else
    ``("precision", ...)``; refusals name it."""
    q = quant.quantization_of(workload)
    if q not in ("none", workload.precision):
        return "quantization", q
    return "precision", workload.precision


def workload_precision_gap(
    gpu: GPUSpec, workload: TrainingWorkload | InferenceWorkload
) -> str | None:
    """Why ``gpu`` cannot run the workload's numerics (None if it can): its ``precision``
    (:func:`precision_gap`), then its ``quantization`` (``fp8`` needs FP8 tensor cores, ``int8``
    INT8 ones, ``nvfp4`` / ``mxfp4`` FP4 ones; each format a minimum compute capability:
    :func:`solver.costmodel.quant.gpu_gap`)."""
    gap = precision_gap(gpu, workload.precision)
    if gap is not None:
        return gap
    q = quant.quantization_of(workload)
    if q in ("none", workload.precision):
        return None
    fmt_gap = quant.gpu_gap(gpu, q)
    return None if fmt_gap is None else f"{fmt_gap} (quantization {q})"


def check_memory(ledger: Sequence[dict[str, Any]]) -> list[str]:
    """Per GPU, weights + grads + optimizer + activations + KV cache + overhead <= capacity."""
    return [
        f"group {e['group']} stage {e['stage']} on pool {e['pool']}: "
        f"{e['total_GB']:.1f} GB > {e['capacity_GB']:.1f} GB"
        for e in ledger
        if e["total_GB"] > e["capacity_GB"] + 1e-9
    ]


def check_serving_memory(ledger: Sequence[dict[str, Any]]) -> list[str]:
    """Inference, per GPU: weights + engine overhead + the working set fit under
    ``gpu_memory_utilization`` x capacity, and the KV pool left holds the batch's full-length
    sequences (``max_concurrent_sequences >= batch``).  No training activation term."""
    return [v for e in ledger for v in serving_memory_violations(e)]


def check_slo(groups: Sequence[dict[str, Any]], workload: InferenceWorkload) -> list[str]:
    """Inference: every replica group meets the TTFT and TPOT SLOs."""
    out: list[str] = []
    for e in groups:
        if workload.ttft_ms is not None and e["ttft_ms"] > workload.ttft_ms:
            out.append(
                f"group {e['group']}: TTFT {e['ttft_ms']:.1f} ms > SLO {workload.ttft_ms:.1f} ms"
            )
        if workload.tpot_ms is not None and e["tpot_ms"] > workload.tpot_ms:
            out.append(
                f"group {e['group']}: TPOT {e['tpot_ms']:.2f} ms > SLO {workload.tpot_ms:.2f} ms"
            )
    return out
