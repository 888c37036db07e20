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
  set on entering RESOLVED and cleared on leaving it. Behaviour ``reopen: refused`` plays
  the other reading: the API answers such a PUT or timeline update 409 ``CONFLICT`` (a
  person in the UI still can).
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
    length      characters (default) | utf16: a ``maxLength`` (a title's 500) counts
                UTF-16 code units, as a JVM service's ``@Size`` does, so an emoji counts
                two (the API reference says "chars")
    reopen      allowed (default) | refused: a RESOLVED incident cannot be set active
                again through the API (409)
    signature_separator
                colon (default) | dot: platform deliveries are signed over ``t:body``
                (the current webhook page) or ``t.body`` (an older capture of it)

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
``X-DevHelm-Signature: t=<unix>;v1=<hex HMAC-SHA256 of t:body>`` (``t.body`` under
behaviour ``signature_separator: dot``; unsigned when no secret is set); retries resend
the same envelope ``id``. The common ``/_sim/`` routes of ``adapters/_simkit.py`` are
served too.

Started with ``SimOptions.seed_config``, the simulator has an AUTOMATIC status page (no
components) for every page id the config names: ``systems.devhelm.scopes`` and the
``scope`` of each ``create_in`` entry for devhelm. A page id that is not a UUID is refused
at start (DevHelm's page ids are UUIDs; the API would answer 400 for it).

The request rules (the documented enums, each route's body rules, the list's query
parameters) are in ``adapters/devhelm/simulator_rules.py``; the state and the operations
on it in ``adapters/devhelm/simulator_state.py``.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.enums import ScopeType
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters._simbase import Simulator, json_response
from adapters._simkit import Behaviour
from adapters.devhelm.simulator_rules import Rejection, entry, is_uuid
from adapters.devhelm.simulator_state import DevHelmState, Outcome, StatusPage, iso

__all__ = ["BEHAVIOURS", "DevHelmSimulator", "iso"]

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
    "length": Behaviour(
        choices=("characters", "utf16"),
        doc="what a maxLength counts (utf16: UTF-16 code units, as a JVM service's @Size)",
    ),
    "reopen": Behaviour(
        choices=("allowed", "refused"),
        doc="whether a RESOLVED incident may go back to an active status (open question 4)",
    ),
    "signature_separator": Behaviour(
        choices=("colon", "dot"),
        doc="what joins t and the body in X-DevHelm-Signature (the docs say both)",
    ),
}

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


class DevHelmSimulator(DevHelmState, Simulator):
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
