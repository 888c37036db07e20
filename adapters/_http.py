"""Shared HTTP plumbing for adapters: one place that turns httpx errors and vendor statuses
into the error families of ``app.errors``, and reads rate-limit delays.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
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
            parsed = email.utils.parsedate_to_datetime(value) if value else None
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


def vendor_message(response: httpx.Response, reader: MessageReader) -> str:
    """The vendor's own reason for a failed response, read leniently."""
    try:
        body = msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        body = None
    message = reader(body) if body is not None else None
    if message:
        return message
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase or f"HTTP {response.status_code}"


def raise_for_status(system: str, response: httpx.Response, reader: MessageReader) -> None:
    """Raise the error family for a non-2xx response; return for a 2xx."""
    status = response.status_code
    if status < 300:
        return
    message = vendor_message(response, reader)
    if status == 429:
        delay = retry_after_seconds(response.headers)
        raise RateLimited(
            system,
            message,
            retry_after=DEFAULT_RATE_LIMIT_DELAY_S if delay is None else delay,
        )
    if status in (401, 403):
        raise AuthError(system, message, status=status)
    if status == 404:
        raise NotFound(system, message, status=status)
    if status in (408,) or status >= 500:
        raise TransientError(system, message, status=status)
    raise Rejected(system, message, status=status)


async def send(
    client: httpx.AsyncClient,
    system: str,
    method: str,
    url: str,
    reader: MessageReader,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; return a 2xx response or raise an ``app.errors`` family.

    This is the only place adapters call httpx, so no httpx exception can escape them.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientError(system, f"timeout: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise TransientError(system, f"connection error: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:  # anything else httpx may raise (invalid URL, ...)
        raise VendorError(system, f"{type(exc).__name__}: {exc}") from exc
    raise_for_status(system, response, reader)
    return response


def decode(system: str, response: httpx.Response, type_: type[Any]) -> Any:
    """Decode a 2xx body into ``type_``; a body that does not fit is a transient error
    (a vendor answering garbage is an outage, not our bug to dead-letter)."""
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TransientError(
            system, f"unexpected response body: {exc}", status=response.status_code
        ) from exc
