"""What every admin handler shares: the gateway of the request, the admin key check, path
and query parameters, system and link checks, the audit log."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import PathParameter, QueryParameter

from app.errors import NotFound, VendorError
from app.gateway import Gateway
from app.http.admin.models import ResyncEntry
from app.http.context import gateway_of
from app.http.problems import AdminError, Problem, not_found, problem_response
from app.model import ObjectRef, VendorObject, WorkItem
from app.store import HistoryEntry, Link, Tx

log = logging.getLogger("syncgate.admin")


def _presented_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("x-admin-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authorize(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """Runs before every /admin handler (and before its input is parsed)."""
    gateway = gateway_of(request)
    expected = gateway.secrets.admin_key
    challenge = {"WWW-Authenticate": 'Bearer realm="syncgate-admin"'}
    if not expected:
        return problem_response(
            401,
            "Unauthorized",
            f"admin API is closed: set {gateway.settings.admin.api_key_env}",
            headers=challenge,
        )
    presented = _presented_key(request)
    if presented is None:
        return problem_response(
            401,
            "Unauthorized",
            "admin key required: send X-Admin-Key: <key> or Authorization: Bearer <key>",
            headers=challenge,
        )
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return problem_response(401, "Unauthorized", "wrong admin key", headers=challenge)
    return None


# -- helpers ----------------------------------------------------------------------------------


def check_system(gateway: Gateway, system: str | None, *, status: int = 400) -> None:
    if system is not None and system not in gateway.settings.systems:
        known = ", ".join(sorted(gateway.settings.systems)) or "none"
        raise AdminError(
            status, "Unknown system", f"no system named {system!r} (configured: {known})"
        )


async def fetch_object(gateway: Gateway, ref: ObjectRef) -> VendorObject:
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


def parse_link_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise AdminError(400, "Bad link id", f"a link id is a positive integer, got {raw!r}")
    return int(raw)


async def link_or_404(tx: Tx, link_id: int) -> Link:
    link = await tx.get_link(link_id)
    if link is None:
        raise not_found(f"no link {link_id}")
    return link


def audit(message: str, **extra: Any) -> None:
    log.info(message, extra={"action": message, **extra})


def conflict_owner(ref: ObjectRef, owner: str) -> AdminError:
    return AdminError(
        409,
        "Already linked",
        f"{ref.system} object {ref.external_id!r} is already linked to work item {owner}",
    )


async def insert_links(
    gateway: Gateway, tx: Tx, item: WorkItem, objects: Sequence[VendorObject]
) -> list[int]:
    """Link ``objects`` to ``item``, each marked to receive the item's state (the
    dispatcher writes only what differs). Raises IntegrityError if one is linked already."""
    now = gateway.clock()
    ids = []
    for obj in objects:
        existing = await tx.link_for(obj.ref)
        if existing is not None:
            raise conflict_owner(obj.ref, existing.work_item_id)
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


async def owner_of(gateway: Gateway, refs: Sequence[ObjectRef]) -> AdminError:
    """After a uniqueness violation (another request linked the object first): name the
    work item that holds it."""
    async with gateway.store.tx() as tx:
        for ref in refs:
            existing = await tx.link_for(ref)
            if existing is not None:
                return conflict_owner(ref, existing.work_item_id)
    return AdminError(409, "Already linked", "the object was linked concurrently")


async def resync_links(gateway: Gateway, links: Sequence[Link]) -> list[ResyncEntry]:
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


async def mark_for_write(
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
