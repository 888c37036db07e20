"""The database schema (SQLModel tables). Only ``app/store/`` and the migrations use it.

- work_items: the canonical state, one row per work item.
- links: the mapping table (work item x vendor object), with the state last known for the
  object and the outbox columns: a link is *dirty* until its object holds the canonical
  state; the dispatcher claims dirty links one writer at a time (lease columns).
- history: the audit trail: canonical changes, lost conflicts, unmapped values, writes.
- write_attempts: every call the dispatcher made, with its outcome and duration.
- events: the durable inbox of webhooks (and admin-injected observations), deduplicated by
  (system, delivery_id).
- systems: per-system runtime state: when it was first connected, poll cursor, pause,
  429 deferral, last error.
- identities: people added through the admin API (the config's are not stored), each
  with their user id per system, for assignees.
- match_keys: the link rules' index: each key an object seen in a rule's system yields,
  so a new object finds the objects it is the same thing as.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

TZ = sa.DateTime(timezone=True)


class WorkItemRow(SQLModel, table=True):
    __tablename__ = "work_items"
    __table_args__ = (
        # the console's list filtered by status, newest change first, without a sort
        sa.Index("ix_work_items_status_updated", "status", "updated_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    title: str = Field(default="", sa_type=sa.Text)
    description: str = Field(default="", sa_type=sa.Text)
    status: str = Field(max_length=32)
    priority: str = Field(max_length=32)
    snoozed_until: datetime | None = Field(default=None, sa_type=TZ)
    assignee: str | None = Field(default=None, max_length=200)
    labels: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    stamps: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    version: int = 1
    created_at: datetime = Field(sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ, index=True)


class LinkRow(SQLModel, table=True):
    __tablename__ = "links"
    __table_args__ = (
        sa.UniqueConstraint("system", "scope", "external_id", name="uq_links_object"),
        # a webhook often names an object without its scope: find it by system and id
        sa.Index("ix_links_system_external", "system", "external_id"),
        # the outbox: only dirty, live links, in the order the dispatcher claims them
        # (the predicate is spelled as the claim spells it: SQLite matches it literally)
        sa.Index(
            "ix_links_pending",
            "id",
            sqlite_where=sa.text("dirty IS 1 AND dead IS 0"),
            postgresql_where=sa.text("dirty IS TRUE AND dead IS FALSE"),
        ),
        # the dead letters, for the admin API (few, and looked at rarely)
        sa.Index(
            "ix_links_dead_letters",
            "id",
            sqlite_where=sa.text("dead IS 1"),
            postgresql_where=sa.text("dead IS TRUE"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    work_item_id: str = Field(foreign_key="work_items.id", index=True, max_length=32)
    system: str = Field(max_length=64)
    scope: str = Field(default="", max_length=200)
    #: NULL while the object is still to be created.
    external_id: str | None = Field(default=None, max_length=200)
    #: The object as last known (a VendorObject without raw), or NULL before creation.
    known_state: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    vendor_updated_at: datetime | None = Field(default=None, sa_type=TZ)
    last_synced_at: datetime | None = Field(default=None, sa_type=TZ)
    #: Creation parameters (a CreateTarget) while external_id is NULL.
    create_target: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    #: How often the link was claimed while its object was still to be created: past
    #: the first claim, an earlier attempt may have made the object (look before create).
    create_claims: int = 0
    #: When the first attempt to create the object was claimed: a retried create looks
    #: for an earlier attempt's object only among those created since (a bounded search).
    create_started_at: datetime | None = Field(default=None, sa_type=TZ)
    #: The fields the first create attempt sent, kept with the idempotency key: every
    #: retry sends the same body (InboxOps answers 409 to a key reused with another body).
    create_payload: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    #: The states (canonical fields) a write is sending the object, or sent without its
    #: answer being recorded: seen on the object, they are the gateway's own write
    #: coming back, not a person's edit (``Engine._observe``). A finished write clears it.
    unconfirmed: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    # -- outbox ---------------------------------------------------------------------------
    dirty: bool = Field(default=False)
    #: The work item version the object must reach.
    dirty_version: int = 0
    #: The work item version the object is known to hold.
    synced_version: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=TZ)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_until: datetime | None = Field(default=None, sa_type=TZ)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    #: Dead-lettered: not retried until an operator retries it.
    dead: bool = Field(default=False)
    dead_reason: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(sa_type=TZ)


class HistoryRow(SQLModel, table=True):
    __tablename__ = "history"

    id: int | None = Field(default=None, primary_key=True)
    work_item_id: str = Field(index=True, max_length=32)
    #: change | conflict_lost | not_synced | unmapped | created | linked | unlinked | write |
    #: dead_letter | ambiguous_match | waiting | stale
    kind: str = Field(max_length=32)
    field: str | None = Field(default=None, max_length=64)
    old_value: Any = Field(default=None, sa_type=sa.JSON, nullable=True)
    new_value: Any = Field(default=None, sa_type=sa.JSON, nullable=True)
    system: str | None = Field(default=None, max_length=64)
    event_id: str | None = Field(default=None, max_length=200)
    detail: str | None = Field(default=None, sa_type=sa.Text)
    at: datetime = Field(sa_type=TZ, index=True)
    #: The object of ``system`` the entry is about (migration 0010); NULL where it is
    #: about the system as a whole, or for entries recorded before.
    external_id: str | None = Field(default=None, max_length=200)


class WriteAttemptRow(SQLModel, table=True):
    __tablename__ = "write_attempts"

    id: int | None = Field(default=None, primary_key=True)
    link_id: int = Field(index=True)
    #: The item the write was made for (the link may have moved since); its history
    #: reads its writes from here (docs/architecture.md, "History").
    work_item_id: str = Field(max_length=32, index=True)
    system: str = Field(max_length=64)
    #: create | update
    action: str = Field(max_length=16)
    attempt: int
    #: ok | retry | rate_limited | dead | noop
    outcome: str = Field(max_length=16)
    status_code: int | None = None
    error: str | None = Field(default=None, sa_type=sa.Text)
    duration_ms: float
    payload: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    #: The gateway process that made the call.
    worker: str | None = Field(default=None, max_length=100)
    at: datetime = Field(sa_type=TZ, index=True)
    #: A successful write's object and the item version it holds (NULL for failed
    #: attempts, and for those from before migration 0008, whose history rows stand).
    external_id: str | None = Field(default=None, max_length=200)
    version: int | None = None


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        sa.UniqueConstraint("system", "delivery_id", name="uq_events_delivery"),
        sa.Index("ix_events_pending", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=64)
    delivery_id: str = Field(max_length=200)
    #: webhook | poll | admin
    source: str = Field(max_length=16)
    event_type: str = Field(default="", max_length=200)
    body: bytes = Field(sa_type=sa.LargeBinary)
    #: The delivery's headers, less credentials and signatures (parsing may need them).
    headers: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    #: pending | done | failed
    state: str = Field(default="pending", max_length=16)
    outcome: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = 0
    claimed_until: datetime | None = Field(default=None, sa_type=TZ)
    received_at: datetime = Field(sa_type=TZ, index=True)
    processed_at: datetime | None = Field(default=None, sa_type=TZ)


class SystemRow(SQLModel, table=True):
    __tablename__ = "systems"

    system: str = Field(primary_key=True, max_length=64)
    #: When the gateway was first connected to this system: polling starts there, and
    #: creation rules apply only to objects created since (or inside a backfill window).
    connected_at: datetime | None = Field(default=None, sa_type=TZ)
    paused: bool = False
    #: Vendor time up to which every change has been polled.
    poll_cursor: datetime | None = Field(default=None, sa_type=TZ)
    last_poll_at: datetime | None = Field(default=None, sa_type=TZ)
    last_poll_error: str | None = Field(default=None, sa_type=sa.Text)
    #: Writes to this system wait until then (a 429's Retry-After).
    deferred_until: datetime | None = Field(default=None, sa_type=TZ)
    last_write_error: str | None = Field(default=None, sa_type=sa.Text)


class IdentityRow(SQLModel, table=True):
    __tablename__ = "identities"

    #: Lower-case: the canonical assignee.
    email: str = Field(primary_key=True, max_length=320)
    name: str = Field(default="", max_length=200)
    #: System name -> that system's user id.
    ids: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    updated_at: datetime = Field(sa_type=TZ)


class MatchKeyRow(SQLModel, table=True):
    __tablename__ = "match_keys"
    __table_args__ = (
        sa.UniqueConstraint("rule", "side", "system", "scope", "external_id", name="uq_match_keys"),
        sa.Index("ix_match_keys_lookup", "rule", "side", "key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The link rule's name, and which of its two sides the object is on (left | right).
    rule: str = Field(max_length=100)
    side: str = Field(max_length=8)
    key: str = Field(max_length=500)
    system: str = Field(max_length=64)
    scope: str = Field(default="", max_length=200)
    external_id: str = Field(max_length=200)
    #: The object as seen (a VendorObject without raw): enough to link it without a read.
    known_state: dict[str, Any] = Field(sa_type=sa.JSON)
    seen_at: datetime = Field(sa_type=TZ)


metadata = SQLModel.metadata
work_items = WorkItemRow.__table__  # type: ignore[attr-defined]
links = LinkRow.__table__  # type: ignore[attr-defined]
history = HistoryRow.__table__  # type: ignore[attr-defined]
write_attempts = WriteAttemptRow.__table__  # type: ignore[attr-defined]
events = EventRow.__table__  # type: ignore[attr-defined]
systems = SystemRow.__table__  # type: ignore[attr-defined]
identities = IdentityRow.__table__  # type: ignore[attr-defined]
match_keys = MatchKeyRow.__table__  # type: ignore[attr-defined]
