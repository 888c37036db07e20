"""The connection limits of ``syncgate serve`` (``server:`` in config.yaml), proven on a
real process over raw sockets: an oversized head gets 431 at once and /healthz keeps
answering, slow-drip heads and bodies are cut off with 408, idle keep-alive connections
are closed, a connection over ``max_connections`` gets 503 at once, and the file
descriptors held by slow clients are given back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import httpx
import pytest

from app.config import load_config
from app.errors import ConfigError
from tests.blackbox import GatewayProcess, eventually
from tests.hostile.support import gateway

pytestmark = pytest.mark.slow

LIMITS = {
    "max_header_bytes": 8192,
    "header_timeout_s": 1.5,
    "body_timeout_s": 1.5,
    "keep_alive_s": 1,
    "max_connections": 40,
}


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def answer_of(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout_s)


def open_fds(process: GatewayProcess) -> int:
    """The gateway's open socket descriptors (database files open lazily: not counted)."""
    fd_dir = f"/proc/{process.proc.pid}/fd"
    links = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"{fd_dir}/{fd}"))
    return sum(link.startswith("socket:") for link in links)


async def healthz_ok(url: str) -> float:
    """How long /healthz took to answer 200, in seconds."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        started = time.monotonic()
        response = await client.get("/healthz")
        assert response.status_code == 200
        return time.monotonic() - started


async def test_an_oversized_head_gets_431_at_once_and_healthz_keeps_answering(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, server=LIMITS) as gw:
        reader, writer = await connect(gw.url)
        writer.write(b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nX-Big: ")
        started = time.monotonic()
        cpu_before = gw.cpu_seconds()
        sent = 0

        async def send_head() -> None:
            """64 KiB chunks of one header value, up to 64 MiB or until refused."""
            nonlocal sent
            with contextlib.suppress(ConnectionError):
                while sent < 64 * 2**20:
                    writer.write(b"a" * 65536)
                    await writer.drain()
                    sent += 65536

        sender = asyncio.create_task(send_head())
        answer = await answer_of(reader, 10)
        sender.cancel()
        elapsed = time.monotonic() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"application/problem+json" in answer
        assert b"8192-byte limit" in answer
        assert elapsed < 3
        # the rest of the head (while lingering) is discarded unparsed: cheap
        assert gw.cpu_seconds() - cpu_before < 1.0, f"{sent} bytes sent"
        assert await healthz_ok(gw.url) < 1


async def test_a_head_within_the_limit_is_served(tmp_path: Path) -> None:
    async with gateway(tmp_path, server=LIMITS) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        response = await c.get("/healthz", headers={"X-Filler": "a" * 6000})
        assert response.status_code == 200


async def test_slow_drip_heads_and_bodies_are_cut_off_with_408(tmp_path: Path) -> None:
    async with gateway(tmp_path, server=LIMITS) as gw:
        # a head dripped a byte at a time, never finished
        head_reader, head_writer = await connect(gw.url)
        # a complete head, then a body dripped a byte at a time
        body_reader, body_writer = await connect(gw.url)
        body_writer.write(
            b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()

        head_answered, body_answered = asyncio.Event(), asyncio.Event()

        async def drip(writer: asyncio.StreamWriter, data: bytes, answered: asyncio.Event) -> None:
            """The slow client under test: a byte every 0.2 s until the server answers."""
            with contextlib.suppress(ConnectionError):
                for byte in data:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(answered.wait(), 0.2)
                    if answered.is_set():
                        return

        drips = [
            asyncio.create_task(
                drip(head_writer, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" * 9, head_answered)
            ),
            asyncio.create_task(drip(body_writer, b"{" * 1000, body_answered)),
        ]
        head_answer = await answer_of(head_reader, 10)
        head_elapsed = time.monotonic() - started
        head_answered.set()
        body_answer = await answer_of(body_reader, 10)
        body_elapsed = time.monotonic() - started
        body_answered.set()
        for task in drips:
            task.cancel()
        head_writer.close()
        body_writer.close()
        assert head_answer.startswith(b"HTTP/1.1 408 "), head_answer[:200]
        assert b"request headers took over 1.5s" in head_answer
        assert 1.2 < head_elapsed < 5
        assert body_answer.startswith(b"HTTP/1.1 408 "), body_answer[:200]
        assert b"request body took over 1.5s" in body_answer
        assert 1.2 < body_elapsed < 5


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path) -> None:
    async with gateway(tmp_path, server=LIMITS) as gw:
        reader, writer = await connect(gw.url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = await answer_of(reader, 10)  # the answer, then the close when idle
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'{"status":"ok"}' in answer
        assert 0.8 < time.monotonic() - started < 5


async def test_a_connection_over_the_limit_gets_503_and_fds_return(tmp_path: Path) -> None:
    async with gateway(tmp_path, server={**LIMITS, "header_timeout_s": 3}) as gw:
        baseline = open_fds(gw)
        held = [await connect(gw.url) for _ in range(LIMITS["max_connections"])]
        for _, writer in held:  # each starts a request and never finishes it
            writer.write(b"GET /healthz HTTP/1.1\r\n")

        async def opened() -> bool:
            return open_fds(gw) >= baseline + LIMITS["max_connections"]

        await eventually(opened, timeout_s=10, what="the held connections are accepted")
        reader, writer = await connect(gw.url)
        started = time.monotonic()
        answer = await answer_of(reader, 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"over 40 open connections" in answer
        assert time.monotonic() - started < 1
        # the held ones are timed out (408) and their descriptors given back
        answers = [await answer_of(r, 10) for r, _ in held]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
        for _, w in held:
            w.close()

        async def released() -> bool:
            return open_fds(gw) <= baseline

        await eventually(released, timeout_s=10, what="file descriptors back to the baseline")
        assert await healthz_ok(gw.url) < 1


async def test_many_slow_drip_connections_are_all_closed(tmp_path: Path) -> None:
    async with gateway(tmp_path, server={**LIMITS, "max_connections": 512}) as gw:
        baseline = open_fds(gw)
        held = [await connect(gw.url) for _ in range(300)]
        for _, writer in held:
            writer.write(b"POST /webhooks/inboxops HTTP/1.1\r\nHo")
        answers = await asyncio.gather(*(answer_of(r, 15) for r, _ in held))
        for _, w in held:
            w.close()
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)

        async def released() -> bool:
            return open_fds(gw) <= baseline

        await eventually(released, timeout_s=10, what="file descriptors back to the baseline")


def test_the_limits_are_checked_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "server:\n"
        "  max_header_bytes: 100\n"
        "  header_timeout_s: 0\n"
        "  body_timeout_s: -1\n"
        "  keep_alive_s: 0\n"
        "  max_connections: 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    found = {(i.line, i.key): i.message for i in caught.value.issues}
    assert found == {
        (2, "server.max_header_bytes"): "must be at least 1024, got 100",
        (3, "server.header_timeout_s"): "must be greater than 0, got 0",
        (4, "server.body_timeout_s"): "must be greater than 0, got -1",
        (5, "server.keep_alive_s"): "must be greater than 0, got 0",
        (6, "server.max_connections"): "must be at least 1, got 0",
    }
