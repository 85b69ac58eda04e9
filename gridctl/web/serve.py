"""``gridctl web --run DIR``: the logins of a simulation's web app, and serving it on uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from gridctl.web.auth import HOUSEHOLD, OPERATOR, Accounts, new_password, write_passwords
from gridctl.web.run_view import RunView

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
    import uvicorn

    from gridctl.web.app import create_app

    view = RunView(run_dir)
    accounts, operator, path = run_logins(view)
    say(f"operator login (this start only): user {OPERATOR}, password {operator}")
    say(f"household logins of this simulation: {len(view.households)} in {path} (mode 0600); "
        "a coordinator will set them at enrolment instead (not yet)")  # fmt: skip
    say("indexing every household's postings (once; then only new intervals)")
    view.statements.refresh()
    say(f"serving {run_dir} on http://{host}:{port}/ (Ctrl-C stops)")
    sys.stdout.flush()  # the logins now, also when standard output is a pipe or a file
    uvicorn.run(create_app(view, accounts), host=host, port=port, log_level="warning",
                server_header=False)  # fmt: skip
