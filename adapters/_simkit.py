"""Shared machinery of the vendor simulators: request log, fault injection, latency,
requests-per-minute limit, a settable clock, and signed webhook delivery with retries.

A vendor simulator builds its litestar app from its own handlers plus
``SimKit.control_handlers()`` (the common ``/_sim/`` surface) and serves
``SimKit.wrap(app)``. The wrapper sits in front of every vendor route (not ``/_sim/``):

    latency -> injected fault -> auth -> rate limit -> vendor handler -> logged

Common control surface (no auth; a local test surface):

    GET    /_sim/requests            the request log (vendor routes only)
    DELETE /_sim/requests            clear it
    POST   /_sim/faults              {"status": 500, "count": 1, "retry_after": null,
                                      "timeout_s": null, "methods": null, "path_prefix": null}
    DELETE /_sim/faults              drop pending faults
    PUT    /_sim/latency             {"ms": 20}
    PUT    /_sim/rate-limit          {"rpm": 100}   (null: unlimited)
    POST   /_sim/clock               {"advance_s": 1800}: move the vendor clock, run timers
    PUT    /_sim/webhook             {"url": "...", "secret": "..."}  (null url: stop sending)
    GET    /_sim/webhooks            the delivery log
    POST   /_sim/webhooks/flush      wait until every pending delivery has finished
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put

# ASGI plumbing is typed loosely on purpose: the gate forwards whatever the server sends.
Scope = Any
Message = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

ErrorRenderer = Callable[[int, str, str], tuple[bytes, str]]
"""(status, code, message) -> (body, content type) in the vendor's own error shape."""

HeaderSigner = Callable[[bytes, int], dict[str, str]]
"""(body, unix timestamp of this attempt) -> signature headers."""

REDACTED = "[redacted]"


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    """The next ``count`` matching calls fail: with ``status`` (and ``Retry-After`` when
    ``retry_after`` is set), or by hanging ``timeout_s`` seconds before a 504. With
    ``after`` the call is carried out first and only its answer is lost (the case
    idempotent creates exist for)."""

    status: int = 500
    count: int = 1
    retry_after: float | None = None
    timeout_s: float | None = None
    methods: list[str] | None = None
    path_prefix: str | None = None
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not (self.path_prefix and not path.startswith(self.path_prefix))


class LatencyBody(msgspec.Struct, forbid_unknown_fields=True):
    ms: float


class RateLimitBody(msgspec.Struct, forbid_unknown_fields=True):
    rpm: int | None


class ClockBody(msgspec.Struct, forbid_unknown_fields=True):
    advance_s: float


class WebhookTarget(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None
    secret: str | None = None


class RequestRecord(msgspec.Struct):
    seq: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    at: float = 0.0


class DeliveryRecord(msgspec.Struct):
    id: str
    event_type: str
    url: str
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    body: Any = None


class SimOptions(msgspec.Struct, kw_only=True):
    """How a simulator is started (``syncgate simulate`` flags map onto these)."""

    api_key: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    latency_ms: float = 0.0
    rpm: int | None = None


class SimKit:
    """State and behaviour shared by every simulator; one instance per simulator app."""

    def __init__(
        self,
        vendor: str,
        *,
        api_key: str,
        auth_header: str,
        auth_prefix: str,
        render_error: ErrorRenderer,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        latency_ms: float = 0.0,
        rpm: int | None = None,
        webhook_attempts: int = 4,
        webhook_backoff_s: float = 0.05,
        webhook_client: httpx.AsyncClient | None = None,
        rate_limit_headers: Callable[[int, int, float], dict[str, str]] | None = None,
    ) -> None:
        self.vendor = vendor
        self.api_key = api_key
        self.auth_header = auth_header.lower()
        self.auth_prefix = auth_prefix
        self.render_error = render_error
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.latency_ms = latency_ms
        self.rpm = rpm
        self.webhook_attempts = webhook_attempts
        self.webhook_backoff_s = webhook_backoff_s
        self._webhook_client = webhook_client
        self._rate_limit_headers = rate_limit_headers
        self.requests: list[RequestRecord] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self.deliveries: list[DeliveryRecord] = []
        self._seq = itertools.count(1)
        self._window: collections.deque[float] = collections.deque()
        self._pending: set[asyncio.Task[None]] = set()
        self._offset = timedelta(0)
        self._last_now = datetime.fromtimestamp(0, tz=UTC)
        self._timers: list[Callable[[], None]] = []

    @classmethod
    def from_options(
        cls,
        vendor: str,
        options: SimOptions,
        *,
        auth_header: str,
        auth_prefix: str,
        render_error: ErrorRenderer,
        webhook_client: httpx.AsyncClient | None = None,
        rate_limit_headers: Callable[[int, int, float], dict[str, str]] | None = None,
    ) -> SimKit:
        """A kit configured from the ``syncgate simulate`` options."""
        return cls(
            vendor,
            api_key=options.api_key,
            auth_header=auth_header,
            auth_prefix=auth_prefix,
            render_error=render_error,
            webhook_url=options.webhook_url,
            webhook_secret=options.webhook_secret,
            latency_ms=options.latency_ms,
            rpm=options.rpm,
            webhook_client=webhook_client,
            rate_limit_headers=rate_limit_headers,
        )

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The vendor's clock: wall time plus any advance, strictly increasing per call, so
        two changes never share an ``updated_at``."""
        now = datetime.now(UTC) + self._offset
        if now <= self._last_now:
            now = self._last_now + timedelta(microseconds=1)
        self._last_now = now
        return now

    def on_timer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after every clock advance (auto-resolve, reminders)."""
        self._timers.append(callback)

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)
        for callback in self._timers:
            callback()

    # -- ids -------------------------------------------------------------------------------

    @staticmethod
    def request_id() -> str:
        return "req_" + uuid.uuid4().hex[:24]

    # -- errors ----------------------------------------------------------------------------

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response[bytes]:
        """A litestar response in the vendor's error shape (for use inside handlers)."""
        body, content_type = self.render_error(status, code, message)
        return Response(body, status_code=status, media_type=content_type, headers=headers)

    # -- webhooks --------------------------------------------------------------------------

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

    async def _deliver(self, record: DeliveryRecord, body: bytes, sign: HeaderSigner) -> None:
        client = self._webhook_client or httpx.AsyncClient(timeout=5.0)
        try:
            for attempt in range(1, self.webhook_attempts + 1):
                record.attempts = attempt
                ts = int(self.now().timestamp())
                headers = {"content-type": "application/json", **sign(body, ts)}
                try:
                    response = await client.post(record.url, content=body, headers=headers)
                    record.status = response.status_code
                    record.error = None
                    if response.status_code < 300:
                        record.delivered = True
                        return
                except httpx.HTTPError as exc:
                    record.error = f"{type(exc).__name__}: {exc}"
                if attempt < self.webhook_attempts:
                    await asyncio.sleep(self.webhook_backoff_s * (4 ** (attempt - 1)))
        finally:
            if self._webhook_client is None:
                await client.aclose()

    async def flush(self) -> None:
        """Wait for every pending delivery (including retries) to finish."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- request gate (the ASGI wrapper) ---------------------------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The simulator's ASGI app: ``app`` behind latency, faults, auth and rate limit."""
        kit = self

        async def gated(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith("/_sim"):
                await app(scope, receive, send)
                return
            await kit._gate(app, scope, receive, send)

        return gated

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get(self.auth_header)
        return value is not None and value == self.auth_prefix + self.api_key

    def _rate_limited(self) -> float | None:
        """Seconds to wait if this request is over the per-minute limit, else None."""
        if self.rpm is None:
            return None
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60.0:
            self._window.popleft()
        if len(self._window) >= self.rpm:
            return max(1.0, math.ceil(60.0 - (now - self._window[0])))
        self._window.append(now)
        return None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _gate(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        logged_headers = {
            k: (REDACTED if k in (self.auth_header, "authorization", "x-api-key") else v)
            for k, v in headers.items()
        }
        try:
            body: Any = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            body = raw.decode(errors="replace")
        record = RequestRecord(
            seq=next(self._seq),
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode(),
            headers=logged_headers,
            body=body,
            at=time.time(),
        )
        self.requests.append(record)

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                if self._rate_limit_headers is not None and self.rpm is not None:
                    remaining = max(0, self.rpm - len(self._window))
                    extra = self._rate_limit_headers(self.rpm, remaining, 60.0)
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                        ],
                    }
            await send(message)

        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000.0)

        fault = self._take_fault(record.method, record.path)
        if fault is not None and fault.after:
            await self._handle(app, scope, receive, raw, headers, record, _discard)
            record.status = fault.status
            await self._send_error(
                send, fault.status, "injected_fault", f"injected fault {fault.status}"
            )
            return
        if fault is not None:
            if fault.timeout_s:
                await asyncio.sleep(fault.timeout_s)
                await self._send_error(send_logged, 504, "timeout", "gateway timeout (injected)")
                return
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = f"{fault.retry_after:g}"
            code = "rate_limited" if fault.status == 429 else "injected_fault"
            await self._send_error(
                send_logged, fault.status, code, f"injected fault {fault.status}", extra
            )
            return

        await self._handle(app, scope, receive, raw, headers, record, send_logged)

    async def _handle(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        raw: bytes,
        headers: dict[str, str],
        record: RequestRecord,
        send_logged: Send,
    ) -> None:
        if not self._authorized(headers):
            await self._send_error(send_logged, 401, "unauthorized", "invalid or missing API key")
            return

        wait = self._rate_limited()
        if wait is not None:
            await self._send_error(
                send_logged,
                429,
                "rate_limited",
                f"rate limit exceeded; retry after {wait:g}",
                {"Retry-After": f"{wait:g}"},
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await app(scope, replay, send_logged)

    async def _send_error(
        self,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        body, content_type = self.render_error(status, code, message)
        raw_headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    # -- control surface -------------------------------------------------------------------

    def writes(self) -> list[RequestRecord]:
        """Logged requests that change state (POST/PUT/PATCH/DELETE) and succeeded."""
        return [
            r
            for r in self.requests
            if r.method in {"POST", "PUT", "PATCH", "DELETE"} and 200 <= r.status < 300
        ]

    def control_handlers(self) -> list[Any]:
        kit = self

        def decode(request_body: bytes, type_: type[Any]) -> Any:
            return msgspec.json.decode(request_body or b"{}", type=type_)

        @get("/_sim/requests", sync_to_thread=False)
        def list_requests() -> dict[str, Any]:
            return {"requests": msgspec.to_builtins(kit.requests)}

        @delete("/_sim/requests", status_code=204, sync_to_thread=False)
        def clear_requests() -> None:
            kit.requests.clear()

        @post("/_sim/faults", status_code=201)
        async def add_fault(request: Request[Any, Any, Any]) -> dict[str, Any]:
            fault = decode(await request.body(), Fault)
            kit.faults.append(fault)
            return {"pending": len(kit.faults)}

        @delete("/_sim/faults", status_code=204, sync_to_thread=False)
        def clear_faults() -> None:
            kit.faults.clear()

        @put("/_sim/latency")
        async def set_latency(request: Request[Any, Any, Any]) -> dict[str, Any]:
            kit.latency_ms = decode(await request.body(), LatencyBody).ms
            return {"ms": kit.latency_ms}

        @put("/_sim/rate-limit")
        async def set_rate_limit(request: Request[Any, Any, Any]) -> dict[str, Any]:
            kit.rpm = decode(await request.body(), RateLimitBody).rpm
            kit._window.clear()
            return {"rpm": kit.rpm}

        @post("/_sim/clock")
        async def advance_clock(request: Request[Any, Any, Any]) -> dict[str, Any]:
            kit.advance(decode(await request.body(), ClockBody).advance_s)
            return {"now": kit.now().isoformat()}

        @put("/_sim/webhook")
        async def set_webhook(request: Request[Any, Any, Any]) -> dict[str, Any]:
            target = decode(await request.body(), WebhookTarget)
            kit.webhook_url = target.url
            if target.secret is not None:
                kit.webhook_secret = target.secret
            return {"url": kit.webhook_url}

        @get("/_sim/webhooks", sync_to_thread=False)
        def list_deliveries() -> dict[str, Any]:
            return {"deliveries": msgspec.to_builtins(kit.deliveries)}

        @post("/_sim/webhooks/flush")
        async def flush_deliveries() -> dict[str, Any]:
            await kit.flush()
            return {"deliveries": len(kit.deliveries)}

        return [
            list_requests,
            clear_requests,
            add_fault,
            clear_faults,
            set_latency,
            set_rate_limit,
            advance_clock,
            set_webhook,
            list_deliveries,
            flush_deliveries,
        ]


async def _discard(message: Message) -> None:
    """An ASGI ``send`` that drops the response (for faults with ``after``)."""


def build_app(
    kit: SimKit,
    handlers: Iterable[Any],
    *,
    on_shutdown: Iterable[Callable[[], Awaitable[None]]] = (),
) -> ASGIApp:
    """The simulator's ASGI app: vendor handlers and the control surface behind the gate.

    Litestar's own validation errors are rendered in the vendor's error shape too.
    """
    from litestar.exceptions import HTTPException, ValidationException

    def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        code = "validation_error" if isinstance(exc, ValidationException) else "http_error"
        detail = exc.detail
        if isinstance(exc, ValidationException) and exc.extra:
            detail = f"{exc.detail}: {msgspec.json.encode(exc.extra).decode()}"
        return kit.error(exc.status_code, code, str(detail))

    app = Litestar(
        route_handlers=[*handlers, *kit.control_handlers()],
        exception_handlers={HTTPException: on_http_error},
        on_shutdown=[kit.flush, *on_shutdown],
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    return kit.wrap(app)
