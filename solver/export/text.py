"""Small text helpers shared by the writers: wrapped comments and the provenance header."""

from __future__ import annotations

import textwrap

from ..specs import Model, Plan
from .result import plan_summary

__all__ = ["WIDTH", "command_line", "comment", "header"]

#: Longest line the launch text aims for (a terminal-friendly width; a long value may exceed it).
WIDTH = 100


def comment(text: str, width: int = WIDTH, indent: str = "") -> list[str]:
    """``text`` as ``# ``-prefixed lines of at most ``width`` characters."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent + "# ",
        subsequent_indent=indent + "#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def command_line(env: str, cmd: str, flags: list[str]) -> str:
    """``env cmd flags...`` wrapped at flag boundaries: continuation lines are indented by four
    spaces and stay within :data:`WIDTH` characters where the flags allow."""
    out = env + cmd
    row = ""
    for flag in flags:
        if row and len(row) + 1 + len(flag) > WIDTH - 6:
            out += " \\\n    " + row
            row = flag
        else:
            row = f"{row} {flag}" if row else flag
    if row:
        out += " \\\n    " + row
    return out + "\n"


def header(target: str, plan: Plan, model: Model) -> list[str]:
    """Comment lines naming what was exported (no timestamps: the output is reproducible)."""
    lines = comment(
        f"shardwise export --to {target}: {model.name}, {plan.kind} plan {plan_summary(plan)}"
    )
    facts: list[str] = []
    if plan.solver is not None:
        facts.append(f"solver status {plan.solver.status}")
    tokens = plan.predicted.get("tokens_per_s")
    if tokens is not None:
        facts.append(f"predicted {tokens:,.0f} tokens/s")
    if facts:
        lines += comment(", ".join(facts))
    return lines
