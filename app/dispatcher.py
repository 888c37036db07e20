"""The dispatcher: claims dirty links and writes the canonical state to vendors.

The only caller of adapter writes. For each claimed link (one writer per link: a claim is
a lease in the database) it renders the item's *current* canonical state for that system,
compares it in meaning with what the object is known to hold, and sends only the
difference (nothing at all when there is none). So a burst of changes before a write
coalesces into one call carrying the latest state.

It works as a pipeline: up to ``concurrency`` writes are in flight at once, new dirty
links are claimed as soon as there is room (together with their items, in one
transaction), and finished writes are recorded in batches, each batch one transaction.
A link stays claimed until its outcome is recorded.

Failures: a 429 defers every write to that system until ``Retry-After`` while the other
systems keep flowing; transient errors retry with exponential backoff and jitter up to
``max_attempts``; rejected, auth and not-found errors (and exhausted retries) are
dead-lettered with their reason, visible and retryable through the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from adapters.base import Adapter
from app.errors import FatalError, RateLimited, RetriableError, VendorError
from app.loops import IngestFirst, wait_any
from app.metrics import Metrics
from app.model import VendorObject, WorkItem, utcnow
from app.retry import backoff_delay
from app.rules import Rules
from app.settings import DispatcherSettings
from app.store import FinishedWrite, HistoryEntry, Link, Store, Tx

log = logging.getLogger("syncgate.dispatcher")


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
    ) -> None:
        self.store = store
        self.rules = rules
        self.adapters = adapters
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.worker_id = worker_id or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.wake = asyncio.Event()
        self.ingest = ingest or IngestFirst()

    # -- loops -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the links that are due now, write them in parallel and record the
        outcomes; returns how many were claimed."""
        claimed = await self._claim(self.settings.concurrency * 2)
        if claimed:
            await self._record(
                list(await asyncio.gather(*(self._attempt(link, item) for link, item in claimed)))
            )
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
        coming due). On stop, the writes in flight finish and are recorded."""
        loop = asyncio.get_running_loop()
        done: asyncio.Queue[Attempt] = asyncio.Queue()
        in_flight: set[asyncio.Task[None]] = set()
        room = asyncio.Event()
        recorder = loop.create_task(self._record_from(done), name="dispatcher-recorder")

        async def write(link: Link, item: WorkItem | None) -> None:
            await done.put(await self._attempt(link, item))

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            room.set()

        try:
            while not stop.is_set():
                free = self.settings.concurrency - len(in_flight)
                if free <= 0:
                    room.clear()
                    await wait_any(room, stop, seconds=idle_s)
                    continue
                self.wake.clear()
                if not await self.ingest.give_way():
                    free = min(free, IngestFirst.SMALL_ROUND)
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("claiming writes failed")
                    await wait_any(stop, seconds=idle_s)
                    continue
                for link, item in claimed:
                    task = loop.create_task(write(link, item))
                    in_flight.add(task)
                    task.add_done_callback(finished)
                if len(claimed) < free:
                    await wait_any(self.wake, stop, seconds=idle_s)
        finally:
            if in_flight:
                await asyncio.wait(set(in_flight))
            await done.join()
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    async def _record_from(self, done: asyncio.Queue[Attempt]) -> None:
        """Record finished writes, as many per transaction as have finished meanwhile."""
        while True:
            batch = [await done.get()]
            while not done.empty():
                batch.append(done.get_nowait())
            try:
                await self._record(batch)
            except Exception:
                # the links stay claimed until their lease lapses, then are written again
                log.exception("recording writes failed")
            finally:
                for _ in batch:
                    done.task_done()
            # a link changed again while its write was in flight is dirty once more
            self.wake.set()

    # -- claiming --------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[tuple[Link, WorkItem | None]]:
        """Claim up to ``limit`` due links of systems not held back, with their items."""
        now = self.clock()
        async with self.store.tx() as tx:
            links = await tx.claim_due_links(
                worker=self.worker_id,
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                limit=limit,
            )
            items = await tx.items_by_id(link.work_item_id for link in links)
        return [(link, items.get(link.work_item_id)) for link in links]

    # -- one write -------------------------------------------------------------------------

    async def _attempt(self, link: Link, item: WorkItem | None) -> Attempt:
        """Write one link's object (no database access: the outcome is recorded later)."""
        adapter = self.adapters.get(link.system)
        creating = link.external_id is None
        result = Attempt(
            link=link, action="create" if creating else "update", version=0, called=False
        )
        if adapter is None:
            result.error = FatalError(link.system, f"system {link.system!r} is not configured")
            return result
        if item is None:  # the item was deleted under us
            result.crash = "the work item no longer exists"
            return result
        result.version = item.version
        fields = self.rules.out_fields(link.system)
        target = item.fields().only(fields)
        if creating:
            # every vendor needs a title to create an object, whatever the directions
            changes = item.fields().only(fields | {"title"})
        else:
            changes = adapter.differs(link.known, target)
            if changes.is_empty():
                return result
        result.called = True
        result.attempt = link.attempts + 1
        result.payload = msgspec.to_builtins(changes.as_dict())
        started = time.perf_counter()
        try:
            if creating:
                assert link.create_target is not None and link.idempotency_key is not None
                result.obj = await adapter.create(
                    link.create_target,
                    changes,
                    link.idempotency_key,
                    retry=link.create_claims > 1,  # claimed before: it may have been made
                )
                rest = adapter.differs(result.obj, target)
                if not rest.is_empty():  # a field the create call could not carry
                    result.obj = await adapter.update(result.obj.ref, rest, current=result.obj)
            else:
                assert link.ref is not None
                result.obj = await adapter.update(link.ref, changes, current=link.known)
        except VendorError as exc:
            result.error = exc
        except Exception as exc:
            log.exception("write crashed", extra={"system": link.system, "link_id": link.id})
            result.crash = f"internal error: {type(exc).__name__}: {exc}"
        result.duration_s = time.perf_counter() - started
        return result

    # -- recording -------------------------------------------------------------------------

    async def _record(self, attempts: Sequence[Attempt]) -> None:
        """Record the outcomes of finished writes in one transaction, then count and log
        them."""
        now = self.clock()
        outcomes: list[str] = []
        async with self.store.tx() as tx:
            finished = [
                FinishedWrite(link=a.link, obj=a.obj, version=a.version)
                for a in attempts
                if a.error is None and a.crash is None
            ]
            await tx.finish_writes(finished, now=now)
            attempt_rows = []
            history: list[HistoryEntry] = []
            for a in attempts:
                if a.crash is not None:
                    outcome = "crash"
                    await tx.retry_link_later(
                        a.link,
                        error=a.crash,
                        at=now + timedelta(seconds=self.settings.backoff_max_s),
                    )
                elif a.error is not None:
                    outcome = await self._failed(tx, a, a.error, now, history)
                else:
                    outcome = "ok" if a.called else "noop"
                    if a.called:
                        assert a.obj is not None
                        history.append(
                            HistoryEntry(
                                work_item_id=a.link.work_item_id,
                                kind="write",
                                system=a.link.system,
                                new_value=a.payload,
                                detail=f"{a.action} {a.obj.ref.external_id} (version {a.version})",
                                at=now,
                            )
                        )
                outcomes.append(outcome)
                if a.called:
                    attempt_rows.append(
                        {
                            "link_id": a.link.id,
                            "work_item_id": a.link.work_item_id,
                            "system": a.link.system,
                            "action": a.action,
                            "attempt": a.attempt,
                            "outcome": "retry" if outcome == "crash" else outcome,
                            "status_code": a.error.status if a.error is not None else None,
                            "error": str(a.error) if a.error is not None else a.crash,
                            "duration_ms": a.duration_s * 1000,
                            "payload": a.payload,
                            "worker": self.worker_id,
                            "at": now,
                        }
                    )
            await tx.add_attempts(attempt_rows)
            await tx.add_history(history)
        for a, outcome in zip(attempts, outcomes, strict=True):
            self._count_and_log(a, outcome)

    async def _failed(
        self, tx: Tx, a: Attempt, exc: VendorError, now: datetime, history: list[HistoryEntry]
    ) -> str:
        """Record a failed write; returns its outcome (rate_limited, retry or dead)."""
        link = a.link
        reason = str(exc)
        if a.obj is not None and link.external_id is None:
            # created, then a follow-up call failed: keep the new object linked, so the
            # next attempt updates it instead of creating another
            await tx.record_created(link, a.obj, now)
        if isinstance(exc, RateLimited):
            until = now + timedelta(seconds=exc.retry_after)
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
                detail=reason,
                at=now,
            )
        )
        return "dead"

    def _count_and_log(self, a: Attempt, outcome: str) -> None:
        link = a.link
        self.metrics.writes.labels(link.system, a.action, outcome).inc()
        if outcome == "ok":
            self.metrics.write_latency.labels(link.system).observe(a.duration_s)
            log.info(
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
