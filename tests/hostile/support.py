"""Support for the hostile-input tests: a valid signed delivery for each vendor, and each
vendor's adapter built from its contract kit (webhook verification and parsing do no
I/O, so its vendor URL is never called)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from adapters import adapter_class, signing
from adapters.base import Adapter
from app.model import utcnow
from tests.blackbox import GatewayProcess, free_port, write_config
from tests.contract.kits import KITS

SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")
NOWHERE = "http://127.0.0.1:9"

#: One delivery body per vendor, of a shape its adapter reads (as the simulators send).
SAMPLES: dict[str, dict[str, Any]] = {
    "hookstream": {"event": "issue_opened", "rule_type": "failure", "issue": {"id": "iss_1"}},
    "devhelm": {
        "id": "evt_1",
        "type": "monitor.down",
        "apiVersion": "2024-01-01",
        "createdAt": "2026-01-01T00:00:00Z",
        "data": {"monitorId": "m1"},
    },
    "inboxops": {
        "id": "evt_1",
        "type": "ticket.updated",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {
            "id": "tkt_1",
            "subject": "Checkout fails",
            "status": "open",
            "priority": "normal",
            "updated_at": "2026-01-01T00:00:00Z",
        },
    },
    "incidentio": {
        "event_type": "public_incident.follow_up_updated_v2",
        "public_incident.follow_up_updated_v2": {
            "id": "fu_1",
            "incident_id": "inc_1",
            "title": "Add a retry",
            "status": "outstanding",
            "updated_at": "2026-01-01T00:00:00Z",
        },
    },
}


def sample(system: str) -> bytes:
    return json.dumps(SAMPLES[system]).encode()


def signed(
    system: str,
    body: bytes,
    *,
    secret: str | None = None,
    now: datetime | None = None,
    msg_id: str | None = None,
    scheme: str = "default",
) -> dict[str, str]:
    """The headers the vendor would sign ``body`` with (the adapters' default schemes, or
    InboxOps' ``hmac-sha256``)."""
    secret = secret or KITS[system].webhook_secret
    ts = int((now or utcnow()).timestamp())
    if scheme == "hmac-sha256":  # InboxOps' plain HMAC option
        return {"X-InboxOps-Signature": "sha256=" + hmac_hex(secret, body)}
    if system == "hookstream":
        return signing.hookstream_sign(secret, body, ts)
    if system == "devhelm":
        return {
            "X-DevHelm-Signature": signing.devhelm_sign(secret, ts, body),
            "X-DevHelm-Delivery": msg_id or "dlv_" + uuid.uuid4().hex,
        }
    msg_id = msg_id if msg_id is not None else "msg_" + uuid.uuid4().hex
    # over the raw bytes, so that bodies that are not UTF-8 can be signed too (the
    # library signs text)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def adapter(system: str, client: httpx.AsyncClient, **options: Any) -> Adapter:
    settings = KITS[system].settings(NOWHERE, options=options)
    return adapter_class(system)(settings, client)


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` levels of alternating lists and objects."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[GatewayProcess]:
    """``syncgate serve`` with the four systems, webhook-only, their vendors never called
    (nothing is linked and no creation rule applies), and ``overrides`` in its config."""
    port = free_port()
    config = tmp_path / "config.yaml"
    urls = dict.fromkeys(SYSTEMS, NOWHERE)
    url = database_url or f"sqlite:///{tmp_path / 'gw.db'}"
    write_config(config, url, urls, create_rules=[], **overrides)
    process = GatewayProcess(config, port, "hostile", tmp_path / "gateway.log")
    try:
        await process.ready()
        yield process
    finally:
        await process.stop()


def nested_json(depth: int) -> bytes:
    """JSON text of ``nested(depth)``, built as text (``json.dumps`` itself recurses)."""
    opening = [b'{"n":' if level % 2 == 0 else b"[" for level in range(depth)]
    closing = [b"}" if level % 2 == 0 else b"]" for level in reversed(range(depth))]
    return b"".join(opening) + b"1" + b"".join(closing)


def with_extra(system: str, extra: bytes) -> bytes:
    """The vendor's sample body with one more member, ``"extra": <extra>``."""
    return sample(system)[:-1] + b', "extra": ' + extra + b"}"
