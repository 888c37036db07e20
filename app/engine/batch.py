"""The state one engine transaction works on: the work items it touches (locked), all
their links, and the writes ``flush`` sends back in a few statements."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from app.model import ObjectRef, VendorObject, WorkItem
from app.store import HistoryEntry, Link, Tx


class Outcome(msgspec.Struct, frozen=True):
    """What one observation did. ``kind``: created | linked (by a link rule) | changed |
    unchanged | stale | ambiguous (several link rule candidates) | ignored."""

    kind: str
    work_item_id: str | None = None
    changed: tuple[str, ...] = ()
    dirty_links: tuple[int, ...] = ()


class Taken(msgspec.Struct):
    """What a dispatcher claimed of an engine transaction's dirty links, in that
    transaction (``Engine.take``): the links with their items, handed to it after the
    commit; ``left``: how many of the dirty links it did not take (another writer has
    them, they wait for a retry or a paused system, or it had no room for them)."""

    #: (a link's item is None only if it was deleted meanwhile, as a claim would find)
    pairs: list[tuple[Link, WorkItem | None]]
    left: int


class Batch:
    """The state one engine transaction works on: the work items it touches (locked) and
    all their links, changed in memory observation by observation, and the writes that
    ``flush`` sends back in a few statements."""

    def __init__(self, tx: Tx, now: datetime) -> None:
        self.tx = tx
        self.now = now
        self.items: dict[str, WorkItem] = {}
        self.links: dict[int, Link] = {}
        self._by_object: dict[tuple[str, str], list[Link]] = {}
        self._by_item: dict[str, list[Link]] = {}
        self.history: list[HistoryEntry] = []
        self.changed_items: set[str] = set()
        #: what each link saw, and since when (``saw``)
        self.seen: dict[int, tuple[VendorObject, datetime | None]] = {}
        self.dirty: dict[int, int] = {}

    async def load(self, item_ids: set[str]) -> None:
        """Read (and lock) these items and all their links: items in id order, then
        their links in id order (the order every transaction that changes links takes
        its locks in, so none deadlocks with another); the links are read after the
        items' lock, so they are what this transaction may rely on."""
        ids = item_ids - self.items.keys()
        if not ids:
            return
        self.items |= await self.tx.items_by_id(ids, lock=True)
        for link in await self.tx.links_of_items(ids, lock=True):
            self.links[link.id] = link
            self._by_item.setdefault(link.work_item_id, []).append(link)
            if link.external_id is not None:
                self._by_object.setdefault((link.system, link.external_id), []).append(link)

    def add_link(self, link: Link) -> None:
        """A link inserted in this transaction, to an item already loaded."""
        self.links[link.id] = link
        self._by_item.setdefault(link.work_item_id, []).append(link)
        if link.external_id is not None:
            self._by_object.setdefault((link.system, link.external_id), []).append(link)

    def link_for(self, ref: ObjectRef) -> Link | None:
        """The loaded link of a vendor object (an empty scope matches any scope)."""
        for link in self._by_object.get((ref.system, ref.external_id), ()):
            if not ref.scope or link.scope == ref.scope:
                return link
        return None

    def links_of(self, item_id: str) -> list[Link]:
        return self._by_item.get(item_id, [])

    def bump(self, item: WorkItem) -> None:
        """The item changed: a new version, written back at ``flush``."""
        item.version += 1
        item.updated_at = self.now
        self.changed_items.add(item.id)

    def saw(self, link: Link, obj: VendorObject) -> None:
        """The link now knows ``obj``. Its ``last_synced_at`` says when, by the gateway's
        clock, the object was last seen as known (``Engine._held``): a read's view is of
        the moment the read began, or later; a webhook's is of a moment the gateway
        cannot place (a late delivery, another process's), so it moves nothing. Taken as
        of its handling, a late delivery showing a ticket "closed" counted as seen after
        the item became cancelled (which "closed" holds), and a person's older change on
        that ticket then beat a newer one elsewhere as if made on top (bench.chaos).
        A webhook's view keeps the mark to read the object again (``reread``): only a
        read settles it."""
        again = obj.read_at is None and link.known is not None and link.known.reread
        link.known = obj = msgspec.structs.replace(obj, recorded_at=self.now, reread=again)
        link.vendor_updated_at = obj.updated_at
        if obj.read_at is not None and (
            link.last_synced_at is None or obj.read_at > link.last_synced_at
        ):
            link.last_synced_at = obj.read_at
        self.seen[link.id] = (obj, link.last_synced_at)

    def reread(self, link: Link) -> None:
        """Mark the link's object to be read before its next write, even one with
        nothing to send (``VendorObject.reread``): its view, and when it was seen, are
        otherwise kept as they are."""
        assert link.known is not None
        link.known = msgspec.structs.replace(link.known, reread=True)
        self.seen[link.id] = (link.known, link.last_synced_at)

    def mark_dirty(self, link_ids: Iterable[int], version: int) -> None:
        for link_id in link_ids:
            link = self.links[link_id]
            link.dirty = True
            link.dirty_version = max(link.dirty_version, version)
            self.dirty[link_id] = max(self.dirty.get(link_id, 0), version)

    async def flush(self) -> None:
        tx = self.tx
        await tx.save_items(self.items[item_id] for item_id in sorted(self.changed_items))
        await tx.record_seen_many(self.seen.items())
        await tx.add_history(self.history)
        await tx.mark_dirty_many(self.dirty)
