"""Work items and their history."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import tables as t
from app.errors import AlreadyLinked, Invalid, Missing
from app.model import (
    WorkItem,
    as_utc,
)
from app.store.base import TxBase
from app.store.records import HistoryEntry, WriteAttempt, aware_or_none, item_of, item_values
from app.store.statements import INSERT_ATTEMPTS, INSERT_HISTORY, READS, SAVE_ITEM

#: From this many candidates on, a search (SQLite) walks the items newest first instead
#: of reading every candidate (bench/console.py: a word in a fifth of the items).
SEARCH_CANDIDATES = 2000


def unsearchable(text: str) -> str | None:
    """Why ``text`` cannot be searched for, or None. A NUL character: PostgreSQL takes
    none in a text parameter, and SQLite's FTS5 ends a MATCH phrase at it ("unterminated
    string"). Any other character is searched for as it is (an FTS5 phrase doubles
    ``"``). The admin API and the console refuse such text before it comes here."""
    if "\x00" in text:
        return "the search text contains a NUL character (\\x00), which cannot be searched for"
    return None


def history_entry(row: Mapping[Any, Any]) -> HistoryEntry:
    """A history row as an entry."""
    return HistoryEntry(
        **{k: v for k, v in row.items() if k not in ("id", "at")},
        at=aware_or_none(row["at"]),  # type: ignore[arg-type]
    )


def write_entry(row: Mapping[Any, Any]) -> HistoryEntry:
    """A successful write attempt as its work item's history shows it."""
    return HistoryEntry(
        work_item_id=row["work_item_id"],
        kind="write",
        system=row["system"],
        external_id=row["external_id"],
        new_value=row["payload"],
        detail=f"{row['action']} {row['external_id']} (version {row['version']})",
        at=aware_or_none(row["at"]),  # type: ignore[arg-type]
    )


class ItemQueries(TxBase):
    """Work items and their history."""

    # -- work items ------------------------------------------------------------------------

    async def get_item(self, item_id: str, *, lock: bool = False) -> WorkItem | None:
        """The work item; with ``lock`` its row stays locked until the transaction ends
        (PostgreSQL), which serializes changes to one item across processes."""
        query = sa.select(t.work_items).where(t.work_items.c.id == item_id)
        if lock and self.postgres:
            query = query.with_for_update()
        row = (await self._run(query)).first()
        return None if row is None else item_of(row)

    async def require_item(self, item_id: str, *, lock: bool = False) -> WorkItem:
        """``get_item``; raises ``Missing`` when there is no such item."""
        item = await self.get_item(item_id, lock=lock)
        if item is None:
            raise Missing(f"no work item {item_id!r}")
        return item

    async def insert_item(self, item: WorkItem) -> None:
        """Raises ``AlreadyLinked`` when an item with this id exists (another process
        started the item of the same origin object first)."""
        try:
            await self._run(sa.insert(t.work_items).values(**item_values(item)))
        except IntegrityError:
            raise AlreadyLinked(f"work item {item.id!r} exists already") from None

    async def insert_items(self, items: Sequence[WorkItem]) -> None:
        """Several new work items in one statement (a bulk load: an import, a benchmark)."""
        if items:
            await self._run(sa.insert(t.work_items), [item_values(i) for i in items])

    async def items_by_id(
        self, item_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, WorkItem]:
        """Several work items at once; with ``lock`` (PostgreSQL) their rows stay locked
        until the transaction ends, taken in id order so two processes cannot deadlock."""
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        reads = READS[self.postgres]
        query = reads.items_locked if lock and self.postgres else reads.items
        return {row.id: item_of(row) for row in await self._run(query, {"b_ids": ids})}

    async def items_assigned_to(self, assignees: Mapping[str, object]) -> list[str]:
        """The ids of the work items whose assignee is one of ``assignees``, each a user
        nobody was mapped to (``<system>:<id>``; an email holds no ``:``): one pass over
        the items that hold such a user, however many ``assignees`` there are."""
        query = sa.select(t.work_items.c.id, t.work_items.c.assignee).where(
            t.work_items.c.assignee.contains(":", autoescape=True)
        )
        return sorted(row.id for row in await self._run(query) if row.assignee in assignees)

    async def save_items(self, items: Iterable[WorkItem]) -> None:
        rows = []
        for item in items:
            values = item_values(item)
            values["b_id"] = values.pop("id")
            rows.append(values)
        if rows:
            await self._run(SAVE_ITEM, rows)

    async def search_items(
        self,
        *,
        status: str | None = None,
        system: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[WorkItem], int]:
        query = sa.select(t.work_items)
        if status:
            query = query.where(t.work_items.c.status == status)
        if system:
            query = query.where(
                t.work_items.c.id.in_(
                    sa.select(t.links.c.work_item_id).where(t.links.c.system == system)
                )
            )
        if text:
            query = query.where(*await self._text_filter(text))
        total = (
            await self._run(sa.select(sa.func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = await self._run(
            query.order_by(t.work_items.c.updated_at.desc(), t.work_items.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [item_of(r) for r in rows], int(total)

    async def page_items(
        self,
        *,
        status: str | None = None,
        system: str | None = None,
        text: str | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
    ) -> list[WorkItem]:
        """A page of work items, newest change first (``updated_at`` descending, then
        id), starting after the (updated_at, id) of the last item of the page before: a
        keyset page, as fast deep in the list as at its top, and no count of every match.
        ``system`` keeps items linked to an object of that system; ``text`` searches the
        title and description (case-insensitive)."""
        items = t.work_items
        query = sa.select(items)
        if status:
            query = query.where(items.c.status == status)
        if system:
            query = query.where(
                sa.exists().where(t.links.c.work_item_id == items.c.id, t.links.c.system == system)
            )
        if text:
            query = query.where(*await self._text_filter(text))
        if after is not None:
            at, item_id = after
            query = query.where(
                sa.or_(
                    items.c.updated_at < at, sa.and_(items.c.updated_at == at, items.c.id > item_id)
                )
            )
        rows = await self._run(query.order_by(items.c.updated_at.desc(), items.c.id).limit(limit))
        return [item_of(r) for r in rows]

    async def _text_filter(self, text: str) -> list[Any]:
        """The title or the description contains ``text``, ignoring case, through an index
        where there is one (migration 0007). PostgreSQL: the ILIKE below, which the
        pg_trgm GIN indexes serve as it is (its planner weighs them by statistics).
        SQLite: the FTS5 trigram index gives the candidates (its case folding covers all
        of Unicode, so it finds every item the LIKE finds, and maybe more), and the LIKE
        keeps exactly those the scan would. Under three characters a trigram index cannot
        help; with ``SEARCH_CANDIDATES`` or more candidates the text is common, and the
        walk newest first (``updated_at``'s index) fills a page sooner than reading and
        sorting every candidate: the LIKE alone then."""
        reason = unsearchable(text)
        if reason is not None:
            raise Invalid(reason)
        items = t.work_items
        exact = self._matches(text, items.c.title, items.c.description)
        if self.postgres:
            # the statement is prepared (asyncpg); after five runs PostgreSQL may plan it
            # once for any text, and a plan for an unknown text walks the items newest
            # first: every item for a rare one (150 ms at 100,000). Planned for each text,
            # a rare one goes through the trigram indexes, a common one takes the walk.
            await self._run(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            return [exact]
        if len(text) < 3 or not await self._has_fts():
            return [exact]
        phrase = '"' + text.replace('"', '""') + '"'
        rows = await self._run(
            sa.text(
                "SELECT rowid FROM work_items_fts WHERE work_items_fts MATCH :b_phrase"
                " LIMIT :b_limit"
            ),
            {"b_phrase": phrase, "b_limit": SEARCH_CANDIDATES},
        )
        rowids = [row[0] for row in rows]
        if len(rowids) >= SEARCH_CANDIDATES:
            return [exact]
        return [sa.literal_column("work_items.rowid").in_(rowids), exact]

    async def _has_fts(self) -> bool:
        """Whether this SQLite database has the search index (an SQLite without FTS5's
        trigram tokenizer has none)."""
        found = await self._run(
            sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'work_items_fts'")
        )
        return found.first() is not None

    def _matches(self, text: str, *columns: Any) -> Any:
        """Any of ``columns`` contains ``text``, ignoring case: SQLite's LIKE ignores the
        case of ASCII letters (as its lower() does) and needs no lower() call per row;
        PostgreSQL's ILIKE. ``%``, ``_`` and ``\\`` in ``text`` match themselves."""
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        if self.postgres:
            return sa.or_(*(c.ilike(pattern, escape="\\") for c in columns))
        return sa.or_(*(c.like(pattern, escape="\\") for c in columns))

    # -- history and attempts --------------------------------------------------------------

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if entries:
            await self._run(INSERT_HISTORY, [msgspec.structs.asdict(e) for e in entries])

    async def history_of(self, item_id: str, limit: int = 500) -> list[HistoryEntry]:
        """The oldest ``limit`` history entries of an item, oldest first."""
        return await self._history(item_id, limit, newest=False)

    async def _history(self, item_id: str, limit: int, *, newest: bool) -> list[HistoryEntry]:
        """An item's history: its history rows, in the order they were recorded, and its
        successful writes, read from the write attempts (a write is not copied into the
        history table, migration 0008), placed among them by time (a row and a write at
        the same instant: the row first). The ``limit`` oldest, or newest, oldest
        first."""
        h, w = t.history.c, t.write_attempts.c
        rows = await self._run(
            sa.select(t.history)
            .where(h.work_item_id == item_id)
            .order_by(h.id.desc() if newest else h.id)
            .limit(limit)
        )
        writes = await self._run(
            sa.select(t.write_attempts)
            .where(w.work_item_id == item_id, w.outcome == "ok", w.version.is_not(None))
            .order_by(*((w.at.desc(), w.id.desc()) if newest else (w.at, w.id)))
            .limit(limit)
        )
        entries = [(0, history_entry(r._mapping)) for r in rows]
        made = [(1, write_entry(r._mapping)) for r in writes]
        # each list keeps its own order (merge compares only their heads)
        merged = heapq.merge(entries, made, key=lambda e: (e[1].at, e[0]), reverse=newest)
        out = [entry for _, entry in itertools.islice(merged, limit)]
        if newest:
            out.reverse()
        return out

    async def add_attempts(self, attempts: Sequence[WriteAttempt]) -> None:
        if attempts:
            await self._run(INSERT_ATTEMPTS, [msgspec.structs.asdict(a) for a in attempts])

    async def attempts_of(self, link_id: int) -> list[WriteAttempt]:
        rows = await self._run(
            sa.select(t.write_attempts)
            .where(t.write_attempts.c.link_id == link_id)
            .order_by(t.write_attempts.c.id)
        )
        fields = WriteAttempt.__struct_fields__
        return [
            WriteAttempt(
                **{k: v for k, v in r._mapping.items() if k in fields}
                | {"at": as_utc(r._mapping["at"])}
            )
            for r in rows
        ]

    async def prune(self, before: datetime) -> int:
        """Delete history, attempts and processed events older than ``before``."""
        n = 0
        for table, column in (
            (t.history, t.history.c.at),
            (t.write_attempts, t.write_attempts.c.at),
        ):
            n += int((await self._run(sa.delete(table).where(column < before))).rowcount)
        n += int(
            (
                await self._run(
                    sa.delete(t.events).where(
                        t.events.c.received_at < before, t.events.c.state != "pending"
                    )
                )
            ).rowcount
        )
        return n

    # -- admin queries ---------------------------------------------------------------------

    async def retry_now(self, link_id: int) -> int:
        """Make a dirty (not dead) link's write due now, skipping its backoff."""
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .values(next_attempt_at=None)
        )
        return int(result.rowcount)

    async def discard_pending(self, link_id: int) -> int:
        """Give up on a link's pending or failed (not dead) write: it is no longer dirty."""
        result = await self._run(
            sa.update(t.links)
            .where(t.links.c.id == link_id, t.links.c.dirty.is_(True), t.links.c.dead.is_(False))
            .values(
                dirty=False,
                synced_version=t.links.c.dirty_version,
                next_attempt_at=None,
                attempts=0,
            )
        )
        return int(result.rowcount)

    async def dead_by_system(self) -> dict[str, int]:
        """Dead-lettered writes per system."""
        rows: Any = await self._run(
            sa.select(t.links.c.system, sa.func.count())
            .where(t.links.c.dead.is_(True))
            .group_by(self.link_system)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def recent_history(self, item_id: str, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` history entries of an item, oldest first."""
        return await self._history(item_id, limit, newest=True)
