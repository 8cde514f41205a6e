"""CLI command groups beyond plan/evaluate/import-hf, one module each.

Each module defines ``register(app)``, which adds its ``@app.command`` functions to the
``shardwise`` typer app; :mod:`solver.cli` calls every ``register`` at import time.  Command
modules may import the plumbing (``user_errors``, ``emit_json``, option types) from
:mod:`solver.cli` inside ``register``; keep heavy imports (matplotlib, ray, torch) inside the
command bodies so ``shardwise --help`` stays fast.
"""
