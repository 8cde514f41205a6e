"""Shared pytest configuration: custom markers."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exhaustive: planner vs exhaustive enumeration on small instances (< 90 s on 2 cores)",
    )
