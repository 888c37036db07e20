"""Compiled sync rules: field directions, conflict policy, creation rules, and each
system's value maps for comparing in meaning (pure).

Built once from ``Settings``, what each system's adapter can read and write, and each
system's effective value maps (the adapter's defaults with the config's overrides laid
over them), and the identity map that carries assignees across systems; the engine
and the dispatcher ask it questions and never read the raw settings or an adapter's maps.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec
from msgspec import UNSET

from adapters.base import differs_in_meaning, fit
from app.config.schema import Conflict, CreateRule, Direction, LinkKey, LinkRule, Settings
from app.errors import Invalid
from app.model import (
    FIELD_NAMES,
    Fields,
    IdentityMap,
    ObjectRef,
    Priority,
    ValueMap,
    VendorObject,
)

#: the engine's logger: a clamp is what the engine does to what it keeps
log = logging.getLogger("syncgate.engine")

PRIORITY_ORDER = {p: i for i, p in enumerate(Priority)}
#: How many objects ``Rules.clamped`` remembers having warned of (then it starts afresh).
CLAMPED_REMEMBERED = 4096

#: Fields not synced unless ``fields:`` in the config names them.
UNSHARED_BY_DEFAULT = frozenset({"assignee"})


class Caps(Protocol):
    """What a system's adapter can do (adapter classes satisfy this)."""

    @property
    def readable(self) -> frozenset[str]: ...

    @property
    def writable(self) -> frozenset[str]: ...

    @property
    def max_lengths(self) -> Mapping[str, int]: ...

    @property
    def blank_refused(self) -> frozenset[str]: ...


class Rules:
    """``caps`` and ``value_maps`` are per enabled system; ``value_maps`` holds each
    system's effective maps (``Adapter.value_maps``), keyed by field (``status``,
    ``priority``). ``identities`` maps assignees (the config's and the database's people);
    the gateway replaces it whenever the people change (``Gateway._new_identities``)."""

    def __init__(
        self,
        settings: Settings,
        caps: Mapping[str, Caps],
        value_maps: Mapping[str, Mapping[str, ValueMap]],
        identities: IdentityMap | None = None,
    ) -> None:
        self.settings = settings
        self.identities = identities if identities is not None else IdentityMap()
        self.systems = [name for name, s in settings.systems.items() if s.enabled]
        #: configured systems the config disables (``enabled: false``): their writes and
        #: events wait until the system is enabled again
        self.disabled = frozenset(name for name, s in settings.systems.items() if not s.enabled)
        self._value_maps: dict[str, dict[str, ValueMap]] = {
            system: dict(value_maps.get(system, {})) for system in self.systems
        }
        self._in: dict[str, frozenset[str]] = {}
        self._out: dict[str, frozenset[str]] = {}
        #: the objects whose vendor time ``clamped`` warned of, and that time
        self._clamped_seen: dict[ObjectRef, datetime] = {}
        #: per system, the longest text it holds per field (``Adapter.max_lengths``)
        self._max_lengths: dict[str, Mapping[str, int]] = {}
        #: per system, the text fields it refuses blank (``Adapter.blank_refused``)
        self._blank_refused: dict[str, frozenset[str]] = {}
        for system in self.systems:
            cap = caps[system]
            self._max_lengths[system] = cap.max_lengths
            self._blank_refused[system] = cap.blank_refused
            ins, outs = set(), set()
            for name in FIELD_NAMES:
                direction = self.direction(system, name)
                if direction in (Direction.BOTH, Direction.IN) and name in cap.readable:
                    ins.add(name)
                if direction in (Direction.BOTH, Direction.OUT) and name in cap.writable:
                    outs.add(name)
            self._in[system] = frozenset(ins)
            self._out[system] = frozenset(outs)

    def direction(self, system: str, name: str) -> Direction:
        rule = self.settings.fields.get(name)
        if rule is None:
            # Vendors' assignee ids live in different user directories: sync them only
            # where the config says the systems share one.
            return Direction.NONE if name in UNSHARED_BY_DEFAULT else Direction.BOTH
        if system in rule.systems:
            return rule.systems[system]
        if rule.owner is not None:
            return Direction.IN if rule.owner == system else Direction.OUT
        return Direction.BOTH

    def enabled(self, system: str) -> bool:
        """Whether ``system`` is connected (configured and not disabled)."""
        return system in self._value_maps

    def value_maps(self, system: str) -> Mapping[str, ValueMap]:
        """The effective value maps of ``system`` (none for a system not enabled)."""
        return self._value_maps.get(system, {})

    def differs(self, system: str, obj: VendorObject | None, target: Fields) -> Fields:
        """The fields of ``target`` that ``system``'s object ``obj`` does not already hold
        *in meaning*: enums compare through the system's value maps (DevHelm MONITORING
        already means canonical ``acknowledged``), other fields by value. With no ``obj``
        (not yet created) every field differs.

        The assignee compares through the identity map: it differs when the object does
        not hold the person's user id in ``system``, and never when the person has none
        there (an unmapped person is not written; ``assignee_unwritable``)."""
        limits = self._max_lengths.get(system)
        if target.assignee is UNSET:
            return differs_in_meaning(self.value_maps(system), obj, target, limits)
        rest = Fields(**{k: v for k, v in target.items() if k != "assignee"})
        out = differs_in_meaning(self.value_maps(system), obj, rest, limits)
        wanted = self.identities.user_id(target.assignee, system)
        if wanted is UNSET or (obj is not None and obj.fields.assignee == wanted):
            return out
        return Fields(**out.as_dict(), assignee=target.assignee)

    def operator_fields(self, fields: Fields) -> Fields:
        """An operator's values with the assignee as the map names it: a person's email
        (lower case), or ``<system>:<user id>`` of a configured system. Raises
        ``Invalid`` for anything else (a raw vendor id would be written nowhere)."""
        if not isinstance(fields.assignee, str):
            return fields
        email = self.identities.email_of(fields.assignee)
        if email is not None:
            return msgspec.structs.replace(fields, assignee=email)
        system, sep, user_id = fields.assignee.partition(":")
        if sep and user_id and system in self.settings.systems:
            return fields
        raise Invalid(
            f"assignee {fields.assignee!r} is no person of the identity map: give a"
            " person's email (GET /admin/identities) or <system>:<user id>"
        )

    def assignee_in(self, system: str, user_id: str | None) -> str | None:
        """The canonical assignee ``system``'s user id means (``IdentityMap.canonical``)."""
        return self.identities.canonical(system, user_id)

    def assignee_unwritable(self, system: str, canonical: str | None) -> bool:
        """Whether ``system`` receives assignees but has no user for ``canonical``."""
        return "assignee" in self.out_fields(system) and (
            self.identities.user_id(canonical, system) is UNSET
        )

    def clamped(self, obj: VendorObject, now: datetime) -> VendorObject:
        """``obj`` with its vendor time brought back to ``now`` when it lies further in
        the future than the system's ``max_clock_skew_s``: a time far ahead would make
        every later real change of the object look older, and be dropped. Every object
        the gateway keeps goes through it: observations (the engine) and what a write
        returned (the dispatcher)."""
        settings = self.settings.systems.get(obj.ref.system)
        skew = timedelta(seconds=settings.max_clock_skew_s if settings is not None else 300.0)
        if obj.updated_at <= now + skew:
            return obj
        # each poll reads such an object again: one warning per object and vendor time
        if self._clamped_seen.get(obj.ref) == obj.updated_at:
            return msgspec.structs.replace(obj, updated_at=now)
        if len(self._clamped_seen) >= CLAMPED_REMEMBERED:
            self._clamped_seen.clear()
        self._clamped_seen[obj.ref] = obj.updated_at
        log.warning(
            "vendor time in the future: clamped to now",
            extra={
                "system": obj.ref.system,
                "external_id": obj.ref.external_id,
                "vendor_updated_at": obj.updated_at.isoformat(),
            },
        )
        return msgspec.structs.replace(obj, updated_at=now)

    def to_vendor(self, system: str, fields: Fields) -> Fields:
        """Canonical fields as ``system``'s adapter takes them: the assignee as that
        system's user id, left out where the person has none; a text longer than the
        system holds cut to fit (``adapters.base.fit``)."""
        limits = self._max_lengths.get(system)
        too_long = {
            name: fit(value, limits[name])
            for name, value in fields.items()
            if limits and name in limits and isinstance(value, str)
        }
        if fields.assignee is UNSET and not too_long:
            return fields
        values = {k: v for k, v in fields.items() if k != "assignee"} | too_long
        if fields.assignee is not UNSET:
            user_id = self.identities.user_id(fields.assignee, system)
            if user_id is not UNSET:
                values["assignee"] = user_id
        return Fields(**values)

    def start_fields(self, system: str, fields: Fields) -> tuple[Fields, Fields]:
        """What a work item started from ``system``'s object takes from its ``fields``:
        the fields ``system`` may set, and, provisionally, those it only receives
        (``out``, such as a title another system owns; not an assignee, which is a user
        of ``system``'s own directory). An item started by a ticket whose
        subject hookstream owns still needs a title: without one, every create it fans
        out is refused and the ticket's own subject would be written blank. The
        provisional ones carry no stamp, so the owner's first value replaces them."""
        inbound = self.in_fields(system)
        outbound = self.out_fields(system)
        taken = {k: v for k, v in fields.items() if k in inbound}
        provisional = {
            k: v
            for k, v in fields.items()
            if k in outbound and k not in inbound and k != "assignee"  # a user id there
        }
        return Fields(**taken), Fields(**provisional)

    def outgoing(self, system: str, fields: Fields) -> Fields:
        """The canonical ``fields`` written to ``system``: those it receives, less a
        blank text it refuses (``refuses_blank``). Such a value stays the item's (a
        person blanked a ticket's subject: that is the ticket's, and the item's, title),
        and the objects that cannot hold it keep what they have; sent, it was refused,
        the link dead-lettered, and no later change reached the object."""
        out = fields.only(self.out_fields(system))
        blank = self.create_waits_for(system, out)  # the same blank texts as a create's
        if not blank:
            return out
        return Fields(**{k: v for k, v in out.items() if k not in blank})

    def refuses_blank(self, system: str, name: str, value: object) -> bool:
        """Whether ``value`` is a blank text (empty or only whitespace) that ``system``
        refuses for the field ``name``."""
        return (
            isinstance(value, str)
            and not value.strip()
            and name in self._blank_refused.get(system, frozenset())
        )

    def create_waits_for(self, system: str, fields: Fields) -> list[str]:
        """The fields of ``fields`` that ``system`` refuses as they are (a blank title:
        every vendor needs one, DevHelm and incident.io refuse a blank one). A create
        whose body holds one waits, not tried, until the item's value is one the system
        takes (sent, it was refused and dead-lettered); an update leaves them out
        (``outgoing``)."""
        return [name for name, value in fields.items() if self.refuses_blank(system, name, value)]

    def in_fields(self, system: str) -> frozenset[str]:
        """Fields whose changes in ``system`` may change the canonical item."""
        return self._in.get(system, frozenset())

    def create_fields(self, system: str, fields: Fields) -> Fields:
        """What a create in ``system`` carries of a work item's ``fields``: the fields
        written there, the title (every vendor needs one, whatever the directions) and the
        description where it may flow there (DevHelm puts it in the initial update,
        InboxOps in the initial internal note, even though neither can change it later)."""
        names = set(self.out_fields(system)) | {"title"}
        if self.direction(system, "description") in (Direction.BOTH, Direction.OUT):
            names.add("description")
        return fields.only(names)

    def out_fields(self, system: str) -> frozenset[str]:
        """Fields written to ``system`` when the canonical item changes."""
        return self._out.get(system, frozenset())

    def conflict(self, name: str) -> Conflict:
        rule = self.settings.fields.get(name)
        return rule.conflict if rule is not None else Conflict()

    def incoming_wins(
        self,
        name: str,
        *,
        system: str,
        at: datetime,
        stamp_system: str | None,
        stamp_at: datetime | None,
        on_top: bool = False,
    ) -> bool:
        """Whether a change of ``name`` from ``system`` at vendor time ``at`` beats the
        current value, last set by ``stamp_system`` at ``stamp_at``. ``on_top``: the
        object held the current value (in meaning) before the change, so the change was
        made on top of it, and is the later one whatever the clocks say: its vendor time
        is ``system``'s clock and the stamp another's, and a vendor clock running behind
        made such an edit lose, and be reverted, for as long as it lagged. Only truly
        concurrent changes (the object did not hold the current value yet) are settled
        by time."""
        if stamp_at is None or stamp_system is None:
            return True
        policy = self.conflict(name)
        if policy.policy == "prefer" and policy.prefer is not None and stamp_system != system:
            # Another system's change made within the window after the preferred
            # system's loses to it, whichever arrives first; outside it, the later wins.
            window = timedelta(seconds=policy.window_s)
            if system == policy.prefer:
                return on_top or stamp_at <= at + window
            if stamp_system == policy.prefer:
                return at > stamp_at + window
        if on_top:
            return True
        if stamp_system == system:
            return at >= stamp_at
        return at > stamp_at

    def creation_rule(self, obj: VendorObject) -> CreateRule | None:
        """The first creation rule a new, unlinked object matches."""
        for rule in self.settings.create_rules:
            if rule.system == obj.ref.system and _matches(rule, obj):
                return rule
        return None

    def link_keys(self, obj: VendorObject) -> list[LinkKeyOf]:
        """The keys ``obj`` yields under each link rule naming its system (a rule whose
        field is absent, or whose regex does not match, yields none)."""
        out = []
        for rule in self.settings.link_rules:
            for side, key, other in (("left", rule.left, "right"), ("right", rule.right, "left")):
                if key.system != obj.ref.system:
                    continue
                value = key_of(obj.raw, key)
                if value is not None:
                    out.append(LinkKeyOf(rule, side, other, value))
        return out


class LinkKeyOf(msgspec.Struct, frozen=True):
    """The key an object yields under one link rule, on one side (``left``/``right``);
    its candidates are the objects with the same key on the ``other`` side."""

    rule: LinkRule
    side: str
    other: str
    key: str


def key_of(raw: Mapping[str, Any], key: LinkKey) -> str | None:
    """The value at ``key.path`` in a vendor object's JSON, as text (a string, number or
    boolean), through ``key.regex``'s group when there is one; None when there is none.
    A NUL in it is left out, as in the texts a ``VendorObject`` holds: no PostgreSQL text
    column (the ``match_keys`` index) takes one."""
    value = _lookup(raw, key.path)
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).replace("\x00", "").strip()
    if key.regex is not None:
        found = _compiled(key.regex).search(text)
        text = (found.group(1) or "").strip() if found is not None else ""
    return text or None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _lookup(raw: Mapping[str, Any], path: str) -> Any:
    value: Any = raw
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _matches(rule: CreateRule, obj: VendorObject) -> bool:
    match = rule.match
    for path, accepted in match.fields.items():
        if _lookup(obj.raw, path) not in accepted:
            return False
    if match.status_in and obj.fields.status not in match.status_in:
        return False
    if match.min_priority is not None:
        priority = obj.fields.priority
        if not isinstance(priority, Priority):
            return False
        if PRIORITY_ORDER[priority] < PRIORITY_ORDER[match.min_priority]:
            return False
    return True
