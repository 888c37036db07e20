"""``/admin/work-items`` and ``/admin/lookup``: list, read, create, change, link, resync."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Request, get, patch, post
from litestar.openapi.spec import Example
from litestar.params import JSONBody, QueryParameter

from app.errors import Invalid, Missing
from app.http.admin.common import ItemId, Limit, Offset, SystemFilter, audit, check_system
from app.http.admin.models import (
    ChangeResult,
    ChangeWorkItemIn,
    CreateWorkItemIn,
    LinkIn,
    LinkOut,
    ResyncResult,
    WorkItemDetail,
    WorkItemPage,
    change_values,
    item_detail,
    item_out,
    link_out,
    resync_entry,
)
from app.http.context import gateway_of
from app.http.problems import errors
from app.model import Fields, ObjectRef, Status

log = logging.getLogger("syncgate.admin")


# -- work items -------------------------------------------------------------------------------


@get(
    "/work-items",
    summary="List and search work items",
    tags=["work items"],
    description="Newest first. ``text`` searches title and description (case-insensitive);"
    " ``system`` keeps items linked to an object of that system.",
    responses=errors(400, 422),
)
async def list_work_items(
    request: Request[Any, Any, Any],
    status: Annotated[
        Status | None,
        QueryParameter(description="Canonical status", examples=[Example(value="open")]),
    ] = None,
    system: SystemFilter = None,
    text: Annotated[
        str | None,
        QueryParameter(
            description="Words in the title or description", examples=[Example(value="checkout")]
        ),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> WorkItemPage:
    gateway = gateway_of(request)
    check_system(gateway, system)
    async with gateway.store.tx() as tx:
        items, total = await tx.search_items(
            status=None if status is None else str(status),
            system=system,
            text=text,
            limit=limit,
            offset=offset,
        )
    return WorkItemPage([item_out(i) for i in items], total, limit, offset)


@post(
    "/work-items",
    summary="Create a work item and link existing vendor objects to it",
    tags=["work items"],
    description="Each linked object is read from its vendor first (404 if it does not exist,"
    " 502 if the vendor fails; nothing is created then). An object linked to another work"
    " item is refused with 409. The linked objects are then written to hold the new item's"
    " state (only what differs).",
    responses=errors(400, 404, 409, 422, 502),
)
async def create_work_item(
    request: Request[Any, Any, Any], data: JSONBody[CreateWorkItemIn]
) -> WorkItemDetail:
    gateway = gateway_of(request)
    refs = [ObjectRef(link.system, link.scope, link.external_id) for link in data.links]
    for ref in refs:
        check_system(gateway, ref.system)
    if len(set(refs)) != len(refs):
        raise Invalid("the same vendor object is listed twice")
    objects = [await gateway.engine.fetch(ref) for ref in refs]
    fields = Fields(
        title=data.title, description=data.description, status=data.status, priority=data.priority
    )
    item_id = await gateway.engine.create_item(fields, objects)
    audit("work item created", work_item_id=item_id, systems=[r.system for r in refs])
    async with gateway.store.tx() as tx:
        return await item_detail(tx, item_id)


@get(
    "/work-items/{item_id:str}",
    summary="One work item with its links, history and pending writes",
    tags=["work items"],
    responses=errors(400, 404),
)
async def get_work_item(
    request: Request[Any, Any, Any],
    item_id: ItemId,
    history: Annotated[
        int,
        QueryParameter(
            ge=1, le=1000, description="Most recent history entries", examples=[Example(value=100)]
        ),
    ] = 100,
) -> WorkItemDetail:
    async with gateway_of(request).store.tx() as tx:
        return await item_detail(tx, item_id, history)


@patch(
    "/work-items/{item_id:str}",
    summary="Change a work item (it propagates like any change)",
    tags=["work items"],
    description="The operator's values win over the current ones and are written to every"
    " linked object that carries the field.",
    responses=errors(400, 404, 422),
)
async def change_work_item(
    request: Request[Any, Any, Any], item_id: ItemId, data: JSONBody[ChangeWorkItemIn]
) -> ChangeResult:
    gateway = gateway_of(request)
    values = change_values(data)
    if not values:
        raise Invalid("nothing to change: the body names no field")
    outcome = await gateway.engine.change(item_id, Fields(**values), source="admin")
    if outcome.changed:
        audit(
            "work item changed",
            work_item_id=item_id,
            fields=list(outcome.changed),
            dirty_links=list(outcome.dirty_links),
        )
    async with gateway.store.tx() as tx:
        item = await tx.get_item(item_id)
    assert item is not None
    return ChangeResult(item_out(item), list(outcome.changed), list(outcome.dirty_links))


@post(
    "/work-items/{item_id:str}/links",
    summary="Link an existing vendor object to a work item",
    tags=["links"],
    responses=errors(400, 404, 409, 422, 502),
)
async def add_link(
    request: Request[Any, Any, Any], item_id: ItemId, data: JSONBody[LinkIn]
) -> LinkOut:
    gateway = gateway_of(request)
    check_system(gateway, data.system)
    async with gateway.store.tx() as tx:
        await tx.require_item(item_id)
    obj = await gateway.engine.fetch(ObjectRef(data.system, data.scope, data.external_id))
    (link_id,) = await gateway.engine.link(item_id, [obj])
    audit(
        "object linked",
        work_item_id=item_id,
        system=data.system,
        link_id=link_id,
        external_id=obj.ref.external_id,
    )
    async with gateway.store.tx() as tx:
        return link_out(await tx.require_link(link_id))


@post(
    "/work-items/{item_id:str}/resync",
    summary="Re-read every linked object now and converge",
    tags=["work items"],
    description="Each linked object is fetched from its vendor and observed (as a poll would),"
    " then every link is compared with the canonical state and written where it differs.",
    responses=errors(400, 404),
    status_code=200,
)
async def resync_work_item(request: Request[Any, Any, Any], item_id: ItemId) -> ResyncResult:
    gateway = gateway_of(request)
    outcomes, dirty = await gateway.engine.resync(item_id)
    audit("work item resynced", work_item_id=item_id, dirty_links=dirty)
    return ResyncResult(item_id, [resync_entry(o) for o in outcomes], dirty)


@get(
    "/lookup",
    summary="Find the work item of a vendor object",
    tags=["work items"],
    description="``scope`` is optional: without it the object is matched in any scope of the"
    " system.",
    responses=errors(400, 404, 422),
)
async def lookup(
    request: Request[Any, Any, Any],
    system: Annotated[
        str, QueryParameter(description="System name", examples=[Example(value="inboxops")])
    ],
    external_id: Annotated[
        str,
        QueryParameter(
            description="The vendor's id of the object",
            min_length=1,
            examples=[Example(value="T-1042")],
        ),
    ],
    object_scope: Annotated[
        str,
        QueryParameter(
            name="scope",
            description="DevHelm status page / incident.io incident (optional)",
            examples=[Example(value="")],
        ),
    ] = "",
) -> WorkItemDetail:
    gateway = gateway_of(request)
    check_system(gateway, system)
    async with gateway.store.tx() as tx:
        link = await tx.link_for(ObjectRef(system, object_scope, external_id))
        if link is None:
            raise Missing(f"no work item is linked to {system} object {external_id!r}")
        return await item_detail(tx, link.work_item_id)
