"""``Tx``: one transaction and every operation run inside it, grouped by what they touch."""

from __future__ import annotations

from app.store.events import EventQueries
from app.store.identities import IdentityQueries
from app.store.items import ItemQueries
from app.store.links import LinkQueries
from app.store.matches import MatchQueries


class Tx(ItemQueries, LinkQueries, EventQueries, IdentityQueries, MatchQueries):
    """One database transaction and the operations run inside it."""
