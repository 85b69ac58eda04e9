"""`gridctl member keygen` and `gridctl gov propose|vote|status|tally|verify` as a user runs
them: real subprocesses, a real ledger, a real Mosquitto, one-line errors with exit code 2."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.controller.keys import load_key_file
from gridctl.coordinator.assembly import charter
from gridctl.coordinator.config import enrol, load_coordinator_config
from gridctl.core import TIME_SCALE_ENV, interval_at
from gridctl.governance.book import Governance, Received
from gridctl.governance.votes import VoteMessage
from gridctl.protocol import decode, household_topic
from gridctl.settlement import gov_records as rec
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.signing import key_from_seed, key_id_of, public_bytes
from gridctl.settlement.verify import verify_signatures
from tests.conftest import Broker
from tests.governance.helpers import cast, member_key

HOMES = ["h00", "h01", "h02"]


def gridctl(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``gridctl ARGS`` as a user would, in a fresh interpreter (``env``: added to ours)."""
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gridctl", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit code 2, nothing on stdout, and one line on stderr that names the problem."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert proc.stdout == ""


@dataclass(frozen=True)
class Community:
    """A coordinator config and its ledger with three members; ``now``: the interval the
    history was written around."""

    dir: Path
    config: Path
    ledger: Path
    now: int


def _history(cfg_path: Path, now: int) -> None:
    """Proposal 1 passed and enacted (2 yes, 1 no), proposal 2 open with one yes and one no
    recorded, proposal 3 submitted for later (a draft); recorded as the coordinator does."""
    cfg = load_coordinator_config(cfg_path)
    enrol(cfg, now - 100)
    with Ledger(cfg.ledger) as ledger:
        gov = Governance(ledger, cfg.community, charter(cfg))
        p1 = gov.propose("community_per_kwh", 0.25, "cheaper than import", "h00", 4, 2, now - 40)
        gov.advance(p1.opens)
        votes = [cast("h00", 1, "yes", p1.opens), cast("h01", 1, "yes", p1.opens),
                 cast("h02", 1, "no", p1.opens + 1)]  # fmt: skip
        gov.advance(p1.opens + 1, votes)
        p2 = gov.propose("fairness", "kwp", "share curtailment by kWp", "operator", 60, 1, now - 5)
        gov.advance(p2.opens + 1, [cast("h00", 2, "yes", p2.opens), cast("h01", 2, "no", p2.opens)])
        gov.propose("battery_reserve_soc", 0.2, "outages", "h01", 8, 1, now + 20)
        gov.advance(now - 1)


@pytest.fixture
def community(tmp_path: Path) -> Community:
    lines = [
        "community: oak",
        "broker: {port: 1883, password_file: coordinator.secret}",
        "ledger: ledger.sqlite",
        "inbox: inbox.sqlite",
        "tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}",
        "households:",
    ]
    for h in HOMES:
        meter = public_bytes(key_from_seed(f"meter/{h}".encode())).hex()
        lines.append(f"  - {{id: {h}, public_key: {meter}, "
                     f"member_key: {public_bytes(member_key(h)).hex()}}}")  # fmt: skip
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    now = interval_at(time.time())
    _history(cfg, now)
    return Community(tmp_path, cfg, tmp_path / "ledger.sqlite", now)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_member_keygen_prints_the_key_to_enrol_and_never_overwrites(tmp_path: Path) -> None:
    proc = gridctl("member", "keygen", "member.key", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    public = public_bytes(load_key_file(tmp_path / "member.key"))
    assert proc.stdout.split()[-2:] == [key_id_of(public), public.hex()]
    assert "member_key" in proc.stdout
    assert (tmp_path / "member.key").stat().st_mode & 0o077 == 0
    one_line_error(gridctl("member", "keygen", "member.key", cwd=tmp_path), "never overwritten")
    assert public_bytes(load_key_file(tmp_path / "member.key")) == public


def test_propose_takes_the_services_sped_up_clock(community: Community) -> None:
    """With GRIDCTL_TIME_SCALE (as the coordinator runs it) a proposal is dated by that clock,
    not the wall clock; a malformed value is a one-line error."""
    origin = time.time() - 3600
    scale = {TIME_SCALE_ENV: f"100@{origin:.3f}"}
    before = interval_at(origin + 100 * (time.time() - origin))  # ~396 intervals ahead of now
    proc = gridctl("gov", "propose", community.config, "community_per_kwh", "0.22",
                   "--rationale", "sped up", "--window", "96", "--delay", "4", env=scale)  # fmt: skip
    after = interval_at(origin + 100 * (time.time() - origin))
    assert proc.returncode == 0, proc.stderr
    with Ledger(community.ledger) as ledger:
        p = rec.proposals(ledger.db)[-1]
    assert before <= p.submitted <= after and p.submitted > community.now + 390
    bad = {TIME_SCALE_ENV: "fast"}
    one_line_error(gridctl("gov", "status", community.ledger, env=bad), TIME_SCALE_ENV)


def test_propose_status_tally_verify(community: Community) -> None:
    c = community
    proc = gridctl("gov", "propose", c.config, "community_per_kwh", "0.22", "--rationale",
                   "share more of the saving", "--window", "96", "--delay", "4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("proposal 4: community_per_kwh = 0.22 (ordinary, by operator)")
    with Ledger(c.ledger) as ledger:
        p = rec.proposals(ledger.db)[-1]
    assert (p.proposal, p.parameter, p.value, p.rationale) == (
        4, "community_per_kwh", "0.22", "share more of the saving"
    )  # fmt: skip
    assert p.submitted in (c.now, c.now + 1) and p.closes == p.opens + 96 == p.enact_at - 4
    for iv in (p.opens, p.closes, p.enact_at):
        assert f" {iv} (" in proc.stdout and " UTC)" in proc.stdout

    before = _sha256(c.ledger)
    status = gridctl("gov", "status", c.ledger, "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["proposal"], r["state"]) for r in rows] == [
        (1, "enacted"), (2, "open"), (3, "draft"), (4, "draft")
    ]  # fmt: skip
    assert rows[0]["tally"] | {"at_interval": 0} == {
        "proposal": 1, "at_interval": 0, "yes": 2, "no": 1, "abstain": 0, "total": 3,
        "outcome": "passed",
    }  # fmt: skip
    table = gridctl("gov", "status", c.config)  # the config names the ledger
    assert table.returncode == 0, table.stderr
    for word in ("enacted", "open", "draft", "fairness", "yes 2 / no 1 / abstain 0 of 3: passed"):
        assert word in table.stdout, word

    live = gridctl("gov", "tally", c.ledger, "2")
    assert live.returncode == 0, live.stderr
    assert "yes 1  no 1  abstain 0  total 3  turnout 66.7 % (2 voters" in live.stdout
    assert "outcome so far: failed" in live.stdout  # a tie does not pass
    done = json.loads(gridctl("gov", "tally", c.ledger, "1", "--json").stdout)
    assert (done["yes"], done["no"], done["outcome"], done["state"]) == (2, 1, "passed", "enacted")

    ok = gridctl("gov", "verify", c.ledger)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok: 4 proposals, 5 votes, 1 tallies, 1 enactments"
    assert _sha256(c.ledger) == before  # status, tally and verify write nothing


def test_a_vote_written_to_a_file_is_recorded_or_refused_by_the_coordinator(
    community: Community, tmp_path: Path
) -> None:
    """The CLI refuses only what it can check; the coordinator refuses the rest, recorded
    with a reason, and counts the valid one."""
    c = community
    ctrl = _controller_config(tmp_path, "h02", 1883, "unused")
    key = tmp_path / "member.key"
    key.write_bytes(_pem(member_key("h02")))
    out = {}
    for pid in ("2", "999"):
        out[pid] = tmp_path / f"vote-{pid}.json"
        proc = gridctl("gov", "vote", ctrl, pid, "yes", "--key", key, "--out", out[pid])
        assert proc.returncode == 0, proc.stderr
        assert f"written to {out[pid]}" in proc.stdout
    votes = [VoteMessage.model_validate_json(out[p].read_text()) for p in ("2", "999")]
    assert abs(votes[0].seq - time.time() * 1000) < 60_000  # ms since the epoch
    with Ledger(c.ledger) as ledger:
        gov = Governance(ledger, "oak", charter(load_coordinator_config(c.config)))
        gov.advance(c.now, [Received("h02", v, c.now) for v in votes])
        got = [(v.proposal, v.household, v.reason) for _, v in rec.votes(ledger.db)][-2:]
    assert got == [(2, "h02", None), (999, "h02", "unknown_proposal")]
    live = gridctl("gov", "tally", c.ledger, "2")
    assert "yes 2  no 1  abstain 0  total 3  turnout 100.0 %" in live.stdout, live.stdout
    assert "outcome so far: passed" in live.stdout


def _pem(key: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())  # type: ignore[attr-defined]


def _controller_config(tmp_path: Path, household: str, port: int, password: str) -> Path:
    (tmp_path / f"{household}.secret").write_text(password + "\n")
    cfg = tmp_path / f"{household}.yaml"
    cfg.write_text(
        f"community: oak\nhousehold: {household}\n"
        f"broker: {{port: {port}, password_file: {household}.secret}}\n"
        "key_file: meter.key\nstate_db: controller.sqlite\n"
        "devices: [{name: meter, role: meter, profile: eastron-sdm630}]\n"
    )
    return cfg


async def test_vote_over_mosquitto_reaches_the_coordinator_signed(
    broker: Broker, tmp_path: Path
) -> None:
    h = "h03"
    ctrl = _controller_config(tmp_path, h, broker.port, broker.creds[h])
    keygen = await asyncio.to_thread(gridctl, "member", "keygen", "member.key", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    public = bytes.fromhex(keygen.stdout.split()[-1])
    received: list[tuple[str, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, username="coordinator",
                              password=broker.creds["coordinator"]) as sub:  # fmt: skip
        await sub.subscribe(f"gridctl/v1/{broker.community}/+/vote", qos=1)
        t0_ms = time.time() * 1000
        proc = await asyncio.to_thread(gridctl, "gov", "vote", ctrl, "7", "abstain", "--key",
                                       tmp_path / "member.key")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        topic = household_topic(broker.community, h, "vote")
        assert proc.stdout.strip().endswith(f"sent on {topic}")
        async with asyncio.timeout(10):
            async for m in sub.messages:
                received.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
                break
    assert received[0][0] == topic
    vote = decode(*received[0]).message
    assert isinstance(vote, VoteMessage)
    assert (vote.community, vote.household, vote.proposal, vote.choice) == ("oak", h, 7, "abstain")
    assert t0_ms - 1000 <= vote.seq <= time.time() * 1000
    assert verify_signatures([(public, bytes.fromhex(vote.sig), vote.payload())]) == [True]

    (tmp_path / f"{h}.secret").write_text("wrong password\n")
    refused = await asyncio.to_thread(gridctl, "gov", "vote", ctrl, "7", "yes", "--key",
                                      tmp_path / "member.key")  # fmt: skip
    one_line_error(refused, "vote not delivered to the broker")


BAD_PROPOSALS = {  # in process (the config's model takes seconds to import in each process)
    "physical": (["v_max_pu", "1.2"], "not_governable: v_max_pu is a physical safety limit"),
    "bad_choice": (["fairness", "loudest"], "bad_value: fairness is one of bus, kwp"),
    "bad_admit": (["admit", "h09"], "bad_value: admit takes household:member_key"),
    "bad_admit_key": (["admit", "h09:abc"], "bad_value: admit takes"),
    "not_member": (["fairness", "kwp", "--proposer", "h09"], "not_member: 'h09' has no member key"),
    "remove_stranger": (["remove", "h09"], "bad_value: remove: h09 is not a member"),
    "short_window": (["fairness", "kwp", "--window", "1"], "window 1 intervals lies outside"),
    "rationale": (["fairness", "kwp", "--rationale", "a\x07b"], "bad_rationale"),
}


@pytest.mark.parametrize("case", BAD_PROPOSALS)
def test_a_refused_proposal_exits_2_with_one_line(community: Community, case: str) -> None:
    args, needle = BAD_PROPOSALS[case]
    opts = {"--rationale": "r", "--window": "8", "--delay": "1"}
    for k in range(0, len(args) - 2, 2):
        opts.pop(args[2 + k], None)
    flat = [x for kv in opts.items() for x in kv]
    res = CliRunner().invoke(app, ["gov", "propose", str(community.config), *args, *flat])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    with Ledger(community.ledger) as ledger:
        assert len(rec.proposals(ledger.db)) == 3  # nothing refused is recorded


def test_bad_input_exits_2_with_one_line(community: Community, tmp_path: Path) -> None:
    c = community
    ctrl = _controller_config(tmp_path, "h01", 1883, "unused")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    key = tmp_path / "h01.key"
    key.write_bytes(_pem(member_key("h01")))
    propose = ["gov", "propose", c.config]
    opts = ["--rationale", "r", "--window", "8", "--delay", "1"]
    cases: list[tuple[list[str | Path], str]] = [
        ([*propose, "colour", "red", *opts], "unknown_parameter: 'colour' is not governed"),
        ([*propose, "community_per_kwh", "cheap", *opts],
         "bad_value: community_per_kwh takes a number"),
        ([*propose, "community_per_kwh", "0.5", *opts],
         "out_of_bounds: community_per_kwh = 0.5 currency/kWh lies outside its bound [0.08, 0.32]"
         " (feed-in <= community <= import)"),
        (["gov", "propose", c.dir / "none.yaml", "fairness", "kwp", *opts], "none.yaml"),
        (["gov", "vote", ctrl, "2", "maybe", "--key", key], "choice 'maybe': one of yes, no"),
        (["gov", "vote", ctrl, "two", "yes", "--key", key], "proposal 'two': a proposal id"),
        (["gov", "vote", ctrl, "0", "yes", "--key", key], "proposal 0: an id from 1"),
        (["gov", "vote", ctrl, "2", "yes", "--key", garbage], "not a PEM private key"),
        (["gov", "vote", ctrl, "2", "yes", "--key", c.dir / "none.key"], "cannot read key"),
        (["gov", "vote", c.dir / "none.yaml", "2", "yes", "--key", key], "none.yaml"),
        (["gov", "tally", c.ledger, "99"], "unknown_proposal: there is no proposal 99"),
        (["gov", "tally", c.ledger, "3"], "not_open: proposal 3 opens at interval"),
        (["gov", "status", c.dir / "none.sqlite"], "cannot read"),
        (["gov", "verify", c.dir / "none.sqlite"], "no ledger file at"),
        (["gov", "verify", garbage], "not a gridctl ledger"),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    procs = [  # at once: each is a fresh interpreter
        (subprocess.Popen([sys.executable, "-m", "gridctl", *map(str, args)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), needle)
        for args, needle in cases
    ]  # fmt: skip
    for p, needle in procs:
        out, err = p.communicate(timeout=120)
        one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err), needle)
    with Ledger(c.ledger) as ledger:
        assert len(rec.proposals(ledger.db)) == 3  # nothing refused was recorded


def _tampered(src: Path, dst: Path, sql: str) -> None:
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute(sql)
    con.commit()
    con.close()


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE gov_votes SET choice = 'no' WHERE rowid = 1", "gov_votes row 1 (proposal 1, h00)"),
        ("UPDATE gov_weights SET weight = 2 WHERE household = 'h01' AND proposal = 2",
         "gov_weights proposal 2 household h01"),
        ("UPDATE gov_tallies SET no = 0", "gov_tallies proposal 1"),
        ("UPDATE gov_proposals SET value = '0.2x' WHERE proposal = 1",
         "gov_proposals proposal 1: it or a record it rests on cannot be read"),
    ],
)  # fmt: skip
def test_verify_exits_1_naming_the_changed_record(
    community: Community, tmp_path: Path, sql: str, named: str
) -> None:
    copy = tmp_path / "tampered.sqlite"
    _tampered(community.ledger, copy, sql)
    proc = gridctl("gov", "verify", copy)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("governance broken:") and named in lines[0]


def test_a_proposal_from_another_process_is_taken_in_by_the_running_book(
    community: Community,
) -> None:
    """``gov propose`` beside a running coordinator: its book takes the proposal in when it
    next records governance, and opens it on time."""
    c = community
    cfg = load_coordinator_config(c.config)
    with Ledger(c.ledger) as running, Ledger(c.ledger) as cli:
        book = Governance(running, "oak", charter(cfg))
        p = Governance(cli, "oak", charter(cfg)).propose("fairness", "kwp", "r", "h02", 8, 1, c.now)
        book.advance(p.opens)
        assert book.state(p.proposal, p.opens) == "open"
        assert rec.snapshot(running.db, p.proposal) is not None
