"""A running community for the web app's coordinator mode, every part a real process as the
README deploys it: Mosquitto (`gridctl broker config`), `gridctl coordinator run` on a clock
sped up ``SPEED`` times (GRIDCTL_TIME_SCALE) and `gridctl web CONFIG`. No controllers run:
the coordinator settles each interval once it is overdue, and publishes its root.

A test module imports ``community_fixture`` and asks for ``community``."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from gridctl.controller.keys import generate_key_file
from gridctl.core import TIME_SCALE_ENV
from gridctl.devices.virtual import free_tcp_port
from gridctl.transport.broker import Community as Members
from gridctl.transport.broker import write_broker_config
from gridctl.web.logins import set_household_login
from tests.deployment import (
    GRIDCTL,
    Processes,
    processes,
    reachable_dir,
    start_mosquitto,
    write_coordinator_config,
)

SPEED = 300
"""Clock speed of every process: a 15-minute interval in 3 s."""
HOMES = ("h01", "h02", "h03")
PASSWORDS = {h: f"{h}-web-password" for h in HOMES}


@dataclass
class Community:
    """The running community: its folder, processes, broker users, member key files and the
    web app's port (``start_web`` / ``stop_web``)."""

    top: Path
    procs: Processes
    mqtt_port: int
    users: dict[str, str]
    member_keys: dict[str, Path]
    web_port: int

    @property
    def config(self) -> Path:
        """The coordinator's YAML."""
        return self.top / "coordinator.yaml"

    @property
    def base(self) -> str:
        """The web app's origin."""
        return f"http://127.0.0.1:{self.web_port}"

    def start_web(self, timeout_s: float = 60.0) -> float:
        """``gridctl web CONFIG --port P``; returns the seconds until it answered."""
        t0 = time.monotonic()
        self.procs.start("web", "gridctl", "web", self.config, "--port", str(self.web_port))
        self.procs.wait_for(lambda: _answers(f"{self.base}/how"), timeout_s, "the web app")
        return time.monotonic() - t0

    @contextmanager
    def client(self, user: str, client_id: str) -> Iterator[mqtt.Client]:
        """An MQTT client (paho, its own thread) connected as ``user``, while in the block."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.username_pw_set(user, self.users[user])
        c.connect("127.0.0.1", self.mqtt_port)
        c.loop_start()
        try:
            yield c
        finally:
            c.disconnect()
            c.loop_stop()

    def stop_web(self) -> None:
        """Stop the web app (SIGINT, as Ctrl-C) and wait until it has ended."""
        proc = self.procs.procs.pop("web")
        proc.send_signal(2)
        assert proc.wait(timeout=15) == 0, (self.top / "logs" / "web.log").read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def start_broker(procs: Processes, top: Path, port: int, homes: tuple[str, ...]) -> dict[str, str]:
    """Mosquitto for community oak of ``homes`` on ``port`` (`gridctl broker config`, in
    process), the coordinator's and the web app's passwords in ``coordinator.secret`` and
    ``web.secret`` beside their config; returns every user's password."""
    users = write_broker_config(Members(community="oak", households=list(homes)),
                                top / "broker", port)  # fmt: skip
    start_mosquitto(procs, top / "broker", port)
    (top / "coordinator.secret").write_text(users["coordinator"] + "\n")
    (top / "web.secret").write_text(users["web"] + "\n")
    return users


@pytest.fixture(scope="module", name="community")
def community_fixture() -> Iterator[Community]:
    """Broker, coordinator (with its ledger made and members enrolled) and web app running;
    each household's web login set by `gridctl coordinator web-login`."""
    with running_community() as community:
        yield community


FEEDER = "1-LV-rural1--0-sw"
FEEDER_BUSES = ("LV1.101 Bus 8", "LV1.101 Bus 11", "LV1.101 Bus 10")
"""The households' buses on ``FEEDER`` (``running_community(feeder=True)``): one chain."""


@contextmanager
def running_community(feeder: bool = False) -> Iterator[Community]:
    """The community of ``community_fixture``; ``feeder``: its coordinator plans the homes on
    ``FEEDER_BUSES`` of ``FEEDER`` (public k = 2 for its three homes)."""
    mqtt_port = free_tcp_port()
    with pytest.MonkeyPatch.context() as mp, reachable_dir() as top, \
            processes(top / "logs") as procs:  # fmt: skip
        mp.setenv(TIME_SCALE_ENV, f"{SPEED}@{time.time():.3f}")
        # the commands other tests run as processes, in process here (each costs seconds)
        users = start_broker(procs, top, mqtt_port, HOMES)
        keys = {h: top / f"{h}-member.pem" for h in HOMES}  # as `gridctl member keygen`
        member_hex = {h: generate_key_file(keys[h]).hex() for h in HOMES}
        generate_key_file(top / "coordinator.key")  # as `gridctl coordinator keygen`
        households = "".join(
            f"  - {{id: {h}, public_key: {generate_key_file(top / f'{h}.key').hex()}, "
            f"member_key: {member_hex[h]}, connection_kw: 17.25"
            + (f", bus: {bus}, load: {{profile: H0-A, annual_kwh: 3500}}" if feeder else "")
            + "}\n"
            for h, bus in zip(HOMES, FEEDER_BUSES, strict=True)
        )
        if feeder:  # top-level keys after the list (the config writer ends with it)
            households += (f"feeder: {{simbench: {FEEDER}}}\nopendata: {{k: 2}}\n"
                           "dispatch: {horizon: 8, replan_every: 4, near: 4}\n")  # fmt: skip
        write_coordinator_config(top, mqtt_port, households)
        procs.start("coordinator", "gridctl", "coordinator", "run", top / "coordinator.yaml")
        procs.wait_for(lambda: (top / "ledger.sqlite").exists(), 60, "the coordinator's ledger")
        r = subprocess.run([GRIDCTL, "coordinator", "web-login", str(top / "coordinator.yaml"),
                            "h01"], input=PASSWORDS["h01"] + "\n", capture_output=True,
                           text=True, timeout=60, env=os.environ)  # fmt: skip
        assert r.returncode == 0 and "argon2id" in r.stdout, r.stderr
        for h in HOMES[1:]:
            set_household_login(top / "coordinator.yaml", h, PASSWORDS[h])
        community = Community(top, procs, mqtt_port, users, keys, free_tcp_port())
        community.start_web()
        yield community
        procs.check_alive()
        procs.stop()
        for name in procs.procs:
            assert "Traceback" not in procs.log(name), procs.logs_text()
