"""The outbox (writes pending, failed and dead: retry, discard, in bulk per system after a
preview), the systems (pause, resume) and the event log (retry a failed event): the
dispatcher's, the gateway's, the inbox's and the store's calls the admin API makes."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, post
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from app.errors import Invalid, Missing
from app.http.admin.common import audit
from app.http.admin.models import outbox_entry
from app.http.admin.systems import system_status
from app.http.context import gateway_of
from app.http.ui.common import PAGE_SIZE, act, audit_link, form_of, page, page_links, render
from app.http.ui.session import PATH

OUTBOX_STATES = ("pending", "failed", "dead", "waiting")
EVENT_STATES = ("pending", "done", "failed")
EVENT_SOURCES = ("webhook", "poll")

LinkPath = Annotated[int, PathParameter(description="Link id")]
SystemPath = Annotated[str, PathParameter(description="System name")]
EventPath = Annotated[int, PathParameter(description="Event id")]


#: The last page a list goes to.
LAST_PAGE = 99_999


def _page(raw: str | None, notices: list[str]) -> int:
    """The page asked for; the first, with a notice, for one that is not a page number
    (ASCII digits only: ``isdigit`` also takes "¹", which ``int`` refuses)."""
    if not raw:
        return 1
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(LAST_PAGE)) and int(raw) > 0:
        return int(raw)
    shown = raw if len(raw) <= 20 else raw[:20] + "..."
    notices.append(f"page {shown!r} is not a page number (1-{LAST_PAGE}): the first page shown")
    return 1


def _choice(
    raw: str | None,
    allowed: tuple[str, ...] | list[str],
    notices: list[str],
    name: str,
    default: str = "",
) -> str:
    """The value asked for, or ``default``, with a notice for one that is not allowed
    (as the work items' list says of an unknown status or system)."""
    if not raw:
        return default
    if raw in allowed:
        return raw
    notices.append(f"unknown {name} {raw!r}: not filtered")
    return default


# -- outbox -----------------------------------------------------------------------------------


@page("/outbox")
async def outbox_page(request: Request[Any, Any, Any]) -> Template:
    gateway = gateway_of(request)
    systems = sorted(gateway.settings.systems)
    params = request.query_params
    notices: list[str] = []
    query = {
        "state": _choice(params.get("state"), OUTBOX_STATES, notices, "state", "dead"),
        "system": _choice(params.get("system"), systems, notices, "system"),
    }
    page = _page(params.get("page"), notices)
    async with gateway.store.tx() as tx:
        links = await tx.outbox(
            query["state"],
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
            system=query["system"] or None,
        )
        entries = [await outbox_entry(tx, link, 3) for link in links[:PAGE_SIZE]]
        dead = await tx.dead_by_system()
        depth = await tx.queue_depth()
    context = {
        "entries": entries,
        "filters": query,
        "states": OUTBOX_STATES,
        "systems": systems,
        "dead": dead,
        "depth": depth,
        "page": page,
        "pages": page_links(query, page, len(links) > PAGE_SIZE),
        "notice": "; ".join(notices),
        "title": "Outbox",
    }
    return render(request, "outbox.html", context, fragment="outbox_live.html")


def _outbox_url(form: dict[str, str]) -> str:
    return form.get("back", "") or f"{PATH}/outbox"


@post("/outbox/{link_id:int}/retry", include_in_schema=False)
async def retry_write(request: Request[Any, Any, Any], link_id: LinkPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        link = await gateway.dispatcher.retry(link_id)
        audit_link("write retried", link)
        return f"Retrying the {link.state} write to {link.system} now."

    return await act(_outbox_url(form), run, failed="Retry refused")


@post("/outbox/{link_id:int}/discard", include_in_schema=False)
async def discard_write(request: Request[Any, Any, Any], link_id: LinkPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        link = await gateway.dispatcher.discard(link_id, source="console")
        audit_link("write discarded", link)
        return f"Discarded the {link.state} write to {link.system}."

    return await act(_outbox_url(form), run, failed="Discard refused")


@page("/outbox/bulk")
async def bulk_preview(request: Request[Any, Any, Any]) -> Template:
    """How many dead writes of a system a bulk retry or discard would touch, and the
    button that does it."""
    gateway = gateway_of(request)
    action = "discard" if request.query_params.get("action") == "discard" else "retry"
    system = request.query_params.get("system", "")
    if system not in gateway.settings.systems:
        raise Missing(f"no system named {system!r}")
    async with gateway.store.tx() as tx:
        count = (await tx.dead_by_system()).get(system, 0)
    context = {"action": action, "system": system, "count": count, "title": "Confirm"}
    return render(request, "bulk.html", context)


@post("/outbox/bulk", include_in_schema=False)
async def bulk_run(request: Request[Any, Any, Any]) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)
    action, system = form.get("action", ""), form.get("system", "")
    back = f"{PATH}/outbox?state=dead&system={system}"

    async def run() -> str:
        if system not in gateway.settings.systems:
            raise Invalid(f"no system named {system!r}")
        if action == "retry":
            count = await gateway.dispatcher.retry_dead(system)
            audit("dead letters retried", via="console", count=count, system=system)
            return f"Retrying {count} dead write(s) to {system}."
        if action == "discard":
            count = await gateway.dispatcher.discard_dead(system)
            audit("dead letters discarded", via="console", count=count, system=system)
            return f"Discarded {count} dead write(s) to {system}."
        raise Invalid(f"unknown action {action!r}")

    return await act(back, run, failed="Bulk action refused")


# -- systems ----------------------------------------------------------------------------------


@page("/systems")
async def systems_page(request: Request[Any, Any, Any]) -> Template:
    gateway = gateway_of(request)
    async with gateway.store.tx() as tx:
        systems = [
            await system_status(gateway, tx, name) for name in sorted(gateway.settings.systems)
        ]
        pending = await tx.pending_events()
    context = {"systems": systems, "pending_events": pending, "title": "Systems"}
    return render(request, "systems.html", context, fragment="systems_live.html")


async def _set_paused(request: Request[Any, Any, Any], name: str, paused: bool) -> Redirect:
    gateway = gateway_of(request)

    async def run() -> str:
        if name not in gateway.settings.systems:
            raise Missing(f"no system named {name!r}")
        await gateway.set_paused(name, paused)
        audit("system paused" if paused else "system resumed", via="console", system=name)
        return f"{name} {'paused: no polls, its writes wait' if paused else 'resumed'}."

    return await act(f"{PATH}/systems", run, failed="Refused")


@post("/systems/{name:str}/pause", include_in_schema=False)
async def pause_system(request: Request[Any, Any, Any], name: SystemPath) -> Redirect:
    return await _set_paused(request, name, True)


@post("/systems/{name:str}/resume", include_in_schema=False)
async def resume_system(request: Request[Any, Any, Any], name: SystemPath) -> Redirect:
    return await _set_paused(request, name, False)


# -- events -----------------------------------------------------------------------------------


@page("/events")
async def events_page(request: Request[Any, Any, Any]) -> Template:
    gateway = gateway_of(request)
    systems = sorted(gateway.settings.systems)
    params = request.query_params
    notices: list[str] = []
    query = {
        "system": _choice(params.get("system"), systems, notices, "system"),
        "state": _choice(params.get("state"), EVENT_STATES, notices, "state"),
        "source": _choice(params.get("source"), EVENT_SOURCES, notices, "source"),
    }
    page = _page(params.get("page"), notices)
    async with gateway.store.tx() as tx:
        events = await tx.list_events(
            system=query["system"] or None,
            state=query["state"] or None,
            source=query["source"] or None,
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
        )
    context = {
        "events": events[:PAGE_SIZE],
        "rejected": list(reversed(gateway.rejections.recent())),
        "filters": query,
        "systems": systems,
        "states": EVENT_STATES,
        "sources": EVENT_SOURCES,
        "page": page,
        "pages": page_links(query, page, len(events) > PAGE_SIZE),
        "notice": "; ".join(notices),
        "title": "Events",
    }
    return render(request, "events.html", context, fragment="events_live.html")


@post("/events/{event_id:int}/retry", include_in_schema=False)
async def retry_event(request: Request[Any, Any, Any], event_id: EventPath) -> Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)

    async def run() -> str:
        event = await gateway.worker.retry_failed(event_id)
        audit("event retried", via="console", system=event.system, event_id=event_id)
        return f"Processing {event.system} event {event_id} again."

    return await act(form.get("back", "") or f"{PATH}/events", run, failed="Retry refused")
