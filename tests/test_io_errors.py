"""Loading specs from files and names (solver.io): malformed files, missing files, name lookup.

Every bad input must raise :class:`solver.SpecError` with a one-line message that names the file,
the field and the offending value; the cases live in ``tests/malformed_cases.py`` so the CLI
tests can run the very same files (and check exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from malformed_cases import CASES, VALID, Case

from solver import SpecError
from solver.io import find_spec, load_cluster, load_model, load_plan, load_workload

LOADERS: dict[str, Callable[[Any], Any]] = {
    "model": load_model,
    "cluster": load_cluster,
    "workload": load_workload,
    "plan": load_plan,
}
ROOT = Path(__file__).resolve().parent.parent


def _load_error(kind: str, ref: Any) -> str:
    with pytest.raises(SpecError) as info:
        LOADERS[kind](ref)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


def test_enough_malformed_cases() -> None:
    """The shared list covers at least 30 distinct malformed inputs of every kind."""
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c[1] for c in CASES} == set(LOADERS)
    assert {Path(c[2]).suffix for c in CASES} == {".yaml", ".json"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_file(tmp_path: Path, case: Case) -> None:
    """A malformed file raises SpecError: one line naming the file, the field and the value."""
    _id, kind, filename, text, expected = case
    path = tmp_path / filename
    path.write_text(text)
    msg = _load_error(kind, path)
    assert msg.startswith(f"{path}: "), msg
    for sub in expected:
        assert sub in msg, (sub, msg)


@pytest.mark.parametrize("kind", ["model", "cluster", "training", "inference", "plan"])
def test_valid_bases_load(tmp_path: Path, kind: str) -> None:
    """The documents the malformed cases start from are themselves valid (YAML and JSON)."""
    loader = LOADERS["workload" if kind in ("training", "inference") else kind]
    for suffix, dump in ((".yaml", yaml.safe_dump), (".json", json.dumps)):
        path = tmp_path / f"ok{suffix}"
        path.write_text(dump(VALID[kind]))
        loader(path)
        loader(VALID[kind])


@pytest.mark.parametrize("kind", list(LOADERS))
def test_file_not_found(tmp_path: Path, kind: str) -> None:
    """A path that does not exist names the path."""
    missing = tmp_path / "nope.yaml"
    msg = _load_error(kind, missing)
    assert str(missing) in msg and "not found" in msg


def test_unknown_name_lists_where_it_looked() -> None:
    """A bare name that resolves to nothing names itself and the folders searched."""
    msg = _load_error("model", "no-such-model-xyz")
    assert "no-such-model-xyz" in msg and "models" in msg
    msg = _load_error("cluster", "no-such-cluster-xyz")
    assert "no-such-cluster-xyz" in msg and "instances" in msg


def test_unreadable_binary_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a SpecError, not a UnicodeDecodeError."""
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "UTF-8" in _load_error("model", path)


def test_dict_input_is_labelled_by_kind() -> None:
    """Dict input is reported as <model>, <cluster>, <workload>, <plan> (not '<models>')."""
    bad = {**VALID["model"], "hidden_size": 0}
    assert _load_error("model", bad).startswith("<model>: hidden_size: ")
    bad_cluster = {**VALID["cluster"], "pools": []}
    assert _load_error("cluster", bad_cluster).startswith("<cluster>: pools: ")
    assert _load_error("workload", {"kind": "nope"}).startswith("<workload>: kind: ")
    assert _load_error("plan", {"kind": "training"}).startswith("<plan>: replica_groups: ")


def test_unknown_gpu_in_dict_cluster_names_pool() -> None:
    """An unknown catalog GPU is reported with the pool index and a close match."""
    data = json.loads(json.dumps(VALID["cluster"]))
    data["pools"][1]["gpu"] = "A100-80"
    msg = _load_error("cluster", data)
    assert msg.startswith("<cluster>: pools[1].gpu: unknown GPU 'A100-80'")
    assert "did you mean 'A100-SXM4-80GB'" in msg


def test_name_resolution_finds_repo_files() -> None:
    """Names resolve to models/<name>.yaml and instances/<name>.yaml of this checkout."""
    m = load_model("llama3-70b")
    assert m.name == "llama3-70b" and m.num_layers == 80
    assert find_spec("llama3-70b", "models/") == ROOT / "models" / "llama3-70b.yaml"
    assert load_cluster("seed-4x8-h100").num_gpus == 32
    assert load_workload("infer-chat-slo").kind == "inference"


def test_shardwise_home_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$SHARDWISE_HOME/models is searched first, so a user's file shadows the shipped one."""
    (tmp_path / "models").mkdir()
    mine = {**VALID["model"], "name": "llama3-70b"}
    (tmp_path / "models" / "llama3-70b.yaml").write_text(yaml.safe_dump(mine))
    (tmp_path / "models" / "only-here.json").write_text(json.dumps(VALID["model"]))
    monkeypatch.setenv("SHARDWISE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert load_model("llama3-70b").num_layers == VALID["model"]["num_layers"]
    assert load_model("only-here").name == VALID["model"]["name"]
    monkeypatch.delenv("SHARDWISE_HOME")
    assert load_model("llama3-70b").num_layers == 80


def test_current_directory_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SHARDWISE_HOME, ./instances/<name>.yaml of the working directory is found."""
    (tmp_path / "instances").mkdir()
    (tmp_path / "instances" / "my-train.yaml").write_text(yaml.safe_dump(VALID["training"]))
    monkeypatch.delenv("SHARDWISE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_workload("my-train").kind == "training"


def test_plan_json_document_with_plan_key(tmp_path: Path) -> None:
    """`plan --json` output ({"status", "plan", ...}) loads as the plan it contains."""
    path = tmp_path / "out.json"
    path.write_text(json.dumps({"status": "OPTIMAL", "plan": VALID["plan"], "report": {}}))
    assert load_plan(path).replica_groups[0].count == 2


def test_spec_error_is_always_one_line() -> None:
    """SpecError folds any newline in its message (e.g. from a YAML problem) into spaces."""
    assert str(SpecError("a\nb\r\n  c")) == "a b c"
    assert isinstance(SpecError("x"), ValueError)
