"""A strict simulator of DevHelm's status-page incident API and its platform webhooks.

Written from the DevHelm section of the vendor notes (and its OpenAPI / SDK 1.12.0
schemas), not from the adapter's wire structs, so the two cannot agree on a mistake.

Vendor surface (``Authorization: Bearer <key>``; an ``x-phelm-org-id`` other than this
organization's id (behaviour ``org_id``, ``"1"``) is answered 403; absent, the key's own
org applies unless behaviour ``org_header`` is ``required``):

    GET    /api/v1/status-pages/{id}/incidents          ?page (0-based) &size (1..200,
                                                          default 20) &sort=prop[,asc|desc]
                                                          (repeatable; default createdAt,desc)
                                                          &status (repeatable or comma list)
    POST   /api/v1/status-pages/{id}/incidents          201 {"data": incident}
    GET    /api/v1/status-pages/{id}/incidents/{iid}    {"data": incident} with updates[]
    PUT    /api/v1/status-pages/{id}/incidents/{iid}    null or omitted keeps; "" clears the
                                                          postmortem fields
    DELETE /api/v1/status-pages/{id}/incidents/{iid}    204
    POST   /api/v1/status-pages/{id}/incidents/{iid}/updates   201 {"data": incident}
    POST   /api/v1/status-pages/{id}/incidents/{iid}/publish   drafts only (409 otherwise)
    POST   /api/v1/status-pages/{id}/incidents/{iid}/dismiss   drafts only; 204, deletes it

Behaviour where DevHelm's documents leave a choice:

- Request bodies follow SDK 1.12.0 (create has ``monitoringIncidentId``; PUT has
  ``published``, ``scheduledFor``, ``scheduledUntil``, ``autoResolve``), and create also
  takes the June spec's ``scheduled``, ``scheduledFor``, ``scheduledUntil``,
  ``autoResolve`` (vendors.md lists them; SDK 1.12.0's create model dropped them).
  Unknown fields, wrong types, bad enums and a blank title are 400 ``VALIDATION_FAILED``
  with ``errors[{code, field, message}]``; malformed JSON and bad query values are 400
  ``BAD_REQUEST``; an unknown query parameter is 400 too.
- List rows carry ``updates: null``; the timeline comes with the single-incident read.
- A status change through PUT adds no timeline entry and notifies nobody; ``POST
  .../updates`` is the customer-facing path. ``updatedAt`` moves only when something
  actually changed.
- RESOLVED may go back to an active status (PUT or a timeline update); ``resolvedAt`` is
  set on entering RESOLVED and cleared on leaving it.
- ``scheduledFor``/``scheduledUntil`` on PUT are refused for unscheduled incidents;
  create with ``scheduled: true`` needs ``scheduledFor``.
- Every vendor response carries ``X-Request-Id`` (equal to an error's ``requestId``);
  ``X-RateLimit-*`` come with every authenticated response (the Starter plan's 1,000 a
  minute unless a limit is set). A 429 body is an ``ErrorResponse`` with code
  ``RATE_LIMITED`` and the rate-limit page's message ("Rate limit exceeded. Retry after
  12.").
- Platform webhook retries follow the Svix schedule (DevHelm documents ``maxAttempts``
  but no schedule; an assumption).

Behaviour options (``SimOptions.behaviour`` / ``PUT /_sim/behaviour``), for what the
documents leave open:

    sort        honoured (default) | ignored: the list answers oldest created first,
                whatever ``sort`` asks
    org_header  optional (default) | required: a request without ``x-phelm-org-id`` is
                403 (the authentication page says raw calls need it; the API-keys page
                says it defaults to the key's org)
    org_id      "1" (default): the key's organization; another id in the header is 403

Control routes (no auth):

    POST  /_sim/status-pages     {"id"?, "name", "incidentMode"?: MANUAL|REVIEW|AUTOMATIC
                                  (default AUTOMATIC), "components"?: [{"id"?, "name"}]}
                                  -> 201 the page
    GET   /_sim/status-pages     {"data": [pages]}
    POST  /_sim/seed             {"statusPageId", "title", "impact", "status"?, "body"?,
                                  "draft"?: bool, "incidentId"?: monitoring incident id}
                                  -> 201 {"data": incident}. A new statusPageId makes an
                                  AUTOMATIC page; a draft (publishedAt null) needs a REVIEW or
                                  AUTOMATIC page; with incidentId an ``incident.created``
                                  platform event {"id": incidentId} is sent.
    PATCH /_sim/objects/{iid}    a person's edit in the DevHelm UI: {"title"?, "status"?,
                                  "impact"?, "body"?, "postmortemBody"?, "postmortemUrl"?};
                                  with "body" a timeline update is posted. No webhook: DevHelm
                                  sends none for status-page incidents.
    GET   /_sim/objects          {"objects": [every incident, with its timeline]}, in the
                                  order created
    POST  /_sim/platform-events  {"type": <platform event type>, "data"?: {...}} -> 202
                                  {"id": "evt_...", "deliveryId": ...}: one signed delivery

Platform deliveries carry ``X-DevHelm-Event``, ``X-DevHelm-Delivery`` and
``X-DevHelm-Signature: t=<unix>;v1=<hex HMAC-SHA256 of t:body>`` (unsigned when no secret
is set); retries resend the same envelope ``id``. The common ``/_sim/`` routes of
``adapters/_simkit.py`` are served too.

Started with ``SimOptions.seed_config``, the simulator has an AUTOMATIC status page (no
components) for every page id the config names: ``systems.devhelm.scopes`` and the
``scope`` of each ``create_in`` entry for devhelm. A page id that is not a UUID is refused
at start (DevHelm's page ids are UUIDs; the API would answer 400 for it).

The request rules (the documented enums, each route's body rules, the list's query
parameters) are in ``adapters/devhelm/simulator_rules.py``.
"""

from __future__ import annotations

import contextvars
import copy
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.enums import ScopeType
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters import signing
from adapters._simbase import Simulator, json_response
from adapters._simkit import Behaviour
from adapters.devhelm.simulator_rules import (
    CREATE_RULES,
    EVENT_RULES,
    HUMAN_RULES,
    PAGE_RULES,
    PUBLISH_RULES,
    SEED_RULES,
    STATUSES,
    TIMELINE_RULES,
    UPDATE_RULES,
    Rejection,
    check_schedule,
    entry,
    int_param,
    invalid,
    is_uuid,
    sort_specs,
    validated,
)

#: This organization's id by default; the SDK sends "1" when none is configured.
ORG_ID = "1"
#: The allowance the rate-limit headers advertise without a set limit (the Starter plan's
#: 1,000 a minute; Free is 100, Pro and Team 5,000).
DEFAULT_RPM = 1000
#: Readings of what the documents leave open (see the module docstring).
BEHAVIOURS = {
    "sort": Behaviour(
        choices=("honoured", "ignored"),
        doc="whether the incident list honours sort= (ignored: oldest created first)",
    ),
    "org_header": Behaviour(
        choices=("optional", "required"),
        doc="whether x-phelm-org-id may be left out (the key's own org applies)",
    ),
    "org_id": Behaviour(default=ORG_ID, doc="the organization the API key belongs to"),
}
API_VERSION = "2026-01"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
#: The user a person's UI actions are attributed to.
UI_USER_ID = 1001

#: The id of the request being answered, shared by the X-Request-Id header and error bodies.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "devhelm_request_id", default=None
)

GENERIC_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_ENTITY",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def iso(value: datetime) -> str:
    """Fixed-width UTC timestamps, so that they also sort as strings."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StatusPage:
    id: str
    name: str
    incident_mode: str
    components: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "incidentMode": self.incident_mode,
            "components": [{"id": k, "name": v} for k, v in self.components.items()],
        }


#: (status, JSON payload or None for no content)
Outcome = tuple[int, Any]


class DevHelmSimulator(Simulator):
    """DevHelm's status-page incidents in memory, behind the common simulator kit."""

    vendor = "devhelm"
    default_rpm = DEFAULT_RPM
    behaviours = BEHAVIOURS

    def setup(self, seeded: list[str]) -> None:
        self.pages: dict[str, StatusPage] = {}
        self.incidents: dict[str, dict[str, Any]] = {}
        for page_id in seeded:
            if not is_uuid(page_id):
                raise ValueError(f"seed config: DevHelm status page id {page_id!r} is not a UUID")
            self.add_status_page(page_id, f"Status page {page_id[:8]}")

    def wrap(self, app: ASGIApp) -> ASGIApp:
        return with_request_id(app)

    def rate_limit_headers(self, limit: int, remaining: int, reset_s: float) -> dict[str, str]:
        """DevHelm's per-org quota headers; Reset is a Unix time in seconds."""
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(time.time() + reset_s)),
        }

    # -- errors ----------------------------------------------------------------------------

    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """DevHelm's ``ErrorResponse`` for SimKit's generic codes and our own."""
        return self._error_body(status, code, message, None), "application/json"

    def _error_body(
        self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None
    ) -> bytes:
        timestamp = int(self.kit.now().timestamp() * 1000)
        if status == 429:
            # The rate-limit page's message, in the ErrorResponse the spec requires
            # (status, code, message, timestamp; code RATE_LIMITED as its schema names it).
            wait = re.search(r"retry after (\d+(?:\.\d+)?)", message, re.IGNORECASE)
            message = f"Rate limit exceeded. Retry after {wait.group(1)}." if wait else message
            code = "RATE_LIMITED"
        if code == "validation_error":
            vendor_code = "VALIDATION_FAILED"
            errors = [entry("INVALID", None, message)]
        elif code.isupper():
            vendor_code = code
        else:
            vendor_code = GENERIC_CODES.get(status, "ERROR")
        body: dict[str, Any] = {
            "status": status,
            "code": vendor_code,
            "message": message,
            "timestamp": timestamp,
            "requestId": REQUEST_ID.get(),
        }
        if errors is not None:
            body["errors"] = errors
        return msgspec.json.encode(body)

    async def _run(
        self,
        request: Request[Any, Any, Any],
        op: Callable[..., Outcome],
        *args: str,
        body: str = "none",
        query: Sequence[str] = (),
        vendor: bool = True,
    ) -> Response[bytes]:
        """Check org, query and body (``body``: none | optional | required), run ``op``,
        and render a ``Rejection`` in DevHelm's error shape."""
        try:
            if vendor:
                self._check_org(request.headers.get("x-phelm-org-id"))
            unknown = sorted(set(request.query_params) - set(query))
            if unknown:
                raise Rejection(400, "BAD_REQUEST", f"Unknown query parameter: {unknown[0]}")
            extra: list[Any] = []
            if query:
                extra.append(request.query_params)
            if body != "none":
                raw = await request.body()
                if not raw.strip():
                    if body == "required":
                        raise Rejection(400, "BAD_REQUEST", "Required request body is missing")
                    extra.append({})
                else:
                    try:
                        extra.append(msgspec.json.decode(raw))
                    except msgspec.DecodeError:
                        raise Rejection(400, "BAD_REQUEST", "Malformed JSON request body") from None
            status, payload = op(*args, *extra)
            return json_response(payload, status)
        except Rejection as exc:
            body_bytes = self._error_body(exc.status, exc.code, exc.message, exc.errors)
            return Response(body_bytes, status_code=exc.status, media_type="application/json")

    def _check_org(self, org: str | None) -> None:
        """The tenant header: another org's id is 403; a missing one is 403 only when the
        ``org_header`` behaviour is "required" (the docs disagree; open question 4)."""
        if org is None:
            if self.kit.behaviour["org_header"] == "required":
                raise Rejection(403, "FORBIDDEN", "x-phelm-org-id header is required")
            return
        if org != self.kit.behaviour["org_id"]:
            raise Rejection(403, "FORBIDDEN", f"API key has no access to organization {org}")

    # -- state helpers ---------------------------------------------------------------------

    def _page(self, page_id: str) -> StatusPage:
        if not is_uuid(page_id):
            raise Rejection(400, "BAD_REQUEST", f"Invalid UUID for path variable id: {page_id}")
        page = self.pages.get(page_id)
        if page is None:
            raise Rejection(404, "NOT_FOUND", "Status page not found")
        return page

    def _incident(self, page_id: str, incident_id: str) -> dict[str, Any]:
        self._page(page_id)
        if not is_uuid(incident_id):
            raise Rejection(
                400, "BAD_REQUEST", f"Invalid UUID for path variable incidentId: {incident_id}"
            )
        incident = self.incidents.get(incident_id)
        if incident is None or incident["statusPageId"] != page_id:
            raise Rejection(404, "NOT_FOUND", "Status page incident not found")
        return incident

    def _components(self, page: StatusPage, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors = [
            entry("UNKNOWN_COMPONENT", f"affectedComponents[{i}].componentId", "no such component")
            for i, item in enumerate(items)
            if item["componentId"] not in page.components
        ]
        if errors:
            raise invalid(errors)
        return [
            {
                "statusPageComponentId": item["componentId"],
                "componentStatus": item["status"],
                "componentName": page.components[item["componentId"]],
            }
            for item in items
        ]

    @staticmethod
    def _set_status(incident: dict[str, Any], status: str, now: str) -> None:
        if status == "RESOLVED" and incident["status"] != "RESOLVED":
            incident["resolvedAt"] = now
        elif status != "RESOLVED":
            incident["resolvedAt"] = None
        incident["status"] = status

    @staticmethod
    def _timeline(
        incident: dict[str, Any],
        status: str,
        text: str,
        *,
        notify: bool,
        now: str,
        created_by: str = "USER",
        user_id: int | None = None,
    ) -> None:
        incident["updates"].insert(
            0,  # newest first, as DevHelm's status pages show the timeline
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "body": text,
                "createdBy": created_by,
                "createdByUserId": user_id,
                "notifySubscribers": notify,
                "createdAt": now,
            },
        )

    def _new_incident(
        self,
        page: StatusPage,
        values: dict[str, Any],
        *,
        draft: bool,
        monitoring_incident_id: str | None,
        created_by: str,
        user_id: int | None,
    ) -> dict[str, Any]:
        now = iso(self.kit.now())
        status = values.get("status", "INVESTIGATING")
        incident: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "statusPageId": page.id,
            "title": values["title"],
            "status": status,
            "impact": values["impact"],
            "scheduled": values.get("scheduled", False),
            "scheduledFor": values.get("scheduledFor"),
            "scheduledUntil": values.get("scheduledUntil"),
            "autoResolve": values.get("autoResolve", False),
            "incidentId": monitoring_incident_id,
            "startedAt": now,
            "publishedAt": None if draft else now,
            "resolvedAt": now if status == "RESOLVED" else None,
            "createdByUserId": user_id,
            "postmortemBody": None,
            "postmortemUrl": None,
            "affectedComponents": self._components(page, values.get("affectedComponents", [])),
            "updates": [],
            "createdAt": now,
            "updatedAt": now,
        }
        self._timeline(
            incident,
            status,
            values["body"],
            notify=values.get("notifySubscribers", True),
            now=now,
            created_by=created_by,
            user_id=user_id,
        )
        self.incidents[incident["id"]] = incident
        return incident

    def _apply(self, incident: dict[str, Any], changes: dict[str, Any]) -> None:
        """Apply PUT-style changes (already validated, nulls dropped); move ``updatedAt``
        only if something changed."""
        before = copy.deepcopy(incident)
        now = iso(self.kit.now())
        page = self.pages[incident["statusPageId"]]
        if ("scheduledFor" in changes or "scheduledUntil" in changes) and not incident["scheduled"]:
            raise invalid(
                [entry("NOT_SCHEDULED", "scheduledFor", "only scheduled incidents have a window")]
            )
        for name in ("title", "impact", "autoResolve", "scheduledFor", "scheduledUntil"):
            if name in changes:
                incident[name] = changes[name]
        for name in ("postmortemBody", "postmortemUrl"):
            if name in changes:
                incident[name] = changes[name] or None  # "" clears
        if "affectedComponents" in changes:
            incident["affectedComponents"] = self._components(page, changes["affectedComponents"])
        if "published" in changes:
            if not changes["published"]:
                incident["publishedAt"] = None
            elif incident["publishedAt"] is None:
                incident["publishedAt"] = now
        if "status" in changes:
            self._set_status(incident, changes["status"], now)
        if incident != before:
            incident["updatedAt"] = now

    def _summary(self, incident: dict[str, Any]) -> dict[str, Any]:
        return {**incident, "updates": None}

    # -- vendor operations -----------------------------------------------------------------

    def list_incidents(self, page_id: str, query: Any) -> Outcome:
        self._page(page_id)
        page_no = int_param(query, "page", 0, minimum=0)
        size = int_param(query, "size", DEFAULT_PAGE_SIZE, minimum=1)
        if size > MAX_PAGE_SIZE:
            raise Rejection(400, "BAD_REQUEST", f"size must be at most {MAX_PAGE_SIZE}")
        wanted: set[str] = set()
        for value in query.getall("status", []):
            for status in value.split(","):
                if status not in STATUSES:
                    raise Rejection(400, "BAD_REQUEST", f"Invalid status: {status}")
                wanted.add(status)
        items = [
            i
            for i in self.incidents.values()
            if i["statusPageId"] == page_id and (not wanted or i["status"] in wanted)
        ]
        specs = sort_specs(query.getall("sort", []))  # checked even when not honoured
        if self.kit.behaviour["sort"] == "ignored":
            specs = [("createdAt", False)]  # storage order: oldest created first
        for prop, descending in reversed(specs):
            present = sorted(
                (i for i in items if i[prop] is not None), key=lambda i: i[prop], reverse=descending
            )
            items = present + [i for i in items if i[prop] is None]
        total = len(items)
        total_pages = math.ceil(total / size)
        chunk = items[page_no * size : (page_no + 1) * size]
        return 200, {
            "data": [self._summary(i) for i in chunk],
            "hasNext": page_no + 1 < total_pages,
            "hasPrev": page_no > 0,
            "totalElements": total,
            "totalPages": total_pages,
        }

    def create_incident(self, page_id: str, body: Any) -> Outcome:
        page = self._page(page_id)
        values = validated(body, CREATE_RULES)
        check_schedule(values)
        incident = self._new_incident(
            page,
            values,
            draft=False,
            monitoring_incident_id=values.get("monitoringIncidentId"),
            created_by="USER",
            user_id=None,  # an API key is not a user
        )
        return 201, {"data": incident}

    def get_incident(self, page_id: str, incident_id: str) -> Outcome:
        return 200, {"data": self._incident(page_id, incident_id)}

    def update_incident(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        self._apply(incident, validated(body, UPDATE_RULES))
        return 200, {"data": incident}

    def delete_incident(self, page_id: str, incident_id: str) -> Outcome:
        self._incident(page_id, incident_id)
        del self.incidents[incident_id]
        return 204, None

    def post_update(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        values = validated(body, TIMELINE_RULES)
        now = iso(self.kit.now())
        if "affectedComponents" in values:
            page = self.pages[page_id]
            incident["affectedComponents"] = self._components(page, values["affectedComponents"])
        self._timeline(
            incident,
            values["status"],
            values["body"],
            notify=values.get("notifySubscribers", True),
            now=now,
        )
        self._set_status(incident, values["status"], now)
        incident["updatedAt"] = now
        return 201, {"data": incident}

    def publish(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        values = validated(body, PUBLISH_RULES)
        if incident["publishedAt"] is not None:
            raise Rejection(409, "CONFLICT", "Incident is already published")
        if values.get("status") == "RESOLVED":
            raise invalid([entry("INACTIVE_STATUS", "status", "must be an active status")])
        now = iso(self.kit.now())
        for name in ("title", "impact"):
            if name in values:
                incident[name] = values[name]
        if "affectedComponents" in values:
            page = self.pages[page_id]
            incident["affectedComponents"] = self._components(page, values["affectedComponents"])
        if "status" in values:
            self._set_status(incident, values["status"], now)
        initial = incident["updates"][-1]
        if values.get("body"):
            initial["body"] = values["body"]
        initial["notifySubscribers"] = values.get("notifySubscribers", True)
        incident["publishedAt"] = now
        incident["updatedAt"] = now
        return 200, {"data": incident}

    def dismiss(self, page_id: str, incident_id: str) -> Outcome:
        incident = self._incident(page_id, incident_id)
        if incident["publishedAt"] is not None:
            raise Rejection(409, "CONFLICT", "Only draft incidents can be dismissed")
        del self.incidents[incident_id]
        return 204, None

    # -- control operations ----------------------------------------------------------------

    def create_page(self, body: Any) -> Outcome:
        values = validated(body, PAGE_RULES)
        return 201, self._add_page(values).as_json()

    def _add_page(self, values: dict[str, Any]) -> StatusPage:
        return self.add_status_page(
            values.get("id") or str(uuid.uuid4()),
            values["name"],
            values.get("incidentMode", "AUTOMATIC"),
            {
                item.get("id") or str(uuid.uuid4()): item["name"]
                for item in values.get("components", [])
            },
        )

    def add_status_page(
        self,
        page_id: str,
        name: str,
        incident_mode: str = "AUTOMATIC",
        components: dict[str, str] | None = None,
    ) -> StatusPage:
        """Make a status page (``components``: id -> name), as its owner would in the UI."""
        if page_id in self.pages:
            raise Rejection(409, "CONFLICT", f"Status page {page_id} already exists")
        page = StatusPage(page_id, name, incident_mode, dict(components or {}))
        self.pages[page_id] = page
        return page

    def list_pages(self) -> Outcome:
        return 200, {"data": [p.as_json() for p in self.pages.values()]}

    def seed(self, body: Any) -> Outcome:
        values = validated(body, SEED_RULES)
        page_id = values["statusPageId"]
        page = self.pages.get(page_id) or self._add_page(
            {"id": page_id, "name": f"Status page {page_id[:8]}"}
        )
        draft = values.get("draft", False)
        if draft and page.incident_mode == "MANUAL":
            raise Rejection(409, "CONFLICT", "A MANUAL status page makes no draft incidents")
        incident = self._new_incident(
            page,
            {**values, "body": values.get("body", values["title"])},
            draft=draft,
            monitoring_incident_id=values.get("incidentId"),
            created_by="SYSTEM" if draft else "USER",
            user_id=None if draft else UI_USER_ID,
        )
        if "incidentId" in values:
            self.send_platform_event("incident.created", {"id": values["incidentId"]})
        return 201, {"data": incident}

    def human_change(self, incident_id: str, body: Any) -> Outcome:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise Rejection(404, "NOT_FOUND", "Status page incident not found")
        values = validated(body, HUMAN_RULES)
        text = values.pop("body", None)
        self._apply(incident, values)
        if text is not None:
            now = iso(self.kit.now())
            self._timeline(
                incident, incident["status"], text, notify=True, now=now, user_id=UI_USER_ID
            )
            incident["updatedAt"] = now
        return 200, {"data": incident}

    def platform_event(self, body: Any) -> Outcome:
        values = validated(body, EVENT_RULES)
        event_id, delivery_id = self.send_platform_event(values["type"], values.get("data", {}))
        return 202, {"id": event_id, "deliveryId": delivery_id}

    def send_platform_event(self, event_type: str, data: dict[str, Any]) -> tuple[str, str]:
        """Queue one signed platform delivery; retries resend the same envelope."""
        event_id = "evt_" + uuid.uuid4().hex
        delivery_id = str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "type": event_type,
            "apiVersion": API_VERSION,
            "createdAt": iso(self.kit.now()),
            "data": data,
        }

        def sign(body: bytes, timestamp: int) -> dict[str, str]:
            headers = {"X-DevHelm-Event": event_type, "X-DevHelm-Delivery": delivery_id}
            secret = self.kit.webhook_secret  # read per attempt: it can be rotated meanwhile
            if secret:
                headers["X-DevHelm-Signature"] = signing.devhelm_sign(secret, timestamp, body)
            return headers

        self.kit.emit(event_type, msgspec.json.encode(envelope), sign, delivery_id)
        return event_id, delivery_id

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[Any]:
        base = "/api/v1/status-pages/{sp:str}/incidents"
        one = base + "/{iid:str}"
        run = self._run
        list_query = ("page", "size", "sort", "status")

        @get(base)
        async def list_incidents(
            request: Request[Any, Any, Any], sp: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.list_incidents, sp, query=list_query)

        @post(base)
        async def create_incident(
            request: Request[Any, Any, Any], sp: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.create_incident, sp, body="required")

        @get(one)
        async def get_incident(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.get_incident, sp, iid)

        @put(one)
        async def update_incident(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.update_incident, sp, iid, body="required")

        @delete(one, status_code=200)
        async def delete_incident(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.delete_incident, sp, iid)

        @post(one + "/updates")
        async def post_update(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.post_update, sp, iid, body="required")

        @post(one + "/publish")
        async def publish(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.publish, sp, iid, body="optional")

        @post(one + "/dismiss")
        async def dismiss(
            request: Request[Any, Any, Any], sp: FromPath[str], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.dismiss, sp, iid)

        return [
            list_incidents,
            create_incident,
            get_incident,
            update_incident,
            delete_incident,
            post_update,
            publish,
            dismiss,
        ]

    def control_routes(self) -> list[Any]:
        run = self._run

        @post("/_sim/status-pages")
        async def sim_create_page(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await run(request, self.create_page, body="required", vendor=False)

        @get("/_sim/status-pages")
        async def sim_list_pages(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await run(request, self.list_pages, vendor=False)

        @post("/_sim/seed")
        async def sim_seed(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await run(request, self.seed, body="required", vendor=False)

        @patch("/_sim/objects/{iid:str}")
        async def sim_human_change(
            request: Request[Any, Any, Any], iid: FromPath[str]
        ) -> Response[bytes]:
            return await run(request, self.human_change, iid, body="required", vendor=False)

        @post("/_sim/platform-events")
        async def sim_platform_event(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await run(request, self.platform_event, body="required", vendor=False)

        return [sim_create_page, sim_list_pages, sim_seed, sim_human_change, sim_platform_event]

    def objects(self) -> list[dict[str, Any]]:
        return list(self.incidents.values())


def with_request_id(app: ASGIApp) -> ASGIApp:
    """``app`` with an ``X-Request-Id`` on every vendor response, the same id error bodies
    carry as ``requestId``."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith("/_sim"):
            await app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)

    return asgi
