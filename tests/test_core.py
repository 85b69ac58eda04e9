import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.core import (
    GridctlError,
    count_energy_wh,
    interval_at,
    interval_hours,
    interval_of,
    interval_start,
    private_file,
    read_yaml,
)


def test_interval_index_is_floor_of_epoch_over_900() -> None:
    t = datetime(2026, 6, 21, 12, 7, 30, tzinfo=UTC)
    assert interval_of(t) == int(t.timestamp()) // 900
    assert interval_start(interval_of(t)) == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    assert interval_hours() == 0.25
    assert interval_at(t.timestamp()) == interval_of(t)
    assert interval_at(900.0 * 5 - 1e-6) == 4 and interval_at(900 * 5) == 5


def test_other_timezones_map_to_the_same_interval() -> None:
    t = datetime(2026, 6, 21, 14, 7, tzinfo=timezone(timedelta(hours=2)))
    assert interval_start(interval_of(t)) == datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        interval_of(datetime(2026, 1, 1))


@given(st.integers(min_value=0, max_value=10**8))
def test_interval_start_round_trips(interval: int) -> None:
    start = interval_start(interval)
    assert interval_of(start) == interval
    assert interval_of(start + timedelta(seconds=899)) == interval


def test_meter_counters_split_energy_by_load_convention() -> None:
    assert count_energy_wh(10.0, 20.0, 500.0) == (510.0, 20.0)
    assert count_energy_wh(10.0, 20.0, -750.0) == (10.0, 770.0)
    imp, exp = count_energy_wh(np.array([10, 10]), np.array([0, 0]), np.array([1000, -500]))
    np.testing.assert_array_equal(imp, [1010, 10])
    np.testing.assert_array_equal(exp, [0, 500])
    assert imp.dtype == np.int64


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_household_data_files_are_created_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    from gridctl.controller.outbox import Outbox
    from gridctl.coordinator.inbox import Inbox
    from gridctl.settlement.ledger import Ledger

    old = os.umask(umask)
    try:
        stores = [Ledger(tmp_path / "ledger.sqlite"), Inbox(tmp_path / "inbox.sqlite"),
                  Outbox(tmp_path / "state" / "outbox.sqlite")]  # fmt: skip
    finally:
        os.umask(old)
    try:
        files = [*tmp_path.glob("*.sqlite*"), *tmp_path.glob("state/*.sqlite*")]
        assert len(files) == 9  # each database with its -wal and -shm, while open
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        for s in stores:
            s.close()


def test_an_existing_file_and_its_side_files_lose_others_access(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    for f, mode in ((db, 0o666), (tmp_path / "ledger.sqlite-wal", 0o644)):
        f.write_bytes(b"")
        f.chmod(mode)
    private_file(db)
    assert _mode(db) == 0o660 and _mode(tmp_path / "ledger.sqlite-wal") == 0o640
    assert not (tmp_path / "ledger.sqlite-shm").exists()


def test_yaml_aliases_are_refused_in_one_line(tmp_path: Path) -> None:
    """Nested aliases ('billion laughs') expand a few lines into millions of nodes."""
    bomb = tmp_path / "bomb.yaml"
    rows = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    rows += [
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)
    ]
    bomb.write_text("\n".join(rows) + "\n")
    with pytest.raises(GridctlError, match=r"aliases .* are not allowed"):
        read_yaml(bomb, GridctlError)
    res = subprocess.run([sys.executable, "-m", "gridctl", "sim", str(bomb)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "aliases" in res.stderr and "Traceback" not in res.stderr
