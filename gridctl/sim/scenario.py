"""Scenario files: the community, its feeder, devices, tariff and run settings (validated YAML)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridctl.core import ScenarioError, Tariff, interval_of, read_yaml, validated
from gridctl.dispatch.rolling import DEFAULT_NEAR

NonNeg = Annotated[float, Field(ge=0)]
Pos = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeederSpec(_Strict):
    """Either a SimBench code or a pandapower JSON file (relative to the scenario file)."""

    simbench: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.simbench is None) == (self.file is None):
            raise ValueError("give exactly one of 'simbench' or 'file'")
        return self


class LoadSpec(_Strict):
    """Base load: a SimBench load profile scaled to an annual energy."""

    profile: str = "H0-A"
    annual_kwh: Pos = 3500.0
    power_factor: Annotated[float, Field(gt=0, le=1)] = 0.95


class PvSpec(_Strict):
    """Rooftop PV: peak power and a SimBench PV profile (per kWp)."""

    kwp: Pos
    profile: str = "PV5"


class BatterySpec(_Strict):
    """Home battery: usable energy, power limit, one-way efficiency, initial and minimum SoC."""

    kwh: Pos
    kw: Pos
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95
    soc0: Fraction = 0.5
    soc_min: Fraction = 0.05

    @model_validator(mode="after")
    def _soc_order(self) -> Self:
        if self.soc0 < self.soc_min:
            raise ValueError(f"soc0 {self.soc0} is below soc_min {self.soc_min}")
        return self


class EvSpec(_Strict):
    """A daily EV session: arrival and departure (UTC time of day), energy needed, charger power."""

    arrival: time
    departure: time
    kwh: Pos
    kw: Pos

    @field_validator("arrival", "departure", mode="before")
    @classmethod
    def _parse_time(cls, v: object) -> object:
        if isinstance(v, str) and not re.fullmatch(r"\d{1,2}:\d{2}", v):
            raise ValueError(f"time of day must look like 18:30, got {v!r}")
        return v

    @model_validator(mode="after")
    def _has_window(self) -> Self:
        # a departure earlier in the day than the arrival means the next morning
        if self.arrival == self.departure:
            raise ValueError("departure equals arrival: the car would never be plugged in")
        return self


class HouseholdSpec(_Strict):
    """One household: where it connects, what it owns, its connection limits."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    bus: str | int
    load: LoadSpec = LoadSpec()
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    ev: EvSpec | None = None
    connection_kw: Pos = 17.25
    """Main fuse as power (3 x 25 A x 230 V), kW; bounds import and export."""


class TariffSpec(_Strict):
    """Prices, currency per kWh."""

    import_per_kwh: NonNeg
    feed_in_per_kwh: NonNeg
    community_per_kwh: NonNeg

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.feed_in_per_kwh <= self.community_per_kwh <= self.import_per_kwh:
            raise ValueError("prices must satisfy feed_in <= community <= import")
        return self


class LimitsSpec(_Strict):
    """Feeder operating limits checked by the AC power flow."""

    v_min_pu: Pos = 0.94
    v_max_pu: Pos = 1.06
    loading_max_pct: Pos = 100.0


class DispatchSpec(_Strict):
    """How the community plans: horizon and full re-plan period in intervals; intervals of the
    near re-plan run every interval in between (0: follow the full plan until the next one);
    AC check settings."""

    horizon: Annotated[int, Field(ge=1, le=7 * 96)] = 96
    replan_every: Annotated[int, Field(ge=1, le=96)] = 1
    near: Annotated[int, Field(ge=0, le=96)] = DEFAULT_NEAR
    margin_v_pu: Annotated[float, Field(ge=0, le=0.05)] = 0.006
    rounds: Annotated[int, Field(ge=1, le=20)] = 5


class Scenario(_Strict):
    """A complete, validated simulation scenario."""

    name: str
    feeder: FeederSpec
    start: datetime
    intervals: Annotated[int, Field(ge=1, le=366 * 96)]
    seed: int = 0
    tariff: TariffSpec
    reward_tokens_per_kwh: NonNeg = 1.0
    limits: LimitsSpec = LimitsSpec()
    dispatch: DispatchSpec = DispatchSpec()
    households: Annotated[list[HouseholdSpec], Field(min_length=1)]
    base_dir: Path = Path(".")
    """Directory relative paths in the scenario resolve against (set by the loader)."""

    @field_validator("start")
    @classmethod
    def _utc_aligned(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-06-21T00:00:00Z")
        v = v.astimezone(UTC)
        if v.timestamp() % 900:
            raise ValueError("start must fall on a 15-minute boundary")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for h in self.households:
            if h.id in seen:
                raise ValueError(f"household id {h.id!r} appears twice")
            seen.add(h.id)
        return self

    @property
    def first_interval(self) -> int:
        """Interval index of ``start``."""
        return interval_of(self.start)

    @property
    def tariff_prices(self) -> Tariff:
        """The tariff as the core type."""
        return Tariff(**self.tariff.model_dump())


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
