"""The planning fields this issue added refuse hostile values with a clear error."""

import math

import pytest
from pydantic import ValidationError

from gridctl.dispatch.spec import CommunitySpec, DispatchSpec, EvSpec, LocationSpec
from gridctl.sun import Place

HOSTILE = [2**63, -1, math.nan, math.inf, 1e308, "", "x" * 100_000, "9999-12-31T23:59:59Z"]


@pytest.mark.parametrize("value", HOSTILE)
def test_loading_margin_refuses_hostile_values(value: object) -> None:
    with pytest.raises(ValidationError, match="margin_loading_pct"):
        DispatchSpec(margin_loading_pct=value)  # type: ignore[arg-type]
    assert DispatchSpec(margin_loading_pct=5).margin_loading_pct == 5.0


@pytest.mark.parametrize(
    "value", [*HOSTILE, "99:99:99", "17:30:60", "17:30:00:00", "9999:00", "1" * 100_000]
)
def test_ev_times_refuse_hostile_values(value: object) -> None:
    with pytest.raises(ValidationError, match="arrival"):
        EvSpec(arrival=value, departure="07:00", kwh=20, kw=11)  # type: ignore[arg-type]


def test_ev_times_take_hours_minutes_and_seconds_and_a_charger_gives_32_a_per_phase() -> None:
    ev = EvSpec(arrival="17:30:00", departure="07:00", kwh=20, kw=7.4)
    assert (ev.arrival.hour, ev.arrival.minute) == (17, 30)
    assert ev.p_max_w == 32 * 230  # a "7.4 kW" single-phase charger
    assert EvSpec(arrival="17:30", departure="07:00", kwh=20, kw=11).p_max_w == 11_000


LOCATION = {"latitude_deg": 51.32, "longitude_deg": 9.5}
"""Kassel; -1 is a valid angle and altitude, so HOSTILE's -1 is left out below."""
BAD_ANGLES = [
    *(v for v in HOSTILE if v != -1),
    -math.inf,
    True,
    None,
    "51.3",
    [51.3],
    {"deg": 51.3},
]


@pytest.mark.parametrize("field", ["latitude_deg", "longitude_deg", "altitude_m"])
@pytest.mark.parametrize("value", BAD_ANGLES)
def test_a_location_refuses_hostile_values_naming_the_field(field: str, value: object) -> None:
    tariff = {"import_per_kwh": 0.3, "feed_in_per_kwh": 0.08, "community_per_kwh": 0.2}
    spec = {"tariff": tariff, "location": {**LOCATION, field: value}}
    with pytest.raises(ValidationError, match=rf"location\.{field}"):
        CommunitySpec.model_validate(spec)


@pytest.mark.parametrize(
    ("field", "value"),
    [("latitude_deg", 90.01), ("latitude_deg", -90.01), ("longitude_deg", 180.5),
     ("longitude_deg", -181), ("altitude_m", -451), ("altitude_m", 6001)],
)  # fmt: skip
def test_a_location_off_the_earth_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        LocationSpec.model_validate({**LOCATION, field: value})


def test_a_location_takes_whole_degrees_and_ends_of_the_ranges() -> None:
    assert LocationSpec(latitude_deg=51, longitude_deg=10).place() == Place(51.0, 10.0, 0.0)
    edge = LocationSpec(latitude_deg=-90, longitude_deg=180, altitude_m=-450).place()
    assert edge == Place(-90.0, 180.0, -450.0)
    with pytest.raises(ValidationError, match="timezone"):
        LocationSpec.model_validate({**LOCATION, "timezone": "Europe/Berlin"})
