"""The shape of ``config.yaml``: frozen msgspec structs that reject unknown keys.

Only the schema; reading the file and checking it is the rest of ``app.config``. Every key
is documented in the shipped ``config.yaml`` and in docs/configuration.md.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from app.model import Priority, Status


class Direction(enum.StrEnum):
    """How one field flows for one system."""

    BOTH = "both"  # the system may set the field, and receives it
    IN = "in"  # the system may set the field, and is never written
    OUT = "out"  # the system receives the field, but its changes are ignored
    NONE = "none"  # neither


class Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ValueMapSettings(Base, frozen=True):
    """Overrides for one enum map; laid over the adapter's defaults."""

    inbound: dict[str, str] = msgspec.field(default_factory=dict)
    outbound: dict[str, list[str]] = msgspec.field(default_factory=dict)
    #: true: these maps replace the adapter's defaults instead of extending them.
    replace: bool = False


class SystemSettings(Base, frozen=True, kw_only=True):
    """One connected vendor system."""

    # kw_only is not inherited from Base (msgspec applies it per class), and the required
    # base_url / api_key_env follow the optional ``enabled``.

    enabled: bool = True
    base_url: str
    api_key_env: str
    #: Environment variables holding webhook secrets; several during a rotation.
    webhook_secret_envs: list[str] = msgspec.field(default_factory=list)
    webhook_tolerance_s: float = 300.0
    #: 0 disables polling (webhook-only); every system can run poll-only.
    poll_interval_s: float = 30.0
    #: Each poll re-reads this far behind the cursor (vendors stamp before commit).
    poll_overlap_s: float = 120.0
    page_size: int = 100
    #: DevHelm status page ids to poll.
    scopes: list[str] = msgspec.field(default_factory=list)
    status_map: ValueMapSettings | None = None
    priority_map: ValueMapSettings | None = None
    #: Vendor-specific adapter options, read against the adapter's ``Options`` struct
    #: (``SystemCaps.options``); docs/configuration.md lists them.
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Concurrent outbound requests to this vendor.
    max_connections: int = 16
    timeout_s: float = 10.0
    #: Outbound proxy for this vendor's API (``http://[user:pass@]host:port``). Unset:
    #: ``HTTPS_PROXY`` / ``HTTP_PROXY`` from the environment, honouring ``NO_PROXY``;
    #: ``""``: never a proxy.
    proxy: str | None = None
    #: Read the object before each update and fold what changed into the work item
    #: first, so a change the gateway has not seen (no webhook yet, or none at all) is
    #: never overwritten. One extra GET per update.
    refresh_before_write: bool = True
    #: Vendor times further ahead of our clock than this are clamped to our clock (a
    #: timestamp in the future must not make every later real change look stale).
    max_clock_skew_s: float = 300.0
    #: The object's page in the vendor's own UI, for the console's links: a URL with
    #: ``{external_id}`` and optionally ``{scope}``. Unset: no link.
    ui_url: str | None = None


class Match(Base, frozen=True):
    """A filter on a new object: every given condition must hold."""

    #: Raw vendor fields (dotted paths into the vendor JSON) and accepted values.
    fields: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    status_in: list[Status] = msgspec.field(default_factory=list)
    min_priority: Priority | None = None


class CreateIn(Base, frozen=True):
    """One object a creation rule makes in another system."""

    system: str
    #: DevHelm status page id; incident.io incident id.
    scope: str = ""
    #: Vendor parameters: InboxOps inbox_id; DevHelm notify_subscribers.
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class CreateRule(Base, frozen=True):
    """A new object in ``system`` matching ``match`` starts a work item, and linked
    objects are created in each ``create_in`` system."""

    name: str
    system: str
    match: Match = msgspec.field(default_factory=Match)
    create_in: list[CreateIn] = msgspec.field(default_factory=list)


class LinkKey(Base, frozen=True):
    """One side of a link rule: the key an object of ``system`` yields, read at ``path``
    (dotted, into the vendor's JSON) and, with ``regex``, its one group."""

    system: str
    path: str
    regex: str | None = None


class LinkRule(Base, frozen=True):
    """Objects of two systems are the same thing when their keys are equal: applied
    before the creation rules, for new objects and at backfill."""

    name: str
    left: LinkKey
    right: LinkKey


class Conflict(Base, frozen=True):
    """How concurrent changes to one field are settled.

    ``last_writer``: the change with the later vendor time wins. ``prefer``: a change from
    another system made within ``window_s`` of the preferred system's change loses.
    """

    policy: str = "last_writer"  # last_writer | prefer
    prefer: str | None = None
    window_s: float = 60.0


class FieldRule(Base, frozen=True):
    """Direction per system for one canonical field, and its conflict policy.

    ``owner`` is shorthand: the owner is ``in`` and every other system ``out``. Systems
    not named get ``both`` (limited to what their adapter can read and write).
    """

    owner: str | None = None
    systems: dict[str, Direction] = msgspec.field(default_factory=dict)
    conflict: Conflict = msgspec.field(default_factory=Conflict)


class Identity(Base, frozen=True):
    """One person across systems: the email is the canonical assignee; ``ids`` holds
    their user id in each system with assignees (InboxOps agent UUID, incident.io user
    id). Read-only through the admin API, which adds people of its own."""

    email: str
    name: str = ""
    ids: dict[str, str] = msgspec.field(default_factory=dict)


class ServerSettings(Base, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    #: Webhook bodies larger than this get 413.
    max_body_bytes: int = 1_048_576
    #: A request line and headers larger than this get 431 (app/serving.py).
    max_header_bytes: int = 65_536
    #: Time to receive a request's headers, from the connection (or the request's first
    #: byte); past it: 408 and the connection closed.
    header_timeout_s: float = 10.0
    #: Time to receive a request's body once its headers are in; past it: 408, closed.
    body_timeout_s: float = 30.0
    #: An idle keep-alive connection is closed after this.
    keep_alive_s: float = 5.0
    #: Open connections at once; one more is answered 503 and closed.
    max_connections: int = 512


class AdminSettings(Base, frozen=True):
    #: The environment variable holding the admin API key (sent as X-Admin-Key or Bearer).
    api_key_env: str = "SYNCGATE_ADMIN_KEY"


class DispatcherSettings(Base, frozen=True):
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0
    #: Writes in flight at once across all systems.
    concurrency: int = 64
    #: Writes in flight at once to one system; None: half of ``concurrency`` (at least
    #: one). A vendor that hangs holds at most this many, and the others keep flowing.
    system_concurrency: int | None = None
    #: A claimed write not finished within this is released to other workers.
    lease_s: float = 60.0
    #: The longest a 429's Retry-After may hold a system's writes back.
    max_defer_s: float = 900.0

    @property
    def per_system(self) -> int:
        """Writes in flight at once to one system (``system_concurrency``, by default
        half of ``concurrency``), never more than ``concurrency``."""
        if self.system_concurrency is None:
            return max(1, self.concurrency // 2)
        return min(self.system_concurrency, self.concurrency)


class AlertSettings(Base, frozen=True):
    """Notices POSTed as JSON (Slack-compatible ``{"text": ...}``) to a URL read from the
    environment, when a write is dead-lettered, a system's polls keep failing, or a 429
    defers a system for long. One notice per kind and system per ``min_interval_s``."""

    #: The environment variable holding the URL (a Slack webhook URL is a secret).
    url_env: str = "SYNCGATE_ALERT_URL"
    min_interval_s: float = 300.0
    #: Consecutive failed polls of one system before a notice.
    poll_failures: int = 3
    #: A deferral longer than this gives a notice.
    deferral_s: float = 600.0


class HistorySettings(Base, frozen=True):
    #: History and the event log older than this are pruned; 0 keeps everything.
    retention_days: float = 90.0


class Settings(Base, frozen=True):
    """The whole of ``config.yaml``."""

    #: SQLAlchemy URL; ``SYNCGATE_DATABASE_URL`` overrides it.
    database_url: str = "sqlite:///var/syncgate.db"
    #: SQLite only: the write-ahead log is started over once past this many MiB.
    sqlite_wal_limit_mb: float = 64.0
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    dispatcher: DispatcherSettings = msgspec.field(default_factory=DispatcherSettings)
    history: HistorySettings = msgspec.field(default_factory=HistorySettings)
    systems: dict[str, SystemSettings] = msgspec.field(default_factory=dict)
    create_rules: list[CreateRule] = msgspec.field(default_factory=list)
    link_rules: list[LinkRule] = msgspec.field(default_factory=list)
    fields: dict[str, FieldRule] = msgspec.field(default_factory=dict)
    #: People across systems, for assignees (see ``Identity``).
    identities: list[Identity] = msgspec.field(default_factory=list)
    #: Optional: without it, no notices are sent.
    alerts: AlertSettings | None = None
