"""The community's VEN against openleadr's own VTN as the grid operator: events to envelopes,
silence and return, refusals, cancellations and the telemetry report."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from gridctl.public.envelope import FEEDER, SILENT_POLLS, DefaultEnvelope, Envelopes
from gridctl.public.openadr import SOURCE, Ven
from gridctl.public.openadr_spec import OpenAdrSpec
from tests.conftest import stop_tasks, until
from tests.public.vtn import Vtn

HOUSEHOLDS = ["h00", "h01", "h02"]
DEFAULT = DefaultEnvelope(feeder_import_max_w=90_000, feeder_export_max_w=30_000)
HOUR = 3600.0


@pytest.fixture
async def vtn() -> AsyncIterator[Vtn]:
    v = Vtn()
    await v.start()
    yield v
    if v.server is not None:
        await v.stop()


def ven_for(vtn: Vtn, env: Envelopes, **kw: object) -> Ven:
    spec = OpenAdrSpec(vtn_url=vtn.url, ven_name="oak", poll_s=1, report_s=1)
    return Ven(spec, env, HOUSEHOLDS, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def running(
    vtn: Vtn, env: Envelopes, registered: bool = True, **kw: object
) -> AsyncIterator[Ven]:
    """A VEN running against ``vtn`` (registered first, unless told not to wait)."""
    ven = ven_for(vtn, env, **kw)
    task = asyncio.create_task(ven.run())
    try:
        if registered:
            await until(lambda: ven.registered, 10)
        yield ven
    finally:
        await stop_tasks(task)


def at(offset_s: float) -> datetime:
    """A moment ``offset_s`` from now, whole seconds (UTC)."""
    return datetime.fromtimestamp(round(time.time() + offset_s), UTC)


async def test_events_become_feeder_and_household_limits_prices_and_flex(vtn: Vtn) -> None:
    env = Envelopes(DEFAULT)
    async with running(vtn, env) as ven:
        t0 = at(HOUR)  # an export limit for the feeder, three hours, 15 min of ramp, paid
        feeder = vtn.add(
            [("x-opModExpLimW", "setpoint", [(t0, HOUR, 5000.0), (t0 + timedelta(hours=1), HOUR, 4000.0),
                                             (t0 + timedelta(hours=2), HOUR, 5000.0)]),
             ("BID_PRICE", "price", [(t0, 3 * HOUR, 0.25)])],
            ramp_s=900,
        )  # fmt: skip
        house = vtn.add(  # 7 kW import for h01's connection point (LOAD_DISPATCH is in kW)
            [("LOAD_DISPATCH", "setpoint", [(t0, 2 * HOUR, 7.0)])], [{"resource_id": "h01"}]
        )
        prices = [(t0, HOUR, 0.31), (t0 + timedelta(hours=1), HOUR, -0.02)]
        price = vtn.add([("ELECTRICITY_PRICE", "price", prices)])
        await until(lambda: len(vtn.opts) == 3, 10)
        assert vtn.opts == {feeder: "optIn", house: "optIn", price: "optIn"}

        now, s0 = time.time(), t0.timestamp()
        assert env.limits(FEEDER, s0 - 900, s0 - 1, now) == (math.inf, math.inf)  # during the ramp
        assert env.limits(FEEDER, s0, s0 + 900, now) == (math.inf, 5000.0)  # from its start
        assert env.limits(FEEDER, s0 + HOUR, s0 + HOUR + 900, now) == (math.inf, 4000.0)
        assert env.limits(FEEDER, s0 + 3 * HOUR, s0 + 4 * HOUR, now) == (math.inf, math.inf)
        assert env.limits("h01", s0, s0 + 900, now) == (7000.0, math.inf)
        assert env.limits("h00", s0, s0 + 900, now) == (math.inf, math.inf)
        first = next(lim for lim in env.sources()[SOURCE] if lim.target == FEEDER)
        assert (first.start_s, first.ramp_s) == (s0 - 900, 900)

        assert [(p.start_s - s0, p.end_s - s0, p.price_per_kwh) for p in ven.prices()] == [
            (0, HOUR, 0.31), (HOUR, 2 * HOUR, -0.02)]  # fmt: skip
        flex = ven.flex_events()  # paid: the feeder's three intervals, not h01 (no price)
        assert [(f.event_id, f.target, f.start_s - s0, f.export_max_w, f.price_per_kwh)
                for f in flex] == [(feeder, FEEDER, k * HOUR, w, 0.25)
                                   for k, w in enumerate([5000.0, 4000.0, 5000.0])]  # fmt: skip

        vtn.cancel(feeder)  # cancelled: its limits and requests go
        await until(lambda: ven.decisions.get(feeder) == ("optIn", "cancelled"), 10)
        assert env.limits(FEEDER, s0, s0 + 900, time.time()) == (math.inf, math.inf)
        assert ven.flex_events() == []
        assert env.limits("h01", s0, s0 + 900, time.time()) == (7000.0, math.inf)


async def test_silent_vtn_gives_way_to_the_default_and_returns_within_a_poll(vtn: Vtn) -> None:
    env = Envelopes(DEFAULT)
    async with running(vtn, env) as ven:
        vtn.add([("x-opModExpLimW", "setpoint", [(at(-60), 2 * HOUR, 12_000.0)])])
        await until(lambda: len(vtn.opts) == 1, 10)
        now = time.time()
        live = (math.inf, 12_000.0)
        assert env.limits(FEEDER, now, now + 900, now) == live

        await vtn.stop()
        stopped = time.time()
        await until(ven.silent, 4 * SILENT_POLLS)
        silent_after = time.time() - stopped
        now = time.time()
        assert env.limits(FEEDER, now, now + 900, now) == (90_000, 30_000)  # the default
        assert env.limits("h00", now, now + 900, now) == (math.inf, math.inf)
        # silent once SILENT_POLLS poll periods (1 s) have passed since its last answer
        assert SILENT_POLLS - 1 < silent_after < SILENT_POLLS + 2

        polls = ven.polls
        await vtn.start()  # a fresh VTN on the same address: the VEN's limits are kept
        back = time.time()
        await until(lambda: not ven.silent(), 5)
        returned_after = time.time() - back
        assert returned_after <= 1.5  # within one poll (1 s) and the request itself
        assert ven.polls > polls
        now = time.time()
        assert env.limits(FEEDER, now, now + 900, now) == live


async def test_malformed_events_are_refused_with_reasons_and_the_ven_goes_on(
    vtn: Vtn, caplog: pytest.LogCaptureFixture
) -> None:
    env = Envelopes(DEFAULT)
    caplog.set_level(logging.WARNING, logger="gridctl.public.openadr")
    async with running(vtn, env) as ven:
        t0 = at(HOUR)
        bad = {
            "negative": vtn.add([("x-opModExpLimW", "setpoint", [(t0, HOUR, -4000.0)])]),
            "zero_length": vtn.add([("x-opModExpLimW", "setpoint", [(t0, 0, 4000.0)])]),
            "unknown_signal": vtn.add([("x-bogusLimit", "setpoint", [(t0, HOUR, 4000.0)])]),
            "unknown_type": vtn.add([("LOAD_DISPATCH", "delta", [(t0, HOUR, 4.0)])]),
            "nan": vtn.add([("x-opModImpLimW", "setpoint", [(t0, HOUR, "NaN")])]),
            "absurd": vtn.add([("x-opModImpLimW", "setpoint", [(t0, HOUR, 2e8)])]),
            "stranger": vtn.add(
                [("x-opModImpLimW", "setpoint", [(t0, HOUR, 4000.0)])], [{"resource_id": "h99"}]
            ),
        }
        await until(lambda: len(vtn.opts) == len(bad), 10)
        assert {k: vtn.opts[e] for k, e in bad.items()} == dict.fromkeys(bad, "optOut")
        reasons = {k: ven.decisions[e][1] for k, e in bad.items()}
        assert "outside 0" in reasons["negative"]
        assert "ends at or before it starts" in reasons["zero_length"]
        assert "unsupported signal" in reasons["unknown_signal"]
        assert "unsupported signal" in reasons["unknown_type"]
        assert "not a finite number" in reasons["nan"]
        assert "outside 0" in reasons["absurd"]
        assert "unknown resource 'h99'" in reasons["stranger"]
        for e in bad.values():
            assert f"refused event {e}" in caplog.text
        assert env.sources()[SOURCE] == ()  # nothing of them applies

        good = vtn.add([("x-opModExpLimW", "setpoint", [(t0, HOUR, 8000.0)])])
        await until(lambda: good in vtn.opts, 10)
        assert vtn.opts[good] == "optIn"
        s0 = t0.timestamp()
        assert env.limits(FEEDER, s0, s0 + 900, time.time()) == (math.inf, 8000.0)
        polls = ven.polls
        await until(lambda: ven.polls > polls, 3)  # and it polls on


async def test_vtn_receives_the_measured_import_and_export(
    vtn: Vtn, caplog: pytest.LogCaptureFixture
) -> None:
    measured: dict[str, tuple[float | None, float | None]] = {"w": (None, None)}
    async with running(vtn, Envelopes(), measured=lambda: measured["w"]):
        await asyncio.sleep(2.5)  # nothing measured yet: no report at all, none refused
        assert vtn.reports == {}
        assert "Non-OK status" not in caplog.text
        measured["w"] = (1234.5, None)  # export not known yet: nothing sent for it
        await until(lambda: "feeder-import_w" in vtn.reports, 10)
        assert {v for _, v in vtn.reports["feeder-import_w"]} == {1234.5}
        assert "feeder-export_w" not in vtn.reports
        measured["w"] = (0.0, 4321.0)
        await until(lambda: "feeder-export_w" in vtn.reports, 10)
        assert {v for _, v in vtn.reports["feeder-export_w"]} == {4321.0}
        assert vtn.reports["feeder-import_w"][-1][1] in (0.0, 1234.5)


async def test_unreachable_vtn_at_start_counts_as_silent_and_registration_follows() -> None:
    vtn = Vtn()  # not started yet
    env = Envelopes(DEFAULT)
    async with running(vtn, env, registered=False) as ven:
        await until(ven.silent, 4 * SILENT_POLLS)
        assert not ven.registered
        now = time.time()
        assert env.limits(FEEDER, now, now + 900, now) == (90_000, 30_000)
        await vtn.start()
        await until(lambda: ven.registered and not ven.silent(), 5)
        assert len(vtn.registrations) == 1
        assert vtn.registrations[0]["ven_name"] == "oak"
    await vtn.stop()


def test_spec_bounds_and_tls_together() -> None:
    ok = OpenAdrSpec(vtn_url="https://vtn.example/OpenADR2/Simple/2.0b", ven_name="oak",
                     cert="ven.pem", key="ven.key", ca_file="ca.pem")  # type: ignore[arg-type]  # fmt: skip
    assert ok.poll_s == 10
    with pytest.raises(ValueError, match="go together"):
        OpenAdrSpec(vtn_url="https://vtn.example", ven_name="oak", cert="ven.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="https"):
        OpenAdrSpec(vtn_url="http://vtn.example", ven_name="oak", cert="a", key="b", ca_file="c")  # type: ignore[arg-type]
    for bad in ({"poll_s": 0.5}, {"poll_s": 7200}, {"poll_s": math.nan}, {"report_s": 0},
                {"flex_price_per_kwh": -1}, {"vtn_url": "ftp://x"}, {"ven_name": "a b"}):  # fmt: skip
        with pytest.raises(ValueError):
            OpenAdrSpec.model_validate({"vtn_url": "http://vtn", "ven_name": "oak", **bad})
