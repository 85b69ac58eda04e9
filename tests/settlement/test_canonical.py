"""The ledger's canonical bytes: made by one function, unchanged by the refactor that made it
one, and the same in append, verify, statements and inclusion proofs for any names."""

import ast
import hashlib
import itertools
import json
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.settlement import ledger as ledger_module
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.canonical import canonical
from gridctl.settlement.ledger import (
    GENESIS,
    Entry,
    Ledger,
    Posting,
    Transaction,
    interval_entries,
)
from gridctl.settlement.merkle import merkle_root
from gridctl.settlement.pool import TOKEN, household_account
from gridctl.settlement.registry import register_meter
from gridctl.settlement.signing import I64_MAX
from gridctl.settlement.statement import check_proof, inclusion_proof, statement
from tests.keys import COORDINATOR_KEY

METER_KEY = COORDINATOR_KEY.public_key().public_bytes_raw()
SETTLEMENT = Path(ledger_module.__file__).parent
ODD = ["household:h01", 'q"uote', "back\\slash", "Zürich-€", "tab\tnl\n", "x" * 300, "\u2028\x7f"]


def _reference(values: list[object]) -> bytes:
    """The audit format as documented, written independently of ``canonical``."""
    return json.dumps(values, separators=(",", ":")).encode()


def _recorded_bookings() -> list[Transaction]:
    """Plain and odd names, meters, reversals, two assets: booked before the encoder was one."""
    txs = []
    for iv in (10, 11):
        for k, name in enumerate([*ODD, "plain"]):
            names = [*ODD, "plain"]
            amount = (k + 1) * 1_000_003 * (-1) ** k
            kind = names[(k + 1) % 8] if k % 4 else "pool_payment"
            postings = (
                Posting(name, "currency", -amount),
                Posting("community:pool", "currency", amount),
                Posting(names[(k + 2) % 8], "token", 7 * k),
                Posting("token:issuance", "token", -7 * k),
            )
            meter = None if k % 2 else names[(k + 3) % 8]
            reverses = names[(k + 5) % 8] if k % 3 == 0 else None
            txs.append(Transaction(f"{iv}:{name}", iv, kind, postings, meter, reverses))
        for j in range(3):
            postings = (
                Posting(f"household:h{j}", "currency", -j - 1),
                Posting("community:pool", "currency", j + 1),
            )
            meter = f"m-{j}" if j else None
            txs.append(
                Transaction(
                    f"{iv}:p{j}", iv, "pool_payment", postings, meter, "r" if j == 2 else None
                )
            )
    return txs


def test_heads_roots_and_digests_are_those_recorded_before_the_refactor(tmp_path: Path) -> None:
    """Recorded with the five-encoder ledger of 5d05410 (its fast paths and slow path)."""
    db = tmp_path / "l.sqlite"
    txs = _recorded_bookings()
    with Ledger(db, COORDINATOR_KEY) as led:
        led.append(txs[:11])
        led.close_interval(10)
        led.append(txs[11:])
        roots = [led.close_interval(10), led.close_interval(11)]
        head = led.head
    con = sqlite3.connect(db)
    digests = "".join(d for (d,) in con.execute("SELECT digest FROM transactions ORDER BY rowid"))
    con.close()
    assert head == "b3a8fcfe71b34b117724126befd2b8bd799842a3addda51d7d5535e1d41a6755"
    assert roots == [
        "bee6ab52da62709e665211091a40880f4647c41dc40de670fa1d09ec7d536d6d",
        "19394862240a0d28bcdffcdffad8f6629651841dc86d09f93f781fabf34bc20c",
    ]
    assert hashlib.sha256(digests.encode()).hexdigest() == (
        "6d79b9a8d136a809cf2632da58f667a55357bc9fe0dbf2c76e76631ec770b26f"
    )
    # the auditor recomputes the same chain, head and roots: its first finding is the pool
    # (these bookings pay into it without paying out), checked after all of those
    problem = verify_ledger(db).problem
    assert problem is not None and problem.startswith("interval 10: the pool does not net")


def test_canonical_bytes_and_leaf_hashes_are_made_in_one_place() -> None:
    sources = {p.name: p.read_text() for p in SETTLEMENT.glob("*.py")}
    leaf_prefix = [n for n, s in sources.items() if re.search(r'b"\\x00" \+', s)]
    assert leaf_prefix == ["merkle.py"], leaf_prefix  # ``merkle.leaf_hash`` only
    # no hand-written JSON array of a posting or a transaction key
    assert not [n for n, s in sources.items() if re.search(r"""f'\[\{""", s)]
    # canonical.py is a leaf: the format depends on nothing else in settlement
    tree = ast.parse((SETTLEMENT / "canonical.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("gridctl")], imported


_HASHES = {"sha256", "sha512", "sha1", "md5", "blake2b", "blake2s", "new", "update", "sign"}
_ENCODERS = {
    "JSONEncoder", "c_make_encoder", "encode_basestring", "encode_basestring_ascii",
    "py_encode_basestring_ascii", "iterencode", "_make_iterencode", "_json_chunks",
}  # fmt: skip
_OTHER_JSON = {"orjson", "ujson", "simplejson", "rapidjson", "msgspec", "json.encoder"}
"""Other JSON encoders (``json.encoder``: the json module's own internals)."""


def _name(node: ast.AST) -> str | None:
    """The name a Name, Attribute or import alias stands for."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.name if isinstance(node, ast.alias) else None


def _dumps(node: ast.AST) -> bool:
    """A call that serialises to JSON: json.dumps / dump, a bare dumps, pydantic's dump."""
    return isinstance(node, ast.Call) and _name(node.func) in {
        "dumps", "dump", "model_dump_json", "to_json",
    }  # fmt: skip


def json_bypasses(source: str, settlement: bool) -> list[str]:
    """Every way ``source`` could make JSON beside ``canonical``: compact or sorted options,
    the json module's encoder internals, another JSON library, JSON bytes fed to a hash or a
    signature; in settlement, any JSON serialisation at all. ``line: what`` per finding."""
    out = []
    for node in ast.walk(ast.parse(source)):
        at = getattr(node, "lineno", 0)
        name = _name(node)
        if isinstance(node, ast.Constant) and node.value in ("sort_keys", "separators"):
            out.append(f"{at}: {node.value!r} spelled out")
        elif isinstance(node, ast.keyword) and node.arg in ("sort_keys", "separators"):
            out.append(f"{at}: {node.arg}=")
        elif name in _ENCODERS or name in _OTHER_JSON or (name or "").split(".")[0] in _OTHER_JSON:
            out.append(f"{at}: {name}")
        elif settlement and isinstance(node, ast.alias) and name in ("dumps", "dump"):
            out.append(f"{at}: imports json.{name}")
        elif isinstance(node, ast.ImportFrom) and node.module in _OTHER_JSON:
            out.append(f"{at}: imports {node.module}")
        elif settlement and _dumps(node):
            out.append(f"{at}: JSON serialised in settlement")
        elif (
            isinstance(node, ast.Call)
            and _name(node.func) in _HASHES
            and any(_dumps(n) for n in ast.walk(node) if n is not node)
        ):
            out.append(f"{at}: hashes or signs JSON")
    return sorted(set(out))


@pytest.mark.parametrize(
    ("source", "settlement"),
    [
        ('json.dumps(v, separators=(",", ":"))', False),
        ("json.dumps(v, sort_keys=True)", False),
        ('json.dumps(v, **{"sort_keys": True})', False),
        ("enc = json.JSONEncoder(ensure_ascii=True).encode", False),
        ("from json.encoder import c_make_encoder", False),
        ("from json import JSONEncoder as E", False),
        ("import orjson", False),
        ("import json.encoder", False),
        ("from gridctl.settlement.canonical import _json_chunks", False),
        ("h = hashlib.sha256(json.dumps(row).encode())", False),
        ("key.sign(json.dumps(doc).encode())", False),
        ("h.update(msg.model_dump_json().encode())", False),
        ("text = json.dumps(row)", True),
        ("from json import dumps as d", True),
    ],
)
def test_the_bypass_check_catches_each_way_around_canonical(source: str, settlement: bool) -> None:
    assert json_bypasses(source, settlement), source


def test_canonical_json_is_built_by_one_function() -> None:
    """Over all of gridctl: no JSON that is hashed, signed or sorted is made but by canonical()."""
    package = SETTLEMENT.parent
    found = {
        f"{p.relative_to(package.parent)}:{line}"
        for p in sorted(package.rglob("*.py"))
        if p != SETTLEMENT / "canonical.py"
        for line in json_bypasses(p.read_text(), p.parent == SETTLEMENT)
    }
    assert not found, sorted(found)
    # and canonical() is that function: its bytes are the documented format
    for v in ([1, 'q"\\é€😀', None, -(2**63)], {"b": [2, "x"], "a": [1, "y"]}, [(1, 2.5)]):
        assert canonical(v) == json.dumps(v, sort_keys=True, separators=(",", ":")).encode()


NAME = st.one_of(
    st.sampled_from(ODD),
    st.text(min_size=1, max_size=12),  # any code point but surrogates: non-ASCII, controls
    st.text(alphabet='"\\é€\u2028\x00 a😀🇪🇺', min_size=1, max_size=8),  # quotes, escapes, emoji
    st.text(min_size=200, max_size=400),
)
AMOUNT = st.integers(min_value=-I64_MAX, max_value=I64_MAX)  # micro-units, as SQLite stores them
_EXAMPLES = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # each example books into a directory of its own
    ],
)
@given(
    household=NAME,
    others=st.lists(NAME, min_size=1, max_size=3),
    tx_names=st.lists(NAME, min_size=1, max_size=4, unique=True),
    meter=st.one_of(st.none(), NAME),
    kind=NAME,
    amounts=st.lists(st.tuples(AMOUNT, AMOUNT), min_size=1, max_size=4),
)
def test_odd_names_agree_across_append_verify_statement_and_proofs(
    tmp_path: Path,
    household: str,
    others: list[str],
    tx_names: list[str],
    meter: str | None,
    kind: str,
    amounts: list[tuple[int, int]],
) -> None:
    """Any names and amounts: the ledger's chain and roots are the documented bytes, the
    auditor passes them, the statement sums the bookings and each proof commits to the
    canonical bytes of the stored entry."""
    account = household_account(household)
    iv = 7
    txs = []
    for k, tx_id in enumerate(tx_names):
        money, tokens = amounts[k % len(amounts)]
        other = others[k % len(others)]
        postings = (Posting(account, "currency", money), Posting(other, "currency", -money))
        if tokens:
            postings += (Posting(account, TOKEN, tokens), Posting(other, TOKEN, -tokens))
        subject = None if meter is None else f"{meter}{k}"
        txs.append(Transaction(tx_id, iv, f"{kind}{k}", postings, subject))
    d = tmp_path / str(next(_EXAMPLES))
    d.mkdir()
    db, other_db = d / "l.sqlite", d / "closed-by-another.sqlite"
    with Ledger(db, COORDINATOR_KEY) as led:
        register_meter(led, "m1", household, "main", 1000.0, METER_KEY, 0)
        assert led.append(txs) == len(txs)
        assert led.append(txs) == 0  # the digest of each is the one stored
        root = led.close_interval(iv)  # from the leaves hashed as they were written
        head = led.head
    with Ledger(other_db, COORDINATOR_KEY) as led:
        led.append(txs)
    with Ledger(other_db, COORDINATOR_KEY) as led:
        assert led.close_interval(iv) == root  # from the entries read back
    # append: chain and root equal an independent encoding of the documented format
    data, h = [], GENESIS
    for seq, (tx, p) in enumerate(((t, p) for t in txs for p in t.postings), 1):
        data.append(_reference([seq, tx.tx_id, iv, tx.kind, p.account, p.asset, p.amount]))
        h = hashlib.sha256(bytes.fromhex(h) + data[-1]).hexdigest()
    assert head == h and root == merkle_root(data).hex()
    con = sqlite3.connect(db)
    stored = interval_entries(con, iv)
    con.close()
    assert [canonical(e) for e in stored] == data
    # verify
    check = verify_ledger(db)
    assert check.ok, check.problem
    assert check.head == head and check.entries == len(data)
    # statement: what the household booked, currency and tokens
    mine = [p for tx in txs for p in tx.postings if p.account == account]
    (row,) = statement(db, household)
    assert row.interval == iv
    assert row.earned - row.paid + row.grid == sum(p.amount for p in mine if p.asset != TOKEN)
    assert row.tokens == sum(p.amount for p in mine if p.asset == TOKEN)
    # proofs: every leaf of the household, under the stored root, is a stored entry's bytes
    doc = json.loads(json.dumps(inclusion_proof(db, household, iv)))
    ok, line = check_proof(doc, root)
    assert ok, line
    proved = [canonical(Entry(**e["entry"])) for e in doc["entries"]]
    assert proved == [canonical(e) for e in stored if e.account == account]
    assert proved == [_reference(list(e["entry"].values())) for e in doc["entries"]]
