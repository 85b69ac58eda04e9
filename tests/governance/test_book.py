import shutil
import sqlite3
from pathlib import Path

import pytest

from gridctl.governance.audit import verify_governance
from gridctl.governance.book import Received
from gridctl.governance.params import GovernanceError
from gridctl.governance.spec import GovernanceSpec
from gridctl.settlement import gov_records as rec
from gridctl.settlement.signing import public_bytes
from tests.governance.helpers import (
    add_exports,
    cast,
    member_key,
    open_book,
    reasons,
    vote,
)

HH = [f"h{k:02d}" for k in range(5)]


def test_a_passed_proposal_takes_effect_at_its_enactment_interval(tmp_path: Path) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    p = gov.propose("community_per_kwh", 0.25, "share more", "h00", window=4, delay=2, now=10)
    assert (p.opens, p.closes, p.enact_at) == (11, 15, 17)
    assert gov.state(p.proposal, 10) == "draft"
    gov.advance(11)
    assert gov.state(p.proposal, 11) == "open"
    gov.advance(12, [cast(h, p.proposal, "yes" if h < "h03" else "no", 12) for h in HH])
    gov.advance(16)
    assert gov.tally_of(p.proposal).outcome == "passed"  # type: ignore[union-attr]
    assert (gov.tally_of(p.proposal).yes, gov.tally_of(p.proposal).no) == (3, 2)  # type: ignore[union-attr]
    assert gov.state(p.proposal, 16) == "passed"
    assert gov.values_at(16)["community_per_kwh"] == 0.2
    gov.advance(17)
    assert gov.state(p.proposal, 17) == "enacted"
    assert gov.values_at(17)["community_per_kwh"] == 0.25
    assert set(rec.enactments(ledger.db)) == {p.proposal}
    assert verify_governance(ledger.db) == []


def test_quorum_and_threshold(tmp_path: Path) -> None:
    _, gov = open_book(tmp_path / "l.sqlite", HH)
    a, b, c = (gov.propose("reward_tokens_per_kwh", x, "", "h00", 4, 1, 0) for x in (2, 3, 4))
    gov.advance(1, [cast("h00", b.proposal, "yes", 1)] + [
        cast(h, a.proposal, ch, 1)
        for h, ch in zip(HH, ["yes", "yes", "no", "no", "abstain"], strict=True)
    ])  # fmt: skip
    gov.advance(5)
    outcomes = [gov.tally_of(x.proposal).outcome for x in (a, b, c)]  # type: ignore[union-attr]
    # a: 2 yes against 2 no is not a majority; b: 1 of 5 meets the quorum of 0.2 exactly;
    # c: nobody voted
    assert outcomes == ["failed", "passed", "expired"]
    assert gov.values_at(5)["reward_tokens_per_kwh"] == 1.0
    assert gov.values_at(6)["reward_tokens_per_kwh"] == 3.0


@pytest.mark.parametrize(
    ("parameter", "value", "reason", "names"),
    [
        ("v_max_pu", 1.2, "not_governable", "physical safety limit"),
        ("limits.loading_max_pct", 150, "not_governable", "loading_max_pct"),
        ("fuse", 63, "not_governable", "fuse"),
        ("community_per_kwh", 0.40, "out_of_bounds", "[0.08, 0.32]"),
        ("community_per_kwh", 0.05, "out_of_bounds", "feed-in <= community <= import"),
        ("reward_tokens_per_kwh", -1, "out_of_bounds", "reward_tokens_per_kwh"),
        ("reward_tokens_per_kwh", float("nan"), "bad_value", "finite"),
        ("battery_reserve_soc", 0.9, "out_of_bounds", "[0, 0.8]"),
        ("threshold.ordinary", 0.4, "out_of_bounds", "[0.5, 1]"),
        ("weights", "plutocracy", "bad_value", "member, contribution, quadratic"),
        ("colour", "blue", "unknown_parameter", "colour"),
        ("remove", "h99", "bad_value", "not a member"),
    ],
)
def test_a_proposal_crossing_a_bound_is_refused_naming_it(
    tmp_path: Path, parameter: str, value: object, reason: str, names: str
) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    with pytest.raises(GovernanceError) as e:
        gov.propose(parameter, value, "", "h00", 4, 1, 0)
    assert e.value.reason == reason
    assert names in str(e.value)
    assert rec.proposals(ledger.db) == []


def test_window_delay_and_proposer_are_checked(tmp_path: Path) -> None:
    _, gov = open_book(tmp_path / "l.sqlite", HH)
    with pytest.raises(GovernanceError, match="window 1 intervals lies outside"):
        gov.propose("fairness", "kwp", "", "h00", 1, 1, 0)
    with pytest.raises(GovernanceError, match="delay 0 intervals"):
        gov.propose("fairness", "kwp", "", "h00", 4, 0, 0)
    with pytest.raises(GovernanceError, match="has no member key"):
        gov.propose("fairness", "kwp", "", "stranger", 4, 1, 0)
    with pytest.raises(GovernanceError, match="printable"):
        gov.propose("fairness", "kwp", "a\x00b", "h00", 4, 1, 0)


def test_bad_votes_are_recorded_with_a_reason_and_never_count(tmp_path: Path) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    p = gov.propose("fairness", "kwp", "", "h00", 4, 1, 0)
    other = gov.propose("fairness", "bus", "", "h00", 4, 1, 0)
    gov.advance(1)
    honest = vote("h01", p.proposal, "no")
    forged = honest.model_copy(update={"choice": "yes"})  # signature no longer covers it
    replayed = vote("h02", p.proposal, "yes").model_copy(update={"proposal": other.proposal})
    stranger = member_key("stranger")
    gov.advance(2, [
        Received("h01", forged, 2),
        Received("h00", vote("h03", p.proposal, "yes"), 2),  # h00 sends h03's vote
        Received("h02", replayed, 2),
        Received("h04", vote("h04", p.proposal, "yes", key=stranger), 2),  # unenrolled key
        Received("h04", vote("h04", p.proposal, "yes", key=member_key("h00")), 2),  # h00's key
        Received("h00", vote("h00", 99, "yes"), 2),
        Received("h00", vote("h00", p.proposal, "no").model_copy(update={"community": "elm"}), 2),
    ])  # fmt: skip
    gov.advance(5, [cast("h04", p.proposal, "yes", 5)])  # after the close (closes = 5)
    assert reasons(ledger) == [
        ("h01", "bad_signature"),
        ("h03", "other_household"),
        ("h02", "bad_signature"),
        ("h04", "unknown_key"),
        ("h04", "other_key"),
        ("h00", "unknown_proposal"),
        ("h00", "wrong_community"),
        ("h04", "closed"),
    ]
    t = gov.tally_of(p.proposal)
    assert t is not None and (t.yes, t.no, t.abstain) == (0, 0, 0) and t.outcome == "expired"
    assert verify_governance(ledger.db) == []


def test_a_removed_members_vote_is_refused(tmp_path: Path) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    rm = gov.propose("remove", "h04", "moved away", "h00", 4, 1, 0)
    gov.advance(1, [cast(h, rm.proposal, "yes", 1) for h in HH[:4]])
    gov.advance(6)  # closes 5, enacted 6
    assert gov.state(rm.proposal, 6) == "enacted"
    p = gov.propose("fairness", "kwp", "", "h00", 4, 1, 6)
    gov.advance(8, [cast("h04", p.proposal, "yes", 8)])
    assert reasons(ledger)[-1] == ("h04", "removed_key")
    assert "h04" not in rec.weights(ledger.db, p.proposal)
    assert verify_governance(ledger.db) == []


def test_an_admitted_member_votes_from_its_admission(tmp_path: Path) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    new = public_bytes(member_key("h09")).hex()
    adm = gov.propose("admit", {"household": "h09", "member_key": new}, "welcome", "h00", 4, 1, 0)
    early = gov.propose("fairness", "kwp", "", "h00", 4, 1, 0)
    gov.advance(2, [cast("h09", early.proposal, "yes", 2)] +
                [cast(h, adm.proposal, "yes", 2) for h in HH])  # fmt: skip
    gov.advance(6)
    later = gov.propose("fairness", "kwp", "", "h09", 4, 1, 6)
    gov.advance(8, [cast("h09", later.proposal, "yes", 8)])
    assert reasons(ledger)[0] == ("h09", "unknown_key")  # before its admission
    assert reasons(ledger)[-1] == ("h09", None)
    assert rec.weights(ledger.db, later.proposal)["h09"] == 1
    assert verify_governance(ledger.db) == []


def test_the_last_vote_counts_and_duplicates_are_harmless(tmp_path: Path) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    p = gov.propose("fairness", "kwp", "", "h00", 4, 1, 0)
    first, second = cast("h00", p.proposal, "no", 1, seq=1), cast("h00", p.proposal, "yes", 2, 2)
    gov.advance(2, [first, second, first, second])
    gov.advance(3, [first])  # an old vote resent later: a duplicate, recorded once
    gov.advance(5)
    assert len(rec.votes(ledger.db)) == 2
    t = gov.tally_of(p.proposal)
    assert t is not None and (t.yes, t.no) == (1, 0)


def test_weights_are_snapshotted_when_a_proposal_opens(tmp_path: Path) -> None:
    spec = GovernanceSpec(weights="contribution", cap_share=0.3, window_days=1)
    hh = [f"h{k:02d}" for k in range(10)]
    ledger, gov = open_book(tmp_path / "l.sqlite", hh, spec)
    add_exports(ledger, {h: [(50, 1000 * (k + 1))] for k, h in enumerate(hh)})
    p = gov.propose("fairness", "kwp", "", "h00", 8, 1, 99)
    gov.advance(100)
    before = rec.weights(ledger.db, p.proposal)
    add_exports(ledger, {"h00": [(100, 10**9)]})  # h00 exports a lot after the opening
    gov.advance(101, [cast(h, p.proposal, "yes" if h == "h00" else "no", 101) for h in hh[:3]])
    gov.advance(108)
    assert rec.weights(ledger.db, p.proposal) == before
    t = gov.tally_of(p.proposal)
    assert t is not None and t.yes == before["h00"] == 1000
    assert max(before.values()) <= 0.3 * sum(before.values())
    assert verify_governance(ledger.db) == []


def _tampered(src: Path, dst: Path, sql: str) -> sqlite3.Connection:
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute(sql)
    con.commit()
    return con


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE gov_votes SET choice = 'no' WHERE rowid = 1", "gov_votes row 1"),
        (
            "UPDATE gov_votes SET sig = substr(sig, 1, 10) || 'f' || substr(sig, 12) WHERE rowid = 2",
            "gov_votes row 2",
        ),
        ("UPDATE gov_votes SET reason = 'closed' WHERE rowid = 3", "gov_votes row 3"),
        ("UPDATE gov_weights SET weight = 1001 WHERE household = 'h01'", "gov_weights proposal 1"),
        ("UPDATE gov_weights SET contribution_wh = 7 WHERE household = 'h02'", "gov_weights"),
        ("UPDATE gov_tallies SET yes = yes + 1", "gov_tallies proposal 1"),
        ("UPDATE gov_tallies SET outcome = 'failed'", "gov_tallies proposal 1"),
        ("UPDATE gov_snapshots SET quorum_ppm = 1", "gov_snapshots proposal 1"),
        ("UPDATE gov_enactments SET value = '0.3'", "gov_enactments proposal 1"),
        ("UPDATE gov_proposals SET value = '0.5'", "gov_proposals proposal 1"),
        ("DELETE FROM gov_enactments", "gov_enactments proposal 1: due"),
    ],
)
def test_gov_verify_names_the_changed_record(tmp_path: Path, sql: str, named: str) -> None:
    spec = GovernanceSpec(weights="contribution", cap_share=0.5, window_days=1)
    ledger, gov = open_book(tmp_path / "l.sqlite", HH, spec)
    add_exports(ledger, {h: [(5, 1000 * (k + 1))] for k, h in enumerate(HH)})
    p = gov.propose("community_per_kwh", 0.25, "", "h00", 4, 1, 9)
    gov.advance(11, [cast(h, p.proposal, "yes", 11) for h in HH[:4]])
    gov.advance(16)
    ledger.db.execute("INSERT INTO interval_roots (interval, size, root, head, records, covered,"
                      " prev, key_id, sig) VALUES (16, 0, '', '', '', '{}', '', '', '')")  # fmt: skip
    assert verify_governance(ledger.db) == []
    ledger.close()
    con = _tampered(tmp_path / "l.sqlite", tmp_path / "t.sqlite", sql)
    problems = verify_governance(con)
    assert len(problems) == 1 and named in problems[0], problems


def test_a_vote_received_before_its_proposal_was_submitted_names_an_unknown_one(
    tmp_path: Path,
) -> None:
    ledger, gov = open_book(tmp_path / "l.sqlite", HH)
    gov.advance(3, [cast("h00", 1, "yes", 3)])  # proposal 1 does not exist yet
    late = gov.propose("fairness", "kwp", "", "h00", 4, 1, now=5)
    gov.advance(7, [cast("h01", late.proposal, "yes", 4), cast("h02", late.proposal, "yes", 6)])
    assert reasons(ledger) == [("h00", "unknown_proposal"), ("h01", "unknown_proposal"),
                               ("h02", None)]  # fmt: skip
    assert verify_governance(ledger.db) == []
