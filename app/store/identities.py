"""The people added through the admin API (the ``identities`` table)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from app import tables as t
from app.model import Person
from app.store.base import TxBase


class IdentityQueries(TxBase):
    """The people added through the admin API, by lower-case email."""

    async def list_people(self) -> list[Person]:
        query = sa.select(t.identities).order_by(t.identities.c.email)
        return [
            Person(email=row.email, name=row.name, ids=dict(row.ids or {}))
            for row in await self._run(query)
        ]

    async def put_person(self, person: Person, *, now: datetime) -> bool:
        """Add or replace one person; returns whether they were new."""
        email = person.email.lower()
        removed = await self._run(sa.delete(t.identities).where(t.identities.c.email == email))
        await self._run(
            sa.insert(t.identities).values(
                email=email, name=person.name, ids=dict(person.ids), updated_at=now
            )
        )
        return removed.rowcount == 0

    async def delete_person(self, email: str) -> bool:
        """Remove one person; returns whether there was one."""
        result = await self._run(
            sa.delete(t.identities).where(t.identities.c.email == email.lower())
        )
        return bool(result.rowcount)
