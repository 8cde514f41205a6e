"""TP communication overlap (issue 15, item 3): the decomposition arithmetic, what each
mechanism does to a block, the evaluator and the CP tables charging the same exposed TP time,
the planner's optimum under overlap, and the engines / exporters that launch it."""

from __future__ import annotations

from pathlib import Path

import builders
import pytest
from builders import H100, cluster, pool, train

from solver import costmodel as cm
from solver.baselines.exhaustive import exhaustive_best
from solver.catalog import gpu_of
from solver.construction import build_stages
from solver.costmodel import tp_overlap as tpo
from solver.costmodel.stack import stack_of
from solver.cpsat.tables.build import build_tables
from solver.cpsat.tables.family import Family
from solver.engines import ENGINES, engine_supports, engine_violations
from solver.errors import SpecError
from solver.evaluate import evaluate
from solver.evaluate.links import tp_link
from solver.export import EngineCannotExpress, export_plan
from solver.io import load_cluster, load_model, load_plan, load_workload
from solver.planner import plan
from solver.result import Status
from solver.specs import Cluster, Model, Plan, ReplicaGroup, TrainingWorkload

US = 1e-6
GOLDEN_PLAN = Path(__file__).resolve().parent / "golden" / "export" / "train-llama70-uneven.json"


# ------------------------------------------------------------------------------------------
# Decomposition arithmetic (Wang et al. ASPLOS '23)
# ------------------------------------------------------------------------------------------
def test_allgather_pipeline_hides_behind_all_but_one_gemm_chunk() -> None:
    # 8 shards: 7/8 of the GEMM can hide transfers; a GEMM of 8/7 T hides T entirely.
    assert tpo.allgather_pipeline_exposed(1.0, 8.0 / 7.0, 8) == pytest.approx(0.0)
    assert tpo.allgather_pipeline_exposed(1.0, 0.8, 8) == pytest.approx(1.0 - 0.7)
    assert tpo.allgather_pipeline_exposed(1.0, 0.0, 8) == pytest.approx(1.0)
    assert tpo.allgather_pipeline_exposed(1.0, 5.0, 1) == pytest.approx(1.0)  # nothing to split


def test_reduce_scatter_pipeline_always_exposes_its_last_chunk() -> None:
    # A GEMM far longer than the transfer still leaves the last of k chunks' transfer exposed.
    assert tpo.reduce_scatter_pipeline_exposed(1.0, 100.0, 4) == pytest.approx(0.25)
    # Transfer-bound: g + (k-1) t + t - G with g = G/k.
    assert tpo.reduce_scatter_pipeline_exposed(1.0, 0.4, 4) == pytest.approx(0.1 + 1.0 - 0.4)
    # An SM margin slows the GEMM: the slowdown is exposed too.
    slow = tpo.reduce_scatter_pipeline_exposed(1.0, 100.0, 4, gemm_slowdown=1.1)
    assert slow == pytest.approx(0.25 + 10.0)


def test_bulk_overlap_is_the_longer_of_the_two() -> None:
    assert tpo.bulk_exposed(1.0, 3.0, 1.0) == 0.0
    assert tpo.bulk_exposed(2.0, 1.0, 1.0) == pytest.approx(1.0)
    assert tpo.bulk_exposed(0.5, 1.0, 1.2) == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------
# One block
# ------------------------------------------------------------------------------------------
LLAMA = load_model("llama3-8b")


def _terms(
    mode: str,
    *,
    tp: int = 8,
    sp: bool = True,
    mb: int = 2,
    kernels: str = "fused",
    precision: str = "bf16",
    recipe: str = "tensorwise",
) -> tpo.TpOverlapTerms:
    wl = train(
        batch=8, seq=4096, elementwise_kernels=kernels, precision=precision, fp8_recipe=recipe
    )
    clus = load_cluster("seed-4x8-h100")
    p = clus.pools[0]
    return tpo.block_tp_overlap(
        LLAMA,
        gpu_of(p),
        tp=tp,
        micro_batch=mb,
        seq=4096,
        sequence_parallel=sp,
        precision=precision,
        tp_link=tp_link(p),
        stack=stack_of(wl),
        mode=mode,
    )


def test_nothing_overlaps_without_tp_or_sequence_parallelism() -> None:
    for mode in tpo.TP_OVERLAPS:
        assert _terms(mode, tp=1) == tpo.NO_OVERLAP
        assert _terms(mode, sp=False) == tpo.NO_OVERLAP


def test_vanilla_tp_copies_only_on_pytorch_native_stacks_with_a_batch() -> None:
    assert _terms("none") == tpo.NO_OVERLAP  # Megatron-Core gathers on dim 0
    eager = _terms("none", kernels="eager")
    assert eager.hidden_fwd == eager.hidden_bwd == 0.0
    # One read + write of the full buffer per collective at the HBM rate: on NVSwitch a
    # fraction of the collective (H100: 2 x 2 B / 3.35 TB/s vs 7/8 x 2 B / 360 GB/s).
    assert 1.1 < eager.exposed_fwd == eager.exposed_bwd < 2.0
    one = _terms("none", kernels="eager", mb=1)  # the gather is a view, the scatter copies
    assert 1.0 < one.exposed_fwd < eager.exposed_fwd
    assert _terms("none", kernels="compiled_blocks") == eager


def test_fp8_travels_where_the_engine_casts_before_gathering() -> None:
    """torchtitan tensorwise: forward all-gathers in FP8 (2 of 4 collectives at half the
    bytes); rowwise and Megatron-Core without userbuffers: 16-bit; TE userbuffers: FP8 both
    ways."""
    b = 1000.0
    native = stack_of(train(elementwise_kernels="compiled_blocks", precision="fp8"))
    rowwise = stack_of(
        train(elementwise_kernels="compiled_blocks", precision="fp8", fp8_recipe="rowwise")
    )
    fused = stack_of(train(precision="fp8", fp8_recipe="delayed"))
    assert tpo.all_gather_bytes(b, "fp8", native, "none") == (500.0, 1000.0)
    assert tpo.all_gather_bytes(b, "fp8", native, "async_tp") == (500.0, 1000.0)
    assert tpo.all_gather_bytes(b, "fp8", rowwise, "none") == (1000.0, 1000.0)
    assert tpo.all_gather_bytes(b, "fp8", fused, "none") == (1000.0, 1000.0)
    assert tpo.all_gather_bytes(b, "fp8", fused, "megatron_userbuffers") == (500.0, 500.0)
    assert tpo.all_gather_bytes(b, "bf16", native, "none") == (1000.0, 1000.0)
    tw = _terms("none", kernels="compiled_blocks", precision="fp8")
    bf = _terms("none", kernels="compiled_blocks", precision="bf16")
    # Half the bytes (and half the gather copy) on 2 of the 4 forward collectives.
    assert tw.exposed_fwd < bf.exposed_fwd and tw.exposed_bwd == bf.exposed_bwd


def test_userbuffers_hides_most_of_a_large_block_and_no_more_than_all() -> None:
    t = _terms("megatron_userbuffers")
    assert 0.5 < t.hidden_fwd <= 1.0 and 0.5 < t.hidden_bwd <= 1.0
    assert 0.0 <= t.exposed_fwd < 0.5 and 0.0 <= t.exposed_bwd < 0.5


def test_async_tp_scales_the_ideal_overlap_by_its_efficiency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tpo, "ASYNC_TP_OVERLAP_EFFICIENCY", 0.0)
    none = _terms("async_tp", kernels="compiled_blocks")
    monkeypatch.setattr(tpo, "ASYNC_TP_OVERLAP_EFFICIENCY", 1.0)
    ideal = _terms("async_tp", kernels="compiled_blocks")
    monkeypatch.setattr(tpo, "ASYNC_TP_OVERLAP_EFFICIENCY", 0.5)
    half = _terms("async_tp", kernels="compiled_blocks")
    # Nothing hidden at 0, and no layout copies (the fused ops gather in place).
    assert none == tpo.TpOverlapTerms(exposed_fwd=1.0, exposed_bwd=1.0)
    assert 0.0 < ideal.hidden_fwd <= 1.0
    assert ideal.exposed_fwd == pytest.approx(1.0 - ideal.hidden_fwd)
    assert half.hidden_fwd == pytest.approx(0.5 * ideal.hidden_fwd)


def test_overlapped_block_moves_only_tp_time() -> None:
    blk = cm.PassTime(10.0, 20.0, 2.0, 3.0, 1.0, 2.0)
    terms = tpo.TpOverlapTerms(exposed_fwd=0.6, exposed_bwd=0.85, hidden_fwd=0.5, hidden_bwd=0.25)
    out, hidden = tpo.overlapped_block(blk, terms)
    # forward 2 s at 0.6; backward: its own 2 s at 0.85, the recomputed 1 s at 0.6.
    assert out.tp_comm_fwd_s == pytest.approx(1.2)
    assert out.tp_comm_bwd_s == pytest.approx(1.7 + 0.6)
    assert hidden == pytest.approx(0.5 * 3.0 + 0.25 * 2.0)
    assert out.fwd_s - out.tp_comm_fwd_s == pytest.approx(8.0)
    assert out.bwd_s - out.tp_comm_bwd_s == pytest.approx(17.0)
    assert (out.flops_fwd, out.hw_flops) == (1.0, 2.0)
    assert tpo.overlapped_block(blk, tpo.NO_OVERLAP) == (blk, 0.0)


# ------------------------------------------------------------------------------------------
# Evaluator and CP tables
# ------------------------------------------------------------------------------------------
def _tp_plan(clus: Cluster, tp: int = 4, mb: int = 1, m: int = 2) -> Plan:
    """One replica of one stage: TP ``tp`` with sequence parallelism over 4 blocks."""
    stages = build_stages(clus, [(1, [(clus.pools[0].name, tp, 4)])])[0]
    grp = ReplicaGroup(
        count=1,
        micro_batch_size=mb,
        num_micro_batches=m,
        recompute="none",
        zero_stage=1,
        sequence_parallel=True,
        stages=stages,
    )
    return Plan(kind="training", replica_groups=[grp])


def _gpt4() -> Model:
    return builders.gpt(4, 2048, 16)


def test_evaluator_reports_hidden_and_exposed_tp_time() -> None:
    clus = cluster(pool("h100", H100, gpn=4))
    base = train(batch=2, seq=2048, sp=(True,))
    ub = base.model_copy(update={"tp_comm_overlap": "megatron_userbuffers"})
    p = _tp_plan(clus)
    r0, r1 = evaluate(_gpt4(), clus, base, p), evaluate(_gpt4(), clus, ub, p)
    b0, b1 = r0.time_breakdown[0], r1.time_breakdown[0]
    assert b0["tp_comm_hidden_s"] == 0.0 and b1["tp_comm_hidden_s"] > 0.0
    # Compute is untouched; exposed + hidden = the block collectives' time + userbuffers'
    # GEMM slowdown (>= the vanilla total).
    assert b1["compute_s"] == pytest.approx(b0["compute_s"])
    assert b1["tp_comm_s"] < b0["tp_comm_s"] <= b1["tp_comm_s"] + b1["tp_comm_hidden_s"] + 1e-12
    assert r1.step_time_s < r0.step_time_s
    assert r1.details["tp_comm_overlap"] == "megatron_userbuffers"


@pytest.mark.parametrize("mode", ["none", "megatron_userbuffers", "async_tp"])
def test_cp_tables_charge_the_evaluators_block_time(mode: str) -> None:
    """The stage table's per-block time is the evaluator's overlapped block, to the unit."""
    clus = cluster(pool("h100", H100, gpn=4))
    model = _gpt4()
    wl = train(
        batch=2, seq=2048, sp=(True,), elementwise_kernels="compiled_blocks", tp_comm_overlap=mode
    )
    fam = Family(micro_batch=1, recompute="none", sequence_parallel=True, zero_stage=1)
    tables = build_tables(model, clus, wl, fam, unit_s=US)
    assert tables is not None
    opt = next(o for o in tables.options if o.tp == 4)
    p = clus.pools[0]
    kw = dict(tp=4, micro_batch=1, seq=2048, precision="bf16", tp_link=tp_link(p))
    gpu = gpu_of(p)
    blk = cm.block_time(
        model, gpu, recompute="none", sequence_parallel=True, stack=stack_of(wl), **kw
    )
    terms = tpo.block_tp_overlap(
        model, gpu, sequence_parallel=True, stack=stack_of(wl), mode=mode, **kw
    )
    want = tpo.overlapped_block(blk, terms)[0]
    assert opt.t_layer == round((want.fwd_s + want.bwd_s) / US)
    assert opt.b_layer == round(want.bwd_s / US)
    if mode == "megatron_userbuffers":
        assert want.total_s < blk.total_s


def test_planner_optimum_under_userbuffers_is_the_evaluators() -> None:
    """OPTIMAL with userbuffers is not beaten by any plan of the space on the evaluator, and
    its objective is the evaluator's (the tables mirror the evaluator's overlapped TP).  One
    sequence per step: DP 1, so the four GPUs split the model, and TP 4 with sequence
    parallelism wins -- faster than the same space without the overlap."""
    model = _gpt4()
    clus = cluster(pool("h100", H100, gpn=4))
    wl = train(batch=1, seq=2048, sp=(True, False), tp_comm_overlap="megatron_userbuffers")
    res = plan(model, clus, wl, time_limit_s=20, num_workers=1, compare_baseline=False)
    assert res.status == Status.OPTIMAL and res.plan is not None and res.objective is not None
    grp = res.plan.replica_groups[0]
    assert [s.tp for s in grp.stages] == [4] and grp.sequence_parallel
    _, truth, _ = exhaustive_best(model, clus, wl)
    assert truth is not None and truth <= res.objective * (1 + 1e-6)
    rep = evaluate(model, clus, wl, res.plan)
    assert rep.tokens_per_s == pytest.approx(res.objective)
    plain = wl.model_copy(update={"tp_comm_overlap": "none"})
    base = plan(model, clus, plain, time_limit_s=20, num_workers=1, compare_baseline=False)
    assert base.objective is not None and res.objective > base.objective * 1.05


# ------------------------------------------------------------------------------------------
# Inputs, engines, exporters
# ------------------------------------------------------------------------------------------
def test_async_tp_without_compile_is_a_spec_error() -> None:
    doc = dict(kind="training", global_batch_size=8, sequence_length=256)
    with pytest.raises(SpecError, match=r"tp_comm_overlap: async_tp needs torch.compile") as e:
        load_workload({**doc, "tp_comm_overlap": "async_tp"})
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="tp_comm_overlap"):
        load_workload({**doc, "tp_comm_overlap": "userbuffers"})
    ok = load_workload(
        {**doc, "tp_comm_overlap": "async_tp", "elementwise_kernels": "compiled_blocks"}
    )
    assert isinstance(ok, TrainingWorkload) and ok.tp_comm_overlap == "async_tp"


def _golden() -> tuple[Plan, Model, TrainingWorkload]:
    """The golden export plan of Llama 3 70B (TP 8 with sequence parallelism, PP 2)."""
    wl = load_workload("train-llama-s8192")
    assert isinstance(wl, TrainingWorkload)
    return load_plan(GOLDEN_PLAN), load_model("llama3-70b"), wl


@pytest.mark.parametrize("target", ["megatron", "torchrun", "deepspeed"])
def test_engines_without_async_tp_refuse_it_in_one_line(target: str) -> None:
    plan_, model, wl = _golden()
    wl = wl.model_copy(
        update={"tp_comm_overlap": "async_tp", "elementwise_kernels": "compiled_blocks"}
    )
    lines = engine_violations(plan_, model, target, wl)
    assert any(line.startswith("tp_comm_overlap async_tp has no") for line in lines), lines
    assert not engine_supports(ENGINES[target], wl)


@pytest.mark.parametrize(
    ("recipe", "ok"), [("rowwise", False), ("delayed", True), ("tensorwise", True)]
)
def test_megatron_launches_only_transformer_engine_fp8_recipes(recipe: str, ok: bool) -> None:
    plan_, model, wl = _golden()
    wl = wl.model_copy(update={"precision": "fp8", "fp8_recipe": recipe})
    for target in ("megatron", "torchrun"):
        lines = [x for x in engine_violations(plan_, model, target, wl) if "fp8_recipe" in x]
        assert (not lines) is ok, lines
        assert engine_supports(ENGINES[target], wl) is ok
    if not ok:
        with pytest.raises(EngineCannotExpress) as err:
            export_plan(plan_, "megatron", model=model, cluster="seed-4x8-h100", workload=wl)
        msg = str(err.value)
        assert "fp8_recipe rowwise" in msg and "Megatron-LM" in msg


def test_megatron_writes_tp_comm_overlap_only_with_sequence_parallelism() -> None:
    plan_, model, wl = _golden()
    ub = wl.model_copy(update={"tp_comm_overlap": "megatron_userbuffers"})
    text = export_plan(plan_, "megatron", model=model, cluster="seed-4x8-h100", workload=ub).text
    assert "--tp-comm-overlap" in text and "--sequence-parallel" in text
    grp = plan_.replica_groups[0].model_copy(update={"sequence_parallel": False})
    no_sp = plan_.model_copy(update={"replica_groups": [grp]})
    text = export_plan(no_sp, "megatron", model=model, cluster="seed-4x8-h100", workload=ub).text
    assert "--tp-comm-overlap" not in text
    plain = export_plan(plan_, "megatron", model=model, cluster="seed-4x8-h100", workload=wl).text
    assert "--tp-comm-overlap" not in plain


def test_evaluation_table_shows_the_hidden_tp_time_only_when_some_is_hidden() -> None:
    """`evaluate`/`explain` render the overlapped TP time beside the exposed one."""
    from rich.console import Console

    from solver.report.render import time_breakdown_table

    clus = cluster(pool("h100", H100, gpn=4))
    base = train(batch=2, seq=2048, sp=(True,))
    ub = base.model_copy(update={"tp_comm_overlap": "megatron_userbuffers"})
    p = _tp_plan(clus)

    def text(wl: TrainingWorkload) -> str:
        con = Console(width=200, record=True)
        con.print(time_breakdown_table(evaluate(_gpt4(), clus, wl, p).to_dict()))
        return con.export_text()

    assert "TP hidden" not in text(base)
    shown = text(ub)
    assert "TP hidden (overlapped)" in shown


def test_no_engine_message_names_each_engines_missing_field() -> None:
    """With no launchable engine the INFEASIBLE line names the field each engine lacks
    (here the TP overlap), not precision or memory policy."""
    wl = load_workload("train-tiny").model_copy(
        update={"tp_comm_overlap": "async_tp", "elementwise_kernels": "compiled_blocks"}
    )
    r = plan(
        load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), wl, time_limit_s=5, advice=False
    )
    assert r.status == Status.INFEASIBLE
    first = r.message.split("; plan with engine")[0]
    assert "\n" not in first
    for title in ("Megatron-LM", "DeepSpeed"):
        assert f"{title}: tp_comm_overlap async_tp has no {title} setting" in first
    assert "memory_policy" not in first and "precision" not in first


def test_named_engine_refusal_names_the_tp_overlap_not_the_precision() -> None:
    """Asking Megatron-LM for async TP is refused on the field it lacks (one line)."""
    wl = load_workload("train-tiny").model_copy(
        update={"tp_comm_overlap": "async_tp", "elementwise_kernels": "compiled_blocks"}
    )
    r = plan(
        load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), wl, time_limit_s=5,
        advice=False, engine="megatron",
    )  # fmt: skip
    assert r.status == Status.INVALID_INPUT
    assert r.message == (
        "engine: tp_comm_overlap async_tp has no Megatron-LM setting (it launches "
        "megatron_userbuffers, none)"
    )
