"""Operating envelopes: most restrictive limit wins, ramps, the default for a silent source."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridctl.public.envelope import FEEDER, SILENT_POLLS, DefaultEnvelope, Envelopes, Limit

IS = 900  # interval, s


def test_most_restrictive_limit_of_all_sources_wins():
    env = Envelopes()
    env.update("vtn", [Limit(FEEDER, 0, 4 * IS, export_max_w=50_000)], now_s=0, poll_s=60)
    env.update(
        "config", [Limit(FEEDER, 2 * IS, 6 * IS, export_max_w=30_000, import_max_w=80_000)], 0
    )
    imp, exp = env.series([FEEDER, "h1"], 0, 8, now_s=0)
    assert exp[0].tolist() == [50_000, 50_000, 30_000, 30_000, 30_000, 30_000, math.inf, math.inf]
    assert imp[0].tolist() == [math.inf] * 2 + [80_000] * 4 + [math.inf] * 2
    assert np.isinf(imp[1]).all() and np.isinf(exp[1]).all()  # h1 has no limit


def test_limit_binds_from_the_end_of_its_ramp():
    env = Envelopes()
    # starts at interval 4, ramp 1.5 intervals: binds from 5.5 on, so from interval 5
    env.update("vtn", [Limit("h1", 4 * IS, 8 * IS, export_max_w=0.0, ramp_s=1.5 * IS)], 0, 60)
    _, exp = env.series(["h1"], 3, 6, now_s=0)
    assert exp[0].tolist() == [math.inf, math.inf, 0.0, 0.0, 0.0, math.inf]


def test_silent_source_gives_way_to_the_default_until_heard_again():
    default = DefaultEnvelope(feeder_export_max_w=10_000, household_export_max_w=1_500)
    env = Envelopes(default)
    env.update("vtn", [Limit(FEEDER, 0, 100 * IS, export_max_w=40_000)], now_s=0, poll_s=10)
    assert env.limits(FEEDER, 0, IS, now_s=SILENT_POLLS * 10) == (math.inf, 40_000)
    assert env.silent(SILENT_POLLS * 10 + 1) == ["vtn"]
    assert env.limits(FEEDER, 0, IS, now_s=31) == (math.inf, 10_000)
    assert env.limits("h7", 0, IS, now_s=31) == (math.inf, 1_500)
    env.heard("vtn", 40)
    assert env.limits(FEEDER, 0, IS, now_s=41) == (math.inf, 40_000)
    assert env.in_force(0, now_s=41)


def test_standing_source_never_falls_silent():
    env = Envelopes(DefaultEnvelope(feeder_export_max_w=1.0))
    env.update("config", [Limit(FEEDER, 0, IS, export_max_w=5.0)], now_s=0)
    assert env.silent(1e9) == [] and env.limits(FEEDER, 0, IS, 1e9) == (math.inf, 5.0)
    assert not env.in_force(3, now_s=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"start_s": 10, "end_s": 10},  # ends before it starts
        {"start_s": 10, "end_s": 5},
        {"export_max_w": -1.0},  # negative limit
        {"import_max_w": math.nan},
        {"ramp_s": math.inf},
        {"ramp_s": -1},
        {"start_s": -math.inf},
        {"end_s": "soon"},
        {"export_max_w": True},
    ],
)
def test_malformed_limit_is_refused(kw):
    args = {"target": FEEDER, "start_s": 0, "end_s": IS} | kw
    with pytest.raises(ValueError):
        Limit(**args)


def test_bad_poll_period_is_refused():
    with pytest.raises(ValueError, match="poll_s"):
        Envelopes().update("vtn", [], now_s=0, poll_s=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 20 * IS),
            st.integers(1, 20 * IS),
            st.sampled_from([FEEDER, "a", "b"]),
            st.floats(0, 1e5),
            st.integers(0, 2 * IS),
        ),
        max_size=8,
    ),
    st.integers(0, 30),
    st.booleans(),
)
def test_series_equals_the_limit_of_every_interval(raw, first, quiet):
    env = Envelopes(DefaultEnvelope(feeder_import_max_w=7.0, household_export_max_w=3.0))
    limits = [
        Limit(t, s, s + d, export_max_w=x, import_max_w=2 * x, ramp_s=r) for s, d, t, x, r in raw
    ]
    env.update("vtn", limits[: len(limits) // 2], now_s=0, poll_s=10)
    env.update("cfg", limits[len(limits) // 2 :], now_s=0)
    now_s = 100.0 if quiet else 0.0
    targets = [FEEDER, "a", "b", "c"]
    imp, exp = env.series(targets, first, 12, now_s)
    for k, target in enumerate(targets):
        for j in range(12):
            t0 = (first + j) * IS
            assert (imp[k, j], exp[k, j]) == env.limits(target, t0, t0 + IS, now_s)
