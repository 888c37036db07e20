"""Operator surfaces: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and the
``/admin`` API (work items and the mapping table, the outbox, the event log, systems,
config), described in the OpenAPI document at ``/schema``.

Every ``/admin`` route needs the admin key (``X-Admin-Key`` or ``Authorization: Bearer``);
every error is an RFC 7807 problem. Canonical state changes go through the engine
(``Engine.change``, ``Engine.observe``); SQL stays in the store; writes stay with the
dispatcher, which this module only wakes.
"""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import UNSET, Meta, UnsetType

from app.errors import ConfigError, NotFound, VendorError
from app.model import Fields, ObjectRef, Priority, Status, VendorObject, WorkItem, as_utc
from app.receivers import kept_headers
from app.store import Event, HistoryEntry, IntegrityError, Link, Tx

if TYPE_CHECKING:
    from app.asgi import Gateway

log = logging.getLogger("syncgate.admin")

# -- health, readiness, metrics ---------------------------------------------------------------


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


@get("/healthz", summary="Liveness: the process answers", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: database reachable and config loaded")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    gateway = _gateway(request)
    database = await gateway.store.ping()
    ready = database and bool(gateway.adapters)
    return Response(
        {
            "status": "ready" if ready else "not ready",
            "database": database,
            "systems": sorted(gateway.adapters),
        },
        status_code=200 if ready else 503,
    )


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any]) -> bytes:
    gateway = _gateway(request)
    async with gateway.store.tx() as tx:
        depth = await tx.queue_depth()
    for system in gateway.adapters:
        gateway.metrics.queue_depth.labels(system).set(depth.get(system, 0))
    for system, lag in (await gateway.pollers.lag_seconds()).items():
        if lag is not None:
            gateway.metrics.poll_lag.labels(system).set(lag)
    return gateway.metrics.render()


# -- errors -----------------------------------------------------------------------------------

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ConfigIssueOut(msgspec.Struct):
    file: str
    line: int | None
    key: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 7807 problem; ``issues`` only on a refused config reload."""

    type: str
    title: str
    status: int
    detail: str
    issues: list[ConfigIssueOut] | UnsetType = UNSET


class AdminError(Exception):
    """Raised by a handler; answered as a problem (one place builds every error response)."""

    def __init__(
        self, status: int, title: str, detail: str, *, issues: list[ConfigIssueOut] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.issues = issues


def _problem(
    status: int,
    title: str,
    detail: str,
    *,
    issues: list[ConfigIssueOut] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    body = Problem(
        type="about:blank",
        title=title,
        status=status,
        detail=detail,
        issues=UNSET if issues is None else issues,
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _on_admin_error(_: Request[Any, Any, Any], exc: AdminError) -> Response[Problem]:
    return _problem(exc.status, exc.title, exc.detail, issues=exc.issues)


def _on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Litestar's own errors (body and parameter validation, 405, ...) as problems, with
    the reason the validator gave."""
    detail = exc.detail
    extra = exc.extra
    if isinstance(extra, list) and extra:
        reasons = []
        for entry in extra:
            if isinstance(entry, dict):
                source = entry.get("source")
                source = getattr(source, "value", source)
                where = ".".join(str(p) for p in (source, entry.get("key")) if p)
                reasons.append(
                    f"{where}: {entry.get('message')}" if where else str(entry.get("message"))
                )
            else:
                reasons.append(str(entry))
        detail = f"{detail}: " + "; ".join(reasons)
    elif isinstance(extra, dict) and extra:
        detail = f"{detail}: {extra}"
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Payload too large",
    }
    return _problem(exc.status_code, titles.get(exc.status_code, "Error"), detail)


def _not_found(what: str) -> AdminError:
    return AdminError(404, "Not found", what)


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI descriptions of the problem responses a route may give."""
    meaning = {
        400: "Bad input (unknown enum value, bad paging, malformed body)",
        401: "Missing or wrong admin key, or the admin API is closed",
        404: "Unknown id (or vendor object not found)",
        409: "Conflict with the current state",
        422: "A well-formed but semantically invalid body",
        502: "The vendor failed to answer",
    }
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=meaning[code],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for code in (401, *codes)
    }


# -- authentication ---------------------------------------------------------------------------


def _presented_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("x-admin-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def _authorize(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """Runs before every /admin handler (and before its input is parsed)."""
    gateway = _gateway(request)
    expected = gateway.secrets.admin_key
    challenge = {"WWW-Authenticate": 'Bearer realm="syncgate-admin"'}
    if not expected:
        return _problem(
            401,
            "Unauthorized",
            f"admin API is closed: set {gateway.settings.admin.api_key_env}",
            headers=challenge,
        )
    presented = _presented_key(request)
    if presented is None:
        return _problem(
            401,
            "Unauthorized",
            "admin key required: send X-Admin-Key: <key> or Authorization: Bearer <key>",
            headers=challenge,
        )
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return _problem(401, "Unauthorized", "wrong admin key", headers=challenge)
    return None


# -- API models -------------------------------------------------------------------------------


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


def _item_out(item: WorkItem) -> WorkItemOut:
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


def _link_state(link: Link) -> str:
    if link.dead:
        return "dead"
    if not link.dirty:
        return "synced"
    return "failed" if link.attempts > 0 else "pending"


def _link_out(link: Link) -> LinkOut:
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
        state=_link_state(link),
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


def _history_out(entry: HistoryEntry) -> HistoryOut:
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


def _aware(value: datetime | str) -> datetime:
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


async def _outbox_entry(tx: Tx, link: Link, recent: int = 5) -> OutboxEntry:
    attempts = (await tx.attempts_of(link.id))[-recent:]
    return OutboxEntry(
        link_id=link.id,
        work_item_id=link.work_item_id,
        system=link.system,
        scope=link.scope,
        external_id=link.external_id,
        action="create" if link.external_id is None else "update",
        state=_link_state(link),
        attempts=link.attempts,
        next_attempt_at=link.next_attempt_at,
        last_error=link.last_error,
        dead_reason=link.dead_reason,
        recent_attempts=[
            AttemptOut(
                at=_aware(a["at"]),
                action=a["action"],
                attempt=a["attempt"],
                outcome=a["outcome"],
                status_code=a["status_code"],
                error=a["error"],
                duration_ms=a["duration_ms"],
            )
            for a in attempts
        ],
    )


def _event_out(event: Event) -> EventOut:
    try:
        body: Any = msgspec.json.decode(event.body)
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
        headers=kept_headers(event.headers),
        body=body,
    )


async def _detail(tx: Tx, item_id: str, history: int = 100) -> WorkItemDetail:
    item = await tx.get_item(item_id)
    if item is None:
        raise _not_found(f"no work item {item_id!r}")
    links = await tx.links_of(item_id)
    pending = [await _outbox_entry(tx, link) for link in links if link.dirty or link.dead]
    return WorkItemDetail(
        item=_item_out(item),
        links=[_link_out(link) for link in links],
        history=[_history_out(h) for h in await tx.admin_recent_history(item_id, history)],
        pending_writes=pending,
    )


# -- helpers ----------------------------------------------------------------------------------


def _check_system(gateway: Gateway, system: str | None, *, status: int = 400) -> None:
    if system is not None and system not in gateway.settings.systems:
        known = ", ".join(sorted(gateway.settings.systems)) or "none"
        raise AdminError(
            status, "Unknown system", f"no system named {system!r} (configured: {known})"
        )


async def _fetch(gateway: Gateway, ref: ObjectRef) -> VendorObject:
    """The object as its vendor holds it now: 404 when the vendor does not know it, 502
    when the vendor fails."""
    adapter = gateway.adapters.get(ref.system)
    if adapter is None:
        raise AdminError(422, "Unknown system", f"no enabled system named {ref.system!r}")
    try:
        return await adapter.get(ref)
    except NotFound as exc:
        where = f" in scope {ref.scope!r}" if ref.scope else ""
        raise AdminError(
            404,
            "Vendor object not found",
            f"{ref.system} has no object {ref.external_id!r}{where}: {exc.message}",
        ) from None
    except VendorError as exc:
        raise AdminError(502, "Vendor error", str(exc)) from None


def _parse_link_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise AdminError(400, "Bad link id", f"a link id is a positive integer, got {raw!r}")
    return int(raw)


async def _link_or_404(tx: Tx, link_id: int) -> Link:
    link = await tx.get_link(link_id)
    if link is None:
        raise _not_found(f"no link {link_id}")
    return link


def _audit(message: str, **extra: Any) -> None:
    log.info(message, extra={"action": message, **extra})


def _conflict_owner(ref: ObjectRef, owner: str) -> AdminError:
    return AdminError(
        409,
        "Already linked",
        f"{ref.system} object {ref.external_id!r} is already linked to work item {owner}",
    )


async def _insert_links(
    gateway: Gateway, tx: Tx, item: WorkItem, objects: Sequence[VendorObject]
) -> list[int]:
    """Link ``objects`` to ``item``, each marked to receive the item's state (the
    dispatcher writes only what differs). Raises IntegrityError if one is linked already."""
    now = gateway.clock()
    ids = []
    for obj in objects:
        existing = await tx.link_for(obj.ref)
        if existing is not None:
            raise _conflict_owner(obj.ref, existing.work_item_id)
        link_id = await tx.insert_link(
            work_item_id=item.id,
            system=obj.ref.system,
            scope=obj.ref.scope,
            now=now,
            seen=obj,
            version=item.version,
        )
        ids.append(link_id)
    await tx.add_history(
        [
            HistoryEntry(
                work_item_id=item.id,
                kind="linked",
                system=obj.ref.system,
                event_id="admin",
                detail=f"admin linked {obj.ref.system} {obj.ref.external_id}"
                + (f" (scope {obj.ref.scope})" if obj.ref.scope else ""),
                at=now,
            )
            for obj in objects
        ]
    )
    await tx.mark_dirty(ids, item.version)
    return ids


async def _owner_of(gateway: Gateway, refs: Sequence[ObjectRef]) -> AdminError:
    """After a uniqueness violation (another request linked the object first): name the
    work item that holds it."""
    async with gateway.store.tx() as tx:
        for ref in refs:
            existing = await tx.link_for(ref)
            if existing is not None:
                return _conflict_owner(ref, existing.work_item_id)
    return AdminError(409, "Already linked", "the object was linked concurrently")


async def _resync_links(gateway: Gateway, links: Sequence[Link]) -> list[ResyncEntry]:
    entries = []
    for link in links:
        ref = link.ref
        if ref is None:
            entries.append(ResyncEntry(link.id, link.system, None, "not_created"))
            continue
        adapter = gateway.adapters.get(link.system)
        if adapter is None:
            entries.append(ResyncEntry(link.id, link.system, ref.external_id, "system disabled"))
            continue
        try:
            obj = await adapter.get(ref)
        except NotFound:
            entries.append(ResyncEntry(link.id, link.system, ref.external_id, "not_found"))
            continue
        except VendorError as exc:
            entries.append(ResyncEntry(link.id, link.system, ref.external_id, f"error: {exc}"))
            continue
        outcome = await gateway.engine.observe(obj, event_id="admin-resync")
        entries.append(ResyncEntry(link.id, link.system, ref.external_id, outcome.kind))
    return entries


async def _mark_for_write(
    gateway: Gateway, item_id: str, link_ids: Sequence[int] | None
) -> list[int]:
    """Mark links (all of the item's when None) to be compared and written at the item's
    current version; returns the ids marked."""
    async with gateway.store.tx() as tx:
        item = await tx.get_item(item_id, lock=True)
        if item is None:
            return []
        links = await tx.links_of(item_id)
        wanted = [
            link.id
            for link in links
            if not link.dead
            and link.system in gateway.adapters
            and (link_ids is None or link.id in link_ids)
        ]
        await tx.mark_dirty(wanted, item.version)
    gateway.dispatcher.wake.set()
    return wanted


Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (1-500)")]
Offset = Annotated[int, QueryParameter(ge=0, description="Rows to skip")]
SystemFilter = Annotated[str | None, QueryParameter(description="A configured system name")]
ItemId = Annotated[str, PathParameter(description="Work item id")]
LinkId = Annotated[
    str, PathParameter(description="Link id (an integer: a row of the mapping table)")
]
SystemName = Annotated[str, PathParameter(description="A configured system name")]


# -- work items -------------------------------------------------------------------------------


@get(
    "/work-items",
    summary="List and search work items",
    tags=["work items"],
    description="Newest first. ``text`` searches title and description (case-insensitive);"
    " ``system`` keeps items linked to an object of that system.",
    responses=_errors(400),
)
async def list_work_items(
    request: Request[Any, Any, Any],
    status: Annotated[Status | None, QueryParameter(description="Canonical status")] = None,
    system: SystemFilter = None,
    text: Annotated[
        str | None, QueryParameter(description="Words in the title or description")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> WorkItemPage:
    gateway = _gateway(request)
    _check_system(gateway, system)
    async with gateway.store.tx() as tx:
        items, total = await tx.search_items(
            status=None if status is None else str(status),
            system=system,
            text=text,
            limit=limit,
            offset=offset,
        )
    return WorkItemPage([_item_out(i) for i in items], total, limit, offset)


@post(
    "/work-items",
    summary="Create a work item and link existing vendor objects to it",
    tags=["work items"],
    description="Each linked object is read from its vendor first (404 if it does not exist,"
    " 502 if the vendor fails; nothing is created then). An object linked to another work"
    " item is refused with 409. The linked objects are then written to hold the new item's"
    " state (only what differs).",
    responses=_errors(400, 404, 409, 422, 502),
)
async def create_work_item(
    request: Request[Any, Any, Any], data: JSONBody[CreateWorkItemIn]
) -> WorkItemDetail:
    gateway = _gateway(request)
    refs = [ObjectRef(link.system, link.scope, link.external_id) for link in data.links]
    if len(set(refs)) != len(refs):
        raise AdminError(422, "Duplicate links", "the same vendor object is listed twice")
    for ref in refs:
        _check_system(gateway, ref.system, status=422)
    objects = [await _fetch(gateway, ref) for ref in refs]
    now = gateway.clock()
    item = WorkItem(
        id=uuid.uuid4().hex,
        title=data.title,
        description=data.description,
        status=data.status,
        priority=data.priority,
        created_at=now,
        updated_at=now,
    )
    try:
        async with gateway.store.tx() as tx:
            await tx.insert_item(item)
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=item.id,
                        kind="created",
                        system="admin",
                        event_id="admin",
                        new_value=msgspec.to_builtins(item.fields().as_dict()),
                        detail="created by an operator",
                        at=now,
                    )
                ]
            )
            await _insert_links(gateway, tx, item, objects)
    except IntegrityError:
        raise await _owner_of(gateway, [o.ref for o in objects]) from None
    gateway.dispatcher.wake.set()
    _audit("work item created", work_item_id=item.id, systems=[r.system for r in refs])
    async with gateway.store.tx() as tx:
        return await _detail(tx, item.id)


@get(
    "/work-items/{item_id:str}",
    summary="One work item with its links, history and pending writes",
    tags=["work items"],
    responses=_errors(404),
)
async def get_work_item(
    request: Request[Any, Any, Any],
    item_id: ItemId,
    history: Annotated[
        int, QueryParameter(ge=1, le=1000, description="Most recent history entries")
    ] = 100,
) -> WorkItemDetail:
    async with _gateway(request).store.tx() as tx:
        return await _detail(tx, item_id, history)


@patch(
    "/work-items/{item_id:str}",
    summary="Change a work item (it propagates like any change)",
    tags=["work items"],
    description="The operator's values win over the current ones and are written to every"
    " linked object that carries the field.",
    responses=_errors(400, 404, 422),
)
async def change_work_item(
    request: Request[Any, Any, Any], item_id: ItemId, data: JSONBody[ChangeWorkItemIn]
) -> ChangeResult:
    gateway = _gateway(request)
    values = {
        name: getattr(data, name)
        for name in ChangeWorkItemIn.__struct_fields__
        if getattr(data, name) is not UNSET
    }
    if not values:
        raise AdminError(422, "Nothing to change", "nothing to change: the body names no field")
    try:
        outcome = await gateway.engine.change(item_id, Fields(**values), source="admin")
    except KeyError:
        raise _not_found(f"no work item {item_id!r}") from None
    gateway.dispatcher.wake.set()
    if outcome.changed:
        _audit(
            "work item changed",
            work_item_id=item_id,
            fields=list(outcome.changed),
            dirty_links=list(outcome.dirty_links),
        )
    async with gateway.store.tx() as tx:
        item = await tx.get_item(item_id)
    assert item is not None
    return ChangeResult(_item_out(item), list(outcome.changed), list(outcome.dirty_links))


@post(
    "/work-items/{item_id:str}/links",
    summary="Link an existing vendor object to a work item",
    tags=["links"],
    responses=_errors(400, 404, 409, 422, 502),
)
async def add_link(
    request: Request[Any, Any, Any], item_id: ItemId, data: JSONBody[LinkIn]
) -> LinkOut:
    gateway = _gateway(request)
    _check_system(gateway, data.system, status=422)
    async with gateway.store.tx() as tx:
        if await tx.get_item(item_id) is None:
            raise _not_found(f"no work item {item_id!r}")
    obj = await _fetch(gateway, ObjectRef(data.system, data.scope, data.external_id))
    try:
        async with gateway.store.tx() as tx:
            item = await tx.get_item(item_id, lock=True)
            if item is None:
                raise _not_found(f"no work item {item_id!r}")
            (link_id,) = await _insert_links(gateway, tx, item, [obj])
    except IntegrityError:
        raise await _owner_of(gateway, [obj.ref]) from None
    gateway.dispatcher.wake.set()
    _audit(
        "object linked",
        work_item_id=item_id,
        system=data.system,
        link_id=link_id,
        external_id=obj.ref.external_id,
    )
    async with gateway.store.tx() as tx:
        return _link_out(await _link_or_404(tx, link_id))


@post(
    "/work-items/{item_id:str}/resync",
    summary="Re-read every linked object now and converge",
    tags=["work items"],
    description="Each linked object is fetched from its vendor and observed (as a poll would),"
    " then every link is compared with the canonical state and written where it differs.",
    responses=_errors(404),
    status_code=200,
)
async def resync_work_item(request: Request[Any, Any, Any], item_id: ItemId) -> ResyncResult:
    gateway = _gateway(request)
    async with gateway.store.tx() as tx:
        if await tx.get_item(item_id) is None:
            raise _not_found(f"no work item {item_id!r}")
        links = await tx.links_of(item_id)
    entries = await _resync_links(gateway, links)
    dirty = await _mark_for_write(gateway, item_id, None)
    _audit("work item resynced", work_item_id=item_id, dirty_links=dirty)
    return ResyncResult(item_id, entries, dirty)


@get(
    "/lookup",
    summary="Find the work item of a vendor object",
    tags=["work items"],
    description="``scope`` is optional: without it the object is matched in any scope of the"
    " system.",
    responses=_errors(400, 404),
)
async def lookup(
    request: Request[Any, Any, Any],
    system: Annotated[str, QueryParameter(description="System name")],
    external_id: Annotated[
        str, QueryParameter(description="The vendor's id of the object", min_length=1)
    ],
    object_scope: Annotated[
        str,
        QueryParameter(name="scope", description="DevHelm status page / incident.io incident"),
    ] = "",
) -> WorkItemDetail:
    gateway = _gateway(request)
    _check_system(gateway, system)
    async with gateway.store.tx() as tx:
        link = await tx.link_for(ObjectRef(system, object_scope, external_id))
        if link is None:
            raise _not_found(f"no work item is linked to {system} object {external_id!r}")
        return await _detail(tx, link.work_item_id)


# -- links ------------------------------------------------------------------------------------


@delete(
    "/links/{link_id:str}",
    summary="Unlink a vendor object from its work item",
    tags=["links"],
    description="The object itself is not touched. If it matches a creation rule, its next"
    " observation starts a new work item.",
    responses=_errors(404),
)
async def delete_link(request: Request[Any, Any, Any], link_id: LinkId) -> None:
    gateway = _gateway(request)
    lid = _parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await _link_or_404(tx, lid)
        await tx.unlink(lid)
        await tx.add_history(
            [
                HistoryEntry(
                    work_item_id=link.work_item_id,
                    kind="unlinked",
                    system=link.system,
                    event_id="admin",
                    detail=f"admin unlinked {link.system} {link.external_id}",
                    at=gateway.clock(),
                )
            ]
        )
    _audit("object unlinked", work_item_id=link.work_item_id, system=link.system, link_id=lid)


@post(
    "/links/{link_id:str}/relink",
    summary="Move a link to another work item",
    tags=["links"],
    description="The object is then written to hold the state of the work item it joined.",
    responses=_errors(400, 404),
    status_code=200,
)
async def relink(
    request: Request[Any, Any, Any], link_id: LinkId, data: JSONBody[RelinkIn]
) -> LinkOut:
    gateway = _gateway(request)
    lid = _parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await _link_or_404(tx, lid)
        target = await tx.get_item(data.work_item_id, lock=True)
        if target is None:
            raise _not_found(f"no work item {data.work_item_id!r}")
        if link.work_item_id != target.id:
            now = gateway.clock()
            await tx.move_link(lid, target.id, target.version)
            what = f"{link.system} {link.external_id}"
            await tx.add_history(
                [
                    HistoryEntry(
                        work_item_id=link.work_item_id,
                        kind="unlinked",
                        system=link.system,
                        event_id="admin",
                        detail=f"admin moved {what} to work item {target.id}",
                        at=now,
                    ),
                    HistoryEntry(
                        work_item_id=target.id,
                        kind="linked",
                        system=link.system,
                        event_id="admin",
                        detail=f"admin moved {what} from work item {link.work_item_id}",
                        at=now,
                    ),
                ]
            )
    if link.work_item_id != target.id:
        gateway.dispatcher.wake.set()
        _audit(
            "object relinked",
            work_item_id=target.id,
            system=link.system,
            link_id=lid,
            from_work_item_id=link.work_item_id,
        )
    async with gateway.store.tx() as tx:
        return _link_out(await _link_or_404(tx, lid))


@post(
    "/links/{link_id:str}/resync",
    summary="Re-read one linked object now and converge",
    tags=["links"],
    responses=_errors(404, 409, 502),
    status_code=200,
)
async def resync_link(request: Request[Any, Any, Any], link_id: LinkId) -> ResyncResult:
    gateway = _gateway(request)
    lid = _parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await _link_or_404(tx, lid)
    if link.ref is None:
        raise AdminError(409, "Not created yet", f"link {lid} has no vendor object yet")
    obj = await _fetch(gateway, link.ref)
    outcome = await gateway.engine.observe(obj, event_id="admin-resync")
    dirty = await _mark_for_write(gateway, link.work_item_id, [lid])
    _audit("link resynced", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    return ResyncResult(
        link.work_item_id,
        [ResyncEntry(link.id, link.system, link.external_id, outcome.kind)],
        sorted({*dirty, *outcome.dirty_links}),
    )


# -- outbox -----------------------------------------------------------------------------------


@get(
    "/outbox",
    summary="Writes by state: pending, failed (retrying) or dead",
    tags=["outbox"],
    responses=_errors(400),
)
async def list_outbox(
    request: Request[Any, Any, Any],
    write_state: Annotated[
        OutboxState, QueryParameter(name="state", description="pending | failed | dead")
    ] = OutboxState.PENDING,
    limit: Limit = 100,
    offset: Offset = 0,
) -> OutboxPage:
    async with _gateway(request).store.tx() as tx:
        links = await tx.outbox(str(write_state), limit=limit, offset=offset)
        entries = [await _outbox_entry(tx, link) for link in links]
    return OutboxPage(write_state, entries, limit, offset)


@post(
    "/outbox/retry-dead",
    summary="Retry every dead-lettered write now",
    tags=["outbox"],
    status_code=200,
)
async def retry_dead(request: Request[Any, Any, Any]) -> CountResult:
    gateway = _gateway(request)
    async with gateway.store.tx() as tx:
        count = await tx.revive()
        await tx.lift_deferral()
    gateway.dispatcher.wake.set()
    _audit("dead letters retried", count=count)
    return CountResult(count)


@post(
    "/outbox/discard-dead",
    summary="Give up on every dead-lettered write",
    tags=["outbox"],
    status_code=200,
)
async def discard_dead(request: Request[Any, Any, Any]) -> CountResult:
    gateway = _gateway(request)
    async with gateway.store.tx() as tx:
        count = await tx.discard()
    _audit("dead letters discarded", count=count)
    return CountResult(count)


@post(
    "/outbox/{link_id:str}/retry",
    summary="Retry one write now (dead or failed)",
    tags=["outbox"],
    responses=_errors(404, 409),
    status_code=200,
)
async def retry_write(request: Request[Any, Any, Any], link_id: LinkId) -> OutboxEntry:
    gateway = _gateway(request)
    lid = _parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await _link_or_404(tx, lid)
        if link.dead:
            await tx.revive(lid)
        elif link.dirty:
            await tx.admin_retry_now(lid)
        else:
            raise AdminError(409, "Nothing to retry", f"link {lid} has no pending write")
        await tx.lift_deferral(link.system)
        entry = await _outbox_entry(tx, await _link_or_404(tx, lid))
    gateway.dispatcher.wake.set()
    _audit("write retried", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    return entry


@post(
    "/outbox/{link_id:str}/discard",
    summary="Give up on one write (pending, failed or dead)",
    tags=["outbox"],
    responses=_errors(404, 409),
    status_code=200,
)
async def discard_write(request: Request[Any, Any, Any], link_id: LinkId) -> LinkOut:
    gateway = _gateway(request)
    lid = _parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await _link_or_404(tx, lid)
        if link.dead:
            await tx.discard(lid)
        elif link.dirty:
            await tx.admin_discard_write(lid)
        else:
            raise AdminError(409, "Nothing to discard", f"link {lid} has no pending write")
        await tx.add_history(
            [
                HistoryEntry(
                    work_item_id=link.work_item_id,
                    kind="write_discarded",
                    system=link.system,
                    event_id="admin",
                    detail=f"admin discarded the {_link_state(link)} write to {link.system}"
                    f" {link.external_id or '(not created)'}",
                    at=gateway.clock(),
                )
            ]
        )
        out = _link_out(await _link_or_404(tx, lid))
    _audit("write discarded", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    return out


# -- events -----------------------------------------------------------------------------------


@get(
    "/events",
    summary="The event log: webhooks received and polls, with their outcome",
    tags=["events"],
    responses=_errors(400),
    description="Newest first. Headers that carry credentials or signatures are never stored.",
)
async def list_events(
    request: Request[Any, Any, Any],
    system: SystemFilter = None,
    event_state: Annotated[
        EventState | None, QueryParameter(name="state", description="pending | done | failed")
    ] = None,
    source: Annotated[EventSource | None, QueryParameter(description="webhook | poll")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EventPage:
    gateway = _gateway(request)
    _check_system(gateway, system)
    async with gateway.store.tx() as tx:
        events = await tx.list_events(
            system=system,
            state=None if event_state is None else str(event_state),
            source=None if source is None else str(source),
            limit=limit,
            offset=offset,
        )
    return EventPage([_event_out(e) for e in events], limit, offset)


# -- systems ----------------------------------------------------------------------------------


async def _system_status(gateway: Gateway, tx: Tx, name: str) -> SystemStatus:
    state = await tx.system_state(name)
    depth = (await tx.queue_depth()).get(name, 0)
    dead = (await tx.admin_dead_by_system()).get(name, 0)
    settings = gateway.settings.systems[name]
    last = state["last_poll_at"]
    return SystemStatus(
        name=name,
        enabled=name in gateway.adapters,
        paused=bool(state["paused"]),
        poll_interval_s=settings.poll_interval_s,
        last_poll_at=last,
        lag_s=None if last is None else round((gateway.clock() - last).total_seconds(), 3),
        last_poll_error=state["last_poll_error"],
        last_write_error=state["last_write_error"],
        deferred_until=state["deferred_until"],
        queue_depth=depth,
        dead_letters=dead,
    )


@get("/systems", summary="Status of every configured system", tags=["systems"])
async def list_systems(request: Request[Any, Any, Any]) -> SystemsOverview:
    gateway = _gateway(request)
    async with gateway.store.tx() as tx:
        systems = [
            await _system_status(gateway, tx, name) for name in sorted(gateway.settings.systems)
        ]
        pending = await tx.pending_events()
        dead = await tx.dead_count()
    return SystemsOverview(systems, sum(s.queue_depth for s in systems), dead, pending)


async def _set_paused(request: Request[Any, Any, Any], name: str, paused: bool) -> SystemStatus:
    gateway = _gateway(request)
    _check_system(gateway, name, status=404)
    async with gateway.store.tx() as tx:
        await tx.set_system(name, paused=paused)
        if not paused:
            await tx.lift_deferral(name)
        status = await _system_status(gateway, tx, name)
    if not paused:
        gateway.dispatcher.wake.set()
        gateway.pollers.request(name)
    _audit("system paused" if paused else "system resumed", system=name)
    return status


@post(
    "/systems/{name:str}/pause",
    summary="Pause a system: no polls, its writes wait",
    tags=["systems"],
    responses=_errors(404),
    status_code=200,
)
async def pause_system(request: Request[Any, Any, Any], name: SystemName) -> SystemStatus:
    return await _set_paused(request, name, True)


@post(
    "/systems/{name:str}/resume",
    summary="Resume a paused system",
    tags=["systems"],
    responses=_errors(404),
    status_code=200,
)
async def resume_system(request: Request[Any, Any, Any], name: SystemName) -> SystemStatus:
    return await _set_paused(request, name, False)


# -- config -----------------------------------------------------------------------------------


@get("/config", summary="The effective configuration, secrets masked", tags=["config"])
async def get_config(request: Request[Any, Any, Any]) -> ConfigView:
    from app.config import dump_effective

    gateway = _gateway(request)
    return ConfigView(gateway.config_path, dump_effective(gateway.settings))


@post(
    "/config/reload",
    summary="Reload the configuration from its file",
    tags=["config"],
    description="An invalid file (or a secret missing from the environment) is refused with"
    " 422 listing every issue; the running configuration stays.",
    responses=_errors(409, 422),
    status_code=200,
)
async def reload_config(request: Request[Any, Any, Any]) -> ReloadResult:
    from app.asgi import known_systems
    from app.config import load_config, resolve_environment

    gateway = _gateway(request)
    path = gateway.config_path
    if path is None:
        raise AdminError(409, "No config file", "the gateway was not started from a config file")
    try:
        settings = load_config(path, known_systems())
        secrets = resolve_environment(settings, os.environ)
    except ConfigError as exc:
        log.warning("config reload refused", extra={"path": path, "issues": len(exc.issues)})
        raise AdminError(
            422,
            "Invalid configuration",
            f"{len(exc.issues)} problem(s) in {path}; the running configuration stays",
            issues=[ConfigIssueOut(i.file, i.line, i.key, i.message) for i in exc.issues],
        ) from None
    gateway.reload(settings, secrets)
    gateway.dispatcher.wake.set()
    _audit("config reloaded", path=path, systems=sorted(gateway.adapters))
    return ReloadResult(True, path, sorted(gateway.adapters))


ADMIN_ROUTES = [
    list_work_items,
    create_work_item,
    get_work_item,
    change_work_item,
    add_link,
    resync_work_item,
    lookup,
    delete_link,
    relink,
    resync_link,
    list_outbox,
    retry_dead,
    discard_dead,
    retry_write,
    discard_write,
    list_events,
    list_systems,
    pause_system,
    resume_system,
    get_config,
    reload_config,
]


def admin_router() -> Router:
    """The /admin API: every route behind the admin key, every error a problem."""
    return Router(
        "/admin",
        route_handlers=ADMIN_ROUTES,
        before_request=_authorize,
        exception_handlers={AdminError: _on_admin_error, HTTPException: _on_http_exception},
        tags=["admin"],
        security=[{"AdminKey": []}, {"AdminBearer": []}],
    )


def admin_handlers() -> list[Any]:
    return [healthz, readyz, metrics, admin_router()]
