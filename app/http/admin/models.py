"""The admin API's request and response bodies, and their conversion from the services'
records."""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.engine import ResyncOutcome
from app.inbox import kept_headers
from app.model import MAX_JSON_DEPTH, Priority, Status, WorkItem, json_too_deep
from app.store import Event, HistoryEntry, Link, Tx

log = logging.getLogger("syncgate.admin")


class OutboxState(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    DEAD = "dead"


class EventState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class EventSource(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"


NonEmpty = Annotated[str, Meta(min_length=1, max_length=1000)]


class WorkItemOut(msgspec.Struct):
    """The canonical state of one work item."""

    id: str
    title: str
    description: str
    status: Status
    priority: Priority
    snoozed_until: datetime | None
    assignee: str | None
    labels: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class LinkOut(msgspec.Struct):
    """One row of the mapping table: a vendor object linked to a work item, and the state
    of its write. ``state``: synced | pending | failed | dead. ``known`` is the canonical
    reading of what the object held when last seen."""

    id: int
    work_item_id: str
    system: str
    scope: str
    external_id: str | None
    state: str
    known: dict[str, Any] | None
    vendor_updated_at: datetime | None
    last_synced_at: datetime | None
    synced_version: int
    dirty_version: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    dead_reason: str | None


class HistoryOut(msgspec.Struct):
    kind: str
    at: datetime
    field: str | None
    old_value: Any
    new_value: Any
    system: str | None
    event_id: str | None
    detail: str | None


class AttemptOut(msgspec.Struct):
    at: datetime
    action: str
    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: float | None


class OutboxEntry(msgspec.Struct):
    """A write waiting (pending), retrying after errors (failed) or given up (dead).
    ``action``: create (the object does not exist yet) or update."""

    link_id: int
    work_item_id: str
    system: str
    scope: str
    external_id: str | None
    action: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    dead_reason: str | None
    recent_attempts: list[AttemptOut]


class WorkItemDetail(msgspec.Struct):
    """A work item with its links, its recent history (oldest first) and its pending
    writes."""

    item: WorkItemOut
    links: list[LinkOut]
    history: list[HistoryOut]
    pending_writes: list[OutboxEntry]


class WorkItemPage(msgspec.Struct):
    items: list[WorkItemOut]
    total: int
    limit: int
    offset: int


class ChangeResult(msgspec.Struct):
    """What a change did: the fields that changed and the links marked for a write."""

    item: WorkItemOut
    changed: list[str]
    dirty_links: list[int]


class ResyncEntry(msgspec.Struct):
    """One link re-read from its vendor. ``outcome``: the engine's verdict (changed,
    unchanged, stale), or why the object was not read (not_created, not_found, error: ...)."""

    link_id: int
    system: str
    external_id: str | None
    outcome: str


class ResyncResult(msgspec.Struct):
    work_item_id: str
    links: list[ResyncEntry]
    dirty_links: list[int]


class OutboxPage(msgspec.Struct):
    state: OutboxState
    entries: list[OutboxEntry]
    limit: int
    offset: int


class CountResult(msgspec.Struct):
    count: int


class EventOut(msgspec.Struct):
    """One stored event: a webhook delivery or a poll summary, with its outcome. ``body``
    is the JSON the vendor sent (or the poll summary); text when it is not JSON."""

    id: int
    system: str
    delivery_id: str
    source: str
    event_type: str
    state: str
    outcome: str | None
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    headers: dict[str, str]
    body: Any


class EventPage(msgspec.Struct):
    events: list[EventOut]
    limit: int
    offset: int


class SystemStatus(msgspec.Struct):
    """One configured system: polling, writes waiting, errors, pause and 429 deferral."""

    name: str
    enabled: bool
    paused: bool
    poll_interval_s: float
    last_poll_at: datetime | None
    lag_s: float | None
    last_poll_error: str | None
    last_write_error: str | None
    deferred_until: datetime | None
    queue_depth: int
    dead_letters: int


class SystemsOverview(msgspec.Struct):
    systems: list[SystemStatus]
    queue_depth: int
    dead_letters: int
    pending_events: int


class ConfigView(msgspec.Struct):
    """The running configuration, secrets masked, and the file it is reloaded from."""

    path: str | None
    config: dict[str, Any]


class ReloadResult(msgspec.Struct):
    reloaded: bool
    path: str
    systems: list[str]


# request bodies: unknown fields are refused


class LinkIn(msgspec.Struct, forbid_unknown_fields=True):
    """An existing vendor object to link: ``scope`` is the DevHelm status page id or the
    incident.io incident id ("" elsewhere)."""

    system: NonEmpty
    external_id: NonEmpty
    scope: str = ""


class CreateWorkItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new work item; the linked objects are then written to hold its state."""

    title: NonEmpty
    description: str = ""
    status: Status = Status.OPEN
    priority: Priority = Priority.NORMAL
    links: list[LinkIn] = msgspec.field(default_factory=list)


class ChangeWorkItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """The canonical fields to change; absent fields are left alone, ``null`` clears
    ``snoozed_until`` and ``assignee``."""

    title: NonEmpty | UnsetType = UNSET
    description: str | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    snoozed_until: datetime | UnsetType | None = UNSET
    assignee: str | UnsetType | None = UNSET


class RelinkIn(msgspec.Struct, forbid_unknown_fields=True):
    work_item_id: NonEmpty


# -- conversions ------------------------------------------------------------------------------


def item_out(item: WorkItem) -> WorkItemOut:
    return WorkItemOut(
        id=item.id,
        title=item.title,
        description=item.description,
        status=item.status,
        priority=item.priority,
        snoozed_until=item.snoozed_until,
        assignee=item.assignee,
        labels=list(item.labels),
        version=item.version,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def link_out(link: Link) -> LinkOut:
    known = None
    if link.known is not None:
        known = msgspec.to_builtins(link.known.fields)
        if link.known.native:
            known["native"] = dict(link.known.native)
    return LinkOut(
        id=link.id,
        work_item_id=link.work_item_id,
        system=link.system,
        scope=link.scope,
        external_id=link.external_id,
        state=link.state,
        known=known,
        vendor_updated_at=link.vendor_updated_at,
        last_synced_at=link.last_synced_at,
        synced_version=link.synced_version,
        dirty_version=link.dirty_version,
        attempts=link.attempts,
        next_attempt_at=link.next_attempt_at,
        last_error=link.last_error,
        dead_reason=link.dead_reason,
    )


def history_out(entry: HistoryEntry) -> HistoryOut:
    return HistoryOut(
        kind=entry.kind,
        at=entry.at,
        field=entry.field,
        old_value=entry.old_value,
        new_value=entry.new_value,
        system=entry.system,
        event_id=entry.event_id,
        detail=entry.detail,
    )


async def outbox_entry(tx: Tx, link: Link, recent: int = 5) -> OutboxEntry:
    attempts = (await tx.attempts_of(link.id))[-recent:]
    return OutboxEntry(
        link_id=link.id,
        work_item_id=link.work_item_id,
        system=link.system,
        scope=link.scope,
        external_id=link.external_id,
        action="create" if link.external_id is None else "update",
        state=link.state,
        attempts=link.attempts,
        next_attempt_at=link.next_attempt_at,
        last_error=link.last_error,
        dead_reason=link.dead_reason,
        recent_attempts=[
            AttemptOut(
                at=a.at,
                action=a.action,
                attempt=a.attempt,
                outcome=a.outcome,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in attempts
        ],
    )


def event_out(event: Event, stored_headers: frozenset[str]) -> EventOut:
    """``stored_headers``: the system's allow-list (events stored before it applied may
    hold more). A body nested deeper than ``MAX_JSON_DEPTH`` is shown as text."""
    body: Any
    try:
        if json_too_deep(event.body):
            raise msgspec.DecodeError(f"nested deeper than {MAX_JSON_DEPTH}")
        body = msgspec.json.decode(event.body)
    except msgspec.DecodeError:
        body = event.body.decode("utf-8", errors="replace")
    return EventOut(
        id=event.id,
        system=event.system,
        delivery_id=event.delivery_id,
        source=event.source,
        event_type=event.event_type,
        state=event.state,
        outcome=event.outcome,
        attempts=event.attempts,
        received_at=event.received_at,
        processed_at=event.processed_at,
        headers=kept_headers(event.headers, stored_headers),
        body=body,
    )


async def item_detail(tx: Tx, item_id: str, history: int = 100) -> WorkItemDetail:
    item = await tx.require_item(item_id)
    links = await tx.links_of(item_id)
    pending = [await outbox_entry(tx, link) for link in links if link.dirty or link.dead]
    return WorkItemDetail(
        item=item_out(item),
        links=[link_out(link) for link in links],
        history=[history_out(h) for h in await tx.recent_history(item_id, history)],
        pending_writes=pending,
    )


def resync_entry(outcome: ResyncOutcome) -> ResyncEntry:
    return ResyncEntry(outcome.link_id, outcome.system, outcome.external_id, outcome.outcome)
