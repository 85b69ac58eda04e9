"""Settle intervals from signed readings into the ledger, exactly once.

``Settler.settle(interval, readings)`` authenticates the readings, runs VEE, matches verified
energy through the pool, and books readings, transactions and the interval's Merkle root in one
SQLite transaction. Intervals settle in increasing order; an interval at or before the last
settled one is *closed*: its readings are compared with the stored ones (exact duplicates change
nothing, anything new is kept in ``rejects`` as ``late``) and nothing is booked. So replaying
readings — QoS 1 duplicates, a restarted coordinator re-feeding its input — is harmless, and a
process killed at any point leaves every interval either settled or not started.

Signature checks can run on several cores (``ParallelVerifier``); the rest is one thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gridctl.core import INTERVAL_S, interval_hours
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.pool import IntervalSettlement, settle_interval
from gridctl.settlement.registry import Registry, load_registry
from gridctl.settlement.signing import SignedReading
from gridctl.settlement.vee import (
    _ST_VERIFIED,
    ROLE_CODE,
    ROLE_MAIN,
    STATUS_NAMES,
    Assessment,
    MeterTable,
    VeeConfig,
    assess,
)

log = logging.getLogger(__name__)

VerifyJob = tuple[bytes, bytes, bytes]
"""(public key, signature, payload) of one signature check."""

Verifier = Callable[[Sequence[VerifyJob]], list[bool]]

_KEYS: dict[bytes, Ed25519PublicKey] = {}


def verify_signatures(jobs: Sequence[VerifyJob]) -> list[bool]:
    """Ed25519 check of each (public key, signature, payload); pure, runs in any process."""
    out = []
    keys = _KEYS
    for pub, sig, payload in jobs:
        key = keys.get(pub)
        if key is None:
            key = keys[pub] = Ed25519PublicKey.from_public_bytes(pub)
        try:
            key.verify(sig, payload)
            out.append(True)
        except InvalidSignature:
            out.append(False)
    return out


class ParallelVerifier:
    """Signature checks split between this process and ``workers`` worker processes.

    share_here: fraction of each batch verified in this process while the workers do the rest
    (this process also settles, so it takes less than an equal share). Use as a context manager.
    """

    def __init__(self, workers: int | None = None, share_here: float = 0.5, min_batch: int = 256):
        self.workers = workers if workers is not None else max((os.cpu_count() or 2) - 1, 1)
        self.share_here = share_here
        self.min_batch = min_batch
        self._pool = ProcessPoolExecutor(self.workers)

    def __enter__(self) -> ParallelVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(cancel_futures=True)

    def __call__(self, jobs: Sequence[VerifyJob]) -> list[bool]:
        if len(jobs) < self.min_batch:
            return verify_signatures(jobs)
        here = int(len(jobs) * self.share_here)
        rest = jobs[here:]
        step = -(-len(rest) // self.workers)
        futures = [
            self._pool.submit(verify_signatures, rest[k : k + step])
            for k in range(0, len(rest), step)
        ]
        out = verify_signatures(jobs[:here])
        for f in futures:
            out.extend(f.result())
        return out


@dataclass(frozen=True)
class SettlementConfig:
    """Prices and rates, from configuration (governance will own them).

    community_per_kwh: currency per kWh shared. reward_tokens_per_kwh: tokens per verified kWh
    supplied to the pool. flex_tokens_per_kwh: tokens per kWh of flexibility delivered as
    planned. grid_*_per_kwh: when set, unmatched energy is booked against the ``grid`` account.
    pooled: False when the households do not share (readings are still verified and kept).
    """

    community_per_kwh: float
    reward_tokens_per_kwh: float
    flex_tokens_per_kwh: float = 0.0
    grid_import_per_kwh: float | None = None
    grid_feed_in_per_kwh: float | None = None
    pooled: bool = True
    interval_s: int = INTERVAL_S
    vee: VeeConfig = field(default_factory=VeeConfig)


@dataclass(frozen=True)
class FlexTarget:
    """What the plan asked of one household in one interval.

    flex_wh: flexibility asked for (energy shifted or held back), Wh (≥ 0).
    planned_net_wh: the household's planned net grid energy, Wh, load convention (> 0 import).
    Delivered = max(0, flex_wh − |verified net − planned_net_wh|).
    """

    flex_wh: int
    planned_net_wh: int


@dataclass(frozen=True)
class IntervalOutcome:
    """What settling one interval did (arrays in household order).

    import_wh / export_wh: verified energy, Wh (0 unless verified). status / reason: of each
    household's main meter reading ("missing" when it sent none). rejected: (meter, reason) of
    readings refused before VEE. settlement: pool outcome (None for an already closed interval).
    root: the interval's Merkle root (hex). booked: transactions newly booked.
    """

    interval: int
    households: list[str]
    import_wh: np.ndarray
    export_wh: np.ndarray
    status: list[str]
    reason: list[str | None]
    rejected: list[tuple[str, str]]
    settlement: IntervalSettlement | None
    root: str
    booked: int
    already_settled: bool


class Settler:
    """Settles intervals into an open ledger (see the module doc).

    verifier: how signatures are checked (default: in this process).
    """

    def __init__(self, ledger: Ledger, config: SettlementConfig, verifier: Verifier | None = None):
        self.ledger = ledger
        self.config = config
        self.verify = verifier or verify_signatures
        self._version: tuple[int, ...] = ()
        self.reload()

    def reload(self) -> None:
        """Re-read meters, keys and each meter's last accepted reading from the ledger."""
        db = self.ledger.db
        self.registry: Registry = load_registry(db)
        self._version = self._registry_version()
        meters = list(self.registry.meters.values())
        self.households = [m.household for m in meters if m.role == "main"]
        hh_index = {h: k for k, h in enumerate(self.households)}
        self._index = {m.meter: k for k, m in enumerate(meters)}
        self._main_meters = [m.meter for m in meters if m.role == "main"]
        self._main_idx = np.array(
            [k for k, m in enumerate(meters) if m.role == "main"], dtype=np.int64
        )
        self._pub = {k.key_id: k.public_key for k in self.registry.keys.values()}
        n = len(meters)
        t = MeterTable(
            ids=[m.meter for m in meters],
            role=np.array([ROLE_CODE[m.role] for m in meters], dtype=np.int8),
            household=np.array(
                [hh_index.get(m.household or "", -1) for m in meters],
                dtype=np.int64,
            ),
            rated_w=np.array([m.rated_w for m in meters], dtype=float),
            modulus_wh=np.array([m.counter_modulus_wh for m in meters], dtype=np.int64),
            joined=np.array([m.joined_interval for m in meters], dtype=np.int64),
            last_interval=np.array([m.joined_interval - 1 for m in meters], dtype=np.int64),
            last_seq=np.zeros(n, dtype=np.int64),
            e_import_wh=np.array([m.e_import_wh for m in meters], dtype=np.int64),
            e_export_wh=np.array([m.e_export_wh for m in meters], dtype=np.int64),
            ema_import_wh=np.zeros(n),
            ema_export_wh=np.zeros(n),
            n=np.zeros(n, dtype=np.int64),
        )
        for meter, iv, seq, imp, exp, ema_i, ema_e, cnt in db.execute(
            "SELECT r.meter, r.interval, r.seq, r.e_import_wh, r.e_export_wh, r.ema_import_wh,"
            " r.ema_export_wh, r.n FROM meter_readings r JOIN (SELECT meter, MAX(interval) AS iv"
            " FROM meter_readings WHERE advanced = 1 GROUP BY meter) l"
            " ON r.meter = l.meter AND r.interval = l.iv"
        ):
            k = self._index[meter]
            t.last_interval[k], t.last_seq[k] = iv, seq
            t.e_import_wh[k], t.e_export_wh[k] = imp, exp
            t.ema_import_wh[k], t.ema_export_wh[k], t.n[k] = ema_i, ema_e, cnt
        self.table = t

    def _registry_version(self) -> tuple[int, ...]:
        q = "SELECT (SELECT COUNT(*) FROM meters), (SELECT COUNT(*) FROM meter_keys),"
        q += " (SELECT COUNT(*) FROM key_events)"
        return tuple(self.ledger.db.execute(q).fetchone())

    # -- authentication ---------------------------------------------------------------

    def authenticate(self, interval: int, readings: Sequence[SignedReading]) -> list[str | None]:
        """Reason each reading is refused before VEE, None for an authentic one."""
        meters, keys = self.registry.meters, self.registry.keys
        reasons: list[str | None] = []
        jobs: list[VerifyJob] = []
        pending: list[int] = []
        for j, r in enumerate(readings):
            key = keys.get(r.key_id)
            why = (
                "unknown_meter" if r.meter not in meters
                else "unsigned" if not r.signature
                else "unknown_key" if key is None
                else "other_meter" if key.meter != r.meter
                else "replayed_interval" if r.interval != interval
                else "revoked_key" if key.revoked_at is not None and r.interval >= key.revoked_at
                else "superseded_key"
                if r.interval < key.valid_from
                or (key.rotated_at is not None and r.interval >= key.rotated_at)
                else None
            )  # fmt: skip
            reasons.append(why)
            if why is None:
                jobs.append((key.public_key, r.signature, r.payload()))  # type: ignore[union-attr]
                pending.append(j)
        for j, ok in zip(pending, self.verify(jobs), strict=True):
            if not ok:
                reasons[j] = "bad_signature"
        return reasons

    # -- settlement -------------------------------------------------------------------

    def settle(
        self,
        interval: int,
        readings: Iterable[SignedReading],
        flex: dict[str, FlexTarget] | None = None,
    ) -> IntervalOutcome:
        """Settle ``interval`` from its readings (any order, duplicates allowed); see module doc.

        flex: the plan's target per household (optional); verified households that met it earn
        flexibility tokens.
        """
        if self._registry_version() != self._version:
            self.reload()
        # exact duplicates collapse; order no longer matters after this
        unique = {r.digest(): r for r in readings}
        closed = self.ledger.last_closed()
        if closed is not None and interval <= closed:
            return self._replay(interval, unique)
        digests = sorted(unique)
        batch = [unique[d] for d in digests]
        reasons = self.authenticate(interval, batch)
        by_meter: dict[str, list[int]] = {}
        for j, why in enumerate(reasons):
            if why is None:
                by_meter.setdefault(batch[j].meter, []).append(j)
        for js in by_meter.values():
            if len(js) > 1:
                for j in js:
                    reasons[j] = "conflicting_readings"
        ok = [j for j, why in enumerate(reasons) if why is None]
        ok.sort(key=lambda j: self._index[batch[j].meter])
        t = self.table
        idx = np.array([self._index[batch[j].meter] for j in ok], dtype=np.int64)
        a = assess(
            interval,
            idx,
            np.array([batch[j].seq for j in ok], dtype=np.int64),
            np.array([batch[j].e_import_wh for j in ok], dtype=np.int64),
            np.array([batch[j].e_export_wh for j in ok], dtype=np.int64),
            t,
            interval_hours(self.config.interval_s),
            self.config.vee,
        )
        outcome_rows, imp, exp, status, reason = self._outcomes(batch, digests, ok, a)
        st = self._pool(interval, imp, exp, status, flex)
        rejected = [(batch[j].meter, str(reasons[j])) for j in range(len(batch)) if reasons[j]]
        estimates = self._estimates(interval, a)
        with self.ledger.atomic() as db:
            db.executemany(
                "INSERT INTO meter_readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                outcome_rows,
            )
            db.executemany(
                "INSERT OR IGNORE INTO rejects VALUES (?,?,?,?,?)",
                [
                    (digests[j], batch[j].meter, batch[j].interval, interval, reasons[j])
                    for j in range(len(batch))
                    if reasons[j]
                ],
            )
            db.executemany("INSERT INTO estimates VALUES (?,?,?,?,?)", estimates)
            booked = self.ledger.append(st.transactions)
            root = self.ledger.close_interval(interval)
        # the new references, only once the interval is on disk
        adv = a.advance
        k = a.idx[adv]
        t.last_interval[k] = interval
        t.last_seq[k] = [batch[j].seq for j, m in zip(ok, adv, strict=True) if m]
        t.e_import_wh[k] = [batch[j].e_import_wh for j, m in zip(ok, adv, strict=True) if m]
        t.e_export_wh[k] = [batch[j].e_export_wh for j, m in zip(ok, adv, strict=True) if m]
        t.ema_import_wh[k] = a.ema_import_wh[adv]
        t.ema_export_wh[k] = a.ema_export_wh[adv]
        t.n[k] += 1
        if rejected:
            log.info("interval=%d rejected=%d first=%s", interval, len(rejected), rejected[0])
        return IntervalOutcome(
            interval, list(self.households), imp, exp, status, reason, rejected, st, root,
            booked, False,
        )  # fmt: skip

    def _outcomes(
        self, batch: list[SignedReading], digests: list[str], ok: list[int], a: Assessment
    ) -> tuple[list[tuple], np.ndarray, np.ndarray, list[str], list[str | None]]:
        """meter_readings rows, and per household: verified energy, status and reason."""
        t = self.table
        n_h = len(self.households)
        imp = np.zeros(n_h, dtype=np.int64)
        exp = np.zeros(n_h, dtype=np.int64)
        status: list[str] = ["missing"] * n_h
        reason: list[str | None] = ["missing"] * n_h
        rows = []
        names = STATUS_NAMES
        n_next = t.n[a.idx] + 1
        for pos, j in enumerate(ok):
            r = batch[j]
            s = int(a.status[pos])
            adv = bool(a.advance[pos])
            rows.append(
                (r.meter, r.interval, r.seq, r.e_import_wh, r.e_export_wh, r.key_id, r.signature,
                 digests[j], names[s], a.reason[pos], int(a.d_import_wh[pos]),
                 int(a.d_export_wh[pos]), int(adv), float(a.ema_import_wh[pos]),
                 float(a.ema_export_wh[pos]), int(n_next[pos]) if adv else int(t.n[a.idx[pos]]))
            )  # fmt: skip
        mains = t.role[a.idx] == ROLE_MAIN
        for pos in np.flatnonzero(mains):
            h = int(t.household[a.idx[pos]])
            status[h] = names[int(a.status[pos])]
            reason[h] = a.reason[pos]
            if a.status[pos] == _ST_VERIFIED:
                imp[h] = a.d_import_wh[pos]
                exp[h] = a.d_export_wh[pos]
        return rows, imp, exp, status, reason

    def _estimates(self, interval: int, a: Assessment) -> list[tuple]:
        """Rows for the intervals a main meter missed: the gap's energy spread evenly."""
        t = self.table
        rows = []
        for pos in np.flatnonzero((a.gap > 1) & a.advance & (t.role[a.idx] == ROLE_MAIN)):
            k = int(a.gap[pos])
            m = int(a.idx[pos])
            share_i = _spread(int(a.d_import_wh[pos]), k)
            share_e = _spread(int(a.d_export_wh[pos]), k)
            first = interval - k + 1
            for g in range(k - 1):  # the last share belongs to the reading's own interval
                rows.append((t.ids[m], first + g, share_i[g], share_e[g], "gap_filled"))
        return rows

    def _pool(
        self,
        interval: int,
        imp: np.ndarray,
        exp: np.ndarray,
        status: list[str],
        flex: dict[str, FlexTarget] | None,
    ) -> IntervalSettlement:
        cfg = self.config
        if not cfg.pooled:
            imp = np.zeros_like(imp)
            exp = np.zeros_like(exp)
        delivered = None
        if flex:
            delivered = np.zeros(len(self.households), dtype=np.int64)
            for h, (name, s) in enumerate(zip(self.households, status, strict=True)):
                target = flex.get(name)  # type: ignore[arg-type]
                if target is None or s != "verified":
                    continue
                miss = abs(int(imp[h]) - int(exp[h]) - target.planned_net_wh)
                delivered[h] = max(0, target.flex_wh - miss)
        return settle_interval(
            interval,
            self.households,  # type: ignore[arg-type]
            imp,
            exp,
            cfg.community_per_kwh,
            cfg.reward_tokens_per_kwh,
            meters=self._main_meters,
            flex_delivered_wh=delivered,
            flex_tokens_per_kwh=cfg.flex_tokens_per_kwh,
            grid_import_per_kwh=cfg.grid_import_per_kwh,
            grid_feed_in_per_kwh=cfg.grid_feed_in_per_kwh,
        )

    def _replay(self, interval: int, unique: dict[str, SignedReading]) -> IntervalOutcome:
        """An already closed interval: keep genuinely new readings as ``late``, book nothing."""
        db = self.ledger.db
        new = []
        for d, r in sorted(unique.items()):
            known = db.execute(
                "SELECT 1 FROM meter_readings WHERE meter = ? AND interval = ? AND digest = ?",
                (r.meter, r.interval, d),
            ).fetchone()
            if known is None:
                known = db.execute("SELECT 1 FROM rejects WHERE digest = ?", (d,)).fetchone()
            if known is None:
                new.append((d, r.meter, r.interval, interval, "late"))
        if new:
            with self.ledger.atomic() as db:
                db.executemany("INSERT OR IGNORE INTO rejects VALUES (?,?,?,?,?)", new)
        stored = self.ledger.interval_root(interval)
        n_h = len(self.households)
        return IntervalOutcome(
            interval, list(self.households), np.zeros(n_h, dtype=np.int64),
            np.zeros(n_h, dtype=np.int64), ["closed"] * n_h, [None] * n_h,
            [(m, "late") for _, m, _, _, _ in new], None, stored[1] if stored else "", 0, True,
        )  # fmt: skip


def _spread(total: int, k: int) -> list[int]:
    """``total`` split into ``k`` integer shares that differ by at most 1."""
    base, rem = divmod(total, k)
    return [base + (1 if g < rem else 0) for g in range(k)]
