"""Validation, estimation and editing (VEE) of signed interval readings: pure functions.

Two stages. ``authenticate`` decides whether a reading is what a registered meter signed for this
interval (reason codes below, cheap checks first, the Ed25519 signature last). ``assess`` then
checks the authentic readings against each meter's previous accepted reading and against each
other, vectorised over meters:

- sequence and counter continuity: the sequence number must grow; a counter must not decrease,
  unless it rolled over its modulus (then the energy is the wrapped difference); a meter that
  missed intervals gets its energy spread over the gap, marked ``estimated`` (no reward);
- physical plausibility: energy per direction ≤ 1.05 × rated power × interval length;
- spikes: energy far above the meter's recent average and near its rated limit;
- inverter vs meter: where a household's inverter also measures its grid exchange, both agree
  within max(4 %, 100 Wh) per direction.

Outcome per reading: ``verified``, ``estimated`` or ``rejected``, with a reason code. Only
verified energy is pooled and rewarded. Verified claims are then checked against the feeder's
physics (``gridctl.settlement.physics``), which may still reject one (``physics_inconsistent``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERIFIED = "verified"
ESTIMATED = "estimated"
REJECTED = "rejected"

REASONS = {
    # authentication (the reading is refused before VEE and kept in ``rejects``)
    "unknown_meter": "no such meter is registered",
    "unsigned": "the reading carries no signature",
    "unknown_key": "the key id is not registered",
    "other_meter": "the key belongs to another meter",
    "replayed_interval": "a reading signed for another interval",
    "revoked_key": "the key was revoked before this interval",
    "superseded_key": "the key was rotated out (or not yet valid) at this interval",
    "bad_signature": "the signature does not verify",
    "conflicting_readings": "the meter signed two different readings for one interval",
    "late": "the interval was already settled",
    # VEE
    "sequence_replay": "sequence number not above the last accepted one",
    "counter_decrease": "an energy counter went down (and did not roll over)",
    "implausible": "more energy than 1.05 × rated power × interval",
    "spike": "energy far above the meter's recent average and near its rating",
    "gap_filled": "intervals were missed; energy spread over the gap (estimated, no reward)",
    "baseline": "the meter's first reading, its counters at joining not known: it sets them "
    "(estimated, no energy counted)",
    "inverter_mismatch": "the household's inverter measured a different exchange",
    "physics_inconsistent": "the feeder's physics (transformer balance, voltages) rejects the "
    "claimed energy",
}
"""Every reason code a reading can get, with its meaning."""

ROLE_MAIN, ROLE_INVERTER, ROLE_TRANSFORMER = 0, 1, 2
ROLE_CODE = {"main": ROLE_MAIN, "inverter": ROLE_INVERTER, "transformer": ROLE_TRANSFORMER}

_ST_VERIFIED, _ST_ESTIMATED, _ST_REJECTED = 0, 1, 2
UNKNOWN_WH = -1
"""A meter table's counter when the meter joined without known counters."""
STATUS_NAMES = (VERIFIED, ESTIMATED, REJECTED)


@dataclass(frozen=True)
class VeeConfig:
    """Thresholds of the checks (defaults as in the module doc).

    plausibility_margin: factor on rated power × interval. agreement_rel / agreement_abs_wh:
    inverter-vs-meter tolerance, share and Wh.
    spike_factor × EMA and spike_floor × plausibility limit must both be exceeded for a spike,
    after spike_warmup accepted readings; ema_alpha: weight of the newest interval in the EMA.
    """

    plausibility_margin: float = 1.05
    agreement_rel: float = 0.04
    agreement_abs_wh: float = 100.0
    spike_factor: float = 8.0
    spike_floor: float = 0.8
    spike_warmup: int = 4
    ema_alpha: float = 0.2


@dataclass
class MeterTable:
    """Per-meter arrays in registry order: what VEE needs of each meter and its last reading.

    role: ROLE_* codes. household: index into the household list (-1 for a transformer).
    rated_w: W. modulus_wh: counter roll-over, Wh. joined: first interval it may read.
    last_interval / last_seq / e_import_wh / e_export_wh / ema_*_wh / n: the last accepted
    reading (or the counters at joining, with last_interval = joined - 1 and last_seq = 0;
    ``UNKNOWN_WH`` when they were not known).
    """

    ids: list[str]
    role: np.ndarray
    household: np.ndarray
    rated_w: np.ndarray
    modulus_wh: np.ndarray
    joined: np.ndarray
    last_interval: np.ndarray
    last_seq: np.ndarray
    e_import_wh: np.ndarray
    e_export_wh: np.ndarray
    ema_import_wh: np.ndarray
    ema_export_wh: np.ndarray
    n: np.ndarray


@dataclass(frozen=True)
class Assessment:
    """VEE outcome for the authentic readings of one interval (arrays aligned with ``idx``).

    idx: meter indices. status: 0 verified, 1 estimated, 2 rejected. reason: code or None.
    d_import_wh / d_export_wh: energy since the last accepted reading, Wh (≥ 0; the gap's
    total for an estimated reading). gap: intervals that energy covers (1 without a gap).
    advance: the reading becomes the meter's new reference. ema_*: EMAs after this reading.
    """

    idx: np.ndarray
    status: np.ndarray
    reason: list[str | None]
    d_import_wh: np.ndarray
    d_export_wh: np.ndarray
    gap: np.ndarray
    advance: np.ndarray
    ema_import_wh: np.ndarray
    ema_export_wh: np.ndarray


def assess(
    interval: int,
    idx: np.ndarray,
    seq: np.ndarray,
    e_import_wh: np.ndarray,
    e_export_wh: np.ndarray,
    table: MeterTable,
    dt_h: float,
    cfg: VeeConfig = VeeConfig(),
) -> Assessment:
    """Check one interval's authentic readings (one per meter at most) and decide their outcome.

    idx: meter index of each reading; seq, e_import_wh, e_export_wh: its signed values (Wh).
    dt_h: interval length, h.
    """
    idx = np.asarray(idx, dtype=np.int64)
    seq = np.asarray(seq, dtype=np.int64)
    imp = np.asarray(e_import_wh, dtype=np.int64)
    exp = np.asarray(e_export_wh, dtype=np.int64)
    k = interval - table.last_interval[idx]
    mod = table.modulus_wh[idx]
    # no reference yet: the reading becomes it, with no energy of its own
    baseline = (table.e_import_wh[idx] == UNKNOWN_WH) | (table.e_export_wh[idx] == UNKNOWN_WH)
    d_imp = np.where(baseline, 0, imp - table.e_import_wh[idx])
    d_exp = np.where(baseline, 0, exp - table.e_export_wh[idx])
    wrap_imp, wrap_exp = d_imp < 0, d_exp < 0
    d_imp = np.where(wrap_imp, d_imp + mod, d_imp)
    d_exp = np.where(wrap_exp, d_exp + mod, d_exp)
    limit = cfg.plausibility_margin * table.rated_w[idx] * dt_h * np.maximum(k, 1)
    over_imp, over_exp = d_imp > limit, d_exp > limit
    replay = (seq <= table.last_seq[idx]) | (k < 1)
    decrease = (wrap_imp & (over_imp | (d_imp < 0))) | (wrap_exp & (over_exp | (d_exp < 0)))
    implausible = over_imp | over_exp
    ema_imp = table.ema_import_wh[idx]
    ema_exp = table.ema_export_wh[idx]
    warm = (table.n[idx] >= cfg.spike_warmup) & (k == 1)
    floor = cfg.spike_floor * limit
    spike = warm & (
        ((d_imp > cfg.spike_factor * ema_imp) & (d_imp > floor))
        | ((d_exp > cfg.spike_factor * ema_exp) & (d_exp > floor))
    )
    gap = k > 1

    n = len(idx)
    status = np.full(n, _ST_VERIFIED, dtype=np.int8)
    reason: list[str | None] = [None] * n
    bad = replay | decrease | implausible | spike
    status[bad] = _ST_REJECTED
    status[~bad & (gap | baseline)] = _ST_ESTIMATED
    if bad.any() or gap.any() or baseline.any():
        for j in np.flatnonzero(bad | gap | baseline):
            reason[j] = (
                "sequence_replay" if replay[j]
                else "counter_decrease" if decrease[j]
                else "implausible" if implausible[j]
                else "spike" if spike[j]
                else "baseline" if baseline[j]
                else "gap_filled"
            )  # fmt: skip
    advance = ~bad

    role = table.role[idx]
    hh = table.household[idx]
    # inverter vs meter: both measure the household's grid exchange
    inv = np.flatnonzero((role == ROLE_INVERTER) & (status == _ST_VERIFIED))
    if len(inv):
        main_of = {int(hh[j]): j for j in np.flatnonzero(role == ROLE_MAIN)}
        for j in inv:
            m = main_of.get(int(hh[j]))
            if m is None or status[m] != _ST_VERIFIED:
                continue
            tol_imp = max(cfg.agreement_rel * d_imp[m], cfg.agreement_abs_wh)
            tol_exp = max(cfg.agreement_rel * d_exp[m], cfg.agreement_abs_wh)
            if abs(d_imp[m] - d_imp[j]) > tol_imp or abs(d_exp[m] - d_exp[j]) > tol_exp:
                status[m] = _ST_REJECTED
                reason[m] = "inverter_mismatch"
    a = cfg.ema_alpha
    step = np.maximum(k, 1)
    new_ema_imp = np.where(advance, (1 - a) * ema_imp + a * d_imp / step, ema_imp)
    new_ema_exp = np.where(advance, (1 - a) * ema_exp + a * d_exp / step, ema_exp)
    return Assessment(
        idx=idx,
        status=status,
        reason=reason,
        d_import_wh=np.where(bad, 0, d_imp),
        d_export_wh=np.where(bad, 0, d_exp),
        gap=np.maximum(k, 1),
        advance=advance,
        ema_import_wh=new_ema_imp,
        ema_export_wh=new_ema_exp,
    )
