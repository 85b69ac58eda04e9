"""The coordinator's health endpoint and Prometheus metrics, on a small asyncio HTTP server.

``GET /health`` answers JSON (community, connected, last settled interval, households online);
``GET /metrics`` the Prometheus text format. Only GET is served; anything else is 404 / 405.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from gridctl.coordinator.service import Coordinator


class Metrics:
    """The coordinator's counters, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.intervals = Counter("gridctl_intervals_settled", "intervals settled", registry=r)
        self.settle_s = Histogram(
            "gridctl_settle_seconds", "time to settle an interval", registry=r
        )
        self.solve_s = Histogram(
            "gridctl_plan_seconds", "time to plan the community (forecast, dispatch, AC check)",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, float("inf")), registry=r,
        )  # fmt: skip
        self.readings = Counter(
            "gridctl_readings", "settled readings by outcome", ["outcome"], registry=r
        )
        self.readings_received = Counter(
            "gridctl_readings_received", "readings received (new=false: duplicate)", ["new"],
            registry=r,
        )  # fmt: skip
        self.votes_received = Counter(
            "gridctl_votes_received", "votes received (new=false: duplicate)", ["new"],
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "gridctl_messages_refused", "refused messages", ["reason"], registry=r
        )
        self.failures = Counter(
            "gridctl_failures", "failed ticks, settlements and plans (the service went on)",
            ["what"], registry=r,
        )  # fmt: skip
        self.online = Gauge("gridctl_households_online", "households online", registry=r)
        self.envelope_in_force = Gauge(
            "gridctl_envelope_in_force", "1 while a finite envelope limit applies this interval",
            registry=r,
        )  # fmt: skip
        self.sources_silent = Gauge(
            "gridctl_envelope_sources_silent",
            "envelope sources (the grid operator's VTN) silent for 3 polls: default applies",
            registry=r,
        )
        self.ingest_s = Histogram(
            "gridctl_telemetry_age_seconds", "telemetry age on arrival (coordinator clock - t)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, float("inf")),
            registry=r,
        )  # fmt: skip


def _health(c: Coordinator) -> dict[str, object]:
    return {
        "community": c.community,
        "connected": c.session.connected.is_set(),
        "last_settled_interval": c.last_closed,
        "last_planned_interval": c.last_planned,
        "households": len(c.households),
        "households_online": sum(c.online.values()),
        "messages_refused": c.rejects.total,
    }


async def serve_http(c: Coordinator, port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Start the endpoint (port 0: any free port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = line.decode("latin-1").split()
            if len(parts) < 2 or parts[0] != "GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif parts[1] == "/health":
                status, ctype = "200 OK", "application/json"
                body = json.dumps(_health(c)).encode()
            elif parts[1] == "/metrics":
                status, ctype, body = (
                    "200 OK",
                    CONTENT_TYPE_LATEST,
                    generate_latest(c.metrics.registry),
                )
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /health or /metrics\n"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
