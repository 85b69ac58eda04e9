"""Every page in a real Chromium: axe-core finds nothing serious or critical, the page fits a
390 px wide phone (no horizontal scrolling), and a screenshot of it at that width is kept in
``tests/artefacts/web/`` (git-ignored) to look at. And on a household's day page at that width,
a proof is checked in the page (proof-view.js) against the published root.

axe-core comes vendored in ``axe-playwright-python`` (nothing is fetched at test time); it is
injected with Playwright's ``evaluate``, which the page's CSP does not govern, so the app's own
policy stays as served. Sync tests: the browser fixtures drive Playwright's sync API.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import uvicorn

from gridctl.core import interval_start
from gridctl.web.app import create_app
from gridctl.web.auth import OPERATOR
from tests.web.a11y import PHONE, axe, check_page
from tests.web.conftest import RecordedPage
from tests.web.helpers import Site, sim_dir_fixture, site_fixture  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Route


@pytest.fixture(scope="module")
def origin(site: Site) -> Iterator[str]:
    """The app over the test run, served by uvicorn on a free port of 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(site.view, site.accounts), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _log_in(page: RecordedPage, origin: str, user: str, password: str) -> None:
    page.page.goto(f"{origin}/login")
    page.page.fill("#username", user)
    page.page.fill("#password", password)
    page.page.click("main button[type=submit]")
    page.page.wait_for_load_state()


@pytest.mark.slow
def test_public_pages(web_page: RecordedPage, origin: str) -> None:
    web_page.page.set_viewport_size(PHONE)
    pages = {
        "community": "/", "timeline-day": "/timeline", "timeline-week": "/timeline?span=week",
        "timeline-month": "/timeline?span=month", "open-data": "/open-data", "how": "/how",
        "login": "/login", "error-404": "/nope", "error-400": "/timeline?span=year",
        "error-401": "/households/h01",
    }  # fmt: skip
    bad = [f for name, path in pages.items() for f in check_page(web_page, origin, path, name)]
    assert not bad, "\n".join(bad)
    assert not web_page.foreign(origin), web_page.foreign(origin)
    assert not [e for e in web_page.errors if "status of 40" not in e], web_page.errors


@pytest.mark.slow
def test_logged_in_pages(web_page: RecordedPage, origin: str, site: Site) -> None:
    web_page.page.set_viewport_size(PHONE)
    day = interval_start(site.view.last).date()
    _log_in(web_page, origin, "h03", "wrong password")
    bad = check_page(web_page, origin, "", "login-wrong-password")
    assert re.search("Wrong user name or password", web_page.page.content())
    _log_in(web_page, origin, "h03", site.passwords["h03"])
    pages = {"household-month": "/households/h03", "household-day": f"/households/h03?day={day}",
             "error-403": "/households/h01"}  # fmt: skip
    bad += [f for name, path in pages.items() for f in check_page(web_page, origin, path, name)]
    web_page.page.context.clear_cookies()
    _log_in(web_page, origin, OPERATOR, site.passwords[OPERATOR])
    bad += check_page(web_page, origin, "/", "community-operator")
    assert not bad, "\n".join(bad)
    assert not web_page.foreign(origin), web_page.foreign(origin)


def test_axe_finds_what_it_should(web_page: RecordedPage, origin: str) -> None:
    """The check can fail: an image without a text alternative is a critical finding."""
    web_page.page.goto(f"{origin}/how")
    web_page.page.evaluate(
        "document.querySelector('main').append(Object.assign(document.createElement('img'),"
        " {src: '/static/favicon.svg'}))"
    )
    found = {v["id"]: v["impact"] for v in axe().run(web_page.page).response["violations"]}
    assert found.get("image-alt") == "critical", found


@pytest.mark.slow
def test_a_proof_is_checked_on_the_household_day_page(
    web_page: RecordedPage, origin: str, site: Site
) -> None:
    """The day page's "check" buttons run proof-view.js against the published root: the proof
    holds; with a root one hex digit off, the same proof fails."""
    web_page.page.set_viewport_size(PHONE)
    _log_in(web_page, origin, "h03", site.passwords["h03"])
    day = interval_start(site.view.last).date()
    web_page.page.goto(f"{origin}/households/h03?day={day}")
    buttons = web_page.page.get_by_role("button", name=re.compile("check the proof of"))
    assert buttons.count() == 8
    buttons.first.click()
    outcome = web_page.page.wait_for_selector(".proof-outcome", timeout=10_000)
    assert outcome is not None and outcome.inner_text().startswith("Proof holds"), (
        outcome and outcome.inner_text()
    )
    web_page.page.evaluate(
        "(() => { const b = document.querySelector('button[data-proof-root]');"
        " const r = b.dataset.proofRoot;"
        " b.dataset.proofRoot = (r[0] === '0' ? '1' : '0') + r.slice(1); })()"
    )
    buttons.first.click()
    web_page.page.wait_for_selector(".proof-fails", timeout=10_000)
    assert "Proof fails" in web_page.page.inner_text("#proof-out")

    # the right root again, but the proof as downloaded altered: one entry's amount raised by
    # one micro-unit (a household claiming more than the ledger booked) -> it fails
    def raised(route: Route) -> None:
        doc = route.fetch().json()
        doc["entries"][0]["entry"]["amount"] += 1
        route.fulfill(json=doc)

    web_page.page.goto(f"{origin}/households/h03?day={day}")
    web_page.page.route("**/proofs/*.json", raised)
    buttons.first.click()
    web_page.page.wait_for_selector(".proof-fails", timeout=10_000)
    assert "Proof fails" in web_page.page.inner_text("#proof-out")
    web_page.page.unroute("**/proofs/*.json")
    buttons.first.click()  # as served: holds again
    web_page.page.wait_for_selector(".proof-holds", timeout=10_000)
    assert not web_page.foreign(origin) and not web_page.errors, web_page.errors
