"""Who may see what: accounts with argon2-hashed passwords, server-side sessions carrying a
CSRF token, and the login rate limit.

Passwords are only ever held as argon2id hashes (argon2-cffi's RFC 9106 profile). Sessions live
in memory (a restart logs everybody out); the cookie holds a random id, nothing else.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

OPERATOR = "operator"
"""The operator's user name and role: may read every household's pages."""
HOUSEHOLD = "household"
MAX_SESSIONS = 10_000
"""Sessions kept at most (the oldest is dropped first): anonymous visitors cannot fill memory."""
SESSION_S = 12 * 3600
"""A session's lifetime, s."""
MAX_LIMITED = 100_000
"""Keys the login limiter tracks at most (the oldest is forgotten first)."""


def new_password() -> str:
    """A random password of 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Account:
    """A login: its user name (a household id or ``operator``), role and argon2 hash."""

    user: str
    role: str
    hash: str


class Accounts:
    """The logins the server accepts, hashes only."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        self._accounts: dict[str, Account] = {}
        # a hash to verify against for unknown users, so a wrong user name takes as long
        self._decoy = self._hasher.hash(new_password())

    def add(self, user: str, role: str, password: str) -> None:
        """Add (or replace) a login; the password is hashed at once and not kept."""
        self.add_hash(user, role, self._hasher.hash(password))

    def add_hash(self, user: str, role: str, hashed: str) -> None:
        """Add (or replace) a login by its argon2 hash (from a logins file)."""
        self._accounts[user] = Account(user, role, hashed)

    def remove(self, user: str) -> None:
        """Remove a login (if any)."""
        self._accounts.pop(user, None)

    def check(self, user: str, password: str) -> Account | None:
        """The account when ``password`` is right for ``user``, else None (same work either way)."""
        account = self._accounts.get(user)
        try:
            self._hasher.verify(account.hash if account else self._decoy, password)
        except (VerificationError, InvalidHashError):
            return None
        return account


@dataclass
class Session:
    """A browser's session: its CSRF token and, once logged in, the account."""

    csrf: str
    created: float
    account: Account | None = None


class Sessions:
    """Server-side sessions by random id, bounded in number and age."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def get(self, sid: str | None) -> Session | None:
        """The live session of ``sid``, None when unknown or expired."""
        s = self._by_id.get(sid or "")
        if s is None or self._clock() - s.created > SESSION_S:
            return None
        return s

    def new(self, account: Account | None = None) -> tuple[str, Session]:
        """A fresh session (a new id at every login: no session fixation)."""
        sid = secrets.token_urlsafe(32)
        s = Session(secrets.token_urlsafe(32), self._clock(), account)
        self._by_id[sid] = s
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid, s

    def drop(self, sid: str | None) -> None:
        """End a session (logout)."""
        self._by_id.pop(sid or "", None)


@dataclass
class LoginLimiter:
    """Locks a key (a user name, a client address) for ``lock_s`` after ``limit`` wrong passwords
    within ``lock_s``; a right password clears the key's count."""

    limit: int = 20
    lock_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _fails: dict[str, list[float]] = field(default_factory=dict)

    def locked(self, *keys: str) -> bool:
        """True when any of ``keys`` is locked now."""
        now = self.clock()
        for k in keys:
            recent = [t for t in self._fails.get(k, []) if now - t < self.lock_s]
            self._fails[k] = recent
            if len(recent) >= self.limit:
                return True
        return False

    def failed(self, *keys: str) -> None:
        """Count a wrong password against each key."""
        now = self.clock()
        for k in keys:
            self._fails.setdefault(k, []).append(now)
            del self._fails[k][: -self.limit]
        while len(self._fails) > MAX_LIMITED:
            del self._fails[next(iter(self._fails))]

    def succeeded(self, key: str) -> None:
        """A right password: forget the key's wrong ones."""
        self._fails.pop(key, None)


def write_passwords(path: Path, passwords: dict[str, str]) -> None:
    """Write ``user password`` lines to ``path``, readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# gridctl web: one-time household logins of this simulation (user password)\n")
        f.writelines(f"{user} {pw}\n" for user, pw in passwords.items())
