"""The ASGI app: webhooks, health, metrics, the admin API and the operator console over a
``Gateway``, with the one table that turns errors into problem+json responses.

``create_app(gateway)`` takes everything as an argument; nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from app.errors import SyncgateError
from app.gateway import Gateway
from app.http.admin import admin_router
from app.http.admin.common import is_admin_path, refusal
from app.http.context import SyncgateRequest
from app.http.health import healthz, healthz_head, metrics, readyz, readyz_head
from app.http.openapi import StrictBodies, asset_routers, openapi_config
from app.http.problems import (
    log_server_errors,
    on_http_exception,
    on_syncgate_error,
    on_unexpected_error,
    problem_response,
)
from app.http.ui import ui_router, ui_static_router, ui_templates
from app.http.webhooks import RejectionLog, receive_webhook


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> Litestar:
    """The HTTP app: webhooks, admin API, health and metrics, with ``gateway`` in
    ``app.state``. With ``manage_lifecycle`` the app starts and stops the gateway's loops
    (and closes the store) with the server."""

    async def startup() -> None:
        await gateway.start()

    async def shutdown() -> None:
        await gateway.stop()
        await gateway.store.close()

    return Litestar(
        route_handlers=[
            receive_webhook,
            healthz,
            healthz_head,
            readyz,
            readyz_head,
            metrics,
            admin_router(),
            *asset_routers(),
            ui_router(gateway.secrets.admin_key),
            ui_static_router(),
        ],
        template_config=ui_templates(),
        on_startup=[startup] if manage_lifecycle else [],
        on_shutdown=[shutdown] if manage_lifecycle else [],
        openapi_config=openapi_config(),
        plugins=[StrictBodies()],
        exception_handlers={
            NotFoundException: _routing_problem,
            MethodNotAllowedException: _routing_problem,
            SyncgateError: on_syncgate_error,
            HTTPException: on_http_exception,
            Exception: on_unexpected_error,
        },
        before_send=[log_server_errors],
        state=_state(gateway),
        request_class=SyncgateRequest,
        debug=False,
        logging_config=None,  # our JSON logging (app/logs.py), not litestar's root handler
    )


def _routing_problem(request: Any, exc: HTTPException) -> Response[Any]:
    """Unknown paths and methods answer problem+json like every other error; under
    /admin only once the key is right (authentication first: no method or path is
    revealed without it)."""
    if is_admin_path(request.url.path) and (refused := refusal(request)) is not None:
        return refused
    title = "Not found" if exc.status_code == 404 else "Method not allowed"
    return problem_response(
        exc.status_code,
        title,
        f"{request.method} {request.url.path}: {exc.detail}",
        headers=exc.headers,  # a 405 lists the methods the path has in Allow
    )


def _state(gateway: Gateway) -> Any:
    return State({"gateway": gateway, "rejections": RejectionLog()})
