"""InboxOps specifics the contract suite cannot express: simulator strictness and error
shape, the list envelope and filters, idempotent create, custom statuses, reminders,
webhook events, the field maps and the ``webhook_scheme`` option."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest

from adapters._http import DEFAULT_RATE_LIMIT_DELAY_S
from adapters._simkit import SimOptions
from adapters.base import lower_headers
from adapters.inboxops.adapter import InboxOpsAdapter, read_error
from adapters.inboxops.simulator import (
    BILLING_INBOX_ID,
    SUPPORT_INBOX_ID,
    InboxOpsSimulator,
    SeedIn,
    iso,
)
from app.errors import (
    AuthError,
    ConfigError,
    MalformedPayload,
    RateLimited,
    Rejected,
    SignatureInvalid,
    TransientError,
    UnreadablePayload,
)
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status, utcnow
from app.serving import serve_asgi
from tests.contract.kit_inboxops import KIT
from tests.vendor_rig import VendorRig

PROBLEM_TYPE = "https://docs.inboxops.app/api/problems/"


SYSTEM = "inboxops"


async def seed(rig: VendorRig, **body: Any) -> dict[str, Any]:
    response = await rig.control.post("/_sim/seed", json={"subject": "Seeded", **body})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert set(body) == {"type", "title", "status", "detail", "code", "instance"}
    assert body["type"] == PROBLEM_TYPE + code
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


# -- simulator strictness -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "x", "severity": "high"},  # unknown field
        {"status": "pending"},  # not a status
        {"priority": "critical"},  # not a priority (custom ones go through priority_id)
        {"subject": 5},  # wrong type
        {"subject": ""},  # empty subject
        {"assignee_id": "agent-7"},  # not a UUID
        {"status_id": "7b0e3c1a-1d2f-4a5b-8c9d-0e1f2a3b4c5d"},  # unknown custom status
        {"remind_at": "2030-01-01T10:00:00"},  # date-time without offset
    ],
)
async def test_patch_rejects_bad_bodies_with_400_problem(
    rig: VendorRig, body: dict[str, Any]
) -> None:
    ticket = await seed(rig)
    response = await rig.api.patch(f"/api/v1/tickets/{ticket['id']}", json=body)
    assert_problem(response, 400, "bad_request")
    listed = (await rig.control.get("/_sim/objects")).json()["objects"]
    assert listed == [ticket], "a refused PATCH must change nothing"


@pytest.mark.parametrize(
    "body",
    [
        {"inbox_id": SUPPORT_INBOX_ID},  # subject is required
        {"subject": "x"},  # inbox_id is required
        {"subject": "x", "inbox_id": "7b0e3c1a-1d2f-4a5b-8c9d-0e1f2a3b4c5d"},  # unknown inbox
        {"subject": "x", "inbox_id": SUPPORT_INBOX_ID, "status": "open"},  # no status on create
        {"subject": "x", "inbox_id": SUPPORT_INBOX_ID, "initial_internal_note": {}},
        {"subject": "x", "inbox_id": SUPPORT_INBOX_ID, "reporter_email": "nobody"},
    ],
)
async def test_create_rejects_bad_bodies_with_400_problem(
    rig: VendorRig, body: dict[str, Any]
) -> None:
    response = await rig.api.post("/api/v1/tickets", json=body)
    assert_problem(response, 400, "bad_request")
    assert (await rig.control.get("/_sim/objects")).json()["objects"] == []


async def test_malformed_json_is_400(rig: VendorRig) -> None:
    response = await rig.api.post(
        "/api/v1/tickets", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "bad_request")


async def test_unknown_ticket_is_404_problem(rig: VendorRig) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(await rig.api.get(f"/api/v1/tickets/{missing}"), 404, "not_found")
    assert_problem(await rig.api.patch(f"/api/v1/tickets/{missing}", json={}), 404, "not_found")


async def test_missing_or_wrong_key_is_401_problem(rig: VendorRig) -> None:
    assert_problem(await rig.control.get("/api/v1/tickets"), 401, "unauthorized")
    wrong = {"Authorization": f"Bearer {KIT.api_key}x"}
    assert_problem(await rig.control.get("/api/v1/tickets", headers=wrong), 401, "unauthorized")
    raw_key = {"Authorization": KIT.api_key}  # the Bearer prefix is required
    assert_problem(await rig.control.get("/api/v1/tickets", headers=raw_key), 401, "unauthorized")


async def test_unsupported_method_is_405_problem(rig: VendorRig) -> None:
    ticket = await seed(rig)
    response = await rig.api.delete(f"/api/v1/tickets/{ticket['id']}")
    assert_problem(response, 405, "method_not_allowed")


async def test_rate_limit_is_429_problem_with_retry_after(rig: VendorRig) -> None:
    await rig.control.put("/_sim/rate-limit", json={"rpm": 1})
    assert (await rig.api.get("/api/v1/tickets")).status_code == 200
    response = await rig.api.get("/api/v1/tickets")
    assert_problem(response, 429, "rate_limit_exceeded")
    assert 0 < float(response.headers["retry-after"]) <= 60


async def test_injected_faults_use_inboxops_codes(rig: VendorRig) -> None:
    await rig.control.post("/_sim/faults", json={"status": 503})
    assert_problem(await rig.api.get("/api/v1/tickets"), 503, "service_unavailable")
    await rig.control.post("/_sim/faults", json={"status": 500})
    assert_problem(await rig.api.get("/api/v1/tickets"), 500, "internal_error")


async def test_the_legacy_error_shape_of_the_update_page(rig: VendorRig) -> None:
    """Behaviour ``errors: legacy``: the update page's ``{error, message, code: <status>,
    details?}`` with no problem code; a field is named only in ``details``, and the
    limiter's 429 carries ``retryAfter`` besides the header."""
    await rig.control.put("/_sim/behaviour", json={"errors": "legacy"})
    response = await rig.api.post("/api/v1/tickets", json={"subject": "x", "inbox_id": "nope"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["error"], body["code"]) == ("Bad Request", 400)
    assert body["details"] == [{"field": "inbox_id", "message": "Invalid UUID"}]
    await rig.control.put("/_sim/rate-limit", json={"rpm": 1})
    assert (await rig.api.get("/api/v1/tickets")).status_code == 200
    limited = await rig.api.get("/api/v1/tickets")
    assert limited.status_code == 429
    assert set(limited.json()) == {"error", "message", "code", "retryAfter"}
    assert limited.json()["retryAfter"] == float(limited.headers["retry-after"])


async def test_under_the_legacy_error_shape_a_409_still_finds_the_ticket_made(
    rig: VendorRig,
) -> None:
    """The legacy shape does not say that a 409 is an idempotency conflict: the adapter
    takes any 409 on create that is not plainly another conflict as one, and finds the
    ticket its earlier attempt made (by its marker) instead of dead-lettering it."""
    await rig.control.put("/_sim/behaviour", json={"errors": "legacy"})
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    started = utcnow()
    first = await rig.adapter.create(
        target, Fields(title="Checkout down", priority=Priority.HIGH), "wi-6:link-6"
    )
    again = await rig.adapter.create(
        target,
        Fields(title="Checkout down", priority=Priority.URGENT),
        "wi-6:link-6",
        earlier_since=started,
    )
    assert again.ref == first.ref
    assert len((await rig.control.get("/_sim/objects")).json()["objects"]) == 1


async def test_under_the_legacy_error_shape_a_refused_marker_field_is_recognised(
    rig: VendorRig,
) -> None:
    """The refusal of the marker field names it only in ``details``: the adapter still
    sees it and makes the ticket without the marker rather than failing the create."""
    await rig.control.put("/_sim/behaviour", json={"errors": "legacy", "custom_fields": "defined"})
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    created = await rig.adapter.create(target, Fields(title="No marker"), f"syncgate-{'f' * 32}-1")
    assert rig.adapter.marker_key(created) is None
    posts = (await rig.control.get("/_sim/requests")).json()["requests"]
    assert [r["status"] for r in posts] == [400, 201]


async def test_under_the_legacy_error_shape_a_429_body_delay_is_read(rig: VendorRig) -> None:
    await rig.control.put("/_sim/behaviour", json={"errors": "legacy"})
    ticket = await seed(rig)
    await rig.control.put("/_sim/rate-limit", json={"rpm": 1})
    ref = ObjectRef(SYSTEM, "", ticket["id"])
    await rig.adapter.get(ref)
    with pytest.raises(RateLimited) as info:
        await rig.adapter.get(ref)
    assert 0 < info.value.retry_after <= 60


# -- reads: GET and the list envelope ----------------------------------------------------------


async def test_get_by_ticket_number_but_patch_by_uuid_only(rig: VendorRig) -> None:
    ticket = await seed(rig)
    by_number = await rig.api.get(f"/api/v1/tickets/{ticket['ticket_number']}")
    assert by_number.status_code == 200
    assert by_number.json() == {"data": ticket}
    patched = await rig.api.patch(f"/api/v1/tickets/{ticket['ticket_number']}", json={})
    assert_problem(patched, 404, "not_found")


async def test_get_include_adds_keys_and_rejects_unknown(rig: VendorRig) -> None:
    ticket = await seed(rig, inbox_id=BILLING_INBOX_ID)
    response = await rig.api.get(
        f"/api/v1/tickets/{ticket['id']}", params={"include": "inbox,tags"}
    )
    data = response.json()["data"]
    assert data["inbox"] == {"id": BILLING_INBOX_ID, "name": "Billing"}
    assert data["tags"] == []
    bad = await rig.api.get(f"/api/v1/tickets/{ticket['id']}", params={"include": "secrets"})
    assert_problem(bad, 400, "bad_request")


@pytest.mark.parametrize("sort", ["honoured", "ignored"])
async def test_a_ticket_changed_during_a_poll_makes_none_of_the_others_be_skipped(
    rig: VendorRig, sort: str
) -> None:
    """The list is sorted by ``updated_at``: a ticket changed while a poll walks it moves
    to the end, and every ticket behind it moves up one place. Walked by page number,
    the ticket that moved up across a page boundary was never read, and the poll's
    cursor moved past it (to the moved ticket's new time): its change was lost to
    polling for good. The walk must see every ticket changed since ``since``, whether
    the list honours ``sort=updated_at`` or not (behaviour ``sort_updated_at``)."""
    await rig.control.put("/_sim/behaviour", json={"sort_updated_at": sort})
    since = utcnow()
    made = [await seed(rig, subject=f"T{n}") for n in range(5)]
    # changed out of creation order (a walk by time would skip under "ignored")
    bumped = await rig.control.patch(f"/_sim/objects/{made[1]['id']}", json={"priority": "high"})
    assert bumped.status_code == 200, bumped.text
    walk = rig.adapter.list_changed(since)
    first = await anext(walk)  # page_size 2
    assert first[0].ref.external_id == made[0]["id"]
    moved = await rig.control.patch(f"/_sim/objects/{made[0]['id']}", json={"status": "waiting"})
    assert moved.status_code == 200, moved.text  # a person's change: it moves to the end
    rest = [o async for page in walk for o in page]
    seen = {o.ref.external_id for o in [*first, *rest]}
    assert seen == {t["id"] for t in made}, "a ticket changed since `since` was skipped"
    # its new state, in this walk or the next poll's (from the newest time read)
    newest = max(o.updated_at for o in [*first, *rest])
    again = [o async for page in rig.adapter.list_changed(newest) for o in page]
    assert [o.native for o in [*rest, *again] if o.ref.external_id == made[0]["id"]][-1] == {
        "status": "waiting",
        "priority": "normal",
    }
    states = [(o.ref.external_id, o.updated_at) for o in [*first, *rest]]
    assert len(states) == len(set(states)), "a ticket state reported twice"


async def test_list_envelope_and_pages(rig: VendorRig) -> None:
    made = [await seed(rig, subject=f"T{n}") for n in range(5)]
    first = (await rig.api.get("/api/v1/tickets", params={"per_page": 2})).json()
    assert set(first) == {"data", "meta"}
    assert first["meta"] == {"page": 1, "per_page": 2, "total": 5, "total_pages": 3}
    # default order is created_at desc
    assert [t["id"] for t in first["data"]] == [made[4]["id"], made[3]["id"]]
    last = (await rig.api.get("/api/v1/tickets", params={"per_page": 2, "page": 3})).json()
    assert [t["id"] for t in last["data"]] == [made[0]["id"]]
    past = (await rig.api.get("/api/v1/tickets", params={"per_page": 2, "page": 4})).json()
    assert past["data"] == []
    assert past["meta"]["total"] == 5
    default = (await rig.api.get("/api/v1/tickets")).json()["meta"]
    assert default["per_page"] == 25


@pytest.mark.parametrize(
    "params",
    [
        {"per_page": 101},
        {"page": 0},
        {"sort": "priority"},
        {"order": "up"},
        {"status": "pending"},
        {"updated_after": "yesterday"},
        {"color": "red"},
        {"q": "a", "query": "b"},
    ],
)
async def test_list_rejects_bad_parameters(rig: VendorRig, params: dict[str, Any]) -> None:
    assert_problem(await rig.api.get("/api/v1/tickets", params=params), 400, "bad_request")


async def test_list_filters(rig: VendorRig) -> None:
    agent = "5d3c0a8e-2b1f-4c7d-9e6a-1f0b2c3d4e5f"
    login = await seed(rig, subject="Login loop on Safari", priority="high")
    billing = await seed(
        rig,
        subject="Invoice total wrong",
        inbox_id=BILLING_INBOX_ID,
        assignee_id=agent,
        custom_fields={"plan": "pro"},
    )
    done = await seed(rig, subject="Old request", status="resolved")

    async def ids(**params: Any) -> list[str]:
        response = await rig.api.get("/api/v1/tickets", params={**params, "order": "asc"})
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]]

    assert await ids(status="resolved") == [done["id"]]
    assert await ids(priority="high") == [login["id"]]
    assert await ids(inbox_id=BILLING_INBOX_ID) == [billing["id"]]
    assert await ids(assignee_id=agent) == [billing["id"]]
    assert await ids(q="safari") == [login["id"]]
    assert await ids(query="INVOICE") == [billing["id"]]
    assert await ids(custom_field_plan="pro") == [billing["id"]]
    assert await ids(custom_field_plan="__empty__") == [login["id"], done["id"]]
    assert await ids(created_after=login["created_at"]) == [billing["id"], done["id"]]
    assert await ids(created_before=billing["created_at"]) == [login["id"]]


async def test_list_sorts_by_updated_at_and_updated_after_is_exclusive(rig: VendorRig) -> None:
    a, b, c = [await seed(rig, subject=s) for s in "abc"]
    await rig.control.patch(f"/_sim/objects/{a['id']}", json={"priority": "low"})
    listed = (
        await rig.api.get("/api/v1/tickets", params={"sort": "updated_at", "order": "asc"})
    ).json()["data"]
    assert [t["id"] for t in listed] == [b["id"], c["id"], a["id"]]
    after_b = (
        await rig.api.get("/api/v1/tickets", params={"updated_after": b["updated_at"]})
    ).json()["data"]
    assert {t["id"] for t in after_b} == {c["id"], a["id"]}


async def test_adapter_list_changed_includes_a_change_at_since(rig: VendorRig) -> None:
    ticket = await seed(rig)
    since = (await rig.adapter.get(ObjectRef("inboxops", "", ticket["id"]))).updated_at
    changed = [o async for page in rig.adapter.list_changed(since) for o in page]
    assert [o.ref.external_id for o in changed] == [ticket["id"]]
    query = (await rig.control.get("/_sim/requests")).json()["requests"][-1]["query"]
    assert "sort=updated_at" in query
    assert "order=asc" in query


# -- writes: idempotent create, status rules -----------------------------------------------


async def test_idempotency_key_replays_and_conflicts(rig: VendorRig) -> None:
    body = {"subject": "Printer on fire", "inbox_id": SUPPORT_INBOX_ID}
    key = {"Idempotency-Key": "wi-1:link-1"}
    first = await rig.api.post("/api/v1/tickets", json=body, headers=key)
    assert first.status_code == 201
    await rig.api.patch(f"/api/v1/tickets/{first.json()['data']['id']}", json={"status": "closed"})
    again = await rig.api.post("/api/v1/tickets", json=body, headers=key)
    assert again.status_code == 201
    assert again.json() == first.json(), "a replay returns the original 201 response"
    other = await rig.api.post("/api/v1/tickets", json={**body, "subject": "Else"}, headers=key)
    assert_problem(other, 409, "idempotency_conflict")
    assert len((await rig.control.get("/_sim/objects")).json()["objects"]) == 1


async def test_idempotency_key_expires_after_a_day(rig: VendorRig) -> None:
    body = {"subject": "Printer on fire", "inbox_id": SUPPORT_INBOX_ID}
    key = {"Idempotency-Key": "wi-2:link-2"}
    first = await rig.api.post("/api/v1/tickets", json=body, headers=key)
    await rig.control.post("/_sim/clock", json={"advance_s": 25 * 3600})
    later = await rig.api.post("/api/v1/tickets", json=body, headers=key)
    assert later.json()["data"]["id"] != first.json()["data"]["id"]


async def test_adapter_create_idempotency_conflict_with_no_match_is_rejected(
    rig: VendorRig,
) -> None:
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    await rig.adapter.create(target, Fields(title="One"), "wi-5:link-5")
    with pytest.raises(Rejected) as info:
        await rig.adapter.create(target, Fields(title="Two"), "wi-5:link-5")
    assert info.value.message.startswith("idempotency_conflict: ")
    assert "no ticket of inbox" in info.value.message and "by hand" in info.value.message


async def test_a_409_idempotency_conflict_finds_and_returns_the_ticket_made(rig: VendorRig) -> None:
    """The first attempt's answer was lost, and the retry's body differs (the priority
    changed meanwhile): the key is refused, and the adapter finds the ticket it made
    instead of leaving it unlinked."""
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    await rig.api.post(  # another ticket of the inbox, made before: not a candidate
        "/api/v1/tickets", json={"subject": "Checkout down", "inbox_id": SUPPORT_INBOX_ID}
    )
    started = utcnow()
    first = await rig.adapter.create(
        target, Fields(title="Checkout down", priority=Priority.HIGH), "wi-5:link-5"
    )
    again = await rig.adapter.create(
        target,
        Fields(title="Checkout down", priority=Priority.URGENT),
        "wi-5:link-5",
        earlier_since=started + timedelta(minutes=5),  # the skew margin still covers it
    )
    assert again.ref == first.ref
    assert len((await rig.control.get("/_sim/objects")).json()["objects"]) == 2


@pytest.mark.parametrize("ttl", ["24h", "1h"])
async def test_a_create_retried_after_its_key_expired_finds_the_ticket_made(
    rig: VendorRig, ttl: str
) -> None:
    """The first attempt's answer was lost, and the retry comes two hours later (an
    outage): by then the Idempotency-Key may have expired (its lifetime is cut off in the
    docs; behaviour ``idempotency_ttl``), and the key alone made a second ticket. A
    retried create looks for its marker first."""
    await rig.control.put("/_sim/behaviour", json={"idempotency_ttl": ttl})
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    key = f"syncgate-{'c' * 32}-4"
    await rig.fault(status=502, count=1, methods=["POST"], after=True)
    started = utcnow()
    with pytest.raises(TransientError):
        await rig.adapter.create(target, Fields(title="Queue stuck"), key)
    await rig.control.post("/_sim/clock", json={"advance_s": 2 * 3600})
    again = await rig.adapter.create(
        target, Fields(title="Queue stuck"), key, earlier_since=started
    )
    tickets = (await rig.control.get("/_sim/objects")).json()["objects"]
    assert [t["id"] for t in tickets] == [again.ref.external_id]


async def test_adapter_create_sends_no_status_and_the_description_as_a_note(rig: VendorRig) -> None:
    key = f"syncgate-{'a' * 32}-6"
    created = await rig.adapter.create(
        CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID}),
        Fields(title="Open one", description="Details", status=Status.OPEN, priority=Priority.LOW),
        key,
    )
    writes = [r for r in (await rig.control.get("/_sim/requests")).json()["requests"]]
    assert [(r["method"], r["path"]) for r in writes] == [("POST", "/api/v1/tickets")]
    assert writes[0]["headers"]["idempotency-key"] == key
    assert writes[0]["body"] == {
        "subject": "Open one",
        "inbox_id": SUPPORT_INBOX_ID,
        "priority": "low",
        "initial_internal_note": {"body_text": "Details"},
        "custom_fields": {"syncgate_marker": key},
    }
    notes = (await rig.control.get("/_sim/notes")).json()["data"]
    assert notes == [
        {"ticket_id": created.ref.external_id, "body_text": "Details", "body_html": None}
    ]
    # the marker stays visible on the ticket, for a backfill on an empty database
    assert rig.adapter.marker_key(created) == key
    assert rig.adapter.marker_key(await rig.adapter.get(created.ref)) == key


async def test_a_workspace_that_refuses_the_marker_field_still_gets_its_ticket_once(
    rig: VendorRig,
) -> None:
    behaviour = await rig.control.put("/_sim/behaviour", json={"custom_fields": "defined"})
    assert behaviour.status_code == 200, behaviour.text
    key = f"syncgate-{'d' * 32}-9"
    target = CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID})
    created = await rig.adapter.create(target, Fields(title="No marker field"), key)
    assert rig.adapter.marker_key(created) is None  # no marker, but a ticket
    posts = [r for r in (await rig.control.get("/_sim/requests")).json()["requests"]]
    assert [r["status"] for r in posts] == [400, 201]
    assert "custom_fields" not in posts[1]["body"]
    # a retry (the first answer lost) replays the same ticket through the key
    again = await rig.adapter.create(target, Fields(title="No marker field"), key)
    assert again.ref == created.ref
    assert len((await rig.control.get("/_sim/objects")).json()["objects"]) == 1
    # once the workspace defines the field, tickets carry the marker
    defined = await rig.control.post("/_sim/custom-fields", json={"key": "syncgate_marker"})
    assert defined.status_code == 201, defined.text
    other = f"syncgate-{'e' * 32}-10"
    marked = await rig.adapter.create(target, Fields(title="Marked"), other)
    assert rig.adapter.marker_key(marked) == other


async def test_adapter_create_without_inbox_is_rejected(rig: VendorRig) -> None:
    with pytest.raises(Rejected):
        await rig.adapter.create(CreateTarget(), Fields(title="x"), "k")
    assert (await rig.control.get("/_sim/requests")).json()["requests"] == []


async def test_status_id_takes_precedence_and_is_read_by_category(rig: VendorRig) -> None:
    statuses = (await rig.control.get("/_sim/statuses")).json()["data"]
    escalated = next(s for s in statuses if s["name"] == "Escalated")
    ticket = await seed(rig)
    response = await rig.api.patch(
        f"/api/v1/tickets/{ticket['id']}", json={"status": "closed", "status_id": escalated["id"]}
    )
    data = response.json()["data"]
    assert (data["status"], data["status_id"], data["status_name"]) == (
        "in_progress",
        escalated["id"],
        "Escalated",
    )
    obj = await rig.adapter.get(ObjectRef("inboxops", "", ticket["id"]))
    assert obj.fields.status == Status.ACKNOWLEDGED
    assert obj.native["status"] == "in_progress"
    # Already acknowledged in meaning: no write; a real change sends status, never status_id.
    assert rig.adapter.differs(obj, Fields(status=Status.ACKNOWLEDGED)).is_empty()
    after = await rig.adapter.update(obj.ref, Fields(status=Status.RESOLVED), obj)
    assert after.raw["status_id"] != escalated["id"]
    assert after.native["status"] == "resolved"
    assert (await rig.control.get("/_sim/requests")).json()["requests"][-1]["body"] == {
        "status": "resolved"
    }


async def test_adapter_update_unassigns_with_null(rig: VendorRig) -> None:
    ticket = await seed(rig, assignee_id="5d3c0a8e-2b1f-4c7d-9e6a-1f0b2c3d4e5f")
    ref = ObjectRef("inboxops", "", ticket["id"])
    updated = await rig.adapter.update(ref, Fields(assignee=None, title="Renamed"))
    assert updated.fields.assignee is None
    assert updated.fields.title == "Renamed"
    assert (await rig.control.get("/_sim/requests")).json()["requests"][-1]["body"] == {
        "subject": "Renamed",
        "assignee_id": None,
    }


# -- vendor-side behaviour: reminders and webhooks -----------------------------------------


async def test_reminder_moves_the_ticket_on_by_itself(rig: VendorRig) -> None:
    statuses = (await rig.control.get("/_sim/statuses")).json()["data"]
    escalated = next(s for s in statuses if s["name"] == "Escalated")
    ticket = await seed(rig)
    remind_at = iso(rig.sim.kit.now() + timedelta(minutes=30))
    waiting = (
        await rig.api.patch(
            f"/api/v1/tickets/{ticket['id']}",
            json={
                "status": "waiting",
                "remind_at": remind_at,
                "remind_transition_status_id": escalated["id"],
            },
        )
    ).json()["data"]
    assert waiting["remind_at"] == remind_at
    await rig.control.post("/_sim/clock", json={"advance_s": 600})
    assert (await rig.api.get(f"/api/v1/tickets/{ticket['id']}")).json()["data"] == waiting
    await rig.control.post("/_sim/clock", json={"advance_s": 1800})
    fired = (await rig.api.get(f"/api/v1/tickets/{ticket['id']}")).json()["data"]
    assert fired["status_id"] == escalated["id"]
    assert fired["remind_at"] is None
    assert fired["remind_transition_status_id"] is None
    assert fired["updated_at"] > waiting["updated_at"]
    events = await rig.delivered_bodies()
    assert [e["type"] for e in events] == ["ticket.created", "ticket.updated", "ticket.updated"]
    assert events[-1]["data"] == fired
    changed = [o async for page in rig.adapter.list_changed(None) for o in page]
    assert changed[0].fields.status == Status.ACKNOWLEDGED


async def test_remind_at_applies_only_with_a_waiting_status(rig: VendorRig) -> None:
    ticket = await seed(rig)
    remind_at = iso(rig.sim.kit.now() + timedelta(minutes=5))
    ignored = await rig.api.patch(
        f"/api/v1/tickets/{ticket['id']}", json={"status": "in_progress", "remind_at": remind_at}
    )
    assert ignored.json()["data"]["remind_at"] is None
    waiting = await rig.api.patch(
        f"/api/v1/tickets/{ticket['id']}", json={"status": "waiting", "remind_at": remind_at}
    )
    assert waiting.json()["data"]["remind_at"] == remind_at
    await rig.control.post("/_sim/clock", json={"advance_s": 600})
    fired = (await rig.api.get(f"/api/v1/tickets/{ticket['id']}")).json()["data"]
    assert fired["status"] == "open"  # no transition status: back to open


async def test_webhooks_on_every_change_and_none_on_a_no_op(rig: VendorRig) -> None:
    ticket = await seed(rig)
    path = f"/api/v1/tickets/{ticket['id']}"
    await rig.api.patch(path, json={"priority": "urgent"})
    await rig.api.patch(path, json={"priority": "urgent"})  # no change
    await rig.control.patch(f"/_sim/objects/{ticket['id']}", json={"status": "closed"})
    events = await rig.delivered_bodies()
    assert [e["type"] for e in events] == ["ticket.created", "ticket.updated", "ticket.updated"]
    assert [e["data"]["priority"] for e in events] == ["normal", "urgent", "urgent"]
    assert all(e["id"].startswith("evt_") for e in events)
    request = rig.captured[-1]
    headers = lower_headers(request.headers.multi_items())
    assert headers["webhook-id"] == events[-1]["id"]
    rig.adapter.verify_webhook(headers, request.content, utcnow())
    parsed = rig.adapter.parse_webhook(headers, request.content)
    assert parsed.delivery_id == events[-1]["id"]
    assert parsed.event_type == "ticket.updated"
    assert [o.fields.status for o in parsed.observations] == [Status.CLOSED]


async def test_webhook_secret_change_applies_to_the_next_delivery(rig: VendorRig) -> None:
    await rig.control.put(
        "/_sim/webhook",
        json={"url": "http://gateway.test/webhooks/inboxops", "secret": KIT.other_secret},
    )
    await seed(rig)
    await rig.delivered_bodies()
    request = rig.captured[-1]
    headers = lower_headers(request.headers.multi_items())
    with pytest.raises(SignatureInvalid):
        rig.adapter.verify_webhook(headers, request.content, utcnow())
    rotated = InboxOpsAdapter(
        KIT.settings("http://unused", webhook_secrets=(KIT.other_secret,)), rig.adapter.client
    )
    rotated.verify_webhook(headers, request.content, utcnow())


# -- parsing, mapping and options (no I/O) --------------------------------------------------


def ticket_json(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
        "ticket_number": 1042,
        "subject": "Webhook test",
        "inbox_id": SUPPORT_INBOX_ID,
        "status": "open",
        "status_id": "c6a1d7e2-0f3b-4a58-9d21-7e6b5c4a3f20",
        "priority": "normal",
        "priority_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "assignee_id": None,
        "created_at": "2026-11-23T10:00:00.000000Z",
        "updated_at": "2026-11-23T10:05:00.250000Z",
        "sla": {"breached": False},  # an extra key InboxOps may add
        **overrides,
    }


def adapter(**options: Any) -> InboxOpsAdapter:
    return InboxOpsAdapter(KIT.settings("http://unused", options=options), httpx.AsyncClient())


@pytest.mark.parametrize(
    ("vendor", "canonical"),
    [
        ("open", Status.OPEN),
        ("in_progress", Status.ACKNOWLEDGED),
        ("waiting", Status.WAITING),
        ("resolved", Status.RESOLVED),
        ("closed", Status.CLOSED),
    ],
)
def test_every_status_maps(vendor: str, canonical: Status) -> None:
    obj = adapter().to_object(ticket_json(status=vendor))
    assert obj.fields.status == canonical
    assert obj.native["status"] == vendor
    assert not obj.unmapped


@pytest.mark.parametrize("level", ["low", "normal", "high", "urgent"])
def test_every_priority_maps(level: str) -> None:
    obj = adapter().to_object(ticket_json(priority=level))
    assert obj.fields.priority == Priority(level)


def test_unknown_values_go_to_unmapped() -> None:
    obj = adapter().to_object(ticket_json(status="snoozed", priority="p0"))
    assert obj.unmapped == {"status": "snoozed", "priority": "p0"}
    assert obj.fields.status is msgspec.UNSET
    assert obj.fields.priority is msgspec.UNSET
    assert obj.fields.title == "Webhook test"
    assert obj.fields.assignee is None
    assert obj.raw["sla"] == {"breached": False}
    assert obj.updated_at.utcoffset() == timedelta(0)


def test_outbound_map_covers_every_canonical_status() -> None:
    status_map = InboxOpsAdapter.default_value_maps()["status"]
    assert {s.value: status_map.to_vendor(s.value) for s in Status} == {
        "open": "open",
        "acknowledged": "in_progress",
        "monitoring": "in_progress",
        "waiting": "waiting",
        "resolved": "resolved",
        "closed": "closed",
        "cancelled": "closed",
    }


def test_parse_webhook_refuses_what_inboxops_does_not_send() -> None:
    a = adapter()
    with pytest.raises(MalformedPayload):
        a.parse_webhook({}, b"{not json")
    unknown = {"id": "evt_1", "type": "contact.created", "data": ticket_json()}
    with pytest.raises(UnreadablePayload):
        a.parse_webhook({}, msgspec.json.encode(unknown))
    with pytest.raises(UnreadablePayload):
        a.parse_webhook({}, msgspec.json.encode({"id": "evt_2", "type": "ticket.updated"}))
    with pytest.raises(UnreadablePayload):  # names no ticket at all
        a.parse_webhook({}, msgspec.json.encode({"id": "e", "type": "ticket.updated", "data": {}}))
    event = {"id": "evt_3", "type": "ticket.created", "data": ticket_json()}
    parsed = a.parse_webhook({}, msgspec.json.encode(event))
    assert parsed.delivery_id == "evt_3", "without webhook-id the body id is the delivery id"


async def test_a_webhook_that_leaves_out_fields_is_a_hint_to_fetch_the_ticket(
    rig: VendorRig,
) -> None:
    """Behaviour ``webhook_data: partial``: the payload is undocumented and may carry
    only some of the ticket's fields. Read as it was, the missing ``assignee_id`` was
    null (a person's assignment undone everywhere), the missing ``created_at`` made a
    new ticket old and the missing custom fields hid the gateway's marker: the ticket
    is fetched instead."""
    await rig.control.put("/_sim/behaviour", json={"webhook_data": "partial"})
    agent = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"
    ticket = await seed(rig, subject="Partial", assignee_id=agent)
    [request] = await rig.deliveries()
    assert "assignee_id" not in msgspec.json.decode(request.content)["data"]
    headers = lower_headers(request.headers.multi_items())
    event = rig.adapter.parse_webhook(headers, request.content)
    assert event.observations == [], "a partial ticket was read as a whole one"
    assert event.hints == [ObjectRef(SYSTEM, "", ticket["id"])]
    fetched = await rig.adapter.get(event.hints[0])
    assert (fetched.fields.assignee, fetched.created_at is not None) == (agent, True)
    # a ticket read without the key says nothing about its assignee
    partial = {k: v for k, v in ticket.items() if k != "assignee_id"}
    assert rig.adapter.to_object(partial).fields.assignee is msgspec.UNSET


async def test_a_webhook_naming_only_the_ticket_is_a_hint_to_fetch_it(rig: VendorRig) -> None:
    """Behaviour ``webhook_data: id``: the payload is undocumented, and may name the ticket
    without carrying it. The delivery is a hint (the ticket is fetched), not refused."""
    await rig.control.put("/_sim/behaviour", json={"webhook_data": "id"})
    ticket = await seed(rig, subject="Hinted")
    [request] = await rig.deliveries()
    assert msgspec.json.decode(request.content)["data"] == {"id": ticket["id"]}
    headers = lower_headers(request.headers.multi_items())
    rig.adapter.verify_webhook(headers, request.content, utcnow())
    event = rig.adapter.parse_webhook(headers, request.content)
    assert (event.event_type, event.observations) == ("ticket.created", [])
    assert event.hints == [ObjectRef(SYSTEM, "", ticket["id"])]
    assert (await rig.adapter.get(event.hints[0])).fields.title == "Hinted"


def test_hmac_scheme_verifies_x_inboxops_signature() -> None:
    secret = "plain-shared-secret"
    a = InboxOpsAdapter(
        KIT.settings(
            "http://unused",
            webhook_secrets=("old-secret", secret),
            options={"webhook_scheme": "hmac-sha256"},
        ),
        httpx.AsyncClient(),
    )
    body = msgspec.json.encode({"id": "evt_1", "type": "ticket.updated", "data": ticket_json()})
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    a.verify_webhook({"x-inboxops-signature": f"sha256={digest}"}, body, utcnow())
    for headers in (
        {},
        {"x-inboxops-signature": digest},
        {"x-inboxops-signature": "sha256=" + "0" * 64},
    ):
        with pytest.raises(SignatureInvalid):
            a.verify_webhook(headers, body, utcnow())
    with pytest.raises(SignatureInvalid):
        a.verify_webhook({"x-inboxops-signature": f"sha256={digest}"}, body + b" ", utcnow())


def test_standard_scheme_is_the_default_and_ignores_the_hmac_header() -> None:
    body = b"{}"
    digest = hmac.new(KIT.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureInvalid):
        adapter().verify_webhook({"x-inboxops-signature": f"sha256={digest}"}, body, utcnow())


def test_unknown_webhook_scheme_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="webhook_scheme"):
        adapter(webhook_scheme="svix-ish")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "type": PROBLEM_TYPE + "bad_request",
                "title": "Bad Request",
                "status": 400,
                "detail": "subject: required",
                "code": "bad_request",
                "instance": "urn:x",
            },
            "bad_request: subject: required",
        ),
        (
            {"error": "Bad Request", "message": "Invalid email format", "code": 400},
            "Invalid email format",
        ),
        (
            {
                "error": "Bad Request",
                "message": "Invalid request parameters",
                "code": 400,
                "details": [{"field": "custom_fields.plan", "message": "unknown"}, "junk"],
            },
            "Invalid request parameters (custom_fields.plan: unknown)",
        ),
        ({"error": "Forbidden"}, "Forbidden"),
        ([1, 2], None),
    ],
)
def test_error_bodies_are_read_leniently(body: Any, message: str | None) -> None:
    assert read_error(body) == message


@pytest.mark.parametrize(
    ("headers", "extra", "delay"),
    [
        ({}, {"retryAfter": 42}, 42.0),  # the body's delay, with no header at all
        ({}, {"retryAfter": "17"}, 17.0),
        ({"Retry-After": "5"}, {"retryAfter": 42}, 5.0),  # the header comes first
        ({}, {}, DEFAULT_RATE_LIMIT_DELAY_S),  # neither: the default
        ({}, {"retryAfter": "later"}, DEFAULT_RATE_LIMIT_DELAY_S),
    ],
)
async def test_a_429_bodys_retry_after_is_the_last_resort(
    headers: dict[str, str], extra: dict[str, Any], delay: float
) -> None:
    # The simulator's 429s always carry Retry-After and never a body delay (the field is
    # optional in InboxOps' documents), so this one answer is scripted.
    problem = {
        "type": PROBLEM_TYPE + "rate_limit_exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Rate limit exceeded",
        "code": "rate_limit_exceeded",
        **extra,
    }

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json=problem, headers={"Content-Type": "application/problem+json", **headers}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(limited)) as client:
        adapter = InboxOpsAdapter(KIT.settings("http://inboxops.test"), client)
        with pytest.raises(RateLimited) as raised:
            await adapter.get(ObjectRef("inboxops", "", "9b7c1c5e-0000-4000-8000-000000000001"))
    assert raised.value.retry_after == delay
    assert "rate_limit_exceeded" in str(raised.value)


def test_simulator_refuses_a_secret_that_cannot_sign() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        InboxOpsSimulator(SimOptions(api_key=KIT.api_key, webhook_secret="not base64 !"))


async def test_a_read_only_key_reads_but_every_write_is_403_insufficient_scope() -> None:
    read_only = "ixk_live_readonly0c8e4f0d29b6a7c5f2c9e81b7d64a03"
    sim = InboxOpsSimulator(KIT.sim_options(read_only_api_key=read_only))
    async with serve_asgi(sim.app) as url, httpx.AsyncClient(timeout=5.0) as client:
        ticket = sim.seed(SeedIn(subject="Readable"))
        adapter = InboxOpsAdapter(KIT.settings(url, api_key=read_only), client)
        ref = ObjectRef("inboxops", "", ticket.id)
        assert (await adapter.get(ref)).fields.title == "Readable"
        assert [o.ref async for page in adapter.list_changed(None) for o in page] == [ref]
        with pytest.raises(AuthError) as info:
            await adapter.update(ref, Fields(status=Status.RESOLVED))
        assert info.value.status == 403
        assert "insufficient_scope" in info.value.message
        with pytest.raises(AuthError):
            await adapter.create(
                CreateTarget(params={"inbox_id": SUPPORT_INBOX_ID}), Fields(title="x"), "k-1"
            )
        raw = await client.patch(
            f"{url}/api/v1/tickets/{ticket.id}",
            json={"status": "resolved"},
            headers={"Authorization": f"Bearer {read_only}"},
        )
        assert_problem(raw, 403, "insufficient_scope")
        assert sim.tickets[ticket.id].status.category == "open"
        assert not sim.kit.writes()


# -- assignees: any UUID, or the workspace's agents only ---------------------------------------


async def test_an_assignee_must_be_an_agent_under_that_reading(rig: VendorRig) -> None:
    ticket = await seed(rig)
    stranger = "5d3c0a8e-2b1f-4c7d-9e6a-1f0b2c3d4e5f"
    # the default reading: any UUID
    taken = await rig.api.patch(f"/api/v1/tickets/{ticket['id']}", json={"assignee_id": stranger})
    assert taken.json()["data"]["assignee_id"] == stranger

    assert (await rig.control.put("/_sim/behaviour", json={"assignees": "agents"})).is_success
    refused = await rig.api.patch(
        f"/api/v1/tickets/{ticket['id']}", json={"assignee_id": stranger, "subject": "x"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "bad_request" and "assignee_id" in refused.json()["detail"]
    created = await rig.api.post(
        "/api/v1/tickets",
        json={"subject": "s", "inbox_id": SUPPORT_INBOX_ID, "assignee_id": stranger},
    )
    assert created.status_code == 400, created.text
    # nothing refused was applied
    (now,) = [t for t in rig.sim.objects() if t["id"] == ticket["id"]]
    assert (now["subject"], now["assignee_id"]) == (ticket["subject"], stranger)

    # an agent added to the workspace is taken, and listed for the identity map
    added = await rig.control.post("/_sim/agents", json={"name": "Cy", "email": "cy@example.com"})
    assert added.status_code == 201, added.text
    cy = added.json()["data"]["id"]
    agents = (await rig.control.get("/_sim/agents")).json()["data"]
    assert {a["email"]: a["id"] for a in agents}["cy@example.com"] == cy
    taken = await rig.api.patch(f"/api/v1/tickets/{ticket['id']}", json={"assignee_id": cy})
    assert taken.json()["data"]["assignee_id"] == cy
    cleared = await rig.api.patch(f"/api/v1/tickets/{ticket['id']}", json={"assignee_id": None})
    assert cleared.json()["data"]["assignee_id"] is None
    bad = await rig.control.post("/_sim/agents", json={"name": ""})
    assert bad.status_code == 400
