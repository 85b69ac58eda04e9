"""The household controller against a real Mosquitto and virtual Modbus devices, on a fast clock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridctl.controller.config import ControllerConfig, DeviceConfig, Limits
from gridctl.controller.keys import generate_key_file, load_key_file
from gridctl.controller.loop import Controller
from gridctl.core import INTERVAL_S
from gridctl.devices.profile import load_profile, parse_profile
from gridctl.devices.virtual import serving
from gridctl.devices.virtual_profile import CarSession, ProfileVirtual
from gridctl.protocol import (
    PlanMessage,
    PlanStep,
    Telemetry,
    coordinator_topic,
    decode,
    encode,
    household_topic,
)
from gridctl.settlement.signing import SignedReading, parse_reading
from gridctl.transport.session import BrokerConfig, BrokerSettings, Session
from tests.conftest import Broker, stop_tasks, until
from tests.keys import COORDINATOR_PUBLIC_HEX

SPEED = 300.0  # one 15-minute interval in 3 s
LOAD_W = 800.0
BATTERY_PROFILE = """
vendor: Test
model: battery with setpoint and revert timer
kind: battery
source: "synthetic profile for the controller tests"
transport: {type: tcp, unit: 2}
registers:
  - {role: p_w,      function: holding, address: 0, type: s32, unit: W}
  - {role: soc,      function: holding, address: 2, type: u16, unit: "%", scale: 0.1}
  - {role: p_set_w,  function: holding, address: 3, type: s32, unit: W, access: rw, min: -5000, max: 5000}
  - {role: revert_s, function: holding, address: 5, type: u16, unit: s, access: rw}
"""


class FastClock:
    """Epoch seconds running SPEED times faster than real time, from ``start_s`` at wall time
    ``t0`` (wall time, so other processes can keep the same clock)."""

    def __init__(self, start_s: float, t0: float | None = None):
        self.start_s, self.t0 = start_s, time.time() if t0 is None else t0

    def __call__(self) -> float:
        return self.start_s + SPEED * (time.time() - self.t0)


def fast_clock() -> FastClock:
    """A fast clock whose first interval boundary comes 1.5 s (real) after now."""
    boundary = (int(time.time() // INTERVAL_S) + 1000) * INTERVAL_S
    return FastClock(boundary - 1.5 * SPEED)


@dataclass
class House:
    """One household's virtual devices and its controller's configuration."""

    meter: ProfileVirtual
    battery: ProfileVirtual
    ev: ProfileVirtual
    config: ControllerConfig
    clock: FastClock


@asynccontextmanager
async def house(
    broker: Broker, tmp_path: Path, household: str = "h01", clock: FastClock | None = None
) -> AsyncIterator[House]:
    """Meter (Eastron), battery (synthetic) and charger (Alfen) of one home, served on one port."""
    clock = clock or fast_clock()
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "battery.yaml").write_text(BATTERY_PROFILE)
    battery = ProfileVirtual(parse_profile(tmp_path / "battery.yaml"), clock=clock)
    ev = ProfileVirtual(load_profile("alfen-eve"), unit=3, clock=clock,
                        car=CarSession(clock(), clock() + 10 * INTERVAL_S, 50_000.0))  # fmt: skip

    def measured_w(t_s: float) -> float:
        battery.advance(t_s)
        ev.advance(t_s)
        return LOAD_W + battery.values["p_w"] + ev.values["p_w"]

    meter = ProfileVirtual(load_profile("eastron-sdm630"), clock=clock, measured_w=measured_w)
    key_file = tmp_path / f"{household}.key"
    key_file.unlink(missing_ok=True)
    generate_key_file(key_file)
    async with serving([meter, battery, ev]) as port:
        config = ControllerConfig(
            community=broker.community, household=household,
            broker=BrokerConfig(port=broker.port, password=broker.creds[household]),
            key_file=key_file, state_db=tmp_path / f"{household}.sqlite",
            coordinator_key=COORDINATOR_PUBLIC_HEX,
            limits=Limits(fuse_a=25), poll_s=0.05, revert_s=30,
            devices=[
                DeviceConfig(name="meter", role="meter", profile="eastron-sdm630", port=port, unit=1),
                DeviceConfig(name="battery", role="battery", profile=str(tmp_path / "battery.yaml"),
                             port=port, unit=2, rated_w=5000),
                DeviceConfig(name="ev", role="ev", profile="alfen-eve", port=port, unit=3, rated_w=11_000),
            ],
        )  # fmt: skip
        yield House(meter, battery, ev, config, clock)


class Coordinator:
    """The coordinator's side of the wire: collects what a household publishes."""

    def __init__(self, broker: Broker, household: str):
        self.telemetry: list[Telemetry] = []
        self.readings: list[bytes] = []
        c = broker.community
        self.session = Session(
            BrokerSettings(port=broker.port, username="coordinator", password=broker.creds["coordinator"]),
            "coord-test", [household_topic(c, household, "telemetry"), household_topic(c, household, "reading")],
            self.on_message,
        )  # fmt: skip

    async def on_message(self, topic: str, payload: bytes) -> None:
        msg = decode(topic, payload).message
        if isinstance(msg, Telemetry):
            self.telemetry.append(msg)
        else:
            self.readings.append(payload)

    async def until(self, what: Callable[[], bool], timeout_s: float = 10.0) -> None:
        await until(what, timeout_s, poll_s=0.02)


async def test_fallback_plan_readings_and_a_silent_coordinator(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    async with house(broker, tmp_path) as home:
        coord = Coordinator(broker, "h01")
        key = load_key_file(home.config.key_file)
        ctl = Controller(home.config, key, clock=home.clock)
        tasks = [asyncio.create_task(coord.session.run()), asyncio.create_task(ctl.run())]
        try:
            # no plan yet: self-consumption; the car charges at its rating within the fuse,
            # the battery discharges at its rating to cover it
            await coord.until(
                lambda: bool(coord.telemetry) and coord.telemetry[-1].mode == "fallback"
            )
            await coord.until(lambda: abs(home.battery.values["p_w"] + 5000) < 1)
            assert home.ev.values["charge_current_a"] == pytest.approx(11_000 / 690, abs=0.01)
            assert home.battery.values["revert_s"] == 30  # revert timer set on the device
            t = coord.telemetry[-1]
            assert t.household == "h01" and t.soc is not None and t.faulted == []

            # the first boundary: one signed reading of the interval that ended
            await coord.until(lambda: len(coord.readings) >= 1)
            r = parse_reading(coord.readings[0])
            assert r.meter == "h01/main" and r.seq == 1
            assert r.interval == int(home.clock() // INTERVAL_S) - 1
            key.public_key().verify(r.signature, r.payload())  # raises if forged
            # it carries the interval's mean of the meter's phase voltages (230.1, 229.7, 231.2 V)
            assert r.v_mv == 230_333 and 0.9 * 230_000 < r.v_mv < 1.1 * 230_000

            # a plan: charge the battery at 2 kW, no EV, import at most 5 kW
            now_iv = int(home.clock() // INTERVAL_S)
            steps = [
                PlanStep(interval=now_iv + k, battery_w=2000, ev_w=0, import_max_w=5000)
                for k in range(4)
            ]
            plan = PlanMessage(household="h01", issued=now_iv, steps=steps)
            assert await coord.session.publish(
                household_topic(c, "h01", "plan"), encode(plan), 1, True
            )
            await coord.until(lambda: coord.telemetry[-1].mode == "plan")
            await coord.until(lambda: abs(home.battery.values["p_w"] - 2000) < 1)
            assert home.ev.values["charge_current_a"] == 0
            # the meter sees it at the next polls: load plus the charging battery
            await coord.until(lambda: abs((coord.telemetry[-1].grid_p_w or 0) - LOAD_W - 2000) < 5)

            # readings go on, one per interval, with consecutive sequence numbers (unacknowledged
            # ones are sent again after an interval: duplicates the coordinator settles once)
            def by_seq() -> dict[int, SignedReading]:
                return {x.seq: x for x in map(parse_reading, coord.readings)}

            await coord.until(lambda: 2 in by_seq())
            second = by_seq()[2]
            assert second.interval == r.interval + 1
            assert second.e_import_wh > r.e_import_wh

            # the coordinator goes offline: fallback at once (not at the next interval)
            assert await coord.session.publish(coordinator_topic(c, "status"), b"offline", 1, True)
            t_off = time.monotonic()
            await coord.until(lambda: coord.telemetry[-1].mode == "fallback")
            assert time.monotonic() - t_off < 1.0
            assert ctl.write_errors == 0 and ctl.rejects.total == 0
        finally:
            await stop_tasks(*tasks)


async def test_a_dead_controllers_setpoints_lapse_through_the_device_revert_timer(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    async with house(broker, tmp_path) as home:
        coord = Coordinator(broker, "h01")
        ctl = Controller(home.config, load_key_file(home.config.key_file), clock=home.clock)
        tasks = [asyncio.create_task(coord.session.run()), asyncio.create_task(ctl.run())]
        try:
            await coord.until(lambda: coord.session.connected.is_set())
            now_iv = int(home.clock() // INTERVAL_S)
            steps = [PlanStep(interval=now_iv + k, battery_w=2000) for k in range(4)]
            plan = PlanMessage(household="h01", issued=now_iv, steps=steps)
            assert await coord.session.publish(
                household_topic(c, "h01", "plan"), encode(plan), 1, True
            )
            await coord.until(lambda: home.battery.values["p_set_w"] == 2000)
            # alive, the controller keeps rewriting within the 30 s revert timer
            t0 = home.clock()
            await coord.until(lambda: home.clock() > t0 + 90)
            home.battery.advance(home.clock())
            assert home.battery.values["p_set_w"] == 2000
        finally:
            await stop_tasks(*tasks)
    # the controller is gone: after its revert time the device drops the setpoint by itself
    t_last = home.battery.last_write_s
    assert t_last is not None
    home.battery.advance(t_last + 20)
    assert home.battery.values["p_set_w"] == 2000
    home.battery.advance(t_last + 31)
    assert home.battery.values["p_set_w"] == 0.0 and home.battery.values["p_w"] == 0.0


async def test_home_assistant_discovery_on_the_households_own_broker(
    broker: Broker, tmp_path: Path
) -> None:
    import aiomqtt

    from gridctl.controller.homeassistant import SENSORS, HomeAssistantConfig
    from gridctl.devices.virtual import free_tcp_port
    from gridctl.transport.launcher import running_broker

    port = free_tcp_port()  # Home Assistant's broker: the household's own, on its LAN
    (tmp_path / "ha.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    got: dict[str, dict] = {}
    with running_broker(tmp_path / "ha.conf", port):
        async with house(broker, tmp_path) as home:
            config = home.config.model_copy(
                update={"home_assistant": HomeAssistantConfig(port=port)}
            )
            ctl = Controller(config, load_key_file(config.key_file), clock=home.clock)
            task = asyncio.create_task(ctl.run())
            try:
                async with aiomqtt.Client("127.0.0.1", port) as ha:
                    await ha.subscribe("homeassistant/#")
                    await ha.subscribe("gridctl/h01/#")
                    async with asyncio.timeout(10):
                        async for m in ha.messages:
                            got[str(m.topic)] = (
                                json.loads(m.payload)
                                if str(m.topic).endswith(("config", "state"))
                                else m.payload
                            )  # type: ignore[arg-type]
                            if "gridctl/h01/state" in got and len(
                                [t for t in got if t.endswith("/config")]
                            ) == len(SENSORS):
                                break
            finally:
                await stop_tasks(task)
    configs = {t: c for t, c in got.items() if t.endswith("/config")}
    assert {c["unique_id"] for c in configs.values()} == {f"gridctl_h01_{s.key}" for s in SENSORS}
    power = configs["homeassistant/sensor/gridctl_h01/grid_power/config"]
    assert power["unit_of_measurement"] == "W" and power["device_class"] == "power"
    assert power["state_topic"] == "gridctl/h01/state" and power["device"]["identifiers"] == [
        "gridctl_h01"
    ]
    energy = configs["homeassistant/sensor/gridctl_h01/grid_import/config"]
    assert energy["state_class"] == "total_increasing" and energy["unit_of_measurement"] == "Wh"
    state = got["gridctl/h01/state"]
    assert (
        state["household"] == "h01" and state["grid_p_w"] is not None and state["e_import_wh"] > 0
    )
    assert got["gridctl/h01/availability"] == b"online"


async def test_readings_sent_before_the_coordinator_ever_connected_reach_it_when_it_comes_online(
    broker: Broker, tmp_path: Path
) -> None:
    """The broker keeps nothing for a client it has never seen: the controller resends its
    unacknowledged readings as soon as the coordinator says ``online``, not after resend_s."""
    async with house(broker, tmp_path) as home:
        config = home.config.model_copy(update={"resend_s": 3600.0})  # 12 s real
        ctl = Controller(config, load_key_file(config.key_file), clock=home.clock)
        tasks = [asyncio.create_task(ctl.run())]
        try:
            # the first reading is signed and handed to the broker, with no coordinator about
            await until(lambda: ctl.outbox.pending() >= 1, 10.0)
            await until(lambda: not ctl.outbox.due(home.clock(), config.resend_s), 10.0)
            coord = Coordinator(broker, "h01")
            tasks.append(asyncio.create_task(coord.session.run()))
            await until(coord.session.connected.is_set, 10.0)
            online_at = time.monotonic()
            topic = coordinator_topic(broker.community, "status")
            assert await coord.session.publish(topic, b"online", 1, True)
            await coord.until(lambda: 1 in {parse_reading(p).seq for p in coord.readings}, 5.0)
            assert time.monotonic() - online_at < 5.0
        finally:
            await stop_tasks(*tasks)


async def test_counters_that_cannot_be_signed_skip_the_reading(tmp_path: Path) -> None:
    """A meter whose energy counters read negative, infinite, NaN or beyond 2**63 - 1 Wh
    costs that interval's reading (logged, counted by reason), never the controller loop."""
    from collections import Counter

    from gridctl.devices.codec import RegType, encode
    from gridctl.devices.virtual import free_tcp_port

    meter = ProfileVirtual(load_profile("eastron-sdm630"), clock=lambda: 0.0)  # counters frozen
    address = meter.profile.register("e_import_wh").address
    generate_key_file(tmp_path / "h01.key")
    now_s = [1000 * INTERVAL_S + 1.0]
    async with serving(meter) as port:
        config = ControllerConfig(
            community="oak", household="h01", key_file=tmp_path / "h01.key",
            broker=BrokerConfig(port=free_tcp_port(), password="unused"),  # never connected
            state_db=tmp_path / "h01.sqlite",
            devices=[DeviceConfig(name="meter", role="meter", profile="eastron-sdm630", port=port)],
        )  # fmt: skip
        c = Controller(config, load_key_file(tmp_path / "h01.key"), clock=lambda: now_s[0])
        try:
            await c.step()  # the first poll only notes the interval
            for kwh in (-1.0, float("inf"), float("-inf"), 3e38, 2e16, float("nan"), 1234.5):
                meter.put("input", address, encode(kwh, RegType.F32))
                now_s[0] += INTERVAL_S
                await c.step()
            # 3e38 and 2e16 kWh are beyond 2**64 Wh; a NaN register reads as unknown
            assert c.skipped_readings == Counter(negative=1, not_finite=2, too_large=2, unknown=1)
            assert [m for m, _iv, _msg in c.outbox.due(now_s[0], 0)] == ["h01/main"]
        finally:
            c.meter.reader.client.close()
            c.outbox.close()


async def test_a_plan_dated_ahead_is_refused_and_cannot_shadow_the_real_one(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    async with house(broker, tmp_path) as home:
        ctl = Controller(home.config, load_key_file(home.config.key_file), clock=home.clock)
        coord = Coordinator(broker, "h01")
        tasks = [asyncio.create_task(ctl.run()), asyncio.create_task(coord.session.run())]
        try:
            await until(lambda: ctl.session.connected.is_set() and coord.session.connected.is_set())
            now_iv = int(home.clock() // INTERVAL_S)
            topic = household_topic(c, "h01", "plan")
            for issued, battery_w in ((now_iv + 10_000, -3000.0), (now_iv, 1500.0)):
                steps = [PlanStep(interval=issued + k, battery_w=battery_w) for k in range(4)]
                plan = PlanMessage(household="h01", issued=issued, steps=steps)
                assert await coord.session.publish(topic, encode(plan), 1, True)
            await until(lambda: ctl.plan is not None and ctl.plan.issued == now_iv)
            assert ctl.rejects.by_reason["too_new"] == 1
            await until(lambda: abs(home.battery.values["p_w"] - 1500) < 1)
            assert ctl.step_errors == 0
        finally:
            await stop_tasks(*tasks)


async def test_no_resends_while_the_coordinator_is_offline_and_all_when_it_is_back(
    broker: Broker, tmp_path: Path
) -> None:
    """Offline, the coordinator's broker session queues each reading once; resending would only
    grow that queue. Back online, every unacknowledged reading goes again."""
    c = broker.community
    async with house(broker, tmp_path) as home:
        config = home.config.model_copy(update={"resend_s": 30.0})  # 0.1 s real
        ctl = Controller(config, load_key_file(config.key_file), clock=home.clock)
        coord = Coordinator(broker, "h01")
        tasks = [asyncio.create_task(coord.session.run())]
        try:
            await until(coord.session.connected.is_set)
            status = coordinator_topic(c, "status")
            assert await coord.session.publish(status, b"offline", 1, True)
            tasks.append(asyncio.create_task(ctl.run()))
            await until(lambda: ctl.coordinator_online is False)

            def seqs() -> list[int]:
                return [parse_reading(p).seq for p in coord.readings]

            await coord.until(lambda: len(set(seqs())) >= 2, 15.0)
            await asyncio.sleep(0.5)  # five resend periods
            assert len(seqs()) == len(set(seqs())), seqs()  # each reading sent once
            sent = len(seqs())
            assert await coord.session.publish(status, b"online", 1, True)
            await coord.until(lambda: len(seqs()) >= sent + ctl.outbox.pending())
            assert set(seqs()[sent:]) >= set(seqs()[:sent])  # the unacknowledged, again
        finally:
            await stop_tasks(*tasks)
