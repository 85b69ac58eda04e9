"""The coordinator's planner: forecasts from telemetry, and plans over a real broker that keep a
PV-heavy feeder inside its voltage band while the event loop stays free."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from gridctl.controller.keys import generate_key_file
from gridctl.coordinator import planner as planner_module
from gridctl.coordinator.config import (
    CoordinatorConfig,
    coordinator_from_config,
    load_coordinator_config,
)
from gridctl.coordinator.limits import RateLimit
from gridctl.coordinator.planner import (
    EV_ON_W,
    LOAD_HALF_LIFE,
    PV_RATIO_MAX,
    CommunityPlanner,
    base_load_w,
    fresh,
)
from gridctl.core import (
    INTERVAL_S,
    GridctlError,
    Tariff,
    interval_hours,
    interval_of,
    interval_start,
)
from gridctl.dispatch.community import Plan, held_w
from gridctl.dispatch.feeder_guard import FeederLimits
from gridctl.dispatch.fleet import profile_forecast
from gridctl.dispatch.spec import DispatchSpec, HouseholdSpec
from gridctl.grid.ac import AcFeeder
from gridctl.grid.feeder import load_feeder, resolve_buses, transformer_rating_w
from gridctl.protocol import PlanMessage, PlanStep, Telemetry, decode, household_topic
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks, until

FEEDER = "1-LV-rural1--0-sw"
NOON = datetime(2026, 5, 21, 11, 0, tzinfo=UTC)
"""A sunny May noon: 30 kWp on every roof exports far more than the feeder takes."""
BUSES = [4, 5, 13, 11, 6, 0, 2, 9, 12, 8]
"""Ten low-voltage buses of the feeder, the far ends first."""
V_MAX_PU = 1.04


def _household(k: int, bus: int) -> dict:
    h: dict = {"id": f"h{k:02d}", "bus": bus, "connection_kw": 43.5, "pv": {"kwp": 30.0}}
    if k % 2:
        h["battery"] = {"kwh": 10.0, "kw": 5.0, "soc0": 0.3}
    if k == 2:
        h["ev"] = {"arrival": "17:30", "departure": "07:00", "kwh": 20.0, "kw": 11.0}
    return h


def _planner(n: int = 3) -> CommunityPlanner:
    hh = [HouseholdSpec.model_validate(_household(k, b)) for k, b in enumerate(BUSES[:n])]
    net, profiles = load_feeder(FEEDER, None, Path("."))
    buses = resolve_buses(net, [h.bus for h in hh])
    return CommunityPlanner(hh, net, profiles, buses, transformer_rating_w(net), FeederLimits(),
                            DispatchSpec(), Tariff(0.32, 0.08, 0.2))  # fmt: skip


def _tel(h: str, t: datetime, **powers: float | None) -> Telemetry:
    return Telemetry(household=h, t=t, mode="plan", **powers)


def test_base_load_is_grid_less_devices_and_unknown_when_an_owned_device_is() -> None:
    spec = HouseholdSpec.model_validate(_household(1, 4))  # PV and battery, no EV
    t = NOON
    assert base_load_w(_tel("h01", t, grid_p_w=-2000, pv_p_w=-5000, battery_p_w=2500), spec) == 500
    assert base_load_w(_tel("h01", t, grid_p_w=-2000, pv_p_w=-5000), spec) is None
    assert base_load_w(_tel("h01", t, pv_p_w=-5000, battery_p_w=0), spec) is None
    # a device the household does not declare counts when it reports
    tel = _tel("h01", t, grid_p_w=3000, pv_p_w=0, battery_p_w=0, ev_p_w=2000)
    assert base_load_w(tel, spec) == 1000


def test_forecasts_follow_telemetry_and_fade_back_to_the_profiles() -> None:
    p = _planner()
    iv = interval_of(NOON)
    load0, pv0 = profile_forecast(p.households, p.profiles, NOON, p.horizon)
    # telemetry at NOON's start measured the interval before: it is compared with its profile
    was_load, was_pv = profile_forecast(p.households, p.profiles, NOON - timedelta(minutes=15), 1)
    at = NOON - timedelta(seconds=5)
    half_pv = float(was_pv[0, 0]) / 2
    tel = [
        _tel("h00", at, grid_p_w=3000 + half_pv, pv_p_w=half_pv),  # clouded, 3 kW base load
        _tel("h01", at - timedelta(hours=1), grid_p_w=9000, pv_p_w=0, battery_p_w=0),  # stale
        None,
    ]
    load_w, pv_w = p.forecast(iv, [fresh(t, iv) for t in tel])
    above_w = 3000 - was_load[0, 0]  # the measured base load above its profile
    assert load_w[0, 0] == pytest.approx(load0[0, 0] + above_w)
    k = int(LOAD_HALF_LIFE)
    assert load_w[0, k] - load0[0, k] == pytest.approx(above_w / 2)
    assert load_w[0, -1] == pytest.approx(load0[0, -1], abs=1.0)
    assert np.allclose(load_w[1:], load0[1:]) and np.allclose(pv_w[1:], pv0[1:])
    # half the expected PV, smoothed with the prior ratio of one: 0.75 now, fading to 1
    assert pv_w[0, 0] == pytest.approx(0.75 * pv0[0, 0])
    assert pv_w[0, -1] == pytest.approx(pv0[0, -1], rel=1e-3)


def test_battery_from_soc_and_an_early_car_charges_for_what_it_still_needs() -> None:
    p = _planner()
    iv = interval_of(NOON)  # h02's car is due at 17:30, but it is plugged in and charging
    ev_kw = 11.0
    tel = [None, _tel("h01", NOON, soc=0.8), _tel("h02", NOON, ev_p_w=ev_kw * 1000)]
    fleet = p.fleet(iv, tel)
    assert fleet.bat_e0_wh[1] == pytest.approx(8000)
    assert fleet.ev_max_w[2, 0] == ev_kw * 1000 and fleet.ev_max_w[2, :4].all()
    (s,) = np.flatnonzero(fleet.ev_session[:, 0] == 2)[:1]
    assert fleet.ev_session[s, 1] == 0
    assert fleet.ev_need_wh[s] == pytest.approx(20_000 - ev_kw * 1000 * interval_hours())
    # the next interval books another interval of charging, once however often it plans
    nxt = [None, None, _tel("h02", NOON + timedelta(minutes=15), ev_p_w=ev_kw * 1000)]
    for _ in range(2):
        fleet = p.fleet(iv + 1, nxt)
    assert fleet.ev_need_wh[s] == pytest.approx(20_000 - 2 * ev_kw * 1000 * interval_hours())
    # a car not drawing power outside its session is not there
    fleet = p.fleet(iv + 2, [None, None, _tel("h02", NOON, ev_p_w=EV_ON_W / 2)])
    assert not fleet.ev_max_w[2, 0]


class Collector:
    def __init__(self) -> None:
        self.plans: list[PlanMessage] = []

    async def __call__(self, topic: str, payload: bytes) -> None:
        msg = decode(topic, payload).message
        assert isinstance(msg, PlanMessage)
        self.plans.append(msg)


def write_config(tmp_path: Path, broker: Broker, n: int, with_feeder: bool = True) -> Path:
    """A coordinator YAML for households h00 … of ``broker`` on the test feeder."""
    (tmp_path / "coordinator.secret").write_text(broker.creds["coordinator"] + "\n")
    lines = [
        f"community: {broker.community}",
        f"broker: {{port: {broker.port}, password_file: coordinator.secret}}",
        "ledger: ledger.sqlite",
        "inbox: inbox.sqlite",
        "tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}",
        "health_port: null",
    ]
    if with_feeder:
        lines += [
            f"feeder: {{simbench: {FEEDER}}}",
            f"limits: {{v_max_pu: {V_MAX_PU}}}",
            "dispatch: {horizon: 96, replan_every: 4, near: 12}",
        ]
    lines.append("households:")
    for k, bus in enumerate(BUSES[:n]):
        h = _household(k, bus)
        key = generate_key_file(tmp_path / f"{h['id']}.key").hex()
        lines.append(f"  - {json.dumps(h | {'public_key': key})}")
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    generate_key_file(tmp_path / "coordinator.key")  # the default key_file
    return cfg


async def _until(what, timeout_s: float = 30.0) -> None:
    """Waits here are for processes and brokers: up to 30 s by default."""
    await until(what, timeout_s)


@pytest.mark.slow
async def test_plans_reach_every_household_each_interval_and_keep_the_feeder(
    broker: Broker, tmp_path: Path
) -> None:
    ids = broker.households
    cfg = load_coordinator_config(write_config(tmp_path, broker, len(ids)))
    clock_s = [NOON.timestamp() + 1]
    coord, new = coordinator_from_config(cfg, clock=lambda: clock_s[0])
    assert sorted(new) == ids
    coord.tick_s = 0.05
    planner = coord.planner
    assert isinstance(planner, CommunityPlanner)
    spans: list[tuple[float, float]] = []
    plan = planner.plan

    def timed(interval: int, telemetry: dict, now_s: float | None = None) -> dict:
        t0 = time.perf_counter()
        try:
            return plan(interval, telemetry, now_s)
        finally:
            spans.append((t0, time.perf_counter()))

    planner.plan = timed  # type: ignore[method-assign]
    got = {h: Collector() for h in ids}
    homes = [Session(broker.settings(h), f"home-{h}",
                     [household_topic(broker.community, h, "plan")], got[h]) for h in ids]  # fmt: skip
    wakes: list[float] = []

    async def heartbeat() -> None:
        while True:
            wakes.append(time.perf_counter())
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(x.run()) for x in (coord, *homes)]
    tasks.append(asyncio.create_task(heartbeat()))
    first = interval_of(NOON)
    try:
        await _until(lambda: all(s.connected.is_set() for s in homes))
        for k in range(4):  # a full plan, then near re-plans
            clock_s[0] = (first + k) * INTERVAL_S + 1
            await _until(lambda k=k: all(any(m.issued == first + k for m in got[h].plans)
                                         for h in ids))  # fmt: skip
    finally:
        await stop_tasks(*tasks)

    # every household got a plan each interval, starting at that interval
    for h in ids:
        issued = sorted({m.issued for m in got[h].plans})
        assert issued == [first + k for k in range(4)], (h, issued)
        assert all(m.steps[0].interval == m.issued and len(m.steps) == 4 for m in got[h].plans)
    r = planner.rolling
    assert r.plans == 4 and r.unresolved == 0

    # households following their plans (export no more than allowed) keep the band, while
    # the same roofs uncoordinated push the far end of the feeder above it
    ac = AcFeeder(*_net_and_buses(cfg), ids)
    load_w, pv_w = profile_forecast(planner.households, planner.profiles, NOON, 4)
    q_w = load_w * planner.tan_phi[:, None]
    free = ac.run(load_w[:, 0] + pv_w[:, 0], q_w[:, 0])  # no car plugged in at noon
    assert free.vm_pu.max() > V_MAX_PU
    for k in range(4):
        step = {h: next(m for m in got[h].plans if m.issued == first + k).steps[0] for h in ids}
        p_w = np.array([load_w[n, k] + pv_w[n, k] + step[h].battery_w + step[h].ev_w
                        for n, h in enumerate(ids)])  # fmt: skip
        floor = np.array([-(step[h].export_max_w if step[h].export_max_w is not None else np.inf)
                          for h in ids])  # fmt: skip
        res = ac.run(np.maximum(p_w, floor), q_w[:, k])
        assert res.vm_pu.max() <= V_MAX_PU, (k, res.vm_pu.max())

    # the loop kept running while the solver worked in its thread: with a heartbeat every
    # 5 ms, at least one in four came during planning (none would if it ran on the loop)
    assert len(spans) == 4
    busy_s = sum(t1 - t0 for t0, t1 in spans)
    during = sum(any(t0 <= w <= t1 for t0, t1 in spans) for w in wakes)
    assert during >= busy_s / 0.02, (during, busy_s)


def _net_and_buses(cfg: CoordinatorConfig) -> tuple[pp.pandapowerNet, np.ndarray]:
    assert cfg.feeder is not None
    net, _ = load_feeder(cfg.feeder.simbench, None, Path("."))
    return net, resolve_buses(net, [h.bus for h in cfg.households if h.bus is not None])


def test_ingest_limits_and_clock_skew_come_from_the_config(broker: Broker, tmp_path: Path) -> None:
    path = write_config(tmp_path, broker, 2, with_feeder=False)
    with open(path, "a") as f:
        f.write("ingest: {readings_per_s: 2, readings_burst: 50, other_per_s: 9, max_skew_s: 60}\n")
    coord, _ = coordinator_from_config(load_coordinator_config(path))
    try:
        assert coord.max_skew_s == 60
        assert coord.limiter.limits["reading"] == RateLimit(per_s=2, burst=50)
        assert coord.limiter.limits["other"] == RateLimit(per_s=9, burst=100)  # burst default
    finally:
        coord.inbox.close()
        coord.ledger.close()
    path.write_text(path.read_text().replace("max_skew_s: 60", "max_skew_s: .nan"))
    with pytest.raises(GridctlError, match="max_skew_s"):
        load_coordinator_config(path)


def test_pv_ratio_is_learnt_below_the_export_limit_and_only_raised_at_it() -> None:
    p = _planner(1)
    iv = interval_of(NOON)
    _, was_pv = profile_forecast(p.households, p.profiles, NOON - timedelta(minutes=15), 1)
    expected = float(was_pv[0, 0])  # the interval the telemetry at NOON measured

    def learn(share: float, export_w: float) -> float:
        p.forecast(iv, [_tel("h00", NOON, grid_p_w=-export_w, pv_p_w=share * expected)])
        return float(p.pv_ratio[0])

    p._export_cap_w[:] = 10_000.0
    assert learn(0.5, 4_000.0) == pytest.approx(0.75)  # below its limit: a true reading
    assert learn(0.5, 9_990.0) == pytest.approx(0.75)  # at it: less PV says nothing
    assert learn(0.9, 9_990.0) == pytest.approx(0.9)  # at it: more PV is seen, so there was


def test_households_curtailed_while_importing_are_checked_as_they_can_hold_it() -> None:
    plan = Plan(
        battery_w=np.zeros((3, 1)), ev_w=np.zeros((3, 1)),
        curtail_w=np.array([[4000.0], [2000.0], [1000.0]]),
        net_w=np.array([[5000.0], [1500.0], [-3000.0]]), grid_w=np.zeros(1),
        ev_unmet_wh=np.zeros(0), cost=0.0,
    )  # fmt: skip
    # own PV no longer curtailed supplies the household; an exporter stays at its limit
    assert held_w(plan, 0).tolist() == [1000.0, 0.0, -3000.0]


def test_exports_are_held_at_the_plan_when_more_sun_would_break_the_feeder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def steps(pv_high: float) -> list[PlanStep]:
        monkeypatch.setattr(planner_module, "PV_HIGH", pv_high)
        p = _planner(10)
        iv = interval_of(NOON)
        _, pv0 = profile_forecast(p.households, p.profiles, NOON, 1)
        out: list[PlanStep] = []
        for n in range(3):  # a cloudy noon: the ratio learns 30 % of the profile
            at = NOON + timedelta(minutes=15 * n)
            tel = {h.id: _tel(h.id, at, grid_p_w=500 + 0.3 * pv0[k, 0], pv_p_w=0.3 * pv0[k, 0],
                              battery_p_w=0 if h.battery else None, soc=0.5 if h.battery else None)
                   for k, h in enumerate(p.households)}  # fmt: skip
            out = [s[0] for s in p.plan(iv + n, tel).values()]
        assert p.pv_ratio[0] < 0.5
        return out

    # the forecast alone needs no export limit; the sun coming out would break the feeder
    assert all(s.export_max_w is None for s in steps(0.0))
    held = steps(PV_RATIO_MAX)
    assert all(s.export_max_w is not None for s in held)


def test_a_car_that_stops_drawing_while_asked_to_charge_is_full() -> None:
    def under_way(p: CommunityPlanner, interval: int, ev_p_w: float) -> float:
        """What h02's session under way needs, Wh, after telemetry showing ``ev_p_w`` (a
        session that needs nothing is not planned)."""
        at = interval_start(interval)
        fleet = p.fleet(interval, [None, None, _tel("h02", at, ev_p_w=ev_p_w)])
        now = (fleet.ev_session[:, 0] == 2) & (fleet.ev_session[:, 1] == 0)
        return float(fleet.ev_need_wh[now].sum())

    iv = interval_of(NOON.replace(hour=20))  # h02's car is plugged in from 17:30 to 07:00
    p = _planner()
    assert under_way(p, iv, 11_000) > 10_000
    p._ev_asked_w[2] = 11_000.0  # the plan asked for charging, the car takes nothing
    assert under_way(p, iv + 1, 0) == 0
    # not asked, a car drawing nothing is merely waiting
    q = _planner()
    assert under_way(q, iv, 0) > 10_000 and under_way(q, iv + 1, 0) > 10_000


def test_governed_parameters_are_checked_and_shape_the_next_plan() -> None:
    iv = interval_of(NOON)
    plain, voted = _planner(10), _planner(10)
    assert (voted.battery_reserve_soc, voted.fairness) == (0.0, "bus")
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="battery_reserve_soc"):
            voted.set_parameters(battery_reserve_soc=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fairness"):
        voted.set_parameters(battery_reserve_soc=0.3, fairness="equal")
    assert (voted.battery_reserve_soc, voted.fairness) == (0.0, "bus")  # nothing half-applied
    voted.set_parameters(battery_reserve_soc=0.0, fairness="bus")  # the defaults, said aloud

    def plan(p: CommunityPlanner, n: int) -> tuple[dict[str, list[PlanStep]], Plan]:
        at = NOON + timedelta(minutes=15 * n)
        # batteries nearly full: the sunny noon curtails
        tel = {h.id: _tel(h.id, at, soc=0.9 if h.battery else None) for h in p.households}
        steps = p.plan(iv + n, tel)
        assert p.rolling.plan is not None
        return steps, p.rolling.plan

    for n in range(2):  # the default parameters plan exactly as before
        (a, plan_a), (b, plan_b) = plan(plain, n), plan(voted, n)
        assert a == b
        np.testing.assert_array_equal(plan_a.battery_e_wh, plan_b.battery_e_wh)
        np.testing.assert_array_equal(plan_a.curtail_w, plan_b.curtail_w)
    has_bat = voted.bat_wh > 0
    assert plan_a.battery_e_wh is not None
    assert plan_a.battery_e_wh[has_bat].min() < 0.4 * voted.bat_wh.max()  # the evening uses them

    voted.rolling.replan_every, voted.rolling.near = 4, 0
    plan(voted, 2)
    assert not voted.rolling.due(iv + 3)
    voted.set_parameters(battery_reserve_soc=0.5)
    assert voted.rolling.due(iv + 3)  # from the next plan on
    assert (voted.battery_reserve_soc, voted.fairness) == (0.5, "bus")
    _, reserved = plan(voted, 3)
    assert reserved.battery_e_wh is not None
    floor_wh = 0.5 * voted.bat_wh[has_bat, None]
    assert (reserved.battery_e_wh[has_bat] >= floor_wh - 1e-3).all()

    # curtailment per installed W of PV (every roof has the same profile and the same size)
    fair = _planner(10)
    fair.set_parameters(fairness="kwp")
    _, by_bus = plan(_planner(10), 0)
    _, by_kwp = plan(fair, 0)
    bus_share, kwp_share = (q.curtail_w[:, 0] / fair.pv_peak_w for q in (by_bus, by_kwp))
    assert np.ptp(bus_share) > 0.05  # by bus: the far ends give up more
    assert kwp_share.min() > 0.01
    np.testing.assert_allclose(kwp_share, kwp_share[0], atol=1e-6)
