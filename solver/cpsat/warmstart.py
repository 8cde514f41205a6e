"""Cheap reasoning on one family's tables before (and to help) the CP-SAT solve.

Both in the model's own integer units so they agree with it exactly:

* :func:`memory_lower_bound_fails` -- a necessary memory condition.  Whatever the split, every
  block's weights, gradients, optimizer state and at least one in-flight micro-batch of
  activations must fit in the GPU memory one replica owns.  Many (family, DP degree) pairs on
  large clusters fail it (e.g. 405B parameters on 16 GPUs per replica), and it takes
  microseconds to check instead of a CP-SAT presolve.
* :func:`warm_start` -- an incumbent: the best even split over one option (one pool and TP
  degree) for every pipeline depth, pipelines over several pools, and a local search over
  pipelines of pool blocks (:func:`pipeline_search`), each scored with the model's own
  objective (:func:`stage_objective`, plain and interleaved 1F1B alike).  The planner uses
  the best as the cut-off of every CP-SAT solve, so most sub-problems are closed by a bound
  against it before any model is built.
"""

from __future__ import annotations

import math

from .training.data import HopRuns, TrainingChoice, TrainOption, TrainTables, hop_runs

__all__ = [
    "fill_blocks",
    "memory_lower_bound_fails",
    "pipeline_search",
    "stage_objective",
    "warm_start",
]


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


def stage_objective(t: TrainTables, d: int, stages: list[tuple[TrainOption, int]]) -> float | None:
    """The CP model's objective for a pipeline ``stages`` (stage 0 first), or None if the model
    would reject it (memory, GPUs per pool, a block that does not place, the depth, the split).

    Mirrors :class:`~solver.cpsat.training.TrainingModel` term by term: the closed-form step
    time ``(m - 1/v) T_max + sum T / v + DP_exposed + OPT_max`` (the model minimises v times
    it, in integers), with interleaved 1F1B's in-flight counts, equal chunks and the last
    stage's hand-off to the first.  For ``min_cost`` the caller multiplies by the rate.
    """
    m = t.m(d)
    v = t.virtual
    p = len(stages)
    if not 1 <= p <= t.max_stages or (v > 1 and p != t.max_stages):
        return None
    if sum(n for _, n in stages) != t.num_layers or any(n < v or n % v for _, n in stages):
        return None
    used: dict[str, int] = {}
    for o, _ in stages:
        if not o.allowed.get(d, False):
            return None
        used[o.pool] = used.get(o.pool, 0) + o.tp
    if any(g > t.pool_gpus[k] // d for k, g in used.items()):
        return None
    index = {id(o): i for i, o in enumerate(t.options)}
    times: list[int] = []
    bwds: list[int] = []
    fwds: list[int] = []
    dps: list[int] = []
    opts: list[int] = []
    for s, (o, n) in enumerate(stages):
        j = p - 1 - s  # slot index from the pipeline end
        first, last = s == 0, j == 0
        k = min(m, j + 1) if v == 1 else min(m * v, 2 * j + (v - 1) * p + 1) / v

        def part(
            table: dict[str, dict[int, int]], n: int = n, first: bool = first, last: bool = last
        ) -> int:
            val = table["layer"][d] * n
            if last:
                val += table["head"][d] + (table["embed_last"][d] if first else 0)
            elif first:
                val += table["embed"][d]
            return val

        mem = part(o.static) + math.ceil(o.act_layer * k) * n + o.overhead + o.transient[d]
        mem += (o.act_head if last else 0) + (math.ceil(o.act_embed * k) if first else 0)
        if mem > o.capacity:
            return None
        tt = o.t_layer * n + (o.t_embed if first else 0) + (o.t_head if last else 0)
        oi = index[id(o)]
        if not last:
            tt += t.p2p_pair[(oi, index[id(stages[s + 1][0])])]
        elif v > 1 and p > 1:
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

    # DP traffic of stage s hides behind its own compute (TrainingModel._own_hide; under
    # interleaving with ZeRO-0/1 its last backward op, chunk 0: _paths_hide) and the cool-down
    # chain: the last backward op of stages 0..s-1 (the whole backward in plain 1F1B; chunk 0,
    # B / v with the embedding whole, under interleaving) and the one-way gradient hand-offs
    # between them (half of each 2 x p2p price): the model's
    # 2 v DP >= 2 v dp - 2 v own - sum (2 v chunk + v H).  Both in v x seconds.
    chain = [
        bwds[s] if v == 1 else o.b_layer * n + (v * o.b_embed if s == 0 else 0)
        for s, (o, n) in enumerate(stages)
    ]

    def own(s: int) -> int:
        if not t.overlap:
            return 0
        if t.zero_stage <= 1:
            return bwds[s] if v == 1 else chain[s]
        if t.zero_stage == 2:
            return v * m * bwds[s]
        return v * m * (bwds[s] + fwds[s])

    runs = hop_runs(t)
    opt_idx = [(index[id(o)], o) for o, _ in stages]
    hops = [t.p2p_pair[(opt_idx[s][0], opt_idx[s + 1][0])] for s in range(p - 1)]
    # W[s]: 2 v x (dp - own - what stage s hides behind) with every hop at its p2p_pair price.
    W = []
    acc = 0
    for s in range(p):
        W.append(2 * v * dps[s] - 2 * own(s) - acc)
        if s + 1 < p:
            acc += 2 * chain[s] + v * hops[s]
    if runs is None:
        pipe = (v * m - 1) * max(times) + sum(times) + _exposed2(max(W), v)
    else:
        pipe = _best_runs(runs, v * m - 1, times, opt_idx, W, v)
    step_v = pipe + v * max(opts)
    return step_v if v == 1 else step_v / v


def _exposed2(worst2: int, v: int = 1) -> int:
    """``v`` x the model's integer ``DP`` for ``2 v DP >= worst2``, ``DP >= 0``:
    ``v max(0, ceil(worst2 / (2 v)))``."""
    return v * max(0, -(-worst2 // (2 * v)))


def _best_runs(
    runs: HopRuns,
    a: int,
    times: list[int],
    opts: list[tuple[int, TrainOption]],
    W: list[int],
    v: int = 1,
) -> int:
    """``min a max(T) + sum T`` over the model's ``near`` Booleans (TrainingModel._near_runs):
    ``times`` are the stages' times with every hand-off at its ``p2p_pair`` (near) price; a
    hop off a near run adds its ``excess``; a run (consecutive hops, all near) needs
    ``d * sum(tp) <= D`` of its pool.

    Exact: for each candidate ``T_max`` value ``tau`` (a stage's time with or without its
    excess), hops whose far time exceeds ``tau`` must be near, and a DP over run ends
    (:func:`_least_extra`) finds the least excess plus exposed DP; the answer is the least
    ``a tau + sum + extra``.  Runs have
    at most ``D / d`` stages, so each DP is O(p D / d); candidates are tried in increasing
    order and stop once ``a tau + sum(times)`` (no excess at all) cannot beat the best.

    ``W``: per stage, 2 v x its DP traffic less what it hides with every hop at its near
    price; a far hop's excess also hides (half of it) the DP traffic of every later stage, so
    the model's ``DP = max(0, ceil(max_s (W[s] - v E[s]) / (2 v)))`` with ``E[s]`` the excess
    of the far hops before stage s, and the result is ``min a max(T) + sum T + v DP``
    (:func:`_least_extra`; ``v`` chunks per stage, times in v x seconds).
    """
    p = len(times)
    d = runs.d
    ex = [runs.excess.get((opts[s][0], opts[s + 1][0]), 0) if s + 1 < p else 0 for s in range(p)]
    if not any(ex):
        return a * max(times) + sum(times) + _exposed2(max(W), v)
    far = [tt + e for tt, e in zip(times, ex, strict=True)]
    base = sum(far)
    lo = max(times)
    # The least DP any choice gives (every hop far hides the most).
    low_dp = _exposed2(max(w - v * sum(ex[:s]) for s, w in enumerate(W)), v)
    best = a * max(far) + base + low_dp  # every hop far: always feasible
    for tau in sorted({x for x in far if x > lo} | {lo}):
        if a * tau + sum(times) + low_dp >= best:
            break
        extra = _least_extra(runs, d, ex, far, tau, opts, W, v)
        if extra is not None:
            best = min(best, a * tau + sum(times) + extra)
    return best


def _least_extra(
    runs: HopRuns,
    d: int,
    ex: list[int],
    far: list[int],
    tau: int,
    opts: list[tuple[int, TrainOption]],
    W: list[int],
    v: int = 1,
) -> int | None:
    """Least ``E + v max(0, ceil(max_s (W[s] - v E[s]) / (2 v)))`` over the runs with every
    stage's time <= ``tau`` (None: impossible), ``E`` the total excess of the far hops and
    ``E[s]`` that of the far hops before stage s.

    Runs as the model's ``near`` Booleans make them (a run ``[a, b]`` makes hops ``a..b-1``
    near, each with excess > 0, and needs ``d * sum(tp) <= D``), with a set per run boundary
    ``s`` (hop ``s - 1`` not near): excess so far ``E`` -> the least ``max (W[s'] - v E[s'])`` over stages before
    ``s`` (plain 1F1B: its Pareto front).  Exact: inside a run ``E[s']`` is constant, the
    far hop closing it adds its excess.
    """
    p = len(ex)
    F: list[dict[int, float]] = [{} for _ in range(p + 1)]
    F[0][0] = -math.inf
    for b in range(p):
        if b + 1 < p and far[b] > tau:
            continue
        add = ex[b] if b + 1 < p else 0
        out = F[b + 1]
        gpus = d * opts[b][1].tp
        a = b
        wmax = W[b]
        while True:
            for e, mx in F[a].items():
                m2 = max(mx, wmax - v * e)
                key = e + add
                if key not in out or m2 < out[key]:
                    out[key] = m2
            if a == 0 or ex[a - 1] <= 0:
                break
            gpus += d * opts[a - 1][1].tp
            if gpus > runs.domain.get(opts[a - 1][1].pool, 0):
                break
            a -= 1
            wmax = max(wmax, W[a])
        # Plain 1F1B: keep the Pareto front, larger E only with a smaller max (a unit of
        # excess costs 1 and hides at most 1/2 later).  Interleaved, a unit hides v/2 >= 1
        # of a later stage's DP: a larger E with the same max may still win, keep every E.
        if out and v == 1:
            front: dict[int, float] = {}
            least = math.inf
            for e in sorted(out):
                if out[e] < least:
                    front[e] = out[e]
                    least = out[e]
            F[b + 1] = front
    if not F[p]:
        return None
    return min(e + _exposed2(int(mx), v) for e, mx in F[p].items())


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
    """Whether the target engines can launch this split (the CP model's engine constraints)."""
    if t.engine is None:
        return True
    return t.engine.allows_stages(
        [o.tp for o, _ in stages], [o.pool for o, _ in stages], [n for _, n in stages]
    ) and all(t.engine.allows_tp(o.tp, *t.heads) for o, _ in stages)


def warm_start(t: TrainTables, d: int, search: bool = True) -> TrainingChoice | None:
    """The best candidate that fits, as an incumbent; None if none fits.

    Candidates: an even split over one option at every useful depth (interleaved: at the
    sub-problem's fixed depth, whole chunks per stage), on several pools a pipeline over all
    of them (:func:`_mixed_candidates`, plain 1F1B), and with ``search`` the local search over
    pool blocks (:func:`pipeline_search`).  Under target engines' limits every candidate must
    satisfy them (:func:`_engine_ok`); the mixed candidates and the search, which choose their
    own layer split, run only where the engines take any split.  The choice's ``objective`` is the model's: the step time, or for min_cost the
    (rate x step time) product; every candidate is scored by :func:`stage_objective`, which
    rejects what the model would.
    """
    v = t.virtual
    if v == 1:
        candidates = [
            [(o, n) for n in _even(t.num_layers, p)]
            for o in t.options
            if o.allowed.get(d, False)
            for p in _depths(
                t, d, o, min(t.max_stages, t.num_layers, (t.pool_gpus[o.pool] // d) // o.tp)
            )
        ]
    elif t.num_layers % v:
        return None  # no split into whole chunks exists
    else:
        candidates = [
            [(o, v * n) for n in _even(t.num_layers // v, t.max_stages)]
            for o in t.options
            if o.allowed.get(d, False) and t.max_stages <= t.num_layers // v
        ]
    if v == 1:
        # The same options and depths with blocks balanced by time: the embedding stage and
        # the LM-head stage hold fewer blocks (the optimum is often such an uneven split).
        candidates += [
            filled
            for c in list(candidates)
            if (filled := fill_blocks(t, d, [o for o, _ in c])) is not None
        ]
    free_split = t.engine is None or t.engine.layer_split == "any"
    if free_split and len(t.pool_gpus) > 1 and v == 1:
        candidates += _mixed_candidates(t, d)
    if t.engine is not None:
        candidates = [c for c in candidates if _engine_ok(t, c)]
    best: TrainingChoice | None = None

    def offer(stages: list[tuple[TrainOption, int]], step: float, objective: float) -> None:
        nonlocal best
        if best is None or objective < best.objective:
            best = TrainingChoice(d=d, stages=stages, step_us=step, objective=objective, virtual=v)

    for stages in candidates:
        step = stage_objective(t, d, stages)
        if step is None:
            continue
        offer(
            stages,
            step,
            step * d * sum(o.price for o, _ in stages) if t.objective == "min_cost" else step,
        )
    if search and free_split:
        found = pipeline_search(t, d)
        if found is not None and _engine_ok(t, found[1]):
            objective, stages = found
            step = stage_objective(t, d, stages)
            assert step is not None  # pipeline_search scored it
            offer(stages, step, objective)
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


# ------------------------------------------------------------------------------------------
# Pipelines of pool blocks, improved by local search
# ------------------------------------------------------------------------------------------


def _slot_capacity(t: TrainTables, d: int, o: TrainOption, s: int, p: int) -> int:
    """Most blocks stage ``s`` of ``p`` holds on option ``o`` by the model's memory row."""
    m, v = t.m(d), t.virtual
    j = p - 1 - s
    first, last = s == 0, j == 0
    k = min(m, j + 1) if v == 1 else min(m * v, 2 * j + (v - 1) * p + 1) / v
    free = o.capacity - o.overhead - o.transient[d]
    if last:
        free -= o.act_head + o.static["head"][d] + (o.static["embed_last"][d] if first else 0)
    elif first:
        free -= o.static["embed"][d]
    if first:
        free -= math.ceil(o.act_embed * k)
    per_block = o.static["layer"][d] + math.ceil(o.act_layer * k)
    cap = max(0, free) // max(1, per_block)
    return (min(cap, t.num_layers) // v) * v


def fill_blocks(
    t: TrainTables, d: int, seq: list[TrainOption]
) -> list[tuple[TrainOption, int]] | None:
    """Blocks for the stage sequence ``seq`` (stage 0 first): the smallest ``T_max`` at which
    every stage's cap (memory, and ``(T_max - its other terms) / t_layer``) holds all blocks,
    then the surplus taken off the slowest stages.  None if even memory alone cannot."""
    v, L, p = t.virtual, t.num_layers, len(seq)
    if p == 0 or p * v > L:
        return None
    index = {id(o): i for i, o in enumerate(t.options)}
    extra: list[int] = []
    caps: list[int] = []
    for s, o in enumerate(seq):
        last = s == p - 1
        e = (o.t_embed if s == 0 else 0) + (o.t_head if last else 0)
        if not last:
            e += t.p2p_pair[(index[id(o)], index[id(seq[s + 1])])]
        elif v > 1 and p > 1:
            e += t.p2p_pair[(index[id(o)], index[id(seq[0])])]
        extra.append(e)
        caps.append(_slot_capacity(t, d, o, s, p))
    if min(caps) < v or sum(caps) < L:
        return None
    slow = [v * o.t_layer for o in seq]

    def held(tau: int) -> list[int]:
        return [
            min(c, v * ((tau - e) // w)) if tau >= e else 0
            for c, e, w in zip(caps, extra, slow, strict=True)
        ]

    lo = max(w + e for w, e in zip(slow, extra, strict=True))
    hi = max(c // v * w + e for c, w, e in zip(caps, slow, extra, strict=True))
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(held(mid)) >= L:
            hi = mid
        else:
            lo = mid + 1
    h = held(lo)
    surplus = sum(h) - L
    for s in sorted(range(p), key=lambda s: -slow[s]):
        take = min(surplus, h[s] - v) // v * v
        h[s] -= take
        surplus -= take
        if surplus <= 0:
            break
    if surplus or min(h) < v:
        return None
    return list(zip(seq, h, strict=True))


#: Evaluations one local search may spend (each a fill and a scoring of the model's objective).
LOCAL_SEARCH_EVALS = 160

Blocks = tuple[tuple[int, int], ...]  # (option index, stages) in pipeline order


def pipeline_search(
    t: TrainTables, d: int, evals: int = LOCAL_SEARCH_EVALS
) -> tuple[float, list[tuple[TrainOption, int]]] | None:
    """A good pipeline of pool blocks for this sub-problem: (objective, stages), or None.

    A pipeline is a sequence of blocks, each ``c`` consecutive stages of one option (pool,
    TP), at most one block per pool.  Starting from every pool's cheapest option on all its
    GPUs (in a few pool orders), first-improvement local search changes a block's stage
    count, TP degree or place, drops a block or adds a missing pool, scoring each candidate
    with :func:`fill_blocks` and the model's own objective (:func:`stage_objective`), so the
    result is exactly what CP-SAT would score for the same plan.
    """
    v = t.virtual
    gk = {k: g // d for k, g in t.pool_gpus.items()}
    ok = [
        i
        for i, o in enumerate(t.options)
        if o.allowed.get(d, False)
        and gk[o.pool] // o.tp >= 1
        and _slot_capacity(t, d, o, 0, 1) >= v
    ]
    if not ok:
        return None
    by_pool: dict[str, list[int]] = {}
    for i in ok:
        by_pool.setdefault(t.options[i].pool, []).append(i)
    cache: dict[Blocks, float] = {}
    best: list[tuple[float, Blocks, list[tuple[TrainOption, int]]]] = []
    budget = [evals]

    def score(blocks: Blocks) -> float:
        if blocks in cache:
            return cache[blocks]
        budget[0] -= 1
        val = math.inf
        total = sum(c for _, c in blocks)
        valid = blocks and all(c >= 1 for _, c in blocks) and total <= t.max_stages
        if valid and v > 1:
            valid = total == t.max_stages
        if valid:
            used: dict[str, int] = {}
            for i, c in blocks:
                used[t.options[i].pool] = used.get(t.options[i].pool, 0) + t.options[i].tp * c
            valid = all(u <= gk[k] for k, u in used.items())
        if valid:
            stages = fill_blocks(t, d, [t.options[i] for i, c in blocks for _ in range(c)])
            step = stage_objective(t, d, stages) if stages is not None else None
            if stages is not None and step is not None:
                val = float(step)
                if t.objective == "min_cost":
                    val *= d * sum(o.price for o, _ in stages)
                if not best or val < best[0][0]:
                    best[:] = [(val, blocks, stages)]
        cache[blocks] = val
        return val

    def neighbours(blocks: Blocks) -> list[Blocks]:
        out: list[Blocks] = []
        bl = list(blocks)
        pools_in = {t.options[i].pool for i, _ in bl}
        for a, (i, c) in enumerate(bl):
            o = t.options[i]
            room = gk[o.pool] // o.tp
            for c2 in {c + 1, c - 1, 2 * c, c // 2, room}:
                if 1 <= c2 <= room and c2 != c:
                    out.append(tuple(bl[:a] + [(i, c2)] + bl[a + 1 :]))
            for i2 in by_pool[o.pool]:
                if i2 != i:
                    o2 = t.options[i2]
                    for c2 in {max(1, c * o.tp // o2.tp), gk[o.pool] // o2.tp}:
                        out.append(tuple(bl[:a] + [(i2, c2)] + bl[a + 1 :]))
            if len(bl) > 1:
                rest = bl[:a] + bl[a + 1 :]
                out.append(tuple(rest))
                for b in range(len(bl)):
                    if b != a:
                        out.append(tuple(rest[:b] + [(i, c)] + rest[b:]))
            if v > 1:  # the depth is fixed: move one stage between blocks
                for b, (i2, c2) in enumerate(bl):
                    if b != a and c > 1:
                        moved = list(bl)
                        moved[a], moved[b] = (i, c - 1), (i2, c2 + 1)
                        out.append(tuple(moved))
        for pool, idx in by_pool.items():
            if pool in pools_in:
                continue
            for i in idx:
                room = gk[pool] // t.options[i].tp
                for c in {1, room}:
                    for b in range(len(bl) + 1):
                        out.append(tuple(bl[:b] + [(i, c)] + bl[b:]))
        return out

    def rescale(blocks: list[tuple[int, int]], depth: int) -> Blocks:
        """Scale the stage counts to ``depth`` in all (at least one stage per block)."""
        total = sum(c for _, c in blocks)
        out = [(i, max(1, c * depth // total)) for i, c in blocks]
        while sum(c for _, c in out) > depth and any(c > 1 for _, c in out):
            a = max(range(len(out)), key=lambda a: out[a][1])
            out[a] = (out[a][0], out[a][1] - 1)
        a = 0
        while sum(c for _, c in out) < depth and a <= 4 * depth:
            i, c = out[a % len(out)]
            if t.options[i].tp * (c + 1) <= gk[t.options[i].pool] or v > 1:
                out[a % len(out)] = (i, c + 1)
            a += 1
        return tuple(out)

    most = min(t.max_stages, t.num_layers // v)
    starts: list[Blocks] = []
    for tp in sorted({t.options[i].tp for i in ok}, reverse=True):
        pick = {
            pool: min(idx, key=lambda i: (abs(t.options[i].tp - tp), t.options[i].tp))
            for pool, idx in by_pool.items()
        }
        for order in (1, -1):
            pools = sorted(by_pool, key=lambda k: order * t.options[pick[k]].t_layer)
            blocks = [(pick[k], gk[k] // t.options[pick[k]].tp) for k in pools]
            total = sum(c for _, c in blocks)
            depths = {t.max_stages} if v > 1 else {min(total, most), max(1, min(total, most) // 2)}
            for depth in depths:
                starts.append(rescale(blocks, depth))
    current = min(starts, key=score)
    cur_val = score(current)
    improved = True
    while improved and budget[0] > 0:
        improved = False
        for nb in neighbours(current):
            if budget[0] <= 0:
                break
            val = score(nb)
            if val < cur_val:
                current, cur_val, improved = nb, val, True
                break
    if not best:
        return None
    return best[0][0], best[0][2]
