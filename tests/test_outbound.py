"""The client every adapter is given (``app.gateway.http_client``, ``app/outbound.py``),
against a real local HTTP server: no cookie crosses from one call to the next, bodies are
read whole (and still decoded), the connection is pooled, and a failure is still one of
the error families."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from adapters._http import send
from app.config.schema import SystemSettings
from app.errors import TransientError
from app.gateway import http_client
from app.outbound import AIOHTTP_HEADERS, _merged, _request, _response, _target, read_whole
from tests.blackbox import free_port


class Server:
    """A small aiohttp server that remembers what it was sent."""

    def __init__(self) -> None:
        self.cookies_seen: list[str | None] = []
        self.peers: set[object] = set()
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/login", self.login)
        self.app.router.add_get("/whoami", self.whoami)
        self.app.router.add_get("/gzip", self.gzipped)
        self.app.router.add_put("/echo", self.echo)
        self.app.router.add_get("/inspect", self.inspect)
        self.app.router.add_get("/hang", self.hang)

    def _seen(self, request: web.Request) -> None:
        self.cookies_seen.append(request.headers.get("Cookie"))
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)

    async def login(self, request: web.Request) -> web.Response:
        self._seen(request)
        response = web.json_response({"ok": True})
        response.set_cookie("session", "vendor-session-token", path="/")
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"ok": True})

    async def gzipped(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = gzip.compress(b'{"compressed": true}')
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=await request.read(), content_type="application/json")

    async def inspect(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response(
            {
                "query": request.raw_path.partition("?")[2],  # as it came on the wire
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )

    async def hang(self, request: web.Request) -> web.Response:
        self._seen(request)
        await self.release.wait()  # a vendor that does not answer until the test ends
        return web.json_response({"late": True})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[str, Server]]:
    server = Server()
    runner = web.AppRunner(server.app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.release.set()
        await runner.cleanup()


def system(url: str) -> SystemSettings:
    return SystemSettings(base_url=url, api_key_env="UNUSED_KEY", proxy="")


async def test_a_vendor_cookie_is_never_sent_back() -> None:
    async with serving() as (url, server):
        client = http_client(system(url))
        try:
            first = await send(client, "hookstream", "GET", f"{url}/login", lambda _: None)
            assert "session=vendor-session-token" in first.headers["set-cookie"]
            await send(client, "hookstream", "GET", f"{url}/whoami", lambda _: None)
        finally:
            await client.aclose()
    assert server.cookies_seen == [None, None]
    assert len(client.cookies) == 0


async def test_bodies_are_read_whole_decoded_and_the_connection_is_reused() -> None:
    async with serving() as (url, server):
        client = http_client(system(url))
        try:
            zipped = await send(client, "hookstream", "GET", f"{url}/gzip", lambda _: None)
            assert zipped.json() == {"compressed": True}
            payload = b'{"status": "resolved", "note": "' + b"x" * 200_000 + b'"}'
            for _ in range(5):
                echoed = await send(
                    client,
                    "hookstream",
                    "PUT",
                    f"{url}/echo",
                    lambda _: None,
                    content=payload,
                    headers={"Content-Type": "application/json"},
                )
                assert echoed.content == payload
        finally:
            await client.aclose()
    # six sequential calls, one keep-alive connection: each body was read to its end
    # and the connection went back to the pool
    assert len(server.peers) == 1


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([(b"Content-Type", b"application/json")], b'{"id": "iss_1", "n": [1, 2]}'),
        ([], b""),
        ([(b"Content-Encoding", b"gzip")], gzip.compress(b'{"zipped": true}', mtime=0)),
    ],
    ids=["json", "empty", "gzip"],  # the same ids in every pytest-xdist worker
)
def test_a_body_read_whole_leaves_the_response_as_httpx_reading_it_would(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    request = httpx.Request("GET", "http://vendor.test/x")
    read = httpx.Response(200, headers=headers, stream=httpx.ByteStream(body), request=request)
    read.read()
    taken = read_whole(
        httpx.Response(200, headers=headers, stream=httpx.ByteStream(body), request=request),
        body,
        encoded=any(name.lower() == b"content-encoding" for name, _ in headers),
    )
    assert taken.content == read.content
    assert taken.text == read.text
    assert list(taken.iter_bytes()) == list(read.iter_bytes())
    assert (taken.is_closed, taken.is_stream_consumed) == (read.is_closed, read.is_stream_consumed)
    assert taken.num_bytes_downloaded == read.num_bytes_downloaded
    assert taken.headers.multi_items() == read.headers.multi_items()


async def test_a_refused_connection_is_a_transient_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = http_client(system(url))
    try:
        with pytest.raises(TransientError, match="connection refused"):
            await send(client, "hookstream", "GET", f"{url}/whoami", lambda _: None)
    finally:
        await client.aclose()


async def test_the_client_refuses_a_cookie_jar() -> None:
    client = http_client(system("http://127.0.0.1:9"))
    try:
        with pytest.raises(ValueError, match="no cookies"):
            client.cookies = {"session": "x"}
    finally:
        await client.aclose()


async def test_params_and_headers_reach_the_vendor_with_the_clients_defaults() -> None:
    async with serving() as (url, _server):
        client = http_client(system(url))
        try:
            response = await send(
                client,
                "hookstream",
                "GET",
                f"{url}/inspect",
                lambda _: None,
                headers={"X-API-Key": "key-1", "Accept": "application/json"},
                params={"status": "all", "offset": 200, "sort": "updatedAt,desc"},
            )
        finally:
            await client.aclose()
    seen = response.json()
    # exactly as httpx encoded it (aiohttp's URL type would requote %2C as a comma)
    assert seen["query"] == "status=all&offset=200&sort=updatedAt%2Cdesc"
    headers = seen["headers"]
    assert headers["x-api-key"] == "key-1"
    assert headers["accept"] == "application/json"  # the call's own, over the default
    assert headers["user-agent"].startswith("python-httpx/")  # the client's default
    assert response.request.url.params["offset"] == "200"
    assert response.elapsed.total_seconds() >= 0


async def test_a_url_given_whole_goes_out_as_written_every_time() -> None:
    """A URL with its query already in it (no params) is parsed once and reused: the
    second call to it, like the first, sends exactly what the adapter wrote."""
    async with serving() as (url, _server):
        client = http_client(system(url))
        target = f"{url}/inspect?sort=updatedAt%2Cdesc&q=caf%C3%A9+au+lait"
        try:
            first, second = [
                await send(client, "devhelm", "GET", target, lambda _: None) for _ in range(2)
            ]
        finally:
            await client.aclose()
    for response in (first, second):
        assert response.json()["query"] == "sort=updatedAt%2Cdesc&q=caf%C3%A9+au+lait"
        assert str(response.request.url) == target
        assert response.request.url.params["q"] == "café au lait"


async def test_a_vendor_that_never_answers_times_out_as_a_transient_error() -> None:
    async with serving() as (url, _server):
        settings = SystemSettings(base_url=url, api_key_env="UNUSED_KEY", proxy="", timeout_s=0.3)
        client = http_client(settings)
        try:
            with pytest.raises(TransientError, match="timeout"):
                await send(client, "hookstream", "GET", f"{url}/hang", lambda _: None)
        finally:
            await client.aclose()


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST", "PUT", "PATCH", "patch"])
@pytest.mark.parametrize("content", [None, b"", b'{"status": "resolved"}'])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081/api/v1/tickets/7",
        "https://api.example.com/v2/follow_ups?page_size=25&after=01J",
        "http://example.com:80/x",
    ],
)
def test_a_request_built_the_short_way_is_the_one_httpx_builds(
    method: str, content: bytes | None, url: str
) -> None:
    """``_request`` hands httpx the framing it would work out itself: the request must be
    the same in every part a transport or an error reads (an httpx upgrade that changes
    its framing fails here)."""
    defaults = tuple(httpx.AsyncClient().headers.raw)
    merged = _merged(defaults, (("authorization", "Bearer k"), ("accept", "x/y")))
    assert not merged.framed
    target, _ = _target(url)
    ours = _request(method, target, merged, content, {"timeout": {"read": 10.0}})
    theirs = httpx.Request(
        method,
        target,
        headers=merged.headers,
        content=content,
        extensions={"timeout": {"read": 10.0}},
    )
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert ours.headers.raw == theirs.headers.raw
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.headers.encoding == theirs.headers.encoding
    assert ours.content == theirs.content
    assert b"".join(ours.stream) == b"".join(theirs.stream)  # type: ignore[arg-type]
    # what aiohttp is given is what httpx-aiohttp would give it: the headers' str pairs
    assert ours.extensions.pop(AIOHTTP_HEADERS) == theirs.headers.multi_items()
    assert ours.extensions == theirs.extensions


@pytest.mark.parametrize("reason", ["OK", "", None])
@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            [(b"Content-Type", b"application/json"), (b"X-RateLimit-Remaining", b"7")],
            b'{"id": "iss_1"}',
        ),
        ([(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-Note", "caf\xe9".encode())], b""),
        ([(b"Content-Encoding", b"gzip")], gzip.compress(b'{"zipped": true}', mtime=0)),
    ],
    ids=["json", "repeated-and-latin1", "gzip"],
)
def test_a_response_built_the_short_way_is_the_one_httpx_aiohttp_builds(
    raw: list[tuple[bytes, bytes]], body: bytes, reason: str | None
) -> None:
    request = httpx.Request("GET", "http://vendor.test/x")
    extensions = {"http_version": b"HTTP/1.1"}
    if reason:
        extensions["reason_phrase"] = reason.encode()
    theirs = httpx.Response(
        201, headers=raw, stream=httpx.ByteStream(body), request=request, extensions=extensions
    )
    theirs.read()
    ours = _response(request, 201, reason, raw, body)
    assert ours.status_code == theirs.status_code
    assert ours.headers.raw == theirs.headers.raw
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.headers.encoding == theirs.headers.encoding
    assert ours.headers.get_list("set-cookie") == theirs.headers.get_list("set-cookie")
    assert ours.content == theirs.content
    assert ours.extensions == theirs.extensions
    assert ours.reason_phrase == theirs.reason_phrase
    assert ours.request is theirs.request
    assert (ours.is_closed, ours.is_stream_consumed) == (
        theirs.is_closed,
        theirs.is_stream_consumed,
    )


def test_a_call_that_frames_its_own_body_is_built_by_httpx() -> None:
    defaults = tuple(httpx.AsyncClient().headers.raw)
    for own in (("Host", "vendor.example"), ("Content-Length", "3"), ("transfer-encoding", "x")):
        assert _merged(defaults, (own,)).framed, own


class WireRecorder:
    """A bare HTTP/1.1 server on loopback that keeps each request's bytes as they came on
    the wire (head and body) and answers 200 with a small JSON body."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("GET", {}),
        ("GET", {"params": {"status": "all", "sort": "updatedAt,desc"}}),
        ("PUT", {"content": b'{"status": "resolved"}'}),
        ("PATCH", {"content": b'{"title": "caf\xc3\xa9"}'}),
        ("POST", {"content": b""}),
        ("DELETE", {}),
    ],
    ids=["get", "get-params", "put", "patch-utf8", "post-empty", "delete"],
)
async def test_the_bytes_on_the_wire_are_the_ones_httpx_aiohttp_sends(
    method: str, kwargs: dict[str, object]
) -> None:
    """The gateway's client builds requests and their headers its own way
    (``app/outbound.py``): what reaches the vendor must be, byte for byte, what stock
    httpx on httpx-aiohttp's transport sends for the same call, but for a query, which
    goes out as httpx encoded it."""
    recorder = WireRecorder()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/v1/tickets/7"
    headers = {"Authorization": "Bearer k-1", "Accept": "application/json"}
    ours = http_client(system(f"http://127.0.0.1:{port}"))
    stock = httpx.AsyncClient(timeout=httpx.Timeout(10.0), transport=AiohttpTransport())
    try:
        for client in (ours, stock):
            response = await client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 200 and response.json() == {"ok": True}
    finally:
        await ours.aclose()
        await stock.aclose()
        server.close()
        await server.wait_closed()
    sent, expected = recorder.requests
    line, _, rest = sent.partition(b"\r\n")
    stock_line, _, stock_rest = expected.partition(b"\r\n")
    assert rest == stock_rest  # every header, in order, and the body
    # the target exactly as httpx encodes it; stock httpx-aiohttp lets yarl requote the
    # query (``%2C`` went out as ``,``: app/outbound.py, ``_target``), so only there
    # may the two lines differ
    target = httpx.URL(url, params=kwargs.get("params")).raw_path  # type: ignore[arg-type]
    assert line == b"%s %s HTTP/1.1" % (method.encode(), target)
    if "params" not in kwargs:
        assert line == stock_line
