"""A coordinator in a process of its own, for tests that kill it (arguments as one JSON object)."""

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from gridctl.coordinator.service import Coordinator
from gridctl.protocol import CommunityPlanMessage, PlanStep, Telemetry
from gridctl.settlement.settle import SettlementConfig
from gridctl.transport.session import BrokerSettings
from tests.controller.test_controller import FastClock
from tests.keys import COORDINATOR_KEY

PLAN_BATTERY_W = 1000.0


class ChargeAKilowatt:
    """Every household: charge the battery at 1 kW, four intervals ahead."""

    def __init__(self, homes: list[str]):
        self.homes = self.ids = homes

    def take_baselines(self) -> list:
        return []  # it plans no flexibility events

    def community_plan(self, interval: int, k: int) -> CommunityPlanMessage:
        return CommunityPlanMessage(interval=interval, households=len(self.ids), k=k)

    def plan(
        self, interval: int, telemetry: Mapping[str, Telemetry], now_s: float | None = None
    ) -> dict[str, list[PlanStep]]:
        return {
            h: [PlanStep(interval=interval + k, battery_w=PLAN_BATTERY_W) for k in range(4)]
            for h in self.homes
        }


def coordinator(a: dict) -> Coordinator:
    """The coordinator the arguments describe (shared by in-process and child runs)."""
    return Coordinator(
        a["community"], BrokerSettings(port=a["port"], username="coordinator", password=a["password"]),
        Path(a["ledger"]), Path(a["inbox"]), SettlementConfig(0.20, 1.0), COORDINATOR_KEY,
        ChargeAKilowatt(a["homes"]),
        clock=FastClock(a["start_s"], a["t0"]), tick_s=0.05, settle_after_s=900.0, catch_up_s=0.5,
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(coordinator(json.loads(sys.argv[1])).run())
