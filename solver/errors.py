"""Errors raised for bad input.  Every message is one line naming the field and the value."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = ["SpecError", "format_validation_error"]


class SpecError(ValueError):
    """Bad user input: a one-line message naming the file, field and value."""


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # Discriminated unions add the tag ('training') as a location part: skip it.
            if part in ("training", "inference", "str", "GPUSpec", "function-after[_check(), Model]"):
                continue
            if part.startswith(("function-", "tagged-union", "list[", "int", "bool", "tuple[")):
                continue
            out += ("." if out else "") + str(part)
    return out or "<root>"


def format_validation_error(err: ValidationError, source: str = "") -> str:
    """Render the first pydantic error as ``source: field: message, got value``."""
    first = err.errors(include_url=False)[0]
    loc = _loc(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    typ = first.get("type", "")
    prefix = f"{source}: " if source else ""
    if typ == "missing":
        return f"{prefix}{loc}: required field is missing"
    if typ == "extra_forbidden":
        return f"{prefix}{loc}: unknown field (not allowed), got {first.get('input')!r}"
    if loc == "<root>":
        return f"{prefix}{msg}"  # our model validators name the field themselves
    if "got" in msg:
        return f"{prefix}{loc}: {msg}"
    value = repr(first.get("input"))
    if len(value) > 80:
        value = value[:77] + "..."
    return f"{prefix}{loc}: {msg}, got {value}"
