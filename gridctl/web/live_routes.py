"""``/live``: the community's live state as server-sent events (public: community-level
values only), and ``/live.json``, the same once. The page's ``static/live.js`` follows it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gridctl.web.live import Live
from gridctl.web.wakeup import Wakeup

MAX_STREAMS = 1000
"""Event streams served at once (one per open community or household page); beyond, 503."""
KEEPALIVE_S = 15.0
"""A comment line at least this often, s, so proxies and the browser keep the stream."""
RETRY_MS = 1000
"""How soon the browser reconnects after the stream ends (a server restart), ms."""

router = APIRouter()


def _live(request: Request) -> Live:
    live: Live | None = getattr(request.app.state, "live", None)
    if live is None:
        raise HTTPException(404, "No live data: this server shows a finished simulation.")
    return live


@router.get("/live.json")
def live_json(request: Request) -> Response:
    return JSONResponse(_live(request).snapshot())


@router.get("/live")
async def live_stream(request: Request) -> Response:
    live = _live(request)
    return event_stream(request, "community", live.snapshot, live.changes, KEEPALIVE_S)


def event_stream(
    request: Request,
    event: str,
    snapshot: Callable[[], object],
    changes: Wakeup,
    every_s: float,
    allowed: Callable[[], bool] = lambda: True,
) -> Response:
    """Server-sent events named ``event``: ``snapshot()`` (JSON) whenever it differs from the
    last one sent, looked at after each of ``changes`` (or ``every_s``, s); a keep-alive comment
    otherwise; the stream ends once ``allowed()`` is False (a session that ended). At most
    ``MAX_STREAMS`` streams at once (503 beyond)."""
    state = request.app.state
    if getattr(state, "streams", 0) >= MAX_STREAMS:
        raise HTTPException(503, "Too many live pages open right now; reload in a minute.")

    async def events() -> AsyncIterator[str]:
        state.streams = getattr(state, "streams", 0) + 1
        try:
            yield f"retry: {RETRY_MS}\n\n"
            last = None
            while allowed() and not await request.is_disconnected():
                ticket = changes.ticket()  # before the snapshot: no change in between is lost
                snap = snapshot()
                if snap != last:
                    yield f"event: {event}\ndata: {json.dumps(snap)}\n\n"
                    last = snap
                else:
                    yield ": keep-alive\n\n"
                await changes.wait(every_s, ticket)
        finally:
            state.streams -= 1

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )
