"""The operator console at ``/ui``: server-rendered pages (Jinja) with htmx for the live
parts, behind a sign-in with the admin key and CSRF tokens on every form. Every action
is one call to the services the admin API calls; the console holds no logic of its own.

``ui_router`` (pages and actions), ``ui_static_router`` (htmx, CSS), ``ui_templates``
(the Jinja config the app is given)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.errors import SyncgateError
from app.http.problems import problem_of
from app.http.ui import auth, items, onboarding, operations
from app.http.ui.common import ago, render, require_session, stamp
from app.http.ui.session import PATH, csrf_secret

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

UI_ROUTES = [
    auth.home,
    auth.login_form,
    auth.login,
    auth.logout,
    items.items_page,
    items.item_page,
    items.change_item,
    items.resync_item,
    items.link_object,
    items.unlink_object,
    items.relink_object,
    items.resync_link,
    operations.outbox_page,
    operations.retry_write,
    operations.discard_write,
    operations.bulk_preview,
    operations.bulk_run,
    operations.systems_page,
    operations.pause_system,
    operations.resume_system,
    operations.events_page,
    operations.retry_event,
    onboarding.onboarding_page,
    onboarding.onboarding_run,
]


def _error_page(request: Request[Any, Any, Any], status: int, title: str, detail: str) -> Template:
    context = {"status": status, "error_title": title, "detail": detail, "title": title}
    return render(request, "error.html", context, status_code=status)


def _on_csrf(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    return _error_page(
        request,
        403,
        "Form refused",
        f"{exc.detail}: the form was not sent from this console's page (or the page is"
        " too old). Reload the page and try again.",
    )


def _on_error(request: Request[Any, Any, Any], exc: SyncgateError) -> Response[Any]:
    status, title, detail = problem_of(exc)
    return _error_page(request, status, title, detail)


def _on_not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    return _error_page(request, 404, "Not found", f"no console page at {request.url.path}")


def ui_router(admin_key: str | None) -> Router:
    """Pages and actions under /ui: a session is required (except to sign in), every
    unsafe method needs the CSRF token (litestar's double-submit cookie, checked by its
    middleware on this router only: the webhook receivers and /admin are untouched)."""
    csrf = CSRFConfig(
        secret=csrf_secret(admin_key),
        cookie_name="syncgate_csrf",
        cookie_path=PATH,
        cookie_httponly=True,
        cookie_samesite="strict",
    )
    return Router(
        PATH,
        route_handlers=UI_ROUTES,
        before_request=require_session,
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
        exception_handlers={
            PermissionDeniedException: _on_csrf,
            SyncgateError: _on_error,
            NotFoundException: _on_not_found,
        },
        include_in_schema=False,
    )


def ui_static_router() -> Router:
    return create_static_files_router(
        path=f"{PATH}/static",
        directories=[STATIC],
        cache_control=CacheControlHeader(max_age=3600),
        include_in_schema=False,
    )


def _filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters.update({"ago": ago, "stamp": stamp})
    engine.engine.globals.update({"ui": PATH})


def ui_templates() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_filters)
