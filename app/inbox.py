"""The inbox: deliveries stored as they arrive (``EventWriter``, group commit), and the
worker that turns stored events into observations for the engine.

Events are claimed with a lease, so several processes share them and a crashed
process's events are picked up again; an event is marked done only after the engine has
committed its effect, and applying the same observation twice changes nothing, so a crash
at any point loses nothing and duplicates nothing. Hints (objects named but not carried
by the payload) are fetched from the vendor here, never in the receiver.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from time import monotonic
from typing import NamedTuple

import msgspec

from adapters.base import Adapter, lower_headers
from app.engine import Engine, Outcome
from app.engine.batch import Batch
from app.errors import (
    Missing,
    NotFound,
    RateLimited,
    StateConflict,
    VendorError,
    WebhookError,
)
from app.loops import Grouped, IngestFirst, work_until_stopped
from app.metrics import Metrics
from app.model import ObjectRef, VendorObject, WebhookEvent, utcnow
from app.retry import backoff_delay, capped_delay
from app.store import Event, NewEvent, Store, Tx

log = logging.getLogger("syncgate.inbox")


def kept_headers(headers: Mapping[str, str], allowed: frozenset[str]) -> dict[str, str]:
    """The headers stored with (and shown of) an event: only those in ``allowed``, the
    adapter's ``stored_headers`` (an allow-list, so no credential a sender or a proxy
    adds is ever kept)."""
    return {k: v for k, v in headers.items() if k.lower() in allowed}


class Rejection(msgspec.Struct, frozen=True):
    """A webhook delivery refused before anything was stored, and why."""

    at: datetime
    system: str
    status: int
    reason: str


class Rejections:
    """The last ``keep`` webhook deliveries this process refused (bad signature, unreadable
    body, too large, unknown system). Kept in memory only: a refused delivery changes
    nothing in the database."""

    def __init__(self, keep: int = 100) -> None:
        self._recent: collections.deque[Rejection] = collections.deque(maxlen=keep)

    def record(self, rejection: Rejection) -> None:
        self._recent.append(rejection)

    def recent(self) -> list[Rejection]:
        """Oldest first."""
        return list(self._recent)


class EventWriter:
    """Stores received deliveries, all those that arrived while the previous commit ran
    in one transaction (group commit, ``Grouped``). Each delivery's sender is answered
    only after the commit that stored it; a failed commit fails every delivery in it
    (they get a 5xx and the vendor sends them again).

    With an ``inbox`` (this process's worker), the deliveries it has room for are stored
    already claimed for it and handed to it in memory after the commit
    (``InboxWorker.hand_over``): no claim transaction of their own. The others are stored
    unclaimed, and the worker is woken to claim them."""

    def __init__(
        self, store: Store, *, max_batch: int = 512, inbox: InboxWorker | None = None
    ) -> None:
        self.store = store
        self.inbox = inbox
        self._grouped: Grouped[NewEvent, int | None] = Grouped(self._write, max_batch=max_batch)

    async def store_event(self, event: NewEvent) -> int | None:
        """Store one delivery; its event id, or None for a duplicate delivery."""
        return await self._grouped.submit(event)

    async def _write(self, batch: list[NewEvent]) -> list[int | Exception | None]:
        now = utcnow()
        inbox = self.inbox
        room = inbox.handover_room() if inbox is not None else 0
        if inbox is not None and room:
            until = now + inbox.lease
            batch = [
                msgspec.structs.replace(e, claimed_until=until)
                if i < room and e.state == "pending"
                else e
                for i, e in enumerate(batch)
            ]
        async with self.store.tx(one_statement=True) as tx:
            ids = await tx.record_events(batch, now=now)
        if inbox is not None:
            handed = [
                stored_event(event_id, e, now)
                for e, event_id in zip(batch, ids, strict=True)
                if event_id is not None and e.claimed_until is not None
            ]
            if handed:
                inbox.hand_over(handed)
            if len(handed) < sum(i is not None for i in ids):
                inbox.spilled()  # some were stored unclaimed
        return list(ids)


def stored_event(event_id: int, new: NewEvent, now: datetime) -> Event:
    """The event ``new`` as stored at ``now`` with id ``event_id``, claimed once."""
    fields = msgspec.structs.asdict(new)
    del fields["claimed_until"]  # not part of an Event: the worker counts from now
    return Event(id=event_id, **fields, attempts=1, received_at=now, processed_at=None)


class Parsed(NamedTuple):
    """A stored event as its system's adapter reads it."""

    event: Event
    adapter: Adapter
    webhook: WebhookEvent


#: An event finished without being applied: (event, state, outcome).
Finished = tuple[Event, str, str]

#: Batches of one system's events that name objects to fetch (hints), processed apart
#: at once; while that many run, none of that system's events is claimed.
MAX_APART = 4

#: At most this many events handed over by the receiver wait in memory for the worker
#: (``InboxWorker.hand_over``); past it, deliveries are stored unclaimed and claimed from
#: the table.
HANDOVER_MAX = 256
#: The worker claims from the table (retries come due, deliveries past ``HANDOVER_MAX``,
#: another process's lapsed claims) when told there is something to claim
#: (``claim_soon``), and otherwise this often: while events are handed over too, so that
#: none waits behind a stream of them, and when idle.
TABLE_CLAIM_EVERY_S = 1.0

#: Tries of an event before it is given up when its processing crashed (a poison event
#: must not come back forever). Every claim counts, by a process killed while it held the
#: event too.
MAX_EVENT_ATTEMPTS = 8
#: How long an event whose hinted objects cannot be fetched (the vendor down, slow or
#: rate-limiting) keeps being retried, from its arrival; it is given up once it is this
#: old and has had ``MAX_EVENT_ATTEMPTS`` tries. The fetch reads the object as it is
#: then, so a late one is as good as an early one, while what the event stands for (often
#: a new object, whose work item and creates depend on it) is lost when it is given up.
EVENT_RETRY_WINDOW = timedelta(hours=24)
#: Longest wait between two tries of such an event.
EVENT_BACKOFF_MAX_S = 300.0


class InboxWorker:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        adapters: Mapping[str, Adapter],
        *,
        request_poll: Callable[[str], None],
        metrics: Metrics,
        lease_s: float = 30.0,
        batch: int = 16,
        clock: Callable[[], datetime] = utcnow,
        ingest: IngestFirst | None = None,
        disabled: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self.store = store
        self.engine = engine
        self.adapters = adapters
        #: The systems the config disables now: their events wait, pending, until they
        #: are enabled again (stored before the disabling, acknowledged to the vendor).
        self.disabled = disabled
        self.request_poll = request_poll
        self.metrics = metrics
        self.lease = timedelta(seconds=lease_s)
        self.batch = batch
        self.clock = clock
        self.wake = asyncio.Event()
        self.ingest = ingest or IngestFirst()
        #: The tasks processing events apart (those with hints: ``run_once``), each with
        #: its system.
        self._apart: dict[asyncio.Task[None], str] = {}
        #: Events the receiver stored claimed for this worker (``hand_over``), oldest
        #: first; taken only while ``run`` works (``_taking``).
        self._handed: collections.deque[Event] = collections.deque()
        self._taking = False
        self._table_claim_at = 0.0  # when the table is next claimed from (monotonic)
        self._table_wanted = True  # something to claim there: no need to wait for then
        #: Deliveries were stored unclaimed for want of room (``spilled``) and the table
        #: has not been claimed empty since: they are older than any delivery to come.
        self._spilled = False

    def handover_room(self) -> int:
        """How many more received events may be handed over: none unless ``run`` works
        (a handed event waits for this worker, or for its claim to lapse), and none while
        deliveries stored unclaimed wait in the table. Handed over, a newer delivery was
        processed before them: the older of two changes of an object came in after the
        newer, and had the object read again (``Engine._stepped_back``)."""
        if not self._taking or self._spilled:
            return 0
        return HANDOVER_MAX - len(self._handed)

    def hand_over(self, events: list[Event]) -> None:
        """Take events stored already claimed for this worker (``EventWriter``)."""
        self._handed.extend(events)
        self.wake.set()

    def claim_soon(self) -> None:
        """Events may be due in the table: claim from it in the next round."""
        self._table_wanted = True
        self.wake.set()

    def spilled(self) -> None:
        """Deliveries were stored unclaimed (no room to hand them over, or ``run`` not
        working): the handed events are older and are taken first, then the table's, and
        none is handed over until the table is claimed empty, so that events are
        processed in the order they arrived."""
        self._spilled = True
        self.claim_soon()

    def _take_handed(self, limit: int) -> list[Event]:
        """Up to ``limit`` handed events, oldest first. One held for half its lease or
        more is dropped: its claim lapses soon and another worker may take it then (it
        lapses and is claimed again here too, so nothing is lost)."""
        stale = self.clock() - self.lease / 2
        out: list[Event] = []
        while self._handed and len(out) < limit:
            event = self._handed.popleft()
            if event.received_at > stale:
                out.append(event)
        return out

    async def run_once(self) -> int:
        """Take a batch of pending events and process it; returns how many were taken.
        The batch is claimed from the table when there may be events to claim there
        (``claim_soon``: some were stored unclaimed, a failed one retried; or the last
        claim took all it asked for) and at least every ``TABLE_CLAIM_EVERY_S`` (retries
        come due, another process's claims lapse), even while a stream of handed events
        keeps the worker busy; otherwise it is the events the receiver handed over
        (``hand_over``), which need no claim of their own. Deliveries stored unclaimed
        for want of room (``spilled``) wait until the handed events, older, are taken.

        The events that carry what they report are applied at once, in one engine
        transaction that also marks them done. Those that name objects to fetch first
        (hints) are processed apart, one task per system, so that a vendor slow to
        answer those reads holds up no other system's events; a system with
        ``MAX_APART`` such tasks running gets no more events claimed until one ends.
        Should a transaction fail, each of its events is retried on its own, so one bad
        event cannot hold up the others."""
        limit = self.batch if await self.ingest.give_way() else IngestFirst.SMALL_ROUND
        running = collections.Counter(self._apart.values())
        held = set(self.disabled())
        full = sorted({system for system, n in running.items() if n >= MAX_APART} | held)
        events: list[Event] = []
        table = self._table_wanted or monotonic() >= self._table_claim_at
        if table and not (self._spilled and self._handed):  # else those handed are older
            self._table_wanted = False
            self._table_claim_at = monotonic() + TABLE_CLAIM_EVERY_S
            async with self.store.tx(one_statement=True) as tx:
                events = await tx.claim_events(
                    now=self.clock(), lease=self.lease, limit=limit, full=full
                )
            self._table_wanted = len(events) >= limit  # more may be waiting there
            if not self._table_wanted:
                self._spilled = False  # all claimed: deliveries are handed over again
        events = events or self._take_handed(limit)
        if not events:
            return 0
        if waiting := [e.id for e in events if e.system in held and e.system not in self.adapters]:
            # handed over before a reload disabled their system: given back, to wait
            async with self.store.tx() as tx:
                await tx.release_events(waiting)
            events = [e for e in events if e.id not in set(waiting)]
        readable, unreadable = self._parse(events)
        hinted: dict[str, list[Parsed]] = {}
        for p in readable:
            if p.webhook.hints:
                hinted.setdefault(p.event.system, []).append(p)
        # a system at MAX_APART is never claimed from the table, but its events may have
        # been handed over: given back, to be claimed once it has room
        if back := [p.event.id for system in full for p in hinted.pop(system, [])]:
            async with self.store.tx() as tx:
                await tx.release_events(back)
        for system, batch in hinted.items():
            task = asyncio.get_running_loop().create_task(self._settle_apart(system, batch))
            self._apart[task] = system
            task.add_done_callback(self._finished_apart)
        plain = [p for p in readable if not p.webhook.hints]
        if plain or unreadable:
            await self._settle(plain, unreadable)
        return len(events)

    async def run_until_idle(self) -> None:
        """Process until no event is pending, those processed apart included."""
        while True:
            self._table_wanted = True
            claimed = await self.run_once()
            if self._apart:
                await asyncio.wait(set(self._apart))
            elif not claimed:
                return

    def _finished_apart(self, task: asyncio.Task[None]) -> None:
        del self._apart[task]
        self.claim_soon()  # that system's events may be claimed again
        if not task.cancelled() and task.exception() is not None:
            # not even retrying later could be recorded: the events' leases lapse, and
            # they are claimed again then
            log.error("processing events apart failed", exc_info=task.exception())

    async def _settle_apart(self, system: str, batch: list[Parsed]) -> None:
        """Process events that name objects to fetch, unless their system asked to wait
        (a 429 met by a write defers the whole system until its ``Retry-After``):
        then they are due again when it ends, the try not counted. A rate-limited vendor
        gets no reads either, and a read sent into the wait would likely fail a try."""
        async with self.store.tx() as tx:
            until = (await tx.system_state(system)).deferred_until
            now = self.clock()
            if until is not None and until > now:
                reason = f"{system} asked to wait (429) until {until.isoformat()}"
                delay = (until - now).total_seconds()
                for p in batch:
                    await self._retry(tx, p.event, reason, now, delay_s=delay, asked_to_wait=True)
                return
        await self._settle(batch, [])

    async def _settle(self, parsed: list[Parsed], unreadable: list[Finished]) -> None:
        """Process ``parsed`` and finish ``unreadable`` in one transaction; should it
        fail, each event on its own (``_crashed`` when that fails too)."""
        try:
            await self._process(parsed, unreadable)
        except Exception:
            if len(parsed) + len(unreadable) == 1:
                await self._crashed(parsed[0].event if parsed else unreadable[0][0])
                return
            log.warning("inbox batch failed; processing its events one by one", exc_info=True)
            for one, alone in [([p], []) for p in parsed] + [([], [u]) for u in unreadable]:
                try:
                    await self._process(one, alone)
                except Exception:  # noqa: BLE001 - logged and retried by _crashed
                    await self._crashed(one[0].event if one else alone[0][0])

    async def retry_failed(self, event_id: int) -> Event:
        """Process a failed (given up) event again, from its first try; returns it as it
        is now. ``Missing`` for no such event, ``StateConflict`` for one not failed."""
        async with self.store.tx() as tx:
            event = await tx.requeue_failed_event(event_id, outcome="retried by admin")
            if event is None:  # refused: read it to say why
                found = await tx.get_event(event_id)
                if found is None:
                    raise Missing(f"no event {event_id}")
                raise StateConflict(
                    f"event {event_id} is {found.state}: only a failed event can be retried"
                )
        self.claim_soon()
        return event

    async def run(self, stop: asyncio.Event, idle_s: float = 1.0) -> None:
        self._taking = True
        try:
            await work_until_stopped(
                self.run_once, wake=self.wake, stop=stop, idle_s=idle_s, log=log
            )
        finally:
            self._taking = False
            await self._give_back_handed()
            # the events processed apart finish too (their reads time out at worst)
            if self._apart:
                await asyncio.wait(set(self._apart))

    async def _give_back_handed(self) -> None:
        """On stop: the handed events not taken yet are made due again at once, for
        whichever process runs next (else they would wait for their claims to lapse)."""
        back = [event.id for event in self._handed]
        self._handed.clear()
        if not back:
            return
        try:
            async with self.store.tx() as tx:
                await tx.release_events(back)
        except Exception:  # their claims lapse instead
            log.warning("could not give back %d handed events", len(back), exc_info=True)

    def _parse(self, events: list[Event]) -> tuple[list[Parsed], list[Finished]]:
        """Each event read by its system's adapter; those that cannot be (no such system,
        or an unreadable payload) as finished ``failed``, with the reason."""
        parsed: list[Parsed] = []
        unreadable: list[Finished] = []
        for event in events:
            adapter = self.adapters.get(event.system)
            if adapter is None:
                unreadable.append((event, "failed", f"system {event.system!r} is not configured"))
                continue
            try:
                webhook = adapter.parse_webhook(lower_headers(event.headers), event.body)
            except WebhookError as exc:
                unreadable.append((event, "failed", f"unreadable: {exc.reason}"))
                continue
            parsed.append(Parsed(event, adapter, webhook))
        return parsed, unreadable

    async def _process(self, parsed: list[Parsed], unreadable: list[Finished]) -> None:
        observations: list[tuple[VendorObject, str | None]] = []
        owned: list[tuple[Event, int, int, list[str], bool]] = []  # event, span, notes, poll
        finished: list[Finished] = list(unreadable)
        retries: list[tuple[Event, VendorError]] = []
        # hints name objects to fetch: all fetched at once, before the transaction
        began = self.clock()
        fetched = await asyncio.gather(
            *(self._fetch(adapter, webhook.hints, began) for _, adapter, webhook in parsed)
        )
        for (event, _, webhook), hinted in zip(parsed, fetched, strict=True):
            if isinstance(hinted, VendorError):
                retries.append((event, hinted))
                continue
            event_ref = f"{event.system}:{event.delivery_id}"
            first = len(observations)
            observations.extend((obj, event_ref) for obj in webhook.observations)
            notes = []
            for ref, obj in hinted:
                if obj is None:
                    notes.append(f"{ref.external_id}:not_found")
                else:
                    observations.append((obj, event_ref))
            owned.append((event, first, len(observations), notes, webhook.poll))

        unapplied = len(finished)

        async def finish(tx: Tx, outcomes: list[Outcome], _batch: Batch) -> None:
            del finished[unapplied:]  # the engine may run its transaction again
            now = self.clock()
            for event, first, last, notes, poll in owned:
                results = [
                    f"{obj.ref.external_id}:{outcome.kind}"
                    for (obj, _), outcome in zip(
                        observations[first:last], outcomes[first:last], strict=True
                    )
                ]
                results += notes
                if poll:
                    results.append("poll requested")
                finished.append((event, "done", ", ".join(results) or "nothing to apply"))
            await tx.finish_events(
                ((event.id, state, outcome) for event, state, outcome in finished), now=now
            )
            for event, exc in retries:
                if isinstance(exc, RateLimited):
                    delay = capped_delay(exc.retry_after, EVENT_BACKOFF_MAX_S)
                    await self._retry(tx, event, str(exc), now, delay_s=delay, asked_to_wait=True)
                else:
                    await self._retry(tx, event, str(exc), now, vendor=True)

        await self.engine.observe_many(observations, also=finish)
        for system in sorted({event.system for event, *_, poll in owned if poll}):
            self.request_poll(system)
        for event, state, outcome in finished:
            self.metrics.events_processed.labels(event.system, state).inc()
            log.debug(  # the event row keeps its outcome; see "wrote" in app/dispatcher.py
                "event processed",
                extra={"system": event.system, "event_id": event.delivery_id, "outcome": outcome},
            )

    @staticmethod
    async def _fetch(
        adapter: Adapter, refs: list[ObjectRef], began: datetime
    ) -> list[tuple[ObjectRef, VendorObject | None]] | VendorError:
        """The hinted objects as the vendor holds them now (None: the vendor does not
        know it), each read after ``began``, or the error that stopped the fetch."""
        out: list[tuple[ObjectRef, VendorObject | None]] = []
        for ref in refs:
            try:
                obj = await adapter.get(ref)
                out.append((ref, msgspec.structs.replace(obj, read_at=began)))
            except NotFound:
                out.append((ref, None))
            except VendorError as exc:
                return exc
        return out

    async def _retry(
        self,
        tx: Tx,
        event: Event,
        reason: str,
        now: datetime,
        *,
        delay_s: float | None = None,
        vendor: bool = False,
        asked_to_wait: bool = False,
    ) -> None:
        """Try the event again later (after ``delay_s``, else a backoff). Give up on it
        after ``MAX_EVENT_ATTEMPTS`` tries when its processing crashed (a poison event
        must not come back forever); when the vendor failed (``vendor``), only once it is
        also ``EVENT_RETRY_WINDOW`` old: an outage of a few minutes must not cost a
        change. A vendor that asked to wait (``asked_to_wait``: a 429, retried after its
        ``Retry-After``) has not failed the try, so it is not counted and does not
        lengthen the backoffs after it; only the window ends such an event. (An event
        retried by an admin gets its tries again.)"""
        give_up = event.attempts >= MAX_EVENT_ATTEMPTS
        if vendor:
            give_up = give_up and now - event.received_at >= EVENT_RETRY_WINDOW
        if asked_to_wait:
            give_up = now - event.received_at >= EVENT_RETRY_WINDOW
        if give_up:
            outcome = f"gave up after {event.attempts} attempts: {reason}"
            await tx.finish_event(event.id, state="failed", outcome=outcome, now=now)
            self.metrics.events_processed.labels(event.system, "failed").inc()
            log.warning(
                "event failed",
                extra={"system": event.system, "event_id": event.delivery_id, "outcome": outcome},
            )
            return
        if delay_s is None:
            delay_s = backoff_delay(event.attempts, base_s=1.0, max_s=EVENT_BACKOFF_MAX_S)
        await tx.retry_event_later(
            event.id,
            outcome=f"retrying: {reason}",
            at=now + timedelta(seconds=delay_s),
            count_attempt=not asked_to_wait,
        )

    async def _crashed(self, event: Event) -> None:
        """Processing the event raised: try it again later, like a vendor error."""
        log.exception(
            "event processing crashed",
            extra={"system": event.system, "event_id": event.delivery_id},
        )
        async with self.store.tx() as tx:
            await self._retry(tx, event, "processing crashed", self.clock())
