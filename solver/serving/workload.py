"""Requests for the serving simulator: arrival times and prompt / output lengths.

Two sources:

* :func:`generate_requests` -- a Poisson arrival process at ``rate`` requests/s (exponential
  inter-arrival gaps from a seeded :class:`numpy.random.Generator`), or every request at
  t = 0 (``rate = inf``: the static-batch case), with prompt and output lengths drawn from a
  :class:`Lengths` distribution each;
* :func:`load_trace` -- a trace file (CSV with a header, or JSONL) with one request per row:
  ``timestamp`` (seconds), ``prompt_tokens``, ``output_tokens``.

Length distributions: ``fixed``, ``uniform`` (integers low..high inclusive), ``lognormal``
with a given *mean* and log-space ``sigma`` (mu = ln(mean) - sigma^2 / 2, so the samples'
expectation is ``mean``; ShareGPT-like traffic is long-tailed this way), and ``file``
(resampled with replacement from a column of a CSV/JSONL file of token counts, e.g. a
pre-tokenised ShareGPT dump).  Every sample is rounded to an integer and clipped to
``[1, max]``.  Every bad parameter raises :class:`~solver.errors.SpecError` naming it.

A workload spec may describe its traffic itself (``request_rate``, ``arrival``, ``trace``,
``prompt_tokens_distribution``, ``output_tokens_distribution``, ``slo_percentile`` of
:class:`~solver.specs.InferenceWorkload`): :func:`workload_traffic` turns those fields into
a :class:`Traffic` (relative file paths resolved against the workload file's folder).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import MAX_SEED, SpecError
from ..specs import InferenceWorkload, LengthDistribution

__all__ = [
    "MAX_REQUESTS",
    "MAX_TOKENS",
    "Lengths",
    "Requests",
    "Traffic",
    "generate_requests",
    "lengths_from_spec",
    "load_trace",
    "parse_lengths",
    "read_columns",
    "workload_traffic",
]

#: The most requests one simulation takes (memory: a few arrays of this length).
MAX_REQUESTS = 10_000_000
#: The longest prompt or output one request may have, in tokens.
MAX_TOKENS = 10_000_000

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

LengthKind = Literal["fixed", "uniform", "lognormal", "file"]


def _finite_positive(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{field}: must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise SpecError(f"{field}: must be finite and > 0, got {value!r}")
    return v


def _count(value: Any, field: str, *, low: int = 1, high: int = MAX_TOKENS) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise SpecError(f"{field}: must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise SpecError(f"{field}: must be in {low}..{high:,}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Lengths:
    """A token-length distribution (build it with the class methods, which check it).

    Attributes
    ----------
    kind
        ``fixed``, ``uniform``, ``lognormal`` or ``file``.
    a, b
        ``fixed``: (value, -); ``uniform``: (low, high); ``lognormal``: (mean, sigma).
    max
        Samples are clipped to ``[1, max]`` (default :data:`MAX_TOKENS`).
    values
        ``file``: the token counts resampled with replacement.
    """

    kind: LengthKind
    a: float = 0.0
    b: float = 0.0
    max: int = MAX_TOKENS
    values: tuple[int, ...] = ()

    @classmethod
    def fixed(cls, value: int, field: str = "length") -> Lengths:
        """Every request has ``value`` tokens."""
        return cls("fixed", float(_count(value, field)))

    @classmethod
    def uniform(cls, low: int, high: int, field: str = "length") -> Lengths:
        """Integers ``low..high`` inclusive, uniformly."""
        lo, hi = _count(low, f"{field}.low"), _count(high, f"{field}.high")
        if hi < lo:
            raise SpecError(f"{field}.high: must be >= low ({lo}), got {hi}")
        return cls("uniform", float(lo), float(hi))

    @classmethod
    def lognormal(
        cls, mean: float, sigma: float, max: int = MAX_TOKENS, field: str = "length"
    ) -> Lengths:
        """Log-normal with expectation ``mean`` and log-space standard deviation ``sigma``,
        rounded and clipped to ``[1, max]``."""
        m = _finite_positive(mean, f"{field}.mean")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
            raise SpecError(f"{field}.sigma: must be a number, got {sigma!r}")
        if not math.isfinite(sigma) or not 0 <= sigma <= 10:
            raise SpecError(f"{field}.sigma: must be in 0..10, got {sigma!r}")
        return cls("lognormal", m, float(sigma), _count(max, f"{field}.max"))

    @classmethod
    def from_file(cls, path: str | Path, column: str, field: str = "length") -> Lengths:
        """Resample, with replacement, the ``column`` of a CSV/JSONL file of token counts."""
        values = read_columns(path, (column,))[column]
        return cls("file", values=tuple(int(v) for v in values))

    def sample(self, n: int, rng: np.random.Generator) -> IntArray:
        """``n`` integer lengths in ``[1, max]``."""
        if self.kind == "fixed":
            x = np.full(n, self.a)
        elif self.kind == "uniform":
            x = rng.integers(int(self.a), int(self.b), endpoint=True, size=n).astype(np.float64)
        elif self.kind == "lognormal":
            mu = math.log(self.a) - self.b**2 / 2.0
            x = rng.lognormal(mu, self.b, size=n)
        else:
            x = rng.choice(np.asarray(self.values, dtype=np.float64), size=n, replace=True)
        out: IntArray = np.clip(np.rint(x), 1, self.max).astype(np.int64)
        return out


def parse_lengths(text: str, field: str) -> Lengths:
    """A :class:`Lengths` from the CLI's spelling: ``1024`` or ``fixed:1024``,
    ``uniform:LOW:HIGH``, ``lognormal:MEAN:SIGMA[:MAX]``, ``file:PATH:COLUMN``."""
    parts = text.strip().split(":")
    kind = parts[0].lower()
    try:
        if len(parts) == 1:
            return Lengths.fixed(int(parts[0]), field)
        if kind == "fixed" and len(parts) == 2:
            return Lengths.fixed(int(parts[1]), field)
        if kind == "uniform" and len(parts) == 3:
            return Lengths.uniform(int(parts[1]), int(parts[2]), field)
        if kind == "lognormal" and len(parts) in (3, 4):
            mx = int(parts[3]) if len(parts) == 4 else MAX_TOKENS
            return Lengths.lognormal(float(parts[1]), float(parts[2]), mx, field)
        if kind == "file" and len(parts) >= 3:
            return Lengths.from_file(":".join(parts[1:-1]), parts[-1], field)
    except ValueError as e:
        if isinstance(e, SpecError):
            raise
        raise SpecError(f"{field}: not a number in {text!r}") from None
    raise SpecError(
        f"{field}: expected N, fixed:N, uniform:LOW:HIGH, lognormal:MEAN:SIGMA[:MAX] or "
        f"file:PATH:COLUMN, got {text!r}"
    )


@dataclass(frozen=True)
class Requests:
    """The requests of one simulation, sorted by arrival (internal problem data).

    Attributes
    ----------
    arrival_s
        Arrival times in seconds, non-decreasing, >= 0.
    prompt_tokens, output_tokens
        Per request, >= 1 each.
    """

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not (len(self.prompt_tokens) == len(self.output_tokens) == n):
            raise SpecError("requests: arrival_s, prompt_tokens, output_tokens differ in length")
        if n == 0:
            raise SpecError("requests: must hold at least one request, got 0")
        if n > MAX_REQUESTS:
            raise SpecError(f"requests: at most {MAX_REQUESTS:,}, got {n:,}")
        for name in ("prompt_tokens", "output_tokens"):
            a = getattr(self, name)
            bad = np.flatnonzero((a < 1) | (a > MAX_TOKENS))
            if bad.size:
                i = int(bad[0])
                raise SpecError(f"requests[{i}].{name}: must be in 1..{MAX_TOKENS:,}, got {a[i]}")
        t = self.arrival_s
        bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
        if bad.size:
            i = int(bad[0])
            raise SpecError(f"requests[{i}].timestamp: must be finite and >= 0, got {t[i]}")
        if n > 1 and np.any(np.diff(t) < 0):
            raise SpecError("requests: timestamps must be sorted (non-decreasing)")

    def __len__(self) -> int:
        return len(self.arrival_s)

    def subset(self, index: IntArray) -> Requests:
        """The requests at ``index`` (sorted positions), e.g. one replica's share."""
        return Requests(self.arrival_s[index], self.prompt_tokens[index], self.output_tokens[index])


def generate_requests(
    num_requests: int,
    rate: float,
    prompt: Lengths,
    output: Lengths,
    *,
    seed: int = 0,
) -> Requests:
    """``num_requests`` requests arriving as a Poisson process at ``rate`` requests/s.

    Parameters
    ----------
    num_requests
        1..:data:`MAX_REQUESTS`.
    rate
        Mean arrivals per second (> 0); ``math.inf`` puts every request at t = 0 (a static
        batch).  The first request arrives after one exponential gap, not at t = 0.
    prompt, output
        Length distributions (:class:`Lengths`).
    seed
        0..2^31 - 1; the same seed gives the same requests.
    """
    n = _count(num_requests, "num_requests", high=MAX_REQUESTS)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or math.isnan(rate):
        raise SpecError(f"rate: must be a number of requests/s, got {rate!r}")
    if rate <= 0:
        raise SpecError(f"rate: must be > 0 requests/s, got {rate!r}")
    s = _count(seed, "seed", low=0, high=MAX_SEED)
    rng = np.random.default_rng(s)
    if math.isinf(rate):
        arrival = np.zeros(n)
    else:
        arrival = np.cumsum(rng.exponential(1.0 / rate, size=n))
    return Requests(arrival, prompt.sample(n, rng), output.sample(n, rng))


def read_columns(path: str | Path, columns: tuple[str, ...]) -> dict[str, FloatArray]:
    """The named numeric columns of a CSV (header row) or JSONL (one object a line) file;
    SpecError naming the file, row and column for anything missing or not a number."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    rows: list[dict[str, Any]]
    if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpecError(f"{p}: line {i}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise SpecError(f"{p}: line {i}: expected an object, got {type(obj).__name__}")
            rows.append(obj)
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise SpecError(f"{p}: no rows")
    out: dict[str, FloatArray] = {}
    for col in columns:
        vals = np.empty(len(rows))
        for i, row in enumerate(rows):
            if col not in row or row[col] is None or row[col] == "":
                raise SpecError(f"{p}: row {i + 1}: missing column {col!r}")
            v = row[col]
            if isinstance(v, bool):
                raise SpecError(f"{p}: row {i + 1}: {col}: must be a number, got {v!r}")
            try:
                vals[i] = float(v)
            except (TypeError, ValueError):
                raise SpecError(f"{p}: row {i + 1}: {col}: must be a number, got {v!r}") from None
            if not math.isfinite(vals[i]):
                raise SpecError(f"{p}: row {i + 1}: {col}: must be finite, got {v!r}")
        if col != "timestamp":
            bad = np.flatnonzero((vals < 1) | (vals != np.rint(vals)))
            if bad.size:
                i = int(bad[0])
                raise SpecError(
                    f"{p}: row {i + 1}: {col}: must be a whole number >= 1, got {rows[i][col]!r}"
                )
        out[col] = vals
    return out


def load_trace(path: str | Path) -> Requests:
    """Requests from a trace file: CSV (header ``timestamp,prompt_tokens,output_tokens``) or
    JSONL (objects with those keys); timestamps in seconds (>= 0, not shifted), sorted
    here if they are not."""
    cols = read_columns(path, ("timestamp", "prompt_tokens", "output_tokens"))
    t = cols["timestamp"]
    bad = np.flatnonzero(t < 0)
    if bad.size:
        raise SpecError(f"{path}: row {int(bad[0]) + 1}: timestamp: must be >= 0, got {t[bad[0]]}")
    order = np.argsort(t, kind="stable")
    return Requests(
        t[order],
        cols["prompt_tokens"][order].astype(np.int64),
        cols["output_tokens"][order].astype(np.int64),
    )


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def lengths_from_spec(
    dist: LengthDistribution, field: str, base_dir: Path | None = None
) -> Lengths:
    """The :class:`Lengths` a workload's ``*_tokens_distribution`` names (``file`` paths
    relative to ``base_dir``, the workload file's folder; default the working directory)."""
    if dist.kind == "fixed":
        assert dist.value is not None
        return Lengths.fixed(dist.value, field)
    if dist.kind == "uniform":
        assert dist.low is not None and dist.high is not None
        return Lengths.uniform(dist.low, dist.high, field)
    if dist.kind == "lognormal":
        assert dist.mean is not None and dist.sigma is not None
        return Lengths.lognormal(dist.mean, dist.sigma, dist.max or MAX_TOKENS, field)
    assert dist.path is not None and dist.column is not None
    path = _resolve(dist.path, base_dir)
    if not path.is_file():
        raise SpecError(f"{field}.path: file not found: {path}")
    try:
        return Lengths.from_file(path, dist.column, field)
    except SpecError as e:
        raise SpecError(f"{field}: {e}") from None


@dataclass(frozen=True)
class Traffic:
    """A serving workload's traffic, from its spec (:func:`workload_traffic`).

    Attributes
    ----------
    rate
        Poisson requests/s (None: not given; with a trace, its mean rate is used by callers).
    prompt, output
        Length distributions (default fixed at ``prompt_tokens`` / ``output_tokens``).
    trace
        The trace's requests (``arrival: trace``), else None.
    slo_percentile
        The percentile the SLOs apply to.
    """

    rate: float | None
    prompt: Lengths
    output: Lengths
    trace: Requests | None
    slo_percentile: float


def load_workload_trace(path: str | Path, base_dir: Path | None = None) -> Requests:
    """:func:`load_trace` of a workload's ``trace`` (relative to ``base_dir``); every error
    a one-line SpecError naming the ``trace`` field."""
    p = _resolve(str(path), base_dir)
    if not p.is_file():
        raise SpecError(f"trace: file not found: {p}")
    try:
        return load_trace(p)
    except SpecError as e:
        raise SpecError(f"trace: {e}") from None


def workload_traffic(workload: InferenceWorkload, base_dir: Path | None = None) -> Traffic:
    """The traffic ``workload`` describes: its ``request_rate`` (Poisson) or ``trace``, its
    length distributions and SLO percentile; ``base_dir`` resolves relative paths (the
    workload file's folder; default the working directory)."""
    prompt = (
        lengths_from_spec(
            workload.prompt_tokens_distribution, "prompt_tokens_distribution", base_dir
        )
        if workload.prompt_tokens_distribution is not None
        else Lengths.fixed(workload.prompt_tokens, "prompt_tokens")
    )
    output = (
        lengths_from_spec(
            workload.output_tokens_distribution, "output_tokens_distribution", base_dir
        )
        if workload.output_tokens_distribution is not None
        else Lengths.fixed(workload.output_tokens, "output_tokens")
    )
    trace = None
    if workload.arrival == "trace":
        assert workload.trace is not None
        trace = load_workload_trace(workload.trace, base_dir)
    return Traffic(workload.request_rate, prompt, output, trace, workload.slo_percentile)
