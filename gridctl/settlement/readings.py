"""Checks of interval meter readings before they may be settled (a first VEE).

A reading is a pair of cumulative energy counters (import, export) in integer Wh at the end
of an interval. The energy of the interval is the difference to the previous reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERIFIED = "verified"
REJECTED = "rejected"
PLAUSIBILITY_MARGIN = 1.05
"""An interval may carry at most this factor times rated power x interval length."""


@dataclass(frozen=True)
class ReadingCheck:
    """Per-household outcome for one interval (arrays in household order).

    import_wh / export_wh: energy of the interval, Wh; 0 where the reading was not verified.
    status: ``verified`` or ``rejected``. reason: why a reading was rejected, else None.
    """

    import_wh: np.ndarray
    export_wh: np.ndarray
    status: list[str]
    reason: list[str | None]


def check_readings(
    prev_import_wh: np.ndarray,
    prev_export_wh: np.ndarray,
    import_wh: np.ndarray,
    export_wh: np.ndarray,
    max_wh: np.ndarray,
) -> ReadingCheck:
    """Verify one interval's counters against the previous ones.

    prev_import_wh, prev_export_wh, import_wh, export_wh: counters, Wh; NaN where unknown.
    max_wh: largest plausible energy in one interval per household, Wh.
    Rejects (reason): ``missing`` counter, ``counter_decrease``, ``implausible`` energy.
    """
    d_imp = np.asarray(import_wh, float) - np.asarray(prev_import_wh, float)
    d_exp = np.asarray(export_wh, float) - np.asarray(prev_export_wh, float)
    limit = np.asarray(max_wh, float) * PLAUSIBILITY_MARGIN
    missing = np.isnan(d_imp) | np.isnan(d_exp)
    with np.errstate(invalid="ignore"):
        decrease = ~missing & ((d_imp < 0) | (d_exp < 0))
        implausible = ~missing & ~decrease & ((d_imp > limit) | (d_exp > limit))
    reason: list[str | None] = [
        "missing" if m else "counter_decrease" if d else "implausible" if i else None
        for m, d, i in zip(missing, decrease, implausible, strict=True)
    ]
    ok = ~(missing | decrease | implausible)
    return ReadingCheck(
        import_wh=np.where(ok, d_imp, 0.0).astype(np.int64),
        export_wh=np.where(ok, d_exp, 0.0).astype(np.int64),
        status=[VERIFIED if k else REJECTED for k in ok],
        reason=reason,
    )
