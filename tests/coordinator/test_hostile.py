"""One hostile household against the coordinator on a real Mosquitto: every bad message is
refused before it is stored and counted by reason; the others' readings settle as usual; a
failing plan or settlement is counted and the service goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

from gridctl.coordinator.service import MAX_READINGS_PER_INTERVAL, Coordinator
from gridctl.core import INTERVAL_S
from gridctl.protocol import PlanStep, Telemetry, household_topic
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.settle import IntervalOutcome, SettlementConfig, Settler
from gridctl.settlement.signing import SignedReading, key_id_of, public_bytes, reading_payload
from gridctl.transport.session import Session
from tests.conftest import Broker, stop_tasks, until
from tests.coordinator.test_coordinator import (
    FIRST,
    HOMES,
    Clock,
    Collector,
    FlatPlanner,
    _enrol,
    _settings,
)
from tests.keys import COORDINATOR_KEY


class FailsAt(FlatPlanner):
    """A planner that raises for one interval."""

    def __init__(self, bad: int):
        super().__init__()
        self.bad = bad

    def plan(
        self, interval: int, telemetry: Mapping[str, Telemetry], now_s: float | None = None
    ) -> dict[str, list[PlanStep]]:
        if interval == self.bad:
            raise RuntimeError("solver crashed")
        return super().plan(interval, telemetry)


def _telemetry(h: str, t: str, **values: object) -> bytes:
    doc = {"v": 1, "household": h, "t": t, "mode": "plan", **values}
    return json.dumps(doc).encode()  # allow_nan: NaN and Infinity go out as JS literals


def _forged(meter: str, interval: int, seq: int, key, key_id: str | None = None) -> bytes:  # type: ignore[no-untyped-def]
    """A reading signed with ``key`` under ``key_id`` (default: the key's own id), for values
    gridctl itself would not sign or signatures that do not match."""
    sig = key.sign(reading_payload(meter, interval, seq, 10, 0))
    r = SignedReading(meter, interval, seq, 10, 0, key_id or key_id_of(public_bytes(key)), sig)
    return json.dumps(r.to_message()).encode()


async def test_a_hostile_household_is_refused_by_reason_and_the_others_settle(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    signers = _enrol(tmp_path / "ledger.sqlite")
    clock = Clock((FIRST + 1) * INTERVAL_S - 100)  # near the end of the first interval
    coord = Coordinator(
        c, _settings(broker, "coordinator"), tmp_path / "ledger.sqlite",
        tmp_path / "inbox.sqlite", SettlementConfig(0.20, 1.0), COORDINATOR_KEY, FailsAt(FIRST + 1),
        clock=clock,
        tick_s=0.01, settle_after_s=300.0,
    )  # fmt: skip
    sessions = {
        h: Session(_settings(broker, h), f"t-{h}", [], Collector()) for h in [*HOMES, "h05"]
    }
    tasks = [asyncio.create_task(x.run()) for x in (coord, *sessions.values())]
    bad = signers[main_meter("h01")]
    now = "2026-12-02T00:00:00+00:00"  # any time, as long as it is not within the skew
    attacks = {
        "bad_field": [
            ("reading", _forged("h01/main", FIRST, 2**63, bad.key)),  # u64 seq beyond i64
            ("telemetry", _telemetry("h01", now, grid_p_w=float("nan"))),
            ("telemetry", _telemetry("h01", now, grid_p_w=float("inf"))),
            ("telemetry", _telemetry("h01", now, battery_p_w=-float("inf"))),
            ("telemetry", _telemetry("h01", now, grid_p_w=1e308)),
        ],
        "too_new": [
            ("telemetry", _telemetry("h01", "9999-12-31T00:00:00+00:00")),
            ("reading", json.dumps(bad.sign(FIRST + 5, 10, 0).to_message()).encode()),
        ],
        "too_old": [("telemetry", _telemetry("h01", "2000-01-01T00:00:00+00:00"))],
        "bad_signature": [
            ("reading", _forged("h01/main", FIRST, 7, signers["h00/main"].key, bad.key_id))
        ],
        "other_meter": [("reading", _forged("h01/main", FIRST, 8, signers["h00/main"].key))],
        "unsigned": [],
    }
    try:
        await until(lambda: coord.session.connected.is_set())
        await until(lambda: all(s.connected.is_set() for s in sessions.values()))
        pub = sessions["h01"].publish
        for reason, cases in attacks.items():
            for kind, payload in cases:
                assert await pub(household_topic(c, "h01", kind), payload), reason
        # a household not enrolled here
        assert await sessions["h05"].publish(
            household_topic(c, "h05", "telemetry"), _telemetry("h05", now)
        )
        # distinct, validly signed readings for one interval: a few are kept, then refused
        for k in range(MAX_READINGS_PER_INTERVAL + 2):
            r = bad.sign(FIRST, 100 + k, 0)
            assert await pub(
                household_topic(c, "h01", "reading"), json.dumps(r.to_message()).encode()
            )
        # 10,000 unsigned junk readings in a burst
        junk = {**bad.sign(FIRST, 1, 0).to_message(), "sig": ""}
        for k in range(10_000):
            junk["seq"] = 10_000 + k
            assert await pub(household_topic(c, "h01", "reading"), json.dumps(junk).encode())
        # the honest households' readings of the same interval
        for h in ("h00", "h02"):
            r = signers[main_meter(h)].sign(FIRST, 500, 0)
            assert await sessions[h].publish(
                household_topic(c, h, "reading"), json.dumps(r.to_message()).encode()
            )
        refused = coord.rejects.by_reason
        await until(lambda: refused["unsigned"] + refused["rate_limited"] >= 10_000, 60)
        await until(lambda: coord.inbox.meters_in(FIRST) >= {"h00/main", "h02/main"}, 30)
        for reason, cases in attacks.items():
            assert refused[reason] >= len(cases), (reason, dict(refused))
        assert refused["bad_field"] == 1 + 4 and refused["too_new"] == 2
        assert refused["unknown_household"] == 1 and refused["too_old"] == 1
        assert refused["too_many"] == 2 and refused["rate_limited"] > 0
        assert coord.inbox.count("h01/main", FIRST) == MAX_READINGS_PER_INTERVAL
        assert "h01" not in coord.telemetry  # no bad telemetry was kept

        # the interval settles with the honest readings verified; a reading for it now is late
        clock.t_s = (FIRST + 1) * INTERVAL_S + 1
        await until(lambda: coord.last_closed == FIRST)
        out: IntervalOutcome = coord.outcomes[-1]
        status = dict(zip(out.households, out.status, strict=True))
        assert status["h00"] == status["h02"] == "verified"
        late = signers[main_meter("h00")].sign(FIRST, 600, 0)
        assert await sessions["h00"].publish(
            household_topic(c, "h00", "reading"), json.dumps(late.to_message()).encode()
        )
        await until(lambda: refused["interval_closed"] == 1)
        # planning for FIRST + 1 failed: counted, the service goes on and plans the next one
        await until(lambda: coord.last_planned == FIRST + 1)
        assert coord.failures["plan"] == 1
        clock.t_s = (FIRST + 2) * INTERVAL_S + 1
        await until(lambda: coord.last_planned == FIRST + 2)
        assert coord.failures["plan"] == 1 and coord.session.handler_errors == 0
    finally:
        await stop_tasks(*tasks)


class FailsOnce(Settler):
    """Fault injection: the first settlement raises (as a full disk or a bug would)."""

    failed = False

    def settle(self, interval, readings, **kw):  # type: ignore[no-untyped-def, override]
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise OSError("disk full")
        return super().settle(interval, readings, **kw)


async def test_a_failed_settlement_is_counted_and_tried_again(
    broker: Broker, tmp_path: Path
) -> None:
    c = broker.community
    signers = _enrol(tmp_path / "ledger.sqlite")
    clock = Clock((FIRST + 1) * INTERVAL_S - 100)
    coord = Coordinator(
        c, _settings(broker, "coordinator"), tmp_path / "ledger.sqlite",
        tmp_path / "inbox.sqlite", SettlementConfig(0.20, 1.0), COORDINATOR_KEY, None, clock=clock,
        tick_s=0.01,
    )  # fmt: skip
    coord.settler = FailsOnce(coord.ledger, SettlementConfig(0.20, 1.0))
    tasks = [asyncio.create_task(coord.run())]
    try:
        await until(lambda: coord.session.connected.is_set())
        for h in HOMES:
            r = signers[main_meter(h)].sign(FIRST, 500, 0)
            topic = household_topic(c, h, "reading")
            await coord.on_message(topic, json.dumps(r.to_message()).encode())
        clock.t_s = (FIRST + 1) * INTERVAL_S + 1
        await until(lambda: coord.last_closed == FIRST)
        assert coord.failures["settle"] == 1
        assert coord.outcomes[-1].status == ["verified"] * 3
    finally:
        await stop_tasks(*tasks)
