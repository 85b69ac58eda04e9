"""One community, one code path: the coordinator and both simulations assemble the same
community, and the simulator's planner knows only what production knows (telemetry)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import yaml

from gridctl.coordinator.assembly import Community, assemble
from gridctl.coordinator.config import load_coordinator_config
from gridctl.core import interval_hours
from gridctl.protocol import Telemetry
from gridctl.sim.devices import show, telemetry
from gridctl.sim.engine import Setup, planned, prepare
from gridctl.sim.scenario import Scenario, load_scenario

SIM_PACKAGE = Path(__file__).resolve().parents[2] / "gridctl" / "sim"
PLANNING_TYPES = {"CommunityProblem", "FeederLimits", "RollingPlanner", "FeederGuard"}


def _configuration(c: Community) -> dict:
    """Everything a planner and a settlement are built from, comparable with ==."""
    p = c.planner
    assert p is not None
    r, guard = p.rolling, p.rolling.guard
    assert guard is not None
    return {
        "ids": c.ids, "connection_w": c.connection_w.tolist(), "limits": c.limits,
        "settlement": c.settlement, "mode": c.mode, "horizon": p.horizon, "tariff": p.tariff,
        "feeder_max_w": p.feeder_max_w, "tan_phi": p.tan_phi.tolist(),
        "pv_peak_w": p.pv_peak_w.tolist(), "bat_wh": p.bat_wh.tolist(),
        "households": [h.model_dump(exclude={"public_key", "member_key"}) for h in p.households],
        "replan_every": r.replan_every, "near": r.near,
        "ev_min_w": np.asarray(r.ev_min_w).tolist(), "guard_limits": guard.limits,
        "buses": c.feeder.buses.tolist() if c.feeder else None,
    }  # fmt: skip


def test_scenario_and_coordinator_config_assemble_the_same_community(tmp_path: Path) -> None:
    scn = load_scenario()
    doc = {
        "community": "oak", "broker": {"port": 1883, "password_file": "c.secret"},
        "ledger": "ledger.sqlite", "inbox": "inbox.sqlite",
        "feeder": scn.feeder.model_dump(exclude_none=True),
        "tariff": scn.tariff.model_dump(), "reward_tokens_per_kwh": scn.reward_tokens_per_kwh,
        "limits": scn.limits.model_dump(), "dispatch": scn.dispatch.model_dump(),
        "households": [
            {**h.model_dump(mode="json", exclude_none=True), "public_key": f"{k:064x}"}
            for k, h in enumerate(scn.households)
        ],
    }  # fmt: skip
    path = tmp_path / "coordinator.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    from_config = _configuration(assemble(load_coordinator_config(path)))
    from_scenario = _configuration(prepare(scn).community)
    assert from_config == from_scenario
    assert from_scenario["limits"] is not None and from_scenario["settlement"].pooled


def test_no_sim_module_builds_its_own_planner() -> None:
    built = []
    for path in sorted(SIM_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                if name in PLANNING_TYPES:
                    built.append(f"{path.name}:{node.lineno} {name}")
    assert len(list(SIM_PACKAGE.glob("*.py"))) >= 5  # the scan saw the package
    assert built == []


def _evening() -> Scenario:
    """The default community on a summer evening: batteries full of the day's sun, cars
    arriving."""
    raw = load_scenario().model_dump()
    raw.update(start="2026-06-21T17:00:00Z", intervals=4)
    return Scenario.model_validate(raw)


def _telemetry(setup: Setup, interval: int) -> dict[str, Telemetry]:
    """What the controllers report at the run's first interval."""
    households = setup.community.spec.households
    show(setup.devices, households, setup.world, setup.meters, 0)
    return telemetry(setup.devices, households, interval, "plan")


def _plan(setup: Setup, tel: dict) -> dict:
    assert setup.community.planner is not None
    interval = setup.community.spec.first_interval  # type: ignore[attr-defined]
    return {h: [s.model_dump() for s in steps]
            for h, steps in setup.community.planner.plan(interval, tel).items()}  # fmt: skip


def test_the_plan_follows_telemetry_not_the_worlds_hidden_state() -> None:
    scn = _evening()
    interval = scn.first_interval
    shown, hidden = prepare(scn), prepare(scn)
    tel = _telemetry(shown, interval)
    batteries = hidden.world.fleet.bat_e_max_wh > 0
    assert batteries.sum() >= 2
    # the hidden world's batteries empty and its cars full: telemetry does not say so
    hidden.world.e_bat_wh = hidden.world.fleet.bat_e_min_wh.copy()
    hidden.world.ev_left_wh[:] = 0.0
    assert _plan(hidden, tel) == _plan(shown, tel)
    # the same hidden difference through the simulator's own planning path
    a, b = prepare(scn), prepare(scn)
    b.world.ev_left_wh[:] = 0.0
    for x, y in zip(planned(a, interval, 0), planned(b, interval, 0), strict=True):
        assert np.array_equal(x, y)
    # telemetry that shows the batteries empty moves the plan
    moved = prepare(scn)
    tel_empty = {
        h: t.model_copy(update={"soc": 0.05}) if t.soc is not None else t for h, t in tel.items()
    }
    plan_empty, plan_full = _plan(moved, tel_empty), _plan(shown, tel)
    assert plan_empty != plan_full

    def discharge_wh(plan: dict) -> float:
        steps = [s for h, t in tel.items() if t.soc is not None for s in plan[h]]
        return -sum(min(s["battery_w"], 0.0) for s in steps) * interval_hours()

    # batteries at their minimum cannot give the evening what charged ones give it
    assert discharge_wh(plan_empty) < discharge_wh(plan_full) - 1000.0
