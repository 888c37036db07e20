"""The shape shared by the background loops (dispatcher, inbox worker, pollers): do a
round of work, and when there was none, sleep until woken, stopped or a timeout; and the
rule that webhook deliveries go first (``IngestFirst``)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class IngestFirst:
    """Webhook deliveries go before background work.

    One event loop serves the receivers and runs the inbox worker and the dispatcher.
    Under a burst, a delivery would otherwise wait behind whole batches of processing,
    and its sender (which times out and redelivers) behind it. So the receivers count
    the deliveries in progress, and a background loop about to start a round of work
    first waits until ingest is quiet, or ``max_defer_s`` at most, and then does a small
    round (``SMALL_ROUND``): processing never stops, it runs in short steps between
    deliveries while they keep coming.

    Ingest is quiet when no delivery is in progress and none ended in the last
    ``RECENT_S``. Counting only the deliveries in progress is not enough: while a round
    of background work holds the loop, the next deliveries wait unread in their sockets
    and none is in progress, so a loop that looked then would take a full round each
    time, holding the loop for tens of milliseconds in the middle of the burst."""

    #: How much a round takes on while deliveries keep coming (events or writes): a
    #: transaction of a few milliseconds.
    SMALL_ROUND = 4
    #: How long after a delivery ingest still counts as busy (between two deliveries of a
    #: burst the receivers are idle for less than this).
    RECENT_S = 0.002

    def __init__(self, max_defer_s: float = 0.05) -> None:
        self.max_defer_s = max_defer_s
        self.active = 0
        self._last = -math.inf  # when the last delivery ended (time.monotonic)
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        self._last = time.monotonic()
        if self.active <= 0:
            self.active = 0
            self._idle.set()

    @property
    def busy(self) -> bool:
        """A delivery is in progress, or one ended less than ``RECENT_S`` ago."""
        return self.active > 0 or time.monotonic() - self._last < self.RECENT_S

    async def give_way(self) -> bool:
        """Return when ingest is quiet (True), or after ``max_defer_s`` with deliveries
        still coming (False: do a small round, then give way again)."""
        if not self.busy:
            return True
        deadline = time.monotonic() + self.max_defer_s
        while self.busy:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.active:
                try:
                    await asyncio.wait_for(self._idle.wait(), remaining)
                except TimeoutError:
                    return False
            else:  # the last delivery just ended: quiet once RECENT_S has passed
                await asyncio.sleep(min(remaining, self.RECENT_S))
        return True


class Grouped(Generic[T, R]):
    """Work submitted one piece at a time and done in batches (group commit): whatever
    is submitted while a batch runs goes into the next one, so a burst costs a few
    transactions instead of one each, and a lone piece waits for nothing.

    ``run(batch)`` returns one result per piece, in order; a result that is an exception
    is raised in that piece's submitter alone. If ``run`` raises, every piece of the
    batch gets the exception."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, piece: T) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._queue.append((piece, done))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="grouped")
        return await done

    async def _work(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            self._queue = self._queue[self.max_batch :]
            try:
                results = await self._run([piece for piece, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to each waiting submitter
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():  # the submitter may have been cancelled
                    continue
                if isinstance(result, Exception):
                    done.set_exception(result)
                else:
                    done.set_result(result)


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
