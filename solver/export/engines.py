"""Engine rules live in :mod:`solver.engines` (the planner reads them too); re-exported here."""

from __future__ import annotations

from ..engines import (
    ENGINES,
    TARGETS,
    EngineRules,
    GroupShape,
    engine_allows,
    engine_violations,
    group_shape,
    shape_violations,
)

__all__ = [
    "ENGINES",
    "TARGETS",
    "EngineRules",
    "GroupShape",
    "engine_allows",
    "engine_violations",
    "group_shape",
    "shape_violations",
]
