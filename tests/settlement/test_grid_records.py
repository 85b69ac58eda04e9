"""The grid's prices and each household's pool shares recorded by the settlement for the
``home`` counterfactual: exact rows, recorded once per change, covered by the signed roots."""

import dataclasses
import sqlite3
from pathlib import Path

from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.grid_records import ShareRow, TariffRow, tariffs
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.registry import register_meter
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.signing import MeterSigner, key_from_seed, public_bytes
from tests.keys import COORDINATOR_KEY

T0 = 1_000_000
CFG = SettlementConfig(0.20, 1.0, grid_tariff=(0.32, 0.08))


def settled(db: Path, config: SettlementConfig = CFG) -> Ledger:
    """Three intervals of three households (``config``'s prices, the import price changed to
    0.30 at the third when it records them)."""
    led = Ledger(db, COORDINATOR_KEY)
    s = {h: MeterSigner(main_meter(h), key_from_seed(h.encode())) for h in ("h0", "h1", "h2")}
    for h, x in s.items():
        register_meter(led, x.meter, h, "main", 10_000, public_bytes(x.key), T0)
    settler = Settler(led, config)
    # cumulative counters (import, export) Wh: h0 draws 1000, h1 feeds 600, h2 draws 200
    settler.settle(T0, [s["h0"].sign(T0, 1000, 0), s["h1"].sign(T0, 0, 600),
                        s["h2"].sign(T0, 200, 0)])  # fmt: skip
    settler.settle(T0 + 1, [s["h0"].sign(T0 + 1, 1400, 0), s["h1"].sign(T0 + 1, 0, 600),
                            s["h2"].sign(T0 + 1, 200, 300)])  # fmt: skip
    if config.grid_tariff is not None:
        settler.config = dataclasses.replace(config, grid_tariff=(0.30, 0.08))
    settler.settle(T0 + 2, [s["h0"].sign(T0 + 2, 1400, 0), s["h1"].sign(T0 + 2, 0, 600),
                            s["h2"].sign(T0 + 2, 200, 300)])  # fmt: skip
    return led


def test_prices_are_recorded_per_change_and_shares_per_interval(tmp_path: Path) -> None:
    led = settled(tmp_path / "l.sqlite")
    assert tariffs(led.db) == [TariffRow(T0, 320_000, 80_000), TariffRow(T0 + 2, 300_000, 80_000)]
    rows = [ShareRow(*r) for r in led.db.execute("SELECT * FROM pool_shares ORDER BY rowid")]
    # T0: 600 Wh shared, received in proportion to import (1000:200 -> 500, 100);
    # T0+1: h2's 300 Wh go to h0 (its 400 Wh import); T0+2: nothing moves, no row
    assert rows == [
        ShareRow("h0", T0, 500, 0), ShareRow("h1", T0, 0, 600), ShareRow("h2", T0, 100, 0),
        ShareRow("h0", T0 + 1, 300, 0), ShareRow("h2", T0 + 1, 0, 300),
    ]  # fmt: skip
    assert verify_ledger(led.path).ok


def test_an_altered_price_or_share_breaks_the_signed_roots(tmp_path: Path) -> None:
    for table, change in (
        ("grid_tariffs", "UPDATE grid_tariffs SET import_micro_per_kwh = 1 WHERE at_interval = ?"),
        ("pool_shares", "UPDATE pool_shares SET received_wh = 550 WHERE interval = ? AND "
                        "household = 'h0'"),
    ):  # fmt: skip
        db = tmp_path / f"{table}.sqlite"
        settled(db).db.close()
        con = sqlite3.connect(db)
        con.execute(f"DROP TRIGGER {table}_no_update")
        con.execute(change, (T0,))
        con.commit()
        con.close()
        check = verify_ledger(db)
        assert not check.ok and f"{table} rows differ" in str(check.problem), check.problem
