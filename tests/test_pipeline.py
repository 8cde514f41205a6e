"""Pipeline schedules: event simulation vs the closed form the CP model uses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.costmodel import (
    in_flight_micro_batches,
    pipeline_time_closed_form,
    schedule_order,
    simulate_pipeline,
)


def test_uniform_1f1b_bubble_8_stages_32_micro_batches() -> None:
    """Uniform 1F1B: bubble (p-1)/(m+p-1); p=8, m=32 -> 7/39 = 17.9% (seed text)."""
    sim = simulate_pipeline(np.ones(8), 2 * np.ones(8), 32, schedule="1f1b")
    assert sim.bubble_fraction == pytest.approx(7 / 39)
    assert round(100 * sim.bubble_fraction, 1) == 17.9
    # makespan (m + p - 1)(f + b) = 39 x 3
    assert sim.makespan_s == pytest.approx(117.0)


@pytest.mark.parametrize(
    "p,m,schedule,v",
    [
        (8, 32, "1f1b", 1),
        (4, 5, "1f1b", 1),
        (2, 1, "1f1b", 1),
        (1, 7, "1f1b", 1),
        (4, 8, "interleaved", 2),
        (8, 32, "interleaved", 4),
        (3, 9, "interleaved", 3),
        (2, 2, "interleaved", 2),
    ],
)
def test_uniform_stages_match_closed_form(p: int, m: int, schedule: str, v: int) -> None:
    """On uniform stages the simulation equals m*t + (p-1)*t/v exactly (1F1B and interleaved)."""
    f, b = 1.0, 2.0
    sim = simulate_pipeline(np.full(p, f), np.full(p, b), m, schedule=schedule, virtual_stages=v)
    closed = pipeline_time_closed_form(np.full(p, f + b), m, v)
    assert closed == pytest.approx((m + (p - 1) / v) * (f + b))
    assert sim.makespan_s == pytest.approx(closed)


def test_interleaved_bubble_shrinks_by_v() -> None:
    """Interleaving with v chunks divides the bubble time by v (Narayanan 2021 Sec. 2.2.2)."""
    p, m = 8, 16
    base = simulate_pipeline(np.ones(p), np.ones(p), m).makespan_s - m * 2.0
    for v in (2, 4):
        sim = simulate_pipeline(np.ones(p), np.ones(p), m, schedule="interleaved", virtual_stages=v)
        assert sim.makespan_s - m * 2.0 == pytest.approx(base / v)


def _lower_bound(f: np.ndarray, b: np.ndarray, m: int) -> float:
    """Stage s cannot start before stages < s did one forward and must wait for their
    backwards after its last: max_s sum_{j<s}(f_j + b_j) + m (f_s + b_s)."""
    return max(float((f[:s] + b[:s]).sum()) + m * float(f[s] + b[s]) for s in range(len(f)))


@settings(max_examples=40, deadline=None)
@given(
    times=st.lists(st.tuples(st.floats(0.2, 2.0), st.floats(0.2, 4.0)), min_size=2, max_size=6),
    m=st.integers(1, 12),
)
def test_1f1b_uneven_within_tolerance_of_closed_form(
    times: list[tuple[float, float]], m: int
) -> None:
    """Uneven stages, 1F1B: lower bound <= simulation <= (m - 1)(max f + max b) + sum(f + b).

    The upper bound holds because in the 1F1B steady state each stage alternates one forward and
    one backward, so no period exceeds the largest forward plus the largest backward.  The
    closed form the CP optimises, m*max(f + b) + sum - max, is NOT an upper bound: it charges
    every non-bottleneck stage's full f+b once and the simulation overlaps some of it (mostly
    conservative: -21%..+4.5% over 20,000 uniform random pipelines, f in [0.2, 2], b in
    [0.2, 4], p <= 6, m <= 12; -21%..+21% with every time at an end of its range), but a
    forward-heavy stage before a backward-heavy one exceeds it, e.g. f=(2, .25, .5),
    b=(1, 3, .5), m=2: simulation 11.25 vs closed form 10.5 (+7.1%, found by Hypothesis; the
    README's "closed form vs simulation" limit).  The 0.75 floor below is the observed -21%.
    """
    f = np.array([t[0] for t in times])
    b = np.array([t[1] for t in times])
    sim = simulate_pipeline(f, b, m).makespan_s
    closed = pipeline_time_closed_form(f + b, m, 1)
    upper = (m - 1) * (float(f.max()) + float(b.max())) + float((f + b).sum())
    assert sim <= upper * (1 + 1e-9)
    assert sim >= _lower_bound(f, b, m) * (1 - 1e-9)
    assert sim >= closed * 0.75


def test_1f1b_closed_form_can_be_exceeded() -> None:
    """The documented counterexample: forward-heavy stage 0, backward-heavy stage 1."""
    f, b = np.array([2.0, 0.5, 0.5]), np.array([0.5, 2.0, 0.5])
    assert simulate_pipeline(f, b, 2).makespan_s == pytest.approx(9.0)
    assert pipeline_time_closed_form(f + b, 2, 1) == pytest.approx(8.5)


@settings(max_examples=30, deadline=None)
@given(
    times=st.lists(st.tuples(st.floats(0.5, 1.5), st.floats(1.0, 3.0)), min_size=2, max_size=5),
    groups=st.integers(1, 3),
    v=st.integers(2, 3),
)
def test_interleaved_uneven_within_tolerance(
    times: list[tuple[float, float]], groups: int, v: int
) -> None:
    """Uneven stages, interleaved: |sim / closed - 1| <= 0.05 + 0.2 p / m.

    Documented tolerance of the CP model's formula (observed over 2700 random pipelines with
    stage times varying 3x, p <= 6, v <= 4: -10%..+19% at m = p, -11%..+9.5% at m = 2p,
    -6%..+6% at m = 4p; the error shrinks as m / p grows and is 0 on uniform stages).
    """
    f = np.array([t[0] for t in times])
    b = np.array([t[1] for t in times])
    p = len(f)
    m = p * groups
    sim = simulate_pipeline(f, b, m, schedule="interleaved", virtual_stages=v).makespan_s
    closed = pipeline_time_closed_form(f + b, m, v)
    tol = 0.05 + 0.2 * p / m
    assert abs(sim / closed - 1) <= tol
    assert sim >= m * float((f + b).max()) * (1 - 1e-9)


def test_events_respect_dependencies_and_stage_exclusivity() -> None:
    """Every (stage, chunk, micro-batch) runs F then B once, stages never overlap two ops,
    a forward starts after its input arrived (incl. p2p)."""
    p, m, v, d = 4, 8, 2, 0.05
    sim = simulate_pipeline(
        np.ones(p), 2 * np.ones(p), m, schedule="interleaved", virtual_stages=v, p2p_s=d
    )
    ev = {(e.stage, e.kind, e.micro_batch, e.chunk): e for e in sim.events}
    assert len(ev) == len(sim.events) == 2 * p * m * v
    for s in range(p):
        mine = sorted((e for e in sim.events if e.stage == s), key=lambda e: e.start)
        assert all(a.end <= b.start + 1e-12 for a, b in zip(mine, mine[1:], strict=False))
    for (s, kind, mb, c), e in ev.items():
        if kind == "F" and s > 0:
            assert e.start >= ev[(s - 1, "F", mb, c)].end + d - 1e-12
        if kind == "B":
            assert e.start >= ev[(s, "F", mb, c)].end - 1e-12


def test_p2p_delay_lengthens_fill_and_drain() -> None:
    """A p2p time d per boundary adds at least 2(p-1)d (fill + drain) to a uniform 1F1B step."""
    p, m, d = 4, 8, 0.1
    base = simulate_pipeline(np.ones(p), 2 * np.ones(p), m).makespan_s
    slow = simulate_pipeline(np.ones(p), 2 * np.ones(p), m, p2p_s=d).makespan_s
    assert slow >= base + 2 * (p - 1) * d - 1e-12


def test_megatron_1f1b_order() -> None:
    """Stage s of 1F1B warms up with p-s-1 forwards, then alternates F/B, then cools down."""
    order = schedule_order(0, 4, 6, "1f1b")
    assert order[:4] == [("F", 0, 0), ("F", 1, 0), ("F", 2, 0), ("F", 3, 0)]
    assert order[4] == ("B", 0, 0)
    assert schedule_order(3, 4, 6, "1f1b")[:2] == [("F", 0, 0), ("B", 0, 0)]


@pytest.mark.parametrize("p,v", [(4, 2), (8, 4), (8, 1)])
def test_in_flight_first_stage_korthikanti_eq6(p: int, v: int) -> None:
    """Stage 0 holds p(1 + (p-1)/(p v)) whole-stage micro-batches (Korthikanti eq. 5/6);
    1F1B stage s holds min(m, p - s)."""
    m = 4 * p
    sched = "interleaved" if v > 1 else "1f1b"
    assert in_flight_micro_batches(0, p, m, sched, v) == pytest.approx(
        p * (1 + (p - 1) / (p * v)) if v > 1 else p
    )
    assert in_flight_micro_batches(p - 1, p, m, "1f1b", 1) == 1
    assert in_flight_micro_batches(0, p, 2, "1f1b", 1) == min(2, p)
