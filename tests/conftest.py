"""Shared fixtures: a simulated day of the default scenario (once per session), a real broker."""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridctl.devices.virtual import free_tcp_port
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.scenario import load_scenario
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import BrokerKind, mqtt_version, running_broker
from gridctl.transport.session import BrokerSettings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a slow test first, each module's tests kept together (its module fixtures
    are made once), otherwise in collection order: the xdist workers then share the long tests
    from the start instead of one finishing a long test alone at the end."""
    slow = {item.module for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module not in slow)


@pytest.fixture(scope="session")
def default_day(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """The packaged default scenario (96 intervals), simulated into a fresh ledger (read only:
    under xdist the workers of one run share it, simulated by whichever asks first)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        out: Path = tmp_path_factory.mktemp("default_day")
        return simulate(load_scenario(), out / "ledger.sqlite")
    shared = tmp_path_factory.getbasetemp().parent / f"default-day-{run}"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = shared / "result.pickle"
        if done.is_file():
            return pickle.loads(done.read_bytes())
        result = simulate(load_scenario(), shared / "ledger.sqlite")
        done.write_bytes(pickle.dumps(result))
        return result


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
    """A running broker: which, where it listens, its community and every user's password."""

    kind: BrokerKind
    port: int
    community: str
    households: list[str]
    creds: dict[str, str]
    conf: Path

    def settings(self, user: str) -> BrokerSettings:
        """Session settings for ``user`` on this broker."""
        return BrokerSettings(port=self.port, username=user, password=self.creds[user],
                              mqtt_version=mqtt_version(self.kind))  # fmt: skip


BOTH_BROKERS = pytest.mark.parametrize("broker", ["mosquitto", "embedded"], indirect=True)
"""Run a test against Mosquitto and against the embedded broker."""


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker (Mosquitto unless parametrised, as by BOTH_BROKERS) with the community 'oak'
    of ten households h00 … h09."""
    kind: BrokerKind = getattr(request, "param", "mosquitto")
    if kind == "mosquitto":
        require_tool("mosquitto")
    households = [f"h{k:02d}" for k in range(10)]
    port = free_tcp_port()
    creds = write_broker_config(
        Community(community="oak", households=households), tmp_path / "broker", port,
        run_as=getpass.getuser(),
    )  # fmt: skip
    conf = tmp_path / "broker" / "mosquitto.conf"
    with running_broker(conf, port, kind):
        yield Broker(kind, port, "oak", households, creds, conf)


async def until(what: Callable[[], bool], timeout_s: float = 10.0, poll_s: float = 0.01) -> None:
    """Wait until ``what()`` holds, looking every ``poll_s``; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not what():
            await asyncio.sleep(poll_s)


async def stop_tasks(*tasks: asyncio.Task) -> None:
    """Cancel and await ``tasks``; one that does not stop within 15 s fails the test (with the
    stacks of every task still pending) instead of hanging the suite."""
    for t in tasks:
        t.cancel()
    try:
        async with asyncio.timeout(15):
            await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        for t in asyncio.all_tasks():
            t.print_stack()
        raise
