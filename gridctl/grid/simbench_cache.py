"""A disk cache of SimBench networks: reading one from SimBench's CSV set takes about 7 s, a
cached copy about 0.7 s, so every ``gridctl sim`` or coordinator start after the first is that
much faster.

One folder per SimBench code under ``cache_dir()/simbench/<key>/``, the key naming the code and
the simbench and pandapower versions (a new version builds a new entry): ``net.json``
(pandapower's JSON format, the network without its profiles) and one Parquet file per profile
table. An entry is written into a temporary folder and renamed into place, so a reader sees a
whole entry or none; two processes building the same entry at once both succeed (the second
rename loses and its copy is discarded). An entry that cannot be read is rebuilt.

The cache holds only data derived from the installed simbench package; it lives in the user's
own cache folder (``GRIDCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/gridctl``, else
``~/.cache/gridctl``; folders it creates there are the user's alone, mode 0700).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pandapower as pp
import pandas as pd

log = logging.getLogger(__name__)

NET_FILE = "net.json"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def cache_dir() -> Path:
    """gridctl's cache folder (see the module doc); not created here."""
    if d := os.environ.get("GRIDCTL_CACHE_DIR"):
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gridctl"


def entry_dir(code: str) -> Path:
    """The cache folder of one SimBench code at the installed versions."""
    key = f"{code}@simbench-{version('simbench')}@pandapower-{version('pandapower')}"
    return cache_dir() / "simbench" / _SAFE.sub("_", key)


def cached_net(code: str, build: Callable[[str], pp.pandapowerNet]) -> pp.pandapowerNet:
    """The SimBench network ``code`` from the cache, or ``build(code)`` stored there first.

    A cache that cannot be written (read-only home, full disk) is logged and skipped: the
    network built is returned all the same."""
    entry = entry_dir(code)
    if (entry / NET_FILE).is_file():
        try:
            return _read(entry)
        except Exception as e:  # a damaged entry: build it again
            log.warning("simbench cache %s unreadable (%s): rebuilding it", entry, e)
            shutil.rmtree(entry, ignore_errors=True)
    net = build(code)
    try:
        _write(entry, net)
    except OSError as e:
        log.warning("simbench cache %s not written: %s", entry, e)
    return net


def _read(entry: Path) -> pp.pandapowerNet:
    net = pp.from_json(str(entry / NET_FILE))
    net["profiles"] = {p.stem: pd.read_parquet(p) for p in sorted(entry.glob("*.parquet"))}
    return net


def _write(entry: Path, net: pp.pandapowerNet) -> None:
    cache_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    entry.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=entry.parent))
    try:
        bare = pp.pandapowerNet(net)
        profiles = bare.pop("profiles", None) or {}
        pp.to_json(bare, str(tmp / NET_FILE))
        for name, table in profiles.items():
            table.to_parquet(tmp / f"{_SAFE.sub('_', name)}.parquet")
        try:
            tmp.rename(entry)
        except OSError:
            if not (entry / NET_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
