"""InboxOps public API (``/api/v1``) JSON shapes: the ticket, its envelopes, request bodies
and the webhook event Syncgate expects.

Response structs ignore unknown fields (InboxOps adds keys, e.g. with ``include=``); enum
fields stay plain strings so that a custom or new value reaches the mapper (``unmapped``)
instead of failing the decode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

# -- responses ------------------------------------------------------------------------------


# ASSUMPTION: timestamps (updated_at, created_at) are ISO 8601 with an offset or "Z", and
# updated_at moves on every change, reminders included. If a ticket lacks updated_at or
# writes it in another form, reads fail with a shape error at $.data.updated_at.
class Ticket(msgspec.Struct):
    """One ticket as GET/POST/PATCH return it (only the keys the adapter reads are typed)."""

    id: str
    subject: str
    status: str
    priority: str
    updated_at: datetime
    ticket_number: int | None = None
    inbox_id: str | None = None
    status_id: str | None = None
    priority_id: str | None = None
    assignee_id: str | None = None
    created_at: datetime | None = None


class TicketEnvelope(msgspec.Struct):
    """``{"data": ticket}``, kept raw so the adapter can keep the vendor JSON as-is."""

    data: dict[str, Any]


# ASSUMPTION: the list answers {"data": [...], "meta": {page, per_page, total,
# total_pages}} with 1-based pages and per_page up to 100; the stored reference page shows
# no envelope. If it differs, every list call fails with a shape error naming the field
# (e.g. $.meta.total_pages) and polling stops until this struct is corrected.
class PageMeta(msgspec.Struct):
    """List metadata (Syncgate's decision; the envelope is undocumented)."""

    page: int
    per_page: int
    total: int
    total_pages: int


class TicketPage(msgspec.Struct):
    """``GET /api/v1/tickets``: ``{"data": [ticket, ...], "meta": {...}}``."""

    data: list[dict[str, Any]]
    meta: PageMeta


class ProblemDetails(msgspec.Struct):
    """An error body: RFC 7807 (``code`` str, ``detail``) or the update page's
    ``{error, message, code:int, details?}``; every key optional so either shape
    decodes."""

    code: str | int | None = None
    title: str | None = None
    detail: str | None = None
    message: str | None = None
    error: str | None = None
    #: The update page's ``[{field, message}]``: which fields a 400 is about (read
    #: leniently: entries of another shape are skipped).
    details: list[Any] | None = None


# ASSUMPTION: a webhook body is {"id", "type": "ticket.created"|"ticket.updated",
# "created_at", "data": ticket} (a "data" with the ticket's "id" but not all of the ticket
# is read as a hint to fetch it), signed as Standard Webhooks (or, by option, a plain
# X-InboxOps-Signature HMAC); InboxOps documents neither. If it differs, deliveries are
# refused (401 signature, 422 unreadable) and the vendor retries them; polling
# (updated_after) still catches every change.
class WebhookEvent(msgspec.Struct):
    """``{"id": "evt_...", "type": "ticket.updated", "created_at": ..., "data": ticket}``."""

    id: str
    type: str
    data: dict[str, Any]
    created_at: datetime | None = None


# -- requests -------------------------------------------------------------------------------


class InternalNote(msgspec.Struct, omit_defaults=True):
    body_text: str


class CreateTicket(msgspec.Struct, omit_defaults=True):
    """``POST /api/v1/tickets`` body; there is no ``status`` on create."""

    subject: str
    inbox_id: str
    priority: str | UnsetType = UNSET
    assignee_id: str | UnsetType = UNSET
    initial_internal_note: InternalNote | UnsetType = UNSET
    custom_fields: dict[str, str] | UnsetType = UNSET


class UpdateTicket(msgspec.Struct, omit_defaults=True):
    """``PATCH /api/v1/tickets/{id}`` body; ``assignee_id: null`` unassigns."""

    subject: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    priority: str | UnsetType = UNSET
    assignee_id: str | UnsetType | None = UNSET
