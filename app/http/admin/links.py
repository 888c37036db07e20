"""``/admin/links``: unlink, relink, resync one link."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, delete, post
from litestar.params import JSONBody

from app.http.admin.common import (
    LinkId,
    audit,
    fetch_object,
    link_or_404,
    mark_for_write,
    parse_link_id,
)
from app.http.admin.models import LinkOut, RelinkIn, ResyncEntry, ResyncResult, link_out
from app.http.context import gateway_of
from app.http.problems import AdminError, errors, not_found
from app.store import HistoryEntry

log = logging.getLogger("syncgate.admin")


# -- links ------------------------------------------------------------------------------------


@delete(
    "/links/{link_id:str}",
    summary="Unlink a vendor object from its work item",
    tags=["links"],
    description="The object itself is not touched. If it matches a creation rule, its next"
    " observation starts a new work item.",
    responses=errors(404),
)
async def delete_link(request: Request[Any, Any, Any], link_id: LinkId) -> None:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await link_or_404(tx, lid)
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
    async with gateway.store.tx() as tx:
        link = await link_or_404(tx, lid)
        target = await tx.get_item(data.work_item_id, lock=True)
        if target is None:
            raise not_found(f"no work item {data.work_item_id!r}")
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
        audit(
            "object relinked",
            work_item_id=target.id,
            system=link.system,
            link_id=lid,
            from_work_item_id=link.work_item_id,
        )
    async with gateway.store.tx() as tx:
        return link_out(await link_or_404(tx, lid))


@post(
    "/links/{link_id:str}/resync",
    summary="Re-read one linked object now and converge",
    tags=["links"],
    responses=errors(404, 409, 502),
    status_code=200,
)
async def resync_link(request: Request[Any, Any, Any], link_id: LinkId) -> ResyncResult:
    gateway = gateway_of(request)
    lid = parse_link_id(link_id)
    async with gateway.store.tx() as tx:
        link = await link_or_404(tx, lid)
    if link.ref is None:
        raise AdminError(409, "Not created yet", f"link {lid} has no vendor object yet")
    obj = await fetch_object(gateway, link.ref)
    outcome = await gateway.engine.observe(obj, event_id="admin-resync")
    dirty = await mark_for_write(gateway, link.work_item_id, [lid])
    audit("link resynced", work_item_id=link.work_item_id, system=link.system, link_id=lid)
    return ResyncResult(
        link.work_item_id,
        [ResyncEntry(link.id, link.system, link.external_id, outcome.kind)],
        sorted({*dirty, *outcome.dirty_links}),
    )
