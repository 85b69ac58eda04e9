"""Shared fixtures: a simulated day of the default scenario (once per session), a real broker."""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridctl.devices.virtual import free_tcp_port
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.scenario import load_scenario
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import running_mosquitto


@pytest.fixture(scope="session")
def default_day(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """The packaged default scenario (96 intervals), simulated into a fresh ledger."""
    out: Path = tmp_path_factory.mktemp("default_day")
    return simulate(load_scenario(), out / "ledger.sqlite")


def require_tool(name: str) -> str:
    """Path of an external program a test needs: skip without it locally, fail in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed (see .ci/run)")
        pytest.skip(f"{name} not installed")
    return path


@dataclass(frozen=True)
class Broker:
    """A running broker: where it listens, its community and every user's password."""

    port: int
    community: str
    households: list[str]
    creds: dict[str, str]
    conf: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto with the community 'oak' of ten households h00 … h09."""
    require_tool("mosquitto")
    households = [f"h{k:02d}" for k in range(10)]
    port = free_tcp_port()
    creds = write_broker_config(
        Community(community="oak", households=households), tmp_path / "broker", port,
        run_as=getpass.getuser(),
    )  # fmt: skip
    conf = tmp_path / "broker" / "mosquitto.conf"
    with running_mosquitto(conf, port):
        yield Broker(port, "oak", households, creds, conf)
