"""Serving ASGI apps on loopback with uvicorn, in the current event loop.

Used by ``syncgate serve``, ``syncgate simulate``, the demo, the benchmarks and the tests.
The listening socket is bound before uvicorn starts, so the URL is valid (connections
queue in the backlog) the moment ``serve_asgi`` yields it: no readiness polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import uvicorn

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
