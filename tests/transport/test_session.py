"""The kept-alive session against a real Mosquitto (and, where marked, the embedded broker over
MQTT 3.1.1): last will, reconnect, queued QoS 1."""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gridctl.devices.virtual import free_tcp_port
from gridctl.protocol import household_topic
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import running_broker
from gridctl.transport.session import BrokerSettings, Session
from tests.conftest import BOTH_BROKERS, Broker, require_tool

ROOT = Path(__file__).resolve().parents[2]


def _settings(port: int, user: str, password: str) -> BrokerSettings:
    return BrokerSettings(port=port, username=user, password=password)


class Inbox:
    """Collects (topic, payload) and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def __call__(self, topic: str, payload: bytes) -> None:
        self.got.append((topic, payload))
        self._changed.set()

    async def wait_for(self, item: tuple[str, bytes], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while item not in self.got:
                self._changed.clear()
                await self._changed.wait()


def _run(session: Session) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(session.run())


@BOTH_BROKERS
async def test_status_online_then_will_offline_when_the_process_dies(broker: Broker) -> None:
    status = household_topic("oak", "h03", "status")
    inbox = Inbox()
    coord = Session(broker.settings("coordinator"), "coord", [status], inbox)
    task = _run(coord)
    child = (
        "import asyncio\n"
        "from gridctl.transport.session import BrokerSettings, Session\n"
        f"s = Session(BrokerSettings.model_validate_json('{broker.settings('h03').model_dump_json()}'), "
        f"'h03', [], None, status_topic='{status}')\n"
        "asyncio.run(s.run())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        await inbox.wait_for((status, b"online"), 20)
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must send the will
        proc.wait(10)
        await inbox.wait_for((status, b"offline"), 20)
    finally:
        proc.kill()
        task.cancel()


async def test_reconnects_and_resubscribes_after_a_broker_restart(tmp_path: Path) -> None:
    require_tool("mosquitto")
    port = free_tcp_port()
    creds = write_broker_config(Community(community="oak", households=["h1"]), tmp_path, port,
                                run_as=getpass.getuser())  # fmt: skip
    conf = tmp_path / "mosquitto.conf"
    plan = household_topic("oak", "h1", "plan")
    inbox = Inbox()
    home = Session(_settings(port, "h1", creds["h1"]), "h1", [plan], inbox, backoff_max_s=1.0)
    coord = Session(_settings(port, "coordinator", creds["coordinator"]), "coord", [], Inbox(),
                    backoff_max_s=1.0)  # fmt: skip
    tasks = []
    try:
        with running_broker(conf, port) as proc:
            tasks = [_run(home), _run(coord)]
            await asyncio.wait_for(home.connected.wait(), 10)
            await asyncio.wait_for(coord.connected.wait(), 10)
            assert await coord.publish(plan, b"first")
            await inbox.wait_for((plan, b"first"))
            proc.send_signal(signal.SIGKILL)
        await asyncio.sleep(0.5)
        assert not home.connected.is_set()
        assert not await coord.publish(plan, b"lost")  # refused, not silently dropped
        with running_broker(conf, port):
            await asyncio.wait_for(home.connected.wait(), 15)
            await asyncio.wait_for(coord.connected.wait(), 15)
            assert await coord.publish(plan, b"second")
            await inbox.wait_for((plan, b"second"))
        assert home.connects == 2 and home.handler_errors == 0
    finally:
        for t in tasks:
            t.cancel()


@BOTH_BROKERS
async def test_qos1_messages_wait_for_a_subscriber_that_was_away(broker: Broker) -> None:
    reading = household_topic("oak", "h05", "reading")
    inbox = Inbox()
    coord = Session(broker.settings("coordinator"), "coord-persistent", [reading], inbox)
    home = Session(broker.settings("h05"), "h05", [], Inbox())
    t_coord, t_home = _run(coord), _run(home)
    await asyncio.wait_for(coord.connected.wait(), 10)
    await asyncio.wait_for(home.connected.wait(), 10)
    t_coord.cancel()  # the coordinator goes away; its session stays on the broker
    with pytest.raises(asyncio.CancelledError):
        await t_coord
    for k in range(5):
        assert await home.publish(reading, f"r{k}".encode())
    t_coord = _run(coord)
    try:
        for k in range(5):
            await inbox.wait_for((reading, f"r{k}".encode()))
    finally:
        t_coord.cancel()
        t_home.cancel()


async def test_a_failing_handler_is_counted_and_the_session_goes_on(broker: Broker) -> None:
    topic = household_topic("oak", "h01", "plan")
    seen: list[bytes] = []

    async def handler(t: str, payload: bytes) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    home = Session(_settings(broker.port, "h01", broker.creds["h01"]), "h01", [topic], handler)
    coord = Session(
        _settings(broker.port, "coordinator", broker.creds["coordinator"]), "c", [], Inbox()
    )
    tasks = [_run(home), _run(coord)]
    try:
        await asyncio.wait_for(home.connected.wait(), 10)
        await asyncio.wait_for(coord.connected.wait(), 10)
        assert await coord.publish(topic, b"boom")
        assert await coord.publish(topic, b"fine")
        async with asyncio.timeout(10):
            while b"fine" not in seen:
                await asyncio.sleep(0.02)
        assert home.handler_errors == 1 and home.connects == 1
    finally:
        for t in tasks:
            t.cancel()
