"""The household controller: poll → telemetry → apply plan or fallback → signed readings.

Every ``poll_s`` the controller reads all devices, decides its mode, writes setpoints bounded
by local limits (minimum of device rating, main fuse, grid-operator envelope and plan),
publishes telemetry, and at each interval boundary signs the main meter's counters, with the
interval's mean voltage, into the outbox, which it (re)sends until the coordinator acknowledges
them.

Voltage: each poll's sample is the mean of the meter's known phase-to-neutral voltages; an
interval's voltage is the mean of the samples taken in it, an interval being (start, end] for
samples: a poll at the instant an interval ends closes it, as the counters read then do (a
simulated clock that stands still at the boundary shows the ended interval's state there).
Unknown without a voltage role or a valid sample, never zero.

Mode: ``plan`` while the coordinator is not known to be offline and its plan is fresh (made in
this interval, or in the previous one and we are less than ``plan_grace_s`` into this one);
otherwise ``fallback``: self-consumption, the EV at its rating, nothing beyond the standing
envelope. Setpoints are rewritten every ``revert_s / 3`` so the devices' revert timers (set to
``revert_s``) only lapse when the controller is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.controller import homeassistant
from gridctl.controller.config import ControllerConfig, DeviceConfig
from gridctl.controller.dimming import DimmingLog, dimmed
from gridctl.controller.limits import (
    EV_MIN_A,
    battery_setpoint_w,
    envelope_w,
    ev_current_a,
    pv_limit_w,
)
from gridctl.controller.outbox import Outbox
from gridctl.controller.roots import RootStore
from gridctl.core import INTERVAL_S, V_NOMINAL_V, interval_at, raise_if_cancelled
from gridctl.devices.client import ModbusClient, ModbusError
from gridctl.devices.codec import RegType
from gridctl.devices.profile import Profile, ProfileError, load_profile
from gridctl.devices.reader import Poll, ProfileDevice
from gridctl.protocol import (
    PlanMessage,
    PlanStep,
    RejectCounter,
    RootMessage,
    Telemetry,
    coordinator_topic,
    encode,
    household_topic,
)
from gridctl.public.dimming import ev_floor_w
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.signing import I64_MAX, V_MV_MAX
from gridctl.transport.session import Session

log = logging.getLogger(__name__)

Clock = Callable[[], float]
PHASE_V = ("v_l1_v", "v_l2_v", "v_l3_v")
"""Roles of a meter's phase-to-neutral voltages."""
SETPOINTS = {"battery": ("p_set_w",), "ev": ("charge_current_a", "charge_enable"),
             "pv": ("p_limit_w", "p_limit_pct", "p_limit_enable")}  # fmt: skip


@dataclass
class Device:
    """A device the controller drives, with its last poll and last writes (value, clock s)."""

    config: DeviceConfig
    profile: Profile
    reader: ProfileDevice
    poll: Poll | None = None
    written: dict[str, tuple[float, float]] = field(default_factory=dict)

    def value(self, role: str) -> float | None:
        """A role's last polled value (role units), None when unknown or not in the profile."""
        if self.poll is None or role not in self.poll.values:
            return None
        v = self.poll.values[role].value
        return float(v) if isinstance(v, int | float) else None

    def can_write(self, role: str) -> bool:
        """True when the profile has ``role`` as a writable register."""
        return any(r.role == role and r.access != "r" for r in self.profile.registers)


@dataclass
class Decision:
    """What the controller does this poll: mode, setpoints by (device, role), telemetry."""

    mode: str
    step: PlanStep | None
    writes: dict[tuple[str, str], float]
    dim_cap_w: float | None = None
    """§14a: the cap on the controllable devices in force, W (None: not dimmed)."""


def measured(
    household: str,
    now_s: float,
    mode: str,
    values: Mapping[str, Mapping[str, float | None]],
    plan_interval: int | None = None,
    faulted: Sequence[str] = (),
) -> Telemetry:
    """A household's telemetry at ``now_s`` (epoch s) from its devices' polled values by role
    ("meter", "pv", "battery", "ev"; each with ``p_w``, W, load convention, and the battery's
    ``soc``); a role without a device is absent and reported as None."""

    def value(role: str, name: str) -> float | None:
        return values.get(role, {}).get(name)

    pv, ev = value("pv", "p_w"), value("ev", "p_w")
    return Telemetry(
        household=household, t=datetime.fromtimestamp(now_s, UTC), mode=mode,  # type: ignore[arg-type]
        grid_p_w=value("meter", "p_w"), pv_p_w=min(pv, 0.0) if pv is not None else None,
        battery_p_w=value("battery", "p_w"), ev_p_w=max(ev, 0.0) if ev is not None else None,
        soc=value("battery", "soc"), plan_interval=plan_interval, faulted=list(faulted),
    )  # fmt: skip


class Controller:
    """One household's controller. clock: epoch seconds (the simulator passes a faster one)."""

    def __init__(self, config: ControllerConfig, key: Ed25519PrivateKey, clock: Clock = time.time):
        self.cfg = config
        self.clock = clock
        h, c = config.household, config.community
        self.rejects = RejectCounter()
        self.plan: PlanMessage | None = None
        self.coordinator_online: bool | None = None
        self.mode = "starting"
        self.outbox = Outbox(config.state_db)
        root_key = config.coordinator_key
        self.roots = RootStore(self.outbox.db, bytes.fromhex(root_key) if root_key else None)
        if root_key is None:
            log.warning("no coordinator_key in the config: interval roots are not kept")
        self.signer = self.outbox.signer(main_meter(h), key)
        self.last_interval: int | None = None
        self._v_samples: dict[int, tuple[float, int]] = {}
        """Per interval: (sum of the main meter's voltage samples, V; how many)."""
        self.write_errors = 0
        self.skipped_readings: Counter[str] = Counter()
        """Interval readings not signed, by reason (see ``counter_problem``)."""
        self.step_errors = 0
        self.applied: tuple[int, int] | None = None
        """(plan issued, interval) of the step the last completed poll applied (None: fallback)."""
        self.stepped_at: float | None = None
        """Clock time of the last completed poll, s."""
        self.cycles_begun = self.cycles_done = 0
        """Poll cycles begun and ended (completed or failed)."""
        self.telemetry_sent: Telemetry | None = None
        """The last telemetry handed to the broker."""
        self._wake = asyncio.Event()
        self.plan_topic = household_topic(c, h, "plan")
        broker = config.broker_settings()
        self.session = Session(
            broker, client_id=broker.username or h,
            subscriptions=[self.plan_topic, coordinator_topic(c, "status"),
                           coordinator_topic(c, "root")],
            handler=self.on_message, status_topic=household_topic(c, h, "status"),
        )  # fmt: skip
        self.ha: Session | None = None
        self._ha_announced = 0
        ha = config.home_assistant_settings()
        if ha is not None:
            self.ha = Session(ha, client_id=f"gridctl-{h}", subscriptions=[], handler=_ignore,
                              status_topic=homeassistant.availability_topic(h))  # fmt: skip
        self.devices: list[Device] = []
        for d in config.devices:
            profile = load_profile(d.profile)
            unit = d.unit if d.unit is not None else profile.transport.unit
            client = ModbusClient(d.host, d.port, unit, timeout_s=1.0, retries=1)
            self.devices.append(Device(d, profile, ProfileDevice(client, profile)))
        self.meter = next(d for d in self.devices if d.config.role == "meter")
        self.dim_device = next(
            (d for d in self.devices if d.config.name == config.dimming.device), None
        )
        if self.dim_device is not None:
            self.dim_device.profile.register("dim_request")  # ProfileError without it
        self.dimming = DimmingLog(self.outbox.db, h)
        self.dim_cap_w: float | None = None
        """§14a: the cap on the controllable devices at the last poll, W (None: not dimmed)."""

    async def run(self) -> None:
        """Run until cancelled: the MQTT session and the poll loop."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.session.run())
                if self.ha is not None:
                    tg.create_task(self.ha.run())
                tg.create_task(self._loop())
        finally:
            self.close()

    def close(self) -> None:
        """Close the device connections and the outbox (``run`` does on its way out)."""
        for d in self.devices:
            d.reader.client.close()
        self.outbox.close()

    async def _loop(self) -> None:
        while True:
            raise_if_cancelled()
            started = time.monotonic()
            try:
                await self.step()
            except Exception:
                # one bad poll, answer or write must not stop the household: the devices'
                # revert timers hold the safe state, the next poll tries again
                self.step_errors += 1
                log.exception("poll cycle failed household=%s (%d so far); going on",
                              self.cfg.household, self.step_errors)  # fmt: skip
            wait_s = max(self.cfg.poll_s - (time.monotonic() - started), 0.0)
            # a new plan (or the simulator's clock) wakes the loop early
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            self._wake.clear()

    def wake(self) -> None:
        """Poll and act now rather than at the next ``poll_s``."""
        self._wake.set()

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Take a plan (newest wins; its ack prunes the outbox), the coordinator's status, or
        an interval root (kept once checked; it acknowledges the readings up to it)."""
        msg = self.rejects.decode(topic, payload)
        if msg is None:
            return
        if msg.kind == "status" and msg.household is None:
            online = msg.message == "online"
            if online and self.coordinator_online is not True:
                # a coordinator that was away (or never connected, so the broker kept nothing
                # for it) gets every unacknowledged reading now, not after resend_s
                self.outbox.resend_all()
                self.wake()
            self.coordinator_online = online
        elif msg.kind == "root" and isinstance(msg.message, RootMessage):
            if self.roots.add(msg.message) is None:
                # a settled interval can no longer use a reading: the root acknowledges them
                # (plans do too, but a community without a feeder publishes no plans)
                self.outbox.ack_through(msg.message.interval)
        elif msg.kind == "plan" and isinstance(msg.message, PlanMessage):
            plan = msg.message
            if plan.issued > interval_at(self.clock()) + 1:
                # newest wins: a plan dated ahead would shadow every real one until then
                self.rejects.refuse("too_new", topic, f"plan issued in interval {plan.issued}")
                return
            if self.plan is None or plan.issued >= self.plan.issued:
                self.plan = plan
                self.wake()
            if plan.readings_through is not None:
                self.outbox.ack_through(plan.readings_through)

    def fresh_step(self, now_s: float) -> PlanStep | None:
        """The plan step for now if the plan counts as fresh and the coordinator is not offline."""
        plan = self.plan
        if plan is None or self.coordinator_online is False:
            return None
        interval = interval_at(now_s)
        into_s = now_s - interval * INTERVAL_S
        fresh = plan.issued >= interval or (
            plan.issued == interval - 1 and into_s < self.cfg.plan_grace_s
        )
        return plan.step(interval) if fresh else None

    def decide(self, now_s: float) -> Decision:
        """Mode and setpoints from the last polls (pure: no I/O)."""
        step = self.fresh_step(now_s)
        imp_w, exp_w = envelope_w(self.cfg.limits, step)
        # the plan's own envelope is kept by curtailing PV; the battery follows the plan
        # within the standing limits (fuse, grid operator) and its rating
        bat_imp_w, bat_exp_w = envelope_w(self.cfg.limits, None)
        grid_w = self.meter.value("p_w")
        others = {d.config.name: self._other_w(d, grid_w) for d in self.devices}
        wanted = {d.config.name: w for d in self.devices
                  if (w := self._wanted(d, step, others[d.config.name])) is not None}  # fmt: skip
        cap_w = self.dim_cap_w_of(step)
        floors = {}
        if cap_w is not None:
            floors = {d.config.name: self._ev_floor_w(d) for d in self.devices
                      if d.config.role == "ev"}  # fmt: skip
            wanted = dimmed(wanted, floors, cap_w)
        writes: dict[tuple[str, str], float] = {}
        for d in self.devices:
            role, name = d.config.role, d.config.name
            other_w = others[name]
            rated_w = d.config.rated_w or math.inf
            if role == "battery" and d.can_write("p_set_w"):
                writes[(name, "p_set_w")] = battery_setpoint_w(
                    wanted[name], rated_w, other_w, bat_imp_w, bat_exp_w
                )
            elif role == "ev" and d.can_write("charge_current_a"):
                max_a = self._ev_max_a(d)
                amps = ev_current_a(wanted[name], max_a, other_w, imp_w, d.config.phases)
                if name in floors:  # §14a: never below the guarantee, whatever the envelope
                    amps = max(amps, self._floor_a(d, floors[name], other_w))
                writes[(name, "charge_current_a")] = amps
                if d.can_write("charge_enable"):
                    writes[(name, "charge_enable")] = 1.0 if amps > 0 else 0.0
            elif role == "pv":
                limit_w = min(pv_limit_w(other_w, exp_w), rated_w)
                if d.can_write("p_limit_w"):
                    writes[(name, "p_limit_w")] = min(limit_w, 1e9)
                elif d.can_write("p_limit_pct") and d.config.rated_w:
                    writes[(name, "p_limit_pct")] = min(limit_w / d.config.rated_w, 1.0)
        return Decision("plan" if step else "fallback", step, writes, cap_w)

    @staticmethod
    def _other_w(d: Device, grid_w: float | None) -> float | None:
        """The household's grid power without ``d``, W (None: unknown)."""
        own_w = d.value("p_w")
        return None if grid_w is None or own_w is None else grid_w - own_w

    def _wanted(self, d: Device, step: PlanStep | None, other_w: float | None) -> float | None:
        """What a battery or charger is asked for before the local limits, W (None: neither)."""
        if d.config.role == "battery" and d.can_write("p_set_w"):
            return step.battery_w if step else -(other_w or 0.0)
        if d.config.role == "ev" and d.can_write("charge_current_a"):
            return step.ev_w if step else d.config.rated_w or math.inf
        return None

    def _ev_max_a(self, d: Device) -> float:
        """The station's current limit now (its own, else its rating), A per phase."""
        max_a = d.value("max_current_a")
        if max_a is None:
            max_a = (d.config.rated_w or math.inf) / (d.config.phases * V_NOMINAL_V)
        return max_a

    def _ev_floor_w(self, d: Device) -> float:
        """A charger's §14a minimum, W: min(4.2 kW, its limit) while a car is connected (the
        car takes what it needs), else 0."""
        status, p_w = d.poll.values.get("status") if d.poll else None, d.value("p_w")
        connected = (status is not None and status.value in ("connected", "charging")) or (
            p_w is not None and p_w > 0
        )
        volts = d.config.phases * V_NOMINAL_V
        max_w = self._ev_max_a(d) * volts if connected else 0.0
        return float(ev_floor_w(max_w, math.inf, EV_MIN_A * volts, 1.0))

    def _floor_a(self, d: Device, floor_w: float, other_w: float | None) -> float:
        """The charging current that gives ``floor_w`` (W), per phase, within the main fuse
        (0 where the rest of the household leaves less than the 6 A minimum under it)."""
        volts = d.config.phases * V_NOMINAL_V
        reg = d.profile.register("charge_current_a")
        # rounded up to what the register holds, so the device is told no less than the floor
        if reg.type in (RegType.F32, RegType.F64):
            amps = floor_w / volts * (1 + 1e-6)
        else:
            amps = math.ceil(floor_w / volts / reg.scale - 1e-9) * reg.scale
        fuse_w = self.cfg.limits.fuse_w
        if fuse_w is not None and other_w is not None:
            amps = min(amps, (fuse_w - other_w) / volts)
        return amps if amps >= EV_MIN_A else 0.0

    def dim_cap_w_of(self, step: PlanStep | None) -> float | None:
        """The §14a cap on the controllable devices in force, W (None: not dimmed): the plan
        step's, or the relay's (dimmed to the guarantee alone; an input that cannot be read
        counts as dimmed, the side the guarantee keeps safe for the household)."""
        dim = self.cfg.dimming
        if dim.source == "coordinator":
            return None if step is None else step.controllable_max_w
        assert self.dim_device is not None  # the config names it for source input
        v = self.dim_device.value("dim_request")
        if v is None:
            return 0.0
        return 0.0 if (v >= 0.5) == (dim.active == "closed") else None

    async def step(self) -> None:
        """One poll cycle."""
        self.cycles_begun += 1
        try:
            await self._cycle()
        finally:
            self.cycles_done += 1

    async def _cycle(self) -> None:
        """Poll, sign the readings at a boundary, decide, write and publish (``step``)."""
        now_s = self.clock()  # the time of these measurements
        polls = await asyncio.gather(*(d.reader.poll() for d in self.devices))
        for d, p in zip(self.devices, polls, strict=True):
            d.poll = p
        self._sample_voltage(now_s)
        self._boundary(interval_at(now_s))
        decision = self.decide(now_s)
        if decision.mode != self.mode:
            log.info(
                "mode household=%s from=%s to=%s", self.cfg.household, self.mode, decision.mode
            )
            self.mode = decision.mode
        self.dimming.note(now_s, decision.dim_cap_w, self.cfg.dimming.source)
        self.dim_cap_w = decision.dim_cap_w
        await self._write(decision, now_s)
        await self._publish(decision, now_s)
        plan = self.plan
        self.applied = (plan.issued, decision.step.interval) if plan and decision.step else None
        self.stepped_at = now_s

    def _sample_voltage(self, now_s: float) -> None:
        """Add the main meter's phase-mean voltage now (if known) to its interval's samples."""
        v = mean_phase_v(self.meter)
        if v is not None:
            k = math.ceil(now_s / INTERVAL_S) - 1  # the interval whose (start, end] holds now_s
            total, n = self._v_samples.get(k, (0.0, 0))
            self._v_samples[k] = (total + v, n + 1)

    def _boundary(self, interval: int) -> None:
        """At the first poll of a new interval, sign the meter's counters and mean voltage for
        the one ended (counters that cannot be signed skip the reading, counted in
        ``skipped_readings``)."""
        if self.last_interval is not None and interval > self.last_interval:
            imp, exp = self.meter.value("e_import_wh"), self.meter.value("e_export_wh")
            reason = counter_problem(imp) or counter_problem(exp)
            if reason is None:
                v_mv = voltage_mv(self._v_samples.get(interval - 1))
                self.outbox.add(self.signer, interval - 1, int(imp), int(exp), v_mv)  # type: ignore[arg-type]
            else:
                self.skipped_readings[reason] += 1
                log.warning("no reading household=%s interval=%d reason=%s import=%s export=%s",
                            self.cfg.household, interval - 1, reason, imp, exp)  # fmt: skip
            self._v_samples = {k: s for k, s in self._v_samples.items() if k >= interval}
        self.last_interval = interval

    async def _write(self, decision: Decision, now_s: float) -> None:
        refresh_s = self.cfg.revert_s / 3
        by_name = {d.config.name: d for d in self.devices}
        for d in self.devices:
            if d.can_write("revert_s") and "revert_s" not in d.written:
                decision.writes[(d.config.name, "revert_s")] = float(self.cfg.revert_s)
        for (name, role), wanted in decision.writes.items():
            d = by_name[name]
            reg = d.profile.register(role)  # the device's own bounds come last
            value = min(max(wanted, reg.min if reg.min is not None else -math.inf),
                        reg.max if reg.max is not None else math.inf)  # fmt: skip
            last = d.written.get(role)
            if last and abs(last[0] - value) < 1.0 and now_s - last[1] < refresh_s:
                continue
            try:
                await d.reader.write(role, value)
            except (ModbusError, ProfileError) as e:
                self.write_errors += 1
                log.warning(
                    "write failed device=%s role=%s value=%.1f error=%s", name, role, value, e
                )
                continue
            d.written[role] = (value, now_s)

    async def _publish(self, decision: Decision, now_s: float) -> None:
        values = {
            d.config.role: {"p_w": d.value("p_w"), "soc": d.value("soc")} for d in self.devices
        }
        values["meter"] = {"p_w": self.meter.value("p_w")}
        telemetry = measured(
            self.cfg.household, now_s, decision.mode, values,
            decision.step.interval if decision.step else None,
            [d.config.name for d in self.devices if d.reader.faulted],
        )  # fmt: skip
        c, h = self.cfg.community, self.cfg.household
        if await self.session.publish(household_topic(c, h, "telemetry"), encode(telemetry), 0,
                                      True):  # fmt: skip
            self.telemetry_sent = telemetry
        if self.ha is not None:
            await self._home_assistant(telemetry)
        # while the coordinator is away its broker session queues what we send: send each
        # reading once, resend nothing until it is back (then everything unacknowledged)
        resend_s = math.inf if self.coordinator_online is False else self.cfg.resend_s
        for meter, interval, message in self.outbox.due(now_s, resend_s):
            if not await self.session.publish(household_topic(c, h, "reading"), message, 1):
                break
            self.outbox.mark_sent(meter, interval, now_s)

    async def _home_assistant(self, telemetry: Telemetry) -> None:
        """Announce the sensors (again after each reconnect), then the state."""
        ha, h = self.ha, self.cfg.household
        assert ha is not None and self.cfg.home_assistant is not None
        if not ha.connected.is_set():
            return
        if self._ha_announced != ha.connects:
            for topic, payload in homeassistant.discovery(self.cfg.home_assistant.prefix, h):
                if not await ha.publish(topic, payload, 1, True):
                    return
            self._ha_announced = ha.connects
        imp, exp = self.meter.value("e_import_wh"), self.meter.value("e_export_wh")
        await ha.publish(
            homeassistant.state_topic(h), homeassistant.state(telemetry, imp, exp), 0, True
        )


def mean_phase_v(meter: Device) -> float | None:
    """Mean of the meter's known phase-to-neutral voltages from its last poll, V; a phase that
    is unknown, not finite or not above 0 V (not connected) is left out; None when none is left."""
    vs = [v for v in map(meter.value, PHASE_V) if v is not None and math.isfinite(v) and v > 0]
    return sum(vs) / len(vs) if vs else None


def voltage_mv(samples: tuple[float, int] | None) -> int | None:
    """An interval's mean voltage in whole mV from its (sum of samples, V; count), None when it
    has no samples or the mean lies outside what a reading holds (0..V_MV_MAX)."""
    if not samples:
        return None
    v_mv = round(samples[0] / samples[1] * 1000)
    return v_mv if 0 <= v_mv <= V_MV_MAX else None


def counter_problem(e_wh: float | None) -> str | None:
    """Why a meter's energy counter (Wh) cannot be signed, None if it can: ``unknown``,
    ``not_finite``, ``negative`` or ``too_large`` (beyond I64_MAX, what a reading holds)."""
    if e_wh is None:
        return "unknown"
    if not math.isfinite(e_wh):
        return "not_finite"
    if e_wh < 0:
        return "negative"
    return "too_large" if e_wh > I64_MAX else None


async def _ignore(topic: str, payload: bytes) -> None:
    """Nothing is subscribed on the Home Assistant broker."""
