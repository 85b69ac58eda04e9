"""An import-reduction event on stress-evening: baseline recorded before it, the delivered
flexibility measured from verified readings, paid exactly and split among those who delivered."""

import sqlite3
from pathlib import Path

import pytest

from gridctl.core import MICRO, W_PER_KW
from gridctl.settlement import flex_records as rec
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.pool import household_account
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.kpis import kpis
from gridctl.sim.report import FLEX_PLOT, write_report
from gridctl.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
PRICE = 0.30
FLEX_TOKENS = 2.0
EVENT = {"id": "evening-1", "target": "feeder", "start": "2026-01-12T17:00:00Z",
         "end": "2026-01-12T20:00:00Z", "import_max_kw": 100.0, "price_per_kwh": PRICE}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimResult:
    scn = load_scenario(ROOT / "sim" / "stress-evening.yaml")
    raw = scn.model_dump() | {
        "start": "2026-01-12T15:00:00Z", "intervals": 24, "flex_tokens_per_kwh": FLEX_TOKENS,
        "envelopes": {"events": [EVENT]},
    }  # fmt: skip
    return simulate(Scenario.model_validate(raw), tmp_path_factory.mktemp("flex") / "l.sqlite")


def _balances(path: Path, kind: str) -> dict[str, int]:
    """Each account's sum of the entries of ``kind``."""
    con = sqlite3.connect(path)
    try:
        q = "SELECT account, SUM(amount) FROM entries WHERE kind = ? GROUP BY account"
        return dict(con.execute(q, (kind,)).fetchall())
    finally:
        con.close()


def test_event_is_recorded_with_its_baseline_before_it_starts(run: SimResult) -> None:
    con = sqlite3.connect(run.ledger_path)
    (ev,) = rec.events(con)
    base = rec.baselines(con, ev.event)
    con.close()
    assert ev.direction == "import" and ev.limit_w == 100_000 and ev.recorded < ev.first
    assert ev.last - ev.first + 1 == 12  # 17:00-20:00
    assert {b.household for b in base} == set(run.household_ids)
    assert {b.interval for b in base} == set(range(ev.first, ev.last + 1))
    # the event moves charging out of its window: planned import under the baseline's
    assert sum(b.planned_wh for b in base) < sum(b.baseline_wh for b in base) - 100_000


def test_delivered_flexibility_is_paid_exactly_and_only_to_those_who_delivered(
    run: SimResult,
) -> None:
    con = sqlite3.connect(run.ledger_path)
    (ev,) = rec.events(con)
    rows = rec.deliveries(con, ev.event)
    con.close()
    assert len(rows) == len(run.household_ids) and all(r.booked == ev.last + 1 for r in rows)
    delivered = sum(r.delivered_wh for r in rows)
    assert delivered > 50_000  # cars that waited: tens of kWh
    payment = sum(r.payment_micro for r in rows)
    assert payment == round(PRICE * MICRO) * delivered // W_PER_KW  # to the micro-unit
    for r in rows:
        assert 0 <= r.delivered_wh <= r.asked_wh
        assert r.delivered_wh == min(max(r.response_wh, 0), r.asked_wh)
        if r.delivered_wh == 0:  # asked nothing, or did not respond: nothing
            assert r.payment_micro == 0 and r.tokens_micro == 0
        assert r.tokens_micro == r.delivered_wh * round(FLEX_TOKENS * MICRO) // W_PER_KW
    assert any(r.asked_wh == 0 for r in rows)  # households without a car or battery
    money, tokens = (_balances(run.ledger_path, k) for k in ("flex_payment", "flex_reward"))
    assert money.pop("grid_operator") == -payment
    assert money == {household_account(r.household): r.payment_micro for r in rows
                     if r.payment_micro}  # fmt: skip
    assert (
        -tokens.pop("token:issuance") == sum(r.tokens_micro for r in rows) == sum(tokens.values())
    )
    k = kpis(run)
    assert k["flex_events"] == 1 and k["flex_paid"] == payment / MICRO
    assert k["flex_delivered_kwh"] == round(delivered / W_PER_KW, 3)
    assert k["flex_households_paid"] == sum(r.payment_micro > 0 for r in rows)
    assert k["import_limited_intervals"] == 12
    assert verify_ledger(run.ledger_path).ok


def test_the_report_plots_the_event_against_its_baseline(run: SimResult, tmp_path: Path) -> None:
    page = write_report(run, kpis(run), tmp_path).read_text()
    assert FLEX_PLOT in page and (tmp_path / FLEX_PLOT).stat().st_size > 10_000
