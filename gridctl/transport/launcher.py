"""Start a real Mosquitto broker from a generated configuration and wait until it listens."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gridctl.core import GridctlError

SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"


class BrokerError(GridctlError):
    """The broker is not installed, or did not start."""


def mosquitto_path() -> str | None:
    """Path of the ``mosquitto`` program, None when it is not installed."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=SEARCH_PATH)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def running_mosquitto(
    conf: Path, port: int, host: str = "127.0.0.1", timeout_s: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mosquitto -c conf`` until the block ends; BrokerError if it does not listen on
    ``host:port`` within ``timeout_s`` (its own error output is in the message)."""
    exe = mosquitto_path()
    if exe is None:
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + timeout_s
            while not _listening(host, port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    why = err.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise BrokerError(f"mosquitto did not start on port {port}: {' | '.join(why)}")
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
