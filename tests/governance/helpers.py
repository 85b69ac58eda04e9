"""A small community for governance tests: a ledger file, members with keys, readings."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.governance.book import Charter, Governance, Received, base_values
from gridctl.governance.spec import GovernanceSpec
from gridctl.governance.votes import VoteMessage, sign_vote
from gridctl.settlement import gov_records as rec
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.readings import ReadingRow
from gridctl.settlement.registry import register_meter
from gridctl.settlement.signing import key_from_seed, public_bytes
from gridctl.settlement.tables import insert_rows
from tests.keys import COORDINATOR_KEY

COMMUNITY = "oak"
IMPORT, FEED_IN = 0.32, 0.08


def member_key(household: str) -> Ed25519PrivateKey:
    """A household's member key (deterministic)."""
    return key_from_seed(f"gridctl-tests/member/{household}".encode())


def open_book(path: Path, households: list[str], spec: GovernanceSpec | None = None,
              community_per_kwh: float = 0.2) -> tuple[Ledger, Governance]:  # fmt: skip
    """A ledger at ``path`` with every household's member key enrolled from interval 0."""
    spec = spec or GovernanceSpec()
    ledger = Ledger(path, COORDINATOR_KEY)
    charter = Charter(spec, base_values(spec, community_per_kwh, 1.0, 0.0), IMPORT, FEED_IN)
    gov = Governance(ledger, COMMUNITY, charter)
    for h in households:
        gov.enrol_member(h, public_bytes(member_key(h)), 0)
    return ledger, gov


def vote(household: str, proposal: int, choice: str, seq: int = 1,
         key: Ed25519PrivateKey | None = None) -> VoteMessage:  # fmt: skip
    """``household``'s vote signed with its member key (or ``key``)."""
    return sign_vote(key or member_key(household), COMMUNITY, proposal, household, choice, seq)


def cast(household: str, proposal: int, choice: str, at: int, seq: int = 1) -> Received:
    """A vote received from ``household``'s own topic at interval ``at``."""
    return Received(household, vote(household, proposal, choice, seq), at)


def add_exports(ledger: Ledger, exports_wh: dict[str, list[tuple[int, int]]]) -> None:
    """Record verified main-meter readings: household → [(interval, export Wh)]."""
    for h, rows in exports_wh.items():
        meter = main_meter(h)
        if ledger.db.execute("SELECT 1 FROM meters WHERE meter = ?", (meter,)).fetchone() is None:
            register_meter(ledger, meter, h, "main", 17250.0, public_bytes(member_key(h + "m")), 0)
        with ledger.atomic() as db:
            insert_rows(db, "meter_readings", [
                ReadingRow(meter, iv, iv, 0, 0, "k", b"", f"{h}-{iv}", "verified", None, 0, e,
                           1, 0.0, 0.0, 1, None)
                for iv, e in rows
            ])  # fmt: skip


def reasons(ledger: Ledger) -> list[tuple[str, str | None]]:
    """(household, reason) of every recorded vote, in order of receipt."""
    return [(v.household, v.reason) for _, v in rec.votes(ledger.db)]
