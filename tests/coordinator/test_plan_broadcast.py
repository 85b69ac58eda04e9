"""The community's plan on a real Mosquitto: the coordinator logs each interval's plan in
plans.sqlite and publishes it retained on coordinator/plan; the web app's Live (broker user
``web``) keeps it with the envelope in force in words; hostile plan messages are refused and
counted and neither the coordinator nor Live stops."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from gridctl.coordinator.config import coordinator_from_config, load_coordinator_config
from gridctl.coordinator.planner import CommunityPlanner
from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S, interval_of
from gridctl.dispatch.plan_log import PLANS_FILE, read_plans
from gridctl.protocol import (
    MAX_PAYLOAD_BYTES,
    CommunityPlanMessage,
    RejectCounter,
    coordinator_topic,
)
from gridctl.transport.broker import WEB
from gridctl.transport.session import Session
from gridctl.web.live import Live
from tests.conftest import Broker, stop_tasks
from tests.coordinator.test_planner import NOON, _until, write_config

LIMIT = "{target: feeder, start: '2026-05-21T10:00:00Z', end: '2026-05-21T13:00:00Z', export_max_kw: 20}"
WORDS = "The grid operator limits the feeder's export to 20 kW until 13:00 UTC (source: config)."


class Plans:
    """The community plans a household received (refusing what ``decode`` refuses)."""

    def __init__(self) -> None:
        self.got: list[CommunityPlanMessage] = []
        self.rejects = RejectCounter()

    async def __call__(self, topic: str, payload: bytes) -> None:
        d = self.rejects.decode(topic, payload)
        if d is not None:
            assert isinstance(d.message, CommunityPlanMessage)
            self.got.append(d.message)


def _hostile(good: CommunityPlanMessage) -> list[bytes]:
    doc = json.loads(good.model_dump_json())
    return [
        json.dumps(doc | {"trafo_w": math.nan}).encode(),  # NaN, as a JS literal
        json.dumps(doc | {"load_w": math.inf}).encode(),
        json.dumps(doc | {"pv_w": -(10**12)}).encode(),  # 1 TW
        json.dumps(doc | {"interval": 2**50}).encode(),
        json.dumps(doc | {"in_force": [doc["in_force"][0]] * 33}).encode(),  # too many
        json.dumps(doc | {"in_force": [doc["in_force"][0] | {"source": "x" * 65}]}).encode(),
        json.dumps(doc | {"pad": "x" * MAX_PAYLOAD_BYTES}).encode(),  # oversized
        json.dumps(doc | {"v": 2}).encode(),
    ]


def _coordinator(
    broker: Broker, tmp_path: Path, clock_s: list[float], extra: str = ""
) -> Coordinator:
    """The coordinator of every household of ``broker`` on the test feeder, with the config's
    export limit (and ``extra`` YAML), ticking every 50 ms on the clock ``clock_s[0]``."""
    cfg_path = write_config(tmp_path, broker, len(broker.households))
    with cfg_path.open("a") as f:
        f.write(f"envelopes: {{limits: [{LIMIT}]}}\n{extra}")
    coord, _ = coordinator_from_config(load_coordinator_config(cfg_path), clock=lambda: clock_s[0])
    coord.tick_s = 0.05
    return coord


async def test_the_coordinator_logs_and_publishes_the_community_plan(
    broker: Broker, tmp_path: Path
) -> None:
    clock_s = [NOON.timestamp() + 1]
    coord = _coordinator(broker, tmp_path, clock_s)
    planner = coord.planner
    assert isinstance(planner, CommunityPlanner)
    topic = coordinator_topic(broker.community, "plan")
    heard = Plans()
    home = Session(broker.settings("h03"), "home-h03", [topic], heard)
    live = Live(broker.community, broker.settings(WEB))
    first = interval_of(NOON)
    tasks = [asyncio.create_task(x.run()) for x in (coord, home)]
    try:
        async with live.running():
            await _until(lambda: any(m.interval == first for m in heard.got))
            clock_s[0] = (first + 1) * INTERVAL_S + 1
            await _until(lambda: any(m.interval == first + 1 for m in heard.got))
            await _until(lambda: live.plan is not None and live.plan.interval == first + 1)
            msg = next(m for m in heard.got if m.interval == first + 1)
            r = planner.rolling
            assert r.plan is not None
            j = first + 1 - r.plan_t0
            planned = (float(r.plan.grid_w[j]), float(r.plan.curtail_w[:, j].sum()))
            logged = read_plans(tmp_path / PLANS_FILE, 0, 2**40)
            snap = live.snapshot()["plan"]

            # hostile plans from the only user that may publish there: refused, counted
            before, failures = live.rejects.total, dict(coord.failures)
            coord_topic = coordinator_topic(broker.community, "plan")
            bad = _hostile(msg)
            for payload in bad:
                # through the coordinator's own session (the broker takes one per user)
                assert await coord.session.publish(coord_topic, payload, 1, False)
            await _until(lambda: live.rejects.total - before == len(bad))
            await live._on_message(  # another community's plan: refused too
                coordinator_topic("elm", "plan"), msg.model_dump_json().encode()
            )
            assert live.rejects.by_reason["wrong_community"] == 1
            assert live.plan == msg
            # both go on: the next interval's plan is logged, published and kept
            clock_s[0] = (first + 2) * INTERVAL_S + 1
            await _until(lambda: live.plan is not None and live.plan.interval == first + 2)
            assert coord.failures == failures == {k: 0 for k in failures}
    finally:
        await stop_tasks(*tasks)

    assert [m.interval for m in logged] == [first, first + 1]
    assert logged[-1] == msg, "what is published is what is logged (10 households ≥ k)"
    assert (msg.households, msg.k) == (10, 5)
    assert (msg.trafo_w, msg.curtail_w) == tuple(round(x) for x in planned)
    assert msg.pv_w is not None and msg.pv_w < -5000, "noon in May: the roofs produce"
    assert msg.feeder_export_max_w == 20_000 and msg.trafo_w >= -20_000  # type: ignore[operator]
    assert [(i.kind, i.source, i.export_max_w) for i in msg.in_force] == [
        ("envelope", "config", 20_000)]  # fmt: skip
    assert snap is not None and snap["in_force"] == [WORDS]
    assert snap["figures"]["trafo"].endswith("to the grid")


async def test_sums_over_fewer_than_k_households_are_logged_but_not_published(
    broker: Broker, tmp_path: Path
) -> None:
    coord = _coordinator(broker, tmp_path, [NOON.timestamp() + 1], "opendata: {k: 11}\n")
    heard = Plans()
    home = Session(broker.settings("h03"), "home-h03", [coordinator_topic(broker.community,
                                                                          "plan")], heard)  # fmt: skip
    tasks = [asyncio.create_task(x.run()) for x in (coord, home)]
    try:
        await _until(lambda: bool(heard.got))
    finally:
        await stop_tasks(*tasks)
    (logged,) = read_plans(tmp_path / PLANS_FILE, 0, 2**40)
    (published,) = heard.got
    assert (logged.households, logged.k) == (10, 11) and logged.trafo_w is not None
    assert published == logged.public() != logged
    assert published.trafo_w is None and published.feeder_export_max_w == 20_000
