"""DevHelm specifics the contract suite cannot express: the simulator's strictness and error
shapes, the page envelope, PUT's null-keeps semantics, timeline, drafts and reopen, the
status and impact maps, the adapter's options, and platform webhook delivery."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from msgspec import UNSET

from adapters import signing
from adapters.base import lower_headers
from adapters.devhelm.adapter import DevHelmAdapter
from app.errors import (
    AuthError,
    MalformedPayload,
    SignatureInvalid,
    TransientError,
    UnreadablePayload,
)
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status, utcnow
from tests.contract.kit_devhelm import KIT, STATUS_PAGE_ID
from tests.vendor_rig import VendorRig

PAGE = STATUS_PAGE_ID
INCIDENTS = f"/api/v1/status-pages/{PAGE}/incidents"


SYSTEM = "devhelm"


async def seed(rig: VendorRig, n: int = 0, **more: Any) -> str:
    body = {"statusPageId": PAGE, "title": f"Outage {n}", "impact": "MINOR", **more}
    response = await rig.control.post("/_sim/seed", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def read_incident(rig: VendorRig, incident_id: str) -> dict[str, Any]:
    response = await rig.api.get(f"{INCIDENTS}/{incident_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["timestamp"], int)
    assert body["requestId"] == response.headers["x-request-id"]
    return body


# -- strictness and error shapes --------------------------------------------------------------


async def test_unknown_put_field_is_rejected_with_field_errors(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    response = await rig.api.put(
        f"{INCIDENTS}/{incident_id}", json={"status": "MONITORING", "notifySubscribers": False}
    )
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert {"code": "UNKNOWN_FIELD", "field": "notifySubscribers", "message": "unknown field"} in (
        body["errors"]
    )
    assert (await read_incident(rig, incident_id))["status"] == "INVESTIGATING"


async def test_bad_enum_missing_field_and_long_title_are_each_named(rig: VendorRig) -> None:
    response = await rig.api.post(INCIDENTS, json={"title": "x" * 501, "impact": "SEVERE"})
    body = assert_error(response, 400, "VALIDATION_FAILED")
    found = {(e["field"], e["code"]) for e in body["errors"]}
    assert found == {("title", "TOO_LONG"), ("impact", "INVALID_ENUM"), ("body", "REQUIRED")}


@pytest.mark.parametrize(
    "payload",
    [{"title": 5}, {"status": "resolved"}, {"postmortemUrl": "ftp://x"}, {"title": "  "}],
)
async def test_put_rejects_wrong_types_and_values(rig: VendorRig, payload: dict[str, Any]) -> None:
    incident_id = await seed(rig)
    response = await rig.api.put(f"{INCIDENTS}/{incident_id}", json=payload)
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert [e["field"] for e in body["errors"]] == list(payload)


async def test_malformed_json_is_bad_request(rig: VendorRig) -> None:
    response = await rig.api.post(
        INCIDENTS, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BAD_REQUEST")


async def test_unknown_ids_are_404_and_bad_uuids_400(rig: VendorRig) -> None:
    assert_error(await rig.api.get(f"{INCIDENTS}/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_error(
        await rig.api.get(f"/api/v1/status-pages/{uuid.uuid4()}/incidents"), 404, "NOT_FOUND"
    )
    assert_error(await rig.api.get(f"{INCIDENTS}/not-a-uuid"), 400, "BAD_REQUEST")


async def test_missing_key_is_401_in_devhelm_shape(rig: VendorRig) -> None:
    assert_error(await rig.control.get(INCIDENTS), 401, "UNAUTHORIZED")


async def test_other_org_is_forbidden_and_the_org_id_option_is_sent(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    ref = ObjectRef("devhelm", PAGE, incident_id)
    with pytest.raises(AuthError):
        await rig.adapter_with(options={"org_id": "2"}).get(ref)
    await rig.adapter.get(ref)
    sent = [r["headers"].get("x-phelm-org-id") for r in await rig.requests("GET")]
    assert sent == ["2", "1"]


async def test_rate_limit_body_and_headers(rig: VendorRig) -> None:
    await rig.control.put("/_sim/rate-limit", json={"rpm": 1})
    ok = await rig.api.get(INCIDENTS)
    assert ok.headers["x-ratelimit-limit"] == "1"
    assert ok.headers["x-ratelimit-remaining"] == "0"
    assert int(ok.headers["x-ratelimit-reset"]) > utcnow().timestamp()
    limited = await rig.api.get(INCIDENTS)
    assert limited.status_code == 429
    wait = limited.headers["retry-after"]
    body = assert_error(limited, 429, "RATE_LIMITED")  # ErrorResponse: code is required
    assert body["message"] == f"Rate limit exceeded. Retry after {wait}."
    assert set(body) == {"status", "code", "message", "timestamp", "requestId"}
    assert limited.headers["x-ratelimit-remaining"] == "0"


async def test_rate_limit_headers_on_every_authenticated_response(rig: VendorRig) -> None:
    """Without a set limit the headers still come, with the default plan's allowance."""
    ok = await rig.api.get(INCIDENTS)
    missing = await rig.api.get(f"{INCIDENTS}/{uuid.uuid4()}")
    assert missing.status_code == 404
    for response in (ok, missing):
        assert response.headers["x-ratelimit-limit"] == "1000"
        assert int(response.headers["x-ratelimit-remaining"]) < 1000
        assert int(response.headers["x-ratelimit-reset"]) >= int(utcnow().timestamp())
    unauthenticated = await rig.control.get(INCIDENTS)
    assert unauthenticated.status_code == 401
    assert "x-ratelimit-limit" not in unauthenticated.headers


@pytest.mark.parametrize("org_header", ["optional", "required"])
async def test_the_org_header_is_checked_against_the_configured_org(
    rig: VendorRig, org_header: str
) -> None:
    await rig.control.put("/_sim/behaviour", json={"org_header": org_header, "org_id": "42"})
    incident_id = await seed(rig)
    ref = ObjectRef("devhelm", PAGE, incident_id)
    with pytest.raises(AuthError):
        await rig.adapter.get(ref)  # sends the default "1"
    assert (await rig.adapter_with(options={"org_id": "42"}).get(ref)).ref == ref
    bare = {"Authorization": f"Bearer {KIT.api_key}"}
    without = await rig.control.get(INCIDENTS, headers=bare)
    if org_header == "required":
        assert_error(without, 403, "FORBIDDEN")
    else:
        assert without.status_code == 200
    bad = await rig.control.put("/_sim/behaviour", json={"org_header": "sometimes"})
    assert bad.status_code == 400


# -- pagination and listing -------------------------------------------------------------------


async def test_page_envelope_is_zero_based_with_totals(rig: VendorRig) -> None:
    for n in range(5):
        await seed(rig, n)
    first = (await rig.api.get(INCIDENTS, params={"page": 0, "size": 2})).json()
    assert (first["hasNext"], first["hasPrev"], first["totalElements"], first["totalPages"]) == (
        True,
        False,
        5,
        3,
    )
    assert [row["title"] for row in first["data"]] == ["Outage 4", "Outage 3"]  # createdAt,desc
    assert all(row["updates"] is None for row in first["data"])
    last = (await rig.api.get(INCIDENTS, params={"page": 2, "size": 2})).json()
    assert (len(last["data"]), last["hasNext"], last["hasPrev"]) == (1, False, True)
    beyond = (await rig.api.get(INCIDENTS, params={"page": 3, "size": 2})).json()
    assert (beyond["data"], beyond["hasNext"]) == ([], False)


async def test_list_sorts_and_filters_by_status(rig: VendorRig) -> None:
    ids = [
        await seed(rig, n, status=s) for n, s in enumerate(["IDENTIFIED", "RESOLVED", "MONITORING"])
    ]
    await rig.control.patch(f"/_sim/objects/{ids[0]}", json={"title": "touched"})
    by_update = (await rig.api.get(INCIDENTS, params={"sort": "updatedAt,desc"})).json()["data"]
    assert [row["id"] for row in by_update] == [ids[0], ids[2], ids[1]]
    for params in ({"status": ["IDENTIFIED", "MONITORING"]}, {"status": "IDENTIFIED,MONITORING"}):
        rows = (await rig.api.get(INCIDENTS, params=params)).json()["data"]
        assert {row["id"] for row in rows} == {ids[0], ids[2]}


@pytest.mark.parametrize(
    "params",
    [
        {"size": 201},
        {"size": 0},
        {"page": -1},
        {"sort": "severity,desc"},
        {"status": "OPEN"},
        {"q": "x"},
    ],
)
async def test_bad_list_parameters_are_bad_request(rig: VendorRig, params: dict[str, Any]) -> None:
    assert_error(await rig.api.get(INCIDENTS, params=params), 400, "BAD_REQUEST")


@pytest.mark.parametrize("sort", ["honoured", "ignored"])
async def test_list_changed_finds_every_change_whether_or_not_sort_is_honoured(
    rig: VendorRig, sort: str
) -> None:
    await rig.control.put("/_sim/behaviour", json={"sort": sort})
    ids = [await seed(rig, n) for n in range(5)]
    cutoff = (await rig.adapter.get(ObjectRef("devhelm", PAGE, ids[-1]))).updated_at
    for n in (3, 1):  # changed after the cutoff, out of creation order
        await rig.control.patch(f"/_sim/objects/{ids[n]}", json={"title": f"touched {n}"})
    await rig.control.delete("/_sim/requests")
    changed = [o async for page in rig.adapter.list_changed(cutoff) for o in page]
    assert sorted(o.ref.external_id for o in changed) == sorted([ids[-1], ids[3], ids[1]])
    pages_read = len(await rig.requests("GET"))
    # sorted: the walk stops at the page holding the first older row (page_size 2: the
    # second); unsorted: it sees rows out of order and reads all three pages
    assert pages_read == (2 if sort == "honoured" else 3)


async def test_list_changed_stops_a_scope_at_older_items(rig: VendorRig) -> None:
    ids = [await seed(rig, n) for n in range(5)]
    newest = await rig.adapter.get(ObjectRef("devhelm", PAGE, ids[-1]))
    await rig.control.delete("/_sim/requests")
    changed = [o async for page in rig.adapter.list_changed(newest.updated_at) for o in page]
    assert [o.ref.external_id for o in changed] == [ids[-1]]
    lists = await rig.requests("GET")
    assert len(lists) == 1
    assert "sort=updatedAt%2Cdesc" in lists[0]["query"]


async def test_drafts_are_skipped_unless_sync_drafts(rig: VendorRig) -> None:
    published = await seed(rig, 0)
    draft = await seed(rig, 1, draft=True, incidentId=str(uuid.uuid4()))
    default = [o.ref.external_id async for page in rig.adapter.list_changed(None) for o in page]
    assert default == [published]
    everything = rig.adapter_with(options={"sync_drafts": True})
    seen = {o.ref.external_id async for page in everything.list_changed(None) for o in page}
    assert seen == {published, draft}


# -- vendor-side behaviour -------------------------------------------------------------------


async def test_put_null_keeps_empty_string_clears_and_noop_keeps_updated_at(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    url = f"{INCIDENTS}/{incident_id}"
    set_pm = {"postmortemBody": "Root cause: DNS", "postmortemUrl": "https://blog.example/pm"}
    assert (await rig.api.put(url, json=set_pm)).status_code == 200
    kept = (await rig.api.put(url, json={"title": None, "postmortemBody": None})).json()["data"]
    assert (kept["title"], kept["postmortemBody"]) == ("Outage 0", "Root cause: DNS")
    again = (await rig.api.put(url, json=set_pm)).json()["data"]
    assert again["updatedAt"] == kept["updatedAt"]
    cleared = (await rig.api.put(url, json={"postmortemBody": "", "postmortemUrl": ""})).json()
    assert (cleared["data"]["postmortemBody"], cleared["data"]["postmortemUrl"]) == (None, None)
    assert cleared["data"]["updatedAt"] > kept["updatedAt"]


async def test_put_status_sets_resolved_at_adds_no_timeline_and_may_reopen(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    url = f"{INCIDENTS}/{incident_id}"
    resolved = (await rig.api.put(url, json={"status": "RESOLVED"})).json()["data"]
    assert resolved["resolvedAt"] is not None
    assert len(resolved["updates"]) == 1
    reopened = (await rig.api.put(url, json={"status": "IDENTIFIED"})).json()["data"]
    assert (reopened["status"], reopened["resolvedAt"]) == ("IDENTIFIED", None)


async def test_timeline_update_sets_status_newest_first(rig: VendorRig) -> None:
    incident_id = await seed(rig, body="Looking into it.")
    url = f"{INCIDENTS}/{incident_id}/updates"
    assert_error(await rig.api.post(url, json={"status": "MONITORING"}), 400, "VALIDATION_FAILED")
    response = await rig.api.post(
        url, json={"status": "MONITORING", "body": "Fix deployed.", "notifySubscribers": False}
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "MONITORING"
    assert [(u["body"], u["notifySubscribers"]) for u in data["updates"]] == [
        ("Fix deployed.", False),
        ("Looking into it.", True),
    ]


async def test_publish_and_dismiss_only_drafts(rig: VendorRig) -> None:
    draft = await seed(rig, 0, draft=True)
    live = await seed(rig, 1)
    assert (await read_incident(rig, draft))["publishedAt"] is None
    bad = await rig.api.post(f"{INCIDENTS}/{draft}/publish", json={"status": "RESOLVED"})
    assert_error(bad, 400, "VALIDATION_FAILED")
    published = await rig.api.post(
        f"{INCIDENTS}/{draft}/publish", json={"title": "Public title", "notifySubscribers": False}
    )
    assert published.status_code == 200
    assert published.json()["data"]["publishedAt"] is not None
    assert published.json()["data"]["title"] == "Public title"
    assert_error(await rig.api.post(f"{INCIDENTS}/{draft}/publish"), 409, "CONFLICT")
    assert_error(await rig.api.post(f"{INCIDENTS}/{live}/dismiss"), 409, "CONFLICT")
    other = await seed(rig, 2, draft=True)
    assert (await rig.api.post(f"{INCIDENTS}/{other}/dismiss")).status_code == 204
    assert_error(await rig.api.get(f"{INCIDENTS}/{other}"), 404, "NOT_FOUND")


async def test_delete_then_not_found(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    assert (await rig.api.delete(f"{INCIDENTS}/{incident_id}")).status_code == 204
    assert_error(await rig.api.delete(f"{INCIDENTS}/{incident_id}"), 404, "NOT_FOUND")


async def test_manual_pages_make_no_drafts_and_unknown_components_are_rejected(
    rig: VendorRig,
) -> None:
    component = str(uuid.uuid4())
    page = await rig.control.post(
        "/_sim/status-pages",
        json={
            "name": "Manual",
            "incidentMode": "MANUAL",
            "components": [{"id": component, "name": "API"}],
        },
    )
    assert page.status_code == 201
    page_id = page.json()["id"]
    draft = await rig.control.post(
        "/_sim/seed", json={"statusPageId": page_id, "title": "t", "impact": "NONE", "draft": True}
    )
    assert draft.status_code == 409
    url = f"/api/v1/status-pages/{page_id}/incidents"
    base = {"title": "API down", "impact": "MAJOR", "body": "Investigating."}
    unknown = [{"componentId": str(uuid.uuid4()), "status": "MAJOR_OUTAGE"}]
    assert_error(
        await rig.api.post(url, json={**base, "affectedComponents": unknown}),
        400,
        "VALIDATION_FAILED",
    )
    known = [{"componentId": component, "status": "MAJOR_OUTAGE"}]
    created = (await rig.api.post(url, json={**base, "affectedComponents": known})).json()["data"]
    assert created["affectedComponents"] == [
        {
            "statusPageComponentId": component,
            "componentStatus": "MAJOR_OUTAGE",
            "componentName": "API",
        }
    ]


# -- mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "canonical"),
    [
        ("INVESTIGATING", Status.OPEN),
        ("IDENTIFIED", Status.ACKNOWLEDGED),
        ("MONITORING", Status.MONITORING),
        ("RESOLVED", Status.RESOLVED),
    ],
)
async def test_every_status_maps(rig: VendorRig, vendor: str, canonical: Status) -> None:
    incident_id = await seed(rig, status=vendor)
    obj = await rig.adapter.get(ObjectRef("devhelm", PAGE, incident_id))
    assert obj.fields.status == canonical
    assert obj.native == {"status": vendor, "priority": "MINOR"}
    assert obj.raw["id"] == incident_id


@pytest.mark.parametrize(
    ("impact", "priority"),
    [
        ("NONE", Priority.LOW),
        ("MINOR", Priority.NORMAL),
        ("MAJOR", Priority.HIGH),
        ("CRITICAL", Priority.URGENT),
    ],
)
async def test_every_impact_maps(rig: VendorRig, impact: str, priority: Priority) -> None:
    incident_id = await seed(rig, impact=impact)
    obj = await rig.adapter.get(ObjectRef("devhelm", PAGE, incident_id))
    assert obj.fields.priority == priority


def test_default_maps_cover_every_canonical_value() -> None:
    maps = DevHelmAdapter.default_value_maps()
    assert set(maps["status"].outbound) == {s.value for s in Status}
    assert set(maps["priority"].outbound) == {p.value for p in Priority}
    for value_map in maps.values():
        for canonical, choices in value_map.outbound.items():
            assert choices, canonical
            assert set(value_map.inbound.values()) <= set(value_map.outbound)


async def test_unknown_vendor_status_goes_to_unmapped() -> None:
    """A status DevHelm might add later (the strict simulator cannot hold one)."""
    incident: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "statusPageId": PAGE,
        "title": "New status",
        "status": "POSTMORTEM",
        "impact": "MAJOR",
        "scheduled": False,
        "autoResolve": False,
        "startedAt": "2026-11-01T10:00:00Z",
        "createdAt": "2026-11-01T10:00:00Z",
        "updatedAt": "2026-11-01T10:05:00Z",
        "someNewField": {"added": "later"},
    }

    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": incident})

    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        adapter = DevHelmAdapter(KIT.settings("http://devhelm.test"), client)
        obj = await adapter.get(ObjectRef("devhelm", PAGE, incident["id"]))
    assert obj.fields.status is UNSET
    assert obj.unmapped == {"status": "POSTMORTEM"}
    assert obj.fields.priority == Priority.HIGH


# -- writes -------------------------------------------------------------------------------------


async def test_update_sends_only_changed_fields_and_never_null(rig: VendorRig) -> None:
    incident_id = await seed(rig)
    ref = ObjectRef("devhelm", PAGE, incident_id)
    await rig.adapter.update(ref, Fields(status=Status.WAITING, description="not writable"))
    await rig.adapter.update(ref, Fields(title="Renamed", priority=Priority.URGENT))
    assert [r["body"] for r in await rig.requests("PUT")] == [
        {"status": "IDENTIFIED"},
        {"title": "Renamed", "impact": "CRITICAL"},
    ]


async def test_create_marks_the_body_and_sends_notify_subscribers(rig: VendorRig) -> None:
    target = CreateTarget(scope=PAGE, params={"notify_subscribers": True})
    fields = Fields(
        title="Checkout down", description="Card payments fail.", priority=Priority.URGENT
    )
    created = await rig.adapter.create(target, fields, "wi-1:link-2")
    quiet = await rig.adapter.create(CreateTarget(scope=PAGE), Fields(title="Quiet"), "wi-2:link-3")
    posted = [r["body"] for r in await rig.requests("POST")]
    assert posted[0] == {
        "title": "Checkout down",
        "impact": "CRITICAL",
        "body": "Card payments fail.\n\n<!-- syncgate:wi-1:link-2 -->",
        "notifySubscribers": True,
    }
    assert posted[1]["notifySubscribers"] is False
    assert posted[1]["impact"] == "MINOR"  # no priority yet: canonical normal
    assert posted[1]["body"].startswith("Quiet\n\n")
    assert created.fields.status == Status.OPEN
    assert quiet.ref.scope == PAGE


async def test_a_retry_after_a_lost_answer_finds_the_incident_though_the_title_changed(
    rig: VendorRig,
) -> None:
    await seed(rig, 1)  # other recent incidents on the page, without our marker
    await seed(rig, 2)
    await rig.control.post(
        "/_sim/faults", json={"status": 502, "count": 1, "methods": ["POST"], "after": True}
    )
    target = CreateTarget(scope=PAGE)
    started = utcnow()
    with pytest.raises(TransientError):  # created, but the answer was lost
        await rig.adapter.create(target, Fields(title="Checkout slow"), "wi-9:link-4")
    # the item's title changed before the dispatcher tried again
    again = await rig.adapter.create(
        target, Fields(title="Checkout down"), "wi-9:link-4", earlier_since=started
    )
    incidents = (await rig.control.get("/_sim/objects")).json()["objects"]
    assert len(incidents) == 3, "no second incident was created"
    (ours,) = [i for i in incidents if i["title"] == "Checkout slow"]
    assert again.ref == ObjectRef("devhelm", PAGE, ours["id"])
    assert len(await rig.requests("POST")) == 1, "the retry sent no POST"
    # another key is another incident, whatever the title
    other = await rig.adapter.create(target, Fields(title="Checkout slow"), "wi-9:link-5")
    assert other.ref.external_id != ours["id"]


async def test_a_retried_create_reads_only_incidents_made_since_the_first_attempt(
    rig: VendorRig,
) -> None:
    """After a crash, a retried create must not read the page's history one incident at
    a time (that starved the connection pool): only incidents created since the first
    attempt started are fetched, and the listing stops at the first older page."""
    for n in range(30):  # the page's history
        await seed(rig, n)
    await rig.control.post("/_sim/clock", json={"advance_s": 3600})
    started = utcnow() + timedelta(seconds=3600)  # the first attempt, an hour later
    await rig.control.post(
        "/_sim/faults", json={"status": 502, "count": 1, "methods": ["POST"], "after": True}
    )
    adapter = rig.adapter_with(page_size=10)
    target = CreateTarget(scope=PAGE)
    with pytest.raises(TransientError):  # made, but the answer was lost
        await adapter.create(target, Fields(title="Checkout down"), "wi-1:link-1")
    await rig.control.delete("/_sim/requests")
    again = await adapter.create(
        target, Fields(title="Checkout down"), "wi-1:link-1", earlier_since=started
    )
    incidents = (await rig.control.get("/_sim/objects")).json()["objects"]
    assert len(incidents) == 31, "no second incident was created"
    (ours,) = [i for i in incidents if i["title"] == "Checkout down"]
    assert again.ref.external_id == ours["id"]
    gets = await rig.requests("GET")
    assert [r["path"] for r in gets if r["path"] != INCIDENTS] == [f"{INCIDENTS}/{ours['id']}"]
    assert len([r for r in gets if r["path"] == INCIDENTS]) == 1, "one list page, not thirty"


async def test_retries_whose_look_up_fails_midway_never_read_a_timeline_twice(
    rig: VendorRig,
) -> None:
    """Under faults a retried create's look-up can fail after some reads. Each retry
    must go on from where the last one stopped: a timeline read once is not read again
    (an initial update is never edited), so retries converge however many incidents
    were made since. Reading them all on every attempt made each attempt need dozens of
    calls, and at a 10 % failure rate per call the create was dead-lettered."""
    started = utcnow()
    await rig.control.post(
        "/_sim/faults", json={"status": 502, "count": 1, "methods": ["POST"], "after": True}
    )
    target = CreateTarget(scope=PAGE)
    with pytest.raises(TransientError):  # made, but the answer was lost
        await rig.adapter.create(target, Fields(title="Checkout down"), "wi-1:link-1")
    others = [await seed(rig, n) for n in range(12)]  # made by people since
    await rig.control.delete("/_sim/requests")
    # newest first: each attempt's look-up fails at the next incident not yet read
    for other in reversed(others):
        await rig.control.post(
            "/_sim/faults",
            json={
                "status": 503,
                "count": 1,
                "methods": ["GET"],
                "path_prefix": f"{INCIDENTS}/{other}",
            },
        )
        with pytest.raises(TransientError):
            await rig.adapter.create(
                target, Fields(title="Checkout down"), "wi-1:link-1", earlier_since=started
            )
    again = await rig.adapter.create(
        target, Fields(title="Checkout down"), "wi-1:link-1", earlier_since=started
    )
    incidents = (await rig.control.get("/_sim/objects")).json()["objects"]
    assert len(incidents) == 13, "no second incident was created"
    (ours,) = [i for i in incidents if i["title"] == "Checkout down"]
    assert again.ref.external_id == ours["id"]
    reads = [r["path"] for r in await rig.requests("GET") if r["status"] == 200]
    timelines = [path for path in reads if path != INCIDENTS]
    assert sorted(timelines) == sorted(f"{INCIDENTS}/{i}" for i in [*others, ours["id"]])


# -- webhooks ----------------------------------------------------------------------------------


async def test_seeded_monitoring_incident_sends_a_signed_incident_created(rig: VendorRig) -> None:
    monitoring_id = str(uuid.uuid4())
    await seed(rig, draft=True, incidentId=monitoring_id)
    [request] = await rig.deliveries()
    headers = lower_headers(request.headers.multi_items())
    envelope = msgspec.json.decode(request.content)
    assert envelope["type"] == headers["x-devhelm-event"] == "incident.created"
    assert envelope["data"] == {"id": monitoring_id}
    assert envelope["apiVersion"] == "2026-01"
    assert envelope["id"].startswith("evt_")
    rig.adapter.verify_webhook(headers, request.content, utcnow())
    event = rig.adapter.parse_webhook(headers, request.content)
    assert (event.delivery_id, event.event_type, event.poll) == (
        envelope["id"],
        "incident.created",
        True,
    )


async def test_retries_resend_the_same_event_id(rig: VendorRig) -> None:
    rig.hook_answers.extend([500, 503])
    response = await rig.control.post("/_sim/platform-events", json={"type": "monitor.updated"})
    assert response.status_code == 202
    requests = await rig.deliveries()
    assert len(requests) == 3
    assert {msgspec.json.decode(r.content)["id"] for r in requests} == {response.json()["id"]}
    assert {r.headers["x-devhelm-delivery"] for r in requests} == {response.json()["deliveryId"]}


async def test_unknown_platform_event_type_is_rejected(rig: VendorRig) -> None:
    response = await rig.control.post("/_sim/platform-events", json={"type": "status_page.updated"})
    assert response.status_code == 400
    assert not await rig.deliveries()


async def test_separator_option_and_runtime_secret_rotation(rig: VendorRig) -> None:
    await rig.control.put(
        "/_sim/webhook", json={"url": "http://gateway.test/hooks", "secret": "rotated"}
    )
    await rig.control.post("/_sim/platform-events", json={"type": "incident.resolved"})
    [request] = await rig.deliveries()
    headers = lower_headers(request.headers.multi_items())
    rig.adapter_with(webhook_secrets=("rotated",)).verify_webhook(
        headers, request.content, utcnow()
    )
    with pytest.raises(SignatureInvalid):
        rig.adapter.verify_webhook(headers, request.content, utcnow())
    dotted = rig.adapter_with(webhook_secrets=("s",), options={"signature_separator": "."})
    ts = int(utcnow().timestamp())
    signed = {"x-devhelm-signature": signing.devhelm_sign("s", ts, request.content, separator=".")}
    dotted.verify_webhook(signed, request.content, utcnow())
    # unset, both separators the docs have named are accepted; set, only that one
    rig.adapter_with(webhook_secrets=("s",)).verify_webhook(signed, request.content, utcnow())
    colon = rig.adapter_with(webhook_secrets=("s",), options={"signature_separator": ":"})
    with pytest.raises(SignatureInvalid):
        colon.verify_webhook(signed, request.content, utcnow())
    with pytest.raises(SignatureInvalid):
        dotted.verify_webhook(
            {"x-devhelm-signature": signing.devhelm_sign("s", ts, request.content)},
            request.content,
            utcnow(),
        )


async def test_parse_webhook_refuses_what_devhelm_does_not_send(rig: VendorRig) -> None:
    adapter = rig.adapter
    with pytest.raises(MalformedPayload):
        adapter.parse_webhook({}, b"not json")
    with pytest.raises(UnreadablePayload):
        adapter.parse_webhook({}, b'{"event": "incident.created"}')


async def test_create_accepts_the_scheduling_fields(rig: VendorRig) -> None:
    body = {
        "title": "Database maintenance",
        "impact": "MINOR",
        "body": "Planned failover of the primary.",
        "scheduled": True,
        "scheduledFor": "2026-07-01T02:00:00Z",
        "scheduledUntil": "2026-07-01T03:00:00Z",
        "autoResolve": True,
    }
    created = await rig.api.post(INCIDENTS, json=body)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert (data["scheduled"], data["autoResolve"]) == (True, True)
    assert data["scheduledFor"] == body["scheduledFor"]
    # PUT may move the window of a scheduled incident
    moved = await rig.api.put(
        f"{INCIDENTS}/{data['id']}", json={"scheduledUntil": "2026-07-01T04:00:00Z"}
    )
    assert moved.json()["data"]["scheduledUntil"] == "2026-07-01T04:00:00Z"
    for bad, name in (
        ({**body, "scheduledFor": None}, "scheduledFor"),
        ({**body, "scheduled": False}, "scheduledFor"),
        ({**body, "scheduledUntil": "2026-07-01T01:00:00Z"}, "scheduledUntil"),
        ({**body, "scheduledFor": "tomorrow"}, "scheduledFor"),
    ):
        error = assert_error(await rig.api.post(INCIDENTS, json=bad), 400, "VALIDATION_FAILED")
        assert name in {e["field"] for e in error["errors"]}


async def test_the_marker_of_a_created_incident_is_read_back_from_a_list_row(
    rig: VendorRig,
) -> None:
    key = f"syncgate-{'b' * 32}-7"
    created = await rig.adapter.create(CreateTarget(scope=PAGE), Fields(title="Checkout down"), key)
    other = await rig.adapter.create(CreateTarget(scope=PAGE), Fields(title="Other"), "not-ours")
    assert rig.adapter.marker_key(created) == key
    listed = {
        obj.ref.external_id: obj async for page in rig.adapter.list_changed(None) for obj in page
    }
    # a list row may come without the timeline: read_marker then reads the incident
    assert await rig.adapter.read_marker(listed[created.ref.external_id]) == key
    found = await rig.adapter.read_marker(listed[other.ref.external_id])
    assert found == "not-ours"  # a marker line, but not a Syncgate key: the backfill ignores it
