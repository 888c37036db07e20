"""The compiled rules on their own: directions, the conflict policy, creation rules, and
comparing in meaning through each system's value maps. Pure: no store, no adapters, no
simulators. The three systems here are made up; ``tests/test_engine.py`` uses them too."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters.base import CUT, fit, utf16_length
from app.config.schema import (
    Conflict,
    CreateIn,
    CreateRule,
    Direction,
    FieldRule,
    Match,
)
from app.model import Fields, Priority, Status, ValueMap, VendorObject
from app.rules import Rules
from tests.rules_support import CAPS, MAPS, T0, Caps, rules, settings, vendor

# -- directions ----------------------------------------------------------------------------


def test_a_field_no_rule_names_flows_both_ways_as_far_as_the_adapter_can() -> None:
    r = rules()
    assert r.direction("pages", "title") == Direction.BOTH
    assert r.in_fields("tracker") == {"title", "description", "status", "priority", "snoozed_until"}
    assert r.out_fields("tracker") == {"status", "snoozed_until"}
    assert r.in_fields("pages") == r.out_fields("pages") == {"title", "status", "priority"}


def test_assignee_is_unshared_unless_the_config_names_it() -> None:
    assert rules().direction("desk", "assignee") == Direction.NONE
    assert "assignee" not in rules().in_fields("desk") | rules().out_fields("desk")
    shared = rules(fields={"assignee": FieldRule()})
    assert shared.direction("desk", "assignee") == Direction.BOTH
    assert "assignee" in shared.in_fields("desk") & shared.out_fields("desk")


def test_the_owner_sets_a_field_and_every_other_system_receives_it() -> None:
    r = rules(fields={"status": FieldRule(owner="pages")})
    assert r.direction("pages", "status") == Direction.IN
    assert r.direction("desk", "status") == r.direction("tracker", "status") == Direction.OUT
    assert "status" in r.in_fields("pages") and "status" not in r.out_fields("pages")
    assert "status" in r.out_fields("desk") and "status" not in r.in_fields("desk")


def test_a_per_system_direction_overrides_the_owner_shorthand() -> None:
    rule = FieldRule(owner="pages", systems={"desk": Direction.NONE, "tracker": Direction.BOTH})
    r = rules(fields={"status": rule})
    assert r.direction("desk", "status") == Direction.NONE
    assert "status" not in r.in_fields("desk") | r.out_fields("desk")
    assert "status" in r.in_fields("tracker") & r.out_fields("tracker")
    assert r.direction("pages", "status") == Direction.IN


def test_a_disabled_system_has_no_fields_and_no_maps() -> None:
    r = rules(disabled=("desk",))
    assert r.systems == ["tracker", "pages"]
    assert not r.enabled("desk") and r.enabled("pages")
    assert r.in_fields("desk") == r.out_fields("desk") == frozenset()
    assert r.value_maps("desk") == {}


# -- conflicts -----------------------------------------------------------------------------


def wins(
    r: Rules, system: str, at: datetime, stamp_system: str | None, name: str = "status"
) -> bool:
    return r.incoming_wins(
        name,
        system=system,
        at=at,
        stamp_system=stamp_system,
        stamp_at=None if stamp_system is None else T0,
    )


def test_last_writer_the_later_vendor_time_wins() -> None:
    r = rules(fields={"status": FieldRule(conflict=Conflict(policy="last_writer"))})
    second = timedelta(seconds=1)
    assert wins(r, "desk", T0 + second, "pages")
    assert not wins(r, "desk", T0 - second, "pages")
    # a tie between two systems keeps the value held
    assert not wins(r, "desk", T0, "pages")
    # a value nobody stamped yields to any change
    assert wins(r, "desk", T0 - timedelta(days=1), None)


def test_a_same_system_tie_is_that_system_s_newer_state() -> None:
    r = rules()
    assert wins(r, "pages", T0, "pages")
    assert not wins(r, "pages", T0 - timedelta(seconds=1), "pages")


def test_prefer_the_preferred_system_wins_and_others_lose_inside_its_window() -> None:
    prefer = Conflict(policy="prefer", prefer="pages", window_s=60)
    r = rules(fields={"status": FieldRule(conflict=prefer)})
    # the preferred system wins with an older time, over a change made inside its window
    assert wins(r, "pages", T0 - timedelta(seconds=60), "desk")
    assert wins(r, "pages", T0 + timedelta(seconds=1), "desk")
    # but not over a change made after its window: a late arrival undoes no later edit
    assert not wins(r, "pages", T0 - timedelta(seconds=61), "desk")
    assert not wins(r, "pages", T0 - timedelta(minutes=10), "desk")
    # another system's later change inside the window of the preferred change loses
    assert not wins(r, "desk", T0 + timedelta(seconds=30), "pages")
    assert not wins(r, "desk", T0 + timedelta(seconds=60), "pages")
    # after the window, the later change wins
    assert wins(r, "desk", T0 + timedelta(seconds=61), "pages")
    # between two other systems it is last writer
    assert wins(r, "desk", T0 + timedelta(seconds=1), "tracker")
    assert not wins(r, "desk", T0 - timedelta(seconds=1), "tracker")
    # other fields keep last writer
    assert wins(r, "desk", T0 + timedelta(seconds=30), "pages", name="priority")


def test_a_change_made_on_top_of_the_held_value_wins_whatever_its_time() -> None:
    """The object held the current value when it changed there: the change is the later
    one, whatever the two clocks say, under last writer; under prefer the preferred
    system's still wins, and another system's inside the preferred's window still loses."""
    ago = T0 - timedelta(minutes=30)
    last = rules(fields={"status": FieldRule(conflict=Conflict(policy="last_writer"))})
    assert not last.incoming_wins(
        "status", system="desk", at=ago, stamp_system="pages", stamp_at=T0
    )
    assert last.incoming_wins(
        "status", system="desk", at=ago, stamp_system="pages", stamp_at=T0, on_top=True
    )
    prefer = rules(
        fields={
            "status": FieldRule(conflict=Conflict(policy="prefer", prefer="pages", window_s=60))
        }
    )
    assert prefer.incoming_wins(
        "status", system="pages", at=ago, stamp_system="desk", stamp_at=T0, on_top=True
    )
    inside = T0 + timedelta(seconds=30)
    assert not prefer.incoming_wins(
        "status", system="desk", at=inside, stamp_system="pages", stamp_at=T0, on_top=True
    )


# -- creation rules ------------------------------------------------------------------------

ALERTS = CreateRule(
    name="tracker-alerts",
    system="tracker",
    match=Match(
        fields={"source.kind": ["alert", "page"]},
        status_in=[Status.OPEN, Status.ACKNOWLEDGED],
        min_priority=Priority.HIGH,
    ),
    create_in=[CreateIn(system="pages", scope="sp-1")],
)
ANY_PAGE = CreateRule(name="any-page", system="pages")


def alert(**overrides: Any) -> VendorObject:
    values: dict[str, Any] = {
        "status": "open",
        "priority": "high",
        "raw": {"source": {"kind": "alert"}},
    } | overrides
    return vendor("tracker", "T-1", T0, title="Disk full", **values)


def test_a_rule_matches_on_raw_field_paths() -> None:
    r = rules(create_rules=[ALERTS])
    assert r.creation_rule(alert()) == ALERTS
    assert r.creation_rule(alert(raw={"source": {"kind": "page"}})) == ALERTS
    assert r.creation_rule(alert(raw={"source": {"kind": "manual"}})) is None
    assert r.creation_rule(alert(raw={"source": "alert"})) is None
    assert r.creation_rule(alert(raw={})) is None


def test_a_rule_matches_on_status() -> None:
    r = rules(create_rules=[ALERTS])
    assert r.creation_rule(alert(status="acknowledged")) == ALERTS
    assert r.creation_rule(alert(status="resolved")) is None


def test_a_rule_matches_from_a_priority_up() -> None:
    r = rules(create_rules=[ALERTS])
    assert r.creation_rule(alert(priority="urgent")) == ALERTS
    assert r.creation_rule(alert(priority="normal")) is None
    assert r.creation_rule(alert(priority=None)) is None


def test_the_first_rule_of_the_object_s_system_applies() -> None:
    catch_all = CreateRule(name="any-tracker", system="tracker")
    r = rules(create_rules=[ANY_PAGE, ALERTS, catch_all])
    assert r.creation_rule(alert()) == ALERTS
    assert r.creation_rule(alert(priority="low")) == catch_all
    assert r.creation_rule(vendor("pages", "P-1", T0, status="INVESTIGATING")) == ANY_PAGE
    assert r.creation_rule(vendor("desk", "D-1", T0, status="new")) is None


# -- differs in meaning --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor_status", "held", "not_held"),
    [
        ("MONITORING", {"acknowledged", "monitoring", "waiting"}, {"open", "resolved"}),
        ("IDENTIFIED", {"acknowledged", "waiting"}, {"monitoring", "open"}),
        ("RESOLVED", {"resolved", "closed", "cancelled"}, {"open", "waiting"}),
    ],
)
def test_a_many_to_one_map_holds_every_canonical_value_it_means(
    vendor_status: str, held: set[str], not_held: set[str]
) -> None:
    r = rules()
    obj = vendor("pages", "P-1", T0, status=vendor_status)
    for canonical in held:
        assert r.differs("pages", obj, Fields(status=Status(canonical))).is_empty(), canonical
    for canonical in not_held:
        target = Fields(status=Status(canonical))
        assert r.differs("pages", obj, target) == target, canonical


def test_an_unmapped_vendor_value_holds_no_canonical_value() -> None:
    obj = vendor("pages", "P-1", T0, status="POSTMORTEM")
    assert obj.unmapped == {"status": "POSTMORTEM"}
    for status in Status:
        assert rules().differs("pages", obj, Fields(status=status)) == Fields(status=status)


def test_each_system_compares_through_its_own_maps() -> None:
    r = rules()
    # "working" means acknowledged at desk; at pages the same canonical value is spelled
    # IDENTIFIED or MONITORING
    desk = vendor("desk", "D-1", T0, status="working", priority="high")
    assert r.differs(
        "desk", desk, Fields(status=Status.ACKNOWLEDGED, priority=Priority.HIGH)
    ).is_empty()
    pages = vendor("pages", "P-1", T0, status="MONITORING", priority="MAJOR")
    assert r.differs("pages", pages, Fields(priority=Priority.HIGH)).is_empty()
    assert r.differs("pages", pages, Fields(priority=Priority.URGENT)) == Fields(
        priority=Priority.URGENT
    )


def test_the_maps_the_rules_are_built_with_decide() -> None:
    """An override (as the config lays over the adapter's defaults) is what counts."""
    obj = vendor("pages", "P-1", T0, status="MONITORING")
    target = Fields(status=Status.ACKNOWLEDGED)
    assert rules().differs("pages", obj, target).is_empty()
    override = ValueMap(inbound={}, outbound={"acknowledged": ["IDENTIFIED"]})
    maps = {**MAPS, "pages": {**MAPS["pages"], "status": MAPS["pages"]["status"].merged(override)}}
    assert rules(maps).differs("pages", obj, target) == target


def test_fit_cuts_to_a_limit_in_utf16_units_on_a_character_boundary() -> None:
    assert fit("a" * 500, 500) == "a" * 500
    assert fit("a" * 501, 500) == "a" * 499 + CUT
    # an emoji is one character and two UTF-16 units: 250 fill 500 units
    assert fit("\U0001f642" * 250, 500) == "\U0001f642" * 250
    assert fit("\U0001f642" * 251, 500) == "\U0001f642" * 249 + CUT
    # never half of one: 249 after the "a" fill 499 units, the cut takes the last
    assert fit("a" + "\U0001f642" * 300, 500) == "a" + "\U0001f642" * 249 + CUT
    for text in ("x" * 900, "\U0001f642" * 900, "\u00e9\U0001f642" * 300):
        assert utf16_length(fit(text, 500)) <= 500
        assert len(fit(text, 500)) <= 500


def test_a_text_longer_than_a_system_holds_is_written_cut_and_the_cut_holds_it() -> None:
    """DevHelm holds a title of 500 characters at most: a longer canonical title is
    written cut to fit, an object holding the cut holds the title (so the cut neither
    makes the link dirty again nor comes back as a change), and only a change within
    what fits is one there. Other systems get and compare the whole title."""
    pages = CAPS["pages"]
    caps = {**CAPS, "pages": Caps(pages.readable, pages.writable, max_lengths={"title": 10})}
    r = Rules(settings(), caps, MAPS)
    whole = "Disk full on db-1"
    assert r.to_vendor("pages", Fields(title=whole)) == Fields(title="Disk full" + CUT)
    assert r.to_vendor("pages", Fields(title="Disk full")) == Fields(title="Disk full")
    assert r.to_vendor("desk", Fields(title=whole)) == Fields(title=whole)
    held = vendor("pages", "P-1", T0, title="Disk full" + CUT)
    assert r.differs("pages", held, Fields(title=whole)).is_empty()
    assert r.differs("pages", held, Fields(title="Disk full on db-2")).is_empty()
    assert r.differs("pages", held, Fields(title="Disk is full")) == Fields(title="Disk is full")
    desk = vendor("desk", "D-1", T0, title="Disk full" + CUT, status="new")
    assert r.differs("desk", desk, Fields(title=whole)) == Fields(title=whole)


def test_a_blank_text_a_system_refuses_is_not_written_there_but_still_read() -> None:
    """DevHelm refuses a blank title: a canonical title that is empty or only whitespace
    (a ticket's subject blanked) is left out of what goes there, while a system that
    holds it gets it, and a real title from that system still differs from it."""
    pages = CAPS["pages"]
    caps = {
        **CAPS,
        "pages": Caps(pages.readable, pages.writable, blank_refused=frozenset({"title"})),
    }
    r = Rules(settings(), caps, MAPS)
    canonical = Fields(title="  \t", status=Status.OPEN)
    assert r.outgoing("pages", canonical) == Fields(status=Status.OPEN)
    assert r.outgoing("pages", Fields(title="")) == Fields()
    assert r.outgoing("pages", Fields(title=" x ")) == Fields(title=" x ")
    assert r.outgoing("desk", canonical) == canonical
    assert r.outgoing("tracker", canonical) == Fields(status=Status.OPEN)  # never its title
    held = vendor("pages", "P-1", T0, title="Disk full")
    assert r.differs("pages", held, Fields(title="  \t")) == Fields(title="  \t")


def test_other_fields_compare_by_value_and_a_missing_object_lacks_everything() -> None:
    r = rules()
    obj = vendor("desk", "D-1", T0, status="new", title="Disk full", assignee=None)
    target = Fields(title="Disk full", assignee=None, status=Status.OPEN)
    assert r.differs("desk", obj, target).is_empty()
    # the assignee through the identity map: "desk:u-1" is desk's own user u-1
    assert r.differs("desk", obj, Fields(title="Disk full!", assignee="desk:u-1")) == Fields(
        title="Disk full!", assignee="desk:u-1"
    )
    assert r.differs("desk", None, target) == target
