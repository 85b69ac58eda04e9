"""A wake-up for whoever waits on changing state (event streams), renewed at each change."""

from __future__ import annotations

import asyncio
from contextlib import suppress


class Wakeup:
    """``set`` wakes every waiter of the moment; ``wait`` returns at the next ``set`` or after
    its timeout. Works only once ``start`` has run inside the event loop (before: ``wait``
    just sleeps)."""

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

    async def wait(self, timeout_s: float) -> None:
        """Return at the next ``set``, or after ``timeout_s``."""
        event = self._event
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
