"""The hookstream adapter: reads and writes issues over ``/v1/issues``, reads the
``issue_opened`` notification as a hint to poll.

hookstream opens, groups and auto-resolves issues itself and sends no webhook when an
issue changes, so Syncgate polls it (``status=all``, every page, times compared here
because the list has no time filter). Only ``status`` and ``snoozed_until`` can be
written; ``create`` is refused without a call.

Change detection: an issue's change time is the later of ``updated_at`` and
``resolved_at``. Whether an auto-resolve moves ``updated_at`` is undocumented; if it
moves only ``status`` and ``resolved_at``, the resolve still counts as a change at
``resolved_at``, so ``list_changed(since)`` reports it and the engine does not take it for
an old observation. This costs nothing: the list has no time filter, so every poll reads
every page anyway, and choosing what to report is done here. (A resolve stamped earlier
than it becomes visible is covered by the poller's overlap window.)

Signatures: both documented forms are accepted by default (vendors.md, decision 2): with
``X-hookstream-Timestamp`` the signed string is ``{ts}.{body}`` and the timestamp must be
within ``webhook_tolerance_s``; without it, ``sha256=`` over the bare body (replayable, but
a notification is only a hint to poll, and a replay of one makes one more poll). The
option ``require_timestamp`` (``HookstreamOptions``) is the stricter opt-in for a channel
known to send the timestamp.

Reads: an issue read (GET or PATCH) without ``updated_at`` (the guide's bare detail) is
replaced by the issue's row in the list, which carries it (``_timed``): dated by its last
failure, a person's later change would lose to the gateway's value before a write.

``settings.base_url`` is hookstream's origin (``https://hookstream.io``); the documented
form with the ``/v1`` suffix is accepted as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec

from adapters import _http, signing
from adapters.base import Adapter, AdapterOptions, AdapterSettings, refuse_deep_json
from adapters.hookstream import wire
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
    ValueMap,
    VendorObject,
    WebhookEvent,
    as_utc,
)

#: hookstream's documented maximum for ``limit`` on the issues list.
MAX_PAGE_SIZE = 100


def _error_message(body: Any) -> str | None:
    """hookstream errors are ``{"error", "status", "request_id"}``; keep the request id,
    it is what hookstream support asks for."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None
    request_id = body.get("request_id")
    return f"{body['error']} [{request_id}]" if isinstance(request_id, str) else body["error"]


class HookstreamOptions(AdapterOptions, frozen=True):
    """The options of the hookstream adapter."""

    #: Refuse a notification that lacks ``X-hookstream-Timestamp`` (by default the
    #: body-only signature is accepted too; see the module docstring).
    require_timestamp: bool = False


class HookstreamAdapter(Adapter):
    """hookstream issues (webhook-delivery failures); ids are global, so the scope is ""."""

    system: ClassVar[str] = "hookstream"
    readable: ClassVar[frozenset[str]] = frozenset(
        {"title", "description", "status", "snoozed_until"}
    )
    writable: ClassVar[frozenset[str]] = frozenset({"status", "snoozed_until"})
    can_create: ClassVar[bool] = False
    Options: ClassVar[type[HookstreamOptions]] = HookstreamOptions
    stored_headers = frozenset({"x-hookstream-timestamp"})
    options: HookstreamOptions

    def __init__(self, settings: AdapterSettings, client: httpx.AsyncClient) -> None:
        super().__init__(settings, client)
        origin = settings.base_url.rstrip("/")
        self._issues_url = origin.removesuffix("/v1") + "/v1/issues"
        self._headers = {"X-API-Key": settings.api_key, "Accept": "application/json"}
        self._page_size = max(1, min(settings.page_size, MAX_PAGE_SIZE))

    @classmethod
    def default_value_maps(cls) -> dict[str, ValueMap]:
        return {
            "status": ValueMap(
                inbound={"open": "open", "acknowledged": "acknowledged", "resolved": "resolved"},
                outbound={
                    "open": ["open"],
                    "acknowledged": ["acknowledged"],
                    "monitoring": ["acknowledged"],
                    "waiting": ["acknowledged"],
                    "resolved": ["resolved"],
                    "closed": ["resolved"],
                    "cancelled": ["resolved"],
                },
            )
        }

    # -- mapping ---------------------------------------------------------------------------

    def to_vendor_object(
        self, raw: dict[str, Any], at: str = "$", response: httpx.Response | None = None
    ) -> VendorObject:
        """One issue JSON object (either documented shape), found at ``at`` in
        ``response``, as a ``VendorObject``."""
        issue = _http.convert(self.system, raw, wire.Issue, at=at, response=response)
        # The guide's shape has no updated_at; its latest timestamp is the best stand-in.
        updated_at = issue.updated_at or issue.last_seen_at or issue.created_at
        updated_at = updated_at or issue.first_seen_at
        if updated_at is None:
            raise TransientError(
                self.system,
                f"response did not fit the expected shape at {at}: issue {issue.id} carries "
                "no updated_at, last_seen_at, created_at or first_seen_at",
            )
        updated_at = as_utc(updated_at)
        if issue.resolved_at is not None:  # an auto-resolve may leave updated_at alone
            updated_at = max(updated_at, as_utc(issue.resolved_at))
        status = self.value_maps["status"].to_canonical(issue.status)
        unmapped = {} if status is not None else {"status": issue.status}
        fields: dict[str, Any] = {
            "title": issue.title or self._guide_title(issue),
            "description": issue.last_error or issue.message or "",
        }
        # The guide's shape has no snoozed_until at all: absent is unknown, not unsnoozed.
        if "snoozed_until" in raw:
            snoozed = issue.snoozed_until
            fields["snoozed_until"] = as_utc(snoozed) if snoozed else None
        if status is not None:
            fields["status"] = status
        # The guide's shape has no created_at; the first failure seen made the issue.
        created_at = issue.created_at or issue.first_seen_at
        return VendorObject(
            ref=ObjectRef(self.system, "", issue.id),
            updated_at=as_utc(updated_at),
            fields=Fields.from_dict(fields),
            native={"status": issue.status},
            unmapped=unmapped,
            raw=raw,
            created_at=None if created_at is None else as_utc(created_at),
        )

    @staticmethod
    def _guide_title(issue: wire.Issue) -> str:
        """The title the guide's untitled shape implies: destination and error type."""
        destination = issue.destination_name or issue.destination_id or "destination"
        return f"{destination}: {issue.error_type or 'error'}"

    def _render(self, changes: Fields) -> wire.IssueUpdate:
        update = wire.IssueUpdate()
        if changes.status is not msgspec.UNSET:
            status = self.value_maps["status"].to_vendor(str(changes.status))
            if status is None:
                raise Rejected(self.system, f"no hookstream status for {changes.status!s}")
            update.status = status
        if changes.snoozed_until is not msgspec.UNSET:
            snoozed = changes.snoozed_until
            update.snoozed_until = as_utc(snoozed) if snoozed is not None else None
        return update

    # -- calls -----------------------------------------------------------------------------

    def _issue_url(self, external_id: str) -> str:
        return f"{self._issues_url}/{quote(external_id, safe='')}"

    def _read_issue(self, response: httpx.Response) -> VendorObject:
        """The issue of a get/update response, wrapped (the reference) or bare (the guide)."""
        body = _http.decode(self.system, response, dict[str, Any])
        inner = body.get("issue")
        if isinstance(inner, dict):
            return self.to_vendor_object(inner, "$.issue", response)
        return self.to_vendor_object(body, "$", response)

    async def get(self, ref: ObjectRef) -> VendorObject:
        response = await _http.send(
            self.client,
            self.system,
            "GET",
            self._issue_url(ref.external_id),
            _error_message,
            headers=self._headers,
        )
        return await self._timed(self._read_issue(response))

    async def _timed(self, obj: VendorObject) -> VendorObject:
        """``obj``, or, when it is in the guide's shape with no ``updated_at``, the same
        issue as the list shows it (vendors.md §1: the guide's detail has no change time;
        the reference's object has one). The stand-in time of the guide's shape (the last
        failure) is older than a person's later change: read before a write, such a
        change would lose to the gateway's value and be overwritten. The list is filtered
        by the issue's destination, so this reads a page or two. Should the list not
        show the issue with a time either, the stand-in stays."""
        if obj.raw.get("updated_at") is not None:
            return obj
        params: dict[str, Any] = {"limit": MAX_PAGE_SIZE}
        destination = obj.raw.get("destination_id")
        if isinstance(destination, str) and destination:
            params["destination_id"] = destination
        async for page, response in self._issue_pages(params):
            for i, raw in enumerate(page.issues):
                if raw.get("id") == obj.ref.external_id and raw.get("updated_at") is not None:
                    return self.to_vendor_object(raw, f"$.issues[{i}]", response)
        return obj

    async def _issue_pages(
        self, params: dict[str, Any]
    ) -> AsyncIterator[tuple[wire.IssuePage, httpx.Response]]:
        """The issue list (every status, ``params`` added), one page at a time by offset."""
        offset = 0
        while True:
            response = await _http.send(
                self.client,
                self.system,
                "GET",
                self._issues_url,
                _error_message,
                headers=self._headers,
                params={"status": "all", **params, "offset": offset},
            )
            page = _http.decode(self.system, response, wire.IssuePage)
            yield page, response
            if not page.pagination.has_more or not page.issues:
                return
            offset += len(page.issues)

    async def list_changed(self, since: datetime | None) -> AsyncIterator[list[VendorObject]]:
        cutoff = as_utc(since) if since is not None else None
        seen: set[str] = set()  # offsets shift if issues open mid-walk; list each once
        async for page, response in self._issue_pages({"limit": self._page_size}):
            objects = [
                self.to_vendor_object(raw, f"$.issues[{i}]", response)
                for i, raw in enumerate(page.issues)
            ]
            fresh = [
                obj
                for obj in objects
                if obj.ref.external_id not in seen and (cutoff is None or obj.updated_at >= cutoff)
            ]
            seen.update(obj.ref.external_id for obj in objects)
            if fresh:
                yield fresh

    async def create(
        self,
        target: CreateTarget,
        fields: Fields,
        idempotency_key: str,
        *,
        earlier_since: datetime | None = None,
    ) -> VendorObject:
        raise Rejected(self.system, "hookstream creates issues itself")

    async def update(
        self, ref: ObjectRef, changes: Fields, current: VendorObject | None = None
    ) -> VendorObject:
        payload = self._render(changes.only(self.writable))
        if payload.status is msgspec.UNSET and payload.snoozed_until is msgspec.UNSET:
            return await self.get(ref)  # nothing hookstream lets us write: just read
        response = await _http.send(
            self.client,
            self.system,
            "PATCH",
            self._issue_url(ref.external_id),
            _error_message,
            headers={**self._headers, "Content-Type": "application/json"},
            content=msgspec.json.encode(payload),
        )
        return await self._timed(self._read_issue(response))

    # -- webhooks --------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        signing.hookstream_verify(
            self.settings.webhook_secrets,
            headers,
            body,
            now,
            self.settings.webhook_tolerance_s,
            require_timestamp=self.options.require_timestamp,
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        refuse_deep_json(body, "hookstream")
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedPayload(f"hookstream notification is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise UnreadablePayload("hookstream notification is not a JSON object")
        # hookstream sends no delivery id; the body hash makes redeliveries collapse.
        delivery_id = "hs-" + hashlib.sha256(body).hexdigest()
        try:
            notification = msgspec.convert(payload, wire.Notification)
        except msgspec.ValidationError:
            notification = None
        if notification is not None and notification.issue is not None:
            return WebhookEvent(
                delivery_id=delivery_id,
                event_type="issue_opened",
                hints=[ObjectRef(self.system, "", notification.issue.id)],
            )
        event = payload.get("event") or payload.get("rule_type")
        return WebhookEvent(
            delivery_id=delivery_id,
            event_type=event if isinstance(event, str) else "notification",
            poll=True,
        )
