"""Work items: the searchable list, one work item's page, and the operator's changes to it
(the same engine calls as ``/admin/work-items`` and ``/admin/links``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, post
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from app.errors import Invalid, StateConflict
from app.gateway import Gateway
from app.http.admin.common import audit, check_system
from app.http.admin.models import change_values, form_change, item_detail
from app.http.context import gateway_of
from app.http.problems import AdminError
from app.http.ui.common import PAGE_SIZE, act, audit_link, form_of, page, render
from app.http.ui.session import PATH
from app.model import Fields, ObjectRef, Priority, Status, given_utc
from app.store import Link, unsearchable

STATUSES = [s.value for s in Status]
PRIORITIES = [p.value for p in Priority]

ItemPath = Annotated[str, PathParameter(description="Work item id")]
LinkPath = Annotated[int, PathParameter(description="Link id")]


def object_url(gateway: Gateway, system: str, scope: str, external_id: str | None) -> str | None:
    """The object's page in its vendor's UI, from the system's ``ui_url``."""
    settings = gateway.settings.systems.get(system)
    if settings is None or not settings.ui_url or external_id is None:
        return None
    return settings.ui_url.format(external_id=external_id, scope=scope)


def badge(link: Link) -> dict[str, Any]:
    """A link as the list shows it: system, vendor status, in step or not."""
    vendor_status = None
    if link.known is not None:
        vendor_status = link.known.native.get("status") or str(link.known.fields.status)
    return {"system": link.system, "status": vendor_status, "state": link.state}


@page("/items")
async def items_page(request: Request[Any, Any, Any]) -> Template:
    gateway = gateway_of(request)
    params = request.query_params
    query = {
        "q": params.get("q", "").strip(),
        "status": params.get("status", ""),
        "system": params.get("system", ""),
    }
    notice = None
    if query["status"] and query["status"] not in STATUSES:
        notice, query["status"] = f"unknown status {query['status']!r}: not filtered", ""
    if query["system"] and query["system"] not in gateway.settings.systems:
        notice, query["system"] = f"unknown system {query['system']!r}: not filtered", ""
    if reason := unsearchable(query["q"]):
        notice, query["q"] = f"{reason}: not searched", ""
    try:
        after = _after(params.get("after"))
    except Invalid as exc:
        notice, after = f"{exc.message}: the newest page shown", None
    async with gateway.store.tx() as tx:
        items = await tx.page_items(
            status=query["status"] or None,
            system=query["system"] or None,
            text=query["q"] or None,
            limit=PAGE_SIZE + 1,
            after=after,
        )
        more = len(items) > PAGE_SIZE
        items = items[:PAGE_SIZE]
        links = await tx.links_of_items(item.id for item in items)
    badges: dict[str, list[dict[str, Any]]] = {item.id: [] for item in items}
    for link in links:
        badges[link.work_item_id].append(badge(link))
    filters = {k: v for k, v in query.items() if v}
    older = None
    if more:
        last = items[-1]
        older = "?" + urlencode(filters | {"after": f"{last.updated_at.isoformat()}~{last.id}"})
    context = {
        "items": items,
        "badges": badges,
        "first_page": after is None,
        "newest": "?" + urlencode(filters),
        "older": older,
        "filters": query,
        "statuses": STATUSES,
        "systems": sorted(gateway.settings.systems),
        "notice": notice,
        "title": "Work items",
    }
    return render(request, "items.html", context, fragment="items_live.html")


def _after(raw: str | None) -> tuple[datetime, str] | None:
    """The keyset of the page before: ``<updated_at ISO>~<item id>`` (None: the first
    page); ``Invalid`` for anything else."""
    if not raw:
        return None
    at, _, item_id = raw.rpartition("~")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise Invalid(f"after: {raw!r} is not <time>~<item id>") from None
    return given_utc(when, "after"), item_id


@page("/items/{item_id:str}")
async def item_page(request: Request[Any, Any, Any], item_id: ItemPath) -> Template:
    gateway = gateway_of(request)
    async with gateway.store.tx() as tx:
        detail = await item_detail(tx, item_id, 200)
    urls = {
        link.id: object_url(gateway, link.system, link.scope, link.external_id)
        for link in detail.links
    }
    context = {
        "d": detail,
        "urls": urls,
        "statuses": STATUSES,
        "priorities": PRIORITIES,
        "systems": sorted(gateway.settings.systems),
        "title": detail.item.title,
    }
    return render(request, "item.html", context, fragment="item_live.html")


# -- actions: each one engine or dispatcher call, as the admin API makes it --------------------


def _item_url(item_id: str) -> str:
    return f"{PATH}/items/{item_id}"


@post("/items/{item_id:str}/change", include_in_schema=False)
async def change_item(request: Request[Any, Any, Any], item_id: ItemPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        # the whole form, as PATCH /admin/work-items takes it (what is filled in, read by
        # that body's own rules: nothing the API refuses); the engine leaves alone what
        # already holds the value
        given: dict[str, Any] = {n: form[n] for n in ("title", "status", "priority") if form.get(n)}
        if "assignee" in form:
            given["assignee"] = form["assignee"] or None
        values = change_values(form_change(given))
        if not values:
            raise Invalid("nothing to change: the form names no field")
        outcome = await gateway.engine.change(item_id, Fields(**values), source="console")
        if not outcome.changed:
            return "Nothing changed: the work item holds these values already."
        audit(
            "work item changed",
            via="console",
            work_item_id=item_id,
            fields=list(outcome.changed),
            dirty_links=list(outcome.dirty_links),
        )
        changed = ", ".join(outcome.changed) or "nothing"
        return f"Changed {changed}; {len(outcome.dirty_links)} write(s) queued."

    return await act(_item_url(item_id), run, failed="Change refused")


@post("/items/{item_id:str}/resync", include_in_schema=False)
async def resync_item(request: Request[Any, Any, Any], item_id: ItemPath) -> Redirect:
    gateway = gateway_of(request)

    async def run() -> str:
        outcomes, dirty = await gateway.engine.resync(item_id)
        audit("work item resynced", via="console", work_item_id=item_id, dirty_links=dirty)
        read = ", ".join(f"{o.system}: {o.outcome}" for o in outcomes)
        return f"Re-read {read}; {len(dirty)} write(s) queued."

    return await act(_item_url(item_id), run, failed="Resync failed")


@post("/items/{item_id:str}/link", include_in_schema=False)
async def link_object(request: Request[Any, Any, Any], item_id: ItemPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        system, external_id = form.get("system", ""), form.get("external_id", "")
        if not external_id:
            raise Invalid("the object's id is required")
        try:
            check_system(gateway, system, status=422)
        except AdminError as exc:
            raise Invalid(exc.detail) from None
        async with gateway.store.tx() as tx:
            await tx.require_item(item_id)
        obj = await gateway.engine.fetch(ObjectRef(system, form.get("scope", ""), external_id))
        (link_id,) = await gateway.engine.link(item_id, [obj], source="console")
        audit(
            "object linked",
            via="console",
            work_item_id=item_id,
            system=system,
            link_id=link_id,
            external_id=external_id,
        )
        return f"Linked {system} object {external_id}."

    return await act(_item_url(item_id), run, failed="Link refused")


@post("/links/{link_id:int}/unlink", include_in_schema=False)
async def unlink_object(request: Request[Any, Any, Any], link_id: LinkPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        link = await gateway.engine.unlink(link_id, source="console")
        audit_link("object unlinked", link)
        return f"Unlinked {link.system} object {link.external_id or '(not created)'}."

    return await act(form.get("back", ""), run, failed="Unlink refused")


@post("/links/relink", include_in_schema=False)
async def relink_object(request: Request[Any, Any, Any]) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)
    target = form.get("work_item_id", "")
    raw = form.get("link", "")

    async def run() -> str:
        if not target:
            raise Invalid("the work item to move the object to is required")
        if not raw.isdigit():
            raise Invalid(f"a link id is a positive integer, got {raw!r}")
        link_id = int(raw)
        before = await gateway.engine.relink(link_id, target, source="console")
        audit(
            "object relinked",
            via="console",
            work_item_id=target,
            system=before.system,
            link_id=link_id,
            from_work_item_id=before.work_item_id,
        )
        return f"Moved the {before.system} object to work item {target}."

    return await act(form.get("back", ""), run, failed="Relink refused")


@post("/links/{link_id:int}/resync", include_in_schema=False)
async def resync_link(request: Request[Any, Any, Any], link_id: LinkPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        async with gateway.store.tx() as tx:
            link = await tx.require_link(link_id)
        if link.ref is None:
            raise StateConflict(f"link {link_id} has no vendor object yet")
        await gateway.engine.fetch(link.ref)
        outcomes, dirty = await gateway.engine.resync(link.work_item_id, [link_id])
        audit_link("link resynced", link)
        read = ", ".join(f"{o.system}: {o.outcome}" for o in outcomes)
        return f"Re-read {read}; {len(dirty)} write(s) queued."

    return await act(form.get("back", ""), run, failed="Resync failed")
