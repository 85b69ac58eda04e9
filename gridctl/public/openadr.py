"""The community as an OpenADR 2.0b VEN (through ``openleadr``), talking to the grid operator's
VTN: events become envelopes, prices and flexibility requests (``openadr_signals``); the
community's measured import and export at the transformer go back as a telemetry report.

The VEN runs in the caller's asyncio loop (``Ven.run``, until cancelled) and polls the VTN every
``poll_s``. Each answered poll tells the envelopes the VTN was heard; a VTN that stops answering
is silent after ``SILENT_POLLS`` poll periods and the default envelope applies, until it answers
again (then its last limits, kept meanwhile, return at once). Silence, the age of events and
the dates of report samples are all judged on the VEN's ``clock`` (the coordinator's; in a
simulation the simulated one, and the simulator ``wake``s the VEN to poll as it moves the
clock). Nothing the VTN sends, and no failure to reach it, stops the VEN: a refused event is
answered ``optOut`` with its reason in the log, an accepted one ``optIn``, a cancelled one
withdrawn.

Security: OpenADR 2.0b asks for TLS with client certificates and XML signatures. With
``cert``/``key``/``ca_file`` the VEN speaks HTTPS with that client certificate, signs every
message with the same key and (with ``vtn_fingerprint``) checks the VTN's signatures: use that
in production. Without them, openleadr sends plain unsigned messages, which only a VTN on a
trusted network (a test, a lab) should take; the VEN logs a warning then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from openleadr import OpenADRClient, utils

from gridctl.core import raise_if_cancelled
from gridctl.public.envelope import FEEDER, Envelopes
from gridctl.public.flex_event import FlexEvent
from gridctl.public.openadr_signals import Accepted, EventRefused, Price, event_id_of, map_event
from gridctl.public.openadr_spec import OpenAdrSpec

log = logging.getLogger(__name__)

SOURCE = "openadr"
"""The envelopes' name for what the VTN says."""
KEEP_S = 86_400.0
"""How long an event is kept after it ended (for baselines and payments), s."""
REPORT_ID = "gridctl-transformer"
IMPORT_RID, EXPORT_RID = "import_w", "export_w"
"""The telemetry report's id and its two data points' ids (measured at the transformer, W)."""

Measured = Callable[[], tuple[float | None, float | None]]
"""The community's latest measured (import, export) at the transformer, W ≥ 0 (None: unknown)."""


class _Client(OpenADRClient):  # type: ignore[misc]
    """openleadr's client, told to note each answered poll and not to give up for good."""

    def __init__(self, answered: Callable[[], None], reportable: Callable[[], bool], **kw: Any):
        super().__init__(**kw)
        self._answered = answered
        self._reportable = reportable

    async def poll(self) -> tuple[str | None, dict[str, Any]]:
        kind, payload = await super().poll()
        if kind is not None:
            self._answered()
        return kind, payload

    async def update_report(self, report_request_id: str) -> None:
        # nothing measured yet: no report (openleadr would send one without intervals, on
        # which its own VTN fails)
        if self._reportable():
            await super().update_report(report_request_id)

    async def create_party_reregistration(self, registration_id: str | None = None) -> None:
        # openleadr's closes its HTTP session for good when the VTN does not answer; instead,
        # register again at the next poll
        self.registration_id = None


class Ven:
    """The community's VEN (see the module doc).

    envelopes: where the VTN's limits go (source ``SOURCE``). households: the community's
    household ids (valid event resources). measured: the transformer's latest import and export
    (None: no report offered). clock: epoch s (the coordinator's). on_failure: called, inside
    the ``except``, when a poll or registration raised (the VEN goes on).
    """

    def __init__(
        self,
        spec: OpenAdrSpec,
        envelopes: Envelopes,
        households: Collection[str],
        measured: Measured | None = None,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[], None] | None = None,
    ):
        self.spec = spec
        self.envelopes = envelopes
        self.households = frozenset(households)
        self.measured = measured
        self.clock = clock
        self.on_failure = on_failure
        self.accepted: dict[str, Accepted] = {}
        """Events in force or ended less than ``KEEP_S`` ago, by id."""
        self.decisions: dict[str, tuple[str, str]] = {}
        """Every event's last answer, by id: (``optIn``/``optOut``, reason)."""
        self.polls = 0
        """Polls (and registrations) the VTN answered since start."""
        self.heard_s = clock()
        """When the VTN last answered (or the VEN started), epoch s."""
        self.polled_s: float | None = None
        """When (on ``clock``) the last registration or poll that has ended began, answered or
        not, epoch s: what the VTN had queued then has been taken, or it is unheard since."""
        self.client: _Client | None = None
        self._wake = asyncio.Event()
        for chatty in ("openleadr", "apscheduler"):  # both log every report sample at INFO
            logging.getLogger(chatty).setLevel(logging.WARNING)

    @property
    def registered(self) -> bool:
        """Whether the VTN has registered us."""
        return self.client is not None and self.client.registration_id is not None

    def silent(self) -> bool:
        """Whether the VTN has been silent so long its limits gave way to the default."""
        return SOURCE in self.envelopes.silent(self.clock())

    def prices(self) -> list[Price]:
        """The VTN's energy prices, by start (currency per kWh; the planner does not use them
        yet)."""
        return sorted((p for a in self.accepted.values() for p in a.prices),
                      key=lambda p: p.start_s)  # fmt: skip

    def flex_events(self) -> list[FlexEvent]:
        """The paid flexibility requests of the accepted events, by start."""
        return sorted((f for a in self.accepted.values() for f in a.flex),
                      key=lambda f: (f.start_s, f.event_id, f.target))  # fmt: skip

    def wake(self) -> None:
        """Poll now rather than at the end of the current poll period (call in the VEN's loop)."""
        self._wake.set()

    async def run(self) -> None:
        """Register, then poll every ``poll_s`` (or when woken) until cancelled; nothing the VTN
        does stops it."""
        if SOURCE not in self.envelopes.sources():  # from now on, its silence counts
            self.heard_s = self.clock()
            self._publish()
        self.client = self._client()
        try:
            while True:
                self._wake.clear()
                began = self.clock()
                try:
                    await self._step()
                except Exception:
                    log.exception("openadr: poll failed; going on")
                    if self.on_failure is not None:
                        self.on_failure()
                self.polled_s = began
                raise_if_cancelled()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.spec.poll_s)
        finally:
            await self._close()

    def _client(self) -> _Client:
        s = self.spec
        if s.cert is None:
            log.warning("openadr: no client certificate: messages to %s are neither encrypted "
                        "nor signed (a test or lab VTN only)", s.vtn_url)  # fmt: skip
        else:
            log.info("openadr: VEN certificate fingerprint %s",
                     utils.certificate_fingerprint(s.cert.read_text()))  # fmt: skip
        c = _Client(
            self._answered, self._reportable, ven_name=s.ven_name, vtn_url=s.vtn_url,
            ven_id=s.ven_id,
            cert=None if s.cert is None else str(s.cert),
            key=None if s.key is None else str(s.key),
            ca_file=None if s.ca_file is None else str(s.ca_file),
            vtn_fingerprint=s.vtn_fingerprint, show_fingerprint=False,
        )  # fmt: skip
        c.add_handler("on_event", self._on_event)
        c.add_handler("on_update_event", self._on_event)
        if self.measured is not None:
            for rid, k in ((IMPORT_RID, 0), (EXPORT_RID, 1)):
                c.add_report(
                    callback=self._sample(k), resource_id=f"{FEEDER}-{rid}",
                    measurement="REAL_POWER", unit="W", r_id=rid,
                    report_specifier_id=REPORT_ID,
                    sampling_rate=timedelta(seconds=s.report_s),
                    report_duration=timedelta(seconds=s.report_s),
                )  # fmt: skip
        return c

    def _sample(self, k: int) -> Callable[[], list[tuple[datetime, float]]]:
        """The report callback of import (k=0) or export (k=1): W dated on ``clock``, or
        nothing when unknown."""

        def sample() -> list[tuple[datetime, float]]:
            assert self.measured is not None
            value = self.measured()[k]
            now = datetime.fromtimestamp(self.clock(), UTC)
            return [] if value is None else [(now, float(value))]

        return sample

    def _reportable(self) -> bool:
        return self.measured is not None and any(v is not None for v in self.measured())

    def _answered(self) -> None:
        self.polls += 1
        self.heard_s = self.clock()
        self.envelopes.heard(SOURCE, self.heard_s)

    async def _step(self) -> None:
        """Register if not registered, else poll once; drop events long over."""
        assert self.client is not None
        self._prune()
        await self.client._event_cleanup()  # openleadr's memory of events over or cancelled
        if not self.registered:
            await self._register()
            return
        await self.client._poll()

    async def _register(self) -> None:
        c = self.client
        assert c is not None
        for rr in c.report_requests:  # a new registration asks for its reports anew
            if rr.get("job") is not None:
                rr["job"].remove()
        c.report_requests.clear()
        c.incomplete_reports.clear()
        await c.create_party_registration(ven_id=c.ven_id)
        if c.registration_id is None:
            log.warning("openadr: not registered with %s (no answer or refused); trying again "
                        "in %g s", self.spec.vtn_url, self.spec.poll_s)  # fmt: skip
            return
        self._answered()
        log.info("openadr: registered ven=%s ven_id=%s registration_id=%s vtn=%s",
                 self.spec.ven_name, c.ven_id, c.registration_id, self.spec.vtn_url)  # fmt: skip
        if c.poll_frequency is not None and c.poll_frequency.total_seconds() != self.spec.poll_s:
            log.info("openadr: the VTN asks for a poll every %s; polling every %g s as configured",
                     c.poll_frequency, self.spec.poll_s)  # fmt: skip
        if not c.scheduler.running:  # runs the report samples the VTN asks for
            c.scheduler.start()
        if c.reports:
            await c.register_reports(c.reports)
            if c.report_queue_task is None or c.report_queue_task.done():
                c.report_queue_task = asyncio.ensure_future(c._report_queue_worker())
        await c.sync_events()

    def _on_event(self, event: dict[str, Any]) -> str:
        """Take, refuse or withdraw one event; its answer (``optIn``/``optOut``)."""
        eid = event_id_of(event)
        desc = event.get("event_descriptor") or {}
        if desc.get("event_status") == "cancelled":
            if self.accepted.pop(eid, None) is not None:
                self._publish()
            log.info("openadr: event %s cancelled; its limits are withdrawn", eid)
            self.decisions[eid] = ("optIn", "cancelled")
            return "optIn"
        try:
            acc = map_event(event, self.households, self.spec.flex_price_per_kwh)
        except EventRefused as e:
            if self.accepted.pop(eid, None) is not None:  # a refused modification withdraws it
                self._publish()
            log.warning("openadr: refused event %s: %s", eid, e)
            self.decisions[eid] = ("optOut", str(e))
            return "optOut"
        self.accepted[eid] = acc
        self._publish()
        for lim in acc.limits:
            log.info("openadr: event %s: %s import ≤ %g W, export ≤ %g W from %d s to %d s "
                     "(binding after %g s of ramp)", eid, lim.target, lim.import_max_w,
                     lim.export_max_w, lim.start_s, lim.end_s, lim.ramp_s)  # fmt: skip
        log.info("openadr: accepted event %s: %d limits, %d prices, %d flexibility requests",
                 eid, len(acc.limits), len(acc.prices), len(acc.flex))  # fmt: skip
        self.decisions[eid] = ("optIn", "accepted")
        return "optIn"

    def _publish(self) -> None:
        """Hand every accepted event's limits to the envelopes (keeping when it was heard)."""
        limits = [lim for a in self.accepted.values() for lim in a.limits]
        self.envelopes.update(SOURCE, limits, self.heard_s, self.spec.poll_s)

    def _prune(self) -> None:
        """Forget events that ended more than ``KEEP_S`` ago (their limits no longer bind)."""
        old = [eid for eid, a in self.accepted.items() if a.end_s < self.clock() - KEEP_S]
        for eid in old:
            del self.accepted[eid]
        if old:
            self._publish()

    async def _close(self) -> None:
        c = self.client
        if c is None:
            return
        if c.scheduler.running:
            c.scheduler.shutdown(wait=False)
        if c.report_queue_task is not None:
            c.report_queue_task.cancel()
        if c.client_session is not None:
            await c.client_session.close()
