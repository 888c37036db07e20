"""A strict in-memory simulator of incident.io follow-ups: REST v3 and v2, incident.io's error
bodies and rate-limit headers, and Svix-signed (Standard Webhooks) v2 follow-up webhooks.

Written from vendors.md §4 and the follow-up OpenAPI subset, not from the adapter's structs.

Vendor routes (``Authorization: Bearer <key>``; ``{v}`` is ``v3`` or ``v2``):

    POST   /{v}/follow_ups        {incident_id, title, description?, assignee_id?,
                                   assignee_team_id?, external_issue_reference_id?,
                                   follow_up_category_id?, follow_up_priority_option_id?,
                                   labels?}                      -> 201 {"follow_up"}
    GET    /v3/follow_ups         ?page_size (1..250, default 25) &after &incident_id
                                   &incident_mode &assignee_team_id
                                   &created_at[gte|lte|date_range]
                                   &updated_at[gte|lte|date_range] (RFC 3339 times or
                                   dates; date_range is ``<date>~<date>``, both days whole)
                                   -> {"follow_ups", "pagination_meta": {"page_size", "after"?}}
    GET    /v2/follow_ups         ?incident_id &incident_mode &assignee_team_id
                                   -> {"follow_ups"} (everything, one response)
    GET    /{v}/follow_ups/{id}   -> {"follow_up"}
    PUT    /{v}/follow_ups/{id}   {status, title, assignee_id? (null unassigns),
                                   assignee_team_id? (null unassigns), description?,
                                   follow_up_category_id?, follow_up_priority_option_id?,
                                   labels?}                      -> {"follow_up"}
    DELETE /{v}/follow_ups/{id}   -> 204
    GET    /v2/users, /v2/users/{id}  the user directory (``simulator_users.py``)

Control routes (no auth):

    POST  /_sim/incidents     {"id"?, "name", "mode"?: standard|retrospective|test|tutorial|
                               stream (standard), "visibility"?: public|private (public)}
                              -> 201 incident; 409 when the id exists
    GET   /_sim/incidents     {"incidents": [...]}
    POST  /_sim/users         {"id"?, "name", "email"?} -> 201 user (an assignee to use)
    POST  /_sim/seed          a follow-up made by a person (creator: a user), in the vendor's
                              field names: the create fields plus "status"? (any of the four)
                              -> 201 FollowUpV3; sends the created webhook
    PATCH /_sim/objects/{id}  a person's change: title, description (null clears), status
                              (any, deleted included), assignee_id, assignee_team_id, labels,
                              follow_up_category_id, follow_up_priority_option_id (null clears)
                              -> FollowUpV3; sends the updated webhook when something changed
    GET   /_sim/objects       {"objects": [every follow-up, V3 shape, deleted included]},
                              oldest first

plus the common /_sim/ surface of ``adapters/_simkit.py``.

Fixed directory (ids are ULID-shaped): the incident ``DEFAULT_INCIDENT_ID`` (public, standard),
users ``USER_IDS``, team ``TEAM_ID``, category ``CATEGORY_ID``, priority options
``PRIORITY_IDS``. References to anything else are a 422 on ``source.field``. Started with
``SimOptions.seed_config``, there is also a public, standard incident for every incident id
the config names (``systems.incidentio.scopes`` and each ``create_in`` ``scope``).

Behaviour where the documents leave a choice (these are the simulator's answers):

- Validation failures are 422 ``validation_error`` listing every problem, each with
  ``source: {field, pointer}`` (the SDK's ``ErrorSource`` requires both): a missing
  required field, a wrong type, an unknown body field, an enum
  value outside the documented set, a reference to an unknown incident, user, team, category
  or priority, ``status: deleted`` on PUT, an empty title, an unknown query parameter. A body
  that is not JSON is 400 ``invalid_request_error``. Unknown follow-up ids are 404.
- Create with an unknown ``incident_id`` is a 422 on ``incident_id`` (the spec's style for a
  bad reference), not a 404 (the route exists).
- The list's default ``incident_mode`` returns only follow-ups of standard and retrospective
  incidents, with or without ``incident_id``.
- ``pagination_meta.after`` is the last id of a full page, so a walk may end on an empty page.
- An optional field omitted from PUT is kept; only ``null`` unassigns (and only the assignee
  fields take null). Behaviour ``put_omitted: clear`` plays the other reading: every
  optional field a PUT leaves out is cleared (labels emptied).
- ``completed`` sets ``completed_at``; leaving ``completed`` clears it. ``completed`` and
  ``not_doing`` may go back to ``outstanding`` (open question 7).
- A PUT that changes nothing leaves ``updated_at`` alone and sends no webhook.
- DELETE is a soft delete: the follow-up turns ``deleted`` (GET and lists still show it, which
  is how a poller learns of it), an updated webhook goes out; PUT on it is a 422; a second
  DELETE is a 204 that changes nothing. Behaviour ``deleted: not_found`` (or ``gone``)
  plays the other reading: a deleted follow-up is a 404 (or 410) to GET, PUT and DELETE
  and is left out of lists (the updated webhook still goes out).
- ``external_issue_reference_id`` is refused (422): the simulator has no issue trackers.
- Webhooks go out for public incidents as ``public_incident.follow_up_{created,updated}_v2``
  carrying the V2 shape (no ``category``), for private ones as
  ``private_incident.follow_up_{created,updated}_v2`` carrying only ``{"id"}``, signed with
  the secret in effect at send time (a random ``whsec_`` secret when none is configured).
  A secret that cannot sign (not base64 after the optional ``whsec_``) is refused at start.
- 429 bodies carry ``rate_limit`` with ``retry_after`` as RFC 3339; ``X-RateLimit-*`` headers
  go on every authenticated response (the default allowance, 1,200 a minute, unless a
  limit is set).
- Webhook retries follow Svix's schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
  10 h), time-scaled by ``SimOptions.webhook_time_scale``.

Behaviour options (``SimOptions.behaviour`` / ``PUT /_sim/behaviour``):

    put_omitted   keep (default) | clear
    deleted       shown (default) | not_found | gone

The request rules (body fields, query parameters, time filters) are in
``adapters/incidentio/simulator_rules.py``; the state and the operations on it in
``adapters/incidentio/simulator_state.py``.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put

from adapters._simbase import Simulator, check_standard_secret, json_response
from adapters._simkit import Behaviour, SimOptions
from adapters.incidentio.simulator_rules import (
    Invalid,
    Rule,
    check_string,
    check_title,
    one_of,
    parse_json,
    parse_query,
    problem,
    validate,
)
from adapters.incidentio.simulator_state import (
    API_KEY_ACTOR,
    CATEGORY_ID,
    DEFAULT_INCIDENT_ID,
    INCIDENT_MODES,
    PRIORITY_IDS,
    TEAM_ID,
    USER_IDS,
    VISIBILITIES,
    FollowUpRecord,
    Incident,
    IncidentIoState,
    Ulids,
    rfc3339,
)
from adapters.incidentio.simulator_users import user_routes

__all__ = [
    "BEHAVIOURS",
    "CATEGORY_ID",
    "DEFAULT_INCIDENT_ID",
    "PRIORITY_IDS",
    "TEAM_ID",
    "USER_IDS",
    "IncidentIoSimulator",
]

VENDOR = "incidentio"
JSON = "application/json"

V3_LIST_PARAMS = frozenset(
    {
        "page_size",
        "after",
        "incident_id",
        "incident_mode",
        "assignee_team_id",
        "created_at[gte]",
        "created_at[lte]",
        "created_at[date_range]",
        "updated_at[gte]",
        "updated_at[lte]",
        "updated_at[date_range]",
    }
)
V2_LIST_PARAMS = frozenset({"incident_id", "incident_mode", "assignee_team_id"})
#: The documented default allowance per API key (a token bucket of 1,200 a minute).
DEFAULT_RPM = 1200
#: Readings of what the documents leave open (see the module docstring).
BEHAVIOURS = {
    "put_omitted": Behaviour(
        choices=("keep", "clear"),
        doc="what PUT does to an optional field it is not sent (open question 7)",
    ),
    "deleted": Behaviour(
        choices=("shown", "not_found", "gone"),
        doc="what a deleted follow-up is: shown with status deleted, or a 404 / 410 "
        "to GET, PUT and DELETE and left out of lists",
    ),
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "resource_forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    410: "not_found",
    412: "precondition_failed",
    413: "payload_too_large",
    422: "validation_error",
    429: "too_many_requests",
}
#: SimKit's generic codes; they become the incident.io error type of their status.
GENERIC_CODES = frozenset(
    {"unauthorized", "rate_limited", "injected_fault", "timeout", "validation_error", "http_error"}
)

_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?)")


# -- the simulator --------------------------------------------------------------------------


class IncidentIoSimulator(IncidentIoState, Simulator):
    """incident.io follow-ups, in memory; ``.app`` is the ASGI app, ``.kit`` the SimKit."""

    vendor = VENDOR
    default_rpm = DEFAULT_RPM
    behaviours = BEHAVIOURS

    def prepare(self, options: SimOptions) -> SimOptions:
        secret = options.webhook_secret
        if not secret:
            # Svix always signs; without a configured secret, sign with a random one.
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            options = msgspec.structs.replace(options, webhook_secret=secret)
        check_standard_secret(secret)
        return options

    def setup(self, seeded: list[str]) -> None:
        self.ulid = Ulids()
        self.incidents: dict[str, Incident] = {
            DEFAULT_INCIDENT_ID: Incident(
                id=DEFAULT_INCIDENT_ID,
                name="Simulated incident",
                mode="standard",
                visibility="public",
            )
        }
        for incident_id in seeded:
            self.incidents.setdefault(
                incident_id,
                Incident(
                    id=incident_id, name="Seeded incident", mode="standard", visibility="public"
                ),
            )
        self.users: dict[str, dict[str, Any]] = {
            USER_IDS[0]: {
                "id": USER_IDS[0],
                "name": "Ada Responder",
                "email": "ada@example.com",
                "role": "responder",
            },
            USER_IDS[1]: {
                "id": USER_IDS[1],
                "name": "Bo Owner",
                "email": "bo@example.com",
                "role": "owner",
            },
        }
        self.teams = {TEAM_ID: {"id": TEAM_ID, "name": "Platform"}}
        self.categories = {
            CATEGORY_ID: {
                "id": CATEGORY_ID,
                "name": "Infrastructure",
                "rank": 10,
                "description": "Changes to infrastructure.",
            }
        }
        self.priorities = {
            PRIORITY_IDS[0]: {
                "id": PRIORITY_IDS[0],
                "name": "Urgent",
                "rank": 10,
                "description": "Needs attention now.",
            },
            PRIORITY_IDS[1]: {
                "id": PRIORITY_IDS[1],
                "name": "Low",
                "rank": 1,
                "description": "When there is time.",
            },
        }
        self.follow_ups: dict[str, FollowUpRecord] = {}

    # -- errors ----------------------------------------------------------------------------

    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """incident.io's error body for one error; SimKit's generic codes become the type."""
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return self.error_body(status, [problem(kind if code in GENERIC_CODES else code, message)])

    def error_body(self, status: int, errors: list[dict[str, Any]]) -> tuple[bytes, str]:
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {
            "type": kind,
            "status": status,
            "request_id": str(uuid.uuid4()),
            "errors": errors,
        }
        if status == 429:
            # SimKit hands the renderer no delay, only its message ("... retry after 12");
            # clients read the Retry-After header anyway.
            found = _RETRY_IN_MESSAGE.search(errors[0]["message"]) if errors else None
            delay = float(found.group(1)) if found else 1.0
            body["rate_limit"] = {
                "name": "api_key",
                "limit": self.kit.rpm or 1200,
                "remaining": 0,
                "retry_after": rfc3339(self.kit.now() + timedelta(seconds=delay)),
            }
        return msgspec.json.encode(body), JSON

    def _invalid(self, exc: Invalid) -> Response[bytes]:
        body, content_type = self.error_body(exc.status, exc.errors)
        return Response(body, status_code=exc.status, media_type=content_type)

    def _not_found(self, what: str) -> Response[bytes]:
        return self.kit.error(404, "not_found", f"{what} not found")

    def _hidden(self, record: FollowUpRecord) -> bool:
        """Whether the API no longer shows this follow-up (behaviour ``deleted``)."""
        return record.status == "deleted" and self.kit.behaviour["deleted"] != "shown"

    def _missing(self, record: FollowUpRecord | None) -> Response[bytes]:
        """The answer for an unknown follow-up, or a deleted one the API hides: 404, or
        410 under behaviour ``deleted: gone``."""
        if record is not None and self.kit.behaviour["deleted"] == "gone":
            return self.kit.error(410, "not_found", "follow-up has been deleted")
        return self._not_found("follow-up")

    def rate_limit_headers(self, limit: int, remaining: int, reset_s: float) -> dict[str, str]:
        """incident.io's allowance headers: the binding limit, then each limit with its
        window (one, of a minute); ``X-RateLimit-Reset`` is a Unix time in seconds."""
        used = limit - remaining
        return {
            "X-RateLimit-Limit": f"{limit}, {limit};window=60",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Reset": str(math.ceil(time.time() + reset_s)),
        }

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[Any]:
        sim = self
        paths = ["/v2/follow_ups", "/v3/follow_ups"]
        item_paths = ["/v2/follow_ups/{follow_up_id:str}", "/v3/follow_ups/{follow_up_id:str}"]

        @post(paths, status_code=201)
        async def create(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                values = validate(parse_json(await request.body()), sim.create_rules())
            except Invalid as exc:
                return sim._invalid(exc)
            record = sim.make(values, {"api_key": API_KEY_ACTOR})
            return json_response({"follow_up": sim.render(record, api_version(request))}, 201)

        @get(paths)
        async def list_follow_ups(request: Request[Any, Any, Any]) -> Response[bytes]:
            v = api_version(request)
            try:
                query = parse_query(
                    request.scope["query_string"].decode(),
                    V3_LIST_PARAMS if v == "v3" else V2_LIST_PARAMS,
                )
                records, meta = sim.listing(query, paginate=v == "v3")
            except Invalid as exc:
                return sim._invalid(exc)
            payload: dict[str, Any] = {"follow_ups": [sim.render(r, v) for r in records]}
            if meta is not None:
                payload["pagination_meta"] = meta
            return json_response(payload)

        @get(item_paths)
        async def show(request: Request[Any, Any, Any]) -> Response[bytes]:
            record = sim.follow_ups.get(request.path_params["follow_up_id"])
            if record is None or sim._hidden(record):
                return sim._missing(record)
            return json_response({"follow_up": sim.render(record, api_version(request))})

        @put(item_paths)
        async def update(request: Request[Any, Any, Any]) -> Response[bytes]:
            record = sim.follow_ups.get(request.path_params["follow_up_id"])
            if record is None or sim._hidden(record):
                return sim._missing(record)
            try:
                values = validate(parse_json(await request.body()), sim.update_rules())
                if record.status == "deleted":
                    raise Invalid(422, [problem("invalid_value", "follow-up has been deleted")])
            except Invalid as exc:
                return sim._invalid(exc)
            if sim.apply(record, sim.put_values(values)):
                sim.notify(record, created=False)
            return json_response({"follow_up": sim.render(record, api_version(request))})

        @delete(item_paths, status_code=200)  # the 204 is set on the response: a 404 has a body
        async def remove(request: Request[Any, Any, Any]) -> Response[bytes]:
            record = sim.follow_ups.get(request.path_params["follow_up_id"])
            if record is None or sim._hidden(record):
                return sim._missing(record)
            if sim.apply(record, {"status": "deleted"}):
                sim.notify(record, created=False)
            return Response(b"", status_code=204)

        users = user_routes(sim.users, sim._invalid, sim._not_found)
        return [create, list_follow_ups, show, update, remove, *users]

    def control_routes(self) -> list[Any]:
        sim = self

        @post("/_sim/incidents", status_code=201)
        async def add_incident(request: Request[Any, Any, Any]) -> Response[bytes]:
            rules = {
                "id": Rule(check_string),
                "name": Rule(check_title, required=True),
                "mode": Rule(one_of(INCIDENT_MODES, "incident mode")),
                "visibility": Rule(one_of(VISIBILITIES, "visibility")),
            }
            try:
                values = validate(parse_json(await request.body()), rules)
            except Invalid as exc:
                return sim._invalid(exc)
            incident = Incident(
                id=values.get("id") or sim.ulid(sim.kit.now()),
                name=values["name"],
                mode=values.get("mode", "standard"),
                visibility=values.get("visibility", "public"),
            )
            if incident.id in sim.incidents:
                return sim.kit.error(409, "conflict", f"incident {incident.id} already exists")
            sim.incidents[incident.id] = incident
            return json_response(msgspec.to_builtins(incident), 201)

        @get("/_sim/incidents")
        async def list_incidents() -> Response[bytes]:
            return json_response({"incidents": msgspec.to_builtins(list(sim.incidents.values()))})

        @post("/_sim/users", status_code=201)
        async def add_user(request: Request[Any, Any, Any]) -> Response[bytes]:
            rules = {
                "id": Rule(check_string),
                "name": Rule(check_title, required=True),
                "email": Rule(check_string),
            }
            try:
                values = validate(parse_json(await request.body()), rules)
            except Invalid as exc:
                return sim._invalid(exc)
            user = {
                "id": values.get("id") or sim.ulid(sim.kit.now()),
                "name": values["name"],
                "role": "viewer",
            }
            if "email" in values:
                user["email"] = values["email"]
            sim.users[user["id"]] = user
            return json_response(user, 201)

        @post("/_sim/seed", status_code=201)
        async def seed(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                values = validate(parse_json(await request.body()), sim.seed_rules())
            except Invalid as exc:
                return sim._invalid(exc)
            record = sim.make(values, {"user": sim.users[USER_IDS[0]]})
            return json_response(sim.render(record, "v3"), 201)

        @patch("/_sim/objects/{follow_up_id:str}")
        async def person_change(request: Request[Any, Any, Any]) -> Response[bytes]:
            record = sim.follow_ups.get(request.path_params["follow_up_id"])
            if record is None:
                return sim._not_found("follow-up")
            try:
                values = validate(parse_json(await request.body()), sim.person_rules())
            except Invalid as exc:
                return sim._invalid(exc)
            if sim.apply(record, values):
                sim.notify(record, created=False)
            return json_response(sim.render(record, "v3"))

        return [add_incident, list_incidents, add_user, seed, person_change]

    def objects(self) -> list[dict[str, Any]]:
        return [self.render(r, "v3") for r in sorted(self.follow_ups.values(), key=lambda r: r.id)]


def api_version(request: Request[Any, Any, Any]) -> str:
    """The API version a request is made in: ``v2`` or ``v3``."""
    return "v2" if request.url.path.startswith("/v2/") else "v3"
