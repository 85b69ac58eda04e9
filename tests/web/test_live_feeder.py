"""The web's Live keeps the coordinator's feeder message, through a real Mosquitto as the
broker user ``web``: hostile ones (NaN, infinity, huge or fractional numbers, too many
elements, too big, another community's) are refused and counted, and the next good one is
still taken."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gridctl.protocol import MAX_FEEDER_ELEMENTS, MAX_PAYLOAD_BYTES, coordinator_topic
from gridctl.transport.session import Session
from gridctl.web.live import Live
from tests.conftest import Broker, stop_tasks, until

TOPOLOGY = "0123456789abcdef"


def _msg(interval: int, **fields: object) -> bytes:
    doc = {"v": 1, "interval": interval, "kind": "planned", "topology": TOPOLOGY,
           "v_upu": [1_020_000, None], "loading_ppm": [412_000]} | fields  # fmt: skip
    return json.dumps(doc).encode()


async def _ignore(topic: str, payload: bytes) -> None:
    pass


async def test_live_keeps_good_feeder_messages_and_counts_hostile_ones(
    broker: Broker, tmp_path: Path
) -> None:
    live = Live("oak", broker.settings("web"))
    coord = Session(broker.settings("coordinator"), "coordinator", [], _ignore)
    topic = coordinator_topic("oak", "feeder")
    hostile = [
        b'{"v": 1, "interval": 7, "topology": "0123456789abcdef", "v_upu": [NaN], '
        b'"loading_ppm": []}',
        b'{"v": 1, "interval": 7, "topology": "0123456789abcdef", "v_upu": [Infinity], '
        b'"loading_ppm": []}',
        _msg(7, v_upu=[10**30]),
        _msg(7, v_upu=[1.5]),
        _msg(7, loading_ppm=[-1]),
        _msg(7, v_upu=[1_000_000] * (MAX_FEEDER_ELEMENTS + 1)),
        _msg(7, topology="not-hex"),
        _msg(7, kind="measured"),
        b"x" * (MAX_PAYLOAD_BYTES + 1),
    ]
    async with live.running():
        task = asyncio.create_task(coord.run())
        try:
            await until(lambda: live.session.connected.is_set() and coord.connected.is_set())
            assert await coord.publish(topic, _msg(5), qos=1, retain=True)
            await until(lambda: live.feeder is not None)
            for payload in hostile:
                assert await coord.publish(topic, payload, qos=1)
            await until(lambda: live.rejects.total == len(hostile))
            # another community's message (the broker keeps it from us: handed in directly)
            await live._on_message(coordinator_topic("elm", "feeder"), _msg(9))
            assert live.rejects.by_reason["wrong_community"] == 1
            assert live.rejects.by_reason["bad_field"] == len(hostile) - 1  # NaN, inf too
            assert live.rejects.by_reason["too_large"] == 1
            assert live.feeder is not None and live.feeder.interval == 5
            assert await coord.publish(topic, _msg(4), qos=1)  # an older plan, late: ignored
            assert await coord.publish(topic, _msg(6, v_upu=[1_061_000, None]), qos=1)
            await until(lambda: live.feeder is not None and live.feeder.interval == 6)
        finally:
            await stop_tasks(task)
    snap = live.snapshot()["feeder"]
    assert snap == {"interval": 6, "kind": "planned", "topology": TOPOLOGY,
                    "v_upu": [1_061_000, None], "loading_ppm": [412_000]}  # fmt: skip
