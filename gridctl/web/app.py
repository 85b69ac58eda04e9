"""The FastAPI application: routes, authorization on every request, and error pages.

Public: ``/`` (community), ``/timeline`` (``timeline_page``), ``/open-data`` (+ its files),
``/how``, ``/figures/NAME``, ``/roots/{interval}.json`` (an interval's published root), ``/static``.
Logged in: ``/households/{id}`` (statement, ``household_page``) and
``/households/{id}/proofs/{interval}.json``; a household reads its own only, the operator any.
Forms (login, logout) carry a CSRF token.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridctl.core import GridctlError, interval_start
from gridctl.public.opendata import export
from gridctl.web import feeder_routes, gov_routes, live_routes
from gridctl.web.auth import OPERATOR, Accounts, LoginLimiter, Session, Sessions
from gridctl.web.feeder_svg import STATES, feeder_figure
from gridctl.web.household_page import HouseholdId
from gridctl.web.household_page import router as household_router
from gridctl.web.live import Live
from gridctl.web.plan_view import section as plan_section
from gridctl.web.run_view import FIGURES, LABELS, RunView, shown
from gridctl.web.security import COOKIE, HEADERS, add_headers, bounded_body, set_session_cookie
from gridctl.web.timeline_page import router as timeline_router

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
OPEN_DATA_FILES = ("aggregates.csv", "aggregates.parquet", "roots.csv", "datapackage.json")
MAX_FORM_BYTES = 4096
"""Largest login or logout form body read, bytes."""
IntervalIx = Annotated[int, PathParam(ge=0, le=2**62)]


class WebApp:
    """The state behind the routes: the run, the logins, the sessions, the rate limit."""

    def __init__(self, view: RunView, accounts: Accounts, limiter: LoginLimiter) -> None:
        self.view, self.accounts, self.limiter = view, accounts, limiter
        self.sessions = Sessions()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self._open_data: tempfile.TemporaryDirectory[str] | None = None

    def session(self, request: Request) -> Session | None:
        """The request's live session, None without one."""
        return self.sessions.get(request.cookies.get(COOKIE))

    def render(self, request: Request, name: str, code: int = 200, **ctx: object) -> Response:
        """A page, with what every page's navigation needs."""
        s = self.session(request)
        ctx |= {"me": s.account if s else None, "csrf": s.csrf if s else "", "OPERATOR": OPERATOR}
        return self.templates.TemplateResponse(request, name, ctx, status_code=code)

    def operator(self, request: Request) -> bool:
        """Whether the request comes from the operator's session."""
        s = self.session(request)
        return s is not None and s.account is not None and s.account.role == OPERATOR

    def authorize(self, request: Request, household: str) -> Session:
        """The session if it may read ``household``'s pages: 401 without a login, 403 for
        another household's, 404 for an unknown household (the operator's only)."""
        s = self.session(request)
        if s is None or s.account is None:
            raise HTTPException(401, "Log in to see a household's pages.")
        if s.account.role != OPERATOR and s.account.user != household:
            raise HTTPException(403, "You can only see your own household's pages.")
        if household not in self.view.households:
            raise HTTPException(404, f"There is no household {household} in this community.")
        return s

    def open_data_dir(self) -> Path:
        """The open-data package of the run's ledger, written once into a temporary folder."""
        if self._open_data is None:
            self._open_data = tempfile.TemporaryDirectory(prefix="gridctl-web-")
            export(self.view.ledger, Path(self._open_data.name))
        return Path(self._open_data.name)


def create_app(
    view: RunView, accounts: Accounts, limiter: LoginLimiter | None = None, live: Live | None = None
) -> FastAPI:
    """The web app over a run directory's (or a coordinator's) view, accepting ``accounts``;
    ``live``: the coordinator's MQTT state (coordinator mode), kept while the app runs."""
    web = WebApp(view, accounts, limiter or LoginLimiter())
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=live.running if live is not None else None)  # fmt: skip
    app.state.web, app.state.live = web, live
    app.middleware("http")(add_headers)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(live_routes.router)
    app.include_router(gov_routes.router)
    app.include_router(feeder_routes.router)
    _error_pages(app, web)
    app.include_router(timeline_router(web))
    app.include_router(household_router(web))

    @app.get("/")
    def community(request: Request) -> Response:
        c = view.community()
        last = interval_start(c.last).isoformat() if c.last is not None else None
        operator = web.operator(request)
        # a run shows its last settled interval; a coordinator the one it plans now
        feeder = feeder_figure(view.dir, operator, c.last if live is None else None)
        return web.render(
            request, "community.html", c=c, last_start=last, labels=LABELS, shown=shown,
            figures=[f for f in FIGURES if (view.dir / f).is_file()],
            households=view.households, live=live.snapshot() if live is not None else None,
            plan=plan_section(view, live.plan if live is not None else None),
            feeder=feeder, operator=operator, states=STATES,
        )  # fmt: skip

    @app.get("/how")
    def how(request: Request) -> Response:
        return web.render(request, "how.html")

    @app.get("/open-data")
    def open_data(request: Request) -> Response:
        return web.render(request, "open_data.html", files=OPEN_DATA_FILES, c=view.community())

    @app.get("/open-data/{name}")
    def open_data_file(name: str) -> Response:
        if name not in OPEN_DATA_FILES:
            raise HTTPException(404, f"No open-data file {name!r}.")
        return FileResponse(web.open_data_dir() / name, filename=name)

    @app.get("/figures/{name}")
    def figure(name: str) -> Response:
        path = view.dir / name
        if name not in FIGURES or not path.is_file():
            raise HTTPException(404, f"No figure {name!r}.")
        return FileResponse(path, media_type="image/png")

    @app.get("/roots/{interval}.json")
    def root(interval: IntervalIx) -> Response:
        _settled(view, interval)
        return JSONResponse(view.root(interval))

    @app.get("/login")
    def login_page(request: Request) -> Response:
        s = web.session(request)
        if s is not None:
            return web.render(request, "login.html")
        sid, s = web.sessions.new()
        response = web.templates.TemplateResponse(
            request, "login.html", {"me": None, "csrf": s.csrf, "OPERATOR": OPERATOR}
        )
        set_session_cookie(request, response, sid)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await _checked_form(web, request)
        user, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
        client = f"client:{request.client.host if request.client else '?'}"
        if web.limiter.locked(f"user:{user}", client):
            return web.render(request, "login.html", 429, error="Too many wrong passwords: "
                              "this login is locked for a while. Try again later.")  # fmt: skip
        account = web.accounts.check(user, password) if len(password) <= 1024 else None
        if account is None:
            web.limiter.failed(f"user:{user}", client)
            return web.render(request, "login.html", 401, error="Wrong user name or password.")
        web.limiter.succeeded(f"user:{user}")
        web.sessions.drop(request.cookies.get(COOKIE))
        sid, _ = web.sessions.new(account)
        target = "/" if account.role == OPERATOR else f"/households/{account.user}"
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(request, response, sid)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await _checked_form(web, request)
        web.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/households/{household}/proofs/{interval}.json")
    def proof(request: Request, household: HouseholdId, interval: IntervalIx) -> Response:
        web.authorize(request, household)
        _settled(view, interval)
        name = f"proof-{household}-{interval}.json"
        return JSONResponse(
            view.proof(household, interval),
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return app


def _settled(view: RunView, interval: int) -> None:
    """404 unless ``interval`` is settled in the run."""
    if not view.settled(interval):
        raise HTTPException(
            404, f"Interval {interval} is not settled in this run "
            f"(settled: {view.first} to {view.last})."
        )  # fmt: skip


async def _checked_form(web: WebApp, request: Request) -> dict[str, object]:
    """The form of a POST whose CSRF token matches its session's; 403 otherwise, 413 too big."""
    await bounded_body(request, MAX_FORM_BYTES, "form")
    form = dict(await request.form(max_files=0, max_fields=8))
    s = web.session(request)
    token = str(form.get("csrf", ""))
    if s is None or not token or not secrets.compare_digest(token, s.csrf):
        raise HTTPException(403, "The form's security token is missing or stale: reload the "
                            "page and try again.")  # fmt: skip
    return form


def _error_pages(app: FastAPI, web: WebApp) -> None:
    """Every error as a short page with its reason, JSON for the proof API; never a trace."""

    def page(request: Request, status: int, message: str) -> Response:
        if request.url.path.endswith(".json"):
            response = JSONResponse({"error": message}, status_code=status)
        else:
            response = web.render(request, "error.html", status, status=status, message=message)
        response.headers.update(HEADERS)  # a 500 is answered outside the headers middleware
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":  # the router's: no such route
            return page(request, 404, "There is no page at this address.")
        return page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        where = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return page(request, 400, f"Bad request: invalid {where}.")

    @app.exception_handler(GridctlError)
    async def unreadable(request: Request, exc: GridctlError) -> Response:
        # input is checked before the ledger is read: what is left is the ledger itself
        log.warning("web: %s: %s", request.url.path, exc)
        return page(request, 503, "The ledger cannot be read right now; the error is logged.")

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("web: %s failed", request.url.path)
        return page(request, 500, "Something went wrong on the server; it has been logged.")
