"""The simulators' webhook sender, shared by every simulator through ``SimKit``.

Webhook delivery follows the vendor's retry schedule (``SVIX_SCHEDULE`` unless the
simulator gives another): each delivery is retried after the listed delays until a 2xx,
then given up. ``SimOptions.webhook_time_scale`` compresses those delays for tests (1.0 is
real time; 1e-5 plays a day in under a second). Signature timestamps are always the wall
clock at the moment of each attempt, never the simulated clock: a receiver checks them
against its own clock, and the vendor's sender does not share our time machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

HeaderSigner = Callable[[bytes, int], dict[str, str]]
"""(body, unix timestamp of this attempt) -> signature headers."""

#: Svix's retry schedule (https://docs.svix.com/retries): the delay before each attempt,
#: each counted from the failure of the one before: immediately, 5 s, 5 min, 30 min, 2 h,
#: 5 h, 10 h, 10 h. Standard Webhooks senders (InboxOps, assumed) use it too.
SVIX_SCHEDULE: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: How long a sender waits for the receiver's answer (Svix: 15 s).
WEBHOOK_TIMEOUT_S = 15.0
#: Each delivery opens its own connection, as a vendor's sender fleet does; one client
#: (made once per event loop: a client costs tens of milliseconds, its TLS context) is
#: shared by them all.
SENDER_LIMITS = httpx.Limits(max_keepalive_connections=0)


class DeliveryRecord(msgspec.Struct):
    """One webhook message and its attempts. ``delays`` are the schedule's delays (vendor
    seconds, before time scaling) waited before each retry so far; ``gave_up`` is set when
    the schedule ran out without a 2xx."""

    id: str
    event_type: str
    url: str
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    gave_up: bool = False
    body: Any = None
    delays: list[float] = msgspec.field(default_factory=list)
    timestamps: list[int] = msgspec.field(default_factory=list)


class WebhookSender:
    """The webhook half of ``SimKit``: what it reads of the kit is declared here."""

    webhook_url: str | None
    webhook_schedule: tuple[float, ...]
    webhook_time_scale: float
    _webhook_client: httpx.AsyncClient | None
    deliveries: list[DeliveryRecord]
    _pending: set[asyncio.Task[None]]
    #: The sender's own client when none was given, with the loop it was made on.
    _sender: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    @property
    def webhook_attempts(self) -> int:
        """How many attempts a delivery gets before the sender gives up."""
        return len(self.webhook_schedule)

    def emit(self, event_type: str, body: bytes, sign: HeaderSigner, delivery_id: str) -> None:
        """Queue a signed delivery of ``body`` to the configured URL (no-op without one).

        ``sign`` is called per attempt, so each retry carries a fresh timestamp, as the
        vendors' senders do; the delivery id stays the same across retries.
        """
        if not self.webhook_url:
            return
        record = DeliveryRecord(
            id=delivery_id,
            event_type=event_type,
            url=self.webhook_url,
            body=msgspec.json.decode(body),
        )
        self.deliveries.append(record)
        task = asyncio.get_running_loop().create_task(self._deliver(record, body, sign))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _client(self) -> httpx.AsyncClient:
        if self._webhook_client is not None:
            return self._webhook_client
        loop = asyncio.get_running_loop()
        if self._sender is None or self._sender[0] is not loop:
            client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, limits=SENDER_LIMITS)
            self._sender = (loop, client)
        return self._sender[1]

    async def _deliver(self, record: DeliveryRecord, body: bytes, sign: HeaderSigner) -> None:
        client = self._client()
        for attempt, delay in enumerate(self.webhook_schedule, start=1):
            if attempt > 1:
                record.delays.append(delay)
                await asyncio.sleep(delay * self.webhook_time_scale)
            record.attempts = attempt
            # The wall clock, not the simulated one: receivers check it against theirs.
            ts = int(time.time())
            record.timestamps.append(ts)
            try:
                signature = sign(body, ts)
            except Exception as exc:  # noqa: BLE001 - a secret that cannot sign (set at runtime)
                record.error = f"cannot sign: {type(exc).__name__}: {exc}"
                record.gave_up = True
                return
            headers = {"content-type": "application/json", **signature}
            try:
                response = await client.post(record.url, content=body, headers=headers)
                record.status = response.status_code
                record.error = None
                if 200 <= response.status_code < 300:
                    record.delivered = True
                    return
            except httpx.HTTPError as exc:
                record.status = None
                record.error = f"{type(exc).__name__}: {exc}"
        record.gave_up = True

    async def flush(self) -> None:
        """Wait for every pending delivery (including retries) to finish."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        """Stop every pending delivery (at shutdown: a real schedule can run for a day)."""
        tasks = list(self._pending)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sender is not None:
            loop, client = self._sender
            self._sender = None
            if loop is asyncio.get_running_loop():
                await client.aclose()
