"""A simulation's OpenADR VEN: a real VTN's events become the planner's envelopes, and the
simulated transformer meter's import and export go back to it as the telemetry report.

The VEN is the coordinator's own (``gridctl.public.openadr.Ven``). In wire mode the coordinator
runs it as in production; in process it runs in a thread of its own (``VenThread``) beside the
synchronous simulation, fed the transformer meter's signed readings as the coordinator is.

Simulated time is not wall time, and a scenario's events are dated in the scenario's time (its
past, mostly). openleadr's client hands such events to the VEN's handler like any other, and
the VEN maps them by their own dates; but openleadr answers (optIn/optOut) only events not yet
over by the wall clock, and drops events over by the wall clock from its own memory (the VEN
keeps the events it accepted, judged on its own clock). So the VEN runs on the simulated clock:
before an interval is planned the simulation moves the clock to the interval's start, wakes the
VEN and waits until a poll begun at that time has ended (``poll_at``). Every event the VTN had
queued by then is in the envelopes, and the VTN was heard (or not) at the time the planner
judges silence at: a VTN that did not answer the interval's poll is silent (the interval is
longer than ``SILENT_POLLS`` poll periods) and the default envelope applies.

Between those polls the VEN runs in wall time as in production: it polls every ``poll_s`` and
sends a report sample every ``report_s`` (the sampling period the VTN asked for) of wall time,
each the transformer's mean import and export over the latest interval measured, dated on the
simulated clock. A short ``report_s`` (1 s) gives every interval's figures to the VTN.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Collection, Coroutine
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from gridctl.coordinator.assembly import Community
from gridctl.coordinator.flow import MeterFlow
from gridctl.core import GridctlError
from gridctl.public.envelope import Envelopes
from gridctl.public.openadr import Ven
from gridctl.public.openadr_spec import OpenAdrSpec
from gridctl.settlement.signing import SignedReading
from gridctl.sim.clock import SimClock

POLL_WAIT_S = 60.0
"""Longest real time a poll at a simulated moment may take before the run is declared stuck."""


class VenError(GridctlError):
    """The simulation's VEN could not poll in time."""


async def poll_at(ven: Ven, t_s: float) -> None:
    """Wake ``ven`` and wait until a poll begun at ``t_s`` or later (on its clock) has ended,
    answered or not. Call in the VEN's loop."""
    ven.wake()
    try:
        async with asyncio.timeout(POLL_WAIT_S):
            while ven.polled_s is None or ven.polled_s < t_s:
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise VenError(f"the VEN did not poll at {t_s:.0f} s within {POLL_WAIT_S:.0f} s") from None


class VenThread:
    """A ``Ven`` on ``clock`` in a thread and event loop of its own, for the in-process
    simulation (a context manager). ``measured`` takes each transformer meter reading;
    ``poll_at`` is ``poll_at`` from the simulation's thread."""

    def __init__(
        self, spec: OpenAdrSpec, envelopes: Envelopes, households: Collection[str], clock: SimClock
    ):
        self._flow = MeterFlow()
        self._latest: tuple[float | None, float | None] = (None, None)  # swapped whole
        self.ven = Ven(spec, envelopes, households, lambda: self._latest, clock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gridctl-sim-ven")
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> VenThread:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def measured(self, reading: SignedReading) -> None:
        """Take the transformer meter's reading at the end of an interval."""
        self._flow.add(reading)
        self._latest = self._flow.latest()

    def poll_at(self, t_s: float) -> None:
        """``poll_at`` (blocking until the poll has ended)."""
        self._call(poll_at(self.ven, t_s))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(POLL_WAIT_S + 10)

    async def _start(self) -> None:
        self._task = asyncio.create_task(self.ven.run())

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def sim_ven(
    spec: OpenAdrSpec | None, community: Community, base_dir: Path, clock: SimClock
) -> AbstractContextManager[VenThread | None]:
    """The in-process run's VEN (None without an ``openadr`` spec), putting the VTN's limits
    into the planner's envelopes; relative certificate paths are taken from ``base_dir``."""
    if spec is None:
        return contextlib.nullcontext()
    planner = community.planner
    envelopes = planner.envelopes if planner is not None else Envelopes()
    return VenThread(spec.relative_to(base_dir), envelopes, community.ids, clock)
