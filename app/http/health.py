"""``/healthz`` (the process answers), ``/readyz`` (it can serve) and ``/metrics``
(Prometheus)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, head

from app.gateway import Gateway
from app.http.context import gateway_of


@get("/healthz", summary="Liveness: the process answers", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@head(
    "/healthz",
    summary="Liveness without a body, for monitors that send HEAD",
    sync_to_thread=False,
)
def healthz_head() -> None:
    return None


async def _readiness(gateway: Gateway) -> tuple[bool, dict[str, Any]]:
    database = await gateway.store.ping()
    writable = database and await gateway.store.can_store_event()
    ready = writable and bool(gateway.adapters)
    return ready, {
        "status": "ready" if ready else "not ready",
        "database": database,
        "writable": writable,
        "systems": sorted(gateway.adapters),
    }


@get(
    "/readyz",
    summary="Readiness: a webhook could be stored now, and systems are configured",
    description="`writable`: a probe event was written in a transaction then rolled back.",
)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    ready, body = await _readiness(gateway_of(request))
    return Response(body, status_code=200 if ready else 503)


@head(
    "/readyz",
    summary="Readiness without a body, for monitors that send HEAD: 200 or 503 as GET",
)
async def readyz_head(request: Request[Any, Any, Any]) -> Response[None]:
    ready, _ = await _readiness(gateway_of(request))
    return Response(None, status_code=200 if ready else 503)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any]) -> bytes:
    gateway = gateway_of(request)
    m = gateway.metrics
    async with gateway.store.tx() as tx:
        depth = await tx.queue_depth()
        dead = await tx.dead_by_system()
        states = {system: await tx.system_state(system) for system in gateway.adapters}
        m.inbox_backlog.set(await tx.pending_events())
    m.show_systems(states)
    for system, state in states.items():
        m.queue_depth.labels(system).set(depth.get(system, 0))
        m.dead_letters_now.labels(system).set(dead.get(system, 0))
        m.paused.labels(system).set(1 if state.paused else 0)
        until = state.deferred_until
        deferred = until is not None and until > gateway.clock()
        m.deferred_until.labels(system).set(until.timestamp() if deferred and until else 0)
    for system, lag in (await gateway.pollers.lag_seconds()).items():
        if lag is not None:
            gateway.metrics.poll_lag.labels(system).set(lag)
    return gateway.metrics.render()
