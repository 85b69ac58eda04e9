"""The feeder as the coordinator plans it, each interval: recorded in ``grid.sqlite`` beside
the ledger (every figure, for the operator's page) and published retained on
``coordinator/feeder`` for everyone (``FeederMessage``: what the public diagram withholds left
out, ``gridctl.grid.drawing.shown``, since every household reads the coordinator's
broadcasts)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandapower as pp

from gridctl.coordinator.planner import CommunityPlanner
from gridctl.core import INTERVALS_PER_DAY, FeederError
from gridctl.dispatch.spec import CommunitySpec
from gridctl.grid.ac import AcResult
from gridctl.grid.drawing import drawing, shown, state
from gridctl.grid.record import GRID_FILE, GridRecord, Limits
from gridctl.protocol import MAX_FEEDER_ELEMENTS, FeederMessage

log = logging.getLogger(__name__)
KEEP_INTERVALS = 35 * INTERVALS_PER_DAY
"""Planned states the coordinator keeps in ``grid.sqlite`` (older ones are dropped), intervals."""


def grid_limits(spec: CommunitySpec) -> Limits:
    """The band, loading limit and public k a community's drawing is judged by."""
    lim = spec.limits
    return Limits(lim.v_min_pu, lim.v_max_pu, lim.loading_max_pct, spec.opendata.k)


class FeederState:
    """Records and describes each planned interval's power flow.

    record: the ``grid.sqlite`` writer (its drawing and limits). flow: the planner's AC power
    flow of a planned interval (``CommunityPlanner.planned_flow``; None: none reaches it).
    net: the network that flow runs on (its result tables' order).
    """

    def __init__(
        self, record: GridRecord, flow: Callable[[int], AcResult | None], net: pp.pandapowerNet
    ):
        self.record, self.flow, self.net = record, flow, net
        self.bus_shown, self.branch_shown = shown(record.drawing, record.limits.k)

    @classmethod
    def open(
        cls, ledger: Path, spec: CommunitySpec, planner: CommunityPlanner
    ) -> FeederState | None:
        """The recorder for a coordinator whose ledger is ``ledger``; None without an
        AC-checked planner, or when the feeder cannot be drawn or is too big for one message
        (then nothing is published; the reason is logged)."""
        guard = planner.rolling.guard
        if guard is None:
            return None
        try:
            d = drawing(guard.ac.net, guard.ac.household_bus, planner.ids)
        except FeederError as e:
            log.warning("no feeder state published: %s", e)
            return None
        if max(len(d.buses), len(d.branches)) > MAX_FEEDER_ELEMENTS:
            log.warning("no feeder state published: %d buses, %d branches (at most %d)",
                        len(d.buses), len(d.branches), MAX_FEEDER_ELEMENTS)  # fmt: skip
            return None
        record = GridRecord(ledger.parent / GRID_FILE, d, grid_limits(spec), KEEP_INTERVALS)
        return cls(record, planner.planned_flow, guard.ac.net)

    def planned(self, interval: int) -> FeederMessage | None:
        """Record ``interval``'s planned power flow and return its public message (None: no
        plan reaches it). Blocking: a power flow and a SQLite write."""
        res = self.flow(interval)
        if res is None:
            return None
        d = self.record.drawing
        s = state(d, self.net, interval, res)
        self.record.add([s], "planned")
        return FeederMessage(
            interval=interval, topology=d.topology_id,
            v_upu=[v if ok else None for v, ok in zip(s.v_upu, self.bus_shown, strict=True)],
            loading_ppm=[x if ok else None
                         for x, ok in zip(s.loading_ppm, self.branch_shown, strict=True)],
        )  # fmt: skip

    def close(self) -> None:
        """Close ``grid.sqlite``."""
        self.record.close()


def feeder_state(
    spec: CommunitySpec, ledger: Path, planner: CommunityPlanner | None
) -> FeederState | None:
    """The feeder recorder of a coordinator of ``spec`` keeping its ledger at ``ledger``; None
    when nothing is planned against a feeder."""
    return None if planner is None else FeederState.open(ledger, spec, planner)
