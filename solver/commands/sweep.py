"""`shardwise sweep` commands (see :mod:`solver.commands`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    del app  # no commands yet
