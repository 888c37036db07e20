"""``/admin/systems``: each system's polling, queue, deferral and pause; pause and resume."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, get, post

from app.gateway import Gateway
from app.http.admin.common import SystemName, audit, check_system
from app.http.admin.models import SystemsOverview, SystemStatus
from app.http.context import gateway_of
from app.http.problems import errors
from app.store import Tx

log = logging.getLogger("syncgate.admin")


# -- systems ----------------------------------------------------------------------------------


async def system_status(gateway: Gateway, tx: Tx, name: str) -> SystemStatus:
    state = await tx.system_state(name)
    depth = (await tx.queue_depth()).get(name, 0)
    dead = (await tx.dead_by_system()).get(name, 0)
    settings = gateway.settings.systems[name]
    last = state.last_poll_at
    return SystemStatus(
        name=name,
        enabled=name in gateway.adapters,
        paused=state.paused,
        poll_interval_s=settings.poll_interval_s,
        last_poll_at=last,
        lag_s=None if last is None else round((gateway.clock() - last).total_seconds(), 3),
        last_poll_error=state.last_poll_error,
        last_write_error=state.last_write_error,
        deferred_until=state.deferred_until,
        queue_depth=depth,
        dead_letters=dead,
    )


@get(
    "/systems",
    summary="Status of every configured system",
    tags=["systems"],
    responses=errors(),
)
async def list_systems(request: Request[Any, Any, Any]) -> SystemsOverview:
    gateway = gateway_of(request)
    async with gateway.store.tx() as tx:
        systems = [
            await system_status(gateway, tx, name) for name in sorted(gateway.settings.systems)
        ]
        pending = await tx.pending_events()
        dead = await tx.dead_count()
    return SystemsOverview(systems, sum(s.queue_depth for s in systems), dead, pending)


async def _set_paused(request: Request[Any, Any, Any], name: str, paused: bool) -> SystemStatus:
    gateway = gateway_of(request)
    check_system(gateway, name, status=404)
    await gateway.set_paused(name, paused)
    audit("system paused" if paused else "system resumed", system=name)
    async with gateway.store.tx() as tx:
        return await system_status(gateway, tx, name)


@post(
    "/systems/{name:str}/pause",
    summary="Pause a system: no polls, its writes wait",
    tags=["systems"],
    responses=errors(400, 404),
    status_code=200,
)
async def pause_system(request: Request[Any, Any, Any], name: SystemName) -> SystemStatus:
    return await _set_paused(request, name, True)


@post(
    "/systems/{name:str}/resume",
    summary="Resume a paused system",
    tags=["systems"],
    responses=errors(400, 404),
    status_code=200,
)
async def resume_system(request: Request[Any, Any, Any], name: SystemName) -> SystemStatus:
    return await _set_paused(request, name, False)
