"""CP-SAT model for inference deployments: how many replicas of which configuration.

A *configuration* ``c`` is one replica shape: a pool, a TP degree, a PP degree (layers split as
evenly as possible) and a batch size.  Each configuration is scored beforehand by the evaluator
itself (TTFT, TPOT, tokens/s, memory), so the model and the evaluator cannot disagree on a
replica -- including the serving-engine step model the workload's ``serving_engine`` names
(:mod:`solver.costmodel.serving_engine`: step overheads, CUDA graphs, decode attention, small-M
GEMMs, custom all-reduce, sampling), which every coefficient below already contains;
configurations that break memory or an SLO are dropped before the model is built.

The model is an integer knapsack over replica counts ``n_c``:

* GPUs per pool: ``sum_c n_c * gpus_c <= G_pool``;
* ``max_throughput``: maximise ``sum_c n_c * tput_c``;
* ``min_gpus`` / ``min_cost``: minimise GPUs (or $/h) subject to ``sum_c n_c * tput_c >= target``;
* ``min_latency``: minimise the worst TPOT among used configurations (a bounding variable
  ``TPOT >= tpot_c * [n_c > 0]``), then, as a second solve at that TPOT, maximise throughput.

Throughput is scaled to integer milli-tokens/s, TPOT to integer microseconds, cost to
micro-dollars per hour; the evaluator re-scores the final plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

__all__ = ["InferenceConfig", "InferenceModel"]


@dataclass(frozen=True)
class InferenceConfig:
    """One replica shape with its evaluator-measured metrics."""

    pool: str
    tp: int
    pp: int
    batch: int
    gpus: int
    tokens_per_s: float
    ttft_ms: float
    tpot_ms: float
    cost_per_hour: float
    peak_memory_GB: float

    @property
    def key(self) -> str:
        return f"{self.pool}/tp{self.tp}/pp{self.pp}/b{self.batch}"


def tpot_units_per_ms(configs: Sequence[InferenceConfig]) -> float:
    """Integer TPOT units per millisecond: 1000 (1 us), or finer until the fastest is >= 10^4."""
    fastest = min((c.tpot_ms for c in configs if c.tpot_ms > 0), default=1.0)
    scale = 1000.0
    while fastest * scale < 1e4:
        scale *= 10.0
    return scale


class InferenceModel:
    """Replica-count knapsack; see the module docstring."""

    def __init__(
        self,
        configs: list[InferenceConfig],
        pool_gpus: dict[str, int],
        objective: str,
        target_tokens_per_s: float | None,
        tpot_cap: int | None = None,
    ) -> None:
        self.configs = configs
        m = self.m = cp_model.CpModel()
        # TPOT in integer units of 1/tpot_scale ms, fine enough that the fastest configuration's
        # TPOT is >= 10^4 units (rounding <= 5e-5 relative); 1 us for real models, finer for
        # toy ones whose TPOT is a few microseconds.
        self.tpot_scale = tpot_units_per_ms(configs)
        self.n: list[cp_model.IntVar] = []
        for c in configs:
            ub = pool_gpus[c.pool] // c.gpus
            self.n.append(m.new_int_var(0, ub, f"replicas[{c.key}]"))
        self.used = [m.new_bool_var(f"used[{c.key}]") for c in configs]
        for n, u in zip(self.n, self.used, strict=True):
            m.add(n >= 1).only_enforce_if(u)
            m.add(n == 0).only_enforce_if(u.Not())
        for pool, gpus in pool_gpus.items():
            terms = [c.gpus * n for c, n in zip(configs, self.n, strict=True) if c.pool == pool]
            if terms:
                m.add(sum(terms) <= gpus)
        tput = sum(
            int(round(c.tokens_per_s * 1000)) * n for c, n in zip(configs, self.n, strict=True)
        )
        m.add(sum(self.used) >= 1)
        if target_tokens_per_s is not None:
            m.add(tput >= int(target_tokens_per_s * 1000 + 0.999))
        if tpot_cap is not None:
            for c, u in zip(configs, self.used, strict=True):
                if int(round(c.tpot_ms * self.tpot_scale)) > tpot_cap:
                    m.add(u == 0)
        self.tput = tput
        if objective == "max_throughput" or (objective == "min_latency" and tpot_cap is not None):
            m.maximize(tput)
            self.scale = 1000.0
            self.sense = 1
        elif objective == "min_gpus":
            m.minimize(sum(c.gpus * n for c, n in zip(configs, self.n, strict=True)))
            self.scale = 1.0
            self.sense = -1
        elif objective == "min_cost":
            m.minimize(
                sum(
                    int(round(c.cost_per_hour * 1e6)) * n
                    for c, n in zip(configs, self.n, strict=True)
                )
            )
            self.scale = 1e6
            self.sense = -1
        elif objective == "min_latency":
            ub = max(int(round(c.tpot_ms * self.tpot_scale)) for c in configs)
            self.tpot = m.new_int_var(0, ub, "tpot_max")
            for c, u in zip(configs, self.used, strict=True):
                m.add(self.tpot >= int(round(c.tpot_ms * self.tpot_scale))).only_enforce_if(u)
            m.minimize(self.tpot)
            self.scale = self.tpot_scale
            self.sense = -1
        else:  # pragma: no cover - guarded by the workload schema
            raise ValueError(f"objective: unknown objective {objective!r}")

    def hint(self, counts: dict[int, int]) -> None:
        for i, n in enumerate(self.n):
            self.m.add_hint(n, counts.get(i, 0))

    def solve(
        self, time_limit_s: float, num_workers: int, seed: int
    ) -> tuple[Any, dict[int, int], float, float]:
        """Returns (cp status, {config index: replicas}, objective, bound) in user units."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, time_limit_s)
        solver.parameters.num_workers = num_workers
        solver.parameters.random_seed = seed
        status = solver.solve(self.m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return status, {}, float("nan"), float("nan")
        counts = {i: int(solver.value(n)) for i, n in enumerate(self.n) if solver.value(n) > 0}
        return (
            status,
            counts,
            solver.objective_value / self.scale,
            solver.best_objective_bound / self.scale,
        )
