"""Link rules: whether a new object is the same thing as an object already seen.

An object yields a key under each link rule that names its system (``Rules.link_keys``);
its candidates are the objects seen with the same key on the rule's other side (the
``match_keys`` index, which the engine fills with every unlinked object it sees and a
backfill with every object it walks). Candidates linked to one work item make a match
with that item; one unlinked candidate makes a match with that object; candidates that
name more than one work item or object are ambiguous, and never linked automatically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import msgspec

from app.model import ObjectRef, VendorObject
from app.rules import LinkKeyOf, Rules
from app.store import Tx

#: Candidates for (rule name, side, key): the objects seen there.
Candidates = Callable[[str, str, str], Awaitable[Sequence[VendorObject]]]


class Match(msgspec.Struct, frozen=True):
    """What the link rules say about one object. ``kind``: none | item (``item_id``) |
    object (``obj``, not linked yet) | ambiguous (``candidates`` describes them).
    ``fresh``: whether a key of the object is new or changed (report an ambiguity once)."""

    kind: str
    rule: str | None = None
    item_id: str | None = None
    obj: VendorObject | None = None
    candidates: tuple[str, ...] = ()
    fresh: bool = True


async def find_match(
    tx: Tx,
    rules: Rules,
    obj: VendorObject,
    now: datetime,
    *,
    index: bool = True,
    also: Candidates | None = None,
) -> Match:
    """The link rules' verdict on ``obj`` (an unlinked object). With ``index`` its keys
    are remembered first; ``also`` adds candidates not in the index yet (a backfill's
    dry run, which writes nothing)."""
    keys = rules.link_keys(obj)
    if not keys:
        return Match("none")
    fresh = True
    if index:
        changed = await tx.index_keys(obj, [(k.rule.name, k.side, k.key) for k in keys], now)
        fresh = bool(changed)
    items: dict[str, str] = {}
    objects: dict[ObjectRef, tuple[VendorObject, str]] = {}
    for key in keys:
        for candidate in await _candidates(tx, key, also):
            if candidate.ref == obj.ref:
                continue
            link = await tx.link_for(candidate.ref)
            if link is not None:
                items.setdefault(link.work_item_id, key.rule.name)
            else:
                objects.setdefault(candidate.ref, (candidate, key.rule.name))
    if len(items) + len(objects) > 1:
        described = [f"work item {item_id}" for item_id in sorted(items)] + [
            f"{ref.system} {ref.external_id}" for ref in objects
        ]
        return Match("ambiguous", candidates=tuple(described), fresh=fresh)
    if items:
        ((item_id, rule),) = items.items()
        return Match("item", rule=rule, item_id=item_id, fresh=fresh)
    if objects:
        ((found, rule),) = objects.values()
        return Match("object", rule=rule, obj=found, fresh=fresh)
    return Match("none", fresh=fresh)


async def _candidates(tx: Tx, key: LinkKeyOf, also: Candidates | None) -> list[VendorObject]:
    found = await tx.match_candidates(key.rule.name, key.other, key.key)
    if also is None:
        return found
    # the objects ``also`` gives were just read, with their raw JSON: they come first
    extra = list(await also(key.rule.name, key.other, key.key))
    seen = {o.ref for o in extra}
    return extra + [o for o in found if o.ref not in seen]
