"""A simulation that takes its envelopes from openleadr's VTN (the grid operator): an export
limit on the feeder from 11:00 to 14:00 of stress-summer's first day, dated in the scenario's
time, holds the transformer's measured export under it, in process and over the wire, and the
VTN gets the transformer's reports (issue 16, acceptance 1)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from gridctl.core import INTERVAL_S
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.kpis import ENVELOPE_TOLERANCE, kpis
from gridctl.sim.scenario import Scenario, load_scenario
from gridctl.sim.wire import simulate_wire
from tests.conftest import require_tool
from tests.public.vtn import Vtn

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "sim" / "stress-summer.yaml"
START, INTERVALS = "2026-05-21T09:00:00Z", 24  # 09:00-15:00 of its first day
WINDOW = (datetime.fromisoformat("2026-05-21T11:00:00Z"),
          datetime.fromisoformat("2026-05-21T14:00:00Z"))  # fmt: skip
LIMIT_W = 150_000.0
RAMP_S = 900
WH_W = 3600 / INTERVAL_S
"""W of one Wh over an interval: the reports come from whole-Wh meter counters."""


@pytest.fixture
async def vtn() -> AsyncIterator[Vtn]:
    """openleadr's VTN serving the operator's export limit (dated in the scenario's past:
    ``archive``; OpenADR's ramp-up comes before the event's start: the limit binds from 11:00)."""
    v = Vtn(archive=True)
    await v.start()
    span = (WINDOW[1] - WINDOW[0]).total_seconds()
    v.add([("x-opModExpLimW", "setpoint", [(WINDOW[0], span, LIMIT_W)])], ramp_s=RAMP_S)
    yield v
    await v.stop()


def _noon(vtn: Vtn) -> Scenario:
    """stress-summer from 09:00 to 15:00, taking its envelopes from ``vtn``."""
    scn = load_scenario(SCENARIO)
    spec = {"vtn_url": vtn.url, "ven_name": "oak", "poll_s": 1, "report_s": 1}
    return Scenario.model_validate(
        scn.model_dump() | {"start": START, "intervals": INTERVALS, "openadr": spec}
    )


def _window(r: SimResult) -> np.ndarray:
    t = np.array([x.timestamp() for x in r.times])
    return (t >= WINDOW[0].timestamp()) & (t < WINDOW[1].timestamp())


def _held(r: SimResult, tolerance: float = ENVELOPE_TOLERANCE) -> None:
    """The feeder's measured export stays at or under the limit (+ ``tolerance``) all through
    the window, which binds there; nothing is violated."""
    on = _window(r)
    export_w = -r.p_trafo_w
    assert on.sum() == 12
    assert (r.feeder_export_max_w[on] == LIMIT_W).all()
    assert np.isinf(r.feeder_export_max_w[~on]).all()
    over = export_w[on] > LIMIT_W * (1 + ENVELOPE_TOLERANCE)
    print(f"{r.scenario.name}: max export in the window {export_w[on].max() / 1000:.1f} kW "
          f"(limit {LIMIT_W / 1000:g} kW) over {on.sum()} limited intervals, {over.sum()} "
          f"beyond +{ENVELOPE_TOLERANCE:.0%}")  # fmt: skip
    assert export_w[on].max() <= LIMIT_W * (1 + tolerance)
    # the PV held back was needed: without it the feeder would export well beyond the limit
    assert (export_w[on] + r.curtailed_w[on].sum(axis=1)).min() > 1.25 * LIMIT_W
    assert export_w[: np.flatnonzero(on)[0]].max() > 1.5 * LIMIT_W  # as it does before 11:00
    k = kpis(r)
    assert k["export_limited_intervals"] == 12
    assert k["export_over_limit_intervals"] == over.sum()
    assert k["voltage_violations"] == k["line_overloads"] == k["trafo_overloads"] == 0


def _reported(vtn: Vtn, r: SimResult, tolerance: float = ENVELOPE_TOLERANCE) -> None:
    """The VTN got the transformer's import and export: samples dated in the run's simulated
    time, each the mean of an interval just measured (whole-Wh counters: within 1 Wh)."""
    start = r.times[0].timestamp()
    for rid, flow_w in (("feeder-import_w", np.maximum(r.p_trafo_w, 0.0)),
                        ("feeder-export_w", np.maximum(-r.p_trafo_w, 0.0))):  # fmt: skip
        samples = vtn.reports[rid]
        dated = sorted({d.timestamp() for d, _ in samples})
        assert len(dated) >= 3, rid  # sampled every second of wall time: several intervals
        for d, value in samples:
            t = int((d.timestamp() - start) // INTERVAL_S)
            assert 0 <= t <= len(r.times), d  # the simulated clock's date (to the run's end)
            near = flow_w[max(t - 2, 0) : t + 1]  # latest measured at the sample: t-2 … t
            assert np.abs(near - value).min() <= WH_W + 1e-6, (rid, d, value, near)
        print(f"VTN got {len(samples)} {rid} samples on {len(dated)} simulated dates")
    noon = [v for d, v in vtn.reports["feeder-export_w"]
            if WINDOW[0].timestamp() + 2 * INTERVAL_S <= d.timestamp() < WINDOW[1].timestamp()]  # fmt: skip
    assert noon and max(noon) <= LIMIT_W * (1 + tolerance) + WH_W


@pytest.mark.slow
async def test_in_process_run_holds_the_vtns_export_limit(vtn: Vtn, tmp_path: Path) -> None:
    r = await asyncio.to_thread(simulate, _noon(vtn), tmp_path / "ledger.sqlite")
    _held(r)
    _reported(vtn, r)
    assert len(vtn.registrations) == 1


@pytest.mark.slow
async def test_wire_run_holds_the_vtns_export_limit(vtn: Vtn, tmp_path: Path) -> None:
    require_tool("mosquitto")
    r = await asyncio.to_thread(simulate_wire, _noon(vtn), tmp_path)
    _held(r)
    _reported(vtn, r)
    assert len(vtn.registrations) == 1


@pytest.mark.slow
async def test_gridctl_sim_openadr_takes_the_vtns_limit(vtn: Vtn, tmp_path: Path) -> None:
    raw = yaml.safe_load(SCENARIO.read_text()) | {"start": START}
    scenario = tmp_path / "noon.yaml"
    scenario.write_text(yaml.safe_dump(raw))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridctl", "sim", str(scenario), "--intervals", str(INTERVALS),
        "--out", str(tmp_path / "out"), "--openadr", vtn.url, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    k = json.loads(out)
    assert k["export_limited_intervals"] == 12 and k["export_over_limit_intervals"] == 0
    assert k["max_export_over_limit_kw"] <= LIMIT_W * ENVELOPE_TOLERANCE / 1000
    assert k["voltage_violations"] == k["line_overloads"] == k["trafo_overloads"] == 0
    assert [r["ven_name"] for r in vtn.registrations] == ["stress-summer"]
    assert vtn.reports["feeder-export_w"]
