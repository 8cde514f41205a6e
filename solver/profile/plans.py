"""Plans the validation runs execute: presets, and the reading of a plan file (stdlib only).

A plan here is the JSON form of :class:`solver.specs.Plan` (what ``shardwise plan --out``
writes), read as a plain dict so that the device side needs no pydantic.  The runner executes
the subset of plans that plain PyTorch reproduces faithfully: one replica group, the same TP
degree on every stage, non-interleaved 1F1B, no recomputation, no ZeRO, no sequence
parallelism, all GPUs on one node (rank = GPU index).  Anything else is refused with a message
naming the field, rather than measured as something it is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS_HELP", "PlanLayout", "layout_from_plan", "preset_plan"]

_PRESET = re.compile(r"^(single|dp|tp|pp)(\d*)$")
PRESETS_HELP = "single, dpN, tpN or ppN (N GPUs; N defaults to 2)"


def _device(pool: str, gpu: int) -> list[Any]:
    return [f"{pool}-0", gpu]


def preset_plan(
    name: str,
    *,
    kind: str,
    num_layers: int,
    micro_batch_size: int = 1,
    global_batch_size: int = 8,
    batch_size: int = 1,
    pool: str = "h100",
) -> dict[str, Any]:
    """The plan dict of a preset: ``single``, ``dpN``, ``tpN`` or ``ppN`` on GPUs 0..N-1.

    Training presets keep the global batch fixed: ``num_micro_batches = global_batch_size /
    (micro_batch_size x DP)``.  ``ppN`` splits the blocks as evenly as possible, the
    remainder going to the first stages.
    """
    m = _PRESET.match(name)
    if m is None:
        raise ValueError(f"preset: must be {PRESETS_HELP}, got {name!r}")
    what, n = m.group(1), int(m.group(2) or (1 if m.group(1) == "single" else 2))
    if what == "single" and n != 1:
        raise ValueError(f"preset: 'single' takes no GPU count, got {name!r}")
    if n < 1:
        raise ValueError(f"preset: the GPU count must be >= 1, got {name!r}")
    dp = n if what == "dp" else 1
    tp = n if what == "tp" else 1
    pp = n if what == "pp" else 1
    if pp > num_layers:
        raise ValueError(f"preset: {name} needs at least {pp} blocks, the model has {num_layers}")
    base, extra = divmod(num_layers, pp)
    stages: list[dict[str, Any]] = []
    first = 0
    for s in range(pp):
        count = base + (1 if s < extra else 0)
        if what == "dp":
            devices = [[_device(pool, r)] for r in range(dp)]
        else:
            devices = [[_device(pool, s * tp + j) for j in range(tp)]]
        stages.append(
            {
                "first_layer": first,
                "last_layer": first + count - 1,
                "pool": pool,
                "tp": tp,
                "devices": devices,
            }
        )
        first += count
    group: dict[str, Any] = {"count": dp, "schedule": "1f1b", "stages": stages}
    if kind == "training":
        per_replica = global_batch_size // dp
        if global_batch_size % dp or per_replica % micro_batch_size:
            raise ValueError(
                f"global_batch_size: must be a multiple of micro_batch_size x DP = "
                f"{micro_batch_size} x {dp}, got {global_batch_size}"
            )
        group.update(
            micro_batch_size=micro_batch_size,
            num_micro_batches=per_replica // micro_batch_size,
            recompute="none",
            zero_stage=0,
            sequence_parallel=False,
        )
    elif kind == "inference":
        if dp != 1:
            raise ValueError(f"preset: inference presets are single, tpN or ppN, got {name!r}")
        group["batch_size"] = batch_size
    else:
        raise ValueError(f"kind: must be 'training' or 'inference', got {kind!r}")
    return {"kind": kind, "replica_groups": [group]}


@dataclass(frozen=True)
class PlanLayout:
    """A plan reduced to what the runner needs.

    ``ranks[s][r][j]`` is the global rank (= GPU index) of TP rank j of stage s of replica r.
    """

    kind: str
    dp: int
    tp: int
    stage_layers: tuple[tuple[int, int], ...]
    ranks: tuple[tuple[tuple[int, ...], ...], ...]
    micro_batch_size: int
    num_micro_batches: int
    batch_size: int

    @property
    def pp(self) -> int:
        return len(self.stage_layers)

    @property
    def all_ranks(self) -> tuple[int, ...]:
        return tuple(sorted({g for st in self.ranks for rep in st for g in rep}))

    @property
    def world_needed(self) -> int:
        return max(self.all_ranks) + 1

    @property
    def global_batch_size(self) -> int:
        return self.dp * self.num_micro_batches * self.micro_batch_size

    def position(self, rank: int) -> tuple[int, int, int] | None:
        """(stage, replica, tp rank) of a global rank, or None if the plan does not use it."""
        for s, st in enumerate(self.ranks):
            for r, rep in enumerate(st):
                if rank in rep:
                    return s, r, rep.index(rank)
        return None

    def tp_groups(self) -> list[tuple[int, ...]]:
        return [rep for st in self.ranks for rep in st]

    def dp_groups(self) -> list[tuple[int, ...]]:
        return [
            tuple(st[r][j] for r in range(self.dp)) for st in self.ranks for j in range(self.tp)
        ]


def _get(d: dict[str, Any], key: str, default: Any, where: str) -> Any:
    v = d.get(key, default)
    if v is None:
        return default
    return v


def layout_from_plan(plan: dict[str, Any], num_layers: int) -> PlanLayout:
    """Check that the runner can execute ``plan`` exactly, and reduce it to a layout."""
    if isinstance(plan.get("plan"), dict) and "replica_groups" not in plan:
        plan = plan["plan"]  # `shardwise plan --json` output
    kind = plan.get("kind")
    if kind not in ("training", "inference"):
        raise ValueError(f"kind: must be 'training' or 'inference', got {kind!r}")
    groups = plan.get("replica_groups")
    if not isinstance(groups, list) or len(groups) != 1:
        n = len(groups) if isinstance(groups, list) else groups
        raise ValueError(f"replica_groups: validate runs plans with exactly one group, got {n}")
    g = groups[0]
    w = "replica_groups[0]"
    wanted = {
        "schedule": "1f1b",
        "virtual_stages": 1,
        "recompute": "none",
        "zero_stage": 0,
        "sequence_parallel": False,
    }
    defaults = {"schedule": "1f1b", "virtual_stages": 1, "recompute": "none"}
    for key, want in wanted.items():
        got = _get(g, key, defaults.get(key, want), w)
        if got != want:
            raise ValueError(f"{w}.{key}: validate supports only {want!r}, got {got!r}")
    count = int(g.get("count", 1))
    stages = g.get("stages") or []
    if not stages:
        raise ValueError(f"{w}.stages: must list at least one stage, got []")
    tps = {int(st.get("tp", 1)) for st in stages}
    if len(tps) != 1:
        raise ValueError(
            f"{w}.stages: validate needs the same tp on every stage, got {sorted(tps)}"
        )
    tp = tps.pop()
    layers: list[tuple[int, int]] = []
    ranks: list[tuple[tuple[int, ...], ...]] = []
    expect = 0
    for s, st in enumerate(stages):
        ws = f"{w}.stages[{s}]"
        if st.get("chunks") is not None:
            raise ValueError(f"{ws}.chunks: interleaved stages are not supported")
        a, b = int(st["first_layer"]), int(st["last_layer"])
        if a != expect or b < a:
            raise ValueError(
                f"{ws}.first_layer: stages must cover blocks 0..{num_layers - 1} in order, "
                f"got [{a}, {b}] after block {expect - 1}"
            )
        expect = b + 1
        layers.append((a, b))
        devs = st.get("devices") or []
        if len(devs) != count:
            raise ValueError(
                f"{ws}.devices: needs one entry per replica ({count}), got {len(devs)}"
            )
        reps: list[tuple[int, ...]] = []
        for r, rep in enumerate(devs):
            if len(rep) != tp:
                raise ValueError(f"{ws}.devices[{r}]: needs {tp} GPUs (tp), got {len(rep)}")
            gpus: list[int] = []
            for node, gpu in rep:
                idx = str(node).rpartition("-")[2]
                if idx != "0":
                    raise ValueError(
                        f"{ws}.devices[{r}]: validate runs on one node (node index 0), got {node!r}"
                    )
                gpus.append(int(gpu))
            reps.append(tuple(gpus))
        ranks.append(tuple(reps))
    if expect != num_layers:
        raise ValueError(
            f"{w}.stages: cover blocks 0..{expect - 1}, the model has {num_layers} blocks"
        )
    flat = [x for st in ranks for rep in st for x in rep]
    if len(set(flat)) != len(flat):
        raise ValueError(f"{w}.stages: a GPU is used twice, got {sorted(flat)}")
    mb = int(_get(g, "micro_batch_size", 1, w))
    m = int(_get(g, "num_micro_batches", 1, w))
    bs = int(_get(g, "batch_size", 1, w))
    if kind == "inference" and count != 1:
        raise ValueError(f"{w}.count: inference validation runs one replica, got {count}")
    if kind == "inference" and m != 1:
        raise ValueError(f"{w}.num_micro_batches: inference validation runs 1, got {m}")
    return PlanLayout(
        kind=str(kind),
        dp=count,
        tp=tp,
        stage_layers=tuple(layers),
        ranks=tuple(ranks),
        micro_batch_size=mb,
        num_micro_batches=m,
        batch_size=bs,
    )
