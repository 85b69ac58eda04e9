"""A misbehaving Modbus TCP server for fault tests: answers every request as told."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Responder = Callable[[bytes], bytes | None]
"""Given a request frame, the bytes to answer (None: stay silent)."""


def exception_reply(code: int) -> Responder:
    """Answer with a Modbus exception response carrying ``code``."""

    def reply(req: bytes) -> bytes:
        tid, _pid, _len, unit, fc = struct.unpack(">HHHBB", req[:8])
        return struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, code)

    return reply


def truncated_reply(req: bytes) -> bytes:
    """A read response that promises more bytes than it sends."""
    tid, _pid, _len, unit, fc = struct.unpack(">HHHBB", req[:8])
    return struct.pack(">HHHBBB", tid, 0, 7, unit, fc, 4) + b"\x00"


@asynccontextmanager
async def fault_server(respond: Responder, close_after: bool = False) -> AsyncIterator[int]:
    """Serve on a free loopback port; yields the port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                (length,) = struct.unpack(">H", head[4:6])
                req = head + await reader.readexactly(length - 1)
                answer = respond(req)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
