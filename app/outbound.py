"""The HTTP client each adapter is given: httpx's API on aiohttp's connection pool, with
the per-call work a vendor API does not need left out.

Every change costs the gateway six vendor calls (three reads before writes, three
writes), so the client's own CPU per call is a large share of the gateway's
(docs/benchmarks.md, "Profile"). Two things are left out, both measured there:

- **Cookies.** Vendor APIs authenticate with keys and tokens in headers; none of the
  four sets or needs a cookie. httpx nevertheless runs every response through
  ``http.cookiejar`` (building a ``urllib`` request for it), and aiohttp filters its own
  jar for every request. ``VendorClient`` keeps no cookies (``NoCookies``) and the
  transport's session has aiohttp's ``DummyCookieJar``. A ``Set-Cookie`` from a vendor is
  ignored, so no state can leak from one call into the next.
- **Streaming.** ``httpx-aiohttp``'s transport hands httpx a stream that httpx then
  reads chunk by chunk through three wrappers. The adapters read every body whole
  anyway (``client.request`` does), so ``PooledTransport`` reads it whole in aiohttp,
  returns the connection to the pool at once, and gives httpx the bytes, taken as the
  response's content as they are when they are not encoded (``read_whole``) instead of
  through httpx's decoders and chunker.

- **The client's layers for features no adapter uses.** ``VendorClient.request`` with
  an absolute URL and only headers, content and params (all ``adapters/_http.send``
  passes) builds the request and hands it to the transport itself: no auth flow, no
  redirect loop, no cookie merging, no response stream to wrap (with an event hook
  registered, the whole way is taken). The
  client's default headers and timeouts still apply, errors still carry their request,
  and anything else goes through ``httpx.AsyncClient.request`` unchanged.
- **Parsing the same URL again.** A write goes to the URL its read before came from,
  and the next change of an object to the same two. A URL without params is parsed
  once (``_target``: httpx's ``URL`` and the ``yarl.URL`` aiohttp is given, kept for
  the last ``URL_CACHE`` URLs) instead of twice per call.
- **Merging the same headers again.** An adapter sends the same few headers (its key,
  ``Accept``) on every call. The client's defaults under those are merged and
  normalised once per distinct set (``_merged``); httpx copies the result into each
  request.
- **Working out the framing headers.** ``httpx.Request`` given ``content`` encodes it
  into a stream, looks for a multipart boundary, then adds ``Host`` and
  ``Content-Length`` one lookup at a time and builds the headers twice. ``_request``
  hands it the body's stream and the headers it would end with (the same names, values
  and order: tests/test_outbound.py compares them for every method and body kind),
  through httpx's public constructor: about 3.4 us a request instead of 9.6.
- **Normalising headers one pair at a time.** ``httpx.Headers`` checks, encodes and
  lower-cases every pair it is given, and ``httpx-aiohttp`` decodes them all again for
  aiohttp. The request's and the response's headers are made straight in httpx's own
  form (``_headers``), the pairs aiohttp is given are kept with the merged headers
  (``Merged.pairs``, lower-cased as httpx hands them over), aiohttp's timeouts are made
  once per set, and httpx-aiohttp's error mapping is entered only when a call fails.
  Timed on loopback, 180 us a call down to 160 (docs/benchmarks.md, "Changes" 25); the
  tests compare both objects with httpx's own.

The rest is ``httpx-aiohttp``'s transport as it is: its exception mapping (the error
families in ``adapters/_http.py`` rely on it), timeouts, proxy and TLS settings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

import aiohttp
import httpx
import yarl
from aiohttp import BasicAuth, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

#: How many distinct URLs keep their parsed form (a few hundred bytes each).
URL_CACHE = 4096
#: The request extension that carries the URL aiohttp is given (``_target``).
AIOHTTP_URL = "syncgate.aiohttp_url"


@functools.lru_cache(maxsize=URL_CACHE)
def _target(url: str) -> tuple[httpx.URL, yarl.URL]:
    """``url`` parsed by httpx, and the same URL for aiohttp exactly as httpx encoded it
    (yarl would otherwise requote the query: DevHelm's ``sort=updatedAt%2Cdesc`` went
    out as ``updatedAt,desc``)."""
    parsed = httpx.URL(url)
    return parsed, yarl.URL(str(parsed), encoded=True)


def _headers(items: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers`` holding ``items`` as they are: (name, lower-cased name, value),
    all bytes, the form ``httpx.Headers`` normalises every pair into one at a time.
    tests/test_outbound.py checks the result against httpx's own for requests and
    responses."""
    headers = httpx.Headers.__new__(httpx.Headers)  # not __init__: it would check a None
    headers._list = items
    headers._encoding = None
    return headers


@functools.lru_cache(maxsize=64)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """httpx's timeouts as aiohttp's (as ``httpx-aiohttp`` maps them), made once per set."""
    return ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


#: The headers that frame a body: a call that sets one itself is built by httpx alone.
_FRAMING = ("host", "content-length", "transfer-encoding")
#: The methods httpx gives ``Content-Length: 0`` when they carry no body.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: That header, as the (name, lower-cased name, value) triple ``_headers`` takes.
_NO_LENGTH = (b"Content-Length", b"content-length", b"0")


#: The request extension that carries the headers aiohttp is given, as ``str`` pairs.
AIOHTTP_HEADERS = "syncgate.aiohttp_headers"


class Merged(NamedTuple):
    """A call's headers over the client's defaults, in the forms a request needs."""

    headers: httpx.Headers
    #: ``headers.multi_items()``: what aiohttp is given for them
    pairs: tuple[tuple[str, str], ...]
    #: whether they set a framing header themselves (``_FRAMING``)
    framed: bool


@functools.lru_cache(maxsize=256)
def _merged(defaults: tuple[tuple[bytes, bytes], ...], own: tuple[tuple[str, str], ...]) -> Merged:
    """The client's default headers (``raw``) under a call's own. Never changed once
    made: ``httpx.Request`` copies the headers."""
    merged = httpx.Headers(list(defaults))
    merged.update(dict(own))
    framed = any(name in merged for name in _FRAMING)
    return Merged(merged, tuple(merged.multi_items()), framed)


def _request(
    method: str,
    url: httpx.URL,
    merged: Merged,
    content: bytes | None,
    extensions: dict[str, Any],
) -> httpx.Request:
    """``httpx.Request(method, url, headers=merged.headers, content=content, extensions=...)``,
    for an absolute URL and headers without a framing header: the request it would
    build, given the body's stream and the headers it would add, where it would add
    them, so that it has none of them to work out. The same headers, as
    ``httpx-aiohttp`` would give them to aiohttp (``multi_items()``: lower-cased names),
    go in ``extensions[AIOHTTP_HEADERS]``."""
    host = (b"Host", b"host", url.netloc)
    # httpx adds Host first, then the body's length after the call's headers, or a
    # length of 0 with Host for a body method sent without one
    if content:
        front, back = [host], [(b"Content-Length", b"content-length", b"%d" % len(content))]
    elif method.upper() in _BODY_METHODS:
        front, back = [host, _NO_LENGTH], []
    else:
        front, back = [host], []
    items = [*front, *merged.headers._list, *back]
    extensions[AIOHTTP_HEADERS] = [*_ascii_pairs(front), *merged.pairs, *_ascii_pairs(back)]
    request = httpx.Request(
        method,
        url,
        headers=_headers(items),
        stream=httpx.ByteStream(content or b""),
        extensions=extensions,
    )
    # what ``request.read()`` sets from the stream, as httpx reads a body given as bytes
    request._content = content or b""
    return request


def _ascii_pairs(items: list[tuple[bytes, bytes, bytes]]) -> list[tuple[str, str]]:
    """``multi_items()`` of headers httpx frames a request with (Host, whose netloc is
    IDNA-encoded, and Content-Length): ASCII only."""
    return [(lower.decode("ascii"), value.decode("ascii")) for _, lower, value in items]


class NoCookies(httpx.Cookies):
    """A cookie jar that stays empty: a vendor's ``Set-Cookie`` is never stored."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class VendorClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without a cookie jar, and with a short way through
    ``request`` for what the adapters send (see the module's docstring)."""

    def __init__(self, *, transport: PooledTransport, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise ValueError("VendorClient keeps no cookies")
        if kwargs.get("auth") or kwargs.get("follow_redirects"):
            raise ValueError("VendorClient takes no auth or redirects")
        super().__init__(transport=transport, **kwargs)
        self._cookies = NoCookies()
        self._pooled = transport

    async def request(  # type: ignore[override]
        self,
        method: str,
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``httpx.AsyncClient.request``; the short way when the URL is absolute,
        nothing but headers, content (bytes) and params is given, and no event hook is
        registered."""
        if (
            kwargs
            or self.event_hooks["request"]
            or self.event_hooks["response"]
            or not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or not isinstance(content, bytes | None)
        ):
            return await super().request(
                method, url, headers=headers, content=content, params=params, **kwargs
            )
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        merged = _merged(tuple(self.headers.raw), tuple(headers.items()) if headers else ())
        extensions: dict[str, Any] = {"timeout": self.timeout.as_dict()}
        if params is None and not merged.framed:  # parsed once per URL (see _target)
            target, extensions[AIOHTTP_URL] = _target(url)
            request = _request(method, target, merged, content, extensions)
        else:
            request = httpx.Request(
                method,
                url,
                params=params,
                headers=merged.headers,
                content=content,
                extensions=extensions,
            )
        started = time.perf_counter()
        try:
            response = await self._pooled.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        # the body is read already (PooledTransport reads it whole), and the response
        # carries its request
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, value: Any) -> None:
        if value:
            raise ValueError("VendorClient keeps no cookies")


class PooledTransport(AiohttpTransport):
    """``httpx-aiohttp``'s transport, reading each response body whole inside aiohttp
    (see the module's docstring), on a session that keeps no cookies."""

    def get_client(self) -> aiohttp.ClientSession:
        if isinstance(self.client, aiohttp.ClientSession):
            return self.client
        connector = aiohttp.TCPConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            limit=self.limits.max_connections or 0,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        extensions = request.extensions
        timeout = extensions.get("timeout", {})
        proxy = self.proxy
        sni = extensions.get("sni_hostname")
        options: dict[str, Any] = {}
        if proxy is not None or sni is not None:
            options = {
                "server_hostname": sni,
                "proxy": str(proxy.url) if proxy else None,
                "proxy_auth": BasicAuth(proxy.auth[0], proxy.auth[1])
                if proxy and proxy.auth
                else None,
                "proxy_headers": proxy.headers if proxy else None,
            }
        try:
            async with self.client.request(
                request.method,
                # the URL exactly as httpx encoded it (see _target)
                extensions.get(AIOHTTP_URL) or yarl.URL(str(request.url), encoded=True),
                headers=extensions.get(AIOHTTP_HEADERS) or request.headers.multi_items(),
                data=request.content or None,  # every adapter's body is built in memory
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=_client_timeout(
                    timeout.get("connect"), timeout.get("read"), timeout.get("pool")
                ),
                **options,
            ) as response:
                body = await response.read()
        except Exception:
            # httpx-aiohttp's mapping to httpx's errors, entered only on the way out
            with map_aiohttp_exceptions():
                raise
        return _response(request, response.status, response.reason, response.raw_headers, body)


def _response(
    request: httpx.Request,
    status: int,
    reason: str | None,
    raw_headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
) -> httpx.Response:
    """The response ``httpx-aiohttp`` builds from aiohttp's, read (``read_whole``), with
    its headers taken as they are (``_headers``). tests/test_outbound.py compares the two."""
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
    if reason:
        extensions["reason_phrase"] = reason.encode()
    items = [(name, name.lower(), value) for name, value in raw_headers]
    response = httpx.Response(
        status_code=status,
        headers=_headers(items),
        stream=httpx.ByteStream(body),
        request=request,
        extensions=extensions,
    )
    encoded = any(lower == b"content-encoding" for _, lower, _ in items)
    return read_whole(response, body, encoded=encoded)


def read_whole(response: httpx.Response, body: bytes, *, encoded: bool) -> httpx.Response:
    """``response.read()`` for a body already in memory: with no ``Content-Encoding``
    (what vendor APIs send) httpx's decoders would hand back ``body`` itself, so it is
    taken as the content at once, in the state ``read`` leaves a response in; an encoded
    body (``encoded``: it has a ``Content-Encoding``) goes through ``read``."""
    if encoded:
        response.read()
        return response
    response._content = body
    response._num_bytes_downloaded = len(body)
    response.is_stream_consumed = True
    response.is_closed = True
    return response
