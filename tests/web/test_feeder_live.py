"""The feeder diagram live in a real Chromium, in coordinator mode (`gridctl web CONFIG` over
a running community, every part a real process): a feeder message published as the
coordinator recolours the diagram within 2 s, without a reload; axe finds nothing serious at
390 px; every request goes to the app's own origin."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

from gridctl.grid.drawing import drawing, shown
from gridctl.grid.feeder import _simbench_net, resolve_buses
from gridctl.grid.record import GRID_FILE, GridRecord, Limits
from gridctl.protocol import FeederMessage, coordinator_topic, encode
from tests.web.a11y import PHONE, check_page
from tests.web.community import HOMES, Community, community_fixture  # noqa: F401
from tests.web.conftest import RecordedPage

pytestmark = pytest.mark.slow  # the community takes ~20 s to start
LIVE_S = 2.0
BUSES = ["LV1.101 Bus 8", "LV1.101 Bus 11", "LV1.101 Bus 10"]  # one chain: its trunk feeds 3


def _class_is(page: RecordedPage, element_id: str, cls: str) -> float:
    page.page.wait_for_function(
        "([id, cls]) => document.getElementById(id)?.classList.contains(cls)",
        arg=[element_id, cls], timeout=5000, polling="raf",
    )  # fmt: skip
    return time.monotonic()


def test_the_diagram_follows_the_coordinators_feeder_message(
    community: Community, web_page: RecordedPage
) -> None:
    net = _simbench_net("1-LV-rural1--0-sw")
    d = drawing(net, resolve_buses(net, BUSES), list(HOMES))
    # grid.sqlite beside the ledger, as a coordinator with this feeder makes it (k = 2)
    GridRecord(community.top / GRID_FILE, d, Limits(0.94, 1.06, 100.0, 2)).close()
    bus_ok, branch_ok = shown(d, 2)
    assert branch_ok[0] and not all(branch_ok)
    coord = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-coordinator",
                        protocol=mqtt.MQTTv5)  # fmt: skip
    coord.username_pw_set("coordinator", community.users["coordinator"])
    coord.connect("127.0.0.1", community.mqtt_port)
    coord.loop_start()

    def publish(interval: int, v_upu: int, loading_ppm: int) -> float:
        msg = FeederMessage(
            interval=interval, topology=d.topology_id,
            v_upu=[v_upu if ok else None for ok in bus_ok],
            loading_ppm=[loading_ppm if ok else None for ok in branch_ok],
        )  # fmt: skip
        t0 = time.monotonic()
        coord.publish(coordinator_topic("oak", "feeder"), encode(msg), qos=1,
                      retain=True).wait_for_publish(5)  # fmt: skip
        return t0

    page = web_page.page
    page.set_viewport_size(PHONE)
    try:
        publish(100, 1_010_000, 300_000)  # 1.01 p.u., 30 %
        page.goto(f"{community.base}/")
        page.wait_for_function(
            "() => document.getElementById('live-state')?.textContent.trim() === 'Live.'",
            timeout=10_000,
        )
        _class_is(web_page, "fd-r0", "ld-ok")
        assert page.text_content("#fd-v-r0") == "30.0 %"
        latencies = []
        t0 = publish(101, 1_065_000, 950_000)  # above the band; 95 %
        latencies.append(_class_is(web_page, "fd-r0", "ld-high") - t0)
        _class_is(web_page, "fd-b1", "v-out")
        assert page.text_content("#fd-v-r0") == "95.0 %"
        assert page.text_content("#fd-v-b1") == "1.0650 p.u."
        assert "planned interval 101" in (page.text_content("#feeder-when") or "")
        t0 = publish(102, 1_055_000, 1_200_000)  # near the limit; overloaded
        latencies.append(_class_is(web_page, "fd-r0", "ld-over") - t0)
        _class_is(web_page, "fd-b1", "v-near")
        # a figure covering one home stays withheld whatever the message
        lone = branch_ok.index(False)
        assert "withheld" in (page.get_attribute(f"#fd-r{lone}", "class") or "")
        print(f"feeder live latency, ms: {[round(1000 * s) for s in latencies]}")
        assert max(latencies) < LIVE_S, latencies
        bad = check_page(web_page, community.base, "", "community-live-feeder")
        assert bad == [], bad
    finally:
        coord.disconnect()
        coord.loop_stop()
    for h in HOMES:
        assert h not in page.content()
    assert web_page.foreign(community.base) == [] and web_page.errors == []
