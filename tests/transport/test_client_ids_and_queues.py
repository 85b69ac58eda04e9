"""A real Mosquitto configured by `gridctl broker config`: a household cannot take over another
client's id, and a flood from one household does not make the broker drop the others' messages
queued for the coordinator."""

from __future__ import annotations

import asyncio

import aiomqtt

from gridctl.protocol import community_filter, coordinator_topic, household_topic
from gridctl.transport.broker import FLOOD_MESSAGES
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks, until

Log = list[tuple[str, bytes]]


def _session(broker: Broker, user: str, subscriptions: list[str], log: Log) -> Session:
    """gridctl's own session for ``user`` (client id = user name), its messages into ``log``."""

    async def keep(topic: str, payload: bytes) -> None:
        log.append((topic, payload))

    status = coordinator_topic(broker.community, "status") if user == "coordinator" else (
        household_topic(broker.community, user, "status"))  # fmt: skip
    return Session(broker.settings(user), user, subscriptions, keep, status_topic=status)


async def _impersonate(broker: Broker, user: str, victim: str, victim_status: str) -> None:
    """Log in as ``user`` (its own password) with the client id ``victim`` and a clean start,
    leave a will "offline" on the victim's status and say "offline" there too."""
    for protocol, clean in ((aiomqtt.ProtocolVersion.V5, {"clean_start": True}),
                            (aiomqtt.ProtocolVersion.V311, {"clean_session": True})):  # fmt: skip
        will = aiomqtt.Will(victim_status, b"offline", qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", broker.port, username=user,
                                  password=broker.creds[user], identifier=victim,
                                  protocol=protocol, will=will, timeout=5, **clean) as c:  # type: ignore[arg-type]  # fmt: skip
            await c.publish(victim_status, b"offline", qos=1, retain=True)


async def test_a_household_cannot_take_over_a_neighbours_or_the_coordinators_client_id(
    broker: Broker,
) -> None:
    c = broker.community
    seen: Log = []
    coord = _session(broker, "coordinator", [community_filter(c)], seen)
    neighbour = _session(broker, "h02", [household_topic(c, "h02", "plan")], [])
    tasks = [asyncio.create_task(s.run()) for s in (coord, neighbour)]
    try:
        await until(lambda: coord.connected.is_set() and neighbour.connected.is_set())
        victims = {"coordinator": coordinator_topic(c, "status"),
                   "h02": household_topic(c, "h02", "status")}  # fmt: skip
        for victim, status in victims.items():
            for client_id in (victim, f"gridctl-{c}-{victim}"):  # now and as ids used to be
                await _impersonate(broker, "h01", client_id, status)
        end = household_topic(c, "h02", "telemetry")
        assert await neighbour.publish(end, b"end", qos=1)
        await until(lambda: (end, b"end") in seen)
        assert (coord.connects, neighbour.connects) == (1, 1)  # neither was disconnected
        assert coord.connected.is_set() and neighbour.connected.is_set()
        offline = [t for t, p in seen if p == b"offline"]
        assert offline == [], offline  # no will, no forged status for the victims
    finally:
        await stop_tasks(*tasks)

    # the coordinator is away: a reading queued for it survives a clean start under its id
    reading = household_topic(c, "h03", "reading")
    async with aiomqtt.Client("127.0.0.1", broker.port, username="h03",
                              password=broker.creds["h03"], identifier="h03") as home:  # fmt: skip
        await home.publish(reading, b"queued while away", qos=1)
    await _impersonate(broker, "h01", "coordinator", coordinator_topic(c, "status"))
    back: Log = []
    coord = _session(broker, "coordinator", [community_filter(c)], back)
    task = asyncio.create_task(coord.run())
    try:
        await until(lambda: (reading, b"queued while away") in back)
    finally:
        await stop_tasks(task)


async def test_a_flood_from_one_household_leaves_the_others_readings_queued(
    broker: Broker,
) -> None:
    c = broker.community
    got: Log = []
    coord = _session(broker, "coordinator", [community_filter(c)], got)
    task = asyncio.create_task(coord.run())
    await until(coord.connected.is_set)
    await stop_tasks(task)  # away; its session keeps what arrives meanwhile
    others = broker.households[2:]

    async def readings(tag: bytes) -> None:
        for h in others:
            async with aiomqtt.Client("127.0.0.1", broker.port, username=h,
                                      password=broker.creds[h], identifier=h) as home:  # fmt: skip
                await home.publish(household_topic(c, h, "reading"), tag + h.encode(), qos=1)

    await readings(b"before ")
    flood = household_topic(c, "h01", "reading")
    async with aiomqtt.Client("127.0.0.1", broker.port, username="h01",
                              password=broker.creds["h01"], identifier="h01") as bad:  # fmt: skip
        for start in range(0, FLOOD_MESSAGES, 200):
            await asyncio.gather(*(bad.publish(flood, b"junk %d" % k, qos=1)
                                   for k in range(start, start + 200)))  # fmt: skip
    await readings(b"after ")

    coord = _session(broker, "coordinator", [community_filter(c)], got)
    task = asyncio.create_task(coord.run())
    wanted = {(household_topic(c, h, "reading"), tag + h.encode())
              for h in others for tag in (b"before ", b"after ")}  # fmt: skip
    try:
        await until(lambda: wanted <= set(got), timeout_s=60)
    finally:
        await stop_tasks(task)
    assert sum(t == flood for t, _ in got) == FLOOD_MESSAGES  # the flood too: nothing dropped
