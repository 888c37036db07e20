"""InboxOps's state in the simulator: the workspace's statuses and priorities, its inboxes,
tickets and internal notes, and the operations on them (lookups, changes with their
webhooks and reminders, the list and read queries). An operation raises ``Invalid`` for a
request InboxOps refuses; ``adapters/inboxops/simulator.py`` serves the operations as
routes, and ``adapters/inboxops/simulator_rules.py`` holds the request bodies and rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import UnsetType

from adapters._simkit import SimKit
from adapters.inboxops.simulator_agents import Agents
from adapters.inboxops.simulator_rules import (
    CreateIn,
    CustomValue,
    Invalid,
    PatchIn,
    PriorityLevel,
    SeedIn,
    StatusType,
    _one_of,
    _parse_int,
    _parse_time,
    _parse_uuid,
    fixed_id,
)
from adapters.signing import standard_headers

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


#: The ticket fields a webhook carries under behaviour ``webhook_data: partial``.
PARTIAL_FIELDS = ("id", "ticket_number", "subject", "status", "priority", "updated_at")


def _webhook_data(ticket: dict[str, Any], reading: str) -> dict[str, Any]:
    """A webhook's ``data`` under behaviour ``webhook_data``: the whole ticket, only its
    id, or some of its fields (no assignee, custom fields or reminder)."""
    if reading == "ticket":
        return ticket
    if reading == "id":
        return {"id": ticket["id"]}
    return {name: ticket[name] for name in PARTIAL_FIELDS}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InboxOpsState:
    """The state half of ``InboxOpsSimulator``: its tickets, inboxes and notes (made by its
    ``setup``) and the operations on them."""

    kit: SimKit
    tickets: dict[str, TicketState]
    inboxes: dict[str, Inbox]
    notes: list[Note]
    agents: Agents
    custom_field_keys: set[str]
    _numbers: int

    # -- lookups ---------------------------------------------------------------------------

    def _assignee(self, assignee_id: uuid.UUID | UnsetType | None) -> str | None:
        """The ticket's assignee, checked against the agents under that reading."""
        value = str(assignee_id) if assignee_id else None
        self.agents.check(value, self.kit.behaviour["assignees"])
        return value

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
                # behaviour webhook_data: the whole ticket, or only its id
                "data": _webhook_data(ticket.to_json(), self.kit.behaviour["webhook_data"]),
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
            assignee_id=self._assignee(body.assignee_id),
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
            assignee_id=self._assignee(body.assignee_id),
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
        if not isinstance(body.assignee_id, UnsetType):
            self._assignee(body.assignee_id)

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
        if self.kit.behaviour["sort_updated_at"] == "ignored":
            sort = "created_at"  # the docs name only created_at: the rest falls back
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
