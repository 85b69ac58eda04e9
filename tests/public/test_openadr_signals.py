"""OpenADR event → limits, prices and flexibility requests, on events shaped as openleadr
parses them (what a VTN other than openleadr's may send too: negative durations, itemBase)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gridctl.public.envelope import FEEDER
from gridctl.public.openadr_signals import EventRefused, map_event

T0 = datetime(2025, 6, 21, 11, 0, tzinfo=UTC)
S0 = T0.timestamp()
H = ["h00", "h01"]


def signal(name: str, kind: str, *values: float, hours: float = 1, **extra: Any) -> dict:
    ivs = [{"dtstart": T0 + timedelta(hours=k * hours), "duration": timedelta(hours=hours),
            "signal_payload": v, "uid": k} for k, v in enumerate(values)]  # fmt: skip
    return {"signal_name": name, "signal_type": kind, "signal_id": name, "intervals": ivs, **extra}


def event(*signals: dict, targets: list | None = None, ramp: timedelta | None = None) -> dict:
    active: dict[str, Any] = {"dtstart": T0, "duration": timedelta(hours=3)}
    if ramp is not None:
        active["ramp_up"] = ramp
    return {"event_descriptor": {"event_id": "e1", "modification_number": 0, "event_status": "far"},
            "active_period": active, "event_signals": list(signals),
            "targets": targets if targets is not None else [{"ven_id": "ven-oak"}]}  # fmt: skip


def test_export_limit_on_the_feeder_with_ramp_before_start_and_payment() -> None:
    acc = map_event(
        event(signal("x-opModExpLimW", "setpoint", 5000, 4000, 5000),
              signal("BID_PRICE", "price", 0.25, hours=3), ramp=timedelta(minutes=15)),
        H,
    )  # fmt: skip
    assert [(lim.target, lim.start_s - S0, lim.end_s - S0, lim.export_max_w, lim.ramp_s)
            for lim in acc.limits] == [
        (FEEDER, -900, 3600, 5000, 900), (FEEDER, 3600, 7200, 4000, 0),
        (FEEDER, 7200, 10800, 5000, 0)]  # fmt: skip
    assert all(math.isinf(lim.import_max_w) for lim in acc.limits)
    assert [(f.start_s - S0, f.export_max_w, f.price_per_kwh) for f in acc.flex] == [
        (0, 5000, 0.25), (3600, 4000, 0.25), (7200, 5000, 0.25)]  # fmt: skip
    assert acc.end_s == S0 + 10800


def test_load_dispatch_is_kw_unless_its_item_base_says_otherwise() -> None:
    kw = map_event(event(signal("LOAD_DISPATCH", "setpoint", 7)), H)
    assert kw.limits[0].import_max_w == 7000
    mw = {"name": "powerReal", "unit": "W", "scale": "M", "description": "RealPower"}
    scaled = map_event(event(signal("x-opModImpLimW", "setpoint", 0.2, measurement=mw)), H)
    assert scaled.limits[0].import_max_w == pytest.approx(200_000)
    volts = {**mw, "unit": "V"}
    with pytest.raises(EventRefused, match="not a real power"):
        map_event(event(signal("LOAD_DISPATCH", "setpoint", 7, measurement=volts)), H)


def test_targets_household_resources_feeder_and_a_signal_of_its_own() -> None:
    acc = map_event(
        event(signal("x-opModImpLimW", "setpoint", 4000),
              signal("x-opModExpLimW", "setpoint", 3000, targets=[{"resource_id": "feeder"}]),
              targets=[{"resource_id": "h01"}, {"resource_id": "h00"}, {"resource_id": "h01"}]),
        H,
    )  # fmt: skip
    assert [(lim.target, lim.import_max_w, lim.export_max_w) for lim in acc.limits] == [
        ("h01", 4000, math.inf), ("h00", 4000, math.inf), (FEEDER, math.inf, 3000)]  # fmt: skip
    assert acc.flex == ()  # no BID_PRICE and no default price: not a paid request
    with pytest.raises(EventRefused, match="unknown resource 'h07'"):
        map_event(
            event(signal("x-opModImpLimW", "setpoint", 1), targets=[{"resource_id": "h07"}]), H
        )


def test_default_price_makes_a_limit_a_flexibility_request() -> None:
    acc = map_event(event(signal("LOAD_DISPATCH", "setpoint", 20, hours=3)), H, 0.4)
    assert [(f.target, f.import_max_w, f.price_per_kwh) for f in acc.flex] == [
        (FEEDER, 20_000, 0.4)
    ]
    paid = map_event(event(signal("LOAD_DISPATCH", "setpoint", 20, hours=3),
                           signal("BID_PRICE", "price", 0.1, hours=3)), H, 0.4)  # fmt: skip
    assert paid.flex[0].price_per_kwh == 0.1  # the event's own price wins


def test_prices_may_be_negative_but_bounded() -> None:
    acc = map_event(event(signal("ELECTRICITY_PRICE", "price", 0.3, -0.05)), H)
    assert [(p.start_s - S0, p.price_per_kwh) for p in acc.prices] == [(0, 0.3), (3600, -0.05)]
    assert acc.limits == ()
    with pytest.raises(EventRefused, match="beyond"):
        map_event(event(signal("ELECTRICITY_PRICE", "price", 250)), H)
    with pytest.raises(EventRefused, match="payment is ≥ 0"):
        map_event(
            event(signal("LOAD_DISPATCH", "setpoint", 5), signal("BID_PRICE", "price", -1)), H
        )


@pytest.mark.parametrize(
    ("sig", "reason"),
    [
        (signal("x-opModExpLimW", "setpoint", -1), "outside 0"),
        (signal("x-opModExpLimW", "setpoint", 1e9), "outside 0"),
        (signal("x-opModExpLimW", "setpoint", math.nan), "not a finite number"),
        (signal("x-opModExpLimW", "setpoint", math.inf), "not a finite number"),
        (signal("x-opModExpLimW", "setpoint", True), "not a finite number"),
        (signal("x-opModExpLimW", "setpoint", 5, hours=-0.25), "ends at or before it starts"),
        (signal("x-opModExpLimW", "setpoint", 5, hours=24 * 400), "beyond a year"),
        (signal("SIMPLE", "level", 1), "unsupported signal"),
        (signal("x-loadControlCapacity", "x-loadControlCapacity", 0.5), "unsupported signal"),
        (signal("LOAD_CONTROL", "x-loadControlCapacity", 0.5), "unsupported signal"),
        ({**signal("LOAD_DISPATCH", "setpoint", 5), "intervals": []}, "no intervals"),
    ],
)
def test_malformed_or_unsupported_signals_refuse_the_whole_event(sig: dict, reason: str) -> None:
    good = signal("x-opModImpLimW", "setpoint", 4000)
    with pytest.raises(EventRefused, match=reason):
        map_event(event(good, sig), H)


def test_malformed_events_refused() -> None:
    with pytest.raises(EventRefused, match="no event signals"):
        map_event(event(), H)
    naive = signal("LOAD_DISPATCH", "setpoint", 5)
    naive["intervals"][0]["dtstart"] = datetime(2025, 6, 21, 11)
    with pytest.raises(EventRefused, match="timezone-aware"):
        map_event(event(naive), H)
    with pytest.raises(EventRefused, match="ramp-up"):
        map_event(event(signal("LOAD_DISPATCH", "setpoint", 5), ramp=timedelta(hours=-1)), H)
    with pytest.raises(EventRefused, match="not a list"):
        map_event(event(signal("LOAD_DISPATCH", "setpoint", 5), targets="h00"), H)  # type: ignore[arg-type]


def test_a_14a_signal_dims_households_and_is_never_paid() -> None:
    acc = map_event(
        event(signal("x-14aLimW", "setpoint", 0, 8000), signal("BID_PRICE", "price", 0.3),
              targets=[{"resource_id": "h01"}]),
        H, flex_price_per_kwh=0.2,
    )  # fmt: skip
    assert [(lim.target, lim.controllable_max_w) for lim in acc.limits] == [
        ("h01", 0), ("h01", 8000)]  # fmt: skip
    # the connection's own import and export stay free, and §14a is not a paid request
    assert all(math.isinf(lim.import_max_w) and math.isinf(lim.export_max_w)
               for lim in acc.limits)  # fmt: skip
    assert acc.flex == ()
    with pytest.raises(EventRefused, match="outside 0"):
        map_event(event(signal("x-14aLimW", "setpoint", -1)), H)
