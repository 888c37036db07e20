"""The link rules' index (``match_keys``): the keys objects yielded, to find the objects
a new one is the same thing as."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import tables as t
from app.model import VendorObject
from app.store.base import TxBase
from app.store.records import encode_known, known_of


class MatchQueries(TxBase):
    """The link rules' index: keys objects yielded, by rule and side."""

    async def index_keys(
        self, obj: VendorObject, keys: Iterable[tuple[str, str, str]], now: datetime
    ) -> set[tuple[str, str]]:
        """Remember the keys ``obj`` yields: (rule name, side, key) each; a key it yielded
        before under the same rule and side is replaced. Returns the (rule, side) pairs
        whose key is new or changed."""
        keys = list(keys)
        held = await self._run(
            sa.select(t.match_keys.c.rule, t.match_keys.c.side, t.match_keys.c.key).where(
                t.match_keys.c.system == obj.ref.system,
                t.match_keys.c.scope == obj.ref.scope,
                t.match_keys.c.external_id == obj.ref.external_id,
            )
        )
        before = {(r.rule, r.side): r.key for r in held}
        fresh = {(rule, side) for rule, side, key in keys if before.get((rule, side)) != key[:500]}
        rows = [
            {
                "rule": rule,
                "side": side,
                "key": key[:500],
                "system": obj.ref.system,
                "scope": obj.ref.scope,
                "external_id": obj.ref.external_id,
                "known_state": encode_known(obj),
                "seen_at": now,
            }
            for rule, side, key in keys
        ]
        if not rows:
            return fresh
        insert = (pg_insert if self.postgres else sqlite_insert)(t.match_keys)
        statement = insert.on_conflict_do_update(
            index_elements=["rule", "side", "system", "scope", "external_id"],
            set_={
                "key": insert.excluded.key,
                "known_state": insert.excluded.known_state,
                "seen_at": insert.excluded.seen_at,
            },
        )
        await self._run(statement, rows)
        return fresh

    async def match_candidates(self, rule: str, side: str, key: str) -> list[VendorObject]:
        """The objects seen on ``side`` of ``rule`` whose key is ``key``, as last seen."""
        rows = await self._run(
            sa.select(t.match_keys.c.known_state)
            .where(
                t.match_keys.c.rule == rule,
                t.match_keys.c.side == side,
                t.match_keys.c.key == key[:500],
            )
            .order_by(t.match_keys.c.id)
        )
        return [obj for (state,) in rows if (obj := known_of(state)) is not None]
