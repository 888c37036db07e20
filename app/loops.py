"""The shape shared by the background loops (dispatcher, inbox worker, pollers): do a
round of work, and when there was none, sleep until woken, stopped or a timeout; and the
rule that webhook deliveries go first (``IngestFirst``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


class IngestFirst:
    """Webhook deliveries go before background work.

    One event loop serves the receivers and runs the inbox worker and the dispatcher.
    Under a burst, a delivery would otherwise wait behind whole batches of processing,
    and its sender (which times out and redelivers) behind it. So the receivers count
    the deliveries in progress, and a background loop about to start a round of work
    first waits until there are none, or ``max_defer_s`` at most, and then does a small
    round (``SMALL_ROUND``): processing never stops, it runs in short steps between
    deliveries while they keep coming."""

    #: How much a round takes on while deliveries keep coming (events or writes).
    SMALL_ROUND = 8

    def __init__(self, max_defer_s: float = 0.05) -> None:
        self.max_defer_s = max_defer_s
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.active = 0
            self._idle.set()

    async def give_way(self) -> bool:
        """Return when no delivery is in progress (True), or after ``max_defer_s`` with
        deliveries still coming (False: do a small round, then give way again)."""
        if not self.active:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), self.max_defer_s)
        except TimeoutError:
            return False
        return True


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of ``events`` is set, or after ``seconds``."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def work_until_stopped(
    step: Callable[[], Awaitable[int]],
    *,
    wake: asyncio.Event,
    stop: asyncio.Event,
    idle_s: float,
    log: logging.Logger,
) -> None:
    """Run ``step`` (which returns how much it did) until ``stop`` is set; after an idle
    round wait for ``wake``, ``stop`` or ``idle_s``. A failing round is logged and the
    loop goes on: a database hiccup must not stop the gateway."""
    while not stop.is_set():
        try:
            done = await step()
        except Exception:
            log.exception("round failed")
            done = 0
        if done:
            continue
        wake.clear()
        await wait_any(wake, stop, seconds=idle_s)
