from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.core import import_export_wh, interval_hours, interval_of, interval_start


def test_interval_index_is_floor_of_epoch_over_900() -> None:
    t = datetime(2026, 6, 21, 12, 7, 30, tzinfo=UTC)
    assert interval_of(t) == int(t.timestamp()) // 900
    assert interval_start(interval_of(t)) == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    assert interval_hours() == 0.25


def test_other_timezones_map_to_the_same_interval() -> None:
    t = datetime(2026, 6, 21, 14, 7, tzinfo=timezone(timedelta(hours=2)))
    assert interval_start(interval_of(t)) == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        interval_of(datetime(2026, 1, 1))


@given(st.integers(min_value=0, max_value=10**8))
def test_interval_start_round_trips(interval: int) -> None:
    start = interval_start(interval)
    assert interval_of(start) == interval
    assert interval_of(start + timedelta(seconds=899)) == interval


def test_import_export_split_follows_load_convention() -> None:
    assert import_export_wh(2000.0, 0.25) == (500.0, 0.0)
    assert import_export_wh(-3000.0, 0.25) == (0.0, 750.0)
