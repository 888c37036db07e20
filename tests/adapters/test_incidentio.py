"""incident.io beyond the contract: simulator strictness and error shapes, v3 pagination,
vendor-side behaviour (modes, soft delete, completed_at, private webhooks), the status map,
webhook parsing, the create marker and the ``api_version`` / ``incident_mode`` options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest

from adapters.base import lower_headers
from adapters.incidentio.adapter import MARKER_PREFIX, IncidentIoAdapter, read_retry_after
from adapters.incidentio.simulator import (
    CATEGORY_ID,
    DEFAULT_INCIDENT_ID,
    PRIORITY_IDS,
    TEAM_ID,
    USER_IDS,
)
from app.errors import (
    ConfigError,
    MalformedPayload,
    NotFound,
    RateLimited,
    Rejected,
    UnreadablePayload,
)
from app.model import CreateTarget, Fields, ObjectRef, Priority, Status, utcnow
from tests.contract.kit_incidentio import KIT
from tests.vendor_rig import VendorRig

JSON = "application/json"
ULID_ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


SYSTEM = "incidentio"


async def open_incident(rig: VendorRig, mode: str = "standard", visibility: str = "public") -> str:
    response = await rig.control.post(
        "/_sim/incidents",
        json={"name": f"{mode} {visibility}", "mode": mode, "visibility": visibility},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def seed(
    rig: VendorRig, incident_id: str = DEFAULT_INCIDENT_ID, **values: Any
) -> dict[str, Any]:
    body = {"incident_id": incident_id, "title": "Rotate the keys", **values}
    response = await rig.control.post("/_sim/seed", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_error(response: httpx.Response, status: int, kind: str) -> list[dict[str, Any]]:
    """``response`` is incident.io's error shape with this status and type; its errors."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == kind
    assert body["status"] == status
    assert body["request_id"]
    assert body["errors"]
    assert all(e["code"] and e["message"] for e in body["errors"])
    return list(body["errors"])


def fields_of(errors: list[dict[str, Any]]) -> set[str]:
    return {e["source"]["field"] for e in errors if "source" in e}


# -- simulator strictness -------------------------------------------------------------------


async def test_ids_are_ulid_shaped(rig: VendorRig) -> None:
    follow_up = await seed(rig)
    assert len(follow_up["id"]) == 26
    assert set(follow_up["id"]) <= ULID_ALPHABET


async def test_create_rejects_unknown_field_wrong_type_and_missing_title(rig: VendorRig) -> None:
    response = await rig.api.post(
        "/v3/follow_ups",
        json={"incident_id": DEFAULT_INCIDENT_ID, "labels": "bug", "status": "completed"},
    )
    errors = assert_error(response, 422, "validation_error")
    assert fields_of(errors) == {"title", "labels", "status"}
    assert {e["code"] for e in errors} == {"is_required", "invalid_value", "unknown_field"}


async def test_create_in_an_unknown_incident_is_422_on_incident_id(rig: VendorRig) -> None:
    response = await rig.api.post(
        "/v3/follow_ups", json={"incident_id": "01HQ000000000000000000NONE", "title": "x"}
    )
    assert fields_of(assert_error(response, 422, "validation_error")) == {"incident_id"}


async def test_body_that_is_not_json_is_400(rig: VendorRig) -> None:
    response = await rig.api.post(
        "/v3/follow_ups", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "t", "status": "deleted"}, "status"),
        ({"title": "t", "status": "done"}, "status"),
        ({"title": "t"}, "status"),
        ({"status": "completed"}, "title"),
        ({"title": "t", "status": "completed", "description": None}, "description"),
        (
            {"title": "t", "status": "completed", "assignee_id": "01HQ0000000000000000NOBODY"},
            "assignee_id",
        ),
    ],
)
async def test_update_is_strict(rig: VendorRig, body: dict[str, Any], field: str) -> None:
    follow_up = await seed(rig)
    response = await rig.api.put(f"/v3/follow_ups/{follow_up['id']}", json=body)
    assert fields_of(assert_error(response, 422, "validation_error")) == {field}


async def test_unknown_id_is_404_not_found(rig: VendorRig) -> None:
    for method in ("GET", "DELETE"):
        response = await rig.api.request(method, "/v3/follow_ups/01HQ0000000000000000000000")
        assert_error(response, 404, "not_found")
    response = await rig.api.put(
        "/v2/follow_ups/01HQ0000000000000000000000", json={"title": "t", "status": "completed"}
    )
    assert_error(response, 404, "not_found")


async def test_bad_or_missing_key_is_authentication_error(rig: VendorRig) -> None:
    response = await rig.control.get("/v3/follow_ups")
    assert_error(response, 401, "authentication_error")
    response = await rig.control.get(
        "/v3/follow_ups", headers={"Authorization": f"Bearer {KIT.api_key}x"}
    )
    assert_error(response, 401, "authentication_error")


async def test_rate_limit_body_and_headers(rig: VendorRig) -> None:
    await rig.control.put("/_sim/rate-limit", json={"rpm": 2})
    first = await rig.api.get("/v3/follow_ups")
    assert first.headers["X-RateLimit-Limit"] == "2, 2;window=60"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert first.headers["X-RateLimit-Used"] == "1"
    assert int(first.headers["X-RateLimit-Reset"]) > utcnow().timestamp()
    await rig.api.get("/v3/follow_ups")
    limited = await rig.api.get("/v3/follow_ups")
    assert_error(limited, 429, "too_many_requests")
    assert float(limited.headers["Retry-After"]) > 0
    rate_limit = limited.json()["rate_limit"]
    assert (rate_limit["limit"], rate_limit["remaining"]) == (2, 0)
    assert rate_limit["retry_after"].endswith("Z")


async def test_a_429_without_delay_headers_waits_for_the_bodys_rate_limit_retry_after(
    rig: VendorRig,
) -> None:
    follow_up = await seed(rig)
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    # the vendor's clock runs two minutes ahead, so the body's moment is far from the
    # 1s default a 429 with no readable delay gets
    await rig.control.post("/_sim/clock", json={"advance_s": 120})
    await rig.control.post("/_sim/faults", json={"status": 429, "count": 1, "methods": ["GET"]})
    raw = await rig.api.get(f"/v3/follow_ups/{follow_up['id']}")
    assert raw.status_code == 429
    assert "retry-after" not in raw.headers
    assert raw.json()["rate_limit"]["retry_after"].endswith("Z")

    # The same 429 as a proxy might pass it on, without any delay header: the body decides.
    def bare(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, content=raw.content, headers={"content-type": JSON})

    async with httpx.AsyncClient(transport=httpx.MockTransport(bare)) as client:
        adapter = IncidentIoAdapter(KIT.settings(rig.url), client)
        with pytest.raises(RateLimited) as limited:
            await adapter.get(ref)
    assert 115 <= limited.value.retry_after <= 122
    # a Retry-After header still comes first
    await rig.control.post(
        "/_sim/faults", json={"status": 429, "retry_after": 7, "count": 1, "methods": ["GET"]}
    )
    with pytest.raises(RateLimited) as limited:
        await rig.adapter_with().get(ref)
    assert limited.value.retry_after == 7


@pytest.mark.parametrize(
    ("body", "delay"),
    [
        ({"rate_limit": {"retry_after": "2030-01-01T00:00:30Z"}}, 30.0),
        ({"rate_limit": {"retry_after": "2030-01-01T00:00:30.5+00:00"}}, 30.5),
        ({"rate_limit": {"retry_after": "Tue, 01 Jan 2030 00:00:45 GMT"}}, 45.0),
        ({"rate_limit": {"retry_after": "2029-12-31T23:00:00Z"}}, 0.0),  # already past
        ({"rate_limit": {"retry_after": "soon"}}, None),
        ({"rate_limit": {"retry_after": None}}, None),
        ({"rate_limit": "x"}, None),
        ({"type": "too_many_requests"}, None),
        ([1], None),
    ],
)
def test_rate_limit_retry_after_is_read_leniently(body: Any, delay: float | None) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert read_retry_after(body, now) == delay


# -- pagination -----------------------------------------------------------------------------


async def test_v3_pagination_envelope(rig: VendorRig) -> None:
    ids = [(await seed(rig, title=f"t{n}"))["id"] for n in range(3)]
    first = (await rig.api.get("/v3/follow_ups", params={"page_size": 2})).json()
    assert first["pagination_meta"] == {"page_size": 2, "after": ids[1]}
    assert [f["id"] for f in first["follow_ups"]] == ids[:2]
    second = (await rig.api.get("/v3/follow_ups", params={"page_size": 2, "after": ids[1]})).json()
    assert second["pagination_meta"] == {"page_size": 2}
    assert [f["id"] for f in second["follow_ups"]] == ids[2:]
    default = (await rig.api.get("/v3/follow_ups")).json()
    assert default["pagination_meta"] == {"page_size": 25}


@pytest.mark.parametrize("params", [{"page_size": 0}, {"page_size": 251}, {"page_size": "x"}])
async def test_v3_page_size_bounds(rig: VendorRig, params: dict[str, Any]) -> None:
    response = await rig.api.get("/v3/follow_ups", params=params)
    assert fields_of(assert_error(response, 422, "validation_error")) == {"page_size"}


async def test_v2_list_is_one_response_and_takes_no_pagination(rig: VendorRig) -> None:
    await seed(rig)
    body = (await rig.api.get("/v2/follow_ups")).json()
    assert set(body) == {"follow_ups"}
    response = await rig.api.get("/v2/follow_ups", params={"page_size": 2})
    assert fields_of(assert_error(response, 422, "validation_error")) == {"page_size"}


async def test_adapter_walks_to_an_empty_last_page(rig: VendorRig) -> None:
    seeded = {(await seed(rig, title=f"t{n}"))["id"] for n in range(4)}
    pages = [page async for page in rig.adapter_with().list_changed(None)]
    assert [len(p) for p in pages] == [2, 2]
    assert {o.ref.external_id for p in pages for o in p} == seeded
    queries = [r["query"] for r in await rig.requests() if r["method"] == "GET"]
    assert len(queries) == 3, "the full second page promises more; the third call ends it"


# -- vendor-side behaviour ------------------------------------------------------------------


async def test_completed_sets_completed_at_and_can_reopen(rig: VendorRig) -> None:
    follow_up = await seed(rig)
    path = f"/v3/follow_ups/{follow_up['id']}"
    done = (await rig.api.put(path, json={"title": "t", "status": "completed"})).json()
    assert done["follow_up"]["completed_at"] == done["follow_up"]["updated_at"]
    reopened = (await rig.api.put(path, json={"title": "t", "status": "outstanding"})).json()
    assert reopened["follow_up"]["status"] == "outstanding"
    assert "completed_at" not in reopened["follow_up"]


async def test_default_incident_mode_hides_test_incidents(rig: VendorRig) -> None:
    test_incident = await open_incident(rig, mode="test")
    retro = await open_incident(rig, mode="retrospective")
    hidden = (await seed(rig, test_incident))["id"]
    shown = (await seed(rig, retro))["id"]
    listed = {f["id"] for f in (await rig.api.get("/v3/follow_ups")).json()["follow_ups"]}
    assert shown in listed
    assert hidden not in listed
    by_incident = await rig.api.get("/v3/follow_ups", params={"incident_id": test_incident})
    assert by_incident.json()["follow_ups"] == []
    tests = await rig.api.get("/v3/follow_ups", params={"incident_mode": "test"})
    assert [f["id"] for f in tests.json()["follow_ups"]] == [hidden]
    response = await rig.api.get("/v3/follow_ups", params={"incident_mode": "drill"})
    assert fields_of(assert_error(response, 422, "validation_error")) == {"incident_mode"}


async def test_put_keeps_omitted_fields_and_null_unassigns(rig: VendorRig) -> None:
    follow_up = await seed(rig, description="keep me", assignee_id=USER_IDS[0], labels=["a"])
    path = f"/v3/follow_ups/{follow_up['id']}"
    kept = (await rig.api.put(path, json={"title": "new", "status": "outstanding"})).json()
    assert kept["follow_up"]["description"] == "keep me"
    assert kept["follow_up"]["assignee"]["id"] == USER_IDS[0]
    assert kept["follow_up"]["labels"] == ["a"]
    body = {"title": "new", "status": "outstanding", "assignee_id": None}
    cleared = (await rig.api.put(path, json=body)).json()
    assert "assignee" not in cleared["follow_up"]


async def test_unchanged_put_keeps_updated_at_and_sends_nothing(rig: VendorRig) -> None:
    follow_up = await seed(rig)
    before = len(await rig.webhook_log())
    body = {"title": follow_up["title"], "status": "outstanding"}
    after = (await rig.api.put(f"/v3/follow_ups/{follow_up['id']}", json=body)).json()
    assert after["follow_up"]["updated_at"] == follow_up["updated_at"]
    assert len(await rig.webhook_log()) == before


async def test_delete_is_soft_and_refuses_later_updates(rig: VendorRig) -> None:
    follow_up = await seed(rig)
    path = f"/v3/follow_ups/{follow_up['id']}"
    assert (await rig.api.delete(path)).status_code == 204
    assert (await rig.api.delete(path)).status_code == 204
    assert (await rig.api.get(path)).json()["follow_up"]["status"] == "deleted"
    response = await rig.api.put(path, json={"title": "t", "status": "outstanding"})
    assert_error(response, 422, "validation_error")
    events = [d["event_type"] for d in await rig.webhook_log()]
    assert events == [
        "public_incident.follow_up_created_v2",
        "public_incident.follow_up_updated_v2",
    ]


@pytest.mark.parametrize(("reading", "status"), [("not_found", 404), ("gone", 410)])
async def test_a_deleted_follow_up_the_api_hides_is_not_found_to_the_adapter(
    rig: VendorRig, reading: str, status: int
) -> None:
    """Behaviour ``deleted``: whether the API still shows a deleted follow-up is not
    documented (its status enum has ``deleted``; DELETE answers 204). Hidden, it is a 404
    or a 410: both mean the object is gone (``NotFound``), never a refused payload,
    which left a hint for it retried as a vendor failure."""
    await rig.control.put("/_sim/behaviour", json={"deleted": reading})
    private = await open_incident(rig, visibility="private")
    follow_up = await seed(rig, private)
    ref = ObjectRef(SYSTEM, private, follow_up["id"])
    current = await rig.adapter.get(ref)
    assert (await rig.api.delete(f"/v3/follow_ups/{follow_up['id']}")).status_code == 204
    hidden = await rig.api.get(f"/v3/follow_ups/{follow_up['id']}")
    assert_error(hidden, status, "not_found")
    assert [o async for page in rig.adapter.list_changed(None) for o in page] == []
    deliveries = await rig.deliveries()
    headers = lower_headers(deliveries[-1].headers.multi_items())
    [hint] = rig.adapter.parse_webhook(headers, deliveries[-1].content).hints
    with pytest.raises(NotFound):
        await rig.adapter.get(hint)
    with pytest.raises(NotFound):
        await rig.adapter.update(ref, Fields(status=Status.RESOLVED), current=current)


async def test_v3_carries_category_and_webhooks_and_v2_do_not(rig: VendorRig) -> None:
    follow_up = await seed(rig, follow_up_category_id=CATEGORY_ID)
    assert follow_up["category"]["id"] == CATEGORY_ID
    v2 = (await rig.api.get(f"/v2/follow_ups/{follow_up['id']}")).json()["follow_up"]
    assert "category" not in v2
    [delivery] = await rig.webhook_log()
    payload = delivery["body"]["public_incident.follow_up_created_v2"]
    assert "category" not in payload
    assert payload["creator"]["user"]["id"] == USER_IDS[0]


async def test_private_incident_webhooks_carry_only_the_id(rig: VendorRig) -> None:
    private = await open_incident(rig, visibility="private")
    follow_up = await seed(rig, private)
    await rig.control.patch(f"/_sim/objects/{follow_up['id']}", json={"status": "deleted"})
    bodies = [d["body"] for d in await rig.webhook_log()]
    assert bodies == [
        {
            "event_type": "private_incident.follow_up_created_v2",
            "private_incident.follow_up_created_v2": {"id": follow_up["id"]},
        },
        {
            "event_type": "private_incident.follow_up_updated_v2",
            "private_incident.follow_up_updated_v2": {"id": follow_up["id"]},
        },
    ]


async def test_webhooks_are_signed_with_the_secret_in_effect_at_send_time(rig: VendorRig) -> None:
    await rig.control.put(
        "/_sim/webhook", json={"url": "http://gateway.test/hooks", "secret": KIT.other_secret}
    )
    await seed(rig)
    await rig.webhook_log()
    request = rig.captured[-1]
    headers = lower_headers(request.headers.multi_items())
    rotated = rig.adapter_with(webhook_secrets=(KIT.other_secret,))
    rotated.verify_webhook(headers, request.content, utcnow())
    event = rotated.parse_webhook(headers, request.content)
    assert event.delivery_id == headers["webhook-id"]
    assert event.observations[0].ref.scope == DEFAULT_INCIDENT_ID


# -- mapping and webhook parsing ------------------------------------------------------------


def follow_up_body(status: str) -> dict[str, Any]:
    return {
        "id": "01HQ00000000000000000000F1",
        "incident_id": DEFAULT_INCIDENT_ID,
        "title": "t",
        "status": status,
        "labels": [],
        "creator": {"user": {"id": USER_IDS[0], "name": "Ada", "role": "responder"}},
        "created_at": "2026-01-02T03:04:05.000006Z",
        "updated_at": "2026-01-02T03:04:05.000006Z",
        "some_future_field": {"ignored": True},
    }


def delivery(event_type: str, resource: Any) -> tuple[dict[str, str], bytes]:
    body = msgspec.json.encode({"event_type": event_type, event_type: resource})
    return {"webhook-id": "msg_1"}, body


@pytest.mark.parametrize(
    ("status", "canonical"),
    [
        ("outstanding", Status.OPEN),
        ("completed", Status.RESOLVED),
        ("not_doing", Status.CANCELLED),
        ("deleted", Status.CANCELLED),
    ],
)
def test_every_vendor_status_maps(status: str, canonical: Status) -> None:
    adapter = IncidentIoAdapter(KIT.settings("http://unused"), httpx.AsyncClient())
    headers, body = delivery("public_incident.follow_up_updated_v2", follow_up_body(status))
    [obj] = adapter.parse_webhook(headers, body).observations
    assert obj.fields.status == canonical
    assert obj.native == {"status": status}
    assert obj.unmapped == {}
    assert (obj.fields.assignee, obj.fields.description) == (None, "")
    assert obj.updated_at.utcoffset() == timedelta(0)


def test_unknown_status_is_unmapped() -> None:
    adapter = IncidentIoAdapter(KIT.settings("http://unused"), httpx.AsyncClient())
    headers, body = delivery("public_incident.follow_up_created_v2", follow_up_body("blocked"))
    [obj] = adapter.parse_webhook(headers, body).observations
    assert obj.fields.status is msgspec.UNSET
    assert obj.unmapped == {"status": "blocked"}
    assert obj.raw["some_future_field"] == {"ignored": True}


def test_parse_private_v1_and_malformed_deliveries() -> None:
    adapter = IncidentIoAdapter(KIT.settings("http://unused"), httpx.AsyncClient())
    event = adapter.parse_webhook(
        *delivery("private_incident.follow_up_updated_v2", {"id": "01HQ00000000000000000000F1"})
    )
    assert event.hints == [ObjectRef("incidentio", "", "01HQ00000000000000000000F1")]
    assert not event.observations
    legacy = {**follow_up_body("outstanding"), "follow_up": True}
    for bad in (
        delivery("public_incident.follow_up_updated_v1", legacy),
        delivery("public_incident.incident_updated_v2", {"id": "x"}),
        ({"webhook-id": "m"}, b'{"event_type": "public_incident.follow_up_updated_v2"}'),
        ({"webhook-id": "m"}, b"[1, 2]"),
        delivery("public_incident.follow_up_updated_v2", {"id": "only"}),
    ):
        with pytest.raises(UnreadablePayload):
            adapter.parse_webhook(*bad)
    with pytest.raises(MalformedPayload):
        adapter.parse_webhook({"webhook-id": "m"}, b"{not json")


# -- adapter writes and options -------------------------------------------------------------


async def test_create_labels_its_marker_and_sets_status_with_put(rig: VendorRig) -> None:
    adapter = rig.adapter_with()
    target = CreateTarget(scope=DEFAULT_INCIDENT_ID)
    # priority is not writable in incident.io: it must not reach the payload.
    fields = Fields(
        title="Fix it", status=Status.CLOSED, assignee=USER_IDS[1], priority=Priority.HIGH
    )
    created = await adapter.create(target, fields, "wi-1:link-1")
    assert created.raw["labels"] == [MARKER_PREFIX + "wi-1:link-1"]
    assert created.native == {"status": "completed"}
    assert created.fields.assignee == USER_IDS[1]
    writes = [(r.method, r.body) for r in rig.sim.kit.writes()]
    assert writes == [
        (
            "POST",
            {
                "incident_id": DEFAULT_INCIDENT_ID,
                "title": "Fix it",
                "assignee_id": USER_IDS[1],
                "labels": [MARKER_PREFIX + "wi-1:link-1"],
            },
        ),
        (
            "PUT",
            {
                "status": "completed",
                "title": "Fix it",
                "assignee_id": USER_IDS[1],
                "labels": [MARKER_PREFIX + "wi-1:link-1"],
            },
        ),
    ]


async def test_create_needs_an_incident(rig: VendorRig) -> None:
    with pytest.raises(Rejected):
        await rig.adapter_with().create(CreateTarget(), Fields(title="x"), "k")


async def test_update_reads_first_and_sends_the_whole_writable_state(rig: VendorRig) -> None:
    follow_up = await seed(rig, status="completed", description="d", assignee_id=USER_IDS[0])
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    # canonical closed is already held by completed: status is kept, not rewritten.
    updated = await rig.adapter_with().update(ref, Fields(status=Status.CLOSED, assignee=None))
    assert updated.fields.assignee is None
    requests = await rig.requests()
    assert [r["method"] for r in requests] == ["GET", "PUT"]
    assert requests[1]["body"] == {
        "status": "completed",
        "title": "Rotate the keys",
        "description": "d",
        "assignee_id": None,
        "labels": [],
    }
    assert requests[1]["headers"]["authorization"] == "[redacted]"


async def test_update_of_a_deleted_follow_up_is_rejected_without_a_put(rig: VendorRig) -> None:
    follow_up = await seed(rig, status="deleted")
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    with pytest.raises(Rejected):
        await rig.adapter_with().update(ref, Fields(title="renamed"))
    assert [r["method"] for r in await rig.requests()] == ["GET"]


async def test_api_version_v2_uses_v2_paths_and_filters_since_locally(rig: VendorRig) -> None:
    adapter = rig.adapter_with(options={"api_version": "v2"})
    old = await seed(rig, title="old")
    created = await adapter.create(
        CreateTarget(scope=DEFAULT_INCIDENT_ID), Fields(title="v2", status=Status.CANCELLED), "k2"
    )
    assert created.native == {"status": "not_doing"}
    old_obj = await adapter.get(ObjectRef("incidentio", DEFAULT_INCIDENT_ID, old["id"]))
    pages = [p async for p in adapter.list_changed(old_obj.updated_at + timedelta(microseconds=1))]
    assert [[o.ref.external_id for o in p] for p in pages] == [[created.ref.external_id]]
    requests = await rig.requests()
    assert all(r["path"].startswith("/v2/follow_ups") for r in requests)
    # v2 lists take no pagination parameters (a first create looks nothing up)
    lists = [r["query"] for r in requests if r["path"] == "/v2/follow_ups" and r["method"] == "GET"]
    assert lists == [""]


async def test_incident_mode_option_and_scopes(rig: VendorRig) -> None:
    test_incident = await open_incident(rig, mode="test")
    other = await open_incident(rig, mode="test")
    wanted = (await seed(rig, test_incident))["id"]
    await seed(rig, other)
    await seed(rig)
    adapter = rig.adapter_with(options={"incident_mode": "test"}, scopes=(test_incident,))
    found = [o.ref for p in [p async for p in adapter.list_changed(None)] for o in p]
    assert found == [ObjectRef("incidentio", test_incident, wanted)]


@pytest.mark.parametrize("options", [{"api_version": "v1"}, {"incident_mode": "drill"}])
def test_invalid_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        IncidentIoAdapter(KIT.settings("http://unused", options=options), httpx.AsyncClient())


# -- issue 11: PUT under both readings, hidden incident modes, error sources, filters -------


async def _full_follow_up(rig: VendorRig) -> dict[str, Any]:
    return await seed(
        rig,
        description="Write it down.",
        labels=["postmortem"],
        assignee_id=USER_IDS[0],
        assignee_team_id=TEAM_ID,
        follow_up_category_id=CATEGORY_ID,
        follow_up_priority_option_id=PRIORITY_IDS[0],
    )


def _writable(follow_up: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": follow_up.get("description"),
        "labels": follow_up["labels"],
        "assignee": (follow_up.get("assignee") or {}).get("id"),
        "assignee_team": (follow_up.get("assignee_team") or {}).get("id"),
        "category": (follow_up.get("category") or {}).get("id"),
        "priority": (follow_up.get("priority") or {}).get("id"),
    }


async def test_a_put_clears_what_it_is_not_sent_when_the_simulator_plays_clear(
    rig: VendorRig,
) -> None:
    """The simulator's "clear" reading is real: a bare status-and-title PUT wipes the rest."""
    follow_up = await _full_follow_up(rig)
    await rig.control.put("/_sim/behaviour", json={"put_omitted": "clear"})
    response = await rig.api.put(
        f"/v3/follow_ups/{follow_up['id']}", json={"status": "completed", "title": "t"}
    )
    assert response.status_code == 200, response.text
    assert _writable(response.json()["follow_up"]) == {
        "description": None,
        "labels": [],
        "assignee": None,
        "assignee_team": None,
        "category": None,
        "priority": None,
    }


@pytest.mark.parametrize("put_omitted", ["keep", "clear"])
@pytest.mark.parametrize("with_current", [False, True])
async def test_update_keeps_every_field_it_does_not_change(
    rig: VendorRig, put_omitted: str, with_current: bool
) -> None:
    follow_up = await _full_follow_up(rig)
    before = _writable(follow_up)
    await rig.control.put("/_sim/behaviour", json={"put_omitted": put_omitted})
    adapter = rig.adapter_with()
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    current = await adapter.get(ref) if with_current else None
    await rig.control.delete("/_sim/requests")
    updated = await adapter.update(ref, Fields(status=Status.RESOLVED), current=current)
    assert updated.native == {"status": "completed"}
    stored = next(
        f
        for f in (await rig.control.get("/_sim/objects")).json()["objects"]
        if f["id"] == follow_up["id"]
    )
    assert _writable(stored) == before
    methods = [r["method"] for r in await rig.requests()]
    # a complete v3 read (it has a category) is used as it is; without one, read first
    assert methods == (["PUT"] if with_current else ["GET", "PUT"])


async def test_update_reads_again_when_current_has_no_raw_or_only_the_webhook_shape(
    rig: VendorRig,
) -> None:
    follow_up = await _full_follow_up(rig)
    await rig.control.put("/_sim/behaviour", json={"put_omitted": "clear"})
    adapter = rig.adapter_with()
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    read = await adapter.get(ref)
    stored = msgspec.structs.replace(read, raw={})  # as the gateway keeps it: no raw JSON
    v2_shape = {k: v for k, v in read.raw.items() if k != "category"}  # a webhook's V2 object
    webhook_view = msgspec.structs.replace(read, raw=v2_shape, whole=False)
    for current in (stored, webhook_view):
        await rig.control.delete("/_sim/requests")
        await adapter.update(ref, Fields(title=f"renamed {len(current.raw)}"), current=current)
        assert [r["method"] for r in await rig.requests()] == ["GET", "PUT"]
    final = await adapter.get(ref)
    assert final.raw["category"]["id"] == CATEGORY_ID
    assert final.raw["labels"] == ["postmortem"]


async def test_a_v3_read_without_a_category_is_complete_and_not_read_again(
    rig: VendorRig,
) -> None:
    follow_up = await seed(rig)  # no category: the v3 read leaves the key out
    adapter = rig.adapter_with()
    ref = ObjectRef("incidentio", DEFAULT_INCIDENT_ID, follow_up["id"])
    read = await adapter.get(ref)
    assert "category" not in read.raw and read.whole
    await rig.control.delete("/_sim/requests")
    await adapter.update(ref, Fields(status=Status.RESOLVED), current=read)
    assert [r["method"] for r in await rig.requests()] == ["PUT"]


@pytest.mark.parametrize("mode", ["test", "tutorial", "stream"])
async def test_a_scoped_incident_of_a_hidden_mode_is_polled(rig: VendorRig, mode: str) -> None:
    incident = await open_incident(rig, mode=mode)
    wanted = (await seed(rig, incident))["id"]
    # the vendor's default listing hides it, with or without the incident filter
    for query in ({}, {"incident_id": incident}):
        listed = (await rig.api.get("/v3/follow_ups", params=query)).json()["follow_ups"]
        assert wanted not in {f["id"] for f in listed}
    scoped = rig.adapter_with(scopes=(incident,))
    found = [o.ref for page in [p async for p in scoped.list_changed(None)] for o in page]
    assert found == [ObjectRef("incidentio", incident, wanted)]
    # incident_mode takes one value per request: one listing per mode, none repeated
    lists = [
        r["query"]
        for r in await rig.requests()
        if r["method"] == "GET" and "incident_id=" in r["query"] and "page_size" in r["query"]
    ]
    modes = [dict(parse_qsl(q)).get("incident_mode") for q in lists]
    assert modes == [None, "test", "tutorial", "stream"]


async def test_a_retried_create_in_a_test_incident_finds_its_earlier_attempt(
    rig: VendorRig,
) -> None:
    incident = await open_incident(rig, mode="test")
    adapter = rig.adapter_with()
    target = CreateTarget(scope=incident)
    started = utcnow()
    first = await adapter.create(target, Fields(title="drill follow-up"), "wi-t:link-t")
    again = await adapter.create(
        target, Fields(title="drill follow-up"), "wi-t:link-t", earlier_since=started
    )
    assert again.ref == first.ref
    assert [r.method for r in rig.sim.kit.writes()] == ["POST"]


async def test_every_error_source_carries_field_and_pointer(rig: VendorRig) -> None:
    response = await rig.api.post(
        "/v3/follow_ups",
        json={"incident_id": "nope", "title": "", "labels": "x", "extra/field": 1},
    )
    errors = assert_error(response, 422, "validation_error")
    sources = [e["source"] for e in errors]
    assert {(s["field"], s["pointer"]) for s in sources} == {
        ("incident_id", "/incident_id"),
        ("title", "/title"),
        ("labels", "/labels"),
        ("extra/field", "/extra~1field"),
    }
    query = await rig.api.get("/v3/follow_ups", params={"page_size": "0"})
    assert assert_error(query, 422, "validation_error")[0]["source"] == {
        "field": "page_size",
        "pointer": "/page_size",
    }


async def test_date_range_filters_follow_ups_by_whole_days(rig: VendorRig) -> None:
    follow_up = await seed(rig)
    day = follow_up["created_at"][:10]
    before = (datetime.fromisoformat(day) - timedelta(days=3)).date().isoformat()
    yesterday = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
    for key in ("created_at[date_range]", "updated_at[date_range]"):
        hit = await rig.api.get("/v3/follow_ups", params={key: f"{day}~{day}"})
        assert [f["id"] for f in hit.json()["follow_ups"]] == [follow_up["id"]]
        miss = await rig.api.get("/v3/follow_ups", params={key: f"{before}~{yesterday}"})
        assert miss.json()["follow_ups"] == []
        bad = await rig.api.get("/v3/follow_ups", params={key: day})
        assert fields_of(assert_error(bad, 422, "validation_error")) == {key}
    # gte/lte take a date as well as an RFC 3339 time
    hit = await rig.api.get("/v3/follow_ups", params={"updated_at[lte]": day})
    assert [f["id"] for f in hit.json()["follow_ups"]] == [follow_up["id"]]


async def test_rate_limit_headers_come_on_every_authenticated_response(rig: VendorRig) -> None:
    ok = await rig.api.get("/v3/follow_ups")
    missing = await rig.api.get("/v3/follow_ups/01HQ0000000000000000000000")
    for response in (ok, missing):
        assert response.headers["X-RateLimit-Limit"] == "1200, 1200;window=60"
        assert int(response.headers["X-RateLimit-Remaining"]) < 1200
        assert int(response.headers["X-RateLimit-Reset"]) >= int(utcnow().timestamp())
    assert missing.status_code == 404
    unauthenticated = await rig.control.get("/v3/follow_ups")
    assert unauthenticated.status_code == 401
    assert "X-RateLimit-Limit" not in unauthenticated.headers


# -- the user directory (for the identity map) -------------------------------------------------


async def test_users_are_listed_by_page_and_found_by_email(rig: VendorRig) -> None:
    added = await rig.control.post("/_sim/users", json={"name": "Cy", "email": "Cy@example.com"})
    assert added.status_code == 201, added.text
    cy = added.json()["id"]
    first = (await rig.api.get("/v2/users", params={"page_size": 2})).json()
    assert [u["id"] for u in first["users"]] == sorted([*USER_IDS, cy])[:2]
    assert first["pagination_meta"] == {"page_size": 2, "after": first["users"][-1]["id"]}
    rest = await rig.api.get(
        "/v2/users", params={"page_size": 2, "after": first["users"][-1]["id"]}
    )
    assert [u["id"] for u in rest.json()["users"]] == sorted([*USER_IDS, cy])[2:]
    by_email = (await rig.api.get("/v2/users", params={"email": "cy@EXAMPLE.com"})).json()
    assert [(u["id"], u["name"]) for u in by_email["users"]] == [(cy, "Cy")]
    assert (await rig.api.get(f"/v2/users/{USER_IDS[1]}")).json()["user"][
        "email"
    ] == "bo@example.com"
    assert (await rig.api.get("/v2/users/01HQ0000000000000000NOBODY")).status_code == 404
    bad = await rig.api.get("/v2/users", params={"page_size": 0, "team": "x"})
    assert bad.status_code == 422
    assert {e["source"]["field"] for e in bad.json()["errors"]} == {"team"}
    # the directory is the vendor's: it takes its key
    assert (await rig.control.get("/v2/users")).status_code == 401


async def test_a_follow_up_takes_only_a_known_user_as_assignee(rig: VendorRig) -> None:
    made = await seed(rig)
    stranger = "01HQ00000000000000000000ZZ"
    refused = await rig.api.put(
        f"/v3/follow_ups/{made['id']}",
        json={"status": "outstanding", "title": made["title"], "assignee_id": stranger},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["source"]["field"] == "assignee_id"
    taken = await rig.api.put(
        f"/v3/follow_ups/{made['id']}",
        json={"status": "outstanding", "title": made["title"], "assignee_id": USER_IDS[1]},
    )
    assert taken.json()["follow_up"]["assignee"]["id"] == USER_IDS[1]


async def test_the_marker_label_is_read_back_and_other_labels_are_not_markers(
    rig: VendorRig,
) -> None:
    adapter = rig.adapter_with()
    key = f"syncgate-{'c' * 32}-8"
    created = await adapter.create(CreateTarget(scope=DEFAULT_INCIDENT_ID), Fields(title="x"), key)
    assert adapter.marker_key(created) == key
    listed = [o async for page in adapter.list_changed(None) for o in page]
    assert [adapter.marker_key(o) for o in listed if o.ref == created.ref] == [key]
    plain = msgspec.structs.replace(created, raw={**created.raw, "labels": ["customer"]})
    assert adapter.marker_key(plain) is None
