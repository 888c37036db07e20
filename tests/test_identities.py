"""Identity mapping without the world: the map itself, the rules that carry assignees
through it, the engine on a real store (a person is read from one system and written as
another system's user, an unmapped one is not written and the history says so), and the
config checker's ``identities`` section. The admin API's routes are in
``tests/test_admin_identities.py``; real processes in ``tests/test_identity_promise.py``."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from msgspec import UNSET

from adapters import adapter_class
from app.config import SystemCaps, load_config
from app.config.schema import CreateIn, CreateRule, FieldRule
from app.engine import Engine
from app.errors import ConfigError, ConfigIssue, Invalid
from app.model import Fields, IdentityMap, Person
from app.rules import Rules
from app.store import HistoryEntry, Link, Store
from tests.rules_support import CAPS, MAPS, T0, Caps, settings, vendor

ADA = Person(email="ada@example.com", name="Ada", ids={"desk": "d-ada", "pages": "p-ada"})
BO = Person(email="bo@example.com", ids={"desk": "d-bo"})  # no pages user
SECOND = timedelta(seconds=1)

# "pages" with assignees too, so that a person crosses from desk to pages
TWO_SIDED = {
    **CAPS,
    "pages": Caps(
        readable=CAPS["pages"].readable | {"assignee"},
        writable=CAPS["pages"].writable | {"assignee"},
    ),
}
DESK_FANS_OUT = CreateRule(
    name="desk-fans-out", system="desk", create_in=[CreateIn(system="pages", scope="sp-1")]
)


def rules(people: list[Person], *, shared: bool = True) -> Rules:
    fields = {"assignee": FieldRule()} if shared else {}
    return Rules(
        settings(fields=fields, create_rules=[DESK_FANS_OUT]),
        TWO_SIDED,
        MAPS,
        IdentityMap(people),
    )


#: The systems were connected a day before the objects of these tests were made.
CONNECTED = {"desk": T0 - timedelta(days=1), "pages": T0 - timedelta(days=1)}


def ticket(at: datetime, assignee: str | None, external_id: str = "D-1") -> Any:
    return vendor(
        "desk",
        external_id,
        at,
        status="new",
        priority="normal",
        title="Disk full",
        assignee=assignee,
    )


def page(at: datetime, assignee: str | None) -> Any:
    return vendor(
        "pages",
        "P-1",
        at,
        scope="sp-1",
        status="INVESTIGATING",
        priority="MINOR",
        title="Disk full",
        assignee=assignee,
    )


# -- the map ----------------------------------------------------------------------------------


def test_a_user_id_reads_as_its_person_and_an_unknown_one_as_its_system_user() -> None:
    people = IdentityMap([ADA, BO])
    assert people.canonical("desk", "d-ada") == "ada@example.com"
    assert people.canonical("pages", "p-ada") == "ada@example.com"
    assert people.canonical("desk", "d-carol") == "desk:d-carol"
    assert people.canonical("pages", "d-ada") == "pages:d-ada"  # ids are per system
    assert people.canonical("desk", None) is None


def test_a_person_is_written_as_each_systems_own_user_id_or_not_at_all() -> None:
    people = IdentityMap([ADA, BO])
    assert people.user_id("ada@example.com", "pages") == "p-ada"
    assert people.user_id("Ada@Example.com", "desk") == "d-ada"  # emails compare without case
    assert people.user_id("bo@example.com", "pages") is UNSET
    assert people.user_id("carol@example.com", "desk") is UNSET
    assert people.user_id(None, "pages") is None  # unassigned is a value
    # an unmapped user goes back to its own system only
    assert people.user_id("desk:d-carol", "desk") == "d-carol"
    assert people.user_id("desk:d-carol", "pages") is UNSET
    # ... until someone maps them: the same canonical value then reaches the person
    carol = Person(email="carol@example.com", ids={"desk": "d-carol", "pages": "p-carol"})
    assert IdentityMap([carol]).user_id("desk:d-carol", "pages") == "p-carol"


def test_the_first_entry_for_an_email_or_a_user_id_wins() -> None:
    thief = Person(email="eve@example.com", ids={"desk": "d-ada", "pages": "p-eve"})
    people = IdentityMap([ADA, thief, Person(email="ADA@example.com", ids={"desk": "x"})])
    assert people.canonical("desk", "d-ada") == "ada@example.com"
    assert people.user_id("ada@example.com", "desk") == "d-ada"
    assert people.canonical("pages", "p-eve") == "eve@example.com"
    assert people.user_id("eve@example.com", "desk") is UNSET  # ada's desk user, not eve's


# -- the rules --------------------------------------------------------------------------------


def test_differs_compares_assignees_through_the_map() -> None:
    r = rules([ADA, BO])
    holding_ada = ticket(T0, "d-ada")
    assert r.differs("desk", holding_ada, Fields(assignee="ada@example.com")).is_empty()
    assert r.differs("desk", holding_ada, Fields(assignee="bo@example.com")) == Fields(
        assignee="bo@example.com"
    )
    assert r.differs("desk", holding_ada, Fields(assignee=None)) == Fields(assignee=None)
    # bo has no pages user: never a difference to write there, whatever the page holds
    assert r.differs("pages", page(T0, "p-ada"), Fields(assignee="bo@example.com")).is_empty()
    assert r.differs("pages", None, Fields(title="x", assignee="bo@example.com")) == Fields(
        title="x"
    )


def test_to_vendor_turns_the_person_into_the_systems_user_id_or_leaves_it_out() -> None:
    r = rules([ADA, BO])
    assert r.to_vendor("pages", Fields(title="x", assignee="ada@example.com")) == Fields(
        title="x", assignee="p-ada"
    )
    assert r.to_vendor("pages", Fields(title="x", assignee="bo@example.com")) == Fields(title="x")
    assert r.to_vendor("pages", Fields(assignee=None)) == Fields(assignee=None)
    assert r.assignee_unwritable("pages", "bo@example.com")
    assert not r.assignee_unwritable("pages", "ada@example.com")
    # a system that does not receive assignees is not one the person is missing from
    assert not rules([ADA, BO], shared=False).assignee_unwritable("pages", "bo@example.com")


# -- the engine -------------------------------------------------------------------------------


async def links_of(store: Store, item_id: str) -> dict[str, Link]:
    async with store.tx() as tx:
        return {link.system: link for link in await tx.links_of(item_id)}


async def unmapped_history(store: Store, item_id: str) -> list[HistoryEntry]:
    async with store.tx() as tx:
        return [e for e in await tx.history_of(item_id) if e.kind == "unmapped"]


async def started(store: Store, engine: Engine, assignee: str | None) -> str:
    """A work item started by desk ticket D-1, its pages object created holding it."""
    outcome = await engine.observe(ticket(T0, assignee))
    assert outcome.kind == "created" and outcome.work_item_id is not None
    links = await links_of(store, outcome.work_item_id)
    async with store.tx() as tx:
        item = await tx.require_item(outcome.work_item_id)
        held = engine.rules.to_vendor("pages", item.fields()).assignee
        await tx.finish_write(
            links["pages"],
            page(T0 + SECOND, None if held is UNSET else held),
            version=1,
            now=T0 + 2 * SECOND,
        )
    return outcome.work_item_id


async def test_a_desk_assignee_becomes_the_person_and_is_due_at_pages(store: Store) -> None:
    engine = Engine(store, rules([ADA, BO]), clock=lambda: T0 + 3 * SECOND)
    engine.connected = CONNECTED  # before the objects were made: they are new
    item_id = await started(store, engine, None)
    outcome = await engine.observe(ticket(T0 + 5 * SECOND, "d-ada"))
    assert outcome.changed == ("assignee",)
    async with store.tx() as tx:
        assert (await tx.require_item(item_id)).assignee == "ada@example.com"
    pages = (await links_of(store, item_id))["pages"]
    assert pages.id in outcome.dirty_links and pages.dirty
    # what the dispatcher sends pages: its own user id for ada
    target = engine.rules.differs("pages", pages.known, Fields(assignee="ada@example.com"))
    assert engine.rules.to_vendor("pages", target) == Fields(assignee="p-ada")
    assert await unmapped_history(store, item_id) == []


async def test_an_unmapped_assignee_is_kept_as_such_and_not_written(store: Store) -> None:
    engine = Engine(store, rules([ADA, BO]), clock=lambda: T0 + 3 * SECOND)
    engine.connected = CONNECTED  # before the objects were made: they are new
    item_id = await started(store, engine, "d-ada")
    assert not (await links_of(store, item_id))["pages"].dirty
    # a desk user nobody mapped: the item says so, pages is not touched
    outcome = await engine.observe(ticket(T0 + 5 * SECOND, "d-carol"))
    assert (outcome.changed, outcome.dirty_links) == (("assignee",), ())
    async with store.tx() as tx:
        assert (await tx.require_item(item_id)).assignee == "desk:d-carol"
    # a person with no pages user (bo): the same
    outcome = await engine.observe(ticket(T0 + 6 * SECOND, "d-bo"))
    assert (outcome.changed, outcome.dirty_links) == (("assignee",), ())
    assert [(e.system, e.field, e.new_value) for e in await unmapped_history(store, item_id)] == [
        ("pages", "assignee", "desk:d-carol"),
        ("pages", "assignee", "bo@example.com"),
    ]
    # and the desk ticket is never written back over the person's choice
    assert not (await links_of(store, item_id))["desk"].dirty


async def test_a_new_item_with_an_unmapped_assignee_is_created_without_it_there(
    store: Store,
) -> None:
    engine = Engine(store, rules([ADA]), clock=lambda: T0 + 3 * SECOND)
    engine.connected = CONNECTED  # before the objects were made: they are new
    outcome = await engine.observe(ticket(T0, "d-zed", external_id="D-9"))
    assert outcome.kind == "created" and outcome.work_item_id is not None
    [entry] = await unmapped_history(store, outcome.work_item_id)
    assert (entry.system, entry.new_value) == ("pages", "desk:d-zed")
    async with store.tx() as tx:
        item = await tx.require_item(outcome.work_item_id)
    assert engine.rules.to_vendor("pages", item.fields().only({"title", "assignee"})) == Fields(
        title="Disk full"
    )


async def test_a_user_mapped_later_becomes_the_person_and_goes_out_at_once(
    store: Store,
) -> None:
    """The item held ``desk:d-carol`` for good once carol was mapped (an earlier audit's
    finding): the canonical assignee is a person's email. Now it becomes hers, pages is
    due at once, and the field keeps its stamp: a reassignment made in desk before the
    mapping, heard after it, still wins."""
    engine = Engine(store, rules([ADA]), clock=lambda: T0 + 10 * SECOND)
    engine.connected = CONNECTED  # before the objects were made: they are new
    item_id = await started(store, engine, None)
    await engine.observe(ticket(T0 + 5 * SECOND, "d-carol"))
    assert not (await links_of(store, item_id))["pages"].dirty
    carol = Person(email="carol@example.com", ids={"desk": "d-carol", "pages": "p-carol"})
    engine.rules.identities = IdentityMap([ADA, carol])
    named = engine.rules.identities.named_users()
    assert await engine.name_assignees(named) == [item_id]
    async with store.tx() as tx:
        item = await tx.require_item(item_id)
        history = await tx.history_of(item_id)
    assert item.assignee == "carol@example.com"
    assert item.stamps["assignee"].system == "desk"  # the person's change, not the map's
    assert (history[-1].kind, history[-1].system, history[-1].old_value) == (
        "change",
        "identities",
        "desk:d-carol",
    )
    pages = (await links_of(store, item_id))["pages"]
    assert pages.dirty and pages.dirty_version == item.version
    target = engine.rules.differs("pages", pages.known, item.fields().only({"assignee"}))
    assert engine.rules.to_vendor("pages", target) == Fields(assignee="p-carol")
    assert await engine.name_assignees(named) == []  # nothing left to name

    # ada took the ticket in desk before the mapping; the webhook arrives only now
    outcome = await engine.observe(ticket(T0 + 7 * SECOND, "d-ada"))
    assert outcome.changed == ("assignee",)
    async with store.tx() as tx:
        assert (await tx.require_item(item_id)).assignee == "ada@example.com"


async def test_an_operator_may_assign_a_person_by_email(store: Store) -> None:
    engine = Engine(store, rules([ADA, BO]), clock=lambda: T0 + 3 * SECOND)
    engine.connected = CONNECTED  # before the objects were made: they are new
    item_id = await started(store, engine, None)
    outcome = await engine.change(item_id, Fields(assignee="ada@example.com"))
    links = await links_of(store, item_id)
    assert set(outcome.dirty_links) == {links["pages"].id, links["desk"].id}
    await engine.change(item_id, Fields(assignee="Bo@Example.com"))
    assert [e.system for e in await unmapped_history(store, item_id)] == ["pages"]
    async with store.tx() as tx:
        assert (await tx.require_item(item_id)).assignee == "bo@example.com"
    # a raw vendor id, or a name nobody has, would be written nowhere: refused
    for nobody in ("p-zed", "zed@example.com", "jira:J-1", "desk:"):
        with pytest.raises(Invalid, match="is no person of the identity map"):
            await engine.change(item_id, Fields(assignee=nobody))
    # a system's own user, mapped or not, is a valid assignee
    await engine.change(item_id, Fields(assignee="desk:d-zed"))
    async with store.tx() as tx:
        assert (await tx.require_item(item_id)).assignee == "desk:d-zed"


# -- the config checker -----------------------------------------------------------------------


def known() -> dict[str, SystemCaps]:
    out = {}
    for name in ("hookstream", "inboxops", "incidentio"):
        cls = adapter_class(name)
        out[name] = SystemCaps(cls.readable, cls.writable, cls.can_create, cls.Options)
    return out


def config_issues(tmp_path: Path, identities: str) -> dict[str, ConfigIssue]:
    text = textwrap.dedent(
        """
        systems:
          hookstream: {base_url: "http://127.0.0.1:1", api_key_env: HS_KEY}
          inboxops: {base_url: "http://127.0.0.1:2", api_key_env: IO_KEY}
          incidentio: {base_url: "http://127.0.0.1:3", api_key_env: II_KEY}
        """
    ).lstrip("\n") + textwrap.dedent(identities).lstrip("\n")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, known())
    return {issue.key: issue for issue in caught.value.issues}


def test_the_checker_reports_each_identity_problem_with_its_line(tmp_path: Path) -> None:
    found = config_issues(
        tmp_path,
        """
        identities:
          - email: ada@example.com
            ids: {inboxops: 6e2c7c5e-0000-4000-8000-000000000001, incidentio: U1}
          - email: ADA@example.com
            ids: {inboxops: 6e2c7c5e-0000-4000-8000-000000000002}
          - email: "not an email"
            ids:
              incidentio: U1
              hookstream: h-1
              jira: j-1
              inboxops: ""
          - email: nobody@example.com
          - email: bo@example.com
            ids: {devhelm: d-1}
            colour: red
        """,
    )
    expected = {
        "identities[1].email": (8, "'ADA@example.com' is listed twice (also identities[0])"),
        "identities[2].email": (10, "'not an email' is not an email address"),
        "identities[2].ids.incidentio": (
            12,
            "incidentio user 'U1' already belongs to ada@example.com (identities[0])",
        ),
        "identities[2].ids.hookstream": (13, "hookstream has no assignees (systems that do:"),
        "identities[2].ids.jira": (14, "'jira' is not a configured system"),
        "identities[2].ids.inboxops": (15, "must not be empty"),
        "identities[3].ids": (16, "must give at least one system's user id"),
        "identities[4].ids.devhelm": (18, "'devhelm' is not a configured system"),
        "identities[4].colour": (19, "unknown key 'colour'"),
    }
    for key, (line, message) in expected.items():
        assert key in found, (key, sorted(found))
        assert (found[key].line, found[key].message[: len(message)]) == (line, message), key
    assert "inboxops, incidentio" in found["identities[2].ids.hookstream"].message


def test_a_valid_identities_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            """
            systems:
              inboxops: {base_url: "http://127.0.0.1:2", api_key_env: IO_KEY}
              incidentio: {base_url: "http://127.0.0.1:3", api_key_env: II_KEY}
            fields:
              assignee: {}
            identities:
              - email: ada@example.com
                name: Ada
                ids: {inboxops: 6e2c7c5e-0000-4000-8000-000000000001, incidentio: U1}
            """
        ),
        encoding="utf-8",
    )
    settings = load_config(path, known())
    [ada] = settings.identities
    assert (ada.email, ada.name, ada.ids["incidentio"]) == ("ada@example.com", "Ada", "U1")
