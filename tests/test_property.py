"""Hypothesis property: every instance is solved with an evaluator-clean plan, or honestly refused.

Random clusters (1-3 pools of catalog GPUs, 1-4 nodes of 1/2/4/8 GPUs, NVSwitch or PCIe),
small models (2-16 layers, width 256-2048, GeLU or SwiGLU, MHA or GQA, with or without a
vocabulary) and small workloads (training or inference, every objective, optional SLOs) go
through :func:`solver.planner.plan` with a 2 s budget.  The outcome must be one of:

* ``OPTIMAL`` / ``FEASIBLE``: the plan, re-scored from scratch by :func:`solver.evaluate.evaluate`,
  is feasible, meets any throughput target, and its objective is the one the result reports;
  the bound lies on the right side of the objective; an ``OPTIMAL`` plan is not beaten by the
  rubric baseline (the seed's rule of thumb, which lies inside the planner's search space)
  beyond the cost model's closed-form vs event-simulation tolerance;
* ``INFEASIBLE`` with a non-empty explanation, confirmed independently: the rubric baseline
  and the largest-DP uniform grid (:func:`solver.baselines.uniform_best`) find no feasible
  plan either;
* ``INVALID_INPUT`` with a message that names a field (``field: ...``);

and never an exception or ``MODEL_ERROR``.

Two properties share this oracle: over the whole space, and over one-node instances.  (The
whole-space one was a strict xfail while the CP model priced pipeline hand-offs on other
links than placement gives them; hops are now priced optimistically, and a plan with a hop
that placement put across nodes is reported with an honest bound, see
``test_pp_hop_priced_optimistically_falls_back_honestly``.)  Bugs with a simple input
trigger are steered around by :func:`avoid_known_bugs`, each with a strict-xfail regression
test at the end of this file, so the properties keep guarding everything else.

The profile is derandomized, so CI runs the same examples every time; raise the example count
with ``SHARDWISE_PROPERTY_EXAMPLES=300 pytest tests/test_property.py`` for a longer hunt.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from builders import train
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from solver import load_cluster, load_model, load_workload
from solver.baselines import uniform_best
from solver.catalog import gpu_names, gpu_of
from solver.construction import objective_of
from solver.evaluate import evaluate
from solver.plan_verify import OBJECTIVE_TOLERANCE
from solver.planner import plan
from solver.result import Result, Status
from solver.specs import (
    Cluster,
    InferenceWorkload,
    Link,
    Model,
    Nic,
    Pool,
    TrainingWorkload,
)

AnyWorkload = TrainingWorkload | InferenceWorkload

#: Planner budget per example: small instances solve in well under a second.
TIME_LIMIT_S = 2.0

#: Examples per run (CI default; ~1 s each on 2 cores).
MAX_EXAMPLES = int(os.environ.get("SHARDWISE_PROPERTY_EXAMPLES", "40"))

settings.register_profile(
    "shardwise-planner",
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Relative float noise allowed where two numbers come from the same evaluator report.
RTOL = 1e-9

# Link figures (GB/s per direction): NVLink 3/4 per GPU and PCIe Gen4 x16 effective, as in the
# bundled instances (instances/selene-a100.yaml, seed-4x8-h100.yaml, pcie-8x-l40s.yaml).
NVSWITCH_GBPS = (300.0, 450.0)
PCIE_GBPS = 25.0
# NIC figures: HDR 200 Gb/s, NDR 400 Gb/s, 100 GbE (instances/*.yaml).
NIC_GBPS = (12.5, 25.0, 50.0)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------
@st.composite
def pools(draw: st.DrawFn, name: str, max_nodes: int = 4) -> Pool:
    gpn = draw(st.sampled_from([1, 2, 4, 8]))
    if draw(st.booleans()):
        link = Link(
            kind="nvswitch", bandwidth_GBps=draw(st.sampled_from(NVSWITCH_GBPS)), latency_us=3
        )
    else:
        link = Link(kind="pcie", bandwidth_GBps=PCIE_GBPS, latency_us=5)
    return Pool(
        name=name,
        gpu=draw(st.sampled_from(gpu_names())),
        nodes=draw(st.integers(1, max_nodes)),
        gpus_per_node=gpn,
        intra_node=link,
        nic=Nic(
            count=draw(st.sampled_from([1, 2, gpn])), bandwidth_GBps=draw(st.sampled_from(NIC_GBPS))
        ),
        cost_per_gpu_hour=draw(st.one_of(st.none(), st.sampled_from([0.9, 1.8, 3.0]))),
    )


@st.composite
def clusters(draw: st.DrawFn, max_nodes: int = 4, max_pools: int = 3) -> Cluster:
    n = draw(st.integers(1, max_pools))
    return Cluster(name="random", pools=[draw(pools(f"p{i}", max_nodes)) for i in range(n)])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def models(draw: st.DrawFn) -> Model:
    hidden = 64 * draw(st.integers(4, 32))  # 256..2048
    heads = draw(st.sampled_from([d for d in _divisors(hidden) if hidden // d >= 32 and d <= 32]))
    kv = draw(st.sampled_from(_divisors(heads)))
    mlp = draw(st.sampled_from(["gelu", "swiglu"]))
    ffn = 4 * hidden if mlp == "gelu" else 64 * round(8 * hidden / 3 / 64)
    vocab = draw(st.one_of(st.just(0), st.integers(1000, 50000)))
    return Model(
        name="random",
        num_layers=draw(st.integers(2, 16)),
        hidden_size=hidden,
        ffn_hidden_size=ffn,
        num_attention_heads=heads,
        num_kv_heads=kv,
        vocab_size=vocab,
        mlp=mlp,
        tied_embeddings=draw(st.booleans()) and vocab > 0,
    )


def _nonempty_subset(values: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


@st.composite
def training_workloads(draw: st.DrawFn) -> TrainingWorkload:
    zero = draw(st.one_of(st.sampled_from([0, 1, 2, 3]), _nonempty_subset([0, 1, 2, 3])))
    return TrainingWorkload(
        kind="training",
        global_batch_size=draw(st.sampled_from([1, 2, 4, 8, 16, 32])),
        sequence_length=draw(st.sampled_from([128, 256, 512, 1024])),
        precision=draw(st.sampled_from(["bf16", "fp16", "fp8"])),
        memory_policy=draw(st.sampled_from(["megatron_bf16", "amp_fp16", "pure_bf16"])),
        zero_stage=zero,
        recompute=draw(_nonempty_subset(["none", "selective", "full"])),
        micro_batch_sizes=draw(_nonempty_subset([1, 2, 4])),
        sequence_parallel=draw(_nonempty_subset([True, False])),
        overlap_grad_reduce=draw(st.booleans()),
        objective=draw(st.sampled_from(["max_throughput", "min_cost"])),
    )


@st.composite
def inference_workloads(draw: st.DrawFn) -> InferenceWorkload:
    objective = draw(st.sampled_from(["max_throughput", "min_latency", "min_gpus", "min_cost"]))
    needs_target = objective in ("min_gpus", "min_cost")
    target = draw(st.sampled_from([100.0, 1000.0, 20000.0])) if needs_target else None
    return InferenceWorkload(
        kind="inference",
        prompt_tokens=draw(st.sampled_from([16, 128, 512, 2048])),
        output_tokens=draw(st.sampled_from([1, 16, 128, 256])),
        batch_size=draw(st.one_of(st.sampled_from([1, 4, 32]), _nonempty_subset([1, 8, 64]))),
        precision=draw(st.sampled_from(["bf16", "fp16", "fp8"])),
        ttft_ms=draw(st.one_of(st.none(), st.sampled_from([50.0, 500.0, 5000.0]))),
        tpot_ms=draw(st.one_of(st.none(), st.sampled_from([5.0, 50.0]))),
        objective=objective,
        target_throughput_tokens_per_s=target,
    )


workloads = st.one_of(training_workloads(), inference_workloads())


# --------------------------------------------------------------------------------------------
# Known planner bugs
# --------------------------------------------------------------------------------------------
# Each bug the property found has a minimal strict-xfail regression test below.  So that the
# property keeps guarding everything else, :func:`avoid_known_bugs` moves a drawn instance to
# its nearest bug-free neighbour (one knob changed, named after the regression test).  When a
# fix lands, its regression test XPASSes -- a failure under ``strict=True`` -- and the marker
# and the matching line of ``avoid_known_bugs`` go together.


def _supports(cluster: Cluster, precision: str) -> bool:
    for pool in cluster.pools:
        spec = gpu_of(pool)
        if precision == "fp8" and spec.fp8_tflops is None:
            return False
        if precision == "bf16" and not spec.supports_bf16:
            return False
    return True


def avoid_known_bugs(
    model: Model, cluster: Cluster, workload: AnyWorkload
) -> tuple[Model, AnyWorkload]:
    """The instance with each known-bug trigger replaced by its closest bug-free value."""
    # No known bug has a simple input trigger today (test_tp_respects_kv_heads was the last).
    return model, workload


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------
def _maximises(workload: AnyWorkload) -> bool:
    return workload.objective == "max_throughput"


def _feasible_objective(
    model: Model, cluster: Cluster, workload: AnyWorkload, report: dict[str, Any]
) -> float | None:
    """The objective of a plan the evaluator accepts (throughput target included), else None."""
    if not report["feasible"]:
        return None
    target = getattr(workload, "target_throughput_tokens_per_s", None)
    if target is not None and report["tokens_per_s"] < target * (1 - RTOL):
        return None
    return objective_of(report, workload)


def check_solved(model: Model, cluster: Cluster, workload: AnyWorkload, res: Result) -> None:
    assert res.plan is not None and res.objective is not None
    report = evaluate(model, cluster, workload, res.plan).to_dict()
    assert report["feasible"], report["violations"]
    obj = _feasible_objective(model, cluster, workload, report)
    assert obj is not None, ("below the throughput target", report["tokens_per_s"])
    assert abs(obj - res.objective) <= RTOL * max(abs(obj), 1.0), (obj, res.objective)
    if res.bound is not None:
        slack = OBJECTIVE_TOLERANCE * abs(res.objective)
        if _maximises(workload):
            assert res.bound >= res.objective - slack, (res.bound, res.objective)
        else:
            assert res.bound <= res.objective + slack, (res.bound, res.objective)
    target = getattr(workload, "target_throughput_tokens_per_s", None)
    base_ok = res.baseline is not None and (
        target is None or res.baseline["tokens_per_s"] >= target * (1 - RTOL)
    )
    if res.status == Status.OPTIMAL and res.baseline is not None and base_ok:
        base = float(res.baseline["objective"])
        # The rubric's plan lies in the planner's space; the planner optimises the closed-form
        # pipeline time, the evaluator simulates events, hence the tolerance.
        if _maximises(workload):
            assert res.objective >= base * (1 - OBJECTIVE_TOLERANCE), (res.objective, base)
        else:
            assert res.objective <= base * (1 + OBJECTIVE_TOLERANCE), (res.objective, base)


def check_infeasible(model: Model, cluster: Cluster, workload: AnyWorkload, res: Result) -> None:
    assert res.plan is None
    assert res.message.strip(), "INFEASIBLE without an explanation"
    # The planner's own rubric baseline found a feasible plan: INFEASIBLE is the wrong status.
    # (Result.baseline keeps any plan the evaluator accepts; a throughput target is checked here.)
    target = getattr(workload, "target_throughput_tokens_per_s", None)
    if res.baseline is not None and target is not None:
        assert res.baseline["tokens_per_s"] < target * (1 - RTOL), (
            "rubric meets the target",
            res.baseline,
        )
    else:
        assert res.baseline is None, ("rubric baseline is feasible", res.message, res.baseline)
    best, _ = uniform_best(model, cluster, workload, largest_dp_only=True)
    assert best is None, ("a uniform plan is feasible", res.message, best)


#: ``field: ...`` or ``pools[1].gpus_per_node: ...`` at the start of the message.
FIELD_MESSAGE = re.compile(r"^[A-Za-z_][\w\[\].]*: \S")


def check_invalid(res: Result) -> None:
    assert res.plan is None
    assert FIELD_MESSAGE.match(res.message), res.message


# Explicit examples (run first, every time) so each outcome branch of the oracle is exercised:
# a 1.0B-parameter model on one 24 GB L4 -- 18 GB of training state plus ~15 GB of activations
# (no recompute, micro-batch 4 x 1024 tokens) cannot fit, decoding reads 2 GB of weights per
# token (~8.7 ms) so a 5 ms TPOT SLO cannot be met, and min_cost without prices is bad input.
_WIDE = Model(
    name="wide", num_layers=16, hidden_size=2048, ffn_hidden_size=8192,
    num_attention_heads=32, num_kv_heads=32, vocab_size=50000, mlp="gelu",
)  # fmt: skip
_ONE_L4 = Cluster(
    name="one-l4",
    pools=[
        Pool(name="p0", gpu="L4", nodes=1, gpus_per_node=1,
             intra_node=Link(kind="pcie", bandwidth_GBps=PCIE_GBPS, latency_us=5),
             nic=Nic(count=1, bandwidth_GBps=12.5)),
    ],
)  # fmt: skip
_TRAIN_NO_FIT = TrainingWorkload(
    kind="training", global_batch_size=4, sequence_length=1024, recompute=["none"],
    micro_batch_sizes=[4],
)  # fmt: skip
EXPLICIT = [
    (_ONE_L4, _WIDE, _TRAIN_NO_FIT),  # INFEASIBLE: memory
    (
        _ONE_L4,
        _WIDE,
        InferenceWorkload(kind="inference", prompt_tokens=2048, output_tokens=16, tpot_ms=5.0),
    ),  # INFEASIBLE: SLO  # fmt: skip
    (_ONE_L4, _WIDE, _TRAIN_NO_FIT.model_copy(update={"objective": "min_cost"})),  # INVALID_INPUT
]


def with_explicit_examples(test: Any) -> Any:
    """Decorate a property with :data:`EXPLICIT` as ``@example`` cases."""
    for cluster, model, workload in EXPLICIT:
        test = example(cluster=cluster, model=model, workload=workload)(test)
    return test


def check_instance(cluster: Cluster, model: Model, workload: AnyWorkload) -> None:
    """The property itself, for one instance."""
    model, workload = avoid_known_bugs(model, cluster, workload)
    # any-plan: the infeasibility checks compare with baselines that ignore engine limits, so
    # the property is about the unrestricted search (tests/test_launchable.py covers the
    # launchable default).
    res = plan(
        model, cluster, workload, time_limit_s=TIME_LIMIT_S, deterministic=True, engine="any-plan"
    )
    assert res.status != Status.MODEL_ERROR, res.message
    if res.status in (Status.OPTIMAL, Status.FEASIBLE):
        check_solved(model, cluster, workload, res)
    elif res.status == Status.INFEASIBLE:
        check_infeasible(model, cluster, workload, res)
    else:
        assert res.status == Status.INVALID_INPUT
        check_invalid(res)


@settings(
    settings.get_profile("shardwise-planner"),
    phases=[Phase.explicit, Phase.generate],  # stop at the first failure: no shrinking in CI
    report_multiple_bugs=False,
)
@given(cluster=clusters(), model=models(), workload=workloads)
@with_explicit_examples
def test_every_instance_is_solved_cleanly_or_honestly_refused(
    cluster: Cluster, model: Model, workload: AnyWorkload
) -> None:
    """Any random instance gives an evaluator-clean plan, a confirmed INFEASIBLE or INVALID_INPUT."""
    check_instance(cluster, model, workload)


@settings(settings.get_profile("shardwise-planner"))
@given(cluster=clusters(max_nodes=1, max_pools=1), model=models(), workload=workloads)
@with_explicit_examples
def test_one_node_instances_are_solved_cleanly_or_honestly_refused(
    cluster: Cluster, model: Model, workload: AnyWorkload
) -> None:
    """The same property on one node (1, 2, 4 or 8 GPUs of one catalog type, NVSwitch or PCIe)."""
    check_instance(cluster, model, workload)


# --------------------------------------------------------------------------------------------
# Regression tests for the bugs the property found (strict xfails until fixed)
# --------------------------------------------------------------------------------------------
def _assert_clean(model: Model, cluster: Cluster, workload: AnyWorkload, res: Result) -> None:
    assert res.status in (Status.OPTIMAL, Status.FEASIBLE), f"{res.status}: {res.message}"
    check_solved(model, cluster, workload, res)


def test_unsupported_precision_is_refused_with_reason_inference() -> None:
    """fp8 inference on A100s (no fp8 tensor cores) is refused with a reason naming fp8."""
    w = InferenceWorkload(kind="inference", prompt_tokens=16, output_tokens=16, precision="fp8")
    res = plan(load_model("tiny-gpt"), load_cluster("tiny-2x4-a100"), w, time_limit_s=2)
    assert res.status in (Status.INFEASIBLE, Status.INVALID_INPUT)
    assert "fp8" in res.message


def test_unsupported_precision_is_refused_with_reason_training() -> None:
    """fp8 training on A100s is refused with a reason naming fp8, not a memory story."""
    res = plan(
        load_model("tiny-gpt"),
        load_cluster("tiny-2x4-a100"),
        train(precision="fp8"),
        time_limit_s=2,
    )
    assert res.status in (Status.INFEASIBLE, Status.INVALID_INPUT)
    assert "fp8" in res.message


def test_no_overlap_grad_reduce_plan_is_verified() -> None:
    """gpt-1.7b on 2x4 A100 without gradient-reduce overlap: an evaluator-clean plan."""
    m, c = load_model("gpt-1.7b"), load_cluster("tiny-2x4-a100")
    w = train(overlap_grad_reduce=False)
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True))


def test_zero2_plan_is_verified() -> None:
    """tiny-gpt on 2 NVLinked H100s with ZeRO-2: an evaluator-clean plan."""
    m, c = load_model("tiny-gpt"), load_cluster("h100x2-nvlink")
    w = train(zero=2)
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True))


def test_zero3_plan_is_verified() -> None:
    """tiny-gpt on 2x4 A100 with ZeRO-3: an evaluator-clean plan."""
    m, c = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100")
    w = train(zero=3)
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True))


def test_tp_respects_kv_heads() -> None:
    """A GQA model with 5 KV heads never gets TP=2 (evaluator: kv % tp or tp % kv must be 0)."""
    m = Model(
        name="kv5", num_layers=4, hidden_size=2560, ffn_hidden_size=10240,
        num_attention_heads=10, num_kv_heads=5, vocab_size=0, mlp="gelu",
    )  # fmt: skip
    c, w = load_cluster("tiny-2x4-a100"), load_workload("train-tiny")
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True))


def test_min_cost_inference_with_unpriced_pool_is_invalid_input() -> None:
    """min_cost inference with a pool lacking cost_per_gpu_hour is INVALID_INPUT naming the field."""
    c = load_cluster("tiny-hetero")
    c = c.model_copy(
        update={"pools": [c.pools[0].model_copy(update={"cost_per_gpu_hour": None}), c.pools[1]]}
    )
    w = InferenceWorkload(
        kind="inference", prompt_tokens=128, output_tokens=16, objective="min_cost",
        target_throughput_tokens_per_s=100,
    )  # fmt: skip
    res = plan(load_model("tiny-gpt"), c, w, time_limit_s=2)
    assert res.status == Status.INVALID_INPUT
    assert "cost_per_gpu_hour" in res.message


def test_min_cost_training_not_infeasible_at_time_limit() -> None:
    """A time-limited min_cost solve whose rubric plan is feasible returns a plan, not INFEASIBLE."""
    m, c = load_model("gpt-1.7b"), load_cluster("hetero-mix")
    w = load_workload("train-gpt-s2048").model_copy(update={"objective": "min_cost"})
    res = plan(m, c, w, time_limit_s=1, deterministic=True)
    assert res.baseline is not None  # the rubric's plan is feasible
    _assert_clean(m, c, w, res)


def test_pp_hop_inside_a_node_is_priced_as_placed() -> None:
    """A two-stage pipeline inside one node of a 2-node pool: an evaluator-clean plan.

    Found by the property: the CP model priced the hop on the NIC, the evaluator (GPUs 0 and 1
    of node a100-0) on NVSwitch: MODEL_ERROR 'CP model 1.55381e+06, evaluator 1.75099e+06
    (12.69% > 2%)'.  Fixed by optimistic hop pricing (solver.cpsat.tables.hops.hop_prices): the
    hop is priced on NVSwitch, and the plan is OPTIMAL with the CP's objective.
    """
    m, c = load_model("tiny-gpt"), load_cluster("tiny-2x4-a100")
    w = train(1, seq=128)
    res = plan(m, c, w, time_limit_s=5, deterministic=True)
    _assert_clean(m, c, w, res)
    assert res.status == Status.OPTIMAL, res.message


def test_pp_hop_across_nodes_is_priced_as_placed() -> None:
    """A 2-block model on 3 nodes of 8 H100s, mixed TP per stage: an evaluator-clean plan."""
    m = Model(
        name="two-blocks", num_layers=2, hidden_size=1216, ffn_hidden_size=3264,
        num_attention_heads=8, num_kv_heads=8, vocab_size=1000, mlp="swiglu",
    )  # fmt: skip
    base = load_cluster("seed-4x8-h100")
    c = base.model_copy(update={"pools": [base.pools[0].model_copy(update={"nodes": 3})]})
    w = train(
        16,
        seq=512,
        memory_policy="pure_bf16",
        sp=(True,),
    )
    # Mixed TP per stage and pure_bf16 (no engine has it): the unrestricted search.
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True, engine="any-plan"))


def test_pp_hop_priced_optimistically_falls_back_honestly() -> None:
    """Eight TP=1 stages on 2 nodes x 4 GPUs: a hop placement must put across nodes is priced
    across nodes, and the result is honest about it.

    Before the run condition the CP model priced every same-pool hand-off on NVLink where
    placement *could* keep it inside a node (d x max TP + min TP <= 4 GPUs), so it picked 8
    stages (d = 1) priced as if all 7 hops were NVLink, while placement puts stages 0-3 on node
    0 and 4-7 on node 1 (CP 470,201 vs evaluator 311,614 tokens/s in the closed form: the hop
    fallback, FEASIBLE).  A run of near hops now needs d x sum(tp) <= 4 (tables.hops.run_fits), so
    the model prices the 8-stage plan as placed and prefers d = 4 over 2 stages, whose one hop
    crosses nodes and is priced so: the CP objective is the evaluator's closed form (with the
    DP traffic hidden behind the earlier stages' backward *and* the gradient hand-off, as the
    simulation does), OPTIMAL.  If a mismatch remains it must be the honest hop fallback.  The
    bound is valid on the closed form the model optimises: the exhaustive optimum's closed form
    stays below it (its simulated value, 415,180, is above: the closed form charges the slow
    hop on every micro-batch, the simulation once -- the closed-form vs simulated ranking gap
    of KNOWN_GAPS in test_planner_vs_exhaustive.py).
    """
    from solver.baselines import exhaustive_best
    from solver.catalog import resolve_gpu
    from solver.evaluate import evaluate

    m = Model(
        name="narrow", num_layers=8, hidden_size=1536, ffn_hidden_size=6144,
        num_attention_heads=3, num_kv_heads=3, vocab_size=0, mlp="gelu",
    )  # fmt: skip
    a100 = resolve_gpu("A100").model_copy(update={"name": "A100-8GB", "memory_GB": 8.0})
    c = Cluster(
        name="2x4",
        pools=[
            Pool(name="p", gpu=a100, nodes=2, gpus_per_node=4,
                 intra_node=Link(kind="nvswitch", bandwidth_GBps=300, latency_us=3),
                 nic=Nic(count=1, bandwidth_GBps=25, latency_us=5)),
        ],
    )  # fmt: skip
    w = train(8, seq=256)
    res = plan(m, c, w, time_limit_s=5, deterministic=True)
    _assert_clean(m, c, w, res)
    assert res.plan is not None and res.objective is not None and res.bound is not None
    stages = res.plan.replica_groups[0].stages
    nodes = [st.devices[0][0][0] for st in stages]
    assert len(set(nodes)) > 1  # some hop of the pipeline crosses nodes
    if "pipeline hand-off across nodes" not in res.message:
        # Priced as placed: no fallback, the model's optimum is the plan's closed form.
        assert res.status == Status.OPTIMAL, (res.status, res.message)
        assert "hop_fallback" not in res.stats
    # Status, bound and gap agree: the bound is above the evaluator's value (max_throughput),
    # the gap is measured from it, and FEASIBLE unless the plan reaches the bound.
    assert res.bound >= res.objective
    assert res.gap == pytest.approx((res.bound - res.objective) / res.objective)
    assert (res.status == Status.OPTIMAL) == (res.gap <= 1e-3), (res.status, res.gap)
    best, truth, _ = exhaustive_best(m, c, w)
    assert best is not None and truth is not None
    report = evaluate(m, c, w, best).to_dict()
    closed = truth * float(report["step_time_s"]) / float(report["closed_form_step_time_s"])
    assert res.bound >= closed * (1 - 1e-6), (res.bound, closed, truth)


def test_heterogeneous_pipeline_objective_is_verified() -> None:
    """Batch 1 over two 4-GPU pools of different GPUs: an evaluator-clean plan."""
    m = Model(
        name="eleven-blocks", num_layers=11, hidden_size=704, ffn_hidden_size=2816,
        num_attention_heads=8, num_kv_heads=4, vocab_size=1000, mlp="gelu",
    )  # fmt: skip
    nvswitch = Link(kind="nvswitch", bandwidth_GBps=450, latency_us=3)
    c = Cluster(
        name="a100+h100pcie",
        pools=[
            Pool(name="a", gpu="A100-SXM4-80GB", nodes=1, gpus_per_node=4, intra_node=nvswitch,
                 nic=Nic(count=4, bandwidth_GBps=50)),
            Pool(name="b", gpu="H100-PCIe-80GB", nodes=1, gpus_per_node=4, intra_node=nvswitch,
                 nic=Nic(count=4, bandwidth_GBps=12.5)),
        ],
    )  # fmt: skip
    w = train(1, seq=128, sp=(True,))
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=5, deterministic=True))


def test_min_latency_of_a_tiny_model_is_verified() -> None:
    """min_latency for a 2-block model (TPOT 2.1 us) on one H100: an evaluator-clean plan.

    Found by the property: the CP model scaled TPOT to whole microseconds (CP 0.002 ms vs
    evaluator 0.00210 ms, MODEL_ERROR); fixed by a finer TPOT unit for fast configurations.
    """
    m = Model(
        name="two-small-blocks", num_layers=2, hidden_size=256, ffn_hidden_size=1024,
        num_attention_heads=2, num_kv_heads=2, vocab_size=0, mlp="gelu",
    )  # fmt: skip
    c = load_cluster("tiny-1x1-h100")
    w = InferenceWorkload(
        kind="inference", prompt_tokens=16, output_tokens=16, batch_size=32, objective="min_latency"
    )
    _assert_clean(m, c, w, plan(m, c, w, time_limit_s=2, deterministic=True))
