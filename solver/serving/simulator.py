"""The continuous-batching engine: a discrete-event simulation over engine steps.

One replica runs the scheduler of vLLM V1 (``vllm/v1/core/sched/scheduler.py``,
vllm-project/vllm at commit 00024d31), reduced to what decides latency:

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

Prefill-only steps (``mixed_batches`` False; the engine profile's ``mixed_batches``, read off
the step cost): the engines that schedule prefill first -- vLLM's V0 scheduler without chunked
prefill (``Scheduler._schedule_default``, vllm-project/vllm v0.6.0 ``vllm/core/scheduler.py``:
"Don't schedule decodes if prefills are scheduled") and SGLang with its default
``enable_mixed_chunk = False`` (0.3.0 ``ModelTpServer.forward_step``: a new prefill batch runs
alone, the running batch decodes only when none can be formed) -- run a step with prefill
chunks and *no* decode: its whole token budget goes to the chunks, the running decodes wait
(their context and KV blocks do not grow, they sample no token) and resume in the next
decode step, whose inter-token latency then spans the prefill steps in between.  Admission,
chunking and preemption are the rules above (vLLM V0 prefills a prompt whole, not in
chunks: at the ShareGPT lengths of the published runs, <= 1,024 tokens against a 4,096-token
budget, the two agree).

KV cache (``kv_policy``), in blocks of ``block_size`` tokens (vLLM's 16,
:data:`~solver.costmodel.constants.KV_BLOCK_SIZE_TOKENS`); a sequence holds
``ceil(tokens / block_size)`` blocks:

* ``preempt`` (vLLM, the default): blocks are allocated as a sequence grows -- a prefill chunk
  its tokens, a decode step one more token.  Admission needs blocks for the first chunk only.
  When the running requests' next step does not fit the pool, the scheduler **preempts** the
  most recently admitted running request (vLLM V1's FCFS policy: ``self.running.pop()`` in
  the running loop of ``Scheduler.schedule`` when ``kv_cache_manager.allocate_slots`` returns
  None), frees all its blocks and puts it at the *front* of the waiting queue
  (``_preempt_request``: ``num_computed_tokens = 0``, ``waiting.prepend_request``), and
  repeats until the rest fit; a step that preempted admits no waiting request (``if not
  preempted_reqs``).  A preempted request is later *recomputed*: re-admitted, it prefills its
  prompt plus the tokens it had generated (chunked as any prompt) and then continues
  decoding; its first-token time is kept.  Preemptions and the discarded KV tokens are
  counted (``num_preemptions``, ``recomputed_tokens``).
* ``reserve`` (TensorRT-LLM's default capacity scheduler, ``GUARANTEED_NO_EVICT``:
  ``SchedulerConfig.capacity_scheduler_policy`` in ``tensorrt_llm/llmapi/llm_args.py``):
  admission reserves the blocks of the request's whole ``prompt + output``, released when
  it finishes, so the pool never overflows and no request is ever preempted; a full pool
  makes requests wait instead.

Multi-step scheduling (``num_scheduler_steps`` k > 1, vLLM 0.5.5-0.7's
``--num-scheduler-steps``, vLLM PR #7000): a batch of decodes runs k steps with no scheduling
in between (a *run*), and its outputs reach the clients after the k-th step, so a client
receives k tokens at once and a request arriving mid-run waits for the run's end.  A batch
with prefills is not multi-stepped: vLLM 0.6.0's ``Scheduler._get_num_lookahead_slots``
returns 0 for a prefill and ``LLMEngine.step`` caches the schedule for the next steps only
when lookahead slots > 0 (vllm-project/vllm v0.6.0, ``vllm/core/scheduler.py``,
``vllm/engine/llm_engine.py``; issue #7528), so a step with prefill chunks is one step that
returns its first tokens at once (chunked prefill with multi-step came after 0.6.0, PR #8378).
A run ends after k steps, when its last decode finishes, or when the next step's blocks do
not fit the pool (the scheduler then runs and preempts); decodes that finish inside a run
leave the batch at their last token and are delivered at the run's end.  Inter-token
latency is then one sample per delivered chunk, as vLLM's ``benchmark_serving`` measures it
(one gap per streamed chunk): the time since the request's previous chunk (the run, plus any
prefill steps between runs, during which vLLM 0.6.0 without chunked prefill does not decode:
their decode token is counted with the next chunk).  k = 1 is the scheduler above exactly.

Not modelled: prefix caching (a recomputed prompt finds no cached blocks), swapping to CPU,
speculative decoding, engine step overheads beyond the step cost's fixed term.

Speed: the loop runs over *events*, not tokens: a stretch of decode-only steps with the same
running set (until the next request finishes, the next arrival that could be admitted, or
the step whose blocks no longer fit) is priced as one vector of step times (contexts grow by
one token per sequence per step), so the Python loop runs a few times per request; the
decoding sequences' block count at any step is O(block_size) from a histogram of their
context offsets modulo the block size.

:class:`Engine` is the resumable form (requests added in arrival order, the clock advanced
to a horizon), which join-shortest-queue dispatch drives replica by replica
(:mod:`solver.serving.api`); :func:`simulate_replica` runs one engine to completion.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..costmodel.constants import KV_BLOCK_SIZE_TOKENS
from ..errors import SpecError
from ..specs import MAX_SCHEDULER_STEPS
from .stepcost import StepCost
from .workload import Requests

__all__ = [
    "KV_POLICIES",
    "Engine",
    "ReplicaTrace",
    "SloStop",
    "check_fit",
    "check_scheduler_steps",
    "simulate_replica",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: KV-cache policies of the engine (module docstring).
KV_POLICIES = ("preempt", "reserve")


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
        Prompt tokens prefilled in every step (recomputation of preempted requests included).
    num_preemptions
        Times a running request was preempted (``kv_policy="preempt"``).
    recomputed_tokens
        KV tokens the preemptions discarded (prefilled again on re-admission).
    itl_s, itl_weight
        Inter-token latency samples and how many tokens (k = 1) or chunks (k > 1) each
        counts for: with one step per schedule every step (``step_s``, ``step_decode``);
        with multi-step scheduling one sample per run end and per decode finished in a
        prefill step; with prefill-only steps (k = 1) every decode step, the first after
        prefill steps spanning them (module docstring).  None: ``step_s`` / ``step_decode``.
    """

    first_token_s: FloatArray
    finish_s: FloatArray
    step_s: FloatArray
    step_decode: IntArray
    step_prefill_tokens: IntArray
    stopped: bool = False
    num_preemptions: int = 0
    recomputed_tokens: int = 0
    itl_s: FloatArray | None = None
    itl_weight: IntArray | None = None


@dataclass(frozen=True)
class SloStop:
    """Stop a simulation once a percentile SLO is certain to be missed (the capacity search's
    failing probes then cost a fraction of a full run).

    A request *misses* TTFT once it has waited ``ttft_s`` without a first token (counted
    for requests still queued too: their TTFT can only grow), and misses TPOT when it
    finishes with ``(finish - first) / (output - 1) > tpot_s``.  With numpy's (linear)
    percentile q over n values, the q-th percentile >= the value at sorted index
    ``floor(q/100 (n - 1))``, so once ``n - floor(q/100 (n - 1))`` requests miss, the
    percentile exceeds the SLO whatever the rest do: :meth:`for_percentile` sets the limits
    so.  The trace of a stopped run is partial (``stopped`` True; unfinished requests NaN).
    """

    ttft_s: float
    tpot_s: float
    max_ttft_misses: int
    max_tpot_misses: int

    @staticmethod
    def misses_for(n: int, percentile: float = 99.0) -> int:
        """Misses among n values that force numpy's ``percentile`` above the limit (the
        virtual index ``(q / 100) (n - 1)`` as numpy computes it)."""
        return n - int(np.floor((percentile / 100.0) * (n - 1))) if n > 0 else 1

    @staticmethod
    def misses_for_p99(n: int) -> int:
        """Misses among n values that force numpy's p99 above the limit."""
        return SloStop.misses_for(n, 99.0)

    @classmethod
    def for_percentile(
        cls,
        requests: Requests,
        ttft_s: float | None,
        tpot_s: float | None,
        percentile: float = 99.0,
    ) -> SloStop:
        """Limits for the ``percentile`` of ``requests`` (None: that SLO never stops the run)."""
        multi = int((requests.output_tokens > 1).sum())
        big = len(requests) + 1
        return cls(
            ttft_s=np.inf if ttft_s is None else ttft_s,
            tpot_s=np.inf if tpot_s is None else tpot_s,
            max_ttft_misses=big if ttft_s is None else cls.misses_for(len(requests), percentile),
            max_tpot_misses=(
                big if tpot_s is None or multi == 0 else cls.misses_for(multi, percentile)
            ),
        )

    @classmethod
    def for_p99(cls, requests: Requests, ttft_s: float | None, tpot_s: float | None) -> SloStop:
        """Limits for the p99s of ``requests`` (None: that SLO never stops the run)."""
        return cls.for_percentile(requests, ttft_s, tpot_s, 99.0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_engine_limits(
    max_num_seqs: int,
    max_num_batched_tokens: int,
    kv_capacity_tokens: int,
    block_size: int,
    kv_policy: str,
) -> None:
    """SpecError naming the first bad scheduler limit."""
    if max_num_seqs < 1:
        raise SpecError(f"max_num_seqs: must be >= 1, got {max_num_seqs}")
    if max_num_batched_tokens < max_num_seqs:
        raise SpecError(
            f"max_num_batched_tokens: must be >= max_num_seqs ({max_num_seqs}), "
            f"got {max_num_batched_tokens}"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise SpecError(f"block_size: must be an integer >= 1, got {block_size!r}")
    if kv_policy not in KV_POLICIES:
        raise SpecError(f"kv_policy: expected one of {', '.join(KV_POLICIES)}, got {kv_policy!r}")
    if kv_capacity_tokens < block_size:
        raise SpecError(
            f"kv_capacity_tokens: must hold at least one block of {block_size} tokens, "
            f"got {kv_capacity_tokens}"
        )


def check_scheduler_steps(value: object, name: str = "num_scheduler_steps") -> int:
    """``value`` as a number of scheduler steps per schedule (an integer in
    1..:data:`~solver.specs.MAX_SCHEDULER_STEPS`), else SpecError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 1 <= value <= MAX_SCHEDULER_STEPS
    ):
        raise SpecError(f"{name}: must be an integer in 1..{MAX_SCHEDULER_STEPS}, got {value!r}")
    return int(value)


def check_fit(
    prompt: IntArray, output: IntArray, kv_capacity_tokens: int, block_size: int, offset: int = 0
) -> None:
    """Every request must fit the pool alone (else it could never finish): its whole
    ``prompt + output`` in whole blocks."""
    need = prompt + output
    cap = (kv_capacity_tokens // block_size) * block_size
    bad = np.flatnonzero(need > cap)
    if bad.size:
        i = int(bad[0])
        raise SpecError(
            f"requests[{i + offset}]: prompt + output = {int(need[i]):,} tokens exceed the "
            f"replica's KV-cache capacity of {cap:,} tokens"
        )


class Engine:
    """One replica's scheduler, resumable: :meth:`add` requests in arrival order, :meth:`run`
    the clock up to a horizon (steps that start before it), then add more.

    Parameters
    ----------
    cost
        Prices each step.
    max_num_seqs, max_num_batched_tokens
        Scheduler limits (see :func:`simulate_replica`).
    kv_capacity_tokens, block_size, kv_policy
        The paged KV cache: ``kv_capacity_tokens // block_size`` blocks; ``preempt`` or
        ``reserve`` (module docstring).
    stop
        Early stop for the capacity search (:class:`SloStop`).
    num_scheduler_steps
        Decode steps per schedule (vLLM multi-step scheduling, module docstring); 1: every
        step is scheduled.
    mixed_batches
        Whether decodes ride in the steps that prefill (module docstring); None: the step
        cost's ``mixed_batches`` attribute (:class:`~solver.serving.stepcost.RooflineStepCost`
        carries the engine profile's), True when it has none.
    """

    def __init__(
        self,
        cost: StepCost,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        kv_capacity_tokens: int,
        block_size: int = KV_BLOCK_SIZE_TOKENS,
        kv_policy: str = "preempt",
        stop: SloStop | None = None,
        num_scheduler_steps: int = 1,
        mixed_batches: bool | None = None,
    ) -> None:
        check_engine_limits(
            max_num_seqs, max_num_batched_tokens, kv_capacity_tokens, block_size, kv_policy
        )
        self.k_steps = check_scheduler_steps(num_scheduler_steps)
        self.cost = cost
        self.mixed = (
            bool(getattr(cost, "mixed_batches", True)) if mixed_batches is None else mixed_batches
        )
        # Inter-token latency as explicit samples (multi-step runs, or decodes paused by
        # prefill-only steps) instead of the step durations.
        self.explicit_itl = self.k_steps > 1 or not self.mixed
        self.max_seqs = max_num_seqs
        self.max_tokens = max_num_batched_tokens
        self.bs = block_size
        self.cap_blocks = kv_capacity_tokens // block_size
        self.kv_tokens = kv_capacity_tokens
        self.preempt = kv_policy == "preempt"
        self.stop = stop
        # Per request (local index, arrival order).
        self.arrival: list[float] = []
        self.prompt: list[int] = []
        self.output: list[int] = []
        self.first: list[float] = []
        self.finish: list[float] = []
        self.pre_len: list[int] = []  # tokens the current admission prefills
        self.rem_out: list[int] = []  # output tokens left when that prefill ends
        self.adm: list[int] = []  # admission sequence number (newest = largest)
        self.s0: list[int] = []  # decode step (decode clock) its current prefill ended at
        self.g0: list[int] = []  # engine step (all kinds) its current prefill ended at
        self.finished_at: list[float] = []  # completion times, in time order
        # Scheduler state.
        self.t = 0.0
        self.step = 0  # decode clock: decode steps so far (every step when mixed)
        self.gstep = 0  # engine steps so far, prefill-only ones included
        self.nxt = 0
        self.done = 0
        self.admitted = 0
        self.resumed: deque[int] = deque()  # preempted requests, front of the waiting queue
        # Decoding: heap of (done after step, request, offset); contexts at step s sum to
        # ctx_base + d s.  Blocks at step s: qsum + d (s // bs) + #(m_r >= bs - s % bs),
        # with offset + bs - 1 = q_r bs + m_r (hist counts the m_r).
        self.decoding: list[tuple[int, int, int]] = []
        self.ctx_base = 0
        self.qsum = 0
        self.hist = [0] * block_size
        self.prefilling: list[list[int]] = []  # [request, tokens done], admission order
        self.pre_blocks = 0  # blocks the prefilling requests hold
        self.reserved = 0  # reserve policy: blocks reserved by running requests
        self.seg_s: list[FloatArray] = []
        self.seg_decode: list[int] = []
        self.seg_len: list[int] = []
        self.seg_prefill: list[int] = []
        self.num_preemptions = 0
        self.recomputed_tokens = 0
        self.ttft_miss = 0
        self.tpot_miss = 0
        self.stopped = False
        # Multi-step (k_steps > 1): the decode run in progress and the output deliveries.
        self.in_run = False
        self.run_left = 0  # steps the run has left
        self.run_seqs = 0  # decoding sequences at the run's start
        self.run_end_g = -1  # engine step of the last run end (k = 1: last decode step)
        self.run_end_t = 0.0  # and its time (the decodes of then got their chunk)
        self.fresh_t: dict[int, float] = {}  # prefill step since then -> its end time
        self.fresh_n: dict[int, int] = {}  # -> sequences it started decoding, still decoding
        self.pending: list[int] = []  # finished inside the run, delivered at its end
        self.itl_s: list[float] = []
        self.itl_w: list[int] = []
        self.itl_arr_s: list[FloatArray] = []  # k = 1, not mixed: decode steps in bulk
        self.itl_arr_w: list[int] = []  # (sequences of each bulk)

    # ---- requests ---------------------------------------------------------------------
    def add(self, arrival: float, prompt: int, output: int) -> None:
        """Queue one request (arrivals must not decrease; the request must fit the pool)."""
        self.arrival.append(arrival)
        self.prompt.append(prompt)
        self.output.append(output)
        self.first.append(math.nan)
        self.finish.append(math.nan)
        self.pre_len.append(prompt)
        self.rem_out.append(output)
        self.adm.append(-1)
        self.s0.append(0)
        self.g0.append(0)

    def add_all(self, requests: Requests) -> None:
        """Queue every request of ``requests`` (checked to fit the pool)."""
        check_fit(requests.prompt_tokens, requests.output_tokens, self.kv_tokens, self.bs)
        a = requests.arrival_s.tolist()
        p = requests.prompt_tokens.tolist()
        o = requests.output_tokens.tolist()
        n0 = len(self.arrival)
        self.arrival += a
        self.prompt += p
        self.output += o
        self.first += [math.nan] * len(a)
        self.finish += [math.nan] * len(a)
        self.pre_len += p
        self.rem_out += o
        self.adm += [-1] * len(a)
        self.s0 += [0] * len(a)
        self.g0 += [0] * len(a)
        assert len(self.arrival) == n0 + len(a)

    def outstanding(self, t: float) -> int:
        """Requests added and not finished by time ``t`` (join-shortest-queue's measure)."""
        return len(self.arrival) - bisect.bisect_right(self.finished_at, t)

    # ---- KV accounting ------------------------------------------------------------------
    def _dec_blocks(self, s: int) -> int:
        """Blocks the decoding sequences hold after step ``s``."""
        bs = self.bs
        return self.qsum + len(self.decoding) * (s // bs) + sum(self.hist[bs - s % bs :])

    def _dec_blocks_vec(self, steps: IntArray) -> IntArray:
        bs = self.bs
        h = np.asarray(self.hist, dtype=np.int64)
        ge = np.zeros(bs + 1, dtype=np.int64)
        ge[:bs] = np.cumsum(h[::-1])[::-1]
        out: IntArray = self.qsum + len(self.decoding) * (steps // bs) + ge[bs - steps % bs]
        return out

    def _hist_add(self, offset: int, sign: int) -> None:
        q, m = divmod(offset + self.bs - 1, self.bs)
        self.qsum += sign * q
        self.hist[m] += sign

    def _reserve_blocks(self, rid: int) -> int:
        return _ceil_div(self.prompt[rid] + self.output[rid], self.bs)

    def _admissible(self, rid: int, budget: int, need: int) -> bool:
        """Whether waiting request ``rid`` gets the blocks of its first chunk (preempt) or of
        its whole request (reserve), on top of ``need`` blocks already taken this step."""
        if self.preempt:
            c = min(self.pre_len[rid], budget)
            return need + _ceil_div(c, self.bs) <= self.cap_blocks
        return self.reserved + self._reserve_blocks(rid) <= self.cap_blocks

    # ---- preemption ---------------------------------------------------------------------
    def _preempt_newest(self) -> None:
        """Preempt the most recently admitted running request (vLLM V1, FCFS policy)."""
        adm = self.adm
        dec_best = max(self.decoding, key=lambda e: adm[e[1]]) if self.decoding else None
        pre_best = self.prefilling[-1] if self.prefilling else None
        if pre_best is not None and (dec_best is None or adm[pre_best[0]] > adm[dec_best[1]]):
            rid, got = self.prefilling.pop()
            self.pre_blocks -= _ceil_div(got, self.bs)
            self.recomputed_tokens += got
            # Its prefill starts over (output already generated stays in pre_len).
        else:
            assert dec_best is not None
            _, rid, offset = dec_best
            self.decoding.remove(dec_best)
            heapq.heapify(self.decoding)
            self.ctx_base -= offset
            self._hist_add(offset, -1)
            if self.explicit_itl:
                self._forget_fresh(rid)
            ctx = offset + self.step  # tokens in its KV after the last step
            self.recomputed_tokens += ctx
            generated = self.output[rid] - self.rem_out[rid] + 1 + (self.step - self.s0[rid])
            self.pre_len[rid] = self.prompt[rid] + generated
            self.rem_out[rid] = self.output[rid] - generated
        self.resumed.appendleft(rid)
        self.num_preemptions += 1

    # ---- the loop -----------------------------------------------------------------------
    def _chunks(self, budget: int) -> tuple[list[tuple[int, int, int]], int, int]:
        """Chunks of the prefilling requests within ``budget``: (slot, tokens, context), the
        budget left and the blocks the prefilling requests hold after the step."""
        chunks: list[tuple[int, int, int]] = []
        blocks = self.pre_blocks
        bs = self.bs
        for slot, (rid, got) in enumerate(self.prefilling):
            if budget <= 0:
                break
            c = min(self.pre_len[rid] - got, budget)
            chunks.append((slot, c, got))
            blocks += _ceil_div(got + c, bs) - _ceil_div(got, bs)
            budget -= c
        return chunks, budget, blocks

    def run(self, horizon: float = math.inf) -> None:
        """Run every step that starts before ``horizon`` (all of them by default), or until
        every added request is done or the SLO stop fires."""
        n = len(self.arrival)
        arrival = self.arrival
        stop = self.stop
        while self.done < n and not self.stopped:
            if self.in_run and not self.decoding:
                self._end_run()  # every decode of the run finished before its last step
            t = self.t
            if stop is not None:
                queued = bisect.bisect_left(arrival, t - stop.ttft_s, lo=self.nxt) - self.nxt
                if (
                    self.ttft_miss + queued >= stop.max_ttft_misses
                    or self.tpot_miss >= stop.max_tpot_misses
                ):
                    self.stopped = True
                    break
            d = len(self.decoding)
            if (
                d == 0
                and not self.prefilling
                and not self.resumed
                and self.nxt < n
                and arrival[self.nxt] > t
            ):
                if arrival[self.nxt] >= horizon:
                    break
                t = self.t = arrival[self.nxt]  # idle until the next arrival
            if t >= horizon:
                break
            s = self.step + 1
            if (
                self.in_run
                and self.preempt
                and self._dec_blocks(s) + self.pre_blocks > self.cap_blocks
            ):
                self._end_run()  # the next step does not fit: the scheduler runs (preempts)
            # Mid-run nothing is prefilling (a run starts only with no chunk to schedule).
            mid = self.in_run
            dec_in = d if self.mixed else 0  # decodes riding in a step with prefill chunks
            budget = self.max_tokens - dec_in
            chunks, budget, pre_after = self._chunks(budget)
            need = self._dec_blocks(s) + pre_after if self.preempt else 0
            preempted = False
            while self.preempt and need > self.cap_blocks and (self.decoding or self.prefilling):
                self._preempt_newest()
                preempted = True
                d = len(self.decoding)
                dec_in = d if self.mixed else 0
                chunks, budget, pre_after = self._chunks(self.max_tokens - dec_in)
                need = self._dec_blocks(s) + pre_after
            running = d + len(self.prefilling)
            if not preempted and not mid:
                while budget > 0 and running < self.max_seqs:
                    if self.resumed:
                        rid = self.resumed[0]
                    elif self.nxt < n and arrival[self.nxt] <= t:
                        rid = self.nxt
                    else:
                        break
                    if not self._admissible(rid, budget, need):
                        break
                    if self.resumed and rid == self.resumed[0]:
                        self.resumed.popleft()
                    else:
                        self.nxt += 1
                    c = min(self.pre_len[rid], budget)
                    if self.preempt:
                        need += _ceil_div(c, self.bs)
                    else:
                        self.reserved += self._reserve_blocks(rid)
                    self.adm[rid] = self.admitted
                    self.admitted += 1
                    self.prefilling.append([rid, 0])
                    chunks.append((len(self.prefilling) - 1, c, 0))
                    budget -= c
                    running += 1
            if chunks:
                self._mixed_step(chunks, d if self.mixed else 0)
            elif d:
                if self.k_steps > 1 and not self.in_run:
                    self.in_run, self.run_left, self.run_seqs = True, self.k_steps, d
                self._decode_stretch(d, running, horizon)
            elif not self.resumed and self.nxt < n and arrival[self.nxt] > t:
                continue  # everything preempted this step; idle handled above
            elif self.resumed or (self.nxt < n and arrival[self.nxt] <= t):
                continue  # a step with preemptions only: admit next iteration
            else:  # pragma: no cover - add() makes every head request admissible alone
                raise RuntimeError("serving simulator: no progress possible")
            self._finish_decodes()
            if self.in_run and self.run_left == 0:
                self._end_run()
        if self.in_run and not self.decoding:
            self._end_run()

    def _mixed_step(self, chunks: list[tuple[int, int, int]], d: int) -> None:
        """One step with prefill chunks (and the ``d`` decodes; 0 in a prefill-only step, which
        leaves the decode clock where it is)."""
        if self.mixed:
            self.step += 1
        self.gstep += 1
        step, g = self.step, self.gstep
        tok = np.array([c for _, c, _ in chunks], dtype=np.int64)
        ctx = np.array([p for _, _, p in chunks], dtype=np.int64)
        pre_len = self.pre_len
        ends = [
            self.prefilling[slot][1] + c == pre_len[self.prefilling[slot][0]]
            for slot, c, _ in chunks
        ]
        dur = self.cost.step(d, float(self.ctx_base + d * step) if d else 0.0, tok, ctx, sum(ends))
        self.t += dur
        t = self.t
        self.seg_s.append(np.array([dur]))
        self.seg_decode.append(d)
        self.seg_len.append(1)
        self.seg_prefill.append(int(tok.sum()))
        bs = self.bs
        stop = self.stop
        for (slot, c, _), end in zip(chunks, ends, strict=True):
            entry = self.prefilling[slot]
            self.pre_blocks += _ceil_div(entry[1] + c, bs) - _ceil_div(entry[1], bs)
            entry[1] += c
            if not end:
                continue
            rid = entry[0]
            self.pre_blocks -= _ceil_div(entry[1], bs)
            if math.isnan(self.first[rid]):
                self.first[rid] = t
                if stop is not None and t - self.arrival[rid] > stop.ttft_s:
                    self.ttft_miss += 1
            if self.rem_out[rid] == 1:
                self._complete(rid, t)
            else:
                offset = pre_len[rid] - step
                self.s0[rid], self.g0[rid] = step, g
                heapq.heappush(self.decoding, (step + self.rem_out[rid] - 1, rid, offset))
                self.ctx_base += offset
                self._hist_add(offset, 1)
                if self.explicit_itl:
                    self.fresh_t[g] = t
                    self.fresh_n[g] = self.fresh_n.get(g, 0) + 1
        if any(ends):
            self.prefilling = [e for e in self.prefilling if e[1] < pre_len[e[0]]]

    def _decode_stretch(self, d: int, running: int, horizon: float) -> None:
        """Decode-only steps until the next finish, the next admissible arrival, the first
        step whose blocks no longer fit, or the horizon; in a multi-step run, until the next
        finish, the run's last step or the first step whose blocks no longer fit (no
        scheduling inside a run: arrivals and the horizon do not cut it)."""
        step = self.step
        k = self.decoding[0][0] - step
        if self.in_run:
            k = min(k, self.run_left)
        durs = self.cost.decode_steps(
            d, self.ctx_base + d * np.arange(step + 1, step + k + 1, dtype=np.float64)
        )
        # Blocks only grow along the stretch: look for the first step over the pool only
        # when its last step is over.
        if self.preempt and self._dec_blocks(step + k) > self.cap_blocks:
            steps = np.arange(step + 1, step + k + 1, dtype=np.int64)
            over = np.flatnonzero(self._dec_blocks_vec(steps) > self.cap_blocks)
            k = max(int(over[0]), 1)
            durs = durs[:k]
        # The head of the waiting queue (a preempted request first), if it could be admitted:
        # stop after the step it becomes ready during (at once when it already waits).
        head = self.resumed[0] if self.resumed else self.nxt
        cut = math.inf if self.in_run else horizon
        if (
            not self.in_run
            and head < len(self.arrival)
            and running < self.max_seqs
            and self._admissible(
                head, self.max_tokens - (d if self.mixed else 0), self._dec_blocks(step + 1)
            )
        ):
            cut = min(cut, max(self.arrival[head], self.t))
        if cut < math.inf:
            # Stop after the step during which the cut falls.
            ends_at = self.t + np.cumsum(durs)
            j = int(np.searchsorted(ends_at, cut, side="left"))
            if j + 1 < k:
                k = j + 1
                durs = durs[:k]
        if self.explicit_itl and self.k_steps == 1:
            self._stretch_itl(d, durs)
        self.t += float(durs.sum())
        self.step += k
        self.gstep += k
        self.seg_s.append(durs)
        self.seg_decode.append(d)
        self.seg_len.append(k)
        self.seg_prefill.append(0)
        if self.in_run:
            self.run_left -= k
        elif self.explicit_itl and self.k_steps == 1:
            self.run_end_t, self.run_end_g = self.t, self.gstep

    def _stretch_itl(self, d: int, durs: FloatArray) -> None:
        """ITL samples of a stretch of ``d`` decodes when prefill-only steps pause them: its
        first step ends the gap since each sequence's previous token (the last decode step,
        or its first token for a sequence whose prefill ended since); the others are one
        step each."""
        t1 = self.t + float(durs[0])
        fresh = sum(self.fresh_n.values())
        if d - fresh > 0:
            self.itl_s.append(t1 - self.run_end_t)
            self.itl_w.append(d - fresh)
        for g, c in self.fresh_n.items():
            if c > 0:
                self.itl_s.append(t1 - self.fresh_t[g])
                self.itl_w.append(c)
        self.fresh_t.clear()
        self.fresh_n.clear()
        if len(durs) > 1:
            self.itl_arr_s.append(durs[1:])
            self.itl_arr_w.append(d)

    def _finish_decodes(self) -> None:
        step = self.step
        t = self.t
        stop = self.stop
        while self.decoding and self.decoding[0][0] == step:
            _, rid, offset = heapq.heappop(self.decoding)
            if self.k_steps > 1:
                self.ctx_base -= offset
                self._hist_add(offset, -1)
                self._finish_multi(rid, t)
                continue
            if stop is not None and t - self.first[rid] > stop.tpot_s * (self.output[rid] - 1):
                self.tpot_miss += 1
            self.ctx_base -= offset
            self._hist_add(offset, -1)
            self._complete(rid, t)

    def _complete(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        self.finished_at.append(t)
        self._release(rid)

    def _release(self, rid: int) -> None:
        if not self.preempt:
            self.reserved -= self._reserve_blocks(rid)
        self.done += 1

    # ---- multi-step runs ------------------------------------------------------------------
    def _forget_fresh(self, rid: int) -> None:
        """A sequence that started decoding since the last run end stops decoding."""
        if self.g0[rid] > self.run_end_g:
            self.fresh_n[self.g0[rid]] -= 1

    def _deliver_multi(self, rid: int, t: float) -> None:
        """The last chunk of ``rid`` reaches its client at ``t``."""
        stop = self.stop
        if stop is not None and t - self.first[rid] > stop.tpot_s * (self.output[rid] - 1):
            self.tpot_miss += 1
        self.finish[rid] = t
        self.finished_at.append(t)

    def _finish_multi(self, rid: int, t: float) -> None:
        """Decode ``rid`` sampled its last token at ``t``: inside a run it is delivered at the
        run's end; in a prefill step (a schedule of its own) at once, one ITL sample."""
        self._release(rid)
        if self.in_run:
            self.pending.append(rid)
            return
        fresh = self.g0[rid] > self.run_end_g
        self.itl_s.append(t - (self.fresh_t[self.g0[rid]] if fresh else self.run_end_t))
        self.itl_w.append(1)
        self._forget_fresh(rid)
        self._deliver_multi(rid, t)

    def _end_run(self) -> None:
        """The run ends at ``self.t``: every sequence it decoded gets its chunk (one ITL
        sample: the time since its previous chunk), finished ones their last."""
        t = self.t
        old = self.run_seqs - sum(self.fresh_n.values())
        if old > 0:
            self.itl_s.append(t - self.run_end_t)
            self.itl_w.append(old)
        for p, c in self.fresh_n.items():
            if c > 0:
                self.itl_s.append(t - self.fresh_t[p])
                self.itl_w.append(c)
        for rid in self.pending:
            self._deliver_multi(rid, t)
        self.pending.clear()
        self.fresh_t.clear()
        self.fresh_n.clear()
        self.run_end_t, self.run_end_g = t, self.gstep
        self.in_run, self.run_left, self.run_seqs = False, 0, 0

    def trace(self) -> ReplicaTrace:
        """What the engine did so far."""
        lens = np.asarray(self.seg_len, dtype=np.int64)
        itl_s = itl_w = None
        if self.explicit_itl:
            pairs = zip(self.itl_arr_s, self.itl_arr_w, strict=True)
            bulk = [np.full(len(a), w, dtype=np.int64) for a, w in pairs]
            itl_s = np.concatenate([np.asarray(self.itl_s, dtype=np.float64), *self.itl_arr_s])
            itl_w = np.concatenate([np.asarray(self.itl_w, dtype=np.int64), *bulk])
        return ReplicaTrace(
            first_token_s=np.asarray(self.first, dtype=np.float64),
            finish_s=np.asarray(self.finish, dtype=np.float64),
            step_s=np.concatenate(self.seg_s) if self.seg_s else np.zeros(0),
            step_decode=np.repeat(np.asarray(self.seg_decode, dtype=np.int64), lens),
            step_prefill_tokens=np.repeat(np.asarray(self.seg_prefill, dtype=np.int64), lens),
            stopped=self.stopped,
            num_preemptions=self.num_preemptions,
            recomputed_tokens=self.recomputed_tokens,
            itl_s=itl_s,
            itl_weight=itl_w,
        )


def simulate_replica(
    requests: Requests,
    cost: StepCost,
    *,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    kv_capacity_tokens: int,
    stop: SloStop | None = None,
    block_size: int = KV_BLOCK_SIZE_TOKENS,
    kv_policy: str = "preempt",
    num_scheduler_steps: int = 1,
    mixed_batches: bool | None = None,
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
        KV-cache tokens (whole blocks of ``block_size`` count); every request's prompt +
        output must fit.
    stop
        Stop early once the percentile SLOs it names are certainly missed (:class:`SloStop`).
    block_size
        Tokens per KV block (default vLLM's 16).
    kv_policy
        ``preempt`` (vLLM: allocate as sequences grow, preempt the newest when the pool is
        full) or ``reserve`` (TensorRT-LLM GUARANTEED_NO_EVICT: reserve prompt + output at
        admission).
    num_scheduler_steps
        Decode steps per schedule (vLLM multi-step scheduling; module docstring).
    mixed_batches
        Whether decodes ride in the steps that prefill (module docstring); None: the step
        cost's.
    """
    eng = Engine(
        cost,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_capacity_tokens=kv_capacity_tokens,
        block_size=block_size,
        kv_policy=kv_policy,
        stop=stop,
        num_scheduler_steps=num_scheduler_steps,
        mixed_batches=mixed_batches,
    )
    eng.add_all(requests)
    eng.run()
    return eng.trace()
