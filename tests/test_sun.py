"""The sun's bound on PV output: nothing at night, full rating in a bright sky, the sun where
the almanac puts it, and the interval bound equal to a brute-force search."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridctl.sun import (
    TIME_TOLERANCE_S,
    TWILIGHT_SHARE,
    Place,
    clear_sky_w_per_m2,
    pv_share_max,
    pv_share_now,
)

KASSEL = Place(51.32, 9.50, 160.0)


def _s(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_sun_culminates_where_the_almanac_puts_it() -> None:
    day = _s("2026-06-21T00:00") + 60.0 * np.arange(24 * 60)
    sky = clear_sky_w_per_m2(KASSEL, day)
    noon = int(np.argmax(sky["elevation_deg"]))
    # solstice: 90° - latitude + 23.44° declination; transit near 12:00 - 9.5°/15°/h - 1.6 min
    assert sky["elevation_deg"][noon] == pytest.approx(90 - 51.32 + 23.44, abs=0.1)
    assert noon == pytest.approx(12 * 60 - 9.5 * 4 + 2, abs=3)
    # the cleanest clear sky at noon: about 1,000 W/m² global, nothing before sunrise
    assert 900 < sky["ghi"][noon] < 1150 and sky["dni"][noon] < 1200
    assert sky["ghi"][60] == sky["dni"][60] == sky["dhi"][60] == 0.0  # 01:00 UTC


def test_night_gives_nothing_and_a_bright_sky_the_full_rating() -> None:
    starts = [_s("2026-06-21T23:00"), _s("2026-12-21T01:00"), _s("2026-06-21T11:00")]
    assert pv_share_max(KASSEL, starts, 900.0).tolist() == [0.0, 0.0, 1.0]
    winter_noon = float(pv_share_max(KASSEL, _s("2026-12-21T11:00"), 900.0)[0])
    assert winter_noon == 1.0  # a steep panel facing a 15° sun, cold and under cloud edges
    # the far side of the world is dark when Kassel is bright
    assert pv_share_max(Place(-51.32, -170.5), _s("2026-06-21T11:00"), 900.0)[0] == 0.0


def test_the_bound_reaches_past_sunset_by_the_tolerance_and_no_further() -> None:
    t = _s("2026-03-20T00:00") + 60.0 * np.arange(24 * 60)
    el = clear_sky_w_per_m2(KASSEL, t)["elevation_deg"]
    sunset = t[np.flatnonzero((el[:-1] > 0) & (el[1:] <= 0))[0]]
    dusk = t[np.flatnonzero((el[:-1] > -6) & (el[1:] <= -6))[0]]
    assert pv_share_now(KASSEL, np.array([dusk - 300]))[0] == TWILIGHT_SHARE
    assert pv_share_now(KASSEL, np.array([dusk + 300]))[0] == 0.0
    assert pv_share_max(KASSEL, dusk + TIME_TOLERANCE_S - 600, 900.0)[0] == TWILIGHT_SHARE
    assert pv_share_max(KASSEL, dusk + TIME_TOLERANCE_S + 300, 900.0)[0] == 0.0
    assert pv_share_max(KASSEL, sunset, 900.0)[0] > 0.1  # the sun 90 min earlier


def test_the_interval_bound_equals_a_ten_second_search() -> None:
    rng = np.random.default_rng(14)
    day0 = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [day0 + timedelta(minutes=15 * int(k)) for k in rng.integers(0, 365 * 96, 8)]
    for place in (KASSEL, Place(69.6, 18.9), Place(-33.9, 18.4, 50.0)):
        for start in starts:
            s = start.timestamp()
            fine = pv_share_now(
                place, np.arange(s - TIME_TOLERANCE_S, s + 900 + TIME_TOLERANCE_S + 1, 10.0)
            )
            got = float(pv_share_max(place, s, 900.0)[0])
            assert fine.max() - 1e-3 <= got <= fine.max()
