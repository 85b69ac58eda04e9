"""The physics check with a feeder model: state estimation and bad-data identification.

Each interval the verified claims become measurements for the feeder's WLS state estimator
(``gridctl.grid.estimation``): each household's mean power (its net energy over the interval)
with σ from its meter's accuracy class, its reported voltage, and the transformer meter's power
and voltage. Iterated largest-normalised-residual identification then names the household whose
claim physics rejects, or holds a group it cannot tell apart (households on one bus, or all of
them when only the transformer balance sees the error).

Before estimating, claims of export beyond a household's capability are named
(``gridctl.settlement.physics.capability_finding``) and leave the measurements (their power
becomes a free state), so the transformer balance no longer implicates the others through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridctl.grid.estimation import Measurements, StateEstimator, identify
from gridctl.settlement.physics import (
    CONSISTENT,
    BalanceConfig,
    Claims,
    ExportCapability,
    Finding,
    capability_finding,
)

MIN_SIGMA_W = 1.0
"""Smallest σ of a claim, W: a meter reading of (almost) nothing still has its resolution."""
Q_SIGMA_VAR = 1000.0
"""σ of a household's reactive power, var: meters sign active energy only, so its reactive power
is known only roughly (base load × tan φ, up to about 1 kvar); the estimator's prior is 0."""
VOLTAGE_SIGMA_PU = 0.001
"""σ of a meter's reported mean voltage, p.u. (0.1 %: an IEC 61000-4-30 class S instrument)."""


@dataclass(frozen=True)
class FeederCheck:
    """Checks claims against the feeder (see the module doc).

    estimator: the feeder's state estimator (the same households as settlement). balance: the
    meters' accuracy classes (σ = MPE / 3 of each meter's energy). threshold: the largest
    normalised residual a claim may have (the balance's ``z``). sigma_v_pu: σ of the reported
    voltages, p.u. capability: each household's export capability (None: not checked).
    """

    estimator: StateEstimator
    balance: BalanceConfig
    sigma_v_pu: float = VOLTAGE_SIGMA_PU
    capability: ExportCapability | None = None

    def __call__(self, claims: Claims) -> Finding:
        """Named and held households of one interval: those exporting beyond capability, then
        what estimation finds without their claims; the case has both."""
        beyond = CONSISTENT
        if self.capability is not None:
            beyond = capability_finding(claims, self.capability, self.balance)
        estimated = self.estimate(claims, beyond.named)
        if estimated.case is None or beyond.case is None:
            return beyond if estimated.case is None else estimated
        case = {
            "check": "capability+estimation",
            "why": f"{beyond.case['why']}; {estimated.case['why']}",
            "exceeded": beyond.case["exceeded"],
            "steps": estimated.case["steps"],
        }
        return Finding(
            named=beyond.named + estimated.named, held=estimated.held, case=case,
            per_household={**estimated.per_household, **beyond.per_household},
        )  # fmt: skip

    def estimate(self, claims: Claims, named: tuple[int, ...] = ()) -> Finding:
        """What estimation and LNR identification find of an interval's claims, those of the
        households ``named`` already left out (free states)."""
        m = self.measurements(claims, named)
        if m is None:
            return CONSISTENT
        found = identify(self.estimator, m, threshold=self.balance.z)
        if not found.steps:
            return CONSISTENT
        at = self._positions(claims.households)
        names = self.estimator.names
        named = [at[names[h]] for h in found.named]
        held = sorted({at[names[h]] for group in found.held for h in group})
        per = {}
        for step in found.steps:
            for name, rn, dev in zip(
                step["group"], step["group_rn"], step["group_deviation_w"], strict=True
            ):
                per[at[name]] = {"rn": rn, "deviation_w": dev}
        why = (
            "physics rejects the claim"
            if named and not held
            else "physics cannot tell these households apart: their rewards are held for review"
        )
        case = {"check": "estimation", "why": why, "steps": found.steps}
        return Finding(named=tuple(named), held=tuple(held), case=case, per_household=per)

    def measurements(self, claims: Claims, named: tuple[int, ...] = ()) -> Measurements | None:
        """The estimator's measurements of an interval (None without a transformer reading);
        the claims of the households ``named`` are left out (free states)."""
        if claims.trafo_import_wh is None or claims.trafo_export_wh is None:
            return None
        at = self._positions(claims.households)
        order = [at[h] for h in self.estimator.names]
        dt_h, cfg = claims.dt_h, self.balance
        gross_wh = (claims.import_wh + claims.export_wh).astype(float)[order]
        claimed = claims.verified.copy()
        claimed[list(named)] = False
        p_w = np.where(claimed, claims.net_wh / dt_h, np.nan)[order]
        sigma_p_w = np.maximum(cfg.sigma_wh(gross_wh) / dt_h, MIN_SIGMA_W)
        t_gross_wh = float(claims.trafo_import_wh + claims.trafo_export_wh)
        return Measurements(
            p_w=p_w,
            sigma_p_w=sigma_p_w,
            sigma_q_var=np.full(len(p_w), Q_SIGMA_VAR),
            v_pu=claims.v_pu[order],
            sigma_v_pu=self.sigma_v_pu,
            p_trafo_w=(claims.trafo_import_wh - claims.trafo_export_wh) / dt_h,
            sigma_trafo_w=max(float(cfg.sigma_wh(t_gross_wh, transformer=True)) / dt_h, 1.0),
            v_trafo_pu=claims.trafo_v_pu,
            sigma_v_trafo_pu=self.sigma_v_pu,
        )

    def _positions(self, households: list[str]) -> dict[str, int]:
        """Each household's position in settlement's order (ValueError unless settlement has
        exactly the estimator's households)."""
        at = {h: k for k, h in enumerate(households)}
        if len(at) != len(households) or at.keys() != set(self.estimator.names):
            raise ValueError("the feeder check's households are not settlement's")
        return at
