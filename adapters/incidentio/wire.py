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


class Ref(msgspec.Struct, frozen=True):
    """An embedded object read only for its id (team, category, priority option): PUT
    resends the id so that a PUT which clears what it is not sent keeps it."""

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
    #: Always present in the documented shapes; optional here so a body without it is
    #: still read (the object then counts as of unknown age: never "new").
    created_at: datetime | None = None
    description: str | None = None
    assignee: User | None = None
    assignee_team: Ref | None = None
    # ASSUMPTION: a FollowUpV3 without a category omits the key (the SDK's model makes it
    # optional); the V2 shape (webhooks, REST v2) never carries it. If v3 sent
    # "category": null instead, nothing breaks: the adapter would only re-read less often.
    category: Ref | None = None
    priority: Ref | None = None


class FollowUpEnvelope(msgspec.Struct, frozen=True):
    """``{"follow_up": {...}}``: create, show and update results. The object stays raw so it
    can be read both as a ``FollowUp`` and as the vendor's own dict."""

    follow_up: msgspec.Raw


# ASSUMPTION: v3 page_size may be 250 (the default is 25; the maximum is undocumented).
# If it were lower, every list would be a 422 on page_size naming the limit, and the
# adapter's MAX_PAGE_SIZE must come down.
class PaginationMeta(msgspec.Struct, frozen=True):
    """v3 list cursor: ``after`` is present only when more pages may exist."""

    page_size: int
    after: str | None = None


class FollowUpList(msgspec.Struct, frozen=True):
    """v3 list ``{"follow_ups", "pagination_meta"}``; v2 list ``{"follow_ups"}`` (no meta)."""

    follow_ups: list[msgspec.Raw]
    pagination_meta: PaginationMeta | None = None


# ASSUMPTION: incident_mode takes one value per request (the SDK sends one), and
# incident.io's default hides test, tutorial and stream incidents; listing one incident
# therefore asks each hidden mode in turn (four listings per incident).
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
    """FollowUpsUpdatePayloadV3 (and V2, the same fields): ``status`` and ``title`` are
    required on every PUT; ``assignee_id`` null unassigns.

    The adapter fills every field from the follow-up as last read, not only the changed
    ones: what PUT does to an omitted optional field is undocumented (open question 7),
    and under the reading where it clears it, a partial PUT would wipe the description,
    the labels (our marker among them), the category, the priority and the assignees."""

    status: str
    title: str
    description: str | UnsetType = UNSET
    assignee_id: str | UnsetType | None = UNSET
    assignee_team_id: str | UnsetType = UNSET
    follow_up_category_id: str | UnsetType = UNSET
    follow_up_priority_option_id: str | UnsetType = UNSET
    labels: list[str] | UnsetType = UNSET
