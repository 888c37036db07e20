"""The links an engine transaction makes dirty are claimed in it for this process's
dispatcher and handed over in memory after the commit (``Engine.take``,
``Dispatcher.take``, ``Dispatcher.changed``): a change at a steady rate costs no claim
transaction of its own (docs/benchmarks.md, "Changes" 32).

What the dispatcher's own claim would leave alone, the take leaves alone too: links
whose write is in flight here or with another writer, links of a paused or deferred
system, links of a system at its share of writes, and links beyond the dispatcher's
room; those wake the claim loop, which claims them as before. Under load (a claim
batch in flight, a webhook delivery in progress) the take leaves every link to the
claim loop, whose batches give way to deliveries. A transaction that does not commit
hands nothing over, and a take that lands after the dispatcher stopped gives
its claims back. On a real store (SQLite and PostgreSQL), and with a real ``syncgate
serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import sqlalchemy as sa

from app import tables as t
from app.dispatcher import Dispatcher
from app.engine.batch import Batch, Taken
from app.model import ObjectRef, WorkItem, utcnow
from app.store import Link, Store, Tx
from tests.blackbox import (
    admin_client,
    eventually,
    free_port,
    metric_value,
    seed_fanned_out,
    settled,
    sim_objects,
    simulators,
    sqlite_gateway,
)
from tests.hostile.support import signed
from tests.rig import ALL_RESOLVED, Rig, linked, running_rig, statuses

WRITTEN = ("devhelm", "inboxops", "incidentio")  # a hookstream change is written to these


class Started(list[tuple[Link, WorkItem | None]]):
    """What the dispatcher's ``run`` would have started writing (``Dispatcher._start``)."""

    def __call__(self, pairs: Sequence[tuple[Link, WorkItem | None]]) -> None:
        self.extend(pairs)


def working(dispatcher: Dispatcher, room: int = 10) -> Started:
    """The dispatcher as its ``run`` leaves it while it works, with ``room`` for more
    writes; returns what it is handed to start."""
    started = Started()
    dispatcher._free = lambda: room
    dispatcher._start = started
    dispatcher.wake.clear()
    return started


class Setup(NamedTuple):
    rig: Rig
    item_id: str
    #: the external id of each system's object
    ids: dict[str, str]
    dispatcher: Dispatcher
    started: Started


@contextlib.asynccontextmanager
async def linked_and_working(store: Store, room: int = 10) -> AsyncIterator[Setup]:
    """A hookstream issue linked to its three objects (``linked``), and the gateway's
    dispatcher as ``working`` leaves it."""
    async with running_rig(store) as rig:
        item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        yield Setup(rig, item_id, ids, dispatcher, working(dispatcher, room))


async def resolve(rig: Rig, ids: dict[str, str]) -> None:
    """A person resolves the hookstream issue; the gateway polls and sees it."""
    await rig.human("hookstream", ids["hookstream"], status="resolved")
    await rig.poll("hookstream")


async def claimed_by(store: Store, ids: dict[str, str]) -> dict[str, str | None]:
    """Who holds the claim on the link of each written system's object (``ids``)."""
    async with store.tx() as tx:
        rows = (
            await tx._run(
                sa.select(t.links.c.system, t.links.c.claimed_by).where(
                    t.links.c.system.in_(WRITTEN),
                    t.links.c.external_id.in_([ids[system] for system in WRITTEN]),
                )
            )
        ).all()
    return {row.system: row.claimed_by for row in rows}


async def write(dispatcher: Dispatcher, started: Started) -> None:
    """Write the links handed over and record the outcomes, as ``run`` would."""
    attempts = await asyncio.gather(*(dispatcher._attempt(link, item) for link, item in started))
    await dispatcher._record(list(attempts))


def claimed(dispatcher: Dispatcher, how: str) -> float:
    return dispatcher.metrics.dispatch_claimed.labels(how)._value.get()


async def test_the_links_a_change_makes_dirty_are_claimed_in_its_transaction(
    store: Store,
) -> None:
    async with linked_and_working(store) as (rig, _item_id, ids, dispatcher, started):
        by_claim = claimed(dispatcher, "claim")

        await resolve(rig, ids)

        assert sorted(link.system for link, _ in started) == list(WRITTEN)
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN, dispatcher.worker_id)
        assert dispatcher.in_flight == {link.id for link, _ in started}
        assert not dispatcher.wake.is_set()  # nothing left for the claim loop
        assert claimed(dispatcher, "handed") == 3
        assert claimed(dispatcher, "claim") == by_claim
        for _link, item in started:
            assert item is not None and item.status == "resolved"
        # handed over, they are written and recorded like any claimed link
        await write(dispatcher, started)
        assert await statuses(rig, ids) == ALL_RESOLVED
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)
        assert dispatcher.in_flight == set()


async def test_a_create_handed_over_records_its_intent_in_the_same_transaction(
    store: Store,
) -> None:
    async with running_rig(store) as rig:
        dispatcher = rig.gateway.dispatcher
        started = working(dispatcher)
        await rig.open_issue()
        await rig.poll("hookstream")  # the issue is new: three links to create

        assert sorted(link.system for link, _ in started) == list(WRITTEN)
        async with store.tx() as tx:
            links = await tx.links_by_id(link.id for link, _ in started)
        for link, _ in started:
            stored = links[link.id]
            assert stored.external_id is None
            assert (
                stored.create_payload is not None and stored.create_payload == link.create_payload
            )
            assert stored.create_claims == 1 and stored.create_started_at is not None
        await write(dispatcher, started)
        for system in WRITTEN:
            assert len(await rig.objects(system)) == 1


async def test_what_the_claim_would_leave_alone_the_take_leaves_to_it(store: Store) -> None:
    async with linked_and_working(store) as (rig, item_id, ids, dispatcher, started):
        async with store.tx() as tx:
            links = {link.system: link for link in await tx.links_of(item_id)}
            # incident.io's write is another process's, for a while yet
            await tx._run(
                sa.update(t.links)
                .where(t.links.c.id == links["incidentio"].id)
                .values(claimed_by="elsewhere", claimed_until=utcnow() + timedelta(minutes=5))
            )
            await tx.set_system("inboxops", paused=True)  # InboxOps' writes wait
        dispatcher.in_flight.add(links["devhelm"].id)  # DevHelm's is in flight here

        await resolve(rig, ids)

        assert started == []
        assert dispatcher.wake.is_set()  # the claim loop is told
        assert await claimed_by(store, ids) == {
            "devhelm": None,
            "inboxops": None,
            "incidentio": "elsewhere",
        }
        assert claimed(dispatcher, "handed") == 0


async def test_a_system_at_its_share_and_a_dispatcher_without_room_are_respected(
    store: Store,
) -> None:
    async with linked_and_working(store, room=1) as (rig, _item_id, ids, dispatcher, started):
        dispatcher.flying["devhelm"] = dispatcher.settings.per_system  # DevHelm's share is out

        await resolve(rig, ids)

        # one of the other two, in id order, as the claim would take them
        assert [link.system for link, _ in started] == ["inboxops"]
        assert dispatcher.wake.is_set()
        assert await claimed_by(store, ids) == {
            "devhelm": None,
            "inboxops": dispatcher.worker_id,
            "incidentio": None,
        }


async def test_a_dispatcher_with_a_batch_in_flight_leaves_the_links_to_its_claim_loop(
    store: Store,
) -> None:
    """Under load the claim loop takes links in batches, after giving way to deliveries;
    a take in every engine transaction cost more (docs/benchmarks.md, "Changes" 32)."""
    async with linked_and_working(store) as (rig, _item_id, ids, dispatcher, started):
        elsewhere = range(10**6, 10**6 + dispatcher._take_below)  # other items' writes
        dispatcher.in_flight.update(elsewhere)

        await resolve(rig, ids)

        assert started == []
        assert dispatcher.wake.is_set()
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)
        dispatcher.in_flight.discard(min(elsewhere))  # one fewer: it takes again
        await rig.human("hookstream", ids["hookstream"], status="acknowledged")
        await rig.poll("hookstream")
        # those whose objects show acknowledged differently from open (an incident.io
        # follow-up has no such status: outstanding, as for open, so no write)
        assert sorted(link.system for link, _ in started) == ["devhelm", "inboxops"]


async def test_while_deliveries_are_coming_the_links_are_left_to_the_claim_loop(
    store: Store,
) -> None:
    """It gives way to them first; writes started in the middle of a burst doubled its
    ingest p99 (docs/benchmarks.md, "Changes" 32)."""
    async with linked_and_working(store) as (rig, _item_id, ids, dispatcher, started):
        dispatcher.ingest.enter()  # a delivery in progress
        try:
            await resolve(rig, ids)
        finally:
            dispatcher.ingest.leave()

        assert started == []
        assert dispatcher.wake.is_set()
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)


async def test_a_link_whose_item_the_transaction_did_not_load_is_handed_with_it(
    store: Store,
) -> None:
    """A link moved to an item its transaction never loaded: the take reads the item
    rather than failing the transaction."""
    async with linked_and_working(store) as (_rig, item_id, _ids, dispatcher, _started):
        async with store.tx() as tx:
            batch = Batch(tx, utcnow())
            await batch.load({item_id})
            dirty = sorted(link.id for link in batch.links_of(item_id) if link.system in WRITTEN)
            batch.mark_dirty(dirty, batch.items[item_id].version)
            await batch.flush()
            batch.items.clear()  # as if the links had moved to an item not loaded
            taken = await dispatcher.take(tx, batch, dirty)
        assert taken is not None and taken.left == 0
        assert [link.id for link, _ in taken.pairs] == dirty
        assert {item.id for _, item in taken.pairs if item is not None} == {item_id}


async def test_a_dispatcher_that_is_not_running_takes_nothing(store: Store) -> None:
    async with running_rig(store) as rig:
        _item_id, ids = await linked(rig)
        dispatcher = rig.gateway.dispatcher
        dispatcher.wake.clear()

        await resolve(rig, ids)

        assert dispatcher.wake.is_set()
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)
        assert claimed(dispatcher, "handed") == 0
        await dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED


async def test_a_take_in_a_transaction_that_does_not_commit_hands_nothing_over(
    store: Store,
) -> None:
    async with linked_and_working(store) as (rig, _item_id, ids, dispatcher, started):
        engine = rig.gateway.engine
        await rig.human("hookstream", ids["hookstream"], status="resolved")
        issue = await rig.gateway.adapters["hookstream"].get(
            ObjectRef("hookstream", "", ids["hookstream"])
        )
        taken: list[Taken | None] = []

        async def take_then_fail(tx: Tx, batch: Batch, dirty: list[int]) -> Taken | None:
            taken.append(await dispatcher.take(tx, batch, dirty))
            raise RuntimeError("the transaction fails after the take")

        engine.take = take_then_fail
        with pytest.raises(RuntimeError):
            await engine.observe_many([(issue, None)])

        assert taken and taken[0] is not None and len(taken[0].pairs) == 3  # it did claim
        assert started == [] and dispatcher.in_flight == set()
        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)  # rolled back


async def test_a_take_handed_over_after_the_dispatcher_stopped_gives_its_claims_back(
    store: Store,
) -> None:
    async with linked_and_working(store) as (rig, item_id, ids, dispatcher, _started):
        dispatcher._start = None  # ``run`` ended between the take and the commit

        await resolve(rig, ids)
        releasing = set(dispatcher._releasing)
        assert releasing
        await asyncio.gather(*releasing)

        assert await claimed_by(store, ids) == dict.fromkeys(WRITTEN)
        assert dispatcher.in_flight == set()
        async with store.tx() as tx:
            links = await tx.links_of(item_id)
        assert all(link.dirty for link in links if link.system in WRITTEN)
        dispatcher._free = None
        async with store.tx() as tx:  # due again after the release's short backoff
            await tx._run(sa.update(t.links).values(next_attempt_at=None))
        await dispatcher.run_until_idle()
        assert await statuses(rig, ids) == ALL_RESOLVED


# -- a real gateway -----------------------------------------------------------------------


async def claimed_total(gateway_url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=gateway_url) as plain:
        text = (await plain.get("/metrics")).text
    return {
        how: metric_value(text, "syncgate_dispatch_claimed_total", how=how)
        for how in ("claim", "handed")
    }


class Fanned(NamedTuple):
    url: str
    control: dict[str, httpx.AsyncClient]
    admin: httpx.AsyncClient
    #: the InboxOps tickets' ids, one per subject
    tickets: list[str]


@contextlib.asynccontextmanager
async def fanned_out_gateway(
    tmp_path: Path, subjects: list[str], *, quiet: str
) -> AsyncIterator[Fanned]:
    """A real ``syncgate serve`` on SQLite, and an InboxOps ticket per subject fanned out
    by it to DevHelm and incident.io; then the simulator ``quiet`` sends no webhooks."""
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (_sims, control):
        gateway = sqlite_gateway(tmp_path, control, port, "handover")
        try:
            await gateway.ready()
            async with admin_client(gateway.url) as admin:
                tickets = await seed_fanned_out(control, admin, subjects)
                response = await control[quiet].put("/_sim/webhook", json={"url": None})
                assert response.status_code < 300, response.text
                yield Fanned(gateway.url, control, admin, tickets)
        finally:
            await gateway.stop()


async def written(gw: Fanned, subjects: set[str]) -> bool:
    """Every subject is the title of a DevHelm incident and of an incident.io follow-up,
    and the gateway has nothing left to do."""
    for name in ("devhelm", "incidentio"):
        titles = {str(o["title"]) for o in await sim_objects(gw.control[name])}
        if not subjects <= titles:
            return False
    return await settled(gw.admin)


@pytest.mark.slow
async def test_changes_one_at_a_time_are_written_with_no_claim_of_their_own(
    tmp_path: Path,
) -> None:
    """A real ``syncgate serve`` on SQLite; InboxOps tickets fanned out to DevHelm and
    incident.io are edited one at a time, each edit written before the next. Every
    write is claimed in the transaction that applied its edit: the dispatcher's own
    claims, which it still runs when idle, find none of them."""
    edits = 12
    subjects = [f"Refunds stuck for customer {n}" for n in range(3)]
    # no echo of a write arrives while the next edit is applied: a delivery in progress
    # leaves the links to the claim loop (IngestFirst)
    async with fanned_out_gateway(tmp_path, subjects, quiet="incidentio") as gw:
        before = await claimed_total(gw.url)
        for n in range(edits):
            ticket, subject = gw.tickets[n % 3], f"{subjects[n % 3]} (edit {n})"
            response = await gw.control["inboxops"].patch(
                f"/_sim/objects/{ticket}", json={"subject": subject}
            )
            assert response.status_code == 200, response.text
            await eventually(
                lambda subject=subject: written(gw, {subject}),
                timeout_s=30,
                what=f"edit {n} written",
            )
        after = await claimed_total(gw.url)
    assert after["handed"] - before["handed"] == 2 * edits
    assert after["claim"] - before["claim"] == 0


@pytest.mark.slow
async def test_under_a_burst_of_deliveries_the_claim_loop_claims_most_writes(
    tmp_path: Path,
) -> None:
    """A real ``syncgate serve`` on SQLite takes a burst of signed InboxOps changes, 32
    deliveries always in flight. Most writes are claimed by the dispatcher's own claims,
    in batches that give way to the deliveries; a take in every engine transaction
    would start writes in the middle of the burst, at 1.16 x the CPU per change
    (docs/operations.md, ``syncgate_dispatch_claimed_total``; docs/benchmarks.md,
    "Changes" 32).

    How many are handed over depends on the gaps between deliveries: 7-27 % of the
    writes here, up to half with both cores busy with other work; 93-97 % with the
    take's two limits removed, 24-60 % with either one removed (each limit alone
    is checked in process above)."""
    tickets_n, bursts, in_flight = 48, 8, 32
    subjects = [f"Burst ticket {n}" for n in range(tickets_n)]
    # the deliveries come from here, so that 32 are always in flight; each is what
    # InboxOps would send for an edit made in it first
    async with fanned_out_gateway(tmp_path, subjects, quiet="inboxops") as gw:
        before = await claimed_total(gw.url)
        deliveries = []  # every edit made first, then their deliveries at once
        for burst in range(bursts):
            deliveries += await edited(gw.control, gw.tickets, f"burst {burst}")
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            await deliver_all(client, deliveries, in_flight)
        final = {f"Burst ticket {n} (burst {bursts - 1})" for n in range(tickets_n)}
        await eventually(lambda: written(gw, final), timeout_s=60, what="every burst written")
        after = await claimed_total(gw.url)
    claim = after["claim"] - before["claim"]
    handed = after["handed"] - before["handed"]
    # a change is written at most once to each of the two systems (fewer where a ticket's
    # changes coalesce), and each ticket's last change to both; a delivery handled after
    # a newer one of its ticket (32 in flight) has the ticket read again, through a claim
    # of its InboxOps link (``Engine._stepped_back``): at most one more per delivery
    assert 2 * tickets_n <= claim + handed <= 3 * tickets_n * bursts
    assert handed < (claim + handed) * 3 / 4, f"{handed} of {claim + handed} writes handed over"


async def edited(
    control: dict[str, httpx.AsyncClient], tickets: list[str], tag: str
) -> list[bytes]:
    """Each ticket's subject edited in InboxOps, and the ``ticket.updated`` body it would
    send for the edit (the simulator's own shape)."""
    bodies = []
    for n, ticket in enumerate(tickets):
        response = await control["inboxops"].patch(
            f"/_sim/objects/{ticket}", json={"subject": f"Burst ticket {n} ({tag})"}
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        event = {"id": f"evt_{tag}_{n}", "type": "ticket.updated", "created_at": data["updated_at"]}
        bodies.append(json.dumps({**event, "data": data}).encode())
    return bodies


async def deliver_all(client: httpx.AsyncClient, bodies: list[bytes], in_flight: int) -> None:
    """Every body delivered, signed as InboxOps signs, ``in_flight`` at a time."""
    queue = list(reversed(bodies))

    async def sender() -> None:
        while queue:
            body = queue.pop()
            response = await client.post(
                "/webhooks/inboxops", content=body, headers=signed("inboxops", body)
            )
            assert response.status_code == 202, response.text

    await asyncio.gather(*(sender() for _ in range(in_flight)))
