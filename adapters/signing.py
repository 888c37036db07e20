"""Webhook signature schemes, for verifying (adapters) and signing (simulators).

- Standard Webhooks / Svix (incident.io, InboxOps by default): headers ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64> [v1,<base64> ...]`` over
  ``id.timestamp.body``; the HMAC itself comes from the ``standardwebhooks`` library.
- DevHelm: ``X-DevHelm-Signature: t=<unix>;v1=<hex>`` over ``t + sep + body`` (sep ":"
  or ".", the docs have said both; the verifier takes the ones it is given).
- hookstream: ``X-hookstream-Signature: sha256=<hex>`` over the body, or over
  ``ts.body`` when ``X-hookstream-Timestamp`` is present.

Every verifier accepts several secrets (rotation), compares in constant time, and checks
the timestamp against a tolerance using the ``now`` it is given (so tests control time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from app.errors import SignatureInvalid


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def same_digest(expected: str, offered: str) -> bool:
    """``offered`` (a hex digest from a header, any case) equals ``expected``, compared in
    constant time. Header text may hold any character; ``hmac.compare_digest`` refuses
    non-ASCII strings, so both are compared as bytes."""
    return hmac.compare_digest(expected.encode(), offered.lower().encode("utf-8", "replace"))


def _check_timestamp(raw: str | None, now: datetime, tolerance_s: float) -> int:
    if not raw:
        raise SignatureInvalid("missing signature timestamp")
    text = raw.strip()
    # ASCII digits only (int() also takes "+1", "1_0" and other scripts' digits), and no
    # more of them than a Unix time has: a longer one overflows the comparison below
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise SignatureInvalid("signature timestamp is not a Unix time")
    ts = int(text)
    if abs(now.timestamp() - ts) > tolerance_s:
        raise SignatureInvalid(f"signature timestamp is outside the {tolerance_s:.0f}s tolerance")
    return ts


def _require_secrets(secrets: Sequence[str]) -> None:
    if not secrets:
        raise SignatureInvalid("no webhook secret is configured for this system")


# -- Standard Webhooks (Svix) ---------------------------------------------------------------


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry (``v1,<base64>``) for one secret."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode())


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_sign(secret, msg_id, timestamp, body),
    }


def standard_verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance_s: float = 300.0,
) -> None:
    _require_secrets(secrets)
    msg_id = headers.get("webhook-id")
    signature = headers.get("webhook-signature")
    if not msg_id or not signature:
        raise SignatureInvalid("missing webhook-id or webhook-signature header")
    ts = _check_timestamp(headers.get("webhook-timestamp"), now, tolerance_s)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise SignatureInvalid("body is not UTF-8") from None
    offered: list[bytes] = []
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    when = datetime.fromtimestamp(ts, tz=UTC)
    for secret in secrets:
        try:
            expected = Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=text)
        except (binascii.Error, ValueError) as exc:  # a malformed secret
            raise SignatureInvalid(
                f"configured secret is not a Standard Webhooks secret: {type(exc).__name__}"
            ) from None
        expected_bytes = base64.b64decode(expected.partition(",")[2])
        if any(hmac.compare_digest(expected_bytes, sig) for sig in offered):
            return
    raise SignatureInvalid("no webhook-signature matches a configured secret")


# -- DevHelm t=..;v1=.. ----------------------------------------------------------------------


def devhelm_sign(secret: str, timestamp: int, body: bytes, separator: str = ":") -> str:
    digest = _hmac_hex(secret, str(timestamp).encode() + separator.encode() + body)
    return f"t={timestamp};v1={digest}"


def devhelm_verify(
    secrets: Sequence[str],
    header: str | None,
    body: bytes,
    now: datetime,
    tolerance_s: float = 300.0,
    separators: Sequence[str] = (":",),
) -> None:
    """Verify ``X-DevHelm-Signature``; the signed string is ``t + sep + body`` for any
    one of ``separators`` (DevHelm's docs have said both ``:`` and ``.``)."""
    _require_secrets(secrets)
    if not header:
        raise SignatureInvalid("missing X-DevHelm-Signature header")
    parts: dict[str, list[str]] = {}
    for item in header.replace(",", ";").split(";"):
        key, _, value = item.strip().partition("=")
        if value:
            parts.setdefault(key, []).append(value)
    if "t" not in parts or "v1" not in parts:
        raise SignatureInvalid("X-DevHelm-Signature must be t=<unix>;v1=<hex>")
    ts = _check_timestamp(parts["t"][0], now, tolerance_s)
    for separator in separators:
        message = str(ts).encode() + separator.encode() + body
        for secret in secrets:
            expected = _hmac_hex(secret, message)
            if any(same_digest(expected, got) for got in parts["v1"]):
                return
    raise SignatureInvalid("X-DevHelm-Signature matches no configured secret")


# -- hookstream sha256=<hex> ----------------------------------------------------------------


def hookstream_sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers hookstream sends; with a timestamp the signed string is ``ts.body``."""
    if timestamp is None:
        return {"X-hookstream-Signature": "sha256=" + _hmac_hex(secret, body)}
    message = f"{timestamp}.".encode() + body
    return {
        "X-hookstream-Signature": "sha256=" + _hmac_hex(secret, message),
        "X-hookstream-Timestamp": str(timestamp),
    }


def hookstream_verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance_s: float = 300.0,
    require_timestamp: bool = False,
) -> None:
    _require_secrets(secrets)
    header = headers.get("x-hookstream-signature")
    if not header:
        raise SignatureInvalid("missing X-hookstream-Signature header")
    algo, _, got = header.strip().partition("=")
    if algo != "sha256" or not got:
        raise SignatureInvalid("X-hookstream-Signature must be sha256=<hex>")
    raw_ts = headers.get("x-hookstream-timestamp")
    if raw_ts is None and require_timestamp:
        raise SignatureInvalid("missing X-hookstream-Timestamp header")
    if raw_ts is not None:
        ts = _check_timestamp(raw_ts, now, tolerance_s)
        message = f"{ts}.".encode() + body
    else:
        message = body
    for secret in secrets:
        if same_digest(_hmac_hex(secret, message), got):
            return
    raise SignatureInvalid("X-hookstream-Signature matches no configured secret")
