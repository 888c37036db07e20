"""A strict in-memory InboxOps (helpdesk tickets), written from InboxOps's public API docs.

Vendor routes (``Authorization: Bearer <api key>``; errors are RFC 7807 Problem Details,
``application/problem+json``, validation failures are 400 ``bad_request``):

    POST   /api/v1/tickets        create; optional ``Idempotency-Key``; 201 {"data": ticket}
    GET    /api/v1/tickets        list: {"data": [...], "meta": {page, per_page, total,
                                  total_pages}}; filters below
    GET    /api/v1/tickets/{id}   by UUID or ticket_number; ``include=`` adds keys
    PATCH  /api/v1/tickets/{id}   by UUID; 200 {"data": ticket}

Control routes (no auth), besides SimKit's common ``/_sim/`` surface:

    POST   /_sim/seed             a ticket made in the InboxOps UI, from a body in InboxOps
                                  field names (``subject`` required; ``inbox_id`` defaults to
                                  the Support inbox; ``status``/``status_id``,
                                  ``priority``/``priority_id``, ``assignee_id``,
                                  ``contact_id``, ``custom_fields``); 201 {"data": ticket};
                                  sends ``ticket.created``
    PATCH  /_sim/objects/{id}     a person's edit in the UI (the API's PATCH body and rules);
                                  200 {"data": ticket}; sends ``ticket.updated`` on a change
    GET    /_sim/objects          every ticket: {"objects": [...]} by ticket_number
    GET    /_sim/notes            internal notes made at create: {"data": [{ticket_id,
                                  body_text, body_html}]}
    POST   /_sim/inboxes          {"name": ..., "id"?: uuid}: add an inbox; 201 {"data": inbox}
    GET    /_sim/inboxes          {"data": [inbox, ...]}
    GET    /_sim/statuses         {"data": [{id, name, color, category}, ...]} (built-in and
                                  custom; ``category`` is the base status)
    GET    /_sim/priorities       the same for priorities
    POST   /_sim/custom-fields    {"key": ...}: define a custom field key (behaviour
                                  ``custom_fields: defined``); 201

Choices where vendors.md is silent (each is a documented decision for Syncgate):

- List envelope ``{"data", "meta": {page, per_page, total, total_pages}}``; ``page`` is
  1-based, ``per_page`` 1..100 (default 25); a page past the end is an empty ``data``.
- ``sort`` takes ``created_at`` (documented) and ``updated_at`` (assumed), default
  ``created_at``; ``order`` asc|desc, default desc; ties break on ticket_number.
  Behaviour ``sort_updated_at: ignored`` accepts ``sort=updated_at`` but sorts by
  ``created_at``. The order is worked out afresh for every page, so a ticket that
  changes while a client pages through ``sort=updated_at`` moves to the end and the
  tickets behind it move up a place, as in any offset-paged list.
- ``updated_after``/``created_after`` and ``..._before`` are exclusive bounds; ISO 8601,
  a value without offset is UTC. ``q``/``query`` is a case-insensitive subject substring
  (give one of the two). ``tag_ids`` is accepted but simulated tickets carry no tags, so it
  matches nothing. ``custom_field_<key>``: up to 10, ``__empty__`` matches no value.
  Unknown query parameters are 400.
- Timestamps are rendered with microseconds (``2024-12-25T10:00:00.123456Z``).
- Create requires ``subject`` and ``inbox_id`` (a known inbox); ``initial_internal_note``
  needs ``body_text`` or ``body_html``. New tickets are ``open``/``normal``.
- ``Idempotency-Key`` (1..255 chars): the same key with an equal JSON body replays the
  stored 201 response (the ticket as it was created, not as it is now); a different body
  is 409 ``idempotency_conflict``. Only successful creates are stored; keys last 24 h of
  simulator time (behaviour ``idempotency_ttl: 1h``: an hour; the docs are cut off before
  the period).
- ``PATCH`` takes a UUID only (a ticket_number is 404); ``status_id``/``priority_id`` win
  over ``status``/``priority``; ``assignee_id``, ``contact_id``, ``remind_at`` and
  ``remind_transition_status_id`` take ``null`` to clear; ids must be UUIDs. Any UUID
  is a contact; whether an ``assignee_id`` must be an agent is behaviour ``assignees``
  (``adapters/inboxops/simulator_agents.py``, with ``/_sim/agents``).
  ``custom_fields`` is merged key by key (``null`` drops a key). A PATCH that changes
  nothing leaves ``updated_at`` alone and sends no webhook.
- Custom field keys: the docs list ``custom_fields`` on create and update but not whether
  a key must be defined in the workspace first. Behaviour ``custom_fields: any`` (the
  default) takes any key; ``custom_fields: defined`` refuses a create naming a key that is
  not defined, with 400 ``bad_request`` ``custom_fields.<key>: unknown custom field``
  (``POST /_sim/custom-fields {"key"}`` defines one; a seeded ticket may use any).
- ``remind_at``/``remind_transition_status_id`` are applied only when the same PATCH sets
  a ``waiting``-category status, and cleared whenever the ticket leaves that category.
  When ``remind_at`` passes (``POST /_sim/clock``), the ticket moves to
  ``remind_transition_status_id``, or to ``open`` without one: a change like any other.
- A read-only key (``SimOptions.read_only_api_key``) reads, and gets 403
  ``insufficient_scope`` on every POST, PATCH and DELETE, as the docs say of such keys.
- Webhooks (format undocumented): Standard Webhooks signed with the ``whsec_`` secret,
  ``webhook-id`` equal to the body's ``id``; body ``{"id": "evt_<uuid>", "type":
  "ticket.created"|"ticket.updated", "created_at", "data": ticket}`` on every create and
  every change (API, UI, reminder); behaviour ``webhook_data: id`` sends only
  ``"data": {"id"}`` (the payload is undocumented: a receiver must fetch the ticket), and
  ``webhook_data: partial`` only ``id``, ``ticket_number``, ``subject``, ``status``,
  ``priority`` and ``updated_at`` (no assignee: absent is not unassigned).
  Without a secret, deliveries go out unsigned. Failed deliveries are retried on the
  Standard Webhooks (Svix) schedule: InboxOps documents no retry policy (an assumption).
- Errors: the guide documents RFC 7807 Problems; the update endpoint's page shows
  ``{"error", "message", "code": <HTTP status>, "details"?}`` and a 429 with
  ``retryAfter``. Behaviour ``errors: problem`` (the default) answers Problems;
  ``errors: legacy`` answers the page's shape, with no problem code (a 409 does not say
  whether it is an idempotency conflict), a field named only in ``details[{field,
  message}]``, and ``retryAfter`` (seconds) on the limiter's 429.
- Problem ``instance`` is ``urn:inboxops:request:<request id>``. Statuses outside the
  documented list take the nearest documented code (other 4xx ``bad_request``, other 5xx
  ``service_unavailable``). No rate-limit headers are documented, so none are sent; the
  vendor's default limit is 100 requests/minute per workspace (``SimOptions.rpm``, None =
  unlimited, decides here).
- Started with ``SimOptions.seed_config``, the workspace also has every inbox the config
  names as ``params.inbox_id`` of a ``create_in`` entry for inboxops (an id that is not a
  UUID is refused at start).

The request bodies and their rules are in ``adapters/inboxops/simulator_rules.py``; the
workspace's state and the operations on it in ``adapters/inboxops/simulator_state.py``.
"""

from __future__ import annotations

import http
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get, patch, post
from msgspec import UnsetType

from adapters._simbase import Simulator, check_standard_secret, json_response
from adapters._simkit import Behaviour, SimKit, SimOptions
from adapters.inboxops.simulator_agents import ASSIGNEES, Agents
from adapters.inboxops.simulator_rules import (
    BILLING_INBOX_ID,
    SUPPORT_INBOX_ID,
    CreateIn,
    InboxIn,
    Invalid,
    PatchIn,
    SeedIn,
    _decode,
)
from adapters.inboxops.simulator_state import (
    PRIORITIES,
    STATUSES,
    Inbox,
    InboxOpsState,
    Note,
    StoredCreate,
    TicketState,
    iso,
)

__all__ = ["BILLING_INBOX_ID", "SUPPORT_INBOX_ID", "InboxOpsSimulator", "SeedIn", "iso"]

PROBLEM_BASE = "https://docs.inboxops.app/api/problems/"
PROBLEM_CODES: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "insufficient_scope": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "idempotency_conflict": 409,
    "rate_limit_exceeded": 429,
    "internal_error": 500,
    "service_unavailable": 503,
}
#: The code a status gets when a caller (SimKit, litestar) names no InboxOps code.
CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}

#: How long an Idempotency-Key is kept, per behaviour ``idempotency_ttl`` (the docs' page
#: is cut off before the period).
IDEMPOTENCY_TTLS = {"24h": timedelta(hours=24), "1h": timedelta(hours=1)}


def render_problem(status: int, code: str, message: str) -> tuple[bytes, str]:
    """An RFC 7807 Problem in InboxOps's shape; SimKit's generic codes become InboxOps's."""
    if code not in PROBLEM_CODES:
        code = CODE_BY_STATUS.get(status) or (
            "bad_request" if status < 500 else "service_unavailable"
        )
    try:
        title = http.HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": message,
        "code": code,
        "instance": "urn:inboxops:request:" + SimKit.request_id(),
    }
    return msgspec.json.encode(body), "application/problem+json"


#: A Problem detail that names the field it is about: ``<field>: <message>``.
_FIELD_DETAIL = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.DOTALL)
#: A body that did not decode: ``validation failed: <message> - at `$.<field>```.
_DECODE_DETAIL = re.compile(r"^validation failed: (.+) - at `\$\.(.+)`$", re.DOTALL)
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?)")
#: The legacy shape's message for a body that names its fields in ``details``.
LEGACY_INVALID = "Invalid request parameters"


def render_legacy(status: int, code: str, message: str) -> tuple[bytes, str]:
    """The update-endpoint page's error shape (behaviour ``errors: legacy``):
    ``{"error": <HTTP phrase>, "message", "code": <HTTP status>, "details"?,
    "retryAfter"?}``. It carries no problem code: an idempotency conflict is a 409 like
    any other. A message naming a field goes into ``details[{field, message}]`` under a
    generic message; a 429 from the limiter carries ``retryAfter`` (seconds)."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {"error": phrase, "message": message, "code": status}
    named = _FIELD_DETAIL.match(message)
    decoded = _DECODE_DETAIL.match(message)
    if named is not None and decoded is None:
        body["message"] = LEGACY_INVALID
        body["details"] = [{"field": named.group(1), "message": named.group(2)}]
    elif decoded is not None:
        body["message"] = LEGACY_INVALID
        body["details"] = [{"field": decoded.group(2), "message": decoded.group(1)}]
    if status == 429:
        found = _RETRY_IN_MESSAGE.search(message)
        if found is not None:
            body["retryAfter"] = float(found.group(1))
    return msgspec.json.encode(body), "application/json"


#: Readings of what the documents leave open (see the module docstring).
BEHAVIOURS = {
    "errors": Behaviour(
        choices=("problem", "legacy"),
        doc="RFC 7807 Problem Details (the guide), or the update page's "
        "{error, message, code: <status>, details?, retryAfter?}",
    ),
    "assignees": ASSIGNEES,
    "idempotency_ttl": Behaviour(
        choices=("24h", "1h"),
        doc="how long an Idempotency-Key is kept (the docs are cut off before the period)",
    ),
    "webhook_data": Behaviour(
        choices=("ticket", "id", "partial"),
        doc="whether a webhook's data is the whole ticket, only its id, or some of its "
        "fields (undocumented)",
    ),
    "sort_updated_at": Behaviour(
        choices=("honoured", "ignored"),
        doc="whether the list sorts by updated_at when asked (the docs name only "
        "created_at); ignored: it sorts by created_at, in the order asked",
    ),
    "custom_fields": Behaviour(
        choices=("any", "defined"),
        doc="whether a create may name a custom field key the workspace has not defined",
    ),
}


class InboxOpsSimulator(InboxOpsState, Simulator):
    """InboxOps's public ticket API in memory; see the module docstring for the contract."""

    vendor = "inboxops"
    seed_param = "inbox_id"
    behaviours = BEHAVIOURS

    def prepare(self, options: SimOptions) -> SimOptions:
        if options.webhook_secret is not None:
            check_standard_secret(options.webhook_secret)
        return options

    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        if self.kit.behaviour["errors"] == "legacy":
            return render_legacy(status, code, message)
        return render_problem(status, code, message)

    def setup(self, seeded: list[str]) -> None:
        self.tickets: dict[str, TicketState] = {}
        self.inboxes: dict[str, Inbox] = {
            SUPPORT_INBOX_ID: Inbox(SUPPORT_INBOX_ID, "Support"),
            BILLING_INBOX_ID: Inbox(BILLING_INBOX_ID, "Billing"),
        }
        for inbox_id in seeded:
            try:
                key = str(uuid.UUID(inbox_id))
            except ValueError:
                raise ValueError(
                    f"seed config: InboxOps inbox id {inbox_id!r} is not a UUID"
                ) from None
            self.inboxes.setdefault(key, Inbox(key, f"Inbox {key[:8]}"))
        self.agents = Agents()
        self.notes: list[Note] = []
        #: custom field keys defined in the workspace (behaviour ``custom_fields: defined``)
        self.custom_field_keys: set[str] = set()
        self.idempotency: dict[str, StoredCreate] = {}
        self._numbers = 1000
        self.kit.on_timer(self.fire_reminders)

    # -- routes ----------------------------------------------------------------------------

    def _problem(self, error: Invalid) -> Response[bytes]:
        return self.kit.error(error.status, error.code, error.detail)

    def _create_response(self, raw: bytes, key: str | None) -> Response[bytes]:
        body = _decode(raw, CreateIn)
        now = self.kit.now()
        if key is not None:
            if not 1 <= len(key) <= 255:
                raise Invalid("Idempotency-Key must be 1 to 255 characters")
            stored = self.idempotency.get(key)
            if stored is not None and stored.expires_at <= now:
                del self.idempotency[key]
                stored = None
            if stored is not None:
                if stored.body != msgspec.json.decode(raw):
                    raise Invalid(
                        "Idempotency-Key was already used with a different request body",
                        status=409,
                        code="idempotency_conflict",
                    )
                return Response(stored.response, status_code=201, media_type="application/json")
        ticket = self.create(body)
        response = msgspec.json.encode({"data": ticket.to_json()})
        if key is not None:
            self.idempotency[key] = StoredCreate(
                body=msgspec.json.decode(raw),
                response=response,
                expires_at=now + IDEMPOTENCY_TTLS[self.kit.behaviour["idempotency_ttl"]],
            )
        return Response(response, status_code=201, media_type="application/json")

    def _guarded(self, run: Callable[[], Response[bytes]]) -> Response[bytes]:
        try:
            return run()
        except Invalid as error:
            return self._problem(error)

    def routes(self) -> list[Any]:
        sim = self
        guarded = self._guarded

        @post("/api/v1/tickets")
        async def create_ticket(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            key = request.headers.get("idempotency-key")
            return guarded(lambda: sim._create_response(raw, key))

        @get("/api/v1/tickets", sync_to_thread=False)
        def list_tickets(request: Request[Any, Any, Any]) -> Response[bytes]:
            query = dict(request.query_params)
            return guarded(lambda: json_response(sim.list_tickets(query)))

        @get("/api/v1/tickets/{ticket_id:str}", sync_to_thread=False)
        def get_ticket(request: Request[Any, Any, Any]) -> Response[bytes]:
            ticket_id = request.path_params["ticket_id"]
            query = dict(request.query_params)
            return guarded(
                lambda: json_response(
                    {"data": sim.ticket_json(sim._find(ticket_id, by_number=True), query)}
                )
            )

        @patch("/api/v1/tickets/{ticket_id:str}")
        async def patch_ticket(request: Request[Any, Any, Any]) -> Response[bytes]:
            ticket_id = request.path_params["ticket_id"]
            raw = await request.body()
            return guarded(lambda: sim._patch_response(ticket_id, raw))

        return [create_ticket, list_tickets, get_ticket, patch_ticket]

    def control_routes(self) -> list[Any]:
        sim = self
        guarded = self._guarded

        @post("/_sim/seed")
        async def seed(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            return guarded(
                lambda: json_response({"data": sim.seed(_decode(raw, SeedIn)).to_json()}, 201)
            )

        @patch("/_sim/objects/{ticket_id:str}")
        async def human_edit(request: Request[Any, Any, Any]) -> Response[bytes]:
            ticket_id = request.path_params["ticket_id"]
            raw = await request.body()
            return guarded(lambda: sim._patch_response(ticket_id, raw))

        @get("/_sim/notes", sync_to_thread=False)
        def all_notes() -> Response[bytes]:
            return json_response({"data": msgspec.to_builtins(sim.notes)})

        @post("/_sim/inboxes")
        async def add_inbox(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            return guarded(
                lambda: json_response({"data": msgspec.to_builtins(sim._add_inbox(raw))}, 201)
            )

        @post("/_sim/custom-fields")
        async def define_custom_field(request: Request[Any, Any, Any]) -> Response[bytes]:
            key = msgspec.json.decode(await request.body()).get("key")
            if not isinstance(key, str) or not key:
                return sim._problem(Invalid("key: a custom field key is required"))
            sim.custom_field_keys.add(key)
            return json_response({"data": {"key": key}}, 201)

        @get("/_sim/inboxes", sync_to_thread=False)
        def list_inboxes() -> Response[bytes]:
            return json_response({"data": msgspec.to_builtins(list(sim.inboxes.values()))})

        @get("/_sim/statuses", sync_to_thread=False)
        def list_statuses() -> Response[bytes]:
            return json_response({"data": msgspec.to_builtins(STATUSES)})

        @get("/_sim/priorities", sync_to_thread=False)
        def list_priorities() -> Response[bytes]:
            return json_response({"data": msgspec.to_builtins(PRIORITIES)})

        return [
            *self.agents.control_routes(guarded),
            seed,
            human_edit,
            all_notes,
            add_inbox,
            define_custom_field,
            list_inboxes,
            list_statuses,
            list_priorities,
        ]

    def objects(self) -> list[dict[str, Any]]:
        return [t.to_json() for t in sorted(self.tickets.values(), key=lambda t: t.ticket_number)]

    def _patch_response(self, ticket_id: str, raw: bytes) -> Response[bytes]:
        ticket = self._find(ticket_id, by_number=False)
        return json_response({"data": self.update(ticket, _decode(raw, PatchIn)).to_json()})

    def _add_inbox(self, raw: bytes) -> Inbox:
        body = _decode(raw, InboxIn)
        inbox_id = str(uuid.uuid4()) if isinstance(body.id, UnsetType) else str(body.id)
        self.inboxes[inbox_id] = Inbox(inbox_id, body.name)
        return self.inboxes[inbox_id]
