"""Shared pytest configuration: custom markers and the Hypothesis profile.

Hypothesis runs derandomized by default, so CI sees the same examples on every run and a test
cannot fail by luck; ``SHARDWISE_HYPOTHESIS_PROFILE=random pytest ...`` hunts with fresh random
examples (what found the 1F1B closed-form counterexample in ``tests/test_pipeline.py``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("random", database=None)
settings.load_profile(os.environ.get("SHARDWISE_HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exhaustive: planner vs exhaustive enumeration on small instances (< 90 s on 2 cores)",
    )
