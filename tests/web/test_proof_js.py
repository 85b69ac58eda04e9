"""proof.js in a real Chromium: a proof exported by `gridctl ledger proof` from a simulated
ledger holds, and fails once one hex digit of it is altered; the Certificate Transparency
vectors and gridctl's canonical bytes agree with the Python side."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gridctl.settlement.canonical import canonical
from gridctl.settlement.ledger import Entry
from gridctl.settlement.merkle import inclusion_path, leaf_hash
from gridctl.settlement.signing import I64_MAX
from gridctl.settlement.statement import check_proof
from gridctl.sim.engine import simulate
from gridctl.sim.run import with_overrides
from gridctl.sim.scenario import load_scenario
from tests.settlement.test_canonical import ODD
from tests.settlement.test_merkle import CT_EMPTY, CT_INPUTS, CT_PATHS, CT_ROOTS
from tests.web.conftest import CSP, RecordedPage

pytestmark = pytest.mark.slow  # the module's simulated ledger takes 12–18 s to make

STATIC = Path(__file__).parents[2] / "gridctl" / "web" / "static"
HARNESS = Path(__file__).parent / "harness"


@dataclass(frozen=True)
class Site:
    """The static test site: proof.js, the harness page and a real proof."""

    origin: str
    www: Path
    proof_text: str
    root: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, static_server: Callable[[Path], str]) -> Site:
    """Simulate 4 intervals, export with `gridctl ledger proof` the proof of the household
    with the most entries in the second interval, serve it beside proof.js."""
    work = tmp_path_factory.mktemp("proof_site")
    db = work / "ledger.sqlite"
    simulate(with_overrides(load_scenario(None), None, 4, None), db)
    con = sqlite3.connect(db)
    (interval, root), *_ = con.execute(
        "SELECT interval, root FROM interval_roots ORDER BY interval LIMIT 1 OFFSET 1"
    ).fetchall()
    (account,) = con.execute(
        "SELECT account FROM entries WHERE interval = ? AND account LIKE 'household:%' "
        "GROUP BY account ORDER BY count(*) DESC, account LIMIT 1",
        (interval,),
    ).fetchone()
    con.close()
    www = work / "www"
    shutil.copytree(HARNESS, www)
    for asset in ("proof.js", "proof-view.js", "proof.css"):
        shutil.copy(STATIC / asset, www)
    gridctl = shutil.which("gridctl") or "gridctl"
    household = account.removeprefix("household:")
    proc = subprocess.run(
        [gridctl, "ledger", "proof", str(db), household, str(interval), "--out", str(www / "proof.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return Site(static_server(www), www, (www / "proof.json").read_text(), root)


def _open(web_page: RecordedPage, site: Site, query: str = "") -> None:
    web_page.page.goto(f"{site.origin}/index.html{query}")
    web_page.page.wait_for_selector("body[data-ready='1']", timeout=10_000)


def _verify(web_page: RecordedPage, text: str, root: str | None) -> dict:
    return web_page.page.evaluate(
        "([text, root]) => window.gridctlProof.verifyProof(text, root)", [text, root]
    )


def _flip(text: str, start: int) -> str:
    """``text`` with the hex digit at ``start`` changed."""
    digit = text[start]
    return text[:start] + ("1" if digit == "0" else "0") + text[start + 1 :]


def _altered(text: str) -> dict[str, str]:
    """The proof with one thing changed: a sibling hash, the leaf, the root, index, size."""
    doc = json.loads(text)
    first, last = doc["entries"][0]["path"][0], doc["entries"][-1]["path"][-1]
    amount = re.search(r'"amount": (-?\d+)', text)
    index = re.search(r'"leaf_index": (\d+)', text)
    assert amount and index
    return {
        "first sibling": _flip(text, text.index(first) + 5),
        "last sibling": _flip(text, text.index(last) + 63),
        "leaf amount": _flip(text, amount.end(1) - 1),
        "leaf tx_id": text.replace(doc["entries"][0]["entry"]["tx_id"], doc["entries"][0]["entry"]["tx_id"] + "x", 1),
        "root": _flip(text, text.index(doc["root"]) + 31),
        "leaf index": text[: index.start(1)] + str(int(index[1]) ^ 1) + text[index.end(1) :],
        "tree size": text.replace(f'"tree_size": {doc["tree_size"]}', f'"tree_size": {doc["tree_size"] + 1}'),
    }  # fmt: skip


def _check_in_page(
    web_page: RecordedPage, site: Site, proof: str, origin: str | None = None
) -> tuple[str, list[str]]:
    """Open the page for ``proof``, click its button: the outcome line and the steps shown."""
    web_page.page.goto(f"{origin or site.origin}/index.html?proof={proof}&root={site.root}")
    web_page.page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    web_page.page.get_by_role("button", name="Check the proof").click()
    outcome = web_page.page.wait_for_selector(".proof-outcome", timeout=10_000)
    assert outcome is not None
    return outcome.text_content() or "", web_page.page.locator(
        ".proof-steps li"
    ).all_text_contents()


def test_a_real_proof_holds_in_the_page_and_its_steps_are_gridctls(
    web_page: RecordedPage, site: Site
) -> None:
    web_page.page.set_viewport_size({"width": 390, "height": 844})
    doc = json.loads(site.proof_text)
    ok, line = check_proof(doc, site.root)
    assert ok
    outcome, steps = _check_in_page(web_page, site, "proof.json")
    assert outcome == f"Proof holds: {line}"
    # the page lists every step: the root, then each entry's leaf, path nodes and comparison
    assert len(steps) == 1 + sum(2 + len(e["path"]) for e in doc["entries"])
    assert (
        steps[0] == f"Root in the proof: {site.root}; root the coordinator published: {site.root}"
    )
    assert steps[-1] == f"Reached {site.root}: equals the root {site.root}"
    # on a phone's width every hash wraps: nothing scrolls sideways
    assert web_page.page.evaluate("document.documentElement.scrollWidth") <= 390
    web_page.page.screenshot(path=site.www.parent / "proof-390px.png", full_page=True)
    got = _verify(web_page, site.proof_text, site.root)
    assert got["ok"] and len(got["steps"]) == len(steps)
    leaves = [s for s in got["steps"] if s["op"] == "leaf"]
    assert [s["hash"] for s in leaves] == [
        leaf_hash(canonical(Entry(**e["entry"]))).hex() for e in doc["entries"]
    ]
    assert [s["data"] for s in leaves] == [
        canonical(Entry(**e["entry"])).decode() for e in doc["entries"]
    ]
    compares = [s for s in got["steps"] if s["op"] == "compare"]
    assert [s["got"] for s in compares] == [site.root] * len(doc["entries"])
    # each node step hashes its left and right: the next step's input is this one's output
    nodes = [s for s in got["steps"] if s["op"] == "node"]
    assert nodes and all(
        s["hash"] in (n["left"], n["right"])
        for s, n in itertools.pairwise(nodes)
        if n["entry"] == s["entry"]
    )
    assert web_page.foreign(site.origin) == []
    paths = sorted(urlsplit(u).path for u in web_page.requests)
    assert paths == [
        "/harness.js", "/icon.svg", "/index.html", "/proof-view.js", "/proof.css", "/proof.js", "/proof.json"
    ]  # fmt: skip
    assert web_page.errors == []


def test_the_page_shows_an_altered_proof_fail(web_page: RecordedPage, site: Site) -> None:
    """The proof the page downloads with one sibling digit changed: it fails, saying where."""
    text = _altered(site.proof_text)["first sibling"]
    (site.www / "altered.json").write_text(text)
    outcome, steps = _check_in_page(web_page, site, "altered.json")
    assert outcome == f"Proof fails: {check_proof(json.loads(text), site.root)[1]}"
    assert steps[-1].startswith("Reached ") and "does not equal the root" in steps[-1]
    outcome, _ = _check_in_page(web_page, site, "missing.json")
    assert outcome == "Proof fails: the server answered 404 for the proof"
    assert web_page.foreign(site.origin) == []


def test_the_proof_fails_after_one_hex_digit_is_altered(web_page: RecordedPage, site: Site) -> None:
    _open(web_page, site)
    assert _verify(web_page, site.proof_text, None)["ok"]
    for what, text in _altered(site.proof_text).items():
        assert text != site.proof_text, what
        py_ok, py_line = check_proof(json.loads(text), site.root)
        got = _verify(web_page, text, site.root)
        assert not py_ok and not got["ok"], what
        assert got["message"] == py_line, what
        # without the published root too: the path no longer reaches the proof's root
        assert not _verify(web_page, text, None)["ok"], what
    # gridctl's command line agrees, on the exported file and on an altered copy
    for what, text, code in [
        ("exported", site.proof_text, 0),
        ("first sibling", _altered(site.proof_text)["first sibling"], 1),
    ]:
        path = site.www.parent / f"{what}.json"
        path.write_text(text)
        proc = subprocess.run(
            [
                shutil.which("gridctl") or "gridctl",
                "ledger",
                "check-proof",
                str(path),
                "--root",
                site.root,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "400"},
        )
        assert proc.returncode == code, proc.stderr
        assert _verify(web_page, text, site.root)["message"] in proc.stdout + proc.stderr, what
    # the published root itself must match, whatever the proof says
    other = _flip(site.root, 0)
    assert not _verify(web_page, site.proof_text, other)["ok"]
    assert _verify(web_page, site.proof_text, site.root.upper())["ok"]
    assert web_page.foreign(site.origin) == [] and web_page.errors == []


def test_malformed_proofs_fail_with_a_reason(web_page: RecordedPage, site: Site) -> None:
    _open(web_page, site)
    doc = json.loads(site.proof_text)
    entry = doc["entries"][0]
    cases = {
        "not json": "{",
        "a list": "[]",
        "no entries": json.dumps({k: v for k, v in doc.items() if k != "entries"}),
        "version 2": json.dumps({**doc, "version": 2}),
        "short sibling": json.dumps({**doc, "entries": [{**entry, "path": [entry["path"][0][:-1]]}]}),
        "float amount": json.dumps({**doc, "entries": [{**entry, "entry": {**entry["entry"], "amount": 1.5}}]}),
        "other household": json.dumps({**doc, "household": "zz"}),
        "index past the end": json.dumps({**doc, "entries": [{**entry, "leaf_index": doc["tree_size"]}]}),
        "padded path": json.dumps({**doc, "entries": [{**entry, "path": [*entry["path"], doc["root"]]}]}),
    }  # fmt: skip
    for what, text in cases.items():
        got = _verify(web_page, text, None)
        assert not got["ok"] and got["message"], what
    assert "malformed" in _verify(web_page, cases["short sibling"], None)["message"]
    assert "version" in _verify(web_page, cases["version 2"], None)["message"]
    assert web_page.errors == []


def test_without_a_secure_context_the_page_says_why(web_page: RecordedPage, site: Site) -> None:
    """Plain http on a name other than localhost has no WebCrypto: the check fails, saying so."""
    origin = "http://community.test"
    web_page.page.route(
        f"{origin}/**",
        lambda route: route.fulfill(
            path=site.www / urlsplit(route.request.url).path.lstrip("/"),
            headers={"Content-Security-Policy": CSP},
        ),
    )
    outcome, steps = _check_in_page(web_page, site, "proof.json", origin)
    assert web_page.page.evaluate("window.isSecureContext") is False
    assert (
        outcome
        == "Proof fails: WebCrypto is unavailable: open this page over https (or on localhost)"
    )
    assert steps == []
    assert web_page.foreign(origin) == [] and web_page.errors == []


CT_CHECK = """async ({inputs, roots, empty, vectors, generated}) => {
  const p = window.gridctlProof;
  const leaves = await Promise.all(inputs.map((x) => p.leafHash(p.fromHex(x))));
  const rootOf = async (i, n, leaf, path) => {
    const r = await p.rootFromPath(i, n, leaf, path);
    return r === null ? null : p.toHex(r);
  };
  const out = {vectors: [], wrong: [], generated: []};
  for (const [leaf, size, path] of vectors) {
    const i = leaf - 1, root = roots[size - 1], h = leaves[i];
    out.vectors.push(await rootOf(i, size, h, path) === root);
    const wrongLeaf = await p.leafHash(new TextEncoder().encode("WrongLeaf"));
    for (const [j, n, l, pa] of [[i + 1, size, h, path], [i, size * 2, h, path],
        [i, size, wrongLeaf, path], [i, size, h, path.slice(0, -1)], [i, size, h, [...path, root]]]) {
      out.wrong.push(await rootOf(j, n, l, pa) === root);
    }
    out.wrong.push(await rootOf(i, size, h, path) === empty);
  }
  for (const [i, size, path] of generated) {
    out.generated.push(await rootOf(i, size, leaves[i], path) === roots[size - 1]);
  }
  return out;
}"""


def test_certificate_transparency_vectors_in_the_browser(
    web_page: RecordedPage, site: Site
) -> None:
    """The CT reference paths, and gridctl's paths of every leaf of every CT tree (1–8)."""
    _open(web_page, site)
    data = [bytes.fromhex(x) for x in CT_INPUTS]
    generated = [
        [i, n, [h.hex() for h in inclusion_path([leaf_hash(d) for d in data[:n]], i)]]
        for n in range(1, len(data) + 1)
        for i in range(n)
    ]
    got = web_page.page.evaluate(CT_CHECK, {
        "inputs": CT_INPUTS, "roots": CT_ROOTS, "empty": CT_EMPTY,
        "vectors": [list(v) for v in CT_PATHS], "generated": generated,
    })  # fmt: skip
    assert got["vectors"] == [True] * len(CT_PATHS) == [True] * 4
    assert got["wrong"] == [False] * 6 * len(CT_PATHS)
    assert got["generated"] == [True] * len(generated) == [True] * 36
    assert web_page.foreign(site.origin) == [] and web_page.errors == []


def test_canonical_entries_are_gridctls_bytes(web_page: RecordedPage, site: Site) -> None:
    """Odd names (quotes, controls, non-ASCII, U+2028, DEL, beyond the BMP) and integers beyond
    2^53 hash the same in the browser as in gridctl."""
    _open(web_page, site)
    names = [*ODD, "\U0001d11e clef", "\x00\x1f\x80é", "/<script>"]
    ints = [0, -1, 2**53 + 1, I64_MAX, -I64_MAX - 1]
    entries = [
        Entry(ints[k % len(ints)], names[k], ints[(k + 1) % len(ints)], names[(k + 1) % len(names)],
              names[(k + 2) % len(names)], names[(k + 3) % len(names)], ints[(k + 2) % len(ints)])
        for k in range(len(names))
    ]  # fmt: skip
    texts = [json.dumps(e._asdict(), ensure_ascii=k % 2 == 0) for k, e in enumerate(entries)]
    got = web_page.page.evaluate(
        """async (texts) => {
          const p = window.gridctlProof;
          return Promise.all(texts.map(async (t) => {
            const data = p.canonicalEntry(p.parseProof(t));
            return [data, p.toHex(await p.leafHash(new TextEncoder().encode(data)))];
          }));
        }""",
        texts,
    )
    assert got == [[canonical(e).decode(), leaf_hash(canonical(e)).hex()] for e in entries]
    assert web_page.errors == []
