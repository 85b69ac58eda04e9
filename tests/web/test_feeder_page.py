"""The feeder's one-line diagram on the community page of a simulated run: its figures are the
run's power flows (they match kpis.json), the public page withholds every figure covering fewer
than k households and names none, the operator sees every figure and who is where."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from gridctl.grid.drawing import shown
from gridctl.grid.record import GRID_FILE, read_drawing, read_state
from gridctl.web.auth import OPERATOR
from gridctl.web.run_view import RunView
from tests.web.helpers import Site, login, sim_dir_fixture, site_fixture  # noqa: F401


def test_grid_sqlite_holds_every_interval_of_the_run_as_its_kpis_say(site: Site) -> None:
    path = site.view.dir / GRID_FILE
    d, limits, _ = read_drawing(path)
    kpis = json.loads((site.view.dir / "kpis.json").read_text())
    assert (limits.v_min_pu, limits.v_max_pu, limits.k) == (
        kpis["voltage_band_min_pu"], kpis["voltage_band_max_pu"], 5)  # fmt: skip
    assert {h for h, _ in d.households} == set(site.view.households)
    states = [read_state(path, d, i) for i in range(site.view.first, site.view.last + 1)]
    assert all(s is not None and s[0] == "actual" for s in states)
    v = [x for s in states for x in s[1].v_upu]  # type: ignore[index]
    lines = [k for k, r in enumerate(d.branches) if r.kind == "line"]
    line_max = max(s[1].loading_ppm[k] for s in states for k in lines)  # type: ignore[index]
    trafo_max = max(s[1].loading_ppm[0] for s in states)  # type: ignore[index]
    assert round(min(v) / 1e6, 4) == kpis["min_voltage_pu"]
    assert round(max(v) / 1e6, 4) == kpis["max_voltage_pu"]
    assert round(line_max / 1e4, 2) == kpis["max_line_loading_pct"]
    assert round(trafo_max / 1e4, 2) == kpis["max_trafo_loading_pct"]


def _element(html: str, key: str) -> tuple[str, str]:
    """(class, title) of diagram element fd-KEY."""
    m = re.search(rf'id="fd-{key}" class="([^"]+)"[^>]*><title>([^<]*)</title>', html)
    assert m, key
    return m.group(1), m.group(2)


def test_public_diagram_withholds_small_groups_and_the_operator_sees_all(site: Site) -> None:
    path = site.view.dir / GRID_FILE
    d, limits, topology = read_drawing(path)
    found = read_state(path, d, site.view.last)
    assert found is not None
    s = found[1]
    public = site.client().get("/").text
    assert 'id="feeder-svg"' in public and 'role="img"' in public
    assert f'data-topology="{topology}"' in public and "viewBox=" in public
    assert f"As run in interval {site.view.last}" in public
    operator = site.client()
    login(operator, OPERATOR, site.passwords[OPERATOR])
    full = operator.get("/").text
    one_home = [k for k, r in enumerate(d.branches) if r.households == 1]
    assert one_home, "the default feeder has service lines feeding one home"
    bus_ok, branch_ok = shown(d, limits.k)
    assert not any(branch_ok[k] for k in one_home) and branch_ok[0]  # the transformer's shown
    # a line feeding k or more, withheld since subtracting it from another singles out fewer
    assert any(r.households >= limits.k and not ok
               for r, ok in zip(d.branches, branch_ok, strict=True))  # fmt: skip
    for k, ok in enumerate(branch_ok):
        pct = f"{s.loading_ppm[k] / 1e4:.1f} %"
        cls, title = _element(public, f"r{k}")
        if not ok:
            assert "withheld" in cls and "withheld" in title and pct not in title
            assert re.search(rf'id="fd-v-r{k}">withheld', public)
        else:
            assert "withheld" not in cls and title.endswith(pct)
        cls, title = _element(full, f"r{k}")
        assert "withheld" not in cls and title.endswith(pct)
        assert f'id="fd-v-r{k}">{pct}<' in full
    for k, ok in enumerate(bus_ok):
        v = f"{s.v_upu[k] / 1e6:.4f} p.u."
        assert (v in _element(public, f"b{k}")[1]) == ok
        assert v in _element(full, f"b{k}")[1]
    for h in site.view.households:  # names: the operator's table only
        assert not re.search(rf"\b{h}\b", public)
    at = {h: d.buses[b].name for h, b in d.households}
    for h, bus in at.items():
        row = re.search(rf"<th scope=\"row\">{re.escape(bus)}</th>.*?</tr>", full)
        assert row and re.search(rf"\b{h}\b", row.group(0)), (h, bus)


def test_the_timeline_day_shows_the_feeder_at_its_busiest_interval(site: Site) -> None:
    path = site.view.dir / GRID_FILE
    d, _, _ = read_drawing(path)
    loads = {i: s[1].loading_ppm[0] for i in range(site.view.first, site.view.last + 1)
             if (s := read_state(path, d, i)) is not None}  # fmt: skip
    top = max(loads, key=lambda i: (loads[i], -i))
    day = site.client().get("/timeline").text
    assert f"the day's busiest interval for the transformer, {top} (from " in day
    assert _element(day, "r0")[1].endswith(f"{loads[top] / 1e4:.1f} %")
    for h in site.view.households:
        assert not re.search(rf"\b{h}\b", day)
    assert 'id="feeder-svg"' not in site.client().get("/timeline?span=week").text


def test_a_missing_or_broken_grid_file_leaves_the_page_without_the_diagram(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(site.view.dir, tmp_path / "run")
    client = Site(RunView(tmp_path / "run"), site.accounts, site.passwords).client()
    grid = tmp_path / "run" / GRID_FILE
    with sqlite3.connect(grid) as db:  # a value beyond its stored width, edited by hand
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE bus_states SET v_upu = -5 WHERE pos = 0")
    r = client.get("/")
    assert r.status_code == 200 and 'id="feeder-svg"' not in r.text
    assert "bad state" in caplog.text
    grid.write_bytes(b"not a database" * 100)
    r = client.get("/timeline")
    assert r.status_code == 200 and 'id="feeder-svg"' not in r.text
    grid.unlink()  # a run from before grid.sqlite
    r = client.get("/")
    assert r.status_code == 200 and 'id="feeder-svg"' not in r.text
    assert "Our community" in r.text


def test_feeder_json_is_every_figure_for_the_operator_and_the_shown_ones_publicly(
    site: Site, tmp_path: Path
) -> None:
    path = site.view.dir / GRID_FILE
    d, limits, topology = read_drawing(path)
    found = read_state(path, d)
    assert found is not None
    kind, s = found
    bus_ok, branch_ok = shown(d, limits.k)
    public = site.client().get("/feeder.json")
    assert public.status_code == 200 and public.headers["cache-control"] == "no-store"
    assert public.json() == {
        "interval": s.interval, "kind": kind, "topology": topology,
        "v_upu": [v if ok else None for v, ok in zip(s.v_upu, bus_ok, strict=True)],
        "loading_ppm": [x if ok else None
                        for x, ok in zip(s.loading_ppm, branch_ok, strict=True)],
    }  # fmt: skip
    assert None in public.json()["loading_ppm"]
    operator = site.client()
    login(operator, OPERATOR, site.passwords[OPERATOR])
    full = operator.get("/feeder.json").json()
    assert full["v_upu"] == s.v_upu and full["loading_ppm"] == s.loading_ppm
    shutil.copytree(site.view.dir, tmp_path / "run")
    (tmp_path / "run" / GRID_FILE).unlink()
    r = Site(RunView(tmp_path / "run"), site.accounts, site.passwords).client().get("/feeder.json")
    assert r.status_code == 404 and "No feeder state" in r.json()["error"]
