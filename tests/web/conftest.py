"""Browser fixtures: a real Chromium (Debian's ``chromium`` package) driven by Playwright.

Playwright's own browser download is not used (``playwright install`` is never run): it
launches the system Chromium by ``executable_path``. Without Chromium or Playwright the tests
skip locally and fail in CI (env var CI set; ``.ci/run`` installs both).

The browser is module-scoped and driven by Playwright's sync API, whose event loop counts as
running in the main thread while the browser is open: in a module that uses ``chromium`` or
``web_page``, write sync tests (run a coroutine in a thread of its own, e.g. the web server's);
an asyncio test there fails with "cannot be called from a running event loop". Other modules'
asyncio tests are unaffected (the browser closes when its module ends).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium launcher (package ``chromium``)."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless, and nothing Chromium would fetch on its own (updates, sync, field trials)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""The policy the static test server sends: no inline script, nothing from elsewhere."""


def _unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: required in CI (see .ci/run)")
    pytest.skip(reason)


def chromium_path() -> str:
    """Path of the system Chromium (skip locally, fail in CI without it)."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        _unavailable("Debian's chromium package is not installed (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless system Chromium, launched through Playwright's sync API."""
    exe = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class RecordedPage:
    """A page in a fresh browser context, with every request and error it made."""

    page: Page
    requests: list[str] = field(default_factory=list)
    """URL of every request of the context (pages, workers), in order."""
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions and console errors (CSP violations show here)."""

    def foreign(self, origin: str) -> list[str]:
        """The requests that did not go to ``origin`` (scheme://host:port)."""
        want = urlsplit(origin)
        return [
            u for u in self.requests
            if (urlsplit(u).scheme, urlsplit(u).netloc) != (want.scheme, want.netloc)
        ]  # fmt: skip


@pytest.fixture
def web_page(chromium: Browser) -> Iterator[RecordedPage]:
    """A page of its own context (no cookies or storage shared between tests)."""
    context = chromium.new_context(service_workers="block")
    page = context.new_page()
    rec = RecordedPage(page)
    context.on("request", lambda r: rec.requests.append(r.url))
    page.on("pageerror", lambda e: rec.errors.append(str(e)))

    def console(msg: Any) -> None:
        if msg.type == "error":
            rec.errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    page.on("console", console)
    try:
        yield rec
    finally:
        context.close()


class _Handler(SimpleHTTPRequestHandler):
    """Static files with the CSP and no caching; quiet."""

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_server() -> Iterator[Callable[[Path], str]]:
    """Serve a directory on a free port of 127.0.0.1 (a secure context, so WebCrypto works):
    ``serve(root)`` returns its origin ``http://127.0.0.1:PORT``; all stop with the module."""
    running: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def serve(root: Path) -> str:
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
