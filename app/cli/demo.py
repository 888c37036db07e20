"""``syncgate demo``: a whole installation in one process, playing one story and telling it.

On a fresh clone: the four vendor simulators and the gateway are served on loopback in one
asyncio loop, with a throwaway SQLite database and the shipped ``config.yaml``. API keys
and webhook secrets are generated for the run (each in its vendor's format) and exported
under the environment variable names the config names; they are never printed. Then:

1. hookstream opens an issue (a delivery to ``orders-webhook`` keeps failing); its
   ``issue_opened`` notification reaches the gateway, which creates a work item and, by the
   config's creation rule, a DevHelm incident, an InboxOps ticket and an incident.io
   follow-up, all linked to it;
2. DevHelm is made to answer writes with 429 (Retry-After) once and 500 twice; a support
   agent moves the ticket to in progress; the gateway brings hookstream along at once,
   leaves incident.io alone (``outstanding`` already means it) and keeps retrying DevHelm
   until it catches up;
3. an engineer resolves the hookstream issue; the gateway polls it and resolves
   everything else.

Each step waits on a condition (vendor state read through the simulators' ``/_sim/``
routes, the gateway's store), never on a fixed sleep, and everything is narrated as it
happens: people's changes, every write the gateway makes (from the simulators' request
logs), webhooks delivered, canonical changes (the item's history) and failed writes with
their retry plan. It ends with a table of the work item and its four linked objects and
exits 0 only if all four mean the same canonical state (resolved).

``run_demo`` is the async entry point (ports, database, deadline and extra faults are
parameters, for the tests); ``command`` is what ``syncgate demo`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from app.cli.scenario import (
    SYSTEMS,
    Demo,
    DemoError,
    Narrator,
)

DEFAULT_DEADLINE_S = 60.0
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def default_config() -> Path:
    """The repository's config.yaml, or, in an installed package, the copy shipped with it."""
    if REPO_CONFIG.is_file():
        return REPO_CONFIG
    return Path(str(resources.files("app") / "defaults" / "config.yaml"))


# -- credentials --------------------------------------------------------------------------


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def generate_credentials() -> dict[str, tuple[str, str]]:
    """A fresh (API key, webhook secret) per system, in each vendor's format."""
    return {
        "hookstream": ("hs_test_" + secrets.token_hex(32), secrets.token_hex(24)),
        "devhelm": ("dh_live_" + secrets.token_hex(16), secrets.token_hex(16)),
        "inboxops": ("ixk_live_" + secrets.token_hex(16), _whsec()),
        "incidentio": ("inc_live_" + secrets.token_hex(24), _whsec()),
    }


@contextlib.contextmanager
def _exported(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the run; restore what was there before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def _gateway_log(path: Path) -> Iterator[None]:
    """The gateway's own log lines (JSON) go to ``path``, not into the narration."""
    from app.logs import JsonFormatter

    logger = logging.getLogger("syncgate")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        handler.close()
        handlers, level, propagate = saved
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


# -- narration ----------------------------------------------------------------------------


# -- the running installation -------------------------------------------------------------


# -- setting up ---------------------------------------------------------------------------


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise DemoError(f"base_url {url!r} names no port")
    return port


async def _fixtures(settings: Any, sims: dict[str, Any], control: dict[str, Any]) -> None:
    """What the config's creation rules and scopes refer to: DevHelm status pages, InboxOps
    inboxes, incident.io incidents."""
    pages = set(settings.systems["devhelm"].scopes)
    inboxes: set[str] = set()
    incidents: set[str] = set()
    for rule in settings.create_rules:
        for target in rule.create_in:
            if target.system == "devhelm" and target.scope:
                pages.add(target.scope)
            if target.system == "inboxops" and target.params.get("inbox_id"):
                inboxes.add(str(target.params["inbox_id"]))
            if target.system == "incidentio" and target.scope:
                incidents.add(target.scope)
    for page in sorted(pages):
        if page not in sims["devhelm"].pages:
            sims["devhelm"].add_status_page(page, "Acme status")
    for inbox in sorted(inboxes):
        response = await control["inboxops"].post(
            "/_sim/inboxes", json={"id": inbox, "name": "Webhook incidents"}
        )
        if response.status_code not in (201, 409):
            raise DemoError(f"cannot create InboxOps inbox {inbox}: {response.text}")
    for incident in sorted(incidents):
        response = await control["incidentio"].post(
            "/_sim/incidents", json={"id": incident, "name": "Orders webhooks failing"}
        )
        if response.status_code not in (201, 409):
            raise DemoError(f"cannot create incident.io incident {incident}: {response.text}")


def _workspace(
    database: str | os.PathLike[str] | None, *, fresh: bool
) -> tuple[Path | None, Path, Path]:
    """(temporary directory or None, database file, gateway log file). Without ``database``
    both live in a new temporary directory; with it, the log is kept beside it."""
    if database is None:
        workdir = Path(tempfile.mkdtemp(prefix="syncgate-demo-"))
        return workdir, workdir / "syncgate.db", workdir / "gateway.log"
    db_path = Path(database).resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        db_path.unlink(missing_ok=True)
    return None, db_path, db_path.with_name(db_path.name + ".log")


async def run_demo(
    config_path: str | os.PathLike[str] = REPO_CONFIG,
    *,
    gateway_port: int | None = None,
    sim_ports: Mapping[str, int] | None = None,
    database: str | os.PathLike[str] | None = None,
    fresh: bool = False,
    deadline_s: float = DEFAULT_DEADLINE_S,
    faults: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    out: TextIO | None = None,
    keep_running: asyncio.Event | None = None,
) -> int:
    """Run the demo; 0 when the four objects converged, 1 when not, 2 when it cannot start.

    ``gateway_port`` and ``sim_ports`` (system -> port, 0 = any free port) override the
    config's ports; ``database`` keeps the SQLite file (``fresh`` empties it first),
    otherwise a temporary one is used; ``faults`` (system -> ``/_sim/faults`` bodies) are
    injected right after start, e.g. to rehearse a vendor that keeps failing. With
    ``keep_running``, everything stays up after the scenario until that event is set,
    and how to use it is printed.
    """
    import httpx
    import msgspec

    from adapters import simulator_class
    from adapters._simkit import SimOptions
    from app.config import load_config, resolve_environment
    from app.errors import ConfigError
    from app.gateway import Gateway, known_systems
    from app.http.app import create_app
    from app.serving import serve_asgi
    from app.store import Store

    out = out or sys.stdout
    started = time.time()
    narrator = Narrator(out, started)
    try:
        settings = load_config(config_path, known_systems())
    except ConfigError as exc:
        out.write(f"syncgate demo: invalid configuration {os.fspath(config_path)}:\n")
        for issue in exc.issues:
            out.write(f"  {issue}\n")
        return 1
    missing = [s for s in SYSTEMS if s not in settings.systems or not settings.systems[s].enabled]
    if missing:
        out.write(f"syncgate demo: the config must enable every system; missing: {missing}\n")
        return 1

    workdir, db_path, log_path = _workspace(database, fresh=fresh)
    credentials = generate_credentials()
    admin_key = secrets.token_urlsafe(24)  # this run's only: the demo's database is its own
    environment = {settings.admin.api_key_env: admin_key}
    for system, (api_key, secret) in credentials.items():
        environment[settings.systems[system].api_key_env] = api_key
        for env in settings.systems[system].webhook_secret_envs:
            environment[env] = secret
    converged = keep = False
    try:
        with _exported(environment), _gateway_log(log_path):
            async with contextlib.AsyncExitStack() as stack:
                sims: dict[str, Any] = {}
                urls: dict[str, str] = {}
                control: dict[str, httpx.AsyncClient] = {}
                for system in SYSTEMS:
                    conf = settings.systems[system]
                    api_key, secret = credentials[system]
                    sims[system] = simulator_class(system)(
                        SimOptions(api_key=api_key, webhook_secret=secret)
                    )
                    port = (sim_ports or {}).get(system, _port(conf.base_url))
                    try:
                        urls[system] = await stack.enter_async_context(
                            serve_asgi(sims[system].app, port=port)
                        )
                    except OSError as exc:
                        raise DemoError(
                            f"cannot serve the {system} simulator on port {port}: {exc}"
                        ) from exc
                    control[system] = await stack.enter_async_context(
                        httpx.AsyncClient(base_url=urls[system], timeout=10.0)
                    )
                settings = msgspec.structs.replace(
                    settings,
                    systems={
                        name: msgspec.structs.replace(conf, base_url=urls.get(name, conf.base_url))
                        for name, conf in settings.systems.items()
                    },
                )
                await _fixtures(settings, sims, control)
                secrets_ = resolve_environment(settings, os.environ)

                store = Store.connect(f"sqlite:///{db_path}")
                stack.push_async_callback(store.close)
                await store.migrate()
                gateway = Gateway(settings, secrets_, store, worker_id="demo")
                gateway.config_path = os.fspath(config_path)
                host = settings.server.host
                port = settings.server.port if gateway_port is None else gateway_port
                try:
                    gateway_url = await stack.enter_async_context(
                        serve_asgi(
                            create_app(gateway, manage_lifecycle=False), host=host, port=port
                        )
                    )
                except OSError as exc:
                    raise DemoError(f"cannot serve the gateway on {host}:{port}: {exc}") from exc

                async def flush_webhooks() -> None:
                    for sim in sims.values():
                        sim.kit.webhook_url = None
                        await sim.kit.flush()

                stack.push_async_callback(flush_webhooks)
                for system in SYSTEMS:
                    target = {
                        "url": f"{gateway_url}/webhooks/{system}",
                        "secret": credentials[system][1],
                    }
                    (await control[system].put("/_sim/webhook", json=target)).raise_for_status()
                await gateway.start()
                stack.push_async_callback(gateway.stop)
                for system, bodies in (faults or {}).items():
                    for body in bodies:
                        (
                            await control[system].post("/_sim/faults", json=dict(body))
                        ).raise_for_status()

                narrator.plain("Syncgate demo: four vendor simulators and the gateway, on loopback")
                for system in SYSTEMS:
                    interval = settings.systems[system].poll_interval_s
                    narrator.plain(
                        f"  {system:<11} simulator {urls[system]}  (polled every {interval:g}s)"
                    )
                narrator.plain(f"  gateway     {gateway_url}  (webhooks at /webhooks/<system>)")
                narrator.plain(
                    f"  config      {os.fspath(config_path)}; database "
                    f"{db_path}{' (temporary)' if database is None else ''}"
                )
                narrator.plain("  credentials generated for this run and exported; not shown")
                narrator.plain(f"  gateway log {log_path}")

                demo = Demo(
                    settings=settings,
                    gateway=gateway,
                    sims=sims,
                    control=control,
                    narrator=narrator,
                    deadline=started + deadline_s,
                )
                try:
                    await demo.scenario()
                    converged = await demo.report()
                    if keep_running is not None:
                        _print_next_steps(out, gateway_url, urls, credentials, admin_key)
                        await keep_running.wait()
                except httpx.TransportError as exc:
                    # the servers stop on Ctrl-C (uvicorn handles the signal)
                    out.write(f"\nsyncgate demo: stopped: a server went away ({exc})\n")
                    return 1
                keep = not converged
    except DemoError as exc:
        out.write(f"syncgate demo: {exc}\n")
        return 1
    finally:
        if workdir is not None:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                out.write(f"(kept {workdir} for a look: gateway.log and the database)\n")
    return 0 if converged else 1


def _print_next_steps(
    out: TextIO,
    gateway_url: str,
    urls: Mapping[str, str],
    credentials: Mapping[str, tuple[str, str]],
    admin_key: str,
) -> None:
    """What is running, how to reach it, and what to try, for ``--keep-running``."""
    inboxops = urls["inboxops"]
    lines = [
        "",
        "Still running (Ctrl-C stops everything). This run's admin key and vendor API keys",
        "are throwaway values for these local simulators:",
        f"  gateway       {gateway_url}   admin API {gateway_url}/admin",
        f"  API docs      {gateway_url}/schema",
        f"  admin key     export SYNCGATE_ADMIN_KEY={admin_key}",
        *(f"  {s:<13} {urls[s]}   API key {credentials[s][0]}" for s in SYSTEMS),
        "",
        "Try:",
        f"  SYNCGATE_URL={gateway_url} syncgate status",
        f"  curl -s -H 'X-Admin-Key: {admin_key}' {gateway_url}/admin/work-items",
        f"  curl -s -X POST {inboxops}/_sim/seed -H 'content-type: application/json' \\",
        '       -d \'{"subject": "Checkout is down"}\'   # a ticket: watch it fan out',
        f"  curl -s {urls['devhelm']}/_sim/objects       # what DevHelm holds now",
        "  docs/simulators.md lists every /_sim/ route of the simulators.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def command(args: argparse.Namespace) -> int:
    """``syncgate demo``."""
    from app.serving import run as run_loop

    config = args.config
    if config is None:
        config = "config.yaml" if Path("config.yaml").is_file() else os.fspath(default_config())

    async def run() -> int:
        stop: asyncio.Event | None = None
        if args.keep_running:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        return await run_demo(
            config,
            gateway_port=args.port,
            database=args.database,
            fresh=args.fresh,
            deadline_s=args.deadline,
            keep_running=stop,
        )

    try:
        return run_loop(run())
    except KeyboardInterrupt:
        print("syncgate demo: interrupted", file=sys.stderr)
        return 130
