"""Cheap reasoning on one family's tables before (and to help) the CP-SAT solve.

Two things, both in the model's own integer units so they agree with it exactly:

* :func:`memory_lower_bound_fails` -- a necessary memory condition.  Whatever the split, every
  block's weights, gradients, optimizer state and at least one in-flight micro-batch of
  activations must fit in the GPU memory one replica owns.  Many (family, DP degree) pairs on
  large clusters fail it (e.g. 405B parameters on 16 GPUs per replica), and it takes
  microseconds to check instead of a CP-SAT presolve.
* :func:`warm_start` -- a feasible *hint* for the CP model: the best even split over one
  option (one pool and TP degree) for every pipeline depth, scored with the model's own
  objective terms (:func:`stage_objective`).  CP-SAT starts from it (``AddHint``), so a large
  instance has an incumbent at once and the search spends its time on the bound.  The hint's
  score is only used to order and to seed the search; pruning across families uses the
  objective CP-SAT itself reports.
"""

from __future__ import annotations

from .training import TrainingChoice, TrainOption, TrainTables

__all__ = ["memory_lower_bound_fails", "stage_objective", "warm_start"]


def memory_lower_bound_fails(t: TrainTables, d: int) -> bool:
    """True when no split can fit: a valid (necessary-condition) memory test.

    Per pool ``k``: the blocks placed on ``k`` cost at least ``min_o tp_o (static_o + act_o)``
    GPU-KB each (weights, grads, optimizer shard and one in-flight micro-batch), and ``k`` has
    ``gpus_k // d`` GPUs per replica with at most ``max_o free_o`` KB each.  The number of
    blocks all pools can hold is then bounded; if it is below the layer count, the family is
    infeasible for this ``d``.
    """
    holdable = 0.0
    for pool, gpus in t.pool_gpus.items():
        opts = [o for o in t.options if o.pool == pool and o.allowed.get(d, False)]
        if not opts:
            continue
        per_block = min(o.tp * (o.static["layer"][d] + o.act_layer) for o in opts)
        free = max(o.free_kb(d) for o in opts)
        if free <= 0:
            continue
        holdable += (gpus // d) * free / max(per_block, 1)
    return holdable < t.num_layers


def stage_objective(t: TrainTables, d: int, stages: list[tuple[TrainOption, int]]) -> int | None:
    """The CP model's objective for a pipeline ``stages`` (stage 0 first), or None if over memory.

    Mirrors :class:`~solver.cpsat.training.TrainingModel` term by term (closed-form step time
    ``(m - 1) T_max + sum T + DP_exposed + OPT_max``); used only to choose a hint.
    """
    m = t.m(d)
    p = len(stages)
    index = {id(o): i for i, o in enumerate(t.options)}
    times: list[int] = []
    bwds: list[int] = []
    fwds: list[int] = []
    dps: list[int] = []
    opts: list[int] = []
    for s, (o, n) in enumerate(stages):
        j = p - 1 - s  # slot index from the pipeline end
        first, last = s == 0, j == 0
        k = min(m, j + 1)

        def part(table: dict[str, dict[int, int]], n: int = n, first: bool = first, last: bool = last) -> int:
            v = table["layer"][d] * n
            if last:
                v += table["head"][d] + (table["embed_last"][d] if first else 0)
            elif first:
                v += table["embed"][d]
            return v

        mem = part(o.static) + o.act_layer * k * n + o.overhead + o.transient[d]
        mem += (o.act_head if last else 0) + (o.act_embed * k if first else 0)
        if mem > o.capacity:
            return None
        tt = o.t_layer * n + (o.t_embed if first else 0) + (o.t_head if last else 0)
        oi = index[id(o)]
        if not last:
            tt += t.p2p_pair[(oi, index[id(stages[s + 1][0])])]
        elif t.virtual > 1 and p > 1:
            tt += t.p2p_pair[(oi, index[id(stages[0][0])])]
        times.append(tt)
        bwds.append(o.b_layer * n + (o.b_embed if first else 0) + (o.b_head if last else 0))
        fwds.append(
            (o.t_layer - o.b_layer) * n
            + ((o.t_embed - o.b_embed) if first else 0)
            + ((o.t_head - o.b_head) if last else 0)
        )
        dps.append(part(o.dp) + o.dp["fixed"][d])
        opts.append(part(o.opt))
    # DP traffic of stage s hides behind the backward of stages 0..s-1 (their last micro-batch
    # still runs after stage s has finished) and its own compute (TrainingModel._own_hide).
    def own(s: int) -> int:
        if not t.overlap:
            return 0
        if t.zero_stage <= 1:
            return bwds[s]
        if t.zero_stage == 2:
            return m * bwds[s]
        return m * (bwds[s] + fwds[s])

    exposed = max(0, max(dps[s] - sum(bwds[:s]) - own(s) for s in range(p)))
    return (m - 1) * max(times) + sum(times) + exposed + max(opts)


def _even(layers: int, p: int) -> list[int]:
    """``layers`` split over ``p`` stages, the remainder on the middle stages (ends are heavier)."""
    base, extra = divmod(layers, p)
    counts = [base] * p
    order = sorted(range(p), key=lambda s: (s in (0, p - 1), abs(s - (p - 1) / 2)))
    for s in order[:extra]:
        counts[s] += 1
    return counts


def _depths(t: TrainTables, d: int, o: TrainOption, depth: int) -> list[int]:
    """Candidate pipeline depths for an even split: the shallowest that fits memory and a few
    above it, the divisors of the layer count, powers of two, and the deepest allowed."""
    fits = o.blocks_that_fit(d, t.m(d))
    shallowest = max(1, -(-t.num_layers // fits)) if fits > 0 else depth
    cands = set(range(shallowest, shallowest + 4))
    cands |= {q for q in range(1, t.num_layers + 1) if t.num_layers % q == 0}
    cands |= {1 << i for i in range(8)} | {depth}
    return sorted(q for q in cands if 1 <= q <= depth)


def _engine_ok(t: TrainTables, stages: list[tuple[TrainOption, int]]) -> bool:
    """Whether the target engine can launch this split (the CP model's engine constraints)."""
    from ..engines import GroupShape, shape_violations

    assert t.engine is not None
    shape = GroupShape(
        tp=tuple(o.tp for o, _ in stages),
        pools=tuple(o.pool for o, _ in stages),
        layers=tuple(n for _, n in stages),
    )
    return not shape_violations(t.engine, shape, None)


def warm_start(t: TrainTables, d: int) -> TrainingChoice | None:
    """The best candidate that fits, as an incumbent; None if none fits.

    Candidates: an even split over one option at every useful depth, and on several pools a
    pipeline over all of them (:func:`_mixed_candidates`).  The choice's ``objective`` is the
    model's: the step time, or for min_cost the (rate x step time) product.
    """
    candidates = [
        [(o, n) for n in _even(t.num_layers, p)]
        for o in t.options
        if o.allowed.get(d, False)
        for p in _depths(t, d, o, min(t.max_stages, t.num_layers, (t.pool_gpus[o.pool] // d) // o.tp))
    ]
    if t.engine is not None:
        candidates = [c for c in candidates if _engine_ok(t, c)]
    elif len(t.pool_gpus) > 1:
        candidates += _mixed_candidates(t, d)
    best: TrainingChoice | None = None
    for stages in candidates:
        step = stage_objective(t, d, stages)
        if step is None:
            continue
        objective = step * d * sum(o.price for o, _ in stages) if t.objective == "min_cost" else step
        if best is None or objective < best.objective:
            best = TrainingChoice(d=d, stages=stages, step_us=step, objective=objective)
    return best


#: Most (per-pool TP) combinations the mixed-pool warm start tries per sub-problem.
MAX_MIXED_COMBINATIONS = 64


def _mixed_candidates(t: TrainTables, d: int) -> list[list[tuple[TrainOption, int]]]:
    """Pipelines over several pools, layers balanced by speed: candidate warm starts.

    For each choice of one TP option per pool (capped at :data:`MAX_MIXED_COMBINATIONS`), each
    pool gets as many stages as its GPUs per replica allow (and half as many), blocks are
    split in proportion to each stage's speed (``1 / t_layer``), and both pool orders (fast
    pools first, slow pools first) are tried.  Pools whose options hold no block are left out.
    """
    import itertools

    per_pool: dict[str, list[TrainOption]] = {}
    for o in t.options:
        if o.allowed.get(d, False) and (t.pool_gpus[o.pool] // d) // o.tp >= 1:
            per_pool.setdefault(o.pool, []).append(o)
    if len(per_pool) < 2:
        return []
    out: list[list[tuple[TrainOption, int]]] = []
    combos = itertools.islice(itertools.product(*per_pool.values()), MAX_MIXED_COMBINATIONS)
    L = t.num_layers
    for combo in combos:
        for scale in (1, 2):
            counts = [max(1, (t.pool_gpus[o.pool] // d) // o.tp // scale) for o in combo]
            slots = [o for o, c in zip(combo, counts, strict=True) for _ in range(c)]
            if not 1 <= len(slots) <= min(t.max_stages, L):
                continue
            for order in (1, -1):
                ordered = sorted(slots, key=lambda o: order * o.t_layer)
                layers = _balanced(L, [o.t_layer for o in ordered])
                if layers is not None:
                    out.append(list(zip(ordered, layers, strict=True)))
    return out


def _balanced(L: int, times: list[int]) -> list[int] | None:
    """``L`` blocks over stages in proportion to their speed, each >= 1 (None if impossible)."""
    p = len(times)
    if p > L:
        return None
    speed = [1.0 / max(1, x) for x in times]
    total = sum(speed)
    raw = [L * v / total for v in speed]
    counts = [max(1, int(r)) for r in raw]
    while sum(counts) > L:  # take from the stage with the most blocks above 1
        k = max((i for i in range(p) if counts[i] > 1), key=lambda i: counts[i] * times[i])
        counts[k] -= 1
    while sum(counts) < L:  # give to the stage that stays fastest
        k = min(range(p), key=lambda i: (counts[i] + 1) * times[i])
        counts[k] += 1
    return counts
