"""The community's plan, live, in a real Chromium: Mosquitto, `gridctl coordinator run` with a
feeder (it plans every interval, 3 s at ``SPEED``) and a standing export limit, and `gridctl
web CONFIG` as real processes; the page's "Plan and actual" follows each published plan within
2 s (and the last settled interval beside it), says the limit in words, passes axe at 390 px and asks nothing of another origin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridctl.controller.keys import generate_key_file
from gridctl.core import TIME_SCALE_ENV, interval_start
from gridctl.devices.virtual import free_tcp_port
from gridctl.protocol import CommunityPlanMessage, coordinator_topic
from gridctl.settlement.aggregates import OpenDataMessage
from gridctl.web.plan_view import plan_figures
from tests.coordinator.test_planner import BUSES, FEEDER, _household
from tests.deployment import (
    Processes,
    Watcher,
    processes,
    reachable_dir,
    write_coordinator_config,
)
from tests.web.a11y import PHONE, check_page
from tests.web.community import SPEED, _answers, start_broker
from tests.web.conftest import RecordedPage
from tests.web.test_coordinator_web import _text, _wait_text

pytestmark = pytest.mark.slow  # a coordinator that plans, and the web app, as processes
HOMES = ("h00", "h01", "h02")
LIVE_S = 2.0
WORDS = (
    "The grid operator limits the feeder's export to 40 kW until further notice (source: config)."
)


class Planning:
    """The running community: its folder, processes, broker port and users, web origin."""

    def __init__(self, top: Path, procs: Processes, mqtt_port: int, users: dict[str, str],
                 base: str) -> None:  # fmt: skip
        self.top, self.procs, self.mqtt_port, self.users, self.base = (
            top, procs, mqtt_port, users, base)  # fmt: skip


@pytest.fixture(scope="module")
def planning() -> Iterator[Planning]:
    mqtt_port, web_port = free_tcp_port(), free_tcp_port()
    with pytest.MonkeyPatch.context() as mp, reachable_dir() as top, \
            processes(top / "logs") as procs:  # fmt: skip
        mp.setenv(TIME_SCALE_ENV, f"{SPEED}@{time.time():.3f}")
        users = start_broker(procs, top, mqtt_port, HOMES)
        generate_key_file(top / "coordinator.key")
        households = "".join(
            f"  - {json.dumps(_household(k, b) | {'public_key': generate_key_file(top / f'h{k:02d}.key').hex()})}\n"
            for k, b in enumerate(BUSES[: len(HOMES)])
        )
        cfg = write_coordinator_config(top, mqtt_port, households)
        with cfg.open("a") as f:  # a feeder: the coordinator plans; k = 2: its sums are public
            f.write(f"feeder: {{simbench: {FEEDER}}}\ndispatch: {{horizon: 32}}\n"
                    "opendata: {k: 2, publish: true}\n"
                    "envelopes: {limits: [{target: feeder, export_max_kw: 40}]}\n")  # fmt: skip
        procs.start("coordinator", "gridctl", "coordinator", "run", cfg)
        procs.wait_for(lambda: (top / "ledger.sqlite").exists(), 60, "the coordinator's ledger")
        base = f"http://127.0.0.1:{web_port}"
        procs.start("web", "gridctl", "web", cfg, "--port", str(web_port))
        procs.wait_for(lambda: _answers(f"{base}/how"), 60, "the web app")
        yield Planning(top, procs, mqtt_port, users, base)
        procs.check_alive()
        procs.stop()
        for name in procs.procs:
            assert "Traceback" not in procs.log(name), procs.logs_text()


def test_the_plan_and_the_limit_show_within_2_s_of_their_publication(
    planning: Planning, web_page: RecordedPage
) -> None:
    topic, settled = coordinator_topic("oak", "plan"), coordinator_topic("oak", "opendata")
    watcher = Watcher(planning.mqtt_port, "h01", planning.users["h01"], [topic, settled])
    web_page.page.set_viewport_size(PHONE)
    web_page.page.goto(f"{planning.base}/")
    _wait_text(web_page, "live-state", "Live.", 20)
    latencies = []
    try:
        deadline = time.monotonic() + 60
        while not watcher.on(topic):  # the first plan: imports, the feeder, the first solve
            assert time.monotonic() < deadline, planning.procs.logs_text()
            time.sleep(0.05)
        for _ in range(3):  # three plans as the coordinator publishes them, each interval
            plan = watcher.next(topic, 20)
            t0 = time.monotonic()
            assert isinstance(plan, CommunityPlanMessage) and plan.households == 3
            start = interval_start(plan.interval).strftime("%d %b %H:%M")
            latencies.append(_wait_text(web_page, "plan-when", start, 5) - t0)
            figures = plan_figures(plan)
            for key in ("trafo", "use", "pv"):
                assert _text(web_page, f"#plan-{key}") == figures[key]
            assert plan.feeder_export_max_w == 40_000 and plan.trafo_w >= -40_000  # type: ignore[operator]
            assert _items(web_page) == [WORDS]
        # the last settled interval beside it, from the coordinator's opendata broadcast
        row = watcher.next(settled, 20)
        t0 = time.monotonic()
        assert isinstance(row, OpenDataMessage)
        start = interval_start(row.interval).strftime("%d %b %H:%M")
        latencies.append(_wait_text(web_page, "actual-when", start, 5) - t0)
    finally:
        watcher.close()
    print(f"plan shown, ms after publication: {[round(1000 * s) for s in latencies]}")
    assert max(latencies) < LIVE_S, latencies
    assert check_page(web_page, planning.base, "", "community-plan-live") == []
    assert web_page.foreign(planning.base) == [] and web_page.errors == []


def _items(page: RecordedPage) -> list[str]:
    return page.page.evaluate(
        "() => [...document.querySelectorAll('#plan-in-force li')].map(li => li.textContent)"
    )
