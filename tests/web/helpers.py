"""Web test helpers: a small simulated run (once per session), its logins, and logging in.

A test module imports the fixtures by their function names (``sim_dir_fixture``,
``site_fixture``) and asks for them as ``sim_dir`` and ``site``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gridctl.sim.run import run_sim
from gridctl.web.app import create_app
from gridctl.web.auth import OPERATOR, Accounts, LoginLimiter
from gridctl.web.run_view import RunView
from gridctl.web.serve import run_logins

INTERVALS = 8


@dataclass(frozen=True)
class Site:
    """A run served by the app: its view, the passwords of every login, and a client factory."""

    view: RunView
    accounts: Accounts
    passwords: dict[str, str]

    def client(self, limiter: LoginLimiter | None = None, **kw: object) -> TestClient:
        """A fresh browser (no cookies) on a fresh app over the same run and logins."""
        app = create_app(self.view, self.accounts, limiter)
        return TestClient(app, raise_server_exceptions=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session", name="sim_dir")
def sim_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default scenario's output directory for 8 intervals (`gridctl sim --out`)."""
    out = tmp_path_factory.mktemp("web_run")
    run_sim(None, out, intervals=INTERVALS)
    return out


@pytest.fixture(scope="session", name="site")
def site_fixture(sim_dir: Path) -> Site:
    """The run with its printed logins (passwords read back from the 0600 file)."""
    view = RunView(sim_dir)
    accounts, operator, path = run_logins(view)
    return Site(view, accounts, {**read_passwords(path), OPERATOR: operator})


def read_passwords(path: Path) -> dict[str, str]:
    """``user password`` lines of the passwords file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split() for line in lines if line and not line.startswith("#"))  # type: ignore[misc]


def csrf_of(html: str) -> str:
    """The CSRF token of the page's first form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient | httpx.Client, user: str, password: str) -> httpx.Response:
    """Load the login page and post its form (not following the redirect)."""
    token = csrf_of(client.get("/login").text)
    data = {"username": user, "password": password, "csrf": token}
    return client.post("/login", data=data, follow_redirects=False)
