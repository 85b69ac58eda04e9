"""Export capability: a household cannot export more than its generation and storage deliver,
so such a claim is named, and with a feeder its claim leaves the estimation so that the
transformer balance no longer holds its honest neighbours."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from gridctl.coordinator.assembly import assemble, export_capability, export_capability_w
from gridctl.grid.ac import AcFeeder
from gridctl.settlement.feeder_check import FeederCheck
from gridctl.settlement.physics import (
    BalanceCheck,
    BalanceConfig,
    Claims,
    ExportCapability,
    capability_finding,
)
from gridctl.sim.scenario import load_scenario
from gridctl.sun import Place

ROOT = Path(__file__).resolve().parents[2]
T0 = 2_000_000
B = BalanceConfig()


def _claims(imp: list[int], exp: list[int], t_imp: int | None = None, t_exp: int = 0) -> Claims:
    n = len(imp)
    return Claims(
        interval=T0, households=[f"h{k}" for k in range(n)], import_wh=np.array(imp),
        export_wh=np.array(exp), verified=np.ones(n, dtype=bool), v_pu=np.full(n, np.nan),
        trafo_import_wh=t_imp, trafo_export_wh=None if t_imp is None else t_exp,
        trafo_v_pu=float("nan"), dt_h=0.25,
    )  # fmt: skip


def test_a_household_without_pv_or_battery_claiming_export_is_named() -> None:
    cap = ExportCapability({"h0": 0.0, "h1": 5000.0})
    f = capability_finding(_claims([0, 0], [500, 0]), cap, B)
    assert f.named == (0,) and not f.held and f.case is not None
    assert f.case["check"] == "capability"
    assert f.case["exceeded"] == [
        {"household": "h0", "export_wh": 500, "capability_wh": 0.0, "limit_wh": 10.0}
    ]
    assert f.per_household[0]["deviation_w"] == -2000.0  # 500 Wh in 15 min beyond 0 W
    # a few Wh (meter start-up) or MPE of what it imports is no export claim
    assert capability_finding(_claims([0, 3000], [10, 0]), cap, B).named == ()
    assert capability_finding(_claims([2000, 0], [20, 0]), cap, B).named == ()
    assert capability_finding(_claims([2000, 0], [21, 0]), cap, B).named == (0,)


def test_a_5_kwp_household_may_export_1_2_kwh_in_15_min_but_not_1_5() -> None:
    cap = ExportCapability({"h0": 5000.0, "h1": 0.0})
    assert capability_finding(_claims([0, 400], [1200, 0]), cap, B).named == ()
    # 1,250 Wh × (1.05 + class B's 1 %) = 1,325 Wh
    assert capability_finding(_claims([0, 400], [1325, 0]), cap, B).named == ()
    f = capability_finding(_claims([0, 400], [1500, 0]), cap, B)
    assert f.named == (0,)
    assert f.case["exceeded"][0]["limit_wh"] == 1325.0  # type: ignore[index]
    assert f.per_household[0]["deviation_w"] == -1000.0
    # a worse meter class has more headroom
    assert capability_finding(_claims([0, 400], [1330, 0]), cap, B).named == (0,)
    assert capability_finding(_claims([0, 400], [1330, 0]), cap, BalanceConfig("A")).named == ()


def test_an_unverified_claim_is_not_named() -> None:
    c = _claims([0, 0], [500, 0])
    c.verified[0] = False
    assert capability_finding(c, ExportCapability({"h0": 0.0, "h1": 0.0}), B).named == ()


def test_the_balance_check_names_by_capability_and_holds_no_one_for_it() -> None:
    cap = ExportCapability({"h0": 0.0, "h1": 5000.0})
    # h0 claims 500 Wh export while (the transformer says) importing: the balance is broken
    claims = _claims([0, 0], [500, 1000], t_imp=0, t_exp=500)
    assert BalanceCheck(B)(claims).held == (0, 1)
    f = BalanceCheck(B, cap)(claims)
    assert f.named == (0,) and f.held == ()
    # the same rule in both checks
    assert f == capability_finding(claims, cap, B)


def test_capabilities_come_from_the_spec() -> None:
    scn = load_scenario(ROOT / "sim" / "community-20.yaml")
    by_id = {h.id: h for h in scn.households}
    assert export_capability_w(by_id["h01"]) == 5500.0 + 5000.0  # PV 5.5 kWp, battery 5 kW
    assert export_capability_w(by_id["h02"]) == 6500.0
    assert export_capability_w(by_id["h10"]) == 5000.0  # battery only
    assert export_capability_w(by_id["h05"]) == 0.0
    assert export_capability_w(by_id["h18"]) == 0.0  # an EV charger only draws


@pytest.mark.parametrize(
    "value", [-1.0, math.nan, math.inf, -math.inf, 1e9, True, "5000", None, np.int64(3)]
)
def test_hostile_capabilities_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"capability_w\[h0\]"):
        ExportCapability({"h0": value})  # type: ignore[dict-item]


def test_a_household_without_a_capability_is_refused() -> None:
    with pytest.raises(ValueError, match="h1"):
        capability_finding(_claims([0, 0], [0, 0]), ExportCapability({"h0": 0.0}), B)
    with pytest.raises(ValueError, match="ids are strings"):
        ExportCapability({3: 0.0})  # type: ignore[dict-item]


KASSEL = Place(51.32, 9.50, 160.0)
MIDNIGHT = 1_776_816_000 // 900  # 2026-04-22 00:00 UTC, an interval index
NOON = MIDNIGHT + 11 * 4  # 11:00 UTC


def _at(interval: int, exp: list[int]) -> Claims:
    return dataclasses.replace(_claims([0] * len(exp), exp), interval=interval)


def test_with_the_place_known_pv_exports_nothing_at_night_and_batteries_still_their_kw() -> None:
    # h0: 9.5 kWp, no battery (community-20's h09); h1: 5.5 kWp + 5 kW battery
    kw = {"h0": 9500.0, "h1": 10_500.0}
    pv = {"h0": 9500.0, "h1": 5500.0}
    sunny, blind = ExportCapability(kw, pv, KASSEL), ExportCapability(kw, pv)
    night = _at(MIDNIGHT, [250, 1400])  # 1 kW from h0; 5.6 kW from h1 at midnight
    assert capability_finding(night, blind, B).named == ()  # kWp at every hour: both pass
    f = capability_finding(night, sunny, B)
    assert f.named == (0, 1) and f.case is not None and f.case["sun_share"] == 0.0
    assert f.case["exceeded"][0]["capability_wh"] == 0.0
    assert f.case["exceeded"][1]["capability_wh"] == 1250.0  # the battery's 5 kW
    assert capability_finding(_at(MIDNIGHT, [10, 1325]), sunny, B).named == ()
    # at 11:00 UTC the sun allows the full rating: the same as without the place
    day = _at(NOON, [2400, 2600])
    assert capability_finding(day, sunny, B) == capability_finding(day, blind, B)
    assert capability_finding(_at(NOON, [2520, 0]), sunny, B).named == (0,)  # 2,517.5 Wh


def test_the_place_never_makes_the_bound_weaker() -> None:
    kw, pv = {"h0": 9500.0, "h1": 10_500.0}, {"h0": 9500.0, "h1": 5500.0}
    sunny, blind = ExportCapability(kw, pv, KASSEL), ExportCapability(kw, pv)
    for interval in range(MIDNIGHT, MIDNIGHT + 96, 3):
        share = sunny.sun_share(interval, 0.25)
        assert 0.0 <= share <= 1.0
        assert (sunny.of(["h0", "h1"], share) <= blind.of(["h0", "h1"])).all()
        assert sunny.of(["h0", "h1"], share)[1] >= 5000.0  # the battery at any hour


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, 1e9, True, "5000", None])
def test_hostile_pv_ratings_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"pv_w\[h0\]"):
        ExportCapability({"h0": 5000.0}, {"h0": value})  # type: ignore[dict-item]


def test_a_pv_rating_beyond_the_capability_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pv_w\[h1\].*exceeds"):
        ExportCapability({"h0": 5000.0}, {"h1": 100.0})
    with pytest.raises(ValueError, match=r"pv_w\[h0\].*exceeds"):
        ExportCapability({"h0": 5000.0}, {"h0": 5000.5})


def test_the_spec_s_location_reaches_the_check() -> None:
    scn = load_scenario(ROOT / "sim" / "community-20.yaml")
    cap = export_capability(scn)
    assert cap.place == Place(51.32, 9.5, 160.0)
    assert cap.pv_w["h09"] == 9500.0 and cap.pv_w["h10"] == 0.0  # h10: battery only
    no_place = export_capability(scn.model_copy(update={"location": None}))
    assert no_place.place is None and no_place.sun_share(MIDNIGHT, 0.25) == 1.0


@pytest.fixture(scope="module")
def c20() -> tuple[FeederCheck, AcFeeder, np.ndarray, int]:
    """community-20 assembled (its feeder check with capabilities), its true AC world, the
    household buses and the transformer's LV bus."""
    scn = load_scenario(ROOT / "sim" / "community-20.yaml")
    com = assemble(scn, scn.base_dir, mode="none")
    assert isinstance(com.physics, FeederCheck) and com.feeder is not None
    check = com.physics
    return check, AcFeeder(com.feeder.net, com.feeder.buses, com.ids), com.feeder.buses, com.ids


def _feeder_claims(c20, p_true_w: np.ndarray, claimed_w: np.ndarray) -> Claims:
    """Exact meters of a world drawing ``p_true_w`` (W, load convention, no reactive power)
    whose households claim ``claimed_w`` instead, over 15 min."""
    check, truth, buses, ids = c20
    ac = truth.run(p_true_w, np.zeros(len(p_true_w)))
    dt_h = 0.25
    e_wh = np.round(claimed_w * dt_h).astype(np.int64)
    t_wh = round(ac.p_trafo_w * dt_h)
    return Claims(
        interval=T0, households=list(ids), import_wh=np.maximum(e_wh, 0),
        export_wh=np.maximum(-e_wh, 0), verified=np.ones(len(ids), dtype=bool),
        v_pu=truth.vm_pu(buses), trafo_import_wh=max(t_wh, 0), trafo_export_wh=max(-t_wh, 0),
        trafo_v_pu=float(truth.vm_pu(np.array([check.estimator.trafo_lv_bus]))[0]), dt_h=dt_h,
    )  # fmt: skip


@pytest.mark.slow
def test_on_a_feeder_the_named_claim_leaves_and_honest_neighbours_are_not_held(c20) -> None:
    check, _, _, ids = c20
    rng = np.random.default_rng(5)
    cap_w = check.capability.of(ids)  # type: ignore[union-attr]
    # loads everywhere, PV households exporting within their capability
    p_w = np.where(cap_w > 0, -0.6 * cap_w, 0.0) + rng.uniform(300.0, 1500.0, len(ids))
    honest = _feeder_claims(c20, p_w, p_w)
    assert check(honest).case is None
    k = ids.index("h05")  # no PV, no battery: imports ~1 kW, claims 2 kW export
    claimed = p_w.copy()
    claimed[k] = -2000.0
    lying = _feeder_claims(c20, p_w, claimed)
    without = FeederCheck(check.estimator, check.balance)(lying)
    assert k in without.held or k in without.named  # estimation alone sees the lie...
    assert len(without.held) > 1  # ...but holds honest neighbours with it
    f = check(lying)
    assert f.named == (k,) and f.held == ()
    assert f.case is not None and f.case["check"] == "capability"
    assert f.case["exceeded"][0]["export_wh"] == 500  # type: ignore[index]
    # the estimator got the others' claims and a free state for h05
    m = check.measurements(lying, f.named)
    assert m is not None
    assert np.isnan(m.p_w[check.estimator.names.index("h05")])
    assert np.isfinite(np.delete(m.p_w, check.estimator.names.index("h05"))).all()


@pytest.mark.slow
def test_on_a_feeder_the_named_households_free_power_absorbs_a_second_cheat(c20) -> None:
    """What freeing the named claim costs: the transformer balance then fixes only the named
    household's power, so a second cheat within capability that only the balance sees (the
    0.1 % voltages do not) goes unseen in that interval."""
    check, _, _, ids = c20
    cap_w = check.capability.of(ids)  # type: ignore[union-attr]
    p_w = np.where(cap_w > 0, -0.3 * cap_w, 0.0) + 800.0
    claimed = p_w.copy()
    claimed[ids.index("h05")] = -2000.0  # beyond capability: named
    claimed[ids.index("h09")] -= 6000.0  # 9.5 kWp: within capability
    lying = _feeder_claims(c20, p_w, claimed)
    assert FeederCheck(check.estimator, check.balance)(lying).held  # without capability: held
    f = check(lying)
    assert f.named == (ids.index("h05"),) and f.held == ()
    e = check.estimator.estimate(check.estimator.prepare(check.measurements(lying, f.named)))
    # h05's estimated power carries h09's lie: 800 W imported, 6 kW more export claimed by h09
    assert e.p_w[check.estimator.names.index("h05")] == pytest.approx(800.0 + 6000.0, abs=300)
