"""The ``/admin`` API: every route behind the admin key, every error a problem."""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException

from app.http.admin.backfill import backfill
from app.http.admin.common import ADMIN_PREFIX, authorize
from app.http.admin.config import get_config, reload_config
from app.http.admin.identities import (
    delete_identity,
    get_identity,
    list_identities,
    put_identity,
)
from app.http.admin.items import (
    add_link,
    change_work_item,
    create_work_item,
    get_work_item,
    list_work_items,
    lookup,
    resync_work_item,
)
from app.http.admin.links import delete_link, relink, resync_link
from app.http.admin.outbox import (
    discard_dead,
    discard_write,
    list_events,
    list_outbox,
    list_rejections,
    retry_dead,
    retry_event,
    retry_write,
)
from app.http.admin.systems import list_systems, pause_system, resume_system
from app.http.problems import AdminError, on_admin_error, on_http_exception

ADMIN_ROUTES = [
    list_work_items,
    create_work_item,
    get_work_item,
    change_work_item,
    add_link,
    resync_work_item,
    lookup,
    delete_link,
    relink,
    resync_link,
    list_outbox,
    retry_dead,
    discard_dead,
    retry_write,
    discard_write,
    list_events,
    retry_event,
    list_rejections,
    list_systems,
    pause_system,
    resume_system,
    get_config,
    reload_config,
    list_identities,
    get_identity,
    put_identity,
    delete_identity,
    backfill,
]


def admin_router() -> Router:
    """The /admin API: every route behind the admin key, every error a problem."""
    return Router(
        ADMIN_PREFIX,
        route_handlers=ADMIN_ROUTES,
        before_request=authorize,
        exception_handlers={AdminError: on_admin_error, HTTPException: on_http_exception},
        tags=["admin"],
        security=[{"AdminKey": []}, {"AdminBearer": []}],
    )
