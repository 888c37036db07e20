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
  simulator time.
- ``PATCH`` takes a UUID only (a ticket_number is 404); ``status_id``/``priority_id`` win
  over ``status``/``priority``; ``assignee_id``, ``contact_id``, ``remind_at`` and
  ``remind_transition_status_id`` take ``null`` to clear; ids must be UUIDs (the
  simulator has no user or contact directory, so any UUID is an agent or contact).
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
  every change (API, UI, reminder). Without a secret, deliveries go out unsigned.
  Failed deliveries are retried on the Standard Webhooks (Svix) schedule: InboxOps
  documents no retry policy (an assumption).
- Problem ``instance`` is ``urn:inboxops:request:<request id>``. Statuses outside the
  documented list take the nearest documented code (other 4xx ``bad_request``, other 5xx
  ``service_unavailable``). No rate-limit headers are documented, so none are sent; the
  vendor's default limit is 100 requests/minute per workspace (``SimOptions.rpm``, None =
  unlimited, decides here).
- Started with ``SimOptions.seed_config``, the workspace also has every inbox the config
  names as ``params.inbox_id`` of a ``create_in`` entry for inboxops (an id that is not a
  UUID is refused at start).
"""

from __future__ import annotations

import http
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get, patch, post
from msgspec import UnsetType

from adapters._simbase import Simulator, check_standard_secret, json_response
from adapters._simkit import Behaviour, SimKit, SimOptions
from adapters.inboxops.simulator_rules import (
    BILLING_INBOX_ID,
    SUPPORT_INBOX_ID,
    CreateIn,
    CustomValue,
    InboxIn,
    Invalid,
    PatchIn,
    PriorityLevel,
    SeedIn,
    StatusType,
    _decode,
    _one_of,
    _parse_int,
    _parse_time,
    _parse_uuid,
    fixed_id,
)
from adapters.signing import standard_headers

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

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 25
MAX_CUSTOM_FIELD_FILTERS = 10
INCLUDES = frozenset({"tags", "contact", "company", "inbox", "sla", "participants"})
LIST_PARAMS = frozenset(
    {
        "q",
        "query",
        "status",
        "inbox_id",
        "assignee_id",
        "priority",
        "tag_ids",
        "created_after",
        "created_before",
        "updated_after",
        "updated_before",
        "sort",
        "order",
        "page",
        "per_page",
    }
)
SORTS = ("created_at", "updated_at")


class Choice(msgspec.Struct, frozen=True):
    """A status or priority of the workspace; ``category`` is its base (semantic) value."""

    id: str
    name: str
    color: str
    category: str


STATUSES: tuple[Choice, ...] = (
    Choice(fixed_id("status:open"), "Open", "#3b82f6", "open"),
    Choice(fixed_id("status:in_progress"), "In progress", "#f59e0b", "in_progress"),
    Choice(fixed_id("status:waiting"), "Waiting", "#a855f7", "waiting"),
    Choice(fixed_id("status:resolved"), "Resolved", "#22c55e", "resolved"),
    Choice(fixed_id("status:closed"), "Closed", "#6b7280", "closed"),
    # Custom statuses, each in a base category.
    Choice(fixed_id("status:escalated"), "Escalated", "#ef4444", "in_progress"),
    Choice(fixed_id("status:pending-customer"), "Pending customer", "#8b5cf6", "waiting"),
    Choice(fixed_id("status:awaiting-deploy"), "Fixed, awaiting deploy", "#10b981", "resolved"),
)
PRIORITIES: tuple[Choice, ...] = (
    Choice(fixed_id("priority:low"), "Low", "#9ca3af", "low"),
    Choice(fixed_id("priority:normal"), "Normal", "#3b82f6", "normal"),
    Choice(fixed_id("priority:high"), "High", "#f97316", "high"),
    Choice(fixed_id("priority:urgent"), "Urgent", "#dc2626", "urgent"),
    Choice(fixed_id("priority:critical"), "Critical", "#7f1d1d", "urgent"),
)
#: The built-in choice of each category (what ``status``/``priority`` alone selects).
BUILTIN_STATUS = {c.category: c for c in STATUSES[:5]}
BUILTIN_PRIORITY = {c.category: c for c in PRIORITIES[:4]}


# -- request bodies (strict: unknown fields and wrong types are 400) -------------------------


class Inbox(msgspec.Struct):
    id: str
    name: str


class Note(msgspec.Struct):
    ticket_id: str
    body_text: str | None
    body_html: str | None


# -- state ----------------------------------------------------------------------------------


class TicketState(msgspec.Struct):
    id: str
    ticket_number: int
    subject: str
    inbox_id: str
    status: Choice
    priority: Choice
    assignee_id: str | None
    contact_id: str | None
    created_at: datetime
    updated_at: datetime
    remind_at: datetime | None = None
    remind_transition_status_id: str | None = None
    custom_fields: dict[str, CustomValue] = msgspec.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ticket in InboxOps's own JSON."""
        return {
            "id": self.id,
            "ticket_number": self.ticket_number,
            "subject": self.subject,
            "inbox_id": self.inbox_id,
            "status": self.status.category,
            "status_id": self.status.id,
            "status_name": self.status.name,
            "status_color": self.status.color,
            "priority": self.priority.category,
            "priority_id": self.priority.id,
            "priority_name": self.priority.name,
            "priority_color": self.priority.color,
            "assignee_id": self.assignee_id,
            "contact_id": self.contact_id,
            "remind_at": iso(self.remind_at) if self.remind_at else None,
            "remind_transition_status_id": self.remind_transition_status_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "custom_fields": dict(self.custom_fields),
        }


class StoredCreate(msgspec.Struct):
    """A successful create remembered under its ``Idempotency-Key``."""

    body: Any
    response: bytes
    expires_at: datetime


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


#: Readings of what the documents leave open (see the module docstring).
BEHAVIOURS = {
    "custom_fields": Behaviour(
        choices=("any", "defined"),
        doc="whether a create may name a custom field key the workspace has not defined",
    ),
}


class InboxOpsSimulator(Simulator):
    """InboxOps's public ticket API in memory; see the module docstring for the contract."""

    vendor = "inboxops"
    seed_param = "inbox_id"
    behaviours = BEHAVIOURS

    def prepare(self, options: SimOptions) -> SimOptions:
        if options.webhook_secret is not None:
            check_standard_secret(options.webhook_secret)
        return options

    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
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
        self.notes: list[Note] = []
        #: custom field keys defined in the workspace (behaviour ``custom_fields: defined``)
        self.custom_field_keys: set[str] = set()
        self.idempotency: dict[str, StoredCreate] = {}
        self._numbers = 1000
        self.kit.on_timer(self.fire_reminders)

    # -- lookups ---------------------------------------------------------------------------

    def _problem(self, error: Invalid) -> Response[bytes]:
        return self.kit.error(error.status, error.code, error.detail)

    def _custom_keys(self, values: Mapping[str, Any] | UnsetType | None) -> None:
        """Under ``custom_fields: defined``, refuse a key the workspace does not define."""
        if isinstance(values, UnsetType) or not values:
            return
        if self.kit.behaviour["custom_fields"] != "defined":
            return
        for key in values:
            if key not in self.custom_field_keys:
                raise Invalid(f"custom_fields.{key}: unknown custom field")

    def _inbox(self, inbox_id: uuid.UUID) -> str:
        key = str(inbox_id)
        if key not in self.inboxes:
            raise Invalid(f"inbox_id: unknown inbox {key}")
        return key

    @staticmethod
    def _choice(kind: str, choices: tuple[Choice, ...], choice_id: uuid.UUID) -> Choice:
        key = str(choice_id)
        for choice in choices:
            if choice.id == key:
                return choice
        raise Invalid(f"{kind}: unknown id {key}")

    def _find(self, ticket_id: str, *, by_number: bool) -> TicketState:
        try:
            key = str(uuid.UUID(ticket_id))
        except ValueError:
            key = ticket_id
        if key in self.tickets:
            return self.tickets[key]
        if by_number and ticket_id.isdigit():
            for ticket in self.tickets.values():
                if ticket.ticket_number == int(ticket_id):
                    return ticket
        raise Invalid(f"ticket {ticket_id} not found", status=404, code="not_found")

    # -- changes ---------------------------------------------------------------------------

    def _emit(self, event_type: str, ticket: TicketState) -> None:
        event_id = f"evt_{uuid.uuid4()}"
        body = msgspec.json.encode(
            {
                "id": event_id,
                "type": event_type,
                "created_at": iso(self.kit.now()),
                "data": ticket.to_json(),
            }
        )

        def sign(payload: bytes, ts: int) -> dict[str, str]:
            secret = self.kit.webhook_secret  # read per attempt: it can change at runtime
            return standard_headers(secret, event_id, ts, payload) if secret else {}

        self.kit.emit(event_type, body, sign, event_id)

    def _new_ticket(
        self,
        *,
        subject: str,
        inbox_id: str,
        status: Choice,
        priority: Choice,
        assignee_id: str | None,
        contact_id: str | None,
        custom_fields: dict[str, CustomValue],
    ) -> TicketState:
        now = self.kit.now()
        self._numbers += 1
        ticket = TicketState(
            id=str(uuid.uuid4()),
            ticket_number=self._numbers,
            subject=subject,
            inbox_id=inbox_id,
            status=status,
            priority=priority,
            assignee_id=assignee_id,
            contact_id=contact_id,
            created_at=now,
            updated_at=now,
            custom_fields={k: v for k, v in custom_fields.items() if v is not None},
        )
        self.tickets[ticket.id] = ticket
        self._emit("ticket.created", ticket)
        return ticket

    def create(self, body: CreateIn) -> TicketState:
        """``POST /api/v1/tickets``: always ``open``; priority_id wins over priority."""
        inbox_id = self._inbox(body.inbox_id)
        priority = BUILTIN_PRIORITY["normal"]
        if not isinstance(body.priority_id, UnsetType):
            priority = self._choice("priority_id", PRIORITIES, body.priority_id)
        elif not isinstance(body.priority, UnsetType):
            priority = BUILTIN_PRIORITY[body.priority]
        note = body.initial_internal_note
        if not isinstance(note, UnsetType) and not (note.body_text or note.body_html):
            raise Invalid("initial_internal_note: needs body_text or body_html")
        self._custom_keys(body.custom_fields)
        ticket = self._new_ticket(
            subject=body.subject,
            inbox_id=inbox_id,
            status=BUILTIN_STATUS["open"],
            priority=priority,
            assignee_id=None if not body.assignee_id else str(body.assignee_id),
            contact_id=None,
            custom_fields=body.custom_fields or {},
        )
        if not isinstance(note, UnsetType):
            self.notes.append(Note(ticket.id, note.body_text or None, note.body_html or None))
        return ticket

    def seed(self, body: SeedIn) -> TicketState:
        """A ticket made in the UI, where status can be chosen at once."""
        status = BUILTIN_STATUS["open"]
        if not isinstance(body.status_id, UnsetType):
            status = self._choice("status_id", STATUSES, body.status_id)
        elif not isinstance(body.status, UnsetType):
            status = BUILTIN_STATUS[body.status]
        priority = BUILTIN_PRIORITY["normal"]
        if not isinstance(body.priority_id, UnsetType):
            priority = self._choice("priority_id", PRIORITIES, body.priority_id)
        elif not isinstance(body.priority, UnsetType):
            priority = BUILTIN_PRIORITY[body.priority]
        return self._new_ticket(
            subject=body.subject,
            inbox_id=self._inbox(body.inbox_id),
            status=status,
            priority=priority,
            assignee_id=str(body.assignee_id) if body.assignee_id else None,
            contact_id=str(body.contact_id) if body.contact_id else None,
            custom_fields=body.custom_fields,
        )

    def update(self, ticket: TicketState, body: PatchIn) -> TicketState:
        """``PATCH``: validate everything first, then apply; a real change bumps
        ``updated_at`` and sends ``ticket.updated``."""
        status = ticket.status
        if not isinstance(body.status_id, UnsetType):
            status = self._choice("status_id", STATUSES, body.status_id)
        elif not isinstance(body.status, UnsetType):
            status = BUILTIN_STATUS[body.status]
        priority = ticket.priority
        if not isinstance(body.priority_id, UnsetType):
            priority = self._choice("priority_id", PRIORITIES, body.priority_id)
        elif not isinstance(body.priority, UnsetType):
            priority = BUILTIN_PRIORITY[body.priority]
        inbox_id = (
            ticket.inbox_id if isinstance(body.inbox_id, UnsetType) else self._inbox(body.inbox_id)
        )
        transition = body.remind_transition_status_id
        if transition:
            self._choice("remind_transition_status_id", STATUSES, transition)

        before = ticket.to_json()
        ticket.status, ticket.priority, ticket.inbox_id = status, priority, inbox_id
        if not isinstance(body.subject, UnsetType):
            ticket.subject = body.subject
        if not isinstance(body.assignee_id, UnsetType):
            ticket.assignee_id = str(body.assignee_id) if body.assignee_id else None
        if not isinstance(body.contact_id, UnsetType):
            ticket.contact_id = str(body.contact_id) if body.contact_id else None
        if not isinstance(body.custom_fields, UnsetType):
            for key, value in body.custom_fields.items():
                if value is None:
                    ticket.custom_fields.pop(key, None)
                else:
                    ticket.custom_fields[key] = value
        sets_status = not (
            isinstance(body.status_id, UnsetType) and isinstance(body.status, UnsetType)
        )
        if status.category != "waiting":
            ticket.remind_at = None
            ticket.remind_transition_status_id = None
        elif sets_status:
            if not isinstance(body.remind_at, UnsetType):
                ticket.remind_at = body.remind_at
            if not isinstance(transition, UnsetType):
                ticket.remind_transition_status_id = str(transition) if transition else None
        self._changed(ticket, before)
        return ticket

    def _changed(self, ticket: TicketState, before: dict[str, Any]) -> None:
        if ticket.to_json() != before:
            ticket.updated_at = self.kit.now()
            self._emit("ticket.updated", ticket)

    def fire_reminders(self) -> None:
        """Timer: every reminder that is due moves its ticket on, as InboxOps does."""
        now = self.kit.now()
        for ticket in self.tickets.values():
            if ticket.remind_at is None or ticket.remind_at > now:
                continue
            before = ticket.to_json()
            target = ticket.remind_transition_status_id
            ticket.status = (
                self._choice("remind_transition_status_id", STATUSES, uuid.UUID(target))
                if target
                else BUILTIN_STATUS["open"]
            )
            ticket.remind_at = None
            ticket.remind_transition_status_id = None
            self._changed(ticket, before)

    # -- queries ---------------------------------------------------------------------------

    def list_tickets(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /api/v1/tickets`` with the documented filters, sorted and paginated."""
        custom = {k: v for k, v in query.items() if k.startswith("custom_field_")}
        unknown = sorted(set(query) - LIST_PARAMS - set(custom))
        if unknown:
            raise Invalid(f"unknown query parameter(s): {', '.join(unknown)}")
        if len(custom) > MAX_CUSTOM_FIELD_FILTERS:
            raise Invalid(f"at most {MAX_CUSTOM_FIELD_FILTERS} custom_field_<key> filters")
        if "q" in query and "query" in query:
            raise Invalid("give one of q or query, not both")
        checks: list[Callable[[TicketState], bool]] = []
        text = (query.get("q") or query.get("query") or "").lower()
        if text:
            checks.append(lambda t: text in t.subject.lower())
        if "status" in query:
            status = _one_of("status", query["status"], tuple(StatusType))
            checks.append(lambda t: t.status.category == status)
        if "priority" in query:
            level = _one_of("priority", query["priority"], tuple(PriorityLevel))
            checks.append(lambda t: t.priority.category == level)
        if "inbox_id" in query:
            inbox = _parse_uuid("inbox_id", query["inbox_id"])
            checks.append(lambda t: t.inbox_id == inbox)
        if "assignee_id" in query:
            assignee = _parse_uuid("assignee_id", query["assignee_id"])
            checks.append(lambda t: t.assignee_id == assignee)
        if "tag_ids" in query:
            for tag in query["tag_ids"].split(","):
                _parse_uuid("tag_ids", tag)
            checks.append(lambda t: False)  # simulated tickets carry no tags
        for name in ("created_after", "updated_after", "created_before", "updated_before"):
            if name in query:
                checks.append(_time_check(name, _parse_time(name, query[name])))
        checks.extend(_custom_field_check(name, wanted) for name, wanted in custom.items())

        sort = _one_of("sort", query.get("sort", "created_at"), SORTS)
        order = _one_of("order", query.get("order", "desc"), ("asc", "desc"))
        page = _parse_int("page", query.get("page", "1"), 1)
        per_page = _parse_int(
            "per_page", query.get("per_page", str(DEFAULT_PER_PAGE)), 1, MAX_PER_PAGE
        )

        matched = [t for t in self.tickets.values() if all(check(t) for check in checks)]
        matched.sort(key=lambda t: (getattr(t, sort), t.ticket_number), reverse=order == "desc")
        start = (page - 1) * per_page
        return {
            "data": [t.to_json() for t in matched[start : start + per_page]],
            "meta": {
                "page": page,
                "per_page": per_page,
                "total": len(matched),
                "total_pages": -(-len(matched) // per_page),
            },
        }

    def ticket_json(self, ticket: TicketState, query: dict[str, str]) -> dict[str, Any]:
        """``GET /api/v1/tickets/{id}``: the ticket plus any ``include=`` keys."""
        unknown = sorted(set(query) - {"include"})
        if unknown:
            raise Invalid(f"unknown query parameter(s): {', '.join(unknown)}")
        data = ticket.to_json()
        for part in filter(None, query.get("include", "").split(",")):
            if part not in INCLUDES:
                raise Invalid(f"include: must be among {', '.join(sorted(INCLUDES))}; got {part!r}")
            inbox = self.inboxes.get(ticket.inbox_id)
            extra: dict[str, Any] = {
                "tags": [],
                "contact": None,
                "company": None,
                "inbox": msgspec.to_builtins(inbox) if inbox else None,
                "sla": None,
                "participants": [],
            }
            data[part] = extra[part]
        return data

    # -- routes ----------------------------------------------------------------------------

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
                body=msgspec.json.decode(raw), response=response, expires_at=now + IDEMPOTENCY_TTL
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


def _time_check(name: str, bound: datetime) -> Callable[[TicketState], bool]:
    """``created_after=...`` and the like, exclusive: ``<field>_at`` strictly past ``bound``."""
    field, _, side = name.partition("_")
    attr = field + "_at"
    if side == "after":
        return lambda t: bool(getattr(t, attr) > bound)
    return lambda t: bool(getattr(t, attr) < bound)


def _custom_field_check(name: str, wanted: str) -> Callable[[TicketState], bool]:
    """``custom_field_<key>=<value>``; ``__empty__`` matches a ticket with no value."""
    key = name.removeprefix("custom_field_")
    if wanted == "__empty__":
        return lambda t: t.custom_fields.get(key) in (None, "")
    return lambda t: _as_query_value(t.custom_fields.get(key)) == wanted


def _as_query_value(value: CustomValue) -> str | None:
    """A custom field value as it would be written in a query string."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
