"""Why a plan is what it is: its memory ledger, its bottleneck, and why the alternatives lose.

:func:`explain` takes a plan (or plans one with :func:`solver.planner.plan`) and answers three
questions with numbers the evaluator computes, never with rules of thumb:

* **Where does the memory go?**  The evaluator's memory ledger per stage (weights, gradients,
  optimizer states, activations of which transient, KV cache, framework overhead) against the
  GPU's capacity.
* **What limits the step?**  The step time split into additive terms -- compute and TP
  all-reduce of the busiest stage, the pipeline bubble, exposed p2p waits, exposed DP
  gradient sync and the optimizer step for training; compute, TP all-reduce and p2p of one
  request batch for inference -- and the largest one named the bottleneck.  Constraints that
  bind (memory near capacity, an SLO nearly met, every GPU in use) are listed beside it.
* **Why not something else?**  Concrete alternative plans, each built and scored by the
  evaluator: TP doubled and halved, PP doubled and halved (layers re-split evenly), pure DP,
  no and full recomputation, the seed rubric's plan and the best uniform (Megatron-style) plan.
  Each gets the ratio of its objective to the chosen plan's and a verdict naming the term that
  got worse, e.g. ``TP all-reduce 41.2 s vs 6.1 s per step``.

For an INFEASIBLE instance the planner's explanation (which constraint group binds, the smallest
relaxation) is reported with the memory ledger of the *closest* plan: the candidate whose worst
overshoot (peak memory / capacity, TTFT / SLO, TPOT / SLO) is smallest.

Alternatives keep the chosen plan's knobs (micro-batch, recompute, ZeRO, sequence parallelism,
batch size) where they still fit; a structural alternative that does not fit memory with them
is retried with the stronger recomputation and higher ZeRO stages the workload allows, so that
"pure DP does not fit" means it does not fit with any allowed setting.  A TP degree larger than
the NVLink domain is not a legal plan (the evaluator's ``check_tp_domain`` forbids it); it is
still priced, on a what-if copy of the cluster whose NVLink domain spans the TP group's nodes
at the bandwidth of the nodes' NICs, so the verdict can say how much the all-reduce would cost.

Nothing here prints; :func:`render_explanation` builds the rich view, ``to_dict`` the JSON.

The package, lowest level first (each module imports only those above it):

* :mod:`.document` -- the result types (:class:`Explanation` and its parts) and ``to_dict``;
* :mod:`.evaluation` -- calling the evaluator and reading its report (objective, memory use
  and ledger rows, overshoot, throughput target);
* :mod:`.bottleneck` -- the step-time terms, the bottleneck and the binding constraints;
* :mod:`.candidates` -- building, placing and scoring homogeneous plans, what-if clusters;
* :mod:`.verdicts` -- why an alternative loses;
* :mod:`.alternatives` -- the alternative plans themselves;
* :mod:`.explainer` -- the entry point :func:`explain` and the closest plan of an infeasible
  instance;
* :mod:`.view` -- :func:`render_explanation`, the rich view.
"""

from __future__ import annotations

from .bottleneck import MEMORY_TIGHT_FRACTION, SLO_TIGHT_FRACTION, step_terms
from .bottleneck import TERM_LABELS as TERM_LABELS
from .document import Alternative, Bottleneck, Explanation, TimeTerm
from .explainer import explain
from .verdicts import BUBBLE_NOTE_MARGIN as BUBBLE_NOTE_MARGIN
from .verdicts import TIE_RTOL as TIE_RTOL
from .view import alternative_lines, render_explanation

__all__ = [
    "MEMORY_TIGHT_FRACTION",
    "SLO_TIGHT_FRACTION",
    "Alternative",
    "Bottleneck",
    "Explanation",
    "TimeTerm",
    "alternative_lines",
    "explain",
    "render_explanation",
    "step_terms",
]
