"""The identity map's two sources: people from config.yaml (read-only) and people added
through the admin API (stored in the database). Together they make the ``IdentityMap``
the rules carry assignees through.

The config's people come first: an email or a user id the config gives is never taken
over by a stored person (the API refuses it, and a config reload that adds it hides the
stored entry). A change through the API takes effect in this process at once, and in
the other processes sharing the database at their next refresh (``REFRESH_S``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from app.config.checks import identity_email_problem
from app.errors import Invalid, Missing, StateConflict
from app.model import IdentityMap, Person, utcnow
from app.store import Store

#: How often a gateway re-reads the stored people (changes made by another process).
REFRESH_S = 30.0

CONFIG = "config"
API = "api"


#: The longest user id taken (vendor ids are far shorter).
MAX_USER_ID = 200


class Identities:
    """``systems``: the configured systems; ``assignable``: those whose adapter has
    assignees. ``on_change`` receives the new map after every change."""

    def __init__(
        self,
        store: Store,
        configured: Sequence[Person],
        *,
        systems: Collection[str],
        assignable: Collection[str],
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[IdentityMap], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_change = on_change
        self.stored: list[Person] = []
        self.configure(configured, systems=systems, assignable=assignable)

    def configure(
        self, configured: Sequence[Person], *, systems: Collection[str], assignable: Collection[str]
    ) -> None:
        """Take a (new) configuration's people and systems."""
        self.configured = {p.email.lower(): p for p in configured}
        self.systems = frozenset(systems)
        self.assignable = frozenset(assignable)

    def map(self) -> IdentityMap:
        return IdentityMap([*self.configured.values(), *self.stored])

    def entries(self) -> list[tuple[Person, str]]:
        """Every person and where they come from (``config`` or ``api``), by email."""
        out = [(p, CONFIG) for p in self.configured.values()]
        out += [(p, API) for p in self.stored if p.email.lower() not in self.configured]
        return sorted(out, key=lambda entry: entry[0].email.lower())

    def get(self, email: str) -> tuple[Person, str]:
        for person, source in self.entries():
            if person.email.lower() == email.lower():
                return person, source
        raise Missing(f"no identity {email!r}")

    async def load(self) -> IdentityMap:
        """Re-read the stored people; returns (and announces) the map."""
        async with self.store.tx() as tx:
            self.stored = await tx.list_people()
        return self._changed()

    async def put(self, email: str, name: str, ids: Mapping[str, str]) -> tuple[Person, bool]:
        """Add or replace one person; returns them and whether they are new. Raises
        ``Invalid`` for a bad email or user id, ``StateConflict`` for a person of the
        config or a user id that is someone else's."""
        person = Person(email=email.lower(), name=name, ids=dict(ids))
        self._check(person)
        async with self.store.tx() as tx:
            created = await tx.put_person(person, now=self.clock())
            self.stored = await tx.list_people()
        self._changed()
        return person, created

    async def delete(self, email: str) -> Person:
        """Remove one person added through the API."""
        person, source = self.get(email)
        if source == CONFIG:
            raise StateConflict(f"{person.email} is defined in config.yaml: change it there")
        async with self.store.tx() as tx:
            await tx.delete_person(email)
            self.stored = await tx.list_people()
        self._changed()
        return person

    def _changed(self) -> IdentityMap:
        identities = self.map()
        if self.on_change is not None:
            self.on_change(identities)
        return identities

    def _check(self, person: Person) -> None:
        problem = identity_email_problem(person.email)
        if problem is not None:
            raise Invalid(problem)
        if person.email in self.configured:
            raise StateConflict(
                f"{person.email} is defined in config.yaml (read-only here): change it there"
            )
        if not person.ids:
            raise Invalid("ids: give at least one system's user id")
        have = ", ".join(sorted(self.assignable & self.systems)) or "none"
        owners = {
            (system, user_id): other.email.lower()
            for other, _ in self.entries()
            for system, user_id in other.ids.items()
        }
        for system, user_id in sorted(person.ids.items()):
            if system not in self.systems:
                known = ", ".join(sorted(self.systems)) or "none"
                raise Invalid(f"ids.{system}: no system named {system!r} (configured: {known})")
            if system not in self.assignable:
                raise Invalid(f"ids.{system}: {system} has no assignees (systems that do: {have})")
            if not user_id.strip():
                raise Invalid(f"ids.{system}: must not be empty")
            if len(user_id) > MAX_USER_ID:
                raise Invalid(f"ids.{system}: longer than {MAX_USER_ID} characters")
            owner = owners.get((system, user_id))
            if owner is not None and owner != person.email:
                raise StateConflict(
                    f"ids.{system}: {system} user {user_id!r} already belongs to {owner};"
                    " a user id belongs to one person"
                )
