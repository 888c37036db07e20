"""The InboxOps simulator's request rules: the bodies it accepts (unknown fields refused)
and the parsing of query values, each refusal an ``Invalid`` with the vendor's code."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

_IDS = uuid.UUID("0b9c7a52-3f0e-4c41-9a57-5d0f3b1e2c84")


def fixed_id(name: str) -> str:
    """A stable, random-looking UUID for a built-in record (same on every run)."""
    return str(uuid.uuid5(_IDS, name))


class StatusType(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"


class PriorityLevel(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


SUPPORT_INBOX_ID = fixed_id("inbox:support")


BILLING_INBOX_ID = fixed_id("inbox:billing")


Text = Annotated[str, Meta(min_length=1)]


CustomValue = str | int | float | bool | None


AwareTime = Annotated[datetime, Meta(tz=True)]


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    body_html: str | UnsetType = UNSET
    body_text: str | UnsetType = UNSET


class CreateIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: Text
    inbox_id: uuid.UUID
    priority: PriorityLevel | UnsetType = UNSET
    priority_id: uuid.UUID | UnsetType = UNSET
    assignee_id: uuid.UUID | UnsetType | None = UNSET
    reporter_email: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$")] | UnsetType = UNSET
    initial_internal_note: NoteIn | UnsetType = UNSET
    custom_fields: dict[str, CustomValue] | UnsetType = UNSET


class PatchIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: Text | UnsetType = UNSET
    status: StatusType | UnsetType = UNSET
    status_id: uuid.UUID | UnsetType = UNSET
    priority: PriorityLevel | UnsetType = UNSET
    priority_id: uuid.UUID | UnsetType = UNSET
    assignee_id: uuid.UUID | UnsetType | None = UNSET
    inbox_id: uuid.UUID | UnsetType = UNSET
    contact_id: uuid.UUID | UnsetType | None = UNSET
    remind_at: AwareTime | UnsetType | None = UNSET
    remind_transition_status_id: uuid.UUID | UnsetType | None = UNSET
    custom_fields: dict[str, CustomValue] | UnsetType = UNSET


class SeedIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: Text
    inbox_id: uuid.UUID = uuid.UUID(SUPPORT_INBOX_ID)
    status: StatusType | UnsetType = UNSET
    status_id: uuid.UUID | UnsetType = UNSET
    priority: PriorityLevel | UnsetType = UNSET
    priority_id: uuid.UUID | UnsetType = UNSET
    assignee_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    custom_fields: dict[str, CustomValue] = msgspec.field(default_factory=dict)


class InboxIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    id: uuid.UUID | UnsetType = UNSET


class Invalid(Exception):
    """A request the vendor refuses; rendered as a Problem with ``code`` and ``status``."""

    def __init__(self, detail: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code


def _decode(raw: bytes, type_: type[Any]) -> Any:
    if not raw:
        raise Invalid("request body is required")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise Invalid(f"validation failed: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON body: {exc}") from None


def _parse_time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name}: not an ISO 8601 date-time: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _parse_uuid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"{name}: not a UUID: {value!r}") from None


def _parse_int(name: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f"{name}: not an integer: {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise Invalid(f"{name}: must be {bounds}, got {number}")
    return number


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid(f"{name}: must be one of {', '.join(allowed)}; got {value!r}")
    return value
