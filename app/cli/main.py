"""The ``syncgate`` command line: serve, demo, simulate, check-config, migrate, and
operator conveniences. Each subcommand is a small function; argparse wires them."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters import VENDORS
from app.cli.args import LATENCY_MS, PORT, RPM
from app.cli.database import DatabaseUnusable, usable_store

if TYPE_CHECKING:
    pass

#: The garbage collector's thresholds while serving (Python's are 700, 10, 10). Nearly
#: everything a change allocates is freed by reference counting, but at 700 the young
#: generation was collected every few changes anyway: 6 % of the gateway's CPU went to
#: collections that found little (docs/benchmarks.md, "Changes" 14). Cycles still get
#: collected, after 50,000 net new objects instead of 700: a few MB at most.
GC_THRESHOLDS = (50_000, 20, 100)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from adapters import simulator_class
    from adapters._simkit import SimOptions
    from app.serving import bind_socket, serve_asgi
    from app.serving import run as run_loop

    behaviour: dict[str, object] = {}
    for pair in args.behaviour:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            print(f"syncgate simulate: --behaviour wants NAME=VALUE, got {pair!r}", file=sys.stderr)
            return EXIT_USAGE
        try:
            behaviour[name] = json.loads(raw)
        except ValueError:
            behaviour[name] = raw  # a bare word: a string
    options = SimOptions(
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        webhook_time_scale=args.webhook_time_scale,
        behaviour=behaviour,
        read_only_api_key=args.read_only_api_key,
        seed_config=args.seed_config,
    )
    try:
        simulator = simulator_class(args.vendor)(options)
    except ValueError as exc:
        print(f"syncgate simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        return _cannot_listen("simulate", args.host, args.port, exc)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve_asgi(simulator.app, sock=sock) as url:
            print(f"{args.vendor} simulator serving at {url}", flush=True)
            await stop.wait()

    run_loop(run())
    return 0


DEFAULT_CONFIG = "config.yaml"

#: Exit statuses, one meaning each: 0 done; 1 the command failed (an invalid config, a
#: port in use, a gateway that cannot be reached, ...), with one line or a list of
#: problems on stderr; 2 the command line itself is wrong (argparse's usage errors, and
#: option values a command refuses, such as an unknown simulator behaviour).
EXIT_FAILED = 1
EXIT_USAGE = 2


def _cannot_listen(command: str, host: str, port: int, exc: OSError) -> int:
    hint = (
        " (another process uses it: pick another --port)" if exc.errno == errno.EADDRINUSE else ""
    )
    print(
        f"syncgate {command}: cannot listen on {host}:{port}: {exc.strerror}{hint}", file=sys.stderr
    )
    return EXIT_FAILED


def packaged_config() -> Traversable:
    """The default config.yaml shipped inside the package (what ``syncgate init`` writes)."""
    return resources.files("app") / "defaults" / "config.yaml"


def _cmd_init(args: argparse.Namespace) -> int:
    from app.config import load_config
    from app.gateway import known_systems

    target = Path(args.path)
    if target.is_dir():
        print(
            f"syncgate init: {target} is a directory; give the file to write, such as"
            f" {target / DEFAULT_CONFIG}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if target.exists() and not args.force:
        print(f"syncgate init: {target} exists; --force overwrites it", file=sys.stderr)
        return EXIT_FAILED
    try:
        target.write_bytes(packaged_config().read_bytes())
    except OSError as exc:
        print(f"syncgate init: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = load_config(target, known_systems())
    names = [settings.admin.api_key_env]
    for system in settings.systems.values():
        names += [system.api_key_env, *system.webhook_secret_envs]
    print(f"wrote {target}, a commented config to start from")
    print("it reads these environment variables (set them before serving):")
    for name in names:
        print(f"  {name}")
    print(f"next: syncgate check-config {target}")
    return 0


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("SYNCGATE_CONFIG") or DEFAULT_CONFIG)


def _env_database_url(command: str) -> str | None:
    """``SYNCGATE_DATABASE_URL`` (None: unset or empty, the config's applies); one that
    names no database Syncgate can use is refused in one line, exit 1."""
    from app.config import DATABASE_URL_ENV, database_url_problem, env_database_url

    url = env_database_url(os.environ)
    problem = None if url is None else database_url_problem(url)
    if problem is not None:
        print(f"syncgate {command}: {DATABASE_URL_ENV}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    return url


def _load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """Settings, secrets and database URL; a ConfigError is printed and exits 1."""
    from app.config import database_url, load_to_serve
    from app.errors import ConfigError
    from app.gateway import known_systems

    _env_database_url(args.command)
    path = _config_path(args)
    try:
        settings, secrets = load_to_serve(path, known_systems(), os.environ)
    except ConfigError as exc:
        count = len(exc.issues)
        print(
            f"syncgate: invalid configuration ({count} problem{'' if count == 1 else 's'}):",
            file=sys.stderr,
        )
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    return settings, secrets, database_url(settings, os.environ)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from app.config import check_config
    from app.gateway import known_systems

    code, text = check_config(_config_path(args), known_systems(), os.environ)
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _cmd_migrate(args: argparse.Namespace) -> int:
    from app.config import database_url, load_config
    from app.errors import ConfigError
    from app.gateway import known_systems

    url = _env_database_url("migrate")  # as serve and backfill read it: empty is unset
    if url is None:
        path = _config_path(args)
        try:
            url = database_url(load_config(path, known_systems()), os.environ)
        except ConfigError as exc:
            print(f"syncgate migrate: invalid configuration {path}:", file=sys.stderr)
            for issue in exc.issues:
                print(f"  {issue}", file=sys.stderr)
            print(
                "  (give --config FILE, or set SYNCGATE_DATABASE_URL to migrate a database"
                " without a config)",
                file=sys.stderr,
            )
            return EXIT_FAILED

    # progress: alembic names each migration as it runs it
    step = logging.StreamHandler(sys.stdout)
    step.setFormatter(logging.Formatter("  %(message)s"))
    step.addFilter(lambda record: record.getMessage().startswith("Running"))
    migration_log = logging.getLogger("alembic.runtime.migration")
    migration_log.addHandler(step)
    migration_log.setLevel(logging.INFO)

    async def run() -> None:
        store = await usable_store("migrate", url)
        await store.close()

    print("bringing the database schema up to date", flush=True)
    try:
        asyncio.run(run())
    except DatabaseUnusable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    print("database schema is up to date")
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from app import logs
    from app.cli import backfill

    logs.configure("WARNING")
    settings, secrets, url = _load(args)
    return backfill.run(settings, secrets, url, args)


def _cmd_serve(args: argparse.Namespace) -> int:

    from app import logs
    from app.gateway import Gateway
    from app.http.app import create_app
    from app.serving import ConnectionLimits, Server, bind_socket, server_config
    from app.serving import run as run_loop

    logs.configure(args.log_level.upper())
    settings, secrets, url = _load(args)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port

    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        return _cannot_listen("serve", host, port, exc)

    async def run() -> None:
        store = await usable_store("serve", url, wal_limit_mb=settings.sqlite_wal_limit_mb)
        gateway = Gateway(settings, secrets, store, worker_id=args.worker_id)
        gateway.config_path = _config_path(args)
        # connected before it says it serves: whatever is made from then on is new
        await gateway.connect()
        bound = sock.getsockname()[1]
        gateway.serving(database_url=url, host=host, port=bound)
        app = create_app(gateway)
        print(f"syncgate serving on http://{host}:{bound}", flush=True)
        server = settings.server
        limits = ConnectionLimits(
            max_header_bytes=server.max_header_bytes,
            header_timeout_s=server.header_timeout_s,
            body_timeout_s=server.body_timeout_s,
            keep_alive_s=server.keep_alive_s,
            max_connections=server.max_connections,
        )
        config = server_config(
            app,
            limits,
            log_config=None,  # uvicorn's loggers were set up by logs.configure: JSON
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        # What start-up built (modules, routes, compiled statements) lives as long as
        # the process: keep it out of the garbage collector's full passes, which
        # otherwise walk it all and stall the loop for tens of milliseconds.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        await Server(config).serve(sockets=[sock])  # a stop on SIGTERM exits 0

    try:
        run_loop(run())
    except DatabaseUnusable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncgate",
        description="Self-hosted sync gateway for hookstream, DevHelm, InboxOps and incident.io.",
    )
    parser.add_argument(
        "--version", action="version", version=f"syncgate {metadata.version('syncgate')}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a commented config.yaml to start from")
    p.add_argument("path", nargs="?", default=DEFAULT_CONFIG, help="where (default: config.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("simulate", help="serve a strict simulator of one vendor's API")
    p.add_argument("vendor", choices=sorted(VENDORS))
    p.add_argument("--port", type=PORT, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", required=True, help="the API key clients must send")
    p.add_argument("--webhook-url", default=None, help="where to send signed webhooks")
    p.add_argument("--webhook-secret", default=None, help="secret to sign webhooks with")
    p.add_argument("--latency-ms", type=LATENCY_MS, default=0.0, help="added to every API call")
    p.add_argument("--rpm", type=RPM, default=None, help="requests per minute before 429")
    p.add_argument(
        "--webhook-time-scale",
        type=float,
        default=1.0,
        help="multiplies the vendor's webhook retry delays (default 1: real time)",
    )
    p.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="play one reading of the vendor's docs (repeatable; docs/vendor-notes.md lists them)",
    )
    p.add_argument(
        "--read-only-api-key", default=None, help="a second key that may read but not write"
    )
    p.add_argument(
        "--seed-config",
        default=None,
        metavar="FILE",
        help="start with the status pages, inboxes and incidents a Syncgate config names",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("serve", help="run the gateway (webhooks, pollers, dispatcher, admin API)")
    p.add_argument("--config", help="config file (default: $SYNCGATE_CONFIG or config.yaml)")
    p.add_argument("--port", type=PORT, default=None, help="override server.port")
    p.add_argument("--host", default=None, help="override server.host")
    p.add_argument("--worker-id", default=None, help="name of this process in claims")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("check-config", help="validate a config file; exit 1 if invalid")
    p.add_argument("config", nargs="?", default=None)
    p.set_defaults(func=_cmd_check_config)

    from app.cli import backfill

    backfill.add_parser(sub).set_defaults(func=_cmd_backfill)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.add_argument("--config", help="config file (default: $SYNCGATE_CONFIG or config.yaml)")
    p.set_defaults(func=_cmd_migrate)

    from app.cli import demo

    p = sub.add_parser(
        "demo", help="play a narrated sync scenario: four simulators and the gateway, on loopback"
    )
    p.add_argument("--config", default=None, help="config file (default: the shipped config.yaml)")
    p.add_argument("--port", type=PORT, default=None, help="gateway port (default: server.port)")
    p.add_argument(
        "--database", default=None, help="keep the SQLite database here (default: a temporary one)"
    )
    p.add_argument("--fresh", action="store_true", help="with --database: empty it first")
    p.add_argument(
        "--deadline",
        type=float,
        default=demo.DEFAULT_DEADLINE_S,
        help="seconds before giving up (exit 1)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="after the scenario, keep the gateway and simulators up (print their URLs, the"
        " admin key and what to try) until Ctrl-C",
    )
    p.set_defaults(func=demo.command)

    from app.cli import ops

    ops.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)
