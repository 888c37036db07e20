"""``/admin/identities``: the people assignees cross systems through; list, add or
replace one, delete one. People from config.yaml are listed (``source: config``) and
read-only here."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, put
from litestar.params import JSONBody, PathParameter
from msgspec import Meta

from app.http.admin.common import audit
from app.http.context import gateway_of
from app.http.problems import errors
from app.model import Person

Email = Annotated[str, PathParameter(description="The person's email (the canonical assignee)")]
UserId = Annotated[str, Meta(min_length=1, max_length=200)]


class IdentityIn(msgspec.Struct, forbid_unknown_fields=True):
    """One person: their user id per system with assignees (``{"inboxops": "<agent
    uuid>", "incidentio": "<user id>"}``), and optionally a name."""

    ids: dict[str, UserId]
    name: Annotated[str, Meta(max_length=200)] = ""


class IdentityOut(msgspec.Struct):
    """One person; ``source``: ``config`` (config.yaml, read-only here) or ``api``."""

    email: str
    name: str
    ids: dict[str, str]
    source: str


class IdentitiesOut(msgspec.Struct):
    identities: list[IdentityOut]


def _out(person: Person, source: str) -> IdentityOut:
    return IdentityOut(person.email.lower(), person.name, dict(person.ids), source)


@get("/identities", summary="Every person in the identity map", tags=["identities"])
async def list_identities(request: Request[Any, Any, Any]) -> IdentitiesOut:
    service = gateway_of(request).identities
    return IdentitiesOut([_out(person, source) for person, source in service.entries()])


@get(
    "/identities/{email:str}",
    summary="One person of the identity map",
    tags=["identities"],
    responses=errors(404),
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
    responses=errors(400, 409, 422),
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
    responses=errors(404, 409),
)
async def delete_identity(request: Request[Any, Any, Any], email: Email) -> None:
    person = await gateway_of(request).identities.delete(email)
    audit("identity deleted", email=person.email)
