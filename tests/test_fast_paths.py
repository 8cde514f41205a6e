"""The fast paths of the evaluator, placement, rubric and CP model give what the slow ones gave.

Large plans (16,384 GPUs) made the planner spend most of its time walking devices one by one:
the evaluator's device checks, link pricing and DP topology, the rubric's dozen full
evaluations, placement and the CP model's 126 stage slots.  Each fast path here is compared
with the straightforward computation it replaces, on valid plans and on every kind of broken
one, so the speed-ups cannot change a report, a plan or a model's solutions.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from builders import training_plan

from solver.baselines import rubric as rubric_mod
from solver.baselines.rubric import rubric_plan, rubric_plan_scored
from solver.construction import build_stages, check_stages
from solver.evaluate import boundary as boundary_mod
from solver.evaluate import checks, evaluate, training_memory_ledger
from solver.evaluate import evaluator as evaluator_mod
from solver.evaluate.links import LinkTier, link_between, parse_node, slowest
from solver.io import load_cluster, load_model, load_workload
from solver.placement import PlacementError, StageSlot, check_placement, place
from solver.specs import Cluster, Plan, Stage, TrainingWorkload

MODEL = load_model("gpt-1.7b")
SELENE = load_cluster("selene-a100-64")
HETERO = load_cluster("hetero-mix")
TRAIN = load_workload("train-gpt-s2048")


def _plan(cluster: Cluster, shape: list[tuple[str, int, int]], count: int, **kw: Any) -> Plan:
    stages = build_stages(cluster, [(count, shape)])[0]
    knobs: dict[str, Any] = {"recompute": "selective", "zero_stage": 1, "sequence_parallel": True}
    return training_plan(stages, count=count, m=TRAIN.global_batch_size // count, **(knobs | kw))


def _valid_plans() -> list[tuple[Cluster, Plan]]:
    """Plans of several shapes: TP 1..8, PP 1..4, DP across nodes, mixed TP, two pools."""
    out = [
        (SELENE, _plan(SELENE, [("dgx-a100", 8, 24)], 8)),
        (SELENE, _plan(SELENE, [("dgx-a100", 2, 12), ("dgx-a100", 2, 12)], 16)),
        (SELENE, _plan(SELENE, [("dgx-a100", 4, 10), ("dgx-a100", 1, 6), ("dgx-a100", 2, 8)], 8)),
        (SELENE, _plan(SELENE, [("dgx-a100", 1, 24)], 64)),
        (SELENE, _plan(SELENE, [("dgx-a100", 8, 6)] * 4, 2, zero_stage=3)),
    ]
    pools = [p.name for p in HETERO.pools]
    out.append((HETERO, _plan(HETERO, [(pools[0], 2, 12), (pools[1], 4, 12)], 4)))
    return out


def _broken(plan: Plan, cluster: Cluster) -> list[Plan]:
    """One plan per kind of device problem (and a few combinations)."""
    base = plan.model_dump(mode="json")
    other = [p.name for p in cluster.pools if p.name != plan.replica_groups[0].stages[0].pool]

    def devs(d: dict[str, Any], s: int = 0) -> list[list[list[Any]]]:
        out: list[list[list[Any]]] = d["replica_groups"][0]["stages"][s]["devices"]
        return out

    edits = [
        lambda d: devs(d, -1)[-1].__setitem__(0, devs(d)[0][0]),  # a GPU used twice
        lambda d: devs(d)[0][0].__setitem__(0, "nosuch-3"),  # unknown pool
        lambda d: devs(d)[0][0].__setitem__(1, 99),  # GPU index out of range
        lambda d: devs(d)[0][0].__setitem__(0, devs(d)[0][0][0].rpartition("-")[0] + "-9999"),
        lambda d: devs(d)[0][0].__setitem__(0, devs(d)[0][0][0].replace("-", "-0")),  # "x-07"
        lambda d: devs(d)[0].pop(),  # tp - 1 devices
        lambda d: devs(d).pop(),  # count - 1 replicas
        lambda d: devs(d)[0].__setitem__(0, devs(d)[-1][-1]),  # TP group across nodes
        lambda d: d["replica_groups"][0]["stages"][0].__setitem__("pool", "nosuch"),
    ]
    if other:
        edits.append(lambda d: devs(d)[0][0].__setitem__(0, other[0] + "-0"))  # wrong pool
    out = []
    for edit in edits:
        d = copy.deepcopy(base)
        try:
            edit(d)
        except IndexError:
            continue
        out.append(Plan.model_validate(d))
    return out


CASES = [
    pytest.param(c, p, id=f"{i}-{j}")
    for i, (cl, pl) in enumerate(_valid_plans())
    for j, (c, p) in enumerate([(cl, pl)] + [(cl, b) for b in _broken(pl, cl)])
]


@pytest.mark.parametrize(("cluster", "plan"), CASES)
def test_device_check_fast_path_agrees_with_full_walk(cluster: Cluster, plan: Plan) -> None:
    """The set-based pass says "clean" only when the full walk finds nothing to report (it
    may send a plan down the full walk that turns out clean: a node named ``'<pool>-07'``)."""
    problems = checks._device_problems(cluster, plan)
    if checks._devices_clean(cluster, plan):
        assert not problems
    assert checks.check_devices(cluster, plan) == problems


def _tp_domain_reference(cluster: Cluster, plan: Plan) -> list[str]:
    """check_tp_domain as it was: parse every device of every TP group."""
    out: list[str] = []
    for g, grp in enumerate(plan.replica_groups):
        for s, st in enumerate(grp.stages):
            for r, devs in enumerate(st.devices):
                try:
                    parsed = [parse_node(cluster, n) for n, _ in devs]
                except ValueError:
                    continue
                if not parsed:
                    continue
                pools = {p.name for p, _ in parsed}
                nodes = sorted({i for _, i in parsed})
                if len(pools) > 1:
                    out.append(f"group {g} stage {s} replica {r}: TP group spans pools {sorted(pools)}")
                    continue
                pool = parsed[0][0]
                dom = {i // pool.nvlink_domain_nodes for i in nodes}
                if len(nodes) > 1 and len(dom) > 1:
                    out.append(
                        f"group {g} stage {s} replica {r}: TP group spans nodes {nodes} of pool "
                        f"{pool.name!r}, outside one NVLink domain of {pool.nvlink_domain_nodes} node(s)"
                    )
    return out


@pytest.mark.parametrize(("cluster", "plan"), CASES)
def test_tp_domain_check_agrees_with_reference(cluster: Cluster, plan: Plan) -> None:
    assert checks.check_tp_domain(cluster, plan) == _tp_domain_reference(cluster, plan)


def _boundary_reference(cluster: Cluster, a: Stage, b: Stage) -> LinkTier:
    """_boundary_link as it was: every rank pair, keyed by (node, node, same GPU)."""
    pairs: dict[tuple[str, str, bool], tuple[Sequence[object], Sequence[object]]] = {}
    for da, db in zip(a.devices, b.devices, strict=False):
        for j in range(max(len(da), len(db))):
            if da and db:
                ea, eb = da[j % len(da)], db[j % len(db)]
                pairs.setdefault((str(ea[0]), str(eb[0]), tuple(ea) == tuple(eb)), (ea, eb))
    return slowest(link_between(cluster, ea, eb) for ea, eb in pairs.values())


@pytest.mark.parametrize(("cluster", "plan"), CASES)
def test_boundary_link_agrees_with_reference(cluster: Cluster, plan: Plan) -> None:
    """Node-pair classes price every stage boundary as the rank-by-rank walk did (also when
    the two stages share a GPU, the free local link)."""
    if not evaluator_mod._devices_parse(cluster, plan):
        pytest.skip("devices do not parse: the evaluator prices no links")
    stages = plan.replica_groups[0].stages
    for a, b in itertools.pairwise(list(stages) + [stages[0]]):
        link = boundary_mod._boundary_link(cluster, a, b, None)
        assert link == _boundary_reference(cluster, a, b)


@pytest.mark.parametrize(("cluster", "plan"), CASES)
def test_memory_ledger_is_the_evaluators(cluster: Cluster, plan: Plan) -> None:
    """training_memory_ledger gives the evaluator's own ledger rows (when it prices the plan)."""
    rep = evaluate(MODEL, cluster, TRAIN, plan)
    if rep.memory_ledger:
        assert training_memory_ledger(MODEL, cluster, TRAIN, plan) == rep.memory_ledger


def test_memory_ledger_ignores_devices() -> None:
    """The ledger of a plan is the same with its devices stripped (the rubric's pre-filter)."""
    for cluster, plan in _valid_plans():
        rep = evaluate(MODEL, cluster, TRAIN, plan)
        bare = plan.model_dump(mode="json")
        for st in bare["replica_groups"][0]["stages"]:
            st["devices"] = []
        assert training_memory_ledger(MODEL, cluster, TRAIN, Plan.model_validate(bare)) == (
            rep.memory_ledger
        )


# --- placement ---------------------------------------------------------------------------------
def _place_reference(
    cluster: Cluster, groups: Sequence[tuple[int, Sequence[StageSlot]]]
) -> list[list[list[list[tuple[str, int]]]]]:
    """place() as it was: one device at a time, names formatted per device."""
    requests: dict[str, list[tuple[int, int, int, int]]] = {}
    for g, (count, stages) in enumerate(groups):
        for s, st in enumerate(stages):
            for r in range(count):
                requests.setdefault(st.pool, []).append((st.tp, g, s, r))
    out: list[list[list[list[tuple[str, int]]]]] = [
        [[[] for _ in range(count)] for _ in stages] for count, stages in groups
    ]
    for pool_name, reqs in requests.items():
        pool = cluster.pool(pool_name)
        gpn, dn = pool.gpus_per_node, pool.nvlink_domain_nodes
        domain = gpn * dn
        reqs.sort(key=lambda q: -q[0])
        cursor = 0
        for tp, g, s, r in reqs:
            if tp > domain:
                raise PlacementError(f"stage {s}: tp={tp} exceeds the NVLink domain")
            align = tp if tp <= gpn else gpn
            if cursor % align:
                cursor += align - cursor % align
            if tp > gpn and (cursor // gpn) // dn != ((cursor + tp - 1) // gpn) // dn:
                cursor = ((cursor // domain) + 1) * domain
            if cursor + tp > pool.num_gpus:
                raise PlacementError(f"pool {pool_name}: full")
            out[g][s][r] = [
                (f"{pool.name}-{(cursor + i) // gpn}", (cursor + i) % gpn) for i in range(tp)
            ]
            cursor += tp
    return out


PLACEMENTS = [
    [(8, [StageSlot("dgx-a100", 8)])],
    [(4, [StageSlot("dgx-a100", 2), StageSlot("dgx-a100", 8), StageSlot("dgx-a100", 1)])],
    [(3, [StageSlot("dgx-a100", 4)]), (2, [StageSlot("dgx-a100", 2), StageSlot("dgx-a100", 8)])],
    [(64, [StageSlot("dgx-a100", 1)])],
    [(65, [StageSlot("dgx-a100", 1)])],  # one GPU too many
    [(1, [StageSlot("dgx-a100", 16)])],  # beyond the NVLink domain
    [(9, [StageSlot("dgx-a100", 8)])],
]


@pytest.mark.parametrize("groups", PLACEMENTS)
def test_place_and_check_placement_agree_with_reference(
    groups: list[tuple[int, list[StageSlot]]],
) -> None:
    try:
        expected = _place_reference(SELENE, groups)
    except PlacementError:
        with pytest.raises(PlacementError):
            place(SELENE, groups)
        with pytest.raises(PlacementError):
            check_placement(SELENE, groups)
        shape = [(c, [(s.pool, s.tp, 1) for s in st]) for c, st in groups]
        with pytest.raises(Exception, match="GPUs|domain"):
            check_stages(SELENE, shape)
        return
    assert place(SELENE, groups) == expected
    check_placement(SELENE, groups)


# --- rubric ------------------------------------------------------------------------------------
RUBRIC_CASES = [
    ("gpt-1.7b", "selene-a100-64", "train-gpt-s2048"),
    ("gpt-39b", "selene-a100-64", "train-gpt-s2048"),
    ("gpt-39b", "hetero-mix", "train-gpt-s2048"),
    ("llama3-70b", "seed-4x8-h100", "train-llama-s8192"),
    ("llama3.1-405b", "tiny-2x4-a100", "train-llama-s8192"),  # nothing fits
    ("llama3-70b", "seed-4x8-h100", "infer-chat-slo"),
]


@pytest.mark.parametrize(("m", "c", "w"), RUBRIC_CASES)
def test_rubric_prefilter_changes_nothing(
    m: str, c: str, w: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory pre-filter only skips candidates the full evaluation would reject too, and
    the report handed back is the evaluator's report of the plan."""
    model, cluster, wl = load_model(m), load_cluster(c), load_workload(w)
    fast = rubric_plan_scored(model, cluster, wl)
    monkeypatch.setattr(rubric_mod, "_cannot_fit", lambda *a: False)
    slow = rubric_plan(model, cluster, wl)
    if slow is None:
        assert fast is None
        return
    assert fast is not None
    plan, report = fast
    assert plan == slow
    if report is not None:
        assert report == evaluate(model, cluster, wl, plan).to_dict()
    if isinstance(wl, TrainingWorkload):
        assert report is not None  # the rubric scored it: the planner need not again


def test_rubric_prefilter_rejects_only_what_does_not_fit() -> None:
    """Every candidate the pre-filter rejects is over capacity in the full evaluation."""
    model, cluster, wl = load_model("llama3-70b"), SELENE, load_workload("train-llama-s8192")
    assert isinstance(wl, TrainingWorkload)
    rejected = 0
    for tp, pp in [(1, 1), (8, 1), (8, 2), (8, 4)]:
        d = 64 // (tp * pp)
        shape = [("dgx-a100", tp, n) for n in [80 // pp] * pp]
        for rc, z in itertools.product(("none", "selective", "full"), (0, 1)):
            plan = _plan(cluster, shape, d, recompute=rc, zero_stage=z,
                         num_micro_batches=wl.global_batch_size // d)
            if rubric_mod._cannot_fit(model, cluster, wl, plan):
                rejected += 1
                assert not rubric_mod.memory_ok(evaluate(model, cluster, wl, plan).to_dict())
    assert rejected > 0


def test_valid_plans_take_the_fast_path() -> None:
    """Valid plans never pay for the full walk (else the fast path would be dead code)."""
    for cluster, plan in _valid_plans():
        assert checks._devices_clean(cluster, plan)
