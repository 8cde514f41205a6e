"""Pareto fronts: the trade-offs behind one objective, by re-solving along a sweep.

Inference: **latency vs throughput.**  The planner is re-solved for the most output tokens/s
under a grid of TPOT (time per output token) targets, from the lowest TPOT the cluster can
reach (a ``min_latency`` solve) up to the TPOT of the unconstrained throughput optimum (a
``max_throughput`` solve without a TPOT SLO); the targets in between follow a geometric grid
walked down from the throughput end, each also just below the TPOT the previous solve reached
(the epsilon-constraint method), so no solve re-finds the previous plan.  The TTFT SLO,
the batch sizes and the precision of the workload are kept; its own ``tpot_ms``, objective and
throughput target are what the sweep replaces.

Training: **throughput vs GPUs** (or dollars per hour).  The planner is re-solved for the
most tokens/s on copies of the cluster with fewer nodes: every pool scaled by the same fraction
``k / points`` (rounded to whole NVLink domains, at least one); the x value of a point is what
its plan actually uses (``num_gpus``, or ``cost_per_hour`` with ``by='cost'``), not the size of
the cluster it was given.

Both keep only non-dominated points (no other point is at least as good on both axes and
better on one) and return them sorted by x.  Every point is a real plan, verified by the
evaluator like any :func:`solver.planner.plan` result; points whose solve found no plan are
listed in ``skipped`` with the planner's status and message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SpecError
from .specs import Cluster, InferenceWorkload, Model, Plan, TrainingWorkload

__all__ = ["ParetoFront", "ParetoPoint", "non_dominated", "pareto_front"]

AnyWorkload = TrainingWorkload | InferenceWorkload
Axis = Literal["tpot_ms", "num_gpus", "cost_per_hour"]

#: Fewest points a sweep may ask for: the two ends of the range.
MIN_POINTS = 2

#: Each TPOT target is at least this much (relative) below the TPOT the previous solve reached,
#: so the evaluator's ``tpot <= tpot_ms`` check excludes that plan; far above float noise, far
#: below any difference between two plans worth showing.
TPOT_STEP_RTOL = 1e-4

_AXIS_LABELS: dict[str, str] = {
    "tpot_ms": "TPOT (ms per output token)",
    "num_gpus": "GPUs used",
    "cost_per_hour": "cost ($ per hour)",
}


@dataclass(frozen=True)
class ParetoPoint:
    """One solved point of a sweep.

    ``x`` is the point's value on the front's x axis (``ParetoFront.x_key``), ``tokens_per_s``
    its throughput; ``target`` the sweep parameter that produced it (the TPOT target in ms, or
    the number of nodes the cluster was cut to).
    """

    x: float
    tokens_per_s: float
    target: float | None
    status: str
    num_gpus: int
    cost_per_hour: float | None
    ttft_ms: float | None
    tpot_ms: float | None
    step_time_s: float | None
    shape: str
    plan: Plan

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "tokens_per_s": self.tokens_per_s,
            "target": self.target,
            "status": self.status,
            "num_gpus": self.num_gpus,
            "cost_per_hour": self.cost_per_hour,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "step_time_s": self.step_time_s,
            "shape": self.shape,
            "plan": self.plan.model_dump(mode="json", exclude_none=True),
        }


@dataclass(frozen=True)
class ParetoFront:
    """What :func:`pareto_front` returns; ``to_dict()`` is the ``shardwise pareto --json``
    document.

    Attributes
    ----------
    points
        The non-dominated points, sorted by ``x`` ascending (so ``tokens_per_s`` increases
        strictly along the list).
    solved
        Every point that produced a plan, dominated ones included, in sweep order.
    skipped
        ``{target, status, message}`` of every solve that produced no plan.
    """

    model: str
    cluster: str
    kind: str
    x_key: str
    x_label: str
    y_key: str
    y_label: str
    points: list[ParetoPoint]
    solved: list[ParetoPoint]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    time_s: float = 0.0
    x_limit: float | None = None  #: the workload's own limit on x (its TPOT SLO), if any

    @property
    def dominated(self) -> list[ParetoPoint]:
        """Solved points that are not on the front."""
        return [p for p in self.solved if all(p is not q for q in self.points)]

    def to_dict(self) -> dict[str, Any]:
        from .report.documents import to_jsonable

        doc: dict[str, Any] = to_jsonable(
            {
                "model": self.model,
                "cluster": self.cluster,
                "kind": self.kind,
                "x": {"key": self.x_key, "label": self.x_label},
                "y": {"key": self.y_key, "label": self.y_label},
                "points": [p.to_dict() for p in self.points],
                "dominated": [p.to_dict() for p in self.dominated],
                "skipped": self.skipped,
                "x_limit": self.x_limit,
                "time_s": self.time_s,
            }
        )
        return doc


def non_dominated(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The points no other point dominates (smaller x is better, larger tokens/s is better),
    sorted by x ascending; of exact duplicates the first is kept."""
    ordered = sorted(points, key=lambda p: (p.x, -p.tokens_per_s))
    front: list[ParetoPoint] = []
    for p in ordered:
        if not front or p.tokens_per_s > front[-1].tokens_per_s:
            if front and p.x == front[-1].x:
                continue  # same x, and the earlier one has at least this throughput
            front.append(p)
    return front


def _shape(plan: Plan) -> str:
    """``'4x h100 TP8 PP1 b32'`` (replicas, pools, TP, PP, batch); groups joined by ``' + '``."""
    out = []
    for g in plan.replica_groups:
        tps = "/".join(str(t) for t in sorted({s.tp for s in g.stages}))
        pools = "/".join(dict.fromkeys(s.pool for s in g.stages))
        text = f"{g.count}x {pools} TP{tps} PP{g.pp}"
        if g.batch_size is not None:
            text += f" b{g.batch_size}"
        elif g.micro_batch_size is not None:
            text += f" mb{g.micro_batch_size} {g.recompute}"
        out.append(text)
    return " + ".join(out)


def _point(result: Any, x_key: str, target: float | None) -> ParetoPoint | None:
    rep = result.report or {}
    x = rep.get(x_key)
    tps = rep.get("tokens_per_s")
    if result.plan is None or not isinstance(x, int | float) or not isinstance(tps, int | float):
        return None
    if not rep.get("feasible"):  # a MODEL_ERROR plan the evaluator rejects is no trade-off
        return None
    return ParetoPoint(
        x=float(x),
        tokens_per_s=float(tps),
        target=target,
        status=result.status.value,
        num_gpus=int(rep.get("num_gpus") or 0),
        cost_per_hour=rep.get("cost_per_hour"),
        ttft_ms=rep.get("ttft_ms"),
        tpot_ms=rep.get("tpot_ms"),
        step_time_s=rep.get("step_time_s"),
        shape=_shape(result.plan),
        plan=result.plan,
    )


def _geometric(lo: float, hi: float, n: int) -> list[float]:
    if n <= 1 or hi <= lo:
        return [lo]
    r = (hi / lo) ** (1.0 / (n - 1))
    return [lo * r**i for i in range(n)]


def _node_counts(cluster: Cluster, points: int) -> list[tuple[int, ...]]:
    """Per-pool node counts for fractions k/points of the cluster, k = 1..points (distinct,
    ascending, whole NVLink domains, at least one domain per pool)."""
    out: list[tuple[int, ...]] = []
    for k in range(1, points + 1):
        counts = []
        for pool in cluster.pools:
            dom = pool.nvlink_domain_nodes
            domains = pool.nodes // dom
            counts.append(max(1, round(domains * k / points)) * dom)
        t = tuple(counts)
        if t not in out:
            out.append(t)
    return out


def pareto_front(
    model: Model,
    cluster: Cluster,
    workload: AnyWorkload,
    *,
    points: int = 6,
    time_limit_s: float = 5.0,
    seed: int = 0,
    num_workers: int | None = None,
    deterministic: bool = False,
    by: Literal["gpus", "cost"] = "gpus",
) -> ParetoFront:
    """Sweep the planner to map a trade-off; see the module docstring for what is swept.

    Parameters
    ----------
    model, cluster, workload
        Validated specs.
    points
        Solves along the sweep (default 6, at least 2).  Inference adds nothing; the two ends
        are among them.  Training may solve fewer when fractions round to the same cluster.
    time_limit_s
        Planner time limit per solve (default 5 s).
    seed, num_workers, deterministic
        Passed to every :func:`solver.planner.plan` call.
    by
        Training only: the x axis, ``'gpus'`` (default) or ``'cost'`` (dollars per hour; every
        pool needs ``cost_per_gpu_hour``).

    Returns
    -------
    ParetoFront
        Empty ``points`` (with ``skipped`` saying why) when no solve found a plan.

    Raises
    ------
    SpecError
        ``points < 2``, a non-positive time limit, ``by='cost'`` without prices, or bad input
        found while solving.
    """
    import time

    from .planner import plan as solve
    from .result import Status

    if points < MIN_POINTS:
        raise SpecError(f"points: must be >= {MIN_POINTS}, got {points}")
    if not time_limit_s > 0:
        raise SpecError(f"time_limit_s: must be > 0, got {time_limit_s:g}")
    start = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        time_limit_s=time_limit_s,
        seed=seed,
        num_workers=num_workers,
        deterministic=deterministic,
        compare_baseline=False,
    )
    solved: list[ParetoPoint] = []
    skipped: list[dict[str, Any]] = []

    def run(m_cluster: Cluster, wl: AnyWorkload, x_key: str, target: float | None) -> Any:
        result = solve(model, m_cluster, wl, **kwargs)
        if result.status == Status.INVALID_INPUT:
            raise SpecError(result.message or "invalid input")
        pt = _point(result, x_key, target)
        if pt is None:
            skipped.append(
                {"target": target, "status": result.status.value, "message": result.message}
            )
        else:
            solved.append(pt)
        return result

    if isinstance(workload, InferenceWorkload):
        x_key = "tpot_ms"
        base = {"target_throughput_tokens_per_s": None, "tpot_ms": None}
        fastest = run(
            cluster, workload.model_copy(update=base | {"objective": "min_latency"}), x_key, None
        )
        widest = run(
            cluster, workload.model_copy(update=base | {"objective": "max_throughput"}), x_key, None
        )
        lo = (fastest.report or {}).get("tpot_ms")
        hi = (widest.report or {}).get("tpot_ms")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and hi > lo:
            # Interior targets, walking down from the throughput end; each target is also
            # below the TPOT the previous solve reached, so every solve yields a new point
            # (the epsilon-constraint method) instead of re-finding the previous plan.
            last = float(hi)
            for grid_target in reversed(_geometric(float(lo), float(hi), points)[1:-1]):
                target = min(grid_target, last * (1.0 - TPOT_STEP_RTOL))
                if target <= float(lo):
                    break
                wl = workload.model_copy(
                    update=base | {"objective": "max_throughput", "tpot_ms": target}
                )
                result = run(cluster, wl, x_key, target)
                reached = (result.report or {}).get("tpot_ms")
                if isinstance(reached, int | float):
                    last = float(reached)
    else:
        x_key = "num_gpus" if by == "gpus" else "cost_per_hour"
        if by == "cost":
            for i, pool in enumerate(cluster.pools):
                if pool.cost_per_gpu_hour is None:
                    raise SpecError(
                        f"pools[{i}].cost_per_gpu_hour: required for --by cost, got None"
                    )
        wl_t = workload.model_copy(update={"objective": "max_throughput"})
        for counts in _node_counts(cluster, points):
            pools = [
                p.model_copy(update={"nodes": n})
                for p, n in zip(cluster.pools, counts, strict=True)
            ]
            sub = cluster.model_copy(update={"pools": pools})
            run(sub, wl_t, x_key, float(sum(counts)))
    front = non_dominated(solved)
    return ParetoFront(
        model=model.name,
        cluster=cluster.name,
        kind=workload.kind,
        x_key=x_key,
        x_label=_AXIS_LABELS[x_key],
        y_key="tokens_per_s",
        y_label="throughput (tokens/s)" if workload.kind == "training" else "output tokens/s",
        points=front,
        solved=solved,
        skipped=skipped,
        time_s=time.perf_counter() - start,
        x_limit=workload.tpot_ms if isinstance(workload, InferenceWorkload) else None,
    )
