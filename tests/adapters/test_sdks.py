"""The vendors' own SDKs against our simulators: every answer a simulator gives, success
and error alike (404, validation, 429), must parse with the official models.

PyPI ``devhelm`` 1.12.0 (sync, httpx + Pydantic) and ``incident-io`` 2.29.0 (attrs
models, async functions). A simulator that answered something the SDK cannot read would
be a simulator written from our guesses rather than from the vendor's contract.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import pytest
from devhelm import Devhelm
from devhelm._errors import (
    DevhelmApiError,
    DevhelmNotFoundError,
    DevhelmRateLimitError,
)
from devhelm._generated import (
    CreateStatusPageIncidentRequest,
    CreateStatusPageIncidentUpdateRequest,
    ErrorResponse,
    TableValueResultStatusPageIncidentDto,
    UpdateStatusPageIncidentRequest,
)
from incident_io import AuthenticatedClient
from incident_io.api.follow_ups_v2 import follow_ups_v2_list, follow_ups_v2_show
from incident_io.api.follow_ups_v3 import (
    follow_ups_v3_create,
    follow_ups_v3_delete,
    follow_ups_v3_list,
    follow_ups_v3_show,
    follow_ups_v3_update,
)
from incident_io.api.users_v2 import users_v2_list, users_v2_show
from incident_io.models import (
    ErrorResponse as IncidentErrorResponse,
)
from incident_io.models import (
    FollowUpsCreatePayloadV3,
    FollowUpsCreateResultV3,
    FollowUpsListResultV2,
    FollowUpsListResultV3,
    FollowUpsShowResultV2,
    FollowUpsShowResultV3,
    FollowUpsUpdatePayloadV3,
    FollowUpsUpdatePayloadV3Status,
    FollowUpsUpdateResultV3,
    FollowUpsV3ListIncidentMode,
    FollowUpsV3ListUpdatedAt,
    UsersListResultV2,
    UsersShowResultV2,
    WebhooksPublicIncidentFollowUpCreatedV2ResponseBody,
    WebhooksPublicIncidentFollowUpUpdatedV2ResponseBody,
)

from adapters.devhelm.simulator import DevHelmSimulator
from adapters.incidentio.simulator import (
    CATEGORY_ID,
    DEFAULT_INCIDENT_ID,
    PRIORITY_IDS,
    TEAM_ID,
    USER_IDS,
    IncidentIoSimulator,
)
from app.serving import serve_asgi
from tests.contract.kit_devhelm import KIT as DEVHELM
from tests.contract.kit_devhelm import STATUS_PAGE_ID
from tests.contract.kit_incidentio import KIT as INCIDENTIO

T = TypeVar("T")


async def off_loop(call: Callable[..., T], *args: Any) -> T:
    """Run a sync SDK call in a thread: the simulator serves on this event loop."""
    return await asyncio.to_thread(call, *args)


# -- DevHelm -------------------------------------------------------------------------------


@pytest.fixture(params=["honoured", "ignored"], ids=lambda s: f"sort={s}")
async def devhelm_sim(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, str]]:
    sim = DEVHELM.simulator(options=DEVHELM.sim_options(behaviour={"sort": request.param}))
    assert isinstance(sim, DevHelmSimulator)
    async with serve_asgi(sim.app) as url:
        yield sim, url


async def test_devhelm_sdk_reads_every_answer(devhelm_sim: tuple[Any, str]) -> None:
    sim, url = devhelm_sim
    sdk = Devhelm(DEVHELM.api_key, base_url=url)  # sends x-phelm-org-id "1", as we do
    incidents = sdk.status_pages.incidents
    created = await off_loop(
        incidents.create,
        STATUS_PAGE_ID,
        CreateStatusPageIncidentRequest(
            title="Checkout errors", impact="MAJOR", body="Investigating.", notifySubscribers=False
        ),
    )
    assert created.status == "INVESTIGATING"
    updated = await off_loop(
        incidents.update,
        STATUS_PAGE_ID,
        str(created.id),
        UpdateStatusPageIncidentRequest(status="MONITORING", postmortemUrl=""),
    )
    assert updated.status == "MONITORING"
    timeline = await off_loop(
        incidents.post_update,
        STATUS_PAGE_ID,
        str(created.id),
        CreateStatusPageIncidentUpdateRequest(status="RESOLVED", body="Fixed."),
    )
    assert timeline.resolved_at is not None
    fetched = await off_loop(incidents.get, STATUS_PAGE_ID, str(created.id))
    assert fetched.updates and len(fetched.updates) == 2
    page = await off_loop(incidents.list, STATUS_PAGE_ID)
    assert [i.id for i in page.data] == [created.id]

    # the raw list envelope, as our adapter asks for it, in the SDK's own model
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {DEVHELM.api_key}"}
    ) as raw:
        listing = await raw.get(
            f"/api/v1/status-pages/{STATUS_PAGE_ID}/incidents",
            params={"sort": "updatedAt,desc", "size": 1},
        )
        TableValueResultStatusPageIncidentDto.model_validate_json(listing.content)
        invalid = await raw.post(
            f"/api/v1/status-pages/{STATUS_PAGE_ID}/incidents", json={"title": ""}
        )
        assert invalid.status_code == 400
        error = ErrorResponse.model_validate_json(invalid.content)
        assert error.code == "VALIDATION_FAILED" and error.errors

    with pytest.raises(DevhelmNotFoundError) as missing:
        await off_loop(incidents.get, STATUS_PAGE_ID, str(uuid.uuid4()))
    assert_devhelm_error_body(missing.value, 404, "NOT_FOUND")

    sim.kit.rpm = 1  # this minute has seen more than one request already
    with pytest.raises(DevhelmRateLimitError) as limited:
        await off_loop(incidents.get, STATUS_PAGE_ID, str(created.id))
    assert limited.value.retry_after is not None and limited.value.retry_after > 0
    assert_devhelm_error_body(limited.value, 429, "RATE_LIMITED")


def assert_devhelm_error_body(error: DevhelmApiError, status: int, code: str) -> None:
    """The SDK's exception carries the body; it must be a valid ``ErrorResponse``."""
    body = error.body
    assert isinstance(body, dict), body
    parsed = ErrorResponse.model_validate(body)
    assert (parsed.status, parsed.code) == (status, code)
    assert parsed.request_id == error.request_id


# -- incident.io ---------------------------------------------------------------------------


@pytest.fixture(params=["keep", "clear"], ids=lambda s: f"put_omitted={s}")
async def incident_sim(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[IncidentIoSimulator, AuthenticatedClient, list[httpx.Request]]]:
    captured: list[httpx.Request] = []

    def capture(hook: httpx.Request) -> httpx.Response:
        captured.append(hook)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as hooks:
        sim = IncidentIoSimulator(
            INCIDENTIO.sim_options(
                webhook_url="http://gateway.test/hooks", behaviour={"put_omitted": request.param}
            ),
            webhook_client=hooks,
        )
        async with serve_asgi(sim.app) as url:
            client = AuthenticatedClient(base_url=url, token=INCIDENTIO.api_key)
            async with client:
                yield sim, client, captured


async def test_incident_io_sdk_reads_every_answer(
    incident_sim: tuple[IncidentIoSimulator, AuthenticatedClient, list[httpx.Request]],
) -> None:
    sim, client, captured = incident_sim
    created = await follow_ups_v3_create.asyncio_detailed(
        client=client,
        body=FollowUpsCreatePayloadV3(
            incident_id=DEFAULT_INCIDENT_ID,
            title="Add replica lag alerts",
            description="Page at 30 s.",
            assignee_id=USER_IDS[0],
            assignee_team_id=TEAM_ID,
            follow_up_category_id=CATEGORY_ID,
            follow_up_priority_option_id=PRIORITY_IDS[0],
            labels=["syncgate:wi-1:link-1"],
        ),
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, FollowUpsCreateResultV3)
    follow_up_id = created.parsed.follow_up.id

    shown = await follow_ups_v3_show.asyncio_detailed(follow_up_id, client=client)
    assert isinstance(shown.parsed, FollowUpsShowResultV3)
    assert shown.parsed.follow_up.category.id == CATEGORY_ID

    updated = await follow_ups_v3_update.asyncio_detailed(
        follow_up_id,
        client=client,
        body=FollowUpsUpdatePayloadV3(
            status=FollowUpsUpdatePayloadV3Status.COMPLETED, title="Add replica lag alerts"
        ),
    )
    assert isinstance(updated.parsed, FollowUpsUpdateResultV3)

    day = shown.parsed.follow_up.created_at.date().isoformat()
    window = FollowUpsV3ListUpdatedAt()
    window["date_range"] = [f"{day}~{day}"]
    for mode in (None, FollowUpsV3ListIncidentMode.TEST):
        listed = await follow_ups_v3_list.asyncio_detailed(
            client=client,
            incident_id=DEFAULT_INCIDENT_ID,
            updated_at=window,
            **({"incident_mode": mode} if mode else {}),
        )
        assert isinstance(listed.parsed, FollowUpsListResultV3), listed.content
    assert [f.id for f in listed.parsed.follow_ups] == []  # the default incident is standard

    with pytest.warns(DeprecationWarning, match="v2/follow_ups"):  # the SDK says so: fine
        v2_list = await follow_ups_v2_list.asyncio_detailed(client=client)
    with pytest.warns(DeprecationWarning, match="v2/follow_ups"):
        v2_show = await follow_ups_v2_show.asyncio_detailed(follow_up_id, client=client)
    assert isinstance(v2_list.parsed, FollowUpsListResultV2)
    assert isinstance(v2_show.parsed, FollowUpsShowResultV2)

    # webhooks carry the V2 shape under a key named after the event type
    await sim.kit.flush()
    bodies = [httpx.Response(200, content=hook.content).json() for hook in captured]
    created_hook, *updated_hooks = bodies
    WebhooksPublicIncidentFollowUpCreatedV2ResponseBody.from_dict(created_hook)
    for body in updated_hooks:
        WebhooksPublicIncidentFollowUpUpdatedV2ResponseBody.from_dict(body)
    assert updated_hooks

    # the user directory, for the identity map
    users = await users_v2_list.asyncio_detailed(client=client, email="ada@example.com")
    assert isinstance(users.parsed, UsersListResultV2), users.content
    assert [u.id for u in users.parsed.users] == [USER_IDS[0]]
    user = await users_v2_show.asyncio_detailed(USER_IDS[1], client=client)
    assert isinstance(user.parsed, UsersShowResultV2), user.content
    assert user.parsed.user.email == "bo@example.com"

    missing = await follow_ups_v3_show.asyncio_detailed("01HQ0000000000000000000000", client=client)
    assert_incident_error(missing.parsed, 404, "not_found")

    invalid = await follow_ups_v3_update.asyncio_detailed(
        follow_up_id,
        client=client,
        body=FollowUpsUpdatePayloadV3(status=FollowUpsUpdatePayloadV3Status.OUTSTANDING, title=""),
    )
    error = assert_incident_error(invalid.parsed, 422, "validation_error")
    source = error.errors[0].source
    assert (source.field, source.pointer) == ("title", "/title")

    deleted = await follow_ups_v3_delete.asyncio_detailed(follow_up_id, client=client)
    assert deleted.status_code == 204

    sim.kit.rpm = 1  # this minute has seen more than one request already
    limited = await follow_ups_v3_show.asyncio_detailed(follow_up_id, client=client)
    error = assert_incident_error(limited.parsed, 429, "too_many_requests")
    assert error.rate_limit.retry_after.endswith("Z")
    assert limited.headers["retry-after"]


def assert_incident_error(parsed: Any, status: int, kind: str) -> IncidentErrorResponse:
    assert isinstance(parsed, IncidentErrorResponse), parsed
    assert (parsed.status, parsed.type_.value) == (status, kind)
    assert parsed.errors and parsed.request_id
    return parsed
