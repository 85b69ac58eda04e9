"""The event streams' wake-up: a change between taking the ticket and waiting is not lost."""

import asyncio
import time

from gridctl.web.wakeup import Wakeup


async def test_a_change_before_the_wait_wakes_it_at_once() -> None:
    w = Wakeup()
    w.start()
    ticket = w.ticket()
    w.set()  # while the stream sends its snapshot
    t0 = time.monotonic()
    await w.wait(5.0, ticket)
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    await w.wait(0.2)  # no change since: the timeout
    assert time.monotonic() - t0 >= 0.19


async def test_every_waiter_wakes_at_a_change() -> None:
    w = Wakeup()
    w.start()
    waiters = [asyncio.create_task(w.wait(5.0)) for _ in range(3)]
    await asyncio.sleep(0.05)
    w.set()
    done, _ = await asyncio.wait(waiters, timeout=1.0)
    assert len(done) == 3
