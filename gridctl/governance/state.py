"""What governance records imply, as pure functions: the values in force at an interval, the
member keys valid, why a vote does not count, a proposal's weight snapshot. The live book
(``book``) and the audit (``audit``) both use these, so the audit recomputes exactly what the
coordinator did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from gridctl.governance.params import VALUED
from gridctl.governance.tally import PASSED, ppm, weights_for
from gridctl.settlement import gov_records as rec
from gridctl.settlement.canonical import canonical

INTERVALS_PER_DAY = 96


def config_row(at_interval: int, community: str, values: Mapping[str, object],
               bounds: Mapping[str, tuple[float, float]]) -> rec.ConfigRow:  # fmt: skip
    """A configuration record: the valued parameters and the bounds of each number."""
    vals = {k: values[k] for k in VALUED}
    bds = {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(bounds.items())}
    return rec.ConfigRow(at_interval, community, canonical(vals).decode(), canonical(bds).decode())


def values_in_force(
    configs: Sequence[rec.ConfigRow],
    enacted: Sequence[tuple[int, int, str, str]],
    interval: int,
) -> dict[str, object]:
    """Valued parameters in force at ``interval``.

    configs: configuration records in interval order (the first also stands for any interval
    before it). enacted: (enact_at, proposal, parameter, value JSON) of passed proposals, in
    (enact_at, proposal) order; those with enact_at ≤ interval override the configuration. A
    number is then held within its bounds in force (the operator may narrow them later)."""
    cfg = configs[0]
    for c in configs:
        if c.at_interval > interval:
            break
        cfg = c
    values: dict[str, object] = json.loads(cfg.settings)
    for at, _, name, value in enacted:
        if at > interval:
            break
        if name in values:
            values[name] = json.loads(value)
    for name, (lo, hi) in json.loads(cfg.bounds).items():
        values[name] = min(max(float(values[name]), lo), hi)  # type: ignore[arg-type]
    return values


def proposal_state(p: rec.ProposalRow, t: rec.TallyRow | None, interval: int) -> str:
    """A proposal's state at ``interval`` given its tally (None: not tallied yet): draft, open,
    closed (awaiting its tally), passed (awaiting enactment), enacted, failed or expired."""
    if t is not None:
        if t.outcome == PASSED:
            return "enacted" if interval >= p.enact_at else PASSED
        return t.outcome
    if interval < p.opens:
        return "draft"
    return "open" if interval < p.closes else "closed"


def members_at(members: Mapping[str, rec.MemberRow], removed: Mapping[str, int],
               interval: int) -> dict[str, rec.MemberRow]:  # fmt: skip
    """Member keys valid at ``interval`` (enrolled by then, not removed), by key id."""
    return {
        k: m
        for k, m in members.items()
        if m.valid_from <= interval and removed.get(k, interval + 1) > interval
    }


def vote_reason(
    v: rec.VoteRow,
    community: str,
    proposal: rec.ProposalRow | None,
    member: rec.MemberRow | None,
    removed_at: int | None,
    eligible: Mapping[str, int],
    signature_ok: Callable[[], bool],
) -> str | None:
    """Why a received vote does not count (None: it counts if it is the household's last).

    proposal: the one it names (None: unknown; so is one submitted after the vote arrived,
    which the book may or may not have known when it recorded it). member: the key it names
    (None: unknown). eligible: the proposal's weight snapshot (empty: not taken).
    signature_ok: checks it."""
    if v.community != community:
        return "wrong_community"
    if proposal is None or proposal.submitted > v.received:
        return "unknown_proposal"
    if v.household != v.sender:
        return "other_household"
    if member is None or member.valid_from > v.received:
        return "unknown_key"
    if member.household != v.household:
        return "other_key"
    if removed_at is not None and v.received >= removed_at:
        return "removed_key"
    if not signature_ok():
        return "bad_signature"
    if v.received < proposal.opens:
        return "not_open"
    if v.received >= proposal.closes:
        return "closed"
    if v.household not in eligible:
        return "not_eligible"
    return None


def take_snapshot(
    p: rec.ProposalRow,
    values: Mapping[str, object],
    households: Sequence[str],
    contributions_wh: Callable[[int, int], Mapping[str, int]],
) -> tuple[rec.SnapshotRow, list[rec.WeightRow]]:
    """A proposal's weight snapshot when it opens: the rules in force (``values`` at its
    opening), the members then (``households``) and their verified contribution, Wh, over
    the trailing window before it opens (``contributions_wh(first, last)``)."""
    mode = str(values["weights"])
    window = round(float(values["window_days"])) * INTERVALS_PER_DAY  # type: ignore[arg-type]
    first, last = p.opens - window, p.opens - 1
    made = contributions_wh(first, last)
    contribution = {h: made.get(h, 0) for h in sorted(households)}
    cap = ppm(float(values["cap_share"]))  # type: ignore[arg-type]
    weights = weights_for(mode, contribution, cap)
    snap = rec.SnapshotRow(
        p.proposal, mode, cap, first, last,
        ppm(float(values[f"quorum.{p.klass}"])),  # type: ignore[arg-type]
        ppm(float(values[f"threshold.{p.klass}"])),  # type: ignore[arg-type]
        sum(weights.values()),
    )  # fmt: skip
    rows = [rec.WeightRow(p.proposal, h, e, weights[h]) for h, e in contribution.items()]
    return snap, rows
