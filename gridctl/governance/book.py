"""The community's governance, kept in its ledger file: proposals, votes, snapshots, tallies,
enactments, and the parameter values in force at each interval.

The coordinator calls ``advance(i)`` before it settles interval i, with the votes received up to
the end of i. In interval order and one transaction it records: the configuration's values and
bounds if they changed; the enactment of each passed proposal whose time has come (a timelock:
``enact_at`` is known from the close on); the weight snapshot of each proposal that opens (so
contributing or joining later buys no vote); every vote received, valid or not, with the reason
it does not count; and the tally of each proposal that closes. Each step is keyed by its
proposal, so a process killed at any point and restarted does each exactly once.
``values_at(i)`` is what settlement and planning use for interval i.

States: ``draft`` (before it opens), ``open``, ``closed`` (awaiting its tally), then
``passed`` (awaiting enactment) → ``enacted``, ``failed`` or ``expired`` (no quorum).
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from nacl.bindings import crypto_core_ed25519_is_valid_point

from gridctl.governance.params import (
    PARAMETERS,
    GovernanceError,
    bounds_of,
    check_value,
    parameter,
)
from gridctl.governance.spec import GovernanceSpec
from gridctl.governance.state import (
    config_row,
    members_at,
    proposal_state,
    take_snapshot,
    values_in_force,
    vote_reason,
)
from gridctl.governance.tally import PASSED, Ballot, counted, tally
from gridctl.governance.votes import VoteMessage
from gridctl.settlement import gov_records as rec
from gridctl.settlement.canonical import canonical
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.signing import key_id_of
from gridctl.settlement.tables import insert_rows, select_rows
from gridctl.settlement.verify import verify_signatures

MAX_RATIONALE = 2000
"""Longest rationale a proposal may carry, characters."""
OPERATOR = "operator"
"""Proposer name of a proposal the coordinator's operator submits."""
Verifier = Callable[[Sequence[tuple[bytes, bytes, bytes]]], list[bool]]


class Received(NamedTuple):
    """A vote as it arrived: sender (the household whose topic, or CLI, delivered it), the
    message, and the interval it arrived in."""

    sender: str
    vote: VoteMessage
    interval: int


def base_values(spec: GovernanceSpec, community_per_kwh: float, reward_tokens_per_kwh: float,
                flex_tokens_per_kwh: float) -> dict[str, object]:  # fmt: skip
    """The governed values from configuration, before any enactment."""
    out: dict[str, object] = {
        "community_per_kwh": community_per_kwh,
        "reward_tokens_per_kwh": reward_tokens_per_kwh,
        "flex_tokens_per_kwh": flex_tokens_per_kwh,
        "battery_reserve_soc": 0.0,
        "fairness": "bus",
        "weights": spec.weights,
        "cap_share": spec.cap_share,
        "window_days": float(spec.window_days),
    }
    for c, rule in spec.rules.items():
        out[f"quorum.{c}"] = rule.quorum
        out[f"threshold.{c}"] = rule.threshold
    return out


def contributions_wh(db: sqlite3.Connection, first: int, last: int) -> dict[str, int]:
    """Each household's verified export (its main meter's verified readings), Wh, intervals
    first…last."""
    q = (
        "SELECT m.household, SUM(r.d_export_wh) FROM meter_readings r"
        " JOIN meters m ON m.meter = r.meter WHERE m.role = 'main' AND r.status = 'verified'"
        " AND r.interval BETWEEN ? AND ? GROUP BY m.household"
    )
    return {h: int(e) for h, e in db.execute(q, (first, last))}


@dataclass(frozen=True)
class Charter:
    """What configuration gives governance: spec (bounds and rules), base (the values before
    any enactment, ``base_values``) and the grid tariff that bounds the community price,
    currency per kWh."""

    spec: GovernanceSpec
    base: Mapping[str, object]
    import_per_kwh: float
    feed_in_per_kwh: float


class Governance:
    """A community's governance in its open ledger (see the module doc)."""

    def __init__(
        self,
        ledger: Ledger,
        community: str,
        charter: Charter,
        verifier: Verifier = verify_signatures,
    ):
        self.ledger = ledger
        self.community = community
        self.spec = charter.spec
        self.import_per_kwh = charter.import_per_kwh
        self.feed_in_per_kwh = charter.feed_in_per_kwh
        self.verify = verifier
        bounds = {}
        for name, p in PARAMETERS.items():
            r = bounds_of(p, self.spec, self.import_per_kwh, self.feed_in_per_kwh)
            if r is not None:
                bounds[name] = (r.lo, r.hi)
        self._config = config_row(0, community, charter.base, bounds)
        self._reload()

    def _reload(self) -> None:
        db = self.ledger.db
        self._configs = rec.configs(db)
        self._proposals = {p.proposal: p for p in rec.proposals(db)}
        self._tallies = rec.tallies(db)
        self._members = {m.key_id: m for m in rec.members(db)}
        self._removed = rec.removals(db)
        self._weights: dict[int, dict[str, int]] = {}
        self._schedule = sorted(
            (p.enact_at, p.proposal, p.parameter, p.value)
            for p in self._proposals.values()
            if (t := self._tallies.get(p.proposal)) is not None and t.outcome == PASSED
        )

    # -- reading ----------------------------------------------------------------------

    def values_at(self, interval: int) -> dict[str, object]:
        """Every valued parameter in force at ``interval`` (``state.values_in_force``; before
        the first recorded configuration, the current one)."""
        return values_in_force(self._configs or [self._config], self._schedule, interval)

    def scheduled(self, interval: int) -> list[tuple[int, int, str, str]]:
        """Changes passed votes have scheduled after ``interval``: (enact_at, proposal,
        parameter, value JSON), in order of enactment."""
        return [s for s in self._schedule if s[0] > interval]

    def members(self, interval: int) -> dict[str, rec.MemberRow]:
        """Member keys valid at ``interval``, by key id."""
        return members_at(self._members, self._removed, interval)

    def state(self, pid: int, interval: int) -> str:
        """A proposal's state at ``interval`` (see the module doc)."""
        return proposal_state(self._proposals[pid], self._tallies.get(pid), interval)

    def proposals(self) -> list[rec.ProposalRow]:
        """Every proposal, in id order."""
        return [self._proposals[k] for k in sorted(self._proposals)]

    def tally_of(self, pid: int) -> rec.TallyRow | None:
        """A proposal's recorded tally (None before its close)."""
        return self._tallies.get(pid)

    # -- writing ----------------------------------------------------------------------

    def enrol_member(self, household: str, public_key: bytes, valid_from: int) -> bool:
        """Enrol a member key for ``household`` from ``valid_from`` (the operator's enrolment,
        as for meters); False if it is enrolled already. GovernanceError if the key is not a
        valid Ed25519 point or belongs to another household."""
        if len(public_key) != 32 or not crypto_core_ed25519_is_valid_point(public_key):
            raise GovernanceError("bad_key", f"{household}: not an Ed25519 public key")
        key_id = key_id_of(public_key)
        m = self._members.get(key_id)
        if m is not None:
            if m.household != household:
                raise GovernanceError("bad_key", f"key {key_id} is {m.household}'s")
            return False
        row = rec.MemberRow(key_id, household, public_key, valid_from, None)
        with self.ledger.atomic() as db:
            insert_rows(db, "gov_members", [row])
        self._members[key_id] = row
        return True

    def propose(
        self,
        parameter_name: str,
        value: object,
        rationale: str,
        proposer: str,
        window: int,
        delay: int,
        now: int,
    ) -> rec.ProposalRow:
        """Submit a proposal at interval ``now``: it opens at now + 1, closes ``window``
        intervals later and, if passed, is enacted ``delay`` intervals after its close.
        GovernanceError (reason and the bound it crosses) if it may not be made."""
        p = parameter(parameter_name)
        bounds = bounds_of(p, self.spec, self.import_per_kwh, self.feed_in_per_kwh)
        stored = check_value(p, value, bounds)
        for what, n, r in (("window", window, self.spec.window_intervals),
                           ("delay", delay, self.spec.delay_intervals)):  # fmt: skip
            if n not in r:
                raise GovernanceError(
                    "out_of_bounds",
                    f"{what} {n} intervals lies outside {what}_intervals [{r.lo}, {r.hi}]",
                )
        if len(rationale) > MAX_RATIONALE or not rationale.isprintable():
            raise GovernanceError(
                "bad_rationale", f"rationale: printable text of at most {MAX_RATIONALE} characters"
            )
        households = {m.household for m in self.members(now).values()}
        if proposer != OPERATOR and proposer not in households:
            raise GovernanceError("not_member", f"{proposer!r} has no member key")
        if p.name == "remove" and stored not in households:
            raise GovernanceError("bad_value", f"remove: {stored} is not a member")
        if p.name == "admit":
            key = bytes.fromhex(stored["member_key"])  # type: ignore[index]
            if not crypto_core_ed25519_is_valid_point(key):
                raise GovernanceError("bad_value", "admit: member_key is not an Ed25519 key")
            if key_id_of(key) in self._members:
                raise GovernanceError("bad_value", "admit: that member key is enrolled already")
        with self.ledger.atomic() as db:
            (last,) = db.execute("SELECT MAX(proposal) FROM gov_proposals").fetchone()
            opens = now + 1
            row = rec.ProposalRow(
                (last or 0) + 1, p.name, canonical(stored).decode(),
                None if bounds is None else canonical([bounds.lo, bounds.hi]).decode(),
                rationale, proposer, now, opens, opens + window, opens + window + delay, p.klass,
            )  # fmt: skip
            insert_rows(db, "gov_proposals", [row])
        self._proposals[row.proposal] = row
        return row

    def advance(self, interval: int, received: Sequence[Received] = ()) -> list[str]:
        """Record everything due up to ``interval`` (see the module doc); returns one line per
        step taken. ``received``: votes that arrived in intervals ≤ ``interval`` (a vote
        already recorded is skipped)."""
        self._take_new_proposals()
        events: list[tuple[int, int, int]] = []  # (interval, rank, proposal or vote index)
        snapped = {r[0] for r in self.ledger.db.execute("SELECT proposal FROM gov_snapshots")}
        for p in self._proposals.values():
            if p.opens <= interval and p.proposal not in snapped:
                events.append((p.opens, 1, p.proposal))
            if p.closes <= interval and p.proposal not in self._tallies:
                events.append((p.closes, 3, p.proposal))
        done = set(rec.enactments(self.ledger.db))
        for at, pid, *_ in self._schedule:
            if at <= interval and pid not in done:
                events.append((at, 0, pid))
        for k, r in enumerate(received):
            if r.interval > interval:
                raise ValueError(f"vote received in {r.interval}, after {interval}")
            events.append((r.interval, 2, k))
        heapq.heapify(events)
        log: list[str] = []
        with self.ledger.atomic() as db:
            self._record_config(db, interval)
            while events:
                at, rank, x = heapq.heappop(events)
                if rank == 0:
                    log.append(self._enact(db, at, x))
                elif rank == 1:
                    log.append(self._open(db, x))
                elif rank == 2:
                    line = self._receive(db, received[x])
                    if line:
                        log.append(line)
                else:
                    t = self._close(db, x)
                    log.append(f"proposal {x} closed: {t.outcome}")
                    p = self._proposals[x]
                    if t.outcome == PASSED and p.enact_at <= interval:
                        heapq.heappush(events, (p.enact_at, 0, x))
        return log

    def _take_new_proposals(self) -> None:
        """Take in proposals another process submitted to the file (``gridctl gov propose``
        beside a running coordinator)."""
        q = "FROM gov_proposals WHERE proposal > ? ORDER BY proposal"
        for p in select_rows(
            self.ledger.db, rec.ProposalRow, q, (max(self._proposals, default=0),)
        ):
            self._proposals[p.proposal] = p

    def _record_config(self, db: sqlite3.Connection, interval: int) -> None:
        """Record the configuration's values and bounds if they differ from the last record."""
        last = self._configs[-1] if self._configs else None
        if last is not None and last[1:] == self._config[1:]:
            return
        if last is not None and last.at_interval >= interval:
            return  # a record for this interval is taken; the change shows from the next
        row = self._config._replace(at_interval=interval)
        insert_rows(db, "gov_config", [row])
        self._configs.append(row)

    def _open(self, db: sqlite3.Connection, pid: int) -> str:
        p = self._proposals[pid]
        households = sorted({m.household for m in self.members(p.opens).values()})
        snap, rows = take_snapshot(
            p, self.values_at(p.opens), households, partial(contributions_wh, db)
        )
        insert_rows(db, "gov_snapshots", [snap])
        insert_rows(db, "gov_weights", rows)
        self._weights[pid] = {w.household: w.weight for w in rows}
        return f"proposal {pid} opened: {len(rows)} members, weights by {snap.mode}"

    def _snapshot_weights(self, db: sqlite3.Connection, pid: int) -> dict[str, int]:
        """A proposal's snapshot weights (empty before it opens), read once."""
        w = self._weights.get(pid)
        if w is None:
            w = rec.weights(db, pid)
            if w:
                self._weights[pid] = w
        return w

    def _receive(self, db: sqlite3.Connection, r: Received) -> str | None:
        v = r.vote
        row = rec.VoteRow(v.digest(), v.community, v.proposal, v.household, r.sender,
                          v.choice, v.seq, v.key_id, v.sig, r.interval, None)  # fmt: skip
        if db.execute("SELECT 1 FROM gov_votes WHERE digest = ?", (row.digest,)).fetchone():
            return None  # a duplicate delivery
        member = self._members.get(v.key_id)
        p = self._proposals.get(v.proposal)
        eligible = self._snapshot_weights(db, v.proposal) if p is not None else {}
        why = vote_reason(
            row, self.community, p, member, self._removed.get(v.key_id), eligible,
            lambda: self.verify([(member.public_key, bytes.fromhex(v.sig), v.payload())])[0],  # type: ignore[union-attr]
        )  # fmt: skip
        insert_rows(db, "gov_votes", [row._replace(reason=why)])
        return f"vote of {v.household} on proposal {v.proposal}: {why or 'valid'}"

    def _close(self, db: sqlite3.Connection, pid: int) -> rec.TallyRow:
        p = self._proposals[pid]
        snap = rec.snapshot(db, pid)
        assert snap is not None  # it opened before it closed
        ballots = [
            Ballot(v.household, v.choice, v.seq, rowid)
            for rowid, v in rec.votes(db, pid)
            if v.reason is None
        ]
        weights = self._snapshot_weights(db, pid)
        t = tally(weights, counted(ballots), snap.quorum_ppm, snap.threshold_ppm)
        row = rec.TallyRow(pid, p.closes, t.yes, t.no, t.abstain, t.total, t.outcome)
        insert_rows(db, "gov_tallies", [row])
        self._tallies[pid] = row
        if t.outcome == PASSED:
            self._schedule = sorted([*self._schedule, (p.enact_at, pid, p.parameter, p.value)])
        return row

    def _enact(self, db: sqlite3.Connection, at: int, pid: int) -> str:
        p = self._proposals[pid]
        insert_rows(db, "gov_enactments", [rec.EnactmentRow(pid, at, p.parameter, p.value)])
        value = json.loads(p.value)
        key = bytes.fromhex(value["member_key"]) if p.parameter == "admit" else b""
        if key and key_id_of(key) not in self._members:  # not admitted by another proposal
            row = rec.MemberRow(key_id_of(key), value["household"], key, at, pid)
            insert_rows(db, "gov_members", [row])
            self._members[row.key_id] = row
        elif p.parameter == "remove":
            for m in self.members(at).values():
                if m.household == value:
                    insert_rows(db, "gov_removals", [rec.RemovalRow(m.key_id, at, pid)])
                    self._removed[m.key_id] = at
        return f"proposal {pid} enacted: {p.parameter} = {p.value} from interval {at}"
