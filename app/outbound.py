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

The rest is ``httpx-aiohttp``'s transport as it is: its exception mapping (the error
families in ``adapters/_http.py`` rely on it), timeouts, proxy and TLS settings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

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


#: The headers that frame a body: a call that sets one itself is built by httpx alone.
_FRAMING = ("host", "content-length", "transfer-encoding")
#: The methods httpx gives ``Content-Length: 0`` when they carry no body.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@functools.lru_cache(maxsize=256)
def _merged(
    defaults: tuple[tuple[bytes, bytes], ...], own: tuple[tuple[str, str], ...]
) -> tuple[httpx.Headers, bool]:
    """The client's default headers (``raw``) under a call's own, and whether they set a
    framing header themselves. Never changed once made: ``httpx.Request`` copies it."""
    merged = httpx.Headers(list(defaults))
    merged.update(dict(own))
    return merged, any(name in merged for name in _FRAMING)


def _request(
    method: str,
    url: httpx.URL,
    headers: httpx.Headers,
    content: bytes | None,
    extensions: dict[str, Any],
) -> httpx.Request:
    """``httpx.Request(method, url, headers=headers, content=content, extensions=...)``,
    for an absolute URL and headers without a framing header: the request it would
    build, given the body's stream and the headers it would add, where it would add
    them, so that it has none of them to work out."""
    if content:  # httpx: the body's length, added after the call's headers
        raw = [(b"Host", url.netloc), *headers.raw, (b"Content-Length", b"%d" % len(content))]
    elif method.upper() in _BODY_METHODS:  # httpx: a length of 0, added with Host
        raw = [(b"Host", url.netloc), (b"Content-Length", b"0"), *headers.raw]
    else:
        raw = [(b"Host", url.netloc), *headers.raw]
    request = httpx.Request(
        method, url, headers=raw, stream=httpx.ByteStream(content or b""), extensions=extensions
    )
    request.read()  # as httpx reads a body given as bytes: ``request.content`` is set
    return request


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
        merged, framed = _merged(tuple(self.headers.raw), tuple(headers.items()) if headers else ())
        extensions: dict[str, Any] = {"timeout": self.timeout.as_dict()}
        if params is None and not framed:  # parsed once per URL (see _target)
            target, extensions[AIOHTTP_URL] = _target(url)
            request = _request(method, target, merged, content, extensions)
        else:
            request = httpx.Request(
                method, url, params=params, headers=merged, content=content, extensions=extensions
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
        timeout = request.extensions.get("timeout", {})
        proxy = self.proxy
        with map_aiohttp_exceptions():
            data = request.content or None  # every adapter's body is built in memory
            async with self.client.request(
                method=request.method,
                # the URL exactly as httpx encoded it (see _target)
                url=request.extensions.get(AIOHTTP_URL) or yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=BasicAuth(proxy.auth[0], proxy.auth[1])
                if proxy and proxy.auth
                else None,
                proxy_headers=proxy.headers if proxy else None,
            ) as response:
                body = await response.read()
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        out = httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions=extensions,
        )
        return read_whole(out, body)


def read_whole(response: httpx.Response, body: bytes) -> httpx.Response:
    """``response.read()`` for a body already in memory: with no ``Content-Encoding``
    (what vendor APIs send) httpx's decoders would hand back ``body`` itself, so it is
    taken as the content at once, in the state ``read`` leaves a response in; an encoded
    body goes through ``read``."""
    if "content-encoding" in response.headers:
        response.read()
        return response
    response._content = body
    response._num_bytes_downloaded = len(body)
    response.is_stream_consumed = True
    response.is_closed = True
    return response
