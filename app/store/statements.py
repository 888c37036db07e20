"""The statements of the hot paths, built once with bound parameters (a "b_" name is a
bound parameter; the others are the columns they set)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import tables as t
from app.model import (
    VendorObject,
)
from app.store.direct import hot
from app.store.records import Link, encode_known
from app.tables import TZ

SAVE_ITEM = sa.update(t.work_items).where(t.work_items.c.id == sa.bindparam("b_id"))
RECORD_SEEN = sa.update(t.links).where(t.links.c.id == sa.bindparam("b_id"))
MARK_DIRTY = {
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
#: The link is still on the work item whose version the write carried: a link moved to
#: another item meanwhile (a relink) holds none of the new item's versions, whatever
#: their numbers, and stays dirty for it.
_SAME_ITEM = t.links.c.work_item_id == sa.bindparam("b_item")
_STILL_DIRTY = sa.or_(sa.not_(_SAME_ITEM), t.links.c.dirty_version > sa.bindparam("b_version"))
FINISH_WRITE = (
    sa.update(t.links)
    .where(
        t.links.c.id == sa.bindparam("b_id"),
        sa.func.coalesce(t.links.c.claimed_by, "") == sa.bindparam("b_claimed_by"),
    )
    .values(
        synced_version=sa.case(
            (_SAME_ITEM, sa.bindparam("b_version")), else_=t.links.c.synced_version
        ),
        dirty=_STILL_DIRTY,
        attempts=0,
        # still dirty (the item moved on meanwhile, or the link moved): due again at b_again
        next_attempt_at=sa.case(
            (_STILL_DIRTY, sa.bindparam("b_again", type_=TZ)),
            else_=None,
        ),
        claimed_by=None,
        claimed_until=None,
        last_error=None,
        # finished: the vendor answered the write, or the read before it showed the object
        # holding the item's state already; nothing sent is left unconfirmed
        unconfirmed=sa.null(),
    )
)


def one_of(column: Any, name: str, postgres: bool, *, negate: bool = False) -> Any:
    """``column IN :name`` (``NOT IN`` with ``negate``) for a list bound when the statement
    runs. On SQLite the list expands into one parameter per value. On PostgreSQL it is one
    array parameter (``= ANY``, ``<> ALL``), so the statement's text is the same whatever
    the list's length: asyncpg prepares it once per connection, not once per length (a
    claim's list of links in flight takes any length from 0 to ``concurrency``), and
    SQLAlchemy has no parameters to expand into the text at each run."""
    if postgres:
        values = sa.bindparam(name, type_=ARRAY(column.type))
        return column != sa.all_(values) if negate else column == sa.any_(values)
    values = sa.bindparam(name, expanding=True)
    return column.not_in(values) if negate else column.in_(values)


def held_systems_query(now: Any) -> sa.Select[Any]:
    """Systems whose writes wait: paused, or deferred by a 429."""
    return sa.select(t.systems.c.system).where(
        sa.or_(t.systems.c.paused.is_(True), t.systems.c.deferred_until > now)
    )


def claim_links_query(postgres: bool, *, among: bool = False) -> Any:
    """Claim due dirty links of systems not held back (parameters b_now, b_until,
    b_worker, b_limit; b_busy: the ids of links to leave alone; b_full: the systems to
    leave alone, those at their share of the worker's writes in flight). With ``among``,
    only links whose ids are in b_ids (those an engine transaction just made dirty)."""
    now = sa.bindparam("b_now", type_=TZ)
    due = (
        sa.select(t.links.c.id)
        .where(
            t.links.c.dirty.is_(True),
            t.links.c.dead.is_(False),
            sa.or_(t.links.c.next_attempt_at.is_(None), t.links.c.next_attempt_at <= now),
            sa.or_(t.links.c.claimed_until.is_(None), t.links.c.claimed_until < now),
            # never a link whose write this worker still has in flight (its outcome may
            # be committed already, but not yet known to the worker)
            one_of(t.links.c.id, "b_busy", postgres, negate=True),
            one_of(t.links.c.system, "b_full", postgres, negate=True),
        )
        .order_by(t.links.c.id)  # ix_links_pending: no sort, whatever the backlog
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
    )
    if among:
        due = due.where(one_of(t.links.c.id, "b_ids", postgres))
    due = due.where(t.links.c.system.not_in(held_systems_query(now)))
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


def claim_events_query(postgres: bool) -> Any:
    """Claim due pending events (parameters b_now, b_until, b_limit; b_full: the systems
    whose events to leave alone)."""
    due = (
        sa.select(t.events.c.id)
        .where(
            t.events.c.state == "pending",
            one_of(t.events.c.system, "b_full", postgres, negate=True),
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
CLAIM_LINKS = {postgres: claim_links_query(postgres) for postgres in (True, False)}
CLAIM_THESE_LINKS = {
    postgres: claim_links_query(postgres, among=True) for postgres in (True, False)
}
CLAIM_EVENTS = {postgres: claim_events_query(postgres) for postgres in (True, False)}


class BulkReads(NamedTuple):
    """The reads of many rows by id (parameter b_ids, a list; b_system for objects), in
    one dialect's form (``READS``). The ``_locked`` ones are for PostgreSQL's row locks."""

    items: Any
    items_locked: Any
    links_by_id: Any
    lock_links: Any
    links_of_items: Any
    links_of_items_locked: Any
    links_of_objects: Any
    #: which items objects are linked to: ``links_of_objects`` without the rest of the row
    items_of_objects: Any


def bulk_reads(postgres: bool) -> BulkReads:
    item_ids = one_of(t.work_items.c.id, "b_ids", postgres)
    link_ids = one_of(t.links.c.id, "b_ids", postgres)
    of_system = t.links.c.system == sa.bindparam("b_system")
    external_ids = one_of(t.links.c.external_id, "b_ids", postgres)
    items = sa.select(t.work_items).where(item_ids).order_by(t.work_items.c.id)
    links_of_items = (
        sa.select(t.links)
        .where(one_of(t.links.c.work_item_id, "b_ids", postgres))
        .order_by(t.links.c.id)
    )
    return BulkReads(
        items=items,
        items_locked=items.with_for_update(),
        links_by_id=sa.select(t.links).where(link_ids).order_by(t.links.c.id),
        lock_links=sa.select(t.links.c.id).where(link_ids).order_by(t.links.c.id).with_for_update(),
        links_of_items=links_of_items,
        links_of_items_locked=links_of_items.with_for_update(),
        links_of_objects=sa.select(t.links).where(of_system, external_ids).order_by(t.links.c.id),
        items_of_objects=sa.select(t.links.c.scope, t.links.c.external_id, t.links.c.work_item_id)
        .where(of_system, external_ids)
        .order_by(t.links.c.id),
    )


#: The bulk reads, by dialect (True: PostgreSQL), chosen like the claims.
READS = {postgres: bulk_reads(postgres) for postgres in (True, False)}


def created_values(link: Link, obj: VendorObject, now: datetime) -> dict[str, Any]:
    """The columns that record the object a write returned.

    The object's identity (``external_id``, ``scope``) and ``create_target`` are set only
    when they change, which is after a create: SQLite rewrites the entries of every index
    on a column an UPDATE sets, changed or not, and an update of a known object would
    otherwise rewrite two unique-index entries per write (about a sixth of the pages the
    write-ahead log took per change, docs/benchmarks.md)."""
    values: dict[str, Any] = {
        "known_state": encode_known(obj),
        "vendor_updated_at": obj.updated_at,
        "last_synced_at": now,
    }
    scope = obj.ref.scope or link.scope
    if obj.ref.external_id != link.external_id or scope != link.scope:
        values["external_id"] = obj.ref.external_id
        values["scope"] = scope
    if link.create_target is not None:
        values["create_target"] = None
    return values


RECORD_EVENT = {
    postgres: (pg_insert if postgres else sqlite_insert)(t.events)
    .on_conflict_do_nothing(index_elements=["system", "delivery_id"])
    .returning(t.events.c.id, t.events.c.system, t.events.c.delivery_id)
    for postgres in (True, False)
}
#: A system's row (``systems``), read and set by every poll.
SYSTEM_STATE = sa.select(t.systems).where(t.systems.c.system == sa.bindparam("b_system"))
SET_SYSTEM = sa.update(t.systems).where(t.systems.c.system == sa.bindparam("b_system"))
FINISH_EVENT = (
    sa.update(t.events).where(t.events.c.id == sa.bindparam("b_id")).values(claimed_until=None)
)
INSERT_HISTORY = sa.insert(t.history)
INSERT_ATTEMPTS = sa.insert(t.write_attempts)

# What runs for every change, straight on the driver (``app/store/direct.py``): on
# SQLite, and on PostgreSQL with its row-locking forms (the events' insert, a RETURNING
# over many rows, stays with SQLAlchemy there: it makes it one statement).
for _statement in (
    SAVE_ITEM,
    RECORD_SEEN,
    *MARK_DIRTY.values(),
    FINISH_WRITE,
    *CLAIM_LINKS.values(),
    *CLAIM_THESE_LINKS.values(),
    *CLAIM_EVENTS.values(),
    READS[False].items,
    READS[False].links_by_id,
    READS[False].links_of_items,
    READS[False].links_of_objects,
    READS[False].items_of_objects,
    *READS[True],
    RECORD_EVENT[False],
    FINISH_EVENT,
    INSERT_HISTORY,
    INSERT_ATTEMPTS,
):
    hot(_statement)
