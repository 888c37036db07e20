"""DevHelm's JSON shapes for status-page incidents, errors and platform webhook events.

Response structs tolerate fields they do not name (DevHelm adds fields between releases)
and keep enum values as plain strings, as the SDK's own models do, so that a new status
reaches the value map as "unmapped" instead of failing the decode. Request structs use
``UNSET`` defaults with ``omit_defaults`` so that nothing is ever sent as ``null``: on
DevHelm's PUT, ``null`` and an omitted field both mean "keep".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

# -- responses -------------------------------------------------------------------------------


class IncidentUpdate(msgspec.Struct, rename="camel"):
    """One entry of an incident's timeline (``StatusPageIncidentUpdateDto``)."""

    id: str
    status: str
    body: str
    created_at: datetime
    notify_subscribers: bool = True
    created_by: str | None = None
    created_by_user_id: int | None = None


# ASSUMPTION: updatedAt moves on every change of the incident (the only change signal:
# DevHelm sends no webhook for status-page incidents). A change that left it alone would
# be seen only by a full walk (list_changed(None)).
class Incident(msgspec.Struct, rename="camel"):
    """A status-page incident (``StatusPageIncidentDto``); ``updates`` only where the
    response carries the timeline (a single-incident read does, list rows may not)."""

    id: str
    status_page_id: str
    title: str
    status: str
    impact: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    published_at: datetime | None = None
    resolved_at: datetime | None = None
    incident_id: str | None = None
    updates: list[IncidentUpdate] | None = None


class SingleIncident(msgspec.Struct):
    """``SingleValueResponseStatusPageIncidentDto``, with the incident kept as raw JSON
    (the adapter hands the raw object on for rule filters)."""

    data: dict[str, Any]


# ASSUMPTION: the list honours sort=updatedAt,desc (Spring-style sort; the spec names only
# a Pageable). list_changed checks the order of every row it reads and, if it is not
# newest first, reads every page instead of stopping at the first older row.
class IncidentPage(msgspec.Struct, rename="camel"):
    """``TableValueResultStatusPageIncidentDto``: one page of a 0-based page walk."""

    data: list[dict[str, Any]]
    has_next: bool
    has_prev: bool
    total_elements: int | None = None
    total_pages: int | None = None


class ErrorEntry(msgspec.Struct):
    """One per-field validation rejection."""

    code: str = ""
    message: str = ""
    field: str | None = None


# ASSUMPTION: error bodies are ErrorResponse, but the rate-limit page's example 429 has no
# code or requestId, so every field but message is optional here; a body that is not an
# ErrorResponse at all is reported by its raw text.
class ErrorResponse(msgspec.Struct, rename="camel"):
    """DevHelm's error envelope; the rate-limit 429 carries only status, message and
    timestamp, so everything but ``message`` is optional here."""

    message: str = ""
    status: int | None = None
    code: str | None = None
    timestamp: int | None = None
    request_id: str | None = None
    errors: list[ErrorEntry] | None = None


# ASSUMPTION: platform events are {"id", "type", "apiVersion", "createdAt", "data"} with
# "data" undocumented; Syncgate reads only id and type and polls. The signature is
# t=<unix>;v1=<hex> over t + ":" + body or t + "." + body (the docs have said both; the
# option signature_separator narrows it to one). A different scheme is refused (401);
# polling needs no webhook at all.
class PlatformEvent(msgspec.Struct, rename="camel"):
    """A platform webhook delivery; the shape of ``data`` is not documented."""

    id: str
    type: str
    api_version: str | None = None
    created_at: str | None = None
    data: Any = None


# -- requests --------------------------------------------------------------------------------


class CreateIncidentRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    """``POST .../incidents`` (``CreateStatusPageIncidentRequest``, SDK 1.12.0)."""

    title: str
    impact: str
    body: str
    status: str | UnsetType = UNSET
    notify_subscribers: bool | UnsetType = UNSET


class UpdateIncidentRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    """``PUT .../incidents/{id}`` (``UpdateStatusPageIncidentRequest``): only the fields
    being changed are present; the schema has no ``notifySubscribers``."""

    title: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    impact: str | UnsetType = UNSET

    def is_empty(self) -> bool:
        return self.title is UNSET and self.status is UNSET and self.impact is UNSET
