"""Storage: the only module that opens database connections and runs SQL.

SQLite (WAL, one in-process connection driven from the event loop, ``BEGIN IMMEDIATE``)
is the embedded default; PostgreSQL
(asyncpg) is the production store, where several gateway processes share the work:
work items are locked with ``SELECT ... FOR UPDATE`` while a change is applied, and
dirty links and pending events are claimed with ``FOR UPDATE SKIP LOCKED``.

``Store`` owns the engine; ``Tx`` wraps one transaction and offers the operations the
engine, the dispatcher, the receivers, the pollers and the admin API need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.base import Executable

from app import tables as t
from app.errors import AlreadyLinked
from app.model import (
    CreateTarget,
    FieldStamp,
    ObjectRef,
    Priority,
    Status,
    VendorObject,
    WorkItem,
    as_utc,
)
from app.tables import TZ

log = logging.getLogger("syncgate.store")

__all__ = [
    "Event",
    "FinishedWrite",
    "HistoryEntry",
    "Link",
    "NewEvent",
    "Store",
    "Tx",
    "normalize_url",
]


class Link(msgspec.Struct, kw_only=True):
    """One row of the mapping table, as the services see it."""

    id: int
    work_item_id: str
    system: str
    scope: str
    external_id: str | None
    known: VendorObject | None
    vendor_updated_at: datetime | None
    last_synced_at: datetime | None
    create_target: CreateTarget | None
    idempotency_key: str | None
    dirty: bool
    dirty_version: int
    synced_version: int
    next_attempt_at: datetime | None
    attempts: int
    last_error: str | None
    dead: bool
    dead_reason: str | None
    claimed_by: str | None = None
    create_claims: int = 0
    #: When the first create attempt was claimed (None until then, and for linked objects).
    create_started_at: datetime | None = None
    #: The fields the first create attempt sent (kept with the idempotency key).
    create_payload: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        """``synced``, ``pending`` (not tried yet), ``failed`` (retrying) or ``dead``."""
        if self.dead:
            return "dead"
        if not self.dirty:
            return "synced"
        return "failed" if self.attempts > 0 else "pending"

    @property
    def ref(self) -> ObjectRef | None:
        if self.external_id is None:
            return None
        return ObjectRef(self.system, self.scope, self.external_id)


class NewEvent(msgspec.Struct, kw_only=True):
    """An event to store in the inbox."""

    system: str
    delivery_id: str
    source: str
    event_type: str
    body: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    state: str = "pending"
    outcome: str | None = None


class FinishedWrite(msgspec.Struct, kw_only=True):
    """A link whose object now holds its item at ``version``: ``obj`` is what the vendor
    returned, None when no call was needed). If the item moved on meanwhile, the link
    stays dirty and is due again at ``again`` (None: at once)."""

    link: Link
    obj: VendorObject | None
    version: int
    again: datetime | None = None


class Event(msgspec.Struct, kw_only=True):
    """One stored event: a webhook delivery, a poll summary or an admin action."""

    id: int
    system: str
    delivery_id: str
    source: str
    event_type: str
    body: bytes
    headers: dict[str, str]
    state: str
    outcome: str | None
    attempts: int
    received_at: datetime
    processed_at: datetime | None


def _event(row: Any) -> Event:
    m = row._mapping
    return Event(
        id=m["id"],
        system=m["system"],
        delivery_id=m["delivery_id"],
        source=m["source"],
        event_type=m["event_type"],
        body=bytes(m["body"]),
        headers=dict(m["headers"] or {}),
        state=m["state"],
        outcome=m["outcome"],
        attempts=m["attempts"],
        received_at=_dt(m["received_at"]),  # type: ignore[arg-type]
        processed_at=_dt(m["processed_at"]),
    )


class HistoryEntry(msgspec.Struct, kw_only=True):
    work_item_id: str
    kind: str
    at: datetime
    field: str | None = None
    old_value: Any = None
    new_value: Any = None
    system: str | None = None
    event_id: str | None = None
    detail: str | None = None


def normalize_url(url: str) -> str:
    """Pick the driver: ``sqlite:`` -> the in-process sqlite3 module (``sqlite+aiosqlite:``
    is accepted as a spelling of the same), ``postgresql:`` -> asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"):
        parsed = parsed.set(drivername="sqlite+pysqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _known(value: dict[str, Any] | None) -> VendorObject | None:
    return None if value is None else msgspec.convert(value, VendorObject)


def _encode_known(obj: VendorObject) -> dict[str, Any]:
    # raw vendor JSON is not kept in the mapping table: only what the sync needs
    slim = msgspec.structs.replace(obj, raw={})
    return msgspec.to_builtins(slim)  # type: ignore[no-any-return]


def _link(row: Any) -> Link:
    m = row._mapping
    target = m["create_target"]
    return Link(
        id=m["id"],
        work_item_id=m["work_item_id"],
        system=m["system"],
        scope=m["scope"],
        external_id=m["external_id"],
        known=_known(m["known_state"]),
        vendor_updated_at=_dt(m["vendor_updated_at"]),
        last_synced_at=_dt(m["last_synced_at"]),
        create_target=None if target is None else msgspec.convert(target, CreateTarget),
        idempotency_key=m["idempotency_key"],
        dirty=bool(m["dirty"]),
        dirty_version=m["dirty_version"],
        synced_version=m["synced_version"],
        next_attempt_at=_dt(m["next_attempt_at"]),
        attempts=m["attempts"],
        last_error=m["last_error"],
        dead=bool(m["dead"]),
        dead_reason=m["dead_reason"],
        claimed_by=m["claimed_by"],
        create_claims=m["create_claims"],
        create_started_at=_dt(m["create_started_at"]),
        create_payload=m["create_payload"],
    )


def _item(row: Any) -> WorkItem:
    m = row._mapping
    return WorkItem(
        id=m["id"],
        title=m["title"],
        description=m["description"],
        status=Status(m["status"]),
        priority=Priority(m["priority"]),
        snoozed_until=_dt(m["snoozed_until"]),
        assignee=m["assignee"],
        labels=list(m["labels"] or []),
        created_at=_dt(m["created_at"]),  # type: ignore[arg-type]
        updated_at=_dt(m["updated_at"]),  # type: ignore[arg-type]
        version=m["version"],
        stamps={k: msgspec.convert(v, FieldStamp) for k, v in (m["stamps"] or {}).items()},
    )


def _item_values(item: WorkItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "description": item.description,
        "status": str(item.status),
        "priority": str(item.priority),
        "snoozed_until": item.snoozed_until,
        "assignee": item.assignee,
        "labels": list(item.labels),
        "stamps": msgspec.to_builtins(item.stamps),
        "version": item.version,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


# Statements the hot paths run many times, built once (executemany with these
# parameters; a "b_" name is a bound parameter, the others are the columns they set).
_SAVE_ITEM = sa.update(t.work_items).where(t.work_items.c.id == sa.bindparam("b_id"))
_RECORD_SEEN = sa.update(t.links).where(t.links.c.id == sa.bindparam("b_id"))
_MARK_DIRTY = {
    sqlite: sa.update(t.links)
    .where(t.links.c.id == sa.bindparam("b_id"))
    .values(
        dirty=True,
        dirty_version=(sa.func.max if sqlite else sa.func.greatest)(
            t.links.c.dirty_version, sa.bindparam("b_version")
        ),
    )
    for sqlite in (True, False)
}
_FINISH_WRITE = (
    sa.update(t.links)
    .where(
        t.links.c.id == sa.bindparam("b_id"),
        sa.func.coalesce(t.links.c.claimed_by, "") == sa.bindparam("b_claimed_by"),
    )
    .values(
        synced_version=sa.bindparam("b_version"),
        dirty=t.links.c.dirty_version > sa.bindparam("b_version"),
        attempts=0,
        # still dirty (the item moved on meanwhile): due again at b_again
        next_attempt_at=sa.case(
            (
                t.links.c.dirty_version > sa.bindparam("b_version"),
                sa.bindparam("b_again", type_=TZ),
            ),
            else_=None,
        ),
        claimed_by=None,
        claimed_until=None,
        last_error=None,
    )
)


def _held_systems(now: Any) -> sa.Select[Any]:
    """Systems whose writes wait: paused, or deferred by a 429."""
    return sa.select(t.systems.c.system).where(
        sa.or_(t.systems.c.paused.is_(True), t.systems.c.deferred_until > now)
    )


def _claim_links(postgres: bool) -> Any:
    """Claim due dirty links of systems not held back (parameters b_now, b_until,
    b_worker, b_limit)."""
    now = sa.bindparam("b_now", type_=TZ)
    due = (
        sa.select(t.links.c.id)
        .where(
            t.links.c.dirty.is_(True),
            t.links.c.dead.is_(False),
            sa.or_(t.links.c.next_attempt_at.is_(None), t.links.c.next_attempt_at <= now),
            sa.or_(t.links.c.claimed_until.is_(None), t.links.c.claimed_until < now),
        )
        .order_by(t.links.c.id)  # ix_links_pending: no sort, whatever the backlog
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
    )
    due = due.where(t.links.c.system.not_in(_held_systems(now)))
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return (
        sa.update(t.links)
        .where(t.links.c.id.in_(due.scalar_subquery()))
        .values(
            claimed_by=sa.bindparam("b_worker"),
            claimed_until=sa.bindparam("b_until", type_=TZ),
            create_claims=t.links.c.create_claims
            + sa.case((t.links.c.external_id.is_(None), 1), else_=0),
            create_started_at=sa.case(
                (
                    t.links.c.external_id.is_(None),
                    sa.func.coalesce(t.links.c.create_started_at, now),
                ),
                else_=t.links.c.create_started_at,
            ),
        )
        .returning(*t.links.c)
    )


def _claim_events(postgres: bool) -> Any:
    """Claim due pending events (parameters b_now, b_until, b_limit)."""
    due = (
        sa.select(t.events.c.id)
        .where(
            t.events.c.state == "pending",
            sa.or_(
                t.events.c.claimed_until.is_(None),
                t.events.c.claimed_until < sa.bindparam("b_now", type_=TZ),
            ),
        )
        .order_by(t.events.c.id)
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
    )
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return (
        sa.update(t.events)
        .where(t.events.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=sa.bindparam("b_until", type_=TZ), attempts=t.events.c.attempts + 1)
        .returning(*t.events.c)
    )


# The claims and bulk reads of the hot paths, built once (their parameters are bound).
_CLAIM_LINKS = {postgres: _claim_links(postgres) for postgres in (True, False)}
_CLAIM_EVENTS = {postgres: _claim_events(postgres) for postgres in (True, False)}
_IDS: Any = sa.bindparam("b_ids", expanding=True)
_ITEMS = sa.select(t.work_items).where(t.work_items.c.id.in_(_IDS)).order_by(t.work_items.c.id)
_ITEMS_LOCKED = _ITEMS.with_for_update()
_LINKS_OF_ITEMS = sa.select(t.links).where(t.links.c.work_item_id.in_(_IDS)).order_by(t.links.c.id)
_LINKS_OF_OBJECTS = (
    sa.select(t.links)
    .where(t.links.c.system == sa.bindparam("b_system"), t.links.c.external_id.in_(_IDS))
    .order_by(t.links.c.id)
)


def _created_values(link: Link, obj: VendorObject, now: datetime) -> dict[str, Any]:
    """The columns that record the object a write returned."""
    return {
        "external_id": obj.ref.external_id,
        "scope": obj.ref.scope or link.scope,
        "known_state": _encode_known(obj),
        "vendor_updated_at": obj.updated_at,
        "last_synced_at": now,
        "create_target": None,
    }


_RECORD_EVENT = {
    postgres: (pg_insert if postgres else sqlite_insert)(t.events)
    .on_conflict_do_nothing(index_elements=["system", "delivery_id"])
    .returning(t.events.c.id, t.events.c.system, t.events.c.delivery_id)
    for postgres in (True, False)
}
_FINISH_EVENT = (
    sa.update(t.events).where(t.events.c.id == sa.bindparam("b_id")).values(claimed_until=None)
)


class Tx:
    """One database transaction and the operations run inside it."""

    def __init__(self, conn: AsyncConnection | Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    async def _run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run one statement: directly on SQLite's in-process connection, awaited on an
        asyncio driver's."""
        if isinstance(self.conn, Connection):
            return self.conn.execute(statement, params)
        return await self.conn.execute(statement, params)

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    # -- work items ------------------------------------------------------------------------

    async def get_item(self, item_id: str, *, lock: bool = False) -> WorkItem | None:
        """The work item; with ``lock`` its row stays locked until the transaction ends
        (PostgreSQL), which serializes changes to one item across processes."""
        query = sa.select(t.work_items).where(t.work_items.c.id == item_id)
        if lock and self.postgres:
            query = query.with_for_update()
        row = (await self._run(query)).first()
        return None if row is None else _item(row)

    async def insert_item(self, item: WorkItem) -> None:
        await self._run(sa.insert(t.work_items).values(**_item_values(item)))

    async def items_by_id(
        self, item_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, WorkItem]:
        """Several work items at once; with ``lock`` (PostgreSQL) their rows stay locked
        until the transaction ends, taken in id order so two processes cannot deadlock."""
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        query = _ITEMS_LOCKED if lock and self.postgres else _ITEMS
        return {row.id: _item(row) for row in await self._run(query, {"b_ids": ids})}

    async def save_items(self, items: Iterable[WorkItem]) -> None:
        rows = []
        for item in items:
            values = _item_values(item)
            values["b_id"] = values.pop("id")
            rows.append(values)
        if rows:
            await self._run(_SAVE_ITEM, rows)

    async def search_items(
        self,
        *,
        status: str | None = None,
        system: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[WorkItem], int]:
        query = sa.select(t.work_items)
        if status:
            query = query.where(t.work_items.c.status == status)
        if system:
            query = query.where(
                t.work_items.c.id.in_(
                    sa.select(t.links.c.work_item_id).where(t.links.c.system == system)
                )
            )
        if text:
            pattern = f"%{text.lower()}%"
            query = query.where(
                sa.or_(
                    sa.func.lower(t.work_items.c.title).like(pattern),
                    sa.func.lower(t.work_items.c.description).like(pattern),
                )
            )
        total = (
            await self._run(sa.select(sa.func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = await self._run(
            query.order_by(t.work_items.c.updated_at.desc(), t.work_items.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [_item(r) for r in rows], int(total)

    # -- links -----------------------------------------------------------------------------

    async def link_for(self, ref: ObjectRef) -> Link | None:
        """The link of a vendor object. A ref with an empty scope (a webhook hint that
        names only the id) matches the object in any scope of its system."""
        return (await self.links_for([ref])).get(ref)

    async def get_link(self, link_id: int) -> Link | None:
        row = (await self._run(sa.select(t.links).where(t.links.c.id == link_id))).first()
        return None if row is None else _link(row)

    async def links_of(self, item_id: str) -> list[Link]:
        rows = await self._run(
            sa.select(t.links).where(t.links.c.work_item_id == item_id).order_by(t.links.c.id)
        )
        return [_link(r) for r in rows]

    async def insert_link(
        self,
        *,
        work_item_id: str,
        system: str,
        scope: str,
        now: datetime,
        seen: VendorObject | None = None,
        create_target: CreateTarget | None = None,
        version: int = 1,
        dirty: bool = False,
    ) -> int:
        """Add a link: either to an object we have seen (``seen``), or to one still to be
        created (``create_target``; it is dirty until created)."""
        values: dict[str, Any] = {
            "work_item_id": work_item_id,
            "system": system,
            "scope": scope,
            "created_at": now,
            "dirty": dirty,
            "dirty_version": version if dirty else 0,
            "synced_version": 0 if dirty else version,
            "attempts": 0,
            "dead": False,
        }
        if seen is not None:
            values |= {
                "external_id": seen.ref.external_id,
                "known_state": _encode_known(seen),
                "vendor_updated_at": seen.updated_at,
                "last_synced_at": now,
            }
        if create_target is not None:
            values["create_target"] = msgspec.to_builtins(create_target)
        try:
            result = await self._run(sa.insert(t.links).values(**values).returning(t.links.c.id))
        except IntegrityError:
            what = seen.ref.external_id if seen is not None else "(to be created)"
            raise AlreadyLinked(f"{system} object {what!r} is linked already") from None
        link_id = int(result.scalar_one())
        if create_target is not None:
            await self._run(
                sa.update(t.links)
                .where(t.links.c.id == link_id)
                .values(idempotency_key=f"syncgate-{work_item_id}-{link_id}")
            )
        return link_id

    async def links_for(self, refs: Iterable[ObjectRef]) -> dict[ObjectRef, Link]:
        """The links of several vendor objects (``link_for`` for each, in one query per
        system); objects with no link are left out."""
        refs = list(refs)
        wanted: dict[str, set[str]] = {}
        for ref in refs:
            wanted.setdefault(ref.system, set()).add(ref.external_id)
        by_object: dict[tuple[str, str], list[Link]] = {}
        for system, ids in wanted.items():
            rows = await self._run(_LINKS_OF_OBJECTS, {"b_system": system, "b_ids": sorted(ids)})
            for row in rows:
                link = _link(row)
                by_object.setdefault((system, link.external_id or ""), []).append(link)
        out: dict[ObjectRef, Link] = {}
        for ref in refs:
            for link in by_object.get((ref.system, ref.external_id), ()):
                if not ref.scope or link.scope == ref.scope:
                    out[ref] = link
                    break
        return out

    async def links_of_items(self, item_ids: Iterable[str]) -> list[Link]:
        ids = sorted(set(item_ids))
        if not ids:
            return []
        return [_link(r) for r in await self._run(_LINKS_OF_ITEMS, {"b_ids": ids})]

    async def record_seen_many(
        self, seen: Iterable[tuple[int, VendorObject]], now: datetime
    ) -> None:
        rows = [
            {
                "b_id": link_id,
                "known_state": _encode_known(obj),
                "vendor_updated_at": obj.updated_at,
                "last_synced_at": now,
            }
            for link_id, obj in seen
        ]
        if rows:
            await self._run(_RECORD_SEEN, rows)

    async def mark_dirty(self, link_ids: Iterable[int], version: int) -> None:
        await self.mark_dirty_many({link_id: version for link_id in link_ids})

    async def mark_dirty_many(self, versions: Mapping[int, int]) -> None:
        """Mark links dirty: each must reach (at least) the item version given for it."""
        rows = [{"b_id": link_id, "b_version": v} for link_id, v in sorted(versions.items())]
        if rows:
            await self._run(_MARK_DIRTY[self.dialect == "sqlite"], rows)

    async def unlink(self, link_id: int) -> None:
        await self._run(sa.delete(t.links).where(t.links.c.id == link_id))

    async def move_link(self, link_id: int, work_item_id: str, version: int) -> None:
        """Move a link to another work item, at that item's ``version``: the version
        bookkeeping starts afresh (the old item's versions mean nothing to the new one),
        and a live link is marked to receive the new item's state."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id)
            .values(
                work_item_id=work_item_id,
                dirty=sa.not_(t.links.c.dead),
                dirty_version=version,
                synced_version=0,
                attempts=0,
                next_attempt_at=None,
            )
        )

    async def renew_claims(self, link_ids: Iterable[int], *, worker: str, until: datetime) -> int:
        """Extend this worker's claims on links whose writes are still in flight; returns
        how many it still held."""
        ids = sorted(set(link_ids))
        if not ids:
            return 0
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id.in_(ids), t.links.c.claimed_by == worker)
            .values(claimed_until=until)
        )
        return int(result.rowcount)

    async def save_create_intent(self, link_id: int, payload: dict[str, Any]) -> None:
        """Keep the fields the first create attempt sends (once: a retry keeps them)."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.create_payload.is_(None))
            .values(create_payload=payload)
        )

    async def repair_dirty_version(self, link_id: int, version: int) -> None:
        """Bring a link's target version back to its item's (it can only be ahead after
        bookkeeping from another item; the write made now renders the item as it is)."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.dirty_version > version)
            .values(dirty_version=version)
        )

    # -- outbox: claiming and finishing writes ---------------------------------------------

    async def claim_due_links(
        self, *, worker: str, now: datetime, lease: timedelta, limit: int
    ) -> list[Link]:
        """Claim up to ``limit`` dirty links that are due, one writer per link: a claim is
        a lease that lapses, so a crashed worker's links are picked up again. Links of
        systems that are paused or deferred by a 429 wait."""
        params = {"b_now": now, "b_until": now + lease, "b_worker": worker, "b_limit": limit}
        statement = _CLAIM_LINKS[self.postgres]
        rows = await self._run(statement, params)
        return sorted((_link(r) for r in rows), key=lambda link: link.id)

    async def finish_write(
        self,
        link: Link,
        obj: VendorObject | None,
        *,
        version: int,
        now: datetime,
    ) -> None:
        """The object now holds the item at ``version`` (``obj`` is what the vendor
        returned; None when no call was needed). It stays dirty if the item moved on."""
        await self.finish_writes([FinishedWrite(link=link, obj=obj, version=version)], now=now)

    async def finish_writes(self, finished: Sequence[FinishedWrite], *, now: datetime) -> None:
        """``finish_write`` for several links, in two statements at most. A link whose
        claim was lost (its lease lapsed and another writer took it) is left alone."""
        synced = []
        written = []
        for f in finished:
            row: dict[str, Any] = {
                "b_id": f.link.id,
                "b_claimed_by": f.link.claimed_by or "",
                "b_version": f.version,
                "b_again": f.again or now,
            }
            if f.obj is None:
                synced.append(row)
            else:
                written.append(row | _created_values(f.link, f.obj, now))
        if synced:
            await self._run(_FINISH_WRITE, synced)
        if written:
            await self._run(_FINISH_WRITE, written)

    async def record_created(self, link: Link, obj: VendorObject, now: datetime) -> None:
        """Link the object a create made, although the write is not finished (a call
        after the create failed): the next attempt updates it instead of creating."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link.id)
            .values(**_created_values(link, obj, now))
        )

    async def retry_link_later(
        self, link: Link, *, error: str, at: datetime, count_attempt: bool = True
    ) -> None:
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link.id, t.links.c.claimed_by == link.claimed_by)
            .values(
                attempts=t.links.c.attempts + (1 if count_attempt else 0),
                next_attempt_at=at,
                last_error=error,
                claimed_by=None,
                claimed_until=None,
            )
        )

    async def dead_letter(self, link: Link, reason: str) -> None:
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link.id)
            .values(
                dead=True,
                dead_reason=reason,
                last_error=reason,
                attempts=t.links.c.attempts + 1,
                claimed_by=None,
                claimed_until=None,
            )
        )

    async def revive(self, link_id: int | None = None) -> int:
        """Retry dead-lettered writes (one, or all): they become due now."""
        query = sa.update(t.links).where(t.links.c.dead.is_(True))
        if link_id is not None:
            query = query.where(t.links.c.id == link_id)
        result = await self._run(
            query.values(dead=False, dead_reason=None, attempts=0, next_attempt_at=None, dirty=True)
        )
        return int(result.rowcount)

    async def discard(self, link_id: int | None = None) -> int:
        """Give up on dead-lettered writes: they are no longer dirty (nor dead)."""
        query = sa.update(t.links).where(t.links.c.dead.is_(True))
        if link_id is not None:
            query = query.where(t.links.c.id == link_id)
        result = await self._run(
            query.values(dead=False, dirty=False, synced_version=t.links.c.dirty_version)
        )
        return int(result.rowcount)

    async def outbox(self, state: str, limit: int = 100, offset: int = 0) -> list[Link]:
        """Links by outbox state: ``pending`` (dirty, not yet tried), ``failed`` (dirty,
        retrying after errors), ``dead``."""
        query = sa.select(t.links)
        if state == "dead":
            query = query.where(t.links.c.dead.is_(True))
        elif state == "failed":
            query = query.where(
                t.links.c.dirty.is_(True), t.links.c.dead.is_(False), t.links.c.attempts > 0
            )
        else:
            query = query.where(
                t.links.c.dirty.is_(True), t.links.c.dead.is_(False), t.links.c.attempts == 0
            )
        rows = await self._run(query.order_by(t.links.c.id).limit(limit).offset(offset))
        return [_link(r) for r in rows]

    async def queue_depth(self) -> dict[str, int]:
        """Dirty (not dead) links per system."""
        rows: Any = await self._run(
            sa.select(t.links.c.system, sa.func.count())
            .where(t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .group_by(t.links.c.system)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def dead_count(self) -> int:
        return int(
            (
                await self._run(sa.select(sa.func.count()).where(t.links.c.dead.is_(True)))
            ).scalar_one()
        )

    # -- history and attempts --------------------------------------------------------------

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if entries:
            await self._run(sa.insert(t.history), [msgspec.structs.asdict(e) for e in entries])

    async def history_of(self, item_id: str, limit: int = 500) -> list[HistoryEntry]:
        rows = await self._run(
            sa.select(t.history)
            .where(t.history.c.work_item_id == item_id)
            .order_by(t.history.c.id)
            .limit(limit)
        )
        return [
            HistoryEntry(
                **{k: v for k, v in r._mapping.items() if k not in ("id", "at")},
                at=_dt(r._mapping["at"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def add_attempts(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self._run(sa.insert(t.write_attempts), rows)

    async def attempts_of(self, link_id: int) -> list[dict[str, Any]]:
        rows = await self._run(
            sa.select(t.write_attempts)
            .where(t.write_attempts.c.link_id == link_id)
            .order_by(t.write_attempts.c.id)
        )
        return [dict(r._mapping) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Delete history, attempts and processed events older than ``before``."""
        n = 0
        for table, column in (
            (t.history, t.history.c.at),
            (t.write_attempts, t.write_attempts.c.at),
        ):
            n += int((await self._run(sa.delete(table).where(column < before))).rowcount)
        n += int(
            (
                await self._run(
                    sa.delete(t.events).where(
                        t.events.c.received_at < before, t.events.c.state != "pending"
                    )
                )
            ).rowcount
        )
        return n

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
                    "attempts": 0,
                    "received_at": now,
                    "processed_at": now if e.state != "pending" else None,
                },
            )
        result = await self._run(_RECORD_EVENT[self.postgres], list(rows.values()))
        stored = {(r.system, r.delivery_id): int(r.id) for r in result}
        out: list[int | None] = []
        for e in events:
            out.append(stored.pop((e.system, e.delivery_id), None))
        return out

    async def claim_events(self, *, now: datetime, lease: timedelta, limit: int) -> list[Event]:
        """Claim pending events that are due, oldest first (a lease, like links)."""
        rows = await self._run(
            _CLAIM_EVENTS[self.postgres], {"b_now": now, "b_until": now + lease, "b_limit": limit}
        )
        return sorted((_event(r) for r in rows), key=lambda e: e.id)

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
            await self._run(_FINISH_EVENT, rows)

    async def retry_event_later(self, event_id: int, *, outcome: str, at: datetime) -> None:
        await self._run(
            sa.update(t.events)
            .where(t.events.c.id == event_id)
            .values(outcome=outcome, claimed_until=at)
        )

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
        return [_event(r) for r in rows]

    async def pending_events(self) -> int:
        return int(
            (
                await self._run(sa.select(sa.func.count()).where(t.events.c.state == "pending"))
            ).scalar_one()
        )

    # -- systems ---------------------------------------------------------------------------

    async def system_state(self, system: str) -> dict[str, Any]:
        row = (await self._run(sa.select(t.systems).where(t.systems.c.system == system))).first()
        if row is None:
            return {
                "system": system,
                "paused": False,
                "poll_cursor": None,
                "last_poll_at": None,
                "last_poll_error": None,
                "deferred_until": None,
                "last_write_error": None,
            }
        values = dict(row._mapping)
        for key in ("poll_cursor", "last_poll_at", "deferred_until"):
            values[key] = _dt(values[key])
        return values

    async def set_system(self, system: str, **values: Any) -> None:
        updated = await self._run(
            sa.update(t.systems).where(t.systems.c.system == system).values(**values)
        )
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
        return [r[0] for r in await self._run(_held_systems(now))]

    # -- admin queries ---------------------------------------------------------------------

    async def retry_now(self, link_id: int) -> int:
        """Make a dirty (not dead) link's write due now, skipping its backoff."""
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .values(next_attempt_at=None)
        )
        return int(result.rowcount)

    async def discard_pending(self, link_id: int) -> int:
        """Give up on a link's pending or failed (not dead) write: it is no longer dirty."""
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .values(
                dirty=False,
                synced_version=t.links.c.dirty_version,
                next_attempt_at=None,
                attempts=0,
            )
        )
        return int(result.rowcount)

    async def dead_by_system(self) -> dict[str, int]:
        """Dead-lettered writes per system."""
        rows: Any = await self._run(
            sa.select(t.links.c.system, sa.func.count())
            .where(t.links.c.dead.is_(True))
            .group_by(t.links.c.system)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def recent_history(self, item_id: str, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` history entries of an item, oldest first."""
        rows = await self._run(
            sa.select(t.history)
            .where(t.history.c.work_item_id == item_id)
            .order_by(t.history.c.id.desc())
            .limit(limit)
        )
        entries = [
            HistoryEntry(
                **{k: v for k, v in r._mapping.items() if k not in ("id", "at")},
                at=_dt(r._mapping["at"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]
        entries.reverse()
        return entries


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


#: JSON columns are encoded and decoded by msgspec (several times faster than json).
_JSON_CODEC: dict[str, Any] = {
    "json_serializer": _json_dumps,
    "json_deserializer": msgspec.json.decode,
}


class Store:
    """The database: connections, transactions and migrations.

    SQLite runs in this process on one connection, driven directly from the event loop:
    its statements take microseconds (WAL, ``synchronous=NORMAL``), far less than a
    thread hop per statement would cost, and an asyncio lock makes transactions take
    turns, which SQLite's single writer requires anyway. PostgreSQL goes through
    asyncpg and a connection pool.
    """

    def __init__(self, engine: AsyncEngine | Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._turn = asyncio.Lock()
        self._checkpointer: WalCheckpointer | None = None

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10) -> Store:
        url = normalize_url(url)
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite"):
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=StaticPool, **_JSON_CODEC)
            sa_event.listen(engine, "connect", _sqlite_on_connect)
            sa_event.listen(engine, "begin", _sqlite_on_begin)
            store = cls(engine)
            if parsed.database and parsed.database != ":memory:":
                store._checkpointer = WalCheckpointer(parsed.database)
            return store
        return cls(
            create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **_JSON_CODEC
            )
        )

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        if isinstance(self.engine, Engine):
            async with self._turn:
                self.engine.dispose()
        else:
            await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        if isinstance(self.engine, Engine):
            async with self._turn:
                with self.engine.begin() as conn:
                    yield Tx(conn, self.dialect)
        else:
            async with self.engine.begin() as aconn:
                yield Tx(aconn, self.dialect)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (alembic upgrade head)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))

        def upgrade(sync_conn: Any) -> None:
            config.attributes["connection"] = sync_conn
            command.upgrade(config, "head")

        if isinstance(self.engine, Engine):
            async with self._turn:
                with self.engine.begin() as conn:
                    upgrade(conn)
            return
        async with self.engine.begin() as aconn:
            # several processes may start at once: one migrates, the others wait
            await aconn.execute(sa.text("SELECT pg_advisory_xact_lock(7243190)"))
            await aconn.run_sync(upgrade)

    async def ping(self) -> bool:
        try:
            async with self.tx() as tx:
                await tx._run(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False
        return True


class WalCheckpointer:
    """Copies SQLite's write-ahead log back into the database file from a thread of its
    own, on its own connection, every ``every_s`` (a PASSIVE checkpoint never blocks the
    gateway's writes). Left to SQLite, a checkpoint runs inside whichever commit crosses
    the log's size limit, with an fsync, on the event loop: a stall of tens of
    milliseconds for every delivery waiting at that moment."""

    def __init__(self, path: str, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        while not self._stop.wait(self.every_s):
            try:
                if con is None:
                    con = sqlite3.connect(self.path, timeout=5.0, check_same_thread=True)
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                log.warning("SQLite checkpoint failed; retrying", exc_info=True)
                if con is not None:
                    con.close()
                con = None
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a small log behind
            con.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of the driver's
    # deferred BEGIN, so a transaction takes the write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # checkpoints run in WalCheckpointer's thread, not in a commit on the event loop
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
