"""One simulation job: scenario in, ledger, KPIs and report out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from gridctl.coordinator.assembly import DispatchMode
from gridctl.core import ScenarioError, describe_validation_error
from gridctl.dispatch.plan_log import PLANS_FILE
from gridctl.grid.record import GRID_FILE
from gridctl.sim.engine import Progress, prepare, simulate
from gridctl.sim.kpis import kpis
from gridctl.sim.report import FLEX_PLOT, PLOTS, write_report
from gridctl.sim.scenario import Scenario, load_scenario
from gridctl.transport.launcher import BrokerKind, choose_broker

OUTPUTS = ("kpis.json", "ledger.sqlite", PLANS_FILE, GRID_FILE, "report.html", *PLOTS, FLEX_PLOT)


@dataclass(frozen=True)
class SimOutput:
    """Where a run put its results, and its KPIs."""

    kpis: dict[str, float | int | str]
    kpis_path: Path
    ledger_path: Path
    report_path: Path
    broker: BrokerKind | None = None
    """The broker a wire-mode run used (None: in-process)."""


def with_overrides(
    scn: Scenario, seed: int | None, intervals: int | None, openadr: str | None = None
) -> Scenario:
    """The scenario with the command line's seed, interval count and VTN, validated again.

    openadr: the VTN's URL, in place of the scenario's ``openadr.vtn_url``; a scenario without
    an ``openadr`` section gets one (VEN named after the community, a report sample every
    second of wall time: ``gridctl.sim.openadr``)."""
    update: dict[str, object] = {
        k: v for k, v in (("seed", seed), ("intervals", intervals)) if v is not None
    }
    if openadr is not None:
        spec = scn.openadr.model_dump() if scn.openadr else {"ven_name": scn.community_id,
                                                             "report_s": 1}  # fmt: skip
        update["openadr"] = spec | {"vtn_url": openadr}
    try:
        return Scenario.model_validate({**scn.model_dump(), **update})
    except ValidationError as e:
        raise ScenarioError(describe_validation_error(e)) from None


def check_scenario(
    scenario: Path | None,
    seed: int | None = None,
    intervals: int | None = None,
    dispatch: DispatchMode = "community",
    openadr: str | None = None,
) -> Scenario:
    """The scenario with its overrides, after loading its feeder, buses and profiles as a run
    would (``gridctl sim --check``); nothing is simulated or written."""
    scn = with_overrides(load_scenario(scenario), seed, intervals, openadr)
    prepare(scn, dispatch)
    return scn


def run_sim(
    scenario: Path | None,
    out: Path,
    seed: int | None = None,
    intervals: int | None = None,
    progress: Progress | None = None,
    dispatch: DispatchMode = "community",
    wire: bool = False,
    broker: str = "auto",
    openadr: str | None = None,
) -> SimOutput:
    """Simulate ``scenario`` (the packaged default when None) and write results into ``out``.

    wire: run every household as a real controller over MQTT and Modbus (``gridctl.sim.wire``).
    broker: for ``wire``, auto (Mosquitto when installed, else the embedded broker), mosquitto
    or embedded. openadr: take the envelopes from this VTN (``with_overrides``).
    Results of an earlier run in ``out`` (the files this job writes) are replaced.
    """
    kind = choose_broker(broker) if wire else None
    scn = with_overrides(load_scenario(scenario), seed, intervals, openadr)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    if kind is not None:
        from gridctl.sim.wire import simulate_wire

        result = simulate_wire(scn, out, progress, dispatch, kind)
    else:
        result = simulate(scn, out / "ledger.sqlite", progress, dispatch, out / PLANS_FILE)
    kpi = kpis(result)
    kpis_path = out / "kpis.json"
    kpis_path.write_text(json.dumps(kpi, indent=2) + "\n", encoding="utf-8")
    report = write_report(result, kpi, out)
    return SimOutput(
        kpis=kpi, kpis_path=kpis_path, ledger_path=result.ledger_path, report_path=report,
        broker=kind,
    )  # fmt: skip
