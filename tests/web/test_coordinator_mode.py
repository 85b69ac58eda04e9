"""`gridctl web CONFIG` over a running coordinator, as real processes: households' logins set
by `gridctl coordinator web-login`, the ledger read while the coordinator writes it, live
values from the retained MQTT state, the same authorization as over a simulation."""

from __future__ import annotations

import os
import stat
import time

import httpx

from gridctl.web.logins import LOGINS_FILE
from tests.web.community import HOMES, PASSWORDS, Community, community_fixture  # noqa: F401
from tests.web.helpers import login


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


def test_the_community_page_shows_the_coordinator_live(community: Community) -> None:
    deadline = time.monotonic() + 30
    while True:  # the coordinator settles an interval every 3 s and publishes its root
        snap = httpx.get(f"{community.base}/live.json").json()
        if snap["coordinator"] == "online" and snap["last_interval"] is not None:
            break
        assert time.monotonic() < deadline, snap
        time.sleep(0.2)
    assert snap["prices"]["community_per_kwh"] == 0.2 and snap["households_online"] == 0
    assert set(snap) == {"broker", "coordinator", "households_online", "last_interval",
                         "last_start", "last_root", "prices", "parameters", "scheduled"}  # fmt: skip
    page = httpx.get(f"{community.base}/")
    assert page.status_code == 200
    assert 'id="live-online">0<' in page.text and 'src="/static/live.js"' in page.text
    assert 'id="households">3<' in page.text
    for h in HOMES:  # no household figure, and no link to a household, on a public page
        assert f"/households/{h}" not in page.text
