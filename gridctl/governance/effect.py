"""What the values in force change: the settlement's prices and reward rates, the tariff the
coordinator publishes and plans with, and the planner's reserve and fairness rule."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from gridctl.core import Tariff
from gridctl.governance.book import Governance, Received
from gridctl.protocol import ParametersMessage, ScheduledChange
from gridctl.settlement.settle import SettlementConfig, Settler

log = logging.getLogger(__name__)


class GovernedPlanner(Protocol):
    """A planner that takes the governed reserve and fairness rule."""

    def set_parameters(
        self, battery_reserve_soc: float | None = None, fairness: str | None = None
    ) -> None: ...


def governed_settlement(base: SettlementConfig, values: Mapping[str, object]) -> SettlementConfig:
    """``base`` with the community price and the reward rates in force."""
    return replace(
        base,
        community_per_kwh=float(values["community_per_kwh"]),  # type: ignore[arg-type]
        reward_tokens_per_kwh=float(values["reward_tokens_per_kwh"]),  # type: ignore[arg-type]
        flex_tokens_per_kwh=float(values["flex_tokens_per_kwh"]),  # type: ignore[arg-type]
    )


def govern_settler(governance: Governance, settler: Settler, base: SettlementConfig,
                   interval: int, received: Sequence[Received]) -> None:  # fmt: skip
    """Record what governance has due up to ``interval`` (``Governance.advance``, with the
    votes ``received``), then have ``settler`` settle ``interval`` with the values in force
    (``base`` changed by them). Call before settling ``interval``."""
    for line in governance.advance(interval, received):
        log.info("governance: %s", line)
    settler.config = governed_settlement(base, governance.values_at(interval))


def govern_planner(planner: GovernedPlanner, values: Mapping[str, object]) -> None:
    """Have ``planner`` plan with the reserve and fairness rule in ``values`` (in force)."""
    planner.set_parameters(
        battery_reserve_soc=float(values["battery_reserve_soc"]),  # type: ignore[arg-type]
        fairness=str(values["fairness"]),
    )


def governed_tariff(base: Tariff, values: Mapping[str, object]) -> Tariff:
    """``base`` with the community price in force (grid prices are not the community's)."""
    return replace(base, community_per_kwh=float(values["community_per_kwh"]))  # type: ignore[arg-type]


def parameters_message(governance: Governance, interval: int) -> ParametersMessage:
    """The parameters broadcast: values in force at ``interval`` and the changes scheduled
    (membership changes name the household)."""
    scheduled = []
    for at, pid, name, value_json in governance.scheduled(interval):
        value = json.loads(value_json)
        if isinstance(value, dict):
            value = value["household"]
        scheduled.append(ScheduledChange(proposal=pid, parameter=name, value=value, enact_at=at))
    values = governance.values_at(interval)
    return ParametersMessage(interval=interval, values=values, scheduled=scheduled)  # type: ignore[arg-type]
