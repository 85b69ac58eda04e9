"""Governance benchmark: the tally of 10,000 members' signed votes, and its audit.

    OPENBLAS_NUM_THREADS=1 python benchmarks/governance.py [--members 10000] [--json FILE]

A real ledger file holds ``--members`` households, each with a member key enrolled and a
main meter whose verified readings give it a contribution (weights by ``contribution``, cap
10 %). One proposal is submitted; every member signs a vote (signing is the members' work,
done before timing starts). Timed, in this process (one core):

- tally: ``Governance.advance`` over the interval the proposal opens in (the weight snapshot
  read from the ledger's readings) with every vote received in it (digest, signature check,
  reason, one row each), then ``advance`` over its close (the count and the tally record);
- baseline, measured in the same run: bare Ed25519 verification of the same votes
  (``verify_signatures``, libsodium), the floor any tally has to pay;
- ``gov verify`` (``verify_governance``) of the ledger afterwards.

The table gives each time and its ratio to the baseline. JSON keys: ``tally_10k_s`` (the
tally scaled to 10,000 members), ``tally_s``, ``baseline_verify_s``, ``gov_verify_s``,
``members``, ``votes_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
"""Target for the tally of 10,000 members' votes on one core, s (issue 15)."""
COMMUNITY = "bench"
CHOICES = ("yes", "no", "abstain", "yes")


def _community(path: Path, members: int):  # type: ignore[no-untyped-def]
    """A ledger with ``members`` member keys and verified exports, and its governance; returns
    (ledger, governance, member keys)."""
    from gridctl.governance.book import Charter, Governance, base_values
    from gridctl.governance.spec import GovernanceSpec
    from gridctl.settlement.enrol import main_meter, simulated_coordinator_key
    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.readings import ReadingRow
    from gridctl.settlement.registry import register_meter
    from gridctl.settlement.signing import key_from_seed, public_bytes
    from gridctl.settlement.tables import insert_rows

    ledger = Ledger(path, simulated_coordinator_key(0))
    spec = GovernanceSpec(weights="contribution", cap_share=0.1)
    gov = Governance(ledger, COMMUNITY, Charter(spec, base_values(spec, 0.2, 1.0, 0.0), 0.32, 0.08))
    keys = {
        f"m{k:05d}": key_from_seed(f"gridctl-bench/member/{k}".encode()) for k in range(members)
    }
    with ledger.atomic() as db:
        for k, (h, key) in enumerate(keys.items()):
            gov.enrol_member(h, public_bytes(key), 0)
            meter = main_meter(h)
            meter_key = key_from_seed(f"gridctl-bench/meter/{k}".encode())
            register_meter(ledger, meter, h, "main", 17250.0, public_bytes(meter_key), 0)
            e_wh = 100 + (k * 7919) % 5000
            insert_rows(db, "meter_readings", [
                ReadingRow(meter, 50, 1, 0, e_wh, "k", b"", f"{h}-50", "verified", None, 0, e_wh,
                           1, 0.0, 0.0, 1, None)
            ])  # fmt: skip
    return ledger, gov, keys


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print the table; returns the measured figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    from gridctl.governance.audit import verify_governance
    from gridctl.governance.book import Received
    from gridctl.governance.votes import sign_vote
    from gridctl.settlement.verify import verify_signatures

    with tempfile.TemporaryDirectory() as d:
        ledger, gov, keys = _community(Path(d) / "gov.sqlite", args.members)
        p = gov.propose("community_per_kwh", 0.25, "benchmark", "operator", 4, 1, now=99)
        votes = [
            Received(h, sign_vote(key, COMMUNITY, p.proposal, h, CHOICES[k % 4], 1), p.opens)
            for k, (h, key) in enumerate(keys.items())
        ]
        gov.advance(99)
        pub = {m.key_id: m.public_key for m in gov.members(p.opens).values()}
        jobs = [(pub[r.vote.key_id], bytes.fromhex(r.vote.sig), r.vote.payload()) for r in votes]
        t0 = time.perf_counter()
        assert all(verify_signatures(jobs))
        base_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gov.advance(p.opens, votes)
        gov.advance(p.closes)
        tally_s = time.perf_counter() - t0
        t = gov.tally_of(p.proposal)
        assert t is not None and t.yes + t.no + t.abstain == t.total, t
        t0 = time.perf_counter()
        problems = verify_governance(ledger.db)
        audit_s = time.perf_counter() - t0
        assert problems == [], problems
        ledger.close()
    scale = 10_000 / args.members
    figures = {
        "tally_10k_s": round(tally_s * scale, 3),
        "tally_s": round(tally_s, 3),
        "baseline_verify_s": round(base_s, 3),
        "gov_verify_s": round(audit_s, 3),
        "members": args.members,
        "votes_per_s": round(args.members / tally_s, 1),
    }
    met = "met" if tally_s * scale <= TARGET_S else "MISSED"
    rows = [
        ("Ed25519 verify only, 1 core (baseline)", f"{base_s:.3f} s", "1.00", ""),
        ("snapshot + receive + verify + tally, 1 core", f"{tally_s:.3f} s",
         f"{tally_s / base_s:.2f}", f"≤ {TARGET_S:g} s per 10,000: {met}"),
        ("gov verify (audit) of the ledger", f"{audit_s:.3f} s", f"{audit_s / base_s:.2f}", ""),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"governance benchmark: {args.members:,} members' signed votes, weights by contribution")
    print(f"{'what':<{w}}  {'measured':>10}  {'× baseline':>10}  target")
    for what, val, ratio, target in rows:
        print(f"{what:<{w}}  {val:>10}  {ratio:>10}  {target}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
