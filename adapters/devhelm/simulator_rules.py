"""DevHelm's request rules, as the simulator checks them: the documented enums, the
body rules of each route (``Rule`` per field; every problem found is listed in one 400
``VALIDATION_FAILED`` with ``errors[{code, field, message}]``), create's scheduling rules,
and the list query's ``page``/``size``/``sort`` parameters (400 ``BAD_REQUEST``).

Written from the DevHelm section of the vendor notes (OpenAPI / SDK 1.12.0 schemas, and
the June spec's scheduling fields on create); ``simulator.py`` serves them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATUSES = ("INVESTIGATING", "IDENTIFIED", "MONITORING", "RESOLVED")
IMPACTS = ("NONE", "MINOR", "MAJOR", "CRITICAL")
COMPONENT_STATUSES = (
    "OPERATIONAL",
    "DEGRADED_PERFORMANCE",
    "PARTIAL_OUTAGE",
    "MAJOR_OUTAGE",
    "UNDER_MAINTENANCE",
)
INCIDENT_MODES = ("MANUAL", "REVIEW", "AUTOMATIC")
PLATFORM_EVENTS = (
    "monitor.created",
    "monitor.updated",
    "monitor.deleted",
    "incident.created",
    "incident.resolved",
    "incident.reopened",
    "service.status_changed",
    "service.component_changed",
    "service.incident_created",
    "service.incident_updated",
    "service.incident_resolved",
)
SORTABLE = (
    "createdAt",
    "updatedAt",
    "startedAt",
    "publishedAt",
    "resolvedAt",
    "title",
    "status",
    "impact",
)


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Rejection(Exception):
    """A request DevHelm refuses: rendered as its ``ErrorResponse``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors


def entry(code: str, field_name: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field_name, "message": message}


def invalid(errors: list[dict[str, Any]]) -> Rejection:
    return Rejection(400, "VALIDATION_FAILED", "Validation failed", errors)


# -- request body validation ------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One body field: its JSON type and constraints. ``None`` always means "absent"."""

    kind: str  # string | enum | bool | uuid | datetime | object | components | page_components
    required: bool = False
    choices: Sequence[str] = ()
    max_length: int | None = None
    not_blank: bool = False
    pattern: re.Pattern[str] | None = None

    def check(self, name: str, value: Any, *, utf16: bool = False) -> list[dict[str, Any]]:
        """``utf16``: a ``max_length`` counts UTF-16 code units (behaviour ``length``)."""
        if self.kind in ("string", "enum", "uuid", "datetime") and not isinstance(value, str):
            return [entry("INVALID_TYPE", name, "must be a string")]
        if self.kind == "string":
            return self._check_string(name, value, utf16=utf16)
        if self.kind == "enum" and value not in self.choices:
            return [entry("INVALID_ENUM", name, f"must be one of {', '.join(self.choices)}")]
        if self.kind == "bool" and not isinstance(value, bool):
            return [entry("INVALID_TYPE", name, "must be a boolean")]
        if self.kind == "uuid" and not is_uuid(value):
            return [entry("INVALID_FORMAT", name, "must be a UUID")]
        if self.kind == "datetime":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                return [entry("INVALID_FORMAT", name, "must be an ISO-8601 date-time with offset")]
        if self.kind == "object" and not isinstance(value, dict):
            return [entry("INVALID_TYPE", name, "must be an object")]
        if self.kind == "components":
            return check_list(name, value, AFFECTED_COMPONENT_RULES, utf16=utf16)
        if self.kind == "page_components":
            return check_list(name, value, PAGE_COMPONENT_RULES, utf16=utf16)
        return []

    def _check_string(self, name: str, value: str, *, utf16: bool) -> list[dict[str, Any]]:
        length = len(value.encode("utf-16-le")) // 2 if utf16 else len(value)
        if self.max_length is not None and length > self.max_length:
            return [entry("TOO_LONG", name, f"must be at most {self.max_length} characters")]
        if self.not_blank and not value.strip():
            return [entry("BLANK", name, "must not be blank")]
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return [entry("PATTERN_MISMATCH", name, f"must match {self.pattern.pattern}")]
        return []


def check_list(
    name: str, value: Any, rules: dict[str, Rule], *, utf16: bool = False
) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return [entry("INVALID_TYPE", name, "must be an array")]
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        errors.extend(check_object(item, rules, prefix=f"{name}[{i}].", utf16=utf16))
    return errors


def check_object(
    body: Any, rules: dict[str, Rule], prefix: str = "", *, utf16: bool = False
) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [entry("INVALID_TYPE", prefix.rstrip(".") or None, "must be a JSON object")]
    errors = [
        entry("UNKNOWN_FIELD", prefix + key, "unknown field") for key in body if key not in rules
    ]
    for name, rule in rules.items():
        value = body.get(name)
        if value is None:
            if rule.required:
                errors.append(entry("REQUIRED", prefix + name, "must not be null"))
            continue
        errors.extend(rule.check(prefix + name, value, utf16=utf16))
    return errors


def validated(body: Any, rules: dict[str, Rule], *, utf16: bool = False) -> dict[str, Any]:
    """The body's non-null fields, or a 400 naming every problem found. ``utf16``: a
    ``max_length`` counts UTF-16 code units, not characters (behaviour ``length``)."""
    errors = check_object(body, rules, utf16=utf16)
    if errors:
        raise invalid(errors)
    return {k: v for k, v in body.items() if v is not None}


AFFECTED_COMPONENT_RULES = {
    "componentId": Rule("uuid", required=True),
    "status": Rule("enum", required=True, choices=COMPONENT_STATUSES),
}
PAGE_COMPONENT_RULES = {
    "id": Rule("uuid"),
    "name": Rule("string", required=True, max_length=255, not_blank=True),
}
TITLE = Rule("string", max_length=500, not_blank=True)
STATUS = Rule("enum", choices=STATUSES)
IMPACT = Rule("enum", choices=IMPACTS)
URL = Rule("string", max_length=2048, pattern=re.compile(r"^$|^https?://.*"))

CREATE_RULES = {
    "title": Rule("string", required=True, max_length=500, not_blank=True),
    "status": STATUS,
    "impact": Rule("enum", required=True, choices=IMPACTS),
    "body": Rule("string", required=True, not_blank=True),
    "affectedComponents": Rule("components"),
    "notifySubscribers": Rule("bool"),
    "monitoringIncidentId": Rule("uuid"),
    # The June spec's scheduling fields; SDK 1.12.0's create model no longer lists them
    # (so the SDK cannot send them), but vendors.md does and nothing says they went away.
    "scheduled": Rule("bool"),
    "scheduledFor": Rule("datetime"),
    "scheduledUntil": Rule("datetime"),
    "autoResolve": Rule("bool"),
}
UPDATE_RULES = {
    "title": TITLE,
    "status": STATUS,
    "impact": IMPACT,
    "affectedComponents": Rule("components"),
    "postmortemBody": Rule("string"),
    "postmortemUrl": URL,
    "published": Rule("bool"),
    "scheduledFor": Rule("datetime"),
    "scheduledUntil": Rule("datetime"),
    "autoResolve": Rule("bool"),
}
TIMELINE_RULES = {
    "status": Rule("enum", required=True, choices=STATUSES),
    "body": Rule("string", required=True, not_blank=True),
    "notifySubscribers": Rule("bool"),
    "affectedComponents": Rule("components"),
}
PUBLISH_RULES = {
    "title": TITLE,
    "impact": IMPACT,
    "status": STATUS,
    "body": Rule("string"),
    "affectedComponents": Rule("components"),
    "notifySubscribers": Rule("bool"),
}
PAGE_RULES = {
    "id": Rule("uuid"),
    "name": Rule("string", required=True, max_length=255, not_blank=True),
    "incidentMode": Rule("enum", choices=INCIDENT_MODES),
    "components": Rule("page_components"),
}
SEED_RULES = {
    "statusPageId": Rule("uuid", required=True),
    "title": Rule("string", required=True, max_length=500, not_blank=True),
    "impact": Rule("enum", required=True, choices=IMPACTS),
    "status": STATUS,
    "body": Rule("string", not_blank=True),
    "draft": Rule("bool"),
    "incidentId": Rule("uuid"),
}
HUMAN_RULES = {
    "title": TITLE,
    "status": STATUS,
    "impact": IMPACT,
    "body": Rule("string", not_blank=True),
    "postmortemBody": Rule("string"),
    "postmortemUrl": URL,
}
EVENT_RULES = {
    "type": Rule("enum", required=True, choices=PLATFORM_EVENTS),
    "data": Rule("object"),
}


def check_schedule(values: dict[str, Any]) -> None:
    """Create's scheduling rules (June spec): ``scheduledFor`` is required when
    ``scheduled`` is true, the window fields need a scheduled incident, and the window
    may not end before it starts."""
    scheduled = values.get("scheduled", False)
    errors = []
    if scheduled and "scheduledFor" not in values:
        errors.append(entry("REQUIRED", "scheduledFor", "is required when scheduled is true"))
    for name in ("scheduledFor", "scheduledUntil", "autoResolve"):
        if name in values and not scheduled:
            errors.append(entry("NOT_SCHEDULED", name, "only scheduled incidents have a window"))
    start, end = values.get("scheduledFor"), values.get("scheduledUntil")
    if start and end and datetime.fromisoformat(end) < datetime.fromisoformat(start):
        errors.append(entry("INVALID_WINDOW", "scheduledUntil", "must not be before scheduledFor"))
    if errors:
        raise invalid(errors)


def int_param(query: Any, name: str, default: int, *, minimum: int) -> int:
    values = query.getall(name, [])
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise Rejection(400, "BAD_REQUEST", f"{name} must be an integer") from None
    if value < minimum:
        raise Rejection(400, "BAD_REQUEST", f"{name} must be at least {minimum}")
    return value


def sort_specs(values: Sequence[str]) -> list[tuple[str, bool]]:
    """Spring-style ``sort=prop[,asc|desc]`` parameters as (property, descending)."""
    if not values:
        return [("createdAt", True)]
    specs: list[tuple[str, bool]] = []
    for value in values:
        prop, _, direction = value.partition(",")
        if prop not in SORTABLE:
            raise Rejection(400, "BAD_REQUEST", f"Cannot sort by {prop!r}")
        if direction.lower() not in ("", "asc", "desc"):
            raise Rejection(400, "BAD_REQUEST", f"Invalid sort direction {direction!r}")
        specs.append((prop, direction.lower() == "desc"))
    return specs
