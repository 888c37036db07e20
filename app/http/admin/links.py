"""``/admin/links``: unlink, relink, resync one link."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, delete, post
from litestar.params import JSONBody

from app.errors import StateConflict
from app.http.admin.common import (
    LinkId,
    audit,
    parse_link_id,
)
from app.http.admin.models import LinkOut, RelinkIn, ResyncResult, link_out, resync_entry
from app.http.context import gateway_of
from app.http.problems import errors

log = logging.getLogger("syncgate.admin")


# -- links ------------------------------------------------------------------------------------


@delete(
    "/links/{link_id:str}",
    summary="Unlink a vendor object from its work item",
    tags=["links"],
    description="The object itself is not touched. If it matches a creation rule, its next"
    " observation starts a new work item.",
    responses=errors(400, 404, 409),
)
async def delete_link(request: Request[Any, Any, Any], link_id: LinkId) -> None:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    link = await gateway.engine.unlink(lid)
    audit("object unlinked", work_item_id=link.work_item_id, system=link.system, link_id=lid)


@post(
    "/links/{link_id:str}/relink",
    summary="Move a link to another work item",
    tags=["links"],
    description="The object is then written to hold the state of the work item it joined.",
    responses=errors(400, 404),
    status_code=200,
)
async def relink(
    request: Request[Any, Any, Any], link_id: LinkId, data: JSONBody[RelinkIn]
) -> LinkOut:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    before = await gateway.engine.relink(lid, data.work_item_id)
    if before.work_item_id != data.work_item_id:
        audit(
            "object relinked",
            work_item_id=data.work_item_id,
            system=before.system,
            link_id=lid,
            from_work_item_id=before.work_item_id,
        )
    async with gateway.store.tx() as tx:
        link = await tx.require_link(lid)
    return link_out(link)


@post(
    "/links/{link_id:str}/resync",
    summary="Re-read one linked object now and converge",
    tags=["links"],
    responses=errors(400, 404, 409, 502),
    status_code=200,
)
async def resync_link(request: Request[Any, Any, Any], link_id: LinkId) -> ResyncResult:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await tx.require_link(lid)
    if link.ref is None:
        raise StateConflict(f"link {lid} has no vendor object yet")
    await gateway.engine.fetch(link.ref)  # 404 or 502 when the vendor cannot give it
    outcomes, dirty = await gateway.engine.resync(link.work_item_id, [lid])
    audit("link resynced", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    return ResyncResult(link.work_item_id, [resync_entry(o) for o in outcomes], dirty)
