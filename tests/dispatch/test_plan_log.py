"""The plan log: a community plan summed from a solved dispatch, stored, replaced, read back
read-only and validated; what is in force, said publicly; sums withheld below k."""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gridctl.dispatch.community import solve
from gridctl.dispatch.plan_log import PlanLog, community_plan, last_plan, read_plans
from gridctl.protocol import CommunityPlanMessage, InForce
from gridctl.public.envelope import FEEDER, DefaultEnvelope, Envelopes, Limit
from gridctl.public.flex_event import FlexEvent
from gridctl.public.in_force import in_force
from tests.dispatch.test_community import _problem
from tests.dispatch.test_envelope import INF, _env

T0 = 1_980_000 * 900  # an interval's start, epoch s


def _plan() -> CommunityPlanMessage:
    """Interval 1 of a feeder whose export is limited to 3 kW: h0 (9 kW of sun, 0.5 kW of load)
    exports 3 kW, h1 takes 2 kW of it, 5.5 kW of h0's sun is held back."""
    p = _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]))
    plan = solve(replace(p, envelope=_env(f_exp=[INF, 3000.0, 0.0, INF])))
    return community_plan(
        1_980_001, plan, 1, p.load_w[:, 1], p.pv_w[:, 1], k=2, feeder_w=(math.inf, 3000.0)
    )


def test_a_solved_plan_is_summed_over_its_households() -> None:
    m = _plan()
    assert (m.households, m.k, m.load_w, m.pv_w) == (2, 2, 2500, -9000)
    assert (m.trafo_w, m.curtail_w, m.battery_w, m.ev_w) == (-1000, 5500, 0, 0)
    # h0 exports 3 kW, h1 imports 2 kW: 2 kW is shared, 1 kW leaves the feeder
    assert m.shared_w == 2000
    assert (m.feeder_import_max_w, m.feeder_export_max_w) == (None, 3000)
    # the plan balances: the transformer carries what the homes' devices and loads sum to
    assert m.trafo_w == m.load_w + m.pv_w + m.curtail_w + m.battery_w + m.ev_w


def test_sums_are_withheld_below_k_households() -> None:
    m = _plan().model_copy(update={"k": 3})
    pub = m.public()
    assert pub.households == 2 and pub.feeder_export_max_w == 3000
    assert all(getattr(pub, f) is None for f in ("load_w", "pv_w", "trafo_w", "shared_w",
                                                  "curtail_w", "battery_w", "ev_w"))  # fmt: skip
    assert _plan().public() == _plan()  # k = 2: published whole


def test_the_log_stores_replaces_and_reads_back_read_only(tmp_path: Path) -> None:
    path = tmp_path / "plans.sqlite"
    assert read_plans(path, 0, 2**40) == [] and last_plan(path) is None
    assert not path.exists(), "a reader creates nothing"
    m = _plan()
    ev = InForce(kind="event", source="openadr", event_id="E1", export_max_w=3000,
                 start_s=T0, end_s=T0 + 3600)  # fmt: skip
    log = PlanLog(path)
    log.add(m)
    log.add(m.model_copy(update={"interval": m.interval + 1, "in_force": [ev]}))
    log.add(m.model_copy(update={"trafo_w": -999}))  # a re-plan of the same interval
    got = read_plans(path, 0, 2**40)
    assert [p.interval for p in got] == [m.interval, m.interval + 1]
    assert got[0] == m.model_copy(update={"trafo_w": -999})
    assert got[1].in_force == [ev]
    assert last_plan(path) == got[1] and last_plan(path, through=m.interval) == got[0]
    log.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert ro.execute("SELECT COUNT(*) FROM community_plans").fetchone() == (2,)


def test_a_damaged_row_is_left_out_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "plans.sqlite"
    log = PlanLog(path)
    for k in range(3):
        log.add(_plan().model_copy(update={"interval": 10 + k}))
    log.close()
    with sqlite3.connect(path) as db:  # what a broken or hostile writer might leave
        db.execute("UPDATE community_plans SET trafo_w = ? WHERE interval = 10", (10**15,))
        db.execute("UPDATE community_plans SET in_force = '[{' WHERE interval = 11")
    with caplog.at_level(logging.WARNING):
        got = read_plans(path, 0, 100)
    assert [p.interval for p in got] == [12]
    assert "interval 10 refused" in caplog.text and "interval 11 refused" in caplog.text
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    assert read_plans(tmp_path / "junk.sqlite", 0, 100) == []


def test_in_force_states_the_feeders_limits_and_counts_the_households() -> None:
    feeder = Limit(FEEDER, T0, T0 + 7200, export_max_w=40_000.0, ramp_s=900)
    dim = Limit(FEEDER, T0, T0 + 900, controllable_max_w=4200.0)
    homes = [Limit(h, T0, T0 + 900, import_max_w=5000.0) for h in ("h01", "h02", "h03")]
    ev = FlexEvent("E7", FEEDER, T0, T0 + 3600, import_max_w=20_000.0, price_per_kwh=0.3)
    sets = Limit(FEEDER, T0, T0 + 3600, import_max_w=20_000.0)  # the envelope the event sets
    asked = FlexEvent("E8", "h02", T0, T0 + 1800, export_max_w=0.0)
    limits = [("config", feeder), ("dso", dim), *(("openadr", x) for x in homes),
              ("openadr", sets)]  # fmt: skip
    got = in_force(limits, [(ev, "openadr"), (asked, "openadr")])
    assert got == [
        InForce(kind="event", source="openadr", event_id="E7", import_max_w=20_000,
                start_s=T0, end_s=T0 + 3600),
        InForce(kind="envelope", source="config", export_max_w=40_000, start_s=T0 + 900,
                end_s=T0 + 7200),
        InForce(kind="envelope", source="dso", controllable_max_w=4200, start_s=T0,
                end_s=T0 + 900),
        InForce(kind="event", source="openadr", event_id="E8", households=1, start_s=T0,
                end_s=T0 + 1800),
        InForce(kind="envelope", source="openadr", households=3, start_s=T0, end_s=T0 + 900),
    ]  # fmt: skip
    assert all(i.import_max_w is None for i in got if i.households), "a home's own: no value"


def test_binding_names_each_limits_source_and_the_default_for_a_silent_one() -> None:
    env = Envelopes(DefaultEnvelope(feeder_export_max_w=10_000.0))
    lim = Limit(FEEDER, T0, T0 + 900, export_max_w=30_000.0)
    env.update("openadr", [lim, Limit(FEEDER, T0 + 900, T0 + 1800)], now_s=T0, poll_s=60)
    env.update("config", [Limit("h01", T0, T0 + 900, import_max_w=1.0)], now_s=T0)
    interval = T0 // 900
    assert env.binding(interval, T0) == [("openadr", lim), ("config", env.sources()["config"][0])]
    silent = env.binding(interval, T0 + 600)  # openadr missed three polls
    assert silent[0] == ("default", Limit(FEEDER, T0, T0 + 900, math.inf, 10_000.0))
    assert [s for s, _ in silent] == ["default", "config"]
