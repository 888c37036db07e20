"""``/admin/outbox`` and ``/admin/events``: writes waiting, failed and dead (retry,
discard), and the event log."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import QueryParameter

from app.http.admin.common import (
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
    EventPage,
    EventSource,
    EventState,
    LinkOut,
    OutboxEntry,
    OutboxPage,
    OutboxState,
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
    summary="Writes by state: pending, failed (retrying) or dead",
    tags=["outbox"],
    responses=errors(400),
)
async def list_outbox(
    request: Request[Any, Any, Any],
    write_state: Annotated[
        OutboxState, QueryParameter(name="state", description="pending | failed | dead")
    ] = OutboxState.PENDING,
    limit: Limit = 100,
    offset: Offset = 0,
) -> OutboxPage:
    async with gateway_of(request).store.tx() as tx:
        links = await tx.outbox(str(write_state), limit=limit, offset=offset)
        entries = [await outbox_entry(tx, link) for link in links]
    return OutboxPage(write_state, entries, limit, offset)


@post(
    "/outbox/retry-dead",
    summary="Retry every dead-lettered write now",
    tags=["outbox"],
    status_code=200,
)
async def retry_dead(request: Request[Any, Any, Any]) -> CountResult:
    count = await gateway_of(request).dispatcher.retry_dead()
    audit("dead letters retried", count=count)
    return CountResult(count)


@post(
    "/outbox/discard-dead",
    summary="Give up on every dead-lettered write",
    tags=["outbox"],
    status_code=200,
)
async def discard_dead(request: Request[Any, Any, Any]) -> CountResult:
    count = await gateway_of(request).dispatcher.discard_dead()
    audit("dead letters discarded", count=count)
    return CountResult(count)


@post(
    "/outbox/{link_id:str}/retry",
    summary="Retry one write now (dead or failed)",
    tags=["outbox"],
    responses=errors(404, 409),
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
    responses=errors(404, 409),
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
    responses=errors(400),
    description="Newest first. Only the headers the system's adapter reads are stored and shown.",
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
    gateway = gateway_of(request)
    check_system(gateway, system)
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
