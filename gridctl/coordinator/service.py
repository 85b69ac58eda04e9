"""The community coordinator: ingest → settle → publish roots → plan → publish plans.

Every ``tick_s`` the coordinator looks at its clock. Each interval that has ended is settled, in
order, once every enrolled meter's reading for it is in or ``settle_after_s`` after its end,
whichever comes first; the interval's Merkle root is then published (retained). At the start of
each interval the planner is asked for every household's plan, which is published (retained,
QoS 1) with an acknowledgement of the household's readings.

Restart-safe: readings are kept in the inbox as they arrive and settlement is idempotent and
ordered by the ledger itself (``last_closed``), so a coordinator killed at any point resumes with
the first interval not yet closed: nothing is skipped, nothing settled twice.

Hostile input is refused before anything is stored, counted by reason (``rejects``, and the
``gridctl_messages_refused`` metric): messages from households not enrolled, beyond the
household's rate limit (``limits``), malformed (``protocol.decode``), telemetry dated more than
``max_skew_s`` from the coordinator's clock, readings of an interval not yet ended
(``too_new``) or already closed (``interval_closed``), with a bad key or signature (the
settler's own checks), or beyond ``MAX_READINGS_PER_INTERVAL`` distinct readings of one meter
in one interval; votes beyond ``MAX_VOTES_PER_INTERVAL`` from one household's topic in one
interval (every vote kept is recorded in the ledger for good, so a flood must not reach it).
A failing tick, settlement or plan is logged and counted and the service goes on (a failed
plan leaves the last good one; households fall back once it is stale).

With an ``openadr`` spec the coordinator is also the community's OpenADR VEN
(``gridctl.public.openadr``), a task of its own in the same loop: the grid operator's limits go
into ``envelopes`` (which the planner reads), the transformer meter's latest readings back to
the operator; a VEN that fails is logged, counted (``openadr``) and started again. Only the last
``outcome_window`` settled intervals are kept in memory; the rest is in the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.coordinator.flow import MeterFlow
from gridctl.coordinator.inbox import Inbox
from gridctl.coordinator.limits import OTHER, READINGS, RateLimit, RateLimiter
from gridctl.coordinator.metrics import Metrics, serve_http
from gridctl.core import INTERVAL_S, INTERVALS_PER_DAY, Tariff, interval_at, raise_if_cancelled
from gridctl.dispatch.plan_log import PLANS_FILE, PlanLog
from gridctl.governance.book import Charter, Governance, Received
from gridctl.governance.effect import (
    govern_planner,
    govern_settler,
    governed_tariff,
    parameters_message,
)
from gridctl.governance.votes import VoteMessage
from gridctl.protocol import (
    COORDINATOR,
    CommunityPlanMessage,
    PlanMessage,
    PlanStep,
    PriceMessage,
    ProtocolError,
    RejectCounter,
    Telemetry,
    community_filter,
    coordinator_topic,
    encode,
    household_topic,
    parse_topic,
)
from gridctl.public.envelope import FEEDER, SILENT_POLLS, Envelopes
from gridctl.public.figures import interval_figures
from gridctl.public.flex_event import FlexEvent
from gridctl.public.flexibility import Baseline, book_due, record_baselines
from gridctl.public.openadr import SOURCE as OPENADR
from gridctl.public.openadr import Ven
from gridctl.public.openadr_spec import OpenAdrSpec
from gridctl.settlement.aggregates import CommunityFigures, OpenDataMessage, aggregate_at
from gridctl.settlement.enrol import TRANSFORMER_METER, main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.physics import PhysicsCheck
from gridctl.settlement.settle import IntervalOutcome, SettlementConfig, Settler
from gridctl.settlement.signing import ReadingMessage, SignedReading, from_message
from gridctl.transport.session import BrokerSettings, Session

if TYPE_CHECKING:  # its module imports the planner (pandapower): seconds a test need not wait
    from gridctl.coordinator.feeder_state import FeederState

log = logging.getLogger(__name__)

MAX_READINGS_PER_INTERVAL = 4
MAX_VOTES_PER_INTERVAL = 16
"""Distinct votes one household's topic may deliver in one interval (a member changing their
mind a few times on a few proposals; beyond that, refused as ``too_many`` and not recorded)."""
"""Distinct readings of one meter for one interval the inbox keeps (a resend after a restart
may carry a new sequence number; more than a few is a household misbehaving)."""


class Planner(Protocol):
    """Makes every household's plan from ``interval`` on (steps start at ``interval``), with
    the governed parameters in force (``set_parameters``)."""

    def plan(
        self, interval: int, telemetry: Mapping[str, Telemetry], now_s: float | None = None
    ) -> Mapping[str, list[PlanStep]]: ...

    def set_parameters(
        self, battery_reserve_soc: float | None = None, fairness: str | None = None
    ) -> None: ...

    ids: list[str]
    """The planned households, in order."""

    def expect(self, ev: FlexEvent, source: str) -> None: ...

    def take_baselines(self) -> list[Baseline]: ...

    def community_plan(self, interval: int, k: int) -> CommunityPlanMessage:
        """The community-level sums of the plan ``plan`` made last, for ``interval``."""
        ...


class Coordinator:
    """One community's coordinator.

    ledger_path / inbox_path: SQLite files (the ledger holds the meter registry).
    root_key: the coordinator's key, which signs every interval's root.
    planner: None publishes no plans (households then run their local policy).
    physics: settlement's check of claims against the feeder (default: the transformer
    balance). governance: the community's charter (None: no governance; votes are refused);
    with one, each interval is settled, published and planned with the values in force.
    clock: epoch seconds (the simulator passes its own). health_port: serve /health and
    /metrics on 127.0.0.1 (0: a free port, see ``http_port``; None: no endpoint).
    tick_s: how often to look at the clock, real s (None: the caller calls ``tick``, as the
    simulator does in step with its clock). catch_up_s: after (re)connecting, real seconds to
    take in the readings the broker kept for us before settling an incomplete interval as
    overdue. max_skew_s: telemetry dated further than this from ``clock`` is refused, s.
    readings_limit / other_limit: per-household rate limits (real time). outcome_window:
    settled intervals kept in ``outcomes``. on_settled: called with each interval's outcome.
    envelopes: the limits in force (the planner's, if it reads them; default: none).
    openadr: run an OpenADR VEN putting the grid operator's limits into ``envelopes``.
    publish_opendata: publish each settled interval's public aggregates (retained, on
    ``coordinator/opendata``; ``gridctl.settlement.aggregates``).
    plans_path: the plan log (``gridctl.dispatch.plan_log``; default ``plans.sqlite`` beside
    the ledger): each interval's community plan is added to it and published, as far as it
    may be (``CommunityPlanMessage.public``), retained on ``coordinator/plan``.
    feeder: record each planned interval's power flow in ``grid.sqlite`` and publish it
    (retained, on ``coordinator/feeder``; ``gridctl.coordinator.feeder_state``).
    """

    def __init__(
        self,
        community: str,
        broker: BrokerSettings,
        ledger_path: Path,
        inbox_path: Path,
        settlement: SettlementConfig,
        root_key: Ed25519PrivateKey,
        planner: Planner | None = None,
        tariff: Tariff | None = None,
        physics: PhysicsCheck | None = None,
        governance: Charter | None = None,
        clock: Callable[[], float] = time.time,
        tick_s: float | None = 1.0,
        settle_after_s: float = INTERVAL_S,
        health_port: int | None = None,
        catch_up_s: float = 3.0,
        max_skew_s: float = 300.0,
        readings_limit: RateLimit = READINGS,
        other_limit: RateLimit = OTHER,
        outcome_window: int = INTERVALS_PER_DAY,
        on_settled: Callable[[IntervalOutcome], None] | None = None,
        envelopes: Envelopes | None = None,
        openadr: OpenAdrSpec | None = None,
        publish_opendata: bool = False,
        plans_path: Path | None = None,
        feeder: FeederState | None = None,
    ):
        self.community = community
        self.planner = planner
        self.tariff = tariff
        self.clock = clock
        self.tick_s = tick_s
        self.settle_after_s = settle_after_s
        self.health_port = health_port
        self.catch_up_s = catch_up_s
        self.max_skew_s = max_skew_s
        self.limiter = RateLimiter(readings_limit, other_limit)
        self.on_settled = on_settled
        self.publish_opendata = publish_opendata
        self.feeder = feeder
        self.http_port: int | None = None
        self.ledger = Ledger(ledger_path, root_key)
        self.settler = Settler(self.ledger, settlement, physics=physics)
        self.settlement = settlement
        self.governance = (
            None if governance is None else Governance(self.ledger, community, governance)
        )
        self.inbox = Inbox(inbox_path)
        self.rejects = RejectCounter()
        self.metrics = Metrics()
        self.telemetry: dict[str, Telemetry] = {}
        self.online: dict[str, bool] = {}
        self.last_planned: int | None = None
        self.last_closed = self.ledger.last_closed()
        self.outcomes: deque[IntervalOutcome] = deque(maxlen=outcome_window)
        self.plan_log = PlanLog(plans_path or Path(ledger_path).parent / PLANS_FILE)
        self.failures = {
            "tick": 0,
            "settle": 0,
            "plan": 0,
            "openadr": 0,
            "plan_log": 0,
            "feeder": 0,
        }
        """Failed ticks, settlements, plans and VEN polls since start (each logged with its
        traceback)."""
        self.envelopes = envelopes if envelopes is not None else Envelopes()
        self.openadr = openadr
        self.ven: Ven | None = None
        self.transformer = MeterFlow()
        """The transformer meter's mean import and export over its latest interval."""
        self._envelope: tuple[float, float] | None = None
        self._enrolled = self._senders()
        self._flooding: set[str] = set()
        self._settling: asyncio.Future[IntervalOutcome] | None = None
        self.session = Session(
            broker, client_id=broker.username or COORDINATOR,
            subscriptions=[community_filter(community)], handler=self.on_message,
            status_topic=coordinator_topic(community, "status"),
        )  # fmt: skip

    @property
    def meters(self) -> list[str]:
        """Every enrolled meter."""
        return list(self.settler.registry.meters)

    @property
    def households(self) -> list[str]:
        """Every enrolled household."""
        return list(self.settler.households)

    def _senders(self) -> frozenset[str]:
        """Topic levels that may send to us: the owner of each enrolled meter (households,
        and the feeder's transformer meter)."""
        return frozenset(m.split("/")[0] for m in self.settler.registry.meters)

    def first_interval(self) -> int:
        """The first interval any meter was enrolled for."""
        return int(self.settler.table.joined.min()) if len(self.settler.table.joined) else 0

    async def run(self) -> None:
        """Run until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.session.run())
                if self.health_port is not None:
                    server = await serve_http(self, self.health_port)
                    self.http_port = server.sockets[0].getsockname()[1]
                    tg.create_task(server.serve_forever())
                if self.openadr is not None:
                    tg.create_task(self._run_ven(self.openadr))
                if self.tick_s is not None:
                    tg.create_task(self._ticks(self.tick_s))
        finally:
            if self._settling is not None:  # let a settlement in its thread end before closing
                await asyncio.wait([self._settling])
            self.inbox.close()
            self.ledger.close()
            self.plan_log.close()
            if self.feeder is not None:
                self.feeder.close()

    async def _ticks(self, tick_s: float) -> None:
        await self.session.connected.wait()
        while True:
            try:
                await self.tick()
            except Exception:
                self._failed("tick")
            raise_if_cancelled()
            await asyncio.sleep(tick_s)

    async def _run_ven(self, spec: OpenAdrSpec) -> None:
        """Run the community's VEN; one that fails is counted and started again."""
        self.ven = Ven(
            spec, self.envelopes, self.households, self.transformer.latest, self.clock,
            on_failure=lambda: self._failed("openadr"),
        )  # fmt: skip
        while True:
            try:
                await self.ven.run()
            except Exception:
                self._failed("openadr")
            raise_if_cancelled()
            await asyncio.sleep(spec.poll_s)

    def _failed(self, what: str) -> None:
        """Count and log (with the traceback) a failure the service survives."""
        self.failures[what] += 1
        self.metrics.failures.labels(what=what).inc()
        log.exception("%s failed (%d so far); going on", what, self.failures[what])

    def _refuse(self, reason: str, topic: str, detail: str, quiet: bool = False) -> None:
        self.rejects.refuse(reason, topic, detail, quiet)
        self.metrics.refused.labels(reason=reason).inc()

    def _admit(self, topic: str) -> bool:
        """Whether a message on ``topic`` gets parsed: from an enrolled household within its
        rate limit (a flood is logged once, then counted quietly). Our own broadcasts pass."""
        try:
            _, household, kind = parse_topic(topic)
        except ProtocolError:
            return True  # ``decode`` refuses and counts it
        if household is None or household == COORDINATOR:
            return True
        if household not in self._enrolled:
            self._refuse("unknown_household", topic, "not enrolled in this community")
            return False
        if self.limiter.allow(household, kind):
            self._flooding.discard(household)
            return True
        flooding = household in self._flooding
        self._flooding.add(household)
        self._refuse("rate_limited", topic, "refusing its messages for now", quiet=flooding)
        return False

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Ingest a reading (into the inbox), telemetry or a household's status."""
        if not self._admit(topic):
            return
        msg = self.rejects.decode(topic, payload)
        if msg is None:
            self.metrics.refused.labels(reason=self.rejects.last_reason or "unknown").inc()
            return
        if msg.household is None:
            return  # our own broadcasts
        m = msg.message
        if isinstance(m, ReadingMessage):
            self._ingest(topic, m)
        elif isinstance(m, VoteMessage):
            self._take_vote(topic, msg.household, m)
        elif isinstance(m, Telemetry):
            age_s = self.clock() - m.t.timestamp()
            if abs(age_s) > self.max_skew_s:
                why = "too_old" if age_s > 0 else "too_new"
                self._refuse(why, topic, f"telemetry dated {m.t.isoformat()}")
                return
            self.telemetry[msg.household] = m
            self.metrics.ingest_s.observe(max(age_s, 0.0))
        elif msg.kind == "status":
            self.online[msg.household] = m == "online"
            self.metrics.online.set(sum(self.online.values()))

    def _ingest(self, topic: str, m: ReadingMessage) -> None:
        """Keep a reading in the inbox if it can still be settled and is authentic."""
        r = from_message(m)
        if (r.interval + 1) * INTERVAL_S > self.clock() + self.max_skew_s:
            self._refuse("too_new", topic, f"interval {r.interval} has not ended")
            return
        if self.last_closed is not None and r.interval <= self.last_closed:
            self._refuse("interval_closed", topic, f"interval {r.interval} is settled")
            return
        why = self.settler.authenticate(r.interval, [r])[0]
        if why is not None:
            self._refuse(why, topic, f"reading of {r.meter} for interval {r.interval}")
            return
        full = self.inbox.count(r.meter, r.interval) >= MAX_READINGS_PER_INTERVAL
        if full and not self.inbox.has(r):
            self._refuse("too_many", topic, f"{r.meter} interval {r.interval}")
            return
        added = self.inbox.add(r)
        self.metrics.readings_received.labels(new=str(added).lower()).inc()
        if r.meter == TRANSFORMER_METER:
            self.transformer.add(r)

    def _take_vote(self, topic: str, sender: str, vote: VoteMessage) -> None:
        """Keep a vote for governance to record (valid or not) when it settles the interval it
        arrived in."""
        if self.governance is None:
            self._refuse("no_governance", topic, "this community takes no votes")
            return
        received = interval_at(self.clock())
        if self.inbox.votes_from(sender, received) >= MAX_VOTES_PER_INTERVAL:
            self._refuse("too_many", topic, f"votes of {sender} in interval {received}")
            return
        added = self.inbox.add_vote(sender, vote, received)
        self.metrics.votes_received.labels(new=str(added).lower()).inc()

    async def tick(self) -> None:
        """Settle what is due, then plan the current interval if not yet done."""
        now_s = self.clock()
        current = interval_at(now_s)
        self._watch_envelope(current, now_s)
        if self.ven is not None and self.planner is not None:
            for ev in self.ven.flex_events():
                self.planner.expect(ev, OPENADR)
        await self.settle_due(now_s, current)
        if current != self.last_planned:
            await self._publish_prices(current)
            if self.governance is not None:
                await self._publish_parameters(current)
            if self.planner is not None:
                await self.plan(current)
            self.last_planned = current

    def _watch_envelope(self, interval: int, now_s: float) -> None:
        """Update the envelope gauges; log the feeder's envelope when it changes."""
        env = self.envelopes
        t0 = interval * INTERVAL_S
        feeder = env.limits(FEEDER, t0, t0 + INTERVAL_S, now_s)
        self.metrics.envelope_in_force.set(env.in_force(interval, now_s))
        self.metrics.sources_silent.set(len(env.silent(now_s)))
        if feeder != self._envelope:
            silent = env.silent(now_s)
            log.info("envelope interval=%d feeder import_max_w=%g export_max_w=%g%s", interval,
                     *feeder, f" (default: {', '.join(silent)} silent for {SILENT_POLLS} polls)"
                     if silent else "")  # fmt: skip
            self._envelope = feeder

    async def settle_due(self, now_s: float, current: int) -> None:
        """Settle, in order, every ended interval whose readings are complete or overdue."""
        closed = self.last_closed
        nxt = self.first_interval() if closed is None else closed + 1
        everyone = set(self.meters)
        caught_up = time.monotonic() - self.session.connected_at >= self.catch_up_s
        while nxt < current:
            complete = self.inbox.meters_in(nxt) >= everyone
            overdue = now_s >= (nxt + 1) * INTERVAL_S + self.settle_after_s and caught_up
            if not (complete or overdue):
                return
            try:
                out = await self._settle(nxt)
            except Exception:
                self._failed("settle")  # the interval stays open; the next tick tries again
                return
            await self._publish_root(nxt)
            if self.publish_opendata:
                await self._publish_opendata(nxt)
            if self.on_settled is not None:
                self.on_settled(out)
            nxt += 1

    async def _settle(self, interval: int) -> IntervalOutcome:
        """Settle one interval in a worker thread, so ingest and MQTT keep flowing meanwhile;
        only this thread touches the ledger until it is done (one settlement at a time)."""
        t0 = time.perf_counter()
        readings = self.inbox.readings(interval)
        votes = self.inbox.votes_through(interval) if self.governance is not None else []
        t0_s = interval * INTERVAL_S
        feeder_w = self.envelopes.limits(FEEDER, t0_s, t0_s + INTERVAL_S, self.clock())
        figures = interval_figures(
            self.telemetry.values(), interval, feeder_w, len(self.settler.households)
        )
        self._settling = asyncio.ensure_future(
            asyncio.to_thread(self._govern_and_settle, interval, readings, votes, figures)
        )
        out = await asyncio.shield(self._settling)
        self._settling = None
        self.last_closed = interval
        self.inbox.prune_through(interval)
        self.inbox.prune_votes_through(interval)
        self._enrolled = self._senders()
        self.metrics.settle_s.observe(time.perf_counter() - t0)
        self.metrics.intervals.inc()
        for status in out.status:
            self.metrics.readings.labels(outcome=status).inc()
        self.metrics.readings.labels(outcome="rejected").inc(len(out.rejected))
        self.outcomes.append(out)
        log.info("settled interval=%d booked=%d root=%s", interval, out.booked, out.root[:12])
        return out

    def _govern_and_settle(
        self,
        interval: int,
        readings: list[SignedReading],
        votes: list[Received],
        figures: CommunityFigures,
    ) -> IntervalOutcome:
        """Record what governance has due up to ``interval`` (with the votes that arrived),
        then settle it with the values in force (in the settling thread); figures: what the
        telemetry showed of it and its envelope (``interval_figures``)."""
        if self.governance is not None:
            govern_settler(self.governance, self.settler, self.settlement, interval, votes)
        if self.planner is not None:
            record_baselines(self.ledger, self.planner, interval)
        book_due(self.ledger, interval, self.settler.config.flex_tokens_per_kwh)
        return self.settler.settle(interval, readings, figures=figures)

    async def _publish_root(self, interval: int) -> None:
        msg = self.ledger.signed_root(interval)
        assert msg is not None  # settle() closed it
        await self.session.publish(coordinator_topic(self.community, "root"), encode(msg), 1, True)

    async def _publish_opendata(self, interval: int) -> None:
        """Publish (retained) the interval's public aggregates, as the ledger holds them."""
        row = aggregate_at(self.ledger.db, interval)
        assert row is not None  # settle() wrote it
        msg = OpenDataMessage.of(row)
        await self.session.publish(
            coordinator_topic(self.community, "opendata"), encode(msg), 1, True
        )

    async def _publish_prices(self, interval: int) -> None:
        if self.tariff is None:
            return
        t = self.tariff
        if self.governance is not None:
            t = governed_tariff(t, self.governance.values_at(interval))
        msg = PriceMessage(interval=interval, import_per_kwh=t.import_per_kwh,
                           feed_in_per_kwh=t.feed_in_per_kwh,
                           community_per_kwh=t.community_per_kwh)  # fmt: skip
        await self.session.publish(
            coordinator_topic(self.community, "prices"), encode(msg), 1, True
        )

    async def _publish_parameters(self, interval: int) -> None:
        """Publish (retained) the governed values in force and the changes scheduled."""
        assert self.governance is not None
        msg = parameters_message(self.governance, interval)
        await self.session.publish(
            coordinator_topic(self.community, "parameters"), encode(msg), 1, True
        )

    async def plan(self, interval: int) -> None:
        """Ask the planner for every household's plan (with the governed parameters in force)
        and publish them."""
        assert self.planner is not None
        if self.governance is not None:
            govern_planner(self.planner, self.governance.values_at(interval))
        t0 = time.perf_counter()
        try:
            plans = await asyncio.to_thread(
                self.planner.plan, interval, dict(self.telemetry), self.clock()
            )
        except Exception:
            self._failed("plan")  # the last good plans stay retained until they go stale
            return
        self.metrics.solve_s.observe(time.perf_counter() - t0)
        first, closed = self.first_interval(), self.last_closed
        for h, steps in plans.items():
            msg = PlanMessage(
                household=h, issued=interval, steps=steps,
                readings_through=self.inbox.through(main_meter(h), first, closed),
            )  # fmt: skip
            topic = household_topic(self.community, h, "plan")
            if not await self.session.publish(topic, encode(msg), 1, True):
                log.warning("plan not published household=%s interval=%d", h, interval)
        await self._publish_community_plan(interval)
        if self.feeder is not None:
            await self._publish_feeder(interval)

    async def _publish_community_plan(self, interval: int) -> None:
        """Add the community's plan of ``interval`` to the plan log and publish it (retained);
        one that fails is counted and logged, the households' plans stand."""
        assert self.planner is not None
        try:
            msg = self.planner.community_plan(interval, self.settlement.public_k)
            self.plan_log.add(msg)
        except Exception:
            self._failed("plan_log")
            return
        topic = coordinator_topic(self.community, "plan")
        await self.session.publish(topic, encode(msg.public()), 1, True)

    async def _publish_feeder(self, interval: int) -> None:
        """Record the planned interval's power flow and publish it (retained), in a worker
        thread (a power flow); a failure is counted and logged, the plans stand."""
        assert self.feeder is not None
        try:
            msg = await asyncio.to_thread(self.feeder.planned, interval)
        except Exception:
            self._failed("feeder")
            return
        if msg is not None:
            topic = coordinator_topic(self.community, "feeder")
            await self.session.publish(topic, encode(msg), 1, True)
