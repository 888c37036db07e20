"""What the store hands out: typed records of rows (links, events, history) and their
conversion from rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

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
    #: The states a write is sending the object, or sent with no answer recorded yet
    #: (canonical fields, as builtins; ``Dispatcher._prepare``): their echo is no edit.
    unconfirmed: list[dict[str, Any]] | None = None

    @property
    def state(self) -> str:
        """``synced``, ``pending`` (not tried yet), ``failed`` (retrying), ``dead``, or
        ``waiting``: a create not tried until the item holds a value the system takes (a
        title that is not blank), the reason in ``last_error``."""
        if self.dead:
            return "dead"
        if not self.dirty:
            return "waiting" if self.external_id is None else "synced"
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
    #: Stored already claimed until then (its first try counted): the receiver hands it
    #: to this process's inbox worker in memory (``InboxWorker.hand_over``), not through
    #: a claim of its own. None: stored unclaimed.
    claimed_until: datetime | None = None


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


def event_of(row: Any) -> Event:
    return Event(
        id=row.id,
        system=row.system,
        delivery_id=row.delivery_id,
        source=row.source,
        event_type=row.event_type,
        body=bytes(row.body),
        headers=dict(row.headers or {}),
        state=row.state,
        outcome=row.outcome,
        attempts=row.attempts,
        received_at=aware_or_none(row.received_at),  # type: ignore[arg-type]
        processed_at=aware_or_none(row.processed_at),
    )


class SystemState(msgspec.Struct, kw_only=True):
    """Per-system state: when it was first connected, the poll cursor, the last poll and
    its error, the pause flag, a 429's deferral and the last write error."""

    system: str
    connected_at: datetime | None = None
    paused: bool = False
    poll_cursor: datetime | None = None
    last_poll_at: datetime | None = None
    last_poll_error: str | None = None
    deferred_until: datetime | None = None
    last_write_error: str | None = None


class WriteAttempt(msgspec.Struct, kw_only=True):
    """One vendor write and how it went (``outcome``: ok, retry, rate_limited, dead)."""

    link_id: int
    work_item_id: str
    system: str
    action: str
    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: float
    payload: Any
    worker: str
    at: datetime
    #: set for a successful write: the object written and the item version it holds
    external_id: str | None = None
    version: int | None = None


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
    #: The object of ``system`` the entry is about (an item may have several objects of
    #: one system); None where it is about the system as a whole, or no object yet.
    external_id: str | None = None


def aware_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def known_of(value: dict[str, Any] | None) -> VendorObject | None:
    return None if value is None else msgspec.convert(value, VendorObject)


def encode_known(obj: VendorObject) -> dict[str, Any]:
    # raw vendor JSON is not kept in the mapping table: only what the sync needs
    slim = msgspec.structs.replace(obj, raw={}, read_at=None, unsent=())
    return msgspec.to_builtins(slim)  # type: ignore[no-any-return]


def link_of(row: Any) -> Link:
    target = row.create_target
    return Link(
        id=row.id,
        work_item_id=row.work_item_id,
        system=row.system,
        scope=row.scope,
        external_id=row.external_id,
        known=known_of(row.known_state),
        vendor_updated_at=aware_or_none(row.vendor_updated_at),
        last_synced_at=aware_or_none(row.last_synced_at),
        create_target=None if target is None else msgspec.convert(target, CreateTarget),
        idempotency_key=row.idempotency_key,
        dirty=bool(row.dirty),
        dirty_version=row.dirty_version,
        synced_version=row.synced_version,
        next_attempt_at=aware_or_none(row.next_attempt_at),
        attempts=row.attempts,
        last_error=row.last_error,
        dead=bool(row.dead),
        dead_reason=row.dead_reason,
        claimed_by=row.claimed_by,
        create_claims=row.create_claims,
        create_started_at=aware_or_none(row.create_started_at),
        create_payload=row.create_payload,
        unconfirmed=row.unconfirmed or None,
    )


def item_of(row: Any) -> WorkItem:
    return WorkItem(
        id=row.id,
        title=row.title,
        description=row.description,
        status=Status(row.status),
        priority=Priority(row.priority),
        snoozed_until=aware_or_none(row.snoozed_until),
        assignee=row.assignee,
        labels=list(row.labels or []),
        created_at=aware_or_none(row.created_at),  # type: ignore[arg-type]
        updated_at=aware_or_none(row.updated_at),  # type: ignore[arg-type]
        version=row.version,
        stamps={k: msgspec.convert(v, FieldStamp) for k, v in (row.stamps or {}).items()},
    )


def item_values(item: WorkItem) -> dict[str, Any]:
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
