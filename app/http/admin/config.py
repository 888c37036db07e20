"""``/admin/config``: the effective configuration (secrets masked) and reload."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, get, post

from app.config import dump_effective
from app.gateway import known_systems
from app.http.admin.common import audit
from app.http.admin.models import ConfigView, ReloadResult
from app.http.context import gateway_of
from app.http.problems import errors

log = logging.getLogger("syncgate.admin")


# -- config -----------------------------------------------------------------------------------


@get(
    "/config",
    summary="The effective configuration, secrets masked",
    tags=["config"],
    responses=errors(),
)
async def get_config(request: Request[Any, Any, Any]) -> ConfigView:

    gateway = gateway_of(request)
    return ConfigView(gateway.config_path, dump_effective(gateway.settings, known_systems()))


@post(
    "/config/reload",
    summary="Reload the configuration from its file",
    tags=["config"],
    description="An invalid file (or a secret missing from the environment) is refused with"
    " 422 listing every issue; the running configuration stays.",
    responses=errors(409, 422),
    status_code=200,
)
async def reload_config(request: Request[Any, Any, Any]) -> ReloadResult:
    gateway = gateway_of(request)
    gateway.reload_from_file()
    # a system enabled by the reload and never connected before is connected now: what
    # it makes from now on is new, what it made before is history (kept once stored)
    await gateway.connect()
    assert gateway.config_path is not None
    audit("config reloaded", path=gateway.config_path, systems=sorted(gateway.adapters))
    return ReloadResult(True, gateway.config_path, sorted(gateway.adapters), gateway.restart_needed)
