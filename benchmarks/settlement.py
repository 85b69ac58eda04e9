"""Settlement benchmark: signed readings verified and settled per second, and ledger verify time.

    python benchmarks/settlement.py [--households 1000] [--intervals 10] [--json FILE]

Measured in one run, on this machine:

- baseline: bare Ed25519 verification (``cryptography``) of the same readings, one core, and on
  every core (a process per core);
- settle, 1 core: ``Settler.settle`` of every reading (authenticate, VEE, pool, ledger booking,
  Merkle root, commit), signature checks in this process;
- settle, all cores: the same with signature checks in worker processes (one per core but
  one) while this process books, and a learned share in this process after (``ParallelVerifier``);
- ``verify_ledger`` of a ledger with 1,000,000 entries (chain, roots, balances).

Readings are signed before timing starts (signing is the meters' work). The table gives each
rate and its ratio to the baseline measured in the same run. On a shared machine other work
skews single measurements: the load (1-minute load average, and CPU pressure where Linux
reports it) is printed at the start and the end, and the 1-core baseline is measured again
at the end, so a run disturbed between the two shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

TARGETS = {"readings_per_s_1core": 10_000, "readings_per_s_all": 18_000, "verify_1m_s": 10.0}


def openssl_verify(jobs: list) -> list[bool]:
    """The baseline: ``cryptography``'s (OpenSSL) Ed25519 verification, keys loaded once."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[bytes, Ed25519PublicKey] = {}
    out = []
    for pub, sig, payload in jobs:
        key = keys.get(pub) or keys.setdefault(pub, Ed25519PublicKey.from_public_bytes(pub))
        try:
            key.verify(sig, payload)
            out.append(True)
        except InvalidSignature:
            out.append(False)
    return out


def _bare_rate(jobs: list, processes: int) -> float:
    """Baseline verifications per second on ``processes`` processes."""
    if processes <= 1:
        t0 = time.perf_counter()
        ok = openssl_verify(jobs)
        dt = time.perf_counter() - t0
    else:
        step = -(-len(jobs) // processes)
        chunks = [jobs[k : k + step] for k in range(0, len(jobs), step)]
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(openssl_verify, [c[:8] for c in chunks]))  # warm the workers
            t0 = time.perf_counter()
            ok = [x for part in pool.map(openssl_verify, chunks) for x in part]
            dt = time.perf_counter() - t0
    assert all(ok)
    return len(jobs) / dt


def _settle_rate(households: int, intervals: int, parallel: bool, tmp: Path) -> tuple[float, int]:
    from gridctl.settlement.audit import verify_ledger
    from gridctl.settlement.enrol import SyntheticCommunity, simulated_coordinator_key
    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.settle import ParallelVerifier, SettlementConfig, Settler

    path = tmp / f"settle-{'all' if parallel else '1'}.sqlite"
    first = 2_000_000
    with Ledger(path, simulated_coordinator_key(0)) as ledger:
        community = SyntheticCommunity(households, first, seed=7)
        community.enrol(ledger)
        batches = [community.readings(first + t) for t in range(intervals)]
        verifier = ParallelVerifier() if parallel else None
        try:
            settler = Settler(ledger, SettlementConfig(0.20, 1.0), verifier)
            if verifier is not None:
                verifier.start()  # outside the timing
            t0 = time.perf_counter()
            for t, batch in enumerate(batches):
                out = settler.settle(first + t, batch)
                assert not out.rejected, out.rejected[:3]
            dt = time.perf_counter() - t0
        finally:
            if verifier is not None:
                verifier.close()
    assert verify_ledger(path).ok
    n = sum(len(b) for b in batches)
    return n / dt, n


def _build_ledger(path: Path, entries: int, per_interval: int = 2000) -> None:
    """A ledger of ``entries`` postings (reward transactions of two legs), intervals closed."""
    from gridctl.settlement.enrol import simulated_coordinator_key
    from gridctl.settlement.ledger import Ledger, Posting, Transaction

    with Ledger(path, simulated_coordinator_key(0)) as ledger:
        n_tx = entries // 2
        per = per_interval // 2
        for start in range(0, n_tx, per):
            interval = 3_000_000 + start // per
            txs = [
                Transaction(
                    f"{interval}:m{k % 5000:05d}/main:reward",
                    interval,
                    "reward",
                    (
                        Posting("token:issuance", "token", -(1 + k % 977)),
                        Posting(f"household:m{k % 5000:05d}", "token", 1 + k % 977),
                    ),
                    meter=f"m{k % 5000:05d}/main",
                )
                for k in range(start, min(start + per, n_tx))
            ]
            with ledger.atomic():
                ledger.append(txs)
                ledger.close_interval(interval)


def _load() -> tuple[float, float | None]:
    """(1-minute load average, share of time some task waited for a CPU over the last 10 s in
    % — Linux PSI — or None where unavailable)."""
    pressure = None
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        pressure = float(dict(f.split("=") for f in line.split()[1:])["avg10"])
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return os.getloadavg()[0], pressure


def _load_text(load: tuple[float, float | None]) -> str:
    avg, pressure = load
    return f"load {avg:.2f}" + ("" if pressure is None else f", CPU pressure {pressure:.1f} %")


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print the table; returns the measured figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=1000)
    ap.add_argument("--intervals", type=int, default=10)
    ap.add_argument("--verify-entries", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    from gridctl.settlement.audit import verify_ledger
    from gridctl.settlement.enrol import SyntheticCommunity, simulated_coordinator_key
    from gridctl.settlement.ledger import Ledger

    cores = os.cpu_count() or 1
    load_start = _load()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with Ledger(tmp / "baseline.sqlite", simulated_coordinator_key(0)) as ledger:
            c = SyntheticCommunity(args.households, 1, seed=7)
            c.enrol(ledger)
            readings = [r for t in range(args.intervals) for r in c.readings(1 + t)]
            pub = {k: v.public_key for k, v in _keys(ledger).items()}
        jobs = [(pub[r.key_id], r.signature, r.payload()) for r in readings]
        bare_1 = _bare_rate(jobs, 1)
        bare_all = _bare_rate(jobs, cores)
        rate_1, n = _settle_rate(args.households, args.intervals, False, tmp)
        rate_all, _ = _settle_rate(args.households, args.intervals, True, tmp)
        big = tmp / "verify.sqlite"
        t0 = time.perf_counter()
        _build_ledger(big, args.verify_entries)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        check = verify_ledger(big)
        verify_s = time.perf_counter() - t0
        assert check.ok and check.entries == args.verify_entries, check
        bare_end = _bare_rate(jobs, 1)
    load_end = _load()
    scale = 1_000_000 / args.verify_entries
    figures = {
        "readings_per_s_1core": round(rate_1, 1),
        "readings_per_s_all": round(rate_all, 1),
        "verify_1m_s": round(verify_s * scale, 3),
        "baseline_ed25519_verify_per_s_1core": round(bare_1, 1),
        "baseline_ed25519_verify_per_s_all": round(bare_all, 1),
        "cores": cores,
        "readings": n,
        "households": args.households,
        "verify_entries": args.verify_entries,
        "build_ledger_s": round(build_s, 2),
        "baseline_ed25519_verify_per_s_1core_at_end": round(bare_end, 1),
        "load_start": round(load_start[0], 2),
        "load_end": round(load_end[0], 2),
        "cpu_pressure_start_pct": load_start[1],
        "cpu_pressure_end_pct": load_end[1],
    }
    rows = [
        ("Ed25519 verify only, 1 core (baseline)", f"{bare_1:,.0f} /s", "1.00", ""),
        (f"Ed25519 verify only, {cores} cores", f"{bare_all:,.0f} /s",
         f"{bare_all / bare_1:.2f}", ""),
        ("verify + VEE + settle + book, 1 core", f"{rate_1:,.0f} /s", f"{rate_1 / bare_1:.2f}",
         _target("readings_per_s_1core", rate_1)),
        (f"verify + VEE + settle + book, {cores} cores", f"{rate_all:,.0f} /s",
         f"{rate_all / bare_1:.2f}", _target("readings_per_s_all", rate_all)),
        (f"ledger verify, {args.verify_entries:,} entries", f"{verify_s:.2f} s", "",
         _target("verify_1m_s", verify_s * scale)),
        ("Ed25519 verify only, 1 core, again at the end", f"{bare_end:,.0f} /s",
         f"{bare_end / bare_1:.2f}", ""),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"settlement benchmark: {n:,} readings of {args.households:,} households, {cores} cores")
    print(f"machine: {_load_text(load_start)} at the start, {_load_text(load_end)} at the end")
    print(f"{'what':<{w}}  {'measured':>14}  {'× baseline':>10}  target")
    for what, val, ratio, target in rows:
        print(f"{what:<{w}}  {val:>14}  {ratio:>10}  {target}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def _keys(ledger):  # type: ignore[no-untyped-def]
    from gridctl.settlement.registry import load_registry

    return load_registry(ledger.db).keys


def _target(key: str, value: float) -> str:
    goal = TARGETS[key]
    if key.endswith("_s"):
        return f"≤ {goal:g} s: {'met' if value <= goal else 'MISSED'}"
    return f"≥ {goal:,} /s: {'met' if value >= goal else 'MISSED'}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
