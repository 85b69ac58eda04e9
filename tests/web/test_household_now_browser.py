"""A household's devices now in a real Chromium, in coordinator mode with every part a real
process (Mosquitto, `gridctl coordinator run`, `gridctl web CONFIG`): logged in as h01, the page
shows the telemetry h01's controller publishes and follows new telemetry within 2 s, and the
plan the coordinator publishes for it; h02's, published alongside, never appear; axe at 390 px on the live page; every request to the app."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
import pytest

from gridctl.core import interval_at, service_clock
from gridctl.protocol import PlanMessage, PlanStep, Telemetry, encode, household_topic
from tests.web.a11y import PHONE, check_page
from tests.web.community import PASSWORDS, Community, community_fixture  # noqa: F401
from tests.web.conftest import RecordedPage
from tests.web.helpers import csrf_of, login
from tests.web.test_coordinator_web import LIVE_S, _browser_login

pytestmark = pytest.mark.slow  # the community takes ~20 s to start (imports, on 2 cores)


def _publish(c: mqtt.Client, household: str, pv_w: float, battery_w: float) -> None:
    """Retained telemetry stamped with the community's (sped-up) clock."""
    t = datetime.fromtimestamp(service_clock()(), UTC)
    msg = Telemetry(household=household, t=t, mode="plan", pv_p_w=pv_w, battery_p_w=battery_w,
                    soc=0.5, grid_p_w=pv_w + battery_w + 400.0, ev_p_w=0.0)  # fmt: skip
    c.publish(household_topic("oak", household, "telemetry"), encode(msg), qos=1,
              retain=True).wait_for_publish(5)  # fmt: skip


def _plan(c: mqtt.Client, household: str, battery_w: float) -> None:
    """A retained plan from the coordinator: ``battery_w`` for the next two hours."""
    now = interval_at(service_clock()())
    steps = [PlanStep(interval=now + k, battery_w=battery_w) for k in range(8)]
    msg = PlanMessage(household=household, issued=now, steps=steps)
    c.publish(household_topic("oak", household, "plan"), encode(msg), qos=1,
              retain=True).wait_for_publish(5)  # fmt: skip


def _csrf(browser: httpx.Client) -> str:
    """The logout form's CSRF token on the household's page."""
    return csrf_of(browser.get("/households/h01").text)


def _devices(page: RecordedPage) -> str:
    return page.page.evaluate("document.getElementById('own-devices').textContent")


def _wait_devices(page: RecordedPage, community: Community, want: str) -> None:
    """Wait up to 5 s until the devices list says ``want``; else fail saying what it showed
    and what the web app logged."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.page.wait_for_function(
            "want => document.getElementById('own-devices').textContent.includes(want)",
            arg=want, timeout=5_000, polling="raf",
        )  # fmt: skip
    except PlaywrightTimeout:
        state = page.page.evaluate("document.getElementById('own-state').textContent")
        raise AssertionError(
            f"no {want!r} within 5 s; state {state!r}, devices {_devices(page)!r}, web log:\n"
            + community.procs.log("web")[-2000:]
        ) from None


def test_the_page_follows_its_own_devices_and_never_shows_anothers(
    community: Community, web_page: RecordedPage
) -> None:
    page, base = web_page.page, community.base
    # retained plans as the coordinator's user (this connection ends the coordinator's own
    # for a moment: published and gone at once, and the coordinator connects again)
    with community.client("coordinator", "coordinator") as coordinator:
        _plan(coordinator, "h02", 9900.0)
        _plan(coordinator, "h01", 2400.0)
    with community.client("h01", "h01") as mine, community.client("h02", "h02") as theirs:
        _publish(theirs, "h02", -8800.0, -7700.0)
        _publish(mine, "h01", -3200.0, 2100.0)
        _browser_login(web_page, base, "h01", PASSWORDS["h01"])
        page.wait_for_function(
            "document.getElementById('own-state').textContent.startsWith('Live')", timeout=10_000
        )
        page.wait_for_function(
            "document.getElementById('own-devices').textContent.includes('producing 3.2 kW')",
            timeout=10_000,
        )
        assert "charging at 2.1 kW, 50 % full" in _devices(web_page)
        page.wait_for_function(
            "document.getElementById('own-plan').textContent.includes("
            "'Your battery charges at 2.4 kW from')", timeout=5_000,
        )  # fmt: skip
        latencies = []
        for pv_w in (-4500.0, -1300.0, -6100.0):
            _publish(theirs, "h02", -8800.0, -7700.0)
            t0 = time.monotonic()
            _publish(mine, "h01", pv_w, -900.0)
            _wait_devices(web_page, community, f"producing {-pv_w / 1000:.1f} kW")
            latencies.append(time.monotonic() - t0)
            assert "discharging at 0.9 kW" in _devices(web_page)
        print(f"devices-now latency, ms: {[round(1000 * s) for s in latencies]}")
        assert max(latencies) < LIVE_S, latencies
        html = page.content()
        for theirs_only in ("8.8 kW", "7.7 kW", "9.9 kW"):  # h02's, never on h01's page
            assert theirs_only not in html
        # the changed page (live values in it) at 390 px: nothing serious for axe
        page.set_viewport_size(PHONE)
        bad = check_page(web_page, base, "/households/h01", "household-devices-now")
        assert not bad, "\n".join(bad)
        assert "producing 6.1 kW" in _devices(web_page) and "8.8 kW" not in page.content()
    assert web_page.foreign(base) == [] and web_page.errors == []


def test_the_stream_ends_with_its_session(community: Community) -> None:
    with httpx.Client(base_url=community.base, timeout=10) as browser, \
            community.client("h01", "h01") as mine:  # fmt: skip
        assert login(browser, "h01", PASSWORDS["h01"]).status_code == 303
        with browser.stream("GET", "/households/h01/live") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == "retry: 1000" and next(lines) == ""
            assert next(lines) == "event: household" and next(lines).startswith("data: {")
            assert browser.post("/logout", data={"csrf": _csrf(browser)}).status_code == 303
            _publish(mine, "h01", -5700.0, 0.0)  # a change: the stream looks, and ends
            rest, deadline = [], time.monotonic() + 12
            for line in lines:  # ends once the server ends the stream (keep-alives every 5 s)
                rest.append(line)
                assert time.monotonic() < deadline, f"the stream went on after logout: {rest}"
        assert not [line for line in rest if "5.7 kW" in line], rest
        assert browser.get("/households/h01/live").status_code == 401
