"""A real Mosquitto broker for the transport tests, configured by gridctl, on a free port."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridctl.devices.virtual import free_tcp_port
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import running_mosquitto
from tests.conftest import require_tool


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
