"""Sweeps: solve many (model, cluster, workload) cases in parallel, durably and resumably.

>>> from solver.sweep import sweep, cartesian, family_models
>>> cases = cartesian(family_models("gpt", ["1b", "7b"]), ["seed-4x8-h100"], ["train-gpt-s2048"])
>>> summary = sweep(cases, out="results/", time_limit_s=5)          # doctest: +SKIP
>>> summary.statuses                                                # doctest: +SKIP
{'OPTIMAL': 2}

Modules: :mod:`.cases` (case lists, case files, keys), :mod:`.families` (models from scaling
rules), :mod:`.executors` (local process pool, Ray), :mod:`.store` (results.jsonl, CSV),
:mod:`.summary` (best plan per model x cluster, heat map), :mod:`.runner` (:func:`sweep`).
"""

from __future__ import annotations

from .cases import Case, cartesian, cases_from_file, split_list
from .executors import LocalExecutor, RayExecutor, SolveSettings, solve_case
from .families import FAMILIES, MEGATRON_2021_TABLE1, family_models, gpt_model
from .runner import SweepProgress, SweepSummary, sweep
from .store import read_results
from .summary import best_rows, load_directory, plot_heatmap

__all__ = [
    "FAMILIES",
    "MEGATRON_2021_TABLE1",
    "Case",
    "LocalExecutor",
    "RayExecutor",
    "SolveSettings",
    "SweepProgress",
    "SweepSummary",
    "best_rows",
    "cartesian",
    "cases_from_file",
    "family_models",
    "gpt_model",
    "load_directory",
    "plot_heatmap",
    "read_results",
    "solve_case",
    "split_list",
    "sweep",
]
