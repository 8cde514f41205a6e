"""shardwise's exceptions, and the checks of bad input.

One hierarchy (all exported from :mod:`solver`)::

    ShardwiseError                      every error shardwise raises on purpose
    +-- InvalidInput (also ValueError)  bad input: one line naming the field and the value
    |   = SpecError                     the same class, under the name the code base uses
    +-- ModelError (also RuntimeError)  the evaluator disagreed with the solver: a bug

:func:`solver.plan` reports bad input and model errors as ``Result.status`` (INVALID_INPUT,
MODEL_ERROR) where it can; it raises :class:`InvalidInput` for arguments it refuses before
solving (time limit, seed, workers) and for specs that do not load.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from pydantic import ValidationError

__all__ = [
    "MAX_SEED",
    "MAX_TIME_LIMIT_S",
    "MAX_WORKERS",
    "InvalidInput",
    "ModelError",
    "ShardwiseError",
    "SpecError",
    "check_solve_options",
    "format_validation_error",
]

#: CP-SAT's ``random_seed`` is a 32-bit signed integer: seeds are 0..2^31 - 1.
MAX_SEED = 2**31 - 1
#: CP-SAT search workers per solve (and sweep processes): 1..1024.
MAX_WORKERS = 1_024
#: The longest time limit accepted, in seconds (about 11.6 days).
MAX_TIME_LIMIT_S = 1_000_000.0


class ShardwiseError(Exception):
    """Base of every exception shardwise raises on purpose (``except solver.ShardwiseError``)."""


class InvalidInput(ShardwiseError, ValueError):
    """Bad user input: a one-line message naming the file, field and value.

    A :class:`ValueError` too, so ``except ValueError`` keeps catching it.  Newlines in the
    message are folded into spaces, so the message is always one line (the CLI prints it as
    ``error: <message>`` and exits with status 2).
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


#: The name the code base raises and catches: the same class as :class:`InvalidInput`.
SpecError = InvalidInput


class ModelError(ShardwiseError, RuntimeError):
    """The evaluator disagreed with the solver's plan: a bug in shardwise, not in the input.

    :func:`solver.plan` reports it as ``Status.MODEL_ERROR``; :meth:`solver.Result.raise_for_status`
    raises it.
    """


def check_solve_options(
    *,
    time_limit_s: Any = None,
    seed: Any = None,
    num_workers: Any = None,
    names: dict[str, str] | None = None,
) -> None:
    """Check the solver's own knobs; raise :class:`SpecError` naming the first bad one.

    Parameters
    ----------
    time_limit_s
        A finite number of seconds in (0, :data:`MAX_TIME_LIMIT_S`]; ``nan``, ``inf``, 0 and
        negative limits are refused (CP-SAT would read them as "no time" or "no limit").
    seed
        An integer in 0..:data:`MAX_SEED` (CP-SAT's seed is 32-bit).
    num_workers
        An integer in 1..:data:`MAX_WORKERS`.
    names
        How to call each argument in the message; default its Python name (the CLI passes
        ``{"time_limit_s": "--time-limit", "seed": "--seed", "num_workers": "--workers"}``).

    None means "not given" for every argument (default None) and is not checked.
    """
    label = {"time_limit_s": "time_limit_s", "seed": "seed", "num_workers": "num_workers"}
    label.update(names or {})

    def bad(arg: str, what: str, value: Any) -> SpecError:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        return SpecError(f"{label[arg]}: {what}, got {shown}")

    if time_limit_s is not None:
        if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, numbers.Real):
            raise bad("time_limit_s", "must be a number of seconds", time_limit_s)
        limit = float(time_limit_s)
        if not (math.isfinite(limit) and 0 < limit <= MAX_TIME_LIMIT_S):
            raise bad(
                "time_limit_s",
                f"must be a finite number of seconds, > 0 and <= {MAX_TIME_LIMIT_S:,.0f}",
                limit,
            )
    for arg, value, low, high in (
        ("seed", seed, 0, MAX_SEED),
        ("num_workers", num_workers, 1, MAX_WORKERS),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise bad(arg, "must be an integer", value)
        if not low <= int(value) <= high:
            raise bad(arg, f"must be an integer from {low} to {high:,}", int(value))


# Location parts that pydantic inserts for union members and validators, not field names.
_TAGS = {"training", "inference", "str", "int", "float", "bool", "list", "dict", "tuple"}
_IDENT = re.compile(r"[a-z_][A-Za-z0-9_]*\Z")


def _loc(loc: tuple[Any, ...], keep_last: bool = False) -> str:
    """Render a pydantic location as ``pools[1].nic.count``.

    Union tags ('str', 'GPUSpec', 'list[constrained-int]', 'function-after[...]') and the
    discriminator tags of the workload union are dropped.  Our field names are lower-case
    identifiers, so anything else is a tag -- except the last part of an ``extra_forbidden``
    error (``keep_last``), which is the user's unknown key and is kept verbatim.
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        part = str(part)
        last = i == len(loc) - 1
        if not (keep_last and last) and (part in _TAGS or not _IDENT.match(part)):
            continue
        out += ("." if out else "") + part
    return out or "<root>"


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _rephrase(err: dict[str, Any]) -> str:
    """Pydantic's message in the project's 'must be ...' voice (falls back to pydantic's)."""
    typ = str(err.get("type", ""))
    ctx: dict[str, Any] = err.get("ctx") or {}
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "literal_error": "must be {expected}",
        "int_parsing": "must be an integer",
        "int_type": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "finite_number": "must be a finite number",
    }
    if typ in simple:
        try:
            return simple[typ].format(**ctx)
        except (KeyError, IndexError):
            return msg
    if typ == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if typ == "too_long":
        n = ctx.get("max_length")
        return f"must have at most {n} item{'s' if n != 1 else ''}"
    return msg


def _pick(errors: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None, int]:
    """Choose the most useful error to report, a 'did you mean' key if one applies, and how
    many other errors are worth mentioning.

    1. An unknown key that is a misspelling (case or unit letters, e.g. ``memory_gb`` or
       ``bandwidth_Gbps``) of a required field missing at the same place wins: it explains both.
    2. Union branches that failed only because the input is of the wrong container kind
       (a mapping given where the ``str`` branch of ``gpu: str | GPUSpec`` is tried) are
       skipped when another branch says something specific.
    """
    specific = [
        e
        for e in errors
        if not (
            str(e.get("type", "")).endswith("_type") and isinstance(e.get("input"), dict | list)
        )
    ] or errors
    for e in specific:
        if e.get("type") != "extra_forbidden":
            continue
        parent, key = tuple(e["loc"][:-1]), str(e["loc"][-1])
        for m in specific:
            if (
                m.get("type") == "missing"
                and tuple(m["loc"][:-1]) == parent
                and _norm(str(m["loc"][-1])) == _norm(key)
            ):
                return e, str(m["loc"][-1]), len(specific) - 2
    return specific[0], None, len(specific) - 1


def _value(v: Any) -> str:
    # Booleans as the user wrote them in YAML/JSON ('got true', not 'got True').
    s = str(v).lower() if isinstance(v, bool) else repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def format_validation_error(err: ValidationError, source: str = "") -> str:
    """Render a pydantic error as one line: ``source: field: message, got value``.

    The most useful of the errors is reported (see :func:`_pick`); if there are more, the line
    ends with ``(+N more)``: fix one thing at a time, as with a compiler.
    """
    errors = [dict(e) for e in err.errors(include_url=False)]
    first, did_you_mean, others = _pick(errors)
    typ = first.get("type", "")
    loc_parts = tuple(first.get("loc", ()))
    loc = _loc(loc_parts, keep_last=typ == "extra_forbidden")
    prefix = f"{source}: " if source else ""
    more = f" (+{others} more)" if others > 0 else ""
    if typ == "missing":
        return f"{prefix}{loc}: required field is missing{more}"
    if typ == "extra_forbidden":
        hint = ""
        if did_you_mean is not None:
            hint = f"; did you mean {did_you_mean!r}? (field names carry their unit)"
        return (
            f"{prefix}{loc}: unknown field, got {_loc(loc_parts[-1:], True)}="
            f"{_value(first.get('input'))}{hint}{more}"
        )
    msg = _rephrase(first)
    # Our model validators start their message with the field they blame ('last_layer: ...'):
    # join it onto the location so the line reads 'replica_groups[0].stages[1].last_layer: ...'.
    m = re.match(r"([a-z_][A-Za-z0-9_.\[\]]*): (.*)\Z", msg)
    if m:
        field, rest = m.groups()
        loc = field if loc == "<root>" else f"{loc}.{field}"
        msg = rest
    if "got" in msg or (typ == "value_error" and isinstance(first.get("input"), dict)):
        # A model validator's input is the whole mapping: its message names the value itself.
        return f"{prefix}{loc}: {msg}{more}"
    return f"{prefix}{loc}: {msg}, got {_value(first.get('input'))}{more}"
