"""``POST /webhooks/{system}``: verify, store durably, answer. Never calls a vendor.

    unknown or disabled system -> 404     body over the size limit -> 413
    missing/wrong/stale signature -> 401  not JSON -> 400   unreadable payload -> 422
    stored (or already stored: a duplicate delivery) -> 202

The answer is sent only after the event is committed, so an acknowledged delivery
survives a crash; the inbox worker processes it (``app/worker.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED

from app.errors import WebhookError
from app.model import utcnow
from app.store import NewEvent, Store

if TYPE_CHECKING:
    from app.asgi import Gateway


_DROPPED = ("authorization", "cookie", "x-api-key", "x-admin-key")


def kept_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers stored with an event: none that carry credentials or signatures."""
    return {
        k: v
        for k, v in headers.items()
        if k not in _DROPPED and "signature" not in k and k not in ("content-length", "host")
    }


class EventWriter:
    """Stores received deliveries, all those that arrived while the previous commit ran
    in one transaction (group commit). Each delivery's sender is answered only after
    the commit that stored it; a failed commit fails every delivery in it (they get a
    5xx and the vendor sends them again)."""

    def __init__(self, store: Store, *, max_batch: int = 512) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[tuple[NewEvent, asyncio.Future[int | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def store_event(self, event: NewEvent) -> int | None:
        """Store one delivery; its event id, or None for a duplicate delivery."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[int | None] = loop.create_future()
        self._queue.append((event, stored))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="event-writer")
        return await stored

    async def _write(self) -> None:
        while self._queue:
            batch: list[tuple[NewEvent, asyncio.Future[int | None]]] = []
            try:
                async with self.store.tx() as tx:
                    # what queued up while the transaction was being opened goes in too
                    batch, self._queue = (
                        self._queue[: self.max_batch],
                        self._queue[self.max_batch :],
                    )
                    ids = await tx.record_events([e for e, _ in batch], now=utcnow())
            except Exception as exc:  # noqa: BLE001 - handed to each waiting delivery
                if not batch:  # the transaction could not even begin
                    n = self.max_batch
                    batch, self._queue = self._queue[:n], self._queue[n:]
                for _, stored in batch:
                    if not stored.done():
                        stored.set_exception(exc)
                continue
            for (_, stored), event_id in zip(batch, ids, strict=True):
                if not stored.done():  # the sender may have gone away
                    stored.set_result(event_id)


def problem(status: int, title: str, detail: str) -> Response[dict[str, Any]]:
    """An RFC 7807 problem response."""
    return Response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


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
        return problem(404, "Unknown system", f"no enabled system named {system!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        return problem(413, "Payload too large", f"body is over the {limit}-byte limit")
    body = await request.body()
    if len(body) > limit:
        metrics.webhooks_rejected.labels(system, "too_large").inc()
        return problem(413, "Payload too large", f"body is over the {limit}-byte limit")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        adapter.verify_webhook(headers, body, utcnow())
        event = adapter.parse_webhook(headers, body)
    except WebhookError as exc:
        metrics.webhooks_rejected.labels(system, type(exc).__name__).inc()
        titles = {401: "Invalid signature", 400: "Malformed payload", 422: "Unreadable payload"}
        return problem(exc.http_status, titles.get(exc.http_status, "Bad webhook"), exc.reason)
    event_id = await gateway.events.store_event(
        NewEvent(
            system=system,
            delivery_id=event.delivery_id,
            source="webhook",
            event_type=event.event_type,
            body=body,
            headers=kept_headers(headers),
        )
    )
    if event_id is None:
        metrics.webhooks_duplicate.labels(system).inc()
        return Response({"status": "duplicate", "delivery_id": event.delivery_id}, status_code=202)
    metrics.webhooks_received.labels(system).inc()
    gateway.worker.wake.set()
    return Response(
        {"status": "accepted", "event_id": event_id, "delivery_id": event.delivery_id},
        status_code=202,
    )
