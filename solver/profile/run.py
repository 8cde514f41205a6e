"""Device-side entry point: ``python solver/profile/run.py {profile,validate,all,check} ...``.

Run by *path*, this file loads :mod:`solver.profile` without executing ``solver/__init__.py``
(which imports pydantic and yaml): a GPU machine with only PyTorch and numpy can measure, and
the raw JSON is turned into a calibration and a comparison table elsewhere.  ``python -m
solver.profile.run`` works too where the full package is installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

if not __package__:
    # Run as a file (also in the processes torch.multiprocessing spawns, which re-run this
    # file as __mp_main__): register a bare `solver` package so `solver.profile.*` imports
    # resolve without running solver/__init__.py.
    _here = Path(__file__).resolve().parent
    _root = _here.parent
    # This folder is sys.path[0]: drop it, so its modules are never importable as top-level
    # names (``import bench``) that could shadow other packages.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if "solver" not in sys.modules:
        _pkg = types.ModuleType("solver")
        _pkg.__path__ = [str(_root)]
        sys.modules["solver"] = _pkg

from solver.profile.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
