"""What a webhook leaves behind, on a real ``syncgate serve``: only the headers the
adapter reads are stored (an allow-list), and JSON nested deeper than MAX_JSON_DEPTH is
refused with a 400 and a reason wherever JSON is read (webhooks, admin bodies), while an
event stored before the limit still renders in /admin/events."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.model import MAX_JSON_DEPTH, json_too_deep, utcnow
from app.store import NewEvent, Store
from tests.blackbox import admin_client
from tests.hostile.support import (
    SAMPLES,
    gateway,
    nested,
    nested_json,
    sample,
    signed,
    with_extra,
)

pytestmark = pytest.mark.slow

CREDENTIALS = {
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0LXByb3h5",
    "X-Auth-Token": "secret-auth-token",
    "X-Webhook-Secret": "secret-webhook-secret",
    "Api-Key": "secret-api-key",
    "X-Api-Token": "secret-api-token",
    "X-Forwarded-Authorization": "Bearer secret-forwarded",
    "Authorization": "Bearer secret-authorization",
    "Cookie": "session=secret-cookie",
    "X-Anything-New": "secret-nobody-thought-of",
}


async def test_only_the_headers_the_adapter_reads_are_stored(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, admin_client(gw.url) as admin:
        async with httpx.AsyncClient(base_url=gw.url) as client:
            for system in ("inboxops", "devhelm"):
                body = sample(system)
                headers = {**signed(system, body), **CREDENTIALS}
                response = await client.post(f"/webhooks/{system}", content=body, headers=headers)
                assert response.status_code == 202, response.text
        listing = await admin.get("/events", params={"source": "webhook"})
        assert listing.status_code == 200
        stored = {e["system"]: e["headers"] for e in listing.json()["events"]}
        assert set(stored["inboxops"]) == {"webhook-id", "webhook-timestamp"}
        assert set(stored["devhelm"]) == {"x-devhelm-delivery"}
        assert "secret" not in listing.text


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2000])
async def test_deep_json_is_refused_everywhere_it_is_read(tmp_path: Path, depth: int) -> None:
    async with gateway(tmp_path) as gw, admin_client(gw.url) as admin:
        async with httpx.AsyncClient(base_url=gw.url) as client:
            for system in SAMPLES:
                body = with_extra(system, nested_json(depth - 1))
                assert json_too_deep(body)
                response = await client.post(
                    f"/webhooks/{system}", content=body, headers=signed(system, body)
                )
                assert response.status_code == 400, (system, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert f"deeper than {MAX_JSON_DEPTH}" in response.json()["detail"]
        deep_body = b'{"title": "x", "links": ' + nested_json(depth) + b"}"
        response = await admin.post(
            "/work-items", content=deep_body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert f"deeper than {MAX_JSON_DEPTH}" in response.json()["detail"]
        listing = await admin.get("/events")
        assert listing.status_code == 200
        assert listing.json()["events"] == []  # nothing refused was stored


async def test_json_within_the_limit_is_accepted_and_rendered(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, admin_client(gw.url) as admin:
        payload = {**SAMPLES["inboxops"], "extra": nested(MAX_JSON_DEPTH - 1)}
        body = json.dumps(payload).encode()
        async with httpx.AsyncClient(base_url=gw.url) as client:
            response = await client.post(
                "/webhooks/inboxops", content=body, headers=signed("inboxops", body)
            )
        assert response.status_code == 202, response.text
        listing = await admin.get("/events", params={"source": "webhook"})
        assert listing.status_code == 200
        assert listing.json()["events"][0]["body"] == payload


async def test_a_deep_event_stored_before_the_limit_renders_as_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    store = Store.connect(url)
    await store.migrate()
    body = with_extra("inboxops", nested_json(982))
    async with store.tx() as tx:
        await tx.record_events(
            [
                NewEvent(
                    system="inboxops",
                    delivery_id="old-deep",
                    source="webhook",
                    event_type="ticket.updated",
                    body=body,
                    headers={"authorization": "Bearer secret-from-before"},
                )
            ],
            now=utcnow(),
        )
    await store.close()
    async with gateway(tmp_path, database_url=url) as gw, admin_client(gw.url) as admin:
        listing = await admin.get("/events", params={"source": "webhook"})
        assert listing.status_code == 200, listing.text
        (event,) = [e for e in listing.json()["events"] if e["delivery_id"] == "old-deep"]
        assert event["body"] == body.decode()
        assert event["headers"] == {}  # stored before the allow-list: not shown either


def test_the_depth_check_counts_only_structure() -> None:
    """Brackets inside strings (escaped quotes included) do not nest; few openers in all
    answer at once, and the answer is the same as the full count's."""
    limit = 4
    cases = {
        b'{"a": [1, {"b": [2]}]}': False,  # depth 4
        b'{"a": [1, {"b": [[2]]}]}': True,  # depth 5
        b'{"a": "[[[[[[{{{{{{"}': False,  # ten openers, all in a string
        b'{"a": "\\"[[[[[[", "b": 1}': False,  # an escaped quote keeps the string open
        b'{"a": "\\\\", "b": [[[[1]]]]}': True,  # an escaped backslash ends the string
        b"[[[[]]]]": False,
        b"[[[[[]]]]]": True,
        b"[]" * 100: False,  # many openers, none deep
    }
    for text, deep in cases.items():
        assert json_too_deep(text, limit) is deep, text
