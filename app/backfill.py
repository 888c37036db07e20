"""Backfill: bring in what existed before the gateway was connected, with a plan first.

A backfill walks the objects changed since a moment (``list_changed``) in the systems
named, and plans, per object:

- ``link``: to the work item its marker names (an object Syncgate created: DevHelm's
  marker line, incident.io's label, InboxOps' marker field), restoring that item when the
  database no longer has it (the item id is derived from its origin object, so the origin
  is recognised too: ``origin_item_id``); or to what a link rule matches;
- ``create``: a work item, by the creation rules (inside the window, whatever the
  object's age);
- ``skip``: with the reason (linked already, no rule matches, an ambiguous match, ...).

``plan`` only reads: the vendors (lists, and DevHelm reads of incidents whose marker the
list does not show) and the database. ``run`` plans afresh and carries the plan out
through the engine, one object (or restored item) per transaction, so a crash loses
nothing done and a second run plans nothing done again: what is linked is skipped. The
vendor objects a ``create`` needs are made by the dispatcher of the gateway that serves
this database, like any other create.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from adapters.base import Adapter
from app.engine import Engine, origin_item_id
from app.engine.matching import Candidates, find_match
from app.errors import AlreadyLinked, Invalid, Missing
from app.model import Fields, FieldStamp, ObjectRef, VendorObject, given_utc, utcnow
from app.store import Store

log = logging.getLogger("syncgate.backfill")

#: ``syncgate-<work item id>-<link id>``: the idempotency key every marker carries.
MARKER_KEY = re.compile(r"^syncgate-([0-9a-f]{32})-\d+$")

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w`` before ``now``, or an ISO 8601 time (a
    date alone is midnight UTC; no offset is UTC). Raises ``Invalid`` otherwise, for a
    moment before the year 1 or after 9999 (``99999999d``), and for one after ``now``
    (nothing was made since then: a plan of nothing would look like a finished one)."""
    value = text.strip()
    found = _DURATION.match(value.lower())
    if found is not None:
        try:  # int() refuses more than 4,300 digits; timedelta and the subtraction overflow
            return now - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        except (OverflowError, ValueError):
            raise Invalid(f"since: {text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(
            f"since: {text!r} is neither a duration (30d, 12h, 45m) nor an ISO 8601 time"
        ) from None
    since = given_utc(moment, "since")
    if since > now:
        raise Invalid(
            f"since: {text!r} is in the future (now is {now.isoformat(timespec='seconds')}):"
            " a backfill looks back from now"
        )
    return since


def item_of_marker(key: str | None) -> str | None:
    """The work item id a marker's key names, None for none (or a foreign one)."""
    found = MARKER_KEY.match(key or "")
    return None if found is None else found.group(1)


class PlanLine(msgspec.Struct, frozen=True):
    """One object's fate: ``action`` link | create | skip, and why."""

    system: str
    scope: str
    external_id: str
    action: str
    reason: str
    work_item_id: str | None = None
    #: The object's title, to recognise it by (cut to 40 characters).
    title: str = ""

    def text(self) -> str:
        scope = f" ({self.scope})" if self.scope else ""
        title = f' "{self.title}"' if self.title else ""
        return f"{self.action:<6} {self.system} {self.external_id}{scope}{title}: {self.reason}"


class Plan(msgspec.Struct):
    """A backfill's plan: one line per object walked."""

    systems: list[str]
    since: datetime | None
    lines: list[PlanLine] = msgspec.field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"link": 0, "create": 0, "skip": 0}
        for line in self.lines:
            out[line.action] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return f"{c['link']} link, {c['create']} create, {c['skip']} skip"


class _Step(msgspec.Struct):
    """What carrying out one line takes: ``kind`` restore (an item that is gone, with
    ``origin`` when its origin object was walked) | link | create | none."""

    line: PlanLine
    obj: VendorObject
    kind: str
    origin: VendorObject | None = None


#: Called for each line as it is carried out, with what happened (done, or why not).
Progress = Callable[[PlanLine, str], None]


class Backfill:
    """Plans and carries out backfills over the gateway's engine, adapters and store."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        adapters: Mapping[str, Adapter],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.engine = engine
        self.adapters = adapters
        self.clock = clock

    def systems(self, names: Sequence[str]) -> list[str]:
        """The systems named (all enabled ones for none); ``Invalid`` for an unknown one."""
        unknown = [n for n in names if n not in self.adapters]
        if unknown:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise Invalid(f"no enabled system named {unknown[0]!r} (enabled: {known})")
        return list(dict.fromkeys(names)) or sorted(self.adapters)

    async def plan(self, systems: Sequence[str], since: datetime | None) -> Plan:
        """The plan, changing nothing."""
        plan, _steps = await self._plan(self.systems(systems), since, index=False)
        return plan

    async def run(
        self,
        systems: Sequence[str],
        since: datetime | None,
        progress: Progress | None = None,
        *,
        planned: Callable[[Plan], None] | None = None,
    ) -> Plan:
        """Plan afresh, then carry the plan out (``planned`` sees the plan first, e.g. to
        size a progress bar); returns the plan carried out."""
        names = self.systems(systems)
        plan, steps = await self._plan(names, since, index=True)
        if planned is not None:
            planned(plan)
        restored: set[str] = set()
        # items to restore first, then links to items, then creates (a create may link,
        # by a link rule, an object planned as its partner)
        order = {"restore": 0, "link": 1, "create": 2, "none": 3}
        for step in sorted(steps, key=lambda s: order[s.kind]):
            outcome = await self._carry_out(step, restored)
            if progress is not None:
                progress(step.line, outcome)
        log.info("backfill done", extra={"systems": names, "plan": plan.summary()})
        return plan

    # -- planning --------------------------------------------------------------------------

    async def _walk(self, systems: list[str], since: datetime | None) -> list[VendorObject]:
        objects: dict[ObjectRef, VendorObject] = {}
        for system in systems:
            async for page in self.adapters[system].list_changed(since):
                for obj in page:
                    if since is None or obj.updated_at >= since:
                        objects[obj.ref] = obj
        return list(objects.values())

    async def _plan(
        self, systems: list[str], since: datetime | None, *, index: bool
    ) -> tuple[Plan, list[_Step]]:
        objects = await self._walk(systems, since)
        now = self.clock()
        async with self.store.tx() as tx:
            links = await tx.links_for(o.ref for o in objects)
        unlinked = [o for o in objects if o.ref not in links]
        markers: dict[ObjectRef, str] = {}
        for obj in unlinked:
            item_id = item_of_marker(await self.adapters[obj.ref.system].read_marker(obj))
            if item_id is not None:
                markers[obj.ref] = item_id
        wanted = set(markers.values()) | {origin_item_id(o.ref) for o in unlinked}
        async with self.store.tx() as tx:
            existing = set(await tx.items_by_id(wanted)) if wanted else set()
        gone = set(markers.values()) - existing  # items only markers remember
        origins = {
            origin_item_id(o.ref): o
            for o in unlinked
            if origin_item_id(o.ref) in gone or origin_item_id(o.ref) in existing
        }
        keyed = self._memory_index(unlinked)
        if index:
            async with self.store.tx() as tx:
                for obj in unlinked:
                    keys = self.engine.rules.link_keys(obj)
                    await tx.index_keys(obj, [(k.rule.name, k.side, k.key) for k in keys], now)

        async def also(rule: str, side: str, key: str) -> list[VendorObject]:
            return keyed.get((rule, side, key), [])

        plan = Plan(systems=systems, since=since)
        steps: list[_Step] = []
        for obj in objects:
            ref = obj.ref
            link = links.get(ref)
            if link is not None:
                line = _line(obj, "skip", f"linked to work item {link.work_item_id}")
                line = msgspec.structs.replace(line, work_item_id=link.work_item_id)
                steps.append(_Step(line, obj, "none"))
                plan.lines.append(line)
                continue
            step = await self._plan_one(obj, markers, existing, gone, origins, also, now)
            steps.append(step)
            plan.lines.append(step.line)
        return plan, steps

    async def _plan_one(
        self,
        obj: VendorObject,
        markers: Mapping[ObjectRef, str],
        existing: set[str],
        gone: set[str],
        origins: Mapping[str, VendorObject],
        also: Candidates,
        now: datetime,
    ) -> _Step:
        marked = markers.get(obj.ref)
        if marked is not None:
            if marked in existing:
                return _Step(_line(obj, "link", "marker: work item", marked), obj, "link")
            origin = origins.get(marked)
            return _Step(
                _line(obj, "link", "marker: restores work item", marked),
                obj,
                "restore",
                origin,
            )
        own = origin_item_id(obj.ref)
        if own in gone:
            return _Step(_line(obj, "link", "origin: restores work item", own), obj, "restore", obj)
        if own in existing:
            return _Step(_line(obj, "link", "origin of work item", own), obj, "link")
        async with self.store.tx() as tx:
            match = await find_match(
                tx,
                self.engine.rules,
                obj,
                now,
                index=False,
                also=also,
            )
        if match.kind == "ambiguous":
            return _Step(
                _line(obj, "skip", f"ambiguous link rule match: {', '.join(match.candidates)}"),
                obj,
                "none",
            )
        if match.kind == "item" and match.item_id is not None:
            reason = f"link rule {match.rule!r}: work item"
            return _Step(_line(obj, "link", reason, match.item_id), obj, "link")
        rule, why_not = self.engine.creation_check(obj)
        if match.kind == "object" and match.obj is not None:
            partner = match.obj
            if rule is not None:
                reason = (
                    f"rule {rule.name!r}, linking {partner.ref.system} "
                    f"{partner.ref.external_id} by link rule {match.rule!r}"
                )
                return _Step(_line(obj, "create", reason), obj, "create")
            partner_rule, _ = self.engine.creation_check(partner)
            async with self.store.tx() as tx:
                back = await find_match(tx, self.engine.rules, partner, now, index=False, also=also)
            if back.kind == "ambiguous":
                reason = (
                    f"link rule {match.rule!r}: {partner.ref.system} {partner.ref.external_id}"
                    " matches several objects, so it starts no item"
                )
                return _Step(_line(obj, "skip", reason), obj, "none")
            if partner_rule is not None:
                reason = (
                    f"link rule {match.rule!r}: the work item {partner.ref.system} "
                    f"{partner.ref.external_id} starts"
                )
                return _Step(_line(obj, "link", reason), obj, "none")
        if rule is None:
            return _Step(_line(obj, "skip", why_not), obj, "none")
        return _Step(_line(obj, "create", f"rule {rule.name!r}"), obj, "create")

    def _memory_index(
        self, objects: Sequence[VendorObject]
    ) -> dict[tuple[str, str, str], list[VendorObject]]:
        """The link rule keys of the objects walked (a dry run does not index them)."""
        out: dict[tuple[str, str, str], list[VendorObject]] = {}
        for obj in objects:
            for key in self.engine.rules.link_keys(obj):
                out.setdefault((key.rule.name, key.side, key.key), []).append(obj)
        return out

    # -- carrying out ----------------------------------------------------------------------

    async def _carry_out(self, step: _Step, restored: set[str]) -> str:
        line, obj = step.line, step.obj
        try:
            if step.kind == "restore" and line.work_item_id is not None:
                return await self._restore(line.work_item_id, step, restored)
            if step.kind == "link" and line.work_item_id is not None:
                await self.engine.link(line.work_item_id, [obj], source="backfill")
                return "linked"
            if step.kind == "create":
                (outcome,) = await self.engine.observe_many([(obj, "backfill")], backfill=True)
                return outcome.kind
        except AlreadyLinked:
            return "linked already"
        except Missing as exc:
            return f"not done: {exc}"
        if line.action == "link":  # linked by its partner's create (a link rule)
            async with self.store.tx() as tx:
                link = await tx.link_for(obj.ref)
            return "linked" if link is not None else "not linked: its partner started no item"
        return "skipped"

    async def _restore(self, item_id: str, step: _Step, restored: set[str]) -> str:
        """The first object of a gone item restores it (from its origin object when that
        was walked, else from the object itself); the others link to it."""
        if item_id in restored:
            async with self.store.tx() as tx:
                link = await tx.link_for(step.obj.ref)
            if link is not None and link.work_item_id == item_id:
                return "linked"  # the origin, linked when its item was restored
            await self.engine.link(item_id, [step.obj], source="backfill", fold_in=True)
            return "linked"
        source = step.origin or step.obj
        taken, provisional = self.engine.rules.start_fields(source.ref.system, source.fields)
        fields = Fields(
            **{k: v for k, v in provisional.items() if k != "assignee"}, **taken.as_dict()
        )
        # who set each field, as of when: what the item's other objects hold is weighed
        # against it by the conflict policy as each is linked (a person's edit there while
        # the database was gone wins if it is newer), never just overwritten; the fields
        # the source only receives are provisional, unstamped (``Rules.start_fields``)
        stamp = FieldStamp(source.ref.system, source.updated_at)
        async with self.store.tx() as tx:
            first = [source] if await tx.link_for(source.ref) is None else []
            other = step.obj.ref != source.ref and await tx.link_for(step.obj.ref) is None
        await self.engine.create_item(
            fields,
            first,
            source="backfill",
            item_id=item_id,
            stamps={name: stamp for name, _ in taken.items()},
        )
        if other:
            await self.engine.link(item_id, [step.obj], source="backfill", fold_in=True)
        restored.add(item_id)
        return "restored"


def _line(obj: VendorObject, action: str, reason: str, item_id: str | None = None) -> PlanLine:
    ref = obj.ref
    text = f"{reason} {item_id}" if item_id is not None and reason.endswith("item") else reason
    title = obj.fields.title if isinstance(obj.fields.title, str) else ""
    title = title if len(title) <= 40 else title[:39] + "…"
    return PlanLine(ref.system, ref.scope, ref.external_id, action, text, item_id, title)
