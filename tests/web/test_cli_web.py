"""``gridctl web --run DIR --port P`` as a real process, fetched over HTTP with httpx."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gridctl.devices.virtual import free_tcp_port
from gridctl.web.auth import OPERATOR
from tests.web.helpers import login, read_passwords, sim_dir_fixture  # noqa: F401

GRIDCTL = [sys.executable, "-m", "gridctl"]


def _wait_up(url: str, proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def test_gridctl_web_serves_a_run(sim_dir: Path) -> None:
    port = free_tcp_port()
    proc = subprocess.Popen(
        [*GRIDCTL, "web", "--run", str(sim_dir), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(f"{base}/how", proc)
        assert proc.stdout is not None
        printed = [proc.stdout.readline() for _ in range(3)]
        operator = re.search(r"user operator, password (\S+)", printed[0])
        assert operator, printed
        assert "web-passwords.txt (mode 0600)" in printed[1] and "enrolment" in printed[1]
        path = sim_dir / "web-passwords.txt"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        passwords = read_passwords(path)
        assert sorted(passwords) == [f"h{n:02d}" for n in range(1, 15)]
        with httpx.Client(base_url=base) as browser:
            page = browser.get("/")
            assert page.status_code == 200 and 'id="settled">8<' in page.text
            assert page.headers["x-content-type-options"] == "nosniff"
            assert "server" not in page.headers
            assert browser.get("/households/h03").status_code == 401
            assert login(browser, "h03", passwords["h03"]).status_code == 303
            assert "Statement of h03" in browser.get("/households/h03").text
            assert browser.get("/households/h04").status_code == 403
        with httpx.Client(base_url=base) as operator_browser:
            login(operator_browser, OPERATOR, operator.group(1))
            assert operator_browser.get("/households/h04").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_gridctl_web_without_a_run(tmp_path: Path) -> None:
    r = subprocess.run(
        [*GRIDCTL, "web", "--run", str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={"COLUMNS": "200", **os.environ},
    )  # fmt: skip
    assert r.returncode == 2
    assert "no ledger.sqlite in" in r.stderr and "Traceback" not in r.stderr


def test_gridctl_web_wants_a_config_or_a_run(tmp_path: Path) -> None:
    for args in ([], [str(tmp_path / "c.yaml"), "--run", str(tmp_path)]):
        r = subprocess.run([*GRIDCTL, "web", *args], capture_output=True, text=True, timeout=120,
                           env={"COLUMNS": "200", **os.environ})  # fmt: skip
        assert r.returncode == 2 and "CONFIG or --run DIR" in r.stderr, r.stderr
    r = subprocess.run([*GRIDCTL, "web", str(tmp_path / "missing.yaml")], capture_output=True,
                       text=True, timeout=120, env={"COLUMNS": "200", **os.environ})  # fmt: skip
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "Traceback" not in r.stderr
