"""Serving metrics from simulated requests, as vLLM's ``benchmark_serving`` reports them.

* **TTFT**: first token - arrival, per request.
* **TPOT**: (last token - first token) / (output_tokens - 1), per request with >= 2 output
  tokens (the mean inter-token time of one request).
* **ITL**: every gap between two consecutive tokens of a request, over all tokens (a token
  sampled in an engine step of duration d arrives d after the previous one of its request:
  every running sequence decodes in every step).  With multi-step scheduling
  (``num_scheduler_steps`` > 1) a client receives a run's tokens as one chunk and, as vLLM's
  ``benchmark_serving`` counts one ITL per streamed chunk, each delivered chunk is one sample:
  the time since that request's previous chunk (:mod:`~solver.serving.simulator`).
* **E2E latency**: last token - arrival.
* **Throughput**: completed requests, output tokens and prompt + output tokens per second of
  the run, from the first arrival to the last completion.
* **Goodput**: requests per second of the run that met every SLO given (TTFT <= ttft_slo_ms
  and TPOT <= tpot_slo_ms; a request with one output token has no TPOT and meets that one);
  vLLM's ``--goodput`` definition.

Percentiles are numpy's default (linear interpolation) over requests; ITL percentiles are
weighted by the tokens each step sampled, or the chunks each multi-step sample counts for (the
inverted empirical CDF).  Besides p50/p90/p99,
TTFT and TPOT are reported at the SLO percentile (``slo_percentile``, default 99: the one a
serving plan is held to).

* **Preemptions** (vLLM's KV-cache preemption, :mod:`~solver.serving.simulator`): how many
  times a running request was preempted, and the KV tokens discarded (recomputed later).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Percentiles", "ServingMetrics", "percentiles", "serving_metrics", "weighted_quantiles"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

QUANTILES = (50.0, 90.0, 99.0)


class Percentiles(BaseModel):
    """Mean and p50/p90/p99 of one latency, in the unit its field name says."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    mean: float = Field(description="Mean.")
    p50: float = Field(description="Median.")
    p90: float = Field(description="90th percentile.")
    p99: float = Field(description="99th percentile.")


def percentiles(x: FloatArray, scale: float = 1.0) -> Percentiles:
    """:class:`Percentiles` of ``x * scale`` (NaN for an empty sample)."""
    if x.size == 0:
        nan = math.nan
        return Percentiles(mean=nan, p50=nan, p90=nan, p99=nan)
    q = np.percentile(x, QUANTILES) * scale
    return Percentiles(
        mean=float(x.mean() * scale), p50=float(q[0]), p90=float(q[1]), p99=float(q[2])
    )


def weighted_quantiles(x: FloatArray, w: FloatArray, qs: tuple[float, ...]) -> list[float]:
    """For each ``q`` in ``qs`` (0..1), the smallest ``x`` whose cumulative weight reaches
    ``q`` of the total (one sort for all)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cw = np.cumsum(w[order])
    idx = np.searchsorted(cw, np.asarray(qs) * cw[-1], side="left")
    return [float(xs[min(int(i), len(xs) - 1)]) for i in idx]


class ServingMetrics(BaseModel):
    """Latency and throughput of a simulated serving run."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    num_requests: int = Field(description="Requests served.")
    duration_s: float = Field(description="First arrival to last completion, seconds.")
    request_throughput: float = Field(description="Completed requests per second.")
    output_throughput: float = Field(description="Generated tokens per second.")
    total_token_throughput: float = Field(description="Prompt + generated tokens per second.")
    goodput: float = Field(description="Requests per second that met every SLO given.")
    slo_attainment: float = Field(description="Fraction of requests that met every SLO given.")
    ttft_slo_ms: float | None = Field(default=None, description="TTFT SLO used, ms.")
    tpot_slo_ms: float | None = Field(default=None, description="TPOT SLO used, ms.")
    ttft_ms: Percentiles = Field(description="Time to first token, ms.")
    tpot_ms: Percentiles = Field(description="Time per output token per request, ms.")
    itl_ms: Percentiles = Field(description="Inter-token latency over all tokens, ms.")
    e2e_latency_s: Percentiles = Field(description="Arrival to last token, seconds.")
    num_steps: int = Field(description="Engine steps over all replicas.")
    mean_decode_batch: float = Field(description="Mean decoding sequences per decode step.")
    slo_percentile: float = Field(default=99.0, description="Percentile the SLOs apply to.")
    ttft_at_percentile_ms: float = Field(
        default=math.nan, description="TTFT at slo_percentile, ms."
    )
    tpot_at_percentile_ms: float = Field(
        default=math.nan, description="TPOT at slo_percentile, ms (NaN: no request has two tokens)."
    )
    num_preemptions: int = Field(
        default=0, description="Running requests preempted for KV-cache space (recomputed later)."
    )
    recomputed_tokens: int = Field(
        default=0, description="KV tokens the preemptions discarded and prefilled again."
    )


def serving_metrics(
    arrival_s: FloatArray,
    prompt_tokens: IntArray,
    output_tokens: IntArray,
    first_token_s: FloatArray,
    finish_s: FloatArray,
    step_s: FloatArray,
    step_decode: IntArray,
    *,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    slo_percentile: float = 99.0,
    num_preemptions: int = 0,
    recomputed_tokens: int = 0,
    itl_s: FloatArray | None = None,
    itl_weight: IntArray | None = None,
) -> ServingMetrics:
    """:class:`ServingMetrics` of per-request times and per-step durations (all replicas'
    steps concatenated).  ``itl_s`` / ``itl_weight``: inter-token latency samples and the
    tokens or chunks each counts for (multi-step scheduling); default every step's duration
    weighted by its decoding sequences."""
    ttft = first_token_s - arrival_s
    e2e = finish_s - arrival_s
    multi = output_tokens > 1
    tpot = np.where(multi, (finish_s - first_token_s) / np.maximum(output_tokens - 1, 1), 0.0)
    duration = float(finish_s.max() - arrival_s.min())
    rate = 1.0 / duration if duration > 0 else math.inf
    ok = np.ones(len(arrival_s), dtype=bool)
    if ttft_slo_ms is not None:
        ok &= ttft * 1e3 <= ttft_slo_ms
    if tpot_slo_ms is not None:
        ok &= tpot * 1e3 <= tpot_slo_ms
    dec = step_decode > 0
    mean_batch = float(step_decode[dec].astype(np.float64).mean()) if dec.any() else 0.0
    if itl_s is None or itl_weight is None:
        itl_s, itl_weight = step_s, step_decode
    got = itl_weight > 0
    if got.any():
        w = itl_weight[got].astype(np.float64)
        x = itl_s[got] * 1e3
        q50, q90, q99 = weighted_quantiles(x, w, (0.50, 0.90, 0.99))
        itl = Percentiles(mean=float((x * w).sum() / w.sum()), p50=q50, p90=q90, p99=q99)
    else:
        itl = percentiles(np.zeros(0))
    n = len(arrival_s)
    q = float(slo_percentile)
    ttft_q = float(np.percentile(ttft, q)) * 1e3
    tpot_q = float(np.percentile(tpot[multi], q)) * 1e3 if multi.any() else math.nan
    return ServingMetrics(
        num_requests=n,
        duration_s=duration,
        request_throughput=n * rate,
        output_throughput=float(output_tokens.sum()) * rate,
        total_token_throughput=float((prompt_tokens + output_tokens).sum()) * rate,
        goodput=int(ok.sum()) * rate,
        slo_attainment=float(ok.mean()),
        ttft_slo_ms=ttft_slo_ms,
        tpot_slo_ms=tpot_slo_ms,
        ttft_ms=percentiles(ttft, 1e3),
        tpot_ms=percentiles(tpot[multi], 1e3),
        itl_ms=itl,
        e2e_latency_s=percentiles(e2e),
        num_steps=len(step_s),
        mean_decode_batch=mean_batch,
        slo_percentile=q,
        ttft_at_percentile_ms=ttft_q,
        tpot_at_percentile_ms=tpot_q,
        num_preemptions=num_preemptions,
        recomputed_tokens=recomputed_tokens,
    )
