"""What each simulated meter reports, given the world's truth: measurement error within the
meter's accuracy class, and the claims of dishonest households.

Error model
-----------
Energy: each meter measures each interval's energy with a relative error ε drawn from a normal
distribution of σ = MPE / 3 truncated at ±MPE, MPE the maximum permissible error of its accuracy
class (``core.ACCURACY_CLASS_MPE``, MID / EN 50470-3: households class B, 1 %; the transformer's
CT-operated meter class C, 0.5 %, by default). The errors are unbiased and independent between
intervals and between meters; each meter draws them from its own generator, seeded with the
scenario seed and the meter's id, so they do not depend on the households' order or on which
other meters exist. A real meter's error is partly systematic (a calibration offset per meter,
dependent on current and temperature); drawing afresh each interval within the class is the
simpler, kinder model, so detection measured against it is an upper bound for meters whose
error is mostly a fixed offset.

Counters: each meter accumulates the energy it reports per interval (measured, or claimed) in
import and export counters (split by the sign of the interval's energy, so they stay monotone),
kept exact and read as whole Wh by flooring: the fraction carries into later readings, no
energy is lost to rounding.

Voltage: reported with an error of σ = 0.1 % of nominal (truncated at ±0.3 %), the spread of an
IEC 61000-4-30 class S instrument (whose bound is ±0.5 % of the declared voltage), drawn like
the energy errors from a second generator per meter (the transformer meter's too).

Without ``meter_noise`` every honest meter reports exactly what flowed, as the world's exact
counters have it.

Cheats
------
A dishonest household's meter reports instead of its measured power p (W, load convention), with
X the cheat's size (W) and ``claimed_w`` the rule:

- inflate: p − X (X W more export, every interval);
- copy: p − min(X, max(0, p − p_n)), p_n the neighbour's measured power (its curve where it shows
  more export, by at most X);
- replay: the same with p_n the household's own claim one day earlier (its best of yesterday and
  today, by at most X; honest in the run's first day);
- reverse: −X where it imports (p > 0), else p.

The claimed energy goes into its counters. Each cheat's deviation (claimed − measured, W) per
interval is kept as the truth (``CheatTruth``) a benchmark scores detection against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from gridctl.core import ACCURACY_CLASS_MPE, INTERVALS_PER_DAY, interval_hours
from gridctl.settlement.enrol import TRANSFORMER_METER, main_meter
from gridctl.sim.physics import meter_step
from gridctl.sim.scenario import CheatKind, Scenario

TRUNCATE_SIGMAS = 3.0
"""Errors are drawn from a normal distribution truncated at this many σ (σ = MPE / 3)."""
VOLTAGE_SIGMA_PU = 0.001
"""Standard deviation of a reported voltage's error, p.u. of nominal (0.1 %)."""
_ENERGY, _VOLTAGE = 0, 1
"""A meter's two independent generator streams."""


def meter_rng(seed: int, meter_id: str, stream: int) -> np.random.Generator:
    """The generator of one meter's errors: seeded by the scenario seed, the meter id and the
    stream (0 energy, 1 voltage)."""
    key = int.from_bytes(hashlib.blake2b(meter_id.encode(), digest_size=8).digest(), "big")
    return np.random.default_rng([seed, key, stream])


def truncated_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws of a standard normal truncated at ±``TRUNCATE_SIGMAS`` (draws beyond redrawn)."""
    z = rng.standard_normal(n)
    out = np.abs(z) > TRUNCATE_SIGMAS
    while out.any():
        z[out] = rng.standard_normal(int(out.sum()))
        out = np.abs(z) > TRUNCATE_SIGMAS
    return z


def meter_errors(seed: int, meter_id: str, mpe: float, n: int) -> np.ndarray:
    """Relative energy errors of one meter over n intervals, (n,): σ = mpe / 3, |ε| ≤ mpe."""
    return truncated_normal(meter_rng(seed, meter_id, _ENERGY), n) * (mpe / TRUNCATE_SIGMAS)


def voltage_errors(seed: int, meter_id: str, n: int) -> np.ndarray:
    """Voltage errors of one meter over n intervals, p.u., (n,): σ = ``VOLTAGE_SIGMA_PU``,
    truncated at ±3σ."""
    return truncated_normal(meter_rng(seed, meter_id, _VOLTAGE), n) * VOLTAGE_SIGMA_PU


def claimed_w(kind: CheatKind, p_w: np.ndarray, size_w: float, ref_w: np.ndarray) -> np.ndarray:
    """The power a dishonest meter claims (see the module doc), load convention.

    kind: the cheat. p_w: measured power, W. size_w: the cheat's size X, W (> 0).
    ref_w: the curve copy and replay take from (the neighbour's measured power, or the own claim
    a day earlier), W; NaN: none, honest. Returns the claimed power, W (≤ p_w).
    """
    if kind == "inflate":
        return p_w - size_w
    if kind == "reverse":
        return np.where(p_w > 0, -size_w, p_w)
    return p_w - np.minimum(size_w, np.fmax(0.0, p_w - ref_w))


@dataclass(frozen=True)
class CheatTruth:
    """What the dishonest households did, for scoring detection; one column per cheat.

    household: index of each cheater, (K,). kind: each cheat's kind. size_w: its size X, W, (K,).
    deviation_w: claimed minus measured power, W, (T, K): ≤ 0, extra export claimed; 0 outside
    the cheat's window and wherever its rule leaves the claim honest.
    """

    household: np.ndarray
    kind: list[CheatKind]
    size_w: np.ndarray
    deviation_w: np.ndarray

    @property
    def cheating(self) -> np.ndarray:
        """(T, K) bool: a cheating interval, at least half the cheat's size claimed as extra
        export (deviation ≤ −size_w / 2)."""
        return self.deviation_w <= -self.size_w / 2

    @property
    def at_stake_wh(self) -> np.ndarray:
        """(T, K) energy claimed beyond what was measured, Wh (≥ 0)."""
        return -self.deviation_w * interval_hours()


@dataclass(frozen=True)
class _Cheat:
    household: int
    kind: CheatKind
    size_w: float
    neighbour: int
    start: int
    end: int


class Meters:
    """Every meter of a run: each household's connection meter and the transformer meter.

    ``step`` after the world's interval t; then the counters and powers below are what the meters
    report. imp_wh / exp_wh: household counters, exact, Wh, (H,). trafo_wh: the transformer
    meter's (import, export), Wh. offset_w: reported minus true power of the last interval, W,
    (H,) (0 before the first). error / trafo_error: relative energy errors, (T, H) / (T,);
    v_error_pu / trafo_v_error_pu: voltage errors, p.u., (T, H) / (T,) (all 0 without
    ``meter_noise``).
    """

    def __init__(self, scn: Scenario, ids: list[str]):
        n_t, n_h = scn.intervals, len(ids)
        if scn.meter_noise:
            mpe_h = ACCURACY_CLASS_MPE[scn.meters.household_class]
            mpe_t = ACCURACY_CLASS_MPE[scn.meters.transformer_class]
            meter_ids = [main_meter(h) for h in ids]
            self.error = np.array([meter_errors(scn.seed, m, mpe_h, n_t) for m in meter_ids]).T
            self.v_error_pu = np.array([voltage_errors(scn.seed, m, n_t) for m in meter_ids]).T
            self.trafo_error = meter_errors(scn.seed, TRANSFORMER_METER, mpe_t, n_t)
            self.trafo_v_error_pu = voltage_errors(scn.seed, TRANSFORMER_METER, n_t)
        else:
            self.error, self.v_error_pu = np.zeros((n_t, n_h)), np.zeros((n_t, n_h))
            self.trafo_error, self.trafo_v_error_pu = np.zeros(n_t), np.zeros(n_t)
        index = {h: k for k, h in enumerate(ids)}
        self.cheats = [
            _Cheat(index[c.household], c.kind, c.size_w,
                   -1 if c.neighbour is None else index[c.neighbour], *scn.cheat_window(c))
            for c in scn.cheat
        ]  # fmt: skip
        self.p_w = np.zeros((n_t, n_h))
        """Reported power per interval, W, load convention."""
        self.deviation_w = np.zeros((n_t, len(self.cheats)))
        self.imp_wh, self.exp_wh = np.zeros(n_h), np.zeros(n_h)
        self.trafo_wh = (np.zeros(1), np.zeros(1))
        self.offset_w = np.zeros(n_h)

    def step(self, t: int, p_w: np.ndarray, p_trafo_w: float) -> None:
        """Measure interval t: households' true grid power p_w, W, (H,), and the transformer's
        p_trafo_w, W (load convention, > 0 into the feeder); advance every counter."""
        measured = p_w * (1.0 + self.error[t])
        reported = measured.copy()
        for k, c in enumerate(self.cheats):
            if not c.start <= t < c.end:
                continue
            day_ago = t - INTERVALS_PER_DAY
            if c.kind == "copy":
                ref = measured[c.neighbour]
            else:
                ref = self.p_w[day_ago, c.household] if day_ago >= 0 else np.nan
            reported[c.household] = claimed_w(c.kind, measured[c.household], c.size_w, ref)
            self.deviation_w[t, k] = reported[c.household] - measured[c.household]
        self.p_w[t] = reported
        self.offset_w = reported - p_w
        dt_h = interval_hours()
        self.imp_wh, self.exp_wh = meter_step(self.imp_wh, self.exp_wh, reported, dt_h)
        p_trafo = np.array([p_trafo_w * (1.0 + self.trafo_error[t])])
        self.trafo_wh = meter_step(*self.trafo_wh, p_trafo, dt_h)

    def household_counters_wh(self) -> tuple[np.ndarray, np.ndarray]:
        """Every household meter's reported counters now, whole Wh (floored), (H,) int64."""
        return np.floor(self.imp_wh).astype(np.int64), np.floor(self.exp_wh).astype(np.int64)

    def trafo_counters_wh(self) -> tuple[int, int]:
        """The transformer meter's reported counters now, whole Wh (floored)."""
        return int(self.trafo_wh[0][0]), int(self.trafo_wh[1][0])

    def household_v_pu(self, t: int, v_pu: np.ndarray) -> np.ndarray:
        """The voltages the household meters report for interval t, p.u., (H,), given the true
        ones v_pu."""
        return v_pu + self.v_error_pu[t]

    def trafo_v_pu(self, t: int, v_pu: float) -> float:
        """The voltage the transformer meter reports for interval t, p.u., given the true one."""
        return v_pu + float(self.trafo_v_error_pu[t])

    def truth(self) -> CheatTruth:
        """The cheats' record so far (see ``CheatTruth``)."""
        return CheatTruth(
            household=np.array([c.household for c in self.cheats], dtype=np.int64),
            kind=[c.kind for c in self.cheats],
            size_w=np.array([c.size_w for c in self.cheats]),
            deviation_w=self.deviation_w.copy(),
        )
