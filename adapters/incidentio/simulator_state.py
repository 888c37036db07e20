"""incident.io's state in the simulator: its incidents, users, teams, follow-up categories
and priorities, and the follow-ups, with the operations on them (rendering FollowUpV3 and
V2, the request rules that depend on the state, making and changing follow-ups with
their webhooks, and listing). ``adapters/incidentio/simulator.py`` serves them as routes,
and ``adapters/incidentio/simulator_rules.py`` holds the rule machinery."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters._simkit import SimKit
from adapters.incidentio.simulator_rules import (
    Rule,
    check_string,
    check_strings,
    check_title,
    invalid_field,
    one_of,
    parse_bounds,
)
from adapters.signing import standard_headers

DEFAULT_INCIDENT_ID = "01HQ0000000000000000000001"
USER_IDS = ("01HQ00000000000000000000A1", "01HQ00000000000000000000A2")
TEAM_ID = "01HQ00000000000000000000T1"
CATEGORY_ID = "01HQ00000000000000000000C1"
PRIORITY_IDS = ("01HQ00000000000000000000P1", "01HQ00000000000000000000P2")
API_KEY_ACTOR = {"id": "01HQ00000000000000000000K1", "name": "Syncgate simulator key"}

STATUSES = ("outstanding", "completed", "deleted", "not_doing")
INCIDENT_MODES = ("standard", "retrospective", "test", "tutorial", "stream")
DEFAULT_MODES = frozenset({"standard", "retrospective"})
VISIBILITIES = ("public", "private")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 250
#: The optional fields of the update payload (FollowUpsUpdatePayloadV3 and V2).
PUT_OPTIONAL = (
    "assignee_id",
    "assignee_team_id",
    "description",
    "follow_up_category_id",
    "follow_up_priority_option_id",
    "labels",
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ulids:
    """ULIDs (48-bit millisecond time, 80 random bits, Crockford base32), strictly increasing
    so that "ordered by id" is creation order, as incident.io's ids are."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self, at: datetime) -> str:
        value = (int(at.timestamp() * 1000) << 80) | secrets.randbits(80)
        value = max(value, self._last + 1)
        self._last = value
        return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


# -- state ----------------------------------------------------------------------------------


class Incident(msgspec.Struct, kw_only=True):
    id: str
    name: str
    mode: str
    visibility: str


class FollowUpRecord(msgspec.Struct, kw_only=True):
    """One follow-up as the simulator holds it (ids of referenced things, not their JSON)."""

    id: str
    incident_id: str
    title: str
    status: str
    labels: list[str]
    creator: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    assignee_id: str | None = None
    assignee_team_id: str | None = None
    category_id: str | None = None
    priority_id: str | None = None
    completed_at: datetime | None = None


#: Body field -> record attribute, where they differ.
_ATTRIBUTE = {
    "follow_up_category_id": "category_id",
    "follow_up_priority_option_id": "priority_id",
}


class IncidentIoState:
    """The state half of ``IncidentIoSimulator``: what it holds (made by its ``setup``) and
    the operations on it."""

    kit: SimKit
    ulid: Ulids
    incidents: dict[str, Incident]
    users: dict[str, dict[str, Any]]
    teams: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    priorities: dict[str, dict[str, Any]]
    follow_ups: dict[str, FollowUpRecord]

    # -- rendering -------------------------------------------------------------------------

    def render(self, record: FollowUpRecord, version: str) -> dict[str, Any]:
        """FollowUpV3, or FollowUpV2 (webhooks, the v2 REST paths): the same minus category."""
        out: dict[str, Any] = {
            "id": record.id,
            "incident_id": record.incident_id,
            "title": record.title,
            "status": record.status,
            "labels": list(record.labels),
            "creator": record.creator,
            "created_at": rfc3339(record.created_at),
            "updated_at": rfc3339(record.updated_at),
        }
        if record.description is not None:
            out["description"] = record.description
        if record.assignee_id is not None:
            out["assignee"] = self.users[record.assignee_id]
        if record.assignee_team_id is not None:
            out["assignee_team"] = self.teams[record.assignee_team_id]
        if record.priority_id is not None:
            out["priority"] = self.priorities[record.priority_id]
        if record.category_id is not None and version == "v3":
            out["category"] = self.categories[record.category_id]
        if record.completed_at is not None:
            out["completed_at"] = rfc3339(record.completed_at)
        return out

    # -- rules -----------------------------------------------------------------------------

    def _reference_rules(self) -> dict[str, Rule]:
        return {
            "description": Rule(check_string),
            "assignee_id": Rule(one_of(self.users, "user id")),
            "assignee_team_id": Rule(one_of(self.teams, "team id")),
            "follow_up_category_id": Rule(one_of(self.categories, "follow-up category id")),
            "follow_up_priority_option_id": Rule(
                one_of(self.priorities, "follow-up priority option id")
            ),
            "labels": Rule(check_strings),
        }

    def create_rules(self) -> dict[str, Rule]:
        return {
            "incident_id": Rule(one_of(self.incidents, "incident id"), required=True),
            "title": Rule(check_title, required=True),
            **self._reference_rules(),
            "external_issue_reference_id": Rule(lambda _: "references no known external issue"),
        }

    def update_rules(self) -> dict[str, Rule]:
        settable = tuple(s for s in STATUSES if s != "deleted")
        rules = {
            "status": Rule(one_of(settable, "status (use DELETE to delete)"), required=True),
            "title": Rule(check_title, required=True),
            **self._reference_rules(),
        }
        rules["assignee_id"] = Rule(rules["assignee_id"].check, nullable=True)
        rules["assignee_team_id"] = Rule(rules["assignee_team_id"].check, nullable=True)
        return rules

    def put_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """What a PUT sets: its body, plus, when the ``put_omitted`` behaviour is "clear",
        every optional field it left out, cleared (open question 7: the docs say only that
        null unassigns)."""
        if self.kit.behaviour["put_omitted"] != "clear":
            return values
        cleared: dict[str, Any] = {name: None for name in PUT_OPTIONAL}
        cleared["labels"] = []
        return {**cleared, **values}

    def seed_rules(self) -> dict[str, Rule]:
        rules = self.create_rules()
        del rules["external_issue_reference_id"]
        return {**rules, "status": Rule(one_of(STATUSES, "status"))}

    def person_rules(self) -> dict[str, Rule]:
        """What a person may change in the UI: anything, status deleted included; null clears."""
        rules = {"title": Rule(check_title), "status": Rule(one_of(STATUSES, "status"))}
        for name, rule in self._reference_rules().items():
            rules[name] = Rule(rule.check, nullable=name != "labels")
        return rules

    # -- state changes ---------------------------------------------------------------------

    def make(self, values: dict[str, Any], creator: dict[str, Any]) -> FollowUpRecord:
        now = self.kit.now()
        record = FollowUpRecord(
            id=self.ulid(now),
            incident_id=values["incident_id"],
            title=values["title"],
            status="outstanding",
            labels=[],
            creator=creator,
            created_at=now,
            updated_at=now,
        )
        rest = {k: v for k, v in values.items() if k not in ("incident_id", "title")}
        self.apply(record, rest, now=now)
        self.follow_ups[record.id] = record
        self.notify(record, created=True)
        return record

    def apply(
        self, record: FollowUpRecord, values: Mapping[str, Any], now: datetime | None = None
    ) -> bool:
        """Set ``values`` (body field names) on ``record``; whether anything changed."""
        changed = False
        for name, value in values.items():
            attribute = _ATTRIBUTE.get(name, name)
            if getattr(record, attribute) != value:
                setattr(record, attribute, list(value) if name == "labels" else value)
                changed = True
        if not changed:
            return False
        now = now or self.kit.now()
        if "status" in values:
            if record.status != "completed":
                record.completed_at = None
            elif record.completed_at is None:
                record.completed_at = now
        record.updated_at = now
        return True

    def notify(self, record: FollowUpRecord, *, created: bool) -> None:
        """Send the v2 follow-up webhook incident.io sends for this change."""
        public = self.incidents[record.incident_id].visibility == "public"
        event_type = "{}.follow_up_{}_v2".format(
            "public_incident" if public else "private_incident", "created" if created else "updated"
        )
        resource = self.render(record, "v2") if public else {"id": record.id}
        body = msgspec.json.encode({"event_type": event_type, event_type: resource})
        delivery_id = "msg_" + self.ulid(self.kit.now())

        def sign(payload: bytes, timestamp: int) -> dict[str, str]:
            secret = self.kit.webhook_secret
            if secret is None:
                raise RuntimeError("the webhook secret was cleared")
            return standard_headers(secret, delivery_id, timestamp, payload)

        self.kit.emit(event_type, body, sign, delivery_id)

    def listing(
        self, query: Mapping[str, str], *, paginate: bool
    ) -> tuple[list[FollowUpRecord], dict[str, Any] | None]:
        mode = query.get("incident_mode")
        if mode is not None and mode not in INCIDENT_MODES:
            raise invalid_field("incident_mode", f"{mode!r} is not a valid incident_mode")
        modes = {mode} if mode else DEFAULT_MODES
        bounds = {
            key: parse_bounds(key, value)
            for key, value in query.items()
            if key.startswith(("created_at[", "updated_at["))
        }
        found = []
        for record in sorted(self.follow_ups.values(), key=lambda r: r.id):
            if self.incidents[record.incident_id].mode not in modes:
                continue
            if record.status == "deleted" and self.kit.behaviour["deleted"] != "shown":
                continue  # behaviour deleted: the API no longer shows it
            if "incident_id" in query and record.incident_id != query["incident_id"]:
                continue
            if "assignee_team_id" in query and record.assignee_team_id != query["assignee_team_id"]:
                continue
            if not all(_within(record, key, bound) for key, bound in bounds.items()):
                continue
            found.append(record)
        if not paginate:
            return found, None
        raw_size = query.get("page_size", str(DEFAULT_PAGE_SIZE))
        size = int(raw_size) if raw_size.isdigit() else 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise invalid_field("page_size", f"page_size must be 1..{MAX_PAGE_SIZE}")
        if "after" in query:
            found = [r for r in found if r.id > query["after"]]
        page = found[:size]
        meta: dict[str, Any] = {"page_size": size}
        if len(page) == size:
            meta["after"] = page[-1].id
        return page, meta


def _within(
    record: FollowUpRecord, key: str, bounds: tuple[datetime | None, datetime | None]
) -> bool:
    value = record.created_at if key.startswith("created_at") else record.updated_at
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)
