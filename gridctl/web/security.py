"""HTTP hardening shared by every response: security headers, the session cookie's flags, and
request bodies read only up to a bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Content-Security-Policy: only the app's own files, no inline script or style, never framed."""
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Headers on every response (``no-store``: statements must not linger in shared caches)."""
COOKIE = "gridctl_session"


async def add_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: the security headers on every response, errors included."""
    response = await call_next(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_session_cookie(request: Request, response: Response, sid: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, and Secure when served over https (on
    plain http, e.g. loopback, a Secure cookie would never be sent back, so it is off there)."""
    response.set_cookie(
        COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https",
        path="/",
    )  # fmt: skip


async def bounded_body(request: Request, max_bytes: int, what: str) -> bytes:
    """The request's body, at most ``max_bytes``: 413 naming ``what`` beyond (by its declared
    length before reading, and by what arrived), 400 for a declared length that is no number."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise HTTPException(400, "The request's length is not a number.") from None
    if declared > max_bytes:
        raise HTTPException(413, f"The {what} is too large.")
    body = await request.body()
    if len(body) > max_bytes:
        raise HTTPException(413, f"The {what} is too large.")
    return body
