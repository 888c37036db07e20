"""Serving ASGI apps on loopback with uvicorn, in the current event loop.

Used by ``syncgate serve``, ``syncgate simulate``, the demo, the benchmarks and the tests.
The listening socket is bound before uvicorn starts, so the URL is valid (connections
queue in the backlog) the moment ``serve_asgi`` yields it: no readiness polling.

``syncgate serve`` faces the internet (webhooks are public), so it runs uvicorn with
``ConnectionLimits`` (``server:`` in config.yaml): uvicorn's httptools protocol bounds
neither the size of a request head nor the time a client may take to send it or its
body, and ``limit_concurrency`` answers 503 only once a request's headers are complete,
so idle and slow connections still hold their sockets. ``GuardedHttpToolsProtocol``
adds those bounds at the transport, before the app sees anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("syncgate.serving")

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop's event loop when it is installed (a faster
    loop for the gateway and the simulators: see docs/benchmarks.md), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a declared dependency, absent on Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, small responses wait on Nagle's
    # algorithm and delayed ACKs (about 40 ms per request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


#: Where ``spare_port`` looks when the kernel's ephemeral range cannot be read.
_EPHEMERAL_LOW = 32768
_SPARE_LOW = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW


def spare_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on, for a process that is started later
    and binds it itself (the tests and benchmarks start ``syncgate serve`` on a port the
    simulators must know first).

    Taken at random from below the kernel's ephemeral range: a port from port 0 is
    ephemeral, and any outgoing connection may get it as its local port before the
    process it was meant for binds it (a parallel test suite makes thousands). Ports
    below the range are only ever taken by a bind."""
    low = _ephemeral_low()
    if low <= _SPARE_LOW + 1000:  # a range that leaves no room below it: the kernel's
        sock = bind_socket(host)
        port = int(sock.getsockname()[1])
        sock.close()
        return port
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(_SPARE_LOW, low)
        try:
            sock = bind_socket(host, port)
        except OSError:
            continue
        sock.close()
        return port


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: str = "auto",
    log_level: str = "warning",
    access_log: bool = False,
    sock: socket.socket | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` until the block exits; yields its base URL (``http://host:port``).
    ``sock``: an already bound listening socket to serve on (its URL can be handed out
    before the app exists)."""
    sock = sock or bind_socket(host, port)
    host = sock.getsockname()[0]
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class Server(uvicorn.Server):
    """uvicorn's server, whose process exits 0 after a graceful stop on SIGTERM.

    uvicorn (0.29 on) catches SIGINT and SIGTERM, shuts down gracefully, then raises the
    signal it caught again once its handlers are restored: SIGTERM's default action then
    kills the process (exit 143 from a shell, -15 to Python) after a clean drain. This
    server forgets the signal once the shutdown has completed; a shutdown that fails
    still raises it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may cost (``server:`` in config.yaml)."""

    #: A request line and headers larger than this are answered 431 and the connection
    #: closed.
    max_header_bytes: int = 65_536
    #: From a connection's start (or a request's first byte) to the end of its headers;
    #: past it: 408 and closed.
    header_timeout_s: float = 10.0
    #: From the end of the headers to the end of the body; past it: 408 and closed.
    body_timeout_s: float = 30.0
    #: An idle keep-alive connection is closed after this (uvicorn's own timer).
    keep_alive_s: float = 5.0
    #: Open connections at once; one more is answered 503 and closed at once.
    max_connections: int = 512


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of ``limits`` (a subclass per set of
    limits: ``guarded_protocol``). Every refusal is a complete HTTP answer with a
    problem+json body and ``connection: close``, then the socket is closed."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    #: How long a refused connection's further input is read and discarded.
    LINGER_S: ClassVar[float] = 2.0
    _last_logged: ClassVar[dict[str, float]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._header_bytes = 0
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            limit = self.limits.max_connections
            self._refuse(503, "Service unavailable", f"over {limit} open connections")
            return
        self._arm(self.limits.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding or self.transport.is_closing():
            return
        super().data_received(data)
        if self._reading_headers and not self.transport.is_closing():
            # counted per chunk read (at most 256 KiB), after httptools has consumed it:
            # httptools buffers a partial header in Python bytes, at a cost that grows
            # with its square, so the head must stop growing early
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(
                    431,
                    "Request header fields too large",
                    f"the request line and headers are over the {limit}-byte limit",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        if self._deadline is None:
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._disarm()
        self._arm(self.limits.body_timeout_s, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- deadlines -------------------------------------------------------------------------

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def eof_received(self) -> None:
        if self._discarding:
            self.transport.close()

    def _expired(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self._discarding or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # a response is under way: it cannot be replaced
            return
        self._refuse(408, "Request timeout", f"the request {part} took over {seconds:g}s")

    def _refuse(self, status: int, title: str, detail: str) -> None:
        self._disarm()
        self._log(status, detail)
        body = msgspec.json.encode(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        )
        head = [
            STATUS_LINE[status],
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's answer, if any, goes nowhere
        self.transport.write(b"".join(head) + body)
        # A lingering close: closing with unread input would reset the connection, and
        # the client could lose the answer. Send it and a FIN, discard what still comes,
        # and close on the client's FIN or after LINGER_S, whichever is first.
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(self.LINGER_S, self.transport.close)
        else:  # pragma: no cover - TCP transports can
            self.transport.close()

    def _log(self, status: int, detail: str) -> None:
        """One warning per status per 10 s: a flood of refusals must not flood the log."""
        now = time.monotonic()
        key = str(status)
        if now - self._last_logged.get(key, -1e9) < 10.0:
            return
        self._last_logged[key] = now
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.warning(
            "connection refused",
            extra={"status": status, "reason": detail, "client": client},
        )


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A ``GuardedHttpToolsProtocol`` class bound to ``limits`` (uvicorn's ``http=``)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def server_config(app: Any, limits: ConnectionLimits, **options: Any) -> uvicorn.Config:
    """A uvicorn config for a public-facing server: the guarded protocol and the
    keep-alive timeout of ``limits``."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        # typed int, used only as a call_later delay: a fraction of a second works
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
        **options,
    )
