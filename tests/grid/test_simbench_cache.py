"""The disk cache of SimBench networks: a cached network is the network SimBench builds, a
damaged entry is rebuilt, and a cache that cannot be written costs only the time."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pandapower as pp
import pandas as pd
import pytest

from gridctl.grid import simbench_cache
from gridctl.grid.feeder import _read_simbench
from gridctl.grid.simbench_cache import NET_FILE, cached_net, entry_dir

CODE = "1-LV-rural1--0-sw"


class Builds:
    """A build function that counts its calls: SimBench's own reader, or (``small``) a small
    pandapower network with a profile table, for the cache's mechanics."""

    def __init__(self, small: bool = True) -> None:
        self.calls, self.small = 0, small

    def __call__(self, code: str) -> pp.pandapowerNet:
        self.calls += 1
        if not self.small:
            return _read_simbench(code)
        net = pp.networks.simple_four_bus_system()
        net["profiles"] = {"load": pd.DataFrame({"H0-A_pload": [0.1, 0.25, 0.5]})}
        return net


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables, a missing value (None or NaN) equal to any other."""
    pd.testing.assert_frame_equal(
        a.astype(object).where(a.notna(), "-"), b.astype(object).where(b.notna(), "-")
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRIDCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_cached_network_is_the_network_simbench_builds(cache: Path) -> None:
    build = Builds(small=False)
    fresh = cached_net(CODE, build)
    entry = entry_dir(CODE)
    assert build.calls == 1 and (entry / NET_FILE).is_file()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    cached = cached_net(CODE, build)
    assert build.calls == 1  # read from disk, not built again
    assert set(cached.profiles) == set(fresh.profiles) >= {"load", "renewables"}
    for name, table in fresh.profiles.items():
        pd.testing.assert_frame_equal(cached.profiles[name], table)
    for table in ("bus", "line", "trafo", "load", "sgen", "ext_grid"):
        _same(cached[table], fresh[table])
    pp.runpp(fresh)
    pp.runpp(cached)
    pd.testing.assert_frame_equal(cached.res_bus, fresh.res_bus, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(cached.res_line, fresh.res_line, rtol=0, atol=1e-12)


def test_a_damaged_entry_is_rebuilt(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    build = Builds()
    cached_net(CODE, build)
    (entry_dir(CODE) / NET_FILE).write_text('{"not": "a network"')
    with caplog.at_level(logging.WARNING, logger=simbench_cache.__name__):
        net = cached_net(CODE, build)
    assert build.calls == 2 and "unreadable" in caplog.text
    assert len(net.bus) == 4 and not net.profiles["load"].empty
    assert build.calls == 2 and len(cached_net(CODE, build).bus) == len(net.bus)  # fixed on disk


def test_a_cache_that_cannot_be_written_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GRIDCTL_CACHE_DIR", str(blocker / "cache"))  # under a file: no folder
    build = Builds()
    with caplog.at_level(logging.WARNING, logger=simbench_cache.__name__):
        net = cached_net(CODE, build)
    assert build.calls == 1 and len(net.bus) == 4 and "not written" in caplog.text


def test_a_writer_that_loses_the_race_keeps_the_winner(cache: Path) -> None:
    build = Builds()
    net = cached_net(CODE, build)
    entry = entry_dir(CODE)
    simbench_cache._write(entry, net)  # as a second process finishing later would
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no leftovers
    assert len(cached_net(CODE, build).bus) == len(net.bus) and build.calls == 1


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDCTL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert simbench_cache.cache_dir() == Path("/somewhere/gridctl")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert simbench_cache.cache_dir() == Path.home() / ".cache" / "gridctl"
    assert "/" not in entry_dir("../../etc/x").name  # a code cannot leave the cache folder
