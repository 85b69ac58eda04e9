"""How a community governs itself (the ``governance:`` section of a coordinator config or a
scenario): the hard bounds no vote can cross, how votes are weighted, and the quorum and
threshold of each class of proposal.

```yaml
governance:
  weights: member                 # member | contribution | quadratic
  cap_share: 0.1                  # contribution, quadratic: no household above this share
  window_days: 90                 # contribution counted over this trailing window
  rules:                          # share of the snapshot's weight; threshold: of yes + no
    ordinary: {quorum: 0.2, threshold: 0.5}
    membership: {quorum: 0.3, threshold: 0.5}
    constitutional: {quorum: 0.5, threshold: 0.667}
  window_intervals: [4, 2880]     # a proposal's voting window, intervals
  delay_intervals: [1, 2880]      # from close to enactment, intervals (the timelock)
  bounds:                         # [lowest, highest] a vote may set
    community_per_kwh: [0.10, 0.30]   # and always feed_in <= community <= import
    reward_tokens_per_kwh: [0, 5]
```

A leaf module (pydantic only): the community spec embeds it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gridctl.core import StrictModel

WeightMode = Literal["member", "contribution", "quadratic"]
CLASSES: tuple[str, ...] = ("ordinary", "membership", "constitutional")
"""Classes of proposal: each has its own quorum and threshold."""
Share = Annotated[float, Field(ge=0, le=1)]


class _Pair(StrictModel):
    """Closed interval [lo, hi], written in YAML as ``[lo, hi]``."""

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            if len(v) != 2:
                raise ValueError(f"give [lowest, highest], got {len(v)} values")
            return {"lo": v[0], "hi": v[1]}
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        lo, hi = self.lo, self.hi  # type: ignore[attr-defined]
        if lo > hi:
            raise ValueError(f"lowest {lo:g} is above highest {hi:g}")
        return self

    def __contains__(self, x: float) -> bool:
        return self.lo <= x <= self.hi  # type: ignore[attr-defined]


class Range(_Pair):
    """Closed interval [lo, hi] a governed number must lie in."""

    lo: float
    hi: float


class IntRange(_Pair):
    """Closed interval [lo, hi] of intervals."""

    lo: Annotated[int, Field(ge=0, le=366 * 96)]
    hi: Annotated[int, Field(ge=0, le=366 * 96)]


class Rule(StrictModel):
    """quorum: share of the snapshot's total weight that must vote (yes, no or abstain).
    threshold: a proposal passes when yes > threshold x (yes + no); never below a half."""

    quorum: Share
    threshold: Annotated[float, Field(ge=0.5, le=1)]


class Bounds(StrictModel):
    """The hard bounds of each governed number, set by the coordinator's operator."""

    community_per_kwh: Range = Range(lo=0.0, hi=100.0)
    reward_tokens_per_kwh: Range = Range(lo=0.0, hi=100.0)
    flex_tokens_per_kwh: Range = Range(lo=0.0, hi=100.0)
    battery_reserve_soc: Range = Range(lo=0.0, hi=0.8)
    cap_share: Range = Range(lo=0.01, hi=1.0)
    quorum: Range = Range(lo=0.1, hi=1.0)
    threshold: Range = Range(lo=0.5, hi=1.0)
    window_days: Range = Range(lo=1, hi=366)

    @model_validator(mode="after")
    def _physical(self) -> Self:
        for name in ("battery_reserve_soc", "cap_share", "quorum", "threshold"):
            r: Range = getattr(self, name)
            if r.lo < 0 or r.hi > 1:
                raise ValueError(f"{name}: a share lies in [0, 1]")
        if self.threshold.lo < 0.5:
            raise ValueError("threshold: below 0.5 a minority could pass a proposal")
        for name in ("community_per_kwh", "reward_tokens_per_kwh", "flex_tokens_per_kwh"):
            if getattr(self, name).lo < 0:
                raise ValueError(f"{name}: must not go below 0")
        return self


def _default_rules() -> dict[str, Rule]:
    return {
        "ordinary": Rule(quorum=0.2, threshold=0.5),
        "membership": Rule(quorum=0.3, threshold=0.5),
        "constitutional": Rule(quorum=0.5, threshold=0.667),
    }


class GovernanceSpec(StrictModel):
    """A community's governance settings (see the module doc)."""

    weights: WeightMode = "member"
    cap_share: Annotated[float, Field(gt=0, le=1)] = 0.1
    window_days: Annotated[int, Field(ge=1, le=366)] = 90
    rules: dict[Literal["ordinary", "membership", "constitutional"], Rule] = Field(
        default_factory=_default_rules
    )
    window_intervals: IntRange = IntRange(lo=4, hi=30 * 96)
    delay_intervals: IntRange = IntRange(lo=1, hi=30 * 96)
    bounds: Bounds = Bounds()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing = [c for c in CLASSES if c not in self.rules]
        if missing:
            raise ValueError(f"rules: give every class ({', '.join(missing)} missing)")
        if self.window_intervals.lo < 1:
            raise ValueError("window_intervals: a proposal is open at least one interval")
        b = self.bounds
        for name, value in (("cap_share", self.cap_share), ("window_days", self.window_days)):
            if value not in getattr(b, name):
                raise ValueError(f"{name}: {value:g} lies outside bounds.{name}")
        for c, rule in self.rules.items():
            for name in ("quorum", "threshold"):
                if getattr(rule, name) not in getattr(b, name):
                    raise ValueError(f"rules.{c}.{name}: outside bounds.{name}")
        return self
