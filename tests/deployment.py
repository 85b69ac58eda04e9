"""Run gridctl the way a user deploys it: every command a real process, typed as the README
says (``gridctl device serve``, ``gridctl broker config`` + ``mosquitto -c``, ``gridctl controller
keygen|run``, ``gridctl coordinator run``), each one's output in a log file under the test's
folder, all stopped (SIGTERM, then SIGKILL) when the block ends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from gridctl.protocol import decode
from tests.conftest import require_tool

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
"""The ``gridctl`` script `pip install -e .` put beside this Python (the one a user types)."""


@dataclass
class Processes:
    """The processes a test started, each with its log file in ``logs``."""

    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *argv: str | Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` (``gridctl`` means the installed script), output to ``logs/name.log``."""
        args = [GRIDCTL if a == "gridctl" else str(a) for a in argv]
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        """Everything process ``name`` has written so far."""
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def logs_text(self) -> str:
        """Every process's exit status and the end of its log, for an assertion message."""
        parts = []
        for name, p in self.procs.items():
            tail = "\n".join(self.log(name).splitlines()[-15:])
            parts.append(f"--- {name} (exit {p.poll()}) ---\n{tail}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        """AssertionError (with the logs) if any started process has ended."""
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        assert not dead, f"{dead} ended early\n{self.logs_text()}"

    def wait_for(self, what: Callable[[], bool], timeout_s: float, why: str) -> None:
        """Poll ``what`` until it holds, while every process stays up; AssertionError naming
        ``why`` (with the logs) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not what():
            self.check_alive()
            assert time.monotonic() < deadline, f"timed out: {why}\n{self.logs_text()}"
            time.sleep(0.1)

    def wait_log(self, name: str, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in process ``name``'s log, waiting for it."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.log(name))
            found.extend([m] if m else [])
            return m is not None

        self.wait_for(seen, timeout_s, f"{name} to log {pattern!r}")
        return found[0]

    def stop(self) -> None:
        """SIGTERM every process (last started first), SIGKILL what has not ended in 10 s."""
        for p in reversed(self.procs.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs.values()):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextmanager
def processes(logs: Path) -> Iterator[Processes]:
    """Processes stopped when the block ends, however it ends."""
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop()


@contextmanager
def reachable_dir() -> Iterator[Path]:
    """A folder Mosquitto can still reach after dropping root's rights (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gridctl-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def gridctl(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run one short ``gridctl`` command to its end; its output, AssertionError if it fails."""
    res = subprocess.run([GRIDCTL, *map(str, argv)], capture_output=True, text=True,
                         cwd=cwd, timeout=120)  # fmt: skip
    assert res.returncode == 0, f"gridctl {' '.join(map(str, argv))}: {res.stderr}{res.stdout}"
    return res.stdout + res.stderr


def write_coordinator_config(top: Path, mqtt_port: int, households: str) -> Path:
    """``top/coordinator.yaml`` for community oak on the broker at ``mqtt_port`` (password in
    ``coordinator.secret``), no health port; ``households``: its YAML list items."""
    path = top / "coordinator.yaml"
    path.write_text(
        f"community: oak\nbroker: {{port: {mqtt_port}, password_file: coordinator.secret}}\n"
        "ledger: ledger.sqlite\ninbox: inbox.sqlite\nhealth_port: null\n"
        "tariff: {import_per_kwh: 0.32, feed_in_per_kwh: 0.08, community_per_kwh: 0.20}\n"
        "reward_tokens_per_kwh: 1.0\n"
        f"households:\n{households}"
    )
    return path


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def serve_device(procs: Processes, name: str, what: str, port: int) -> None:
    """``gridctl device serve WHAT --port PORT``, waiting until it listens."""
    procs.start(name, "gridctl", "device", "serve", what, "--port", str(port))
    procs.wait_log(name, rf"serving .* on 127\.0\.0\.1:{port}")


def start_mosquitto(procs: Processes, broker_dir: Path, port: int) -> None:
    """``mosquitto -c DIR/mosquitto.conf`` (as whoever runs the tests: root drops to the
    ``mosquitto`` user, as a system install does), waiting until it listens."""
    procs.start("mosquitto", require_tool("mosquitto"), "-c", broker_dir / "mosquitto.conf")
    procs.wait_for(lambda: listening(port), 10, "mosquitto to listen")


class Watcher:
    """An MQTT client of its own (paho, in its own thread) keeping every valid message it
    receives on ``topics``, decoded, by topic; as ``user`` with ``password``."""

    def __init__(self, port: int, user: str, password: str, topics: list[str],
                 cafile: Path | None = None):  # fmt: skip
        self.topics = topics
        self.messages: dict[str, list[object]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{user}",
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.username_pw_set(user, password)
        if cafile is not None:
            self.client.tls_set(ca_certs=str(cafile), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self._subscribe
        self.client.on_message = self._keep
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _subscribe(self, client: mqtt.Client, *_: object) -> None:
        for t in self.topics:
            client.subscribe(t, qos=1)

    def _keep(self, client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        msg = decode(m.topic, m.payload).message
        with self._lock:
            self.messages.setdefault(m.topic, []).append(msg)

    def on(self, topic: str) -> list[object]:
        """The messages received on ``topic`` so far."""
        with self._lock:
            return list(self.messages.get(topic, []))

    def next(self, topic: str, timeout_s: float) -> object:
        """Wait for a message on ``topic`` after those received so far; returns it."""
        seen = len(self.on(topic))
        deadline = time.monotonic() + timeout_s
        while len(self.on(topic)) == seen:
            assert time.monotonic() < deadline, f"no new message on {topic} in {timeout_s} s"
            time.sleep(0.002)
        return self.on(topic)[-1]

    def close(self) -> None:
        """Disconnect and stop the client's thread."""
        self.client.disconnect()
        self.client.loop_stop()
