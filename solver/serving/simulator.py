"""The continuous-batching engine: a discrete-event simulation over engine steps.

One replica runs the scheduler of vLLM V1 (``vllm/v1/core/sched/scheduler.py``), reduced to
what decides latency:

* Every step first schedules the *running* requests: each decoding sequence one token (so
  every running decode advances every step: decode-first), then the partially prefilled
  requests their next prompt chunk, in admission order, within the step's token budget
  ``max_num_batched_tokens`` (chunked prefill);
* then *waiting* requests, first come first served, while token budget is left, fewer than
  ``max_num_seqs`` requests are running and the KV cache has room.  The queue is strict FCFS:
  a head request that does not fit blocks the ones behind it.
* A request's prompt, once fully prefilled, samples its first token at the end of that step
  (TTFT); it then decodes one token per step, attending over ``prompt + k`` tokens in its
  k-th decode step, and finishes after ``output_tokens`` tokens.

KV cache: admission reserves the request's whole ``prompt + output`` tokens, released when it
finishes, so the pool never overflows and **no request is ever preempted** (vLLM allocates
blocks as sequences grow and preempts -- recomputes -- the newest request when the pool runs
out; with a full pool this simulator admits fewer requests instead of preempting).  Not
modelled either: prefix caching, speculative decoding, block granularity of the cache,
engine step overheads beyond the step cost's fixed term.

Speed: the loop runs over *events*, not tokens: a stretch of decode-only steps with the same
running set (until the next request finishes, or the next arrival that could be admitted)
is priced as one vector of step times (contexts grow by one token per sequence per step),
so the Python loop runs a few times per request; per-step bookkeeping is numpy over the
running set.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import SpecError
from .stepcost import StepCost
from .workload import Requests

__all__ = ["ReplicaTrace", "SloStop", "simulate_replica"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class ReplicaTrace:
    """What one replica did.

    Attributes
    ----------
    first_token_s, finish_s
        Per request (in the order of the replica's ``Requests``): when its first token was
        sampled and when its last one was.
    step_s
        The duration of every engine step, in order.
    step_decode
        Decoding sequences in every step (each sampled one token: the inter-token latency of
        that many tokens is that step's duration).
    step_prefill_tokens
        Prompt tokens prefilled in every step.
    """

    first_token_s: FloatArray
    finish_s: FloatArray
    step_s: FloatArray
    step_decode: IntArray
    step_prefill_tokens: IntArray
    stopped: bool = False


@dataclass(frozen=True)
class SloStop:
    """Stop a simulation once a p99 SLO is certain to be missed (the capacity search's
    failing probes then cost a fraction of a full run).

    A request *misses* TTFT once it has waited ``ttft_s`` without a first token (counted
    for requests still queued too: their TTFT can only grow), and misses TPOT when it
    finishes with ``(finish - first) / (output - 1) > tpot_s``.  With numpy's (linear)
    percentile over n values, p99 >= the value at sorted index ``floor(0.99 (n - 1))``, so
    once ``n - floor(0.99 (n - 1))`` requests miss, the p99 exceeds the SLO whatever the rest
    do: :meth:`for_p99` sets the limits so.  The trace of a stopped run is partial
    (``stopped`` True; unfinished requests NaN).
    """

    ttft_s: float
    tpot_s: float
    max_ttft_misses: int
    max_tpot_misses: int

    @staticmethod
    def misses_for_p99(n: int) -> int:
        """Misses among n values that force numpy's p99 above the limit."""
        return n - int(np.floor(0.99 * (n - 1))) if n > 0 else 1

    @classmethod
    def for_p99(cls, requests: Requests, ttft_s: float | None, tpot_s: float | None) -> SloStop:
        """Limits for the p99s of ``requests`` (None: that SLO never stops the run)."""
        multi = int((requests.output_tokens > 1).sum())
        big = len(requests) + 1
        return cls(
            ttft_s=np.inf if ttft_s is None else ttft_s,
            tpot_s=np.inf if tpot_s is None else tpot_s,
            max_ttft_misses=big if ttft_s is None else cls.misses_for_p99(len(requests)),
            max_tpot_misses=big if tpot_s is None or multi == 0 else cls.misses_for_p99(multi),
        )


def _check_limits(
    requests: Requests, max_num_seqs: int, max_num_batched_tokens: int, kv_capacity_tokens: int
) -> None:
    if max_num_seqs < 1:
        raise SpecError(f"max_num_seqs: must be >= 1, got {max_num_seqs}")
    if max_num_batched_tokens < max_num_seqs:
        raise SpecError(
            f"max_num_batched_tokens: must be >= max_num_seqs ({max_num_seqs}), "
            f"got {max_num_batched_tokens}"
        )
    need = requests.prompt_tokens + requests.output_tokens
    bad = np.flatnonzero(need > kv_capacity_tokens)
    if bad.size:
        i = int(bad[0])
        raise SpecError(
            f"requests[{i}]: prompt + output = {int(need[i]):,} tokens exceed the replica's "
            f"KV-cache capacity of {kv_capacity_tokens:,} tokens"
        )


def simulate_replica(
    requests: Requests,
    cost: StepCost,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    kv_capacity_tokens: int,
    stop: SloStop | None = None,
) -> ReplicaTrace:
    """Serve ``requests`` on one replica; see the module docstring for the scheduler.

    Parameters
    ----------
    requests
        Sorted by arrival.
    cost
        Prices each step (:mod:`solver.serving.stepcost`).
    max_num_seqs
        Most requests running (decoding or prefilling) at once.
    max_num_batched_tokens
        Token budget of one step (decode tokens + prefill chunk tokens); >= max_num_seqs.
    kv_capacity_tokens
        KV-cache tokens; every request's prompt + output must fit.
    stop
        Stop early once the p99 SLOs it names are certainly missed (:class:`SloStop`).
    """
    _check_limits(requests, max_num_seqs, max_num_batched_tokens, kv_capacity_tokens)
    n = len(requests)
    arrival: list[float] = requests.arrival_s.tolist()
    prompt: list[int] = requests.prompt_tokens.tolist()
    output: list[int] = requests.output_tokens.tolist()
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    seg_s: list[FloatArray] = []
    seg_decode: list[int] = []
    seg_len: list[int] = []
    seg_prefill: list[int] = []
    # Decoding requests as a heap of (step after which it is done, request, offset).  Steps are
    # numbered 1, 2, ...; a request whose prompt ends in step s0 decodes in every later step,
    # attending over prompt + (step - s0) tokens, and is done after step s0 + output - 1: so
    # the contexts of step `step` sum to ctx_base + decoding * step, no per-request update.
    decoding: list[tuple[int, int, int]] = []  # (done after step, request, prompt - s0)
    ctx_base = 0
    prefilling: list[list[int]] = []  # [request, prompt tokens done], admission order
    kv_used = 0
    nxt = 0
    done = 0
    step = 0
    t = 0.0
    ttft_miss = tpot_miss = 0
    stopped = False
    while done < n:
        if stop is not None:
            queued_late = bisect.bisect_left(arrival, t - stop.ttft_s, lo=nxt) - nxt
            if ttft_miss + queued_late >= stop.max_ttft_misses or tpot_miss >= stop.max_tpot_misses:
                stopped = True
                break
        d = len(decoding)
        if d == 0 and not prefilling and nxt < n and arrival[nxt] > t:
            t = arrival[nxt]  # idle until the next arrival
        budget = max_num_batched_tokens - d
        running = d + len(prefilling)
        chunks: list[tuple[int, int, int]] = []  # (slot in `prefilling`, tokens, context)
        for slot, (rid, got) in enumerate(prefilling):
            if budget <= 0:
                break
            c = min(prompt[rid] - got, budget)
            chunks.append((slot, c, got))
            budget -= c
        while (
            nxt < n
            and arrival[nxt] <= t
            and budget > 0
            and running < max_num_seqs
            and kv_used + prompt[nxt] + output[nxt] <= kv_capacity_tokens
        ):
            kv_used += prompt[nxt] + output[nxt]
            prefilling.append([nxt, 0])
            c = min(prompt[nxt], budget)
            chunks.append((len(prefilling) - 1, c, 0))
            budget -= c
            running += 1
            nxt += 1
        if chunks:
            step += 1
            tok = np.array([c for _, c, _ in chunks], dtype=np.int64)
            ctx = np.array([p for _, _, p in chunks], dtype=np.int64)
            ends = [prefilling[slot][1] + c == prompt[prefilling[slot][0]] for slot, c, _ in chunks]
            dur = cost.step(d, float(ctx_base + d * step) if d else 0.0, tok, ctx, sum(ends))
            t += dur
            seg_s.append(np.array([dur]))
            seg_decode.append(d)
            seg_len.append(1)
            seg_prefill.append(int(tok.sum()))
            for (slot, c, _), end in zip(chunks, ends, strict=True):
                entry = prefilling[slot]
                entry[1] += c
                if end:
                    rid = entry[0]
                    first[rid] = t
                    if stop is not None and t - arrival[rid] > stop.ttft_s:
                        ttft_miss += 1
                    if output[rid] == 1:
                        finish[rid] = t
                        kv_used -= prompt[rid] + output[rid]
                        done += 1
                    else:
                        heapq.heappush(decoding, (step + output[rid] - 1, rid, prompt[rid] - step))
                        ctx_base += prompt[rid] - step
            if any(ends):
                prefilling = [e for e in prefilling if e[1] < prompt[e[0]]]
        elif d:
            k = decoding[0][0] - step
            durs = cost.decode_steps(
                d, ctx_base + d * np.arange(step + 1, step + k + 1, dtype=np.float64)
            )
            if (
                nxt < n
                and running < max_num_seqs
                and kv_used + prompt[nxt] + output[nxt] <= kv_capacity_tokens
            ):
                # The next arrival could be admitted: stop after the step it arrives during.
                ends_at = t + np.cumsum(durs)
                j = int(np.searchsorted(ends_at, arrival[nxt], side="left"))
                if j + 1 < k:
                    k = j + 1
                    durs = durs[:k]
            t += float(durs.sum())
            step += k
            seg_s.append(durs)
            seg_decode.append(d)
            seg_len.append(k)
            seg_prefill.append(0)
        else:  # pragma: no cover - _check_limits makes every head request admissible
            raise RuntimeError("serving simulator: no progress possible")
        while decoding and decoding[0][0] == step:
            _, rid, offset = heapq.heappop(decoding)
            finish[rid] = t
            if stop is not None and t - first[rid] > stop.tpot_s * (output[rid] - 1):
                tpot_miss += 1
            kv_used -= prompt[rid] + output[rid]
            ctx_base -= offset
            done += 1
    lens = np.asarray(seg_len, dtype=np.int64)
    return ReplicaTrace(
        first_token_s=first,
        finish_s=finish,
        step_s=np.concatenate(seg_s) if seg_s else np.zeros(0),
        step_decode=np.repeat(np.asarray(seg_decode, dtype=np.int64), lens),
        step_prefill_tokens=np.repeat(np.asarray(seg_prefill, dtype=np.int64), lens),
        stopped=stopped,
    )
