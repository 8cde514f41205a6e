"""The training model's data: one family's coefficient tables (:class:`TrainTables`, with its
options and hop prices; built by :mod:`solver.cpsat.tables`), the run condition on near-priced
hand-offs (:func:`hop_runs`), and the solution the model returns (:class:`TrainingChoice`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...engines import ShapeLimits

__all__ = [
    "KB",
    "US",
    "HopPrices",
    "HopRuns",
    "TrainOption",
    "TrainTables",
    "TrainingChoice",
    "hop_runs",
]

US = 1e-6  # default seconds per time unit (tables may choose a finer unit: TrainTables.unit_s)
KB = 1e3  # bytes per memory unit


@dataclass(frozen=True)
class TrainOption:
    """Coefficients of one per-stage option ``(pool, tp)`` for a fixed global family.

    Times are per micro-batch, in microseconds; memory per GPU in KB.  Dicts keyed by a part
    (``layer`` per block, ``embed``, ``head``, ``embed_last`` = the embedding on a stage that is
    also the last, ``fixed``) then by the DP degree ``d`` (ZeRO sharding and DP span depend on it).
    """

    pool: str
    tp: int
    t_layer: int  # forward + backward per block
    t_embed: int
    t_head: int
    b_layer: int  # backward only (what DP traffic can hide behind)
    b_embed: int
    b_head: int
    act_layer: int  # stored activations per block per in-flight micro-batch
    act_embed: int  # extra activations on the first stage per in-flight micro-batch
    act_head: int  # extra activations on the last stage (logits etc.), once
    overhead: int  # framework overhead per GPU
    capacity: int  # GPU memory
    transient: dict[int, int]  # by d: one block rebuilt for backward + ZeRO-3's gathered block
    static: dict[str, dict[int, int]]  # weights + grads + optimizer
    dp: dict[str, dict[int, int]]  # DP gradient/weight traffic per step
    opt: dict[str, dict[int, int]]  # optimizer step
    allowed: dict[int, bool]  # d -> the stage block places exactly
    price: int = 0  # tp x cost_per_gpu_hour in milli-dollars per hour (min_cost)
    # Gradients allocated on demand (workload grad_buffers: on_demand): their part of
    # ``static`` by part and d, for the simultaneous peak of a one-micro-batch step
    # (``max(grads, activations)``, as the evaluator's ledger); empty: persistent buffers,
    # summed with the activations.
    grads: dict[str, dict[int, int]] = field(default_factory=dict)
    # The part of ``transient`` that is a block rebuilt for its backward (an activation; the
    # rest is ZeRO-3's gathered block, a weight), by d; empty: all of it counted as weights.
    rebuilt: dict[int, int] = field(default_factory=dict)

    def free_kb(self, d: int) -> int:
        """Memory a GPU has for blocks after the framework overhead and the stage's transient."""
        return self.capacity - self.overhead - self.transient[d]

    def blocks_that_fit(self, d: int, in_flight: float) -> int:
        """Most blocks one stage of this option holds by memory alone, with ``in_flight``
        micro-batches of activations (embedding and head only lower it further).  With
        on-demand gradients the gradients are left out: a valid upper bound whether or not
        they are live with the activations."""
        grads = self.grads["layer"][d] if self.grads else 0
        per_block = self.static["layer"][d] - grads + math.ceil(self.act_layer * in_flight)
        return max(0, self.free_kb(d) // max(1, per_block))


@dataclass(frozen=True)
class HopPrices:
    """The range of each pipeline hand-off's price, per ordered pair of options (sender,
    receiver), built by :func:`~solver.cpsat.tables.hops.hop_prices` (which says why each holds).

    ``far``: the least price when the two stages cannot share an NVLink domain; ``near``:
    pairs whose price may be lower, ``(price, largest DP degree for which placement can put
    every replica's hop inside one domain)``; ``worst``: the dearest price placement can give.
    """

    far: dict[tuple[int, int], int]
    near: dict[tuple[int, int], tuple[int, int]]
    worst: dict[tuple[int, int], int]
    domain: dict[str, int] = field(default_factory=dict)  # pool -> GPUs of one NVLink domain

    def optimistic(self, d: int) -> dict[tuple[int, int], int]:
        """Prices <= the evaluator's for every plan with DP degree ``d``."""
        out = dict(self.far)
        for pair, (price, d_max) in self.near.items():
            if d <= d_max:
                out[pair] = min(out[pair], price)
        return out

    def pessimistic(self) -> dict[tuple[int, int], int]:
        """Prices >= the evaluator's for every plan."""
        return dict(self.worst)

    def restricted(self, keep: list[int]) -> HopPrices:
        """The prices of the options ``keep`` only, re-indexed (see ``restrict_options``)."""
        new = {i: a for a, i in enumerate(keep)}

        def sub(table: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
            return {(new[i], new[j]): v for (i, j), v in table.items() if i in new and j in new}

        return HopPrices(
            far=sub(self.far), near=sub(self.near), worst=sub(self.worst), domain=dict(self.domain)
        )


@dataclass(frozen=True)
class HopRuns:
    """The run condition on near-priced hand-offs of a single-``d`` table (:func:`hop_runs`).

    ``excess[(o, o2)] > 0``: what the hop from option ``o`` to ``o2`` costs on top of its
    ``p2p_pair`` (near) price unless it is part of a run of consecutive hops, all near, whose
    stages satisfy :func:`~solver.cpsat.tables.hops.run_fits`: ``d * sum(tp) <= domain[pool]``.
    """

    d: int
    excess: dict[tuple[int, int], int]
    domain: dict[str, int]


def hop_runs(t: TrainTables) -> HopRuns | None:
    """The run condition of ``t``'s hand-offs, or None when it has none to add.

    A pair whose ``p2p_pair`` price is below ``hops.far`` is priced near (optimistically, by
    :func:`~solver.cpsat.tables.build.for_dp` for the table's one ``d``): placement gives it that
    price only if every replica's hop stays inside one NVLink domain, and a run of such hops
    needs :func:`~solver.cpsat.tables.hops.run_fits`.  Tables with several ``d``, without hop
    ranges, or priced far or pessimistically everywhere have nothing to add (every pair at
    ``far`` or above).
    """
    if t.hops is None or len(t.dp_degrees) != 1 or not t.hops.domain:
        return None
    excess = {
        pair: far - t.p2p_pair[pair]
        for pair, far in t.hops.far.items()
        if pair in t.p2p_pair and far > t.p2p_pair[pair]
    }
    # A near pair in a pool of unknown domain size (not built by hop_prices): leave the
    # condition out (weaker, still valid) rather than guess it.
    if not excess or any(t.options[o].pool not in t.hops.domain for o, _ in excess):
        return None
    return HopRuns(d=t.dp_degrees[0], excess=excess, domain=dict(t.hops.domain))


@dataclass(frozen=True)
class TrainTables:
    """Everything the model needs for one family; built by :mod:`solver.cpsat.tables`."""

    num_layers: int
    micro_batch: int
    global_batch: int
    options: list[TrainOption]
    dp_degrees: list[int]  # candidate d (each divides global_batch / micro_batch)
    pool_gpus: dict[str, int]
    p2p_pair: dict[tuple[int, int], int]  # (sender, receiver option) -> 2 x p2p per micro-batch
    max_stages: int
    unit_s: float = US  # seconds per integer time unit
    objective: str = "max_throughput"  # or "min_cost": minimise (d x price) x step time
    virtual: int = 1  # interleaved 1F1B with this many chunks per stage (then max_stages is p)
    zero_stage: int = 1  # what a stage's DP traffic hides behind (see TrainingModel._objective)
    overlap: bool = True  # workload.overlap_grad_reduce
    engine: ShapeLimits | None = None  # the target engines' limits become constraints
    heads: tuple[int, int] = (0, 0)  # (attention heads, kv heads), for the engine's TP rules
    hops: HopPrices | None = None  # the range of every hand-off's price (p2p_pair lies in it)

    def m(self, d: int) -> int:
        return self.global_batch // (d * self.micro_batch)


@dataclass(frozen=True)
class TrainingChoice:
    """The solution of one family: stage options (in pipeline order), layers, DP degree."""

    d: int
    stages: list[tuple[TrainOption, int]]  # (option, layers), stage 0 first
    step_us: float  # step time in time units
    objective: float  # the model's objective (step time, or rate x step time), in time units
    virtual: int = 1  # chunks per stage (interleaved 1F1B)
