"""What one or more engines allow of a replica group's shape, for the planner.

A planner fixes the global knobs of a family (ZeRO stage, recompute, sequence parallelism,
virtual stages) and asks :func:`family_limits` what that engine then allows of the group's shape
(:class:`ShapeLimits`: one TP degree, one pool, which layer splits, at most one stage, TP 1);
:func:`non_dominated` and :func:`covering_engines` keep only the spaces no other one covers.
They read the same :class:`~solver.engines.rules.EngineRules` fields as the checks
(:mod:`solver.engines.checks`), through :func:`~solver.engines.rules.zero_limit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .rules import EngineRules, KvRule, LayerSplit, zero_limit

__all__ = ["ShapeLimits", "covering_engines", "family_limits", "non_dominated"]


_SPLIT_RANK: dict[str, int] = {"even": 0, "even_except_ends": 1, "any": 2}
_KV_RANK: dict[str, int] = {"divisible": 0, "divisible_or_replicated": 1}


@dataclass(frozen=True)
class ShapeLimits:
    """What one or more engines allow of a replica group's shape once a family's global knobs
    (ZeRO stage, recompute, sequence parallelism, virtual stages, precision) are fixed.

    Built by :func:`family_limits`; a planner turns it into constraints (the CP model's
    ``_engine`` rule, option filters and depth limits).
    """

    uniform_tp: bool
    single_pool: bool
    layer_split: LayerSplit
    kv_heads: KvRule
    max_pp: int | None = None
    """1: no pipeline parallelism with these knobs (DeepSpeed ZeRO-2/3); None: no limit."""
    max_tp: int | None = None
    """1: no tensor parallelism with these knobs (DeepSpeed ZeRO-3, SP without an SP
    setting); None: no limit."""
    engines: tuple[str, ...] = ()
    """The engines these are the limits of."""

    def _key(self) -> tuple[object, ...]:
        return (
            self.uniform_tp, self.single_pool, self.layer_split, self.kv_heads, self.max_pp,
            self.max_tp,
        )  # fmt: skip

    def covers(self, other: ShapeLimits) -> bool:
        """Whether every shape ``other`` allows is allowed here too."""

        def at_least(a: int | None, b: int | None) -> bool:
            return a is None or (b is not None and a >= b)

        split_ok = (
            other.max_pp == 1 or _SPLIT_RANK[self.layer_split] >= _SPLIT_RANK[other.layer_split]
        )
        return (
            (other.uniform_tp or not self.uniform_tp)
            and (other.single_pool or not self.single_pool)
            and split_ok
            and _KV_RANK[self.kv_heads] >= _KV_RANK[other.kv_heads]
            and at_least(self.max_pp, other.max_pp)
            and at_least(self.max_tp, other.max_tp)
        )

    def allows_stages(self, tp: Sequence[int], pools: Sequence[str], layers: Sequence[int]) -> bool:
        """Whether a pipeline of these stages (TP, pool and layers each) is allowed; the head
        rules are :meth:`allows_tp`'s."""
        pp = len(tp)
        if self.max_pp is not None and pp > self.max_pp:
            return False
        if self.max_tp is not None and max(tp) > self.max_tp:
            return False
        if self.uniform_tp and len(set(tp)) > 1:
            return False
        if self.single_pool and len(set(pools)) > 1:
            return False
        if self.layer_split == "even":
            return len(set(layers)) <= 1
        if self.layer_split == "even_except_ends":
            return pp <= 2 or len(set(layers[1:-1])) <= 1
        return True

    def allows_tp(self, tp: int, heads: int, kv: int) -> bool:
        """Whether a stage of TP degree ``tp`` is allowed (head rules and :attr:`max_tp`)."""
        if self.max_tp is not None and tp > self.max_tp:
            return False
        if heads and heads % tp:
            return False
        if not kv or kv % tp == 0:
            return True
        return self.kv_heads == "divisible_or_replicated" and tp % kv == 0


def family_limits(
    rules: EngineRules,
    *,
    zero_stage: int = 0,
    recompute: str = "none",
    sequence_parallel: bool = False,
    virtual_stages: int = 1,
    precision: str | None = None,
    memory_policy: str | None = None,
) -> ShapeLimits | None:
    """What ``rules`` allows of the group's shape under these global knobs, or None when the
    knobs themselves have no setting in the engine.

    Reads the same fields as :func:`~solver.engines.checks.shape_violations`: a ZeRO stage
    above the limit with PP (:func:`zero_limit`) allows only one stage, above the limit with TP
    only TP 1; sequence parallelism without an engine setting only TP 1 (where it is a no-op).
    """
    if precision is not None and precision not in rules.precisions:
        return None
    if (
        memory_policy is not None
        and rules.kind == "training"
        and memory_policy not in rules.memory_policies
    ):
        return None
    if virtual_stages > 1 and not rules.interleaved:
        return None
    max_pp: int | None = None
    max_tp: int | None = None
    if rules.kind == "training":
        if recompute not in rules.recompute or zero_stage > rules.max_zero_stage:
            return None
        if zero_stage > zero_limit(rules, 2, 1)[0]:
            max_pp = 1
        if zero_stage > zero_limit(rules, 1, 2)[0]:
            max_tp = 1
        if sequence_parallel and not rules.sequence_parallel:
            max_tp = 1
    if virtual_stages > 1 and max_pp == 1:
        return None  # interleaving needs a pipeline
    return ShapeLimits(
        uniform_tp=rules.uniform_tp,
        single_pool=rules.single_pool,
        layer_split=rules.layer_split,
        kv_heads=rules.kv_heads,
        max_pp=max_pp,
        max_tp=max_tp,
        engines=(rules.name,),
    )


def non_dominated(limits: Sequence[ShapeLimits]) -> list[ShapeLimits]:
    """The limits no other one covers, equal ones merged (their engines joined), in order.

    Solving under each of these covers the union of the engines' spaces: a space another
    covers adds no plan.
    """
    merged: dict[tuple[object, ...], ShapeLimits] = {}
    for lim in limits:
        key = lim._key()
        if key in merged:
            old = merged[key]
            names = old.engines + tuple(e for e in lim.engines if e not in old.engines)
            merged[key] = ShapeLimits(**{**old.__dict__, "engines": names})
        else:
            merged[key] = lim
    kept = list(merged.values())
    out: list[ShapeLimits] = []
    for i, a in enumerate(kept):
        if any(j != i and b.covers(a) and (not a.covers(b) or j < i) for j, b in enumerate(kept)):
            continue
        out.append(a)
    return out


def _rules_cover(a: EngineRules, b: EngineRules) -> bool:
    """Whether ``a`` launches every plan ``b`` launches (same kind; rank placement counted)."""
    if a.kind != b.kind or (a.places_ranks and a.name != b.name):
        return False
    la = family_limits(a)
    lb = family_limits(b)
    assert la is not None and lb is not None
    return (
        la.covers(lb)
        and (a.interleaved or not b.interleaved)
        and a.max_zero_stage >= b.max_zero_stage
        and a.max_zero_stage_with_pp >= b.max_zero_stage_with_pp
        and a.max_zero_stage_with_tp >= b.max_zero_stage_with_tp
        and a.recompute >= b.recompute
        and (a.sequence_parallel or not b.sequence_parallel)
        and a.memory_policies >= b.memory_policies
        and a.precisions >= b.precisions
        and a.tp_comm_overlaps >= b.tp_comm_overlaps
        and a.fp8_recipes >= b.fp8_recipes
    )


def covering_engines(engines: Sequence[EngineRules]) -> list[EngineRules]:
    """The engines of ``engines`` that no other one covers (:func:`_rules_cover`), in order:
    planning for each of them, and keeping the best, plans over the union of all of them."""
    out: list[EngineRules] = []
    for i, a in enumerate(engines):
        if any(
            j != i and _rules_cover(b, a) and (not _rules_cover(a, b) or j < i)
            for j, b in enumerate(engines)
        ):
            continue
        out.append(a)
    return out
