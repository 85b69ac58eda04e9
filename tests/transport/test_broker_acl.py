"""Per-household access rights on a real Mosquitto configured by `gridctl broker config`."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gridctl.protocol import (
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
    BrokerConfigError,
    Community,
    load_community,
    write_broker_config,
)
from tests.conftest import Broker

WAIT_S = 5.0


def _client(broker: Broker, user: str | None, password: str | None = None) -> aiomqtt.Client:
    if user is not None and password is None:
        password = broker.creds[user]
    return aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=password, identifier=f"test-{user}",
        protocol=aiomqtt.ProtocolVersion.V5, timeout=WAIT_S,
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


async def test_households_read_only_their_plan_and_write_only_their_subtree(broker: Broker) -> None:
    c, hh = broker.community, broker.households
    prices = coordinator_topic(c, "prices")
    async with _client(broker, "coordinator") as coord:
        # noLocal: the coordinator does not hear its own plans and price markers
        await coord.subscribe(f"gridctl/v1/{c}/#", options=SubscribeOptions(qos=1, noLocal=True))
        for h in hh:  # a retained plan waits for every household
            plan = PlanMessage(household=h, issued=1, steps=[PlanStep(interval=2, battery_w=100.0)])
            await coord.publish(household_topic(c, h, "plan"), encode(plan), qos=1, retain=True)

        for n, h in enumerate(hh):
            async with _client(broker, h) as home:
                # try to read every plan, by wildcard and by name
                await home.subscribe(f"gridctl/v1/{c}/+/plan", qos=1)
                for o in hh:
                    await home.subscribe(household_topic(c, o, "plan"), qos=1)
                await home.subscribe(f"gridctl/v1/{c}/#", qos=1)
                marker = encode(
                    PriceMessage(
                        interval=n, import_per_kwh=0.3, feed_in_per_kwh=0.1, community_per_kwh=0.2
                    )
                )
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
                for name in ("root", "prices", "status"):
                    await home.publish(coordinator_topic(c, name), b"forged", qos=1)
                end = household_topic(c, h, "telemetry")
                marker = _telemetry(h, float(n))
                await home.publish(household_topic(c, h, "status"), b"online", qos=1)
                await home.publish(end, marker, qos=1)
            got = await _collect_until(coord, end, marker)
            # the coordinator sees the household's own status, none of the forged messages
            assert got == [(household_topic(c, h, "status"), b"online")], (h, got)


async def test_anonymous_unknown_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for user, password in (
        (None, None),
        ("h01", "wrong"),
        ("nobody", "x"),
        ("h01", broker.creds["h02"]),
    ):
        with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
            async with _client(broker, user, password):
                pass
    async with _client(broker, "h01"):  # and the right one gets in
        pass


def test_config_files_are_private_and_regeneration_keeps_passwords(tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = write_broker_config(Community(community="oak", households=["h1", "h2"]), out, 1884)
    assert set(first) == {"coordinator", "h1", "h2"} and len(set(first.values())) == 3
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
