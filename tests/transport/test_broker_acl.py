"""Per-household access rights on a broker configured by `gridctl broker config`: a real
Mosquitto, and the embedded broker serving the same files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from gridctl.protocol import (
    BROADCASTS,
    HOUSEHOLD_KINDS,
    PlanMessage,
    PlanStep,
    PriceMessage,
    Telemetry,
    coordinator_topic,
    encode,
    household_topic,
)
from gridctl.transport.broker import (
    Acl,
    BrokerConfigError,
    Community,
    acl_text,
    load_community,
    password_hash,
    password_matches,
    write_broker_config,
)
from gridctl.transport.session import _session_expiry
from tests.conftest import BOTH_BROKERS, Broker

WAIT_S = 5.0
REFUSED = "(?i)not authori[sz]ed"
"""How aiomqtt words a refused CONNECT (MQTT 5: "Not authorized", 3.1.1: "not authorised")."""


def _client(
    broker: Broker, user: str | None, password: str | None = None, **kw: object
) -> aiomqtt.Client:
    if user is not None and password is None:
        password = broker.creds[user]
    v5 = broker.settings("coordinator").mqtt_version == "5"
    kw.setdefault("identifier", f"test-{user}")
    return aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password, timeout=WAIT_S,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def _collect_until(
    client: aiomqtt.Client, topic: str, marker: bytes
) -> list[tuple[str, bytes]]:
    """Messages received until ``marker`` arrives on ``topic`` (that message excluded)."""
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(WAIT_S):
        async for m in client.messages:
            if str(m.topic) == topic and m.payload == marker:
                return got
            got.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
    raise AssertionError("unreachable")


def _telemetry(h: str, marker: float) -> bytes:
    return encode(Telemetry(household=h, t=datetime.now(UTC), mode="plan", grid_p_w=marker))


@BOTH_BROKERS
async def test_households_read_only_their_plan_and_write_only_their_subtree(broker: Broker) -> None:
    c, hh = broker.community, broker.households
    prices = coordinator_topic(c, "prices")
    own: set[tuple[str, bytes]] = set()  # what the coordinator sent (it hears that too)
    async with _client(broker, "coordinator") as coord:
        await coord.subscribe(f"gridctl/v1/{c}/#", qos=1)
        for h in hh:  # a retained plan waits for every household
            plan = PlanMessage(household=h, issued=1, steps=[PlanStep(interval=2, battery_w=100.0)])
            own.add((household_topic(c, h, "plan"), encode(plan)))
            await coord.publish(household_topic(c, h, "plan"), encode(plan), qos=1, retain=True)

        for n, h in enumerate(hh):
            async with _client(broker, h) as home:
                # try to read every plan, by wildcard and by name
                await home.subscribe(f"gridctl/v1/{c}/+/plan", qos=1)
                for o in hh:
                    await home.subscribe(household_topic(c, o, "plan"), qos=1)
                await home.subscribe(f"gridctl/v1/{c}/#", qos=1)
                await home.subscribe(f"gridctl/v1/{c}/coordinator/#", qos=1)
                marker = encode(
                    PriceMessage(
                        interval=n, import_per_kwh=0.3, feed_in_per_kwh=0.1, community_per_kwh=0.2
                    )
                )
                own.add((prices, marker))
                await coord.publish(prices, marker, qos=1)
                seen = await _collect_until(home, prices, marker)
                plans = {t for t, _ in seen if t.endswith("/plan")}
                assert plans == {household_topic(c, h, "plan")}, (h, plans)
                assert all(t.startswith(f"gridctl/v1/{c}/{h}/") for t, _ in seen), (h, seen)

                # try to write into every other household's subtree, its own plan and the
                # community broadcasts; then one allowed message as the end marker
                for o in hh:
                    for kind in HOUSEHOLD_KINDS:
                        if o != h or kind == "plan":
                            payload = b"offline" if kind == "status" else _telemetry(o, -1.0)
                            await home.publish(household_topic(c, o, kind), payload, qos=1)
                for name in BROADCASTS:
                    await home.publish(coordinator_topic(c, name), b"forged", qos=1)
                end = household_topic(c, h, "telemetry")
                marker = _telemetry(h, float(n))
                await home.publish(household_topic(c, h, "status"), b"online", qos=1)
                await home.publish(end, marker, qos=1)
            got = [m for m in await _collect_until(coord, end, marker) if m not in own]
            # the coordinator sees the household's own status, none of the forged messages
            assert got == [(household_topic(c, h, "status"), b"online")], (h, got)


@BOTH_BROKERS
async def test_the_web_user_reads_status_telemetry_plans_and_broadcasts_and_writes_only_votes(
    broker: Broker,
) -> None:
    c, hh = broker.community, broker.households[:3]
    async with _client(broker, "coordinator") as coord:
        await coord.subscribe(f"gridctl/v1/{c}/#", qos=1)
        expected = set()
        for h in hh:  # retained live state the web shows each household, and the status
            await coord.publish(household_topic(c, h, "telemetry"), _telemetry(h, 1.0), qos=1,
                                retain=True)  # fmt: skip
            plan = PlanMessage(household=h, issued=1, steps=[PlanStep(interval=2)])
            await coord.publish(household_topic(c, h, "plan"), encode(plan), qos=1, retain=True)
            await coord.publish(household_topic(c, h, "status"), b"online", qos=1, retain=True)
            expected |= {household_topic(c, h, k) for k in ("telemetry", "plan", "status")}
        async with _client(broker, "web") as web:
            await web.subscribe(f"gridctl/v1/{c}/+/status", qos=1)
            await web.subscribe(f"gridctl/v1/{c}/+/telemetry", qos=1)
            await web.subscribe(f"gridctl/v1/{c}/+/plan", qos=1)
            await web.subscribe(f"gridctl/v1/{c}/+/reading", qos=1)  # refused or filtered
            await web.subscribe(coordinator_topic(c, "#"), qos=1)
            for h in hh:  # a signed reading now: the web must never get one
                await coord.publish(household_topic(c, h, "reading"), b"personal", qos=1)
            prices = coordinator_topic(c, "prices")
            await coord.publish(prices, b"end", qos=1)
            seen = await _collect_until(web, prices, b"end")
            assert {t for t, _ in seen} == expected, seen
            assert not [t for t, p in seen if t.endswith("/reading") or p == b"personal"]
            for h in hh:  # it may write every vote topic, nothing else of a household
                for kind in HOUSEHOLD_KINDS:
                    await web.publish(household_topic(c, h, kind), b"offline", qos=1)
            for name in BROADCASTS:
                await web.publish(coordinator_topic(c, name), b"forged", qos=1)
            await web.publish(household_topic(c, hh[0], "vote"), b"end", qos=1)
        got = await _collect_until(coord, household_topic(c, hh[0], "vote"), b"end")
    assert sorted(t for t, p in got if p in (b"offline", b"forged")) == sorted(
        household_topic(c, h, "vote") for h in hh
    ), got


@BOTH_BROKERS
async def test_a_household_reads_no_other_households_telemetry_or_plan(broker: Broker) -> None:
    c, (a, b) = broker.community, broker.households[:2]
    async with _client(broker, "coordinator") as coord:
        await coord.publish(household_topic(c, b, "telemetry"), _telemetry(b, 7.0), qos=1,
                            retain=True)  # fmt: skip
        plan = PlanMessage(household=b, issued=1, steps=[PlanStep(interval=2, battery_w=99.0)])
        await coord.publish(household_topic(c, b, "plan"), encode(plan), qos=1, retain=True)
        async with _client(broker, a) as home:
            for kind in ("telemetry", "plan", "status", "reading"):
                await home.subscribe(household_topic(c, b, kind), qos=1)
            await home.subscribe(coordinator_topic(c, "#"), qos=1)
            await coord.publish(coordinator_topic(c, "prices"), b"end", qos=1)
            got = await _collect_until(home, coordinator_topic(c, "prices"), b"end")
    assert not [t for t, _ in got if f"/{b}/" in t], got


@BOTH_BROKERS
async def test_anonymous_unknown_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for user, password in (
        (None, None),
        ("h01", "wrong"),
        ("nobody", "x"),
        ("h01", broker.creds["h02"]),
    ):
        with pytest.raises(aiomqtt.MqttError, match=REFUSED):
            async with _client(broker, user, password):
                pass
    async with _client(broker, "h01"):  # and the right one gets in
        pass


def test_config_files_are_private_and_regeneration_keeps_passwords(tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = write_broker_config(Community(community="oak", households=["h1", "h2"]), out, 1884)
    assert set(first) == {"coordinator", "web", "h1", "h2"} and len(set(first.values())) == 4
    for name in ("passwd", "acl", "credentials.json"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600, name
    assert "allow_anonymous false" in (out / "mosquitto.conf").read_text()
    assert first["h1"] not in (out / "passwd").read_text()  # hashes only
    second = write_broker_config(Community(community="oak", households=["h2", "h3"]), out, 1884)
    assert second["h2"] == first["h2"] and second["coordinator"] == first["coordinator"]
    assert "h1" not in second  # a household that left loses its access
    doc = json.loads((out / "credentials.json").read_text())
    assert doc["users"] == second and doc["broker"]["port"] == 1884


def test_community_files_and_bad_ones(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("community: oak\nhouseholds: [h1, h2]\n")
    assert load_community(f).households == ["h1", "h2"]
    f.write_text("name: elm\nhouseholds: [{id: a1, bus: 3}, {id: a2, bus: 4}]\n")  # a scenario
    assert load_community(f) == Community(community="elm", households=["a1", "a2"])
    for text, needle in (
        ("community: oak\nhouseholds: [h1, h1]\n", "twice"),
        ("community: oak\nhouseholds: [coordinator]\n", "coordinator"),
        ("community: oak\nhouseholds: [h1, web]\n", "web app"),
        ("community: o/k\nhouseholds: [h1]\n", "community"),
        ("households: [h1]\n", "community"),
        ("community: oak\nhouseholds: []\n", "households"),
        ("[1, 2]\n", "mapping"),
    ):
        f.write_text(text)
        with pytest.raises(BrokerConfigError, match=needle):
            load_community(f)
    with pytest.raises(BrokerConfigError, match="cannot read"):
        load_community(tmp_path / "missing.yaml")


def test_cli_writes_the_broker_files_and_names_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gridctl.cli import app

    runner = CliRunner()
    f = tmp_path / "community.yaml"
    f.write_text("community: oak\nhouseholds: [h1, h2, h3]\n")
    res = runner.invoke(
        app, ["broker", "config", str(f), "--out", str(tmp_path / "b"), "--port", "1999"]
    )
    assert res.exit_code == 0, res.output
    assert "3 households" in res.output
    conf = (tmp_path / "b" / "mosquitto.conf").read_text()
    assert "listener 1999 127.0.0.1" in conf and "allow_anonymous false" in conf
    f.write_text("community: oak\nhouseholds: [h1, h1]\n")
    res = runner.invoke(app, ["broker", "config", str(f), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "twice" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["broker", "config", str(f), "--tls-cert", str(f)])
    assert res.exit_code == 2 and "go together" in res.output


def test_plain_mqtt_beyond_loopback_needs_insecure(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gridctl.cli import app

    runner = CliRunner()
    f = tmp_path / "community.yaml"
    f.write_text("community: oak\nhouseholds: [h1]\n")
    for bind in ("0.0.0.0", "", "192.168.1.5", "::"):
        res = runner.invoke(app, ["broker", "config", str(f), "--out", str(tmp_path / "b"),
                                  "--bind", bind])  # fmt: skip
        assert res.exit_code == 2 and "--insecure" in res.output, (bind, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
        assert not (tmp_path / "b" / "mosquitto.conf").exists()
    for bind in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        res = runner.invoke(app, ["broker", "config", str(f), "--out", str(tmp_path / "b"),
                                  "--bind", bind])  # fmt: skip
        assert res.exit_code == 0, (bind, res.output)
    res = runner.invoke(app, ["broker", "config", str(f), "--out", str(tmp_path / "b"),
                              "--bind", "0.0.0.0", "--insecure"])  # fmt: skip
    assert res.exit_code == 0 and "listener 1883 0.0.0.0" in (
        tmp_path / "b" / "mosquitto.conf").read_text()  # fmt: skip


def _connect_then_die(broker: Broker, user: str, client_id: str, will_topic: str,
                      will: bytes) -> int:  # fmt: skip
    """Log in (MQTT 3.1.1, which both brokers speak) with a retained QoS 1 last will, then drop
    the connection without DISCONNECT, so that the will is due; returns the CONNACK code."""

    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02  # user, password, will retain/QoS 1, clean
    body = (field(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + field(client_id.encode())
            + field(will_topic.encode()) + field(will) + field(user.encode())
            + field(broker.creds[user].encode()))  # fmt: skip
    with socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT_S) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        ack = s.recv(4)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    return ack[3]


@BOTH_BROKERS
async def test_a_last_will_goes_only_where_its_user_may_write(broker: Broker) -> None:
    c = broker.community
    async with _client(broker, "coordinator") as coord:
        await coord.subscribe(f"gridctl/v1/{c}/+/status", qos=1)
        victim = household_topic(c, "h02", "status")
        _connect_then_die(broker, "h01", "will-forger", victim, b"offline")
        own = household_topic(c, "h01", "status")
        assert _connect_then_die(broker, "h01", "will-owner", own, b"offline") == 0
        seen = await _collect_until(coord, own, b"offline")
        assert (victim, b"offline") not in seen
    async with _client(broker, "h02") as home:  # nor is it retained for later readers
        await home.subscribe(f"gridctl/v1/{c}/coordinator/#", qos=1)
        async with _client(broker, "coordinator") as coord:
            await coord.publish(coordinator_topic(c, "status"), b"online", qos=1)
        assert await _collect_until(home, coordinator_topic(c, "status"), b"online") == []


@BOTH_BROKERS
async def test_another_users_client_id_gets_none_of_its_plans(broker: Broker) -> None:
    c = broker.community
    plan = household_topic(c, "h01", "plan")
    persistent = {"identifier": "gridctl-oak-h01", "clean_session": False}
    if broker.kind == "mosquitto":
        persistent = {"identifier": "gridctl-oak-h01", "clean_start": False,
                      "properties": _session_expiry()}  # fmt: skip
    async with _client(broker, "h01", **persistent) as home:
        await home.subscribe(plan, qos=1)
    async with _client(broker, "coordinator") as coord:  # one retained, one queued for h01
        await coord.publish(plan, b"retained", qos=1, retain=True)
        await coord.publish(plan, b"queued", qos=1)
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(aiomqtt.MqttError):  # refused, or let in to find nothing
        async with _client(broker, "h02", **persistent) as thief:
            await thief.subscribe(f"gridctl/v1/{c}/coordinator/#", qos=1)
            async with _client(broker, "coordinator") as coord:
                await coord.publish(coordinator_topic(c, "prices"), b"end", qos=1)
            got = await _collect_until(thief, coordinator_topic(c, "prices"), b"end")
    assert not [m for m in got if m[0] == plan], got


def test_acl_rules_read_back_as_mosquitto_applies_them() -> None:
    acl = Acl.parse(acl_text("oak"))
    base = "gridctl/v1/oak"
    assert acl.allows("h1", f"{base}/h1/reading", "write")
    assert not acl.allows("h1", f"{base}/h1/reading", "read")
    assert not acl.allows("h1", f"{base}/h2/reading", "write")
    assert acl.allows("h1", f"{base}/coordinator/prices", "read")
    assert not acl.allows("h1", f"{base}/coordinator/prices", "write")
    assert acl.allows("coordinator", f"{base}/h1/reading", "read")
    assert acl.allows("web", f"{base}/h1/vote", "write")
    assert acl.allows("web", f"{base}/h1/status", "read")
    for kind in ("telemetry", "plan"):  # read, never written, by the coordinator's web
        assert acl.allows("web", f"{base}/h1/{kind}", "read")
        assert not acl.allows("web", f"{base}/h1/{kind}", "write")
    assert not acl.allows("web", f"{base}/h1/reading", "read")
    assert not acl.allows("h1", f"{base}/h2/telemetry", "read")
    assert not acl.allows("web", f"{base}/h1/status", "write")
    assert not acl.allows("h+", f"{base}/h1/plan", "read")  # a wildcard name gets no pattern
    # a subscription is within a user's reads only if every topic it can match is
    assert acl.covers("h1", f"{base}/h1/plan") and acl.covers("h1", f"{base}/coordinator/#")
    for wider in (f"{base}/#", f"{base}/+/plan", "#", f"{base}/h1/#", f"{base}/+"):
        assert not acl.covers("h1", wider), wider
    assert acl.covers("coordinator", f"{base}/#") and not acl.covers("coordinator", "#")
    for text, needle in (
        ("topic read a/b\n", "before any user"),
        ("user x\ntopic deny a\n", "unsupported"),
    ):
        with pytest.raises(BrokerConfigError, match=needle):
            Acl.parse(text)


def test_password_hashes_match_only_their_password() -> None:
    hashed = password_hash("s3cret")
    assert password_matches("s3cret", hashed)
    for wrong, h in (
        ("s3cre", hashed),
        ("s3cret", hashed.replace("$7$", "$6$")),
        ("s3cret", "$7$x$y$z"),
        ("s3cret", ""),
    ):
        assert not password_matches(wrong, h), (wrong, h)
