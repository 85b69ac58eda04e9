"""``/live``: the community's live state as server-sent events (public: community-level
values only), and ``/live.json``, the same once. The page's ``static/live.js`` follows it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gridctl.web.live import Live

MAX_STREAMS = 1000
"""Event streams served at once (one per open community page); beyond, 503."""
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
    state = request.app.state
    if getattr(state, "streams", 0) >= MAX_STREAMS:
        raise HTTPException(503, "Too many live pages open right now; reload in a minute.")

    async def events() -> AsyncIterator[str]:
        state.streams = getattr(state, "streams", 0) + 1
        try:
            yield f"retry: {RETRY_MS}\n\n"
            last = None
            while not await request.is_disconnected():
                snap = live.snapshot()
                if snap != last:
                    yield f"event: community\ndata: {json.dumps(snap)}\n\n"
                    last = snap
                else:
                    yield ": keep-alive\n\n"
                await live.changed(KEEPALIVE_S)
        finally:
            state.streams -= 1

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )
