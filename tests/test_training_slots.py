"""The CP model leaves out stage slots no solution can use, and nothing else changes.

``TrainingModel._useful_slots`` bounds the pipeline depth by what an active slot needs: an
option allowed for the DP degree that holds at least one block there (the tight big-M), at
its smallest TP degree, all within one replica's GPUs.  A 405B model on 16,384 GPUs then has
19 slots instead of 126 (the presolve and the proofs shrink with them).  Checked here against
the model with every slot, on sub-problems where the bound bites and where it does not.
"""

from __future__ import annotations

import dataclasses

import pytest
from ortools.sat.python import cp_model

from solver import load_cluster, load_model, load_workload
from solver.cpsat.subproblems import families
from solver.cpsat.tables.build import build_tables, stages_limit
from solver.cpsat.tables.family import choose_unit, min_block_seconds
from solver.cpsat.training.data import TrainTables
from solver.cpsat.training.model import TrainingModel

CASES = [
    ("tiny-gpt", "tiny-hetero", "train-tiny"),
    ("gpt-1.7b", "h100x2-nvlink", "train-gpt-s2048"),
    ("llama3-70b", "selene-a100-64", "train-llama-s8192"),  # the bound bites here
]


def _subproblems(model: str, cluster: str, workload: str, most: int = 32) -> list[TrainTables]:
    """1F1B sub-problems of the first families, one d each (d >= 2: a replica of 64 GPUs has
    40-slot models that take the full model too long to prove), at most ``most`` slots."""
    m, c, w = load_model(model), load_cluster(cluster), load_workload(workload)
    fams = [f for f in families(w) if f.virtual_stages == 1]
    unit = choose_unit(min_block_seconds(m, c, w, fams))
    out = []
    for fam in fams[:4]:
        tab = build_tables(m, c, w, fam, unit_s=unit)
        if tab is None:
            continue
        for d in [d for d in tab.dp_degrees if d >= 2][:3]:
            sub = dataclasses.replace(tab, dp_degrees=[d], zero_stage=fam.zero_stage)
            out.append(dataclasses.replace(sub, max_stages=min(stages_limit(sub, d), most)))
    return out


class _AllSlots(TrainingModel):
    """The model with every slot of ``max_stages``, as before the bound."""

    def _useful_slots(self) -> int:
        return self.t.max_stages


def _solve(cm: TrainingModel) -> tuple[str, float | None, int | None]:
    status, choice, _ = cm.solve(2.0, 1, 0, deterministic=True)
    name = cp_model.CpSolverStatus(status).name
    return (
        name,
        None if choice is None else choice.objective,
        (None if choice is None else len(choice.stages)),
    )


@pytest.mark.parametrize(("model", "cluster", "workload"), CASES)
def test_fewer_slots_same_optimum(model: str, cluster: str, workload: str) -> None:
    cut = 0
    for sub in _subproblems(model, cluster, workload):
        small, full = TrainingModel(sub), _AllSlots(sub)
        assert full.J == sub.max_stages and small.J <= full.J
        cut += small.J < full.J
        a, b = _solve(small), _solve(full)
        if "UNKNOWN" in (a[0], b[0]) or "FEASIBLE" in (a[0], b[0]):
            continue  # not proven either way within the budget
        assert a[:2] == b[:2], (sub.dp_degrees, small.J, full.J, a, b)
        if b[2] is not None:
            assert b[2] <= small.J  # the full model's optimum uses no slot left out
    if model == "llama3-70b":
        assert cut > 0  # the bound bites on these


def test_useful_slots_never_below_a_feasible_depth() -> None:
    """The deepest pipeline the full model allows (maximise the active slots) fits in the
    slots kept."""
    for sub in _subproblems("llama3-70b", "selene-a100-64", "train-llama-s8192"):
        small, full = TrainingModel(sub), _AllSlots(sub)
        # Maximise the depth in the full model.
        full.m.maximize(sum(full.active))
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = 2.0
        solver.parameters.num_workers = 1
        status = solver.solve(full.m)
        if status == cp_model.OPTIMAL:
            depth = sum(solver.boolean_value(a) for a in full.active)
            assert depth <= small.J
