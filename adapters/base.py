"""The one interface every vendor adapter implements, and the settings it is built from.

Obligations of every adapter (the contract suite in tests/contract checks them):

- No httpx exception escapes: every failure is one of the families in ``app.errors``.
- ``verify_webhook`` and ``parse_webhook`` do no I/O.
- ``update`` is safe to repeat: it sends absolute values, never increments.
- ``create`` never duplicates an object when retried with the same ``idempotency_key``.
- Field maps come from configuration (``AdapterSettings.value_maps``) laid over the
  adapter's defaults (``default_value_maps``).
- Vendor-specific knobs are declared, not parsed: ``Options`` is a struct with one field
  per option; the config checker validates ``systems.<name>.options`` against it (with
  file and line), and the adapter reads them as ``self.options``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
import msgspec

from app.errors import ConfigError, ConfigIssue, MalformedPayload
from app.model import (
    MAPPED_FIELDS,
    MAX_JSON_DEPTH,
    CreateTarget,
    Fields,
    ObjectRef,
    ValueMap,
    VendorObject,
    WebhookEvent,
    json_too_deep,
)

#: How far before an earlier create attempt started a retried create looks for the object
#: it may have made: the vendor's clock may be behind ours by this much.
CREATE_SEARCH_SKEW = timedelta(minutes=5)


class AdapterSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What an adapter needs from configuration, with secrets already resolved.

    ``webhook_secrets`` may hold several secrets during a rotation; a delivery signed with
    any of them is accepted. ``options`` carries vendor-specific knobs as plain data; the
    adapter reads them through its ``Options`` struct.
    """

    base_url: str
    api_key: str
    webhook_secrets: tuple[str, ...] = ()
    webhook_tolerance_s: float = 300.0
    value_maps: dict[str, ValueMap] = msgspec.field(default_factory=dict)
    scopes: tuple[str, ...] = ()
    page_size: int = 100
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class AdapterOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The options of an adapter that takes none. An adapter with options subclasses it:
    one field per option, with its type (``Literal`` for a choice, ``Meta`` for a bound)
    and default, and a ``#:`` comment saying what it does."""


class Adapter(abc.ABC):
    """Talks to one vendor: reads, writes, webhooks, and the mapping to canonical fields."""

    #: The system name used in config, URLs and the mapping table.
    system: ClassVar[str]
    #: Canonical fields this vendor's objects carry (readable).
    readable: ClassVar[frozenset[str]]
    #: Canonical fields the vendor lets us write.
    writable: ClassVar[frozenset[str]]
    #: Whether ``create`` is supported (hookstream creates issues itself).
    can_create: ClassVar[bool] = True
    #: The longest text the vendor holds, per field, in UTF-16 code units (DevHelm: a
    #: title of 500). A longer canonical value is written cut to fit (``fit``), and an
    #: object that holds the cut value already holds it (``differs_in_meaning``): no
    #: write is refused for its length, and the cut never comes back as a change.
    max_lengths: ClassVar[Mapping[str, int]] = {}
    #: Text fields the vendor refuses empty or only whitespace (DevHelm and incident.io
    #: titles, an InboxOps subject). A blank canonical value is not written there
    #: (``Rules.outgoing``): sent, it was refused and the link dead-lettered, so no later
    #: change reached the object.
    blank_refused: ClassVar[frozenset[str]] = frozenset()
    #: The options this adapter reads (``systems.<name>.options`` in config.yaml).
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    #: The request headers kept with a stored webhook delivery (lower-case): those
    #: ``parse_webhook`` reads (the inbox parses the stored delivery again) and the
    #: vendor's delivery time. An allow-list: every other header (credentials a sender
    #: or a proxy adds, signatures) is dropped before the event is stored.
    stored_headers: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: AdapterSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.options: AdapterOptions = self.read_options(settings.options)
        defaults = self.default_value_maps()
        self.value_maps: dict[str, ValueMap] = {
            name: defaults[name].merged(settings.value_maps.get(name)) for name in defaults
        }

    @classmethod
    def read_options(cls, options: Mapping[str, Any]) -> AdapterOptions:
        """``options`` as this adapter's ``Options``. The config checker has refused bad
        options already, with their line; settings built in code get a ``ConfigError``."""
        try:
            return msgspec.convert(options, cls.Options)
        except msgspec.ValidationError as exc:
            issue = ConfigIssue("<settings>", None, f"systems.{cls.system}.options", str(exc))
            raise ConfigError([issue]) from None

    # -- mapping ---------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def default_value_maps(cls) -> dict[str, ValueMap]:
        """The default status (and priority, if any) maps of this vendor."""

    def read_enums(self, native: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """The canonical values of a vendor object's enum fields (``{"status":
        "MONITORING"}`` -> ``{"status": "monitoring"}``), and those that have no mapping
        (reported by the engine, never guessed)."""
        values: dict[str, str] = {}
        unmapped: dict[str, str] = {}
        for name, vendor_value in native.items():
            canonical = self.value_maps[name].to_canonical(vendor_value)
            if canonical is None:
                unmapped[name] = vendor_value
            else:
                values[name] = canonical
        return values, unmapped

    def differs(self, obj: VendorObject | None, target: Fields) -> Fields:
        """The fields of ``target`` that ``obj`` does not already hold *in meaning*,
        through this adapter's value maps (``differs_in_meaning``)."""
        return differs_in_meaning(self.value_maps, obj, target, self.max_lengths)

    # -- reads -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, ref: ObjectRef) -> VendorObject:
        """Fetch one object. Raises ``NotFound`` if it does not exist."""

    @abc.abstractmethod
    def list_changed(self, since: datetime | None) -> AsyncIterator[list[VendorObject]]:
        """Yield pages of objects changed at or after ``since`` (all objects if None).

        Uses the vendor's own pagination and filters; walks every configured scope
        (``settings.scopes``) where the vendor lists per scope.
        """

    # -- markers ---------------------------------------------------------------------------

    def marker_key(self, obj: VendorObject) -> str | None:
        """The idempotency key of the marker Syncgate left on ``obj`` when it created it
        (``syncgate-<work item>-<link>``), read from what the vendor returned; None when
        ``obj`` carries none (or the listing did not show it: see ``read_marker``)."""
        return None

    async def read_marker(self, obj: VendorObject) -> str | None:
        """``marker_key``, reading the object first where a listing does not show its
        marker (DevHelm list rows may come without the timeline)."""
        return self.marker_key(obj)

    # -- writes ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def create(
        self,
        target: CreateTarget,
        fields: Fields,
        idempotency_key: str,
        *,
        earlier_since: datetime | None = None,
    ) -> VendorObject:
        """Create an object holding ``fields``; a retry with the same key returns the same
        object instead of a second one.

        ``earlier_since`` is when an earlier attempt with this key started, if one may
        have reached the vendor (None on the first attempt). Vendors without an
        idempotency key look for that attempt's object among the objects created since
        then (less ``CREATE_SEARCH_SKEW``): a bounded search, never a scan of the
        vendor's history. Raises ``Rejected`` where the vendor cannot create.
        """

    @abc.abstractmethod
    async def update(
        self, ref: ObjectRef, changes: Fields, current: VendorObject | None = None
    ) -> VendorObject:
        """Write ``changes`` (only writable fields) with the vendor's own semantics and
        return the object as the vendor now holds it. ``current`` is the last known state,
        for vendors whose update needs unchanged fields (incident.io PUT needs the title).
        """

    # -- webhooks --------------------------------------------------------------------------

    @abc.abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        """Raise ``SignatureInvalid`` unless ``body`` is signed with a configured secret
        within the timestamp tolerance. ``headers`` keys are lower-case. No I/O.
        """

    @abc.abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Read a verified delivery. Raises ``MalformedPayload`` (not JSON) or
        ``UnreadablePayload`` (not a shape this vendor sends). No I/O.
        """


def differs_in_meaning(
    value_maps: Mapping[str, ValueMap],
    obj: VendorObject | None,
    target: Fields,
    max_lengths: Mapping[str, int] | None = None,
) -> Fields:
    """The fields of ``target`` that ``obj`` does not already hold *in meaning*.

    Mapped enums compare through the system's value map (``ValueMap.holds``: DevHelm
    MONITORING already means canonical ``acknowledged``); a text longer than the system
    holds (``max_lengths``) compares as it is written there, cut to fit (``fit``); other
    fields compare by value. An enum the object holds unmapped holds the canonical value
    it was set against (``VendorObject.held``). With no ``obj`` (not yet created) every
    field differs. The one implementation: the adapters use it through
    ``Adapter.differs``, the engine and the dispatcher through ``Rules.differs``.
    """
    if obj is None:
        return target
    out: dict[str, Any] = {}
    for name, value in target.items():
        if name in MAPPED_FIELDS and name in value_maps:
            if name in obj.unmapped and obj.held.get(name) == str(value):
                continue  # a custom value set against this one: left as it is
            if not value_maps[name].holds(obj.native.get(name), str(value)):
                out[name] = value
        elif max_lengths and name in max_lengths and isinstance(value, str):
            if getattr(obj.fields, name) != fit(value, max_lengths[name]):
                out[name] = value
        elif getattr(obj.fields, name) != value:
            out[name] = value
    return Fields(**out)


#: What ends a text cut to fit a vendor's limit (one UTF-16 code unit).
CUT = "\u2026"


def utf16_length(text: str) -> int:
    """``text``'s length in UTF-16 code units: what a limit in "characters" counts in a
    JVM or JavaScript service, and never less than its code points."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def fit(text: str, limit: int) -> str:
    """``text``, or when it is longer than ``limit`` UTF-16 code units (and so possibly
    longer than ``limit`` characters under either reading of a vendor's "characters"), its
    start cut on a character boundary and ended with ``CUT``, ``limit`` units at most."""
    if utf16_length(text) <= limit:
        return text
    room = limit - utf16_length(CUT)
    kept = 0
    for i, c in enumerate(text):
        kept += 2 if ord(c) > 0xFFFF else 1
        if kept > room:
            return text[:i] + CUT
    return text  # not reached: the text is longer than the room


def refuse_deep_json(body: bytes, vendor: str) -> None:
    """Raise ``MalformedPayload`` if ``body`` nests JSON deeper than ``MAX_JSON_DEPTH``
    (called by every ``parse_webhook`` before it decodes)."""
    if json_too_deep(body):
        raise MalformedPayload(f"{vendor} webhook body nests JSON deeper than {MAX_JSON_DEPTH}")


def lower_headers(headers: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict with lower-case names (the form ``verify_webhook`` expects)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k.lower(): v for k, v in items}
