"""``POST /webhooks/{system}``: verify, store durably, answer. Never calls a vendor.

    unknown or disabled system -> 404     body over the size limit -> 413
    missing/wrong/stale signature -> 401  not JSON -> 400   unreadable payload -> 422
    stored (or already stored: a duplicate delivery) -> 202

The answer is sent only after the event is committed (``EventWriter``), so an
acknowledged delivery survives a crash; the inbox worker processes it (``app/inbox.py``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED

from app.errors import WebhookError
from app.gateway import Gateway
from app.http.problems import problem_response
from app.inbox import kept_headers
from app.metrics import reason_label
from app.model import utcnow
from app.store import NewEvent


@post("/webhooks/{system:str}", status_code=HTTP_202_ACCEPTED, summary="Receive a vendor webhook")
async def receive_webhook(system: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
    gateway: Gateway = request.app.state.gateway
    gateway.ingest.enter()  # background work gives way while deliveries are in progress
    try:
        return await _receive(gateway, system, request)
    finally:
        gateway.ingest.leave()


async def _receive(gateway: Gateway, system: str, request: Request[Any, Any, Any]) -> Response[Any]:
    limit = gateway.settings.server.max_body_bytes
    adapter = gateway.adapters.get(system)
    metrics = gateway.metrics
    if adapter is None:
        metrics.webhooks_rejected.labels("unknown", "unknown_system").inc()
        return problem_response(404, "Unknown system", f"no enabled system named {system!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        return problem_response(413, "Payload too large", f"body is over the {limit}-byte limit")
    body = await request.body()
    if len(body) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        return problem_response(413, "Payload too large", f"body is over the {limit}-byte limit")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        adapter.verify_webhook(headers, body, utcnow())
        event = adapter.parse_webhook(headers, body)
    except WebhookError as exc:
        metrics.webhooks_rejected.labels(system, reason_label(type(exc).__name__)).inc()
        raise  # answered by the app's one error table (app/http/problems.py)
    event_id = await gateway.events.store_event(
        NewEvent(
            system=system,
            delivery_id=event.delivery_id,
            source="webhook",
            event_type=event.event_type,
            body=body,
            headers=kept_headers(headers, adapter.stored_headers),
        )
    )
    if event_id is None:
        metrics.webhooks_duplicate.labels(system).inc()
        return Response({"status": "duplicate", "delivery_id": event.delivery_id}, status_code=202)
    metrics.webhooks_received.labels(system).inc()
    return Response(
        {"status": "accepted", "event_id": event_id, "delivery_id": event.delivery_id},
        status_code=202,
    )
