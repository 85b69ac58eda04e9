"""The coordinator's open-data broadcast against a real Mosquitto: each settled interval's
public aggregates, retained on ``coordinator/opendata``, readable by every household."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S, interval_start
from gridctl.protocol import Telemetry, coordinator_topic, decode, encode, household_topic
from gridctl.settlement.aggregates import OpenDataMessage, aggregate_at
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import enrol_simulated, main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks, until
from tests.coordinator.test_coordinator import Clock, Collector
from tests.keys import COORDINATOR_KEY

HOMES = ["h00", "h01", "h02"]
FIRST = 2_000_000
END_S = (FIRST + 1) * INTERVAL_S
# (grid W, PV W): h00 exports with PV, the others draw
SHOWN = {"h00": (-1000.0, -3000.0), "h01": (1200.0, None), "h02": (400.0, None)}


async def test_settled_aggregates_are_broadcast_retained(broker: Broker, tmp_path: Path) -> None:
    c = broker.community
    with Ledger(tmp_path / "ledger.sqlite") as led:
        signers = enrol_simulated(led, HOMES, [17_250.0] * 3, FIRST, seed=5)
    clock = Clock(END_S - 100)
    coord = Coordinator(
        c, broker.settings("coordinator"), tmp_path / "ledger.sqlite", tmp_path / "inbox.sqlite",
        SettlementConfig(0.20, 1.0, public_k=2), COORDINATOR_KEY, clock=clock, tick_s=0.01,
        publish_opendata=True,
    )  # fmt: skip
    homes = {h: Session(broker.settings(h), h, [], Collector()) for h in HOMES}
    tasks = [asyncio.create_task(s.run()) for s in homes.values()]
    tasks.append(asyncio.create_task(coord.run()))
    late: Session | None = None
    try:
        await until(lambda: coord.session.connected.is_set())
        await until(lambda: all(s.connected.is_set() for s in homes.values()))
        for k, (h, (grid_w, pv_w)) in enumerate(SHOWN.items()):
            imp, exp = (0, 250) if grid_w < 0 else (100 * (k + 1), 0)
            r = signers[main_meter(h)].sign(FIRST, imp, exp, 231_000 + 1000 * k)
            reading = json.dumps(r.to_message()).encode()
            assert await homes[h].publish(household_topic(c, h, "reading"), reading)
            t = Telemetry(household=h, t=interval_start(FIRST + 1), mode="fallback",
                          grid_p_w=grid_w, pv_p_w=pv_w)  # fmt: skip
            assert await homes[h].publish(household_topic(c, h, "telemetry"), encode(t))
        await until(lambda: len(coord.telemetry) == 3 and coord.inbox.meters_in(FIRST) == {
            main_meter(h) for h in HOMES
        })  # fmt: skip
        clock.t_s = END_S + 1
        await until(lambda: coord.last_closed == FIRST)
        # a household that connects afterwards gets the retained broadcast (the ACL lets it read)
        got = Collector()
        topic = coordinator_topic(c, "opendata")
        late = Session(broker.settings("h01"), "h01-late", [topic], got)
        tasks.append(asyncio.create_task(late.run()))
        await until(lambda: topic in got.got)
        msg = decode(topic, got.got[topic][-1]).message
        assert isinstance(msg, OpenDataMessage)
        assert (msg.interval, msg.k, msg.households, msg.metered_households) == (FIRST, 2, 3, 3)
        assert (msg.households_import_wh, msg.households_export_wh) == (500, 250)
        assert msg.shared_wh == 250  # h00's export matched to the others' import
        assert (msg.v_min_mv, msg.v_max_mv, msg.voltage_households) == (231_000, 233_000, 3)
        # demand: h00 2 kW, h01 1.2 kW, h02 0.4 kW for a quarter hour; PV of one household only
        assert (msg.demand_wh, msg.demand_households) == (900, 3)
        assert (msg.pv_wh, msg.pv_households) == (None, 1)
        assert (msg.grid_import_wh, msg.grid_households) == (None, 0)  # no transformer meter
        assert (msg.envelope_s, msg.envelope_households) == (0, 3)  # no envelope in force
        with Ledger(tmp_path / "ledger.sqlite") as led:
            row = aggregate_at(led.db, FIRST)
        assert row is not None and msg == OpenDataMessage.of(row)
    finally:
        await stop_tasks(*tasks)
    assert verify_ledger(tmp_path / "ledger.sqlite").ok
