"""The power through a meter, from its signed readings: mean import and export over the latest
interval whose start and end counters are both in (the transformer meter's, for the grid
operator's telemetry report)."""

from __future__ import annotations

from gridctl.core import INTERVAL_S
from gridctl.settlement.signing import SignedReading

KEEP = 4
"""Intervals of counters kept (readings may come late or twice)."""


class MeterFlow:
    """Mean import and export of one meter over its latest complete interval, W ≥ 0."""

    def __init__(self, interval_s: int = INTERVAL_S):
        self.interval_s = interval_s
        self._counters: dict[int, tuple[int, int]] = {}  # interval → (import, export) Wh

    def add(self, r: SignedReading) -> None:
        """Take a reading (its counters at the end of ``r.interval``)."""
        self._counters[r.interval] = (r.e_import_wh, r.e_export_wh)
        for k in sorted(self._counters)[:-KEEP]:
            del self._counters[k]

    def latest(self) -> tuple[float | None, float | None]:
        """(import_w, export_w) over the latest interval with both counters (None: unknown, or
        a counter that went back)."""
        for k in sorted(self._counters, reverse=True):
            if k - 1 in self._counters:
                (i1, e1), (i0, e0) = self._counters[k], self._counters[k - 1]
                w_per_wh = 3600.0 / self.interval_s
                return (
                    (i1 - i0) * w_per_wh if i1 >= i0 else None,
                    (e1 - e0) * w_per_wh if e1 >= e0 else None,
                )
        return None, None
