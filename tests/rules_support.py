"""Made-up systems, capabilities, value maps and observations for the rules and engine
unit tests (no adapters, no simulators)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.config.schema import (
    CreateRule,
    FieldRule,
    LinkRule,
    Settings,
    SystemSettings,
)
from app.model import Fields, ObjectRef, Priority, Status, ValueMap, VendorObject
from app.rules import Rules

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


SYSTEMS = ("tracker", "pages", "desk")


@dataclass(frozen=True)
class Caps:
    readable: frozenset[str]
    writable: frozenset[str]
    max_lengths: Mapping[str, int] = field(default_factory=dict)
    blank_refused: frozenset[str] = frozenset()


CAPS = {
    # like hookstream: reads much, writes status and snooze only
    "tracker": Caps(
        readable=frozenset({"title", "description", "status", "priority", "snoozed_until"}),
        writable=frozenset({"status", "snoozed_until"}),
    ),
    # like DevHelm: a many-to-one status map
    "pages": Caps(
        readable=frozenset({"title", "status", "priority"}),
        writable=frozenset({"title", "status", "priority"}),
    ),
    # like InboxOps: carries an assignee
    "desk": Caps(
        readable=frozenset({"title", "status", "priority", "assignee"}),
        writable=frozenset({"title", "status", "priority", "assignee"}),
    ),
}


def identity(values: Any) -> ValueMap:
    return ValueMap(
        inbound={str(v): str(v) for v in values}, outbound={str(v): [str(v)] for v in values}
    )


MAPS: dict[str, dict[str, ValueMap]] = {
    "tracker": {"status": identity(Status), "priority": identity(Priority)},
    "pages": {
        "status": ValueMap(
            inbound={
                "INVESTIGATING": "open",
                "IDENTIFIED": "acknowledged",
                "MONITORING": "monitoring",
                "RESOLVED": "resolved",
            },
            outbound={
                "open": ["INVESTIGATING"],
                "acknowledged": ["IDENTIFIED", "MONITORING"],
                "monitoring": ["MONITORING"],
                "waiting": ["IDENTIFIED", "MONITORING"],
                "resolved": ["RESOLVED"],
                "closed": ["RESOLVED"],
                "cancelled": ["RESOLVED"],
            },
        ),
        "priority": ValueMap(
            inbound={"NONE": "low", "MINOR": "normal", "MAJOR": "high", "CRITICAL": "urgent"},
            outbound={
                "low": ["NONE"],
                "normal": ["MINOR"],
                "high": ["MAJOR"],
                "urgent": ["CRITICAL"],
            },
        ),
    },
    "desk": {
        "status": ValueMap(
            inbound={
                "new": "open",
                "working": "acknowledged",
                "pending": "waiting",
                "solved": "resolved",
                "closed": "closed",
            },
            outbound={
                "open": ["new"],
                "acknowledged": ["working"],
                "monitoring": ["working"],
                "waiting": ["pending"],
                "resolved": ["solved"],
                "closed": ["closed"],
                "cancelled": ["closed"],
            },
        ),
        "priority": identity(Priority),
    },
}


def settings(
    *,
    fields: dict[str, FieldRule] | None = None,
    create_rules: list[CreateRule] | None = None,
    link_rules: list[LinkRule] | None = None,
    disabled: tuple[str, ...] = (),
    max_clock_skew_s: float = 300.0,
) -> Settings:
    return Settings(
        systems={
            name: SystemSettings(
                enabled=name not in disabled,
                base_url=f"http://{name}.invalid",
                api_key_env=f"{name.upper()}_API_KEY",
                max_clock_skew_s=max_clock_skew_s,
            )
            for name in SYSTEMS
        },
        fields=fields or {},
        create_rules=create_rules or [],
        link_rules=link_rules or [],
    )


def rules(maps: dict[str, dict[str, ValueMap]] | None = None, **kwargs: Any) -> Rules:
    return Rules(settings(**kwargs), CAPS, MAPS if maps is None else maps)


def vendor(
    system: str,
    external_id: str,
    at: datetime,
    *,
    status: str | None = None,
    priority: str | None = None,
    scope: str = "",
    raw: dict[str, Any] | None = None,
    created_at: datetime | None = T0,
    **fields: Any,
) -> VendorObject:
    """A vendor object as its adapter would read it: ``status`` and ``priority`` are
    vendor values, read through ``MAPS`` (a value with no mapping is ``unmapped``).
    Made at ``T0`` unless ``created_at`` says otherwise (None: the vendor gave no time)."""
    native: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    for name, value in (("status", status), ("priority", priority)):
        if value is None:
            continue
        native[name] = value
        canonical = MAPS[system][name].to_canonical(value)
        if canonical is None:
            unmapped[name] = value
        else:
            fields[name] = canonical
    return VendorObject(
        ref=ObjectRef(system, scope, external_id),
        updated_at=at,
        fields=Fields.from_dict(fields),
        native=native,
        unmapped=unmapped,
        raw=raw or {},
        created_at=created_at,
    )
