"""incident.io follow-up JSON shapes (v2 and v3 REST, v2 webhooks), as the adapter reads and
writes them.

Response structs ignore fields they do not name (incident.io adds fields without notice) and
keep enum values as plain strings (it adds enum values too); request structs omit what is
unset so that a PUT carries only what the adapter means to change.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import UNSET, UnsetType

# -- responses ------------------------------------------------------------------------------


class User(msgspec.Struct, frozen=True):
    """UserV2, as the assignee of a follow-up; only its id is mapped."""

    id: str


class FollowUp(msgspec.Struct, frozen=True):
    """FollowUpV3 (REST v3) and FollowUpV2 (REST v2 and webhooks; the same minus ``category``).

    Only what the adapter maps is named; ``raw`` keeps the rest for rules and audit.
    """

    id: str
    incident_id: str
    title: str
    status: str
    updated_at: datetime
    labels: list[str] = msgspec.field(default_factory=list)
    description: str | None = None
    assignee: User | None = None


class FollowUpEnvelope(msgspec.Struct, frozen=True):
    """``{"follow_up": {...}}``: create, show and update results. The object stays raw so it
    can be read both as a ``FollowUp`` and as the vendor's own dict."""

    follow_up: msgspec.Raw


class PaginationMeta(msgspec.Struct, frozen=True):
    """v3 list cursor: ``after`` is present only when more pages may exist."""

    page_size: int
    after: str | None = None


class FollowUpList(msgspec.Struct, frozen=True):
    """v3 list ``{"follow_ups", "pagination_meta"}``; v2 list ``{"follow_ups"}`` (no meta)."""

    follow_ups: list[msgspec.Raw]
    pagination_meta: PaginationMeta | None = None


class PrivateResource(msgspec.Struct, frozen=True):
    """WebhookPrivateResourceV2: all a private-incident webhook says about the follow-up."""

    id: str


# -- requests -------------------------------------------------------------------------------


class CreatePayload(msgspec.Struct, frozen=True, omit_defaults=True):
    """FollowUpsCreatePayloadV3 (same fields as V2). There is no ``status``: a follow-up
    always starts ``outstanding``."""

    incident_id: str
    title: str
    description: str | UnsetType = UNSET
    assignee_id: str | UnsetType = UNSET
    labels: list[str] | UnsetType = UNSET


class UpdatePayload(msgspec.Struct, frozen=True, omit_defaults=True):
    """FollowUpsUpdatePayloadV3: ``status`` and ``title`` are required on every PUT;
    ``assignee_id`` null unassigns, an omitted optional field is left as it is."""

    status: str
    title: str
    description: str | UnsetType = UNSET
    assignee_id: str | UnsetType | None = UNSET
