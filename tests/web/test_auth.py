"""Who may see what: all pairs of 5 households with and without a session, CSRF on every form,
the login lock after 20 wrong passwords (per household and per client), sessions."""

from __future__ import annotations

import itertools

from gridctl.core import interval_start
from gridctl.web.auth import OPERATOR, LoginLimiter
from gridctl.web.security import COOKIE
from tests.web.helpers import Site, csrf_of, login, sim_dir_fixture, site_fixture  # noqa: F401

FIVE = ("h01", "h02", "h03", "h04", "h05")


def _urls(site: Site, household: str) -> list[str]:
    """Every URL that shows something of ``household``, in the spellings a router might take."""
    iv = site.view.last
    day = interval_start(iv).date()
    return [
        f"/households/{household}",
        f"/households/{household}?day={day}",
        f"/households/{household}?month={day:%Y-%m}",
        f"/households/{household}/",
        f"/households/{household}?household=h01",
        f"/households/{household}/live",
        f"/households/{household}/proofs/{iv}.json",
        f"/households/{household}/proofs/{site.view.first}.json",
        f"/households/{household.upper()}",
        f"/households/%{ord(household[0]):02x}{household[1:]}",
    ]


def test_no_household_reads_another_by_any_url(site: Site) -> None:
    anonymous = site.client()
    clients = {h: site.client() for h in FIVE}
    for h, c in clients.items():
        assert login(c, h, site.passwords[h]).status_code == 303
        assert c.get(f"/households/{h}").status_code == 200
        assert c.get(f"/households/{h}/proofs/{site.view.last}.json").status_code == 200
    checked = 0
    for a, b in itertools.permutations(FIVE, 2):
        for url in _urls(site, b):
            mine = clients[a].get(url, follow_redirects=True)
            anon = anonymous.get(url, follow_redirects=True)
            assert mine.status_code == 403, (a, url, mine.status_code)
            assert anon.status_code == 401, (url, anon.status_code)
            for r in (mine, anon):
                assert f"Statement of {b}" not in r.text and '"entries"' not in r.text
            checked += 1
    assert checked == 20 * 10


def test_operator_reads_every_household(site: Site) -> None:
    client = site.client()
    assert login(client, OPERATOR, site.passwords[OPERATOR]).headers["location"] == "/"
    assert all(f'href="/households/{h}"' in client.get("/").text for h in FIVE)
    for h in FIVE:
        assert f"Statement of {h}" in client.get(f"/households/{h}").text
        assert client.get(f"/households/{h}/proofs/{site.view.last}.json").json()["household"] == h


def test_forms_without_the_csrf_token_are_refused(site: Site) -> None:
    client = site.client()
    token = csrf_of(client.get("/login").text)
    for data in ({}, {"csrf": ""}, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        r = client.post(
            "/login", data={"username": "h01", "password": site.passwords["h01"], **data}
        )
        assert r.status_code == 403 and "security token" in r.text
    # a token from another browser's session does not do either
    other = csrf_of(site.client().get("/login").text)
    r = client.post(
        "/login", data={"username": "h01", "password": site.passwords["h01"], "csrf": other}
    )
    assert r.status_code == 403
    assert client.get("/households/h01").status_code == 401
    assert login(client, "h01", site.passwords["h01"]).status_code == 303
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/households/h01").status_code == 200  # still logged in
    token = csrf_of(client.get("/households/h01").text)
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert client.get("/households/h01").status_code == 401


def test_login_gets_a_new_session_and_logout_ends_it(site: Site) -> None:
    client = site.client()
    client.get("/login")
    before = client.cookies[COOKIE]
    login(client, "h04", site.passwords["h04"])
    after = client.cookies[COOKIE]
    assert after != before
    token = csrf_of(client.get("/households/h04").text)
    client.post("/logout", data={"csrf": token})
    stolen = site.client()
    stolen.cookies.set(COOKIE, after)
    assert stolen.get("/households/h04").status_code == 401


class Clock:
    """A hand-moved monotonic clock, s."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_twenty_wrong_passwords_lock_the_household(site: Site) -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    attacker = site.client(limiter, client=("10.0.0.1", 1000))
    for n in range(20):
        r = login(attacker, "h01", f"wrong{n}")
        assert r.status_code == 401, n
    right = site.passwords["h01"]
    assert login(attacker, "h01", right).status_code == 429
    # from another client too: the household's login is locked, another household's is not
    owner = site.client(limiter, client=("10.0.0.2", 1000))
    r = login(owner, "h01", right)
    assert r.status_code == 429 and "locked" in r.text
    assert login(owner, "h02", site.passwords["h02"]).status_code == 303
    clock.t += limiter.lock_s + 1
    assert login(owner, "h01", right).status_code == 303


def test_twenty_wrong_passwords_lock_the_client(site: Site) -> None:
    limiter = LoginLimiter()
    attacker = site.client(limiter, client=("10.0.0.3", 1000))
    for n in range(20):
        assert login(attacker, f"x{n}", "guess").status_code == 401
    assert login(attacker, "h05", site.passwords["h05"]).status_code == 429
    other = site.client(limiter, client=("10.0.0.4", 1000))
    assert login(other, "h05", site.passwords["h05"]).status_code == 303
