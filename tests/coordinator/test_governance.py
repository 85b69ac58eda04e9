"""Governance in the running coordinator, against a real Mosquitto: votes on the households'
own topics, the tally and enactment before settling, the new price from its interval on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gridctl.coordinator.limits import RateLimit
from gridctl.coordinator.service import MAX_VOTES_PER_INTERVAL, Coordinator
from gridctl.core import INTERVAL_S
from gridctl.governance.audit import verify_governance
from gridctl.governance.book import Charter, Governance, base_values
from gridctl.governance.spec import GovernanceSpec
from gridctl.protocol import ParametersMessage, coordinator_topic, decode, encode, household_topic
from gridctl.settlement import gov_records as rec
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import enrol_simulated, main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig
from gridctl.settlement.signing import public_bytes
from gridctl.transport.session import BrokerSettings, Session
from tests.conftest import Broker, stop_tasks, until
from tests.coordinator.test_coordinator import Clock, Collector
from tests.governance.helpers import member_key, vote
from tests.keys import COORDINATOR_KEY

HOMES = ["h00", "h01", "h02"]
FIRST = 2_000_000
SPEC = GovernanceSpec.model_validate({"window_intervals": [1, 10]})


def _charter() -> Charter:
    return Charter(SPEC, base_values(SPEC, 0.20, 1.0, 0.0), 0.32, 0.08)


def _settings(broker: Broker, user: str) -> BrokerSettings:
    return BrokerSettings(port=broker.port, username=user, password=broker.creds[user])


async def test_a_vote_over_mqtt_changes_the_price_from_its_enactment_on(
    broker: Broker, tmp_path: Path
) -> None:
    c, path = broker.community, tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        signers = enrol_simulated(ledger, HOMES, [17_250.0] * 3, FIRST, seed=5)
        gov = Governance(ledger, c, _charter())
        for h in HOMES:
            gov.enrol_member(h, public_bytes(member_key(h)), FIRST - 1)
        p = gov.propose("community_per_kwh", 0.25, "more for sharers", "h00", 2, 1, FIRST - 1)
    assert (p.opens, p.closes, p.enact_at) == (FIRST, FIRST + 2, FIRST + 3)
    clock = Clock(FIRST * INTERVAL_S + 10)
    coord = Coordinator(
        c, _settings(broker, "coordinator"), path, tmp_path / "inbox.sqlite",
        SettlementConfig(0.20, 1.0), COORDINATOR_KEY, governance=_charter(), clock=clock,
        tick_s=0.01, settle_after_s=300.0,
    )  # fmt: skip
    watch = Collector()
    homes = {h: Session(_settings(broker, h), h, [], Collector()) for h in HOMES}
    homes["h00"] = Session(_settings(broker, "h00"), "h00", [coordinator_topic(c, "#")], watch)
    tasks = [asyncio.create_task(s.run()) for s in homes.values()]
    tasks.append(asyncio.create_task(coord.run()))
    params = coordinator_topic(c, "parameters")

    def received() -> float:
        got = coord.metrics.registry.get_sample_value(
            "gridctl_votes_received_total", {"new": "true"}
        )
        return got or 0.0

    try:
        await until(lambda: all(s.connected.is_set() for s in homes.values()))
        await until(lambda: coord.session.connected.is_set())
        for h, choice in (("h00", "yes"), ("h01", "yes")):
            payload = encode(vote(h, p.proposal, choice))
            for _ in range(2):  # QoS 1 may deliver twice: harmless
                assert await homes[h].publish(household_topic(c, h, "vote"), payload)
        # h02 sends h01's 'no' on its own topic: recorded and refused; on h01's topic the
        # broker's ACL drops it
        forged = encode(vote("h01", p.proposal, "no", seq=9, key=member_key("h02")))
        assert await homes["h02"].publish(household_topic(c, "h02", "vote"), forged)
        assert await homes["h02"].publish(household_topic(c, "h01", "vote"), forged)
        await until(lambda: received() == 3)
        for k in range(5):  # h00 exports 1 kWh, h01 and h02 import 0.5 kWh each
            clock.t_s = (FIRST + k + 1) * INTERVAL_S - 100
            for n, h in enumerate(HOMES):
                imp, exp = (0, 1000) if n == 0 else (500, 0)
                r = signers[main_meter(h)].sign(FIRST + k, imp * (k + 1), exp * (k + 1))
                await homes[h].publish(
                    household_topic(c, h, "reading"), json.dumps(r.to_message()).encode()
                )
            await asyncio.sleep(0.2)
            clock.t_s = (FIRST + k + 1) * INTERVAL_S + 1
            await until(lambda k=k: coord.last_closed == FIRST + k)
        await until(lambda: params in watch.got and len(watch.got[params]) >= 2)
    finally:
        await stop_tasks(*tasks)
    prices = {
        o.interval: int(o.settlement.earned_micro[0]) / int(o.settlement.supplied_wh[0]) / 1000
        for o in coord.outcomes
        if o.settlement is not None
    }
    assert prices == {FIRST: 0.2, FIRST + 1: 0.2, FIRST + 2: 0.2, FIRST + 3: 0.25, FIRST + 4: 0.25}
    with Ledger(path) as ledger:
        votes = [(v.household, v.sender, v.reason) for _, v in rec.votes(ledger.db)]
        assert votes == [
            ("h00", "h00", None),
            ("h01", "h01", None),
            ("h01", "h02", "other_household"),
        ]
        t = rec.tallies(ledger.db)[p.proposal]
        assert (t.yes, t.no, t.total, t.outcome) == (2, 0, 3, "passed")
        assert verify_governance(ledger.db) == []
    assert verify_ledger(path).ok
    first = decode(params, watch.got[params][0]).message
    assert isinstance(first, ParametersMessage) and first.values["community_per_kwh"] == 0.2
    assert [(s.parameter, s.value, s.enact_at) for s in first.scheduled] in (
        [], [("community_per_kwh", 0.25, FIRST + 3)]
    )  # fmt: skip
    last = decode(params, watch.got[params][-1]).message
    assert isinstance(last, ParametersMessage) and last.values["community_per_kwh"] == 0.25


async def test_a_vote_flood_is_capped_and_junk_refused(broker: Broker, tmp_path: Path) -> None:
    c, path = broker.community, tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        enrol_simulated(ledger, HOMES, [17_250.0] * 3, FIRST, seed=5)
    clock = Clock(FIRST * INTERVAL_S + 10)
    coord = Coordinator(
        c, _settings(broker, "coordinator"), path, tmp_path / "inbox.sqlite",
        SettlementConfig(0.20, 1.0), COORDINATOR_KEY, governance=_charter(), clock=clock,
        tick_s=0.01, other_limit=RateLimit(1000, 1000),
    )  # fmt: skip
    home = Session(_settings(broker, "h01"), "h01", [], Collector())
    tasks = [asyncio.create_task(home.run()), asyncio.create_task(coord.run())]
    try:
        await until(lambda: home.connected.is_set() and coord.session.connected.is_set())
        topic = household_topic(c, "h01", "vote")
        for seq in range(MAX_VOTES_PER_INTERVAL + 24):  # distinct, validly signed votes
            assert await home.publish(topic, encode(vote("h01", 1, "yes", seq=seq)))
        junk = json.loads(encode(vote("h01", 1, "yes")))
        for bad in ({"choice": "maybe"}, {"proposal": 0}, {"seq": -1}, {"sig": "00"},
                    {"proposal": 2**41}, {"extra": 1}):  # fmt: skip
            assert await home.publish(topic, json.dumps({**junk, **bad}).encode())
        refused = coord.rejects.by_reason
        await until(lambda: refused["too_many"] == 24 and refused["bad_field"] == 6)
        assert coord.inbox.votes_from("h01", FIRST) == MAX_VOTES_PER_INTERVAL
    finally:
        await stop_tasks(*tasks)
