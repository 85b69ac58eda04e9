"""§14a dimming in the household controller, on served virtual devices and a stepped clock: a
relay on a WAGO coupler's input or the coordinator's plan dims the charger and the battery's
charging, the charger never below 4.2 kW while a car is connected (whatever the plan or its
envelope ask), and every window lands in the state file, shown by `gridctl controller dimming`
run as a real subprocess."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gridctl.controller.config import ControllerConfig, ControllerConfigError, DimmingConfig
from gridctl.controller.dimming import read_windows
from gridctl.controller.keys import generate_key_file, load_key_file
from gridctl.controller.loop import Controller
from gridctl.core import INTERVAL_S, V_NOMINAL_V
from gridctl.devices.profile import load_profile
from gridctl.devices.virtual import free_tcp_port, serving
from gridctl.devices.virtual_profile import CarSession, ProfileVirtual
from gridctl.protocol import PlanMessage, PlanStep, encode, household_topic
from gridctl.public.dimming import MIN_14A_W
from tests.deployment import gridctl

T0 = 2000 * INTERVAL_S
PHASE_3_W = 3 * V_NOMINAL_V


@dataclass
class Home:
    ctl: Controller
    ev: ProfileVirtual
    battery: ProfileVirtual
    relay: ProfileVirtual
    now_s: list[float]
    config: dict

    async def at(self, t_s: float, plan: list[PlanStep] | None = None) -> None:
        """Poll and act at ``t_s`` (epoch s), after taking ``plan`` (issued this interval)."""
        self.now_s[0] = t_s
        if plan is not None:
            msg = PlanMessage(household="h01", issued=int(t_s // INTERVAL_S), steps=plan)
            await self.ctl.on_message(household_topic("oak", "h01", "plan"), encode(msg))
        await self.ctl.step()

    def ev_w(self) -> float:
        return float(self.ev.values["charge_current_a"]) * PHASE_3_W


@asynccontextmanager
async def home(tmp_path: Path, dimming: dict) -> AsyncIterator[Home]:
    """Meter, battery (Kostal), charger (Alfen, a car plugged in for the day) and the relay
    input (WAGO 750-352), served on one port; the controller's config as written to a file."""
    now_s = [float(T0)]
    clock = lambda: now_s[0]  # noqa: E731
    ev = ProfileVirtual(load_profile("alfen-eve"), unit=3, clock=clock,
                        car=CarSession(T0, T0 + 96 * INTERVAL_S, 60_000.0))  # fmt: skip
    ev.set_values(status="connected")  # plugged in from the start
    battery = ProfileVirtual(load_profile("kostal-plenticore"), unit=2, clock=clock)
    relay = ProfileVirtual(load_profile("wago-750-352"), unit=4, clock=clock)
    meter = ProfileVirtual(load_profile("eastron-sdm630"), unit=1, clock=clock,
                           measured_w=lambda t: 600.0 + ev.values["p_w"])  # fmt: skip
    generate_key_file(tmp_path / "h01.key")
    async with serving([meter, battery, ev, relay]) as port:
        raw = {
            "community": "oak", "household": "h01", "key_file": "h01.key",
            "state_db": "h01.sqlite", "limits": {"fuse_a": 32},
            "broker": {"port": free_tcp_port(), "password": "unused"},  # never connected
            "dimming": dimming,
            "devices": [
                {"name": "meter", "role": "meter", "profile": "eastron-sdm630", "port": port, "unit": 1},
                {"name": "battery", "role": "battery", "profile": "kostal-plenticore", "port": port,
                 "unit": 2, "rated_w": 5000},
                {"name": "ev", "role": "ev", "profile": "alfen-eve", "port": port, "unit": 3,
                 "rated_w": 11_000},
                {"name": "relay", "role": "io", "profile": "wago-750-352", "port": port, "unit": 4},
            ],
        }  # fmt: skip
        (tmp_path / "controller.yaml").write_text(yaml.safe_dump(raw))
        cfg = ControllerConfig.model_validate(raw | {"key_file": tmp_path / "h01.key",
                                                     "state_db": tmp_path / "h01.sqlite"})  # fmt: skip
        ctl = Controller(cfg, load_key_file(tmp_path / "h01.key"), clock=clock)
        ctl.coordinator_online = True
        try:
            yield Home(ctl, ev, battery, relay, now_s, raw)
        finally:
            ctl.close()


def _plan(t_s: float, ev_w: float, battery_w: float, **extra: float) -> list[PlanStep]:
    iv = int(t_s // INTERVAL_S)
    return [PlanStep(interval=iv, ev_w=ev_w, battery_w=battery_w, **extra)]


async def test_a_relay_dims_charger_and_battery_to_4_2_kw_never_to_0(tmp_path: Path) -> None:
    async with home(tmp_path, {"source": "input", "device": "relay"}) as h:
        t = float(T0)
        # the plan lets the car wait and charges the battery at 5 kW; no relay: as planned
        await h.at(t, _plan(t, ev_w=0.0, battery_w=5000.0))
        assert h.ev_w() == 0.0 and h.battery.values["p_set_w"] == 5000.0
        assert h.ctl.dim_cap_w is None
        # the grid operator's relay closes: the car is raised to its 4.2 kW, the battery cut
        h.relay.set_values(dim_request=1)
        for k in range(1, 4):
            await h.at(t + k * 60.0, _plan(t, ev_w=0.0, battery_w=5000.0))
            assert h.ctl.dim_cap_w == 0.0
            assert MIN_14A_W <= h.ev_w() <= MIN_14A_W + 1
            assert h.battery.values["p_set_w"] == MIN_14A_W
        assert h.ev.values["p_w"] >= MIN_14A_W  # the car draws it
        # and a plan for 11 kW is held to 4.2 kW while dimmed
        await h.at(t + 300.0, _plan(t, ev_w=11_000.0, battery_w=-2000.0))
        assert MIN_14A_W <= h.ev_w() <= MIN_14A_W + 1
        assert h.battery.values["p_set_w"] == -2000.0  # discharging is not dimmed
        h.relay.set_values(dim_request=0)
        await h.at(t + 600.0, _plan(t, ev_w=11_000.0, battery_w=5000.0))
        assert h.ev_w() == pytest.approx(11_000.0) and h.ctl.dim_cap_w is None
        # a relay that cannot be read dims (the guarantee keeps the household whole)
        h.relay.max_read = 0  # every read refused
        for k in range(4):
            await h.at(t + 700.0 + k, _plan(t, ev_w=0.0, battery_w=0.0))
        assert h.ctl.dim_device is not None and h.ctl.dim_device.reader.faulted
        assert h.ctl.dim_cap_w == 0.0 and h.ev_w() >= MIN_14A_W
    windows = read_windows(tmp_path / "h01.sqlite")
    assert [(w.start_s - T0, None if w.end_s is None else w.end_s - T0, w.source, w.cap_w)
            for w in windows] == [(60.0, 600.0, "input", 0.0), (700.0, None, "input", 0.0)]  # fmt: skip
    # the household's statement of it, as a user runs it
    shown = json.loads(gridctl("controller", "dimming", tmp_path / "controller.yaml", "--json"))
    assert shown == [w.as_dict() for w in windows]
    text = gridctl("controller", "dimming", tmp_path / "controller.yaml")
    assert "source=input" in text and "(0.15 h)" in text and "ongoing" in text
    assert "2 dimming windows" in text


async def test_the_coordinators_dimming_overrides_the_plans_envelope_not_the_fuse(
    tmp_path: Path,
) -> None:
    async with home(tmp_path, {}) as h:
        t = float(T0)
        # dimmed by the coordinator with a plan that asks 0 W under a 1 kW import envelope:
        # the charger still gets its 4.2 kW (the relay is ignored: not this household's source)
        h.relay.set_values(dim_request=1)
        await h.at(t, _plan(t, ev_w=0.0, battery_w=0.0, import_max_w=1000.0,
                            controllable_max_w=0.0))  # fmt: skip
        assert h.ctl.dim_cap_w == 0.0 and MIN_14A_W <= h.ev_w() <= MIN_14A_W + 1
        # an 8 kW cap for the charger alone: 8 kW
        await h.at(t + 60.0, _plan(t, ev_w=11_000.0, battery_w=0.0, controllable_max_w=8000.0))
        assert h.ev_w() == pytest.approx(8000.0)
        # the next interval's plan dims nobody: the plan's own 0 W again
        t1 = t + INTERVAL_S
        await h.at(t1, _plan(t1, ev_w=0.0, battery_w=0.0))
        assert h.ev_w() == 0.0 and h.ctl.dim_cap_w is None
        # a dimmed charger whose household alone fills the main fuse is not raised beyond it
        h.ctl.cfg = h.ctl.cfg.model_copy(update={"limits": h.ctl.cfg.limits.model_copy(
            update={"fuse_a": 4.0})})  # fmt: skip
        await h.at(t1 + 60.0, _plan(t1, ev_w=0.0, battery_w=0.0, controllable_max_w=0.0))
        assert h.ev_w() == 0.0
    assert [(w.start_s - T0, w.end_s - T0, w.cap_w) for w in read_windows(tmp_path / "h01.sqlite")
            if w.end_s is not None] == [(0.0, 60.0, 0.0), (60.0, float(INTERVAL_S), 8000.0)]  # fmt: skip


def test_an_input_source_needs_an_io_device_with_the_relay_role(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        DimmingConfig(source="input")
    with pytest.raises(ValueError, match="only for it"):
        DimmingConfig(device="relay")
    cfg = tmp_path / "c.yaml"
    base = {"community": "oak", "household": "h01", "key_file": "k", "state_db": "s",
            "broker": {"port": 1883, "password": "x"},
            "devices": [{"name": "meter", "role": "meter", "profile": "eastron-sdm630"}],
            "dimming": {"source": "input", "device": "meter"}}  # fmt: skip
    cfg.write_text(yaml.safe_dump(base))
    from gridctl.controller.config import load_controller_config

    with pytest.raises(ControllerConfigError, match="no device 'meter' with role io"):
        load_controller_config(cfg)
