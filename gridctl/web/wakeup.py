"""A wake-up for whoever waits on changing state (event streams), renewed at each change."""

from __future__ import annotations

import asyncio
from contextlib import suppress


class Wakeup:
    """``set`` wakes every waiter of the moment; ``wait`` returns at the next ``set`` after
    its ``ticket`` was taken, or after its timeout. Works only once ``start`` has run inside the
    event loop (before: ``wait`` just sleeps).

    Take the ticket before reading the state and wait on it after: a change in between then
    wakes the waiter at once instead of being missed until the timeout."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def start(self) -> None:
        """Make the event inside the running loop."""
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake the waiters; later waiters wait for the next change."""
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event | None:
        """What the next ``set`` sets (None before ``start``)."""
        return self._event

    async def wait(self, timeout_s: float, ticket: asyncio.Event | None = None) -> None:
        """Return at the next ``set`` since ``ticket`` was taken (default: from now), or after
        ``timeout_s``."""
        event = ticket if ticket is not None else self._event
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
