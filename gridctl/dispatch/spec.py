"""What dispatch needs to know about a community, as validated config: its feeder, each
household's connection and devices, the feeder's limits, prices and how to plan.

``CommunitySpec`` is the part simulation scenarios (``gridctl.sim.scenario``) and the
coordinator's configuration (``gridctl.coordinator.config``) share; both are read from YAML and
assembled into a planner and a settlement by ``gridctl.coordinator.assembly``.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from gridctl.core import (
    EV_MAX_A,
    INTERVALS_PER_DAY,
    V_NOMINAL_V,
    W_PER_KW,
    AccuracyClass,
    FilePath,
    StrictModel,
    Tariff,
    ev_phases,
)
from gridctl.governance.spec import GovernanceSpec
from gridctl.public.envelope import FEEDER
from gridctl.public.spec import EnvelopesSpec, unknown_targets
from gridctl.settlement.aggregates import DEFAULT_K, MIN_K
from gridctl.sun import Place

DEFAULT_NEAR = 12
"""Intervals a near re-plan covers (3 h): at 1,000 homes it solves in about a second."""
Fraction = Annotated[float, Field(ge=0, le=1)]
Price = Annotated[float, Field(ge=0, le=100)]
"""Currency per kWh; the bound keeps ledger amounts (micro-units) far inside 64 bits."""
RewardRate = Annotated[float, Field(ge=0, le=100)]
"""Tokens per shared kWh (same bound as prices)."""
Name = Annotated[str, Field(min_length=1, max_length=64)]
"""A profile or feeder name."""
Bus = Annotated[str, Field(max_length=256)] | Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A feeder bus: its name or its index."""
Kw = Annotated[float, Field(gt=0, le=10_000)]
"""A household's power rating, kW (10 MW is beyond any low-voltage connection)."""
Kwh = Annotated[float, Field(gt=0, le=100_000)]
"""A storage's energy, kWh."""


class TariffSpec(StrictModel):
    """Prices, currency per kWh."""

    import_per_kwh: Price
    feed_in_per_kwh: Price
    community_per_kwh: Price

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.feed_in_per_kwh <= self.community_per_kwh <= self.import_per_kwh:
            raise ValueError("prices must satisfy feed_in <= community <= import")
        return self

    def prices(self) -> Tariff:
        """The tariff as the core type."""
        return Tariff(self.import_per_kwh, self.feed_in_per_kwh, self.community_per_kwh)


class FeederSpec(StrictModel):
    """Either a SimBench code or a pandapower JSON file (relative to the file that names it)."""

    simbench: Name | None = None
    file: FilePath | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.simbench is None) == (self.file is None):
            raise ValueError("give exactly one of 'simbench' or 'file'")
        return self


class LoadSpec(StrictModel):
    """Base load: a SimBench load profile scaled to an annual energy."""

    profile: Name = "H0-A"
    annual_kwh: Annotated[float, Field(gt=0, le=10_000_000)] = 3500.0
    power_factor: Annotated[float, Field(gt=0, le=1)] = 0.95

    @property
    def annual_wh(self) -> float:
        """Annual energy, Wh."""
        return self.annual_kwh * W_PER_KW


class PvSpec(StrictModel):
    """Rooftop PV: peak power and a SimBench PV profile (per kWp)."""

    kwp: Kw
    profile: Name = "PV5"

    @property
    def peak_w(self) -> float:
        """Peak power, W."""
        return self.kwp * W_PER_KW


class BatterySpec(StrictModel):
    """Home battery: usable energy, power limit, one-way efficiency, initial and minimum SoC."""

    kwh: Kwh
    kw: Kw
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95
    soc0: Fraction = 0.5
    soc_min: Fraction = 0.05

    @property
    def e_wh(self) -> float:
        """Usable energy, Wh."""
        return self.kwh * W_PER_KW

    @property
    def p_max_w(self) -> float:
        """Power limit, W."""
        return self.kw * W_PER_KW

    @model_validator(mode="after")
    def _soc_order(self) -> Self:
        if self.soc0 < self.soc_min:
            raise ValueError(f"soc0 {self.soc0} is below soc_min {self.soc_min}")
        return self


class EvSpec(StrictModel):
    """A daily EV session: arrival and departure (UTC time of day), energy needed, charger power."""

    arrival: time
    departure: time
    kwh: Kwh
    kw: Kw

    @property
    def need_wh(self) -> float:
        """Energy needed per session, Wh."""
        return self.kwh * W_PER_KW

    @property
    def p_max_w(self) -> float:
        """Charger power, W: its rating, at most ``EV_MAX_A`` on each phase (a "7.4 kW" single
        phase charger delivers 32 A x 230 V)."""
        rated_w = self.kw * W_PER_KW
        return min(rated_w, ev_phases(rated_w) * EV_MAX_A * V_NOMINAL_V)

    @field_validator("arrival", "departure", mode="before")
    @classmethod
    def _parse_time(cls, v: object) -> object:
        if isinstance(v, int):  # YAML 1.1 reads an unquoted 17:30 as 1050 (base 60)
            raise ValueError(f'time of day must be quoted, e.g. "18:30", got the number {v}')
        if isinstance(v, str) and not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", v):
            raise ValueError(f"time of day must look like 18:30, got {v!r}")
        return v

    @model_validator(mode="after")
    def _has_window(self) -> Self:
        # a departure earlier in the day than the arrival means the next morning
        if self.arrival == self.departure:
            raise ValueError("departure equals arrival: the car would never be plugged in")
        return self


class HouseholdSpec(StrictModel):
    """One household: where it connects, what it owns, its connection limits."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    bus: Bus
    load: LoadSpec = LoadSpec()
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    ev: EvSpec | None = None
    connection_kw: Kw = 17.25
    """Main fuse as power (3 x 25 A x 230 V), kW; bounds import and export."""

    @property
    def connection_w(self) -> float:
        """Main fuse as power, W."""
        return self.connection_kw * W_PER_KW


class LimitsSpec(StrictModel):
    """Feeder operating limits checked by the AC power flow."""

    v_min_pu: Annotated[float, Field(gt=0.5, le=1)] = 0.94
    v_max_pu: Annotated[float, Field(ge=1, lt=1.5)] = 1.06
    loading_max_pct: Annotated[float, Field(gt=0, le=1000)] = 100.0


class DispatchSpec(StrictModel):
    """How the community plans: horizon and full re-plan period in intervals; intervals of the
    near re-plan run every interval in between (0: follow the full plan until the next one);
    AC check settings: the margins a plan keeps inside the voltage band (p.u.) and below the
    branch loading limit (percentage points), and the most check / re-solve rounds."""

    horizon: Annotated[int, Field(ge=1, le=7 * INTERVALS_PER_DAY)] = INTERVALS_PER_DAY
    replan_every: Annotated[int, Field(ge=1, le=INTERVALS_PER_DAY)] = 1
    near: Annotated[int, Field(ge=0, le=INTERVALS_PER_DAY)] = DEFAULT_NEAR
    margin_v_pu: Annotated[float, Field(ge=0, le=0.05)] = 0.006
    margin_loading_pct: Annotated[float, Field(ge=0, le=50)] = 3.0
    rounds: Annotated[int, Field(ge=1, le=20)] = 5


class MeterClasses(StrictModel):
    """Accuracy classes (MID) of the community's meters, from which settlement takes the
    tolerance of its physics checks (and a simulation its meters' error). A household's
    connection meter is usually class B; the transformer meter of a secondary substation is
    CT-operated and usually class C (0.5 S) or better."""

    household_class: AccuracyClass = "B"
    transformer_class: AccuracyClass = "C"


Degrees = Annotated[float, Field(strict=True)]
"""An angle, degrees (a number: no text, no boolean)."""


class LocationSpec(StrictModel):
    """Where the community is, for the sun: latitude_deg (−90..90, north > 0), longitude_deg
    (−180..180, east > 0), altitude_m (above sea level, m; −450 m at the Dead Sea to 6,000 m).
    Settlement bounds each household's PV export by the sun there (``gridctl.sun``)."""

    latitude_deg: Annotated[Degrees, Field(ge=-90, le=90)]
    longitude_deg: Annotated[Degrees, Field(ge=-180, le=180)]
    altitude_m: Annotated[float, Field(strict=True, ge=-450, le=6000)] = 0.0

    def place(self) -> Place:
        """The location as ``gridctl.sun`` takes it."""
        return Place(self.latitude_deg, self.longitude_deg, self.altitude_m)


class OpenDataSpec(StrictModel):
    """What the community publishes (``gridctl.settlement.aggregates``): k, the fewest
    households a published figure may cover, and whether the coordinator broadcasts each
    interval's aggregates (retained, on ``coordinator/opendata``)."""

    k: Annotated[int, Field(ge=MIN_K, le=10_000)] = DEFAULT_K
    publish: bool = False


class CommunitySpec(StrictModel):
    """A community as planning and settlement see it: feeder (None: no plans), location,
    households,
    prices, reward rate, feeder limits, dispatch settings, the meters' accuracy classes, how
    its members govern it and what it publishes."""

    feeder: FeederSpec | None = None
    location: LocationSpec | None = None
    """Where the community is (None: unknown; PV exports are then bounded by kWp alone)."""
    households: list[HouseholdSpec] = Field(default_factory=list)
    tariff: TariffSpec
    reward_tokens_per_kwh: RewardRate = 1.0
    flex_tokens_per_kwh: RewardRate = 0.0
    """Tokens per kWh of flexibility a household delivers in a grid operator's event."""
    limits: LimitsSpec = LimitsSpec()
    dispatch: DispatchSpec = DispatchSpec()
    meters: MeterClasses = MeterClasses()
    governance: GovernanceSpec = GovernanceSpec()
    envelopes: EnvelopesSpec = EnvelopesSpec()
    opendata: OpenDataSpec = OpenDataSpec()

    @model_validator(mode="after")
    def _envelope_targets_exist(self) -> Self:
        unknown = unknown_targets(self.envelopes, {h.id for h in self.households})
        if unknown:
            raise ValueError(
                f"envelopes.limits name {', '.join(map(repr, unknown))}: "
                f"neither {FEEDER!r} nor a household"
            )
        return self

    @model_validator(mode="after")
    def _governed_within_bounds(self) -> Self:
        b = self.governance.bounds
        for name, value in (
            ("community_per_kwh", self.tariff.community_per_kwh),
            ("reward_tokens_per_kwh", self.reward_tokens_per_kwh),
            ("flex_tokens_per_kwh", self.flex_tokens_per_kwh),
        ):
            if value not in getattr(b, name):
                r = getattr(b, name)
                raise ValueError(
                    f"{name} {value:g} lies outside governance.bounds.{name} [{r.lo:g}, {r.hi:g}]"
                )
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for h in self.households:
            if h.id in seen:
                raise ValueError(f"household id {h.id!r} appears twice")
            seen.add(h.id)
        return self
