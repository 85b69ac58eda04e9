"""Settling signed readings: forgery, VEE outcomes, exactly-once booking, conservation."""

import dataclasses
import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.core import LedgerError
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import SyntheticCommunity, main_meter
from gridctl.settlement.ledger import (
    Ledger,
    LedgerConflictError,
    Posting,
    Transaction,
)
from gridctl.settlement.pool import ISSUANCE, POOL
from gridctl.settlement.registry import register_meter, revoke_key, rotate_key
from gridctl.settlement.settle import FlexTarget, SettlementConfig, Settler
from gridctl.settlement.signing import (
    MeterSigner,
    SignedReading,
    key_from_seed,
    parse_reading,
    public_bytes,
)
from tests.keys import COORDINATOR_KEY

T0 = 1_000_000
CFG = SettlementConfig(community_per_kwh=0.20, reward_tokens_per_kwh=1.0)


def _signer(name: str) -> MeterSigner:
    return MeterSigner(name, key_from_seed(name.encode()))


def _community(
    db: Path, homes: int = 3, rated_w: float = 10_000.0, inverter: bool = False
) -> tuple[Ledger, Settler, dict[str, MeterSigner]]:
    led = Ledger(db, COORDINATOR_KEY)
    signers = {}
    for k in range(homes):
        h = f"h{k}"
        s = _signer(main_meter(h))
        register_meter(led, s.meter, h, "main", rated_w, public_bytes(s.key), T0)
        signers[s.meter] = s
        if inverter:
            s = _signer(f"{h}/inverter")
            register_meter(led, s.meter, h, "inverter", rated_w, public_bytes(s.key), T0)
            signers[s.meter] = s
    return led, Settler(led, CFG), signers


def _state(db: Path) -> tuple:
    con = sqlite3.connect(db)
    out = tuple(
        con.execute(q).fetchall()
        for q in (
            "SELECT * FROM entries ORDER BY seq",
            "SELECT * FROM transactions ORDER BY tx_id",
            "SELECT * FROM interval_roots ORDER BY interval",
            "SELECT * FROM meter_readings ORDER BY meter, interval",
            "SELECT * FROM rejects ORDER BY digest",
            "SELECT * FROM estimates ORDER BY meter, interval",
        )
    )
    con.close()
    return out


# -- forgery ---------------------------------------------------------------------------------


def test_forged_readings_are_rejected_with_their_reason(tmp_path: Path) -> None:
    led, settler, signers = _community(tmp_path / "l.sqlite")
    a, b = signers[main_meter("h0")], signers[main_meter("h1")]
    good = a.sign(T0, 100, 0)
    settler.settle(T0, [good, b.sign(T0, 50, 0)])
    mallory = key_from_seed(b"mallory")
    honest = a.sign(T0 + 1, 200, 0)
    cases = {
        "unsigned": SignedReading(a.meter, T0 + 1, 9, 300, 0, a.key_id, b""),
        "bad_signature": SignedReading(
            a.meter, T0 + 1, honest.seq, 9_000, 0, a.key_id, honest.signature
        ),
        "unknown_key": MeterSigner(a.meter, mallory).sign(T0 + 1, 300, 0),
        # h1's valid key signing a reading that claims to be h0's meter
        "other_meter": SignedReading(
            a.meter, T0 + 1, 5, 300, 0, b.key_id,
            b.key.sign(b"anything"),
        ),
        "replayed_interval": good,  # h0's genuine reading of T0, offered again for T0 + 1
        "unknown_meter": MeterSigner("h9/main", mallory).sign(T0 + 1, 1, 0),
    }  # fmt: skip
    out = settler.settle(T0 + 1, [*cases.values(), honest])
    assert sorted(out.rejected) == sorted((r.meter, why) for why, r in cases.items())
    assert out.status[0] == "verified" and out.import_wh[0] == 100
    con = sqlite3.connect(led.path)
    assert {r for (r,) in con.execute("SELECT reason FROM rejects")} == set(cases)


def test_revoked_and_rotated_keys(tmp_path: Path) -> None:
    led, settler, signers = _community(tmp_path / "l.sqlite")
    a, b = signers[main_meter("h0")], signers[main_meter("h1")]
    settler.settle(T0, [a.sign(T0, 10, 0), b.sign(T0, 10, 0)])
    revoke_key(led, a.key_id, T0 + 1)
    old_b = MeterSigner(b.meter, b.key, b.seq)
    new_b = MeterSigner(b.meter, key_from_seed(b"h1-new"), b.seq)
    rotate_key(led, b.meter, public_bytes(new_b.key), T0 + 1)
    out = settler.settle(
        T0 + 1, [a.sign(T0 + 1, 20, 0), old_b.sign(T0 + 1, 20, 0), new_b.sign(T0 + 1, 20, 0)]
    )
    assert sorted(out.rejected) == [(a.meter, "revoked_key"), (b.meter, "superseded_key")]
    assert out.status[:2] == ["missing", "verified"] and out.import_wh[1] == 10


def test_two_different_signed_readings_for_one_interval_are_both_refused(tmp_path: Path) -> None:
    _, settler, signers = _community(tmp_path / "l.sqlite")
    a = signers[main_meter("h0")]
    first = a.sign(T0, 10, 0)
    second = SignedReading(a.meter, T0, first.seq, 12, 0, a.key_id, b"")
    second = SignedReading(a.meter, T0, first.seq, 12, 0, a.key_id, a.key.sign(second.payload()))
    out = settler.settle(T0, [first, second, first])  # the exact duplicate is harmless
    assert out.rejected == [(a.meter, "conflicting_readings")] * 2
    assert out.status[0] == "missing"


# -- VEE -------------------------------------------------------------------------------------


def test_continuity_plausibility_spike_and_gaps(tmp_path: Path) -> None:
    led, settler, s = _community(tmp_path / "l.sqlite", homes=5, rated_w=4_000.0)
    m = [s[main_meter(f"h{k}")] for k in range(5)]
    # 4 kW for 15 min is 1000 Wh; 1.05 x that is the most an interval may carry
    for t in range(6):
        out = settler.settle(T0 + t, [x.sign(T0 + t, 100 * (t + 1), 0) for x in m])
        assert out.status == ["verified"] * 5
    t = T0 + 6
    readings = [
        m[0].sign(t, 500, 0),  # counter went down from 600
        m[1].sign(t, 600 + 1051, 0),  # 1051 Wh > 1050 Wh
        m[2].sign(t, 600 + 1000, 0),  # a spike: 10x its usual 100 Wh, near its rating
        m[3].sign(t, 700, 0),  # normal
    ]
    stale = SignedReading(m[4].meter, t, 6, 700, 0, m[4].key_id, b"")  # seq 6 was used at T0+5
    stale = SignedReading(m[4].meter, t, 6, 700, 0, m[4].key_id, m[4].key.sign(stale.payload()))
    out = settler.settle(t, [*readings, stale])
    assert out.reason == ["counter_decrease", "implausible", "spike", None, "sequence_replay"]
    assert out.status == ["rejected"] * 3 + ["verified", "rejected"]
    # h3 misses two intervals: its next reading spreads the energy over the gap, no reward
    for k in (7, 8):
        settler.settle(T0 + k, [x.sign(T0 + k, 0, 0) for x in ()])
    out = settler.settle(T0 + 9, [m[3].sign(T0 + 9, 700, 901)])
    assert out.status[3] == "estimated" and out.reason[3] == "gap_filled"
    assert out.export_wh[3] == 0 and out.settlement is not None
    assert not out.settlement.transactions  # estimated energy earns nothing
    con = sqlite3.connect(led.path)
    est = con.execute(
        "SELECT interval, d_export_wh, status FROM readings WHERE household = 'h3' AND"
        " interval > ? ORDER BY interval",
        (T0 + 6,),
    ).fetchall()
    assert est == [(T0 + 7, 301, "estimated"), (T0 + 8, 300, "estimated"),
                   (T0 + 9, 901, "estimated")]  # fmt: skip


def test_counter_roll_over_is_handled(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite", COORDINATOR_KEY)
    a = _signer("h0/main")
    register_meter(
        led, a.meter, "h0", "main", 10_000, public_bytes(a.key), T0,
        e_import_wh=999_900, counter_modulus_wh=1_000_000,
    )  # fmt: skip
    out = Settler(led, CFG).settle(T0, [a.sign(T0, 150, 0)])
    assert out.status == ["verified"] and out.import_wh.tolist() == [250]


def test_inverter_must_agree_with_the_meter(tmp_path: Path) -> None:
    _, settler, s = _community(tmp_path / "l.sqlite", homes=2, inverter=True)
    rs = [
        s["h0/main"].sign(T0, 0, 2000), s["h0/inverter"].sign(T0, 0, 2070),  # within 4 %
        s["h1/main"].sign(T0, 0, 2000), s["h1/inverter"].sign(T0, 0, 1800),  # 10 % off
    ]  # fmt: skip
    out = settler.settle(T0, rs)
    assert out.status == ["verified", "rejected"] and out.reason[1] == "inverter_mismatch"
    small = [s["h1/main"].sign(T0 + 1, 0, 2090), s["h1/inverter"].sign(T0 + 1, 0, 1880)]
    assert settler.settle(T0 + 1, small).status[1] == "verified"  # 90 vs 80 Wh: within 100 Wh


def test_flexibility_delivered_as_planned_earns_tokens(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite", COORDINATOR_KEY)
    settler = Settler(led, SettlementConfig(0.2, 1.0, flex_tokens_per_kwh=2.0))
    s = {h: _signer(main_meter(h)) for h in ("h0", "h1")}
    for h, x in s.items():
        register_meter(led, x.meter, h, "main", 10_000, public_bytes(x.key), T0)
    plan = {"h0": FlexTarget(flex_wh=1000, planned_net_wh=-500),
            "h1": FlexTarget(flex_wh=1000, planned_net_wh=-500)}  # fmt: skip
    out = settler.settle(T0, [s["h0"].sign(T0, 0, 500), s["h1"].sign(T0, 0, 200)], flex=plan)
    # h0 met the plan: 1 kWh of flexibility; h1 missed it by 300 Wh: 0.7 kWh
    assert out.settlement is not None
    assert out.settlement.tokens_micro.tolist() == [2_000_000, 1_400_000]
    assert verify_ledger(led.path).ok


# -- exactly once ----------------------------------------------------------------------------


def test_replaying_readings_three_times_shuffled_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led = Ledger(db, COORDINATOR_KEY)
    c = SyntheticCommunity(12, T0, seed=3)
    c.enrol(led)
    settler = Settler(led, CFG)
    batches = [c.readings(T0 + t) for t in range(8)]
    forged = SignedReading(main_meter(c.households[0]), T0 + 2, 99, 1, 1, "00" * 8, b"x" * 64)
    batches[2].append(forged)
    for t, b in enumerate(batches):
        settler.settle(T0 + t, b)
    before = _state(db)
    head = led.head
    rng = random.Random(5)
    for _ in range(3):
        order = [(t, r) for t, b in enumerate(batches) for r in b]
        rng.shuffle(order)
        for t, r in order:
            out = settler.settle(T0 + t, [r])
            assert out.already_settled and out.booked == 0
        restarted = Settler(led, CFG)  # a restarted coordinator re-feeding everything
        for t, b in enumerate(batches):
            restarted.settle(T0 + t, rng.sample(b, len(b)))
    assert _state(db) == before and led.head == head
    assert verify_ledger(db).ok


def test_a_reading_s_voltage_is_stored_and_a_v1_copy_of_it_is_another_reading(
    tmp_path: Path,
) -> None:
    """v2 readings settle like v1 ones and keep their voltage; the same counters signed without
    the voltage (or a voltage stripped off) are a conflicting or forged reading, not a duplicate."""
    db = tmp_path / "l.sqlite"
    led, settler, signers = _community(db)
    a, b, c = (signers[main_meter(h)] for h in ("h0", "h1", "h2"))
    first = [a.sign(T0, 100, 0, v_mv=231_250), b.sign(T0, 50, 0), c.sign(T0, 0, 80, v_mv=0)]
    out = settler.settle(T0, [parse_reading(json.dumps(r.to_message())) for r in first])
    assert out.status == ["verified"] * 3
    again = settler.settle(T0, first)  # exact duplicates: nothing new
    assert again.already_settled and again.rejected == []
    honest = a.sign(T0 + 1, 110, 0, v_mv=230_000)
    stripped = dataclasses.replace(honest, v_mv=None)  # the voltage dropped, the signature kept
    assert stripped.digest() != honest.digest()
    outs = settler.settle(T0 + 1, [honest, b.sign(T0 + 1, 60, 0), c.sign(T0 + 1, 0, 90), stripped])
    assert outs.status == ["verified"] * 3 and outs.rejected == [("h0/main", "bad_signature")]
    con = sqlite3.connect(db)
    stored = con.execute(
        "SELECT meter, interval, v_mv FROM meter_readings ORDER BY interval, meter"
    )
    assert stored.fetchall() == [
        ("h0/main", T0, 231_250), ("h1/main", T0, None), ("h2/main", T0, 0),
        ("h0/main", T0 + 1, 230_000), ("h1/main", T0 + 1, None), ("h2/main", T0 + 1, None),
    ]  # fmt: skip
    digests = dict(con.execute("SELECT meter, digest FROM meter_readings WHERE interval = ?",
                               (T0,)).fetchall())  # fmt: skip
    assert digests["h0/main"] == first[0].digest() and digests["h1/main"] == first[1].digest()
    con.close()
    led.close()
    assert verify_ledger(db).ok


def test_same_key_with_another_amount_is_refused_and_recorded(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led = Ledger(db, COORDINATOR_KEY)

    def reward(amount: int) -> Transaction:
        return Transaction(
            f"{T0}:h0/main:reward", T0, "reward",
            (Posting(ISSUANCE, "token", -amount), Posting("household:h0", "token", amount)),
            meter="h0/main",
        )  # fmt: skip

    assert led.append([reward(500)]) == 1
    assert led.append([reward(500)]) == 0  # the same again: nothing
    before = _state(db)
    with pytest.raises(LedgerConflictError, match=r"\(h0/main, 1000000, reward\)"):
        led.append([reward(501)])
    assert _state(db) == before
    (conflict,) = led.conflicts()
    assert conflict[:4] == ("h0/main", T0, "reward", f"{T0}:h0/main:reward")
    assert conflict[4] != conflict[5]
    assert verify_ledger(db).ok


def test_corrections_are_reversals_and_closed_intervals_take_no_entries(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    led = Ledger(db, COORDINATOR_KEY)
    tx = Transaction(
        "t1", T0, "pool_payment",
        (Posting("household:h0", "currency", -7), Posting(POOL, "currency", 7)), meter="h0/main",
    )  # fmt: skip
    back = Transaction(
        "t2", T0, "pool_payout",
        (Posting(POOL, "currency", -7), Posting("household:h1", "currency", 7)), meter="h1/main",
    )  # fmt: skip
    with led.atomic():
        led.append([tx, back])
        led.close_interval(T0)
    with pytest.raises(LedgerError, match="closed"):
        led.append([Transaction("t3", T0, "x", (Posting("a", "c", 1), Posting("b", "c", -1)))])
    with led.atomic():
        led.append([led.reversal_of("t1", T0 + 1), led.reversal_of("t2", T0 + 1)])
        led.close_interval(T0 + 1)
    assert all(v == 0 for v in led.balances().values())
    assert verify_ledger(db).ok


# -- conservation, over random reading streams -----------------------------------------------


@st.composite
def _streams(draw: st.DrawFn) -> tuple[int, list[list[tuple[str, int]]], int]:
    homes = draw(st.integers(2, 6))
    intervals = draw(st.integers(1, 6))
    events = draw(
        st.lists(
            st.lists(
                st.tuples(
                    st.sampled_from(["ok", "ok", "ok", "drop", "dup", "forge", "stale"]),
                    st.integers(0, homes - 1),
                ),
                max_size=3,
            ),
            min_size=intervals,
            max_size=intervals,
        )
    )
    return homes, events, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams())
def test_random_streams_conserve_money_and_tokens(tmp_path_factory, stream) -> None:
    homes, events, seed = stream
    db = tmp_path_factory.mktemp("p") / "l.sqlite"
    led = Ledger(db, COORDINATOR_KEY)
    c = SyntheticCommunity(homes, T0, seed=seed, with_transformer=seed % 2 == 0)
    c.enrol(led)
    settler = Settler(led, CFG)
    rng = random.Random(seed)
    issued_by_outcome = 0
    for t, evs in enumerate(events):
        sent = c.readings(T0 + t)
        batch = list(sent)
        for what, k in evs:
            r = sent[k]
            if what == "drop" and r in batch:
                batch.remove(r)
            elif what == "dup":
                batch.append(r)
            elif what == "forge":
                batch.append(SignedReading(r.meter, r.interval, r.seq, r.e_import_wh + 5,
                                           r.e_export_wh, r.key_id, r.signature))  # fmt: skip
            elif what == "stale" and t:
                batch.append(c.signers[r.meter].sign(T0 + t - 1, 0, 0))
        rng.shuffle(batch)
        out = settler.settle(T0 + t, batch)
        assert out.settlement is not None
        tokens = out.settlement.tokens_micro
        # only verified households earn
        assert all(tok == 0 or s == "verified" for tok, s in zip(tokens, out.status, strict=True))
        issued_by_outcome += int(tokens.sum())
    check = verify_ledger(db)
    assert check.ok, check.problem
    assert check.token_supply == check.issued == issued_by_outcome
    con = sqlite3.connect(db)
    per_tx = con.execute("SELECT tx_id, asset, SUM(amount) FROM entries GROUP BY 1, 2").fetchall()
    assert all(total == 0 for _, _, total in per_tx)
    pool = con.execute(
        "SELECT interval, SUM(amount) FROM entries WHERE account = ? GROUP BY 1", (POOL,)
    ).fetchall()
    assert all(total == 0 for _, total in pool)
    assert np.all(np.diff([iv for (iv,) in con.execute("SELECT interval FROM interval_roots")]) > 0)
