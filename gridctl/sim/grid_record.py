"""A run's feeder states into ``grid.sqlite`` (``gridctl.grid.record``), beside its ledger:
the drawing of its feeder and every interval's power flow as the world ran it."""

from __future__ import annotations

import logging
from pathlib import Path

from gridctl.coordinator.feeder_state import grid_limits
from gridctl.core import FeederError
from gridctl.dispatch.spec import CommunitySpec
from gridctl.grid.drawing import drawing, state
from gridctl.grid.record import GridRecord
from gridctl.sim.world import World

log = logging.getLogger(__name__)


def record_run(path: Path, spec: CommunitySpec, world: World, ids: list[str], first: int) -> None:
    """Write the drawing of the world's feeder and each interval it ran (from ``first``) as
    "actual" states into ``path`` (a feeder that cannot be drawn, not radial, is skipped)."""
    ac = world.ac
    try:
        d = drawing(ac.net, ac.household_bus, ids)
    except FeederError as e:
        log.warning("no feeder drawing: %s", e)
        return
    rec = GridRecord(path, d, grid_limits(spec))
    try:
        rec.add([state(d, ac.net, first + t, i.ac) for t, i in enumerate(world.history)],
                "actual")  # fmt: skip
    finally:
        rec.close()
