"""``gridctl opendata export``: a week's package validates with frictionless, no figure covers
fewer than k households, a reader checks every row against its signed root from the files
alone, and the exported totals equal the KPIs of a simulation run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import frictionless
import pyarrow.parquet as pq
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gridctl.core import INTERVALS_PER_DAY
from gridctl.settlement.aggregates import COVERS, CommunityFigures, Figure
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig, Settler
from tests.keys import COORDINATOR_KEY

T0 = 1_980_000
HOMES = 8
WEEK = 7 * INTERVALS_PER_DAY
GRIDCTL = shutil.which("gridctl") or "gridctl"


def _gridctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRIDCTL, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={"COLUMNS": "200", **os.environ},
    )  # fmt: skip


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger of a week settled from 8 households' signed readings, with demand from all of
    them and PV from 3 (fewer than k = 5)."""
    path = tmp_path_factory.mktemp("week") / "ledger.sqlite"
    community = SyntheticCommunity(HOMES, T0, seed=11)
    with Ledger(path, COORDINATOR_KEY) as led:
        community.enrol(led)
        settler = Settler(led, SettlementConfig(0.20, 1.0))
        for iv in range(T0, T0 + WEEK):
            figures = CommunityFigures(
                demand_wh=Figure(2000 + (iv % 96) * 10, HOMES), pv_wh=Figure(700, 3)
            )
            settler.settle(iv, community.readings(iv), figures=figures)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _int(cell: str) -> int | None:
    return None if cell == "" else int(cell)


def _canonical(value: object) -> bytes:
    """The audit format's canonical JSON, as any reader can make it (not gridctl's code)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def reader_check(out: Path) -> list[int]:
    """Check every row of an export against its signed root from the files alone, as a reader
    would; returns the intervals whose row the root covers (a row without ``covered`` cannot be
    checked). Raises AssertionError for anything that does not hold."""
    package = json.loads((out / "datapackage.json").read_text())
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(package["coordinator_key"]))
    aggregates = {int(r["interval"]): r for r in _rows(out / "aggregates.csv")}
    checked, prev = [], "00" * 32
    for r in _rows(out / "roots.csv"):
        iv = int(r["interval"])
        raw = [bytes.fromhex(r[f]) for f in ("root", "head", "records", "prev")]
        payload = b"gridctl/root/v1" + struct.pack(">qQ32s32s32s32s", iv, int(r["size"]), *raw)
        key.verify(bytes.fromhex(r["sig"]), payload)  # InvalidSignature if not
        assert r["prev"] == prev, f"interval {iv}: root does not chain"
        prev = hashlib.sha256(payload).hexdigest()
        if r["covered"] == "":
            continue
        covered = json.loads(r["covered"])
        assert hashlib.sha256(_canonical(covered)).hexdigest() == r["records"]
        row = aggregates[iv]
        values = [_int(v) for name, v in row.items() if name != "start"]
        digest = hashlib.sha256(_canonical([[int(r["aggregates_rowid"]), *values]])).hexdigest()
        assert covered["public_aggregates"] == [int(r["aggregates_rowid"]), digest], iv
        checked.append(iv)
    return checked


def test_a_week_validates_against_its_datapackage(week: Path, tmp_path: Path) -> None:
    out = tmp_path / "od"
    proc = _gridctl("opendata", "export", str(week), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{WEEK} intervals" in proc.stdout and f"{WEEK} checkable" in proc.stdout
    report = frictionless.validate(out / "datapackage.json")
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:5]
    assert [t.stats["rows"] for t in report.tasks] == [WEEK, WEEK, WEEK]
    package = json.loads((out / "datapackage.json").read_text())
    assert package["licenses"][0]["name"] == "ODC-PDDL-1.0" and package["k"] == 5
    fields = {f["name"]: f for f in package["resources"][0]["schema"]["fields"]}
    assert fields["grid_import_wh"]["unit"] == "Wh" and fields["v_min_mv"]["unit"] == "mV"
    # the Parquet file holds the same table as the CSV
    csv_rows = _rows(out / "aggregates.csv")
    table = pq.read_table(out / "aggregates.parquet").to_pylist()
    assert len(table) == WEEK
    for c, p in zip(csv_rows, table, strict=True):
        assert p["start"].strftime("%Y-%m-%dT%H:%M:%SZ") == c["start"]
        assert all(p[n] == _int(c[n]) for n in c if n != "start")
    # the validator does check the figures: a negative energy and a missing count fail
    text = (out / "aggregates.csv").read_text().splitlines()
    cells = text[5].split(",")
    cells[4], cells[6] = "-5", ""  # grid_import_wh, grid_households
    (out / "aggregates.csv").write_text("\n".join([*text[:5], ",".join(cells), *text[6:]]) + "\n")
    bad = frictionless.validate(out / "datapackage.json")
    assert not bad.valid
    assert {e[0] for e in bad.flatten(["type"])} == {"constraint-error"}


def test_no_exported_row_covers_fewer_than_k_households(week: Path, tmp_path: Path) -> None:
    for k in (None, 3, 8, 9):
        out = tmp_path / f"k{k}"
        args = ["opendata", "export", str(week), "--out", str(out), "--json"]
        proc = _gridctl(*args, *(["--k", str(k)] if k else []))
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        rule = max(k or 5, 5)  # a smaller k than the ledger's cannot bring a figure back
        assert summary["k"] == rule
        rows = _rows(out / "aggregates.csv")
        for r in rows:
            for figure, count in COVERS.items():
                if r[figure] != "":
                    assert int(r[count]) >= rule, (r["interval"], figure, r[count])
            assert r["pv_wh"] == "" and r["pv_households"] == "3"  # 3 households with PV
        published = sum(r["grid_import_wh"] != "" for r in rows)
        assert published == (0 if rule > HOMES else WEEK)
        checked = reader_check(out)
        # a row the export withheld more of (k 9: the 8 households' figures) cannot be
        # checked, and its digest is not published
        assert len(checked) == summary["checkable"] == (0 if rule > HOMES else WEEK)


def test_a_reader_finds_a_changed_figure(week: Path, tmp_path: Path) -> None:
    out = tmp_path / "od"
    assert _gridctl("opendata", "export", str(week), "--out", str(out)).returncode == 0
    assert len(reader_check(out)) == WEEK
    path = out / "aggregates.csv"
    rows = _rows(path)
    rows[100]["demand_wh"] = str(int(rows[100]["demand_wh"]) + 1)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(AssertionError, match=str(T0 + 100)):
        reader_check(out)
    roots = (out / "roots.csv").read_text()
    sig = _rows(out / "roots.csv")[3]["sig"]
    (out / "roots.csv").write_text(
        roots.replace(sig, sig[:-2] + ("00" if sig[-2:] != "00" else "11"))
    )
    with pytest.raises(InvalidSignature):
        reader_check(out)


@pytest.mark.slow
def test_exported_totals_equal_the_kpis_of_the_run(tmp_path: Path) -> None:
    run = _gridctl("sim", "--intervals", "24", "--out", "run", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    kpis = json.loads(run.stdout)
    out = tmp_path / "od"
    assert _gridctl("opendata", "export", "run/ledger.sqlite", "--out", "od",
                    cwd=tmp_path).returncode == 0  # fmt: skip
    assert not frictionless.validate(out / "datapackage.json").flatten(["type"])
    rows = _rows(out / "aggregates.csv")
    assert len(rows) == kpis["intervals"] == 24

    def total_kwh(name: str) -> float:
        cells = [r[name] for r in rows]
        assert "" not in cells, name  # 14 households: nothing withheld
        return sum(map(int, cells)) / 1000

    # the transformer meter's whole Wh counters (floored) against the power flow's energy
    assert abs(total_kwh("grid_import_wh") - kpis["grid_import_kwh"]) <= 0.0015
    assert abs(total_kwh("grid_export_wh") - kpis["grid_export_kwh"]) <= 0.0015
    assert round(total_kwh("shared_wh"), 3) == kpis["shared_kwh"]
    # demand and PV from the devices' telemetry: whole W registers, each interval rounded to Wh
    assert abs(total_kwh("demand_wh") - kpis["demand_kwh"]) <= 0.001 * len(rows)
    assert abs(total_kwh("pv_wh") - kpis["pv_kwh"]) <= 0.001 * len(rows)
    assert {r["pv_households"] for r in rows} == {"9"}  # the scenario's 9 homes with PV
    # the meters' voltages lie within the run's bus voltages (they report their own bus)
    lo = min(int(r["v_min_mv"]) for r in rows) / 230_000
    hi = max(int(r["v_max_mv"]) for r in rows) / 230_000
    assert kpis["min_voltage_pu"] - 0.0001 <= lo <= hi <= kpis["max_voltage_pu"] + 0.0001
    assert all(r["curtailed_wh"] == "" for r in rows)  # no source reports curtailment yet
    assert len(reader_check(out)) == 24


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a database at all" * 100, "not a gridctl ledger"),
        (None, "no ledger at"),
        ("old", "schema version 5"),
    ],
    ids=["not-sqlite", "missing", "old-schema"],
)
def test_a_bad_ledger_exits_2_with_one_line(
    tmp_path: Path, content: bytes | str | None, needle: str
) -> None:
    path = tmp_path / "ledger.sqlite"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "old":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '5')")
        db.commit()
        db.close()
    proc = _gridctl("opendata", "export", str(path), "--out", str(tmp_path / "od"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "od").exists()
