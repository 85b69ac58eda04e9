"""The ``envelopes:`` section of scenarios and coordinator configs against hostile values."""

import math

import pytest
from pydantic import ValidationError

from gridctl.public.envelope import FEEDER
from gridctl.public.spec import EnvelopesSpec

START, END = "2026-05-21T11:00:00Z", "2026-05-21T14:00:00Z"


def _limit(**kw: object) -> dict:
    return {"target": FEEDER, "start": START, "end": END, "export_max_kw": 60} | kw


def _event(**kw: object) -> dict:
    return _limit(id="e1", price_per_kwh=0.3) | kw


@pytest.mark.parametrize("bad", [2**63, -1, math.nan, math.inf, 1e308, "", "x" * 100_000])
@pytest.mark.parametrize("field", ["export_max_kw", "import_max_kw", "ramp_s"])
def test_hostile_numbers_in_a_limit_are_refused(field: str, bad: object) -> None:
    with pytest.raises(ValidationError, match=field):
        EnvelopesSpec.model_validate({"limits": [_limit(**{field: bad})]})


@pytest.mark.parametrize("bad", [2**63, -1, math.nan, math.inf, 1e308, ""])
def test_hostile_prices_and_defaults_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="price_per_kwh"):
        EnvelopesSpec.model_validate({"events": [_event(price_per_kwh=bad)]})
    with pytest.raises(ValidationError, match="export_max_kw"):
        EnvelopesSpec.model_validate({"default": {"feeder": {"export_max_kw": bad}}})


@pytest.mark.parametrize("bad", ["", "x" * 100_000, "a b", "é"])
def test_hostile_event_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="id"):
        EnvelopesSpec.model_validate({"events": [_event(id=bad)]})


@pytest.mark.parametrize("target", ["", "x" * 100_000])
def test_hostile_targets_are_refused(target: str) -> None:
    with pytest.raises(ValidationError, match="target"):
        EnvelopesSpec.model_validate({"limits": [_limit(target=target)]})


@pytest.mark.parametrize("when", ["9999-12-31T00:00:00Z", "not a date", "2026-05-21T11:00:00"])
def test_dates_far_ahead_work_and_naive_or_bad_ones_are_refused(when: str) -> None:
    raw = {"limits": [_limit(start=START, end=when)]}
    if when.startswith("9999"):
        env = EnvelopesSpec.model_validate(raw).build()
        assert env.limits(FEEDER, 1_779_361_200, 1_779_362_100, 0.0) == (math.inf, 60_000)
    else:
        with pytest.raises(ValidationError, match="end"):
            EnvelopesSpec.model_validate(raw)


def test_an_event_limits_one_way_and_ids_are_unique() -> None:
    with pytest.raises(ValidationError, match="not both"):
        EnvelopesSpec.model_validate({"events": [_event(import_max_kw=10)]})
    with pytest.raises(ValidationError, match="every id once"):
        EnvelopesSpec.model_validate({"events": [_event(), _event()]})
