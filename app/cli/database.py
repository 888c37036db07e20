"""Opening the database for a command: one line, never a traceback, when it cannot be used."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.store import Store


class DatabaseUnusable(Exception):
    """The database cannot be used; the message is the line to print."""


async def usable_store(command: str, url: str, *, migrate: bool = True, **options: Any) -> Store:
    """A ``Store`` on ``url``, reached, with its schema brought up to date unless
    ``migrate`` is false (a dry run writes nothing, not even a schema). A database that
    cannot be used (refused, no such file, a wrong password, ...) raises
    ``DatabaseUnusable`` with one line that names it, its password masked."""
    from sqlalchemy.engine import make_url

    from app.config.report import mask_database_url
    from app.store import Store, failure_reason

    shown = mask_database_url(url)
    what = f"cannot open {shown}" if url.startswith("sqlite") else f"cannot connect to {shown}"
    store = None
    try:
        store = Store.connect(url, **options)
        await store.reach()
        if migrate:
            what = f"cannot bring the schema of {shown} up to date"
            await store.migrate()
    except Exception as exc:
        reason = failure_reason(exc)
        if reason is None:
            raise
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
        password = make_url(url).password
        if password:
            reason = reason.replace(str(password), "***")
        raise DatabaseUnusable(f"syncgate {command}: database: {what} ({reason})") from None
    return store
