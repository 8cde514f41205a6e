"""How many requests/s one replica sustains under p99 SLOs, found by simulation.

The serving planner (:mod:`solver.cpsat.plan_serving`) needs, for every candidate replica
(pool, TP, PP, ``max_num_seqs``), the highest Poisson arrival rate at which that replica
alone still meets the p99 TTFT and p99 TPOT SLOs.  There is no closed form under continuous
batching (queueing, chunked prefill stretching the decode steps of running requests, a full
KV cache holding requests back), so :func:`search_capacity` measures it with the simulator:

* **Requests**: ``requests`` (default :data:`SEARCH_REQUESTS`) requests with lengths drawn
  from the given distributions and Poisson arrivals from one fixed seed.  The arrival gaps
  are drawn once at rate 1 and divided by the probed rate, so every probe replays the *same*
  requests compressed in time: a higher rate never sees a kinder sample.
* **A probe** at rate r simulates those requests on the replica and meets the SLOs when
  ``p99 TTFT <= ttft_slo_ms`` and ``p99 TPOT <= tpot_slo_ms`` (over all requests, as
  vLLM's ``benchmark_serving`` reports percentiles).
* **Search**: probe a first guess (:func:`rate_guess`); double it while it meets the SLOs
  (never above :func:`saturated_rate`, the throughput with every request queued at once:
  a replica meeting the SLOs there is *saturated*, its capacity that throughput), else
  probe ``LOW_LOAD_FRACTION`` of it (a replica that fails there cannot meet the SLO at
  any load the planner would use it for: capacity 0, with the probe's numbers as the
  reason); then bisect between the highest rate that met the SLOs and the lowest that did
  not until they are within ``rel_tol`` (default :data:`REL_TOL`) of each other.

The SLOs apply at ``slo_percentile`` (default 99: p99, as issue 16 states them; a workload's
``slo_percentile`` field changes it); the probes' ``ttft_p99_ms`` / ``tpot_p99_ms`` then hold
the values at that percentile.  The replica's engine runs its KV-cache policy
(``Replica.kv_policy``: vLLM's preemption by default, :mod:`solver.serving.simulator`).

The reported ``capacity_rps`` is the highest rate *simulated* that met the SLOs, so it is a
lower bound of the boundary on this request sample, and ``upper_rps`` (the lowest rate that
failed) an upper bound.  Bisection assumes that meeting the SLOs is monotone in the rate
(more load never lowers a p99: not proven; on 5 replica shapes -- Llama-3-70B on H100 TP8
and TP4 and A100 TP8 at ISL 2048 / OSL 256, tiny-llama on L40S and H100 with fixed and
lognormal lengths -- 60 rates each, geometrically spaced, changed from meeting to missing
exactly once); the planner's verification of the whole fleet catches a violation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import SpecError
from .api import Replica, check_percentile
from .simulator import SloStop
from .stepcost import StepCost
from .workload import Lengths, Requests, generate_requests

__all__ = [
    "LOW_LOAD_FRACTION",
    "REL_TOL",
    "SEARCH_REQUESTS",
    "CapacitySearch",
    "Probe",
    "meets_slos",
    "rate_guess",
    "saturated_rate",
    "search_capacity",
]

#: Requests per probe: the default ``--num-prompts`` of vLLM's serving benchmark
#: (vllm-project/vllm ``benchmarks/benchmark_serving.py`` at commit 0049e29c: 1000), so a
#: replica's capacity means what a ``benchmark_serving`` run at that rate would report.
#: The p99 of 1000 requests is decided by its 10 slowest requests.
SEARCH_REQUESTS = 1000
#: Bisection stops when (lowest failing rate - highest passing rate) <= REL_TOL x the
#: lowest failing rate: a capacity is known to within 2%.
REL_TOL = 0.02
#: When the first guess fails, the search probes this fraction of it before bisecting; a
#: replica failing there is given capacity 0 (the SLO is out of its reach at any useful load).
LOW_LOAD_FRACTION = 1.0 / 64.0
#: Most doublings of the guess while it keeps meeting the SLOs (2^20 x the guess).
MAX_DOUBLINGS = 20
#: After this many successful steps up, the growth is capped at :func:`saturated_rate`
#: (one more simulation, of the whole sample queued at once: not worth it when the guess
#: was close, as it usually is).
CEILING_AFTER = 2


class Probe(BaseModel):
    """One simulation of the search."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    rate_rps: float = Field(description="Poisson arrival rate simulated, requests/s.")
    ttft_p99_ms: float = Field(description="Time to first token at the SLO percentile, ms.")
    tpot_p99_ms: float = Field(
        description="Time per output token at the SLO percentile, ms (NaN: none)."
    )
    percentile: float = Field(default=99.0, description="The SLO percentile (99: p99).")
    meets: bool = Field(description="Whether both p99s met their SLOs.")
    stopped: bool = Field(
        default=False, description="Stopped once a p99 was certainly missed (p99s NaN)."
    )


class CapacitySearch(BaseModel):
    """What :func:`search_capacity` found for one replica."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    capacity_rps: float = Field(description="Highest rate simulated that met the SLOs (0: none).")
    upper_rps: float | None = Field(
        default=None, description="Lowest rate simulated that failed them (None: none failed)."
    )
    guess_rps: float = Field(description="The first rate probed (rate_guess).")
    complete: bool = Field(
        default=True, description="False when the time budget ended the bisection early."
    )
    reason: str | None = Field(default=None, description="Why the capacity is 0.")
    saturated: bool = Field(
        default=False,
        description="The SLOs held up to the replica's saturated throughput "
        "(saturated_rate): the capacity is that throughput, not an SLO boundary.",
    )
    probes: list[Probe] = Field(default_factory=list, description="Every probe, in order.")


def meets_slos(
    ttft_p99_ms: float, tpot_p99_ms: float, ttft_slo_ms: float | None, tpot_slo_ms: float | None
) -> bool:
    """Both p99s within their SLOs (an absent SLO, or a NaN TPOT of one-token outputs,
    passes)."""
    ok = ttft_slo_ms is None or ttft_p99_ms <= ttft_slo_ms
    if tpot_slo_ms is not None and not math.isnan(tpot_p99_ms):
        ok = ok and tpot_p99_ms <= tpot_slo_ms
    return bool(ok)


def rate_guess(
    cost: StepCost,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    kv_capacity: int,
    prompt_tokens: float,
    output_tokens: float,
) -> float:
    """A first rate to probe (requests/s): the throughput of a replica whose steps either
    prefill one mean prompt or decode a full batch, never both.

    Batch ``B = min(max_num_seqs, kv_capacity // (prompt + output))``; a request costs its
    prompt's prefill steps plus ``(output - 1) / B`` decode steps at batch B and mean
    context.  Only a starting point: mixed steps share the weight read (faster) and the
    SLOs bind before saturation (slower); the search brackets from it.
    """
    p = max(1, round(prompt_tokens))
    o = max(1, round(output_tokens))
    b = max(1, min(max_num_seqs, kv_capacity // (p + o)))
    ctx = np.array([b * (p + o / 2.0)])
    t_dec = float(cost.decode_steps(b, ctx)[0])
    t_pre, done = 0.0, 0
    while done < p:
        c = min(p - done, max_num_batched_tokens)
        t_pre += cost.step(
            0,
            0.0,
            np.array([c], dtype=np.int64),
            np.array([done], dtype=np.int64),
            int(done + c == p),
        )
        done += c
    per_request = t_pre + (o - 1) * t_dec / b
    return 1.0 / per_request if per_request > 0 else 1.0


def saturated_rate(replica: Replica, unit: Requests) -> float:
    """The replica's throughput on ``unit`` with every request present at t = 0 (requests
    / makespan): the engine then runs full batches throughout, so no arrival rate above it
    is sustained (the queue would grow without bound).  Caps the capacity search when the
    SLOs are loose enough to hold at any rate the sample can show."""
    reqs = Requests(np.zeros(len(unit)), unit.prompt_tokens, unit.output_tokens)
    return len(unit) / float(np.nanmax(replica.serve(reqs).finish_s))


def _probe(
    replica: Replica,
    unit: Requests,
    rate: float,
    ttft_slo_ms: float | None,
    tpot_slo_ms: float | None,
    *,
    early: bool = True,
    percentile: float = 99.0,
) -> Probe:
    """Simulate ``unit`` at ``rate`` on ``replica``; with ``early`` stop once a percentile
    is certainly missed (:class:`~solver.serving.simulator.SloStop`; its values are then NaN)."""
    reqs = Requests(unit.arrival_s / rate, unit.prompt_tokens, unit.output_tokens)
    stop = None
    if early:
        stop = SloStop.for_percentile(
            reqs,
            None if ttft_slo_ms is None else ttft_slo_ms / 1e3,
            None if tpot_slo_ms is None else tpot_slo_ms / 1e3,
            percentile,
        )
    tr = replica.serve(reqs, stop)
    if tr.stopped:
        return Probe(
            rate_rps=rate,
            ttft_p99_ms=math.nan,
            tpot_p99_ms=math.nan,
            percentile=percentile,
            meets=False,
            stopped=True,
        )
    # The same definitions and percentiles as solver.serving.metrics.
    ttft = float(np.percentile(tr.first_token_s - reqs.arrival_s, percentile)) * 1e3
    multi = reqs.output_tokens > 1
    tpot = math.nan
    if multi.any():
        per = (tr.finish_s[multi] - tr.first_token_s[multi]) / (reqs.output_tokens[multi] - 1)
        tpot = float(np.percentile(per, percentile)) * 1e3
    return Probe(
        rate_rps=rate,
        ttft_p99_ms=ttft,
        tpot_p99_ms=tpot,
        percentile=percentile,
        meets=meets_slos(ttft, tpot, ttft_slo_ms, tpot_slo_ms),
    )


def _slo_text(ttft_slo_ms: float | None, tpot_slo_ms: float | None, q: float = 99.0) -> str:
    parts = []
    if ttft_slo_ms is not None:
        parts.append(f"p{q:g} TTFT <= {ttft_slo_ms:g} ms")
    if tpot_slo_ms is not None:
        parts.append(f"p{q:g} TPOT <= {tpot_slo_ms:g} ms")
    return " and ".join(parts)


def search_capacity(
    replica: Replica,
    prompt: Lengths,
    output: Lengths,
    *,
    ttft_slo_ms: float | None,
    tpot_slo_ms: float | None,
    guess_rps: float | None = None,
    requests: int = SEARCH_REQUESTS,
    seed: int = 0,
    rel_tol: float = REL_TOL,
    expired: Callable[[], bool] | None = None,
    hint: tuple[float, float | None] | None = None,
    slo_percentile: float = 99.0,
) -> CapacitySearch:
    """The highest Poisson rate ``replica`` sustains under the p99 SLOs (module docstring).

    Parameters
    ----------
    replica
        The engine (step cost and scheduler limits).
    prompt, output
        Length distributions of the requests.
    ttft_slo_ms, tpot_slo_ms
        p99 SLOs; at least one.
    guess_rps
        First rate to probe; default :func:`rate_guess` at the mean sampled lengths.
    requests, seed
        Requests per probe and their seed.
    rel_tol
        Relative width of the final bracket (0 < rel_tol < 1).
    expired
        Called before every probe after the first; True stops the search (``complete``
        False; the capacity found so far is still a rate that met the SLOs).
    hint
        A neighbouring shape's ``(capacity_rps, upper_rps)``: the search starts at its
        capacity and steps first by its bracket's width (``4 rel_tol`` without an upper),
        doubling each step (galloping), instead of doubling the guess or jumping to
        ``LOW_LOAD_FRACTION`` of it; two probes settle a shape whose boundary lies in the
        same bracket.
    slo_percentile
        The percentile (0, 100] the SLOs apply to (default 99).
    """
    if ttft_slo_ms is None and tpot_slo_ms is None:
        raise SpecError("ttft_slo_ms: give a TTFT or a TPOT SLO (or both), got neither")
    if not (isinstance(rel_tol, (int, float)) and 0 < rel_tol < 1):
        raise SpecError(f"rel_tol: must be in (0, 1), got {rel_tol!r}")
    q = check_percentile(slo_percentile)
    unit = generate_requests(requests, 1.0, prompt, output, seed=seed)
    need = unit.prompt_tokens + unit.output_tokens
    whole = (replica.kv_capacity_tokens // replica.block_size) * replica.block_size
    if int(need.max()) > whole:
        return CapacitySearch(
            capacity_rps=0.0,
            guess_rps=0.0,
            reason=(
                f"KV cache: {whole:,} tokens per replica < the longest "
                f"request's prompt + output {int(need.max()):,}"
            ),
        )
    warm = hint is not None and hint[0] > 0
    if warm and hint is not None:
        guess_rps = hint[0]
    if guess_rps is None:
        guess_rps = rate_guess(
            replica.cost,
            replica.max_num_seqs,
            replica.max_num_batched_tokens,
            replica.kv_capacity_tokens,
            float(unit.prompt_tokens.mean()),
            float(unit.output_tokens.mean()),
        )
    probes: list[Probe] = []

    def probe(rate: float, early: bool = True) -> Probe:
        pr = _probe(replica, unit, rate, ttft_slo_ms, tpot_slo_ms, early=early, percentile=q)
        probes.append(pr)
        return pr

    def stop() -> bool:
        return expired is not None and expired()

    def too_slow(floor: float, low: Probe) -> CapacitySearch:
        return CapacitySearch(
            capacity_rps=0.0,
            upper_rps=floor,
            guess_rps=guess_rps,
            probes=probes,
            reason=(
                f"SLO: even at light load ({floor:.3g} req/s) p{q:g} TTFT "
                f"{low.ttft_p99_ms:,.0f} ms, p{q:g} TPOT {low.tpot_p99_ms:,.1f} ms; needs "
                f"{_slo_text(ttft_slo_ms, tpot_slo_ms, q)}"
            ),
        )

    floor = guess_rps * LOW_LOAD_FRACTION
    lo, hi = 0.0, None
    step = 1.0
    if warm and hint is not None:
        step = max(hint[1] / hint[0] - 1.0, rel_tol) if hint[1] else 4.0 * rel_tol
    else:
        # Cold: first the low-load probe (requests mostly alone), which settles a shape that
        # cannot meet the SLOs at all in one run.
        low = probe(floor, early=False)
        if not low.meets:
            return too_slow(floor, low)
        lo = floor
    saturated = False
    if probe(guess_rps).meets:
        lo = guess_rps
        ceiling = math.inf
        for k in range(MAX_DOUBLINGS):
            if stop():
                break
            if k == CEILING_AFTER:  # the guess was far too low: bound the growth
                ceiling = saturated_rate(replica, unit)
                if lo >= ceiling:  # met above what the sample can show: cap it
                    lo, saturated = ceiling, True
                    break
            r = min(lo * (1.0 + step), ceiling)
            step *= 2.0 if warm else 1.0
            if r <= lo:
                saturated = True
                break
            if probe(r).meets:
                lo = r
            else:
                hi = r
                break
    else:
        hi = guess_rps
        # Halve a cold guess (step 1, fixed) down to the low-load rate; gallop down from a
        # warm one (its step doubling each time).
        while lo < hi / (1.0 + step) and not stop():
            r = hi / (1.0 + step)
            step *= 2.0 if warm else 1.0
            if r <= floor:
                break
            if probe(r).meets:
                lo = r
                break
            hi = r
        if lo == 0.0:
            low = probe(floor, early=False)
            if not low.meets:
                return too_slow(floor, low)
            lo = floor
    complete = True
    while hi is not None and hi - lo > rel_tol * hi:
        if stop():
            complete = False
            break
        # Geometric steps while the bracket spans more than a factor 4, then halving.
        mid = math.sqrt(lo * hi) if hi > 4.0 * lo else 0.5 * (lo + hi)
        if probe(mid).meets:
            lo = mid
        else:
            hi = mid
    if hi is None and not saturated:
        complete = False
    return CapacitySearch(
        capacity_rps=lo,
        upper_rps=hi,
        guess_rps=guess_rps,
        complete=complete,
        probes=probes,
        saturated=saturated,
    )
