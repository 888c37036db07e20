"""The dispatcher: claims dirty links and writes the canonical state to vendors.

The only caller of adapter writes. For each claimed link (one writer per link: a claim is
a lease in the database) it renders the item's *current* canonical state for that system,
compares it in meaning with what the object is known to hold, and sends only the
difference (nothing at all when there is none). So a burst of changes before a write
coalesces into one call carrying the latest state.

It works as a pipeline: up to ``concurrency`` writes are in flight at once, new dirty
links are claimed as soon as there is room (together with their items, in one
transaction), and finished writes are recorded in batches, each batch one transaction.
A link stays claimed until its outcome is recorded (a deadlock or serialization failure
runs the recording transaction again); should recording fail for good, the claims are
released at once rather than left to lapse with their leases.

Failures: a 429 defers every write to that system until ``Retry-After`` while the other
systems keep flowing; transient errors retry with exponential backoff and jitter up to
``max_attempts``; rejected, auth and not-found errors (and exhausted retries) are
dead-lettered with their reason, visible and retryable through the admin API.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec

from adapters.base import Adapter
from app.alerts import Alerter
from app.config.schema import DispatcherSettings
from app.engine.batch import Batch, Taken
from app.errors import (
    FatalError,
    RateLimited,
    RetriableError,
    StateConflict,
    VendorError,
    detached,
)
from app.loops import Grouped, IngestFirst, wait_any
from app.metrics import Metrics
from app.model import Fields, VendorObject, WorkItem, keep_held, utcnow
from app.retry import backoff_delay, capped_delay
from app.rules import Rules
from app.store import FinishedWrite, HistoryEntry, Link, Store, Tx, WriteAttempt

if TYPE_CHECKING:
    from app.engine import Engine

log = logging.getLogger("syncgate.dispatcher")


def unchanged(known: VendorObject | None, fresh: VendorObject) -> bool:
    """Whether a read shows the object as the link last saw it: same vendor time, same
    canonical fields, same native and unmapped values (a vendor change of any of them,
    or of its time alone, is not "unchanged")."""
    return (
        known is not None
        and fresh.updated_at == known.updated_at
        and fresh.fields == known.fields
        and fresh.native == known.native
        and fresh.unmapped == known.unmapped
    )


#: While deliveries keep coming, at most this many finished writes are recorded in one
#: transaction (a few milliseconds holding the loop; ``IngestFirst``).
RECORD_WHILE_BUSY = 4 * IngestFirst.SMALL_ROUND
#: How many finished writes the recorder waits for, while others run (``GATHER_S``).
RECORD_GATHER = RECORD_WHILE_BUSY
#: ... besides the first, which it has taken already when it starts to wait.
RECORD_WANT = RECORD_GATHER - 1

#: Under load the dispatcher works in batches, not a transaction per write. With slow
#: vendors (a real API answers in tens to hundreds of milliseconds) the writes in flight
#: finish one by one; claiming a link into each slot as it frees, and recording each
#: outcome as it comes, cost a claim and a recording transaction per write: four times
#: the transactions per change of a fast vendor (docs/benchmarks.md, "Slow vendors").
#: So, while other writes are still running, the recorder waits up to ``GATHER_S`` for
#: ``RECORD_GATHER`` finished writes (not when nothing else is in flight: a lone change
#: is recorded at once), and with more links due than slots (the last claim took all it
#: asked for) the dispatcher claims ``1 / CLAIM_SHARE`` of its ``concurrency`` ahead:
#: they wait for slots, and it claims again once that many have started.
GATHER_S = 0.01
CLAIM_SHARE = 4

#: The unconfirmed states kept per link (``Dispatcher._sending``): the newest, should a
#: vendor keep failing while the item keeps changing.
UNCONFIRMED_KEPT = 4

T = TypeVar("T")


async def await_finished(
    done: asyncio.Queue[T],
    *,
    want: int,
    arrived: asyncio.Event,
    running: Callable[[], int],
    within_s: float,
) -> None:
    """Return once ``done`` holds ``want`` finished writes, no write is running
    (``running()``), or ``within_s`` has passed. ``arrived`` is set when a write finishes
    that makes one of the first two true (it may be set more often)."""
    deadline = time.monotonic() + within_s
    while running() > 0:
        arrived.clear()  # before looking: a write finishing after the look sets it
        if done.qsize() >= want:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await wait_any(arrived, seconds=left)


def finished_writes(first: T, done: asyncio.Queue[T], *, busy: bool) -> list[T]:
    """``first`` and the writes that finished with it, to be recorded together: all of
    them, or at most ``RECORD_WHILE_BUSY`` while deliveries keep coming (the rest wait
    for the next transaction)."""
    batch = [first]
    limit = RECORD_WHILE_BUSY if busy else None
    while not done.empty() and (limit is None or len(batch) < limit):
        batch.append(done.get_nowait())
    return batch


class Attempt(msgspec.Struct, kw_only=True):
    """One write and how it went, waiting to be recorded."""

    link: Link
    action: str  # create | update
    version: int
    attempt: int = 0
    payload: dict[str, object] = msgspec.field(default_factory=dict)
    duration_s: float = 0.0
    #: What the vendor holds now: the written object, or (with ``error``) an object
    #: created before a follow-up call failed. None when no call was needed.
    obj: VendorObject | None = None
    error: VendorError | None = None
    #: Not a vendor's answer: this process failed (a bug, or the item vanished).
    crash: str | None = None
    #: False: no call was needed (the object already holds the state, or none could be made).
    called: bool = True
    #: The system was disabled between the claim and the write: not tried, it waits.
    held: bool = False
    #: A create not tried: the system refuses the item's value of a field every create
    #: carries (a blank title), so the create waits, not dirty, for the item to take
    #: one (``Rules.create_waits_for``); the reason, for the link and the history.
    waiting: str | None = None
    #: When the item reached the state written (its last canonical change).
    changed_at: datetime | None = None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        rules: Rules,
        adapters: Mapping[str, Adapter],
        settings: DispatcherSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        ingest: IngestFirst | None = None,
        engine: Engine | None = None,
        alerter: Alerter | None = None,
    ) -> None:
        self.store = store
        #: Notices for dead letters and long deferrals (None: none are sent).
        self.alerter = alerter
        #: Folds what a read before a write finds into the work item (None: no reads).
        self.engine = engine
        self.rules = rules
        self.adapters = adapters
        self.settings = settings
        self.metrics = metrics or Metrics()
        #: ``syncgate_dispatch_transactions_total`` by kind, counted as each commits
        self._committed = {
            kind: self.metrics.dispatch_transactions.labels(kind)
            for kind in ("claim", "record", "renew", "release")
        }
        #: ``syncgate_dispatch_claimed_total`` by how the links were claimed
        self._claimed_how = {
            how: self.metrics.dispatch_claimed.labels(how) for how in ("claim", "handed")
        }
        self.clock = clock
        self.worker_id = worker_id or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.wake = asyncio.Event()
        self.ingest = ingest or IngestFirst()
        #: Links whose writes this process has in flight: their claims are renewed until
        #: the outcome is recorded, and they are never claimed a second time meanwhile.
        self.in_flight: set[int] = set()
        #: The same writes counted per system: a system with its share of them
        #: (``per_system``) gets no more claimed until one is recorded.
        self.flying: collections.Counter[str] = collections.Counter()
        #: Systems that reached their share: none of their links is claimed until a batch
        #: of their writes (``1 / CLAIM_SHARE`` of the share) is recorded (``_full``).
        self._held: set[str] = set()
        #: Engine changes so far (``changed``), and their count when each write in flight
        #: was claimed: recorded after a later change, a write may leave its link dirty
        #: again (the item moved on while it was in flight), to be claimed once more.
        self.changes = 0
        self._claimed_at: dict[int, int] = {}
        #: While ``run`` works: how many more links it has room to claim now, and how
        #: links claimed for it are started (``take``, ``changed``).
        self._free: Callable[[], int] | None = None
        self._start: Callable[[Sequence[tuple[Link, WorkItem | None]]], None] | None = None
        #: Claims handed over after ``run`` stopped, being given back.
        self._releasing: set[asyncio.Task[None]] = set()
        #: Per link claimed: the unconfirmed states its claim (and the fold of its read)
        #: added, taken back should its write fail before any call (``_record_outcomes``).
        self._noted: dict[int, list[dict[str, object]]] = {}
        #: Reads before writes, folded in by the engine in batches.
        self._folding: Grouped[tuple[Link, VendorObject], tuple[Link, WorkItem] | None] = Grouped(
            self._fold
        )

    def changed(self, taken: Taken | None = None) -> None:
        """The engine made links dirty (its ``on_change``): write those it claimed for
        this process in its transaction (``take``), and claim the rest."""
        self.changes += 1
        if taken is not None and taken.pairs:
            if self._start is not None:
                self._took([link for link, _ in taken.pairs], self.changes)
                self._claimed_how["handed"].inc(len(taken.pairs))
                self._start(taken.pairs)
            else:  # the dispatcher stopped since the take: the claims go back at once
                task = asyncio.get_running_loop().create_task(
                    self._release([link.id for link, _ in taken.pairs])
                )
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)
        if taken is None or taken.left:
            self.wake.set()

    async def take(self, tx: Tx, batch: Batch, dirty: Sequence[int]) -> Taken | None:
        """In an engine transaction that made links dirty (``dirty``, all loaded in
        ``batch``; ``Engine.take``): claim for this process those of them it has room to
        write now, as its own claim would (``claim_due_links``, among these links only),
        so that no claim transaction of the dispatcher's follows each change.

        None while the dispatcher is not running, while deliveries are coming
        (``IngestFirst.busy``), and while it has a batch of writes in flight already
        (``CLAIM_SHARE``): under load its own claims take links in batches, after giving
        way to deliveries, and changes that arrive meanwhile coalesce into fewer writes.
        Taken in every engine transaction instead, they cost 1.16 x the CPU per change
        at c = 32, and taken with deliveries coming, writes started in the middle of a
        burst doubled its ingest p99 (docs/benchmarks.md, "Changes" 32)."""
        if self._free is None or self.ingest.busy or len(self.in_flight) >= self._take_below:
            return None
        wanted = [link_id for link_id in dirty if link_id not in self.in_flight]
        room = self._free()
        if room <= 0:
            return Taken([], len(wanted))
        full = set(self._left_out())
        among = [
            link_id
            for link_id in wanted
            if link_id in batch.links and batch.links[link_id].system not in full
        ]
        if not among:
            return Taken([], len(wanted))
        links = await tx.claim_due_links(
            worker=self.worker_id,
            now=batch.now,
            lease=timedelta(seconds=self.settings.lease_s),
            limit=room,
            among=among,
        )
        item_ids = {link.work_item_id for link in links}
        items = {i: batch.items[i] for i in item_ids & batch.items.keys()}
        if missing := item_ids - items.keys():  # moved to an item the batch did not load
            items |= await tx.items_by_id(missing)
        await self._prepare(tx, links, items)
        pairs = [(link, items.get(link.work_item_id)) for link in links]
        return Taken(pairs, len(wanted) - len(links))

    @property
    def _take_below(self) -> int:
        """``take`` claims while fewer writes than a claim batch are in flight."""
        return max(1, self.settings.concurrency // CLAIM_SHARE)

    @property
    def _held_until(self) -> int:
        """A held system is claimed for again once its writes in flight are down to
        this: its share less a batch (``1 / CLAIM_SHARE`` of it)."""
        share = self.settings.per_system
        return share - max(1, share // CLAIM_SHARE)

    def _full(self) -> list[str]:
        """The systems to leave out of the next claim: each that reached its share of
        writes in flight, until a batch of them is recorded (not one at a time: with a
        slow vendor that would be a claim per write)."""
        share, until = self.settings.per_system, self._held_until
        for system, n in self.flying.items():
            if n >= share:
                self._held.add(system)
            elif n <= until:
                self._held.discard(system)
        return sorted(self._held)

    def _left_out(self) -> list[str]:
        """The systems the next claim leaves alone: those at their share of writes in
        flight (``_full``) and those the config disables (``enabled: false``), whose
        writes wait in the outbox until the system is enabled again."""
        return sorted(set(self._full()) | self.rules.disabled)

    def _room_for_held(self) -> bool:
        until = self._held_until
        return any(self.flying[system] <= until for system in self._held)

    # -- loops -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the links that are due now, write them in parallel and record the
        outcomes; returns how many were claimed."""
        claimed = await self._claim(self.settings.concurrency * 2)
        if claimed:
            attempts = await asyncio.gather(*(self._attempt(link, item) for link, item in claimed))
            await self._record(list(attempts))
        return len(claimed)

    async def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Write until nothing is due now (writes waiting on a backoff or a Retry-After
        are left for later)."""
        for _ in range(max_rounds):
            if await self.run_once() == 0:
                return

    async def run(self, stop: asyncio.Event, idle_s: float = 0.5) -> None:
        """Work until ``stop`` is set: keep up to ``concurrency`` writes in flight,
        claiming as soon as there is room and something is due (woken when links become
        dirty or a recorded write left its link dirty; every ``idle_s`` for backoffs
        coming due). On stop, the writes in flight finish and are recorded.

        With more links due than slots, it claims a batch ahead (``CLAIM_SHARE``): those
        links wait for a slot, claimed, and the next claim comes once a batch of them
        has started, so no slot waits for a claim and no claim is made for one slot."""
        loop = asyncio.get_running_loop()
        done: asyncio.Queue[Attempt] = asyncio.Queue()
        in_flight: set[asyncio.Task[None]] = set()
        room = asyncio.Event()
        arrived = asyncio.Event()  # a write finished
        recorder = loop.create_task(
            self._record_from(done, arrived, lambda: len(in_flight)), name="dispatcher-recorder"
        )
        renewer = loop.create_task(self._renew_claims(stop), name="dispatcher-renewer")

        # No system has more than its share of the calls in progress: a write past it
        # waits for its system's lane, without taking one of the ``concurrency`` slots,
        # so a vendor whose calls hang cannot hold every slot while the others wait.
        share = self.settings.per_system
        lanes: collections.defaultdict[str, asyncio.Semaphore] = collections.defaultdict(
            lambda: asyncio.Semaphore(share)
        )
        slots = asyncio.Semaphore(self.settings.concurrency)
        queued = 0  # writes waiting for their system's lane

        async def write(link: Link, item: WorkItem | None) -> None:
            nonlocal queued
            lane = lanes[link.system]
            waits = lane.locked()
            queued += waits
            try:
                await lane.acquire()
            finally:
                queued -= waits
            try:
                async with slots:
                    await done.put(await self._attempt(link, item))
            finally:
                lane.release()

        def finished(task: asyncio.Task[None]) -> None:
            # Wake the claim loop and the recorder only when they would act, not for every
            # write: with slow vendors the writes finish one by one, and a wake that finds
            # too little to do is a round of the event loop and a wait set up again, for
            # each write, in each of the two.
            in_flight.discard(task)
            if free() >= wanted():
                room.set()  # the claim loop's own condition for a claim
            if not in_flight or done.qsize() >= RECORD_WANT:
                arrived.set()  # the recorder's (await_finished)

        def free() -> int:
            """Links that may be claimed now (those waiting for their lane not counted)."""
            return capacity - (len(in_flight) - queued)

        def wanted() -> int:
            """The room a claim waits for: a batch while links are waiting, else one."""
            return batch if more_due else 1

        def start(pairs: Sequence[tuple[Link, WorkItem | None]]) -> None:
            """Write claimed links (claimed here, or in an engine transaction: ``take``)."""
            for link, item in pairs:
                task = loop.create_task(write(link, item))
                in_flight.add(task)
                task.add_done_callback(finished)

        batch = max(1, self.settings.concurrency // CLAIM_SHARE)
        # writes claimed, not counting those waiting for their lane: every slot, and a
        # batch waiting for one
        capacity = self.settings.concurrency + batch
        more_due = False  # the last claim took all it asked for: links are waiting
        self._start, self._free = start, free
        try:
            while not stop.is_set():
                room_now = free()
                if room_now < wanted():
                    # every slot is busy: the next claim when a batch has left the wait
                    room.clear()
                    await wait_any(room, stop, seconds=idle_s)
                    continue
                self.wake.clear()
                if not await self.ingest.give_way():
                    room_now = min(room_now, IngestFirst.SMALL_ROUND)
                # a system with its share claimed already gets no more for now
                full = self._left_out()
                try:
                    claimed = await self._claim(room_now, full=full)
                except Exception:
                    log.exception("claiming writes failed")
                    await wait_any(stop, seconds=idle_s)
                    continue
                start(claimed)
                more_due = len(claimed) >= room_now
                if not more_due:  # nothing more is due now
                    await wait_any(self.wake, stop, seconds=idle_s)
        finally:
            # the engine's takes claim no more; those handed over meanwhile still start
            self._free = None
            while in_flight:
                await asyncio.wait(set(in_flight))
            self._start = None
            await done.join()
            for task in (recorder, renewer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _renew_claims(self, stop: asyncio.Event) -> None:
        """Keep the claims of the writes in flight: every third of a lease, push their
        leases out by a whole lease, so a slow vendor call never loses its claim to
        another writer (which would send the same create twice). A crashed process stops
        renewing, and its claims lapse one lease later."""
        lease = timedelta(seconds=self.settings.lease_s)
        while not stop.is_set():
            await wait_any(stop, seconds=self.settings.lease_s / 3)
            if not self.in_flight:
                continue
            try:
                async with self.store.tx() as tx:
                    await tx.renew_claims(
                        self.in_flight, worker=self.worker_id, until=self.clock() + lease
                    )
                self._committed["renew"].inc()
            except Exception:
                log.exception("renewing claims failed")

    async def _record_from(
        self, done: asyncio.Queue[Attempt], arrived: asyncio.Event, running: Callable[[], int]
    ) -> None:
        """Record finished writes, as many per transaction as have finished meanwhile
        (``finished_writes``), waiting a little for more while others are still running
        (``await_finished``)."""
        while True:
            first = await done.get()
            await await_finished(
                done, want=RECORD_WANT, arrived=arrived, running=running, within_s=GATHER_S
            )
            batch = finished_writes(first, done, busy=self.ingest.busy)
            claimed_at = min(self._claimed_at.get(a.link.id, -1) for a in batch)
            try:
                with contextlib.suppress(Exception):  # logged by _record, claims released
                    await self._record(batch)
            finally:
                for _ in batch:
                    done.task_done()
            # claim again if a link may be dirty once more (its item changed while its
            # write was in flight) or a held system has room for a batch; not after every
            # record: with nothing to claim, that is an empty claim per record
            if claimed_at < self.changes or self._room_for_held():
                self.wake.set()

    # -- an operator's retries and discards -------------------------------------------------

    async def retry(self, link_id: int) -> Link:
        """Make one write (dead or failed) due now, and lift its system's 429 deferral.
        Returns the link as it was."""
        async with self.store.tx() as tx:
            link = await tx.require_link(link_id)
            if link.dead:
                await tx.revive(link_id)
            elif link.dirty:
                await tx.retry_now(link_id)
            else:
                raise StateConflict(f"link {link_id} has no pending write")
            await tx.lift_deferral(link.system)
        self.wake.set()
        return link

    async def retry_dead(self, system: str | None = None) -> int:
        """Make every dead letter (of one system, or of all) due now, and lift that
        system's (or every) deferral; returns how many."""
        async with self.store.tx() as tx:
            count = await tx.revive(system=system)
            await tx.lift_deferral(system)
        self.wake.set()
        return count

    async def discard(self, link_id: int, *, source: str = "admin") -> Link:
        """Give up on one write (pending, failed or dead); recorded in the item's
        history. Returns the link as it was."""
        async with self.store.tx() as tx:
            link = await tx.require_link(link_id)
            if link.dead:
                await tx.discard(link_id)
            elif link.dirty:
                await tx.discard_pending(link_id)
            else:
                raise StateConflict(f"link {link_id} has no pending write")
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=link.work_item_id,
                        kind="write_discarded",
                        system=link.system,
                        external_id=link.external_id,
                        event_id=source,
                        detail=f"{source} discarded the {link.state} write to {link.system}"
                        f" {link.external_id or '(not created)'}",
                        at=self.clock(),
                    )
                ]
            )
        return link

    async def discard_dead(self, system: str | None = None) -> int:
        """Give up on every dead letter (of one system, or of all); returns how many."""
        async with self.store.tx() as tx:
            return await tx.discard(system=system)

    # -- claiming --------------------------------------------------------------------------

    async def _claim(
        self, limit: int, *, full: Sequence[str] = ()
    ) -> list[tuple[Link, WorkItem | None]]:
        """Claim up to ``limit`` due links of systems not held back (nor ``full``: at
        their share of writes in flight), with their items, and prepare them
        (``_prepare``) in the same transaction. A deadlock with another process's
        transaction runs it again at once (``Store.retrying``): it failed the whole claim
        round, logged as an error with its traceback (bench.chaos, three processes)."""
        return await self.store.retrying(
            lambda: self._claim_once(limit, full=full), what="claiming writes"
        )

    async def _claim_once(
        self, limit: int, *, full: Sequence[str]
    ) -> list[tuple[Link, WorkItem | None]]:
        now = self.clock()
        # before the claim: an engine change committed after the claim's read counts as
        # later than it (``changed`` is called after the engine's commit)
        stamp = self.changes
        async with self.store.tx() as tx:
            links = await tx.claim_due_links(
                worker=self.worker_id,
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                limit=limit,
                busy=self.in_flight,
                full=full,
            )
            items = await tx.items_by_id(link.work_item_id for link in links)
            await self._prepare(tx, links, items)
        self._committed["claim"].inc()
        self._claimed_how["claim"].inc(len(links))
        self._took(links, stamp)
        return [(link, items.get(link.work_item_id)) for link in links]

    async def _prepare(self, tx: Tx, links: list[Link], items: Mapping[str, WorkItem]) -> None:
        """In the transaction that claimed ``links``: a create about to be tried for the
        first time records the fields it will send (its intent, kept with the
        idempotency key), and a link whose target version is ahead of its item
        (bookkeeping from another item) is brought back to the item's version, so that
        it cannot stay dirty forever. An update notes the state it will send among the
        link's unconfirmed ones (``_sending``)."""
        sending: dict[int, list[dict[str, object]]] = {}
        for link in links:
            self._noted[link.id] = []  # this claim's (a transaction run again starts over)
            item = items.get(link.work_item_id)
            if item is None:
                continue
            if (states := self._sending(link, item)) is not None:
                sending[link.id] = states
            if link.dirty_version > item.version:
                log.warning(
                    "link target version ahead of its item: repaired",
                    extra={"link_id": link.id, "work_item_id": item.id},
                )
                await tx.repair_dirty_version(link.id, item.version)
                link.dirty_version = item.version
            if link.external_id is None and link.create_payload is None:
                fields = self.rules.to_vendor(
                    link.system, self.rules.create_fields(link.system, item.fields())
                )
                if self.rules.create_waits_for(link.system, fields):
                    continue  # not tried (``_attempt``): its body is the item's once it can be
                link.create_payload = msgspec.to_builtins(fields.as_dict())
                await tx.save_create_intent(link.id, link.create_payload)
        await tx.save_unconfirmed(sending)

    def _sending(self, link: Link, item: WorkItem) -> list[dict[str, object]] | None:
        """The link's unconfirmed states with the one an update to ``item`` will send
        added (None: no update, or nothing new to note). Until a write's answer is
        recorded, the object may show what it sent at any moment (in flight, its answer
        lost, its process killed): seen there, that is the gateway's own write, not a
        person's edit, and it must not win over a change the item took since
        (``Engine._observe``). The state is noted in the transaction that claims the
        write (or that folds in the read before it), so every process sees it before
        the call; a finished write (answered, or needing no call) clears it."""
        if link.external_id is None:
            return None  # a create: the object is unknown to the engine until recorded
        target = self.rules.outgoing(link.system, item.fields())
        changes = self.rules.differs(link.system, link.known, target)
        if changes.is_empty():
            return None  # no call will be made
        # only what the write changes: its echo shows the other fields as they were, and
        # a person setting one of them back to its old value is no echo of this write
        state = msgspec.to_builtins(changes.as_dict())
        states = list(link.unconfirmed or [])
        if state in states:
            return None
        states = [*states, state][-UNCONFIRMED_KEPT:]
        link.unconfirmed = states
        self._noted.setdefault(link.id, []).append(state)
        return states

    def _took(self, links: list[Link], stamp: int) -> None:
        """Claimed (committed): in flight until recorded; ``stamp``, the engine changes
        the claim has seen (those counted before it read the links, or, for a take, up
        to the change it was made in)."""
        self.in_flight.update(link.id for link in links)
        self.flying.update(link.system for link in links)
        self._claimed_at.update((link.id, stamp) for link in links)

    # -- one write -------------------------------------------------------------------------

    async def _attempt(self, link: Link, item: WorkItem | None) -> Attempt:
        """Write one link's object. The outcome is recorded later, in a batch; only a
        read before an update touches the database here (through the engine)."""
        adapter = self.adapters.get(link.system)
        creating = link.external_id is None
        result = Attempt(
            link=link, action="create" if creating else "update", version=0, called=False
        )
        if adapter is None:
            if link.system in self.rules.disabled:  # disabled by a reload since the claim
                result.held, result.called = True, False
                return result
            result.error = FatalError(link.system, f"system {link.system!r} is not configured")
            return result
        if item is None:  # the item was deleted under us
            result.crash = "the work item no longer exists"
            return result
        result.version = item.version
        result.changed_at = item.updated_at
        started = time.perf_counter()
        if creating and (reason := self._create_waits(link, item)) is not None:
            result.waiting, result.called = reason, False
            return result
        try:
            if creating:
                await self._create(adapter, link, item, result)
            else:
                await self._update(adapter, link, item, result)
            if result.obj is not None:  # a vendor clock far ahead: kept as observed
                result.obj = self.rules.clamped(result.obj, self.clock())
                # a custom value the write left alone is still held
                result.obj = keep_held(result.link.known, result.obj)
        except VendorError as exc:
            result.error = detached(exc)  # kept past this frame, which its traceback holds
        except Exception as exc:
            log.exception("write crashed", extra={"system": link.system, "link_id": link.id})
            result.crash = f"internal error: {type(exc).__name__}: {exc}"
        result.duration_s = time.perf_counter() - started
        return result

    def _create_waits(self, link: Link, item: WorkItem) -> str | None:
        """Why the create of ``link`` cannot be tried yet, or None: its body (the first
        attempt's, else the item's now) holds a value the system refuses, a blank title
        (every create carries one; DevHelm and incident.io refuse it blank). Sent, it was
        refused and dead-lettered, though the item's next title would have fixed it; and
        the gateway invents no title for a customer's status page. It waits, without a
        call or a retry, and the item's next change (its title) makes it due."""
        body = (
            Fields.from_dict(link.create_payload)
            if link.create_payload is not None
            else self.rules.create_fields(link.system, item.fields())
        )
        waits = self.rules.create_waits_for(link.system, body)
        if not waits:
            return None
        names = " and ".join(waits)
        return (
            f"waiting for a {names}: {link.system} refuses a blank {names}; the create is"
            f" made once the work item has one"
        )

    async def _create(self, adapter: Adapter, link: Link, item: WorkItem, result: Attempt) -> None:
        """Create the object with the fields the first attempt recorded (the same body
        on every try, already in the system's terms: its user ids), then write whatever
        else the item holds by now."""
        assert link.create_target is not None and link.idempotency_key is not None
        fields = (
            Fields.from_dict(link.create_payload)
            if link.create_payload is not None
            else self.rules.to_vendor(
                link.system, self.rules.create_fields(link.system, item.fields())
            )
        )
        result.called = True
        result.attempt = link.attempts + 1
        result.payload = msgspec.to_builtins(fields.as_dict())
        # claimed before: an earlier attempt may have made the object since it started
        earlier = link.create_started_at if link.create_claims > 1 else None
        result.obj = await adapter.create(
            link.create_target, fields, link.idempotency_key, earlier_since=earlier
        )
        target = self.rules.outgoing(link.system, item.fields())
        rest = self.rules.differs(link.system, result.obj, target)
        if not rest.is_empty():  # a field the create call could not carry, or a newer value
            result.obj = await adapter.update(
                result.obj.ref, self.rules.to_vendor(link.system, rest), current=result.obj
            )

    async def _update(self, adapter: Adapter, link: Link, item: WorkItem, result: Attempt) -> None:
        """Write what the object lacks of the item's state; first, where the system
        asks for it, read the object and let the engine fold in any change we had not
        seen, so that a person's newer edit is never overwritten. With nothing to send
        there is no read, unless the object is marked to be read again
        (``VendorObject.reread``)."""
        assert link.ref is not None
        known = link.known
        changes = self.rules.differs(
            link.system, known, self.rules.outgoing(link.system, item.fields())
        )
        read_at: float | None = None
        if self._refreshes(link.system):
            if changes.is_empty() and not self._read_asked(link):
                return
            refreshed = await self._refresh(adapter, link, item)
            if refreshed is None:
                return  # the link was moved or removed meanwhile: nothing to write here
            folded = refreshed[0] is not link or refreshed[1] is not item
            link, item, known, read_at = refreshed
            result.link = link
            result.version = item.version
            result.changed_at = item.updated_at
            if folded:  # the engine took the read: the item and what the object holds moved
                target = self.rules.outgoing(link.system, item.fields())
                changes = self.rules.differs(link.system, known, target)
        assert link.ref is not None
        if changes.is_empty():
            return
        changes = self.rules.to_vendor(link.system, changes)  # assignees as its user ids
        result.called = True
        result.attempt = link.attempts + 1
        result.payload = msgspec.to_builtins(changes.as_dict())
        if read_at is not None:  # the window in which an edit there could still be missed
            self.metrics.refresh_window.labels(link.system).observe(time.perf_counter() - read_at)
        result.obj = await adapter.update(link.ref, changes, current=known)

    @staticmethod
    def _read_asked(link: Link) -> bool:
        """Whether the object is read before a write that has nothing to send (a change
        undone before its write: the item is back to what the link knows of the object,
        and no read can keep anything from being overwritten): when a write of the
        gateway's to it is unconfirmed (sent, its answer not recorded, the object may
        show what it sent), or a change that could not be dated asked for a read
        (``VendorObject.reread``)."""
        return bool(link.unconfirmed) or (link.known is not None and link.known.reread)

    def _refreshes(self, system: str) -> bool:
        settings = self.rules.settings.systems.get(system)
        return self.engine is not None and settings is not None and settings.refresh_before_write

    async def _refresh(
        self, adapter: Adapter, link: Link, item: WorkItem
    ) -> tuple[Link, WorkItem, VendorObject, float] | None:
        """Read the object. When it is what the link last saw of it (no change there
        since), the write goes ahead as claimed. Otherwise the read is handed to the
        engine like any observation (a change made there since we last saw it is applied
        or loses by the conflict policy, and either way is in the history), then the
        link and its item are read again. The reads that finish together are folded in
        together, in one transaction (``_fold``)."""
        assert link.ref is not None
        began = self.clock()
        fresh = msgspec.structs.replace(await adapter.get(link.ref), read_at=began)
        read_at = time.perf_counter()
        self.metrics.refresh_reads.labels(link.system).inc()
        if unchanged(link.known, fresh):
            # Nothing for the engine: applying it would change nothing but when the link
            # last synced. Should the item have moved on since the claim, the write
            # records an older version and the link stays dirty, as for any write.
            return link, item, keep_held(link.known, fresh), read_at
        current = await self._folding.submit((link, fresh))
        if current is None:
            return None
        # as the engine keeps it (an unmapped value with what it was set against)
        return current[0], current[1], keep_held(current[0].known, fresh), read_at

    async def _fold(
        self, reads: list[tuple[Link, VendorObject]]
    ) -> list[tuple[Link, WorkItem] | Exception | None]:
        """Apply reads before writes in one engine transaction that also re-reads their
        links and items: each link as it is now with its item, or None when the link was
        moved, removed or is no longer claimed by this write. Should the transaction
        fail with several reads in it, each is tried on its own, so that one bad read
        fails only its own write."""
        assert self.engine is not None
        out: list[tuple[Link, WorkItem] | Exception | None] = []

        async def reread(tx: Tx, _outcomes: object, batch: Batch) -> None:
            # The transaction holds (and on PostgreSQL has locked) the items of the
            # objects read and all their links, as it just wrote them: a link is read
            # from the database only when it is not among them (removed, or moved to an
            # item no object read is linked to).
            out.clear()
            links = {link.id: batch.links[link.id] for link, _ in reads if link.id in batch.links}
            items = dict(batch.items)
            if len(links) < len(reads):
                links |= await tx.links_by_id(link.id for link, _ in reads if link.id not in links)
                wanted = {link.work_item_id for link in links.values()} - items.keys()
                items |= await tx.items_by_id(wanted)
            sending: dict[int, list[dict[str, object]]] = {}
            for link, _ in reads:
                current = links.get(link.id)
                item = None if current is None else items.get(current.work_item_id)
                if current is None or item is None or current.claimed_by != link.claimed_by:
                    out.append(None)
                else:
                    out.append((current, item))
                    # the item may have moved on since the claim: the write sends it now
                    if (states := self._sending(current, item)) is not None:
                        sending[current.id] = states
            await tx.save_unconfirmed(sending)

        # What this claim noted was not sent yet (the read comes first): a person may
        # have set it, and it is no echo (``Engine._own_write``).
        observations = [
            (
                msgspec.structs.replace(fresh, unsent=tuple(self._noted.get(link.id, ()))),
                f"refresh-{link.id}",
            )
            for link, fresh in reads
        ]
        try:
            await self.engine.observe_many(observations, also=reread)
        except Exception as exc:  # noqa: BLE001 - handed to the write it belongs to
            if len(reads) == 1:
                return [exc]
            alone: list[tuple[Link, WorkItem] | Exception | None] = []
            for read in reads:
                alone += await self._fold([read])
            return alone
        return out

    # -- recording -------------------------------------------------------------------------

    async def _record(self, attempts: Sequence[Attempt]) -> None:
        """Record the outcomes of finished writes in one transaction, then count and log
        them. A deadlock or serialization failure runs the transaction again (a few
        times); should recording still fail, the links' claims are released, so their
        writes are due again at once instead of one lease later (they are sent again:
        an update carries absolute values, a create finds the object it made)."""
        try:
            await self.store.retrying(
                lambda: self._record_outcomes(attempts), what="recording writes"
            )
        except Exception:
            log.exception("recording writes failed; releasing their claims")
            await self._release([a.link.id for a in attempts])
            raise
        finally:
            # recorded or released: no longer ours to renew
            for a in attempts:
                if a.link.id in self.in_flight:
                    self.in_flight.discard(a.link.id)
                    self.flying[a.link.system] -= 1
                self._claimed_at.pop(a.link.id, None)
                self._noted.pop(a.link.id, None)

    async def _release(self, link_ids: list[int]) -> None:
        due = self.clock() + timedelta(seconds=self.settings.backoff_base_s)
        try:
            async with self.store.tx() as tx:
                await tx.release_claims(link_ids, worker=self.worker_id, due=due)
            self._committed["release"].inc()
        except Exception:
            log.exception("releasing claims failed; they lapse with their leases")

    async def _record_outcomes(self, attempts: Sequence[Attempt]) -> None:
        now = self.clock()
        outcomes: list[str] = []
        deferrals: list[tuple[str, float, str]] = []
        async with self.store.tx() as tx:
            # the batch's links first, in id order (as the engine takes them, after its
            # items): the updates below touch them in whatever order the writes finished
            await tx.lock_links(a.link.id for a in attempts)
            # A write left dirty (the item moved on while it was in flight) is due again
            # at once; one that needed no call waits a little first, so a link whose
            # state cannot be settled by writing never spins the dispatcher.
            settle = now + timedelta(seconds=self.settings.backoff_base_s)
            finished = [
                FinishedWrite(
                    link=a.link, obj=a.obj, version=a.version, again=None if a.called else settle
                )
                for a in attempts
                if a.error is None and a.crash is None and not a.held and a.waiting is None
            ]
            await tx.finish_writes(finished, now=now)
            await self._unnote_unsent(tx, attempts)
            attempt_rows = []
            history: list[HistoryEntry] = []
            for a in attempts:
                if a.held:  # waits, uncounted, until its system is enabled again
                    outcome = "held"
                    await tx.retry_link_later(
                        a.link,
                        error=f"system {a.link.system!r} is disabled (enabled: false): the write"
                        " waits until it is enabled again",
                        at=now,
                        count_attempt=False,
                    )
                elif a.waiting is not None:
                    outcome = "waiting"
                    await tx.wait_to_create(a.link, version=a.version, reason=a.waiting, now=now)
                    if a.link.last_error != a.waiting:  # once, not at every change of the item
                        history.append(
                            HistoryEntry(
                                work_item_id=a.link.work_item_id,
                                kind="waiting",
                                system=a.link.system,
                                detail=a.waiting,
                                at=now,
                            )
                        )
                elif a.crash is not None:
                    outcome = "crash"
                    await tx.retry_link_later(
                        a.link,
                        error=a.crash,
                        at=now + timedelta(seconds=self.settings.backoff_max_s),
                    )
                elif a.error is not None:
                    outcome = await self._failed(tx, a, a.error, now, history, deferrals)
                else:
                    outcome = "ok" if a.called else "noop"
                outcomes.append(outcome)
                if a.called:
                    attempt_rows.append(
                        WriteAttempt(
                            link_id=a.link.id,
                            work_item_id=a.link.work_item_id,
                            system=a.link.system,
                            action=a.action,
                            attempt=a.attempt,
                            outcome="retry" if outcome == "crash" else outcome,
                            status_code=a.error.status if a.error is not None else None,
                            error=str(a.error) if a.error is not None else a.crash,
                            duration_ms=a.duration_s * 1000,
                            payload=a.payload,
                            worker=self.worker_id,
                            at=now,
                            # what the item's history shows of a write (write_entry)
                            external_id=(
                                a.obj.ref.external_id
                                if outcome == "ok" and a.obj is not None
                                else None
                            ),
                            version=a.version if outcome == "ok" else None,
                        )
                    )
            await tx.add_attempts(attempt_rows)
            await tx.add_history(history)
        self._committed["record"].inc()
        if self.alerter is not None:  # after the commit: a transaction run again says it once
            for system, delay, reason in deferrals:
                self.alerter.deferred(system, delay, reason)
        for a, outcome in zip(attempts, outcomes, strict=True):
            self._count_and_log(a, outcome)

    async def _unnote_unsent(self, tx: Tx, attempts: Sequence[Attempt]) -> None:
        """A write that failed before any call (its read before the write failed: a 429,
        a 500, a timeout) sent nothing: the states its claim noted as unconfirmed are
        taken back. Kept, one of them was read as the echo of a write that never went
        out, and a person setting that value later (the item having moved on) was
        dropped without a trace, and written over. States an earlier attempt noted stay:
        that attempt may have sent them."""
        unsent = {
            a.link.id: added
            for a in attempts
            if a.error is not None and not a.called and not a.held
            if (added := self._noted.get(a.link.id))
        }
        if not unsent:
            return
        links = await tx.links_by_id(unsent)
        states: dict[int, list[dict[str, object]]] = {}
        for link_id, added in unsent.items():
            link = links.get(link_id)
            if link is None or not link.unconfirmed:
                continue
            kept = [state for state in link.unconfirmed if state not in added]
            if kept != link.unconfirmed:
                states[link_id] = kept
        await tx.save_unconfirmed(states)

    async def _failed(
        self,
        tx: Tx,
        a: Attempt,
        exc: VendorError,
        now: datetime,
        history: list[HistoryEntry],
        deferrals: list[tuple[str, float, str]],
    ) -> str:
        """Record a failed write; returns its outcome (rate_limited, retry or dead). A
        429's deferral is added to ``deferrals`` (system, seconds, reason) for the
        alerter."""
        link = a.link
        reason = str(exc)
        if a.obj is not None and link.external_id is None:
            # created, then a follow-up call failed: keep the new object linked, so the
            # next attempt updates it instead of creating another
            await tx.record_created(link, a.obj, now)
        if isinstance(exc, RateLimited):
            delay = self.defer_seconds(exc.retry_after)
            until = now + timedelta(seconds=delay)
            deferrals.append((link.system, delay, reason))
            await tx.set_system(link.system, deferred_until=until, last_write_error=reason)
            await tx.retry_link_later(link, error=reason, at=until, count_attempt=False)
            return "rate_limited"
        await tx.set_system(link.system, last_write_error=reason)
        if (isinstance(exc, RetriableError) or not isinstance(exc, FatalError)) and (
            a.attempt < self.settings.max_attempts
        ):
            delay = backoff_delay(
                max(1, a.attempt),
                base_s=self.settings.backoff_base_s,
                max_s=self.settings.backoff_max_s,
            )
            await tx.retry_link_later(link, error=reason, at=now + timedelta(seconds=delay))
            return "retry"
        if isinstance(exc, FatalError):
            await tx.dead_letter(link, reason)
        else:
            await tx.dead_letter(link, f"gave up after {a.attempt} attempts: {reason}")
        history.append(
            HistoryEntry(
                work_item_id=link.work_item_id,
                kind="dead_letter",
                system=link.system,
                external_id=link.external_id,
                detail=reason,
                at=now,
            )
        )
        return "dead"

    def defer_seconds(self, retry_after: float) -> float:
        """How long a 429 holds the system back: its Retry-After, capped at
        ``max_defer_s`` (a vendor asking for a day, or for 1e12 seconds, must not
        silence a system), and never negative or not a number."""
        return capped_delay(retry_after, self.settings.max_defer_s)

    def _count_and_log(self, a: Attempt, outcome: str) -> None:
        link = a.link
        if outcome == "held":  # no write was made
            return
        if outcome == "waiting":  # no write was made; the link and the history say why
            log.info(
                "create waits",
                extra={
                    "work_item_id": link.work_item_id,
                    "system": link.system,
                    "link_id": link.id,
                },
            )
            return
        self.metrics.writes.labels(link.system, a.action, outcome).inc()
        if outcome == "ok":
            self.metrics.write_latency.labels(link.system).observe(a.duration_s)
            if a.changed_at is not None:
                lag = (self.clock() - a.changed_at).total_seconds()
                self.metrics.propagation.labels(link.system).observe(max(0.0, lag))
            # the write is in the database (its attempt, the item's history): a line
            # each is for debugging, not for the default log (README, "Running it")
            log.debug(
                "wrote",
                extra={
                    "work_item_id": link.work_item_id,
                    "system": link.system,
                    "link_id": link.id,
                    "action": a.action,
                    "duration_ms": round(a.duration_s * 1000, 2),
                },
            )
            return
        if outcome == "noop":
            return
        if outcome in ("retry", "crash"):
            self.metrics.retries.labels(link.system).inc()
        if outcome == "dead":
            self.metrics.dead_letters.labels(link.system).inc()
            if self.alerter is not None:
                error = str(a.error) if a.error is not None else a.crash
                self.alerter.notify(
                    "dead_letter",
                    link.system,
                    f"{link.system}: a write to work item {link.work_item_id} was"
                    f" dead-lettered: {error} (syncgate dead-letters)",
                )
        log.warning(
            "write failed",
            extra={
                "work_item_id": link.work_item_id,
                "system": link.system,
                "link_id": link.id,
                "outcome": outcome,
                "error": str(a.error) if a.error is not None else a.crash,
            },
        )
