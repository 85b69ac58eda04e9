"""Scenario files: the community, its feeder, devices, tariff and run settings (validated YAML)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from gridctl.core import (
    INTERVAL_S,
    INTERVALS_PER_DAY,
    FilePath,
    ScenarioError,
    interval_of,
    read_yaml,
    validated,
)
from gridctl.dispatch.spec import CommunitySpec, FeederSpec, HouseholdSpec

FIRST_START = datetime(2000, 1, 1, tzinfo=UTC)
LAST_START = datetime(2100, 1, 1, tzinfo=UTC)
"""Scenarios start in this century (profiles, interval indices and dates stay in range)."""


class Scenario(CommunitySpec):
    """A complete, validated simulation scenario: a community (its feeder required) and the run."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    feeder: FeederSpec
    households: Annotated[list[HouseholdSpec], Field(min_length=1)]
    start: datetime
    intervals: Annotated[int, Field(ge=1, le=366 * INTERVALS_PER_DAY)]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    base_dir: FilePath = Path(".")
    """Directory relative paths in the scenario resolve against (set by the loader)."""

    @field_validator("start")
    @classmethod
    def _utc_aligned(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-06-21T00:00:00Z")
        v = v.astimezone(UTC)
        if not FIRST_START <= v < LAST_START:
            raise ValueError(f"start must lie in {FIRST_START.year}-{LAST_START.year - 1}")
        if v.timestamp() % INTERVAL_S:
            raise ValueError(f"start must fall on an interval boundary ({INTERVAL_S // 60} min)")
        return v

    @property
    def first_interval(self) -> int:
        """Interval index of ``start``."""
        return interval_of(self.start)


def default_scenario_path() -> Path:
    """Path of the default scenario shipped with the package."""
    return Path(str(resources.files("gridctl.scenarios").joinpath("default.yaml")))


def load_scenario(path: Path | None = None) -> Scenario:
    """Read and validate a scenario YAML file (the packaged default when ``path`` is None).

    Raises ScenarioError with a one-line message naming the bad field or value.
    """
    path = default_scenario_path() if path is None else Path(path)
    raw = read_yaml(path, ScenarioError, "scenario ")
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    raw["base_dir"] = str(path.resolve().parent)
    return validated(Scenario, raw, ScenarioError, path.name)
