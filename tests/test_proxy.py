"""Vendors reached through an outbound proxy (``systems.<name>.proxy``, or the
environment's ``HTTP(S)_PROXY`` with ``NO_PROXY``), through a real local proxy; and a
connection that fails reported as what it is, not as a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from adapters._http import send
from adapters.devhelm.adapter import DevHelmAdapter
from app.config.schema import SystemSettings
from app.errors import TransientError
from app.gateway import http_client, proxy_for
from app.serving import serve_asgi
from app.store import Store
from tests.blackbox import free_port
from tests.contract.kits import KITS
from tests.rig import running_rig, secrets

INCIDENTS = "/api/v1/status-pages/{page}/incidents"


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal HTTP forward proxy on loopback; yields its URL and the request lines it
    forwarded (``GET http://host:port/path``)."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with httpx.AsyncClient() as upstream:
            while line := await reader.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen.append(f"{method} {target}")
                for hop in ("proxy-connection", "connection", "host", "content-length"):
                    headers.pop(hop, None)
                answer = await upstream.request(method, target, headers=headers, content=body)
                writer.write(
                    f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}\r\n".encode()
                    + b"".join(
                        f"{k}: {v}\r\n".encode()
                        for k, v in answer.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")
                    )
                    + f"content-length: {len(answer.content)}\r\n\r\n".encode()
                    + answer.content
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def system(base_url: str, **more: object) -> SystemSettings:
    return SystemSettings(base_url=base_url, api_key_env="X", timeout_s=5, **more)  # type: ignore[arg-type]


async def test_the_vendor_is_reached_through_the_configured_proxy() -> None:
    kit = KITS["devhelm"]
    sim = kit.simulator(options=kit.sim_options())
    async with serve_asgi(sim.app) as url, forward_proxy() as (proxy, seen):
        client = http_client(system(url, proxy=proxy))
        try:
            adapter = DevHelmAdapter(kit.settings(url), client)
            page = kit.scopes[0]
            listed = [o async for batch in adapter.list_changed(None) for o in batch]
        finally:
            await client.aclose()
    assert listed == []
    assert seen and all(line.startswith(f"GET {url}{INCIDENTS.format(page=page)}") for line in seen)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128", "NO_PROXY": "example.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "other.org"}, "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, None),  # http_proxy is for http:// URLs
        ({}, None),
    ],
)
def test_the_environment_proxy_is_honoured_with_no_proxy(
    environ: dict[str, str], expected: str | None
) -> None:
    assert proxy_for(system("https://api.example.com"), environ) == expected


def test_the_configured_proxy_wins_and_empty_means_none() -> None:
    env = {"HTTPS_PROXY": "http://env-proxy:3128"}
    assert proxy_for(system("https://api.example.com", proxy="http://mine:8080"), env) == (
        "http://mine:8080"
    )
    assert proxy_for(system("https://api.example.com", proxy=""), env) is None


async def test_a_refused_connection_is_reported_as_refused_not_as_a_timeout() -> None:
    port = free_port()  # nothing listens there
    client = http_client(system(f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(TransientError) as info:
            await send(client, "devhelm", "GET", f"http://127.0.0.1:{port}/x", lambda _: None)
    finally:
        await client.aclose()
    assert "connection refused" in str(info.value) and "timeout" not in str(info.value)


async def test_a_reload_that_sets_a_proxy_or_a_timeout_gives_the_system_a_new_client(
    store: Store,
) -> None:
    """A reload answered 200 but kept each system's HTTP client as it was made at start:
    a new ``proxy``, ``timeout_s`` or ``max_connections`` did nothing until a restart."""
    async with running_rig(store) as rig, forward_proxy() as (proxy, seen):
        gateway = rig.gateway
        before = gateway.adapters["devhelm"].client
        unchanged = gateway.adapters["inboxops"].client
        devhelm = msgspec.structs.replace(
            gateway.settings.systems["devhelm"], proxy=proxy, timeout_s=3.0
        )
        systems = {**gateway.settings.systems, "devhelm": devhelm}
        gateway.reload(msgspec.structs.replace(gateway.settings, systems=systems), secrets())
        client = gateway.adapters["devhelm"].client
        assert client is not before and client.timeout == httpx.Timeout(3.0)
        assert gateway.adapters["inboxops"].client is unchanged  # its settings are the same
        await gateway.pollers.poll("devhelm")
        assert seen and all(line.startswith("GET http://127.0.0.1:") for line in seen)
