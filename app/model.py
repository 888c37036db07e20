"""The canonical model: work items, canonical fields and enums, value maps, and observations.

Everything that crosses a layer boundary is one of these msgspec structs. Adapters map
vendor objects onto ``Fields``; the engine keeps the canonical ``WorkItem``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from app.errors import Invalid


class Status(enum.StrEnum):
    """Canonical status; every vendor status maps onto one of these (docs/field-maps.md)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MONITORING = "monitoring"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Priority(enum.StrEnum):
    """Canonical priority (InboxOps priority, DevHelm impact, ...)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


#: The canonical fields, in a stable order.
FIELD_NAMES: tuple[str, ...] = (
    "title",
    "description",
    "status",
    "priority",
    "snoozed_until",
    "assignee",
)

#: Fields whose vendor values are enums translated through a ``ValueMap``.
MAPPED_FIELDS: frozenset[str] = frozenset({"status", "priority"})


class Fields(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """A set of canonical field values; ``UNSET`` means "not part of this set".

    ``snoozed_until`` and ``assignee`` may be ``None``: that is a value (not snoozed,
    unassigned), not an absence.
    """

    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    snoozed_until: datetime | UnsetType | None = UNSET
    assignee: str | UnsetType | None = UNSET

    def items(self) -> Iterable[tuple[str, Any]]:
        """The (name, value) pairs that are set."""
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if value is not UNSET:
                yield name, value

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items())

    def only(self, names: Iterable[str]) -> Fields:
        """The subset of these fields named in ``names``."""
        wanted = set(names)
        return Fields(**{k: v for k, v in self.items() if k in wanted})

    def is_empty(self) -> bool:
        return not any(True for _ in self.items())

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> Fields:
        return msgspec.convert(dict(values), Fields)


class ValueMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Vendor values <-> canonical values for one enum field of one system.

    ``inbound`` reads a vendor value as a canonical one. ``outbound`` lists, for each
    canonical value, the vendor values that already *mean* it, the preferred one first:
    a write is needed only when the object's current value is not in that list. That is
    what keeps a many-to-one map from downgrading (DevHelm MONITORING already means
    canonical ``acknowledged``, so it is not rewritten to IDENTIFIED).
    """

    inbound: dict[str, str]
    outbound: dict[str, list[str]]
    #: As an override: replace the defaults instead of being laid over them.
    replace: bool = False

    def to_canonical(self, vendor_value: str) -> str | None:
        return self.inbound.get(vendor_value)

    def to_vendor(self, canonical: str) -> str | None:
        choices = self.outbound.get(canonical)
        return choices[0] if choices else None

    def holds(self, vendor_value: str | None, canonical: str) -> bool:
        """Whether an object holding ``vendor_value`` already means ``canonical``."""
        if vendor_value is None:
            return False
        return vendor_value in self.outbound.get(canonical, ()) or (
            self.inbound.get(vendor_value) == canonical
        )

    def merged(self, override: ValueMap | None) -> ValueMap:
        """This map with the entries of ``override`` (from config) laid over it."""
        if override is None:
            return self
        if override.replace:
            return ValueMap(inbound=dict(override.inbound), outbound=dict(override.outbound))
        return ValueMap(
            inbound={**self.inbound, **override.inbound},
            outbound={**self.outbound, **override.outbound},
        )


class Person(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One person across systems: the email is who they are (the canonical assignee),
    ``ids`` their user id in each system that has assignees."""

    email: str
    name: str = ""
    ids: dict[str, str] = msgspec.field(default_factory=dict)


class IdentityMap:
    """Assignees across systems, through people (docs/configuration.md, ``identities``).

    The canonical assignee is a person's email. A vendor user id is read as the person
    that system's id belongs to; one that belongs to nobody is kept as ``<system>:<id>``,
    so the work item says who holds it without guessing a person. Written to a system, a
    canonical assignee becomes that system's user id of the person, or of the
    ``<system>:<id>`` user once someone maps them; ``UNSET`` when there is none: an
    unmapped person is never written.
    """

    def __init__(self, people: Iterable[Person] = ()) -> None:
        self._people: dict[str, Person] = {}
        self._owner: dict[tuple[str, str], str] = {}
        for person in people:  # the first entry for an email or a user id wins
            email = person.email.lower()
            if email in self._people:
                continue
            owned = {
                system: user_id
                for system, user_id in person.ids.items()
                if self._owner.setdefault((system, user_id), email) == email
            }
            self._people[email] = msgspec.structs.replace(person, ids=owned)

    def canonical(self, system: str, user_id: str | None) -> str | None:
        """What ``system``'s user id means: a person's email, ``<system>:<id>`` for a
        user nobody is mapped to, None for no assignee."""
        if user_id is None:
            return None
        return self._owner.get((system, user_id), f"{system}:{user_id}")

    def named_users(self) -> dict[str, str]:
        """Every mapped user as ``<system>:<id>`` (how a work item names a user nobody
        was mapped to), and the email of the person they belong to."""
        return {f"{system}:{user_id}": email for (system, user_id), email in self._owner.items()}

    def email_of(self, canonical: str) -> str | None:
        """The person a canonical assignee names, if the map knows them."""
        if canonical.lower() in self._people:
            return canonical.lower()
        system, sep, user_id = canonical.partition(":")
        return self._owner.get((system, user_id)) if sep else None

    def user_id(self, canonical: str | None, system: str) -> str | UnsetType | None:
        """``system``'s user id for a canonical assignee (None: unassigned), or UNSET
        when that person has none there (or the map does not know them)."""
        if canonical is None:
            return None
        email = self.email_of(canonical)
        if email is not None and system in self._people[email].ids:
            return self._people[email].ids[system]
        origin, sep, user_id = canonical.partition(":")
        if sep and origin == system and user_id:
            return user_id  # a user of that very system, mapped or not
        return UNSET


class ObjectRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One vendor object: the system, the scope it lives in ("" if none) and its id.

    The scope is the DevHelm status page id or the incident.io incident id; ids are only
    unique within (system, scope).
    """

    system: str
    scope: str
    external_id: str


def without_nul(fields: Fields) -> Fields:
    """``fields`` with every NUL character taken out of their texts."""
    return msgspec.structs.replace(
        fields,
        **{k: v.replace("\x00", "") for k, v in fields.items() if isinstance(v, str)},
    )


class VendorObject(msgspec.Struct, frozen=True):
    """A vendor object as an adapter read it, already mapped to canonical fields.

    ``native`` keeps the vendor's own value of each mapped enum field (``{"status":
    "MONITORING"}``) so that "differs in meaning" can be decided without losing detail;
    ``unmapped`` names the enum values that have no canonical mapping (reported, never
    guessed). ``raw`` is the vendor JSON, for filters and the audit trail. ``whole``:
    ``raw`` is the object as the vendor's REST API answered it (a read, a listing or a
    write's answer), not a webhook's view of it, which may leave fields out.
    ``created_at`` is when the vendor made the object, None where it does not say: an
    object of unknown age is never taken for a new one (creation rules skip it).
    ``held`` is the gateway's, never the vendor's: for each unmapped value of the
    object as a link last knew it, the canonical value the work item had when that
    value was first seen. The object is taken to hold that canonical value (a person's
    custom value is not written over by the state it was set against), until the item
    takes another (``differs_in_meaning``; set by the engine, ``Engine._hold``).
    ``read_at`` is the gateway's too: when (its clock) the read that returned the object
    began (a poll, a fetch, the read before a write), None for a webhook's view. A read
    begun after the link last recorded the object shows it as of then or later, so a
    change it shows is newer than what was recorded whatever the vendor's time says (a
    vendor clock stepped back: ``Engine._observe``). Not kept with the link.
    ``unsent``, the gateway's as well: on the read before a write, the unconfirmed states
    that write's own claim noted (``Dispatcher._noted``). The read comes before the call,
    so the object cannot show one of them as that write's echo: a value of one is a
    person's (``Engine._own_write``). Not kept with the link.
    ``recorded_at``, on a link's known view: when (the gateway's clock) the link recorded
    it from an observation, a webhook's included (``Batch.saw``); None for a write's
    answer, recorded at the link's ``last_synced_at``. A read begun before then may show
    the object as it was before that view: it is no newer (``Engine._stepped_back``).
    ``reread``, on a link's known view: a change dated before it came that cannot be
    told from a late delivery, so the object is read before the link's next write even
    when that write has nothing to send (``Engine._stepped_back``); kept until a read or
    a write's answer replaces the view.
    """

    ref: ObjectRef
    updated_at: datetime
    fields: Fields
    native: dict[str, str] = msgspec.field(default_factory=dict)
    unmapped: dict[str, str] = msgspec.field(default_factory=dict)
    raw: dict[str, Any] = msgspec.field(default_factory=dict)
    whole: bool = False
    created_at: datetime | None = None
    held: dict[str, str] = msgspec.field(default_factory=dict)
    read_at: datetime | None = None
    unsent: tuple[dict[str, Any], ...] = ()
    recorded_at: datetime | None = None
    reread: bool = False

    def __post_init__(self) -> None:
        # A vendor's text may hold a NUL (JSON "\u0000"), which no PostgreSQL text
        # column takes: read without it, it means the same and is stored on both
        # databases, and the object still holds its text (no write to take it out).
        f = self.fields
        for text in (f.title, f.description, f.assignee):
            if type(text) is str and "\x00" in text:
                msgspec.structs.force_setattr(self, "fields", without_nul(f))
                return


def keep_held(known: VendorObject | None, obj: VendorObject) -> VendorObject:
    """``obj`` (a newer read of the object ``known`` was) with the ``held`` values of
    ``known`` whose unmapped value it still shows."""
    if known is None or not known.held:
        return obj
    held = {
        name: value
        for name, value in known.held.items()
        if name in obj.unmapped and obj.unmapped[name] == known.unmapped.get(name)
    }
    return msgspec.structs.replace(obj, held=held) if held != obj.held else obj


class CreateTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a creation rule makes a new object: its scope and vendor-specific parameters.

    Parameters by vendor: DevHelm ``notify_subscribers``; InboxOps ``inbox_id``;
    incident.io: the scope is the incident id. Unknown parameters are ignored by adapters.
    """

    scope: str = ""
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class WebhookEvent(msgspec.Struct, frozen=True):
    """What one verified webhook delivery says.

    ``observations`` carry object states the payload contains; ``hints`` name objects
    that changed but must be fetched (hookstream ``issue_opened``, incident.io private
    incidents). ``poll`` asks for a poll of the whole system when the payload names
    nothing usable.
    """

    delivery_id: str
    event_type: str
    observations: list[VendorObject] = msgspec.field(default_factory=list)
    hints: list[ObjectRef] = msgspec.field(default_factory=list)
    poll: bool = False


class FieldStamp(msgspec.Struct, frozen=True):
    """Which system last set a canonical field, and as of when (the vendor's time)."""

    system: str
    at: datetime


class WorkItem(msgspec.Struct, kw_only=True):
    """The canonical state of one problem, shared by every linked vendor object."""

    id: str
    title: str = ""
    description: str = ""
    status: Status = Status.OPEN
    priority: Priority = Priority.NORMAL
    snoozed_until: datetime | None = None
    assignee: str | None = None
    labels: list[str] = msgspec.field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    version: int = 1
    stamps: dict[str, FieldStamp] = msgspec.field(default_factory=dict)

    def fields(self) -> Fields:
        """The canonical field values of this item."""
        return Fields(**{name: getattr(self, name) for name in FIELD_NAMES})


#: What this process adds to its host's clock to read the database's (``set_clock_offset``;
#: zero on SQLite): on PostgreSQL every process stamps and compares leases and changes on
#: the one clock they share, whatever their hosts' clocks say.
_clock_offset = timedelta(0)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC, by the database's clock."""
    return datetime.now(UTC) + _clock_offset


def clock_offset() -> timedelta:
    """What ``utcnow`` adds to this host's clock."""
    return _clock_offset


def set_clock_offset(offset: timedelta) -> None:
    """Make ``utcnow`` read this host's clock plus ``offset`` (``Gateway.sync_clock``)."""
    global _clock_offset
    _clock_offset = offset


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is UTC:  # the usual case, and far cheaper than astimezone
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def given_utc(value: datetime, name: str) -> datetime:
    """``as_utc`` for a time given from outside (a request body, a query, a form, the
    command line): ``Invalid`` when its UTC time falls outside the years 1-9999 a datetime
    holds (``0001-01-01T00:00:00+05:00``), not an ``OverflowError``. ``name`` names the
    input in the reason."""
    try:
        return as_utc(value)
    except OverflowError:
        raise Invalid(
            f"{name}: {value.isoformat()} is out of range (in UTC it is before the year 1"
            " or after 9999)"
        ) from None


# -- JSON nesting ---------------------------------------------------------------------------

#: The deepest JSON Syncgate reads (webhook bodies, admin request bodies, stored events it
#: renders). Vendor payloads nest a handful of levels; decoding and re-encoding JSON nested
#: about a thousand levels deep exhausts Python's recursion limit, so deeper input is
#: refused before it is decoded. The one limit, used through ``json_too_deep``.
MAX_JSON_DEPTH = 64

_ESCAPES = ((b"\\\\", b""), (b'\\"', b""))
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects more than ``limit`` deep
    (brackets inside strings do not count). Linear in the number of brackets; says
    nothing of whether ``data`` is valid JSON (the decoder says that)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # no deeper than its openers (a vendor's payload: a few dozen)
    for escape, gone in _ESCAPES:  # left to right, as JSON reads escapes
        data = data.replace(escape, gone)
    depth = 0
    for outside in data.translate(None, _NOT_STRUCTURE).split(b'"')[::2]:
        for bracket in outside:
            if bracket in b"[{":
                depth += 1
                if depth > limit:
                    return True
            else:
                depth -= 1
    return False
