"""The coordinator against a real Mosquitto: ingest, settle in order, roots, plans, restart, fuzz."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gridctl.coordinator.limits import RateLimit
from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S
from gridctl.protocol import (
    REASONS,
    CommunityPlanMessage,
    PlanMessage,
    PlanStep,
    RootMessage,
    Telemetry,
    coordinator_topic,
    decode,
    household_topic,
)
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import enrol_simulated, main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig
from gridctl.settlement.signing import MeterSigner, public_bytes
from gridctl.transport.session import BrokerSettings, Session
from tests.conftest import Broker, stop_tasks, until
from tests.keys import COORDINATOR_KEY
from tests.test_protocol import fuzz_cases

HOMES = ["h00", "h01", "h02"]
FIRST = 2_000_000  # first interval of the community


class Clock:
    """A clock the test sets by hand (epoch seconds)."""

    def __init__(self, t_s: float):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


class FlatPlanner:
    """Every household: battery idle for the next four intervals."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.ids = list(HOMES)

    def take_baselines(self) -> list:
        return []  # it plans no flexibility events

    def community_plan(self, interval: int, k: int) -> CommunityPlanMessage:
        return CommunityPlanMessage(interval=interval, households=len(self.ids), k=k)

    def plan(
        self, interval: int, telemetry: Mapping[str, Telemetry], now_s: float | None = None
    ) -> dict[str, list[PlanStep]]:
        self.calls.append(interval)
        return {h: [PlanStep(interval=interval + k) for k in range(4)] for h in HOMES}


def _settings(broker: Broker, user: str) -> BrokerSettings:
    return BrokerSettings(port=broker.port, username=user, password=broker.creds[user])


def _enrol(path: Path) -> dict[str, MeterSigner]:
    with Ledger(path) as ledger:
        return enrol_simulated(ledger, HOMES, [17_250.0] * 3, FIRST, seed=5)


class Collector:
    def __init__(self) -> None:
        self.got: dict[str, list[bytes]] = {}

    async def __call__(self, topic: str, payload: bytes) -> None:
        self.got.setdefault(topic, []).append(payload)


def _coordinator(
    broker: Broker, tmp_path: Path, clock: Clock, planner: FlatPlanner, **kw: Any
) -> Coordinator:
    return Coordinator(
        broker.community, _settings(broker, "coordinator"), tmp_path / "ledger.sqlite",
        tmp_path / "inbox.sqlite", SettlementConfig(0.20, 1.0), COORDINATOR_KEY, planner,
        clock=clock, tick_s=0.01, settle_after_s=300.0, health_port=0, **kw,
    )  # fmt: skip


async def test_settles_in_order_publishes_roots_and_acknowledges(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    signers = _enrol(tmp_path / "ledger.sqlite")
    clock = Clock(FIRST * INTERVAL_S + 10)
    planner = FlatPlanner()
    coord = _coordinator(broker, tmp_path, clock, planner)
    watch = Collector()  # h00 also watches (one connection per user)
    homes = {h: Session(_settings(broker, h), h, [], Collector()) for h in HOMES}
    homes["h00"] = Session(_settings(broker, "h00"), "h00", [household_topic(c, "h00", "plan"),
                           coordinator_topic(c, "#")], watch)  # fmt: skip
    tasks = [asyncio.create_task(s.run()) for s in homes.values()]
    tasks.append(asyncio.create_task(coord.run()))
    try:
        await until(lambda: all(s.connected.is_set() for s in homes.values()))
        plan_topic = household_topic(c, "h00", "plan")
        await until(lambda: plan_topic in watch.got)
        first_plan = decode(plan_topic, watch.got[plan_topic][-1]).message
        assert isinstance(first_plan, PlanMessage) and first_plan.issued == FIRST
        assert first_plan.readings_through is None  # nothing received yet

        async def send(h: str, interval: int, imp: int) -> None:
            r = signers[main_meter(h)].sign(interval, imp, 0)
            for _ in range(2):  # QoS 1 may deliver twice: harmless
                assert await homes[h].publish(
                    household_topic(c, h, "reading"), json.dumps(r.to_message()).encode()
                )

        def duplicates() -> float:
            got = coord.metrics.registry.get_sample_value(
                "gridctl_readings_received_total", {"new": "false"}
            )
            return got or 0.0

        for k in range(3):  # three intervals of readings, all meters, each sent near its end
            clock.t_s = (FIRST + k + 1) * INTERVAL_S - 100  # (within the clock skew allowed)
            for n, h in enumerate(HOMES):
                await send(h, FIRST + k, 100 * (k + 1) * (n + 1))
            # all in (duplicates too) before the clock moves on and the interval settles
            await until(lambda k=k: duplicates() == 3 * (k + 1))
        clock.t_s = (FIRST + 3) * INTERVAL_S + 1  # three intervals have ended: all complete
        await until(lambda: coord.last_closed == FIRST + 2)
        roots = coordinator_topic(c, "root")
        await until(lambda: len(watch.got.get(roots, [])) >= 3)
        published = [decode(roots, p).message for p in watch.got[roots]]
        assert [m.interval for m in published if isinstance(m, RootMessage)] == [
            FIRST,
            FIRST + 1,
            FIRST + 2,
        ]
        # each signed by the coordinator key and chained to the one before
        assert all(m.signed_by(public_bytes(COORDINATOR_KEY)) for m in published)  # type: ignore[union-attr]
        assert [m.prev for m in published[1:]] == [m.chain() for m in published[:-1]]  # type: ignore[union-attr]
        assert [o.interval for o in coord.outcomes] == [FIRST, FIRST + 1, FIRST + 2]
        assert all(s == "verified" for o in list(coord.outcomes)[1:] for s in o.status)
        await until(
            lambda: decode(plan_topic, watch.got[plan_topic][-1]).message.issued == FIRST + 3
        )
        assert decode(plan_topic, watch.got[plan_topic][-1]).message.readings_through == FIRST + 2

        # an interval with a reading missing waits for it, then is settled when overdue
        clock.t_s = (FIRST + 4) * INTERVAL_S - 100
        await send("h00", FIRST + 3, 500)
        await send("h01", FIRST + 3, 900)
        await until(lambda: duplicates() == 11)
        clock.t_s = (FIRST + 4) * INTERVAL_S + 100
        await asyncio.sleep(0.3)
        assert coord.last_closed == FIRST + 2
        clock.t_s = (FIRST + 4) * INTERVAL_S + 301
        await until(lambda: coord.last_closed == FIRST + 3)
        assert coord.outcomes[-1].status == ["verified", "verified", "missing"]

        # health and metrics
        reader, writer = await asyncio.open_connection("127.0.0.1", coord.http_port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        health = json.loads((await reader.read()).split(b"\r\n\r\n", 1)[1])
        assert health["last_settled_interval"] == FIRST + 3 and health["connected"] is True
        reader, writer = await asyncio.open_connection("127.0.0.1", coord.http_port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        text = (await reader.read()).decode()
        assert "gridctl_intervals_settled_total 4.0" in text
        assert 'gridctl_readings_received_total{new="false"} 11.0' in text
        assert 'gridctl_readings_total{outcome="missing"} 1.0' in text
    finally:
        await stop_tasks(*tasks)
    assert verify_ledger(tmp_path / "ledger.sqlite").ok


async def test_a_restarted_coordinator_resumes_without_gaps_or_doubles(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    signers = _enrol(tmp_path / "ledger.sqlite")
    pub = {h: Session(_settings(broker, h), f"pub-{h}", [], Collector()) for h in HOMES}
    tasks = [asyncio.create_task(s.run()) for s in pub.values()]
    clock = Clock(FIRST * INTERVAL_S + 1)

    async def publish(intervals: range) -> None:
        for k in intervals:
            for h in HOMES:
                r = signers[main_meter(h)].sign(FIRST + k, 10 * (k + 1), 0)
                payload = json.dumps(r.to_message()).encode()
                assert await pub[h].publish(household_topic(c, h, "reading"), payload)

    try:
        await until(lambda: all(s.connected.is_set() for s in pub.values()))
        first = _coordinator(broker, tmp_path, clock, FlatPlanner())
        task = asyncio.create_task(first.run())
        await until(lambda: first.session.connected.is_set())
        clock.t_s = (FIRST + 3) * INTERVAL_S - 100  # the readings' intervals are (nearly) over
        await publish(range(3))
        clock.t_s = (FIRST + 3) * INTERVAL_S + 1
        await until(lambda: first.last_closed == FIRST + 2)
        await stop_tasks(task)  # the coordinator dies ...
        await publish(range(3, 6))  # ... readings keep coming (the broker keeps its session)
        clock.t_s = (FIRST + 6) * INTERVAL_S + 1
        second = _coordinator(broker, tmp_path, clock, FlatPlanner())
        task = asyncio.create_task(second.run())
        await until(lambda: second.last_closed == FIRST + 5)
        assert [o.interval for o in second.outcomes] == [FIRST + 3, FIRST + 4, FIRST + 5]
        assert all(s == "verified" for o in second.outcomes for s in o.status)
        await stop_tasks(task)
    finally:
        await stop_tasks(*tasks)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        roots = [ledger.interval_root(FIRST + k) for k in range(6)]
        assert all(r is not None for r in roots) and ledger.last_closed() == FIRST + 5
    assert verify_ledger(tmp_path / "ledger.sqlite").ok


async def test_fuzzed_messages_on_every_topic_are_counted_and_harmless(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    _enrol(tmp_path / "ledger.sqlite")
    clock = Clock(FIRST * INTERVAL_S + 1)
    # no rate limit here: every message is parsed, so every malformed one is refused by decode
    unlimited = RateLimit(per_s=1e9, burst=1e9)
    coord = _coordinator(broker, tmp_path, clock, FlatPlanner(), readings_limit=unlimited,
                         other_limit=unlimited)  # fmt: skip
    # the attacker writes anywhere in the community: through the coordinator's own session
    # (one connection per user), which hears what it publishes
    fuzzer = coord.session
    tasks = [asyncio.create_task(coord.run())]
    cases = [
        (t.replace("gridctl/v1/oak/", f"gridctl/v1/{c}/"), p) for t, p in fuzz_cases(10_000, seed=3)
    ]
    cases = [
        (t, p)
        for t, p in cases
        if t.startswith(f"gridctl/v1/{c}/") and "#" not in t and "+" not in t
    ]
    expected = 0
    for t, p in cases:
        try:
            d = decode(t, p)
        except Exception:
            expected += 1
        else:
            assert d.community == c
    try:
        await until(coord.session.connected.is_set)
        t0 = time.monotonic()
        for t, p in cases:
            assert await fuzzer.publish(t, p, qos=1)

        def malformed() -> int:
            return sum(coord.rejects.by_reason[r] for r in REASONS)

        await until(lambda: malformed() >= expected, 60)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0.2)
        assert malformed() == expected > 7_000, (coord.rejects.by_reason, expected)
        assert coord.session.connects == 1 and coord.session.handler_errors == 0
        clock.t_s += INTERVAL_S  # and it still works: the next interval is planned
        await until(lambda: coord.last_planned == FIRST + 1)
    finally:
        await stop_tasks(*tasks)
    assert len(cases) > 9_000 and elapsed < 60
