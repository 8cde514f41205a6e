"""Guarding library entry points: :func:`check_spec_arguments`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..errors import SpecError
from .cluster import Cluster
from .model import Model
from .plan import Plan
from .workload import InferenceWorkload, TrainingWorkload


def check_spec_arguments(**specs: Any) -> None:
    """Raise :class:`SpecError` naming the first argument that is not a validated spec.

    ``check_spec_arguments(model=m, cluster=c, workload=w)``: each value must be an instance
    of the spec class its name says (``workload``: training or inference), so a library entry
    point given a dict or a path fails with one line instead of an AttributeError deep inside.
    """
    expected: dict[str, tuple[type[BaseModel], ...]] = {
        "model": (Model,),
        "cluster": (Cluster,),
        "workload": (TrainingWorkload, InferenceWorkload),
        "plan": (Plan,),
    }
    for name, value in specs.items():
        kinds = expected[name]
        if not isinstance(value, kinds):
            raise SpecError(
                f"{name}: expected a {' or '.join(k.__name__ for k in kinds)} (load one with "
                f"solver.load_{name}), got {type(value).__name__}"
            )
