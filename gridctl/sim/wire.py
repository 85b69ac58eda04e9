"""Wire-mode simulation: every household a real controller, over a real broker and real Modbus.

``simulate_wire`` starts the broker (Mosquitto, or the embedded one where Mosquitto is not
installed; ``launcher.choose_broker``) with a generated community configuration, serves each
simulated device as its own Modbus TCP server (a device profile per kind), runs one
``Controller`` per household and the ``Coordinator``, and steps them all on one simulated
clock. Per interval: the world shows its state on the devices' registers, the clock moves to
the interval's start, the controllers sign the meters' counters and report telemetry, the
coordinator settles the interval that ended and plans this one, the controllers write the
plan's setpoints to the devices, and the world runs the interval with what the devices were
told (``World.step``, the same physics as the in-process run). The interval's settlement comes
from the coordinator's ledger, through signed readings that crossed the broker. A scenario's
scripted proposals go to the coordinator's governance, and its votes, signed with each member's
key, cross the broker on each voter's own vote topic (``gridctl.sim.governance``). A
household dimmed by a relay (§14a) gets a WAGO coupler whose input the world sets during its
window; one dimmed by the coordinator learns it from its plan.
A scenario with an ``openadr`` VTN has the coordinator run its VEN, on the simulated clock: it
polls the VTN at the start of each interval before the interval is planned
(``gridctl.sim.openadr``).

The coordinator's planner is the community's own (``gridctl.coordinator.assembly``), as in the
in-process run and in production: it knows the world only through the telemetry the controllers
read from the devices. Comparing the two runs isolates the wire path: controllers, broker,
Modbus, signed readings and settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridctl.controller.config import ControllerConfig, DeviceConfig, DimmingConfig, Limits
from gridctl.controller.loop import Controller
from gridctl.coordinator.assembly import DispatchMode, charter
from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S, V_NOMINAL_V, GridctlError, ev_phases
from gridctl.devices.profile import load_profile
from gridctl.devices.virtual import free_tcp_port, serving
from gridctl.devices.virtual_profile import ProfileVirtual
from gridctl.grid.record import GRID_FILE
from gridctl.protocol import encode, household_topic
from gridctl.settlement.enrol import (
    TRANSFORMER_METER,
    enrol_simulated,
    main_meter,
    simulated_coordinator_key,
)
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.signing import public_bytes
from gridctl.sim.clock import SimClock
from gridctl.sim.devices import PROFILES, Devices, meter_voltages_mv, roles, show, show_powers
from gridctl.sim.engine import (
    Progress,
    SettledTotals,
    Setup,
    SimResult,
    prepare,
    sim_result,
)
from gridctl.sim.governance import Script
from gridctl.sim.grid_record import record_run
from gridctl.sim.openadr import poll_at
from gridctl.sim.scenario import Scenario
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import BrokerKind, mqtt_version, running_broker
from gridctl.transport.session import BrokerConfig, BrokerSettings, Session

log = logging.getLogger(__name__)

FEEDER_USER = "feeder"
"""Broker user of the transformer meter's reader."""
RELAY_PROFILE = "wago-750-352"
"""The I/O coupler whose input carries a household's §14a relay (a ``dimming`` window with
source ``input``)."""
WAIT_S = 60.0
"""Longest real time any one lockstep wait may take before the run is declared stuck."""


class WireError(GridctlError):
    """The wire-mode simulation cannot run or got stuck."""


@dataclass
class Home:
    """One simulated household on the wire: its devices (by role) and its controller."""

    index: int
    id: str
    devices: dict[str, ProfileVirtual]
    controller: Controller


async def _until(what: Callable[[], bool], doing: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not what():
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise WireError(f"wire simulation stuck {WAIT_S:.0f} s while {doing}") from None


class _Run:
    """One wire-mode run (see the module doc)."""

    def __init__(self, scn: Scenario, setup: Setup, clock: SimClock, homes: list[Home],
                 coordinator: Coordinator, feeder: Session, signers: dict,
                 script: Script | None):  # fmt: skip
        self.scn, self.setup, self.clock, self.homes = scn, setup, clock, homes
        self.coordinator, self.feeder, self.signers = coordinator, feeder, signers
        self.script = script
        self.world = setup.world

    def show_state(self, t: int) -> None:
        """Put the world's state at the start of interval t on the devices' registers, and
        each relay's dimming request on its input."""
        show(self.setup.devices, self.scn.households, self.world, self.setup.meters, t)
        relays = self.scn.relays_on(min(t, self.scn.intervals - 1))
        for h in self.homes:
            if "io" in h.devices:
                h.devices["io"].set_values(dim_request=int(relays[h.index]))

    def setpoints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(battery W, EV W, PV limit W) as the controllers left them on the devices, and
        which households their controllers have dimmed, (H,) bool."""
        n = len(self.homes)
        bat, ev, pv = np.zeros(n), np.zeros(n), np.full(n, np.inf)
        dimmed = np.array([h.controller.dim_cap_w is not None for h in self.homes])
        for h in self.homes:
            d = h.devices
            if "battery" in d:
                bat[h.index] = float(d["battery"].values["p_set_w"])
            if "ev" in d:
                phases = ev_phases(self.scn.households[h.index].ev.p_max_w)  # type: ignore[union-attr]
                # back to whole watts, the resolution of the plan (the register holds amps)
                ev[h.index] = round(
                    float(d["ev"].values["charge_current_a"]) * phases * V_NOMINAL_V
                )
            if "pv" in d:
                pv[h.index] = float(d["pv"].values["p_limit_w"])
        return bat, ev, pv, dimmed

    async def boundary(self, t: int, plan: bool = True) -> None:
        """Move to the start of interval t: show the state, read and settle what ended, and
        (with ``plan``) have interval t planned."""
        iv = self.scn.first_interval + t
        c = self.coordinator
        # no poll under way and the coordinator holds each controller's last telemetry: sent
        # QoS 0 and dated by the clock, it would otherwise arrive after the clock moved on and
        # be refused as too old
        await _until(lambda: all(h.controller.cycles_begun == h.controller.cycles_done
                                 and c.telemetry.get(h.id) == h.controller.telemetry_sent
                                 for h in self.homes),
                     f"the controllers' telemetry before interval {iv}")  # fmt: skip
        self.show_state(t)
        self.clock.t_s = iv * INTERVAL_S
        for h in self.homes:
            h.controller.wake()
        if t > 0:
            counters = self.setup.meters.trafo_counters_wh()
            volts = meter_voltages_mv(self.world, self.setup.meters)
            assert volts is not None  # the world has run interval t - 1
            trafo = self.signers[TRANSFORMER_METER].sign(iv - 1, *counters, volts[1])
            topic = household_topic(self.coordinator.community, FEEDER_USER, "reading")
            payload = json.dumps(trafo.to_message()).encode()
            if not await self.feeder.publish(topic, payload):
                raise WireError("the transformer meter's reading could not be published")
        start = self.clock.t_s
        await _until(
            lambda: all((h.controller.stepped_at or -1) >= start for h in self.homes),
            f"controllers polled interval {iv}",
        )
        if t > 0:
            everyone = set(c.meters)
            await _until(lambda: c.inbox.meters_in(iv - 1) >= everyone, f"readings of {iv - 1}")
        await _until(
            lambda: all(h.id in c.telemetry and c.telemetry[h.id].t.timestamp() >= start
                        for h in self.homes),
            f"telemetry of {iv}",
        )  # fmt: skip
        if plan:
            if c.openadr is not None:  # the VTN heard at the interval's start, as planned
                await _until(lambda: c.ven is not None, "the VEN starting")
                assert c.ven is not None
                await poll_at(c.ven, start)
            await c.tick()
        else:
            await c.settle_due(self.clock(), iv)

    async def govern(self, iv: int) -> None:
        """Submit the proposals scripted for interval ``iv`` and have each voter's controller
        connection send the votes scripted for it, one after another, each kept by the
        coordinator before the next (so it records them in the order the in-process run does)."""
        c, gov = self.coordinator, self.coordinator.governance
        if self.script is None or gov is None:
            return
        self.script.propose_due(gov, iv)
        home = {h.id: h for h in self.homes}
        for voter, vote in self.script.votes_due(iv):
            topic = household_topic(c.community, voter, "vote")
            if not await home[voter].controller.session.publish(topic, encode(vote)):
                raise WireError(f"the vote of {voter} could not be published")
            digest = vote.digest()
            await _until(lambda d=digest: any(r.vote.digest() == d
                                              for r in c.inbox.votes_through(iv)),
                         f"vote of {voter} in {iv}")  # fmt: skip

    async def interval(self, t: int) -> None:
        """Run interval t: plans applied on the devices, scripted governance, then the world's
        physics."""
        await self.boundary(t)
        iv = self.scn.first_interval + t
        await self.govern(iv)
        if self.coordinator.planner is not None:
            await _until(lambda: all(h.controller.applied == (iv, iv) for h in self.homes),
                         f"plans of {iv} applied")  # fmt: skip
        await self.react(t)
        bat, ev, pv, dimmed = self.setpoints()
        self.setup.step(t, bat, ev, dimmed=dimmed, pv_limit_w=pv)

    async def react(self, t: int) -> None:
        """The controllers' next poll as interval t begins: the devices show the interval's
        load and PV at the setpoints just written, and each controller sets them again from that
        (as its poll loop does within seconds of a change; without it the world, stepping whole
        intervals, ran each interval on PV limits drawn from the last one's load: 7 % over a
        feeder export limit on stress-summer). The clock stays at the interval's start, so the
        meter's voltage then (the last interval's, as shown) counts for the interval ended, whose
        reading is signed already, not for this one."""
        bat, ev, pv, _ = self.setpoints()
        shown = self.world.preview(t, bat, ev, pv)
        show_powers(self.setup.devices, self.scn.households, self.world, self.setup.meters, t,
                    shown)  # fmt: skip
        # a cycle that began before the devices showed this must not count
        began = {h.id: h.controller.cycles_begun for h in self.homes}
        for h in self.homes:
            h.controller.wake()
        await _until(lambda: all(h.controller.cycles_done > began[h.id] for h in self.homes),
                     f"controllers reacting in interval {self.scn.first_interval + t}")  # fmt: skip


def _homes(scn: Scenario, setup: Setup, clock: SimClock, signers: dict, creds: dict[str, str],
           broker: BrokerSettings, tmp: Path, ports: dict[tuple[str, str], int],
           devices: Devices, community: str) -> list[Home]:  # fmt: skip
    homes = []
    for k, spec in enumerate(scn.households):
        h = spec.id
        cfgs = []
        for role in roles(spec):
            rated = {
                "battery": spec.battery.p_max_w if spec.battery else None,
                "ev": spec.ev.p_max_w if spec.ev else None,
                "pv": spec.pv.peak_w if spec.pv else None,
            }.get(role)
            phases = ev_phases(spec.ev.p_max_w) if role == "ev" and spec.ev else 3
            cfgs.append(DeviceConfig(name=role, role=role, profile=PROFILES[role], phases=phases,
                                     port=ports[(h, role)], rated_w=rated))  # fmt: skip
        dimming = DimmingConfig()
        if (h, "io") in devices:  # its §14a signal comes from a relay on this input
            cfgs.append(DeviceConfig(name="io", role="io", profile=RELAY_PROFILE,
                                     port=ports[(h, "io")]))  # fmt: skip
            dimming = DimmingConfig(source="input", device="io")
        conn_w = float(setup.community.connection_w[k])
        config = ControllerConfig(
            community=community, household=h,
            broker=BrokerConfig(port=broker.port, password=creds[h],
                                mqtt_version=broker.mqtt_version),
            key_file=tmp / f"{h}.key", state_db=tmp / f"{h}.sqlite",
            coordinator_key=public_bytes(simulated_coordinator_key(scn.seed)).hex(),
            limits=Limits(import_max_w=conn_w, export_max_w=conn_w), devices=cfgs, poll_s=5.0,
            plan_grace_s=INTERVAL_S, dimming=dimming,
        )  # fmt: skip
        controller = Controller(config, signers[main_meter(h)].key, clock=clock)
        homes.append(Home(k, h, {r: devices[(h, r)] for (hh, r) in devices if hh == h}, controller))
    return homes


async def _simulate(scn: Scenario, out: Path, progress: Progress | None,
                    dispatch: DispatchMode, broker: BrokerKind) -> SimResult:  # fmt: skip
    setup = prepare(scn, dispatch)
    ids = setup.community.ids
    community = scn.community_id
    first = scn.first_interval
    ledger_path = out / "ledger.sqlite"
    script = Script.of(scn)
    with Ledger(ledger_path) as ledger:
        signers = enrol_simulated(ledger, ids, setup.community.connection_w, first, scn.seed,
                                  transformer_rated_w=setup.feeder.transformer_rated_w)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gridctl-wire-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_tcp_port()
        creds = write_broker_config(
            Community(community=community, households=[*ids, FEEDER_USER]),
            tmp / "broker", port, run_as=getpass.getuser(),
        )  # fmt: skip
        devices = setup.devices | {
            (h, "io"): ProfileVirtual(load_profile(RELAY_PROFILE), clock=lambda: 0.0)
            for h in sorted(scn.relay_households())
        }
        clock = SimClock(first * INTERVAL_S)
        totals = SettledTotals(len(ids))
        at = BrokerSettings(port=port, mqtt_version=mqtt_version(broker))
        with running_broker(tmp / "broker" / "mosquitto.conf", port, broker):
            async with contextlib.AsyncExitStack() as stack:
                ports = {key: await stack.enter_async_context(serving(dev))
                         for key, dev in devices.items()}  # fmt: skip
                homes = _homes(scn, setup, clock, signers, creds, at, tmp, ports, devices,
                               community)  # fmt: skip
                planner = setup.community.planner
                coordinator = Coordinator(
                    community, at.model_copy(update={"username": "coordinator",
                                                     "password": creds["coordinator"]}),
                    ledger_path, tmp / "inbox.sqlite", setup.community.settlement,
                    simulated_coordinator_key(scn.seed), planner=planner,
                    tariff=None, physics=setup.community.physics,
                    governance=None if script is None else charter(scn), clock=clock,
                    tick_s=None, on_settled=totals.add_outcome,
                    publish_opendata=scn.opendata.publish,
                    envelopes=planner.envelopes if planner is not None else None,
                    openadr=None if scn.openadr is None else scn.openadr.relative_to(scn.base_dir),
                )  # fmt: skip
                if script is not None and coordinator.governance is not None:
                    script.enrol(coordinator.governance)
                feeder = Session(at.model_copy(update={"username": FEEDER_USER,
                                                       "password": creds[FEEDER_USER]}),
                                 "feeder", [], _ignore)  # fmt: skip
                run = _Run(scn, setup, clock, homes, coordinator, feeder, signers, script)
                run.show_state(0)  # what the controllers read from their first poll on
                tasks = [asyncio.create_task(x.run()) for x in (coordinator, feeder)]
                tasks += [asyncio.create_task(h.controller.run()) for h in homes]
                try:
                    await _until(lambda: coordinator.session.connected.is_set()
                                 and feeder.connected.is_set()
                                 and all(h.controller.session.connected.is_set() for h in homes),
                                 "connecting")  # fmt: skip
                    for t in range(scn.intervals):
                        await run.interval(t)
                        if progress:
                            progress(t + 1, scn.intervals)
                    await run.boundary(
                        scn.intervals, plan=False
                    )  # the last interval's readings, settled
                    head = coordinator.ledger.head
                finally:
                    for task in tasks:
                        task.cancel()
                    results = await asyncio.gather(*tasks, return_exceptions=True)
                crashed = [r for r in results if isinstance(r, BaseException)
                           and not isinstance(r, asyncio.CancelledError)]  # fmt: skip
                if crashed:
                    raise WireError(f"a wire-mode task failed: {crashed[0]!r}")
    record_run(out / GRID_FILE, scn, setup.world, ids, first)
    return sim_result(scn, setup, totals, head, ledger_path)


async def _ignore(topic: str, payload: bytes) -> None:
    """Messages for a session that only publishes."""


def simulate_wire(
    scn: Scenario,
    out: Path,
    progress: Progress | None = None,
    dispatch: DispatchMode = "community",
    broker: BrokerKind = "mosquitto",
) -> SimResult:
    """Run ``scn`` in wire mode over the ``broker``, writing the coordinator's ledger to
    ``out/ledger.sqlite``."""
    log.info("wire simulation broker=%s mqtt=%s", broker, mqtt_version(broker))
    return asyncio.run(_simulate(scn, out, progress, dispatch, broker))
