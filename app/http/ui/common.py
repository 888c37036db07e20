"""What every console page shares: the sign-in guard, rendering (a whole page, or only
its live part for htmx), flash messages across a redirect, and running an action with
the admin API's reasons shown on the page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect, Template

from app.errors import SyncgateError
from app.http.admin.common import audit, nul_input
from app.http.context import gateway_of
from app.http.problems import problem_of
from app.http.ui.session import COOKIE, PATH, valid_session
from app.store import Link

log = logging.getLogger("syncgate.console")

FLASH = "syncgate_flash"
#: Seconds between the live parts' refreshes.
REFRESH_S = 2
#: Rows per page of a list.
PAGE_SIZE = 50


def page(path: str, **kwargs: Any) -> HTTPRouteHandler:
    """A console page: answers GET, and HEAD the same without the body (monitors and
    link checkers probe pages with HEAD), and is left out of the API schema."""
    return route(
        path, http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False, **kwargs
    )


def signed_in(request: Request[Any, Any, Any]) -> bool:
    return valid_session(gateway_of(request).secrets.admin_key, request.cookies.get(COOKIE))


async def require_session(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Runs before every console handler not marked ``public``: no valid session, no
    page (a browser is sent to the sign-in form; htmx is told to go there). Then, on
    every handler, a NUL character in the path or a form is refused (``nul_input``)."""
    if request.route_handler.opt.get("public") or signed_in(request):
        return await nul_input(request, query=False)
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method not in (
        "GET",
        "HEAD",
    ):  # a form posted after the session ended: back to its page
        referer = urlsplit(request.headers.get("referer", ""))
        target = f"{PATH}/items"
        if referer.path.startswith(f"{PATH}/"):
            target = referer.path + (f"?{referer.query}" if referer.query else "")
    login = f"{PATH}/login?{urlencode({'next': target})}"
    if request.headers.get("hx-request"):
        return Response("", status_code=401, headers={"HX-Redirect": f"{PATH}/login"})
    return Redirect(login, status_code=303)


def live(request: Request[Any, Any, Any]) -> bool:
    """True for htmx's refresh of a page's live part (the rest is not rendered)."""
    return request.query_params.get("fragment") == "live"


def render(
    request: Request[Any, Any, Any],
    page: str,
    context: dict[str, Any],
    *,
    fragment: str | None = None,
    status_code: int = 200,
) -> Template:
    """The page, or its live ``fragment`` when htmx asks for it; the flash message of the
    last action is shown once and cleared."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
    context = {"refresh_s": REFRESH_S, "path": request.url.path, "query": urlencode(kept)} | context
    if fragment is not None and live(request):
        return Template(template_name=fragment, context=context)
    flash = request.cookies.get(FLASH)
    context["flash"] = _read_flash(flash)
    response = Template(template_name=page, context=context, status_code=status_code)
    if flash:
        response.delete_cookie(FLASH, path=PATH)
    return response


def _read_flash(raw: str | None) -> dict[str, str] | None:
    if not raw or ":" not in raw:
        return None
    kind, _, text = unquote(raw).partition(":")
    return {"kind": "error" if kind == "error" else "ok", "text": text}


def back_to(target: str, kind: str, text: str) -> Redirect:
    """Redirect (303) to a console page, with a message shown there once."""
    if not target.startswith(f"{PATH}/") or target.startswith("//"):
        target = f"{PATH}/items"
    return Redirect(
        target,
        status_code=303,
        cookies=[
            Cookie(
                key=FLASH,
                value=quote(f"{kind}:{text}"),
                path=PATH,
                httponly=True,
                samesite="strict",
                max_age=60,
            )
        ],
    )


async def act(
    target: str, action: Callable[[], Awaitable[str]], *, failed: str = "failed"
) -> Redirect:
    """Run an operator's action (one service call) and go back to ``target`` saying what
    it did, or why it was refused (the admin API's problem title and detail)."""
    try:
        done = await action()
    except SyncgateError as exc:
        status, title, detail = problem_of(exc)
        return back_to(target, "error", f"{failed}: {title} ({status}): {detail}")
    return back_to(target, "ok", done)


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {key: str(value).strip() for key, value in form.items()}


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """A time as a short age ("12s ago", "in 3m")."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    later = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if later else f"{text} ago"


def stamp(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def page_links(query: dict[str, str], page: int, has_next: bool) -> dict[str, str | None]:
    """The previous and next page's query strings, keeping every filter."""

    def at(n: int) -> str:
        return "?" + urlencode({k: v for k, v in query.items() if v} | {"page": str(n)})

    return {"prev": at(page - 1) if page > 1 else None, "next": at(page + 1) if has_next else None}


def audit_link(message: str, link: Link, **extra: Any) -> None:
    """The audit line of a console action on one link (a write or an object)."""
    audit(
        message,
        via="console",
        work_item_id=link.work_item_id,
        system=link.system,
        link_id=link.id,
        **extra,
    )
