"""Changes an operator asks for (admin API, command line): create a work item, link,
unlink and relink vendor objects, resync. They go through the engine's transactions and
history like vendor observations, and wake the dispatcher the same way."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from app.engine.batch import Outcome, Taken
from app.errors import AlreadyLinked, Invalid, NotFound, StateConflict
from app.model import Fields, FieldStamp, ObjectRef, VendorObject, WorkItem
from app.rules import Rules
from app.store import HistoryEntry, Link, Store, Tx

log = logging.getLogger("syncgate.engine")


class Reader(Protocol):
    """Reads one vendor object (an adapter is one): what ``fetch`` and ``resync`` need,
    and the marker Syncgate left on an object it created (``marker_key``)."""

    async def get(self, ref: ObjectRef) -> VendorObject: ...

    def marker_key(self, obj: VendorObject) -> str | None: ...


class ResyncOutcome(msgspec.Struct, frozen=True):
    """What re-reading one linked object did: the engine's outcome (created, changed,
    unchanged, stale, ignored), or why it was not read (not_created, not_found,
    system disabled, error: ...)."""

    link_id: int
    system: str
    external_id: str | None
    outcome: str


def _linked_entry(item_id: str, ref: ObjectRef, source: str, now: datetime) -> HistoryEntry:
    scope = f" (scope {ref.scope})" if ref.scope else ""
    return HistoryEntry(
        work_item_id=item_id,
        kind="linked",
        system=ref.system,
        external_id=ref.external_id,
        event_id=source,
        detail=f"{source} linked {ref.system} {ref.external_id}{scope}",
        at=now,
    )


class OperatorChanges:
    """The operator's side of the engine (mixed into ``Engine``)."""

    store: Store
    rules: Rules
    readers: Mapping[str, Reader]
    clock: Callable[[], datetime]
    on_change: Callable[[Taken | None], None] | None
    #: ``Engine.observe``: re-read objects are observed like any other.
    observe: Callable[..., Awaitable[Outcome]]
    #: ``Engine.observe_many``: objects folded into the item they are linked to.
    observe_many: Callable[..., Awaitable[list[Outcome]]]

    def _woken(self) -> None:
        if self.on_change is not None:
            self.on_change(None)

    async def fetch(self, ref: ObjectRef) -> VendorObject:
        """The object as its vendor holds it now. Raises ``Invalid`` for a system that is
        not enabled, ``NotFound`` when the vendor does not know the object, and the
        vendor's error when it fails."""
        reader = self.readers.get(ref.system)
        if reader is None:
            raise Invalid(f"no enabled system named {ref.system!r}")
        try:
            return await reader.get(ref)
        except NotFound as exc:
            where = f" in scope {ref.scope!r}" if ref.scope else ""
            raise NotFound(
                ref.system, f"no object {ref.external_id!r}{where}: {exc.message}"
            ) from None

    async def create_item(
        self,
        fields: Fields,
        objects: Sequence[VendorObject],
        *,
        source: str = "admin",
        item_id: str | None = None,
        stamps: Mapping[str, FieldStamp] | None = None,
    ) -> str:
        """A new work item holding ``fields``, linked to ``objects`` (each then written to
        hold the item's state, where it differs); returns its id. ``item_id`` restores an
        item under the id its markers name (a backfill), ``stamps`` who set its fields
        and as of when (the object it is restored from), so that the conflict policy
        weighs what the item's other objects hold against them (``link(fold_in=True)``)."""
        refs = [obj.ref for obj in objects]
        if len(set(refs)) != len(refs):
            raise Invalid("the same vendor object is listed twice")
        fields = self.rules.operator_fields(fields)
        now = self.clock()
        item = WorkItem(
            id=item_id or uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            stamps=dict(stamps or {}),
            **fields.as_dict(),
        )
        try:
            async with self.store.tx() as tx:
                await tx.insert_item(item)
                await tx.add_history(
                    [
                        HistoryEntry(
                            work_item_id=item.id,
                            kind="created",
                            system=source,
                            event_id=source,
                            new_value=msgspec.to_builtins(item.fields().as_dict()),
                            detail=f"created by {'an operator' if source == 'admin' else source}",
                            at=now,
                        )
                    ]
                )
                await self._insert_links(tx, item, objects, source, now)
        except AlreadyLinked as exc:
            raise await self._owner_of(refs, exc) from None
        self._woken()
        log.info(
            "work item created",
            extra={"work_item_id": item.id, "systems": [r.system for r in refs]},
        )
        return item.id

    async def link(
        self,
        item_id: str,
        objects: Sequence[VendorObject],
        *,
        source: str = "admin",
        fold_in: bool = False,
    ) -> list[int]:
        """Link ``objects`` to the item; each is then written to hold its state. With
        ``fold_in`` (a backfill restoring an item lost with the database) each is first
        observed as holding changes the item has not seen, oldest first, so what a person
        changed there wins or loses by the conflict policy (in the history either way)
        instead of being overwritten."""
        try:
            async with self.store.tx() as tx:
                item = await tx.require_item(item_id, lock=True)
                ids = await self._insert_links(
                    tx, item, objects, source, self.clock(), unseen=fold_in
                )
        except AlreadyLinked as exc:
            raise await self._owner_of([o.ref for o in objects], exc) from None
        if fold_in:
            oldest_first = sorted(objects, key=lambda o: o.updated_at)
            await self.observe_many([(obj, source) for obj in oldest_first])
        self._woken()
        return ids

    async def _insert_links(
        self,
        tx: Tx,
        item: WorkItem,
        objects: Sequence[VendorObject],
        source: str,
        now: datetime,
        *,
        unseen: bool = False,
    ) -> list[int]:
        """``unseen``: the links know the objects' ids, not their state, and are not
        marked dirty: the caller observes the objects next (``link(fold_in=True)``)."""
        ids = []
        for obj in objects:
            existing = await tx.link_for(obj.ref)
            if existing is not None:
                raise _already(obj.ref, existing.work_item_id)
            ids.append(
                await tx.insert_link(
                    work_item_id=item.id,
                    system=obj.ref.system,
                    scope=obj.ref.scope,
                    now=now,
                    seen=obj,
                    version=item.version,
                    unseen=unseen,
                )
            )
        await tx.add_history([_linked_entry(item.id, obj.ref, source, now) for obj in objects])
        if not unseen:
            await tx.mark_dirty(ids, item.version)
        return ids

    async def _owner_of(self, refs: Sequence[ObjectRef], exc: AlreadyLinked) -> AlreadyLinked:
        """After another request linked one of the objects first: name its work item."""
        if exc.owner is not None:
            return exc
        async with self.store.tx() as tx:
            for ref in refs:
                existing = await tx.link_for(ref)
                if existing is not None:
                    return _already(ref, existing.work_item_id)
        return AlreadyLinked("the object was linked concurrently")

    async def unlink(self, link_id: int, *, source: str = "admin") -> Link:
        """Remove a link; the object itself is not touched. Returns the link removed.
        Raises ``StateConflict`` while the link's object is being created: the create
        would land all the same, and the object it made would belong to nothing."""
        async with self.store.tx() as tx:
            link = await tx.require_link(link_id)
            # one statement: a claim taken after the read is seen by the delete
            if not await tx.unlink(link_id, unless_creating_at=self.clock()):
                raise StateConflict(
                    f"link {link_id}: its {link.system} object is being created (a write in"
                    " flight); unlinked now, the object would still be made and belong to"
                    " nothing: unlink it once the create is recorded (seconds; at most"
                    " one lease if the process writing it died)"
                )
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=link.work_item_id,
                        kind="unlinked",
                        system=link.system,
                        external_id=link.external_id,
                        event_id=source,
                        detail=f"{source} unlinked {link.system} {link.external_id}",
                        at=self.clock(),
                    )
                ]
            )
        return link

    async def relink(self, link_id: int, item_id: str, *, source: str = "admin") -> Link:
        """Move a link to another work item: its version bookkeeping starts afresh, and the
        object is written to hold the new item's state. Returns the link as it was."""
        async with self.store.tx() as tx:
            link = await tx.require_link(link_id)
            target = await tx.require_item(item_id, lock=True)
            if link.work_item_id == target.id:
                return link
            now = self.clock()
            await tx.move_link(link_id, target.id, target.version)
            what = f"{link.system} {link.external_id}"
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=link.work_item_id,
                        kind="unlinked",
                        system=link.system,
                        external_id=link.external_id,
                        event_id=source,
                        detail=f"{source} moved {what} to work item {target.id}",
                        at=now,
                    ),
                    HistoryEntry(
                        work_item_id=target.id,
                        kind="linked",
                        system=link.system,
                        external_id=link.external_id,
                        event_id=source,
                        detail=f"{source} moved {what} from work item {link.work_item_id}",
                        at=now,
                    ),
                ]
            )
        self._woken()
        return link

    async def resync(
        self, item_id: str, link_ids: Sequence[int] | None = None
    ) -> tuple[list[ResyncOutcome], list[int]]:
        """Re-read the item's linked objects (all, or ``link_ids``), observe each as a
        poll would, then mark them to be compared and written. Returns what each read
        did and the links marked."""
        async with self.store.tx() as tx:
            await tx.require_item(item_id)
            links = [
                link
                for link in await tx.links_of(item_id)
                if link_ids is None or link.id in link_ids
            ]
        outcomes = [await self._reread(link) for link in links]
        marked = await self._mark_for_write(item_id, link_ids)
        return outcomes, marked

    async def _reread(self, link: Link) -> ResyncOutcome:
        def done(outcome: str) -> ResyncOutcome:
            return ResyncOutcome(link.id, link.system, link.external_id, outcome)

        ref = link.ref
        if ref is None:
            return done("not_created")
        reader = self.readers.get(ref.system)
        if reader is None:
            return done("system disabled")
        try:
            began = self.clock()
            obj = msgspec.structs.replace(await reader.get(ref), read_at=began)
        except NotFound:
            return done("not_found")
        except Exception as exc:  # noqa: BLE001 - reported per link, the others go on
            return done(f"error: {exc}")
        observed = await self.observe(obj, event_id="admin-resync")
        return done(observed.kind)

    async def _mark_for_write(self, item_id: str, link_ids: Sequence[int] | None) -> list[int]:
        async with self.store.tx() as tx:
            item = await tx.get_item(item_id, lock=True)
            if item is None:
                return []
            wanted = [
                link.id
                for link in await tx.links_of(item_id)
                if not link.dead
                and self.rules.enabled(link.system)
                and (link_ids is None or link.id in link_ids)
            ]
            await tx.mark_dirty(wanted, item.version)
        self._woken()
        return wanted


def _already(ref: ObjectRef, owner: str) -> AlreadyLinked:
    return AlreadyLinked(
        f"{ref.system} object {ref.external_id!r} is already linked to work item {owner}",
        owner=owner,
    )
