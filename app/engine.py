"""The engine: turns an observation of a vendor object into canonical change and dirty links.

The only writer of canonical state. For one observation ("system S says object X looks
like this as of T"):

1. find the link for X, or apply the creation rules when there is none;
2. drop it if T is older than what the link has already seen (out of order);
3. for each field S may set: skip it unless X changed it since we last saw X (so a stale
   copy never reverts a newer canonical value) and it differs *in meaning* from the
   canonical value; settle conflicts by the field's policy (the loser goes to history);
   values with no mapping are reported, never guessed;
4. if anything changed: bump the version, record history, and mark dirty every link
   whose object no longer holds the canonical state (the dispatcher does the writes).

Changes to one work item are serialized: the item row is locked for the transaction on
PostgreSQL; SQLite runs one write transaction at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from adapters.base import Adapter
from app.model import (
    MAPPED_FIELDS,
    CreateTarget,
    Fields,
    FieldStamp,
    VendorObject,
    WorkItem,
    utcnow,
)
from app.rules import Rules
from app.store import HistoryEntry, IntegrityError, Link, Store, Tx

log = logging.getLogger("syncgate.engine")


class Outcome(msgspec.Struct, frozen=True):
    """What one observation did. ``kind``: created | changed | unchanged | stale | ignored."""

    kind: str
    work_item_id: str | None = None
    changed: tuple[str, ...] = ()
    dirty_links: tuple[int, ...] = ()


def _jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _set_field(
    item: WorkItem, name: str, value: Any, stamp: FieldStamp, event_id: str | None, now: datetime
) -> HistoryEntry:
    """Set one canonical field, stamp who set it, and return its history entry."""
    entry = HistoryEntry(
        work_item_id=item.id,
        kind="change",
        field=name,
        old_value=_jsonable(getattr(item, name)),
        new_value=_jsonable(value),
        system=stamp.system,
        event_id=event_id,
        at=now,
    )
    setattr(item, name, value)
    item.stamps[name] = stamp
    return entry


def vendor_changed(known: VendorObject | None, obj: VendorObject, name: str) -> bool:
    """Whether the vendor object's ``name`` changed since we last knew it."""
    if known is None:
        return True
    if name in MAPPED_FIELDS:
        return known.native.get(name) != obj.native.get(name)
    return bool(getattr(known.fields, name) != getattr(obj.fields, name))


class Engine:
    def __init__(
        self,
        store: Store,
        rules: Rules,
        adapters: Mapping[str, Adapter],
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.adapters = adapters
        self.clock = clock
        #: Called after a transaction left links dirty (wakes the dispatcher).
        self.on_change = on_change

    async def observe(self, obj: VendorObject, *, event_id: str | None = None) -> Outcome:
        """Apply one observation; safe to repeat (a repeated observation changes nothing)."""
        for attempt in range(3):
            try:
                async with self.store.tx() as tx:
                    outcome = await self._observe(tx, obj, event_id)
                break
            except IntegrityError:
                # Another process linked the same new object first: look again.
                if attempt == 2:
                    raise
        if outcome.dirty_links and self.on_change is not None:
            self.on_change()
        return outcome

    async def change(
        self, item_id: str, fields: Fields, *, source: str = "admin", event_id: str | None = None
    ) -> Outcome:
        """Apply a change made by an operator (not by a vendor): it wins over the current
        values and propagates like any other change. Raises KeyError for an unknown item."""
        async with self.store.tx() as tx:
            item = await tx.get_item(item_id, lock=True)
            if item is None:
                raise KeyError(item_id)
            now = self.clock()
            history = []
            changed = []
            for name, value in fields.items():
                if getattr(item, name) == value:
                    continue
                history.append(
                    _set_field(item, name, value, FieldStamp(source, now), event_id, now)
                )
                changed.append(name)
            if not changed:
                return Outcome("unchanged", item.id)
            item.version += 1
            item.updated_at = now
            await tx.save_item(item)
            await tx.add_history(history)
            dirty = self._needing_write(item, await tx.links_of(item.id), {}, force=True)
            await tx.mark_dirty(dirty, item.version)
        if dirty and self.on_change is not None:
            self.on_change()
        return Outcome("changed", item.id, tuple(changed), tuple(dirty))

    async def _observe(self, tx: Tx, obj: VendorObject, event_id: str | None) -> Outcome:
        link = await tx.link_for(obj.ref)
        if link is None:
            return await self._create_from(tx, obj, event_id)
        item = await tx.get_item(link.work_item_id, lock=True)
        fresh = await tx.get_link(link.id)  # re-read under the item lock
        if item is None or fresh is None:
            return Outcome("ignored")
        link = fresh
        if link.vendor_updated_at is not None and obj.updated_at < link.vendor_updated_at:
            return Outcome("stale", item.id)

        system = obj.ref.system
        adapter = self.adapters[system]
        now = self.clock()
        history: list[HistoryEntry] = []
        changed: dict[str, Any] = {}
        for name, value in obj.fields.items():
            if name not in self.rules.in_fields(system):
                continue
            if not vendor_changed(link.known, obj, name):
                continue
            current = getattr(item, name)
            if adapter.differs(obj, Fields(**{name: current})).is_empty():
                continue  # same meaning (a many-to-one map, or our own echo)
            stamp = item.stamps.get(name)
            if not self.rules.incoming_wins(
                name,
                system=system,
                at=obj.updated_at,
                stamp_system=stamp.system if stamp else None,
                stamp_at=stamp.at if stamp else None,
            ):
                history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="conflict_lost",
                        field=name,
                        old_value=_jsonable(current),
                        new_value=_jsonable(value),
                        system=system,
                        event_id=event_id,
                        detail=f"kept the value set by {stamp.system if stamp else '?'}"
                        f" at {stamp.at.isoformat() if stamp else '?'}",
                        at=now,
                    )
                )
                continue
            changed[name] = value

        known_unmapped = link.known.unmapped if link.known is not None else {}
        for name, raw in obj.unmapped.items():
            if known_unmapped.get(name) != raw:
                log.warning(
                    "unmapped vendor value",
                    extra={
                        "work_item_id": item.id,
                        "system": system,
                        "event_id": event_id,
                        "field": name,
                        "value": raw,
                    },
                )
                history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="unmapped",
                        field=name,
                        new_value=raw,
                        system=system,
                        event_id=event_id,
                        detail=f"{system} value {raw!r} has no canonical {name}; not applied",
                        at=now,
                    )
                )

        if changed:
            stamp = FieldStamp(system, obj.updated_at)
            for name, value in changed.items():
                history.append(_set_field(item, name, value, stamp, event_id, now))
            item.version += 1
            item.updated_at = now
            await tx.save_item(item)
        await tx.record_seen(link.id, obj, now)
        await tx.add_history(history)

        links = await tx.links_of(item.id)
        seen = {link.id: obj}
        dirty = self._needing_write(item, links, seen, force=bool(changed))
        await tx.mark_dirty(dirty, item.version)
        return Outcome(
            "changed" if changed else "unchanged",
            item.id,
            tuple(changed),
            tuple(dirty),
        )

    def _needing_write(
        self,
        item: WorkItem,
        links: list[Link],
        seen: Mapping[int, VendorObject],
        *,
        force: bool,
    ) -> list[int]:
        """Links whose object does not hold the canonical state in meaning. A link still
        to be created is re-marked when the item changed, so it is created with the
        newest state."""
        canonical = item.fields()
        out: list[int] = []
        for link in links:
            if link.dead or link.system not in self.adapters:
                continue
            fields = self.rules.out_fields(link.system)
            if not fields:
                continue
            if link.external_id is None:
                if force:
                    out.append(link.id)
                continue
            state = seen.get(link.id, link.known)
            if not self.adapters[link.system].differs(state, canonical.only(fields)).is_empty():
                out.append(link.id)
        return out

    async def _create_from(self, tx: Tx, obj: VendorObject, event_id: str | None) -> Outcome:
        rule = self.rules.creation_rule(obj)
        if rule is None:
            return Outcome("ignored")
        now = self.clock()
        values = obj.fields.as_dict()
        item = WorkItem(
            id=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            stamps={name: FieldStamp(obj.ref.system, obj.updated_at) for name in values},
            **values,
        )
        await tx.insert_item(item)
        await tx.insert_link(
            work_item_id=item.id, system=obj.ref.system, scope=obj.ref.scope, now=now, seen=obj
        )
        dirty: list[int] = []
        for target in rule.create_in:
            if target.system == obj.ref.system or target.system not in self.adapters:
                continue
            link_id = await tx.insert_link(
                work_item_id=item.id,
                system=target.system,
                scope=target.scope,
                now=now,
                create_target=CreateTarget(scope=target.scope, params=dict(target.params)),
                version=item.version,
                dirty=True,
            )
            dirty.append(link_id)
        await tx.add_history(
            [
                HistoryEntry(
                    work_item_id=item.id,
                    kind="created",
                    system=obj.ref.system,
                    event_id=event_id,
                    new_value=_jsonable(item.fields().as_dict()),
                    detail=f"rule {rule.name!r}: {obj.ref.system} {obj.ref.external_id}",
                    at=now,
                )
            ]
        )
        log.info(
            "work item created",
            extra={"work_item_id": item.id, "system": obj.ref.system, "event_id": event_id},
        )
        return Outcome("created", item.id, tuple(values), tuple(dirty))
