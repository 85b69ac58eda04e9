"""A community assembled from its spec: feeder, limits, settlement configuration and planner.

The coordinator (``gridctl coordinator run``) and both simulations (``gridctl sim``, in process
and ``--wire``) build their community here from the same ``CommunitySpec`` — a coordinator
configuration or a scenario — so that a simulation plans and settles exactly as production
does; a simulation adds only the world (device physics, meters), the clock and where telemetry
comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandapower as pp

from gridctl.coordinator.planner import CommunityPlanner
from gridctl.dispatch.feeder_guard import FeederLimits
from gridctl.dispatch.spec import CommunitySpec, HouseholdSpec
from gridctl.governance.book import Charter, base_values
from gridctl.grid.estimation import StateEstimator
from gridctl.grid.feeder import (
    Profiles,
    load_feeder,
    resolve_buses,
    transformer_no_load_loss_w,
    transformer_rating_w,
)
from gridctl.public.spec import EVENTS
from gridctl.settlement.feeder_check import FeederCheck
from gridctl.settlement.physics import (
    BalanceCheck,
    BalanceConfig,
    ExportCapability,
    PhysicsCheck,
)
from gridctl.settlement.settle import SettlementConfig

DispatchMode = Literal["none", "home", "community"]
"""How a community plans: "none" (no plans: every home runs its local self-consumption),
"home" (each household optimised alone, no sharing, no feeder) or "community" (gridctl's
feeder-aware dispatch, the coordinator's mode)."""
DISPATCH_MODES: tuple[str, ...] = ("none", "home", "community")


@dataclass(frozen=True)
class Feeder:
    """A loaded feeder: the pandapower net, its standard profiles, each household's bus index
    (H,), the transformers' rating (VA, read as W) and no-load losses (W)."""

    net: pp.pandapowerNet
    profiles: Profiles
    buses: np.ndarray
    transformer_rated_w: float
    no_load_loss_w: float


@dataclass(frozen=True)
class Community:
    """What a community spec assembles into.

    ids: household ids in the spec's order. connection_w: each main fuse as power, W, (H,).
    feeder: None without a feeder in the spec. limits: the feeder's operating limits as the
    planner keeps them (None: not planned against the feeder). planner: None when nothing is
    planned (no feeder, or mode "none"). physics: settlement's check of claims against the
    feeder (each household's export capability, then state estimation with the feeder or the
    transformer balance without).
    """

    spec: CommunitySpec
    mode: DispatchMode
    ids: list[str]
    connection_w: np.ndarray
    feeder: Feeder | None
    limits: FeederLimits | None
    settlement: SettlementConfig
    planner: CommunityPlanner | None
    physics: PhysicsCheck


def load_community_feeder(spec: CommunitySpec, base_dir: Path) -> Feeder | None:
    """The spec's feeder with every household's bus (None: no feeder). Loading a SimBench
    feeder takes seconds; a bad feeder, file or bus raises a one-line ``FeederError``."""
    if spec.feeder is None:
        return None
    net, profiles = load_feeder(spec.feeder.simbench, spec.feeder.file, base_dir)
    buses = resolve_buses(net, [h.bus for h in spec.households if h.bus is not None])
    return Feeder(net, profiles, buses, transformer_rating_w(net), transformer_no_load_loss_w(net))


def feeder_limits(spec: CommunitySpec) -> FeederLimits:
    """The spec's limits with its dispatch's voltage margin and AC-check rounds."""
    lim, d = spec.limits, spec.dispatch
    return FeederLimits(
        v_min_pu=lim.v_min_pu, v_max_pu=lim.v_max_pu, loading_max_pct=lim.loading_max_pct,
        margin_v_pu=d.margin_v_pu, margin_loading_pct=d.margin_loading_pct, rounds=d.rounds,
    )  # fmt: skip


def charter(spec: CommunitySpec) -> Charter:
    """What the spec gives governance: its bounds and rules, the configured prices and rates
    (in force until a vote changes them) and the grid tariff."""
    t = spec.tariff
    base = base_values(
        spec.governance, t.community_per_kwh, spec.reward_tokens_per_kwh, spec.flex_tokens_per_kwh
    )
    return Charter(spec.governance, base, t.import_per_kwh, t.feed_in_per_kwh)


def pv_rating_w(household: HouseholdSpec) -> float:
    """``household``'s PV rating, W (the inverter's AC rating is about its kWp; 0: no PV)."""
    return household.pv.peak_w if household.pv is not None else 0.0


def export_capability_w(household: HouseholdSpec) -> float:
    """The most ``household`` can export in full sun, W (> 0 export): its PV's rating plus its
    battery's power limit; an EV charger only draws."""
    battery_w = household.battery.p_max_w if household.battery is not None else 0.0
    return pv_rating_w(household) + battery_w


def export_capability(spec: CommunitySpec) -> ExportCapability:
    """Every household's export capability, its PV bounded by the sun where the spec says
    where the community is."""
    hh = spec.households
    return ExportCapability(
        {h.id: export_capability_w(h) for h in hh},
        pv_w={h.id: pv_rating_w(h) for h in hh},
        place=spec.location.place() if spec.location is not None else None,
    )


def assemble(
    spec: CommunitySpec, base_dir: Path = Path("."), mode: DispatchMode = "community"
) -> Community:
    """Assemble ``spec`` (relative feeder files resolve against ``base_dir``) for ``mode``."""
    feeder = load_community_feeder(spec, base_dir)
    limits = feeder_limits(spec) if mode == "community" else None
    planner = None
    if feeder is not None and mode != "none":
        planner = CommunityPlanner(
            spec.households, feeder.net, feeder.profiles, feeder.buses, feeder.transformer_rated_w,
            limits, spec.dispatch, spec.tariff.prices(),
        )  # fmt: skip
        planner.envelopes = spec.envelopes.build()
        for ev in spec.envelopes.flex_events():
            planner.expect(ev, EVENTS)
    balance = BalanceConfig(
        household_class=spec.meters.household_class,
        transformer_class=spec.meters.transformer_class,
        no_load_loss_w=feeder.no_load_loss_w if feeder else 0.0,
    )
    settlement = SettlementConfig(
        community_per_kwh=spec.tariff.community_per_kwh,
        reward_tokens_per_kwh=spec.reward_tokens_per_kwh,
        flex_tokens_per_kwh=spec.flex_tokens_per_kwh,
        grid_tariff=(spec.tariff.import_per_kwh, spec.tariff.feed_in_per_kwh),
        pooled=mode == "community",  # without a community, nothing goes through a pool
        balance=balance,
        public_k=spec.opendata.k,
    )
    ids = [h.id for h in spec.households]
    capability = export_capability(spec)
    physics: PhysicsCheck = BalanceCheck(balance, capability)
    if feeder is not None:
        estimator = StateEstimator(feeder.net, feeder.buses, ids, np.zeros(len(ids)))
        physics = FeederCheck(estimator, balance, capability=capability)
    return Community(
        spec=spec, mode=mode, ids=ids,
        connection_w=np.array([h.connection_w for h in spec.households]), feeder=feeder,
        limits=limits, settlement=settlement, planner=planner, physics=physics,
    )  # fmt: skip
