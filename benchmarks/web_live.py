"""Live-update latency of the web app: from a coordinator broadcast to the ``/live`` event.

A real Mosquitto (generated credentials, as ``gridctl broker config`` writes them) carries
``updates`` signed roots the coordinator's way (``coordinator/root``, QoS 1, retained, the
coordinator's encoder). The web app (``create_app`` with ``Live`` as the broker user ``web``)
runs under uvicorn on a free port and an HTTP client (httpx, streaming) reads ``/live``; each
root's latency is from its publication to the server-sent event that carries its interval.
Baseline, on the same publications: a bare subscriber (a household's broker user, the same
``Session``) receiving the root. All in this process, one event loop.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

COMMUNITY = "bench"
TIMEOUT_S = 10.0
"""Longest wait for one update, s (beyond: the benchmark fails)."""


def measure_live(run_dir: Path, updates: int) -> dict[str, float | str | None]:
    """p50 / p95 latency, s, of ``updates`` broadcasts to ``/live`` and to a bare subscriber;
    without Mosquitto, nulls and a note."""
    if shutil.which("mosquitto") is None:
        return {"live_update_s": None, "live_update_note": "mosquitto not found: not measured"}
    from gridctl.devices.virtual import free_tcp_port
    from gridctl.transport.broker import Community, write_broker_config
    from gridctl.transport.launcher import running_broker

    with tempfile.TemporaryDirectory(prefix="gridctl-bench-web-") as name:
        conf = Path(name) / "broker"
        port = free_tcp_port()
        creds = write_broker_config(
            Community(community=COMMUNITY, households=["h00"]), conf, port,
            run_as=getpass.getuser(),
        )  # fmt: skip
        with running_broker(conf / "mosquitto.conf", port):
            sse, bare = asyncio.run(_measure(run_dir, port, creds, updates))
    return {
        "live_update_s": round(p95(sse), 4),
        "live_p50_s": round(statistics.median(sse), 4),
        "live_p95_s": round(p95(sse), 4),
        "live_baseline_p50_s": round(statistics.median(bare), 4),
        "live_baseline_p95_s": round(p95(bare), 4),
        "live_updates": updates,
    }


async def _measure(
    run_dir: Path, port: int, creds: dict[str, str], updates: int
) -> tuple[list[float], list[float]]:
    import httpx
    import uvicorn

    from gridctl.devices.virtual import free_tcp_port
    from gridctl.protocol import coordinator_topic, encode
    from gridctl.transport.session import BrokerSettings, Session
    from gridctl.web.app import create_app
    from gridctl.web.auth import Accounts
    from gridctl.web.live import Live
    from gridctl.web.run_view import RunView

    def broker(user: str) -> BrokerSettings:
        return BrokerSettings(port=port, username=user, password=creds[user])

    topic = coordinator_topic(COMMUNITY, "root")
    bare_seen: dict[int, float] = {}

    async def on_bare(_topic: str, payload: bytes) -> None:
        bare_seen[json.loads(payload)["interval"]] = time.perf_counter()

    live = Live(COMMUNITY, broker("web"))
    app = create_app(RunView(run_dir), Accounts(), live=live)
    web_port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, port=web_port, log_level="warning"))
    coordinator = Session(broker("coordinator"), "bench-coordinator", [], _ignore)
    bare = Session(broker("h00"), "bench-bare", [topic], on_bare)
    tasks = [asyncio.create_task(t) for t in (server.serve(), coordinator.run(), bare.run())]
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not (server.started and live.session.connected.is_set()
                       and coordinator.connected.is_set() and bare.connected.is_set()):  # fmt: skip
                await asyncio.sleep(0.02)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client,
            client.stream("GET", "/live", timeout=TIMEOUT_S) as stream,
        ):
            events = _events(stream.aiter_lines())
            sse, base = [], []
            for k in range(updates):
                interval = 1_000_000 + k
                t0 = time.perf_counter()
                assert await coordinator.publish(topic, encode(_root(interval)), 1, True)
                async with asyncio.timeout(TIMEOUT_S):
                    while (await anext(events)).get("last_interval") != interval:
                        pass
                    sse.append(time.perf_counter() - t0)
                    while interval not in bare_seen:
                        await asyncio.sleep(0.001)
                base.append(bare_seen[interval] - t0)
        return sse, base
    finally:
        server.should_exit = True
        for t in tasks[1:]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _ignore(_topic: str, _payload: bytes) -> None:
    return None


async def _events(lines):  # type: ignore[no-untyped-def]
    """The ``data`` of each ``community`` event of an SSE stream, parsed."""
    async for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def _root(interval: int):  # type: ignore[no-untyped-def]
    """A root signed by the simulation's coordinator key (random digests)."""
    from gridctl.settlement.enrol import simulated_coordinator_key
    from gridctl.settlement.roots import RootMessage, root_payload
    from gridctl.settlement.signing import key_id_of

    key = simulated_coordinator_key(0)
    root, head, records, prev = (os.urandom(32).hex() for _ in range(4))
    sig = key.sign(root_payload(interval, 96, root, head, records, prev)).hex()
    public = key.public_key().public_bytes_raw()
    return RootMessage(interval=interval, size=96, root=root, head=head, records=records,
                       prev=prev, key_id=key_id_of(public), sig=sig)  # fmt: skip


def p95(times: list[float]) -> float:
    """95th percentile (inclusive), as every benchmark row reports it."""
    return statistics.quantiles(times, n=20, method="inclusive")[-1]
