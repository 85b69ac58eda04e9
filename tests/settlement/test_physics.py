"""Claims against physics: the transformer balance, named and held households, holds released
or forfeited by later transactions, and the ledger still verifying throughout."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gridctl.core import ACCURACY_CLASS_MPE
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import TRANSFORMER_METER, main_meter
from gridctl.settlement.holds import FORFEITED, HOLDING
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.physics import BalanceCheck, BalanceConfig, Claims, Finding
from gridctl.settlement.pool import ISSUANCE, household_account
from gridctl.settlement.registry import register_meter
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.signing import MeterSigner, key_from_seed, public_bytes
from gridctl.settlement.statement import statement
from tests.keys import COORDINATOR_KEY

T0 = 2_000_000
CFG = SettlementConfig(community_per_kwh=0.20, reward_tokens_per_kwh=1.0, review_intervals=2)


def _claims(imp: list[int], exp: list[int], t_imp: int, t_exp: int) -> Claims:
    n = len(imp)
    return Claims(
        interval=T0, households=[f"h{k}" for k in range(n)], import_wh=np.array(imp),
        export_wh=np.array(exp), verified=np.ones(n, dtype=bool), v_pu=np.full(n, np.nan),
        trafo_import_wh=t_imp, trafo_export_wh=t_exp, trafo_v_pu=float("nan"), dt_h=0.25,
    )  # fmt: skip


def test_balance_within_the_meters_classes_is_consistent_and_a_breach_holds_everyone() -> None:
    check = BalanceCheck(BalanceConfig(loss_budget=0.0))
    rng = np.random.default_rng(3)
    held = 0
    for _ in range(2000):  # honest meters: errors N(0, MPE/3), households B, transformer C
        e = rng.uniform(0, 2000, 20).round()
        sign = rng.choice([-1, 1], 20)
        meas = e * (1 + rng.normal(0, ACCURACY_CLASS_MPE["B"] / 3, 20))
        net = float((sign * e).sum())
        t = net * (1 + rng.normal(0, ACCURACY_CLASS_MPE["C"] / 3))
        imp = np.where(sign > 0, meas, 0).round().astype(int).tolist()
        exp = np.where(sign < 0, meas, 0).round().astype(int).tolist()
        f = check(_claims(imp, exp, max(round(t), 0), max(-round(t), 0)))
        held += bool(f.held)
    assert held <= 2  # z = 4: about 1 in 16,000 honest intervals
    # h1 claims 1,000 Wh of export the transformer never saw
    f = check(_claims([2000, 0], [0, 1800], 1200, 0))
    assert f.held == (0, 1) and not f.named and f.case is not None
    assert f.case["check"] == "balance" and f.case["loss_wh"] == 1000.0


def test_a_household_without_a_verified_reading_leaves_no_balance_to_check() -> None:
    c = _claims([2000, 0], [0, 1800], 1200, 0)
    c.verified[1] = False
    assert BalanceCheck()(c) == Finding()


class _Names:
    """A physics check that names one household in the intervals given (a stand-in for the
    state estimator, whose own tests are in tests/grid)."""

    def __init__(self, who: int, intervals: set[int]):
        self.who, self.intervals = who, intervals
        self.balance = BalanceCheck()

    def __call__(self, claims: Claims) -> Finding:
        if claims.interval in self.intervals:
            case = {"check": "test", "why": "named by the test"}
            fig = {self.who: {"rn": 9.5, "deviation_w": -4000.0}}
            return Finding(named=(self.who,), case=case, per_household=fig)
        return self.balance(claims)


def _community(db: Path, physics=None) -> tuple[Ledger, Settler, dict[str, MeterSigner]]:
    led = Ledger(db, COORDINATOR_KEY)
    signers = {}
    for meter, h, role, rated in (
        (main_meter("h0"), "h0", "main", 10_000.0),
        (main_meter("h1"), "h1", "main", 10_000.0),
        (TRANSFORMER_METER, None, "transformer", 100_000.0),
    ):
        s = MeterSigner(meter, key_from_seed(meter.encode()))
        register_meter(led, meter, h, role, rated, public_bytes(s.key), T0)
        signers[meter] = s
    return led, Settler(led, CFG, physics=physics), signers


def _settle(settler: Settler, s: dict[str, MeterSigner], iv: int, c: tuple[int, int, int]):
    """h0 draws c[0] Wh, h1 exports c[1] Wh, the transformer counts c[2] Wh (cumulative)."""
    return settler.settle(iv, [
        s[main_meter("h0")].sign(iv, c[0], 0), s[main_meter("h1")].sign(iv, 0, c[1]),
        s[TRANSFORMER_METER].sign(iv, c[2], 0),
    ])  # fmt: skip


def _balance(db: Path, account: str, asset: str) -> int:
    con = sqlite3.connect(db)
    q = "SELECT COALESCE(SUM(amount), 0) FROM entries WHERE account = ? AND asset = ?"
    v = con.execute(q, (account, asset)).fetchone()[0]
    con.close()
    return v


def test_a_balance_breach_holds_rewards_and_a_later_interval_releases_them(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led, settler, s = _community(db)
    _settle(settler, s, T0, (0, 0, 0))  # counters at joining
    ok = _settle(settler, s, T0 + 1, (1000, 400, 640))  # 600 Wh net + 40 Wh losses
    assert ok.status == ["verified", "verified"] and not ok.finding.held
    bad = _settle(settler, s, T0 + 2, (2000, 1800, 1280))  # h1 claims 1000 Wh unseen
    assert bad.status == ["verified", "verified"] and bad.finding.held == (0, 1)
    assert bad.settlement is not None and bad.settlement.tokens_micro.tolist() == [0, 0]
    held_tokens = _balance(db, HOLDING, "token")
    held_money = _balance(db, HOLDING, "currency")
    assert held_tokens == 1_000_000 and held_money == 200_000  # h1 shared 1 kWh at 0.20
    assert _balance(db, household_account("h1"), "token") == 400_000  # the honest interval's
    row = {r.interval: r for r in statement(db, "h1")}[T0 + 2]
    assert row.held_tokens == held_tokens and row.tokens == held_tokens
    assert row.held == held_money and row.case == "held"
    assert verify_ledger(db).ok
    _settle(settler, s, T0 + 3, (2000, 1800, 1280))  # nothing flows, nothing is due yet
    assert _balance(db, HOLDING, "token") == held_tokens
    _settle(settler, s, T0 + 4, (2000, 1800, 1280))  # review time up: released
    assert _balance(db, HOLDING, "token") == 0 and _balance(db, HOLDING, "currency") == 0
    assert verify_ledger(db).ok
    con = sqlite3.connect(db)
    kinds = [
        r[0] for r in con.execute("SELECT kind FROM transactions WHERE interval = ?", (T0 + 4,))
    ]
    cases = con.execute("SELECT household, outcome, method FROM cases").fetchall()
    con.close()
    assert kinds == ["hold_release"]  # h0 only paid: it had no credits to hold
    released = {r.interval: r for r in statement(db, "h1")}[T0 + 4]
    assert released.held_tokens == -held_tokens
    assert sorted(cases) == [("h0", "held", "balance"), ("h1", "held", "balance")]
    led.close()


def test_a_named_household_earns_nothing_and_forfeits_what_was_held(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led, settler, s = _community(db, physics=_Names(1, {T0 + 3}))
    _settle(settler, s, T0, (0, 0, 0))
    assert not _settle(settler, s, T0 + 1, (1000, 400, 640)).finding.held
    _settle(settler, s, T0 + 2, (1000, 400, 640))
    named = _settle(settler, s, T0 + 3, (1500, 900, 640))
    assert named.status[1] == "rejected" and named.reason[1] == "physics_inconsistent"
    assert named.export_wh[1] == 0 and named.settlement is not None
    assert named.settlement.tokens_micro[1] == 0 and named.settlement.earned_micro[1] == 0
    con = sqlite3.connect(db)
    row = con.execute(
        "SELECT status, reason FROM meter_readings WHERE meter = ? AND interval = ?",
        (main_meter("h1"), T0 + 3),
    ).fetchone()
    case = con.execute("SELECT outcome, rn, deviation_w FROM cases WHERE interval = ?",
                       (T0 + 3,)).fetchall()  # fmt: skip
    con.close()
    assert row == ("rejected", "physics_inconsistent")
    assert case == [("named", 9.5, -4000.0)]
    assert verify_ledger(db).ok
    led.close()


def test_holds_of_a_named_household_are_forfeited_and_others_released(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led, settler, s = _community(db, physics=_Names(1, {T0 + 3}))
    _settle(settler, s, T0, (0, 0, 0))
    bad = _settle(settler, s, T0 + 1, (2000, 1800, 1200))  # h1 claims 1,000 Wh unseen
    assert bad.finding.held == (0, 1)
    tokens_h1 = _balance(db, HOLDING, "token")
    money_h1 = _balance(db, HOLDING, "currency")
    assert tokens_h1 > 0 and money_h1 > 0
    issued_before = -_balance(db, ISSUANCE, "token")
    _settle(settler, s, T0 + 2, (2000, 1800, 1200))
    _settle(settler, s, T0 + 3, (2000, 1800, 1200))  # h1 named here; the T0+1 hold is due
    assert _balance(db, HOLDING, "token") == 0
    assert _balance(db, FORFEITED, "currency") == money_h1
    assert -_balance(db, ISSUANCE, "token") == issued_before - tokens_h1  # tokens burnt
    assert _balance(db, household_account("h1"), "token") == 0
    assert verify_ledger(db).ok
    led.close()


@pytest.mark.parametrize("cls", ["D", "", "b"])
def test_an_unknown_accuracy_class_is_refused(cls: str) -> None:
    with pytest.raises(ValueError, match="household_class"):
        BalanceConfig(household_class=cls)


@pytest.mark.parametrize("v", [float("nan"), float("inf"), -1.0])
def test_hostile_tolerances_are_refused(v: float) -> None:
    with pytest.raises(ValueError, match="z"):
        BalanceConfig(z=v)


def test_holds_stay_while_physics_still_cannot_clear_the_household(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led, settler, s = _community(db)
    _settle(settler, s, T0, (0, 0, 0))
    for k in range(1, 5):  # h1 claims 1,000 Wh unseen every interval
        out = _settle(settler, s, T0 + k, (2000 * k, 1800 * k, 1200 * k))
        assert out.finding.held == (0, 1)
    # the first holds are due, but h1 is still a suspect: nothing released or forfeited
    con = sqlite3.connect(db)
    resolved = con.execute("SELECT COUNT(*) FROM transactions WHERE reverses IS NOT NULL")
    assert resolved.fetchone()[0] == 0
    con.close()
    assert _balance(db, HOLDING, "token") == 4 * 1_800_000  # 1.8 kWh shared each interval
    assert verify_ledger(db).ok
    led.close()
