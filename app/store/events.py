"""The inbox and poll log (events), and per-system state (cursor, pause, deferral)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import tables as t
from app.store.base import TxBase
from app.store.records import Event, NewEvent, SystemState, aware_or_none, event_of
from app.store.statements import (
    CLAIM_EVENTS,
    FINISH_EVENT,
    RECORD_EVENT,
    SET_SYSTEM,
    SYSTEM_STATE,
    held_systems_query,
)


class EventQueries(TxBase):
    """The inbox and poll log (events), and per-system state (cursor, pause, deferral)."""

    # -- events (the inbox) ----------------------------------------------------------------

    async def record_event(
        self,
        *,
        system: str,
        delivery_id: str,
        source: str,
        event_type: str,
        body: bytes,
        now: datetime,
        headers: dict[str, str] | None = None,
        state: str = "pending",
        outcome: str | None = None,
    ) -> int | None:
        """Store one event; returns its id, or None when (system, delivery_id) is already
        stored (a duplicate delivery)."""
        (event_id,) = await self.record_events(
            [
                NewEvent(
                    system=system,
                    delivery_id=delivery_id,
                    source=source,
                    event_type=event_type,
                    body=body,
                    headers=headers or {},
                    state=state,
                    outcome=outcome,
                )
            ],
            now=now,
        )
        return event_id

    async def record_events(self, events: Sequence[NewEvent], *, now: datetime) -> list[int | None]:
        """Store several events in one statement; for each, its id, or None when it is
        a duplicate delivery (already stored, or earlier in ``events``)."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for e in events:
            rows.setdefault(
                (e.system, e.delivery_id),
                {
                    "system": e.system,
                    "delivery_id": e.delivery_id,
                    "source": e.source,
                    "event_type": e.event_type,
                    "body": e.body,
                    "headers": e.headers,
                    "state": e.state,
                    "outcome": e.outcome,
                    "attempts": 0 if e.claimed_until is None else 1,
                    "claimed_until": e.claimed_until,
                    "received_at": now,
                    "processed_at": now if e.state != "pending" else None,
                },
            )
        result = await self._run(RECORD_EVENT[self.postgres], list(rows.values()))
        stored = {(r.system, r.delivery_id): int(r.id) for r in result}
        out: list[int | None] = []
        for e in events:
            out.append(stored.pop((e.system, e.delivery_id), None))
        return out

    async def claim_events(
        self, *, now: datetime, lease: timedelta, limit: int, full: Iterable[str] = ()
    ) -> list[Event]:
        """Claim pending events that are due, oldest first (a lease, like links), but
        none of the ``full`` systems (they wait, unclaimed)."""
        params = {
            "b_now": now,
            "b_until": now + lease,
            "b_limit": limit,
            "b_full": sorted(set(full)),
        }
        rows = await self._run(CLAIM_EVENTS[self.postgres], params)
        return sorted((event_of(r) for r in rows), key=lambda e: e.id)

    async def release_events(self, event_ids: Sequence[int]) -> None:
        """Give back claimed events unprocessed: due now, their claim's try not counted."""
        if event_ids:
            await self._run(
                sa.update(t.events)
                .where(t.events.c.id.in_(event_ids), t.events.c.state == "pending")
                .values(claimed_until=None, attempts=t.events.c.attempts - 1)
            )

    async def finish_event(self, event_id: int, *, state: str, outcome: str, now: datetime) -> None:
        await self.finish_events([(event_id, state, outcome)], now=now)

    async def finish_events(
        self, finished: Iterable[tuple[int, str, str]], *, now: datetime
    ) -> None:
        """Mark events processed: (event id, state, outcome) each."""
        rows = [
            {"b_id": event_id, "state": state, "outcome": outcome, "processed_at": now}
            for event_id, state, outcome in finished
        ]
        if rows:
            await self._run(FINISH_EVENT, rows)

    async def retry_event_later(
        self, event_id: int, *, outcome: str, at: datetime, count_attempt: bool = True
    ) -> None:
        """Make a claimed event due again at ``at``. Its claim counted a try; without
        ``count_attempt`` (the vendor asked to wait: a 429) that try is taken back."""
        attempts = t.events.c.attempts - (0 if count_attempt else 1)
        await self._run(
            sa.update(t.events)
            .where(t.events.c.id == event_id)
            .values(outcome=outcome, claimed_until=at, attempts=attempts)
        )

    async def get_event(self, event_id: int) -> Event | None:
        rows = (await self._run(sa.select(t.events).where(t.events.c.id == event_id))).all()
        return event_of(rows[0]) if rows else None

    async def requeue_failed_event(self, event_id: int, *, outcome: str) -> Event | None:
        """Make a failed event pending and due now, with no attempts counted; returns it
        as it is now, or None when there is no such event or it is not failed."""
        rows = (
            await self._run(
                sa.update(t.events)
                .where(t.events.c.id == event_id, t.events.c.state == "failed")
                .values(
                    state="pending",
                    attempts=0,
                    claimed_until=None,
                    processed_at=None,
                    outcome=outcome,
                )
                .returning(*t.events.c)
            )
        ).all()
        return event_of(rows[0]) if rows else None

    async def list_events(
        self,
        *,
        system: str | None = None,
        state: str | None = None,
        source: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Event]:
        query = sa.select(t.events)
        if system:
            query = query.where(t.events.c.system == system)
        if state:
            query = query.where(t.events.c.state == state)
        if source:
            query = query.where(t.events.c.source == source)
        rows = await self._run(query.order_by(t.events.c.id.desc()).limit(limit).offset(offset))
        return [event_of(r) for r in rows]

    async def pending_events(self) -> int:
        return int(
            (
                await self._run(sa.select(sa.func.count()).where(t.events.c.state == "pending"))
            ).scalar_one()
        )

    # -- systems ---------------------------------------------------------------------------

    async def system_state(self, system: str) -> SystemState:
        row = (await self._run(SYSTEM_STATE, {"b_system": system})).first()
        if row is None:
            return SystemState(system=system)
        m = row._mapping
        return SystemState(
            system=system,
            connected_at=aware_or_none(m["connected_at"]),
            paused=bool(m["paused"]),
            poll_cursor=aware_or_none(m["poll_cursor"]),
            last_poll_at=aware_or_none(m["last_poll_at"]),
            last_poll_error=m["last_poll_error"],
            deferred_until=aware_or_none(m["deferred_until"]),
            last_write_error=m["last_write_error"],
        )

    async def connect_systems(self, systems: Iterable[str], now: datetime) -> dict[str, datetime]:
        """When each system was first connected: ``now`` for a system connected for the
        first time (recorded), the stored moment otherwise. Safe when several processes
        connect at once: the first moment stored stays."""
        names = sorted(set(systems))
        if not names:
            return {}
        await self._run(
            sa.update(t.systems)
            .where(t.systems.c.system.in_(names), t.systems.c.connected_at.is_(None))
            .values(connected_at=now)
        )
        insert = (pg_insert if self.postgres else sqlite_insert)(t.systems)
        await self._run(
            insert.values(
                [{"system": name, "connected_at": now} for name in names]
            ).on_conflict_do_nothing(index_elements=["system"])
        )
        rows = await self._run(
            sa.select(t.systems.c.system, t.systems.c.connected_at).where(
                t.systems.c.system.in_(names)
            )
        )
        return {r.system: aware_or_none(r.connected_at) or now for r in rows}

    async def set_system(self, system: str, **values: Any) -> None:
        # the statement is built once: the columns to set are the parameters' names
        updated = await self._run(SET_SYSTEM, {"b_system": system, **values})
        if updated.rowcount == 0:
            await self._run(sa.insert(t.systems).values(system=system, **values))

    async def lift_deferral(self, system: str | None = None) -> None:
        """An operator's resume or retry: forget a 429's deferral (of one system, or of
        all), and make the writes it held back due now."""
        systems = sa.update(t.systems).where(t.systems.c.deferred_until.is_not(None))
        links = sa.update(t.links).where(
            t.links.c.dirty.is_(True),
            t.links.c.dead.is_(False),
            t.links.c.next_attempt_at.is_not(None),
        )
        if system is not None:
            systems = systems.where(t.systems.c.system == system)
            links = links.where(t.links.c.system == system)
        await self._run(systems.values(deferred_until=None))
        await self._run(links.values(next_attempt_at=None))

    async def held_systems(self, now: datetime) -> list[str]:
        """Systems whose writes wait: paused, or deferred by a 429."""
        return [r[0] for r in await self._run(held_systems_query(now))]
