"""The planning fields this issue added refuse hostile values with a clear error."""

import math

import pytest
from pydantic import ValidationError

from gridctl.dispatch.spec import DispatchSpec, EvSpec

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
