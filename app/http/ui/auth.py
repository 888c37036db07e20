"""Sign in (the admin key as the password) and sign out."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, post
from litestar.response import Redirect, Template

from app.http.context import gateway_of
from app.http.ui.common import back_to, form_of, page, render, signed_in
from app.http.ui.session import COOKIE, LIFETIME_S, PATH, key_matches, new_session, session_cookie

log = logging.getLogger("syncgate.console")


def _next(raw: str | None) -> str:
    if raw and raw.startswith(f"{PATH}/") and not raw.startswith("//"):
        return raw
    return f"{PATH}/items"


@page("/", opt={"public": True})
async def home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect(f"{PATH}/items" if signed_in(request) else f"{PATH}/login", status_code=303)


@page("/login", opt={"public": True})
async def login_form(request: Request[Any, Any, Any]) -> Template:
    gateway = gateway_of(request)
    return render(
        request,
        "login.html",
        {
            "next": _next(request.query_params.get("next")),
            "closed": None if gateway.secrets.admin_key else gateway.settings.admin.api_key_env,
            "error": None,
        },
    )


@post("/login", opt={"public": True}, include_in_schema=False)
async def login(request: Request[Any, Any, Any]) -> Template | Redirect:
    gateway = gateway_of(request)
    form = await form_of(request)
    expected = gateway.secrets.admin_key
    target = _next(form.get("next"))
    if not key_matches(expected, form.get("key", "")):
        # never the key itself in a log line
        log.warning("console sign-in refused", extra={"client": _client(request)})
        closed = None if expected else gateway.settings.admin.api_key_env
        return render(
            request,
            "login.html",
            {"next": target, "closed": closed, "error": "Wrong admin key."},
            status_code=401,
        )
    assert expected is not None
    log.info("console sign-in", extra={"client": _client(request)})
    response = Redirect(target, status_code=303)
    response.cookies.append(session_cookie(request, new_session(expected), max_age=LIFETIME_S))
    return response


@post("/logout", include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    response = back_to(f"{PATH}/login", "ok", "Signed out.")
    response.cookies.append(session_cookie(request, "", max_age=0))
    return response


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


__all__ = ["COOKIE", "home", "login", "login_form", "logout"]
