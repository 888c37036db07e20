"""The ``syncgate`` command line: serve, demo, simulate, check-config, migrate, and
operator conveniences. Each subcommand is a small function; argparse wires them."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

from adapters import VENDORS


def _cmd_simulate(args: argparse.Namespace) -> int:
    from adapters import simulator_class
    from adapters._simkit import SimOptions
    from app.serving import serve_asgi

    options = SimOptions(
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
    )
    simulator = simulator_class(args.vendor)(options)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve_asgi(simulator.app, host=args.host, port=args.port) as url:
            print(f"{args.vendor} simulator serving at {url}", flush=True)
            await stop.wait()

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncgate",
        description="Self-hosted sync gateway for hookstream, DevHelm, InboxOps and incident.io.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="serve a strict simulator of one vendor's API")
    p.add_argument("vendor", choices=sorted(VENDORS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", required=True, help="the API key clients must send")
    p.add_argument("--webhook-url", default=None, help="where to send signed webhooks")
    p.add_argument("--webhook-secret", default=None, help="secret to sign webhooks with")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute before 429")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
