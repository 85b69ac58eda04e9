"""The grid operator for the tests: openleadr's own VTN (``OpenADRServer``), a real independent
implementation of OpenADR 2.0b, on a free port, in the test's event loop.

openleadr's own event queue judges an event's status by the wall clock and drops an event that
is over once it has sent it (a lone one it never sends: its list of events to send is the queue
it pops the event from). A simulation's events are dated in the scenario's time, mostly past:
``archive=True`` serves them from the helper's own list through openleadr's ``on_poll`` and
``on_request_event`` hooks instead: every event at each request for events, and at the next
poll after one was added or cancelled (openleadr still builds, sends and parses every message)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from openleadr import OpenADRServer, objects

from gridctl.devices.virtual import free_tcp_port

VEN_ID = "ven-oak"
PATH = "/OpenADR2/Simple/2.0b"

Interval = tuple[datetime, float, object]
"""(dtstart, duration s, payload): an event signal's interval."""


@dataclass
class Vtn:
    """openleadr's VTN, recording what the VEN tells it: registrations, each event's opt
    (first answer) and report values by resource."""

    port: int = field(default_factory=free_tcp_port)
    poll_s: float = 1.0
    archive: bool = False
    """Serve every event, over by the wall clock or not (see the module doc)."""
    registrations: list[dict[str, Any]] = field(default_factory=list)
    opts: dict[str, str] = field(default_factory=dict)
    reports: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    server: OpenADRServer | None = None
    _served: list[objects.Event] = field(default_factory=list)
    _news: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> None:
        """Start (or restart, on the same port, with no memory of the VEN's events)."""
        s = OpenADRServer(vtn_id="OPERATOR", http_port=self.port, http_host="127.0.0.1",
                          requested_poll_freq=timedelta(seconds=self.poll_s))  # fmt: skip
        s.add_handler("on_create_party_registration", self._register)
        s.add_handler("on_register_report", self._offer)
        if self.archive:
            s.add_handler("on_poll", self._poll)
            s.add_handler("on_request_event", lambda ven_id: list(self._served) or None)
            s.add_handler("on_created_event", self._opted)
        await s.run()
        self.server = s

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop()
        self.server = None

    def _register(self, payload: dict[str, Any]) -> tuple[str, str]:
        self.registrations.append(payload)
        return VEN_ID, f"reg-{len(self.registrations)}"

    def _offer(self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
               min_sampling_interval: timedelta, max_sampling_interval: timedelta) -> tuple:  # fmt: skip
        def got(values: list[tuple[datetime, float]]) -> None:
            self.reports.setdefault(resource_id, []).extend(values)

        return got, min_sampling_interval

    def _opted(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[event_id] = opt_type

    def _poll(self, ven_id: str) -> tuple[str, dict[str, Any]] | None:
        if not self._news or not self._served:
            return None
        self._news = False
        return "oadrDistributeEvent", {"events": list(self._served)}

    def add(
        self,
        signals: Sequence[tuple[str, str, Sequence[Interval]]],
        targets: list[dict[str, str]] | None = None,
        ramp_s: float | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue an event for the VEN: signals as (name, type, intervals); targets (None: the
        VEN); ramp-up before its start, s. Returns its id."""
        assert self.server is not None
        now = datetime.now(UTC)
        event_id = event_id or f"ev-{len(self.server.events.get(VEN_ID, [])) + len(self.opts)}"
        sigs = [
            objects.EventSignal(
                intervals=[
                    objects.Interval(dtstart=t, duration=timedelta(seconds=d), signal_payload=v)  # type: ignore[arg-type]
                    for t, d, v in ivs
                ],
                signal_name=name,
                signal_type=kind,
                signal_id=f"{event_id}-{k}",
            )
            for k, (name, kind, ivs) in enumerate(signals)
        ]
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=event_id, modification_number=0, market_context="oadr://gridctl.test",
                event_status="far", created_date_time=now,
            ),
            event_signals=sigs,
            targets=targets or [{"ven_id": VEN_ID}],
        )  # fmt: skip
        self.server.add_raw_event(VEN_ID, event, callback=self._opted)  # (completes the event)
        if ramp_s is not None:  # openleadr's add_raw_event rebuilds the active period without it
            event.active_period["ramp_up_period"] = timedelta(seconds=ramp_s)
        if self.archive:
            self._served.append(event)
            self._news = True
        return event_id

    def cancel(self, event_id: str) -> None:
        assert self.server is not None
        self.server.cancel_event(VEN_ID, event_id)
        self._news = True
