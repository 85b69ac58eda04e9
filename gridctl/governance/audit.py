"""``gridctl gov verify``: recompute every governance record of a ledger file from the records
it rests on, and name the first that does not follow.

In interval order, as the coordinator made them: each proposal's value is checked against its
recorded bounds (and those against the configuration's); each weight snapshot is recomputed
from the rules in force when the proposal opened, the members then and their verified
contribution in the ledger's readings; each vote's digest, signature and reason are
recomputed; each tally is recounted from the valid votes and the snapshot; each enactment must
follow a passed tally at its time, and each admission or removal of a member an enactment.
The records themselves are covered by the interval roots (``ledger verify``); this checks
that what they say follows from each other.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
from functools import partial

from gridctl.governance.book import contributions_wh
from gridctl.governance.params import PARAMETERS, GovernanceError, check_value
from gridctl.governance.spec import Range
from gridctl.governance.state import members_at, take_snapshot, values_in_force, vote_reason
from gridctl.governance.tally import PASSED, Ballot, counted, tally
from gridctl.governance.votes import vote_payload
from gridctl.settlement import gov_records as rec
from gridctl.settlement.roots import last_closed
from gridctl.settlement.tables import select_rows
from gridctl.settlement.verify import verify_signatures


class _Mismatch(Exception):
    pass


def verify_governance(db: sqlite3.Connection) -> list[str]:
    """Problems found (empty: every governance record follows from the others); checking
    stops at the first, which names its table and row."""
    replay = _Replay(db)
    try:
        replay.run()
    except _Mismatch as e:
        return [str(e)]
    except (ValueError, TypeError, KeyError) as e:  # a record changed beyond parsing
        return [f"{replay.at}: it or a record it rests on cannot be read ({type(e).__name__}: {e})"]
    return []


class _Replay:
    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.configs = rec.configs(db)
        self.proposals = {p.proposal: p for p in rec.proposals(db)}
        self.members = {m.key_id: m for m in rec.members(db)}
        self.removed = rec.removals(db)
        self.snapshots = {
            s.proposal: s for s in select_rows(db, rec.SnapshotRow, "FROM gov_snapshots")
        }
        self.weights: dict[int, dict[str, int]] = {}
        for w in select_rows(db, rec.WeightRow, "FROM gov_weights ORDER BY rowid"):
            self.weights.setdefault(w.proposal, {})[w.household] = w.weight
        self.weight_rows = select_rows(db, rec.WeightRow, "FROM gov_weights ORDER BY rowid")
        self.votes = rec.votes(db)
        self.tallies = rec.tallies(db)
        self.enactments = rec.enactments(db)
        self.schedule: list[tuple[int, int, str, str]] = []
        self.valid: dict[int, list[Ballot]] = {}
        self.at = "gov_config"
        """The record being checked."""

    def run(self) -> None:
        if self.proposals and not self.configs:
            raise _Mismatch("gov_config: proposals exist but no configuration is recorded")
        for p in self.proposals.values():
            self._proposal(p)
        events: list[tuple[int, int, int]] = []
        for pid in self.snapshots:
            events.append((self._proposal_of("gov_snapshots", pid).opens, 1, pid))
        for k, (_, v) in enumerate(self.votes):
            events.append((v.received, 2, k))
        for pid in self.tallies:
            events.append((self._proposal_of("gov_tallies", pid).closes, 3, pid))
        for pid, e in self.enactments.items():
            events.append((e.at_interval, 0, pid))
        heapq.heapify(events)
        while events:
            _, rank, x = heapq.heappop(events)
            (self._enactment, self._snapshot, self._vote, self._tally)[rank](x)
        self._members_follow()
        self._due_done()

    def _proposal_of(self, table: str, pid: int) -> rec.ProposalRow:
        p = self.proposals.get(pid)
        if p is None:
            raise _Mismatch(f"{table} proposal {pid}: no such proposal")
        return p

    def _proposal(self, p: rec.ProposalRow) -> None:
        where = self.at = f"gov_proposals proposal {p.proposal}"
        param = PARAMETERS.get(p.parameter)
        if param is None:
            raise _Mismatch(f"{where}: {p.parameter!r} is not a governed parameter")
        if p.klass != param.klass:
            raise _Mismatch(f"{where}: class {p.klass}, the parameter's is {param.klass}")
        if not p.submitted < p.opens < p.closes < p.enact_at:
            raise _Mismatch(f"{where}: its intervals are out of order")
        bounds = None
        if p.bounds is not None:
            lo, hi = json.loads(p.bounds)
            bounds = Range(lo=lo, hi=hi)
            cfg = json.loads(self._config_at(p.submitted).bounds).get(p.parameter)
            if cfg is None or not cfg[0] <= lo <= hi <= cfg[1]:
                raise _Mismatch(f"{where}: bounds {p.bounds} exceed the configuration's {cfg}")
        try:
            check_value(param, json.loads(p.value), bounds)
        except GovernanceError as e:
            raise _Mismatch(f"{where}: {e}") from None

    def _config_at(self, interval: int) -> rec.ConfigRow:
        cfg = self.configs[0]
        for c in self.configs:
            if c.at_interval > interval:
                break
            cfg = c
        return cfg

    def _snapshot(self, pid: int) -> None:
        self.at = f"gov_snapshots proposal {pid}"
        p = self.proposals[pid]
        values = values_in_force(self.configs, self.schedule, p.opens)
        households = sorted({m.household for m in members_at(self.members, self.removed,
                                                                p.opens).values()})  # fmt: skip
        snap, rows = take_snapshot(p, values, households, partial(contributions_wh, self.db))
        if snap != self.snapshots[pid]:
            raise _Mismatch(
                f"gov_snapshots proposal {pid}: recorded {tuple(self.snapshots[pid])}, "
                f"recomputed {tuple(snap)}"
            )
        recorded = [w for w in self.weight_rows if w.proposal == pid]
        if sorted(recorded) != sorted(rows):
            bad = sorted(set(recorded) ^ set(rows))[0]
            raise _Mismatch(
                f"gov_weights proposal {pid} household {bad.household}: recorded "
                f"{[tuple(w) for w in recorded if w.household == bad.household]}, recomputed "
                f"{[tuple(w) for w in rows if w.household == bad.household]}"
            )

    def _vote(self, k: int) -> None:
        rowid, v = self.votes[k]
        where = self.at = f"gov_votes row {rowid} (proposal {v.proposal}, {v.household})"
        payload = vote_payload(v.community, v.proposal, v.household, v.choice, v.seq, v.key_id)
        try:
            sig = bytes.fromhex(v.sig)
        except ValueError:
            sig = b""
        if hashlib.sha256(payload + sig).hexdigest() != v.digest:
            raise _Mismatch(f"{where}: its digest does not match its contents")
        member = self.members.get(v.key_id)
        why = vote_reason(
            v, self._config_at(v.received).community, self.proposals.get(v.proposal), member,
            self.removed.get(v.key_id), self.weights.get(v.proposal, {}),
            lambda: len(sig) == 64
            and verify_signatures([(member.public_key, sig, payload)])[0],  # type: ignore[union-attr]
        )  # fmt: skip
        if why != v.reason:
            raise _Mismatch(f"{where}: recorded {v.reason or 'valid'}, recomputed {why or 'valid'}")
        if why is None:
            self.valid.setdefault(v.proposal, []).append(
                Ballot(v.household, v.choice, v.seq, rowid)
            )

    def _tally(self, pid: int) -> None:
        self.at = f"gov_tallies proposal {pid}"
        p, snap = self.proposals[pid], self.snapshots.get(pid)
        if snap is None:
            raise _Mismatch(f"gov_tallies proposal {pid}: tallied without a snapshot")
        t = tally(self.weights.get(pid, {}), counted(self.valid.get(pid, [])), snap.quorum_ppm,
                  snap.threshold_ppm)  # fmt: skip
        want = rec.TallyRow(pid, p.closes, t.yes, t.no, t.abstain, t.total, t.outcome)
        if self.tallies[pid] != want:
            raise _Mismatch(
                f"gov_tallies proposal {pid}: recorded {tuple(self.tallies[pid])}, "
                f"recomputed {tuple(want)}"
            )
        if t.outcome == PASSED:
            self.schedule = sorted([*self.schedule, (p.enact_at, pid, p.parameter, p.value)])

    def _enactment(self, pid: int) -> None:
        self.at = f"gov_enactments proposal {pid}"
        p, e, t = self.proposals.get(pid), self.enactments[pid], self.tallies.get(pid)
        if p is None or t is None or t.outcome != PASSED:
            raise _Mismatch(f"gov_enactments proposal {pid}: enacted without a passed tally")
        if (e.at_interval, e.parameter, e.value) != (p.enact_at, p.parameter, p.value):
            raise _Mismatch(
                f"gov_enactments proposal {pid}: recorded {tuple(e)}, the proposal says "
                f"{p.parameter} = {p.value} from {p.enact_at}"
            )

    def _members_follow(self) -> None:
        self.at = "gov_members"
        for m in self.members.values():
            if m.proposal is None:
                continue
            e = self.enactments.get(m.proposal)
            value = json.loads(e.value) if e is not None and e.parameter == "admit" else None
            if value != {"household": m.household, "member_key": m.public_key.hex()} or (
                e is not None and e.at_interval != m.valid_from
            ):
                raise _Mismatch(f"gov_members key {m.key_id}: no admission enacted it")
        for key_id, at in self.removed.items():
            r = select_rows(self.db, rec.RemovalRow, "FROM gov_removals WHERE key_id = ?",
                            (key_id,))[0]  # fmt: skip
            e = self.enactments.get(r.proposal)
            m = self.members.get(key_id)
            if (
                e is None
                or e.parameter != "remove"
                or m is None
                or (json.loads(e.value) != m.household or e.at_interval != at)
            ):
                raise _Mismatch(f"gov_removals key {key_id}: no removal enacted it")

    def _due_done(self) -> None:
        closed = last_closed(self.db)
        if closed is None:
            return
        for pid, p in self.proposals.items():
            if p.opens <= closed and pid not in self.snapshots:
                raise _Mismatch(f"gov_snapshots proposal {pid}: opened by {closed}, no snapshot")
            if p.closes <= closed and pid not in self.tallies:
                raise _Mismatch(f"gov_tallies proposal {pid}: closed by {closed}, no tally")
            t = self.tallies.get(pid)
            if t and t.outcome == PASSED and p.enact_at <= closed and pid not in self.enactments:
                raise _Mismatch(f"gov_enactments proposal {pid}: due by {closed}, not enacted")
