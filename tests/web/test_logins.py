"""Households' web logins of a running community: argon2id hashes in a 0600 file, read again
by a running web app when the file changes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gridctl.core import GridctlError
from gridctl.web.logins import FileAccounts, read_logins, set_household_login, set_login


def test_logins_are_hashes_in_a_private_file_a_running_app_reads_again(tmp_path: Path) -> None:
    path = tmp_path / "web-logins.txt"
    accounts = FileAccounts(path)  # no file yet: nobody logs in
    assert accounts.check("h01", "first-password") is None
    set_login(path, "h01", "first-password")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "first-password" not in path.read_text()
    assert read_logins(path)["h01"].startswith("$argon2id$")
    assert accounts.check("h01", "first-password") is not None  # set while it runs
    set_login(path, "h01", "second-password")
    set_login(path, "h02", "h02-password")
    assert accounts.check("h01", "first-password") is None
    assert accounts.check("h01", "second-password") is not None
    path.write_text("h02:" + read_logins(path)["h02"] + "\n")  # h01 removed by hand
    assert accounts.check("h01", "second-password") is None
    assert accounts.check("h02", "h02-password") is not None
    path.write_text("h02:not-a-hash\n")  # a broken file: logged, the logins before kept
    assert accounts.check("h02", "h02-password") is not None
    with pytest.raises(GridctlError, match="argon2id"):
        read_logins(path)


def test_bad_passwords_and_households_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "web-logins.txt"
    for household, password, needle in (
        ("h01", "short", "10 to 1024"),
        ("h01", "x" * 1025, "10 to 1024"),
        ("h/01", "long-enough-password", "household id"),
        ("coordinator", "long-enough-password", "household id"),
    ):
        with pytest.raises(GridctlError, match=needle):
            set_login(path, household, password)
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text("community: oak\nbroker: {password_file: s}\nledger: l.sqlite\n"
                   "households: [{id: h01, public_key: ab}]\nfeeder: ignored\n")  # fmt: skip
    assert set_household_login(cfg, "h01", "long-enough-password") == tmp_path / "web-logins.txt"
    with pytest.raises(GridctlError, match=r"not in coordinator\.yaml"):
        set_household_login(cfg, "h09", "long-enough-password")
    cfg.write_text("community: o/k\n")
    with pytest.raises(GridctlError, match=r"coordinator\.yaml"):
        set_household_login(cfg, "h01", "long-enough-password")
