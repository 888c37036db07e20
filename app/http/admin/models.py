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
from app.errors import Invalid
from app.inbox import kept_headers
from app.model import MAX_JSON_DEPTH, Priority, Status, WorkItem, given_utc, json_too_deep
from app.store import Event, HistoryEntry, Link, Tx

log = logging.getLogger("syncgate.admin")


class OutboxState(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    DEAD = "dead"
    WAITING = "waiting"


class EventState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class EventSource(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"


def doc(description: str, *examples: Any) -> Meta:
    """A field's OpenAPI description and examples (every field of every body has both)."""
    return Meta(description=description, examples=list(examples) if examples else None)


ITEM_ID = "b7c9f1d2e3a44f5b8c6d7e8f9a0b1c2d"
WHEN = "2026-12-02T09:30:00Z"

NonEmpty = Annotated[str, Meta(min_length=1, max_length=1000)]
ItemIdField = Annotated[str, doc("Work item id", ITEM_ID)]
LinkIdField = Annotated[int, doc("Link id: a row of the mapping table", 42)]
SystemField = Annotated[str, doc("A configured system name", "inboxops")]
ScopeField = Annotated[
    str, doc("DevHelm status page id or incident.io incident id; empty elsewhere", "")
]
ExternalIdField = Annotated[str | None, doc("The vendor's id; null while being created", "T-1042")]
Count = Annotated[int, doc("A number of rows", 3)]
#: ``snoozed_until`` in a change: RFC 3339 text with an offset, never a number (litestar's
#: lenient conversion would read 0 as 1970-01-01); ``timestamp`` turns it into a datetime.
Timestamp = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})$",
        extra_json_schema={"extra": {"format": "date-time"}},
        description="Snooze until then (RFC 3339, with an offset); null clears it",
        examples=[WHEN],
    ),
]


def timestamp(text: str, name: str = "snoozed_until") -> datetime:
    """A ``Timestamp`` as a UTC datetime (the store keeps UTC); ``Invalid`` (422) for a
    date that does not exist, or one out of range in UTC."""
    try:
        moment = msgspec.convert(text, datetime)
    except msgspec.ValidationError as exc:
        raise Invalid(f"not a date and time: {text!r} ({exc})") from None
    return given_utc(moment, name)


PageLimit = Annotated[int, doc("The page size asked for", 50)]
PageOffset = Annotated[int, doc("The rows skipped", 0)]


class WorkItemOut(msgspec.Struct):
    """The canonical state of one work item."""

    id: ItemIdField
    title: Annotated[str, doc("Short title", "Checkout webhooks failing")]
    description: Annotated[str, doc("Longer text", "Deliveries to /checkout answer 503")]
    status: Annotated[Status, doc("Canonical status", "open")]
    priority: Annotated[Priority, doc("Canonical priority", "high")]
    snoozed_until: Annotated[datetime | None, doc("Snoozed until then (hookstream)", None)]
    assignee: Annotated[str | None, doc("Who works on it, if anyone", "dana@example.com")]
    labels: Annotated[list[str], doc("Labels", ["payments"])]
    version: Annotated[int, doc("Bumped by every change", 3)]
    created_at: Annotated[datetime, doc("When it was created", WHEN)]
    updated_at: Annotated[datetime, doc("When it last changed", WHEN)]


class LinkOut(msgspec.Struct):
    """One row of the mapping table: a vendor object linked to a work item, and the state
    of its write."""

    id: LinkIdField
    work_item_id: ItemIdField
    system: SystemField
    scope: ScopeField
    external_id: ExternalIdField
    state: Annotated[
        str,
        doc(
            "Write state: synced, pending, failed, dead, or waiting (a create not tried"
            " until the item holds a value the system takes, such as a title that is not"
            " blank; last_error says why)",
            "synced",
        ),
    ]
    known: Annotated[
        dict[str, Any] | None,
        doc(
            "The canonical reading of what the object held when last seen (null: never read)",
            {"status": "open", "priority": "high", "title": "Checkout webhooks failing"},
        ),
    ]
    vendor_updated_at: Annotated[datetime | None, doc("The vendor's updated_at last seen", WHEN)]
    last_synced_at: Annotated[datetime | None, doc("When a write last landed", WHEN)]
    synced_version: Annotated[int, doc("The item version the object holds", 3)]
    dirty_version: Annotated[int, doc("The item version a write is due for", 3)]
    attempts: Annotated[int, doc("Failed attempts of the current write", 0)]
    next_attempt_at: Annotated[datetime | None, doc("When the write is tried next", None)]
    last_error: Annotated[str | None, doc("The last write error", None)]
    dead_reason: Annotated[str | None, doc("Why the write was given up", None)]


class HistoryOut(msgspec.Struct):
    """One entry of a work item's audit trail."""

    kind: Annotated[
        str,
        doc(
            "change, conflict_lost, not_synced, unmapped, created, linked, unlinked,"
            " write, write_discarded, dead_letter, ambiguous_match, waiting (a create not"
            " tried until the item has a title) or stale (a change dated before what was seen"
            " of the object, not applied)",
            "change",
        ),
    ]
    at: Annotated[datetime, doc("When it happened", WHEN)]
    field: Annotated[str | None, doc("The canonical field, for a change", "status")]
    old_value: Annotated[Any, doc("The value before", "open")]
    new_value: Annotated[Any, doc("The value after", "resolved")]
    system: Annotated[str | None, doc("The system it came from or went to", "inboxops")]
    event_id: Annotated[str | None, doc("The event, poll or operator behind it", "admin")]
    detail: Annotated[str | None, doc("A sentence for people", None)]
    external_id: Annotated[
        str | None,
        doc(
            "The object of the system the entry is about, which tells apart two objects of"
            " one system on the item (null: about the system as a whole, or recorded before"
            " this field)",
            "e41b5b65-0d63-49e0-b4d2-4831611c0292",
        ),
    ] = None


class AttemptOut(msgspec.Struct):
    """One vendor write and how it went."""

    at: Annotated[datetime, doc("When it was made", WHEN)]
    action: Annotated[str, doc("create or update", "update")]
    attempt: Annotated[int, doc("1 for the first try", 1)]
    outcome: Annotated[str, doc("ok, noop, retry, rate_limited or dead", "ok")]
    status_code: Annotated[int | None, doc("The vendor's HTTP status", 200)]
    error: Annotated[str | None, doc("The error, if it failed", None)]
    duration_ms: Annotated[float | None, doc("How long the call took", 41.5)]


class OutboxEntry(msgspec.Struct):
    """A write waiting (pending), retrying after errors (failed) or given up (dead)."""

    link_id: LinkIdField
    work_item_id: ItemIdField
    system: SystemField
    scope: ScopeField
    external_id: ExternalIdField
    action: Annotated[str, doc("create (the object does not exist yet) or update", "update")]
    state: Annotated[str, doc("pending, failed, dead or waiting", "dead")]
    attempts: Annotated[int, doc("Attempts so far", 5)]
    next_attempt_at: Annotated[datetime | None, doc("When it is tried next", None)]
    last_error: Annotated[str | None, doc("The last error", "rejected: 422 invalid status")]
    dead_reason: Annotated[str | None, doc("Why it was given up", "rejected by the vendor")]
    recent_attempts: Annotated[list[AttemptOut], doc("The last five attempts, oldest first")]


class WorkItemDetail(msgspec.Struct):
    """A work item with its links, its recent history (oldest first) and its pending
    writes."""

    item: Annotated[WorkItemOut, doc("The canonical state")]
    links: Annotated[list[LinkOut], doc("Every linked vendor object")]
    history: Annotated[list[HistoryOut], doc("The most recent history, oldest first")]
    pending_writes: Annotated[list[OutboxEntry], doc("Writes not yet landed, or given up")]


class WorkItemPage(msgspec.Struct):
    """A page of work items, newest first."""

    items: Annotated[list[WorkItemOut], doc("This page")]
    total: Annotated[int, doc("Items matching, over all pages", 1)]
    limit: PageLimit
    offset: PageOffset


class ChangeResult(msgspec.Struct):
    """What a change did: the fields that changed and the links marked for a write."""

    item: Annotated[WorkItemOut, doc("The item after the change")]
    changed: Annotated[list[str], doc("The fields that changed", ["status"])]
    dirty_links: Annotated[list[int], doc("The links marked for a write", [42, 43])]


class ResyncEntry(msgspec.Struct):
    """One link re-read from its vendor."""

    link_id: LinkIdField
    system: SystemField
    external_id: ExternalIdField
    outcome: Annotated[
        str,
        doc(
            "The engine's verdict (changed, unchanged, stale), or why the object was not"
            " read (not_created, not_found, system disabled, error: ...)",
            "unchanged",
        ),
    ]


class ResyncResult(msgspec.Struct):
    """What a resync read and which links it marked for a write."""

    work_item_id: ItemIdField
    links: Annotated[list[ResyncEntry], doc("One entry per link re-read")]
    dirty_links: Annotated[list[int], doc("The links marked for a write", [42])]


class OutboxPage(msgspec.Struct):
    """A page of the outbox in one state."""

    state: Annotated[OutboxState, doc("The state listed", "dead")]
    entries: Annotated[list[OutboxEntry], doc("This page")]
    limit: PageLimit
    offset: PageOffset


class CountResult(msgspec.Struct):
    """How many writes a bulk action touched."""

    count: Count


class EventOut(msgspec.Struct):
    """One stored event: a webhook delivery or a poll summary, with its outcome."""

    id: Annotated[int, doc("Event id", 7)]
    system: SystemField
    delivery_id: Annotated[str, doc("The vendor's delivery id (or the poll's)", "msg_2b1c")]
    source: Annotated[str, doc("webhook or poll", "webhook")]
    event_type: Annotated[str, doc("The vendor's event type", "ticket.updated")]
    state: Annotated[str, doc("pending, done or failed", "done")]
    outcome: Annotated[str | None, doc("What processing did", "applied")]
    attempts: Annotated[int, doc("Processing attempts", 1)]
    received_at: Annotated[datetime, doc("When it was stored", WHEN)]
    processed_at: Annotated[datetime | None, doc("When it was processed", WHEN)]
    headers: Annotated[
        dict[str, str],
        doc(
            "The headers kept (an allow-list: no credentials)", {"content-type": "application/json"}
        ),
    ]
    body: Annotated[
        Any,
        doc("The JSON the vendor sent (or the poll summary); text when not JSON", {"id": "T-1"}),
    ]


class EventPage(msgspec.Struct):
    """A page of the event log, newest first."""

    events: Annotated[list[EventOut], doc("This page")]
    limit: PageLimit
    offset: PageOffset


class RejectionOut(msgspec.Struct):
    """A webhook delivery refused before anything was stored: when, for which system, the
    status it was answered with and why."""

    at: Annotated[datetime, doc("When it was refused", WHEN)]
    system: Annotated[str, doc("The system named in the path", "inboxops")]
    status: Annotated[int, doc("The status it was answered with", 401)]
    reason: Annotated[str, doc("Why", "no signature matches")]


class RejectionPage(msgspec.Struct):
    """The last deliveries this gateway process refused (at most 100, newest first; kept
    in memory only)."""

    rejections: Annotated[list[RejectionOut], doc("The refused deliveries, newest first")]


class SystemStatus(msgspec.Struct):
    """One configured system: polling, writes waiting, errors, pause and 429 deferral."""

    name: SystemField
    enabled: Annotated[bool, doc("Configured and enabled", True)]
    paused: Annotated[bool, doc("Paused by an operator: no polls, writes wait", False)]
    poll_interval_s: Annotated[float, doc("Seconds between polls (0: webhooks only)", 30.0)]
    last_poll_at: Annotated[datetime | None, doc("When it was last polled", WHEN)]
    lag_s: Annotated[float | None, doc("Seconds since the last poll", 12.5)]
    last_poll_error: Annotated[str | None, doc("The last poll error", None)]
    last_write_error: Annotated[str | None, doc("The last write error", None)]
    deferred_until: Annotated[datetime | None, doc("Writes held back until (a 429)", None)]
    queue_depth: Annotated[int, doc("Writes waiting", 0)]
    dead_letters: Annotated[int, doc("Writes given up", 0)]


class SystemsOverview(msgspec.Struct):
    """Every configured system and the totals."""

    systems: Annotated[list[SystemStatus], doc("One entry per configured system")]
    queue_depth: Annotated[int, doc("Writes waiting, all systems", 0)]
    dead_letters: Annotated[int, doc("Writes given up, all systems", 0)]
    pending_events: Annotated[int, doc("Webhooks stored but not processed yet", 0)]


class ConfigView(msgspec.Struct):
    """The running configuration, secrets masked, and the file it is reloaded from."""

    path: Annotated[str | None, doc("The config file (null: not started from one)", "config.yaml")]
    config: Annotated[
        dict[str, Any],
        doc("The effective configuration, secrets masked", {"dispatcher": {"concurrency": 8}}),
    ]


class ReloadResult(msgspec.Struct):
    """A reload that was applied."""

    reloaded: Annotated[bool, doc("Always true (a refused reload is a 422)", True)]
    path: Annotated[str, doc("The file read", "config.yaml")]
    systems: Annotated[list[str], doc("The systems now enabled", ["devhelm", "inboxops"])]
    restart_needed: Annotated[
        list[str],
        doc(
            "Keys the file changes that take effect only at the next restart (the"
            " running configuration keeps them as they are)",
            ["database_url", "systems.devhelm.poll_interval_s"],
        ),
    ] = msgspec.field(default_factory=list)


# request bodies: unknown fields are refused


class LinkIn(msgspec.Struct, forbid_unknown_fields=True):
    """An existing vendor object to link."""

    system: Annotated[NonEmpty, doc("A configured system name", "inboxops")]
    external_id: Annotated[NonEmpty, doc("The vendor's id of the object", "T-1042")]
    scope: Annotated[
        str, doc("DevHelm status page id or incident.io incident id; empty elsewhere", "")
    ] = ""


class CreateWorkItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new work item; the linked objects are then written to hold its state."""

    title: Annotated[NonEmpty, doc("Short title", "Checkout webhooks failing")]
    description: Annotated[str, doc("Longer text", "Deliveries to /checkout answer 503")] = ""
    status: Annotated[Status, doc("Canonical status", "open")] = Status.OPEN
    priority: Annotated[Priority, doc("Canonical priority", "high")] = Priority.NORMAL
    links: Annotated[
        list[LinkIn],
        doc("Existing vendor objects to link", [{"system": "inboxops", "external_id": "T-1042"}]),
    ] = msgspec.field(default_factory=list)


class ChangeWorkItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """The canonical fields to change; absent fields are left alone."""

    title: Annotated[NonEmpty | UnsetType, doc("Short title", "Checkout webhooks failing")] = UNSET
    description: Annotated[str | UnsetType, doc("Longer text", "Fixed by rollback")] = UNSET
    status: Annotated[Status | UnsetType, doc("Canonical status", "resolved")] = UNSET
    priority: Annotated[Priority | UnsetType, doc("Canonical priority", "urgent")] = UNSET
    snoozed_until: Timestamp | UnsetType | None = UNSET
    assignee: Annotated[
        str | UnsetType | None, doc("Who works on it; null clears it", "dana@example.com")
    ] = UNSET


def form_change(values: dict[str, Any]) -> ChangeWorkItemIn:
    """A change given by a form (the console's) read by the body's own rules, so that the
    console takes exactly what ``PATCH /admin/work-items`` takes (the title's length, a
    known status or priority): ``Invalid`` naming the field and the rule it breaks."""
    try:
        return msgspec.convert(values, ChangeWorkItemIn)
    except msgspec.ValidationError as exc:
        rule, _, field = str(exc).rpartition(" - at `$.")
        raise Invalid(f"{field.rstrip('`')}: {rule}" if rule else str(exc)) from None


def change_values(data: ChangeWorkItemIn) -> dict[str, Any]:
    """The fields a change names, as ``Fields`` takes them (``snoozed_until`` in UTC)."""
    values = {
        name: getattr(data, name)
        for name in ChangeWorkItemIn.__struct_fields__
        if getattr(data, name) is not UNSET
    }
    if isinstance(values.get("snoozed_until"), str):
        values["snoozed_until"] = timestamp(values["snoozed_until"])
    return values


class RelinkIn(msgspec.Struct, forbid_unknown_fields=True):
    """The work item a link moves to."""

    work_item_id: Annotated[NonEmpty, doc("The target work item id", ITEM_ID)]


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
        external_id=entry.external_id,
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
    pending = [
        await outbox_entry(tx, link)
        for link in links
        if link.dirty or link.dead or link.state == "waiting"
    ]
    return WorkItemDetail(
        item=item_out(item),
        links=[link_out(link) for link in links],
        history=[history_out(h) for h in await tx.recent_history(item_id, history)],
        pending_writes=pending,
    )


def resync_entry(outcome: ResyncOutcome) -> ResyncEntry:
    return ResyncEntry(outcome.link_id, outcome.system, outcome.external_id, outcome.outcome)
