"""Shared fixtures: one full simulated day of the default scenario, run once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.scenario import load_scenario


@pytest.fixture(scope="session")
def default_day(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """The packaged default scenario (96 intervals), simulated into a fresh ledger."""
    out: Path = tmp_path_factory.mktemp("default_day")
    return simulate(load_scenario(), out / "ledger.sqlite")


def require_tool(name: str) -> str:
    """Path of an external program a test needs: skip without it locally, fail in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed (see .ci/run)")
        pytest.skip(f"{name} not installed")
    return path
