"""The coordinator's live, community-level state for the web app, from its retained MQTT
topics, and the relay of members' signed votes.

The web app connects as the broker user ``web`` (``gridctl broker config`` makes it), which
reads only the coordinator's broadcasts and the households' online status and writes only vote
topics. What it keeps is public: whether the coordinator is online, how many households are,
the last settled interval and its root, the prices and governed parameters in force and the
changes scheduled, the community's plan of the current interval with the envelopes and events
in force, the last settled interval's public aggregates and the feeder as planned. No
household's own figure is kept (its status only counts; the feeder message carries no figure
the public diagram withholds).
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
    RejectCounter,
    coordinator_topic,
    encode,
    household_topic,
)
from gridctl.settlement.aggregates import AggregateRow, OpenDataMessage
from gridctl.settlement.roots import RootMessage
from gridctl.transport.broker import WEB
from gridctl.transport.session import BrokerSettings, Session
from gridctl.web.plan_view import actual_facts, plan_facts

log = logging.getLogger(__name__)
MAX_STATUSES = 100_000
"""Households' online states kept at most (the broker's ACL lets only households write them)."""


class Live:
    """Retained community state over MQTT, and a wake-up for whoever streams it.

    community: the community id. broker: session settings of the ``web`` user."""

    def __init__(self, community: str, broker: BrokerSettings) -> None:
        self.community = community
        filters = [f"{ROOT}/{community}/+/status", coordinator_topic(community, "#")]
        self.session = Session(broker, WEB, filters, self._on_message)
        self.rejects = RejectCounter()
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
        self._changed: asyncio.Event | None = None

    @asynccontextmanager
    async def running(self, *_: object) -> AsyncIterator[None]:
        """Keep the MQTT session while the web app runs (a FastAPI lifespan)."""
        self._changed = asyncio.Event()
        task = asyncio.create_task(self.session.run())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _on_message(self, topic: str, payload: bytes) -> None:
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
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self, timeout_s: float) -> None:
        """Return when the state changes, or after ``timeout_s``."""
        event = self._changed
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)

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
