"""The incident.io adapter: follow-ups read and written over REST v3 (v2 selectable), Standard
Webhooks (Svix) verification, and the follow-up status map.

Options (``systems.incidentio.options``, declared by ``IncidentIoOptions``):

- ``api_version``: ``"v3"`` (default) or ``"v2"``. v2 uses ``/v2/follow_ups`` with the same
  bodies; its list takes no pagination parameters and answers everything in one response,
  so ``since`` is applied client-side there.
- ``incident_mode``: one of standard, retrospective, test, tutorial, stream. Passed to every
  list call (polling and the create look-up). Unset, incident.io lists only follow-ups of
  standard and retrospective incidents, so a listing of one incident (a scope, the create
  look-up) asks for each hidden mode too: the default, then ``incident_mode=test``,
  ``tutorial`` and ``stream`` (the parameter takes one value). A test incident named as a
  scope is therefore polled; a global listing follows incident.io's default.

Scopes are incident ids. With ``settings.scopes`` empty, polling lists globally; otherwise
it lists each incident in turn (``incident_id=``).

Update: ``PUT`` sends the follow-up's whole writable state as last read (title, status,
description, labels, category, priority option, assignee, assignee team), with the
changes laid over it, because whether PUT clears an optional field it is not sent is
undocumented (open question 7). ``current`` is used when it is a complete read of the
follow-up (raw JSON of this API version); otherwise the follow-up is read first. On v2 the
category cannot be read, so a v2 PUT cannot carry it.

Create marker: incident.io has no idempotency key for follow-ups, so ``create`` adds the
label ``syncgate:<idempotency_key>`` to every follow-up it makes and, before posting a
retry (``earlier_since``: an earlier attempt may have reached incident.io; the first
attempt skips this), lists the incident's follow-ups created since that attempt started
(``created_at[gte]``, less a clock-skew margin) and returns the one that already carries
that label (completing its status if an earlier attempt stopped between the POST and the
PUT). The search reads a page or two, however many follow-ups the incident has.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from adapters._http import decode, delay_value, send, shape_error
from adapters.base import (
    CREATE_SEARCH_SKEW,
    Adapter,
    AdapterOptions,
    AdapterSettings,
    refuse_deep_json,
)
from adapters.incidentio.wire import (
    CreatePayload,
    FollowUp,
    FollowUpEnvelope,
    FollowUpList,
    PrivateResource,
    UpdatePayload,
)
from adapters.signing import standard_verify
from app.errors import (
    MalformedPayload,
    Rejected,
    TransientError,
    UnreadablePayload,
)
from app.model import (
    CreateTarget,
    Fields,
    ObjectRef,
    Status,
    ValueMap,
    VendorObject,
    WebhookEvent,
    as_utc,
    utcnow,
)

SYSTEM = "incidentio"
#: Label prefix of the create marker (see the module docstring).
MARKER_PREFIX = "syncgate:"
#: Largest v3 ``page_size`` requested. The documented default is 25; the maximum is not
#: documented (vendors.md, open question 7), so stay at a value well inside any plausible cap.
MAX_PAGE_SIZE = 250
#: Incident modes whose follow-ups the list leaves out unless asked for by name.
HIDDEN_BY_DEFAULT = ("test", "tutorial", "stream")
PUBLIC_EVENTS = frozenset(
    {"public_incident.follow_up_created_v2", "public_incident.follow_up_updated_v2"}
)
PRIVATE_EVENTS = frozenset(
    {"private_incident.follow_up_created_v2", "private_incident.follow_up_updated_v2"}
)
#: The status incident.io refuses on update (DELETE is the way to delete).
DELETED = "deleted"
_CANONICAL_STATUSES = frozenset(s.value for s in Status)


def read_error(body: Any) -> str | None:
    """The message of an incident.io error body: ``errors[].message`` (with the offending
    field where given), else the error ``type``."""
    if not isinstance(body, dict):
        return None
    messages = []
    for error in body.get("errors") or ():
        if not isinstance(error, dict) or not error.get("message"):
            continue
        source = error.get("source")
        field = source.get("field") if isinstance(source, dict) else None
        messages.append(f"{error['message']} ({field})" if field else str(error["message"]))
    if messages:
        return "; ".join(messages)
    kind = body.get("type")
    return str(kind) if kind else None


def read_retry_after(body: Any, now: float) -> float | None:
    """The delay in a 429 body's ``rate_limit.retry_after`` (an RFC 3339 moment per the
    spec and the SDK; one documentation example shows an HTTP date: both are read). Used
    only when no header gives a delay."""
    rate_limit = body.get("rate_limit") if isinstance(body, dict) else None
    if not isinstance(rate_limit, dict):
        return None
    return delay_value(rate_limit.get("retry_after"), now)


def _as_status(canonical: str | None) -> Status | None:
    """A canonical status read through the map; None when unmapped (or mapped to a value
    that is not canonical, which config validation should have refused)."""
    if canonical is None or canonical not in _CANONICAL_STATUSES:
        return None
    return Status(canonical)


def rfc3339(value: datetime) -> str:
    """``value`` as incident.io writes times: UTC, microseconds, ``Z``."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _created_at(obj: VendorObject) -> datetime:
    """When a follow-up was created (its ``created_at``); an unreadable one counts as now,
    so that a search for recent follow-ups never skips it."""
    raw = obj.raw.get("created_at")
    try:
        return as_utc(datetime.fromisoformat(str(raw)))
    except ValueError:
        return utcnow()


class IncidentIoOptions(AdapterOptions, frozen=True):
    """The options of the incident.io adapter (see the module docstring)."""

    #: The REST API version to read and write follow-ups with.
    api_version: Literal["v3", "v2"] = "v3"
    #: The incident mode passed to every list call. Unset, a listing of one incident also
    #: asks for each mode incident.io hides by default; a global listing follows its default.
    incident_mode: Literal["standard", "retrospective", "test", "tutorial", "stream"] | None = None


class IncidentIoAdapter(Adapter):
    """incident.io follow-ups; the scope of a follow-up is its incident id."""

    system: ClassVar[str] = SYSTEM
    readable: ClassVar[frozenset[str]] = frozenset({"title", "description", "status", "assignee"})
    writable: ClassVar[frozenset[str]] = frozenset({"title", "description", "status", "assignee"})
    blank_refused: ClassVar[frozenset[str]] = frozenset({"title"})
    can_create: ClassVar[bool] = True
    Options: ClassVar[type[IncidentIoOptions]] = IncidentIoOptions
    stored_headers = frozenset({"webhook-id", "webhook-timestamp"})
    options: IncidentIoOptions

    def __init__(self, settings: AdapterSettings, client: httpx.AsyncClient) -> None:
        super().__init__(settings, client)
        self._root = f"{settings.base_url.rstrip('/')}/{self.options.api_version}/follow_ups"
        self._auth = {"Authorization": f"Bearer {settings.api_key}"}

    @classmethod
    def default_value_maps(cls) -> dict[str, ValueMap]:
        # Priorities are per-account option ids in incident.io, so there is no priority map.
        return {
            "status": ValueMap(
                inbound={
                    "outstanding": "open",
                    "completed": "resolved",
                    "not_doing": "cancelled",
                    "deleted": "cancelled",
                },
                outbound={
                    "open": ["outstanding"],
                    "acknowledged": ["outstanding"],
                    "monitoring": ["outstanding"],
                    "waiting": ["outstanding"],
                    "resolved": ["completed"],
                    "closed": ["completed"],
                    "cancelled": ["not_doing"],
                },
            )
        }

    # -- plumbing --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str = "",
        *,
        body: msgspec.Struct | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = dict(self._auth)
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = msgspec.json.encode(body)
        return await send(
            self.client,
            SYSTEM,
            method,
            self._root + path,
            read_error,
            retry_reader=read_retry_after,
            headers=headers,
            content=content,
            params=params,
        )

    def _read(
        self, raw: msgspec.Raw, at: str, response: httpx.Response | None = None
    ) -> VendorObject:
        """One follow-up found at ``at`` in ``response``; a misfit names the field."""
        try:
            follow_up = msgspec.json.decode(raw, type=FollowUp)
            data = msgspec.json.decode(raw, type=dict[str, Any])
        except msgspec.DecodeError as exc:
            raise shape_error(SYSTEM, exc, prefix=at, response=response) from exc
        return self.to_vendor_object(follow_up, data, whole=True)

    def _one(self, response: httpx.Response) -> VendorObject:
        envelope: FollowUpEnvelope = decode(SYSTEM, response, FollowUpEnvelope)
        return self._read(envelope.follow_up, "$.follow_up", response)

    def to_vendor_object(
        self, follow_up: FollowUp, raw: dict[str, Any], *, whole: bool = False
    ) -> VendorObject:
        """Map one follow-up (any version's shape) onto canonical fields; ``whole``: read
        through the REST API (see ``_complete_read``)."""
        status = _as_status(self.value_maps["status"].to_canonical(follow_up.status))
        fields = Fields(
            title=follow_up.title,
            # incident.io omits an empty description; canonically that is "".
            description=follow_up.description or "",
            status=UNSET if status is None else status,
            assignee=follow_up.assignee.id if follow_up.assignee else None,
        )
        return VendorObject(
            ref=ObjectRef(SYSTEM, follow_up.incident_id, follow_up.id),
            updated_at=as_utc(follow_up.updated_at),
            fields=fields,
            native={"status": follow_up.status},
            unmapped={"status": follow_up.status} if status is None else {},
            raw=raw,
            whole=whole,
            created_at=None if follow_up.created_at is None else as_utc(follow_up.created_at),
        )

    def marker_key(self, obj: VendorObject) -> str | None:
        for label in obj.raw.get("labels") or ():
            if isinstance(label, str) and label.startswith(MARKER_PREFIX):
                return label.removeprefix(MARKER_PREFIX)
        return None

    # -- reads -----------------------------------------------------------------------------

    async def get(self, ref: ObjectRef) -> VendorObject:
        return self._one(await self._call("GET", "/" + quote(ref.external_id, safe="")))

    async def list_changed(self, since: datetime | None) -> AsyncIterator[list[VendorObject]]:
        for incident_id in self.settings.scopes or (None,):
            async for page in self._pages(incident_id, since):
                yield page

    def _modes(self, incident_id: str | None) -> tuple[str | None, ...]:
        """The ``incident_mode`` filters one listing needs (None: incident.io's default,
        standard and retrospective incidents only). Listing one incident walks every mode
        (the parameter takes one value), since a scope may be a test, tutorial or stream
        incident whose follow-ups the default hides; with one incident named, the other
        modes answer an empty page each."""
        if self.options.incident_mode:
            return (self.options.incident_mode,)
        if incident_id:
            return (None, *HIDDEN_BY_DEFAULT)
        return (None,)

    async def _pages(
        self,
        incident_id: str | None,
        since: datetime | None,
        *,
        created_since: datetime | None = None,
    ) -> AsyncGenerator[list[VendorObject], None]:
        """Every follow-up changed at or after ``since`` (of ``incident_id``, if given,
        whatever its incident's mode), a page at a time."""
        for mode in self._modes(incident_id):
            params: dict[str, str] = {}
            if incident_id:
                params["incident_id"] = incident_id
            if mode:
                params["incident_mode"] = mode
            async for page in self._walk(params, since, created_since):
                yield page

    async def _walk(
        self, params: dict[str, str], since: datetime | None, created_since: datetime | None
    ) -> AsyncGenerator[list[VendorObject], None]:
        if self.options.api_version == "v2":
            response = await self._call("GET", params=params)
            listing = decode(SYSTEM, response, FollowUpList)
            objects = [
                self._read(raw, f"$.follow_ups[{i}]", response)
                for i, raw in enumerate(listing.follow_ups)
            ]
            if since is not None:
                objects = [o for o in objects if o.updated_at >= since]
            if created_since is not None:
                objects = [o for o in objects if _created_at(o) >= created_since]
            if objects:
                yield objects
            return
        params["page_size"] = str(max(1, min(self.settings.page_size, MAX_PAGE_SIZE)))
        if since is not None:
            params["updated_at[gte]"] = rfc3339(since)
        if created_since is not None:
            params["created_at[gte]"] = rfc3339(created_since)
        after: str | None = None
        while True:
            if after is not None:
                params["after"] = after
            response = await self._call("GET", params=params)
            listing = decode(SYSTEM, response, FollowUpList)
            page = [
                self._read(raw, f"$.follow_ups[{i}]", response)
                for i, raw in enumerate(listing.follow_ups)
            ]
            if page:
                yield page
            cursor = listing.pagination_meta.after if listing.pagination_meta else None
            if not cursor:
                return
            if cursor == after:
                raise TransientError(SYSTEM, f"list cursor did not advance past {cursor}")
            after = cursor

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
            raise Rejected(SYSTEM, "a follow-up belongs to an incident: the target scope is empty")
        wanted = fields.only(self.writable)
        if not isinstance(wanted.title, str) or not wanted.title:
            raise Rejected(SYSTEM, "a follow-up needs a title")
        marker = MARKER_PREFIX + idempotency_key
        # no idempotency key: a retry first looks for what an earlier attempt made
        made = (
            await self._find_marked(target.scope, marker, earlier_since)
            if earlier_since is not None
            else None
        )
        if made is None:
            payload = CreatePayload(
                incident_id=target.scope,
                title=wanted.title,
                description=wanted.description,
                # Create has no null: leaving it out is unassigned.
                assignee_id=wanted.assignee if isinstance(wanted.assignee, str) else UNSET,
                labels=[marker],
            )
            made = self._one(await self._call("POST", body=payload))
        # Create cannot set a status (it starts outstanding); the rest follows with a PUT,
        # which also completes an earlier attempt that stopped between the two calls.
        rest = self.differs(made, wanted)
        if rest.is_empty():
            return made
        return await self.update(made.ref, rest, current=made)

    async def _find_marked(
        self, incident_id: str, marker: str, since: datetime
    ) -> VendorObject | None:
        """The follow-up an earlier attempt made, by its marker label, among the
        incident's follow-ups created since that attempt started (less a skew margin)."""
        floor = as_utc(since) - CREATE_SEARCH_SKEW
        pages = self._pages(incident_id, None, created_since=floor)
        async with aclosing(pages) as pages:
            async for page in pages:
                for obj in page:
                    if marker in obj.raw.get("labels", ()):
                        return obj
        return None

    async def update(
        self, ref: ObjectRef, changes: Fields, current: VendorObject | None = None
    ) -> VendorObject:
        wanted = changes.only(self.writable)
        # PUT needs the unchanged status and title, and resends every other writable field
        # as last read (see UpdatePayload): read first unless ``current`` carries all that.
        if current is None or not self._complete_read(current, ref):
            current = await self.get(ref)
        state = self._state(current)
        status = state.status
        if wanted.status is not UNSET:
            status_map = self.value_maps["status"]
            if not status_map.holds(status, wanted.status):
                mapped = status_map.to_vendor(wanted.status)
                if mapped is None:
                    raise Rejected(SYSTEM, f"no follow-up status is mapped for {wanted.status!r}")
                status = mapped
        if status == DELETED:
            raise Rejected(
                SYSTEM, "the follow-up is deleted; incident.io refuses deleted on update"
            )
        title = wanted.title if isinstance(wanted.title, str) else state.title
        if wanted.description is not UNSET:
            description: str | UnsetType = str(wanted.description)
        else:
            description = UNSET if state.description is None else state.description
        if wanted.assignee is not UNSET:
            assignee: str | UnsetType | None = (
                None if wanted.assignee is None else str(wanted.assignee)
            )
        else:
            assignee = state.assignee.id if state.assignee else UNSET
        payload = UpdatePayload(
            status=status,
            title=title,
            description=description,
            assignee_id=assignee,
            assignee_team_id=state.assignee_team.id if state.assignee_team else UNSET,
            follow_up_category_id=state.category.id if state.category else UNSET,
            follow_up_priority_option_id=state.priority.id if state.priority else UNSET,
            labels=list(state.labels),
        )
        return self._one(
            await self._call("PUT", "/" + quote(ref.external_id, safe=""), body=payload)
        )

    def _complete_read(self, current: VendorObject, ref: ObjectRef) -> bool:
        """Whether ``current.raw`` is a whole follow-up of this API version, enough to
        resend its writable state. The gateway's stored state keeps no raw JSON, so this
        holds only for an object read moments ago. In v3, a raw follow-up without
        ``category`` may be the V2 shape of a webhook (which never carries one), so it is
        read again (resending it without the category could clear that), unless it came
        from the REST API (``whole``), where a missing category means there is none."""
        raw = current.raw
        if not raw or raw.get("id") != ref.external_id:
            return False
        if not all(key in raw for key in ("title", "status", "labels")):
            return False
        return self.options.api_version == "v2" or current.whole or "category" in raw

    def _state(self, current: VendorObject) -> FollowUp:
        try:
            return msgspec.convert(current.raw, FollowUp)
        except msgspec.ValidationError as exc:
            raise shape_error(SYSTEM, exc, prefix="$.follow_up") from exc

    # -- webhooks --------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        standard_verify(
            self.settings.webhook_secrets, headers, body, now, self.settings.webhook_tolerance_s
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        refuse_deep_json(body, "incident.io")
        # The resource sits under a key named after the event type, so read the type first.
        try:
            parts = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
            event_type = msgspec.json.decode(parts.get("event_type", b"null"), type=str)
        except msgspec.ValidationError as exc:
            raise UnreadablePayload(f"not an incident.io webhook: {exc}") from None
        except msgspec.DecodeError as exc:
            raise MalformedPayload(f"body is not JSON: {exc}") from None
        delivery_id = headers.get("webhook-id")
        if not delivery_id:
            raise UnreadablePayload("missing webhook-id header")
        resource = parts.get(event_type)
        if resource is None or event_type not in PUBLIC_EVENTS | PRIVATE_EVENTS:
            raise UnreadablePayload(f"not a follow-up v2 event: {event_type!r}")
        try:
            if event_type in PRIVATE_EVENTS:
                # Private incidents name only the follow-up; get() needs nothing more.
                private = msgspec.json.decode(resource, type=PrivateResource)
                return WebhookEvent(
                    delivery_id=delivery_id,
                    event_type=event_type,
                    hints=[ObjectRef(SYSTEM, "", private.id)],
                )
            follow_up = msgspec.json.decode(resource, type=FollowUp)
            raw = msgspec.json.decode(resource, type=dict[str, Any])
        except msgspec.DecodeError as exc:
            raise UnreadablePayload(f"{event_type} payload is not a follow-up: {exc}") from None
        return WebhookEvent(
            delivery_id=delivery_id,
            event_type=event_type,
            observations=[self.to_vendor_object(follow_up, raw)],
        )
