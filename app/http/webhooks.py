"""``POST /webhooks/{system}``: verify, store durably, answer. Never calls a vendor.

    unknown or disabled system -> 404     body over the size limit -> 413
    missing/wrong/stale signature -> 401  not JSON -> 400   unreadable payload -> 422
    stored (or already stored: a duplicate delivery) -> 202

The answer is sent only after the event is committed (``EventWriter``), so an
acknowledged delivery survives a crash; the inbox worker processes it (``app/inbox.py``).

Every refusal is counted (``syncgate_webhooks_rejected_total``) and logged as
``webhook rejected`` with the system, the reason and the sender's address, at most once
a minute per system and reason (``RejectionLog``; the next line says how many were
left out). Never the body, never a header.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Request, Response, post
from litestar.status_codes import HTTP_202_ACCEPTED

from app.errors import WebhookError
from app.gateway import Gateway
from app.http.openapi import WEBHOOK_RESPONSES, WebhookOperation, WebhookSystem
from app.http.problems import problem_response
from app.inbox import Rejection, kept_headers
from app.metrics import reason_label
from app.model import utcnow
from app.store import NewEvent

log = logging.getLogger("syncgate.webhooks")


class RejectionLog:
    """Logs refused deliveries, one line per (system, reason) per ``interval_s``: a bad
    secret rotation shows at once, a flood of junk costs one line a minute. Every one is
    also kept in the gateway's memory of recent refusals (``Gateway.rejections``, shown by
    the console and ``GET /admin/events/rejected``)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        #: (system, reason) -> (when last logged, refusals left out since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def rejected(
        self,
        request: Request[Any, Any, Any],
        system: str,
        reason: str,
        status: int,
        detail: str,
        *,
        named: str | None = None,
    ) -> None:
        """``system``: the log's and the metric's label (``unknown`` for a name that is no
        system, so senders cannot mint keys); ``named``: the name the sender used, kept
        in the memory of recent refusals."""
        gateway: Gateway = request.app.state.gateway
        gateway.rejections.record(
            Rejection(at=utcnow(), system=(named or system)[:64], status=status, reason=detail)
        )
        now = time.monotonic()
        key = (system, reason)
        last, left_out = self._seen.get(key, (-self.interval_s, 0))
        if now - last < self.interval_s:
            self._seen[key] = (last, left_out + 1)
            return
        if len(self._seen) > 1024:  # unknown system names are the sender's choice
            self._seen.clear()
        self._seen[key] = (now, 0)
        # uvicorn has already put the forwarded client here when the peer is a trusted
        # proxy (forwarded_allow_ips / FORWARDED_ALLOW_IPS, 127.0.0.1 by default)
        sender = request.client.host if request.client else "unknown"
        log.warning(
            "webhook rejected",
            extra={
                "system": system,
                "reason": reason,
                "status": status,
                "detail": detail[:200],
                "sender": sender,
                "left_out": left_out,
            },
        )


@post(
    "/webhooks/{system:str}",
    status_code=HTTP_202_ACCEPTED,
    summary="Receive a vendor webhook",
    description="Verifies the signature, stores the raw event and answers 202 once it is"
    " committed; the inbox worker processes it later. Never calls a vendor.",
    tags=["webhooks"],
    operation_class=WebhookOperation,
    responses=WEBHOOK_RESPONSES,
)
async def receive_webhook(system: WebhookSystem, request: Request[Any, Any, Any]) -> Response[Any]:
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
    rejections: RejectionLog = request.app.state.rejections
    if adapter is None:
        metrics.webhooks_rejected.labels("unknown", "unknown_system").inc()
        detail = f"no enabled system named {system[:64]!r}"
        rejections.rejected(request, "unknown", "unknown_system", 404, detail, named=system)
        return problem_response(404, "Unknown system", detail)
    too_large = f"body is over the {limit}-byte limit"
    # straight from the ASGI scope, lower-cased and decoded once, as the adapters read
    # them (litestar builds its own Headers anyway, for the body's length: this saves
    # only the copy of them)
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
    }
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        rejections.rejected(request, system, "too_large", 413, too_large)
        return problem_response(413, "Payload too large", too_large)
    body = await request.body()
    if len(body) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        rejections.rejected(request, system, "too_large", 413, too_large)
        return problem_response(413, "Payload too large", too_large)
    try:
        adapter.verify_webhook(headers, body, utcnow())
        event = adapter.parse_webhook(headers, body)
    except WebhookError as exc:
        reason = reason_label(type(exc).__name__)
        metrics.webhooks_rejected.labels(system, reason).inc()
        rejections.rejected(request, system, reason, exc.http_status, exc.reason)
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
