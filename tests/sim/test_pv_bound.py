"""Zero false flags from the sun's bound: every PV profile the simulation can give a household,
through whole years at every scenario's place, stays within what settlement allows.

What flows in the simulation: a household's available PV in interval t is its profile's row
for t's UTC day and time (``gridctl.dispatch.fleet.profile_rows``: SimBench's rows are equally
spaced, labelled in German local time with its daylight-saving jumps, but their sun is central
Germany's in UTC: the daily centre of output lies near 11:20 row time, the solar noon of 10° E
in UTC) times kWp times the cloud factor (at most ``CLOUD_FACTOR_RANGE[1]``). The virtual
SunSpec inverter follows ``gridctl.devices.virtual.clear_sky`` by the wall clock, held for
each ``SUN_STEP_S`` step. Settlement
allows a PV system ``gridctl.sun.pv_share_max`` of its rating in an interval (plus the meter
class and inverter margins on top, not counted here), so an honest household's PV export never
exceeds the bound if the output below never does, however the household's load and battery
move.
"""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gridctl.core import INTERVAL_S, INTERVALS_PER_DAY
from gridctl.devices.virtual import SUN_STEP_S, clear_sky, clear_sky_share
from gridctl.dispatch.fleet import profile_rows
from gridctl.grid.feeder import DEFAULT_PROFILE_SOURCE, load_feeder
from gridctl.sim.households import CLOUD_FACTOR_RANGE
from gridctl.sim.scenario import load_scenario
from gridctl.sun import Place, pv_share_max

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "sim").glob("*.yaml"))
LEAP = 2028
"""A leap year as well: its 29 February maps onto the profile year's own."""


def _years_and_profiles() -> dict[tuple[Place, int], dict[str, np.ndarray]]:
    """Each (scenario place, year) with every PV profile (per kWp) of the profile sets its
    scenarios' feeders carry (all of a set's PV columns: any of them may be named)."""
    out: dict[tuple[Place, int], dict[str, np.ndarray]] = {}
    for path in SCENARIOS:
        scn = load_scenario(path)
        assert scn.location is not None, f"{path.name}: no location"
        code = scn.feeder.simbench or DEFAULT_PROFILE_SOURCE
        _, profiles = load_feeder(code, None, ROOT)
        for year in (scn.start.year, LEAP):
            sets = out.setdefault((scn.location.place(), year), {})
            sets |= {f"{code}:{c}": profiles.pv[c].to_numpy() for c in profiles.pv.columns}
    return out


@pytest.mark.slow
def test_no_simulated_pv_output_ever_exceeds_the_sun_s_bound() -> None:
    cases = _years_and_profiles()
    assert len({name for p in cases.values() for name in p}) >= 4  # PV5 of two sets, PV6, PV8
    for (place, year), profiles in cases.items():
        start = datetime(year, 1, 1, tzinfo=UTC)
        n_t = (datetime(year + 1, 1, 1, tzinfo=UTC) - start).days * INTERVALS_PER_DAY
        t_s = start.timestamp() + INTERVAL_S * np.arange(n_t)
        bound = pv_share_max(place, t_s, float(INTERVAL_S))
        # the bound bites: nothing at all allowed in over a quarter of the year's intervals
        assert (bound == 0).mean() > 0.25
        rows = profile_rows(start, n_t)
        for name, per_kwp in profiles.items():
            most = per_kwp[rows] * CLOUD_FACTOR_RANGE[1]
            over = np.flatnonzero(most > bound)
            first = datetime.fromtimestamp(t_s[over[0]], UTC) if len(over) else None
            assert not len(over), f"{name} at {place}: {len(over)} intervals over, first {first}"
            assert most.max() > 0.5  # a real profile, not an empty column
        # the virtual inverter's sun, each step that overlaps an interval
        steps = t_s[:, None] + SUN_STEP_S * np.arange(-1, INTERVAL_S // SUN_STEP_S)[None, :]
        shares, where = np.unique(steps, return_inverse=True)
        virtual = clear_sky_share(shares)[where.reshape(steps.shape)].max(axis=1)
        over = np.flatnonzero(virtual > bound)
        first = datetime.fromtimestamp(t_s[over[0]], UTC) if len(over) else None
        assert not len(over), f"virtual inverter at {place}: {len(over)} over, first {first}"


def test_the_virtual_inverter_holds_each_step_s_share() -> None:
    t = datetime(2026, 6, 21, 11, 2, 30, tzinfo=UTC).timestamp()
    step = t - t % SUN_STEP_S
    assert clear_sky(t) == clear_sky(step) == float(clear_sky_share(np.array([step]))[0]) > 0.9
    assert clear_sky(datetime(2026, 6, 21, 23, tzinfo=UTC).timestamp()) == 0.0
