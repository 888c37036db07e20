"""The DevHelm adapter: status-page incidents read, created and updated over DevHelm's REST
API, platform webhook events verified and read as poll hints.

Options (``systems.devhelm.options``) are declared by ``DevHelmOptions``: ``org_id``,
``sync_drafts``, ``signature_separator``.

Scopes are status page ids; ``list_changed`` walks each one newest change first
(``sort=updatedAt,desc``) and stops a scope after the page holding the first incident
older than ``since``, but only if every row read so far came newest first: that the list
honours ``sort`` is our assumption (see docs/vendor-notes.md), so a walk that sees rows
out of that order reads every page instead of stopping early.

DevHelm has no idempotency key, so ``create`` appends a marker line
``<!-- syncgate:<idempotency_key> -->`` to the initial update's body (the first entry of
the public timeline: the only free text a create carries). Before a retried create
(``earlier_since``: an earlier attempt may have reached DevHelm) it looks for an incident
whose initial update ends with that marker, among the incidents created since the earlier
attempt started (less a clock-skew margin), and returns it instead of making a second
one. The marker alone decides: the title may have changed between an attempt whose answer
was lost and the retry. Lists are read newest first (``sort=createdAt,desc``) and the
search stops at the first page that reaches older incidents, if that page is in order;
list rows come without their timeline, so only the candidates are fetched one by one. The
adapter remembers the marker of every timeline it has read (the initial update is never
edited), so a retry costs one list page and a read per incident made since the first
attempt that no earlier look-up read: a look-up cut short by a failed call is carried on,
not restarted, by the next attempt.

Writes send ``notifySubscribers`` from ``CreateTarget.params["notify_subscribers"]``
(default False: a mirrored incident should not email the page's subscribers). ``update``
uses ``PUT`` with only the fields being changed, never ``null`` (which DevHelm reads as
"keep"); a status change through ``PUT`` adds no timeline entry.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec
from msgspec import UNSET

from adapters import signing
from adapters._http import convert, decode, send
from adapters.base import (
    CREATE_SEARCH_SKEW,
    Adapter,
    AdapterOptions,
    AdapterSettings,
    fit,
    refuse_deep_json,
)
from adapters.devhelm import wire
from app.errors import (
    MalformedPayload,
    Rejected,
    UnreadablePayload,
)
from app.model import (
    CreateTarget,
    Fields,
    ObjectRef,
    Priority,
    ValueMap,
    VendorObject,
    WebhookEvent,
    as_utc,
)

#: DevHelm's page size ceiling for incident lists (the SDK's own page size).
MAX_PAGE_SIZE = 200
#: The separators of DevHelm's signed string its docs have named (the current one first).
SIGNATURE_SEPARATORS = (":", ".")


class DevHelmOptions(AdapterOptions, frozen=True):
    """The options of the DevHelm adapter."""

    #: Sent as ``x-phelm-org-id`` on every call, as the DevHelm SDK does when no org is
    #: configured.
    org_id: Annotated[str, msgspec.Meta(min_length=1)] = "1"
    #: Also report draft incidents (``publishedAt`` null), which DevHelm's REVIEW and
    #: AUTOMATIC status pages create on their own.
    sync_drafts: bool = False
    #: What joins ``t`` and the body in the signed string of ``X-DevHelm-Signature``.
    #: DevHelm's docs have said both ``":"`` (the current page) and ``"."`` (an older
    #: capture; vendors.md §2, "Signing scheme"), so unset, either is accepted: both
    #: need the secret, so accepting the two forgoes nothing. Set it to accept only one.
    signature_separator: Annotated[str, msgspec.Meta(min_length=1)] | None = None


def read_error(body: Any) -> str | None:
    """DevHelm's reason from an ``ErrorResponse`` body, with any per-field rejections."""
    try:
        error = msgspec.convert(body, wire.ErrorResponse)
    except msgspec.ValidationError:
        return None
    parts = [error.message] if error.message else []
    for entry in error.errors or ():
        where = f"{entry.field}: " if entry.field else ""
        parts.append(f"{where}{entry.message or entry.code}")
    return "; ".join(parts) or error.code


#: The marker line ``idempotency_marker`` makes, read back (the key is group 1).
MARKER_LINE = re.compile(r"^<!-- syncgate:(\S+) -->$")

#: How many incidents' initial markers an adapter keeps, so that a retried create reads
#: each timeline once however often its look-up is cut short (about 2 MB when full).
REMEMBERED_MARKERS = 10_000


def idempotency_marker(key: str) -> str:
    """The line ``create`` appends to the initial update body to find a retried create."""
    return f"<!-- syncgate:{key} -->"


class DevHelmAdapter(Adapter):
    """Status-page incidents of DevHelm; the scope of an incident is its status page id."""

    system: ClassVar[str] = "devhelm"
    readable: ClassVar[frozenset[str]] = frozenset({"title", "status", "priority"})
    writable: ClassVar[frozenset[str]] = frozenset({"title", "status", "priority"})
    can_create: ClassVar[bool] = True
    #: the create and update schemas' ``title``: ``maxLength: 500``
    max_lengths: ClassVar[Mapping[str, int]] = {"title": 500}
    blank_refused: ClassVar[frozenset[str]] = frozenset({"title"})
    Options: ClassVar[type[DevHelmOptions]] = DevHelmOptions
    stored_headers = frozenset({"x-devhelm-delivery"})
    options: DevHelmOptions

    def __init__(self, settings: AdapterSettings, client: httpx.AsyncClient) -> None:
        super().__init__(settings, client)
        #: incident id -> the key of its initial update's marker (None: no marker), for
        #: every timeline read; oldest first, at most ``REMEMBERED_MARKERS``.
        self._initial_markers: dict[str, str | None] = {}

    @classmethod
    def default_value_maps(cls) -> dict[str, ValueMap]:
        return {
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
        }

    # -- plumbing --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.api_key}",
            "x-phelm-org-id": self.options.org_id,
            "Accept": "application/json",
        }

    def _url(self, scope: str, incident_id: str | None = None) -> str:
        base = self.settings.base_url.rstrip("/")
        url = f"{base}/api/v1/status-pages/{quote(scope, safe='')}/incidents"
        return url if incident_id is None else f"{url}/{quote(incident_id, safe='')}"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        body: msgspec.Struct | None = None,
    ) -> httpx.Response:
        headers = self._headers()
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = msgspec.json.encode(body)
        return await send(
            self.client,
            self.system,
            method,
            url,
            read_error,
            headers=headers,
            params=params,
            content=content,
        )

    def _incident(
        self, raw: dict[str, Any], at: str = "$.data", response: httpx.Response | None = None
    ) -> wire.Incident:
        """One incident found at ``at`` in ``response``; a misfit names the field."""
        incident: wire.Incident = convert(self.system, raw, wire.Incident, at=at, response=response)
        return incident

    def _object(
        self, raw: dict[str, Any], at: str = "$.data", response: httpx.Response | None = None
    ) -> VendorObject:
        """One incident JSON object as a ``VendorObject``."""
        incident = self._incident(raw, at, response)
        values: dict[str, Any] = {"title": incident.title}
        native = {"status": incident.status, "priority": incident.impact}
        enums, unmapped = self.read_enums(native)
        values.update(enums)
        return VendorObject(
            ref=ObjectRef(self.system, incident.status_page_id, incident.id),
            updated_at=as_utc(incident.updated_at),
            fields=Fields.from_dict(values),
            native=native,
            unmapped=unmapped,
            raw=raw,
            created_at=as_utc(incident.created_at),
        )

    def _single(self, response: httpx.Response) -> VendorObject:
        return self._object(
            decode(self.system, response, wire.SingleIncident).data, "$.data", response
        )

    def _vendor_value(self, field: str, canonical: str) -> str:
        value = self.value_maps[field].to_vendor(canonical)
        if value is None:
            raise Rejected(self.system, f"no DevHelm value is mapped for {field} {canonical!r}")
        return value

    async def _pages(self, scope: str, sort: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The scope's incidents, one page (raw JSON rows) at a time."""
        size = max(1, min(self.settings.page_size, MAX_PAGE_SIZE))
        page = 0
        while True:
            response = await self._call(
                "GET", self._url(scope), params={"page": page, "size": size, "sort": sort}
            )
            result = decode(self.system, response, wire.IncidentPage)
            yield result.data
            if not result.has_next or not result.data:
                return
            page += 1

    # -- reads -----------------------------------------------------------------------------

    async def get(self, ref: ObjectRef) -> VendorObject:
        return self._single(await self._call("GET", self._url(ref.scope, ref.external_id)))

    async def list_changed(self, since: datetime | None) -> AsyncIterator[list[VendorObject]]:
        sync_drafts = self.options.sync_drafts
        cutoff = as_utc(since) if since is not None else None
        for scope in self.settings.scopes:
            # Rows are asked for newest change first, so the walk may stop at the first
            # row older than the cutoff, but only while every row seen so far has come
            # in that order: a server that ignores ``sort`` is read to the end.
            newest_first = True
            previous: datetime | None = None
            async for rows in self._pages(scope, "updatedAt,desc"):
                batch: list[VendorObject] = []
                reached_older = False
                for i, row in enumerate(rows):
                    obj = self._object(row, f"$.data[{i}]")
                    if previous is not None and obj.updated_at > previous:
                        newest_first = False
                    previous = obj.updated_at
                    if cutoff is not None and obj.updated_at < cutoff:
                        reached_older = True
                        continue
                    if sync_drafts or row.get("publishedAt") is not None:
                        batch.append(obj)
                if batch:
                    yield batch
                if reached_older and newest_first:
                    break  # sorted, and checked: every later row is older still

    # -- writes ----------------------------------------------------------------------------

    async def create(
        self,
        target: CreateTarget,
        fields: Fields,
        idempotency_key: str,
        *,
        earlier_since: datetime | None = None,
    ) -> VendorObject:
        if not target.scope:
            raise Rejected(self.system, "creating an incident needs a status page id as scope")
        if fields.title is UNSET:
            raise Rejected(self.system, "creating an incident needs a title")
        if earlier_since is not None:
            earlier = await self._find_created(target.scope, idempotency_key, earlier_since)
            if earlier is not None:
                return earlier
        text = fields.description if isinstance(fields.description, str) else ""
        priority = fields.priority if fields.priority is not UNSET else Priority.NORMAL
        request = wire.CreateIncidentRequest(
            title=fit(fields.title, self.max_lengths["title"]),
            impact=self._vendor_value("priority", priority),
            body=f"{text or fields.title}\n\n{idempotency_marker(idempotency_key)}",
            notify_subscribers=bool(target.params.get("notify_subscribers", False)),
        )
        if fields.status is not UNSET:
            request.status = self._vendor_value("status", fields.status)
        return self._single(await self._call("POST", self._url(target.scope), body=request))

    async def _find_created(self, scope: str, key: str, since: datetime) -> VendorObject | None:
        """The incident an earlier attempt with ``key`` made, found by its marker line
        among the incidents created since ``since`` (see the module docstring)."""
        floor = as_utc(since) - CREATE_SEARCH_SKEW
        async for rows in self._pages(scope, "createdAt,desc"):
            created = [as_utc(self._incident(row).created_at) for row in rows]
            for row, at in zip(rows, created, strict=True):
                if at < floor:
                    continue
                incident_id = str(row.get("id"))
                if self._initial_markers.get(incident_id, key) != key:
                    continue  # its timeline was read before, with another marker or none
                if row.get("updates") is None:  # list rows carry no timeline: read it
                    response = await self._call("GET", self._url(scope, incident_id))
                    row = decode(self.system, response, wire.SingleIncident).data
                if self._remembered_marker(incident_id, row) == key:
                    return self._object(row)
            in_order = all(a >= b for a, b in pairwise(created))
            if in_order and created and created[-1] < floor:
                return None  # newest first: every later page is older still
        return None

    def _remembered_marker(self, incident_id: str, raw: dict[str, Any]) -> str | None:
        """The marker key of an incident's initial update, kept for later look-ups once
        the timeline has been read: the initial update is never edited."""
        if not raw.get("updates"):
            return None  # no timeline read yet: nothing to remember
        found = self._marker_of(raw)
        if len(self._initial_markers) >= REMEMBERED_MARKERS:
            del self._initial_markers[next(iter(self._initial_markers))]  # the oldest
        self._initial_markers[incident_id] = found
        return found

    def marker_key(self, obj: VendorObject) -> str | None:
        return self._marker_of(obj.raw)

    def _marker_of(self, raw: dict[str, Any]) -> str | None:
        """The key in the marker line of an incident's initial update, if it has one."""
        if not raw.get("updates"):
            return None
        incident = self._incident(raw)
        initial = min(incident.updates or (), key=lambda u: u.created_at)
        found = MARKER_LINE.search(initial.body.rstrip().rsplit("\n", 1)[-1])
        return None if found is None else found.group(1)

    async def read_marker(self, obj: VendorObject) -> str | None:
        incident_id = obj.ref.external_id
        if obj.raw.get("updates") is None:  # a list row without its timeline
            if incident_id in self._initial_markers:
                return self._initial_markers[incident_id]
            obj = await self.get(obj.ref)
        return self._remembered_marker(incident_id, obj.raw)

    async def update(
        self, ref: ObjectRef, changes: Fields, current: VendorObject | None = None
    ) -> VendorObject:
        wanted = changes.only(self.writable)
        request = wire.UpdateIncidentRequest()
        if wanted.title is not UNSET:
            request.title = fit(wanted.title, self.max_lengths["title"])
        if wanted.status is not UNSET:
            request.status = self._vendor_value("status", wanted.status)
        if wanted.priority is not UNSET:
            request.impact = self._vendor_value("priority", wanted.priority)
        if request.is_empty():
            return await self.get(ref)
        return self._single(
            await self._call("PUT", self._url(ref.scope, ref.external_id), body=request)
        )

    # -- webhooks --------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        signing.devhelm_verify(
            self.settings.webhook_secrets,
            headers.get("x-devhelm-signature"),
            body,
            now,
            tolerance_s=self.settings.webhook_tolerance_s,
            separators=SIGNATURE_SEPARATORS
            if self.options.signature_separator is None
            else (self.options.signature_separator,),
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        refuse_deep_json(body, "DevHelm")
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedPayload(f"DevHelm webhook body is not JSON: {exc}") from None
        try:
            event = msgspec.convert(payload, wire.PlatformEvent)
        except msgspec.ValidationError as exc:
            raise UnreadablePayload(f"not a DevHelm platform event: {exc}") from None
        delivery_id = event.id or headers.get("x-devhelm-delivery", "")
        if not delivery_id:
            raise UnreadablePayload("DevHelm platform event carries no id")
        # Platform events never name a status-page incident: the best they can do is
        # prompt a poll of the pages we follow.
        return WebhookEvent(
            delivery_id=delivery_id,
            event_type=event.type,
            poll=True,
        )
