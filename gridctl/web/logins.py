"""Households' web logins of a running community: argon2id hashes in a file of the coordinator's
data folder (``web-logins.txt`` beside its ledger), set at enrolment by
``gridctl coordinator web-login CONFIG HOUSEHOLD``. The password itself is never stored.

One ``household:hash`` line per household, mode 0600, rewritten whole (a temporary file renamed
over it, so a reader never sees half a file).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from argon2 import PasswordHasher

from gridctl.core import GridctlError
from gridctl.protocol import check_name
from gridctl.web.auth import HOUSEHOLD, Account, Accounts

log = logging.getLogger(__name__)

LOGINS_FILE = "web-logins.txt"
MIN_PASSWORD = 10
"""Shortest password accepted, characters."""
MAX_PASSWORD = 1024
"""Longest password accepted, characters (the login form's limit too)."""
MAX_LOGINS_BYTES = 4 * 1024 * 1024
"""Largest logins file read, bytes (~40,000 households)."""


def read_logins(path: Path) -> dict[str, str]:
    """Argon2id hashes by household; empty when the file does not exist yet. GridctlError for
    an unreadable or malformed file (naming the line)."""
    try:
        if path.stat().st_size > MAX_LOGINS_BYTES:
            raise GridctlError(f"{path}: larger than {MAX_LOGINS_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise GridctlError(f"cannot read {path}: {e}") from None
    hashes = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith("$argon2id$"):
            raise GridctlError(f"{path}:{n}: expected household:argon2id-hash")
        hashes[check_name(user)] = hashed
    return hashes


def set_login(path: Path, household: str, password: str) -> None:
    """Set (or replace) ``household``'s web password in the logins file at ``path``, as an
    argon2id hash; GridctlError for a password shorter than MIN_PASSWORD or longer than
    MAX_PASSWORD, or a bad household id."""
    check_name(household)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise GridctlError(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    hashes = read_logins(path) | {household: PasswordHasher().hash(password)}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# gridctl web: household logins (argon2id hashes; set by "
                "`gridctl coordinator web-login`)\n")  # fmt: skip
        f.writelines(f"{h}:{hashed}\n" for h, hashed in sorted(hashes.items()))
    os.replace(tmp, path)


class FileAccounts(Accounts):
    """Accounts whose household logins are those of a logins file, read again whenever it
    changes (a password set while the web app runs works at once; a removed one stops). A
    malformed file is logged and the logins read before are kept."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._households: set[str] = set()
        self._reload()

    def check(self, user: str, password: str) -> Account | None:
        """As ``Accounts.check``, with the file's current logins."""
        self._reload()
        return super().check(user, password)

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        try:
            hashes = read_logins(self.path)
        except GridctlError as e:
            log.warning("web logins not reloaded: %s", e)
            return
        for h in self._households - set(hashes):
            self.remove(h)
        for h, hashed in hashes.items():
            self.add_hash(h, HOUSEHOLD, hashed)
        self._households, self._stamp = set(hashes), stamp


def set_household_login(config: Path, household: str, password: str) -> Path:
    """Set a household's web password for the coordinator config ``config`` (the household
    must be listed in it); returns the logins file (beside the coordinator's ledger)."""
    from gridctl.web.coord_config import load_web_side

    cfg = load_web_side(config)
    if household not in {h.id for h in cfg.households}:
        raise GridctlError(f"household {household!r:.40} is not in {config.name}")
    path = cfg.ledger.parent / LOGINS_FILE
    set_login(path, household, password)
    return path
