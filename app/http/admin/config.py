"""``/admin/config``: the effective configuration (secrets masked) and reload."""

from __future__ import annotations

import logging
import os
from typing import Any

from litestar import Request, get, post

from app.config import dump_effective, load_config, resolve_environment
from app.errors import ConfigError
from app.gateway import known_systems
from app.http.admin.common import audit
from app.http.admin.models import ConfigView, ReloadResult
from app.http.context import gateway_of
from app.http.problems import AdminError, ConfigIssueOut, errors

log = logging.getLogger("syncgate.admin")


# -- config -----------------------------------------------------------------------------------


@get("/config", summary="The effective configuration, secrets masked", tags=["config"])
async def get_config(request: Request[Any, Any, Any]) -> ConfigView:

    gateway = gateway_of(request)
    return ConfigView(gateway.config_path, dump_effective(gateway.settings))


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
    path = gateway.config_path
    if path is None:
        raise AdminError(409, "No config file", "the gateway was not started from a config file")
    try:
        settings = load_config(path, known_systems())
        secrets = resolve_environment(settings, os.environ)
    except ConfigError as exc:
        log.warning("config reload refused", extra={"path": path, "issues": len(exc.issues)})
        raise AdminError(
            422,
            "Invalid configuration",
            f"{len(exc.issues)} problem(s) in {path}; the running configuration stays",
            issues=[ConfigIssueOut(i.file, i.line, i.key, i.message) for i in exc.issues],
        ) from None
    gateway.reload(settings, secrets)
    gateway.dispatcher.wake.set()
    audit("config reloaded", path=path, systems=sorted(gateway.adapters))
    return ReloadResult(True, path, sorted(gateway.adapters))
