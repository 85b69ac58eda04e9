"""A simulated run's plan log: one community plan per interval, the sums of what the planner
planned (they balance as the dispatch does), close to what the run then did, with the
grid operator's envelope and flexibility event in force where they were."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from gridctl.dispatch.plan_log import PLANS_FILE, read_plans
from gridctl.protocol import CommunityPlanMessage
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.scenario import Scenario, load_scenario

LIMIT_W = 8000
WINDOW = ("2026-06-21T11:00:00Z", "2026-06-21T14:00:00Z")
EVENT = ("2026-06-21T14:00:00Z", "2026-06-21T15:00:00Z")


def _s(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


@dataclass(frozen=True)
class NoonRun:
    """The default community from 09:00 to 15:00 with a feeder export limit from 11:00 (after a
    15-minute ramp) to 14:00 and an export event from 14:00: its directory (ledger.sqlite,
    plans.sqlite), result and plans."""

    dir: Path
    result: SimResult
    plans: list[CommunityPlanMessage]


@pytest.fixture(scope="session", name="noon_run")
def noon_run_fixture(tmp_path_factory: pytest.TempPathFactory) -> NoonRun:
    scn = load_scenario()
    envelopes = {
        "limits": [{"target": "feeder", "start": WINDOW[0], "end": WINDOW[1],
                    "export_max_kw": LIMIT_W / 1000, "ramp_s": 900}],
        "events": [{"id": "noon-1", "target": "feeder", "start": EVENT[0], "end": EVENT[1],
                    "export_max_kw": 12, "price_per_kwh": 0.3}],
    }  # fmt: skip
    scn = Scenario.model_validate(
        scn.model_dump()
        | {"start": "2026-06-21T09:00:00Z", "intervals": 24, "envelopes": envelopes}
    )
    d = tmp_path_factory.mktemp("noon")
    r = simulate(scn, d / "ledger.sqlite", plans_path=d / PLANS_FILE)
    return NoonRun(d, r, read_plans(d / PLANS_FILE, 0, 2**40))


def test_every_interval_has_its_plan_and_the_plan_balances(noon_run: NoonRun) -> None:
    r, plans = noon_run.result, noon_run.plans
    first = r.scenario.first_interval
    assert [p.interval for p in plans] == list(range(first, first + 24))
    assert {(p.households, p.k) for p in plans} == {(14, 5)}
    for p in plans:
        assert None not in (p.load_w, p.pv_w, p.trafo_w, p.battery_w, p.ev_w, p.curtail_w)
        # the dispatch's transformer power is the sum of every home's planned grid power:
        # base load + PV + what is held back + battery + car (each sum rounded to whole W)
        parts = p.load_w + p.pv_w + p.curtail_w + p.battery_w + p.ev_w  # type: ignore[operator]
        assert abs(p.trafo_w - parts) <= 4, p  # type: ignore[operator]
        assert 0 <= p.shared_w <= max(p.load_w + p.ev_w, 0)  # type: ignore[operator]


def test_the_plan_is_close_to_what_the_run_did(noon_run: NoonRun) -> None:
    r, plans = noon_run.result, noon_run.plans
    planned = np.array([p.trafo_w for p in plans], dtype=float)
    # the plan is made from a forecast; the world's load and sun differ, but not by much
    assert np.corrcoef(planned, r.p_trafo_w)[0, 1] > 0.9
    assert np.median(np.abs(planned - r.p_trafo_w)) < 3000.0
    available_w = (r.pv_w - r.curtailed_w).sum(axis=1)  # what the panels could give, ≤ 0
    forecast_w = np.array([p.pv_w for p in plans], dtype=float)
    assert forecast_w.sum() == pytest.approx(available_w.sum(), rel=0.15)
    base_w = (r.demand_w.sum(axis=1) - r.ev_set_w.sum(axis=1)).mean()
    assert np.mean([p.load_w for p in plans]) == pytest.approx(base_w, rel=0.25)


def test_the_envelope_and_the_event_are_in_force_where_they_were(noon_run: NoonRun) -> None:
    r, plans = noon_run.result, noon_run.plans
    start_s = np.array([p.interval * 900 for p in plans])
    limited = (start_s >= _s(WINDOW[0]) + 900) & (start_s < _s(WINDOW[1]))
    event = (start_s >= _s(EVENT[0])) & (start_s < _s(EVENT[1]))
    assert limited.sum() == 11 and event.sum() == 4  # 11:15 to 14:00, 14:00 to 15:00
    assert (np.isfinite(r.feeder_export_max_w) == (limited | event)).all()
    for p, on, in_event in zip(plans, limited, event, strict=True):
        envelope = [i for i in p.in_force if i.kind == "envelope"]
        events = [i for i in p.in_force if i.kind == "event"]
        if on:
            assert p.feeder_export_max_w == LIMIT_W and p.trafo_w >= -LIMIT_W  # type: ignore[operator]
            assert [(i.source, i.export_max_w, i.end_s) for i in envelope] == [
                ("config", LIMIT_W, _s(WINDOW[1]))]  # fmt: skip
        else:
            assert not envelope
        assert [(i.event_id, i.export_max_w) for i in events] == (
            [("noon-1", 12_000)] if in_event else [])  # fmt: skip
        if in_event:
            assert p.feeder_export_max_w == 12_000 and p.trafo_w >= -12_000  # type: ignore[operator]
    # the limit made the plan hold sun back, and the run held back sun in the same intervals
    held = np.array([p.curtail_w for p in plans], dtype=float)
    assert held[limited].sum() > 10_000 and held[~limited & ~event].sum() == 0
    assert r.curtailed_w.sum(axis=1)[limited].sum() > 10_000
