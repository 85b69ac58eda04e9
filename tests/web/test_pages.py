"""The web app's pages over a simulated run: public pages hold community figures only, a
household's statement equals the ledger's, proofs check against the published roots, every
response carries the security headers, and bad input gets a 4xx page."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from gridctl.core import MICRO, interval_start
from gridctl.settlement.statement import check_proof, statement
from gridctl.web.auth import OPERATOR
from gridctl.web.explain import case_line
from gridctl.web.household_page import PROOF_VIEW
from gridctl.web.run_view import RunView
from gridctl.web.security import CSP
from tests.web.helpers import Site, login, sim_dir_fixture, site_fixture  # noqa: F401

PUBLIC = ("/", "/how", "/open-data", "/open-data/aggregates.csv", "/open-data/roots.csv",
          "/open-data/datapackage.json", "/timeline", "/timeline?span=week",
          "/timeline?span=month")  # fmt: skip


def _ledger(site: Site, q: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{site.view.ledger}?mode=ro", uri=True)
    try:
        return db.execute(q).fetchall()
    finally:
        db.close()


def test_community_page_shows_the_ledger_summary(site: Site) -> None:
    page = site.client().get("/")
    assert page.status_code == 200
    [(n, last, root)] = _ledger(
        site, "SELECT COUNT(*), MAX(interval), (SELECT root FROM interval_roots "
        "ORDER BY interval DESC LIMIT 1) FROM interval_roots",
    )  # fmt: skip
    assert n == 8
    assert re.search(rf'id="households">{len(site.view.households)}<', page.text)
    assert f'id="settled">{n}<' in page.text
    assert f'id="last-root">{root}<' in page.text
    assert f">{last} (starting" in page.text
    kpis = json.loads((site.view.dir / "kpis.json").read_text())
    shared_wh = round(kpis["shared_kwh"] * 1000)
    shown = re.search(r'id="shared_wh">[^<]+</th><td>([\d.]+) kWh</td>', page.text)
    assert shown and float(shown.group(1)) == round(shared_wh / 1000, 1)


def test_public_pages_show_no_household_figure(site: Site) -> None:
    """No household id at all on a public page or open-data file (so none with a figure), and
    no household's own import total either."""
    client = site.client()
    own = {h: sum(r.import_wh or 0 for r in statement(site.view.ledger, h))
           for h in site.view.households}  # fmt: skip
    for url in PUBLIC:
        r = client.get(url)
        assert r.status_code == 200, url
        for h in site.view.households:
            assert not re.search(rf"\b{h}\b", r.text), (url, h)
        if url == "/":
            numbers = set(re.findall(r">(\d+)<", r.text))
            assert not numbers & {str(v) for v in own.values() if v > 100}, url
    assert "households.png" not in client.get("/").text
    assert client.get("/figures/households.png").status_code == 404
    assert client.get("/figures/voltage.png").headers["content-type"] == "image/png"


def test_open_data_is_the_ledger_aggregates(site: Site) -> None:
    client = site.client()
    rows = list(csv.DictReader(io.StringIO(client.get("/open-data/aggregates.csv").text)))
    assert len(rows) == 8
    [(shared,)] = _ledger(site, "SELECT SUM(shared_wh) FROM public_aggregates")
    assert sum(int(r["shared_wh"]) for r in rows) == shared
    assert client.get("/open-data/aggregates.parquet").content[:4] == b"PAR1"
    assert client.get("/open-data/ledger.sqlite").status_code == 404


def test_household_statement_equals_the_ledger(site: Site) -> None:
    client = site.client()
    assert login(client, "h03", site.passwords["h03"]).headers["location"] == "/households/h03"
    page = client.get("/households/h03")
    assert page.status_code == 200
    rows = statement(site.view.ledger, "h03")
    imported = sum(r.import_wh or 0 for r in rows)
    paid = sum(r.paid for r in rows) / MICRO
    day = interval_start(rows[0].interval).date()
    assert f"<td>{imported / 1000:.2f} kWh</td>" in page.text
    assert f"<td>{paid:.2f}</td>" in page.text
    assert f'href="/households/h03?day={day}"' in page.text
    assert "proofs/" not in page.text, "the month's page links its days, not every interval"
    page = client.get(f"/households/h03?day={day}")
    assert page.text.count('<a href="/households/h03/proofs/') == len(rows) == 8
    # the in-browser proof check is loaded as a module file when the app ships it, with one
    # button per interval carrying the proof's URL and the interval's published root
    shipped = PROOF_VIEW.is_file()
    module = '<script type="module" src="/static/proof-view.js"></script>'
    assert (module in page.text) == shipped
    buttons = re.findall(
        r'<button type="button" data-proof-url="([^"]+)" data-proof-root="([^"]+)"', page.text
    )
    roots = site.view.roots()
    assert buttons == (
        [(f"/households/h03/proofs/{r.interval}.json", roots[r.interval]) for r in rows]
        if shipped
        else []
    )
    assert "<script>" not in page.text  # no inline script (the CSP would block it)


def test_proof_download_checks_against_the_published_root(site: Site) -> None:
    client = site.client()
    login(client, "h02", site.passwords["h02"])
    iv = site.view.last
    r = client.get(f"/households/h02/proofs/{iv}.json")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="proof-h02-{iv}.json"'
    doc = r.json()
    published = site.client().get(f"/roots/{iv}.json").json()  # public, no login
    ok, why = check_proof(doc, published["root"])
    assert ok, why
    assert doc["entries"], "the household has entries in the interval"
    doc["entries"][0]["entry"]["amount"] += 1
    assert not check_proof(doc, published["root"])[0]


def test_every_response_has_the_security_headers(site: Site) -> None:
    client = site.client()
    for url in (*PUBLIC, "/login", "/nope", "/households/h01", "/households/x%20y",
                "/static/css/site.css", "/roots/1.json"):  # fmt: skip
        h = client.get(url).headers
        assert h["content-security-policy"] == CSP, url
        assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
        assert h["x-content-type-options"] == "nosniff", url
        assert h["referrer-policy"] == "no-referrer", url


def test_session_cookie_flags(site: Site) -> None:
    plain = site.client().get("/login").headers["set-cookie"].lower()
    assert "httponly" in plain and "samesite=strict" in plain and "secure" not in plain
    tls = site.client(base_url="https://testserver").get("/login").headers["set-cookie"]
    assert "secure" in tls.lower()


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/households/h99", 404, "no household h99"),
        ("/households/h01/proofs/7.json", 404, "not settled"),
        ("/households/h01/proofs/abc.json", 400, "invalid interval"),
        ("/households/h01/proofs/-3.json", 400, "invalid interval"),
        (f"/households/h01/proofs/{2**70}.json", 400, "invalid interval"),
        ("/households/%3Cscript%3E", 400, "invalid household"),
        ("/roots/99.json", 404, "not settled"),
        ("/open-data/../ledger.sqlite", 404, "no page at this address"),
        ("/figures/report.html", 404, "No figure"),
    ],
)
def test_bad_input_gets_a_clear_4xx(site: Site, url: str, status: int, says: str) -> None:
    client = site.client()
    login(client, OPERATOR, site.passwords[OPERATOR])
    r = client.get(url)
    assert r.status_code == status, r.text
    assert says in r.text
    assert "Traceback" not in r.text and "<script" not in r.text


def test_serving_leaves_the_ledger_untouched(site: Site) -> None:
    before = hashlib.sha256(site.view.ledger.read_bytes()).hexdigest()
    client = site.client()
    login(client, OPERATOR, site.passwords[OPERATOR])
    for url in (*PUBLIC, *(f"/households/{h}" for h in site.view.households),
                f"/households/h01/proofs/{site.view.last}.json", f"/roots/{site.view.first}.json"):  # fmt: skip
        assert client.get(url).status_code == 200, url
    assert hashlib.sha256(site.view.ledger.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("outcome", "deviation_w", "says"),
    [
        (
            "named",
            -1500.0,
            "did not accept your meter's reading (your meter's figure was 1.5 kW above",
        ),
        (
            "held",
            800.0,
            "held while the physics check cannot confirm your reading (your meter's figure was 0.8 kW below",
        ),
        ("held", None, "cannot confirm your reading; it is paid back"),
    ],
)
def test_a_case_in_plain_language(outcome: str, deviation_w: float | None, says: str) -> None:
    line = case_line(1_980_004, outcome, "physics", deviation_w)
    assert line.startswith("21 Jun 01:00 UTC: ")
    assert says in line


def test_an_unreadable_ledger_gets_a_503_without_a_trace(site: Site, tmp_path: Path) -> None:
    shutil.copytree(site.view.dir, tmp_path / "run")
    view = RunView(tmp_path / "run")
    client = Site(view, site.accounts, site.passwords).client()
    login(client, "h01", site.passwords["h01"])
    for f in (tmp_path / "run").glob("ledger.sqlite*"):
        f.write_bytes(b"not a database" * 100)
    for url in ("/", "/households/h01", f"/households/h01/proofs/{view.last}.json"):
        r = client.get(url)
        assert r.status_code == 503, url
        assert "cannot be read" in r.text and "Traceback" not in r.text and "sqlite" not in r.text
        assert r.headers["content-security-policy"] == CSP
