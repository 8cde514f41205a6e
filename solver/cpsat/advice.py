"""Why an instance is infeasible, and which relaxations really make it plan.

Two halves, both for :func:`solver.planner.plan`'s INFEASIBLE results:

* :func:`infeasibility_reasons` names the binding constraint with numbers: the batch that no
  micro-batch divides, the model states that exceed the whole cluster's memory, and the
  memory ledger (:func:`~solver.evaluate.ledger.training_memory_ledger`, the evaluator's own
  rows) of the *lightest* homogeneous plan -- every pool, TP degree and pipeline depth with the
  most memory-saving knobs the workload allows -- as "activations X GB vs Y GB free".
* :func:`relaxation_axes` lists the changes worth trying, one axis each (recompute, ZeRO,
  micro-batch, memory policy, engine scope, batch, GPUs, sequence), each axis a list of steps
  of growing size; :func:`search_relaxations` re-plans them (a real planner call each,
  through the ``replan`` callable the planner passes, so this module never imports it) within
  the caller's deadline: single changes first, stopping each axis at its first step that
  plans and the axes once :data:`ENOUGH_SUFFICIENT` plan, then pairs of changes when no
  single one plans.  A training re-plan stops at its first plan (verified by the evaluator
  like any plan; the best one is not sought), while "still infeasible" needs the re-plan's
  full proof.  Nothing is called sufficient that was not re-planned into a verified plan;
  :func:`advice_text` writes the verdicts.
* :func:`inference_relaxation_axes` does the same for serving: batch sizes, an fp8 KV cache,
  the engine scope, the SLOs and the throughput target loosened, more GPUs, shorter prompts;
  the same search re-plans them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..catalog import gpu_of
from ..construction import split_layers
from ..result import Status
from ..specs import (
    MAX_NODES,
    Cluster,
    InferenceWorkload,
    Model,
    Plan,
    Pool,
    ReplicaGroup,
    Stage,
    TrainingWorkload,
)
from .deadline import GRACE_S, GRACE_SHARE, Deadline
from .options import pipeline_degrees, tp_options

__all__ = [
    "ADVICE_HEAD",
    "Relaxation",
    "Tried",
    "advice_text",
    "batch_reason",
    "inference_relaxation_axes",
    "infeasibility_group",
    "infeasibility_reasons",
    "relaxation_axes",
    "search_relaxations",
    "untried_axes",
]

#: Planner time limit (s) of one re-planned relaxation: enough to prove most of them
#: infeasible (tens of ms) or to find a plan (warm starts); a plan need not be optimal here.
REPLAN_S = 1.0

#: A re-plan is started only with at least this limit left (else "not verified (time)").
MIN_REPLAN_S = 0.1

#: Deterministic runs (no wall clock): each re-plan's limit in CP-SAT's deterministic time,
#: charged in full against a budget of the call's own ``time_limit_s``, so that the same
#: input tries the same relaxations every run.
REPLAN_DETERMINISTIC_S = 0.5

#: Largest multiple of the cluster's GPUs tried (each pool's nodes x factor).
MAX_GPU_FACTOR = 1024

#: Powers of two tried on the GPU axis from the memory bound upward (the bound counts the
#: model states once; activations and replicas need more).
GPU_STEPS_ABOVE_BOUND = 4

#: Halvings of the sequence tried on the sequence axis.
SEQUENCE_HALVINGS = 8

#: Pairs of changes re-planned at most (when no single change plans), smallest first.
MAX_PAIRS = 40

#: The single changes stop once this many are verified sufficient: the axes come from the
#: cheapest kind of change to the dearest (knobs, engines, hardware, what is trained), so
#: later axes only add dearer alternatives to the ones already verified, and each re-plan of
#: a 405B model on a 64-GPU cluster costs 0.1-0.4 s (solve_time.py's INFEASIBLE rows must
#: stay within 1.5x of their solve time without advice, issue 15).  The axes left are named
#: in the advice as not tried.
ENOUGH_SUFFICIENT = 2

#: Where the verdicts begin in an INFEASIBLE result's message (renderers split there).
ADVICE_HEAD = "Relaxations re-planned one at a time:"

#: Recomputation from the least memory saved to the most (the lightest plan takes the last
#: the workload allows).
_RECOMPUTE_ORDER = ("none", "selective", "full")

#: The memory policies (specs.TrainingWorkload.memory_policy).
_POLICIES = ("megatron_bf16", "amp_fp16", "fsdp2_mixed", "pure_bf16")


# ------------------------------------------------------------------------------------------
# Reasons, with numbers
# ------------------------------------------------------------------------------------------
def fmt_gb(x: float) -> str:
    """GB with as many digits as the size needs: never "0" for a nonzero amount."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def _fmt_params(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n:,.0f}"


def _dividing(workload: TrainingWorkload) -> list[int]:
    return [mb for mb in sorted(workload.micro_batch_sizes) if workload.global_batch_size % mb == 0]


def batch_reason(workload: TrainingWorkload) -> str | None:
    """The batch rule when it binds: no allowed micro-batch divides the global batch (every
    plan runs ``global_batch = DP x micro-batch x micro-batches``); None when one does."""
    if _dividing(workload):
        return None
    return (
        f"batch: global batch {workload.global_batch_size} is not divisible by any "
        f"micro-batch x DP: micro-batches {sorted(workload.micro_batch_sizes)}"
    )


def states_GB(
    model: Model, workload: TrainingWorkload, sequence_length: int | None = None
) -> float:
    """Weights, gradients and optimizer states of the whole model, each held once (GB)."""
    from ..costmodel import total_params
    from .tables.stage import state_bytes_per_param

    seq = workload.sequence_length if sequence_length is None else sequence_length
    return total_params(model, seq) * state_bytes_per_param(workload.memory_policy) / 1e9


def cluster_GB(cluster: Cluster) -> float:
    """Memory of every GPU of the cluster together (GB)."""
    return sum(p.num_gpus * gpu_of(p).memory_GB for p in cluster.pools)


@dataclass(frozen=True)
class _Lightest:
    """The homogeneous plan whose worst stage overshoots memory least, and its ledger."""

    pool: Pool
    shape: str  # "TP 2, PP 4, DP 1, micro-batch 1, recompute full, ZeRO-3"
    rows: list[dict[str, Any]]

    @property
    def worst(self) -> dict[str, Any]:
        return max(self.rows, key=lambda r: float(r["total_GB"]) / float(r["capacity_GB"]))


def _bare_stages(pool: str, tp: int, layers: list[int]) -> list[Stage]:
    out: list[Stage] = []
    first = 0
    for n in layers:
        out.append(Stage(first_layer=first, last_layer=first + n - 1, pool=pool, tp=tp, devices=[]))
        first += n
    return out


def lightest_plan(model: Model, cluster: Cluster, workload: TrainingWorkload) -> _Lightest | None:
    """Over every pool, TP degree and pipeline depth (:func:`~.options.pipeline_degrees`),
    with the largest DP degree the batch allows, the smallest dividing micro-batch, the
    strongest recomputation, the highest ZeRO stage and sequence parallelism where allowed:
    the plan whose worst stage's peak memory / capacity is smallest (None without a dividing
    micro-batch).  Engine limits are ignored: this measures memory, it proves nothing."""
    best: tuple[float, _Lightest] | None = None
    for cand in _light_plans(model, cluster, workload):
        worst = cand.worst
        key = float(worst["total_GB"]) / float(worst["capacity_GB"])
        if best is None or key < best[0]:
            best = (key, cand)
    return None if best is None else best[1]


def _light_plans(model: Model, cluster: Cluster, workload: TrainingWorkload) -> Iterator[_Lightest]:
    """:func:`lightest_plan`'s candidates, one per pool, TP degree and depth whose ledger
    the evaluator computes."""
    from ..evaluate.ledger import training_memory_ledger

    micro = _dividing(workload)
    if not micro:
        return
    mb = micro[0]
    rc = next(r for r in reversed(_RECOMPUTE_ORDER) if r in workload.recompute)
    zero = max(workload.zero_stages)
    sp = True in workload.sequence_parallel
    sequences = workload.global_batch_size // mb
    for pool in cluster.pools:
        for tp in tp_options(model, pool):
            for pp in pipeline_degrees(model.num_layers, pool.num_gpus // tp):
                room = pool.num_gpus // (tp * pp)
                d = max(
                    (k for k in range(1, min(room, sequences) + 1) if sequences % k == 0), default=0
                )
                if d < 1:
                    continue
                group = ReplicaGroup(
                    count=d,
                    micro_batch_size=mb,
                    num_micro_batches=sequences // d,
                    schedule="1f1b",
                    recompute=rc,  # type: ignore[arg-type,unused-ignore]
                    zero_stage=zero,
                    sequence_parallel=sp and tp > 1,
                    stages=_bare_stages(pool.name, tp, split_layers(model.num_layers, pp)),
                )
                try:
                    rows = training_memory_ledger(
                        model, cluster, workload, Plan(kind="training", replica_groups=[group])
                    )
                except (ValueError, KeyError, IndexError, ZeroDivisionError):
                    continue
                if not rows:
                    continue
                yield _Lightest(
                    pool,
                    f"{pool.name}: TP {tp}, PP {pp}, DP {d}, micro-batch {mb}, recompute {rc}, "
                    f"ZeRO-{zero}" + (", SP" if sp and tp > 1 else ""),
                    rows,
                )


def memory_reason(model: Model, cluster: Cluster, workload: TrainingWorkload) -> list[str]:
    """The memory constraint with numbers: the model states against the whole cluster (when
    they exceed it) and the lightest plan's worst stage (activations vs the GB left free)."""
    out: list[str] = []
    need, have = states_GB(model, workload), cluster_GB(cluster)
    if need > have:
        from ..costmodel import total_params
        from .tables.stage import state_bytes_per_param

        params = total_params(model, workload.sequence_length)
        out.append(
            f"memory: the model's weights, gradients and optimizer states need {fmt_gb(need)} GB "
            f"({_fmt_params(params)} params x {state_bytes_per_param(workload.memory_policy):g} B) "
            f"before activations; the cluster has {fmt_gb(have)} GB in all"
        )
    light = lightest_plan(model, cluster, workload)
    if light is None:
        return out
    row = light.worst
    gpu = gpu_of(light.pool).name
    cap = float(row["capacity_GB"])
    states = float(row["weights_GB"]) + float(row["grads_GB"]) + float(row["optimizer_GB"])
    acts = float(row["activations_GB"])
    overhead = float(row["overhead_GB"])
    total = float(row["total_GB"])
    free = cap - overhead - states
    where = f"stage {row['stage']} of the lightest plan ({light.shape})"
    if total <= cap + 1e-9:
        out.append(
            f"memory: {where} fits ({fmt_gb(total)} of {fmt_gb(cap)} GB per {gpu}), so memory "
            "alone does not bind: engine limits, head or layer divisibility or placement do"
        )
    elif free <= 0:
        out.append(
            f"memory: {where} needs {fmt_gb(total)} GB per GPU: its weights, gradients and "
            f"optimizer states alone take {fmt_gb(states)} GB of the {gpu}'s {fmt_gb(cap)} GB "
            f"({fmt_gb(overhead)} GB framework overhead), activations {fmt_gb(acts)} GB more"
        )
    else:
        out.append(
            f"memory: {where} needs {fmt_gb(total)} GB per GPU, {fmt_gb(cap)} GB on the {gpu}: "
            f"activations {fmt_gb(acts)} GB vs {fmt_gb(free)} GB free (after {fmt_gb(states)} GB "
            f"of weights, gradients and optimizer states and {fmt_gb(overhead)} GB overhead)"
        )
    return out


def infeasibility_group(model: Model, cluster: Cluster, workload: TrainingWorkload) -> str:
    """The constraint group :func:`infeasibility_reasons` names first -- "batch", "memory",
    or "" where it names none -- without searching for the lightest plan (one ledger that
    computes is enough to know the memory reason has a line): all a relaxation's re-plan
    reports of its reasons (:attr:`Tried.why`)."""
    if batch_reason(workload) is not None:
        return "batch"
    if states_GB(model, workload) > cluster_GB(cluster):
        return "memory"
    if next(_light_plans(model, cluster, workload), None) is not None:
        return "memory"
    # No memory line: the note on micro-batches that do not divide, if any, comes first.
    return (
        "batch" if any(workload.global_batch_size % mb for mb in workload.micro_batch_sizes) else ""
    )


def infeasibility_reasons(model: Model, cluster: Cluster, workload: TrainingWorkload) -> str:
    """Which constraint binds, with numbers (see the module docstring); "; "-joined."""
    batch = batch_reason(workload)
    parts = [batch] if batch is not None else memory_reason(model, cluster, workload)
    skipped = [mb for mb in workload.micro_batch_sizes if workload.global_batch_size % mb]
    if batch is None and skipped:
        parts.append(
            f"batch: micro-batches {sorted(skipped)} do not divide global batch "
            f"{workload.global_batch_size} and were not searched"
        )
    return "; ".join(parts) or "no plan satisfies the rules (see the planner's log)"


# ------------------------------------------------------------------------------------------
# Relaxations
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Relaxation:
    """One change of the instance (or a pair of them): what it says, on which axes, and how
    it changes the instance: workload fields, a GPU multiple, an engine scope."""

    change: str  #: "allow recompute full", "2x the GPUs (4 H100-SXM5-80GB in all)", ...
    axes: tuple[str, ...]
    update: tuple[tuple[str, Any], ...] = ()  #: workload fields and their new values
    factor: int = 1  #: every pool's nodes x this
    engine: str | None = None  #: an engine scope to plan with instead of the caller's

    def apply(self, cluster: Cluster, workload: AnyWorkload) -> tuple[Cluster, AnyWorkload]:
        """The relaxed instance (ValidationError where the change breaks a spec rule)."""
        relaxed = _with(workload, **dict(self.update)) if self.update else workload
        return (scaled(cluster, self.factor) if self.factor > 1 else cluster), relaxed

    def applies(self, cluster: Cluster, workload: AnyWorkload) -> bool:
        """Whether the specs accept the change (:meth:`apply` raises nothing)."""
        try:
            self.apply(cluster, workload)
        except (ValidationError, ValueError):
            return False
        return True

    def __add__(self, other: Relaxation) -> Relaxation | None:
        """Both changes at once (None where they touch the same axis)."""
        if set(self.axes) & set(other.axes):
            return None
        return Relaxation(
            f"{self.change} and {other.change}",
            self.axes + other.axes,
            self.update + other.update,
            self.factor * other.factor,
            self.engine or other.engine,
        )


AnyWorkload = TrainingWorkload | InferenceWorkload


def _with(workload: AnyWorkload, **update: Any) -> AnyWorkload:
    """``workload`` with ``update``, validated (a batch x sequence past the limit raises)."""
    return type(workload).model_validate({**workload.model_dump(), **update})


def scaled(cluster: Cluster, factor: int) -> Cluster:
    """Every pool with ``factor`` times its nodes."""
    pools = [p.model_copy(update={"nodes": p.nodes * factor}) for p in cluster.pools]
    return cluster.model_copy(update={"pools": pools})


def _gpu_label(cluster: Cluster, factor: int) -> str:
    if len(cluster.pools) == 1:
        p = cluster.pools[0]
        return f"{factor}x the GPUs ({p.num_gpus * factor} {gpu_of(p).name} in all)"
    return f"{factor}x the GPUs of every pool ({cluster.num_gpus * factor} in all)"


def _gpu_factors(model: Model, cluster: Cluster, workload: TrainingWorkload) -> list[int]:
    """2 and 4, then, where even 4x cannot hold the model states once, the powers of two
    from where the cluster's memory can (smaller factors cannot: not tried), a few of them,
    up to :data:`MAX_GPU_FACTOR`."""
    bound = states_GB(model, workload) / max(cluster_GB(cluster), 1e-9)
    most = max(p.nodes for p in cluster.pools)
    factors = [2, 4]
    if bound > 4:
        f = 8
        while f < bound and f <= MAX_GPU_FACTOR:
            f *= 2
        for _ in range(GPU_STEPS_ABOVE_BOUND):
            if f > MAX_GPU_FACTOR:
                break
            factors.append(f)
            f *= 2
    return [k for k in factors if most * k <= MAX_NODES]


def _no_engine_runs(workload: TrainingWorkload, engine_scope: str | None) -> bool:
    """Whether no engine of a launchable scope runs the workload's numerics (precision, memory
    policy, FP8 recipe, TP overlap), the planner's own test (``workload_violations``)."""
    from ..engines import ENGINES, LAUNCHABLE, engines_for, workload_violations

    if engine_scope not in (None, LAUNCHABLE):
        rules = [r for name, r in ENGINES.items() if name == engine_scope]
        if not rules:
            return False  # any-plan, or a name the caller already refused
    else:
        rules = engines_for("training")
    return all(workload_violations(r, workload) for r in rules)


def _lighter_policy(workload: TrainingWorkload, engine_scope: str | None) -> str | None:
    """The memory policy with the fewest bytes of state per parameter, fewer than the
    workload's, that an engine of the scope runs at the workload's precision (any policy for
    ``any-plan``); None if there is none."""
    from ..engines import ANY_PLAN, ENGINES, LAUNCHABLE, engines_for
    from .tables.stage import state_bytes_per_param

    if engine_scope == ANY_PLAN:
        allowed = set(_POLICIES)
    else:
        rules = (
            engines_for("training")
            if engine_scope in (None, LAUNCHABLE)
            else [r for name, r in ENGINES.items() if name == engine_scope]
        )
        allowed = {
            p for r in rules if workload.precision in r.precisions for p in r.memory_policies
        }
    now = state_bytes_per_param(workload.memory_policy)
    lighter = [p for p in _POLICIES if p in allowed and state_bytes_per_param(p) < now]
    return min(lighter, key=state_bytes_per_param, default=None)


def relaxation_axes(
    model: Model, cluster: Cluster, workload: TrainingWorkload, engine_scope: str | None
) -> list[list[Relaxation]]:
    """The relaxations worth re-planning, one list per axis, the axes from the cheapest kind
    of change (a knob the launcher sets) to the dearest (hardware, then what is trained), each
    axis's steps from the smallest change up.

    Axes: allow recompute full; allow ZeRO-3; allow micro-batch 1; the memory policy with the
    fewest bytes per parameter; plans beyond the engines (``any-plan``); 2x and 4x the GPUs
    of every pool, then powers of two from the memory bound up; the sequence halved,
    quartered, ...  When no micro-batch divides the global batch only micro-batch 1 and the
    nearest global batch some micro-batch divides are listed: nothing else can help.
    """
    axes: list[list[Relaxation]] = []

    def one(change: str, axis: str, **update: Any) -> None:
        r = Relaxation(change, (axis,), tuple(update.items()))
        if r.applies(cluster, workload):
            axes.append([r])

    if "full" not in workload.recompute:
        one("allow recompute full", "recompute", recompute=[*workload.recompute, "full"])
    if 3 not in workload.zero_stages:
        one("allow zero_stage 3", "zero", zero_stage=sorted({*workload.zero_stages, 3}))
    if 1 not in workload.micro_batch_sizes:
        one(
            "allow micro_batch_sizes 1", "micro_batch",
            micro_batch_sizes=sorted({*workload.micro_batch_sizes, 1}),
        )  # fmt: skip
    policy = _lighter_policy(workload, engine_scope)
    if policy is not None:
        one(f"memory_policy {policy}", "memory_policy", memory_policy=policy)
    if engine_scope != "any-plan":
        axes.append(
            [
                Relaxation(
                    "plans beyond the engines (engine any-plan)", ("engine",), engine="any-plan"
                )
            ]
        )
    if _no_engine_runs(workload, engine_scope):
        # No engine of the scope has a setting for the workload's numerics: GPUs, knobs and the
        # sequence cannot change that; only the memory policy or plans beyond the engines can.
        axes = [a for a in axes if a[0].axes in (("memory_policy",), ("engine",))]
        return axes
    if batch_reason(workload) is not None:
        # Every plan runs global batch = DP x micro-batch x micro-batches, whatever the GPUs,
        # knobs or sequence: only the batch and the micro-batches can change the verdict.
        axes = [a for a in axes if a[0].axes == ("micro_batch",)]
        b = workload.global_batch_size
        near = sorted(
            {
                x
                for mb in workload.micro_batch_sizes
                for x in (b // mb * mb, -(-b // mb) * mb)
                if x > 0
            },
            key=lambda x: (abs(x - b), -x),
        )
        if near:
            one(f"global_batch_size {near[0]}", "batch", global_batch_size=near[0])
        return axes
    gpus = [
        Relaxation(_gpu_label(cluster, f), ("gpus",), factor=f)
        for f in _gpu_factors(model, cluster, workload)
    ]
    if gpus:
        axes.append(gpus)
    have = cluster_GB(cluster)
    seqs: list[Relaxation] = []
    for k in range(1, SEQUENCE_HALVINGS + 1):
        seq = workload.sequence_length >> k
        # Past the first step, a sequence whose model states alone exceed the cluster's
        # memory cannot plan (they shrink only with the position embeddings): not tried.
        if seq < 1 or (k > 1 and states_GB(model, workload, seq) > have):
            break
        r = Relaxation(f"sequence_length {seq}", ("sequence",), (("sequence_length", seq),))
        if r.applies(cluster, workload):
            seqs.append(r)
    if seqs:
        axes.append(seqs)
    return axes


#: Loosening steps of an inference SLO or throughput target: x2, x4, x10 (a target / 2, / 4,
#: / 10), the smallest first; a step that plans stops its axis.
SLO_FACTORS = (2, 4, 10)

#: Halvings of the prompt tried (its KV cache and prefill shrink with it).
PROMPT_HALVINGS = 3

#: GPU multiples tried for an inference instance: a replica that needs more memory or more
#: tensor parallelism than the cluster has, or a target that needs more replicas.
INFERENCE_GPU_FACTORS = (2, 4, 8)


#: The inference back-end's own suggestion in an INFEASIBLE message ("loosen ttft_ms to 3.6"),
#: re-planned first on its SLO's axis so that it is printed with a verdict, never unverified.
_LOOSEN = re.compile(r"loosen (ttft_ms|tpot_ms) to ([0-9][0-9,]*(?:\.[0-9]+)?)")


def inference_relaxation_axes(
    cluster: Cluster, workload: InferenceWorkload, engine_scope: str | None, message: str = ""
) -> list[list[Relaxation]]:
    """The relaxations of an infeasible inference instance worth re-planning, one list per
    axis, from the knobs a serving engine sets to the hardware and the traffic.

    Axes: allow batch size 1 (less KV cache, faster steps); an fp8 KV cache (half the KV
    bytes); plans beyond the engines (``any-plan``); the TTFT SLO, the TPOT SLO and the
    throughput target each loosened by :data:`SLO_FACTORS` (an SLO last dropped altogether;
    the value the INFEASIBLE ``message`` suggests, ``loosen ttft_ms to 3.6``, tried first); 2x,
    4x and 8x the GPUs of every pool; the prompt halved, quartered, ...  A change the specs
    refuse is left out.
    """
    axes: list[list[Relaxation]] = []

    def axis(steps: list[Relaxation]) -> None:
        ok = [r for r in steps if r.applies(cluster, workload)]
        if ok:
            axes.append(ok)

    def step(change: str, name: str, **update: Any) -> Relaxation:
        return Relaxation(change, (name,), tuple(update.items()))

    batches = sorted(set(workload.batch_sizes))
    if 1 not in batches:
        axis([step("allow batch_size 1", "batch", batch_size=[1, *batches])])
    if workload.kv_cache_precision not in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        axis([step("kv_cache_precision fp8", "kv_cache", kv_cache_precision="fp8")])
    if engine_scope != "any-plan":
        axis(
            [
                Relaxation(
                    "plans beyond the engines (engine any-plan)", ("engine",), engine="any-plan"
                )
            ]
        )
    suggested = {k: float(v.replace(",", "")) for k, v in _LOOSEN.findall(message)}
    for name in ("ttft_ms", "tpot_ms"):
        slo = getattr(workload, name)
        if slo is not None:
            values = [slo * f for f in SLO_FACTORS]
            if name in suggested and suggested[name] > slo:
                values = sorted({suggested[name], *values})
            steps = [step(f"{name} {v:g}", name, **{name: v}) for v in values]
            axis([*steps, step(f"no {name} SLO", name, **{name: None})])
    target = workload.target_throughput_tokens_per_s
    if target is not None:
        axis([
            step(f"target_throughput_tokens_per_s {target / f:g}", "target",
                 target_throughput_tokens_per_s=target / f)
            for f in SLO_FACTORS
        ])  # fmt: skip
    most = max(p.nodes for p in cluster.pools)
    axis([
        Relaxation(_gpu_label(cluster, f), ("gpus",), factor=f)
        for f in INFERENCE_GPU_FACTORS
        if most * f <= MAX_NODES
    ])  # fmt: skip
    axis([
        step(f"prompt_tokens {workload.prompt_tokens >> k}", "prompt",
             prompt_tokens=workload.prompt_tokens >> k)
        for k in range(1, PROMPT_HALVINGS + 1)
        if workload.prompt_tokens >> k >= 1
    ])  # fmt: skip
    return axes


# ------------------------------------------------------------------------------------------
# Re-planning them
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tried:
    """A relaxation and what re-planning it gave."""

    relaxation: Relaxation
    status: str  #: the re-plan's Status value, or "NOT_RUN" (no time left to run it)
    tokens_per_s: float | None = None
    time_s: float = 0.0
    why: str = ""  #: the re-plan's binding constraint group ("memory", "batch", "engine", ...)

    @property
    def plans(self) -> bool:
        return self.status in (Status.OPTIMAL, Status.FEASIBLE)

    @property
    def verdict(self) -> str:
        if self.plans:
            rate = "-" if self.tokens_per_s is None else f"{self.tokens_per_s:,.0f}"
            if self.status == Status.FEASIBLE:  # the re-plan stops at its first plan
                return f"verified: plans (a first plan at tokens/s {rate}, not optimised)"
            return f"verified: plans (tokens/s {rate})"
        if self.status == Status.INFEASIBLE:
            return f"still infeasible ({self.why})" if self.why else "still infeasible"
        if self.status in (Status.UNKNOWN, "NOT_RUN"):
            return "not verified (time)"
        return f"not verified ({self.status})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.relaxation.change,
            "axes": list(self.relaxation.axes),
            "status": self.status,
            "verdict": self.verdict,
            "sufficient": self.plans,
            "tokens_per_s": self.tokens_per_s,
            "why": self.why or None,
            "time_s": round(self.time_s, 3),
        }


#: ``replan(relaxation, time_limit_s)`` -> (the re-plan's status value, its tokens/s or None,
#: its message).
Replan = Callable[[Relaxation, float], tuple[str, float | None, str]]


def constraint_group(message: str) -> str:
    """The constraint group an INFEASIBLE message names first ("memory", "batch", ...)."""
    head = message.split(":", 1)[0].strip()
    return head if head and len(head) <= 24 and " " not in head.strip() else ""


def replan_limit(deadline: Deadline, deterministic: bool, budget_left: float) -> float | None:
    """The time limit for the next re-plan, or None when none fits.

    Wall clock: a plan call with limit ``t`` returns within ``t (1 + GRACE_SHARE) + GRACE_S``
    (:mod:`.deadline`), which must end before the caller's promised return time.
    Deterministic (or unbounded): :data:`REPLAN_DETERMINISTIC_S` while ``budget_left`` (the
    sum of the limits not yet handed out) lasts."""
    if deterministic or not deadline.bounded:
        t = min(REPLAN_DETERMINISTIC_S, budget_left)
    else:
        t = min(REPLAN_S, (deadline.grace_left() - GRACE_S - 0.05) / (1 + GRACE_SHARE))
    return t if t >= MIN_REPLAN_S else None


def search_relaxations(
    axes: Sequence[Sequence[Relaxation]],
    replan: Replan,
    deadline: Deadline,
    deterministic: bool = False,
    budget_s: float = math.inf,
    enough: int | None = None,
) -> list[Tried]:
    """Re-plan single changes (each axis's steps in order, up to its first that plans, and
    no further axis once ``enough`` of them plan, e.g. :data:`ENOUGH_SUFFICIENT`), then, when
    none plans, pairs of changes from different axes, fewest steps first, up to the first pair
    that plans (at most :data:`MAX_PAIRS`).  Relaxations the deadline (deterministic or
    unbounded: ``budget_s``, see :func:`replan_limit`) leaves no room for are returned as
    ``NOT_RUN``; the axes left once ``enough`` plan are not returned (:func:`untried_axes`
    names them)."""
    tried: list[Tried] = []
    budget = [budget_s]

    def run(r: Relaxation) -> Tried:
        limit = replan_limit(deadline, deterministic, budget[0])
        if limit is None:
            return Tried(r, "NOT_RUN")
        budget[0] -= limit
        t0 = deadline.elapsed()
        status, rate, message = replan(r, limit)
        return Tried(r, status, rate, deadline.elapsed() - t0, constraint_group(message))

    for axis in axes:
        if enough is not None and sum(t.plans for t in tried) >= enough:
            break
        for r in axis:
            t = run(r)
            tried.append(t)
            if t.plans or t.status == "NOT_RUN":
                break
    if any(t.plans or t.status == "NOT_RUN" for t in tried):
        return tried  # a sufficient single change, or no time left for pairs
    indexed = [(i, k, r) for i, axis in enumerate(axes) for k, r in enumerate(axis)]
    pairs: list[tuple[int, Relaxation]] = []
    for (i, k, a), (j, q, b) in itertools.combinations(indexed, 2):
        if i != j and (both := a + b) is not None:
            pairs.append((k + q, both))
    pairs.sort(key=lambda x: x[0])  # stable: axis order within the same size
    for _, r in pairs[:MAX_PAIRS]:
        t = run(r)
        tried.append(t)
        if t.plans or t.status == "NOT_RUN":
            break
    return tried


def untried_axes(axes: Sequence[Sequence[Relaxation]], tried: Sequence[Tried]) -> list[str]:
    """The axes :func:`search_relaxations` left once enough single changes planned."""
    seen = {a for t in tried for a in t.relaxation.axes}
    return [axis[0].axes[0] for axis in axes if axis and axis[0].axes[0] not in seen]


def advice_text(tried: Sequence[Tried], untried: Sequence[str] = ()) -> str:
    """The verdicts as one paragraph: every single change with its verdict, the pairs that
    plan (and how many did not), then the sufficient changes, smallest first, and the axes
    ``untried`` (left once :data:`ENOUGH_SUFFICIENT` changes planned)."""
    if not tried:
        return ""
    singles = [t for t in tried if len(t.relaxation.axes) == 1]
    pairs = [t for t in tried if len(t.relaxation.axes) > 1]
    text = f"{ADVICE_HEAD} " + "; ".join(f"{t.relaxation.change}: {t.verdict}" for t in singles)
    if pairs:
        text += ". Pairs of changes re-planned: " + "; ".join(
            f"{t.relaxation.change}: {t.verdict}" for t in pairs if t.plans
        )
        rest = [t for t in pairs if not t.plans]
        infeasible = sum(t.status == Status.INFEASIBLE for t in rest)
        if infeasible:
            text += ("; " if any(t.plans for t in pairs) else "") + f"{infeasible} still infeasible"
        if len(rest) > infeasible:
            text += f"; {len(rest) - infeasible} not verified"
    good = [t for t in tried if t.plans]
    if good:
        text += ". Sufficient (verified by re-planning): " + ", or ".join(
            t.relaxation.change for t in good
        )
    else:
        text += ". No relaxation tried is verified sufficient"
    if any(t.status in (Status.UNKNOWN, "NOT_RUN") for t in tried):
        text += " (some were not verified before the time limit: raise --time-limit)"
    if untried:
        text += f" (axes not tried once {len(good)} changes planned: " + ", ".join(untried) + ")"
    return text
