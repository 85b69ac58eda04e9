"""`gridctl web CONFIG` over a running community, every part a real process (Mosquitto,
`gridctl coordinator run`, `gridctl web`), seen with httpx and in a real Chromium: households'
logins set by `gridctl coordinator web-login`, live values within 2 s of the coordinator
publishing them and again after the web server restarts, a member's vote signed in the browser
and counted by the coordinator, a forged one refused."""

from __future__ import annotations

import json
import os
import stat
import time

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gridctl.controller.keys import load_key_file
from gridctl.core import interval_at, service_clock
from gridctl.governance.votes import sign_vote
from gridctl.protocol import coordinator_topic, household_topic
from gridctl.settlement.roots import RootMessage
from gridctl.web.logins import LOGINS_FILE
from tests.deployment import Watcher
from tests.web.a11y import PHONE, check_page
from tests.web.community import HOMES, PASSWORDS, Community, community_fixture  # noqa: F401
from tests.web.conftest import RecordedPage
from tests.web.helpers import login

pytestmark = pytest.mark.slow  # the community takes ~20 s to start (imports, on 2 cores)
LIVE_S = 2.0
"""A published value must show in the page within this, s (the issue's acceptance)."""


def _text(page: RecordedPage, selector: str) -> str:
    """The element's text now ("" when there is none; no waiting)."""
    return page.page.evaluate("s => document.querySelector(s)?.textContent.trim() ?? ''", selector)


def _wait_text(page: RecordedPage, element_id: str, want: str, timeout_s: float) -> float:
    """Wait until element ``element_id``'s text is ``want``; returns time.monotonic() then."""
    page.page.wait_for_function(
        "([id, want]) => document.getElementById(id)?.textContent.trim() === want",
        arg=[element_id, want], timeout=timeout_s * 1000, polling="raf",
    )  # fmt: skip
    return time.monotonic()


def _live_page(page: RecordedPage, base: str) -> None:
    """Open the community page and wait until its live values stream."""
    page.page.goto(f"{base}/")
    _wait_text(page, "live-state", "Live.", 10)


def _browser_login(page: RecordedPage, base: str, user: str, password: str) -> None:
    page.page.goto(f"{base}/login")
    page.page.fill("#username", user)
    page.page.fill("#password", password)
    page.page.click("main form button[type=submit]")
    page.page.wait_for_url(f"{base}/households/{user}")


def test_households_log_in_with_the_password_set_at_enrolment(community: Community) -> None:
    logins = community.top / LOGINS_FILE
    assert stat.S_IMODE(os.stat(logins).st_mode) == 0o600
    text = logins.read_text()
    assert all(f"{h}:$argon2id$" in text for h in HOMES)
    assert not any(pw in text for pw in PASSWORDS.values())  # hashes only
    with httpx.Client(base_url=community.base) as browser:
        assert browser.get("/households/h01").status_code == 401
        assert login(browser, "h01", "wrong-password").status_code == 401
        r = login(browser, "h01", PASSWORDS["h01"])
        assert r.status_code == 303 and r.headers["location"] == "/households/h01"
        page = browser.get("/households/h01")
        assert page.status_code == 200 and "Statement of h01" in page.text
        assert browser.get("/households/h02").status_code == 403
        assert browser.get("/households/h02/proofs/1.json").status_code == 403
        with browser.stream("GET", "/live", timeout=5) as stream:  # it never ends: read one
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 1000" and next(lines) == ""
            assert next(lines) == "event: community" and next(lines).startswith("data: {")


def test_the_live_json_holds_community_values_only(community: Community) -> None:
    deadline = time.monotonic() + 30
    while True:  # the coordinator settles an interval every 3 s and publishes its root
        snap = httpx.get(f"{community.base}/live.json").json()
        if snap["coordinator"] == "online" and snap["last_interval"] is not None:
            break
        assert time.monotonic() < deadline, snap
        time.sleep(0.2)
    assert snap["prices"]["community_per_kwh"] == 0.2 and snap["households_online"] == 0
    assert set(snap) == {"broker", "coordinator", "households_online", "last_interval",
                         "last_start", "last_root", "prices", "parameters", "scheduled", "plan",
                         "actual", "feeder"}  # fmt: skip
    assert snap["feeder"] is None  # this coordinator plans no feeder
    page = httpx.get(f"{community.base}/")
    assert page.status_code == 200 and 'src="/static/live.js"' in page.text
    assert 'id="households">3<' in page.text
    for h in HOMES:  # no household figure, and no link to a household, on a public page
        assert h not in page.text


def test_live_values_show_within_2_s_of_their_publication(
    community: Community, web_page: RecordedPage
) -> None:
    base = community.base
    _live_page(web_page, base)
    root_topic = coordinator_topic("oak", "root")
    watcher = Watcher(community.mqtt_port, "h03", community.users["h03"], [root_topic])
    latencies = []
    try:
        time.sleep(0.5)  # the retained root arrives first
        for _ in range(3):  # three roots as the coordinator publishes them
            root = watcher.next(root_topic, 15)
            t0 = time.monotonic()
            assert isinstance(root, RootMessage)
            t1 = _wait_text(web_page, "live-last-interval", str(root.interval), 5)
            assert _text(web_page, "#live-last-root") == root.root
            latencies.append(t1 - t0)
        # a household coming online (its retained status, a real publish as that household)
        with community.client("h02", "h02") as home:
            t0 = time.monotonic()
            home.publish(household_topic("oak", "h02", "status"), b"online", qos=1, retain=True)
            latencies.append(_wait_text(web_page, "live-online", "1", 5) - t0)
            home.publish(household_topic("oak", "h02", "status"), b"offline", qos=1,
                         retain=True).wait_for_publish(5)  # fmt: skip
            _wait_text(web_page, "live-online", "0", 5)
    finally:
        watcher.close()
    print(f"live latency, ms: {[round(1000 * s) for s in latencies]}")
    assert max(latencies) < LIVE_S, latencies
    assert web_page.foreign(base) == [] and web_page.errors == []


def test_a_member_votes_in_the_browser_and_the_coordinator_counts_it(
    community: Community, web_page: RecordedPage
) -> None:
    from gridctl.coordinator.gov_commands import propose

    now = interval_at(service_clock()())
    p = propose(community.config, "community_per_kwh", "0.25", "pay sharers more", "operator",
                200, 4, now)  # fmt: skip
    page, base = web_page.page, community.base
    bodies: list[str] = []
    page.on("request", lambda r: bodies.append(r.post_data or "") if r.method == "POST" else None)
    _browser_login(web_page, base, "h01", PASSWORDS["h01"])
    form = f"#proposal-{p.proposal} form.vote"
    deadline = time.monotonic() + 20
    while True:  # it opens at the next interval (3 s)
        page.goto(f"{base}/governance")
        if _text(web_page, f"#proposal-{p.proposal} .state") == "open":
            break
        assert time.monotonic() < deadline, page.content()
        time.sleep(0.5)

    # another household's key: refused, saying why
    page.set_input_files("#member-key", str(community.member_keys["h02"]))
    page.wait_for_function("document.getElementById('key-state').textContent.includes('loaded')")
    page.check(f"{form} input[value=no]")
    page.click(f"{form} button[type=submit]")
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent.startsWith('Not sent')",
        arg=f"{form} .vote-out",
    )  # fmt: skip
    assert "another household's member key" in _text(web_page, f"{form} .vote-out")

    # its own key: signed here, relayed, recorded, counted
    page.set_input_files("#member-key", str(community.member_keys["h01"]))
    page.wait_for_function("document.getElementById('key-state').textContent.includes('loaded')")
    page.check(f"{form} input[value=yes]")
    t0 = time.monotonic()
    page.click(f"{form} button[type=submit]")
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent.includes('on its way')",
        arg=f"{form} .vote-out",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # the coordinator records it when it settles the interval it arrived in
        page.goto(f"{base}/governance")
        if _text(web_page, f"#proposal-{p.proposal} td.yes") == "1":
            break
        assert time.monotonic() < deadline, page.content()
        time.sleep(0.5)
    print(f"vote counted on the page {time.monotonic() - t0:.1f} s after sending")
    mine = _text(web_page, f"#proposal-{p.proposal} ul.my-votes")
    assert "your vote yes" in mine and "recorded" in mine

    # the key never left the browser: no POST carried any of it
    key = load_key_file(community.member_keys["h01"])
    pem = community.member_keys["h01"].read_text()
    secrets = [
        key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex(),
        "".join(pem.splitlines()[1:-1]), "PRIVATE KEY",
    ]  # fmt: skip
    votes = [b for b in bodies if '"sig"' in b]
    assert len(votes) == 2 and all(s not in b for s in secrets for b in bodies)
    assert json.loads(votes[-1])["choice"] == "yes"

    # an altered vote (signed for "yes", sent as "no") is refused with a clear message
    csrf = page.get_attribute("#voting", "data-csrf")
    forged = sign_vote(key, "oak", p.proposal, "h01", "yes", 9).model_copy(update={"choice": "no"})
    r = page.request.post(f"{base}/governance/vote.json", data=forged.model_dump_json(),
                          headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})  # fmt: skip
    assert r.status == 400 and "signature does not hold" in r.json()["error"]
    r = page.request.post(f"{base}/governance/vote.json", data=forged.model_dump_json(),
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status == 403 and "security token" in r.json()["error"]

    # the governance pages (a member's, with its open proposal and vote form, and the public
    # one) and the live community page: nothing serious for axe, usable at 390 px
    page.set_viewport_size(PHONE)
    bad = check_page(web_page, base, "/governance", "governance-household")
    page.context.clear_cookies()
    bad += check_page(web_page, base, "/governance", "governance-public")
    bad += check_page(web_page, base, "/", "community-live")
    assert not bad, "\n".join(bad)
    assert web_page.foreign(base) == []


def test_the_page_recovers_after_the_web_server_restarts(
    community: Community, web_page: RecordedPage
) -> None:
    page, base = web_page.page, community.base
    _live_page(web_page, base)
    page.evaluate("window.notReloaded = true")
    community.stop_web()
    page.wait_for_function(
        "document.getElementById('live-state').textContent.startsWith('Reconnecting')"
    )
    before = int(_text(web_page, "#live-last-interval"))
    up_s = community.start_web()
    t_up = time.monotonic()
    page.wait_for_function(
        "n => Number(document.getElementById('live-last-interval').textContent) > n "
        "&& document.getElementById('live-state').textContent === 'Live.'",
        arg=before, timeout=15_000,
    )  # fmt: skip
    recovered_s = time.monotonic() - t_up
    print(f"web server up again in {up_s:.1f} s; page live again {recovered_s:.2f} s later")
    assert page.evaluate("window.notReloaded") is True  # no reload: the same page
    assert web_page.foreign(base) == []
