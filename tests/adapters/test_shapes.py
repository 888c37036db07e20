"""A vendor answer that does not fit the shape we assumed fails loudly and specifically:
the error names the vendor, the place in the body and the request, for every vendor's
list and single-object reads (docs/vendor-notes.md lists the assumptions)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from adapters import adapter_class
from app.errors import TransientError
from app.model import ObjectRef
from tests.contract.kits import KITS

TIME = "2026-05-01T10:00:00.000000Z"

#: system -> (list body that does not fit, the path the error must name, list path)
LIST_MISFITS: dict[str, tuple[Any, str, str]] = {
    "inboxops": (
        {
            "data": [],
            "meta": {"page": 1, "per_page": 2, "total": 0, "total_pages": "1"},
        },
        "$.meta.total_pages: Expected int, got str",
        "GET /api/v1/tickets",
    ),
    "hookstream": (
        {
            "issues": [{"id": "iss_1", "status": "open", "updated_at": "yesterday"}],
            "pagination": {"total": 1, "limit": 2, "offset": 0, "has_more": False},
        },
        "$.issues[0].updated_at: Invalid RFC3339 encoded datetime",
        "GET /v1/issues",
    ),
    "devhelm": (
        {"data": [], "hasNext": "no", "hasPrev": False},
        "$.hasNext: Expected bool, got str",
        "GET /api/v1/status-pages/",
    ),
    "incidentio": (
        {"follow_ups": [{"id": "01H", "incident_id": "01I", "title": "t", "status": 3}]},
        "$.follow_ups[0].status: Expected str, got int",
        "GET /v3/follow_ups",
    ),
}

#: system -> (single-object body that does not fit, the path the error must name)
GET_MISFITS: dict[str, tuple[Any, str]] = {
    "inboxops": (
        {"data": {"id": "t1", "subject": "s", "status": "open"}},
        "$.data.priority: required field is missing",
    ),
    "hookstream": ({"issue": {"id": "iss_1", "status": None}}, "$.issue.status: Expected str"),
    "devhelm": (
        {"data": {"id": "i1", "title": "t"}},
        "$.data.statusPageId: required field is missing",
    ),
    "incidentio": (
        {"follow_up": {"id": "f", "title": "t"}},
        "$.follow_up.incident_id: required field is missing",
    ),
}


def _adapter(system: str, body: Any) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=msgspec.json.encode(body))

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    kit = KITS[system]
    return adapter_class(system)(kit.settings("http://vendor.test"), client), client


@pytest.mark.parametrize("system", sorted(LIST_MISFITS))
async def test_a_list_that_does_not_fit_names_vendor_field_and_request(system: str) -> None:
    body, where, request = LIST_MISFITS[system]
    adapter, client = _adapter(system, body)
    async with client:
        with pytest.raises(TransientError) as info:
            _ = [page async for page in adapter.list_changed(None)]
    message = str(info.value)
    assert message.startswith(f"{system}: response did not fit the expected shape at {where}")
    assert f"({request}" in message


@pytest.mark.parametrize("system", sorted(GET_MISFITS))
async def test_an_object_that_does_not_fit_names_vendor_and_field(system: str) -> None:
    body, where = GET_MISFITS[system]
    adapter, client = _adapter(system, body)
    scope = KITS[system].scopes[0] if KITS[system].scopes else ""
    async with client:
        with pytest.raises(TransientError) as info:
            await adapter.get(ObjectRef(system, scope, "x1"))
    assert str(info.value).startswith(
        f"{system}: response did not fit the expected shape at {where}"
    )
    assert "(GET /" in str(info.value)


async def test_a_body_that_is_not_json_says_so() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>maintenance</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        adapter = adapter_class("inboxops")(KITS["inboxops"].settings("http://v.test"), client)
        with pytest.raises(TransientError, match=r"^inboxops: response body is not JSON"):
            await adapter.get(ObjectRef("inboxops", "", "x1"))
