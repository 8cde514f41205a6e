"""What each launch target can express, as data, and the checks that read it.

A shardwise plan can say things no launcher can: a different TP degree on every pipeline stage,
stages on different GPU types, any layer split, ZeRO-3 under a pipeline.  Each engine's limits
are one :class:`EngineRules` record in :data:`ENGINES`; :func:`engine_violations` checks a whole
plan against them (one human line per violation) and :func:`engine_allows` checks one candidate
replica-group shape, so a planner can keep only the options an engine can launch.

The rules are checked per combination, never collapsed into the strictest single number: ZeRO-3
under DeepSpeed is refused *with pipeline parallelism* and *with tensor parallelism*, not
everywhere.  A planner fixes the global knobs of a family and asks :func:`family_limits` what
that engine then allows of the group's shape (:class:`ShapeLimits`); the exporter asks
:func:`engine_violations`; both read the same :class:`EngineRules` fields through
:func:`zero_limit` and the split and interleave checks.

This package is the public face: import every name from here (``from solver.engines import
ENGINES``).  Its modules, by concern:

* :mod:`~solver.engines.rules` -- the engines as sourced data: :class:`EngineRules`, the
  records in :data:`ENGINES` / :data:`TARGETS`, :data:`MEGATRON_VERSION` /
  :data:`MEGATRON_COMMIT`, the ``plan(engine=...)`` scopes :data:`LAUNCHABLE` and
  :data:`ANY_PLAN`, :func:`engines_for` and :func:`zero_limit`;
* :mod:`~solver.engines.shapes` -- :class:`GroupShape` (:func:`group_shape` of a replica group)
  and Megatron's interleaved layout (:func:`megatron_chunks`, :func:`megatron_layout_string`);
* :mod:`~solver.engines.limits` -- the planner's :class:`ShapeLimits` (:func:`family_limits`,
  :func:`non_dominated`, :func:`covering_engines`);
* :mod:`~solver.engines.checks` -- the violations: :func:`shape_violations`,
  :func:`engine_violations`, :func:`engine_allows`, :func:`launch_check`,
  :func:`workload_violations`, :func:`training_numerics_violations`, :func:`engine_supports`.
"""

from __future__ import annotations

from .checks import (
    engine_allows,
    engine_supports,
    engine_violations,
    launch_check,
    shape_violations,
    training_numerics_violations,
    workload_violations,
)
from .limits import ShapeLimits, covering_engines, family_limits, non_dominated
from .rules import (
    ANY_PLAN,
    ENGINES,
    LAUNCHABLE,
    MEGATRON_COMMIT,
    MEGATRON_VERSION,
    TARGETS,
    EngineRules,
    KvRule,
    LayerSplit,
    engines_for,
    zero_limit,
)
from .shapes import GroupShape, group_shape, megatron_chunks, megatron_layout_string

__all__ = [
    "ANY_PLAN",
    "ENGINES",
    "LAUNCHABLE",
    "MEGATRON_COMMIT",
    "MEGATRON_VERSION",
    "TARGETS",
    "EngineRules",
    "GroupShape",
    "KvRule",
    "LayerSplit",
    "ShapeLimits",
    "covering_engines",
    "engine_allows",
    "engine_supports",
    "engine_violations",
    "engines_for",
    "family_limits",
    "group_shape",
    "launch_check",
    "megatron_chunks",
    "megatron_layout_string",
    "non_dominated",
    "shape_violations",
    "training_numerics_violations",
    "workload_violations",
    "zero_limit",
]
