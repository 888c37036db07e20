"""The inbox worker: turns stored webhook events into observations for the engine.

Events are claimed with a lease, so several processes share them and a crashed
process's events are picked up again; an event is marked done only after the engine has
committed its effect, and applying the same observation twice changes nothing, so a crash
at any point loses nothing and duplicates nothing. Hints (objects named but not carried
by the payload) are fetched from the vendor here, never in the receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from adapters.base import Adapter, lower_headers
from app.engine import Engine
from app.errors import NotFound, RateLimited, VendorError, WebhookError
from app.loops import work_until_stopped
from app.metrics import Metrics
from app.model import utcnow
from app.retry import backoff_delay
from app.store import Event, Store

log = logging.getLogger("syncgate.worker")

MAX_EVENT_ATTEMPTS = 8


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
        batch: int = 64,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.engine = engine
        self.adapters = adapters
        self.request_poll = request_poll
        self.metrics = metrics
        self.lease = timedelta(seconds=lease_s)
        self.batch = batch
        self.clock = clock
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        async with self.store.tx() as tx:
            events = await tx.claim_events(now=self.clock(), lease=self.lease, limit=self.batch)
        for event in events:
            await self._process(event)
        return len(events)

    async def run_until_idle(self) -> None:
        while await self.run_once():
            pass

    async def run(self, stop: asyncio.Event, idle_s: float = 1.0) -> None:
        await work_until_stopped(self.run_once, wake=self.wake, stop=stop, idle_s=idle_s, log=log)

    async def _process(self, event: Event) -> None:
        adapter = self.adapters.get(event.system)
        if adapter is None:
            await self._finish(event, "failed", f"system {event.system!r} is not configured")
            return
        try:
            parsed = adapter.parse_webhook(lower_headers(event.headers), event.body)
        except WebhookError as exc:
            await self._finish(event, "failed", f"unreadable: {exc.reason}")
            return
        outcomes: list[str] = []
        event_ref = f"{event.system}:{event.delivery_id}"
        try:
            for obj in parsed.observations:
                result = await self.engine.observe(obj, event_id=event_ref)
                outcomes.append(f"{obj.ref.external_id}:{result.kind}")
            for ref in parsed.hints:
                try:
                    obj = await adapter.get(ref)
                except NotFound:
                    outcomes.append(f"{ref.external_id}:not_found")
                    continue
                result = await self.engine.observe(obj, event_id=event_ref)
                outcomes.append(f"{ref.external_id}:{result.kind}")
        except VendorError as exc:
            await self._retry(event, exc)
            return
        if parsed.poll:
            self.request_poll(event.system)
            outcomes.append("poll requested")
        await self._finish(event, "done", ", ".join(outcomes) or "nothing to apply")

    async def _finish(self, event: Event, state: str, outcome: str) -> None:
        async with self.store.tx() as tx:
            await tx.finish_event(event.id, state=state, outcome=outcome, now=self.clock())
        self.metrics.events_processed.labels(event.system, state).inc()
        log.info(
            "event processed",
            extra={"system": event.system, "event_id": event.delivery_id, "outcome": outcome},
        )

    async def _retry(self, event: Event, exc: VendorError) -> None:
        if event.attempts >= MAX_EVENT_ATTEMPTS:
            await self._finish(event, "failed", f"gave up after {event.attempts} attempts: {exc}")
            return
        delay = (
            exc.retry_after
            if isinstance(exc, RateLimited)
            else backoff_delay(event.attempts, base_s=1.0, max_s=300.0)
        )
        async with self.store.tx() as tx:
            await tx.retry_event_later(
                event.id, outcome=f"retrying: {exc}", at=self.clock() + timedelta(seconds=delay)
            )
