"""The simulator's user directory as incident.io's Users V2 API lists it, so that an
operator (or a test) can fill the identity map from it.

    GET /v2/users        ?page_size (1..250, default 25) &after (a user id) &email
                         &slack_user_id -> {"users": [...], "pagination_meta":
                         {"page_size", "after"?}}, by id
    GET /v2/users/{id}   -> {"user"}; 404 for an unknown id

Users V2 is incident.io's public API, outside the follow-up contract of vendors.md. The
shapes are those of the official SDK (incident-io 2.29.0: ``UsersListResultV2``,
``UsersShowResultV2``, a user being ``UserWithRolesV2``: the assignee's fields plus
``is_active``, ``base_role``, ``custom_roles`` and ``seats``); the paging follows the
follow-up list's (``after`` is the last id of a full page), an assumption noted in
docs/vendor-notes.md. ``POST /_sim/users`` adds users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response, get

from adapters._simbase import json_response
from adapters.incidentio.simulator_rules import Invalid, invalid_field, parse_query

LIST_PARAMS = frozenset({"page_size", "after", "email", "slack_user_id"})
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 250


#: The base role of each user role (``RBACRoleV2``); ids are ULID-shaped.
BASE_ROLES = {
    role: {
        "id": f"01HQ000000000000000000R{index:03d}",
        "name": role.capitalize(),
        "slug": role,
        "description": f"The {role} base role.",
    }
    for index, role in enumerate(("viewer", "responder", "administrator", "owner"))
}


def with_roles(user: Mapping[str, Any]) -> dict[str, Any]:
    """A directory user (as a follow-up's ``assignee`` shows it) as ``UserWithRolesV2``."""
    role = str(user.get("role", "viewer"))
    seat = "viewer_only" if role == "viewer" else "full_access"
    return {
        **user,
        "role": role,
        "is_active": True,
        "base_role": BASE_ROLES.get(role, BASE_ROLES["viewer"]),
        "custom_roles": [],
        "seats": {"on_call": "none", "response": seat},
    }


def list_users(users: Mapping[str, dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of the directory, filtered like ``GET /v2/users``."""
    raw_size = query.get("page_size", str(DEFAULT_PAGE_SIZE))
    size = int(raw_size) if raw_size.isdigit() else 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_field("page_size", f"page_size must be 1..{MAX_PAGE_SIZE}")
    found = [with_roles(user) for _, user in sorted(users.items())]
    for key in ("email", "slack_user_id"):
        if key in query:
            found = [u for u in found if str(u.get(key, "")).lower() == query[key].lower()]
    if "after" in query:
        found = [u for u in found if u["id"] > query["after"]]
    page = found[:size]
    meta: dict[str, Any] = {"page_size": size}
    if len(page) == size:
        meta["after"] = page[-1]["id"]
    return {"users": page, "pagination_meta": meta}


def user_routes(
    users: Mapping[str, dict[str, Any]],
    invalid: Callable[[Invalid], Response[bytes]],
    not_found: Callable[[str], Response[bytes]],
) -> list[Any]:
    """The two vendor routes over ``users`` (the simulator's directory, by id)."""

    @get("/v2/users")
    async def index(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            query = parse_query(request.scope["query_string"].decode(), LIST_PARAMS)
            return json_response(list_users(users, query))
        except Invalid as exc:
            return invalid(exc)

    @get("/v2/users/{user_id:str}")
    async def show(request: Request[Any, Any, Any]) -> Response[bytes]:
        user = users.get(request.path_params["user_id"])
        if user is None:
            return not_found("user")
        return json_response({"user": with_roles(user)})

    return [index, show]
