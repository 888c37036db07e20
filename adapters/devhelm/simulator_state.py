"""DevHelm's state in the simulator: the status pages and incidents it holds, and every
operation on them, vendor and control alike. An operation takes the validated path
values and the decoded body or query, and returns an ``Outcome`` (status, JSON payload)
or raises a ``Rejection``; ``adapters/devhelm/simulator.py`` serves them as routes, and
``adapters/devhelm/simulator_rules.py`` holds the request rules they check against."""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from adapters import signing
from adapters._simkit import SimKit
from adapters.devhelm.simulator_rules import (
    CREATE_RULES,
    EVENT_RULES,
    HUMAN_RULES,
    PAGE_RULES,
    PUBLISH_RULES,
    SEED_RULES,
    STATUSES,
    TIMELINE_RULES,
    UPDATE_RULES,
    Rejection,
    check_schedule,
    entry,
    int_param,
    invalid,
    is_uuid,
    sort_specs,
    validated,
)

API_VERSION = "2026-01"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
#: The user a person's UI actions are attributed to.
UI_USER_ID = 1001


def iso(value: datetime) -> str:
    """Fixed-width UTC timestamps, so that they also sort as strings."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StatusPage:
    id: str
    name: str
    incident_mode: str
    components: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "incidentMode": self.incident_mode,
            "components": [{"id": k, "name": v} for k, v in self.components.items()],
        }


#: (status, JSON payload or None for no content)
Outcome = tuple[int, Any]


class DevHelmState:
    """The state half of ``DevHelmSimulator``: its status pages and incidents (made by its
    ``setup``) and the operations on them."""

    kit: SimKit
    pages: dict[str, StatusPage]
    incidents: dict[str, dict[str, Any]]

    # -- state helpers ---------------------------------------------------------------------

    @property
    def utf16(self) -> bool:
        """Whether a ``maxLength`` counts UTF-16 code units (behaviour ``length``)."""
        return bool(self.kit.behaviour["length"] == "utf16")

    def _page(self, page_id: str) -> StatusPage:
        if not is_uuid(page_id):
            raise Rejection(400, "BAD_REQUEST", f"Invalid UUID for path variable id: {page_id}")
        page = self.pages.get(page_id)
        if page is None:
            raise Rejection(404, "NOT_FOUND", "Status page not found")
        return page

    def _incident(self, page_id: str, incident_id: str) -> dict[str, Any]:
        self._page(page_id)
        if not is_uuid(incident_id):
            raise Rejection(
                400, "BAD_REQUEST", f"Invalid UUID for path variable incidentId: {incident_id}"
            )
        incident = self.incidents.get(incident_id)
        if incident is None or incident["statusPageId"] != page_id:
            raise Rejection(404, "NOT_FOUND", "Status page incident not found")
        return incident

    def _components(self, page: StatusPage, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors = [
            entry("UNKNOWN_COMPONENT", f"affectedComponents[{i}].componentId", "no such component")
            for i, item in enumerate(items)
            if item["componentId"] not in page.components
        ]
        if errors:
            raise invalid(errors)
        return [
            {
                "statusPageComponentId": item["componentId"],
                "componentStatus": item["status"],
                "componentName": page.components[item["componentId"]],
            }
            for item in items
        ]

    @staticmethod
    def _set_status(incident: dict[str, Any], status: str, now: str) -> None:
        if status == "RESOLVED" and incident["status"] != "RESOLVED":
            incident["resolvedAt"] = now
        elif status != "RESOLVED":
            incident["resolvedAt"] = None
        incident["status"] = status

    @staticmethod
    def _timeline(
        incident: dict[str, Any],
        status: str,
        text: str,
        *,
        notify: bool,
        now: str,
        created_by: str = "USER",
        user_id: int | None = None,
    ) -> None:
        incident["updates"].insert(
            0,  # newest first, as DevHelm's status pages show the timeline
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "body": text,
                "createdBy": created_by,
                "createdByUserId": user_id,
                "notifySubscribers": notify,
                "createdAt": now,
            },
        )

    def _new_incident(
        self,
        page: StatusPage,
        values: dict[str, Any],
        *,
        draft: bool,
        monitoring_incident_id: str | None,
        created_by: str,
        user_id: int | None,
    ) -> dict[str, Any]:
        now = iso(self.kit.now())
        status = values.get("status", "INVESTIGATING")
        incident: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "statusPageId": page.id,
            "title": values["title"],
            "status": status,
            "impact": values["impact"],
            "scheduled": values.get("scheduled", False),
            "scheduledFor": values.get("scheduledFor"),
            "scheduledUntil": values.get("scheduledUntil"),
            "autoResolve": values.get("autoResolve", False),
            "incidentId": monitoring_incident_id,
            "startedAt": now,
            "publishedAt": None if draft else now,
            "resolvedAt": now if status == "RESOLVED" else None,
            "createdByUserId": user_id,
            "postmortemBody": None,
            "postmortemUrl": None,
            "affectedComponents": self._components(page, values.get("affectedComponents", [])),
            "updates": [],
            "createdAt": now,
            "updatedAt": now,
        }
        self._timeline(
            incident,
            status,
            values["body"],
            notify=values.get("notifySubscribers", True),
            now=now,
            created_by=created_by,
            user_id=user_id,
        )
        self.incidents[incident["id"]] = incident
        return incident

    def _apply(self, incident: dict[str, Any], changes: dict[str, Any]) -> None:
        """Apply PUT-style changes (already validated, nulls dropped); move ``updatedAt``
        only if something changed."""
        before = copy.deepcopy(incident)
        now = iso(self.kit.now())
        page = self.pages[incident["statusPageId"]]
        if ("scheduledFor" in changes or "scheduledUntil" in changes) and not incident["scheduled"]:
            raise invalid(
                [entry("NOT_SCHEDULED", "scheduledFor", "only scheduled incidents have a window")]
            )
        for name in ("title", "impact", "autoResolve", "scheduledFor", "scheduledUntil"):
            if name in changes:
                incident[name] = changes[name]
        for name in ("postmortemBody", "postmortemUrl"):
            if name in changes:
                incident[name] = changes[name] or None  # "" clears
        if "affectedComponents" in changes:
            incident["affectedComponents"] = self._components(page, changes["affectedComponents"])
        if "published" in changes:
            if not changes["published"]:
                incident["publishedAt"] = None
            elif incident["publishedAt"] is None:
                incident["publishedAt"] = now
        if "status" in changes:
            self._set_status(incident, changes["status"], now)
        if incident != before:
            incident["updatedAt"] = now

    def _summary(self, incident: dict[str, Any]) -> dict[str, Any]:
        return {**incident, "updates": None}

    # -- vendor operations -----------------------------------------------------------------

    def list_incidents(self, page_id: str, query: Any) -> Outcome:
        self._page(page_id)
        page_no = int_param(query, "page", 0, minimum=0)
        size = int_param(query, "size", DEFAULT_PAGE_SIZE, minimum=1)
        if size > MAX_PAGE_SIZE:
            raise Rejection(400, "BAD_REQUEST", f"size must be at most {MAX_PAGE_SIZE}")
        wanted: set[str] = set()
        for value in query.getall("status", []):
            for status in value.split(","):
                if status not in STATUSES:
                    raise Rejection(400, "BAD_REQUEST", f"Invalid status: {status}")
                wanted.add(status)
        items = [
            i
            for i in self.incidents.values()
            if i["statusPageId"] == page_id and (not wanted or i["status"] in wanted)
        ]
        specs = sort_specs(query.getall("sort", []))  # checked even when not honoured
        if self.kit.behaviour["sort"] == "ignored":
            specs = [("createdAt", False)]  # storage order: oldest created first
        for prop, descending in reversed(specs):
            present = sorted(
                (i for i in items if i[prop] is not None), key=lambda i: i[prop], reverse=descending
            )
            items = present + [i for i in items if i[prop] is None]
        total = len(items)
        total_pages = math.ceil(total / size)
        chunk = items[page_no * size : (page_no + 1) * size]
        return 200, {
            "data": [self._summary(i) for i in chunk],
            "hasNext": page_no + 1 < total_pages,
            "hasPrev": page_no > 0,
            "totalElements": total,
            "totalPages": total_pages,
        }

    def create_incident(self, page_id: str, body: Any) -> Outcome:
        page = self._page(page_id)
        values = validated(body, CREATE_RULES, utf16=self.utf16)
        check_schedule(values)
        incident = self._new_incident(
            page,
            values,
            draft=False,
            monitoring_incident_id=values.get("monitoringIncidentId"),
            created_by="USER",
            user_id=None,  # an API key is not a user
        )
        return 201, {"data": incident}

    def get_incident(self, page_id: str, incident_id: str) -> Outcome:
        return 200, {"data": self._incident(page_id, incident_id)}

    def _check_reopen(self, incident: dict[str, Any], status: str | None) -> None:
        """Behaviour ``reopen: refused``: a RESOLVED incident cannot go back to an active
        status through the API (409, as for a publish of a published incident)."""
        if (
            self.kit.behaviour["reopen"] == "refused"
            and incident["status"] == "RESOLVED"
            and status not in (None, "RESOLVED")
        ):
            raise Rejection(409, "CONFLICT", "A resolved incident cannot be reopened")

    def update_incident(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        values = validated(body, UPDATE_RULES, utf16=self.utf16)
        self._check_reopen(incident, values.get("status"))
        self._apply(incident, values)
        return 200, {"data": incident}

    def delete_incident(self, page_id: str, incident_id: str) -> Outcome:
        self._incident(page_id, incident_id)
        del self.incidents[incident_id]
        return 204, None

    def post_update(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        values = validated(body, TIMELINE_RULES, utf16=self.utf16)
        self._check_reopen(incident, values.get("status"))
        now = iso(self.kit.now())
        if "affectedComponents" in values:
            page = self.pages[page_id]
            incident["affectedComponents"] = self._components(page, values["affectedComponents"])
        self._timeline(
            incident,
            values["status"],
            values["body"],
            notify=values.get("notifySubscribers", True),
            now=now,
        )
        self._set_status(incident, values["status"], now)
        incident["updatedAt"] = now
        return 201, {"data": incident}

    def publish(self, page_id: str, incident_id: str, body: Any) -> Outcome:
        incident = self._incident(page_id, incident_id)
        values = validated(body, PUBLISH_RULES, utf16=self.utf16)
        if incident["publishedAt"] is not None:
            raise Rejection(409, "CONFLICT", "Incident is already published")
        if values.get("status") == "RESOLVED":
            raise invalid([entry("INACTIVE_STATUS", "status", "must be an active status")])
        now = iso(self.kit.now())
        for name in ("title", "impact"):
            if name in values:
                incident[name] = values[name]
        if "affectedComponents" in values:
            page = self.pages[page_id]
            incident["affectedComponents"] = self._components(page, values["affectedComponents"])
        if "status" in values:
            self._set_status(incident, values["status"], now)
        initial = incident["updates"][-1]
        if values.get("body"):
            initial["body"] = values["body"]
        initial["notifySubscribers"] = values.get("notifySubscribers", True)
        incident["publishedAt"] = now
        incident["updatedAt"] = now
        return 200, {"data": incident}

    def dismiss(self, page_id: str, incident_id: str) -> Outcome:
        incident = self._incident(page_id, incident_id)
        if incident["publishedAt"] is not None:
            raise Rejection(409, "CONFLICT", "Only draft incidents can be dismissed")
        del self.incidents[incident_id]
        return 204, None

    # -- control operations ----------------------------------------------------------------

    def create_page(self, body: Any) -> Outcome:
        values = validated(body, PAGE_RULES, utf16=self.utf16)
        return 201, self._add_page(values).as_json()

    def _add_page(self, values: dict[str, Any]) -> StatusPage:
        return self.add_status_page(
            values.get("id") or str(uuid.uuid4()),
            values["name"],
            values.get("incidentMode", "AUTOMATIC"),
            {
                item.get("id") or str(uuid.uuid4()): item["name"]
                for item in values.get("components", [])
            },
        )

    def add_status_page(
        self,
        page_id: str,
        name: str,
        incident_mode: str = "AUTOMATIC",
        components: dict[str, str] | None = None,
    ) -> StatusPage:
        """Make a status page (``components``: id -> name), as its owner would in the UI."""
        if page_id in self.pages:
            raise Rejection(409, "CONFLICT", f"Status page {page_id} already exists")
        page = StatusPage(page_id, name, incident_mode, dict(components or {}))
        self.pages[page_id] = page
        return page

    def list_pages(self) -> Outcome:
        return 200, {"data": [p.as_json() for p in self.pages.values()]}

    def seed(self, body: Any) -> Outcome:
        values = validated(body, SEED_RULES, utf16=self.utf16)
        page_id = values["statusPageId"]
        page = self.pages.get(page_id) or self._add_page(
            {"id": page_id, "name": f"Status page {page_id[:8]}"}
        )
        draft = values.get("draft", False)
        if draft and page.incident_mode == "MANUAL":
            raise Rejection(409, "CONFLICT", "A MANUAL status page makes no draft incidents")
        incident = self._new_incident(
            page,
            {**values, "body": values.get("body", values["title"])},
            draft=draft,
            monitoring_incident_id=values.get("incidentId"),
            created_by="SYSTEM" if draft else "USER",
            user_id=None if draft else UI_USER_ID,
        )
        if "incidentId" in values:
            self.send_platform_event("incident.created", {"id": values["incidentId"]})
        return 201, {"data": incident}

    def human_change(self, incident_id: str, body: Any) -> Outcome:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise Rejection(404, "NOT_FOUND", "Status page incident not found")
        values = validated(body, HUMAN_RULES, utf16=self.utf16)
        text = values.pop("body", None)
        self._apply(incident, values)
        if text is not None:
            now = iso(self.kit.now())
            self._timeline(
                incident, incident["status"], text, notify=True, now=now, user_id=UI_USER_ID
            )
            incident["updatedAt"] = now
        return 200, {"data": incident}

    def platform_event(self, body: Any) -> Outcome:
        values = validated(body, EVENT_RULES, utf16=self.utf16)
        event_id, delivery_id = self.send_platform_event(values["type"], values.get("data", {}))
        return 202, {"id": event_id, "deliveryId": delivery_id}

    def send_platform_event(self, event_type: str, data: dict[str, Any]) -> tuple[str, str]:
        """Queue one signed platform delivery; retries resend the same envelope."""
        event_id = "evt_" + uuid.uuid4().hex
        delivery_id = str(uuid.uuid4())
        envelope = {
            "id": event_id,
            "type": event_type,
            "apiVersion": API_VERSION,
            "createdAt": iso(self.kit.now()),
            "data": data,
        }

        def sign(body: bytes, timestamp: int) -> dict[str, str]:
            headers = {"X-DevHelm-Event": event_type, "X-DevHelm-Delivery": delivery_id}
            secret = self.kit.webhook_secret  # read per attempt: it can be rotated meanwhile
            if secret:
                separator = ":" if self.kit.behaviour["signature_separator"] == "colon" else "."
                headers["X-DevHelm-Signature"] = signing.devhelm_sign(
                    secret, timestamp, body, separator=separator
                )
            return headers

        self.kit.emit(event_type, msgspec.json.encode(envelope), sign, delivery_id)
        return event_id, delivery_id
