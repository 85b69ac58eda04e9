"""The coordinator's live, community-level state for the web app, from its retained MQTT
topics, and the relay of members' signed votes.

The web app connects as the broker user ``web`` (``gridctl broker config`` makes it), which
reads only the coordinator's broadcasts and the households' online status, telemetry and plans,
and writes only vote topics. What ``snapshot`` shows is public: whether the coordinator is
online, how many households are, the last settled interval and its root, the prices and
governed parameters in force and the changes scheduled, the community's plan of the current
interval with the envelopes and events in force, the last settled interval's public aggregates
and the feeder as planned. No household's own figure is in it (its status only counts; the
feeder message carries no figure the public diagram withholds): a household's telemetry and
plan go to ``household_live``, shown to that household only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from gridctl.core import interval_start
from gridctl.governance.votes import VoteMessage
from gridctl.protocol import (
    ROOT,
    CommunityPlanMessage,
    FeederMessage,
    ParametersMessage,
    PriceMessage,
    ProtocolError,
    RejectCounter,
    coordinator_topic,
    encode,
    household_topic,
    parse_topic,
)
from gridctl.settlement.aggregates import AggregateRow, OpenDataMessage
from gridctl.settlement.roots import RootMessage
from gridctl.transport.broker import WEB
from gridctl.transport.session import BrokerSettings, Session
from gridctl.web.household_live import HouseholdLive
from gridctl.web.plan_view import actual_facts, plan_facts
from gridctl.web.wakeup import Wakeup

log = logging.getLogger(__name__)
OWN = ("telemetry", "plan")
"""A household's own topics the web reads for that household's page (never shown publicly)."""
MAX_STATUSES = 100_000
"""Households' online states kept at most (the broker's ACL lets only households write them)."""


def _household_own(topic: str) -> bool:
    """Whether ``topic`` is a household's telemetry or plan (not the coordinator's plan)."""
    try:
        _, household, kind = parse_topic(topic)
    except ProtocolError:
        return False
    return household is not None and kind in OWN


class Live:
    """Retained community state over MQTT, and a wake-up for whoever streams it.

    community: the community id. broker: session settings of the ``web`` user.
    households: where each household's own telemetry and plan go (``household_live``); None:
    not subscribed to them."""

    def __init__(self, community: str, broker: BrokerSettings,
                 households: HouseholdLive | None = None) -> None:  # fmt: skip
        self.community = community
        filters = [f"{ROOT}/{community}/+/status", coordinator_topic(community, "#")]
        if households is not None:
            filters += [f"{ROOT}/{community}/+/{kind}" for kind in OWN]
        self.session = Session(broker, WEB, filters, self._on_message)
        self.rejects = households.rejects if households is not None else RejectCounter()
        self.households = households
        self.coordinator: str | None = None
        self.online: dict[str, bool] = {}
        self.root: RootMessage | None = None
        self.prices: PriceMessage | None = None
        self.parameters: ParametersMessage | None = None
        self.plan: CommunityPlanMessage | None = None
        """The community's latest plan, its sums withheld below k households."""
        self.settled: AggregateRow | None = None
        """The public aggregates of the last settled interval (when the coordinator publishes
        them: ``opendata.publish``)."""
        self.feeder: FeederMessage | None = None
        """The feeder as the coordinator planned its current interval (public figures only:
        the coordinator leaves out those covering fewer than k households)."""
        self.changes = Wakeup()
        """Set whenever the public state changes."""

    @asynccontextmanager
    async def running(self, *_: object) -> AsyncIterator[None]:
        """Keep the MQTT session while the web app runs (a FastAPI lifespan)."""
        self.changes.start()
        if self.households is not None:
            self.households.changed.start()
        task = asyncio.create_task(self.session.run())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if self.households is not None and _household_own(topic):  # kept apart, never public
            self._own(self.households, topic, payload)
            return
        if not payload:
            return  # a retained message cleared
        d = self.rejects.decode(topic, payload)
        if d is None:
            return
        if d.community != self.community:
            self.rejects.refuse("wrong_community", topic, f"not community {self.community}")
            return
        m = d.message
        if d.kind == "status" and d.household is None:
            self.coordinator = str(m)
        elif d.kind == "status" and d.household is not None:
            if d.household in self.online or len(self.online) < MAX_STATUSES:
                self.online[d.household] = m == "online"
        elif isinstance(m, RootMessage):
            if self.root is None or m.interval >= self.root.interval:
                self.root = m
        elif isinstance(m, PriceMessage):
            self.prices = m
        elif isinstance(m, ParametersMessage):
            self.parameters = m
        elif isinstance(m, CommunityPlanMessage):
            if self.plan is None or m.interval >= self.plan.interval:
                self.plan = m.public()
        elif isinstance(m, OpenDataMessage):
            if self.settled is None or m.interval >= self.settled.interval:
                self.settled = AggregateRow(**m.model_dump(exclude={"v"}))
        elif isinstance(m, FeederMessage):
            if self.feeder is not None and m.interval < self.feeder.interval:
                return  # an older plan arriving late
            self.feeder = m
        else:
            return
        self.changes.set()

    def _own(self, households: HouseholdLive, topic: str, payload: bytes) -> None:
        """A household's telemetry or plan, to ``households`` only."""
        if not payload:  # a retained message cleared
            _, household, kind = parse_topic(topic)
            households.clear(household, kind)  # type: ignore[arg-type]
            return
        d = self.rejects.decode(topic, payload)
        if d is None:
            return
        if d.community != self.community:
            self.rejects.refuse("wrong_community", topic, f"not community {self.community}")
            return
        households.take(topic, d)

    def snapshot(self) -> dict[str, Any]:
        """The public state: community-level values only (JSON-ready)."""
        root, prices, params = self.root, self.prices, self.parameters
        return {
            "broker": self.session.connected.is_set(),
            "coordinator": self.coordinator,
            "households_online": sum(self.online.values()),
            "last_interval": None if root is None else root.interval,
            "last_start": None if root is None else interval_start(root.interval).isoformat(),
            "last_root": None if root is None else root.root,
            "prices": None if prices is None else prices.model_dump(exclude={"v"}),
            "parameters": None if params is None else params.values,
            "scheduled": [] if params is None else [
                s.model_dump() for s in params.scheduled
            ],
            "plan": plan_facts(self.plan),
            "actual": actual_facts(self.settled),
            "feeder": None if self.feeder is None else self.feeder.model_dump(exclude={"v"}),
        }  # fmt: skip

    async def relay_vote(self, vote: VoteMessage) -> bool:
        """Publish a member's signed vote (QoS 1) on its household's vote topic; True when the
        broker took it."""
        topic = household_topic(self.community, vote.household, "vote")
        return await self.session.publish(topic, encode(vote), qos=1)
