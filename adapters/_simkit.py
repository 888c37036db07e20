"""The machinery every vendor simulator shares: the ``Simulator`` base class
(``adapters/_simbase.py``) builds one ``SimKit`` from ``SimOptions`` and serves the
vendor's routes behind it. The kit holds the vendor clock, the behaviour options and the
error shape, and by part:

- ``adapters/_simgate.py``: the request gate in front of every vendor route (not
  ``/_sim/``): latency -> injected fault -> auth -> rate limit -> vendor handler ->
  logged;
- ``adapters/_simwebhooks.py``: signed webhook delivery on the vendor's retry schedule;
- ``adapters/_simcontrol.py``: the common ``/_sim/`` control surface (request log,
  faults, latency, rate limit, clock, webhook target and log, behaviour).

A vendor simulator subclasses ``Simulator`` and declares only what is its own: its vendor
name and authentication, its error shape, its state, its vendor routes and its own
``/_sim/`` routes, and the objects a person sees in the vendor's UI (``objects()``). The
base serves one app: the vendor's routes, the common ``/_sim/`` surface and
``GET /_sim/objects`` (``{"objects": [...]}``: every object the simulator holds, issues,
incidents, tickets, follow-ups, in the vendor's own JSON and in the simulator's order),
all behind ``SimKit.wrap``. Each simulator adds its own control routes (``POST
/_sim/seed``, ``PATCH /_sim/objects/{id}`` for a person's change, ...), listed in its
module docstring.

Seeding from a Syncgate config: ``SimOptions.seed_config`` names a Syncgate config file,
and the simulator starts with the containers that file names in its vendor (DevHelm status
pages, InboxOps inboxes, incident.io incidents; ``config_names`` reads them), so a gateway
run by hand with the same file finds what it polls and creates in.

Behaviour options: where a vendor's documents allow more than one reading, the simulator
plays each one under a named option (``Behaviour``); the default is the documented or most
likely reading. They are set at start (``SimOptions.behaviour``) or at runtime
(``PUT /_sim/behaviour``), and each simulator's docstring lists its own.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from litestar import Response

from adapters._simgate import (
    ASGIApp,
    ErrorRenderer,
    Fault,
    RateLimitHeaders,
    RequestGate,
    RequestRecord,
)
from adapters._simwebhooks import SVIX_SCHEDULE, DeliveryRecord, WebhookSender

__all__ = [
    "SVIX_SCHEDULE",
    "ASGIApp",
    "Behaviour",
    "SimKit",
    "SimOptions",
    "resolve_behaviour",
]


class Behaviour(msgspec.Struct, frozen=True):
    """One reading the vendor's documents allow: ``choices[0]`` is the default (the
    documented or most likely reading). With ``choices`` empty the value is free, of the
    default's type (an org id, ...)."""

    choices: tuple[Any, ...] = ()
    default: Any = None
    doc: str = ""

    @property
    def initial(self) -> Any:
        return self.choices[0] if self.choices else self.default

    def check(self, name: str, value: Any) -> Any:
        if self.choices:
            if value not in self.choices or isinstance(value, bool) != isinstance(
                self.choices[0], bool
            ):
                allowed = ", ".join(
                    str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices
                )
                raise ValueError(f"behaviour {name}: {value!r} is not one of {allowed}")
            return value
        if not isinstance(value, type(self.default)):
            raise ValueError(
                f"behaviour {name}: expected {type(self.default).__name__}, got {value!r}"
            )
        return value


def resolve_behaviour(
    spec: dict[str, Behaviour], given: dict[str, Any], vendor: str
) -> dict[str, Any]:
    """The defaults of ``spec`` overlaid with ``given``; an unknown name or a value outside
    the documented readings is a ``ValueError`` (a simulator starts only with a contract it
    can play)."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise ValueError(
            f"{vendor} simulator has no behaviour {', '.join(unknown)} (known: {known})"
        )
    out = {name: b.initial for name, b in spec.items()}
    for name, value in given.items():
        out[name] = spec[name].check(name, value)
    return out


class SimOptions(msgspec.Struct, kw_only=True):
    """How a simulator is started (``syncgate simulate`` flags map onto these).

    ``webhook_time_scale`` multiplies the vendor's webhook retry delays (1.0: real time).
    ``behaviour`` picks among the readings the vendor's documents allow (each simulator
    lists its own; unknown names are refused). ``read_only_api_key`` is a second key that
    may read but gets 403 ``insufficient_scope`` on every write (InboxOps documents such
    keys; the other vendors have key roles too). ``seed_config`` is the path of a Syncgate
    config file: the simulator starts with the containers it names in this vendor (see
    ``config_names``); an unreadable file or a malformed id is a ``ValueError`` at start."""

    api_key: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    latency_ms: float = 0.0
    rpm: int | None = None
    webhook_time_scale: float = 1.0
    behaviour: dict[str, Any] = msgspec.field(default_factory=dict)
    read_only_api_key: str | None = None
    seed_config: str | None = None


class SimKit(RequestGate, WebhookSender):
    """State and behaviour shared by every simulator; one instance per simulator app."""

    def __init__(
        self,
        vendor: str,
        *,
        api_key: str,
        auth_header: str,
        auth_prefix: str,
        render_error: ErrorRenderer,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        latency_ms: float = 0.0,
        rpm: int | None = None,
        webhook_schedule: tuple[float, ...] = SVIX_SCHEDULE,
        webhook_time_scale: float = 1.0,
        webhook_client: httpx.AsyncClient | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        default_rpm: int | None = None,
        behaviours: dict[str, Behaviour] | None = None,
        behaviour: dict[str, Any] | None = None,
        read_only_api_key: str | None = None,
    ) -> None:
        if not webhook_schedule or webhook_schedule[0] != 0.0:
            raise ValueError("a webhook schedule starts with an immediate attempt (0.0)")
        if not (webhook_time_scale >= 0 and math.isfinite(webhook_time_scale)):
            raise ValueError("webhook_time_scale must be a finite number >= 0")
        self.vendor = vendor
        self.api_key = api_key
        self.read_only_api_key = read_only_api_key
        self.auth_header = auth_header.lower()
        self.auth_prefix = auth_prefix
        self.render_error = render_error
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.latency_ms = latency_ms
        self.rpm = rpm
        self.webhook_schedule = webhook_schedule
        self.webhook_time_scale = webhook_time_scale
        self._webhook_client = webhook_client
        self._rate_limit_headers = rate_limit_headers
        #: The allowance the rate-limit headers advertise when no limit is enforced.
        self.default_rpm = default_rpm
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.behaviour: dict[str, Any] = resolve_behaviour(
            self.behaviours, dict(behaviour or {}), vendor
        )
        self.requests: list[RequestRecord] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self.deliveries: list[DeliveryRecord] = []
        self._seq = itertools.count(1)
        self._window: collections.deque[float] = collections.deque()
        self._pending: set[asyncio.Task[None]] = set()
        self._offset = timedelta(0)
        self._last_now = datetime.fromtimestamp(0, tz=UTC)
        self._timers: list[Callable[[], None]] = []

    @classmethod
    def from_options(
        cls,
        vendor: str,
        options: SimOptions,
        *,
        auth_header: str,
        auth_prefix: str,
        render_error: ErrorRenderer,
        webhook_client: httpx.AsyncClient | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        default_rpm: int | None = None,
        behaviours: dict[str, Behaviour] | None = None,
        webhook_schedule: tuple[float, ...] = SVIX_SCHEDULE,
    ) -> SimKit:
        """A kit configured from the ``syncgate simulate`` options."""
        return cls(
            vendor,
            api_key=options.api_key,
            auth_header=auth_header,
            auth_prefix=auth_prefix,
            render_error=render_error,
            webhook_url=options.webhook_url,
            webhook_secret=options.webhook_secret,
            latency_ms=options.latency_ms,
            rpm=options.rpm,
            webhook_schedule=webhook_schedule,
            webhook_time_scale=options.webhook_time_scale,
            webhook_client=webhook_client,
            rate_limit_headers=rate_limit_headers,
            default_rpm=default_rpm,
            behaviours=behaviours,
            behaviour=options.behaviour,
            read_only_api_key=options.read_only_api_key,
        )

    def set_behaviour(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Switch readings at runtime (all or nothing); returns the behaviour now in effect."""
        self.behaviour = resolve_behaviour(
            self.behaviours, {**self.behaviour, **changes}, self.vendor
        )
        return dict(self.behaviour)

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The vendor's clock: wall time plus any advance, strictly increasing per call, so
        two changes never share an ``updated_at``."""
        now = datetime.now(UTC) + self._offset
        if now <= self._last_now:
            now = self._last_now + timedelta(microseconds=1)
        self._last_now = now
        return now

    def on_timer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after every clock advance (auto-resolve, reminders)."""
        self._timers.append(callback)

    def advance(self, seconds: float, *, step_back: bool = False) -> None:
        """Move the clock by ``seconds``. Moved back, it stands still until the wall clock
        catches up (times never repeat nor go backwards), unless ``step_back``: then the
        next time is earlier than the last one given (a host's clock corrected back), and
        times increase from there."""
        self._offset += timedelta(seconds=seconds)
        if step_back:
            self._last_now = datetime.fromtimestamp(0, tz=UTC)
        for callback in self._timers:
            callback()

    # -- ids -------------------------------------------------------------------------------

    @staticmethod
    def request_id() -> str:
        return "req_" + uuid.uuid4().hex[:24]

    # -- errors ----------------------------------------------------------------------------

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response[bytes]:
        """A litestar response in the vendor's error shape (for use inside handlers)."""
        body, content_type = self.render_error(status, code, message)
        return Response(body, status_code=status, media_type=content_type, headers=headers)

    # -- control surface -------------------------------------------------------------------

    def writes(self) -> list[RequestRecord]:
        """Logged requests that change state (POST/PUT/PATCH/DELETE) and succeeded."""
        return [
            r
            for r in self.requests
            if r.method in {"POST", "PUT", "PATCH", "DELETE"} and 200 <= r.status < 300
        ]
