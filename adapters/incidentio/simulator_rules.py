"""incident.io's request rules, as the simulator checks them: a ``Rule`` per body field,
every problem reported at once as incident.io does (422 ``validation_error``, each entry
with ``source: {field, pointer}``), a body that is not JSON (400), unknown query
parameters, and the list's time filters (RFC 3339 times or dates, ``date_range``).

Written from vendors.md §4 and the follow-up OpenAPI subset; ``simulator.py`` serves them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import msgspec

Check = Callable[[Any], str | None]
"""A field check: the problem with a (non-null) value, or None when it is fine."""


class Rule(msgspec.Struct, frozen=True):
    check: Check
    required: bool = False
    nullable: bool = False


class Invalid(Exception):
    """A request the vendor refuses; carries incident.io ``errors[]`` entries."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors


def json_pointer(*parts: str) -> str:
    """An RFC 6901 pointer to ``parts`` (``~`` and ``/`` escaped)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def problem(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """One ``errors[]`` entry (ErrorSingle). ``source`` is ``{field, pointer}``: both are
    required by the SDK's ``ErrorSource`` whenever ``source`` is present. A query
    parameter's pointer names the parameter (``/updated_at[gte]``); incident.io does not
    document pointers for query parameters (the simulator's choice)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["source"] = {"field": field, "pointer": json_pointer(field)}
    return error


def invalid_field(field: str, message: str) -> Invalid:
    return Invalid(422, [problem("invalid_value", message, field)])


def check_string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def check_title(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return None if value.strip() else "must not be empty"


def check_strings(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return "must be an array of strings"


def one_of(allowed: tuple[str, ...] | Mapping[str, Any], what: str) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        return None if value in allowed else f"{value!r} is not a valid {what}"

    return check


def validate(body: Any, rules: Mapping[str, Rule]) -> dict[str, Any]:
    """``body`` checked against ``rules``: every problem at once, as incident.io reports them."""
    if not isinstance(body, dict):
        raise Invalid(422, [problem("invalid_type", "request body must be a JSON object")])
    errors = []
    for name, rule in rules.items():
        if name not in body:
            if rule.required:
                errors.append(problem("is_required", f"{name} is required", name))
            continue
        value = body[name]
        if value is None:
            if not rule.nullable:
                errors.append(problem("invalid_value", f"{name} must not be null", name))
            continue
        wrong = rule.check(value)
        if wrong is not None:
            errors.append(problem("invalid_value", f"{name} {wrong}", name))
    for name in body:
        if name not in rules:
            errors.append(problem("unknown_field", f"unknown field {name!r}", name))
    if errors:
        raise Invalid(422, errors)
    return body


def parse_json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise Invalid(400, [problem("invalid_json", "request body is not valid JSON")]) from None


def parse_query(raw: str, allowed: frozenset[str]) -> dict[str, str]:
    pairs = parse_qsl(raw, keep_blank_values=True)
    unknown = [k for k, _ in pairs if k not in allowed]
    if unknown:
        raise Invalid(
            422,
            [problem("unknown_field", f"unknown query parameter {k!r}", k) for k in unknown],
        )
    return dict(pairs)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(name: str, value: str, *, end_of_day: bool = False) -> datetime:
    """An RFC 3339 time, or a date (the SDK's own example filters with ``2025-01-01``):
    a date is its first moment in UTC, or its last with ``end_of_day``."""
    if _DATE.match(value):
        try:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            raise invalid_field(name, f"{name} must be a date or an RFC 3339 time") from None
        return day + timedelta(days=1, microseconds=-1) if end_of_day else day
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise invalid_field(name, f"{name} must be a date or an RFC 3339 time")
    return parsed


def parse_bounds(name: str, value: str) -> tuple[datetime | None, datetime | None]:
    """``created_at[gte|lte|date_range]`` as (lowest, highest), both inclusive.
    ``date_range`` is two dates joined by ``~`` (``2024-12-02~2024-12-08``), each end
    taken whole."""
    operator = name[name.index("[") + 1 : -1]
    if operator == "gte":
        return parse_time(name, value), None
    if operator == "lte":
        return None, parse_time(name, value, end_of_day=True)
    start, sep, end = value.partition("~")
    if not sep or not start or not end:
        raise invalid_field(name, f"{name} must be two dates joined by ~")
    low, high = parse_time(name, start), parse_time(name, end, end_of_day=True)
    if high < low:
        raise invalid_field(name, f"{name} ends before it starts")
    return low, high
