"""hookstream specifics the contract suite cannot express: the simulator's strictness and
vendor behaviour (grouping, reopen, auto-resolve, the default ``open`` filter, the
``issue_opened`` notification), the status map, the guide's bare issue shape, and the
``require_timestamp`` option."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from adapters import signing
from adapters.base import lower_headers
from adapters.hookstream.adapter import HookstreamAdapter
from app.errors import (
    ConfigError,
    MalformedPayload,
    RateLimited,
    Rejected,
    SignatureInvalid,
    UnreadablePayload,
)
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status, utcnow
from tests.contract.kit_hookstream import KIT
from tests.vendor_rig import VendorRig

SYSTEM = "hookstream"


async def report_failure(
    rig: VendorRig, destination_id: str = "dst_1", error_type: str = "timeout", **more: Any
) -> httpx.Response:
    body = {"destination_id": destination_id, "error_type": error_type, **more}
    return await rig.control.post("/_sim/failures", json=body)


async def seed(rig: VendorRig, n: int = 0, **more: Any) -> str:
    body = {
        "destination_id": f"dst_seed_{n}",
        "destination_name": f"orders-{n}",
        "error_type": "http_5xx",
        **more,
    }
    response = await rig.control.post("/_sim/seed", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["issue"]["id"])


async def read_issue(rig: VendorRig, issue_id: str) -> dict[str, Any]:
    response = await rig.api.get(f"/v1/issues/{issue_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["issue"])


def assert_error(response: httpx.Response, status: int) -> str:
    """The response is hookstream's error shape with ``status``; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status", "request_id"}
    assert body["status"] == status
    assert body["request_id"].startswith("req_")
    assert isinstance(body["error"], str)
    assert body["error"]
    return str(body["error"])


def offline(**overrides: Any) -> HookstreamAdapter:
    """An adapter whose client fails the test if it is ever used: parsing, verifying and
    mapping must do no I/O."""

    def no_io(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected call {request.method} {request.url}")

    return HookstreamAdapter(
        KIT.settings("http://unused", **overrides),
        httpx.AsyncClient(transport=httpx.MockTransport(no_io)),
    )


def issue_json(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
        "title": "orders: timeout",
        "status": "open",
        "snoozed_until": None,
        "last_error": "read timeout",
        "updated_at": "2026-03-01T10:00:00Z",
    }
    base.update(fields)
    return base


# -- simulator strictness -----------------------------------------------------------------


#: PATCH bodies hookstream refuses, with a phrase its message must contain.
BAD_PATCH_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"status": "resolved", "assignee": "ana"}, "Unknown field"),
    ({"status": "closed"}, "status must be one of"),
    ({"status": 2}, "wrong type"),
    ({"snoozed_until": 1700000000}, "wrong type"),
    ({"status": "resolved", "snoozed_until": "next tuesday"}, "ISO 8601"),
    ({"status": "resolved", "snoozed_until": "2026-03-01T10:00:00"}, "UTC offset"),
]


async def test_patch_refuses_bad_bodies_with_400_and_changes_nothing(rig: VendorRig) -> None:
    issue_id = await seed(rig)
    before = await read_issue(rig, issue_id)
    for body, expected in BAD_PATCH_BODIES:
        message = assert_error(await rig.api.patch(f"/v1/issues/{issue_id}", json=body), 400)
        assert expected in message, body
    for content in (b"not json", b"[1, 2]", b""):
        response = await rig.api.patch(
            f"/v1/issues/{issue_id}", content=content, headers={"Content-Type": "application/json"}
        )
        assert "JSON" in assert_error(response, 400), content
    assert await read_issue(rig, issue_id) == before


async def test_seed_requires_the_failure_fields(rig: VendorRig) -> None:
    response = await rig.control.post(
        "/_sim/seed", json={"destination_id": "dst_1", "destination_name": "orders"}
    )
    assert "error_type is required" in assert_error(response, 400)
    response = await rig.control.post("/_sim/failures", json={"error_type": "x", "priority": 1})
    assert "Unknown field" in assert_error(response, 400)
    assert (await rig.control.get("/_sim/objects")).json() == {"objects": []}


async def test_unknown_issue_is_404_in_the_vendor_shape(rig: VendorRig) -> None:
    assert_error(await rig.api.get("/v1/issues/iss_" + "0" * 32), 404)
    assert_error(await rig.api.patch("/v1/issues/iss_" + "0" * 32, json={"status": "open"}), 404)
    assert_error(await rig.control.patch("/_sim/objects/nope", json={"status": "open"}), 404)


async def test_api_key_is_checked_in_x_api_key_only(rig: VendorRig) -> None:
    assert_error(await rig.control.get("/v1/issues"), 401)
    bearer = {"Authorization": f"Bearer {KIT.api_key}"}
    assert_error(await rig.control.get("/v1/issues", headers=bearer), 401)
    assert (await rig.api.get("/v1/issues")).status_code == 200


async def test_list_refuses_bad_query_parameters(rig: VendorRig) -> None:
    for query in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"status": "snoozed"},
        {"cursor": "abc"},
        {"updated_after": "2026-01-01T00:00:00Z"},
    ):
        assert_error(await rig.api.get("/v1/issues", params=query), 400)


# -- list, pagination, summary ------------------------------------------------------------


async def test_list_envelope_and_offset_pagination(rig: VendorRig) -> None:
    ids = [await seed(rig, n) for n in range(3)]
    first = (await rig.api.get("/v1/issues", params={"limit": 2})).json()
    assert set(first) == {"issues", "pagination"}
    assert first["pagination"] == {"total": 3, "limit": 2, "offset": 0, "has_more": True}
    second = (await rig.api.get("/v1/issues", params={"limit": 2, "offset": 2})).json()
    assert second["pagination"] == {"total": 3, "limit": 2, "offset": 2, "has_more": False}
    assert [i["id"] for i in first["issues"] + second["issues"]] == ids
    default = (await rig.api.get("/v1/issues")).json()["pagination"]
    assert default == {"total": 3, "limit": 50, "offset": 0, "has_more": False}


async def test_list_defaults_to_open_issues_and_the_adapter_asks_for_all(rig: VendorRig) -> None:
    kept, resolved = await seed(rig, 0), await seed(rig, 1)
    await rig.control.patch(f"/_sim/objects/{resolved}", json={"status": "resolved"})
    default = (await rig.api.get("/v1/issues")).json()["issues"]
    assert [i["id"] for i in default] == [kept]
    only_resolved = (await rig.api.get("/v1/issues", params={"status": "resolved"})).json()
    assert [i["id"] for i in only_resolved["issues"]] == [resolved]
    await rig.control.delete("/_sim/requests")
    polled = [o async for page in rig.adapter.list_changed(None) for o in page]
    assert {o.ref.external_id: o.fields.status for o in polled} == {
        kept: Status.OPEN,
        resolved: Status.RESOLVED,
    }
    assert all("status=all" in r["query"] for r in await rig.requests("GET"))


async def test_list_filters_by_destination(rig: VendorRig) -> None:
    await report_failure(rig, "dst_a")
    await report_failure(rig, "dst_b")
    listed = (await rig.api.get("/v1/issues", params={"destination_id": "dst_b"})).json()
    assert [i["destination_id"] for i in listed["issues"]] == ["dst_b"]


async def test_summary_counts_issues_by_status(rig: VendorRig) -> None:
    ids = [await seed(rig, n) for n in range(4)]
    await rig.control.patch(f"/_sim/objects/{ids[0]}", json={"status": "acknowledged"})
    await rig.control.patch(f"/_sim/objects/{ids[1]}", json={"status": "resolved"})
    summary = await rig.api.get("/v1/issues/summary")
    assert summary.json() == {"open": 2, "acknowledged": 1, "resolved": 1}


# -- vendor behaviour -----------------------------------------------------------------------


async def test_failures_group_by_destination_and_error_type(rig: VendorRig) -> None:
    first = await report_failure(rig, "dst_1", "timeout", last_error="read timeout")
    assert first.status_code == 201
    issue = first.json()["issue"]
    again = await report_failure(
        rig, "dst_1", "timeout", last_error="connect timeout", last_status_code=504
    )
    assert again.status_code == 200
    grouped = again.json()["issue"]
    assert grouped["id"] == issue["id"]
    assert grouped["occurrence_count"] == 2
    assert grouped["last_seen_at"] > issue["last_seen_at"]
    assert grouped["first_seen_at"] == issue["first_seen_at"]
    assert (grouped["last_error"], grouped["last_status_code"]) == ("connect timeout", 504)
    assert len(grouped["recent_attempt_ids"]) == 2
    other = await report_failure(rig, "dst_1", "http_5xx")
    assert other.status_code == 201
    assert other.json()["issue"]["id"] != issue["id"]


async def test_a_failure_reopens_a_resolved_issue(rig: VendorRig) -> None:
    issue_id = (await report_failure(rig)).json()["issue"]["id"]
    ref = ObjectRef("hookstream", "", issue_id)
    resolved = await rig.adapter.update(ref, Fields(status=Status.RESOLVED))
    assert resolved.raw["resolved_at"] is not None
    reopened = await report_failure(rig)
    assert reopened.status_code == 200
    body = reopened.json()["issue"]
    assert (body["id"], body["status"], body["resolved_at"]) == (issue_id, "open", None)
    assert (await rig.adapter.get(ref)).fields.status == Status.OPEN


@pytest.mark.parametrize("updated_at", ["moves", "stays"])
async def test_issues_auto_resolve_after_30_quiet_minutes(rig: VendorRig, updated_at: str) -> None:
    """Whether an auto-resolve moves updated_at is undocumented: polling must see the
    resolve either way (through resolved_at), and take it as a change newer than the
    issue's last one."""
    await rig.control.put("/_sim/behaviour", json={"auto_resolve_updated_at": updated_at})
    quiet = (await report_failure(rig, "dst_quiet")).json()["issue"]
    busy = (await report_failure(rig, "dst_busy")).json()["issue"]
    acked = (await report_failure(rig, "dst_acked")).json()["issue"]
    await rig.control.patch(f"/_sim/objects/{acked['id']}", json={"status": "acknowledged"})
    since = (await rig.adapter.get(ObjectRef("hookstream", "", acked["id"]))).updated_at
    await rig.control.post("/_sim/clock", json={"advance_s": 1200})
    await report_failure(rig, "dst_busy")
    await rig.control.post("/_sim/clock", json={"advance_s": 600})
    quiet_now, busy_now = await read_issue(rig, quiet["id"]), await read_issue(rig, busy["id"])
    assert quiet_now["status"] == "resolved"
    assert quiet_now["resolved_at"] > quiet["updated_at"]
    if updated_at == "moves":
        assert quiet_now["updated_at"] == quiet_now["resolved_at"]
    else:
        assert quiet_now["updated_at"] == quiet["updated_at"]
    assert (await read_issue(rig, acked["id"]))["status"] == "resolved"
    assert busy_now["status"] == "open"
    changed = [o async for page in rig.adapter.list_changed(since) for o in page]
    assert {o.ref.external_id: o.fields.status for o in changed} == {
        quiet["id"]: Status.RESOLVED,
        busy["id"]: Status.OPEN,
        acked["id"]: Status.RESOLVED,
    }
    resolved = next(o for o in changed if o.ref.external_id == quiet["id"])
    # the observation is as new as the resolve, so it is not dropped as out of order
    assert resolved.updated_at == datetime.fromisoformat(quiet_now["resolved_at"])
    assert resolved.updated_at > datetime.fromisoformat(quiet["updated_at"])


async def test_snooze_and_unsnooze(rig: VendorRig) -> None:
    ref = ObjectRef("hookstream", "", await seed(rig))
    until = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    snoozed = await rig.adapter.update(ref, Fields(snoozed_until=until))
    assert snoozed.fields.snoozed_until == until
    assert (await rig.adapter.get(ref)).fields.snoozed_until == until
    cleared = await rig.adapter.update(ref, Fields(snoozed_until=None))
    assert cleared.fields.snoozed_until is None
    bodies = [r["body"] for r in await rig.requests("PATCH")]
    assert bodies == [{"snoozed_until": "2026-05-01T09:30:00Z"}, {"snoozed_until": None}]


async def test_only_writable_fields_are_sent_and_nothing_else_is_written(rig: VendorRig) -> None:
    ref = ObjectRef("hookstream", "", await seed(rig))
    obj = await rig.adapter.update(ref, Fields(title="renamed", priority=Priority.URGENT))
    assert obj.fields.title == "orders-0: http_5xx"
    assert await rig.requests("PATCH") == []
    await rig.adapter.update(ref, Fields(title="renamed", status=Status.ACKNOWLEDGED))
    assert [r["body"] for r in await rig.requests("PATCH")] == [{"status": "acknowledged"}]


async def test_patch_moves_updated_at_only_on_a_change(rig: VendorRig) -> None:
    issue_id = await seed(rig)
    first = (await rig.api.patch(f"/v1/issues/{issue_id}", json={"status": "acknowledged"})).json()
    again = (await rig.api.patch(f"/v1/issues/{issue_id}", json={"status": "acknowledged"})).json()
    assert first["issue"]["updated_at"] == again["issue"]["updated_at"]
    assert set(first) == {"issue"}


async def test_create_is_refused_without_a_call(rig: VendorRig) -> None:
    with pytest.raises(Rejected, match="creates issues itself"):
        await rig.adapter.create(CreateTarget(), Fields(title="x"), "wi-1:link-1")
    assert (await rig.control.get("/_sim/requests")).json()["requests"] == []


# -- notifications ------------------------------------------------------------------------


async def test_issue_opened_is_sent_only_for_new_issues_and_read_as_a_hint(rig: VendorRig) -> None:
    issue_id = (await report_failure(rig, "dst_1", destination_name="orders")).json()["issue"]["id"]
    await report_failure(rig, "dst_1")  # grouped
    await rig.control.patch(f"/_sim/objects/{issue_id}", json={"status": "resolved"})
    await report_failure(rig, "dst_1")  # reopened: not a new issue
    await rig.control.post("/_sim/webhooks/flush")
    assert len(rig.captured) == 1
    request = rig.captured[0]
    payload = msgspec.json.decode(request.content)
    assert payload["event"] == payload["rule_type"] == "issue_opened"
    assert datetime.fromisoformat(payload["triggered_at"]).tzinfo is not None
    assert payload["issue"] == {
        "id": issue_id,
        "title": "orders: timeout",
        "destination_id": "dst_1",
        "destination_name": "orders",
        "status": "open",
        "error_type": "timeout",
    }
    headers = lower_headers(request.headers.multi_items())
    assert headers["x-hookstream-signature"].startswith("sha256=")
    rig.adapter.verify_webhook(headers, request.content, utcnow())
    event = rig.adapter.parse_webhook(headers, request.content)
    assert event.event_type == "issue_opened"
    assert event.hints == [ObjectRef("hookstream", "", issue_id)]
    assert not event.observations
    assert not event.poll
    assert event.delivery_id == "hs-" + hashlib.sha256(request.content).hexdigest()


async def test_notification_secret_is_read_at_send_time(rig: VendorRig) -> None:
    await rig.control.put(
        "/_sim/webhook", json={"url": "http://gateway.test/webhooks/hookstream", "secret": "fresh"}
    )
    await report_failure(rig)
    await rig.control.post("/_sim/webhooks/flush")
    request = rig.captured[-1]
    headers = lower_headers(request.headers.multi_items())
    with pytest.raises(SignatureInvalid):
        rig.adapter.verify_webhook(headers, request.content, utcnow())
    offline(webhook_secrets=("fresh",)).verify_webhook(headers, request.content, utcnow())


def test_a_notification_without_an_issue_id_asks_for_a_poll() -> None:
    adapter = offline()
    no_id = (b'{"event": "failure_rate", "rule_type": "failure_rate"}', b'{"issue": {"id": ""}}')
    for body in no_id:
        event = adapter.parse_webhook({}, body)
        assert event.poll
        assert not event.hints
    assert adapter.parse_webhook({}, b'{"rule_type": "dlq"}').event_type == "dlq"


def test_unparseable_notifications_are_refused() -> None:
    adapter = offline()
    with pytest.raises(MalformedPayload):
        adapter.parse_webhook({}, b"{not json")
    with pytest.raises(UnreadablePayload):
        adapter.parse_webhook({}, b'["issue_opened"]')


def test_require_timestamp_option() -> None:
    """By default both documented forms are accepted (vendors.md, decision 2);
    ``require_timestamp: true`` is an opt-in that refuses the body-only form."""
    body = b'{"event":"issue_opened","issue":{"id":"iss_1"}}'
    bare = lower_headers(signing.hookstream_sign(KIT.webhook_secret, body))
    lenient = offline()
    lenient.verify_webhook(bare, body, utcnow())
    strict = offline(options={"require_timestamp": True})
    with pytest.raises(SignatureInvalid, match="Timestamp"):
        strict.verify_webhook(bare, body, utcnow())
    now = int(utcnow().timestamp())
    fresh = lower_headers(signing.hookstream_sign(KIT.webhook_secret, body, timestamp=now))
    for adapter in (lenient, strict):
        adapter.verify_webhook(fresh, body, utcnow())
    stale = lower_headers(signing.hookstream_sign(KIT.webhook_secret, body, timestamp=now - 900))
    for adapter in (lenient, strict):
        with pytest.raises(SignatureInvalid, match="tolerance"):
            adapter.verify_webhook(stale, body, utcnow())
    # a body-only signature offered with a timestamp header is checked as {ts}.{body}
    with pytest.raises(SignatureInvalid):
        lenient.verify_webhook({**bare, "x-hookstream-timestamp": str(now)}, body, utcnow())
    with pytest.raises(ConfigError) as info:
        offline(options={"require_timestamp": "no"})
    [issue] = info.value.issues
    assert issue.key == "systems.hookstream.options"
    assert "require_timestamp" in issue.message


@pytest.mark.parametrize("form", ["timestamped", "body"])
async def test_the_simulators_notification_is_accepted_in_either_form(
    rig: VendorRig, form: str
) -> None:
    await rig.control.put("/_sim/behaviour", json={"notification_signature": form})
    await seed(rig)
    await rig.control.post("/_sim/webhooks/flush")
    request = rig.captured[-1]
    headers, body = lower_headers(request.headers.multi_items()), request.content
    assert ("x-hookstream-timestamp" in headers) == (form == "timestamped")
    rig.adapter.verify_webhook(headers, body, utcnow())  # the default: either form
    event = rig.adapter.parse_webhook(headers, body)
    assert event.hints and event.hints[0].external_id
    strict = offline(options={"require_timestamp": True})
    if form == "timestamped":
        strict.verify_webhook(headers, body, utcnow())
    else:
        with pytest.raises(SignatureInvalid):
            strict.verify_webhook(headers, body, utcnow())


# -- rate limits ----------------------------------------------------------------------------


async def test_rate_limit_headers_and_the_limiter(rig: VendorRig) -> None:
    await rig.control.put("/_sim/rate-limit", json={"rpm": 2})
    ok = await rig.api.get("/v1/issues")
    assert ok.headers["RateLimit-Limit"] == "2"
    assert ok.headers["RateLimit-Remaining"] == "1"
    assert "RateLimit-Reset" in ok.headers
    await rig.api.get("/v1/issues")
    limited = await rig.api.get("/v1/issues")
    assert_error(limited, 429)
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 0 < float(limited.headers["Retry-After"]) <= 60


async def test_a_429_without_retry_after_waits_for_ratelimit_reset(rig: VendorRig) -> None:
    """The errors page says a 429 may also mean "plan quota exceeded"; whether it carries
    Retry-After is unconfirmed, so the adapter must wait RateLimit-Reset seconds."""
    ref = ObjectRef("hookstream", "", await seed(rig))
    await rig.control.put("/_sim/rate-limit", json={"rpm": 1000})
    response = await rig.control.post("/_sim/faults", json={"status": 429})
    assert response.status_code == 201
    with pytest.raises(RateLimited) as info:
        await rig.adapter.get(ref)
    last = (await rig.requests("GET"))[-1]
    assert last["status"] == 429
    assert info.value.retry_after == pytest.approx(60)


async def test_vendor_error_message_keeps_the_request_id(rig: VendorRig) -> None:
    await rig.control.post("/_sim/faults", json={"status": 409, "methods": ["PATCH"]})
    ref = ObjectRef("hookstream", "", await seed(rig))
    with pytest.raises(Rejected) as info:
        await rig.adapter.update(ref, Fields(status=Status.RESOLVED))
    assert "injected fault 409 [req_" in info.value.message


# -- mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "canonical"),
    [("open", Status.OPEN), ("acknowledged", Status.ACKNOWLEDGED), ("resolved", Status.RESOLVED)],
)
def test_every_vendor_status_maps(vendor: str, canonical: Status) -> None:
    adapter = offline()
    obj = adapter.to_vendor_object(issue_json(status=vendor))
    assert obj.fields.status == canonical
    assert obj.native == {"status": vendor}
    assert obj.unmapped == {}


def test_an_unknown_status_is_reported_not_guessed() -> None:
    adapter = offline()
    obj = adapter.to_vendor_object(issue_json(status="muted"))
    assert obj.fields.status is msgspec.UNSET
    assert obj.unmapped == {"status": "muted"}
    assert obj.native == {"status": "muted"}


async def test_every_canonical_status_is_written_as_a_vendor_status(rig: VendorRig) -> None:
    written = {
        Status.OPEN: "open",
        Status.ACKNOWLEDGED: "acknowledged",
        Status.MONITORING: "acknowledged",
        Status.WAITING: "acknowledged",
        Status.RESOLVED: "resolved",
        Status.CLOSED: "resolved",
        Status.CANCELLED: "resolved",
    }
    assert set(written) == set(Status)
    for n, (canonical, sent) in enumerate(written.items()):
        ref = ObjectRef("hookstream", "", await seed(rig, n))
        await rig.control.patch(f"/_sim/objects/{ref.external_id}", json={"status": "acknowledged"})
        before = await rig.adapter.get(ref)
        # An acknowledged issue already means monitoring and waiting: nothing to write.
        needed = not rig.adapter.differs(before, Fields(status=canonical)).is_empty()
        assert needed == (sent != "acknowledged"), canonical
        after = await rig.adapter.update(ref, Fields(status=canonical))
        assert after.native == {"status": sent}, canonical
        assert rig.adapter.differs(after, Fields(status=canonical)).is_empty()


def test_reads_the_reference_shape() -> None:
    adapter = offline()
    raw = issue_json(snoozed_until="2026-03-02T08:00:00+01:00", last_error=None, extra={"new": 1})
    obj = adapter.to_vendor_object(raw)
    assert obj.ref == ObjectRef("hookstream", "", raw["id"])
    assert obj.updated_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert obj.fields == Fields(
        title="orders: timeout",
        description="",
        status=Status.OPEN,
        snoozed_until=datetime(2026, 3, 2, 7, tzinfo=UTC),
    )
    assert obj.raw is raw


async def test_reads_the_guide_shape_bare_and_unwrapped() -> None:
    """The guide shows the issue bare, with ``error_type`` and ``message`` and no title or
    updated_at; hookstream's reference wraps it. A vendor serving the guide's shape is
    faked with a transport, the way the gateway's client would see it."""
    guide = {
        "id": "iss_" + "ab" * 16,
        "destination_id": "dst_9",
        "destination_name": "billing",
        "error_type": "http_4xx",
        "message": "HTTP 410 Gone",
        "status": "acknowledged",
        "occurrence_count": 4,
        "first_seen_at": "2026-03-01T09:00:00Z",
        "last_seen_at": "2026-03-01T09:45:00Z",
        "recent_attempt_ids": ["att_1"],
    }

    def vendor(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == KIT.api_key
        if request.url.path == "/v1/issues":  # the list, asked for the change time
            assert request.url.params["destination_id"] == "dst_9"
            assert request.url.params["status"] == "all"
            pagination = {"total": 1, "limit": 100, "offset": 0, "has_more": False}
            return httpx.Response(200, json={"issues": [guide], "pagination": pagination})
        assert request.url.path == f"/v1/issues/{guide['id']}"
        return httpx.Response(200, json=guide)

    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        adapter = HookstreamAdapter(KIT.settings("https://hookstream.io/v1"), client)
        obj = await adapter.get(ObjectRef("hookstream", "", str(guide["id"])))
    # no snoozed_until in this shape: unknown, not unsnoozed
    assert obj.fields == Fields(
        title="billing: http_4xx", description="HTTP 410 Gone", status=Status.ACKNOWLEDGED
    )
    # no time in the list either: the last failure stands in
    assert obj.updated_at == datetime(2026, 3, 1, 9, 45, tzinfo=UTC)
    # the guide's shape has no created_at: the first failure seen made the issue
    assert obj.created_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def test_under_the_guides_detail_a_read_is_as_recent_as_the_change_it_shows(
    rig: VendorRig,
) -> None:
    """Behaviour ``issue_detail: guide``: ``GET /v1/issues/{id}`` answers the guide's bare
    object, with no ``updated_at``. A person's change made after the last failure must
    still read as a change at its own time, as the list reports it: read at the time of
    the last failure, the refresh before a write took it for older than the gateway's
    own value, and the conflict policy let the write overwrite the person's edit."""
    await rig.control.put("/_sim/behaviour", json={"issue_detail": "guide"})
    ref = ObjectRef(SYSTEM, "", await seed(rig, 0, last_error="HTTP 503"))
    await rig.control.post("/_sim/clock", json={"advance_s": 60})
    await rig.kit.human_change(rig.control, ref)  # resolved, a minute after the failure
    [listed] = [o async for page in rig.adapter.list_changed(None) for o in page]
    read = await rig.adapter.get(ref)
    assert read.fields.status == Status.RESOLVED
    assert read.updated_at == listed.updated_at
    assert read.fields == listed.fields


def test_the_creation_time_is_created_at_and_absent_when_no_time_says_it() -> None:
    adapter = offline()
    made = adapter.to_vendor_object(issue_json(created_at="2026-02-27T08:00:00Z"))
    assert made.created_at == datetime(2026, 2, 27, 8, 0, tzinfo=UTC)
    unknown = adapter.to_vendor_object(issue_json())  # neither created_at nor first_seen_at
    assert unknown.created_at is None  # an object of unknown age: never taken for new


async def test_list_changed_compares_updated_at_client_side(rig: VendorRig) -> None:
    ids = [await seed(rig, n) for n in range(3)]
    cutoff = (await rig.adapter.get(ObjectRef("hookstream", "", ids[1]))).updated_at
    await rig.control.delete("/_sim/requests")
    changed = [o async for page in rig.adapter.list_changed(cutoff) for o in page]
    assert [o.ref.external_id for o in changed] == ids[1:]
    assert all("updated" not in r["query"] for r in await rig.requests("GET"))
