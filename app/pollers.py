"""Incremental polling, one loop per system, from a cursor persisted in the database.

Each poll lists the objects changed since ``cursor - overlap`` (vendors stamp
``updated_at`` before commit, so rows can appear late) and hands every object to the
engine; re-seeing an object is harmless. The cursor then moves to the newest
``updated_at`` seen. A system's first poll starts at the moment it was first connected
(``systems.connected_at``), never at the start of its history: what happened before is
brought in only by a backfill. A webhook that is only a hint can ask for an immediate poll
(``request``): it wakes the system's loop, or, when the system has none running
(webhook-only, ``poll_interval_s: 0``, or the loops not started), runs a one-off poll in
the background. Every poll is written to the event log with its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from adapters.base import Adapter
from app.alerts import Alerter
from app.config.schema import SystemSettings
from app.engine import Engine
from app.errors import RateLimited, VendorError
from app.loops import wait_any
from app.metrics import Metrics
from app.model import utcnow
from app.retry import capped_delay
from app.store import Store

log = logging.getLogger("syncgate.pollers")


class PollResult(msgspec.Struct):
    system: str
    pages: int = 0
    objects: int = 0
    changed: int = 0
    created: int = 0
    #: new objects a link rule matched to several candidates (reported, not linked)
    ambiguous: int = 0
    error: str | None = None
    retry_after: float | None = None


class Pollers:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        adapters: Mapping[str, Adapter],
        systems: Mapping[str, SystemSettings],
        *,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
        max_defer_s: float = 900.0,
        alerter: Alerter | None = None,
    ) -> None:
        self.store = store
        self.alerter = alerter
        #: The longest a 429 makes a system's poll loop wait.
        self.max_defer_s = max_defer_s
        self.engine = engine
        self.adapters = adapters
        self.systems = systems
        self.metrics = metrics
        self.clock = clock
        self._nudges: dict[str, asyncio.Event] = {name: asyncio.Event() for name in adapters}
        #: systems whose periodic loop is running (a request wakes it)
        self._looping: set[str] = set()
        #: one-off polls in flight, at most one per system
        self._oneoff: dict[str, asyncio.Task[None]] = {}
        #: systems asked for again while their one-off poll was in flight
        self._again: set[str] = set()

    def request(self, system: str) -> None:
        """Poll ``system`` as soon as possible (a hint arrived).

        With its loop running, the loop is woken. Otherwise a one-off poll is started in
        the background; requests coalesce: while one is in flight, any number of further
        requests make exactly one more poll after it."""
        if system not in self._nudges:
            return
        if system in self._looping:
            self._nudges[system].set()
            return
        if system in self._oneoff:
            self._again.add(system)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not called from the event loop: nothing can run it
            log.warning("poll requested outside the event loop", extra={"system": system})
            return
        task = loop.create_task(self._poll_on_request(system), name=f"poll-{system}-requested")
        self._oneoff[system] = task

    def pending_requests(self) -> list[asyncio.Task[None]]:
        """The one-off polls in flight (started by ``request``)."""
        return list(self._oneoff.values())

    async def _poll_on_request(self, system: str) -> None:
        try:
            while True:
                self._again.discard(system)
                try:
                    await self.poll(system)
                except Exception:
                    log.exception("requested poll crashed", extra={"system": system})
                if system not in self._again:
                    return
        finally:
            self._again.discard(system)
            if self._oneoff.get(system) is asyncio.current_task():
                del self._oneoff[system]

    async def close(self, timeout_s: float = 30.0) -> None:
        """Wait for the one-off polls in flight (and those they chain to), cancelling
        what is still running after ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._oneoff:
            tasks = set(self._oneoff.values())
            left = deadline - asyncio.get_running_loop().time()
            try:
                _done, pending = await asyncio.wait(tasks, timeout=max(0.0, left))
            except asyncio.CancelledError:
                pending = {t for t in tasks if not t.done()}
                await self._cancel(pending)
                raise
            if pending:
                await self._cancel(pending)
                return

    async def _cancel(self, tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def poll(self, system: str) -> PollResult:
        """One incremental poll of ``system``; errors are recorded, not raised."""
        result = PollResult(system)
        adapter = self.adapters.get(system)
        if adapter is None:  # disabled by a config reload since its loop started
            result.error = "disabled"
            return result
        settings = self.systems[system]
        async with self.store.tx() as tx:
            state = await tx.system_state(system)
        if state.paused:
            result.error = "paused"
            return result
        cursor: datetime | None = state.poll_cursor
        if cursor is None:  # the first poll: from the moment the system was connected
            cursor = state.connected_at or (await self.engine.connect([system]))[system]
        since = cursor - timedelta(seconds=settings.poll_overlap_s)
        newest = cursor
        poll_id = f"poll-{uuid.uuid4().hex[:16]}"
        try:
            began = self.clock()  # the page's read began after it
            async for page in adapter.list_changed(since):
                result.pages += 1
                page = [msgspec.structs.replace(obj, read_at=began) for obj in page]
                # one page, one transaction
                outcomes = await self.engine.observe_many([(obj, poll_id) for obj in page])
                began = self.clock()
                for obj, outcome in zip(page, outcomes, strict=True):
                    result.objects += 1
                    if outcome.kind == "changed":
                        result.changed += 1
                    elif outcome.kind == "created":
                        result.created += 1
                    elif outcome.kind == "ambiguous":
                        result.ambiguous += 1
                    self.metrics.observations.labels(system, outcome.kind).inc()
                    # a vendor time in the future (clamped by the engine) must not carry
                    # the cursor past changes still to come
                    seen = min(obj.updated_at, self.clock())
                    if newest is None or seen > newest:
                        newest = seen
        except VendorError as exc:
            result.error = str(exc)
            if isinstance(exc, RateLimited):
                result.retry_after = exc.retry_after
        now = self.clock()
        async with self.store.tx() as tx:
            values: dict[str, object] = {"last_poll_error": result.error}
            if result.error is None:
                values["last_poll_at"] = now
            if newest is not None:
                # objects seen before an error were applied; the cursor may move past them
                values["poll_cursor"] = newest if result.error is None else cursor
            await tx.set_system(system, **values)
            await tx.record_event(
                system=system,
                delivery_id=poll_id,
                source="poll",
                event_type="poll",
                body=msgspec.json.encode(result),
                now=now,
                state="failed" if result.error else "done",
                outcome=result.error
                or f"{result.objects} objects, {result.changed} changed, {result.created} created"
                + (f", {result.ambiguous} ambiguous" if result.ambiguous else ""),
            )
        self.metrics.polls.labels(system, "error" if result.error else "ok").inc()
        if self.alerter is not None and result.error != "paused":
            self.alerter.poll_result(system, result.error)
        if result.error:
            log.warning("poll failed", extra={"system": system, "error": result.error})
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every system with a positive interval until ``stop`` is set; then wait
        for the one-off polls requested meanwhile (``close``)."""
        loops = [
            self._loop(name, stop)
            for name, settings in self.systems.items()
            if name in self.adapters and settings.poll_interval_s > 0
        ]
        try:
            await asyncio.gather(*loops)
            await stop.wait()  # with no loop at all, requests still start one-off polls
        except asyncio.CancelledError:
            await self._cancel(set(self._oneoff.values()))
            raise
        await self.close()

    async def _loop(self, system: str, stop: asyncio.Event) -> None:
        interval = self.systems[system].poll_interval_s
        nudge = self._nudges[system]
        self._looping.add(system)
        try:
            while not stop.is_set():
                nudge.clear()
                try:
                    result = await self.poll(system)
                    wait = (
                        capped_delay(result.retry_after, self.max_defer_s)
                        if result.retry_after
                        else interval
                    )
                except Exception:
                    log.exception("poll crashed", extra={"system": system})
                    wait = interval
                await wait_any(nudge, stop, seconds=wait)
        finally:
            self._looping.discard(system)

    async def lag_seconds(self) -> dict[str, float | None]:
        """Seconds since each system's last successful poll."""
        now = self.clock()
        out: dict[str, float | None] = {}
        async with self.store.tx() as tx:
            for system in self.adapters:
                last = (await tx.system_state(system)).last_poll_at
                out[system] = None if last is None else (now - last).total_seconds()
        return out
