"""The coordinator's feeder state against a real Mosquitto: each planned interval's AC power
flow recorded in grid.sqlite beside the ledger (every figure) and published retained on
``coordinator/feeder`` (only figures covering at least k households)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gridctl.coordinator.config import coordinator_from_config, load_coordinator_config
from gridctl.core import INTERVAL_S, interval_of
from gridctl.grid.drawing import shown
from gridctl.grid.record import GRID_FILE, read_drawing, read_state
from gridctl.protocol import FeederMessage, coordinator_topic, decode
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks, until
from tests.coordinator.test_coordinator import Collector
from tests.coordinator.test_planner import NOON, write_config


def _messages(got: Collector, topic: str) -> list[FeederMessage]:
    out = [decode(topic, p).message for p in got.got.get(topic, [])]
    assert all(isinstance(m, FeederMessage) for m in out)
    return out  # type: ignore[return-value]


async def test_each_planned_interval_is_recorded_and_published_without_small_groups(
    broker: Broker, tmp_path: Path
) -> None:
    ids = broker.households
    cfg = load_coordinator_config(write_config(tmp_path, broker, len(ids)))
    first = interval_of(NOON)
    clock_s = [first * INTERVAL_S + 1]
    coord, _ = coordinator_from_config(cfg, clock=lambda: clock_s[0])
    coord.tick_s = 0.05
    got = Collector()
    topic = coordinator_topic(broker.community, "feeder")
    home = Session(broker.settings("h03"), "home-h03", [topic], got)
    tasks = [asyncio.create_task(x.run()) for x in (coord, home)]
    try:
        for k in range(2):
            clock_s[0] = (first + k) * INTERVAL_S + 1
            await until(lambda k=k: any(m.interval == first + k
                                        for m in _messages(got, topic)), 60)  # fmt: skip
    finally:
        await stop_tasks(*tasks)
    assert coord.failures["feeder"] == 0
    path = tmp_path / GRID_FILE
    d, limits, topology = read_drawing(path)
    assert limits.k == 5 and len(d.households) == len(ids)
    msg = _messages(got, topic)[-1]
    assert msg.topology == topology and msg.kind == "planned"
    kind, s = read_state(path, d, first + 1) or (None, None)
    assert kind == "planned" and s is not None
    bus_ok, branch_ok = shown(d, 5)
    for v, sent, ok in zip(s.v_upu, msg.v_upu, bus_ok, strict=True):
        assert sent == (v if ok else None)
        assert 900_000 < v < 1_100_000
    for x, sent, ok in zip(s.loading_ppm, msg.loading_ppm, branch_ok, strict=True):
        assert sent == (x if ok else None)
    withheld = [r for r, x in zip(d.branches, msg.loading_ppm, strict=True) if x is None]
    # the transformer (all ten) is shown, each household's own service line is not
    assert d.branches[0].kind == "trafo" and msg.loading_ppm[0] == s.loading_ppm[0] > 0
    assert withheld and any(r.households == 1 for r in withheld)
