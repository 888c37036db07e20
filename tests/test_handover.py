"""The receiver hands the events it stores to this process's inbox worker, claimed in the
insert (``EventWriter``, ``InboxWorker.hand_over``): they need no claim transaction of
their own, and none is lost or held back when the worker stops, falls behind, or is kept
busy by a stream of them. On a real store (SQLite and PostgreSQL); the events of most
tests name a system with no adapter, so processing one finishes it ``failed`` at once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

import app.inbox as inbox_module
from app.engine import Engine
from app.inbox import MAX_APART, TABLE_CLAIM_EVERY_S, EventWriter, InboxWorker, stored_event
from app.metrics import Metrics
from app.model import utcnow
from app.rules import Rules
from app.store import Event, NewEvent, Store
from app.store.events import EventQueries
from tests.blackbox import eventually
from tests.rig import running_rig
from tests.rules_support import CAPS, MAPS, settings

LEASE_S = 30.0


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class Monotonic:
    """``app.inbox.monotonic``, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_worker(store: Store, clock: Any = utcnow) -> InboxWorker:
    engine = Engine(store, Rules(settings(), CAPS, MAPS), clock=clock)
    return InboxWorker(
        store,
        engine,
        {},
        request_poll=lambda _system: None,
        metrics=Metrics(),
        lease_s=LEASE_S,
        clock=clock,
    )


def delivery(n: int, *, claimed_until: datetime | None = None) -> NewEvent:
    return NewEvent(
        system="tracker",
        delivery_id=f"evt-{n}",
        source="webhook",
        event_type="issue.updated",
        body=b"{}",
        claimed_until=claimed_until,
    )


async def hand_over(store: Store, worker: InboxWorker, numbers: range, now: datetime) -> None:
    """Store the deliveries claimed for ``worker`` at ``now`` and hand them over, as the
    receiver does."""
    news = [delivery(n, claimed_until=now + worker.lease) for n in numbers]
    async with store.tx() as tx:
        ids = await tx.record_events(news, now=now)
    worker.hand_over([stored_event(i, new, now) for i, new in zip(ids, news, strict=True) if i])


async def events(store: Store) -> dict[str, Event]:
    async with store.tx() as tx:
        return {e.delivery_id: e for e in await tx.list_events(limit=1000)}


@pytest.fixture
def table_claims(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What each claim from the table took (delivery ids)."""
    taken: list[list[str]] = []
    claim = EventQueries.claim_events

    async def spy(self: EventQueries, **kwargs: Any) -> list[Event]:
        claimed = await claim(self, **kwargs)
        taken.append([e.delivery_id for e in claimed])
        return claimed

    monkeypatch.setattr(EventQueries, "claim_events", spy)
    return taken


async def test_received_events_are_processed_without_a_claim_of_their_own(
    store: Store, table_claims: list[list[str]]
) -> None:
    worker = make_worker(store)
    writer = EventWriter(store, inbox=worker)
    stop = asyncio.Event()
    running = asyncio.get_running_loop().create_task(worker.run(stop))
    try:

        async def taking() -> bool:
            return worker.handover_room() > 0

        await eventually(taking, timeout_s=10, what="the worker takes events handed over")
        ids = await asyncio.gather(*(writer.store_event(delivery(n)) for n in range(40)))
        assert None not in ids

        async def processed() -> bool:
            return all(e.state != "pending" for e in (await events(store)).values())

        await eventually(processed, timeout_s=20, what="every event processed")
    finally:
        stop.set()
        await running
    stored = await events(store)
    assert len(stored) == 40
    assert all(e.state == "failed" and e.attempts == 1 for e in stored.values()), stored
    assert not any(table_claims), table_claims  # none went through a claim of the table


async def test_the_table_is_claimed_from_while_handed_events_keep_the_worker_busy(
    store: Store, table_claims: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event only the table holds (a retry come due, another process's lapsed claim)
    does not wait for the handed events to run out."""
    monotonic = Monotonic()
    monkeypatch.setattr(inbox_module, "monotonic", monotonic)
    worker = make_worker(store)
    await hand_over(store, worker, range(4 * worker.batch), utcnow())
    assert await worker.run_once() == worker.batch  # the table was empty
    async with store.tx() as tx:
        await tx.record_events([delivery(999)], now=utcnow())  # stored unclaimed

    assert await worker.run_once() == worker.batch  # handed ones: no claim is due yet
    assert (await events(store))["evt-999"].state == "pending"
    monotonic.now += TABLE_CLAIM_EVERY_S
    await worker.run_once()
    assert table_claims[-1] == ["evt-999"]
    stored = await events(store)
    assert stored["evt-999"].state == "failed"
    assert sum(e.state == "pending" for e in stored.values()) == 2 * worker.batch


async def test_deliveries_stored_unclaimed_for_want_of_room_are_processed_before_newer_ones(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are processed in the order they arrived. Deliveries past the handover's
    room wait in the table, newer than those handed over and older than any to come:
    taken before them, or overtaken by later ones handed over once there was room, the
    older of two changes of an object was applied after the newer and had the object
    read again (a burst of 1,500 at c = 32 processed its first 256 last)."""
    monkeypatch.setattr(inbox_module, "HANDOVER_MAX", 8)
    worker = make_worker(store)
    worker._taking = True  # as while ``run`` works, its rounds taken by the test
    writer = EventWriter(store, inbox=worker)
    order: list[str] = []
    settle = worker._settle

    async def spy(parsed: list[Any], unreadable: list[Any]) -> None:
        order.extend(p.event.delivery_id for p in parsed)
        order.extend(event.delivery_id for event, _outcome, _detail in unreadable)
        await settle(parsed, unreadable)

    monkeypatch.setattr(worker, "_settle", spy)
    for n in range(12):  # 8 handed over, 4 stored unclaimed
        assert await writer.store_event(delivery(n)) is not None
    await worker.run_once()
    for n in range(12, 20):  # room to hand over again: these are newer than the 4
        assert await writer.store_event(delivery(n)) is not None
    while await worker.run_once():
        pass
    assert order == [f"evt-{n}" for n in range(20)]
    assert worker.handover_room() == 8  # the table claimed empty: handed over again


async def test_a_handed_event_held_too_long_is_claimed_again_once_its_claim_lapses(
    store: Store, table_claims: list[list[str]]
) -> None:
    clock = Clock()
    worker = make_worker(store, clock)
    await hand_over(store, worker, range(1), clock.now)
    clock.now += timedelta(seconds=LEASE_S * 0.6)  # held past half its lease
    assert await worker.run_once() == 0  # left to its claim, which still holds
    assert (await events(store))["evt-0"].state == "pending"

    clock.now += timedelta(seconds=LEASE_S * 0.5)  # the claim has lapsed
    worker.claim_soon()
    assert await worker.run_once() == 1
    assert table_claims[-1] == ["evt-0"]
    event = (await events(store))["evt-0"]
    assert (event.state, event.attempts) == ("failed", 2)


async def test_handed_events_not_taken_before_a_stop_are_due_again_at_once(
    store: Store,
) -> None:
    worker = make_worker(store)
    now = utcnow()
    await hand_over(store, worker, range(5), now)
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)  # stops at once: the five were never taken
    async with store.tx() as tx:
        claimed = await tx.claim_events(now=now, lease=worker.lease, limit=100)
    assert sorted(e.delivery_id for e in claimed) == [f"evt-{n}" for n in range(5)]
    assert all(e.attempts == 1 for e in claimed)  # the given-back try is not counted


async def test_handed_hint_events_of_a_system_at_its_limit_are_given_back(store: Store) -> None:
    """A system with ``MAX_APART`` batches of hints being fetched gets no more claimed, and
    one handed over meanwhile is given back (due, its try not counted), not fetched in a
    batch past the limit."""
    async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
        worker = rig.gateway.worker
        hang = {"timeout_s": 3, "count": MAX_APART, "methods": ["GET"]}
        response = await rig.control["hookstream"].post("/_sim/faults", json=hang)
        assert response.is_success, response.text
        for n in range(MAX_APART):
            await rig.open_issue(n)  # hookstream's webhook names the issue: a hint
            await rig.flush_webhooks()
            assert await worker.run_once() == 1  # its fetch runs apart, and hangs
        await rig.open_issue(MAX_APART)
        await rig.flush_webhooks()
        async with store.tx() as tx:  # claimed for the worker, as the receiver does
            (event,) = await tx.claim_events(now=utcnow(), lease=worker.lease, limit=10)
        worker.hand_over([event])
        assert await worker.run_once() == 1
        async with store.tx() as tx:
            (again,) = await tx.claim_events(now=utcnow(), lease=worker.lease, limit=10)
            await tx.release_events([again.id])
        assert (again.id, again.attempts) == (event.id, 1)
        await worker.run_until_idle()  # the hung fetches end
