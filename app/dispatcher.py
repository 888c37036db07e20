"""The dispatcher: claims dirty links and writes the canonical state to vendors.

The only caller of adapter writes. For each claimed link (one writer per link: a claim is
a lease in the database) it renders the item's *current* canonical state for that system,
compares it in meaning with what the object is known to hold, and sends only the
difference (nothing at all when there is none). So a burst of changes before a write
coalesces into one call carrying the latest state.

Failures: a 429 defers every write to that system until ``Retry-After`` while the other
systems keep flowing; transient errors retry with exponential backoff and jitter up to
``max_attempts``; rejected, auth and not-found errors (and exhausted retries) are
dead-lettered with their reason, visible and retryable through the admin API.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from adapters.base import Adapter
from app.errors import FatalError, RateLimited, RetriableError, VendorError
from app.loops import work_until_stopped
from app.metrics import Metrics
from app.model import VendorObject, utcnow
from app.retry import backoff_delay
from app.rules import Rules
from app.settings import DispatcherSettings
from app.store import HistoryEntry, Link, Store

log = logging.getLogger("syncgate.dispatcher")


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
    ) -> None:
        self.store = store
        self.rules = rules
        self.adapters = adapters
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.worker_id = worker_id or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.wake = asyncio.Event()
        self._limit = asyncio.Semaphore(settings.concurrency)

    # -- loop ------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the links that are due now and write them, in parallel; returns how many
        were claimed."""
        now = self.clock()
        async with self.store.tx() as tx:
            held = await tx.held_systems(now)
            links = await tx.claim_due_links(
                worker=self.worker_id,
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                limit=self.settings.concurrency * 2,
                skip_systems=held,
            )
        if links:
            await asyncio.gather(*(self._guarded(link) for link in links))
        return len(links)

    async def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Write until nothing is due now (writes waiting on a backoff or a Retry-After
        are left for later)."""
        for _ in range(max_rounds):
            if await self.run_once() == 0:
                return

    async def run(self, stop: asyncio.Event, idle_s: float = 0.5) -> None:
        """Work until ``stop`` is set: write what is due, then wait for a wake-up (a new
        dirty link) or ``idle_s`` (backoffs coming due)."""
        await work_until_stopped(self.run_once, wake=self.wake, stop=stop, idle_s=idle_s, log=log)

    # -- one link --------------------------------------------------------------------------

    async def _guarded(self, link: Link) -> None:
        async with self._limit:
            try:
                await self._write(link)
            except Exception as exc:
                log.exception("write crashed", extra={"system": link.system, "link_id": link.id})
                async with self.store.tx() as tx:
                    await tx.retry_link_later(
                        link,
                        error=f"internal error: {type(exc).__name__}: {exc}",
                        at=self.clock() + timedelta(seconds=self.settings.backoff_max_s),
                    )

    async def _write(self, link: Link) -> None:
        adapter = self.adapters.get(link.system)
        if adapter is None:
            async with self.store.tx() as tx:
                await tx.dead_letter(link, f"system {link.system!r} is not configured")
            return
        async with self.store.tx() as tx:
            item = await tx.get_item(link.work_item_id)
        if item is None:  # the item was deleted under us
            return
        version = item.version
        target = item.fields().only(self.rules.out_fields(link.system))
        creating = link.external_id is None
        action = "create" if creating else "update"
        if creating:
            changes = item.fields()
        else:
            changes = adapter.differs(link.known, target)
            if changes.is_empty():
                async with self.store.tx() as tx:
                    await tx.finish_write(link, None, version=version, now=self.clock())
                self.metrics.writes.labels(link.system, action, "noop").inc()
                return

        started = time.perf_counter()
        attempt = link.attempts + 1
        try:
            if creating:
                assert link.create_target is not None and link.idempotency_key is not None
                obj = await adapter.create(link.create_target, changes, link.idempotency_key)
                rest = adapter.differs(obj, target)
                if not rest.is_empty():  # a field the create call could not carry
                    obj = await adapter.update(obj.ref, rest, current=obj)
            else:
                assert link.ref is not None
                obj = await adapter.update(link.ref, changes, current=link.known)
        except VendorError as exc:
            await self._failed(link, exc, action, attempt, started, changes.as_dict())
            return
        await self._succeeded(link, obj, version, action, attempt, started, changes.as_dict())

    async def _succeeded(
        self,
        link: Link,
        obj: VendorObject,
        version: int,
        action: str,
        attempt: int,
        started: float,
        payload: dict[str, object],
    ) -> None:
        duration = time.perf_counter() - started
        now = self.clock()
        async with self.store.tx() as tx:
            await tx.finish_write(link, obj, version=version, now=now)
            await tx.add_attempt(
                link_id=link.id,
                work_item_id=link.work_item_id,
                system=link.system,
                action=action,
                attempt=attempt,
                outcome="ok",
                status_code=None,
                error=None,
                duration_ms=duration * 1000,
                payload=msgspec.to_builtins(payload),
                worker=self.worker_id,
                at=now,
            )
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=link.work_item_id,
                        kind="write",
                        system=link.system,
                        new_value=msgspec.to_builtins(payload),
                        detail=f"{action} {obj.ref.external_id} (version {version})",
                        at=now,
                    )
                ]
            )
        self.metrics.writes.labels(link.system, action, "ok").inc()
        self.metrics.write_latency.labels(link.system).observe(duration)
        log.info(
            "wrote",
            extra={
                "work_item_id": link.work_item_id,
                "system": link.system,
                "link_id": link.id,
                "action": action,
                "duration_ms": round(duration * 1000, 2),
            },
        )

    async def _failed(
        self,
        link: Link,
        exc: VendorError,
        action: str,
        attempt: int,
        started: float,
        payload: dict[str, object],
    ) -> None:
        duration = time.perf_counter() - started
        now = self.clock()
        reason = str(exc)
        async with self.store.tx() as tx:
            if isinstance(exc, RateLimited):
                outcome = "rate_limited"
                until = now + timedelta(seconds=exc.retry_after)
                await tx.set_system(link.system, deferred_until=until, last_write_error=reason)
                await tx.retry_link_later(link, error=reason, at=until, count_attempt=False)
            elif isinstance(exc, RetriableError) or not isinstance(exc, FatalError):
                if attempt >= self.settings.max_attempts:
                    outcome = "dead"
                    await tx.dead_letter(link, f"gave up after {attempt} attempts: {reason}")
                else:
                    outcome = "retry"
                    delay = backoff_delay(
                        attempt,
                        base_s=self.settings.backoff_base_s,
                        max_s=self.settings.backoff_max_s,
                    )
                    await tx.retry_link_later(link, error=reason, at=now + timedelta(seconds=delay))
                await tx.set_system(link.system, last_write_error=reason)
            else:
                outcome = "dead"
                await tx.dead_letter(link, reason)
                await tx.set_system(link.system, last_write_error=reason)
            await tx.add_attempt(
                link_id=link.id,
                work_item_id=link.work_item_id,
                system=link.system,
                action=action,
                attempt=attempt,
                outcome=outcome,
                status_code=exc.status,
                error=reason,
                duration_ms=duration * 1000,
                payload=msgspec.to_builtins(payload),
                worker=self.worker_id,
                at=now,
            )
            if outcome == "dead":
                await tx.add_history(
                    [
                        HistoryEntry(
                            work_item_id=link.work_item_id,
                            kind="dead_letter",
                            system=link.system,
                            detail=reason,
                            at=now,
                        )
                    ]
                )
        self.metrics.writes.labels(link.system, action, outcome).inc()
        if outcome == "retry":
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
                "error": reason,
            },
        )
