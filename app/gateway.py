"""The wiring: builds adapters from config and wires store, engine, dispatcher, inbox
worker and pollers into a ``Gateway``, with its start, stop and reload.

Nothing is read at import time: settings and secrets come in as arguments. This module
and the command line are the only parts of ``app/`` that know the vendor registry; the
HTTP layer (``app/http/``) imports it, never the other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from adapters import VENDORS, adapter_class
from adapters.base import Adapter, AdapterSettings
from app.alerts import Alerter
from app.backfill import Backfill
from app.config import ResolvedSecrets, SystemCaps, load_to_serve
from app.config.schema import Settings, SystemSettings
from app.dispatcher import Dispatcher
from app.engine import Engine
from app.errors import ConfigError, Missing, StateConflict
from app.identities import REFRESH_S, Identities
from app.inbox import EventWriter, InboxWorker, Rejections
from app.loops import IngestFirst
from app.metrics import Metrics
from app.model import IdentityMap, Person, ValueMap, clock_offset, set_clock_offset, utcnow
from app.outbound import PooledTransport, VendorClient
from app.pollers import Pollers
from app.rules import Rules
from app.store import Store

log = logging.getLogger("syncgate.gateway")


def vendor_names() -> frozenset[str]:
    """The systems Syncgate has an adapter for, configured or not."""
    return frozenset(VENDORS)


def known_systems() -> dict[str, SystemCaps]:
    """What each registered vendor's adapter can do (for config validation)."""
    caps = {}
    for name in VENDORS:
        cls = adapter_class(name)
        caps[name] = SystemCaps(
            readable=frozenset(cls.readable),
            writable=frozenset(cls.writable),
            can_create=cls.can_create,
            options=cls.Options,
        )
    return caps


def adapter_settings(system: SystemSettings, secrets: Any) -> AdapterSettings:
    maps: dict[str, ValueMap] = {}
    for name, override in (("status", system.status_map), ("priority", system.priority_map)):
        if override is not None:
            maps[name] = ValueMap(
                inbound=dict(override.inbound),
                outbound=dict(override.outbound),
                replace=override.replace,
            )
    return AdapterSettings(
        base_url=system.base_url,
        api_key=secrets.api_key,
        webhook_secrets=tuple(secrets.webhook_secrets),
        webhook_tolerance_s=system.webhook_tolerance_s,
        value_maps=maps,
        scopes=tuple(system.scopes),
        page_size=system.page_size,
        options=dict(system.options),
    )


def http_client(system: SystemSettings) -> httpx.AsyncClient:
    """One pooled client per vendor, bounded by the system's connection limit.

    The transport is aiohttp's (``httpx-aiohttp``): the same httpx API, errors and
    timeouts for the adapters, at a fraction of httpcore's CPU cost per call; no cookie
    jar and whole bodies (``app/outbound.py``; figures in docs/benchmarks.md)."""
    limits = httpx.Limits(
        max_connections=system.max_connections,
        max_keepalive_connections=system.max_connections,
    )
    proxy = proxy_for(system, os.environ)
    return VendorClient(
        timeout=httpx.Timeout(system.timeout_s),
        limits=limits,
        transport=PooledTransport(
            limits=limits, proxy=httpx.Proxy(proxy) if proxy is not None else None
        ),
        follow_redirects=False,
    )


#: Top-level settings a running gateway keeps until it restarts (its database, its
#: listening socket and the server limits it was started with).
#: How often each process reads the database server's clock again (``Gateway.sync_clock``),
#: and the smallest correction it makes: below it is the round trip's noise.
CLOCK_EVERY_S = 60.0
CLOCK_STEP = timedelta(milliseconds=100)
#: How often history past the retention is deleted.
PRUNE_EVERY_S = 3600.0

RESTART_ONLY = ("database_url", "sqlite_wal_limit_mb", "server")
#: The dispatcher's slots and per-system lanes are made when it starts.
DISPATCHER_RESTART_ONLY = ("concurrency", "system_concurrency")


def client_settings(system: SystemSettings) -> tuple[object, ...]:
    """What ``http_client`` makes a system's client of: a reload that changes it needs a
    new client."""
    return (system.timeout_s, system.max_connections, proxy_for(system, os.environ))


def proxy_for(system: SystemSettings, environ: Mapping[str, str]) -> str | None:
    """The proxy a vendor's API is reached through: the system's ``proxy`` if set
    (``""``: none), else ``HTTPS_PROXY`` / ``HTTP_PROXY`` for its URL's scheme, unless
    ``NO_PROXY`` covers its host (the transport does not read the environment itself)."""
    if system.proxy is not None:
        return system.proxy or None
    env = {k.lower(): v for k, v in environ.items()}
    parts = urlsplit(system.base_url)
    url = env.get(f"{parts.scheme}_proxy") or (env.get("all_proxy") if parts.scheme else None)
    if not url or _bypassed(parts.hostname or "", env.get("no_proxy", "")):
        return None
    return url


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (comma-separated hosts, domain suffixes, or ``*``) covers
    ``host``."""
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def compile_rules(
    settings: Settings, adapters: Mapping[str, Adapter], identities: IdentityMap | None = None
) -> Rules:
    """The rules, with each system's effective value maps: the adapter's defaults with
    the config's overrides laid over them (``Adapter.value_maps``), and the identity map."""
    maps = {name: a.value_maps for name, a in adapters.items()}
    return Rules(settings, adapters, maps, identities)


def configured_people(settings: Settings) -> list[Person]:
    return [
        Person(email=p.email.lower(), name=p.name, ids=dict(p.ids)) for p in settings.identities
    ]


def with_assignees(settings: Settings) -> set[str]:
    """The configured systems whose adapter has assignees."""
    return {
        name
        for name in settings.systems
        if name in VENDORS and "assignee" in adapter_class(name).readable
    }


class Gateway:
    """Every long-lived part of a running gateway, and their start and stop."""

    def __init__(
        self,
        settings: Settings,
        secrets: ResolvedSecrets,
        store: Store,
        *,
        clients: Mapping[str, httpx.AsyncClient] | None = None,
        clock: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        run_pollers: bool = True,
    ) -> None:
        self.settings = settings
        #: The file's settings at start: a reload says which restart-only keys differ.
        self.started_from = settings
        #: What the last reload changed that takes effect only at the next restart.
        self.restart_needed: list[str] = []
        self.secrets = secrets
        self.store = store
        self.clock = clock
        self.metrics = Metrics()
        self.metrics.count_transactions(lambda: store.committed)
        self.run_pollers = run_pollers
        self.config_path: str | None = None
        self._own_clients: list[httpx.AsyncClient] = []
        #: what each system's own client was made of (``client_settings``)
        self._client_of: dict[str, tuple[object, ...]] = {}
        self._clients: dict[str, httpx.AsyncClient] = dict(clients or {})
        self.adapters: dict[str, Adapter] = self._build_adapters(settings, secrets)
        self.identities = Identities(
            store,
            configured_people(settings),
            systems=settings.systems,
            assignable=with_assignees(settings),
            clock=clock,
            on_change=self._new_identities,
        )
        self.rules = compile_rules(settings, self.adapters, self.identities.map())
        self.ingest = IngestFirst()
        self.alerter = Alerter(settings.alerts, secrets.alert_url)
        self.engine = Engine(store, self.rules, readers=self.adapters, clock=clock)
        self.dispatcher = Dispatcher(
            store,
            self.rules,
            self.adapters,
            settings.dispatcher,
            metrics=self.metrics,
            clock=clock,
            worker_id=worker_id,
            ingest=self.ingest,
            engine=self.engine,
            alerter=self.alerter,
        )
        self.engine.on_change = self.dispatcher.changed
        # the links an engine transaction makes dirty are claimed in it for this process
        self.engine.take = self.dispatcher.take
        enabled = {n: s for n, s in settings.systems.items() if n in self.adapters}
        self.pollers = Pollers(
            store,
            self.engine,
            self.adapters,
            enabled,
            metrics=self.metrics,
            clock=clock,
            max_defer_s=settings.dispatcher.max_defer_s,
            alerter=self.alerter,
        )
        self.worker = InboxWorker(
            store,
            self.engine,
            self.adapters,
            request_poll=self.pollers.request,
            metrics=self.metrics,
            clock=clock,
            lease_s=settings.dispatcher.lease_s,
            ingest=self.ingest,
            disabled=lambda: self.rules.disabled,
        )
        self.events = EventWriter(store, inbox=self.worker)
        self.backfill = Backfill(store, self.engine, self.adapters, clock=clock)
        self.rejections = Rejections()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: whether the clock is read from the database server (PostgreSQL: ``sync_clock``)
        self._clock_synced = False
        #: the users ``_name_assignees`` last ran for, and its runs in flight
        self._named: Mapping[str, str] = {}
        self._naming: set[asyncio.Task[None]] = set()

    def _build_adapters(self, settings: Settings, secrets: ResolvedSecrets) -> dict[str, Adapter]:
        """An adapter per enabled system. A system's HTTP client is made once, and again
        when a reload changes what it is made of (``timeout_s``, ``max_connections``,
        ``proxy``): the old one serves the calls still in flight and is closed at stop."""
        adapters: dict[str, Adapter] = {}
        for name, system in settings.systems.items():
            if not system.enabled:
                continue
            client = self._clients.get(name)
            made_of = client_settings(system)
            if client is None or (
                client in self._own_clients and self._client_of.get(name) != made_of
            ):
                client = http_client(system)
                self._clients[name] = client
                self._own_clients.append(client)
                self._client_of[name] = made_of
            adapters[name] = adapter_class(name)(
                adapter_settings(system, secrets.systems[name]), client
            )
        return adapters

    def serving(self, *, database_url: str, host: str, port: int) -> None:
        """What ``syncgate serve`` runs on, whatever the file says (``SYNCGATE_DATABASE_URL``,
        ``--host``, ``--port``): the running configuration ``/admin/config`` shows."""
        server = msgspec.structs.replace(self.settings.server, host=host, port=port)
        self.settings = msgspec.structs.replace(
            self.settings, database_url=database_url, server=server
        )

    def waiting_for_restart(self, settings: Settings) -> list[str]:
        """The keys of a file's ``settings`` that differ from the file the gateway
        started from and take effect only at a restart."""
        keys = [k for k in RESTART_ONLY if getattr(settings, k) != getattr(self.started_from, k)]
        keys += [
            f"dispatcher.{k}"
            for k in DISPATCHER_RESTART_ONLY
            if getattr(settings.dispatcher, k) != getattr(self.started_from.dispatcher, k)
        ]
        for name, system in sorted(settings.systems.items()):
            before = self.started_from.systems.get(name)
            if system.enabled and (before is None or not before.enabled):
                if system.poll_interval_s == 0:
                    continue
                keys.append(f"systems.{name} (its polls)")
            elif before is not None and system.poll_interval_s != before.poll_interval_s:
                keys.append(f"systems.{name}.poll_interval_s")
        return keys

    def reload(self, settings: Settings, secrets: ResolvedSecrets) -> None:
        """Swap in a new, already validated configuration: rules, maps, credentials and
        adapter options take effect at once, and so do a system's client settings
        (``_build_adapters``) and ``enabled`` (a disabled system's
        writes wait in its queue, its poll loop skips its polls). The polls of a system
        added or first enabled, and poll intervals, take effect at the next restart (the
        loops are started per system)."""
        waiting = self.waiting_for_restart(settings)
        # what is set at start stays as it runs until the next restart
        dispatcher = msgspec.structs.replace(
            settings.dispatcher,
            **{key: getattr(self.settings.dispatcher, key) for key in DISPATCHER_RESTART_ONLY},
        )
        settings = msgspec.structs.replace(
            settings,
            dispatcher=dispatcher,
            **{key: getattr(self.settings, key) for key in RESTART_ONLY},
        )
        adapters = self._build_adapters(settings, secrets)
        self.identities.configure(
            configured_people(settings),
            systems=settings.systems,
            assignable=with_assignees(settings),
        )
        identities = self.identities.map()
        rules = compile_rules(settings, adapters, identities)
        self.settings = settings
        self.secrets = secrets
        # the parts share these objects: update them in place
        self.adapters.clear()
        self.adapters.update(adapters)
        self.rules = rules
        self.engine.rules = rules
        self.dispatcher.rules = rules
        self.dispatcher.settings = settings.dispatcher
        self.alerter.settings = settings.alerts
        self.alerter.url = secrets.alert_url
        self._name_assignees(identities)  # the file's people may have changed
        self.restart_needed = waiting
        log.info("configuration reloaded", extra={"systems": sorted(adapters)})
        if waiting:
            log.warning(
                "config reload: these take effect at the next restart", extra={"keys": waiting}
            )

    def _new_identities(self, identities: IdentityMap) -> None:
        """The people changed (the API, or another process): the rules the engine and
        the dispatcher share carry assignees through the new map from now on, and the
        work items assigned to a user the map now names take the person's email."""
        self.rules.identities = identities
        self._name_assignees(identities)

    def _name_assignees(self, identities: IdentityMap) -> None:
        """Start ``Engine.name_assignees`` for the users ``identities`` names, unless
        they are the ones it ran for last (the map is announced at every refresh)."""
        named = identities.named_users()
        if named == self._named or not named:
            self._named = named
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running yet: ``start`` runs it
            return
        self._named = named
        task = loop.create_task(self._run_naming(named), name="name-assignees")
        self._naming.add(task)
        task.add_done_callback(self._naming.discard)

    async def _run_naming(self, named: Mapping[str, str]) -> None:
        try:
            renamed = await self.engine.name_assignees(named)
        except Exception:  # the next change of the map (or start) tries again
            self._named = {}
            log.exception("naming assignees through the identity map failed")
            return
        if renamed:
            log.info("assignees named through the identity map", extra={"items": len(renamed)})

    async def _identities_loop(self) -> None:
        """Pick up people another process added or removed."""
        await self._every(REFRESH_S, self.identities.load, "reading identities failed")

    async def _every(
        self,
        every_s: float,
        work: Callable[[], Awaitable[object]],
        failed: str,
        *,
        at_once: bool = False,
    ) -> None:
        """Run ``work`` every ``every_s`` seconds until the gateway stops (the first time
        at once with ``at_once``). A failure is logged as ``failed`` and the loop goes
        on: a background chore never stops the gateway."""
        if not at_once:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=every_s)
        while not self._stop.is_set():
            try:
                await work()
            except Exception:
                log.exception(failed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=every_s)

    async def set_paused(self, system: str, paused: bool) -> None:
        """Pause a system (no polls; its writes wait) or resume it: its waiting writes go
        out, a 429 deferral is lifted, and a poll is requested."""
        if system not in self.settings.systems:
            raise Missing(f"no system named {system!r}")
        async with self.store.tx() as tx:
            await tx.set_system(system, paused=paused)
            if not paused:
                await tx.lift_deferral(system)
        if not paused:
            self.dispatcher.wake.set()
            self.pollers.request(system)
        log.info("system paused" if paused else "system resumed", extra={"system": system})

    def reload_from_file(self) -> None:
        """Reload the configuration from the file it came from. Raises ``ConfigError``
        (every problem; the running configuration stays) or ``StateConflict`` when the
        gateway was not started from a file."""
        if self.config_path is None:
            raise StateConflict("the gateway was not started from a config file")
        try:
            settings, secrets = load_to_serve(
                self.config_path, known_systems(), os.environ, admin_key_needed=True
            )
        except ConfigError as exc:
            log.warning(
                "config reload refused", extra={"path": self.config_path, "issues": len(exc.issues)}
            )
            raise
        self.reload(settings, secrets)
        self.dispatcher.wake.set()

    async def connect(self) -> dict[str, datetime]:
        """Record the moment each enabled system is first connected (kept once stored):
        polling starts there, and creation rules act only on objects created since."""
        return await self.engine.connect(self.adapters)

    async def sync_clock(self) -> None:
        """On PostgreSQL, read this process's time from the database server's clock
        (``app.model.set_clock_offset``): leases, and the stamps that order changes, are
        then taken on one clock by every process, whatever their hosts' clocks say. A
        host clock a second or more off is logged; a correction under ``CLOCK_STEP``
        (the round trip's noise) is not made."""
        offset = await self.store.clock_offset()
        if offset is None:
            return
        self.metrics.clock_offset.set(offset.total_seconds())
        if abs(offset - clock_offset()) < CLOCK_STEP and self._clock_synced:
            return
        self._clock_synced = True
        set_clock_offset(offset)
        seconds = round(offset.total_seconds(), 3)
        if abs(offset) >= timedelta(seconds=1):
            log.warning(
                "this host's clock differs from the database server's: "
                "leases and stamps use the database's",
                extra={"database_ahead_s": seconds},
            )
        else:
            log.info("clock read from the database server", extra={"database_ahead_s": seconds})

    async def _clock_loop(self) -> None:
        # the last offset stays while the database cannot be read
        await self._every(
            CLOCK_EVERY_S, self.sync_clock, "reading the database server's clock failed"
        )

    async def start(self) -> None:
        """Read the database's clock, connect the systems and read the stored people, then
        start the background loops (dispatcher, inbox worker, pollers, identity refresh)."""
        await self.sync_clock()
        await self.connect()
        self._stop.clear()
        await self.identities.load()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.dispatcher.run(self._stop), name="dispatcher"),
            loop.create_task(self.worker.run(self._stop), name="inbox-worker"),
            loop.create_task(self._identities_loop(), name="identities"),
        ]
        if self.run_pollers:
            self._tasks.append(loop.create_task(self.pollers.run(self._stop), name="pollers"))
        if self._clock_synced:
            self._tasks.append(loop.create_task(self._clock_loop(), name="clock"))
        # always: a reload may set a retention the start did not have
        self._tasks.append(loop.create_task(self._prune_loop(), name="prune"))
        log.info("gateway started", extra={"systems": sorted(self.adapters)})

    async def prune(self) -> int:
        """Delete history, write attempts and finished events past the retention (none
        with ``retention_days: 0``, which keeps everything, also when a reload set it)."""
        days = self.settings.history.retention_days
        if days <= 0:
            return 0
        async with self.store.tx() as tx:
            removed = await tx.prune(self.clock() - timedelta(days=days))
        if removed:
            log.info("pruned history", extra={"rows": removed, "retention_days": days})
        return removed

    async def _prune_loop(self) -> None:
        await self._every(PRUNE_EVERY_S, self.prune, "pruning failed", at_once=True)

    async def stop(self) -> None:
        """Graceful stop: loops finish the round in flight (writes complete and are
        recorded), then connections close. Anything not started stays in the database."""
        log.info("gateway stopping")  # a round in flight may take a while to finish
        self._stop.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=30)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        if self._naming:
            await asyncio.wait(set(self._naming), timeout=30)
        await self.pollers.close()  # one-off polls that hints started
        await self.alerter.close()
        for client in self._own_clients:
            await client.aclose()
        log.info("gateway stopped")
