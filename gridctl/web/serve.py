"""``gridctl web --run DIR`` and ``gridctl web CONFIG``: the logins of the web app over a
simulation or a running coordinator, and serving it on uvicorn."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gridctl.web.auth import HOUSEHOLD, OPERATOR, Accounts, new_password, write_passwords
from gridctl.web.run_view import RunView

if TYPE_CHECKING:
    from fastapi import FastAPI

WEB_SECRET = "web.secret"
"""The web app's broker password file, beside the coordinator's config (default)."""
SHUTDOWN_S = 1.0
"""How long a stopping server waits for open requests (live event streams never end), s."""
PASSWORDS_FILE = "web-passwords.txt"
"""The file in the run directory with the simulation's household logins (mode 0600)."""


def run_logins(view: RunView) -> tuple[Accounts, str, Path]:
    """Accounts for a simulation: a one-time operator password (returned, never stored) and
    one random password per household, written to ``PASSWORDS_FILE`` in the run directory."""
    accounts = Accounts()
    operator = new_password()
    accounts.add(OPERATOR, OPERATOR, operator)
    passwords = {h: new_password() for h in view.households}
    for h, pw in passwords.items():
        accounts.add(h, HOUSEHOLD, pw)
    path = view.dir / PASSWORDS_FILE
    write_passwords(path, passwords)
    return accounts, operator, path


def serve_run(run_dir: Path, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve a run directory until interrupted, after printing how to log in."""
    from gridctl.web.app import create_app

    view = RunView(run_dir)
    accounts, operator, path = run_logins(view)
    say(f"operator login (this start only): user {OPERATOR}, password {operator}")
    say(
        f"household logins of this simulation: {len(view.households)} in {path} (mode 0600); "
        "a coordinator's households set theirs at enrolment (`gridctl coordinator web-login`)"
    )
    say("indexing every household's postings (once; then only new intervals)")
    view.statements.refresh()
    say(f"serving {run_dir} on http://{host}:{port}/ (Ctrl-C stops)")
    _serve(create_app(view, accounts), host, port)


def serve_coordinator(config: Path, host: str, port: int, say: Callable[[str], None],
                      broker_secret: Path | None = None) -> None:  # fmt: skip
    """Serve a running coordinator's community until interrupted: its ledger read-only, its
    retained MQTT state as the broker user ``web`` (password in ``broker_secret``, default
    ``web.secret`` beside the config) with each enrolled household's telemetry and plan for
    its own page, the households' logins of its logins file."""
    from gridctl.core import GridctlError, service_clock
    from gridctl.protocol import RejectCounter
    from gridctl.transport.broker import WEB
    from gridctl.web.app import create_app
    from gridctl.web.coord_config import load_web_side
    from gridctl.web.coord_view import CoordinatorView
    from gridctl.web.household_live import HouseholdLive
    from gridctl.web.live import Live
    from gridctl.web.logins import LOGINS_FILE, FileAccounts

    cfg = load_web_side(config)
    secret = broker_secret or config.parent / WEB_SECRET
    # the web user, without the coordinator's client certificate (its key is not the web's)
    broker = cfg.broker.model_copy(update={
        "username": WEB, "password": None, "password_file": secret, "certfile": None,
        "keyfile": None,
    }).settings(WEB, GridctlError)  # fmt: skip
    view = CoordinatorView(cfg.ledger, service_clock())
    accounts = FileAccounts(cfg.ledger.parent / LOGINS_FILE)
    operator = new_password()
    accounts.add(OPERATOR, OPERATOR, operator)
    say(f"operator login (this start only): user {OPERATOR}, password {operator}")
    say(f"household logins: {accounts.path} (`gridctl coordinator web-login CONFIG HOUSEHOLD`)")
    say(f"serving community {cfg.community} on http://{host}:{port}/ (Ctrl-C stops)")
    # each enrolled household's own telemetry and plan, in memory, for its page only
    own = HouseholdLive([h.id for h in cfg.households], view.clock, RejectCounter())
    _serve(create_app(view, accounts, live=Live(cfg.community, broker, own)), host, port)


def settle_heap() -> None:
    """Take what start-up made (modules, the app, its view) out of the garbage collector's
    rounds: they live as long as the server, and a full collection walking them every few
    requests added 150-200 ms to one request in six (the month timeline at 1,000 households)."""
    gc.collect()
    gc.freeze()


def _serve(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    sys.stdout.flush()  # the logins now, also when standard output is a pipe or a file
    settle_heap()
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False,
                timeout_graceful_shutdown=SHUTDOWN_S)  # fmt: skip
