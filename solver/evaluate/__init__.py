"""The evaluator: plan -> report, numpy only (imports no ortools and nothing of the planner).

``evaluate(model, cluster, workload, plan, calibration=None) -> Report`` prices a plan with
:mod:`solver.costmodel` over the links its devices actually use and checks every rule with one
``check_*`` function each.  ``link_between``, ``tp_link``, ``nic_link``, ``dp_links`` expose
the link pricing so the planner precomputes exactly what the evaluator will charge.
"""

from __future__ import annotations

from .calibration import gpu_with_calibration
from .checks import (
    check_batch,
    check_devices,
    check_divisibility,
    check_kind,
    check_layers,
    check_memory,
    check_precision,
    check_slo,
    check_tp_domain,
)
from .evaluator import evaluate
from .ledger import training_memory_ledger
from .links import (
    DPLinks,
    dp_links,
    fabric_link,
    link_between,
    nic_link,
    parse_node,
    slowest,
    tp_link,
)
from .report import Report

__all__ = [
    "DPLinks",
    "Report",
    "check_batch",
    "check_devices",
    "check_divisibility",
    "check_kind",
    "check_layers",
    "check_memory",
    "check_precision",
    "check_slo",
    "check_tp_domain",
    "dp_links",
    "evaluate",
    "fabric_link",
    "gpu_with_calibration",
    "link_between",
    "nic_link",
    "parse_node",
    "slowest",
    "tp_link",
    "training_memory_ledger",
]
