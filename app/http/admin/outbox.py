"""``/admin/outbox`` and ``/admin/events``: writes waiting, failed and dead (retry,
discard), and the event log."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.openapi.spec import Example
from litestar.params import QueryParameter

from app.http.admin.common import (
    EventId,
    Limit,
    LinkId,
    Offset,
    SystemFilter,
    audit,
    check_system,
    parse_link_id,
)
from app.http.admin.models import (
    CountResult,
    EventOut,
    EventPage,
    EventSource,
    EventState,
    LinkOut,
    OutboxEntry,
    OutboxPage,
    OutboxState,
    RejectionOut,
    RejectionPage,
    event_out,
    link_out,
    outbox_entry,
)
from app.http.context import gateway_of
from app.http.problems import errors

log = logging.getLogger("syncgate.admin")


# -- outbox -----------------------------------------------------------------------------------


@get(
    "/outbox",
    summary="Writes by state: pending, failed (retrying), dead or waiting (a create not tried yet)",
    tags=["outbox"],
    responses=errors(400, 422),
)
async def list_outbox(
    request: Request[Any, Any, Any],
    write_state: Annotated[
        OutboxState,
        QueryParameter(
            name="state",
            description="pending | failed | dead | waiting",
            examples=[Example(value="dead")],
        ),
    ] = OutboxState.PENDING,
    system: SystemFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> OutboxPage:
    gateway = gateway_of(request)
    check_system(gateway, system, removed=True)
    async with gateway.store.tx() as tx:
        links = await tx.outbox(str(write_state), limit=limit, offset=offset, system=system)
        entries = [await outbox_entry(tx, link) for link in links]
    return OutboxPage(write_state, entries, limit, offset)


@post(
    "/outbox/retry-dead",
    summary="Retry every dead-lettered write now (of one system, with ``system``)",
    tags=["outbox"],
    responses=errors(400, 422),
    status_code=200,
)
async def retry_dead(request: Request[Any, Any, Any], system: SystemFilter = None) -> CountResult:
    gateway = gateway_of(request)
    check_system(gateway, system, removed=True)
    count = await gateway.dispatcher.retry_dead(system)
    audit("dead letters retried", count=count, system=system)
    return CountResult(count)


@post(
    "/outbox/discard-dead",
    summary="Give up on every dead-lettered write (of one system, with ``system``)",
    tags=["outbox"],
    responses=errors(400, 422),
    status_code=200,
)
async def discard_dead(request: Request[Any, Any, Any], system: SystemFilter = None) -> CountResult:
    gateway = gateway_of(request)
    check_system(gateway, system, removed=True)
    count = await gateway.dispatcher.discard_dead(system)
    audit("dead letters discarded", count=count, system=system)
    return CountResult(count)


@post(
    "/outbox/{link_id:str}/retry",
    summary="Retry one write now (dead or failed)",
    tags=["outbox"],
    responses=errors(400, 404, 409),
    status_code=200,
)
async def retry_write(request: Request[Any, Any, Any], link_id: LinkId) -> OutboxEntry:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    link = await gateway.dispatcher.retry(lid)
    audit("write retried", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    async with gateway.store.tx() as tx:
        return await outbox_entry(tx, await tx.require_link(lid))


@post(
    "/outbox/{link_id:str}/discard",
    summary="Give up on one write (pending, failed or dead)",
    tags=["outbox"],
    responses=errors(400, 404, 409),
    status_code=200,
)
async def discard_write(request: Request[Any, Any, Any], link_id: LinkId) -> LinkOut:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    link = await gateway.dispatcher.discard(lid)
    audit("write discarded", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    async with gateway.store.tx() as tx:
        return link_out(await tx.require_link(lid))


# -- events -----------------------------------------------------------------------------------


@get(
    "/events",
    summary="The event log: webhooks received and polls, with their outcome",
    tags=["events"],
    responses=errors(400, 422),
    description="Newest first. Only the headers the system's adapter reads are stored and shown.",
)
async def list_events(
    request: Request[Any, Any, Any],
    system: SystemFilter = None,
    event_state: Annotated[
        EventState | None,
        QueryParameter(
            name="state", description="pending | done | failed", examples=[Example(value="failed")]
        ),
    ] = None,
    source: Annotated[
        EventSource | None,
        QueryParameter(description="webhook | poll", examples=[Example(value="webhook")]),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EventPage:
    gateway = gateway_of(request)
    check_system(gateway, system, removed=True)
    async with gateway.store.tx() as tx:
        events = await tx.list_events(
            system=system,
            state=None if event_state is None else str(event_state),
            source=None if source is None else str(source),
            limit=limit,
            offset=offset,
        )
    adapters = gateway.adapters
    return EventPage(
        [
            event_out(e, adapters[e.system].stored_headers if e.system in adapters else frozenset())
            for e in events
        ],
        limit,
        offset,
    )


@post(
    "/events/{event_id:str}/retry",
    summary="Process a failed event again",
    tags=["events"],
    description="An event the inbox gave up on (state failed: its vendor could not be read"
    " for a day, or its processing kept crashing) is made pending and due now, with its"
    " tries counted from zero. 409 for an event that is not failed.",
    responses=errors(400, 404, 409),
    status_code=200,
)
async def retry_event(request: Request[Any, Any, Any], event_id: EventId) -> EventOut:
    gateway = gateway_of(request)
    eid = int(event_id)  # EventId's pattern admits 1 to 18 ASCII digits only (else 400)
    event = await gateway.worker.retry_failed(eid)
    audit("event retried", system=event.system, event_id=eid)
    adapter = gateway.adapters.get(event.system)
    return event_out(event, adapter.stored_headers if adapter is not None else frozenset())


@get(
    "/events/rejected",
    summary="Webhook deliveries refused before they were stored, and why",
    tags=["events"],
    description="The last 100 this gateway process refused (bad signature, unreadable body,"
    " too large, unknown system), newest first. Kept in memory only: a refused delivery"
    " changes nothing in the database.",
    responses=errors(),
)
async def list_rejections(request: Request[Any, Any, Any]) -> RejectionPage:
    recent = gateway_of(request).rejections.recent()
    return RejectionPage(
        [RejectionOut(r.at, r.system, r.status, r.reason) for r in reversed(recent)]
    )
