"""Shared machinery of the vendor simulators: the ``Simulator`` base class, and the
``SimKit`` behind it (request log, fault injection, latency, requests-per-minute limit, a
settable clock, and signed webhook delivery with retries).

A vendor simulator subclasses ``Simulator`` and declares only what is its own: its vendor
name and authentication, its error shape, its state, its vendor routes and its own
``/_sim/`` routes, and the objects a person sees in the vendor's UI (``objects()``). The
base builds the ``SimKit`` from ``SimOptions`` and serves one app: the vendor's routes,
SimKit's common ``/_sim/`` surface and ``GET /_sim/objects``, all behind
``SimKit.wrap``. The wrapper sits in front of every vendor route (not ``/_sim/``):

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
    GET    /_sim/behaviour           {"behaviour": {name: value}, "choices": {name: [...]}}
    PUT    /_sim/behaviour           {name: value, ...}: play another documented reading
    GET    /_sim/objects             {"objects": [...]}: every object the simulator holds
                                     (issues, incidents, tickets, follow-ups), in the
                                     vendor's own JSON and in the simulator's order

Each simulator adds its own control routes (``POST /_sim/seed``, ``PATCH
/_sim/objects/{id}`` for a person's change, ...), listed in its module docstring.

Seeding from a Syncgate config: ``SimOptions.seed_config`` names a Syncgate config file,
and the simulator starts with the containers that file names in its vendor (DevHelm status
pages, InboxOps inboxes, incident.io incidents; ``config_names`` reads them), so a gateway
run by hand with the same file finds what it polls and creates in.

Behaviour options: where a vendor's documents allow more than one reading, the simulator
plays each one under a named option (``Behaviour``); the default is the documented or most
likely reading. They are set at start (``SimOptions.behaviour``) or at runtime
(``PUT /_sim/behaviour``), and each simulator's docstring lists its own.

Webhook delivery follows the vendor's retry schedule (``SVIX_SCHEDULE`` unless the
simulator gives another): each delivery is retried after the listed delays until a 2xx,
then given up. ``SimOptions.webhook_time_scale`` compresses those delays for tests (1.0 is
real time; 1e-5 plays a day in under a second). Signature timestamps are always the wall
clock at the moment of each attempt, never the simulated clock: a receiver checks them
against its own clock, and the vendor's sender does not share our time machine.

Rate-limit headers (where the vendor documents them) go on every response to an
authenticated request, 429s included. Without a requests-per-minute limit they advertise
the vendor's documented default allowance and count down, unenforced.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import ValidationException

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

RateLimitHeaders = Callable[[int, int, float], dict[str, str]]
"""(limit, remaining, seconds until the window resets) -> the vendor's rate-limit headers."""

REDACTED = "[redacted]"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Svix's retry schedule (https://docs.svix.com/retries): the delay before each attempt,
#: each counted from the failure of the one before: immediately, 5 s, 5 min, 30 min, 2 h,
#: 5 h, 10 h, 10 h. Standard Webhooks senders (InboxOps, assumed) use it too.
SVIX_SCHEDULE: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: How long a sender waits for the receiver's answer (Svix: 15 s).
WEBHOOK_TIMEOUT_S = 15.0


class Behaviour(msgspec.Struct, frozen=True):
    """One reading the vendor's documents allow: ``choices[0]`` is the default (the
    documented or most likely reading). With ``choices`` empty the value is free, of the
    default's type (an org id, ...)."""

    choices: tuple[Any, ...] = ()
    default: Any = None
    doc: str = ""

    @property
    def initial(self) -> Any:
        return self.choices[0] if self.choices else self.default

    def check(self, name: str, value: Any) -> Any:
        if self.choices:
            if value not in self.choices or isinstance(value, bool) != isinstance(
                self.choices[0], bool
            ):
                allowed = ", ".join(
                    str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices
                )
                raise ValueError(f"behaviour {name}: {value!r} is not one of {allowed}")
            return value
        if not isinstance(value, type(self.default)):
            raise ValueError(
                f"behaviour {name}: expected {type(self.default).__name__}, got {value!r}"
            )
        return value


def resolve_behaviour(
    spec: dict[str, Behaviour], given: dict[str, Any], vendor: str
) -> dict[str, Any]:
    """The defaults of ``spec`` overlaid with ``given``; an unknown name or a value outside
    the documented readings is a ``ValueError`` (a simulator starts only with a contract it
    can play)."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise ValueError(
            f"{vendor} simulator has no behaviour {', '.join(unknown)} (known: {known})"
        )
    out = {name: b.initial for name, b in spec.items()}
    for name, value in given.items():
        out[name] = spec[name].check(name, value)
    return out


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


class SimOptions(msgspec.Struct, kw_only=True):
    """How a simulator is started (``syncgate simulate`` flags map onto these).

    ``webhook_time_scale`` multiplies the vendor's webhook retry delays (1.0: real time).
    ``behaviour`` picks among the readings the vendor's documents allow (each simulator
    lists its own; unknown names are refused). ``read_only_api_key`` is a second key that
    may read but gets 403 ``insufficient_scope`` on every write (InboxOps documents such
    keys; the other vendors have key roles too). ``seed_config`` is the path of a Syncgate
    config file: the simulator starts with the containers it names in this vendor (see
    ``config_names``); an unreadable file or a malformed id is a ``ValueError`` at start."""

    api_key: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    latency_ms: float = 0.0
    rpm: int | None = None
    webhook_time_scale: float = 1.0
    behaviour: dict[str, Any] = msgspec.field(default_factory=dict)
    read_only_api_key: str | None = None
    seed_config: str | None = None


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
        webhook_schedule: tuple[float, ...] = SVIX_SCHEDULE,
        webhook_time_scale: float = 1.0,
        webhook_client: httpx.AsyncClient | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        default_rpm: int | None = None,
        behaviours: dict[str, Behaviour] | None = None,
        behaviour: dict[str, Any] | None = None,
        read_only_api_key: str | None = None,
    ) -> None:
        if not webhook_schedule or webhook_schedule[0] != 0.0:
            raise ValueError("a webhook schedule starts with an immediate attempt (0.0)")
        if not (webhook_time_scale >= 0 and math.isfinite(webhook_time_scale)):
            raise ValueError("webhook_time_scale must be a finite number >= 0")
        self.vendor = vendor
        self.api_key = api_key
        self.read_only_api_key = read_only_api_key
        self.auth_header = auth_header.lower()
        self.auth_prefix = auth_prefix
        self.render_error = render_error
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.latency_ms = latency_ms
        self.rpm = rpm
        self.webhook_schedule = webhook_schedule
        self.webhook_time_scale = webhook_time_scale
        self._webhook_client = webhook_client
        self._rate_limit_headers = rate_limit_headers
        #: The allowance the rate-limit headers advertise when no limit is enforced.
        self.default_rpm = default_rpm
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.behaviour: dict[str, Any] = resolve_behaviour(
            self.behaviours, dict(behaviour or {}), vendor
        )
        self.requests: list[RequestRecord] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self.deliveries: list[DeliveryRecord] = []
        self._seq = itertools.count(1)
        self._window: collections.deque[float] = collections.deque()
        self._pending: set[asyncio.Task[None]] = set()
        self._offset = timedelta(0)
        self._last_now = datetime.fromtimestamp(0, tz=UTC)
        self._timers: list[Callable[[], None]] = []

    @property
    def webhook_attempts(self) -> int:
        """How many attempts a delivery gets before the sender gives up."""
        return len(self.webhook_schedule)

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
        rate_limit_headers: RateLimitHeaders | None = None,
        default_rpm: int | None = None,
        behaviours: dict[str, Behaviour] | None = None,
        webhook_schedule: tuple[float, ...] = SVIX_SCHEDULE,
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
            webhook_schedule=webhook_schedule,
            webhook_time_scale=options.webhook_time_scale,
            webhook_client=webhook_client,
            rate_limit_headers=rate_limit_headers,
            default_rpm=default_rpm,
            behaviours=behaviours,
            behaviour=options.behaviour,
            read_only_api_key=options.read_only_api_key,
        )

    def set_behaviour(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Switch readings at runtime (all or nothing); returns the behaviour now in effect."""
        self.behaviour = resolve_behaviour(
            self.behaviours, {**self.behaviour, **changes}, self.vendor
        )
        return dict(self.behaviour)

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
        client = self._webhook_client or httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        try:
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
        finally:
            if self._webhook_client is None:
                await client.aclose()

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
            try:
                return msgspec.json.decode(request_body or b"{}", type=type_)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                # a 400 in the vendor's error shape (build_app renders it), not a 500
                raise ValidationException(detail=f"control body: {exc}") from None

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

        def behaviour_view() -> dict[str, Any]:
            return {
                "behaviour": dict(kit.behaviour),
                "choices": {name: list(b.choices) for name, b in kit.behaviours.items()},
            }

        @get("/_sim/behaviour", sync_to_thread=False)
        def get_behaviour() -> dict[str, Any]:
            return behaviour_view()

        @put("/_sim/behaviour")
        async def set_behaviour(request: Request[Any, Any, Any]) -> Any:
            try:
                kit.set_behaviour(decode(await request.body(), dict[str, Any]))
            except (ValueError, msgspec.ValidationError) as exc:
                return kit.error(400, "validation_error", str(exc))
            return behaviour_view()

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
            get_behaviour,
            set_behaviour,
        ]


async def _discard(message: Message) -> None:
    """An ASGI ``send`` that drops the response (for faults with ``after``)."""
