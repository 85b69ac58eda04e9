"""A household's devices now and its plan: the plain words, the web's in-memory store fed by a
real Mosquitto (hostile messages refused and counted, the service going on), and who may see
them (all pairs of 5 households, with and without a session; the operator; a finished
simulation has none)."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from fastapi.testclient import TestClient

from gridctl.core import interval_of
from gridctl.protocol import (
    PlanMessage,
    PlanStep,
    RejectCounter,
    Telemetry,
    decode,
    encode,
    household_topic,
)
from gridctl.settlement.enrol import enrol_simulated
from gridctl.transport.session import BrokerSettings
from gridctl.web.app import create_app
from gridctl.web.auth import HOUSEHOLD, OPERATOR, Accounts
from gridctl.web.coord_view import CoordinatorView
from gridctl.web.devices_now import devices_now, own_state, plan_lines
from gridctl.web.household_live import HouseholdLive
from gridctl.web.live import Live
from tests.conftest import Broker, until
from tests.governance.helpers import open_book
from tests.web.helpers import Site, login, sim_dir_fixture, site_fixture  # noqa: F401

FIVE = ["h01", "h02", "h03", "h04", "h05"]
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NOW_S = NOON.timestamp() + 40.0
"""The web's clock in these tests: 40 s into the 12:00 interval."""


def _telemetry(h: str, pv_w: float, t: datetime | None = None, **kw: object) -> Telemetry:
    return Telemetry(household=h, t=t or NOON + timedelta(seconds=28), mode="plan",
                     pv_p_w=pv_w, **kw)  # type: ignore[arg-type]  # fmt: skip


def _plan(h: str, battery_w: float) -> PlanMessage:
    first = interval_of(NOON)
    steps = [PlanStep(interval=first + k, battery_w=battery_w if k < 6 else -1000.0,
                      ev_w=7400.0 if 2 <= k < 4 else 0.0,
                      export_max_w=5000.0 if k >= 6 else None) for k in range(8)]  # fmt: skip
    return PlanMessage(household=h, issued=first - 1, steps=steps)


def test_devices_and_plan_in_plain_words() -> None:
    t = _telemetry("h01", -3240.0, grid_p_w=-512.0, battery_p_w=2100.0, soc=0.624, ev_p_w=0.0,
                   faulted=["ev"])  # fmt: skip
    assert devices_now(t, NOW_S) == [
        ("Solar panels", "producing 3.2 kW"),
        ("Battery", "charging at 2.1 kW, 62 % full"),
        ("Car charger", "not charging"),
        ("Grid connection", "feeding into the grid 0.5 kW"),
        ("Devices with a fault", "ev"),
        ("Your controller", "following the community's plan"),
        ("Measured", "12 s ago (12:00:28 UTC)"),
    ]
    unknown = dict(devices_now(Telemetry(household="h01", t=NOON, mode="fallback"), NOW_S + 600))
    assert (
        unknown["Battery"] == "unknown (not measured)"
        and unknown["Measured"] == "10 min ago (12:00:00 UTC)"
    )
    assert "fallback" in unknown["Your controller"]
    assert plan_lines(_plan("h01", 2100.0), NOW_S) == [
        "Your battery charges at 2.1 kW from 12:00 to 13:30 UTC",
        "Your battery discharges at 1.0 kW from 13:30 to 14:00 UTC",
        "Your car charges at 7.4 kW from 12:30 to 13:00 UTC",
        "Your home may feed at most 5.0 kW into the grid from 13:30 to 14:00 UTC",
    ]
    # an hour later the first four steps are past; a plan entirely past says nothing
    assert plan_lines(_plan("h01", 2100.0), NOW_S + 3600)[0] == (
        "Your battery charges at 2.1 kW from 13:00 to 13:30 UTC"
    )
    assert plan_lines(_plan("h01", 2100.0), NOW_S + 3 * 3600) == []
    assert own_state(None, None, NOW_S) == {"devices": None, "plan": None}


def test_an_older_telemetry_or_plan_does_not_replace_a_newer_one() -> None:
    store = HouseholdLive(["h01"], lambda: NOW_S, RejectCounter())
    topic = household_topic("oak", "h01", "telemetry")
    plan_topic = household_topic("oak", "h01", "plan")
    new, old = _telemetry("h01", -2000.0), _telemetry("h01", -1000.0, t=NOON)
    for msg, kept in ((new, True), (old, False)):
        assert store.take(topic, decode(topic, encode(msg))) is kept
    newer = _plan("h01", 1000.0)
    older = newer.model_copy(update={"issued": newer.issued - 1})
    for plan, kept in ((newer, True), (older, False)):
        assert store.take(plan_topic, decode(plan_topic, encode(plan))) is kept
    assert store.telemetry["h01"] == new and store.plans["h01"] == newer
    store.clear("h01", "telemetry")
    assert "h01" not in store.telemetry and store.rejects.total == 0


async def test_hostile_messages_are_refused_and_counted_and_the_web_goes_on(
    broker: Broker,
) -> None:
    c = broker.community
    rejects = RejectCounter()
    store = HouseholdLive(broker.households[:5], lambda: NOW_S, rejects)
    live = Live(c, broker.settings("web"), store)

    def at(h: str) -> str:
        return household_topic(c, h, "telemetry")

    good = encode(_telemetry("h01", -1100.0))
    async with live.running(), _as(broker, "h01") as h01, _as(broker, "h06") as h06, \
            _as(broker, "coordinator") as coord:  # fmt: skip
        await until(live.session.connected.is_set)
        await asyncio.sleep(0.2)  # its subscriptions are in place
        hostile = [
            b"{not json",
            good.replace(b'"pv_p_w":-1100.0', b'"pv_p_w":NaN'),
            encode(_telemetry("h02", -2200.0)),  # another household's, on h01's topic
            good[:-1] + b',"pad":"' + b"x" * 20_000 + b'"}',  # over 16 kB
            encode(_telemetry("h01", -1100.0, t=NOON + timedelta(hours=2))),  # from the future
        ]
        for payload in hostile:
            await h01.publish(at("h01"), payload, qos=1)
        await h06.publish(at("h06"), encode(_telemetry("h06", -6600.0)), qos=1)  # not enrolled
        await coord.publish(at("stranger"), encode(_telemetry("stranger", -1.0)), qos=1)
        await coord.publish(household_topic(c, "h01", "plan"), encode(_plan("h01", 2100.0)),
                            qos=1, retain=True)  # fmt: skip
        await h01.publish(at("h01"), good, qos=0, retain=True)
        await until(lambda: "h01" in store.telemetry and "h01" in store.plans)
        await until(lambda: rejects.total == 7)
    assert dict(rejects.by_reason) == {"not_json": 1, "bad_field": 1, "wrong_household": 1,
                                       "too_large": 1, "clock_skew": 1,
                                       "unknown_household": 2}  # fmt: skip
    assert set(store.telemetry) == {"h01"} and store.telemetry["h01"].pv_p_w == -1100.0
    assert set(store.plans) == {"h01"}
    public = json.dumps(live.snapshot())
    assert "1100" not in public and "h01" not in public and "2100" not in public


def _as(broker: Broker, user: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, username=user,
                          password=broker.creds[user], identifier=user)  # fmt: skip


@pytest.fixture
def coordinator_app(tmp_path: Path) -> tuple[TestClient, Accounts]:
    """The app over a coordinator's ledger of five households, each with a telemetry and a
    plan in the web's store (pv 1.1 kW for h01 … 5.5 kW for h05)."""
    path = tmp_path / "ledger.sqlite"
    ledger, _ = open_book(path, FIVE)
    with ledger:
        enrol_simulated(ledger, FIVE, [17_250.0] * 5, 0, seed=1)
    accounts = Accounts()
    for h in FIVE:
        accounts.add(h, HOUSEHOLD, f"{h}-password")
    accounts.add(OPERATOR, OPERATOR, "operator-password")
    store = HouseholdLive(FIVE, lambda: NOW_S, RejectCounter())
    for k, h in enumerate(FIVE, 1):
        for kind, msg in (
            ("telemetry", _telemetry(h, -1100.0 * k)),
            ("plan", _plan(h, 1000.0 * k)),
        ):
            topic = household_topic("oak", h, kind)  # type: ignore[arg-type]
            assert store.take(topic, decode(topic, encode(msg)))
    view = CoordinatorView(path, lambda: NOW_S)
    live = Live("oak", BrokerSettings(port=1, username="web", password="x"), store)
    return TestClient(
        create_app(view, accounts, live=live), raise_server_exceptions=False
    ), accounts


def _marks(k: int) -> tuple[str, str]:
    """What only household h0k's devices and plan show."""
    return f"producing {1.1 * k:.1f} kW", f"Your battery charges at {float(k):.1f} kW"


def test_no_household_sees_anothers_devices_or_plan(coordinator_app: tuple) -> None:
    app, _ = coordinator_app
    with app:
        anonymous = TestClient(app.app, raise_server_exceptions=False)
        clients = {h: TestClient(app.app, raise_server_exceptions=False) for h in FIVE}
        for k, (h, c) in enumerate(clients.items(), 1):
            assert login(c, h, f"{h}-password").status_code == 303
            page = c.get(f"/households/{h}").text
            assert all(m in page for m in _marks(k)), page
            assert 'data-live-url="/households/' + h + '/live"' in page
            others = [m for j in range(1, 6) if j != k for m in _marks(j)]
            assert not [m for m in others if m in page]
        checked = 0
        for a, b in itertools.permutations(FIVE, 2):
            k = FIVE.index(b) + 1
            for url in (f"/households/{b}", f"/households/{b}/live", f"/households/{b}/live/",
                        f"/households/{b}/live?household={a}", f"/households/{b.upper()}/live"):  # fmt: skip
                mine = clients[a].get(url, follow_redirects=True)
                anon = anonymous.get(url, follow_redirects=True)
                assert mine.status_code == 403, (a, url, mine.status_code)
                assert anon.status_code == 401, (url, anon.status_code)
                for r in (mine, anon):
                    assert not [m for m in _marks(k) if m in r.text], (a, url)
                checked += 1
        assert checked == 20 * 5
        public = anonymous.get("/").text + anonymous.get("/live.json").text
        assert not [m for k in range(1, 6) for m in _marks(k) if m in public]


def test_the_operator_sees_each_household_and_an_unknown_one_is_404(coordinator_app: tuple) -> None:
    app, _ = coordinator_app
    with app:
        login(app, OPERATOR, "operator-password")
        for k, h in enumerate(FIVE, 1):
            assert all(m in app.get(f"/households/{h}").text for m in _marks(k))
        r = app.get("/households/h09/live")
        assert r.status_code == 404 and "no household h09" in r.text


def test_a_finished_simulation_has_no_devices_now(site: Site) -> None:
    c = site.client()
    assert c.get("/households/h01/live").status_code == 401
    login(c, "h01", site.passwords["h01"])
    page = c.get("/households/h01").text
    assert "This is a finished simulation: there are no devices now" in page
    assert "household-live.js" not in page
    r = c.get("/households/h01/live")
    assert r.status_code == 404 and "finished simulation" in r.text
    assert c.get("/households/h02/live").status_code == 403
