"""Simulated meters: class-bounded unbiased error, exact monotone counters, scripted cheats, and
the scenario's cheat and meter fields refusing hostile values with a clear error."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gridctl.core import ACCURACY_CLASS_MPE, INTERVALS_PER_DAY, ScenarioError, validated
from gridctl.settlement.enrol import main_meter
from gridctl.sim.devices import meter_voltages_mv, show
from gridctl.sim.engine import SimResult, planned, prepare, simulate
from gridctl.sim.meters import TRUNCATE_SIGMAS, Meters, meter_errors
from gridctl.sim.scenario import Scenario, load_scenario
from gridctl.sim.wire import simulate_wire
from gridctl.transport.launcher import choose_broker

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = [2**63, -1, math.nan, math.inf, 1e308, "", "x" * 100_000, "9999-12-31T23:59:59Z"]
NOON = "2026-04-22T10:00:00Z"


def scenario(**fields: object) -> Scenario:
    """community-20 with ``fields`` replaced (validated as a scenario file is)."""
    raw = {**load_scenario(ROOT / "sim" / "community-20.yaml").model_dump(), **fields}
    return validated(Scenario, raw, ScenarioError, "community-20.yaml")


# --- error model ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["A", "B", "C"])
def test_errors_stay_within_the_class_and_are_unbiased(cls: str) -> None:
    mpe, n = ACCURACY_CLASS_MPE[cls], 200_000  # type: ignore[index]
    eps = meter_errors(7, "h01/main", mpe, n)
    assert np.abs(eps).max() <= mpe
    assert np.abs(eps).max() > 0.9 * mpe  # the tails are reached, not clipped short
    sigma = mpe / TRUNCATE_SIGMAS
    # a normal truncated at 3 sigma keeps 98.7 % of its standard deviation
    assert eps.std() == pytest.approx(0.9865 * sigma, rel=0.01)
    assert abs(eps.mean()) < 5 * sigma / math.sqrt(n)


def test_each_meter_draws_its_own_errors_whatever_the_order() -> None:
    a = meter_errors(7, "h01/main", 0.01, 50)
    assert np.array_equal(a, meter_errors(7, "h01/main", 0.01, 50))
    assert not np.array_equal(a, meter_errors(8, "h01/main", 0.01, 50))
    assert not np.array_equal(a, meter_errors(7, "h02/main", 0.01, 50))
    assert abs(np.corrcoef(a, meter_errors(7, "h02/main", 0.01, 50))[0, 1]) < 0.5
    scn = scenario(meter_noise=True)
    ids = [h.id for h in scn.households]
    fwd, rev = Meters(scn, ids), Meters(scn, ids[::-1])
    assert np.array_equal(fwd.error, rev.error[:, ::-1])
    assert np.array_equal(fwd.v_error_pu, rev.v_error_pu[:, ::-1])
    for v_error_pu in (fwd.v_error_pu, fwd.trafo_v_error_pu):
        assert 0 < np.abs(v_error_pu).max() <= 0.003  # 3 x 0.1 % of nominal


def _random_powers(n_t: int, n_h: int, seed: int = 1) -> np.ndarray:
    """(n_t, n_h) household powers, W: imports and exports of a few kW, some exactly zero."""
    p = np.random.default_rng(seed).normal(0.0, 3000.0, (n_t, n_h))
    p[::7, 0] = 0.0
    return p


def test_counters_are_monotone_whole_wh_and_lose_no_energy() -> None:
    scn = scenario(meter_noise=True, intervals=2 * INTERVALS_PER_DAY)
    ids = [h.id for h in scn.households]
    m = Meters(scn, ids)
    p = _random_powers(scn.intervals, len(ids))
    last_imp, last_exp = m.household_counters_wh()
    imports_wh, exports_wh = [], []
    for t in range(scn.intervals):
        m.step(t, p[t], float(p[t].sum()))
        e_wh = p[t] * (1 + m.error[t]) * 0.25  # the measured energy of the interval
        imports_wh.append(np.maximum(e_wh, 0))
        exports_wh.append(np.maximum(-e_wh, 0))
        imp, exp = m.household_counters_wh()
        assert imp.dtype == exp.dtype == np.int64
        assert (imp >= last_imp).all() and (exp >= last_exp).all()
        last_imp, last_exp = imp, exp
        rel = np.abs(m.p_w[t] - p[t]) / np.maximum(np.abs(p[t]), 1e-9)
        assert (rel <= ACCURACY_CLASS_MPE["B"] + 1e-12).all()
    for counter, parts in ((last_imp, imports_wh), (last_exp, exports_wh)):
        exact = [math.fsum(col) for col in np.array(parts).T]
        assert counter.tolist() == [math.floor(e) for e in exact]
    true_imp = np.maximum(p, 0).sum(axis=0) * 0.25
    assert np.abs(last_imp - true_imp).max() < 0.01 * true_imp.max()  # errors average out


def test_without_noise_the_meters_report_the_worlds_exact_counters() -> None:
    scn = scenario(intervals=4, start=NOON)
    s = prepare(scn)
    for t in range(scn.intervals):
        s.step(t, *planned(s, scn.first_interval + t, t))
        for reported, exact in zip(s.meters.household_counters_wh(),
                                   s.world.household_counters_wh(), strict=True):  # fmt: skip
            assert np.array_equal(reported, exact)
        assert s.meters.trafo_counters_wh() == s.world.trafo_counters_wh()
        assert np.array_equal(s.meters.offset_w, np.zeros(len(scn.households)))


def test_noise_off_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    """The new fields at their defaults, or with other classes while the noise is off, sign
    the same readings into the same ledger as a scenario without them."""
    plain = load_scenario(ROOT / "sim" / "default.yaml").model_dump()
    for key in ("meters", "meter_noise", "cheat"):
        del plain[key]
    plain.update(intervals=4, start="2026-06-21T10:00:00Z")
    heads = [
        simulate(validated(Scenario, {**plain, **extra}, ScenarioError, "s"),
                 tmp_path / f"{k}.sqlite").ledger_head
        for k, extra in enumerate([{}, {"meters": {"household_class": "A",
                                                   "transformer_class": "A"}}])
    ]  # fmt: skip
    assert heads[0] == heads[1]


# --- cheats ---------------------------------------------------------------------------------


def test_each_cheat_claims_its_defined_power() -> None:
    """inflate, copy, replay and reverse on synthetic powers over two days, noise on."""
    cheats = [
        {"household": "h01", "kind": "inflate", "size_w": 1000},
        {"household": "h02", "kind": "copy", "size_w": 1500, "neighbour": "h03"},
        {"household": "h04", "kind": "replay", "size_w": 2000},
        {"household": "h05", "kind": "reverse", "size_w": 700,
         "start": "2026-04-22T06:00:00Z", "end": "2026-04-23T06:00:00Z"},
    ]  # fmt: skip
    scn = scenario(meter_noise=True, intervals=2 * INTERVALS_PER_DAY, cheat=cheats)
    ids = [h.id for h in scn.households]
    m = Meters(scn, ids)
    p = _random_powers(scn.intervals, len(ids), seed=3)
    for t in range(scn.intervals):
        m.step(t, p[t], 0.0)
    measured = p * (1 + m.error)
    h01, h02, h03, h04, h05 = range(5)
    truth = m.truth()
    assert truth.household.tolist() == [h01, h02, h04, h05]
    dev = truth.deviation_w
    assert np.allclose(dev[:, 0], -1000)
    assert np.allclose(
        dev[:, 1], -np.minimum(1500, np.maximum(0, measured[:, h02] - measured[:, h03]))
    )
    day = INTERVALS_PER_DAY
    assert (dev[:day, 2] == 0).all()  # no yesterday: honest
    claimed_yesterday = m.p_w[:day, h04]
    assert np.array_equal(claimed_yesterday, measured[:day, h04])
    assert np.allclose(dev[day:, 2],
                       -np.minimum(2000, np.maximum(0, measured[day:, h04] - claimed_yesterday)))  # fmt: skip
    window = np.zeros(scn.intervals, dtype=bool)
    window[24 : 24 + day] = True  # 06:00 to 06:00 the next day
    importing = measured[:, h05] > 0
    assert np.allclose(dev[:, 3], np.where(window & importing, -700 - measured[:, h05], 0))
    assert np.allclose(m.p_w[:, h05], np.where(window & importing, -700, measured[:, h05]))
    assert (dev <= 0).all() and (dev[:, 1:] < 0).any(axis=0).all()  # every cheat bit somewhere
    assert truth.cheating[:, 0].all() and truth.cheating[:, 3].sum() == (window & importing).sum()
    assert np.allclose(truth.at_stake_wh, -dev * 0.25)
    # the claims, not the measurements, are counted: h01's export grew by 1 kW x 48 h
    honest_exp = np.maximum(-measured[:, h01], 0).sum() * 0.25
    assert m.exp_wh[h01] - honest_exp == pytest.approx(
        (np.maximum(-(measured[:, h01] - 1000), 0) - np.maximum(-measured[:, h01], 0)).sum() * 0.25
    )
    assert m.exp_wh[h01] > honest_exp + 0.5 * 1000 * 48


@pytest.fixture(scope="module")
def cheated(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """Twelve sunny intervals of community-20, noisy meters and three dishonest households."""
    cheats = [
        {"household": "h05", "kind": "reverse", "size_w": 1000},  # no PV: always importing
        {"household": "h02", "kind": "inflate", "size_w": 500, "start": "2026-04-22T11:00:00Z"},
        {"household": "h15", "kind": "copy", "size_w": 2000, "neighbour": "h09"},
        {"household": "h17", "kind": "replay", "size_w": 2000},
    ]
    scn = scenario(meter_noise=True, intervals=12, start=NOON, cheat=cheats)
    return simulate(scn, tmp_path_factory.mktemp("cheated") / "ledger.sqlite")


def test_an_in_process_run_signs_what_the_cheaters_claim(cheated: SimResult) -> None:
    r, scn = cheated, cheated.scenario
    ids = r.household_ids
    k = {h: ids.index(h) for h in ("h02", "h05", "h09", "h15", "h17")}
    measured = r.p_household_w * (1 + np.array(
        [meter_errors(scn.seed, main_meter(h), 0.01, scn.intervals) for h in ids]).T)  # fmt: skip
    dev = r.cheats.deviation_w
    p05, p15, p09 = measured[:, k["h05"]], measured[:, k["h15"]], measured[:, k["h09"]]
    assert (p05 > 0).all() and np.allclose(dev[:, 0], -1000 - p05)
    assert (dev[:4, 1] == 0).all() and np.allclose(dev[4:, 1], -500)  # from 11:00 on
    assert np.allclose(dev[:, 2], -np.minimum(2000, np.maximum(0, p15 - p09)))
    assert (dev[:, 2] < -1000).any()  # h09's panels give h15 a good curve to copy
    assert (dev[:, 3] == 0).all()  # no yesterday within the run
    assert r.cheats.cheating.sum(axis=0).tolist() == [12, 8, int((dev[:, 2] <= -1000).sum()), 0]
    con = sqlite3.connect(r.ledger_path)
    rows = con.execute(
        "SELECT interval, e_import_wh, e_export_wh FROM meter_readings WHERE meter = ? "
        "ORDER BY interval", ("h05/main",),
    ).fetchall()  # fmt: skip
    assert [i for i, _, _ in rows] == list(range(scn.first_interval, scn.first_interval + 12))
    assert all(imp == 0 for _, imp, _ in rows)  # it never admits importing
    assert rows[-1][2] == math.floor(1000 * 12 * 0.25)  # 1 kW claimed for 3 h
    honest = [h for h in ids if h not in ("h02", "h05", "h15", "h17")]
    for h in honest:
        imp, exp = con.execute(
            "SELECT e_import_wh, e_export_wh FROM meter_readings WHERE meter = ? "
            "ORDER BY interval DESC LIMIT 1", (main_meter(h),),
        ).fetchone()  # fmt: skip
        p = r.p_household_w[:, ids.index(h)] * 0.25
        true_imp, true_exp = np.maximum(p, 0).sum(), np.maximum(-p, 0).sum()
        assert abs(imp - true_imp) <= 0.01 * true_imp + 1 and abs(exp - true_exp) <= (
            0.01 * true_exp + 1
        ), h


def test_the_main_meter_device_shows_the_claims(tmp_path: Path) -> None:
    """What a controller reads from a dishonest household's meter (in wire mode, what it
    signs) is the claim, as in the in-process run."""
    scn = scenario(meter_noise=True, intervals=2, start=NOON,
                   cheat=[{"household": "h05", "kind": "reverse", "size_w": 1000}])  # fmt: skip
    s = prepare(scn)
    s.step(0, *planned(s, scn.first_interval, 0))
    show(s.devices, scn.households, s.world, s.meters, 1)
    k = [h.id for h in scn.households].index("h05")
    meter = s.devices[("h05", "meter")].values
    assert meter["e_import_wh"] == 0 and meter["e_export_wh"] == pytest.approx(250)
    assert float(meter["p_w"]) == pytest.approx(-1000, abs=1)
    assert s.world.history[-1].p_w[k] > 0  # while it imported
    j = [h.id for h in scn.households].index("h09")
    assert s.devices[("h09", "meter")].values["e_export_wh"] == pytest.approx(s.meters.exp_wh[j])
    volts = meter_voltages_mv(s.world, s.meters)
    assert volts is not None
    true_v = np.append(s.world.household_v_pu(), s.world.trafo_v_pu()) * 230_000  # mV
    signed = np.append(volts[0], volts[1])
    error = np.append(s.meters.v_error_pu[0], s.meters.trafo_v_error_pu[0]) * 230_000
    assert np.abs(signed - (true_v + error)).max() <= 0.5  # whole mV
    assert 0 < np.abs(signed - true_v).max() <= 0.003 * 230_000 + 0.5


@pytest.mark.slow
def test_a_dishonest_controller_over_the_wire_signs_what_the_in_process_cheater_signs(
    tmp_path: Path,
) -> None:
    """Noisy meters and a household claiming export while importing: the controllers read the
    claims from their meters, sign them and send them over the broker, and the coordinator's
    ledger comes out as the in-process run's, entry for entry."""
    raw = load_scenario().model_dump()
    raw.update(intervals=8, meter_noise=True,
               cheat=[{"household": "h03", "kind": "reverse", "size_w": 1000}])  # fmt: skip
    scn = Scenario.model_validate(raw)
    inproc = simulate(scn, tmp_path / "inproc.sqlite")
    wire = simulate_wire(scn, tmp_path, broker=choose_broker("auto"))
    assert (inproc.cheats.deviation_w <= -1000).all()  # h03 imports all night
    assert np.array_equal(wire.cheats.deviation_w, inproc.cheats.deviation_w)
    assert wire.ledger_head == inproc.ledger_head
    con = sqlite3.connect(wire.ledger_path)
    claims = con.execute(
        "SELECT e_import_wh, e_export_wh FROM meter_readings WHERE meter = 'h03/main'"
    ).fetchall()
    assert claims == [(0, 250 * (t + 1)) for t in range(8)]


# --- scenario fields ------------------------------------------------------------------------


def _refused(match: str, **fields: object) -> None:
    with pytest.raises(ScenarioError, match=match):
        scenario(**fields)


@pytest.mark.parametrize("value", [*HOSTILE, 0, 17_251])
def test_cheat_size_refuses_hostile_values(value: object) -> None:
    _refused(
        r"cheat\[0\]\.size_w", cheat=[{"household": "h01", "kind": "inflate", "size_w": value}]
    )
    assert scenario(cheat=[{"household": "h01", "kind": "inflate", "size_w": 17_250}]).cheat


@pytest.mark.parametrize("field", ["start", "end"])
@pytest.mark.parametrize(
    "value", [*HOSTILE, "2026-04-22T10:07:00Z", "2026-04-22T10:00:00", "2026-04-21T23:45:00Z"]
)
def test_cheat_window_refuses_hostile_values(field: str, value: object) -> None:
    _refused(rf"cheat\[0\]\.{field}",
             cheat=[{"household": "h01", "kind": "inflate", "size_w": 100, field: value}])  # fmt: skip


@pytest.mark.parametrize(
    ("cheat", "match"),
    [
        ({"household": "h99"}, r"cheat\[0\]\.household: 'h99' is not a household"),
        ({"household": ""}, r"cheat\[0\]\.household"),
        ({"household": "x" * 100_000}, r"cheat\[0\]\.household"),
        ({"kind": "steal"}, r"cheat\[0\]\.kind"),
        ({"kind": "copy"}, r"neighbour: a copy cheat needs"),
        ({"kind": "copy", "neighbour": "h01"}, r"neighbour: a household cannot copy itself"),
        ({"kind": "copy", "neighbour": "h99"}, r"cheat\[0\]\.neighbour: 'h99' is not"),
        ({"neighbour": "h02"}, r"neighbour: only a copy cheat"),
        ({"start": "2026-04-22T12:00:00Z", "end": "2026-04-22T11:00:00Z"}, "start: must come"),
        ({"start": "2026-04-22T11:00:00Z", "end": "2026-04-22T11:00:00Z"}, "start: must come"),
        ({"start": "2026-04-23T00:00:00Z"}, r"cheat\[0\]\.start: the run ends"),
        ({"end": "2026-04-22T00:00:00Z"}, r"cheat\[0\]\.end: the run starts"),
        ({"end": "2026-04-23T00:15:00Z"}, r"cheat\[0\]\.end: .* lies outside the run"),
        ({"size_w": 20_000}, r"size_w: 20000 W exceeds h01's connection \(17250 W\)"),
        ({"price": 1}, r"cheat\[0\]\.price"),
    ],
)
def test_cheat_entries_are_checked_against_the_scenario(cheat: dict, match: str) -> None:
    _refused(match, cheat=[{"household": "h01", "kind": "inflate", "size_w": 100, **cheat}])


def test_one_cheat_per_household_and_known_meter_classes() -> None:
    twice = {"household": "h01", "kind": "inflate", "size_w": 100}
    _refused(r"cheat\[1\]\.household: 'h01' already has a cheat", cheat=[twice, twice])
    _refused(r"cheat: .*1000", cheat=[twice] * 1001)
    for value in (*HOSTILE, "D", "b"):
        _refused("meters.household_class", meters={"household_class": value})
    _refused("meter_noise", meter_noise="sometimes")
    scn = scenario(
        meters={"transformer_class": "B"},
        cheat=[{"household": "h01", "kind": "copy", "size_w": 100, "neighbour": "h02",
                "start": "2026-04-22T06:00:00+02:00"}],
    )  # fmt: skip
    assert (scn.meters.household_class, scn.meters.transformer_class) == ("B", "B")
    assert scn.cheat_window(scn.cheat[0]) == (16, 96)  # 04:00 UTC to the end of the run
    assert not scenario().meter_noise and scenario().cheat == []
