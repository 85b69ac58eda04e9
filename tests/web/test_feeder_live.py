"""The feeder diagram live in a real Chromium, in coordinator mode, every part a real process
(Mosquitto, `gridctl coordinator run` planning three homes on a SimBench feeder, `gridctl web
CONFIG`): each interval's planned power flow, published by the coordinator, shows in the page
within 2 s without a reload; states recolour the diagram; a one-home line stays withheld; axe
finds nothing serious at 390 px; every request goes to the app's own origin."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from gridctl.grid.drawing import shown
from gridctl.grid.record import GRID_FILE, read_drawing, read_state
from gridctl.protocol import FeederMessage, coordinator_topic, encode
from tests.deployment import Watcher
from tests.web.a11y import PHONE, check_page
from tests.web.community import HOMES, Community, running_community
from tests.web.conftest import RecordedPage

pytestmark = pytest.mark.slow  # the community takes ~20 s to start
LIVE_S = 2.0
"""A published value must show in the page within this, s (the issue's acceptance)."""
TOPIC = coordinator_topic("oak", "feeder")


@pytest.fixture(scope="module")
def community() -> Iterator[Community]:
    """The web tests' running community, its coordinator planning on a feeder."""
    with running_community(feeder=True) as c:
        yield c


def _wait(page: RecordedPage, script: str, arg: object, timeout_s: float = 5.0) -> float:
    page.page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000, polling="raf")
    return time.monotonic()


def _has_class(page: RecordedPage, element_id: str, cls: str) -> float:
    return _wait(page, "([id, c]) => document.getElementById(id)?.classList.contains(c)",
                 [element_id, cls])  # fmt: skip


def _says(page: RecordedPage, element_id: str, text: str, timeout_s: float = 5.0) -> float:
    return _wait(page, "([id, t]) => document.getElementById(id)?.textContent.includes(t)",
                 [element_id, text], timeout_s)  # fmt: skip


def _next_message(watcher: Watcher) -> tuple[FeederMessage, float]:
    """The coordinator's next feeder message and when it arrived (time.monotonic())."""
    msg = watcher.next(TOPIC, 15)
    t0 = time.monotonic()
    assert isinstance(msg, FeederMessage)
    return msg, t0


# first: the next test leaves a message of a far interval in the web's Live
def test_the_operators_diagram_follows_every_figure(
    community: Community, web_page: RecordedPage
) -> None:
    password = re.search(r"user operator, password (\S+)", community.procs.log("web"))
    assert password
    watcher = Watcher(community.mqtt_port, "h02", community.users["h02"], [TOPIC])
    try:
        page = web_page.page
        page.goto(f"{community.base}/login")
        page.fill("#username", "operator")
        page.fill("#password", password.group(1))
        page.click("main form button[type=submit]")
        page.wait_for_url(f"{community.base}/")  # the operator lands on the community page
        _says(web_page, "live-state", "Live.", 10)
        path = community.top / GRID_FILE
        d, limits, _ = read_drawing(path)
        lone = next(k for k, r in enumerate(d.branches) if r.households == 1)
        assert not shown(d, limits.k)[1][lone]  # withheld publicly
        latencies = []
        for _ in range(2):
            msg, t0 = _next_message(watcher)
            assert msg.loading_ppm[lone] is None  # left out of the broadcast
            found = read_state(path, d, msg.interval)
            assert found is not None and found[0] == "planned"
            want = f"{found[1].loading_ppm[lone] / 1e4:.1f} %"
            _says(web_page, "feeder-when", f"planned interval {msg.interval}:")
            latencies.append(_says(web_page, f"fd-v-r{lone}", want) - t0)
            assert "withheld" not in (web_page.page.get_attribute(f"#fd-r{lone}", "class") or "")
            title = web_page.page.text_content(f"#fd-r{lone} title")
            assert title == f"{d.branches[lone].name}: {want}", title
        print(f"operator feeder live latency, ms: {[round(1000 * s) for s in latencies]}")
        assert max(latencies) < LIVE_S, latencies
    finally:
        watcher.close()
    assert any(h in web_page.page.content() for h in HOMES)  # who is where, for the operator
    assert web_page.foreign(community.base) == [] and web_page.errors == []


def test_the_diagram_follows_the_coordinators_planned_feeder(
    community: Community, web_page: RecordedPage
) -> None:
    page = web_page.page
    page.set_viewport_size(PHONE)
    watcher = Watcher(community.mqtt_port, "h03", community.users["h03"], [TOPIC])
    try:
        deadline = time.monotonic() + 60
        while not watcher.on(TOPIC):  # the coordinator's first plan (it loads the feeder first)
            assert time.monotonic() < deadline, "no feeder message from the coordinator"
            time.sleep(0.05)
        d, limits, topology = read_drawing(community.top / GRID_FILE)
        assert limits.k == 2 and [h for h, _ in d.households] == list(HOMES)
        page.goto(f"{community.base}/")
        _says(web_page, "live-state", "Live.", 10)
        assert page.get_attribute("#feeder-svg", "data-topology") == topology
        latencies = []
        for _ in range(2):  # the next two intervals, as the coordinator plans them
            msg, t0 = _next_message(watcher)
            assert msg.topology == topology
            latencies.append(_says(web_page, "feeder-when", f"planned interval {msg.interval}:")
                             - t0)  # fmt: skip
            assert msg.loading_ppm[0] is not None  # the transformer feeds all three homes
            assert page.text_content("#fd-v-r0") == f"{msg.loading_ppm[0] / 1e4:.1f} %"
        print(f"feeder live latency, ms: {[round(1000 * s) for s in latencies]}")
        assert max(latencies) < LIVE_S, latencies
        # what the coordinator leaves out stays withheld: each home's own service line
        bus_ok, branch_ok = shown(d, limits.k)
        assert [x is None for x in msg.loading_ppm] == [not ok for ok in branch_ok]
        lone = next(k for k, r in enumerate(d.branches) if r.households == 1)
        assert "withheld" in (page.get_attribute(f"#fd-r{lone}", "class") or "")
        # the state classes follow the figures: an overloaded plan, as the coordinator would
        # publish it (a later interval, so the running coordinator's next one is older)
        over = FeederMessage(
            interval=msg.interval + 1000, topology=topology,
            v_upu=[1_065_000 if ok else None for ok in bus_ok],
            loading_ppm=[1_200_000 if ok else None for ok in branch_ok],
        )  # fmt: skip
        with community.client("coordinator", "test-coordinator") as coord:
            coord.publish(TOPIC, encode(over), qos=1).wait_for_publish(5)
        _has_class(web_page, "fd-r0", "ld-over")
        _has_class(web_page, f"fd-b{bus_ok.index(True, 1)}", "v-out")
        assert page.text_content("#fd-s-r0") == "above 100 %"
        bad = check_page(web_page, community.base, "", "community-live-feeder")
        assert bad == [], bad
    finally:
        watcher.close()
    for h in HOMES:
        assert h not in page.content()
    assert web_page.foreign(community.base) == [] and web_page.errors == []
