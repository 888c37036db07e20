"""No claimed link is left to wait for its lease: the interleavings and failures behind
the PostgreSQL stall (docs/reliability.md), driven step by step so that each is exact,
not left to timing. The lease here is 10 s; nothing below may wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from app.config.schema import DispatcherSettings
from app.dispatcher import Attempt, Dispatcher
from app.store import Store
from app.store.database import transient
from tests.blackbox import eventually
from tests.rig import ALL_OPEN, ALL_RESOLVED, Rig, linked, running_rig, statuses


class FakeDeadlock(Exception):
    """What the driver raises for a deadlock (SQLSTATE 40P01), wrapped as SQLAlchemy
    wraps it."""

    def __init__(self) -> None:
        super().__init__("deadlock detected")
        self.orig = type("AdaptedError", (Exception,), {"sqlstate": "40P01"})()


async def claim_states(store: Store, ids: Sequence[int]) -> list[str | None]:
    async with store.tx() as tx:
        links = await tx.links_by_id(ids)
    return [links[i].claimed_by for i in ids]


async def in_flight_writes(rig: Rig, status: str) -> tuple[Dispatcher, list[Attempt]]:
    """Change the issue's status and send the three writes that follow, unrecorded; then
    change it back, so each link is dirty again the moment its write is recorded."""
    _item_id, ids = await linked(rig)
    dispatcher = rig.gateway.dispatcher
    await rig.human("hookstream", ids["hookstream"], status=status)
    await rig.poll("hookstream")
    claimed = await dispatcher._claim(10)
    assert {link.system for link, _ in claimed} == {"devhelm", "inboxops", "incidentio"}
    attempts = await asyncio.gather(*(dispatcher._attempt(link, item) for link, item in claimed))
    await rig.human("hookstream", ids["hookstream"], status="open")
    await rig.poll("hookstream")
    return dispatcher, list(attempts)


async def test_a_claim_made_as_a_write_is_recorded_does_not_hold_its_link(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim loop runs between the commit that records a write and the moment the
    dispatcher forgets the write was in flight (on PostgreSQL the two are separate
    connections, so the claim can see the commit first). The link, dirty again, must
    not be claimed in the database only to be dropped as "in flight": it would wait a
    whole lease."""
    async with running_rig(store) as rig:
        dispatcher, attempts = await in_flight_writes(rig, "resolved")
        record = dispatcher._record_outcomes
        between: list[Any] = []

        async def record_then_claim(batch: Sequence[Attempt]) -> None:
            await record(batch)  # committed; the links are dirty and unclaimed again
            between.extend(await dispatcher._claim(10))

        monkeypatch.setattr(dispatcher, "_record_outcomes", record_then_claim)
        await dispatcher._record(attempts)
        monkeypatch.setattr(dispatcher, "_record_outcomes", record)
        assert between == []  # the writes were still in flight when it claimed
        ids = [a.link.id for a in attempts]
        assert await claim_states(store, ids) == [None, None, None]
        await dispatcher.run_until_idle()  # no lease to wait for
        _item, objects = await linked_ids(rig)
        assert await statuses(rig, objects) == ALL_OPEN


async def linked_ids(rig: Rig) -> tuple[str, dict[str, str]]:
    item = await rig.only_item()
    links = await rig.links(item.id)
    return item.id, {system: str(link.external_id) for system, link in links.items()}


async def test_recording_that_hits_a_deadlock_is_run_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        claimed = await dispatcher._claim(10)
        attempts = await asyncio.gather(
            *(dispatcher._attempt(link, item) for link, item in claimed)
        )
        record = dispatcher._record_outcomes
        runs = 0

        async def deadlocked_once(batch: Sequence[Attempt]) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise FakeDeadlock
            await record(batch)

        monkeypatch.setattr(dispatcher, "_record_outcomes", deadlocked_once)
        await dispatcher._record(list(attempts))
        assert runs == 2
        assert await claim_states(store, [a.link.id for a in attempts]) == [None, None, None]
        async with store.tx() as tx:
            links = await tx.links_by_id(a.link.id for a in attempts)
        assert not any(link.dirty for link in links.values())
        assert dispatcher.in_flight == set()
        assert not +dispatcher.flying  # counted per system too
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_recording_that_fails_for_good_releases_the_claims(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_rig(store) as rig:
        dispatcher, attempts = await in_flight_writes(rig, "resolved")
        runs = 0

        async def broken(batch: Sequence[Attempt]) -> None:
            nonlocal runs
            runs += 1
            raise FakeDeadlock

        record = dispatcher._record_outcomes
        monkeypatch.setattr(dispatcher, "_record_outcomes", broken)
        with pytest.raises(FakeDeadlock):
            await dispatcher._record(attempts)
        monkeypatch.setattr(dispatcher, "_record_outcomes", record)
        assert runs == 4  # bounded
        ids = [a.link.id for a in attempts]
        # released, not left to lapse with the 10 s lease: written again within a second
        assert await claim_states(store, ids) == [None, None, None]
        assert dispatcher.in_flight == set()
        assert not +dispatcher.flying  # counted per system too

        async def written_again() -> bool:
            await dispatcher.run_until_idle()  # due again after backoff_base_s (0.05 s)
            return await statuses(rig, (await linked_ids(rig))[1]) == ALL_OPEN

        await eventually(written_again, timeout_s=2, what="the released writes sent again")


def test_transient_errors_are_told_apart() -> None:
    assert transient(FakeDeadlock()) == "deadlock"
    serialization = RuntimeError("could not serialize")
    serialization.__cause__ = type("E", (Exception,), {"sqlstate": "40001"})()
    assert transient(serialization) == "serialization failure"
    unique = type("E", (Exception,), {"sqlstate": "23505"})()
    assert transient(unique) is None
    assert transient(RuntimeError("boom")) is None


async def test_a_link_dirty_again_while_its_write_was_in_flight_is_claimed_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorded write wakes the claim loop only when its link may be dirty again: an
    engine change since it was claimed. Here the item changes back while its three
    writes are held in flight; once they are recorded, the loop must claim the links
    again at once, not at its idle poll (an hour here)."""
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        gate = asyncio.Event()
        held: list[str] = []
        attempt = dispatcher._attempt

        async def held_attempt(link: Any, item: Any) -> Attempt:
            held.append(link.system)
            await gate.wait()
            return await attempt(link, item)

        monkeypatch.setattr(dispatcher, "_attempt", held_attempt)
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop, idle_s=3600))
        try:
            await rig.human("hookstream", ids["hookstream"], status="resolved")
            await rig.poll("hookstream")

            async def three_in_flight() -> bool:
                return len(held) == 3

            await eventually(three_in_flight, timeout_s=10, what="the three writes in flight")
            await rig.human("hookstream", ids["hookstream"], status="open")
            await rig.poll("hookstream")  # the three links dirty again, their writes held
            gate.set()

            async def all_open() -> bool:
                return await statuses(rig, ids) == ALL_OPEN

            await eventually(all_open, timeout_s=10, what="the second change written")
            assert len(held) == 6  # resolved, then open again: each link written twice
        finally:
            stop.set()
            await loop


async def test_a_system_at_its_share_gets_more_claims_only_a_batch_at_a_time(
    store: Store,
) -> None:
    """A system that reached its share of writes in flight is left out of claims until
    a quarter of its share is recorded: with a slow vendor, claiming one link as each
    write is recorded would be a claim per write."""
    async with running_rig(store) as rig:
        dispatcher = rig.gateway.dispatcher
        share = dispatcher.settings.per_system
        batch = max(1, share // 4)
        dispatcher.flying["devhelm"] = share
        dispatcher.flying["inboxops"] = share - 1
        assert dispatcher._full() == ["devhelm"]
        dispatcher.flying["devhelm"] = share - batch + 1  # recorded: fewer than a batch
        assert dispatcher._full() == ["devhelm"]
        assert not dispatcher._room_for_held()
        dispatcher.flying["devhelm"] = share - batch  # a batch recorded
        assert dispatcher._room_for_held()
        assert dispatcher._full() == []
        assert not dispatcher._room_for_held()


async def test_with_every_slot_busy_a_batch_of_finished_writes_brings_the_next_claim(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished write wakes the claim loop only when a claim would follow: with links
    still due, once a batch of slots (a quarter of concurrency) is free again. Twelve
    writes due, room for ten (eight slots and a batch of two claimed ahead), every write
    held: when two finish, the last two must be claimed at once, not at the loop's idle
    poll (an hour here)."""
    settings = DispatcherSettings(
        max_attempts=4, backoff_base_s=0.05, backoff_max_s=0.2, lease_s=10, concurrency=8
    )
    async with running_rig(store, dispatcher=settings) as rig:
        for n in range(4):
            await rig.open_issue(n)
        await rig.settle()
        dispatcher = rig.gateway.dispatcher
        claimed: list[int] = []
        claim = dispatcher._claim

        async def counted_claim(limit: int, **kwargs: Any) -> Any:
            links = await claim(limit, **kwargs)
            claimed.extend(link.id for link, _ in links)
            return links

        gates: list[asyncio.Event] = []
        released = asyncio.Event()  # every write from now on goes through at once
        attempt = dispatcher._attempt

        async def held_attempt(link: Any, item: Any) -> Attempt:
            gate = asyncio.Event()
            gates.append(gate)
            if not released.is_set():
                await gate.wait()
            return await attempt(link, item)

        def release_all() -> None:
            released.set()
            for gate in gates:
                gate.set()

        monkeypatch.setattr(dispatcher, "_claim", counted_claim)
        monkeypatch.setattr(dispatcher, "_attempt", held_attempt)
        for issue in await rig.objects("hookstream"):
            await rig.human("hookstream", issue["id"], status="resolved")
        await rig.poll("hookstream")  # twelve links dirty: three per item
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop, idle_s=3600))
        try:

            async def eight_held() -> bool:
                return len(gates) == 8

            await eventually(eight_held, timeout_s=10, what="every slot busy")
            assert len(claimed) == 10  # eight slots and a batch waiting for one
            gates[0].set()
            gates[1].set()

            async def all_claimed() -> bool:
                return len(claimed) == 12

            await eventually(all_claimed, timeout_s=10, what="the last two claimed")
            release_all()

            async def all_resolved() -> bool:
                objects = [*await rig.objects("devhelm"), *await rig.objects("incidentio")]
                return len(objects) == 8 and all(
                    o["status"] in ("RESOLVED", "completed") for o in objects
                )

            await eventually(all_resolved, timeout_s=10, what="every write made")
        finally:
            release_all()
            stop.set()
            await loop


async def test_a_claim_that_hits_a_deadlock_is_run_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim round deadlocked with another process's transaction (seen with three
    processes on PostgreSQL, at the claim's note of what it sends) failed as a whole and
    was logged as an error; it is run again, and claims what it would have."""
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        await rig.poll("hookstream")
        prepare = dispatcher._prepare
        runs = 0

        async def deadlocked_once(*args: Any) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise FakeDeadlock
            await prepare(*args)

        monkeypatch.setattr(dispatcher, "_prepare", deadlocked_once)
        claimed = await dispatcher._claim(10)
        assert runs == 2
        assert sorted(link.system for link, _ in claimed) == ["devhelm", "inboxops", "incidentio"]
        worker = dispatcher.worker_id
        assert await claim_states(store, [link.id for link, _ in claimed]) == [worker] * 3
