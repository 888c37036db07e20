"""The engine: turns an observation of a vendor object into canonical change and dirty links.

The only writer of canonical state. For one observation ("system S says object X looks
like this as of T"):

1. find the link for X; when there is none, apply the link rules (``matching.py``: link X
   to what it is the same thing as), then the creation rules, which start a work item
   only from an object the vendor made since the system was first connected (or inside
   a backfill window);
2. drop it if T is older than what the link has already seen (out of order);
3. for each field S may set: skip it unless X changed it since we last saw X (so a stale
   copy never reverts a newer canonical value) and it differs *in meaning* from the
   canonical value; settle conflicts by the field's policy (the loser goes to history);
   values with no mapping are reported, never guessed; an assignee is read as a person
   through the identity map (``Rules.assignee_in``), and a person some linked system has
   no user for is reported there (not written);
4. if anything changed: bump the version, record history, and mark dirty every link
   whose object no longer holds the canonical state (the dispatcher does the writes).

"Differs in meaning" is the rules' question (``Rules.differs``, through each system's
value maps): the engine needs no adapter to change canonical state. It reads vendors only
for an operator's ``fetch`` and ``resync``, through the ``readers`` it is given.

Changes to one work item are serialized: the item row is locked for the transaction on
PostgreSQL; SQLite runs one write transaction at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from app.config.schema import CreateRule
from app.engine.batch import Batch, Outcome, Taken
from app.engine.matching import Match, find_match
from app.engine.operator import OperatorChanges, Reader
from app.errors import AlreadyLinked, Missing
from app.model import (
    MAPPED_FIELDS,
    CreateTarget,
    Fields,
    FieldStamp,
    ObjectRef,
    VendorObject,
    WorkItem,
    utcnow,
)
from app.rules import Rules
from app.store import HistoryEntry, Link, Store, Tx

log = logging.getLogger("syncgate.engine")


def _jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _set_field(
    item: WorkItem,
    name: str,
    value: Any,
    stamp: FieldStamp,
    event_id: str | None,
    now: datetime,
    external_id: str | None = None,
) -> HistoryEntry:
    """Set one canonical field, stamp who set it, and return its history entry
    (``external_id``: the object the change was seen on)."""
    entry = HistoryEntry(
        work_item_id=item.id,
        kind="change",
        field=name,
        old_value=_jsonable(getattr(item, name)),
        new_value=_jsonable(value),
        system=stamp.system,
        external_id=external_id,
        event_id=event_id,
        at=now,
    )
    setattr(item, name, value)
    item.stamps[name] = stamp
    return entry


def created_since(obj: VendorObject, moment: datetime) -> bool:
    """Whether the vendor made ``obj`` at or after ``moment``; an object of unknown age
    (the vendor gave no creation time) is never taken for a new one."""
    return obj.created_at is not None and obj.created_at >= moment


def origin_item_id(ref: ObjectRef) -> str:
    """The id of the work item a creation rule starts from ``ref``: derived from the
    object, so the markers of the objects created for it (which carry the item id) name
    their origin even when the database is lost."""
    return uuid.uuid5(ORIGIN_NAMESPACE, f"{ref.system}/{ref.scope}/{ref.external_id}").hex


#: What ``Engine._stepped_back`` answers for a change it cannot date: the link is marked,
#: so that the object is read again before a write.
REREAD = VendorObject(ref=ObjectRef("", "", ""), updated_at=datetime.min, fields=Fields())

#: The namespace of ``origin_item_id`` (fixed: changing it would orphan every marker).
ORIGIN_NAMESPACE = uuid.UUID("6f1c4d2e-9a0b-5c3d-8e7f-112233445566")


def _rule_linked(
    item_id: str, obj: VendorObject, rule: str | None, event_id: str | None, now: datetime
) -> HistoryEntry:
    return HistoryEntry(
        work_item_id=item_id,
        kind="linked",
        system=obj.ref.system,
        external_id=obj.ref.external_id,
        event_id=event_id,
        detail=f"link rule {rule!r} linked {obj.ref.system} {obj.ref.external_id}",
        at=now,
    )


def vendor_changed(known: VendorObject | None, obj: VendorObject, name: str) -> bool:
    """Whether the vendor object's ``name`` changed since we last knew it."""
    if known is None:
        return True
    if name in MAPPED_FIELDS:
        return known.native.get(name) != obj.native.get(name)
    return bool(getattr(known.fields, name) != getattr(obj.fields, name))


class Engine(OperatorChanges):
    """``readers`` (the adapters, by system) serve an operator's ``fetch`` and
    ``resync``; without them those find no system, and everything else works the same."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        *,
        readers: Mapping[str, Reader] | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[Taken | None], None] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.readers: Mapping[str, Reader] = readers if readers is not None else {}
        self.clock = clock
        #: Called after a transaction left links dirty (wakes the dispatcher), with what
        #: ``take`` claimed of them in it (None: nothing was offered).
        self.on_change = on_change
        #: Called in a transaction that leaves links dirty (their ids: those it marked, and
        #: those it created), once its changes are written: claims, for this process's
        #: dispatcher, those it will write (``Dispatcher.take``), so that it needs no
        #: claim transaction of its own.
        self.take: Callable[[Tx, Batch, list[int]], Awaitable[Taken | None]] | None = None
        #: When each system was first connected (``connect``); creation rules apply only
        #: to objects created since, outside a backfill.
        self.connected: dict[str, datetime] = {}

    async def connect(self, systems: Iterable[str]) -> dict[str, datetime]:
        """Record the moment each system is first connected (kept once stored), and
        remember it; returns the moments."""
        async with self.store.tx() as tx:
            moments = await tx.connect_systems(systems, self.clock())
        self.connected.update(moments)
        return moments

    async def _connected_at(self, tx: Tx, system: str, now: datetime) -> datetime:
        moment = self.connected.get(system)
        if moment is None:  # not connected through ``connect``: the first need connects
            moment = (await tx.connect_systems([system], now))[system]
        return moment

    async def observe(self, obj: VendorObject, *, event_id: str | None = None) -> Outcome:
        """Apply one observation; safe to repeat (a repeated observation changes nothing)."""
        (outcome,) = await self.observe_many([(obj, event_id)])
        return outcome

    async def observe_many(
        self,
        observations: Sequence[tuple[VendorObject, str | None]],
        *,
        also: Callable[[Tx, list[Outcome], Batch], Awaitable[None]] | None = None,
        backfill: bool = False,
    ) -> list[Outcome]:
        """Apply observations in order, in one transaction, exactly as if each had been
        applied on its own: (object, event id) each. ``also(tx, outcomes, batch)`` runs in the
        same transaction, after the changes are written (the inbox marks its events done
        there; the dispatcher takes the links and items it needs from ``batch``, the
        state the transaction holds). With ``backfill`` the objects are inside a
        backfill window: creation rules apply whatever their age."""

        taken: Taken | None = None

        async def run() -> list[Outcome]:
            nonlocal taken
            async with self.store.tx() as tx:
                batch = Batch(tx, self.clock())
                outcomes = await self._apply(batch, observations, backfill=backfill)
                if also is not None:
                    await also(tx, outcomes, batch)
                taken = None  # what an earlier try of this transaction took is undone
                if self.take is not None:
                    dirty = set(batch.dirty).union(*(o.dirty_links for o in outcomes))
                    if dirty:
                        taken = await self.take(tx, batch, sorted(dirty))
            return outcomes

        for attempt in range(3):
            try:
                # a deadlock or serialization failure: the same transaction again
                outcomes = await self.store.retrying(run, what="applying observations")
                break
            except AlreadyLinked:
                # Another process linked the same new object first: look again.
                if attempt == 2:
                    raise
        # what was taken is handed over even should no outcome name its links
        if self.on_change is not None and (
            taken is not None or any(o.dirty_links for o in outcomes)
        ):
            self.on_change(taken)
        return outcomes

    async def _apply(
        self,
        batch: Batch,
        observations: Sequence[tuple[VendorObject, str | None]],
        *,
        backfill: bool = False,
    ) -> list[Outcome]:
        """Apply observations inside ``batch``'s transaction: the state they touch is
        read in a few queries (items locked), changed in memory one observation after
        the other, and written back at the end."""
        tx = batch.tx
        observations = [
            (self.rules.clamped(obj, batch.now), event_id) for obj, event_id in observations
        ]
        known = await tx.items_of_objects(obj.ref for obj, _ in observations)
        await batch.load(set(known.values()))
        outcomes = []
        for obj, event_id in observations:
            link = batch.link_for(obj.ref)
            if link is None and obj.ref in known:
                # linked, but the link moved to another item meanwhile: follow it
                moved = await tx.items_of_objects([obj.ref])
                await batch.load(set(moved.values()))
                link = batch.link_for(obj.ref)
                if link is None:
                    outcomes.append(Outcome("ignored"))
                    continue
            if link is None:
                outcome = await self._create_from(batch, obj, event_id, backfill=backfill)
            else:
                outcome = self._observe(batch, link, obj, event_id)
            outcomes.append(outcome)
        await batch.flush()
        return outcomes

    async def change(
        self, item_id: str, fields: Fields, *, source: str = "admin", event_id: str | None = None
    ) -> Outcome:
        """Apply a change made by an operator (not by a vendor): it wins over the current
        values and propagates like any other change. Raises ``Missing`` for an unknown item,
        ``Invalid`` for an assignee that names no one (``Rules.operator_fields``)."""
        fields = self.rules.operator_fields(fields)
        async with self.store.tx() as tx:
            batch = Batch(tx, self.clock())
            await batch.load({item_id})
            item = batch.items.get(item_id)
            if item is None:
                raise Missing(f"no work item {item_id!r}")
            now = batch.now
            changed = []
            for name, value in fields.items():
                if getattr(item, name) == value:
                    continue
                batch.history.append(
                    _set_field(item, name, value, FieldStamp(source, now), event_id, now)
                )
                changed.append(name)
            if not changed:
                return Outcome("unchanged", item.id)
            batch.bump(item)
            if "assignee" in changed:
                self._report_unwritable(batch, item, event_id)
            self._report_blank(batch, item, changed, event_id)
            dirty = self._needing_write(item, batch.links_of(item.id), force=True)
            batch.mark_dirty(dirty, item.version)
            await batch.flush()
        if dirty and self.on_change is not None:
            self.on_change(None)
        return Outcome("changed", item.id, tuple(changed), tuple(dirty))

    async def name_assignees(self, named: Mapping[str, str]) -> list[str]:
        """Work items assigned to a user nobody was mapped to (``<system>:<id>``) whom
        the identity map now names (``named``: ``IdentityMap.named_users``) take the
        person's email, the canonical assignee: the same person, so the field keeps its
        stamp (a person's reassignment made before, and heard after, still wins over it)
        and the history records who they are. Their links are marked, so the assignment
        goes out at once to the systems it could not reach. Returns the items' ids."""
        async with self.store.tx() as tx:
            ids = await tx.items_assigned_to(named)
            if not ids:
                return []
            batch = Batch(tx, self.clock())
            await batch.load(set(ids))
            dirty: list[int] = []
            for item_id in sorted(batch.items):
                item = batch.items[item_id]
                email = named.get(item.assignee or "")
                if email is None:  # reassigned since the read
                    continue
                batch.history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="change",
                        field="assignee",
                        old_value=item.assignee,
                        new_value=email,
                        system="identities",
                        detail=f"the identity map names {item.assignee} {email}",
                        at=batch.now,
                    )
                )
                item.assignee = email
                batch.bump(item)
                marked = self._needing_write(item, batch.links_of(item.id), force=True)
                batch.mark_dirty(marked, item.version)
                dirty += marked
            await batch.flush()
        if dirty and self.on_change is not None:
            self.on_change(None)
        return sorted(batch.changed_items)

    def _observe(
        self, batch: Batch, link: Link, obj: VendorObject, event_id: str | None
    ) -> Outcome:
        item = batch.items.get(link.work_item_id)
        if item is None:
            return Outcome("ignored")
        if link.vendor_updated_at is not None and obj.updated_at < link.vendor_updated_at:
            later = self._stepped_back(batch, link, item, obj, event_id)
            if later is None:
                return Outcome("stale", item.id)
            if later is REREAD:
                return Outcome("stale", item.id, (), (link.id,))
            obj = later

        system = obj.ref.system
        now = batch.now
        history = batch.history
        changed: dict[str, Any] = {}
        for name, value in obj.fields.items():
            if name not in self.rules.in_fields(system):
                self._note_not_synced(batch, item, link, obj, name, event_id)
                continue
            if not vendor_changed(link.known, obj, name):
                continue
            current = getattr(item, name)
            if name == "assignee":  # a user of this system, read as a person
                value = self.rules.assignee_in(system, value)
                if value == current:
                    continue
            elif self.rules.differs(system, obj, Fields(**{name: current})).is_empty() and (
                link.known is None or name not in MAPPED_FIELDS or value == current
            ):
                # same meaning. A value changed since last seen that still holds the
                # item's (DevHelm MONITORING for acknowledged) but reads as another is a
                # person's change all the same, unless it is our own write's echo
                # (below): dropped, the item kept the older stamp, and a change made
                # before it but heard of later overwrote it
                continue
            if self._own_write(link, obj, name, value):
                # what a write claimed before the item's last change sent, seen before
                # its answer was recorded: not a person's edit, and not newer than the
                # change (the link stays dirty, and the object gets the item's state)
                continue
            stamp = item.stamps.get(name)
            if not self.rules.incoming_wins(
                name,
                system=system,
                at=obj.updated_at,
                stamp_system=stamp.system if stamp else None,
                stamp_at=stamp.at if stamp else None,
                on_top=self._held(link, item, name, current),
            ):
                history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="conflict_lost",
                        field=name,
                        old_value=_jsonable(current),
                        new_value=_jsonable(value),
                        system=system,
                        external_id=obj.ref.external_id,
                        event_id=event_id,
                        detail=f"kept the value set by {stamp.system if stamp else '?'}"
                        f" at {stamp.at.isoformat() if stamp else '?'}",
                        at=now,
                    )
                )
                continue
            changed[name] = value

        known_unmapped = link.known.unmapped if link.known is not None else {}
        self._report_unmapped(batch, item.id, obj, known_unmapped, event_id)

        if changed:
            stamp = FieldStamp(system, obj.updated_at)
            for name, value in changed.items():
                history.append(
                    _set_field(item, name, value, stamp, event_id, now, obj.ref.external_id)
                )
            batch.bump(item)
            if "assignee" in changed:
                self._report_unwritable(batch, item, event_id)
            self._report_blank(batch, item, changed, event_id, source=system)
        batch.saw(link, self._hold(link, item, obj))

        dirty = self._needing_write(item, batch.links_of(item.id), force=bool(changed))
        batch.mark_dirty(dirty, item.version)
        return Outcome(
            "changed" if changed else "unchanged",
            item.id,
            tuple(changed),
            tuple(dirty),
        )

    def _stepped_back(
        self, batch: Batch, link: Link, item: WorkItem, obj: VendorObject, event_id: str | None
    ) -> VendorObject | None:
        """``obj`` is dated before what the link already saw of the object. When it shows
        the object as seen (an older copy: a late delivery, a poll's overlap), it is
        dropped (None): nothing in it is lost. When it shows a change, either it is an
        older state arriving late, or the vendor's clock stepped back and the change is
        newer. Dropped as older, a person's edit was lost with no trace, and the next
        write overwrote it:

        - read after the link recorded what it saw (``VendorObject.read_at``, the
          gateway's clock on both sides), it is the object as of then or later: the
          vendor clock stepped back, and the change is the newer one. It is returned
          dated just after what the link saw, and applied as any change;
        - otherwise (a webhook's view, or a read begun before that record) the two cannot
          be told apart from it. Where the object is read before each write
          (``refresh_before_write``, the default), the link is marked (``REREAD``): that
          read applies the change if it is the newer, and finds nothing new if it was a
          late delivery. Where it is not, the change is not applied, and the history
          says so (``stale``), with both times."""
        known = link.known
        if known is None or (
            obj.fields == known.fields
            and obj.native == known.native
            and obj.unmapped == known.unmapped
        ):
            return None
        system, external = obj.ref.system, obj.ref.external_id
        seen_at = link.vendor_updated_at
        assert seen_at is not None
        # when the link recorded what it knows (a webhook's view too: a read begun
        # before that may show the object before the change it showed)
        recorded = known.recorded_at or link.last_synced_at
        if obj.read_at is not None and recorded is not None and obj.read_at > recorded:
            log.warning(
                "vendor clock stepped back: a change dated before the object's last time",
                extra={
                    "work_item_id": item.id,
                    "system": system,
                    "external_id": external,
                    "event_id": event_id,
                    "vendor_updated_at": obj.updated_at.isoformat(),
                    "seen_updated_at": seen_at.isoformat(),
                },
            )
            return msgspec.structs.replace(obj, updated_at=seen_at + timedelta(microseconds=1))
        settings = self.rules.settings.systems.get(system)
        if settings is not None and settings.refresh_before_write:
            log.info(
                "a change dated before the object's last time: read again before a write",
                extra={"work_item_id": item.id, "system": system, "external_id": external},
            )
            batch.reread(link)
            batch.mark_dirty([link.id], item.version)
            return REREAD
        batch.history.append(
            HistoryEntry(
                work_item_id=item.id,
                kind="stale",
                system=system,
                external_id=external,
                event_id=event_id,
                new_value=_jsonable(obj.fields.as_dict()),
                detail=f"{system} {external} showed a change dated {obj.updated_at.isoformat()},"
                f" before {seen_at.isoformat()} already seen there: not applied, as older (a"
                f" late delivery, or {system}'s clock stepped back; refresh_before_write is"
                " off, so it is not read again before a write)",
                at=batch.now,
            )
        )
        return None

    @staticmethod
    def _hold(link: Link, item: WorkItem, obj: VendorObject) -> VendorObject:
        """``obj`` as the link keeps it: each unmapped value with the canonical value it
        was set against (``VendorObject.held``), kept from when it was first seen, so
        that the object is not written back over a person's custom value until the item
        takes another value of that field."""
        if not obj.unmapped:
            return obj if not obj.held else msgspec.structs.replace(obj, held={})
        known = link.known
        held = {}
        for name, raw in obj.unmapped.items():
            if known is not None and known.unmapped.get(name) == raw and name in known.held:
                held[name] = known.held[name]
            elif name in MAPPED_FIELDS:
                held[name] = str(_jsonable(getattr(item, name)))
        return msgspec.structs.replace(obj, held=held) if held != obj.held else obj

    def _held(self, link: Link, item: WorkItem, name: str, current: Any) -> bool:
        """Whether the object held the item's ``current`` value of ``name`` (in meaning)
        when the link last saw it, and saw it after the item's last change (the gateway's
        clock on both sides; in the same transaction is not after): a change seen there
        now was made on top of it. Holding it in meaning alone is not enough: a coarser
        map (a follow-up "outstanding" for acknowledged and for monitoring) holds values
        that never reached the object, and a change made there before them is
        concurrent, settled by time."""
        known = link.known
        seen = link.last_synced_at
        if known is None or seen is None or seen <= item.updated_at:
            return False
        if name == "assignee":
            held = known.fields.assignee
            return (
                isinstance(held, str | None)
                and self.rules.assignee_in(link.system, held) == current
            )
        return self.rules.differs(link.system, known, Fields(**{name: current})).is_empty()

    def _own_write(self, link: Link, obj: VendorObject, name: str, value: Any) -> bool:
        """Whether ``value`` (the field ``name`` of ``obj``, an assignee read as a person)
        is what a write of the gateway sent the object, or is sending, with no answer
        recorded yet (``Link.unconfirmed``): the object showing it is that write coming
        back (a webhook, a poll, another process's read before its own write), which the
        link cannot know as it does not know the write landed. Judged as a person's
        change, dated by the vendor at the moment the write landed, it beat every change
        the item took since the write was claimed, and overwrote it everywhere. A state
        the read before a write shows that this write's own claim noted
        (``VendorObject.unsent``) was not sent yet: a person's."""
        for state in link.unconfirmed or ():
            if name not in state or state in obj.unsent:
                continue
            sent = state[name]
            if name == "assignee":
                if value == sent:
                    return True
            elif name in MAPPED_FIELDS:
                # what the write puts there is the value the map prefers for it: another
                # one that also holds it (MONITORING for acknowledged) is not sent by
                # any write, so it is a person's (the state notes every field, sent or not)
                value_map = self.rules.value_maps(obj.ref.system).get(name)
                preferred = value_map.to_vendor(sent) if value_map is not None else None
                if value == sent or obj.native.get(name) == preferred:
                    return True
            elif self.rules.differs(obj.ref.system, obj, Fields.from_dict({name: sent})).is_empty():
                return True
        return False

    def _note_not_synced(
        self,
        batch: Batch,
        item: WorkItem,
        link: Link,
        obj: VendorObject,
        name: str,
        event_id: str | None,
    ) -> None:
        """A person changed a field ``obj``'s system may not set (``out``: another system
        owns it): the change is not taken and the object is written back, so the history
        keeps what was there (``not_synced``), an audit trail of that edit too."""
        if link.known is None or name not in self.rules.out_fields(obj.ref.system):
            return
        if not vendor_changed(link.known, obj, name):
            return
        current = getattr(item, name)
        if self.rules.differs(obj.ref.system, obj, Fields(**{name: current})).is_empty():
            return
        batch.history.append(
            HistoryEntry(
                work_item_id=item.id,
                kind="not_synced",
                field=name,
                old_value=_jsonable(current),
                new_value=_jsonable(getattr(obj.fields, name)),
                system=obj.ref.system,
                external_id=obj.ref.external_id,
                event_id=event_id,
                detail=f"{obj.ref.system} may not set {name} (fields.{name} in config.yaml):"
                " its value is written back",
                at=batch.now,
            )
        )

    @staticmethod
    def _report_unmapped(
        batch: Batch,
        item_id: str,
        obj: VendorObject,
        known_unmapped: Mapping[str, str],
        event_id: str | None,
    ) -> None:
        """Vendor values with no canonical mapping are logged and kept in the history
        (once per new value), never guessed."""
        system = obj.ref.system
        for name, raw in obj.unmapped.items():
            if known_unmapped.get(name) == raw:
                continue
            log.warning(
                "unmapped vendor value",
                extra={
                    "work_item_id": item_id,
                    "system": system,
                    "event_id": event_id,
                    "field": name,
                    "value": raw,
                },
            )
            batch.history.append(
                HistoryEntry(
                    work_item_id=item_id,
                    kind="unmapped",
                    field=name,
                    new_value=raw,
                    system=system,
                    external_id=obj.ref.external_id,
                    event_id=event_id,
                    detail=f"{system} value {raw!r} has no canonical {name}; not applied",
                    at=batch.now,
                )
            )

    def _report_unwritable(self, batch: Batch, item: WorkItem, event_id: str | None) -> None:
        """The item's new assignee is a person some linked system has no user for: it is
        not written there (``Rules.differs``), and the history says so, per system."""
        systems = sorted({link.system for link in batch.links_of(item.id) if not link.dead})
        for system in systems:
            if not self.rules.assignee_unwritable(system, item.assignee):
                continue
            log.warning(
                "assignee not written: no identity",
                extra={"work_item_id": item.id, "system": system, "assignee": item.assignee},
            )
            batch.history.append(
                HistoryEntry(
                    work_item_id=item.id,
                    kind="unmapped",
                    field="assignee",
                    new_value=item.assignee,
                    system=system,
                    event_id=event_id,
                    detail=f"assignee {item.assignee!r} has no {system} user in the identity"
                    f" map; not written to {system}",
                    at=batch.now,
                )
            )

    def _report_blank(
        self,
        batch: Batch,
        item: WorkItem,
        changed: Iterable[str],
        event_id: str | None,
        *,
        source: str | None = None,
    ) -> None:
        """A field the item just took is a blank text some linked system refuses (a
        ticket's subject blanked: DevHelm and incident.io refuse a blank title): it is
        not written there (``Rules.outgoing``), and the history says so, per system
        (``source``, the system it came from, holds it already)."""
        links = [
            link for link in batch.links_of(item.id) if not link.dead and link.system != source
        ]
        for name in changed:
            value = getattr(item, name)
            for system in sorted({link.system for link in links}):
                if name not in self.rules.out_fields(system):
                    continue
                if not self.rules.refuses_blank(system, name, value):
                    continue
                log.warning(
                    "blank value not written",
                    extra={"work_item_id": item.id, "system": system, "field": name},
                )
                batch.history.append(
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="unmapped",
                        field=name,
                        new_value=_jsonable(value),
                        system=system,
                        event_id=event_id,
                        detail=f"{system} refuses a blank {name}: not written to {system},"
                        " which keeps its own until the item's is not blank",
                        at=batch.now,
                    )
                )

    def _needing_write(self, item: WorkItem, links: list[Link], *, force: bool) -> list[int]:
        """Links whose object does not hold the canonical state in meaning. When the item
        changed (``force``), also every link still to be created (so it is created with
        the newest state) and every link with a write in flight: what that object is
        known to hold is about to be replaced by an older state than this one."""
        canonical = item.fields()
        out: list[int] = []
        for link in links:
            if link.dead:
                continue
            if not self.rules.enabled(link.system):
                # a system the config disables cannot be compared with (no value maps):
                # its link waits, dirty, for the system to be enabled again, when the
                # write finds out what its object lacks (the dispatcher claims no write
                # for a disabled system); a system no longer configured is left alone
                if force and link.system in self.rules.settings.systems:
                    out.append(link.id)
                continue
            fields = self.rules.out_fields(link.system)
            if not fields:
                continue
            if link.external_id is None or link.claimed_by is not None:
                if force:
                    out.append(link.id)
                continue
            outgoing = self.rules.outgoing(link.system, canonical)
            if not self.rules.differs(link.system, link.known, outgoing).is_empty():
                out.append(link.id)
        return out

    def creation_check(self, obj: VendorObject) -> tuple[CreateRule | None, str]:
        """The creation rule that would start a work item from ``obj`` whatever its age
        (inside a backfill window), or None and why not."""
        rule = self.rules.creation_rule(obj)
        if rule is None:
            return None, "no creation rule matches"
        inbound = self.rules.in_fields(obj.ref.system)
        held = sorted(f"{n} {obj.unmapped[n]!r}" for n in obj.unmapped if n in inbound)
        if held:
            return None, f"unmapped {', '.join(held)}: no work item starts from a guess"
        return rule, ""

    def _ambiguous(
        self, batch: Batch, obj: VendorObject, match: Match, event_id: str | None
    ) -> Outcome:
        """Several candidates: reported (once per new key), never linked or created."""
        if match.fresh:
            listing = ", ".join(match.candidates)
            log.warning(
                "ambiguous link rule match: not linked",
                extra={
                    "system": obj.ref.system,
                    "external_id": obj.ref.external_id,
                    "event_id": event_id,
                    "candidates": list(match.candidates),
                },
            )
            for candidate in match.candidates:
                if candidate.startswith("work item "):
                    batch.history.append(
                        HistoryEntry(
                            work_item_id=candidate.removeprefix("work item "),
                            kind="ambiguous_match",
                            system=obj.ref.system,
                            external_id=obj.ref.external_id,
                            event_id=event_id,
                            detail=f"{obj.ref.system} {obj.ref.external_id} matches several "
                            f"candidates ({listing}): not linked; link it by hand",
                            at=batch.now,
                        )
                    )
        return Outcome("ambiguous")

    async def _link_matched(
        self,
        batch: Batch,
        obj: VendorObject,
        item_id: str,
        rule: str | None,
        event_id: str | None,
    ) -> Outcome:
        """Link a new object to the work item a link rule found; it is then written to
        hold the item's state where it differs."""
        await batch.load({item_id})
        item = batch.items.get(item_id)
        if item is None:
            return Outcome("ignored")
        link_id = await batch.tx.insert_link(
            work_item_id=item.id,
            system=obj.ref.system,
            scope=obj.ref.scope,
            now=batch.now,
            seen=obj,
            version=item.version,
        )
        link = await batch.tx.require_link(link_id)
        batch.add_link(link)
        batch.history.append(_rule_linked(item.id, obj, rule, event_id, batch.now))
        dirty = self._needing_write(item, [link], force=False)
        batch.mark_dirty(dirty, item.version)
        log.info(
            "object linked by a link rule",
            extra={"work_item_id": item.id, "system": obj.ref.system, "rule": rule},
        )
        return Outcome("linked", item.id, (), tuple(dirty))

    async def _created_by_us(self, batch: Batch, obj: VendorObject, event_id: str | None) -> bool:
        """Whether ``obj`` is an object this gateway created for one of its links (its
        marker names the link) that is not linked to it yet: the create's answer is
        being recorded, and the vendor's webhook about the new object (InboxOps's
        ``ticket.created``) arrived first. It must not start a work item of its own: with
        a creation rule on its system that would be a second item, and the link's record
        would then find the object taken. The record links it, or a retried create finds
        it by its marker."""
        reader = self.readers.get(obj.ref.system)
        key = reader.marker_key(obj) if reader is not None else None
        if key is None:
            return False
        link = await batch.tx.link_by_key(key)
        if link is None or link.system != obj.ref.system:
            return False
        log.info(
            "an object this gateway created, not a new work item",
            extra={
                "system": obj.ref.system,
                "event_id": event_id,
                "external_id": obj.ref.external_id,
                "link_id": link.id,
                "work_item_id": link.work_item_id,
            },
        )
        return True

    async def _create_from(
        self, batch: Batch, obj: VendorObject, event_id: str | None, *, backfill: bool = False
    ) -> Outcome:
        if await self._created_by_us(batch, obj, event_id):
            return Outcome("ignored")
        match = await find_match(batch.tx, self.rules, obj, batch.now)
        if match.kind == "ambiguous":
            return self._ambiguous(batch, obj, match, event_id)
        if match.kind == "item" and match.item_id is not None:
            return await self._link_matched(batch, obj, match.item_id, match.rule, event_id)
        rule = self.rules.creation_rule(obj)
        if rule is None:
            return Outcome("ignored")
        system = obj.ref.system
        if not backfill:
            connected = await self._connected_at(batch.tx, system, batch.now)
            if not created_since(obj, connected):
                # history from before the gateway was connected: left alone (a backfill
                # is the way to bring it in)
                log.debug(  # every poll re-reads its overlap window: not worth a line each
                    "work item not created: the object predates the connection",
                    extra={
                        "system": system,
                        "event_id": event_id,
                        "external_id": obj.ref.external_id,
                        "connected_at": connected.isoformat(),
                    },
                )
                return Outcome("ignored")
        inbound = self.rules.in_fields(system)
        held = sorted(name for name in obj.unmapped if name in inbound)
        if held:
            # a work item must not start from a guess: it is created once the vendor's
            # value maps (the next observation of the object)
            log.warning(
                "work item not created: unmapped vendor value",
                extra={
                    "system": system,
                    "event_id": event_id,
                    "external_id": obj.ref.external_id,
                    "unmapped": {name: obj.unmapped[name] for name in held},
                },
            )
            return Outcome("ignored")
        now = batch.now
        taken, provisional = self.rules.start_fields(system, obj.fields)
        values = taken.as_dict()
        if "assignee" in values:
            values["assignee"] = self.rules.assignee_in(system, values["assignee"])
        item_id = origin_item_id(obj.ref)
        if await batch.tx.get_item(item_id) is not None:
            item_id = uuid.uuid4().hex  # its origin started an item before (then unlinked)
        item = WorkItem(
            id=item_id,
            created_at=now,
            updated_at=now,
            stamps={name: FieldStamp(system, obj.updated_at) for name in values},
            **provisional.as_dict(),
            **values,
        )
        tx = batch.tx
        await tx.insert_item(item)
        await tx.insert_link(
            work_item_id=item.id, system=system, scope=obj.ref.scope, now=now, seen=obj
        )
        dirty: list[int] = []
        matched = match.obj if match.kind == "object" else None
        if matched is not None:  # the same thing already exists there: link, not create
            dirty.append(
                await tx.insert_link(
                    work_item_id=item.id,
                    system=matched.ref.system,
                    scope=matched.ref.scope,
                    now=now,
                    seen=matched,
                    version=item.version,
                    dirty=True,
                )
            )
            batch.history.append(_rule_linked(item.id, matched, match.rule, event_id, now))
        for target in rule.create_in:
            if target.system == system or not self.rules.enabled(target.system):
                continue
            if matched is not None and target.system == matched.ref.system:
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
        batch.history.append(
            HistoryEntry(
                work_item_id=item.id,
                kind="created",
                system=system,
                external_id=obj.ref.external_id,
                event_id=event_id,
                new_value=_jsonable(item.fields().as_dict()),
                detail=f"rule {rule.name!r}: {system} {obj.ref.external_id}",
                at=now,
            )
        )
        await batch.load({item.id})
        if item.assignee is not None:
            self._report_unwritable(batch, item, event_id)
        log.info(
            "work item created",
            extra={"work_item_id": item.id, "system": system, "event_id": event_id},
        )
        return Outcome("created", item.id, tuple(values), tuple(dirty))
