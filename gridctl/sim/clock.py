"""The simulated clock: epoch seconds that move only when the simulation moves them."""

from __future__ import annotations


class SimClock:
    """The simulated epoch clock every controller, the coordinator and the VEN read (s)."""

    def __init__(self, t_s: float):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s
