"""The governed parameters: what a proposal may change, of which class, and within which bounds.

Each parameter has a kind (a number, a choice, a member to admit, a household to remove), a
unit and a class (``ordinary``, ``membership``, ``constitutional``: each with its own quorum
and threshold). Numbers lie within the operator's hard bounds (``GovernanceSpec.bounds``); the
community price also always within feed-in ≤ community ≤ import. Physical safety (voltage band,
loading limits, fuses, the grid operator's envelopes, charger minimums) is not a parameter at
all: a proposal naming it is refused as ``not_governable``.

A proposal's value is checked when it is submitted (``check_value``); the bounds it was checked
against are recorded with it, so an audit can check it again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gridctl.core import GridctlError
from gridctl.governance.spec import CLASSES, GovernanceSpec, Range

WEIGHT_MODES = ("member", "contribution", "quadratic")
FAIRNESS_RULES = ("bus", "kwp")
"""Curtailment fairness: the same share of PV on each bus (``bus``), or the same share of PV
across the whole feeder, in proportion to kWp (``kwp``)."""
_HOUSEHOLD = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_KEY_HEX = re.compile(r"^[0-9a-f]{64}$")

SAFETY = frozenset(
    {
        "v_min_pu", "v_max_pu", "loading_max_pct", "limits", "connection_kw", "fuse",
        "envelope", "import_max_w", "export_max_w", "ev_min_w", "charger_min_w",
        "margin_v_pu", "margin_loading_pct", "soc_min",
    }
)  # fmt: skip
"""Names of physical safety limits, refused by name: no vote ever changes them."""


class GovernanceError(GridctlError):
    """A governance request was refused; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Parameter:
    """A governed parameter. kind: ``number``, ``choice``, ``member`` (admit: household and
    member key) or ``household`` (remove). bound: the ``Bounds`` field of a number."""

    name: str
    kind: str
    unit: str
    klass: str
    bound: str = ""
    choices: tuple[str, ...] = ()


def _parameters() -> dict[str, Parameter]:
    ps = [
        Parameter("community_per_kwh", "number", "currency/kWh", "ordinary", "community_per_kwh"),
        Parameter("reward_tokens_per_kwh", "number", "tokens/kWh", "ordinary",
                  "reward_tokens_per_kwh"),
        Parameter("flex_tokens_per_kwh", "number", "tokens/kWh", "ordinary",
                  "flex_tokens_per_kwh"),
        Parameter("battery_reserve_soc", "number", "1", "ordinary", "battery_reserve_soc"),
        Parameter("fairness", "choice", "", "ordinary", choices=FAIRNESS_RULES),
        Parameter("admit", "member", "", "membership"),
        Parameter("remove", "household", "", "membership"),
        Parameter("weights", "choice", "", "constitutional", choices=WEIGHT_MODES),
        Parameter("cap_share", "number", "1", "constitutional", "cap_share"),
        Parameter("window_days", "number", "d", "constitutional", "window_days"),
    ]  # fmt: skip
    for c in CLASSES:
        ps.append(Parameter(f"quorum.{c}", "number", "1", "constitutional", "quorum"))
        ps.append(Parameter(f"threshold.{c}", "number", "1", "constitutional", "threshold"))
    return {p.name: p for p in ps}


PARAMETERS: dict[str, Parameter] = _parameters()
"""Every governed parameter by name."""
VALUED = tuple(n for n, p in PARAMETERS.items() if p.kind in ("number", "choice"))
"""Parameters that hold a value (admit and remove change the membership instead)."""


def parameter(name: str) -> Parameter:
    """The governed parameter ``name``; GovernanceError if there is none of that name."""
    p = PARAMETERS.get(name)
    if p is not None:
        return p
    leaf = name.rsplit(".", 1)[-1]
    if name in SAFETY or leaf in SAFETY:
        raise GovernanceError(
            "not_governable", f"{name} is a physical safety limit: no vote can change it"
        )
    raise GovernanceError(
        "unknown_parameter", f"{name!r} is not governed (governed: {', '.join(PARAMETERS)})"
    )


def bounds_of(p: Parameter, spec: GovernanceSpec, import_per_kwh: float,
              feed_in_per_kwh: float) -> Range | None:  # fmt: skip
    """The closed range a number may take (None for other kinds): the operator's bound, and
    for the community price also [feed-in, import]."""
    if p.kind != "number":
        return None
    r: Range = getattr(spec.bounds, p.bound)
    if p.name == "community_per_kwh":
        return Range(lo=max(r.lo, feed_in_per_kwh), hi=min(r.hi, import_per_kwh))
    return r


def check_value(p: Parameter, value: object, bounds: Range | None) -> object:
    """``value`` as stored (float, str, or {"household", "member_key"}) if ``p`` may take it;
    GovernanceError naming the bound it crosses otherwise."""
    if p.kind == "number":
        assert bounds is not None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GovernanceError("bad_value", f"{p.name} takes a number, got {value!r:.40}")
        x = float(value)
        if not math.isfinite(x):
            raise GovernanceError("bad_value", f"{p.name} must be finite")
        if x not in bounds:
            raise GovernanceError(
                "out_of_bounds",
                f"{p.name} = {x:g} {p.unit} lies outside its bound [{bounds.lo:g}, {bounds.hi:g}]"
                + (" (feed-in <= community <= import)" if p.name == "community_per_kwh" else ""),
            )
        return x
    if p.kind == "choice":
        if value not in p.choices:
            raise GovernanceError(
                "bad_value", f"{p.name} is one of {', '.join(p.choices)}, got {value!r:.40}"
            )
        return value
    if p.kind == "household":
        if not isinstance(value, str) or not _HOUSEHOLD.match(value):
            raise GovernanceError("bad_value", f"{p.name} takes a household id, got {value!r:.40}")
        return value
    if (
        not isinstance(value, dict)
        or set(value) != {"household", "member_key"}
        or not isinstance(value["household"], str)
        or not _HOUSEHOLD.match(value["household"])
        or not isinstance(value["member_key"], str)
        or not _KEY_HEX.match(value["member_key"])
    ):
        raise GovernanceError(
            "bad_value", f"{p.name} takes {{household: id, member_key: 64 hex}}, got {value!r:.60}"
        )
    return {"household": value["household"], "member_key": value["member_key"]}


def parse_value(p: Parameter, text: str) -> object:
    """A value as written on a command line, for ``check_value``: a number for a number, the
    text for a choice or a household to remove, ``household:member_key_hex`` for one to admit.
    GovernanceError if it cannot be read as such."""
    if p.kind == "number":
        try:
            return float(text)
        except ValueError:
            raise GovernanceError(
                "bad_value", f"{p.name} takes a number, got {text!r:.40}"
            ) from None
    if p.kind == "member":
        household, sep, key = text.partition(":")
        if not sep:
            raise GovernanceError(
                "bad_value", f"{p.name} takes household:member_key (64 hex), got {text!r:.60}"
            )
        return {"household": household, "member_key": key}
    return text
