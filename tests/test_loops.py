"""Background loops give way to webhook deliveries in progress, for a bounded time."""

from __future__ import annotations

import asyncio
import time

from app.dispatcher import RECORD_WHILE_BUSY, await_finished, finished_writes
from app.loops import Grouped, IngestFirst


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


async def test_a_delivery_that_just_ended_still_counts_as_ingest_busy() -> None:
    """Between two deliveries of a burst no delivery is in progress for an instant; a
    background loop looking then must still see the burst (or it takes a full round in
    the middle of it)."""
    gate = IngestFirst(max_defer_s=30.0)
    assert not gate.busy
    gate.enter()
    gate.leave()
    assert gate.busy and gate.active == 0
    started = time.monotonic()
    assert await gate.give_way() is True  # quiet once RECENT_S has passed
    assert time.monotonic() - started >= IngestFirst.RECENT_S
    assert not gate.busy


async def test_deliveries_one_after_another_keep_background_rounds_small() -> None:
    """Deliveries that never overlap but keep coming: the background loop is not let
    through in a gap between two of them; after ``max_defer_s`` it does a small round."""
    gate = IngestFirst(max_defer_s=0.05)
    loop = asyncio.get_running_loop()
    burst = True

    def delivery() -> None:  # one per turn of the loop, each ending before the next
        gate.enter()
        gate.leave()
        if burst:
            loop.call_soon(delivery)

    delivery()
    try:
        assert gate.active == 0  # between two deliveries, as a background loop sees it
        assert await gate.give_way() is False
    finally:
        burst = False


def test_finished_writes_are_recorded_in_short_transactions_while_deliveries_come() -> None:
    done: asyncio.Queue[int] = asyncio.Queue()
    for n in range(1, 41):
        done.put_nowait(n)
    busy = finished_writes(0, done, busy=True)
    assert busy == list(range(RECORD_WHILE_BUSY))  # the first and the next ones, in order
    quiet = finished_writes(-1, done, busy=False)
    assert quiet == [-1, *range(RECORD_WHILE_BUSY, 41)]  # the rest, all at once
    assert done.empty()


async def test_the_recorder_waits_for_more_finished_writes_only_while_others_run() -> None:
    class Arrived(asyncio.Event):
        """``await_finished``'s event, telling when it is cleared (the waiter looks)."""

        def __init__(self) -> None:
            super().__init__()
            self.looked = asyncio.Event()

        def clear(self) -> None:
            super().clear()
            self.looked.set()

    done: asyncio.Queue[int] = asyncio.Queue()
    arrived = Arrived()
    running = 3

    def still_running() -> int:
        return running

    async def finish(n: int) -> None:
        nonlocal running
        done.put_nowait(n)
        running -= 1
        arrived.set()

    # enough arrive: it returns as soon as they have, long before its hour is up
    waiting = asyncio.ensure_future(
        await_finished(done, want=2, arrived=arrived, running=still_running, within_s=3600)
    )
    await finish(1)
    arrived.looked.clear()
    await arrived.looked.wait()  # it woke, saw one of the two, and waits again
    assert not waiting.done()
    await finish(2)
    await asyncio.wait_for(waiting, timeout=5)
    assert done.qsize() == 2
    # nothing else running: no wait at all, whatever is wanted
    running = 0
    await asyncio.wait_for(
        await_finished(done, want=10, arrived=arrived, running=still_running, within_s=3600),
        timeout=5,
    )
    # others running but slow: it gives up after within_s with what it has
    running = 1
    await asyncio.wait_for(
        await_finished(done, want=10, arrived=arrived, running=still_running, within_s=0.01),
        timeout=5,
    )
    assert done.qsize() == 2


async def test_pieces_submitted_together_are_done_in_one_batch() -> None:
    batches: list[list[int]] = []

    async def run(batch: list[int]) -> list[int | Exception]:
        batches.append(batch)
        return [n * 10 for n in batch]

    grouped: Grouped[int, int] = Grouped(run)
    assert await asyncio.gather(*(grouped.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]
    assert await grouped.submit(7) == 70  # a lone piece is done on its own, at once
    assert batches[-1] == [7]


async def test_what_arrives_while_a_batch_runs_goes_into_the_next() -> None:
    batches: list[list[int]] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def run(batch: list[int]) -> list[int | Exception]:
        batches.append(batch)
        if len(batches) == 1:
            started.set()
            await release.wait()
        return list(batch)

    grouped: Grouped[int, int] = Grouped(run, max_batch=2)
    first = asyncio.ensure_future(grouped.submit(1))
    await started.wait()
    later = [asyncio.ensure_future(grouped.submit(n)) for n in (2, 3, 4)]
    release.set()
    assert await first == 1 and await asyncio.gather(*later) == [2, 3, 4]
    assert batches == [[1], [2, 3], [4]]  # at most max_batch per batch


async def test_a_failed_piece_fails_only_its_submitter_and_a_failed_batch_all() -> None:
    async def run(batch: list[int]) -> list[int | Exception]:
        if 0 in batch:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"bad {n}") if n < 0 else n for n in batch]

    grouped: Grouped[int, int] = Grouped(run)
    results = await asyncio.gather(
        grouped.submit(1), grouped.submit(-1), grouped.submit(2), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)
    failed = await asyncio.gather(grouped.submit(0), grouped.submit(5), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in failed)
