"""The mapping table and the outbox: links, claims, finished and failed writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import tables as t
from app.errors import AlreadyLinked, Missing
from app.model import (
    CreateTarget,
    ObjectRef,
    VendorObject,
)
from app.store.base import TxBase
from app.store.records import FinishedWrite, Link, encode_known, link_of
from app.store.statements import (
    CLAIM_LINKS,
    CLAIM_THESE_LINKS,
    FINISH_WRITE,
    MARK_DIRTY,
    READS,
    RECORD_SEEN,
    created_values,
)

T = TypeVar("T")


class LinkQueries(TxBase):
    """The mapping table and the outbox: links, claims, finished and failed writes."""

    # -- links -----------------------------------------------------------------------------

    async def link_for(self, ref: ObjectRef) -> Link | None:
        """The link of a vendor object. A ref with an empty scope (a webhook hint that
        names only the id) matches the object in any scope of its system."""
        return (await self.links_for([ref])).get(ref)

    async def get_link(self, link_id: int) -> Link | None:
        row = (await self._run(sa.select(t.links).where(t.links.c.id == link_id))).first()
        return None if row is None else link_of(row)

    async def links_by_id(self, link_ids: Iterable[int]) -> dict[int, Link]:
        """Several links at once; ids with no link are left out."""
        ids = sorted(set(link_ids))
        if not ids:
            return {}
        return {
            row.id: link_of(row)
            for row in await self._run(READS[self.postgres].links_by_id, {"b_ids": ids})
        }

    async def link_by_key(self, idempotency_key: str) -> Link | None:
        """The link whose create carries ``idempotency_key`` (its marker), if any."""
        row = (
            await self._run(sa.select(t.links).where(t.links.c.idempotency_key == idempotency_key))
        ).first()
        return None if row is None else link_of(row)

    async def require_link(self, link_id: int) -> Link:
        """The link; raises ``Missing`` when there is none."""
        link = await self.get_link(link_id)
        if link is None:
            raise Missing(f"no link {link_id}")
        return link

    async def links_of(self, item_id: str) -> list[Link]:
        rows = await self._run(
            sa.select(t.links).where(t.links.c.work_item_id == item_id).order_by(t.links.c.id)
        )
        return [link_of(r) for r in rows]

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
        unseen: bool = False,
    ) -> int:
        """Add a link: either to an object we have seen (``seen``), or to one still to be
        created (``create_target``; it is dirty until created). ``unseen``: to ``seen``'s
        id only, its state not taken as known, so that observing it next counts every
        field it holds as a change there (a backfill restoring a lost item)."""
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
        if seen is not None and unseen:
            values["external_id"] = seen.ref.external_id
        elif seen is not None:
            values |= {
                "external_id": seen.ref.external_id,
                "known_state": encode_known(seen),
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

    async def insert_seen_links(
        self, seen: Sequence[tuple[str, VendorObject]], *, now: datetime
    ) -> None:
        """Link several objects already seen, each to its work item, in one statement (a
        bulk load); synced at version 1. Raises ``AlreadyLinked`` if one is linked."""
        rows = [
            {
                "work_item_id": item_id,
                "system": obj.ref.system,
                "scope": obj.ref.scope,
                "external_id": obj.ref.external_id,
                "known_state": encode_known(obj),
                "vendor_updated_at": obj.updated_at,
                "last_synced_at": now,
                "created_at": now,
                "dirty": False,
                "dirty_version": 0,
                "synced_version": 1,
                "attempts": 0,
                "dead": False,
            }
            for item_id, obj in seen
        ]
        if not rows:
            return
        try:
            await self._run(sa.insert(t.links), rows)
        except IntegrityError:
            raise AlreadyLinked("one of the objects is linked already") from None

    async def links_for(self, refs: Iterable[ObjectRef]) -> dict[ObjectRef, Link]:
        """The links of several vendor objects (``link_for`` for each, in one query per
        system); objects with no link are left out."""
        refs = list(refs)
        by_object: dict[tuple[str, str], list[Link]] = {}
        for system, ids in _ids_by_system(refs).items():
            rows = await self._run(
                READS[self.postgres].links_of_objects, {"b_system": system, "b_ids": ids}
            )
            for row in rows:
                link = link_of(row)
                by_object.setdefault((system, link.external_id or ""), []).append(link)
        return _match(refs, by_object, lambda link: link.scope)

    async def items_of_objects(self, refs: Iterable[ObjectRef]) -> dict[ObjectRef, str]:
        """The work item each of several vendor objects is linked to (as ``links_for``
        finds their links, without reading the rest of each link); objects with no link
        are left out."""
        refs = list(refs)
        by_object: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
        for system, ids in _ids_by_system(refs).items():
            rows = await self._run(
                READS[self.postgres].items_of_objects, {"b_system": system, "b_ids": ids}
            )
            for row in rows:
                by_object.setdefault((system, row.external_id), []).append(
                    (row.scope, row.work_item_id)
                )
        found = _match(refs, by_object, lambda pair: pair[0])
        return {ref: item_id for ref, (_, item_id) in found.items()}

    async def links_of_items(self, item_ids: Iterable[str], *, lock: bool = False) -> list[Link]:
        """The links of these items; with ``lock`` (PostgreSQL) their rows stay locked
        until the transaction ends, taken in id order (after the items' locks)."""
        ids = sorted(set(item_ids))
        if not ids:
            return []
        reads = READS[self.postgres]
        query = reads.links_of_items_locked if lock and self.postgres else reads.links_of_items
        return [link_of(r) for r in await self._run(query, {"b_ids": ids})]

    async def lock_links(self, link_ids: Iterable[int]) -> None:
        """Lock these links (PostgreSQL) until the transaction ends, in id order: a
        transaction that then changes them in any order cannot deadlock with another
        that takes its locks in the same order (the engine's: items, then links)."""
        ids = sorted(set(link_ids))
        if ids and self.postgres:
            await self._run(READS[True].lock_links, {"b_ids": ids})

    async def release_claims(self, link_ids: Iterable[int], *, worker: str, due: datetime) -> int:
        """Give up this worker's claims on links whose outcomes could not be recorded:
        they are due again at ``due`` instead of waiting for their leases to lapse;
        returns how many it still held."""
        return await self._own_claims(
            link_ids, worker, claimed_by=None, claimed_until=None, next_attempt_at=due
        )

    async def record_seen_many(
        self, seen: Iterable[tuple[int, tuple[VendorObject, datetime | None]]]
    ) -> None:
        """What each link saw of its object, and since when (``Batch.saw``)."""
        rows = [
            {
                "b_id": link_id,
                "known_state": encode_known(obj),
                "vendor_updated_at": obj.updated_at,
                "last_synced_at": since,
            }
            for link_id, (obj, since) in seen
        ]
        if rows:
            await self._run(RECORD_SEEN, rows)

    async def mark_dirty(self, link_ids: Iterable[int], version: int) -> None:
        await self.mark_dirty_many({link_id: version for link_id in link_ids})

    async def mark_dirty_many(self, versions: Mapping[int, int]) -> None:
        """Mark links dirty: each must reach (at least) the item version given for it."""
        rows = [{"b_id": link_id, "b_version": v} for link_id, v in sorted(versions.items())]
        if rows:
            await self._run(MARK_DIRTY[self.dialect == "sqlite"], rows)

    async def unlink(self, link_id: int, *, unless_creating_at: datetime | None = None) -> bool:
        """Delete the link; with ``unless_creating_at``, not while its object is being
        created (claimed, still to be created, its claim not lapsed at that moment).
        Returns whether it was deleted."""
        query = sa.delete(t.links).where(t.links.c.id == link_id)
        if unless_creating_at is not None:
            query = query.where(
                sa.not_(
                    sa.and_(
                        t.links.c.external_id.is_(None),
                        t.links.c.claimed_by.is_not(None),
                        t.links.c.claimed_until > unless_creating_at,
                    )
                )
            )
        return bool((await self._run(query)).rowcount)

    async def move_link(self, link_id: int, work_item_id: str, version: int) -> None:
        """Move a link to another work item, at that item's ``version``: the version
        bookkeeping starts afresh (the old item's versions mean nothing to the new one),
        and the link is marked to receive the new item's state. A dead write to an object
        that exists was the old item's: it is given up with the move, and the new item's
        state is written. A dead create stays dead: its recorded body was the old item's."""
        has_object = t.links.c.external_id.is_not(None)
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id)
            .values(
                work_item_id=work_item_id,
                dead=sa.and_(t.links.c.dead, sa.not_(has_object)),
                dead_reason=sa.case((has_object, None), else_=t.links.c.dead_reason),
                dirty=sa.or_(has_object, sa.not_(t.links.c.dead)),
                dirty_version=version,
                synced_version=0,
                attempts=0,
                next_attempt_at=None,
            )
        )

    async def renew_claims(self, link_ids: Iterable[int], *, worker: str, until: datetime) -> int:
        """Extend this worker's claims on links whose writes are still in flight; returns
        how many it still held."""
        return await self._own_claims(link_ids, worker, claimed_until=until)

    async def _own_claims(self, link_ids: Iterable[int], worker: str, **values: Any) -> int:
        """Set ``values`` on those of these links ``worker`` still holds; returns how
        many it held."""
        ids = sorted(set(link_ids))
        if not ids:
            return 0
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id.in_(ids), t.links.c.claimed_by == worker)
            .values(**values)
        )
        return int(result.rowcount)

    async def save_create_intent(self, link_id: int, payload: dict[str, Any]) -> None:
        """Keep the fields the first create attempt sends (once: a retry keeps them)."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.create_payload.is_(None))
            .values(create_payload=payload)
        )

    async def save_unconfirmed(self, states: Mapping[int, list[dict[str, Any]]]) -> None:
        """Keep, per link, the states its writes are sending or sent without an answer
        recorded (``Link.unconfirmed``), in one statement."""
        if not states:
            return
        # RECORD_SEEN is a hot ``UPDATE links ... WHERE id = :b_id``: run on the driver
        rows = [{"b_id": i, "unconfirmed": v} for i, v in sorted(states.items())]
        await self._run(RECORD_SEEN, rows)

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
        self,
        *,
        worker: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        busy: Iterable[int] = (),
        full: Iterable[str] = (),
        among: Iterable[int] | None = None,
    ) -> list[Link]:
        """Claim up to ``limit`` dirty links that are due, one writer per link: a claim is
        a lease that lapses, so a crashed worker's links are picked up again. Links of
        systems that are paused or deferred by a 429 wait, and so do the ``busy`` ones
        (the worker's writes in flight) and those of the ``full`` systems (the worker
        has its share of writes to them in flight): a link is never claimed only to be
        dropped. With ``among``, only those of these links (an engine transaction's
        own dirty links, claimed in it: ``Dispatcher.take``)."""
        params = {
            "b_now": now,
            "b_until": now + lease,
            "b_worker": worker,
            "b_limit": limit,
            "b_busy": sorted(set(busy)),
            "b_full": sorted(set(full)),
        }
        if among is not None:
            params["b_ids"] = sorted(set(among))
            statement = CLAIM_THESE_LINKS[self.postgres]
        else:
            statement = CLAIM_LINKS[self.postgres]
        rows = await self._run(statement, params)
        return sorted((link_of(r) for r in rows), key=lambda link: link.id)

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
        """``finish_write`` for several links, in one statement per set of columns set
        (a few at most: no call, an update, a create). A link whose claim was lost (its
        lease lapsed and another writer took it) is left alone."""
        # one executemany per set of columns (the rows of one statement share them)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for f in finished:
            row: dict[str, Any] = {
                "b_id": f.link.id,
                "b_claimed_by": f.link.claimed_by or "",
                "b_item": f.link.work_item_id,
                "b_version": f.version,
                "b_again": f.again or now,
            }
            if f.obj is not None:
                row |= created_values(f.link, f.obj, now)
            by_columns.setdefault(tuple(row), []).append(row)
        for rows in by_columns.values():
            await self._run(FINISH_WRITE, rows)

    async def record_created(self, link: Link, obj: VendorObject, now: datetime) -> None:
        """Link the object a create made, although the write is not finished (a call
        after the create failed): the next attempt updates it instead of creating."""
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link.id)
            .values(**created_values(link, obj, now))
        )

    async def wait_to_create(self, link: Link, *, version: int, reason: str, now: datetime) -> None:
        """A create not tried because the item holds a value the system refuses (a blank
        title): the link is left clean, with ``reason``, until the item changes (its next
        change marks every link still to be created dirty). Should the item have moved
        on while the link was claimed, it is due again at once. Its attempts are not
        counted: nothing was sent."""
        still_dirty = sa.or_(
            t.links.c.work_item_id != link.work_item_id, t.links.c.dirty_version > version
        )
        await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link.id, t.links.c.claimed_by == link.claimed_by)
            .values(
                dirty=still_dirty,
                next_attempt_at=sa.case((still_dirty, now), else_=None),
                last_error=reason,
                claimed_by=None,
                claimed_until=None,
            )
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
        """Give the link's write up. What it was sending is no longer unconfirmed: the
        vendor refused it, or it was tried again after one that may have landed, each
        try reading the object first (``refresh_before_write``, the default), so its echo
        was seen then and is known. A person setting that value later, while the item
        holds another, is a person's edit, not the write's echo (``Engine._own_write``)."""
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
                unconfirmed=sa.null(),
            )
        )

    async def revive(self, link_id: int | None = None, *, system: str | None = None) -> int:
        """Retry dead-lettered writes (one, all, or all of one system): they become due
        now. A dead create's recorded body is dropped, so the retry sends the item as it
        is now: an operator who fixed what the vendor refused (an empty title) is not
        sent the refused body again. Its key stays, and with it the look-up of an
        earlier attempt's object (``Adapter.create``'s ``earlier_since``)."""
        query = sa.update(t.links).where(t.links.c.dead.is_(True))
        if link_id is not None:
            query = query.where(t.links.c.id == link_id)
        if system is not None:
            query = query.where(self.link_system == system)
        creating = t.links.c.external_id.is_(None)
        result = await self._run(
            query.values(
                dead=False,
                dead_reason=None,
                attempts=0,
                next_attempt_at=None,
                dirty=True,
                create_payload=sa.case((creating, None), else_=t.links.c.create_payload),
            )
        )
        return int(result.rowcount)

    async def discard(self, link_id: int | None = None, *, system: str | None = None) -> int:
        """Give up on dead-lettered writes (one, all, or all of one system): they are no
        longer dirty (nor dead)."""
        query = sa.update(t.links).where(t.links.c.dead.is_(True))
        if link_id is not None:
            query = query.where(t.links.c.id == link_id)
        if system is not None:
            query = query.where(self.link_system == system)
        result = await self._run(
            query.values(dead=False, dirty=False, synced_version=t.links.c.dirty_version)
        )
        return int(result.rowcount)

    async def outbox(
        self, state: str, limit: int = 100, offset: int = 0, *, system: str | None = None
    ) -> list[Link]:
        """Links by outbox state: ``pending`` (dirty, not yet tried), ``failed`` (dirty,
        retrying after errors), ``dead``, ``waiting`` (a create not tried until the item
        holds a value the system takes: ``Tx.wait_to_create``); of one system, or of all."""
        query = sa.select(t.links)
        if system is not None:
            query = query.where(self.link_system == system)
        if state == "dead":
            query = query.where(t.links.c.dead.is_(True))
        elif state == "waiting":
            query = query.where(
                t.links.c.external_id.is_(None),
                t.links.c.dirty.is_(False),
                t.links.c.dead.is_(False),
            )
        elif state == "failed":
            query = query.where(
                t.links.c.dirty.is_(True), t.links.c.dead.is_(False), t.links.c.attempts > 0
            )
        else:
            query = query.where(
                t.links.c.dirty.is_(True), t.links.c.dead.is_(False), t.links.c.attempts == 0
            )
        rows = await self._run(query.order_by(t.links.c.id).limit(limit).offset(offset))
        return [link_of(r) for r in rows]

    async def queue_depth(self) -> dict[str, int]:
        """Dirty (not dead) links per system."""
        rows: Any = await self._run(
            sa.select(t.links.c.system, sa.func.count())
            .where(t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .group_by(self.link_system)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def dead_count(self) -> int:
        return int(
            (
                await self._run(sa.select(sa.func.count()).where(t.links.c.dead.is_(True)))
            ).scalar_one()
        )


def _ids_by_system(refs: Iterable[ObjectRef]) -> dict[str, list[str]]:
    wanted: dict[str, set[str]] = {}
    for ref in refs:
        wanted.setdefault(ref.system, set()).add(ref.external_id)
    return {system: sorted(ids) for system, ids in wanted.items()}


def _match(
    refs: Iterable[ObjectRef],
    by_object: Mapping[tuple[str, str], Sequence[T]],
    scope_of: Callable[[T], str | None],
) -> dict[ObjectRef, T]:
    """Each ref's row among the rows found for its (system, external id), the first in
    id order whose scope is the ref's; a ref with an empty scope (a webhook hint that
    names only the id) takes the first in any scope."""
    out: dict[ObjectRef, T] = {}
    for ref in refs:
        for row in by_object.get((ref.system, ref.external_id), ()):
            if not ref.scope or scope_of(row) == ref.scope:
                out[ref] = row
                break
    return out
