"""The governance page and the vote route over a ledger with members and a proposal (in
process, TestClient): who sees what, and every check a vote passes before it is relayed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gridctl.core import INTERVAL_S
from gridctl.settlement.enrol import enrol_simulated
from gridctl.transport.session import BrokerSettings
from gridctl.web.app import create_app
from gridctl.web.auth import HOUSEHOLD, OPERATOR, Accounts
from gridctl.web.coord_view import CoordinatorView
from gridctl.web.gov_routes import VOTES_PER_WINDOW
from gridctl.web.live import Live
from tests.governance.helpers import member_key, open_book, vote
from tests.web.helpers import csrf_of, login

HOMES = ["h01", "h02"]
NOW = 100


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    ledger, gov = open_book(path, HOMES)
    with ledger:
        enrol_simulated(ledger, HOMES, [17_250.0] * 2, 0, seed=1)
        gov.propose("community_per_kwh", 0.25, "pay sharers more", "h01", 10, 2, NOW - 5)
    return path


def _client(ledger: Path, live: bool = True) -> TestClient:
    accounts = Accounts()
    for h in HOMES:
        accounts.add(h, HOUSEHOLD, f"{h}-password")
    accounts.add(OPERATOR, OPERATOR, "operator-password")
    view = CoordinatorView(ledger, lambda: NOW * INTERVAL_S + 1.0)
    # a broker nobody listens on: every check runs, the relay then fails (503)
    broker = BrokerSettings(port=1, username="web", password="x")
    app = create_app(view, accounts, live=Live("oak", broker) if live else None)
    return TestClient(app, raise_server_exceptions=False)


def _post(
    client: TestClient, body: str, csrf: str | None, ctype: str = "application/json"
) -> httpx.Response:
    headers = {"Content-Type": ctype} | ({"X-CSRF-Token": csrf} if csrf else {})
    return client.post("/governance/vote.json", content=body, headers=headers)


def test_the_page_shows_proposals_and_only_a_households_own_votes(ledger: Path) -> None:
    public = _client(ledger).get("/governance")
    assert public.status_code == 200 and "Proposal 1: community_per_kwh" in public.text
    assert "pay sharers more" in public.text and "Log in</a> as your household" in public.text
    assert "Your vote key" not in public.text and "Weights by household" not in public.text
    with _client(ledger) as c:
        login(c, "h01", "h01-password")
        page = c.get("/governance").text
        assert 'id="voting" data-community="oak" data-household="h01"' in page
        assert 'src="/static/vote.js"' in page and 'form class="vote"' in page
    with _client(ledger) as c:
        login(c, OPERATOR, "operator-password")
        assert "Your vote key" not in c.get("/governance").text
    run = _client(ledger, live=False).get("/governance")
    assert run.status_code == 200 and "finished simulation" in run.text


def test_a_vote_passes_every_check_before_it_is_relayed(ledger: Path) -> None:
    good = vote("h01", 1, "yes").model_dump_json()
    anonymous = _client(ledger)
    r = _post(anonymous, good, None)
    assert r.status_code == 401 and "Log in" in r.json()["error"]
    with _client(ledger) as c:
        login(c, "h01", "h01-password")
        csrf = csrf_of(c.get("/governance").text)
        assert _post(c, good, None).status_code == 403
        assert _post(c, good, "wrong").status_code == 403
        assert _post(c, good, csrf, "application/x-www-form-urlencoded").status_code == 415
        assert _post(c, "x" * 4000, csrf).status_code == 413
        assert _post(c, "x" * 100_000, csrf).status_code == 413
        for length, status in (("2" + "0" * 19, 413), ("2048x", 400), ("1e308", 400)):
            r = c.post("/governance/vote.json", content=good, headers={
                "Content-Type": "application/json", "X-CSRF-Token": csrf,
                "Content-Length": length})  # fmt: skip
            assert r.status_code == status, (length, r.text)
            assert ("too large" if status == 413 else "not a number") in r.json()["error"]
        r = _post(c, '{"v": 1, "proposal": 1}', csrf)
        assert r.status_code == 400 and "malformed" in r.json()["error"]
        cases = {
            "other household than yours": vote("h02", 1, "yes"),
            "another household's member key": vote("h01", 1, "yes", key=member_key("h02")),
            "not an enrolled member key": vote("h01", 1, "yes", key=member_key("zz")),
            "no such proposal": vote("h01", 7, "yes"),
            "signature does not hold": vote("h01", 1, "yes").model_copy(update={"choice": "no"}),
        }
        for why, v in cases.items():
            r = _post(c, v.model_dump_json(), csrf)
            assert r.status_code == 400 and why in r.json()["error"], (why, r.text)
        r = _post(c, good, csrf)  # every check passed; no broker to relay it to
        assert r.status_code == 503 and "not sent" in r.json()["error"]
        for _ in range(VOTES_PER_WINDOW):
            r = _post(c, good, csrf)
        assert r.status_code == 429
    with _client(ledger) as c:
        login(c, OPERATOR, "operator-password")
        csrf = csrf_of(c.get("/governance").text)
        r = _post(c, good, csrf)
        assert r.status_code == 403 and "operator does not" in r.json()["error"]
    with _client(ledger, live=False) as c:
        login(c, "h01", "h01-password")
        csrf = csrf_of(c.get("/governance").text)
        assert _post(c, good, csrf).status_code == 404
        assert c.get("/live").status_code == 404
