"""The coordinator's side of ``gridctl gov``: submit a proposal to the community's ledger, and
find the ledger a coordinator config names.

A proposal is written to the ledger file the coordinator keeps (SQLite, so beside a running
coordinator too: it takes proposals in before it next records governance).
"""

from __future__ import annotations

from pathlib import Path

from gridctl.core import LedgerError
from gridctl.governance.params import parameter, parse_value
from gridctl.settlement import gov_records as rec

_SQLITE_MAGIC = b"SQLite format 3\x00"


def propose(config: Path, parameter_name: str, value_text: str, rationale: str, proposer: str,
            window: int, delay: int, now: int) -> rec.ProposalRow:  # fmt: skip
    """Submit a proposal at interval ``now`` to the ledger of the coordinator config ``config``.

    value_text: the value as written (``params.parse_value``). window, delay: voting window
    and timelock, intervals. GovernanceError naming the bound or rule it breaks."""
    p = parameter(parameter_name)  # before the config, whose model takes seconds to import
    value = parse_value(p, value_text)
    from gridctl.coordinator.assembly import charter
    from gridctl.coordinator.config import load_coordinator_config
    from gridctl.governance.book import Governance
    from gridctl.settlement.ledger import Ledger

    cfg = load_coordinator_config(config)
    if not cfg.ledger.is_file():
        raise LedgerError(
            f"no ledger file at {cfg.ledger}: `gridctl coordinator run` makes it and enrols "
            "the members"
        )
    with Ledger(cfg.ledger) as ledger:
        gov = Governance(ledger, cfg.community, charter(cfg))
        return gov.propose(p.name, value, rationale, proposer, window, delay, now)


def ledger_of(config_or_ledger: Path) -> Path:
    """The ledger file itself, or the one a coordinator config names (relative to it)."""
    try:
        with config_or_ledger.open("rb") as f:
            if f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                return config_or_ledger
    except OSError as e:
        raise LedgerError(f"cannot read {config_or_ledger}: {e.strerror}") from None
    from gridctl.coordinator.config import load_coordinator_config

    return load_coordinator_config(config_or_ledger).ledger
