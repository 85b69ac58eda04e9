"""Start the community's broker from a generated configuration and wait until it listens.

Mosquitto when installed; otherwise the embedded broker (``gridctl.transport.embedded``, amqtt),
which serves the same configuration over MQTT 3.1.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import gridctl
from gridctl.core import GridctlError

SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"
BrokerKind = Literal["mosquitto", "embedded"]
BROKER_CHOICES = ("auto", "mosquitto", "embedded")
"""What a user may ask for; auto: Mosquitto when installed, else the embedded broker."""
BROKER_NAMES: dict[BrokerKind, str] = {
    "mosquitto": "Mosquitto (MQTT 5)",
    "embedded": "embedded Python broker (amqtt, MQTT 3.1.1)",
}


class BrokerError(GridctlError):
    """The broker is not installed, or did not start."""


def mosquitto_path() -> str | None:
    """Path of the ``mosquitto`` program, None when it is not installed."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=SEARCH_PATH)


def choose_broker(choice: str = "auto") -> BrokerKind:
    """The broker to run for ``choice`` (one of BROKER_CHOICES); BrokerError when Mosquitto is
    asked for and not installed."""
    if choice == "embedded":
        return "embedded"
    if choice not in BROKER_CHOICES:
        raise BrokerError(f"broker {choice!r}: must be one of {', '.join(BROKER_CHOICES)}")
    if mosquitto_path() is not None:
        return "mosquitto"
    if choice == "mosquitto":
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return "embedded"


def mqtt_version(kind: BrokerKind) -> Literal["5", "3.1.1"]:
    """The MQTT version clients speak to ``kind`` (amqtt has no MQTT 5)."""
    return "5" if kind == "mosquitto" else "3.1.1"


def _command(kind: BrokerKind, conf: Path) -> tuple[list[str], dict[str, str] | None]:
    """The broker's command line and environment (None: this process's)."""
    if kind == "embedded":
        # the child imports this very gridctl, wherever the parent found it
        here = str(Path(gridctl.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "gridctl.transport.embedded", "-c", str(conf)]
        return argv, {**os.environ, "PYTHONPATH": path}
    exe = mosquitto_path()
    if exe is None:
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return [exe, "-c", str(conf)], None


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def running_broker(
    conf: Path,
    port: int,
    kind: BrokerKind = "mosquitto",
    host: str = "127.0.0.1",
    timeout_s: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the ``kind`` broker on ``conf`` (a generated mosquitto.conf) until the block ends;
    BrokerError if it does not listen on ``host:port`` within ``timeout_s`` (its own error
    output is in the message)."""
    argv, env = _command(kind, conf)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + timeout_s
            while not _listening(host, port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    why = err.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise BrokerError(f"{kind} broker did not start on port {port}: "
                                      f"{' | '.join(why)}")  # fmt: skip
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
