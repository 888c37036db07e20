"""The shape shared by the background loops (dispatcher, inbox worker, pollers): do a
round of work, and when there was none, sleep until woken, stopped or a timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


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
