"""Scenario files: the community, its feeder, devices, tariff and run settings (validated YAML)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import Field, field_validator, model_validator

from gridctl.core import (
    INTERVAL_S,
    INTERVALS_PER_DAY,
    W_PER_KW,
    FilePath,
    ScenarioError,
    StrictModel,
    interval_of,
    interval_start,
    read_yaml,
    validated,
)
from gridctl.dispatch.spec import CommunitySpec, FeederSpec, HouseholdSpec
from gridctl.governance.book import MAX_RATIONALE, OPERATOR
from gridctl.governance.params import GovernanceError, bounds_of, check_value, parameter
from gridctl.governance.spec import GovernanceSpec
from gridctl.public.envelope import Limit
from gridctl.public.openadr_spec import OpenAdrSpec

FIRST_START = datetime(2000, 1, 1, tzinfo=UTC)
LAST_START = datetime(2100, 1, 1, tzinfo=UTC)
"""Scenarios start in this century (profiles, interval indices and dates stay in range)."""

CheatKind = Literal["inflate", "copy", "replay", "reverse"]
"""How a dishonest household's meter lies (``gridctl.sim.meters``)."""
HouseholdId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


def _utc_boundary(v: datetime) -> datetime:
    """``v`` in UTC; ValueError unless it has a timezone, lies in this century and falls on an
    interval boundary."""
    if v.tzinfo is None:
        raise ValueError("needs a timezone, e.g. 2026-06-21T00:00:00Z")
    v = v.astimezone(UTC)
    if not FIRST_START <= v < LAST_START:
        raise ValueError(f"must lie in {FIRST_START.year}-{LAST_START.year - 1}")
    if v.timestamp() % INTERVAL_S:
        raise ValueError(f"must fall on an interval boundary ({INTERVAL_S // 60} min)")
    return v


class CheatSpec(StrictModel):
    """A dishonest household: what its meter claims instead of what it measured
    (``gridctl.sim.meters.claimed_w``), from ``start`` (default: the run's start) to ``end``
    (exclusive; default: the run's end), both on interval boundaries.

    size_w: the most extra export claimed, W (> 0, at most the household's connection rating).
    neighbour: the household whose curve a ``copy`` cheat copies (required for copy, and only
    for copy).
    """

    household: HouseholdId
    kind: CheatKind
    size_w: Annotated[float, Field(gt=0, le=10_000_000)]
    neighbour: HouseholdId | None = None
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", "end")
    @classmethod
    def _on_boundary(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _utc_boundary(v)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "copy" and self.neighbour is None:
            raise ValueError("neighbour: a copy cheat needs the household it copies")
        if self.kind != "copy" and self.neighbour is not None:
            raise ValueError(f"neighbour: only a copy cheat has one, not {self.kind}")
        if self.neighbour == self.household:
            raise ValueError("neighbour: a household cannot copy itself")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start: must come before end")
        return self


class DimmingWindow(StrictModel):
    """A §14a EnWG dimming window (``gridctl.public.dimming``): ``households`` (ids, or
    ``all``) dimmed from ``start`` to ``end`` (interval boundaries, end exclusive).

    source: ``coordinator`` (the grid operator's signal reaches the coordinator, as an OpenADR
    ``x-14aLimW`` event would: it plans with it and passes it on in the plan steps) or
    ``input`` (a relay on each household's own I/O coupler, a WAGO 750-352: the controller
    dims by itself; the planner does not know). cap_kw: the cap on each household's
    controllable devices, kW (0, the default: each at its guaranteed 4.2 kW; a relay only
    knows 0).
    """

    households: (
        Literal["all"] | Annotated[list[HouseholdId], Field(min_length=1, max_length=10_000)]
    )
    start: datetime
    end: datetime
    source: Literal["coordinator", "input"] = "coordinator"
    cap_kw: Annotated[float, Field(ge=0, le=1000)] = 0.0

    @field_validator("start", "end")
    @classmethod
    def _on_boundary(cls, v: datetime) -> datetime:
        return _utc_boundary(v)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end: must come after start")
        if self.source == "input" and self.cap_kw:
            raise ValueError("cap_kw: a relay input dims to the guarantee alone (0)")
        return self

    def ids(self, households: list[str]) -> list[str]:
        """The households it dims, of ``households`` (all of them for ``all``)."""
        return list(households) if self.households == "all" else list(self.households)


class ScriptedVotes(StrictModel):
    """Who votes what on a scripted proposal (every household a member; the rest do not vote)."""

    yes: Annotated[list[HouseholdId], Field(default_factory=list, max_length=10_000)]
    no: Annotated[list[HouseholdId], Field(default_factory=list, max_length=10_000)]
    abstain: Annotated[list[HouseholdId], Field(default_factory=list, max_length=10_000)]

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, v: object) -> object:
        # YAML 1.1 reads the keys yes and no as booleans
        if isinstance(v, dict):
            return {{True: "yes", False: "no"}.get(k, k) if isinstance(k, bool) else k: x
                    for k, x in v.items()}  # fmt: skip
        return v

    @model_validator(mode="after")
    def _once_each(self) -> Self:
        seen: set[str] = set()
        for choice in ("yes", "no", "abstain"):
            for h in getattr(self, choice):
                if h in seen:
                    raise ValueError(f"{choice}: {h!r} votes more than once")
                seen.add(h)
        return self

    def ballots(self) -> list[tuple[str, str]]:
        """(household, choice) of every scripted vote, yes then no then abstain."""
        return [(h, c) for c in ("yes", "no", "abstain") for h in getattr(self, c)]


class ScriptedProposal(StrictModel):
    """A proposal the scenario submits at ``at`` (on an interval boundary inside the run) and
    the votes its members send (``gridctl.sim.governance``).

    value: the new value (number, choice, or for ``admit`` {household, member_key}).
    proposer: a household, or ``operator``. window: voting window, intervals (it opens at the
    interval after ``at``). delay: from its close to its enactment, intervals (the timelock).
    vote_at: when the votes are sent (default: the interval the proposal opens).
    """

    at: datetime
    parameter: Annotated[str, Field(min_length=1, max_length=64)]
    value: float | str | dict[str, str]
    rationale: Annotated[str, Field(max_length=MAX_RATIONALE)] = ""
    proposer: HouseholdId = OPERATOR
    window: Annotated[int, Field(ge=1)]
    delay: Annotated[int, Field(ge=0)]
    votes: ScriptedVotes = ScriptedVotes()
    vote_at: datetime | None = None

    @field_validator("at", "vote_at")
    @classmethod
    def _on_boundary(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _utc_boundary(v)

    @property
    def votes_at(self) -> datetime:
        """When the votes are sent."""
        return self.vote_at or self.at + timedelta(seconds=INTERVAL_S)


class ScenarioGovernance(GovernanceSpec):
    """A scenario's governance: the community's settings, and the proposals and votes it
    scripts (``proposals``; none: the community runs without governance)."""

    proposals: Annotated[list[ScriptedProposal], Field(default_factory=list, max_length=1000)]


class Scenario(CommunitySpec):
    """A complete, validated simulation scenario: a community (its feeder required) and the run."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    feeder: FeederSpec
    households: Annotated[list[HouseholdSpec], Field(min_length=1)]
    start: datetime
    intervals: Annotated[int, Field(ge=1, le=366 * INTERVALS_PER_DAY)]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    meter_noise: bool = False
    """Meters measure with their class's error (``gridctl.sim.meters``); off: exactly."""
    cheat: Annotated[list[CheatSpec], Field(default_factory=list, max_length=1000)]
    """Dishonest households, at most one cheat each."""
    governance: ScenarioGovernance = ScenarioGovernance()
    dimming: Annotated[list[DimmingWindow], Field(default_factory=list, max_length=1000)]
    """§14a dimming windows; a household has one source (its controller's configuration)."""
    openadr: OpenAdrSpec | None = None
    """Take the grid operator's envelopes from this VTN and report the transformer meter to it
    (``gridctl.sim.openadr``; the events are dated in the scenario's time)."""
    base_dir: FilePath = Path(".")
    """Directory relative paths in the scenario resolve against (set by the loader)."""

    @field_validator("start")
    @classmethod
    def _utc_aligned(cls, v: datetime) -> datetime:
        try:
            return _utc_boundary(v)
        except ValueError as e:
            raise ValueError(f"start {e}") from None

    @property
    def end(self) -> datetime:
        """When the run ends (exclusive)."""
        return self.start + timedelta(seconds=self.intervals * INTERVAL_S)

    @model_validator(mode="after")
    def _cheats_fit(self) -> Self:
        rating_w = {h.id: h.connection_w for h in self.households}
        end = self.end
        cheaters: set[str] = set()
        for k, c in enumerate(self.cheat):
            where = f"cheat[{k}]"
            for field, h in (("household", c.household), ("neighbour", c.neighbour)):
                if h is not None and h not in rating_w:
                    raise ValueError(f"{where}.{field}: {h!r} is not a household of the scenario")
            if c.household in cheaters:
                raise ValueError(f"{where}.household: {c.household!r} already has a cheat")
            cheaters.add(c.household)
            if c.size_w > rating_w[c.household]:
                raise ValueError(
                    f"{where}.size_w: {c.size_w:g} W exceeds {c.household}'s connection "
                    f"({rating_w[c.household]:g} W)"
                )
            for field, t in (("start", c.start), ("end", c.end)):
                if t is not None and not self.start <= t <= end:
                    raise ValueError(
                        f"{where}.{field}: {t.isoformat()} lies outside the run "
                        f"({self.start.isoformat()} to {end.isoformat()})"
                    )
            if c.start == end:
                raise ValueError(f"{where}.start: the run ends at {end.isoformat()}")
            if c.end == self.start:
                raise ValueError(f"{where}.end: the run starts at {self.start.isoformat()}")
        return self

    @model_validator(mode="after")
    def _script_fits(self) -> Self:
        ids = {h.id for h in self.households}
        run = f"({self.start.isoformat()} to {self.end.isoformat()})"
        g, t = self.governance, self.tariff
        for k, p in enumerate(g.proposals):
            where = f"governance.proposals[{k}]"
            if not self.start <= p.at < self.end:
                raise ValueError(f"{where}.at: {p.at.isoformat()} lies outside the run {run}")
            if not p.at < p.votes_at < self.end:
                raise ValueError(
                    f"{where}.vote_at: {p.votes_at.isoformat()} must come after at and before "
                    f"the run ends {run}"
                )
            if p.proposer != OPERATOR and p.proposer not in ids:
                raise ValueError(f"{where}.proposer: {p.proposer!r} is not a household")
            for h, choice in p.votes.ballots():
                if h not in ids:
                    raise ValueError(f"{where}.votes.{choice}: {h!r} is not a household")
            for what, n, r in (("window", p.window, g.window_intervals),
                               ("delay", p.delay, g.delay_intervals)):  # fmt: skip
                if n not in r:
                    raise ValueError(f"{where}.{what}: {n} intervals lies outside "
                                     f"governance.{what}_intervals [{r.lo}, {r.hi}]")  # fmt: skip
            try:
                par = parameter(p.parameter)
                value = check_value(par, p.value, bounds_of(par, g, t.import_per_kwh,
                                                            t.feed_in_per_kwh))  # fmt: skip
            except GovernanceError as e:
                raise ValueError(f"{where}: {e}") from None
            if par.name == "remove" and value not in ids:
                raise ValueError(f"{where}.value: {value!r} is not a household")
        return self

    @model_validator(mode="after")
    def _dimming_fits(self) -> Self:
        ids = [h.id for h in self.households]
        source: dict[str, str] = {}
        for k, w in enumerate(self.dimming):
            for h in w.ids(ids):
                if h not in ids:
                    raise ValueError(f"dimming[{k}].households: {h!r} is not a household")
                if source.setdefault(h, w.source) != w.source:
                    raise ValueError(f"dimming[{k}].source: {h!r} is dimmed by {source[h]} "
                                     "elsewhere; a household has one source")  # fmt: skip
        return self

    def dimming_limits(self) -> list[Limit]:
        """The coordinator-sourced dimming windows as envelope limits on each household."""
        ids = [h.id for h in self.households]
        return [
            Limit(h, w.start.timestamp(), w.end.timestamp(), controllable_max_w=w.cap_kw * W_PER_KW)
            for w in self.dimming if w.source == "coordinator" for h in w.ids(ids)
        ]  # fmt: skip

    def relays_on(self, t: int) -> np.ndarray:
        """Which households' relays ask to dim in run step t (0-based), (H,) bool."""
        ids = [h.id for h in self.households]
        t_s = float(interval_start(self.first_interval + t).timestamp())
        on = np.zeros(len(ids), dtype=bool)
        for w in self.dimming:
            if w.source == "input" and w.start.timestamp() <= t_s < w.end.timestamp():
                on[[ids.index(h) for h in w.ids(ids)]] = True
        return on

    def relay_households(self) -> set[str]:
        """Households whose dimming comes from a relay input."""
        ids = [h.id for h in self.households]
        return {h for w in self.dimming if w.source == "input" for h in w.ids(ids)}

    @property
    def community_id(self) -> str:
        """The scenario's name as a community id (topic-safe)."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", self.name)[:32] or "sim"

    @property
    def first_interval(self) -> int:
        """Interval index of ``start``."""
        return interval_of(self.start)

    def cheat_window(self, cheat: CheatSpec) -> tuple[int, int]:
        """Run steps (0-based, end exclusive) in which ``cheat`` lies."""
        a = 0 if cheat.start is None else interval_of(cheat.start) - self.first_interval
        b = self.intervals if cheat.end is None else interval_of(cheat.end) - self.first_interval
        return a, b


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
