"""The simulators' request gate: the ASGI wrapper in front of every vendor route (not
``/_sim/``), shared by every simulator through ``SimKit``:

    latency -> injected fault -> auth -> rate limit -> vendor handler -> logged

Every request is logged (``RequestRecord``, credentials redacted); ``Fault`` is an
injected failure. Rate-limit headers (where the vendor documents them) go on every
response to an authenticated request, 429s included. Without a requests-per-minute limit
they advertise the vendor's documented default allowance and count down, unenforced.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec

# ASGI plumbing is typed loosely on purpose: the gate forwards whatever the server sends.
Scope = Any
Message = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

ErrorRenderer = Callable[[int, str, str], tuple[bytes, str]]
"""(status, code, message) -> (body, content type) in the vendor's own error shape."""

RateLimitHeaders = Callable[[int, int, float], dict[str, str]]
"""(limit, remaining, seconds until the window resets) -> the vendor's rate-limit headers."""

#: Draws for the faults met by chance (not for anything secret).
_CHANCE = random.Random()

REDACTED = "[redacted]"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    """The next ``count`` matching calls fail: with ``status`` (and ``Retry-After`` when
    ``retry_after`` is set), or by hanging ``timeout_s`` seconds before a 504. With
    ``after`` the call is carried out first and only its answer is lost (the case
    idempotent creates exist for). With a ``chance`` below 1, each matching call meets
    the fault with that probability, drawn afresh per call, until ``count`` have: a
    failure rate independent of when calls come (the soak's faults)."""

    status: int = 500
    count: int = 1
    chance: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    retry_after: float | None = None
    timeout_s: float | None = None
    methods: list[str] | None = None
    path_prefix: str | None = None
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not (self.path_prefix and not path.startswith(self.path_prefix))


class RequestRecord(msgspec.Struct):
    seq: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    at: float = 0.0


class RequestGate:
    """The gate half of ``SimKit``: what it reads of the kit is declared here."""

    api_key: str
    read_only_api_key: str | None
    auth_header: str
    auth_prefix: str
    render_error: ErrorRenderer
    latency_ms: float
    rpm: int | None
    default_rpm: int | None
    _rate_limit_headers: RateLimitHeaders | None
    requests: list[RequestRecord]
    faults: collections.deque[Fault]
    _seq: itertools.count[int]
    _window: collections.deque[float]

    def limit_rate(self, rpm: int | None) -> None:
        """Enforce ``rpm`` requests per minute (None: unlimited), counting afresh."""
        self.rpm = rpm
        self._window.clear()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The simulator's ASGI app: ``app`` behind latency, faults, auth and rate limit."""
        kit = self

        async def gated(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith("/_sim"):
                await app(scope, receive, send)
                return
            await kit._gate(app, scope, receive, send)

        return gated

    def _key(self, headers: dict[str, str]) -> str | None:
        """Which key the request carries: "full", "read_only", or None (no valid key)."""
        value = headers.get(self.auth_header)
        if value is None:
            return None
        if value == self.auth_prefix + self.api_key:
            return "full"
        if self.read_only_api_key and value == self.auth_prefix + self.read_only_api_key:
            return "read_only"
        return None

    def _count(self) -> None:
        """Trim the sliding window to the last minute (it counts every authorized request,
        for the rate-limit headers, whether or not a limit is enforced)."""
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60.0:
            self._window.popleft()

    def _rate_limited(self) -> float | None:
        """Seconds to wait if this request is over the per-minute limit, else None (and
        the request is counted)."""
        self._count()
        now = time.monotonic()
        if self.rpm is not None and len(self._window) >= self.rpm:
            return max(1.0, math.ceil(60.0 - (now - self._window[0])))
        self._window.append(now)
        return None

    def _allowance_headers(self) -> list[tuple[bytes, bytes]]:
        """The vendor's rate-limit headers for the window as it stands."""
        limit = self.rpm if self.rpm is not None else self.default_rpm
        if self._rate_limit_headers is None or limit is None:
            return []
        self._count()
        remaining = max(0, limit - len(self._window))
        reset = 60.0 - (time.monotonic() - self._window[0]) if self._window else 60.0
        extra = self._rate_limit_headers(limit, remaining, max(0.0, reset))
        return [(k.lower().encode(), v.encode()) for k, v in extra.items()]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path) and (
                fault.chance >= 1.0 or _CHANCE.random() < fault.chance
            ):
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

        key = self._key(headers)

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                if key is not None:  # every authenticated response carries the allowance
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), *self._allowance_headers()],
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
        key = self._key(headers)
        if key is None:
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
        if key == "read_only" and record.method in WRITE_METHODS:
            await self._send_error(
                send_logged, 403, "insufficient_scope", "this API key is read-only"
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


async def _discard(message: Message) -> None:
    """An ASGI ``send`` that drops the response (for faults with ``after``)."""
