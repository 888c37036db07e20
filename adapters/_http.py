"""Shared HTTP plumbing for adapters: one place that turns httpx errors and vendor statuses
into the error families of ``app.errors``, and reads rate-limit delays.
"""

from __future__ import annotations

import email.utils
import math
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from app.errors import (
    AuthError,
    NotFound,
    RateLimited,
    Rejected,
    TransientError,
    VendorError,
)

#: Used when a 429 carries no usable delay at all.
DEFAULT_RATE_LIMIT_DELAY_S = 1.0

MessageReader = Callable[[Any], str | None]

RetryAfterReader = Callable[[Any, float], float | None]
"""(decoded 429 body, now as Unix seconds) -> the delay the body asks for, or None.

An adapter passes one to ``send`` when its vendor may put the delay in the body; it is
read only when no header gives one, and must be lenient (``delay_value`` helps)."""


def _http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def delay_value(value: Any, now: float) -> float | None:
    """A delay as a vendor may write it, read leniently: a number (or a numeric string)
    is seconds; a string timestamp (RFC 3339 or an HTTP date) is the moment to wait for.
    None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        when = _http_date(text)
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def retry_after_seconds(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """The delay a response asks for, in seconds, or None when it gives none.

    Reads ``Retry-After`` (seconds or an HTTP date) first, then the vendors' rate-limit
    headers: ``RateLimit-Reset`` (seconds from now, IETF draft, hookstream) and
    ``X-RateLimit-Reset`` (Unix seconds, DevHelm and incident.io).
    """
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = _http_date(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    value = headers.get("ratelimit-reset")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    value = headers.get("x-ratelimit-reset")
    if value:
        try:
            return max(0.0, float(value) - now)
        except ValueError:
            pass
    return None


def _json_body(response: httpx.Response) -> Any:
    """The response body as JSON, or None when it is empty or not JSON."""
    try:
        return msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        return None


def body_retry_after(
    response: httpx.Response, reader: RetryAfterReader, *, now: float | None = None
) -> float | None:
    """The delay ``reader`` finds in the response body, or None (a body it cannot read
    gives none: this is a last resort after the headers, never an error)."""
    body = _json_body(response)
    if body is None:
        return None
    try:
        return reader(body, time.time() if now is None else now)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        return None


def vendor_message(response: httpx.Response, reader: MessageReader) -> str:
    """The vendor's own reason for a failed response, read leniently."""
    body = _json_body(response)
    message = reader(body) if body is not None else None
    if message:
        return message
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase or f"HTTP {response.status_code}"


def raise_for_status(
    system: str,
    response: httpx.Response,
    reader: MessageReader,
    *,
    retry_reader: RetryAfterReader | None = None,
) -> None:
    """Raise the error family for a non-2xx response; return for a 2xx.

    A 429's delay comes from the headers (``retry_after_seconds``), else from the body
    through ``retry_reader``, else ``DEFAULT_RATE_LIMIT_DELAY_S``."""
    status = response.status_code
    if status < 300:
        return
    message = vendor_message(response, reader)
    if status == 429:
        delay = retry_after_seconds(response.headers)
        if delay is None and retry_reader is not None:
            delay = body_retry_after(response, retry_reader)
        raise RateLimited(
            system,
            message,
            retry_after=DEFAULT_RATE_LIMIT_DELAY_S if delay is None else delay,
        )
    if status in (401, 403):
        raise AuthError(system, message, status=status)
    if status in (404, 410):  # 410 Gone: a deleted object is as gone as an unknown one
        raise NotFound(system, message, status=status)
    if status in (408,) or status >= 500:
        raise TransientError(system, message, status=status)
    raise Rejected(system, message, status=status)


def _connect_failure(exc: httpx.ConnectTimeout) -> str:
    """What a failed connection was: refused, an unknown host, another OS error, or
    (with no OS error underneath) a real timeout."""
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return f"timeout: {type(exc).__name__}"
    text = str(cause)
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in text:
        return f"connection refused: {text}"
    if isinstance(cause, socket.gaierror) or "Name or service not known" in text:
        return f"cannot resolve host: {text}"
    return f"connection error: {text}"


async def send(
    client: httpx.AsyncClient,
    system: str,
    method: str,
    url: str,
    reader: MessageReader,
    *,
    retry_reader: RetryAfterReader | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; return a 2xx response or raise an ``app.errors`` family.

    This is the only place adapters call httpx, so no httpx exception can escape them.
    ``retry_reader`` reads a 429's delay from the body when no header gives one.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.ConnectTimeout as exc:
        # httpx-aiohttp reports a refused connection or an unknown host as a
        # ConnectTimeout; an OSError underneath says what really happened
        raise TransientError(system, _connect_failure(exc)) from exc
    except httpx.TimeoutException as exc:
        raise TransientError(system, f"timeout: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise TransientError(system, f"connection error: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:  # anything else httpx may raise (invalid URL, ...)
        raise VendorError(system, f"{type(exc).__name__}: {exc}") from exc
    raise_for_status(system, response, reader, retry_reader=retry_reader)
    return response


def _where(response: httpx.Response | None) -> str:
    if response is None:
        return ""
    try:
        request = response.request
    except RuntimeError:  # a response built without a request (tests)
        return ""
    return f" ({request.method} {request.url.path})"


def shape_error(
    system: str,
    exc: msgspec.ValidationError | msgspec.DecodeError,
    *,
    prefix: str = "$",
    response: httpx.Response | None = None,
) -> TransientError:
    """The error for a vendor answer that does not fit the shape we assumed, naming the
    vendor, the place in the body (``$.meta.total_pages``) and the request, e.g.
    ``inboxops: response did not fit the expected shape at $.meta.total_pages: Expected
    int, got str (GET /api/v1/tickets)``.

    ``prefix`` is where the decoded value sits in the response (``$.data[3]`` for one
    list row converted on its own). It is a ``TransientError``: a vendor answering
    something else is an outage or a contract change to look at, so reads keep failing
    loudly (the poll's last error names the field) rather than writes being dead-lettered
    as our fault; every such assumption is listed in docs/vendor-notes.md."""
    status = response.status_code if response is not None else None
    if isinstance(exc, msgspec.ValidationError):
        text = str(exc)
        detail, sep, path = text.rpartition(" - at `")
        if not sep:
            detail, path = text, "$"
        path = prefix + path.rstrip("`")[1:]
        missing = re.fullmatch(r"Object missing required field `(.+)`", detail)
        if missing:  # name the missing field in the path, like every other misfit
            path, detail = f"{path}.{missing.group(1)}", "required field is missing"
        detail = detail.replace("`", "")
        message = f"response did not fit the expected shape at {path}: {detail}"
    else:
        message = f"response body is not JSON: {exc}"
    return TransientError(system, message + _where(response), status=status)


def decode(system: str, response: httpx.Response, type_: type[Any]) -> Any:
    """Decode a 2xx body into ``type_``; a body that does not fit is a ``shape_error``
    naming the field (a vendor answering garbage is an outage, not our bug to
    dead-letter)."""
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise shape_error(system, exc, response=response) from exc


def convert(
    system: str,
    value: Any,
    type_: type[Any],
    *,
    at: str = "$",
    response: httpx.Response | None = None,
) -> Any:
    """``msgspec.convert`` of a part of a response already decoded (one list row, the
    object inside an envelope) found at ``at``; a misfit is a ``shape_error``."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise shape_error(system, exc, prefix=at, response=response) from exc
