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

Both checks first apply ``ExportCapability``: a household cannot export more than its installed
generation and storage deliver, so a claim beyond that *names* it, whatever the feeder says
(``capability_finding``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np

from gridctl.core import ACCURACY_CLASS_MPE
from gridctl.sun import Place, pv_share_max

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


EXPORT_MARGIN = 1.05
"""Headroom on a household's export capability (inverter ratings, their tolerance), relative;
the meter's accuracy class MPE comes on top."""
EXPORT_FLOOR_WH = 10.0
"""Export an interval's claim may show beyond capability whatever it is, Wh: a household with
neither generation nor storage still registers a little (meter start-up, phase imbalance)."""
MAX_CAPABILITY_W = 100e6
"""Largest export capability accepted, W (100 MW: far beyond any low-voltage connection)."""


@dataclass(frozen=True)
class ExportCapability:
    """What each household can export at most, W (> 0 export, here only): its PV inverters'
    AC rating plus its batteries' power limit (plus any other exporting device); 0 for a
    household with neither. Keys are household ids; a finite number in [0, MAX_CAPABILITY_W].

    pv_w: the part of a household's capability that is PV, W (missing: none), at most its
    capability. place: where the community is (None: unknown); with it, PV counts only as
    much as the sun allows in the interval (``gridctl.sun.pv_share_max``: nothing at night),
    batteries their full power at any hour."""

    capability_w: Mapping[str, float]
    pv_w: Mapping[str, float] = field(default_factory=dict)
    place: Place | None = None

    def __post_init__(self) -> None:
        for name in ("capability_w", "pv_w"):
            for h, v in getattr(self, name).items():
                if not isinstance(h, str):
                    raise ValueError(f"{name}: household ids are strings, not {h!r}")
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ValueError(f"{name}[{h}]: a number of W, not {v!r}")
                if not math.isfinite(v) or not 0 <= v <= MAX_CAPABILITY_W:
                    raise ValueError(
                        f"{name}[{h}]: a finite W in [0, {MAX_CAPABILITY_W:g}], not {v}"
                    )
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        for h, v in self.pv_w.items():
            if v > self.capability_w.get(h, 0.0):
                raise ValueError(f"pv_w[{h}]: {v:g} W exceeds the household's capability_w")

    def sun_share(self, interval: int, dt_h: float) -> float:
        """Share of its PV rating a household's PV may deliver in ``interval`` (0–1; 1 where
        the place is unknown)."""
        if self.place is None:
            return 1.0
        dt_s = dt_h * 3600.0
        return float(pv_share_max(self.place, interval * dt_s, dt_s)[0])

    def of(self, households: list[str], sun_share: float = 1.0) -> np.ndarray:
        """Capabilities of ``households`` in their order, W, their PV at ``sun_share`` of its
        rating (a household unknown is an error)."""
        missing = [h for h in households if h not in self.capability_w]
        if missing:
            raise ValueError(f"no export capability for {', '.join(missing)}")
        pv_off_w = [(1.0 - sun_share) * self.pv_w.get(h, 0.0) for h in households]
        return np.array([float(self.capability_w[h]) for h in households]) - pv_off_w


def capability_finding(
    claims: Claims, capability: ExportCapability, config: BalanceConfig
) -> Finding:
    """Name every verified household whose claimed export exceeds what it can deliver.

    The limit of an interval is max(capability × dt × (``EXPORT_MARGIN`` + MPE), MPE × gross,
    ``EXPORT_FLOOR_WH``), Wh, MPE of the household meters' class. The export counter is checked
    (not the net energy): no instant's export exceeds generation, so neither does its sum, and
    a claim exporting and importing in one interval cannot hide export behind import. Each named
    household's ``deviation_w`` is its claimed export power beyond capability, W, load
    convention (< 0). With the community's place known, PV counts only as far as the sun
    allows in the interval (``ExportCapability.sun_share``, in the case as ``sun_share``)."""
    share = capability.sun_share(claims.interval, claims.dt_h)
    cap_w = capability.of(claims.households, share)
    mpe = ACCURACY_CLASS_MPE[config.household_class]
    export_wh = claims.export_wh.astype(float)
    gross_wh = export_wh + claims.import_wh.astype(float)
    limit_wh = np.maximum(
        cap_w * claims.dt_h * (EXPORT_MARGIN + mpe), np.maximum(mpe * gross_wh, EXPORT_FLOOR_WH)
    )
    over = np.flatnonzero(claims.verified & (export_wh > limit_wh))
    if not len(over):
        return CONSISTENT
    named = tuple(int(h) for h in over)
    deviation_w = cap_w - export_wh / claims.dt_h
    per = {h: {"deviation_w": round(float(deviation_w[h]), 1)} for h in named}
    case: dict[str, object] = {
        "check": "capability",
        "why": "the claimed export exceeds what the household's generation and storage can "
        "deliver: physics rejects the claim",
        "exceeded": [
            {
                "household": claims.households[h],
                "export_wh": int(claims.export_wh[h]),
                "capability_wh": round(float(cap_w[h] * claims.dt_h), 1),
                "limit_wh": round(float(limit_wh[h]), 1),
            }
            for h in named
        ],
    }
    if capability.place is not None:
        case["sun_share"] = round(share, 4)
    return Finding(named=named, case=case, per_household=per)


@dataclass(frozen=True)
class BalanceCheck:
    """Energy conservation at the transformer (see the module doc): a breach holds everyone.

    capability: each household's export capability (None: not checked)."""

    config: BalanceConfig = BalanceConfig()
    capability: ExportCapability | None = None

    def __call__(self, claims: Claims) -> Finding:
        """Name households exporting beyond capability (their claims then leave no balance to
        check); otherwise hold every verified household when the balance breaks, and say
        nothing when it holds or a household or the transformer has no verified reading."""
        if self.capability is not None:
            found = capability_finding(claims, self.capability, self.config)
            if found.named:
                return found
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
