"""The typed Python API (issue 18, item 7): the facade's signatures, the typed ``Result`` and
its ``ReportModel``, and the one exception hierarchy (never a raw pydantic error)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import solver
from solver import planner
from solver.errors import SpecError
from solver.evaluate import Report
from solver.result import ReportModel, Result, Status

ROOT = Path(__file__).resolve().parent.parent
TINY = ("tiny-gpt", "tiny-2x4-a100", "train-tiny")
MODEL = {
    "name": "typed-gpt",
    "num_layers": 4,
    "hidden_size": 256,
    "ffn_hidden_size": 1024,
    "num_attention_heads": 4,
    "num_kv_heads": 4,
    "vocab_size": 1024,
    "mlp": "gelu",
    "tied_embeddings": True,
}


@pytest.fixture(scope="module")
def solved() -> Result:
    return solver.plan(*TINY, time_limit_s=5, num_workers=1)


def _params(fn: Any) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())


def test_plan_keywords_mirror_the_planner() -> None:
    facade, inner = _params(solver.plan), _params(planner.plan)
    assert [p.name for p in facade[:3]] == ["model", "cluster", "workload"]
    keywords = [(p.name, p.kind, p.default, str(p.annotation)) for p in facade[3:]]
    expected = [(p.name, p.kind, p.default, str(p.annotation)) for p in inner[3:]]
    assert sorted(keywords) == sorted(expected)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in facade[3:])
    assert inspect.signature(solver.plan).return_annotation == "Result"
    assert inspect.signature(solver.evaluate).return_annotation == "Report"
    assert "Any" not in str(inspect.signature(solver.plan))
    assert "Any" not in str(inspect.signature(solver.evaluate)).replace("dict[str, Any]", "")


def test_exports() -> None:
    for name in ("Result", "ReportModel", "Status", "Report", "ShardwiseError", "InvalidInput"):
        assert name in solver.__all__ and hasattr(solver, name), name
    assert {"ModelError", "SpecError", "plan", "evaluate"} <= set(solver.__all__)
    assert (ROOT / "solver" / "py.typed").is_file()


def test_one_exception_hierarchy() -> None:
    assert SpecError is solver.InvalidInput is solver.SpecError
    assert issubclass(solver.InvalidInput, solver.ShardwiseError)
    assert issubclass(solver.InvalidInput, ValueError)
    assert issubclass(solver.ModelError, solver.ShardwiseError)
    assert issubclass(solver.ModelError, RuntimeError)
    assert not issubclass(solver.ModelError, ValueError)
    assert str(solver.InvalidInput("seed:\n must be\tan integer")) == "seed: must be an integer"


def test_plan_returns_a_typed_result(solved: Result) -> None:
    assert isinstance(solved, solver.Result) and solved.status is Status.OPTIMAL
    rep = solved.report
    assert isinstance(rep, ReportModel)
    assert rep.feasible is True and rep["feasible"] is True
    assert rep.tokens_per_s is not None and rep.tokens_per_s > 0
    assert rep["tokens_per_s"] == rep.tokens_per_s == rep.get("tokens_per_s")
    assert rep.step_time_s == rep["step_time_s"] and rep.num_gpus == 8
    assert rep.kind == "training"
    # A training report has no inference keys (as the dict had none); their attributes are None.
    assert "ttft_ms" not in rep and rep.ttft_ms is None and rep.get("ttft_ms", "-") == "-"
    with pytest.raises(KeyError):
        rep["ttft_ms"]
    assert list(rep) == list(rep.keys()) and len(rep) == len(rep.to_dict())
    assert dict(rep.items()) == rep.to_dict() == dict(rep)


def test_report_is_the_evaluators_document(solved: Result) -> None:
    assert solved.plan is not None and solved.report is not None
    fresh = solver.evaluate(*TINY, solved.plan)
    assert isinstance(fresh, Report)
    assert solved.report == fresh.to_dict()
    assert math.isclose(solved.report.tokens_per_s or 0.0, fresh.tokens_per_s or -1.0)
    doc = json.loads(json.dumps(solved.to_dict()))
    assert doc["report"] == solved.report.to_dict()
    assert doc["report"]["tokens_per_s"] == solved.report.tokens_per_s


def test_result_converts_a_dict_report() -> None:
    res = Result(status=Status.OPTIMAL, report={"feasible": True, "tokens_per_s": 2, "x": [1]})
    assert isinstance(res.report, ReportModel)
    assert res.report.tokens_per_s == 2.0 and res.report["x"] == [1]
    assert list(res.report) == ["feasible", "tokens_per_s", "x"]
    assert Result(status=Status.OPTIMAL, report={"items": 3}).report == {"items": 3}
    again = dataclasses.replace(res, report={"feasible": False})
    assert isinstance(again.report, ReportModel) and again.report.feasible is False
    assert Result(status="UNKNOWN").status is Status.UNKNOWN  # type: ignore[arg-type]
    with pytest.raises(solver.InvalidInput, match=r"report: feasible: must be true or false"):
        Result(status=Status.OPTIMAL, report={"feasible": "perhaps"})


def test_raise_for_status() -> None:
    ok = Result(status=Status.FEASIBLE)
    assert ok.raise_for_status() is ok
    assert Result(status=Status.INFEASIBLE).raise_for_status().status is Status.INFEASIBLE
    with pytest.raises(solver.InvalidInput, match="precision: no pool"):
        Result(status=Status.INVALID_INPUT, message="precision: no pool").raise_for_status()
    with pytest.raises(solver.ModelError, match="disagreed"):
        Result(status=Status.MODEL_ERROR, message="disagreed on 1 plan").raise_for_status()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"time_limit_s": -1}, "time_limit_s"),
        ({"time_limit_s": float("nan")}, "time_limit_s"),
        ({"time_limit_s": "5"}, "time_limit_s"),
        ({"seed": 2**31}, "seed"),
        ({"seed": True}, "seed"),
        ({"num_workers": 0}, "num_workers"),
        ({"deterministic": "yes"}, "deterministic"),
        ({"advice": 1}, "advice"),
        ({"compare_baseline": None}, "compare_baseline"),
        ({"engine": 3}, "engine"),
    ],
)
def test_bad_keywords_raise_invalid_input(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(solver.InvalidInput) as info:
        solver.plan(*TINY, **kwargs)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, solver.ShardwiseError)
    assert str(err).startswith(f"{field}: ") and "\n" not in str(err)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_layers": "four"}, "num_layers"),
        ({"num_layers": True}, "num_layers"),
        ({"hidden_size": [256]}, "hidden_size"),
        ({"tied_embeddings": "yes"}, "tied_embeddings"),
        ({"num_layerz": 4}, "num_layerz"),
    ],
)
def test_a_bad_spec_is_invalid_input_not_a_validation_error(
    change: dict[str, Any], field: str
) -> None:
    model = {**MODEL, **change}
    for call in (
        lambda: solver.plan(model, *TINY[1:], time_limit_s=1),
        lambda: solver.evaluate(model, *TINY[1:], {"kind": "training"}),
    ):
        with pytest.raises(solver.InvalidInput) as info:
            call()
        assert isinstance(info.value, ValueError) and field in str(info.value)
        assert "validation error" not in str(info.value)  # pydantic's own wording


@pytest.mark.parametrize("ref", [5, None, True, [1], 2.5])
def test_a_spec_of_the_wrong_type_is_invalid_input(ref: Any) -> None:
    with pytest.raises(solver.InvalidInput, match=r"^model: must be a Model, a name"):
        solver.plan(ref, *TINY[1:], time_limit_s=1)
    with pytest.raises(solver.InvalidInput, match=r"^plan: must be a Plan, a name"):
        solver.evaluate(*TINY, ref)


def test_spec_objects_are_revalidated() -> None:
    cluster = solver.load_cluster(TINY[1])
    with pytest.raises(solver.InvalidInput, match=r"^model: must be a Model, .* got a Cluster"):
        solver.plan(cluster, *TINY[1:], time_limit_s=1)  # type: ignore[arg-type]
    # model_copy(update=...) skips validation: the facade checks the object again.
    broken = solver.load_model(TINY[0]).model_copy(update={"num_layers": "x"})
    with pytest.raises(solver.InvalidInput, match=r"<model>: num_layers: must be an integer"):
        solver.plan(broken, *TINY[1:], time_limit_s=1)


def test_an_unloadable_spec_is_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    for ref in (bad, tmp_path / "missing.yaml", "no-such-cluster"):
        with pytest.raises(solver.InvalidInput):
            solver.plan(TINY[0], ref, TINY[2], time_limit_s=1)


def test_mypy_accepts_typed_usage(tmp_path: Path) -> None:
    """A user's typed code type-checks against the facade (and a wrong keyword does not)."""
    pytest.importorskip("mypy")
    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            import solver

            def speed() -> float | None:
                try:
                    res: solver.Result = solver.plan("tiny-gpt", "c", "w", time_limit_s=5.0)
                except solver.InvalidInput as e:
                    raise SystemExit(str(e)) from None
                if res.status is solver.Status.OPTIMAL and res.report is not None:
                    value: float | None = res.report.tokens_per_s
                    return value if value is not None else res.report["tokens_per_s"]
                return None
            """
        )
    )
    bad = tmp_path / "bad.py"
    bad.write_text('import solver\nsolver.plan("m", "c", "w", time_limit=5)\n')
    cmd = [sys.executable, "-m", "mypy", "--no-error-summary", str(good), str(bad)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ": error:" in ln]
    assert [ln for ln in lines if "good.py" in ln] == []
    assert any("bad.py" in ln and "time_limit" in ln for ln in lines), out.stdout
