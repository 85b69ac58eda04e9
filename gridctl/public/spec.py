"""The ``envelopes:`` section of a scenario or coordinator config: the default envelope that
applies when a grid-operator source falls silent, and standing (or, in a study, scripted)
limits.

```yaml
envelopes:
  default:                        # in place of a source silent for 3 of its poll periods
    feeder: {export_max_kw: 100}
    household: {export_max_kw: 5, import_max_kw: 20}
  limits:
    - {target: feeder, start: 2026-05-04T11:00:00Z, end: 2026-05-04T14:00:00Z,
       export_max_kw: 60, ramp_s: 900}
    - {target: h07, start: 2026-05-04T17:00:00Z, end: 2026-05-04T20:00:00Z, import_max_kw: 4.2}
    - {target: feeder, import_max_kw: 250}           # no start or end: always
  events:                         # flexibility requests, paid per kWh delivered
    - {id: evening-1, target: feeder, start: 2026-01-12T17:00:00Z, end: 2026-01-12T20:00:00Z,
       import_max_kw: 120, price_per_kwh: 0.30}
```

Limits are kW here (as operators state them) and W inside; ``target`` is ``feeder`` or a
household id (checked against the households by the spec that embeds this one).
"""

from __future__ import annotations

import math
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, model_validator

from gridctl.core import W_PER_KW, StrictModel
from gridctl.public.envelope import FEEDER, DefaultEnvelope, Envelopes, Limit
from gridctl.public.flex_event import FlexEvent

LimitKw = Annotated[float, Field(ge=0, le=100_000)]
"""An envelope limit, kW (≥ 0; 100 MW is beyond any feeder gridctl plans)."""
STANDING = "config"
"""Source name of the limits a config or scenario states."""
EVENTS = "events"
"""Source name of the flexibility events a config or scenario states."""
FOREVER_S = 2.0**40
"""End of a limit stated without one, epoch s (year ~36812)."""


class PairSpec(StrictModel):
    """Import and export limits, kW (absent: none)."""

    import_max_kw: LimitKw | None = None
    export_max_kw: LimitKw | None = None

    def w(self) -> tuple[float, float]:
        """(import_max_w, export_max_w), ``inf`` for none."""
        return _w(self.import_max_kw), _w(self.export_max_kw)


class LimitSpec(PairSpec):
    """One limit on one target over [start, end) (absent: from always, for ever), binding
    after ``ramp_s``."""

    target: Annotated[str, Field(min_length=1, max_length=64)]
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    ramp_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must come after start")
        if self.import_max_kw is None and self.export_max_kw is None:
            raise ValueError("give import_max_kw, export_max_kw or both")
        return self

    def limit(self) -> Limit:
        """As the core type."""
        imp, exp = self.w()
        start_s = 0.0 if self.start is None else self.start.timestamp()
        end_s = FOREVER_S if self.end is None else self.end.timestamp()
        return Limit(self.target, start_s, end_s, imp, exp, self.ramp_s)


class EventSpec(LimitSpec):
    """A flexibility request stated in a study (or agreed with the operator): a limit on one
    target over [start, end) that the operator pays for, currency per kWh delivered."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    start: AwareDatetime
    end: AwareDatetime
    price_per_kwh: Annotated[float, Field(ge=0, le=100)]

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.import_max_kw is not None and self.export_max_kw is not None:
            raise ValueError("a flexibility event holds down import or export, not both")
        return self

    def event(self) -> FlexEvent:
        """As the core type (its window: after the ramp)."""
        lim = self.limit()
        return FlexEvent(self.id, self.target, lim.start_s + lim.ramp_s, lim.end_s,
                         lim.import_max_w, lim.export_max_w, self.price_per_kwh)  # fmt: skip


class DefaultSpec(StrictModel):
    """The default envelope: one pair for the feeder, one for every household."""

    feeder: PairSpec = PairSpec()
    household: PairSpec = PairSpec()

    def envelope(self) -> DefaultEnvelope:
        """As the core type."""
        (fi, fe), (hi, he) = self.feeder.w(), self.household.w()
        return DefaultEnvelope(fi, fe, hi, he)


class EnvelopesSpec(StrictModel):
    """Default envelope and standing limits (see the module doc)."""

    default: DefaultSpec = DefaultSpec()
    limits: Annotated[list[LimitSpec], Field(max_length=10_000)] = Field(default_factory=list)
    events: Annotated[list[EventSpec], Field(max_length=1_000)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_events(self) -> Self:
        ids = [e.id for e in self.events]
        if len(set(ids)) != len(ids):
            raise ValueError("events: every id once")
        return self

    def targets(self) -> set[str]:
        """Every target a limit or event names."""
        return {s.target for s in [*self.limits, *self.events]}

    def build(self) -> Envelopes:
        """The envelopes: the default, and the standing limits and events' limits as
        never-silent sources."""
        env = Envelopes(self.default.envelope())
        if self.limits:
            env.update(STANDING, [s.limit() for s in self.limits], now_s=0.0)
        if self.events:
            env.update(EVENTS, [s.limit() for s in self.events], now_s=0.0)
        return env

    def flex_events(self) -> list[FlexEvent]:
        """The stated flexibility requests."""
        return [e.event() for e in self.events]


def unknown_targets(spec: EnvelopesSpec, households: set[str]) -> list[str]:
    """Targets that are neither the feeder nor one of ``households``."""
    return sorted(spec.targets() - households - {FEEDER})


def _w(kw: float | None) -> float:
    return math.inf if kw is None else kw * W_PER_KW
