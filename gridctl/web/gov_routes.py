"""``/governance``: proposals, their windows, the count so far, results and enactments (both
modes); ``/governance/vote.json``: a logged-in household's member vote, signed in its browser
(``static/vote.js``), checked here and relayed to the coordinator (coordinator mode only)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from gridctl.core import describe_validation_error, interval_start
from gridctl.governance.votes import VoteMessage
from gridctl.web.auth import HOUSEHOLD, OPERATOR, LoginLimiter, Session
from gridctl.web.governance import REASONS, proposal_lines, vote_refusal
from gridctl.web.live import Live
from gridctl.web.security import bounded_body

MAX_VOTE_BYTES = 2048
"""Largest vote body read, bytes (a signed vote is ~330)."""
VOTES_PER_WINDOW = 16
"""Votes a household may send through the web per VOTE_WINDOW_S (the coordinator records 16
per interval)."""
VOTE_WINDOW_S = 900.0

router = APIRouter()


@router.get("/governance")
def governance_page(request: Request) -> Response:
    web, live = request.app.state.web, request.app.state.live
    s = web.session(request)
    me = s.account if s is not None else None
    viewer = me.user if me is not None and me.role == HOUSEHOLD else None
    now = web.view.current_interval()
    return web.render(
        request, "governance.html", lines=proposal_lines(web.view.ledger, now, viewer),
        now=now, start=lambda iv: interval_start(iv).strftime("%Y-%m-%d %H:%M UTC"),
        viewer=viewer, operator=me is not None and me.role == OPERATOR,
        community=live.community if live is not None else None, reasons=REASONS,
    )  # fmt: skip


def _voter(request: Request) -> Session:
    """The session of a logged-in household whose CSRF header matches; 401 / 403 otherwise."""
    s = request.app.state.web.session(request)
    if s is None or s.account is None:
        raise HTTPException(401, "Log in as your household to vote.")
    token = request.headers.get("x-csrf-token", "")
    if not token or not secrets.compare_digest(token, s.csrf):
        raise HTTPException(403, "The page's security token is missing or stale: reload the "
                            "page and vote again.")  # fmt: skip
    if s.account.role != HOUSEHOLD:
        raise HTTPException(403, "Only a household's member votes (the operator does not).")
    return s


@router.post("/governance/vote.json")
async def vote(request: Request) -> Response:
    live: Live | None = request.app.state.live
    if live is None:
        raise HTTPException(404, "Votes go to a running coordinator: this server shows a "
                            "finished simulation.")  # fmt: skip
    household = _voter(request).account.user  # type: ignore[union-attr]
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "Send the vote as application/json.")
    body = await bounded_body(request, MAX_VOTE_BYTES, "vote")
    try:
        v = VoteMessage.model_validate_json(body)
    except ValidationError as e:
        raise HTTPException(400, f"The vote is malformed: {describe_validation_error(e)}"
                            ) from None  # fmt: skip
    state = request.app.state
    if getattr(state, "vote_limiter", None) is None:
        state.vote_limiter = LoginLimiter(limit=VOTES_PER_WINDOW, lock_s=VOTE_WINDOW_S)
    if state.vote_limiter.locked(household):
        raise HTTPException(429, "Too many votes from your household: try again later.")
    state.vote_limiter.failed(household)  # counts every vote sent
    web = request.app.state.web
    why = vote_refusal(web.view.ledger, live.community, v, household, web.view.current_interval())
    if why is not None:
        raise HTTPException(400, f"Vote refused: {REASONS.get(why, why)}.")
    if not await live.relay_vote(v):
        raise HTTPException(503, "The coordinator's broker cannot be reached right now; your "
                            "vote was not sent. Try again in a minute.")  # fmt: skip
    return JSONResponse({
        "ok": True,
        "message": f"Your vote '{v.choice}' on proposal {v.proposal} is signed and on its way: "
                   "it shows in the count once the coordinator records it (when it settles "
                   "this interval).",
    })  # fmt: skip
