"""Storage: the only package that opens database connections and runs SQL.

SQLite (WAL, one in-process connection driven from the event loop, ``BEGIN IMMEDIATE``)
is the embedded default; PostgreSQL (asyncpg) is the production store, where several
gateway processes share the work: work items are locked with ``SELECT ... FOR UPDATE``
while a change is applied, and dirty links and pending events are claimed with
``FOR UPDATE SKIP LOCKED``. A unique violation surfaces as ``AlreadyLinked``, never as
the driver's error.

``Store`` (``database.py``) owns the engine; ``Tx`` (``tx.py``) wraps one transaction and
offers the operations, grouped by concern: work items and history (``items.py``), links
and the outbox (``links.py``), events and systems (``events.py``). The records they hand
out are in ``records.py``; the prebuilt statements in ``statements.py``. On SQLite the
hot ones run straight on the driver (``direct.py``).
"""

from app.store.database import Store, WalCheckpointer, failure_reason, normalize_url
from app.store.items import unsearchable
from app.store.records import (
    Event,
    FinishedWrite,
    HistoryEntry,
    Link,
    NewEvent,
    SystemState,
    WriteAttempt,
)
from app.store.tx import Tx

__all__ = [
    "Event",
    "FinishedWrite",
    "HistoryEntry",
    "Link",
    "NewEvent",
    "Store",
    "SystemState",
    "Tx",
    "WalCheckpointer",
    "WriteAttempt",
    "failure_reason",
    "normalize_url",
    "unsearchable",
]
