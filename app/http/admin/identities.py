"""``/admin/identities``: the people assignees cross systems through; list, add or
replace one, delete one. People from config.yaml are listed (``source: config``) and
read-only here."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, put
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import JSONBody, PathParameter
from msgspec import Meta

from app.http.admin.common import audit
from app.http.admin.models import doc
from app.http.context import gateway_of
from app.http.problems import errors
from app.model import Person

Email = Annotated[
    str,
    PathParameter(
        description="The person's email (the canonical assignee)",
        examples=[Example(value="ana@example.com")],
    ),
]
#: Checked by the service (not by the body's schema, which cannot carry a bound on a
#: mapping's values into the OpenAPI document): an empty or over-long id is a 422.
UserId = str
IDS_EXAMPLE = {"inboxops": "5d3c0a8e-2b1f-4c7d-9e6a-1f0b2c3d4e5f", "incidentio": "01HQ1A2B3C"}


class IdentityIn(msgspec.Struct, forbid_unknown_fields=True):
    """One person: their user id per system with assignees (``{"inboxops": "<agent
    uuid>", "incidentio": "<user id>"}``), and optionally a name."""

    ids: Annotated[
        dict[str, UserId], doc("The person's user id in each system with assignees", IDS_EXAMPLE)
    ]
    name: Annotated[str, Meta(max_length=200), doc("A display name (optional)", "Ana")] = ""


class IdentityOut(msgspec.Struct):
    """One person; ``source``: ``config`` (config.yaml, read-only here) or ``api``."""

    email: Annotated[str, doc("The person's email, in lower case", "ana@example.com")]
    name: Annotated[str, doc("A display name; may be empty", "Ana")]
    ids: Annotated[dict[str, str], doc("The person's user id in each system", IDS_EXAMPLE)]
    source: Annotated[str, doc("config (config.yaml, read-only here) or api (the database)", "api")]


class IdentitiesOut(msgspec.Struct):
    """Every person of the identity map."""

    identities: Annotated[list[IdentityOut], doc("The people, config.yaml's first")]


def _out(person: Person, source: str) -> IdentityOut:
    return IdentityOut(person.email.lower(), person.name, dict(person.ids), source)


@get(
    "/identities",
    summary="Every person in the identity map",
    tags=["identities"],
    responses=errors(),
)
async def list_identities(request: Request[Any, Any, Any]) -> IdentitiesOut:
    service = gateway_of(request).identities
    return IdentitiesOut([_out(person, source) for person, source in service.entries()])


@get(
    "/identities/{email:str}",
    summary="One person of the identity map",
    tags=["identities"],
    responses=errors(400, 404),
)
async def get_identity(request: Request[Any, Any, Any], email: Email) -> IdentityOut:
    return _out(*gateway_of(request).identities.get(email))


@put(
    "/identities/{email:str}",
    summary="Add or replace one person",
    tags=["identities"],
    description="201 when the person is new, 200 when replaced. A person of config.yaml, or"
    " a user id that is already someone else's, is a 409; an unknown system, a system"
    " without assignees or a malformed email a 422.",
    responses={
        201: ResponseSpec(IdentityOut, description="The person was added"),
        **errors(400, 409, 422),
    },
)
async def put_identity(
    request: Request[Any, Any, Any], email: Email, data: JSONBody[IdentityIn]
) -> Response[IdentityOut]:
    service = gateway_of(request).identities
    person, created = await service.put(email, data.name, data.ids)
    audit("identity added" if created else "identity replaced", email=person.email)
    return Response(_out(person, "api"), status_code=201 if created else 200)


@delete(
    "/identities/{email:str}",
    summary="Delete one person added through the API",
    tags=["identities"],
    description="Assignees naming them are no longer written to any system."
    " A person of config.yaml is a 409.",
    responses=errors(400, 404, 409),
)
async def delete_identity(request: Request[Any, Any, Any], email: Email) -> None:
    person = await gateway_of(request).identities.delete(email)
    audit("identity deleted", email=person.email)
