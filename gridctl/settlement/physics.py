"""Check an interval's verified claims against physics: what the feeder says they cannot be.

A signature proves who claims an energy figure, not that the energy flowed. After VEE, the
interval's verified household energies, the households' voltages and the transformer meter go
to a ``PhysicsCheck``; its ``Finding`` names the households whose claim physics rejects (their
reading becomes ``rejected`` / ``physics_inconsistent`` and earns nothing) and those it cannot
clear (their rewards are *held*: booked to the holding account until a later release or
forfeit), with a JSON-ready case record kept in the ledger.

``BalanceCheck`` is the check without a feeder model: energy is conserved at the transformer,
so the transformer meter's net energy minus the households' must be the feeder's losses, within
the meters' accuracy (MID classes). It cannot tell who broke the balance, so a breach holds
every household's rewards. With a feeder model the coordinator uses the state estimator
(``gridctl.settlement.feeder_check``), which can tell households apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gridctl.core import ACCURACY_CLASS_MPE

Z_DEFAULT = 4.0
"""Standard deviations a residual may reach before it counts as a breach (normal errors:
about one honest interval in 16,000 exceeds it)."""


@dataclass(frozen=True)
class Claims:
    """One interval's verified claims (arrays in household order).

    import_wh / export_wh: verified energy, Wh (0 where not verified). verified: the main
    meter's reading was verified. v_pu: each household's mean voltage, p.u. (NaN unknown).
    trafo_import_wh / trafo_export_wh: the transformer meter's verified energy, Wh (None: no
    verified transformer reading). trafo_v_pu: its voltage, p.u. (NaN unknown). dt_h: h.
    """

    interval: int
    households: list[str]
    import_wh: np.ndarray
    export_wh: np.ndarray
    verified: np.ndarray
    v_pu: np.ndarray
    trafo_import_wh: int | None
    trafo_export_wh: int | None
    trafo_v_pu: float
    dt_h: float

    @property
    def net_wh(self) -> np.ndarray:
        """Each household's verified net energy, Wh, load convention (> 0 import)."""
        return self.import_wh.astype(np.int64) - self.export_wh.astype(np.int64)


@dataclass(frozen=True)
class Finding:
    """What physics says of one interval: households named (claim rejected), households held
    (rewards held for review) and the case record (None: the claims are consistent)."""

    named: tuple[int, ...] = ()
    held: tuple[int, ...] = ()
    case: dict[str, object] | None = None
    per_household: dict[int, dict[str, float]] = field(default_factory=dict)
    """Residual figures of each named or held household (normalised residual, deviation W)."""


CONSISTENT = Finding()


class PhysicsCheck(Protocol):
    """Checks one interval's verified claims against physics."""

    def __call__(self, claims: Claims) -> Finding: ...


@dataclass(frozen=True)
class BalanceConfig:
    """The transformer balance's tolerance.

    household_class / transformer_class: MID accuracy classes (A 2 %, B 1 %, C 0.5 % largest
    permissible error). Each meter's error is taken as normal with σ = MPE / 3 of its energy;
    a breach is a residual beyond ``z`` combined σ outside the loss band. loss_budget: largest
    line loss as a share of the households' gross exchange; no_load_loss_w: the transformer's
    iron losses, W (the band is [0, no-load + budget]).
    """

    household_class: str = "B"
    transformer_class: str = "C"
    z: float = Z_DEFAULT
    loss_budget: float = 0.05
    no_load_loss_w: float = 0.0

    def __post_init__(self) -> None:
        for name in ("household_class", "transformer_class"):
            if getattr(self, name) not in ACCURACY_CLASS_MPE:
                raise ValueError(f"{name}: one of {', '.join(ACCURACY_CLASS_MPE)}")
        for name in ("z", "loss_budget", "no_load_loss_w"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: a finite number ≥ 0, not {v}")

    def sigma_wh(self, gross_wh: np.ndarray | float, transformer: bool = False) -> np.ndarray:
        """One σ of a meter's energy error, Wh, for its gross energy (import + export), Wh."""
        cls = self.transformer_class if transformer else self.household_class
        return np.asarray(gross_wh, dtype=float) * ACCURACY_CLASS_MPE[cls] / 3.0


@dataclass(frozen=True)
class BalanceCheck:
    """Energy conservation at the transformer (see the module doc): a breach holds everyone."""

    config: BalanceConfig = BalanceConfig()

    def __call__(self, claims: Claims) -> Finding:
        """Hold every verified household when the balance breaks; nothing to say otherwise
        (also when a household or the transformer has no verified reading: no balance)."""
        if claims.trafo_import_wh is None or claims.trafo_export_wh is None:
            return CONSISTENT
        if not claims.verified.all():
            return CONSISTENT
        cfg = self.config
        gross = (claims.import_wh + claims.export_wh).astype(float)
        trafo_gross = float(claims.trafo_import_wh + claims.trafo_export_wh)
        sigma = math.sqrt(
            float((cfg.sigma_wh(gross) ** 2).sum()) + float(cfg.sigma_wh(trafo_gross, True)) ** 2
        )
        loss_wh = float(claims.trafo_import_wh - claims.trafo_export_wh) - float(
            claims.net_wh.sum()
        )
        hi = cfg.no_load_loss_w * claims.dt_h + cfg.loss_budget * float(gross.sum())
        tol = cfg.z * sigma
        if -tol <= loss_wh <= hi + tol:
            return CONSISTENT
        held = tuple(int(h) for h in np.flatnonzero(claims.verified))
        case = {
            "check": "balance",
            "loss_wh": round(loss_wh, 1),
            "band_wh": [0.0, round(hi, 1)],
            "tolerance_wh": round(tol, 1),
            "why": "household meters do not add up to the transformer meter; physics cannot "
            "tell who, so every household's rewards are held for review",
        }
        return Finding(held=held, case=case)
