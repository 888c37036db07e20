"""hookstream's JSON shapes as the adapter reads and writes them (``/v1/issues``).

Response structs ignore fields they do not name, so fields hookstream adds later pass
through; the adapter keeps the full object as ``raw`` anyway. The simulator does not
import this module: it is written from the vendor contract on its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType


# ASSUMPTION: times are ISO 8601 strings with an offset or "Z" (the reference shows only
# "<string>"). Another form fails reads with a shape error naming the field.
# ASSUMPTION: resolved_at is stamped when a resolve becomes visible; whether an
# auto-resolve also moves updated_at is undocumented, so the adapter takes the later of
# the two as the change time. A resolved_at stamped earlier than the resolve shows is
# caught only within the poller's overlap window.
class Issue(msgspec.Struct, kw_only=True):
    """One issue, in either documented shape.

    The API reference (PATCH response) carries ``title``, ``last_error`` and
    ``updated_at``; the guide's example carries ``error_type`` and ``message`` instead and
    no ``updated_at``. Only ``id`` and ``status`` are common to both, so only they are
    required.
    """

    id: str
    status: str
    title: str | None = None
    destination_id: str | None = None
    destination_name: str | None = None
    error_type: str | None = None
    message: str | None = None
    last_error: str | None = None
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Pagination(msgspec.Struct, kw_only=True):
    """The offset pagination block of ``GET /v1/issues``."""

    total: int
    limit: int
    offset: int
    has_more: bool


# ASSUMPTION: the offset-paginated list keeps a stable order (the simulator: oldest
# first), so an issue opened mid-walk lands on a later page. If the order shifted between
# pages, an issue could be skipped in one walk; the adapter lists each id once per walk
# and the next poll, reading everything again, sees it.
class IssuePage(msgspec.Struct, kw_only=True):
    """One page of ``GET /v1/issues``; issues stay plain dicts so each is kept as ``raw``."""

    issues: list[dict[str, object]]
    pagination: Pagination


class IssueUpdate(msgspec.Struct, kw_only=True):
    """The body of ``PATCH /v1/issues/{id}``; an unset field is left out, ``None`` for
    ``snoozed_until`` is sent as ``null`` (unsnooze)."""

    status: str | UnsetType = UNSET
    snoozed_until: datetime | UnsetType | None = UNSET


class NotifiedIssue(msgspec.Struct, kw_only=True):
    """The part of an ``issue_opened`` notification's issue that Syncgate reads."""

    id: Annotated[str, msgspec.Meta(min_length=1)]


# ASSUMPTION: an issue_opened notification carries the issue as {"issue": {"id": ...}}
# (the payload is undocumented) and is signed like a destination delivery (sha256=<hex>
# over the body, or over {ts}.{body} with X-hookstream-Timestamp). Without a readable id
# the notification asks for a poll; a different signature scheme is refused (401) and
# polling alone still finds every issue.
class Notification(msgspec.Struct, kw_only=True):
    """An alert-rule notification. The real payload is undocumented; Syncgate reads only
    the event name and the issue id, and polls when there is no id."""

    event: str | None = None
    rule_type: str | None = None
    issue: NotifiedIssue | None = None
