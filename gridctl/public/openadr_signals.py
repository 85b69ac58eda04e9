"""OpenADR 2.0b events → envelopes, prices and flexibility requests (pure: no I/O).

An event (as ``openleadr`` parses it: a dict with ``event_descriptor``, ``active_period``,
``event_signals`` and ``targets``) is taken whole or refused whole (``EventRefused``, whose
message is the reason): every signal must be one of these, with finite values in bounds.

| signal name         | signal type | unit (without itemBase)  | becomes                          |
|---------------------|-------------|--------------------------|----------------------------------|
| ``LOAD_DISPATCH``   | setpoint    | kW                       | import limit (``Limit``)         |
| ``x-opModImpLimW``  | setpoint    | W                        | import limit                     |
| ``x-opModExpLimW``  | setpoint    | W                        | export limit                     |
| ``x-14aLimW``       | setpoint    | W                        | §14a dimming (controllable cap)  |
| ``ELECTRICITY_PRICE`` | price     | currency per kWh         | price series (``Price``)         |
| ``BID_PRICE``       | price       | currency per kWh         | payment for the event's limits   |

OpenADR 2.0b has no export-limit signal; the ``x-`` names are the CSIP-AUS (IEEE 2030.5)
dynamic operating envelope controls ``opModImpLimW`` / ``opModExpLimW``, as an OpenADR
extension name (the schema allows any ``x-`` signal name). A power signal with an itemBase
(``powerReal``, unit W, any SI scale code) is read in that unit instead.
``x-14aLimW`` dims a household under §14a EnWG (``gridctl.public.dimming``): its value caps the
sum of the household's controllable devices (0: each at its guaranteed 4.2 kW), never its
connection's import, and it is never a paid flexibility request (§14a is paid for by reduced
grid fees); on the feeder it dims every household.
``x-loadControlCapacity`` is not taken: it is a fraction (0–1) of a capacity the two sides
would first have to agree on.

Targets: the event's (or a signal's own) targets; a target with a ``resource_id`` names a
household (its connection point) or ``feeder``; one without (the VEN itself, a group, a party)
means the whole feeder.

Time: each interval (dtstart, duration) gives one limit. The active period's ramp-up
(``x-eiRampUp``) is, in OpenADR, the time *before* the event's start in which to get there: the
first interval's limit is given as ``Limit(start_s=dtstart - ramp, ramp_s=ramp)``, so it binds
from dtstart. A limit with a payment (a ``BID_PRICE`` interval covering the limit's start, or
the configured default price) is also a ``FlexEvent``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gridctl.core import GridctlError
from gridctl.public.envelope import FEEDER, Limit
from gridctl.public.flex_event import FlexEvent

MAX_POWER_W = 100e6
"""A limit above 100 MW is not meant for a low-voltage community: refused as absurd."""
MAX_PRICE_PER_KWH = 100.0
"""Prices beyond ±100 currency units per kWh are refused as absurd."""
MAX_SPAN_S = 366 * 86_400
"""An interval (or ramp) longer than a year is refused as absurd, s."""

IMPORT, EXPORT, CONTROLLABLE = "import", "export", "controllable"
LIMIT_SIGNALS: Mapping[tuple[str, str], tuple[str, float]] = {
    ("LOAD_DISPATCH", "setpoint"): (IMPORT, 1000.0),
    ("x-opModImpLimW", "setpoint"): (IMPORT, 1.0),
    ("x-opModExpLimW", "setpoint"): (EXPORT, 1.0),
    ("x-14aLimW", "setpoint"): (CONTROLLABLE, 1.0),
}
"""(signal name, signal type) → (which limit, W per unit of a value without itemBase)."""
PRICE = ("ELECTRICITY_PRICE", "price")
PAYMENT = ("BID_PRICE", "price")
SI_SCALE = {"none": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
"""OpenADR siScaleCode → factor (the codes a power can sensibly carry)."""


class EventRefused(GridctlError):
    """An event the VEN does not take (opts out of); the message is the reason."""


@dataclass(frozen=True)
class Price:
    """An energy price over ``[start_s, end_s)`` (epoch s), currency units per kWh (may be
    negative)."""

    start_s: float
    end_s: float
    price_per_kwh: float


@dataclass(frozen=True)
class Accepted:
    """What an accepted event asks: its limits, prices and paid flexibility requests."""

    event_id: str
    limits: tuple[Limit, ...]
    prices: tuple[Price, ...]
    flex: tuple[FlexEvent, ...]
    end_s: float
    """When its last interval ends, epoch s."""


@dataclass(frozen=True)
class _Span:
    start_s: float
    end_s: float
    value: float


def event_id_of(event: Mapping[str, object]) -> str:
    """The event's id ("?" if it has none)."""
    desc = event.get("event_descriptor")
    eid = desc.get("event_id") if isinstance(desc, Mapping) else None
    return eid if isinstance(eid, str) else "?"


def map_event(
    event: Mapping[str, object],
    households: Collection[str],
    flex_price_per_kwh: float | None = None,
) -> Accepted:
    """The limits, prices and flexibility requests an OpenADR event asks for (see the module
    doc); ``EventRefused`` with the reason if any part of it is malformed or unsupported.
    households: the community's household ids (valid ``resource_id`` targets).
    flex_price_per_kwh: payment per kWh for a limit whose event carries no ``BID_PRICE``
    (None: such a limit is not a paid flexibility request)."""
    event_id = event_id_of(event)
    signals = event.get("event_signals")
    if isinstance(signals, Mapping):  # openleadr nests them once in some messages
        signals = signals.get("event_signals")
    if not isinstance(signals, list) or not signals:
        raise EventRefused("no event signals")
    ramp_s = _ramp_s(event.get("active_period"))
    event_targets = _targets(event.get("targets"), households)
    limits: list[tuple[str, str, _Span, float]] = []  # (kind, target, span, ramp_s)
    prices: list[Price] = []
    payments: list[_Span] = []
    for k, sig in enumerate(signals):
        if not isinstance(sig, Mapping):
            raise EventRefused(f"signal {k} is not a signal")
        name, kind = sig.get("signal_name"), sig.get("signal_type")
        where = f"signal {k} ({name}/{kind})"
        spans = _spans(sig.get("intervals"), where)
        if (name, kind) in LIMIT_SIGNALS:
            which, unit_w = LIMIT_SIGNALS[(name, kind)]  # type: ignore[index]
            factor = _power_factor(sig.get("measurement"), unit_w, where)
            own = sig.get("targets")
            targets = _targets(own, households) if own else event_targets
            for j, s in enumerate(spans):
                value_w = s.value * factor
                if not 0 <= value_w <= MAX_POWER_W:
                    raise EventRefused(f"{where}: limit {value_w:g} W outside 0 … {MAX_POWER_W:g}")
                for t in targets:
                    limits.append((which, t, _Span(s.start_s, s.end_s, value_w), ramp_s * (j == 0)))
        elif (name, kind) in (PRICE, PAYMENT):
            _no_price_scale(sig.get("measurement"), where)
            for s in spans:
                if not abs(s.value) <= MAX_PRICE_PER_KWH:
                    bound = f"±{MAX_PRICE_PER_KWH:g}"
                    raise EventRefused(f"{where}: price {s.value:g} per kWh beyond {bound}")
                if (name, kind) == PAYMENT and s.value < 0:
                    raise EventRefused(f"{where}: a payment is ≥ 0, got {s.value:g}")
            if (name, kind) == PRICE:
                prices += [Price(s.start_s, s.end_s, s.value) for s in spans]
            else:
                payments += spans
        else:
            raise EventRefused(f"{where}: unsupported signal name/type")
    out_limits, flex = [], []
    for which, target, s, ramp in limits:
        w = {f"{which}_max_w": s.value}
        try:
            out_limits.append(Limit(target, s.start_s - ramp, s.end_s, ramp_s=ramp, **w))
        except ValueError as e:
            raise EventRefused(f"limit on {target}: {e}") from None
        if which == CONTROLLABLE:
            continue
        price = next((p.value for p in payments if p.start_s <= s.start_s < p.end_s), None)
        price = flex_price_per_kwh if price is None else price
        if price is not None:
            flex.append(FlexEvent(event_id, target, s.start_s, s.end_s, price_per_kwh=price, **w))
    if not out_limits and not prices:
        raise EventRefused("no limit and no price: nothing to do")
    end_s = max([lim.end_s for lim in out_limits] + [p.end_s for p in prices])
    return Accepted(event_id, tuple(out_limits), tuple(prices), tuple(flex), end_s)


def _targets(raw: object, households: Collection[str]) -> list[str]:
    """Target names: ``FEEDER`` for the VEN itself, a household id for its resource."""
    if raw is None or raw == []:
        return [FEEDER]
    if not isinstance(raw, list):
        raise EventRefused("targets are not a list")
    out: list[str] = []
    for t in raw:
        rid = t.get("resource_id") if isinstance(t, Mapping) else None
        if rid is None:
            name = FEEDER
        elif rid == FEEDER or rid in households:
            name = rid
        else:
            raise EventRefused(f"unknown resource {rid!r} (neither a household nor {FEEDER!r})")
        if name not in out:
            out.append(name)
    return out


def _spans(raw: object, where: str) -> list[_Span]:
    """Each interval as (start, end, value); refused unless dated, positive and finite."""
    if not isinstance(raw, Sequence) or not raw:
        raise EventRefused(f"{where}: no intervals")
    out = []
    for j, iv in enumerate(raw):
        if not isinstance(iv, Mapping):
            raise EventRefused(f"{where}: interval {j} is not an interval")
        start, dur, value = iv.get("dtstart"), iv.get("duration"), iv.get("signal_payload")
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise EventRefused(f"{where}: interval {j} has no timezone-aware dtstart")
        if not isinstance(dur, timedelta):
            raise EventRefused(f"{where}: interval {j} has no duration")
        dur_s = dur.total_seconds()
        if not 0 < dur_s <= MAX_SPAN_S:
            raise EventRefused(
                f"{where}: interval {j} ends at or before it starts, or lasts beyond a year "
                f"(duration {dur_s:g} s)"
            )
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):  # type: ignore[arg-type]
            raise EventRefused(f"{where}: interval {j} value {value!r} is not a finite number")
        t0 = start.timestamp()
        out.append(_Span(t0, t0 + dur_s, float(value)))
    return out


def _ramp_s(active_period: object) -> float:
    """The active period's ramp-up (``x-eiRampUp``), s (0 without)."""
    if not isinstance(active_period, Mapping):
        return 0.0
    ramp = active_period.get("ramp_up", active_period.get("ramp_up_period"))
    if ramp is None:
        return 0.0
    if not isinstance(ramp, timedelta) or not 0 <= ramp.total_seconds() <= MAX_SPAN_S:
        raise EventRefused(f"ramp-up {ramp!r} is not a duration of 0 s to a year")
    return ramp.total_seconds()


def _power_factor(measurement: object, unit_w: float, where: str) -> float:
    """W per unit of a power signal's values: from its itemBase, else the signal's own unit."""
    if measurement is None:
        return unit_w
    if not isinstance(measurement, Mapping) or measurement.get("unit") != "W":
        raise EventRefused(f"{where}: itemBase {measurement!r} is not a real power in W")
    scale = measurement.get("scale") or "none"
    if scale not in SI_SCALE:
        raise EventRefused(f"{where}: unsupported scale {scale!r}")
    return SI_SCALE[scale]


def _no_price_scale(measurement: object, where: str) -> None:
    """A price is taken per kWh; an itemBase saying otherwise is refused."""
    if measurement is None:
        return
    ok = isinstance(measurement, Mapping) and measurement.get("name") == "currencyPerKWh"
    if not ok or (measurement.get("scale") or "none") != "none":  # type: ignore[union-attr]
        raise EventRefused(f"{where}: itemBase {measurement!r} is not a price per kWh")
