"""Background loops give way to webhook deliveries in progress, for a bounded time."""

from __future__ import annotations

import asyncio

from app.loops import IngestFirst


async def test_background_waits_while_a_delivery_is_in_progress() -> None:
    gate = IngestFirst(max_defer_s=30.0)
    assert await gate.give_way() is True  # nothing in progress: no wait at all
    gate.enter()
    gate.enter()
    waiting = asyncio.ensure_future(gate.give_way())
    done, _ = await asyncio.wait([waiting], timeout=0)
    assert not done
    gate.leave()
    done, _ = await asyncio.wait([waiting], timeout=0)
    assert not done  # one delivery is still in progress
    gate.leave()
    assert await waiting is True


async def test_the_wait_is_bounded_while_deliveries_keep_coming() -> None:
    gate = IngestFirst(max_defer_s=0.01)
    gate.enter()  # a delivery that does not end within the bound
    assert await gate.give_way() is False  # the caller does a small round anyway
    gate.leave()
    assert gate.active == 0 and await gate.give_way() is True
